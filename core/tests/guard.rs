//! The visual-quality guard: SSIMULACRA 2 ([`guard::score`]) and the
//! per-image quality search ([`guard::smallest_passing`]).
//!
//! The metric is pinned against an independent implementation (the
//! `ssimulacra2` crate, 0.5.1) on deterministic distortions; the corpus
//! tests (skipped without `../shared/corpus` or `SMART_IMAGING_CORPUS`)
//! check its behaviour on real images and the search with real WebP.

mod common;

use std::cell::RefCell;

use smart_imaging_core::codecs::{self, jpeg, webp, Image};
use smart_imaging_core::guard::{self, score, smallest_passing, Reference};
use smart_imaging_core::resize::resize;
use smart_imaging_core::{KeepReason, Limits};

use fixtures::*;

/// Test images and distortions, deterministic (no codec involved).
mod fixtures {
    use smart_imaging_core::codecs::Image;

    /// A deterministic photo-like RGB test image: smooth gradients, a few hard
    /// edges (a disc and a bar), fine texture.
    pub fn synthetic(width: u32, height: u32) -> Image {
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        let (w, h) = (f64::from(width), f64::from(height));
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (f64::from(x) / w, f64::from(y) / h);
                let (dx, dy) = (fx - 0.6, fy - 0.4);
                let disc = dx * dx + dy * dy < 0.04;
                let bar = (0.15..0.25).contains(&fx);
                let texture = ((x * 7 + y * 13) % 11) as f64 - 5.0;
                let r = 40.0 + 150.0 * fx + texture + if disc { 60.0 } else { 0.0 };
                let g = 60.0 + 120.0 * fy - texture + if bar { -50.0 } else { 0.0 };
                let b = 90.0 + 80.0 * (fx * 6.0 + fy * 3.0).sin() + 0.5 * texture;
                pixels.extend([r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8));
            }
        }
        Image::rgb(width, height, pixels)
    }

    /// `img` with every sample moved by a deterministic pseudo-random amount
    /// in `-amplitude..=amplitude`.
    pub fn with_noise(img: &Image, amplitude: u8, seed: u64) -> Image {
        let mut state = seed | 1;
        let span = 2 * u64::from(amplitude) + 1;
        let pixels = img
            .pixels
            .iter()
            .map(|&v| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let delta = (state % span) as i32 - i32::from(amplitude);
                (i32::from(v) + delta).clamp(0, 255) as u8
            })
            .collect();
        Image {
            pixels,
            ..img.clone()
        }
    }

    /// `img` through a 3x3 box blur (edges clamped), rounded.
    pub fn box_blurred(img: &Image) -> Image {
        let (w, h, c) = (img.width as i64, img.height as i64, img.channels() as i64);
        let at = |x: i64, y: i64, k: i64| {
            let (x, y) = (x.clamp(0, w - 1), y.clamp(0, h - 1));
            u32::from(img.pixels[((y * w + x) * c + k) as usize])
        };
        let mut pixels = Vec::with_capacity(img.pixels.len());
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    let sum: u32 = (-1..=1)
                        .flat_map(|dy| (-1..=1).map(move |dx| (dx, dy)))
                        .map(|(dx, dy)| at(x + dx, y + dy, k))
                        .sum();
                    pixels.push(((sum + 4) / 9) as u8);
                }
            }
        }
        Image {
            pixels,
            ..img.clone()
        }
    }

    /// `img` with each sample rounded down to a multiple of `step`, plus half
    /// a step (banding).
    pub fn posterized(img: &Image, step: u8) -> Image {
        let pixels = img
            .pixels
            .iter()
            .map(|&v| (v / step * step).saturating_add(step / 2))
            .collect();
        Image {
            pixels,
            ..img.clone()
        }
    }
}

fn corpus_image(file: &str) -> Option<Image> {
    let dir = common::corpus_dir()?;
    let bytes = std::fs::read(dir.join(file)).ok()?;
    Some(codecs::decode(&bytes, &Limits::default()).unwrap())
}

fn crop(img: &Image, x0: u32, y0: u32, width: u32, height: u32) -> Image {
    let c = img.channels();
    let mut pixels = Vec::with_capacity(width as usize * height as usize * c);
    for y in y0..y0 + height {
        let start = (y * img.width + x0) as usize * c;
        pixels.extend_from_slice(&img.pixels[start..start + width as usize * c]);
    }
    Image {
        width,
        height,
        pixels,
        has_alpha: img.has_alpha,
        icc_profile: None,
    }
}

fn webp_round_trip(img: &Image, quality: u8) -> Image {
    webp::decode(&webp::encode(img, quality).unwrap()).unwrap()
}

fn rgba(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Image {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend(f(x, y));
        }
    }
    Image::rgba(width, height, pixels)
}

#[test]
fn identical_images_score_100() {
    let img = synthetic(64, 48);
    assert_eq!(score(&img, &img).unwrap(), 100.0);
    let with_alpha = rgba(40, 30, |x, y| [x as u8 * 6, y as u8 * 8, 90, (x * y) as u8]);
    assert_eq!(score(&with_alpha, &with_alpha).unwrap(), 100.0);
    if let Some(photo) = corpus_image("sk_coffee.jpg") {
        assert_eq!(score(&photo, &photo.clone()).unwrap(), 100.0);
    }
}

/// A distortion, named.
type Distortion = (&'static str, fn(&Image) -> Image);

/// The distortions scored against the reference implementation.
const DISTORTIONS: [Distortion; 5] = [
    ("noise 4", |i| with_noise(i, 4, 7)),
    ("noise 12", |i| with_noise(i, 12, 7)),
    ("box blur", box_blurred),
    ("posterize", |i| posterized(i, 16)),
    ("webp q85", |i| webp_round_trip(i, 85)),
];

/// Ours and the reference's scores of `reference` against each of
/// [`DISTORTIONS`] agree within `tolerance`: the blur is the reference's
/// bit for bit; the colour conversion differs in rounding only.
fn check_against_the_reference(reference: &Image, tolerance: f64) {
    for (what, distort) in DISTORTIONS {
        let distorted = distort(reference);
        let ours = score(reference, &distorted).unwrap();
        let theirs = common::reference_score(reference, &distorted);
        assert!(
            (ours - theirs).abs() < tolerance,
            "{what}: ours {ours}, the reference's {theirs}"
        );
    }
}

#[test]
fn matches_the_reference_implementation() {
    check_against_the_reference(&synthetic(256, 192), 0.05);
}

#[test]
fn matches_the_reference_implementation_on_photos() {
    for (file, x, y, w, h) in [
        ("sk_coffee.jpg", 100, 80, 320, 240),
        // Long rows and columns, where the reference's `f32` blur drifts
        // most from an exact one (by up to 2 points at high scores).
        ("lom_picture1a.jpg", 0, 0, 1400, 1000),
    ] {
        let Some(photo) = corpus_image(file) else {
            println!("corpus not found: skipped");
            return;
        };
        let w = w.min(photo.width);
        let h = h.min(photo.height);
        check_against_the_reference(&crop(&photo, x, y, w, h), 0.07);
    }
}

/// The streamed score (a few rows at a time, nothing prepared) is the
/// prepared one: sizes around the blur's batches of 8 rows and the
/// halvings (odd sides at every scale), the smallest sides that have all
/// six scales, alpha on either side, the reference scored twice (buffers
/// reused), and a corpus photo.
#[test]
fn a_streamed_score_is_the_prepared_one() {
    let same = |a: &Image, b: &Image, what: &str| {
        let prepared = Reference::new(a).unwrap().score(b).unwrap();
        let streamed_ref = Reference::streamed(a).unwrap();
        for _ in 0..2 {
            let streamed = streamed_ref.score(b).unwrap();
            assert!(
                (prepared - streamed).abs() < 1e-6,
                "{what}: prepared {prepared}, streamed {streamed}"
            );
        }
    };
    for (w, h) in [
        (128, 128),
        (131, 129),
        (200, 9 * 8 + 3),
        (257, 190),
        (1000, 130),
    ] {
        let img = synthetic(w, h);
        same(&img, &with_noise(&img, 6, 3), &format!("{w}x{h} noise"));
        same(&img, &box_blurred(&img), &format!("{w}x{h} blur"));
        same(&img, &img, &format!("{w}x{h} itself"));
    }
    let glass = |dx: u8| {
        rgba(150, 140, move |x, y| {
            [
                (x * 3) as u8,
                ((y * 2) as u8).wrapping_add(dx),
                90,
                ((x + y) % 256) as u8,
            ]
        })
    };
    same(&glass(0), &glass(4), "alpha");
    let opaque = synthetic(150, 140);
    let mut with_alpha = glass(0);
    for (px, o) in with_alpha
        .pixels
        .chunks_exact_mut(4)
        .zip(opaque.pixels.chunks_exact(3))
    {
        px[..3].copy_from_slice(o);
        px[3] = 250;
    }
    same(
        &opaque,
        &with_alpha,
        "opaque reference, candidate with alpha",
    );
    // Small images are mirrored, as `Reference::new` does.
    let small = synthetic(40, 30);
    same(&small, &with_noise(&small, 6, 3), "small");
    if let Some(photo) = corpus_image("sk_coffee.jpg") {
        same(&photo, &webp_round_trip(&photo, 80), "photo");
    }
    // Tiles of a larger image, streamed.
    let big = synthetic(1200, 900);
    let noisy = with_noise(&big, 6, 5);
    let prepared = Reference::sampled(&big, 200_000).unwrap();
    let streamed = Reference::sampled_streamed(&big, 200_000).unwrap();
    assert_eq!(prepared.scored_pixels(), streamed.scored_pixels());
    let (p, s) = (
        prepared.score(&noisy).unwrap(),
        streamed.score(&noisy).unwrap(),
    );
    assert!((p - s).abs() < 1e-6, "tiles: prepared {p}, streamed {s}");
}

/// What the module serves passes by the reference implementation, scored
/// on the whole image: corpus photos (one under 1 MP, two over, one with
/// its check on the whole 2.6 MP) converted as a WebP-only and an AVIF
/// client gets them. (`core/examples/score_agreement.rs --served` runs
/// this on every corpus photo.)
#[test]
fn what_is_served_passes_by_the_reference_implementation() {
    use smart_imaging_core::{transcode, Format, Outcome, Plan};
    let Some(dir) = common::corpus_dir() else {
        println!("corpus not found: skipped");
        return;
    };
    for file in ["kde_coldripple.jpg", "mate_wood.jpg", "lom_infinitesea.jpg"] {
        let input = std::fs::read(dir.join(file)).unwrap();
        let original = codecs::decode(&input, &Limits::default()).unwrap();
        for format in [Format::WebP, Format::Avif] {
            let Outcome::Converted(c) =
                transcode(&input, &Plan::new(vec![format]), &Limits::default())
            else {
                continue;
            };
            let served = match c.format {
                Format::Avif => codecs::avif::decode(&c.bytes).unwrap(),
                _ => webp::decode(&c.bytes).unwrap(),
            };
            let reference = common::reference_score(&original, &served);
            assert!(
                reference >= 80.0,
                "{file} as {:?} q{}: the guard said {:?}, the reference {reference}",
                c.format,
                c.quality,
                c.score
            );
        }
    }
}

#[test]
fn heavy_jpeg_scores_low() {
    let Some(photo) = corpus_image("kde_coldripple.jpg") else {
        println!("corpus not found: skipped");
        return;
    };
    let reference = Reference::new(&photo).unwrap();
    let at = |q| {
        let bytes = jpeg::encode(&photo, q).unwrap();
        reference
            .score(&codecs::decode(&bytes, &Limits::default()).unwrap())
            .unwrap()
    };
    let (q20, q60, q95) = (at(20), at(60), at(95));
    println!("JPEG q20 {q20:.2}, q60 {q60:.2}, q95 {q95:.2}");
    assert!(q20 < 50.0, "{q20}");
    assert!(q20 < q60 && q60 < q95, "{q20} {q60} {q95}");
    assert!(q95 > 85.0, "{q95}");
}

#[test]
fn webp_scores_rise_with_quality() {
    // A photo, a screenshot, an image with alpha.
    for file in [
        "sk_coffee.jpg",
        "deb_desktop_preview.png",
        "deb_moon_logo.png",
    ] {
        let Some(img) = corpus_image(file) else {
            println!("corpus not found: skipped");
            return;
        };
        let reference = Reference::new(&img).unwrap();
        let scores: Vec<f64> = [30, 50, 70, 80, 90, 100]
            .iter()
            .map(|&q| reference.score(&webp_round_trip(&img, q)).unwrap())
            .collect();
        println!("{file}: {scores:.2?}");
        // Monotone within a small tolerance (an encoder is not exactly
        // monotone), and clearly rising overall.
        for pair in scores.windows(2) {
            assert!(pair[1] > pair[0] - 0.5, "{file}: {scores:?}");
        }
        assert!(scores[5] > scores[0] + 5.0, "{file}: {scores:?}");
    }
}

#[test]
fn colour_under_full_transparency_does_not_count() {
    // Same alpha; colour differs only where alpha is 0.
    let alpha = |x: u32, y: u32| {
        if (x / 8 + y / 8).is_multiple_of(2) {
            0
        } else {
            200
        }
    };
    let a = rgba(64, 48, |x, y| [x as u8 * 4, 100, y as u8 * 5, alpha(x, y)]);
    let b = rgba(64, 48, |x, y| {
        if alpha(x, y) == 0 {
            [255 - x as u8, (7 * y) as u8, 33, 0]
        } else {
            [x as u8 * 4, 100, y as u8 * 5, alpha(x, y)]
        }
    });
    assert_ne!(a.pixels, b.pixels);
    assert_eq!(score(&a, &b).unwrap(), 100.0);
    // Colour under partial transparency does count.
    let c = rgba(64, 48, |x, y| [x as u8 * 4, 160, y as u8 * 5, alpha(x, y)]);
    assert!(score(&a, &c).unwrap() < 90.0);
}

#[test]
fn alpha_is_judged_on_the_worse_background() {
    // Opaque black vs fully transparent: identical over black, opposite
    // over white. The score is the on-white one: low.
    let opaque_black = rgba(32, 32, |_, _| [0, 0, 0, 255]);
    let clear = rgba(32, 32, |_, _| [0, 0, 0, 0]);
    // (Flat images have no structure to compare: only the SSIM means
    // term counts, and pure black vs white scores ~20.)
    let s = score(&opaque_black, &clear).unwrap();
    assert!(s < 30.0, "{s}");
    // And symmetrically for white.
    let opaque_white = rgba(32, 32, |_, _| [255, 255, 255, 255]);
    let clear_white = rgba(32, 32, |_, _| [255, 255, 255, 0]);
    assert!(score(&opaque_white, &clear_white).unwrap() < 30.0);
    // An opaque RGB reference against a candidate with alpha: the same.
    let rgb_black = Image::rgb(32, 32, vec![0; 32 * 32 * 3]);
    assert_eq!(score(&rgb_black, &clear).unwrap(), s);
    assert_eq!(score(&rgb_black, &opaque_black).unwrap(), 100.0);
}

#[test]
fn refuses_what_it_cannot_score_and_mirrors_small_images() {
    let a = synthetic(32, 32);
    let unsupported = |r: Result<f64, KeepReason>| matches!(r, Err(KeepReason::Unsupported(_)));
    assert!(unsupported(score(&a, &synthetic(32, 31))));
    // Sides under 8 (and up to guard::MIN_SCORED_SIDE) are scored as a
    // mirrored mosaic: scoring works down to one pixel.
    assert_eq!(score(&synthetic(7, 32), &synthetic(7, 32)).unwrap(), 100.0);
    assert_eq!(score(&synthetic(1, 1), &synthetic(1, 1)).unwrap(), 100.0);
    let mut broken = a.clone();
    broken.pixels.pop();
    assert!(unsupported(score(&a, &broken)));
    assert!(unsupported(score(&broken, &a)));
    // 8x8, the smallest SSIMULACRA 2 window, is fine.
    assert_eq!(score(&synthetic(8, 8), &synthetic(8, 8)).unwrap(), 100.0);
}

#[test]
fn sampled_scoring_tracks_full_resolution() {
    let Some(photo) = corpus_image("kde_coldripple.jpg") else {
        println!("corpus not found: skipped");
        return;
    };
    let full = Reference::new(&photo).unwrap();
    // 0.5 MP of a 0.9 MP photo: 6 tiles.
    let sampled = Reference::sampled(&photo, 500_000).unwrap();
    assert_eq!(sampled.scored_pixels(), 6 * 256 * 256);
    assert_eq!(sampled.size(), (photo.width, photo.height));
    for q in [60, 85, 95] {
        let candidate = webp_round_trip(&photo, q);
        let (f, s) = (
            full.score(&candidate).unwrap(),
            sampled.score(&candidate).unwrap(),
        );
        println!("q{q}: full {f:.2}, sampled {s:.2}");
        assert!((s - f).abs() < 3.0, "q{q}: {f} {s}");
    }
    assert_eq!(sampled.score(&photo).unwrap(), 100.0);
    // Small images are scored whole.
    let small = synthetic(300, 200);
    assert_eq!(
        Reference::sampled(&small, 1000).unwrap().scored_pixels(),
        300 * 200
    );
}

#[test]
fn downscaled_scoring_is_lenient() {
    // Why the cheap mode samples tiles instead: at a quarter of the
    // pixels, compression noise averages away.
    let Some(photo) = corpus_image("kde_coldripple.jpg") else {
        println!("corpus not found: skipped");
        return;
    };
    let candidate = webp_round_trip(&photo, 60);
    let full = score(&photo, &candidate).unwrap();
    let downscaled = Reference::downscaled(&photo, 250_000).unwrap();
    assert!(downscaled.scored_pixels() <= 250_000);
    let small = downscaled.score(&candidate).unwrap();
    println!("full {full:.2}, downscaled {small:.2}");
    assert!(small > full + 5.0, "{full} {small}");
}

/// Runs the search with WebP, recording each quality tried and its output.
fn search_webp(
    img: &Image,
    threshold: f64,
    max_encodes: usize,
) -> (Option<guard::Found>, Vec<(u8, Vec<u8>)>) {
    let tried = RefCell::new(Vec::new());
    let found = smallest_passing(
        |q| {
            let bytes = webp::encode(img, q)?;
            tried.borrow_mut().push((q, bytes.clone()));
            Ok(bytes)
        },
        |bytes| webp::decode(bytes).map_err(KeepReason::Decode),
        img,
        threshold,
        (50, 100),
        max_encodes,
    )
    .unwrap();
    (found, tried.into_inner())
}

#[test]
fn search_finds_the_smallest_passing_webp() {
    // A photo, a screenshot, an image with alpha, each at most ~0.25 MP.
    for file in [
        "sk_coffee.jpg",
        "deb_desktop_preview.png",
        "deb_moon_logo.png",
    ] {
        let Some(img) = corpus_image(file) else {
            println!("corpus not found: skipped");
            return;
        };
        let reference = Reference::new(&img).unwrap();
        let threshold = 80.0;
        let (found, tried) = search_webp(&img, threshold, 6);
        let found = found.unwrap_or_else(|| panic!("{file}: nothing passed"));
        let qualities: Vec<u8> = tried.iter().map(|(q, _)| *q).collect();
        println!(
            "{file}: q{} score {:.2}, {} bytes ({} encodes: {qualities:?})",
            found.quality,
            found.score,
            found.bytes.len(),
            found.encodes
        );
        assert_eq!(found.encodes, tried.len());
        assert!(found.encodes <= 6);
        // What it returns is what it claims.
        let decoded = webp::decode(&found.bytes).unwrap();
        assert_eq!(reference.score(&decoded).unwrap(), found.score);
        assert!(found.score >= threshold);
        // Every output tried, scored again: the result is the smallest that
        // passes, and the nearest quality tried below it fails.
        let scored: Vec<(u8, usize, f64)> = tried
            .iter()
            .map(|(q, bytes)| {
                (
                    *q,
                    bytes.len(),
                    reference.score(&webp::decode(bytes).unwrap()).unwrap(),
                )
            })
            .collect();
        let smallest_passing = scored
            .iter()
            .filter(|(_, _, s)| *s >= threshold)
            .map(|(_, len, _)| *len)
            .min();
        assert_eq!(
            smallest_passing,
            Some(found.bytes.len()),
            "{file}: {scored:?}"
        );
        if let Some((q, _, s)) = scored
            .iter()
            .filter(|(q, _, _)| *q < found.quality)
            .max_by_key(|(q, _, _)| *q)
        {
            assert!(*s < threshold, "{file}: q{q} below the result passes ({s})");
        }
    }
}

#[test]
fn search_gives_up_when_even_the_top_fails() {
    let img = synthetic(96, 64);
    // No lossy output reaches 100.
    let (found, tried) = search_webp(&img, 100.0, 6);
    assert!(found.is_none());
    assert!(tried.iter().any(|(q, _)| *q == 100), "the top was tried");
    assert!(tried.len() <= 6);
}

#[test]
fn search_scores_big_images_on_tiles() {
    // smallest_passing scores a sample of guard::DEFAULT_MAX_PIXELS: the
    // result must still pass at full resolution, give or take the
    // sampling error.
    let Some(photo) = corpus_image("lom_picture1a.jpg") else {
        println!("corpus not found: skipped");
        return;
    };
    assert!(u64::from(photo.width) * u64::from(photo.height) > guard::DEFAULT_MAX_PIXELS);
    // Shrunk to ~1.2 MP, still over the limit, to keep the test quick.
    let img = resize(&photo, photo.width * 9 / 10, photo.height * 9 / 10).unwrap();
    let (found, _) = search_webp(&img, 80.0, 6);
    let found = found.unwrap();
    let full = score(&img, &webp::decode(&found.bytes).unwrap()).unwrap();
    println!(
        "q{}: downscaled score {:.2}, full {full:.2}",
        found.quality, found.score
    );
    assert!(full > 78.0, "{full}");
}
