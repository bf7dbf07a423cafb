//! The body filter: collects the body of a response whose header is held,
//! has it converted on the thread pool ([`crate::offload`]), then sends the
//! result (see [`crate::ctx`] for the phases).
//!
//! With `smart_imaging_background on` the request waits only for a look in
//! the stash: the result found there, or else the original at once
//! (`deferred`), its conversion posted to run without the request, into
//! the stash, for the next requests.
//!
//! Whatever goes wrong after the header was held, the original headers and
//! bytes are sent: a client never sees a failure caused by this module.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use ngx::ffi::{
    ngx_chain_t, ngx_http_request_t, ngx_int_t, NGX_AGAIN, NGX_ERROR, NGX_LOG_ALERT, NGX_LOG_INFO,
    NGX_LOG_WARN, NGX_OK,
};
use smart_imaging_core::{sniff, KeepReason, Outcome};

use crate::ctx::Location;
use crate::ctx::{self, Phase, RequestCtx};
use crate::http::{Chain, Req};
use crate::offload::{self, Completion, Deadline, Job, Kind, PostError};
use crate::result::{self, Kept, Report};
use crate::send::{self, next_body, next_header};
use crate::variables;

/// Our bit in `c->buffered` while a transcode is pending: tells
/// `ngx_http_finalize_request` that the response is not complete yet
/// (the same value `ngx_http_image_filter_module` uses).
const SMART_IMAGING_BUFFERED: u32 = 0x08;

/// What the body filter does once the context is up to date (it is not
/// borrowed while nginx's next filters run).
enum Output<'a> {
    /// Returns this code.
    Return(ngx_int_t),
    /// Passes the chain on as it came.
    Pass(Chain<'a>),
    /// Passes the held header on, then `body` (the last of the response if
    /// `last`) followed by `rest`. The context's `Done` phase holds `body`
    /// too, until the request is freed.
    Respond {
        body: Arc<Vec<u8>>,
        last: bool,
        rest: Chain<'a>,
    },
}

/// The body filter nginx calls.
pub unsafe extern "C" fn body_filter(
    r: *mut ngx_http_request_t,
    chain: *mut ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx calls body filters with a valid request and a valid
    // chain (or NULL), on the event loop, for the duration of the call.
    let (req, chain) = unsafe { (Req::new(r), Chain::new(chain)) };
    match catch_unwind(AssertUnwindSafe(|| filter_body(req, chain))) {
        Ok(rc) => rc,
        Err(_) => {
            req.log(
                NGX_LOG_ALERT,
                format_args!("smart_imaging: panic in body filter"),
            );
            NGX_ERROR as ngx_int_t
        }
    }
}

fn filter_body(req: Req<'_>, chain: Chain<'_>) -> ngx_int_t {
    // A HEAD the module turned into a GET, whose header has gone out
    // header-only: the body the GET still produces (an upstream's, read on
    // after a held header was sent as the original) must not follow it on
    // the wire, where the client would read it as its next response.
    if req.header_only() && req.head_turned_into_get() {
        chain.consume();
        return NGX_OK as ngx_int_t;
    }
    let Some(ctx) = ctx::get(req) else {
        return next_body(req, chain);
    };
    let output = step(req, &mut ctx.borrow_mut(), chain);
    match output {
        Output::Return(rc) => rc,
        Output::Pass(chain) => next_body(req, chain),
        Output::Respond { body, last, rest } => respond(req, &body, last, rest),
    }
}

/// Moves the context on with `chain`, and says what to pass on.
fn step<'a>(req: Req<'a>, ctx: &mut RequestCtx, chain: Chain<'a>) -> Output<'a> {
    match &mut ctx.phase {
        Phase::Untouched | Phase::Done { .. } => Output::Pass(chain),
        Phase::Buffering { body, limit, .. } => match collect(req, body, *limit, chain) {
            Collected::More => Output::Return(NGX_OK as ngx_int_t),
            Collected::All => start_transcode(req, ctx),
            Collected::Stop {
                report,
                complete,
                rest,
            } => {
                let Phase::Buffering { body, .. } = ctx.phase.take() else {
                    unreachable!("matched above")
                };
                variables::forget_result(req);
                send_response(req, ctx, report, Arc::new(body), complete, rest)
            }
        },
        Phase::Transcoding { .. } => {
            chain.consume();
            Output::Return(NGX_AGAIN as ngx_int_t)
        }
        Phase::Ready { .. } => send_result(req, ctx),
    }
}

/// Where collecting the body got to.
enum Collected<'a> {
    /// Not all of it yet.
    More,
    /// All of it, and it looks like an image.
    All,
    /// The original is to be sent (`report` says why): what was collected
    /// (the whole body if `complete`), then `rest`.
    Stop {
        report: Report,
        complete: bool,
        rest: Chain<'a>,
    },
}

/// Adds the bytes of `chain` to `body`, marking them sent.
fn collect<'a>(req: Req<'a>, body: &mut Vec<u8>, limit: usize, chain: Chain<'a>) -> Collected<'a> {
    let mut complete = false;
    for link in chain.links() {
        if link.has_file_data() {
            req.log(
                NGX_LOG_WARN,
                format_args!("smart_imaging: body arrived in a file buffer, serving original"),
            );
            let report = Report::kept(result::FILE_BUFFER, req.content_length());
            return Collected::Stop {
                report,
                complete,
                rest: link.rest(),
            };
        }
        let bytes = link.bytes();
        if body.len() + bytes.len() > limit {
            req.log(
                NGX_LOG_INFO,
                format_args!(
                    "smart_imaging: body is over smart_imaging_buffer ({limit} bytes), serving original"
                ),
            );
            let report = Report::Kept(Kept {
                buffer: Some(limit),
                ..Kept::new(result::TOO_BIG, req.content_length())
            });
            return Collected::Stop {
                report,
                complete,
                rest: link.rest(),
            };
        }
        if !bytes.is_empty() {
            body.extend_from_slice(bytes);
            link.consume();
        }
        if link.is_last() {
            complete = true;
        }
    }

    // Don't hold a large body that is not an image at all.
    let decided = body.len() >= 8 || complete;
    if decided && sniff(body).is_none() {
        req.log(
            NGX_LOG_WARN,
            format_args!(
                "smart_imaging: {} (Content-Type says image), serving original",
                KeepReason::NotAnImage
            ),
        );
        let input = if complete {
            Some(body.len())
        } else {
            req.content_length()
        };
        return Collected::Stop {
            report: Report::kept(KeepReason::NotAnImage.code(), input),
            complete,
            rest: Chain::empty(),
        };
    }
    if complete {
        Collected::All
    } else {
        Collected::More
    }
}

/// The whole body is in: posts its conversion, or sends the original.
fn start_transcode<'a>(req: Req<'a>, ctx: &mut RequestCtx) -> Output<'a> {
    let Phase::Buffering { body, plan, .. } = ctx.phase.take() else {
        unreachable!("called while buffering")
    };
    let loc = ctx.loc;
    let held = Arc::new(body);
    let job = Box::new(match loc.stash().filter(|_| loc.background()) {
        // smart_imaging_background on: wait for the stash only.
        Some(stash) => Job::lookup(Arc::clone(&held), plan.clone(), loc.limits(), stash),
        None => Job::new(Arc::clone(&held), plan.clone(), loc.limits(), loc.stash()),
    });
    let deadline = Deadline::new(loc.timeout(), req.send_timeout());
    // SAFETY: only main requests are held; the pool is the location's
    // (named, or the default one registered when the module is enabled).
    let posted = unsafe {
        offload::post(
            req,
            loc.thread_pool(),
            loc.bounds(),
            job,
            deadline,
            on_job_done,
        )
    };
    match posted {
        Ok(job) => {
            ctx.phase = Phase::Transcoding { held, job, plan };
            req.set_buffered(SMART_IMAGING_BUFFERED, true);
            Output::Return(NGX_AGAIN as ngx_int_t)
        }
        Err((job, why)) => {
            drop(job);
            variables::forget_result(req);
            let report = busy(req, why, held.len());
            send_response(req, ctx, report, held, true, Chain::empty())
        }
    }
}

/// The original is served at once because a conversion could not be
/// posted: the `busy` report, and a `warn` line saying why.
fn busy(req: Req<'_>, why: PostError, input: usize) -> Report {
    let mut kept = Kept::new(result::BUSY, Some(input));
    let why = match why {
        PostError::Overloaded(n) => {
            kept.jobs = Some(n);
            format!("{n} transcodes in progress (smart_imaging_max_jobs)")
        }
        PostError::QueueFull => "the thread pool queue is full".to_string(),
        PostError::NoMemory => "no memory to queue the conversion".to_string(),
        PostError::InFlight => "the conversion is already running".to_string(),
        PostError::WouldWait {
            predicted_ms,
            deadline_ms,
            queued,
            running,
        } => {
            kept.jobs = Some(queued + running);
            format!(
                "{running} transcodes running and {queued} queued would keep it waiting about {predicted_ms:.0} ms, too close to its deadline of {deadline_ms} ms"
            )
        }
    };
    req.log(
        NGX_LOG_WARN,
        format_args!("smart_imaging: {why}, serving original"),
    );
    Report::Kept(kept)
}

/// The request waited `waited` for a conversion that will not serve it
/// (`reason`: `timeout` or `busy`, because `why`): the `warn` line, and
/// the report of the original it gets instead.
fn not_converted(
    req: Req<'_>,
    reason: &'static str,
    waited: Duration,
    why: &str,
    input: usize,
) -> Report {
    req.log(
        NGX_LOG_WARN,
        format_args!(
            "smart_imaging: \"{}\" not converted ({:.1} ms): {why}, serving original",
            String::from_utf8_lossy(req.uri()),
            waited.as_secs_f64() * 1000.0,
        ),
    );
    Report::Kept(Kept {
        elapsed: Some(waited),
        ..Kept::new(reason, Some(input))
    })
}

/// `smart_imaging_background on`, and the stash has no result for `lookup`
/// (which waited `lookup.elapsed`): the conversion is posted to run without
/// the request (unless this worker already runs it, or has no room for
/// it: `busy`), and the original stands in (`deferred`).
fn defer(req: Req<'_>, loc: Location, lookup: Job) -> Report {
    let uri = String::from_utf8_lossy(req.uri()).into_owned();
    let waited = lookup.elapsed;
    let input = lookup.input.len();
    let job = Box::new(lookup.into_background(uri.clone()));
    // SAFETY: on the event loop; the location's pool, as for every job.
    let posted = unsafe { offload::post_detached(req, loc.thread_pool(), loc.bounds(), job) };
    let how = match posted {
        Ok(()) => "converting it in the background",
        Err((_, PostError::InFlight)) => "already being converted in the background",
        Err((job, why)) => {
            drop(job);
            return busy(req, why, input);
        }
    };
    req.log(
        NGX_LOG_INFO,
        format_args!(
            "smart_imaging: \"{}\" deferred ({:.1} ms): {}, serving original",
            uri,
            waited.as_secs_f64() * 1000.0,
            how
        ),
    );
    Report::Kept(Kept {
        elapsed: Some(waited),
        ..Kept::new(result::DEFERRED, Some(input))
    })
}

/// The job's completion ([`offload::OnDone`]), on the event loop: keeps its
/// outcome (or, past the deadline, that the original is to be sent) for
/// the body filter, which nginx runs next.
fn on_job_done(req: Req<'_>, completion: Completion) {
    let ctx = ctx::get(req).expect("a request waiting for its job has a context");
    let ctx = &mut *ctx.borrow_mut();
    // First leave Transcoding: the job no longer belongs to the request.
    let Phase::Transcoding { held, plan, .. } = ctx.phase.take() else {
        panic!("job completed for a request that is not waiting for one")
    };
    variables::forget_result(req);
    req.set_buffered(SMART_IMAGING_BUFFERED, false);
    let (finished, report, from_stash) = match completion {
        Completion::Finished(job) => {
            let job = *job;
            if let Some(why) = &job.stash_error {
                req.log(NGX_LOG_WARN, format_args!("smart_imaging: {why}"));
            }
            if job.kind == Kind::Lookup && job.outcome.is_none() {
                let report = defer(req, ctx.loc, job);
                ctx.phase = Phase::Ready {
                    held,
                    plan,
                    finished: None,
                    from_stash: false,
                    report,
                };
                return;
            }
            let mut report =
                Report::from_outcome(job.outcome.as_ref(), job.input.len(), job.elapsed);
            match &mut report {
                Report::Converted { stashed, .. } => *stashed = job.from_stash,
                Report::Kept(kept) => kept.stashed = job.from_stash,
            }
            (
                job.outcome.map(|outcome| (outcome, job.elapsed)),
                report,
                job.from_stash,
            )
        }
        Completion::TimedOut { waited, deadline } => {
            let report =
                not_converted(req, result::TIMEOUT, waited, &deadline.reason(), held.len());
            (None, report, false)
        }
        Completion::Late {
            waited,
            predicted_ms,
            left_ms,
        } => {
            let why = format!(
                "the conversions ahead and its own would take about {predicted_ms:.0} ms, {left_ms:.0} ms before its deadline"
            );
            let report = not_converted(req, result::BUSY, waited, &why, held.len());
            (None, report, false)
        }
        Completion::Refused => {
            req.log(
                NGX_LOG_WARN,
                format_args!("smart_imaging: the thread pool queue is full, serving original"),
            );
            (None, Report::kept(result::BUSY, Some(held.len())), false)
        }
        Completion::Dropped { waited } => {
            // nginx is ending the request: nothing more is sent.
            let report = Report::Kept(Kept {
                elapsed: Some(waited),
                ..Kept::new(result::DROPPED, Some(held.len()))
            });
            ctx.phase = Phase::Done {
                report,
                sending: None,
            };
            return;
        }
    };
    ctx.phase = Phase::Ready {
        held,
        plan,
        finished,
        from_stash,
        report,
    };
}

/// Sends what the job made, or the original.
fn send_result<'a>(req: Req<'a>, ctx: &mut RequestCtx) -> Output<'a> {
    let Phase::Ready {
        held,
        plan,
        finished,
        from_stash,
        report,
    } = ctx.phase.take()
    else {
        unreachable!("called when ready")
    };
    let uri = String::from_utf8_lossy(req.uri());
    match finished {
        Some((Outcome::Converted(converted), elapsed)) => {
            req.log(
                NGX_LOG_INFO,
                format_args!(
                    "smart_imaging: \"{}\" converted to {}: {} -> {} bytes in {:.1} ms{}",
                    uri,
                    converted.format.name(),
                    held.len(),
                    converted.bytes.len(),
                    elapsed.as_secs_f64() * 1000.0,
                    if from_stash { ", from the stash" } else { "" }
                ),
            );
            req.set_content_type(converted.format.mime());
            req.set_content_length(converted.bytes.len());
            req.set_variant_etag(&plan.variant());
            send_response(
                req,
                ctx,
                report,
                Arc::new(converted.bytes),
                true,
                Chain::empty(),
            )
        }
        Some((Outcome::Original(reason), elapsed)) => {
            let level = match reason {
                // Expected outcomes, not failures (KeepReason::is_failure).
                KeepReason::NotSmaller { .. }
                | KeepReason::NotComparable { .. }
                | KeepReason::TooMuchWork { .. } => NGX_LOG_INFO,
                // nginx is stopping (the line is seldom written: the
                // worker exits without running the completion).
                KeepReason::Stopped => NGX_LOG_INFO,
                // The client went away: nothing is sent to anyone.
                KeepReason::Cancelled => NGX_LOG_INFO,
                KeepReason::Panic(_) => NGX_LOG_ALERT,
                _ => NGX_LOG_WARN,
            };
            req.log(
                level,
                format_args!(
                    "smart_imaging: \"{}\" not converted ({:.1} ms): {}, serving original{}",
                    uri,
                    elapsed.as_secs_f64() * 1000.0,
                    reason,
                    if from_stash { " (from the stash)" } else { "" }
                ),
            );
            send_response(req, ctx, report, held, true, Chain::empty())
        }
        None => send_response(req, ctx, report, held, true, Chain::empty()),
    }
}

/// Ends the context with `report` (in `X-Smart-Imaging` if asked for; an
/// original served because of load marked not to be cached): the held
/// header (as it now is) and `body` go out next, `body` kept alive in the
/// `Done` phase.
fn send_response<'a>(
    req: Req<'a>,
    ctx: &mut RequestCtx,
    report: Report,
    body: Arc<Vec<u8>>,
    last: bool,
    rest: Chain<'a>,
) -> Output<'a> {
    send::add_debug_header(req, ctx.loc, &report);
    let stored = send::forbid_storing_fallback(req, &report);
    ctx.phase = Phase::Done {
        report,
        sending: Some(Arc::clone(&body)),
    };
    if !stored {
        // Better no response than a fallback a cache would keep as the
        // variant (an allocation failure: nginx fails the request too).
        req.log(
            NGX_LOG_ALERT,
            format_args!("smart_imaging: could not mark the original not to be cached"),
        );
        return Output::Return(NGX_ERROR as ngx_int_t);
    }
    Output::Respond { body, last, rest }
}

/// Passes the held header on, then `body` and `rest`.
fn respond(req: Req<'_>, body: &[u8], last: bool, rest: Chain<'_>) -> ngx_int_t {
    let rc = next_header(req);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t {
        return rc;
    }
    if req.header_only() {
        // A HEAD (served as a GET): no body follows its header. What came
        // with the chain is done with all the same, or an upstream would
        // wait for its buffers to be sent, and stall.
        rest.consume();
        return rc;
    }
    if body.is_empty() && !last {
        return next_body(req, rest);
    }
    // SAFETY: the context's Done phase holds `body` until the request is
    // freed (`Output::Respond`).
    unsafe { send::send_bytes(req, body, last, rest) }
}
