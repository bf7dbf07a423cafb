//! JPEG 2000 (`.jp2`, `image/jp2`: Safari up to 16 and other WebKit/ImageIO
//! clients) through OpenJPEG (`openjpeg-sys`, which builds its vendored
//! OpenJPEG 2.5 and links it statically: no runtime dependency).
//!
//! OpenJPEG writes the codestream (tile by tile, so memory stays bounded
//! by one tile however large the image), into an in-memory output stream
//! of ours; the JP2 boxes around it are written here:
//!
//! ```text
//! jP   signature
//! ftyp brand "jp2 ", compatible "jp2 "
//! jp2h ihdr (size, components, 8 bits)
//!      colr enumerated sRGB, or the image's ICC profile
//!      cdef (with alpha only) R, G, B colour; A opacity of the whole image
//! jp2c the codestream
//! ```
//!
//! Why not OpenJPEG's own JP2 writer: it cannot embed an ICC profile (it
//! never copies the image's profile into its colour box, and then fails a C
//! `assert`, i.e. aborts, with asserts compiled in as they are here), and it
//! needs a seekable output to patch box lengths afterwards. The codestream
//! alone is written sequentially; the stream still supports seeking.
//!
//! Every OpenJPEG message (error, warning, info) goes to handlers that
//! collect errors for the returned reason and drop the rest: nothing is
//! printed.

use std::ffi::{c_char, c_void, CStr};
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};

use openjpeg_sys as opj;

use super::{panic_message, Image};
use crate::KeepReason;

/// Tiles are at most this wide and high. OpenJPEG holds one tile's samples
/// as 32-bit integers (plus code-block state) while encoding it: with 1024
/// that is ~16 MB for RGBA, instead of 16 bytes per pixel of the whole
/// image. Images up to this size are a single tile.
const MAX_TILE: u32 = 1024;

/// Largest width or height accepted (JPEG 2000 allows 2^32 - 1; this keeps
/// every product below in range with room to spare).
pub const JP2_MAX_SIDE: u32 = 1 << 20;

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

/// Piecewise-linear interpolation in `curve` (sorted by x, covering x).
fn interpolate(curve: &[(f32, f32)], x: f32) -> f32 {
    for pair in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (x - x0) * (y1 - y0) / (x1 - x0);
        }
    }
    curve[curve.len() - 1].1
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
    let codec = Codec(unsafe { opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) });
    if codec.0.is_null() {
        return Err(error("out of memory creating the codec"));
    }
    let user: *mut c_void = (&mut *messages as *mut Messages).cast();
    // SAFETY: `messages` outlives the codec (declared before it, dropped
    // after); the handlers only touch it.
    unsafe {
        opj::opj_set_error_handler(codec.0, Some(on_error), user);
        opj::opj_set_warning_handler(codec.0, Some(on_other), user);
        opj::opj_set_info_handler(codec.0, Some(on_other), user);
    }

    let failed = |what: &str, messages: &Messages| {
        let detail = messages.errors.join("; ");
        if detail.is_empty() {
            error(what)
        } else {
            error(&format!("{what}: {}", detail.trim_end()))
        }
    };

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

/// Wraps a codestream in the JP2 boxes (see the module documentation).
fn wrap_jp2(img: &Image, codestream: &[u8]) -> Vec<u8> {
    let channels = img.channels() as u16;

    let mut ihdr = Vec::with_capacity(14);
    ihdr.extend_from_slice(&img.height.to_be_bytes());
    ihdr.extend_from_slice(&img.width.to_be_bytes());
    ihdr.extend_from_slice(&channels.to_be_bytes());
    ihdr.push(7); // bits per component - 1, unsigned
    ihdr.push(7); // compression type: always 7 (JPEG 2000)
    ihdr.push(0); // colour space known (given by colr)
    ihdr.push(0); // no intellectual property box

    let mut colr = Vec::new();
    match &img.icc_profile {
        Some(icc) => {
            colr.extend_from_slice(&[2, 0, 0]); // method: restricted ICC
            colr.extend_from_slice(icc);
        }
        None => {
            colr.extend_from_slice(&[1, 0, 0]); // method: enumerated
            colr.extend_from_slice(&16u32.to_be_bytes()); // sRGB
        }
    }

    let mut jp2h = Vec::new();
    push_box(&mut jp2h, b"ihdr", &ihdr);
    push_box(&mut jp2h, b"colr", &colr);
    if img.has_alpha {
        // Channel definitions: (channel, type, association). Colour
        // channels 0-2 are colours 1-3; channel 3 is (unpremultiplied)
        // opacity applying to the whole image.
        let mut cdef = Vec::new();
        cdef.extend_from_slice(&4u16.to_be_bytes());
        for (channel, kind, association) in [(0u16, 0u16, 1u16), (1, 0, 2), (2, 0, 3), (3, 1, 0)] {
            cdef.extend_from_slice(&channel.to_be_bytes());
            cdef.extend_from_slice(&kind.to_be_bytes());
            cdef.extend_from_slice(&association.to_be_bytes());
        }
        push_box(&mut jp2h, b"cdef", &cdef);
    }

    let mut out = Vec::with_capacity(codestream.len() + jp2h.len() + 64);
    push_box(&mut out, b"jP  ", &[0x0D, 0x0A, 0x87, 0x0A]);
    let mut ftyp = Vec::with_capacity(12);
    ftyp.extend_from_slice(b"jp2 "); // brand
    ftyp.extend_from_slice(&0u32.to_be_bytes()); // minor version
    ftyp.extend_from_slice(b"jp2 "); // compatibility list
    push_box(&mut out, b"ftyp", &ftyp);
    push_box(&mut out, b"jp2h", &jp2h);
    push_box(&mut out, b"jp2c", codestream);
    out
}

/// Appends a box: 32-bit length (header included), type, payload. The
/// largest payload, the codestream, is bounded by [`MAX_OUTPUT`].
fn push_box(out: &mut Vec<u8>, kind: &[u8; 4], payload: &[u8]) {
    let len = (payload.len() + 8) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
}

/// OpenJPEG's messages for one encode.
#[derive(Default)]
struct Messages {
    errors: Vec<String>,
}

/// Error handler: keeps the message for the returned reason. Called by C:
/// must not unwind.
unsafe extern "C" fn on_error(msg: *const c_char, user: *mut c_void) {
    let _ = catch_unwind(|| {
        if msg.is_null() || user.is_null() {
            return;
        }
        // SAFETY: OpenJPEG passes a NUL-terminated message and the user
        // data we registered: a live `Messages`.
        let (msg, messages) = unsafe { (CStr::from_ptr(msg), &mut *user.cast::<Messages>()) };
        if messages.errors.len() < 8 {
            messages
                .errors
                .push(msg.to_string_lossy().trim_end().to_owned());
        }
    });
}

/// Warning and info handler: drops the message (the default would be to
/// print nothing either, but OpenJPEG builds differ).
unsafe extern "C" fn on_other(_msg: *const c_char, _user: *mut c_void) {}

/// OpenJPEG's stream buffers this much before calling [`stream_write`].
const STREAM_BUFFER: usize = 64 * 1024;

/// Largest output accepted: JP2 box lengths are 32-bit.
const MAX_OUTPUT: usize = u32::MAX as usize - 4096;

/// Where the codestream goes: bytes written at `pos`, growing the buffer
/// (zero-filled) as needed; `bytes.len()` is the high-water mark.
#[derive(Default)]
struct Sink {
    bytes: Vec<u8>,
    pos: usize,
    overflow: bool,
}

const STREAM_ERROR: usize = usize::MAX; // (OPJ_SIZE_T)-1

// Stream callbacks, called by C: no panics (no fallible indexing).

unsafe extern "C" fn stream_write(buffer: *mut c_void, len: usize, user: *mut c_void) -> usize {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return STREAM_ERROR;
    };
    if len == 0 {
        return 0;
    }
    let end = match sink.pos.checked_add(len) {
        Some(end) if end <= MAX_OUTPUT => end,
        _ => {
            sink.overflow = true;
            return STREAM_ERROR;
        }
    };
    if end > sink.bytes.len() {
        sink.bytes.resize(end, 0);
    }
    if let Some(dst) = sink.bytes.get_mut(sink.pos..end) {
        // SAFETY: OpenJPEG passes `len` readable bytes.
        dst.copy_from_slice(unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) });
    }
    sink.pos = end;
    len
}

unsafe extern "C" fn stream_skip(offset: i64, user: *mut c_void) -> i64 {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return -1;
    };
    match i64::try_from(sink.pos)
        .ok()
        .and_then(|pos| pos.checked_add(offset))
        .and_then(|pos| usize::try_from(pos).ok())
    {
        Some(pos) if pos <= MAX_OUTPUT => {
            sink.pos = pos;
            offset
        }
        _ => -1,
    }
}

unsafe extern "C" fn stream_seek(offset: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return 0;
    };
    match usize::try_from(offset) {
        Ok(pos) if pos <= MAX_OUTPUT => {
            sink.pos = pos;
            1
        }
        _ => 0,
    }
}

/// Owns an `opj_image_t`.
struct OwnedImage(*mut opj::opj_image_t);

impl Drop for OwnedImage {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by opj_image_tile_create, destroyed once.
            unsafe { opj::opj_image_destroy(self.0) }
        }
    }
}

/// Owns an `opj_codec_t`.
struct Codec(*mut opj::opj_codec_t);

impl Drop for Codec {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: created by opj_create_compress, destroyed once.
        unsafe { opj::opj_destroy_codec(self.0) }
    }
}

/// Owns an `opj_stream_t`.
struct Stream(*mut opj::opj_stream_t);

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by opj_stream_create, destroyed once; it
            // does not own its user data (no free function registered).
            unsafe { opj::opj_stream_destroy(self.0) }
        }
    }
}
