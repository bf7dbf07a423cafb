//! `smart_imaging_status`: the counters of [`crate::metrics`], counted
//! once per request at the log phase and served in Prometheus' text format.
//!
//! A request is counted when nginx logs it, with the very report
//! `$smart_imaging_result` shows in that log line
//! ([`variables::result`]): the requests counted are the log lines where
//! the variable is not empty, each under its `converted format=` or
//! `original reason=`. The log phase runs once for every main request,
//! however it ended (client gone, `dropped`, `incomplete`), after the
//! response is complete.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, NGX_DECLINED, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_LOG_ALERT, NGX_OK,
};
use smart_imaging_core::exposition;

use crate::http::Req;
use crate::metrics;
use crate::variables;

/// The log phase handler (registered when a status zone exists): counts
/// the request's result.
pub unsafe extern "C" fn count_request(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx runs log phase handlers with a valid main request, on
    // the event loop, before the request is freed.
    let req = unsafe { Req::new(r) };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let (Some(metrics), Some(report)) = (metrics::get(), variables::result(req)) {
            metrics.record(&report);
        }
    }));
    NGX_DECLINED as ngx_int_t
}

/// The content handler of a location with `smart_imaging_status`.
pub unsafe extern "C" fn serve_status(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request, on the
    // event loop, for the duration of the call.
    let req = unsafe { Req::new(r) };
    catch_unwind(AssertUnwindSafe(|| serve(req))).unwrap_or_else(|_| {
        req.log(
            NGX_LOG_ALERT,
            format_args!("smart_imaging: panic in the status handler"),
        );
        NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
    })
}

fn serve(req: Req<'_>) -> ngx_int_t {
    if !req.method_is_get_or_head() {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = req.discard_body();
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let Some(metrics) = metrics::get() else {
        // Cannot happen: a status location implies a zone, attached when
        // the worker started.
        req.log(
            NGX_LOG_ALERT,
            format_args!("smart_imaging: no status zone in this worker"),
        );
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let text = exposition::render(&metrics.snapshot());
    req.send_complete(exposition::CONTENT_TYPE, text.as_bytes())
}
