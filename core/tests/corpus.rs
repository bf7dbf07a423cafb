//! Every corpus image at quality 85 must become a faithful, smaller WebP or
//! be kept as "not smaller". Prints a table (run with `--nocapture`).
//!
//! The corpus lives outside the repository: `$SMART_IMAGING_CORPUS` or
//! `../shared/corpus` next to it. Without it the test is skipped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

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
    let results = common::map_corpus(&dir, |path, _, kind| check(path, kind));
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
