//! The header filter: decides whether a response may be converted, and if
//! so holds its header until the body has been seen (see [`crate::ctx`]
//! for the phases that follow).
//!
//! A `HEAD` reaches it as the `GET` [`crate::head`] made of it, and is
//! decided about as one.
//!
//! Responses it decides about without converting (304, 206, nothing to
//! do, too big, a `HEAD` left a `HEAD`) go on at once, their context in the
//! `Done` phase with the report; responses it passes over (not an image,
//! `bfc=off`, ...) keep an `Untouched` context, or none, and
//! `$smart_imaging_result` works their reason out from the request.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, NGX_ERROR, NGX_HTTP_NOT_MODIFIED, NGX_HTTP_OK,
    NGX_HTTP_PARTIAL_CONTENT, NGX_LOG_ALERT, NGX_LOG_INFO, NGX_OK,
};
use smart_imaging_core::policy::Decision;
use smart_imaging_core::KeepReason;

use crate::ctx::{self, ClientHints, Location, Phase, RequestCtx};
use crate::http::Req;
use crate::result::{self, Kept, Report};
use crate::send::{self, next_header};
use crate::variables;

/// Content types whose bodies may be converted (then confirmed by sniffing).
const CANDIDATE_TYPES: &[&[u8]] = &[
    b"image/jpeg",
    b"image/jpg",
    b"image/pjpeg",
    b"image/png",
    b"image/x-png",
];

fn is_candidate_type(mime: &[u8]) -> bool {
    CANDIDATE_TYPES.contains(&mime)
}

/// For a 304 that carries no type: the URI's extension stands in.
fn is_candidate_extension(exten: &[u8]) -> bool {
    [&b"jpg"[..], b"jpeg", b"png"]
        .iter()
        .any(|e| exten.eq_ignore_ascii_case(e))
}

/// What becomes of the response header.
enum Header {
    /// Passed on to the next filter (changed or not).
    Pass,
    /// Held until the body has been seen.
    Held,
    /// An allocation failed.
    Error,
}

/// The header filter nginx calls.
pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a valid request, on the event
    // loop, for the duration of the call.
    let req = unsafe { Req::new(r) };
    match catch_unwind(AssertUnwindSafe(|| filter_header(req))) {
        Ok(Header::Pass) => next_header(req),
        Ok(Header::Held) => NGX_OK as ngx_int_t,
        Ok(Header::Error) => NGX_ERROR as ngx_int_t,
        // A bug here must not cost the response: send it on untouched.
        Err(_) => {
            req.log(
                NGX_LOG_ALERT,
                format_args!("smart_imaging: panic in header filter"),
            );
            next_header(req)
        }
    }
}

fn filter_header(req: Req<'_>) -> Header {
    if !req.is_main() {
        return Header::Pass;
    }
    // Whatever $smart_imaging_result said before the response reached us
    // is out of date.
    variables::forget_result(req);
    let loc = Location::of(req);
    let hints = loc.client_hints();
    if !loc.enabled() && hints.is_none() {
        return Header::Pass;
    }
    let Some(ctx) = ctx::of(req) else {
        return Header::Error;
    };
    let ctx = &mut *ctx.borrow_mut();
    // bfc=off: exactly what nginx sends without the module.
    if ctx.bfc_off {
        return Header::Pass;
    }
    if let Some(hints) = hints {
        if !add_accept_ch(req, &hints) {
            return Header::Error;
        }
    }
    let status = req.status();
    if !loc.enabled()
        || !matches!(
            status,
            NGX_HTTP_OK | NGX_HTTP_PARTIAL_CONTENT | NGX_HTTP_NOT_MODIFIED
        )
    {
        return Header::Pass;
    }
    let is_image = match status {
        // nginx's not_modified filter has already hidden the type of a
        // 304 made from a local 200; an upstream's 304 usually has none.
        NGX_HTTP_NOT_MODIFIED => match req.not_modified_mime() {
            Some(mime) => is_candidate_type(&mime),
            None => is_candidate_extension(req.exten()),
        },
        _ => is_candidate_type(&req.response_mime()),
    };
    if !is_image || req.content_encoding_set() {
        return Header::Pass;
    }
    negotiate(req, ctx, status)
}

/// An image response of an enabled location: applies the negotiation.
fn negotiate(req: Req<'_>, ctx: &mut RequestCtx, status: u32) -> Header {
    let loc = ctx.loc;
    let negotiation = ctx.negotiation(req);
    if !negotiation.ignored_args.is_empty() {
        req.log_debug(format_args!(
            "smart_imaging: ignored malformed arguments: {}",
            negotiation.ignored_args.join(", ")
        ));
    }
    let plan = match &negotiation.decision {
        Decision::Off => return Header::Pass,
        Decision::Original => None,
        Decision::Transcode(plan) => Some(plan.clone()),
    };

    // From here on the response depends on these request headers,
    // whatever we do; the 304 and 206 of a representation must say so
    // as its 200 does.
    if !req.add_vary(&negotiation.vary) {
        return Header::Error;
    }
    if let Some(ttl) = loc.default_ttl() {
        if !req.add_default_ttl(ttl) {
            return Header::Error;
        }
    }
    // A format chosen by User-Agent (JPEG 2000, JPEG XR): no shared
    // cache that keys on Accept only may store it.
    if negotiation.private && !req.make_private() {
        return Header::Error;
    }
    if status == NGX_HTTP_NOT_MODIFIED {
        return pass(req, ctx, Report::kept(result::NOT_MODIFIED, None));
    }
    if status != NGX_HTTP_OK {
        // A 206 reaches us only from an upstream that honoured the
        // client's Range: it is a range of the original, labelled and
        // validated as the original, so it is passed on as it is.
        return pass(req, ctx, Report::kept(result::RANGE, None));
    }
    // A HEAD of an enabled location is a GET by now (`head`), unless its
    // response was made before the content phase or the mark could not be
    // allocated: then there is no body to convert. (HEAD is only marked
    // header-only at the end of the chain.)
    if req.header_only() || req.method_is_head() {
        return pass(req, ctx, Report::kept(result::HEAD, req.content_length()));
    }
    let Some(plan) = plan else {
        let reason = KeepReason::NothingToDo.code();
        return pass(req, ctx, Report::kept(reason, req.content_length()));
    };
    // The client holds this very derivative (its ETag names the
    // original's validator and the variant): no need to make it again.
    let variant = plan.variant();
    if req.if_none_match_has_variant(&variant) {
        req.make_not_modified(&variant);
        return pass(req, ctx, Report::kept(result::NOT_MODIFIED, None));
    }
    let limit = loc.buffer();
    let length = req.content_length();
    if let Some(length) = length.filter(|&n| n > limit) {
        req.log(
            NGX_LOG_INFO,
            format_args!(
                "smart_imaging: body of {length} bytes is over smart_imaging_buffer ({limit}), serving original"
            ),
        );
        let report = Report::Kept(Kept {
            buffer: Some(limit),
            ..Kept::new(result::TOO_BIG, Some(length))
        });
        return pass(req, ctx, report);
    }

    ctx.phase = Phase::Buffering {
        body: Vec::with_capacity(length.unwrap_or(0).min(limit)),
        limit,
        plan,
    };
    // Static files must reach us as memory, not file buffers.
    req.need_in_memory();
    // The range filter runs after us and would slice a body it never
    // saw; whatever we send is sent whole.
    req.clear_accept_ranges();
    Header::Held
}

/// Passes on the header of a response decided here, keeping `report` for
/// `$smart_imaging_result` (and `X-Smart-Imaging`).
fn pass(req: Req<'_>, ctx: &mut RequestCtx, report: Report) -> Header {
    variables::forget_result(req);
    send::add_debug_header(req, ctx.loc, &report);
    ctx.phase = Phase::Done {
        report,
        sending: None,
    };
    Header::Pass
}

/// `smart_imaging_accept_ch`: asks browsers for the client hints this
/// location's settings use. Sent on every response of the location (it is
/// the page's response that browsers read it from), image or not.
fn add_accept_ch(req: Req<'_>, hints: &ClientHints) -> bool {
    req.add_header_once("Accept-CH", &hints.value)
        && (!hints.critical || req.add_header_once("Critical-CH", &hints.value))
}
