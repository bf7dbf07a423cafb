//! Image difference metrics, for tests and tuning (not used per request).
//!
//! Transparent images are compared as they would be *seen*: each is
//! composited (premultiplied) on black and on white, and the worse of the
//! two scores is returned. Colour under fully transparent pixels thus does
//! not count (an encoder may change it), while an alpha error counts as
//! much as the colour error it causes on either background.

use crate::codecs::Image;

/// Peak signal-to-noise ratio in dB over the RGB channels (`INFINITY` for
/// identical images). If either image has alpha, the worse of the
/// on-black and on-white composites.
///
/// Panics if the images differ in size.
pub fn psnr(a: &Image, b: &Image) -> f64 {
    assert_same_size(a, b);
    backgrounds(a, b)
        .iter()
        .map(|&bg| {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for (pa, pb) in composited(a, bg).zip(composited(b, bg)) {
                for c in 0..3 {
                    let d = pa[c] - pb[c];
                    sum += d * d;
                }
                n += 3;
            }
            let mse = sum / n as f64;
            if mse == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (255.0 * 255.0 / mse).log10()
            }
        })
        .fold(f64::INFINITY, f64::min)
}

/// Mean SSIM of the luma (BT.601 weights) over 8x8 windows stepped by 4
/// pixels (one window over the whole image if it is smaller). 1.0 means
/// identical. Alpha is handled as in [`psnr`].
///
/// Panics if the images differ in size.
pub fn ssim(a: &Image, b: &Image) -> f64 {
    assert_same_size(a, b);
    backgrounds(a, b)
        .iter()
        .map(|&bg| {
            ssim_luma(
                &luma(a, bg),
                &luma(b, bg),
                a.width as usize,
                a.height as usize,
            )
        })
        .fold(f64::INFINITY, f64::min)
}

fn assert_same_size(a: &Image, b: &Image) {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "images differ in size"
    );
    assert!(
        a.is_consistent() && b.is_consistent(),
        "pixel buffer does not match the size"
    );
}

/// Background levels to composite on: none needed for two opaque images.
fn backgrounds(a: &Image, b: &Image) -> &'static [f64] {
    if a.has_alpha || b.has_alpha {
        &[0.0, 255.0]
    } else {
        &[0.0]
    }
}

/// The image's RGB as seen over a `background` grey level (0..=255).
fn composited(img: &Image, background: f64) -> impl Iterator<Item = [f64; 3]> + '_ {
    img.pixels.chunks_exact(img.channels()).map(move |px| {
        let alpha = if img.has_alpha {
            f64::from(px[3]) / 255.0
        } else {
            1.0
        };
        let mix = |c: u8| f64::from(c) * alpha + background * (1.0 - alpha);
        [mix(px[0]), mix(px[1]), mix(px[2])]
    })
}

fn luma(img: &Image, background: f64) -> Vec<f64> {
    composited(img, background)
        .map(|[r, g, b]| 0.299 * r + 0.587 * g + 0.114 * b)
        .collect()
}

fn ssim_luma(a: &[f64], b: &[f64], width: usize, height: usize) -> f64 {
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    let (win_w, win_h) = (width.min(8), height.min(8));
    let starts = |len: usize, win: usize| (0..=len - win).step_by(4);

    let (mut total, mut windows) = (0.0, 0usize);
    for y0 in starts(height, win_h) {
        for x0 in starts(width, win_w) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in y0..y0 + win_h {
                for i in y * width + x0..y * width + x0 + win_w {
                    let (va, vb) = (a[i], b[i]);
                    sa += va;
                    sb += vb;
                    saa += va * va;
                    sbb += vb * vb;
                    sab += va * vb;
                }
            }
            let n = (win_w * win_h) as f64;
            let (ma, mb) = (sa / n, sb / n);
            let (var_a, var_b, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + C1) * (2.0 * cov + C2))
                / ((ma * ma + mb * mb + C1) * (var_a + var_b + C2));
            windows += 1;
        }
    }
    total / windows as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, has_alpha: bool, f: impl Fn(u32, u32) -> Vec<u8>) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend(f(x, y));
            }
        }
        Image {
            width,
            height,
            pixels,
            has_alpha,
            icc_profile: None,
        }
    }

    #[test]
    fn identical_and_different() {
        let a = image(16, 16, false, |x, y| {
            vec![(x * 16) as u8, (y * 16) as u8, 7]
        });
        assert_eq!(psnr(&a, &a), f64::INFINITY);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-9);

        // Every sample off by 1: MSE 1, PSNR = 20 log10(255) ~ 48.13 dB.
        let b = image(16, 16, false, |x, y| {
            vec![(x * 16) as u8 + 1, (y * 16) as u8 + 1, 8]
        });
        assert!((psnr(&a, &b) - 48.1308).abs() < 1e-3);
        assert!(ssim(&a, &b) > 0.99);

        let noise = image(16, 16, false, |x, y| {
            vec![((x * 7919 + y * 104729) % 256) as u8; 3]
        });
        assert!(psnr(&a, &noise) < 15.0);
        assert!(ssim(&a, &noise) < 0.5);
    }

    #[test]
    fn alpha_is_compared_as_seen() {
        // Different colours under full transparency look the same.
        let a = image(4, 4, true, |_, _| vec![255, 0, 0, 0]);
        let b = image(4, 4, true, |_, _| vec![0, 255, 0, 0]);
        assert_eq!(psnr(&a, &b), f64::INFINITY);

        // Opaque black vs transparent: identical on black, maximal on white.
        let opaque_black = image(4, 4, false, |_, _| vec![0, 0, 0]);
        let clear = image(4, 4, true, |_, _| vec![0, 0, 0, 0]);
        assert_eq!(psnr(&opaque_black, &clear), 0.0);
        assert!(ssim(&opaque_black, &clear) < 0.1);
    }

    #[test]
    #[should_panic(expected = "differ in size")]
    fn size_mismatch_panics() {
        let a = image(2, 2, false, |_, _| vec![0; 3]);
        let b = image(2, 3, false, |_, _| vec![0; 3]);
        psnr(&a, &b);
    }
}
