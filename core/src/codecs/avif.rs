//! AVIF through the system's libavif (Debian `libavif-dev`, libavif 0.11)
//! with libaom as the AV1 encoder and dav1d as the decoder.
//!
//! # Why libavif + libaom from Debian
//!
//! Measured here (2 cores, one encoder thread, CPU time). Three corpus
//! photos (kde_coldripple, lom_picos, mate_wood, 0.9-1.6 MP), each encoder
//! at the quality that gives the PSNR (against the decoded JPEG) of
//! libwebp at q85:
//!
//! | encoder | speed | ms/MP | bytes (3 photos) |
//! |---|---|---|---|
//! | libaom 3.6 via libavif 0.11 (this module) | 6 | ~400 | 280 KB |
//! | libaom 3.6 via libavif 0.11 (this module) | 9 | ~25 | 354 KB |
//! | `ravif` 0.13 / rav1e 0.8 (pure Rust, 10-bit 4:4:4) | 6 | ~1200-1700 | 288 KB |
//! | `ravif` 0.13 / rav1e 0.8 | 10 | ~220 | 352 KB |
//!
//! At equal size and quality libaom is 3-4x faster than rav1e at the slow
//! end and ~8x at the fast end. Debian ships it prebuilt: linking the
//! system library adds one bindgen run (~0.5 s; bindgen itself is already
//! built for nginx-sys) instead of compiling rav1e (~3.5 min clean release
//! build here) or libaom from source with cmake/nasm. The price is a
//! runtime dependency: the module needs Debian's `libavif15` (which pulls
//! in `libaom3`, `libdav1d6`, `libgav1-1`, `librav1e0`, `libyuv0`,
//! `libsvtav1enc1`); building needs `libavif-dev` (and `libclang-dev`).
//!
//! libaom speed, CPU ms per megapixel at q63 (min of 3 runs, same photos):
//! 4: ~1900, 5: ~1300, **6: ~400**, **7: ~200**, 8: ~85, **9: ~25**
//! (10 = 9). Speed 8 is an outlier of libaom 3.6's all-intra mode: files
//! up to 75 % larger than at speed 9 at the same quality; don't use it.
//! Over the 36 corpus photos, at the PSNR of WebP q85 (which saves 38 %
//! on average there), AVIF saves on average 57 % at speed 6 (median
//! quality 68), 51 % at speed 7 (q74), 45 % at speed 9 (q74). AVIF's
//! quality scale is not WebP's: q85 here is far more faithful (and
//! larger) than WebP q85.
//!
//! Lossy alpha is also the faster choice: on the corpus' 10 alpha PNGs at
//! q65 speed 6, lossless alpha took 0.2-2.9 s/MP and saved 75 % of the
//! bytes in total; lossy alpha at q65 took 0.1-2.5 s/MP (about 30 % less)
//! and saved 90 %, with files 1-20x smaller (PSNR on black/white >= 40).
//!
//! # What is encoded
//!
//! 8-bit YUV, full range, BT.601 matrix; 4:2:0 by default (photos), 4:4:4
//! on request (graphics, text: no chroma bleeding on saturated edges).
//! Alpha is a separate monochrome AV1 image, lossy or lossless (see
//! [`Options::alpha_quality`]). An alpha plane that is entirely opaque is
//! not written (libavif checks). The ICC profile, if any, goes into a
//! `colr` box of type `prof`; without one the `nclx` box says sRGB
//! explicitly (BT.709 primaries, sRGB transfer).
//!
//! Alpha is full range, as the AVIF specification requires (`color_range`
//! = 1 in the alpha sequence header, no `colr` box on the alpha item;
//! checked in `tests/avif.rs`). Debian's Chromium (seen in 156) shows it
//! as limited range anyway (a -> (a - 16) * 255 / 219): its AVIF decoder
//! reads dav1d's `Dav1dSequenceHeader` with the layout of newer dav1d
//! headers (`color_range` a byte at offset 33) from the system libdav1d
//! 1.0.0 (an `int` at offset 36; offset 33 is inside `hbd`, always 0), so
//! it sees every alpha plane as limited range whatever the file says. No
//! file can satisfy both it and correct decoders: limited-range alpha would
//! be right there and in libavif, but it is against the specification and
//! Firefox ignores the flag (transparent would show as alpha 16/255).
//!
//! Lossless ([`Options::lossless`]): 4:4:4, identity matrix (the planes
//! carry G, B, R unchanged), quantizer 0 for colour and alpha, which
//! libavif 0.11 passes to libaom as lossless mode; it is the only lossless
//! RGB mode of libavif 0.11 (YCgCo-R came in 1.x). The matrix travels in
//! the `nclx` box and in the AV1 sequence header; with an ICC profile
//! there is no `nclx` box (libavif 0.11 writes one `colr` box), so
//! decoders must take it from the sequence header (libavif and `avifdec`
//! do). Exact round trips checked on all corpus PNGs through `avifdec`
//! (`examples/encoder_study.rs verify`). It is rarely worth it: on the
//! corpus PNGs the files are 1.1-8x larger than lossless WebP and mostly
//! larger than the PNG, at ~100-160 ms/MP at speed 9 and ~1.2 s/MP at 6.
//!
//! One encoder thread: nginx's thread pool already runs one image per
//! thread. libavif keeps its diagnostics in memory; nothing is printed.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::registry::{candidate_error, Codec, CodecWork, Effort, Encoding, Format, QualityScale};
use super::{panic_message, Image};
use crate::KeepReason;

/// AVIF in the registry: for clients whose `Accept` lists `image/avif`.
pub static CODEC: Codec = Codec {
    format: Format::Avif,
    name: "avif",
    mime: "image/avif",
    accept: &["image/avif"],
    quality: QualityScale {
        lossless: false,
        floor: 20,
        // Above q90 (AV1 quantizer 6) files only grow.
        default_ceiling: 90,
        configured_by: Format::Avif,
        qlt: &[
            (0, 0),
            (10, 9),
            (20, 24),
            (30, 34),
            (40, 40),
            (50, 45),
            (60, 49),
            (70, 53),
            (75, 57),
            (80, 62),
            (85, 70),
            (90, 79),
            (95, 89),
            (100, 99),
        ],
    },
    encode: encode_for,
    decode: |bytes, _| decode(bytes).map_err(|e| candidate_error(Format::Avif, e)),
    max_pixels: |tuning| Some(tuning.avif.max_pixels),
    cheaper_search: |tuning| tuning.avif.search_speed > tuning.avif.speed,
    work: CodecWork {
        encode: |encoding, alpha| {
            let work = SPEED_WORK[usize::from(speed(encoding).min(10))];
            // The alpha plane is a second AV1 image: ~2x on the corpus.
            if alpha {
                2.0 * work
            } else {
                work
            }
        },
        // ~5-7 ms/MP (dav1d).
        decode: 0.08,
    },
};

/// What an encode costs at each libaom speed (0..=10), in pixel-passes
/// per pixel (see [`crate::work`]: ms/MP / 80): on the corpus, ~370 ms/MP
/// at speed 6 on photos and ~500 on graphics (4:4:4), ~22-40 at 9; the
/// other speeds in proportion to speed 6, as measured on two small corpus
/// images with `core/examples/work_study.rs` (`AVIF_SPEEDS=1`): 0 51x,
/// 1 21x, 2 18x, 3 11x, 4 5x, 5 4x, 7 0.47x, 8 0.35x, 9 0.1x.
const SPEED_WORK: [f64; 11] = [
    300.0, 125.0, 105.0, 65.0, 30.0, 24.0, 6.0, 2.8, 1.5, 0.5, 0.5,
];

/// AVIF encoding is slow: bounded separately (`smart_imaging_avif_speed`,
/// `smart_imaging_avif_max_pixels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvifLimits {
    /// libaom speed (0 slowest .. 10 fastest) of the AVIF served.
    pub speed: u8,
    /// libaom speed of the guard's quality search. When faster than
    /// `speed`, the search runs at this speed and only the quality it finds
    /// is encoded at `speed` (and scored again): most of the search's
    /// encodes cost a fraction of a slow one.
    pub search_speed: u8,
    /// Larger images are not tried in AVIF (the next format is).
    pub max_pixels: u64,
}

impl AvifLimits {
    pub const DEFAULT: AvifLimits = AvifLimits {
        speed: 6,
        search_speed: 9,
        max_pixels: 4_000_000,
    };
}

/// The registry's encode: the search probes at the search speed, the
/// served encode at the configured one.
fn encode_for(image: &Image, encoding: &Encoding) -> Result<Vec<u8>, KeepReason> {
    let options = Options {
        // Full-resolution chroma for PNG sources: 4:2:0 smears the thin
        // coloured lines of graphics, and no lossy 4:2:0 encoding passes
        // the guard on some of them.
        chroma: if encoding.from_png {
            Chroma::Yuv444
        } else {
            Chroma::Yuv420
        },
        ..Options::new(encoding.quality, speed(encoding))
    };
    encode_with(image, &options)
}

/// The libaom speed of an encode.
fn speed(encoding: &Encoding) -> u8 {
    let limits = encoding.tuning.avif;
    match encoding.effort {
        Effort::Search => limits.search_speed.max(limits.speed),
        Effort::Final => limits.speed,
    }
}

#[allow(
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::all
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/avif_bindings.rs"));
}

/// Chroma resolution of the colour planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    /// Half resolution in both directions: the right choice for photos.
    Yuv420,
    /// Full resolution: for graphics, screenshots and text, where 4:2:0
    /// smears thin coloured lines. At the same quality setting it costs
    /// more bytes (5 % to 2x on corpus images); an RGB PSNR, which weighs
    /// chroma like luma, still tends to prefer it at equal size, but eyes
    /// see little of the chroma detail 4:2:0 drops in photos.
    Yuv444,
}

/// Encoder settings. [`Options::new`] gives the defaults for photos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Colour quality, 0-100 (100 is near-lossless), mapped linearly to
    /// AV1's quantizer 63..0 as libavif 1.x's `quality` does.
    pub quality: u8,
    /// Encoder speed, 0 (slowest, smallest) to 10 (fastest; same as 9).
    /// 6 (~400 ms/MP) or 7 (~200) for the best sizes, 9 (~25 ms/MP) for
    /// ~20 % larger files; avoid 8 (see the module documentation).
    pub speed: u8,
    /// Alpha quality on the same scale as `quality`; `None` encodes alpha
    /// losslessly. Lossy alpha is where most of the savings on images with
    /// soft edges or shadows come from; lossless keeps masks exact.
    /// Ignored for images without alpha.
    pub alpha_quality: Option<u8>,
    pub chroma: Chroma,
    /// Mathematically lossless RGB(A): colour and alpha at quantizer 0,
    /// 4:4:4 with the identity matrix (the planes are G, B, R as they
    /// are), full range. `quality`, `alpha_quality` and `chroma` are then
    /// ignored. See the module documentation for what it costs.
    pub lossless: bool,
}

impl Options {
    /// 4:2:0, alpha lossy at the colour quality.
    pub const fn new(quality: u8, speed: u8) -> Options {
        Options {
            quality,
            speed,
            alpha_quality: Some(quality),
            chroma: Chroma::Yuv420,
            lossless: false,
        }
    }

    /// Lossless at `speed` (see [`Options::lossless`]).
    pub const fn lossless(speed: u8) -> Options {
        Options {
            lossless: true,
            alpha_quality: None,
            chroma: Chroma::Yuv444,
            ..Options::new(100, speed)
        }
    }
}

/// Encodes `img` as AVIF at `quality` (0-100) and `speed` (0-10) with the
/// defaults of [`Options::new`]: 4:2:0, lossy alpha at the same quality.
pub fn encode(img: &Image, quality: u8, speed: u8) -> Result<Vec<u8>, KeepReason> {
    encode_with(img, &Options::new(quality, speed))
}

/// Encodes `img` as AVIF with explicit [`Options`]. Never panics; every
/// failure is [`KeepReason::Encode`].
pub fn encode_with(img: &Image, options: &Options) -> Result<Vec<u8>, KeepReason> {
    match catch_unwind(AssertUnwindSafe(|| encode_inner(img, options))) {
        Ok(result) => result.map_err(|e| KeepReason::Encode(format!("AVIF: {e}"))),
        Err(payload) => Err(KeepReason::Encode(format!(
            "AVIF: panic: {}",
            panic_message(&*payload)
        ))),
    }
}

/// AV1 quantizer (0 best .. 63 worst) for a 0-100 quality: libavif 1.x's
/// `quality` mapping, so settings carry over to newer libavif.
fn quantizer(quality: u8) -> i32 {
    let quality = i32::from(quality.min(100));
    ((100 - quality) * 63 + 50) / 100
}

fn encode_inner(img: &Image, options: &Options) -> Result<Vec<u8>, String> {
    if !img.is_consistent() {
        return Err("pixel buffer does not match the dimensions".into());
    }
    if img.width == 0 || img.height == 0 {
        return Err(format!(
            "image has no pixels ({}x{})",
            img.width, img.height
        ));
    }
    // AV1 allows 65536 per side; libavif's decoder default limit is
    // 16384x16384 pixels in all. Refuse what browsers would refuse.
    if u64::from(img.width) * u64::from(img.height) > 16384 * 16384 {
        return Err(format!("{}x{} is too large", img.width, img.height));
    }
    let yuv_format = match options.chroma {
        _ if options.lossless => ffi::AVIF_PIXEL_FORMAT_YUV444,
        Chroma::Yuv420 => ffi::AVIF_PIXEL_FORMAT_YUV420,
        Chroma::Yuv444 => ffi::AVIF_PIXEL_FORMAT_YUV444,
    };

    // SAFETY: plain constructor; NULL is handled by the owner type.
    let image = OwnedImage(unsafe { ffi::avifImageCreate(img.width, img.height, 8, yuv_format) });
    if image.0.is_null() {
        return Err("out of memory creating the image".into());
    }
    // SAFETY: `image.0` is a live avifImage owned by us.
    unsafe {
        let im = &mut *image.0;
        im.yuvRange = ffi::AVIF_RANGE_FULL;
        // Lossless: no colour transform at all (Y = G, U = B, V = R),
        // the only lossless RGB mode libavif 0.11 has (YCgCo-R came later).
        im.matrixCoefficients = if options.lossless {
            ffi::AVIF_MATRIX_COEFFICIENTS_IDENTITY as _
        } else {
            ffi::AVIF_MATRIX_COEFFICIENTS_BT601 as _
        };
        match &img.icc_profile {
            // libavif copies the profile.
            Some(icc) => ffi::avifImageSetProfileICC(image.0, icc.as_ptr(), icc.len()),
            None => {
                im.colorPrimaries = ffi::AVIF_COLOR_PRIMARIES_BT709 as _;
                im.transferCharacteristics = ffi::AVIF_TRANSFER_CHARACTERISTICS_SRGB as _;
            }
        }
    }

    // RGB(A) -> YUV(A). libavif only reads `pixels` here.
    // SAFETY: avifRGBImage is plain data, initialised by SetDefaults.
    let mut rgb: ffi::avifRGBImage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid.
    unsafe { ffi::avifRGBImageSetDefaults(&mut rgb, image.0) };
    rgb.depth = 8;
    rgb.format = if img.has_alpha {
        ffi::AVIF_RGB_FORMAT_RGBA
    } else {
        ffi::AVIF_RGB_FORMAT_RGB
    };
    rgb.pixels = img.pixels.as_ptr().cast_mut();
    rgb.rowBytes = u32::try_from(img.width as usize * img.channels())
        .map_err(|_| "row too long".to_owned())?;
    if options.chroma == Chroma::Yuv420 && !options.lossless {
        // Sharp RGB->YUV (libsharpyuv) keeps saturated edges from bleeding
        // when the chroma is halved; libavif builds without libsharpyuv
        // (Debian's 0.11) refuse it, and the plain average is used.
        rgb.chromaDownsampling = ffi::AVIF_CHROMA_DOWNSAMPLING_SHARP_YUV;
    }
    // SAFETY: `rgb` describes `img.pixels` (height rows of rowBytes bytes,
    // checked by is_consistent); libavif allocates the YUV(A) planes.
    let mut result = unsafe { ffi::avifImageRGBToYUV(image.0, &rgb) };
    if result != ffi::AVIF_RESULT_OK && rgb.chromaDownsampling != 0 {
        rgb.chromaDownsampling = ffi::AVIF_CHROMA_DOWNSAMPLING_AUTOMATIC;
        // SAFETY: as above.
        result = unsafe { ffi::avifImageRGBToYUV(image.0, &rgb) };
    }
    if result != ffi::AVIF_RESULT_OK {
        return Err(format!("RGB to YUV: {}", result_string(result)));
    }

    // SAFETY: plain constructor; NULL is handled by the owner type.
    let encoder = OwnedEncoder(unsafe { ffi::avifEncoderCreate() });
    if encoder.0.is_null() {
        return Err("out of memory creating the encoder".into());
    }
    let lossless = ffi::AVIF_QUANTIZER_LOSSLESS as i32;
    let (q, qa) = if options.lossless {
        (lossless, lossless)
    } else {
        (
            quantizer(options.quality),
            options.alpha_quality.map_or(lossless, quantizer),
        )
    };
    // SAFETY: `encoder.0` is a live avifEncoder owned by us.
    unsafe {
        let enc = &mut *encoder.0;
        enc.codecChoice = ffi::AVIF_CODEC_CHOICE_AOM;
        enc.maxThreads = 1;
        enc.speed = i32::from(options.speed.min(10));
        // Constant quality: the quantizer is the quality knob. (A range
        // would let libaom's rate control pick within it, which for a
        // single frame with no bitrate target means the worst end.)
        enc.minQuantizer = q;
        enc.maxQuantizer = q;
        enc.minQuantizerAlpha = qa;
        enc.maxQuantizerAlpha = qa;
    }
    // libaom's intra block copy (a screen-content tool it switches on when
    // it judges the image to be a screenshot or a flat graphic) builds
    // hash tables of the whole frame: on a 1.2 MP PNG with alpha at speed 6
    // it took 185 MB and 2.8 s for a file 1 % smaller; without it, 53 MB
    // and 1.1 s (avifenc, libaom 3.6). libavif passes the keys to libaom.
    // Superblocks of 64x64 instead of libaom's choice (128 at these sizes):
    // 4.4 MiB less per conversion of a corpus photo on average (75.1 ->
    // 70.7 MiB, `transcode_one` on the load harness' 10 photos), 0.2 points
    // more saved on photos (51.2 -> 51.4 %), graphics and alpha unchanged,
    // CPU within the run-to-run spread (`make bench-corpus`, 2026-12-07).
    for (key, value) in [(c"enable-intrabc", c"0"), (c"sb-size", c"64")] {
        // SAFETY: the encoder is live; both strings are NUL-terminated
        // and copied by libavif (0.11 returns nothing: an unknown key
        // fails the encode, which then serves the original).
        unsafe {
            ffi::avifEncoderSetCodecSpecificOption(encoder.0, key.as_ptr(), value.as_ptr());
        }
    }

    let mut output = OwnedRwData(ffi::avifRWData {
        data: ptr::null_mut(),
        size: 0,
    });
    // SAFETY: encoder and image are live; `output` is empty and is freed
    // by its owner (avifRWDataFree on an empty buffer is a no-op).
    let result = unsafe { ffi::avifEncoderWrite(encoder.0, image.0, &mut output.0) };
    if result != ffi::AVIF_RESULT_OK {
        // SAFETY: `diag.error` is a NUL-terminated buffer inside the encoder.
        let detail = unsafe { CStr::from_ptr((*encoder.0).diag.error.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        return Err(if detail.is_empty() {
            result_string(result)
        } else {
            format!("{}: {detail}", result_string(result))
        });
    }
    Ok(output.bytes().to_vec())
}

/// Decodes an AVIF file (for tests and verification) with libavif's
/// default decoder (dav1d, which logs some bitstream errors to stderr): RGBA if the file has an alpha plane, else RGB;
/// the ICC profile, if any, as `icc_profile`. Images deeper than 8 bits are
/// scaled down to 8.
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    catch_unwind(AssertUnwindSafe(|| decode_inner(bytes)))
        .unwrap_or_else(|payload| Err(format!("panic: {}", panic_message(&*payload))))
}

fn decode_inner(bytes: &[u8]) -> Result<Image, String> {
    // SAFETY: plain constructors; NULL is handled by the owner types.
    let decoder = OwnedDecoder(unsafe { ffi::avifDecoderCreate() });
    let image = OwnedImage(unsafe { ffi::avifImageCreateEmpty() });
    if decoder.0.is_null() || image.0.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `decoder.0` is live; the data pointer/length describe
    // `bytes`, which outlives the call; `image.0` receives the result.
    let result = unsafe {
        (*decoder.0).maxThreads = 1;
        ffi::avifDecoderReadMemory(decoder.0, image.0, bytes.as_ptr(), bytes.len())
    };
    if result != ffi::AVIF_RESULT_OK {
        // SAFETY: `diag.error` is a NUL-terminated buffer inside the decoder.
        let detail = unsafe { CStr::from_ptr((*decoder.0).diag.error.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        return Err(format!("{}: {detail}", result_string(result)));
    }

    // SAFETY: the decoder filled `image.0`.
    let (width, height, has_alpha, icc_profile) = unsafe {
        let im = &*image.0;
        let icc = (!im.icc.data.is_null() && im.icc.size > 0)
            .then(|| std::slice::from_raw_parts(im.icc.data, im.icc.size).to_vec());
        (im.width, im.height, !im.alphaPlane.is_null(), icc)
    };
    let channels = if has_alpha { 4 } else { 3 };
    let row_bytes = width as usize * channels;
    let mut pixels = vec![0u8; row_bytes * height as usize];
    // SAFETY: avifRGBImage is plain data, initialised by SetDefaults.
    let mut rgb: ffi::avifRGBImage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid.
    unsafe { ffi::avifRGBImageSetDefaults(&mut rgb, image.0) };
    rgb.depth = 8;
    rgb.format = if has_alpha {
        ffi::AVIF_RGB_FORMAT_RGBA
    } else {
        ffi::AVIF_RGB_FORMAT_RGB
    };
    rgb.pixels = pixels.as_mut_ptr();
    rgb.rowBytes = u32::try_from(row_bytes).map_err(|_| "row too long".to_owned())?;
    // SAFETY: `rgb` describes `pixels` (height rows of rowBytes bytes).
    let result = unsafe { ffi::avifImageYUVToRGB(image.0, &mut rgb) };
    if result != ffi::AVIF_RESULT_OK {
        return Err(format!("YUV to RGB: {}", result_string(result)));
    }
    Ok(Image {
        width,
        height,
        pixels,
        has_alpha,
        icc_profile,
    })
}

/// The versions of libavif and of the codecs it was built with, e.g.
/// `libavif 0.11.1 (dav1d [dec]:1.0.0, aom [enc/dec]:v3.6.0, ...)`: for the
/// startup log line.
pub fn version() -> String {
    let mut codecs = [0 as c_char; 256];
    // SAFETY: avifVersion returns a static string; avifCodecVersions
    // writes a NUL-terminated string of at most 256 bytes.
    unsafe {
        ffi::avifCodecVersions(codecs.as_mut_ptr());
        format!(
            "libavif {} ({})",
            CStr::from_ptr(ffi::avifVersion()).to_string_lossy(),
            CStr::from_ptr(codecs.as_ptr()).to_string_lossy()
        )
    }
}

fn result_string(result: ffi::avifResult) -> String {
    // SAFETY: returns a static string for any value.
    unsafe { CStr::from_ptr(ffi::avifResultToString(result)) }
        .to_string_lossy()
        .into_owned()
}

struct OwnedImage(*mut ffi::avifImage);

impl Drop for OwnedImage {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by avifImageCreate*, destroyed once.
            unsafe { ffi::avifImageDestroy(self.0) }
        }
    }
}

struct OwnedEncoder(*mut ffi::avifEncoder);

impl Drop for OwnedEncoder {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by avifEncoderCreate, destroyed once.
            unsafe { ffi::avifEncoderDestroy(self.0) }
        }
    }
}

struct OwnedDecoder(*mut ffi::avifDecoder);

impl Drop for OwnedDecoder {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by avifDecoderCreate, destroyed once.
            unsafe { ffi::avifDecoderDestroy(self.0) }
        }
    }
}

struct OwnedRwData(ffi::avifRWData);

impl OwnedRwData {
    fn bytes(&self) -> &[u8] {
        if self.0.data.is_null() {
            return &[];
        }
        // SAFETY: libavif keeps `size` bytes at `data`.
        unsafe { std::slice::from_raw_parts(self.0.data, self.0.size) }
    }
}

impl Drop for OwnedRwData {
    fn drop(&mut self) {
        // SAFETY: the buffer was filled by libavif (or is empty).
        unsafe { ffi::avifRWDataFree(&mut self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizer_mapping() {
        assert_eq!(quantizer(100), 0);
        assert_eq!(quantizer(0), 63);
        assert_eq!(quantizer(255), 0);
        assert_eq!(quantizer(50), 32);
    }

    /// Flat colours, a gradient and noise; with alpha, a soft ramp and
    /// fully transparent pixels that still carry colour.
    fn mixed(width: u32, height: u32, alpha: bool) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let n = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 7) as u8;
                pixels.extend_from_slice(&match x * 3 / width {
                    0 => [255, 0, 30],
                    1 => [x as u8, (y * 2) as u8, 128],
                    _ => [n, n.wrapping_mul(3), 255 - n],
                });
                if alpha {
                    pixels.push(match y * 4 / height {
                        0 => 0,
                        1 => (x * 255 / width) as u8,
                        _ => 255,
                    });
                }
            }
        }
        Image {
            width,
            height,
            pixels,
            has_alpha: alpha,
            icc_profile: None,
        }
    }

    #[test]
    fn lossless_round_trip_is_exact() {
        for alpha in [false, true] {
            for speed in [9, 6] {
                // Odd sizes: no chroma subsampling to round.
                let img = mixed(67, 45, alpha);
                let bytes = encode_with(&img, &Options::lossless(speed)).unwrap();
                let back = decode(&bytes).unwrap();
                assert_eq!((back.width, back.height, back.has_alpha), (67, 45, alpha));
                assert!(
                    back.pixels == img.pixels,
                    "alpha={alpha} speed {speed}: not exact"
                );
            }
        }
        // With an ICC profile (a `prof` colr box instead of `nclx`: the
        // identity matrix then travels in the AV1 sequence header only).
        let icc = crate::codecs::icc::test_profile(b"RGB ", "Display P3", 200);
        let img = Image {
            icc_profile: Some(icc.clone()),
            ..mixed(40, 30, false)
        };
        let back = decode(&encode_with(&img, &Options::lossless(9)).unwrap()).unwrap();
        assert_eq!(back.icc_profile.as_ref(), Some(&icc));
        assert!(back.pixels == img.pixels, "ICC: not exact");
    }

    #[test]
    fn lossless_ignores_the_lossy_settings() {
        let img = mixed(32, 24, true);
        let plain = encode_with(&img, &Options::lossless(9)).unwrap();
        let odd = Options {
            quality: 10,
            alpha_quality: Some(5),
            chroma: Chroma::Yuv420,
            ..Options::lossless(9)
        };
        assert_eq!(encode_with(&img, &odd).unwrap(), plain);
        // Lossy at the top quality is not lossless.
        let q100 = Options {
            alpha_quality: None,
            chroma: Chroma::Yuv444,
            ..Options::new(100, 9)
        };
        let back = decode(&encode_with(&img, &q100).unwrap()).unwrap();
        assert!(back.pixels != img.pixels);
    }

    #[test]
    fn version_names_aom() {
        let v = version();
        assert!(v.starts_with("libavif "), "{v}");
        assert!(v.contains("aom"), "{v}");
    }
}
