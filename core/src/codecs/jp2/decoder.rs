//! The decoding half: [`decode`] parses the boxes, checks the codestream,
//! then has OpenJPEG decode it tile by tile, each tile's planes
//! interleaved into RGB(A) rows as it comes.

use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use openjpeg_sys as opj;

use super::codestream::{check_codestream, Siz};
use super::container::{parse_jp2, Jp2File};
use super::stream::{
    source_read, source_seek, source_skip, Codec, Messages, OwnedImage, Source, Stream,
    STREAM_BUFFER,
};
use crate::codecs::{panic_message, Image};

/// Decodes a `.jp2` file of the kind [`encode`] writes: 8-bit unsigned RGB,
/// or RGBA whose fourth channel a `cdef` box declares as (unpremultiplied)
/// opacity of the whole image, with an enumerated sRGB or an ICC `colr`
/// box (the profile is returned, not applied). Anything else (a raw
/// codestream, greyscale, palettes, subsampled or deeper components, sYCC,
/// HTJ2K, more than [`MAX_DECODE_PIXELS`]) is an `Err`, as is a truncated or
/// malformed file; this never panics.
///
/// Used by the quality guard to score encoded candidates in process, so
/// it must give what a browser would show: the samples are OpenJPEG's
/// (clamped to 0-255 after the inverse colour transform), pixel-identical
/// to its `opj_decompress` (checked by `tests/legacy_formats.rs`).
///
/// Why the checks before OpenJPEG: it is compiled with C asserts on (see
/// the `jp2` module documentation), and a few of them, in its HTJ2K block
/// decoder, depend on the data, i.e. a crafted file could abort the
/// process; so the boxes are parsed here, and the codestream's markers
/// walked (sizes, components, no HTJ2K capability or code-block style)
/// before it gets the codestream. Its strict mode makes a truncated
/// codestream an error rather than a partial image, and its messages go
/// to handlers that only record them. OpenJPEG has no other way out:
/// no `exit`, `abort` or `longjmp` outside debug code.
///
/// [`encode`]: super::encode
/// [`MAX_DECODE_PIXELS`]: super::MAX_DECODE_PIXELS
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    catch_unwind(AssertUnwindSafe(|| decode_inner(bytes)))
        .unwrap_or_else(|payload| Err(format!("panic: {}", panic_message(&*payload))))
        .map_err(|e| format!("JPEG 2000: {e}"))
}

fn decode_inner(bytes: &[u8]) -> Result<Image, String> {
    let file = parse_jp2(bytes)?;
    let siz = check_codestream(file.codestream, file.channels)?;
    if (siz.width, siz.height) != (file.width, file.height) {
        return Err(format!(
            "image header says {}x{}, codestream {}x{}",
            file.width, file.height, siz.width, siz.height
        ));
    }
    let pixels = decode_codestream(&file, &siz)?;
    Ok(Image {
        width: siz.width,
        height: siz.height,
        pixels,
        has_alpha: file.channels == 4,
        icc_profile: file.icc_profile,
    })
}

/// Decodes the checked codestream of `file` tile by tile, interleaving
/// each tile's planes into RGB(A) rows.
fn decode_codestream(file: &Jp2File<'_>, siz: &Siz) -> Result<Vec<u8>, String> {
    let channels = file.channels;
    let (width, height) = (siz.width as usize, siz.height as usize);

    let mut messages = Box::new(Messages::default());
    // SAFETY: creates a decompressor we own.
    let codec = unsafe { opj::opj_create_decompress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) };
    // (`messages` is declared before the codec: it is dropped after it.)
    let codec =
        Codec::reporting_to(codec, &mut messages).ok_or("out of memory creating the codec")?;
    let failed = |what: &str, messages: &Messages| messages.describe(what);

    // SAFETY: opj_set_default_decoder_parameters initialises every field
    // (full resolution, all layers).
    let mut params: opj::opj_dparameters_t = unsafe {
        let mut params = mem::MaybeUninit::uninit();
        opj::opj_set_default_decoder_parameters(params.as_mut_ptr());
        params.assume_init()
    };
    // SAFETY: valid codec and parameters. Strict mode: a truncated
    // codestream is an error, not a partially decoded image.
    let ok = unsafe {
        opj::opj_setup_decoder(codec.0, &mut params) != 0
            && opj::opj_decoder_set_strict_mode(codec.0, 1) != 0
    };
    if !ok {
        return Err(failed("setting up the decoder", &messages));
    }

    let mut source = Box::new(Source {
        data: file.codestream,
        pos: 0,
    });
    // SAFETY: creates an input stream we own; its user data is `source`,
    // which outlives it (declared before it, dropped after).
    let stream = Stream(unsafe { opj::opj_stream_create(STREAM_BUFFER, 1) });
    if stream.0.is_null() {
        return Err("out of memory creating the stream".into());
    }
    // SAFETY: as above. The length lets OpenJPEG bound its own skips.
    unsafe {
        opj::opj_stream_set_user_data(stream.0, (&mut *source as *mut Source<'_>).cast(), None);
        opj::opj_stream_set_user_data_length(stream.0, file.codestream.len() as u64);
        opj::opj_stream_set_read_function(stream.0, Some(source_read));
        opj::opj_stream_set_skip_function(stream.0, Some(source_skip));
        opj::opj_stream_set_seek_function(stream.0, Some(source_seek));
    }

    let mut header: *mut opj::opj_image_t = ptr::null_mut();
    // SAFETY: valid stream and codec; the image header it returns (no
    // sample buffers) is ours to destroy.
    let ok = unsafe { opj::opj_read_header(stream.0, codec.0, &mut header) } != 0;
    let image = OwnedImage(header);
    if !ok || image.0.is_null() {
        return Err(failed("reading the header", &messages));
    }
    // What OpenJPEG read must be what check_codestream did.
    // SAFETY: a valid image header with `numcomps` components.
    let header_ok = unsafe {
        let im = &*image.0;
        im.numcomps as usize == channels
            && !im.comps.is_null()
            && (im.x0, im.y0) == (siz.x0, siz.y0)
            && (im.x1.checked_sub(im.x0), im.y1.checked_sub(im.y0))
                == (Some(siz.width), Some(siz.height))
            && std::slice::from_raw_parts(im.comps, channels)
                .iter()
                .all(|c| (c.dx, c.dy, c.prec, c.sgnd) == (1, 1, 8, 0))
    };
    if !header_ok {
        return Err("the decoder read another image header".into());
    }

    let len = width * height * channels;
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(len)
        .map_err(|_| format!("out of memory for {width}x{height} pixels"))?;
    pixels.resize(len, 0);
    let mut seen = vec![false; siz.tiles];
    let mut covered = 0usize;
    let mut tile = Vec::new();
    loop {
        let (mut index, mut size, mut go_on, mut comps) = (0u32, 0u32, 0, 0u32);
        let (mut tx0, mut ty0, mut tx1, mut ty1) = (0i32, 0i32, 0i32, 0i32);
        // SAFETY: valid codec and stream; every out-pointer is a local.
        let ok = unsafe {
            opj::opj_read_tile_header(
                codec.0, stream.0, &mut index, &mut size, &mut tx0, &mut ty0, &mut tx1, &mut ty1,
                &mut comps, &mut go_on,
            )
        };
        if ok == 0 {
            return Err(failed("reading a tile header", &messages));
        }
        if go_on == 0 {
            break;
        }
        // The tile, relative to the image area, must lie within it.
        let bounds = (|| {
            let x0 = usize::try_from(i64::from(tx0) - i64::from(siz.x0)).ok()?;
            let y0 = usize::try_from(i64::from(ty0) - i64::from(siz.y0)).ok()?;
            let x1 = usize::try_from(i64::from(tx1) - i64::from(siz.x0)).ok()?;
            let y1 = usize::try_from(i64::from(ty1) - i64::from(siz.y0)).ok()?;
            (x0 < x1 && y0 < y1 && x1 <= width && y1 <= height).then_some((
                x0,
                y0,
                x1 - x0,
                y1 - y0,
            ))
        })();
        let Some((x0, y0, w, h)) = bounds else {
            return Err("tile outside the image".into());
        };
        let index = index as usize;
        if index >= seen.len() || seen[index] || comps as usize != channels {
            return Err("unexpected tile".into());
        }
        seen[index] = true;
        // One byte per sample (8-bit components), plane after plane.
        let plane = w * h;
        if size as usize != plane * channels {
            return Err("unexpected tile size".into());
        }
        tile.clear();
        tile.try_reserve_exact(size as usize)
            .map_err(|_| "out of memory for a tile".to_owned())?;
        tile.resize(size as usize, 0);
        // SAFETY: `tile` holds `size` writable bytes, what OpenJPEG asked
        // for (it checks the length against the tile's decoded size).
        let ok = unsafe {
            opj::opj_decode_tile_data(codec.0, index as u32, tile.as_mut_ptr(), size, stream.0)
        };
        if ok == 0 {
            return Err(failed("decoding a tile", &messages));
        }
        interleave(
            &tile,
            plane,
            &file.order[..channels],
            w,
            &mut pixels,
            width,
            x0,
            y0,
            h,
        );
        covered += plane;
    }
    // SAFETY: valid codec and stream.
    if unsafe { opj::opj_end_decompress(codec.0, stream.0) } == 0 {
        return Err(failed("finishing", &messages));
    }
    // Tiles are distinct and inside the image: they cover it if their
    // areas add up to it.
    if covered != width * height {
        return Err("tiles missing".into());
    }
    Ok(pixels)
}

/// Copies a decoded `w`x`h` tile (planes of `plane` samples, codestream
/// component order) to (`x0`, `y0`) of the `width`-wide interleaved
/// `pixels`, taking channel `c` from plane `order[c]`.
#[allow(clippy::too_many_arguments)]
fn interleave(
    tile: &[u8],
    plane: usize,
    order: &[usize],
    w: usize,
    pixels: &mut [u8],
    width: usize,
    x0: usize,
    y0: usize,
    h: usize,
) {
    let channels = order.len();
    let planes: Vec<&[u8]> = order
        .iter()
        .map(|&c| &tile[c * plane..(c + 1) * plane])
        .collect();
    for y in 0..h {
        let start = ((y0 + y) * width + x0) * channels;
        let row = &mut pixels[start..start + w * channels];
        let src = y * w..(y + 1) * w;
        match planes[..] {
            [r, g, b] => {
                let (r, g, b) = (&r[src.clone()], &g[src.clone()], &b[src]);
                for (i, px) in row.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&[r[i], g[i], b[i]]);
                }
            }
            [r, g, b, a] => {
                let (r, g, b, a) = (&r[src.clone()], &g[src.clone()], &b[src.clone()], &a[src]);
                for (i, px) in row.chunks_exact_mut(4).enumerate() {
                    px.copy_from_slice(&[r[i], g[i], b[i], a[i]]);
                }
            }
            _ => unreachable!("3 or 4 channels"),
        }
    }
}
