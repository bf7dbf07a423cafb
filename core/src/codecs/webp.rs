//! WebP through libwebp (`libwebp-sys`), plus a minimal RIFF muxer to
//! embed an ICC profile (libwebp's encoder only writes the image chunks).
//!
//! Container layout (RIFF, little-endian sizes, chunks padded to even
//! length), as written here:
//!
//! ```text
//! simple:   RIFF <size> WEBP  VP8 |VP8L
//! extended: RIFF <size> WEBP  VP8X [ICCP] [ALPH] VP8 |VP8L
//! ```
//!
//! # Settings ([`Options`]), measured
//!
//! CPU time per megapixel, single thread, on the corpus
//! (`core/examples/encoder_study.rs`):
//!
//! - Lossy, method 4 with sharp YUV: ~125 ms/MP per encode on photos,
//!   ~100 on graphics (sharp YUV is ~40 % of that: the codec uses it for
//!   PNG sources only, see `CODEC`); method 6: ~200 (1.6x) for 3-4 % fewer bytes at the
//!   same quality.
//! - Lossless alpha costs with `method`: libwebp compresses the alpha
//!   plane losslessly at an effort tied to the method, and at method 6
//!   with lossless alpha it runs its slowest mode (2-29 s/MP per encode on
//!   the corpus alpha PNGs): never combine method 6 with
//!   `alpha_quality: None`. Lossy alpha (quantised levels) is cheap at
//!   any method.
//! - Lossless, `-z` presets ([`Options::lossless_level`]): on flat
//!   graphics (screenshots, diagrams) 15-50 ms/MP for `-z 0..6`; on
//!   gradient art and photo-like PNGs 30 (`-z 0`), 110-150 (`-z 1`),
//!   130-210 (`-z 2`), 190-260 (`-z 3`), 210-290 (`-z 5`), 240-380
//!   (`-z 6`); `-z 9` is ~8 s/MP. Near-lossless adds ~180 ms/MP on
//!   photo-like content, ~15 on flat graphics.

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::raw::c_int;

use libwebp_sys::{
    VP8StatusCode, WebPBitstreamFeatures, WebPConfig, WebPDecodeRGB, WebPDecodeRGBA, WebPEncode,
    WebPFree, WebPGetFeatures, WebPMemoryWrite, WebPMemoryWriter, WebPMemoryWriterClear,
    WebPMemoryWriterInit, WebPPicture, WebPPictureFree, WebPPictureImportRGB,
    WebPPictureImportRGBA, WebPValidateConfig,
};

use super::registry::{
    candidate_error, same_effort, unbounded, Codec, CodecWork, Encoding, Format, QualityScale,
};
use super::{Image, WEBP_MAX_SIDE};
use crate::KeepReason;

/// WebP in the registry: for clients whose `Accept` lists `image/webp`.
pub static CODEC: Codec = Codec {
    format: Format::WebP,
    name: "webp",
    mime: "image/webp",
    accept: &["image/webp"],
    quality: QualityScale {
        lossless: false,
        floor: 40,
        // WebP needs q87 (median) to match a q85 JPEG, more for some.
        default_ceiling: 100,
        configured_by: Format::WebP,
        qlt: &[
            (0, 0),
            (10, 1),
            (20, 8),
            (30, 21),
            (40, 34),
            (50, 49),
            (60, 60),
            (70, 71),
            (75, 77),
            (80, 80),
            (85, 83),
            (90, 88),
            (95, 93),
            (100, 100),
        ],
    },
    encode: |image, encoding: &Encoding| {
        // Lossy alpha where the guard checks the result (69 % saved on the
        // corpus alpha PNGs, against 57 % with lossless alpha); lossless
        // alpha without the guard.
        //
        // Sharp YUV only for PNG sources. It is ~40 % of a lossy encode;
        // a JPEG source's chroma is already subsampled, so it buys little
        // there: on the 35 corpus photos the guarded search without it
        // saves 16.3 % instead of 16.8 % for 27 % less CPU (one encode:
        // 34 % less), while on the corpus graphics and alpha PNGs, whose
        // chroma is full resolution, it is worth 7 points (62.6 against
        // 69.5 % saved). `core/examples/guard_study.rs`, 2026-12-07.
        let options = Options {
            alpha_quality: encoding.guarded.then_some(encoding.quality),
            sharp_yuv: encoding.from_png,
            ..Options::new(encoding.quality)
        };
        encode_with(image, &options)
    },
    decode: |bytes, _| decode(bytes).map_err(|e| candidate_error(Format::WebP, e)),
    max_pixels: unbounded,
    cheaper_search: same_effort,
    work: CodecWork {
        encode: |_, alpha| work(&Options::new(0), alpha),
        // ~5 ms/MP.
        decode: 0.07,
    },
};

/// What an encode with `options` costs, in pixel-passes per pixel (see
/// [`crate::work`]; the unit is a lossy encode of an opaque image). On the
/// corpus: lossy ~62 ms/MP from a JPEG, ~93 from a PNG (sharp YUV), ~220
/// with alpha; lossless `-z 6` 260-380; near-lossless 320-500.
pub fn work(options: &Options, has_alpha: bool) -> f64 {
    if options.near_lossless.is_some() {
        6.0
    } else if options.lossless.is_some() {
        5.0
    } else if has_alpha {
        3.0
    } else {
        1.0
    }
}

/// VP8X flag bits (byte 0 of the VP8X payload).
const ICC_FLAG: u8 = 0x20;
const ALPHA_FLAG: u8 = 0x10;

/// Encoder settings. [`Options::new`] is what [`encode`] uses (lossy,
/// method 4, sharp YUV, lossless alpha); [`Options::lossless_level`] gives
/// libwebp's `-z` presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Lossy quality, 0-100 (ignored in lossless mode).
    pub quality: u8,
    /// Speed/size trade-off, 0 (fastest) to 6 (smallest). Lossy: 4 is
    /// libwebp's default; 6 is ~3x slower for a few % fewer bytes.
    /// Lossless: the `-z` style effort together with `lossless`.
    pub method: u8,
    /// Sharp RGB->YUV conversion (lossy only): without it saturated edges
    /// and thin coloured lines (screenshots, graphics) bleed at any quality.
    pub sharp_yuv: bool,
    /// Lossy mode: the alpha plane's quality, 0-100, `None` for lossless
    /// alpha (soft edges and masks exact). Lossy alpha quantises the alpha
    /// levels before the (still lossless) alpha compression. Ignored for
    /// images without alpha and in lossless mode.
    pub alpha_quality: Option<u8>,
    /// `Some(effort)`: lossless (VP8L) at libwebp's lossless `quality`
    /// 0-100, read as effort (more is slower and smaller), with `method`
    /// as the other half of the effort (see [`Options::lossless_level`]).
    /// Colour under fully transparent pixels may change (libwebp's
    /// default `exact = 0`): it is invisible, and costs bytes to keep.
    pub lossless: Option<u8>,
    /// `Some(level)`: near-lossless preprocessing, 0-100 (100 = off, lower
    /// = pixel values rounded more coarsely where it is least visible).
    /// Implies lossless mode, at effort `lossless.unwrap_or(75)`.
    /// libwebp skips it for images that it encodes with a palette.
    pub near_lossless: Option<u8>,
}

/// libwebp's `-z 0..=9` lossless presets as (method, effort), from
/// `WebPConfigLosslessPreset` (libwebp 1.6).
const LOSSLESS_PRESETS: [(u8, u8); 10] = [
    (0, 0),
    (1, 20),
    (2, 25),
    (3, 30),
    (3, 50),
    (4, 50),
    (4, 75),
    (4, 90),
    (5, 90),
    (6, 100),
];

/// Lossless effort when only `near_lossless` asks for lossless mode
/// (libwebp's default `quality`).
const DEFAULT_LOSSLESS_EFFORT: u8 = 75;

impl Options {
    /// Lossy at `quality`: method 4, sharp YUV, lossless alpha (what
    /// [`encode`] does).
    pub const fn new(quality: u8) -> Options {
        Options {
            quality,
            method: 4,
            sharp_yuv: true,
            alpha_quality: None,
            lossless: None,
            near_lossless: None,
        }
    }

    /// Lossless at libwebp's `-z level` preset (0-9, clamped): method and
    /// effort `(0,0) (1,20) (2,25) (3,30) (3,50) (4,50) (4,75) (4,90)
    /// (5,90) (6,100)`.
    pub const fn lossless_level(level: u8) -> Options {
        let (method, effort) = LOSSLESS_PRESETS[if level > 9 { 9 } else { level as usize }];
        Options {
            method,
            lossless: Some(effort),
            ..Options::new(100)
        }
    }

    /// Whether these options encode losslessly (VP8L), possibly with
    /// near-lossless preprocessing.
    pub const fn is_lossless(&self) -> bool {
        self.lossless.is_some() || self.near_lossless.is_some()
    }
}

/// Encodes `img` as lossy WebP at `quality` (0-100), alpha kept losslessly,
/// embedding `img.icc_profile` if there is one: [`encode_with`] with
/// [`Options::new`].
pub fn encode(img: &Image, quality: u8) -> Result<Vec<u8>, KeepReason> {
    encode_with(img, &Options::new(quality))
}

/// Encodes `img` as WebP with explicit [`Options`], embedding
/// `img.icc_profile` if there is one.
pub fn encode_with(img: &Image, options: &Options) -> Result<Vec<u8>, KeepReason> {
    let encode_error = |what: &str| KeepReason::Encode(format!("WebP: {what}"));
    if !img.is_consistent() {
        return Err(encode_error("pixel buffer does not match the dimensions"));
    }
    if img.width == 0 || img.height == 0 || img.width > WEBP_MAX_SIDE || img.height > WEBP_MAX_SIDE
    {
        return Err(KeepReason::Unsupported(format!(
            "{}x{} is outside WebP's 1..={WEBP_MAX_SIDE} pixels per side",
            img.width, img.height
        )));
    }

    let mut config = WebPConfig::new().map_err(|()| encode_error("libwebp version mismatch"))?;
    config.method = c_int::from(options.method.min(6));
    if options.is_lossless() {
        config.lossless = 1;
        let effort = options.lossless.unwrap_or(DEFAULT_LOSSLESS_EFFORT);
        config.quality = f32::from(effort.min(100));
        config.near_lossless = c_int::from(options.near_lossless.unwrap_or(100).min(100));
    } else {
        config.quality = f32::from(options.quality.min(100));
        config.use_sharp_yuv = c_int::from(options.sharp_yuv);
        config.alpha_compression = 1;
        config.alpha_quality = c_int::from(options.alpha_quality.unwrap_or(100).min(100));
    }
    // SAFETY: `config` is a fully initialised WebPConfig.
    if unsafe { WebPValidateConfig(&config) } == 0 {
        return Err(encode_error("invalid configuration"));
    }

    let mut picture = Picture::new().ok_or_else(|| encode_error("libwebp version mismatch"))?;
    // Keep the input as ARGB: the sharp YUV conversion happens inside
    // WebPEncode, and only from ARGB (importing into YUV directly would
    // use the plain conversion).
    picture.0.use_argb = 1;
    picture.0.width = img.width as c_int;
    picture.0.height = img.height as c_int;
    let stride = (img.width as usize * img.channels()) as c_int;
    // SAFETY: `picture` is initialised with the image's size; `pixels`
    // holds `height` rows of `stride` bytes (is_consistent above). libwebp
    // copies the pixels into memory owned by `picture`.
    let imported = unsafe {
        if img.has_alpha {
            WebPPictureImportRGBA(&mut picture.0, img.pixels.as_ptr(), stride)
        } else {
            WebPPictureImportRGB(&mut picture.0, img.pixels.as_ptr(), stride)
        }
    };
    if imported == 0 {
        return Err(encode_error("out of memory importing pixels"));
    }

    let mut writer = MemoryWriter::new();
    picture.0.writer = Some(WebPMemoryWrite);
    picture.0.custom_ptr = (&mut writer.0 as *mut WebPMemoryWriter).cast::<c_void>();
    // SAFETY: config and picture are valid; custom_ptr points to `writer`,
    // which outlives this call and does not move during it.
    if unsafe { WebPEncode(&config, &mut picture.0) } == 0 {
        return Err(encode_error(&format!(
            "encoding failed ({:?})",
            picture.0.error_code
        )));
    }
    let webp = writer.bytes().to_vec();
    drop(writer);
    drop(picture);

    match &img.icc_profile {
        Some(icc) => embed_icc(&webp, icc, img.width, img.height)
            .map_err(|e| encode_error(&format!("adding the ICC profile: {e}"))),
        None => Ok(webp),
    }
}

/// Decodes a still WebP (for tests and verification): RGBA if the
/// bitstream has alpha, else RGB; the ICCP chunk, if any, as `icc_profile`.
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    // SAFETY: WebPBitstreamFeatures is plain integers; all-zero is valid.
    let mut features: WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer/length pair describes `bytes`; `features` is writable.
    let status = unsafe { WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    if status != VP8StatusCode::VP8_STATUS_OK {
        return Err(format!("not a decodable WebP ({status:?})"));
    }
    if features.has_animation != 0 {
        return Err("animated WebP".into());
    }
    let has_alpha = features.has_alpha != 0;

    let (mut width, mut height): (c_int, c_int) = (0, 0);
    // SAFETY: as above; width/height are writable. The result is NULL or a
    // buffer of width*height*(3|4) bytes that we must release with WebPFree.
    let decoded = unsafe {
        if has_alpha {
            WebPDecodeRGBA(bytes.as_ptr(), bytes.len(), &mut width, &mut height)
        } else {
            WebPDecodeRGB(bytes.as_ptr(), bytes.len(), &mut width, &mut height)
        }
    };
    if decoded.is_null() {
        return Err("libwebp failed to decode".into());
    }
    let channels = if has_alpha { 4 } else { 3 };
    let len = width as usize * height as usize * channels;
    // SAFETY: libwebp returned a live buffer of exactly `len` bytes; we copy
    // it out and free it exactly once.
    let pixels = unsafe {
        let pixels = std::slice::from_raw_parts(decoded, len).to_vec();
        WebPFree(decoded.cast());
        pixels
    };

    let icc_profile = chunks(bytes)?
        .into_iter()
        .find(|c| &c.fourcc == b"ICCP")
        .map(|c| c.payload.to_vec());
    Ok(Image {
        width: width as u32,
        height: height as u32,
        pixels,
        has_alpha,
        icc_profile,
    })
}

/// Owns a WebPPicture; frees whatever libwebp allocated in it.
struct Picture(WebPPicture);

impl Picture {
    fn new() -> Option<Self> {
        WebPPicture::new().ok().map(Picture)
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by WebPPictureInit; freeing an
        // unallocated picture is a no-op.
        unsafe { WebPPictureFree(&mut self.0) }
    }
}

/// Owns a WebPMemoryWriter, libwebp's growable output buffer.
struct MemoryWriter(WebPMemoryWriter);

impl MemoryWriter {
    fn new() -> Self {
        let mut writer = MaybeUninit::<WebPMemoryWriter>::uninit();
        // SAFETY: WebPMemoryWriterInit initialises every field.
        unsafe {
            WebPMemoryWriterInit(writer.as_mut_ptr());
            MemoryWriter(writer.assume_init())
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.0.mem.is_null() {
            return &[];
        }
        // SAFETY: libwebp keeps `size` written bytes at `mem`.
        unsafe { std::slice::from_raw_parts(self.0.mem, self.0.size) }
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        // SAFETY: the writer was initialised; Clear frees `mem` (NULL is fine).
        unsafe { WebPMemoryWriterClear(&mut self.0) }
    }
}

/// One RIFF chunk of a WebP file.
struct Chunk<'a> {
    fourcc: [u8; 4],
    payload: &'a [u8],
}

/// Splits a WebP file into its chunks, checking the RIFF framing.
fn chunks(webp: &[u8]) -> Result<Vec<Chunk<'_>>, String> {
    if webp.len() < 12 || &webp[0..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return Err("not a RIFF WEBP file".into());
    }
    let riff_size = u32::from_le_bytes(webp[4..8].try_into().unwrap()) as usize;
    let body = webp
        .get(12..riff_size.saturating_add(8))
        .ok_or("RIFF size exceeds the data")?;
    let mut chunks = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err("truncated chunk header".into());
        }
        let fourcc = rest[0..4].try_into().unwrap();
        let size = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        let payload = rest.get(8..8 + size).ok_or("chunk exceeds the data")?;
        chunks.push(Chunk { fourcc, payload });
        // Odd-sized chunks are followed by one padding byte.
        rest = rest.get(8 + size + (size & 1)..).unwrap_or_default();
    }
    Ok(chunks)
}

/// Rewrites libwebp's output as an extended-format file carrying `icc`.
fn embed_icc(webp: &[u8], icc: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let chunks = chunks(webp)?;
    let mut out = Vec::with_capacity(webp.len() + icc.len() + 32);
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP"); // size patched below

    let mut image_chunks = chunks.iter();
    match chunks.first().map(|c| &c.fourcc) {
        // Already extended (lossy with alpha): set the flag, keep the rest.
        Some(b"VP8X") => {
            let mut vp8x = image_chunks.next().unwrap().payload.to_vec();
            if vp8x.len() < 10 {
                return Err("short VP8X chunk".into());
            }
            vp8x[0] |= ICC_FLAG;
            push_chunk(&mut out, b"VP8X", &vp8x)?;
        }
        Some(b"VP8 " | b"VP8L") => {
            let mut flags = ICC_FLAG;
            if chunks.iter().any(|c| &c.fourcc == b"ALPH") || vp8l_has_alpha(&chunks) {
                flags |= ALPHA_FLAG;
            }
            let mut vp8x = [0u8; 10];
            vp8x[0] = flags;
            // Canvas size minus one, 24-bit little-endian each.
            vp8x[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
            vp8x[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
            push_chunk(&mut out, b"VP8X", &vp8x)?;
        }
        _ => return Err("unexpected first chunk".into()),
    }
    push_chunk(&mut out, b"ICCP", icc)?;
    for chunk in image_chunks {
        push_chunk(&mut out, &chunk.fourcc, chunk.payload)?;
    }

    let riff_size = u32::try_from(out.len() - 8).map_err(|_| "file too large")?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Ok(out)
}

/// Whether a lossless bitstream declares alpha: its 5-byte header is the
/// 0x2F signature, then 14 bits width-1, 14 bits height-1, 1 bit alpha.
fn vp8l_has_alpha(chunks: &[Chunk<'_>]) -> bool {
    chunks
        .iter()
        .find(|c| &c.fourcc == b"VP8L")
        .and_then(|c| c.payload.get(1..5))
        .is_some_and(|bits| u32::from_le_bytes(bits.try_into().unwrap()) & (1 << 28) != 0)
}

fn push_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], payload: &[u8]) -> Result<(), String> {
    let size = u32::try_from(payload.len()).map_err(|_| "chunk too large")?;
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(payload);
    if payload.len() % 2 == 1 {
        out.push(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::icc::test_profile;
    use libwebp_sys::{
        WebPChunkIterator, WebPData, WebPDemuxDelete, WebPDemuxGetChunk, WebPDemuxGetI,
        WebPDemuxInternal, WebPDemuxReleaseChunkIterator, WebPFormatFeature,
        WEBP_DEMUX_ABI_VERSION,
    };

    /// Smooth gradient with an optional soft alpha ramp.
    fn gradient(width: u32, height: u32, alpha: bool) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
                if alpha {
                    pixels.push((x * 255 / width) as u8);
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

    /// libwebp's demuxer (independent of our parser): container flags and
    /// the ICCP payload. Panics if the demuxer rejects the file.
    fn demux(webp: &[u8]) -> (u32, Option<Vec<u8>>) {
        let data = WebPData {
            bytes: webp.as_ptr(),
            size: webp.len(),
        };
        // SAFETY: `data` describes `webp`, which outlives the demuxer; the
        // demuxer and the chunk iterator are released before returning.
        unsafe {
            let dmux = WebPDemuxInternal(
                &data,
                0,
                std::ptr::null_mut(),
                WEBP_DEMUX_ABI_VERSION as c_int,
            );
            assert!(!dmux.is_null(), "libwebp demuxer rejected the file");
            let flags = WebPDemuxGetI(dmux, WebPFormatFeature::WEBP_FF_FORMAT_FLAGS);
            let mut iter: WebPChunkIterator = std::mem::zeroed();
            let icc = if WebPDemuxGetChunk(dmux, c"ICCP".as_ptr(), 1, &mut iter) != 0 {
                Some(std::slice::from_raw_parts(iter.chunk.bytes, iter.chunk.size).to_vec())
            } else {
                None
            };
            WebPDemuxReleaseChunkIterator(&mut iter);
            WebPDemuxDelete(dmux);
            (flags, icc)
        }
    }

    #[test]
    fn round_trip_rgb_and_rgba() {
        for alpha in [false, true] {
            let img = gradient(64, 48, alpha);
            let webp = encode(&img, 90).unwrap();
            let back = decode(&webp).unwrap();
            assert_eq!((back.width, back.height, back.has_alpha), (64, 48, alpha));
            assert_eq!(back.icc_profile, None);
            assert!(crate::metrics::psnr(&img, &back) > 35.0);
            if alpha {
                // Lossless alpha.
                let a = |i: &Image| i.pixels.chunks_exact(4).map(|p| p[3]).collect::<Vec<_>>();
                assert_eq!(a(&img), a(&back));
            }
        }
    }

    #[test]
    fn icc_profile_is_embedded() {
        // Odd length, to exercise chunk padding.
        let icc = test_profile(b"RGB ", "Display P3", 1000);
        assert_eq!(icc.len() % 2, 1);
        for alpha in [false, true] {
            let img = Image {
                icc_profile: Some(icc.clone()),
                ..gradient(33, 17, alpha)
            };
            let webp = encode(&img, 80).unwrap();
            assert_eq!(
                u32::from_le_bytes(webp[4..8].try_into().unwrap()) as usize,
                webp.len() - 8
            );
            assert_eq!(&webp[12..16], b"VP8X");
            let back = decode(&webp).unwrap();
            assert_eq!((back.width, back.height, back.has_alpha), (33, 17, alpha));
            assert_eq!(back.icc_profile.as_ref(), Some(&icc));

            let (flags, demuxed_icc) = demux(&webp);
            assert_ne!(flags & u32::from(ICC_FLAG), 0);
            assert_eq!(flags & u32::from(ALPHA_FLAG) != 0, alpha);
            assert_eq!(demuxed_icc.as_ref(), Some(&icc));
        }
    }

    /// Flat-colour art with a soft alpha edge and colour noise under the
    /// fully transparent part.
    fn art(width: u32, height: u32, alpha: bool) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let colour = match (x * 4 / width, y % 16 < 3) {
                    (_, true) => [20, 20, 20],
                    (0, _) => [255, 0, 0],
                    (1, _) => [0, 200, 80],
                    (2, _) => [x as u8, y as u8, 200],
                    _ => [250, 250, 250],
                };
                pixels.extend_from_slice(&colour);
                if alpha {
                    pixels.push(match x {
                        0..=3 => 0,
                        4..=20 => (x * 12) as u8,
                        _ => 255,
                    });
                    if x <= 3 {
                        let n = pixels.len();
                        pixels[n - 4..n - 1].copy_from_slice(&[(x * y) as u8, 9, (y * 3) as u8]);
                    }
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

    /// The pixels a viewer sees: colour under alpha 0 zeroed.
    fn visible(img: &Image) -> Vec<u8> {
        if !img.has_alpha {
            return img.pixels.clone();
        }
        img.pixels
            .chunks_exact(4)
            .flat_map(|p| {
                if p[3] == 0 {
                    [0; 4]
                } else {
                    [p[0], p[1], p[2], p[3]]
                }
            })
            .collect()
    }

    #[test]
    fn encode_is_encode_with_the_default_options() {
        let img = gradient(40, 30, true);
        assert_eq!(
            encode(&img, 77).unwrap(),
            encode_with(&img, &Options::new(77)).unwrap()
        );
        assert!(!Options::new(77).is_lossless());
        assert_eq!(
            Options::lossless_level(9),
            Options {
                method: 6,
                lossless: Some(100),
                ..Options::new(100)
            }
        );
        assert_eq!(Options::lossless_level(200), Options::lossless_level(9));
        assert_eq!(Options::lossless_level(0).method, 0);
    }

    #[test]
    fn lossless_round_trip_is_exact() {
        for alpha in [false, true] {
            for level in [0, 2, 6] {
                let img = art(97, 61, alpha);
                let webp = encode_with(&img, &Options::lossless_level(level)).unwrap();
                assert_eq!(
                    &webp[12..16],
                    b"VP8L",
                    "level {level}: a lossless bitstream"
                );
                let back = decode(&webp).unwrap();
                assert_eq!((back.width, back.height, back.has_alpha), (97, 61, alpha));
                assert_eq!(visible(&back), visible(&img), "alpha={alpha} level {level}");
            }
        }
        // Lossless with an ICC profile (VP8X + VP8L, alpha flag from VP8L).
        let icc = test_profile(b"RGB ", "Display P3", 300);
        let img = Image {
            icc_profile: Some(icc.clone()),
            ..art(50, 40, true)
        };
        let webp = encode_with(&img, &Options::lossless_level(3)).unwrap();
        let back = decode(&webp).unwrap();
        assert_eq!(back.icc_profile.as_ref(), Some(&icc));
        assert_eq!(visible(&back), visible(&img));
        let (flags, _) = demux(&webp);
        assert_ne!(flags & u32::from(ALPHA_FLAG), 0);
    }

    #[test]
    fn near_lossless_decodes_close_and_not_larger_than_lossless() {
        let img = gradient(128, 96, true);
        let lossless = encode_with(&img, &Options::lossless_level(3)).unwrap();
        for level in [80, 60, 40] {
            let options = Options {
                near_lossless: Some(level),
                ..Options::lossless_level(3)
            };
            assert!(options.is_lossless());
            let webp = encode_with(&img, &options).unwrap();
            let back = decode(&webp).unwrap();
            assert_eq!((back.width, back.height, back.has_alpha), (128, 96, true));
            let p = crate::metrics::psnr(&img, &back);
            assert!(p > 38.0, "near-lossless {level}: PSNR {p:.1}");
            assert!(
                webp.len() <= lossless.len() + 64,
                "{level}: {} vs {}",
                webp.len(),
                lossless.len()
            );
        }
        // near_lossless alone implies lossless mode.
        let options = Options {
            near_lossless: Some(60),
            ..Options::new(50)
        };
        assert_eq!(&encode_with(&img, &options).unwrap()[12..16], b"VP8L");
    }

    #[test]
    fn lossy_alpha_is_smaller_and_lossless_alpha_exact() {
        let mut img = gradient(128, 96, true);
        for (i, px) in img.pixels.chunks_exact_mut(4).enumerate() {
            px[3] = px[3].saturating_add(((i * 2_654_435_761) >> 13) as u8 % 24);
        }
        let alpha = |i: &Image| i.pixels.chunks_exact(4).map(|p| p[3]).collect::<Vec<_>>();
        let exact = encode_with(&img, &Options::new(80)).unwrap();
        assert_eq!(alpha(&decode(&exact).unwrap()), alpha(&img));
        let lossy = encode_with(
            &img,
            &Options {
                alpha_quality: Some(40),
                ..Options::new(80)
            },
        )
        .unwrap();
        let back = decode(&lossy).unwrap();
        assert!(back.has_alpha);
        assert!(
            lossy.len() < exact.len(),
            "{} vs {}",
            lossy.len(),
            exact.len()
        );
        assert!(crate::metrics::psnr(&img, &back) > 30.0);
    }

    #[test]
    fn method_and_sharp_yuv_are_applied() {
        let img = art(160, 120, false);
        let m4 = encode_with(&img, &Options::new(80)).unwrap();
        let m6 = encode_with(
            &img,
            &Options {
                method: 6,
                ..Options::new(80)
            },
        )
        .unwrap();
        let plain = encode_with(
            &img,
            &Options {
                sharp_yuv: false,
                ..Options::new(80)
            },
        )
        .unwrap();
        assert_ne!(m4, m6);
        let psnr = |webp: &[u8]| crate::metrics::psnr(&img, &decode(webp).unwrap());
        let (p4, p6, p_plain) = (psnr(&m4), psnr(&m6), psnr(&plain));
        assert!(p4 > 24.0 && p6 > 24.0, "PSNR m4 {p4:.2}, m6 {p6:.2}");
        // Saturated stripes: plain RGB->YUV bleeds.
        assert!(p_plain < p4, "PSNR plain {p_plain:.2}, sharp {p4:.2}");
    }

    #[test]
    fn rejects_bad_input() {
        let mut img = gradient(8, 8, false);
        img.pixels.pop();
        assert!(matches!(encode(&img, 80), Err(KeepReason::Encode(_))));
        let img = Image {
            width: 16384,
            height: 1,
            pixels: vec![0; 16384 * 3],
            ..gradient(1, 1, false)
        };
        assert!(matches!(encode(&img, 80), Err(KeepReason::Unsupported(_))));

        assert!(decode(b"").is_err());
        assert!(decode(b"RIFF\x04\0\0\0WEBP").is_err());
        let webp = encode(&gradient(16, 16, true), 80).unwrap();
        for len in [12, 20, 30, webp.len() / 2, webp.len() - 1] {
            assert!(decode(&webp[..len]).is_err(), "truncated to {len}");
        }
    }
}
