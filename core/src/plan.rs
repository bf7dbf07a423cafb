//! What to produce for one request: computed from the request alone (see
//! [`crate::policy::decide`]), applied to the image by
//! [`crate::transcode()`].

use crate::codecs::{Format, PerFormat, Tuning};
use crate::quality_map;
use crate::sizing::{OutputCaps, SizeRequest};

/// Encoder qualities, each on its format's own 0-100 scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qualities(PerFormat<u8>);

impl Qualities {
    /// The defaults: each format's [`default_ceiling`]. With the
    /// visual-quality guard on (the default) each is the *highest* quality
    /// the per-image search may use, so they are high: the search finds
    /// the lowest that still looks the same. WebP needs q87 (median) to
    /// match a q85 JPEG and more for some images; AVIF above q90 (AV1
    /// quantizer 6) only grows (see docs, "Quality").
    ///
    /// [`default_ceiling`]: crate::codecs::QualityScale::default_ceiling
    pub fn default_ceilings() -> Qualities {
        Qualities(PerFormat::from_fn(|f| f.codec().quality.default_ceiling))
    }

    /// The qualities configured by the `smart_imaging_<name>_quality`
    /// directives: `configured(format)` for the formats that have one
    /// (`None`: its default); the others follow the format their scale is
    /// calibrated to (JPEG 2000 and JPEG XR follow WebP).
    pub fn configured(configured: impl Fn(Format) -> Option<u8>) -> Qualities {
        let defaults = Qualities::default_ceilings();
        Qualities(PerFormat::from_fn(|f| {
            let by = f.codec().quality.configured_by;
            configured(by).unwrap_or_else(|| defaults.get(by))
        }))
    }

    /// The qualities for a `qlt` URL argument (0-100 on a JPEG-like scale),
    /// each on its format's own scale: see [`crate::quality_map`].
    pub fn from_qlt(qlt: u8) -> Qualities {
        Qualities(PerFormat::from_fn(|f| quality_map::for_format(qlt, f)))
    }

    pub fn get(&self, format: Format) -> u8 {
        self.0.get(format)
    }

    /// The same, with `format` at `quality`.
    pub fn with(mut self, format: Format, quality: u8) -> Qualities {
        self.0.set(format, quality);
        self
    }

    /// All lowered by `step` (never below 1), e.g. on a poor network.
    pub fn lowered(self, step: u8) -> Qualities {
        Qualities(self.0.map(|_, q| q.saturating_sub(step).max(1)))
    }
}

impl Default for Qualities {
    fn default() -> Self {
        Qualities::default_ceilings()
    }
}

/// What to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The formats to try, best first: the first that comes out smaller
    /// than the original is served. Empty: keep the source's format.
    pub targets: Vec<Format>,
    pub quality: Qualities,
    /// The pixels asked for.
    pub size: SizeRequest,
    /// Upper bounds on the delivered size.
    pub caps: OutputCaps,
    /// Per-format encoder settings (AVIF speeds and size bound).
    pub tuning: Tuning,
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
    /// The most encodes per format `smart_imaging_guard_encodes` allows.
    pub const MAX_ENCODES: usize = 16;
}

impl Plan {
    /// Every format of `targets`, best first, with the default qualities,
    /// limits and guard, at the source size.
    pub fn new(targets: Vec<Format>) -> Plan {
        Plan {
            targets,
            quality: Qualities::default_ceilings(),
            size: SizeRequest::SOURCE,
            caps: OutputCaps::NONE,
            tuning: Tuning::DEFAULT,
            guard: Guard::DEFAULT,
        }
    }

    /// WebP at `quality`, at the source size, unguarded.
    pub fn webp(quality: u8) -> Plan {
        Plan {
            quality: Qualities::default_ceilings().with(Format::WebP, quality),
            guard: Guard::OFF,
            ..Plan::new(vec![Format::WebP])
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
        // requests of one location is the network step); a resize in the
        // source's own format names the JPEG quality.
        let first = self.targets.first().copied().unwrap_or(Format::Jpeg);
        format!("{formats}-q{}-{}", self.quality.get(first), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_qualities_follow_their_scale() {
        let q = Qualities::configured(|f| match f {
            Format::WebP => Some(70),
            Format::Jpeg => Some(60),
            _ => None,
        });
        assert_eq!(q.get(Format::WebP), 70);
        assert_eq!(q.get(Format::Jp2), 70, "JPEG 2000 follows WebP");
        assert_eq!(q.get(Format::Jxr), 70, "JPEG XR follows WebP");
        assert_eq!(q.get(Format::Avif), 90, "AVIF's default");
        assert_eq!(q.get(Format::Jpeg), 60);
        let d = Qualities::default_ceilings();
        assert_eq!(
            [
                Format::WebP,
                Format::Avif,
                Format::Jpeg,
                Format::Jp2,
                Format::Jxr
            ]
            .map(|f| d.get(f)),
            [100, 90, 100, 100, 100]
        );
    }

    #[test]
    fn lowered_never_reaches_zero() {
        let q = Qualities::default_ceilings()
            .with(Format::WebP, 10)
            .lowered(15);
        assert_eq!(q.get(Format::WebP), 1);
        assert_eq!(q.get(Format::Avif), 75);
    }

    #[test]
    fn variant_names() {
        let mut plan = Plan::new(vec![Format::Avif, Format::WebP]);
        assert_eq!(plan.variant(), "avif+webp-q90-src");
        plan.targets.clear();
        assert_eq!(plan.variant(), "src-q100-src");
        assert_eq!(Plan::webp(85).variant(), "webp-q85-src");
    }
}
