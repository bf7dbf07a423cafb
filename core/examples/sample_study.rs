//! Sample study: how well samples of different shapes stand in for the
//! whole photo in the WebP quality search. For each corpus photo of
//! 0.4 MP or more and each quality in a range, the guard score of each
//! sample's own encode, so that the sample's answer (the lowest quality
//! scoring at least the threshold) can be set beside the whole image's
//! (from `search_table`'s CSV) offline.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example sample_study -- [--from 60] [--to 96] > samples.csv
//! ```
//!
//! One CSV line per (image, sample, quality) on stdout:
//! `name,sample,pixels,quality,score,bytes`.

#[path = "../tests/common/mod.rs"]
mod common;

use smart_imaging_core::codecs::{self, Effort, Format, Image};
use smart_imaging_core::guard::{mosaic, Reference};
use smart_imaging_core::Limits;

/// `n` tiles in an even grid close to the image's proportions.
fn grid(img: &Image, n: u32, tile: u32) -> Vec<(u32, u32)> {
    let aspect = f64::from(img.width) / f64::from(img.height);
    let (columns, rows) = (1..=(img.width / tile).min(n))
        .map(|c| (c, (n / c).min(img.height / tile)))
        .max_by(|&(c1, r1), &(c2, r2)| {
            let off = |c: u32, r: u32| (f64::from(c) / f64::from(r) / aspect).ln().abs();
            (c1 * r1)
                .cmp(&(c2 * r2))
                .then(off(c2, r2).total_cmp(&off(c1, r1)))
        })
        .unwrap();
    let spread = |i: u32, n: u32, side: u32| {
        if n == 1 {
            (side - tile) / 2
        } else {
            (u64::from(i) * u64::from(side - tile) / u64::from(n - 1)) as u32
        }
    };
    (0..rows)
        .flat_map(|r| {
            (0..columns).map(move |c| (spread(c, columns, img.width), spread(r, rows, img.height)))
        })
        .collect()
}

/// Sum of absolute luma (green) differences to the right and below, per tile.
fn activity(img: &Image, x0: u32, y0: u32, tile: u32) -> f64 {
    let c = img.channels();
    let at = |x: u32, y: u32| {
        f64::from(img.pixels[(y as usize * img.width as usize + x as usize) * c + 1])
    };
    let mut sum = 0.0;
    for y in y0..y0 + tile - 1 {
        for x in x0..x0 + tile - 1 {
            let v = at(x, y);
            sum += (v - at(x + 1, y)).abs() + (v - at(x, y + 1)).abs();
        }
    }
    sum
}

/// The aligned grid of all `tile`-sized tiles of `img`, least busy first.
fn tiles_by_activity(img: &Image, tile: u32) -> Vec<(u32, u32)> {
    let mut all: Vec<(f64, (u32, u32))> = (0..img.height / tile)
        .flat_map(|ty| (0..img.width / tile).map(move |tx| (tx * tile, ty * tile)))
        .map(|(x, y)| (activity(img, x, y, tile), (x, y)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().map(|(_, corner)| corner).collect()
}

/// `n` tiles at evenly spaced quantiles of their activity (so that the
/// sample holds flat and busy parts in the image's own proportions).
fn stratified(img: &Image, n: u32, tile: u32) -> Vec<(u32, u32)> {
    let all = tiles_by_activity(img, tile);
    let len = all.len() as u32;
    (0..n.min(len))
        .map(|i| all[((2 * i + 1) * len / (2 * n)) as usize])
        .collect()
}

/// The busiest `n` tiles.
fn busiest(img: &Image, n: u32, tile: u32) -> Vec<(u32, u32)> {
    tiles_by_activity(img, tile)
        .into_iter()
        .rev()
        .take(n as usize)
        .collect()
}

fn samples(img: &Image) -> Vec<(String, Image)> {
    let pixels = u64::from(img.width) * u64::from(img.height);
    // Today's budget: a tenth of the pixels, one or two 256 tiles' worth.
    let budget = (pixels / 10 / 65536).clamp(1, 2) * 65536;
    let mut out = Vec::new();
    for (tile, columns) in [(256u32, 2u32), (128, 4), (64, 8)] {
        let n = (budget / u64::from(tile * tile)) as u32;
        let corners = grid(img, n, tile);
        let cols = corners.len().min(columns as usize) as u32;
        out.push((format!("grid{tile}"), mosaic(img, &corners, cols, tile)));
        if tile < 256 {
            let corners = stratified(img, n, tile);
            let cols = corners.len().min(columns as usize) as u32;
            out.push((format!("strat{tile}"), mosaic(img, &corners, cols, tile)));
            let corners = busiest(img, n, tile);
            let cols = corners.len().min(columns as usize) as u32;
            out.push((format!("busy{tile}"), mosaic(img, &corners, cols, tile)));
        }
    }
    // Twice the budget, small tiles.
    let n = (2 * budget / 4096) as u32;
    let corners = stratified(img, n, 64);
    out.push(("strat64x2".into(), mosaic(img, &corners, 16, 64)));
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| common::option(&args, name);
    let from: u8 = arg("--from").map_or(60, |v| v.parse().unwrap());
    let to: u8 = arg("--to").map_or(96, |v| v.parse().unwrap());
    let dir = common::corpus_dir().expect("the corpus (SMART_IMAGING_CORPUS)");
    let names: Vec<String> = common::corpus_manifest(&dir)
        .into_iter()
        .filter_map(|(name, kind)| (kind == "photo").then_some(name))
        .collect();
    println!("name,sample,pixels,quality,score,bytes");
    common::print_per_image(&dir, &names, |name, input| {
        let image = codecs::decode(input, &Limits::default()).expect("decode");
        if u64::from(image.width) * u64::from(image.height) < 400_000 {
            return Vec::new();
        }
        let mut lines = Vec::new();
        for (label, sample) in samples(&image) {
            let reference = Reference::streamed(&sample)
                .expect("reference")
                .into_owned();
            for quality in from..=to {
                let bytes =
                    common::guarded_encode(Format::WebP, &sample, quality, Effort::Final, false);
                let decoded =
                    (Format::WebP.codec().decode)(&bytes, &Limits::default()).expect("decode");
                let score = reference.score(&decoded).expect("score");
                lines.push(format!(
                    "{name},{label},{},{quality},{score:.3},{}",
                    u64::from(sample.width) * u64::from(sample.height),
                    bytes.len()
                ));
            }
        }
        lines
    });
}
