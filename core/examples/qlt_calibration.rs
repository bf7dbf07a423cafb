//! Calibrates the URL argument `qlt` (0-100 on a JPEG-like scale) against
//! each encoder's own quality scale: the table in `src/quality_map.rs`.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example qlt_calibration
//! cargo run --release -p smart-imaging-core --example qlt_calibration -- --check-only
//! ```
//!
//! What "the same visual quality" means here: the same *median* SSIMULACRA 2
//! score (`guard::Reference::score`, full resolution) over a fixed sample
//! of corpus images. The reference scale is MozJPEG (`codecs::jpeg::encode`,
//! 4:2:0, trellis) at qlt 10, 20, ..., 70, 75, 80, 85, 90, 95, 100.
//! Every other format is scored on a grid of its own qualities (every 5 up
//! to 80, every 2 above, where the curves are steep and the qualities
//! that matter are), and the quality at which its median score equals
//! JPEG's median at a given qlt is found by linear interpolation between
//! grid points (on the running maximum of the median curve, so that a
//! wobble cannot make the answer go backwards). A format that does not
//! reach JPEG's score even at 100 maps to 100 (marked `*`).
//!
//! The sample: 6 colour photos (JPEG originals, downscaled by 2 with
//! `resize::resize`, so that their own compression grain, which any
//! re-encoding has to reproduce, does not dominate the scores) and 4
//! opaque graphics (PNG originals: a screenshot, a flat graphic, a smooth
//! gradient and a detailed wallpaper), each downscaled by the smallest
//! integer factor (at least 2 for JPEGs) that brings it to at most 0.5 MP.
//! ICC profiles are dropped (colour management is not what is measured).
//!
//! Every candidate is decoded in process (`codecs::{webp, avif, jp2,
//! jxr}::decode`). The first calibration run decoded JPEG 2000 and JPEG XR
//! with the reference tools `opj_decompress` and `JxrDecApp` instead; the
//! median curves came out identical to the last digit printed.
//!
//! After the calibration, a check: every format encoded at
//! `quality_map::for_format(qlt, ..)` (the shipped table, rounded to
//! integers), with its median score next to JPEG's and its median size
//! relative to the JPEG's. `--no-check` skips it; `--check-only` runs only
//! it (to check an edited table without recalibrating).
//!
//! Single-threaded on purpose (the machines are shared): ~1550 encodes,
//! about 2.5 minutes of CPU (AVIF is 60 % of it) on one x86-64 core, in
//! the release build or the dev profile (which builds the codec crates at
//! opt-level 3).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use smart_imaging_core::codecs::{self, avif, jp2, jpeg, jxr, webp, Image};
use smart_imaging_core::guard::Reference;
use smart_imaging_core::quality_map;
use smart_imaging_core::resize::resize;
use smart_imaging_core::{Format, Limits};

/// Colour photos of varied content (JPEG originals of 1.3-1.7 MP).
const PHOTOS: [&str; 6] = [
    "lom_aitzgorri.jpg", // mountain landscape
    "lom_life.jpg",      // detailed, the largest bytes per pixel
    "lom_picture1a.jpg",
    "mate_blinds.jpg",
    "mate_raindrops.jpg", // macro, smooth bokeh
    "mate_wood.jpg",      // texture
];

/// Opaque graphics (PNG originals).
const GRAPHICS: [&str; 4] = [
    "dolphin_default_ui.png", // screenshot: text, UI
    "kde_kokkini.png",        // flat-colour graphic
    "mate_umcold.png",        // smooth gradient
    "ukui_calla.png",         // detailed graphic (RGBA, all opaque)
];

/// Samples are downscaled to at most this many pixels.
const MAX_PIXELS: u64 = 500_000;

/// The reference scale: MozJPEG qualities, i.e. the values of `qlt`.
const QLT: [u8; 13] = [10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100];

const AVIF_SPEED: u8 = 6;

const FORMATS: [Format; 4] = [Format::WebP, Format::Avif, Format::Jp2, Format::Jxr];

/// The qualities each format is scored at: every 5 to 80, every 2 above.
fn grid() -> Vec<u8> {
    (0..=80).step_by(5).chain((82..=100).step_by(2)).collect()
}

struct Sample {
    name: &'static str,
    photo: bool,
    reference: Reference<'static>,
    image: Image,
}

/// Score and size in bytes of one encode, memoised per (format, quality,
/// image): the check reuses the calibration's encodes where it can.
#[derive(Clone, Copy)]
struct Measure {
    score: f64,
    bytes: usize,
}

struct Bench {
    samples: Vec<Sample>,
    memo: HashMap<(&'static str, u8, usize), Measure>,
    encodes: usize,
}

impl Bench {
    fn measure(&mut self, format: Format, quality: u8, index: usize) -> Measure {
        if let Some(&m) = self.memo.get(&(format.name(), quality, index)) {
            return m;
        }
        let sample = &self.samples[index];
        let bytes = encode(format, &sample.image, quality)
            .unwrap_or_else(|e| panic!("{} q{quality} {}: {e:?}", format.name(), sample.name));
        let decoded = decode(format, &bytes);
        let score = sample.reference.score(&decoded).unwrap_or_else(|e| {
            panic!(
                "scoring {} q{quality} {}: {e:?}",
                format.name(),
                sample.name
            )
        });
        let m = Measure {
            score,
            bytes: bytes.len(),
        };
        self.memo.insert((format.name(), quality, index), m);
        self.encodes += 1;
        m
    }

    /// Median score and median bits per pixel over the samples selected
    /// by `pick` (all, photos, graphics).
    fn median(&mut self, format: Format, quality: u8, pick: Pick) -> (f64, f64) {
        let (mut scores, mut bpp) = (Vec::new(), Vec::new());
        for i in 0..self.samples.len() {
            if !pick.takes(self.samples[i].photo) {
                continue;
            }
            let m = self.measure(format, quality, i);
            let img = &self.samples[i].image;
            scores.push(m.score);
            bpp.push(m.bytes as f64 * 8.0 / (f64::from(img.width) * f64::from(img.height)));
        }
        (median(scores), median(bpp))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Pick {
    All,
    Photos,
    Graphics,
}

impl Pick {
    fn takes(self, photo: bool) -> bool {
        match self {
            Pick::All => true,
            Pick::Photos => photo,
            Pick::Graphics => !photo,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn encode(format: Format, img: &Image, q: u8) -> Result<Vec<u8>, impl std::fmt::Debug> {
    match format {
        Format::Jpeg => jpeg::encode(img, q),
        Format::WebP => webp::encode(img, q),
        Format::Avif => avif::encode(img, q, AVIF_SPEED),
        Format::Jp2 => jp2::encode(img, q),
        Format::Jxr => jxr::encode(img, q),
        Format::Png => unreachable!("PNG is lossless"),
    }
}

fn decode(format: Format, bytes: &[u8]) -> Image {
    let img = match format {
        Format::Jpeg => codecs::decode(bytes, &Limits::default()).map_err(|e| format!("{e:?}")),
        Format::WebP => webp::decode(bytes),
        Format::Avif => avif::decode(bytes),
        Format::Jp2 => jp2::decode(bytes),
        Format::Jxr => jxr::decode(bytes),
        Format::Png => unreachable!("PNG is lossless"),
    };
    img.unwrap_or_else(|e| panic!("decoding {}: {e}", format.name()))
}

/// The quality at which a format's median curve (`curve`: (quality,
/// median score) on the grid, ascending quality) reaches `target`, and
/// whether it never does (then 100). Linear between grid points, on the
/// curve's running maximum.
fn invert(curve: &[(u8, f64)], target: f64) -> (f64, bool) {
    let mut envelope = Vec::with_capacity(curve.len());
    let mut best = f64::NEG_INFINITY;
    for &(q, s) in curve {
        best = best.max(s);
        envelope.push((f64::from(q), best));
    }
    if target <= envelope[0].1 {
        return (envelope[0].0, false);
    }
    for pair in envelope.windows(2) {
        let ((q0, s0), (q1, s1)) = (pair[0], pair[1]);
        if s1 >= target {
            // s0 < target <= s1, so s1 > s0.
            return (q0 + (target - s0) / (s1 - s0) * (q1 - q0), false);
        }
    }
    (100.0, true)
}

fn corpus_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("SMART_IMAGING_CORPUS").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.is_dir())
        .expect("corpus not found: set SMART_IMAGING_CORPUS")
}

/// Decodes and downscales one corpus file (see the module documentation).
fn load(dir: &Path, name: &'static str, photo: bool) -> Sample {
    let bytes = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut img =
        codecs::decode(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert!(!img.has_alpha, "{name}: the sample must be opaque");
    img.icc_profile = None;
    let pixels = u64::from(img.width) * u64::from(img.height);
    let mut factor: u32 = if photo { 2 } else { 1 };
    while pixels / u64::from(factor * factor) > MAX_PIXELS {
        factor += 1;
    }
    if factor > 1 {
        let (w, h) = (
            (img.width + factor / 2) / factor,
            (img.height + factor / 2) / factor,
        );
        img = resize(&img, w, h).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let reference = Reference::new(&img).unwrap();
    Sample {
        name,
        photo,
        reference,
        image: img,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check_only = args.iter().any(|a| a == "--check-only");
    let no_check = args.iter().any(|a| a == "--no-check");
    let started = Instant::now();

    let dir = corpus_dir();
    let samples: Vec<Sample> = PHOTOS
        .iter()
        .map(|&n| load(&dir, n, true))
        .chain(GRAPHICS.iter().map(|&n| load(&dir, n, false)))
        .collect();
    println!("Samples ({}):", dir.display());
    for s in &samples {
        println!(
            "  {:24} {:8} {}x{} ({:.2} MP)",
            s.name,
            if s.photo { "photo" } else { "graphic" },
            s.image.width,
            s.image.height,
            f64::from(s.image.width) * f64::from(s.image.height) / 1e6
        );
    }
    println!("libs: {}", avif::version());
    println!();

    let mut bench = Bench {
        samples,
        memo: HashMap::new(),
        encodes: 0,
    };

    if !check_only {
        calibrate(&mut bench);
    }
    if !no_check {
        check(&mut bench);
    }
    println!(
        "\n{} encodes scored in {:.0} s",
        bench.encodes,
        started.elapsed().as_secs_f64()
    );
}

fn calibrate(bench: &mut Bench) {
    let grid = grid();
    let picks = [Pick::All, Pick::Photos, Pick::Graphics];

    // The reference scale.
    let mut jpeg_curve: HashMap<u8, [(f64, f64); 3]> = HashMap::new();
    for &q in &QLT {
        let m = picks.map(|p| bench.median(Format::Jpeg, q, p));
        jpeg_curve.insert(q, m);
    }
    eprintln!("jpeg done");

    // Each format's median curves: [format][pick] -> [(q, score, bpp)].
    let mut curves: Vec<[Vec<(u8, f64, f64)>; 3]> = Vec::new();
    for &format in &FORMATS {
        let t = Instant::now();
        let mut per_pick: [Vec<(u8, f64, f64)>; 3] = Default::default();
        for &q in &grid {
            for (k, &p) in picks.iter().enumerate() {
                let (s, b) = bench.median(format, q, p);
                per_pick[k].push((q, s, b));
            }
        }
        eprintln!(
            "{} done in {:.0} s",
            format.name(),
            t.elapsed().as_secs_f64()
        );
        curves.push(per_pick);
    }

    println!("Median SSIMULACRA 2 (median bits per pixel) per encoder quality, all 10 images:");
    print!("{:>4}", "q");
    for f in &FORMATS {
        print!(" | {:>14}", f.name());
    }
    println!();
    for (i, &q) in grid.iter().enumerate() {
        print!("{q:>4}");
        for c in &curves {
            let (_, s, b) = c[0][i];
            print!(" | {s:6.2} ({b:5.3})");
        }
        println!();
    }
    println!();
    println!("MozJPEG reference: median SSIMULACRA 2 (bits per pixel):");
    println!(
        "{:>4} | {:>15} | {:>15} | {:>15}",
        "qlt", "all", "photos", "graphics"
    );
    for &q in &QLT {
        let m = jpeg_curve[&q];
        println!(
            "{q:>4} | {:6.2} ({:5.3}) | {:6.2} ({:5.3}) | {:6.2} ({:5.3})",
            m[0].0, m[0].1, m[1].0, m[1].1, m[2].0, m[2].1
        );
    }

    for (k, label) in ["all 10 images (the table)", "photos only", "graphics only"]
        .iter()
        .enumerate()
    {
        println!();
        println!("qlt -> encoder quality at equal median SSIMULACRA 2, {label}:");
        println!(
            "| qlt | JPEG score | {} |",
            FORMATS.map(|f| f.name()).join(" | ")
        );
        println!("|---:|---:|{}", "---:|".repeat(FORMATS.len()));
        for &q in &QLT {
            let target = jpeg_curve[&q][k].0;
            let cells: Vec<String> = curves
                .iter()
                .map(|c| {
                    let curve: Vec<(u8, f64)> = c[k].iter().map(|&(q, s, _)| (q, s)).collect();
                    let (eq, saturated) = invert(&curve, target);
                    if saturated {
                        "100*".to_owned()
                    } else {
                        format!("{eq:.1}")
                    }
                })
                .collect();
            println!("| {q} | {target:.1} | {} |", cells.join(" | "));
        }
    }
    println!("(* does not reach the JPEG score even at quality 100)");

    // The table for src/quality_map.rs, rounded (qlt 0 maps to 0 by
    // definition: nothing is measured below JPEG q10).
    println!();
    println!("For quality_map.rs (qlt, [webp, avif, jp2, jxr]):");
    println!("    (0, [0, 0, 0, 0]),");
    for &q in &QLT {
        let target = jpeg_curve[&q][0].0;
        let cells: Vec<String> = curves
            .iter()
            .map(|c| {
                let curve: Vec<(u8, f64)> = c[0].iter().map(|&(q, s, _)| (q, s)).collect();
                format!("{}", invert(&curve, target).0.round() as u8)
            })
            .collect();
        println!("    ({q}, [{}]),", cells.join(", "));
    }
}

fn check(bench: &mut Bench) {
    println!();
    println!("Check: each format at quality_map::for_format(qlt): median score (JPEG's), median size / JPEG's size:");
    print!("| qlt | JPEG |");
    for f in &FORMATS {
        print!(" {} |", f.name());
    }
    println!();
    println!("|---:|---:|{}", "---|".repeat(FORMATS.len()));
    for &qlt in &QLT {
        let n = bench.samples.len();
        let jpeg: Vec<Measure> = (0..n)
            .map(|i| bench.measure(Format::Jpeg, qlt, i))
            .collect();
        let jpeg_median = median(jpeg.iter().map(|m| m.score).collect());
        print!("| {qlt} | {jpeg_median:.1} |");
        for &format in &FORMATS {
            let q = quality_map::for_format(qlt, format);
            let ms: Vec<Measure> = (0..n).map(|i| bench.measure(format, q, i)).collect();
            let score = median(ms.iter().map(|m| m.score).collect());
            let ratio = median(
                ms.iter()
                    .zip(&jpeg)
                    .map(|(m, j)| m.bytes as f64 / j.bytes as f64)
                    .collect(),
            );
            print!(" q{q}: {score:.1}, {:.0} % |", ratio * 100.0);
        }
        println!();
    }
}
