//! PNG decoding and encoding through the `png` crate (pure Rust: errors
//! are values).

use std::io::Cursor;

use png::{
    BitDepth, ColorType, Decoder, DecodingError, DeflateCompression, Encoder, Filter, Info,
    Transformations,
};

use super::registry::{same_effort, unbounded, Codec, CodecWork, Format, QualityScale};
use super::{check_dimensions, drop_opaque_alpha, icc, Image};
use crate::{KeepReason, Limits};

/// PNG in the registry: a source, and re-encoded (lossless) after resizing
/// for clients that take no better format.
pub static CODEC: Codec = Codec {
    format: Format::Png,
    name: "png",
    mime: "image/png",
    accept: &[],
    quality: QualityScale {
        lossless: true,
        floor: 0,
        default_ceiling: 100,
        configured_by: Format::Png,
        qlt: &[],
    },
    encode: |image, _| encode(image),
    decode,
    max_pixels: unbounded,
    cheaper_search: same_effort,
    // ~22-57 ms/MP per encode (zlib level 3); a decode as `decode_work`
    // charges an 8-bit RGBA one.
    work: CodecWork {
        encode: |_, _| 0.6,
        decode: DECODE_WORK + DECODE_WORK_PER_BYTE * 4.0,
    },
};

/// gAMA values (scaled by 100000) that count as the usual 1/2.2, which is
/// what browsers assume for untagged images anyway.
const PLAIN_GAMMA: std::ops::RangeInclusive<u32> = 40_000..=50_000;

/// cICP code points for sRGB: BT.709 primaries, sRGB transfer function.
const CICP_SRGB: (u8, u8) = (1, 13);

/// Decoding cost, in pixel-passes per pixel (see [`crate::work`]): inflating
/// and unfiltering go over every byte of the raw rows, so per pixel
/// [`DECODE_WORK`] plus [`DECODE_WORK_PER_BYTE`] per byte of a raw pixel
/// (on the corpus ~5 ms/MP for 8-bit RGB(A); a flat 16-bit RGBA image
/// costs 5x a flat 8-bit RGB one).
const DECODE_WORK: f64 = 0.02;
const DECODE_WORK_PER_BYTE: f64 = 0.025;

/// What decoding `bytes` costs (see [`super::decode_work`]), from IHDR:
/// its pixels and pixel-passes per pixel.
pub(super) fn decode_work(bytes: &[u8]) -> Option<(u64, f64)> {
    let ihdr = bytes.get(8..8 + 8 + 13).filter(|c| &c[4..8] == b"IHDR")?;
    let width = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
    let height = u32::from_be_bytes([ihdr[12], ihdr[13], ihdr[14], ihdr[15]]);
    let (depth, color_type) = (ihdr[16], ihdr[17]);
    let channels = match color_type {
        2 => 3.0,
        4 => 2.0,
        6 => 4.0,
        _ => 1.0, // grey, palette
    };
    let raw_bytes = channels * f64::from(depth) / 8.0;
    let pixels = u64::from(width) * u64::from(height);
    Some((pixels, DECODE_WORK + DECODE_WORK_PER_BYTE * raw_bytes))
}

/// Checks the CRC of every complete chunk up to IEND. A mismatch is a
/// damaged file, whatever the chunk: the `png` crate checks the chunks it
/// reads, but skips those it ignores (text) unchecked, and a file damaged
/// there may be damaged elsewhere too. Structure errors (a length running
/// past the end) are left to the decoder, which reports them.
fn check_crcs(bytes: &[u8]) -> Result<(), KeepReason> {
    let mut at = 8; // the signature
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let Some(end) = (at + 8).checked_add(len) else {
            return Ok(());
        };
        let (Some(typed_data), Some(stored)) = (bytes.get(at + 4..end), bytes.get(end..end + 4))
        else {
            return Ok(());
        };
        let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if crc32fast::hash(typed_data) != stored {
            return Err(KeepReason::Decode(format!(
                "PNG: CRC error in a {} chunk",
                String::from_utf8_lossy(kind)
            )));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at = end + 4;
    }
    Ok(())
}

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, KeepReason> {
    // Caps the crate's own allocations (row buffers, decompressed iCCP);
    // the output buffer is ours and sized after check_dimensions. Those
    // needs are far below this (a 16-bit RGBA row of 16383 pixels is
    // 128 KiB); the cap only stops e.g. a zlib bomb in an iCCP chunk.
    let budget = limits.max_pixels.saturating_mul(8).clamp(16 << 20, 1 << 30);
    let png_limits = png::Limits {
        bytes: usize::try_from(budget).unwrap_or(usize::MAX),
    };
    check_crcs(bytes)?;
    let mut decoder = Decoder::new_with_limits(Cursor::new(bytes), png_limits);

    // IHDR only: nothing sized by the image has been allocated yet.
    let header = decoder.read_header_info().map_err(decode_error)?;
    check_dimensions(header.width, header.height, limits)?;

    // Palette -> RGB(A), tRNS -> alpha, 1/2/4-bit -> 8-bit, 16-bit -> 8-bit.
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    decoder.set_ignore_text_chunk(true);
    // Reads every chunk up to the first IDAT.
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let info = reader.info();

    if info.animation_control.is_some() {
        // Browsers animate APNG; a still WebP would show only one frame.
        return Err(KeepReason::Unsupported("animated PNG".into()));
    }
    // Colour information, in the PNG spec's (3rd edition) order of
    // precedence: cICP, then iCCP, then sRGB, then gAMA.
    let cicp = info.coding_independent_code_points.as_ref();
    if let Some(cicp) = cicp {
        if (cicp.color_primaries, cicp.transfer_function) != CICP_SRGB {
            return Err(KeepReason::Unsupported("PNG with non-sRGB cICP".into()));
        }
    }
    let icc_profile = match &info.icc_profile {
        Some(profile) if cicp.is_none() => icc::classify(profile.to_vec())?,
        _ => None,
    };
    let tagged = cicp.is_some() || info.icc_profile.is_some() || info.srgb.is_some();
    if let Some(gamma) = info.gama_chunk {
        // Browsers apply gAMA when nothing above overrides it; an untagged
        // WebP would be shown with the default curve instead.
        if !tagged && !PLAIN_GAMMA.contains(&gamma.into_scaled()) {
            return Err(KeepReason::Unsupported("PNG gamma".into()));
        }
    }

    let size = reader
        .output_buffer_size()
        .ok_or_else(|| KeepReason::Decode("PNG: image too large for memory".into()))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(decode_error)?;
    buf.truncate(frame.buffer_size());
    if frame.bit_depth != BitDepth::Eight {
        return Err(KeepReason::Decode(format!(
            "PNG: unexpected output depth {:?}",
            frame.bit_depth
        )));
    }

    let (pixels, has_alpha) = match frame.color_type {
        ColorType::Rgb => (buf, false),
        ColorType::Rgba => (buf, true),
        ColorType::Grayscale => (buf.iter().flat_map(|&g| [g, g, g]).collect(), false),
        ColorType::GrayscaleAlpha => (
            buf.chunks_exact(2)
                .flat_map(|ga| [ga[0], ga[0], ga[0], ga[1]])
                .collect(),
            true,
        ),
        ColorType::Indexed => {
            return Err(KeepReason::Decode("PNG: palette was not expanded".into()));
        }
    };
    let mut image = Image {
        width: frame.width,
        height: frame.height,
        pixels,
        has_alpha,
        icc_profile,
    };
    if !image.is_consistent() {
        return Err(KeepReason::Decode(
            "PNG: frame size differs from the header".into(),
        ));
    }
    drop_opaque_alpha(&mut image);
    Ok(image)
}

/// Encodes `img` as a lossless 8-bit PNG, RGB or RGBA as `img.has_alpha`
/// says, with an iCCP chunk when `img.icc_profile` is set (no colour chunk
/// otherwise: untagged means sRGB to browsers, as for the other formats).
///
/// Compression: zlib level 3 with adaptive filtering, the knee of the
/// speed/size curve on the corpus (~43 ms/MP, 4 % larger than level 6 at
/// a third of its time; fdeflate is 8x faster but 15 % larger).
pub fn encode(img: &Image) -> Result<Vec<u8>, KeepReason> {
    let encode_error = |e: png::EncodingError| KeepReason::Encode(format!("PNG: {e}"));
    if !img.is_consistent() {
        return Err(KeepReason::Encode(
            "PNG: pixel buffer does not match the dimensions".into(),
        ));
    }
    if img.width == 0 || img.height == 0 || img.width > MAX_SIDE || img.height > MAX_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "{}x{} is outside PNG's 1..={MAX_SIDE} pixels per side",
            img.width, img.height
        )));
    }
    let mut info = Info::with_size(img.width, img.height);
    info.color_type = if img.has_alpha {
        ColorType::Rgba
    } else {
        ColorType::Rgb
    };
    info.bit_depth = BitDepth::Eight;
    info.icc_profile = img.icc_profile.as_deref().map(Into::into);

    // Rough output size, to avoid most reallocations.
    let mut out = Vec::with_capacity(img.pixels.len() / 2 + 1024);
    let mut encoder = Encoder::with_info(&mut out, info).map_err(encode_error)?;
    encoder.set_deflate_compression(DeflateCompression::Level(COMPRESSION_LEVEL));
    encoder.set_filter(Filter::Adaptive);
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(&img.pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(out)
}

/// zlib level for [`encode`]: the knee of the curve. Measured on the
/// corpus PNGs (<= 4 MP, adaptive filtering, one core), size relative to
/// the original files:
///
/// | deflate                        | ms/MP | size  |
/// |--------------------------------|------:|------:|
/// | fdeflate (`Compression::Fast`) |   5.5 | 125 % |
/// | level 1                        |  14.6 | 132 % |
/// | level 3                        |  43   | 109 % |
/// | level 6 (`Balanced`)           | 144   | 104 % |
/// | level 9                        | 470   | 101 % |
///
/// Level 3 costs about a third of a WebP encode of the same pixels.
const COMPRESSION_LEVEL: u8 = 3;

/// Largest width or height the PNG format allows (2^31 - 1).
const MAX_SIDE: u32 = i32::MAX as u32;

fn decode_error(e: DecodingError) -> KeepReason {
    match e {
        DecodingError::LimitsExceeded => {
            KeepReason::Unsupported("PNG needs more memory than allowed".into())
        }
        e => KeepReason::Decode(format!("PNG: {e}")),
    }
}
