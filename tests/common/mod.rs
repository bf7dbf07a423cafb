//! Shared harness of the integration tests: runs the vendored nginx with the
//! module loaded in a private prefix, talks HTTP/1.1 to it over a plain
//! `TcpStream` (HTTP/2 goes through the `curl` command), and checks images.
//!
//! Every test starts its own nginx on its own ports, so tests can run in
//! parallel threads.
//!
//! Environment overrides:
//! - `SMART_IMAGING_NGINX`: the nginx binary (default: the one nginx-sys built,
//!   `$SMART_IMAGING_NGINX_BUILD_DIR/nginx`, known at compile time).
//! - `SMART_IMAGING_MODULE`: the module `.so` (default: next to the test
//!   executable's `deps/` directory, i.e. `target/<profile>/`).
//! - `SMART_IMAGING_CORPUS`: the image corpus (default `../shared/corpus`
//!   relative to the repository root). Without it, tests use `samples/`
//!   only, except under `CI=true`, where a missing corpus fails them.
//! - `SMART_IMAGING_KEEP=1`: keep every nginx prefix (they are otherwise
//!   removed when the test passes and kept when it fails).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SMART_IMAGING_NGINX") {
        return PathBuf::from(p);
    }
    match option_env!("SMART_IMAGING_NGINX_BUILD_DIR") {
        Some(dir) => Path::new(dir).join("nginx"),
        None => panic!(
            "no nginx binary: build with the `vendored` feature (build.rs then sets \
             SMART_IMAGING_NGINX_BUILD_DIR) or set SMART_IMAGING_NGINX"
        ),
    }
}

pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SMART_IMAGING_MODULE") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    profile_dir.join("libngx_http_smart_imaging_module.so")
}

pub fn samples_dir() -> PathBuf {
    repo_root().join("samples")
}

/// True under `CI=true` (or `CI=1`): what is optional on a developer's
/// machine, the corpus, is required there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The shared corpus, or `None` (with a note on stderr) when it is absent.
/// Under `CI=true` an absent corpus is a failure, not a skip: it panics.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SMART_IMAGING_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("..").join("shared").join("corpus"),
    };
    if dir.join("manifest.csv").is_file() || has_images(&dir) {
        Some(dir)
    } else if in_ci() {
        panic!(
            "image corpus not found at {} (set SMART_IMAGING_CORPUS): under CI=true \
             the tests that use it must not be skipped",
            dir.display()
        );
    } else {
        eprintln!(
            "note: image corpus not found at {} (set SMART_IMAGING_CORPUS); \
             using only the repository's samples/",
            dir.display()
        );
        None
    }
}

/// Splits an `[emerg]` line of nginx into its message, file and line:
/// `nginx: [emerg] <message> in <file>:<line>` (stderr) or
/// `<date> [emerg] <pid>#<tid>: <message> in <file>:<line>` (error log).
/// The message itself may contain " in " (`invalid value "x" in "y"
/// directive, ...`): the file is what follows the last one.
pub fn emerg_message(line: &str) -> Option<(&str, &str, u32)> {
    let rest = &line[line.find("[emerg] ")? + "[emerg] ".len()..];
    // The error log's "<pid>#<tid>: " prefix.
    let rest = match rest.split_once(": ") {
        Some((pid, msg))
            if pid.split_once('#').is_some_and(|(p, t)| {
                !p.is_empty()
                    && !t.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && t.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            msg
        }
        _ => rest,
    };
    let (message, at) = rest.rsplit_once(" in ")?;
    let (file, number) = at.trim_end().rsplit_once(':')?;
    Some((message, file, number.parse().ok()?))
}

/// The message of an `error_log` line written by this module at `level`:
/// the text after `smart_imaging: ` up to nginx's ` while <context>` (or the
/// end of the line), with every `(<number> ms)` replaced by `(… ms)`. `None`
/// for other levels and other modules' lines.
pub fn module_log_message(line: &str, level: &str) -> Option<String> {
    let rest = &line[line.find(&format!(" [{level}] "))?..];
    // "<pid>#<tid>: *<connection> smart_imaging: <message>"
    let start = rest.find(" smart_imaging: ")? + " smart_imaging: ".len();
    let message = &rest[start..];
    let message = message.split_once(" while ").map_or(message, |(m, _)| m);
    Some(mask_durations(message))
}

/// `... (0.3 ms): ...` -> `... (… ms): ...`
fn mask_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits > 0 && rest[digits..].starts_with(" ms)") {
            out.push('…');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn has_images(dir: &Path) -> bool {
    !list_images(dir).is_empty()
}

/// JPEG and PNG files of a directory, sorted by name.
pub fn list_images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()),
                    Some(ref e) if e == "jpg" || e == "jpeg" || e == "png"
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// What to run. `http` and `main` may use the placeholders `{{PORT}}`,
/// `{{PORT2}}`, `{{PORT3}}` (free ports), `{{HTDOCS}}` (the document root
/// directory, created empty) and `{{PREFIX}}`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Load the module (`load_module`) at the top of the configuration.
    pub module: bool,
    /// Extra main-context directives (e.g. `thread_pool ...;`).
    pub main: String,
    /// The contents of the `http { }` block.
    pub http: String,
    /// `worker_processes`.
    pub workers: u32,
    /// `http` is a whole nginx.conf, run as it is (placeholders aside):
    /// see [`Nginx::shipped_config`].
    pub complete: bool,
}

impl Config {
    /// Module loaded, `thread_pool smart_imaging threads=2`, one worker.
    pub fn with_module(http: &str) -> Config {
        Config {
            module: true,
            main: "thread_pool smart_imaging threads=2;\n".into(),
            http: http.into(),
            workers: 1,
            complete: false,
        }
    }

    /// A whole configuration file, e.g. from [`Nginx::shipped_config`].
    pub fn complete(conf: &str) -> Config {
        Config {
            module: false,
            main: String::new(),
            http: conf.into(),
            workers: 1,
            complete: true,
        }
    }

    /// The same nginx without the module.
    pub fn plain(http: &str) -> Config {
        Config {
            module: false,
            main: String::new(),
            http: http.into(),
            workers: 1,
            complete: false,
        }
    }
}

pub struct Nginx {
    pub prefix: PathBuf,
    pub htdocs: PathBuf,
    /// `{{PORT}}`, `{{PORT2}}`, `{{PORT3}}`.
    pub ports: [u16; 3],
    child: Option<Child>,
    master_pid: u32,
    conf_text: String,
}

/// Whether the tests run as root (nginx then needs `user` and readable
/// directories).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn base_tmp() -> PathBuf {
    // Cargo gives integration tests a scratch directory under target/.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smart-imaging-tests")
}

impl Nginx {
    /// Creates the prefix (with an empty `htdocs/`) without starting nginx,
    /// so the caller can put files in place first; then call [`Nginx::run`].
    pub fn prepare(name: &str) -> Nginx {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = base_tmp().join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);
        let htdocs = prefix.join("htdocs");
        fs::create_dir_all(prefix.join("logs")).unwrap();
        fs::create_dir_all(&htdocs).unwrap();
        Nginx {
            prefix,
            htdocs,
            ports: [0; 3],
            child: None,
            master_pid: 0,
            conf_text: String::new(),
        }
    }

    /// Prepares, then starts. For tests that need no files of their own.
    pub fn start(name: &str, cfg: &Config) -> Nginx {
        let mut n = Nginx::prepare(name);
        n.run(cfg);
        n
    }

    /// Writes `bytes` at `rel` under htdocs (creating directories).
    pub fn put_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.htdocs.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    /// Makes `rel` under htdocs a symlink to `target` (a file or directory).
    pub fn link(&self, rel: &str, target: &Path) {
        let p = self.htdocs.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(target, &p).unwrap();
    }

    fn render(&self, cfg: &Config) -> String {
        if cfg.complete {
            return self.fill(&cfg.http);
        }
        let mut conf = String::new();
        if cfg.module {
            let m = module_path();
            assert!(
                m.is_file(),
                "module not found at {} (run `cargo build` first, or set SMART_IMAGING_MODULE)",
                m.display()
            );
            conf.push_str(&format!("load_module {};\n", m.display()));
        }
        conf.push_str("daemon off;\nmaster_process on;\n");
        conf.push_str(&format!("worker_processes {};\n", cfg.workers));
        if is_root() {
            // Workers would otherwise run as `nobody` and might not be able
            // to read files under the build tree.
            conf.push_str("user root;\n");
        }
        conf.push_str("pid {{PREFIX}}/logs/nginx.pid;\n");
        conf.push_str("error_log {{PREFIX}}/logs/error.log info;\n");
        conf.push_str(&cfg.main);
        conf.push_str("\nevents { worker_connections 512; }\n\nhttp {\n");
        conf.push_str("    access_log {{PREFIX}}/logs/access.log;\n");
        conf.push_str("    client_body_temp_path {{PREFIX}}/client_body_temp;\n");
        conf.push_str("    proxy_temp_path {{PREFIX}}/proxy_temp;\n");
        conf.push_str("    fastcgi_temp_path {{PREFIX}}/fastcgi_temp;\n");
        conf.push_str("    uwsgi_temp_path {{PREFIX}}/uwsgi_temp;\n");
        conf.push_str("    scgi_temp_path {{PREFIX}}/scgi_temp;\n");
        conf.push_str("    types { image/jpeg jpg jpeg; image/png png; image/gif gif; text/plain txt; text/html html; image/webp webp; }\n");
        conf.push_str("    default_type application/octet-stream;\n");
        conf.push_str(&cfg.http);
        conf.push_str("\n}\n");
        self.fill(&conf)
    }

    /// Replaces the placeholders of [`Config`].
    fn fill(&self, conf: &str) -> String {
        conf.replace("{{PORT}}", &self.ports[0].to_string())
            .replace("{{PORT2}}", &self.ports[1].to_string())
            .replace("{{PORT3}}", &self.ports[2].to_string())
            .replace("{{HTDOCS}}", &self.htdocs.display().to_string())
            .replace("{{PREFIX}}", &self.prefix.display().to_string())
    }

    /// Starts nginx with `cfg`, waiting until every port it listens on
    /// accepts connections. Retries with new ports when one was taken.
    pub fn run(&mut self, cfg: &Config) {
        let bin = nginx_binary();
        assert!(bin.is_file(), "nginx binary not found at {}", bin.display());
        let mut last_err = String::new();
        for _attempt in 0..5 {
            self.ports = [free_port(), free_port(), free_port()];
            let text = self.render(cfg);
            let conf = self.prefix.join("nginx.conf");
            fs::write(&conf, &text).unwrap();
            self.conf_text = text;
            let _ = fs::remove_file(self.error_log_path());
            let _ = fs::remove_file(self.pid_path());
            let child = Command::new(&bin)
                .arg("-p")
                .arg(&self.prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(self.error_log_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn nginx");
            self.master_pid = child.id();
            self.child = Some(child);
            let used: Vec<u16> = self
                .ports
                .iter()
                .copied()
                .filter(|p| self.conf_text.contains(&format!(":{p}")))
                .collect();
            match self.wait_ready(&used) {
                Ok(()) => return,
                Err(e) => {
                    let mut child = self.child.take().unwrap();
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(child.id().to_string())
                        .status();
                    let _ = child.wait();
                    let mut stderr = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut stderr);
                    }
                    last_err = format!("{e}\nstderr: {stderr}\nerror.log:\n{}", self.error_log());
                    if last_err.contains("Address already in use") {
                        continue;
                    }
                    break;
                }
            }
        }
        panic!(
            "nginx did not start: {last_err}\nconfig ({}):\n{}",
            self.prefix.display(),
            self.conf_text
        );
    }

    /// The file `nginx-conf/<name>` made to run in this prefix, for
    /// [`Config::complete`]: the module built here, in the foreground, `listen
    /// 80` on `{{PORT}}`, and the official image's paths (`/etc/nginx`,
    /// `/var/log/nginx`, `/var/cache/nginx`, `/var/run`,
    /// `/usr/share/nginx/html`) under the prefix (`htdocs/` for the
    /// document root). Unix sockets under `/var/run` go to a short path in
    /// the temporary directory (the prefix may be too long for one).
    pub fn shipped_config(&self, name: &str) -> String {
        let text = fs::read_to_string(repo_root().join("nginx-conf").join(name))
            .unwrap_or_else(|e| panic!("nginx-conf/{name}: {e}"));
        fs::create_dir_all(self.prefix.join("cache")).unwrap();
        fs::write(
            self.prefix.join("mime.types"),
            "types { image/jpeg jpg jpeg; image/png png; image/gif gif; text/plain txt; text/html html; image/webp webp; }\n",
        )
        .unwrap();
        // nginx removes its unix sockets when it exits.
        let sockets = std::env::temp_dir().join(format!(
            "si-{}-",
            self.prefix.file_name().unwrap().to_string_lossy()
        ));
        let user = if is_root() { "user root;" } else { "" };
        let text = text
            .replace(
                "load_module modules/ngx_http_smart_imaging_module.so;",
                &format!("load_module {};\ndaemon off;", module_path().display()),
            )
            .replace("user nginx;", user)
            .replace("listen 80;", "listen 127.0.0.1:{{PORT}};")
            .replace("/etc/nginx/", "{{PREFIX}}/")
            .replace("/var/log/nginx/", "{{PREFIX}}/logs/")
            .replace("/var/cache/nginx/", "{{PREFIX}}/cache/")
            .replace("/var/run/nginx.pid", "{{PREFIX}}/logs/nginx.pid")
            .replace("/var/run/", &sockets.display().to_string())
            .replace("/usr/share/nginx/html", "{{HTDOCS}}");
        assert!(
            text.starts_with("load_module") || text.contains("\nload_module"),
            "nginx-conf/{name} loads no module"
        );
        text
    }

    /// Rewrites the configuration nginx runs with `cfg` (same ports) and
    /// reloads it (`SIGHUP`), waiting until the old workers are gone.
    pub fn reload(&mut self, cfg: &Config) {
        let old = self.worker_pids();
        let text = self.render(cfg);
        fs::write(self.prefix.join("nginx.conf"), &text).unwrap();
        self.conf_text = text;
        let st = Command::new("kill")
            .arg("-HUP")
            .arg(self.master_pid.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.worker_pids();
            if !now.is_empty() && now.is_disjoint(&old) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not reload:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `nginx -t` on `cfg` (ports assigned, nothing started); returns
    /// whether the test passed and nginx's output.
    pub fn test_config(&mut self, cfg: &Config) -> (bool, String) {
        self.ports = [free_port(), free_port(), free_port()];
        let text = self.render(cfg);
        let conf = self.prefix.join("nginx-t.conf");
        fs::write(&conf, &text).unwrap();
        self.conf_text = text;
        let out = Command::new(nginx_binary())
            .arg("-t")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(self.error_log_path())
            .stdin(Stdio::null())
            .output()
            .expect("run nginx -t");
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), s)
    }

    /// Asserts that `nginx -t` accepts `cfg` (`what` names the case).
    pub fn assert_config_accepted(&mut self, cfg: &Config, what: &str) {
        let (pass, out) = self.test_config(cfg);
        assert!(pass, "`{what}` should be accepted:\n{out}");
    }

    /// Asserts that `nginx -t` refuses `cfg` with an `[emerg]` line whose
    /// message (see [`emerg_message`]) contains `message`, which must not be
    /// empty, and which names this configuration file and a line in it;
    /// returns that line (and prints it).
    pub fn assert_config_refused(&mut self, cfg: &Config, what: &str, message: &str) -> String {
        assert!(
            !message.is_empty(),
            "`{what}`: say which refusal message nginx must print"
        );
        let (pass, out) = self.test_config(cfg);
        assert!(!pass, "`{what}` should be refused, nginx -t passed:\n{out}");
        let line = out
            .lines()
            .find(|l| l.contains("[emerg]"))
            .unwrap_or_else(|| panic!("`{what}`: no [emerg] line:\n{out}"))
            .to_owned();
        let (said, file, _) = emerg_message(&line)
            .unwrap_or_else(|| panic!("`{what}`: no \"<message> in <file>:<line>\" in:\n{line}"));
        assert!(
            said.contains(message),
            "`{what}`: expected {message:?} in nginx's message {said:?}:\n{line}"
        );
        let conf = self.prefix.join("nginx-t.conf");
        assert_eq!(
            Path::new(file),
            conf,
            "`{what}`: the refusal does not name the configuration file:\n{line}"
        );
        eprintln!("`{what}` -> {line}");
        line
    }

    /// As [`Nginx::assert_config_refused`], and nginx's message must be
    /// exactly `message` (the text between `[emerg] ` and ` in <file>:<line>`).
    pub fn assert_config_refused_exactly(
        &mut self,
        cfg: &Config,
        what: &str,
        message: &str,
    ) -> String {
        let line = self.assert_config_refused(cfg, what, message);
        let (said, _, _) = emerg_message(&line).expect("checked above");
        assert_eq!(said, message, "`{what}`: nginx's refusal message:\n{line}");
        line
    }

    fn wait_ready(&mut self, ports: &[u16]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    return Err(format!("nginx exited at startup: {st}"));
                }
            }
            let all_up = ports.iter().all(|p| {
                TcpStream::connect_timeout(
                    &format!("127.0.0.1:{p}").parse().unwrap(),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if all_up && !self.worker_pids().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for nginx to listen".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn error_log_path(&self) -> PathBuf {
        self.prefix.join("logs").join("error.log")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.prefix.join("logs").join("nginx.pid")
    }

    pub fn error_log(&self) -> String {
        fs::read(self.error_log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Length of the error log now, to look only at what comes after.
    pub fn error_log_mark(&self) -> usize {
        fs::metadata(self.error_log_path())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// The error log written since `mark`.
    pub fn error_log_since(&self, mark: usize) -> String {
        let b = fs::read(self.error_log_path()).unwrap_or_default();
        String::from_utf8_lossy(&b[mark.min(b.len())..]).into_owned()
    }

    /// Waits (up to 2 s) for a line written since `mark` that contains all
    /// of `needles` (case-insensitive); returns it.
    pub fn wait_log_line(&self, mark: usize, needles: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let since = self.error_log_since(mark);
            if let Some(l) = since.lines().find(|l| {
                let ll = l.to_ascii_lowercase();
                needles.iter().all(|n| ll.contains(&n.to_ascii_lowercase()))
            }) {
                return Some(l.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 2 s) for the `error_log` line, written since `mark`, in
    /// which this module says `message` at `level` (`"warn"`, `"info"`,
    /// `"alert"`): `<date> [<level>] <pid>#<tid>: *<conn> smart_imaging:
    /// <message> while <context>...`. `message` is the module's text after
    /// `smart_imaging: `, exact, except that a duration `(12.3 ms)` in the
    /// line matches `(… ms)` in `message`. Returns the line as written.
    pub fn wait_module_log(&self, mark: usize, level: &str, message: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let since = self.error_log_since(mark);
            if let Some(l) = since
                .lines()
                .find(|l| module_log_message(l, level).is_some_and(|m| m == message))
            {
                return Some(l.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn master_pid(&self) -> u32 {
        self.master_pid
    }

    /// PIDs of the master's live children (the workers), sorted.
    pub fn worker_pids(&self) -> BTreeSet<u32> {
        workers_of(self.master_pid)
    }

    /// Asserts that no worker died: same worker PIDs as `before` and no
    /// "exited on signal" in the error log.
    pub fn assert_workers_survived(&self, before: &BTreeSet<u32>) {
        let after = self.worker_pids();
        let log = self.error_log();
        let crashes: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("exited on signal") || l.contains("exited with fatal code"))
            .collect();
        assert!(
            crashes.is_empty(),
            "a worker process died:\n{}\n(workers before {before:?}, after {after:?})",
            crashes.join("\n")
        );
        assert_eq!(
            &after, before,
            "worker PIDs changed (a worker was respawned)"
        );
    }

    /// Stops nginx (graceful QUIT, then TERM, then KILL of master and
    /// workers) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let workers = self.worker_pids();
        let pid = child.id().to_string();
        let _ = Command::new("kill").arg("-QUIT").arg(&pid).status();
        let mut waited = wait_child(&mut child, Duration::from_secs(5));
        if !waited {
            let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
            waited = wait_child(&mut child, Duration::from_secs(5));
        }
        if !waited {
            eprintln!("nginx {pid} did not stop; killing it and its workers");
            for w in &workers {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(w.to_string())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The pid file disappears when the master has finished its exit.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.pid_path().exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return true,
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let keep = std::env::var_os("SMART_IMAGING_KEEP").is_some();
        if std::thread::panicking() || keep {
            eprintln!(
                "nginx prefix kept for inspection: {}",
                self.prefix.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.prefix);
        }
    }
}

// ---------------------------------------------------------------------------
// The usual site
// ---------------------------------------------------------------------------

/// The http{} contents most tests use. `{{EXTRA}}` in the returned text is
/// already replaced by `extra` (directives for the module's locations).
///
/// - `/images/...`: static files from htdocs/images, module on.
/// - `/plain/...`: the same files, module not enabled.
/// - `/shop/...`: module on, proxied to the origin (port 2) `/images/...`.
/// - `/plainshop/...`: the same proxy without the module.
/// - `/static/...`: plain static files.
/// - port 2: the origin, plain static server of htdocs.
pub fn standard_http(extra: &str) -> String {
    let s = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            {{EXTRA}}
        }
        location /plain/ {
            alias {{HTDOCS}}/images/;
        }
        location /shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            {{EXTRA}}
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /plainshop/ {
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
        location /static/ { }
    }
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
    }
"#;
    s.replace("{{EXTRA}}", extra)
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Headers in order received, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wall time from connect to the last byte.
    pub elapsed: Duration,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// True when some `Vary` header lists `token`.
    pub fn vary_has(&self, token: &str) -> bool {
        self.header_all("vary")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token) || t.trim() == "*")
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Headers except those listed, lower-cased names, for comparisons.
    pub fn headers_without(&self, skip: &[&str]) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| !skip.iter().any(|s| n.eq_ignore_ascii_case(s)))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    pub fn describe(&self) -> String {
        let mut s = format!("status {}\n", self.status);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s.push_str(&format!(
            "body: {} bytes, starts {:02x?}",
            self.body.len(),
            &self.body[..self.body.len().min(16)]
        ));
        s
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let _ = s.shutdown(Shutdown::Both);
    let mut r = parse_response(&raw, method == "HEAD")?;
    r.elapsed = start.elapsed();
    Ok(r)
}

/// A persistent (keep-alive) HTTP/1.1 connection, for pipelining and
/// connection reuse.
pub struct KeepAlive {
    s: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    pub fn connect(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive { s, buf: Vec::new() }
    }

    /// Writes a GET request without waiting for the response.
    pub fn send(&mut self, path: &str, headers: &[(&str, &str)]) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.s.write_all(req.as_bytes()).unwrap();
    }

    /// Reads the next response (Content-Length or chunked framing).
    pub fn recv(&mut self) -> io::Result<Response> {
        let start = Instant::now();
        let end = loop {
            if let Some(e) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break e + 4;
            }
            self.fill()?;
        };
        let head = parse_response(&[&self.buf[..end], b""].concat(), true)?;
        let chunked = head
            .header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let total = if chunked {
            loop {
                if let Some(n) = chunked_len(&self.buf[end..]) {
                    break end + n;
                }
                self.fill()?;
            }
        } else {
            end + head.content_length().unwrap_or(0)
        };
        while self.buf.len() < total {
            self.fill()?;
        }
        let raw: Vec<u8> = self.buf.drain(..total).collect();
        let mut r = parse_response(&raw, false)?;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }
}

/// Length of a complete chunked body at the start of `b`, if complete.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let eol = b[i..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[i..i + eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        i += eol + 2;
        if size == 0 {
            // No trailers from nginx: the final CRLF.
            return if b.len() >= i + 2 { Some(i + 2) } else { None };
        }
        if b.len() < i + size + 2 {
            return None;
        }
        i += size + 2;
    }
}

/// GET with the given headers; panics on I/O errors.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers)
        .unwrap_or_else(|e| panic!("GET {path} on port {port} failed: {e}"))
}

pub const ACCEPT_WEBP: (&str, &str) = ("Accept", "image/webp,*/*");
/// What Chrome sends for <img>.
pub const ACCEPT_BROWSER: (&str, &str) = (
    "Accept",
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
);

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub fn parse_response(raw: &[u8], head: bool) -> io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no end of headers in {} bytes", raw.len())))?;
    let head_text = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("non-UTF-8 headers"))?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header {l:?}")))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
        elapsed: Duration::ZERO,
    };
    if head || status == 304 || status == 204 || (100..200).contains(&status) {
        if !rest.is_empty() {
            return Err(invalid(format!(
                "{} bytes of body after a bodiless response",
                rest.len()
            )));
        }
        return Ok(r);
    }
    let chunked = r
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        r.body = dechunk(rest)?;
    } else if let Some(cl) = r.content_length() {
        if rest.len() != cl {
            return Err(invalid(format!(
                "Content-Length {cl} but {} body bytes received",
                rest.len()
            )));
        }
        r.body = rest.to_vec();
    } else {
        r.body = rest.to_vec();
    }
    Ok(r)
}

fn dechunk(mut b: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| invalid("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// curl (HTTP/2)
// ---------------------------------------------------------------------------

/// GET through the `curl` command; `args` selects the protocol, e.g.
/// `["--http2-prior-knowledge"]` or `["-k", "--http2"]`. The `Response`
/// headers are those of the final response; the status line's protocol is
/// returned separately (e.g. "HTTP/2").
pub fn curl_get(
    url: &str,
    args: &[&str],
    headers: &[(&str, &str)],
    tmp: &Path,
) -> (String, Response) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let hfile = tmp.join(format!("curl-{n}.headers"));
    let bfile = tmp.join(format!("curl-{n}.body"));
    let mut cmd = Command::new("curl");
    cmd.arg("-sS")
        .arg("--max-time")
        .arg("120")
        .arg("-D")
        .arg(&hfile)
        .arg("-o")
        .arg(&bfile);
    for a in args {
        cmd.arg(a);
    }
    for (n, v) in headers {
        cmd.arg("-H").arg(format!("{n}: {v}"));
    }
    cmd.arg(url);
    let start = Instant::now();
    let out = cmd.output().expect("run curl (is it installed?)");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "curl {url} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let htext = fs::read_to_string(&hfile).unwrap();
    let body = fs::read(&bfile).unwrap_or_default();
    let _ = fs::remove_file(&hfile);
    let _ = fs::remove_file(&bfile);
    // The last header block (curl writes one per response, e.g. after 100).
    let blocks: Vec<&str> = htext
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let last = blocks.last().expect("curl wrote no headers");
    let mut lines = last.split("\r\n");
    let status_line = lines.next().unwrap();
    let proto = status_line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    (
        proto,
        Response {
            status,
            headers,
            body,
            elapsed,
        },
    )
}

/// Self-signed certificate and key for `localhost`, made with the openssl
/// command into `dir`; returns (cert, key).
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

pub fn is_webp(b: &[u8]) -> bool {
    b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP"
}

pub fn is_jpeg(b: &[u8]) -> bool {
    b.len() >= 3 && b[..3] == [0xFF, 0xD8, 0xFF]
}

pub fn is_png(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// Width and height stored in a JPEG's SOF or a PNG's IHDR (no decoding).
pub fn header_dims(b: &[u8]) -> Option<(u32, u32)> {
    if is_png(b) && b.len() >= 24 {
        let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
        return Some((w, h));
    }
    if is_jpeg(b) {
        let (off, _) = jpeg_sof(b)?;
        let h = u16::from_be_bytes([b[off + 5], b[off + 6]]) as u32;
        let w = u16::from_be_bytes([b[off + 7], b[off + 8]]) as u32;
        return Some((w, h));
    }
    None
}

/// Offset (of the 0xFF) and marker of the first SOFn segment.
pub fn jpeg_sof(b: &[u8]) -> Option<(usize, u8)> {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let m = b[i + 1];
        if m == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            return if i + 9 <= b.len() { Some((i, m)) } else { None };
        }
        if m == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// EXIF orientation (1-8) of a JPEG, 1 when absent.
pub fn exif_orientation(b: &[u8]) -> u16 {
    if !is_jpeg(b) {
        return 1;
    }
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return 1;
        }
        let m = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if m == 0xDA {
            return 1;
        }
        let seg = &b[(i + 4).min(b.len())..(i + 2 + len).min(b.len())];
        if m == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return tiff_orientation(&seg[6..]).unwrap_or(1);
        }
        i += 2 + len;
    }
    1
}

fn tiff_orientation(t: &[u8]) -> Option<u16> {
    let le = match t.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16at = |o: usize| -> Option<u16> {
        let s: [u8; 2] = t.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32at = |o: usize| -> Option<u32> {
        let s: [u8; 4] = t.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let ifd = u32at(4)? as usize;
    let n = u16at(ifd)? as usize;
    for k in 0..n {
        let e = ifd + 2 + 12 * k;
        if u16at(e)? == 0x0112 {
            return u16at(e + 8);
        }
    }
    None
}

/// Inserts an APP1 EXIF segment with the given orientation right after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert!(is_jpeg(jpeg));
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 offset
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Decoded pixels normalised to RGBA8, whatever the decoder's layout.
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub px: Vec<u8>,
}

impl Rgba {
    pub fn from_raw(width: u32, height: u32, pixels: &[u8]) -> Rgba {
        let n = width as usize * height as usize;
        assert!(n > 0, "empty image");
        let ch = pixels.len() / n;
        assert_eq!(
            ch * n,
            pixels.len(),
            "pixel buffer is not {width}x{height}xN"
        );
        let mut px = Vec::with_capacity(n * 4);
        for p in pixels.chunks_exact(ch) {
            match ch {
                1 => px.extend_from_slice(&[p[0], p[0], p[0], 255]),
                2 => px.extend_from_slice(&[p[0], p[0], p[0], p[1]]),
                3 => px.extend_from_slice(&[p[0], p[1], p[2], 255]),
                4 => px.extend_from_slice(p),
                _ => panic!("{ch} channels"),
            }
        }
        Rgba { width, height, px }
    }

    /// True when some pixel is not fully opaque.
    pub fn has_transparency(&self) -> bool {
        self.px.chunks_exact(4).any(|p| p[3] != 255)
    }
}

/// PSNR (dB) between two images of equal size, after compositing both over
/// black and over white (so colour hidden under full transparency does not
/// count, and alpha errors do); the lower of the two.
pub fn psnr_composited(a: &Rgba, b: &Rgba) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
    let mut se_black = 0f64;
    let mut se_white = 0f64;
    for (p, q) in a.px.chunks_exact(4).zip(b.px.chunks_exact(4)) {
        let (ap, aq) = (p[3] as f64 / 255.0, q[3] as f64 / 255.0);
        for c in 0..3 {
            let (x, y) = (p[c] as f64, q[c] as f64);
            let d_black = x * ap - y * aq;
            let d_white = (x * ap + 255.0 * (1.0 - ap)) - (y * aq + 255.0 * (1.0 - aq));
            se_black += d_black * d_black;
            se_white += d_white * d_white;
        }
    }
    let n = a.px.len() as f64 / 4.0 * 3.0;
    let psnr = |se: f64| {
        let mse = se / n;
        if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64 * 255.0 / mse).log10()
        }
    };
    psnr(se_black).min(psnr(se_white))
}

/// Largest absolute difference of the alpha channels.
pub fn max_alpha_diff(a: &Rgba, b: &Rgba) -> u8 {
    a.px.chunks_exact(4)
        .zip(b.px.chunks_exact(4))
        .map(|(p, q)| p[3].abs_diff(q[3]))
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Generated files
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 32) as u8).collect()
    }
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// A zlib stream of stored (uncompressed) deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, blk) in blocks.iter().enumerate() {
        out.push(if i + 1 == blocks.len() { 1 } else { 0 });
        let len = blk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(blk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// A PNG file with the given IHDR and raw IDAT payload.
pub fn png_raw(width: u32, height: u32, bit_depth: u8, color_type: u8, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// An 8-bit RGB PNG (filter 0, stored deflate) of `rgb` pixels.
pub fn png_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let row = width as usize * 3;
    assert_eq!(rgb.len(), row * height as usize);
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for r in rgb.chunks_exact(row) {
        raw.push(0);
        raw.extend_from_slice(r);
    }
    png_raw(width, height, 8, 2, &zlib_stored(&raw))
}

/// A large image, slow to convert: `corpus_name` from the corpus when it is
/// there, else a generated photo-like PNG of `fallback` (width, height,
/// seed). Under `CI=true` the corpus and that image in it are required.
/// Returns the name to serve it under (`big.jpg` or `big.png`) and its bytes.
pub fn big_image(corpus_name: &str, fallback: (u32, u32, u64)) -> (String, Vec<u8>) {
    let path = corpus_dir().map(|c| c.join(corpus_name));
    if let Some(p) = path.as_ref().filter(|p| !p.is_file()) {
        // Under CI=true the corpus is required: so is the image asked for.
        assert!(!in_ci(), "{} is not in the corpus (CI=true)", p.display());
        eprintln!("note: {} not found; using a generated image", p.display());
    }
    let big = path
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .unwrap_or_else(|| synthetic_photo_png(fallback.0, fallback.1, fallback.2));
    let name = if is_jpeg(&big) { "big.jpg" } else { "big.png" };
    (name.to_string(), big)
}

/// A photo-like test image: smooth colour gradients plus noise, so that it
/// is slow to encode and lossy WebP is much smaller than the PNG.
pub fn synthetic_photo_png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut px = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let n = (rng.next_u64() >> 60) as i32 - 8;
            let r = (x * 255 / width) as i32 + n;
            let g = (y * 255 / height) as i32 + n;
            let b = (((x + y) / 7) % 256) as i32 + n;
            px.extend_from_slice(&[
                r.clamp(0, 255) as u8,
                g.clamp(0, 255) as u8,
                b.clamp(0, 255) as u8,
            ]);
        }
    }
    png_rgb(width, height, &px)
}

/// A minimal valid GIF (1x1).
pub fn tiny_gif() -> Vec<u8> {
    vec![
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xFF, 0xFF,
        0xFF, 0x00, 0x00, 0x00, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    ]
}

/// Percentile (0-100) of durations, nearest-rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `X-Smart-Imaging` header (`smart_imaging_debug_header on`), or "".
pub fn debug(r: &Response) -> &str {
    r.header("X-Smart-Imaging").unwrap_or("")
}

/// `count` concurrent GETs of `url`, each with `headers`, on connections
/// of their own.
pub fn concurrent(port: u16, url: &str, count: usize, headers: &[(&str, &str)]) -> Vec<Response> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|_| s.spawn(move || get(port, url, headers)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The module's `info` messages since `mark` (durations masked, see
/// [`module_log_message`]) that start with `prefix` and end with `suffix`.
pub fn info_lines(n: &Nginx, mark: usize, prefix: &str, suffix: &str) -> Vec<String> {
    n.error_log_since(mark)
        .lines()
        .filter_map(|l| module_log_message(l, "info"))
        .filter(|m| m.starts_with(prefix) && m.ends_with(suffix))
        .collect()
}

/// Nothing at `alert`, `crit` or `emerg` in the whole error log.
pub fn assert_no_alerts(n: &Nginx) {
    let log = n.error_log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
        .collect();
    assert!(bad.is_empty(), "in the error log:\n{}", bad.join("\n"));
}

/// A 1-bit grayscale noise PNG: tiny, and lossy WebP of it is much larger
/// (an original kept as `not-smaller`).
pub fn noise_png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let row = width.div_ceil(8) as usize;
    let mut rng = Rng::new(seed);
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0);
        raw.extend(rng.bytes(row));
    }
    png_raw(width, height, 1, 0, &zlib_stored(&raw))
}

/// Live worker processes whose parent is `master`, sorted.
pub fn workers_of(master: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces, so split
        // after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid: u32 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // Only workers: the cache manager and loader (with proxy_cache)
        // come and go on their own schedule.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == master && state != "Z" && cmdline.starts_with(b"nginx: worker process") {
            out.insert(pid);
        }
    }
    out
}

/// The stash directory's entries (`smart_imaging_stash` under the
/// prefix, the default `smart_imaging_stash_path`), sorted.
pub fn stash_entries(n: &Nginx) -> Vec<PathBuf> {
    let dir = n.prefix.join("smart_imaging_stash");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}
