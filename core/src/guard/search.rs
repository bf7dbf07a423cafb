//! The per-image quality search: the smallest output whose score passes.
//!
//! # Design
//!
//! A lossy encoder's output shrinks, and its score falls, as the quality
//! setting falls. Assuming that (monotonicity), the lowest passing quality
//! in `range` is found by a bracketing search:
//!
//! - **Bracket.** The highest quality tried that failed and the lowest
//!   that passed bound the answer; every probe lies strictly between them,
//!   so each encode narrows the interval. The search ends when the two are
//!   adjacent (the answer is proven, under the assumption), or when
//!   `max_encodes` have been spent.
//! - **Start** three quarters up the range (q88 of 50..100): a
//!   visually-lossless target sits high on every quality scale (WebP needs
//!   about q87 at the median against q85 JPEGs, the notes measured), so the
//!   first probe usually passes and already bounds the answer from above.
//! - **Next probes.** Where the line through two probes crosses the
//!   threshold (a secant step: over a few steps the score is close to
//!   linear in the quality, so this usually lands within a step of the
//!   answer): through the bracket when both sides are known, else through
//!   the last two probes (extrapolating, clamped to the open interval).
//!   After the first probe, or when a secant step fails to halve the open
//!   interval, the next probe bisects it instead, so the interval at
//!   least halves every two encodes whatever the curve's shape.
//! - **The top.** If nothing has passed when one encode is left, that
//!   encode goes to the top of the range: if even that fails, nothing in
//!   the range passes and the result is `None`.
//! - **Best seen.** Encoders are not exactly monotone (on the corpus,
//!   WebP's score falls at 12 % of the one-step quality increases,
//!   rarely by more than 0.5), so the result is the *smallest* passing
//!   output seen, not merely the lowest quality.
//!
//! Measured on WebP curves of 23 corpus images (every quality 50..=100
//! encoded and scored, threshold 80, at most 6 encodes): the search ends
//! on the smallest passing output of the whole range for 12 of 12 photos
//! (4.25 encodes on average), and within 1 % of it for graphics (4.8
//! encodes, at most 2.8 % over) and images with alpha (3.6 encodes).
//! Pure bisection needs 5.7-6 encodes and misses by 2 % on photos (up to
//! 11 %); starting at the middle of the range costs 0.4 more encodes on
//! photos, 0.3 fewer on graphics.

use super::{Reference, DEFAULT_MAX_PIXELS};
use crate::codecs::Image;
use crate::KeepReason;

/// What [`smallest_passing`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The encoded image.
    pub bytes: Vec<u8>,
    /// The quality it was encoded at.
    pub quality: u8,
    /// Its score against the reference.
    pub score: f64,
    /// How many times the encoder ran in the search (all probes, passing or
    /// not).
    pub encodes: usize,
}

/// Searches `range` (inclusive, the encoder's quality scale) for the
/// smallest output of `encode` whose decoded pixels score at least
/// `threshold` against `reference`, running `encode` at most
/// `max_encodes` times. `Ok(None)`: nothing tried passed, and the top of
/// the range was tried (and failed) unless `max_encodes` is 0.
///
/// Images over [`DEFAULT_MAX_PIXELS`] are scored on a sample of tiles
/// (see [`Reference::sampled`]); [`smallest_passing_against`] takes a
/// prepared [`Reference`] instead.
///
/// Errors are the first error of `encode`, `decode` or the scoring (e.g.
/// a decoded size different from the reference's), except for
/// [`KeepReason::TooMuchWork`] once an output has passed: the search then
/// ends on the smallest passing output so far.
pub fn smallest_passing(
    encode: impl FnMut(u8) -> Result<Vec<u8>, KeepReason>,
    decode: impl Fn(&[u8]) -> Result<Image, KeepReason>,
    reference: &Image,
    threshold: f64,
    range: (u8, u8),
    max_encodes: usize,
) -> Result<Option<Found>, KeepReason> {
    let reference = Reference::sampled(reference, DEFAULT_MAX_PIXELS)?;
    smallest_passing_against(encode, decode, &reference, threshold, range, max_encodes)
}

/// [`smallest_passing`] against a prepared [`Reference`].
pub fn smallest_passing_against(
    mut encode: impl FnMut(u8) -> Result<Vec<u8>, KeepReason>,
    decode: impl Fn(&[u8]) -> Result<Image, KeepReason>,
    reference: &Reference,
    threshold: f64,
    range: (u8, u8),
    max_encodes: usize,
) -> Result<Option<Found>, KeepReason> {
    let probe = |quality: u8| -> Result<(Vec<u8>, f64), KeepReason> {
        let bytes = encode(quality)?;
        let score = reference.score(&decode(&bytes)?)?;
        Ok((bytes, score))
    };
    search(probe, threshold, range, max_encodes)
}

/// Where the first probe goes, as a fraction of the range from its bottom.
const START: f64 = 0.75;

/// The quality the search tries first in `range` (inclusive, low to
/// high): [`START`] of the way up.
pub fn first_probe(range: (u8, u8)) -> u8 {
    let (lo, hi) = (range.0.min(range.1), range.0.max(range.1));
    lo + (f64::from(hi - lo) * START).round() as u8
}

/// One probe's outcome.
#[derive(Clone, Copy)]
struct Point {
    quality: i32,
    score: f64,
}

/// The search proper, over any `probe: quality -> (bytes, score)`.
pub fn search(
    mut probe: impl FnMut(u8) -> Result<(Vec<u8>, f64), KeepReason>,
    threshold: f64,
    range: (u8, u8),
    max_encodes: usize,
) -> Result<Option<Found>, KeepReason> {
    let (lo, hi) = (
        i32::from(range.0.min(range.1)),
        i32::from(range.0.max(range.1)),
    );
    // Highest failing and lowest passing quality tried.
    let mut fail: Option<Point> = None;
    let mut pass: Option<Point> = None;
    // The probe before the latest, for the secant when one side is
    // unknown (then both are on the same side).
    let mut last: Option<Point> = None;
    let mut latest: Option<Point> = None;
    // Set when a secant step failed to halve the open interval: the next
    // step bisects, so the interval at least halves every two encodes.
    let mut bisect = false;
    let mut best: Option<Found> = None;
    let mut encodes = 0;
    loop {
        // The untried qualities that can still be the answer.
        let low = fail.map_or(lo, |p| p.quality + 1);
        let high = pass.map_or(hi, |p| p.quality - 1);
        if low > high || encodes >= max_encodes {
            break;
        }
        let quality = if pass.is_none() && max_encodes - encodes == 1 {
            // Last chance: if the top fails, nothing passes.
            hi
        } else {
            next_probe(lo, hi, low, high, fail, pass, last, threshold, bisect)
        };
        debug_assert!((low..=high).contains(&quality));
        let (bytes, score) = match probe(quality as u8) {
            Ok(probed) => probed,
            // Out of work budget with an output that passed: that is
            // served (any later probe would only have made it smaller).
            Err(KeepReason::TooMuchWork { .. }) if best.is_some() => break,
            Err(reason) => return Err(reason),
        };
        encodes += 1;
        let point = Point { quality, score };
        if score >= threshold {
            pass = Some(point);
            if best.as_ref().is_none_or(|b| bytes.len() <= b.bytes.len()) {
                best = Some(Found {
                    bytes,
                    quality: quality as u8,
                    score,
                    encodes: 0,
                });
            }
        } else {
            fail = Some(point);
        }
        (last, latest) = (latest, Some(point));
        let width = pass.map_or(hi, |p| p.quality - 1) - fail.map_or(lo, |p| p.quality + 1) + 1;
        bisect = !bisect && 2 * width > high - low + 1;
    }
    Ok(best.map(|found| Found { encodes, ..found }))
}

/// The next quality to try, in `low..=high` (not empty).
#[allow(clippy::too_many_arguments)]
fn next_probe(
    lo: i32,
    hi: i32,
    low: i32,
    high: i32,
    fail: Option<Point>,
    pass: Option<Point>,
    last: Option<Point>,
    threshold: f64,
    bisect: bool,
) -> i32 {
    // Two points to draw the secant through: the bracket if both sides are
    // known, else the two latest probes (both on the same side: the line
    // extrapolates, and the clamp below keeps it in the open interval).
    let secant = match (fail, pass, last) {
        _ if bisect => None,
        (Some(f), Some(p), _) => Some((f, p)),
        (Some(a), None, Some(b)) | (None, Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let q = match secant {
        // The first probe.
        None if fail.is_none() && pass.is_none() => i32::from(first_probe((lo as u8, hi as u8))),
        // One probe, or a forced bisection: bisect the open interval.
        None if pass.is_some() => (low + high) / 2,
        None => (low + high + 1) / 2,
        Some((a, b)) => {
            // Where the line through the two crosses the threshold,
            // rounded up (towards passing). Equal scores: no slope to
            // follow, take the far end of the open interval.
            let t = (threshold - a.score) / (b.score - a.score);
            let q = f64::from(a.quality) + t * f64::from(b.quality - a.quality);
            if q.is_finite() {
                // (Less a hair, so that an exact crossing is not pushed up
                // by rounding.)
                (q - 1e-6).ceil() as i32
            } else if pass.is_some() {
                low
            } else {
                high
            }
        }
    };
    q.clamp(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search on a synthetic encoder: output size = quality,
    /// score = `score(quality)`. Returns (found quality, encodes, probes).
    fn run(
        score: impl Fn(u8) -> f64,
        threshold: f64,
        range: (u8, u8),
        max_encodes: usize,
    ) -> (Option<(u8, usize)>, Vec<u8>) {
        let mut probes = Vec::new();
        let found = search(
            |q| {
                probes.push(q);
                Ok((vec![0; q as usize], score(q)))
            },
            threshold,
            range,
            max_encodes,
        )
        .unwrap();
        (found.map(|f| (f.quality, f.encodes)), probes)
    }

    #[test]
    fn finds_the_exact_answer_of_a_linear_score() {
        let mut total = 0;
        for answer in 50..=100u8 {
            let score = |q: u8| 80.0 + (f64::from(q) - f64::from(answer)) * 0.7;
            let (found, probes) = run(score, 80.0, (50, 100), 6);
            let (q, encodes) = found.unwrap();
            assert_eq!(q, answer, "probes {probes:?}");
            assert!(encodes <= 5, "{answer}: {probes:?}");
            total += encodes;
            // Proven: the quality below was tried and failed (unless the
            // answer is the bottom of the range).
            assert!(answer == 50 || probes.contains(&(answer - 1)), "{probes:?}");
        }
        let mean = total as f64 / 51.0;
        assert!(mean <= 4.5, "{mean} encodes on average");
    }

    #[test]
    fn curved_scores_within_the_budget() {
        // Concave and convex responses, steep and flat: the answer or
        // at most three steps above it, within 6 encodes.
        for answer in 50..=100u8 {
            for curve in [0.3, 0.5, 2.0, 3.0] {
                let score = |q: u8| {
                    let x = (f64::from(q) - 50.0) / 50.0;
                    let a = (f64::from(answer) - 50.0) / 50.0;
                    80.0 + 30.0 * (x.powf(curve) - a.powf(curve))
                };
                let (found, probes) = run(score, 80.0, (50, 100), 6);
                let (q, _) = found.unwrap();
                assert!(
                    q >= answer && q <= answer + 3,
                    "{answer} {curve}: {probes:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_passes() {
        let (found, probes) = run(|_| 10.0, 80.0, (50, 100), 6);
        assert_eq!(found, None);
        assert_eq!(probes.last(), Some(&100), "the top is always tried");
        // Budget of one: straight to the top.
        let (found, probes) = run(|_| 10.0, 80.0, (50, 100), 1);
        assert_eq!((found, probes), (None, vec![100]));
        let (found, probes) = run(|_| 10.0, 80.0, (50, 100), 0);
        assert_eq!((found, probes), (None, vec![]));
    }

    #[test]
    fn everything_passes() {
        let (found, probes) = run(|_| 99.0, 80.0, (50, 100), 6);
        assert_eq!(found.unwrap().0, 50, "{probes:?}");
        assert!(probes.len() <= 6);
    }

    #[test]
    fn only_the_top_passes() {
        let score = |q: u8| if q == 100 { 85.0 } else { 60.0 };
        let (found, probes) = run(score, 80.0, (50, 100), 6);
        assert_eq!(found.unwrap().0, 100, "{probes:?}");
    }

    #[test]
    fn keeps_the_smallest_passing_output() {
        // Non-monotone sizes: q70 passes and is smaller than q60, which
        // passes too.
        let mut probes = Vec::new();
        let found = search(
            |q| {
                probes.push(q);
                let size = if q == 60 { 1000 } else { usize::from(q) };
                Ok((vec![0; size], if q >= 55 { 90.0 } else { 10.0 }))
            },
            80.0,
            (50, 100),
            6,
        )
        .unwrap()
        .unwrap();
        if probes.contains(&60) {
            assert_ne!(found.quality, 60);
        }
        assert!(found.score >= 80.0);
    }

    #[test]
    fn single_quality_range_and_reversed_range() {
        let (found, probes) = run(|_| 90.0, 80.0, (75, 75), 6);
        assert_eq!((found, probes), (Some((75, 1)), vec![75]));
        let (found, _) = run(f64::from, 80.0, (100, 50), 6);
        assert_eq!(found.unwrap().0, 80);
    }

    #[test]
    fn out_of_work_ends_on_what_passed() {
        // The first probe (q88) passes; the next runs out of budget.
        let mut calls = 0;
        let found = search(
            |q| {
                calls += 1;
                if calls > 1 {
                    return Err(KeepReason::TooMuchWork {
                        budget: 1,
                        spent: 1,
                        next: 1,
                    });
                }
                Ok((vec![0; q as usize], 90.0))
            },
            80.0,
            (50, 100),
            6,
        )
        .unwrap()
        .unwrap();
        assert_eq!((found.quality, found.encodes), (88, 1));
        // Nothing passed yet: the error.
        let result = search(
            |_| {
                Err(KeepReason::TooMuchWork {
                    budget: 1,
                    spent: 1,
                    next: 1,
                })
            },
            80.0,
            (50, 100),
            6,
        );
        assert!(matches!(result, Err(KeepReason::TooMuchWork { .. })));
    }

    #[test]
    fn errors_propagate() {
        let result = search(
            |_| Err(KeepReason::Encode("boom".into())),
            80.0,
            (50, 100),
            6,
        );
        assert_eq!(result, Err(KeepReason::Encode("boom".into())));
    }
}
