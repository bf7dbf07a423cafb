//! The visual-quality guard through a real nginx (docs/quality.md, "Quality: the
//! visual-quality guard and `qlt`"; `smart_imaging_guard`,
//! `smart_imaging_guard_encodes`): what is served passes SSIMULACRA 2 >= 80
//! against the original, scored here, independently of the module, on the
//! core's decoder and on libwebp's `dwebp`; `qlt` in the URL; a threshold
//! nothing can pass keeps the original (`reason=guard`); a poor network
//! lowers the bar.
//!
//! Small images only (samples/, <= 0.3 MP): every conversion is several
//! encodes and scores.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use smart_imaging_core::codecs::{self, webp, Image};
use smart_imaging_core::guard;
use smart_imaging_core::{Format, Limits, Qualities};

/// `X-Smart-Imaging` (`smart_imaging_debug_header on`) everywhere, so each
/// response says what the module did.
const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        smart_imaging_debug_header on;
        location /img/      { smart_imaging on; }
        location /noguard/  { alias {{HTDOCS}}/img/; smart_imaging on;
                              smart_imaging_guard off; }
        location /strict/   { alias {{HTDOCS}}/img/; smart_imaging on;
                              smart_imaging_guard 99.9; }
        location /net/      { alias {{HTDOCS}}/img/; smart_imaging on;
                              smart_imaging_network on; }
        location /plain/    { alias {{HTDOCS}}/img/; }
    }
"#;

/// The SSIMULACRA 2 score the guard asks for by default.
const THRESHOLD: f64 = 80.0;

struct Files {
    /// sk_coffee.jpg: a 600x400 JPEG photo.
    coffee: Vec<u8>,
    /// sk_astronaut.jpg decoded and stored as a PNG (512x512): every format
    /// is far smaller than it, so qualities show in the bytes.
    astronaut_png: Vec<u8>,
    /// sk_horse_alpha.png: gray + alpha.
    horse: Vec<u8>,
    /// dolphin_default_ui.png: a screenshot.
    dolphin: Vec<u8>,
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join(name)).unwrap()
}

fn decode(bytes: &[u8]) -> Image {
    codecs::decode(bytes, &Limits::default()).unwrap()
}

fn server(name: &str) -> (Nginx, Files) {
    let mut n = Nginx::prepare(name);
    let astronaut = decode(&sample("sk_astronaut.jpg"));
    let files = Files {
        coffee: sample("sk_coffee.jpg"),
        astronaut_png: codecs::png::encode(&astronaut).unwrap(),
        horse: sample("sk_horse_alpha.png"),
        dolphin: sample("dolphin_default_ui.png"),
    };
    n.put_file("img/coffee.jpg", &files.coffee);
    n.put_file("img/astronaut.png", &files.astronaut_png);
    n.put_file("img/horse.png", &files.horse);
    n.put_file("img/dolphin.png", &files.dolphin);
    n.run(&Config::with_module(HTTP));
    (n, files)
}

/// `X-Smart-Imaging: converted format=webp in=1 ...` -> ("converted",
/// {format: webp, in: 1, ...}).
fn result(r: &Response) -> (String, BTreeMap<String, String>) {
    let value = r
        .header("x-smart-imaging")
        .unwrap_or_else(|| panic!("no X-Smart-Imaging\n{}", r.describe()));
    let mut words = value.split(' ');
    let kind = words.next().unwrap_or("").to_string();
    let fields = words
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("{value:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (kind, fields)
}

/// The WebP served, decoded by `dwebp` (libwebp's own tool) as RGBA, or
/// `None` when `dwebp` is not installed.
fn dwebp(webp: &[u8], tmp: &std::path::Path) -> Option<Image> {
    let input = tmp.join("served.webp");
    let output = tmp.join("served.pam");
    std::fs::write(&input, webp).unwrap();
    let status = match Command::new("dwebp")
        .arg("-quiet")
        .arg("-pam")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .status()
    {
        Ok(status) => status,
        Err(_) => {
            eprintln!("note: dwebp not found, checking with the core's decoder only");
            return None;
        }
    };
    assert!(status.success(), "dwebp failed on the served WebP");
    Some(read_pam(&std::fs::read(&output).unwrap()))
}

/// A `P7` RGB_ALPHA PAM file (what `dwebp -pam` writes).
fn read_pam(b: &[u8]) -> Image {
    let end = b
        .windows(7)
        .position(|w| w == b"ENDHDR\n")
        .expect("PAM header")
        + 7;
    let header = std::str::from_utf8(&b[..end]).unwrap();
    let mut width = 0;
    let mut height = 0;
    for line in header.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("WIDTH"), Some(v)) => width = v.parse().unwrap(),
            (Some("HEIGHT"), Some(v)) => height = v.parse().unwrap(),
            (Some("DEPTH"), Some(v)) => assert_eq!(v, "4", "PAM depth"),
            (Some("MAXVAL"), Some(v)) => assert_eq!(v, "255", "PAM maxval"),
            _ => {}
        }
    }
    let pixels = b[end..].to_vec();
    assert_eq!(
        pixels.len(),
        width as usize * height as usize * 4,
        "PAM size"
    );
    Image::rgba(width, height, pixels)
}

/// With the guard on (the default), every WebP served scores at least 80
/// against the decoded original, decoded by the core and by `dwebp`; the
/// score the module reports is the one computed here.
#[test]
fn served_webp_passes_the_guard() {
    let (n, files) = server("guard-webp");
    for (name, bytes) in [
        ("coffee.jpg", &files.coffee),
        ("astronaut.png", &files.astronaut_png),
        ("horse.png", &files.horse),
        ("dolphin.png", &files.dolphin),
    ] {
        let r = get(n.port(), &format!("/img/{name}"), &[ACCEPT_WEBP]);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(
            r.content_type(),
            Some("image/webp"),
            "{name}\n{}",
            r.describe()
        );
        assert!(r.body.len() < bytes.len(), "{name}: not smaller");
        let (kind, f) = result(&r);
        assert_eq!(kind, "converted", "{name}\n{}", r.describe());
        let reported: f64 = f["score"].parse().unwrap();
        let quality: u8 = f["quality"].parse().unwrap();
        assert!(reported >= THRESHOLD, "{name}: reported score {reported}");
        assert!(
            quality <= Qualities::default_ceilings().get(Format::WebP),
            "{name}: q{quality}"
        );

        let original = decode(bytes);
        let served = webp::decode(&r.body).unwrap();
        assert_eq!(
            (served.width, served.height),
            (original.width, original.height)
        );
        assert_eq!(served.has_alpha, original.has_alpha, "{name}: alpha");
        let score = guard::score(&original, &served).unwrap();
        assert!(
            score >= THRESHOLD,
            "{name}: SSIMULACRA 2 {score:.2} < {THRESHOLD} (core's WebP decoder)"
        );
        // The header has one decimal.
        assert!(
            (score - reported).abs() <= 0.051,
            "{name}: {score:.2} here, {reported} reported"
        );
        if let Some(by_dwebp) = dwebp(&r.body, &n.prefix) {
            let score = guard::score(&original, &by_dwebp).unwrap();
            assert!(
                score >= THRESHOLD,
                "{name}: SSIMULACRA 2 {score:.2} < {THRESHOLD} (dwebp)"
            );
        }
        eprintln!(
            "{name}: {} -> {} bytes, q{quality}, score {score:.2}",
            bytes.len(),
            r.body.len()
        );
    }
}

/// `qlt` with the guard off: it replaces the quality (mapped onto WebP's
/// scale), and a lower one gives fewer bytes; the variant (and so the
/// ETag) names the quality.
#[test]
fn qlt_sets_the_quality_with_the_guard_off() {
    let (n, files) = server("guard-qlt-off");
    let webp_q = |qlt| Qualities::from_qlt(qlt).get(Format::WebP);
    let default = get(n.port(), "/noguard/astronaut.png", &[ACCEPT_WEBP]);
    let low = get(n.port(), "/noguard/astronaut.png?qlt=50", &[ACCEPT_WEBP]);
    for (r, q) in [
        (&default, Qualities::default_ceilings().get(Format::WebP)),
        (&low, webp_q(50)),
    ] {
        assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
        assert!(r.body.len() < files.astronaut_png.len());
        let (kind, f) = result(r);
        assert_eq!(kind, "converted");
        assert_eq!(f["quality"], q.to_string(), "{}", r.describe());
        assert!(!f.contains_key("score"), "scored with the guard off");
        assert!(
            r.header("etag")
                .unwrap_or("")
                .ends_with(&format!("-webp-q{q}-src\"")),
            "{}",
            r.describe()
        );
    }
    assert!(
        low.body.len() < default.body.len(),
        "qlt=50: {} bytes, default: {} bytes",
        low.body.len(),
        default.body.len()
    );
    // The same bytes as the WebP encoder gives at that quality.
    let original = decode(&files.astronaut_png);
    assert!(low.body == webp::encode(&original, webp_q(50)).unwrap());
}

/// `qlt` with the guard on: the ceiling of the search. A high one still
/// finds a passing WebP; one too low for anything to pass keeps the
/// original (`reason=guard`): `qlt` never lowers the quality below what
/// the guard accepts.
#[test]
fn qlt_is_the_ceiling_with_the_guard_on() {
    let (n, files) = server("guard-qlt-on");
    let high = get(n.port(), "/img/coffee.jpg?qlt=95", &[ACCEPT_WEBP]);
    assert_eq!(
        high.content_type(),
        Some("image/webp"),
        "{}",
        high.describe()
    );
    let (kind, f) = result(&high);
    assert_eq!(kind, "converted");
    let quality: u8 = f["quality"].parse().unwrap();
    assert!(
        quality <= Qualities::from_qlt(95).get(Format::WebP),
        "{}",
        high.describe()
    );
    assert!(f["score"].parse::<f64>().unwrap() >= THRESHOLD);
    let ceiling = Qualities::from_qlt(95).get(Format::WebP);
    assert!(
        high.header("etag")
            .unwrap_or("")
            .ends_with(&format!("-webp-q{ceiling}-src\"")),
        "{}",
        high.describe()
    );

    let low = get(n.port(), "/img/coffee.jpg?qlt=30", &[ACCEPT_WEBP]);
    assert!(
        low.body == files.coffee,
        "qlt=30: not the original\n{}",
        low.describe()
    );
    assert_eq!(low.content_type(), Some("image/jpeg"));
    let (kind, f) = result(&low);
    assert_eq!(
        (kind.as_str(), f["reason"].as_str()),
        ("original", "guard"),
        "{}",
        low.describe()
    );
    assert!(f["score"].parse::<f64>().unwrap() < THRESHOLD);
    // The original keeps its own ETag.
    let plain = get(n.port(), "/plain/coffee.jpg", &[]);
    assert_eq!(low.header("etag"), plain.header("etag"));
}

/// `smart_imaging_guard 99.9`: no lossy encoding passes. A JPEG: the
/// original is served, `reason=guard` with the best score seen, and an
/// `info` (not `warn`) line in the error log: it is an expected outcome.
/// A PNG: lossless WebP, which is the original's pixels exactly.
#[test]
fn a_threshold_nothing_passes_keeps_the_original() {
    let (n, files) = server("guard-strict");
    let mark = n.error_log_mark();
    let r = get(n.port(), "/strict/coffee.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 200);
    assert!(r.body == files.coffee, "not the original\n{}", r.describe());
    assert_eq!(r.content_type(), Some("image/jpeg"));
    assert!(r.vary_has("accept"));
    let (kind, f) = result(&r);
    assert_eq!(kind, "original", "{}", r.describe());
    assert_eq!(f["reason"], "guard", "{}", r.describe());
    assert_eq!(f["in"], files.coffee.len().to_string());
    let best: f64 = f["score"].parse().unwrap();
    assert!(best < 99.9 && best > 50.0, "best score {best}");
    millis_field(&f["time"]);
    let line = n
        .wait_log_line(mark, &["no encoding passed the visual-quality guard"])
        .expect("a log line for the guard's refusal");
    assert!(line.contains("[info]"), "{line}");
    assert!(
        !n.error_log_since(mark).contains("[warn]"),
        "{}",
        n.error_log_since(mark)
    );

    // From a PNG, lossless WebP always passes: served, pixel for pixel.
    let r = get(n.port(), "/strict/astronaut.png", &[ACCEPT_WEBP]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    assert_eq!(
        &r.body[12..16],
        b"VP8L",
        "not lossless WebP\n{}",
        r.describe()
    );
    assert!(r.body.len() < files.astronaut_png.len());
    let (kind, _) = result(&r);
    assert_eq!(kind, "converted", "{}", r.describe());
    let served = webp::decode(&r.body).unwrap();
    let original = decode(&files.astronaut_png);
    assert!(
        served.pixels == original.pixels,
        "lossless WebP differs from the PNG"
    );
}

fn millis_field(v: &str) -> u64 {
    v.strip_suffix("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("time {v:?}"))
}

/// On a poor network the guard's threshold drops by the quality step (80
/// to 65) with the ceiling (100 to 85): a smaller WebP that scores at
/// least 65 but, on this photo, less than 80.
#[test]
fn a_poor_network_lowers_the_threshold() {
    let (n, _) = server("guard-network");
    let good = get(n.port(), "/net/coffee.jpg", &[ACCEPT_WEBP]);
    let poor = get(
        n.port(),
        "/net/coffee.jpg",
        &[ACCEPT_WEBP, ("Save-Data", "on")],
    );
    for r in [&good, &poor] {
        assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    }
    let (_, g) = result(&good);
    let (_, p) = result(&poor);
    let score = |f: &BTreeMap<String, String>| f["score"].parse::<f64>().unwrap();
    assert!(score(&g) >= 80.0, "{g:?}");
    assert!(score(&p) >= 65.0 && score(&p) < 80.0, "{p:?}");
    assert!(p["quality"].parse::<u8>().unwrap() <= 85, "{p:?}");
    assert!(poor.body.len() < good.body.len());
    assert!(poor.header("etag").unwrap().ends_with("-webp-q85-src\""));
    assert!(good.header("etag").unwrap().ends_with("-webp-q100-src\""));
}

/// A thumbnail: `wid` far below the source. What is served must be the
/// size asked for, never the full-size original.
///
/// (Under ~128 px a side SSIMULACRA 2 computes fewer than its 6 scales and
/// applies the weights of the missing ones to the wrong scales: the
/// 600x400 coffee photo at 100x67 scored 79.9 at WebP q100, and the module
/// served the full-size original. The guard now scores small images as a
/// mirrored mosaic, see guard::MIN_SCORED_SIDE.)
#[test]
fn thumbnails_are_resized_under_the_guard() {
    let (n, files) = server("guard-thumbnail");
    for (path, accept, dims) in [
        ("/img/coffee.jpg?wid=100", ACCEPT_WEBP, (100, 67)),
        ("/img/coffee.jpg?wid=64", ACCEPT_WEBP, (64, 43)),
        ("/img/astronaut.png?wid=64", ACCEPT_WEBP, (64, 64)),
        (
            "/img/coffee.jpg?wid=100",
            ("Accept", "image/jpeg,*/*"),
            (100, 67),
        ),
    ] {
        let r = get(n.port(), path, &[accept]);
        assert!(
            r.body != files.coffee && r.body != files.astronaut_png,
            "{path}: the full-size original\n{}",
            r.describe()
        );
        let img = if is_webp(&r.body) {
            webp::decode(&r.body).unwrap()
        } else {
            decode(&r.body)
        };
        assert_eq!((img.width, img.height), dims, "{path}\n{}", r.describe());
    }
}
