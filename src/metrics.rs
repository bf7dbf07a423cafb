//! The counters of `smart_imaging_status`, in a shared memory zone
//! (`smart_imaging_status_zone`): every worker adds to the same ones, and
//! they outlive reloads (nginx hands a zone of the same name and size to
//! the new configuration, with the data its `init` left in it last time).
//!
//! Counting is exact under concurrency: each counter is an `AtomicU64` in
//! the zone, added to with one atomic read-modify-write instruction.
//! Counters are only ever added to (Relaxed: no counter orders another); a
//! scrape reads each once. The per-worker job gauges (queued, running) are
//! written by their worker alone, to its own slot (its `ngx_process_slot`),
//! and summed over the live workers when read: a worker that dies with
//! jobs in flight leaves no phantom jobs behind.
//!
//! What is counted, when (the log phase, once per request) and how it is
//! shown are elsewhere: [`Report`] says what a request's result contributes,
//! `crate::status` counts at the log phase and serves the text, the core's
//! `exposition` renders it.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};

use ngx::ffi::{
    ngx_cycle_t, ngx_http_conf_ctx_t, ngx_http_module, ngx_int_t, ngx_process_slot, ngx_shm_zone_t,
    ngx_slab_calloc, ngx_slab_pool_t, NGX_ERROR, NGX_LOG_EMERG, NGX_MAX_PROCESSES, NGX_OK,
};
use ngx::ngx_log_error;
use smart_imaging_core::exposition::{
    bucket, Histogram, Snapshot, ENCODES_BUCKETS, SECONDS_BUCKETS,
};
use smart_imaging_core::Format;

use crate::config::MainConf;
use crate::result::{self, Report, MAX_REASONS};

// Counters in memory shared between processes must be lock-free hardware
// atomics (a lock-based fallback would keep its lock in one process).
#[cfg(not(target_has_atomic = "64"))]
compile_error!("smart_imaging_status needs 64-bit atomics");

const SECONDS: usize = SECONDS_BUCKETS.len() + 1;
const ENCODES: usize = ENCODES_BUCKETS.len() + 1;
const SLOTS: usize = NGX_MAX_PROCESSES as usize;

/// Marks the zone's data as this layout: a zone kept from a build with
/// another layout (a reload into a new module) gets a fresh table.
const LAYOUT: u64 = 0x5349_5354_0000_0001 ^ size_of::<Metrics>() as u64;

/// A histogram in the zone: observations per bucket (not cumulative), and
/// their sum in the unit's millionths (microseconds) or units.
#[repr(C)]
struct Hist<const N: usize> {
    counts: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> Hist<N> {
    fn observe(&self, bounds: &[f64], value: f64, sum: u64) {
        self.counts[bucket(bounds, value)].fetch_add(1, Relaxed);
        self.sum.fetch_add(sum, Relaxed);
    }

    fn snapshot(&self, scale: f64) -> Histogram {
        Histogram {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum: self.sum.load(Relaxed) as f64 / scale,
        }
    }
}

/// One process's jobs, written by that process only.
#[repr(C)]
struct Jobs {
    /// The process that last used the slot (0: never used).
    pid: AtomicU64,
    queued: AtomicU64,
    running: AtomicU64,
}

/// The zone's table. All-zero is its initial state (the slab allocator
/// hands it out zeroed).
#[repr(C)]
pub struct Metrics {
    layout: AtomicU64,
    requests: AtomicU64,
    /// Per [`Format::ALL`].
    converted: [AtomicU64; Format::ALL.len()],
    /// Per [`result::reasons`].
    originals: [AtomicU64; MAX_REASONS],
    input_bytes: AtomicU64,
    output_bytes: AtomicU64,
    /// Microseconds.
    seconds: Hist<SECONDS>,
    encodes: Hist<ENCODES>,
    /// Per `ngx_process_slot`.
    jobs: [Jobs; SLOTS],
}

/// This worker's table: set by [`attach`] when the worker starts, from its
/// own cycle; null when the configuration counts nothing (and in the
/// master, which serves no requests).
static METRICS: AtomicPtr<Metrics> = AtomicPtr::new(ptr::null_mut());

/// The table of this worker, if its configuration has a status zone.
pub fn get() -> Option<&'static Metrics> {
    // SAFETY: set by `attach` to the table in a zone of the worker's cycle,
    // which stays mapped (MAP_SHARED, inherited over fork) as long as the
    // process lives, 8-byte aligned and initialised (`init_zone`). Shared
    // `&` access is sound although other processes write it: every field
    // is an atomic (interior mutability), and 64-bit atomics are lock-free
    // instructions on the memory itself (see the `compile_error!` above),
    // so they are atomic between processes exactly as between threads:
    // nginx's own ngx_atomic_fetch_add on shared zones rests on the same.
    unsafe { METRICS.load(Relaxed).as_ref() }
}

/// The zone's `init` (nginx calls it in the master, for every
/// configuration loaded, before the workers start): the table left by the
/// previous configuration (`data`) when nginx reuses the zone, else a new
/// one allocated in it.
///
/// # Safety
/// As nginx calls it: a zone of this module whose memory is mapped and
/// set up as a slab pool; `data` null or the zone's data of the previous
/// cycle.
pub unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: the caller's contract. A reused zone's memory is the same
    // mapping as the previous cycle's, so its table (set by this function
    // then) is still there.
    unsafe {
        let old = data.cast::<Metrics>();
        if !old.is_null() && (*old).layout.load(Relaxed) == LAYOUT {
            (*zone).data = data;
            return NGX_OK as ngx_int_t;
        }
        let pool = (*zone).shm.addr.cast::<ngx_slab_pool_t>();
        // Zones of this kind are new in the master on Linux; `exists` is
        // Windows' reattachment.
        if (*zone).shm.exists != 0 && !(*pool).data.is_null() {
            (*zone).data = (*pool).data;
            return NGX_OK as ngx_int_t;
        }
        // Large allocations are whole pages, small ones aligned to their
        // power-of-two size: either way at least 8-byte aligned.
        let table = ngx_slab_calloc(pool, size_of::<Metrics>()).cast::<Metrics>();
        if table.is_null() || table.cast::<u8>().align_offset(align_of::<Metrics>()) != 0 {
            ngx_log_error!(
                NGX_LOG_EMERG,
                (*zone).shm.log,
                "smart_imaging_status_zone \"{}\" has no room for {} bytes of counters",
                String::from_utf8_lossy((*zone).shm.name.as_bytes()),
                size_of::<Metrics>()
            );
            return NGX_ERROR as ngx_int_t;
        }
        (*table).layout.store(LAYOUT, Relaxed);
        (*pool).data = table.cast();
        (*zone).data = table.cast();
    }
    NGX_OK as ngx_int_t
}

/// Worker start (`init_process`): finds the table of `cycle`'s status
/// zone and takes this process's jobs slot, starting from zero.
///
/// # Safety
/// `cycle` must be the process's cycle, its http configuration complete.
pub unsafe fn attach(cycle: *mut ngx_cycle_t) {
    // SAFETY: the http module's conf_ctx is an ngx_http_conf_ctx_t whose
    // main_conf holds this module's MainConf at its ctx_index; its zone's
    // data was set by `init_zone` before the worker was forked, in memory
    // mapped for the whole process.
    let table = unsafe {
        let http = *(*cycle).conf_ctx.add(ngx_http_module.index);
        if http.is_null() {
            return;
        }
        let ctx = http.cast::<ngx_http_conf_ctx_t>();
        let index = crate::ngx_http_smart_imaging_module.ctx_index;
        let main = (*(*ctx).main_conf.add(index)).cast::<MainConf>();
        if main.is_null() || (*main).status_zone.is_null() {
            return;
        }
        (*(*main).status_zone).data.cast::<Metrics>()
    };
    METRICS.store(table, Relaxed);
    if let Some(slot) = get().and_then(Metrics::own_slot) {
        slot.queued.store(0, Relaxed);
        slot.running.store(0, Relaxed);
        slot.pid.store(u64::from(std::process::id()), Relaxed);
    }
}

/// Whether process `pid` is alive (a zombie counts: only briefly, until
/// the master reaps it).
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl Metrics {
    /// This process's jobs slot.
    fn own_slot(&self) -> Option<&Jobs> {
        // SAFETY: set by nginx before the process started, never changed.
        let slot = unsafe { ngx_process_slot };
        self.jobs.get(usize::try_from(slot).ok()?)
    }

    /// Counts one request's result (once per request, at the log phase).
    pub fn record(&self, report: &Report) {
        self.requests.fetch_add(1, Relaxed);
        match report {
            Report::Converted { format, .. } => {
                if let Some(i) = Format::ALL.iter().position(|f| f.name() == *format) {
                    self.converted[i].fetch_add(1, Relaxed);
                }
            }
            Report::Kept(kept) => {
                if let Some(i) = result::reasons().position(|r| r == kept.reason) {
                    self.originals[i].fetch_add(1, Relaxed);
                }
            }
        }
        if let Some((input, output)) = report.served_bytes() {
            self.input_bytes.fetch_add(input as u64, Relaxed);
            self.output_bytes.fetch_add(output as u64, Relaxed);
        }
        if let Some(time) = report.job_time() {
            let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
            self.seconds
                .observe(&SECONDS_BUCKETS, time.as_secs_f64(), micros);
        }
        if let Report::Converted { encodes, .. } = report {
            self.encodes
                .observe(&ENCODES_BUCKETS, *encodes as f64, *encodes as u64);
        }
    }

    /// This worker's queue now (offload's accounting calls it on every
    /// change).
    pub fn set_jobs(&self, queued: usize, running: usize) {
        if let Some(slot) = self.own_slot() {
            slot.queued.store(queued as u64, Relaxed);
            slot.running.store(running as u64, Relaxed);
        }
    }

    /// Every counter now, and the jobs of the live processes.
    pub fn snapshot(&self) -> Snapshot {
        let (mut queued, mut running) = (0, 0);
        for slot in &self.jobs {
            let (q, r) = (slot.queued.load(Relaxed), slot.running.load(Relaxed));
            if (q, r) != (0, 0) && alive(slot.pid.load(Relaxed)) {
                queued += q;
                running += r;
            }
        }
        Snapshot {
            requests: self.requests.load(Relaxed),
            converted: Format::ALL
                .iter()
                .zip(&self.converted)
                .map(|(f, n)| (f.name(), n.load(Relaxed)))
                .collect(),
            originals: result::reasons()
                .zip(&self.originals)
                .map(|(r, n)| (r, n.load(Relaxed)))
                .collect(),
            input_bytes: self.input_bytes.load(Relaxed),
            output_bytes: self.output_bytes.load(Relaxed),
            conversion_seconds: self.seconds.snapshot(1e6),
            conversion_encodes: self.encodes.snapshot(1.0),
            queued,
            running,
        }
    }
}
