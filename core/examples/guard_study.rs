//! Guard study: what a quality search on a small sample of the image, then
//! one encode of the whole image, serves and costs, against today's
//! search on the whole image; every result scored whole by the reference
//! implementation (the `ssimulacra2` crate, as published).
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example guard_study -- [webp|avif] [options]
//! ```
//!
//! Options: `--kinds photo,graphic,alpha` (default photo), `--only NAME`,
//! `--every N`, `--threads N` (default 2), `--samples 131072,262144`
//! (sample sizes in pixels), `--margins 0,1,2` (points over 80 the
//! sample must score).
//!
//! One CSV line per (image, variant) on stdout:
//! `name,kind,mp,orig_bytes,format,variant,bytes,quality,own_score,ref_score,cpu_ms`
//! where `own_score` is this project's score of the whole image, `ref_score`
//! the crate's, `cpu_ms` the thread CPU time of the variant (decode to
//! served bytes; scoring for this study excluded).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use smart_imaging_core::codecs::{self, Effort, Format, Image};
use smart_imaging_core::guard::{self, Reference};
use smart_imaging_core::{transcode, Limits, Outcome, Plan};

struct Row {
    variant: String,
    bytes: Option<usize>,
    quality: Option<u8>,
    own: Option<f64>,
    reference: Option<f64>,
    cpu_ms: f64,
}

fn encode(format: Format, img: &Image, quality: u8, effort: Effort) -> Vec<u8> {
    common::guarded_encode(format, img, quality, effort, false)
}

fn decode(format: Format, bytes: &[u8]) -> Image {
    (format.codec().decode)(bytes, &Limits::default()).expect("decode")
}

fn study(format: Format, input: &[u8], samples: &[u64], margins: &[f64]) -> Vec<Row> {
    let mut rows = Vec::new();
    let source = codecs::decode(input, &Limits::default()).expect("decode source");
    let full = Reference::new(&source).expect("reference");
    let mut scored = |variant: String, bytes: Option<Vec<u8>>, quality, cpu| {
        let (own, reference) = match &bytes {
            Some(b) => {
                let img = decode(format, b);
                (
                    Some(full.score(&img).unwrap()),
                    Some(common::reference_score(&source, &img)),
                )
            }
            None => (None, None),
        };
        rows.push(Row {
            variant,
            bytes: bytes.map(|b| b.len()),
            quality,
            own,
            reference,
            cpu_ms: cpu,
        });
    };

    // Today's search.
    let t = common::cpu_ms();
    let today = transcode(input, &Plan::new(vec![format]), &Limits::default());
    let cpu = common::cpu_ms() - t;
    // The unit of cost: decoding and one encode at the quality served
    // (guard off).
    let served_quality = match &today {
        Outcome::Converted(c) => c.quality,
        Outcome::Original(_) => format.codec().quality.default_ceiling,
    };
    let t = common::cpu_ms();
    let plan = Plan {
        guard: smart_imaging_core::Guard::OFF,
        quality: smart_imaging_core::Qualities::default_ceilings().with(format, served_quality),
        ..Plan::new(vec![format])
    };
    let once = transcode(input, &plan, &Limits::default());
    let once_cpu = common::cpu_ms() - t;
    match &today {
        Outcome::Converted(c) => eprintln!("  today: converted, {} encodes", c.encodes),
        Outcome::Original(reason) => eprintln!("  today: kept, {reason:?}"),
    }
    match today {
        Outcome::Converted(c) => scored("today".into(), Some(c.bytes), Some(c.quality), cpu),
        Outcome::Original(_) => scored("today".into(), None, None, cpu),
    }
    match once {
        Outcome::Converted(c) => scored("once".into(), Some(c.bytes), Some(c.quality), once_cpu),
        Outcome::Original(_) => scored("once".into(), None, None, once_cpu),
    }

    // Search on a sample, one whole encode at the quality found.
    let codec = format.codec();
    let range = (codec.quality.floor, codec.quality.default_ceiling);
    for &sample_pixels in samples {
        for &margin in margins {
            let t = common::cpu_ms();
            let image = codecs::decode(input, &Limits::default()).expect("decode");
            let sample = guard::sample(&image, sample_pixels);
            let target = sample.as_ref().unwrap_or(&image);
            let reference = Reference::new(target).expect("sample reference");
            let found = guard::search(
                |q| {
                    let bytes = encode(format, target, q, Effort::Final);
                    let score = reference.score(&decode(format, &bytes))?;
                    Ok((bytes, score))
                },
                80.0 + margin,
                range,
                6,
            )
            .expect("search");
            let served = found.map(|f| {
                let bytes = if sample.is_some() {
                    encode(format, &image, f.quality, Effort::Final)
                } else {
                    f.bytes
                };
                (bytes, f.quality)
            });
            let cpu = common::cpu_ms() - t;
            let name = format!("s{}k+{margin}", sample_pixels / 1000);
            match served {
                Some((bytes, q)) => scored(name, Some(bytes), Some(q), cpu),
                None => scored(name, None, None, cpu),
            }
        }
    }
    rows
}

/// The whole-image curve around the quality a 131k-pixel sample finds:
/// rows `curve{q}` with the whole image's bytes, own score, reference
/// score, and in `cpu_ms` the 1 MP and 0.5 MP tile-sampled scores
/// (`t1:<score>;t05:<score>` in the variant name's place is too long, so
/// the variant is `curve{q}:{t1}:{t05}`).
fn curve(format: Format, input: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    let source = codecs::decode(input, &Limits::default()).expect("decode source");
    let full = Reference::new(&source).expect("reference");
    let t1 = Reference::sampled(&source, 1_000_000).expect("t1");
    let t05 = Reference::sampled(&source, 500_000).expect("t05");
    let codec = format.codec();
    let range = (codec.quality.floor, codec.quality.default_ceiling);
    let t = common::cpu_ms();
    let sample = guard::sample(&source, 131_072);
    let target = sample.as_ref().unwrap_or(&source);
    let reference = Reference::new(target).expect("sample reference");
    let mut probes = 0;
    let found = guard::search(
        |q| {
            probes += 1;
            let bytes = encode(format, target, q, Effort::Final);
            let score = reference.score(&decode(format, &bytes))?;
            Ok((bytes, score))
        },
        80.0,
        range,
        6,
    )
    .expect("search");
    let search_ms = common::cpu_ms() - t;
    let q_s = found.map_or(range.1, |f| f.quality);
    rows.push(Row {
        variant: format!("sample:{q_s}:{probes}"),
        bytes: None,
        quality: Some(q_s),
        own: None,
        reference: None,
        cpu_ms: search_ms,
    });
    let step = if format == Format::Avif { 2 } else { 1 };
    let lo = i32::from(q_s) - 2 * step;
    let hi = i32::from(q_s) + 6 * step;
    for q in (lo..=hi).step_by(step as usize) {
        let Ok(q) = u8::try_from(q) else { continue };
        if q < range.0 || q > range.1 {
            continue;
        }
        let t = common::cpu_ms();
        let bytes = encode(format, &source, q, Effort::Final);
        let enc_ms = common::cpu_ms() - t;
        let img = decode(format, &bytes);
        let t = common::cpu_ms();
        let s1 = t1.score(&img).unwrap();
        let verify_ms = common::cpu_ms() - t;
        let s05 = t05.score(&img).unwrap();
        rows.push(Row {
            variant: format!("curve:{s1:.2}:{s05:.2}:{verify_ms:.0}"),
            bytes: Some(bytes.len()),
            quality: Some(q),
            own: Some(full.score(&img).unwrap()),
            reference: Some(common::reference_score(&source, &img)),
            cpu_ms: enc_ms,
        });
    }
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| common::option(&args, name);
    let format = match args.first().map(String::as_str) {
        Some("avif") => Format::Avif,
        _ => Format::WebP,
    };
    let kinds: Vec<String> = opt("--kinds")
        .unwrap_or_else(|| "photo".into())
        .split(',')
        .map(String::from)
        .collect();
    let every: usize = opt("--every").map_or(1, |v| v.parse().unwrap());
    let threads: usize = opt("--threads").map_or(2, |v| v.parse().unwrap());
    let samples: Vec<u64> = opt("--samples")
        .unwrap_or_else(|| "131072,262144".into())
        .split(',')
        .filter(|v| !v.is_empty() && *v != "none")
        .map(|v| v.parse().unwrap())
        .collect();
    let margins: Vec<f64> = opt("--margins")
        .unwrap_or_else(|| "0,1,2".into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let only = opt("--only");

    let dir = common::corpus_dir().expect("corpus");
    let files: Vec<(String, String)> = common::corpus_manifest(&dir)
        .into_iter()
        .filter(|(name, kind)| {
            kinds.contains(kind) && only.as_ref().is_none_or(|o| name.contains(o.as_str()))
        })
        .step_by(every)
        .collect();

    println!("name,kind,mp,orig_bytes,format,variant,bytes,quality,own_score,ref_score,cpu_ms");
    let next = AtomicUsize::new(0);
    let out = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, kind)) = files.get(i) else {
                    break;
                };
                let input = std::fs::read(Path::new(&dir).join(name)).expect("read");
                let img = codecs::decode(&input, &Limits::default()).expect("decode");
                let mp = f64::from(img.width) * f64::from(img.height) / 1e6;
                if mp > 4.2 {
                    continue;
                }
                let rows = if args.iter().any(|a| a == "--curve") {
                    curve(format, &input)
                } else {
                    study(format, &input, &samples, &margins)
                };
                let _lock = out.lock().unwrap();
                for r in rows {
                    let opt_f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
                    println!(
                        "{name},{kind},{mp:.2},{},{},{},{},{},{},{},{:.1}",
                        input.len(),
                        format.name(),
                        r.variant,
                        r.bytes.map_or(String::new(), |b| b.to_string()),
                        r.quality.map_or(String::new(), |q| q.to_string()),
                        opt_f(r.own),
                        opt_f(r.reference),
                        r.cpu_ms
                    );
                }
                eprintln!("{name} done");
            });
        }
    });
}
