//! `ngx_http_smart_imaging_module`: serves JPEG and PNG responses as the
//! smallest format the client can decode, converting them in nginx's body
//! filter on a thread pool.
//!
//! This crate is the thin nginx layer: directives ([`config`]), the
//! request as this layer sees it ([`http`], [`headers`]), the per-request
//! context ([`ctx`]), the filters ([`header_filter`], [`body_filter`],
//! passing on through [`send`]), running work off the event loop
//! ([`offload`]), variables ([`variables`]) and the outcome they report
//! ([`result`]). Every image decision and byte of image work is in the
//! `smart-imaging-core` crate, which knows nothing of nginx.
//!
//! Layers: a module uses only modules of lower layers (and the core
//! crate), never one of its own layer or above; `lib.rs` wires them into
//! nginx.
//!
//! ```text
//! 5  header_filter  body_filter   the filters nginx calls
//! 4  send  variables              passing on down the chain; $smart_imaging_*
//! 3  ctx                          per-request context, Location (the conf)
//! 2  headers  offload             header rewriting (methods of Req); jobs
//! 1  http  stash                  Req and Chain: the request's FFI; the stash
//!                                 (files of abandoned and background results,
//!                                 pool threads)
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
mod header_filter;
mod headers;
mod http;
mod offload;
mod result;
mod send;
mod stash;
mod variables;

use core::ffi::{c_char, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_http_top_body_filter,
    ngx_http_top_header_filter, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_MODULE,
    NGX_OK,
};

use config::LocConf;

static NGX_HTTP_SMART_IMAGING_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: None,
    init_main_conf: None,
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
            conf.merge(prev, cf)
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

unsafe extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // Codec panics are caught and reported through error_log with their
    // message; the default hook would also print them to stderr (which
    // nginx sends to the error log without a timestamp or request).
    match catch_unwind(|| std::panic::set_hook(Box::new(|_| {}))) {
        Ok(()) => NGX_OK as ngx_int_t,
        Err(_) => NGX_ERROR as ngx_int_t,
    }
}
