//! The corpus benchmark: what the module serves, per client and per kind
//! of image, with its default settings (the visual-quality guard on).
//!
//! `make bench-corpus` (or `cargo bench -p smart-imaging-core --bench
//! corpus`). For every image of the corpus (`../shared/corpus`, or
//! `SMART_IMAGING_CORPUS`; images over 4 MP are skipped) and every client
//! profile below, it runs [`transcode`] exactly as the module does for
//! that client and counts what would be served: the converted image, or
//! the original when nothing passed the guard or came out smaller.
//!
//! Per profile and kind (photo / graphic / alpha from the corpus
//! manifest) it prints, as a Markdown table:
//! - mean and median bytes saved versus the original (an original served
//!   counts as 0 %; nothing served is ever larger);
//! - the mean SSIMULACRA 2 score of the converted images (the guard's
//!   own score: images over 4.2 MP are scored on a sample of tiles, see
//!   `smart_imaging_core::guard`), and the lowest;
//! - how many images were converted, and why the others were not;
//! - encoder runs per image and milliseconds per megapixel of the whole
//!   transcode (decode, search, scoring), single-threaded;
//!
//! and, at the end, the targets the project set itself.
//!
//! Two images are converted at a time (one per core); each is timed on
//! its own thread. `SMART_IMAGING_BENCH_PROFILES=webp,avif` runs some
//! profiles only.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use common::{corpus_dir, load_corpus, median, Sample};
use smart_imaging_core::{transcode, Format, Limits, Outcome, Plan};

/// A client, by the formats the module would try for it.
struct Profile {
    name: &'static str,
    /// Who gets this.
    client: &'static str,
    targets: &'static [Format],
}

const PROFILES: &[Profile] = &[
    Profile {
        name: "avif",
        client: "Accept with image/avif and image/webp (Chrome, Firefox, Safari 16+)",
        targets: &[Format::Avif, Format::WebP],
    },
    Profile {
        name: "webp",
        client: "Accept with image/webp only (or smart_imaging_formats webp)",
        targets: &[Format::WebP],
    },
    Profile {
        name: "avif-only",
        client: "AVIF alone, no WebP fallback (the AVIF encoder's own share)",
        targets: &[Format::Avif],
    },
    Profile {
        name: "jp2",
        client: "Safari before 14 / macOS Big Sur (JPEG 2000)",
        targets: &[Format::Jp2],
    },
    Profile {
        name: "jxr",
        client: "Internet Explorer 9-11, Edge before 18 (JPEG XR)",
        targets: &[Format::Jxr],
    },
];

/// What was served for one image.
struct Served {
    kind: String,
    original: usize,
    served: usize,
    score: Option<f64>,
    /// `None`: converted; else the reason the original was kept.
    kept: Option<&'static str>,
    encodes: usize,
    seconds: f64,
    pixels: u64,
}

/// The module's default plan for `targets`; for tuning,
/// `SMART_IMAGING_BENCH_QUALITY=webp:95,avif:80,jpeg:90` changes the
/// qualities and `SMART_IMAGING_BENCH_GUARD=75` (or `off`) the guard.
fn plan(targets: &[Format]) -> Plan {
    let mut plan = Plan::new(targets.to_vec());
    if let Ok(spec) = std::env::var("SMART_IMAGING_BENCH_QUALITY") {
        for item in spec.split(',') {
            let (format, q) = item.split_once(':').expect("format:quality");
            let q: u8 = q.parse().expect("a quality 0-100");
            match format {
                "webp" => plan.quality = plan.quality.with(Format::WebP, q),
                "avif" => plan.quality = plan.quality.with(Format::Avif, q),
                "jpeg" => plan.quality = plan.quality.with(Format::Jpeg, q),
                other => panic!("no quality for {other}"),
            }
        }
    }
    if let Ok(guard) = std::env::var("SMART_IMAGING_BENCH_GUARD") {
        plan.guard.threshold = (guard != "off").then(|| guard.parse().expect("a score"));
    }
    if let Ok(speed) = std::env::var("SMART_IMAGING_BENCH_AVIF_SPEED") {
        plan.tuning.avif.speed = speed.parse().expect("a libaom speed 0-10");
    }
    plan
}

/// Transcodes every sample for `profile`, two at a time.
fn run(profile: &Profile, samples: &[Sample]) -> Vec<Served> {
    let plan = plan(profile.targets);
    let limits = Limits::default();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sample) = samples.get(i) else { break };
                let start = Instant::now();
                let outcome = transcode(&sample.bytes, &plan, &limits);
                let seconds = start.elapsed().as_secs_f64();
                let original = sample.bytes.len();
                let served = match outcome {
                    Outcome::Converted(c) => {
                        assert!(c.bytes.len() < original, "{}: served larger", sample.name);
                        Served {
                            kind: sample.kind.clone(),
                            original,
                            served: c.bytes.len(),
                            score: c.score,
                            kept: None,
                            encodes: c.encodes,
                            seconds,
                            pixels: sample.pixels,
                        }
                    }
                    Outcome::Original(reason) => Served {
                        kind: sample.kind.clone(),
                        original,
                        served: original,
                        score: None,
                        kept: Some(reason.code()),
                        // Not reported by a kept original.
                        encodes: 0,
                        seconds,
                        pixels: sample.pixels,
                    },
                };
                if std::env::var_os("SMART_IMAGING_BENCH_VERBOSE").is_some() {
                    eprintln!(
                        "{:<10} {:<28} {:>9} -> {:>9} {:>6.1} ms/MP {}",
                        profile.name,
                        sample.name,
                        served.original,
                        served.served,
                        served.seconds * 1e9 / served.pixels as f64,
                        served.kept.unwrap_or("")
                    );
                }
                results.lock().unwrap().push(served);
            });
        }
    });
    results.into_inner().unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// One table row per kind; returns (kind, mean saved %) for the targets.
fn report(profile: &Profile, served: &[Served]) -> Vec<(String, f64)> {
    let mut kinds: Vec<&str> = served.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    let mut means = Vec::new();
    for kind in kinds {
        let set: Vec<&Served> = served.iter().filter(|s| s.kind == kind).collect();
        let mut saved: Vec<f64> = set
            .iter()
            .map(|s| 100.0 * (1.0 - s.served as f64 / s.original as f64))
            .collect();
        let scores: Vec<f64> = set.iter().filter_map(|s| s.score).collect();
        let converted = set.iter().filter(|s| s.kept.is_none()).count();
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &set {
            if let Some(reason) = s.kept {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        let kept = reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        let pixels: u64 = set.iter().map(|s| s.pixels).sum();
        let seconds: f64 = set.iter().map(|s| s.seconds).sum();
        let encodes: usize = set.iter().map(|s| s.encodes).sum();
        let mean_saved = mean(&saved);
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | {}/{} | {} | {:.1} | {:.0} |",
            profile.name,
            kind,
            set.len(),
            mean_saved,
            median(&mut saved),
            if scores.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1}", mean(&scores))
            },
            scores
                .iter()
                .copied()
                .reduce(f64::min)
                .map_or("-".to_string(), |m| format!("{m:.1}")),
            converted,
            set.len(),
            if kept.is_empty() {
                "-".to_string()
            } else {
                kept
            },
            encodes as f64 / converted.max(1) as f64,
            seconds * 1000.0 / (pixels as f64 / 1e6),
        );
        means.push((kind.to_string(), mean_saved));
    }
    means
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let dir = corpus_dir();
    let samples = load_corpus();
    let wanted = std::env::var("SMART_IMAGING_BENCH_PROFILES").ok();
    let profiles: Vec<&Profile> = PROFILES
        .iter()
        .filter(|p| {
            wanted
                .as_deref()
                .is_none_or(|w| w.split(',').any(|n| n.trim() == p.name))
        })
        .collect();
    let plan = plan(&[]);
    println!(
        "corpus: {} ({} images <= 4 MP); guard SSIMULACRA 2 >= {:?}, <= {} encodes per format; \
         ceilings WebP q{}, AVIF q{} (speed {}, <= {} px), JPEG q{}\n",
        dir.display(),
        samples.len(),
        plan.guard.threshold,
        plan.guard.max_encodes,
        plan.quality.get(Format::WebP),
        plan.quality.get(Format::Avif),
        plan.tuning.avif.speed,
        plan.tuning.avif.max_pixels,
        plan.quality.get(Format::Jpeg),
    );
    for p in &profiles {
        println!("- `{}`: {}", p.name, p.client);
    }
    println!();
    println!(
        "| client | kind | images | mean saved % | median saved % | mean score | min score | converted | kept (why) | encodes/image | ms/MP |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut results = BTreeMap::new();
    for profile in profiles {
        let served = run(profile, &samples);
        for (kind, saved) in report(profile, &served) {
            results.insert((profile.name, kind), saved);
        }
    }
    println!(
        "\n(saved: 1 - served/original per image, an original served counting as 0 %; score: \
         SSIMULACRA 2 of the converted images against the decoded original; encodes: encoder \
         runs per converted image, all formats tried; ms/MP: the whole transcode per image, \
         single thread. {:.0} s in all.)\n",
        started.elapsed().as_secs_f64()
    );
    println!("Targets (mean saved %):");
    let targets = [
        ("avif", "photo", 50.0),
        ("avif", "graphic", 85.0),
        ("avif", "alpha", 75.0),
        ("webp", "photo", 30.0),
    ];
    for (profile, kind, target) in targets {
        if let Some(saved) = results.get(&(profile, kind.to_string())) {
            let verdict = if *saved >= target { "met" } else { "NOT met" };
            println!("- {profile} client, {kind}: {saved:.1} % (target >= {target} %): {verdict}");
        }
    }
}
