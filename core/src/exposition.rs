//! The Prometheus text exposition (format 0.0.4) of the module's counters,
//! as `smart_imaging_status` serves it. The nginx layer keeps the counters
//! (in shared memory, summed over the workers) and hands a [`Snapshot`] of
//! them to [`render`]; every metric's name, type, help and buckets are here.
//!
//! ```text
//! # HELP smart_imaging_requests_total Responses the module considered ...
//! # TYPE smart_imaging_requests_total counter
//! smart_imaging_requests_total 12
//! # HELP smart_imaging_converted_total ...
//! # TYPE smart_imaging_converted_total counter
//! smart_imaging_converted_total{format="avif"} 2
//! ...
//! ```

use std::fmt::Write;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// `smart_imaging_requests_total`
pub const REQUESTS: &str = "smart_imaging_requests_total";
/// `smart_imaging_converted_total{format}`
pub const CONVERTED: &str = "smart_imaging_converted_total";
/// `smart_imaging_originals_total{reason}`
pub const ORIGINALS: &str = "smart_imaging_originals_total";
/// `smart_imaging_input_bytes_total`
pub const INPUT_BYTES: &str = "smart_imaging_input_bytes_total";
/// `smart_imaging_output_bytes_total`
pub const OUTPUT_BYTES: &str = "smart_imaging_output_bytes_total";
/// `smart_imaging_conversion_seconds` (histogram)
pub const CONVERSION_SECONDS: &str = "smart_imaging_conversion_seconds";
/// `smart_imaging_conversion_encodes` (histogram)
pub const CONVERSION_ENCODES: &str = "smart_imaging_conversion_encodes";
/// `smart_imaging_conversions_queued` (gauge)
pub const QUEUED: &str = "smart_imaging_conversions_queued";
/// `smart_imaging_conversions_running` (gauge)
pub const RUNNING: &str = "smart_imaging_conversions_running";

/// Upper bounds of the buckets of `smart_imaging_conversion_seconds`
/// (`+Inf` follows): from a cached stash lookup to a large AVIF.
pub const SECONDS_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds of the buckets of `smart_imaging_conversion_encodes`
/// (`+Inf` follows): one encode (guard off, or a stash hit) up to the
/// guard's search over several formats.
pub const ENCODES_BUCKETS: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0];

/// A histogram: observations per bucket (not cumulative; one more than the
/// bounds, the last for `+Inf`) and their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// The bucket of `bounds` (plus `+Inf`) `value` falls in: the first whose
/// upper bound is at least `value` (Prometheus buckets are `le`).
pub fn bucket(bounds: &[f64], value: f64) -> usize {
    bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len())
}

/// The counters at one moment, summed over the workers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub requests: u64,
    /// Per output format name (`avif`, `webp`, ...), every format listed.
    pub converted: Vec<(&'static str, u64)>,
    /// Per reason (`not-smaller`, `busy`, ...), every reason listed.
    pub originals: Vec<(&'static str, u64)>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Over [`SECONDS_BUCKETS`].
    pub conversion_seconds: Histogram,
    /// Over [`ENCODES_BUCKETS`].
    pub conversion_encodes: Histogram,
    pub queued: u64,
    pub running: u64,
}

/// One metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A bucket bound or a sum as Prometheus reads it (`0.005`, `1`, `+Inf`).
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], h: &Histogram) {
    header(out, name, "histogram", help);
    let mut cumulative = 0u64;
    let les = bounds.iter().copied().chain([f64::INFINITY]);
    for (i, le) in les.enumerate() {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", float(le));
    }
    let _ = writeln!(out, "{name}_sum {}", float(h.sum));
    // The count is the +Inf bucket, so the two agree within a scrape.
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// The exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    header(
        &mut out,
        REQUESTS,
        "counter",
        "Responses the module considered: main requests of locations with smart_imaging on that have a $smart_imaging_result (converted + originals).",
    );
    let _ = writeln!(out, "{REQUESTS} {}", s.requests);

    header(
        &mut out,
        CONVERTED,
        "counter",
        "Responses served converted, by the format served.",
    );
    for (format, n) in &s.converted {
        let _ = writeln!(out, "{CONVERTED}{{format=\"{}\"}} {n}", escape(format));
    }

    header(
        &mut out,
        ORIGINALS,
        "counter",
        "Responses served as the original, by the reason of $smart_imaging_result.",
    );
    for (reason, n) in &s.originals {
        let _ = writeln!(out, "{ORIGINALS}{{reason=\"{}\"}} {n}", escape(reason));
    }

    header(
        &mut out,
        INPUT_BYTES,
        "counter",
        "Bytes of the original images of the responses the module converted or kept (not counted: off, not-candidate, head, not-modified, range, dropped, incomplete).",
    );
    let _ = writeln!(out, "{INPUT_BYTES} {}", s.input_bytes);
    header(
        &mut out,
        OUTPUT_BYTES,
        "counter",
        "Bytes served for the same responses: the converted image, or the original. Input minus output is what conversion saved.",
    );
    let _ = writeln!(out, "{OUTPUT_BYTES} {}", s.output_bytes);

    histogram(
        &mut out,
        CONVERSION_SECONDS,
        "Wall time of the conversion jobs whose result reached their request (converted or not), on the thread pool.",
        &SECONDS_BUCKETS,
        &s.conversion_seconds,
    );
    histogram(
        &mut out,
        CONVERSION_ENCODES,
        "Encoder runs (the visual-quality guard's search, over every format tried) per response served converted.",
        &ENCODES_BUCKETS,
        &s.conversion_encodes,
    );

    header(
        &mut out,
        QUEUED,
        "gauge",
        "Conversions waiting in the workers' queues (smart_imaging_max_running) now.",
    );
    let _ = writeln!(out, "{QUEUED} {}", s.queued);
    header(
        &mut out,
        RUNNING,
        "gauge",
        "Conversions on the thread pools now, abandoned ones included.",
    );
    let _ = writeln!(out, "{RUNNING} {}", s.running);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_le() {
        assert_eq!(bucket(&SECONDS_BUCKETS, 0.0), 0);
        assert_eq!(bucket(&SECONDS_BUCKETS, 0.005), 0);
        assert_eq!(bucket(&SECONDS_BUCKETS, 0.0051), 1);
        assert_eq!(bucket(&SECONDS_BUCKETS, 60.0), 12);
        assert_eq!(bucket(&SECONDS_BUCKETS, 61.0), 13);
        assert_eq!(bucket(&ENCODES_BUCKETS, 7.0), 6);
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let mut seconds = Histogram {
            counts: vec![0; SECONDS_BUCKETS.len() + 1],
            sum: 0.75,
        };
        seconds.counts[bucket(&SECONDS_BUCKETS, 0.25)] += 2;
        seconds.counts[bucket(&SECONDS_BUCKETS, 100.0)] += 1;
        let s = Snapshot {
            requests: 5,
            converted: vec![("avif", 1), ("webp", 2)],
            originals: vec![("not-smaller", 2), ("a\"b", 0)],
            input_bytes: 300,
            output_bytes: 200,
            conversion_seconds: seconds,
            conversion_encodes: Histogram {
                counts: vec![0; ENCODES_BUCKETS.len() + 1],
                sum: 0.0,
            },
            queued: 1,
            running: 2,
        };
        let text = render(&s);
        for line in [
            "# TYPE smart_imaging_requests_total counter",
            "smart_imaging_requests_total 5",
            "smart_imaging_converted_total{format=\"webp\"} 2",
            "smart_imaging_originals_total{reason=\"not-smaller\"} 2",
            "smart_imaging_originals_total{reason=\"a\\\"b\"} 0",
            "smart_imaging_input_bytes_total 300",
            "smart_imaging_output_bytes_total 200",
            "# TYPE smart_imaging_conversion_seconds histogram",
            "smart_imaging_conversion_seconds_bucket{le=\"0.1\"} 0",
            "smart_imaging_conversion_seconds_bucket{le=\"0.25\"} 2",
            "smart_imaging_conversion_seconds_bucket{le=\"60\"} 2",
            "smart_imaging_conversion_seconds_bucket{le=\"+Inf\"} 3",
            "smart_imaging_conversion_seconds_sum 0.75",
            "smart_imaging_conversion_seconds_count 3",
            "smart_imaging_conversion_encodes_bucket{le=\"1\"} 0",
            "smart_imaging_conversion_encodes_count 0",
            "# TYPE smart_imaging_conversions_queued gauge",
            "smart_imaging_conversions_queued 1",
            "smart_imaging_conversions_running 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        // Every family has its HELP and TYPE once, before its samples.
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                REQUESTS,
                CONVERTED,
                ORIGINALS,
                INPUT_BYTES,
                OUTPUT_BYTES,
                CONVERSION_SECONDS,
                CONVERSION_ENCODES,
                QUEUED,
                RUNNING
            ]
        );
        assert_eq!(text.matches("# HELP ").count(), types.len());
    }
}
