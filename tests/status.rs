//! `smart_imaging_status`: the Prometheus endpoint and its shared counters.
//!
//! - `promtool check metrics` accepts what it serves (and its HELP, TYPE,
//!   `_total` and unit suffixes); `Content-Type: text/plain; version=0.0.4`;
//!   only `GET`/`HEAD`; the status location itself is not counted;
//! - after a known sequence of requests over two workers (each of which is
//!   seen to serve some), every counter is exactly what the requests made
//!   it, equals what the access log's `$smart_imaging_result` lines add up
//!   to, and survives `nginx -s reload` (new workers add to the same zone);
//! - the queue gauges show a worker's running and queued conversions while
//!   they are in flight, and go back to zero;
//! - a real Prometheus server (Debian's `prometheus`, started here on
//!   loopback) scrapes the endpoint and a PromQL query over its HTTP API
//!   gives the conversions made; every query of the Grafana dashboard runs
//!   there without error;
//! - `nginx-conf/grafana-smart-imaging.json` parses, has the panels it
//!   promises, and its queries name only metrics the endpoint exports
//!   (and pass `promtool check rules`);
//! - `nginx -t` refuses misplaced or malformed directives.
//!
//! Without `promtool`/`prometheus` on the PATH the tests that need them
//! print SKIP and pass, except under `CI=true`, where they fail
//! (`scripts/install-deps.sh` installs Debian's `prometheus`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");
const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp,*/*");

const HTTP: &str = r#"
    log_format result '$pid|$arg_t|$status|$smart_imaging_result';
    access_log {{PREFIX}}/logs/result.log result;
    {{ZONE}}
    server {
        listen 127.0.0.1:{{PORT}} reuseport;
        root {{HTDOCS}};
        add_header X-Pid $pid always;
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        location /images/ {
            smart_imaging on;
        }
        location /noguard/ {
            alias {{HTDOCS}}/images/;
            smart_imaging on;
            smart_imaging_guard off;
        }
        location /slow/ {
            alias {{HTDOCS}}/images/;
            smart_imaging on;
            smart_imaging_max_running 1;
            smart_imaging_timeout {{TIMEOUT}};
            smart_imaging_stash_path off;
        }
        location = /metrics {
            # inherits nothing from smart_imaging: never counted, never converted
            smart_imaging_status;
        }
    }
"#;

/// The server's configuration: `zone` at http level (may be empty: the
/// default zone), `workers` worker processes.
fn config(zone: &str, workers: u32, timeout: &str) -> Config {
    let http = HTTP
        .replace("{{ZONE}}", zone)
        .replace("{{TIMEOUT}}", timeout);
    let mut cfg = Config::with_module(&http);
    cfg.workers = workers;
    cfg
}

/// The JFIF header of a real JPEG followed by random bytes: sniffed as a
/// JPEG, refused by the decoder.
fn corrupt_jpeg() -> Vec<u8> {
    let j = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    let app0_len = u16::from_be_bytes([j[4], j[5]]) as usize;
    let mut out = j[..4 + app0_len].to_vec();
    out.extend_from_slice(&Rng::new(7).bytes(20_000));
    out
}

struct Files {
    photo: Vec<u8>,
    noise: Vec<u8>,
    corrupt: Vec<u8>,
}

const TEXT: &[u8] = b"hello, not an image\n";

fn prepare(name: &str) -> (Nginx, Files) {
    let n = Nginx::prepare(name);
    let files = Files {
        photo: synthetic_photo_png(96, 96, 7),
        noise: noise_png(64, 64, 5),
        corrupt: corrupt_jpeg(),
    };
    n.put_file("images/photo.png", &files.photo);
    n.put_file("images/noise.png", &files.noise);
    n.put_file("images/corrupt.jpg", &files.corrupt);
    n.put_file("images/hello.txt", TEXT);
    (n, files)
}

/// `GET /metrics`: the exposition, checked to be served as Prometheus'
/// text format.
fn scrape(port: u16) -> String {
    let r = get(port, "/metrics", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.content_type(),
        Some("text/plain; version=0.0.4"),
        "{}",
        r.describe()
    );
    String::from_utf8(r.body).expect("the exposition is UTF-8")
}

/// The samples of an exposition: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {l:?}")),
            };
            (series.to_string(), value)
        })
        .collect()
}

/// The metric families an exposition declares (`# TYPE`): name -> type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// The series names a PromQL query may use for the families of `text`
/// (a histogram `h` is queried as `h_bucket`, `h_sum`, `h_count`).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, kind) in families(text) {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name);
        }
    }
    names
}

fn value(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {s:#?}"))
}

fn converted(s: &BTreeMap<String, f64>, format: &str) -> f64 {
    value(
        s,
        &format!("smart_imaging_converted_total{{format=\"{format}\"}}"),
    )
}

fn originals(s: &BTreeMap<String, f64>, reason: &str) -> f64 {
    value(
        s,
        &format!("smart_imaging_originals_total{{reason=\"{reason}\"}}"),
    )
}

/// Sums a family over its labels (`smart_imaging_converted_total{...}`).
fn sum_of(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    s.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .sum()
}

/// A command on the PATH, if there.
fn on_path(cmd: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// `cmd`, or None after printing SKIP (a failure under `CI=true`, where
/// install-deps.sh must have installed it).
fn tool(cmd: &str, test: &str) -> Option<PathBuf> {
    let found = on_path(cmd);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{cmd} not found under CI=true: scripts/install-deps.sh installs Debian's prometheus"
        );
        eprintln!("SKIP {test}: {cmd} not found (Debian package prometheus)");
    }
    found
}

/// Runs `promtool <args>` with `stdin`; (success, stdout + stderr).
fn promtool(promtool: &Path, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The `X-Smart-Imaging` field `key` (`encodes=5` -> 5).
fn debug_field(r: &Response, key: &str) -> Option<String> {
    r.header("X-Smart-Imaging")?
        .split(' ')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

#[test]
fn promtool_accepts_the_exposition() {
    let (mut n, files) = prepare("status-promtool");
    n.run(&config("", 1, "10s"));
    let p = n.port();
    let r = get(p, "/images/photo.png", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    assert!(r.body.len() < files.photo.len());
    get(p, "/images/hello.txt", &[]);

    let text = scrape(p);
    eprintln!("{text}");
    // Every family has HELP and TYPE; names snake_case and prefixed;
    // counters end in _total, units are in the names.
    let fams = families(&text);
    assert_eq!(text.matches("# HELP ").count(), fams.len());
    for (name, kind) in &fams {
        assert!(name.starts_with("smart_imaging_"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
    }
    for (name, kind) in [
        ("smart_imaging_requests_total", "counter"),
        ("smart_imaging_converted_total", "counter"),
        ("smart_imaging_originals_total", "counter"),
        ("smart_imaging_input_bytes_total", "counter"),
        ("smart_imaging_output_bytes_total", "counter"),
        ("smart_imaging_conversion_seconds", "histogram"),
        ("smart_imaging_conversion_encodes", "histogram"),
        ("smart_imaging_conversions_queued", "gauge"),
        ("smart_imaging_conversions_running", "gauge"),
    ] {
        assert_eq!(fams.get(name).map(String::as_str), Some(kind), "{name}");
    }
    let s = samples(&text);
    assert_eq!(value(&s, "smart_imaging_requests_total"), 2.0);
    assert_eq!(converted(&s, "webp"), 1.0);
    assert_eq!(originals(&s, "not-candidate"), 1.0);

    // HEAD has the headers only; other methods are refused (and none of
    // these scrapes is counted).
    let head = request(p, "HEAD", "/metrics", &[]).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = request(p, "POST", "/metrics", &[("Content-Length", "0")]).unwrap();
    assert_eq!(post.status, 405, "{}", post.describe());
    let again = samples(&scrape(p));
    assert_eq!(value(&again, "smart_imaging_requests_total"), 2.0);

    let Some(promtool_bin) = tool("promtool", "promtool_accepts_the_exposition") else {
        return;
    };
    let (ok, out) = promtool(&promtool_bin, &["check", "metrics"], text.as_bytes());
    assert!(ok, "promtool check metrics:\n{out}\n{text}");
    assert!(out.trim().is_empty(), "promtool has remarks:\n{out}");
}

/// What the sequence of requests in `counters_are_exact_...` must add up
/// to, worked out from the responses.
#[derive(Debug, Default)]
struct Expected {
    requests: u64,
    webp: u64,
    avif: u64,
    off: u64,
    not_candidate: u64,
    decode: u64,
    not_smaller: u64,
    input: u64,
    output: u64,
    jobs: u64,
    encodes_sum: u64,
    pids: BTreeSet<String>,
}

impl Expected {
    fn served_by(&mut self, r: &Response) {
        let pid = r.header("X-Pid").expect("X-Pid").to_string();
        self.pids.insert(pid);
        self.requests += 1;
    }

    fn converted(&mut self, r: &Response, original: usize) {
        self.served_by(r);
        self.input += original as u64;
        self.output += r.body.len() as u64;
        self.jobs += 1;
        let encodes = debug_field(r, "encodes").expect("encodes=");
        self.encodes_sum += encodes.parse::<u64>().unwrap();
    }

    fn check(&self, s: &BTreeMap<String, f64>) {
        let v = |series: &str| value(s, series) as u64;
        assert_eq!(v("smart_imaging_requests_total"), self.requests);
        assert_eq!(converted(s, "webp") as u64, self.webp);
        assert_eq!(converted(s, "avif") as u64, self.avif);
        assert_eq!(
            sum_of(s, "smart_imaging_converted_total") as u64,
            self.webp + self.avif
        );
        assert_eq!(originals(s, "off") as u64, self.off);
        assert_eq!(originals(s, "not-candidate") as u64, self.not_candidate);
        assert_eq!(originals(s, "decode") as u64, self.decode);
        assert_eq!(originals(s, "not-smaller") as u64, self.not_smaller);
        assert_eq!(
            sum_of(s, "smart_imaging_originals_total") as u64,
            self.off + self.not_candidate + self.decode + self.not_smaller
        );
        assert_eq!(v("smart_imaging_input_bytes_total"), self.input);
        assert_eq!(v("smart_imaging_output_bytes_total"), self.output);
        assert_eq!(v("smart_imaging_conversion_seconds_count"), self.jobs);
        assert_eq!(
            v("smart_imaging_conversion_seconds_bucket{le=\"+Inf\"}"),
            self.jobs
        );
        assert!(value(s, "smart_imaging_conversion_seconds_sum") > 0.0);
        assert_eq!(
            v("smart_imaging_conversion_encodes_count"),
            self.webp + self.avif
        );
        assert_eq!(v("smart_imaging_conversion_encodes_sum"), self.encodes_sum);
        assert_eq!(v("smart_imaging_conversions_queued"), 0);
        assert_eq!(v("smart_imaging_conversions_running"), 0);
    }
}

/// Buckets are cumulative and end with `+Inf` = `_count`.
fn check_histogram(s: &BTreeMap<String, f64>, name: &str) {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 2, "{name}: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let (last_le, last) = *buckets.last().unwrap();
    assert!(last_le.is_infinite());
    assert_eq!(last, value(s, &format!("{name}_count")));
}

#[test]
fn counters_are_exact_over_two_workers_and_survive_reload() {
    let (mut n, files) = prepare("status-exact");
    let cfg = config("smart_imaging_status_zone counters 256k;", 2, "10s");
    n.run(&cfg);
    let p = n.port();
    let mut want = Expected::default();

    // Non-images, until both workers have served some (reuseport spreads
    // the connections over them).
    for _ in 0..64 {
        let r = get(p, "/images/hello.txt?t=text", &[ACCEPT_WEBP_ONLY]);
        assert_eq!(r.body, TEXT);
        want.served_by(&r);
        want.not_candidate += 1;
        if want.pids.len() == 2 {
            break;
        }
    }
    assert_eq!(want.pids.len(), 2, "both workers serve: {:?}", want.pids);

    for _ in 0..3 {
        let r = get(p, "/images/photo.png?t=webp", &[ACCEPT_WEBP_ONLY]);
        assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
        want.converted(&r, files.photo.len());
        want.webp += 1;
    }
    for _ in 0..2 {
        let r = get(p, "/images/photo.png?t=avif", &[ACCEPT_AVIF]);
        assert_eq!(r.content_type(), Some("image/avif"), "{}", r.describe());
        want.converted(&r, files.photo.len());
        want.avif += 1;
    }
    // bfc=off: counted, no bytes (the module did not look at the body).
    let r = get(p, "/images/photo.png?t=bfc&bfc=off", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.body, files.photo);
    want.served_by(&r);
    want.off += 1;
    // A corrupt JPEG: its job ran and failed to decode.
    let r = get(p, "/images/corrupt.jpg?t=corrupt", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.body, files.corrupt);
    assert_eq!(debug_field(&r, "reason").as_deref(), Some("decode"));
    want.served_by(&r);
    want.decode += 1;
    want.jobs += 1;
    want.input += files.corrupt.len() as u64;
    want.output += files.corrupt.len() as u64;
    // Not smaller (the guard off: one WebP encode decides).
    let r = get(p, "/noguard/noise.png?t=noise", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.body, files.noise);
    assert_eq!(debug_field(&r, "reason").as_deref(), Some("not-smaller"));
    want.served_by(&r);
    want.not_smaller += 1;
    want.jobs += 1;
    want.input += files.noise.len() as u64;
    want.output += files.noise.len() as u64;

    // Each response was read to the connection's close, which nginx does
    // after logging (and so counting) the request.
    let text = scrape(p);
    let s = samples(&text);
    eprintln!("served by workers {:?}; expected {want:#?}", want.pids);
    want.check(&s);
    check_histogram(&s, "smart_imaging_conversion_seconds");
    check_histogram(&s, "smart_imaging_conversion_encodes");

    // The counters are the access log's `$smart_imaging_result` lines:
    // one per request where it is not empty (the scrapes' are empty).
    let log = std::fs::read_to_string(n.prefix.join("logs/result.log")).unwrap();
    let results: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, '|').nth(3).unwrap())
        .filter(|v| *v != "-")
        .collect();
    assert_eq!(results.len() as u64, want.requests, "{log}");
    let logged = |prefix: &str| results.iter().filter(|v| v.starts_with(prefix)).count();
    assert_eq!(logged("converted format=webp ") as u64, want.webp);
    assert_eq!(
        logged("original reason=not-candidate ") as u64,
        want.not_candidate
    );

    // A reload: the new workers find the same counters, and add to them.
    let before = n.worker_pids();
    n.reload(&cfg);
    assert!(n.worker_pids().is_disjoint(&before));
    let after = scrape(p);
    assert_eq!(samples(&after), s, "counters after reload:\n{after}");
    let r = get(p, "/images/photo.png?t=webp2", &[ACCEPT_WEBP_ONLY]);
    assert_eq!(r.content_type(), Some("image/webp"));
    want.converted(&r, files.photo.len());
    want.webp += 1;
    want.check(&samples(&scrape(p)));

    // A zone of another size is a new zone: counting starts again.
    n.reload(&config(
        "smart_imaging_status_zone counters 512k;",
        2,
        "10s",
    ));
    let fresh = samples(&scrape(p));
    assert_eq!(value(&fresh, "smart_imaging_requests_total"), 0.0);
}

#[test]
fn gauges_show_running_and_queued_conversions() {
    let (mut n, _) = prepare("status-gauges");
    // One worker running one conversion at a time: the others queue. A
    // large image (a second or more to convert with the guard) and a short
    // timeout: the requests are answered after it; the running job,
    // abandoned, runs on and is still counted until it ends.
    let (name, big) = big_image("k4_volna.jpg", (1600, 1000, 6));
    n.put_file(&format!("images/{name}"), &big);
    n.run(&config("", 1, "1500ms"));
    let p = n.port();
    let mark = n.error_log_mark();
    let url = format!("/slow/{name}");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("{url}?t=slow{i}");
            std::thread::spawn(move || get(p, &url, &[ACCEPT_WEBP_ONLY]))
        })
        .collect();
    // Two of the three wait in the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = n.error_log_since(mark);
        if log.matches("conversion queued").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing queued:\n{log}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = samples(&scrape(p));
    let (queued, running) = (
        value(&s, "smart_imaging_conversions_queued"),
        value(&s, "smart_imaging_conversions_running"),
    );
    let log = n.error_log_since(mark);
    assert!(
        log.matches("conversion queued").count() == 2 && !log.contains("started after waiting"),
        "the queue moved before the scrape: {log}"
    );
    assert_eq!((queued, running), (2.0, 1.0), "{s:#?}");
    for c in clients {
        c.join().unwrap();
    }
    // Back to zero once the (possibly abandoned) conversions are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = samples(&scrape(p));
        let q = value(&s, "smart_imaging_conversions_queued");
        let r = value(&s, "smart_imaging_conversions_running");
        if (q, r) == (0.0, 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gauges stay at {q} queued, {r} running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus server on loopback, killed (and its storage removed) when
/// dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, dir: PathBuf, target_port: u16) -> Prometheus {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: smart_imaging\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prom = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = prom.child.try_wait() {
                panic!("prometheus exited: {st}\n{}", prom.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && request(port, "GET", "/-/ready", &[]).is_ok_and(|r| r.status == 200)
            {
                return prom;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/query?query=<promql>`: the JSON answer.
    fn query(&self, promql: &str) -> serde_json::Value {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let r = get(self.port, &format!("/api/v1/query?query={encoded}"), &[]);
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{promql}: {e}: {}", String::from_utf8_lossy(&r.body)))
    }

    /// The value of an instant query's single sample, if it has one.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let v = self.query(promql);
        assert_eq!(v["status"], "success", "{promql}: {v}");
        let result = v["data"]["result"].as_array()?;
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dashboard() -> serde_json::Value {
    let path = repo_root().join("nginx-conf/grafana-smart-imaging.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Every panel query of the Grafana dashboard (panel title, PromQL), its
/// variables filled in: `$__rate_interval` and `$__interval` with
/// `interval`, `$instance` (a regex) with `instance`.
fn dashboard_queries(interval: &str, instance: &str) -> Vec<(String, String)> {
    let json = dashboard();
    let mut out = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let expr = expr
                    .replace("$__rate_interval", interval)
                    .replace("$__interval", interval)
                    .replace("$instance", instance);
                out.push((title.clone(), expr));
            }
        }
    }
    out
}

/// The template variables' queries (`label_values(<metric>, ...)`).
fn dashboard_variable_queries() -> Vec<String> {
    let json = dashboard();
    json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["definition"].as_str().map(str::to_string))
        .filter(|d| d.contains("smart_imaging_"))
        .collect()
}

/// The `smart_imaging_*` names a query uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("smart_imaging_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    // What the endpoint exports, from a live scrape.
    let (mut n, _) = prepare("status-dashboard");
    n.run(&config("", 1, "10s"));
    let exported = exported_names(&scrape(n.port()));
    drop(n);

    let queries = dashboard_queries("5m", ".*");
    let titles: BTreeSet<&str> = queries.iter().map(|(t, _)| t.as_str()).collect();
    for needed in [
        "Bytes saved per second",
        "Conversions per format",
        "Fallbacks per reason",
        "Conversion time p50 / p99",
        "Queue depth",
    ] {
        assert!(titles.contains(needed), "no panel {needed:?} in {titles:?}");
    }
    let variables = dashboard_variable_queries();
    assert!(!variables.is_empty(), "the $instance variable's query");
    let all = queries
        .iter()
        .cloned()
        .chain(variables.into_iter().map(|q| ("variable".to_string(), q)));
    for (title, expr) in all {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "{title}: {expr} uses no smart_imaging metric"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "{title}: {expr} uses {name}, which the endpoint does not export ({exported:?})"
            );
        }
    }
    let p50_99 = queries
        .iter()
        .filter(|(t, _)| t == "Conversion time p50 / p99")
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>();
    assert!(
        p50_99.iter().any(|e| e.contains("histogram_quantile(0.5"))
            && p50_99.iter().any(|e| e.contains("histogram_quantile(0.99")),
        "{p50_99:?}"
    );

    // docs/metrics.md lists each of them as it is.
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    for (title, expr) in dashboard_queries("$__rate_interval", "$instance") {
        assert!(
            docs.contains(&expr),
            "{title}: docs/metrics.md does not list {expr}"
        );
    }

    // And they are PromQL: promtool parses them as recording rules.
    let Some(promtool_bin) = tool(
        "promtool",
        "grafana_dashboard_queries_only_exported_metrics",
    ) else {
        return;
    };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("si-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, &rules).unwrap();
    let (ok, out) = promtool(
        &promtool_bin,
        &["check", "rules", file.to_str().unwrap()],
        b"",
    );
    let _ = std::fs::remove_file(&file);
    assert!(ok, "promtool check rules:\n{out}\n{rules}");
}

#[test]
fn prometheus_scrapes_the_endpoint() {
    let Some(bin) = tool("prometheus", "prometheus_scrapes_the_endpoint") else {
        return;
    };
    let (mut n, files) = prepare("status-prometheus");
    n.run(&config("", 2, "10s"));
    let p = n.port();
    let dir = n.prefix.join("prometheus");
    let prom = Prometheus::start(&bin, dir, p);

    for (i, accept) in [ACCEPT_WEBP_ONLY, ACCEPT_AVIF, ACCEPT_WEBP_ONLY]
        .into_iter()
        .enumerate()
    {
        let r = get(p, &format!("/images/photo.png?t={i}"), &[accept]);
        assert!(r.body.len() < files.photo.len(), "{}", r.describe());
        assert_ne!(r.content_type(), Some("image/png"));
    }
    get(p, "/images/hello.txt", &[]);

    // Scraped every second: the conversions show up within a few.
    let deadline = Instant::now() + Duration::from_secs(20);
    let query = "sum(smart_imaging_converted_total{job=\"smart_imaging\"})";
    loop {
        let got = prom.scalar(query);
        if got == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{query} = {got:?}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(prom.scalar("up{job=\"smart_imaging\"}"), Some(1.0));
    assert_eq!(
        prom.scalar("smart_imaging_converted_total{format=\"avif\"}"),
        Some(1.0)
    );
    assert_eq!(prom.scalar("smart_imaging_requests_total"), Some(4.0));
    // Every query of the dashboard runs (whatever its value so early).
    for (title, expr) in dashboard_queries("1m", ".*") {
        let v = prom.query(&expr);
        assert_eq!(v["status"], "success", "{title}: {expr}: {v}");
    }
}

#[test]
fn nginx_t_refuses_misplaced_and_malformed_directives() {
    let mut n = Nginx::prepare("status-directives");
    let refused = |n: &mut Nginx, http: &str, what: &str, message: &str| {
        n.assert_config_refused(&Config::with_module(http), what, message);
    };
    refused(
        &mut n,
        "server { listen 127.0.0.1:{{PORT}}; location / { smart_imaging_status_zone z 1m; } }",
        "zone in a location",
        "\"smart_imaging_status_zone\" directive is not allowed here",
    );
    refused(
        &mut n,
        "smart_imaging_status;",
        "status at http level",
        "\"smart_imaging_status\" directive is not allowed here",
    );
    refused(
        &mut n,
        "server { listen 127.0.0.1:{{PORT}}; location / { smart_imaging_status on; } }",
        "status with an argument",
        "invalid number of arguments in \"smart_imaging_status\" directive",
    );
    refused(
        &mut n,
        "server { listen 127.0.0.1:{{PORT}}; location / { smart_imaging_status; smart_imaging_status; } }",
        "status twice",
        "\"smart_imaging_status\" directive is duplicate",
    );
    let m = |http: &str, what: &str, message: &str, n: &mut Nginx| {
        n.assert_config_refused_exactly(&Config::with_module(http), what, message);
    };
    m(
        "smart_imaging_status_zone z 16k;",
        "zone too small",
        "zone \"z\" is too small (at least 64k)",
        &mut n,
    );
    m(
        "smart_imaging_status_zone z big;",
        "zone size",
        "invalid zone size \"big\"",
        &mut n,
    );
    m(
        "smart_imaging_status_zone z 1m; smart_imaging_status_zone y 1m;",
        "two zones",
        "\"smart_imaging_status_zone\" directive is duplicate",
        &mut n,
    );
    n.assert_config_accepted(
        &Config::with_module(
            "smart_imaging_status_zone z 1m; server { listen 127.0.0.1:{{PORT}}; location /s { smart_imaging_status; } }",
        ),
        "a zone and a status location",
    );
}
