//! The encoding half: the quality to PSNR curve, the tiling, and the
//! codestream itself, written by OpenJPEG (tile by tile, from planes we
//! copy out of the interleaved pixels) into an in-memory [`Sink`]; then
//! wrapped in JP2 boxes by [`wrap_jp2`].

use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};

use openjpeg_sys as opj;

use super::container::wrap_jp2;
use super::stream::{
    stream_seek, stream_skip, stream_write, Codec, Messages, OwnedImage, Sink, Stream,
    STREAM_BUFFER,
};
use super::JP2_MAX_SIDE;
use crate::codecs::{interpolate, panic_message, Image};
use crate::KeepReason;

/// Tiles are at most this wide and high. OpenJPEG holds one tile's samples
/// as 32-bit integers (plus code-block state) while encoding it: with 1024
/// that is ~16 MB for RGBA, instead of 16 bytes per pixel of the whole
/// image. Images up to this size are a single tile.
pub(super) const MAX_TILE: u32 = 1024;

/// PSNR (dB) the rate allocator aims at for `quality`.
///
/// OpenJPEG's "fixed quality" mode truncates each code-block's coding
/// passes so that the tile's estimated distortion (over all components,
/// alpha included) meets a PSNR target: the rate adapts to the content, as
/// with a JPEG/WebP quality, rather than being a fixed compression ratio.
/// The target meets it within ~0.3 dB (measured after decoding).
///
/// The curve was derived on the 40 photos of the test corpus: for each
/// WebP quality, the mean SSIM WebP reaches (our `metrics::ssim`), then the
/// PSNR target at which JPEG 2000 reaches the same mean SSIM. So a quality
/// number means about the same structural fidelity in both formats. (At
/// equal PSNR JPEG 2000 looks softer than WebP: matching PSNR instead
/// would have given it ~1 dB less at q85.) Knots in between are linear:
/// q85 -> 43 dB, q75 -> 39.5 dB, q50 -> ~37 dB.
fn target_psnr(quality: u8) -> f32 {
    const CURVE: [(f32, f32); 5] = [
        (0.0, 28.5),
        (20.0, 33.5),
        (75.0, 39.5),
        (85.0, 43.0),
        (100.0, 50.0),
    ];
    interpolate(&CURVE, f32::from(quality.clamp(1, 100)))
}

/// Encodes `img` as a JPEG 2000 `.jp2` file at `quality` (1-100; higher is
/// better and bigger, 100 is still lossy), with the irreversible 9/7
/// wavelet and colour transform; alpha as a fourth component declared as
/// opacity; `img.icc_profile` embedded if there is one.
pub fn encode(img: &Image, quality: u8) -> Result<Vec<u8>, KeepReason> {
    if !img.is_consistent() {
        return Err(error("pixel buffer does not match the dimensions"));
    }
    if img.width == 0 || img.height == 0 || img.width > JP2_MAX_SIDE || img.height > JP2_MAX_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "{}x{} is outside the 1..={JP2_MAX_SIDE} pixels per side encoded as JPEG 2000",
            img.width, img.height
        )));
    }
    let psnr = target_psnr(quality);
    // OpenJPEG is C and reports errors by return value; a panic can only
    // come from our code, but none may escape.
    let codestream = catch_unwind(AssertUnwindSafe(|| codestream(img, psnr)))
        .unwrap_or_else(|payload| Err(KeepReason::Panic(panic_message(&*payload))))?;
    Ok(wrap_jp2(img, &codestream))
}

fn error(what: &str) -> KeepReason {
    KeepReason::Encode(format!("JPEG 2000: {what}"))
}

/// Tile size along one side: as equal as possible, at most MAX_TILE (an
/// image 1025 wide becomes two tiles of 513, not 1024 + 1).
fn tile_side(side: u32) -> u32 {
    let tiles = side.div_ceil(MAX_TILE);
    side.div_ceil(tiles)
}

/// Resolution levels (decomposition levels + 1): OpenJPEG's default of 6,
/// fewer when a tile is too small to be halved that often.
fn resolutions(tile_w: u32, tile_h: u32) -> i32 {
    let smaller = tile_w.min(tile_h).max(1);
    (smaller.ilog2() as i32 + 1).min(6)
}

/// The JPEG 2000 codestream of `img` (checked by [`encode`]).
fn codestream(img: &Image, psnr: f32) -> Result<Vec<u8>, KeepReason> {
    let channels = img.channels();
    let (tile_w, tile_h) = (tile_side(img.width), tile_side(img.height));

    // SAFETY: opj_set_default_encoder_parameters initialises every field.
    let mut params: opj::opj_cparameters_t = unsafe {
        let mut params = mem::MaybeUninit::uninit();
        opj::opj_set_default_encoder_parameters(params.as_mut_ptr());
        params.assume_init()
    };
    params.tcp_numlayers = 1;
    params.cp_fixed_quality = 1;
    params.tcp_distoratio[0] = psnr;
    params.irreversible = 1;
    params.tcp_mct = 1;
    params.tile_size_on = 1;
    params.cp_tdx = tile_w as i32;
    params.cp_tdy = tile_h as i32;
    params.numresolution = resolutions(tile_w, tile_h);
    // A short comment instead of OpenJPEG's "Created by OpenJPEG version
    // 2.5.3" (a COM marker is always written).
    let comment = c"smart-imaging";
    params.cp_comment = comment.as_ptr().cast_mut();

    let component = opj::opj_image_cmptparm_t {
        dx: 1,
        dy: 1,
        w: img.width,
        h: img.height,
        x0: 0,
        y0: 0,
        prec: 8,
        bpp: 8,
        sgnd: 0,
    };
    let mut components = [component; 4];
    // SAFETY: `components` holds `channels` (3 or 4) parameter sets; the
    // image header (no sample buffers: those come per tile) is ours to
    // destroy.
    let image = OwnedImage(unsafe {
        opj::opj_image_tile_create(
            channels as u32,
            components.as_mut_ptr(),
            opj::COLOR_SPACE::OPJ_CLRSPC_SRGB,
        )
    });
    if image.0.is_null() {
        return Err(error("out of memory creating the image"));
    }
    // SAFETY: a valid image with `channels` components.
    unsafe {
        let im = &mut *image.0;
        im.x0 = 0;
        im.y0 = 0;
        im.x1 = img.width;
        im.y1 = img.height;
        if img.has_alpha {
            (*im.comps.add(3)).alpha = 1;
        }
    }

    let mut messages = Box::new(Messages::default());
    // SAFETY: creates a codec we own.
    let codec = unsafe { opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) };
    // (`messages` is declared before the codec: it is dropped after it.)
    let codec = Codec::reporting_to(codec, &mut messages)
        .ok_or_else(|| error("out of memory creating the codec"))?;
    let failed = |what: &str, messages: &Messages| error(&messages.describe(what));

    // SAFETY: valid codec, parameters and image.
    if unsafe { opj::opj_setup_encoder(codec.0, &mut params, image.0) } == 0 {
        return Err(failed("setting up the encoder", &messages));
    }

    let mut sink = Box::new(Sink::default());
    // SAFETY: creates an output stream we own; its user data is `sink`,
    // which outlives it (the stream is destroyed before `sink` is read).
    let stream = Stream(unsafe { opj::opj_stream_create(STREAM_BUFFER, 0) });
    if stream.0.is_null() {
        return Err(error("out of memory creating the stream"));
    }
    // SAFETY: as above.
    unsafe {
        opj::opj_stream_set_user_data(stream.0, (&mut *sink as *mut Sink).cast(), None);
        opj::opj_stream_set_write_function(stream.0, Some(stream_write));
        opj::opj_stream_set_skip_function(stream.0, Some(stream_skip));
        opj::opj_stream_set_seek_function(stream.0, Some(stream_seek));
    }

    // SAFETY: valid codec, image and stream.
    if unsafe { opj::opj_start_compress(codec.0, image.0, stream.0) } == 0 {
        return Err(failed("starting", &messages));
    }
    let tiles_x = img.width.div_ceil(tile_w);
    let tiles_y = img.height.div_ceil(tile_h);
    let mut planar = Vec::new();
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            let x0 = tx * tile_w;
            let y0 = ty * tile_h;
            let w = tile_w.min(img.width - x0);
            let h = tile_h.min(img.height - y0);
            tile_planes(img, x0, y0, w, h, &mut planar);
            let len = u32::try_from(planar.len()).map_err(|_| error("tile too large"))?;
            // SAFETY: `planar` holds the tile's samples, component after
            // component, one byte each: what OpenJPEG expects for 8-bit
            // components (it checks the length).
            let ok = unsafe {
                opj::opj_write_tile(
                    codec.0,
                    ty * tiles_x + tx,
                    planar.as_mut_ptr(),
                    len,
                    stream.0,
                )
            };
            if ok == 0 {
                return Err(failed("encoding a tile", &messages));
            }
        }
    }
    drop(planar);
    // SAFETY: valid codec and stream; flushes the stream.
    if unsafe { opj::opj_end_compress(codec.0, stream.0) } == 0 {
        return Err(failed("finishing", &messages));
    }
    drop(stream);
    drop(codec);
    drop(image);
    if sink.overflow {
        return Err(error("output too large"));
    }
    let bytes = mem::take(&mut sink.bytes);
    // A codestream starts with SOC and ends with EOC.
    if !(bytes.starts_with(&[0xFF, 0x4F]) && bytes.ends_with(&[0xFF, 0xD9])) {
        return Err(error("malformed codestream"));
    }
    Ok(bytes)
}

/// Copies the `w`x`h` tile at (`x0`, `y0`) into `out` as planes: all of
/// R, then G, then B (then A).
fn tile_planes(img: &Image, x0: u32, y0: u32, w: u32, h: u32, out: &mut Vec<u8>) {
    let channels = img.channels();
    let (w, h) = (w as usize, h as usize);
    let row_len = img.width as usize * channels;
    out.clear();
    out.resize(w * h * channels, 0);
    let (plane_len, x0, y0) = (w * h, x0 as usize, y0 as usize);
    for y in 0..h {
        let start = (y0 + y) * row_len + x0 * channels;
        let row = &img.pixels[start..start + w * channels];
        for (x, px) in row.chunks_exact(channels).enumerate() {
            for (c, &sample) in px.iter().enumerate() {
                out[c * plane_len + y * w + x] = sample;
            }
        }
    }
}
