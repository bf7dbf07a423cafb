//! The format ladder: AVIF for clients that list it, else WebP, else the
//! original; `smart_imaging_formats` and the AVIF limits. What is served
//! is decoded and compared with the original's pixels.

mod common;

use common::*;
use smart_imaging_core::codecs::{self, avif, webp, Image};
use smart_imaging_core::guard;
use smart_imaging_core::metrics::psnr;
use smart_imaging_core::Limits;

const CHROME_ACCEPT: (&str, &str) = (
    "Accept",
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
);

fn server(name: &str, extra: &str) -> Nginx {
    let mut n = Nginx::prepare(name);
    n.link("images/samples", &samples_dir().canonicalize().unwrap());
    n.run(&Config::with_module(&standard_http(extra)));
    n
}

fn original(name: &str) -> (Vec<u8>, Image) {
    let bytes = std::fs::read(samples_dir().join(name)).unwrap();
    let image = codecs::decode(&bytes, &Limits::default()).unwrap();
    (bytes, image)
}

/// Every sample: AVIF, same size, alpha kept, close to the original.
#[test]
fn avif_for_clients_that_list_it() {
    let n = server("fmt-avif", "");
    let mut table = Vec::new();
    for path in list_images(&samples_dir()) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (bytes, orig) = original(&name);
        let r = get(
            n.port(),
            &format!("/images/samples/{name}"),
            &[CHROME_ACCEPT],
        );
        assert_eq!(r.status, 200, "{name}");
        assert!(r.vary_has("accept"), "{name}: no Vary\n{}", r.describe());
        match r.content_type() {
            Some("image/avif") => {
                let served = avif::decode(&r.body).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (served.width, served.height),
                    (orig.width, orig.height),
                    "{name}"
                );
                assert_eq!(served.has_alpha, orig.has_alpha, "{name}: alpha");
                let db = psnr(&orig, &served);
                // The guard's search stops at SSIMULACRA 2 >= 80, about
                // 35 dB or more on these samples; 30 dB leaves room for
                // lossy alpha.
                assert!(db >= 30.0, "{name}: {db:.1} dB");
                // It passed the guard (the samples are under 1 MP, scored
                // whole by the module too).
                let score = guard::score(&orig, &served).unwrap();
                assert!(score >= 80.0, "{name}: SSIMULACRA 2 {score:.2}");
                assert!(r.body.len() < bytes.len());
                assert_eq!(r.content_length(), Some(r.body.len()));
                assert!(r
                    .header("etag")
                    .unwrap_or("")
                    .contains("-avif+webp-q90-src"));
                table.push(format!(
                    "{name:28} {:>8} -> {:>7} avif {db:5.1} dB, score {score:.1}",
                    bytes.len(),
                    r.body.len()
                ));
            }
            other => {
                // The original, when neither format came out smaller.
                assert_eq!(r.body, bytes, "{name}: {other:?} but not the original");
                table.push(format!("{name:28} {:>8} original", bytes.len()));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// `smart_imaging_formats webp`: AVIF clients get WebP.
#[test]
fn formats_directive_limits_the_ladder() {
    let n = server("fmt-webp-only", "smart_imaging_formats webp;");
    let r = get(n.port(), "/images/samples/sk_coffee.jpg", &[CHROME_ACCEPT]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    webp::decode(&r.body).unwrap();
}

/// Over `smart_imaging_avif_max_pixels`, the next format is tried.
#[test]
fn avif_pixel_limit_falls_back_to_webp() {
    let n = server("fmt-avif-limit", "smart_imaging_avif_max_pixels 1000;");
    let r = get(n.port(), "/images/samples/sk_coffee.jpg", &[CHROME_ACCEPT]);
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    let (_, orig) = original("sk_coffee.jpg");
    let served = webp::decode(&r.body).unwrap();
    assert_eq!((served.width, served.height), (orig.width, orig.height));
}

/// Resized and in AVIF: the ladder applies after resizing too.
#[test]
fn avif_resized() {
    let n = server("fmt-avif-resize", "");
    let r = get(
        n.port(),
        "/images/samples/sk_coffee.jpg?wid=300",
        &[CHROME_ACCEPT],
    );
    assert_eq!(r.content_type(), Some("image/avif"), "{}", r.describe());
    let served = avif::decode(&r.body).unwrap();
    assert_eq!((served.width, served.height), (300, 200));
}

const SAFARI_13: (&str, &str) = (
    "User-Agent",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15",
);
const IE_11: (&str, &str) = (
    "User-Agent",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
);
const OLD_ACCEPT: (&str, &str) = ("Accept", "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5");

/// Width and height from a JP2 file's `ihdr` box.
fn jp2_dims(b: &[u8]) -> Option<(u32, u32)> {
    let at = b.windows(4).position(|w| w == b"ihdr")? + 4;
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    Some((be(at + 4), be(at)))
}

/// JPEG 2000 for old Safari, JPEG XR for IE 11: decided by User-Agent, so
/// `Vary: User-Agent` and `Cache-Control: private` (never stored by a
/// shared cache that keys on Accept only).
#[test]
fn legacy_formats_by_user_agent_are_private() {
    let n = server("fmt-legacy", "");
    let url = "/images/samples/dolphin_default_ui.png";
    let (bytes, orig) = original("dolphin_default_ui.png");

    let r = get(n.port(), url, &[OLD_ACCEPT, SAFARI_13]);
    assert_eq!(r.content_type(), Some("image/jp2"), "{}", r.describe());
    assert!(
        r.body.starts_with(b"\0\0\0\x0cjP  \r\n\x87\n"),
        "JP2 signature"
    );
    assert_eq!(jp2_dims(&r.body), Some((orig.width, orig.height)));
    assert!(r.body.len() < bytes.len());
    assert!(
        r.vary_has("user-agent") && r.vary_has("accept"),
        "{}",
        r.describe()
    );
    assert!(
        r.header("cache-control").unwrap_or("").contains("private"),
        "{}",
        r.describe()
    );

    let r = get(n.port(), url, &[OLD_ACCEPT, IE_11]);
    assert_eq!(r.content_type(), Some("image/jxr"), "{}", r.describe());
    assert!(r.body.starts_with(b"II\xbc"), "JPEG XR signature");
    assert!(r.vary_has("user-agent"));
    assert!(r.header("cache-control").unwrap_or("").contains("private"));

    // The same Accept from a browser the User-Agent gives nothing: the
    // original, still varying on User-Agent and private (a cache must not
    // hand it to the old Safari either, nor the JP2 to this one).
    let r = get(n.port(), url, &[OLD_ACCEPT]);
    assert_eq!(r.body, bytes);

    // Formats announced in Accept never make a response private.
    let r = get(n.port(), url, &[CHROME_ACCEPT]);
    assert!(!r.vary_has("user-agent"), "{}", r.describe());
    assert!(!r.header("cache-control").unwrap_or("").contains("private"));
}

/// `smart_imaging_formats avif webp`: no JPEG 2000, no User-Agent in Vary.
#[test]
fn legacy_formats_can_be_turned_off() {
    let n = server("fmt-no-legacy", "smart_imaging_formats avif webp;");
    let (bytes, _) = original("dolphin_default_ui.png");
    let r = get(
        n.port(),
        "/images/samples/dolphin_default_ui.png",
        &[OLD_ACCEPT, SAFARI_13],
    );
    assert_eq!(r.body, bytes);
    assert!(!r.vary_has("user-agent"), "{}", r.describe());
}

/// `smart_imaging_avif_quality` and `smart_imaging_avif_speed`: with the
/// guard off, a lower quality gives a smaller AVIF of the same size; with
/// the guard on, the quality is the search's ceiling, and one too low for
/// any AVIF to pass sends the client to the next format; a fast speed still
/// gives a valid AVIF.
#[test]
fn avif_quality_and_speed_directives() {
    let mut n = Nginx::prepare("fmt-avif-settings");
    n.link("images/samples", &samples_dir().canonicalize().unwrap());
    let location = |name: &str, directives: &str| {
        format!(
            "location /{name}/ {{\n            alias {{{{HTDOCS}}}}/images/;\n            \
             smart_imaging on;\n            smart_imaging_thread_pool smart_imaging;\n            \
             {directives}\n        }}\n        "
        )
    };
    let http = standard_http("").replace(
        "location /images/ {",
        &format!(
            "{}{}{}location /images/ {{",
            location(
                "low",
                "smart_imaging_avif_quality 30; smart_imaging_guard off;"
            ),
            location("lowguard", "smart_imaging_avif_quality 30;"),
            location("fast", "smart_imaging_avif_speed 9;"),
        ),
    );
    n.run(&Config::with_module(&http));
    let (_, orig) = original("sk_astronaut.jpg");
    let get_it = |prefix: &str| {
        get(
            n.port(),
            &format!("/{prefix}/samples/sk_astronaut.jpg"),
            &[CHROME_ACCEPT],
        )
    };
    let body = |prefix: &str| {
        let r = get_it(prefix);
        assert_eq!(
            r.content_type(),
            Some("image/avif"),
            "{prefix}: {}",
            r.describe()
        );
        let img = avif::decode(&r.body).unwrap();
        assert_eq!((img.width, img.height), (orig.width, orig.height));
        (r.body.len(), r.header("etag").unwrap_or("").to_string())
    };
    let (default_len, default_etag) = body("images");
    let (low_len, low_etag) = body("low");
    let (fast_len, _) = body("fast");
    assert!(
        low_len < default_len,
        "q30 {low_len} bytes, default (guarded, up to q90) {default_len} bytes"
    );
    assert!(low_etag.ends_with("-avif+webp-q30-src\""), "{low_etag}");
    assert!(
        default_etag.ends_with("-avif+webp-q90-src\""),
        "{default_etag}"
    );
    assert!(fast_len > 0);
    // Guarded with a ceiling of q30, no AVIF of the photo scores 80: WebP.
    let r = get_it("lowguard");
    assert_eq!(r.content_type(), Some("image/webp"), "{}", r.describe());
    assert!(
        r.header("etag")
            .unwrap_or("")
            .ends_with("-avif+webp-q30-src\""),
        "{}",
        r.describe()
    );
}
