//! `smart_imaging_core::stop`: a conversion gives up with
//! `KeepReason::Stopped` at its next step once the registered check says
//! the process is stopping (nginx registers "has this worker been told to
//! terminate?"). The check here reads a flag of the calling thread, so that
//! nothing else in this test binary sees it.

use std::cell::Cell;

use smart_imaging_core::{stop, transcode, Format, KeepReason, Limits, Outcome, Plan};

thread_local! {
    /// Checks made on this thread so far.
    static CALLS: Cell<usize> = const { Cell::new(0) };
    /// The check says "stopping" once more than this many were made.
    static STOP_AFTER: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn check() -> bool {
    let calls = CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    calls > STOP_AFTER.with(Cell::get)
}

fn coffee() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/sk_coffee.jpg"
    ))
    .unwrap()
}

fn run(stop_after: usize) -> (Outcome, usize) {
    stop::set_check(check);
    CALLS.with(|c| c.set(0));
    STOP_AFTER.with(|s| s.set(stop_after));
    // The default plan for WebP: the visual-quality guard on, so a search.
    let plan = Plan::new(vec![Format::WebP]);
    let outcome = transcode(&coffee(), &plan, &Limits::default());
    (outcome, CALLS.with(Cell::get))
}

#[test]
fn a_conversion_checks_before_each_step_and_gives_up_when_stopping() {
    // Not stopping: it converts, having checked before each step (decode,
    // resize, every encode and every decode of the guard's search).
    let (outcome, checks) = run(usize::MAX);
    assert!(
        matches!(outcome, Outcome::Converted(_)),
        "not stopping: {outcome:?}"
    );
    assert!(checks >= 4, "only {checks} checks in a guarded conversion");
    eprintln!("{checks} checks in a guarded conversion to WebP");
    // Stopping from the start: nothing is decoded.
    let (outcome, first) = run(0);
    assert!(
        matches!(outcome, Outcome::Original(KeepReason::Stopped)),
        "stopping: {outcome:?}"
    );
    assert_eq!(first, 1);
    // Stopping half-way through the search: it gives up at the next step.
    let half = checks / 2;
    let (outcome, checks) = run(half);
    assert!(
        matches!(outcome, Outcome::Original(KeepReason::Stopped)),
        "stopping half-way: {outcome:?}"
    );
    assert_eq!(checks, half + 1);
    assert_eq!(KeepReason::Stopped.code(), "stopped");
    assert!(!KeepReason::Stopped.is_failure());
}

#[test]
fn a_cancelled_conversion_gives_up_at_its_next_step() {
    let plan = Plan::new(vec![Format::WebP]);
    // Cancelled before it starts: nothing is decoded.
    let cancel = stop::Cancel::new();
    cancel.cancel();
    let outcome =
        stop::run_cancellable(&cancel, || transcode(&coffee(), &plan, &Limits::default()));
    assert!(
        matches!(outcome, Outcome::Original(KeepReason::Cancelled)),
        "cancelled: {outcome:?}"
    );
    // Cancelled by another thread while it runs: it gives up at a later
    // step (or has finished, if it was quicker than the cancel).
    let cancel = stop::Cancel::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            cancel.cancel();
        })
    };
    let outcome =
        stop::run_cancellable(&cancel, || transcode(&coffee(), &plan, &Limits::default()));
    canceller.join().unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Original(KeepReason::Cancelled) | Outcome::Converted(_)
        ),
        "{outcome:?}"
    );
    // Not cancelled, or outside run_cancellable: it converts; the token is
    // this thread's only while the closure runs.
    let outcome = stop::run_cancellable(&stop::Cancel::new(), || {
        transcode(&coffee(), &plan, &Limits::default())
    });
    assert!(matches!(outcome, Outcome::Converted(_)), "{outcome:?}");
    let outcome = transcode(&coffee(), &plan, &Limits::default());
    assert!(matches!(outcome, Outcome::Converted(_)), "{outcome:?}");
    assert_eq!(KeepReason::Cancelled.code(), "cancelled");
    assert!(!KeepReason::Cancelled.is_failure());
}
