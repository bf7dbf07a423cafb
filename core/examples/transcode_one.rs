//! What one conversion costs: CPU time and the process's peak memory for
//! `transcode` of one file, as the module runs it (default plan: guard on).
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example transcode_one -- FILE [webp|avif|jp2|jxr]...
//! ```
//!
//! Prints the outcome, the thread's CPU time and `VmHWM` (peak resident
//! memory) before and after, so that the difference is what one
//! conversion holds at its peak.

use std::time::Instant;

use smart_imaging_core::codecs::Format;
use smart_imaging_core::{transcode, Limits, Outcome, Plan};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: transcode_one FILE [webp|avif|jp2|jxr]...");
    let formats: Vec<Format> = args
        .map(|a| match a.as_str() {
            "webp" => Format::WebP,
            "avif" => Format::Avif,
            "jp2" => Format::Jp2,
            "jxr" => Format::Jxr,
            other => panic!("unknown format {other}"),
        })
        .collect();
    let formats = if formats.is_empty() {
        vec![Format::WebP]
    } else {
        formats
    };
    let input = std::fs::read(&path).expect("read");
    let before = peak_rss_kib();
    let start = Instant::now();
    let outcome = transcode(&input, &Plan::new(formats), &Limits::default());
    let wall = start.elapsed();
    let after = peak_rss_kib();
    match outcome {
        Outcome::Converted(c) => println!(
            "{path}: {:?} q{} {}x{} {} -> {} bytes, score {:?}, {} encodes",
            c.format,
            c.quality,
            c.width,
            c.height,
            input.len(),
            c.bytes.len(),
            c.score,
            c.encodes
        ),
        Outcome::Original(reason) => println!("{path}: original kept: {reason}"),
    }
    println!(
        "wall {:.1} ms; peak RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB)",
        wall.as_secs_f64() * 1e3,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
}
