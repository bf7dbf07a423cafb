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
//!
//! [`decode`] reads back what [`encode`] writes, in process, for the
//! quality guard (which scores each encoded candidate against the source).
//! The boxes are parsed here, and the codestream's structure is checked
//! before OpenJPEG sees it (see [`decode`] for why); OpenJPEG then decodes
//! it tile by tile straight into our buffer, so its memory is one tile's,
//! as when encoding.

use std::ffi::{c_char, c_void, CStr};
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use openjpeg_sys as opj;

use super::bytes::{be_u16, be_u32, range, u64_at, Endian};
use super::{interpolate, panic_message, Image};
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

/// OpenJPEG's messages for one encode or decode.
#[derive(Default)]
struct Messages {
    errors: Vec<String>,
}

impl Messages {
    /// `what` failed, with OpenJPEG's error messages if it gave any.
    fn describe(&self, what: &str) -> String {
        let detail = self.errors.join("; ");
        if detail.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", detail.trim_end())
        }
    }
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
            // SAFETY: created by opj_image_tile_create or opj_read_header,
            // destroyed once.
            unsafe { opj::opj_image_destroy(self.0) }
        }
    }
}

/// Owns an `opj_codec_t` (compressor or decompressor).
struct Codec(*mut opj::opj_codec_t);

impl Codec {
    /// Takes ownership of `codec` (from opj_create_compress or
    /// opj_create_decompress; `None` if that returned null) and sends its
    /// errors, warnings and info to `messages`, which must outlive it.
    fn reporting_to(codec: *mut opj::opj_codec_t, messages: &mut Messages) -> Option<Codec> {
        if codec.is_null() {
            return None;
        }
        let codec = Codec(codec);
        let user: *mut c_void = (messages as *mut Messages).cast();
        // SAFETY: a valid codec; the caller keeps `messages` alive (and in
        // place: it is boxed) for the codec's lifetime; the handlers only
        // touch it.
        unsafe {
            opj::opj_set_error_handler(codec.0, Some(on_error), user);
            opj::opj_set_warning_handler(codec.0, Some(on_other), user);
            opj::opj_set_info_handler(codec.0, Some(on_other), user);
        }
        Some(codec)
    }
}

impl Drop for Codec {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: created by opj_create_(de)compress, destroyed once.
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

// ---------------------------------------------------------------------------
// Decoding

/// Largest image [`decode`] accepts, in pixels: its output alone is then
/// up to 256 MiB (RGBA). Requests are far smaller (`Limits::max_pixels`).
pub const MAX_DECODE_PIXELS: u64 = 64 << 20;

/// Largest tile [`decode`] accepts, in pixels. OpenJPEG holds a tile's
/// samples as 32-bit integers (plus code-block state) while decoding it;
/// [`encode`] writes tiles of at most [`MAX_TILE`] squared (1 MP).
const MAX_DECODE_TILE_PIXELS: u64 = 16 << 20;

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
/// the module documentation), and a few of them, in its HTJ2K block
/// decoder, depend on the data, i.e. a crafted file could abort the
/// process; so the boxes are parsed here, and the codestream's markers
/// walked (sizes, components, no HTJ2K capability or code-block style)
/// before it gets the codestream. Its strict mode makes a truncated
/// codestream an error rather than a partial image, and its messages go
/// to handlers that only record them. OpenJPEG has no other way out:
/// no `exit`, `abort` or `longjmp` outside debug code.
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

/// What [`parse_jp2`] found in the boxes.
struct Jp2File<'a> {
    /// Payload of the first `jp2c` box.
    codestream: &'a [u8],
    width: u32,
    height: u32,
    /// Components: 3 (RGB) or 4 (RGBA).
    channels: usize,
    /// Codestream component of each output channel: R, G, B (, A).
    order: [usize; 4],
    icc_profile: Option<Vec<u8>>,
}

/// A box: its type and payload.
type JpBox<'a> = ([u8; 4], &'a [u8]);

/// Splits the next box off `data`. `Ok(None)` at the end; an error if the
/// box runs past it.
fn next_box<'a>(data: &mut &'a [u8]) -> Result<Option<JpBox<'a>>, String> {
    let all = *data;
    if all.is_empty() {
        return Ok(None);
    }
    let header = all.get(..8).ok_or("truncated box header")?;
    let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
    let (header_len, len) = match be_u32(header) {
        // The box runs to the end of the file.
        0 => (8, all.len()),
        // 64-bit length after the type.
        1 => {
            let len = u64_at(all, 8, Endian::Big).ok_or("truncated box header")?;
            (16, usize::try_from(len).unwrap_or(usize::MAX))
        }
        len => (8, len as usize),
    };
    if len < header_len || len > all.len() {
        return Err(format!(
            "box '{}' of {len} bytes does not fit in the {} left",
            String::from_utf8_lossy(&kind),
            all.len()
        ));
    }
    *data = &all[len..];
    Ok(Some((kind, &all[header_len..len])))
}

/// Parses the JP2 boxes: signature, `ftyp` (compatible with "jp2 "), then
/// `jp2h` before the first `jp2c`; other boxes are skipped.
fn parse_jp2(bytes: &[u8]) -> Result<Jp2File<'_>, String> {
    let mut rest = bytes;
    match next_box(&mut rest) {
        Ok(Some((kind, payload))) if &kind == b"jP  " && payload == [0x0D, 0x0A, 0x87, 0x0A] => {}
        _ => return Err("not a JP2 file (no signature box)".into()),
    }
    match next_box(&mut rest)? {
        Some((kind, payload)) if &kind == b"ftyp" && payload.len() >= 8 => {
            let brands = std::iter::once(&payload[..4]).chain(payload[8..].chunks_exact(4));
            if !brands.into_iter().any(|brand| brand == b"jp2 ") {
                return Err("not compatible with JP2 (ftyp)".into());
            }
        }
        _ => return Err("no ftyp box after the signature".into()),
    }
    let mut header = None;
    while let Some((kind, payload)) = next_box(&mut rest)? {
        match &kind {
            b"jp2h" if header.is_none() => header = Some(parse_jp2h(payload)?),
            b"jp2h" => return Err("two jp2h boxes".into()),
            b"jp2c" => {
                let header = header.ok_or("codestream before the jp2h box")?;
                return Ok(Jp2File {
                    codestream: payload,
                    ..header
                });
            }
            _ => {}
        }
    }
    Err("no codestream (jp2c box)".into())
}

/// Parses the `jp2h` box (`codestream` is filled in by the caller).
fn parse_jp2h(mut data: &[u8]) -> Result<Jp2File<'static>, String> {
    let ihdr = match next_box(&mut data)? {
        Some((kind, payload)) if &kind == b"ihdr" && payload.len() == 14 => payload,
        _ => return Err("jp2h does not start with an image header box".into()),
    };
    let (height, width) = (be_u32(&ihdr[0..]), be_u32(&ihdr[4..]));
    let components = be_u16(&ihdr[8..]);
    // Bits per component - 1, and unsigned (255 would mean "varies").
    if ihdr[10] != 7 {
        return Err(format!("{} bits per component, not 8 unsigned", ihdr[10]));
    }
    if ihdr[11] != 7 {
        return Err("compression type is not JPEG 2000".into());
    }
    let channels = match components {
        3 => 3,
        4 => 4,
        n => return Err(format!("{n} components (only RGB and RGBA are decoded)")),
    };
    let mut colour = None;
    let mut cdef = None;
    while let Some((kind, payload)) = next_box(&mut data)? {
        match &kind {
            // The first colour specification is the one to use.
            b"colr" if colour.is_none() => colour = Some(payload),
            b"cdef" if cdef.is_none() => cdef = Some(payload),
            b"cdef" => return Err("two cdef boxes".into()),
            b"pclr" | b"cmap" => return Err("palette images are not decoded".into()),
            _ => {}
        }
    }
    let icc_profile = match colour {
        None => return Err("no colour specification box".into()),
        Some([1, _, _, cs @ ..]) if cs.len() == 4 => match be_u32(cs) {
            16 => None, // sRGB
            other => return Err(format!("enumerated colour space {other} is not sRGB")),
        },
        // Restricted (2) or any (3) ICC profile.
        Some([2 | 3, _, _, icc @ ..]) if !icc.is_empty() => Some(icc.to_vec()),
        Some(_) => return Err("unsupported colour specification".into()),
    };
    Ok(Jp2File {
        codestream: &[],
        width,
        height,
        channels,
        order: channel_order(channels, cdef)?,
        icc_profile,
    })
}

/// The codestream component of each output channel (R, G, B, then A),
/// from the channel definitions. Without a `cdef` box 3 components are
/// R, G, B; with 4 it must say which one is opacity.
fn channel_order(channels: usize, cdef: Option<&[u8]>) -> Result<[usize; 4], String> {
    let Some(cdef) = cdef else {
        return if channels == 3 {
            Ok([0, 1, 2, 3])
        } else {
            Err("4 components without channel definitions".into())
        };
    };
    if cdef.len() < 2 || usize::from(be_u16(cdef)) != channels || cdef.len() != 2 + 6 * channels {
        return Err("channel definitions do not match the components".into());
    }
    let mut order = [usize::MAX; 4];
    for entry in cdef[2..].chunks_exact(6) {
        let (channel, kind, association) = (
            usize::from(be_u16(&entry[0..])),
            be_u16(&entry[2..]),
            be_u16(&entry[4..]),
        );
        let slot = match (kind, association) {
            // A colour channel: association 1-3 is R, G, B.
            (0, a @ 1..=3) => usize::from(a) - 1,
            // Opacity (not premultiplied) of the whole image.
            (1, 0) if channels == 4 => 3,
            _ => {
                return Err(format!(
                    "unsupported channel definition (type {kind}, association {association})"
                ))
            }
        };
        if channel >= channels || order[slot] != usize::MAX {
            return Err("inconsistent channel definitions".into());
        }
        order[slot] = channel;
    }
    // `channels` entries, each filling a distinct slot below `channels`.
    Ok(order)
}

/// A big-endian cursor over a codestream; every read is checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let out = range(self.data, self.pos, n).ok_or("truncated codestream")?;
        self.pos += n;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.take(2).map(be_u16)
    }

    /// A marker segment's payload (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        let len = usize::from(self.u16()?);
        if len < 2 {
            return Err("marker segment shorter than its length field".into());
        }
        self.take(len - 2)
    }
}

/// What [`check_codestream`] found in the SIZ marker.
struct Siz {
    /// Image area on the reference grid: [x0, x0 + width) x [y0, y0 + height).
    x0: u32,
    y0: u32,
    width: u32,
    height: u32,
    tiles: usize,
}

const SOC: u16 = 0xFF4F;
const CAP: u16 = 0xFF50;
const SIZ: u16 = 0xFF51;
const COD: u16 = 0xFF52;
const COC: u16 = 0xFF53;
const SOT: u16 = 0xFF90;
const SOD: u16 = 0xFF93;
const EOC: u16 = 0xFFD9;

/// Walks the codestream's headers: SIZ (`components` 8-bit unsigned,
/// unsubsampled components; bounded image and tile sizes), the main
/// header and every tile-part header up to SOD, skipping the tile data by
/// the tile-part lengths. Refuses HTJ2K (Part 15): a CAP marker, the HT
/// capability bit of Rsiz or an HT code-block style in COD/COC, since
/// OpenJPEG's HT decoder has asserts that depend on the data.
fn check_codestream(cs: &[u8], components: usize) -> Result<Siz, String> {
    let mut r = Reader { data: cs, pos: 0 };
    if r.u16()? != SOC || r.u16()? != SIZ {
        return Err("codestream does not start with SOC, SIZ".into());
    }
    let siz = r.segment()?;
    if siz.len() < 36 {
        return Err("short SIZ marker".into());
    }
    let rsiz = be_u16(siz);
    let field = |i: usize| be_u32(&siz[2 + 4 * i..]);
    let (xsiz, ysiz, xosiz, yosiz) = (field(0), field(1), field(2), field(3));
    let (xtsiz, ytsiz, xtosiz, ytosiz) = (field(4), field(5), field(6), field(7));
    let csiz = usize::from(be_u16(&siz[34..]));
    if rsiz & 0x4000 != 0 {
        return Err("HTJ2K codestreams are not decoded".into());
    }
    if csiz != components || siz.len() != 36 + 3 * csiz {
        return Err(format!(
            "codestream has {csiz} components, the header {components}"
        ));
    }
    for comp in siz[36..].chunks_exact(3) {
        if comp != [7, 1, 1] {
            return Err("components are not 8-bit unsigned at full resolution".into());
        }
    }
    if xosiz >= xsiz || yosiz >= ysiz {
        return Err("empty image area".into());
    }
    let (width, height) = (xsiz - xosiz, ysiz - yosiz);
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS {
        return Err(format!(
            "{width}x{height} is more than {MAX_DECODE_PIXELS} pixels"
        ));
    }
    // The tile grid must start at or before the image and its first tile
    // reach into it (as the standard requires; OpenJPEG checks it too).
    if xtsiz == 0 || ytsiz == 0 || xtosiz > xosiz || ytosiz > yosiz {
        return Err("invalid tile grid".into());
    }
    if u64::from(xtosiz) + u64::from(xtsiz) <= u64::from(xosiz)
        || u64::from(ytosiz) + u64::from(ytsiz) <= u64::from(yosiz)
    {
        return Err("invalid tile grid".into());
    }
    if u64::from(xtsiz.min(width)) * u64::from(ytsiz.min(height)) > MAX_DECODE_TILE_PIXELS {
        return Err(format!("{xtsiz}x{ytsiz} tiles are too large"));
    }
    let tiles =
        u64::from((xsiz - xtosiz).div_ceil(xtsiz)) * u64::from((ysiz - ytosiz).div_ceil(ytsiz));
    // Tile indices (Isot) are 16-bit.
    if tiles > 65_535 {
        return Err(format!("{tiles} tiles"));
    }
    let tiles = tiles as usize;

    let check_segment = |marker: u16, segment: &[u8]| -> Result<(), String> {
        // Offset of the code-block style byte: COD has Scod, SGcod (4
        // bytes), then levels, width, height; COC has the component index
        // (2 bytes with more than 256 components), Scoc, then the same.
        let style_at = match marker {
            COD => 8,
            COC if csiz > 256 => 6,
            COC => 5,
            CAP => return Err("HTJ2K or Part 2 capabilities (CAP marker)".into()),
            _ => return Ok(()),
        };
        let style = *segment.get(style_at).ok_or("short COD/COC marker")?;
        // 0x40: HT code-blocks; 0x80: mixed HT.
        if style & 0xC0 != 0 {
            return Err("HTJ2K code-blocks are not decoded".into());
        }
        Ok(())
    };
    // Main header: marker segments up to the first SOT.
    loop {
        match r.u16()? {
            SOT => break,
            marker if marker >= 0xFF40 && marker != SOD && marker != EOC && marker != SOC => {
                check_segment(marker, r.segment()?)?
            }
            marker => {
                return Err(format!(
                    "unexpected marker {marker:#06x} in the main header"
                ))
            }
        }
    }
    // Tile-parts: SOT, marker segments, SOD, data.
    loop {
        let start = r.pos - 2;
        let sot = r.segment()?;
        if sot.len() != 8 {
            return Err("malformed SOT marker".into());
        }
        let (index, length) = (usize::from(be_u16(sot)), be_u32(&sot[2..]) as usize);
        if index >= tiles {
            return Err(format!("tile {index} of {tiles}"));
        }
        loop {
            match r.u16()? {
                SOD => break,
                marker if marker >= 0xFF40 && marker != SOT && marker != EOC && marker != SOC => {
                    check_segment(marker, r.segment()?)?
                }
                marker => {
                    return Err(format!(
                        "unexpected marker {marker:#06x} in a tile-part header"
                    ))
                }
            }
        }
        if length == 0 {
            // The last tile-part runs to the EOC that ends the codestream.
            return if cs.ends_with(&EOC.to_be_bytes()) && r.pos <= cs.len() - 2 {
                Ok(Siz {
                    x0: xosiz,
                    y0: yosiz,
                    width,
                    height,
                    tiles,
                })
            } else {
                Err("codestream does not end with EOC".into())
            };
        }
        let next = start
            .checked_add(length)
            .filter(|&next| next >= r.pos && next <= cs.len());
        r.pos = next.ok_or("tile-part length out of range")?;
        match r.u16()? {
            SOT => continue,
            // Bytes after EOC are ignored (so does OpenJPEG).
            EOC => {
                return Ok(Siz {
                    x0: xosiz,
                    y0: yosiz,
                    width,
                    height,
                    tiles,
                })
            }
            marker => return Err(format!("unexpected marker {marker:#06x} after a tile-part")),
        }
    }
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

/// The codestream OpenJPEG reads, and how far it has.
struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

// Input stream callbacks, called by C: no panics (no fallible indexing).

unsafe extern "C" fn source_read(buffer: *mut c_void, len: usize, user: *mut c_void) -> usize {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return STREAM_ERROR;
    };
    let rest = source.data.get(source.pos..).unwrap_or(&[]);
    let n = len.min(rest.len());
    if n == 0 {
        return STREAM_ERROR; // end of stream
    }
    // SAFETY: OpenJPEG passes a buffer of `len` >= `n` writable bytes.
    unsafe { ptr::copy_nonoverlapping(rest.as_ptr(), buffer.cast::<u8>(), n) };
    source.pos += n;
    n
}

unsafe extern "C" fn source_skip(offset: i64, user: *mut c_void) -> i64 {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return -1;
    };
    // OpenJPEG never skips past the length it was given; clamp anyway.
    let target = i64::try_from(source.pos)
        .ok()
        .and_then(|pos| pos.checked_add(offset))
        .map(|pos| pos.clamp(0, source.data.len() as i64));
    match target {
        Some(target) => {
            let skipped = target - source.pos as i64;
            source.pos = target as usize;
            if skipped == 0 && offset != 0 {
                -1
            } else {
                skipped
            }
        }
        None => -1,
    }
}

unsafe extern "C" fn source_seek(offset: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return 0;
    };
    match usize::try_from(offset) {
        Ok(pos) if pos <= source.data.len() => {
            source.pos = pos;
            1
        }
        _ => 0,
    }
}
