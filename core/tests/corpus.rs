//! Every corpus image at quality 85 must become a faithful, smaller WebP or
//! be kept as "not smaller". Prints a table (run with `--nocapture`).
//!
//! The corpus lives outside the repository: `$SMART_IMAGING_CORPUS` or
//! `../shared/corpus` next to it. Without it the test is skipped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use smart_imaging_core::codecs::{self, webp};
use smart_imaging_core::metrics::psnr;
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

static PLAN: std::sync::LazyLock<Plan> = std::sync::LazyLock::new(|| Plan::webp(85));
const MIN_PSNR: f64 = 30.0;

struct Row {
    file: String,
    kind: String,
    original: usize,
    /// WebP size, or `None` if it was not smaller.
    webp: Option<usize>,
    psnr: f64,
}

/// file name -> kind (photo/graphic/alpha), from manifest.csv.
fn kinds(dir: &Path) -> BTreeMap<String, String> {
    let manifest = fs::read_to_string(dir.join("manifest.csv")).unwrap_or_default();
    manifest
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

fn check(path: &Path, kind: String) -> Result<Row, String> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let input = fs::read(path).map_err(|e| format!("{file}: {e}"))?;
    let limits = Limits::default();
    let (webp, psnr) = match transcode(&input, &PLAN, &limits) {
        Outcome::Converted(c) => {
            let original = codecs::decode(&input, &limits).map_err(|e| format!("{file}: {e}"))?;
            let back = webp::decode(&c.bytes).map_err(|e| format!("{file}: output: {e}"))?;
            if (back.width, back.height) != (original.width, original.height) {
                return Err(format!("{file}: size changed"));
            }
            if back.has_alpha != original.has_alpha {
                return Err(format!(
                    "{file}: has_alpha {} -> {}",
                    original.has_alpha, back.has_alpha
                ));
            }
            let p = psnr(&original, &back);
            if p < MIN_PSNR {
                return Err(format!("{file}: PSNR {p:.2} dB < {MIN_PSNR}"));
            }
            (Some(c.bytes.len()), p)
        }
        Outcome::Original(KeepReason::NotSmaller { .. }) => (None, f64::NAN),
        Outcome::Original(reason) => return Err(format!("{file}: kept: {reason}")),
    };
    Ok(Row {
        file,
        kind,
        original: input.len(),
        webp,
        psnr,
    })
}

#[test]
fn corpus() {
    let Some(dir) = common::corpus_dir() else {
        println!("corpus not found (set SMART_IMAGING_CORPUS): skipped");
        return;
    };
    let kinds = kinds(&dir);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no images in {}", dir.display());

    // Two workers: the machines this runs on have two cores.
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let kind = kinds.get(&name).cloned().unwrap_or_else(|| "?".into());
                let result = check(path, kind);
                results.lock().unwrap().push(result);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let (mut rows, failures): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let mut rows: Vec<Row> = rows.drain(..).map(Result::unwrap).collect();
    rows.sort_by(|a, b| (&a.kind, &a.file).cmp(&(&b.kind, &b.file)));

    println!(
        "{:<28} {:<8} {:>10} {:>10} {:>7} {:>8}",
        "file", "kind", "original", "webp", "saved", "psnr"
    );
    for r in &rows {
        let (webp, saved) = match r.webp {
            Some(n) => (
                n.to_string(),
                format!("{:.1}%", 100.0 * (1.0 - n as f64 / r.original as f64)),
            ),
            None => ("kept".into(), "0.0%".into()),
        };
        println!(
            "{:<28} {:<8} {:>10} {:>10} {:>7} {:>8.2}",
            r.file, r.kind, r.original, webp, saved, r.psnr
        );
    }
    let mut by_kind: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_kind.entry(&r.kind).or_default().push(r);
    }
    println!(
        "\nkind      images  converted  mean saved  min psnr   (kept images count as 0% saved)"
    );
    for (kind, rows) in &by_kind {
        let saved: f64 = rows
            .iter()
            .map(|r| r.webp.map_or(0.0, |n| 1.0 - n as f64 / r.original as f64))
            .sum::<f64>()
            / rows.len() as f64;
        let converted = rows.iter().filter(|r| r.webp.is_some()).count();
        let min_psnr = rows
            .iter()
            .filter(|r| r.webp.is_some())
            .map(|r| r.psnr)
            .fold(f64::INFINITY, f64::min);
        println!(
            "{kind:<9} {:>6} {converted:>10} {:>10.1}% {min_psnr:>9.2}",
            rows.len(),
            saved * 100.0
        );
    }

    let failures: Vec<String> = failures.into_iter().map(|f| f.err().unwrap()).collect();
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}
