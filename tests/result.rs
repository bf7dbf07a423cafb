//! `$smart_imaging_result` in the access log, the `X-Smart-Imaging` header
//! of `smart_imaging_debug_header`, and the directives `smart_imaging_guard`,
//! `smart_imaging_guard_encodes` and `smart_imaging_debug_header` (values
//! `nginx -t` must refuse). Small images only: the guard's quality search
//! makes every conversion several encodes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

/// Each request carries `?t=<tag>`; the log line is `<tag>|<status>|<result>`.
const LOG: &str = r#"
    log_format result '$arg_t|$status|$smart_imaging_result';
    access_log {{PREFIX}}/logs/result.log result;
"#;

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
        }
        location /noguard/ {
            alias {{HTDOCS}}/images/;
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_guard off;
        }
        location /guard50/ {
            alias {{HTDOCS}}/images/;
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_guard 50.5;
            smart_imaging_guard_encodes 2;
        }
        location /small/ {
            alias {{HTDOCS}}/images/;
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_buffer 1k;
        }
        location /plain/ {
            alias {{HTDOCS}}/images/;
        }
    }

    # smart_imaging_debug_header on at server level.
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        location /images/ { }
        location /noguard/ {
            alias {{HTDOCS}}/images/;
            smart_imaging_guard off;
        }
        location /small/ {
            alias {{HTDOCS}}/images/;
            smart_imaging_buffer 1k;
        }
        location /quiet/ {
            alias {{HTDOCS}}/images/;
            smart_imaging_debug_header off;
        }
    }
"#;

struct Files {
    photo: Vec<u8>,
    noise: Vec<u8>,
}

const TEXT: &[u8] = b"hello, not an image\n";

fn server(name: &str) -> (Nginx, Files) {
    let mut n = Nginx::prepare(name);
    let files = Files {
        photo: synthetic_photo_png(96, 96, 7),
        noise: noise_png(64, 64, 5),
    };
    n.put_file("images/photo.png", &files.photo);
    n.put_file("images/noise.png", &files.noise);
    n.put_file("images/hello.txt", TEXT);
    let http = format!("{LOG}{HTTP}");
    n.run(&Config::with_module(&http));
    (n, files)
}

/// The `$smart_imaging_result` logged for the request tagged `tag` (waits
/// up to 5 s for the line).
fn logged(n: &Nginx, tag: &str) -> String {
    let path = n.prefix.join("logs").join("result.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let prefix = format!("{tag}|");
        if let Some(line) = log.lines().find(|l| l.starts_with(&prefix)) {
            let mut parts = line.splitn(3, '|');
            let _tag = parts.next();
            let _status = parts.next();
            return parts.next().unwrap_or("").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {tag} in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `converted format=webp in=1 ...` -> ("converted", [(format, webp), ...]).
fn fields(value: &str) -> (String, Vec<(String, String)>) {
    let mut words = value.split(' ');
    let kind = words.next().unwrap_or("").to_string();
    let fields = words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("field {w:?} of {value:?} is not key=value"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (kind, fields)
}

fn millis(v: &str) -> u64 {
    v.strip_suffix("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("time {v:?} is not <n>ms"))
}

/// Checks a `converted ...` value against the response; returns its fields.
fn check_converted(value: &str, input: usize, r: &Response) -> BTreeMap<String, String> {
    let (kind, list) = fields(value);
    assert_eq!(kind, "converted", "{value}");
    let keys: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
    let expected: &[&str] = if keys.contains(&"score") {
        &[
            "format", "in", "out", "saved", "quality", "score", "encodes", "time",
        ]
    } else {
        &["format", "in", "out", "saved", "quality", "encodes", "time"]
    };
    assert_eq!(keys, expected, "{value}");
    let f: BTreeMap<String, String> = list.into_iter().collect();
    assert_eq!(f["format"], "webp", "{value}");
    assert_eq!(f["in"], input.to_string(), "{value}");
    assert_eq!(f["out"], r.body.len().to_string(), "{value}");
    let saved = (input - r.body.len()) as f64 * 100.0 / input as f64;
    assert_eq!(f["saved"], format!("{saved:.1}%"), "{value}");
    let q: u32 = f["quality"].parse().expect("quality is a number");
    assert!(q <= 100, "{value}");
    if let Some(score) = f.get("score") {
        let (int, frac) = score.split_once('.').expect("score has one decimal");
        assert!(frac.len() == 1 && int.parse::<i32>().is_ok(), "{value}");
    }
    let _: usize = f["encodes"].parse().expect("encodes is a number");
    millis(&f["time"]);
    f
}

#[test]
fn converted_webp_is_logged_with_its_numbers() {
    let (n, files) = server("result-converted");
    let r = get(n.port(), "/images/photo.png?t=webp", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let value = logged(&n, "webp");
    let f = check_converted(&value, files.photo.len(), &r);
    // Where the guard checked the result, it passed the default threshold.
    if let Some(score) = f.get("score") {
        let score: f64 = score.parse().unwrap();
        assert!(score >= 80.0, "{value}");
    }
    assert!(
        r.header("x-smart-imaging").is_none(),
        "X-Smart-Imaging without smart_imaging_debug_header\n{}",
        r.describe()
    );
}

#[test]
fn guard_directives_reach_the_transcode() {
    let (n, files) = server("result-guard");
    // Off: each format is encoded once, and nothing is scored.
    let r = get(n.port(), "/noguard/photo.png?t=off", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let value = logged(&n, "off");
    let f = check_converted(&value, files.photo.len(), &r);
    assert!(
        !f.contains_key("score"),
        "a score with the guard off: {value}"
    );
    assert!(f["encodes"].parse::<usize>().unwrap() <= 1, "{value}");

    // 50.5 with at most 2 encodes: WebP only (the client takes nothing
    // else), so at most 2 encoder runs, and a score (if any) >= 50.5.
    let r = get(n.port(), "/guard50/photo.png?t=g50", &[ACCEPT_WEBP]);
    let value = logged(&n, "g50");
    if r.content_type() == Some("image/webp") {
        let f = check_converted(&value, files.photo.len(), &r);
        assert!(f["encodes"].parse::<usize>().unwrap() <= 2, "{value}");
        if let Some(score) = f.get("score") {
            assert!(score.parse::<f64>().unwrap() >= 50.5, "{value}");
        }
    } else {
        assert!(value.starts_with("original reason="), "{value}");
    }
}

#[test]
fn kept_originals_say_why() {
    let (n, files) = server("result-kept");
    let p = n.port();
    let png = files.photo.len();

    // Not smaller (the guard off, so the one WebP encode decides).
    let r = get(p, "/noguard/noise.png?t=noise", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/png"), "{}", r.describe());
    assert!(r.body == files.noise);
    let value = logged(&n, "noise");
    let (kind, list) = fields(&value);
    assert_eq!(kind, "original", "{value}");
    let keys: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["reason", "in", "out", "time"], "{value}");
    let f: BTreeMap<String, String> = list.into_iter().collect();
    assert_eq!(f["reason"], "not-smaller", "{value}");
    assert_eq!(f["in"], files.noise.len().to_string(), "{value}");
    assert!(
        f["out"].parse::<usize>().unwrap() >= files.noise.len(),
        "{value}"
    );
    millis(&f["time"]);

    // bfc=off: the module stands aside.
    let r = get(p, "/images/photo.png?t=bfc&bfc=off", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/png"));
    assert_eq!(logged(&n, "bfc"), format!("original reason=off in={png}"));

    // Over smart_imaging_buffer (known from Content-Length).
    let r = get(p, "/small/photo.png?t=big", &[ACCEPT_WEBP]);
    assert!(r.body == files.photo);
    assert_eq!(
        logged(&n, "big"),
        format!("original reason=too-big in={png} buffer=1024")
    );
    assert!(r.header("x-smart-imaging").is_none(), "{}", r.describe());

    // A client that takes nothing better than the original.
    let r = get(
        p,
        "/images/photo.png?t=orig",
        &[("Accept", "image/png,*/*")],
    );
    assert!(r.body == files.photo);
    assert_eq!(
        logged(&n, "orig"),
        format!("original reason=nothing-to-do in={png}")
    );

    // Not an image type, in an enabled location.
    get(p, "/images/hello.txt?t=text", &[ACCEPT_WEBP]);
    assert_eq!(
        logged(&n, "text"),
        format!("original reason=not-candidate in={}", TEXT.len())
    );

    // HEAD: served as the GET, it reports what was done for the GET.
    let r = request(p, "HEAD", "/images/photo.png?t=head", &[ACCEPT_WEBP]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("image/webp"));
    let head = logged(&n, "head");
    assert!(head.starts_with("converted format=webp "), "{head}");

    // 304 of the original (its own ETag, client without WebP).
    let r = request(p, "HEAD", "/images/photo.png?t=headorig", &[]).unwrap();
    assert_eq!(
        logged(&n, "headorig"),
        format!("original reason=nothing-to-do in={png}")
    );
    let etag = r.header("etag").expect("ETag").to_string();
    let r = get(p, "/images/photo.png?t=304", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{}", r.describe());
    assert_eq!(logged(&n, "304"), "original reason=not-modified");
    assert!(r.header("x-smart-imaging").is_none(), "{}", r.describe());

    // 304 of the derivative: its ETag, sent back by a WebP client.
    let r = get(p, "/images/photo.png?t=webp", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"));
    let etag = r.header("etag").expect("ETag").to_string();
    let r = get(
        p,
        "/images/photo.png?t=304w",
        &[ACCEPT_WEBP, ("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304, "{}", r.describe());
    assert_eq!(logged(&n, "304w"), "original reason=not-modified");

    // The module off for the location: empty ("-" in the log).
    get(p, "/plain/photo.png?t=plain", &[ACCEPT_WEBP]);
    assert_eq!(logged(&n, "plain"), "-");
}

#[test]
fn debug_header_carries_the_result() {
    let (n, files) = server("result-debug");
    let p = n.ports[1];
    let png = files.photo.len();

    let r = get(p, "/images/photo.png?t=webp", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let header = r.header("x-smart-imaging").expect("X-Smart-Imaging");
    assert_eq!(header, logged(&n, "webp"), "header and variable differ");
    check_converted(header, png, &r);

    let r = get(p, "/noguard/noise.png?t=noise", &[ACCEPT_WEBP]);
    let header = r.header("x-smart-imaging").expect("X-Smart-Imaging");
    assert!(
        header.starts_with(&format!(
            "original reason=not-smaller in={} out=",
            files.noise.len()
        )),
        "{header}"
    );
    assert_eq!(header, logged(&n, "noise"));

    for (tag, path, accept, expected) in [
        (
            "big",
            "/small/photo.png",
            "image/webp,*/*",
            format!("original reason=too-big in={png} buffer=1024"),
        ),
        (
            "orig",
            "/images/photo.png",
            "*/*",
            format!("original reason=nothing-to-do in={png}"),
        ),
    ] {
        let r = get(p, &format!("{path}?t={tag}"), &[("Accept", accept)]);
        assert_eq!(
            r.header_all("x-smart-imaging"),
            vec![expected.as_str()],
            "{tag}\n{}",
            r.describe()
        );
        assert_eq!(logged(&n, tag), expected);
    }

    // 304: the header goes out with it.
    let etag = get(p, "/images/photo.png?t=first", &[])
        .header("etag")
        .expect("ETag")
        .to_string();
    let r = get(p, "/images/photo.png?t=304", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("x-smart-imaging"),
        Some("original reason=not-modified"),
        "{}",
        r.describe()
    );

    // Responses the module leaves alone get no header.
    for (tag, path) in [
        ("bfc", "/images/photo.png?bfc=off&t=bfc"),
        ("text", "/images/hello.txt?t=text"),
        ("quiet", "/quiet/photo.png?t=quiet"),
    ] {
        let r = get(p, path, &[ACCEPT_WEBP]);
        assert!(
            r.header("x-smart-imaging").is_none(),
            "{tag}: unexpected X-Smart-Imaging\n{}",
            r.describe()
        );
    }
    // smart_imaging_debug_header off still converts and logs.
    assert!(logged(&n, "quiet").starts_with("converted format=webp "));
    assert_eq!(logged(&n, "bfc"), format!("original reason=off in={png}"));
}

fn site(directives: &str) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{{{{PORT}}}};
        root {{{{HTDOCS}}}};
        location /images/ {{
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            {directives}
        }}
    }}
"#
    )
}

#[test]
fn guard_and_debug_directives_are_checked_by_nginx_t() {
    let mut n = Nginx::prepare("result-directives");
    for ok in [
        "smart_imaging_guard 80;",
        "smart_imaging_guard 72.5;",
        "smart_imaging_guard 0;",
        "smart_imaging_guard 100;",
        "smart_imaging_guard off;",
        "smart_imaging_guard_encodes 1;",
        "smart_imaging_guard_encodes 16;",
        "smart_imaging_debug_header on;",
        "smart_imaging_debug_header off;",
        "smart_imaging_guard 90; smart_imaging_guard_encodes 3; smart_imaging_debug_header on;",
    ] {
        n.assert_config_accepted(&Config::with_module(&site(ok)), ok);
    }
    for (bad, message) in [
        ("smart_imaging_guard 101;", "invalid value \"101\""),
        ("smart_imaging_guard 100.5;", "invalid value \"100.5\""),
        ("smart_imaging_guard -1;", "invalid value \"-1\""),
        ("smart_imaging_guard high;", "invalid value \"high\""),
        ("smart_imaging_guard 1e2;", "invalid value \"1e2\""),
        ("smart_imaging_guard nan;", "invalid value \"nan\""),
        ("smart_imaging_guard .;", "invalid value \".\""),
        ("smart_imaging_guard 80 90;", "invalid number of arguments"),
        (
            "smart_imaging_guard 80; smart_imaging_guard 70;",
            "is duplicate",
        ),
        ("smart_imaging_guard_encodes 0;", "invalid value \"0\""),
        ("smart_imaging_guard_encodes 17;", "invalid value \"17\""),
        ("smart_imaging_guard_encodes -2;", "invalid value \"-2\""),
        ("smart_imaging_guard_encodes 2.5;", "invalid value \"2.5\""),
        ("smart_imaging_guard_encodes off;", "invalid value \"off\""),
        (
            "smart_imaging_debug_header maybe;",
            "invalid value \"maybe\"",
        ),
        ("smart_imaging_debug_header;", "invalid number of arguments"),
    ] {
        let line = n.assert_config_refused(&Config::with_module(&site(bad)), bad, message);
        assert!(
            line.contains("nginx-t.conf:"),
            "`{bad}`: expected the file:line in:\n{line}"
        );
    }
}
