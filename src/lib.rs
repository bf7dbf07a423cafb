//! `ngx_http_smart_imaging_module`: serves JPEG and PNG responses as the
//! smallest format the client can decode, converting them in nginx's body
//! filter on a thread pool.
//!
//! This crate is the thin nginx layer: directives ([`config`]), the
//! request as this layer sees it ([`http`], [`headers`]), the per-request
//! context ([`ctx`]), the filters ([`header_filter`], [`body_filter`],
//! passing on through [`send`]), running work off the event loop
//! ([`offload`]), variables ([`variables`]) and the outcome they report
//! ([`result`]), and the counters of `smart_imaging_status` ([`metrics`],
//! counted and served by [`status`]). Every image decision and byte of
//! image work is in the `smart-imaging-core` crate, which knows nothing of
//! nginx.
//!
//! Layers: a module uses only modules of lower layers (and the core
//! crate), never one of its own layer or above; `lib.rs` wires them into
//! nginx.
//!
//! ```text
//! 5  header_filter  body_filter   the filters nginx calls;
//!    status                       the log phase counter, the status handler;
//!    head                         HEAD served as GET (precontent, log phases)
//! 4  send  variables              passing on down the chain; $smart_imaging_*
//! 3  ctx                          per-request context, Location (the conf)
//! 2  headers  offload             header rewriting (methods of Req); jobs
//! 1  http  stash  metrics         Req and Chain: the request's FFI; the stash
//!                                 (files of abandoned and background results,
//!                                 pool threads); the counters in the status zone
//! 0  config  result               directives; what was done (Report)
//! ```
//!
//! `offload` reports back through the function it is given; `LocConf` is
//! read in `ctx` only (`http` finds it in the request).
//!
//! Rules for this layer: every function nginx calls catches panics (none may
//! unwind into C), every failure after a header was held serves the
//! original, and every `unsafe` block says why it is sound.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_upper_case_globals)]

mod body_filter;
mod config;
mod ctx;
mod head;
mod header_filter;
mod headers;
mod http;
mod metrics;
mod offload;
mod result;
mod send;
mod stash;
mod status;
mod variables;

use core::ffi::{c_char, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_cycle_t, ngx_http_conf_ctx_t, ngx_http_core_loc_conf_t,
    ngx_http_core_main_conf_t, ngx_http_core_module, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_LOG_PHASE, ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
    ngx_http_request_t, ngx_http_top_body_filter, ngx_http_top_header_filter, ngx_int_t,
    ngx_module_t, ngx_terminate, ngx_uint_t, NGX_ERROR, NGX_HTTP_MODULE, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::ngx_log_error;

use config::{LocConf, MainConf};

static NGX_HTTP_SMART_IMAGING_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(create_main_conf),
    init_main_conf: Some(init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

/// The module nginx loads. The name of this static is the module's name.
#[no_mangle]
pub static mut ngx_http_smart_imaging_module: ngx_module_t = ngx_module_t {
    ctx: &raw const NGX_HTTP_SMART_IMAGING_MODULE_CTX as *mut c_void,
    commands: &raw mut config::COMMANDS as *mut _,
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_process),
    ..ngx_module_t::default()
};

// What `ngx::ngx_modules!` exports, plus a real `ngx_module_order`: like C
// filter modules (`auto/module`), ours must sit below the copy filter (so
// static files arrive in memory) and below the headers filter (so the
// `expires`/`add_header` of the location are seen before we decide on
// `Cache-Control`).
#[no_mangle]
pub static mut ngx_modules: [*const ngx_module_t; 2] =
    [&raw const ngx_http_smart_imaging_module, ptr::null()];

#[no_mangle]
pub static mut ngx_module_names: [*const c_char; 2] =
    [c"ngx_http_smart_imaging_module".as_ptr(), ptr::null()];

#[no_mangle]
pub static mut ngx_module_order: [*const c_char; 4] = [
    c"ngx_http_smart_imaging_module".as_ptr(),
    c"ngx_http_headers_filter_module".as_ptr(),
    c"ngx_http_copy_filter_module".as_ptr(),
    ptr::null(),
];

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx passes a valid conf; the LocConf is allocated from the
    // configuration pool and lives as long as the configuration.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(LocConf::default()).cast()
}

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as in create_loc_conf.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(MainConf::default()).cast()
}

/// After the http block is read: the status zone (the default one if a
/// location serves the status and none was declared) gets its `init`.
unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    let done = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: nginx passes the MainConf made by create_main_conf.
        let conf = unsafe { &mut *conf.cast::<MainConf>() };
        // SAFETY: `cf` is the configuration being read.
        unsafe { conf.init(cf) }?;
        if !conf.status_zone.is_null() {
            // SAFETY: a zone declared in this configuration; nginx calls
            // `init` once it has mapped it.
            unsafe { (*conf.status_zone).init = Some(metrics::init_zone) };
        }
        Ok::<(), ()>(())
    }));
    match done {
        Ok(Ok(())) => NGX_CONF_OK,
        _ => NGX_CONF_ERROR,
    }
}

unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    let merged = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: nginx passes two LocConf created by create_loc_conf.
        unsafe {
            let prev = &*prev.cast::<LocConf>();
            let conf = &mut *conf.cast::<LocConf>();
            conf.merge(prev, cf)?;
            if conf.status {
                // As stub_status: the location's content handler. While
                // merging, `cf->ctx` is the location's ngx_http_conf_ctx_t.
                let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
                let clcf = (*(*ctx).loc_conf.add(ngx_http_core_module.ctx_index))
                    .cast::<ngx_http_core_loc_conf_t>();
                (*clcf).handler = Some(status::serve_status);
            }
            Ok::<(), ()>(())
        }
    }));
    match merged {
        Ok(Ok(())) => NGX_CONF_OK,
        _ => NGX_CONF_ERROR,
    }
}

unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx calls this with the configuration being read.
    catch_unwind(|| unsafe { variables::register(cf) }).unwrap_or(NGX_ERROR as ngx_int_t)
}

unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx calls this with the configuration being read.
    let indexed = catch_unwind(|| unsafe { variables::index_result(cf) });
    if !matches!(indexed, Ok(rc) if rc == NGX_OK as ngx_int_t) {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: `cf` is the configuration being read; its ctx is the http
    // block's, with both main confs; the phase handler arrays exist from
    // ngx_http_init_phases on (before postconfiguration).
    let counting = unsafe {
        let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
        let main = (*(*ctx)
            .main_conf
            .add(ngx_http_smart_imaging_module.ctx_index))
        .cast::<MainConf>();
        if (*main).status_zone.is_null() {
            true
        } else {
            let cmcf = (*(*ctx).main_conf.add(ngx_http_core_module.ctx_index))
                .cast::<ngx_http_core_main_conf_t>();
            let phase = ngx_http_phases_NGX_HTTP_LOG_PHASE as usize;
            let h =
                ngx_array_push(&mut (*cmcf).phases[phase].handlers).cast::<ngx_http_handler_pt>();
            if !h.is_null() {
                *h = Some(status::count_request);
            }
            !h.is_null()
        }
    };
    if !counting {
        return NGX_ERROR as ngx_int_t;
    }
    // HEAD served as GET (`head`). Both handlers go first in their phase's
    // array: nginx calls precontent handlers last to first (so `make_get`
    // runs after `try_files` and `mirror`, just before the content
    // handler), log handlers first to last (so `log_as_head` runs before
    // the access log).
    // SAFETY: as above.
    let head = unsafe {
        let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
        let cmcf = (*(*ctx).main_conf.add(ngx_http_core_module.ctx_index))
            .cast::<ngx_http_core_main_conf_t>();
        push_first(
            cmcf,
            ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
            head::make_get,
        ) && push_first(cmcf, ngx_http_phases_NGX_HTTP_LOG_PHASE, head::log_as_head)
    };
    if !head {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: postconfiguration runs once per configuration load on the
    // single configuration thread, after nginx assigned the module's
    // ctx_index; chaining filters is what C modules do.
    unsafe {
        http::set_module_index(ngx_http_smart_imaging_module.ctx_index);
        send::NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter::header_filter);
        send::NEXT_BODY_FILTER = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter::body_filter);
    }
    NGX_OK as ngx_int_t
}

/// Puts `handler` first in the handlers of `phase`; false if the array
/// cannot grow.
///
/// # Safety
/// `cmcf` must be the core module's main configuration being read, between
/// ngx_http_init_phases and ngx_http_init_phase_handlers (postconfiguration).
unsafe fn push_first(
    cmcf: *mut ngx_http_core_main_conf_t,
    phase: u32,
    handler: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t,
) -> bool {
    // SAFETY: the caller's contract; the array holds `nelts` handlers and
    // has room for the one pushed, so moving the first `nelts - 1` up by
    // one stays inside it.
    unsafe {
        let handlers = &mut (*cmcf).phases[phase as usize].handlers;
        let h = ngx_array_push(handlers).cast::<ngx_http_handler_pt>();
        if h.is_null() {
            return false;
        }
        let first = handlers.elts.cast::<ngx_http_handler_pt>();
        ptr::copy(first, first.add(1), handlers.nelts - 1);
        *first = Some(handler);
    }
    true
}

unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the process's cycle, configuration complete.
    if catch_unwind(|| unsafe { metrics::attach(cycle) }).is_err() {
        return NGX_ERROR as ngx_int_t;
    }
    // Codec panics are caught and reported through error_log with their
    // message; the default hook would also print them to stderr (which
    // nginx sends to the error log without a timestamp or request).
    match catch_unwind(|| {
        std::panic::set_hook(Box::new(|_| {}));
        // `nginx -s stop`: running conversions give up at their next step,
        // so that the thread pool lets the worker exit before the master
        // kills it (see smart_imaging_core::stop).
        smart_imaging_core::stop::set_check(terminating);
        PINNED.store(pin_module(), Ordering::Relaxed);
        offload::map_large_allocations();
    }) {
        Ok(()) => {
            if !module_pinned() {
                // SAFETY: nginx passes the cycle being started, whose log
                // is valid.
                let log = unsafe { (*cycle).log };
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "smart_imaging: could not keep the module loaded (dlopen RTLD_NODELETE): conversions run on the pool's threads, and `nginx -s stop` waits for the step in progress"
                );
            }
            NGX_OK as ngx_int_t
        }
        Err(_) => NGX_ERROR as ngx_int_t,
    }
}

/// Whether this module is pinned in memory ([`pin_module`]).
static PINNED: AtomicBool = AtomicBool::new(false);

/// Whether conversions may run on threads of their own that can outlive
/// their pool task (see `offload::transcode_unless_stopped`).
pub(crate) fn module_pinned() -> bool {
    PINNED.load(Ordering::Relaxed)
}

/// Keeps this module, and the libraries it links (libavif, libaom, ...),
/// mapped until the process exits. nginx unloads dynamic modules
/// (`dlclose`) when a worker frees its cycle on the way out; a conversion
/// thread left running by `nginx -s stop` would then execute unmapped
/// code. Returns false if the loader would not do it.
fn pin_module() -> bool {
    // SAFETY: an all-zero Dl_info is a valid "nothing found" value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; the address is a
    // function of this module, `info` a valid place to write to.
    let found = unsafe { libc::dladdr(pin_module as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: `dli_fname` names this module, loaded (it runs this code):
    // RTLD_NOLOAD loads nothing, it only takes one more reference and, with
    // RTLD_NODELETE, marks the module never to be unloaded. The reference
    // is kept on purpose.
    let handle = unsafe {
        libc::dlopen(
            info.dli_fname,
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        )
    };
    !handle.is_null()
}

/// Whether this worker has been told to terminate (SIGTERM or SIGINT:
/// `nginx -s stop`), not to quit gracefully. Called from the thread pool's
/// threads.
fn terminating() -> bool {
    // SAFETY: `ngx_terminate` is a `sig_atomic_t` (an aligned C int) of the
    // nginx binary, alive as long as the process; only this worker's signal
    // handler writes it (0 -> 1). Viewing it as an atomic for this load is
    // how another thread may read it without a data race.
    let flag = unsafe { AtomicI32::from_ptr(ptr::addr_of_mut!(ngx_terminate)) };
    flag.load(Ordering::Relaxed) != 0
}
