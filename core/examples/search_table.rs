//! Search table: for each photo, the whole image's and the search
//! sample's guard score and size at every WebP (or AVIF: at the served
//! speed, or `--effort search` at the search's) quality in a range, and the
//! source JPEG's luma quantisation (its mean step), so that quality search
//! strategies can be compared offline on the same numbers (how many
//! encodes each needs, what it serves) without encoding again.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example search_table -- [--from 60] [--to 96] [--kinds photo] [--format webp|avif] [--effort final|search] > table.csv
//! ```
//!
//! One CSV line per (image, quality) on stdout:
//! `name,pixels,orig_bytes,jpeg_luma_q,quality,sample_score,whole_score,whole_bytes`
//! (`sample_score` is empty when the image is searched whole).

#[path = "../tests/common/mod.rs"]
mod common;

use smart_imaging_core::codecs::{self, Effort, Format};
use smart_imaging_core::guard::{self, Reference};
use smart_imaging_core::Limits;

/// The mean of the source JPEG's first quantisation table (luma), from
/// its DQT segments; `None` for anything else.
fn jpeg_luma_q(bytes: &[u8]) -> Option<f64> {
    let mut at = 2;
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if marker == 0xDB {
            let table = bytes.get(at + 4..at + 2 + len)?;
            let precision = table[0] >> 4;
            let values: Vec<f64> = if precision == 0 {
                table.get(1..65)?.iter().map(|&v| f64::from(v)).collect()
            } else {
                table
                    .get(1..129)?
                    .chunks(2)
                    .map(|c| f64::from(u16::from_be_bytes([c[0], c[1]])))
                    .collect()
            };
            return Some(values.iter().sum::<f64>() / 64.0);
        }
        if marker == 0xDA {
            return None;
        }
        at += 2 + len;
    }
    None
}

fn score(format: Format, reference: &Reference, bytes: &[u8]) -> f64 {
    let img = (format.codec().decode)(bytes, &Limits::default()).expect("decode");
    reference.score(&img).expect("score")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| common::option(&args, name);
    let from: u8 = arg("--from").map_or(60, |v| v.parse().unwrap());
    let to: u8 = arg("--to").map_or(96, |v| v.parse().unwrap());
    let kinds = arg("--kinds").unwrap_or_else(|| "photo".into());
    let format = match arg("--format").as_deref() {
        None | Some("webp") => Format::WebP,
        Some("avif") => Format::Avif,
        Some(other) => panic!("--format webp|avif, not {other}"),
    };
    let effort = match arg("--effort").as_deref() {
        None | Some("final") => Effort::Final,
        Some("search") => Effort::Search,
        Some(other) => panic!("--effort final|search, not {other}"),
    };
    let kinds: Vec<&str> = kinds.split(',').collect();
    let dir = common::corpus_dir().expect("the corpus (SMART_IMAGING_CORPUS)");
    let names: Vec<String> = common::corpus_manifest(&dir)
        .into_iter()
        .filter_map(|(name, kind)| kinds.contains(&kind.as_str()).then_some(name))
        .collect();
    println!("name,pixels,orig_bytes,jpeg_luma_q,quality,sample_score,whole_score,whole_bytes");
    common::print_per_image(&dir, &names, |name, input| {
        let image = codecs::decode(input, &Limits::default()).expect("decode");
        let from_png = name.ends_with(".png");
        let pixels = u64::from(image.width) * u64::from(image.height);
        let whole = Reference::streamed(&image).expect("reference");
        let sample_pixels = (pixels / 10 / 65536).clamp(1, 2) * 65536;
        let sample = (pixels >= 400_000)
            .then(|| guard::sample(&image, sample_pixels))
            .flatten()
            .map(|img| {
                let r = Reference::streamed(&img).expect("reference").into_owned();
                (img, r)
            });
        let luma_q = jpeg_luma_q(input).map_or(String::new(), |q| format!("{q:.2}"));
        let mut lines = Vec::new();
        for quality in from..=to {
            let bytes = common::guarded_encode(format, &image, quality, effort, from_png);
            let whole_score = score(format, &whole, &bytes);
            let sample_score = sample.as_ref().map_or(String::new(), |(img, r)| {
                let sample = common::guarded_encode(format, img, quality, effort, from_png);
                format!("{:.3}", score(format, r, &sample))
            });
            lines.push(format!(
                "{name},{pixels},{},{luma_q},{quality},{sample_score},{whole_score:.3},{}",
                input.len(),
                bytes.len()
            ));
        }
        lines
    });
}
