//! Overload stays polite: with far more concurrent image requests than the
//! pool can take, the module serves originals at once (`busy`: the queue
//! ahead would outlast `smart_imaging_timeout`, so the request is not
//! queued) instead of letting requests wait for a deadline they cannot
//! meet; conversions it does take finish in time (no `timeout`); a tiny
//! static file on the same worker keeps a p99 of 5 ms or less (or within
//! 1 ms of its p99 under the same load on a location without the module,
//! where the machine itself is slower than that).
//!
//! And the first burst after a start, admitted whole because the worker
//! does not yet know what a conversion costs: once the first conversion
//! finishes, the requests queued too deep to make their deadline are
//! answered at once (`busy`), not at the deadline (`timeout`), and never
//! start a conversion they could not finish.
//!
//! `cargo test --test overload -- --nocapture` prints the figures.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        smart_imaging_max_running 1;
        location /images/ {
            smart_imaging on;
            smart_imaging_timeout 1500ms;
            smart_imaging_max_jobs 512;
            # Every request converts: nothing from earlier ones.
            smart_imaging_stash_path off;
        }
        location /plain/ {
            alias {{HTDOCS}}/images/;
        }
        location /static/ { }
    }
"#;

const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp");
/// Clients, each asking again `THINK` after its answer: ~200 image
/// requests a second, some 30 times what one pool thread converts, but
/// not so many that nginx's event loop itself (plain file serving) is the
/// bottleneck on a 2-core machine.
const CLIENTS: usize = 48;
const THINK: Duration = Duration::from_millis(200);
const LOAD: Duration = Duration::from_secs(6);
const PROBE_EVERY: Duration = Duration::from_millis(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn overload_sheds_to_originals_at_once_and_small_files_stay_fast() {
    let mut n = Nginx::prepare("overload");
    let coffee = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    n.put_file("images/coffee.jpg", &coffee);
    n.put_file("static/t.txt", b"text\n");
    n.run(&Config::with_module(HTTP));
    let workers = n.worker_pids();
    let port = n.port();
    // The worker learns what a conversion costs.
    for _ in 0..3 {
        let r = get(port, "/images/coffee.jpg", &[ACCEPT_WEBP_ONLY]);
        assert!(debug(&r).starts_with("converted "), "{}", r.describe());
    }
    // The same load on a location without the module: what the machine
    // and this test's own clients cost the tiny file.
    let (_, plain_probes) = load(port, "/plain/coffee.jpg", &coffee);
    let mut plain_lat = plain_probes;
    plain_lat.sort();
    let mark = n.error_log_mark();
    let (answers, probes) = load(port, "/images/coffee.jpg", &coffee);
    let count = |prefix: &str| {
        answers
            .iter()
            .filter(|(w, _)| w.starts_with(prefix))
            .count()
    };
    let converted = count("converted ");
    let busy = count("original reason=busy");
    let timeout = count("original reason=timeout");
    let mut busy_lat: Vec<Duration> = answers
        .iter()
        .filter(|(w, _)| w.starts_with("original reason=busy"))
        .map(|(_, d)| *d)
        .collect();
    busy_lat.sort();
    let mut conv_lat: Vec<Duration> = answers
        .iter()
        .filter(|(w, _)| w.starts_with("converted "))
        .map(|(_, d)| *d)
        .collect();
    conv_lat.sort();
    let mut probe_lat = probes.clone();
    probe_lat.sort();
    let p99 = percentile(&probe_lat, 99.0);
    eprintln!(
        "{CLIENTS} clients for {:.0} s: {} answers: {converted} converted (p50 {:.0} ms, max {:.0} ms), \
         {busy} busy (p50 {:.1} ms, p99 {:.1} ms), {timeout} timeout; probe: {} requests, p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        LOAD.as_secs_f64(),
        answers.len(),
        ms(percentile(&conv_lat, 50.0)),
        ms(*conv_lat.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&busy_lat, 50.0)),
        ms(percentile(&busy_lat, 99.0)),
        probe_lat.len(),
        ms(percentile(&probe_lat, 50.0)),
        ms(p99),
        ms(*probe_lat.last().unwrap()),
    );
    let shed_lines = n
        .error_log_since(mark)
        .lines()
        .filter(|l| l.contains("too close to its deadline of 1500 ms, serving original"))
        .count();
    assert!(converted > 0, "nothing converted under overload");
    assert!(busy > 0 && shed_lines > 0, "nothing shed under overload");
    // Requests it took finished within their deadline: at most a stray
    // one (a conversion slowed by the machine past the prediction).
    assert!(
        timeout * 50 <= answers.len(),
        "{timeout} of {} requests timed out: queued although they could not get through",
        answers.len()
    );
    // Shed at once: no waiting for a queue.
    assert!(
        percentile(&busy_lat, 50.0) < Duration::from_millis(50),
        "busy answers were not immediate: p50 {:.1} ms",
        ms(percentile(&busy_lat, 50.0))
    );
    // 5 ms, unless the same load without the module (this test's own
    // clients and the rest of the machine) already costs about that.
    let plain_p99 = percentile(&plain_lat, 99.0);
    let bound = Duration::from_millis(5).max(plain_p99 + Duration::from_millis(1));
    eprintln!(
        "tiny file under the same load without the module: p50 {:.1} ms, p99 {:.1} ms; the bound: {:.1} ms",
        ms(percentile(&plain_lat, 50.0)),
        ms(plain_p99),
        ms(bound)
    );
    assert!(
        p99 <= bound,
        "the tiny file's p99 under overload is {:.1} ms (without the module: {:.1} ms)",
        ms(p99),
        ms(plain_p99)
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// One request for `path` (with a WebP-only `Accept`): its
/// `X-Smart-Imaging` and its time. Whatever it is, it is whole: a WebP, or
/// `original` byte for byte.
fn ask(port: u16, path: &str, original: &[u8]) -> (String, Duration) {
    let r = get(port, path, &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let what = debug(&r).to_owned();
    if what.starts_with("converted ") {
        assert!(is_webp(&r.body), "{what}");
    } else {
        assert!(r.body == *original, "{what}: not the original");
    }
    (what, r.elapsed)
}

/// `CLIENTS` clients asking for `path` (with a WebP-only `Accept`) for
/// `LOAD`, while a probe fetches a tiny static file every `PROBE_EVERY`:
/// each answer (its `X-Smart-Imaging`, its time) and the probe's times.
/// Every answer is checked: a WebP, or `original` byte for byte.
type Answers = Vec<(String, Duration)>;
fn load(port: u16, path: &str, original: &[u8]) -> (Answers, Vec<Duration>) {
    let stop = AtomicBool::new(false);
    let coffee = original;
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (stop, coffee) = (&stop, &coffee);
                s.spawn(move || {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        answers.push(ask(port, path, coffee));
                        std::thread::sleep(THINK);
                    }
                    answers
                })
            })
            .collect();
        // The probe: a tiny file, every 10 ms, once the clients are going.
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let mut probes = Vec::new();
        while start.elapsed() < LOAD {
            let r = get(port, "/static/t.txt", &[]);
            assert_eq!(r.body, b"text\n");
            probes.push(r.elapsed);
            std::thread::sleep(PROBE_EVERY);
        }
        stop.store(true, Ordering::Relaxed);
        let answers: Vec<(String, Duration)> = clients
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (answers, probes)
    })
}

/// Requests of the first burst, all at once: several times what one
/// thread converts before the deadline.
const BURST: usize = 24;

#[test]
fn the_first_burst_is_answered_at_once_where_it_cannot_get_through() {
    let mut n = Nginx::prepare("overload-burst");
    let coffee = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    n.put_file("images/coffee.jpg", &coffee);
    n.run(&Config::with_module(HTTP));
    let workers = n.worker_pids();
    let port = n.port();
    let mark = n.error_log_mark();
    let answers: Vec<(String, Duration)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..BURST)
            .map(|_| {
                let coffee = &coffee;
                s.spawn(move || ask(port, "/images/coffee.jpg", coffee))
            })
            .collect();
        clients.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let log = n.error_log_since(mark);
    let of = |prefix: &str| -> Vec<Duration> {
        let mut v: Vec<Duration> = answers
            .iter()
            .filter(|(w, _)| w.starts_with(prefix))
            .map(|(_, d)| *d)
            .collect();
        v.sort();
        v
    };
    let (converted, busy, timeout) = (
        of("converted "),
        of("original reason=busy"),
        of("original reason=timeout"),
    );
    let late_lines = log
        .lines()
        .filter(|l| l.contains("queued conversion dropped: it would take about"))
        .count();
    let abandoned = log
        .lines()
        .filter(|l| l.contains("abandoned conversion"))
        .count();
    eprintln!(
        "{BURST} requests at once: {} converted (max {:.0} ms), {} busy (max {:.0} ms), {} timeout; \
         {late_lines} dropped as late, {abandoned} abandoned",
        converted.len(),
        ms(*converted.last().unwrap_or(&Duration::ZERO)),
        busy.len(),
        ms(*busy.last().unwrap_or(&Duration::ZERO)),
        timeout.len(),
    );
    assert_eq!(
        converted.len() + busy.len() + timeout.len(),
        BURST,
        "{answers:?}"
    );
    assert!(!converted.is_empty(), "nothing converted: {answers:?}");
    assert!(
        !busy.is_empty() && late_lines == busy.len(),
        "{answers:?}\n{log}"
    );
    // Answered well before the deadline (1.5 s), and no conversion started
    // that could not finish: at most a stray one (a conversion slowed by
    // the machine past the prediction).
    assert!(
        timeout.len() <= 1,
        "{} timed out: {answers:?}",
        timeout.len()
    );
    assert!(abandoned <= 1, "{abandoned} conversions abandoned:\n{log}");
    assert!(
        *busy.last().unwrap() < Duration::from_millis(1200),
        "the late ones waited {:.0} ms",
        ms(*busy.last().unwrap())
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}
