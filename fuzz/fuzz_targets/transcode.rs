//! The whole conversion, as the module runs it on a response body:
//! `transcode(body, plan, limits)` on arbitrary bytes.
//!
//! Input: one control byte choosing the plan (see [`plan`]), then the body.
//! The seeds (fuzz/seeds/transcode/) are small JPEGs and PNGs behind a
//! control byte.
//!
//! Invariants checked:
//! - no panic anywhere (libfuzzer-sys aborts on any panic, even one the
//!   codecs' or `transcode`'s own `catch_unwind` would turn into "serve the
//!   original"), and no `KeepReason::Panic`;
//! - a converted image is strictly smaller than the body, within the
//!   pixel limit, and decodes again (through the registry's decoder of its
//!   format) to its announced size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_imaging_core::sizing::{OutputCaps, SizeRequest};
use smart_imaging_core::{
    transcode, AvifLimits, Format, Guard, KeepReason, Limits, Outcome, Plan, Qualities,
    WorkBudget,
};

/// Small, so that each execution stays in the milliseconds: 256x256; the
/// work budget as nginx's default, so that running out of it is fuzzed
/// too.
const LIMITS: Limits = Limits {
    max_pixels: 65_536,
    work: Some(WorkBudget::DEFAULT),
};

/// The plan for a control byte:
/// - bits 0-2: the formats tried (WebP, AVIF, JPEG 2000, JPEG XR, none i.e.
///   the source's own format, AVIF then WebP, WebP then JPEG 2000, all);
/// - bit 3: the guard on, with a budget of 2 encodes per format;
/// - bits 4-5: the size (source, 64 CSS px wide, 48 high at DPR 1.5,
///   100 physical px wide);
/// - bit 6: the qualities of `qlt=30` instead of the default ceilings;
/// - bit 7: at most 4096 output pixels.
fn plan(control: u8) -> Plan {
    let targets = match control & 7 {
        0 => vec![Format::WebP],
        1 => vec![Format::Avif],
        2 => vec![Format::Jp2],
        3 => vec![Format::Jxr],
        4 => vec![],
        5 => vec![Format::Avif, Format::WebP],
        6 => vec![Format::WebP, Format::Jp2],
        _ => Format::PREFERENCE.to_vec(),
    };
    let mut plan = Plan::new(targets);
    plan.guard = if control & 8 != 0 {
        Guard {
            threshold: Some(80.0),
            max_encodes: 2,
        }
    } else {
        Guard::OFF
    };
    plan.size = match (control >> 4) & 3 {
        0 => SizeRequest::SOURCE,
        1 => SizeRequest::Css {
            width: Some(64),
            height: None,
            dpr: 1.0,
        },
        2 => SizeRequest::Css {
            width: None,
            height: Some(48),
            dpr: 1.5,
        },
        _ => SizeRequest::Physical { width: 100 },
    };
    if control & 64 != 0 {
        plan.quality = Qualities::from_qlt(30);
    }
    if control & 128 != 0 {
        plan.caps = OutputCaps {
            max_pixels: Some(4096),
            ..OutputCaps::NONE
        };
    }
    // libaom's fastest speeds: AVIF is by far the slowest encoder.
    plan.tuning.avif = AvifLimits {
        speed: 10,
        search_speed: 10,
        ..AvifLimits::DEFAULT
    };
    plan
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let plan = plan(control);
    match transcode(body, &plan, &LIMITS) {
        Outcome::Converted(converted) => {
            assert!(
                converted.bytes.len() < body.len(),
                "converted {} bytes from {}",
                converted.bytes.len(),
                body.len()
            );
            let pixels = u64::from(converted.width) * u64::from(converted.height);
            assert!(pixels > 0 && pixels <= LIMITS.max_pixels);
            let format = converted.format;
            assert!(
                plan.targets.contains(&format) || matches!(format, Format::Jpeg | Format::Png),
                "{format} was not asked for"
            );
            let decoded = (format.codec().decode)(&converted.bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("the {format} served does not decode: {e}"));
            assert!(decoded.is_consistent());
            assert_eq!(
                (decoded.width, decoded.height),
                (converted.width, converted.height),
                "{format}"
            );
        }
        Outcome::Original(KeepReason::Panic(message)) => {
            panic!("transcode caught a panic: {message}")
        }
        Outcome::Original(_) => {}
    }
});
