//! `smart_imaging_background on` (issue #9, "the first visitor"): a
//! request whose result is not in the stash gets the original at once
//! (`reason=deferred`, not to be stored by any cache), while its
//! conversion runs on the thread pool without it, into the stash; the next
//! requests for that image and variant get the result from the stash, for
//! as long as the entry lives.
//!
//! - the first request is the original, fast, marked `no-store`; then the
//!   derivative, from the stash, again and again; another variant is
//!   deferred on its own;
//! - concurrent first requests start one conversion;
//! - with `smart_imaging_max_jobs` reached, the original is served and
//!   nothing is queued (`busy`);
//! - a conversion that keeps the original stashes that too: the next
//!   requests get the original for its reason, cacheable;
//! - through the cache tier (`nginx-conf/cache-tier.conf`), the front does
//!   not store the stand-in, and stores the derivative;
//! - a reload with background conversions running and queued crashes
//!   nothing; the new worker starts them again;
//! - `nginx -t` refuses the mode without a stash.
//!
//! `cargo test --test background -- --ignored --nocapture first_visitor`
//! measures the first-visitor latency (docs/benchmarks.md).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use smart_imaging_core::codecs::{avif, webp};

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        smart_imaging_ttl 1h;
        location /images/ {
            smart_imaging on;
            smart_imaging_background on;
        }
        location /one/ {
            smart_imaging on;
            smart_imaging_background on;
            smart_imaging_max_jobs 1;
            alias {{HTDOCS}}/images/;
        }
        location /noguard/ {
            smart_imaging on;
            smart_imaging_background on;
            smart_imaging_guard off;
            alias {{HTDOCS}}/images/;
        }
        location /wait/ {
            smart_imaging on;
            alias {{HTDOCS}}/images/;
        }
        location /serial/ {
            smart_imaging on;
            smart_imaging_background on;
            smart_imaging_max_running 1;
            alias {{HTDOCS}}/images/;
        }
        location /static/ { }
    }
"#;

const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp,*/*");
const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");

/// The ~1 MP photo of the issue (`lom_picos.jpg`, 1280x960), or a
/// generated photo-like PNG of that size without the corpus.
fn photo() -> (String, Vec<u8>) {
    big_image("lom_picos.jpg", (1280, 960, 7))
}

/// A 1-bit grayscale noise PNG: tiny, and lossy WebP of it is much larger
/// (`not-smaller` with the guard off).
fn noise_png() -> Vec<u8> {
    let (width, height) = (64u32, 64u32);
    let row = width.div_ceil(8) as usize;
    let mut rng = Rng::new(5);
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0);
        raw.extend(rng.bytes(row));
    }
    png_raw(width, height, 1, 0, &zlib_stored(&raw))
}

/// One worker, four pool threads (a lookup finds a thread while
/// conversions run), the photo as `images/<big>`, the samples as
/// `ok.jpg`, `coffee.jpg`, `slow.png`, and `noise.png`.
fn start(name: &str) -> (Nginx, String, Vec<u8>) {
    let mut n = Nginx::prepare(name);
    let (big_name, big) = photo();
    n.put_file(&format!("images/{big_name}"), &big);
    for (file, as_name) in [
        ("sk_astronaut.jpg", "ok.jpg"),
        ("sk_coffee.jpg", "coffee.jpg"),
        ("ukui_desert.png", "slow.png"),
    ] {
        n.put_file(
            &format!("images/{as_name}"),
            &fs::read(samples_dir().join(file)).unwrap(),
        );
    }
    n.put_file("images/noise.png", &noise_png());
    n.put_file("static/t.txt", b"text\n");
    n.run(&config());
    (n, big_name, big)
}

fn config() -> Config {
    let mut cfg = Config::with_module(HTTP);
    cfg.main = "thread_pool smart_imaging threads=4;\n".into();
    cfg
}

/// Waits up to `secs` for `count` such messages; returns those found.
fn wait_info(
    n: &Nginx,
    mark: usize,
    (prefix, suffix): (&str, &str),
    count: usize,
    secs: u64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = info_lines(n, mark, prefix, suffix);
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The line a background conversion of `uri` writes once its result is in
/// the stash.
fn stashed(uri: &str) -> (String, &'static str) {
    (
        format!("background conversion of \"{uri}\" finished after "),
        " ms), result stashed",
    )
}

/// Waits (up to 120 s) for the background conversion of `uri` to be in
/// the stash; returns how long it ran, in ms, from its line.
fn wait_stashed(n: &Nginx, mark: usize, uri: &str) -> f64 {
    let (prefix, suffix) = stashed(uri);
    let lines = wait_info(n, mark, (&prefix, suffix), 1, 120);
    assert_eq!(
        lines.len(),
        1,
        "{uri}: no (or more than one) stashed line:\n{}",
        n.error_log_since(mark)
    );
    let ran = lines[0]
        .split("(ran ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no run time in {}", lines[0]));
    eprintln!("{}", lines[0]);
    ran
}

/// The stand-in: the original, whole, marked for no cache to keep.
fn assert_stand_in(r: &Response, original: &[u8], reason: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    assert!(
        r.body == original,
        "{what}: not the original\n{}",
        r.describe()
    );
    assert_eq!(r.content_length(), Some(original.len()), "{what}");
    assert!(
        matches!(r.content_type(), Some("image/jpeg" | "image/png")),
        "{what}\n{}",
        r.describe()
    );
    assert!(
        debug(r).starts_with(&format!("original reason={reason} in={} ", original.len())),
        "{what}\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-store"),
        "{what}: smart_imaging_ttl's max-age replaced\n{}",
        r.describe()
    );
    assert_eq!(r.header("X-Accel-Expires"), Some("0"), "{what}");
    assert!(r.header("Expires").is_none(), "{what}");
    assert!(r.vary_has("Accept"), "{what}: no Vary: Accept");
}

/// A derivative from the stash, of `format` (`avif|webp`: either), decoded
/// to `dims`.
fn assert_from_stash(r: &Response, format: &str, dims: (u32, u32), what: &str) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    let served = debug(r)
        .strip_prefix("converted format=")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("");
    assert!(
        format.split('|').any(|f| f == served) && debug(r).ends_with(" from=stash"),
        "{what}\n{}",
        r.describe()
    );
    let format = served;
    assert_eq!(
        r.content_type(),
        Some(format!("image/{format}").as_str()),
        "{what}"
    );
    assert_eq!(r.content_length(), Some(r.body.len()), "{what}");
    let img = match format {
        "webp" => webp::decode(&r.body).expect("a valid WebP"),
        "avif" => avif::decode(&r.body).expect("a valid AVIF"),
        other => panic!("{other}?"),
    };
    assert_eq!((img.width, img.height), dims, "{what}");
    assert_eq!(
        r.header("Cache-Control"),
        Some("max-age=3600"),
        "{what}: cacheable\n{}",
        r.describe()
    );
    assert!(r.header("X-Accel-Expires").is_none(), "{what}");
    assert!(r.vary_has("Accept"), "{what}: no Vary: Accept");
    let etag = r.header("ETag").unwrap_or("");
    assert!(
        etag.starts_with("W/\"") && etag.contains(format),
        "{what}: {etag}"
    );
}

/// Whether the ETag of a derivative (`W/"<etag>-<variant>"`) names a
/// variant of `formats` (`avif+webp`, `webp`).
fn etag_names(r: &Response, formats: &str) -> bool {
    r.header("ETag")
        .is_some_and(|e| e.contains(&format!("-{formats}-q")))
}

/// The first request for a ~1 MP photo gets the original at once; once its
/// background conversion is stashed, every next request for that variant
/// gets the WebP; another variant (AVIF) starts over.
#[test]
fn first_request_gets_the_original_then_the_stash_serves() {
    let (n, name, big) = start("background-first");
    let workers = n.worker_pids();
    let port = n.port();
    let uri = format!("/images/{name}");
    // A warm connection path: the first request of a new worker is not
    // what is measured here.
    assert_eq!(get(port, "/static/t.txt", &[]).body, b"text\n");

    let mark = n.error_log_mark();
    let r = get(port, &uri, &[ACCEPT_WEBP_ONLY]);
    eprintln!("first: {} in {:.1} ms", debug(&r), ms(r.elapsed));
    assert_stand_in(&r, &big, "deferred", "first request");
    let first = r.elapsed;
    n.wait_module_log(
        mark,
        "info",
        &format!("\"{uri}\" deferred (… ms): converting it in the background, serving original"),
    )
    .unwrap_or_else(|| panic!("no deferred line:\n{}", n.error_log_since(mark)));
    let ran = wait_stashed(&n, mark, &uri);
    assert!(
        first < Duration::from_millis(100),
        "the original took {:.1} ms (the conversion ran {ran:.0} ms)",
        ms(first)
    );
    assert!(ms(first) * 4.0 < ran, "{:.1} ms vs {ran:.0} ms", ms(first));
    assert_eq!(stash_entries(&n).len(), 1);

    // The next requests: the WebP, from the stash, every time.
    let dims = header_dims(&big).expect("the photo's size");
    let second = get(port, &uri, &[ACCEPT_WEBP_ONLY]);
    eprintln!("second: {} in {:.1} ms", debug(&second), ms(second.elapsed));
    assert_from_stash(&second, "webp", dims, "second request");
    for i in 0..3 {
        let r = get(port, &uri, &[ACCEPT_WEBP_ONLY]);
        assert_from_stash(&r, "webp", dims, &format!("request {}", i + 3));
        assert!(r.body == second.body, "the same bytes every time");
        assert_eq!(r.header("ETag"), second.header("ETag"));
    }
    // Another Accept that negotiates the same variant: the same entry.
    let r = get(port, &uri, &[("Accept", "image/webp;q=0.8, image/*")]);
    assert_from_stash(&r, "webp", dims, "same variant, other Accept");
    assert!(r.body == second.body);
    assert_eq!(stash_entries(&n).len(), 1, "the entry stays");
    // Nothing converted again: one background conversion in all.
    let converting = info_lines(
        &n,
        mark,
        "",
        ": converting it in the background, serving original",
    );
    assert_eq!(converting.len(), 1, "{converting:?}");

    // Another variant (AVIF): deferred on its own, then served.
    let mark = n.error_log_mark();
    let r = get(port, &uri, &[ACCEPT_AVIF]);
    eprintln!("avif first: {} in {:.1} ms", debug(&r), ms(r.elapsed));
    assert_stand_in(&r, &big, "deferred", "first AVIF request");
    wait_stashed(&n, mark, &uri);
    // (AVIF if it passes the guard and is smaller, else WebP.)
    let r = get(port, &uri, &[ACCEPT_AVIF]);
    assert_from_stash(&r, "avif|webp", dims, "second AVIF request");
    assert!(etag_names(&r, "avif+webp"), "{}", r.describe());
    assert!(etag_names(&second, "webp"), "{}", second.describe());
    assert_eq!(stash_entries(&n).len(), 2);
    // The WebP entry is still there.
    let r = get(port, &uri, &[ACCEPT_WEBP_ONLY]);
    assert!(r.body == second.body, "{}", r.describe());

    // A client that takes nothing better: the original, as ever (not
    // deferred, cacheable).
    let r = get(port, &uri, &[("Accept", "*/*")]);
    assert!(r.body == big);
    assert!(
        debug(&r).starts_with("original reason=nothing-to-do"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// Concurrent first requests for one image and variant: each gets the
/// original at once, and one conversion runs.
#[test]
fn concurrent_first_requests_start_one_conversion() {
    let (n, name, big) = start("background-concurrent");
    let workers = n.worker_pids();
    let uri = format!("/images/{name}");
    let mark = n.error_log_mark();
    let responses = concurrent(n.port(), &uri, 6, &[ACCEPT_WEBP_ONLY]);
    for (i, r) in responses.iter().enumerate() {
        eprintln!("#{i}: {} in {:.1} ms", debug(r), ms(r.elapsed));
        assert_stand_in(r, &big, "deferred", &format!("#{i}"));
    }
    let started = info_lines(
        &n,
        mark,
        "",
        ": converting it in the background, serving original",
    );
    let joined = info_lines(
        &n,
        mark,
        "",
        ": already being converted in the background, serving original",
    );
    assert_eq!(
        (started.len(), joined.len()),
        (1, 5),
        "{}",
        n.error_log_since(mark)
    );
    wait_stashed(&n, mark, &uri);
    // No second conversion follows.
    std::thread::sleep(Duration::from_millis(300));
    let (prefix, _) = stashed(&uri);
    assert_eq!(info_lines(&n, mark, &prefix, "").len(), 1);
    let r = get(n.port(), &uri, &[ACCEPT_WEBP_ONLY]);
    assert_from_stash(&r, "webp", header_dims(&big).unwrap(), "after");
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// `smart_imaging_max_jobs 1` with a slow background conversion running:
/// a first request for another image gets the original (`busy`, not to be
/// cached), and nothing is queued; once the slot is free, it is deferred
/// as usual.
#[test]
fn full_queue_serves_the_original_and_queues_nothing() {
    let (n, _, _) = start("background-full");
    let workers = n.worker_pids();
    let port = n.port();
    let slow = fs::read(samples_dir().join("ukui_desert.png")).unwrap();
    let ok = fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    let mark = n.error_log_mark();
    let r = get(port, "/one/slow.png", &[ACCEPT_AVIF]);
    assert_stand_in(&r, &slow, "deferred", "the slow one");
    let r = get(port, "/one/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    eprintln!("{} in {:.1} ms", debug(&r), ms(r.elapsed));
    assert_stand_in(&r, &ok, "busy", "while the slow one runs");
    assert!(debug(&r).contains(" jobs=1"), "{}", r.describe());
    assert!(
        info_lines(&n, mark, "", "")
            .iter()
            .all(|m| !m.contains("ok.jpg")),
        "{}",
        n.error_log_since(mark)
    );
    n.wait_module_log(
        mark,
        "warn",
        "1 transcodes in progress (smart_imaging_max_jobs), serving original",
    )
    .expect("the busy line");
    assert!(info_lines(&n, mark, "background conversion queued", "").is_empty());
    assert!(
        !n.error_log_since(mark).contains("slow.png\" finished"),
        "the slow conversion finished too soon for this test"
    );
    wait_stashed(&n, mark, "/one/slow.png");
    assert_eq!(
        info_lines(&n, mark, "background conversion of", "").len(),
        1,
        "only the slow one ran:\n{}",
        n.error_log_since(mark)
    );
    // The slot is free again.
    let mark = n.error_log_mark();
    let r = get(port, "/one/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_stand_in(&r, &ok, "deferred", "afterwards");
    wait_stashed(&n, mark, "/one/ok.jpg");
    let r = get(port, "/one/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_from_stash(&r, "webp", (512, 512), "afterwards, again");
    let r = get(port, "/one/slow.png", &[ACCEPT_AVIF]);
    assert!(debug(&r).ends_with(" from=stash"), "{}", r.describe());
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// A background conversion that keeps the original (`not-smaller`) stashes
/// that outcome: the next requests get the original for that reason at
/// once, cacheable like any such response, and nothing converts again.
#[test]
fn a_kept_original_is_stashed_too() {
    let (n, _, _) = start("background-kept");
    let workers = n.worker_pids();
    let port = n.port();
    let noise = noise_png();
    let mark = n.error_log_mark();
    let r = get(port, "/noguard/noise.png", &[ACCEPT_WEBP_ONLY]);
    assert_stand_in(&r, &noise, "deferred", "first");
    wait_stashed(&n, mark, "/noguard/noise.png");
    for i in 0..2 {
        let r = get(port, "/noguard/noise.png", &[ACCEPT_WEBP_ONLY]);
        assert!(r.body == noise, "#{i}");
        assert_eq!(r.content_type(), Some("image/png"));
        let d = debug(&r);
        assert!(
            d.starts_with(&format!(
                "original reason=not-smaller in={} out=",
                noise.len()
            )) && d.ends_with(" from=stash"),
            "#{i}\n{}",
            r.describe()
        );
        assert_eq!(r.header("Cache-Control"), Some("max-age=3600"), "#{i}");
        assert!(r.header("X-Accel-Expires").is_none());
    }
    let lines = info_lines(
        &n,
        mark,
        "\"/noguard/noise.png\" not converted (",
        " serving original (from the stash)",
    );
    assert_eq!(lines.len(), 2, "{}", n.error_log_since(mark));
    assert_eq!(
        info_lines(&n, mark, "background conversion of", "").len(),
        1
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// The default mode (background off) reads the same stash, and an entry
/// made by a background conversion serves waiting requests too.
#[test]
fn waiting_requests_read_the_same_stash() {
    let (n, _, _) = start("background-wait");
    let port = n.port();
    let ok = fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    let mark = n.error_log_mark();
    let r = get(port, "/images/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_stand_in(&r, &ok, "deferred", "first");
    wait_stashed(&n, mark, "/images/ok.jpg");
    // The same image and variant where requests wait for conversions.
    for _ in 0..2 {
        let r = get(port, "/wait/ok.jpg", &[ACCEPT_WEBP_ONLY]);
        assert_from_stash(&r, "webp", (512, 512), "a waiting request");
    }
    // Another variant there converts, and waits for it.
    let r = get(port, "/wait/ok.jpg", &[ACCEPT_AVIF]);
    assert!(
        debug(&r).starts_with("converted format=avif ") && !debug(&r).contains("from=stash"),
        "{}",
        r.describe()
    );
    assert_no_alerts(&n);
}

/// A reload while one background conversion runs and two wait in the
/// queue: the old worker exits once the running one is done (the queued
/// ones are lost, nothing crashes), and the new worker defers and converts
/// them again.
#[test]
fn reload_with_background_conversions_pending() {
    let (mut n, name, _) = start("background-reload");
    let port = n.port();
    let mark = n.error_log_mark();
    for file in [name.as_str(), "coffee.jpg", "ok.jpg"] {
        let r = get(port, &format!("/serial/{file}"), &[ACCEPT_WEBP_ONLY]);
        assert!(
            debug(&r).starts_with("original reason=deferred"),
            "{}",
            r.describe()
        );
    }
    let queued = info_lines(&n, mark, "background conversion queued: ", "");
    assert_eq!(queued.len(), 2, "{}", n.error_log_since(mark));
    n.reload(&config());
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let ok = fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    let r = get(port, "/serial/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_stand_in(&r, &ok, "deferred", "after the reload");
    wait_stashed(&n, mark, "/serial/ok.jpg");
    let r = get(port, "/serial/ok.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_from_stash(&r, "webp", (512, 512), "after the reload, again");
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// `nginx -t`: the mode needs the stash where responses are converted.
#[test]
fn background_needs_the_stash() {
    let site = |http: &str, location: &str| {
        format!(
            "    {http}\n    server {{\n        listen 127.0.0.1:{{{{PORT}}}};\n        \
             location / {{\n            smart_imaging on;\n            {location}\n        }}\n        \
             location /front/ {{\n            smart_imaging_variant_only on;\n            \
             smart_imaging_stash_path off;\n        }}\n    }}\n"
        )
    };
    let mut n = Nginx::prepare("background-directive");
    for (http, location) in [
        ("smart_imaging_background on;", ""),
        ("", "smart_imaging_background off;"),
        ("", "smart_imaging_background on;"),
        (
            "smart_imaging_background on;",
            "smart_imaging_stash_path {{PREFIX}}/st max_size=1m ttl=1h;",
        ),
        (
            "smart_imaging_background on; smart_imaging_stash_path off;",
            "smart_imaging_background off;",
        ),
    ] {
        n.assert_config_accepted(
            &Config::with_module(&site(http, location)),
            &format!("{http} / {location}"),
        );
    }
    let refused = "\"smart_imaging_background on\" needs the stash, but \
                   \"smart_imaging_stash_path\" is off here (background conversions \
                   leave their results in the stash)";
    for (http, location, message) in [
        (
            "",
            "smart_imaging_background on; smart_imaging_stash_path off;",
            refused,
        ),
        (
            "smart_imaging_background on;",
            "smart_imaging_stash_path off;",
            refused,
        ),
        (
            "",
            "smart_imaging_background maybe;",
            "invalid value \"maybe\" in \"smart_imaging_background\" directive, it must be \"on\" or \"off\"",
        ),
        (
            "",
            "smart_imaging_background on; smart_imaging_background on;",
            "\"smart_imaging_background\" directive is duplicate",
        ),
    ] {
        n.assert_config_refused(
            &Config::with_module(&site(http, location)),
            &format!("{http} / {location}"),
            message,
        );
    }
}

// ---------------------------------------------------------------------------
// Through the cache tier
// ---------------------------------------------------------------------------

const CONVERTING: &str = "        location /images/ {\n            smart_imaging on;\n";

fn edit(conf: String, from: &str, to: &str) -> String {
    assert!(conf.contains(from), "cache-tier.conf has no {from:?}");
    conf.replacen(from, to, 1)
}

/// nginx-conf/cache-tier.conf with `smart_imaging_background on` in the
/// converting tier: the front does not store the stand-in; the next request
/// misses, gets the derivative from the stash, and the front stores that.
#[test]
fn cache_tier_stores_the_derivative_not_the_stand_in() {
    let mut n = Nginx::prepare("background-cache-tier");
    let original = fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    n.put_file("images/photo.jpg", &original);
    let conf = n.shipped_config("cache-tier.conf");
    let conf = edit(
        conf,
        CONVERTING,
        &format!("{CONVERTING}            smart_imaging_background on;\n"),
    );
    // The module's info lines (the layout logs at notice).
    let conf = edit(conf, "error.log notice;", "error.log info;");
    n.run(&Config::complete(&conf));
    let workers = n.worker_pids();
    let status = |r: &Response| r.header("X-Cache-Status").unwrap_or("-").to_string();

    let mark = n.error_log_mark();
    let r = get(n.port(), "/images/photo.jpg", &[ACCEPT_WEBP_ONLY]);
    eprintln!("first: {} in {:.1} ms", status(&r), ms(r.elapsed));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(status(&r), "MISS");
    assert!(r.body == original, "the stand-in\n{}", r.describe());
    assert_eq!(r.content_type(), Some("image/jpeg"));
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-store"),
        "{}",
        r.describe()
    );
    assert!(r.header("X-Accel-Expires").is_none(), "the front hides it");
    assert!(r.vary_has("Accept"));
    wait_stashed(&n, mark, "/images/photo.jpg");

    let miss = get(n.port(), "/images/photo.jpg", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(
        status(&miss),
        "MISS",
        "the stand-in was not stored\n{}",
        miss.describe()
    );
    assert_eq!(
        miss.content_type(),
        Some("image/webp"),
        "{}",
        miss.describe()
    );
    assert_eq!(miss.header("Cache-Control"), Some("max-age=86400"));
    webp::decode(&miss.body).expect("a valid WebP");
    for _ in 0..2 {
        let hit = get(n.port(), "/images/photo.jpg", &[ACCEPT_WEBP_ONLY]);
        assert_eq!(status(&hit), "HIT", "{}", hit.describe());
        assert!(hit.body == miss.body);
        assert_eq!(hit.content_type(), Some("image/webp"));
    }
    let log = fs::read_to_string(n.prefix.join("logs/smart-imaging.log")).unwrap();
    let results: Vec<&str> = log.lines().filter_map(|l| l.split('"').nth(3)).collect();
    assert_eq!(
        results.len(),
        2,
        "the converting tier saw two requests:\n{log}"
    );
    assert!(results[0].starts_with("original reason=deferred "), "{log}");
    assert!(
        results[1].starts_with("converted format=webp ") && results[1].ends_with(" from=stash"),
        "{log}"
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

// ---------------------------------------------------------------------------
// Measurement (ignored by default)
// ---------------------------------------------------------------------------

/// `jpeg` with a comment segment after SOI naming `tag`: other bytes (a
/// first visit in the stash's eyes), the same image.
fn tagged_jpeg(jpeg: &[u8], tag: &str) -> Vec<u8> {
    assert!(is_jpeg(jpeg));
    let text = format!("first-visitor {tag}");
    let len = u16::try_from(text.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// First-visitor latency of a ~1 MP photo (WebP-only client), background
/// off (`/wait/`) and on (`/images/`), at 1 and 8 concurrent clients:
/// every request is for bytes never seen before. Prints a Markdown table.
#[test]
#[ignore = "a measurement: cargo test --test background -- --ignored --nocapture first_visitor"]
fn first_visitor_latency() {
    let (n, name, big) = start("background-latency");
    assert!(
        name.ends_with(".jpg"),
        "the measurement needs the corpus photo"
    );
    let port = n.port();
    let rounds: usize = std::env::var("FIRST_VISITOR_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rows = Vec::new();
    let mut serial = 0;
    for clients in [1usize, 8] {
        for (mode, prefix) in [("off", "/wait/"), ("on", "/images/")] {
            let per_client = if clients == 1 {
                (3 * rounds).max(12)
            } else {
                rounds
            };
            let mut urls = Vec::new();
            for _ in 0..clients * per_client {
                serial += 1;
                let file = format!("fv{serial}.jpg");
                n.put_file(
                    &format!("images/{file}"),
                    &tagged_jpeg(&big, &serial.to_string()),
                );
                urls.push(format!("{prefix}{file}"));
            }
            let mark = n.error_log_mark();
            let started = Instant::now();
            let responses: Vec<Response> = std::thread::scope(|s| {
                let handles: Vec<_> = urls
                    .chunks(per_client)
                    .map(|chunk| {
                        s.spawn(move || {
                            chunk
                                .iter()
                                .map(|u| get(port, u, &[ACCEPT_WEBP_ONLY]))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
            let wall = started.elapsed();
            let mut times: Vec<Duration> = responses.iter().map(|r| r.elapsed).collect();
            times.sort();
            let count = |p: &str| responses.iter().filter(|r| debug(r).starts_with(p)).count();
            let (converted, deferred, busy) = (
                count("converted "),
                count("original reason=deferred"),
                count("original reason=busy"),
            );
            // Let background conversions finish before the next row.
            if mode == "on" {
                let deadline = Instant::now() + Duration::from_secs(600);
                while info_lines(&n, mark, "background conversion of", "").len() < deferred
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let drained = started.elapsed();
            // The second visit of each URL, one at a time: the stash (on),
            // or a conversion again (off: nothing keeps it without a cache).
            let second = if mode == "on" {
                let again: Vec<Response> = urls
                    .iter()
                    .map(|u| get(port, u, &[ACCEPT_WEBP_ONLY]))
                    .collect();
                let hits = again
                    .iter()
                    .filter(|r| debug(r).ends_with(" from=stash"))
                    .count();
                let mut times: Vec<Duration> = again.iter().map(|r| r.elapsed).collect();
                times.sort();
                format!(
                    "{:.1} ({hits} from the stash)",
                    ms(percentile(&times, 50.0))
                )
            } else {
                "(converts again)".to_string()
            };
            rows.push(format!(
                "| {mode} | {clients} | {} | {:.0} | {:.0} | {:.0} | {converted} / {deferred} / {busy} | {:.1} s | {second} |",
                times.len(),
                ms(percentile(&times, 50.0)),
                ms(percentile(&times, 99.0)),
                ms(*times.last().unwrap()),
                if mode == "on" { drained } else { wall }.as_secs_f64(),
            ));
            eprintln!("{}", rows.last().unwrap());
        }
    }
    println!(
        "\n| background | clients | first requests | p50 ms | p99 ms | max ms | converted / deferred / busy | all conversions done after | second visit p50 ms |\n|---|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        println!("{row}");
    }
    assert_no_alerts(&n);
}
