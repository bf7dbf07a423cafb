//! SSIMULACRA 2 (Jon Sneyers, Cloudinary, 2022; weights of April 2023),
//! written from the published algorithm (libjxl `tools/ssimulacra2.cc`),
//! restructured so that everything about the reference image is computed
//! once and reused for every candidate.
//!
//! Per scale (1:1 to 1:32, each halving the previous one in linear RGB):
//!
//! 1. linear sRGB -> XYB (the JPEG XL opsin space, cube root of LMS-like
//!    absorbances), rescaled to about 0..1: `X*14 + 0.42`, `Y + 0.01`,
//!    `B - Y + 0.55`;
//! 2. a Gaussian blur (sigma 1.5, the recursive approximation of
//!    Charalampidis 2016 that libjxl uses, zero outside the image, in
//!    `f32` exactly as the reference computes it: `blur.rs`) gives
//!    local means `mu`, and of products the local (co)variances;
//! 3. per pixel and channel, `1 - SSIM'` (SSIM without the luminance
//!    denominator: XYB is already perceptually uniform) and the edge
//!    difference `(1 + |img2 - mu2|) / (1 + |img1 - mu1|) - 1`, split into
//!    "artifact" (> 0: edges the original does not have: ringing, blocks,
//!    banding) and "detail lost" (< 0: blur, smearing);
//! 4. each map is pooled as its mean (1-norm) and its 4-norm.
//!
//! The 108 numbers (3 channels x 6 scales x 2 norms x 3 maps) are weighted,
//! summed and mapped to 0..100 (100 = identical; ~90 visually lossless at
//! close inspection; ~80 "can't tell them apart side by side at 1:1";
//! ~70 high quality; ~50 medium; below 30 low).
//!
//! Faithful to the reference in its quirks too: the size check before each
//! downscale is on the previous scale (so the last scale may be narrower
//! than 8 pixels), and images with fewer than 6 scales (a side under 113
//! pixels) take their weights consecutively, as the reference does.
//! Arithmetic is `f32` per pixel and `f64` for the pooled sums, like the
//! reference; the remaining differences (rounding, `cbrt`) are in the
//! fourth decimal of the score.

use std::array;
use std::sync::OnceLock;

use crate::codecs::Image;

use super::blur::Blur;

/// Number of scales: 1:1 to 1:32.
pub(super) const NUM_SCALES: usize = 6;

/// Smallest width and height SSIMULACRA 2 scores.
pub(super) const MIN_SIDE: usize = 8;

/// Three `f32` planes of `width * height` samples, rows top to bottom.
#[derive(Clone, Debug, Default)]
pub(super) struct Planes {
    pub width: usize,
    pub height: usize,
    pub planes: [Vec<f32>; 3],
}

/// sRGB code value (0..=255) -> linear light (0..=1), IEC 61966-2-1.
fn srgb_to_linear() -> &'static [f32; 256] {
    static LUT: OnceLock<[f32; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        array::from_fn(|i| {
            let v = i as f64 / 255.0;
            let linear = if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            };
            linear as f32
        })
    })
}

/// The image's colour in linear light, as a screen would show it over a
/// uniform `background` grey (0..=255): alpha is blended in the sRGB
/// encoding, rounded to 8 bits, as a browser compositing into an 8-bit
/// framebuffer does (and as the reference tool blends, before
/// linearising). Opaque images ignore `background`.
///
/// The ICC profile, if any, is ignored: the samples are taken as sRGB.
/// (Both images being compared carry the same profile, so their
/// difference is measured in a slightly wrong but common space.)
pub(super) fn linear_rgb(img: &Image, background: u8, out: &mut Planes) {
    debug_assert!(img.is_consistent());
    let (w, h) = (img.width as usize, img.height as usize);
    out.width = w;
    out.height = h;
    for plane in &mut out.planes {
        plane.resize(w * h, 0.0);
    }
    let [r, g, b] = &mut out.planes;
    for (y, ((r, g), b)) in r
        .chunks_exact_mut(w)
        .zip(g.chunks_exact_mut(w))
        .zip(b.chunks_exact_mut(w))
        .enumerate()
    {
        linear_rgb_row(img, y, background, [r, g, b]);
    }
}

/// Row `y` of [`linear_rgb`], into three rows of `img.width`.
#[inline(always)]
pub(super) fn linear_rgb_row(img: &Image, y: usize, background: u8, out: [&mut [f32]; 3]) {
    let lut = srgb_to_linear();
    let w = img.width as usize;
    let [r, g, b] = out;
    let (r, g, b) = (&mut r[..w], &mut g[..w], &mut b[..w]);
    if img.has_alpha {
        let bg = u32::from(background);
        let blend = |c: u8, a: u32| lut[((u32::from(c) * a + bg * (255 - a) + 127) / 255) as usize];
        let row = &img.pixels[y * w * 4..][..w * 4];
        for (i, px) in row.chunks_exact(4).enumerate() {
            let a = u32::from(px[3]);
            r[i] = blend(px[0], a);
            g[i] = blend(px[1], a);
            b[i] = blend(px[2], a);
        }
    } else {
        let row = &img.pixels[y * w * 3..][..w * 3];
        for (i, px) in row.chunks_exact(3).enumerate() {
            r[i] = lut[px[0] as usize];
            g[i] = lut[px[1] as usize];
            b[i] = lut[px[2] as usize];
        }
    }
}

/// Halves each side (rounding up) by averaging 2x2 blocks; the last row
/// and column are repeated when a side is odd.
pub(super) fn downscale_by_2(src: &Planes, dst: &mut Planes) {
    let (w, h) = (src.width, src.height);
    let (out_w, out_h) = (w.div_ceil(2), h.div_ceil(2));
    dst.width = out_w;
    dst.height = out_h;
    for (input, out) in src.planes.iter().zip(&mut dst.planes) {
        out.clear();
        for oy in 0..out_h {
            let row0 = &input[2 * oy * w..][..w];
            let row1 = &input[(2 * oy + 1).min(h - 1) * w..][..w];
            for ox in 0..out_w {
                let (x0, x1) = (2 * ox, (2 * ox + 1).min(w - 1));
                out.push((row0[x0] + row0[x1] + row1[x0] + row1[x1]) * 0.25);
            }
        }
    }
}

/// Linear sRGB -> XYB in place, rescaled to positive values as
/// SSIMULACRA 2 does: planes R, G, B become X, Y, B.
pub(super) fn positive_xyb(lin: &mut Planes) {
    let n = lin.width * lin.height;
    let [r, g, b] = &mut lin.planes;
    positive_xyb_row(&mut r[..n], &mut g[..n], &mut b[..n]);
}

/// [`positive_xyb`] of samples side by side (a row, or a whole plane).
#[inline(always)]
pub(super) fn positive_xyb_row(r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    // Opsin absorbance matrix and bias (libjxl opsin_params.h).
    const M: [[f32; 3]; 3] = [
        [0.30, 0.622, 0.078],
        [0.23, 0.692, 0.078],
        [
            0.243_422_69,
            0.204_767_45,
            1.0 - 0.243_422_69 - 0.204_767_45,
        ],
    ];
    const BIAS: f32 = 0.003_793_073_4;
    let cbrt_bias = BIAS.cbrt();
    let n = r.len();
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let mix = |m: &[f32; 3]| {
            let v = m[0] * r[i] + m[1] * g[i] + m[2] * b[i] + BIAS;
            // v >= BIAS > 0: RGB and the matrix are non-negative (the
            // reference clamps at 0, a no-op here).
            cbrt(v) - cbrt_bias
        };
        let (l, m, s) = (mix(&M[0]), mix(&M[1]), mix(&M[2]));
        let (xv, yv) = (0.5 * (l - m), 0.5 * (l + m));
        r[i] = xv.mul_add(14.0, 0.42);
        g[i] = yv + 0.01;
        b[i] = (s - yv) + 0.55;
    }
}

/// Cube root of `v >= 0`, to within a few ulp of `f32::cbrt`: an
/// exponent-dividing bit trick for a ~5 % first guess, then two Halley
/// steps (cubic convergence: 5e-2 -> 1e-4 -> 1e-12). Unlike the libm
/// call it vectorises; the XYB conversion is a third of the metric's cost.
#[inline(always)]
fn cbrt(v: f32) -> f32 {
    // Only for v > 0 (here >= 0.0038, the opsin bias): no branch, so
    // that the loop runs in SIMD.
    let mut y = f32::from_bits(v.to_bits() / 3 + 0x2a51_19f2);
    for _ in 0..2 {
        let y3 = y * y * y;
        y *= (y3 + 2.0 * v) / (2.0 * y3 + v);
    }
    y
}

/// The recursive Gaussian's coefficients for `sigma` (Charalampidis 2016,
/// equations 33-57, as libjxl's `CreateRecursiveGaussian`): per filter
/// k = 1, 3, 5, the input weight `n2` and the feedback `d1`
/// (`out[n] = n2 * in - d1 * out[n-1] - out[n-2]`).
#[cfg(test)]
pub(super) fn gaussian_coefficients(sigma: f64) -> ([f64; 3], [f64; 3]) {
    use std::f64::consts::PI;
    let radius = (3.2795 * sigma + 0.2546).round();
    let pi_div_2r = PI / (2.0 * radius);
    let omega = [pi_div_2r, 3.0 * pi_div_2r, 5.0 * pi_div_2r];
    let p = [
        1.0 / (0.5 * omega[0]).tan(),
        -1.0 / (0.5 * omega[1]).tan(),
        1.0 / (0.5 * omega[2]).tan(),
    ];
    let r = [
        p[0] * p[0] / omega[0].sin(),
        -p[1] * p[1] / omega[1].sin(),
        p[2] * p[2] / omega[2].sin(),
    ];
    let rho: [f64; 3] =
        array::from_fn(|i| (-0.5 * sigma * sigma * omega[i] * omega[i]).exp() / radius);
    let d_13 = p[0] * r[1] - r[0] * p[1];
    let d_35 = p[1] * r[2] - r[1] * p[2];
    let d_51 = p[2] * r[0] - r[2] * p[0];
    let zeta_15 = d_35 / d_13;
    let zeta_35 = d_51 / d_13;
    // Solve A beta = gamma (eq. 53-56) by Cramer's rule.
    let a = [p, r, [zeta_15, zeta_35, 1.0]];
    let gamma = [
        1.0,
        radius * radius - sigma * sigma,
        zeta_15 * rho[0] + zeta_35 * rho[1] + rho[2],
    ];
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let det_a = det(&a);
    let beta: [f64; 3] = array::from_fn(|col| {
        let mut m = a;
        for (row, g) in m.iter_mut().zip(gamma) {
            row[col] = g;
        }
        det(&m) / det_a
    });
    debug_assert!((beta[0] * p[0] + beta[1] * p[1] + beta[2] * p[2] - 1.0).abs() < 1e-12);
    let n2 = array::from_fn(|i| -beta[i] * (omega[i] * (radius + 1.0)).cos());
    let d1 = array::from_fn(|i| -2.0 * omega[i].cos());
    (n2, d1)
}

/// What SSIMULACRA 2 keeps of the reference at one scale.
pub(super) struct ReferenceScale {
    width: usize,
    height: usize,
    /// Positive XYB.
    img: [Vec<f32>; 3],
    /// Blurred `img`.
    mu: [Vec<f32>; 3],
    /// Blurred `img * img`.
    sigma_sq: [Vec<f32>; 3],
}

/// The reference side of SSIMULACRA 2 at every scale, computed once.
/// Memory: 9 `f32` planes per scale, ~48 bytes per reference pixel.
pub(super) struct Prepared {
    scales: Vec<ReferenceScale>,
}

impl Prepared {
    /// `reference` over `background` (see [`linear_rgb`]), at least
    /// [`MIN_SIDE`] wide and high.
    pub fn new(reference: &Image, background: u8, work: &mut Workspace) -> Prepared {
        let mut lin = Planes::default();
        linear_rgb(reference, background, &mut lin);
        let count = scale_count(lin.width, lin.height);
        let mut scales = Vec::with_capacity(count);
        for scale in 0..count {
            // The next scale comes from this one's linear RGB, which the
            // XYB conversion then overwrites.
            let mut next = Planes::default();
            if scale + 1 < count {
                downscale_by_2(&lin, &mut next);
            }
            positive_xyb(&mut lin);
            let (w, h) = (lin.width, lin.height);
            let img = std::mem::take(&mut lin.planes);
            let mut mu: [Vec<f32>; 3] = Default::default();
            let mut sigma_sq: [Vec<f32>; 3] = Default::default();
            for c in 0..3 {
                work.blur
                    .blur_product(&img[c], Some(&img[c]), &mut sigma_sq[c], w, h);
                work.blur.blur(&img[c], &mut mu[c], w, h);
            }
            scales.push(ReferenceScale {
                width: w,
                height: h,
                img,
                mu,
                sigma_sq,
            });
            lin = next;
        }
        Prepared { scales }
    }

    /// The score of `candidate` over `background` (same size as the
    /// reference) against the reference.
    pub fn score(&self, candidate: &Image, background: u8, work: &mut Workspace) -> f64 {
        let Workspace {
            blur,
            mu,
            sigma_sq,
            sigma12,
            lin,
            lin_next,
        } = work;
        linear_rgb(candidate, background, lin);
        let mut stats = Vec::with_capacity(self.scales.len());
        for (scale, reference) in self.scales.iter().enumerate() {
            if scale > 0 {
                std::mem::swap(lin, lin_next);
            }
            if scale + 1 < self.scales.len() {
                downscale_by_2(lin, lin_next);
            }
            let (w, h) = (lin.width, lin.height);
            assert_eq!((w, h), (reference.width, reference.height));
            positive_xyb(lin);
            let mut sums = [[0.0f64; 6]; 3];
            for (c, sums) in sums.iter_mut().enumerate() {
                let (img1, img2) = (&reference.img[c][..], &lin.planes[c][..w * h]);
                blur.blur_product(img1, Some(img2), sigma12, w, h);
                blur.blur_product(img2, Some(img2), sigma_sq, w, h);
                blur.blur(img2, mu, w, h);
                *sums = error_sums(
                    img1,
                    &reference.mu[c],
                    &reference.sigma_sq[c],
                    img2,
                    mu,
                    sigma_sq,
                    sigma12,
                );
            }
            stats.push(ScaleStats::from_sums(&sums, w * h));
        }
        final_score(&stats)
    }
}

/// How many scales SSIMULACRA 2 computes for a `width` x `height` image:
/// as the reference, it stops when the *previous* scale is under
/// [`MIN_SIDE`] (so the last one may be narrower).
pub(super) fn scale_count(mut width: usize, mut height: usize) -> usize {
    let mut count = 0;
    while count < NUM_SCALES && width >= MIN_SIDE && height >= MIN_SIDE {
        if count > 0 {
            (width, height) = (width.div_ceil(2), height.div_ceil(2));
        }
        count += 1;
    }
    count
}

/// Buffers reused across scales and calls (allocating them afresh costs
/// more in page faults than some of the arithmetic): ~31 bytes per pixel.
pub(super) struct Workspace {
    blur: Blur,
    mu: Vec<f32>,
    sigma_sq: Vec<f32>,
    sigma12: Vec<f32>,
    lin: Planes,
    lin_next: Planes,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            blur: Blur::new(),
            mu: Vec::new(),
            sigma_sq: Vec::new(),
            sigma12: Vec::new(),
            lin: Planes::default(),
            lin_next: Planes::default(),
        }
    }
}

/// Pooled error maps of one scale: per channel, SSIM (mean, 4-norm) and
/// edge difference (artifact mean, 4-norm; detail-lost mean, 4-norm).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ScaleStats {
    ssim: [[f64; 2]; 3],
    edge: [[f64; 4]; 3],
}

impl ScaleStats {
    /// The stats of a scale of `pixels` whose [`error_sums`] per channel
    /// are `sums`.
    pub(super) fn from_sums(sums: &[[f64; 6]; 3], pixels: usize) -> ScaleStats {
        let mut stats = ScaleStats::default();
        for (c, sums) in sums.iter().enumerate() {
            (stats.ssim[c], stats.edge[c]) = pooled(sums, pixels);
        }
        stats
    }
}

/// Means and 4-norms of maps over `pixels` from their sums and sums of
/// 4th powers ([`error_sums`]): SSIM, (artifact, detail lost).
fn pooled(sums: &[f64; 6], pixels: usize) -> ([f64; 2], [f64; 4]) {
    let per_pixel = 1.0 / pixels as f64;
    let mean = |s: f64| s * per_pixel;
    let norm4 = |s: f64| (s * per_pixel).sqrt().sqrt();
    (
        [mean(sums[0]), norm4(sums[1])],
        [mean(sums[2]), norm4(sums[3]), mean(sums[4]), norm4(sums[5])],
    )
}

/// One channel's SSIM' and edge-difference maps over some pixels (a
/// plane, or a row), summed: SSIM' and its 4th power, artifact and its
/// 4th power, detail lost and its 4th power.
#[inline(always)]
pub(super) fn error_sums(
    img1: &[f32],
    mu1: &[f32],
    s11: &[f32],
    img2: &[f32],
    mu2: &[f32],
    s22: &[f32],
    s12: &[f32],
) -> [f64; 6] {
    const C2: f32 = 0.0009;
    let n = img1.len();
    let (mu1, s11, img2, mu2, s22, s12) = (
        &mu1[..n],
        &s11[..n],
        &img2[..n],
        &mu2[..n],
        &s22[..n],
        &s12[..n],
    );
    // Eight f32 partial sums per quantity (independent lanes, so the loop
    // runs in SIMD), flushed into f64 every 256 pixels: the f32 sums never
    // cover more than 32 values, so they lose nothing that matters.
    const LANES: usize = 8;
    let mut sums = [0.0f64; 6];
    let mut part = [[0.0f32; LANES]; 6];
    let mut flush = |part: &mut [[f32; LANES]; 6]| {
        for (s, p) in sums.iter_mut().zip(part.iter_mut()) {
            *s += p.iter().map(|&v| f64::from(v)).sum::<f64>();
            *p = [0.0; LANES];
        }
    };
    let mut start = 0;
    while start < n {
        let len = LANES.min(n - start);
        // A full block of LANES, or the tail padded with a zero-error
        // pixel (identical means, variances and samples: every term 0).
        let block = |v: &[f32], pad: f32| -> [f32; LANES] {
            let mut out = [pad; LANES];
            out[..len].copy_from_slice(&v[start..start + len]);
            out
        };
        let (m1, m2) = (block(mu1, 0.0), block(mu2, 0.0));
        let (v11, v22, v12) = (block(s11, 0.0), block(s22, 0.0), block(s12, 0.0));
        let (i1, i2) = (block(img1, 0.0), block(img2, 0.0));
        for k in 0..LANES {
            let (m11, m22, m12) = (m1[k] * m1[k], m2[k] * m2[k], m1[k] * m2[k]);
            let num_m = 1.0 - (m1[k] - m2[k]) * (m1[k] - m2[k]);
            let num_s = 2.0 * (v12[k] - m12) + C2;
            let denom_s = (v11[k] - m11) + (v22[k] - m22) + C2;
            let d = (1.0 - num_m * num_s / denom_s).max(0.0);
            let e = (1.0 + (i2[k] - m2[k]).abs()) / (1.0 + (i1[k] - m1[k]).abs()) - 1.0;
            let artifact = e.max(0.0);
            let lost = (-e).max(0.0);
            let (d2, a2, l2) = (d * d, artifact * artifact, lost * lost);
            part[0][k] += d;
            part[1][k] += d2 * d2;
            part[2][k] += artifact;
            part[3][k] += a2 * a2;
            part[4][k] += lost;
            part[5][k] += l2 * l2;
        }
        start += len;
        if start % 256 == 0 || start == n {
            flush(&mut part);
        }
    }
    sums
}

/// Published weights: for channel X, Y, B; scale 1:1 .. 1:32; norm 1, 4:
/// (SSIM, artifact, detail lost).
#[rustfmt::skip]
const WEIGHTS: [f64; 108] = [
    // X, scale 1:1
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    // X, scale 1:2
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
    // X, scale 1:4
    0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
    // X, scale 1:8
    0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
    // X, scale 1:16
    0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    // X, scale 1:32
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
    // Y, scale 1:1
    0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    // Y, scale 1:2
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    // Y, scale 1:4
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    // Y, scale 1:8
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
    // Y, scale 1:16
    0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
    // Y, scale 1:32
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    // B, scale 1:1
    0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0,
    // B, scale 1:2
    0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0,
    // B, scale 1:4
    0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
    // B, scale 1:8
    0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    // B, scale 1:16
    95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379,
    // B, scale 1:32
    0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
];

/// The weighted sum of the pooled maps, mapped to the 0..100 scale.
pub(super) fn final_score(stats: &[ScaleStats]) -> f64 {
    let mut sum = 0.0f64;
    // As the reference: the weight index only advances over the scales
    // that exist.
    let mut weights = WEIGHTS.iter();
    for c in 0..3 {
        for scale in stats {
            for n in 0..2 {
                for value in [scale.ssim[c][n], scale.edge[c][n], scale.edge[c][n + 2]] {
                    sum += weights.next().unwrap() * value.abs();
                }
            }
        }
    }
    let s = sum * 0.956_238_261_683_484_4;
    let s = 2.326_765_642_916_932 * s - 0.020_884_521_182_843_837 * s * s
        + 6.248_496_625_763_138e-5 * s * s * s;
    if s > 0.0 {
        100.0 - 10.0 * s.powf(0.627_633_646_783_138_7)
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_coefficients_match_the_reference() {
        // The constants libjxl (and the `ssimulacra2` crate) derive for
        // sigma 1.5, as f32.
        let (n2, d1) = gaussian_coefficients(1.5);
        let n2 = n2.map(|v| v as f32);
        let d1 = d1.map(|v| v as f32);
        assert_eq!(n2, [0.055_295_236, -0.058_836_687, 0.012_955_819]);
        assert_eq!(&d1[..2], &[-1.902_113_1, -1.175_570_5]);
        assert!(d1[2].abs() < 1e-15);
    }

    #[test]
    fn blur_is_a_normalised_gaussian() {
        let (w, h) = (41, 37);
        let mut input = vec![0.0f32; w * h];
        input[18 * w + 20] = 1.0;
        let mut out = Vec::new();
        Blur::new().blur(&input, &mut out, w, h);
        let total: f32 = out.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        let var_x: f32 = out
            .iter()
            .enumerate()
            .map(|(i, v)| v * ((i % w) as f32 - 20.0).powi(2))
            .sum();
        assert!((var_x.sqrt() - 1.5).abs() < 0.1, "{}", var_x.sqrt());
    }

    #[test]
    fn scale_counts() {
        // The size checked is the previous scale's.
        assert_eq!(scale_count(7, 100), 0);
        assert_eq!(scale_count(8, 8), 2);
        assert_eq!(scale_count(16, 16), 3);
        assert_eq!(scale_count(112, 500), 5);
        assert_eq!(scale_count(113, 113), 6);
        assert_eq!(scale_count(4000, 3000), 6);
    }

    #[test]
    fn cbrt_is_accurate() {
        let mut v = 0.003_793_073_4f32;
        while v < 2.0 {
            let (ours, libm) = (cbrt(v), v.cbrt());
            assert!(
                (ours - libm).abs() <= 2.0 * f32::EPSILON * libm,
                "{v}: {ours} {libm}"
            );
            v *= 1.0001;
        }
    }

    #[test]
    fn weights_are_the_published_ones() {
        assert_eq!(WEIGHTS.len(), 3 * NUM_SCALES * 2 * 3);
        // Checksums of libjxl's table: 52 non-zero weights, their sum, and
        // a few by position (channel, scale, norm, map).
        assert_eq!(WEIGHTS.iter().filter(|&&w| w != 0.0).count(), 52);
        let sum: f64 = WEIGHTS.iter().sum();
        assert!((sum - 888.314_836_587_613_4).abs() < 1e-9, "{sum}");
        assert_eq!(WEIGHTS[48], 225.205_153_008_492_74); // Y 1:4 SSIM 1-norm
        assert_eq!(WEIGHTS[73], 0.000_868_055_657_329_169_8); // B 1:1 ringing 1-norm
        assert_eq!(WEIGHTS[100], 171.266_725_589_730_7); // B 1:16 ringing 4-norm
    }
}
