//! Running a transcode on an nginx thread pool, off the event loop.
//!
//! The request is paused the way nginx's copy filter pauses it for
//! `aio threads`: `r->main->blocked` keeps it alive (even if the client goes
//! away), `r->aio` keeps `ngx_http_writer` from driving the filters, and the
//! completion event, run back on the event loop, undoes both and resumes the
//! request through its write handler.
//!
//! **The queue.** At most `smart_imaging_max_running` jobs of a worker are
//! on the thread pool at once (its CPUs, by default): more would only make
//! each one slower, so that most outlast their deadline and are wasted.
//! The others wait in this worker's FIFO, here, on the event loop (no lock:
//! only the event loop thread touches it), and are posted as running ones
//! complete. `smart_imaging_max_jobs` bounds queued + running. A request
//! that would wait longer than its deadline is not queued at all: from how
//! long this worker's conversions have run lately ([`recent_run`]), the
//! wait for the jobs ahead of it plus its own is predicted, and if that is
//! over `smart_imaging_timeout` the original is served at once (`busy`):
//! under overload clients get originals without waiting, and no CPU goes
//! to conversions that would only be abandoned. A queued job
//! whose request gives up (its deadline passes, or the request ends: the
//! client closed the connection) leaves the queue and never runs: the
//! request's cleanup ([`Waiter`]) tells us. A *running* job whose request
//! ends that way is cancelled ([`smart_imaging_core::stop::Cancel`]): it
//! gives up at its next step (between the guard's encodes at least), so
//! that clients that hang up take their work with them instead of holding
//! the pool for requests that are still there. Every change of the running
//! count or the queue goes through `add_running`, `enqueue`, `unqueue` or
//! `pump`, which publish both to `smart_imaging_status` (its
//! `smart_imaging_conversions_running` and `_queued` gauges, see
//! [`crate::metrics`]).
//!
//! **Abandoned jobs.** A running job that outlasts its deadline
//! (`smart_imaging_timeout`, capped below `send_timeout`, counted from when
//! the request started waiting, queue included) is *abandoned*: the
//! deadline timer resumes the request, which serves the original, while the
//! job, which cannot be cancelled, keeps running on its pool thread. Its
//! result is not thrown away: it goes to the stash ([`crate::stash`]),
//! written by a pool thread, where the next job for the same image and
//! variant finds it before converting. So that it may outlive the request,
//! nothing the job or its completion touch lives in the request pool: the
//! [`Slot`] (thread task, deadline timer, job) is allocated with the global
//! allocator, and freed by the completion handler, which leaves the request
//! alone when the slot says it was abandoned. Only the event loop thread
//! reads or writes the slot's `r` (post, deadline, completion, request
//! cleanup); the pool thread touches only the [`Job`].
//!
//! After each job the pool thread hands freed memory back to the system
//! (glibc's `malloc_trim`): a conversion's pixel buffers are large, and
//! glibc would otherwise keep them in the thread's arena.
//!
//! **Background jobs** (`smart_imaging_background on`). The request first
//! waits for a quick [`Kind::Lookup`] job, posted straight to the thread
//! pool (not queued here, not counted under `smart_imaging_max_running` or
//! `smart_imaging_max_jobs`: it hashes the body and reads a file). On a
//! miss, the request serves the original at once and its conversion is
//! posted *detached* ([`post_detached`], [`Kind::Background`]): queued and
//! counted like any conversion, but with no request, no deadline and no
//! cleanup to watch; its result goes to the stash as an abandoned one's
//! does. A worker keeps the stash keys of its background jobs, from the
//! post until their result is written ([`in_flight`]), so that concurrent
//! first requests for one image and variant start one conversion; two
//! workers may each run one (they do not share the set).
//!
//! This module knows nothing of the filters: whoever posts a job passes the
//! function ([`OnDone`]) that gets its [`Completion`] on the event loop,
//! just before the request is resumed.

use core::cell::{Cell, RefCell};
use core::ffi::c_void;
use core::ptr;
use std::collections::{HashSet, VecDeque};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ngx::ffi::{
    ngx_add_timer, ngx_cycle, ngx_del_timer, ngx_event_t, ngx_http_cleanup_add, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_log_t, ngx_msec_t, ngx_thread_pool_t, ngx_thread_task_post,
    ngx_thread_task_t, NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::ngx_log_error;
use smart_imaging_core::stop::{run_cancellable, Cancel};
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

use crate::config::StashDir;
use crate::http::Req;
use crate::metrics;
use crate::stash::{self, Stored};

thread_local! {
    /// Jobs of this worker on the thread pool, abandoned ones included
    /// (they still hold a thread and memory). Event loop thread only.
    static RUNNING: Cell<usize> = const { Cell::new(0) };
    /// Jobs waiting for a place under `smart_imaging_max_running`, first
    /// come first. Event loop thread only.
    static QUEUE: RefCell<VecDeque<*mut Slot>> = const { RefCell::new(VecDeque::new()) };
    /// The stash keys ([`stash::Key::name`]) of this worker's background
    /// jobs, from their post until their result is in the stash (or
    /// discarded). Event loop thread only.
    static IN_FLIGHT: RefCell<Option<HashSet<String>>> = const { RefCell::new(None) };
    /// How long this worker's conversions ran lately, in milliseconds: an
    /// exponentially weighted mean (0 before the first one finished).
    /// Event loop thread only.
    static RECENT_RUN_MS: Cell<f64> = const { Cell::new(0.0) };
}

/// The weight of the newest conversion in [`recent_run`]'s mean: about the
/// last ten count.
const RECENT_WEIGHT: f64 = 0.2;

/// The share of a request's deadline that the predicted wait may take for
/// it to be queued: conversions slow down as the machine gets busier, and
/// the mean lags behind, so the prediction is given a quarter of headroom
/// (measured: admitting up to the whole deadline let 9 of 40 admitted
/// requests time out in tests/overload.rs; see docs/failures.md).
const ADMIT_SHARE: f64 = 0.75;

/// How long this worker's conversions ran lately (milliseconds; 0 before
/// the first).
fn recent_run() -> f64 {
    RECENT_RUN_MS.with(Cell::get)
}

/// Counts a conversion that ran `ms` into [`recent_run`].
fn note_run(ms: f64) {
    RECENT_RUN_MS.with(|mean| {
        let old = mean.get();
        mean.set(if old == 0.0 {
            ms
        } else {
            old + RECENT_WEIGHT * (ms - old)
        });
    });
}

/// How long a conversion posted now would wait for its result, in
/// milliseconds, with `running` jobs on the pool and `queued` waiting,
/// under `max_running`; None when it would start at once (nothing to
/// predict) or nothing is known yet. The work ahead of it is shared among
/// `max_running` threads: each queued job takes [`recent_run`], each
/// running one half of it (on average it is half done); then it runs
/// itself. (Counting the running ones whole, as until 2026-12-07, shed
/// requests that would have made it: at 8 clients on 2 workers converting
/// 1.3 s AVIFs, half of them, where every one finished within 7 s without
/// the shedding.)
fn predicted_wait(running: usize, queued: usize, max_running: usize) -> Option<f64> {
    let mean = recent_run();
    let max_running = max_running.max(1);
    if mean == 0.0 || (queued == 0 && running < max_running) {
        return None;
    }
    let ahead = queued as f64 * mean + running as f64 * mean / 2.0;
    Some(ahead / max_running as f64 + mean)
}

/// Whether a background job of this worker is converting (or stashing)
/// the result of stash key `name`.
pub fn in_flight(name: &str) -> bool {
    IN_FLIGHT.with(|f| f.borrow().as_ref().is_some_and(|set| set.contains(name)))
}

fn set_in_flight(name: &str, on: bool) {
    IN_FLIGHT.with(|f| {
        let mut f = f.borrow_mut();
        let set = f.get_or_insert_with(HashSet::new);
        if on {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    });
}

fn running() -> usize {
    RUNNING.with(Cell::get)
}

/// Counts a job onto (+1) or off (-1) the thread pool.
fn add_running(delta: isize) {
    RUNNING.with(|n| n.set(n.get().saturating_add_signed(delta)));
    publish();
}

/// Puts `slot` last in the queue.
fn enqueue(slot: *mut Slot) {
    QUEUE.with(|q| q.borrow_mut().push_back(slot));
    publish();
}

/// Shows this worker's queued and running jobs to `smart_imaging_status`
/// (its gauges), after every change of either.
fn publish() {
    if let Some(metrics) = metrics::get() {
        metrics.set_jobs(queued(), running());
    }
}

fn queued() -> usize {
    QUEUE.with(|q| q.borrow().len())
}

/// Removes `slot` from the queue; whether it was there.
fn unqueue(slot: *mut Slot) -> bool {
    let removed = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        match q.iter().position(|&s| s == slot) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    });
    publish();
    removed
}

/// What a job does, and whether a request waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request waits for it: the stash's result, else a conversion.
    Wait,
    /// A request waits for it (`smart_imaging_background on`): the stash's
    /// result, or none (`outcome` stays None); it never converts. Posted
    /// straight to the thread pool, not counted as a conversion.
    Lookup,
    /// No request waits for it ([`post_detached`]): the stash's result,
    /// else a conversion, whose result goes to the stash.
    Background,
}

/// One transcode. Owned by the pool thread between post and completion,
/// and by the event loop otherwise.
pub struct Job {
    pub kind: Kind,
    /// The original body, shared with the request, which serves it if the
    /// job fails or times out.
    pub input: Arc<Vec<u8>>,
    pub plan: Plan,
    pub limits: Limits,
    /// `smart_imaging_stash_path` (None: off).
    pub stash: Option<StashDir>,
    pub outcome: Option<Outcome>,
    /// How long the job ran on its pool thread.
    pub elapsed: Duration,
    /// The outcome came from the stash: nothing was converted.
    pub from_stash: bool,
    /// A failed stash lookup, for the error log.
    pub stash_error: Option<String>,
    /// The stash key (worked out on the pool thread when the stash is on).
    key: Option<stash::Key>,
    /// The request's URI, for the error log of a background job.
    uri: String,
    /// Set (by the event loop) when the request that waited for the job
    /// ended while it ran: the conversion gives up at its next step.
    cancel: Cancel,
}

impl Job {
    pub fn new(input: Arc<Vec<u8>>, plan: Plan, limits: Limits, stash: Option<StashDir>) -> Job {
        Job {
            kind: Kind::Wait,
            input,
            plan,
            limits,
            stash,
            outcome: None,
            elapsed: Duration::ZERO,
            from_stash: false,
            stash_error: None,
            key: None,
            uri: String::new(),
            cancel: Cancel::new(),
        }
    }

    /// A [`Kind::Lookup`] job: the stash's result for this conversion, if
    /// it has one.
    pub fn lookup(input: Arc<Vec<u8>>, plan: Plan, limits: Limits, stash: StashDir) -> Job {
        Job {
            kind: Kind::Lookup,
            ..Job::new(input, plan, limits, Some(stash))
        }
    }

    /// The conversion a finished lookup found no result for, as a
    /// [`Kind::Background`] job for [`post_detached`], for the request of
    /// `uri` (for the error log). The key is kept: it is not worked out
    /// again.
    pub fn into_background(self, uri: String) -> Job {
        Job {
            kind: Kind::Background,
            outcome: None,
            elapsed: Duration::ZERO,
            from_stash: false,
            stash_error: None,
            uri,
            ..self
        }
    }
}

/// How long a request waits for its job, counted from the post (so time in
/// the module's queue and the pool's counts).
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

    /// The bound, for the error log: `smart_imaging_timeout 10s`, or
    /// `900ms (90% of send_timeout 1s, under smart_imaging_timeout 10s)`.
    pub fn bound(&self) -> String {
        match self.send_timeout {
            None => format!("smart_imaging_timeout {}", format_msec(self.configured)),
            Some(st) => format!(
                "{} (90% of send_timeout {}, under smart_imaging_timeout {})",
                format_msec(self.ms),
                format_msec(st),
                format_msec(self.configured)
            ),
        }
    }

    /// Why the request stopped waiting, for the error log.
    pub fn reason(&self) -> String {
        format!("conversion took longer than {}", self.bound())
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
    /// The pool thread finished the job (or found its result in the stash).
    Finished(Box<Job>),
    /// The request waited `waited`, past `deadline`: it stops waiting and
    /// serves the original. A job still queued never runs; a running one
    /// runs on, and its result goes to the stash.
    TimedOut {
        waited: Duration,
        deadline: Deadline,
    },
    /// The queued job could not be handed to the thread pool (its queue is
    /// full): the original is served.
    Refused,
    /// The request ended (the client closed the connection) while its job
    /// was queued: the job never runs, and nothing is sent. The request is
    /// not resumed: nginx is finishing it.
    Dropped { waited: Duration },
    /// The queued job could no longer finish before its deadline, as this
    /// worker's conversions run now: it never runs, and the original is
    /// served at once (`busy`) instead of at the deadline. `predicted_ms`:
    /// its wait for the jobs ahead and its own run; `left_ms`: the time
    /// left before its deadline.
    Late {
        waited: Duration,
        predicted_ms: f64,
        left_ms: f64,
    },
}

/// The [`OnDone`] of a detached job: never called (no request waits).
fn no_request(_: Req<'_>, _: Completion) {}

/// Called on the event loop with the request a job was posted for (still
/// waiting for it) and how the job ended; the request is resumed right
/// after (except when [`Completion::Dropped`]). A panic here is caught:
/// the request is then ended with an error.
pub type OnDone = for<'r> fn(Req<'r>, Completion);

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In this worker's queue.
    Queued,
    /// Posted to the thread pool.
    Running,
}

/// A posted job and what the event loop needs to finish it. Allocated with
/// the global allocator (not in the request pool: it may outlive the
/// request), freed by `job_done`, or when it leaves the queue unrun.
/// `#[repr(C)]` with the task first: nginx's debug logging of the deadline
/// timer reads `ev->data` as a connection (its `fd`), which must stay
/// inside this allocation.
#[repr(C)]
struct Slot {
    task: ngx_thread_task_t,
    deadline: ngx_event_t,
    /// The waiting request; null once it stopped waiting. Event loop only.
    r: *mut ngx_http_request_t,
    /// The request's cleanup record, while `r` is set.
    waiter: *mut Waiter,
    /// Owned by the pool thread while running, until `job_done`.
    job: *mut Job,
    state: State,
    pool: *mut ngx_thread_pool_t,
    /// `smart_imaging_max_running` of the job's location.
    max_running: usize,
    /// Counted under `smart_imaging_max_running` and `_max_jobs` (all but
    /// lookups).
    counted: bool,
    /// When the request started waiting (the deadline counts from here).
    posted: Instant,
    limit: Deadline,
    on_done: OnDone,
    /// The job's [`Job::cancel`], which the event loop may set while the
    /// pool thread owns the job.
    cancel: Cancel,
}

/// The data of the request's cleanup handler (`ngx_http_cleanup_add`), in
/// the request pool: nginx runs it when it terminates or frees the
/// request, which, while the job is still queued, drops the job.
struct Waiter {
    /// The slot the request waits for; null once it stopped waiting.
    slot: *mut Slot,
}

/// A posted job, as the request waiting for it holds it: what it needs to
/// stop waiting should it be freed first ([`Posted::detach`]).
#[derive(Debug)]
pub struct Posted(*mut Slot);

/// Why a job could not be posted; the original is served instead.
#[derive(Debug)]
pub enum PostError {
    /// `smart_imaging_max_jobs` (queued + running) reached: this many.
    Overloaded(usize),
    /// The thread pool's queue is full.
    QueueFull,
    /// No memory for the request's cleanup record.
    NoMemory,
    /// A background job of this worker is already making this result
    /// ([`post_detached`]).
    InFlight,
    /// The jobs ahead would keep it waiting past its deadline: this long
    /// (predicted, ms), with this many queued and running.
    WouldWait {
        predicted_ms: f64,
        /// The request's deadline, ms.
        deadline_ms: u64,
        queued: usize,
        running: usize,
    },
}

/// How many jobs a location lets a worker have.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// `smart_imaging_max_jobs`: queued + running.
    pub max_jobs: usize,
    /// `smart_imaging_max_running`: on the thread pool.
    pub max_running: usize,
}

/// Posts `job` for request `req`: to the thread pool if fewer than
/// `max_running` jobs run and none waits, else to the queue (a
/// [`Kind::Lookup`]: to the thread pool, uncounted). On success
/// the request is paused until the job completes or the deadline passes,
/// then `on_done` is called and the request resumed; on failure the job is
/// handed back.
///
/// # Safety
/// `req` must be a main request; `pool` a thread pool from configuration.
pub unsafe fn post(
    req: Req<'_>,
    pool: *mut ngx_thread_pool_t,
    bounds: Bounds,
    job: Box<Job>,
    limit: Deadline,
    on_done: OnDone,
) -> Result<Posted, (Box<Job>, PostError)> {
    let r = req.as_ptr();
    let (running, queued) = (running(), queued());
    let counted = job.kind != Kind::Lookup;
    if counted && running + queued >= bounds.max_jobs {
        return Err((job, PostError::Overloaded(running + queued)));
    }
    if let Some(predicted) = predicted_wait(running, queued, bounds.max_running) {
        if counted && predicted > limit.ms as f64 * ADMIT_SHARE {
            return Err((
                job,
                PostError::WouldWait {
                    predicted_ms: predicted,
                    deadline_ms: limit.ms as u64,
                    queued,
                    running,
                },
            ));
        }
    }
    // SAFETY: `r` is a valid main request; the record lives in its pool.
    let cln = unsafe { ngx_http_cleanup_add(r, core::mem::size_of::<Waiter>()) };
    if cln.is_null() {
        return Err((job, PostError::NoMemory));
    }
    let cancel = job.cancel.clone();
    let job = Box::into_raw(job);
    let slot = Box::into_raw(Box::new(Slot {
        // SAFETY: plain C structs, for which all-zero is their initial
        // state (nginx allocates them with ngx_pcalloc).
        task: unsafe { core::mem::zeroed() },
        // SAFETY: as above.
        deadline: unsafe { core::mem::zeroed() },
        r,
        waiter: ptr::null_mut(),
        job,
        state: State::Queued,
        pool,
        max_running: bounds.max_running,
        counted,
        posted: Instant::now(),
        limit,
        on_done,
        cancel,
    }));
    // SAFETY: `slot` was just allocated with `job`, not queued. (If the
    // pool refuses it, the cleanup record keeps its NULL handler.)
    unsafe { start_or_queue(req, slot, job, !counted, bounds, (running, queued), "") }?;
    // SAFETY: `r` is valid; see the module comment for the protocol. The
    // timer lives in the slot, which outlives it (deleted or fired before
    // the slot is freed). The waiter lives in the request pool, `cln` was
    // just added to the request's cleanups.
    unsafe {
        let waiter = (*cln).data.cast::<Waiter>();
        waiter.write(Waiter { slot });
        (*slot).waiter = waiter;
        (*cln).handler = Some(request_gone);
        (*cln).data = waiter.cast();
        (*slot).deadline.handler = Some(job_deadline);
        (*slot).deadline.data = slot.cast();
        // The cycle's log outlives any request.
        (*slot).deadline.log = (*ngx_cycle).log;
        ngx_add_timer(ptr::addr_of_mut!((*slot).deadline), limit.ms);
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() + 1);
        (*r).set_aio(1);
    }
    Ok(Posted(slot))
}

/// Posts a [`Kind::Background`] job that no request waits for, as [`post`]
/// does (queued behind `max_running`, counted under `max_jobs`), unless
/// this worker already makes its result. `req`, the request that found no
/// result in the stash, is only used for the error log here: the job does
/// not keep it.
///
/// # Safety
/// On the event loop; `pool` a thread pool from configuration.
pub unsafe fn post_detached(
    req: Req<'_>,
    pool: *mut ngx_thread_pool_t,
    bounds: Bounds,
    job: Box<Job>,
) -> Result<(), (Box<Job>, PostError)> {
    let name = job.key.as_ref().map(|k| k.name().to_owned());
    if name.as_deref().is_some_and(in_flight) {
        return Err((job, PostError::InFlight));
    }
    let (running, queued) = (running(), queued());
    if running + queued >= bounds.max_jobs {
        return Err((job, PostError::Overloaded(running + queued)));
    }
    let cancel = job.cancel.clone();
    let job = Box::into_raw(job);
    let slot = Box::into_raw(Box::new(Slot {
        // SAFETY: plain C structs, for which all-zero is their initial
        // state (nginx allocates them with ngx_pcalloc).
        task: unsafe { core::mem::zeroed() },
        // SAFETY: as above; never armed.
        deadline: unsafe { core::mem::zeroed() },
        r: ptr::null_mut(),
        waiter: ptr::null_mut(),
        job,
        state: State::Queued,
        pool,
        max_running: bounds.max_running,
        counted: true,
        posted: Instant::now(),
        limit: Deadline::new(0, 0),
        on_done: no_request,
        cancel,
    }));
    // SAFETY: `slot` was just allocated with `job`, not queued.
    unsafe {
        start_or_queue(
            req,
            slot,
            job,
            false,
            bounds,
            (running, queued),
            "background ",
        )
    }?;
    if let Some(name) = name {
        set_in_flight(&name, true);
    }
    Ok(())
}

/// Starts `slot` now when `at_once` or when there is room under
/// `smart_imaging_max_running` and nobody waits before it; else puts it
/// last in the queue, with an `info` line (`{what}conversion queued: ...`).
///
/// # Safety
/// As [`start_now`].
unsafe fn start_or_queue(
    req: Req<'_>,
    slot: *mut Slot,
    job: *mut Job,
    at_once: bool,
    bounds: Bounds,
    (running, queued): (usize, usize),
    what: &str,
) -> Result<(), (Box<Job>, PostError)> {
    if at_once || (queued == 0 && running < bounds.max_running) {
        // SAFETY: as the caller promises.
        return unsafe { start_now(slot, job) }.map_err(|job| (job, PostError::QueueFull));
    }
    enqueue(slot);
    req.log(
        NGX_LOG_INFO,
        format_args!(
            "smart_imaging: {what}conversion queued: {running} running (smart_imaging_max_running {}), {queued} waiting before it",
            bounds.max_running
        ),
    );
    Ok(())
}

/// Starts `slot` at once; if the thread pool refuses it, frees the slot
/// and hands the job back.
///
/// # Safety
/// `slot` was just allocated by the caller, with `job` as its job, and is
/// not queued.
unsafe fn start_now(slot: *mut Slot, job: *mut Job) -> Result<(), Box<Job>> {
    // SAFETY: as the caller promises.
    if unsafe { start(slot) } {
        return Ok(());
    }
    // SAFETY: not posted, so the slot and the job are still ours alone.
    Err(unsafe {
        drop(Box::from_raw(slot));
        Box::from_raw(job)
    })
}

/// Posts a queued (or new) slot's job to its thread pool; false if the
/// pool's queue is full.
///
/// # Safety
/// On the event loop; `slot` alive and in no queue.
unsafe fn start(slot: *mut Slot) -> bool {
    // SAFETY: the caller's contract. The pool thread gets the job as its
    // `ctx`; the completion event gets the slot. `pool` comes from
    // ngx_thread_pool_add and is live in a worker; the task is valid until
    // `job_done` frees it.
    unsafe {
        (*slot).task.ctx = (*slot).job.cast();
        (*slot).task.handler = Some(run_job);
        (*slot).task.event.handler = Some(job_done);
        (*slot).task.event.data = slot.cast();
        if ngx_thread_task_post((*slot).pool, ptr::addr_of_mut!((*slot).task)) != NGX_OK as isize {
            return false;
        }
        (*slot).state = State::Running;
        if (*slot).counted {
            add_running(1);
        }
    }
    true
}

/// Starts queued jobs, first come first, while there is room under the
/// `smart_imaging_max_running` of the first one waiting. A job the pool
/// refuses is completed as [`Completion::Refused`].
fn pump() {
    shed_late();
    loop {
        let next = QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            // SAFETY: queued slots are alive (freed only once unqueued).
            let head = *q.front()?;
            if running() >= unsafe { (*head).max_running } {
                return None;
            }
            q.pop_front()
        });
        let Some(slot) = next else { return };
        publish();
        // SAFETY: a queued slot is alive and waited for (a request that
        // stops waiting takes its slot out of the queue), or detached (no
        // request ever); just unqueued.
        unsafe {
            let r = (*slot).r;
            let waited = (*slot).posted.elapsed();
            let (log, what) = if r.is_null() {
                ((*ngx_cycle).log, "background conversion")
            } else {
                ((*(*r).connection).log, "conversion")
            };
            if start(slot) {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "smart_imaging: queued {} started after waiting {:.1} ms",
                    what,
                    waited.as_secs_f64() * 1000.0
                );
            } else if r.is_null() {
                release(&*(*slot).job);
                let _ = forget(slot);
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "smart_imaging: queued background conversion dropped: the thread pool queue is full"
                );
            } else {
                let (r, on_done) = forget(slot);
                deliver(r, on_done, Completion::Refused);
            }
        }
    }
}

/// Answers at once the queued requests that can no longer get their
/// result before their deadline ([`Completion::Late`]), as
/// [`predicted_wait`] sees the jobs ahead of each now: a request admitted
/// before the worker knew what conversions cost (the first burst after a
/// start or reload is admitted whole), or before they slowed down, gets
/// the original now instead of at its deadline, and its place goes to
/// one that can make it. Background jobs have no deadline and stay.
fn shed_late() {
    loop {
        let late = QUEUE.with(|q| {
            let running = running();
            q.borrow().iter().enumerate().find_map(|(ahead, &slot)| {
                // SAFETY: queued slots are alive (freed only once unqueued).
                let (r, max_running, waited, limit) = unsafe {
                    (
                        (*slot).r,
                        (*slot).max_running,
                        (*slot).posted.elapsed(),
                        (*slot).limit,
                    )
                };
                if r.is_null() {
                    return None;
                }
                let predicted = predicted_wait(running, ahead, max_running)?;
                let left = limit.ms as f64 - waited.as_secs_f64() * 1000.0;
                (predicted > left).then_some((slot, waited, predicted, left))
            })
        });
        let Some((slot, waited, predicted_ms, left_ms)) = late else {
            return;
        };
        unqueue(slot);
        // SAFETY: out of the queue and never posted: ours to free; its
        // request (not detached, checked above) is alive and blocked by
        // us, with a connection that has a log.
        unsafe {
            let (r, on_done) = forget(slot);
            dropped_line(
                (*(*r).connection).log,
                &format!(
                    "it would take about {predicted_ms:.0} ms, {left_ms:.0} ms before its deadline ({:.1} ms)",
                    waited.as_secs_f64() * 1000.0
                ),
            );
            deliver(
                r,
                on_done,
                Completion::Late {
                    waited,
                    predicted_ms,
                    left_ms,
                },
            );
        }
    }
}

/// Frees a slot whose job never ran (it is out of the queue), after taking
/// what its request needs: the request and its callback. The request no
/// longer waits for it.
///
/// # Safety
/// On the event loop; `slot` alive, not queued, not posted.
unsafe fn forget(slot: *mut Slot) -> (*mut ngx_http_request_t, OnDone) {
    // SAFETY: the caller's contract: the slot and its job are ours alone.
    let slot = unsafe { Box::from_raw(slot) };
    let mut slot = slot;
    if slot.deadline.timer_set() != 0 {
        // SAFETY: armed in `post`, still in the timer tree.
        unsafe { ngx_del_timer(&mut slot.deadline) };
    }
    if !slot.waiter.is_null() {
        // SAFETY: the waiter lives in the request pool while `r` is set.
        unsafe { (*slot.waiter).slot = ptr::null_mut() };
    }
    // SAFETY: never posted, so the job is ours.
    drop(unsafe { Box::from_raw(slot.job) });
    (slot.r, slot.on_done)
}

/// Hands `completion` to the request (`on_done`) and resumes it.
///
/// # Safety
/// On the event loop; `r` is the blocked request that waited.
unsafe fn deliver(r: *mut ngx_http_request_t, on_done: OnDone, completion: Completion) {
    // SAFETY: the request is alive (blocked by us).
    let req = unsafe { Req::new(r) };
    let ok = catch_unwind(AssertUnwindSafe(|| on_done(req, completion))).is_ok();
    // SAFETY: as above.
    unsafe { resume(r, ok) };
}

/// The `info` line of a queued job that will never run, in `log`.
fn dropped_line(log: *mut ngx_log_t, why: &str) {
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "smart_imaging: queued conversion dropped: {}",
        why
    );
}

impl Posted {
    /// The request no longer waits (it is being freed): whatever happens to
    /// the job, leave the request alone. A job still queued never runs.
    ///
    /// # Safety
    /// On the event loop thread, before the job's completion (`on_done`) or
    /// deadline has reached the request.
    pub unsafe fn detach(&self) {
        let slot = self.0;
        // SAFETY: the slot is alive until `job_done`, which has not run, or
        // until it leaves the queue unrun, which goes through `on_done`
        // first; only the event loop touches `r`, the waiter and the timer.
        unsafe {
            if (*slot).state == State::Queued && unqueue(slot) {
                let _ = forget(slot);
                dropped_line((*ngx_cycle).log, "the request was freed");
                return;
            }
            (*slot).r = ptr::null_mut();
            if !(*slot).waiter.is_null() {
                (*(*slot).waiter).slot = ptr::null_mut();
                (*slot).waiter = ptr::null_mut();
            }
            if (*slot).deadline.timer_set() != 0 {
                ngx_del_timer(ptr::addr_of_mut!((*slot).deadline));
            }
        }
    }
}

/// The request's cleanup (`ngx_http_cleanup_add`): nginx terminates or
/// frees the request, which may still wait for its job. A queued job is
/// dropped and the request unblocked, so nginx can finish it now; a
/// running one is cancelled: it gives up at its next step, and the request
/// stays blocked until then, as with nginx's own thread tasks.
unsafe extern "C" fn request_gone(data: *mut c_void) {
    // SAFETY: `data` is the waiter `post` put in the request pool, alive
    // while the request is.
    let waiter = data.cast::<Waiter>();
    // SAFETY: as above; a non-null slot is alive and waited for by the
    // request (every path that stops the wait clears it).
    unsafe {
        let slot = (*waiter).slot;
        if slot.is_null() {
            return;
        }
        let r = (*slot).r;
        let c = (*r).connection;
        let why = if (*(*c).read).eof() != 0 {
            "client closed the connection"
        } else if (*c).error() != 0 {
            // HTTP/2: the client reset the stream, or the connection
            // failed under it.
            "client went away"
        } else {
            "request terminated"
        };
        if (*slot).state == State::Running {
            // Only a conversion (a lookup is quick and converts nothing).
            if (*slot).counted {
                (*slot).cancel.cancel();
                ngx_log_error!(
                    NGX_LOG_INFO,
                    (*c).log,
                    "smart_imaging: running conversion cancelled: {} ({:.1} ms)",
                    why,
                    (*slot).posted.elapsed().as_secs_f64() * 1000.0
                );
            }
            return;
        }
        if !unqueue(slot) {
            return;
        }
        let waited = (*slot).posted.elapsed();
        let (r, on_done) = forget(slot);
        ngx_log_error!(
            NGX_LOG_INFO,
            (*c).log,
            "smart_imaging: queued conversion dropped: {} ({:.1} ms)",
            why,
            waited.as_secs_f64() * 1000.0
        );
        let req = Req::new(r);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            on_done(req, Completion::Dropped { waited })
        }));
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() - 1);
        (*r).set_aio(0);
    }
}

/// Runs on a pool thread: only touches the job, never nginx structures.
/// Serves the job from the stash if an earlier conversion no request
/// waited for left its result there; converts otherwise (a lookup does
/// not).
unsafe extern "C" fn run_job(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: `data` is the job posted in `start`; it is owned by this
    // thread until the completion event runs.
    let job = unsafe { &mut *data.cast::<Job>() };
    let start = Instant::now();
    // transcode() catches its own panics; this is the last line of defence
    // so no panic can unwind into nginx's thread code.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if let Some(dir) = &job.stash {
            let key = job
                .key
                .take()
                .unwrap_or_else(|| stash::Key::new(&job.input, &job.plan, &job.limits));
            let found = stash::get(dir, &key);
            job.key = Some(key);
            match found {
                Ok(Some(outcome)) => {
                    job.from_stash = true;
                    return Some(outcome);
                }
                Ok(None) => {}
                Err(e) => {
                    job.stash_error = Some(format!(
                        "stash lookup in \"{}\" failed: {e}",
                        dir.dir.display()
                    ))
                }
            }
        }
        if job.kind == Kind::Lookup {
            return None;
        }
        Some(transcode_unless_stopped(
            &job.input,
            &job.plan,
            &job.limits,
            &job.cancel,
        ))
    }))
    .unwrap_or_else(|_| {
        Some(Outcome::Original(KeepReason::Panic(
            "panic in transcode".into(),
        )))
    });
    job.outcome = outcome;
    job.elapsed = start.elapsed();
    if job.kind != Kind::Lookup {
        return_memory();
    }
}

/// Stack of a conversion thread: what a pool thread has (the default of
/// 8 MiB), not Rust's 2 MiB; the C codecs were written for it.
const CONVERSION_STACK: usize = 8 << 20;

/// How often a pool thread waiting for its conversion checks whether nginx
/// is stopping.
const STOP_POLL: Duration = Duration::from_millis(10);

/// Converts on a thread of its own while this pool thread waits for the
/// result, checking every [`STOP_POLL`] whether the worker is terminating
/// (`nginx -s stop`: [`smart_imaging_core::stop`]). If it is, the pool
/// thread gives up at once and returns to nginx, whose thread pool, on the
/// worker's way out, waits for every task it runs: the worker then exits in
/// milliseconds instead of after the conversion (which the master would
/// cut short with SIGKILL after ~1.5 s). The conversion itself gives up at
/// its next step; one that cannot (a long AVIF encode) runs on until the
/// process exits, in code that stays mapped until then
/// ([`crate::pin_module`]). Without the pin (or a thread), it converts
/// here, as before. Either way the conversion runs under `cancel`.
fn transcode_unless_stopped(
    input: &Arc<Vec<u8>>,
    plan: &Plan,
    limits: &Limits,
    cancel: &Cancel,
) -> Outcome {
    if !crate::module_pinned() {
        return run_cancellable(cancel, || transcode(input, plan, limits));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let owned = (
        Arc::clone(input),
        plan.clone(),
        limits.clone(),
        cancel.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("smart-imaging".into())
        .stack_size(CONVERSION_STACK)
        .spawn(move || {
            let (input, plan, limits, cancel) = owned;
            yield_to_event_loop();
            // transcode() catches the codecs' panics itself.
            let outcome = run_cancellable(&cancel, || transcode(&input, &plan, &limits));
            let _ = tx.send(outcome);
        });
    let Ok(thread) = spawned else {
        return run_cancellable(cancel, || transcode(input, plan, limits));
    };
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(outcome) => {
                let _ = thread.join();
                return outcome;
            }
            Err(RecvTimeoutError::Timeout) if smart_imaging_core::stop::stopping() => {
                // The thread is left to finish or to end with the process.
                return Outcome::Original(KeepReason::Stopped);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                return Outcome::Original(KeepReason::Panic(
                    "the conversion thread ended without a result".into(),
                ));
            }
        }
    }
}

/// Lowers the calling thread's scheduling priority by
/// [`CONVERSION_NICE`], for the rest of its life: a conversion thread
/// (spawned for one conversion, see [`transcode_unless_stopped`]) then
/// gives way to the worker's event loop, which would otherwise wait for
/// its time slice behind the conversions on a busy machine (a tiny file's
/// p99 rose to 4-6 ms while 8 clients converted on 2 CPUs). Only the
/// order of running changes: with nothing else to run, a conversion
/// takes the whole CPU as before. (Raising one's nice value needs no
/// privilege; lowering it back would, which is why pool threads, which
/// live on and may run nginx's own tasks, are never reniced.)
fn yield_to_event_loop() {
    #[cfg(target_os = "linux")]
    // SAFETY: nice() only changes the calling thread's nice value (Linux
    // keeps it per thread); its errors (none expected) leave it as it is.
    unsafe {
        libc::nice(CONVERSION_NICE);
    }
}

/// Nice levels a conversion thread runs below the event loop.
const CONVERSION_NICE: libc::c_int = 5;

/// Large allocations (a conversion's pixel buffers and planes, the
/// codecs' frames) are mapped and unmapped on their own instead of being
/// carved out of an arena: glibc otherwise raises its mmap threshold
/// after each large free (up to 32 MiB), so the next conversion's buffers
/// come from the heap, and a worker's peak grows with the fragments of
/// conversions of different sizes. Called once per worker at start.
pub fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters; called at
    // worker start, before the pool's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Allocations from this size up are mapped on their own (glibc's
/// default starts at 128 KiB and rises as large blocks are freed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Hands the memory glibc keeps after a job back to the system: a
/// conversion's pixel buffers are many megabytes, and glibc keeps what is
/// freed in the thread's arena, so a worker's resident memory would stay at
/// its peak. Measured: see docs/directives.md, smart_imaging_max_running.
fn return_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks;
    // callable from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Completion, on the event loop: hand the result to the request and resume
/// it, or, if the request stopped waiting, stash it. Frees the slot, then
/// starts the next queued jobs.
unsafe extern "C" fn job_done(ev: *mut ngx_event_t) {
    // SAFETY: `data` is the slot of `post`; the pool thread is done with the
    // task and the job, and ngx_thread_pool_handler() does not touch the
    // task after calling us, so both are ours to free.
    let (slot, job) = unsafe {
        let slot = Box::from_raw((*ev).data.cast::<Slot>());
        let job = Box::from_raw(slot.job);
        (slot, job)
    };
    if slot.counted {
        add_running(-1);
        // What a conversion costs here now, for predicting waits: not a
        // stash hit, nor one that gave up.
        let gave_up = matches!(
            job.outcome,
            Some(Outcome::Original(
                KeepReason::Cancelled | KeepReason::Stopped
            )) | None
        );
        if !job.from_stash && !gave_up {
            note_run(job.elapsed.as_secs_f64() * 1000.0);
        }
    }
    let mut slot = slot;
    if slot.deadline.timer_set() != 0 {
        // SAFETY: armed in `post`, still in the timer tree.
        unsafe { ngx_del_timer(&mut slot.deadline) };
    }
    if !slot.waiter.is_null() {
        // SAFETY: the waiter lives in the request pool while `r` is set.
        unsafe { (*slot.waiter).slot = ptr::null_mut() };
    }
    let r = slot.r;
    let waited = slot.posted.elapsed();
    let on_done = slot.on_done;
    let pool = slot.pool;
    drop(slot);
    // A thread is free: the next job waiting takes it.
    pump();
    if r.is_null() {
        finished_alone(pool, *job, waited);
        return;
    }
    if matches!(job.outcome, Some(Outcome::Original(KeepReason::Cancelled))) {
        // SAFETY: the request is alive (blocked), with its connection.
        let log = unsafe { (*(*r).connection).log };
        ngx_log_error!(
            NGX_LOG_INFO,
            log,
            "smart_imaging: cancelled conversion gave up after {:.1} ms (ran {:.1} ms)",
            waited.as_secs_f64() * 1000.0,
            job.elapsed.as_secs_f64() * 1000.0
        );
    }
    // SAFETY: the request is alive (blocked) and waiting for this job; we
    // are on the event loop.
    unsafe { deliver(r, on_done, Completion::Finished(job)) };
}

/// Stops counting `job` as in flight, if it is a background job.
fn release(job: &Job) {
    if job.kind == Kind::Background {
        if let Some(key) = &job.key {
            set_in_flight(key.name(), false);
        }
    }
}

/// A job no request waits for finished: an abandoned one (its request
/// stopped waiting) or a background one. Its result goes to the stash.
fn finished_alone(pool: *mut ngx_thread_pool_t, job: Job, waited: Duration) {
    let ran = job.elapsed.as_secs_f64() * 1000.0;
    let waited = waited.as_secs_f64() * 1000.0;
    let log = || {
        // SAFETY: the cycle's log is valid in a worker.
        unsafe { (*ngx_cycle).log }
    };
    let what = match job.kind {
        // What it found is of no use to anyone now: the next request
        // looks again.
        Kind::Lookup => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log(),
                "smart_imaging: abandoned stash lookup finished after {:.1} ms (ran {:.1} ms)",
                waited,
                ran
            );
            return;
        }
        Kind::Wait => "abandoned conversion".to_string(),
        Kind::Background => format!("background conversion of \"{}\"", job.uri),
    };
    if job.from_stash {
        ngx_log_error!(
            NGX_LOG_INFO,
            log(),
            "smart_imaging: {} finished after {:.1} ms (ran {:.1} ms): its result was in the stash already",
            what,
            waited,
            ran
        );
        release(&job);
        return;
    }
    let keep = matches!(&job.outcome, Some(outcome) if stash::keeps(outcome));
    if !keep || job.stash.is_none() || job.key.is_none() {
        // Nothing to keep: the stash is off, or a panic was caught (say
        // which).
        let why = match &job.outcome {
            Some(Outcome::Original(reason)) => format!(": the original is kept ({reason})"),
            _ => String::new(),
        };
        ngx_log_error!(
            NGX_LOG_INFO,
            log(),
            "smart_imaging: {} finished after {:.1} ms (ran {:.1} ms), result discarded{}",
            what,
            waited,
            ran,
            why
        );
        release(&job);
        return;
    }
    let (Some(outcome), Some(dir), Some(key)) = (job.outcome, job.stash, job.key) else {
        unreachable!("checked above")
    };
    let write = Box::into_raw(Box::new(StashWrite {
        // SAFETY: a plain C struct, all-zero initially (as nginx's).
        task: unsafe { core::mem::zeroed() },
        dir,
        key,
        outcome,
        stored: None,
        background: job.kind == Kind::Background,
        what,
        waited,
        ran,
    }));
    // SAFETY: `write` is ours until posted; then the pool thread's until
    // `stash_written` frees it on the event loop.
    let posted = unsafe {
        (*write).task.ctx = write.cast();
        (*write).task.handler = Some(run_stash_write);
        (*write).task.event.handler = Some(stash_written);
        (*write).task.event.data = write.cast();
        ngx_thread_task_post(pool, ptr::addr_of_mut!((*write).task)) == NGX_OK as isize
    };
    if !posted {
        // SAFETY: not posted: still ours.
        let w = unsafe { Box::from_raw(write) };
        ngx_log_error!(
            NGX_LOG_INFO,
            log(),
            "smart_imaging: {} finished after {:.1} ms (ran {:.1} ms), result discarded: the thread pool queue is full",
            w.what,
            waited,
            ran
        );
        w.release();
    }
}

/// Writing a result to the stash, on a pool thread. Allocated with the
/// global allocator, `#[repr(C)]` with the task first; freed by
/// `stash_written`.
#[repr(C)]
struct StashWrite {
    task: ngx_thread_task_t,
    dir: StashDir,
    key: stash::Key,
    outcome: Outcome,
    stored: Option<io::Result<Stored>>,
    /// A background job's: in flight until written.
    background: bool,
    /// The job, for the error log: `abandoned conversion`, ...
    what: String,
    /// How long after its post the job finished, and how long it ran, in
    /// milliseconds.
    waited: f64,
    ran: f64,
}

impl StashWrite {
    /// The result is written (or not): a background job is no longer in
    /// flight.
    fn release(&self) {
        if self.background {
            set_in_flight(self.key.name(), false);
        }
    }
}

unsafe extern "C" fn run_stash_write(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: `data` is the StashWrite posted in `finished_alone`, this
    // thread's until its completion event runs.
    let w = unsafe { &mut *data.cast::<StashWrite>() };
    let stored = catch_unwind(AssertUnwindSafe(|| stash::put(&w.dir, &w.key, &w.outcome)))
        .unwrap_or_else(|_| Err(io::Error::other("panic")));
    w.stored = Some(stored);
    return_memory();
}

/// The stash write is done, on the event loop: says how it went.
unsafe extern "C" fn stash_written(ev: *mut ngx_event_t) {
    // SAFETY: `data` is the StashWrite; the pool thread is done with it.
    let w = unsafe { Box::from_raw((*ev).data.cast::<StashWrite>()) };
    w.release();
    // SAFETY: the cycle's log is valid in a worker.
    let log = unsafe { (*ngx_cycle).log };
    match &w.stored {
        Some(Ok(Stored::Yes)) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "smart_imaging: {} finished after {:.1} ms (ran {:.1} ms), result stashed",
                w.what,
                w.waited,
                w.ran
            );
        }
        Some(Ok(Stored::TooBig(size))) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "smart_imaging: {} finished after {:.1} ms (ran {:.1} ms), result of {} bytes not stashed: over the max_size of smart_imaging_stash_path",
                w.what,
                w.waited,
                w.ran,
                size
            );
        }
        Some(Ok(Stored::NotKept)) | None => {}
        Some(Err(e)) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "smart_imaging: could not stash a result in \"{}\": {}",
                w.dir.dir.display(),
                e
            );
        }
    }
}

/// The deadline, on the event loop: stop waiting, let the request serve the
/// original. A queued job leaves the queue and never runs; a running one
/// keeps running, and `job_done` stashes its result.
unsafe extern "C" fn job_deadline(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the timer event armed in `post`.
    let slot = unsafe { (*ev).data.cast::<Slot>() };
    // SAFETY: the timer is deleted before the slot is freed (`job_done`,
    // `forget`) and when the request goes (`detach`), so both are alive
    // here; only the event loop touches these fields.
    let (r, waited, deadline, on_done) = unsafe {
        let r = (*slot).r;
        (r, (*slot).posted.elapsed(), (*slot).limit, (*slot).on_done)
    };
    if r.is_null() {
        return;
    }
    // SAFETY: as above.
    if unsafe { (*slot).state } == State::Queued && unqueue(slot) {
        // SAFETY: out of the queue and never posted: ours to free. The
        // request (alive, blocked by us) has a connection with a log.
        let log = unsafe {
            forget(slot);
            (*(*r).connection).log
        };
        dropped_line(
            log,
            &format!(
                "not started within {} ({:.1} ms)",
                deadline.bound(),
                waited.as_secs_f64() * 1000.0
            ),
        );
    } else {
        // SAFETY: as above; the job runs on without its request.
        unsafe {
            (*slot).r = ptr::null_mut();
            if !(*slot).waiter.is_null() {
                (*(*slot).waiter).slot = ptr::null_mut();
                (*slot).waiter = ptr::null_mut();
            }
        }
    }
    // SAFETY: the request is alive (still blocked by us); we are on the
    // event loop.
    unsafe { deliver(r, on_done, Completion::TimedOut { waited, deadline }) };
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
