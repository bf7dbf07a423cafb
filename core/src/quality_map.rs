//! The URL argument `qlt` (0-100, a JPEG-like quality scale) mapped onto
//! each encoder's own quality scale, so that one `qlt` gives about the
//! same visual quality whatever format is served.
//!
//! # What it means
//!
//! `for_format(qlt, format)` is the encoder quality at which `format`'s
//! **median SSIMULACRA 2 score** (see [`crate::guard`]) over a sample of
//! corpus images equals the median score of **MozJPEG at quality `qlt`**
//! ([`crate::codecs::jpeg::encode`]: 4:2:0, trellis, progressive) on the
//! same images. JPEG is therefore the identity, and PNG (lossless) has no
//! quality: `qlt` is returned unchanged for both.
//!
//! It is a statement about medians, not about each image: on a given
//! image a format can land several points above or below JPEG's score.
//! The split by kind shows how much (qlt 85, encoder quality at equal
//! median score):
//!
//! | sample | WebP | AVIF | JPEG 2000 | JPEG XR |
//! |---|---:|---:|---:|---:|
//! | all 10 (the table) | 83 | 70 | 80 | 82 |
//! | 6 photos only | 85 | 74 | 79 | 84 |
//! | 4 graphics only | 80 | 65 | 82 | 79 |
//!
//! # How it was derived
//!
//! By `core/examples/qlt_calibration.rs` (`cargo run --release -p
//! smart-imaging-core --example qlt_calibration`; ~2.5 minutes of CPU
//! on one core), run on 2026-11-21:
//!
//! - Images: 6 colour photos from `../shared/corpus` (`lom_aitzgorri`,
//!   `lom_life`, `lom_picture1a`, `mate_blinds`, `mate_raindrops`,
//!   `mate_wood`: JPEG originals of 1.3-1.7 MP, downscaled by 2 with
//!   [`crate::resize::resize`] so that their own JPEG grain does not
//!   dominate) and 4 opaque graphics (`dolphin_default_ui` screenshot,
//!   `kde_kokkini`, `mate_umcold` gradient, `ukui_calla`: PNG originals,
//!   downscaled by 2 except the screenshot), 0.23-0.43 MP each.
//! - The reference: MozJPEG at qlt 10, 20, ..., 70, 75, 80, 85, 90, 95,
//!   100, median score over the 10 images. Each other format scored at
//!   its own qualities 0, 5, ..., 80, 82, 84, ..., 100; the quality
//!   reaching the JPEG median found by linear interpolation on that
//!   curve. Scores are full-resolution SSIMULACRA 2 of the decoded
//!   candidate against the (downscaled) original.
//! - Encoders as [`crate::codecs`] calls them: WebP `method` 4 with sharp
//!   YUV; AVIF at speed 6, 4:2:0; JPEG 2000 and JPEG XR through their
//!   own quality curves (`codecs::jp2` target PSNR, `codecs::jxr`
//!   quantiser index), which this table sits on top of.
//! - Libraries: MozJPEG from `mozjpeg-sys` 2.2.3 and libwebp 1.6.0
//!   (vendored by `libwebp-sys` 0.14.4), both built in; libavif 0.11.1
//!   with libaom 3.6.0 (Debian `libavif15` 0.11.1-1+deb12u1, `libaom3`
//!   3.6.0-1+deb12u3; decoded with dav1d 1.0.0); OpenJPEG 2.5.3 (vendored
//!   by `openjpeg-sys` 1.0.12; Debian's `libopenjp2-7` 2.5.0-2+deb12u3 is
//!   installed but not what encodes); jxrlib 1.2~git20170615.f752187-5
//!   (Debian `libjxr0`). Debian's `libwebp7` 1.2.4 is installed too but
//!   not used by the encoder.
//!
//! Re-run the program, and update the table, when an encoder's settings
//! or quality curve change, or when a library is upgraded.
//!
//! # The table
//!
//! | qlt | JPEG median score | WebP | AVIF | JPEG 2000 | JPEG XR |
//! |---:|---:|---:|---:|---:|---:|
//! | 0 | – | 0 | 0 | 0 | 0 |
//! | 10 | -15.5 | 1 | 9 | 5 | 0 |
//! | 20 | 26.1 | 8 | 24 | 20 | 14 |
//! | 30 | 43.8 | 21 | 34 | 35 | 25 |
//! | 40 | 52.4 | 34 | 40 | 45 | 36 |
//! | 50 | 59.8 | 49 | 45 | 54 | 47 |
//! | 60 | 64.0 | 60 | 49 | 62 | 57 |
//! | 70 | 68.7 | 71 | 53 | 71 | 67 |
//! | 75 | 72.0 | 77 | 57 | 76 | 76 |
//! | 80 | 74.6 | 80 | 62 | 78 | 79 |
//! | 85 | 77.7 | 83 | 70 | 80 | 82 |
//! | 90 | 82.1 | 88 | 79 | 83 | 86 |
//! | 95 | 86.9 | 93 | 89 | 88 | 91 |
//! | 100 | 92.7 | 100 | 99 | 99 | 99 |
//!
//! The program then checks the table: every format encoded at
//! `for_format(qlt, ..)` lands within 1.3 points of JPEG's median score
//! from qlt 20 to 95. Median sizes there, relative to the JPEG's: WebP
//! 73-78 %, AVIF 42-61 %, JPEG 2000 57-70 %, JPEG XR 90-119 % (at equal
//! SSIMULACRA 2, JPEG XR is no smaller than MozJPEG up to qlt 85).
//!
//! Between rows, linear interpolation (rounded). qlt 0 maps to 0 by
//! definition: nothing was measured below MozJPEG q10, which already
//! scores -15.5 (WebP needs only q1 for that; JPEG XR scores -2 even at
//! its lowest quality, 0). Lossy WebP never reaches MozJPEG q100's median (92.7; WebP
//! q100 gives 90.5), so qlt 100 is simply its best, 100.

use crate::codecs::Format;

/// The quality to pass to `format`'s encoder for the URL's `qlt` (values
/// above 100 count as 100): about the visual quality of a MozJPEG at
/// quality `qlt` (see the module documentation). Monotone non-decreasing
/// in `qlt`, always within 0..=100. Formats without a table (JPEG, PNG):
/// `qlt` itself. The knots are each format's
/// [`QualityScale::qlt`](crate::codecs::QualityScale::qlt).
pub fn for_format(qlt: u8, format: Format) -> u8 {
    let qlt = qlt.min(100);
    let knots = format.codec().quality.qlt;
    if knots.is_empty() {
        return qlt;
    }
    for pair in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (
            (u32::from(pair[0].0), u32::from(pair[0].1)),
            (u32::from(pair[1].0), u32::from(pair[1].1)),
        );
        let x = u32::from(qlt);
        if x <= x1 {
            // y0 + (x - x0) (y1 - y0) / (x1 - x0), rounded half up; a
            // weighted mean of y0 and y1, so within [y0, y1].
            let span = x1 - x0;
            return ((y0 * (x1 - x) + y1 * (x - x0) + span / 2) / span) as u8;
        }
    }
    // A table that stops short of 100 (the registry's test forbids it).
    knots[knots.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table above, as `examples/qlt_calibration.rs` printed it:
    /// `(qlt, [WebP, AVIF, JPEG 2000, JPEG XR])`.
    const TABLE: [(u8, [u8; 4]); 14] = [
        (0, [0, 0, 0, 0]),
        (10, [1, 9, 5, 0]),
        (20, [8, 24, 20, 14]),
        (30, [21, 34, 35, 25]),
        (40, [34, 40, 45, 36]),
        (50, [49, 45, 54, 47]),
        (60, [60, 49, 62, 57]),
        (70, [71, 53, 71, 67]),
        (75, [77, 57, 76, 76]),
        (80, [80, 62, 78, 79]),
        (85, [83, 70, 80, 82]),
        (90, [88, 79, 83, 86]),
        (95, [93, 89, 88, 91]),
        (100, [100, 99, 99, 99]),
    ];

    #[test]
    fn codecs_carry_the_documented_table() {
        for (column, format) in LOSSY.into_iter().enumerate() {
            let knots: Vec<(u8, u8)> = TABLE.iter().map(|(q, c)| (*q, c[column])).collect();
            assert_eq!(format.codec().quality.qlt, knots.as_slice(), "{format}");
        }
    }

    const LOSSY: [Format; 4] = [Format::WebP, Format::Avif, Format::Jp2, Format::Jxr];

    #[test]
    fn table_is_well_formed() {
        assert_eq!(TABLE[0].0, 0);
        assert_eq!(TABLE[TABLE.len() - 1].0, 100);
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "qlt knots ascend: {pair:?}");
            for c in 0..4 {
                assert!(
                    pair[0].1[c] <= pair[1].1[c],
                    "column {c} descends: {pair:?}"
                );
            }
        }
        assert!(TABLE.iter().all(|(_, qs)| qs.iter().all(|&q| q <= 100)));
    }

    #[test]
    fn monotone_and_in_range() {
        for format in LOSSY {
            let mut previous = 0;
            for qlt in 0..=u8::MAX {
                let q = for_format(qlt, format);
                assert!(q <= 100, "{format:?} qlt {qlt} -> {q}");
                assert!(q >= previous, "{format:?} qlt {qlt} -> {q} < {previous}");
                previous = q;
            }
        }
    }

    #[test]
    fn endpoints() {
        for format in LOSSY {
            assert_eq!(for_format(0, format), 0, "{format:?}");
        }
        assert_eq!(for_format(100, Format::WebP), 100);
        assert_eq!(for_format(100, Format::Avif), 99);
        assert_eq!(for_format(100, Format::Jp2), 99);
        assert_eq!(for_format(100, Format::Jxr), 99);
        // Above 100 counts as 100.
        for format in LOSSY {
            assert_eq!(for_format(u8::MAX, format), for_format(100, format));
        }
    }

    #[test]
    fn identity_for_jpeg_and_png() {
        for qlt in 0..=100 {
            assert_eq!(for_format(qlt, Format::Jpeg), qlt);
            assert_eq!(for_format(qlt, Format::Png), qlt);
        }
        assert_eq!(for_format(200, Format::Jpeg), 100);
    }

    #[test]
    fn table_points() {
        for &(qlt, [webp, avif, jp2, jxr]) in &TABLE {
            assert_eq!(for_format(qlt, Format::WebP), webp, "qlt {qlt}");
            assert_eq!(for_format(qlt, Format::Avif), avif, "qlt {qlt}");
            assert_eq!(for_format(qlt, Format::Jp2), jp2, "qlt {qlt}");
            assert_eq!(for_format(qlt, Format::Jxr), jxr, "qlt {qlt}");
        }
        // The default qualities' neighbourhood, spelled out.
        assert_eq!(for_format(85, Format::WebP), 83);
        assert_eq!(for_format(85, Format::Avif), 70);
        assert_eq!(for_format(75, Format::Jxr), 76);
    }

    #[test]
    fn interpolates_between_knots() {
        // AVIF between qlt 80 (62) and 85 (70), at 82: 62 + 2 * 8 / 5 =
        // 65.2 -> 65.
        assert_eq!(for_format(82, Format::Avif), 65);
        // WebP between qlt 40 (34) and 50 (49): 45 -> 41.5 -> 42.
        assert_eq!(for_format(45, Format::WebP), 42);
    }
}
