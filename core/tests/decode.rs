//! Decoding: JPEG/PNG variants, orientation, colour profiles, and the
//! inputs that must be refused.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mozjpeg::ColorSpace;
use png::{BitDepth, ColorType, ScaledFloat, SrgbRenderingIntent};
use smart_imaging_core::codecs::{self, webp, Image};
use smart_imaging_core::{transcode, KeepReason, Limits, Outcome, Plan};

fn decode(bytes: &[u8]) -> Result<Image, KeepReason> {
    codecs::decode(bytes, &Limits::default())
}

fn pixel(img: &Image, x: u32, y: u32) -> &[u8] {
    let ch = img.channels();
    let at = (y as usize * img.width as usize + x as usize) * ch;
    &img.pixels[at..at + ch]
}

/// Whether `px` is within JPEG error of `expected`.
fn near(px: &[u8], expected: [u8; 3]) -> bool {
    px.iter().zip(expected).all(|(&a, b)| a.abs_diff(b) <= 12)
}

fn srgb_profile() -> Vec<u8> {
    let mut p = wide_profile(0);
    let at = p.windows(13).position(|w| w == b"Wide Test RGB").unwrap();
    p[at..at + 13].copy_from_slice(b"sRGB IEC61966");
    p
}

/// EXIF APP1 payload with just an Orientation tag.
fn exif_orientation(orientation: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(if big_endian { b"MM\0*" } else { b"II*\0" });
    app1.extend_from_slice(&u32b(8));
    app1.extend_from_slice(&u16b(1));
    app1.extend_from_slice(&u16b(0x0112));
    app1.extend_from_slice(&u16b(3));
    app1.extend_from_slice(&u32b(1));
    app1.extend_from_slice(&u16b(orientation));
    app1.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    app1
}

// ---------------------------------------------------------------- JPEG

#[test]
fn jpeg_orientation_is_applied() {
    // 32x16 quadrants: red green / blue white.
    let (w, h) = (32, 16);
    // (orientation, big endian, output size, expected colours TL TR BL BR)
    let red = [255, 0, 0];
    let green = [0, 255, 0];
    let blue = [0, 0, 255];
    let white = [255, 255, 255];
    let cases = [
        (1, false, (32, 16), [red, green, blue, white]),
        (6, false, (16, 32), [blue, red, white, green]),
        (6, true, (16, 32), [blue, red, white, green]),
        (3, true, (32, 16), [white, blue, green, red]),
        (8, true, (16, 32), [green, white, red, blue]),
    ];
    for (orientation, big_endian, (ow, oh), [tl, tr, bl, br]) in cases {
        let app1 = exif_orientation(orientation, big_endian);
        let jpeg = jpeg(
            &quadrants(w, h),
            w,
            h,
            &JpegOptions {
                markers: &[(1, &app1)],
                ..Default::default()
            },
        );
        let img = decode(&jpeg).unwrap();
        let case = format!("orientation {orientation}, big endian {big_endian}");
        assert_eq!((img.width, img.height), (ow, oh), "{case}");
        // Quadrant centres.
        assert!(
            near(pixel(&img, ow / 4, oh / 4), tl),
            "{case}: top left {:?}",
            pixel(&img, ow / 4, oh / 4)
        );
        assert!(
            near(pixel(&img, ow * 3 / 4, oh / 4), tr),
            "{case}: top right"
        );
        assert!(
            near(pixel(&img, ow / 4, oh * 3 / 4), bl),
            "{case}: bottom left"
        );
        assert!(
            near(pixel(&img, ow * 3 / 4, oh * 3 / 4), br),
            "{case}: bottom right"
        );
    }
}

#[test]
fn a_jpeg_delivered_at_an_eighth_or_less_is_halved_while_decoded() {
    // 320x160 quadrants: red green / blue white.
    let (w, h) = (320, 160);
    let plain = jpeg(&quadrants(w, h), w, h, &JpegOptions::default());
    let limits = Limits::default();
    let margin = codecs::jpeg::DCT_SCALE_MARGIN;
    // (delivered size, decoded size): halved only when both sides of the
    // half stay `margin` times the delivered ones.
    let cases = [
        ((40, 20), (160, 80)),
        ((20, 10), (160, 80)),
        ((41, 20), (320, 160)),
        ((40, 21), (320, 160)),
        ((160, 80), (320, 160)),
        ((320, 160), (320, 160)),
    ];
    assert_eq!(margin, 4, "the cases assume a margin of 4");
    for (delivered, decoded) in cases {
        let asked = std::cell::Cell::new(None);
        let (img, full) = codecs::decode_for_size(&plain, &limits, &|w, h| {
            asked.set(Some((w, h)));
            delivered
        })
        .unwrap();
        assert_eq!(asked.get(), Some((320, 160)), "asked with the full size");
        assert_eq!(full, (320, 160));
        assert_eq!(
            (img.width, img.height),
            decoded,
            "delivered at {delivered:?}"
        );
        assert!(img.is_consistent());
        // The same picture: quadrant centres.
        let (ow, oh) = (img.width, img.height);
        assert!(near(pixel(&img, ow / 4, oh / 4), [255, 0, 0]));
        assert!(near(pixel(&img, ow * 3 / 4, oh / 4), [0, 255, 0]));
        assert!(near(pixel(&img, ow / 4, oh * 3 / 4), [0, 0, 255]));
        assert!(near(pixel(&img, ow * 3 / 4, oh * 3 / 4), [255, 255, 255]));
    }

    // Rotated 90° by its EXIF orientation: displayed 160x320. `fit` is
    // asked with the displayed size, and its answer is read that way.
    let app1 = exif_orientation(6, false);
    let rotated = jpeg(
        &quadrants(w, h),
        w,
        h,
        &JpegOptions {
            markers: &[(1, &app1)],
            ..Default::default()
        },
    );
    for (delivered, decoded) in [
        ((20, 40), (80, 160)),
        ((20, 41), (160, 320)),
        ((21, 40), (160, 320)),
    ] {
        let (img, full) = codecs::decode_for_size(&rotated, &limits, &|w, h| {
            assert_eq!((w, h), (160, 320));
            delivered
        })
        .unwrap();
        assert_eq!(full, (160, 320));
        assert_eq!(
            (img.width, img.height),
            decoded,
            "rotated, delivered at {delivered:?}"
        );
        let (ow, oh) = (img.width, img.height);
        // Orientation 6: blue red / white green.
        assert!(near(pixel(&img, ow / 4, oh / 4), [0, 0, 255]));
        assert!(near(pixel(&img, ow * 3 / 4, oh * 3 / 4), [0, 255, 0]));
    }

    // A PNG is decoded whole whatever it is for.
    let png = png(
        w as u32,
        h as u32,
        ColorType::Rgb,
        BitDepth::Eight,
        &quadrants(w, h),
        |_| {},
    );
    let (img, full) = codecs::decode_for_size(&png, &limits, &|_, _| (10, 5)).unwrap();
    assert_eq!(((img.width, img.height), full), ((320, 160), (320, 160)));
}

/// What a halved decode changes in what is delivered, on the corpus
/// photos that change most (see `codecs::jpeg::DCT_SCALE_MARGIN`):
/// resized the rest of the way, it scores at least 83 (SSIMULACRA 2)
/// against a full decode resized the same way. And the transcode delivers
/// exactly the size asked for.
#[test]
fn a_halved_decode_delivers_the_same_picture() {
    let Some(dir) = corpus_dir() else { return };
    let limits = Limits::default();
    for name in ["mate_storm.jpg", "lom_life.jpg", "k4_volna.jpg"] {
        let input = std::fs::read(dir.join(name)).unwrap();
        let full = decode(&input).unwrap();
        let request = smart_imaging_core::sizing::SizeRequest::Physical {
            width: full.width / 8,
        };
        let (tw, th) = smart_imaging_core::sizing::delivered_size(
            (full.width, full.height),
            &request,
            &smart_imaging_core::sizing::OutputCaps::NONE,
        );
        let (halved, _) = codecs::decode_for_size(&input, &limits, &|_, _| (tw, th)).unwrap();
        assert_eq!(
            (halved.width, halved.height),
            (full.width.div_ceil(2), full.height.div_ceil(2)),
            "{name}"
        );
        let reference = smart_imaging_core::resize::resize(&full, tw, th).unwrap();
        let delivered = smart_imaging_core::resize::resize(&halved, tw, th).unwrap();
        let score = smart_imaging_core::guard::score(&reference, &delivered).unwrap();
        assert!(score >= 83.0, "{name} at {tw}x{th}: {score:.2}");

        let mut plan = Plan::new(vec![smart_imaging_core::Format::WebP]);
        plan.size = request;
        match transcode(&input, &plan, &limits) {
            Outcome::Converted(c) => {
                let img = (c.format.codec().decode)(&c.bytes, &limits).unwrap();
                assert_eq!((img.width, img.height), (tw, th), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn jpeg_baseline_progressive_gray() {
    let (w, h) = (48, 40);
    let rgb = photo_like(w, h);
    for progressive in [false, true] {
        let jpeg = jpeg(
            &rgb,
            w,
            h,
            &JpegOptions {
                progressive,
                ..Default::default()
            },
        );
        let sof = jpeg[sof_offset(&jpeg) + 1];
        assert_eq!(sof, if progressive { 0xC2 } else { 0xC0 });
        let img = decode(&jpeg).unwrap();
        assert_eq!(
            (
                img.width,
                img.height,
                img.has_alpha,
                img.icc_profile.clone()
            ),
            (48, 40, false, None)
        );
        let original = Image::rgb(48, 40, rgb.clone());
        assert!(smart_imaging_core::metrics::psnr(&original, &img) > 30.0);
    }

    let gray: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
    let jpeg = jpeg(
        &gray,
        w,
        h,
        &JpegOptions {
            colour_space: ColorSpace::JCS_GRAYSCALE,
            ..Default::default()
        },
    );
    let img = decode(&jpeg).unwrap();
    assert_eq!(img.pixels.len(), w * h * 3, "gray is expanded to RGB");
    assert!(img
        .pixels
        .chunks_exact(3)
        .all(|px| px[0] == px[1] && px[1] == px[2]));
}

#[test]
fn jpeg_icc_profile_multi_chunk() {
    let (w, h) = (16, 16);
    let profile = wide_profile(150_000);
    let chunks = icc_app2_chunks(&profile);
    assert_eq!(chunks.len(), 3);
    // Written out of order: reassembly goes by sequence number.
    let markers: Vec<(u8, &[u8])> = [2, 0, 1]
        .iter()
        .map(|&i| (2u8, chunks[i].as_slice()))
        .collect();
    let jpeg = jpeg(
        &photo_like(w, h),
        w,
        h,
        &JpegOptions {
            markers: &markers,
            ..Default::default()
        },
    );
    let img = decode(&jpeg).unwrap();
    assert_eq!(img.icc_profile.as_ref(), Some(&profile));

    // ... and survives into the WebP.
    let webp = webp::encode(&img, 80).unwrap();
    let back = webp::decode(&webp).unwrap();
    assert_eq!(back.icc_profile.as_ref(), Some(&profile));

    // An sRGB profile is dropped.
    let srgb = icc_app2_chunks(&srgb_profile());
    let jpeg2 = jpeg_with(&srgb[0]);
    assert_eq!(decode(&jpeg2).unwrap().icc_profile, None);
}

fn jpeg_with(app2: &[u8]) -> Vec<u8> {
    jpeg(
        &photo_like(16, 16),
        16,
        16,
        &JpegOptions {
            markers: &[(2, app2)],
            ..Default::default()
        },
    )
}

#[test]
fn jpeg_icc_profile_into_webp() {
    // Small profile on a larger image: the WebP wins and carries it.
    let (w, h) = (256, 256);
    let profile = wide_profile(2_000);
    let chunks = icc_app2_chunks(&profile);
    let jpeg = jpeg(
        &photo_like(w, h),
        w,
        h,
        &JpegOptions {
            quality: 95.0,
            markers: &[(2, &chunks[0])],
            ..Default::default()
        },
    );
    match transcode(&jpeg, &Plan::webp(80), &Limits::default()) {
        Outcome::Converted(c) => {
            let back = webp::decode(&c.bytes).unwrap();
            assert_eq!(back.icc_profile.as_ref(), Some(&profile));
            assert_eq!((back.width, back.height), (256, 256));
        }
        other => panic!("expected a conversion, got {other:?}"),
    }
}

#[test]
fn jpeg_cmyk_is_refused() {
    let (w, h) = (16, 16);
    let cmyk: Vec<u8> = (0..w * h * 4).map(|i| (i * 3 % 256) as u8).collect();
    let opts = JpegOptions {
        colour_space: ColorSpace::JCS_CMYK,
        ..Default::default()
    };
    let jpeg = jpeg(&cmyk, w, h, &opts);
    assert_eq!(
        decode(&jpeg),
        Err(KeepReason::Unsupported("CMYK JPEG".into()))
    );
    assert!(matches!(
        transcode(&jpeg, &Plan::webp(80), &Limits::default()),
        Outcome::Original(KeepReason::Unsupported(_))
    ));
}

#[test]
fn jpeg_truncated_is_refused() {
    let (w, h) = (64, 64);
    let jpeg = jpeg(&photo_like(w, h), w, h, &JpegOptions::default());
    let sos = jpeg.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    for cut in [sos + 40, (sos + jpeg.len()) / 2, jpeg.len() - 2] {
        let result = decode(&jpeg[..cut]);
        assert!(
            matches!(&result, Err(KeepReason::Decode(m)) if m.contains("truncated")),
            "cut at {cut}: {result:?}"
        );
    }
}

#[test]
fn jpeg_pixel_bomb() {
    let jpeg = jpeg(&photo_like(16, 16), 16, 16, &JpegOptions::default());
    let mut bomb = jpeg.clone();
    let sof = sof_offset(&bomb);
    // SOF: marker(2) length(2) precision(1) height(2) width(2)
    bomb[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    bomb[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    let start = Instant::now();
    assert_eq!(
        decode(&bomb),
        Err(KeepReason::TooManyPixels {
            width: 60_000,
            height: 60_000,
            max_pixels: 16_000_000
        })
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------- PNG

#[test]
fn png_variants() {
    let (w, h) = (5u32, 3u32);
    let n = (w * h) as usize;
    let rgb_of = |gray: &[u8]| gray.iter().flat_map(|&g| [g, g, g]).collect::<Vec<u8>>();

    // Gray 8.
    let gray: Vec<u8> = (0..n).map(|i| (i * 17) as u8).collect();
    let img = decode(&png(
        w,
        h,
        ColorType::Grayscale,
        BitDepth::Eight,
        &gray,
        |_| {},
    ))
    .unwrap();
    assert_eq!((img.has_alpha, &img.pixels), (false, &rgb_of(&gray)));

    // Gray 16: the high byte survives.
    let gray16: Vec<u8> = (0..n).flat_map(|i| [(i * 17) as u8, 0xAB]).collect();
    let img = decode(&png(
        w,
        h,
        ColorType::Grayscale,
        BitDepth::Sixteen,
        &gray16,
        |_| {},
    ))
    .unwrap();
    assert_eq!(img.pixels, rgb_of(&gray));

    // Gray 1-bit: 0/1 become 0/255. Rows are padded to whole bytes.
    let bits = vec![0b1010_1000u8; h as usize];
    let img = decode(&png(
        w,
        h,
        ColorType::Grayscale,
        BitDepth::One,
        &bits,
        |_| {},
    ))
    .unwrap();
    assert_eq!(&img.pixels[..15], &rgb_of(&[255, 0, 255, 0, 255]));

    // Gray + alpha.
    let ga: Vec<u8> = (0..n)
        .flat_map(|i| [(i * 17) as u8, (i * 10) as u8])
        .collect();
    let img = decode(&png(
        w,
        h,
        ColorType::GrayscaleAlpha,
        BitDepth::Eight,
        &ga,
        |_| {},
    ))
    .unwrap();
    let expected: Vec<u8> = ga
        .chunks(2)
        .flat_map(|p| [p[0], p[0], p[0], p[1]])
        .collect();
    assert_eq!((img.has_alpha, &img.pixels), (true, &expected));

    // Gray with a tRNS colour key.
    let img = decode(&png(
        w,
        h,
        ColorType::Grayscale,
        BitDepth::Eight,
        &gray,
        |e| e.set_trns(vec![0, 17]),
    ))
    .unwrap();
    assert!(img.has_alpha);
    assert_eq!(pixel(&img, 1, 0), &[17, 17, 17, 0]);
    assert_eq!(pixel(&img, 2, 0), &[34, 34, 34, 255]);

    // Palette without and with tRNS.
    let palette = vec![255, 0, 0, 0, 255, 0, 0, 0, 255];
    let indices: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let img = decode(&png(
        w,
        h,
        ColorType::Indexed,
        BitDepth::Eight,
        &indices,
        |e| e.set_palette(palette.clone()),
    ))
    .unwrap();
    assert!(!img.has_alpha);
    assert_eq!(&img.pixels[..9], &palette[..]);
    let img = decode(&png(
        w,
        h,
        ColorType::Indexed,
        BitDepth::Eight,
        &indices,
        |e| {
            e.set_palette(palette.clone());
            e.set_trns(vec![255, 128]); // third entry: opaque by default
        },
    ))
    .unwrap();
    assert!(img.has_alpha);
    assert_eq!(
        &img.pixels[..12],
        &[255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 255]
    );

    // RGBA 16-bit.
    let rgba16: Vec<u8> = (0..n * 4).flat_map(|i| [(i * 5) as u8, 0x7F]).collect();
    let img = decode(&png(
        w,
        h,
        ColorType::Rgba,
        BitDepth::Sixteen,
        &rgba16,
        |_| {},
    ))
    .unwrap();
    let expected: Vec<u8> = (0..n * 4).map(|i| (i * 5) as u8).collect();
    assert_eq!((img.has_alpha, &img.pixels), (true, &expected));

    // RGBA that is entirely opaque loses its alpha channel.
    let opaque: Vec<u8> = (0..n).flat_map(|i| [i as u8, 2, 3, 255]).collect();
    let img = decode(&png(
        w,
        h,
        ColorType::Rgba,
        BitDepth::Eight,
        &opaque,
        |_| {},
    ))
    .unwrap();
    let expected: Vec<u8> = (0..n).flat_map(|i| [i as u8, 2, 3]).collect();
    assert_eq!((img.has_alpha, &img.pixels), (false, &expected));

    // Palette whose tRNS entries are all 255: opaque as well.
    let img = decode(&png(
        w,
        h,
        ColorType::Indexed,
        BitDepth::Eight,
        &indices,
        |e| {
            e.set_palette(palette.clone());
            e.set_trns(vec![255, 255, 255]);
        },
    ))
    .unwrap();
    assert!(!img.has_alpha);
}

#[test]
fn png_interlaced() {
    // Odd sizes leave some Adam7 passes short or empty.
    for (w, h) in [(13u32, 11u32), (1, 1), (3, 9)] {
        let n = (w * h) as usize;
        let rgb: Vec<u8> = (0..n * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = decode(&interlaced_png(w, h, 2, 3, &rgb)).unwrap();
        assert_eq!((img.width, img.height, img.has_alpha), (w, h, false));
        assert_eq!(img.pixels, rgb, "{w}x{h}");

        let rgba: Vec<u8> = (0..n * 4).map(|i| (i * 11 % 256) as u8).collect();
        let img = decode(&interlaced_png(w, h, 6, 4, &rgba)).unwrap();
        assert_eq!(img.pixels, rgba, "{w}x{h} RGBA");
    }
}

#[test]
fn png_icc_profile() {
    let data = photo_like(8, 8);
    let with_icc = |profile: &[u8]| {
        let mut info = png::Info::with_size(8, 8);
        info.color_type = ColorType::Rgb;
        info.bit_depth = BitDepth::Eight;
        info.icc_profile = Some(profile.to_vec().into());
        let mut out = Vec::new();
        let encoder = png::Encoder::with_info(&mut out, info).unwrap();
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    };
    let icc_of = |png: &[u8]| decode(png).unwrap().icc_profile;

    let profile = wide_profile(500);
    let tagged = with_icc(&profile);
    assert_eq!(icc_of(&tagged), Some(profile.clone()));
    assert_eq!(icc_of(&with_icc(&srgb_profile())), None);
    // iCCP takes precedence over an sRGB chunk (PNG spec, 3rd edition).
    // The png encoder writes one or the other: add sRGB by hand.
    assert_eq!(icc_of(&with_chunk(&tagged, b"sRGB", &[0])), Some(profile));
    // ... and cICP over both: with sRGB code points there is no profile to carry.
    assert_eq!(icc_of(&with_chunk(&tagged, b"cICP", &[1, 13, 0, 1])), None);
}

#[test]
fn png_gamma() {
    let data = photo_like(4, 4);
    let with_gamma = |gamma: u32, srgb: bool| {
        png(4, 4, ColorType::Rgb, BitDepth::Eight, &data, |e| {
            e.set_source_gamma(ScaledFloat::from_scaled(gamma));
            if srgb {
                e.set_source_srgb(SrgbRenderingIntent::Perceptual);
            }
        })
    };
    assert!(decode(&with_gamma(45_455, false)).is_ok());
    assert_eq!(
        decode(&with_gamma(100_000, false)),
        Err(KeepReason::Unsupported("PNG gamma".into()))
    );
    assert_eq!(
        decode(&with_gamma(30_000, false)),
        Err(KeepReason::Unsupported("PNG gamma".into()))
    );
    assert!(
        decode(&png(4, 4, ColorType::Rgb, BitDepth::Eight, &data, |e| {
            e.set_source_srgb(SrgbRenderingIntent::Perceptual)
        }))
        .is_ok()
    );
}

#[test]
fn png_cicp() {
    // cICP (the encoder cannot write it): inserted right after IHDR.
    let base = png(
        4,
        4,
        ColorType::Rgb,
        BitDepth::Eight,
        &photo_like(4, 4),
        |_| {},
    );
    let with_cicp =
        |primaries: u8, transfer: u8| with_chunk(&base, b"cICP", &[primaries, transfer, 0, 1]);
    assert!(decode(&with_cicp(1, 13)).is_ok(), "sRGB");
    // BT.2100 PQ (HDR): a browser maps it, we cannot.
    assert!(matches!(
        decode(&with_cicp(9, 16)),
        Err(KeepReason::Unsupported(_))
    ));
}

#[test]
fn png_animated_is_refused() {
    let frame = photo_like(4, 4);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 4, 4);
    encoder.set_color(ColorType::Rgb);
    encoder.set_animated(2, 0).unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&frame).unwrap();
    writer.write_image_data(&frame).unwrap();
    writer.finish().unwrap();
    assert_eq!(
        decode(&out),
        Err(KeepReason::Unsupported("animated PNG".into()))
    );
}

#[test]
fn png_pixel_bomb() {
    // A header claiming 60000x60000 RGBA (14.4 GB decoded) with a tiny IDAT.
    let bomb = raw_png(&[
        (b"IHDR", &ihdr(60_000, 60_000, 8, 6)),
        (b"IDAT", &zlib_stored(&[0; 64])),
        (b"IEND", &[]),
    ]);
    let start = Instant::now();
    assert_eq!(
        decode(&bomb),
        Err(KeepReason::TooManyPixels {
            width: 60_000,
            height: 60_000,
            max_pixels: 16_000_000
        })
    );
    assert!(start.elapsed() < Duration::from_secs(1));

    // Within the pixel limit but too wide for WebP.
    let wide = raw_png(&[(b"IHDR", &ihdr(20_000, 1, 8, 2)), (b"IEND", &[])]);
    assert!(matches!(decode(&wide), Err(KeepReason::Unsupported(_))));
    // A custom limit applies.
    let small = png(
        100,
        100,
        ColorType::Rgb,
        BitDepth::Eight,
        &vec![0; 30_000],
        |_| {},
    );
    assert!(matches!(
        codecs::decode(
            &small,
            &Limits {
                max_pixels: 9_999,
                ..Limits::default()
            }
        ),
        Err(KeepReason::TooManyPixels {
            width: 100,
            height: 100,
            ..
        })
    ));
}

/// A "scan bomb": a valid progressive JPEG whose last scan is repeated
/// hundreds of times. libjpeg would decode it (with warnings), revisiting
/// the whole image per scan; it is refused before decoding instead.
#[test]
fn progressive_scan_bomb_is_refused_quickly() {
    let (w, h) = (256, 256);
    let opts = JpegOptions {
        progressive: true,
        ..JpegOptions::default()
    };
    let good = jpeg(&photo_like(w, h), w, h, &opts);
    let sos: Vec<usize> = good
        .windows(2)
        .enumerate()
        .filter(|(_, win)| win == &[0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect();
    assert!(sos.len() > 1, "a progressive JPEG has several scans");
    assert!(decode(&good).is_ok(), "the untouched file decodes");

    let last_scan = &good[*sos.last().unwrap()..good.len() - 2]; // up to EOI
    let mut bomb = good[..good.len() - 2].to_vec();
    for _ in 0..200 {
        bomb.extend_from_slice(last_scan);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);

    let start = Instant::now();
    match decode(&bomb) {
        Err(KeepReason::Unsupported(why)) => assert!(why.contains("scans"), "{why}"),
        other => panic!(
            "scan bomb not refused: {:?}",
            other.map(|i| (i.width, i.height))
        ),
    }
    assert!(start.elapsed() < Duration::from_millis(100));
}

/// A JPEG whose entropy-coded data ends early (an EOI marker in the middle
/// of the scan): libjpeg only warns ("Corrupt JPEG data: premature end of
/// data segment") and makes up the rest of the pixels. That is a failure
/// naming the warning, and `transcode` keeps the original.
#[test]
fn entropy_damaged_jpeg_is_a_decode_error_naming_the_warning() {
    let (w, h) = (256, 192);
    let good = jpeg(&noisy_photo(w, h), w, h, &JpegOptions::default());
    codecs::decode(&good, &Limits::default()).expect("the intact file decodes");
    // The scan starts after the SOS segment (FF DA, length).
    let sos = good
        .windows(2)
        .position(|m| m == [0xFF, 0xDA])
        .expect("an SOS marker");
    let scan = sos + 2 + usize::from(u16::from_be_bytes([good[sos + 2], good[sos + 3]]));
    let mut damaged = good[..scan + (good.len() - scan) / 3].to_vec();
    damaged.extend_from_slice(&[0xFF, 0xD9]);
    match codecs::decode(&damaged, &Limits::default()) {
        Err(KeepReason::Decode(message)) => assert!(
            message.starts_with("JPEG warning: Corrupt JPEG data"),
            "{message}"
        ),
        other => panic!("expected a decode error, got {:?}", other.map(|i| i.width)),
    }
    match transcode(
        &damaged,
        &Plan::new(vec![smart_imaging_core::Format::WebP]),
        &Limits::default(),
    ) {
        Outcome::Original(KeepReason::Decode(_)) => {}
        Outcome::Original(other) => panic!("kept for another reason: {other}"),
        Outcome::Converted(_) => panic!("a derivative of made-up pixels was served"),
    }
}

/// A PNG chunk whose CRC does not match its data, a critical one (IDAT) or
/// an ancillary one the decoder otherwise skips (tEXt): a failure, and
/// `transcode` keeps the original.
#[test]
fn png_chunks_with_a_broken_crc_are_decode_errors() {
    let (w, h) = (64, 48);
    let good = png(
        w,
        h,
        ColorType::Rgb,
        BitDepth::Eight,
        &noisy_photo(w as usize, h as usize),
        |_| {},
    );
    codecs::decode(&good, &Limits::default()).expect("the intact file decodes");
    let broken_crc = |png: &[u8], kind: &[u8; 4]| -> Vec<u8> {
        let at = png.windows(4).position(|k| k == kind).expect("the chunk") - 4;
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let mut out = png.to_vec();
        out[at + 8 + len] ^= 0x55; // first byte of the CRC
        out
    };
    let with_text = with_chunk(&good, b"tEXt", b"Comment\0hello");
    codecs::decode(&with_text, &Limits::default()).expect("a valid tEXt chunk decodes");
    for (what, bad) in [
        ("IDAT", broken_crc(&good, b"IDAT")),
        ("tEXt", broken_crc(&with_text, b"tEXt")),
    ] {
        assert!(
            matches!(
                codecs::decode(&bad, &Limits::default()),
                Err(KeepReason::Decode(_))
            ),
            "{what}: a broken CRC decoded"
        );
        match transcode(
            &bad,
            &Plan::new(vec![smart_imaging_core::Format::WebP]),
            &Limits::default(),
        ) {
            Outcome::Original(KeepReason::Decode(message)) => eprintln!("{what}: {message}"),
            Outcome::Original(other) => panic!("{what}: kept for another reason: {other}"),
            Outcome::Converted(_) => panic!("{what}: converted"),
        }
    }
}
