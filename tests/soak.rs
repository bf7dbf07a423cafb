//! The soak: many mixed requests against two workers, every answer checked,
//! the workers' resident memory sampled throughout.
//!
//! The mix (per 100 requests): 40 conversions of small images (JPEG and
//! PNG, with alpha, to WebP, AVIF, JPEG 2000 and JPEG XR by `Accept` and
//! `User-Agent`, static and proxied), 4 of larger photos, 12 bad inputs
//! (truncated, entropy-damaged and CRC-broken images, text named `.jpg`),
//! 10 aborted requests (the client hangs up before or while the answer
//! comes), 10 `HEAD`, 10 conditional (`If-None-Match` with the `ETag` of
//! an earlier answer), 8 over HTTP/2 (curl, h2c), 6 tiny static files.
//!
//! Each answer must be whole and right: a converted image in the format
//! its `Content-Type` says, at its `Content-Length`; a bad input's
//! original byte for byte; `304` for a conditional request; no body for
//! `HEAD`. No worker may restart. After the load, each worker's resident
//! size must return to within 64 MiB of its value at start-up.
//!
//! `make test` runs a short soak (`SOAK_REQUESTS`, default 400); the long
//! one, whose figures are in docs/testing.md:
//!
//! ```text
//! SOAK_REQUESTS=20000 cargo test --test soak -- --nocapture
//! ```
//!
//! The RSS curve goes to
//! `target/soak/rss.csv` (seconds, requests done, then one column per
//! worker, MiB).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use smart_imaging_core::{codecs, resize, Limits};

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        http2 on;
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        location /images/ {
            smart_imaging on;
            smart_imaging_timeout 30s;
        }
        location /proxied/ {
            smart_imaging on;
            smart_imaging_timeout 30s;
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /static/ { }
    }
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
    }
"#;

const CLIENTS: usize = 6;

/// What a request is, and what its answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Good,
    Large,
    Bad,
    Aborted,
    Head,
    Conditional,
    Http2,
    Tiny,
}

/// Request `i` of the mix (deterministic, spread evenly).
fn kind_of(i: usize) -> Kind {
    match (i * 37) % 100 {
        0..=39 => Kind::Good,
        40..=43 => Kind::Large,
        44..=55 => Kind::Bad,
        56..=65 => Kind::Aborted,
        66..=75 => Kind::Head,
        76..=85 => Kind::Conditional,
        86..=93 => Kind::Http2,
        _ => Kind::Tiny,
    }
}

/// The clients a request may claim to be: `Accept` and `User-Agent`.
const CLIENT_HEADERS: [(&str, &str); 5] = [
    (
        "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    ),
    ("image/webp,*/*", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (
        "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15",
    ),
    (
        "image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko",
    ),
    ("*/*", "curl/8.0"),
];

struct Files {
    /// Small images under `images/` (name, bytes).
    small: Vec<(String, Vec<u8>)>,
    large: Vec<(String, Vec<u8>)>,
    bad: Vec<(String, Vec<u8>)>,
}

/// The samples at a third of their size (thumbnails, cheap to convert),
/// the samples themselves, and bad inputs made from them.
fn make_files(n: &Nginx) -> Files {
    let mut small = Vec::new();
    let mut large = Vec::new();
    for name in [
        "sk_coffee.jpg",
        "sk_astronaut.jpg",
        "sk_text.png",
        "sk_horse_alpha.png",
        "ukui_desert.png",
        "dolphin_default_ui.png",
    ] {
        let bytes = fs::read(samples_dir().join(name)).unwrap();
        let image = codecs::decode(&bytes, &Limits::default()).unwrap();
        let (w, h) = ((image.width / 3).max(16), (image.height / 3).max(16));
        let thumb = resize::resize(&image, w, h).unwrap();
        let thumb = if name.ends_with(".jpg") {
            codecs::jpeg::encode(&thumb, 90).unwrap()
        } else {
            codecs::png::encode(&thumb).unwrap()
        };
        let ext = &name[name.len() - 3..];
        let stem = &name[..name.len() - 4];
        small.push((format!("{stem}-small.{ext}"), thumb));
        large.push((name.to_string(), bytes));
    }
    // A 1 MP photo, so that some jobs are as large as real ones.
    large.push(("photo.png".into(), synthetic_photo_png(1200, 850, 3)));
    let coffee = fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    let text_png = fs::read(samples_dir().join("sk_text.png")).unwrap();
    let mut damaged = coffee.clone();
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 64] {
        *b = 0xff;
    }
    let mut broken_crc = text_png.clone();
    let idat = broken_crc
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("an IDAT chunk");
    broken_crc[idat + 10] ^= 0x55;
    let bad = vec![
        (
            "truncated.jpg".to_string(),
            coffee[..coffee.len() / 2].to_vec(),
        ),
        ("damaged.jpg".to_string(), damaged),
        ("crc.png".to_string(), broken_crc),
        ("text.jpg".to_string(), b"this is not an image\n".repeat(50)),
        ("header-only.png".to_string(), text_png[..40].to_vec()),
    ];
    for (name, bytes) in small.iter().chain(&large).chain(&bad) {
        n.put_file(&format!("images/{name}"), bytes);
    }
    n.put_file("static/tiny.txt", b"tiny\n");
    Files { small, large, bad }
}

/// Whether `body` is an image in the format `content_type` names.
fn is_format(content_type: &str, body: &[u8]) -> bool {
    match content_type {
        "image/webp" => is_webp(body),
        "image/avif" => body.len() > 12 && &body[4..12] == b"ftypavif",
        "image/jp2" => body.starts_with(b"\x00\x00\x00\x0cjP  "),
        "image/vnd.ms-photo" | "image/jxr" => body.starts_with(b"II\xbc"),
        "image/jpeg" => is_jpeg(body),
        "image/png" => is_png(body),
        _ => false,
    }
}

/// One client's requests (`from..` stepping by `CLIENTS`), checked.
fn client(
    port: u16,
    port_tmp: &std::path::Path,
    files: &Files,
    range: impl Iterator<Item = usize>,
    done: &AtomicUsize,
    tally: &Mutex<std::collections::BTreeMap<Kind, usize>>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    // ETags seen, per (path, client), for conditional requests.
    let mut etags: Vec<(String, usize, String)> = Vec::new();
    for i in range {
        let kind = kind_of(i);
        let c = (i / 7) % CLIENT_HEADERS.len();
        let (accept, ua) = CLIENT_HEADERS[c];
        let headers = [("Accept", accept), ("User-Agent", ua)];
        let prefix = if i % 3 == 0 { "/proxied/" } else { "/images/" };
        let small = &files.small[i % files.small.len()];
        let mut check = |ok: bool, what: String| {
            if !ok {
                wrong.push(format!("request {i} ({kind:?}): {what}"));
            }
        };
        match kind {
            Kind::Good | Kind::Large => {
                let (name, original) = if kind == Kind::Good {
                    small
                } else {
                    &files.large[i % files.large.len()]
                };
                let path = format!("{prefix}{name}");
                match request(port, "GET", &path, &headers) {
                    Ok(r) => {
                        let ct = r.content_type().unwrap_or("").to_string();
                        let whole = r.content_length() == Some(r.body.len());
                        let right = if r.body == *original {
                            true
                        } else {
                            is_format(&ct, &r.body) && r.body.len() < original.len()
                        };
                        check(
                            r.status == 200 && whole && right,
                            format!("{path}: {}", r.describe()),
                        );
                        if let Some(etag) = r.header("ETag") {
                            etags.push((path, c, etag.to_string()));
                        }
                    }
                    Err(e) => check(false, format!("{path}: {e}")),
                }
            }
            Kind::Bad => {
                let (name, original) = &files.bad[i % files.bad.len()];
                let path = format!("{prefix}{name}");
                match request(port, "GET", &path, &headers) {
                    Ok(r) => check(
                        r.status == 200 && r.body == *original,
                        format!("{path}: not the original: {}", r.describe()),
                    ),
                    Err(e) => check(false, format!("{path}: {e}")),
                }
            }
            Kind::Aborted => {
                let path = format!("{prefix}{}", small.0);
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(
                        format!(
                            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nUser-Agent: {ua}\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    // Hang up at once, or after the first bytes.
                    if i % 2 == 0 {
                        let mut first = [0u8; 100];
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = s.read(&mut first);
                    }
                }
            }
            Kind::Head => {
                let path = format!("{prefix}{}", small.0);
                match request(port, "HEAD", &path, &headers) {
                    Ok(r) => check(
                        r.status == 200
                            && r.body.is_empty()
                            && r.content_length().is_some_and(|l| l > 0)
                            && r.content_type().is_some_and(|t| t.starts_with("image/")),
                        format!("{path}: {}", r.describe()),
                    ),
                    Err(e) => check(false, format!("{path}: {e}")),
                }
            }
            Kind::Conditional => {
                let Some((path, c, etag)) = etags.get(i % etags.len().max(1)).cloned() else {
                    continue;
                };
                let (accept, ua) = CLIENT_HEADERS[c];
                let headers = [
                    ("Accept", accept),
                    ("User-Agent", ua),
                    ("If-None-Match", etag.as_str()),
                ];
                match request(port, "GET", &path, &headers) {
                    // 304, or 200 when the answer changed kind since (an
                    // original served as busy, then a conversion).
                    Ok(r) => check(
                        (r.status == 304 && r.body.is_empty())
                            || (r.status == 200 && r.header("ETag") != Some(etag.as_str())),
                        format!("{path} If-None-Match {etag}: {}", r.describe()),
                    ),
                    Err(e) => check(false, format!("{path}: {e}")),
                }
            }
            Kind::Http2 => {
                let path = format!("/images/{}", small.0);
                let url = format!("http://127.0.0.1:{port}{path}");
                let (proto, r) = curl_get(&url, &["--http2-prior-knowledge"], &headers, port_tmp);
                let ct = r.content_type().unwrap_or("").to_string();
                check(
                    proto.starts_with("HTTP/2")
                        && r.status == 200
                        && (r.body == small.1 || is_format(&ct, &r.body)),
                    format!("{url} over {proto}: {}", r.describe()),
                );
            }
            Kind::Tiny => match request(port, "GET", "/static/tiny.txt", &[]) {
                Ok(r) => check(r.body == b"tiny\n", r.describe()),
                Err(e) => check(false, format!("tiny: {e}")),
            },
        }
        *tally.lock().unwrap().entry(kind).or_default() += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    wrong
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[test]
fn soak_mixed_requests() {
    let total: usize = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut n = Nginx::prepare("soak");
    let files = make_files(&n);
    let mut cfg = Config::with_module(HTTP);
    cfg.workers = 2;
    n.run(&cfg);
    let workers: BTreeSet<u32> = n.worker_pids();
    assert_eq!(workers.len(), 2);
    let pids: Vec<u32> = workers.iter().copied().collect();
    // Start-up resident size, once the workers are idle.
    std::thread::sleep(Duration::from_millis(300));
    let start_rss: Vec<f64> = pids.iter().map(|&p| rss_mib(p).unwrap()).collect();
    let port = n.port();
    let tmp = n.prefix.join("curl");
    fs::create_dir_all(&tmp).unwrap();
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let tally = Mutex::new(std::collections::BTreeMap::new());
    let started = Instant::now();
    let (wrong, curve) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut curve = Vec::new();
            while !finished.load(Ordering::Relaxed) {
                let rss: Vec<f64> = pids.iter().map(|&p| rss_mib(p).unwrap_or(0.0)).collect();
                curve.push((
                    started.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    rss,
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            curve
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let (files, done, tally, tmp) = (&files, &done, &tally, &tmp);
                s.spawn(move || client(port, tmp, files, (k..total).step_by(CLIENTS), done, tally))
            })
            .collect();
        let wrong: Vec<String> = clients
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let load_secs = started.elapsed().as_secs_f64();
        // Idle: conversions of aborted requests end, memory goes back.
        std::thread::sleep(Duration::from_secs(3));
        finished.store(true, Ordering::Relaxed);
        let mut curve = sampler.join().unwrap();
        curve.push((
            started.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed),
            pids.iter().map(|&p| rss_mib(p).unwrap_or(0.0)).collect(),
        ));
        eprintln!("load: {total} requests in {load_secs:.0} s");
        (wrong, curve)
    });
    // The curve, for docs/testing.md.
    let out = repo_root().join("target/soak");
    fs::create_dir_all(&out).unwrap();
    let mut csv = String::from("seconds,requests,worker1_mib,worker2_mib\n");
    for (t, d, rss) in &curve {
        csv.push_str(&format!("{t:.1},{d},{:.1},{:.1}\n", rss[0], rss[1]));
    }
    fs::write(out.join("rss.csv"), csv).unwrap();
    let end_rss = &curve.last().unwrap().2;
    let peak: Vec<f64> = (0..2)
        .map(|w| curve.iter().map(|(_, _, r)| r[w]).fold(0.0, f64::max))
        .collect();
    // After warm-up (the first quarter of the requests), the highest and
    // lowest samples of the load.
    let warm: Vec<&(f64, usize, Vec<f64>)> = curve
        .iter()
        .filter(|(_, d, _)| *d >= total / 4 && *d < total)
        .collect();
    eprintln!("mix: {:?}", tally.lock().unwrap());
    for w in 0..2 {
        let (lo, hi) = warm.iter().fold((f64::MAX, 0.0f64), |(lo, hi), (_, _, r)| {
            (lo.min(r[w]), hi.max(r[w]))
        });
        eprintln!(
            "worker {}: RSS start {:.1} MiB, peak {:.1}, after warm-up {:.1}..{:.1}, end {:.1}",
            w + 1,
            start_rss[w],
            peak[w],
            lo,
            hi,
            end_rss[w]
        );
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
    let log = n.error_log();
    assert!(!log.contains("exited on signal"), "a worker died");
    for w in 0..2 {
        assert!(
            end_rss[w] <= start_rss[w] + 64.0,
            "worker {} holds {:.1} MiB after the load, {:.1} at start-up",
            w + 1,
            end_rss[w],
            start_rss[w]
        );
    }
}
