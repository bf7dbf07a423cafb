//! `transcode` must return (never panic, never abort) for any bytes:
//! empty, truncated, corrupted, random. Codec failures must come back as
//! ordinary reasons, not as caught panics of our own code.

mod common;

use common::*;
use png::{BitDepth, ColorType};
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

static PLAN: std::sync::LazyLock<Plan> = std::sync::LazyLock::new(|| Plan::webp(75));

/// Runs `transcode` and checks the outcome is not a caught panic.
fn survives(input: &[u8], what: &str) -> Outcome {
    let outcome = transcode(input, &PLAN, &Limits::default());
    if let Outcome::Original(KeepReason::Panic(msg)) = &outcome {
        panic!("{what}: transcode caught a panic: {msg}");
    }
    outcome
}

fn valid_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let (w, h) = (40, 24);
    let rgb = photo_like(w, h);
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], (i % 256) as u8])
        .collect();
    vec![
        ("baseline JPEG", jpeg(&rgb, w, h, &JpegOptions::default())),
        (
            "progressive JPEG",
            jpeg(
                &rgb,
                w,
                h,
                &JpegOptions {
                    progressive: true,
                    ..Default::default()
                },
            ),
        ),
        (
            "RGBA PNG",
            png(
                w as u32,
                h as u32,
                ColorType::Rgba,
                BitDepth::Eight,
                &rgba,
                |_| {},
            ),
        ),
        (
            "interlaced PNG",
            interlaced_png(w as u32, h as u32, 6, 4, &rgba),
        ),
    ]
}

#[test]
fn empty_and_tiny_inputs() {
    for input in [
        &b""[..],
        b"\xFF",
        b"\xFF\xD8",
        b"\xFF\xD8\xFF",
        b"\xFF\xD8\xFF\xD9",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
    ] {
        assert!(matches!(survives(input, "tiny"), Outcome::Original(_)));
    }
    assert!(matches!(
        survives(b"", "empty"),
        Outcome::Original(KeepReason::NotAnImage)
    ));
}

#[test]
fn truncated_inputs() {
    for (what, bytes) in valid_inputs() {
        assert!(matches!(
            survives(&bytes, what),
            Outcome::Converted(_) | Outcome::Original(KeepReason::NotSmaller { .. })
        ));
        // Every cut in the headers, then a sampling of the rest.
        let cuts = (0..bytes.len().min(400)).chain((400..bytes.len()).step_by(37));
        for cut in cuts {
            if let Outcome::Converted(_) = survives(&bytes[..cut], what) {
                // A cut that only loses trailing bytes (e.g. PNG's IEND) may
                // still decode completely; anything earlier must not.
                assert!(
                    cut + 16 >= bytes.len(),
                    "{what} truncated at {cut} of {} was converted",
                    bytes.len()
                );
            }
        }
    }
}

#[test]
fn corrupted_inputs() {
    for (what, bytes) in valid_inputs() {
        let random = noise(bytes.len() * 8, 7);
        for round in 0..300 {
            let mut corrupt = bytes.clone();
            // Flip a few bytes somewhere after the signature.
            for k in 0..1 + round % 4 {
                let r = &random[(round * 8 + k * 2)..];
                let at = 3 + (usize::from(r[0]) << 8 | usize::from(r[1])) % (corrupt.len() - 3);
                corrupt[at] ^= r[2] | 1;
            }
            survives(&corrupt, what);
            if what.contains("PNG") {
                // Also with valid CRCs, so the damage reaches the decoder.
                fix_png_crcs(&mut corrupt);
                survives(&corrupt, what);
            }
        }
    }
}

#[test]
fn random_inputs() {
    for seed in 0..200u64 {
        let body = noise(64 + (seed as usize * 97) % 4000, seed);
        survives(&body, "random");
        let mut jpeg = vec![0xFF, 0xD8, 0xFF];
        jpeg.extend_from_slice(&body);
        survives(&jpeg, "random after a JPEG signature");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&body);
        survives(&png, "random after a PNG signature");
    }
}
