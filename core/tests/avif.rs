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
            chroma: Chroma::Yuv420
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
