//! What a conversion ends in: the converted image, or the reason to keep
//! the original; and the resource bounds checked on the way.

use std::fmt;

use crate::codecs::Format;
use crate::work::WorkBudget;

/// Resource bounds: memory, checked before any large allocation, and
/// work, checked before each step.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest decoded image accepted, in pixels (width * height).
    pub max_pixels: u64,
    /// The work a conversion may do for its input's size
    /// ([`crate::work`]); `None`: unbounded.
    pub work: Option<WorkBudget>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 16_000_000,
            work: Some(WorkBudget::DEFAULT),
        }
    }
}

#[derive(Debug)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// The encoder quality it was made at (its own 0-100 scale; 0 for
    /// lossless PNG).
    pub quality: u8,
    /// Its SSIMULACRA 2 score against the decoded original, when the guard
    /// checked it.
    pub score: Option<f64>,
    /// Encoder runs it took, over all formats tried.
    pub encodes: usize,
}

/// Why the original response is served unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum KeepReason {
    NotAnImage,
    Unsupported(String),
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    Decode(String),
    Encode(String),
    NotSmaller {
        original: usize,
        converted: usize,
    },
    /// No encoding small enough passed the visual-quality guard.
    NotComparable {
        /// The best score seen (at the highest quality allowed).
        score: f64,
        threshold: f64,
    },
    Panic(String),
    /// Neither the format nor the size would change.
    NothingToDo,
    /// The process is stopping ([`crate::stop`]): the conversion gave up.
    Stopped,
    /// Nobody waits for the result any more ([`crate::stop::Cancel`]: the
    /// client went away): the conversion gave up.
    Cancelled,
    /// The next step would have taken the conversion over its work budget
    /// ([`crate::work`]), and nothing that passed was smaller yet. In
    /// pixel-passes: the budget, what was spent, what the step needed.
    TooMuchWork {
        budget: u64,
        spent: u64,
        next: u64,
    },
}

impl KeepReason {
    /// True when the reason is a fault worth an `error_log` line at level
    /// `error`/`warn` (as opposed to an expected outcome like "not smaller").
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            KeepReason::NotSmaller { .. }
                | KeepReason::NotComparable { .. }
                | KeepReason::NotAnImage
                | KeepReason::NothingToDo
                | KeepReason::Stopped
                | KeepReason::Cancelled
                | KeepReason::TooMuchWork { .. }
        )
    }

    /// Every [`KeepReason::code`], each once (for per-reason tables such as
    /// the status endpoint's counters).
    pub const CODES: [&'static str; 12] = [
        "not-image",
        "unsupported",
        "too-many-pixels",
        "decode",
        "encode",
        "not-smaller",
        "guard",
        "internal",
        "nothing-to-do",
        "stopped",
        "cancelled",
        "too-much-work",
    ];

    /// A short, stable token for logs and variables (`not-smaller`,
    /// `guard`, `decode`...), one of [`KeepReason::CODES`].
    pub fn code(&self) -> &'static str {
        match self {
            KeepReason::NotAnImage => "not-image",
            KeepReason::Unsupported(_) => "unsupported",
            KeepReason::TooManyPixels { .. } => "too-many-pixels",
            KeepReason::Decode(_) => "decode",
            KeepReason::Encode(_) => "encode",
            KeepReason::NotSmaller { .. } => "not-smaller",
            KeepReason::NotComparable { .. } => "guard",
            KeepReason::Panic(_) => "internal",
            KeepReason::NothingToDo => "nothing-to-do",
            KeepReason::Stopped => "stopped",
            KeepReason::Cancelled => "cancelled",
            KeepReason::TooMuchWork { .. } => "too-much-work",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::NotAnImage => write!(f, "body is not a JPEG or PNG"),
            KeepReason::Unsupported(s) => write!(f, "unsupported image: {s}"),
            KeepReason::TooManyPixels { width, height, max_pixels } => write!(
                f,
                "image is {width}x{height}, over the limit of {max_pixels} pixels"
            ),
            KeepReason::Decode(s) => write!(f, "decode failed: {s}"),
            KeepReason::Encode(s) => write!(f, "encode failed: {s}"),
            KeepReason::NotSmaller { original, converted } => write!(
                f,
                "converted image ({converted} bytes) is not smaller than the original ({original} bytes)"
            ),
            KeepReason::NotComparable { score, threshold } => write!(
                f,
                "no encoding passed the visual-quality guard (best SSIMULACRA 2 score {score:.1}, threshold {threshold})"
            ),
            KeepReason::Panic(s) => write!(f, "internal error: {s}"),
            KeepReason::NothingToDo => write!(f, "neither format nor size would change"),
            KeepReason::Stopped => write!(f, "the process is stopping"),
            KeepReason::Cancelled => write!(f, "nobody waits for the result any more"),
            KeepReason::TooMuchWork { budget, spent, next } => write!(
                f,
                "the next step ({next} pixel-passes) would take the conversion over its work budget ({spent} of {budget} spent)"
            ),
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Converted(Converted),
    Original(KeepReason),
}

#[cfg(test)]
mod tests {
    use super::KeepReason;

    #[test]
    fn codes_lists_every_code_once() {
        let every = [
            KeepReason::NotAnImage,
            KeepReason::Unsupported(String::new()),
            KeepReason::TooManyPixels {
                width: 1,
                height: 1,
                max_pixels: 1,
            },
            KeepReason::Decode(String::new()),
            KeepReason::Encode(String::new()),
            KeepReason::NotSmaller {
                original: 1,
                converted: 1,
            },
            KeepReason::NotComparable {
                score: 0.0,
                threshold: 0.0,
            },
            KeepReason::Panic(String::new()),
            KeepReason::NothingToDo,
            KeepReason::Stopped,
            KeepReason::Cancelled,
            KeepReason::TooMuchWork {
                budget: 1,
                spent: 1,
                next: 1,
            },
        ];
        // A match with every variant: a new one fails to compile here
        // until it is listed above.
        for reason in &every {
            match reason {
                KeepReason::NotAnImage
                | KeepReason::Unsupported(_)
                | KeepReason::TooManyPixels { .. }
                | KeepReason::Decode(_)
                | KeepReason::Encode(_)
                | KeepReason::NotSmaller { .. }
                | KeepReason::NotComparable { .. }
                | KeepReason::Panic(_)
                | KeepReason::NothingToDo
                | KeepReason::Stopped
                | KeepReason::Cancelled
                | KeepReason::TooMuchWork { .. } => {}
            }
        }
        let codes: Vec<&str> = every.iter().map(KeepReason::code).collect();
        assert_eq!(codes, KeepReason::CODES);
    }
}
