//! nginx-conf/cache-tier.conf, the shipped layout in which nginx's own
//! cache holds the converted images, run as shipped (paths and the port
//! mapped into a test prefix): a front server with `proxy_cache` keyed on
//! the URL and `$smart_imaging_variant` (`smart_imaging_variant_only on`),
//! proxying over a unix socket to the converting server.
//!
//! Hits are seen in `X-Cache-Status` (the front's `$upstream_cache_status`),
//! conversions in the converting tier's access log
//! (`logs/smart-imaging.log`, `$smart_imaging_result`).
//!
//! Covered: a conversion per variant, then hits with the same bytes and no
//! conversion; each Accept and DPR its own entry, in its own format; no
//! variant for a client without WebP/AVIF; `bfc=off` bypasses; a load
//! fallback (`timeout`) and errors are not stored; a settings mismatch
//! between the tiers stores nothing; `scripts/purge-url` drops every
//! variant of one URL (and of no other); validity expiry (revalidated
//! without converting) and `inactive`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use smart_imaging_core::codecs::{avif, webp};

const LAYOUT: &str = "cache-tier.conf";

const ACCEPT_AVIF: (&str, &str) = ("Accept", "image/avif,image/webp,*/*");
const ACCEPT_WEBP_ONLY: (&str, &str) = ("Accept", "image/webp,*/*");
const ACCEPT_NONE: (&str, &str) = ("Accept", "*/*");

fn sample(name: &str) -> Vec<u8> {
    fs::read(samples_dir().join(name)).unwrap()
}

/// The shipped layout, changed by `edit` (identity for most tests), with
/// `photo.jpg` and `other.jpg` under /images/.
fn start(name: &str, edit: impl Fn(String) -> String) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.put_file("images/photo.jpg", &sample("sk_astronaut.jpg"));
    n.put_file("images/other.jpg", &sample("sk_coffee.jpg"));
    let conf = edit(n.shipped_config(LAYOUT));
    n.run(&Config::complete(&conf));
    n
}

/// Replaces `from` (which must be in `conf`) by `to`.
fn edit(conf: String, from: &str, to: &str) -> String {
    assert!(conf.contains(from), "{LAYOUT} has no {from:?}");
    conf.replacen(from, to, 1)
}

/// The converting tier's location, to add directives to it.
const CONVERTING: &str = "        location /images/ {\n            smart_imaging on;\n";

fn cache_status(r: &Response) -> &str {
    r.header("X-Cache-Status").unwrap_or("-")
}

fn conversion_log(n: &Nginx) -> String {
    fs::read_to_string(n.prefix.join("logs/smart-imaging.log")).unwrap_or_default()
}

/// Conversions the converting tier has logged.
fn conversions(n: &Nginx) -> usize {
    conversion_log(n)
        .lines()
        .filter(|l| l.contains("\"converted format="))
        .count()
}

/// Waits (up to 5 s) for the converting tier to have logged `expected`
/// conversions in all, then checks no more follow.
fn assert_conversions(n: &Nginx, expected: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while conversions(n) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        conversions(n),
        expected,
        "{what}: conversions logged by the converting tier:\n{}",
        conversion_log(n)
    );
}

/// GET through the front, which must answer 200 with `status` in
/// `X-Cache-Status`.
fn fetch(n: &Nginx, path: &str, headers: &[(&str, &str)], status: &str) -> Response {
    let r = get(n.port(), path, headers);
    assert_eq!(r.status, 200, "{path} {headers:?}\n{}", r.describe());
    assert_eq!(
        cache_status(&r),
        status,
        "{path} {headers:?}: X-Cache-Status\n{}",
        r.describe()
    );
    r
}

fn is_avif(b: &[u8]) -> bool {
    b.len() > 12 && &b[4..12] == b"ftypavif"
}

/// The (width, height) of an AVIF or WebP served, decoded.
fn decoded_dims(r: &Response) -> (u32, u32) {
    let img = match r.content_type() {
        Some("image/avif") => avif::decode(&r.body).expect("valid AVIF"),
        Some("image/webp") => webp::decode(&r.body).expect("valid WebP"),
        other => panic!("not a variant: {other:?}\n{}", r.describe()),
    };
    (img.width, img.height)
}

/// The cache's files (entries; nginx's temporary files excepted).
fn cache_files(n: &Nginx) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|f| f.len() == 32) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&n.prefix.join("cache/smart-imaging"), &mut out);
    out.sort();
    out
}

#[test]
fn one_conversion_per_variant_then_hits() {
    let n = start("cache-variants", |c| c);
    let original = sample("sk_astronaut.jpg");

    // (a) AVIF: converted once, then served from the cache.
    let first = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
    assert_eq!(first.content_type(), Some("image/avif"));
    assert!(is_avif(&first.body));
    assert_eq!(decoded_dims(&first), (512, 512));
    assert!(first.header("X-Smart-Imaging-Variant").is_none());
    assert!(first.vary_has("Accept"), "{}", first.describe());
    assert_conversions(&n, 1, "first AVIF request");
    for _ in 0..3 {
        let hit = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
        assert_eq!(hit.body, first.body, "a hit serves the bytes stored");
        assert_eq!(hit.content_type(), Some("image/avif"));
        assert_eq!(hit.header("ETag"), first.header("ETag"));
    }
    assert_conversions(&n, 1, "AVIF hits");

    // (b) Another Accept: another entry, in its own format.
    let webp = fetch(&n, "/images/photo.jpg", &[ACCEPT_WEBP_ONLY], "MISS");
    assert_eq!(webp.content_type(), Some("image/webp"));
    assert_eq!(decoded_dims(&webp), (512, 512));
    assert_conversions(&n, 2, "WebP-only client");
    let hit = fetch(&n, "/images/photo.jpg", &[ACCEPT_WEBP_ONLY], "HIT");
    assert_eq!(hit.body, webp.body);
    // Another Accept string that negotiates the same: the same entry.
    let hit = fetch(
        &n,
        "/images/photo.jpg",
        &[("Accept", "image/webp;q=0.9, image/*;q=0.8")],
        "HIT",
    );
    assert_eq!(hit.content_type(), Some("image/webp"));
    assert_eq!(hit.body, webp.body);

    // A client that takes neither: the original, from the cache too, and
    // never a variant.
    for status in ["MISS", "HIT"] {
        let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_NONE], status);
        assert_eq!(r.content_type(), Some("image/jpeg"), "{}", r.describe());
        assert_eq!(r.body, original, "{status}: the original bytes");
    }
    let r = fetch(&n, "/images/photo.jpg", &[], "HIT");
    assert_eq!(r.body, original, "no Accept at all: the original");
    // An AVIF-capable client that says q=0 for AVIF: WebP, from its entry.
    let r = fetch(
        &n,
        "/images/photo.jpg",
        &[("Accept", "image/avif;q=0,image/webp,*/*")],
        "HIT",
    );
    assert_eq!(r.content_type(), Some("image/webp"));
    assert_eq!(r.body, webp.body);
    assert_conversions(&n, 2, "clients without a better format");

    // Another DPR (client hint): another size, another entry.
    let mut widths = Vec::new();
    for dpr in ["1", "2"] {
        let h = [ACCEPT_WEBP_ONLY, ("Sec-CH-DPR", dpr)];
        let miss = fetch(&n, "/images/photo.jpg?wid=100", &h, "MISS");
        let hit = fetch(&n, "/images/photo.jpg?wid=100", &h, "HIT");
        assert_eq!(hit.body, miss.body);
        widths.push(decoded_dims(&hit).0);
    }
    assert_eq!(widths, [100, 200], "DPR 1 and 2 of wid=100");
    assert_conversions(&n, 4, "two DPRs");

    // The first entries are still there, unchanged.
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    assert_eq!(r.body, first.body);
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_NONE], "HIT");
    assert_eq!(r.body, original);

    // (c) bfc=off: straight through, the original, nothing stored.
    let entries = cache_files(&n);
    for _ in 0..2 {
        let r = fetch(&n, "/images/photo.jpg?bfc=off", &[ACCEPT_AVIF], "BYPASS");
        assert_eq!(r.content_type(), Some("image/jpeg"));
        assert_eq!(r.body, original);
    }
    assert_eq!(cache_files(&n), entries, "bfc=off stored nothing");
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    assert_eq!(r.body, first.body, "bfc=off left the AVIF entry alone");
    assert_conversions(&n, 4, "bfc=off");

    // A file that does not exist: a 404, not stored.
    for _ in 0..2 {
        let r = get(n.port(), "/images/missing.jpg", &[ACCEPT_AVIF]);
        assert_eq!(r.status, 404);
        assert_eq!(cache_status(&r), "MISS");
    }
}

/// (d) An original served because of load (`timeout` here) is marked
/// `Cache-Control: no-store` / `X-Accel-Expires: 0`: the front does not
/// store it, the next request converts, and that is stored.
#[test]
fn load_fallback_is_not_cached() {
    let tiny_timeout = |c: String| {
        edit(
            c,
            CONVERTING,
            // No stash: an abandoned conversion would serve the next
            // requests from it once done.
            &format!(
                "{CONVERTING}            smart_imaging_timeout 1ms;\n            smart_imaging_stash_path off;\n"
            ),
        )
    };
    let mut n = start("cache-fallback", tiny_timeout);
    let original = sample("sk_astronaut.jpg");
    for i in 0..2 {
        let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
        assert_eq!(r.content_type(), Some("image/jpeg"), "{}", r.describe());
        assert_eq!(r.body, original);
        assert_eq!(
            r.header("Cache-Control"),
            Some("no-store"),
            "request {i}: the fallback's smart_imaging_ttl is replaced\n{}",
            r.describe()
        );
        assert!(r.header("Expires").is_none());
        assert!(
            r.header("X-Accel-Expires").is_none(),
            "the front hides X-Accel-Expires"
        );
    }
    // What the converting tier itself sends, for any cache in front.
    let conf = fs::read_to_string(n.prefix.join("nginx.conf")).unwrap();
    let socket = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen unix:"))
        .expect("the converting tier's socket")
        .trim_end_matches(';');
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "--unix-socket", socket])
        .args(["-H", "Accept: image/avif,image/webp,*/*"])
        .arg("http://localhost/images/photo.jpg")
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains("\r\ncache-control: no-store\r\n")
            && head.contains("\r\nx-accel-expires: 0\r\n")
            && head.contains("\r\ncontent-type: image/jpeg\r\n"),
        "the converting tier's fallback:\n{head}"
    );
    // A request is logged when nginx frees it, which can be just after
    // curl has read the whole response: wait for the third line.
    let timeouts = |n: &Nginx| conversion_log(n).matches("original reason=timeout").count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while timeouts(&n) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let log = conversion_log(&n);
    assert_eq!(
        log.matches("original reason=timeout").count(),
        3,
        "three timeouts logged:\n{log}"
    );
    assert!(cache_files(&n).is_empty(), "nothing stored");

    // A deterministic original (a client that takes no better format) is
    // stored, with its own cache headers, also here.
    fetch(&n, "/images/photo.jpg", &[ACCEPT_NONE], "MISS");
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_NONE], "HIT");
    assert_eq!(r.header("Cache-Control"), Some("max-age=86400"));
    assert_eq!(r.body, original);

    // The shipped settings: the next request converts, and is stored.
    n.reload(&Config::complete(&n.shipped_config(LAYOUT)));
    let miss = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
    assert_eq!(miss.content_type(), Some("image/avif"));
    assert_eq!(miss.header("Cache-Control"), Some("max-age=86400"));
    assert_conversions(&n, 1, "after the reload");
    let hit = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    assert_eq!(hit.body, miss.body);
    assert_conversions(&n, 1, "hit after the reload");
}

/// The converting tier failing (a 5xx) is not stored either; nor is what it
/// made when its settings differ from the front's (the variant it reports
/// is not the key's).
#[test]
fn errors_and_mismatched_variants_are_not_cached() {
    let n = start("cache-errors", |c| {
        let c = edit(
            c,
            CONVERTING,
            &format!("        location = /images/broken.jpg {{ return 503; }}\n{CONVERTING}"),
        );
        // A setting given to the converting tier only: its variants are
        // WebP ones, the front's key says AVIF.
        edit(
            c,
            CONVERTING,
            &format!("{CONVERTING}            smart_imaging_formats webp;\n"),
        )
    });
    for _ in 0..2 {
        let r = get(n.port(), "/images/broken.jpg", &[ACCEPT_AVIF]);
        assert_eq!(r.status, 503, "{}", r.describe());
        assert_eq!(cache_status(&r), "MISS");
    }
    for i in 0..2 {
        let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
        assert_eq!(r.content_type(), Some("image/webp"), "request {i}");
        webp::decode(&r.body).expect("valid WebP");
    }
    assert_conversions(&n, 2, "a variant the front cannot key is made each time");
    assert!(cache_files(&n).is_empty(), "nothing stored");
}

fn purge(n: &Nginx, url: &str) -> String {
    let out = Command::new(repo_root().join("scripts/purge-url"))
        .arg(n.prefix.join("cache/smart-imaging"))
        .arg(url)
        .output()
        .expect("run scripts/purge-url");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "purge-url: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// (e) `scripts/purge-url` drops every variant of one URL (all sizes, all
/// formats), and nothing else: the next request of each converts again
/// (`open_file_cache` notwithstanding).
#[test]
fn purge_drops_every_variant_of_one_url() {
    let n = start("cache-purge", |c| c);
    let variants: [(&str, &[(&str, &str)]); 4] = [
        ("/images/photo.jpg", &[ACCEPT_AVIF]),
        ("/images/photo.jpg", &[ACCEPT_WEBP_ONLY]),
        ("/images/photo.jpg", &[ACCEPT_NONE]),
        ("/images/photo.jpg?wid=100", &[ACCEPT_WEBP_ONLY]),
    ];
    let mut first = Vec::new();
    for (path, h) in variants {
        first.push(fetch(&n, path, h, "MISS").body);
    }
    fetch(&n, "/images/other.jpg", &[ACCEPT_WEBP_ONLY], "MISS");
    assert_conversions(&n, 4, "the variants");
    for (path, h) in variants {
        fetch(&n, path, h, "HIT");
    }
    assert_eq!(cache_files(&n).len(), 5);

    let said = purge(&n, "http://localhost/images/photo.jpg");
    assert!(said.starts_with("4 "), "purge-url says: {said}");
    for ((path, h), before) in variants.iter().zip(&first) {
        let r = fetch(&n, path, h, "MISS");
        assert_eq!(&r.body, before, "{path}: the same variant, made again");
    }
    assert_conversions(&n, 7, "after the purge, the three conversions again");
    for (path, h) in variants {
        fetch(&n, path, h, "HIT");
    }
    fetch(&n, "/images/other.jpg", &[ACCEPT_WEBP_ONLY], "HIT");

    // A URL with its query string: that URL's variants only.
    let said = purge(&n, "localhost/images/photo.jpg?wid=100");
    assert!(said.starts_with("1 "), "purge-url says: {said}");
    let (path, h) = variants[3];
    fetch(&n, path, h, "MISS");
    fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    assert_conversions(&n, 8, "after purging ?wid=100");
}

/// (f) An entry past its validity (`smart_imaging_ttl`, here 2 s) is
/// revalidated: the converting tier answers 304 for the variant's ETag
/// without converting. An entry unused for `inactive` (here 3 s) is
/// removed by the cache manager, and made again when asked for.
#[test]
fn expiry_and_inactive() {
    let n = start("cache-expiry", |c| {
        let c = edit(c, "smart_imaging_ttl 24h;", "smart_imaging_ttl 2s;");
        edit(c, "inactive=7d", "inactive=3s")
    });
    let miss = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
    assert_eq!(miss.header("Cache-Control"), Some("max-age=2"));
    fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    // nginx counts validity in whole seconds: past 2 s, surely.
    std::thread::sleep(Duration::from_millis(3200));
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "REVALIDATED");
    assert_eq!(r.body, miss.body);
    let r = fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "HIT");
    assert_eq!(r.body, miss.body);
    assert_conversions(&n, 1, "revalidation does not convert");
    assert!(
        conversion_log(&n).contains("\"original reason=not-modified"),
        "the converting tier answered 304:\n{}",
        conversion_log(&n)
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache_files(&n).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the cache manager did not remove the inactive entry"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The front's open_file_cache may hold the removed file open for
    // open_file_cache_valid (1 s).
    std::thread::sleep(Duration::from_millis(1100));
    fetch(&n, "/images/photo.jpg", &[ACCEPT_AVIF], "MISS");
    assert_conversions(&n, 2, "made again after inactive");
    let log = n.error_log();
    assert!(
        !log.contains("[crit]") && !log.contains("[alert]"),
        "error log:\n{log}"
    );
}

/// `smart_imaging_variant_only on` wins over an inherited `smart_imaging
/// on`: the variant is worked out, the response left alone.
#[test]
fn variant_only_converts_nothing() {
    let mut n = Nginx::prepare("cache-variant-only");
    n.put_file("images/photo.jpg", &sample("sk_astronaut.jpg"));
    n.run(&Config::with_module(
        r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        add_header X-Variant "$smart_imaging_variant" always;
        location /images/ {
            smart_imaging_variant_only on;
        }
        location /converted/ {
            alias {{HTDOCS}}/images/;
        }
    }
"#,
    ));
    let r = get(n.port(), "/images/photo.jpg", &[ACCEPT_AVIF]);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("image/jpeg"));
    assert_eq!(r.body, sample("sk_astronaut.jpg"));
    assert_eq!(r.header("X-Variant"), Some("avif+webp-q90-src"));
    assert!(r.header("X-Smart-Imaging").is_none(), "{}", r.describe());
    assert!(!r.vary_has("Accept"), "the response is left alone");
    // The same request where the module converts: that very variant.
    let r = get(n.port(), "/converted/photo.jpg", &[ACCEPT_AVIF]);
    assert_eq!(r.content_type(), Some("image/avif"));
    assert_eq!(r.header("X-Variant"), Some("avif+webp-q90-src"));
}
