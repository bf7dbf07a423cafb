//! Work study: CPU time per megapixel of each step of a conversion, per
//! format and per kind of image, to set the weights of the work budget
//! (`smart_imaging_work_budget`, see `core/src/work.rs`).
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example work_study -- [FILE...]
//! ```
//!
//! Without files: every corpus image (`../shared/corpus`). One CSV line per
//! (image, step): `name,kind,mp,step,ms_per_mp`. `AVIF_SPEEDS=1`: AVIF
//! encodes at every libaom speed too.
//!
//! With `--budget` first: every file (or corpus image) transcoded as the
//! module would for each client of `make bench-corpus` (AVIF then WebP,
//! WebP, AVIF, JPEG 2000, JPEG XR), without a work budget, one CSV line
//! each: `name,kind,client,bytes,pixels,passes,passes_per_byte,cpu_ms,outcome`
//! (the pixel-passes its steps were charged, see `smart_imaging_core::work`):
//! what the budget must allow for the corpus to be unaffected.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use smart_imaging_core::codecs::{self, webp, Effort, Encoding, Format, Tuning};
use smart_imaging_core::guard::{self, Reference};
use smart_imaging_core::Limits;

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = common::cpu_ms();
    let t = f();
    (t, common::cpu_ms() - start)
}

fn main() {
    let budget = std::env::args().nth(1).as_deref() == Some("--budget");
    let mut files: Vec<(PathBuf, String)> = std::env::args()
        .skip(1 + usize::from(budget))
        .map(|f| (PathBuf::from(f), "file".to_string()))
        .collect();
    if files.is_empty() {
        let dir = common::corpus_dir().expect("no corpus");
        for (name, kind) in common::corpus_manifest(&dir) {
            files.push((dir.join(name), kind));
        }
    }
    if budget {
        return budget_sweep(&files);
    }
    println!("name,kind,mp,step,ms_per_mp");
    for (path, kind) in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read(&path).unwrap();
        let from_png = input.starts_with(b"\x89PNG");
        let limits = Limits::default();
        let (image, ms) = timed(|| codecs::decode(&input, &limits));
        let Ok(image) = image else {
            eprintln!("{name}: not decoded");
            continue;
        };
        let mp = f64::from(image.width) * f64::from(image.height) / 1e6;
        let line = |step: &str, ms: f64, pixels: f64| {
            println!("{name},{kind},{mp:.2},{step},{:.1}", ms / pixels);
        };
        line(
            if from_png {
                "decode-png"
            } else {
                "decode-jpeg"
            },
            ms,
            mp,
        );
        let (reference, ms) =
            timed(|| Reference::sampled(&image, guard::DEFAULT_MAX_PIXELS).unwrap());
        let scored = reference.scored_pixels() as f64 / 1e6;
        line("reference", ms, scored);
        let (half, ms) = timed(|| {
            smart_imaging_core::resize::resize(&image, image.width / 2, image.height / 2).unwrap()
        });
        line("resize-half", ms, mp);
        let _ = half;
        for format in [
            Format::WebP,
            Format::Avif,
            Format::Jp2,
            Format::Jxr,
            Format::Jpeg,
            Format::Png,
        ] {
            if format == Format::Jpeg && image.has_alpha {
                continue;
            }
            for effort in [Effort::Search, Effort::Final] {
                if effort == Effort::Search && format != Format::Avif {
                    continue;
                }
                let quality = match format {
                    Format::Avif => 60,
                    Format::Jpeg => 85,
                    _ => 80,
                };
                let encoding = Encoding {
                    quality,
                    effort,
                    from_png,
                    guarded: true,
                    tuning: Tuning::DEFAULT,
                };
                let (bytes, ms) = timed(|| (format.codec().encode)(&image, &encoding).unwrap());
                let step = format!(
                    "encode-{}{}",
                    format.name(),
                    if effort == Effort::Search {
                        "-search"
                    } else {
                        ""
                    }
                );
                line(&step, ms, mp);
                if matches!(format, Format::Jpeg | Format::Png) || effort == Effort::Search {
                    continue;
                }
                let (decoded, ms) = timed(|| (format.codec().decode)(&bytes, &limits).unwrap());
                line(&format!("decode-{}", format.name()), ms, mp);
                let (_, ms) = timed(|| reference.score(&decoded).unwrap());
                line("score", ms, scored);
            }
        }
        if std::env::var_os("AVIF_SPEEDS").is_some() {
            for speed in 0..=10u8 {
                let options = smart_imaging_core::codecs::avif::Options::new(60, speed);
                let (_, ms) = timed(|| {
                    smart_imaging_core::codecs::avif::encode_with(&image, &options).unwrap()
                });
                line(&format!("encode-avif-speed{speed}"), ms, mp);
            }
        }
        if from_png {
            let options = webp::Options {
                near_lossless: Some(40),
                ..webp::Options::lossless_level(5)
            };
            let (_, ms) = timed(|| webp::encode_with(&image, &options).unwrap());
            line("encode-webp-near-lossless", ms, mp);
            let (_, ms) =
                timed(|| webp::encode_with(&image, &webp::Options::lossless_level(6)).unwrap());
            line("encode-webp-lossless", ms, mp);
        }
    }
}

/// `--budget`: see the module documentation.
fn budget_sweep(files: &[(PathBuf, String)]) {
    use smart_imaging_core::{transcode_with_work, Outcome, Plan};
    const CLIENTS: [(&str, &[Format]); 5] = [
        ("avif", &[Format::Avif, Format::WebP]),
        ("webp", &[Format::WebP]),
        ("avif-only", &[Format::Avif]),
        ("jp2", &[Format::Jp2]),
        ("jxr", &[Format::Jxr]),
    ];
    let limits = Limits {
        work: None,
        ..Limits::default()
    };
    println!("name,kind,client,bytes,pixels,passes,passes_per_byte,cpu_ms,outcome");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let jobs: Vec<_> = files
        .iter()
        .flat_map(|file| CLIENTS.iter().map(move |client| (file, client)))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(((path, kind), (client, formats))) = jobs.get(i) else {
                    break;
                };
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let input = std::fs::read(path).unwrap();
                let pixels = codecs::decode_work(&input).map_or(0, |(pixels, _)| pixels);
                let ((outcome, passes), ms) =
                    timed(|| transcode_with_work(&input, &Plan::new(formats.to_vec()), &limits));
                let outcome = match outcome {
                    Outcome::Converted(c) => format!("{}:{}", c.format.name(), c.bytes.len()),
                    Outcome::Original(reason) => reason.code().to_string(),
                };
                println!(
                    "{name},{kind},{client},{},{pixels},{passes:.0},{:.1},{ms:.0},{outcome}",
                    input.len(),
                    passes / input.len() as f64
                );
            });
        }
    });
}
