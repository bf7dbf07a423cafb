//! Writes the seed inputs of the fuzz targets (`fuzz/seeds/<target>/`):
//! small copies of corpus images in every format and layout the decoders
//! meet, crafted headers (huge dimensions, truncation, broken CRCs, a
//! scan-count bomb), and request texts for the policy target. The seeds are
//! committed; this only says where they came from and remakes them.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example fuzz_seeds -- [CORPUS_DIR] [OUT_DIR]
//! ```
//!
//! (defaults: `../shared/corpus`, `fuzz/seeds`). Every image is scaled
//! down to at most 48 pixels a side: small seeds keep each execution fast
//! and the committed seeds a few hundred KB.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use mozjpeg::{ColorSpace, Compress, Marker};
use png::{BitDepth, ColorType, Encoder};
use smart_imaging_core::codecs::{self, jpeg, Effort, Encoding, Format, Image, Tuning};
use smart_imaging_core::{resize, Limits};

/// Corpus images the seeds are made from, and the longest side kept.
const SOURCES: &[(&str, u32)] = &[
    ("sk_coffee.jpg", 48),
    ("kde_grey.jpg", 40),
    ("sk_hubble.jpg", 32),
    ("deb_joy_logo.png", 40),
    ("sk_horse_alpha.png", 40),
    ("dolphin_default_ui.png", 48),
    ("sk_text.png", 48),
    ("mate_silk_alpha.png", 32),
];

/// Control bytes of the transcode target's seeds (see its `plan`): every
/// format, guard on and off, each size, `qlt`, the pixel cap.
const TRANSCODE_CONTROLS: &[u8] = &[0x08, 0x09, 0x1A, 0x2B, 0x34, 0x4D, 0x8E, 0x0F, 0x00, 0x3C];

fn main() {
    let mut args = std::env::args().skip(1);
    let corpus = PathBuf::from(args.next().unwrap_or_else(|| "../shared/corpus".into()));
    let out = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/seeds".into()));
    for target in ["decode", "transcode", "container", "policy"] {
        let dir = out.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("removing old seeds");
        }
        fs::create_dir_all(&dir).expect("creating the seed directory");
    }
    let write = |target: &str, name: &str, bytes: &[u8]| {
        fs::write(out.join(target).join(name), bytes).expect("writing a seed");
    };

    let mut sources = Vec::new();
    for &(file, side) in SOURCES {
        let bytes = fs::read(corpus.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.join(file).display()));
        let image = codecs::decode(&bytes, &Limits::default()).expect("corpus image decodes");
        let stem = Path::new(file).file_stem().unwrap().to_string_lossy();
        sources.push((stem.into_owned(), small(&image, side)));
    }

    // decode: each format and layout, from each source.
    let icc = common::icc_profile("Display P3 (seed)", 0);
    for (stem, image) in &sources {
        let opaque = without_alpha(image);
        write(
            "decode",
            &format!("{stem}.jpg"),
            &jpeg_file(&opaque, Jpeg::Progressive),
        );
        write(
            "decode",
            &format!("{stem}.png"),
            &png_rgb(image, BitDepth::Eight),
        );
        for format in [Format::WebP, Format::Avif, Format::Jp2, Format::Jxr] {
            if let Some(bytes) = encode(format, image, 70) {
                write("decode", &format!("{stem}.{}", format.name()), &bytes);
            }
        }
    }
    let (_, photo) = &sources[0];
    let (_, alpha) = &sources[4];
    let mut tagged = photo.clone();
    tagged.icc_profile = Some(icc.clone());
    let mut tagged_alpha = alpha.clone();
    tagged_alpha.icc_profile = Some(icc.clone());
    let jp2 = encode(Format::Jp2, &tagged_alpha, 70).expect("JPEG 2000");
    let jxr = encode(Format::Jxr, &tagged_alpha, 70).expect("JPEG XR");
    let layouts: Vec<(&str, Vec<u8>)> = vec![
        ("baseline.jpg", jpeg_file(photo, Jpeg::Baseline)),
        ("gray.jpg", jpeg_file(photo, Jpeg::Gray)),
        ("exif-rotated.jpg", jpeg_file(photo, Jpeg::Exif(6))),
        ("icc.jpg", jpeg_file(&tagged, Jpeg::Progressive)),
        ("gray.png", png_gray(photo, false)),
        ("gray-alpha.png", png_gray(alpha, true)),
        ("16bit.png", png_rgb(photo, BitDepth::Sixteen)),
        ("16bit-alpha.png", png_rgb(alpha, BitDepth::Sixteen)),
        ("palette.png", png_palette(alpha)),
        (
            "icc.png",
            png_chunk(&png_rgb(photo, BitDepth::Eight), b"iCCP", &iccp(&icc)),
        ),
        (
            "gamma.png",
            png_chunk(
                &png_rgb(photo, BitDepth::Eight),
                b"gAMA",
                &[0, 0, 0x9C, 0x40],
            ),
        ),
        (
            "text.png",
            png_chunk(&png_rgb(photo, BitDepth::Eight), b"tEXt", b"Comment\0seed"),
        ),
        ("icc.webp", encode(Format::WebP, &tagged, 70).unwrap()),
        (
            "icc-alpha.avif",
            encode(Format::Avif, &tagged_alpha, 70).unwrap(),
        ),
        ("icc-alpha.jp2", jp2.clone()),
        ("icc-alpha.jxr", jxr.clone()),
        (
            "lossless.webp",
            codecs::webp::encode_with(alpha, &codecs::webp::Options::lossless_level(3)).unwrap(),
        ),
    ];
    for (name, bytes) in &layouts {
        write("decode", name, bytes);
    }

    // decode: crafted headers.
    let png = png_rgb(photo, BitDepth::Eight);
    let jpg = jpeg_file(photo, Jpeg::Baseline);
    let crafted: Vec<(&str, Vec<u8>)> = vec![
        ("huge.png", png_huge()),
        ("truncated.png", png[..png.len() / 2].to_vec()),
        ("crc-idat.png", break_crc(&png, b"IDAT")),
        (
            "crc-text.png",
            break_crc(&png_chunk(&png, b"tEXt", b"Comment\0seed"), b"tEXt"),
        ),
        ("huge.jpg", jpeg_huge(&jpg)),
        ("truncated.jpg", jpg[..jpg.len() * 2 / 3].to_vec()),
        ("scan-bomb.jpg", jpeg_scan_bomb(&jpg)),
        ("huge.webp", webp_huge()),
        ("huge.jp2", jp2_huge(&jp2)),
        ("truncated.jp2", jp2[..jp2.len() / 2].to_vec()),
        ("truncated.jxr", jxr[..jxr.len() / 2].to_vec()),
    ];
    for (name, bytes) in &crafted {
        write("decode", name, bytes);
    }

    // transcode: a control byte, then a JPEG or PNG.
    let bodies: Vec<(String, Vec<u8>)> = sources
        .iter()
        .map(|(stem, image)| {
            match image.has_alpha || stem.ends_with("ui") || stem.ends_with("text") {
                true => (format!("{stem}.png"), png_rgb(image, BitDepth::Eight)),
                false => (format!("{stem}.jpg"), jpeg_file(image, Jpeg::Progressive)),
            }
        })
        .chain(
            layouts
                .iter()
                .filter(|(name, _)| name.ends_with(".jpg") || name.ends_with(".png"))
                .map(|(name, bytes)| (name.to_string(), bytes.clone())),
        )
        .collect();
    for (i, (name, body)) in bodies.iter().enumerate() {
        let control = TRANSCODE_CONTROLS[i % TRANSCODE_CONTROLS.len()];
        let mut seed = vec![control];
        seed.extend_from_slice(body);
        write("transcode", &format!("{control:02x}-{name}"), &seed);
    }

    // container: header, flips, ICC, pixels (see the target's Case::parse).
    let (_, ui) = &sources[5];
    for (i, format) in Format::ALL.into_iter().enumerate() {
        for (image, with_icc, flips) in [(photo, false, 0u8), (alpha, true, 2)] {
            let image = small(image, 16);
            let mut seed = vec![
                i as u8 | if image.has_alpha { 8 } else { 0 } | if with_icc { 16 } else { 0 },
                (image.width - 1) as u8,
                (image.height - 1) as u8,
                70,
                flips,
            ];
            // The target's ICC length field: the length less 132.
            seed.extend_from_slice(&((icc.len() - 132) as u16).to_le_bytes());
            for f in 0..flips {
                seed.extend_from_slice(&[40 + 13 * f, 0, 0x55]);
            }
            if with_icc {
                seed.extend_from_slice(&icc);
            }
            seed.extend_from_slice(&image.pixels);
            let kind = if image.has_alpha { "alpha" } else { "opaque" };
            write("container", &format!("{}-{kind}", format.name()), &seed);
        }
    }
    let graphic = small(ui, 24);
    let mut seed = vec![1 | 32 | 64, 23, (graphic.height - 1) as u8, 90, 0, 0, 0];
    seed.extend_from_slice(&graphic.pixels);
    write("container", "webp-graphic", &seed);

    for (name, text) in POLICY_SEEDS {
        write("policy", name, text.as_bytes());
    }
}

/// `image` scaled down to at most `side` pixels on its longer side.
fn small(image: &Image, side: u32) -> Image {
    let scale = f64::from(side) / f64::from(image.width.max(image.height));
    if scale >= 1.0 {
        return image.clone();
    }
    let w = ((f64::from(image.width) * scale).round() as u32).max(1);
    let h = ((f64::from(image.height) * scale).round() as u32).max(1);
    resize::resize(image, w, h).expect("downscaling")
}

fn without_alpha(image: &Image) -> Image {
    if !image.has_alpha {
        return image.clone();
    }
    Image {
        pixels: image
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        has_alpha: false,
        ..image.clone()
    }
}

fn encode(format: Format, image: &Image, quality: u8) -> Option<Vec<u8>> {
    let encoding = Encoding {
        quality,
        effort: Effort::Final,
        from_png: false,
        guarded: false,
        tuning: Tuning::DEFAULT,
    };
    (format.codec().encode)(image, &encoding).ok()
}

enum Jpeg {
    Progressive,
    Baseline,
    Gray,
    /// EXIF APP1 with this orientation.
    Exif(u16),
}

fn jpeg_file(image: &Image, kind: Jpeg) -> Vec<u8> {
    let image = without_alpha(image);
    if matches!(kind, Jpeg::Progressive) {
        return jpeg::encode(&image, 80).expect("JPEG");
    }
    let gray = matches!(kind, Jpeg::Gray);
    let mut c = Compress::new(if gray {
        ColorSpace::JCS_GRAYSCALE
    } else {
        ColorSpace::JCS_RGB
    });
    c.set_fastest_defaults();
    c.set_size(image.width as usize, image.height as usize);
    c.set_quality(80.0);
    let mut started = c.start_compress(Vec::new()).expect("JPEG");
    if let Jpeg::Exif(orientation) = kind {
        // TIFF, big-endian: IFD0 at 8 with one entry, Orientation (SHORT).
        let mut app1 = b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        app1.extend_from_slice(&orientation.to_be_bytes());
        app1.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        started.write_marker(Marker::APP(1), &app1);
    }
    let pixels: Vec<u8> = if gray {
        image
            .pixels
            .chunks_exact(3)
            .map(|p| ((u16::from(p[0]) * 3 + u16::from(p[1]) * 6 + u16::from(p[2])) / 10) as u8)
            .collect()
    } else {
        image.pixels.clone()
    };
    started.write_scanlines(&pixels).expect("JPEG");
    started.finish().expect("JPEG")
}

/// The JPEG with its frame header claiming 65500x65500 pixels.
fn jpeg_huge(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        .expect("a frame header");
    // FF C0, length (2), precision (1), height (2), width (2).
    out[sof + 5..sof + 7].copy_from_slice(&65500u16.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&65500u16.to_be_bytes());
    out
}

/// The JPEG with a comment holding more start-of-scan marker bytes than
/// `jpeg::MAX_SCANS` (the check counts marker bytes, as a decoder would
/// meet scans).
fn jpeg_scan_bomb(jpeg: &[u8]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::repeat_n([0xFF, 0xDA], jpeg::MAX_SCANS + 1)
        .flatten()
        .collect();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png_file(width: u32, height: u32, color: ColorType, depth: BitDepth, data: &[u8]) -> Vec<u8> {
    png_with(width, height, color, depth, data, None)
}

fn png_with(
    width: u32,
    height: u32,
    color: ColorType,
    depth: BitDepth,
    data: &[u8],
    palette: Option<(Vec<u8>, Vec<u8>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if let Some((plte, trns)) = palette {
        encoder.set_palette(plte);
        encoder.set_trns(trns);
    }
    let mut writer = encoder.write_header().expect("PNG header");
    writer.write_image_data(data).expect("PNG data");
    writer.finish().expect("PNG");
    out
}

fn png_rgb(image: &Image, depth: BitDepth) -> Vec<u8> {
    let color = if image.has_alpha {
        ColorType::Rgba
    } else {
        ColorType::Rgb
    };
    let data: Vec<u8> = match depth {
        BitDepth::Sixteen => image.pixels.iter().flat_map(|&v| [v, v ^ 0x5A]).collect(),
        _ => image.pixels.clone(),
    };
    png_file(image.width, image.height, color, depth, &data)
}

fn png_gray(image: &Image, with_alpha: bool) -> Vec<u8> {
    let ch = image.channels();
    let data: Vec<u8> = image
        .pixels
        .chunks_exact(ch)
        .flat_map(|p| {
            let y = ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8;
            let a = if ch == 4 { p[3] } else { 255 };
            if with_alpha {
                vec![y, a]
            } else {
                vec![y]
            }
        })
        .collect();
    let color = if with_alpha {
        ColorType::GrayscaleAlpha
    } else {
        ColorType::Grayscale
    };
    png_file(image.width, image.height, color, BitDepth::Eight, &data)
}

/// An indexed PNG with a transparency table: colours reduced to 3-3-2
/// bits, alpha to on/off.
fn png_palette(image: &Image) -> Vec<u8> {
    let ch = image.channels();
    let mut plte = Vec::new();
    let mut trns = Vec::new();
    for i in 0..=255u8 {
        plte.extend_from_slice(&[i & 0xE0, (i << 3) & 0xE0, (i << 6) & 0xC0]);
        trns.push(if i == 0 { 0 } else { 255 });
    }
    let data: Vec<u8> = image
        .pixels
        .chunks_exact(ch)
        .map(|p| {
            if ch == 4 && p[3] < 128 {
                0
            } else {
                (p[0] & 0xE0) | ((p[1] >> 3) & 0x1C) | (p[2] >> 6) | 1
            }
        })
        .collect();
    png_with(
        image.width,
        image.height,
        ColorType::Indexed,
        BitDepth::Eight,
        &data,
        Some((plte, trns)),
    )
}

/// A PNG chunk's bytes: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

/// `png` with a chunk inserted after IHDR.
fn png_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let after_ihdr = 8 + 8 + 13 + 4;
    let mut out = png[..after_ihdr].to_vec();
    out.extend_from_slice(&chunk(kind, data));
    out.extend_from_slice(&png[after_ihdr..]);
    out
}

/// `png` with the CRC of its first `kind` chunk wrong.
fn break_crc(png: &[u8], kind: &[u8; 4]) -> Vec<u8> {
    let mut out = png.to_vec();
    let at = out.windows(4).position(|w| w == kind).expect("the chunk") - 4;
    let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
    out[at + 8 + len] ^= 0xFF;
    out
}

/// A PNG whose header claims 100000x100000 RGBA pixels, with one small
/// IDAT: the decompression bomb the pixel limit stops.
fn png_huge() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    out.extend_from_slice(&chunk(b"IHDR", &ihdr));
    // zlib: an empty stored block, not final.
    out.extend_from_slice(&chunk(b"IDAT", &[0x78, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF]));
    out.extend_from_slice(&chunk(b"IEND", &[]));
    out
}

/// A lossless WebP header claiming 16384x16384 (one more than WebP
/// allows) and nothing after it.
fn webp_huge() -> Vec<u8> {
    let mut vp8l = vec![0x2F];
    let bits: u32 = 16383 | (16383 << 14) | (1 << 28);
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0; 8]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    out
}

/// A JPEG 2000 file whose image header claims 1000000x1000000.
fn jp2_huge(jp2: &[u8]) -> Vec<u8> {
    let mut out = jp2.to_vec();
    let at = out.windows(4).position(|w| w == b"ihdr").expect("ihdr") + 4;
    out[at..at + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&1_000_000u32.to_be_bytes());
    out
}

/// An iCCP chunk's data: name, compression method 0, zlib stream.
fn iccp(profile: &[u8]) -> Vec<u8> {
    let mut out = b"seed\0\0".to_vec();
    out.extend_from_slice(&common::zlib_stored(profile));
    out
}

/// The policy target's seeds: directives (outer level, then `location`),
/// the query string, request headers.
const POLICY_SEEDS: &[(&str, &str)] = &[
    (
        "chrome.txt",
        "smart_imaging on\n\
         ?wid=400&dpr=on,2\n\
         Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36\n",
    ),
    (
        "safari-jp2.txt",
        "smart_imaging_formats webp jp2 jxr\n\
         ?hei=300\n\
         Accept: image/*;q=0.8\n\
         User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1 Safari/605.1.15\n",
    ),
    (
        "ie11-jxr.txt",
        "smart_imaging_formats jxr\n\
         Accept: image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5\n\
         User-Agent: Mozilla/5.0 (Windows NT 10.0; Trident/7.0; rv:11.0) like Gecko\n",
    ),
    (
        "client-hints.txt",
        "smart_imaging_dpr on\n\
         smart_imaging_dpr_max 2.5\n\
         smart_imaging_dpr_header X-Device-DPR\n\
         location\n\
         smart_imaging_max_output_size 800 -\n\
         smart_imaging_max_output_pixels 100000\n\
         Accept: image/webp\n\
         Sec-CH-DPR: 3\n\
         Sec-CH-Width: 828\n\
         X-Device-DPR: 1.75\n",
    ),
    (
        "network.txt",
        "smart_imaging_network on\n\
         smart_imaging_network_thresholds ect=2g downlink=1.5 rtt=300ms\n\
         smart_imaging_network_quality_step 20\n\
         smart_imaging_guard 72.5\n\
         smart_imaging_guard_encodes 4\n\
         ?qlt=80,1&network=on\n\
         Accept: image/avif\n\
         Save-Data: on\n\
         ECT: 3g\n\
         Downlink: 0.5\n\
         RTT: 450\n",
    ),
    (
        "qualities.txt",
        "smart_imaging_webp_quality 75\n\
         smart_imaging_avif_quality 60\n\
         smart_imaging_jpeg_quality 85\n\
         smart_imaging_avif_speed 8\n\
         smart_imaging_avif_max_pixels 2000000\n\
         smart_imaging_guard off\n\
         location\n\
         smart_imaging_formats avif webp\n\
         ?wid=100&hei=100&dpr=on%2C1.5\n\
         Accept: image/webp;q=0.9, image/avif;q=0\n",
    ),
    (
        "server-directives.txt",
        "smart_imaging_ttl 1h30m\n\
         smart_imaging_buffer 10m\n\
         smart_imaging_max_pixels 16000000\n\
         smart_imaging_max_jobs 32\n\
         smart_imaging_timeout 10s\n\
         smart_imaging_max_running auto\n\
         smart_imaging_stash_path /var/cache/stash max_size=64m ttl=60s\n\
         smart_imaging_background on\n\
         smart_imaging_accept_ch critical\n\
         smart_imaging_debug_header on\n\
         smart_imaging_variant_only off\n\
         location\n\
         smart_imaging_stash_path off\n\
         smart_imaging on\n\
         ?bfc=on&wid=abc&hei=0&dpr=7&qlt=101\n",
    ),
    ("bfc-off.txt", "smart_imaging on\n?a=1&bfc=off\nAccept: image/webp\n"),
];
