//! `HEAD` answers with the headers `GET` would (docs/responses.md, "HEAD"):
//! in a location with the module on, static and proxied, for clients that
//! get AVIF, WebP or the original, for a PNG, a JPEG and a file that is no
//! image, `HEAD`'s status and headers are `GET`'s, and no byte of body
//! follows them (the connection serves the next request), also when the
//! module lets a body go mid-stream; the same for a conditional `HEAD`
//! (`304`), errors and redirects, through `try_files` and `error_page`,
//! over HTTP/2; the upstream is asked for a `GET`, and the access log says
//! `HEAD`, also for a `HEAD` whose response never went out.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");
const ACCEPT_NONE: (&str, &str) = ("Accept", "*/*");

/// The module's directives of every converting location: each adds headers
/// a `HEAD` must get too (`Cache-Control`, `Accept-CH`, `X-Smart-Imaging`).
const MODULE: &str = "
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_ttl 1h;
            smart_imaging_debug_header on;
            smart_imaging_dpr on;
            smart_imaging_accept_ch on;
            # A busy test machine must not turn a conversion into a
            # timeout fallback, which GET and HEAD would not share.
            smart_imaging_timeout 300s;
            send_timeout 300s;";

/// `{{HANG}}`: the port of an upstream that accepts and never answers.
const HTTP: &str = r#"
    log_format head '$arg_t|$request_method|$status|$smart_imaging_result';
    access_log {{PREFIX}}/logs/head.log head;
    # The 404s behind error_page are meant: the error log is for errors.
    log_not_found off;

    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /images/ {
            {{MODULE}}
            add_header Link "</a.css>; rel=preload; as=style";
        }
        location /shop/ {
            {{MODULE}}
            proxy_pass http://127.0.0.1:{{PORT2}}/origin/;
        }
        # try_files, from a location without the module to one with it.
        location /tf/ {
            try_files $uri /images/photo.jpg?$args;
        }
        # error_page: the image's own status (=), from a location with the
        # module (turned into a GET before the redirect) ...
        location /ep/ {
            {{MODULE}}
            error_page 404 = /images/photo.jpg;
        }
        # ... and from one without it (turned into a GET after it).
        location /epplain/ {
            error_page 404 = /images/photo.jpg;
        }
        # error_page keeping the 404: an image body, not converted.
        location /ep404/ {
            {{MODULE}}
            error_page 404 /images/photo.jpg;
        }
        # A chunked upstream (no Content-Length) whose body outgrows
        # smart_imaging_buffer mid-stream: the original goes on from there.
        location /chunked/ {
            {{MODULE}}
            smart_imaging_buffer 16k;
            proxy_pass http://127.0.0.1:{{PORT2}}/ssi/;
        }
        location /hang/ {
            {{MODULE}}
            proxy_pass http://127.0.0.1:{{HANG}}/;
        }
    }

    # The origin (no module), with a log of its own.
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
        access_log {{PREFIX}}/logs/origin.log head;
        location /origin/ {
            add_header Cache-Control "public, max-age=600";
            add_header Link "</a.css>; rel=preload; as=style";
        }
        # SSI drops Content-Length: the body is sent chunked.
        location /ssi/ {
            alias {{HTDOCS}}/origin/;
            ssi on;
            ssi_types image/jpeg image/png;
        }
    }

    # HTTP/2 (h2c).
    server {
        listen 127.0.0.1:{{PORT3}};
        http2 on;
        root {{HTDOCS}};
        location /images/ {
            {{MODULE}}
        }
        location /shop/ {
            {{MODULE}}
            proxy_pass http://127.0.0.1:{{PORT2}}/origin/;
        }
    }
"#;

const TEXT: &[u8] = b"hello, not an image\n";

fn jpeg() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap()
}

fn png() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_horse_alpha.png")).unwrap()
}

/// Named and typed a JPEG, but no image: the module holds its header, sees
/// the first bytes, and sends the original on while the rest of the body
/// still comes (nginx reads a file in 32 KiB pieces, an upstream's body as
/// it arrives).
fn fake_jpeg() -> Vec<u8> {
    Rng::new(7).bytes(300_000)
}

/// nginx with the configuration above, and the port of the upstream that
/// never answers (its connections are kept open by a thread of its own).
fn server(name: &str) -> Nginx {
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });
    let mut n = Nginx::prepare(name);
    for dir in ["images", "origin"] {
        n.put_file(&format!("{dir}/photo.jpg"), &jpeg());
        n.put_file(&format!("{dir}/horse.png"), &png());
        n.put_file(&format!("{dir}/hello.txt"), TEXT);
        n.put_file(&format!("{dir}/fake.jpg"), &fake_jpeg());
        n.put_file(&format!("{dir}/sub/index.html"), b"<p>sub</p>\n");
    }
    let http = HTTP
        .replace("{{MODULE}}", MODULE)
        .replace("{{HANG}}", &hang_port.to_string());
    n.run(&Config::with_module(&http));
    n
}

/// The headers to compare, sorted: all but those that may differ between
/// two responses to the same request (`Date`; the timing in
/// `X-Smart-Imaging`).
fn comparable(r: &Response) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| n != "date")
        .map(|(n, v)| {
            let v = if n == "x-smart-imaging" {
                v.split(' ')
                    .filter(|w| !w.starts_with("time="))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                v
            };
            (n, v)
        })
        .collect();
    v.sort();
    v
}

/// `HEAD`'s status and headers are `GET`'s, and it has no body.
fn assert_same(what: &str, get: &Response, head: &Response) {
    assert_eq!(
        head.status,
        get.status,
        "{what}: HEAD\n{}\nGET\n{}",
        head.describe(),
        get.describe()
    );
    assert_eq!(
        comparable(head),
        comparable(get),
        "{what}: HEAD\n{}\nGET\n{}",
        head.describe(),
        get.describe()
    );
    assert!(head.body.is_empty(), "{what}: HEAD has a body");
}

/// GET then HEAD of `path` (each on a connection of its own, closed by
/// nginx: a body byte after HEAD's header would fail the parse), compared.
fn get_and_head(port: u16, path: &str, accept: (&str, &str)) -> (Response, Response) {
    let get = request(port, "GET", path, &[accept])
        .unwrap_or_else(|e| panic!("GET {path} {accept:?}: {e}"));
    let head = request(port, "HEAD", path, &[accept])
        .unwrap_or_else(|e| panic!("HEAD {path} {accept:?}: {e}"));
    assert_same(&format!("{path} {accept:?}"), &get, &head);
    (get, head)
}

#[test]
fn head_has_the_headers_of_get() {
    let n = server("head-get");
    let p = n.port();
    for loc in ["/images/", "/shop/"] {
        for (file, original_type) in [
            ("photo.jpg", "image/jpeg"),
            ("horse.png", "image/png"),
            ("hello.txt", "text/plain"),
            ("fake.jpg", "image/jpeg"),
        ] {
            let path = format!("{loc}{file}");
            for accept in [ACCEPT_AVIF, ACCEPT_WEBP, ACCEPT_NONE] {
                let (get, _) = get_and_head(p, &path, accept);
                assert_eq!(get.status, 200, "{path}\n{}", get.describe());
                // The cases differ as meant: the JPEG is converted for
                // clients that take AVIF or WebP, nothing for the others.
                let expected = match (file, accept) {
                    ("photo.jpg", ACCEPT_AVIF) => "image/avif",
                    ("photo.jpg", ACCEPT_WEBP) => "image/webp",
                    ("fake.jpg", _) => original_type,
                    _ if accept == ACCEPT_NONE || file == "hello.txt" => original_type,
                    // The PNG: whatever GET got (AVIF, WebP, or the original).
                    _ => get.content_type().unwrap(),
                };
                assert_eq!(
                    get.content_type(),
                    Some(expected),
                    "{path} {accept:?}\n{}",
                    get.describe()
                );
                if file != "hello.txt" {
                    assert!(get.vary_has("Accept"), "{path}\n{}", get.describe());
                    assert!(get.header("etag").is_some(), "{path}");
                    assert!(get.header("x-smart-imaging").is_some(), "{path}");
                }
                // smart_imaging_ttl's (images) or the origin's.
                if loc == "/shop/" || file != "hello.txt" {
                    assert!(get.header("cache-control").is_some(), "{path}");
                }
                assert!(get.header("accept-ch").is_some(), "{path}");
                assert!(get.header("link").is_some(), "{path}");
            }
        }
    }
    assert_no_errors(&n);
}

/// A raw HTTP/1.1 connection kept alive: responses read by their framing
/// only (HEAD: the header; others: `Content-Length`), so any byte a
/// response sends beyond it is read as the start of the next one.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn request_text(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req + "\r\n"
    }

    fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).unwrap();
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp).expect("read");
        assert!(n > 0, "connection closed; unread: {:?}", self.unread());
        self.buf.extend_from_slice(&tmp[..n]);
    }

    fn unread(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(64)]).into_owned()
    }

    /// The next response, to a request of `method`.
    fn recv(&mut self, method: &str) -> Response {
        let end = loop {
            if let Some(e) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break e + 4;
            }
            self.fill();
        };
        assert!(
            self.buf.starts_with(b"HTTP/1.1 "),
            "a response should start here, not {:?}",
            self.unread()
        );
        let head = parse_response(&self.buf[..end], true).unwrap();
        assert_ne!(
            head.header("connection"),
            Some("close"),
            "{}",
            head.describe()
        );
        let chunked = head.header("transfer-encoding") == Some("chunked");
        let body = if method == "HEAD" || head.status == 304 {
            assert!(!chunked, "{}", head.describe());
            0
        } else if chunked {
            loop {
                if let Some(n) = chunked_length(&self.buf[end..]) {
                    break n;
                }
                self.fill();
            }
        } else {
            head.content_length().expect("Content-Length")
        };
        while self.buf.len() < end + body {
            self.fill();
        }
        let raw: Vec<u8> = self.buf.drain(..end + body).collect();
        parse_response(&raw, method == "HEAD").unwrap()
    }
}

/// The length of the complete chunked body at the start of `b`, if it is
/// all there (nginx sends no trailers).
fn chunked_length(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = b[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[at..at + eol]).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        at += eol + 2 + size + 2;
        if b.len() < at {
            return None;
        }
        if size == 0 {
            return Some(at);
        }
    }
}

/// HEAD, GET on one connection, one after the other, then HEAD, GET, HEAD
/// pipelined: each response where it should be, GET's bytes those of a GET
/// alone, nothing left over.
#[test]
fn head_keeps_the_connection_usable() {
    let n = server("head-keepalive");
    let p = n.port();
    for path in [
        "/images/photo.jpg",
        "/shop/photo.jpg",
        "/images/horse.png",
        "/images/hello.txt",
        "/shop/hello.txt",
        "/images/fake.jpg",
        "/shop/fake.jpg",
        "/chunked/photo.jpg",
        "/chunked/fake.jpg",
        "/ep/missing.jpg",
        "/images/missing.jpg",
        "/shop/missing.jpg",
        "/images/sub",
    ] {
        for accept in [ACCEPT_AVIF, ACCEPT_NONE] {
            let what = format!("{path} {accept:?}");
            let alone = get(p, path, &[accept]);
            let mut c = Conn::open(p);
            for m in ["HEAD", "GET"] {
                c.send(&Conn::request_text(m, path, &[accept]));
                let r = c.recv(m);
                assert_eq!(r.status, alone.status, "{what} {m}\n{}", r.describe());
                assert_eq!(r.content_type(), alone.content_type(), "{what} {m}");
                assert_eq!(r.content_length(), alone.content_length(), "{what} {m}");
                if m == "GET" {
                    assert!(r.body == alone.body, "{what}: GET's body differs");
                }
            }
            // Pipelined: three requests in one write.
            let methods = ["HEAD", "GET", "HEAD"];
            let text: String = methods
                .iter()
                .map(|m| Conn::request_text(m, path, &[accept]))
                .collect();
            c.send(&text);
            for m in methods {
                let r = c.recv(m);
                assert_eq!(r.status, alone.status, "{what} pipelined {m}");
                assert_eq!(r.content_length(), alone.content_length(), "{what} {m}");
            }
            // Nothing more comes: the connection answers a last request
            // with its response first.
            c.send(&Conn::request_text("GET", "/images/hello.txt", &[]));
            let r = c.recv("GET");
            assert_eq!(r.body, TEXT, "{what}: the last response");
            assert!(c.buf.is_empty(), "{what}: left over: {:?}", c.unread());
            let _ = c.s.shutdown(Shutdown::Both);
        }
    }
    assert_no_errors(&n);
}

#[test]
fn conditional_head_gives_304_like_get() {
    let n = server("head-304");
    let p = n.port();
    for path in ["/images/photo.jpg", "/shop/photo.jpg", "/images/horse.png"] {
        for accept in [ACCEPT_AVIF, ACCEPT_WEBP, ACCEPT_NONE] {
            let first = get(p, path, &[accept]);
            let etag = first.header("etag").expect("ETag").to_string();
            let inm = ("If-None-Match", etag.as_str());
            let get = request(p, "GET", path, &[accept, inm]).unwrap();
            let head = request(p, "HEAD", path, &[accept, inm]).unwrap();
            assert_eq!(get.status, 304, "{path} {etag}\n{}", get.describe());
            assert_same(&format!("{path} {accept:?} {etag}"), &get, &head);
            // The original's validator, from a client that gets a variant:
            // whatever GET answers (nginx's 304: the client holds a valid
            // representation), HEAD answers.
            let orig = request(p, "HEAD", path, &[ACCEPT_NONE]).unwrap();
            let orig_etag = orig.header("etag").expect("ETag").to_string();
            if orig_etag != etag {
                let inm = ("If-None-Match", orig_etag.as_str());
                let get = request(p, "GET", path, &[accept, inm]).unwrap();
                let head = request(p, "HEAD", path, &[accept, inm]).unwrap();
                assert_same(&format!("{path} {accept:?} {orig_etag}"), &get, &head);
            }
        }
    }
    assert_no_errors(&n);
}

#[test]
fn head_through_internal_redirects() {
    let n = server("head-redirect");
    let p = n.port();
    for (path, status, converted) in [
        ("/tf/photo.jpg", 200, true),
        ("/ep/missing.jpg", 200, true),
        ("/epplain/missing.jpg", 200, true),
        ("/ep404/missing.jpg", 404, false),
    ] {
        for accept in [ACCEPT_AVIF, ACCEPT_WEBP, ACCEPT_NONE] {
            let (get, _) = get_and_head(p, path, accept);
            assert_eq!(get.status, status, "{path}\n{}", get.describe());
            let expected = match accept {
                ACCEPT_AVIF if converted => "image/avif",
                ACCEPT_WEBP if converted => "image/webp",
                _ => "image/jpeg",
            };
            assert_eq!(get.content_type(), Some(expected), "{path} {accept:?}");
        }
    }
    assert_no_errors(&n);
}

/// Errors and redirects, made here or by the upstream: HEAD gets GET's.
#[test]
fn head_of_errors_and_redirects() {
    let n = server("head-errors");
    let p = n.port();
    for (path, status) in [
        ("/images/missing.jpg", 404),
        ("/shop/missing.jpg", 404),
        ("/images/sub", 301),
        ("/shop/sub", 301),
    ] {
        for accept in [ACCEPT_AVIF, ACCEPT_NONE] {
            let (get, _) = get_and_head(p, path, accept);
            assert_eq!(get.status, status, "{path}\n{}", get.describe());
            assert!(!get.body.is_empty(), "{path}: GET has a body");
        }
    }
    assert_no_errors(&n);
}

/// The access log says HEAD, with the result GET's line has; and for a
/// HEAD whose response never went out (the client left while the upstream
/// kept silent), too.
#[test]
fn access_log_says_head() {
    let n = server("head-log");
    let p = n.port();
    for (i, path) in ["/images/photo.jpg", "/shop/horse.png", "/tf/photo.jpg"]
        .iter()
        .enumerate()
    {
        get(p, &format!("{path}?t=get{i}"), &[ACCEPT_WEBP]);
        request(p, "HEAD", &format!("{path}?t=head{i}"), &[ACCEPT_WEBP]).unwrap();
        let get = logged(&n, "head.log", &format!("get{i}"));
        let head = logged(&n, "head.log", &format!("head{i}"));
        assert_eq!(get.0, "GET");
        assert_eq!(head.0, "HEAD", "{path}");
        if path.ends_with(".jpg") {
            assert!(
                head.1.starts_with("200|converted format="),
                "{path}: {head:?}"
            );
        }
        assert_eq!(without_time(&head.1), without_time(&get.1), "{path}");
        // The upstream was asked for a GET.
        if path.starts_with("/shop/") {
            let origin = logged(&n, "origin.log", &format!("head{i}"));
            assert_eq!(origin.0, "GET", "{path}");
        }
    }

    // The client leaves while the upstream keeps silent: 499, no header
    // ever sent.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.write_all(Conn::request_text("HEAD", "/hang/photo.jpg?t=gone", &[ACCEPT_WEBP]).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
    let gone = logged(&n, "head.log", "gone");
    assert_eq!(gone.0, "HEAD", "{gone:?}");
    assert!(gone.1.starts_with("499|"), "{gone:?}");
    assert_no_errors(&n);
}

/// (`$request_method`, `$status|$smart_imaging_result`) of the line of
/// `?t=<tag>` in `logs/<log>`, waiting for it.
fn logged(n: &Nginx, log: &str, tag: &str) -> (String, String) {
    let path = n.prefix.join("logs").join(log);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let prefix = format!("{tag}|");
        if let Some(line) = log.lines().find(|l| l.starts_with(&prefix)) {
            let mut parts = line.splitn(3, '|').skip(1);
            let method = parts.next().unwrap_or("").to_string();
            return (method, parts.next().unwrap_or("").to_string());
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {tag} in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing at `error` or worse in the error log: HTTP/2 logs body bytes
/// sent after a header-only HEAD (`output on closed stream`) there.
fn assert_no_errors(n: &Nginx) {
    assert_no_alerts(n);
    let log = n.error_log();
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("[error]")).collect();
    assert!(bad.is_empty(), "in the error log:\n{}", bad.join("\n"));
}

fn without_time(s: &str) -> String {
    s.split(' ')
        .filter(|w| !w.starts_with("time="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// HTTP/2: HEAD (curl -I) has GET's headers, static and proxied; on one
/// connection its stream ends with its HEADERS frame, no DATA follows, and
/// the GET after it gets its whole body.
#[test]
fn http2_head_has_the_headers_of_get() {
    let n = server("head-h2");
    let port = n.ports[2];
    let tmp = n.prefix.join("curl");
    std::fs::create_dir_all(&tmp).unwrap();
    for path in [
        "/images/photo.jpg",
        "/shop/photo.jpg",
        "/shop/hello.txt",
        "/images/fake.jpg",
        "/shop/fake.jpg",
    ] {
        for accept in [ACCEPT_AVIF, ACCEPT_NONE] {
            let what = format!("{path} {accept:?}");
            let url = format!("http://127.0.0.1:{port}{path}");
            let h2 = ["--http2-prior-knowledge"];
            let (proto, get) = curl_get(&url, &h2, &[accept], &tmp);
            assert_eq!(proto, "HTTP/2");
            let (proto, head) = curl_get(&url, &["--http2-prior-knowledge", "-I"], &[accept], &tmp);
            assert_eq!(proto, "HTTP/2");
            assert_eq!(head.status, get.status, "{what}\n{}", head.describe());
            assert_eq!(comparable(&head), comparable(&get), "{what}");
            if accept == ACCEPT_AVIF && path.ends_with("photo.jpg") {
                assert_eq!(get.content_type(), Some("image/avif"), "{what}");
            }

            // (curl 7.88 cannot reuse an h2c connection for a second
            // request: frames, by hand.)
            let mut c = H2::open(port);
            assert_eq!(c.exchange(1, "HEAD", path, accept), None, "{what}: HEAD");
            let body = c.exchange(3, "GET", path, accept);
            assert!(body.as_ref() == Some(&get.body), "{what}: GET's body");
            assert_eq!(c.exchange(5, "HEAD", path, accept), None, "{what}: HEAD");
            c.ping();
        }
    }
    assert_no_errors(&n);
}

/// A minimal HTTP/2 client over cleartext (prior knowledge) that checks
/// frames, not headers (it has no HPACK decoder): which stream a frame is
/// on, and where each stream ends.
struct H2 {
    s: TcpStream,
    /// Streams that have ended: no frame of theirs may come after.
    closed: Vec<u32>,
}

/// Frame types and flags (RFC 9113).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

impl H2 {
    fn open(port: u16) -> H2 {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = H2 {
            s,
            closed: Vec::new(),
        };
        c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        // SETTINGS_INITIAL_WINDOW_SIZE 16 MiB, and as much for the
        // connection: no flow control to answer.
        let window = 1u32 << 24;
        let mut settings = vec![0, 4];
        settings.extend_from_slice(&window.to_be_bytes());
        c.send_frame(SETTINGS, 0, 0, &settings);
        c.send_frame(8, 0, 0, &(window - 65535).to_be_bytes());
        c
    }

    fn write(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    fn send_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.write(&f);
    }

    /// The next frame: (type, flags, stream, payload); SETTINGS
    /// acknowledged on the way.
    fn frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        let mut h = [0u8; 9];
        self.s.read_exact(&mut h).expect("read a frame");
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.s
            .read_exact(&mut payload)
            .expect("read a frame's payload");
        let (kind, flags) = (h[3], h[4]);
        if kind == SETTINGS && flags & ACK == 0 {
            self.send_frame(SETTINGS, ACK, 0, &[]);
        }
        assert!(
            !self.closed.contains(&stream),
            "a frame (type {kind}) on stream {stream}, which had ended"
        );
        // RST_STREAM, GOAWAY.
        assert!(kind != 3 && kind != 7, "frame type {kind}: {payload:02x?}");
        (kind, flags, stream, payload)
    }

    /// Sends a request on `stream` and reads its response: None if its
    /// HEADERS frame ended the stream, else the bytes of its DATA frames.
    fn exchange(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        accept: (&str, &str),
    ) -> Option<Vec<u8>> {
        // HPACK: literal fields without indexing, names from the static
        // table (1 :authority, 2 :method, 4 :path, 19 accept), no Huffman;
        // `:scheme: http` is entry 6.
        let mut block = vec![0x86];
        for (index, value) in [(2, method), (4, path), (1, "localhost"), (19, accept.1)] {
            hpack_int(&mut block, 0x00, 4, index);
            hpack_int(&mut block, 0x00, 7, value.len());
            block.extend_from_slice(value.as_bytes());
        }
        self.send_frame(HEADERS, END_STREAM | END_HEADERS, stream, &block);
        let mut body: Option<Vec<u8>> = None;
        loop {
            let (kind, flags, on, payload) = self.frame();
            if on != stream {
                continue;
            }
            match kind {
                DATA => body
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&payload),
                HEADERS => assert!(flags & END_HEADERS != 0, "CONTINUATION"),
                _ => continue,
            }
            if flags & END_STREAM != 0 {
                self.closed.push(stream);
                return body;
            }
        }
    }

    /// A PING answered: every frame nginx sent before it has been read
    /// (and was on a stream still open).
    fn ping(&mut self) {
        self.send_frame(PING, 0, 0, b"headping");
        loop {
            let (kind, flags, _, payload) = self.frame();
            if kind == PING && flags & ACK != 0 {
                assert_eq!(payload, b"headping");
                return;
            }
        }
    }
}

/// An HPACK integer with a `prefix`-bit prefix after the bits of `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}
