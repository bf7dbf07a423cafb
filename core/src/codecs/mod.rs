//! Decode JPEG/PNG bodies to pixels; encode pixels as AVIF, WebP, JPEG
//! 2000 or JPEG XR, or (after resizing, for clients without those) as JPEG
//! or PNG again. One file (or folder) per format, each with its [`Codec`] description,
//! all listed in one registry ([`Format::codec`]); see `README.md` here for
//! what a format must provide.
//!
//! Decoding aims at the pixels a browser would show for the original:
//! EXIF orientation is applied, colour profiles travel along, and anything
//! we cannot reproduce faithfully (CMYK, odd PNG gamma, animation) is
//! refused with [`KeepReason::Unsupported`] so the original is served.
//!
//! Every decoder checks the dimensions from the header against
//! [`Limits::max_pixels`] before it allocates pixel memory.

#![deny(unsafe_op_in_unsafe_fn)]
// The one part of the core that may use `unsafe`: the FFI of the C codecs
// (the crate denies it everywhere else, see Cargo.toml).
#![allow(unsafe_code)]

pub mod avif;
mod bytes;
mod exif;
mod icc;
pub mod jp2;
pub mod jpeg;
pub mod jxr;
pub mod png;
mod registry;
pub mod webp;

use std::any::Any;

pub use registry::{Codec, CodecWork, Effort, Encoding, Format, PerFormat, QualityScale, Tuning};

use crate::outcome::{KeepReason, Limits};
use crate::sniff::sniff;

/// Decoded pixels, 8 bits per sample, rows top to bottom without padding.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// RGB8 (3 bytes per pixel) or, when `has_alpha`, RGBA8 (4 bytes per
    /// pixel, straight i.e. not premultiplied alpha).
    pub pixels: Vec<u8>,
    pub has_alpha: bool,
    /// The source's ICC profile, or `None` when it had none or it was sRGB
    /// (what a browser assumes anyway, so embedding it would only cost bytes).
    pub icc_profile: Option<Vec<u8>>,
}

impl Image {
    /// An opaque image with no ICC profile (sRGB): `pixels` is RGB8, row
    /// by row.
    pub fn rgb(width: u32, height: u32, pixels: Vec<u8>) -> Image {
        Image {
            width,
            height,
            pixels,
            has_alpha: false,
            icc_profile: None,
        }
    }

    /// An image with alpha and no ICC profile (sRGB): `pixels` is RGBA8
    /// (straight alpha), row by row.
    pub fn rgba(width: u32, height: u32, pixels: Vec<u8>) -> Image {
        Image {
            width,
            height,
            pixels,
            has_alpha: true,
            icc_profile: None,
        }
    }

    /// Bytes per pixel: 3 or 4.
    pub fn channels(&self) -> usize {
        if self.has_alpha {
            4
        } else {
            3
        }
    }

    /// Whether `pixels` holds exactly `width * height` pixels.
    pub fn is_consistent(&self) -> bool {
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(self.channels()))
            == Some(self.pixels.len())
    }
}

/// Largest width or height a WebP image can have.
pub const WEBP_MAX_SIDE: u32 = 16383;

/// Decodes a JPEG or PNG body (whichever its signature says it is).
///
/// Errors are the reason to serve the original instead. The JPEG library
/// reports some failures by panicking; most are caught here, but callers
/// must still be prepared for a panic (as [`crate::transcode()`] is).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, KeepReason> {
    match sniff(bytes) {
        Some(format) => (format.codec().decode)(bytes, limits),
        None => Err(KeepReason::NotAnImage),
    }
}

/// Decodes a JPEG or PNG body for an image that will be resized to
/// `fit(width, height)` (the size it is displayed at, orientation
/// applied): a JPEG may come out halved while it is decoded, when that
/// still leaves [`jpeg::DCT_SCALE_MARGIN`] times that size.
/// Returns the image and its full size as displayed.
pub fn decode_for_size(
    bytes: &[u8],
    limits: &Limits,
    fit: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<(Image, (u32, u32)), KeepReason> {
    match sniff(bytes) {
        Some(Format::Jpeg) => jpeg::decode_scaled(bytes, limits, fit),
        Some(format) => (format.codec().decode)(bytes, limits).map(|image| {
            let size = (image.width, image.height);
            (image, size)
        }),
        None => Err(KeepReason::NotAnImage),
    }
}

/// What decoding a JPEG or PNG body will cost, from its header alone (the
/// work budget charges it before decoding): its pixels, and pixel-passes
/// per pixel (see [`crate::work`]); `None` when the header cannot be read
/// (the decoder then says why).
pub fn decode_work(bytes: &[u8]) -> Option<(u64, f64)> {
    match sniff(bytes)? {
        Format::Jpeg => jpeg::decode_work(bytes),
        Format::Png => png::decode_work(bytes),
        _ => None,
    }
}

/// Checks header dimensions before any pixel memory is allocated: the
/// defence against decompression bombs (a few hundred bytes of PNG can
/// claim gigapixels).
fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), KeepReason> {
    if width == 0 || height == 0 {
        return Err(KeepReason::Decode(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(KeepReason::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if width > WEBP_MAX_SIDE || height > WEBP_MAX_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "{width}x{height} exceeds WebP's {WEBP_MAX_SIDE} pixels per side"
        )));
    }
    Ok(())
}

/// Drops the alpha channel of RGBA pixels if every pixel is opaque: an
/// opaque WebP needs no ALPH chunk, and the output is then smaller.
fn drop_opaque_alpha(image: &mut Image) {
    if !image.has_alpha || !image.pixels.chunks_exact(4).all(|px| px[3] == 255) {
        return;
    }
    let rgb = image
        .pixels
        .chunks_exact(4)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    image.pixels = rgb;
    image.has_alpha = false;
}

/// The message of a panic payload (`panic!("...")` carries a `&str` or a
/// `String`; the JPEG library's error handler unwinds with a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Piecewise-linear interpolation in `curve` (sorted by x, covering x):
/// the quality curves of the JPEG 2000 and JPEG XR encoders.
fn interpolate(curve: &[(f32, f32)], x: f32) -> f32 {
    for pair in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (x - x0) * (y1 - y0) / (x1 - x0);
        }
    }
    curve[curve.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_checks() {
        let limits = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        assert!(check_dimensions(10, 100, &limits).is_ok());
        assert!(matches!(
            check_dimensions(0, 5, &limits),
            Err(KeepReason::Decode(_))
        ));
        assert!(matches!(
            check_dimensions(10, 101, &limits),
            Err(KeepReason::TooManyPixels {
                width: 10,
                height: 101,
                max_pixels: 1000
            })
        ));
        let big = Limits {
            max_pixels: u64::MAX,
            ..Limits::default()
        };
        assert!(matches!(
            check_dimensions(16384, 1, &big),
            Err(KeepReason::Unsupported(_))
        ));
        assert!(check_dimensions(16383, 16383, &big).is_ok());
        // No overflow in the product.
        assert!(matches!(
            check_dimensions(u32::MAX, u32::MAX, &limits),
            Err(KeepReason::TooManyPixels { .. })
        ));
    }

    #[test]
    fn panic_messages() {
        let message = |f: fn()| panic_message(&*std::panic::catch_unwind(f).unwrap_err());
        assert_eq!(message(|| panic!("static")), "static");
        assert_eq!(message(|| panic!("formatted {}", 1)), "formatted 1");
        assert_eq!(
            message(|| std::panic::panic_any(42)),
            "panic with a non-string payload"
        );
    }

    #[test]
    fn opaque_alpha_is_dropped() {
        let mut img = Image::rgba(2, 1, vec![1, 2, 3, 255, 4, 5, 6, 255]);
        drop_opaque_alpha(&mut img);
        assert!(!img.has_alpha);
        assert_eq!(img.pixels, vec![1, 2, 3, 4, 5, 6]);

        let mut img = Image {
            pixels: vec![1, 2, 3, 255, 4, 5, 6, 254],
            has_alpha: true,
            ..img
        };
        drop_opaque_alpha(&mut img);
        assert!(img.has_alpha);
        assert_eq!(img.pixels.len(), 8);
    }
}
