//! Passing headers and bodies on to nginx's next filters.

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_http_output_body_filter_pt,
    ngx_http_output_header_filter_pt, ngx_int_t, ngx_pcalloc, NGX_ERROR, NGX_LOG_WARN,
};

use crate::ctx::Location;
use crate::http::{Chain, Req};
use crate::result::Report;

/// The response header of `smart_imaging_debug_header on`.
const DEBUG_HEADER: &str = "X-Smart-Imaging";

/// The next filters in nginx's chains, saved at postconfiguration.
pub static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
pub static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

/// Passes the response header on. A `HEAD` this module turned into a
/// `GET` is a `HEAD` again first (every header of the request's responses
/// passes here, whatever the module did with it): the filters after ours
/// see a `HEAD`, nginx's last one marks the response header-only, and the
/// content handler then sends no body. It stays a `HEAD` afterwards, as
/// for any `HEAD`: a filter below ours that holds the header (`xslt`,
/// `image_filter`) sends it later, and it too must be header-only.
pub fn next_header(req: Req<'_>) -> ngx_int_t {
    req.restore_head();
    // SAFETY: set once at postconfiguration, before any request.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: nginx's next filter accepts any valid request.
        Some(f) => unsafe { f(req.as_ptr()) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Passes `chain` on.
pub fn next_body(req: Req<'_>, chain: Chain<'_>) -> ngx_int_t {
    // SAFETY: as in `next_header`.
    match unsafe { NEXT_BODY_FILTER } {
        // SAFETY: a valid request and a chain of valid links (or NULL).
        Some(f) => unsafe { f(req.as_ptr(), chain.as_ptr()) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Sends `bytes` as one memory buffer (the last of the response if `last`),
/// followed by `rest`.
///
/// # Safety
/// `bytes` must stay valid and unchanged until the request is freed: nginx
/// may send them after this returns.
pub unsafe fn send_bytes(req: Req<'_>, bytes: &[u8], last: bool, rest: Chain<'_>) -> ngx_int_t {
    // SAFETY: the request pool is valid; buffer and link are freed with it.
    let (b, cl) = unsafe {
        let pool = req.pool();
        (
            ngx_pcalloc(pool, size_of::<ngx_buf_t>()).cast::<ngx_buf_t>(),
            ngx_alloc_chain_link(pool),
        )
    };
    if b.is_null() || cl.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: `b` and `cl` were just allocated (zeroed buffer); `bytes`
    // outlives the request's output (caller's contract).
    let chain = unsafe {
        if !bytes.is_empty() {
            let range = bytes.as_ptr_range();
            (*b).pos = range.start.cast_mut();
            (*b).last = range.end.cast_mut();
            (*b).start = (*b).pos;
            (*b).end = (*b).last;
            (*b).set_memory(1);
        }
        (*b).set_last_buf(u32::from(last));
        (*cl).buf = b;
        (*cl).next = rest.as_ptr();
        Chain::new(cl)
    };
    next_body(req, chain)
}

/// Keeps caches from storing an original served for a reason of the moment
/// (`busy`, `timeout`, `internal`: [`Report::is_transient`]) in place of
/// the variant: a cache in front keyed on `$smart_imaging_variant`, or a
/// CDN, would otherwise serve it to every client of that variant until it
/// expires. False if the headers could not be added.
pub fn forbid_storing_fallback(req: Req<'_>, report: &Report) -> bool {
    !report.is_transient() || req.forbid_storing()
}

/// `smart_imaging_debug_header on`: `X-Smart-Imaging: <the report>`. A
/// debugging aid: if it cannot be added, the response goes without it.
pub fn add_debug_header(req: Req<'_>, loc: Location, report: &Report) {
    if !loc.debug_header() {
        return;
    }
    if !req.set_header(DEBUG_HEADER, &report.to_string()) {
        req.log(
            NGX_LOG_WARN,
            format_args!("smart_imaging: could not add the {DEBUG_HEADER} header"),
        );
    }
}
