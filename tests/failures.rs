//! Bodies the module cannot or must not convert: the client gets the
//! original bytes with status 200, the worker survives, and the error log
//! says why.

mod common;

use common::*;

fn astronaut() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap()
}

fn coffee() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap()
}

fn png_sample() -> Vec<u8> {
    std::fs::read(samples_dir().join("dolphin_default_ui.png")).unwrap()
}

/// JFIF header (SOI + APP0) of a real JPEG, followed by random bytes.
/// What the module says of [`corrupt_jpeg`].
const CORRUPT_JPEG_WARNING: &str =
    "decode failed: JPEG warning: Corrupt JPEG data: 715 extraneous bytes before marker 0xe0";

fn corrupt_jpeg() -> Vec<u8> {
    let j = astronaut();
    let app0_len = u16::from_be_bytes([j[4], j[5]]) as usize;
    let mut out = j[..4 + app0_len].to_vec();
    out.extend_from_slice(&Rng::new(7).bytes(20_000));
    out
}

/// A real JPEG whose entropy-coded data is overwritten with random bytes
/// from its middle on (headers and tables intact).
fn scrambled_jpeg() -> Vec<u8> {
    let mut j = coffee();
    let half = j.len() / 2;
    let end = j.len() - 2;
    let noise = Rng::new(11).bytes(end - half);
    j[half..end].copy_from_slice(&noise);
    j
}

/// A valid PNG header claiming 50000x50000 (2.5 gigapixels) of 8-bit gray,
/// with a tiny IDAT (one row of data).
fn png_bomb() -> Vec<u8> {
    let row = vec![0u8; 50_001];
    png_raw(50_000, 50_000, 8, 0, &zlib_stored(&row))
}

/// A real JPEG whose SOF claims 60000x60000.
fn jpeg_bomb() -> Vec<u8> {
    let mut j = astronaut();
    let (off, _) = jpeg_sof(&j).expect("SOF");
    j[off + 5..off + 7].copy_from_slice(&60_000u16.to_be_bytes());
    j[off + 7..off + 9].copy_from_slice(&60_000u16.to_be_bytes());
    j
}

// These tests expect slow conversions (20-megapixel images, queues behind
// aborted clients) to complete on a loaded 2-core machine: a deadline far
// over the default 10s (still capped at 90 % of `send_timeout`, 54s).
// tests/timeout.rs tests the deadline itself.
const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_timeout 120s;
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
        }
        location /shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /small-buffer/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_buffer 1k;
            alias {{HTDOCS}}/images/;
        }
        location /small-buffer-shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_buffer 1k;
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /few-pixels/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_max_pixels 100000;
            alias {{HTDOCS}}/images/;
        }
        location /px24m/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_max_pixels 24000000;
            alias {{HTDOCS}}/images/;
        }
        location /one-job/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_max_jobs 1;
            alias {{HTDOCS}}/images/;
        }
    }
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
    }
"#;

/// The module's message when a conversion ran and gave up on `url`:
/// `"<url>" not converted (<ms> ms): <why>, serving original`.
fn not_converted(url: &str, why: &str) -> String {
    format!("\"{url}\" not converted (… ms): {why}, serving original")
}

/// Requests `url` with a WebP Accept header and checks that the original
/// comes back, no worker died, and the error log has the module's line for
/// it: `smart_imaging: <message>` at `level`, and no other `smart_imaging`
/// line (see [`Nginx::wait_module_log`] for how `message` matches).
fn expect_original_with_log(n: &Nginx, url: &str, original: &[u8], level: &str, message: &str) {
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let r = request(n.port(), "GET", url, &[ACCEPT_WEBP])
        .unwrap_or_else(|e| panic!("GET {url}: {e}\nerror log:\n{}", n.error_log_since(mark)));
    assert_eq!(r.status, 200, "GET {url}\n{}", r.describe());
    assert!(
        r.body == original,
        "GET {url}: not the original bytes ({} bytes, original {})\n{}\nerror log:\n{}",
        r.body.len(),
        original.len(),
        r.describe(),
        n.error_log_since(mark)
    );
    assert_ne!(
        r.content_type(),
        Some("image/webp"),
        "GET {url}\n{}",
        r.describe()
    );
    assert_eq!(
        r.content_length(),
        Some(original.len()),
        "GET {url}\n{}",
        r.describe()
    );
    // Still an image candidate: caches must know the response depends on Accept.
    assert!(
        r.vary_has("accept"),
        "GET {url}: original served without `Vary: Accept`\n{}",
        r.describe()
    );
    n.assert_workers_survived(&workers);
    let line = n.wait_module_log(mark, level, message).unwrap_or_else(|| {
        panic!(
            "GET {url}: no error_log line \"[{level}] ... smart_imaging: {message}\"; log since the request:\n{}",
            n.error_log_since(mark)
        )
    });
    eprintln!("{url}: {line}");
    let since = n.error_log_since(mark);
    let others: Vec<&str> = since
        .lines()
        .filter(|l| l.contains("smart_imaging") && *l != line && !l.contains(" [debug] "))
        .collect();
    assert!(
        others.is_empty(),
        "GET {url}: more than the one line saying why:\n{line}\n{}",
        others.join("\n")
    );
}

fn server(name: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.put_file("images/corrupt.jpg", &corrupt_jpeg());
    let j = astronaut();
    n.put_file("images/truncated.jpg", &j[..j.len() / 2]);
    let p = png_sample();
    n.put_file("images/truncated.png", &p[..p.len() / 2]);
    n.put_file("images/empty.jpg", b"");
    n.put_file("images/empty.png", b"");
    n.put_file("images/bomb.png", &png_bomb());
    n.put_file("images/bomb.jpg", &jpeg_bomb());
    n.put_file("images/ok.jpg", &j);
    n.put_file("images/scrambled.jpg", &scrambled_jpeg());
    n.run(&Config::with_module(HTTP));
    n
}

fn read(n: &Nginx, rel: &str) -> Vec<u8> {
    std::fs::read(n.htdocs.join(rel)).unwrap()
}

#[test]
fn corrupt_jpeg_serves_original() {
    let n = server("fail-corrupt");
    let b = read(&n, "images/corrupt.jpg");
    for url in ["/images/corrupt.jpg", "/shop/corrupt.jpg"] {
        // The decoder (MozJPEG) finds garbage where markers should be: a
        // warning, which is a failure.
        let why = not_converted(url, CORRUPT_JPEG_WARNING);
        expect_original_with_log(&n, url, &b, "warn", &why);
    }
}

#[test]
fn truncated_jpeg_and_png_serve_original() {
    let n = server("fail-truncated");
    for (rel, why) in [
        ("truncated.jpg", "decode failed: JPEG: file is truncated"),
        (
            "truncated.png",
            "decode failed: PNG: unexpected end of file",
        ),
    ] {
        let b = read(&n, &format!("images/{rel}"));
        for prefix in ["/images/", "/shop/"] {
            let url = format!("{prefix}{rel}");
            expect_original_with_log(&n, &url, &b, "warn", &not_converted(&url, why));
        }
    }
}

#[test]
fn zero_byte_files_serve_original() {
    let n = server("fail-empty");
    for url in ["/images/empty.jpg", "/images/empty.png", "/shop/empty.jpg"] {
        // Found while buffering, before any conversion is started.
        expect_original_with_log(
            &n,
            url,
            b"",
            "warn",
            "body is not a JPEG or PNG (Content-Type says image), serving original",
        );
    }
}

#[test]
fn pixel_bombs_serve_original() {
    let n = server("fail-bomb");
    for (rel, size) in [("bomb.png", "50000x50000"), ("bomb.jpg", "60000x60000")] {
        let b = read(&n, &format!("images/{rel}"));
        // Refused from the header, before any pixel is decoded.
        let why = format!("image is {size}, over the limit of 16000000 pixels");
        for prefix in ["/images/", "/shop/"] {
            let url = format!("{prefix}{rel}");
            expect_original_with_log(&n, &url, &b, "warn", &not_converted(&url, &why));
        }
    }
}

#[test]
fn max_pixels_directive() {
    let n = server("fail-maxpixels");
    // 512x512 = 262144 pixels > 100000.
    let b = astronaut();
    let url = "/few-pixels/ok.jpg";
    let why = "image is 512x512, over the limit of 100000 pixels";
    expect_original_with_log(&n, url, &b, "warn", &not_converted(url, why));
    // The same file converts where the default limit applies.
    let r = get(n.port(), "/images/ok.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
}

#[test]
fn body_over_buffer_serves_original() {
    let n = server("fail-buffer");
    let b = astronaut();
    assert!(b.len() > 50_000);
    // Known from Content-Length (static and proxied alike): the header
    // filter says so, at `info`, before any of the body is buffered.
    let why = format!(
        "body of {} bytes is over smart_imaging_buffer (1024), serving original",
        b.len()
    );
    for url in ["/small-buffer/ok.jpg", "/small-buffer-shop/ok.jpg"] {
        expect_original_with_log(&n, url, &b, "info", &why);
    }
}

/// Garbage in the entropy-coded data: a decoder may give up (original
/// served) or conceal the damage (a WebP of the damaged picture). Either
/// way the response is well-formed and the worker lives.
#[test]
fn scrambled_jpeg_data_never_breaks_the_response() {
    let n = server("fail-scrambled");
    let workers = n.worker_pids();
    let b = read(&n, "images/scrambled.jpg");
    for url in ["/images/scrambled.jpg", "/shop/scrambled.jpg"] {
        let mark = n.error_log_mark();
        let r = get(n.port(), url, &[ACCEPT_WEBP]);
        assert_eq!(r.status, 200);
        match r.content_type() {
            Some("image/webp") => {
                let img = smart_imaging_core::codecs::webp::decode(&r.body).expect("valid WebP");
                assert_eq!((img.width, img.height), (600, 400));
                eprintln!("{url}: converted ({} bytes)", r.body.len());
            }
            _ => {
                assert!(r.body == b, "{url}: neither WebP nor the original");
                // The decoder gave up: what it said depends on where.
                // (a libjpeg warning, "JPEG warning: Corrupt JPEG data: ...",
                // or an error)
                let prefix = format!("\"{url}\" not converted (… ms): decode failed: JPEG");
                let logged = n.error_log_since(mark);
                let line = logged.lines().find(|l| {
                    module_log_message(l, "warn").is_some_and(|m| {
                        m.starts_with(&prefix) && m.ends_with(", serving original")
                    })
                });
                assert!(
                    line.is_some(),
                    "{url}: original served without \"[warn] ... smart_imaging: {prefix}...\":\n{logged}"
                );
                eprintln!("{url}: original served: {}", line.unwrap());
            }
        }
    }
    n.assert_workers_survived(&workers);
}

/// `smart_imaging_max_jobs 1` and 4 concurrent requests for a large image:
/// every response is complete and valid, those beyond the limit get the
/// original.
#[test]
fn max_jobs_overflow_serves_original() {
    let mut n = Nginx::prepare("fail-maxjobs");
    // A large image, slow to convert: the biggest corpus photo, or a
    // generated one.
    let (name, big) = big_image("k4_volna.jpg", (2400, 1600, 3));
    n.put_file(&format!("images/{name}"), &big);
    let http = HTTP.replace(
        "smart_imaging_max_jobs 1;",
        "smart_imaging_max_jobs 1;\n            smart_imaging_buffer 64m;",
    );
    n.run(&Config::with_module(&http));
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let url = format!("/one-job/{name}");
    let port = n.port();
    let responses: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| request(port, "GET", &url, &[ACCEPT_WEBP])))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().expect("request failed"))
            .collect()
    });
    let mut originals = 0;
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 200, "request {i}\n{}", r.describe());
        assert_eq!(r.content_length(), Some(r.body.len()));
        assert!(
            r.vary_has("accept"),
            "request {i}: no `Vary: Accept`\n{}",
            r.describe()
        );
        if r.content_type() == Some("image/webp") {
            let img = smart_imaging_core::codecs::webp::decode(&r.body).expect("valid WebP");
            assert_eq!(Some((img.width, img.height)), header_dims(&big));
        } else {
            assert!(
                r.body == big,
                "request {i}: neither WebP nor the original\n{}",
                r.describe()
            );
            originals += 1;
        }
        eprintln!(
            "request {i}: {:?} {} bytes in {:.0} ms",
            r.content_type(),
            r.body.len(),
            ms(r.elapsed)
        );
    }
    assert!(
        originals >= 1,
        "max_jobs 1 with 4 concurrent requests: all were converted"
    );
    // Each request turned away says so, at `warn`; at least one was. An
    // original can also come from a conversion that ran and was not kept
    // (a corpus JPEG may be: "not smaller"), which says so in its own line.
    let busy = "1 transcodes in progress (smart_imaging_max_jobs), serving original";
    let ran = format!("\"{url}\" not converted (… ms): ");
    let logged = n.error_log_since(mark);
    let count = |levels: &[&str], matches: &dyn Fn(&str) -> bool| {
        logged
            .lines()
            .filter(|l| {
                levels
                    .iter()
                    .any(|level| module_log_message(l, level).is_some_and(|m| matches(&m)))
            })
            .count()
    };
    let turned_away = count(&["warn"], &|m| m == busy);
    // `info` for "not smaller" and the guard, `warn` for a failure.
    let kept = count(&["info", "warn"], &|m| {
        m.starts_with(&ran) && m.ends_with(", serving original")
    });
    assert!(
        turned_away >= 1,
        "max_jobs 1 with 4 concurrent requests: no \"[warn] ... smart_imaging: {busy}\":\n{logged}"
    );
    assert_eq!(
        turned_away + kept,
        originals,
        "originals served vs lines saying why:\n{logged}"
    );
    n.assert_workers_survived(&workers);
}

/// A 1-bit grayscale PNG, white with a black line every 64 rows (fast to
/// encode, tiny as WebP), stored uncompressed: `width * height / 8` bytes.
fn bilevel_png(width: u32, height: u32) -> Vec<u8> {
    let row_bytes = (width as usize).div_ceil(8);
    let mut raw = Vec::with_capacity((row_bytes + 1) * height as usize);
    for y in 0..height {
        raw.push(0);
        let v = if y % 64 == 0 { 0x00 } else { 0xFF };
        raw.extend(std::iter::repeat_n(v, row_bytes));
    }
    png_raw(width, height, 1, 0, &zlib_stored(&raw))
}

/// The documented default of `smart_imaging_max_pixels` is 24000000: a
/// 20-megapixel image converts, a 24.5-megapixel one does not.
#[test]
fn default_max_pixels_is_16_million() {
    let mut n = Nginx::prepare("fail-default-maxpixels");
    let under = bilevel_png(4000, 4000); // 16 000 000 pixels: at the limit
    let over = bilevel_png(5000, 4000); // 20 000 000 pixels
    assert!(under.len() < 10 * 1024 * 1024 && over.len() < 10 * 1024 * 1024);
    n.put_file("images/under.png", &under);
    n.put_file("images/over.png", &over);
    n.run(&Config::with_module(HTTP));

    // An explicit, larger limit converts the larger image ...
    let r = get(n.port(), "/px24m/over.png", &[ACCEPT_WEBP]);
    assert_eq!(
        r.content_type(),
        Some("image/webp"),
        "explicit 24000000 limit\n{}\n{}",
        r.describe(),
        n.error_log()
    );
    // ... the default (16000000) converts an image at the limit ...
    let mark = n.error_log_mark();
    let r = get(n.port(), "/images/under.png", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type(),
        Some("image/webp"),
        "a 4000x4000 PNG is at the default limit of 16000000 pixels and should convert\n{}\nerror log:\n{}",
        r.describe(),
        n.error_log_since(mark)
    );
    // ... and refuses one over it.
    let url = "/images/over.png";
    let why = "image is 5000x4000, over the limit of 16000000 pixels";
    expect_original_with_log(&n, url, &over, "warn", &not_converted(url, why));
}

/// Clients that hang up while their image is being converted: nothing
/// crashes, and the server keeps answering.
#[test]
fn client_abort_during_conversion() {
    let mut n = Nginx::prepare("fail-abort");
    let (name, big) = big_image("lom_life.jpg", (1600, 1000, 4));
    n.put_file(&format!("images/{name}"), &big);
    n.put_file("images/ok.jpg", &astronaut());
    n.run(&Config::with_module(HTTP));
    let workers = n.worker_pids();
    for prefix in ["/images/", "/shop/"] {
        for delay_ms in [0u64, 5, 30, 100] {
            let mut ka = KeepAlive::connect(n.port());
            ka.send(&format!("{prefix}{name}"), &[ACCEPT_WEBP]);
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            drop(ka);
        }
    }
    // Let the abandoned conversions finish.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let r = get(n.port(), "/images/ok.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let r = get(n.port(), &format!("/images/{name}"), &[ACCEPT_WEBP]);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    n.assert_workers_survived(&workers);
    let log = n.error_log();
    let alerts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]"))
        .collect();
    assert!(
        alerts.is_empty(),
        "alerts in the error log:\n{}",
        alerts.join("\n")
    );
}

/// Several requests on one keep-alive connection, pipelined: each response
/// is complete and in order, converted or not.
#[test]
fn pipelined_keepalive_requests() {
    let mut n = Nginx::prepare("fail-pipeline");
    let j = astronaut();
    let p = png_sample();
    n.put_file("images/a.jpg", &j);
    n.put_file("images/b.png", &p);
    n.put_file("images/corrupt.jpg", &corrupt_jpeg());
    n.put_file("images/t.txt", b"text\n");
    n.run(&Config::with_module(HTTP));
    let workers = n.worker_pids();
    for prefix in ["/images/", "/shop/"] {
        let mark = n.error_log_mark();
        let mut ka = KeepAlive::connect(n.port());
        let seq: [(&str, bool); 6] = [
            ("a.jpg", true),
            ("t.txt", false),
            ("b.png", true),
            ("corrupt.jpg", true),
            ("a.jpg", false),
            ("b.png", true),
        ];
        for (f, webp) in seq {
            let hs: Vec<(&str, &str)> = if webp { vec![ACCEPT_WEBP] } else { vec![] };
            ka.send(&format!("{prefix}{f}"), &hs);
        }
        for (i, (f, webp)) in seq.iter().enumerate() {
            let r = ka
                .recv()
                .unwrap_or_else(|e| panic!("{prefix}: response {i} ({f}): {e}"));
            assert_eq!(r.status, 200, "{prefix}{f}\n{}", r.describe());
            let what = format!("{prefix}{f} (#{i}, webp accepted: {webp})");
            match (*f, *webp) {
                ("a.jpg", true) | ("b.png", true) => {
                    assert_eq!(
                        r.content_type(),
                        Some("image/webp"),
                        "{what}\n{}",
                        r.describe()
                    );
                    codecs_check(&r.body, &what);
                }
                ("a.jpg", false) => assert!(r.body == j, "{what}"),
                ("t.txt", _) => assert_eq!(r.body, b"text\n", "{what}"),
                ("corrupt.jpg", _) => assert!(r.body == corrupt_jpeg(), "{what}"),
                _ => unreachable!(),
            }
        }
        let url = format!("{prefix}corrupt.jpg");
        let why = not_converted(&url, CORRUPT_JPEG_WARNING);
        assert!(
            n.wait_module_log(mark, "warn", &why).is_some(),
            "{url} (pipelined): no \"[warn] ... smart_imaging: {why}\":\n{}",
            n.error_log_since(mark)
        );
    }
    n.assert_workers_survived(&workers);
}

fn codecs_check(body: &[u8], what: &str) {
    smart_imaging_core::codecs::webp::decode(body)
        .unwrap_or_else(|e| panic!("{what}: invalid WebP: {e}"));
}

/// `nginx -s reload` while conversions run: the old worker finishes them
/// (graceful shutdown), the new one serves, nothing crashes.
#[test]
fn reload_during_conversion() {
    let mut n = Nginx::prepare("fail-reload");
    let (name, big) = big_image("k4_volna.jpg", (1600, 1000, 6));
    n.put_file(&format!("images/{name}"), &big);
    n.put_file("images/ok.jpg", &astronaut());
    n.run(&Config::with_module(HTTP));
    let old_workers = n.worker_pids();
    let port = n.port();
    let url = format!("/images/{name}");
    let results: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| request(port, "GET", &url, &[ACCEPT_WEBP])))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let st = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(n.master_pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        hs.into_iter()
            .map(|h| h.join().unwrap().expect("request during reload"))
            .collect()
    });
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.status, 200, "request {i}\n{}", r.describe());
        eprintln!(
            "request {i} during reload: {:?}, {} bytes, {:.0} ms",
            r.content_type(),
            r.body.len(),
            ms(r.elapsed)
        );
        if r.content_type() == Some("image/webp") {
            codecs_check(&r.body, &format!("request {i}"));
        } else {
            assert!(r.body == big, "request {i}: neither WebP nor original");
        }
    }
    // New workers serve after the reload.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while n.worker_pids().iter().any(|p| old_workers.contains(p))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = get(port, "/images/ok.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let log = n.error_log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exited on signal") || l.contains("[alert]") || l.contains("[crit]"))
        .collect();
    assert!(
        bad.is_empty(),
        "problems in the error log:\n{}",
        bad.join("\n")
    );
    assert!(!n.worker_pids().is_empty());
}

/// A 3000x3000 JPEG that is flat grey but for a grainy 64x64 corner: ~27 KB
/// whose header says 9 megapixels (issue #11). The guard's search on a
/// sample of the image sees only grey; the whole image then fails its
/// check, and without a bound the conversion would encode it whole again
/// and again before serving the original.
fn tiny_jpeg_with_a_huge_header() -> Vec<u8> {
    let (w, h) = (3000usize, 3000usize);
    let mut pixels = vec![128u8; w * h * 3];
    let mut rng = Rng::new(13);
    for y in 0..64 {
        for x in 0..64 {
            let grain = (rng.next_u64() % 13) as u8;
            let at = (y * w + x) * 3;
            pixels[at..at + 3].copy_from_slice(&[
                (x * 3) as u8 + grain,
                (y * 3) as u8 + grain,
                90 + grain,
            ]);
        }
    }
    let image = smart_imaging_core::codecs::Image::rgb(w as u32, h as u32, pixels);
    smart_imaging_core::codecs::jpeg::encode(&image, 75).unwrap()
}

/// The work budget (`smart_imaging_work_budget`): the tiny file with a
/// huge header is served as the original after a bounded part of the
/// conversion, with the reason in `$smart_imaging_result`, the
/// `X-Smart-Imaging` header and the error log; a normal image right after
/// converts; with the budget off the conversion goes on to its end.
#[test]
fn work_budget_bounds_a_tiny_file_with_a_huge_header() {
    let mut n = Nginx::prepare("fail-work");
    let bomb = tiny_jpeg_with_a_huge_header();
    assert!(bomb.len() < 40_000, "{} bytes", bomb.len());
    n.put_file("images/bomb.jpg", &bomb);
    n.put_file("images/ok.jpg", &astronaut());
    n.run(&Config::with_module(
        r#"
    log_format result '$uri|$smart_imaging_result';
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_timeout 120s;
        access_log logs/result.log result;
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        location /unbounded/ {
            smart_imaging_work_budget off;
            alias {{HTDOCS}}/images/;
        }
    }
"#,
    ));
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let start = std::time::Instant::now();
    let r = get(n.port(), "/images/bomb.jpg", &[ACCEPT_BROWSER]);
    let bounded = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.body == bomb, "not the original\n{}", r.describe());
    assert!(
        debug(&r).starts_with(&format!("original reason=too-much-work in={}", bomb.len())),
        "{}",
        r.describe()
    );
    // The step refused: a whole-image encode and its check (9 MP at one
    // pass per pixel, and more).
    let why = "pixel-passes) would take the conversion over its work budget";
    let line = n
        .error_log_since(mark)
        .lines()
        .find(|l| {
            l.contains("[info]")
                && l.contains("\"/images/bomb.jpg\" not converted")
                && l.contains(why)
        })
        .map(str::to_string);
    assert!(
        line.is_some(),
        "no [info] line saying why:\n{}",
        n.error_log_since(mark)
    );
    // A normal image right after converts.
    let r = get(n.port(), "/images/ok.jpg", &[ACCEPT_BROWSER]);
    assert!(
        debug(&r).starts_with("converted format=avif"),
        "{}",
        r.describe()
    );
    // Without the budget, the same request runs the whole search.
    let start = std::time::Instant::now();
    let r = get(n.port(), "/unbounded/bomb.jpg", &[ACCEPT_BROWSER]);
    let unbounded = start.elapsed();
    assert!(r.body == bomb);
    assert!(
        debug(&r).starts_with("original reason=guard"),
        "{}",
        r.describe()
    );
    eprintln!(
        "{} bytes, 3000x3000: original served after {:.0} ms with the budget, {:.0} ms without",
        bomb.len(),
        bounded.as_secs_f64() * 1e3,
        unbounded.as_secs_f64() * 1e3
    );
    n.assert_workers_survived(&workers);
    // The access log's `$smart_imaging_result`.
    let log = std::fs::read_to_string(n.prefix.join("logs/result.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("/images/bomb.jpg|original reason=too-much-work in=")),
        "{log}"
    );
}
