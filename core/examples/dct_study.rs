//! DCT-scaling study: what decoding a JPEG at 1/2, 1/4 or 1/8 of its size
//! (libjpeg's scaled inverse DCT) before the resize changes in the image
//! delivered, against a full decode resized the same way, and what it
//! saves. For each corpus photo, each delivered width (a share of the
//! source's) and each DCT scale that still leaves at least the delivered
//! size: the SSIMULACRA 2 score of the scaled path's result against the
//! full path's, and the CPU of both (decode + resize).
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example dct_study > dct.csv
//! ```
//!
//! One CSV line per (image, share, scale) on stdout:
//! `name,width,height,target_width,scale,margin,score,full_ms,scaled_ms`
//! (`margin`: the scaled decode's width over the delivered width).

#[path = "../tests/common/mod.rs"]
mod common;

use smart_imaging_core::codecs;
use smart_imaging_core::{guard, resize, Limits};

/// The size of `(width, height)` scaled to `target_width`, aspect kept.
fn fit_width(width: u32, height: u32, target_width: u32) -> (u32, u32) {
    let h = (f64::from(height) * f64::from(target_width) / f64::from(width)).round() as u32;
    (target_width, h.max(1))
}

fn main() {
    let dir = common::corpus_dir().expect("the corpus (SMART_IMAGING_CORPUS)");
    let names: Vec<String> = common::corpus_manifest(&dir)
        .into_iter()
        .filter_map(|(name, kind)| (kind == "photo" && name.ends_with(".jpg")).then_some(name))
        .collect();
    let limits = Limits::default();
    println!("name,width,height,target_width,scale,margin,score,full_ms,scaled_ms");
    common::print_per_image(&dir, &names, |name, input| {
        let mut lines = Vec::new();
        let t = common::cpu_ms();
        let full = codecs::decode(input, &limits).expect("decode");
        let decode_ms = common::cpu_ms() - t;
        let (w, h) = (full.width, full.height);
        for share in [
            0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.125, 0.1, 0.0625, 0.05, 0.03,
        ] {
            let (tw, th) = fit_width(w, h, (f64::from(w) * share).round() as u32);
            let t = common::cpu_ms();
            let reference = resize::resize(&full, tw, th).expect("resize");
            let full_ms = decode_ms + common::cpu_ms() - t;
            for num in [4u32, 2, 1] {
                // Decoded at num/8: libjpeg's size, ceil(side * num / 8).
                let (sw, sh) = ((w * num).div_ceil(8), (h * num).div_ceil(8));
                if sw < tw || sh < th {
                    continue;
                }
                let t = common::cpu_ms();
                let scaled =
                    codecs::jpeg::decode_at_scale(input, &limits, num as u8).expect("decode");
                assert_eq!((scaled.width, scaled.height), (sw, sh), "{name} at {num}/8");
                let delivered = if (sw, sh) == (tw, th) {
                    scaled
                } else {
                    resize::resize(&scaled, tw, th).expect("resize")
                };
                let scaled_ms = common::cpu_ms() - t;
                let score = guard::score(&reference, &delivered).expect("score");
                lines.push(format!(
                    "{name},{w},{h},{tw},{num}/8,{:.2},{score:.2},{full_ms:.1},{scaled_ms:.1}",
                    f64::from(sw) / f64::from(tw)
                ));
            }
        }
        lines
    });
}
