//! Checks of the test harness itself against nginx *without* the module:
//! if these fail, the other integration tests' failures say nothing about
//! the module.

mod common;

use common::*;

#[test]
fn plain_nginx_serves_static_and_proxied_files() {
    let mut n = Nginx::prepare("harness-plain");
    let jpeg = std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap();
    n.put_file("images/a.jpg", &jpeg);
    n.put_file("static/hello.txt", b"hello\n");
    n.put_file("ssi/x.html", b"a<!--# echo var=\"nope\" default=\"B\" -->c");
    // standard_http() uses smart_imaging directives, which this nginx
    // (no module loaded) would refuse: a site of its own.
    let http = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        location /shop/ { proxy_pass http://127.0.0.1:{{PORT2}}/images/; }
        location /ssi/ { ssi on; }
    }
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
        http2 on;
    }
"#;
    n.run(&Config::plain(http));
    let workers = n.worker_pids();
    assert_eq!(workers.len(), 1, "one worker expected: {workers:?}");

    let r = get(n.port(), "/images/a.jpg", &[ACCEPT_WEBP]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, jpeg);
    assert_eq!(r.content_type(), Some("image/jpeg"));
    assert!(r.header("etag").is_some());
    assert!(!r.vary_has("accept"));

    let p = get(n.port(), "/shop/a.jpg", &[]);
    assert_eq!(p.status, 200, "{}", p.describe());
    assert_eq!(p.body, jpeg);
    assert_eq!(p.header("etag"), r.header("etag"));

    let h = request(n.port(), "HEAD", "/static/hello.txt", &[]).unwrap();
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.content_length(), Some(6));

    let missing = get(n.port(), "/static/nope.txt", &[]);
    assert_eq!(missing.status, 404);

    // A real chunked response (SSI removes Content-Length), read with
    // Connection: close and then twice on one keep-alive connection.
    let c = get(n.port(), "/ssi/x.html", &[]);
    assert_eq!(
        c.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        c.describe()
    );
    assert_eq!(c.body, b"aBc");
    let mut ka = KeepAlive::connect(n.port());
    ka.send("/ssi/x.html", &[]);
    ka.send("/images/a.jpg", &[]);
    ka.send("/static/hello.txt", &[]);
    assert_eq!(ka.recv().unwrap().body, b"aBc");
    assert_eq!(ka.recv().unwrap().body, jpeg);
    assert_eq!(ka.recv().unwrap().body, b"hello\n");

    // The chunked decoder and multi-valued headers, on a canned response
    // (nginx only sends chunked when the length is unknown).
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: Accept-Encoding\r\nVary: Accept\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
    let pr = parse_response(raw, false).unwrap();
    assert_eq!(pr.body, b"hello world");
    assert!(pr.vary_has("accept"));
    assert_eq!(pr.header_all("vary").len(), 2);

    // HTTP/2 cleartext through curl.
    let (proto, c) = curl_get(
        &format!("http://127.0.0.1:{}/images/a.jpg", n.ports[1]),
        &["--http2-prior-knowledge"],
        &[ACCEPT_WEBP],
        &n.prefix,
    );
    assert_eq!(proto, "HTTP/2");
    assert_eq!(c.status, 200);
    assert_eq!(c.body, jpeg);

    n.assert_workers_survived(&workers);
}

#[test]
fn generated_files_are_valid() {
    let png = synthetic_photo_png(64, 48, 1);
    assert!(is_png(&png));
    assert_eq!(header_dims(&png), Some((64, 48)));
    let img = smart_imaging_core::codecs::decode(&png, &smart_imaging_core::Limits::default())
        .expect("core decodes the generated PNG");
    assert_eq!((img.width, img.height), (64, 48));

    let jpeg = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
    assert_eq!(header_dims(&jpeg), Some((600, 400)));
    assert_eq!(exif_orientation(&jpeg), 1);
    let rotated = with_exif_orientation(&jpeg, 6);
    assert_eq!(exif_orientation(&rotated), 6);
    assert_eq!(header_dims(&rotated), Some((600, 400)));

    let a = Rgba::from_raw(2, 1, &[0, 0, 0, 255, 255, 255]);
    assert_eq!(psnr_composited(&a, &a), f64::INFINITY);
    assert!(!a.has_transparency());
}
