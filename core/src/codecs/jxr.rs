//! JPEG XR (for Internet Explorer 9-11 and EdgeHTML Edge) through jxrlib:
//! Debian's `libjxr` (a 2017 snapshot of Microsoft's reference code),
//! bound by bindgen in `build.rs` and linked as a shared library. Its
//! package, `libjxr0` (`libjxrglue.so.0`, `libjpegxr.so.0`), is therefore a
//! runtime dependency of whatever links this crate, the nginx module
//! included.
//!
//! What is used of jxrlib: its "glue" encoder object (`PKImageEncode`,
//! which writes the TIFF-like container: pixel format, size, ICC profile,
//! image and alpha planes) fed with our pixels in one call, writing to a
//! stream object of our own that keeps the bytes in memory. The encoder
//! writes the container header first with placeholders and seeks back to
//! patch the image and alpha sizes at the end, so the stream supports
//! seeking, and the output is everything up to the furthest byte written
//! (not the position the encoder last left the stream at).
//!
//! jxrlib never calls `exit()` (its shared libraries import no such
//! symbol), but it has C `assert`s and prints (to stdout, with `printf`)
//! the reason for a few argument errors; [`encode`] validates what it
//! passes so that those paths are not reached.
//!
//! [`decode`] reads back what [`encode`] writes, in process, for the
//! quality guard (which scores each encoded candidate against the source):
//! jxrlib's glue decoder object (`PKImageDecode`) over the same kind of
//! in-memory stream, after the container and the image headers have been
//! checked here (see [`decode`] for why).

use std::ffi::c_void;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::bytes::{be_u16, be_u32, le_u16, le_u32};
use super::{interpolate, panic_message, Image};
use crate::KeepReason;

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/jxrlib_bindings.rs"));
}

/// Largest width or height accepted. jxrlib's own limit is 2^28 (beyond
/// it refuses with a `printf`); requests are far smaller anyway (see
/// `Limits::max_pixels`), and this keeps the products below in range.
pub const JXR_MAX_SIDE: u32 = 1 << 20;

/// The encoder's knobs that [`encode`] derives from the quality.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Settings {
    /// Quantiser index of the luma (Y) channel, 1 (lossless) to 255. The
    /// step size is the index itself up to 16, then doubles every 16.
    luma_qp: u8,
    /// Quantiser index of both chroma channels (Co, Cg).
    chroma_qp: u8,
}

impl Settings {
    /// The luma index follows a curve derived on the 40 photos of the test
    /// corpus: for each WebP quality, the mean SSIM WebP reaches (our
    /// `metrics::ssim`), then the index at which JPEG XR reaches the same
    /// mean SSIM, so that a quality number means about the same structural
    /// fidelity in both formats (q85 -> 34, q75 -> 45, q50 -> ~53). Chroma is
    /// quantised 8 steps coarser: of the offsets tried (0, 8, and 8 or 16
    /// with 4:2:0 subsampling), 8 at 4:4:4 gave the smallest files at
    /// equal PSNR.
    fn for_quality(quality: u8) -> Settings {
        const CURVE: [(f32, f32); 7] = [
            (0.0, 84.0),
            (20.0, 66.0),
            (40.0, 56.0),
            (75.0, 45.0),
            (85.0, 34.0),
            (95.0, 16.0),
            (100.0, 10.0),
        ];
        let luma = interpolate(&CURVE, f32::from(quality.clamp(1, 100))).round();
        Settings {
            luma_qp: luma.clamp(2.0, 255.0) as u8,
            chroma_qp: (luma + CHROMA_QP_OFFSET).clamp(2.0, 255.0) as u8,
        }
    }
}

const CHROMA_QP_OFFSET: f32 = 8.0;

/// Quantiser index of the alpha plane, whatever the quality: alpha values
/// move by at most ~3/255, which cannot be seen, and files are less than
/// half the size of lossless alpha (index 1), whose coding is poor: on the
/// corpus's transparent PNGs, lossless alpha made JPEG XR files 1.8 times
/// the PNG's size on average, index 8 0.8 times.
const ALPHA_QP: u8 = 8;

/// Encodes `img` as JPEG XR at `quality` (1-100, higher is better and
/// bigger; even 100 is lossy), alpha as a separate, finely quantised plane
/// (see `ALPHA_QP`), embedding `img.icc_profile` if there is one.
///
/// The quality mapping is explained at `Settings::for_quality`.
pub fn encode(img: &Image, quality: u8) -> Result<Vec<u8>, KeepReason> {
    encode_with(img, Settings::for_quality(quality))
}

fn encode_with(img: &Image, settings: Settings) -> Result<Vec<u8>, KeepReason> {
    if !img.is_consistent() {
        return Err(error("pixel buffer does not match the dimensions"));
    }
    if img.width == 0 || img.height == 0 || img.width > JXR_MAX_SIDE || img.height > JXR_MAX_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "{}x{} is outside JPEG XR's 1..={JXR_MAX_SIDE} pixels per side",
            img.width, img.height
        )));
    }
    let icc_len = match &img.icc_profile {
        Some(icc) => u32::try_from(icc.len()).map_err(|_| error("ICC profile too large"))?,
        None => 0,
    };
    // The stride is passed as a U32.
    let stride = u32::try_from(img.width as usize * img.channels())
        .map_err(|_| KeepReason::Unsupported("row too long for JPEG XR".into()))?;

    // jxrlib is C: a panic can only come from our side of it, but nothing
    // may unwind out of here.
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: arguments validated above; see encode_unchecked.
        unsafe { encode_unchecked(img, settings, stride, icc_len) }
    }))
    .unwrap_or_else(|payload| Err(KeepReason::Panic(panic_message(&*payload))))
}

fn error(what: &str) -> KeepReason {
    KeepReason::Encode(format!("JPEG XR: {what}"))
}

/// Maps a jxrlib error code to a reason.
fn check(err: ffi::ERR, what: &str) -> Result<(), KeepReason> {
    if err == ffi::ERR::from(ffi::WMP_errSuccess) {
        return Ok(());
    }
    let name = match err {
        -1 => "failure",
        -101 => "out of memory",
        -102 => "I/O error",
        -103 => "output too large",
        -104 | -105 => "invalid argument",
        -106 => "unsupported format",
        _ => "error",
    };
    Err(error(&format!("{what}: {name} ({err})")))
}

/// # Safety
/// `img` must be consistent with 1..=JXR_MAX_SIDE pixels per side, `stride`
/// its row length in bytes, `icc_len` the length of its ICC profile.
unsafe fn encode_unchecked(
    img: &Image,
    settings: Settings,
    stride: u32,
    icc_len: u32,
) -> Result<Vec<u8>, KeepReason> {
    let mut sink = Box::new(Sink::default());
    let mut stream = Box::new(new_stream(&mut sink));

    let mut encoder = Encoder(ptr::null_mut());
    // SAFETY: creates an encoder object we own (released by Encoder::drop).
    check(
        unsafe { ffi::PKImageEncode_Create_WMP(&mut encoder.0) },
        "creating the encoder",
    )?;
    if encoder.0.is_null() {
        return Err(error("creating the encoder: no encoder"));
    }
    // SAFETY: non-null, valid until released.
    let enc = unsafe { &mut *encoder.0 };

    // SAFETY: plain integers, enums and pointers: all-zero is valid (and
    // what the reference encoder starts from).
    let mut params: ffi::CWMIStrCodecParam = unsafe { mem::zeroed() };
    params.bVerbose = 0; // verbose mode prints to stdout
                         // Full-resolution chroma: at equal PSNR, 4:2:0 made bigger files (and
                         // blurs coloured edges in graphics).
    params.cfColorFormat = ffi::YUV_444;
    params.bdBitDepth = ffi::BD_LONG;
    // Spatial order, one tile: the codec writes straight to our stream
    // (the frequency order buffers each band and, for huge images, uses
    // temporary files).
    params.bfBitstreamFormat = ffi::SPATIAL;
    params.bProgressiveMode = 0;
    // One level of the overlap filter: fewer block edges than none, and
    // two levels refuse narrow images with subsampled chroma.
    params.olOverlap = ffi::OL_ONE;
    params.sbSubband = ffi::SB_ALL;
    params.uiDefaultQPIndex = settings.luma_qp;
    params.uiDefaultQPIndexU = settings.chroma_qp;
    params.uiDefaultQPIndexV = settings.chroma_qp;
    // 2: alpha as a separate plane (with its own quantiser), 0: none.
    params.uAlphaMode = if img.has_alpha { 2 } else { 0 };
    params.uiDefaultQPIndexAlpha = ALPHA_QP;

    let initialize = enc.Initialize.ok_or_else(|| error("no Initialize"))?;
    // SAFETY: `stream` outlives the encoder (released below, before the
    // boxes drop); the encoder copies `params`.
    check(
        unsafe {
            initialize(
                enc,
                &mut *stream,
                (&mut params as *mut ffi::CWMIStrCodecParam).cast::<c_void>(),
                mem::size_of::<ffi::CWMIStrCodecParam>(),
            )
        },
        "initialising",
    )?;
    // The alpha plane is coded by a second codec configured from a copy of
    // the parameters: give it its own, fine quantiser.
    enc.WMP.wmiSCP_Alpha.uiDefaultQPIndex = ALPHA_QP;
    enc.WMP.wmiSCP_Alpha.uiDefaultQPIndexYLP = ALPHA_QP;
    enc.WMP.wmiSCP_Alpha.uiDefaultQPIndexYHP = ALPHA_QP;
    enc.WMP.wmiSCP_Alpha.uiDefaultQPIndexU = 0;
    enc.WMP.wmiSCP_Alpha.uiDefaultQPIndexV = 0;

    let format = if img.has_alpha {
        // SAFETY: an immutable GUID exported by libjxrglue.
        unsafe { ffi::GUID_PKPixelFormat32bppRGBA }
    } else {
        // SAFETY: as above.
        unsafe { ffi::GUID_PKPixelFormat24bppRGB }
    };
    let set_format = enc
        .SetPixelFormat
        .ok_or_else(|| error("no SetPixelFormat"))?;
    // SAFETY: valid encoder, GUID passed by value.
    check(
        unsafe { set_format(enc, format) },
        "setting the pixel format",
    )?;
    let set_size = enc.SetSize.ok_or_else(|| error("no SetSize"))?;
    // SAFETY: valid encoder; sizes fit I32 (<= 2^20).
    check(
        unsafe { set_size(enc, img.width as i32, img.height as i32) },
        "setting the size",
    )?;
    let set_resolution = enc.SetResolution.ok_or_else(|| error("no SetResolution"))?;
    // SAFETY: valid encoder.
    check(
        unsafe { set_resolution(enc, 96.0, 96.0) },
        "setting the resolution",
    )?;
    if let Some(icc) = &img.icc_profile {
        let set_icc = enc
            .SetColorContext
            .ok_or_else(|| error("no SetColorContext"))?;
        // SAFETY: the encoder copies `icc_len` bytes from `icc`.
        check(
            unsafe { set_icc(enc, icc.as_ptr(), icc_len) },
            "setting the ICC profile",
        )?;
    }

    // The encoder takes a mutable pointer; give it a copy we own rather
    // than casting away the constness of `img.pixels` (the reference code
    // only reads it, but nothing promises that).
    let mut pixels = img.pixels.clone();
    let write_pixels = enc.WritePixels.ok_or_else(|| error("no WritePixels"))?;
    // SAFETY: `pixels` holds `height` rows of `stride` bytes in the pixel
    // format set above.
    check(
        unsafe { write_pixels(enc, img.height, pixels.as_mut_ptr(), stride) },
        "encoding",
    )?;
    drop(pixels);

    // Releasing the encoder closes the stream (a no-op for ours).
    drop(encoder);
    drop(stream);
    if sink.overflow {
        return Err(error("output too large"));
    }
    Ok(mem::take(&mut sink.bytes))
}

/// Owns a jxrlib encoder object; releasing it also "closes" its stream.
struct Encoder(*mut ffi::PKImageEncode);

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // Release closes the encoder's stream, dereferencing the pointer:
        // if encoding failed before our stream was attached, give it one
        // whose Close does nothing.
        let mut placeholder = ffi::WMPStream {
            state: ffi::WMPStream__bindgen_ty_1 {
                pvObj: ptr::null_mut(),
            },
            fMem: 0,
            Close: Some(stream_close),
            EOS: None,
            Read: None,
            Write: None,
            SetPos: None,
            GetPos: None,
        };
        // SAFETY: a live encoder created by PKImageEncode_Create_WMP;
        // Release frees it (and whatever it copied) and closes the stream.
        unsafe {
            let enc = &mut *self.0;
            if enc.pStream.is_null() {
                enc.pStream = &mut placeholder;
            }
            if let Some(release) = enc.Release {
                release(&mut self.0);
            }
        }
        self.0 = ptr::null_mut();
    }
}

/// Where the encoder's output goes: bytes written at `pos`, growing the
/// buffer (zero-filled) as needed. `bytes.len()` is the high-water mark.
#[derive(Default)]
struct Sink {
    bytes: Vec<u8>,
    pos: usize,
    /// A write would have passed [`MAX_OUTPUT`].
    overflow: bool,
}

/// jxrlib's container uses 32-bit offsets.
const MAX_OUTPUT: usize = i32::MAX as usize;

fn new_stream(sink: &mut Sink) -> ffi::WMPStream {
    ffi::WMPStream {
        state: ffi::WMPStream__bindgen_ty_1 {
            pvObj: (sink as *mut Sink).cast::<c_void>(),
        },
        fMem: 0,
        Close: Some(stream_close),
        EOS: Some(stream_eos),
        Read: Some(stream_read),
        Write: Some(stream_write),
        SetPos: Some(stream_set_pos),
        GetPos: Some(stream_get_pos),
    }
}

const OK: ffi::ERR = ffi::WMP_errSuccess as ffi::ERR;
const FILE_IO: ffi::ERR = ffi::WMP_errFileIO as ffi::ERR;
const OVERFLOW: ffi::ERR = ffi::WMP_errBufferOverflow as ffi::ERR;

/// # Safety
/// `me` is a stream made by [`new_stream`] whose sink is alive and not
/// otherwise borrowed.
unsafe fn sink<'a>(me: *mut ffi::WMPStream) -> Option<&'a mut Sink> {
    // SAFETY: per the contract, pvObj points to a live Sink.
    unsafe { me.as_ref()?.state.pvObj.cast::<Sink>().as_mut() }
}

// The callbacks below are called by C: they must not panic (a panic cannot
// unwind through C), so they use no indexing that could fail.

unsafe extern "C" fn stream_close(pme: *mut *mut ffi::WMPStream) -> ffi::ERR {
    // The stream and its sink belong to encode_unchecked: nothing to free.
    if !pme.is_null() {
        // SAFETY: jxrlib passes the address of its stream pointer.
        unsafe { *pme = ptr::null_mut() };
    }
    OK
}

unsafe extern "C" fn stream_eos(me: *mut ffi::WMPStream) -> ffi::Bool {
    // SAFETY: called by jxrlib on our stream.
    match unsafe { sink(me) } {
        Some(s) => ffi::Bool::from(s.pos >= s.bytes.len()),
        None => 1,
    }
}

/// Reads `cb` bytes; at the end of the data, what is left (the rest of the
/// buffer zeroed) and an error, as jxrlib's file stream does (`fread`):
/// the decoder's bit reader fills its buffer with fixed-size reads however
/// little is left, ignores the error, and uses only the bytes that exist.
/// (All-or-nothing reads left it decoding zeros: small files failed.)
unsafe extern "C" fn stream_read(me: *mut ffi::WMPStream, pv: *mut c_void, cb: usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if cb == 0 {
        return OK;
    }
    if pv.is_null() {
        return FILE_IO;
    }
    let src = s.bytes.get(s.pos..).unwrap_or(&[]);
    let n = cb.min(src.len());
    // SAFETY: jxrlib gives a writable buffer of `cb` >= `n` bytes.
    unsafe {
        ptr::copy_nonoverlapping(src.as_ptr(), pv.cast::<u8>(), n);
        ptr::write_bytes(pv.cast::<u8>().add(n), 0, cb - n);
    }
    s.pos += n;
    if n == cb {
        OK
    } else {
        FILE_IO
    }
}

unsafe extern "C" fn stream_write(
    me: *mut ffi::WMPStream,
    pv: *const c_void,
    cb: usize,
) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if cb == 0 {
        return OK;
    }
    let end = match s.pos.checked_add(cb) {
        Some(end) if end <= MAX_OUTPUT => end,
        _ => {
            s.overflow = true;
            return OVERFLOW;
        }
    };
    if end > s.bytes.len() {
        s.bytes.resize(end, 0);
    }
    if let Some(dst) = s.bytes.get_mut(s.pos..end) {
        // SAFETY: jxrlib gives `cb` readable bytes at `pv`.
        let src = unsafe { std::slice::from_raw_parts(pv.cast::<u8>(), cb) };
        dst.copy_from_slice(src);
    }
    s.pos = end;
    OK
}

unsafe extern "C" fn stream_set_pos(me: *mut ffi::WMPStream, pos: usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if pos > MAX_OUTPUT {
        s.overflow = true;
        return OVERFLOW;
    }
    // Past the end is allowed: a later write fills the gap with zeros.
    s.pos = pos;
    OK
}

unsafe extern "C" fn stream_get_pos(me: *mut ffi::WMPStream, pos: *mut usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if pos.is_null() {
        return FILE_IO;
    }
    // SAFETY: jxrlib passes a writable size_t.
    unsafe { *pos = s.pos };
    OK
}

// ---------------------------------------------------------------------------
// Decoding

/// Largest image [`decode`] accepts, in pixels: its output alone is then
/// up to 256 MiB (RGBA). Requests are far smaller (`Limits::max_pixels`).
pub const MAX_DECODE_PIXELS: u64 = 64 << 20;

/// Decodes a JPEG XR file of the kind [`encode`] writes: 24bppRGB, or
/// 32bppRGBA with the alpha as a separate image plane, 8 bits per sample,
/// with or without an ICC profile (returned, not applied). Anything else
/// (other pixel formats, rotation, metadata other than an ICC profile or
/// XMP, interleaved alpha, more than [`MAX_DECODE_PIXELS`]) is an `Err`, as
/// is a truncated file; this never panics.
///
/// Used by the quality guard to score encoded candidates in process, so it
/// must give what a browser would show: the samples are jxrlib's, decoded
/// as its `JxrDecApp` does (same decoder settings; pixel-identical, checked
/// by `tests/legacy_formats.rs`).
///
/// Why the checks before jxrlib: it is built with C asserts on, and some
/// depend on the file (an orientation tag of 8 or more, descriptive
/// metadata of an unexpected type), i.e. would abort the process; it
/// prints unknown container tags to stderr; and it takes the image size
/// from the image header. So the container (every tag known and harmless,
/// offsets and lengths within the file) and the image headers of the
/// colour and alpha planes (signature, version, colour format, bit depth,
/// size) are parsed here first, and must agree with each other; jxrlib
/// then reads only byte ranges known to exist, and is told to write the
/// file's own pixel format (no conversion paths). It has no
/// `exit`/`longjmp`, and reports errors by return value.
///
/// What remains is the entropy-coded data, which jxrlib (unmaintained
/// since 2017) decodes without bounds checks: corrupted coded data can
/// crash the process (the tests found a segfault in `DecodeSignificantRun`
/// after flipping one byte). So this is for files we produced, never for
/// untrusted input.
///
/// If decoding fails halfway, jxrlib leaks the codec state of the plane it
/// was decoding (its cleanup is skipped on that path); files we produced
/// do not fail.
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    catch_unwind(AssertUnwindSafe(|| decode_inner(bytes)))
        .unwrap_or_else(|payload| Err(format!("panic: {}", panic_message(&*payload))))
        .map_err(|e| format!("JPEG XR: {e}"))
}

fn decode_inner(bytes: &[u8]) -> Result<Image, String> {
    let container = parse_container(bytes)?;
    let header = parse_plane_header(container.image, ffi::CF_RGB as u8)?;
    if let Some(alpha) = container.alpha {
        let alpha = parse_plane_header(alpha, ffi::Y_ONLY as u8)?;
        if (alpha.width, alpha.height) != (header.width, header.height) {
            return Err("the alpha plane's size differs from the image's".into());
        }
    }
    if container.width.is_some_and(|w| w != header.width)
        || container.height.is_some_and(|h| h != header.height)
    {
        return Err("container and image header disagree on the size".into());
    }
    let (width, height) = (header.width, header.height);
    if u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS
        || width > JXR_MAX_SIDE
        || height > JXR_MAX_SIDE
    {
        return Err(format!("{width}x{height} is too large to decode"));
    }
    let has_alpha = container.alpha.is_some();
    // SAFETY: the container and headers were checked above.
    let pixels = unsafe { decode_unchecked(bytes, width, height, has_alpha)? };
    Ok(Image {
        width,
        height,
        pixels,
        has_alpha,
        icc_profile: container.icc_profile,
    })
}

/// What [`parse_container`] found.
struct Container<'a> {
    /// The colour plane's bytes (`ImageOffset`, `ImageByteCount`).
    image: &'a [u8],
    /// The alpha plane's bytes, for 32bppRGBA.
    alpha: Option<&'a [u8]>,
    /// The `ImageWidth` and `ImageHeight` tags, if present.
    width: Option<u32>,
    height: Option<u32>,
    icc_profile: Option<Vec<u8>>,
}

/// The 16 bytes of a pixel format GUID as the container stores it
/// (Data1-3 little-endian, then Data4).
fn guid_bytes(guid: &ffi::GUID) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&guid.Data1.to_le_bytes());
    out[4..6].copy_from_slice(&guid.Data2.to_le_bytes());
    out[6..8].copy_from_slice(&guid.Data3.to_le_bytes());
    out[8..].copy_from_slice(&guid.Data4);
    out
}

/// Parses the container (a TIFF-like directory: "II", 0xBC, version 0 or
/// 1, then entries of tag, type, count, value), accepting only tags
/// jxrlib handles harmlessly and only byte ranges within `bytes`.
fn parse_container(bytes: &[u8]) -> Result<Container<'_>, String> {
    if bytes.len() < 8 || &bytes[..3] != b"II\xBC" || bytes[3] > 1 {
        return Err("not a JPEG XR file".into());
    }
    let range = |offset: u32, len: u32| -> Result<&[u8], String> {
        super::bytes::range(bytes, offset as usize, len as usize)
            .ok_or_else(|| "container points past the end of the file".to_owned())
    };
    let directory = le_u32(&bytes[4..]);
    let count = le_u16(range(directory, 2)?);
    if count == 0 || count == u16::MAX {
        return Err("empty container directory".into());
    }
    let entries = range(
        directory.checked_add(2).ok_or("bad directory offset")?,
        12 * u32::from(count),
    )?;
    let (mut format, mut width, mut height, mut icc_profile) = (None, None, None, None);
    let (mut image_offset, mut image_len, mut alpha_offset, mut alpha_len) =
        (None, None, None, None);
    for entry in entries.chunks_exact(12) {
        let (tag, count, value) = (le_u16(entry), le_u32(&entry[4..]), le_u32(&entry[8..]));
        let single = |field: &mut Option<u32>| {
            if count != 1 || field.is_some() {
                return Err(format!("malformed container tag {tag:#06x}"));
            }
            *field = Some(value);
            Ok(())
        };
        match tag {
            // Pixel format: a GUID stored at `value`.
            0xBC01 => format = Some(range(value, 16)?),
            // Orientation: jxrlib asserts it is below 8, and anything but
            // 0 would flip or rotate the decoded image.
            0xBC02 if count == 1 && value == 0 => {}
            0xBC02 => return Err("rotated or flipped images are not decoded".into()),
            0xBC80 => single(&mut width)?,
            0xBC81 => single(&mut height)?,
            0xBCC0 => single(&mut image_offset)?,
            0xBCC1 => single(&mut image_len)?,
            0xBCC2 => single(&mut alpha_offset)?,
            0xBCC3 => single(&mut alpha_len)?,
            0x8773 if icc_profile.is_none() && count > 4 => {
                icc_profile = Some(range(value, count)?.to_vec())
            }
            // Resolution (jxrlib refuses a count other than 1), XMP,
            // compression, image type, discarded data: recorded or
            // ignored by jxrlib, and by us.
            0xBC82 | 0xBC83 if count == 1 => {}
            0x02BC | 0xBC03 | 0xBC04 | 0xBCC4 | 0xBCC5 => {}
            _ => return Err(format!("unsupported container tag {tag:#06x}")),
        }
    }
    // SAFETY (both): immutable GUIDs exported by libjxrglue.
    let rgb = guid_bytes(unsafe { &ffi::GUID_PKPixelFormat24bppRGB });
    let rgba = guid_bytes(unsafe { &ffi::GUID_PKPixelFormat32bppRGBA });
    let has_alpha = match format {
        Some(f) if f == rgb => false,
        Some(f) if f == rgba => true,
        Some(_) => return Err("pixel format is not 24bppRGB or 32bppRGBA".into()),
        None => return Err("no pixel format".into()),
    };
    let image = match (image_offset, image_len) {
        (Some(offset), Some(len)) if offset > 0 && len > 0 => range(offset, len)?,
        _ => return Err("no image plane".into()),
    };
    let alpha = match (alpha_offset, alpha_len) {
        _ if !has_alpha => None,
        (Some(offset), Some(len)) if offset > 0 && len > 0 => Some(
            range(offset, len)
                // jxrlib's writer records the alpha plane's end offset as
                // its byte count (nCbAlpha + nOffAlpha), and its reader
                // only checks that it is not 0: accept both readings.
                .or_else(|e| match len.checked_sub(offset) {
                    Some(len) if len > 0 => range(offset, len),
                    _ => Err(e),
                })?,
        ),
        _ => return Err("no alpha plane".into()),
    };
    if width == Some(0) || height == Some(0) {
        return Err("image has no pixels".into());
    }
    Ok(Container {
        image,
        alpha,
        width,
        height,
        icc_profile,
    })
}

/// What [`parse_plane_header`] found.
struct PlaneHeader {
    width: u32,
    height: u32,
}

/// Checks the start of an image plane (JPEG XR's image header): the
/// "WMPHOTO" signature, codec version 1, no windowing, the `colour` format
/// (`CF_RGB` for the colour plane, `Y_ONLY` for alpha) at 8 bits, and
/// returns its size.
fn parse_plane_header(plane: &[u8], colour: u8) -> Result<PlaneHeader, String> {
    let fixed = plane.get(..12).ok_or("truncated image header")?;
    if &fixed[..8] != b"WMPHOTO\0" {
        return Err("no image header signature".into());
    }
    if fixed[8] >> 4 != 1 {
        return Err("unknown codec version".into());
    }
    let flags = fixed[10];
    let (short_header, windowing) = (flags & 0x80 != 0, flags & 0x20 != 0);
    if windowing {
        return Err("windowed images are not decoded".into());
    }
    let (format, depth) = (fixed[11] >> 4, fixed[11] & 0x0F);
    if format != colour || depth != ffi::BD_8 as u8 {
        return Err(format!(
            "colour format {format} / bit depth {depth} is not 8-bit {}",
            if colour == ffi::Y_ONLY as u8 {
                "grey"
            } else {
                "RGB"
            }
        ));
    }
    // Width and height minus 1, big-endian, 16 or 32 bits each.
    let (width, height) = if short_header {
        let b = plane.get(12..16).ok_or("truncated image header")?;
        (u32::from(be_u16(b)) + 1, u32::from(be_u16(&b[2..])) + 1)
    } else {
        let b = plane.get(12..20).ok_or("truncated image header")?;
        let field = |i: usize| be_u32(&b[i..]).checked_add(1);
        match (field(0), field(4)) {
            (Some(w), Some(h)) => (w, h),
            _ => return Err("image too large".into()),
        }
    };
    Ok(PlaneHeader { width, height })
}

/// # Safety
/// `bytes` must have passed [`parse_container`] and its planes
/// [`parse_plane_header`], giving `width` x `height` (within
/// [`MAX_DECODE_PIXELS`]) and `has_alpha`.
unsafe fn decode_unchecked(
    bytes: &[u8],
    width: u32,
    height: u32,
    has_alpha: bool,
) -> Result<Vec<u8>, String> {
    let channels: u32 = if has_alpha { 4 } else { 3 };
    // The stream callbacks work on a Sink; reading from a copy of the file
    // costs one copy of the compressed bytes.
    let mut sink = Box::new(Sink {
        bytes: bytes.to_vec(),
        pos: 0,
        overflow: false,
    });
    let mut stream = Box::new(new_stream(&mut sink));

    let mut decoder = Decoder(ptr::null_mut());
    // SAFETY: creates a decoder object we own (released by Decoder::drop).
    let created = unsafe { ffi::PKImageDecode_Create_WMP(&mut decoder.0) };
    check_decode(created, "creating the decoder")?;
    if decoder.0.is_null() {
        return Err("creating the decoder: no decoder".into());
    }
    // SAFETY: non-null, valid until released.
    let dec = unsafe { &mut *decoder.0 };
    let initialize = dec.Initialize.ok_or("no Initialize")?;
    // SAFETY: `stream` outlives the decoder (released first: declared
    // after). Reads the container and the colour plane's header.
    check_decode(
        unsafe { initialize(dec, &mut *stream) },
        "reading the headers",
    )?;
    if (dec.uWidth, dec.uHeight) != (width, height) || (dec.WMP.bHasAlpha != 0) != has_alpha {
        return Err("the decoder read other headers".into());
    }

    // The settings JxrDecApp makes for an output in the file's own pixel
    // format (its defaults: all subbands, no post-processing, the whole
    // image at full resolution, no rotation, alpha decoded when present).
    let wmp = &mut dec.WMP;
    wmp.wmiSCP.bfBitstreamFormat = ffi::SPATIAL;
    wmp.wmiSCP.uAlphaMode = if has_alpha { 2 } else { 0 };
    wmp.wmiSCP.sbSubband = ffi::SB_ALL;
    wmp.wmiSCP.bVerbose = 0; // verbose mode prints to stdout
    wmp.bIgnoreOverlap = 0;
    wmp.wmiI.cfColorFormat = ffi::CF_RGB;
    wmp.wmiI.bdBitDepth = ffi::BD_8;
    wmp.wmiI.cBitsPerUnit = channels as usize * 8;
    wmp.wmiI.cThumbnailWidth = wmp.wmiI.cWidth;
    wmp.wmiI.cThumbnailHeight = wmp.wmiI.cHeight;
    wmp.wmiI.bSkipFlexbits = 0;
    wmp.wmiI.cROILeftX = 0;
    wmp.wmiI.cROITopY = 0;
    wmp.wmiI.cROIWidth = wmp.wmiI.cThumbnailWidth;
    wmp.wmiI.cROIHeight = wmp.wmiI.cThumbnailHeight;
    wmp.wmiI.oOrientation = ffi::O_NONE;
    wmp.wmiI.cPostProcStrength = 0;
    if (wmp.wmiI.cROIWidth, wmp.wmiI.cROIHeight) != (width as usize, height as usize) {
        return Err("the decoder read another size".into());
    }

    let stride = width * channels; // <= 2^22 (JXR_MAX_SIDE * 4)
    let len = stride as usize * height as usize;
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(len)
        .map_err(|_| format!("out of memory for {width}x{height} pixels"))?;
    pixels.resize(len, 0);
    let rect = ffi::PKRect {
        X: 0,
        Y: 0,
        Width: width as i32,
        Height: height as i32,
    };
    let copy = dec.Copy.ok_or("no Copy")?;
    // SAFETY: `pixels` holds `height` rows of `stride` bytes: the whole
    // image in the file's pixel format, which is what Copy writes for a
    // full-size rectangle (as JxrDecApp allocates it).
    check_decode(
        unsafe { copy(dec, &rect, pixels.as_mut_ptr(), stride) },
        "decoding",
    )?;
    drop(decoder);
    drop(stream);
    Ok(pixels)
}

/// [`check`] for decoding: the error as a message.
fn check_decode(err: ffi::ERR, what: &str) -> Result<(), String> {
    check(err, what).map_err(|reason| match reason {
        KeepReason::Encode(message) => message.trim_start_matches("JPEG XR: ").to_owned(),
        other => other.to_string(),
    })
}

/// Owns a jxrlib decoder object. It does not own its stream (its
/// `fStreamOwner` stays false), so releasing it leaves ours alone.
struct Decoder(*mut ffi::PKImageDecode);

impl Drop for Decoder {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: a live decoder created by PKImageDecode_Create_WMP;
        // Release frees it and what it allocated for metadata.
        unsafe {
            if let Some(release) = (*self.0).Release {
                release(&mut self.0);
            }
        }
        self.0 = ptr::null_mut();
    }
}
