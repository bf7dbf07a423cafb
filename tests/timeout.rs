//! `smart_imaging_timeout`: a conversion that takes longer than its deadline
//! (queue wait included) is abandoned and the client gets the original,
//! complete and unchanged; the job runs on, its result discarded, and its
//! place under `smart_imaging_max_jobs` is held until it really finishes.
//! The deadline is capped below `send_timeout`, so a slow conversion can no
//! longer make nginx drop the client ("client timed out", 0 bytes).
//!
//! `cargo test --test timeout -- --nocapture` prints the timings.

mod common;

use std::time::{Duration, Instant};

use common::*;

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_buffer 64m;
        smart_imaging_debug_header on;
        location /images/ {
            smart_imaging on;
        }
        location /slow/ {
            smart_imaging on;
            smart_imaging_timeout 200ms;
            alias {{HTDOCS}}/images/;
        }
        location /slow-shop/ {
            smart_imaging on;
            smart_imaging_timeout 200ms;
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /one/ {
            smart_imaging on;
            smart_imaging_timeout 200ms;
            smart_imaging_max_jobs 1;
            alias {{HTDOCS}}/images/;
        }
        location /one-long/ {
            smart_imaging on;
            smart_imaging_max_jobs 1;
            alias {{HTDOCS}}/images/;
        }
        location /send-timeout/ {
            smart_imaging on;
            send_timeout 1s;
            alias {{HTDOCS}}/images/;
        }
        location /static/ { }
    }
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
    }
"#;

const ACCEPT_ALL: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");

fn astronaut() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap()
}

/// One pool thread, so requests queue behind each other's conversions.
fn start(name: &str) -> (Nginx, String, Vec<u8>) {
    let mut n = Nginx::prepare(name);
    let (big_name, big) = big_image("k4_volna.jpg", (2400, 1600, 3));
    n.put_file(&format!("images/{big_name}"), &big);
    n.put_file("images/ok.jpg", &astronaut());
    n.put_file("static/t.txt", b"text\n");
    let mut cfg = Config::with_module(HTTP);
    cfg.main = "thread_pool smart_imaging threads=1;\n".into();
    n.run(&cfg);
    (n, big_name, big)
}

/// The original response, whole: status, type, length, body, `Vary`.
fn assert_original(r: &Response, big: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    assert_eq!(
        r.content_length(),
        Some(big.len()),
        "{what}\n{}",
        r.describe()
    );
    assert!(
        r.body == big,
        "{what}: body is not the original\n{}",
        r.describe()
    );
    assert!(is_jpeg(&r.body) || is_png(&r.body), "{what}");
    assert!(
        r.vary_has("accept"),
        "{what}: no Vary: Accept\n{}",
        r.describe()
    );
}

/// Waits up to `secs` for `count` lines containing `needle` since `mark`.
fn wait_lines(n: &Nginx, mark: usize, needle: &str, count: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = n
            .error_log_since(mark)
            .lines()
            .filter(|l| l.contains(needle))
            .count();
        if found >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `secs` for `count` lines containing any of `needles` since
/// `mark`.
fn wait_any_lines(n: &Nginx, mark: usize, needles: &[&str], count: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = n
            .error_log_since(mark)
            .lines()
            .filter(|l| needles.iter().any(|needle| l.contains(needle)))
            .count();
        if found >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Conversions queued on one thread, each over the 200 ms deadline: every
/// client gets the original at about the deadline, static and proxied; the
/// jobs still in the module's queue never start, the abandoned ones finish
/// later without crashing anything, and then the module converts again.
#[test]
fn slow_conversions_serve_the_original() {
    let (n, name, big) = start("timeout-original");
    let workers = n.worker_pids();
    let port = n.port();
    let mark = n.error_log_mark();
    let mut abandoned = 0;
    for prefix in ["/slow/", "/slow-shop/"] {
        let url = format!("{prefix}{name}");
        for (i, r) in concurrent(port, &url, 3, &[ACCEPT_ALL]).iter().enumerate() {
            let what = format!("{url} #{i}");
            eprintln!("{what}: {} in {:.0} ms", debug(r), ms(r.elapsed));
            assert_original(r, &big, &what);
            assert!(
                debug(r).starts_with("original reason=timeout in="),
                "{what}\n{}",
                r.describe()
            );
            assert!(
                r.elapsed < Duration::from_secs(5),
                "{what}: took {:.0} ms",
                ms(r.elapsed)
            );
            abandoned += 1;
        }
    }
    let warn = n
        .wait_log_line(
            mark,
            &["[warn]", "not converted", "smart_imaging_timeout 200ms"],
        )
        .expect("a warn line about the timeout");
    eprintln!("{warn}");
    assert!(
        warn.contains("conversion took longer than smart_imaging_timeout 200ms, serving original"),
        "{warn}"
    );

    // The same keep-alive connection goes on after a timed-out response.
    let mut ka = KeepAlive::connect(port);
    ka.send(&format!("/slow/{name}"), &[ACCEPT_ALL]);
    ka.send("/static/t.txt", &[]);
    let r = ka.recv().expect("keep-alive: the image");
    assert_original(&r, &big, "keep-alive");
    let r = ka.recv().expect("keep-alive: the text after it");
    assert_eq!(r.body, b"text\n");
    abandoned += 1;
    drop(ka);

    // Every timed-out job either never started (it was still in the
    // module's queue: smart_imaging_max_running) or finishes, abandoned ...
    let ended = wait_any_lines(
        &n,
        mark,
        &[
            "abandoned conversion finished",
            "queued conversion dropped: not started within smart_imaging_timeout 200ms",
        ],
        abandoned,
        120,
    );
    assert_eq!(ended, abandoned, "{}", n.error_log_since(mark));
    // ... and conversions work again (no job slot leaked).
    let r = get(port, "/images/ok.jpg", &[ACCEPT_ALL]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        debug(&r).starts_with("converted "),
        "after the abandoned jobs\n{}",
        r.describe()
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// An abandoned job still counts under `smart_imaging_max_jobs` until it
/// finishes (it still uses a thread and memory).
#[test]
fn abandoned_jobs_count_against_max_jobs() {
    let (n, name, big) = start("timeout-maxjobs");
    let workers = n.worker_pids();
    let port = n.port();
    let mark = n.error_log_mark();
    let url = format!("/one/{name}");
    let r = get(port, &url, &[ACCEPT_ALL]);
    assert_original(&r, &big, "first");
    assert!(
        debug(&r).starts_with("original reason=timeout"),
        "{}",
        r.describe()
    );
    // Its job is still running: the next one is refused at once.
    let r = get(port, &url, &[ACCEPT_ALL]);
    assert_original(&r, &big, "second");
    assert!(
        debug(&r).starts_with("original reason=busy") && debug(&r).contains("jobs=1"),
        "{}",
        r.describe()
    );
    assert_eq!(
        wait_lines(&n, mark, "abandoned conversion finished", 1, 120),
        1,
        "{}",
        n.error_log_since(mark)
    );
    // With max_jobs 1 (and a longer deadline), a new conversion runs: the
    // count is back to 0.
    let r = get(port, "/one-long/ok.jpg", &[ACCEPT_ALL]);
    assert!(
        debug(&r).starts_with("converted "),
        "the slot is free again\n{}",
        r.describe()
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// `send_timeout 1s` and the default `smart_imaging_timeout` (10 s):
/// requests queued behind slow conversions stop waiting at 90 % of
/// `send_timeout` and get the original, instead of "client timed out" and
/// an empty reply. (Before the deadline existed, they got 0 bytes.)
#[test]
fn send_timeout_caps_the_wait() {
    let (n, name, big) = start("timeout-send");
    let workers = n.worker_pids();
    let port = n.port();
    let mark = n.error_log_mark();
    let url = format!("/send-timeout/{name}");
    let responses = concurrent(port, &url, 4, &[ACCEPT_ALL]);
    let mut timed_out = 0;
    for (i, r) in responses.iter().enumerate() {
        let what = format!("{url} #{i}");
        eprintln!("{what}: {} in {:.0} ms", debug(r), ms(r.elapsed));
        assert_eq!(r.status, 200, "{what}\n{}", r.describe());
        assert_eq!(r.content_length(), Some(r.body.len()), "{what}");
        if debug(r).starts_with("converted ") {
            assert!(r.body != big && !r.body.is_empty(), "{what}");
        } else {
            assert_original(r, &big, &what);
            if debug(r).starts_with("original reason=timeout") {
                timed_out += 1;
            }
        }
    }
    assert!(
        timed_out >= 1,
        "4 queued conversions of a large image on one thread all finished within 900 ms?"
    );
    let warn = n
        .wait_log_line(mark, &["not converted", "90% of send_timeout 1s"])
        .expect("a warn line naming send_timeout");
    eprintln!("{warn}");
    assert!(!n.error_log_since(mark).contains("client timed out"));
    wait_lines(&n, mark, "abandoned conversion finished", timed_out, 120);
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// `smart_imaging_timeout` takes nginx's time syntax, in http, server and
/// location; zero, garbage and duplicates are refused by `nginx -t`.
#[test]
fn timeout_directive_is_checked_by_nginx_t() {
    let site = |at_http: &str, at_location: &str| {
        format!(
            "{at_http}\n    server {{\n        listen 127.0.0.1:{{{{PORT}}}};\n        \
             location / {{\n            smart_imaging on;\n            {at_location}\n        }}\n    }}\n"
        )
    };
    let mut n = Nginx::prepare("timeout-directive");
    for (http, loc) in [
        ("smart_imaging_timeout 30s;", ""),
        ("", "smart_imaging_timeout 500ms;"),
        ("", "smart_imaging_timeout 1m;"),
        ("smart_imaging_timeout 5s;", "smart_imaging_timeout 2s;"),
    ] {
        n.assert_config_accepted(
            &Config::with_module(&site(http, loc)),
            &format!("{http} / {loc}"),
        );
    }
    for (loc, message) in [
        ("smart_imaging_timeout 0;", "invalid value"),
        ("smart_imaging_timeout 0s;", "invalid value"),
        ("smart_imaging_timeout soon;", "invalid value"),
        (
            "smart_imaging_timeout 1s 2s;",
            "invalid number of arguments",
        ),
        (
            "smart_imaging_timeout 1s; smart_imaging_timeout 2s;",
            "is duplicate",
        ),
    ] {
        let line = n.assert_config_refused(&Config::with_module(&site("", loc)), loc, message);
        assert!(
            line.contains("smart_imaging_timeout"),
            "{loc}: the directive is not named in:\n{line}"
        );
    }
}
