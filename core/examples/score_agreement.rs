//! How closely the guard's SSIMULACRA 2 follows the reference
//! implementation (the `ssimulacra2` crate, as published), and what each
//! costs: every corpus image (or the files given) re-encoded as WebP at
//! several qualities, each result scored whole by both.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example score_agreement -- [--kinds photo,graphic] [--every N] [--served webp|avif] [FILES...]
//! ```
//!
//! With `--served FORMAT`, each image is instead converted as the module
//! converts it (`transcode`, default settings, guard on) for a client of
//! that format, and what would be served is scored whole by both: the
//! check that every served derivative scores >= 80 by the reference
//! (`quality` is then the encoder quality served).
//!
//! One CSV line per (image, quality) on stdout:
//! `name,mp,quality,ours,reference,difference,ours_ms,reference_ms,streamed_ms`
//! (thread CPU ms of one score: ours against a prepared reference, the
//! reference implementation's, ours streamed, `Reference::streamed`);
//! a summary on stderr: the largest and mean absolute difference.

#[path = "../tests/common/mod.rs"]
mod common;

use smart_imaging_core::codecs::{self, Effort, Encoding, Format, Tuning};
use smart_imaging_core::guard::Reference;
use smart_imaging_core::{transcode, Limits, Outcome, Plan};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut kinds = vec!["photo".to_string()];
    let mut every = 1usize;
    let mut files = Vec::new();
    let mut served: Option<Format> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--served" => {
                served = Some(match args.next().unwrap().as_str() {
                    "avif" => Format::Avif,
                    _ => Format::WebP,
                })
            }
            "--kinds" => kinds = args.next().unwrap().split(',').map(String::from).collect(),
            "--every" => every = args.next().unwrap().parse().unwrap(),
            _ => files.push(std::path::PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        let dir = common::corpus_dir().expect("corpus");
        files = common::corpus_manifest(&dir)
            .into_iter()
            .filter(|(_, kind)| kinds.contains(kind))
            .step_by(every)
            .map(|(name, _)| dir.join(name))
            .collect();
    }
    println!("name,mp,quality,ours,reference,difference,ours_ms,reference_ms,streamed_ms");
    let (mut worst, mut sum, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut min_served = f64::INFINITY;
    for file in &files {
        let input = std::fs::read(file).unwrap();
        let source = codecs::decode(&input, &Limits::default()).expect("decode");
        if source.has_alpha {
            continue;
        }
        let reference = Reference::new(&source).expect("reference");
        let streamed = Reference::streamed(&source).expect("reference");
        let name = file.file_name().unwrap().to_string_lossy();
        let mp = f64::from(source.width) * f64::from(source.height) / 1e6;
        if let Some(format) = served {
            let Outcome::Converted(c) =
                transcode(&input, &Plan::new(vec![format]), &Limits::default())
            else {
                eprintln!("{name}: original served");
                continue;
            };
            let decoded = match c.format {
                Format::Avif => codecs::avif::decode(&c.bytes).unwrap(),
                _ => codecs::webp::decode(&c.bytes).unwrap(),
            };
            let ours = reference.score(&decoded).unwrap();
            let theirs = common::reference_score(&source, &decoded);
            if theirs < 80.0 {
                eprintln!(
                    "{name}: served {:?} q{} scores {theirs:.3} by the reference",
                    c.format, c.quality
                );
            }
            worst = worst.max((ours - theirs).abs());
            sum += (ours - theirs).abs();
            count += 1;
            min_served = min_served.min(theirs);
            println!(
                "{name},{mp:.2},{},{ours:.4},{theirs:.4},{:.4},,",
                c.quality,
                ours - theirs
            );
            continue;
        }
        for quality in [60u8, 75, 85, 92] {
            let encoding = Encoding {
                quality,
                effort: Effort::Final,
                from_png: false,
                guarded: true,
                tuning: Tuning::DEFAULT,
            };
            let bytes = (Format::WebP.codec().encode)(&source, &encoding).unwrap();
            let decoded = codecs::webp::decode(&bytes).unwrap();
            let t = common::cpu_ms();
            let ours = reference.score(&decoded).unwrap();
            let ours_ms = common::cpu_ms() - t;
            let t = common::cpu_ms();
            let theirs = common::reference_score(&source, &decoded);
            let theirs_ms = common::cpu_ms() - t;
            let t = common::cpu_ms();
            let ours_streamed = streamed.score(&decoded).unwrap();
            let streamed_ms = common::cpu_ms() - t;
            assert!(
                (ours_streamed - ours).abs() < 1e-6,
                "{ours_streamed} {ours}"
            );
            let diff = ours - theirs;
            worst = worst.max(diff.abs());
            sum += diff.abs();
            count += 1;
            println!(
                "{name},{mp:.2},{quality},{ours:.4},{theirs:.4},{diff:.4},{ours_ms:.0},{theirs_ms:.0},{streamed_ms:.0}"
            );
        }
    }
    eprintln!(
        "{count} scores: largest difference {worst:.4}, mean {:.4}",
        sum / count.max(1) as f64
    );
    if served.is_some() {
        eprintln!("lowest reference score served: {min_served:.3}");
    }
}
