//! What one conversion costs: CPU time and the process's peak memory for
//! `transcode` of one file, as the module runs it (default plan: guard on).
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example transcode_one -- FILE [webp|avif|jp2|jxr]... [--no-budget] [--width N]
//! ```
//!
//! `--no-budget`: without the work budget (`smart_imaging_work_budget
//! off`); the pixel-passes charged are printed either way. `--width N`:
//! delivered N pixels wide (as a `Sec-CH-Width: N` hint asks).
//!
//! Prints the outcome, the wall and CPU time of the conversion (the
//! calling thread's: the codecs run no threads of their own) and `VmHWM`
//! (peak resident memory) before and after, so that the difference is what
//! one conversion holds at its peak.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use smart_imaging_core::codecs::Format;
use smart_imaging_core::sizing::SizeRequest;
use smart_imaging_core::{transcode_with_work, Limits, Outcome, Plan};

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
        .expect("usage: transcode_one FILE [webp|avif|jp2|jxr]... [--no-budget]");
    let mut limits = Limits::default();
    let mut width = None;
    let args: Vec<String> = args.collect();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--no-budget" => limits.work = None,
            "--width" => {
                i += 1;
                width = Some(args[i].parse::<u32>().expect("--width N"));
            }
            _ => rest.push(args[i].clone()),
        }
        i += 1;
    }
    let formats: Vec<Format> = rest
        .into_iter()
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
    let cpu = common::cpu_ms();
    let mut plan = Plan::new(formats);
    if let Some(width) = width {
        plan.size = SizeRequest::Physical { width };
    }
    let (outcome, passes) = transcode_with_work(&input, &plan, &limits);
    let cpu = common::cpu_ms() - cpu;
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
        "wall {:.1} ms, CPU {cpu:.1} ms, {:.1} M pixel-passes (budget {}); peak RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB)",
        wall.as_secs_f64() * 1e3,
        passes / 1e6,
        limits.work.map_or("off".to_string(), |w| format!(
            "{:.1} M",
            w.for_input(input.len()) as f64 / 1e6
        )),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
}
