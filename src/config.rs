//! The directive table. Each `smart_imaging_*` directive is one line below,
//! naming its parser and its field in the core's [`config`] module, which
//! holds every directive's value parsing (with nginx's exact refusal
//! messages), its default and its inheritance. What is left here is what
//! only nginx can do: the thread pool, the stash directory (a path nginx
//! creates at startup, owned by the workers' user), and storing values in
//! the location's configuration.
//!
//! [`config`]: smart_imaging_core::config

use core::ffi::{c_char, c_void, CStr};
use core::ptr;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_add_path, ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_http_conf_ctx_t, ngx_pagesize,
    ngx_path_t, ngx_pcalloc, ngx_pnalloc, ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t,
    ngx_thread_pool_add, ngx_thread_pool_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE123, NGX_CONF_TAKE2,
    NGX_HTTP_LIF_CONF, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG, NGX_OK,
};
pub use smart_imaging_core::config::AcceptCh;
use smart_imaging_core::config::{
    parse, Directives, Field, Location, MaxRunning, Refusal, StashPath, StatusZone,
};
use smart_imaging_core::policy::Settings;
use smart_imaging_core::Limits;

/// The module's http-level configuration.
pub struct MainConf {
    /// The zone of the status counters (`smart_imaging_status_zone`, or
    /// the default one when a location has `smart_imaging_status`); null
    /// when neither is configured: then nothing is counted.
    pub status_zone: *mut ngx_shm_zone_t,
    /// Some location has `smart_imaging_status`.
    status_served: bool,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            status_zone: ptr::null_mut(),
            status_served: false,
        }
    }
}

/// The module's tag on its shared memory zones (nginx refuses a zone of
/// the same name declared by another module).
static STATUS_ZONE_TAG: u8 = 0;

impl MainConf {
    /// After the http block is read: the default zone, if a location
    /// serves the status and no zone was declared. The zone's `init` is for
    /// the caller to set.
    ///
    /// # Safety
    /// `cf` must be the configuration being read.
    pub unsafe fn init(&mut self, cf: *mut ngx_conf_t) -> Result<(), ()> {
        if self.status_served && self.status_zone.is_null() {
            // SAFETY: the caller's contract.
            self.status_zone = unsafe { add_status_zone(cf, &StatusZone::default_zone()) }?;
        }
        Ok(())
    }
}

/// Declares the shared memory zone `zone` (nginx maps it when it starts,
/// and reuses it across reloads while its name and size stay the same).
///
/// # Safety
/// `cf` must be the configuration being read.
unsafe fn add_status_zone(
    cf: *mut ngx_conf_t,
    zone: &StatusZone,
) -> Result<*mut ngx_shm_zone_t, ()> {
    let name = zone.name.as_bytes();
    // SAFETY: `cf` is valid; the name is copied into its pool, which lives
    // as long as the cycle (nginx keeps the name in the zone); nginx logs
    // a conflicting declaration itself.
    unsafe {
        let data = ngx_pnalloc((*cf).pool, name.len()).cast::<u8>();
        if data.is_null() {
            return Err(());
        }
        ptr::copy_nonoverlapping(name.as_ptr(), data, name.len());
        let mut name = ngx_str_t {
            len: name.len(),
            data,
        };
        let tag = ptr::addr_of!(STATUS_ZONE_TAG).cast_mut().cast();
        let shm = ngx_shared_memory_add(cf, &mut name, zone.size, tag);
        if shm.is_null() {
            return Err(());
        }
        Ok(shm)
    }
}

/// A level's configuration (`http`, `server`, `location`).
pub struct LocConf {
    /// What this level's directives say.
    pub directives: Directives,
    /// `smart_imaging_thread_pool`: resolved at configuration time.
    pub thread_pool: *mut ngx_thread_pool_t,
    /// `smart_imaging_stash_path`, registered with nginx (which creates
    /// the directory); None when off or the module is off here.
    pub stash: Option<StashDir>,
    /// The configuration requests of this location read: resolved once,
    /// when nginx merges the levels.
    pub location: Location,
    /// `smart_imaging_status`: this location serves the counters (and
    /// converts nothing). Not inherited.
    pub status: bool,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            directives: Directives::default(),
            thread_pool: ptr::null_mut(),
            stash: None,
            location: Location::default(),
            status: false,
        }
    }
}

impl LocConf {
    /// Responses are converted (`smart_imaging on`, not variant-only).
    pub fn enabled(&self) -> bool {
        self.location.enabled
    }

    /// `$smart_imaging_variant` is worked out: `smart_imaging on` or
    /// `smart_imaging_variant_only on`.
    pub fn negotiates(&self) -> bool {
        self.location.enabled || self.location.variant_only
    }

    /// The configuration as the core's policy sees it.
    pub fn settings(&self) -> &Settings {
        &self.location.settings
    }

    pub fn limits(&self) -> Limits {
        self.location.limits.clone()
    }

    /// `smart_imaging_debug_header on`
    pub fn debug_header(&self) -> bool {
        self.location.debug_header
    }

    /// `smart_imaging_max_running`, `auto` resolved to this worker's share
    /// of the online CPUs.
    pub fn max_running(&self) -> usize {
        match self.location.max_running {
            MaxRunning::Count(n) => n,
            MaxRunning::Auto => cpus_per_worker(),
        }
    }

    /// The client hints this location's settings can use (for `Accept-CH`).
    pub fn client_hints(&self) -> Vec<&'static str> {
        self.location.client_hints()
    }

    /// Inherits every directive not set at this level from the enclosing
    /// one, resolves the location's configuration (refusing directives that
    /// cannot work together: `smart_imaging_background on` without a
    /// stash), and registers nginx's default thread pool when the module is
    /// on and no pool was named, so `smart_imaging on;` works without more
    /// configuration.
    ///
    /// # Safety
    /// `cf` must be the configuration being merged.
    pub unsafe fn merge(&mut self, prev: &LocConf, cf: *mut ngx_conf_t) -> Result<(), ()> {
        self.directives.inherit(&prev.directives);
        self.location = self.directives.resolve();
        if self.status {
            // The status location serves the counters, whatever it inherits.
            self.location.enabled = false;
            self.location.variant_only = false;
            self.location.accept_ch = AcceptCh::Off;
        }
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
        if let Some(refusal) = self.location.conflict() {
            // SAFETY: `cf` is valid during merge.
            unsafe { refuse(cf, "smart_imaging_background", &refusal) };
            return Err(());
        }
        if let (true, Some(stash)) = (self.enabled(), &self.location.stash) {
            // SAFETY: `cf` is valid during merge.
            self.stash = Some(unsafe { add_stash_path(cf, stash) }?);
        }
        Ok(())
    }
}

/// `smart_imaging_stash_path`, as the stash reads it.
#[derive(Clone, Debug)]
pub struct StashDir {
    /// The directory, absolute (nginx's prefix applied).
    pub dir: PathBuf,
    pub max_size: u64,
    pub ttl: Duration,
}

/// The machine's online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`, through
/// the standard library, which also honours the process's CPU affinity),
/// worked out once per process.
pub fn online_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `smart_imaging_max_running auto`: the online CPUs shared out among
/// nginx's `worker_processes`, rounded up (2 CPUs, 2 workers: 1 each).
/// Every worker queues its own conversions, so with one per CPU each
/// worker would run as many as there are CPUs and the machine twice as
/// many: each conversion twice as slow, and twice the memory held at
/// once (a conversion holds ~100 MiB at its peak, see docs/sizing.md).
pub fn cpus_per_worker() -> usize {
    online_cpus().div_ceil(worker_processes().max(1))
}

/// `worker_processes` of the running configuration (1 before there is
/// one, e.g. in unit tests).
fn worker_processes() -> usize {
    // SAFETY: `ngx_cycle` is the running cycle once nginx has read its
    // configuration (and NULL before: then 1); its `conf_ctx` holds, at the
    // core module's index, the `ngx_core_conf_t` that `worker_processes`
    // sets (what the C macro `ngx_get_conf(conf_ctx, ngx_core_module)`
    // reads). Read only, in the process's own thread.
    unsafe {
        let cycle = nginx_sys::ngx_cycle;
        if cycle.is_null() || (*cycle).conf_ctx.is_null() {
            return 1;
        }
        let conf = *(*cycle).conf_ctx.add(nginx_sys::ngx_core_module.index)
            as *const nginx_sys::ngx_core_conf_t;
        if conf.is_null() {
            return 1;
        }
        usize::try_from((*conf).worker_processes).unwrap_or(1)
    }
}

/// What `ngx_path_t.data` of the stash directory points to.
static STASH_PATH_OWNER: u8 = 0;

/// Registers the stash directory with nginx the way `ngx_conf_merge_path_value`
/// registers a `*_temp_path`: made absolute against nginx's prefix and added
/// to the cycle's paths (`ngx_add_path`), which nginx creates at startup,
/// owned by the workers' `user`.
///
/// # Safety
/// `cf` must be the configuration being merged.
unsafe fn add_stash_path(cf: *mut ngx_conf_t, stash: &StashPath) -> Result<StashDir, ()> {
    let bytes = stash.path.as_bytes();
    // SAFETY: `cf` is valid; both allocations come from its pool, which
    // lives as long as the cycle (as the paths nginx keeps in it must).
    unsafe {
        let data = ngx_pnalloc((*cf).pool, bytes.len() + 1).cast::<u8>();
        let path = ngx_pcalloc((*cf).pool, core::mem::size_of::<ngx_path_t>()).cast::<ngx_path_t>();
        if data.is_null() || path.is_null() {
            return Err(());
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
        *data.add(bytes.len()) = 0;
        (*path).name = ngx_str_t {
            len: bytes.len(),
            data,
        };
        // Prefix-relative, as nginx's own paths (and NUL-terminated: nginx
        // passes the name to mkdir()).
        if ngx_conf_full_name((*cf).cycle, &mut (*path).name, 0) != NGX_OK as isize {
            return Err(());
        }
        // Marks the path as this module's: nginx refuses the same directory
        // for another module's path (whose files the stash's sweep would
        // otherwise remove).
        (*path).data = ptr::addr_of!(STASH_PATH_OWNER).cast_mut().cast();
        let mut slot = path;
        if ngx_add_path(cf, &mut slot) != NGX_OK as isize {
            return Err(());
        }
        let name = (*slot).name.as_bytes();
        Ok(StashDir {
            dir: PathBuf::from(OsStr::from_bytes(name)),
            max_size: stash.max_size,
            ttl: Duration::from_millis(stash.ttl_ms),
        })
    }
}

/// Logs `refusal` the way nginx logs a refused directive.
///
/// # Safety
/// `cf` must be the configuration being parsed.
unsafe fn refuse(cf: *mut ngx_conf_t, directive: &str, refusal: &Refusal) -> *mut c_char {
    ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", refusal.text(directive));
    NGX_CONF_ERROR
}

/// A directive's value parser: its arguments (after the name) to the
/// value stored, or why they are refused.
type Parser<V> = fn(&[&[u8]]) -> Result<V, Refusal>;

/// The handler behind every line of the table but the thread pool's:
/// parses the directive's values with `parse` and stores the result in the
/// field `field` selects, refusing a directive given twice at one level.
///
/// # Safety
/// As for a directive handler: nginx's `cf`, the command being handled,
/// and this module's `LocConf`.
unsafe fn set_field<F: Field>(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    field: impl FnOnce(&mut Directives) -> &mut F,
    parse: Parser<F::Value>,
) -> *mut c_char {
    // SAFETY: nginx passes the command it is handling, whose name is one
    // of the static strings of COMMANDS, and the arguments it read: the
    // name, then the values (their count checked against the command).
    let (name, args) = unsafe {
        let args = &*(*cf).args;
        let all = core::slice::from_raw_parts(args.elts.cast::<ngx_str_t>(), args.nelts);
        let values: Vec<&[u8]> = all[1..].iter().map(|a| a.as_bytes()).collect();
        (
            String::from_utf8_lossy((*cmd).name.as_bytes()).into_owned(),
            values,
        )
    };
    // SAFETY: nginx passes this module's LocConf (created by
    // create_loc_conf), not otherwise borrowed during the handler.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    let stored = catch_unwind(AssertUnwindSafe(|| {
        let slot = field(&mut conf.directives);
        if slot.is_set() {
            return Err(Refusal::DUPLICATE);
        }
        slot.store(parse(&args)?);
        Ok(())
    }));
    match stored {
        Ok(Ok(())) => NGX_CONF_OK,
        // SAFETY: `cf` as above.
        Ok(Err(refusal)) => unsafe { refuse(cf, &name, &refusal) },
        Err(_) => NGX_CONF_ERROR,
    }
}

/// `smart_imaging_thread_pool <name>;` The pool must be declared with
/// `thread_pool` in the main context, except nginx's built-in `default`.
unsafe extern "C" fn set_thread_pool(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's LocConf.
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

/// `smart_imaging_status_zone <name> <size>;` (http level).
unsafe extern "C" fn set_status_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's MainConf (NGX_HTTP_MAIN_CONF_OFFSET).
    let conf = unsafe { &mut *conf.cast::<MainConf>() };
    if !conf.status_zone.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: args holds the directive name and exactly two values (TAKE2).
    let args: Vec<&[u8]> = unsafe {
        let args = &*(*cf).args;
        core::slice::from_raw_parts(args.elts.cast::<ngx_str_t>(), args.nelts)[1..]
            .iter()
            .map(|a| a.as_bytes())
            .collect()
    };
    // SAFETY: set at startup, read-only since.
    let page_size = unsafe { ngx_pagesize };
    let zone = match catch_unwind(|| parse::status_zone(&args, StatusZone::min_size(page_size))) {
        Ok(Ok(zone)) => zone,
        // SAFETY: `cf` is the configuration being parsed.
        Ok(Err(refusal)) => return unsafe { refuse(cf, "smart_imaging_status_zone", &refusal) },
        Err(_) => return NGX_CONF_ERROR,
    };
    // SAFETY: as above.
    match unsafe { add_status_zone(cf, &zone) } {
        Ok(shm) => {
            conf.status_zone = shm;
            NGX_CONF_OK
        }
        Err(()) => NGX_CONF_ERROR,
    }
}

/// `smart_imaging_status;` (location): the location serves the counters.
/// Its content handler is set when the location is merged (`lib.rs`).
unsafe extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's LocConf.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if conf.status {
        return c"is duplicate".as_ptr().cast_mut();
    }
    conf.status = true;
    // SAFETY: while the http block is read, `cf->ctx` is its
    // ngx_http_conf_ctx_t, whose main_conf holds this module's MainConf at
    // its ctx_index (assigned before the block is read).
    unsafe {
        let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
        let index = crate::ngx_http_smart_imaging_module.ctx_index;
        let main = (*(*ctx).main_conf.add(index)).cast::<MainConf>();
        (*main).status_served = true;
    }
    NGX_CONF_OK
}

type Handler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// http, server and location; `smart_imaging` also in `if` blocks inside
/// a location, like `gzip`.
const CONTEXTS: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const IN_IF: u32 = NGX_HTTP_LIF_CONF;

const fn command(name: &'static CStr, type_: u32, set: Handler) -> ngx_command_t {
    ngx_command_t {
        // nginx compares names with strcmp(): they must be NUL-terminated.
        name: ngx_str_t {
            len: name.count_bytes(),
            data: name.as_ptr().cast_mut().cast(),
        },
        type_: (CONTEXTS | type_) as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// One line of the table: the directive `$name`, taking `$args`, parsed
/// by `parse::$parse` into `Directives::$field`.
macro_rules! directive {
    ($name:literal, $args:expr, $field:ident, $parse:ident) => {{
        unsafe extern "C" fn set(
            cf: *mut ngx_conf_t,
            cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx calls directive handlers with the configuration
            // being parsed, the command and this module's LocConf.
            unsafe { set_field(cf, cmd, conf, |d| &mut d.$field, parse::$parse) }
        }
        command($name, $args, set)
    }};
}

/// The directive table.
pub static mut COMMANDS: [ngx_command_t; 33] = [
    directive!(c"smart_imaging", NGX_CONF_FLAG | IN_IF, enable, flag),
    directive!(
        c"smart_imaging_variant_only",
        NGX_CONF_FLAG,
        variant_only,
        flag
    ),
    directive!(c"smart_imaging_ttl", NGX_CONF_TAKE1, ttl, ttl),
    directive!(c"smart_imaging_buffer", NGX_CONF_TAKE1, buffer, size),
    directive!(
        c"smart_imaging_max_pixels",
        NGX_CONF_TAKE1,
        max_pixels,
        positive
    ),
    directive!(
        c"smart_imaging_work_budget",
        NGX_CONF_TAKE12,
        work_budget,
        work_budget
    ),
    directive!(
        c"smart_imaging_webp_quality",
        NGX_CONF_TAKE1,
        webp_quality,
        quality
    ),
    directive!(
        c"smart_imaging_max_jobs",
        NGX_CONF_TAKE1,
        max_jobs,
        positive_count
    ),
    directive!(c"smart_imaging_timeout", NGX_CONF_TAKE1, timeout, timeout),
    directive!(
        c"smart_imaging_max_running",
        NGX_CONF_TAKE1,
        max_running,
        max_running
    ),
    directive!(
        c"smart_imaging_stash_path",
        NGX_CONF_TAKE123,
        stash_path,
        stash_path
    ),
    directive!(c"smart_imaging_background", NGX_CONF_FLAG, background, flag),
    command(
        c"smart_imaging_thread_pool",
        NGX_CONF_TAKE1,
        set_thread_pool,
    ),
    directive!(
        c"smart_imaging_jpeg_quality",
        NGX_CONF_TAKE1,
        jpeg_quality,
        quality
    ),
    directive!(c"smart_imaging_dpr", NGX_CONF_FLAG, dpr, flag),
    directive!(c"smart_imaging_dpr_max", NGX_CONF_TAKE1, dpr_max, dpr_max),
    directive!(
        c"smart_imaging_dpr_header",
        NGX_CONF_TAKE1,
        dpr_header,
        header_name
    ),
    directive!(c"smart_imaging_network", NGX_CONF_FLAG, network, flag),
    directive!(
        c"smart_imaging_network_quality_step",
        NGX_CONF_TAKE1,
        network_quality_step,
        quality
    ),
    directive!(
        c"smart_imaging_network_thresholds",
        NGX_CONF_1MORE,
        network_thresholds,
        network_thresholds
    ),
    directive!(
        c"smart_imaging_max_output_size",
        NGX_CONF_TAKE2,
        max_output_size,
        max_output_size
    ),
    directive!(
        c"smart_imaging_max_output_pixels",
        NGX_CONF_TAKE1,
        max_output_pixels,
        pixels_or_off
    ),
    directive!(
        c"smart_imaging_accept_ch",
        NGX_CONF_TAKE1,
        accept_ch,
        accept_ch
    ),
    directive!(c"smart_imaging_formats", NGX_CONF_1MORE, formats, formats),
    directive!(
        c"smart_imaging_avif_quality",
        NGX_CONF_TAKE1,
        avif_quality,
        quality
    ),
    directive!(
        c"smart_imaging_avif_speed",
        NGX_CONF_TAKE1,
        avif_speed,
        speed
    ),
    directive!(
        c"smart_imaging_avif_max_pixels",
        NGX_CONF_TAKE1,
        avif_max_pixels,
        positive
    ),
    directive!(c"smart_imaging_guard", NGX_CONF_TAKE1, guard, guard),
    directive!(
        c"smart_imaging_guard_encodes",
        NGX_CONF_TAKE1,
        guard_encodes,
        guard_encodes
    ),
    directive!(
        c"smart_imaging_debug_header",
        NGX_CONF_FLAG,
        debug_header,
        flag
    ),
    ngx_command_t {
        name: ngx_str_t {
            len: c"smart_imaging_status_zone".count_bytes(),
            data: c"smart_imaging_status_zone".as_ptr().cast_mut().cast(),
        },
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(set_status_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_str_t {
            len: c"smart_imaging_status".count_bytes(),
            data: c"smart_imaging_status".as_ptr().cast_mut().cast(),
        },
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];
