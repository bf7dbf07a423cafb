//! The per-request context: what the module worked out about a request and
//! what it is doing with the response, shared by the header filter, the
//! body filter and the variables.
//!
//! It holds, worked out once per request:
//! - the location's configuration, as [`Location`] (the one place this
//!   layer reads [`LocConf`]);
//! - `bfc=off`, parsed from the query string;
//! - the [`Negotiation`] (`policy::decide`), made by whichever needs it
//!   first: the header filter, or `$smart_imaging_variant` evaluated before
//!   the response exists (`proxy_cache_key`, `add_header`); only a
//!   `rewrite` to other arguments or settings in between makes it again
//!   ([`of`]);
//!
//! and the [`Phase`] of the response, each phase with its data, including
//! what was done (the [`Report`] of `$smart_imaging_result` and
//! `X-Smart-Imaging`) once known:
//!
//! ```text
//!   Untouched ── the header filter passes the response over (not an image
//!        │       of an enabled location, bfc=off, a subrequest, ...)
//!        │ an image: Vary (and Cache-Control) added, then
//!        ├── 304, 206, HEAD left a HEAD, nothing to do, too big ──> Done
//!        │   (header passed on; other HEADs come as GETs: crate::head)
//!        v otherwise the header is held
//!   Buffering ── body over limit / not an image / can't offload ──> Done (original)
//!        │ last buffer: the transcode is posted to the thread pool
//!        v
//!   Transcoding: the request waits
//!        │ queued in the worker (smart_imaging_max_running), then run;
//!        │ the pool thread finishes, or the deadline passes first
//!        │ (smart_imaging_timeout, under send_timeout: a queued job never
//!        │ runs, a running one runs on, its result stashed when done);
//!        │ the client leaving while queued drops the job ──> Done;
//!        │ smart_imaging_background on: the job only looks in the stash,
//!        │ and on a miss the conversion is posted without the request
//!        │ (the original is sent: deferred)
//!        v
//!   Ready ── body filter, resumed: converted headers + body, or the
//!            original unchanged ──> Done
//! ```
//!
//! Whatever goes wrong after the header was held, the original headers and
//! bytes are sent. The context lives in the request's `ctx` slot, allocated
//! on first use and freed by a cleanup of the request pool. It is a
//! `RefCell`: borrows are short, and never held while nginx's next filters
//! run.

use core::cell::RefCell;
use core::ffi::c_void;
use core::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use ngx::ffi::{ngx_msec_t, ngx_thread_pool_t};
use smart_imaging_core::policy::{decide, parse_url_args, Negotiation, Settings};
use smart_imaging_core::{Limits, Outcome, Plan};

use crate::config::{AcceptCh, LocConf, StashDir};
use crate::http::Req;
use crate::offload::{Bounds, Posted};
use crate::result::Report;

/// What this layer reads of a location's `smart_imaging_*` configuration.
#[derive(Clone, Copy)]
pub struct Location(&'static LocConf);

/// `smart_imaging_accept_ch`: the hints to ask for, and whether to send
/// them in `Critical-CH` too.
pub struct ClientHints {
    pub value: String,
    pub critical: bool,
}

impl Location {
    /// The configuration of the request's location.
    pub fn of(req: Req<'_>) -> Location {
        Location(req.loc_conf())
    }

    /// `smart_imaging on` (and not `smart_imaging_variant_only on`): the
    /// filters convert this location's responses.
    pub fn enabled(self) -> bool {
        self.0.enabled()
    }

    /// `$smart_imaging_variant` has a value here: the module is on, or
    /// `smart_imaging_variant_only on` (a cache tier in front of a
    /// converting one, which keys on the variant and converts nothing).
    pub fn negotiates(self) -> bool {
        self.0.negotiates()
    }

    /// `smart_imaging_accept_ch`, when on and the settings use some hint.
    pub fn client_hints(self) -> Option<ClientHints> {
        let mode = self.0.location.accept_ch;
        let hints = self.0.client_hints();
        if mode == AcceptCh::Off || hints.is_empty() {
            return None;
        }
        Some(ClientHints {
            value: hints.join(", "),
            critical: mode == AcceptCh::Critical,
        })
    }

    /// `smart_imaging_ttl`, when set.
    pub fn default_ttl(self) -> Option<i64> {
        self.0.location.ttl.map(|ttl| ttl as i64)
    }

    /// `smart_imaging_buffer`
    pub fn buffer(self) -> usize {
        self.0.location.buffer
    }

    /// `smart_imaging_debug_header on`
    pub fn debug_header(self) -> bool {
        self.0.debug_header()
    }

    pub fn limits(self) -> Limits {
        self.0.limits()
    }

    /// `smart_imaging_timeout`
    pub fn timeout(self) -> ngx_msec_t {
        self.0.location.timeout_ms as ngx_msec_t
    }

    /// `smart_imaging_thread_pool`
    pub fn thread_pool(self) -> *mut ngx_thread_pool_t {
        self.0.thread_pool
    }

    /// `smart_imaging_max_jobs` and `smart_imaging_max_running`
    pub fn bounds(self) -> Bounds {
        Bounds {
            max_jobs: self.0.location.max_jobs,
            max_running: self.0.max_running(),
        }
    }

    /// `smart_imaging_stash_path` (None: off)
    pub fn stash(self) -> Option<StashDir> {
        self.0.stash.clone()
    }

    /// `smart_imaging_background on` (which needs the stash: `nginx -t`
    /// refuses it without one).
    pub fn background(self) -> bool {
        self.0.location.background && self.0.stash.is_some()
    }

    fn settings(self) -> &'static Settings {
        self.0.settings()
    }

    fn is(self, other: Location) -> bool {
        core::ptr::eq(self.0, other.0)
    }
}

/// What the module is doing with the response.
pub enum Phase {
    /// The header filter has not held the response (not yet, or it passed
    /// it over): the body filter lets the body through.
    Untouched,
    /// The header is held while the original body is collected.
    Buffering {
        /// The body so far.
        body: Vec<u8>,
        /// `smart_imaging_buffer`: more than this, and the original is sent.
        limit: usize,
        plan: Plan,
    },
    /// The complete original is with a job on the thread pool; the request
    /// waits for it.
    Transcoding {
        /// The original, shared with the job (which may outlive the request
        /// if it times out).
        held: Arc<Vec<u8>>,
        job: Posted,
        plan: Plan,
    },
    /// The job came back, or the request stopped waiting for it: the body
    /// filter sends the result when nginx resumes the request.
    Ready {
        held: Arc<Vec<u8>>,
        plan: Plan,
        /// The job's outcome and how long it ran; None when the request
        /// stopped waiting (the original is sent).
        finished: Option<(Outcome, Duration)>,
        /// The outcome came from the stash (an abandoned conversion's).
        from_stash: bool,
        report: Report,
    },
    /// The header has been passed on, changed or not.
    Done {
        report: Report,
        /// The bytes handed to nginx (converted, or the original held):
        /// owned here until the request is freed, as nginx sends them.
        #[allow(dead_code)]
        sending: Option<Arc<Vec<u8>>>,
    },
}

impl Phase {
    /// Moves the phase out, leaving `Untouched` until the caller sets the
    /// next one.
    pub fn take(&mut self) -> Phase {
        mem::replace(self, Phase::Untouched)
    }
}

/// Per-request state (see the module comment).
pub struct RequestCtx {
    /// The location the fields below were worked out for.
    pub loc: Location,
    /// The query string they were worked out from.
    args: Vec<u8>,
    /// `bfc=off`: the response goes out exactly as nginx makes it.
    pub bfc_off: bool,
    negotiation: Option<Negotiation>,
    pub phase: Phase,
}

impl RequestCtx {
    fn new(req: Req<'_>, loc: Location) -> RequestCtx {
        let args = req.args().to_vec();
        RequestCtx {
            loc,
            bfc_off: parse_url_args(&args).bfc_off,
            args,
            negotiation: None,
            phase: Phase::Untouched,
        }
    }

    /// Follows the request to the location and query string it has now,
    /// when a `rewrite` changed them since the context was made: what
    /// depends on them is worked out again if it may differ.
    fn rebase(&mut self, req: Req<'_>, loc: Location) {
        if self.args != req.args() {
            *self = RequestCtx::new(req, loc);
            return;
        }
        if !self.loc.is(loc) {
            if self.negotiation.is_some() && self.loc.settings() != loc.settings() {
                self.negotiation = None;
            }
            self.loc = loc;
        }
    }

    /// How the request negotiates: decided on first use, by the header
    /// filter or by `$smart_imaging_variant`, and kept.
    pub fn negotiation(&mut self, req: Req<'_>) -> &Negotiation {
        let loc = self.loc;
        self.negotiation.get_or_insert_with(|| {
            let settings = loc.settings();
            decide(&req.request_facts(settings.dpr_header.as_deref()), settings)
        })
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if let Phase::Transcoding { job, .. } = &self.phase {
            // Cannot happen: a request is blocked while it waits for its
            // job. Should it ever be freed anyway, the job must not come
            // back to it.
            // SAFETY: contexts are dropped on the event loop (request pool
            // cleanup). While the phase is Transcoding, neither the job's
            // completion nor its deadline has reached the request: the
            // first thing the completion callback does is leave the phase.
            unsafe { job.detach() };
        }
    }
}

/// The context of `req`, if it has one.
pub fn get<'a>(req: Req<'a>) -> Option<&'a RefCell<RequestCtx>> {
    let ctx = req.module_ctx().cast::<RefCell<RequestCtx>>();
    // SAFETY: NULL, or set by `create` to a leaked Box that the request
    // pool's cleanup frees, after the request is done with (so after `'a`).
    unsafe { ctx.as_ref() }
}

/// The context of `req`, created if it has none; None if it cannot be
/// allocated. One that has not taken the response yet (`Untouched`) follows
/// a `rewrite` that changed the request's location or query string since
/// it was made (a variable evaluated at the server level, say): the
/// negotiation is that of the request as it is served.
pub fn of<'a>(req: Req<'a>) -> Option<&'a RefCell<RequestCtx>> {
    let loc = Location::of(req);
    let Some(ctx) = get(req) else {
        return create(req, RequestCtx::new(req, loc));
    };
    {
        let mut c = ctx.borrow_mut();
        if matches!(c.phase, Phase::Untouched) {
            c.rebase(req, loc);
        }
    }
    Some(ctx)
}

fn create<'a>(req: Req<'a>, ctx: RequestCtx) -> Option<&'a RefCell<RequestCtx>> {
    let ctx = Box::into_raw(Box::new(RefCell::new(ctx)));
    // SAFETY: `drop_ctx` frees exactly this Box, once, when the request pool
    // is destroyed.
    if !unsafe { req.add_cleanup(Some(drop_ctx), ctx.cast()) } {
        // SAFETY: not registered, so still ours alone.
        drop(unsafe { Box::from_raw(ctx) });
        return None;
    }
    req.set_module_ctx(ctx.cast());
    // SAFETY: allocated above, freed only by the pool cleanup (after `'a`).
    Some(unsafe { &*ctx })
}

/// Request pool cleanup: frees the context.
unsafe extern "C" fn drop_ctx(data: *mut c_void) {
    // SAFETY: `data` is the Box leaked in `create`, dropped exactly once
    // here when the request pool is destroyed.
    let ctx = unsafe { Box::from_raw(data.cast::<RefCell<RequestCtx>>()) };
    // nginx calls this: no panic may unwind into it.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(ctx)));
}
