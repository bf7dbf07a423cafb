//! Variables.
//!
//! `$smart_imaging_variant` names, from the request alone, what the module
//! will serve for it (`webp-q85-w400-dpr2`, `src-q85-h300`, `orig` when
//! nothing would change, `off` for `bfc=off`, empty where the module is
//! off; `smart_imaging_variant_only on` gives it a value in a location that
//! converts nothing). Two requests with the same value get the same bytes,
//! so it belongs in `proxy_cache_key` (with the URI) when a cache sits in
//! front of or behind the module and stores converted responses. It reads
//! the negotiation of the request's context, which it makes (for the header
//! filter to reuse) when evaluated before the response exists.
//!
//! `$smart_imaging_result` says what the module did with the response
//! (`converted format=webp in=... out=...`, `original reason=...`, see
//! [`crate::result`]); it is meant for `log_format`, which reads it once
//! the response is complete.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_core_main_conf_t, ngx_http_core_module,
    ngx_http_get_variable_index, ngx_http_request_t, ngx_http_variable_t,
    ngx_http_variable_value_t, ngx_int_t, ngx_pnalloc, ngx_str_t, NGX_ERROR,
    NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use smart_imaging_core::policy::Decision;

use crate::ctx::{self, Location, Phase};
use crate::http::Req;
use crate::result::{self, Report};

type Getter = unsafe extern "C" fn(
    *mut ngx_http_request_t,
    *mut ngx_http_variable_value_t,
    usize,
) -> ngx_int_t;

const RESULT: &core::ffi::CStr = c"smart_imaging_result";

const VARIABLES: [(&core::ffi::CStr, Getter); 2] = [
    (c"smart_imaging_variant", variant_variable),
    (RESULT, result_variable),
];

/// The index of `$smart_imaging_result` in the configuration last read (a
/// hint: checked against the request's own configuration before use).
static RESULT_INDEX: AtomicUsize = AtomicUsize::new(usize::MAX);

fn ngx_name(name: &'static core::ffi::CStr) -> ngx_str_t {
    ngx_str_t {
        len: name.count_bytes(),
        data: name.as_ptr().cast_mut().cast(),
    }
}

/// Registers the variables (preconfiguration).
///
/// # Safety
/// `cf` must be the configuration being read.
pub unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    for (name, getter) in VARIABLES {
        let mut name = ngx_name(name);
        // SAFETY: nginx copies the name; `cf` is valid (caller's contract).
        let var =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as usize) };
        if var.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `var` was just returned by nginx and is ours to fill in.
        unsafe { (*var).get_handler = Some(getter) };
    }
    NGX_OK as ngx_int_t
}

/// Indexes `$smart_imaging_result` (postconfiguration), so that a value
/// computed before the outcome was known can be dropped (see
/// [`forget_result`]).
///
/// # Safety
/// `cf` must be the configuration being read.
pub unsafe fn index_result(cf: *mut ngx_conf_t) -> ngx_int_t {
    let mut name = ngx_name(RESULT);
    // SAFETY: `cf` is valid (caller's contract); nginx copies the name.
    let index = unsafe { ngx_http_get_variable_index(cf, &mut name) };
    if index == NGX_ERROR as ngx_int_t {
        return NGX_ERROR as ngx_int_t;
    }
    RESULT_INDEX.store(index as usize, Ordering::Relaxed);
    NGX_OK as ngx_int_t
}

/// Drops the value of `$smart_imaging_result` nginx may have cached for
/// the request (a `map` or `add_header` evaluated it early): `log_format`
/// reads cached values, and the outcome has changed since.
pub fn forget_result(req: Req<'_>) {
    let index = RESULT_INDEX.load(Ordering::Relaxed);
    let r = req.as_ptr();
    // SAFETY: `r` is valid; its main_conf and variables belong to the
    // configuration it runs under, where `variables` has one value per
    // indexed variable of cmcf->variables. The index is only used after
    // checking it names our variable in that very array.
    unsafe {
        let idx = ngx_http_core_module.ctx_index;
        let cmcf = (*(*r).main_conf.add(idx)).cast::<ngx_http_core_main_conf_t>();
        let values = (*r).variables;
        if cmcf.is_null() || values.is_null() || index >= (*cmcf).variables.nelts {
            return;
        }
        let var = &*(*cmcf)
            .variables
            .elts
            .cast::<ngx_http_variable_t>()
            .add(index);
        if var.name.as_bytes() != RESULT.to_bytes() {
            return;
        }
        let value = &mut *values.add(index);
        value.set_valid(0);
        value.set_not_found(0);
    }
}

/// Fills `v` with `value`, or marks it not found.
///
/// # Safety
/// As for a variable handler: valid `r` and `v`.
unsafe fn set_value(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    value: Option<String>,
) -> ngx_int_t {
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some(value) = value else {
            (*v).set_not_found(1);
            return NGX_OK as ngx_int_t;
        };
        let data = ngx_pnalloc((*r).pool, value.len()).cast::<u8>();
        if data.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        core::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        (*v).data = data;
        (*v).set_len(value.len() as u32);
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn variant_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request (on the event loop, for the
    // duration of the call) and a value to fill in.
    let req = unsafe { Req::new(r) };
    let value = catch_unwind(AssertUnwindSafe(|| variant(req)));
    // SAFETY: as above.
    unsafe { set_value(r, v, value.ok().flatten()) }
}

unsafe extern "C" fn result_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: as in `variant_variable`.
    let req = unsafe { Req::new(r) };
    let value = catch_unwind(AssertUnwindSafe(|| {
        result(req).map(|report| report.to_string())
    }));
    // SAFETY: as above.
    unsafe { set_value(r, v, value.ok().flatten()) }
}

/// The variant for the request, or None where the module is off (and not
/// `smart_imaging_variant_only`).
fn variant(req: Req<'_>) -> Option<String> {
    if !Location::of(req).negotiates() {
        return None;
    }
    let mut ctx = ctx::of(req)?.borrow_mut();
    if ctx.bfc_off {
        return Some("off".to_string());
    }
    Some(match &ctx.negotiation(req).decision {
        Decision::Off => "off".to_string(),
        Decision::Original => "orig".to_string(),
        Decision::Transcode(plan) => plan.variant(),
    })
}

/// What the module did with the response, for `$smart_imaging_result`:
/// the context's report, or worked out from the request where the module
/// passed the response over. None where it did not look at it (module off,
/// subrequests, nothing sent yet).
pub fn result(req: Req<'_>) -> Option<Report> {
    if !req.is_main() {
        return None;
    }
    if let Some(ctx) = ctx::get(req) {
        match &ctx.borrow().phase {
            Phase::Untouched => {}
            Phase::Ready { report, .. } | Phase::Done { report, .. } => {
                return Some(report.clone())
            }
            // Still buffering when the request ended: the upstream
            // failed or the client went away.
            Phase::Buffering { .. } | Phase::Transcoding { .. } => {
                return Some(Report::kept(result::INCOMPLETE, req.content_length()))
            }
        }
    }
    if !Location::of(req).enabled() {
        return None;
    }
    if ctx::of(req)?.borrow().bfc_off {
        return Some(Report::kept(result::OFF, req.content_length()));
    }
    if !req.header_sent() {
        return None;
    }
    Some(Report::kept(result::NOT_CANDIDATE, req.content_length()))
}
