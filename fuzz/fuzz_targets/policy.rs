//! The request side: directive values (as nginx hands them to the
//! module's parsers) and request headers and URL arguments, through
//! `policy::decide` to a plan, and the plan's size applied to a few
//! source sizes.
//!
//! Input: lines (`\n`), any bytes. A line starting with `smart_imaging`
//! is a directive, its words separated by spaces, given to its parser as
//! nginx would (see [`DIRECTIVES`]); the line `location` starts the inner
//! level (which inherits from the outer one). A line `?<args>` is the
//! query string; `<Header>: <value>` one of the request headers the policy
//! reads. The seeds (fuzz/seeds/policy/) are such texts.
//!
//! Invariants: no panic; a refused value has a message; `decide`'s plan
//! tries only configured formats, each once, best first; its qualities
//! are 0-100, its guard threshold 0-100 and budget 1-16; its variant name
//! is non-empty printable ASCII without spaces (it goes into cache keys and
//! logs); the delivered size is never 0, never larger than the source, and
//! within the configured caps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_imaging_core::config::{parse, Directives, Field, Refusal};
use smart_imaging_core::policy::{decide, Decision, RequestFacts};
use smart_imaging_core::sizing::delivered_size;
use smart_imaging_core::Format;

type Setter = fn(&mut Directives, &[&[u8]]) -> Result<(), Refusal>;

/// `$field` of [`Directives`] set by `parse::$parse`, as the module's
/// directive table (src/config.rs) does.
macro_rules! set {
    ($field:ident, $parse:expr) => {
        |d: &mut Directives, args: &[&[u8]]| {
            let value = $parse(args)?;
            if d.$field.is_set() {
                return Err(Refusal::DUPLICATE);
            }
            d.$field.store(value);
            Ok(())
        }
    };
}

/// The directives read by `Directives::resolve`, as in src/config.rs.
const DIRECTIVES: &[(&str, Setter)] = &[
    ("smart_imaging", set!(enable, parse::flag)),
    (
        "smart_imaging_variant_only",
        set!(variant_only, parse::flag),
    ),
    ("smart_imaging_ttl", set!(ttl, parse::ttl)),
    ("smart_imaging_buffer", set!(buffer, parse::size)),
    (
        "smart_imaging_max_pixels",
        set!(max_pixels, parse::positive),
    ),
    (
        "smart_imaging_webp_quality",
        set!(webp_quality, parse::quality),
    ),
    (
        "smart_imaging_max_jobs",
        set!(max_jobs, parse::positive_count),
    ),
    ("smart_imaging_timeout", set!(timeout, parse::timeout)),
    (
        "smart_imaging_max_running",
        set!(max_running, parse::max_running),
    ),
    (
        "smart_imaging_stash_path",
        set!(stash_path, parse::stash_path),
    ),
    ("smart_imaging_background", set!(background, parse::flag)),
    (
        "smart_imaging_jpeg_quality",
        set!(jpeg_quality, parse::quality),
    ),
    ("smart_imaging_dpr", set!(dpr, parse::flag)),
    ("smart_imaging_dpr_max", set!(dpr_max, parse::dpr_max)),
    (
        "smart_imaging_dpr_header",
        set!(dpr_header, parse::header_name),
    ),
    ("smart_imaging_network", set!(network, parse::flag)),
    (
        "smart_imaging_network_quality_step",
        set!(network_quality_step, parse::quality),
    ),
    (
        "smart_imaging_network_thresholds",
        set!(network_thresholds, parse::network_thresholds),
    ),
    (
        "smart_imaging_max_output_size",
        set!(max_output_size, parse::max_output_size),
    ),
    (
        "smart_imaging_max_output_pixels",
        set!(max_output_pixels, parse::pixels_or_off),
    ),
    ("smart_imaging_accept_ch", set!(accept_ch, parse::accept_ch)),
    ("smart_imaging_formats", set!(formats, parse::formats)),
    (
        "smart_imaging_avif_quality",
        set!(avif_quality, parse::quality),
    ),
    ("smart_imaging_avif_speed", set!(avif_speed, parse::speed)),
    (
        "smart_imaging_avif_max_pixels",
        set!(avif_max_pixels, parse::positive),
    ),
    ("smart_imaging_guard", set!(guard, parse::guard)),
    (
        "smart_imaging_guard_encodes",
        set!(guard_encodes, parse::guard_encodes),
    ),
    (
        "smart_imaging_debug_header",
        set!(debug_header, parse::flag),
    ),
];

/// Source sizes the plan's size is applied to: ordinary, tiny, extreme.
const SOURCES: [(u32, u32); 5] = [(1632, 1000), (1, 1), (16383, 2), (3, 16383), (640, 480)];

fuzz_target!(|data: &[u8]| {
    let (mut outer, mut inner) = (Directives::default(), Directives::default());
    let mut in_location = false;
    let mut facts = RequestFacts::default();
    for line in data.split(|&b| b == b'\n') {
        if line == b"location" {
            in_location = true;
        } else if line.starts_with(b"smart_imaging") {
            let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let name = words.next().unwrap_or_default();
            let args: Vec<&[u8]> = words.collect();
            if args.is_empty() {
                continue; // nginx checks the count before the handler
            }
            let Some((directive, setter)) = DIRECTIVES.iter().find(|(n, _)| n.as_bytes() == name)
            else {
                continue;
            };
            let level = if in_location { &mut inner } else { &mut outer };
            if let Err(refusal) = setter(level, &args) {
                assert!(!refusal.text(directive).is_empty());
            }
        } else if let Some(args) = line.strip_prefix(b"?") {
            facts.args = args;
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            match name.as_str() {
                "accept" => facts.accept.push(value),
                "user-agent" => facts.user_agent = Some(value),
                "x-device-dpr" => facts.dpr_header = Some(value),
                "sec-ch-dpr" => facts.ch_dpr = Some(value),
                "sec-ch-width" => facts.ch_width = Some(value),
                "save-data" => facts.save_data = Some(value),
                "ect" => facts.ect = Some(value),
                "downlink" => facts.downlink = Some(value),
                "rtt" => facts.rtt = Some(value),
                _ => {}
            }
        }
    }
    inner.inherit(&outer);
    let location = inner.resolve();
    let _ = location.conflict();
    let _ = location.client_hints();
    let settings = &location.settings;

    let negotiation = decide(&facts, settings);
    let Decision::Transcode(plan) = negotiation.decision else {
        return;
    };
    assert!(negotiation.vary.iter().any(|v| v == "Accept"));
    let mut last = None;
    for &format in &plan.targets {
        assert!(
            settings.formats.contains(&format),
            "{format} not configured"
        );
        let rank = Format::PREFERENCE.iter().position(|&f| f == format);
        assert!(rank.is_some() && rank > last, "{:?}", plan.targets);
        last = rank;
    }
    for format in Format::ALL {
        assert!(plan.quality.get(format) <= 100);
    }
    if let Some(threshold) = plan.guard.threshold {
        assert!((0.0..=100.0).contains(&threshold), "{threshold}");
    }
    assert!((1..=16).contains(&plan.guard.max_encodes));
    let variant = plan.variant();
    assert!(
        !variant.is_empty() && variant.bytes().all(|b| b.is_ascii_graphic()),
        "{variant:?}"
    );
    for source in SOURCES {
        let (w, h) = delivered_size(source, &plan.size, &plan.caps);
        assert!(
            (1..=source.0).contains(&w) && (1..=source.1).contains(&h),
            "{source:?} -> {w}x{h} for {:?}",
            plan.size
        );
        let caps = plan.caps;
        assert!(caps.max_width.is_none_or(|m| w <= m.max(1)), "{w} {caps:?}");
        assert!(
            caps.max_height.is_none_or(|m| h <= m.max(1)),
            "{h} {caps:?}"
        );
        assert!(
            caps.max_pixels
                .is_none_or(|m| u64::from(w) * u64::from(h) <= m.max(1)),
            "{source:?} -> {w}x{h}, over {caps:?}"
        );
    }
});
