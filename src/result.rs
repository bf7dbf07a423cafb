//! What the module did with a response, as `$smart_imaging_result` and the
//! `X-Smart-Imaging` header (`smart_imaging_debug_header on`) spell it:
//!
//! ```text
//! converted format=avif in=120034 out=45012 saved=62.5% quality=55 score=81.3 encodes=5 time=412ms
//! converted format=webp in=120034 out=51876 saved=56.8% quality=90 encodes=4 time=2ms from=stash
//! original reason=not-smaller in=1000 out=1200 time=9ms
//! original reason=too-big in=20971520 buffer=10485760
//! original reason=deferred in=120034 time=2ms
//! ```
//!
//! One line of `key=value` fields separated by spaces, no value containing
//! a space, so log processors can split it. `reason` is a short stable code:
//! those of the nginx layer are the constants below, the others are
//! `KeepReason::code()` of the core.

use core::fmt;
use std::time::Duration;

use smart_imaging_core::{KeepReason, Outcome};

/// `bfc=off` in the query string.
pub const OFF: &str = "off";
/// A response of an enabled location the module does not convert: not a
/// `200`/`206`/`304`, not a JPEG/PNG type, a `Content-Encoding`.
pub const NOT_CANDIDATE: &str = "not-candidate";
/// The body is over `smart_imaging_buffer`.
pub const TOO_BIG: &str = "too-big";
/// `smart_imaging_max_jobs` reached, or the thread pool's queue is full.
pub const BUSY: &str = "busy";
/// A `304` (the original's validator, or the derivative's own `ETag`).
pub const NOT_MODIFIED: &str = "not-modified";
/// A `206` from the upstream (a range of the original).
pub const RANGE: &str = "range";
/// A `HEAD` request left a `HEAD` (its response made before the content
/// phase, or no memory to mark it): no body to convert. Other `HEAD`s of
/// an enabled location are served as `GET`s (`crate::head`) and report
/// what their `GET` would.
pub const HEAD: &str = "head";
/// The body reached the module as a file buffer, not in memory.
pub const FILE_BUFFER: &str = "file-buffer";
/// The body never arrived in full (upstream error, client gone).
pub const INCOMPLETE: &str = "incomplete";
/// The conversion outlasted `smart_imaging_timeout` (or 90 % of
/// `send_timeout`); it was abandoned.
pub const TIMEOUT: &str = "timeout";
/// The request ended (the client closed the connection) while its
/// conversion was queued; it never ran.
pub const DROPPED: &str = "dropped";
/// `smart_imaging_background on`: the stash has no result for the request
/// yet; its conversion runs in the background (or already did, for an
/// earlier request), and the original stands in meanwhile.
pub const DEFERRED: &str = "deferred";
/// A bug or an allocation failure of the nginx layer.
pub const INTERNAL: &str = "internal";

/// The reasons of this layer, above.
const LAYER_REASONS: [&str; 13] = [
    OFF,
    NOT_CANDIDATE,
    TOO_BIG,
    BUSY,
    NOT_MODIFIED,
    RANGE,
    HEAD,
    FILE_BUFFER,
    INCOMPLETE,
    TIMEOUT,
    DROPPED,
    DEFERRED,
    INTERNAL,
];

/// How many reasons there may be (the status zone's table has this many
/// slots; checked when compiling).
pub const MAX_REASONS: usize = 32;
const _: () = assert!(LAYER_REASONS.len() + KeepReason::CODES.len() <= MAX_REASONS);

/// Every `reason` an original may have, each once: this layer's, then the
/// core's (`KeepReason::code`).
pub fn reasons() -> impl Iterator<Item = &'static str> {
    LAYER_REASONS.into_iter().chain(
        KeepReason::CODES
            .into_iter()
            .filter(|code| !LAYER_REASONS.contains(code)),
    )
}

/// The outcome of one response.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Converted {
        format: &'static str,
        input: usize,
        output: usize,
        quality: u8,
        score: Option<f64>,
        encodes: usize,
        elapsed: Duration,
        /// Served from the stash: an abandoned or background conversion's
        /// result.
        stashed: bool,
    },
    Kept(Kept),
}

/// The original was served: why, plus what is known about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kept {
    pub reason: &'static str,
    /// The original's size in bytes.
    pub input: Option<usize>,
    /// The size of the (rejected) conversion.
    pub output: Option<usize>,
    /// The best guard score (`guard`).
    pub score: Option<f64>,
    /// `smart_imaging_buffer` (`too-big`).
    pub buffer: Option<usize>,
    /// Transcodes in flight (`busy` from `smart_imaging_max_jobs`).
    pub jobs: Option<usize>,
    /// Wall time of the transcode job, when one ran; for `timeout` and
    /// `dropped`, the time the request waited.
    pub elapsed: Option<Duration>,
    /// The reason came from the stash (an earlier conversion's outcome).
    pub stashed: bool,
}

impl Kept {
    pub fn new(reason: &'static str, input: Option<usize>) -> Kept {
        Kept {
            reason,
            input,
            ..Kept::default()
        }
    }
}

impl Report {
    /// The original was served for a reason of the moment (load, a bug, a
    /// conversion deferred to the background), not because of the image or
    /// the request: the next request may well get the variant, so no cache
    /// may keep this response in its place. The other reasons
    /// (`not-smaller`, `guard`, `too-big`, ...) give the same answer every
    /// time, and may be cached like any response.
    pub fn is_transient(&self) -> bool {
        matches!(self, Report::Kept(k) if matches!(k.reason, BUSY | TIMEOUT | DEFERRED | INTERNAL))
    }

    /// The original's size and the size of the body served, for a
    /// response whose image the module converted or chose to send
    /// unchanged; None where it did not look at the body or none was sent
    /// in full (`off`, `not-candidate`, `head`, `not-modified`, `range`,
    /// `dropped`, `incomplete`), or the size is not known.
    pub fn served_bytes(&self) -> Option<(usize, usize)> {
        match self {
            Report::Converted { input, output, .. } => Some((*input, *output)),
            Report::Kept(k) => match k.reason {
                OFF | NOT_CANDIDATE | HEAD | NOT_MODIFIED | RANGE | DROPPED | INCOMPLETE => None,
                _ => k.input.map(|n| (n, n)),
            },
        }
    }

    /// The wall time of the conversion job whose result this is (converted
    /// or not, a stash lookup included); None when no job finished for the
    /// request (`timeout` and `dropped` keep the time waited instead).
    pub fn job_time(&self) -> Option<Duration> {
        match self {
            Report::Converted { elapsed, .. } => Some(*elapsed),
            Report::Kept(k) if matches!(k.reason, TIMEOUT | DROPPED) => None,
            Report::Kept(k) => k.elapsed,
        }
    }

    pub fn kept(reason: &'static str, input: Option<usize>) -> Report {
        Report::Kept(Kept::new(reason, input))
    }

    /// The report of a transcode job on `input_len` bytes.
    pub fn from_outcome(outcome: Option<&Outcome>, input_len: usize, elapsed: Duration) -> Report {
        match outcome {
            Some(Outcome::Converted(c)) => Report::Converted {
                format: c.format.name(),
                input: input_len,
                output: c.bytes.len(),
                quality: c.quality,
                score: c.score,
                encodes: c.encodes,
                elapsed,
                stashed: false,
            },
            Some(Outcome::Original(reason)) => {
                let mut kept = Kept::new(reason.code(), Some(input_len));
                match *reason {
                    KeepReason::NotSmaller { converted, .. } => kept.output = Some(converted),
                    KeepReason::NotComparable { score, .. } => kept.score = Some(score),
                    _ => {}
                }
                kept.elapsed = Some(elapsed);
                Report::Kept(kept)
            }
            None => Report::Kept(Kept {
                elapsed: Some(elapsed),
                ..Kept::new(INTERNAL, Some(input_len))
            }),
        }
    }
}

fn millis(d: Duration) -> u128 {
    // Rounded to the nearest millisecond.
    (d.as_micros() + 500) / 1000
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Converted {
                format,
                input,
                output,
                quality,
                score,
                encodes,
                elapsed,
                stashed,
            } => {
                let saved = if *input > 0 {
                    (*input as f64 - *output as f64) * 100.0 / *input as f64
                } else {
                    0.0
                };
                write!(
                    f,
                    "converted format={format} in={input} out={output} saved={saved:.1}% quality={quality}"
                )?;
                if let Some(score) = score {
                    write!(f, " score={score:.1}")?;
                }
                write!(f, " encodes={encodes} time={}ms", millis(*elapsed))?;
                if *stashed {
                    write!(f, " from=stash")?;
                }
                Ok(())
            }
            Report::Kept(k) => {
                write!(f, "original reason={}", k.reason)?;
                if let Some(v) = k.input {
                    write!(f, " in={v}")?;
                }
                if let Some(v) = k.output {
                    write!(f, " out={v}")?;
                }
                if let Some(v) = k.score {
                    write!(f, " score={v:.1}")?;
                }
                if let Some(v) = k.buffer {
                    write!(f, " buffer={v}")?;
                }
                if let Some(v) = k.jobs {
                    write!(f, " jobs={v}")?;
                }
                if let Some(d) = k.elapsed {
                    write!(f, " time={}ms", millis(d))?;
                }
                if k.stashed {
                    write!(f, " from=stash")?;
                }
                Ok(())
            }
        }
    }
}
