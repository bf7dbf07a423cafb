//! Running a transcode on an nginx thread pool, off the event loop.
//!
//! The request is paused the way nginx's copy filter pauses it for
//! `aio threads`: `r->main->blocked` keeps it alive (even if the client goes
//! away), `r->aio` keeps `ngx_http_writer` from driving the filters, and the
//! completion event, run back on the event loop, undoes both and resumes the
//! request through its write handler.
//!
//! A job that outlasts its deadline (`smart_imaging_timeout`, capped below
//! `send_timeout`) is *abandoned*: the deadline timer resumes the request,
//! which serves the original, while the job, which cannot be cancelled,
//! keeps running on its pool thread. So that it may outlive the request,
//! nothing the job or its completion touch lives in the request pool: the
//! [`Slot`] (thread task, deadline timer, job) is allocated with the global
//! allocator, and freed by the completion handler, which leaves the request
//! alone when the slot says it was abandoned. Only the event loop thread
//! reads or writes the slot's `r` (post, deadline, completion, request
//! cleanup); the pool thread touches only the [`Job`].
//!
//! This module knows nothing of the filters: whoever posts a job passes the
//! function ([`OnDone`]) that gets its [`Completion`] on the event loop,
//! just before the request is resumed.

use core::ffi::c_void;
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ngx::ffi::{
    ngx_add_timer, ngx_cycle, ngx_del_timer, ngx_event_t, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_log_t, ngx_msec_t, ngx_thread_pool_t, ngx_thread_task_post,
    ngx_thread_task_t, NGX_LOG_INFO, NGX_OK,
};
use ngx::ngx_log_error;
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

use crate::http::Req;

/// Transcodes this worker has queued or running, abandoned ones included
/// (they still hold a thread or a queue place, and memory). Only the event
/// loop thread changes it (on post and on completion), so it is a plain
/// per-process count.
static JOBS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub fn jobs_in_flight() -> usize {
    JOBS_IN_FLIGHT.load(Ordering::Relaxed)
}

/// One transcode. Owned by the pool thread between post and completion,
/// and by the event loop otherwise.
pub struct Job {
    /// The original body, shared with the request, which serves it if the
    /// job fails or times out.
    pub input: Arc<Vec<u8>>,
    pub plan: Plan,
    pub limits: Limits,
    pub outcome: Option<Outcome>,
    pub elapsed: Duration,
}

/// How long a request waits for its job, counted from the post (so time in
/// the pool's queue counts).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// The wait, in milliseconds.
    pub ms: ngx_msec_t,
    /// `smart_imaging_timeout`.
    pub configured: ngx_msec_t,
    /// The location's `send_timeout`, when it (90 % of it) is the bound.
    pub send_timeout: Option<ngx_msec_t>,
}

impl Deadline {
    /// `smart_imaging_timeout`, but never as long as `send_timeout`: while
    /// the request waits, nginx runs the `send_timeout` timer on the
    /// client's connection, and closes it when that expires. 90 % of it
    /// leaves time to send the original.
    pub fn new(configured: ngx_msec_t, send_timeout: ngx_msec_t) -> Deadline {
        let cap = send_timeout / 10 * 9 + send_timeout % 10 * 9 / 10;
        if send_timeout > 0 && cap < configured {
            Deadline {
                ms: cap.max(1),
                configured,
                send_timeout: Some(send_timeout),
            }
        } else {
            Deadline {
                ms: configured,
                configured,
                send_timeout: None,
            }
        }
    }

    /// Why the request stopped waiting, for the error log.
    pub fn reason(&self) -> String {
        match self.send_timeout {
            None => format!(
                "conversion took longer than smart_imaging_timeout {}",
                format_msec(self.configured)
            ),
            Some(st) => format!(
                "conversion took longer than {} (90% of send_timeout {}, under smart_imaging_timeout {})",
                format_msec(self.ms),
                format_msec(st),
                format_msec(self.configured)
            ),
        }
    }
}

/// `10s`, `200ms`: a time the way nginx's configuration writes it.
pub fn format_msec(ms: ngx_msec_t) -> String {
    if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// How a job ended for the request that waited for it.
pub enum Completion {
    /// The pool thread finished the job.
    Finished(Job),
    /// The request waited `waited`, past `deadline`: it stops waiting and
    /// serves the original; the job runs on, its result will be discarded.
    TimedOut {
        waited: Duration,
        deadline: Deadline,
    },
}

/// Called on the event loop with the request a job was posted for (still
/// waiting for it) and how the job ended; the request is resumed right
/// after. A panic here is caught: the request is then ended with an error.
pub type OnDone = for<'r> fn(Req<'r>, Completion);

/// A posted job and what the event loop needs to finish it. Allocated with
/// the global allocator (not in the request pool: it may outlive the
/// request), freed by `job_done`. `#[repr(C)]` with the task first: nginx's
/// debug logging of the deadline timer reads `ev->data` as a connection
/// (its `fd`), which must stay inside this allocation.
#[repr(C)]
struct Slot {
    task: ngx_thread_task_t,
    deadline: ngx_event_t,
    /// The waiting request; null once it stopped waiting. Event loop only.
    r: *mut ngx_http_request_t,
    /// Owned by the pool thread until `job_done`.
    job: *mut Job,
    posted: Instant,
    limit: Deadline,
    on_done: OnDone,
}

/// A posted job, as the request waiting for it holds it: what it needs to
/// stop waiting should it be freed first ([`Posted::detach`]).
#[derive(Debug)]
pub struct Posted(*mut Slot);

/// Why a job could not be posted; the original is served instead.
#[derive(Debug)]
pub enum PostError {
    Overloaded(usize),
    QueueFull,
}

/// Posts `job` for request `req`. On success the request is paused until
/// the job completes or the deadline passes, then `on_done` is called and
/// the request resumed; on failure the job is handed back.
///
/// # Safety
/// `req` must be a main request; `pool` a thread pool from configuration.
pub unsafe fn post(
    req: Req<'_>,
    pool: *mut ngx_thread_pool_t,
    max_jobs: usize,
    job: Box<Job>,
    limit: Deadline,
    on_done: OnDone,
) -> Result<Posted, (Box<Job>, PostError)> {
    let r = req.as_ptr();
    let in_flight = jobs_in_flight();
    if in_flight >= max_jobs {
        return Err((job, PostError::Overloaded(in_flight)));
    }
    let job = Box::into_raw(job);
    let slot = Box::into_raw(Box::new(Slot {
        // SAFETY: plain C structs, for which all-zero is their initial
        // state (nginx allocates them with ngx_pcalloc).
        task: unsafe { core::mem::zeroed() },
        // SAFETY: as above.
        deadline: unsafe { core::mem::zeroed() },
        r,
        job,
        posted: Instant::now(),
        limit,
        on_done,
    }));
    // SAFETY: `slot` is ours until posted. The pool thread gets `job` as its
    // `ctx`; the completion event and the timer get the slot.
    unsafe {
        (*slot).task.ctx = job.cast();
        (*slot).task.handler = Some(run_job);
        (*slot).task.event.handler = Some(job_done);
        (*slot).task.event.data = slot.cast();
        (*slot).deadline.handler = Some(job_deadline);
        (*slot).deadline.data = slot.cast();
        // The cycle's log outlives any request.
        (*slot).deadline.log = (*ngx_cycle).log;
    }
    // SAFETY: `pool` comes from ngx_thread_pool_add and is live in a worker;
    // the task is valid until `job_done` frees it.
    if unsafe { ngx_thread_task_post(pool, ptr::addr_of_mut!((*slot).task)) } != NGX_OK as isize {
        // SAFETY: the task was not queued, so we still own slot and job.
        let job = unsafe {
            drop(Box::from_raw(slot));
            Box::from_raw(job)
        };
        return Err((job, PostError::QueueFull));
    }
    JOBS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `r` is valid; see the module comment for the protocol. The
    // timer lives in the slot, which outlives it (deleted or fired before
    // the slot is freed).
    unsafe {
        ngx_add_timer(ptr::addr_of_mut!((*slot).deadline), limit.ms);
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() + 1);
        (*r).set_aio(1);
    }
    Ok(Posted(slot))
}

impl Posted {
    /// The request no longer waits (it is being freed): whatever happens to
    /// the job, leave the request alone.
    ///
    /// # Safety
    /// On the event loop thread, before the job's completion (`on_done`) or
    /// deadline has reached the request.
    pub unsafe fn detach(&self) {
        let slot = self.0;
        // SAFETY: the slot is alive until `job_done`, which has not run; only
        // the event loop touches `r` and the timer.
        unsafe {
            (*slot).r = ptr::null_mut();
            if (*slot).deadline.timer_set() != 0 {
                ngx_del_timer(ptr::addr_of_mut!((*slot).deadline));
            }
        }
    }
}

/// Runs on a pool thread: only touches the job, never nginx structures.
unsafe extern "C" fn run_job(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: `data` is the job posted in `post`; it is owned by this thread
    // until the completion event runs.
    let job = unsafe { &mut *data.cast::<Job>() };
    let start = Instant::now();
    // transcode() catches its own panics; this is the last line of defence
    // so no panic can unwind into nginx's thread code.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        transcode(&job.input, &job.plan, &job.limits)
    }))
    .unwrap_or_else(|_| Outcome::Original(KeepReason::Panic("panic in transcode".into())));
    job.outcome = Some(outcome);
    job.elapsed = start.elapsed();
}

/// Completion, on the event loop: hand the result to the request and resume
/// it, or, if the request stopped waiting, discard it. Frees the slot.
unsafe extern "C" fn job_done(ev: *mut ngx_event_t) {
    // SAFETY: `data` is the slot of `post`; the pool thread is done with the
    // task and the job, and ngx_thread_pool_handler() does not touch the
    // task after calling us, so both are ours to free.
    let (slot, job) = unsafe {
        let slot = Box::from_raw((*ev).data.cast::<Slot>());
        let job = Box::from_raw(slot.job);
        (slot, job)
    };
    JOBS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    let mut slot = slot;
    if slot.deadline.timer_set() != 0 {
        // SAFETY: armed in `post`, still in the timer tree.
        unsafe { ngx_del_timer(&mut slot.deadline) };
    }
    let r = slot.r;
    let waited = slot.posted.elapsed();
    let on_done = slot.on_done;
    drop(slot);
    if r.is_null() {
        // SAFETY: the cycle's log is valid in a worker.
        unsafe {
            ngx_log_error!(
                NGX_LOG_INFO,
                (*ngx_cycle).log,
                "smart_imaging: abandoned conversion finished after {:.1} ms (ran {:.1} ms), result discarded",
                waited.as_secs_f64() * 1000.0,
                job.elapsed.as_secs_f64() * 1000.0
            );
        }
        return;
    }
    // SAFETY: the request is alive (blocked) and waiting for this job; we
    // are on the event loop.
    let req = unsafe { Req::new(r) };
    let finished = catch_unwind(AssertUnwindSafe(|| {
        on_done(req, Completion::Finished(*job))
    }));
    // SAFETY: as above.
    unsafe { resume(r, finished.is_ok()) };
}

/// The deadline, on the event loop: stop waiting, let the request serve the
/// original. The job keeps running; `job_done` will discard it.
unsafe extern "C" fn job_deadline(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the timer event armed in `post`.
    let slot = unsafe { (*ev).data.cast::<Slot>() };
    // SAFETY: the timer is deleted before the slot is freed (`job_done`) and
    // when the request goes (`detach`), so both are alive here; only the
    // event loop touches these fields.
    let (r, waited, deadline, on_done) = unsafe {
        let r = (*slot).r;
        (*slot).r = ptr::null_mut();
        (r, (*slot).posted.elapsed(), (*slot).limit, (*slot).on_done)
    };
    if r.is_null() {
        return;
    }
    // SAFETY: the request is alive (still blocked by us); we are on the
    // event loop.
    let req = unsafe { Req::new(r) };
    let stopped = catch_unwind(AssertUnwindSafe(|| {
        on_done(req, Completion::TimedOut { waited, deadline })
    }));
    // SAFETY: as above.
    unsafe { resume(r, stopped.is_ok()) };
}

/// Unblocks `r` and runs its write handler, which sends the result.
///
/// # Safety
/// `r` must be the request blocked in `post`, on the event loop thread.
unsafe fn resume(r: *mut ngx_http_request_t, ok: bool) {
    // SAFETY: `r` and its connection are valid; this mirrors
    // ngx_http_copy_thread_event_handler().
    unsafe {
        let c = (*r).connection;
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() - 1);
        (*r).set_aio(0);
        if !ok {
            // The context is in an unknown state: end the request rather
            // than send something broken.
            (*c).set_error(1);
        }
        // The field exists with HTTP/2 or --with-compat (which the module
        // needs to load into a binary built with other features).
        #[cfg(any(ngx_feature = "http_v2", ngx_feature = "compat"))]
        if !(*r).stream.is_null() {
            // HTTP/2: make sure the stream's write handler runs again.
            (*(*c).write).set_ready(1);
            (*(*c).write).set_active(0);
        }
        if (*r).done() != 0 {
            if let Some(handler) = (*(*c).write).handler {
                handler((*c).write);
            }
        } else {
            if let Some(handler) = (*r).write_event_handler {
                handler(r);
            }
            ngx_http_run_posted_requests(c);
        }
    }
}
