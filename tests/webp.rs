//! WebP conversion of real images through nginx: every sample and corpus
//! image, served as a static file and through `proxy_pass`, over HTTP/1.1,
//! and a subset over HTTP/2 (cleartext and TLS).
//!
//! Run with `cargo test --test webp -- --nocapture` to see the summary table.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use smart_imaging_core::codecs;
use smart_imaging_core::guard;
use smart_imaging_core::{Format, KeepReason, Limits, Outcome, Plan};

/// Minimum PSNR (dB) of a served WebP against the decoded original.
///
/// (Measured when the module encoded at a fixed quality 85; with the
/// visual-quality guard, the default, each image gets the lowest quality
/// whose SSIMULACRA 2 score is at least 80, which [`check_webp_response`]
/// checks too.) Measured on the 64
/// corpus images and the samples (HTTP/1.1, static and proxied alike): the
/// corpus JPEGs (themselves q85 photos) re-encoded as WebP q85 give 37.8 to
/// 47.4 dB (lowest: lom_life.jpg 37.8, kde_safelanding.jpg 38.0); PNG
/// graphics go down to 35.1 dB (dolphin_grouping.png, a screenshot with
/// small text) and PNGs with alpha are 40.9 dB or more (some are lossless).
/// Mean 45.8 dB. 30 dB leaves ~5 dB of margin below the worst case and is
/// where artefacts become plainly visible on photos, so falling below it
/// means the module sent something other than a faithful re-encoding
/// (wrong channel order, lost alpha, wrong orientation, a much lower
/// quality setting).
const MIN_PSNR_DB: f64 = 30.0;

/// The guard's default threshold: every served WebP scores at least this
/// (SSIMULACRA 2 against the decoded original), scored as the module
/// scores it: whole up to [`guard::DEFAULT_MAX_PIXELS`], on a sample of
/// full-resolution tiles above (the whole image's score, which can be a
/// few points lower, is in the table).
const GUARD: f64 = 80.0;

struct Case {
    /// Path below `/images/` (and `/shop/`, `/plain/`).
    rel: String,
    bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for p in list_images(&samples_dir()) {
        v.push(case("samples", &p));
    }
    if let Some(c) = corpus_dir() {
        for p in list_images(&c) {
            v.push(case("corpus", &p));
        }
    }
    assert!(!v.is_empty(), "no images found");
    v.extend(generated_cases());
    v
}

/// Generated images, some of which WebP cannot make smaller (so the
/// "original served" path is exercised too). (No full-colour random noise:
/// lossy WebP of noise is ~12 dB by nature, which says nothing about the
/// module.) Served from htdocs/images/generated/.
fn generated_cases() -> Vec<Case> {
    let mut rng = Rng::new(42);
    // 1-bit random noise: incompressible, PNG packs 8 pixels a byte.
    let (w, h) = (256u32, 256u32);
    let mut raw = Vec::new();
    for _ in 0..h {
        raw.push(0);
        raw.extend(rng.bytes(w as usize / 8));
    }
    let noise1 = png_raw(w, h, 1, 0, &zlib_stored(&raw));
    let one = png_rgb(1, 1, &[200, 30, 30]);
    vec![
        Case {
            rel: "generated/noise_1bit.png".into(),
            bytes: noise1,
        },
        Case {
            rel: "generated/one_pixel.png".into(),
            bytes: one,
        },
        Case {
            rel: "generated/photo.png".into(),
            bytes: synthetic_photo_png(320, 200, 9),
        },
    ]
}

fn case(dir: &str, p: &Path) -> Case {
    Case {
        rel: format!("{dir}/{}", p.file_name().unwrap().to_str().unwrap()),
        bytes: std::fs::read(p).unwrap(),
    }
}

/// nginx serving samples/ and the corpus under /images/ (and the rest of
/// [`standard_http`]).
fn image_server(name: &str, extra: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.link("images/samples", &samples_dir().canonicalize().unwrap());
    if let Some(c) = corpus_dir() {
        n.link("images/corpus", &c.canonicalize().unwrap());
    }
    for c in generated_cases() {
        n.put_file(&format!("images/{}", c.rel), &c.bytes);
    }
    n.put_file("static/hello.txt", b"hello\n");
    n.run(&Config::with_module(&standard_http(extra)));
    n
}

fn original_mime(bytes: &[u8]) -> &'static str {
    if is_jpeg(bytes) {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// Expected decoded size: the header's, swapped for EXIF orientations 5-8.
fn expected_dims(bytes: &[u8]) -> (u32, u32) {
    let (w, h) = header_dims(bytes).expect("header dimensions");
    if (5..=8).contains(&exif_orientation(bytes)) {
        (h, w)
    } else {
        (w, h)
    }
}

#[derive(Default, Clone)]
struct Row {
    rel: String,
    orig: usize,
    served: usize,
    webp: bool,
    psnr: Option<f64>,
    /// SSIMULACRA 2 against the original.
    score: Option<f64>,
    note: String,
}

/// Checks a response to a request with a WebP-listing Accept header: either
/// a faithful, smaller WebP, or the original unchanged. `orig_etag` is the
/// ETag nginx sends without the module.
fn check_webp_response(what: &str, c: &Case, r: &Response, orig_etag: Option<&str>) -> Row {
    let mut row = Row {
        rel: c.rel.clone(),
        orig: c.bytes.len(),
        served: r.body.len(),
        ..Row::default()
    };
    assert_eq!(r.status, 200, "{what}: status\n{}", r.describe());
    assert!(
        r.vary_has("accept"),
        "{what}: no `Vary: Accept`\n{}",
        r.describe()
    );
    // An original from a chunked upstream is passed on as it came, without
    // Content-Length; anything else has one, and it matches.
    if r.content_length().is_some() || is_webp(&r.body) || r.header("transfer-encoding").is_none() {
        assert_eq!(
            r.content_length(),
            Some(r.body.len()),
            "{what}: Content-Length does not match the body\n{}",
            r.describe()
        );
    }
    match r.content_type() {
        Some("image/webp") => {
            row.webp = true;
            assert!(
                is_webp(&r.body),
                "{what}: image/webp but the body is not WebP\n{}",
                r.describe()
            );
            assert!(
                r.body.len() < c.bytes.len(),
                "{what}: WebP ({}) not smaller than the original ({})",
                r.body.len(),
                c.bytes.len()
            );
            assert!(
                r.header("accept-ranges").is_none(),
                "{what}: Accept-Ranges on a converted body\n{}",
                r.describe()
            );
            // A converted body gets an ETag of its own (weak, derived from
            // the original's); without an original ETag there may be none.
            let etag = r.header("etag");
            if orig_etag.is_some() {
                assert!(
                    etag.is_some(),
                    "{what}: converted response has no ETag\n{}",
                    r.describe()
                );
            }
            if let Some(etag) = etag {
                assert_ne!(
                    Some(etag),
                    orig_etag,
                    "{what}: converted response kept the original's ETag"
                );
                assert!(
                    etag.starts_with("W/"),
                    "{what}: ETag of a converted body should be weak: {etag:?}"
                );
            }

            let served = codecs::webp::decode(&r.body)
                .unwrap_or_else(|e| panic!("{what}: served WebP does not decode: {e}"));
            let orig = codecs::decode(&c.bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("{what}: the original does not decode: {e}"));
            let want = expected_dims(&c.bytes);
            assert_eq!(
                (orig.width, orig.height),
                want,
                "{what}: core decoded a different size"
            );
            assert_eq!(
                (served.width, served.height),
                want,
                "{what}: WebP size differs from the original's"
            );
            let a = Rgba::from_raw(orig.width, orig.height, &orig.pixels);
            let b = Rgba::from_raw(served.width, served.height, &served.pixels);
            if a.has_transparency() {
                assert!(
                    served.has_alpha,
                    "{what}: the original has transparency, the WebP has no alpha"
                );
                assert!(
                    b.has_transparency(),
                    "{what}: the WebP lost the original's transparency"
                );
            } else {
                assert!(
                    !b.has_transparency(),
                    "{what}: the WebP has transparency the original has not"
                );
            }
            let psnr = psnr_composited(&a, &b);
            row.psnr = Some(psnr);
            assert!(
                psnr >= MIN_PSNR_DB,
                "{what}: PSNR {psnr:.2} dB < {MIN_PSNR_DB} dB"
            );
            // The visual-quality guard let it through: it looks the same.
            let score = guard::Reference::sampled(&orig, guard::DEFAULT_MAX_PIXELS)
                .and_then(|reference| reference.score(&served))
                .unwrap_or_else(|e| panic!("{what}: cannot score the WebP: {e}"));
            row.score = Some(score);
            assert!(
                score >= GUARD,
                "{what}: SSIMULACRA 2 {score:.2} < {GUARD} against the original"
            );
            if u64::from(orig.width) * u64::from(orig.height) > guard::DEFAULT_MAX_PIXELS {
                let whole = guard::score(&orig, &served).unwrap();
                row.note = format!("whole image: {whole:.1}");
            }
        }
        ct => {
            assert_eq!(
                ct,
                Some(original_mime(&c.bytes)),
                "{what}: unexpected Content-Type\n{}",
                r.describe()
            );
            assert!(
                r.body == c.bytes,
                "{what}: not WebP, and not the original bytes either\n{}",
                r.describe()
            );
            assert_eq!(
                r.header("etag"),
                orig_etag,
                "{what}: original served with a changed ETag"
            );
            // The module kept the original: the core, with the module's
            // defaults (the guard on), must agree there was no gain (or a
            // reason to keep it).
            let plan = Plan::new(vec![Format::WebP]);
            match smart_imaging_core::transcode(&c.bytes, &plan, &Limits::default()) {
                Outcome::Original(reason) => {
                    row.note = format!("kept: {reason}");
                    if !matches!(
                        reason,
                        KeepReason::NotSmaller { .. } | KeepReason::NotComparable { .. }
                    ) {
                        eprintln!("note: {what}: core keeps the original because: {reason}");
                    }
                }
                Outcome::Converted(conv) => panic!(
                    "{what}: the module served the original, but core converts it to {} bytes of {} (original {} bytes)",
                    conv.bytes.len(),
                    conv.format.name(),
                    c.bytes.len()
                ),
            }
        }
    }
    row
}

/// (a), (b) and (c) of every image below `prefix` (`/images/` or `/shop/`);
/// `plain_prefix` is the same content without the module.
fn run_all(name: &str, prefix: &str, plain_prefix: &str) {
    let n = image_server(name, "");
    let workers = n.worker_pids();
    let port = n.port();
    let mut rows = Vec::new();
    for c in cases() {
        let url = format!("{prefix}{}", c.rel);
        let plain_url = format!("{plain_prefix}{}", c.rel);

        // Without the module: the reference response.
        let plain = get(port, &plain_url, &[ACCEPT_WEBP]);
        assert_eq!(plain.status, 200, "{plain_url}\n{}", plain.describe());
        assert!(
            plain.body == c.bytes,
            "{plain_url}: plain nginx changed the body?"
        );
        let orig_etag = plain.header("etag").map(str::to_string);

        // (a) WebP accepted.
        let r = get(port, &url, &[ACCEPT_WEBP]);
        rows.push(check_webp_response(
            &format!("GET {url} (Accept: image/webp)"),
            &c,
            &r,
            orig_etag.as_deref(),
        ));

        // (b) No Accept header: the original, but still `Vary: Accept`.
        let r = get(port, &url, &[]);
        assert_eq!(r.status, 200, "GET {url} without Accept\n{}", r.describe());
        assert!(
            r.body == c.bytes,
            "GET {url} without Accept: body differs from the file\n{}",
            r.describe()
        );
        assert_eq!(r.content_type(), Some(original_mime(&c.bytes)));
        assert_eq!(
            r.header("etag"),
            orig_etag.as_deref(),
            "GET {url} without Accept: ETag changed"
        );
        assert!(
            r.vary_has("accept"),
            "GET {url} without Accept: no `Vary: Accept`\n{}",
            r.describe()
        );

        // (c) ?bfc=off: exactly what nginx sends without the module.
        let off = get(port, &format!("{url}?bfc=off"), &[ACCEPT_WEBP]);
        let reference = get(port, &format!("{plain_url}?bfc=off"), &[ACCEPT_WEBP]);
        assert_eq!(off.status, reference.status, "{url}?bfc=off: status");
        assert_eq!(
            off.headers_without(&["date"]),
            reference.headers_without(&["date"]),
            "{url}?bfc=off: headers differ from plain nginx's"
        );
        assert!(
            off.body == reference.body,
            "{url}?bfc=off: body differs from plain nginx's"
        );
        assert!(!off.vary_has("accept"), "{url}?bfc=off: has `Vary: Accept`");
    }
    n.assert_workers_survived(&workers);
    print_table(
        &format!("{name}: {prefix} (HTTP/1.1, Accept: image/webp)"),
        &rows,
    );
}

fn print_table(title: &str, rows: &[Row]) {
    eprintln!("\n== {title}");
    eprintln!(
        "{:<44} {:>9} {:>9} {:>6} {:>8} {:>6}",
        "file", "orig B", "served B", "saved", "PSNR dB", "score"
    );
    for r in rows {
        let saved = 100.0 * (1.0 - r.served as f64 / r.orig as f64);
        eprintln!(
            "{:<44} {:>9} {:>9} {:>5.1}% {:>8} {:>6}  {}",
            r.rel,
            r.orig,
            r.served,
            saved,
            r.psnr
                .map(|p| format!("{p:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.score
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into()),
            if r.webp {
                format!("webp {}", r.note)
            } else {
                r.note.clone()
            }
        );
    }
    let orig: usize = rows.iter().map(|r| r.orig).sum();
    let served: usize = rows.iter().map(|r| r.served).sum();
    let webp = rows.iter().filter(|r| r.webp).count();
    let psnrs: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.psnr)
        .filter(|p| p.is_finite())
        .collect();
    let min = psnrs.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean = psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64;
    eprintln!(
        "TOTAL {} images: {} as WebP, {} original; {} -> {} bytes ({:.1}% saved); PSNR min {:.2} dB, mean {:.2} dB\n",
        rows.len(),
        webp,
        rows.len() - webp,
        orig,
        served,
        100.0 * (1.0 - served as f64 / orig as f64),
        min,
        mean
    );
}

#[test]
fn static_images_http1() {
    run_all("webp-static", "/images/", "/plain/");
}

#[test]
fn proxied_images_http1() {
    run_all("webp-proxied", "/shop/", "/plainshop/");
}

/// Browsers' Accept headers and a few that must not give WebP.
#[test]
fn accept_negotiation() {
    let n = image_server("webp-accept", "");
    let port = n.port();
    let url = "/images/samples/sk_astronaut.jpg";
    let ct = |accept: Option<&str>| {
        let r = match accept {
            Some(a) => get(port, url, &[("Accept", a)]),
            None => get(port, url, &[]),
        };
        assert_eq!(r.status, 200);
        assert!(
            r.vary_has("accept"),
            "Accept {accept:?}: no Vary\n{}",
            r.describe()
        );
        r.content_type().unwrap_or("").to_string()
    };
    for a in [
        "image/webp,*/*",
        "image/webp",
        "image/avif;q=0,image/webp,*/*",
        "image/webp;q=0.5, image/jpeg",
        "text/html, image/webp;q=1",
    ] {
        assert_eq!(ct(Some(a)), "image/webp", "Accept: {a}");
    }
    // Chrome's Accept lists AVIF first: AVIF (smaller than the original).
    assert_eq!(
        ct(Some(
            "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
        )),
        "image/avif"
    );
    for a in [
        None,
        Some("*/*"),
        Some("image/*"),
        Some("image/jpeg"),
        Some("image/webp;q=0, */*"),
        Some("image/webpx"),
    ] {
        assert_eq!(ct(a), "image/jpeg", "Accept: {a:?}");
    }
}

/// A JPEG with EXIF orientation 6 (rotate 90° clockwise) is served as a
/// WebP of the rotated size: WebP viewers do not apply EXIF orientation.
#[test]
fn exif_orientation_is_applied() {
    let mut n = Nginx::prepare("webp-exif");
    let src = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    let rotated = with_exif_orientation(&src, 6);
    n.put_file("images/rot6.jpg", &rotated);
    n.run(&Config::with_module(&standard_http("")));
    let plain = get(n.port(), "/plain/rot6.jpg", &[]);
    let c = Case {
        rel: "rot6.jpg".into(),
        bytes: rotated,
    };
    assert_eq!(expected_dims(&c.bytes), (400, 600));
    for url in ["/images/rot6.jpg", "/shop/rot6.jpg"] {
        let r = get(n.port(), url, &[ACCEPT_WEBP]);
        assert_eq!(
            r.content_type(),
            Some("image/webp"),
            "{url}\n{}",
            r.describe()
        );
        let row = check_webp_response(url, &c, &r, plain.header("etag"));
        eprintln!(
            "{url}: {} -> {} bytes, PSNR {:.2} dB",
            row.orig,
            row.served,
            row.psnr.unwrap()
        );
    }
}

/// Serves samples/ (and the corpus) over h2c and over TLS with HTTP/2.
/// `server_extra`: directives for both HTTP/2 servers.
fn h2_server(name: &str, server_extra: &str) -> (Nginx, PathBuf) {
    let mut n = Nginx::prepare(name);
    n.link("images/samples", &samples_dir().canonicalize().unwrap());
    if let Some(c) = corpus_dir() {
        n.link("images/corpus", &c.canonicalize().unwrap());
    }
    let (cert, key) = make_cert(&n.prefix);
    let locations = r#"
        root {{HTDOCS}};
        {{SERVER_EXTRA}}
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
        }
        location /plain/ { alias {{HTDOCS}}/images/; }
        location /shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            proxy_pass http://127.0.0.1:{{PORT2}}/images/;
        }
"#
    .replace("{{SERVER_EXTRA}}", server_extra);
    let http = format!(
        r#"
    server {{
        listen 127.0.0.1:{{{{PORT}}}};
        http2 on;
        {locations}
    }}
    server {{
        listen 127.0.0.1:{{{{PORT3}}}} ssl;
        http2 on;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{{{{PORT2}}}};
        root {{{{HTDOCS}}}};
    }}
"#,
        cert = cert.display(),
        key = key.display()
    );
    n.run(&Config::with_module(&http));
    let tmp = n.prefix.join("curl");
    std::fs::create_dir_all(&tmp).unwrap();
    (n, tmp)
}

fn run_h2(name: &str, tls: bool) {
    let (n, tmp) = h2_server(name, "");
    let workers = n.worker_pids();
    let resolve = format!("localhost:{}:127.0.0.1", n.ports[2]);
    let (base, args): (String, Vec<&str>) = if tls {
        (
            format!("https://localhost:{}", n.ports[2]),
            vec!["-k", "--http2", "--resolve", &resolve],
        )
    } else {
        (
            format!("http://127.0.0.1:{}", n.port()),
            vec!["--http2-prior-knowledge"],
        )
    };
    // The samples, plus a few corpus images of each kind.
    let mut list: Vec<Case> = list_images(&samples_dir())
        .iter()
        .map(|p| case("samples", p))
        .collect();
    if let Some(c) = corpus_dir() {
        for f in [
            "k4_volna.jpg",
            "lom_life.jpg",
            "deb_emerald_glow.png",
            "mate_gulp_alpha.png",
            "kde_kay.png",
        ] {
            let p = c.join(f);
            if p.is_file() {
                list.push(case("corpus", &p));
            }
        }
    }
    let mut rows = Vec::new();
    for c in &list {
        let (_, plain) = curl_get(&format!("{base}/plain/{}", c.rel), &args, &[], &tmp);
        assert!(plain.body == c.bytes);
        for prefix in ["/images/", "/shop/"] {
            let url = format!("{base}{prefix}{}", c.rel);
            let (proto, r) = curl_get(&url, &args, &[ACCEPT_WEBP], &tmp);
            assert_eq!(proto, "HTTP/2", "{url}: not HTTP/2");
            rows.push(check_webp_response(
                &format!("{proto} {url}"),
                c,
                &r,
                plain.header("etag"),
            ));
            let (_, r) = curl_get(&url, &args, &[], &tmp);
            assert!(r.body == c.bytes, "{url} without Accept: not the original");
            assert!(r.vary_has("accept"), "{url} without Accept: no Vary");
        }
    }
    n.assert_workers_survived(&workers);
    print_table(
        &format!(
            "{name}: HTTP/2 {}",
            if tls { "over TLS" } else { "cleartext (h2c)" }
        ),
        &rows,
    );
}

#[test]
fn http2_cleartext() {
    run_h2("webp-h2c", false);
}

#[test]
fn http2_tls() {
    run_h2("webp-h2-tls", true);
}

/// The body reaches the filter in different shapes: file buffers (sendfile),
/// buffers read by thread-pool aio, small output buffers, proxied bodies
/// streamed unbuffered, in many 1k buffers, through proxy_cache (written
/// to a cache file on a MISS, read from it on a HIT), or chunked by the
/// origin. Each must give the same result as the plain static case.
#[test]
fn body_arrival_variants() {
    let mut n = Nginx::prepare("webp-variants");
    n.link("images/samples", &samples_dir().canonicalize().unwrap());
    let mut files: Vec<Case> = [
        "sk_astronaut.jpg",
        "sk_horse_alpha.png",
        "dolphin_default_ui.png",
    ]
    .iter()
    .map(|f| case("samples", &samples_dir().join(f)))
    .collect();
    if let Some(c) = corpus_dir() {
        n.link("images/corpus", &c.canonicalize().unwrap());
        for f in ["k4_volna.jpg", "mate_gulp_alpha.png"] {
            if c.join(f).is_file() {
                files.push(case("corpus", &c.join(f)));
            }
        }
    }
    let on = "smart_imaging on; smart_imaging_thread_pool smart_imaging;";
    let http = format!(
        r#"
    proxy_cache_path {{{{PREFIX}}}}/cache keys_zone=c:1m;
    server {{
        listen 127.0.0.1:{{{{PORT}}}};
        location /plain/ {{ alias {{{{HTDOCS}}}}/images/; }}
        location /static/ {{ {on} alias {{{{HTDOCS}}}}/images/; }}
        location /sendfile/ {{ {on} alias {{{{HTDOCS}}}}/images/; sendfile on; }}
        location /aio/ {{ {on} alias {{{{HTDOCS}}}}/images/; aio threads=smart_imaging; }}
        location /smallout/ {{ {on} alias {{{{HTDOCS}}}}/images/; output_buffers 1 4k; }}
        location /unbuffered/ {{ {on} proxy_pass http://127.0.0.1:{{{{PORT2}}}}/images/; proxy_buffering off; proxy_buffer_size 4k; }}
        location /smallbuf/ {{
            {on}
            proxy_pass http://127.0.0.1:{{{{PORT2}}}}/images/;
            proxy_buffer_size 1k;
            proxy_buffers 2 1k;
            proxy_busy_buffers_size 1k;
        }}
        location /cache/ {{
            {on}
            proxy_pass http://127.0.0.1:{{{{PORT2}}}}/images/;
            proxy_cache c;
            proxy_cache_valid 200 10m;
            add_header X-Cache $upstream_cache_status always;
        }}
        location /chunked/ {{
            {on}
            proxy_pass http://127.0.0.1:{{{{PORT2}}}}/ssi/;
            proxy_http_version 1.1;
        }}
    }}
    server {{
        listen 127.0.0.1:{{{{PORT2}}}};
        root {{{{HTDOCS}}}};
        sendfile on;
        # SSI drops Content-Length: the body is sent chunked.
        location /ssi/ {{ alias {{{{HTDOCS}}}}/images/; ssi on; ssi_types image/jpeg image/png; }}
    }}
"#
    );
    n.run(&Config::with_module(&http));
    let workers = n.worker_pids();
    let mut rows = Vec::new();
    for c in &files {
        let plain = get(n.port(), &format!("/plain/{}", c.rel), &[]);
        let reference = get(n.port(), &format!("/static/{}", c.rel), &[ACCEPT_WEBP]);
        for v in [
            "static",
            "sendfile",
            "aio",
            "smallout",
            "unbuffered",
            "smallbuf",
            "cache",
            "cache",
            "chunked",
        ] {
            let url = format!("/{v}/{}", c.rel);
            let r = get(n.port(), &url, &[ACCEPT_WEBP]);
            let v = match (v, r.header("x-cache")) {
                ("cache", Some(status)) => format!("cache-{}", status.to_ascii_lowercase()),
                _ => v.to_string(),
            };
            if v == "chunked" {
                // Check the origin really sent it chunked.
                let origin = get(n.ports[1], &format!("/ssi/{}", c.rel), &[]);
                assert!(
                    origin.header("content-length").is_none(),
                    "origin sent Content-Length"
                );
                assert!(origin.body == c.bytes);
            }
            // Proxied ETags: SSI drops the ETag, so compare with what this
            // variant's origin response had.
            let orig_etag = if v == "chunked" {
                None
            } else {
                plain.header("etag")
            };
            let mut row = check_webp_response(&format!("GET {url}"), c, &r, orig_etag);
            assert_eq!(
                r.content_type(),
                reference.content_type(),
                "{url}: result differs from the plain static case"
            );
            if r.content_type() == Some("image/webp") {
                assert!(
                    r.body == reference.body,
                    "{url}: WebP differs from the static case's"
                );
            }
            row.rel = format!("{v}/{}", c.rel);
            rows.push(row);
        }
        // The cache holds the origin's bytes, not a WebP.
        let r = get(n.port(), &format!("/cache/{}", c.rel), &[]);
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert!(
            r.body == c.bytes,
            "/cache/{}: cached copy is not the original",
            c.rel
        );
    }
    n.assert_workers_survived(&workers);
    for status in ["cache-miss", "cache-hit"] {
        assert!(
            rows.iter().any(|r| r.rel.starts_with(status)),
            "no {status} among the /cache/ requests: the cache variants were not tested"
        );
    }
    print_table("body arrival variants", &rows);
}

/// Many conversions multiplexed on one HTTP/2 connection (curl --parallel):
/// every stream gets the same bytes as over HTTP/1.1.
#[test]
fn http2_multiplexed_streams() {
    // Room for all streams at once (the default smart_imaging_max_jobs is
    // lower: streams beyond it would get the original), and time: dozens of
    // guarded conversions queue on two threads, past the default 10 s
    // smart_imaging_timeout on a loaded machine (then the original is
    // served, correctly, but this test compares conversions).
    let (n, tmp) = h2_server(
        "webp-h2-mux",
        "smart_imaging_max_jobs 64; smart_imaging_timeout 300s; send_timeout 300s;",
    );
    let workers = n.worker_pids();
    let mut list: Vec<Case> = list_images(&samples_dir())
        .iter()
        .map(|p| case("samples", p))
        .collect();
    if let Some(c) = corpus_dir() {
        for f in ["k4_volna.jpg", "mate_gulp_alpha.png", "lom_life.jpg"] {
            if c.join(f).is_file() {
                list.push(case("corpus", &c.join(f)));
            }
        }
    }
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "300",
        "--http2-prior-knowledge",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "50",
        "-H",
        "Accept: image/webp,*/*",
    ]);
    let mut expected = Vec::new();
    for (i, c) in list.iter().enumerate() {
        for prefix in ["/images/", "/shop/"] {
            let out = tmp.join(format!("mux-{i}-{}", prefix.trim_matches('/')));
            cmd.arg("-o")
                .arg(&out)
                .arg(format!("http://127.0.0.1:{}{prefix}{}", n.port(), c.rel));
            expected.push((out, format!("{prefix}{}", c.rel), i));
        }
    }
    let out = cmd.output().expect("curl");
    assert!(
        out.status.success(),
        "curl --parallel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, url, i) in expected {
        let got = std::fs::read(&file).unwrap();
        // The reference: the same request alone over HTTP/1.1.
        let reference = get(n.port(), &url, &[ACCEPT_WEBP]);
        assert!(
            got == reference.body,
            "{url}: HTTP/2 multiplexed body ({} bytes) differs from HTTP/1.1's ({} bytes)",
            got.len(),
            reference.body.len()
        );
        assert!(is_webp(&got) || got == list[i].bytes, "{url}");
    }
    n.assert_workers_survived(&workers);
}
