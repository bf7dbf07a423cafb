//! Clients that leave take their work with them:
//!
//! - 40 clients ask for a large image and hang up while one conversion runs
//!   and the others wait in the queue: the queued jobs leave the queue, the
//!   running one gives up at its next step (`running conversion
//!   cancelled`), and a normal request right after converts without waiting
//!   for any of them;
//! - the same over HTTP/2 with `RST_STREAM` (the connection stays open and
//!   serves the next stream), and with `GOAWAY` and a closed connection.
//!
//! `cargo test --test abort -- --nocapture` prints the timings.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        http2 on;
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        smart_imaging_max_running 1;
        location /images/ {
            smart_imaging on;
            smart_imaging_max_jobs 64;
            smart_imaging_timeout 120s;
            # Every request converts: nothing from earlier ones.
            smart_imaging_stash_path off;
        }
    }
"#;

const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");
const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp");

/// One worker, two pool threads (only `smart_imaging_max_running 1`
/// bounds the conversions). `big.png` is a 2 MP synthetic photo: to AVIF
/// with the guard, several seconds of many steps.
fn start(name: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.put_file("images/big.png", &synthetic_photo_png(1800, 1200, 11));
    let coffee = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    n.put_file("images/coffee.jpg", &coffee);
    n.run(&Config::with_module(HTTP));
    n
}

/// Waits up to `secs` for `count` module `info` lines since `mark` that
/// start with `prefix`; how many there were.
fn wait_info(n: &Nginx, mark: usize, prefix: &str, count: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = info_lines(n, mark, prefix, "").len();
        if found >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `ran` milliseconds of the `cancelled conversion gave up after … ms
/// (ran … ms)` line since `mark`.
fn cancelled_ran_ms(n: &Nginx, mark: usize) -> Option<f64> {
    let line = info_lines(n, mark, "cancelled conversion gave up", "")
        .into_iter()
        .next()?;
    let ran = line.split("(ran ").nth(1)?.split(" ms").next()?;
    ran.parse().ok()
}

#[test]
fn forty_aborted_requests_then_a_normal_one_converts_at_once() {
    let n = start("abort-forty");
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    // 40 clients: one conversion runs, 39 wait in the queue.
    let mut clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", n.port())).unwrap();
            s.write_all(
                format!(
                    "GET /images/big.png HTTP/1.1\r\nHost: localhost\r\nAccept: {}\r\n\r\n",
                    ACCEPT_AVIF.1
                )
                .as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    let queued = wait_info(&n, mark, "conversion queued", 39, 60);
    assert_eq!(queued, 39, "{}", n.error_log_since(mark));
    assert!(
        info_lines(&n, mark, "converted", "").is_empty()
            && !n.error_log_since(mark).contains("converted to"),
        "big.png converted before the clients left"
    );
    // They all hang up.
    let gone = Instant::now();
    clients.clear();
    let dropped = wait_info(
        &n,
        mark,
        "queued conversion dropped: client closed the connection",
        39,
        30,
    );
    assert_eq!(dropped, 39, "{}", n.error_log_since(mark));
    let cancelled = wait_info(
        &n,
        mark,
        "running conversion cancelled: client closed the connection",
        1,
        30,
    );
    assert_eq!(cancelled, 1, "{}", n.error_log_since(mark));
    // A normal request right after: converted, having waited at most for
    // the running job's current step.
    let r = get(n.port(), "/images/coffee.jpg", &[ACCEPT_WEBP_ONLY]);
    let normal = gone.elapsed();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(debug(&r).starts_with("converted "), "{}", r.describe());
    assert_eq!(
        wait_info(&n, mark, "cancelled conversion gave up", 1, 30),
        1,
        "{}",
        n.error_log_since(mark)
    );
    let ran = cancelled_ran_ms(&n, mark).expect("the gave-up line");
    let started_big = n
        .error_log_since(mark)
        .lines()
        .filter(|l| l.contains("queued conversion started") && l.contains("big.png"))
        .count();
    assert_eq!(
        started_big,
        0,
        "a dropped job started:\n{}",
        n.error_log_since(mark)
    );
    // What one whole conversion of big.png costs, for comparison: the
    // cancelled one stopped well before it.
    let started = Instant::now();
    let full = get(n.port(), "/images/big.png", &[ACCEPT_AVIF]);
    let full_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(full.status, 200, "{}", full.describe());
    assert!(
        !debug(&full).is_empty() && !debug(&full).contains("cancelled"),
        "{}",
        full.describe()
    );
    eprintln!(
        "40 aborted requests: the normal request was served {:.0} ms after the clients left; \
         the running conversion gave up after running {ran:.0} ms; a whole conversion of the \
         same image takes {full_ms:.0} ms",
        normal.as_secs_f64() * 1000.0
    );
    assert!(
        ran < full_ms,
        "the cancelled conversion ran {ran:.0} ms, a whole one takes {full_ms:.0} ms"
    );
    // The access log: 40 requests ended by their clients (499).
    let access = std::fs::read_to_string(n.prefix.join("logs/access.log")).unwrap();
    let ended = access
        .lines()
        .filter(|l| l.contains("\"GET /images/big.png HTTP/1.1\" 499"))
        .count();
    assert_eq!(ended, 40, "{access}");
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}

/// A minimal HTTP/2 client over cleartext (prior knowledge): enough to
/// open streams, reset one, and see the answer of another.
struct H2 {
    s: TcpStream,
    buf: Vec<u8>,
}

/// An HPACK string literal, without Huffman coding (short strings only).
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

impl H2 {
    fn connect(port: u16) -> H2 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let mut h2 = H2 { s, buf: Vec::new() };
        h2.frame(4, 0, 0, &[]); // SETTINGS, none
        h2
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        self.s.write_all(&f).unwrap();
    }

    /// A GET on `stream` (odd, increasing), with an `accept` header.
    fn get(&mut self, stream: u32, port: u16, path: &str, accept: &str) {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        block.push(0x04); // :path, literal without indexing (name 4)
        hpack_str(&mut block, path);
        block.push(0x01); // :authority, literal without indexing (name 1)
        hpack_str(&mut block, &format!("127.0.0.1:{port}"));
        block.push(0x00); // accept, literal without indexing, new name
        hpack_str(&mut block, "accept");
        hpack_str(&mut block, accept);
        self.frame(1, 0x5, stream, &block); // HEADERS, END_STREAM|END_HEADERS
    }

    /// RST_STREAM with CANCEL.
    fn cancel(&mut self, stream: u32) {
        self.frame(3, 0, stream, &8u32.to_be_bytes());
    }

    /// Reads frames until `stream` ends; its response's DATA length, and
    /// whether a HEADERS frame came for it. Answers SETTINGS and PINGs.
    fn response(&mut self, stream: u32) -> (bool, usize) {
        let (mut headers, mut data) = (false, 0);
        loop {
            while self.buf.len() < 9 {
                self.fill();
            }
            let len = (usize::from(self.buf[0]) << 16)
                | (usize::from(self.buf[1]) << 8)
                | usize::from(self.buf[2]);
            let (kind, flags) = (self.buf[3], self.buf[4]);
            let id = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff;
            while self.buf.len() < 9 + len {
                self.fill();
            }
            let payload: Vec<u8> = self.buf.drain(..9 + len).skip(9).collect();
            match kind {
                4 if flags & 1 == 0 => self.frame(4, 1, 0, &[]), // SETTINGS ack
                6 if flags & 1 == 0 => self.frame(6, 1, 0, &payload), // PING ack
                7 => panic!("GOAWAY from nginx: {payload:?}"),
                _ => {}
            }
            if id != stream {
                continue;
            }
            match kind {
                1 => headers = true,
                0 => {
                    data += len;
                    // Let nginx send more: window updates for the
                    // connection and the stream.
                    if len > 0 {
                        let inc = (len as u32).to_be_bytes();
                        self.frame(8, 0, 0, &inc);
                        self.frame(8, 0, stream, &inc);
                    }
                }
                3 => panic!("nginx reset stream {stream}"),
                _ => {}
            }
            if flags & 1 != 0 && (kind == 0 || kind == 1) {
                return (headers, data);
            }
        }
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp).unwrap();
        assert!(n > 0, "nginx closed the HTTP/2 connection");
        self.buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn http2_stream_reset_cancels_its_conversion_and_the_connection_goes_on() {
    let n = start("abort-h2");
    let workers = n.worker_pids();
    let mark = n.error_log_mark();
    let port = n.port();
    let mut h2 = H2::connect(port);
    h2.get(1, port, "/images/big.png", ACCEPT_AVIF.1);
    // A second stream for the same image queues behind the first.
    h2.get(3, port, "/images/big.png", ACCEPT_AVIF.1);
    assert_eq!(
        wait_info(&n, mark, "conversion queued", 1, 60),
        1,
        "{}",
        n.error_log_since(mark)
    );
    h2.cancel(3);
    h2.cancel(1);
    assert_eq!(
        wait_info(
            &n,
            mark,
            "queued conversion dropped: client went away",
            1,
            30
        ),
        1,
        "{}",
        n.error_log_since(mark)
    );
    assert_eq!(
        wait_info(
            &n,
            mark,
            "running conversion cancelled: client went away",
            1,
            30
        ),
        1,
        "{}",
        n.error_log_since(mark)
    );
    assert_eq!(
        wait_info(&n, mark, "cancelled conversion gave up", 1, 60),
        1,
        "{}",
        n.error_log_since(mark)
    );
    // The same connection serves the next stream, converted.
    let started = Instant::now();
    h2.get(5, port, "/images/coffee.jpg", ACCEPT_WEBP_ONLY.1);
    let (headers, data) = h2.response(5);
    assert!(
        headers && data > 0,
        "stream 5: headers {headers}, {data} bytes"
    );
    eprintln!(
        "HTTP/2: after two RST_STREAMs, the next stream was answered in {:.0} ms ({data} bytes); \
         the cancelled conversion ran {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0,
        cancelled_ran_ms(&n, mark).unwrap_or(f64::NAN)
    );
    let log = n.error_log_since(mark);
    assert!(
        log.contains("/images/coffee.jpg") && log.contains("converted to"),
        "{log}"
    );
    // GOAWAY, then the connection closes, while a conversion runs: it is
    // cancelled too.
    let mark = n.error_log_mark();
    let mut h2 = H2::connect(port);
    h2.get(1, port, "/images/big.png", ACCEPT_AVIF.1);
    std::thread::sleep(Duration::from_millis(200));
    // GOAWAY: last stream 0, NO_ERROR.
    h2.frame(7, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
    drop(h2);
    assert_eq!(
        wait_info(&n, mark, "running conversion cancelled", 1, 30),
        1,
        "{}",
        n.error_log_since(mark)
    );
    assert_eq!(
        wait_info(&n, mark, "cancelled conversion gave up", 1, 60),
        1,
        "{}",
        n.error_log_since(mark)
    );
    n.assert_workers_survived(&workers);
    assert_no_alerts(&n);
}
