//! bytes + plan -> converted bytes, or the reason to keep the original.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codecs::{self, panic_message, webp, Image};
use crate::sizing::{delivered_size, OutputCaps, SizeRequest};
use crate::sniff::{sniff, SourceFormat};
use crate::{classify, guard};

/// Output formats: AVIF, WebP, or the source's own format re-encoded (after
/// resizing). JPEG 2000 and JPEG XR come later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetFormat {
    Avif,
    WebP,
    /// JPEG 2000 (old Safari).
    Jp2,
    /// JPEG XR (Internet Explorer, legacy Edge).
    Jxr,
    Jpeg,
    Png,
}

impl TargetFormat {
    pub fn mime(self) -> &'static str {
        match self {
            TargetFormat::Avif => "image/avif",
            TargetFormat::WebP => "image/webp",
            TargetFormat::Jp2 => "image/jp2",
            TargetFormat::Jxr => "image/jxr",
            TargetFormat::Jpeg => "image/jpeg",
            TargetFormat::Png => "image/png",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TargetFormat::Avif => "avif",
            TargetFormat::WebP => "webp",
            TargetFormat::Jp2 => "jp2",
            TargetFormat::Jxr => "jxr",
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

/// Encoder qualities, each on its encoder's own 0-100 scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qualities {
    pub webp: u8,
    pub avif: u8,
    pub jpeg: u8,
    /// JPEG 2000 and JPEG XR: configured through the WebP quality (their
    /// scales are calibrated to WebP's, see codecs::jp2 and codecs::jxr),
    /// mapped separately from `qlt`.
    pub jp2: u8,
    pub jxr: u8,
}

impl Qualities {
    /// The defaults. With the visual-quality guard on (the default) each
    /// is the *highest* quality the per-image search may use, so they are
    /// high: the search finds the lowest that still looks the same. WebP
    /// needs q87 (median) to match a q85 JPEG and more for some images;
    /// AVIF above q90 (AV1 quantizer 6) only grows (see README,
    /// "Quality").
    pub const DEFAULT: Qualities = Qualities {
        webp: 100,
        avif: 90,
        jpeg: 100,
        jp2: 100,
        jxr: 100,
    };

    /// `webp`, `avif`, `jpeg` as configured; JPEG 2000 and JPEG XR follow
    /// WebP.
    pub fn configured(webp: u8, avif: u8, jpeg: u8) -> Qualities {
        Qualities {
            webp,
            avif,
            jpeg,
            jp2: webp,
            jxr: webp,
        }
    }

    /// The qualities for a `qlt` URL argument (0-100 on a JPEG-like scale),
    /// each on its encoder's own scale: see [`crate::quality_map`].
    pub fn from_qlt(qlt: u8) -> Qualities {
        let map = |format| crate::quality_map::for_format(qlt, format);
        Qualities {
            webp: map(TargetFormat::WebP),
            avif: map(TargetFormat::Avif),
            jpeg: map(TargetFormat::Jpeg),
            jp2: map(TargetFormat::Jp2),
            jxr: map(TargetFormat::Jxr),
        }
    }

    /// All lowered by `step` (never below 1), e.g. on a poor network.
    pub fn lowered(self, step: u8) -> Qualities {
        let low = |q: u8| q.saturating_sub(step).max(1);
        Qualities {
            webp: low(self.webp),
            avif: low(self.avif),
            jpeg: low(self.jpeg),
            jp2: low(self.jp2),
            jxr: low(self.jxr),
        }
    }
}

/// AVIF encoding is slow: bounded separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvifLimits {
    /// libaom speed (0 slowest .. 10 fastest) of the AVIF served.
    pub speed: u8,
    /// libaom speed of the guard's quality search. When faster than
    /// `speed`, the search runs at this speed and only the quality it finds
    /// is encoded at `speed` (and scored again): most of the search's
    /// encodes cost a fraction of a slow one.
    pub search_speed: u8,
    /// Larger images are not tried in AVIF (the next format is).
    pub max_pixels: u64,
}

impl AvifLimits {
    pub const DEFAULT: AvifLimits = AvifLimits {
        speed: 6,
        search_speed: 9,
        max_pixels: 4_000_000,
    };
}

/// What to produce: computed from the request alone (see
/// [`crate::policy::decide`]), applied to the image by [`transcode`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The formats to try, best first: the first that comes out smaller
    /// than the original is served. Empty: keep the source's format.
    pub targets: Vec<TargetFormat>,
    pub quality: Qualities,
    /// The pixels asked for.
    pub size: SizeRequest,
    /// Upper bounds on the delivered size.
    pub caps: OutputCaps,
    pub avif: AvifLimits,
    /// The visual-quality guard: how each candidate is checked.
    pub guard: Guard,
}

/// The visual-quality guard's settings (`smart_imaging_guard`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guard {
    /// The SSIMULACRA 2 score a converted image must reach against the
    /// decoded original (after resizing, against the resized original).
    /// `None`: no guard, each format is encoded once at its quality.
    pub threshold: Option<f64>,
    /// Encoder runs per format in the search for the smallest passing
    /// output.
    pub max_encodes: usize,
}

impl Guard {
    /// SSIMULACRA 2 >= 80: "can't tell them apart side by side at 1:1".
    pub const DEFAULT: Guard = Guard {
        threshold: Some(80.0),
        max_encodes: 6,
    };
    pub const OFF: Guard = Guard {
        threshold: None,
        max_encodes: 1,
    };
}

impl Plan {
    /// Every format of `targets`, best first, with the default qualities,
    /// limits and guard, at the source size.
    pub fn new(targets: Vec<TargetFormat>) -> Plan {
        Plan {
            targets,
            quality: Qualities::DEFAULT,
            size: SizeRequest::SOURCE,
            caps: OutputCaps::NONE,
            avif: AvifLimits::DEFAULT,
            guard: Guard::DEFAULT,
        }
    }

    /// WebP at `quality`, at the source size.
    pub fn webp(quality: u8) -> Plan {
        Plan {
            targets: vec![TargetFormat::WebP],
            quality: Qualities {
                webp: quality,
                ..Qualities::DEFAULT
            },
            size: SizeRequest::SOURCE,
            caps: OutputCaps::NONE,
            avif: AvifLimits::DEFAULT,
            guard: Guard::OFF,
        }
    }

    /// A key naming what this plan produces, from the request alone:
    /// `avif+webp-q68-w400-dpr2`, `webp-q85-src`, `src-q70-h300` (formats
    /// tried, the quality of the first, the size). Two requests with the same
    /// key get the same bytes, so it can go into `proxy_cache_key`.
    pub fn variant(&self) -> String {
        let formats = if self.targets.is_empty() {
            "src".to_string()
        } else {
            let names: Vec<&str> = self.targets.iter().map(|t| t.name()).collect();
            names.join("+")
        };
        // The quality of the first format tried (what varies between
        // requests of one location is the network step).
        let q = match self.targets.first() {
            Some(TargetFormat::Avif) => self.quality.avif,
            Some(TargetFormat::WebP) => self.quality.webp,
            Some(TargetFormat::Jp2) => self.quality.jp2,
            Some(TargetFormat::Jxr) => self.quality.jxr,
            _ => self.quality.jpeg,
        };
        format!("{formats}-q{q}-{}", self.size)
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
        )
    }

    /// A short, stable token for logs and variables (`not-smaller`,
    /// `guard`, `decode`...).
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
    if plan.targets.is_empty() && !resized {
        // Same format, same pixels: nothing would be gained.
        return Err(KeepReason::NothingToDo);
    }
    let image = if resized {
        crate::resize::resize(&image, width, height)?
    } else {
        image
    };
    let pixels = u64::from(width) * u64::from(height);
    // The guard compares every candidate with the (resized) original:
    // prepared once, shared by all formats tried.
    let reference = match plan.guard.threshold {
        Some(_) => Some(guard::Reference::sampled(
            &image,
            guard::DEFAULT_MAX_PIXELS,
        )?),
        None => None,
    };
    let job = Job {
        image: &image,
        plan,
        limits,
        reference: reference.as_ref(),
        from_png: source_format == SourceFormat::Png,
    };
    let mut encodes = 0;
    let mut last = KeepReason::NothingToDo;
    let served = |candidate: Candidate, format: TargetFormat, encodes: usize| Converted {
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
        && plan.targets.contains(&TargetFormat::WebP)
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
    let own = TargetFormat::from(source_format);
    let mut ladder = plan.targets.clone();
    if resized && !ladder.contains(&own) {
        ladder.push(own);
    }
    for format in ladder {
        if format == TargetFormat::Avif && pixels > plan.avif.max_pixels {
            last = KeepReason::Unsupported(format!(
                "{width}x{height} is over the AVIF limit of {} pixels",
                plan.avif.max_pixels
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
            Some(near) if near.bytes.len() < candidate.bytes.len() => (near, TargetFormat::WebP),
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
        Some(near) if near.bytes.len() < input.len() => {
            Ok(served(near, TargetFormat::WebP, encodes))
        }
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
/// the guard off, the quality used).
fn quality_ceiling(format: TargetFormat, plan: &Plan) -> u8 {
    let q = &plan.quality;
    match format {
        TargetFormat::Avif => q.avif,
        TargetFormat::WebP => q.webp,
        TargetFormat::Jp2 => q.jp2,
        TargetFormat::Jxr => q.jxr,
        TargetFormat::Jpeg => q.jpeg,
        // Lossless: no quality (as `Converted::quality` documents).
        TargetFormat::Png => 0,
    }
}

/// The lowest quality the guard's search tries for `format`: below it no
/// corpus image scored anywhere near the threshold, so probes there are
/// wasted encodes.
fn quality_floor(format: TargetFormat) -> u8 {
    match format {
        TargetFormat::Avif => 20,
        _ => 40,
    }
}

/// How hard an encoder works: the guard's search may probe qualities with a
/// faster setting than the one served (see [`AvifLimits::search_speed`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effort {
    Search,
    Final,
}

/// Qualities below the search's answer tried at the served effort: the
/// slower AVIF speed scores ~1.7 points higher at one quality on the
/// corpus photos, which is worth about three quality steps.
const POLISH_STEP: u8 = 3;

/// Encodes one image, already at its delivered size, in the formats a
/// plan asks for.
struct Job<'a> {
    image: &'a Image,
    plan: &'a Plan,
    limits: &'a Limits,
    /// The guard's prepared reference; `None` when the guard is off.
    reference: Option<&'a guard::Reference>,
    /// The source is a PNG: graphics more often than photos, and lossless
    /// to begin with.
    from_png: bool,
}

/// An error and the encoder runs spent before it.
type Failed = (KeepReason, usize);

impl Job<'_> {
    /// The smallest encoding in `format` that passes the guard (with the
    /// guard off, the encoding at the format's quality).
    fn best(&self, format: TargetFormat) -> Result<Candidate, Failed> {
        if format == TargetFormat::Png {
            // Lossless: nothing to search, nothing to score.
            return self.once(format, 0);
        }
        let ceiling = quality_ceiling(format, self.plan);
        let Some(reference) = self.reference else {
            return self.once(format, ceiling);
        };
        let threshold = self.plan.guard.threshold.unwrap_or(0.0);
        let range = (quality_floor(format).min(ceiling), ceiling);
        let mut tried = 0;
        let mut best_score = f64::NEG_INFINITY;
        let mut probe = |quality: u8, effort: Effort| -> Result<(Vec<u8>, f64), KeepReason> {
            tried += 1;
            let bytes = self.encode(format, quality, effort)?;
            let score = reference.score(&self.decode(&bytes, format)?)?;
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
            Ok(None) if format == TargetFormat::WebP && self.from_png => {
                // Nothing lossy passes (fine lines, text): lossless WebP
                // always does, and needs no score.
                let options = webp::Options::lossless_level(6);
                webp::encode_with(self.image, &options)
                    .map(|bytes| Candidate {
                        bytes,
                        quality: 0,
                        score: None,
                        encodes: tried + 1,
                    })
                    .map_err(|reason| (reason, tried + 1))
            }
            Ok(None) => Err((
                KeepReason::NotComparable {
                    score: best_score,
                    threshold,
                },
                tried,
            )),
            Err(reason) => Err((reason, tried)),
        }
    }

    /// One encode at `quality`, served as it is (guard off, or lossless).
    fn once(&self, format: TargetFormat, quality: u8) -> Result<Candidate, Failed> {
        self.encode(format, quality, Effort::Final)
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
        let bytes = webp::encode_with(self.image, &options).map_err(|reason| (reason, 1))?;
        let score = match self.reference {
            Some(reference) => {
                let decoded = self
                    .decode(&bytes, TargetFormat::WebP)
                    .map_err(|r| (r, 1))?;
                let score = reference.score(&decoded).map_err(|r| (r, 1))?;
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
    fn effort_differs(&self, format: TargetFormat) -> bool {
        format == TargetFormat::Avif && self.plan.avif.search_speed > self.plan.avif.speed
    }

    fn encode(
        &self,
        format: TargetFormat,
        quality: u8,
        effort: Effort,
    ) -> Result<Vec<u8>, KeepReason> {
        let (image, plan) = (self.image, self.plan);
        match format {
            TargetFormat::Avif => {
                let speed = match effort {
                    Effort::Search => plan.avif.search_speed.max(plan.avif.speed),
                    Effort::Final => plan.avif.speed,
                };
                let options = codecs::avif::Options {
                    // Full-resolution chroma for PNG sources: 4:2:0 smears
                    // the thin coloured lines of graphics, and no lossy
                    // 4:2:0 encoding passes the guard on some of them.
                    chroma: if self.from_png {
                        codecs::avif::Chroma::Yuv444
                    } else {
                        codecs::avif::Chroma::Yuv420
                    },
                    ..codecs::avif::Options::new(quality, speed)
                };
                codecs::avif::encode_with(image, &options)
            }
            TargetFormat::WebP => {
                // Lossy alpha where the guard checks the result (69 %
                // saved on the corpus alpha PNGs, against 57 % with
                // lossless alpha); lossless alpha without the guard.
                let options = webp::Options {
                    alpha_quality: self.reference.map(|_| quality),
                    ..webp::Options::new(quality)
                };
                webp::encode_with(image, &options)
            }
            TargetFormat::Jp2 => codecs::jp2::encode(image, quality),
            TargetFormat::Jxr => codecs::jxr::encode(image, quality),
            TargetFormat::Jpeg => codecs::jpeg::encode(image, quality),
            TargetFormat::Png => codecs::png::encode(image),
        }
    }

    /// Decodes a candidate for the guard.
    fn decode(&self, bytes: &[u8], format: TargetFormat) -> Result<Image, KeepReason> {
        let decoded = match format {
            TargetFormat::WebP => webp::decode(bytes),
            TargetFormat::Avif => codecs::avif::decode(bytes),
            TargetFormat::Jp2 => codecs::jp2::decode(bytes),
            TargetFormat::Jxr => codecs::jxr::decode(bytes),
            TargetFormat::Jpeg | TargetFormat::Png => return codecs::decode(bytes, self.limits),
        };
        decoded.map_err(|e| {
            KeepReason::Encode(format!("{}: decoding the candidate: {e}", format.name()))
        })
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
