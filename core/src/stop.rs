//! Giving up conversions when the process is going away fast.
//!
//! On `nginx -s stop` (SIGTERM, or SIGINT) a worker exits at once, but
//! nginx's thread pool, on its way out, waits for the task each of its
//! threads is running. A conversion takes seconds on a large image, longer
//! than the master waits before it kills the worker with SIGKILL (about
//! 1.5 s: "worker process ... exited on signal 9", at `alert`). So the
//! embedder registers a check ([`set_check`]: for nginx, "has this worker
//! been told to terminate?"), which a conversion calls before each step
//! (decoding the original, resizing, every encode and every decode the
//! guard makes) and gives up with [`KeepReason::Stopped`] when it says so.
//! A step already started runs to its end: the bound on the worker's exit
//! is the longest single step, not the whole conversion.

use std::sync::OnceLock;

use crate::outcome::KeepReason;

static CHECK: OnceLock<fn() -> bool> = OnceLock::new();

/// Registers `check`, called from the threads that convert; only the first
/// call counts (a process has one way of being told to stop). Without it,
/// conversions never stop early.
pub fn set_check(check: fn() -> bool) {
    let _ = CHECK.set(check);
}

/// Whether the process is stopping.
pub fn stopping() -> bool {
    CHECK.get().is_some_and(|check| check())
}

/// `Err(KeepReason::Stopped)` when the process is stopping.
pub(crate) fn check() -> Result<(), KeepReason> {
    if stopping() {
        Err(KeepReason::Stopped)
    } else {
        Ok(())
    }
}
