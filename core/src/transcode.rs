//! bytes + plan -> converted bytes, or the reason to keep the original.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codecs::{self, panic_message, webp, Image};
use crate::sizing::{delivered_size, OutputCaps, SizeRequest};
use crate::sniff::{sniff, SourceFormat};

/// Output formats: WebP, or the source's own format re-encoded (after
/// resizing). AVIF, JPEG 2000, JPEG XR come later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetFormat {
    WebP,
    Jpeg,
    Png,
}

impl TargetFormat {
    pub fn mime(self) -> &'static str {
        match self {
            TargetFormat::WebP => "image/webp",
            TargetFormat::Jpeg => "image/jpeg",
            TargetFormat::Png => "image/png",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TargetFormat::WebP => "webp",
            TargetFormat::Jpeg => "jpeg",
            TargetFormat::Png => "png",
        }
    }
}

impl From<SourceFormat> for TargetFormat {
    fn from(source: SourceFormat) -> Self {
        match source {
            SourceFormat::Jpeg => TargetFormat::Jpeg,
            SourceFormat::Png => TargetFormat::Png,
        }
    }
}

/// What to produce: computed from the request alone (see
/// [`crate::policy::decide`]), applied to the image by [`transcode`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The output format; `None` keeps the source's format.
    pub target: Option<TargetFormat>,
    /// Encoder quality on the encoder's own 0-100 scale (lossy formats).
    pub quality: u8,
    /// The pixels asked for.
    pub size: SizeRequest,
    /// Upper bounds on the delivered size.
    pub caps: OutputCaps,
}

impl Plan {
    /// WebP at `quality`, at the source size.
    pub const fn webp(quality: u8) -> Plan {
        Plan {
            target: Some(TargetFormat::WebP),
            quality,
            size: SizeRequest::SOURCE,
            caps: OutputCaps::NONE,
        }
    }

    /// A key naming what this plan produces, from the request alone:
    /// `webp-q85-w400-dpr2`, `src-q85-h300`. Two requests with the same key
    /// get the same bytes, so it can go into `proxy_cache_key`.
    pub fn variant(&self) -> String {
        let format = self.target.map_or("src", TargetFormat::name);
        format!("{format}-q{}-{}", self.quality, self.size)
    }
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
    /// Neither the format nor the size would change.
    NothingToDo,
}

impl KeepReason {
    /// True when the reason is a fault worth an `error_log` line at level
    /// `error`/`warn` (as opposed to an expected outcome like "not smaller").
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            KeepReason::NotSmaller { .. } | KeepReason::NotAnImage | KeepReason::NothingToDo
        )
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
            KeepReason::NothingToDo => write!(f, "neither format nor size would change"),
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
    let Some(source_format) = sniff(input) else {
        return Err(KeepReason::NotAnImage);
    };
    let image = codecs::decode(input, limits)?;
    let source = (image.width, image.height);
    let (width, height) = delivered_size(source, &plan.size, &plan.caps);
    let resized = (width, height) != source;
    if plan.target.is_none() && !resized {
        // Same format, same pixels: nothing would be gained.
        return Err(KeepReason::NothingToDo);
    }
    let image = if resized {
        crate::resize::resize(&image, width, height)?
    } else {
        image
    };
    let format = plan.target.unwrap_or(source_format.into());
    let bytes = match format {
        TargetFormat::WebP => webp::encode(&image, plan.quality)?,
        TargetFormat::Jpeg | TargetFormat::Png => {
            encode_source_format(&image, format, plan.quality)?
        }
    };
    if bytes.len() >= input.len() {
        return Err(KeepReason::NotSmaller {
            original: input.len(),
            converted: bytes.len(),
        });
    }
    Ok(Converted {
        bytes,
        format,
        width,
        height,
    })
}

/// Re-encoding in the source's format (after resizing): MozJPEG for JPEG,
/// lossless for PNG.
fn encode_source_format(
    image: &Image,
    format: TargetFormat,
    quality: u8,
) -> Result<Vec<u8>, KeepReason> {
    match format {
        TargetFormat::Jpeg => codecs::jpeg::encode(image, quality),
        TargetFormat::Png => codecs::png::encode(image),
        TargetFormat::WebP => webp::encode(image, quality),
    }
}
