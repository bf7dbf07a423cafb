//! Which pixels to deliver: the requested size (URL `wid`/`hei` in CSS
//! pixels, or a `Sec-CH-Width` hint in physical pixels) times the device
//! pixel ratio, never larger than the source (no upscaling) and never above
//! the configured output caps, aspect ratio kept.
//!
//! The request part ([`SizeRequest`]) is decided from the request alone (so
//! caches can key on it); [`delivered_size`] applies it to the source
//! dimensions once they are known.

use std::fmt;

/// The size the client asked for, normalised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeRequest {
    /// A box in CSS pixels (either side optional; none = the source size)
    /// times a device pixel ratio.
    Css {
        width: Option<u32>,
        height: Option<u32>,
        dpr: f32,
    },
    /// A width in physical pixels (`Sec-CH-Width` / `Width`): used as it is,
    /// never multiplied by a DPR again.
    Physical { width: u32 },
}

impl SizeRequest {
    /// The source size, at DPR 1: nothing to change.
    pub const SOURCE: SizeRequest = SizeRequest::Css {
        width: None,
        height: None,
        dpr: 1.0,
    };

    /// Whether this request can only ever give the source size (so a client
    /// that takes no other format needs no conversion at all).
    pub fn is_source(&self) -> bool {
        *self == Self::SOURCE
    }
}

/// `w400-h300-dpr2`, `dpr1.5`, `pw828`, `src`: a stable key, for the variant
/// variable that caches key on.
impl fmt::Display for SizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SizeRequest::Physical { width } => write!(f, "pw{width}"),
            SizeRequest::Css { width, height, dpr } => {
                let mut parts = Vec::new();
                if let Some(w) = width {
                    parts.push(format!("w{w}"));
                }
                if let Some(h) = height {
                    parts.push(format!("h{h}"));
                }
                if dpr != 1.0 {
                    parts.push(format!("dpr{dpr}"));
                }
                if parts.is_empty() {
                    f.write_str("src")
                } else {
                    f.write_str(&parts.join("-"))
                }
            }
        }
    }
}

/// Upper bounds on what is delivered, whatever was asked
/// (`smart_imaging_max_output_size`, `smart_imaging_max_output_pixels`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutputCaps {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub max_pixels: Option<u64>,
}

impl OutputCaps {
    pub const NONE: OutputCaps = OutputCaps {
        max_width: None,
        max_height: None,
        max_pixels: None,
    };

    pub fn is_none(&self) -> bool {
        *self == OutputCaps::default()
    }
}

/// The size to deliver for a `source` (width, height) image.
///
/// One scale factor for both sides (aspect ratio kept), the smallest of:
/// what was requested, 1 (no upscaling), and each cap. The side that
/// decides the scale gets exactly its target length; the other is rounded.
/// Neither side is ever 0.
pub fn delivered_size(source: (u32, u32), request: &SizeRequest, caps: &OutputCaps) -> (u32, u32) {
    let (sw, sh) = (f64::from(source.0.max(1)), f64::from(source.1.max(1)));
    // Each candidate is (scale, which side it fixes, that side's length).
    let mut limits: Vec<(f64, Side, f64)> = vec![(1.0, Side::None, 0.0)];
    let mut push = |len: f64, side: Side| {
        let full = match side {
            Side::Width => sw,
            Side::Height => sh,
            Side::None | Side::Area => return,
        };
        if len > 0.0 {
            limits.push((len / full, side, len));
        }
    };
    match *request {
        SizeRequest::Physical { width } => push(f64::from(width), Side::Width),
        SizeRequest::Css { width, height, dpr } => {
            let dpr = f64::from(dpr);
            match (width, height) {
                (None, None) => {
                    // The source is the requested size: scale it by the DPR.
                    push((sw * dpr).max(1.0), Side::Width);
                }
                (w, h) => {
                    if let Some(w) = w {
                        push((f64::from(w) * dpr).round().max(1.0), Side::Width);
                    }
                    if let Some(h) = h {
                        push((f64::from(h) * dpr).round().max(1.0), Side::Height);
                    }
                }
            }
        }
    }
    if let Some(w) = caps.max_width {
        push(f64::from(w), Side::Width);
    }
    if let Some(h) = caps.max_height {
        push(f64::from(h), Side::Height);
    }
    if let Some(p) = caps.max_pixels {
        let scale = (p as f64 / (sw * sh)).sqrt();
        // Floor the sides so the product stays within the cap.
        limits.push((scale, Side::Area, 0.0));
    }

    let &(scale, side, len) = limits
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("at least the no-upscaling limit");
    if scale >= 1.0 {
        return source;
    }
    let (w, h) = match side {
        Side::Width => (len, sh * len / sw),
        Side::Height => (sw * len / sh, len),
        Side::Area => ((sw * scale).floor(), (sh * scale).floor()),
        Side::None => (sw, sh),
    };
    let clamp = |v: f64, max: u32| (v.round() as u32).clamp(1, max.max(1));
    within_pixel_cap((clamp(w, source.0), clamp(h, source.1)), caps.max_pixels)
}

/// `size`, taken down to `max_pixels` where a side held at 1 pixel (or the
/// rounding of the other side) put it over: the excess comes off the
/// longer side. A 16383x2 image capped at 1000 pixels is 1000x1 (its
/// aspect ratio cannot be kept: half a pixel is no side). Only ever
/// shrinks, so the other bounds still hold.
fn within_pixel_cap((mut w, mut h): (u32, u32), max_pixels: Option<u64>) -> (u32, u32) {
    let Some(max) = max_pixels else {
        return (w, h);
    };
    let max = max.max(1);
    let fit = |side: u32, other: u32| (max / u64::from(other)).clamp(1, u64::from(side)) as u32;
    if u64::from(w) * u64::from(h) > max {
        if w >= h {
            w = fit(w, h);
            h = fit(h, w);
        } else {
            h = fit(h, w);
            w = fit(w, h);
        }
    }
    (w, h)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    None,
    Width,
    Height,
    Area,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn css(width: Option<u32>, height: Option<u32>, dpr: f32) -> SizeRequest {
        SizeRequest::Css { width, height, dpr }
    }

    const NO_CAPS: OutputCaps = OutputCaps {
        max_width: None,
        max_height: None,
        max_pixels: None,
    };

    #[test]
    fn table() {
        let src = (1632, 1000);
        let cases: &[(SizeRequest, OutputCaps, (u32, u32))] = &[
            // The example: hei=500 at DPR 1 and 2.
            (css(None, Some(500), 1.0), NO_CAPS, (816, 500)),
            (css(None, Some(500), 2.0), NO_CAPS, (1632, 1000)),
            // No requested size: the source is the requested size.
            (SizeRequest::SOURCE, NO_CAPS, (1632, 1000)),
            (css(None, None, 2.0), NO_CAPS, (1632, 1000)), // no upscaling
            (css(None, None, 0.5), NO_CAPS, (816, 500)),
            // Width only, both (fit inside the box), larger than the source.
            (css(Some(408), None, 1.0), NO_CAPS, (408, 250)),
            (css(Some(408), None, 1.5), NO_CAPS, (612, 375)),
            (css(Some(800), Some(100), 1.0), NO_CAPS, (163, 100)),
            (css(Some(100), Some(800), 1.0), NO_CAPS, (100, 61)),
            (css(Some(5000), Some(5000), 3.0), NO_CAPS, (1632, 1000)),
            // A physical width is used as it is.
            (SizeRequest::Physical { width: 816 }, NO_CAPS, (816, 500)),
            (SizeRequest::Physical { width: 4000 }, NO_CAPS, (1632, 1000)),
            // Caps, aspect kept; the smallest limit wins.
            (
                SizeRequest::SOURCE,
                OutputCaps {
                    max_width: Some(1000),
                    ..NO_CAPS
                },
                (1000, 613),
            ),
            (
                css(None, Some(800), 1.0),
                OutputCaps {
                    max_height: Some(400),
                    ..NO_CAPS
                },
                (653, 400),
            ),
            (
                SizeRequest::SOURCE,
                OutputCaps {
                    max_pixels: Some(400_000),
                    ..NO_CAPS
                },
                (807, 495),
            ),
            (
                css(Some(100), None, 1.0),
                OutputCaps {
                    max_pixels: Some(400_000),
                    ..NO_CAPS
                },
                (100, 61),
            ),
            // Extreme values never give a zero side.
            (css(Some(1), None, 0.01), NO_CAPS, (1, 1)),
        ];
        for (request, caps, expected) in cases {
            assert_eq!(
                delivered_size(src, request, caps),
                *expected,
                "{request:?} {caps:?}"
            );
        }
    }

    #[test]
    fn pixel_cap_is_respected() {
        // The last ones hold a side at 1 pixel (found by fuzzing: 16383x2
        // capped at 1 pixel was 90x1), or a width cap, not the pixel cap,
        // decides the scale.
        for (w, h) in [
            (4000, 3000),
            (1920, 1080),
            (777, 13),
            (13, 777),
            (16383, 2),
            (2, 16383),
        ] {
            let caps = OutputCaps {
                max_pixels: Some(100_000),
                ..NO_CAPS
            };
            let (dw, dh) = delivered_size((w, h), &SizeRequest::SOURCE, &caps);
            assert!(
                u64::from(dw) * u64::from(dh) <= 100_000,
                "{w}x{h} -> {dw}x{dh}"
            );
        }
        let capped = |max_width, max_pixels| OutputCaps {
            max_width,
            max_height: None,
            max_pixels: Some(max_pixels),
        };
        let size = |source, caps| delivered_size(source, &SizeRequest::SOURCE, &caps);
        assert_eq!(size((16383, 2), capped(None, 1)), (1, 1));
        assert_eq!(size((16383, 2), capped(None, 1000)), (1000, 1));
        assert_eq!(size((2, 16383), capped(None, 1000)), (1, 1000));
        assert_eq!(size((16383, 2), capped(Some(2000), 1000)), (1000, 1));
    }

    #[test]
    fn keys() {
        assert_eq!(SizeRequest::SOURCE.to_string(), "src");
        assert_eq!(css(Some(400), None, 2.0).to_string(), "w400-dpr2");
        assert_eq!(css(None, Some(300), 1.5).to_string(), "h300-dpr1.5");
        assert_eq!(SizeRequest::Physical { width: 828 }.to_string(), "pw828");
    }
}
