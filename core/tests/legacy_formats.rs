//! JPEG 2000 and JPEG XR encoders, checked with independent decoders: the
//! reference tools `opj_decompress` (Debian `libopenjp2-tools`) and
//! `JxrDecApp` (`libjxr-tools`), run on files written to a temporary
//! directory. Tests that need a tool skip (with a message) if it is not
//! installed; `scripts/install-deps.sh` installs both.
//!
//! The in-process decoders (`jp2::decode`, `jxr::decode`, for the quality
//! guard) are checked against the same tools: pixel-identical output on
//! what the encoders write, and errors (never a crash) on anything else.
//!
//! The corpus test (`$SMART_IMAGING_CORPUS` or `../shared/corpus` next to
//! the repository, skipped without it) prints a table; run with
//! `--nocapture` to see it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use smart_imaging_core::codecs::{self, jp2, jxr, Image};
use smart_imaging_core::metrics::psnr;
use smart_imaging_core::{KeepReason, Limits};

const QUALITY: u8 = 85;
const MIN_PSNR: f64 = 30.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Jp2,
    Jxr,
}

impl Format {
    fn encode(self, img: &Image, quality: u8) -> Result<Vec<u8>, KeepReason> {
        match self {
            Format::Jp2 => jp2::encode(img, quality),
            Format::Jxr => jxr::encode(img, quality),
        }
    }

    /// Decodes with our in-process decoder.
    fn decode_in_process(self, bytes: &[u8]) -> Result<Image, String> {
        match self {
            Format::Jp2 => jp2::decode(bytes),
            Format::Jxr => jxr::decode(bytes),
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Format::Jp2 => "opj_decompress",
            Format::Jxr => "JxrDecApp",
        }
    }

    /// Whether the reference decoder is installed (prints why not).
    fn tool_available(self) -> bool {
        let found = Command::new(self.tool()).arg("-h").output().is_ok();
        if !found {
            println!(
                "{} not installed (Debian: {}): decoding checks skipped",
                self.tool(),
                match self {
                    Format::Jp2 => "libopenjp2-tools",
                    Format::Jxr => "libjxr-tools",
                }
            );
        }
        found
    }

    /// Decodes with the reference tool: JPEG 2000 to PNG, JPEG XR to BMP
    /// (24-bit BGR, or 32-bit BGRA if `alpha`).
    fn decode(self, bytes: &[u8], alpha: bool) -> Image {
        let dir = TempDir::new();
        let run = |args: &[&str]| {
            let out = Command::new(self.tool()).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{} {args:?} failed: {}{}",
                self.tool(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        match self {
            Format::Jp2 => {
                let (input, output) = (dir.path("in.jp2"), dir.path("out.png"));
                fs::write(&input, bytes).unwrap();
                run(&[
                    "-i",
                    input.to_str().unwrap(),
                    "-o",
                    output.to_str().unwrap(),
                ]);
                read_png(&output)
            }
            Format::Jxr => {
                let (input, output) = (dir.path("in.jxr"), dir.path("out.bmp"));
                fs::write(&input, bytes).unwrap();
                let format = if alpha { "22" } else { "0" }; // 32bppBGRA / 24bppBGR
                run(&[
                    "-i",
                    input.to_str().unwrap(),
                    "-o",
                    output.to_str().unwrap(),
                    "-c",
                    format,
                ]);
                read_bmp(&fs::read(&output).unwrap())
            }
        }
    }
}

const FORMATS: [Format; 2] = [Format::Jp2, Format::Jxr];

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smart-imaging-legacy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_png(path: &Path) -> Image {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    pixels.truncate(info.buffer_size());
    let has_alpha = match info.color_type {
        png::ColorType::Rgb => false,
        png::ColorType::Rgba => true,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    Image {
        width: info.width,
        height: info.height,
        pixels,
        has_alpha,
        icc_profile: None,
    }
}

/// An uncompressed 24- or 32-bit BMP (what JxrDecApp writes): BGR(A) rows,
/// padded to 4 bytes, bottom-up unless the height is negative.
fn read_bmp(bmp: &[u8]) -> Image {
    let u32_at = |at: usize| u32::from_le_bytes(bmp[at..at + 4].try_into().unwrap());
    assert_eq!(&bmp[..2], b"BM", "not a BMP");
    let offset = u32_at(10) as usize;
    let width = u32_at(18) as usize;
    let height = u32_at(22) as i32;
    let bits = u16::from_le_bytes([bmp[28], bmp[29]]);
    assert_eq!(u32_at(30), 0, "compressed BMP");
    let channels = match bits {
        24 => 3,
        32 => 4,
        _ => panic!("unexpected BMP depth {bits}"),
    };
    let (rows, bottom_up) = (height.unsigned_abs() as usize, height > 0);
    let stride = (width * channels).div_ceil(4) * 4;
    let mut pixels = Vec::with_capacity(width * rows * channels);
    for y in 0..rows {
        let row = if bottom_up { rows - 1 - y } else { y };
        let start = offset + row * stride;
        for px in bmp[start..start + width * channels].chunks_exact(channels) {
            pixels.extend_from_slice(&[px[2], px[1], px[0]]);
            if channels == 4 {
                pixels.push(px[3]);
            }
        }
    }
    Image {
        width: width as u32,
        height: rows as u32,
        pixels,
        has_alpha: channels == 4,
        icc_profile: None,
    }
}

fn rgb(width: u32, height: u32, pixels: Vec<u8>) -> Image {
    Image::rgb(width, height, pixels)
}

/// [`common::photo_like`] with an alpha channel: opaque left, fading to
/// fully transparent right, plus a transparent hole.
fn with_alpha(img: &Image) -> Image {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut pixels = Vec::with_capacity(w * h * 4);
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        let (x, y) = (i % w, i / w);
        let hole = (x as i64 - w as i64 / 3).pow(2) + (y as i64 - h as i64 / 2).pow(2)
            < (h as i64 / 5).pow(2);
        let ramp = if w > 1 { x * 255 / (w - 1) } else { 0 };
        pixels.extend_from_slice(px);
        pixels.push(if hole { 0 } else { 255 - ramp as u8 });
    }
    Image {
        pixels,
        has_alpha: true,
        ..img.clone()
    }
}

fn alpha_plane(img: &Image) -> Vec<u8> {
    img.pixels.chunks_exact(4).map(|px| px[3]).collect()
}

/// Largest absolute difference between two alpha planes.
fn max_alpha_error(a: &Image, b: &Image) -> u8 {
    alpha_plane(a)
        .iter()
        .zip(alpha_plane(b))
        .map(|(x, y)| x.abs_diff(y))
        .max()
        .unwrap_or(0)
}

/// Top-level JP2 boxes and the boxes inside `jp2h`: (type, payload).
fn jp2_boxes(bytes: &[u8]) -> Vec<([u8; 4], &[u8])> {
    fn split(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut boxes = Vec::new();
        while !data.is_empty() {
            assert!(data.len() >= 8, "truncated box header");
            let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            assert!(len >= 8 && len <= data.len(), "bad box length {len}");
            boxes.push((data[4..8].try_into().unwrap(), &data[8..len]));
            data = &data[len..];
        }
        boxes
    }
    let top = split(bytes);
    let mut all = top.clone();
    for (kind, payload) in top {
        if &kind == b"jp2h" {
            all.extend(split(payload));
        }
    }
    all
}

fn find_box<'a>(boxes: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes.iter().find(|(k, _)| k == kind).map(|(_, p)| *p)
}

#[test]
fn jp2_container_layout() {
    for alpha in [false, true] {
        let base = rgb(70, 50, common::photo_like(70, 50));
        let img = if alpha { with_alpha(&base) } else { base };
        let bytes = jp2::encode(&img, QUALITY).unwrap();
        let boxes = jp2_boxes(&bytes);
        let kinds: Vec<&[u8]> = boxes.iter().map(|(k, _)| &k[..]).collect();
        let mut expected: Vec<&[u8]> = vec![b"jP  ", b"ftyp", b"jp2h", b"jp2c", b"ihdr", b"colr"];
        if alpha {
            expected.push(b"cdef");
        }
        assert_eq!(kinds, expected);
        assert_eq!(find_box(&boxes, b"jP  ").unwrap(), [0x0D, 0x0A, 0x87, 0x0A]);
        assert_eq!(&find_box(&boxes, b"ftyp").unwrap()[..4], b"jp2 ");
        let ihdr = find_box(&boxes, b"ihdr").unwrap();
        assert_eq!(&ihdr[..4], 50u32.to_be_bytes());
        assert_eq!(&ihdr[4..8], 70u32.to_be_bytes());
        assert_eq!(&ihdr[8..10], (img.channels() as u16).to_be_bytes());
        assert_eq!(ihdr[10], 7, "8 bits unsigned");
        // Enumerated sRGB.
        assert_eq!(find_box(&boxes, b"colr").unwrap(), [1, 0, 0, 0, 0, 0, 16]);
        if alpha {
            // 4 channels; channel 3 is opacity (type 1) of the whole image.
            let cdef = find_box(&boxes, b"cdef").unwrap();
            assert_eq!(&cdef[..2], [0, 4]);
            assert_eq!(&cdef[2 + 3 * 6..], [0, 3, 0, 1, 0, 0]);
        }
        let codestream = find_box(&boxes, b"jp2c").unwrap();
        assert_eq!(&codestream[..2], [0xFF, 0x4F], "SOC");
        assert_eq!(&codestream[codestream.len() - 2..], [0xFF, 0xD9], "EOC");
    }
}

/// A stand-in ICC profile (the encoders copy it verbatim; decoders are not
/// asked to use it).
fn fake_icc(len: usize) -> Vec<u8> {
    let mut icc: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    icc[..4].copy_from_slice(&(len as u32).to_be_bytes());
    icc[12..16].copy_from_slice(b"mntr");
    icc[16..20].copy_from_slice(b"RGB ");
    icc[36..40].copy_from_slice(b"acsp");
    icc
}

#[test]
fn icc_profile_is_embedded() {
    let icc = fake_icc(777);
    let img = Image {
        icc_profile: Some(icc.clone()),
        ..rgb(40, 30, common::photo_like(40, 30))
    };
    let bytes = jp2::encode(&img, QUALITY).unwrap();
    let boxes = jp2_boxes(&bytes);
    let colr = find_box(&boxes, b"colr").unwrap();
    assert_eq!(&colr[..3], [2, 0, 0], "method 2: ICC profile");
    assert_eq!(&colr[3..], &icc[..]);

    let bytes = jxr::encode(&img, QUALITY).unwrap();
    assert!(
        bytes.windows(icc.len()).any(|w| w == &icc[..]),
        "ICC profile not in the JPEG XR container"
    );
    if Format::Jxr.tool_available() {
        let back = Format::Jxr.decode(&bytes, false);
        assert!(
            psnr(
                &Image {
                    icc_profile: None,
                    ..img
                },
                &back
            ) > MIN_PSNR
        );
    }
}

#[test]
fn synthetic_round_trips() {
    let photo = rgb(333, 217, common::noisy_photo(333, 217));
    let quadrants = rgb(96, 64, common::quadrants(96, 64));
    let images = [
        ("photo", photo.clone()),
        ("quadrants", quadrants),
        ("photo+alpha", with_alpha(&photo)),
    ];
    for format in FORMATS {
        if !format.tool_available() {
            continue;
        }
        for (name, img) in &images {
            let bytes = format.encode(img, QUALITY).unwrap();
            let back = format.decode(&bytes, img.has_alpha);
            assert_eq!(
                (back.width, back.height, back.has_alpha),
                (img.width, img.height, img.has_alpha),
                "{format:?} {name}"
            );
            let p = psnr(img, &back);
            println!("{format:?} {name}: {} bytes, PSNR {p:.2} dB", bytes.len());
            assert!(p >= MIN_PSNR, "{format:?} {name}: PSNR {p:.2}");
            if img.has_alpha {
                let error = max_alpha_error(img, &back);
                println!("{format:?} {name}: largest alpha error {error}");
                let limit = match format {
                    // A separate plane with a fine quantiser.
                    Format::Jxr => 4,
                    // A component like the others, at the image's rate.
                    Format::Jp2 => 48,
                };
                assert!(error <= limit, "{format:?} {name}: alpha error {error}");
            }
        }
    }
}

#[test]
fn quality_orders_sizes_and_fidelity() {
    let img = rgb(256, 192, common::noisy_photo(256, 192));
    for format in FORMATS {
        let sizes: Vec<usize> = [10, 50, 85, 100]
            .iter()
            .map(|&q| format.encode(&img, q).unwrap().len())
            .collect();
        assert!(
            sizes.windows(2).all(|w| w[0] < w[1]),
            "{format:?}: sizes not increasing with quality: {sizes:?}"
        );
        // Out-of-range qualities are clamped, not refused.
        assert_eq!(
            format.encode(&img, 0).unwrap(),
            format.encode(&img, 1).unwrap()
        );
        assert_eq!(
            format.encode(&img, 255).unwrap(),
            format.encode(&img, 100).unwrap()
        );
    }
}

#[test]
fn odd_shapes_encode_and_decode() {
    let shapes: [(u32, u32); 10] = [
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 300),
        (300, 1),
        (17, 17),
        (1025, 3),
        (3, 1025),
        (4097, 2),
        (2, 2049),
    ];
    for format in FORMATS {
        let decode = format.tool_available();
        for (w, h) in shapes {
            for alpha in [false, true] {
                let base = rgb(
                    w,
                    h,
                    common::noise((w * h * 3) as usize, u64::from(w * 31 + h)),
                );
                let img = if alpha { with_alpha(&base) } else { base };
                for quality in [1, QUALITY, 100] {
                    let bytes = format.encode(&img, quality).unwrap_or_else(|e| {
                        panic!("{format:?} {w}x{h} alpha={alpha} q{quality}: {e}")
                    });
                    if decode && quality == QUALITY {
                        let back = format.decode(&bytes, alpha);
                        assert_eq!(
                            (back.width, back.height, back.has_alpha),
                            (w, h, alpha),
                            "{format:?} {w}x{h}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn bad_input_is_refused() {
    for format in FORMATS {
        let mut img = rgb(8, 8, vec![0; 8 * 8 * 3]);
        img.pixels.pop();
        assert!(
            matches!(format.encode(&img, QUALITY), Err(KeepReason::Encode(_))),
            "{format:?}: short buffer"
        );
        let empty = rgb(0, 5, Vec::new());
        assert!(
            matches!(
                format.encode(&empty, QUALITY),
                Err(KeepReason::Unsupported(_))
            ),
            "{format:?}: no pixels"
        );
        // Wider than the encoders accept, with a consistent buffer.
        let side = jp2::JP2_MAX_SIDE.max(jxr::JXR_MAX_SIDE) + 1;
        let wide = rgb(side, 1, vec![0; side as usize * 3]);
        assert!(
            matches!(
                format.encode(&wide, QUALITY),
                Err(KeepReason::Unsupported(_))
            ),
            "{format:?}: too wide"
        );
    }
}

/// One format's results on one corpus image.
#[derive(Clone, Copy)]
struct Outcome {
    bytes: usize,
    /// Of the in-process decode against the source.
    psnr: f64,
    encode_ms_per_mp: f64,
    /// In process.
    decode_ms_per_mp: f64,
    /// Compared with the reference decoder's output (identical).
    referenced: bool,
}

struct Row {
    file: String,
    kind: String,
    original: usize,
    /// Per format.
    results: Vec<Outcome>,
}

fn check(path: &Path, kind: String, reference: [bool; 2]) -> Result<Row, String> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let input = fs::read(path).map_err(|e| format!("{file}: {e}"))?;
    let mut img = codecs::decode(&input, &Limits::default()).map_err(|e| format!("{file}: {e}"))?;
    // Compare pixels as stored: a decoder applying the ICC profile would
    // change them.
    img.icc_profile = None;
    let megapixels = f64::from(img.width) * f64::from(img.height) / 1e6;
    let mut results = Vec::new();
    for (format, referenced) in FORMATS.into_iter().zip(reference) {
        let start = Instant::now();
        let bytes = format
            .encode(&img, QUALITY)
            .map_err(|e| format!("{file}: {format:?}: {e}"))?;
        let encode_ms_per_mp = start.elapsed().as_secs_f64() * 1000.0 / megapixels;
        let start = Instant::now();
        let back = format
            .decode_in_process(&bytes)
            .map_err(|e| format!("{file}: {format:?}: {e}"))?;
        let decode_ms_per_mp = start.elapsed().as_secs_f64() * 1000.0 / megapixels;
        if (back.width, back.height, back.has_alpha) != (img.width, img.height, img.has_alpha) {
            return Err(format!("{file}: {format:?}: decoded shape differs"));
        }
        let p = psnr(&img, &back);
        if p < MIN_PSNR {
            return Err(format!("{file}: {format:?}: PSNR {p:.2} dB < {MIN_PSNR}"));
        }
        if format == Format::Jxr && img.has_alpha && max_alpha_error(&img, &back) > 4 {
            return Err(format!("{file}: {format:?}: alpha changed by more than 4"));
        }
        if referenced && format.decode(&bytes, img.has_alpha).pixels != back.pixels {
            return Err(format!(
                "{file}: {format:?}: decoded differently by {}",
                format.tool()
            ));
        }
        results.push(Outcome {
            bytes: bytes.len(),
            psnr: p,
            encode_ms_per_mp,
            decode_ms_per_mp,
            referenced,
        });
    }
    Ok(Row {
        file,
        kind,
        original: input.len(),
        results,
    })
}

/// Every corpus image at quality 85 through both encoders and the
/// in-process decoders; the transparent ones and every third of the others
/// also through the reference decoders, which must decode them to the same
/// pixels (all of them with `SMART_IMAGING_LEGACY_ALL=1`: slower). Photos
/// (JPEG originals) must on average shrink.
#[test]
fn corpus() {
    let Some(dir) = common::corpus_dir() else {
        println!("corpus not found (set SMART_IMAGING_CORPUS): skipped");
        return;
    };
    let tools = FORMATS.map(Format::tool_available);
    let reference_all = std::env::var_os("SMART_IMAGING_LEGACY_ALL").is_some();
    let results = common::map_corpus(&dir, |path, i, kind| {
        let sampled = reference_all || kind == "alpha" || i.is_multiple_of(3);
        check(path, kind, tools.map(|tool| tool && sampled))
    });
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(row) => rows.push(row),
            Err(failure) => failures.push(failure),
        }
    }
    rows.sort_by(|a, b| (&a.kind, &a.file).cmp(&(&b.kind, &b.file)));

    println!(
        "{:<26} {:<7} {:>9} {:>9} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6}",
        "file", "kind", "original", "jp2", "psnr", "enc", "dec", "jxr", "psnr", "enc", "dec"
    );
    for r in &rows {
        let [j, x] = [r.results[0], r.results[1]];
        println!(
            "{:<26} {:<7} {:>9} {:>9} {:>6.2} {:>6.0} {:>6.0} {:>9} {:>6.2} {:>6.0} {:>6.0}",
            r.file,
            r.kind,
            r.original,
            j.bytes,
            j.psnr,
            j.encode_ms_per_mp,
            j.decode_ms_per_mp,
            x.bytes,
            x.psnr,
            x.encode_ms_per_mp,
            x.decode_ms_per_mp
        );
    }
    println!("(enc, dec: milliseconds per megapixel)");
    let mut by_kind: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_kind.entry(&r.kind).or_default().push(r);
    }
    for (kind, rows) in &by_kind {
        for (i, format) in FORMATS.iter().enumerate() {
            let n = rows.len() as f64;
            let mean =
                |f: fn(&Outcome) -> f64| rows.iter().map(|r| f(&r.results[i])).sum::<f64>() / n;
            let ratio = rows
                .iter()
                .map(|r| r.results[i].bytes as f64 / r.original as f64)
                .sum::<f64>()
                / n;
            let bigger = rows
                .iter()
                .filter(|r| r.results[i].bytes >= r.original)
                .count();
            let referenced = rows.iter().filter(|r| r.results[i].referenced).count();
            println!(
                "{kind:<8} {format:?}: {} images, mean size {:.1}% of the original \
                 ({bigger} not smaller), mean PSNR {:.2} dB, {:.0} ms/MP to encode, \
                 {:.0} to decode ({referenced} checked against {})",
                rows.len(),
                100.0 * ratio,
                mean(|o| o.psnr),
                mean(|o| o.encode_ms_per_mp),
                mean(|o| o.decode_ms_per_mp),
                format.tool()
            );
            if *kind == "photo" {
                assert!(
                    ratio < 1.0,
                    "{format:?}: photos at q{QUALITY} are on average not smaller than the JPEGs"
                );
            }
        }
    }
    assert!(failures.is_empty(), "failures:\n{:#?}", failures);
}

/// Panics, saying where, unless `ours` and `reference` are the same image.
fn assert_identical(ours: &Image, reference: &Image, what: &str) {
    assert_eq!(
        (ours.width, ours.height, ours.has_alpha),
        (reference.width, reference.height, reference.has_alpha),
        "{what}: shape"
    );
    if ours.pixels == reference.pixels {
        return;
    }
    let channels = ours.channels();
    let diffs: Vec<(usize, u8)> = ours
        .pixels
        .iter()
        .zip(&reference.pixels)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i, a.abs_diff(*b)))
        .collect();
    let (first, _) = diffs[0];
    let max = diffs.iter().map(|&(_, d)| d).max().unwrap();
    let pixel = first / channels;
    panic!(
        "{what}: {} samples differ from the reference decoder's (largest by {max}), \
         the first at ({}, {}) channel {}",
        diffs.len(),
        pixel % ours.width as usize,
        pixel / ours.width as usize,
        first % channels
    );
}

/// What the encoders write decodes in process exactly as the reference
/// tools decode it: odd sizes (down to 1x1, and several tiles of JPEG
/// 2000), with and without alpha, at the extremes of quality.
#[test]
fn in_process_decode_matches_reference() {
    let shapes: [(u32, u32); 13] = [
        (1, 1),
        (2, 1),
        (1, 2),
        (3, 5),
        (5, 3),
        (16, 16),
        (17, 17),
        (96, 64),
        (257, 129),
        (333, 217),
        (1025, 3),
        (3, 1025),
        // JPEG 2000: 2x2 tiles of 750x550.
        (1500, 1100),
    ];
    for format in FORMATS {
        let tool = format.tool_available();
        for (w, h) in shapes {
            for alpha in [false, true] {
                let base = rgb(w, h, common::noisy_photo(w as usize, h as usize));
                let img = if alpha { with_alpha(&base) } else { base };
                for quality in [1, QUALITY, 100] {
                    let what = format!("{format:?} {w}x{h} alpha={alpha} q{quality}");
                    let bytes = format.encode(&img, quality).unwrap();
                    let ours = format
                        .decode_in_process(&bytes)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        (ours.width, ours.height, ours.has_alpha),
                        (w, h, alpha),
                        "{what}"
                    );
                    assert!(ours.is_consistent(), "{what}");
                    assert_eq!(ours.icc_profile, None, "{what}");
                    if tool {
                        assert_identical(&ours, &format.decode(&bytes, alpha), &what);
                    }
                    if quality >= QUALITY && w * h >= 64 * 64 {
                        let p = psnr(&img, &ours);
                        assert!(p >= MIN_PSNR, "{what}: PSNR {p:.2}");
                    }
                }
            }
        }
    }
}

/// The ICC profile comes back as embedded; it does not change the pixels.
#[test]
fn in_process_decode_returns_the_icc_profile() {
    let icc = fake_icc(777);
    for format in FORMATS {
        for alpha in [false, true] {
            let base = rgb(40, 30, common::photo_like(40, 30));
            let plain = if alpha { with_alpha(&base) } else { base };
            let tagged = Image {
                icc_profile: Some(icc.clone()),
                ..plain.clone()
            };
            let back = format
                .decode_in_process(&format.encode(&tagged, QUALITY).unwrap())
                .unwrap();
            assert_eq!(back.icc_profile.as_deref(), Some(&icc[..]), "{format:?}");
            let untagged = format
                .decode_in_process(&format.encode(&plain, QUALITY).unwrap())
                .unwrap();
            assert_eq!(back.pixels, untagged.pixels, "{format:?} alpha={alpha}");
        }
    }
}

/// The offset of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern not found")
}

/// Garbage, other formats and every truncation are errors, not crashes
/// (for files changed to reach what the decoders refuse, see the two
/// tests after this one). Corrupted JPEG 2000 coded data may decode to
/// anything, but only to an image of the declared size. Not so for JPEG
/// XR: jxrlib's entropy decoder does not survive corrupted coded data
/// (a flipped byte in a 70x50 file made it crash in
/// `DecodeSignificantRun`), which is why `jxr::decode` is for files we
/// produced only.
#[test]
fn in_process_decode_refuses_bad_input() {
    let base = rgb(70, 50, common::noisy_photo(70, 50));
    let png = common::png(
        70,
        50,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &base.pixels,
        |_| {},
    );
    let jpeg = common::jpeg(&base.pixels, 70, 50, &common::JpegOptions::default());
    for format in FORMATS {
        let other = match format {
            Format::Jp2 => Format::Jxr,
            Format::Jxr => Format::Jp2,
        };
        for alpha in [false, true] {
            let img = if alpha {
                with_alpha(&base)
            } else {
                base.clone()
            };
            let good = format.encode(&img, QUALITY).unwrap();
            assert!(format.decode_in_process(&good).is_ok());
            let mut bad: Vec<(String, Vec<u8>)> = vec![
                ("empty".into(), Vec::new()),
                ("one byte".into(), vec![0]),
                ("PNG".into(), png.clone()),
                ("JPEG".into(), jpeg.clone()),
                ("other format".into(), other.encode(&img, QUALITY).unwrap()),
            ];
            for seed in 1..20 {
                let mut noise = common::noise(64 + seed as usize * 97, seed);
                bad.push((format!("noise {seed}"), noise.clone()));
                // Noise behind the right signature.
                noise[..8].copy_from_slice(&good[..8]);
                bad.push((format!("noise {seed} with a signature"), noise));
            }
            for len in (0..good.len())
                .step_by(good.len() / 97 + 1)
                .chain(good.len() - 8..good.len())
            {
                bad.push((format!("first {len} bytes"), good[..len].to_vec()));
            }
            for (what, bytes) in &bad {
                let result = format.decode_in_process(bytes);
                assert!(result.is_err(), "{format:?} alpha={alpha}: {what} decoded");
            }

            if format == Format::Jxr {
                continue;
            }
            // Corrupted bytes after the headers: anything but a crash.
            for (i, at) in (good.len() / 4..good.len())
                .step_by(good.len() / 199 + 1)
                .enumerate()
            {
                let mut bytes = good.clone();
                bytes[at] ^= 0x5A ^ (i as u8);
                if let Ok(back) = format.decode_in_process(&bytes) {
                    assert!(back.is_consistent());
                    assert_eq!((back.width, back.height), (70, 50));
                }
            }
        }
    }
}

/// JPEG 2000 files changed in what OpenJPEG must not see.
#[test]
fn jp2_decode_refuses_crafted_codestreams() {
    let img = rgb(70, 50, common::noisy_photo(70, 50));
    let good = jp2::encode(&img, QUALITY).unwrap();
    let siz = find(&good, &[0xFF, 0x4F, 0xFF, 0x51]) + 4; // Lsiz
    let expect_err = |bytes: &[u8], what: &str, message: &str| {
        let e = jp2::decode(bytes).expect_err(what);
        assert!(e.contains(message), "{what}: {e}");
    };

    let mut ht = good.clone();
    ht[siz + 2] |= 0x40; // Rsiz: HTJ2K capability
    expect_err(&ht, "Rsiz HT bit", "HTJ2K");

    // COD: marker, Lcod, Scod, SGcod (4), levels, xcb, ycb, style.
    let cod = find(&good, &[0xFF, 0x52]);
    let mut ht = good.clone();
    ht[cod + 2 + 2 + 1 + 4 + 3] |= 0x40;
    expect_err(&ht, "HT code-block style", "HTJ2K");

    // A CAP marker instead of the COM marker's type.
    let com = find(&good, &[0xFF, 0x64]);
    let mut cap = good.clone();
    cap[com + 1] = 0x50;
    expect_err(&cap, "CAP marker", "CAP");

    // Xsiz, Ysiz: 20000 x 20000, in the codestream and the image header.
    let mut huge = good.clone();
    huge[siz + 4..siz + 12].copy_from_slice(&[0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20]);
    let ihdr = find(&good, b"ihdr") + 4;
    huge[ihdr..ihdr + 8].copy_from_slice(&[0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20]);
    expect_err(&huge, "huge", "more than");

    // 16-bit components.
    let mut deep = good.clone();
    deep[siz + 2 + 36] = 15;
    expect_err(&deep, "16-bit", "8-bit");

    // Alpha declared premultiplied (cdef type 2).
    let rgba = jp2::encode(&with_alpha(&img), QUALITY).unwrap();
    let cdef = find(&rgba, b"cdef") + 4;
    let mut premultiplied = rgba.clone();
    premultiplied[cdef + 2 + 3 * 6 + 3] = 2;
    expect_err(&premultiplied, "premultiplied", "channel definition");

    // The codestream ends early (the jp2c box shortened to match).
    let jp2c = find(&good, b"jp2c") - 4;
    let mut short = good[..good.len() - 40].to_vec();
    let len = (short.len() - jp2c) as u32;
    short[jp2c..jp2c + 4].copy_from_slice(&len.to_be_bytes());
    assert!(jp2::decode(&short).is_err(), "truncated codestream decoded");
}

/// JPEG XR files changed in what jxrlib must not see.
#[test]
fn jxr_decode_refuses_crafted_containers() {
    let img = rgb(70, 50, common::noisy_photo(70, 50));
    let good = jxr::encode(&img, QUALITY).unwrap();
    let ifd = u32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(good[ifd..ifd + 2].try_into().unwrap()) as usize;
    let entry = |tag: u16| {
        (0..count)
            .map(|i| ifd + 2 + 12 * i)
            .find(|&at| good[at..at + 2] == tag.to_le_bytes())
            .unwrap_or_else(|| panic!("no tag {tag:#06x}"))
    };
    let expect_err = |bytes: &[u8], what: &str, message: &str| {
        let e = jxr::decode(bytes).expect_err(what);
        assert!(e.contains(message), "{what}: {e}");
    };

    // The horizontal resolution turned into an orientation of 9: jxrlib
    // would fail `assert(uValue < O_MAX)` and abort.
    let at = entry(0xBC82);
    let mut rotated = good.clone();
    rotated[at..at + 2].copy_from_slice(&0xBC02u16.to_le_bytes());
    rotated[at + 8..at + 12].copy_from_slice(&9u32.to_le_bytes());
    expect_err(&rotated, "orientation 9", "rotated");

    // A descriptive metadata tag (jxrlib asserts on its type).
    let mut described = good.clone();
    described[at..at + 2].copy_from_slice(&0x010Eu16.to_le_bytes());
    expect_err(&described, "image description", "unsupported container tag");

    // Image data past the end of the file.
    let at = entry(0xBCC1);
    let mut long = good.clone();
    long[at + 8..at + 12].copy_from_slice(&(good.len() as u32).to_le_bytes());
    expect_err(&long, "image byte count", "past the end");

    // Another pixel format (24bppBGR: last GUID byte 0x0C instead of 0x0D).
    let guid = u32::from_le_bytes(good[entry(0xBC01) + 8..][..4].try_into().unwrap()) as usize;
    let mut bgr = good.clone();
    bgr[guid + 15] = 0x0C;
    expect_err(&bgr, "24bppBGR", "pixel format");

    // The image header's size: 20000 x 20000 in the codestream and the
    // container (long or short header alike).
    let image = u32::from_le_bytes(good[entry(0xBCC0) + 8..][..4].try_into().unwrap()) as usize;
    let mut huge = good.clone();
    let short_header = good[image + 10] & 0x80 != 0;
    if short_header {
        huge[image + 12..image + 16].copy_from_slice(&[0x4E, 0x1F, 0x4E, 0x1F]);
    } else {
        huge[image + 12..image + 20].copy_from_slice(&[0, 0, 0x4E, 0x1F, 0, 0, 0x4E, 0x1F]);
    }
    for tag in [0xBC80u16, 0xBC81] {
        let at = entry(tag);
        huge[at + 8..at + 12].copy_from_slice(&20_000u32.to_le_bytes());
    }
    expect_err(&huge, "huge", "too large");

    // Sizes that disagree (the container's width).
    let at = entry(0xBC80);
    let mut wider = good.clone();
    wider[at + 8..at + 12].copy_from_slice(&71u32.to_le_bytes());
    expect_err(&wider, "wider", "disagree");

    // An RGBA file whose alpha plane is missing.
    let rgba = jxr::encode(&with_alpha(&img), QUALITY).unwrap();
    let mut no_alpha = rgba.clone();
    let ifd = u32::from_le_bytes(rgba[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(rgba[ifd..ifd + 2].try_into().unwrap()) as usize;
    let at = (0..count)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&at| rgba[at..at + 2] == 0xBCC3u16.to_le_bytes())
        .unwrap();
    no_alpha[at + 8..at + 12].copy_from_slice(&0u32.to_le_bytes());
    expect_err(&no_alpha, "no alpha plane", "alpha");
}

/// Decoding cost, printed (run with `--nocapture`): milliseconds per
/// megapixel, best of 3, on a 2 MP noisy photo at quality 85.
#[test]
fn in_process_decode_speed() {
    let (w, h) = (1600u32, 1250u32);
    let base = rgb(w, h, common::noisy_photo(w as usize, h as usize));
    for format in FORMATS {
        for alpha in [false, true] {
            let img = if alpha {
                with_alpha(&base)
            } else {
                base.clone()
            };
            let bytes = format.encode(&img, QUALITY).unwrap();
            let best = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    format.decode_in_process(&bytes).unwrap();
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            println!(
                "{format:?} alpha={alpha}: {} bytes, decoded in {:.0} ms/MP",
                bytes.len(),
                best * 1000.0 / (f64::from(w * h) / 1e6)
            );
        }
    }
}
