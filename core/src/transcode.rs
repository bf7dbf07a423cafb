//! bytes + plan -> converted bytes, or the reason to keep the original.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codecs::{self, panic_message, webp};
use crate::sniff::sniff;

/// Output formats. Only WebP for now; AVIF, JPEG 2000, JPEG XR come later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetFormat {
    WebP,
}

impl TargetFormat {
    pub fn mime(self) -> &'static str {
        match self {
            TargetFormat::WebP => "image/webp",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TargetFormat::WebP => "webp",
        }
    }
}

/// What to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub target: TargetFormat,
    /// Encoder quality on the encoder's own 0-100 scale.
    pub quality: u8,
}

/// Resource bounds, checked before any large allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest decoded image accepted, in pixels (width * height).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 16_000_000,
        }
    }
}

#[derive(Debug)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub format: TargetFormat,
    pub width: u32,
    pub height: u32,
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
    Panic(String),
}

impl KeepReason {
    /// True when the reason is a fault worth an `error_log` line at level
    /// `error`/`warn` (as opposed to an expected outcome like "not smaller").
    pub fn is_failure(&self) -> bool {
        !matches!(self, KeepReason::NotSmaller { .. } | KeepReason::NotAnImage)
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
            KeepReason::Panic(s) => write!(f, "internal error: {s}"),
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Converted(Converted),
    Original(KeepReason),
}

/// Converts `input` according to `plan`. Never panics: every failure,
/// including a panic inside a codec, becomes `Outcome::Original`.
///
/// The result is `Converted` only if it is strictly smaller than `input`:
/// serving a bigger file in a "better" format would defeat the purpose.
pub fn transcode(input: &[u8], plan: &Plan, limits: &Limits) -> Outcome {
    // The C codecs report errors by unwinding, and any bug of ours should
    // cost one response its conversion, not the nginx worker.
    match catch_unwind(AssertUnwindSafe(|| convert(input, plan, limits))) {
        Ok(Ok(converted)) => Outcome::Converted(converted),
        Ok(Err(reason)) => Outcome::Original(reason),
        Err(payload) => Outcome::Original(KeepReason::Panic(panic_message(&*payload))),
    }
}

fn convert(input: &[u8], plan: &Plan, limits: &Limits) -> Result<Converted, KeepReason> {
    if sniff(input).is_none() {
        return Err(KeepReason::NotAnImage);
    }
    let image = codecs::decode(input, limits)?;
    let bytes = match plan.target {
        TargetFormat::WebP => webp::encode(&image, plan.quality)?,
    };
    if bytes.len() >= input.len() {
        return Err(KeepReason::NotSmaller {
            original: input.len(),
            converted: bytes.len(),
        });
    }
    Ok(Converted {
        bytes,
        format: plan.target,
        width: image.width,
        height: image.height,
    })
}
