//! bytes + plan -> converted bytes, or the reason to keep the original.
//!
//! Every format goes through the registry ([`Format::codec`]): this file
//! knows how to search, not how any format encodes.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codecs::{self, panic_message, webp, Effort, Encoding, Format, Image};
use crate::outcome::{Converted, KeepReason, Limits, Outcome};
use crate::plan::Plan;
use crate::sizing::delivered_size;
use crate::sniff::sniff;
use crate::work::{self, weight, Account};
use crate::{classify, guard, stop};

/// Converts `input` according to `plan`. Never panics: every failure,
/// including a panic inside a codec, becomes `Outcome::Original`.
///
/// The result is `Converted` only if it is strictly smaller than `input`:
/// serving a bigger file in a "better" format would defeat the purpose.
///
/// Every step is charged to the conversion's work budget before it starts
/// (`limits.work`, see [`crate::work`]): a step that would overrun it is
/// not taken.
pub fn transcode(input: &[u8], plan: &Plan, limits: &Limits) -> Outcome {
    transcode_with_work(input, plan, limits).0
}

/// [`transcode`], and the work its steps were charged, in pixel-passes
/// (see [`crate::work`]).
pub fn transcode_with_work(input: &[u8], plan: &Plan, limits: &Limits) -> (Outcome, f64) {
    let account = Account::new(limits.work.as_ref(), input.len());
    // The C codecs report errors by unwinding, and any bug of ours should
    // cost one response its conversion, not the nginx worker.
    let outcome = match catch_unwind(AssertUnwindSafe(|| convert(input, plan, limits, &account))) {
        Ok(Ok(converted)) => Outcome::Converted(converted),
        Ok(Err(reason)) => Outcome::Original(reason),
        Err(payload) => Outcome::Original(KeepReason::Panic(panic_message(&*payload))),
    };
    (outcome, account.spent())
}

fn convert(
    input: &[u8],
    plan: &Plan,
    limits: &Limits,
    account: &Account,
) -> Result<Converted, KeepReason> {
    let Some(source_format) = sniff(input) else {
        return Err(KeepReason::NotAnImage);
    };
    // Charged from the header, before a pixel is decoded. An image over
    // `max_pixels` is left to the decoder, which refuses it for that.
    let decoding = codecs::decode_work(input)
        .filter(|&(pixels, _)| pixels <= limits.max_pixels)
        .map_or(0.0, |(pixels, passes)| pixels as f64 * passes);
    account.step(decoding)?;
    // A JPEG to be delivered at an eighth of its size or less is halved
    // while it is decoded (see `codecs::decode_for_size`).
    let fit = |w, h| delivered_size((w, h), &plan.size, &plan.caps);
    let (image, source) = codecs::decode_for_size(input, limits, &fit)?;
    let (width, height) = fit(source.0, source.1);
    let resized = (width, height) != source;
    if plan.targets.is_empty() && !resized {
        // Same format, same pixels: nothing would be gained.
        return Err(KeepReason::NothingToDo);
    }
    let image = if (width, height) != (image.width, image.height) {
        account.step(work::pixels(image.width, image.height) * weight::RESIZE)?;
        let smaller = crate::resize::resize(&image, width, height)?;
        // The source's pixels are not needed again (a shadowed binding
        // would hold them to the end of the conversion).
        drop(image);
        smaller
    } else {
        image
    };
    let pixels = u64::from(width) * u64::from(height);
    // The guard compares every candidate with the (resized) original:
    // prepared once, shared by all formats tried.
    let reference = match plan.guard.threshold {
        Some(_) => {
            // Whole, a few rows at a time, up to a size that bounds the
            // CPU per candidate; tiles beyond.
            let reference = if pixels <= guard::WHOLE_MAX_PIXELS {
                guard::Reference::streamed(&image)?
            } else {
                guard::Reference::sampled_streamed(&image, guard::DEFAULT_MAX_PIXELS)?
            };
            let scored = reference.scored_pixels() as f64;
            account.step(scored * weight::with_alpha(weight::REFERENCE, image.has_alpha))?;
            Some(reference)
        }
        None => None,
    };
    // The search runs on a small sample of the image when it is large
    // enough to have one: see `Job::sampled_search`.
    let sample = match plan.guard.threshold {
        Some(_)
            if pixels >= SEARCH_SAMPLE_MIN_PIXELS
                && plan.guard.max_encodes > 1
                && plan
                    .targets
                    .iter()
                    .any(|&format| searched_on_a_sample(format, &image)) =>
        {
            let sample_pixels = search_sample_pixels(pixels);
            account.step(sample_pixels as f64 * weight::REFERENCE)?;
            guard::sample(&image, sample_pixels)
                .map(|image| -> Result<Sample, KeepReason> {
                    // Streamed too: the sample is scored a few times, and
                    // its prepared planes were 4-9 MiB of a conversion's
                    // ~45 for the same CPU.
                    let reference = guard::Reference::streamed(&image)?.into_owned();
                    Ok(Sample { image, reference })
                })
                .transpose()?
        }
        _ => None,
    };
    let job = Job {
        image: &image,
        plan,
        limits,
        account,
        reference: reference.as_ref(),
        sample: sample.as_ref(),
        from_png: source_format == Format::Png,
        original_len: input.len(),
    };
    let mut encodes = 0;
    let mut last = KeepReason::NothingToDo;
    let served = |candidate: Candidate, format: Format, encodes: usize| Converted {
        bytes: candidate.bytes,
        format,
        width,
        height,
        quality: candidate.quality,
        score: candidate.score,
        encodes,
    };

    // Screenshots, diagrams, icons (a PNG with few colours and flat areas):
    // near-lossless WebP often beats every lossy encoding; it competes
    // with whatever the ladder finds.
    // (With the guard on only: without it each format is encoded once, at
    // its quality, as configured.)
    let mut extra = None;
    if job.reference.is_some()
        && job.from_png
        && plan.targets.contains(&Format::WebP)
        && classify::is_graphic(&image)
    {
        match job.near_lossless_webp() {
            Ok(candidate) => {
                encodes += candidate.encodes;
                extra = Some(candidate);
            }
            Err((reason, tried)) => {
                encodes += tried;
                last = reason;
            }
        }
    }

    // The formats asked for, best first; after them, when the image was
    // resized, its own format (a smaller original is still a win).
    let own = source_format;
    let mut ladder = plan.targets.clone();
    if resized && !ladder.contains(&own) {
        ladder.push(own);
    }
    for format in ladder {
        let codec = format.codec();
        if let Some(max) = (codec.max_pixels)(&plan.tuning).filter(|&max| pixels > max) {
            last = KeepReason::Unsupported(format!(
                "{width}x{height} is over the {} limit of {max} pixels",
                codec.name.to_uppercase()
            ));
            continue;
        }
        let candidate = match job.best(format) {
            Ok(candidate) => candidate,
            Err((reason, tried)) => {
                encodes += tried;
                last = reason;
                continue;
            }
        };
        encodes += candidate.encodes;
        let (candidate, format) = match extra.take() {
            Some(near) if near.bytes.len() < candidate.bytes.len() => (near, Format::WebP),
            _ => (candidate, format),
        };
        if candidate.bytes.len() < input.len() {
            return Ok(served(candidate, format, encodes));
        }
        last = KeepReason::NotSmaller {
            original: input.len(),
            converted: candidate.bytes.len(),
        };
    }
    match extra {
        Some(near) if near.bytes.len() < input.len() => Ok(served(near, Format::WebP, encodes)),
        Some(near) => Err(KeepReason::NotSmaller {
            original: input.len(),
            converted: near.bytes.len(),
        }),
        None => Err(last),
    }
}

/// One format's best output.
struct Candidate {
    bytes: Vec<u8>,
    /// The encoder quality (0 for lossless).
    quality: u8,
    score: Option<f64>,
    /// Encoder runs it took.
    encodes: usize,
}

/// The highest quality `format` may be encoded at: its `*_quality` (with
/// the guard off, the quality used); lossless formats have none.
fn quality_ceiling(format: Format, plan: &Plan) -> u8 {
    if format.codec().quality.lossless {
        // As `Converted::quality` documents.
        0
    } else {
        plan.quality.get(format)
    }
}

/// Qualities below the search's answer tried at the served effort: the
/// slower AVIF speed scores ~1.7 points higher at one quality on the
/// corpus photos, which is worth about three quality steps.
const POLISH_STEP: u8 = 3;

/// The sample the quality search runs on: a tenth of the image's pixels
/// in 256x256 tiles (at least one, at most two), so that a probe costs a
/// tenth of an encode of the whole image or less. Images under
/// [`SEARCH_SAMPLE_MIN_PIXELS`] are searched whole.
fn search_sample_pixels(pixels: u64) -> u64 {
    const TILE: u64 = guard::TILE as u64 * guard::TILE as u64;
    (pixels / 10 / TILE).clamp(1, 2) * TILE
}

/// The quality for the whole image, when its check sees all of it: a
/// secant search from `start` ([`Job::sampled_start`]) with a prior
/// `slope` (points per quality step: the sample's, or [`FIT_SLOPE`]) until
/// two whole-image checks show the whole image's own. A pass with at
/// least a step's worth of points to spare tries lower by as many
/// steps as the spare points buy; a failure, higher by as many as the
/// missing points cost (at least one step; never at or above a quality
/// that passed). `tries` encodes at most; the smallest passing
/// result is served. `whole(quality, raising)` encodes and checks the
/// whole image (`raising`: above a failure with no pass yet, where a
/// result as large as the original ends the search).
///
/// On the corpus photos whose check sees the whole image this serves
/// results 0.3-0.7 points over the threshold where the fixed steps it
/// replaces left 1-3 (`make bench-corpus`).
fn fit_whole(
    start: u8,
    mut slope: f64,
    pass: f64,
    range: (u8, u8),
    tries: usize,
    whole: &mut impl FnMut(u8, bool) -> Result<Candidate, Failed>,
) -> Result<Option<Candidate>, Failed> {
    let mut passed: Option<Candidate> = None;
    let mut failed: Option<u8> = None;
    let mut last: Option<(u8, f64)> = None;
    let mut quality = start;
    for _ in 0..tries {
        let raising = passed.is_none() && failed.is_some();
        let candidate = match whole(quality, raising) {
            Ok(candidate) => candidate,
            // An error after a pass costs the try, not the pass.
            Err(failure) => return passed.map_or(Err(failure), |p| Ok(Some(p))),
        };
        let score = candidate.score.unwrap_or(f64::NEG_INFINITY);
        if let Some((q, s)) = last {
            let secant = (score - s) / (f64::from(quality) - f64::from(q));
            if secant.is_finite() && secant > 0.0 {
                slope = secant;
            }
        }
        last = Some((quality, score));
        let slope = slope.max(MIN_SLOPE);
        let next = if score >= pass {
            let spare = ((score - pass) / slope)
                .floor()
                .min(f64::from(MAX_RETRY_STEP)) as u8;
            let floor = failed.map_or(range.0, |f| f.saturating_add(1)).max(range.0);
            let next = quality.saturating_sub(spare).max(floor);
            if passed
                .as_ref()
                .is_none_or(|p| candidate.bytes.len() < p.bytes.len())
            {
                passed = Some(candidate);
            }
            next
        } else {
            failed = Some(failed.map_or(quality, |f| f.max(quality)));
            let lacking = ((pass - score) / slope)
                .ceil()
                .clamp(1.0, f64::from(MAX_RETRY_STEP));
            quality.saturating_add(lacking as u8).min(range.1)
        };
        let ceiling = passed
            .as_ref()
            .map_or(range.1.saturating_add(1), |p| p.quality);
        let floor = failed.map_or(range.0, |f| f.saturating_add(1));
        if next == quality
            || next >= ceiling
            || next < floor
            || (score < pass && quality >= range.1)
        {
            break;
        }
        quality = next;
    }
    Ok(passed)
}

/// Where the whole image's search starts, from one probe of the sample:
/// `sample_score` at quality `probe`. The sample's own answer lies about
/// `(threshold - sample_score) / 0.7` steps away (0.7 points per step is
/// typical of WebP near 80); the whole image starts halfway there, plus
/// [`START_OFFSET`]: the whole image's answer lies above its sample's
/// (one 256x256 tile of a 1.3 MP photo misses its hardest parts) by 3.4
/// steps on average on the corpus photos, and the estimate is damped
/// because a single probe's slope is a guess (undamped, the replay below
/// needs 2.3 whole encodes per photo and serves 29.4 %).
///
/// Measured offline with `core/examples/search_table.rs` (every WebP
/// quality of every corpus photo encoded and scored, whole and sampled)
/// and the fit replayed from each start (2026-12-07, the 33 photos
/// searched on a sample): this start needs 1.9 encodes of the whole image
/// per photo and serves 29.7 % saved, against 2.2 and 28.4 % from the
/// sample's exact answer plus one step (what three probes of the sample
/// aimed at), and 1.2 and 29.9 % from each photo's true answer. Only for
/// photos: see [`Job::sampled_start`].
fn whole_start(probe: u8, sample_score: f64, threshold: f64, range: (u8, u8)) -> u8 {
    let steps = (threshold - sample_score) / START_SLOPE;
    let start = (f64::from(probe) + steps).ceil() + f64::from(START_OFFSET);
    // In range: `as` saturates (NaN: 0), and the clamp bounds it.
    (start as u8).clamp(range.0, range.1)
}

/// Points per step [`whole_start`] divides the sample's distance from the
/// threshold by: half the slope of WebP near 80 (0.7).
const START_SLOPE: f64 = 1.4;
/// Steps [`whole_start`] adds for the whole image's harder parts.
const START_OFFSET: u8 = 2;
/// The slope [`fit_whole`] assumes until two whole checks show the
/// image's own (WebP photos: 0.6-1 point per step near 80).
const FIT_SLOPE: f64 = 0.8;

/// Score points per quality step, from the sample's probes (the
/// steepest-to-flattest secant over them; `None` with fewer than two
/// distinct qualities).
fn score_slope(probes: &[(u8, f64)]) -> Option<f64> {
    let lowest = probes.iter().min_by_key(|p| p.0)?;
    let highest = probes.iter().max_by_key(|p| p.0)?;
    (highest.0 > lowest.0)
        .then(|| (highest.1 - lowest.1) / f64::from(highest.0 - lowest.0))
        .filter(|slope| *slope > 0.0)
}

/// How far to raise the quality after a whole-image check `deficit`
/// points short: enough to make up the deficit at `slope` points per step
/// (at least [`WHOLE_RETRY_STEP`], at most [`MAX_RETRY_STEP`]). The sample
/// can misjudge the whole by several points (a screenshot whose tiles are
/// mostly flat), and some encoders' quality scales move in coarse steps
/// (two JPEG XR qualities 2 apart can give the same bytes).
fn retry_step(deficit: f64, slope: Option<f64>) -> u8 {
    let step = match slope {
        Some(slope) => (deficit / slope.max(MIN_SLOPE)).ceil(),
        None => f64::from(WHOLE_RETRY_STEP),
    };
    // In range: `as` saturates, and the clamp bounds it.
    (step as u8).clamp(WHOLE_RETRY_STEP, MAX_RETRY_STEP)
}

/// Bounds of [`retry_step`].
const MIN_SLOPE: f64 = 0.2;
const MAX_RETRY_STEP: u8 = 16;

/// Whether `format` is searched on a sample of `image` (when it is large
/// enough, [`SEARCH_SAMPLE_MIN_PIXELS`]); see `Job::best` for why only
/// opaque WebP is.
fn searched_on_a_sample(format: Format, image: &Image) -> bool {
    format == Format::WebP && !image.has_alpha
}

/// Below this, a tile would be too large a share of the image for the
/// sample to save anything.
pub const SEARCH_SAMPLE_MIN_PIXELS: u64 = 400_000;

/// Probes of the search on a PNG's sample, at most: its answer only needs
/// to be within a few steps, since the whole image is checked and fitted
/// after it (`make bench-corpus`, WebP-only client, 2026-12-07: with 3,
/// photos 30.0 % saved at 5.2 encodes per image and 329 ms/MP; with 4,
/// 28.8 % at 6.0 and 348 ms/MP).
const SAMPLE_PROBES: usize = 3;

/// Steps above the answer of the search on a PNG's sample where the whole
/// image starts (photos, when they were searched so, 2026-12-07: 1 step,
/// 28.8 % saved at 6.0 encodes per image; 2 steps: 28.9 % at 6.2; 0
/// steps: 27.7 % at 6.2, one photo left unconverted).
const WHOLE_START_STEP: u8 = 1;

/// How the whole image is encoded after the sample: first where
/// [`Job::sampled_start`] says. Where the check sees the whole image, the
/// quality is then fitted to it ([`fit_whole`]). Where it sees tiles (images over
/// [`guard::WHOLE_MAX_PIXELS`]): on a failed check, higher again by what
/// the score lacks ([`retry_step`], at least [`WHOLE_RETRY_STEP`] once two
/// tries show a slope), [`WHOLE_TRIES`] encodes at most; after a pass
/// with more than [`DESCEND_HEADROOM`] points to spare, once lower
/// ([`DESCEND_STEP`], or halfway back to the last failure).
const WHOLE_RETRY_STEP: u8 = 2;
const WHOLE_TRIES: usize = 3;
const DESCEND_HEADROOM: f64 = 1.5;
const DESCEND_STEP: u8 = 3;

/// Points over the threshold a result must reach when the guard scores
/// the whole image: the guard computes SSIMULACRA 2 as the reference
/// implementation does (the `ssimulacra2` crate, its `f32` recursive blur
/// included, bit for bit), and the rest of the arithmetic differs in
/// rounding only: at most 0.062 apart on the corpus photos
/// (`core/examples/score_agreement.rs`, 140 scores).
const WHOLE_MARGIN: f64 = 0.1;

/// Points over the threshold a result must reach when the guard scores
/// 1 MP of tiles of a larger image ([`guard::DEFAULT_MAX_PIXELS`]): the
/// tiles score up to about 1 point higher than the reference scores the
/// whole image (the blur's rounding noise builds up along the whole
/// image's longer rows and columns; the tiles' content is not all of the
/// image's). With 0.5 one result in 17 scored 79.98 by the reference; with
/// 1.0 none was under 80.
const TILE_MARGIN: f64 = 1.0;

/// Whether `reference` scores the whole of `image` (or more: a small
/// image's mirrored mosaic), not a sample of it.
fn scores_whole(reference: &guard::Reference, image: &Image) -> bool {
    reference.scored_pixels() >= u64::from(image.width) * u64::from(image.height)
}

/// The margin for results checked against `reference` (see
/// [`WHOLE_MARGIN`], [`TILE_MARGIN`]).
fn verify_margin(reference: &guard::Reference, image: &Image) -> f64 {
    if scores_whole(reference, image) {
        WHOLE_MARGIN
    } else {
        TILE_MARGIN
    }
}

/// The search's sample: its pixels and its prepared reference.
struct Sample {
    image: Image,
    /// With its own copy of the sample's pixels (a few hundred KB).
    reference: guard::Reference<'static>,
}

/// Encodes one image, already at its delivered size, in the formats a
/// plan asks for.
struct Job<'a> {
    image: &'a Image,
    plan: &'a Plan,
    limits: &'a Limits,
    /// The conversion's work budget, charged before each step.
    account: &'a Account,
    /// The guard's prepared reference; `None` when the guard is off.
    reference: Option<&'a guard::Reference<'a>>,
    /// What the quality search runs on, when it does not run on the whole
    /// image.
    sample: Option<&'a Sample>,
    /// The source is a PNG: graphics more often than photos, and lossless
    /// to begin with.
    from_png: bool,
    /// The original's size in bytes: a candidate as large is never served.
    original_len: usize,
}

/// Where the search of the whole image starts, from its sample.
struct Start {
    quality: u8,
    /// Score points per quality step, where the sample showed it.
    slope: Option<f64>,
}

/// An error and the encoder runs spent before it.
type Failed = (KeepReason, usize);

impl Job<'_> {
    /// The smallest encoding in `format` that passes the guard (with the
    /// guard off, the encoding at the format's quality).
    fn best(&self, format: Format) -> Result<Candidate, Failed> {
        if format.codec().quality.lossless {
            // Nothing to search, nothing to score.
            return self.once(format, 0);
        }
        let ceiling = quality_ceiling(format, self.plan);
        let Some(reference) = self.reference else {
            return self.once(format, ceiling);
        };
        let threshold = self.plan.guard.threshold.unwrap_or(0.0);
        let range = (format.codec().quality.floor.min(ceiling), ceiling);
        // Where the sample pays (`make bench-corpus`, 2026-12-07): opaque
        // WebP, the format most clients get, for 45-50 % less CPU at a
        // cost in bytes (photos: 23.5 % saved against 28.1 % searched
        // whole; graphics 82.8 against 86.5 %). Not AVIF, which searches
        // the whole image at a cheap speed (~25 ms/MP per encode) and
        // encodes at the served speed only to polish (photos: 49 % saved,
        // against 44 % sampled, for 20 % less CPU); not images with alpha,
        // whose edges a few tiles do not show (WebP: 55 against 70 %); not
        // JPEG 2000 (photos 25 against 37 %) or JPEG XR (27 against 33 %),
        // whose scores the sample misjudges most.
        // (With `smart_imaging_guard_encodes 1` there is no sample, see
        // `convert`: the one encode is the whole image at the ceiling,
        // checked, as everywhere else.)
        if let Some(sample) = self
            .sample
            .filter(|_| searched_on_a_sample(format, self.image))
        {
            return self.sampled_search(format, sample, reference, threshold, range);
        }
        // What the reference implementation would score can be a little
        // lower than the guard's own score, more so on tiles.
        let threshold = threshold + verify_margin(reference, self.image);
        let mut tried = 0;
        let mut best_score = f64::NEG_INFINITY;
        let mut probe = |quality: u8, effort: Effort| -> Result<(Vec<u8>, f64), KeepReason> {
            tried += 1;
            let bytes = self.encode(format, quality, effort, Some(reference))?;
            let score = self.check(&bytes, format, reference)?;
            best_score = best_score.max(score);
            Ok((bytes, score))
        };
        let found = guard::search(
            |quality| probe(quality, Effort::Search),
            threshold,
            range,
            self.plan.guard.max_encodes.max(1),
        );
        match found {
            Ok(Some(found)) => {
                let mut best = Candidate {
                    bytes: found.bytes,
                    quality: found.quality,
                    score: Some(found.score),
                    encodes: found.encodes,
                };
                if self.effort_differs(format) {
                    polish(&mut best, threshold, range.0, |q| probe(q, Effort::Final));
                }
                Ok(best)
            }
            Ok(None) => self.nothing_passed(format, best_score, tried),
            Err(reason) => Err((reason, tried)),
        }
    }

    /// Where the whole image's search starts, from the sample
    /// ([`Job::sampled_start`]), then the whole image encoded and checked
    /// from there and fitted to the threshold ([`fit_whole`]; on images
    /// checked on tiles, a few steps up and down instead). On the corpus
    /// photos this costs about two encodes and checks of the whole image
    /// and one of the sample.
    fn sampled_search(
        &self,
        format: Format,
        sample: &Sample,
        reference: &guard::Reference,
        threshold: f64,
        range: (u8, u8),
    ) -> Result<Candidate, Failed> {
        let (start, mut tried) = self.sampled_start(format, sample, threshold, range)?;
        let Some(Start {
            quality: start,
            slope: sample_slope,
        }) = start
        else {
            return self.nothing_passed(format, f64::NEG_INFINITY, tried);
        };
        // Whole encodes: what `smart_imaging_guard_encodes` leaves after
        // the sample's probes, [`WHOLE_TRIES`] at most, one at least.
        let tries = self
            .plan
            .guard
            .max_encodes
            .saturating_sub(tried)
            .clamp(1, WHOLE_TRIES);
        let mut best_score = f64::NEG_INFINITY;
        let pass = threshold + verify_margin(reference, self.image);
        // `raising`: a retry above a quality that failed the check; a
        // result as large as the original then ends the search unscored
        // (every further try is larger still). The first try is always
        // scored: with room to spare, the lower one may be smaller.
        let mut whole = |quality: u8, raising: bool| -> Result<Candidate, Failed> {
            tried += 1;
            let bytes = self
                .encode(format, quality, Effort::Final, Some(reference))
                .map_err(|reason| (reason, tried))?;
            if raising && bytes.len() >= self.original_len {
                // Never served, and every retry is at a higher quality:
                // not worth a score.
                return Err((
                    KeepReason::NotSmaller {
                        original: self.original_len,
                        converted: bytes.len(),
                    },
                    tried,
                ));
            }
            let score = self
                .check(&bytes, format, reference)
                .map_err(|reason| (reason, tried))?;
            best_score = best_score.max(score);
            Ok(Candidate {
                bytes,
                quality,
                score: Some(score),
                encodes: tried,
            })
        };
        // Big steps only where the check sees the whole image: on a
        // larger one it sees 1 MP of tiles, which can miss what a big step
        // costs elsewhere (a 4 MP graphic passed on its tiles at 81 and
        // scored 77 whole); there the small steps run out first and the
        // fallback (lossless WebP for a PNG) is served.
        let whole_is_checked = scores_whole(reference, self.image);
        let mut slope = None;
        let mut quality = start;
        if whole_is_checked {
            // The check sees the whole image: fit the quality to it.
            let slope = sample_slope.unwrap_or(FIT_SLOPE);
            let fitted = fit_whole(quality, slope, pass, range, tries, &mut whole);
            return match fitted {
                Ok(Some(candidate)) => Ok(Candidate {
                    encodes: tried,
                    ..candidate
                }),
                Ok(None) => self.nothing_passed(format, best_score, tried),
                Err((reason, _)) => Err((reason, tried)),
            };
        }
        let mut failed: Option<(u8, f64)> = None;
        for attempt in 0..tries {
            let candidate = whole(quality, attempt > 0)?;
            let score = candidate.score.unwrap_or(f64::NEG_INFINITY);
            if score >= pass {
                // Room to spare: once lower, halfway back to the last
                // failure when there was one.
                let lower = match failed {
                    None => quality.saturating_sub(DESCEND_STEP),
                    Some((q, _)) => q + (quality - q) / 2,
                };
                let worth_it = (attempt == 0 || quality - lower >= DESCEND_STEP)
                    && lower < quality
                    && failed.is_none_or(|(q, _)| lower > q);
                if score > pass + DESCEND_HEADROOM && lower >= range.0 && worth_it {
                    // An error here costs the lower try, not the pass.
                    if let Ok(low) = whole(lower, false) {
                        if low.score.is_some_and(|s| s >= pass)
                            && low.bytes.len() < candidate.bytes.len()
                        {
                            return Ok(Candidate {
                                encodes: tried,
                                ..low
                            });
                        }
                    }
                }
                return Ok(Candidate {
                    encodes: tried,
                    ..candidate
                });
            }
            if quality >= range.1 {
                break;
            }
            if let Some((q, s)) =
                failed.filter(|&(q, s)| whole_is_checked && q < quality && s < score)
            {
                // The whole image's own slope, once two tries show it.
                slope = Some((score - s) / f64::from(quality - q));
            }
            failed = Some((quality, score));
            quality = quality
                .saturating_add(retry_step(pass - score, slope))
                .min(range.1);
        }
        self.nothing_passed(format, best_score, tried)
    }

    /// Where the whole image's search starts, from the sample: the
    /// quality and the sample's slope (points per step) where it shows
    /// one (`None`: nothing passed on the sample), and the encodes spent.
    ///
    /// A photo (a JPEG source): one probe ([`whole_start`]). A PNG: the
    /// search on the sample ([`SAMPLE_PROBES`] probes), then
    /// [`WHOLE_START_STEP`] above its answer. On the corpus graphics the
    /// single probe's guess cost more whole encodes than the two probes it
    /// saves (WebP-only client, `make bench-corpus`, 2026-12-07: graphics
    /// 553 ms/MP and 86.4 % saved against 491 and 86.7 %; photos 260 ms/MP
    /// and 30.4 % against 329 and 30.0 % with three probes).
    fn sampled_start(
        &self,
        format: Format,
        sample: &Sample,
        threshold: f64,
        range: (u8, u8),
    ) -> Result<(Option<Start>, usize), Failed> {
        let mut tried = 0;
        let mut probe = |quality: u8| -> Result<(Vec<u8>, f64), KeepReason> {
            tried += 1;
            let bytes = self.encode_image(
                &sample.image,
                format,
                quality,
                Effort::Final,
                Some(&sample.reference),
            )?;
            let score = self.check(&bytes, format, &sample.reference)?;
            Ok((bytes, score))
        };
        if !self.from_png {
            let quality = guard::first_probe(range);
            let (_, score) = probe(quality).map_err(|reason| (reason, 1))?;
            let start = Start {
                quality: whole_start(quality, score, threshold, range),
                slope: None,
            };
            return Ok((Some(start), 1));
        }
        // Every probe's (quality, score): how fast the score rises with
        // the quality, for the whole image's fit.
        let mut probes: Vec<(u8, f64)> = Vec::with_capacity(SAMPLE_PROBES);
        let found = guard::search(
            |quality| {
                let probed = probe(quality)?;
                probes.push((quality, probed.1));
                Ok(probed)
            },
            threshold,
            range,
            self.plan.guard.max_encodes.clamp(1, SAMPLE_PROBES),
        );
        match found {
            Ok(Some(found)) => {
                let start = Start {
                    quality: found.quality.saturating_add(WHOLE_START_STEP).min(range.1),
                    slope: score_slope(&probes),
                };
                Ok((Some(start), tried))
            }
            Ok(None) => Ok((None, tried)),
            Err(reason) => Err((reason, tried)),
        }
    }

    /// What is served when no lossy encoding in `format` passed: lossless
    /// WebP for a PNG (fine lines, text: it always passes, and needs no
    /// score), else the original (`best_score` was the best seen).
    fn nothing_passed(
        &self,
        format: Format,
        best_score: f64,
        tried: usize,
    ) -> Result<Candidate, Failed> {
        if format == Format::WebP && self.from_png {
            let options = webp::Options::lossless_level(6);
            self.account
                .step(self.pixels() * webp::work(&options, self.image.has_alpha))
                .map_err(|reason| (reason, tried))?;
            return webp::encode_with(self.image, &options)
                .map(|bytes| Candidate {
                    bytes,
                    quality: 0,
                    score: None,
                    encodes: tried + 1,
                })
                .map_err(|reason| (reason, tried + 1));
        }
        Err((
            KeepReason::NotComparable {
                score: best_score,
                threshold: self.plan.guard.threshold.unwrap_or(0.0),
            },
            tried,
        ))
    }

    /// One encode at `quality`, served as it is (guard off, or lossless).
    fn once(&self, format: Format, quality: u8) -> Result<Candidate, Failed> {
        self.encode(format, quality, Effort::Final, None)
            .map(|bytes| Candidate {
                bytes,
                quality,
                score: None,
                encodes: 1,
            })
            .map_err(|reason| (reason, 1))
    }

    /// Near-lossless WebP (level 40, lossless effort `-z 5`): on
    /// screenshots and diagrams smaller than any lossy WebP or AVIF that
    /// passes the guard (60 % saved on a set of documentation images,
    /// where lossy WebP saves 51 %). Scored like any candidate.
    fn near_lossless_webp(&self) -> Result<Candidate, Failed> {
        let options = webp::Options {
            near_lossless: Some(40),
            ..webp::Options::lossless_level(5)
        };
        let checking = self
            .reference
            .map_or(0.0, |reference| self.check_work(Format::WebP, reference));
        self.account
            .step(self.pixels() * webp::work(&options, self.image.has_alpha) + checking)
            .map_err(|reason| (reason, 0))?;
        let bytes = webp::encode_with(self.image, &options).map_err(|reason| (reason, 1))?;
        let score = match self.reference {
            Some(reference) => {
                let score = self
                    .check(&bytes, Format::WebP, reference)
                    .map_err(|r| (r, 1))?;
                let threshold = self.plan.guard.threshold.unwrap_or(0.0);
                if score < threshold {
                    return Err((KeepReason::NotComparable { score, threshold }, 1));
                }
                Some(score)
            }
            None => None,
        };
        Ok(Candidate {
            bytes,
            quality: 0,
            score,
            encodes: 1,
        })
    }

    /// Whether `format` is searched at another effort than it is served at.
    fn effort_differs(&self, format: Format) -> bool {
        (format.codec().cheaper_search)(&self.plan.tuning)
    }

    fn encode(
        &self,
        format: Format,
        quality: u8,
        effort: Effort,
        checked_against: Option<&guard::Reference>,
    ) -> Result<Vec<u8>, KeepReason> {
        self.encode_image(self.image, format, quality, effort, checked_against)
    }

    /// Encodes `image`; `checked_against`: the reference its [`Job::check`]
    /// will score it against, whose cost is charged with the encode's (an
    /// encode the budget cannot check is not worth making).
    fn encode_image(
        &self,
        image: &Image,
        format: Format,
        quality: u8,
        effort: Effort,
        checked_against: Option<&guard::Reference>,
    ) -> Result<Vec<u8>, KeepReason> {
        let encoding = Encoding {
            quality,
            effort,
            from_png: self.from_png,
            guarded: self.reference.is_some(),
            tuning: self.plan.tuning,
        };
        // Every encode of every format comes here: the place to charge it,
        // and to give up when the process is stopping.
        let passes = (format.codec().work.encode)(&encoding, image.has_alpha);
        let checking = checked_against.map_or(0.0, |r| self.check_work(format, r));
        self.account
            .step(work::pixels(image.width, image.height) * passes + checking)?;
        (format.codec().encode)(image, &encoding)
    }

    /// Decodes a candidate and scores it against `reference` (of the
    /// image or of the search's sample); charged with its encode.
    fn check(
        &self,
        bytes: &[u8],
        format: Format,
        reference: &guard::Reference,
    ) -> Result<f64, KeepReason> {
        stop::check()?;
        let decoded = (format.codec().decode)(bytes, self.limits)?;
        reference.score(&decoded)
    }

    /// What [`Job::check`] costs, in pixel-passes: decoding the candidate
    /// and scoring the pixels `reference` scores.
    fn check_work(&self, format: Format, reference: &guard::Reference) -> f64 {
        let (width, height) = reference.size();
        let decoding = work::pixels(width, height) * format.codec().work.decode;
        decoding
            + reference.scored_pixels() as f64
                * weight::with_alpha(weight::SCORE, self.image.has_alpha)
    }

    /// The image's pixels, as the work functions count them.
    fn pixels(&self) -> f64 {
        work::pixels(self.image.width, self.image.height)
    }
}

/// Re-encodes the search's answer at the effort served, which at one
/// quality comes out smaller *and* scores higher than the fast setting the
/// search used (AVIF speed 6 against 9: +1.7 points, 9 % smaller on the
/// corpus photos): first [`POLISH_STEP`] qualities lower, and only if that
/// fails at the quality found. A result replaces `best` only if it passes
/// and is smaller; an error leaves `best` as it is. On the corpus photos
/// this saves 52.2 % where a whole search at speed 6 saves 53.5 %, at a
/// third of the time.
fn polish(
    best: &mut Candidate,
    threshold: f64,
    floor: u8,
    mut probe: impl FnMut(u8) -> Result<(Vec<u8>, f64), KeepReason>,
) {
    let found = best.quality;
    let lower = found.saturating_sub(POLISH_STEP).max(floor);
    let tries: &[u8] = if lower < found {
        &[lower, found]
    } else {
        &[found]
    };
    for &quality in tries {
        best.encodes += 1;
        if let Ok((bytes, score)) = probe(quality) {
            if score >= threshold {
                if bytes.len() < best.bytes.len() {
                    *best = Candidate {
                        bytes,
                        quality,
                        score: Some(score),
                        encodes: best.encodes,
                    };
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_image_starts_halfway_to_the_sample_answer_and_above() {
        // A photo's sample scoring 77.9 at q85: its own answer ~q88; the
        // whole image starts at 85 + 1.5 (rounded up) + 2.
        assert_eq!(whole_start(85, 77.9, 80.0, (40, 100)), 89);
        // Passing with room to spare: lower.
        assert_eq!(whole_start(85, 83.0, 80.0, (40, 100)), 85);
        // A flat graphic far above the threshold: much lower, in range.
        assert_eq!(whole_start(85, 99.0, 80.0, (40, 100)), 74);
        assert_eq!(whole_start(85, 20.0, 80.0, (40, 100)), 100);
        assert_eq!(whole_start(50, 200.0, 80.0, (40, 100)), 40);
        assert_eq!(whole_start(85, f64::NAN, 80.0, (40, 95)), 40);
    }

    #[test]
    fn the_sample_slope_is_the_secant_over_its_probes() {
        // The dolphin_default_ui.png JPEG XR probes.
        let probes = [(85, 89.86), (62, 83.31), (51, 79.54), (53, 80.14)];
        let slope = score_slope(&probes).unwrap();
        assert!((slope - (89.86 - 79.54) / 34.0).abs() < 1e-9, "{slope}");
        assert_eq!(score_slope(&[(60, 80.0)]), None);
        assert_eq!(score_slope(&[(60, 80.0), (70, 79.0)]), None, "falling");
        assert_eq!(score_slope(&[]), None);
    }

    #[test]
    fn retries_make_up_the_deficit_within_bounds() {
        // 4.2 points short at 0.3 points per step: 14 steps.
        assert_eq!(retry_step(4.16, Some(0.3035)), 14);
        // A small deficit: never less than the fixed step.
        assert_eq!(retry_step(0.3, Some(1.0)), WHOLE_RETRY_STEP);
        assert_eq!(retry_step(0.3, None), WHOLE_RETRY_STEP);
        assert_eq!(retry_step(5.0, None), WHOLE_RETRY_STEP);
        // A flat slope or a huge deficit: bounded.
        assert_eq!(retry_step(30.0, Some(0.001)), MAX_RETRY_STEP);
        assert_eq!(retry_step(f64::INFINITY, Some(0.5)), MAX_RETRY_STEP);
    }

    /// `fit_whole` against a model image whose score is `score(q)` and
    /// whose bytes grow with the quality: the qualities it tried and what
    /// it served.
    fn fit(start: u8, slope: f64, score: impl Fn(u8) -> f64) -> (Vec<u8>, Option<(u8, f64)>) {
        let mut tried = Vec::new();
        let mut whole = |q: u8, _raising: bool| -> Result<Candidate, Failed> {
            tried.push(q);
            Ok(Candidate {
                bytes: vec![0; 1000 + usize::from(q) * 10],
                quality: q,
                score: Some(score(q)),
                encodes: 1,
            })
        };
        let served = fit_whole(start, slope, 80.1, (40, 100), WHOLE_TRIES, &mut whole).unwrap();
        (tried, served.map(|c| (c.quality, c.score.unwrap())))
    }

    #[test]
    fn the_whole_image_fit_lands_on_the_threshold() {
        // 0.8 points per step, 80.1 reached at q 84.5: 85 is the answer.
        let linear = |q: u8| 80.1 + 0.8 * (f64::from(q) - 84.5);
        // Too high a start, the slope known: straight down to it.
        assert_eq!(fit(90, 0.8, linear), (vec![90, 85], Some((85, 80.5))));
        // Too low a start: up, and done (nothing passes lower).
        assert_eq!(fit(82, 0.8, linear), (vec![82, 85], Some((85, 80.5))));
        // The sample's slope twice too steep: down too little, then the
        // whole image's own slope from the two checks finds it.
        assert_eq!(fit(92, 1.6, linear), (vec![92, 89, 85], Some((85, 80.5))));
        // Within a step of the threshold already: one encode.
        assert_eq!(fit(85, 0.8, linear), (vec![85], Some((85, 80.5))));
        // Never above a quality that passed, never at one that failed.
        let (tried, served) = fit(90, 0.3, linear);
        assert!(tried.len() <= WHOLE_TRIES, "{tried:?}");
        assert_eq!(served, Some((85, 80.5)), "{tried:?}");
    }

    #[test]
    fn the_whole_image_fit_gives_up_within_its_tries() {
        // Nothing passes: three tries upwards, the last at the ceiling.
        let (tried, served) = fit(90, 1.0, |_| 70.0);
        assert_eq!((tried, served), (vec![90, 100], None));
        // An encoder error after a pass serves the pass.
        let mut whole = |q: u8, _: bool| -> Result<Candidate, Failed> {
            if q < 90 {
                return Err((KeepReason::Unsupported("boom".into()), 2));
            }
            Ok(Candidate {
                bytes: vec![0; 100],
                quality: q,
                score: Some(85.0),
                encodes: 1,
            })
        };
        let served = fit_whole(90, 1.0, 80.1, (40, 100), WHOLE_TRIES, &mut whole).unwrap();
        assert_eq!(served.map(|c| c.quality), Some(90));
    }
}
