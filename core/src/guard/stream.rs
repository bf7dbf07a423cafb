//! SSIMULACRA 2 of a whole image in a few rows of memory: the same score
//! as [`super::ssimulacra2::Prepared`] (the same arithmetic in the same
//! order: the reference implementation's), computed row by row instead of
//! plane by plane, so that checking a candidate against a large image
//! costs a few rows per scale (~2 KB per pixel of width at the first
//! scale, twice that over all six) instead of ~80 bytes per pixel.
//!
//! The six scales run as a cascade: rows arrive at a scale in batches of
//! [`LANES`] (the horizontal blur's batch) as linear RGB (from the 8-bit
//! images at the first scale, from the previous scale's halving after it)
//! -> halved into the next scale's current batch -> XYB -> the five
//! blurred quantities per channel (`mu1`, `mu2`, `sigma11`, `sigma22`,
//! `sigma12`): the horizontal pass on the batch, then the vertical
//! recursion as far as the rows received allow (row `n` needs input rows
//! up to `n + 4`) -> the error maps of each finished row, summed. A scale
//! runs its batch as soon as the one above has halved enough rows into it
//! (two of its batches), so no scale's planes are ever held whole (they
//! were ~6 bytes per pixel: the second scale's linear RGB, for both
//! images, twice over when kept between candidates). Nothing about the
//! reference is kept between candidates: it is recomputed with each
//! (about 1.6x the CPU of scoring against a prepared reference, for a
//! fraction of the memory).

use super::blur::{Horizontal, VerticalState, LANES};
use super::ssimulacra2::{
    error_sums, final_score, linear_rgb_row, positive_xyb_row, scale_count, ScaleStats,
};
use crate::codecs::Image;

/// Ring slots of [`LANES`] rows each: the batch just received and the
/// two before it. Batch `k`'s vertical steps (rows `8k - 4` to `8k + 3`)
/// read rows `n - 6` (down to `8k - 10`, in batch `k - 2`) and `n + 4`
/// (batch `k`), and the error maps read row `n` (batch `k - 1` or `k`).
const SLOTS: usize = 3;

/// The five blurred quantities per channel: `mu1`, `mu2`, `sigma11`,
/// `sigma22`, `sigma12`.
const QUANTITIES: usize = 5;

/// Buffers of a streamed score, reused across calls.
pub(super) struct StreamWork {
    /// One per scale, the first scale first.
    scales: Vec<ScaleWork>,
    horizontal: Horizontal,
}

impl StreamWork {
    pub fn new() -> StreamWork {
        StreamWork {
            scales: Vec::new(),
            horizontal: Horizontal::new(),
        }
    }
}

/// One scale's rows in flight and its running sums.
struct ScaleWork {
    width: usize,
    height: usize,
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
    /// Per channel and quantity, the finished row.
    finished: Vec<Vec<f32>>,
    /// The first row of the batch being filled, and how many of its rows
    /// have arrived.
    y0: usize,
    filled: usize,
    /// The next vertical step to run.
    step: isize,
    /// Per channel, the error maps' sums (see `error_sums`).
    sums: [[f64; 6]; 3],
}

impl ScaleWork {
    fn new() -> ScaleWork {
        ScaleWork {
            width: 0,
            height: 0,
            xyb: Default::default(),
            blurred: (0..3 * QUANTITIES).map(|_| Vec::new()).collect(),
            vertical: (0..3 * QUANTITIES).map(|_| VerticalState::new()).collect(),
            finished: (0..3 * QUANTITIES).map(|_| Vec::new()).collect(),
            y0: 0,
            filled: 0,
            step: VerticalState::FIRST_STEP,
            sums: [[0.0; 6]; 3],
        }
    }

    /// Starts a `width` x `height` scale (the buffers keep their memory).
    fn reset(&mut self, width: usize, height: usize) {
        (self.width, self.height) = (width, height);
        let ring = SLOTS * LANES * width;
        for rows in self.xyb.iter_mut().flatten().chain(&mut self.blurred) {
            rows.resize(ring, 0.0);
        }
        for state in &mut self.vertical {
            state.reset(width);
        }
        for row in &mut self.finished {
            row.resize(width, 0.0);
        }
        (self.y0, self.filled) = (0, 0);
        self.step = VerticalState::FIRST_STEP;
        self.sums = [[0.0; 6]; 3];
    }

    /// Where the batch being filled starts in the rings.
    fn batch_start(&self) -> usize {
        ((self.y0 / LANES) % SLOTS) * LANES * self.width
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

#[inline(always)]
fn score_any(reference: &Image, candidate: &Image, background: u8, work: &mut StreamWork) -> f64 {
    let (width, height) = (reference.width as usize, reference.height as usize);
    let count = scale_count(width, height);
    if work.scales.len() < count {
        work.scales.resize_with(count, ScaleWork::new);
    }
    let scales = &mut work.scales[..count];
    let (mut w, mut h) = (width, height);
    for scale in scales.iter_mut() {
        scale.reset(w, h);
        (w, h) = (w.div_ceil(2), h.div_ceil(2));
    }
    // The first scale's rows, a batch at a time, from the 8-bit images;
    // each batch runs down the cascade as far as it fills batches below.
    let mut y0 = 0;
    while y0 < height {
        let rows = LANES.min(height - y0);
        let first = &mut scales[0];
        let start = first.batch_start();
        for (side, ring) in first.xyb.iter_mut().enumerate() {
            let img = if side == 0 { reference } else { candidate };
            let [r, g, b] = ring.each_mut();
            for lane in 0..rows {
                let row = start + lane * width..start + (lane + 1) * width;
                let (r, g, b) = (&mut r[row.clone()], &mut g[row.clone()], &mut b[row]);
                linear_rgb_row(img, y0 + lane, background, [r, g, b]);
            }
        }
        first.filled = rows;
        run_batch(scales, &mut work.horizontal);
        y0 += rows;
    }
    let stats: Vec<ScaleStats> = scales
        .iter()
        .map(|scale| ScaleStats::from_sums(&scale.sums, scale.width * scale.height))
        .collect();
    final_score(&stats)
}

/// Runs the batch that has arrived at the first of `scales` (linear RGB in
/// its ring, `filled` rows from `y0`): halves it into the next scale's
/// batch, turns it into XYB, blurs it, runs every vertical step it allows
/// and sums the finished rows; then, down the cascade, each next scale's
/// batch that this one filled (or ended).
///
/// A loop, not a recursion: a recursive function is not inlined, and
/// outside [`score_fma`] its arithmetic would be compiled without FMA
/// (each `mul_add` a call into a software fused multiply-add: 4x slower in
/// the test profile, where that happened).
#[inline(always)]
fn run_batch(scales: &mut [ScaleWork], horizontal: &mut Horizontal) {
    let mut level = 0;
    while let Some((this, below)) = scales[level..].split_first_mut() {
        let (width, height, rows) = (this.width, this.height, this.filled);
        let start = this.batch_start();
        let batch = start..start + rows * width;
        let mut next = below.first_mut();
        for (side, ring) in this.xyb.iter_mut().enumerate() {
            let [r, g, b] = ring.each_mut().map(|plane| &mut plane[batch.clone()]);
            if let Some(next) = next.as_deref_mut() {
                let at = next.batch_start() + next.filled * next.width;
                let [nr, ng, nb] = next.xyb[side].each_mut().map(|plane| &mut plane[at..]);
                halve_rows([&*r, &*g, &*b], rows, width, [nr, ng, nb], next.width);
            }
            positive_xyb_row(r, g, b);
        }
        if let Some(next) = next {
            next.filled += rows.div_ceil(2);
        }
        // The horizontal pass of every quantity on the batch.
        for c in 0..3 {
            let (img1, img2) = (
                &this.xyb[0][c][batch.clone()],
                &this.xyb[1][c][batch.clone()],
            );
            let inputs: [(&[f32], Option<&[f32]>); QUANTITIES] = [
                (img1, None),
                (img2, None),
                (img1, Some(img1)),
                (img2, Some(img2)),
                (img1, Some(img2)),
            ];
            for (q, (a, b)) in inputs.into_iter().enumerate() {
                let out = &mut this.blurred[c * QUANTITIES + q][start..][..rows * width];
                horizontal.run(a, b, out, width);
            }
        }
        this.y0 += rows;
        this.filled = 0;
        // Every vertical step whose lower input row has arrived (or lies
        // below the image).
        let last = if this.y0 == height {
            height as isize - 1
        } else {
            this.y0 as isize - 1 - (VerticalState::inputs(0).1)
        };
        while this.step <= last {
            vertical_step(this.step, this);
            this.step += 1;
        }
        let finished = this.y0 == height;
        match below.first() {
            Some(next) if next.filled == LANES || (finished && next.filled > 0) => level += 1,
            _ => return,
        }
    }
}

/// Vertical step `n` of every quantity of `scale`, and the error maps of
/// row `n` when it is in the image.
#[inline(always)]
fn vertical_step(n: isize, scale: &mut ScaleWork) {
    let (width, height) = (scale.width, scale.height);
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
    for ((rows, state), finished) in scale
        .blurred
        .iter()
        .zip(&mut scale.vertical)
        .zip(&mut scale.finished)
    {
        let row = |start: Option<usize>| start.map(|s| &rows[s..s + width]);
        let out = (n >= 0).then_some(&mut finished[..]);
        state.step(row(top), row(bottom), out);
    }
    let Some(at_n) = at(n) else {
        return;
    };
    for (c, sums) in scale.sums.iter_mut().enumerate() {
        let q = |i: usize| &scale.finished[c * QUANTITIES + i][..width];
        let img1 = &scale.xyb[0][c][at_n..at_n + width];
        let img2 = &scale.xyb[1][c][at_n..at_n + width];
        let row = error_sums(img1, q(0), q(2), img2, q(1), q(3), q(4));
        for (s, r) in sums.iter_mut().zip(row) {
            *s += r;
        }
    }
}

/// Halves the batch's `rows` rows (`width` wide) into the rows of `out`
/// (`out_width` wide), as `downscale_by_2` does: 2x2 averages, the last
/// row and column repeated when a side is odd. Batches start at even rows
/// ([`LANES`] is even), so pairs never straddle two batches, and the
/// halved rows of two batches fill one batch of the next scale.
#[inline(always)]
fn halve_rows(
    batch: [&[f32]; 3],
    rows: usize,
    width: usize,
    out: [&mut [f32]; 3],
    out_width: usize,
) {
    for (input, out) in batch.iter().zip(out) {
        for pair in (0..rows).step_by(2) {
            let row0 = &input[pair * width..][..width];
            let row1 = &input[(pair + 1).min(rows - 1) * width..][..width];
            let out = &mut out[(pair / 2) * out_width..][..out_width];
            for (ox, o) in out.iter_mut().enumerate() {
                let (x0, x1) = (2 * ox, (2 * ox + 1).min(width - 1));
                *o = (row0[x0] + row0[x1] + row1[x0] + row1[x1]) * 0.25;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl StreamWork {
        /// Bytes of the row buffers held (the horizontal blur's own
        /// scratch is a row or two and not counted).
        fn held_bytes(&self) -> usize {
            self.scales
                .iter()
                .map(|scale| {
                    let rows = scale.xyb.iter().flatten().chain(&scale.blurred);
                    let rows: usize = rows.chain(&scale.finished).map(Vec::capacity).sum();
                    rows * std::mem::size_of::<f32>()
                })
                .sum()
        }
    }

    fn image(width: u32, height: u32, seed: u32) -> Image {
        let pixels = (0..width * height * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect();
        Image::rgb(width, height, pixels)
    }

    /// What a streamed score holds grows with the image's width, not its
    /// height: rows of each scale (three batches of eight, 21 planes), no
    /// plane of any scale whole. Ten times the rows, the same bytes.
    #[test]
    fn the_memory_held_is_rows_not_planes() {
        let held = |width: u32, height: u32| {
            let mut work = StreamWork::new();
            let score = score(
                &image(width, height, 1),
                &image(width, height, 2),
                0,
                &mut work,
            );
            assert!(score.is_finite());
            work.held_bytes()
        };
        let short = held(320, 240);
        assert_eq!(held(320, 2400), short, "bytes held vs height");
        // The first scale's rings and its halves' below it.
        let first_scale = 21 * SLOTS * LANES * 320 * 4;
        assert!(
            short >= first_scale && short < 2 * first_scale + 64 * 1024,
            "{short} bytes"
        );
        // Less than one f32 plane of the tall image (the cascade replaced
        // the second scale's RGB planes of both images: 1.5 of them).
        assert!(short < 320 * 2400 * 4, "{short} bytes");
    }
}
