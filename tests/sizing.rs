//! Size, device pixel ratio and network (docs/sizing.md, "Size, device pixel
//! ratio and network", "Caches: `$smart_imaging_variant`" and the
//! directives smart_imaging_dpr, _dpr_max, _dpr_header, _network,
//! _network_quality_step, _network_thresholds, _max_output_size,
//! _max_output_pixels, _jpeg_quality, _accept_ch), through a real nginx:
//! every served image is decoded and its dimensions checked, with its
//! `Vary`, `Accept-CH` / `Critical-CH`, `ETag` and `$smart_imaging_variant`.
//!
//! The source is a generated 1632x1000 JPEG (README's example size): the
//! scikit-image coffee photo of samples/, upscaled here (bilinear) with a
//! little deterministic grain, encoded with the core's MozJPEG at q85.

mod common;

use std::sync::OnceLock;

use common::*;
use smart_imaging_core::codecs::{self, webp, Image};
use smart_imaging_core::guard;
use smart_imaging_core::metrics::psnr;
use smart_imaging_core::resize::resize;
use smart_imaging_core::Limits;

/// The generated source: README's example, 1632x1000.
const W: u32 = 1632;
const H: u32 = 1000;

/// A client that takes WebP.
const WEBP: (&str, &str) = ACCEPT_WEBP;
/// A client that does not (Safari 13's `Accept` for images).
const NO_WEBP: (&str, &str) = (
    "Accept",
    "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",
);

const DPR_HINTS: [&str; 4] = ["Sec-CH-DPR", "DPR", "Sec-CH-Width", "Width"];
const NET_HINTS: [&str; 4] = ["Save-Data", "ECT", "Downlink", "RTT"];

/// Every location serves htdocs/img/ (`/<location>/photo.jpg`). The server
/// puts `[$smart_imaging_variant]` in `X-Variant` (brackets, so an empty
/// value is visible).
const SITE: &str = r#"
    server {
        listen 127.0.0.1:{{PORT}};
        root {{HTDOCS}};
        smart_imaging_thread_pool smart_imaging;
        add_header X-Variant "[$smart_imaging_variant]" always;

        location /plain/     { alias {{HTDOCS}}/img/; smart_imaging on; }
        location /dpr/       { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on; }
        location /dprh/      { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_dpr_header X-Device-Pixel-Ratio; }
        location /dprmax/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_dpr_max 2.5; }
        location /net/       { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_network on; }
        location /netdpr/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_network on;
                               smart_imaging_dpr on; }
        location /netthr/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_network on;
                               smart_imaging_network_thresholds ect=2g; }
        location /netstep/   { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_network on;
                               smart_imaging_network_quality_step 40; }
        location /capsize/   { alias {{HTDOCS}}/img/; smart_imaging on;
                               smart_imaging_max_output_size 800 -; }
        location /capheight/ { alias {{HTDOCS}}/img/; smart_imaging on;
                               smart_imaging_max_output_size - 300; }
        location /cappix/    { alias {{HTDOCS}}/img/; smart_imaging on;
                               smart_imaging_max_output_pixels 400000; }
        location /jq/        { alias {{HTDOCS}}/img/; smart_imaging on;
                               smart_imaging_jpeg_quality 40; smart_imaging_guard off; }
        location /noguard/   { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_guard off; }
        location /debug/     { alias {{HTDOCS}}/img/; smart_imaging on;
                               smart_imaging_debug_header on; }
        location /ach/       { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_network on; smart_imaging_accept_ch on; }
        location /achdpr/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_accept_ch critical; }
        location /achnet/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_network on;
                               smart_imaging_accept_ch critical; }
        location /achboth/   { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_network on; smart_imaging_accept_ch critical; }
        location /achoff/    { alias {{HTDOCS}}/img/; smart_imaging on; smart_imaging_dpr on;
                               smart_imaging_network on; smart_imaging_accept_ch off; }
        location /off/       { alias {{HTDOCS}}/img/; }
        location /shop/      { smart_imaging on; smart_imaging_dpr on;
                               proxy_pass http://127.0.0.1:{{PORT2}}/img/; }
    }

    # The origin of /shop/ (no module).
    server {
        listen 127.0.0.1:{{PORT2}};
        root {{HTDOCS}};
    }
"#;

const PAGE: &[u8] = b"<!doctype html><title>t</title><img src=photo.jpg>\n";

// ---------------------------------------------------------------------------
// Test images
// ---------------------------------------------------------------------------

/// Bilinear upscaling (the core only downscales).
fn upscale(img: &Image, width: u32, height: u32) -> Image {
    assert!(!img.has_alpha);
    let (sw, sh) = (img.width as usize, img.height as usize);
    let at = |x: usize, y: usize, c: usize| f64::from(img.pixels[(y * sw + x) * 3 + c]);
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let fy =
            ((y as f64 + 0.5) * sh as f64 / f64::from(height) - 0.5).clamp(0.0, (sh - 1) as f64);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(sh - 1);
        for x in 0..width as usize {
            let fx =
                ((x as f64 + 0.5) * sw as f64 / f64::from(width) - 0.5).clamp(0.0, (sw - 1) as f64);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(sw - 1);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - tx) + at(x1, y0, c) * tx;
                let bottom = at(x0, y1, c) * (1.0 - tx) + at(x1, y1, c) * tx;
                pixels.push((top * (1.0 - ty) + bottom * ty).round() as u8);
            }
        }
    }
    Image::rgb(width, height, pixels)
}

/// The 1632x1000 source JPEG (q85, MozJPEG), made once per test binary.
fn photo() -> &'static [u8] {
    static PHOTO: OnceLock<Vec<u8>> = OnceLock::new();
    PHOTO.get_or_init(|| {
        let coffee = std::fs::read(samples_dir().join("sk_coffee.jpg")).unwrap();
        let coffee = codecs::decode(&coffee, &Limits::default()).unwrap();
        let mut img = upscale(&coffee, W, H);
        // Some grain, as a real photo of this size has.
        let mut rng = Rng::new(1632);
        for p in img.pixels.iter_mut() {
            let n = (rng.next_u64() >> 61) as i32 - 4; // -4..=3
            *p = (i32::from(*p) + n).clamp(0, 255) as u8;
        }
        let jpeg = codecs::jpeg::encode(&img, 85).unwrap();
        assert_eq!(header_dims(&jpeg), Some((W, H)));
        jpeg
    })
}

/// A 480x320 RGBA PNG (colour gradients, alpha from opaque to fully
/// transparent and a transparent hole), stored without compression.
fn alpha_png() -> &'static [u8] {
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    PNG.get_or_init(|| {
        let (w, h) = (480u32, 320u32);
        let mut raw = Vec::with_capacity((w as usize * 4 + 1) * h as usize);
        for y in 0..h {
            raw.push(0);
            for x in 0..w {
                let (dx, dy) = (x as i32 - 240, y as i32 - 160);
                let hole = dx * dx + dy * dy < 60 * 60;
                let a = if hole { 0 } else { (255 - x * 255 / w) as u8 };
                raw.extend_from_slice(&[
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) % 256) as u8,
                    a,
                ]);
            }
        }
        png_raw(w, h, 8, 6, &zlib_stored(&raw))
    })
}

fn small_jpeg() -> Vec<u8> {
    std::fs::read(samples_dir().join("sk_astronaut.jpg")).unwrap() // 512x512
}

/// nginx with SITE and htdocs/img/ = photo.jpg, alpha.png, small.jpg,
/// page.html, hello.txt, tiny.gif.
fn site(name: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.put_file("img/photo.jpg", photo());
    n.put_file("img/alpha.png", alpha_png());
    n.put_file("img/small.jpg", &small_jpeg());
    n.put_file("img/page.html", PAGE);
    n.put_file("img/hello.txt", b"hello, world\n");
    n.put_file("img/tiny.gif", &tiny_gif());
    n.run(&Config::with_module(SITE));
    n
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The decoded body (WebP, JPEG or PNG) and its format name.
fn decode_body(r: &Response) -> (&'static str, Image) {
    if is_webp(&r.body) {
        let img =
            webp::decode(&r.body).unwrap_or_else(|e| panic!("bad WebP: {e}\n{}", r.describe()));
        ("webp", img)
    } else {
        let fmt = if is_jpeg(&r.body) {
            "jpeg"
        } else if is_png(&r.body) {
            "png"
        } else {
            panic!("body is no image:\n{}", r.describe())
        };
        let img = codecs::decode(&r.body, &Limits::default())
            .unwrap_or_else(|e| panic!("cannot decode the {fmt} served: {e}\n{}", r.describe()));
        (fmt, img)
    }
}

fn mime_of(fmt: &str) -> &'static str {
    match fmt {
        "webp" => "image/webp",
        "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => unreachable!(),
    }
}

/// GET, then: 200, the body is a `fmt` image of `dims` (decoded), and the
/// `Content-Type` says so.
fn expect(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    fmt: &str,
    dims: (u32, u32),
) -> Response {
    let r = get(port, path, headers);
    assert_eq!(r.status, 200, "GET {path} {headers:?}\n{}", r.describe());
    let (got_fmt, img) = decode_body(&r);
    assert_eq!(
        (got_fmt, (img.width, img.height)),
        (fmt, dims),
        "GET {path} {headers:?}: format and size served\n{}",
        r.describe()
    );
    assert_eq!(
        r.content_type(),
        Some(mime_of(fmt)),
        "GET {path} {headers:?}"
    );
    r
}

/// GET, then: the body is the original file, byte for byte.
fn expect_original(port: u16, path: &str, headers: &[(&str, &str)], original: &[u8]) -> Response {
    let r = get(port, path, headers);
    assert_eq!(r.status, 200, "GET {path} {headers:?}\n{}", r.describe());
    assert!(
        r.body == original,
        "GET {path} {headers:?}: the original was expected\n{}",
        r.describe()
    );
    r
}

/// `$smart_imaging_variant` as the server's `X-Variant: [...]` shows it.
fn variant(r: &Response) -> &str {
    let v = r.header("X-Variant").expect("X-Variant header");
    v.strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or_else(|| panic!("X-Variant {v:?}"))
}

/// Every token of every `Vary` header, in order.
fn vary_tokens(r: &Response) -> Vec<String> {
    r.header_all("Vary")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `Vary` lists exactly `expected` (any order, each once).
fn assert_vary(r: &Response, expected: &[&str], what: &str) {
    let mut got = vary_tokens(r);
    got.iter_mut().for_each(|t| *t = t.to_ascii_lowercase());
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|t| t.to_ascii_lowercase()).collect();
    want.sort();
    assert_eq!(got, want, "{what}: Vary\n{}", r.describe());
}

/// A comma-separated header's tokens, lower-cased and sorted.
fn token_set(v: Option<&str>) -> Option<Vec<String>> {
    v.map(|v| {
        let mut t: Vec<String> = v
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        t.sort();
        t
    })
}

/// The aspect ratio of the source is kept (one pixel of rounding).
fn assert_aspect(dims: (u32, u32), src: (u32, u32)) {
    let (w, h) = (f64::from(dims.0), f64::from(dims.1));
    let (sw, sh) = (f64::from(src.0), f64::from(src.1));
    assert!(
        (h - w * sh / sw).abs() <= 1.0 || (w - h * sw / sh).abs() <= 1.0,
        "{dims:?} does not keep the aspect ratio of {src:?}"
    );
}

fn list(parts: &[&[&'static str]]) -> Vec<&'static str> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// README: "a 1632×1000 source with `hei=500` is delivered at 816×500 at
/// DPR 1 and at 1632×1000 at DPR 2".
#[test]
fn readme_example_hei_500_at_dpr_1_and_2() {
    let n = site("sizing-example");
    let p = n.port();
    assert_eq!(header_dims(photo()), Some((W, H)));

    let r = expect(p, "/plain/photo.jpg?hei=500", &[WEBP], "webp", (816, 500));
    assert_eq!(variant(&r), "webp-q100-h500");
    // DPR on in the location, DPR 2 from the client hint.
    let r = expect(
        p,
        "/dpr/photo.jpg?hei=500",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (W, H),
    );
    assert_eq!(variant(&r), "webp-q100-h500-dpr2");
    // The same location at DPR 1 (no hint).
    expect(p, "/dpr/photo.jpg?hei=500", &[WEBP], "webp", (816, 500));
    // DPR off in the location, DPR 2 from the URL.
    let r = expect(
        p,
        "/plain/photo.jpg?hei=500&dpr=on,2",
        &[WEBP],
        "webp",
        (W, H),
    );
    assert_eq!(variant(&r), "webp-q100-h500-dpr2");

    // A client without WebP: the JPEG resized at DPR 1...
    let r = expect(
        p,
        "/plain/photo.jpg?hei=500",
        &[NO_WEBP],
        "jpeg",
        (816, 500),
    );
    assert!(r.body.len() < photo().len());
    assert_eq!(variant(&r), "src-q100-h500");
    // ... and at DPR 2 the source size: nothing to change, the original.
    expect_original(p, "/plain/photo.jpg?hei=500&dpr=on,2", &[NO_WEBP], photo());
    expect_original(
        p,
        "/dpr/photo.jpg?hei=500",
        &[NO_WEBP, ("Sec-CH-DPR", "2")],
        photo(),
    );
}

#[test]
fn requested_size_wid_hei_box_and_no_upscaling() {
    let n = site("sizing-wid-hei");
    let p = n.port();
    // Width only, height only: the other side follows the aspect ratio.
    let r = expect(p, "/plain/photo.jpg?wid=408", &[WEBP], "webp", (408, 250));
    assert_eq!(variant(&r), "webp-q100-w408");
    expect(p, "/plain/photo.jpg?wid=400", &[WEBP], "webp", (400, 245));
    expect(p, "/plain/photo.jpg?hei=250", &[WEBP], "webp", (408, 250));
    // Both: the image fits inside the box.
    let r = expect(
        p,
        "/plain/photo.jpg?wid=800&hei=100",
        &[WEBP],
        "webp",
        (163, 100),
    );
    assert_eq!(variant(&r), "webp-q100-w800-h100");
    // (Without the guard: under ~128 px a side, SSIMULACRA 2's scores are
    // unreliable and this photo's 100x61 fails it even at q100; see
    // tests/guard.rs.)
    expect(
        p,
        "/noguard/photo.jpg?hei=800&wid=100",
        &[WEBP],
        "webp",
        (100, 61),
    );
    expect(
        p,
        "/plain/photo.jpg?wid=408&hei=250",
        &[WEBP],
        "webp",
        (408, 250),
    );
    // Other arguments do not disturb the module's.
    expect(
        p,
        "/plain/photo.jpg?v=3&wid=408&x",
        &[WEBP],
        "webp",
        (408, 250),
    );
    // Never upscaled.
    expect(p, "/plain/photo.jpg?wid=5000", &[WEBP], "webp", (W, H));
    expect(
        p,
        "/plain/photo.jpg?wid=3000&hei=2000",
        &[WEBP],
        "webp",
        (W, H),
    );
    expect(p, "/plain/photo.jpg?hei=1000", &[WEBP], "webp", (W, H));
    // Without WebP, a size at or above the source's changes nothing.
    expect_original(p, "/plain/photo.jpg?wid=5000", &[NO_WEBP], photo());
    expect_original(p, "/plain/photo.jpg?wid=1632", &[NO_WEBP], photo());
    // Without WebP, a smaller size: the JPEG resized. (Without the guard:
    // at 163x100 no JPEG of this photo, 4:2:0 even at q100, scores 80.)
    expect(
        p,
        "/noguard/photo.jpg?wid=800&hei=100",
        &[NO_WEBP],
        "jpeg",
        (163, 100),
    );
    // Tiny sizes never give a zero side. (Without the guard: SSIMULACRA 2
    // cannot score an image under 8x8, and the guard then keeps the
    // original.)
    expect(p, "/noguard/photo.jpg?wid=1", &[WEBP], "webp", (1, 1));
}

#[test]
fn output_caps_apply_to_every_client_and_keep_the_aspect_ratio() {
    let n = site("sizing-caps");
    let p = n.port();
    // smart_imaging_max_output_size 800 -;
    let r = expect(p, "/capsize/photo.jpg", &[WEBP], "webp", (800, 490));
    assert_eq!(variant(&r), "webp-q100-src");
    expect(p, "/capsize/photo.jpg", &[NO_WEBP], "jpeg", (800, 490));
    expect(
        p,
        "/capsize/photo.jpg?wid=1200",
        &[WEBP],
        "webp",
        (800, 490),
    );
    expect(
        p,
        "/capsize/photo.jpg?wid=300&dpr=on,3",
        &[WEBP],
        "webp",
        (800, 490),
    );
    expect(p, "/capsize/photo.jpg?wid=400", &[WEBP], "webp", (400, 245));
    // smart_imaging_max_output_size - 300;
    expect(p, "/capheight/photo.jpg", &[WEBP], "webp", (490, 300));
    expect(
        p,
        "/capheight/photo.jpg?wid=400",
        &[NO_WEBP],
        "jpeg",
        (400, 245),
    );
    expect(
        p,
        "/capheight/photo.jpg?wid=800",
        &[NO_WEBP],
        "jpeg",
        (490, 300),
    );
    // smart_imaging_max_output_pixels 400000;
    for (path, accept, fmt) in [
        ("/cappix/photo.jpg", WEBP, "webp"),
        ("/cappix/photo.jpg", NO_WEBP, "jpeg"),
        ("/cappix/photo.jpg?hei=900", WEBP, "webp"),
    ] {
        let r = get(p, path, &[accept]);
        let (got, img) = decode_body(&r);
        assert_eq!(got, fmt, "{path}\n{}", r.describe());
        let dims = (img.width, img.height);
        assert!(
            u64::from(dims.0) * u64::from(dims.1) <= 400_000,
            "{path}: {dims:?} is over 400000 pixels"
        );
        // As large as the cap allows (within rounding).
        assert!(
            u64::from(dims.0) * u64::from(dims.1) > 390_000,
            "{path}: {dims:?} is much smaller than the cap"
        );
        assert_aspect(dims, (W, H));
    }
    expect(p, "/cappix/photo.jpg", &[WEBP], "webp", (807, 495));
    // A request below the cap is not affected by it.
    expect(p, "/cappix/photo.jpg?wid=400", &[WEBP], "webp", (400, 245));
    // A small image under the caps is left at its size.
    let r = get(p, "/capsize/small.jpg", &[NO_WEBP]);
    assert_eq!(r.body, small_jpeg(), "{}", r.describe());
    expect(p, "/capsize/small.jpg", &[WEBP], "webp", (512, 512));
}

#[test]
fn device_pixel_ratio_sources_precedence_and_cap() {
    let n = site("sizing-dpr");
    let p = n.port();
    // smart_imaging_dpr on: Sec-CH-DPR.
    let r = expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2");
    // Legacy DPR.
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("DPR", "2")],
        "webp",
        (800, 490),
    );
    // Sec-CH-DPR wins over DPR.
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("DPR", "3"), ("Sec-CH-DPR", "1.5")],
        "webp",
        (600, 368),
    );
    // dpr=off in the URL: hints present, DPR 1.
    let r = expect(
        p,
        "/dpr/photo.jpg?wid=400&dpr=off",
        &[WEBP, ("Sec-CH-DPR", "2"), ("Sec-CH-Width", "828")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&r), "webp-q100-w400");
    // smart_imaging_dpr off: hints ignored...
    expect(
        p,
        "/plain/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (400, 245),
    );
    // ... dpr=on,<value> works anyway...
    let r = expect(
        p,
        "/plain/photo.jpg?wid=400&dpr=on,1.5",
        &[WEBP],
        "webp",
        (600, 368),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr1.5");
    // ... and the URL's value beats the hints.
    expect(
        p,
        "/dpr/photo.jpg?wid=400&dpr=on,1.5",
        &[WEBP, ("Sec-CH-DPR", "3")],
        "webp",
        (600, 368),
    );
    // dpr=on without a value: the hints decide.
    expect(
        p,
        "/plain/photo.jpg?wid=400&dpr=on",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    // smart_imaging_dpr_max: 3 by default, whatever the source.
    let r = expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "5")],
        "webp",
        (1200, 735),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr3");
    expect(
        p,
        "/plain/photo.jpg?wid=400&dpr=on,5",
        &[WEBP],
        "webp",
        (1200, 735),
    );
    // smart_imaging_dpr_max 2.5.
    let r = expect(
        p,
        "/dprmax/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "5")],
        "webp",
        (1000, 613),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2.5");
    expect(
        p,
        "/dprmax/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    // smart_imaging_dpr_header: before the client hints.
    let r = expect(
        p,
        "/dprh/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "3"), ("X-Device-Pixel-Ratio", "1.5")],
        "webp",
        (600, 368),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr1.5");
    expect(
        p,
        "/dprh/photo.jpg?wid=400",
        &[WEBP, ("X-Device-Pixel-Ratio", "2"), ("DPR", "3")],
        "webp",
        (800, 490),
    );
    // The configured header is capped by smart_imaging_dpr_max too.
    let r = expect(
        p,
        "/dprh/photo.jpg?wid=400",
        &[WEBP, ("X-Device-Pixel-Ratio", "5")],
        "webp",
        (1200, 735),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr3");
    // Without it, the hints.
    expect(
        p,
        "/dprh/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "3")],
        "webp",
        (1200, 735),
    );
    // The header is not consulted where it is not configured.
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("X-Device-Pixel-Ratio", "2")],
        "webp",
        (400, 245),
    );
    // A client without WebP gets its JPEG at the DPR's size.
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[NO_WEBP, ("Sec-CH-DPR", "2")],
        "jpeg",
        (800, 490),
    );
    // Unusable hints: DPR 1.
    for bad in ["0", "-2", "abc", "NaN", "inf"] {
        expect(
            p,
            "/dpr/photo.jpg?wid=400",
            &[WEBP, ("Sec-CH-DPR", bad)],
            "webp",
            (400, 245),
        );
    }
    // A malformed configured header: the client hints decide.
    expect(
        p,
        "/dprh/photo.jpg?wid=400",
        &[WEBP, ("X-Device-Pixel-Ratio", "abc"), ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    // A DPR below 1 (any number > 0) scales down, also the source size.
    let r = expect(
        p,
        "/plain/photo.jpg?dpr=on,0.5",
        &[WEBP],
        "webp",
        (816, 500),
    );
    assert_eq!(variant(&r), "webp-q100-dpr0.5");
    expect(
        p,
        "/plain/photo.jpg?dpr=on,0.5",
        &[NO_WEBP],
        "jpeg",
        (816, 500),
    );
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "0.5")],
        "webp",
        (200, 123),
    );
    // DPR values are normalised to 2 decimals in the variant.
    let r = expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-DPR", "2.6251")],
        "webp",
        (1052, 645),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2.63");
}

#[test]
fn width_hint_is_physical_pixels() {
    let n = site("sizing-width");
    let p = n.port();
    // Used as it is, not multiplied by the DPR.
    let r = expect(
        p,
        "/dpr/photo.jpg",
        &[WEBP, ("Sec-CH-Width", "828"), ("Sec-CH-DPR", "2")],
        "webp",
        (828, 507),
    );
    assert_eq!(variant(&r), "webp-q100-pw828");
    expect(
        p,
        "/dpr/photo.jpg",
        &[WEBP, ("Sec-CH-Width", "828")],
        "webp",
        (828, 507),
    );
    // Legacy Width; Sec-CH-Width wins over it.
    expect(
        p,
        "/dpr/photo.jpg",
        &[WEBP, ("Width", "828"), ("DPR", "2")],
        "webp",
        (828, 507),
    );
    expect(
        p,
        "/dpr/photo.jpg",
        &[WEBP, ("Width", "600"), ("Sec-CH-Width", "828")],
        "webp",
        (828, 507),
    );
    // Never upscaled.
    expect(
        p,
        "/dpr/photo.jpg",
        &[WEBP, ("Sec-CH-Width", "4000")],
        "webp",
        (W, H),
    );
    // A size in the URL wins: CSS pixels times the DPR.
    expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("Sec-CH-Width", "828"), ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    // So does a DPR in the URL (source size x 2: the source).
    expect(
        p,
        "/dpr/photo.jpg?dpr=on,2",
        &[WEBP, ("Sec-CH-Width", "828")],
        "webp",
        (W, H),
    );
    // dpr=on (no value) in the URL where the location has DPR off: the
    // hints decide, the width hint included.
    let r = expect(
        p,
        "/plain/photo.jpg?dpr=on",
        &[WEBP, ("Sec-CH-Width", "828"), ("Sec-CH-DPR", "2")],
        "webp",
        (828, 507),
    );
    assert_eq!(variant(&r), "webp-q100-pw828");
    // With DPR off (location, or URL), no width hint is used.
    expect(
        p,
        "/plain/photo.jpg",
        &[WEBP, ("Sec-CH-Width", "828")],
        "webp",
        (W, H),
    );
    expect(
        p,
        "/dpr/photo.jpg?dpr=off",
        &[WEBP, ("Sec-CH-Width", "828")],
        "webp",
        (W, H),
    );
    // A client without WebP: the JPEG at that width.
    let r = expect(
        p,
        "/dpr/photo.jpg",
        &[NO_WEBP, ("Width", "828")],
        "jpeg",
        (828, 507),
    );
    assert_eq!(variant(&r), "src-q100-pw828");
}

#[test]
fn clients_without_webp_get_their_own_format_resized() {
    let n = site("sizing-no-webp");
    let p = n.port();
    let orig = codecs::decode(photo(), &Limits::default()).unwrap();

    // JPEG stays JPEG, smaller in dimensions and bytes, faithful.
    let r = expect(
        p,
        "/plain/photo.jpg?wid=408",
        &[NO_WEBP],
        "jpeg",
        (408, 250),
    );
    assert!(r.body.len() < photo().len() / 3, "{}", r.describe());
    assert_vary(&r, &["Accept"], "resized JPEG");
    assert_eq!(variant(&r), "src-q100-w408");
    let (_, served) = decode_body(&r);
    let reference = resize(&orig, 408, 250).unwrap();
    let db = psnr(&served, &reference);
    assert!(
        db > 32.0,
        "resized JPEG: {db:.1} dB against the core's resize"
    );
    // smart_imaging_jpeg_quality (the guard off there, so it is the quality
    // used): a lower quality, fewer bytes, same size.
    let low = expect(p, "/jq/photo.jpg?wid=408", &[NO_WEBP], "jpeg", (408, 250));
    assert_eq!(variant(&low), "src-q40-w408");
    assert!(
        low.body.len() < r.body.len(),
        "q40 {} bytes, guarded (up to q100) {} bytes",
        low.body.len(),
        r.body.len()
    );
    // ... which does not touch WebP.
    let r = expect(p, "/jq/photo.jpg?wid=408", &[WEBP], "webp", (408, 250));
    assert_eq!(variant(&r), "webp-q100-w408");

    // PNG with alpha stays PNG with alpha (lossless, so exactly the core's
    // resize).
    let png = alpha_png();
    let src = codecs::decode(png, &Limits::default()).unwrap();
    assert!(src.has_alpha);
    let r = expect(p, "/plain/alpha.png?wid=240", &[NO_WEBP], "png", (240, 160));
    assert!(r.body.len() < png.len());
    assert_vary(&r, &["Accept"], "resized PNG");
    assert_eq!(variant(&r), "src-q100-w240");
    let (_, served) = decode_body(&r);
    assert!(served.has_alpha, "the resized PNG lost its alpha");
    let served_rgba = Rgba::from_raw(served.width, served.height, &served.pixels);
    assert!(served_rgba.has_transparency());
    let reference = resize(&src, 240, 160).unwrap();
    assert_eq!(
        served.pixels, reference.pixels,
        "lossless PNG differs from the core's resize"
    );
    // The same to a WebP client: a WebP with alpha.
    let r = expect(p, "/plain/alpha.png?wid=240", &[WEBP], "webp", (240, 160));
    let (_, served) = decode_body(&r);
    assert!(served.has_alpha);
    // Without a size, a PNG client gets the PNG untouched.
    let r = expect_original(p, "/plain/alpha.png", &[NO_WEBP], png);
    assert_eq!(variant(&r), "orig");
    assert_vary(&r, &["Accept"], "original PNG");
}

#[test]
fn poor_network_lowers_quality_and_turns_dpr_off() {
    let n = site("sizing-network");
    let p = n.port();
    // Reference: the same size at the default ceiling, q100, and guard
    // threshold, 80 (network on, no hints).
    let full = expect(p, "/net/photo.jpg?wid=400", &[WEBP], "webp", (400, 245));
    assert_eq!(variant(&full), "webp-q100-w400");
    // Save-Data: ceiling q85, threshold 65 and DPR off, even with
    // Sec-CH-DPR: 2 where DPR is on.
    let save = expect(
        p,
        "/netdpr/photo.jpg?wid=400",
        &[WEBP, ("Save-Data", "on"), ("Sec-CH-DPR", "2")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&save), "webp-q85-w400");
    assert!(
        save.body.len() < full.body.len(),
        "poor network {} bytes, good {} bytes",
        save.body.len(),
        full.body.len()
    );
    // Each poor signal, with DPR 2 hinted: q85 at DPR 1, and the same bytes
    // (same variant, same bytes).
    for hint in [
        ("ECT", "2g"),
        ("ECT", "slow-2g"),
        ("ECT", "3g"),
        ("Downlink", "0.3"),
        ("RTT", "600"),
    ] {
        let r = expect(
            p,
            "/netdpr/photo.jpg?wid=400",
            &[WEBP, hint, ("Sec-CH-DPR", "2")],
            "webp",
            (400, 245),
        );
        assert_eq!(variant(&r), "webp-q85-w400", "{hint:?}");
        assert!(r.body == save.body, "{hint:?}: not the bytes Save-Data got");
    }
    // A good network: full quality and DPR.
    for hints in [
        &[("ECT", "4g")][..],
        &[("Downlink", "10"), ("RTT", "50")][..],
        &[("Save-Data", "off")][..],
    ] {
        let mut h = vec![WEBP, ("Sec-CH-DPR", "2")];
        h.extend_from_slice(hints);
        let r = expect(p, "/netdpr/photo.jpg?wid=400", &h, "webp", (800, 490));
        assert_eq!(variant(&r), "webp-q100-w400-dpr2", "{hints:?}");
    }
    // Also a DPR given in the URL is dropped on a poor network.
    let r = expect(
        p,
        "/netdpr/photo.jpg?wid=400&dpr=on,2",
        &[WEBP, ("Save-Data", "on")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&r), "webp-q85-w400");
    // And a width hint (it is part of DPR): the whole photo, not 828 wide.
    // At its full size this grainy photo may not pass the guard's check at
    // q85 (it scores about 65, the bar plus the check's margin is 66):
    // then the original is served, also at full size.
    let r = get(
        p,
        "/netdpr/photo.jpg",
        &[WEBP, ("ECT", "2g"), ("Sec-CH-Width", "828")],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let (fmt, img) = decode_body(&r);
    assert!(
        ["webp", "jpeg"].contains(&fmt) && (img.width, img.height) == (W, H),
        "{fmt} {}x{}\n{}",
        img.width,
        img.height,
        r.describe()
    );
    assert_eq!(variant(&r), "webp-q85-src");
    // network=off in the URL opts out.
    let r = expect(
        p,
        "/netdpr/photo.jpg?wid=400&network=off",
        &[WEBP, ("Save-Data", "on"), ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2");
    assert_vary(&r, &list(&[&["Accept"], &DPR_HINTS]), "network=off");
    // network=on in the URL opts in where the location has it off.
    let r = expect(
        p,
        "/plain/photo.jpg?wid=400&network=on",
        &[WEBP, ("Save-Data", "on")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&r), "webp-q85-w400");
    // Network off in the location: the hints do nothing.
    let r = expect(
        p,
        "/plain/photo.jpg?wid=400",
        &[WEBP, ("Save-Data", "on")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&r), "webp-q100-w400");
    assert!(r.body == full.body);
    let r = expect(
        p,
        "/dpr/photo.jpg?wid=400",
        &[WEBP, ("ECT", "2g"), ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2");
    // A client without WebP: its JPEG, with the ceiling q85 and threshold 65.
    let jfull = expect(p, "/net/photo.jpg?wid=400", &[NO_WEBP], "jpeg", (400, 245));
    let jpoor = expect(
        p,
        "/net/photo.jpg?wid=400",
        &[NO_WEBP, ("Save-Data", "on")],
        "jpeg",
        (400, 245),
    );
    assert_eq!(variant(&jpoor), "src-q85-w400");
    assert!(jpoor.body.len() < jfull.body.len());
    // smart_imaging_network_quality_step 40: the ceiling 100 becomes 60,
    // the guard's threshold 80 becomes 40.
    let r = expect(
        p,
        "/netstep/photo.jpg?wid=400",
        &[WEBP, ("Save-Data", "on")],
        "webp",
        (400, 245),
    );
    assert_eq!(variant(&r), "webp-q60-w400");
    assert!(r.body.len() < save.body.len());
    // A poor network alone (no size) still converts, with the ceiling q85.
    let r = expect(
        p,
        "/net/small.jpg",
        &[WEBP, ("RTT", "300")],
        "webp",
        (512, 512),
    );
    assert_eq!(variant(&r), "webp-q85-src");
}

#[test]
fn network_thresholds() {
    let n = site("sizing-thresholds");
    let p = n.port();
    let q = |path: &str, hint: (&'static str, &'static str)| {
        let r = expect(p, path, &[WEBP, hint], "webp", (400, 245));
        variant(&r).to_string()
    };
    // Defaults: ect=3g downlink=0.7 rtt=270ms, inclusive.
    assert_eq!(q("/net/photo.jpg?wid=400", ("ECT", "3g")), "webp-q85-w400");
    assert_eq!(q("/net/photo.jpg?wid=400", ("ECT", "4g")), "webp-q100-w400");
    assert_eq!(
        q("/net/photo.jpg?wid=400", ("Downlink", "0.7")),
        "webp-q85-w400"
    );
    assert_eq!(
        q("/net/photo.jpg?wid=400", ("Downlink", "0.8")),
        "webp-q100-w400"
    );
    assert_eq!(q("/net/photo.jpg?wid=400", ("RTT", "270")), "webp-q85-w400");
    assert_eq!(
        q("/net/photo.jpg?wid=400", ("RTT", "250")),
        "webp-q100-w400"
    );
    // ect=2g: 3g is not poor any more, 2g is; the others keep their defaults.
    assert_eq!(
        q("/netthr/photo.jpg?wid=400", ("ECT", "3g")),
        "webp-q100-w400"
    );
    assert_eq!(
        q("/netthr/photo.jpg?wid=400", ("ECT", "2g")),
        "webp-q85-w400"
    );
    assert_eq!(
        q("/netthr/photo.jpg?wid=400", ("ECT", "slow-2g")),
        "webp-q85-w400"
    );
    assert_eq!(
        q("/netthr/photo.jpg?wid=400", ("RTT", "300")),
        "webp-q85-w400"
    );
    assert_eq!(
        q("/netthr/photo.jpg?wid=400", ("Downlink", "0.5")),
        "webp-q85-w400"
    );
}

#[test]
fn vary_lists_the_headers_that_can_change_the_response() {
    let n = site("sizing-vary");
    let p = n.port();
    let accept = &["Accept"][..];
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("/plain/photo.jpg", vec![], list(&[accept])),
        ("/plain/photo.jpg?wid=400", vec![], list(&[accept])),
        ("/dpr/photo.jpg", vec![], list(&[accept, &DPR_HINTS])),
        (
            "/dpr/photo.jpg?wid=400",
            vec!["2"],
            list(&[accept, &DPR_HINTS]),
        ),
        (
            "/dprh/photo.jpg?wid=400",
            vec![],
            list(&[accept, &["X-Device-Pixel-Ratio"], &DPR_HINTS]),
        ),
        (
            "/net/photo.jpg?wid=400",
            vec![],
            list(&[accept, &NET_HINTS]),
        ),
        (
            "/netdpr/photo.jpg?wid=400",
            vec![],
            list(&[accept, &DPR_HINTS, &NET_HINTS]),
        ),
        // Poor network: DPR is off for this request, but the hints still
        // decide whether it is, so they stay in Vary.
        (
            "/netdpr/photo.jpg?wid=400",
            vec!["save"],
            list(&[accept, &DPR_HINTS, &NET_HINTS]),
        ),
        // A DPR value in the URL: no DPR hint can change the response.
        (
            "/dpr/photo.jpg?wid=400&dpr=on,2",
            vec!["2"],
            list(&[accept]),
        ),
        ("/dprh/photo.jpg?wid=400&dpr=on,2", vec![], list(&[accept])),
        ("/plain/photo.jpg?wid=400&dpr=on,2", vec![], list(&[accept])),
        (
            "/netdpr/photo.jpg?wid=400&dpr=on,2",
            vec![],
            list(&[accept, &NET_HINTS]),
        ),
        // dpr=off: none either; dpr=on (no value): the hints decide.
        ("/dpr/photo.jpg?wid=400&dpr=off", vec!["2"], list(&[accept])),
        (
            "/plain/photo.jpg?wid=400&dpr=on",
            vec![],
            list(&[accept, &DPR_HINTS]),
        ),
        // network=off / network=on in the URL.
        (
            "/netdpr/photo.jpg?wid=400&network=off",
            vec![],
            list(&[accept, &DPR_HINTS]),
        ),
        (
            "/plain/photo.jpg?wid=400&network=on",
            vec![],
            list(&[accept, &NET_HINTS]),
        ),
    ];
    for (path, hints, want) in &cases {
        for accept_hdr in [WEBP, NO_WEBP] {
            let mut h = vec![accept_hdr];
            for hint in hints {
                match *hint {
                    "2" => h.push(("Sec-CH-DPR", "2")),
                    "save" => h.push(("Save-Data", "on")),
                    _ => unreachable!(),
                }
            }
            let r = get(p, path, &h);
            assert_eq!(r.status, 200, "{path}");
            assert!(
                is_webp(&r.body) || is_jpeg(&r.body),
                "{path}: {}",
                r.describe()
            );
            assert_vary(&r, want, &format!("GET {path} {h:?}"));
        }
    }
    // Also on the original served unchanged (nothing to do for it).
    let r = expect_original(p, "/dprh/photo.jpg", &[NO_WEBP], photo());
    assert_eq!(variant(&r), "orig");
    assert_vary(
        &r,
        &list(&[accept, &["X-Device-Pixel-Ratio"], &DPR_HINTS]),
        "original",
    );
    let r = expect_original(p, "/netdpr/photo.jpg", &[NO_WEBP], photo());
    assert_vary(&r, &list(&[accept, &DPR_HINTS, &NET_HINTS]), "original");
    // And on the HEAD of a resized image.
    let r = request(p, "HEAD", "/netdpr/photo.jpg?wid=400", &[WEBP]).unwrap();
    assert_eq!(r.status, 200);
    assert_vary(&r, &list(&[accept, &DPR_HINTS, &NET_HINTS]), "HEAD");
    // And on a 304 (If-None-Match with the original's ETag).
    let etag = get(p, "/off/photo.jpg", &[])
        .header("ETag")
        .unwrap()
        .to_string();
    let r = get(p, "/netdpr/photo.jpg", &[NO_WEBP, ("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{}", r.describe());
    assert_vary(&r, &list(&[accept, &DPR_HINTS, &NET_HINTS]), "304");
}

#[test]
fn accept_ch_and_critical_ch() {
    let n = site("sizing-accept-ch");
    let p = n.port();
    let dpr = "Sec-CH-DPR, Sec-CH-Width";
    let net = "ECT, Downlink, RTT";
    let both = format!("{dpr}, {net}");
    // (location, Accept-CH, Critical-CH)
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        ("/ach/", Some(both.as_str()), None),
        ("/achdpr/", Some(dpr), Some(dpr)),
        ("/achnet/", Some(net), Some(net)),
        ("/achboth/", Some(both.as_str()), Some(both.as_str())),
        ("/achoff/", None, None),
    ];
    for (loc, accept_ch, critical_ch) in cases {
        for (file, headers) in [
            // An image converted, the original to a client without WebP,
            // a resized one, the HTML page, a 404.
            ("photo.jpg", &[WEBP][..]),
            ("small.jpg", &[NO_WEBP][..]),
            ("photo.jpg?wid=200", &[NO_WEBP][..]),
            ("page.html", &[("Accept", "text/html,*/*;q=0.8")][..]),
            ("missing.html", &[("Accept", "text/html,*/*;q=0.8")][..]),
        ] {
            let path = format!("{loc}{file}");
            let r = get(p, &path, headers);
            let want_status = if file.starts_with("missing") {
                404
            } else {
                200
            };
            assert_eq!(r.status, want_status, "{path}\n{}", r.describe());
            assert_eq!(
                token_set(r.header("Accept-CH")),
                token_set(accept_ch),
                "{path}: Accept-CH\n{}",
                r.describe()
            );
            assert_eq!(
                token_set(r.header("Critical-CH")),
                token_set(critical_ch),
                "{path}: Critical-CH\n{}",
                r.describe()
            );
            assert!(
                r.header_all("Accept-CH").len() <= 1,
                "{path}: one Accept-CH"
            );
            if file == "page.html" {
                assert_eq!(r.body, PAGE, "{path}");
                assert!(r.header("Vary").is_none(), "{path}: Vary on HTML");
            }
        }
    }
    // Not where smart_imaging_accept_ch is not set.
    for path in ["/dpr/photo.jpg", "/netdpr/page.html", "/off/photo.jpg"] {
        let r = get(p, path, &[WEBP]);
        assert!(r.header("Accept-CH").is_none(), "{path}\n{}", r.describe());
        assert!(r.header("Critical-CH").is_none(), "{path}");
    }
}

#[test]
fn variant_variable_and_etag() {
    let n = site("sizing-variant");
    let p = n.port();
    let original_etag = get(p, "/off/photo.jpg", &[WEBP])
        .header("ETag")
        .unwrap()
        .to_string();
    assert!(original_etag.starts_with('"'), "{original_etag}");
    let opaque = original_etag.trim_matches('"');

    // (path, headers, variant, converted?)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, bool);
    let cases: Vec<Case> = vec![
        ("/plain/photo.jpg", vec![WEBP], "webp-q100-src", true),
        (
            "/plain/photo.jpg?wid=400",
            vec![NO_WEBP],
            "src-q100-w400",
            true,
        ),
        ("/plain/photo.jpg", vec![NO_WEBP], "orig", false),
        ("/plain/photo.jpg?wid=400&bfc=off", vec![WEBP], "off", false),
        (
            "/netdpr/photo.jpg?wid=400",
            vec![WEBP, ("Save-Data", "on"), ("Sec-CH-DPR", "2")],
            "webp-q85-w400",
            true,
        ),
        (
            "/net/photo.jpg?wid=400",
            vec![NO_WEBP, ("ECT", "2g")],
            "src-q85-w400",
            true,
        ),
        (
            "/dpr/photo.jpg",
            vec![WEBP, ("Sec-CH-Width", "828")],
            "webp-q100-pw828",
            true,
        ),
        (
            "/dpr/photo.jpg?wid=400",
            vec![WEBP, ("Sec-CH-DPR", "2")],
            "webp-q100-w400-dpr2",
            true,
        ),
        (
            "/dpr/photo.jpg?wid=400&hei=300",
            vec![WEBP, ("Sec-CH-DPR", "1.5")],
            "webp-q100-w400-h300-dpr1.5",
            true,
        ),
        (
            "/shop/photo.jpg?wid=400",
            vec![WEBP, ("Sec-CH-DPR", "2")],
            "webp-q100-w400-dpr2",
            true,
        ),
    ];
    for (path, headers, want, converted) in &cases {
        let r = get(p, path, headers);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            variant(&r),
            *want,
            "GET {path} {headers:?}\n{}",
            r.describe()
        );
        let etag = r
            .header("ETag")
            .unwrap_or_else(|| panic!("{path}: no ETag\n{}", r.describe()));
        if *converted {
            assert!(
                r.body.len() < photo().len(),
                "{path}: not converted\n{}",
                r.describe()
            );
            assert_eq!(
                etag,
                format!("W/\"{opaque}-{want}\""),
                "GET {path} {headers:?}: the converted response's ETag"
            );
        } else {
            assert!(r.body == photo(), "{path}: the original was expected");
            assert_eq!(etag, original_etag, "{path}: the original's ETag");
        }
    }
    // Empty where the module is off (the header is still added: always).
    for path in ["/off/photo.jpg", "/off/photo.jpg?wid=400", "/off/page.html"] {
        let r = get(p, path, &[WEBP, ("Sec-CH-DPR", "2")]);
        assert_eq!(variant(&r), "", "{path}");
        assert!(r.header("Vary").is_none(), "{path}");
    }
    let r = expect_original(p, "/off/photo.jpg?wid=400", &[WEBP], photo());
    assert_eq!(r.header("ETag"), Some(original_etag.as_str()));
}

#[test]
fn malformed_arguments_are_ignored() {
    let n = site("sizing-malformed");
    let p = n.port();
    let small = small_jpeg();
    let base = expect(p, "/netdpr/small.jpg", &[WEBP], "webp", (512, 512));
    assert_eq!(variant(&base), "webp-q100-src");
    let base_vary = vary_tokens(&base);
    let mark = n.error_log_mark();
    for args in [
        "wid=abc",
        "hei=0",
        "wid=-5",
        "wid=",
        "hei=1.5",
        "dpr=on,-1",
        "dpr=on,0",
        "dpr=on,abc",
        "dpr=maybe",
        "network=sometimes",
        "wid=99999999",
        "bfc=maybe",
        "wid=abc&hei=0&dpr=on,-1&network=sometimes",
    ] {
        let path = format!("/netdpr/small.jpg?{args}");
        let r = expect(p, &path, &[WEBP], "webp", (512, 512));
        assert_eq!(variant(&r), "webp-q100-src", "{path}");
        assert!(
            r.body == base.body,
            "{path}: not the bytes served without the argument"
        );
        assert_eq!(vary_tokens(&r), base_vary, "{path}");
        // A client without WebP: the original, as without the argument.
        let r = expect_original(p, &path, &[NO_WEBP], &small);
        assert_eq!(variant(&r), "orig", "{path}");
    }
    // A malformed argument next to a good one: the good one applies.
    let r = expect(
        p,
        "/netdpr/photo.jpg?wid=abc&hei=250",
        &[WEBP],
        "webp",
        (408, 250),
    );
    assert_eq!(variant(&r), "webp-q100-h250");
    let r = expect(
        p,
        "/netdpr/photo.jpg?wid=400&dpr=maybe",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (800, 490),
    );
    assert_eq!(variant(&r), "webp-q100-w400-dpr2");
    let log = n.error_log_since(mark);
    for bad in ["[error]", "[crit]", "[alert]", "[emerg]", "[warn]"] {
        assert!(!log.contains(bad), "{bad} in the error log:\n{log}");
    }
}

#[test]
fn non_image_responses_are_untouched() {
    let n = site("sizing-non-image");
    let p = n.port();
    let all_hints = [
        WEBP,
        ("Sec-CH-DPR", "2"),
        ("Sec-CH-Width", "828"),
        ("Save-Data", "on"),
        ("ECT", "2g"),
    ];
    for (file, body, ctype) in [
        ("page.html", PAGE.to_vec(), "text/html"),
        ("hello.txt", b"hello, world\n".to_vec(), "text/plain"),
        ("tiny.gif", tiny_gif(), "image/gif"),
    ] {
        for loc in ["/netdpr/", "/cappix/", "/capsize/", "/dprh/"] {
            let path = format!("{loc}{file}?wid=100&hei=100&dpr=on,2&network=on");
            let r = get(p, &path, &all_hints);
            assert_eq!(r.status, 200, "{path}");
            assert!(r.body == body, "{path}: body changed\n{}", r.describe());
            assert_eq!(
                r.content_type().map(|c| c.split(';').next().unwrap()),
                Some(ctype),
                "{path}"
            );
            assert!(r.header("Vary").is_none(), "{path}: Vary\n{}", r.describe());
            assert_eq!(r.content_length(), Some(body.len()), "{path}");
        }
    }
}

/// The served WebP of a 2x downscale is the core's resize of the decoded
/// original, WebP-encoded at the quality the guard's search chose (from
/// `X-Smart-Imaging`): compared with that reference after a WebP round
/// trip, and with an independent linear-light 2x2 box filter; it passes
/// the guard against the core's resize.
#[test]
fn resize_quality_matches_the_core_pipeline() {
    let n = site("sizing-quality");
    let p = n.port();
    let (w, h) = (W / 2, H / 2);
    let r = expect(p, "/debug/photo.jpg?wid=816", &[WEBP], "webp", (w, h));
    let (_, served) = decode_body(&r);
    let result = r.header("X-Smart-Imaging").expect("X-Smart-Imaging");
    let field = |key: &str| {
        result
            .split(' ')
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {result:?}"))
    };
    let quality: u8 = field("quality").parse().unwrap();
    let score: f64 = field("score").parse().unwrap();

    let orig = codecs::decode(photo(), &Limits::default()).unwrap();
    let resized = resize(&orig, w, h).unwrap();
    // Encoded as the module encodes a JPEG source (no sharp YUV).
    let options = webp::Options {
        sharp_yuv: false,
        ..webp::Options::new(quality)
    };
    let reference = webp::decode(&webp::encode_with(&resized, &options).unwrap()).unwrap();
    let db_roundtrip = psnr(&served, &reference);
    assert!(
        db_roundtrip >= 45.0,
        "served vs core resize + WebP: {db_roundtrip:.1} dB"
    );
    let db_resized = psnr(&served, &resized);
    assert!(
        db_resized >= 35.0,
        "served vs core resize: {db_resized:.1} dB"
    );
    // The guard's score, checked independently of the module.
    let ours = guard::score(&resized, &served).unwrap();
    assert!(ours >= 80.0, "SSIMULACRA 2 of the served WebP: {ours:.2}");
    assert!(
        (ours - score).abs() < 0.1,
        "score {score} reported, {ours:.2} here"
    );

    // Independent check: a 2x2 box average in linear light.
    let lin = |v: u8| {
        let v = f64::from(v) / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let enc = |v: f64| {
        let v = if v <= 0.003_130_8 {
            v * 12.92
        } else {
            1.055 * v.powf(1.0 / 2.4) - 0.055
        };
        (v * 255.0).round().clamp(0.0, 255.0) as u8
    };
    let ow = orig.width as usize;
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            for c in 0..3 {
                let s: f64 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| lin(orig.pixels[((2 * y + dy) * ow + 2 * x + dx) * 3 + c]))
                    .sum();
                px.push(enc(s / 4.0));
            }
        }
    }
    let boxed = Image::rgb(w, h, px);
    let db_box = psnr(&served, &boxed);
    assert!(db_box >= 30.0, "served vs 2x2 box filter: {db_box:.1} dB");
    eprintln!(
        "2x downscale, PSNR: vs core resize + WebP {db_roundtrip:.1} dB, vs core resize \
         {db_resized:.1} dB, vs box filter {db_box:.1} dB"
    );
}

#[test]
fn proxied_images_are_resized_too() {
    let n = site("sizing-proxy");
    let p = n.port();
    let r = expect(
        p,
        "/shop/photo.jpg?hei=500",
        &[WEBP, ("Sec-CH-DPR", "2")],
        "webp",
        (W, H),
    );
    assert_eq!(variant(&r), "webp-q100-h500-dpr2");
    expect(p, "/shop/photo.jpg?hei=500", &[WEBP], "webp", (816, 500));
    let r = expect(p, "/shop/photo.jpg?hei=500", &[NO_WEBP], "jpeg", (816, 500));
    assert_vary(&r, &list(&[&["Accept"], &DPR_HINTS]), "proxied");
    expect(
        p,
        "/shop/alpha.png",
        &[NO_WEBP, ("Sec-CH-Width", "120")],
        "png",
        (120, 80),
    );
}

/// README: `bfc=off` turns the module off for that request, "the response
/// is exactly what nginx sends without the module". In a location with
/// `smart_imaging_accept_ch on`, the module still adds `Accept-CH`.
#[test]
fn bfc_off_is_exactly_nginx_without_the_module_also_with_accept_ch() {
    let n = site("sizing-bfc-off-ach");
    let p = n.port();
    let without = get(p, "/off/photo.jpg", &[WEBP]);
    for loc in ["/ach/", "/achboth/", "/achdpr/"] {
        let path = format!("{loc}photo.jpg?wid=400&bfc=off");
        let r = get(p, &path, &[WEBP, ("Sec-CH-DPR", "2")]);
        assert!(r.body == photo(), "{path}: the original was expected");
        assert_eq!(variant(&r), "off");
        assert_eq!(
            r.headers_without(&["Date", "X-Variant"]),
            without.headers_without(&["Date", "X-Variant"]),
            "{path}: not what nginx sends without the module"
        );
    }
}
