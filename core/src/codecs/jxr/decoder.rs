//! The decoding half: [`decode`] checks the container and the image
//! headers, then has jxrlib's decoder object write the whole image in the
//! file's own pixel format.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::container::{parse_container, parse_plane_header};
use super::encoder::check;
use super::ffi;
use super::stream::{new_stream, Sink};
use super::{JXR_MAX_SIDE, MAX_DECODE_PIXELS};
use crate::codecs::{panic_message, Image};
use crate::KeepReason;

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
///
/// [`encode`]: super::encode
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, Stage::Pixels)))
        .unwrap_or_else(|payload| Err(format!("panic: {}", panic_message(&*payload))))
        .map_err(|e| format!("JPEG XR: {e}"))
}

/// What [`decode`] does up to the entropy-coded data: the checks of the
/// container and image headers, then jxrlib's decoder object reading them
/// and being set up, but no pixel decoded. The size and whether there is
/// alpha, or why not.
///
/// For the fuzz target (`fuzz/`), which runs it on arbitrary bytes: the
/// rest of [`decode`] is not safe on them (see there), but everything up
/// to it must be, since it is what stands between jxrlib and a file.
pub fn read_headers(bytes: &[u8]) -> Result<(u32, u32, bool), String> {
    catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, Stage::Headers)))
        .unwrap_or_else(|payload| Err(format!("panic: {}", panic_message(&*payload))))
        .map(|image| (image.width, image.height, image.has_alpha))
        .map_err(|e| format!("JPEG XR: {e}"))
}

/// How far [`decode_inner`] goes.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// The headers only (no pixels in the image returned).
    Headers,
    Pixels,
}

fn decode_inner(bytes: &[u8], stage: Stage) -> Result<Image, String> {
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
    let pixels = unsafe { decode_unchecked(bytes, width, height, has_alpha, stage)? };
    Ok(Image {
        width,
        height,
        pixels,
        has_alpha,
        icc_profile: container.icc_profile,
    })
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
    stage: Stage,
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
    if stage == Stage::Headers {
        return Ok(Vec::new());
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
