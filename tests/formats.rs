//! The format ladder: AVIF for clients that list it, else WebP, else the
//! original; `smart_imaging_formats` and the AVIF limits. What is served
//! is decoded and compared with the original's pixels.

mod common;

use common::*;
use smart_imaging_core::codecs::{self, avif, webp, Image};
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
                // AVIF q68 lands near WebP q85 (>= 35 dB on these samples,
                // see tests/webp.rs); 30 dB leaves room for lossy alpha.
                assert!(db >= 30.0, "{name}: {db:.1} dB");
                assert!(r.body.len() < bytes.len());
                assert_eq!(r.content_length(), Some(r.body.len()));
                assert!(r
                    .header("etag")
                    .unwrap_or("")
                    .contains("-avif+webp-q68-src"));
                table.push(format!(
                    "{name:28} {:>8} -> {:>7} avif {db:5.1} dB",
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
