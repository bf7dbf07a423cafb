//! Directives and their configuration. Each directive is declared next to the
//! field it sets, as nginx's own modules do; settings inherit
//! http -> server -> location.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_check_num_bounds, ngx_conf_num_bounds_t, ngx_conf_set_flag_slot,
    ngx_conf_set_num_slot, ngx_conf_set_size_slot, ngx_conf_t, ngx_flag_t, ngx_int_t,
    ngx_parse_time, ngx_str_t, ngx_thread_pool_add, ngx_thread_pool_t, ngx_uint_t, NGX_CONF_FLAG,
    NGX_CONF_TAKE1, NGX_HTTP_LIF_CONF, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_SRV_CONF,
};
use smart_imaging_core::Limits;

/// Defaults, documented in README.md.
pub const DEFAULT_BUFFER: usize = 10 * 1024 * 1024;
pub const DEFAULT_MAX_PIXELS: ngx_int_t = 16_000_000;
pub const DEFAULT_WEBP_QUALITY: ngx_int_t = 85;
pub const DEFAULT_MAX_JOBS: ngx_int_t = 32;

const UNSET: ngx_int_t = -1;
const UNSET_SIZE: usize = usize::MAX;

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
        }
    }
}

impl LocConf {
    pub fn enabled(&self) -> bool {
        self.enable == 1
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
pub static mut COMMANDS: [ngx_command_t; 8] = [
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
        c"smart_imaging_thread_pool",
        NGX_CONF_TAKE1,
        set_thread_pool,
        0,
        ptr::null_mut(),
    ),
    ngx_command_t::empty(),
];
