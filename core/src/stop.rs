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
//!
//! The same checkpoints serve one conversion that nobody waits for any
//! more (its client went away): the embedder runs it under a [`Cancel`]
//! ([`run_cancellable`]) and sets that when the request ends; the
//! conversion then gives up with [`KeepReason::Cancelled`] at its next
//! step, so that a client that hangs up does not keep a thread busy.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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

/// One conversion's "give up": shared between whoever waits for the
/// result (which sets it) and the thread converting (which checks it at
/// each step, see [`run_cancellable`]).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Nobody wants the result any more.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// The [`Cancel`] of the conversion running on this thread, if any.
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// Runs `f` (a conversion) on this thread with `cancel` as its "give up":
/// every checkpoint it reaches after `cancel` is set fails with
/// [`KeepReason::Cancelled`].
pub fn run_cancellable<T>(cancel: &Cancel, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Cancel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(cancel.clone()));
    let _restore = Restore(previous);
    f()
}

/// `Err(KeepReason::Stopped)` when the process is stopping,
/// `Err(KeepReason::Cancelled)` when the conversion on this thread was
/// cancelled.
pub(crate) fn check() -> Result<(), KeepReason> {
    if stopping() {
        return Err(KeepReason::Stopped);
    }
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled));
    if cancelled {
        Err(KeepReason::Cancelled)
    } else {
        Ok(())
    }
}
