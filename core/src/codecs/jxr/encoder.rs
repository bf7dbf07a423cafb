//! The encoding half: the quality to quantiser mapping ([`Settings`]) and
//! jxrlib's encoder object, fed our pixels in one call and writing to an
//! in-memory [`Sink`].

use std::ffi::c_void;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::ffi;
use super::stream::{new_stream, stream_close, Sink};
use super::JXR_MAX_SIDE;
use crate::codecs::{interpolate, panic_message, Image};
use crate::KeepReason;

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
pub(super) fn check(err: ffi::ERR, what: &str) -> Result<(), KeepReason> {
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
