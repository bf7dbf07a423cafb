//! The configuration directives: values nginx must refuse, and the effect
//! of those not covered elsewhere (quality, ttl off, inheritance).

mod common;

use common::*;
use smart_imaging_core::codecs;
use smart_imaging_core::Limits;

fn site(directives: &str) -> String {
    // The defaults, unless `directives` sets them itself.
    let on = if directives.starts_with("smart_imaging ") {
        ""
    } else {
        "smart_imaging on;"
    };
    let pool = if directives.starts_with("smart_imaging_thread_pool ") {
        ""
    } else {
        "smart_imaging_thread_pool smart_imaging;"
    };
    format!(
        r#"
    server {{
        listen 127.0.0.1:{{{{PORT}}}};
        root {{{{HTDOCS}}}};
        location /images/ {{
            {on}
            {pool}
            {directives}
        }}
    }}
"#
    )
}

#[test]
fn invalid_values_are_refused_by_nginx_t() {
    let mut n = Nginx::prepare("dir-invalid");
    // First, the valid forms pass.
    for ok in [
        "smart_imaging_webp_quality 0;",
        "smart_imaging_webp_quality 100;",
        "smart_imaging_ttl off;",
        "smart_imaging_ttl 1h;",
        "smart_imaging_ttl 30d;",
        "smart_imaging_buffer 64m;",
        "smart_imaging_buffer 512k;",
        "smart_imaging_max_pixels 1000;",
        "smart_imaging_work_budget 768;",
        "smart_imaging_work_budget 100 min=0;",
        "smart_imaging_work_budget off;",
        "smart_imaging_max_jobs 1;",
        "smart_imaging off;",
        "smart_imaging_thread_pool smart_imaging;",
    ] {
        n.assert_config_accepted(&Config::with_module(&site(ok)), ok);
    }
    // Then each bad one is refused with nginx's own message for it (as
    // t/004-directives.t checks): the text between "[emerg] " and
    // " in <file>:<line>".
    for (bad, message) in [
        (
            "smart_imaging_webp_quality 101;",
            "value must be between 0 and 100",
        ),
        (
            "smart_imaging_webp_quality -1;",
            r#""smart_imaging_webp_quality" directive invalid number"#,
        ),
        (
            "smart_imaging_webp_quality high;",
            r#""smart_imaging_webp_quality" directive invalid number"#,
        ),
        (
            "smart_imaging_ttl forever;",
            r#""smart_imaging_ttl" directive invalid value"#,
        ),
        (
            "smart_imaging_buffer lots;",
            r#""smart_imaging_buffer" directive invalid value"#,
        ),
        (
            "smart_imaging_max_pixels 0;",
            "value must be equal to or greater than 1",
        ),
        (
            "smart_imaging_max_pixels many;",
            r#""smart_imaging_max_pixels" directive invalid number"#,
        ),
        ("smart_imaging_work_budget 0;", r#"invalid value "0""#),
        (
            "smart_imaging_work_budget 768 floor=1;",
            r#"invalid parameter "floor=1""#,
        ),
        (
            "smart_imaging_work_budget 768 min=1 min=2 3;",
            r#"invalid number of arguments in "smart_imaging_work_budget" directive"#,
        ),
        (
            "smart_imaging_max_jobs 0;",
            "value must be equal to or greater than 1",
        ),
        (
            "smart_imaging maybe;",
            r#"invalid value "maybe" in "smart_imaging" directive, it must be "on" or "off""#,
        ),
        (
            "smart_imaging_variant_only maybe;",
            r#"invalid value "maybe" in "smart_imaging_variant_only" directive, it must be "on" or "off""#,
        ),
        (
            "smart_imaging_webp_quality 80 90;",
            r#"invalid number of arguments in "smart_imaging_webp_quality" directive"#,
        ),
        (
            "smart_imaging_thread_pool no_such_pool;",
            r#"unknown thread pool "no_such_pool""#,
        ),
    ] {
        let line = n.assert_config_refused_exactly(&Config::with_module(&site(bad)), bad, message);
        // ... at the line of the bad directive.
        let (_, file, number) = emerg_message(&line).unwrap();
        let conf = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            conf.lines().nth(number as usize - 1).map(str::trim),
            Some(bad),
            "`{bad}`: nginx names another line:\n{line}"
        );
    }
}

#[test]
fn webp_quality_directive_changes_the_encoding() {
    let mut n = Nginx::prepare("dir-quality");
    let jpeg = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    // The same photo as a PNG: even WebP q100 is smaller than it, so the
    // default quality (100, the highest) shows in the bytes served.
    let orig = codecs::decode(&jpeg, &Limits::default()).unwrap();
    let png = codecs::png::encode(&orig).unwrap();
    for d in ["q20", "q85", "default", "q95", "q100"] {
        n.put_file(&format!("{d}/a.jpg"), &jpeg);
        n.put_file(&format!("{d}/a.png"), &png);
    }
    let http = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        # Without the guard the quality is the one used (with it, a ceiling).
        smart_imaging_guard off;
        location /q20/ { smart_imaging_webp_quality 20; }
        location /q85/ { smart_imaging_webp_quality 85; }
        location /q95/ { smart_imaging_webp_quality 95; }
        location /q100/ { smart_imaging_webp_quality 100; }
        location /default/ { }
    }
"#;
    n.run(&Config::with_module(http));
    let orig = Rgba::from_raw(orig.width, orig.height, &orig.pixels);
    let fetch = |path: &str| {
        let r = get(n.port(), path, &[ACCEPT_WEBP]);
        let (size, psnr) = if r.content_type() == Some("image/webp") {
            let img = codecs::webp::decode(&r.body).unwrap();
            (
                r.body.len(),
                psnr_composited(&orig, &Rgba::from_raw(img.width, img.height, &img.pixels)),
            )
        } else {
            (r.body.len(), f64::INFINITY)
        };
        eprintln!(
            "{path}: {:?} {size} bytes, PSNR {psnr:.2} dB",
            r.content_type()
        );
        (size, psnr, r.body)
    };
    let [q20, q85, q95] = ["q20", "q85", "q95"].map(|d| fetch(&format!("/{d}/a.jpg")));
    assert!(q20.0 < q85.0, "quality 20 not smaller than 85");
    assert!(q20.1 < q85.1, "quality 20 not lower PSNR than 85");
    assert!(
        q95.0 > q85.0 || q95.2 == jpeg,
        "quality 95 not larger than 85"
    );
    // The default is 100: from a PNG, a WebP at q100, larger than at q95.
    let [default, q95, q100] = ["default", "q95", "q100"].map(|d| fetch(&format!("/{d}/a.png")));
    assert!(
        q100.0 < png.len() && is_webp(&q100.2),
        "q100 WebP not smaller than the PNG"
    );
    assert!(q100.0 > q95.0, "quality 100 not larger than 95");
    assert!(default.2 == q100.2, "the default quality is not 100");
    // From the JPEG, q100 is larger than the original: the original is served.
    let default = fetch("/default/a.jpg");
    assert!(
        default.2 == jpeg,
        "the default (q100) WebP of the JPEG was served"
    );
}

#[test]
fn ttl_off_and_inheritance() {
    let mut n = Nginx::prepare("dir-ttl");
    let jpeg = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    n.put_file("a/a.jpg", &jpeg);
    n.put_file("b/a.jpg", &jpeg);
    n.put_file("c/a.jpg", &jpeg);
    let http = r#"
    smart_imaging_ttl 2h;
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        location /a/ { }
        location /b/ { smart_imaging_ttl off; }
        location /c/ { smart_imaging_ttl 90s; }
    }
"#;
    n.run(&Config::with_module(http));
    let cc = |u: &str| {
        get(n.port(), u, &[ACCEPT_WEBP])
            .header_all("cache-control")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cc("/a/a.jpg"),
        vec!["max-age=7200"],
        "ttl inherited from http{{}}"
    );
    assert!(cc("/b/a.jpg").is_empty(), "smart_imaging_ttl off");
    assert_eq!(cc("/c/a.jpg"), vec!["max-age=90"]);
}
