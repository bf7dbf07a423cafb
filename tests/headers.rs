//! Response headers and the responses the module must leave alone.

mod common;

use common::*;

const HTTP: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /images/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            location /images/raw/ {
                smart_imaging off;
            }
            location /images/inherit/ { }
        }
        location /plain/ { alias {{HTDOCS}}/images/; }
        location /ttl/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_ttl 24h;
        }
        location /shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            proxy_pass http://127.0.0.1:{{PORT2}}/;
        }
        location /ttl-shop/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            smart_imaging_ttl 24h;
            proxy_pass http://127.0.0.1:{{PORT2}}/;
        }
        location /texttyped/ {
            smart_imaging on;
            smart_imaging_thread_pool smart_imaging;
            types { }
            default_type text/plain;
        }
        location /static/ { }
    }

    # The origin (no module).
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}}/origin;
        location /hdrs/ {
            add_header Timing-Allow-Origin "*" always;
            add_header X-Robots-Tag "noindex, nofollow" always;
            add_header Cache-Control "public, max-age=600" always;
            add_header Access-Control-Allow-Origin "*" always;
        }
        location /expires/ {
            add_header Expires "Thu, 31 Dec 2037 23:55:55 GMT" always;
        }
        location /gz/ {
            add_header Content-Encoding gzip always;
        }
        location /err/ {
            error_page 404 =503 /bare/a.jpg;
        }
        location /bare/ { }
    }

    # The module switched on at server level.
    server {
        listen 127.0.0.1:{{PORT3}};
        root {{HTDOCS}};
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        location /images/ { }
    }
"#;

fn jpeg() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap()
}

fn server(name: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    let j = jpeg();
    for p in [
        "images/a.jpg",
        "images/raw/a.jpg",
        "images/inherit/a.jpg",
        "ttl/a.jpg",
        "texttyped/a.jpg",
        "origin/hdrs/a.jpg",
        "origin/expires/a.jpg",
        "origin/gz/a.jpg",
        "origin/bare/a.jpg",
    ] {
        n.put_file(p, &j);
    }
    n.put_file("images/gif.jpg", &tiny_gif());
    n.put_file("images/hello.txt", b"hello, not an image\n");
    n.put_file("static/hello.txt", b"hello\n");
    n.run(&Config::with_module(HTTP));
    n
}

fn assert_original(what: &str, r: &Response, body: &[u8], ct: &str) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    assert_eq!(r.content_type(), Some(ct), "{what}\n{}", r.describe());
    assert!(r.body == body, "{what}: body changed\n{}", r.describe());
}

fn assert_webp(what: &str, r: &Response) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    assert_eq!(
        r.content_type(),
        Some("image/webp"),
        "{what}\n{}",
        r.describe()
    );
    assert!(is_webp(&r.body), "{what}: body is not WebP");
}

#[test]
fn upstream_headers_survive_the_proxy() {
    let n = server("hdr-upstream");
    for (what, accept) in [("webp", Some(ACCEPT_WEBP)), ("no Accept", None)] {
        let hs: Vec<(&str, &str)> = accept.into_iter().collect();
        let r = get(n.port(), "/shop/hdrs/a.jpg", &hs);
        if accept.is_some() {
            assert_webp(what, &r);
        } else {
            assert_original(what, &r, &jpeg(), "image/jpeg");
        }
        for (h, v) in [
            ("Timing-Allow-Origin", "*"),
            ("X-Robots-Tag", "noindex, nofollow"),
            ("Cache-Control", "public, max-age=600"),
            ("Access-Control-Allow-Origin", "*"),
        ] {
            assert_eq!(
                r.header_all(h),
                vec![v],
                "{what}: header {h}\n{}",
                r.describe()
            );
        }
        assert!(
            r.vary_has("accept"),
            "{what}: no Vary: Accept\n{}",
            r.describe()
        );
    }
}

#[test]
fn ttl_adds_max_age_only_when_upstream_sent_none() {
    let n = server("hdr-ttl");
    let p = n.port();
    for accept in [vec![ACCEPT_WEBP], vec![]] {
        let label = if accept.is_empty() {
            "original"
        } else {
            "webp"
        };

        // Static file: nothing says how long to cache -> max-age=86400.
        let r = get(p, "/ttl/a.jpg", &accept);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header_all("cache-control"),
            vec!["max-age=86400"],
            "static {label}\n{}",
            r.describe()
        );

        // Upstream without caching headers -> max-age=86400.
        let r = get(p, "/ttl-shop/bare/a.jpg", &accept);
        assert_eq!(
            r.header_all("cache-control"),
            vec!["max-age=86400"],
            "proxied bare {label}\n{}",
            r.describe()
        );

        // Upstream Cache-Control wins, and is not duplicated.
        let r = get(p, "/ttl-shop/hdrs/a.jpg", &accept);
        assert_eq!(
            r.header_all("cache-control"),
            vec!["public, max-age=600"],
            "proxied with Cache-Control {label}\n{}",
            r.describe()
        );

        // Upstream Expires: no Cache-Control added, Expires kept.
        let r = get(p, "/ttl-shop/expires/a.jpg", &accept);
        assert!(
            r.header("cache-control").is_none(),
            "proxied with Expires {label}\n{}",
            r.describe()
        );
        assert_eq!(
            r.header_all("expires"),
            vec!["Thu, 31 Dec 2037 23:55:55 GMT"],
            "{label}\n{}",
            r.describe()
        );

        // smart_imaging_ttl not set: nothing added.
        let r = get(p, "/images/a.jpg", &accept);
        assert!(
            r.header("cache-control").is_none(),
            "no ttl configured {label}\n{}",
            r.describe()
        );
    }
    if get(p, "/ttl/a.jpg", &[ACCEPT_WEBP]).content_type() != Some("image/webp") {
        panic!("precondition: /ttl/a.jpg should convert to WebP");
    }
}

/// HEAD gets the headers of the WebP GET gets, and no body (the whole
/// matrix, static and proxied, HTTP/2, redirects: tests/head.rs).
#[test]
fn head_gets_the_converted_headers() {
    let n = server("hdr-head");
    for url in ["/images/a.jpg", "/shop/bare/a.jpg"] {
        let get = get(n.port(), url, &[ACCEPT_WEBP]);
        assert_webp(url, &get);
        let r = request(n.port(), "HEAD", url, &[ACCEPT_WEBP]).unwrap();
        assert_eq!(r.status, 200, "HEAD {url}\n{}", r.describe());
        assert_eq!(
            r.content_type(),
            Some("image/webp"),
            "HEAD {url}\n{}",
            r.describe()
        );
        assert_eq!(
            r.content_length(),
            Some(get.body.len()),
            "HEAD {url}\n{}",
            r.describe()
        );
        assert_eq!(r.header("etag"), get.header("etag"), "HEAD {url}");
        assert!(r.vary_has("Accept"), "HEAD {url}\n{}", r.describe());
        assert!(r.body.is_empty());
    }
}

#[test]
fn if_none_match_gives_untouched_304() {
    let n = server("hdr-304");
    for url in ["/images/a.jpg", "/shop/bare/a.jpg"] {
        let first = get(n.port(), url, &[]);
        let etag = first
            .header("etag")
            .expect("static files have an ETag")
            .to_string();
        let r = get(n.port(), url, &[("If-None-Match", &etag)]);
        assert_eq!(
            r.status,
            304,
            "{url} If-None-Match: {etag}\n{}",
            r.describe()
        );
        assert_eq!(
            r.header("etag"),
            Some(etag.as_str()),
            "{url}: 304 with another ETag\n{}",
            r.describe()
        );
        assert!(r.body.is_empty());
        assert_ne!(r.content_type(), Some("image/webp"));
    }
}

#[test]
fn range_request_never_mixes_original_bytes_with_webp() {
    let n = server("hdr-range");
    let j = jpeg();
    for url in ["/images/a.jpg", "/shop/bare/a.jpg"] {
        let full = get(n.port(), url, &[ACCEPT_WEBP]);
        assert_webp(&format!("{url} (precondition)"), &full);
        let r = get(n.port(), url, &[ACCEPT_WEBP, ("Range", "bytes=0-99")]);
        eprintln!(
            "{url} Range: bytes=0-99 -> {} {:?} {:?}",
            r.status,
            r.content_type(),
            r.header("content-range")
        );
        match r.status {
            200 => {
                assert_eq!(
                    r.content_type(),
                    Some("image/webp"),
                    "{url} range\n{}",
                    r.describe()
                );
                assert!(is_webp(&r.body));
                assert_eq!(r.content_length(), Some(r.body.len()));
            }
            206 => {
                // Only an upstream produces a 206 here (for a static file
                // the module sees the 200 first and serves the whole WebP):
                // it must be a range of the original, labelled and
                // validated as the original, and vary on Accept.
                assert!(url.starts_with("/shop/"), "{url}: 206\n{}", r.describe());
                assert_eq!(
                    r.content_type(),
                    Some("image/jpeg"),
                    "{url}: a 206 must be labelled as what its bytes are\n{}",
                    r.describe()
                );
                assert_eq!(
                    r.header("content-range"),
                    Some(format!("bytes 0-99/{}", j.len()).as_str()),
                    "{url}: range not of the original\n{}",
                    r.describe()
                );
                assert_eq!(
                    &r.body[..],
                    &j[..100],
                    "{url}: range bytes are not the original's"
                );
                assert!(
                    r.vary_has("accept"),
                    "{url}: 206 without Vary: Accept\n{}",
                    r.describe()
                );
                assert!(
                    !r.header("etag").unwrap_or("").ends_with("-webp\""),
                    "{url}: 206 of the original with the WebP's validator"
                );
            }
            s => panic!("{url}: unexpected status {s}\n{}", r.describe()),
        }
    }
}

#[test]
fn non_image_types_are_untouched_and_have_no_vary() {
    let n = server("hdr-text");
    let r = get(n.port(), "/images/hello.txt", &[ACCEPT_WEBP]);
    assert_original("text/plain", &r, b"hello, not an image\n", "text/plain");
    assert!(
        !r.vary_has("accept"),
        "text/plain got Vary: Accept\n{}",
        r.describe()
    );

    // A JPEG served as text/plain is not an image candidate.
    let r = get(n.port(), "/texttyped/a.jpg", &[ACCEPT_WEBP]);
    assert_original("JPEG as text/plain", &r, &jpeg(), "text/plain");
    assert!(
        !r.vary_has("accept"),
        "JPEG as text/plain got Vary: Accept\n{}",
        r.describe()
    );

    // 404 passes through.
    let r = get(n.port(), "/images/missing.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type(), Some("text/html"));
}

#[test]
fn smart_imaging_off_in_nested_location_and_inheritance() {
    let n = server("hdr-nested");
    let j = jpeg();
    let r = get(n.port(), "/images/raw/a.jpg", &[ACCEPT_WEBP]);
    assert_original("nested `smart_imaging off`", &r, &j, "image/jpeg");
    assert!(
        !r.vary_has("accept"),
        "module off but Vary: Accept\n{}",
        r.describe()
    );

    let r = get(n.port(), "/images/inherit/a.jpg", &[ACCEPT_WEBP]);
    assert_webp("nested location inheriting `on`", &r);

    let r = get(n.ports[2], "/images/a.jpg", &[ACCEPT_WEBP]);
    assert_webp("`on` at server level", &r);
}

#[test]
fn body_that_is_not_jpeg_served_as_image_jpeg() {
    let n = server("hdr-gif");
    let workers = n.worker_pids();
    let r = get(n.port(), "/images/gif.jpg", &[ACCEPT_WEBP]);
    assert_original("GIF named .jpg", &r, &tiny_gif(), "image/jpeg");
    n.assert_workers_survived(&workers);
}

#[test]
fn non_200_and_content_encoding_pass_through() {
    let n = server("hdr-non200");
    let j = jpeg();
    // The origin answers 503 with a JPEG body.
    let r = get(n.port(), "/shop/err/missing.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(r.content_type(), Some("image/jpeg"));
    assert!(r.body == j, "503 body changed");

    // Content-Encoding set by the origin: not touched.
    let r = get(n.port(), "/shop/gz/a.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{}",
        r.describe()
    );
    assert_eq!(r.content_type(), Some("image/jpeg"), "{}", r.describe());
    assert!(r.body == j, "Content-Encoding response changed");
}

/// Revalidating a cached WebP with its own ETag: either 304 (carrying that
/// ETag) or a full 200 WebP; never the JPEG, never a 304 that would confirm
/// another representation.
#[test]
fn if_none_match_with_the_webp_etag() {
    let n = server("hdr-304-webp");
    for url in ["/images/a.jpg", "/shop/bare/a.jpg"] {
        let full = get(n.port(), url, &[ACCEPT_WEBP]);
        assert_webp(url, &full);
        let wtag = full
            .header("etag")
            .expect("converted response has an ETag")
            .to_string();
        let r = get(n.port(), url, &[ACCEPT_WEBP, ("If-None-Match", &wtag)]);
        eprintln!(
            "{url} If-None-Match: {wtag} -> {} {:?}",
            r.status,
            r.header("etag")
        );
        match r.status {
            304 => assert_eq!(
                r.header("etag"),
                Some(wtag.as_str()),
                "{url}\n{}",
                r.describe()
            ),
            200 => {
                assert_webp(url, &r);
                assert!(r.body == full.body);
            }
            s => panic!("{url}: status {s}\n{}", r.describe()),
        }
        // The JPEG's ETag from a client that now accepts WebP: a 304 for
        // the JPEG it has, or the WebP.
        let plain = get(n.port(), url, &[]);
        let jtag = plain.header("etag").unwrap().to_string();
        let r = get(n.port(), url, &[ACCEPT_WEBP, ("If-None-Match", &jtag)]);
        eprintln!(
            "{url} Accept webp, If-None-Match: {jtag} -> {} {:?}",
            r.status,
            r.header("etag")
        );
        match r.status {
            304 => assert_eq!(r.header("etag"), Some(jtag.as_str())),
            200 => assert_webp(url, &r),
            s => panic!("{url}: status {s}\n{}", r.describe()),
        }
    }
}
