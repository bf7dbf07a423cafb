//! Every decoder of the core on arbitrary bytes.
//!
//! The input is a file: its signature picks the decoder (JPEG and PNG
//! through `codecs::decode`, as `transcode` reads a body; WebP, AVIF,
//! JPEG 2000; JPEG XR up to its pixel data, see below). Without a known
//! signature, the first byte picks one, so that random bytes reach all
//! of them. The seeds (fuzz/seeds/decode/) are small files of each format,
//! some crafted (huge dimensions, truncated, many progressive scans,
//! 16-bit PNG, broken CRCs).
//!
//! JPEG XR: jxrlib's entropy decoding has no bounds checks (a flipped
//! byte can crash it, see `codecs::jxr::decode`), and it only ever decodes
//! files the module wrote itself; what must hold on any bytes is
//! everything before it (the container and header checks, and jxrlib
//! reading the headers): `jxr::read_headers`.
//!
//! Invariants: no panic (libfuzzer-sys aborts on any panic, caught or
//! not), and a decoded image is consistent (as many pixel bytes as its
//! size says) and, for the sources, within the pixel limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_imaging_core::codecs::{self, avif, jp2, jxr, webp, Image};
use smart_imaging_core::Limits;

/// 1024x1024: the seeds are small, and the limit is what stands between
/// a crafted header and a huge allocation.
/// The work budget is charged by `transcode`, not by the decoders.
const LIMITS: Limits = Limits {
    max_pixels: 1 << 20,
    work: None,
};

#[derive(Clone, Copy)]
enum Decoder {
    /// JPEG or PNG (by signature, as `transcode`).
    Source,
    WebP,
    Avif,
    Jp2,
    Jxr,
}

fn by_signature(data: &[u8]) -> Option<Decoder> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") || data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Decoder::Source)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(Decoder::WebP)
    } else if data.get(4..8) == Some(b"ftyp") {
        Some(Decoder::Avif)
    } else if data.starts_with(b"\0\0\0\x0CjP  ") {
        Some(Decoder::Jp2)
    } else if data.starts_with(b"II\xBC") {
        Some(Decoder::Jxr)
    } else {
        None
    }
}

fn check(image: &Image, limit: u64) {
    assert!(image.is_consistent(), "{}x{}", image.width, image.height);
    let pixels = u64::from(image.width) * u64::from(image.height);
    assert!(
        pixels > 0 && pixels <= limit,
        "{}x{}",
        image.width,
        image.height
    );
}

fuzz_target!(|data: &[u8]| {
    let decoder =
        by_signature(data).unwrap_or_else(|| match data.first().copied().unwrap_or(0) % 5 {
            0 => Decoder::Source,
            1 => Decoder::WebP,
            2 => Decoder::Avif,
            3 => Decoder::Jp2,
            _ => Decoder::Jxr,
        });
    match decoder {
        Decoder::Source => {
            if let Ok(image) = codecs::decode(data, &LIMITS) {
                check(&image, LIMITS.max_pixels);
            }
        }
        Decoder::WebP => {
            if let Ok(image) = webp::decode(data) {
                check(&image, u64::MAX);
            }
        }
        Decoder::Avif => {
            if let Ok(image) = avif::decode(data) {
                check(&image, u64::MAX);
            }
        }
        Decoder::Jp2 => {
            if let Ok(image) = jp2::decode(data) {
                check(&image, jp2::MAX_DECODE_PIXELS);
            }
        }
        Decoder::Jxr => {
            if let Ok((width, height, _)) = jxr::read_headers(data) {
                let pixels = u64::from(width) * u64::from(height);
                assert!(pixels > 0 && pixels <= jxr::MAX_DECODE_PIXELS);
            }
        }
    }
});
