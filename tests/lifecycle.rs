//! nginx's process lifecycle while conversions run: graceful shutdown
//! (`nginx -s quit`), fast shutdown (`nginx -s stop`), a binary upgrade
//! (`USR2`, then `WINCH` and `QUIT` to the old master) and a reload that
//! changes the configuration. (A plain reload during conversions is in
//! tests/failures.rs.)
//!
//! Each test starts several requests for large images that take seconds to
//! convert (a photo JPEG whose WebP is not smaller, so the original is
//! served, and a photo-like PNG that is served as WebP; two conversions run
//! on the thread pool, the others wait in the module's queue), signals
//! nginx while they are in flight, and checks that every
//! client gets a complete response (the converted image or the original,
//! with a `Content-Length` equal to the body), except under `stop`, where a
//! closed connection is acceptable; that the old workers exit once their
//! conversions are over, within a bound it prints (see docs/failures.md,
//! "Reload, upgrade and shutdown"); and that nothing is logged at `alert`,
//! `crit` or `emerg`, and no process died of a signal.

mod common;

use std::collections::BTreeSet;
use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 4;
/// How long after the requests are sent the signal goes: by then the image
/// has been read and its conversion posted.
const SIGNAL_AFTER: Duration = Duration::from_millis(400);
/// How long an old worker may take to exit after the last response it
/// owed was sent. Its conversions are all done by then (the requests wait
/// for them); what is left is closing connections and joining the pool's
/// threads. Measured: 4 to 45 ms on a loaded 2-core machine.
const EXIT_AFTER_LAST_RESPONSE: Duration = Duration::from_secs(2);
const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");
/// How long nginx may take to exit on `stop` (SIGTERM) with conversions
/// running: they give up at their next step. nginx's master kills workers
/// still there about 1.5 s after the signal.
const STOP_BOUND: Duration = Duration::from_millis(1000);

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        # Slow conversions on a loaded machine must not hit the deadline:
        # these tests are about what the signal does.
        smart_imaging_timeout 50s;
        send_timeout 60s;
        smart_imaging_buffer 64m;
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_formats webp;
        }
        # Every format, AVIF first: its encodes are the longest steps.
        location /all/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            alias {{HTDOCS}}/images/;
        }
    }
"#;

/// A small JPEG that converts to WebP and to AVIF in well under a second.
fn small_jpeg() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap()
}

/// The images the clients ask for, under `images/`: a large photo JPEG
/// (from the corpus; its WebP is not smaller, so the original is served
/// after seconds of work) and a photo-like PNG whose WebP is served.
type Files = Vec<(String, Vec<u8>)>;

/// A prefix with [`Files`] and `images/ok.jpg` (small), nginx not started.
fn prepare(test: &str) -> (Nginx, Files) {
    let n = Nginx::prepare(test);
    let (name, big) = big_image("k4_volna.jpg", (2400, 1600, 9));
    let files = vec![
        (name, big),
        ("photo.png".to_string(), synthetic_photo_png(1600, 1000, 6)),
    ];
    for (name, bytes) in &files {
        n.put_file(&format!("images/{name}"), bytes);
    }
    n.put_file("images/ok.jpg", &small_jpeg());
    (n, files)
}

fn server(test: &str) -> (Nginx, Files) {
    let (mut n, files) = prepare(test);
    n.run(&Config::with_module(HTTP));
    (n, files)
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid}");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive; when that happened, or None after
/// `timeout`.
fn wait_gone(pids: &BTreeSet<u32>, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One client's request, and when its response ended.
struct Flight {
    /// Which of the [`Files`] it asked for.
    file: usize,
    result: io::Result<Response>,
    done: Instant,
}

/// Sends `CLIENTS` requests at once, for `<location><file>` of each of
/// `files` in turn, runs `act` after [`SIGNAL_AFTER`] (while they are in
/// flight), and, in parallel, waits for `watched` processes to exit.
/// Returns the responses, when `act` ran, and when the watched processes
/// were all gone.
fn during_conversions(
    port: u16,
    location: &str,
    files: &Files,
    accept: (&str, &str),
    watched: &BTreeSet<u32>,
    act: impl FnOnce(),
) -> (Vec<Flight>, Instant, Option<Instant>) {
    during_conversions_after(SIGNAL_AFTER, port, location, files, accept, watched, act)
}

/// [`during_conversions`], with `act` after `delay`.
fn during_conversions_after(
    delay: Duration,
    port: u16,
    location: &str,
    files: &Files,
    accept: (&str, &str),
    watched: &BTreeSet<u32>,
    act: impl FnOnce(),
) -> (Vec<Flight>, Instant, Option<Instant>) {
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let file = i % files.len();
                let url = format!("{location}{}", files[file].0);
                s.spawn(move || {
                    let result = request(port, "GET", &url, &[accept]);
                    Flight {
                        file,
                        result,
                        done: Instant::now(),
                    }
                })
            })
            .collect();
        std::thread::sleep(delay);
        let signalled = Instant::now();
        act();
        let watcher = s.spawn(|| wait_gone(watched, Duration::from_secs(240)));
        let flights = clients.into_iter().map(|h| h.join().unwrap()).collect();
        (flights, signalled, watcher.join().unwrap())
    })
}

/// What a complete response carried.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    Webp,
    Avif,
    Original,
}

/// Asserts that `r` is a complete 200 response: `Content-Length` equal to
/// the body, which decodes as the image type it claims, or is `original`.
fn check_complete(what: &str, r: &Response, original: &[u8]) -> Served {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    assert_eq!(
        r.content_length(),
        Some(r.body.len()),
        "{what}: Content-Length is not the body's length\n{}",
        r.describe()
    );
    let dims = header_dims(original);
    match r.content_type() {
        Some("image/webp") => {
            let img = smart_imaging_core::codecs::webp::decode(&r.body)
                .unwrap_or_else(|e| panic!("{what}: invalid WebP: {e}"));
            assert_eq!(Some((img.width, img.height)), dims, "{what}");
            Served::Webp
        }
        Some("image/avif") => {
            let img = smart_imaging_core::codecs::avif::decode(&r.body)
                .unwrap_or_else(|e| panic!("{what}: invalid AVIF: {e}"));
            assert_eq!(Some((img.width, img.height)), dims, "{what}");
            Served::Avif
        }
        _ => {
            assert!(
                r.body == original,
                "{what}: neither a converted image nor the original\n{}",
                r.describe()
            );
            Served::Original
        }
    }
}

/// Asserts that every client got a complete response (see
/// [`check_complete`]), and that at least one of them was a converted
/// image: a conversion finished and was sent while nginx was on its way
/// out. Returns what each got.
fn check_all_complete(what: &str, n: &Nginx, flights: &[Flight], files: &Files) -> Vec<Served> {
    let served: Vec<Served> = flights
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let r = f.result.as_ref().unwrap_or_else(|e| {
                panic!(
                    "{what}: client {i} got no response: {e}\nerror log:\n{}",
                    n.error_log()
                )
            });
            check_complete(&format!("{what}: client {i}"), r, &files[f.file].1)
        })
        .collect();
    assert!(
        served.iter().any(|s| *s != Served::Original),
        "{what}: no conversion was served ({served:?}):\n{}",
        n.error_log()
    );
    served
}

/// Nothing at `alert`, `crit` or `emerg`, and no process died of a signal.
fn assert_clean_log(n: &Nginx) {
    let log = n.error_log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("[alert]")
                || l.contains("[crit]")
                || l.contains("[emerg]")
                || l.contains("exited on signal")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "problems in the error log:\n{}",
        bad.join("\n")
    );
}

fn since(t0: Instant, t: Instant) -> String {
    format!("+{:.0} ms", ms(t.saturating_duration_since(t0)))
}

/// Prints when each response ended and when the watched processes exited,
/// relative to the signal; returns the time from the last response to the
/// exit.
fn report(what: &str, flights: &[Flight], signalled: Instant, gone: Instant) -> Duration {
    for (i, f) in flights.iter().enumerate() {
        let outcome = match &f.result {
            Ok(r) => format!("{} {:?} {} bytes", r.status, r.content_type(), r.body.len()),
            Err(e) => format!("error: {e}"),
        };
        eprintln!(
            "{what}: client {i} (file {}): {outcome}, ended {}",
            f.file,
            since(signalled, f.done)
        );
    }
    let last = flights.iter().map(|f| f.done).max().unwrap();
    let lag = gone.saturating_duration_since(last);
    eprintln!(
        "{what}: old workers exited {} after the signal, {:.0} ms after the last response",
        since(signalled, gone),
        ms(lag)
    );
    lag
}

/// Asserts that the requests were still in flight when the signal went:
/// otherwise the test tested nothing.
fn assert_in_flight(what: &str, flights: &[Flight], signalled: Instant) {
    let in_flight = flights.iter().filter(|f| f.done > signalled).count();
    assert!(
        in_flight >= CLIENTS / 2,
        "{what}: only {in_flight} of {CLIENTS} requests were still running at the signal \
         (the image converts too fast to test this)"
    );
}

/// `nginx -s quit`: the worker stops accepting, finishes every conversion
/// (running and queued) and sends each response, then exits; so does the
/// master.
#[test]
fn quit_finishes_conversions_in_flight() {
    let (n, files) = server("life-quit");
    let master = n.master_pid();
    let workers = n.worker_pids();
    let mut watched = workers.clone();
    watched.insert(master);
    let (flights, signalled, gone) =
        during_conversions(n.port(), "/images/", &files, ACCEPT_WEBP, &watched, || {
            signal(master, "QUIT")
        });
    let gone = gone.unwrap_or_else(|| panic!("nginx did not exit after QUIT:\n{}", n.error_log()));
    let lag = report("quit", &flights, signalled, gone);
    assert_in_flight("quit", &flights, signalled);
    check_all_complete("quit", &n, &flights, &files);
    assert!(
        lag < EXIT_AFTER_LAST_RESPONSE,
        "quit: nginx exited {:.0} ms after the last response",
        ms(lag)
    );
    assert!(!n.pid_path().exists(), "quit: the pid file is left");
    assert_clean_log(&n);
}

/// `nginx -s stop`: fast shutdown. A client may get its response or a
/// closed connection, but no process may crash or be killed, and nginx
/// must be gone well within the time its master gives workers before it
/// kills them: the conversions give up at their next step
/// (`smart_imaging_core::stop`), and the pool's threads do not wait for
/// them. With WebP, and with AVIF, whose encodes are the longest steps and
/// cannot be interrupted, at several points of the conversions.
#[test]
fn stop_during_conversions() {
    for (prefix, accept, delay_ms) in [
        ("/images/", ACCEPT_WEBP, 400),
        ("/all/", ACCEPT_AVIF, 400),
        ("/all/", ACCEPT_AVIF, 1500),
        ("/all/", ACCEPT_AVIF, 3000),
    ] {
        let (n, files) = server("life-stop");
        let what = format!("stop ({prefix}, {}, after {delay_ms} ms)", accept.1);
        let master = n.master_pid();
        let workers = n.worker_pids();
        let mut watched = workers.clone();
        watched.insert(master);
        let (flights, signalled, gone) = during_conversions_after(
            Duration::from_millis(delay_ms),
            n.port(),
            prefix,
            &files,
            accept,
            &watched,
            || signal(master, "TERM"),
        );
        let gone = gone
            .unwrap_or_else(|| panic!("{what}: nginx did not exit after TERM:\n{}", n.error_log()));
        report(&what, &flights, signalled, gone);
        let mut closed = 0;
        for (i, f) in flights.iter().enumerate() {
            match &f.result {
                Ok(r) if r.status == 200 && r.content_length() == Some(r.body.len()) => {
                    check_complete(&format!("{what}: client {i}"), r, &files[f.file].1);
                }
                Ok(r) => panic!(
                    "{what}: client {i}: an incomplete response, not a closed connection\n{}",
                    r.describe()
                ),
                Err(_) => closed += 1,
            }
        }
        eprintln!("{what}: {closed} of {CLIENTS} connections closed without a response");
        let took = gone.saturating_duration_since(signalled);
        // The master sends SIGKILL to workers still there after its timer
        // has run 50 + 100 + 200 + 400 + 800 ms ("exited on signal 9" at
        // `alert`, which assert_clean_log catches).
        assert!(
            took < STOP_BOUND,
            "{what}: nginx took {:.0} ms to exit\n{}",
            ms(took),
            n.error_log()
        );
        assert_clean_log(&n);
    }
}

/// Stops an nginx master the harness does not know of (the new binary of
/// an upgrade) when the test ends, whatever happens.
struct Master(u32);

impl Drop for Master {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, "QUIT");
            if wait_gone(&BTreeSet::from([self.0]), Duration::from_secs(10)).is_none() {
                let workers = workers_of(self.0);
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(self.0.to_string())
                    .status();
                for w in workers {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(w.to_string())
                        .status();
                }
            }
        }
    }
}

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts nginx as a daemon (the harness runs it in the foreground), with
/// the module and [`HTTP`] on a free port, in `n`'s prefix; returns the
/// master's pid and the port. nginx ignores `USR2` in a master whose
/// parent is the process that started it (`daemon off` under the test):
/// "the old binary's process is still running".
fn start_daemon(n: &Nginx) -> (Master, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = n.prefix.display().to_string();
    let conf = format!(
        "load_module {module};\n{user}worker_processes 1;\npid {prefix}/logs/nginx.pid;\n\
         error_log {prefix}/logs/error.log info;\nthread_pool smart_imaging threads=2;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n    access_log {prefix}/logs/access.log;\n\
             client_body_temp_path {prefix}/client_body_temp;\n\
             proxy_temp_path {prefix}/proxy_temp;\n\
             fastcgi_temp_path {prefix}/fastcgi_temp;\n\
             uwsgi_temp_path {prefix}/uwsgi_temp;\n\
             scgi_temp_path {prefix}/scgi_temp;\n\
             types {{ image/jpeg jpg jpeg; image/png png; }}\n\
             default_type application/octet-stream;\n{http}\n}}\n",
        module = module_path().display(),
        user = if is_root() { "user root;\n" } else { "" },
        http = HTTP
            .replace("{{PORT}}", &port.to_string())
            .replace("{{HTDOCS}}", &n.htdocs.display().to_string()),
    );
    let path = n.prefix.join("nginx-daemon.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(nginx_binary())
        .arg("-p")
        .arg(&n.prefix)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(n.error_log_path())
        .output()
        .expect("run nginx");
    assert!(
        out.status.success(),
        "nginx did not start: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        n.error_log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = read_pid(&n.pid_path()) {
            if !workers_of(pid).is_empty()
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return (Master(pid), port);
            }
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not come up:\n{}",
            n.error_log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to 20 s) for the error log line of `pid` saying it is
/// "gracefully shutting down": from then on it accepts no connection.
fn wait_shutting_down(n: &Nginx, pids: &BTreeSet<u32>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pids.iter().all(|pid| {
        let tag = format!(" {pid}#{pid}: gracefully shutting down");
        n.error_log().lines().any(|l| l.ends_with(&tag))
    }) {
        assert!(
            Instant::now() < deadline,
            "{pids:?} did not start shutting down:\n{}",
            n.error_log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Binary upgrade: `USR2` starts a new master (same binary) next to the old
/// one, `WINCH` makes the old workers shut down gracefully, `QUIT` ends the
/// old master. The old workers' conversions complete; the new workers
/// serve meanwhile.
#[test]
fn binary_upgrade_during_conversions() {
    // Not started by the harness: see start_daemon.
    let (n, files) = prepare("life-upgrade");
    let (old_master, port) = start_daemon(&n);
    let old_workers = workers_of(old_master.0);
    let pid_path = n.pid_path();
    let oldbin = pid_path.with_extension("pid.oldbin");
    let mut new_master = None;
    let (flights, winched, gone) =
        during_conversions(port, "/images/", &files, ACCEPT_WEBP, &old_workers, || {
            signal(old_master.0, "USR2");
            // The old master renames its pid file, the new one writes its own.
            let deadline = Instant::now() + Duration::from_secs(20);
            let pid = loop {
                if read_pid(&oldbin) == Some(old_master.0) {
                    if let Some(p) = read_pid(&pid_path).filter(|&p| p != old_master.0) {
                        if !workers_of(p).is_empty() {
                            break p;
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "upgrade: no new master with workers:\n{}",
                    n.error_log()
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            new_master = Some(Master(pid));
            signal(old_master.0, "WINCH");
        });
    let new_master = new_master.expect("new master");
    let gone =
        gone.unwrap_or_else(|| panic!("upgrade: old workers did not exit:\n{}", n.error_log()));
    let lag = report("upgrade (from USR2)", &flights, winched, gone);
    assert_in_flight("upgrade", &flights, winched);
    check_all_complete("upgrade", &n, &flights, &files);
    assert!(
        lag < EXIT_AFTER_LAST_RESPONSE,
        "upgrade: the old workers exited {:.0} ms after the last response",
        ms(lag)
    );
    // The new generation serves (the old workers stopped accepting at
    // WINCH, before the conversions ended).
    wait_shutting_down(&n, &old_workers);
    let r = get(port, "/images/ok.jpg", &[ACCEPT_WEBP]);
    assert_eq!(
        check_complete("upgrade: a new request", &r, &small_jpeg()),
        Served::Webp
    );
    // The old master, now without workers, goes on QUIT.
    signal(old_master.0, "QUIT");
    assert!(
        wait_gone(&BTreeSet::from([old_master.0]), Duration::from_secs(10)).is_some(),
        "upgrade: the old master did not exit:\n{}",
        n.error_log()
    );
    assert!(!oldbin.exists(), "upgrade: nginx.pid.oldbin is left");
    assert_eq!(read_pid(&pid_path), Some(new_master.0));
    assert!(
        !workers_of(new_master.0).is_empty(),
        "upgrade: the new master has no workers"
    );
    let r = get(port, "/images/ok.jpg", &[ACCEPT_WEBP]);
    assert_eq!(
        check_complete("after the upgrade", &r, &small_jpeg()),
        Served::Webp
    );
    drop(new_master);
    assert_clean_log(&n);
}

/// A reload that changes a location's formats: the requests in flight, on
/// the old configuration, finish with the old behaviour (WebP), and new
/// requests get the new one (AVIF).
#[test]
fn reload_applies_new_configuration_to_new_requests_only() {
    let (n, files) = server("life-reconf");
    let master = n.master_pid();
    let old_workers = n.worker_pids();
    let small = small_jpeg();
    // Under the old configuration, a client that takes AVIF gets WebP.
    let r = get(n.port(), "/images/ok.jpg", &[ACCEPT_AVIF]);
    assert_eq!(
        check_complete("before the reload", &r, &small),
        Served::Webp
    );
    let conf = n.prefix.join("nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("smart_imaging_formats webp;"));
    let port = n.port();
    let mut new_request = None;
    let (flights, signalled, gone) =
        during_conversions(port, "/images/", &files, ACCEPT_AVIF, &old_workers, || {
            std::fs::write(
                &conf,
                text.replace(
                    "smart_imaging_formats webp;",
                    "smart_imaging_formats avif webp;",
                ),
            )
            .unwrap();
            signal(master, "HUP");
            // Once the old worker has closed its listening sockets, a new
            // worker, on the new configuration, takes new connections. (One
            // accepted by the old worker before that would be served by it, on
            // the old configuration, and wait behind its conversions.)
            wait_shutting_down(&n, &old_workers);
            new_request = Some(get(port, "/images/ok.jpg", &[ACCEPT_AVIF]));
        });
    let gone =
        gone.unwrap_or_else(|| panic!("reload: old worker did not exit:\n{}", n.error_log()));
    let lag = report("reload with new formats", &flights, signalled, gone);
    assert_in_flight("reload", &flights, signalled);
    let r = new_request.unwrap();
    assert_eq!(
        check_complete("a new request after the reload", &r, &small),
        Served::Avif,
        "the new configuration (avif webp) does not apply to a new request"
    );
    let served = check_all_complete("reload", &n, &flights, &files);
    for (i, served) in served.iter().enumerate() {
        assert_ne!(
            *served,
            Served::Avif,
            "reload: client {i}, in flight on the old configuration (webp only), got AVIF"
        );
    }
    assert!(
        lag < EXIT_AFTER_LAST_RESPONSE,
        "reload: the old worker exited {:.0} ms after the last response",
        ms(lag)
    );
    assert_clean_log(&n);
}
