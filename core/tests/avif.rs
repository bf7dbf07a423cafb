//! The AVIF encoder (`codecs::avif`): round trips through our own decoder
//! (libavif + dav1d) and through the independent command-line decoder
//! `avifdec` (Debian `libavif-bin`; those checks are skipped without it),
//! on synthetic images and on the corpus (`$SMART_IMAGING_CORPUS` or
//! `../shared/corpus`; skipped when absent).
//!
//! Run with `--nocapture` for the corpus table (bytes, ms/MP, PSNR).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use smart_imaging_core::codecs::avif::{self, Chroma, Options};
use smart_imaging_core::codecs::{self, Image};
use smart_imaging_core::metrics::psnr;
use smart_imaging_core::{KeepReason, Limits};

/// Fast enough for many encodes in a test run.
const FAST: u8 = 9;

/// Smooth colour gradient with a little texture; with `alpha`, a soft
/// horizontal alpha ramp from transparent to opaque.
fn synthetic(width: u32, height: u32, alpha: bool) -> Image {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let tex = ((x * 7 + y * 13) % 11) as u8;
            pixels.extend_from_slice(&[
                (x * 255 / width.max(1)) as u8 ^ tex,
                (y * 255 / height.max(1)) as u8,
                128u8.wrapping_add(tex),
            ]);
            if alpha {
                pixels.push((x * 255 / width.max(2).saturating_sub(1)).min(255) as u8);
            }
        }
    }
    Image {
        width,
        height,
        pixels,
        has_alpha: alpha,
        icc_profile: None,
    }
}

fn alpha_of(img: &Image) -> Vec<u8> {
    assert!(img.has_alpha);
    img.pixels.chunks_exact(4).map(|p| p[3]).collect()
}

/// A syntactically plausible ICC profile (header only, no tags): libavif
/// stores the bytes as they are, which is all this checks.
fn fake_icc(len: usize) -> Vec<u8> {
    let mut icc = vec![0u8; len];
    icc[0..4].copy_from_slice(&(len as u32).to_be_bytes());
    icc[12..16].copy_from_slice(b"mntr");
    icc[16..20].copy_from_slice(b"RGB ");
    icc[20..24].copy_from_slice(b"XYZ ");
    icc[36..40].copy_from_slice(b"acsp");
    for (i, b) in icc.iter_mut().enumerate().skip(128) {
        *b = (i * 31 % 251) as u8;
    }
    icc
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the ISOBMFF file starts with an `ftyp` box of brand `avif`.
fn is_avif_file(bytes: &[u8]) -> bool {
    bytes.len() > 12 && &bytes[4..8] == b"ftyp" && &bytes[8..12] == b"avif"
}

#[test]
fn round_trip_rgb_and_rgba() {
    for alpha in [false, true] {
        for chroma in [Chroma::Yuv420, Chroma::Yuv444] {
            let img = synthetic(96, 64, alpha);
            let options = Options {
                chroma,
                ..Options::new(85, FAST)
            };
            let bytes = avif::encode_with(&img, &options).unwrap();
            assert!(is_avif_file(&bytes));
            let back = avif::decode(&bytes).unwrap();
            assert_eq!(
                (back.width, back.height, back.has_alpha),
                (96, 64, alpha),
                "{chroma:?}"
            );
            assert_eq!(back.icc_profile, None);
            let p = psnr(&img, &back);
            assert!(p >= 30.0, "alpha={alpha} {chroma:?}: PSNR {p:.2}");
        }
    }
}

#[test]
fn plain_encode_uses_the_photo_defaults() {
    let img = synthetic(64, 48, true);
    let a = avif::encode(&img, 70, FAST).unwrap();
    let b = avif::encode_with(&img, &Options::new(70, FAST)).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        Options::new(70, FAST),
        Options {
            quality: 70,
            speed: FAST,
            alpha_quality: Some(70),
            chroma: Chroma::Yuv420,
            lossless: false,
        }
    );
}

#[test]
fn lossless_alpha_is_exact_and_lossy_alpha_is_smaller() {
    // Noisy alpha: compresses badly losslessly, so lossy must win clearly.
    let mut img = synthetic(128, 96, true);
    for (i, px) in img.pixels.chunks_exact_mut(4).enumerate() {
        px[3] = px[3].saturating_add(((i * 2654435761) >> 13) as u8 % 24);
    }
    let lossless = avif::encode_with(
        &img,
        &Options {
            alpha_quality: None,
            ..Options::new(80, FAST)
        },
    )
    .unwrap();
    let back = avif::decode(&lossless).unwrap();
    assert_eq!(alpha_of(&back), alpha_of(&img));

    let lossy = avif::encode_with(
        &img,
        &Options {
            alpha_quality: Some(60),
            ..Options::new(80, FAST)
        },
    )
    .unwrap();
    let back = avif::decode(&lossy).unwrap();
    assert!(back.has_alpha);
    assert!(
        lossy.len() < lossless.len(),
        "lossy alpha {} B, lossless {} B",
        lossy.len(),
        lossless.len()
    );
    assert!(psnr(&img, &back) >= 30.0);
}

#[test]
fn fully_transparent_alpha_is_kept_and_opaque_alpha_dropped() {
    let mut img = synthetic(40, 30, true);
    for px in img.pixels.chunks_exact_mut(4) {
        px[3] = 0;
    }
    let back = avif::decode(&avif::encode(&img, 80, FAST).unwrap()).unwrap();
    assert!(back.has_alpha);
    assert!(alpha_of(&back).iter().all(|&a| a == 0));

    // libavif writes no alpha item for an all-opaque alpha plane: the file
    // is smaller and decodes as RGB.
    for px in img.pixels.chunks_exact_mut(4) {
        px[3] = 255;
    }
    let bytes = avif::encode(&img, 80, FAST).unwrap();
    let back = avif::decode(&bytes).unwrap();
    assert!(!back.has_alpha);
    assert!(psnr(&img, &back) >= 30.0);
    let rgb = Image {
        pixels: img
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        has_alpha: false,
        ..img.clone()
    };
    assert_eq!(bytes, avif::encode(&rgb, 80, FAST).unwrap());
}

/// Smooth image (what a 4:2:0 encoder can reproduce even at 1x1..2x2).
fn smooth(width: u32, height: u32, alpha: bool) -> Image {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[
                (100 + x % 50) as u8,
                (150 - y % 50) as u8,
                (60 + (x + y) % 80) as u8,
            ]);
            if alpha {
                pixels.push((200 - (x + y) % 100) as u8);
            }
        }
    }
    Image {
        width,
        height,
        pixels,
        has_alpha: alpha,
        icc_profile: None,
    }
}

#[test]
fn odd_and_tiny_sizes() {
    for (w, h) in [
        (1, 1),
        (1, 7),
        (7, 1),
        (2, 1),
        (3, 5),
        (17, 9),
        (33, 1),
        (1, 64),
    ] {
        for alpha in [false, true] {
            for chroma in [Chroma::Yuv420, Chroma::Yuv444] {
                let img = smooth(w, h, alpha);
                let options = Options {
                    chroma,
                    ..Options::new(90, FAST)
                };
                let bytes = avif::encode_with(&img, &options)
                    .unwrap_or_else(|e| panic!("{w}x{h} alpha={alpha} {chroma:?}: {e}"));
                let back = avif::decode(&bytes).unwrap();
                assert_eq!(
                    (back.width, back.height, back.has_alpha),
                    (w, h, alpha),
                    "{chroma:?}"
                );
                let p = psnr(&img, &back);
                assert!(p >= 30.0, "{w}x{h} alpha={alpha} {chroma:?}: PSNR {p:.2}");
            }
        }
    }
}

#[test]
fn icc_profile_is_embedded_and_srgb_is_declared_otherwise() {
    // libavif 0.11 writes the nclx box in both cases (CICP also
    // describes the YUV matrix); with a profile, `prof` is what counts.
    for alpha in [false, true] {
        let icc = fake_icc(561);
        let img = Image {
            icc_profile: Some(icc.clone()),
            ..synthetic(32, 24, alpha)
        };
        let bytes = avif::encode(&img, 80, FAST).unwrap();
        assert!(contains(&bytes, b"colrprof"));
        let back = avif::decode(&bytes).unwrap();
        assert_eq!(back.icc_profile.as_ref(), Some(&icc));
        assert_eq!(back.has_alpha, alpha);

        let bytes = avif::encode(&synthetic(32, 24, alpha), 80, FAST).unwrap();
        assert!(!contains(&bytes, b"colrprof"));
        // nclx: primaries 1 (BT.709), transfer 13 (sRGB), matrix 6
        // (BT.601), full range flag set.
        assert!(
            contains(&bytes, b"colrnclx\0\x01\0\x0d\0\x06\x80"),
            "no sRGB nclx box"
        );
    }
}

#[test]
fn quality_and_speed_behave() {
    let img = synthetic(128, 128, false);
    let sizes: Vec<usize> = [30u8, 60, 90]
        .iter()
        .map(|&q| avif::encode(&img, q, FAST).unwrap().len())
        .collect();
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    let psnrs: Vec<f64> = [30u8, 90]
        .iter()
        .map(|&q| {
            psnr(
                &img,
                &avif::decode(&avif::encode(&img, q, FAST).unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(psnrs[0] < psnrs[1], "{psnrs:?}");
    // Every speed works, out-of-range values included (clamped).
    for speed in [0u8, 4, 6, 8, 10, 200] {
        let bytes = avif::encode(&synthetic(48, 32, true), 80, speed).unwrap();
        assert!(avif::decode(&bytes).is_ok(), "speed {speed}");
    }
    // Quality over 100 is clamped, not an error.
    assert!(avif::encode(&img, 255, FAST).is_ok());
}

#[test]
fn bad_input_is_an_encode_error() {
    let mut img = synthetic(8, 8, false);
    img.pixels.pop();
    assert!(matches!(
        avif::encode(&img, 80, FAST),
        Err(KeepReason::Encode(_))
    ));
    let empty = Image {
        width: 0,
        height: 5,
        pixels: vec![],
        ..synthetic(1, 1, false)
    };
    assert!(matches!(
        avif::encode(&empty, 80, FAST),
        Err(KeepReason::Encode(_))
    ));
    let huge = Image {
        width: 70_000,
        height: 4_000,
        pixels: vec![],
        ..synthetic(1, 1, false)
    };
    assert!(matches!(
        avif::encode(&huge, 80, FAST),
        Err(KeepReason::Encode(_))
    ));
}

#[test]
fn garbage_and_truncated_files_are_decode_errors() {
    assert!(avif::decode(b"").is_err());
    assert!(avif::decode(b"not an avif file at all").is_err());
    assert!(avif::decode(&[0u8; 4096]).is_err());
    let bytes = avif::encode(&synthetic(64, 64, true), 80, FAST).unwrap();
    for len in [8, 16, 32, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(avif::decode(&bytes[..len]).is_err(), "truncated to {len}");
    }
    // Flipped bytes anywhere: an error or some image, never a crash.
    for i in (0..bytes.len()).step_by(7) {
        let mut corrupt = bytes.clone();
        corrupt[i] ^= 0x5a;
        let _ = avif::decode(&corrupt);
    }
}

#[test]
fn concurrent_encodes_are_independent() {
    let img = synthetic(80, 60, true);
    let expected = avif::encode(&img, 75, FAST).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| avif::encode(&img, 75, FAST).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), expected);
        }
    });
}

/// `avifdec` (another program, its own decoder choice) must read our files
/// and give the same pixels as our decoder, within rounding.
#[test]
fn avifdec_reads_our_files() {
    if !avifdec_available() {
        eprintln!("skipped: avifdec not installed (Debian libavif-bin)");
        return;
    }
    let dir = scratch_dir("avifdec");
    let cases = [
        (synthetic(77, 51, false), Options::new(85, FAST)),
        (synthetic(77, 51, true), Options::new(85, FAST)),
        (
            synthetic(77, 51, true),
            Options {
                alpha_quality: None,
                chroma: Chroma::Yuv444,
                ..Options::new(85, FAST)
            },
        ),
        (synthetic(1, 1, true), Options::new(85, FAST)),
    ];
    for (i, (img, options)) in cases.iter().enumerate() {
        let bytes = avif::encode_with(img, options).unwrap();
        let theirs =
            avifdec(&dir, &format!("case{i}"), &bytes).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!((theirs.width, theirs.height), (img.width, img.height));
        assert_eq!(theirs.has_alpha, img.has_alpha, "case {i}");
        let p = psnr(img, &theirs);
        assert!(p >= 30.0, "case {i}: PSNR {p:.2}");
        let ours = avif::decode(&bytes).unwrap();
        let agree = psnr(&ours, &theirs);
        assert!(
            agree >= 40.0,
            "case {i}: decoders disagree, PSNR {agree:.2}"
        );
        if img.has_alpha && options.alpha_quality.is_none() {
            assert_eq!(alpha_of(&theirs), alpha_of(img), "case {i}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Corpus: every image encodes at q85 (fast speed) to a faithful AVIF with
/// the same size and alpha; a few photos also at speed 6 and through
/// avifdec. Prints a table.
#[test]
fn corpus_round_trips() {
    let Some(corpus) = common::corpus_dir() else {
        eprintln!("skipped: no corpus (set SMART_IMAGING_CORPUS)");
        return;
    };
    let mut files: Vec<PathBuf> = fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    let limits = Limits::default();
    let have_avifdec = avifdec_available();
    let dir = scratch_dir("corpus");
    let mut failures = Vec::new();
    let (mut total_in, mut total_out) = (0usize, 0usize);
    println!(
        "{:<28} {:>9} {:>9} {:>7} {:>8} {:>7}",
        "file", "original", "avif", "saved", "ms/MP", "PSNR"
    );
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = fs::read(path).unwrap();
        let img = match codecs::decode(&input, &limits) {
            Ok(img) => img,
            Err(e) => {
                println!("{name:<28} kept by the decoder: {e}");
                continue;
            }
        };
        let mp = f64::from(img.width) * f64::from(img.height) / 1e6;
        let photo = name.ends_with(".jpg");
        let options = Options {
            chroma: if photo {
                Chroma::Yuv420
            } else {
                Chroma::Yuv444
            },
            ..Options::new(85, FAST)
        };
        let start = Instant::now();
        let bytes = match avif::encode_with(&img, &options) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let back = match avif::decode(&bytes) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: decode: {e}"));
                continue;
            }
        };
        if (back.width, back.height, back.has_alpha) != (img.width, img.height, img.has_alpha) {
            failures.push(format!(
                "{name}: {}x{} alpha={} -> {}x{} alpha={}",
                img.width, img.height, img.has_alpha, back.width, back.height, back.has_alpha
            ));
            continue;
        }
        if back.icc_profile != img.icc_profile {
            failures.push(format!("{name}: ICC profile not carried over"));
        }
        let p = psnr(&img, &back);
        if p < 30.0 {
            failures.push(format!("{name}: PSNR {p:.2} < 30"));
        }
        total_in += input.len();
        total_out += bytes.len();
        println!(
            "{name:<28} {:>9} {:>9} {:>6.1}% {:>8.0} {:>7.2}",
            input.len(),
            bytes.len(),
            100.0 * (1.0 - bytes.len() as f64 / input.len() as f64),
            ms / mp,
            p
        );
    }
    // A few photos at the production-like speed, and through avifdec.
    for name in ["kde_coldripple.jpg", "lom_picos.jpg", "mate_wood.jpg"] {
        let Ok(input) = fs::read(corpus.join(name)) else {
            continue;
        };
        let img = codecs::decode(&input, &limits).unwrap();
        let bytes = avif::encode(&img, 65, 6).unwrap();
        let p = psnr(&img, &avif::decode(&bytes).unwrap());
        println!(
            "{name} at q65 speed 6: {} -> {} B, PSNR {p:.2}",
            input.len(),
            bytes.len()
        );
        if p < 30.0 {
            failures.push(format!("{name} speed 6: PSNR {p:.2}"));
        }
        if bytes.len() >= input.len() {
            failures.push(format!("{name} speed 6: not smaller"));
        }
        if have_avifdec {
            match avifdec(&dir, name, &bytes) {
                Ok(theirs) if psnr(&img, &theirs) >= 30.0 => {}
                Ok(theirs) => {
                    failures.push(format!("{name}: avifdec PSNR {:.2}", psnr(&img, &theirs)))
                }
                Err(e) => failures.push(format!("{name}: avifdec: {e}")),
            }
        }
    }
    if total_in > 0 {
        println!(
            "total: {total_in} -> {total_out} B ({:.1}% saved)",
            100.0 * (1.0 - total_out as f64 / total_in as f64)
        );
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("smart-imaging-avif-{what}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn avifdec_available() -> bool {
    Command::new("avifdec")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Decodes with the `avifdec` program to an 8-bit PNG and reads that back
/// with the `png` crate.
fn avifdec(dir: &Path, name: &str, avif_bytes: &[u8]) -> Result<Image, String> {
    let input = dir.join(format!("{name}.avif"));
    let output = dir.join(format!("{name}.png"));
    fs::write(&input, avif_bytes).map_err(|e| e.to_string())?;
    let run = Command::new("avifdec")
        .args(["--jobs", "1", "--depth", "8"])
        .arg(&input)
        .arg(&output)
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!(
            "avifdec failed: {}",
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let png_bytes = fs::read(&output).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(frame.buffer_size());
    let has_alpha = match frame.color_type {
        png::ColorType::Rgb => false,
        png::ColorType::Rgba => true,
        other => return Err(format!("unexpected PNG colour type {other:?}")),
    };
    Ok(Image {
        width: frame.width,
        height: frame.height,
        pixels: buf,
        has_alpha,
        icc_profile: None,
    })
}

/// The alpha auxiliary image as the AVIF specification wants it (AVIF 1.2
/// §"Auxiliary Image Items": the alpha AV1 sequence header has
/// `mono_chrome` = 1 and `color_range` = 1, and the alpha item has no
/// `colr` box, which readers must ignore anyway), and every alpha value
/// 0-255 coming back unchanged from lossless alpha, through our decoder
/// and through `avifdec`.
///
/// Full-range alpha is what libavif, avifdec and Firefox show correctly.
/// Debian's Chromium 156 shows it as if it were limited range, whatever
/// the file says: its AVIF decoder (CrabbyAvif) reads
/// `Dav1dSequenceHeader::color_range` with the struct layout of newer dav1d
/// (a `uint8_t` at byte 33) from the system libdav1d 1.0.0 (an `int` at
/// byte 36; byte 33 is the high byte of `hbd`, always 0). Writing
/// limited-range alpha to please it would break the spec and Firefox (which
/// ignores the flag: transparent pixels would show at alpha 16); this test
/// keeps the encoder from doing that.
#[test]
fn alpha_is_full_range_without_colr_and_round_trips() {
    let (width, height) = (256u32, 6u32);
    let mut img = synthetic(width, height, true);
    for (i, px) in img.pixels.chunks_exact_mut(4).enumerate() {
        px[3] = (i % width as usize) as u8; // every value 0..=255 in each row
    }
    let lossless_alpha = Options {
        alpha_quality: None,
        ..Options::new(80, FAST)
    };
    let cases = [
        ("lossless alpha", lossless_alpha),
        ("lossy alpha", Options::new(80, FAST)),
        ("lossless", Options::lossless(FAST)),
    ];
    let dir = scratch_dir("alpha-range");
    for (what, options) in cases {
        let bytes = avif::encode_with(&img, &options).unwrap();
        let file = bmff::parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        let alpha = file
            .alpha_item()
            .unwrap_or_else(|| panic!("{what}: no alpha auxiliary item"));
        assert!(
            !file.properties_of(alpha).contains(b"colr"),
            "{what}: the alpha item has a colr box"
        );
        let seq = bmff::sequence_header(file.data_of(&bytes, alpha).unwrap())
            .unwrap_or_else(|e| panic!("{what}: alpha sequence header: {e}"));
        assert!(seq.mono_chrome, "{what}: alpha is not monochrome");
        assert!(seq.full_range, "{what}: alpha is limited range");
        // The colour item says full range too (nclx and sequence header).
        let color = file.primary;
        let seq = bmff::sequence_header(file.data_of(&bytes, color).unwrap()).unwrap();
        assert!(!seq.mono_chrome && seq.full_range, "{what}: colour {seq:?}");

        let ours = avif::decode(&bytes).unwrap();
        let theirs = avifdec_available()
            .then(|| avifdec(&dir, what, &bytes).unwrap_or_else(|e| panic!("{what}: {e}")));
        for (decoder, back) in [("ours", Some(ours)), ("avifdec", theirs)] {
            let Some(back) = back else { continue };
            let (a, b) = (alpha_of(&img), alpha_of(&back));
            if options.alpha_quality.is_none() || options.lossless {
                assert!(a == b, "{what}, {decoder}: alpha not exact");
            } else {
                // Lossy: close, and no sign of a range conversion (which
                // would move 178 to 189 and everything >= 235 to 255).
                let mean = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| x.abs_diff(y) as f64)
                    .sum::<f64>()
                    / a.len() as f64;
                assert!(mean < 2.0, "{what}, {decoder}: mean alpha error {mean:.2}");
                let at = |v: &[u8], x: usize| {
                    (0..height as usize)
                        .map(|y| v[y * width as usize + x] as f64)
                        .sum::<f64>()
                        / height as f64
                };
                for x in [0, 16, 100, 178, 235, 255] {
                    let d = (at(&b, x) - x as f64).abs();
                    assert!(
                        d < 4.0,
                        "{what}, {decoder}: alpha {x} decodes as {:.1}",
                        at(&b, x)
                    );
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Just enough ISOBMFF/HEIF and AV1 to check what
/// [`alpha_is_full_range_without_colr_and_round_trips`] relies on: items,
/// their properties and data (`iloc` construction method 0), the alpha
/// auxiliary item (`auxC`), and an AV1 sequence header's colour config.
mod bmff {
    use std::collections::BTreeMap;

    pub const ALPHA_URN: &[u8] = b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha";

    #[derive(Debug, Default)]
    pub struct File {
        pub primary: u32,
        /// Property boxes in `ipco` order (index 1 is the first): type
        /// and payload.
        properties: Vec<([u8; 4], Vec<u8>)>,
        /// Item id -> 1-based property indices.
        associations: BTreeMap<u32, Vec<usize>>,
        /// Item id -> (file offset, length) extents.
        locations: BTreeMap<u32, Vec<(usize, usize)>>,
    }

    impl File {
        pub fn properties_of(&self, item: u32) -> Vec<[u8; 4]> {
            self.associations
                .get(&item)
                .into_iter()
                .flatten()
                .filter_map(|&i| self.properties.get(i.checked_sub(1)?).map(|p| p.0))
                .collect()
        }

        /// The item whose `auxC` says alpha.
        pub fn alpha_item(&self) -> Option<u32> {
            self.associations.iter().find_map(|(&item, props)| {
                props
                    .iter()
                    .filter_map(|&i| self.properties.get(i.checked_sub(1)?))
                    .any(|(t, body)| {
                        // auxC: FullBox header, then a NUL-terminated URN.
                        t == b"auxC" && body.get(4..4 + ALPHA_URN.len()) == Some(ALPHA_URN)
                    })
                    .then_some(item)
            })
        }

        pub fn data_of<'a>(&self, file: &'a [u8], item: u32) -> Option<&'a [u8]> {
            match self.locations.get(&item)?.as_slice() {
                [(offset, len)] => file.get(*offset..offset.checked_add(*len)?),
                _ => None, // several extents: not written by libavif
            }
        }
    }

    /// A box: type and payload.
    type BoxRef<'a> = ([u8; 4], &'a [u8]);

    /// The boxes in `data`.
    fn boxes(mut data: &[u8]) -> Result<Vec<BoxRef<'_>>, String> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let head = data.get(..8).ok_or("truncated box header")?;
            let size = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = head[4..8].try_into().unwrap();
            let (header, size) = match size {
                0 => (8, data.len()),
                1 => {
                    let big = data.get(8..16).ok_or("truncated largesize")?;
                    (16, u64::from_be_bytes(big.try_into().unwrap()) as usize)
                }
                n => (8, n),
            };
            if size < header || size > data.len() {
                return Err(format!(
                    "bad size {size} of box {}",
                    String::from_utf8_lossy(&kind)
                ));
            }
            out.push((kind, &data[header..size]));
            data = &data[size..];
        }
        Ok(out)
    }

    fn child<'a>(list: &[BoxRef<'a>], kind: &[u8; 4]) -> Result<&'a [u8], String> {
        list.iter()
            .find(|(k, _)| k == kind)
            .map(|(_, body)| *body)
            .ok_or_else(|| format!("no {} box", String::from_utf8_lossy(kind)))
    }

    /// Big-endian unsigned integer of `n` bytes (0 to 8) at `*at`.
    fn uint(data: &[u8], at: &mut usize, n: usize) -> Result<u64, String> {
        let bytes = data.get(*at..*at + n).ok_or("truncated box")?;
        *at += n;
        Ok(bytes.iter().fold(0, |v, &b| v << 8 | u64::from(b)))
    }

    pub fn parse(file: &[u8]) -> Result<File, String> {
        let top = boxes(file)?;
        let meta = child(&top, b"meta")?;
        let meta = boxes(meta.get(4..).ok_or("short meta")?)?; // FullBox
        let mut out = File::default();

        let pitm = child(&meta, b"pitm")?;
        let mut at = 4;
        out.primary = uint(pitm, &mut at, if pitm[0] == 0 { 2 } else { 4 })? as u32;

        let iprp = boxes(child(&meta, b"iprp")?)?;
        for (kind, body) in boxes(child(&iprp, b"ipco")?)? {
            out.properties.push((kind, body.to_vec()));
        }
        let ipma = child(&iprp, b"ipma")?;
        let (version, flags) = (ipma[0], ipma[3]);
        let mut at = 4;
        for _ in 0..uint(ipma, &mut at, 4)? {
            let item = uint(ipma, &mut at, if version < 1 { 2 } else { 4 })? as u32;
            let count = uint(ipma, &mut at, 1)?;
            let mut list = Vec::new();
            for _ in 0..count {
                list.push(if flags & 1 == 1 {
                    uint(ipma, &mut at, 2)? as usize & 0x7fff
                } else {
                    uint(ipma, &mut at, 1)? as usize & 0x7f
                });
            }
            out.associations.entry(item).or_default().extend(list);
        }

        let iloc = child(&meta, b"iloc")?;
        let version = iloc[0];
        let mut at = 4;
        let sizes = uint(iloc, &mut at, 2)? as usize;
        let (offset_size, length_size) = (sizes >> 12, sizes >> 8 & 15);
        let (base_offset_size, index_size) = (sizes >> 4 & 15, sizes & 15);
        let count = uint(iloc, &mut at, if version < 2 { 2 } else { 4 })?;
        for _ in 0..count {
            let item = uint(iloc, &mut at, if version < 2 { 2 } else { 4 })? as u32;
            if version >= 1 {
                let method = uint(iloc, &mut at, 2)? & 15;
                if method != 0 {
                    return Err(format!("item {item}: construction method {method}"));
                }
            }
            if uint(iloc, &mut at, 2)? != 0 {
                return Err(format!("item {item}: data in another file"));
            }
            let base = uint(iloc, &mut at, base_offset_size)? as usize;
            let mut extents = Vec::new();
            for _ in 0..uint(iloc, &mut at, 2)? {
                if version >= 1 {
                    uint(iloc, &mut at, index_size)?;
                }
                let offset = uint(iloc, &mut at, offset_size)? as usize;
                let length = uint(iloc, &mut at, length_size)? as usize;
                extents.push((base + offset, length));
            }
            out.locations.insert(item, extents);
        }
        Ok(out)
    }

    /// The colour config of an AV1 sequence header.
    #[derive(Debug)]
    pub struct SequenceHeader {
        pub mono_chrome: bool,
        pub full_range: bool,
    }

    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl Bits<'_> {
        fn get(&mut self, n: usize) -> Result<u32, String> {
            let mut v = 0;
            for _ in 0..n {
                let byte = self
                    .data
                    .get(self.pos / 8)
                    .ok_or("sequence header truncated")?;
                v = v << 1 | u32::from(byte >> (7 - self.pos % 8) & 1);
                self.pos += 1;
            }
            Ok(v)
        }

        fn flag(&mut self) -> Result<bool, String> {
            Ok(self.get(1)? == 1)
        }

        fn uvlc(&mut self) -> Result<(), String> {
            let mut zeros = 0;
            while !self.flag()? {
                zeros += 1;
                if zeros >= 32 {
                    return Err("bad uvlc".into());
                }
            }
            self.get(zeros)?;
            Ok(())
        }
    }

    fn leb128(data: &[u8], at: &mut usize) -> Result<usize, String> {
        let mut value = 0usize;
        for i in 0..8 {
            let byte = *data.get(*at).ok_or("truncated leb128")?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("leb128 too long".into())
    }

    /// Finds the sequence header OBU in an item's OBUs (all with sizes, as
    /// AV1-ISOBMFF requires) and reads it up to `color_range` (AV1 spec
    /// 5.5.1-5.5.2).
    pub fn sequence_header(obus: &[u8]) -> Result<SequenceHeader, String> {
        let mut at = 0;
        while at < obus.len() {
            let header = obus[at];
            let (kind, extension, has_size) = (header >> 3 & 15, header >> 2 & 1, header >> 1 & 1);
            at += 1 + usize::from(extension);
            if has_size == 0 {
                return Err("OBU without size field".into());
            }
            let size = leb128(obus, &mut at)?;
            let payload = obus.get(at..at + size).ok_or("OBU truncated")?;
            at += size;
            if kind == 1 {
                return parse_sequence_header(payload);
            }
        }
        Err("no sequence header OBU".into())
    }

    fn parse_sequence_header(data: &[u8]) -> Result<SequenceHeader, String> {
        let mut b = Bits { data, pos: 0 };
        let profile = b.get(3)?;
        let _still_picture = b.flag()?;
        let reduced = b.flag()?;
        if reduced {
            b.get(5)?; // seq_level_idx[0]
        } else {
            let mut buffer_delay_length = 0;
            let mut decoder_model_info = false;
            if b.flag()? {
                // timing_info
                b.get(32)?;
                b.get(32)?;
                if b.flag()? {
                    b.uvlc()?;
                }
                decoder_model_info = b.flag()?;
                if decoder_model_info {
                    buffer_delay_length = b.get(5)? as usize + 1;
                    b.get(32)?;
                    b.get(10)?;
                }
            }
            let initial_display_delay = b.flag()?;
            for _ in 0..=b.get(5)? {
                b.get(12)?; // operating_point_idc
                if b.get(5)? > 7 {
                    b.get(1)?; // seq_tier
                }
                if decoder_model_info && b.flag()? {
                    b.get(buffer_delay_length)?;
                    b.get(buffer_delay_length)?;
                    b.get(1)?;
                }
                if initial_display_delay && b.flag()? {
                    b.get(4)?;
                }
            }
        }
        let width_bits = b.get(4)? as usize + 1;
        let height_bits = b.get(4)? as usize + 1;
        b.get(width_bits)?;
        b.get(height_bits)?;
        if !reduced && b.flag()? {
            // frame_id_numbers_present: delta and additional lengths
            b.get(7)?;
        }
        b.get(3)?; // use_128x128_superblock, filter_intra, intra_edge_filter
        if !reduced {
            b.get(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = b.flag()?;
            if order_hint {
                b.get(2)?; // jnt_comp, ref_frame_mvs
            }
            let screen_content_tools = if b.flag()? { 2 } else { b.get(1)? };
            if screen_content_tools > 0 && !b.flag()? {
                b.get(1)?; // seq_force_integer_mv
            }
            if order_hint {
                b.get(3)?;
            }
        }
        b.get(3)?; // superres, cdef, restoration
                   // color_config()
        let high_bitdepth = b.flag()?;
        if profile == 2 && high_bitdepth {
            b.get(1)?; // twelve_bit
        }
        let mono_chrome = profile != 1 && b.flag()?;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if b.flag()? {
            primaries = b.get(8)?;
            transfer = b.get(8)?;
            matrix = b.get(8)?;
        }
        let full_range = if !mono_chrome && (primaries, transfer, matrix) == (1, 13, 0) {
            true // sRGB identity: color_range is implied, not coded
        } else {
            b.flag()?
        };
        Ok(SequenceHeader {
            mono_chrome,
            full_range,
        })
    }
}
