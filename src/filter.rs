//! The header and body filters.
//!
//! One context per converted request, with an explicit state machine (as in
//! `ngx_http_image_filter_module.c`):
//!
//! ```text
//! header filter: candidate? ──no──> pass headers on untouched (plus Vary)
//!        │ yes: hold the header, create the context
//!        v
//!   Buffering ──body over limit / not an image / can't offload──> Done (original)
//!        │ last buffer: post the transcode to the thread pool
//!        v
//!   Transcoding ──(pool thread finishes, event loop resumes us)──> Ready
//!        │ or the deadline first (smart_imaging_timeout, under send_timeout):
//!        │ Ready with the original; the job runs on, discarded when done
//!        v
//!   Ready: send converted headers + body, or the original unchanged ──> Done
//! ```
//!
//! Whatever goes wrong after the header was held, the original headers and
//! bytes are sent: a client never sees a failure caused by this module.
//!
//! What happened is kept in the context as a [`Report`] for
//! `$smart_imaging_result` and `X-Smart-Imaging`: responses decided in the
//! header filter (304, too big, nothing to do, ...) get a context in the
//! `Done` phase just for it; responses the module passes over (not an
//! image, `bfc=off`) get none, and the variable works their reason out
//! from the request.

use core::ffi::c_void;
use core::ptr;
use core::slice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
    ngx_http_output_body_filter_pt, ngx_http_output_header_filter_pt, ngx_http_request_t,
    ngx_int_t, ngx_pcalloc, ngx_pool_cleanup_add, NGX_AGAIN, NGX_ERROR, NGX_HTTP_HEAD,
    NGX_HTTP_NOT_MODIFIED, NGX_HTTP_OK, NGX_HTTP_PARTIAL_CONTENT, NGX_LOG_ALERT, NGX_LOG_INFO,
    NGX_LOG_WARN, NGX_OK,
};
use ngx::http::Request;
use ngx::ngx_log_debug_http;
use ngx::ngx_log_error;
use smart_imaging_core::policy::{decide, parse_url_args, Decision};
use smart_imaging_core::{sniff, KeepReason, Outcome, Plan};

use crate::config::{AcceptCh, LocConf};
use crate::offload::{self, Deadline, Job, PostError, Slot};
use crate::result::{self, Kept, Report};
use crate::{http, variables};

/// The response header of `smart_imaging_debug_header on`.
const DEBUG_HEADER: &str = "X-Smart-Imaging";

/// The next filters in nginx's chains, saved at postconfiguration.
pub static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
pub static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

/// Our bit in `c->buffered` while a transcode is pending: tells
/// `ngx_http_finalize_request` that the response is not complete yet
/// (the same value `ngx_http_image_filter_module` uses).
const SMART_IMAGING_BUFFERED: u32 = 0x08;

/// Content types whose bodies may be converted (then confirmed by sniffing).
const CANDIDATE_TYPES: &[&[u8]] = &[
    b"image/jpeg",
    b"image/jpg",
    b"image/pjpeg",
    b"image/png",
    b"image/x-png",
];

#[derive(Debug)]
enum Phase {
    Buffering,
    Transcoding,
    Ready,
    Done,
}

/// Per-request state, allocated when the header filter decides to buffer and
/// dropped by a cleanup of the request pool.
struct RequestCtx {
    phase: Phase,
    /// The original body, as received (while buffering).
    original: Vec<u8>,
    /// The original body once complete, shared with the job (which may
    /// outlive the request if it times out).
    held: Option<Arc<Vec<u8>>>,
    /// Whether the original's last buffer has been seen.
    complete: bool,
    limit: usize,
    plan: Plan,
    /// The posted job while the request waits for it (`Phase::Transcoding`).
    slot: *mut Slot,
    outcome: Option<Outcome>,
    elapsed: Duration,
    /// Converted bytes, kept alive here while nginx sends them.
    converted: Vec<u8>,
    /// What was done, once known (`$smart_imaging_result`).
    report: Option<Report>,
}

impl RequestCtx {
    /// For a response the header filter passed on: nothing to buffer, only
    /// the report to keep.
    fn finished(report: Report) -> RequestCtx {
        RequestCtx {
            phase: Phase::Done,
            original: Vec::new(),
            held: None,
            complete: false,
            limit: 0,
            // Never used in the Done phase.
            plan: Plan::new(Vec::new()),
            slot: ptr::null_mut(),
            outcome: None,
            elapsed: Duration::ZERO,
            converted: Vec::new(),
            report: Some(report),
        }
    }
}

unsafe fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set once at postconfiguration, before any request.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: nginx's next filter accepts any valid request.
        Some(f) => unsafe { f(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe fn next_body(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: as in `next_header`.
    match unsafe { NEXT_BODY_FILTER } {
        // SAFETY: forwarded chain of valid links (or NULL).
        Some(f) => unsafe { f(r, chain) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// # Safety
/// `r` must be a valid request of an HTTP location.
pub unsafe fn loc_conf(r: *mut ngx_http_request_t) -> &'static LocConf {
    // SAFETY: nginx allocated this module's LocConf for every location.
    unsafe {
        let idx = crate::ngx_http_smart_imaging_module.ctx_index;
        &*(*(*r).loc_conf.add(idx)).cast::<LocConf>()
    }
}

unsafe fn get_ctx(r: *mut ngx_http_request_t) -> *mut RequestCtx {
    // SAFETY: r->ctx has one slot per HTTP module.
    unsafe {
        let idx = crate::ngx_http_smart_imaging_module.ctx_index;
        (*(*r).ctx.add(idx)).cast()
    }
}

unsafe extern "C" fn drop_ctx(data: *mut c_void) {
    let ctx = data.cast::<RequestCtx>();
    // SAFETY: `data` is the Box leaked in `create_ctx`, dropped exactly once
    // here when the request pool is destroyed.
    let ctx = unsafe { Box::from_raw(ctx) };
    if !ctx.slot.is_null() {
        // Cannot happen: a request is blocked while it waits for its job.
        // Should it ever be freed anyway, the job must not come back to it.
        // SAFETY: the slot stays allocated until its job completes, and
        // this request's slot pointer is cleared when it does.
        unsafe { offload::detach(ctx.slot) };
    }
}

impl RequestCtx {
    /// The original body (buffered, or shared with the job).
    fn original_bytes(&self) -> &[u8] {
        match &self.held {
            Some(held) => held,
            None => &self.original,
        }
    }
}

unsafe fn create_ctx(r: *mut ngx_http_request_t, ctx: RequestCtx) -> Option<*mut RequestCtx> {
    // SAFETY: the request pool is valid; the cleanup frees the context.
    unsafe {
        let cln = ngx_pool_cleanup_add((*r).pool, 0);
        if cln.is_null() {
            return None;
        }
        let ctx = Box::into_raw(Box::new(ctx));
        (*cln).handler = Some(drop_ctx);
        (*cln).data = ctx.cast();
        let idx = crate::ngx_http_smart_imaging_module.ctx_index;
        *(*r).ctx.add(idx) = ctx.cast();
        Some(ctx)
    }
}

fn is_candidate_type(mime: &[u8]) -> bool {
    CANDIDATE_TYPES.contains(&mime)
}

/// For a 304 that carries no type: the URI's extension stands in.
fn is_candidate_extension(exten: &[u8]) -> bool {
    [&b"jpg"[..], b"jpeg", b"png"]
        .iter()
        .any(|e| exten.eq_ignore_ascii_case(e))
}

/// Header filter: decides whether this response may be converted, and if so
/// holds its header until the body has been seen.
pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a valid request.
    match catch_unwind(AssertUnwindSafe(|| unsafe { header_filter_inner(r) })) {
        Ok(rc) => rc,
        // A bug here must not cost the response: send it on untouched.
        // SAFETY: as above.
        Err(_) => unsafe {
            ngx_log_error!(
                NGX_LOG_ALERT,
                (*(*r).connection).log,
                "smart_imaging: panic in header filter"
            );
            next_header(r)
        },
    }
}

unsafe fn header_filter_inner(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: `r` is valid for the whole call (caller's contract).
    unsafe {
        let conf = loc_conf(r);
        if r == (*r).main {
            // Whatever $smart_imaging_result said before the response
            // reached us is out of date.
            variables::forget_result(r);
        }
        // bfc=off: exactly what nginx sends without the module.
        if parse_url_args((*r).args.as_bytes()).bfc_off {
            return next_header(r);
        }
        if r == (*r).main && !add_accept_ch(r, conf) {
            return NGX_ERROR as ngx_int_t;
        }
        let status = (*r).headers_out.status as u32;
        if !conf.enabled()
            || r != (*r).main
            || !matches!(
                status,
                NGX_HTTP_OK | NGX_HTTP_PARTIAL_CONTENT | NGX_HTTP_NOT_MODIFIED
            )
            || parse_url_args((*r).args.as_bytes()).bfc_off
        {
            return next_header(r);
        }
        let is_image = match status {
            // nginx's not_modified filter has already hidden the type of a
            // 304 made from a local 200; an upstream's 304 usually has none.
            NGX_HTTP_NOT_MODIFIED => match http::not_modified_mime(r) {
                Some(mime) => is_candidate_type(&mime),
                None => is_candidate_extension((*r).exten.as_bytes()),
            },
            _ => is_candidate_type(&http::response_mime(r)),
        };
        if !is_image {
            return next_header(r);
        }
        let ce = (*r).headers_out.content_encoding;
        if !ce.is_null() && (*ce).hash != 0 && (*ce).value.len != 0 {
            return next_header(r);
        }

        let settings = conf.settings();
        let facts = http::request_facts(r, settings.dpr_header.as_deref());
        let negotiation = decide(&facts, settings);
        if !negotiation.ignored_args.is_empty() {
            ngx_log_debug_http!(
                Request::from_ngx_http_request(r),
                "smart_imaging: ignored malformed arguments: {}",
                negotiation.ignored_args.join(", ")
            );
        }
        let plan = match negotiation.decision {
            Decision::Off => return next_header(r),
            Decision::Original => None,
            Decision::Transcode(plan) => Some(plan),
        };

        // From here on the response depends on these request headers,
        // whatever we do; the 304 and 206 of a representation must say so
        // as its 200 does.
        if !http::add_vary(r, &negotiation.vary) {
            return NGX_ERROR as ngx_int_t;
        }
        if conf
            .location
            .ttl
            .is_some_and(|ttl| !http::add_default_ttl(r, ttl as i64))
        {
            return NGX_ERROR as ngx_int_t;
        }
        // A format chosen by User-Agent (JPEG 2000, JPEG XR): no shared
        // cache that keys on Accept only may store it.
        if negotiation.private && !http::make_private(r) {
            return NGX_ERROR as ngx_int_t;
        }
        if status == NGX_HTTP_NOT_MODIFIED {
            return pass_header(r, Report::kept(result::NOT_MODIFIED, None));
        }
        if status != NGX_HTTP_OK {
            // A 206 reaches us only from an upstream that honoured the
            // client's Range: it is a range of the original, labelled and
            // validated as the original, so it is passed on as it is.
            return pass_header(r, Report::kept(result::RANGE, None));
        }
        // HEAD is only marked header-only at the end of the chain.
        if (*r).header_only() != 0 || (*r).method == NGX_HTTP_HEAD as usize {
            return pass_header(r, Report::kept(result::HEAD, http::content_length(r)));
        }
        let Some(plan) = plan else {
            let reason = KeepReason::NothingToDo.code();
            return pass_header(r, Report::kept(reason, http::content_length(r)));
        };
        // The client holds this very derivative (its ETag names the
        // original's validator and the variant): no need to make it again.
        let variant = plan.variant();
        if http::if_none_match_has_variant(r, &variant) {
            http::make_not_modified(r, &variant);
            return pass_header(r, Report::kept(result::NOT_MODIFIED, None));
        }
        let length = (*r).headers_out.content_length_n;
        if length > conf.location.buffer as i64 {
            ngx_log_error!(
                NGX_LOG_INFO,
                (*(*r).connection).log,
                "smart_imaging: body of {} bytes is over smart_imaging_buffer ({}), serving original",
                length,
                conf.location.buffer
            );
            let report = Report::Kept(Kept {
                buffer: Some(conf.location.buffer),
                ..Kept::new(result::TOO_BIG, http::content_length(r))
            });
            return pass_header(r, report);
        }

        let ctx = RequestCtx {
            phase: Phase::Buffering,
            original: Vec::with_capacity(length.clamp(0, conf.location.buffer as i64) as usize),
            held: None,
            complete: false,
            limit: conf.location.buffer,
            plan,
            slot: ptr::null_mut(),
            outcome: None,
            elapsed: Duration::ZERO,
            converted: Vec::new(),
            report: None,
        };
        if create_ctx(r, ctx).is_none() {
            return NGX_ERROR as ngx_int_t;
        }
        // Static files must reach us as memory, not file buffers.
        (*r).set_main_filter_need_in_memory(1);
        // The range filter runs after us and would slice a body it never
        // saw; whatever we send is sent whole.
        http::clear_accept_ranges(r);
        NGX_OK as ngx_int_t
    }
}

/// Passes on the header of a response decided in the header filter,
/// keeping `report` for `$smart_imaging_result` (and `X-Smart-Imaging`).
///
/// # Safety
/// `r` must be a valid main request whose header has not been sent yet.
unsafe fn pass_header(r: *mut ngx_http_request_t, report: Report) -> ngx_int_t {
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some(ctx) = create_ctx(r, RequestCtx::finished(report)) else {
            return NGX_ERROR as ngx_int_t;
        };
        variables::forget_result(r);
        add_debug_header(r, &*ctx);
        next_header(r)
    }
}

/// Keeps what was done with the response, for `$smart_imaging_result`.
///
/// # Safety
/// `r` must be a valid request, `ctx` its context.
unsafe fn set_report(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, report: Report) {
    ctx.report = Some(report);
    // SAFETY: forwarded from the caller.
    unsafe { variables::forget_result(r) };
}

/// `smart_imaging_debug_header on`: `X-Smart-Imaging: <the report>`. A
/// debugging aid: if it cannot be added, the response goes without it.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
unsafe fn add_debug_header(r: *mut ngx_http_request_t, ctx: &RequestCtx) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some(report) = &ctx.report else {
            return;
        };
        if !loc_conf(r).debug_header() {
            return;
        }
        if !http::set_header(r, DEBUG_HEADER, &report.to_string()) {
            ngx_log_error!(
                NGX_LOG_WARN,
                (*(*r).connection).log,
                "smart_imaging: could not add the {} header",
                DEBUG_HEADER
            );
        }
    }
}

/// What the module did with the response of `r`, for
/// `$smart_imaging_result`: the context's report, or worked out from the
/// request where the module passed the response over. None where it did
/// not look at it (module off, subrequests, nothing sent yet).
///
/// # Safety
/// `r` must be a valid request (possibly finished: this runs at log time).
pub unsafe fn result(r: *mut ngx_http_request_t) -> Option<Report> {
    // SAFETY: `r` is valid (caller's contract); the context, if any, lives
    // until the request pool is destroyed, after the log phase.
    unsafe {
        if r != (*r).main {
            return None;
        }
        let ctx = get_ctx(r);
        if !ctx.is_null() {
            let ctx = &*ctx;
            return Some(match &ctx.report {
                Some(report) => report.clone(),
                // Still buffering when the request ended: the upstream
                // failed or the client went away.
                None => Report::kept(result::INCOMPLETE, http::content_length(r)),
            });
        }
        if !loc_conf(r).enabled() {
            return None;
        }
        if parse_url_args((*r).args.as_bytes()).bfc_off {
            return Some(Report::kept(result::OFF, http::content_length(r)));
        }
        if (*r).header_sent() == 0 {
            return None;
        }
        Some(Report::kept(result::NOT_CANDIDATE, http::content_length(r)))
    }
}

/// `smart_imaging_accept_ch`: asks browsers for the client hints this
/// location's settings use. Sent on every response of the location (it is
/// the page's response that browsers read it from), image or not.
unsafe fn add_accept_ch(r: *mut ngx_http_request_t, conf: &LocConf) -> bool {
    let mode = conf.location.accept_ch;
    let hints = conf.client_hints();
    if mode == AcceptCh::Off || hints.is_empty() {
        return true;
    }
    let value = hints.join(", ");
    // SAFETY: a valid request whose header is not sent yet (caller).
    unsafe {
        http::add_header_once(r, "Accept-CH", &value)
            && (mode != AcceptCh::Critical || http::add_header_once(r, "Critical-CH", &value))
    }
}

/// Body filter: buffers, offloads, then sends the result.
pub unsafe extern "C" fn body_filter(
    r: *mut ngx_http_request_t,
    chain: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx calls body filters with a valid request and chain.
    let ctx = unsafe { get_ctx(r) };
    if ctx.is_null() {
        // SAFETY: as above.
        return unsafe { next_body(r, chain) };
    }
    // SAFETY: the context lives as long as the request.
    match catch_unwind(AssertUnwindSafe(|| unsafe {
        body_filter_inner(r, &mut *ctx, chain)
    })) {
        Ok(rc) => rc,
        Err(_) => {
            // SAFETY: as above.
            unsafe {
                ngx_log_error!(
                    NGX_LOG_ALERT,
                    (*(*r).connection).log,
                    "smart_imaging: panic in body filter"
                );
            }
            NGX_ERROR as ngx_int_t
        }
    }
}

unsafe fn body_filter_inner(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    chain: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: `r` and `chain` are valid (caller's contract).
    unsafe {
        match ctx.phase {
            Phase::Done => next_body(r, chain),
            Phase::Transcoding => {
                consume(chain);
                NGX_AGAIN as ngx_int_t
            }
            Phase::Ready => send_result(r, ctx),
            Phase::Buffering => buffer(r, ctx, chain),
        }
    }
}

/// Marks every buffer of `chain` as sent (so upstream buffers are recycled).
unsafe fn consume(mut chain: *mut ngx_chain_t) {
    // SAFETY: a valid chain of valid buffers.
    unsafe {
        while !chain.is_null() {
            let b = (*chain).buf;
            (*b).pos = (*b).last;
            chain = (*chain).next;
        }
    }
}

fn in_memory(b: &ngx_buf_t) -> bool {
    b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0
}

unsafe fn buffer(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    chain: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: valid request and chain (caller's contract).
    unsafe {
        let log = (*(*r).connection).log;
        let mut cl = chain;
        while !cl.is_null() {
            let b = &mut *(*cl).buf;
            let size = if in_memory(b) {
                b.last.offset_from(b.pos) as usize
            } else {
                0
            };
            if !in_memory(b) && b.file_last > b.file_pos {
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "smart_imaging: body arrived in a file buffer, serving original"
                );
                let report = Report::kept(result::FILE_BUFFER, http::content_length(r));
                set_report(r, ctx, report);
                return send_original(r, ctx, cl);
            }
            if ctx.original.len() + size > ctx.limit {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "smart_imaging: body is over smart_imaging_buffer ({} bytes), serving original",
                    ctx.limit
                );
                let report = Report::Kept(Kept {
                    buffer: Some(ctx.limit),
                    ..Kept::new(result::TOO_BIG, http::content_length(r))
                });
                set_report(r, ctx, report);
                return send_original(r, ctx, cl);
            }
            if size > 0 {
                ctx.original
                    .extend_from_slice(slice::from_raw_parts(b.pos, size));
                b.pos = b.last;
            }
            if b.last_buf() != 0 {
                ctx.complete = true;
            }
            cl = (*cl).next;
        }

        // Don't hold a large body that is not an image at all.
        let decided = ctx.original.len() >= 8 || ctx.complete;
        if decided && sniff(&ctx.original).is_none() {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "smart_imaging: {} (Content-Type says image), serving original",
                KeepReason::NotAnImage
            );
            let input = if ctx.complete {
                Some(ctx.original.len())
            } else {
                http::content_length(r)
            };
            set_report(r, ctx, Report::kept(KeepReason::NotAnImage.code(), input));
            return send_original(r, ctx, ptr::null_mut());
        }
        if !ctx.complete {
            return NGX_OK as ngx_int_t;
        }
        start_transcode(r, ctx)
    }
}

unsafe fn start_transcode(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> ngx_int_t {
    // SAFETY: valid request (caller's contract).
    unsafe {
        let conf = loc_conf(r);
        let log = (*(*r).connection).log;
        let input = Arc::new(std::mem::take(&mut ctx.original));
        ctx.held = Some(Arc::clone(&input));
        let job = Box::new(Job {
            input,
            plan: ctx.plan.clone(),
            limits: conf.limits(),
            outcome: None,
            elapsed: Duration::ZERO,
        });
        let deadline = Deadline::new(
            conf.location.timeout_ms as ngx::ffi::ngx_msec_t,
            send_timeout(r),
        );
        match offload::post(r, conf.thread_pool, conf.location.max_jobs, job, deadline) {
            Ok(slot) => {
                ctx.slot = slot;
                ctx.phase = Phase::Transcoding;
                let c = (*r).connection;
                (*c).set_buffered((*c).buffered() | SMART_IMAGING_BUFFERED);
                NGX_AGAIN as ngx_int_t
            }
            Err((job, why)) => {
                drop(job);
                let mut kept = Kept::new(result::BUSY, Some(ctx.original_bytes().len()));
                let why = match why {
                    PostError::Overloaded(n) => {
                        kept.jobs = Some(n);
                        format!("{n} transcodes in progress (smart_imaging_max_jobs)")
                    }
                    PostError::QueueFull => "the thread pool queue is full".to_string(),
                };
                set_report(r, ctx, Report::Kept(kept));
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "smart_imaging: {}, serving original",
                    why
                );
                send_original(r, ctx, ptr::null_mut())
            }
        }
    }
}

/// `send_timeout` of the request's location.
///
/// # Safety
/// `r` must be a valid request.
unsafe fn send_timeout(r: *mut ngx_http_request_t) -> ngx::ffi::ngx_msec_t {
    // SAFETY: every HTTP location has the core module's configuration.
    unsafe {
        let idx = ngx_http_core_module.ctx_index;
        let clcf = (*(*r).loc_conf.add(idx)).cast::<ngx_http_core_loc_conf_t>();
        (*clcf).send_timeout
    }
}

/// Called on the event loop when the pool thread has finished the job.
///
/// # Safety
/// `r` must be the request the job was posted for, still waiting for it.
pub unsafe fn job_finished(r: *mut ngx_http_request_t, job: Job) {
    // SAFETY: the request and its context are alive (the request is blocked).
    unsafe {
        let ctx = &mut *get_ctx(r);
        ctx.slot = ptr::null_mut();
        let report = Report::from_outcome(job.outcome.as_ref(), job.input.len(), job.elapsed);
        set_report(r, ctx, report);
        ctx.outcome = job.outcome;
        ctx.elapsed = job.elapsed;
        ctx.phase = Phase::Ready;
        let c = (*r).connection;
        (*c).set_buffered((*c).buffered() & !SMART_IMAGING_BUFFERED);
    }
}

/// Called on the event loop when the request has waited `waited` for its
/// job, past `deadline`: the original is served, the job's result will be
/// discarded.
///
/// # Safety
/// `r` must be the request the job was posted for, still waiting for it.
pub unsafe fn job_timed_out(r: *mut ngx_http_request_t, waited: Duration, deadline: &Deadline) {
    // SAFETY: the request and its context are alive (the request is blocked).
    unsafe {
        let ctx = &mut *get_ctx(r);
        ctx.slot = ptr::null_mut();
        let log = (*(*r).connection).log;
        let uri = String::from_utf8_lossy((*r).uri.as_bytes());
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "smart_imaging: \"{}\" not converted ({:.1} ms): {}, serving original",
            uri,
            waited.as_secs_f64() * 1000.0,
            deadline.reason()
        );
        let report = Report::Kept(Kept {
            elapsed: Some(waited),
            ..Kept::new(result::TIMEOUT, Some(ctx.original_bytes().len()))
        });
        set_report(r, ctx, report);
        ctx.outcome = None;
        ctx.phase = Phase::Ready;
        let c = (*r).connection;
        (*c).set_buffered((*c).buffered() & !SMART_IMAGING_BUFFERED);
    }
}

unsafe fn send_result(r: *mut ngx_http_request_t, ctx: &mut RequestCtx) -> ngx_int_t {
    // SAFETY: valid request (caller's contract).
    unsafe {
        let log = (*(*r).connection).log;
        let uri = (*r).uri.as_bytes();
        let uri = String::from_utf8_lossy(uri);
        let ms = ctx.elapsed.as_secs_f64() * 1000.0;
        match ctx.outcome.take() {
            Some(Outcome::Converted(converted)) => {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "smart_imaging: \"{}\" converted to {}: {} -> {} bytes in {:.1} ms",
                    uri,
                    converted.format.name(),
                    ctx.original_bytes().len(),
                    converted.bytes.len(),
                    ms
                );
                ctx.converted = converted.bytes;
                http::set_content_type(r, converted.format.mime());
                http::set_content_length(r, ctx.converted.len());
                http::set_variant_etag(r, &ctx.plan.variant());
                add_debug_header(r, ctx);
                ctx.phase = Phase::Done;
                let rc = next_header(r);
                if rc == NGX_ERROR as ngx_int_t
                    || rc > NGX_OK as ngx_int_t
                    || (*r).header_only() != 0
                {
                    return rc;
                }
                let body = (ctx.converted.as_ptr(), ctx.converted.len());
                send_bytes(r, body, true, ptr::null_mut())
            }
            Some(Outcome::Original(reason)) => {
                let level = match reason {
                    // Expected outcomes, not failures (KeepReason::is_failure).
                    KeepReason::NotSmaller { .. } | KeepReason::NotComparable { .. } => {
                        NGX_LOG_INFO
                    }
                    KeepReason::Panic(_) => NGX_LOG_ALERT,
                    _ => NGX_LOG_WARN,
                };
                ngx_log_error!(
                    level,
                    log,
                    "smart_imaging: \"{}\" not converted ({:.1} ms): {}, serving original",
                    uri,
                    ms,
                    reason
                );
                send_original(r, ctx, ptr::null_mut())
            }
            None => send_original(r, ctx, ptr::null_mut()),
        }
    }
}

/// Sends the held header unchanged, then the buffered original bytes
/// followed by `rest` (the part of the body not buffered yet, if any).
unsafe fn send_original(
    r: *mut ngx_http_request_t,
    ctx: &mut RequestCtx,
    rest: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: valid request (caller's contract).
    unsafe {
        ctx.phase = Phase::Done;
        add_debug_header(r, ctx);
        let rc = next_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        let original = ctx.original_bytes();
        if original.is_empty() && !ctx.complete {
            return next_body(r, rest);
        }
        let body = (original.as_ptr(), original.len());
        send_bytes(r, body, ctx.complete, rest)
    }
}

/// Sends `len` bytes at `data` (owned by the context, so alive until the
/// request is freed) as one memory buffer, followed by `rest`.
unsafe fn send_bytes(
    r: *mut ngx_http_request_t,
    (data, len): (*const u8, usize),
    last: bool,
    rest: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: buffer and link come from the request pool; `data` outlives
    // the request's output (see RequestCtx::converted / original).
    unsafe {
        let pool = (*r).pool;
        let b = ngx_pcalloc(pool, size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
        let cl = ngx_alloc_chain_link(pool);
        if b.is_null() || cl.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        if len > 0 {
            (*b).pos = data.cast_mut();
            (*b).last = data.add(len).cast_mut();
            (*b).start = (*b).pos;
            (*b).end = (*b).last;
            (*b).set_memory(1);
        }
        (*b).set_last_buf(u32::from(last));
        (*cl).buf = b;
        (*cl).next = rest;
        next_body(r, cl)
    }
}
