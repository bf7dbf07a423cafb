//! The example configurations in nginx-conf/ are what operators copy: each
//! must pass `nginx -t` with the module loaded, and the demo one (what
//! `make run` starts) must actually serve WebP, and count it on its status
//! endpoint.
//!
//! Paths that only exist in the Docker image (/etc/nginx, /var/log/nginx,
//! /var/cache/nginx, ...) are mapped into a temporary prefix. The layout
//! of nginx-conf/cache-tier.conf is run for real by tests/cache.rs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nginx_binary() -> PathBuf {
    PathBuf::from(env!("SMART_IMAGING_NGINX_BUILD_DIR")).join("nginx")
}

fn module() -> PathBuf {
    if let Ok(m) = std::env::var("SMART_IMAGING_MODULE") {
        return m.into();
    }
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("libngx_http_smart_imaging_module.so")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A prefix directory with the configuration rewritten to run here.
fn prepare(test: &str, conf_name: &str, ports: (u16, u16)) -> PathBuf {
    let prefix = std::env::temp_dir().join(format!(
        "smart-imaging-{test}-{}-{}",
        conf_name.replace('.', "_"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&prefix);
    for dir in [
        "conf",
        "logs",
        "cache",
        "html/images",
        "html/shop",
        "modules",
    ] {
        std::fs::create_dir_all(prefix.join(dir)).unwrap();
    }
    for sample in std::fs::read_dir(root().join("samples")).unwrap() {
        let path = sample.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jpg" | "png")
        ) {
            for dir in ["html/images", "html/shop"] {
                std::fs::copy(&path, prefix.join(dir).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::write(
        prefix.join("conf/mime.types"),
        "types { image/jpeg jpg; image/png png; text/html html; }\n",
    )
    .unwrap();
    let p = prefix.display().to_string();
    let conf = std::fs::read_to_string(root().join("nginx-conf").join(conf_name))
        .unwrap()
        .replace(
            "load_module modules/ngx_http_smart_imaging_module.so;",
            &format!("load_module {};", module().display()),
        )
        .replace("@PORT@", &ports.0.to_string())
        .replace("@ORIGIN_PORT@", &ports.1.to_string())
        .replace("listen 80;", &format!("listen 127.0.0.1:{};", ports.0))
        .replace("user nginx;", "")
        .replace("/etc/nginx/mime.types", &format!("{p}/conf/mime.types"))
        .replace("/var/log/nginx/", &format!("{p}/logs/"))
        .replace("/var/run/nginx.pid", &format!("{p}/logs/nginx.pid"))
        .replace(
            "/var/run/nginx-smart-imaging.sock",
            &format!("{p}/logs/smart-imaging.sock"),
        )
        .replace("/var/cache/nginx/", &format!("{p}/cache/"))
        .replace("/usr/share/nginx/html", &format!("{p}/html"));
    std::fs::write(prefix.join("conf/nginx.conf"), conf).unwrap();
    prefix
}

fn nginx(prefix: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(nginx_binary())
        .arg("-p")
        .arg(prefix)
        .args(["-c", "conf/nginx.conf", "-e", "logs/error.log"])
        .args(extra)
        .output()
        .expect("run nginx")
}

#[test]
fn every_example_config_passes_nginx_t() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("nginx-conf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let prefix = prepare("nginx-t", &name, (free_port(), free_port()));
        let out = nginx(&prefix, &["-t"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("nginx -t {name}: {}", stderr.trim());
        assert!(out.status.success(), "nginx -t failed for {name}: {stderr}");
        let _ = std::fs::remove_dir_all(&prefix);
    }
}

fn get(port: u16, path: &str, accept: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn demo_config_serves_webp_static_and_proxied() {
    let ports = (free_port(), free_port());
    let prefix = prepare("demo", "demo.conf", ports);
    let out = nginx(&prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", ports.0)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let original = std::fs::read(root().join("samples/sk_coffee.jpg")).unwrap();
    for path in ["/images/sk_coffee.jpg", "/shop/sk_coffee.jpg"] {
        let (head, body) = get(ports.0, path, "image/webp,*/*");
        assert!(head.contains("Content-Type: image/webp"), "{path}: {head}");
        assert!(body.starts_with(b"RIFF") && &body[8..12] == b"WEBP");
        assert!(body.len() < original.len());
        let (head, body) = get(ports.0, path, "*/*");
        assert!(head.contains("Content-Type: image/jpeg"), "{path}: {head}");
        assert_eq!(body, original, "{path}: original bytes");
    }
    // Its status endpoint counted them: two WebP, two originals.
    let (head, body) = get(ports.0, "/metrics", "*/*");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let text = String::from_utf8(body).unwrap();
    for line in [
        "smart_imaging_requests_total 4",
        "smart_imaging_converted_total{format=\"webp\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let _ = nginx(&prefix, &["-s", "stop"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while prefix.join("logs/nginx.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&prefix);
}
