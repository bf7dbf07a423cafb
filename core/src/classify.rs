//! Is an image graphics-like (screenshots, logos, flat-colour art), where
//! a lossless encoding tends to be smaller than any lossy one that passes
//! the visual-quality guard? A cheap guess from a sample of the pixels,
//! to decide which encodings are worth trying.
//!
//! What counts is bytes, not a label: [`Features::lossless_bpp`] estimates
//! what a lossless coder would spend per pixel (the entropy of the
//! residuals of a gradient predictor, the one PNG's Paeth and WebP's
//! lossless predictors approximate), and [`is_graphic`] says "graphics"
//! when that estimate is low enough that lossless is expected to win.
//! Thresholds and their measured accuracy: see [`is_graphic`].
//!
//! Cost: one pass over at most [`SAMPLE_PIXELS`] pixels (pairs of rows
//! spread over the image), ~1 ms; an encode of the same image costs
//! 100-1000x more.

use crate::codecs::Image;

/// Most pixels examined (in row pairs spread evenly over the image).
pub const SAMPLE_PIXELS: usize = 1 << 17;

/// Distinct colours are counted up to this many; more is "many".
pub const MAX_COLOURS: u32 = 4096;

/// What [`features`] measures on the sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    /// Distinct RGBA colours in the sample, capped at [`MAX_COLOURS`]
    /// (fully transparent pixels count as one colour).
    pub colours: u32,
    /// Fraction of sampled pixels identical to their left neighbour
    /// (flat runs).
    pub flat: f32,
    /// Estimated lossless cost, bits per pixel: the zeroth-order entropy
    /// of the gradient-predictor residuals, summed over the channels
    /// (alpha included when the image has it).
    pub lossless_bpp: f32,
}

/// Measures [`Features`] on a sample of `img`: at most
/// [`SAMPLE_PIXELS`] pixels in pairs of adjacent rows (the predictor
/// needs the row above) spread evenly from top to bottom.
pub fn features(img: &Image) -> Features {
    let (w, h) = (img.width as usize, img.height as usize);
    let c = img.channels();
    if w == 0 || h == 0 || !img.is_consistent() {
        return Features {
            colours: 0,
            flat: 0.0,
            lossless_bpp: 0.0,
        };
    }
    // Pairs of rows: (y - 1, y), spread evenly; y >= 1 where possible.
    let pairs = (SAMPLE_PIXELS / w.max(1)).clamp(1, h.max(2) / 2).max(1);
    let mut colours = ColourSet::new();
    let mut hist = vec![[0u32; 256]; c];
    let (mut flat, mut counted) = (0u64, 0u64);
    let pixel = |x: usize, y: usize| -> [u8; 4] {
        let i = (y * w + x) * c;
        let p = &img.pixels[i..i + c];
        match p {
            // Invisible colour does not matter (and lossless coders are
            // free to flatten it): count it as transparent black.
            [_, _, _, 0] => [0; 4],
            [r, g, b, a] => [*r, *g, *b, *a],
            [r, g, b] => [*r, *g, *b, 255],
            _ => unreachable!("3 or 4 channels"),
        }
    };
    for i in 0..pairs {
        let y = if h == 1 {
            0
        } else {
            1 + i * (h - 1) / pairs
        };
        for x in 0..w {
            let p = pixel(x, y);
            colours.insert(u32::from_le_bytes(p));
            let left = (x > 0).then(|| pixel(x - 1, y));
            let up = (y > 0).then(|| pixel(x, y - 1));
            let up_left = (x > 0 && y > 0).then(|| pixel(x - 1, y - 1));
            if let Some(l) = left {
                flat += u64::from(l == p);
            }
            counted += 1;
            for ch in 0..c {
                let prediction = match (left, up, up_left) {
                    (Some(l), Some(u), Some(ul)) => {
                        let g = i32::from(l[ch]) + i32::from(u[ch]) - i32::from(ul[ch]);
                        g.clamp(0, 255) as u8
                    }
                    (Some(l), _, _) => l[ch],
                    (_, Some(u), _) => u[ch],
                    _ => 0,
                };
                hist[ch][usize::from(p[ch].wrapping_sub(prediction))] += 1;
            }
        }
    }
    let n = counted as f64;
    let entropy: f64 = hist
        .iter()
        .map(|h| {
            h.iter()
                .filter(|&&k| k > 0)
                .map(|&k| {
                    let p = f64::from(k) / n;
                    -p * p.log2()
                })
                .sum::<f64>()
        })
        .sum();
    Features {
        colours: colours.len(),
        flat: (flat as f64 / n) as f32,
        lossless_bpp: entropy as f32,
    }
}

/// Whether `img` looks like graphics, where lossless is expected to be
/// the smaller encoding at the guard's threshold.
pub fn is_graphic(img: &Image) -> bool {
    features(img).is_graphic()
}

impl Features {
    /// The decision of [`is_graphic`] from measured features.
    pub fn is_graphic(&self) -> bool {
        self.lossless_bpp <= GRAPHIC_MAX_BPP
    }
}

/// Above this estimated lossless cost, lossy wins.
pub const GRAPHIC_MAX_BPP: f32 = 2.0;

/// A set of colours that stops growing at [`MAX_COLOURS`]: open addressing
/// over a fixed table, so counting costs no allocation per pixel.
struct ColourSet {
    slots: Vec<u32>,
    has_zero: bool,
    len: u32,
}

impl ColourSet {
    const SLOTS: usize = 2 * MAX_COLOURS as usize; // power of two

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
    fn flat_art_is_graphic() {
        // A "screenshot": flat panels, a few lines of "text".
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
        assert!(f.colours <= 3, "{f:?}");
        assert!(f.flat > 0.9, "{f:?}");
        assert!(f.lossless_bpp < 0.5, "{f:?}");
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
        assert!(f.colours >= 1000, "{f:?}");
        assert!(f.lossless_bpp > 8.0, "{f:?}");
        assert!(!is_graphic(&img));
    }

    #[test]
    fn logo_with_alpha_is_graphic_and_invisible_colour_is_ignored() {
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
    fn tiny_and_degenerate_images() {
        for (w, h) in [(1, 1), (1, 50), (50, 1), (3, 2)] {
            let img = image(w, h, w == 1, |x, y| [x as u8, y as u8, 0, 255]);
            let f = features(&img);
            assert!(f.colours >= 1 && f.lossless_bpp.is_finite(), "{w}x{h}: {f:?}");
        }
        let mut broken = image(4, 4, false, |_, _| [0; 4]);
        broken.pixels.pop();
        assert_eq!(features(&broken).colours, 0);
    }

    #[test]
    fn colour_count_caps() {
        let img = image(256, 256, false, |x, y| [x as u8, y as u8, 7, 255]);
        assert_eq!(features(&img).colours, MAX_COLOURS);
    }
}
