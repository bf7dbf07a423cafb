//! Transcoding runs in the thread pool, off nginx's event loop: while a
//! worker's pool threads are busy converting large images, the same worker
//! keeps serving small files without delay.
//!
//! `cargo test --test latency -- --nocapture` prints every latency.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use smart_imaging_core::Limits;
use smart_imaging_core::{codecs, resize};

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_buffer 64m;
            smart_imaging_max_jobs 64;
            # Every queued conversion must complete (the default 10s could
            # expire on a loaded machine); still capped at 90% of
            # send_timeout (54s).
            smart_imaging_timeout 60s;
        }
        location /static/ { }
    }
"#;

const CONCURRENT: usize = 8;
/// At least this many small requests, and more until `BIG_DONE_BEFORE_STOP`
/// conversions have completed (so that the moments when results come back
/// to the event loop and are sent are measured too).
const SMALL_REQUESTS: usize = 20;
const SMALL_MAX: usize = 300;
const BIG_DONE_BEFORE_STOP: usize = 2;
const SMALL_SPACING: Duration = Duration::from_millis(100);

#[test]
fn small_files_are_not_delayed_by_transcodes() {
    let mut n = Nginx::prepare("latency");
    // The largest corpus photo (3840x2160) at half size, or a generated
    // 1920x1080 photo, as a PNG. Half size: with the visual-quality guard
    // a conversion is several encodes and scores, and the last of the
    // CONCURRENT requests, queued behind the others on the pool's two
    // threads, must be done well within nginx's send_timeout (60 s). A PNG:
    // the JPEG is compressed so hard that no WebP passing the guard is
    // smaller than it (the original would be served), while from a PNG
    // every conversion is a clear win.
    let (_, big) = big_image("k4_volna.jpg", (1920, 1080, 5));
    let big = if is_jpeg(&big) {
        let pixels = codecs::decode(&big, &Limits::default()).expect("decode the big JPEG");
        let (w, h) = (pixels.width / 2, pixels.height / 2);
        let half = resize::resize(&pixels, w, h).expect("resize the big JPEG");
        codecs::png::encode(&half).expect("encode it as PNG")
    } else {
        big
    };
    let name = "big.png";
    n.put_file(&format!("images/{name}"), &big);
    n.put_file("static/tiny.txt", b"tiny\n");
    // One worker; the pool has 2 threads (Config::with_module).
    n.run(&Config::with_module(HTTP));
    let workers = n.worker_pids();
    assert_eq!(workers.len(), 1);
    let port = n.port();
    let url = format!("/images/{name}");

    // Baseline: one conversion alone.
    let solo = get(port, &url, &[ACCEPT_WEBP]);
    assert_eq!(
        solo.content_type(),
        Some("image/webp"),
        "precondition: {url} converts\n{}",
        solo.describe()
    );
    let transcode_time = solo.elapsed;
    let idle: Vec<Duration> = (0..5)
        .map(|_| get(port, "/static/tiny.txt", &[]).elapsed)
        .collect();
    eprintln!(
        "{url}: {} bytes -> {} bytes of WebP in {:.0} ms alone; tiny file idle: {:?} ms",
        big.len(),
        solo.body.len(),
        ms(transcode_time),
        idle.iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
    );

    // The conversion threads' nice values, sampled while they run.
    let worker = *workers.iter().next().unwrap();
    let mut conversion_nices = Vec::new();
    let t0 = Instant::now();
    let done = AtomicUsize::new(0);
    let (big_results, small) = std::thread::scope(|s| {
        let bigs: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let url = url.clone();
                let done = &done;
                s.spawn(move || {
                    let r = request(port, "GET", &url, &[ACCEPT_WEBP]).expect("big request");
                    done.fetch_add(1, Ordering::SeqCst);
                    (r, t0.elapsed())
                })
            })
            .collect();
        // Let the big requests reach the pool.
        std::thread::sleep(Duration::from_millis(150));
        // Spread the small requests over ~2.5 s, so that they also hit the
        // moments when conversions complete and their results are sent.
        let mut small = Vec::new();
        for i in 0..SMALL_MAX {
            conversion_nices.extend(thread_nices(worker, "smart-imaging"));
            if i >= SMALL_REQUESTS && done.load(Ordering::SeqCst) >= BIG_DONE_BEFORE_STOP {
                break;
            }
            if i > 0 {
                std::thread::sleep(SMALL_SPACING);
            }
            let r = get(port, "/static/tiny.txt", &[]);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"tiny\n");
            small.push((r.elapsed, t0.elapsed()));
        }
        let big_results: Vec<(Response, Duration)> =
            bigs.into_iter().map(|h| h.join().unwrap()).collect();
        (big_results, small)
    });

    for (i, (r, done)) in big_results.iter().enumerate() {
        eprintln!(
            "big {i}: {:?} {} bytes, {:.0} ms, finished at {:.0} ms",
            r.content_type(),
            r.body.len(),
            ms(r.elapsed),
            ms(*done)
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.content_type(),
            Some("image/webp"),
            "big request {i} was not converted"
        );
    }
    let small_done = small.last().unwrap().1;
    let first_big_done = big_results.iter().map(|(_, d)| *d).min().unwrap();
    let last_big_done = big_results.iter().map(|(_, d)| *d).max().unwrap();
    let mut lat: Vec<Duration> = small.iter().map(|(d, _)| *d).collect();
    eprintln!(
        "tiny file under load (ms): {:?}",
        lat.iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
    );
    lat.sort();
    let p50 = percentile(&lat, 50.0);
    let p95 = percentile(&lat, 95.0);
    let max = *lat.last().unwrap();
    eprintln!(
        "tiny file: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; one transcode alone {:.0} ms; \
         tiny series ended at {:.0} ms, big requests finished between {:.0} and {:.0} ms",
        ms(p50),
        ms(p95),
        ms(max),
        ms(transcode_time),
        ms(small_done),
        ms(first_big_done),
        ms(last_big_done)
    );

    // The measurement means something only if the conversions were still
    // running while the small files were fetched.
    assert!(
        last_big_done > small_done,
        "all conversions finished before the small requests did: nothing was measured under load"
    );
    // If conversions ran on the event loop, a small request would wait for
    // at least one whole conversion. 100 ms leaves room for CPU contention
    // (2 pool threads busy on a 2-core machine) while being far below a
    // conversion of this image.
    let bound = Duration::from_millis(100)
        .min(transcode_time / 4)
        .max(Duration::from_millis(25));
    assert!(
        p95 < bound,
        "p95 latency of a tiny static file under load is {:.1} ms, not below {:.1} ms (one transcode: {:.0} ms)",
        ms(p95),
        ms(bound),
        ms(transcode_time)
    );
    assert!(
        max < transcode_time / 2,
        "max latency of a tiny static file under load {:.1} ms is not well below one transcode ({:.0} ms)",
        ms(max),
        ms(transcode_time)
    );
    // Conversions run below the event loop's priority (offload.rs,
    // yield_to_event_loop), so that it gets the CPU first when it has
    // anything to do.
    let loop_nice = thread_nices(worker, "nginx")
        .first()
        .copied()
        .expect("the worker's main thread");
    eprintln!("nice: event loop {loop_nice}, conversions {conversion_nices:?}");
    assert!(
        !conversion_nices.is_empty(),
        "no conversion thread was seen running"
    );
    assert!(
        conversion_nices
            .iter()
            .all(|&n| n == (loop_nice + 5).min(19)),
        "conversion threads at nice {conversion_nices:?}, the event loop at {loop_nice}"
    );
    n.assert_workers_survived(&workers);
}

/// The nice values of process `pid`'s threads named `name` (as
/// /proc/PID/task/TID/comm shows it).
fn thread_nices(pid: u32, name: &str) -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // After the command's closing parenthesis: state is field 3,
            // nice field 19 (proc(5)).
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}
