//! SSIMULACRA 2 of a whole image in a few rows of memory: the same score
//! as [`super::ssimulacra2::Prepared`] (the same arithmetic in the same
//! order: the reference implementation's), computed row by row instead of
//! plane by plane, so that checking a candidate against a large image
//! costs ~6 bytes per pixel (the next scale's linear RGB, a quarter of the
//! image, for both images) instead of ~80.
//!
//! Per scale, rows arrive in batches of [`LANES`] (the horizontal blur's
//! batch): linear RGB (from the 8-bit images at the first scale, from the
//! previous scale's halving after it) -> halved into the next scale's
//! planes -> XYB -> the five blurred quantities per channel (`mu1`,
//! `mu2`, `sigma11`, `sigma22`, `sigma12`): the horizontal pass on the
//! batch, then the vertical recursion as far as the rows received allow
//! (row `n` needs input rows up to `n + 4`) -> the error maps of each
//! finished row, summed. Nothing about the reference is kept between
//! candidates: it is recomputed with each (about 1.6x the CPU of scoring
//! against a prepared reference, for a fraction of the memory).

use super::blur::{Horizontal, VerticalState, LANES};
use super::ssimulacra2::{
    error_sums, final_score, linear_rgb_row, positive_xyb_row, scale_count, Planes, ScaleStats,
};
use crate::codecs::Image;

/// Rows of one batch, ring slots: a vertical step reads up to two batches
/// back (row `n - 6`) and the batch just received (row `n + 4`).
const SLOTS: usize = 4;

/// The five blurred quantities per channel: `mu1`, `mu2`, `sigma11`,
/// `sigma22`, `sigma12`.
const QUANTITIES: usize = 5;

/// Buffers of a streamed score, reused across calls.
pub(super) struct StreamWork {
    /// Per channel, the rows of the last [`SLOTS`] batches: reference,
    /// candidate. A batch arrives in its slot as linear RGB and is turned
    /// into XYB there (the blurs read it, and the error maps of row `n`
    /// need row `n`).
    xyb: [[Vec<f32>; 3]; 2],
    /// Per channel and quantity, the horizontally blurred rows of the
    /// last [`SLOTS`] batches.
    blurred: Vec<Vec<f32>>,
    /// Per channel and quantity, the vertical recursion.
    vertical: Vec<VerticalState>,
    horizontal: Horizontal,
    /// Per channel and quantity, the finished row.
    finished: Vec<Vec<f32>>,
    /// The next scales' linear RGB: reference, candidate.
    next: [Planes; 2],
    current: [Planes; 2],
}

impl StreamWork {
    pub fn new() -> StreamWork {
        StreamWork {
            xyb: Default::default(),
            blurred: (0..3 * QUANTITIES).map(|_| Vec::new()).collect(),
            vertical: (0..3 * QUANTITIES).map(|_| VerticalState::new()).collect(),
            horizontal: Horizontal::new(),
            finished: (0..3 * QUANTITIES).map(|_| Vec::new()).collect(),
            next: Default::default(),
            current: Default::default(),
        }
    }
}

/// The score of `candidate` against `reference` (same size, at least
/// [`super::ssimulacra2::MIN_SIDE`] on each side), both over
/// `background` (see `linear_rgb`).
pub(super) fn score(
    reference: &Image,
    candidate: &Image,
    background: u8,
    work: &mut StreamWork,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if super::blur::has_fma() {
        // The core's one `unsafe` outside the codecs' FFI besides the
        // blur's (see Cargo.toml): calling a function compiled for CPU
        // features.
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2 and FMA (checked at run time just
        // above), which is all `score_fma` requires.
        return unsafe { score_fma(reference, candidate, background, work) };
    }
    score_any(reference, candidate, background, work)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn score_fma(reference: &Image, candidate: &Image, background: u8, work: &mut StreamWork) -> f64 {
    score_any(reference, candidate, background, work)
}

/// Where a scale's rows come from.
enum Source<'a> {
    /// The 8-bit images (the first scale).
    Images(&'a Image, &'a Image, u8),
    /// The previous scale's halving.
    Planes,
}

#[inline(always)]
fn score_any(reference: &Image, candidate: &Image, background: u8, work: &mut StreamWork) -> f64 {
    let (width, height) = (reference.width as usize, reference.height as usize);
    let count = scale_count(width, height);
    let mut stats = Vec::with_capacity(count);
    let (mut w, mut h) = (width, height);
    for scale in 0..count {
        if scale > 0 {
            std::mem::swap(&mut work.current, &mut work.next);
            (w, h) = (work.current[0].width, work.current[0].height);
        }
        let halve = scale + 1 < count;
        let source = if scale == 0 {
            Source::Images(reference, candidate, background)
        } else {
            Source::Planes
        };
        stats.push(score_scale(w, h, &source, halve, work));
    }
    final_score(&stats)
}

/// One scale, `width` x `height`, its rows from `source`; halved into
/// `work.next` for the next scale if `halve`.
#[inline(always)]
fn score_scale(
    width: usize,
    height: usize,
    source: &Source<'_>,
    halve: bool,
    work: &mut StreamWork,
) -> ScaleStats {
    let slot_len = LANES * width;
    for plane in work.xyb.iter_mut().flatten() {
        plane.resize(SLOTS * slot_len, 0.0);
    }
    for rows in &mut work.blurred {
        rows.resize(SLOTS * slot_len, 0.0);
    }
    for state in &mut work.vertical {
        state.reset(width);
    }
    for row in &mut work.finished {
        row.resize(width, 0.0);
    }
    if halve {
        for next in &mut work.next {
            next.width = width.div_ceil(2);
            next.height = height.div_ceil(2);
            for plane in &mut next.planes {
                plane.resize(next.width * next.height, 0.0);
            }
        }
    }
    let mut sums = [[0.0f64; 6]; 3];
    // The next vertical step to run.
    let mut step = VerticalState::FIRST_STEP;
    let mut y0 = 0;
    while y0 < height {
        let rows = LANES.min(height - y0);
        let slot = (y0 / LANES) % SLOTS;
        // Linear RGB rows of both images.
        let batch = slot * slot_len..slot * slot_len + rows * width;
        for (side, ring) in work.xyb.iter_mut().enumerate() {
            let [r, g, b] = ring.each_mut().map(|plane| &mut plane[batch.clone()]);
            for lane in 0..rows {
                let y = y0 + lane;
                let row = lane * width..(lane + 1) * width;
                let (r, g, b) = (&mut r[row.clone()], &mut g[row.clone()], &mut b[row]);
                match source {
                    Source::Images(reference, candidate, background) => {
                        let img = if side == 0 { reference } else { candidate };
                        linear_rgb_row(img, y, *background, [r, g, b]);
                    }
                    Source::Planes => {
                        let planes = &work.current[side].planes;
                        r.copy_from_slice(&planes[0][y * width..][..width]);
                        g.copy_from_slice(&planes[1][y * width..][..width]);
                        b.copy_from_slice(&planes[2][y * width..][..width]);
                    }
                }
            }
            if halve {
                halve_rows([&*r, &*g, &*b], rows, y0, width, &mut work.next[side]);
            }
            positive_xyb_row(r, g, b);
        }
        // The horizontal pass of every quantity on the batch.
        for c in 0..3 {
            let (img1, img2) = (
                &work.xyb[0][c][batch.clone()],
                &work.xyb[1][c][batch.clone()],
            );
            let inputs: [(&[f32], Option<&[f32]>); QUANTITIES] = [
                (img1, None),
                (img2, None),
                (img1, Some(img1)),
                (img2, Some(img2)),
                (img1, Some(img2)),
            ];
            for (q, (a, b)) in inputs.into_iter().enumerate() {
                let out = &mut work.blurred[c * QUANTITIES + q][slot * slot_len..][..rows * width];
                work.horizontal.run(a, b, out, width);
            }
        }
        y0 += rows;
        // Every vertical step whose lower input row has arrived (or lies
        // below the image).
        let last = if y0 == height {
            height as isize - 1
        } else {
            y0 as isize - 1 - (VerticalState::inputs(0).1)
        };
        while step <= last {
            vertical_step(step, width, height, work, &mut sums);
            step += 1;
        }
    }
    ScaleStats::from_sums(&sums, width * height)
}

/// Vertical step `n` of every quantity, and the error maps of row `n`
/// when it is in the image.
#[inline(always)]
fn vertical_step(
    n: isize,
    width: usize,
    height: usize,
    work: &mut StreamWork,
    sums: &mut [[f64; 6]; 3],
) {
    let slot_len = LANES * width;
    // Where row `y` of a ring of batches is, if it is in the image.
    let at = |y: isize| -> Option<usize> {
        (y >= 0 && (y as usize) < height).then(|| {
            let y = y as usize;
            ((y / LANES) % SLOTS) * slot_len + (y % LANES) * width
        })
    };
    let (top, bottom) = VerticalState::inputs(n);
    let (top, bottom) = (at(top), at(bottom));
    for ((rows, state), finished) in work
        .blurred
        .iter()
        .zip(&mut work.vertical)
        .zip(&mut work.finished)
    {
        let row = |start: Option<usize>| start.map(|s| &rows[s..s + width]);
        let out = (n >= 0).then_some(&mut finished[..]);
        state.step(row(top), row(bottom), out);
    }
    let Some(at_n) = at(n) else {
        return;
    };
    for (c, sums) in sums.iter_mut().enumerate() {
        let q = |i: usize| &work.finished[c * QUANTITIES + i][..width];
        let img1 = &work.xyb[0][c][at_n..at_n + width];
        let img2 = &work.xyb[1][c][at_n..at_n + width];
        let row = error_sums(img1, q(0), q(2), img2, q(1), q(3), q(4));
        for (s, r) in sums.iter_mut().zip(row) {
            *s += r;
        }
    }
}

/// Halves the batch's `rows` rows (from row `y0` of a `width`-wide image)
/// into `next`, as `downscale_by_2` does: 2x2 averages, the last row and
/// column repeated when a side is odd. `y0` is even (batches are
/// [`LANES`] rows), so pairs never straddle two batches.
#[inline(always)]
fn halve_rows(batch: [&[f32]; 3], rows: usize, y0: usize, width: usize, next: &mut Planes) {
    let out_w = next.width;
    for (input, out) in batch.iter().zip(&mut next.planes) {
        for pair in (0..rows).step_by(2) {
            let row0 = &input[pair * width..][..width];
            let row1 = &input[(pair + 1).min(rows - 1) * width..][..width];
            let out = &mut out[((y0 + pair) / 2) * out_w..][..out_w];
            for (ox, o) in out.iter_mut().enumerate() {
                let (x0, x1) = (2 * ox, (2 * ox + 1).min(width - 1));
                *o = (row0[x0] + row0[x1] + row1[x0] + row1[x1]) * 0.25;
            }
        }
    }
}
