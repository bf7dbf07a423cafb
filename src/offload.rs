//! Running a transcode on an nginx thread pool, off the event loop.
//!
//! The request is paused the way nginx's copy filter pauses it for
//! `aio threads`: `r->main->blocked` keeps it alive (even if the client goes
//! away), `r->aio` keeps `ngx_http_writer` from driving the filters, and the
//! completion event, run back on the event loop, undoes both and resumes the
//! request through its write handler.

use core::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ngx::ffi::{
    ngx_event_t, ngx_http_request_t, ngx_http_run_posted_requests, ngx_log_t, ngx_thread_pool_t,
    ngx_thread_task_alloc, ngx_thread_task_post, NGX_OK,
};
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

use crate::filter;

/// Transcodes this worker has queued or running. Only the event loop thread
/// changes it (on post and on completion), so it is a plain per-process count.
static JOBS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub fn jobs_in_flight() -> usize {
    JOBS_IN_FLIGHT.load(Ordering::Relaxed)
}

/// One transcode. Owned by the pool thread between post and completion,
/// and by the request context otherwise.
pub struct Job {
    pub input: Vec<u8>,
    pub plan: Plan,
    pub limits: Limits,
    pub outcome: Option<Outcome>,
    pub elapsed: Duration,
}

/// Why a job could not be posted; the original is served instead.
#[derive(Debug)]
pub enum PostError {
    Overloaded(usize),
    Alloc,
    QueueFull,
}

/// Posts `job` for request `r`. On success the request is paused until
/// `job_done` resumes it; on failure the job is handed back.
///
/// # Safety
/// `r` must be a valid main request; `pool` a thread pool from configuration.
pub unsafe fn post(
    r: *mut ngx_http_request_t,
    pool: *mut ngx_thread_pool_t,
    max_jobs: usize,
    job: Box<Job>,
) -> Result<*mut Job, (Box<Job>, PostError)> {
    let in_flight = jobs_in_flight();
    if in_flight >= max_jobs {
        return Err((job, PostError::Overloaded(in_flight)));
    }
    // SAFETY: the task and its context slot live in the request pool, which
    // outlives the task because the request is blocked until completion.
    let task = unsafe { ngx_thread_task_alloc((*r).pool, size_of::<*mut Job>()) };
    if task.is_null() {
        return Err((job, PostError::Alloc));
    }
    let job = Box::into_raw(job);
    // SAFETY: `task` is freshly allocated and zeroed; `ctx` has room for a pointer.
    unsafe {
        (*task).ctx.cast::<*mut Job>().write(job);
        (*task).handler = Some(run_job);
        (*task).event.handler = Some(job_done);
        (*task).event.data = r.cast();
    }
    // SAFETY: `pool` comes from ngx_thread_pool_add and is live in a worker.
    if unsafe { ngx_thread_task_post(pool, task) } != NGX_OK as isize {
        // SAFETY: the task was not queued, so we still own the job.
        return Err((unsafe { Box::from_raw(job) }, PostError::QueueFull));
    }
    JOBS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `r` is valid; see the module comment for the protocol.
    unsafe {
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() + 1);
        (*r).set_aio(1);
    }
    Ok(job)
}

/// Runs on a pool thread: only touches the job, never nginx structures.
unsafe extern "C" fn run_job(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: `data` is the task context written in `post`; the job is owned
    // by this thread until the completion event runs.
    let job = unsafe { &mut **data.cast::<*mut Job>() };
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

/// Completion, on the event loop: hand the result to the request and resume it.
unsafe extern "C" fn job_done(ev: *mut ngx_event_t) {
    // SAFETY: `data` was set to the request in `post`; the request is still
    // allocated because it is blocked.
    let r = unsafe { (*ev).data.cast::<ngx_http_request_t>() };
    JOBS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    let finished = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the thread has finished with the job: give it back.
        unsafe { filter::job_finished(r) }
    }));
    // SAFETY: `r` and its connection are valid; this mirrors
    // ngx_http_copy_thread_event_handler().
    unsafe {
        let c = (*r).connection;
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() - 1);
        (*r).set_aio(0);
        if finished.is_err() {
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
