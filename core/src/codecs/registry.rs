//! The formats, one description each, in one table.
//!
//! Every format the module reads or writes is a [`Format`]; everything
//! the rest of the crate knows about one (its names, how the client
//! announces it, its quality scale, how to encode and decode it) is its
//! [`Codec`], kept in the format's own file (`avif.rs`, `webp.rs`, ...)
//! and found through [`Format::codec`]. Negotiation, planning, the variant
//! name, the `qlt` mapping, transcoding and the directive parser all go
//! through it. See `README.md` in this folder for adding a format.

use std::fmt;

use super::{avif, jp2, jpeg, jxr, png, webp, Image};
use crate::outcome::{KeepReason, Limits};

/// A format the module reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Avif,
    WebP,
    /// JPEG 2000 (JP2 container), for Safari before WebP.
    Jp2,
    /// JPEG XR, for Internet Explorer and legacy Edge.
    Jxr,
    Jpeg,
    Png,
}

impl Format {
    /// The formats served in place of a JPEG or PNG, in the fixed order of
    /// preference (best first): what `smart_imaging_formats` may list.
    pub const PREFERENCE: [Format; 4] = [Format::Avif, Format::WebP, Format::Jp2, Format::Jxr];

    /// Every format, [`Format::PREFERENCE`] first, then the sources.
    pub const ALL: [Format; 6] = [
        Format::Avif,
        Format::WebP,
        Format::Jp2,
        Format::Jxr,
        Format::Jpeg,
        Format::Png,
    ];

    /// This format's description.
    pub fn codec(self) -> &'static Codec {
        match self {
            Format::Avif => &avif::CODEC,
            Format::WebP => &webp::CODEC,
            Format::Jp2 => &jp2::CODEC,
            Format::Jxr => &jxr::CODEC,
            Format::Jpeg => &jpeg::CODEC,
            Format::Png => &png::CODEC,
        }
    }

    /// Short name, as configuration, variant names and logs spell it:
    /// `avif`, `webp`, `jp2`, `jxr`, `jpeg`, `png`.
    pub fn name(self) -> &'static str {
        self.codec().name
    }

    /// The `Content-Type` to serve it with.
    pub fn mime(self) -> &'static str {
        self.codec().mime
    }

    /// The format of [`Format::PREFERENCE`] named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::PREFERENCE
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Its position in [`Format::ALL`] (for per-format tables).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the module knows about one format.
pub struct Codec {
    pub format: Format,
    /// See [`Format::name`].
    pub name: &'static str,
    pub mime: &'static str,
    /// Media types whose listing in `Accept` (q > 0) says the client
    /// decodes it. Empty for the sources, which are never negotiated.
    pub accept: &'static [&'static str],
    pub quality: QualityScale,
    /// Encodes an image, already at its delivered size.
    pub encode: fn(&Image, &Encoding) -> Result<Vec<u8>, KeepReason>,
    /// Decodes what `encode` made (the guard scores candidates by their
    /// decoded pixels; the sources decode bodies the same way).
    pub decode: fn(&[u8], &Limits) -> Result<Image, KeepReason>,
    /// The largest image, in pixels, worth encoding in it (`None`: no
    /// bound of its own). A larger one tries the next format.
    pub max_pixels: fn(&Tuning) -> Option<u64>,
    /// Whether the guard's search probes at a cheaper effort than the
    /// encode that is served (then the answer is encoded again).
    pub cheaper_search: fn(&Tuning) -> bool,
    /// What its encodes and decodes cost, for the work budget.
    pub work: CodecWork,
}

/// What a format's steps cost, in pixel-passes per pixel (one pass: a
/// lossy WebP encode; see [`crate::work`]), measured with
/// `core/examples/work_study.rs` (the median over the corpus images, which
/// flat images stay under).
#[derive(Clone, Copy)]
pub struct CodecWork {
    /// One encode with these settings, of an image with alpha (`true`) or
    /// without.
    pub encode: fn(&Encoding, bool) -> f64,
    /// Decoding one of its candidates for the guard. (The sources'
    /// decoding is charged from their header: [`super::decode_work`].)
    pub decode: f64,
}

/// A format's quality scale, as the guard's search and `qlt` use it.
pub struct QualityScale {
    /// Lossless: one encode, no quality, nothing to search or score.
    pub lossless: bool,
    /// The lowest quality the guard's search tries: below it no corpus
    /// image scored anywhere near the threshold, so probes there are
    /// wasted encodes.
    pub floor: u8,
    /// The default ceiling (the highest quality the search may use; with
    /// the guard off, the quality used).
    pub default_ceiling: u8,
    /// The format whose `smart_imaging_<name>_quality` directive sets its
    /// ceiling (itself, or another on a calibrated scale).
    pub configured_by: Format,
    /// Knots `(qlt, quality)` of the `qlt` mapping (see
    /// [`crate::quality_map`]); empty: `qlt` is the quality itself.
    pub qlt: &'static [(u8, u8)],
}

/// How hard an encoder works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// A probe of the guard's search.
    Search,
    /// The encode that is served.
    Final,
}

/// Per-format encoder settings from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub avif: avif::AvifLimits,
}

impl Tuning {
    pub const DEFAULT: Tuning = Tuning {
        avif: avif::AvifLimits::DEFAULT,
    };
}

/// One encode: the quality and what the encoder may know of the image.
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    /// On the format's own 0-100 scale.
    pub quality: u8,
    pub effort: Effort,
    /// The source was a PNG: graphics more often than photos.
    pub from_png: bool,
    /// The guard scores the result, so lossy choices an unchecked encode
    /// avoids (lossy alpha) are safe.
    pub guarded: bool,
    pub tuning: Tuning,
}

/// Values per format, e.g. qualities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerFormat<T>([T; Format::ALL.len()]);

impl<T: Copy> PerFormat<T> {
    pub fn from_fn(f: impl FnMut(Format) -> T) -> PerFormat<T> {
        PerFormat(Format::ALL.map(f))
    }

    pub fn get(&self, format: Format) -> T {
        self.0[format.index()]
    }

    pub fn set(&mut self, format: Format, value: T) {
        self.0[format.index()] = value;
    }

    pub fn map(self, mut f: impl FnMut(Format, T) -> T) -> PerFormat<T> {
        PerFormat::from_fn(|format| f(format, self.get(format)))
    }
}

/// For codecs without a pixel bound of their own.
pub(crate) fn unbounded(_: &Tuning) -> Option<u64> {
    None
}

/// For codecs searched at the effort they are served at.
pub(crate) fn same_effort(_: &Tuning) -> bool {
    false
}

/// A candidate decoder's failure as the reason to keep the original.
pub(crate) fn candidate_error(format: Format, error: String) -> KeepReason {
    KeepReason::Encode(format!(
        "{}: decoding the candidate: {error}",
        format.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, format) in Format::ALL.into_iter().enumerate() {
            let codec = format.codec();
            assert_eq!(codec.format, format);
            assert_eq!(format.index(), i);
            assert!(codec.mime.starts_with("image/"), "{format}");
            let scale = &codec.quality;
            assert!(scale.floor <= scale.default_ceiling, "{format}");
            assert!(scale.qlt.windows(2).all(|k| k[0].0 < k[1].0), "{format}");
            // Every negotiated format is announced somehow; sources never.
            assert_eq!(
                Format::PREFERENCE.contains(&format),
                !codec.accept.is_empty(),
                "{format}"
            );
        }
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["avif", "webp", "jp2", "jxr", "jpeg", "png"]);
    }

    #[test]
    fn names_round_trip() {
        for f in Format::PREFERENCE {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(Format::from_name(&f.name().to_uppercase()), Some(f));
        }
        assert_eq!(Format::from_name("jpeg"), None, "a source, not negotiated");
        assert_eq!(Format::from_name("gif"), None);
    }
}
