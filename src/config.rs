//! Directives and their configuration. Each directive is declared next to the
//! field it sets, as nginx's own modules do; settings inherit
//! http -> server -> location.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_check_num_bounds, ngx_conf_num_bounds_t, ngx_conf_set_flag_slot,
    ngx_conf_set_num_slot, ngx_conf_set_size_slot, ngx_conf_t, ngx_flag_t, ngx_int_t, ngx_msec_t,
    ngx_parse_time, ngx_str_t, ngx_thread_pool_add, ngx_thread_pool_t, ngx_uint_t, NGX_CONF_1MORE,
    NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_HTTP_LIF_CONF, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use smart_imaging_core::negotiate::Format;
use smart_imaging_core::policy::{Ect, NetworkThresholds, Settings};
use smart_imaging_core::sizing::OutputCaps;
use smart_imaging_core::{AvifLimits, Guard, Limits, Qualities};

/// Defaults, documented in README.md.
pub const DEFAULT_BUFFER: usize = 10 * 1024 * 1024;
pub const DEFAULT_MAX_PIXELS: ngx_int_t = 16_000_000;
pub const DEFAULT_WEBP_QUALITY: ngx_int_t = 100;
pub const DEFAULT_MAX_JOBS: ngx_int_t = 32;
/// `smart_imaging_timeout`, in milliseconds.
pub const DEFAULT_TIMEOUT: ngx_msec_t = 10_000;
pub const DEFAULT_JPEG_QUALITY: ngx_int_t = 100;
pub const DEFAULT_DPR_MAX: f32 = 3.0;
pub const DEFAULT_NETWORK_QUALITY_STEP: ngx_int_t = 15;
/// `smart_imaging_guard_encodes`: the accepted range.
pub const GUARD_ENCODES_MAX: usize = 16;
/// The formats served where `smart_imaging_formats` is not set.
pub const DEFAULT_FORMATS: [Format; 4] = Format::PREFERENCE;

const UNSET: ngx_int_t = -1;
const UNSET_SIZE: usize = usize::MAX;
const UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;

/// Location configuration (`smart_imaging_*` directives). `#[repr(C)]`
/// because nginx's generic slot setters write fields by byte offset.
#[repr(C)]
pub struct LocConf {
    /// `smart_imaging on|off`
    pub enable: ngx_flag_t,
    /// `smart_imaging_ttl`: seconds; 0 = off.
    pub ttl: ngx_int_t,
    /// `smart_imaging_buffer`: largest body that is buffered for conversion.
    pub buffer: usize,
    /// `smart_imaging_max_pixels`: largest decoded image (width * height).
    pub max_pixels: ngx_int_t,
    /// `smart_imaging_webp_quality`: 0-100 on libwebp's scale.
    pub webp_quality: ngx_int_t,
    /// `smart_imaging_max_jobs`: per worker, transcodes queued or running.
    pub max_jobs: ngx_int_t,
    /// `smart_imaging_thread_pool`: resolved at configuration time.
    pub thread_pool: *mut ngx_thread_pool_t,
    /// `smart_imaging_jpeg_quality`: MozJPEG quality for resized JPEGs.
    pub jpeg_quality: ngx_int_t,
    /// `smart_imaging_dpr on|off`
    pub dpr: ngx_flag_t,
    /// `smart_imaging_network on|off`
    pub network: ngx_flag_t,
    /// `smart_imaging_network_quality_step`
    pub network_quality_step: ngx_int_t,
    /// `smart_imaging_debug_header on|off`
    pub debug_header: ngx_flag_t,
    /// `smart_imaging_timeout`: milliseconds a request waits for its job.
    pub timeout: ngx_msec_t,

    // The fields below are set by this module's own directive handlers
    // (`None` = not set at this level), not by nginx's slot setters.
    /// `smart_imaging_dpr_max`
    pub dpr_max: Option<f32>,
    /// `smart_imaging_dpr_header <name> | off`
    pub dpr_header: Option<Option<String>>,
    /// `smart_imaging_network_thresholds ect=.. downlink=.. rtt=..`
    pub network_thresholds: Option<NetworkThresholds>,
    /// `smart_imaging_max_output_size <width>|- <height>|-`
    pub max_output_size: Option<(Option<u32>, Option<u32>)>,
    /// `smart_imaging_max_output_pixels <n> | off`
    pub max_output_pixels: Option<Option<u64>>,
    /// `smart_imaging_accept_ch off|on|critical`
    pub accept_ch: Option<AcceptCh>,
    /// `smart_imaging_formats avif webp ...`
    pub formats: Option<Vec<Format>>,
    /// `smart_imaging_avif_quality`, `_avif_speed`, `_avif_max_pixels`
    pub avif_quality: ngx_int_t,
    pub avif_speed: ngx_int_t,
    pub avif_max_pixels: ngx_int_t,
    /// `smart_imaging_guard <score> | off` (`Some(None)` = off)
    pub guard: Option<Option<f64>>,
    /// `smart_imaging_guard_encodes <n>`
    pub guard_encodes: Option<usize>,
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

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            enable: UNSET,
            ttl: UNSET,
            buffer: UNSET_SIZE,
            max_pixels: UNSET,
            webp_quality: UNSET,
            max_jobs: UNSET,
            thread_pool: ptr::null_mut(),
            jpeg_quality: UNSET,
            dpr: UNSET,
            network: UNSET,
            network_quality_step: UNSET,
            debug_header: UNSET,
            timeout: UNSET_MSEC,
            dpr_max: None,
            dpr_header: None,
            network_thresholds: None,
            max_output_size: None,
            max_output_pixels: None,
            accept_ch: None,
            formats: None,
            avif_quality: UNSET,
            avif_speed: UNSET,
            avif_max_pixels: UNSET,
            guard: None,
            guard_encodes: None,
        }
    }
}

impl LocConf {
    pub fn enabled(&self) -> bool {
        self.enable == 1
    }

    /// The configuration as the core's policy sees it.
    pub fn settings(&self) -> Settings {
        let (max_width, max_height) = self.max_output_size.unwrap_or_default();
        Settings {
            formats: self
                .formats
                .clone()
                .unwrap_or_else(|| DEFAULT_FORMATS.to_vec()),
            quality: Qualities::configured(
                self.webp_quality as u8,
                self.avif_quality as u8,
                self.jpeg_quality as u8,
            ),
            avif: AvifLimits {
                speed: self.avif_speed as u8,
                max_pixels: self.avif_max_pixels as u64,
                ..AvifLimits::DEFAULT
            },
            dpr: self.dpr == 1,
            max_dpr: self.dpr_max.unwrap_or(DEFAULT_DPR_MAX),
            dpr_header: self.dpr_header.clone().flatten(),
            network: self.network == 1,
            network_thresholds: self.network_thresholds.unwrap_or_default(),
            network_quality_step: self.network_quality_step as u8,
            caps: OutputCaps {
                max_width,
                max_height,
                max_pixels: self.max_output_pixels.flatten(),
            },
            guard: Guard {
                threshold: self.guard.unwrap_or(Guard::DEFAULT.threshold),
                max_encodes: self.guard_encodes.unwrap_or(Guard::DEFAULT.max_encodes),
            },
        }
    }

    /// `smart_imaging_debug_header on`
    pub fn debug_header(&self) -> bool {
        self.debug_header == 1
    }

    /// The client hints this location's settings can use (for `Accept-CH`).
    pub fn client_hints(&self) -> Vec<&'static str> {
        let mut hints = Vec::new();
        if self.dpr == 1 {
            hints.extend(["Sec-CH-DPR", "Sec-CH-Width"]);
        }
        if self.network == 1 {
            hints.extend(["ECT", "Downlink", "RTT"]);
        }
        hints
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.max_pixels as u64,
        }
    }

    /// Inherits every unset field from the enclosing level, then applies
    /// defaults. Registers the default thread pool when the module is on and
    /// no pool was named, so `smart_imaging on;` works without more config.
    ///
    /// # Safety
    /// `cf` must be the configuration being merged.
    pub unsafe fn merge(&mut self, prev: &LocConf, cf: *mut ngx_conf_t) -> Result<(), ()> {
        fn merge_int(conf: &mut ngx_int_t, prev: ngx_int_t, default: ngx_int_t) {
            if *conf == UNSET {
                *conf = if prev == UNSET { default } else { prev };
            }
        }
        merge_int(&mut self.enable, prev.enable, 0);
        merge_int(&mut self.ttl, prev.ttl, 0);
        if self.buffer == UNSET_SIZE {
            self.buffer = if prev.buffer == UNSET_SIZE {
                DEFAULT_BUFFER
            } else {
                prev.buffer
            };
        }
        merge_int(&mut self.max_pixels, prev.max_pixels, DEFAULT_MAX_PIXELS);
        merge_int(
            &mut self.webp_quality,
            prev.webp_quality,
            DEFAULT_WEBP_QUALITY,
        );
        merge_int(&mut self.max_jobs, prev.max_jobs, DEFAULT_MAX_JOBS);
        if self.timeout == UNSET_MSEC {
            self.timeout = if prev.timeout == UNSET_MSEC {
                DEFAULT_TIMEOUT
            } else {
                prev.timeout
            };
        }
        merge_int(
            &mut self.jpeg_quality,
            prev.jpeg_quality,
            DEFAULT_JPEG_QUALITY,
        );
        merge_int(&mut self.dpr, prev.dpr, 0);
        merge_int(&mut self.network, prev.network, 0);
        merge_int(&mut self.debug_header, prev.debug_header, 0);
        merge_int(
            &mut self.network_quality_step,
            prev.network_quality_step,
            DEFAULT_NETWORK_QUALITY_STEP,
        );
        fn merge_opt<T: Clone>(conf: &mut Option<T>, prev: &Option<T>) {
            if conf.is_none() {
                conf.clone_from(prev);
            }
        }
        merge_opt(&mut self.dpr_max, &prev.dpr_max);
        merge_opt(&mut self.dpr_header, &prev.dpr_header);
        merge_opt(&mut self.network_thresholds, &prev.network_thresholds);
        merge_opt(&mut self.max_output_size, &prev.max_output_size);
        merge_opt(&mut self.max_output_pixels, &prev.max_output_pixels);
        merge_opt(&mut self.accept_ch, &prev.accept_ch);
        merge_opt(&mut self.formats, &prev.formats);
        merge_opt(&mut self.guard, &prev.guard);
        merge_opt(&mut self.guard_encodes, &prev.guard_encodes);
        let avif = AvifLimits::DEFAULT;
        merge_int(
            &mut self.avif_quality,
            prev.avif_quality,
            Qualities::DEFAULT.avif.into(),
        );
        merge_int(&mut self.avif_speed, prev.avif_speed, avif.speed.into());
        merge_int(
            &mut self.avif_max_pixels,
            prev.avif_max_pixels,
            avif.max_pixels as ngx_int_t,
        );
        if self.thread_pool.is_null() {
            self.thread_pool = prev.thread_pool;
        }
        if self.enabled() && self.thread_pool.is_null() {
            // SAFETY: `cf` is valid during merge; a NULL name selects nginx's
            // built-in "default" pool (32 threads unless declared otherwise).
            self.thread_pool = unsafe { ngx_thread_pool_add(cf, ptr::null_mut()) };
            if self.thread_pool.is_null() {
                return Err(());
            }
        }
        Ok(())
    }
}

/// `smart_imaging_ttl <time> | off;`
unsafe extern "C" fn set_ttl(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's LocConf and the parsed arguments.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if conf.ttl != UNSET {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: args holds the directive name and exactly one value (TAKE1).
    let value = unsafe { &mut *(*(*cf).args).elts.cast::<ngx_str_t>().add(1) };
    if value.as_bytes() == b"off" {
        conf.ttl = 0;
        return NGX_CONF_OK;
    }
    // SAFETY: `value` is a valid ngx_str_t owned by the configuration.
    let seconds = unsafe { ngx_parse_time(value, 1) };
    if seconds < 0 {
        return c"invalid value".as_ptr().cast_mut();
    }
    conf.ttl = seconds;
    NGX_CONF_OK
}

/// `smart_imaging_timeout <time>;` (more than zero)
unsafe extern "C" fn set_timeout(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_ttl`.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if conf.timeout != UNSET_MSEC {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: args holds the directive name and exactly one value (TAKE1).
    let value = unsafe { &mut *(*(*cf).args).elts.cast::<ngx_str_t>().add(1) };
    // SAFETY: `value` is a valid ngx_str_t owned by the configuration.
    let ms = unsafe { ngx_parse_time(value, 0) };
    if ms <= 0 {
        return c"invalid value".as_ptr().cast_mut();
    }
    conf.timeout = ms as ngx_msec_t;
    NGX_CONF_OK
}

/// The values of the directive being parsed (without its name).
///
/// # Safety
/// `cf` must be the configuration being parsed, inside a directive handler.
unsafe fn directive_args<'a>(cf: *mut ngx_conf_t) -> Vec<&'a [u8]> {
    // SAFETY: `args` is an array of ngx_str_t: the name, then the values.
    unsafe {
        let args = &*(*cf).args;
        let all = core::slice::from_raw_parts(args.elts.cast::<ngx_str_t>(), args.nelts);
        all[1..].iter().map(|a| a.as_bytes()).collect()
    }
}

/// Runs `parse` on the directive's values and stores the result in the
/// field `field` selects, with nginx's usual messages for errors.
///
/// # Safety
/// As for a directive handler: valid `cf` and this module's `conf`.
unsafe fn set_with<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    field: impl FnOnce(&mut LocConf) -> &mut Option<T>,
    parse: impl FnOnce(&[&[u8]]) -> Result<T, String>,
) -> *mut c_char {
    // SAFETY: nginx passes this module's LocConf.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    let slot = field(conf);
    if slot.is_some() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: forwarded from the caller.
    let args = unsafe { directive_args(cf) };
    match parse(&args) {
        Ok(value) => {
            *slot = Some(value);
            NGX_CONF_OK
        }
        Err(message) => {
            ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
            NGX_CONF_ERROR
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_positive_f32(value: &[u8], what: &str) -> Result<f32, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<f32>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("invalid {what} \"{}\"", text(value)))
}

fn parse_dimension(value: &[u8]) -> Result<Option<u32>, String> {
    if value == b"-" {
        return Ok(None);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&v| v > 0)
        .map(Some)
        .ok_or_else(|| format!("invalid size \"{}\"", text(value)))
}

/// Defines the handler of a directive whose value goes into the `Option`
/// field `$field` of LocConf, parsed by `$parse` (the values -> the value,
/// or nginx's error message).
macro_rules! option_directive {
    ($(#[$doc:meta])* $name:ident, $field:ident, $parse:expr) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(
            cf: *mut ngx_conf_t,
            _: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx calls directive handlers with the configuration
            // being parsed and this module's LocConf.
            unsafe { set_with(cf, conf, |c| &mut c.$field, $parse) }
        }
    };
}

option_directive!(
    /// `smart_imaging_dpr_max <number>;`
    set_dpr_max,
    dpr_max,
    |a: &[&[u8]]| parse_positive_f32(a[0], "value")
);

option_directive!(
    /// `smart_imaging_dpr_header <name> | off;`
    set_dpr_header,
    dpr_header,
    |a: &[&[u8]]| parse_header_name(a[0])
);

option_directive!(
    /// `smart_imaging_network_thresholds [ect=<type>] [downlink=<Mbit/s>] [rtt=<time>];`
    set_network_thresholds,
    network_thresholds,
    parse_network_thresholds
);

option_directive!(
    /// `smart_imaging_max_output_size <width>|- <height>|-;`
    set_max_output_size,
    max_output_size,
    |a: &[&[u8]]| Ok((parse_dimension(a[0])?, parse_dimension(a[1])?))
);

option_directive!(
    /// `smart_imaging_max_output_pixels <number> | off;`
    set_max_output_pixels,
    max_output_pixels,
    |a: &[&[u8]]| parse_pixels(a[0])
);

option_directive!(
    /// `smart_imaging_formats <format> ...;` (avif, webp, jp2, jxr)
    set_formats,
    formats,
    parse_formats
);

option_directive!(
    /// `smart_imaging_accept_ch off | on | critical;`
    set_accept_ch,
    accept_ch,
    |a: &[&[u8]]| parse_accept_ch(a[0])
);

option_directive!(
    /// `smart_imaging_guard <score> | off;` (a SSIMULACRA 2 score, 0-100)
    set_guard,
    guard,
    |a: &[&[u8]]| parse_guard(a[0])
);

option_directive!(
    /// `smart_imaging_guard_encodes <number>;` (1-16)
    set_guard_encodes,
    guard_encodes,
    |a: &[&[u8]]| parse_guard_encodes(a[0])
);

/// `80`, `72.5`, `off`: a score from 0 to 100 (plain decimal notation).
fn parse_guard(value: &[u8]) -> Result<Option<f64>, String> {
    if value == b"off" {
        return Ok(None);
    }
    let plain = !value.is_empty()
        && value.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && value.iter().any(u8::is_ascii_digit);
    std::str::from_utf8(value)
        .ok()
        .filter(|_| plain)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| (0.0..=100.0).contains(v))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "invalid value \"{}\" (a score from 0 to 100, or off)",
                text(value)
            )
        })
}

fn parse_guard_encodes(value: &[u8]) -> Result<usize, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|v| (1..=GUARD_ENCODES_MAX).contains(v))
        .ok_or_else(|| {
            format!(
                "invalid value \"{}\" (1 to {GUARD_ENCODES_MAX})",
                text(value)
            )
        })
}

fn parse_header_name(name: &[u8]) -> Result<Option<String>, String> {
    if name == b"off" {
        return Ok(None);
    }
    let valid = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if name.is_empty() || !name.iter().all(valid) {
        return Err(format!("invalid header name \"{}\"", text(name)));
    }
    Ok(Some(text(name)))
}

fn parse_network_thresholds(args: &[&[u8]]) -> Result<NetworkThresholds, String> {
    let mut t = NetworkThresholds::default();
    for arg in args {
        let Some(eq) = arg.iter().position(|&b| b == b'=') else {
            return Err(format!("invalid parameter \"{}\"", text(arg)));
        };
        let (key, value) = (&arg[..eq], &arg[eq + 1..]);
        match key {
            b"ect" => {
                t.ect = Ect::parse(value).ok_or_else(|| {
                    format!("invalid ect \"{}\" (slow-2g, 2g, 3g or 4g)", text(value))
                })?
            }
            b"downlink" => t.downlink_mbps = parse_positive_f32(value, "downlink")?,
            b"rtt" => {
                let mut v = ngx_str_t {
                    len: value.len(),
                    data: value.as_ptr().cast_mut(),
                };
                // SAFETY: `v` points to `value`, alive for this call;
                // ngx_parse_time only reads it.
                let ms = unsafe { ngx_parse_time(&mut v, 0) };
                if ms < 0 {
                    return Err(format!("invalid rtt \"{}\"", text(value)));
                }
                t.rtt_ms = ms as u32;
            }
            _ => return Err(format!("invalid parameter \"{}\"", text(arg))),
        }
    }
    Ok(t)
}

fn parse_pixels(value: &[u8]) -> Result<Option<u64>, String> {
    if value == b"off" {
        return Ok(None);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&v| v > 0)
        .map(Some)
        .ok_or_else(|| format!("invalid value \"{}\"", text(value)))
}

fn parse_formats(args: &[&[u8]]) -> Result<Vec<Format>, String> {
    args.iter()
        .map(|arg| {
            let name = std::str::from_utf8(arg).unwrap_or("");
            Format::from_name(name)
                .ok_or_else(|| format!("unknown format \"{}\" (avif, webp, jp2, jxr)", text(arg)))
        })
        .collect()
}

fn parse_accept_ch(value: &[u8]) -> Result<AcceptCh, String> {
    match value {
        b"off" => Ok(AcceptCh::Off),
        b"on" => Ok(AcceptCh::On),
        b"critical" => Ok(AcceptCh::Critical),
        other => Err(format!(
            "invalid value \"{}\" (off, on or critical)",
            text(other)
        )),
    }
}

/// `smart_imaging_thread_pool <name>;` The pool must be declared with
/// `thread_pool` in the main context, except nginx's built-in `default`.
unsafe extern "C" fn set_thread_pool(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_ttl`.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if !conf.thread_pool.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: args holds the directive name and exactly one value (TAKE1).
    let name = unsafe { (*(*cf).args).elts.cast::<ngx_str_t>().add(1) };
    // SAFETY: registering here records this file:line, so an undeclared
    // pool is reported where it is used ("unknown thread pool ...").
    conf.thread_pool = unsafe { ngx_thread_pool_add(cf, name) };
    if conf.thread_pool.is_null() {
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}

const CONTEXTS: ngx_uint_t =
    (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF) as ngx_uint_t;

static mut QUALITY_BOUNDS: ngx_conf_num_bounds_t = ngx_conf_num_bounds_t {
    post_handler: Some(ngx_conf_check_num_bounds),
    low: 0,
    high: 100,
};

static mut SPEED_BOUNDS: ngx_conf_num_bounds_t = ngx_conf_num_bounds_t {
    post_handler: Some(ngx_conf_check_num_bounds),
    low: 0,
    high: 10,
};

static mut POSITIVE: ngx_conf_num_bounds_t = ngx_conf_num_bounds_t {
    post_handler: Some(ngx_conf_check_num_bounds),
    low: 1,
    high: -1, // no upper bound
};

const fn command(
    name: &'static core::ffi::CStr,
    args: u32,
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    offset: usize,
    post: *mut c_void,
) -> ngx_command_t {
    ngx_command_t {
        // nginx compares names with strcmp(): they must be NUL-terminated.
        name: ngx_str_t {
            len: name.count_bytes(),
            data: name.as_ptr().cast_mut().cast(),
        },
        type_: CONTEXTS | args as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset,
        post,
    }
}

/// The directive table. `smart_imaging` is also allowed in `if` blocks inside
/// a location, like `gzip`.
pub static mut COMMANDS: [ngx_command_t; 26] = [
    ngx_command_t {
        type_: CONTEXTS | (NGX_HTTP_LIF_CONF | NGX_CONF_FLAG) as ngx_uint_t,
        ..command(
            c"smart_imaging",
            0,
            ngx_conf_set_flag_slot,
            offset_of!(LocConf, enable),
            ptr::null_mut(),
        )
    },
    command(
        c"smart_imaging_ttl",
        NGX_CONF_TAKE1,
        set_ttl,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_buffer",
        NGX_CONF_TAKE1,
        ngx_conf_set_size_slot,
        offset_of!(LocConf, buffer),
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_max_pixels",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, max_pixels),
        &raw mut POSITIVE as *mut c_void,
    ),
    command(
        c"smart_imaging_webp_quality",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, webp_quality),
        &raw mut QUALITY_BOUNDS as *mut c_void,
    ),
    command(
        c"smart_imaging_max_jobs",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, max_jobs),
        &raw mut POSITIVE as *mut c_void,
    ),
    command(
        c"smart_imaging_timeout",
        NGX_CONF_TAKE1,
        set_timeout,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_thread_pool",
        NGX_CONF_TAKE1,
        set_thread_pool,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_jpeg_quality",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, jpeg_quality),
        &raw mut QUALITY_BOUNDS as *mut c_void,
    ),
    command(
        c"smart_imaging_dpr",
        NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        offset_of!(LocConf, dpr),
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_dpr_max",
        NGX_CONF_TAKE1,
        set_dpr_max,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_dpr_header",
        NGX_CONF_TAKE1,
        set_dpr_header,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_network",
        NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        offset_of!(LocConf, network),
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_network_quality_step",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, network_quality_step),
        &raw mut QUALITY_BOUNDS as *mut c_void,
    ),
    command(
        c"smart_imaging_network_thresholds",
        NGX_CONF_1MORE,
        set_network_thresholds,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_max_output_size",
        NGX_CONF_TAKE2,
        set_max_output_size,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_max_output_pixels",
        NGX_CONF_TAKE1,
        set_max_output_pixels,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_accept_ch",
        NGX_CONF_TAKE1,
        set_accept_ch,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_formats",
        NGX_CONF_1MORE,
        set_formats,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_avif_quality",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, avif_quality),
        &raw mut QUALITY_BOUNDS as *mut c_void,
    ),
    command(
        c"smart_imaging_avif_speed",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, avif_speed),
        &raw mut SPEED_BOUNDS as *mut c_void,
    ),
    command(
        c"smart_imaging_avif_max_pixels",
        NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        offset_of!(LocConf, avif_max_pixels),
        &raw mut POSITIVE as *mut c_void,
    ),
    command(
        c"smart_imaging_guard",
        NGX_CONF_TAKE1,
        set_guard,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_guard_encodes",
        NGX_CONF_TAKE1,
        set_guard_encodes,
        0,
        ptr::null_mut(),
    ),
    command(
        c"smart_imaging_debug_header",
        NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        offset_of!(LocConf, debug_header),
        ptr::null_mut(),
    ),
    ngx_command_t::empty(),
];
