//! The worker's conversion queue (`smart_imaging_max_running`) and the
//! stash of abandoned results (`smart_imaging_stash_path`):
//!
//! - with one conversion running at a time, concurrent requests wait in the
//!   module's queue and are all converted, none `busy` or `timeout`;
//! - a queued job whose deadline passes, or whose client goes away, leaves
//!   the queue and never starts;
//! - a conversion abandoned at its deadline is stashed, and serves the next
//!   requests for the same image and variant (until the entry's TTL), not
//!   another variant;
//! - `smart_imaging_max_jobs` still bounds queued + running.
//!
//! `cargo test --test queue -- --nocapture` prints the timings.

mod common;

use std::io::Write;
use std::net::TcpStream;
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
        }
        location /short/ {
            smart_imaging on;
            smart_imaging_timeout 300ms;
            alias {{HTDOCS}}/images/;
        }
        location /max2/ {
            smart_imaging on;
            smart_imaging_max_jobs 2;
            alias {{HTDOCS}}/images/;
        }
        location /abandon/ {
            smart_imaging on;
            smart_imaging_timeout 1ms;
            alias {{HTDOCS}}/images/;
        }
        location /nostash/ {
            smart_imaging on;
            smart_imaging_timeout 1ms;
            smart_imaging_stash_path off;
            alias {{HTDOCS}}/images/;
        }
        location /static/ { }
    }
"#;

const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif");
const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp");

/// Two pool threads (so only `smart_imaging_max_running 1` bounds the
/// conversions), one worker.
fn start(name: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    for (file, as_name) in [
        ("sk_astronaut.jpg", "ok.jpg"),
        ("sk_coffee.jpg", "coffee.jpg"),
    ] {
        let bytes = std::fs::read(samples_dir().join(file)).unwrap();
        n.put_file(&format!("images/{as_name}"), &bytes);
    }
    // Seconds to convert to AVIF with the guard on, whatever the machine
    // (a 0.7 MP sample PNG took 0.4 s once the guard got cheaper: too fast
    // to hold the queue past a 300 ms deadline).
    n.put_file("images/slow.png", &synthetic_photo_png(1200, 900, 7));
    n.put_file("static/t.txt", b"text\n");
    let mut cfg = Config::with_module(HTTP);
    cfg.main = "thread_pool smart_imaging threads=2;\n".into();
    n.run(&cfg);
    n
}

/// Waits up to `secs` for `count` module `info` lines since `mark` that
/// start with `prefix` and end with `suffix`.
fn wait_count(
    n: &Nginx,
    mark: usize,
    (prefix, suffix): (&str, &str),
    count: usize,
    secs: u64,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = info_lines(n, mark, prefix, "")
            .iter()
            .filter(|m| m.ends_with(suffix))
            .count();
        if found >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a long conversion (`slow.png` to AVIF) in the background and
/// waits until it runs, so that the next conversions queue behind it.
fn occupy(n: &Nginx) -> std::thread::JoinHandle<Response> {
    let port = n.port();
    let mark = n.error_log_mark();
    let handle = std::thread::spawn(move || get(port, "/images/slow.png", &[ACCEPT_AVIF]));
    // Its body is buffered and posted within a few milliseconds.
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        !n.error_log_since(mark).contains("converted to"),
        "slow.png converted too fast to hold the queue"
    );
    handle
}

/// `smart_imaging_max_running 1` and five concurrent requests: one runs,
/// the others wait in the module's queue, started one after the other;
/// every one is converted, none `busy` or `timeout`.
#[test]
fn queued_requests_all_convert() {
    let n = start("queue-all");
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let responses = concurrent(n.port(), "/images/ok.jpg", 5, &[ACCEPT_WEBP_ONLY]);
    for (i, r) in responses.iter().enumerate() {
        eprintln!("#{i}: {} in {:.0} ms", debug(r), ms(r.elapsed));
        assert_eq!(r.status, 200, "#{i}\n{}", r.describe());
        assert!(
            debug(r).starts_with("converted format=webp "),
            "#{i}\n{}",
            r.describe()
        );
        assert!(is_webp(&r.body), "#{i}");
    }
    let queued = info_lines(&n, mark, "conversion queued: ", "");
    let started = info_lines(&n, mark, "queued conversion started after waiting ", "");
    eprintln!("{}", queued.join("\n"));
    assert!(
        !queued.is_empty(),
        "no conversion was queued:\n{}",
        n.error_log_since(mark)
    );
    // Each queued line says what was ahead: one running, then the queue.
    for (i, line) in queued.iter().enumerate() {
        assert_eq!(
            line,
            &format!(
                "conversion queued: 1 running (smart_imaging_max_running 1), {i} waiting before it"
            ),
            "{}",
            queued.join("\n")
        );
    }
    assert_eq!(started.len(), queued.len(), "every queued job started");
    assert!(info_lines(&n, mark, "queued conversion dropped", "").is_empty());
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// A job queued behind a long conversion, with a 300 ms deadline: at the
/// deadline it leaves the queue, is never started, and the client gets the
/// original (`reason=timeout`).
#[test]
fn queued_job_past_its_deadline_never_starts() {
    let n = start("queue-deadline");
    let workers = n.worker_pids();
    let original = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    let busy = occupy(&n);
    let mark = n.error_log_mark();
    let r = get(n.port(), "/short/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    eprintln!("{} in {:.0} ms", debug(&r), ms(r.elapsed));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body == original, "not the original\n{}", r.describe());
    assert!(
        debug(&r).starts_with("original reason=timeout in="),
        "{}",
        r.describe()
    );
    n.wait_module_log(
        mark,
        "info",
        "conversion queued: 1 running (smart_imaging_max_running 1), 0 waiting before it",
    )
    .expect("the queued line");
    let line = n
        .wait_module_log(
            mark,
            "info",
            "queued conversion dropped: not started within smart_imaging_timeout 300ms (… ms)",
        )
        .expect("the dropped line");
    eprintln!("{line}");
    n.wait_module_log(
        mark,
        "warn",
        "\"/short/ok.jpg\" not converted (… ms): conversion took longer than smart_imaging_timeout 300ms, serving original",
    )
    .expect("the usual timeout line");
    // The long conversion ends; the dropped job never starts.
    let r = busy.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        info_lines(&n, mark, "queued conversion started", "").is_empty(),
        "{}",
        n.error_log_since(mark)
    );
    // Nothing leaked: a conversion runs at once.
    let r = get(n.port(), "/images/coffee.jpg", &[ACCEPT_WEBP_ONLY]);
    assert!(debug(&r).starts_with("converted "), "{}", r.describe());
    assert!(info_lines(&n, mark, "conversion queued", "").len() == 1);
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// A client that closes its connection while its job is queued: the job
/// leaves the queue at once and never runs.
#[test]
fn client_gone_while_queued_drops_the_job() {
    let n = start("queue-gone");
    let workers = n.worker_pids();
    let busy = occupy(&n);
    let mark = n.error_log_mark();
    let mut s = TcpStream::connect(("127.0.0.1", n.port())).unwrap();
    s.write_all(b"GET /images/ok.jpg HTTP/1.1\r\nHost: localhost\r\nAccept: image/webp\r\n\r\n")
        .unwrap();
    n.wait_module_log(
        mark,
        "info",
        "conversion queued: 1 running (smart_imaging_max_running 1), 0 waiting before it",
    )
    .expect("the queued line");
    drop(s);
    let line = n
        .wait_module_log(
            mark,
            "info",
            "queued conversion dropped: client closed the connection (… ms)",
        )
        .unwrap_or_else(|| panic!("no dropped line:\n{}", n.error_log_since(mark)));
    eprintln!("{line}");
    // While the long conversion still runs: the slot was freed, so another
    // request queues first in line.
    let r = busy.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        info_lines(&n, mark, "queued conversion started", "").is_empty(),
        "the dropped job started:\n{}",
        n.error_log_since(mark)
    );
    // The access log has the request, ended by the client (499), with its
    // result.
    let access = std::fs::read_to_string(n.prefix.join("logs/access.log")).unwrap();
    assert!(
        access.contains("\"GET /images/ok.jpg HTTP/1.1\" 499"),
        "{access}"
    );
    let r = get(n.port(), "/images/coffee.jpg", &[ACCEPT_WEBP_ONLY]);
    assert!(debug(&r).starts_with("converted "), "{}", r.describe());
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// A conversion abandoned at its (1 ms) deadline is stashed when it
/// finishes; the next requests for the same image and variant get it
/// (`from=stash`), as long as the entry lives; a request for another
/// variant does not.
#[test]
fn abandoned_result_serves_the_next_identical_request() {
    let n = start("queue-stash");
    let workers = n.worker_pids();
    let port = n.port();
    let original = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    assert!(
        stash_entries(&n).is_empty(),
        "nginx creates the stash empty"
    );
    let mark = n.error_log_mark();
    let r = get(port, "/abandon/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert!(
        debug(&r).starts_with("original reason=timeout"),
        "{}",
        r.describe()
    );
    assert!(r.body == original);
    assert_eq!(
        wait_count(
            &n,
            mark,
            (
                "abandoned conversion finished after ",
                " ms), result stashed"
            ),
            1,
            60
        ),
        1,
        "{}",
        n.error_log_since(mark)
    );
    // The write is a pool task of its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stash_entries(&n).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let entries = stash_entries(&n);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()));

    // Another variant (AVIF) of the same image, where requests wait long
    // enough: converted, not from the stash, which keeps its entry.
    let r = get(port, "/images/ok.jpg", &[ACCEPT_AVIF]);
    assert!(
        debug(&r).starts_with("converted format=avif ") && !debug(&r).contains("from=stash"),
        "{}",
        r.describe()
    );
    assert_eq!(stash_entries(&n), entries);

    // The same variant (the plan does not depend on the timeout): served
    // from the stash, WebP, and the entry stays.
    let mark = n.error_log_mark();
    let r = get(port, "/images/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    eprintln!("{}", debug(&r));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        debug(&r).starts_with("converted format=webp ") && debug(&r).ends_with(" from=stash"),
        "{}",
        r.describe()
    );
    assert!(is_webp(&r.body), "{}", r.describe());
    assert_eq!(r.content_type(), Some("image/webp"));
    assert_eq!(r.content_length(), Some(r.body.len()));
    let line = n
        .wait_log_line(mark, &["[info]", "\"/images/ok.jpg\" converted to webp"])
        .expect("the converted line");
    let message = module_log_message(&line, "info").unwrap();
    let expected = format!(
        "\"/images/ok.jpg\" converted to webp: {} -> {} bytes in ",
        original.len(),
        r.body.len()
    );
    assert!(
        message.starts_with(&expected) && message.ends_with(" ms, from the stash"),
        "{message}"
    );
    assert_eq!(stash_entries(&n), entries, "the entry serves on");

    // The next identical requests too, with the same bytes.
    let again = get(port, "/images/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert!(
        debug(&again).starts_with("converted format=webp ")
            && debug(&again).ends_with(" from=stash"),
        "{}",
        again.describe()
    );
    assert!(again.body == r.body);
    assert_eq!(stash_entries(&n), entries);

    // With the stash off, an abandoned result is discarded.
    let mark = n.error_log_mark();
    let r = get(port, "/nostash/coffee.jpg", &[ACCEPT_WEBP_ONLY]);
    assert!(debug(&r).starts_with("original reason=timeout"));
    assert_eq!(
        wait_count(
            &n,
            mark,
            (
                "abandoned conversion finished after ",
                " ms), result discarded"
            ),
            1,
            60
        ),
        1,
        "{}",
        n.error_log_since(mark)
    );
    assert_eq!(stash_entries(&n), entries, "nothing more stashed");
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// `smart_imaging_max_jobs 2` with `smart_imaging_max_running 1`: one
/// runs, one waits, the others get the original at once (`busy`).
#[test]
fn max_jobs_bounds_queued_and_running() {
    let n = start("queue-maxjobs");
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let busy = occupy(&n);
    let responses = concurrent(n.port(), "/max2/ok.jpg", 3, &[ACCEPT_WEBP_ONLY]);
    let mut refused = 0;
    for (i, r) in responses.iter().enumerate() {
        eprintln!("#{i}: {} in {:.0} ms", debug(r), ms(r.elapsed));
        assert_eq!(r.status, 200, "#{i}\n{}", r.describe());
        if debug(r).starts_with("original reason=busy") {
            assert!(debug(r).contains(" jobs=2"), "{}", r.describe());
            refused += 1;
        } else {
            assert!(debug(r).starts_with("converted "), "{}", r.describe());
        }
    }
    assert_eq!(refused, 2, "1 running + 1 queued, 2 refused");
    n.wait_module_log(
        mark,
        "warn",
        "2 transcodes in progress (smart_imaging_max_jobs), serving original",
    )
    .expect("the busy line");
    let _ = busy.join();
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// The new directives as `nginx -t` reads them.
#[test]
fn directives_are_checked_by_nginx_t() {
    let site = |directive: &str| {
        format!(
            "    server {{\n        listen 127.0.0.1:{{{{PORT}}}};\n        \
             location / {{\n            smart_imaging on;\n            {directive}\n        }}\n    }}\n"
        )
    };
    let mut n = Nginx::prepare("queue-directives");
    for ok in [
        "smart_imaging_max_running auto;",
        "smart_imaging_max_running 4;",
        "smart_imaging_stash_path off;",
        "smart_imaging_stash_path stash;",
        "smart_imaging_stash_path {{PREFIX}}/st max_size=1m ttl=10s;",
    ] {
        n.assert_config_accepted(&Config::with_module(&site(ok)), ok);
    }
    for (bad, message) in [
        (
            "smart_imaging_max_running 0;",
            "value must be equal to or greater than 1",
        ),
        (
            "smart_imaging_max_running many;",
            "\"smart_imaging_max_running\" directive invalid number",
        ),
        (
            "smart_imaging_stash_path st max_size=0;",
            "invalid max_size \"0\"",
        ),
        ("smart_imaging_stash_path st ttl=0;", "invalid ttl \"0\""),
        (
            "smart_imaging_stash_path st levels=1:2;",
            "invalid parameter \"levels=1:2\"",
        ),
        (
            "smart_imaging_stash_path {{PREFIX}}/proxy_temp;",
            "the same path name",
        ),
    ] {
        n.assert_config_refused(&Config::with_module(&site(bad)), bad, message);
    }
}

/// `smart_imaging_max_running auto` is the worker's share of the CPUs:
/// all of them with one worker process, one each when there are as many
/// workers as CPUs (what the queued line reports as the bound).
#[test]
fn auto_shares_the_cpus_among_worker_processes() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (workers, expected) in [(1, cpus), (cpus, 1)] {
        let mut n = Nginx::prepare(&format!("queue-auto-{workers}"));
        let bytes = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
        n.put_file("images/ok.jpg", &bytes);
        let mut cfg = Config::with_module(&HTTP.replace(
            "smart_imaging_max_running 1;",
            "smart_imaging_max_running auto;",
        ));
        cfg.main = "thread_pool smart_imaging threads=32;\n".into();
        cfg.workers = u32::try_from(workers).unwrap();
        n.run(&cfg);
        let mark = n.error_log_mark();
        let responses = concurrent(
            n.port(),
            "/images/ok.jpg",
            3 * cpus + 2,
            &[ACCEPT_WEBP_ONLY],
        );
        for r in &responses {
            assert_eq!(r.status, 200, "{}", r.describe());
        }
        let queued = info_lines(&n, mark, "conversion queued: ", "");
        assert!(
            !queued.is_empty(),
            "{workers} workers: nothing queued\n{}",
            n.error_log_since(mark)
        );
        let bound = format!("running (smart_imaging_max_running {expected}),");
        for line in &queued {
            assert!(line.contains(&bound), "{workers} workers: {line}");
        }
        assert_no_alerts(&n);
    }
}
