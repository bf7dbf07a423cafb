//! `HEAD` gets the headers `GET` would: in a location that converts, a
//! `HEAD` is served as a `GET` whose body nginx does not send.
//!
//! Its headers (`Content-Type`, `Content-Length`, `ETag`, ...) depend on
//! the converted body, and a `HEAD` has none to convert: the static module
//! reads no file for it, `proxy_pass` asks the upstream for a `HEAD`. So
//! just before the content phase ([`make_get`], the last handler of the
//! precontent phase) the main request's `HEAD` becomes a `GET`, as nginx's
//! own `proxy_cache_convert_head` does for the upstream; the response is
//! then made, and converted, as for a `GET`. Before its header leaves the
//! module ([`crate::send::next_header`]) the request is a `HEAD` again,
//! whichever response it is (converted, passed over, an error, a `304`, a
//! redirect): nginx's last header filter marks it header-only, content
//! handlers send no body, and the body filter drops what still comes
//! (`body_filter`). A request whose header never went out (the client
//! left) is a `HEAD` again at the log phase ([`log_as_head`]), so
//! `$request_method` logs what the client sent.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_DECLINED, NGX_LOG_ALERT};

use crate::ctx::{self, Location};
use crate::http::Req;

/// The precontent phase handler, registered to run after the others of
/// that phase (`try_files`, `mirror`, which copies the method into its
/// subrequests): turns the `HEAD` of an enabled location into a `GET`.
pub unsafe extern "C" fn make_get(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx runs phase handlers with a valid request, on the event
    // loop, for the duration of the call.
    let req = unsafe { Req::new(r) };
    if catch_unwind(AssertUnwindSafe(|| make_get_if_converting(req))).is_err() {
        // The request goes on as the HEAD it is.
        req.log(
            NGX_LOG_ALERT,
            format_args!("smart_imaging: panic in the precontent handler"),
        );
    }
    NGX_DECLINED as ngx_int_t
}

fn make_get_if_converting(req: Req<'_>) {
    // Only a HEAD whose response is still to be made: not once its header
    // has gone out (`post_action`), when a turned one is a HEAD again.
    if !req.is_main() || !req.method_is_head() || req.header_sent() || req.head_turned_into_get() {
        return;
    }
    if !Location::of(req).enabled() {
        return;
    }
    // bfc=off: exactly what nginx does without the module, HEAD included.
    // Without memory for the context, the HEAD is served as one.
    match ctx::of(req) {
        Some(ctx) if !ctx.borrow().bfc_off => {}
        _ => return,
    }
    if !req.turn_head_into_get() {
        req.log_debug(format_args!(
            "smart_imaging: no memory to serve HEAD as GET, serving HEAD"
        ));
    }
}

/// The log phase handler, registered to run before the others (the access
/// log among them): a `HEAD` turned into a `GET` whose header never went
/// out is logged as the `HEAD` it is.
pub unsafe extern "C" fn log_as_head(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx runs log phase handlers with a valid request, on the
    // event loop, before the request is freed.
    let req = unsafe { Req::new(r) };
    let _ = catch_unwind(AssertUnwindSafe(|| req.restore_head()));
    NGX_DECLINED as ngx_int_t
}
