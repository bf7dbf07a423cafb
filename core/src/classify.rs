//! Is an image graphics-like (screenshots, diagrams, charts, logos,
//! flat-colour art), where a lossless encoding can be smaller than any
//! lossy one that passes the visual-quality guard? A cheap guess from a
//! sample of the pixels, to decide whether a lossless encode is worth
//! trying next to the lossy search.
//!
//! # The rule, and how it was chosen
//!
//! Graphics-like: fewer than [`MAX_COLOURS`] distinct colours in the
//! sample, and at least [`GRAPHIC_MIN_FLAT`] of the sampled pixels equal
//! to their left neighbour. What matters is bytes, so the rule was fitted
//! to "is lossless WebP (`-z 6`, or near-lossless 40 at `-z 5`) smaller
//! than the lossy WebP search at SSIMULACRA 2 >= 80" on the 28 corpus
//! PNGs plus 23 screenshots, charts, diagrams and icons from the Rust,
//! Node.js, Valgrind and pip documentation and Adwaita
//! (`core/examples/encoder_study.rs`):
//!
//! - lossless won on 15 of the 51 PNGs (1 corpus logo, 14 of the
//!   documentation images); the rule flags all 15, plus 16 where lossy
//!   won (gradient wallpapers with flat areas, logos with soft edges):
//!   those cost one needless lossless encode (~50-300 ms/MP).
//! - it flags none of the 35 corpus JPEG photos (the flattest, a dark
//!   night sky, has 0.78 flat and 2670 colours), nor the gradient and
//!   photo-like "graphic" PNGs of the corpus; of the corpus PNGs it
//!   flags 11 of 28 (6 of 10 "alpha": logos, flat art; 5 of 18
//!   "graphic": two screenshots, three flat wallpapers), and 20 of the
//!   23 documentation images (not: an anti-aliased chart, two icons).
//! - the choice is not sensitive: flat thresholds from 0.5 to 0.8 give
//!   the same bytes; 0.85 starts to miss screenshots. The colour limit
//!   matters: without it, anti-aliased charts and logos with thousands of
//!   colours would be flagged for nothing; with 1024 instead of 4096,
//!   six documentation screenshots would be missed.
//!
//! Two other features were measured and dropped: the entropy of a
//! gradient predictor's residuals (an estimate of lossless bits per
//! pixel) ranks smooth gradient art as "cheap losslessly" while lossy
//! WebP makes it 10-15x smaller still; and the chroma detail that 4:2:0
//! loses does not predict when AVIF 4:4:4 beats 4:2:0.
//!
//! Cost: one pass over at most [`SAMPLE_PIXELS`] pixels, at most 0.5 ms
//! per image on the corpus (release build); one encode of the same image
//! costs 100-1000x more.

use crate::codecs::Image;

/// Most pixels examined (whole rows, spread evenly over the image).
pub const SAMPLE_PIXELS: usize = 1 << 17;

/// Distinct colours are counted up to this many; graphics-like images
/// have fewer in the sample.
pub const MAX_COLOURS: u32 = 4096;

/// Smallest fraction of flat pixels (equal to their left neighbour) of a
/// graphics-like image.
pub const GRAPHIC_MIN_FLAT: f32 = 0.8;

/// What [`features`] measures on the sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    /// Distinct RGBA colours in the sample, capped at [`MAX_COLOURS`]
    /// (fully transparent pixels, whatever their colour, count as one).
    pub colours: u32,
    /// Fraction of sampled pixels identical to their left neighbour
    /// (flat runs), 0-1.
    pub flat: f32,
}

impl Features {
    /// The decision of [`is_graphic`] from measured features.
    pub fn is_graphic(&self) -> bool {
        self.colours < MAX_COLOURS && self.flat >= GRAPHIC_MIN_FLAT
    }
}

/// Whether `img` looks graphics-like (see the module documentation).
pub fn is_graphic(img: &Image) -> bool {
    features(img).is_graphic()
}

/// Measures [`Features`] on at most [`SAMPLE_PIXELS`] pixels of `img`:
/// whole rows, spread evenly from top to bottom. An image whose pixel
/// buffer does not match its size measures as zero colours.
pub fn features(img: &Image) -> Features {
    let (w, h) = (img.width as usize, img.height as usize);
    let c = img.channels();
    if w == 0 || h == 0 || !img.is_consistent() {
        return Features {
            colours: 0,
            flat: 0.0,
        };
    }
    let rows = (SAMPLE_PIXELS / w).clamp(1, h);
    let mut colours = ColourSet::new();
    let mut flat = 0u64;
    for i in 0..rows {
        let y = i * h / rows;
        let row = &img.pixels[y * w * c..(y + 1) * w * c];
        let mut previous = None;
        for p in row.chunks_exact(c) {
            let colour = match *p {
                // Invisible colour does not matter (and encoders are free
                // to flatten it): count it as transparent black.
                [_, _, _, 0] => 0,
                [r, g, b, a] => u32::from_le_bytes([r, g, b, a]),
                [r, g, b] => u32::from_le_bytes([r, g, b, 255]),
                _ => unreachable!("3 or 4 channels"),
            };
            colours.insert(colour);
            flat += u64::from(previous == Some(colour));
            previous = Some(colour);
        }
    }
    Features {
        colours: colours.len(),
        flat: (flat as f64 / (rows * w) as f64) as f32,
    }
}

/// A set of colours that stops growing at [`MAX_COLOURS`]: open addressing
/// over a fixed table, so counting costs no allocation per pixel.
struct ColourSet {
    slots: Vec<u32>,
    has_zero: bool,
    len: u32,
}

impl ColourSet {
    const SLOTS: usize = 2 * MAX_COLOURS as usize; // a power of two

    fn new() -> Self {
        ColourSet {
            slots: vec![0; Self::SLOTS],
            has_zero: false,
            len: 0,
        }
    }

    fn insert(&mut self, colour: u32) {
        if self.len >= MAX_COLOURS {
            return;
        }
        // 0 marks an empty slot; transparent black is tracked apart.
        if colour == 0 {
            self.len += u32::from(!self.has_zero);
            self.has_zero = true;
            return;
        }
        let mut i = (colour.wrapping_mul(0x9E37_79B1) >> 16) as usize & (Self::SLOTS - 1);
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = colour;
                    self.len += 1;
                    return;
                }
                c if c == colour => return,
                _ => i = (i + 1) & (Self::SLOTS - 1),
            }
        }
    }

    fn len(&self) -> u32 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, alpha: bool, f: impl Fn(u32, u32) -> [u8; 4]) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let p = f(x, y);
                pixels.extend_from_slice(if alpha { &p[..] } else { &p[..3] });
            }
        }
        Image {
            width,
            height,
            pixels,
            has_alpha: alpha,
            icc_profile: None,
        }
    }

    fn noise(x: u32, y: u32, seed: u32) -> u8 {
        let mut s = x.wrapping_mul(0x85EB_CA6B) ^ y.wrapping_mul(0xC2B2_AE35) ^ seed;
        s ^= s >> 15;
        s = s.wrapping_mul(0x2C1B_3C6D);
        (s >> 24) as u8
    }

    #[test]
    fn screenshot_is_graphic() {
        // Flat panels and a few lines of "text".
        let img = image(640, 400, false, |x, y| {
            if (100..110).contains(&y) && x % 7 < 3 {
                [0, 0, 0, 255]
            } else if x < 160 {
                [230, 230, 235, 255]
            } else {
                [255, 255, 255, 255]
            }
        });
        let f = features(&img);
        assert_eq!(f.colours, 3, "{f:?}");
        assert!(f.flat > 0.95, "{f:?}");
        assert!(is_graphic(&img));
    }

    #[test]
    fn noisy_photo_is_not_graphic() {
        let img = image(512, 512, false, |x, y| {
            let n = noise(x, y, 1) / 8;
            [
                (x / 3) as u8 + n,
                (y / 3) as u8 + n,
                ((x + y) / 6) as u8 + noise(x, y, 2) / 8,
                255,
            ]
        });
        let f = features(&img);
        assert_eq!(f.colours, MAX_COLOURS, "{f:?}");
        assert!(f.flat < 0.1, "{f:?}");
        assert!(!is_graphic(&img));
    }

    #[test]
    fn smooth_gradient_is_not_graphic() {
        // Every pixel differs from its neighbour: lossy wins by far.
        let img = image(1024, 256, false, |x, y| [(x / 4) as u8, y as u8, 128, 255]);
        let f = features(&img);
        assert!(f.flat < 0.8, "{f:?}");
        assert!(!is_graphic(&img));
    }

    #[test]
    fn many_colours_with_flat_runs_is_not_graphic() {
        // Flat runs of 8 pixels, but a different colour for each run.
        let img = image(800, 600, false, |x, y| {
            let run = x / 8 + 100 * y;
            [run as u8, (run >> 8) as u8, 77, 255]
        });
        let f = features(&img);
        assert!(f.flat > 0.85, "{f:?}");
        assert_eq!(f.colours, MAX_COLOURS);
        assert!(!is_graphic(&img));
    }

    #[test]
    fn logo_on_transparency_is_graphic_and_invisible_colour_is_ignored() {
        // A disc on transparency, with random colour under the
        // transparent part (which must not count).
        let img = image(300, 300, true, |x, y| {
            let (dx, dy) = (x as i32 - 150, y as i32 - 150);
            if dx * dx + dy * dy < 100 * 100 {
                [200, 30, 60, 255]
            } else {
                [noise(x, y, 3), noise(x, y, 4), noise(x, y, 5), 0]
            }
        });
        let f = features(&img);
        assert_eq!(f.colours, 2, "{f:?}");
        assert!(is_graphic(&img), "{f:?}");
    }

    #[test]
    fn samples_big_images() {
        // 4000x4000: only SAMPLE_PIXELS / 4000 rows are read. The top
        // half is flat, the bottom half noise: the sample sees both.
        let img = image(4000, 4000, false, |x, y| {
            if y < 2000 {
                [10, 20, 30, 255]
            } else {
                [noise(x, y, 1), 0, 0, 255]
            }
        });
        let f = features(&img);
        assert!((0.45..0.55).contains(&f.flat), "{f:?}");
        assert!(!f.is_graphic());
    }

    #[test]
    fn tiny_and_degenerate_images() {
        for (w, h) in [(1, 1), (1, 50), (50, 1), (3, 2)] {
            let img = image(w, h, w == 1, |x, y| [x as u8, y as u8, 0, 255]);
            let f = features(&img);
            assert!(
                f.colours >= 1 && (0.0..=1.0).contains(&f.flat),
                "{w}x{h}: {f:?}"
            );
        }
        let mut broken = image(4, 4, false, |_, _| [0; 4]);
        broken.pixels.pop();
        assert_eq!(features(&broken).colours, 0);
        assert!(!is_graphic(&broken));
    }
}
