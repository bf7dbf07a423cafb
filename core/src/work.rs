//! The work a conversion may do, bounded by what its input is worth
//! (`smart_imaging_work_budget`).
//!
//! `smart_imaging_max_pixels` bounds the memory of a conversion, not its
//! time: a 27 KB JPEG whose header says 3000x3000 (valid: flat grey,
//! which compresses to almost nothing) is decoded, searched and encoded
//! like a 9 MP photo, and holds a pool thread for a second or more before
//! its original is served; a few such URLs requested in a loop take the
//! pool away from every real image. So each conversion gets a budget in
//! proportion to its input's size, [`WorkBudget::for_input`], and is
//! charged before each step (decoding the original, resizing, preparing
//! the guard's reference, every encode, every decode and score of a
//! candidate) what that step will cost; a step that would take it over
//! the budget is not started, and the conversion ends with
//! [`KeepReason::TooMuchWork`] (`too-much-work`), unless the guard
//! already has a candidate that passed and is smaller than the original,
//! which is then served as usual.
//!
//! # The unit: pixel-passes
//!
//! One pixel-pass is the work of one lossy WebP encode (libwebp method 4)
//! of one pixel: ~60-95 ns of one core here (x86-64, 2026-12), 6-9 s per
//! 100 megapixel-passes. Every step costs its pixels times its weight in
//! passes: each format's encode and candidate decode in its registry entry
//! ([`crate::codecs::Codec::work`]), the sources' decoding in
//! [`crate::codecs::decode_work`] (from the header alone: a progressive
//! JPEG's scans, a PNG's bit depth), the guard's own steps here
//! ([`weight`]). The weights are the median CPU time per megapixel of
//! each step on the corpus (`core/examples/work_study.rs`), divided by
//! 80 ms; flat images cost less per pixel than they are charged, never
//! more.
//!
//! # The default
//!
//! [`WorkBudget::DEFAULT`]: 768 pixel-passes per byte of input, and at
//! least 4 million. Charged on every corpus image with every client's
//! formats (`core/examples/work_study.rs --budget`), the most a conversion
//! needed was 659 per byte (an alpha PNG of 1.6 MP in 74 KB, through AVIF
//! then WebP), 86 % of its budget; the densest photo (0.9 MP in 34 KB) 344.
//! The charges depend on the image and the settings only, not on the
//! machine or its load, so the budget changes nothing for any of them,
//! byte for byte. A 27 KB file gets 21 million pixel-passes, what the
//! densest real images of its size spend; its header can claim any number
//! of pixels, the conversion stops at that.
//!
//! Each step is charged in full before it starts, so what a conversion is
//! charged never exceeds its budget; its time follows as closely as the
//! weights follow the image (flat images cost less than they are charged,
//! busy ones up to 2-3x more, the median ~76 ns per pass on the corpus).

use std::cell::Cell;

use crate::outcome::KeepReason;
use crate::stop;

/// `smart_imaging_work_budget <per-byte> [min=<number>]`: how many
/// pixel-passes a conversion may spend per byte of its input, and at
/// least.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkBudget {
    /// Pixel-passes per byte of input.
    pub per_byte: u64,
    /// The least any input gets, however small.
    pub min: u64,
}

impl WorkBudget {
    /// `smart_imaging_work_budget 768 min=4000000`: see the module
    /// documentation.
    pub const DEFAULT: WorkBudget = WorkBudget {
        per_byte: 768,
        min: 4_000_000,
    };

    /// The budget of an input of `bytes` bytes, in pixel-passes.
    pub fn for_input(&self, bytes: usize) -> u64 {
        (bytes as u64).saturating_mul(self.per_byte).max(self.min)
    }
}

/// Weights of the steps the guard takes itself, in passes per pixel
/// processed (see the module documentation). Images with alpha are scored
/// twice (over black and over white): [`weight::ALPHA`] times as much.
pub mod weight {
    /// Downscaling, per pixel of the source (~6-11 ms/MP).
    pub const RESIZE: f64 = 0.12;
    /// Preparing the guard's reference, per pixel scored (~26 ms/MP).
    pub const REFERENCE: f64 = 0.35;
    /// Scoring a candidate, per pixel scored (~46 ms/MP).
    pub const SCORE: f64 = 0.6;
    /// The factor for images with alpha (two backgrounds).
    pub const ALPHA: f64 = 2.0;

    /// `weight` for an image with or without alpha.
    pub fn with_alpha(weight: f64, has_alpha: bool) -> f64 {
        if has_alpha {
            weight * ALPHA
        } else {
            weight
        }
    }
}

/// `width * height` as the work functions count pixels.
pub(crate) fn pixels(width: u32, height: u32) -> f64 {
    f64::from(width) * f64::from(height)
}

/// One conversion's account: its budget and what it has spent.
#[derive(Debug)]
pub(crate) struct Account {
    /// In pixel-passes; `None`: unbounded (`smart_imaging_work_budget off`).
    budget: Option<u64>,
    spent: Cell<f64>,
}

impl Account {
    pub(crate) fn new(budget: Option<&WorkBudget>, input_len: usize) -> Account {
        Account {
            budget: budget.map(|b| b.for_input(input_len)),
            spent: Cell::new(0.0),
        }
    }

    /// The checkpoint before each step, which will cost `cost`
    /// pixel-passes: gives up when the process is stopping
    /// ([`crate::stop`]) or when the step would take the conversion over
    /// its budget; else charges the step.
    pub(crate) fn step(&self, cost: f64) -> Result<(), KeepReason> {
        stop::check()?;
        let spent = self.spent.get();
        if let Some(budget) = self.budget {
            if spent + cost > budget as f64 {
                return Err(KeepReason::TooMuchWork {
                    budget,
                    spent: spent.round() as u64,
                    next: cost.round() as u64,
                });
            }
        }
        self.spent.set(spent + cost);
        Ok(())
    }

    /// What the steps taken so far were charged, in pixel-passes.
    pub(crate) fn spent(&self) -> f64 {
        self.spent.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_grows_with_the_input_from_a_floor() {
        let b = WorkBudget::DEFAULT;
        assert_eq!(b.for_input(0), 4_000_000);
        assert_eq!(b.for_input(1000), 4_000_000);
        assert_eq!(b.for_input(27_158), 27_158 * 768);
        assert_eq!(
            WorkBudget {
                per_byte: u64::MAX,
                min: 0
            }
            .for_input(2),
            u64::MAX
        );
    }

    #[test]
    fn a_step_over_the_budget_is_refused_and_not_charged() {
        let account = Account::new(
            Some(&WorkBudget {
                per_byte: 10,
                min: 0,
            }),
            100,
        );
        assert_eq!(account.step(600.0), Ok(()));
        assert_eq!(
            account.step(500.0),
            Err(KeepReason::TooMuchWork {
                budget: 1000,
                spent: 600,
                next: 500
            })
        );
        // A smaller step still fits.
        assert_eq!(account.step(400.0), Ok(()));
        assert_eq!(account.spent(), 1000.0);
        let unbounded = Account::new(None, 1);
        assert_eq!(unbounded.step(1e18), Ok(()));
    }
}
