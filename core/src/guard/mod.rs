//! The visual-quality guard: how different a converted image looks from
//! its original (SSIMULACRA 2), and the per-image search for the lowest
//! encoder quality that still looks the same.
//!
//! - [`score`] / [`Reference::score`]: SSIMULACRA 2 on its 0-100 scale
//!   (100 identical; ~80 "can't tell them apart side by side at 1:1", the
//!   threshold `../shared/notes/compression.md` measures with).
//! - [`smallest_passing`]: a bounded search over an encoder's quality for
//!   the smallest output that scores at or above a threshold.
//!
//! Nothing here is wired into [`crate::transcode()`]; the search takes
//! the encoder and decoder as closures, so it works for any lossy codec.
//!
//! # Transparency
//!
//! An image with alpha is scored as it is *seen*: both images are
//! composited over black and over white (in the sRGB encoding, rounded to
//! 8 bits, as a browser does) and the worse of the two scores is returned.
//! Colour under fully transparent pixels therefore does not count (an
//! encoder may change it freely), while an alpha error counts as much as
//! the colour error it causes on either background. (libjxl's own tool
//! blends on a single grey; two extremes are stricter.) Scoring an image
//! with alpha costs twice as much.
//!
//! # Fidelity to the reference implementation
//!
//! Written from the published algorithm (see `ssimulacra2.rs`), checked
//! against the `ssimulacra2` crate (0.5.1), the reference implementation
//! the project's targets are stated in. The blur is the reference's own
//! recursive filter in `f32`, bit for bit (`blur.rs`): its rounding
//! errors, which build up along rows and columns and lower the reference's
//! scores by up to 2 points on big, high-quality images, are the same
//! here, so a score of the whole image is the reference's to within
//! rounding elsewhere (at most 0.062 on the corpus photos, mean 0.013;
//! `core/examples/score_agreement.rs`). The guard therefore needs only a
//! tenth of a point of margin where it scores whole images (an exact
//! blur, as used before, scored up to 1 point higher and needed a whole
//! point of margin, which cost 3-5 points of savings).
//!
//! # Cost, and the cheap mode
//!
//! Everything about the reference is computed once ([`Reference::new`]),
//! so each candidate costs one XYB conversion and three blurs per channel
//! and scale. Single-threaded CPU time on the corpus (release build; the
//! blur compiled for AVX2 + FMA, picked at run time): ~50 ms per
//! megapixel per candidate, ~30 ms/MP to prepare the reference, twice
//! that with alpha (two backgrounds). For scale, libwebp at method 4 with sharp YUV takes
//! ~115 ms/MP per encode; the `ssimulacra2` crate takes 400-1000 ms/MP
//! per score (it calls `fmaf` for every `mul_add` on CPUs without FMA).
//! Memory: ~50 bytes per pixel for the prepared reference plus ~27 while
//! a candidate is scored (~77 in all; ~132 with alpha).
//!
//! [`Reference::sampled`] scores a fixed sample of full-resolution tiles
//! instead of the whole image, which bounds cost and memory whatever the
//! image size; [`smallest_passing`] does so above [`DEFAULT_MAX_PIXELS`].
//! The sample scores a little high (+0.7 on average with 1 MP of tiles).
//! [`Reference::downscaled`] shows why the obvious alternative is not
//! used: downscaling averages compression noise away and inflates scores
//! (+4 at 1 MP, +6 at 0.5 MP).

mod blur;
mod search;
mod ssimulacra2;
mod stream;

use crate::codecs::Image;
use crate::KeepReason;

pub use search::{first_probe, search, smallest_passing, smallest_passing_against, Found};

use std::borrow::Cow;
use std::sync::Mutex;

use ssimulacra2::{Prepared, Workspace, MIN_SIDE};
use stream::StreamWork;

/// The largest number of pixels [`smallest_passing`] scores whole:
/// bigger images are scored on a sample of full-resolution tiles of
/// about this many pixels (see [`Reference::sampled`]), which caps the
/// guard at ~80 MB (~130 MB with alpha) and ~50 ms per candidate.
pub const DEFAULT_MAX_PIXELS: u64 = 1_000_000;

/// The largest image the module checks whole ([`Reference::streamed`]:
/// its memory is a few rows, its CPU ~55 ms per megapixel per candidate);
/// larger ones are checked on [`DEFAULT_MAX_PIXELS`] of tiles, which
/// bounds the CPU per candidate.
pub const WHOLE_MAX_PIXELS: u64 = 4_200_000;

/// Side of the square tiles of [`Reference::sampled`]: a multiple of 32,
/// so that SSIMULACRA 2's five halvings never mix two tiles in one pixel.
pub const TILE: u32 = 256;

/// The reference image, prepared once to score any number of candidates.
/// A streamed one ([`Reference::streamed`]) borrows the image it scores
/// against (`'a`) rather than keeping a copy: the conversion holds it
/// anyway, and a copy was 3-4 bytes per pixel of each conversion's peak.
pub struct Reference<'a> {
    /// The size candidates must have.
    width: u32,
    height: u32,
    /// What of the candidate is scored.
    sampling: Sampling,
    /// Per background (the reference's own colours if it is opaque; over
    /// black and over white if it has alpha), the prepared reference;
    /// none when streamed.
    views: Vec<(u8, Prepared)>,
    /// Scoring buffers, kept between candidates.
    work: Mutex<Workspace>,
    /// The reference's pixels, when streamed ([`Reference::streamed`]).
    /// The streamed score's buffers (a few rows per scale) live only
    /// while it runs: between candidates the memory goes to the encoder
    /// (the same thread's allocator hands it back), so a conversion's
    /// peak is the larger of the two, not their sum.
    streamed: Option<Cow<'a, Image>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Sampling {
    /// The whole image.
    Full,
    /// The whole image, downscaled to this size.
    Downscaled(u32, u32),
    /// The whole image repeated `columns` x `rows` times, every other copy
    /// mirrored (so that no seam appears): see [`MIN_SCORED_SIDE`].
    Mirrored { columns: u32, rows: u32 },
    /// These [`TILE`]-sized tiles (top-left corners), side by side,
    /// `columns` per row.
    Tiles {
        corners: Vec<(u32, u32)>,
        columns: u32,
    },
}

impl Sampling {
    /// Tiles of `img` when it has more than `max_pixels` (see
    /// [`Reference::sampled`]), else the whole image.
    fn tiles(img: &Image, max_pixels: u64) -> Sampling {
        tile_grid(img.width, img.height, max_pixels).map_or(Sampling::Full, |(corners, columns)| {
            Sampling::Tiles { corners, columns }
        })
    }

    /// What is scored of `img` (the reference or a candidate).
    fn apply<'a>(&self, img: &'a Image) -> Result<Cow<'a, Image>, KeepReason> {
        Ok(match self {
            Sampling::Full => Cow::Borrowed(img),
            Sampling::Downscaled(w, h) => Cow::Owned(crate::resize::resize(img, *w, *h)?),
            Sampling::Tiles { corners, columns } => {
                Cow::Owned(mosaic(img, corners, *columns, TILE))
            }
            Sampling::Mirrored { columns, rows } => Cow::Owned(mirrored(img, *columns, *rows)),
        })
    }
}

/// SSIMULACRA 2 score of `candidate` against `reference`, full
/// resolution: 100 for identical images, ~80 "indistinguishable side by
/// side at 1:1", lower is worse (it can go below 0 for garbage).
///
/// Errors (`KeepReason::Unsupported`) when the sizes differ or a pixel
/// buffer does not match its size. Images with a side under
/// [`MIN_SCORED_SIDE`] are scored as a mirrored mosaic of themselves.
pub fn score(reference: &Image, candidate: &Image) -> Result<f64, KeepReason> {
    Reference::new(reference)?.score(candidate)
}

impl<'a> Reference<'a> {
    /// Prepares `reference` for scoring candidates whole, at full
    /// resolution.
    pub fn new(reference: &Image) -> Result<Reference<'static>, KeepReason> {
        Reference::prepare(reference, Sampling::Full)
    }

    /// Prepares `reference` for scoring a sample of it when it has more
    /// than `max_pixels`: `max_pixels / 256²` full-resolution tiles of
    /// 256x256 (at least one), spread evenly over the image in a grid, put
    /// side by side into one mosaic image, and scored as such. Artifacts
    /// are judged at 1:1 as in the full score, on a representative part
    /// of the image; cost and memory are bounded by `max_pixels`. Images
    /// with a side under 256 are scored whole.
    ///
    /// The sample scores a little higher than the whole image: on the
    /// corpus, for WebP candidates scoring 70-90 in full, +0.7 on average
    /// (at most +1.5) with 1 MP of tiles, +1.0 (at most +4) with 0.5 MP.
    /// (Scoring each tile as an image of its own and pooling the error
    /// maps does worse, +1.8: a tile's borders, where the blur sees
    /// zeros, then weigh too much, most of all at the coarse scales.)
    pub fn sampled(reference: &Image, max_pixels: u64) -> Result<Reference<'static>, KeepReason> {
        Reference::prepare(reference, Sampling::tiles(reference, max_pixels))
    }

    /// Prepares `reference` for scoring downscaled (linear-light Lanczos3,
    /// [`crate::resize::resize`]) to at most `max_pixels` when it is
    /// larger (aspect ratio kept; each side stays at least 8).
    ///
    /// Not a substitute for the full score: downscaling averages away
    /// much of the compression noise, so scores come out higher (on the
    /// corpus, WebP candidates scoring 70-90 at full resolution score
    /// ~4 points higher at 1 MP, ~6 at 0.5 MP; see `benches/transcode.rs`).
    /// It answers "does it look the same at this smaller size", which is
    /// the right question only for an image that will be shown smaller.
    pub fn downscaled(
        reference: &Image,
        max_pixels: u64,
    ) -> Result<Reference<'static>, KeepReason> {
        let sampling = scaled_size(reference.width, reference.height, max_pixels)
            .map_or(Sampling::Full, |(w, h)| Sampling::Downscaled(w, h));
        Reference::prepare(reference, sampling)
    }

    /// Prepares `reference` for scoring candidates whole, at full
    /// resolution, as [`Reference::new`] does, but without preparing
    /// anything: each candidate is scored a few rows at a time
    /// (`stream.rs`), the reference's side recomputed with it. The same
    /// scores as [`Reference::new`] (to rounding in the pooled sums) for
    /// a few rows per scale while a score runs (~4 KB per pixel of width)
    /// instead of ~80 bytes per pixel (~130 with alpha), at 1.0-1.2x
    /// its CPU per candidate (the prepared planes of a large image do not
    /// stay in the CPU's caches; the rows do).
    pub fn streamed(reference: &'a Image) -> Result<Reference<'a>, KeepReason> {
        Reference::build(reference, Sampling::Full, true)
    }

    /// [`Reference::sampled`], scored a few rows at a time as
    /// [`Reference::streamed`] is.
    pub fn sampled_streamed(
        reference: &'a Image,
        max_pixels: u64,
    ) -> Result<Reference<'a>, KeepReason> {
        Reference::build(reference, Sampling::tiles(reference, max_pixels), true)
    }

    fn prepare(reference: &Image, sampling: Sampling) -> Result<Reference<'static>, KeepReason> {
        let prepared = Reference::build(reference, sampling, false)?;
        Ok(prepared.into_owned())
    }

    /// The reference for `sampling`: prepared, or kept as pixels to be
    /// `streamed`.
    fn build(
        reference: &'a Image,
        sampling: Sampling,
        streamed: bool,
    ) -> Result<Reference<'a>, KeepReason> {
        check_image(reference, "reference")?;
        let sampling = match sampling {
            Sampling::Full => mirror_grid(reference.width, reference.height).map_or(
                Sampling::Full,
                |(columns, rows)| Sampling::Mirrored { columns, rows },
            ),
            other => other,
        };
        let image = sampling.apply(reference)?;
        check_side(&image, "reference")?;
        let mut work = Workspace::new();
        let (views, streamed) = if streamed {
            (Vec::new(), Some(image))
        } else {
            let backgrounds: &[u8] = if reference.has_alpha { &[0, 255] } else { &[0] };
            let views = backgrounds
                .iter()
                .map(|&bg| (bg, Prepared::new(&image, bg, &mut work)))
                .collect();
            (views, None)
        };
        Ok(Reference {
            width: reference.width,
            height: reference.height,
            sampling,
            views,
            work: Mutex::new(work),
            streamed,
        })
    }

    /// The same reference with its own copy of the pixels it borrowed, if
    /// any (a streamed one of an image that is about to move).
    pub fn into_owned(self) -> Reference<'static> {
        Reference {
            width: self.width,
            height: self.height,
            sampling: self.sampling,
            views: self.views,
            work: self.work,
            streamed: self.streamed.map(|pixels| Cow::Owned(pixels.into_owned())),
        }
    }

    /// The size candidates must have (the reference's).
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The number of pixels each score covers.
    pub fn scored_pixels(&self) -> u64 {
        match &self.sampling {
            Sampling::Full => u64::from(self.width) * u64::from(self.height),
            Sampling::Downscaled(w, h) => u64::from(*w) * u64::from(*h),
            Sampling::Tiles { corners, .. } => corners.len() as u64 * u64::from(TILE * TILE),
            Sampling::Mirrored { columns, rows } => {
                u64::from(self.width * columns) * u64::from(self.height * rows)
            }
        }
    }

    /// SSIMULACRA 2 score of `candidate` (same size as the reference).
    /// With alpha on either side, the worse of the on-black and on-white
    /// scores.
    pub fn score(&self, candidate: &Image) -> Result<f64, KeepReason> {
        check_image(candidate, "candidate")?;
        if (candidate.width, candidate.height) != (self.width, self.height) {
            return Err(KeepReason::Unsupported(format!(
                "guard: candidate is {}x{}, reference {}x{}",
                candidate.width, candidate.height, self.width, self.height
            )));
        }
        let candidate = self.sampling.apply(candidate)?;
        check_side(&candidate, "candidate")?;
        if let Some(reference) = &self.streamed {
            let mut work = StreamWork::new();
            let backgrounds: &[u8] = if reference.has_alpha || candidate.has_alpha {
                &[0, 255]
            } else {
                &[0]
            };
            return Ok(backgrounds
                .iter()
                .map(|&bg| stream::score(reference, &candidate, bg, &mut work))
                .fold(f64::INFINITY, f64::min));
        }
        // A panic while scoring (a bug) poisons the lock; the buffers are
        // still fine to reuse.
        let work = &mut *self.work.lock().unwrap_or_else(|e| e.into_inner());
        let mut score_on =
            |prepared: &Prepared, background: u8| prepared.score(&candidate, background, work);
        Ok(match &self.views[..] {
            // An opaque reference against a candidate with alpha: the
            // candidate over both backgrounds.
            [(_, prepared)] if candidate.has_alpha => {
                score_on(prepared, 0).min(score_on(prepared, 255))
            }
            views => views
                .iter()
                .map(|(bg, prepared)| score_on(prepared, *bg))
                .fold(f64::INFINITY, f64::min),
        })
    }
}

fn check_image(img: &Image, what: &str) -> Result<(), KeepReason> {
    if !img.is_consistent() || img.width == 0 || img.height == 0 {
        return Err(KeepReason::Unsupported(format!(
            "guard: {what} pixel buffer does not match its size"
        )));
    }
    Ok(())
}

/// What is scored must be at least 8x8 (after mirroring, only a long thin
/// strip can be smaller).
fn check_side(img: &Image, what: &str) -> Result<(), KeepReason> {
    if (img.width as usize) < MIN_SIDE || (img.height as usize) < MIN_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "guard: {what} is {}x{}, SSIMULACRA 2 needs at least {MIN_SIDE}x{MIN_SIDE}",
            img.width, img.height
        )));
    }
    Ok(())
}

/// The smallest side at which SSIMULACRA 2 computes all six of its scales
/// (it halves the image five times and stops under 8 pixels). Below it the
/// published algorithm, like its reference code, applies the weights of
/// the scales that exist in order, i.e. to the *wrong* scales: a 100x67
/// thumbnail's q100 WebP scores 79.9, a 64x64 one 60.6. Smaller images
/// are therefore scored as a mosaic of mirrored copies of themselves at
/// least this wide and high, where every scale exists and the artifacts
/// are those of the image at 1:1.
pub const MIN_SCORED_SIDE: u32 = 128;

/// The most pixels a mirrored mosaic may have; a strip too long for it is
/// scored as it is (at fewer scales).
const MAX_MIRRORED_PIXELS: u64 = 2_000_000;

/// Copies per row and per column to mirror a `width` x `height` image into
/// so that both sides reach [`MIN_SCORED_SIDE`], or `None` if it needs
/// none (or would be too large).
fn mirror_grid(width: u32, height: u32) -> Option<(u32, u32)> {
    let copies = |side: u32| MIN_SCORED_SIDE.div_ceil(side.max(1)).max(1);
    let (columns, rows) = (copies(width), copies(height));
    let pixels = u64::from(width * columns) * u64::from(height * rows);
    ((columns, rows) != (1, 1) && pixels <= MAX_MIRRORED_PIXELS).then_some((columns, rows))
}

/// `img` repeated `columns` x `rows` times, odd copies flipped (left-right
/// in odd columns, top-bottom in odd rows), so neighbouring copies meet
/// at their own edge pixels.
fn mirrored(img: &Image, columns: u32, rows: u32) -> Image {
    let c = img.channels();
    let (w, h) = (img.width as usize, img.height as usize);
    let (width, height) = (w * columns as usize, h * rows as usize);
    let mut pixels = Vec::with_capacity(width * height * c);
    for y in 0..height {
        let (ty, ly) = (y / h, y % h);
        let sy = if ty % 2 == 1 { h - 1 - ly } else { ly };
        let row = &img.pixels[sy * w * c..(sy + 1) * w * c];
        for tx in 0..columns as usize {
            if tx % 2 == 1 {
                for px in row.chunks_exact(c).rev() {
                    pixels.extend_from_slice(px);
                }
            } else {
                pixels.extend_from_slice(row);
            }
        }
    }
    Image {
        width: width as u32,
        height: height as u32,
        pixels,
        has_alpha: img.has_alpha,
        icc_profile: None,
    }
}

/// The size to score a `width` x `height` image at so that it has at most
/// `max_pixels` (each side at least [`MIN_SIDE`]), or `None` if it is
/// small enough already.
fn scaled_size(width: u32, height: u32, max_pixels: u64) -> Option<(u32, u32)> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= max_pixels {
        return None;
    }
    let factor = (max_pixels as f64 / pixels as f64).sqrt();
    let side = |s: u32| ((f64::from(s) * factor).floor() as u32).clamp(MIN_SIDE as u32, s);
    let size = (side(width), side(height));
    (size != (width, height)).then_some(size)
}

/// Top-left corners of `max_pixels / TILE²` tiles (at least one) in an
/// even grid over a `width` x `height` image, and the grid's number of
/// columns; `None` if the image is small enough to score whole, or has a
/// side shorter than a tile.
fn tile_grid(width: u32, height: u32, max_pixels: u64) -> Option<(Vec<(u32, u32)>, u32)> {
    if u64::from(width) * u64::from(height) <= max_pixels || width < TILE || height < TILE {
        return None;
    }
    let tiles = (max_pixels / u64::from(TILE * TILE)).max(1) as u32;
    // The most tiles within budget that fit without overlap, the grid
    // closest to the image's proportions among those.
    let aspect = f64::from(width) / f64::from(height);
    let (columns, rows) = (1..=(width / TILE).min(tiles))
        .map(|c| (c, (tiles / c).min(height / TILE)))
        .max_by(|&(c1, r1), &(c2, r2)| {
            let off = |c: u32, r: u32| (f64::from(c) / f64::from(r) / aspect).ln().abs();
            (c1 * r1)
                .cmp(&(c2 * r2))
                .then(off(c2, r2).total_cmp(&off(c1, r1)))
        })
        .expect("width >= TILE");
    // Spread evenly from edge to edge.
    let spread = |i: u32, n: u32, side: u32| {
        if n == 1 {
            (side - TILE) / 2
        } else {
            (u64::from(i) * u64::from(side - TILE) / u64::from(n - 1)) as u32
        }
    };
    let corners = (0..rows)
        .flat_map(|r| {
            (0..columns).map(move |c| (spread(c, columns, width), spread(r, rows, height)))
        })
        .collect();
    Some((corners, columns))
}

/// A sample of `img` for the quality search: about `max_pixels` of
/// [`TILE`]-sized tiles spread evenly over it, side by side in one image
/// (the same tiles [`Reference::sampled`] scores); `None` if `img` is
/// small enough to be used whole.
///
/// Encoding the sample instead of the whole image costs its share of the
/// pixels; the tiles are aligned to every codec's block grid (256 is a
/// multiple of WebP's 16 and AVIF's 128), so each block the encoder sees
/// is one the whole image has.
pub fn sample(img: &Image, max_pixels: u64) -> Option<Image> {
    tile_grid(img.width, img.height, max_pixels)
        .map(|(corners, columns)| mosaic(img, &corners, columns, TILE))
}

/// The `tile` x `tile` squares of `img` at `corners` (top-left corners,
/// inside the image), side by side, `columns` per row; the last row's
/// gaps are black. The search's sample uses [`TILE`]; other sizes are for
/// studies (`core/examples/sample_study.rs`).
pub fn mosaic(img: &Image, corners: &[(u32, u32)], columns: u32, tile: u32) -> Image {
    let c = img.channels();
    let rows = (corners.len() as u32).div_ceil(columns);
    let (width, height) = (columns * tile, rows * tile);
    let mut pixels = vec![0; width as usize * height as usize * c];
    let tile_row = tile as usize * c;
    for (i, &(x0, y0)) in corners.iter().enumerate() {
        let (tx, ty) = (i as u32 % columns, i as u32 / columns);
        for y in 0..tile {
            let src = ((y0 + y) as usize * img.width as usize + x0 as usize) * c;
            let dst = ((ty * tile + y) as usize * width as usize + (tx * tile) as usize) * c;
            pixels[dst..dst + tile_row].copy_from_slice(&img.pixels[src..src + tile_row]);
        }
    }
    Image {
        width,
        height,
        pixels,
        has_alpha: img.has_alpha,
        icc_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_grids() {
        assert_eq!(tile_grid(1000, 1000, 1_000_000), None);
        assert_eq!(tile_grid(4000, 200, 100_000), None, "a side under a tile");
        // 1 MP of a 4K image: 15 tiles, 5 x 3, corners to corners.
        let (corners, columns) = tile_grid(3840, 2160, 1_000_000).unwrap();
        assert_eq!((corners.len(), columns), (15, 5));
        assert_eq!(corners[0], (0, 0));
        assert_eq!(corners[14], (3840 - TILE, 2160 - TILE));
        // Never more tiles than fit.
        let (corners, columns) = tile_grid(600, 300, 100_000).unwrap();
        assert_eq!((corners.len(), columns), (1, 1));
        assert_eq!(corners[0], (172, 22));
        let (corners, columns) = tile_grid(513, 600, 200_000).unwrap();
        assert_eq!((corners.len(), columns), (2, 1));
    }

    #[test]
    fn mosaic_copies_tiles() {
        let img = Image::rgb(
            600,
            300,
            (0..600 * 300)
                .flat_map(|i: u32| [(i % 251) as u8, (i / 600) as u8, 7])
                .collect(),
        );
        let m = mosaic(&img, &[(10, 20), (300, 40)], 2, TILE);
        assert_eq!((m.width, m.height), (512, 256));
        let px = |img: &Image, x: u32, y: u32| {
            let i = (y * img.width + x) as usize * 3;
            img.pixels[i..i + 3].to_vec()
        };
        assert_eq!(px(&m, 0, 0), px(&img, 10, 20));
        assert_eq!(px(&m, 255, 255), px(&img, 265, 275));
        assert_eq!(px(&m, 256, 3), px(&img, 300, 43));
    }

    #[test]
    fn scaled_sizes() {
        assert_eq!(scaled_size(1000, 1000, 1_000_000), None);
        assert_eq!(scaled_size(2000, 1000, 500_000), Some((1000, 500)));
        // Sides stay >= 8, which may exceed the budget.
        assert_eq!(scaled_size(4000, 10, 1000), Some((632, 8)));
        let (w, h) = scaled_size(3840, 2160, 1_000_000).unwrap();
        assert!(u64::from(w) * u64::from(h) <= 1_000_000);
        assert!(w > 1300 && h > 740, "{w}x{h}");
    }

    #[test]
    fn small_images_are_mirrored_to_every_scale() {
        assert_eq!(mirror_grid(128, 300), None);
        assert_eq!(mirror_grid(100, 67), Some((2, 2)));
        assert_eq!(mirror_grid(1, 1), Some((128, 128)));
        assert_eq!(mirror_grid(6, 1000), Some((22, 1)));
        assert_eq!(mirror_grid(20_000, 10), None, "too long a strip");
        // 3x2 RGB, mirrored 2x2: each copy meets its neighbour at its own
        // edge pixels.
        let img = Image::rgb(3, 2, (0..18).collect());
        let m = mirrored(&img, 2, 2);
        assert_eq!((m.width, m.height), (6, 4));
        let px = |x: usize, y: usize| m.pixels[(y * 6 + x) * 3];
        let row0: Vec<u8> = (0..6).map(|x| px(x, 0)).collect();
        assert_eq!(row0, [0, 3, 6, 6, 3, 0]);
        let col0: Vec<u8> = (0..4).map(|y| px(0, y)).collect();
        assert_eq!(col0, [0, 9, 9, 0]);
        // Scoring works down to a single pixel; identical is 100.
        let dot = Image::rgb(1, 1, vec![10, 20, 30]);
        assert!((score(&dot, &dot).unwrap() - 100.0).abs() < 1e-9);
    }
}
