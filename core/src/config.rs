//! The `smart_imaging_*` directives, nginx aside: how each value is parsed
//! (with the exact message nginx prints when it refuses one), each default,
//! and how a location inherits from the levels around it.
//!
//! The nginx layer (`src/config.rs`) holds a table with one line per
//! directive naming its parser in [`parse`] and its field in
//! [`Directives`]; at configuration time it merges the levels
//! ([`Directives::inherit`]) and resolves them once ([`Directives::resolve`])
//! into the [`Location`] every request of that location reads.
//!
//! Defaults have one home each: the policy's in [`Settings::default`], the
//! nginx layer's in [`Location::default`], the codecs' in their registry
//! entries, the guard's in [`Guard::DEFAULT`], the pixel bound and the
//! work budget in [`Limits::default`].

use crate::codecs::{avif::AvifLimits, Format, Tuning};
use crate::outcome::Limits;
use crate::plan::{Guard, Qualities};
use crate::sizing::OutputCaps;
use crate::work::WorkBudget;

/// A directive that can be switched `off`: not set at this level (inherit
/// it), `off`, or a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Tri<T> {
    #[default]
    Unset,
    Off,
    On(T),
}

impl<T> Tri<T> {
    /// The value, resolved: `default` when unset, `None` when off.
    pub fn or_default(self, default: Option<T>) -> Option<T> {
        match self {
            Tri::Unset => default,
            Tri::Off => None,
            Tri::On(v) => Some(v),
        }
    }
}

/// A field of [`Directives`]: where a directive's parsed value goes.
pub trait Field {
    /// What the directive's parser returns.
    type Value;
    fn is_set(&self) -> bool;
    fn store(&mut self, value: Self::Value);
    /// Takes the enclosing level's value if this level set none.
    fn inherit(&mut self, parent: &Self);
}

impl<T: Clone> Field for Option<T> {
    type Value = T;
    fn is_set(&self) -> bool {
        self.is_some()
    }
    fn store(&mut self, value: T) {
        *self = Some(value);
    }
    fn inherit(&mut self, parent: &Self) {
        if self.is_none() {
            self.clone_from(parent);
        }
    }
}

impl<T: Clone> Field for Tri<T> {
    /// `Off` or `On(value)`.
    type Value = Tri<T>;
    fn is_set(&self) -> bool {
        !matches!(self, Tri::Unset)
    }
    fn store(&mut self, value: Tri<T>) {
        *self = value;
    }
    fn inherit(&mut self, parent: &Self) {
        if !self.is_set() {
            self.clone_from(parent);
        }
    }
}

/// What one level (`http`, `server`, `location`) sets: one field per
/// directive, all unset until the directive is read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directives {
    /// `smart_imaging on | off`
    pub enable: Option<bool>,
    /// `smart_imaging_variant_only on | off`
    pub variant_only: Option<bool>,
    /// `smart_imaging_ttl <time> | off` (seconds)
    pub ttl: Tri<u64>,
    /// `smart_imaging_buffer <size>`
    pub buffer: Option<usize>,
    /// `smart_imaging_max_pixels <number>`
    pub max_pixels: Option<u64>,
    /// `smart_imaging_work_budget <number> [min=<number>] | off`
    pub work_budget: Tri<WorkBudget>,
    /// `smart_imaging_max_jobs <number>`
    pub max_jobs: Option<usize>,
    /// `smart_imaging_timeout <time>` (milliseconds)
    pub timeout: Option<u64>,
    /// `smart_imaging_max_running <number> | auto`
    pub max_running: Option<MaxRunning>,
    /// `smart_imaging_stash_path <path> [max_size=<size>] [ttl=<time>] | off`
    pub stash_path: Tri<StashPath>,
    /// `smart_imaging_background on | off`
    pub background: Option<bool>,
    /// `smart_imaging_formats <format> ...`
    pub formats: Option<Vec<Format>>,
    /// `smart_imaging_webp_quality <0-100>` (JPEG 2000, JPEG XR follow it)
    pub webp_quality: Option<u8>,
    /// `smart_imaging_avif_quality <0-100>`
    pub avif_quality: Option<u8>,
    /// `smart_imaging_jpeg_quality <0-100>`
    pub jpeg_quality: Option<u8>,
    /// `smart_imaging_avif_speed <0-10>`
    pub avif_speed: Option<u8>,
    /// `smart_imaging_avif_max_pixels <number>`
    pub avif_max_pixels: Option<u64>,
    /// `smart_imaging_guard <score> | off`
    pub guard: Tri<f64>,
    /// `smart_imaging_guard_encodes <1-16>`
    pub guard_encodes: Option<usize>,
    /// `smart_imaging_dpr on | off`
    pub dpr: Option<bool>,
    /// `smart_imaging_dpr_max <number>`
    pub dpr_max: Option<f32>,
    /// `smart_imaging_dpr_header <name> | off`
    pub dpr_header: Tri<String>,
    /// `smart_imaging_network on | off`
    pub network: Option<bool>,
    /// `smart_imaging_network_quality_step <0-100>`
    pub network_quality_step: Option<u8>,
    /// `smart_imaging_network_thresholds [ect=..] [downlink=..] [rtt=..]`
    pub network_thresholds: Option<NetworkThresholds>,
    /// `smart_imaging_max_output_size <width>|- <height>|-`
    pub max_output_size: Option<(Option<u32>, Option<u32>)>,
    /// `smart_imaging_max_output_pixels <number> | off`
    pub max_output_pixels: Tri<u64>,
    /// `smart_imaging_accept_ch off | on | critical`
    pub accept_ch: Option<AcceptCh>,
    /// `smart_imaging_debug_header on | off`
    pub debug_header: Option<bool>,
}

impl Directives {
    /// Takes every directive this level did not set from `parent`.
    pub fn inherit(&mut self, parent: &Directives) {
        self.enable.inherit(&parent.enable);
        self.variant_only.inherit(&parent.variant_only);
        self.ttl.inherit(&parent.ttl);
        self.buffer.inherit(&parent.buffer);
        self.max_pixels.inherit(&parent.max_pixels);
        self.work_budget.inherit(&parent.work_budget);
        self.max_jobs.inherit(&parent.max_jobs);
        self.timeout.inherit(&parent.timeout);
        self.max_running.inherit(&parent.max_running);
        self.stash_path.inherit(&parent.stash_path);
        self.background.inherit(&parent.background);
        self.formats.inherit(&parent.formats);
        self.webp_quality.inherit(&parent.webp_quality);
        self.avif_quality.inherit(&parent.avif_quality);
        self.jpeg_quality.inherit(&parent.jpeg_quality);
        self.avif_speed.inherit(&parent.avif_speed);
        self.avif_max_pixels.inherit(&parent.avif_max_pixels);
        self.guard.inherit(&parent.guard);
        self.guard_encodes.inherit(&parent.guard_encodes);
        self.dpr.inherit(&parent.dpr);
        self.dpr_max.inherit(&parent.dpr_max);
        self.dpr_header.inherit(&parent.dpr_header);
        self.network.inherit(&parent.network);
        self.network_quality_step
            .inherit(&parent.network_quality_step);
        self.network_thresholds.inherit(&parent.network_thresholds);
        self.max_output_size.inherit(&parent.max_output_size);
        self.max_output_pixels.inherit(&parent.max_output_pixels);
        self.accept_ch.inherit(&parent.accept_ch);
        self.debug_header.inherit(&parent.debug_header);
    }

    /// The location's configuration: what was set, defaults for the rest.
    pub fn resolve(&self) -> Location {
        let d = Location::default();
        let s = d.settings;
        let (max_width, max_height) = self.max_output_size.unwrap_or((None, None));
        let settings = Settings {
            formats: self.formats.clone().unwrap_or(s.formats),
            quality: Qualities::configured(|format| match format {
                Format::WebP => self.webp_quality,
                Format::Avif => self.avif_quality,
                Format::Jpeg => self.jpeg_quality,
                _ => None,
            }),
            tuning: Tuning {
                avif: AvifLimits {
                    speed: self.avif_speed.unwrap_or(s.tuning.avif.speed),
                    max_pixels: self.avif_max_pixels.unwrap_or(s.tuning.avif.max_pixels),
                    ..s.tuning.avif
                },
            },
            dpr: self.dpr.unwrap_or(s.dpr),
            max_dpr: self.dpr_max.unwrap_or(s.max_dpr),
            dpr_header: self.dpr_header.clone().or_default(s.dpr_header),
            network: self.network.unwrap_or(s.network),
            network_thresholds: self.network_thresholds.unwrap_or(s.network_thresholds),
            network_quality_step: self.network_quality_step.unwrap_or(s.network_quality_step),
            caps: OutputCaps {
                max_width,
                max_height,
                max_pixels: self.max_output_pixels.clone().or_default(s.caps.max_pixels),
            },
            guard: Guard {
                threshold: self.guard.clone().or_default(s.guard.threshold),
                max_encodes: self.guard_encodes.unwrap_or(s.guard.max_encodes),
            },
        };
        let variant_only = self.variant_only.unwrap_or(d.variant_only);
        Location {
            // A variant-only location converts nothing, whatever
            // `smart_imaging` it inherits.
            enabled: self.enable.unwrap_or(d.enabled) && !variant_only,
            variant_only,
            ttl: self.ttl.clone().or_default(d.ttl),
            buffer: self.buffer.unwrap_or(d.buffer),
            max_jobs: self.max_jobs.unwrap_or(d.max_jobs),
            timeout_ms: self.timeout.unwrap_or(d.timeout_ms),
            max_running: self.max_running.unwrap_or(d.max_running),
            stash: self.stash_path.clone().or_default(d.stash),
            background: self.background.unwrap_or(d.background),
            accept_ch: self.accept_ch.unwrap_or(d.accept_ch),
            debug_header: self.debug_header.unwrap_or(d.debug_header),
            limits: Limits {
                max_pixels: self.max_pixels.unwrap_or(d.limits.max_pixels),
                work: self.work_budget.clone().or_default(d.limits.work),
            },
            settings,
        }
    }
}

/// One location's configuration, resolved: built once when nginx merges
/// the configuration, read by every request.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// `smart_imaging` (and not `smart_imaging_variant_only`): responses
    /// are converted.
    pub enabled: bool,
    /// `smart_imaging_variant_only`: `$smart_imaging_variant` is worked out
    /// as `smart_imaging on` would, but no response is touched (the cache
    /// tier in front of a converting one keys on it).
    pub variant_only: bool,
    /// `smart_imaging_ttl`: `Cache-Control: max-age` for responses that
    /// carry no caching headers (seconds); `None`: off.
    pub ttl: Option<u64>,
    /// `smart_imaging_buffer`: the largest body buffered for conversion.
    pub buffer: usize,
    /// `smart_imaging_max_jobs`: conversions queued or running, per worker.
    pub max_jobs: usize,
    /// `smart_imaging_timeout`: how long a request waits for its
    /// conversion, in milliseconds.
    pub timeout_ms: u64,
    /// `smart_imaging_max_running`: conversions running at once, per
    /// worker (the others wait in the module's queue).
    pub max_running: MaxRunning,
    /// `smart_imaging_stash_path`: where results of abandoned and
    /// background conversions are kept for the next identical requests;
    /// `None`: off.
    pub stash: Option<StashPath>,
    /// `smart_imaging_background`: a request whose variant is not in the
    /// stash gets the original at once, and its conversion runs on without
    /// it, into the stash.
    pub background: bool,
    /// `smart_imaging_accept_ch`
    pub accept_ch: AcceptCh,
    /// `smart_imaging_debug_header`
    pub debug_header: bool,
    /// `smart_imaging_max_pixels`, `smart_imaging_work_budget`
    pub limits: Limits,
    /// What the policy reads.
    pub settings: Settings,
}

impl Default for Location {
    /// The defaults of the nginx layer's directives (docs/directives.md).
    fn default() -> Self {
        Location {
            enabled: false,
            variant_only: false,
            ttl: None,
            buffer: 10 * 1024 * 1024,
            max_jobs: 32,
            timeout_ms: 10_000,
            max_running: MaxRunning::Auto,
            stash: Some(StashPath::default()),
            background: false,
            accept_ch: AcceptCh::Off,
            debug_header: false,
            limits: Limits::default(),
            settings: Settings::default(),
        }
    }
}

impl Location {
    /// Why nginx must refuse this location's configuration, if it must:
    /// directives that cannot work together (checked where responses are
    /// converted only).
    pub fn conflict(&self) -> Option<Refusal> {
        if self.enabled && self.background && self.stash.is_none() {
            return Some(Refusal::Message(
                "\"smart_imaging_background on\" needs the stash, but \
                 \"smart_imaging_stash_path\" is off here (background \
                 conversions leave their results in the stash)"
                    .into(),
            ));
        }
        None
    }

    /// The client hints this location's settings can use (for
    /// `Accept-CH`).
    pub fn client_hints(&self) -> Vec<&'static str> {
        let mut hints = Vec::new();
        if self.settings.dpr {
            hints.extend(["Sec-CH-DPR", "Sec-CH-Width"]);
        }
        if self.settings.network {
            hints.extend(["ECT", "Downlink", "RTT"]);
        }
        hints
    }
}

/// `smart_imaging_max_running`: how many conversions of one worker run at
/// once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxRunning {
    /// As many as the machine has online CPUs.
    Auto,
    /// At most this many (at least 1).
    Count(usize),
}

/// `smart_imaging_stash_path`: a directory for the results of abandoned
/// conversions, its size bound and how long an entry is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StashPath {
    /// As configured: relative to nginx's prefix unless absolute.
    pub path: String,
    /// The most bytes of entries kept (older ones are removed first).
    pub max_size: u64,
    /// How long an entry may wait for its request, in milliseconds.
    pub ttl_ms: u64,
}

impl Default for StashPath {
    /// `smart_imaging_stash_path smart_imaging_stash max_size=64m ttl=60s`
    fn default() -> Self {
        StashPath {
            path: "smart_imaging_stash".into(),
            max_size: 64 * 1024 * 1024,
            ttl_ms: 60_000,
        }
    }
}

/// `smart_imaging_status_zone <name> <size>` (http level): the shared
/// memory zone holding the counters of `smart_imaging_status`, shared by
/// every worker and kept across reloads (nginx reuses a zone of the same
/// name and size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusZone {
    pub name: String,
    pub size: usize,
}

impl StatusZone {
    /// The zone made when a location has `smart_imaging_status` and the
    /// http level declares none: `smart_imaging_status_zone
    /// smart_imaging_status 1m`.
    pub fn default_zone() -> StatusZone {
        StatusZone {
            name: "smart_imaging_status".into(),
            size: 1024 * 1024,
        }
    }

    /// The smallest zone accepted: eight memory pages, and at least 64k
    /// (the counters take about 25k of it, in nginx's slab allocator).
    pub fn min_size(page_size: usize) -> usize {
        (8 * page_size).max(64 * 1024)
    }
}

/// The configuration of a location, as far as the policy needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `smart_imaging_formats`: the formats that may be served, in any order
    /// (the preference is fixed: AVIF, WebP, JPEG 2000, JPEG XR).
    pub formats: Vec<Format>,
    /// Qualities per format (the JPEG one is for resized JPEGs).
    pub quality: Qualities,
    /// Per-format encoder settings (`smart_imaging_avif_speed`,
    /// `smart_imaging_avif_max_pixels`).
    pub tuning: Tuning,
    /// `smart_imaging_dpr`: scale by the device pixel ratio.
    pub dpr: bool,
    /// `smart_imaging_dpr_max`: the largest DPR honoured.
    pub max_dpr: f32,
    /// `smart_imaging_dpr_header`: a request header carrying the DPR (a CDN's
    /// device header), consulted before the client hints.
    pub dpr_header: Option<String>,
    /// `smart_imaging_network`: lower quality and drop DPR on poor networks.
    pub network: bool,
    pub network_thresholds: NetworkThresholds,
    /// How much lower the quality is on a poor network.
    pub network_quality_step: u8,
    /// Output caps, whatever was requested.
    pub caps: OutputCaps,
    /// `smart_imaging_guard`: the visual-quality guard.
    pub guard: Guard,
}

impl Default for Settings {
    /// The defaults of the policy's directives.
    fn default() -> Self {
        Settings {
            formats: Format::PREFERENCE.to_vec(),
            quality: Qualities::default_ceilings(),
            tuning: Tuning::DEFAULT,
            dpr: false,
            max_dpr: 3.0,
            dpr_header: None,
            network: false,
            network_thresholds: NetworkThresholds::default(),
            network_quality_step: 15,
            caps: OutputCaps::default(),
            guard: Guard::DEFAULT,
        }
    }
}

/// Effective connection type (the `ECT` client hint), slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ect {
    Slow2g,
    G2,
    G3,
    G4,
}

impl Ect {
    pub fn parse(value: &[u8]) -> Option<Ect> {
        match value.trim_ascii().to_ascii_lowercase().as_slice() {
            b"slow-2g" => Some(Ect::Slow2g),
            b"2g" => Some(Ect::G2),
            b"3g" => Some(Ect::G3),
            b"4g" => Some(Ect::G4),
            _ => None,
        }
    }
}

/// When a network counts as poor. The defaults are the boundaries at which
/// Chrome reports an effective connection type of `3g` or slower
/// (RTT >= 270 ms or downlink <= 0.7 Mbit/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkThresholds {
    /// Poor at or below this `ECT`.
    pub ect: Ect,
    /// Poor at or below this `Downlink`, in Mbit/s.
    pub downlink_mbps: f32,
    /// Poor at or above this `RTT`, in milliseconds.
    pub rtt_ms: u32,
}

impl Default for NetworkThresholds {
    fn default() -> Self {
        NetworkThresholds {
            ect: Ect::G3,
            downlink_mbps: 0.7,
            rtt_ms: 270,
        }
    }
}

/// `smart_imaging_accept_ch`: which client-hint opt-in headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptCh {
    Off,
    /// `Accept-CH`
    On,
    /// `Accept-CH` and `Critical-CH`
    Critical,
}

/// Why nginx refuses a directive's value, in nginx's own words.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// Printed as `"<directive>" directive <text>` (what nginx prints for
    /// a handler's returned message: `invalid number`, `invalid value`).
    Directive(&'static str),
    /// Printed as it is.
    Message(String),
    /// nginx's message for a flag that is neither `on` nor `off`.
    NotAFlag(String),
}

impl Refusal {
    /// The `[emerg]` line's text (before nginx's ` in <file>:<line>`).
    pub fn text(&self, directive: &str) -> String {
        match self {
            Refusal::Directive(text) => format!("\"{directive}\" directive {text}"),
            Refusal::Message(text) => text.clone(),
            Refusal::NotAFlag(value) => format!(
                "invalid value \"{value}\" in \"{directive}\" directive, it must be \"on\" or \"off\""
            ),
        }
    }

    /// The refusal of a directive set twice at one level.
    pub const DUPLICATE: Refusal = Refusal::Directive("is duplicate");
}

/// The directives' value parsers: the values (without the directive's
/// name; nginx has checked their count) -> the value, or why not.
pub mod parse {
    use super::{
        AcceptCh, Ect, MaxRunning, NetworkThresholds, Refusal, StashPath, StatusZone, Tri,
    };
    use crate::codecs::Format;
    use crate::plan::Guard;
    use crate::work::WorkBudget;

    type Parsed<T> = Result<T, Refusal>;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn first<'a>(args: &[&'a [u8]]) -> &'a [u8] {
        args.first().copied().unwrap_or_default()
    }

    /// `on` | `off` (any case), as nginx's flag directives.
    pub fn flag(args: &[&[u8]]) -> Parsed<bool> {
        let v = first(args);
        if v.eq_ignore_ascii_case(b"on") {
            Ok(true)
        } else if v.eq_ignore_ascii_case(b"off") {
            Ok(false)
        } else {
            Err(Refusal::NotAFlag(text(v)))
        }
    }

    /// nginx's `ngx_atoi`: decimal digits only, no sign, no overflow.
    pub fn atoi(v: &[u8]) -> Option<i64> {
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        v.iter().try_fold(0i64, |n, &d| {
            n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    }

    /// A number in `low..=high` (`high` None: no upper bound), with the
    /// messages of nginx's number directives and their bounds check.
    fn number(args: &[&[u8]], low: i64, high: Option<i64>) -> Parsed<i64> {
        let n = atoi(first(args)).ok_or(Refusal::Directive("invalid number"))?;
        match high {
            Some(high) if !(low..=high).contains(&n) => Err(Refusal::Message(format!(
                "value must be between {low} and {high}"
            ))),
            None if n < low => Err(Refusal::Message(format!(
                "value must be equal to or greater than {low}"
            ))),
            _ => Ok(n),
        }
    }

    /// A quality, 0-100.
    pub fn quality(args: &[&[u8]]) -> Parsed<u8> {
        number(args, 0, Some(100)).map(|n| n as u8)
    }

    /// An AVIF speed, 0-10.
    pub fn speed(args: &[&[u8]]) -> Parsed<u8> {
        number(args, 0, Some(10)).map(|n| n as u8)
    }

    /// A count of at least 1 (pixels, jobs).
    pub fn positive(args: &[&[u8]]) -> Parsed<u64> {
        number(args, 1, None).map(|n| n as u64)
    }

    /// [`positive`], as a count of things in memory.
    pub fn positive_count(args: &[&[u8]]) -> Parsed<usize> {
        positive(args)
            .and_then(|n| usize::try_from(n).map_err(|_| Refusal::Directive("invalid number")))
    }

    /// A size: `512`, `64k`, `10m` (nginx's `ngx_parse_size`).
    pub fn size(args: &[&[u8]]) -> Parsed<usize> {
        size_value(first(args)).ok_or(Refusal::Directive("invalid value"))
    }

    pub fn size_value(v: &[u8]) -> Option<usize> {
        let (digits, scale) = match v.last() {
            Some(b'k' | b'K') => (&v[..v.len() - 1], 1024),
            Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
            _ => (v, 1),
        };
        usize::try_from(atoi(digits)?).ok()?.checked_mul(scale)
    }

    /// A time as nginx reads one (`ngx_parse_time`): a number before
    /// each unit, units in decreasing order (`y M w d h m s`, and `ms`
    /// unless `seconds`; years and months only when counting in seconds),
    /// spaces allowed between parts (`1h30m`, `1h 30m`), and a last number
    /// without a unit counting as seconds. In seconds (`seconds`) or
    /// milliseconds; None when invalid or beyond a 64-bit count.
    pub fn time_value(v: &[u8], seconds: bool) -> Option<u64> {
        // nginx's steps, in the order units must come.
        const START: u8 = 0;
        const YEAR: u8 = 1;
        const MONTH: u8 = 2;
        const WEEK: u8 = 3;
        const DAY: u8 = 4;
        const HOUR: u8 = 5;
        const MIN: u8 = 6;
        const SEC: u8 = 7;
        const MSEC: u8 = 8;
        const LAST: u8 = 9;
        const MAX: i64 = i64::MAX;
        let mut step = if seconds { START } else { MONTH };
        let (mut value, mut total, mut valid) = (0i64, 0i64, false);
        let mut i = 0;
        while i < v.len() {
            let c = v[i];
            i += 1;
            if c.is_ascii_digit() {
                value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
                valid = true;
                continue;
            }
            // (the step this unit is, the step it must come after, seconds)
            let (next, after, unit) = match c {
                b'y' => (YEAR, START, 365 * 86_400),
                b'M' => (MONTH, YEAR, 30 * 86_400),
                b'w' => (WEEK, MONTH, 7 * 86_400),
                b'd' => (DAY, WEEK, 86_400),
                b'h' => (HOUR, DAY, 3_600),
                b'm' if v.get(i) == Some(&b's') => {
                    if seconds {
                        return None;
                    }
                    i += 1;
                    (MSEC, SEC, 0)
                }
                b'm' => (MIN, HOUR, 60),
                b's' => (SEC, MIN, 1),
                // A number followed by a space: seconds, and the end.
                b' ' => (LAST, MIN, 1),
                _ => return None,
            };
            if step > after {
                return None;
            }
            step = next;
            let (scale, max) = match (next, seconds) {
                (MSEC, _) => (1, MAX),
                (_, true) => (unit, MAX / unit),
                (_, false) => (unit * 1000, MAX / unit / 1000),
            };
            if value > max {
                return None;
            }
            total = total.checked_add(value * scale)?;
            value = 0;
            while v.get(i) == Some(&b' ') {
                i += 1;
            }
        }
        if !valid {
            return None;
        }
        let last = if seconds {
            value
        } else {
            value.checked_mul(1000)?
        };
        u64::try_from(total.checked_add(last)?).ok()
    }

    /// `smart_imaging_ttl <time> | off`, in seconds.
    pub fn ttl(args: &[&[u8]]) -> Parsed<Tri<u64>> {
        let v = first(args);
        if v == b"off" {
            return Ok(Tri::Off);
        }
        time_value(v, true)
            .map(Tri::On)
            .ok_or(Refusal::Directive("invalid value"))
    }

    /// `smart_imaging_max_running <number> | auto`
    pub fn max_running(args: &[&[u8]]) -> Parsed<MaxRunning> {
        if first(args) == b"auto" {
            return Ok(MaxRunning::Auto);
        }
        positive_count(args).map(MaxRunning::Count)
    }

    /// `smart_imaging_stash_path <path> [max_size=<size>] [ttl=<time>] | off`
    pub fn stash_path(args: &[&[u8]]) -> Parsed<Tri<StashPath>> {
        let path = first(args);
        if path == b"off" && args.len() == 1 {
            return Ok(Tri::Off);
        }
        if path.is_empty() || path.contains(&0) {
            return Err(Refusal::Message(format!("invalid path \"{}\"", text(path))));
        }
        let mut stash = StashPath {
            path: text(path),
            ..StashPath::default()
        };
        for arg in &args[1..] {
            let invalid = || Refusal::Message(format!("invalid parameter \"{}\"", text(arg)));
            let eq = arg.iter().position(|&b| b == b'=').ok_or_else(invalid)?;
            let (key, value) = (&arg[..eq], &arg[eq + 1..]);
            match key {
                b"max_size" => {
                    stash.max_size = size_value(value).filter(|&n| n > 0).ok_or_else(|| {
                        Refusal::Message(format!("invalid max_size \"{}\"", text(value)))
                    })? as u64
                }
                b"ttl" => {
                    stash.ttl_ms =
                        time_value(value, false)
                            .filter(|&ms| ms > 0)
                            .ok_or_else(|| {
                                Refusal::Message(format!("invalid ttl \"{}\"", text(value)))
                            })?
                }
                _ => return Err(invalid()),
            }
        }
        Ok(Tri::On(stash))
    }

    /// `smart_imaging_status_zone <name> <size>`, `size` at least
    /// `min_size` (see [`StatusZone::min_size`]), refused with the messages
    /// of nginx's own zone directives.
    pub fn status_zone(args: &[&[u8]], min_size: usize) -> Parsed<StatusZone> {
        let name = first(args);
        let size = args.get(1).copied().unwrap_or_default();
        if name.is_empty() || name.contains(&0) {
            return Err(Refusal::Message(format!(
                "invalid zone name \"{}\"",
                text(name)
            )));
        }
        let name = text(name);
        let bytes = size_value(size)
            .ok_or_else(|| Refusal::Message(format!("invalid zone size \"{}\"", text(size))))?;
        if bytes < min_size {
            return Err(Refusal::Message(format!(
                "zone \"{name}\" is too small (at least {}k)",
                min_size.div_ceil(1024)
            )));
        }
        Ok(StatusZone { name, size: bytes })
    }

    /// `smart_imaging_timeout <time>`, more than zero, in milliseconds.
    pub fn timeout(args: &[&[u8]]) -> Parsed<u64> {
        time_value(first(args), false)
            .filter(|&ms| ms > 0)
            .ok_or(Refusal::Directive("invalid value"))
    }

    fn positive_f32(value: &[u8], what: &str) -> Parsed<f32> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<f32>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| Refusal::Message(format!("invalid {what} \"{}\"", text(value))))
    }

    /// `smart_imaging_dpr_max <number>` (more than 0).
    pub fn dpr_max(args: &[&[u8]]) -> Parsed<f32> {
        positive_f32(first(args), "value")
    }

    /// `smart_imaging_dpr_header <name> | off`
    pub fn header_name(args: &[&[u8]]) -> Parsed<Tri<String>> {
        let name = first(args);
        if name == b"off" {
            return Ok(Tri::Off);
        }
        let valid = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if name.is_empty() || !name.iter().all(valid) {
            return Err(Refusal::Message(format!(
                "invalid header name \"{}\"",
                text(name)
            )));
        }
        Ok(Tri::On(text(name)))
    }

    /// `smart_imaging_network_thresholds [ect=<type>] [downlink=<Mbit/s>] [rtt=<time>]`
    pub fn network_thresholds(args: &[&[u8]]) -> Parsed<NetworkThresholds> {
        let mut t = NetworkThresholds::default();
        for arg in args {
            let invalid = || Refusal::Message(format!("invalid parameter \"{}\"", text(arg)));
            let eq = arg.iter().position(|&b| b == b'=').ok_or_else(invalid)?;
            let (key, value) = (&arg[..eq], &arg[eq + 1..]);
            match key {
                b"ect" => {
                    t.ect = Ect::parse(value).ok_or_else(|| {
                        Refusal::Message(format!(
                            "invalid ect \"{}\" (slow-2g, 2g, 3g or 4g)",
                            text(value)
                        ))
                    })?
                }
                b"downlink" => t.downlink_mbps = positive_f32(value, "downlink")?,
                b"rtt" => {
                    let ms = time_value(value, false).ok_or_else(|| {
                        Refusal::Message(format!("invalid rtt \"{}\"", text(value)))
                    })?;
                    t.rtt_ms = ms as u32;
                }
                _ => return Err(invalid()),
            }
        }
        Ok(t)
    }

    fn dimension(value: &[u8]) -> Parsed<Option<u32>> {
        if value == b"-" {
            return Ok(None);
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v > 0)
            .map(Some)
            .ok_or_else(|| Refusal::Message(format!("invalid size \"{}\"", text(value))))
    }

    /// `smart_imaging_max_output_size <width>|- <height>|-`
    pub fn max_output_size(args: &[&[u8]]) -> Parsed<(Option<u32>, Option<u32>)> {
        let second = args.get(1).copied().unwrap_or_default();
        Ok((dimension(first(args))?, dimension(second)?))
    }

    /// `smart_imaging_max_output_pixels <number> | off`
    pub fn pixels_or_off(args: &[&[u8]]) -> Parsed<Tri<u64>> {
        let value = first(args);
        if value == b"off" {
            return Ok(Tri::Off);
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v > 0)
            .map(Tri::On)
            .ok_or_else(|| Refusal::Message(format!("invalid value \"{}\"", text(value))))
    }

    /// `smart_imaging_formats <format> ...` (the registry's negotiated
    /// formats, by name).
    pub fn formats(args: &[&[u8]]) -> Parsed<Vec<Format>> {
        let known: Vec<&str> = Format::PREFERENCE.iter().map(|f| f.name()).collect();
        args.iter()
            .map(|arg| {
                Format::from_name(std::str::from_utf8(arg).unwrap_or("")).ok_or_else(|| {
                    Refusal::Message(format!(
                        "unknown format \"{}\" ({})",
                        text(arg),
                        known.join(", ")
                    ))
                })
            })
            .collect()
    }

    /// `smart_imaging_accept_ch off | on | critical`
    pub fn accept_ch(args: &[&[u8]]) -> Parsed<AcceptCh> {
        match first(args) {
            b"off" => Ok(AcceptCh::Off),
            b"on" => Ok(AcceptCh::On),
            b"critical" => Ok(AcceptCh::Critical),
            other => Err(Refusal::Message(format!(
                "invalid value \"{}\" (off, on or critical)",
                text(other)
            ))),
        }
    }

    /// `smart_imaging_guard <score> | off`: a score from 0 to 100, in
    /// plain decimal notation (`80`, `72.5`).
    pub fn guard(args: &[&[u8]]) -> Parsed<Tri<f64>> {
        let value = first(args);
        if value == b"off" {
            return Ok(Tri::Off);
        }
        let plain = !value.is_empty()
            && value.iter().all(|b| b.is_ascii_digit() || *b == b'.')
            && value.iter().any(u8::is_ascii_digit);
        std::str::from_utf8(value)
            .ok()
            .filter(|_| plain)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| (0.0..=100.0).contains(v))
            .map(Tri::On)
            .ok_or_else(|| {
                Refusal::Message(format!(
                    "invalid value \"{}\" (a score from 0 to 100, or off)",
                    text(value)
                ))
            })
    }

    /// `smart_imaging_work_budget <number> [min=<number>] | off`: pixel-passes
    /// per byte of input (at least 1), and the least any input gets
    /// (`min=`, 0 or more; the default's when not given).
    pub fn work_budget(args: &[&[u8]]) -> Parsed<Tri<WorkBudget>> {
        let per_byte = first(args);
        if per_byte == b"off" && args.len() == 1 {
            return Ok(Tri::Off);
        }
        let mut budget = WorkBudget {
            per_byte: atoi(per_byte)
                .filter(|&n| n > 0)
                .ok_or_else(|| Refusal::Message(format!("invalid value \"{}\"", text(per_byte))))?
                as u64,
            ..WorkBudget::DEFAULT
        };
        for arg in &args[1..] {
            match arg.strip_prefix(b"min=") {
                Some(value) => {
                    budget.min = atoi(value).ok_or_else(|| {
                        Refusal::Message(format!("invalid min \"{}\"", text(value)))
                    })? as u64
                }
                None => {
                    return Err(Refusal::Message(format!(
                        "invalid parameter \"{}\"",
                        text(arg)
                    )))
                }
            }
        }
        Ok(Tri::On(budget))
    }

    /// `smart_imaging_guard_encodes <1-16>`
    pub fn guard_encodes(args: &[&[u8]]) -> Parsed<usize> {
        let value = first(args);
        std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| (1..=Guard::MAX_ENCODES).contains(v))
            .ok_or_else(|| {
                Refusal::Message(format!(
                    "invalid value \"{}\" (1 to {})",
                    text(value),
                    Guard::MAX_ENCODES
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::parse::*;
    use super::*;

    fn refusal<T: std::fmt::Debug>(directive: &str, r: Result<T, Refusal>) -> String {
        r.expect_err("refused").text(directive)
    }

    #[test]
    fn status_zone_name_and_size() {
        let min = StatusZone::min_size(4096);
        assert_eq!(min, 64 * 1024);
        assert_eq!(StatusZone::min_size(65536), 512 * 1024);
        assert_eq!(
            status_zone(&[b"metrics", b"1m"], min),
            Ok(StatusZone {
                name: "metrics".into(),
                size: 1024 * 1024
            })
        );
        assert_eq!(status_zone(&[b"m", b"64k"], min).unwrap().size, min);
        let d = "smart_imaging_status_zone";
        assert_eq!(
            refusal(d, status_zone(&[b"m", b"63k"], min)),
            r#"zone "m" is too small (at least 64k)"#
        );
        assert_eq!(
            refusal(d, status_zone(&[b"m", b"lots"], min)),
            r#"invalid zone size "lots""#
        );
        assert_eq!(
            refusal(d, status_zone(&[b"", b"1m"], min)),
            r#"invalid zone name """#
        );
        let default = StatusZone::default_zone();
        assert!(default.size >= StatusZone::min_size(65536));
    }

    #[test]
    fn flags() {
        assert_eq!(flag(&[b"on"]), Ok(true));
        assert_eq!(flag(&[b"OFF"]), Ok(false));
        assert_eq!(
            refusal("smart_imaging", flag(&[b"maybe"])),
            r#"invalid value "maybe" in "smart_imaging" directive, it must be "on" or "off""#
        );
    }

    #[test]
    fn numbers_as_nginx_reads_them() {
        assert_eq!(quality(&[b"0"]), Ok(0));
        assert_eq!(quality(&[b"100"]), Ok(100));
        let q = "smart_imaging_webp_quality";
        assert_eq!(
            refusal(q, quality(&[b"101"])),
            "value must be between 0 and 100"
        );
        assert_eq!(
            refusal(q, quality(&[b"-1"])),
            r#""smart_imaging_webp_quality" directive invalid number"#
        );
        assert_eq!(
            refusal(q, quality(&[b"high"])),
            r#""smart_imaging_webp_quality" directive invalid number"#
        );
        assert_eq!(
            refusal("x", speed(&[b"11"])),
            "value must be between 0 and 10"
        );
        assert_eq!(positive(&[b"1000"]), Ok(1000));
        assert_eq!(
            refusal("x", positive(&[b"0"])),
            "value must be equal to or greater than 1"
        );
        assert_eq!(atoi(b"99999999999999999999"), None);
        assert_eq!(atoi(b""), None);
        assert_eq!(atoi(b"+1"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(size(&[b"64m"]), Ok(64 << 20));
        assert_eq!(size(&[b"512k"]), Ok(512 << 10));
        assert_eq!(size(&[b"4096"]), Ok(4096));
        assert_eq!(
            refusal("smart_imaging_buffer", size(&[b"lots"])),
            r#""smart_imaging_buffer" directive invalid value"#
        );
        assert_eq!(size_value(b"m"), None);
        assert_eq!(size_value(b""), None);
    }

    #[test]
    fn times_as_nginx_reads_them() {
        // (text, in seconds, in milliseconds)
        let table: [(&str, Option<u64>, Option<u64>); 21] = [
            ("30d", Some(30 * 86_400), Some(30 * 86_400_000)),
            ("1h30m", Some(5_400), Some(5_400_000)),
            ("1d 12h", Some(129_600), Some(129_600_000)),
            ("1h 30", Some(3_630), Some(3_630_000)),
            ("10 5s", None, None),
            (" 10", Some(10), Some(10_000)),
            ("1h", Some(3_600), Some(3_600_000)),
            ("10s", Some(10), Some(10_000)),
            ("10", Some(10), Some(10_000)),
            ("200ms", None, Some(200)),
            ("1m 30s", Some(90), Some(90_000)),
            ("1h  5m", Some(3_900), Some(3_900_000)),
            ("1y", Some(365 * 86_400), None),
            ("2M", Some(60 * 86_400), None),
            ("1s 1m", None, None),
            ("1m1s", Some(61), Some(61_000)),
            ("forever", None, None),
            ("", None, None),
            ("s", None, None),
            ("1w1w", None, None),
            ("25d", Some(25 * 86_400), Some(25 * 86_400_000)),
        ];
        for (text, secs, ms) in table {
            assert_eq!(
                time_value(text.as_bytes(), true),
                secs,
                "{text:?} in seconds"
            );
            assert_eq!(time_value(text.as_bytes(), false), ms, "{text:?} in ms");
        }
        assert_eq!(ttl(&[b"off"]), Ok(Tri::Off));
        assert_eq!(ttl(&[b"1h"]), Ok(Tri::On(3600)));
        assert_eq!(
            refusal("smart_imaging_ttl", ttl(&[b"forever"])),
            r#""smart_imaging_ttl" directive invalid value"#
        );
        assert_eq!(timeout(&[b"250ms"]), Ok(250));
        assert_eq!(
            refusal("smart_imaging_timeout", timeout(&[b"0"])),
            r#""smart_imaging_timeout" directive invalid value"#
        );
    }

    #[test]
    fn own_parsers() {
        assert_eq!(dpr_max(&[b"2.5"]), Ok(2.5));
        assert_eq!(refusal("x", dpr_max(&[b"0"])), r#"invalid value "0""#);
        assert_eq!(header_name(&[b"off"]), Ok(Tri::Off));
        assert_eq!(
            header_name(&[b"CloudFront-DPR"]),
            Ok(Tri::On("CloudFront-DPR".into()))
        );
        assert_eq!(
            refusal("x", header_name(&[b"a b"])),
            r#"invalid header name "a b""#
        );
        let t = network_thresholds(&[b"ect=2g", b"downlink=1.5", b"rtt=300ms"]).unwrap();
        assert_eq!((t.ect, t.downlink_mbps, t.rtt_ms), (Ect::G2, 1.5, 300));
        assert_eq!(
            refusal("x", network_thresholds(&[b"ect=5g"])),
            r#"invalid ect "5g" (slow-2g, 2g, 3g or 4g)"#
        );
        assert_eq!(
            refusal("x", network_thresholds(&[b"speed"])),
            r#"invalid parameter "speed""#
        );
        assert_eq!(
            refusal("x", network_thresholds(&[b"rtt=soon"])),
            r#"invalid rtt "soon""#
        );
        assert_eq!(max_output_size(&[b"800", b"-"]), Ok((Some(800), None)));
        assert_eq!(
            refusal("x", max_output_size(&[b"0", b"-"])),
            r#"invalid size "0""#
        );
        assert_eq!(pixels_or_off(&[b"off"]), Ok(Tri::Off));
        assert_eq!(pixels_or_off(&[b"4000000"]), Ok(Tri::On(4_000_000)));
        assert_eq!(
            formats(&[b"webp", b"AVIF"]),
            Ok(vec![Format::WebP, Format::Avif])
        );
        assert_eq!(
            refusal("x", formats(&[b"gif"])),
            r#"unknown format "gif" (avif, webp, jp2, jxr)"#
        );
        assert_eq!(accept_ch(&[b"critical"]), Ok(AcceptCh::Critical));
        assert_eq!(
            refusal("x", accept_ch(&[b"yes"])),
            r#"invalid value "yes" (off, on or critical)"#
        );
        assert_eq!(guard(&[b"72.5"]), Ok(Tri::On(72.5)));
        assert_eq!(guard(&[b"off"]), Ok(Tri::Off));
        assert_eq!(
            refusal("x", guard(&[b"1e2"])),
            r#"invalid value "1e2" (a score from 0 to 100, or off)"#
        );
        assert_eq!(work_budget(&[b"off"]), Ok(Tri::Off));
        assert_eq!(
            work_budget(&[b"64"]),
            Ok(Tri::On(WorkBudget {
                per_byte: 64,
                ..WorkBudget::DEFAULT
            }))
        );
        assert_eq!(
            work_budget(&[b"100", b"min=0"]),
            Ok(Tri::On(WorkBudget {
                per_byte: 100,
                min: 0
            }))
        );
        assert_eq!(refusal("x", work_budget(&[b"0"])), r#"invalid value "0""#);
        assert_eq!(
            refusal("x", work_budget(&[b"off", b"min=1"])),
            r#"invalid value "off""#
        );
        assert_eq!(
            refusal("x", work_budget(&[b"64", b"min=-1"])),
            r#"invalid min "-1""#
        );
        assert_eq!(
            refusal("x", work_budget(&[b"64", b"floor=1"])),
            r#"invalid parameter "floor=1""#
        );
        assert_eq!(guard_encodes(&[b"16"]), Ok(16));
        assert_eq!(
            refusal("x", guard_encodes(&[b"17"])),
            r#"invalid value "17" (1 to 16)"#
        );
        assert_eq!(max_running(&[b"auto"]), Ok(MaxRunning::Auto));
        assert_eq!(max_running(&[b"3"]), Ok(MaxRunning::Count(3)));
        assert_eq!(
            refusal("x", max_running(&[b"0"])),
            "value must be equal to or greater than 1"
        );
        assert_eq!(
            refusal("x", max_running(&[b"many"])),
            r#""x" directive invalid number"#
        );
        assert_eq!(stash_path(&[b"off"]), Ok(Tri::Off));
        assert_eq!(
            stash_path(&[b"/var/cache/stash", b"max_size=1m", b"ttl=30s"]),
            Ok(Tri::On(StashPath {
                path: "/var/cache/stash".into(),
                max_size: 1 << 20,
                ttl_ms: 30_000
            }))
        );
        assert_eq!(
            stash_path(&[b"stash"]),
            Ok(Tri::On(StashPath {
                path: "stash".into(),
                ..StashPath::default()
            }))
        );
        assert_eq!(
            refusal("x", stash_path(&[b"s", b"max_size=0"])),
            r#"invalid max_size "0""#
        );
        assert_eq!(
            refusal("x", stash_path(&[b"s", b"ttl=soon"])),
            r#"invalid ttl "soon""#
        );
        assert_eq!(
            refusal("x", stash_path(&[b"s", b"levels=1:2"])),
            r#"invalid parameter "levels=1:2""#
        );
        assert_eq!(
            Refusal::DUPLICATE.text("smart_imaging_ttl"),
            r#""smart_imaging_ttl" directive is duplicate"#
        );
    }

    #[test]
    fn defaults() {
        let l = Directives::default().resolve();
        assert_eq!(l, Location::default());
        assert!(!l.enabled);
        assert_eq!(
            (l.ttl, l.buffer, l.max_jobs, l.timeout_ms),
            (None, 10 << 20, 32, 10_000)
        );
        assert_eq!(l.limits.max_pixels, 16_000_000);
        assert_eq!(l.limits.work, Some(WorkBudget::DEFAULT));
        assert_eq!(l.max_running, MaxRunning::Auto);
        assert_eq!(l.stash, Some(StashPath::default()));
        assert!(!l.background);
        assert_eq!(l.conflict(), None);
        assert_eq!(l.settings, Settings::default());
        assert_eq!(l.settings.guard, Guard::DEFAULT);
        assert!(l.client_hints().is_empty());
    }

    #[test]
    fn inheritance_and_off() {
        let http = Directives {
            enable: Some(true),
            ttl: Tri::On(3600),
            guard: Tri::Off,
            dpr_header: Tri::On("X-DPR".into()),
            webp_quality: Some(70),
            work_budget: Tri::Off,
            ..Directives::default()
        };
        let mut location = Directives {
            ttl: Tri::Off,
            dpr: Some(true),
            ..Directives::default()
        };
        location.inherit(&http);
        let l = location.resolve();
        assert!(l.enabled);
        assert_eq!(l.ttl, None, "off at the location wins over the http level");
        assert_eq!(l.settings.guard.threshold, None);
        assert_eq!(l.limits.work, None, "off at the http level, inherited");
        assert_eq!(l.settings.dpr_header.as_deref(), Some("X-DPR"));
        assert_eq!(l.settings.quality.get(Format::Jxr), 70);
        assert_eq!(l.client_hints(), ["Sec-CH-DPR", "Sec-CH-Width"]);
    }

    #[test]
    fn background_needs_the_stash() {
        let http = Directives {
            enable: Some(true),
            background: Some(true),
            ..Directives::default()
        };
        let l = http.resolve();
        assert!(l.background && l.stash.is_some());
        assert_eq!(l.conflict(), None);
        let mut off = Directives {
            stash_path: Tri::Off,
            ..Directives::default()
        };
        off.inherit(&http);
        let l = off.resolve();
        assert!(l.background, "inherited");
        assert_eq!(
            l.conflict().map(|r| r.text("smart_imaging_background")),
            Some(
                "\"smart_imaging_background on\" needs the stash, but \
                 \"smart_imaging_stash_path\" is off here (background conversions \
                 leave their results in the stash)"
                    .into()
            )
        );
        // Where nothing is converted, nothing conflicts.
        let mut front = Directives {
            variant_only: Some(true),
            ..Directives::default()
        };
        front.inherit(&off);
        assert_eq!(front.resolve().conflict(), None);
        let mut quiet = Directives {
            background: Some(false),
            ..Directives::default()
        };
        quiet.inherit(&off);
        assert_eq!(quiet.resolve().conflict(), None);
    }

    #[test]
    fn variant_only_converts_nothing() {
        let http = Directives {
            enable: Some(true),
            ..Directives::default()
        };
        let mut front = Directives {
            variant_only: Some(true),
            ..Directives::default()
        };
        front.inherit(&http);
        let l = front.resolve();
        assert!(l.variant_only);
        assert!(
            !l.enabled,
            "variant_only wins over an inherited smart_imaging on"
        );
        let mut back = Directives::default();
        back.inherit(&http);
        assert!(back.resolve().enabled && !back.resolve().variant_only);
        let alone = Directives {
            variant_only: Some(true),
            ..Directives::default()
        }
        .resolve();
        assert!(alone.variant_only && !alone.enabled);
    }
}
