//! The encoders and their containers, round trip: arbitrary small images
//! (size, alpha, ICC profile, pixels from the input) through each
//! format's encoder (the JP2 boxes and the JPEG XR directory are written
//! by the core itself), its decoder back, then the same file with a few
//! bytes flipped through the decoder again: near-valid files reach deep
//! into the parsers (JP2 boxes, the codestream walk, the JPEG XR
//! directory and plane headers, RIFF chunks, PNG chunks) where random
//! bytes rarely get.
//!
//! Input: 7 header bytes, then the flips, the ICC profile, the pixels
//! (see [`Case::parse`]).
//!
//! Invariants: no panic; an encoded image decodes to its size, with no
//! alpha where there was none, with the same ICC profile (the formats
//! served; the sources' decoders judge a profile and may refuse it), and
//! exactly (PNG, lossless); a damaged file decodes to a consistent image
//! or an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_imaging_core::codecs::{self, avif, jp2, jxr, webp, Effort, Encoding, Image, Tuning};
use smart_imaging_core::{AvifLimits, Format, Limits};

/// The shortest ICC profile an encoder is given: the decoders pass on
/// only profiles with a complete header and tag count (`codecs::icc`), so
/// a shorter one never reaches an encoder (and some write it in a form
/// their decoder refuses: JPEG XR stores up to 4 bytes in the tag itself).
const MIN_ICC: usize = 132;

struct Case {
    format: Format,
    image: Image,
    encoding: Encoding,
    /// (offset, xor) pairs applied to the encoded file.
    flips: Vec<(usize, u8)>,
}

impl Case {
    /// - byte 0: bits 0-2 the format (`Format::ALL`, modulo 6), bit 3
    ///   alpha, bit 4 an ICC profile, bit 5 `from_png`, bit 6 `guarded`;
    /// - bytes 1, 2: width and height, 1 to 64;
    /// - byte 3: the quality, 0 to 100;
    /// - byte 4: the number of flips (0 to 7), each 3 bytes (offset, 16
    ///   bits little-endian; xor) after the header;
    /// - bytes 5, 6: the ICC profile's length less [`MIN_ICC`]
    ///   (little-endian, modulo 3964), its bytes after the flips (zeros
    ///   when the input runs out);
    /// - the rest: the pixels (repeated to fill the image, zero if none).
    fn parse(data: &[u8]) -> Option<Case> {
        let (header, rest) = data.split_first_chunk::<7>()?;
        let format = Format::ALL[usize::from(header[0] & 7) % Format::ALL.len()];
        let has_alpha = header[0] & 8 != 0;
        let width = u32::from(header[1] % 64) + 1;
        let height = u32::from(header[2] % 64) + 1;
        let quality = header[3] % 101;
        let flip_count = usize::from(header[4] % 8);
        let (flip_bytes, rest) = rest.split_at(rest.len().min(flip_count * 3));
        let flips = flip_bytes
            .chunks_exact(3)
            .map(|f| (usize::from(u16::from_le_bytes([f[0], f[1]])), f[2]))
            .collect();
        let icc_len = MIN_ICC + usize::from(u16::from_le_bytes([header[5], header[6]]) % 3964);
        let (icc, pixel_bytes) = if header[0] & 16 != 0 {
            rest.split_at(rest.len().min(icc_len))
        } else {
            (&[][..], rest)
        };
        let mut icc = icc.to_vec();
        icc.resize(icc_len, 0);
        let channels = if has_alpha { 4 } else { 3 };
        let len = (width * height) as usize * channels;
        let pixels = if pixel_bytes.is_empty() {
            vec![0; len]
        } else {
            pixel_bytes.iter().copied().cycle().take(len).collect()
        };
        let tuning = Tuning {
            avif: AvifLimits {
                speed: 10,
                search_speed: 10,
                ..AvifLimits::DEFAULT
            },
        };
        Some(Case {
            format,
            image: Image {
                width,
                height,
                pixels,
                has_alpha,
                icc_profile: (header[0] & 16 != 0).then_some(icc),
            },
            encoding: Encoding {
                quality,
                effort: Effort::Final,
                from_png: header[0] & 32 != 0,
                guarded: header[0] & 64 != 0,
                tuning,
            },
            flips,
        })
    }
}

/// Decodes a damaged file of `format`: a consistent image or an error.
fn decode_damaged(format: Format, bytes: &[u8]) {
    let image = match format {
        Format::Jpeg | Format::Png => codecs::decode(bytes, &Limits::default()).ok(),
        Format::WebP => webp::decode(bytes).ok(),
        Format::Avif => avif::decode(bytes).ok(),
        Format::Jp2 => jp2::decode(bytes).ok(),
        // jxrlib's entropy decoding is not safe on damaged data (see
        // codecs::jxr::decode): up to it only.
        Format::Jxr => {
            let _ = jxr::read_headers(bytes);
            None
        }
    };
    if let Some(image) = image {
        assert!(image.is_consistent());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = Case::parse(data) else {
        return;
    };
    let Case {
        format,
        image,
        encoding,
        flips,
        ..
    } = case;
    let codec = format.codec();
    let Ok(encoded) = (codec.encode)(&image, &encoding) else {
        return;
    };
    let source = matches!(format, Format::Jpeg | Format::Png);
    match (codec.decode)(&encoded, &Limits::default()) {
        Ok(decoded) => {
            assert!(decoded.is_consistent());
            assert_eq!(
                (decoded.width, decoded.height),
                (image.width, image.height),
                "{format}"
            );
            assert!(
                image.has_alpha || !decoded.has_alpha,
                "{format}: alpha from nowhere"
            );
            if !source {
                assert_eq!(decoded.icc_profile, image.icc_profile, "{format}");
            }
            if format == Format::Png && image.icc_profile.is_none() {
                // Lossless; an opaque alpha channel is dropped on decoding.
                let expected: Vec<u8> = if image.has_alpha && !decoded.has_alpha {
                    assert!(image.pixels.chunks_exact(4).all(|p| p[3] == 255));
                    image
                        .pixels
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect()
                } else {
                    image.pixels.clone()
                };
                assert!(decoded.pixels == expected, "PNG round trip changed pixels");
            }
        }
        // A source's decoder may refuse the profile it is given.
        Err(_) if source && image.icc_profile.is_some() => {}
        Err(e) => panic!("{format} does not decode what it encoded: {e}"),
    }
    if !flips.is_empty() {
        let mut damaged = encoded;
        for (offset, xor) in flips {
            let len = damaged.len();
            damaged[offset % len] ^= xor;
        }
        decode_damaged(format, &damaged);
    }
});
