//! Decode + encode cost per megapixel and bytes saved, JPEG -> WebP and
//! PNG -> WebP, on the shared corpus (`../shared/corpus`, or
//! `SMART_IMAGING_CORPUS`; the repository's `samples/` when absent).
//!
//! `cargo bench -p smart-imaging-core --bench transcode` (or `make bench`). It first prints a
//! corpus report (bytes saved per kind, one timed pass), then criterion
//! measures each kind's whole set per iteration with the pixel count as
//! throughput: `thrpt` in Melem/s is megapixels per second, so ms per
//! megapixel = 1000 / thrpt.
//!
//! `SMART_IMAGING_WEBP_QUALITY` sets the quality (default: the module's
//! default, 85).

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smart_imaging_core::{codecs, transcode, Limits, Outcome, Plan, TargetFormat};

struct Sample {
    name: String,
    kind: String,
    bytes: Vec<u8>,
    pixels: u64,
}

fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SMART_IMAGING_CORPUS") {
        return dir.into();
    }
    // This bench belongs to the core crate (core/Cargo.toml), so that it
    // builds no nginx; the repository root is one level up.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/corpus");
    if shared.join("manifest.csv").exists() {
        shared
    } else {
        root.join("samples")
    }
}

/// Images of at most 4 MP, with their kind from manifest.csv when there is
/// one (photo / graphic / alpha), else from the extension and alpha channel.
fn load_corpus() -> Vec<Sample> {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap_or_default();
    let kind_of = |file: &str| {
        manifest.lines().skip(1).find_map(|l| {
            let mut cols = l.split(',');
            (cols.next() == Some(file)).then(|| cols.next().unwrap_or("").to_string())
        })
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "png")))
        .collect();
    files.sort();
    let limits = Limits::default();
    files
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let image = codecs::decode(&bytes, &limits).ok()?;
            let pixels = u64::from(image.width) * u64::from(image.height);
            if pixels > 4_000_000 {
                return None;
            }
            let name = path.file_name()?.to_string_lossy().into_owned();
            let kind = kind_of(&name).unwrap_or_else(|| {
                match (name.ends_with(".jpg"), image.has_alpha) {
                    (true, _) => "photo",
                    (false, true) => "alpha",
                    (false, false) => "graphic",
                }
                .to_string()
            });
            Some(Sample {
                name,
                kind,
                bytes,
                pixels,
            })
        })
        .collect()
}

fn quality() -> u8 {
    std::env::var("SMART_IMAGING_WEBP_QUALITY")
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(85)
}

fn plan() -> Plan {
    Plan {
        target: TargetFormat::WebP,
        quality: quality(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One pass over the corpus: what the module would serve for each image.
fn report(samples: &[Sample]) {
    let (plan, limits) = (plan(), Limits::default());
    println!(
        "\ncorpus: {} ({} images <= 4 MP), WebP quality {}",
        corpus_dir().display(),
        samples.len(),
        plan.quality
    );
    println!(
        "{:<8} {:>6} {:>8} {:>14} {:>16} {:>10} {:>10}",
        "kind", "images", "MP", "saved mean %", "saved median %", "kept orig", "ms/MP"
    );
    let mut kinds: Vec<&str> = samples.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let set: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
        let mut saved = Vec::new();
        let mut kept = 0;
        let mut pixels = 0u64;
        let start = Instant::now();
        for s in &set {
            pixels += s.pixels;
            // What is served: the WebP if smaller, else the original (0 % saved).
            let served = match transcode(&s.bytes, &plan, &limits) {
                Outcome::Converted(c) => c.bytes.len(),
                Outcome::Original(_) => {
                    kept += 1;
                    s.bytes.len()
                }
            };
            saved.push(100.0 * (1.0 - served as f64 / s.bytes.len() as f64));
        }
        let ms_per_mp = start.elapsed().as_secs_f64() * 1000.0 / (pixels as f64 / 1e6);
        let mean = saved.iter().sum::<f64>() / saved.len() as f64;
        println!(
            "{:<8} {:>6} {:>8.1} {:>14.1} {:>16.1} {:>10} {:>10.0}",
            kind,
            set.len(),
            pixels as f64 / 1e6,
            mean,
            median(&mut saved),
            kept,
            ms_per_mp
        );
    }
    if std::env::var_os("SMART_IMAGING_BENCH_VERBOSE").is_some() {
        for s in samples {
            println!("  {} {} {} bytes", s.kind, s.name, s.bytes.len());
        }
    }
    println!();
}

fn bench(c: &mut Criterion) {
    let samples = load_corpus();
    report(&samples);
    let (plan, limits) = (plan(), Limits::default());
    let mut group = c.benchmark_group("decode+encode to webp");
    group.sample_size(10);
    let sets = [
        (
            "jpeg photos",
            samples
                .iter()
                .filter(|s| s.name.ends_with(".jpg"))
                .collect::<Vec<_>>(),
        ),
        (
            "png opaque",
            samples
                .iter()
                .filter(|s| s.name.ends_with(".png") && s.kind != "alpha")
                .collect(),
        ),
        (
            "png alpha",
            samples
                .iter()
                .filter(|s| s.name.ends_with(".png") && s.kind == "alpha")
                .collect(),
        ),
    ];
    for (name, set) in sets {
        if set.is_empty() {
            continue;
        }
        let pixels: u64 = set.iter().map(|s| s.pixels).sum();
        group.throughput(Throughput::Elements(pixels));
        group.bench_with_input(BenchmarkId::from_parameter(name), &set, |b, set| {
            b.iter(|| {
                for s in set {
                    std::hint::black_box(transcode(&s.bytes, &plan, &limits));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
