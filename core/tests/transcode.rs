//! `transcode` outcomes on synthetic inputs.

mod common;

use common::*;
use png::{BitDepth, ColorType};
use smart_imaging_core::codecs::{self, webp};
use smart_imaging_core::metrics::{psnr, ssim};
use smart_imaging_core::{transcode, Format, KeepReason, Limits, Outcome, Plan};

static PLAN: std::sync::LazyLock<Plan> = std::sync::LazyLock::new(|| Plan::webp(85));

#[test]
fn not_an_image() {
    for input in [&b"GIF89a...."[..], b"<html>", b"RIFF\0\0\0\0WEBPVP8 "] {
        assert!(matches!(
            transcode(input, &PLAN, &Limits::default()),
            Outcome::Original(KeepReason::NotAnImage)
        ));
    }
}

#[test]
fn png_graphic_is_converted() {
    // A photo-like image stored losslessly: WebP wins by far.
    let (w, h) = (200u32, 120u32);
    let rgb = noisy_photo(w as usize, h as usize);
    let input = png(w, h, ColorType::Rgb, BitDepth::Eight, &rgb, |_| {});
    let outcome = transcode(&input, &PLAN, &Limits::default());
    let Outcome::Converted(c) = outcome else {
        panic!("not converted: {outcome:?}")
    };
    assert_eq!((c.format, c.width, c.height), (Format::WebP, w, h));
    assert!(c.bytes.len() < input.len());
    let original = codecs::decode(&input, &Limits::default()).unwrap();
    let back = webp::decode(&c.bytes).unwrap();
    assert!(!back.has_alpha);
    assert!(
        psnr(&original, &back) > 30.0,
        "psnr {}",
        psnr(&original, &back)
    );
    assert!(
        ssim(&original, &back) > 0.9,
        "ssim {}",
        ssim(&original, &back)
    );
}

#[test]
fn alpha_png_keeps_alpha() {
    let (w, h) = (64u32, 64u32);
    let rgba: Vec<u8> = noisy_photo(64, 64)
        .chunks(3)
        .enumerate()
        .flat_map(|(i, p)| [p[0], p[1], p[2], ((i % 64) * 4) as u8])
        .collect();
    let input = png(w, h, ColorType::Rgba, BitDepth::Eight, &rgba, |_| {});
    let outcome = transcode(&input, &PLAN, &Limits::default());
    let Outcome::Converted(c) = outcome else {
        panic!("not converted: {outcome:?}")
    };
    let back = webp::decode(&c.bytes).unwrap();
    assert!(back.has_alpha);
    let alpha: Vec<u8> = back.pixels.chunks(4).map(|p| p[3]).collect();
    let expected: Vec<u8> = rgba.chunks(4).map(|p| p[3]).collect();
    assert_eq!(alpha, expected, "alpha is lossless");
}

#[test]
fn never_bigger() {
    // Noise in a heavily compressed JPEG: WebP at q85 would have to spend
    // far more bits reproducing it.
    let (w, h) = (128, 128);
    let input = jpeg(
        &noise(w * h * 3, 3),
        w,
        h,
        &JpegOptions {
            quality: 5.0,
            ..Default::default()
        },
    );
    match transcode(&input, &PLAN, &Limits::default()) {
        Outcome::Original(KeepReason::NotSmaller {
            original,
            converted,
        }) => {
            assert_eq!(original, input.len());
            assert!(converted >= original);
        }
        other => panic!("expected NotSmaller, got {other:?}"),
    }
}

#[test]
fn limits_are_reported() {
    let input = png(
        100,
        100,
        ColorType::Rgb,
        BitDepth::Eight,
        &vec![7; 30_000],
        |_| {},
    );
    let outcome = transcode(
        &input,
        &PLAN,
        &Limits {
            max_pixels: 5_000,
            ..Limits::default()
        },
    );
    let Outcome::Original(reason) = outcome else {
        panic!("converted despite the limit")
    };
    assert_eq!(
        reason,
        KeepReason::TooManyPixels {
            width: 100,
            height: 100,
            max_pixels: 5_000
        }
    );
    assert!(reason.is_failure());
}
