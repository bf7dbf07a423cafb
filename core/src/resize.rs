//! Downscaling to the pixels the screen needs: Lanczos3, in linear light,
//! with premultiplied alpha, through `fast_image_resize` (SSE4.1/AVX2).
//!
//! Pipeline, per pixel component:
//!
//! ```text
//! sRGB u8 --LUT--> linear u16 (x alpha) --Lanczos3--> linear u16 (/ alpha) --LUT--> sRGB u8
//! ```
//!
//! - **Linear light.** Averaging sRGB codes darkens every fine detail (a
//!   black/white checkerboard becomes sRGB 128, which shows at ~22 % of
//!   white's light, where the eye sees the 50 % that is sRGB ~188).
//!   Filtering the light itself is what a downscaled photo should look
//!   like.
//! - **16 bits linear, not 8.** In 8-bit linear, sRGB codes 0-12 collapse
//!   into linear 0-1: shadows would band. In 16 bits the smallest sRGB
//!   step (0 -> 1, 0.03 % of white) is 20 code values apart, so every sRGB
//!   code survives the round trip exactly, and the filter's fixed-point
//!   arithmetic stays far below one output step: against the same filter
//!   in `f64`, no sample differs by more than 1 (tests/resize.rs). The one
//!   difference from all-float filtering: the unsigned intermediate clamps
//!   the first pass's undershoot below black next to bright edges (a
//!   ringing lobe), which lifts a few dark samples (51-60 dB PSNR against
//!   all-`f64` on photos). `f32` would avoid that, but doubles the memory
//!   traffic and `fast_image_resize` filters it 1.25-1.4x slower.
//! - **Premultiplied alpha.** Colour is weighted by its coverage before
//!   filtering and divided by it after, so fully transparent pixels (whose
//!   colour is invisible and often arbitrary) do not bleed into the
//!   visible edge. Premultiplication happens in linear light, as blending
//!   does.
//! - **Lanczos3** with a support scaled to the reduction ratio (a true
//!   low-pass filter: no aliasing/moiré on fine patterns), sharp like
//!   libvips' and Pillow's defaults.
//!
//! Memory: the linear copy of the source is 2 bytes per sample (twice the
//! decoded image), plus the filter's intermediate (output width x source
//! height), both freed on return.

use std::sync::OnceLock;

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::Pixel;
use fast_image_resize::{FilterType, PixelTrait, ResizeAlg, ResizeOptions, Resizer};

use crate::codecs::Image;
use crate::KeepReason;

/// Downscales `img` to exactly `width` x `height` (aspect ratio is the
/// caller's business), keeping `has_alpha` and `icc_profile`.
///
/// Only downscaling: a zero size, or a size larger than the source in
/// either dimension, is `Err(KeepReason::Unsupported)`, as is a pixel
/// buffer that does not match the image's dimensions.
///
/// The same size as the source returns a copy of `img` without filtering
/// (the cost of one `memcpy`); callers that can should simply keep using
/// their image instead of calling this.
pub fn resize(img: &Image, width: u32, height: u32) -> Result<Image, KeepReason> {
    if !img.is_consistent() {
        return Err(KeepReason::Unsupported(
            "resize: pixel buffer does not match the dimensions".into(),
        ));
    }
    if width == 0 || height == 0 || width > img.width || height > img.height {
        return Err(KeepReason::Unsupported(format!(
            "resize from {}x{} to {width}x{height}: only downscaling to at least 1x1",
            img.width, img.height
        )));
    }
    if (width, height) == (img.width, img.height) {
        return Ok(img.clone());
    }
    let pixels = if img.has_alpha {
        resize_linear::<4>(img, width, height)?
    } else {
        resize_linear::<3>(img, width, height)?
    };
    Ok(Image {
        width,
        height,
        pixels,
        has_alpha: img.has_alpha,
        icc_profile: img.icc_profile.clone(),
    })
}

/// 8-bit sRGB or RGBA in, 8-bit out; `N` components per pixel, the 4th
/// being (straight) alpha.
fn resize_linear<const N: usize>(
    img: &Image,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, KeepReason>
where
    [u16; N]: Default,
    Pixel<[u16; N], u16, N>: PixelTrait,
{
    let error = |e: &dyn std::fmt::Display| KeepReason::Unsupported(format!("resize: {e}"));

    let linear: Vec<Pixel<[u16; N], u16, N>> = img
        .pixels
        .chunks_exact(N)
        .map(|px| Pixel::new(to_linear::<N>(px.try_into().unwrap())))
        .collect();
    let src = TypedImageRef::new(img.width, img.height, &linear).map_err(|e| error(&e))?;

    let mut out_linear =
        vec![Pixel::<[u16; N], u16, N>::default(); width as usize * height as usize];
    let mut dst =
        TypedImage::from_pixels_slice(width, height, &mut out_linear).map_err(|e| error(&e))?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        // Premultiplied by to_linear() already (in the same pass).
        .use_alpha(false);
    Resizer::new()
        .resize_typed(&src, &mut dst, &options)
        .map_err(|e| error(&e))?;
    drop(linear);

    let mut out = Vec::with_capacity(out_linear.len() * N);
    for px in &out_linear {
        out.extend_from_slice(&to_srgb::<N>(&px.0));
    }
    Ok(out)
}

/// One sRGB(A) pixel to linear light, premultiplied by alpha when `N == 4`.
#[inline(always)]
fn to_linear<const N: usize>(px: &[u8; N]) -> [u16; N] {
    let lut = &luts().to_linear;
    let mut out = [0u16; N];
    if N == 4 {
        let a = u32::from(px[3]);
        for c in 0..3 {
            // lin * a / 255, rounded: 16-bit premultiplied colour.
            out[c] = ((u32::from(lut[usize::from(px[c])]) * a + 127) / 255) as u16;
        }
        out[3] = u16::from(px[3]) * 257;
    } else {
        for c in 0..N {
            out[c] = lut[usize::from(px[c])];
        }
    }
    out
}

/// One linear pixel (premultiplied when `N == 4`) back to sRGB(A) u8.
#[inline(always)]
fn to_srgb<const N: usize>(px: &[u16; N]) -> [u8; N] {
    let lut = &luts().to_srgb;
    let mut out = [0u8; N];
    if N == 4 {
        let a = u32::from(px[3]);
        let a8 = ((a * 255 + 32767) / 65535) as u8;
        if a8 == 0 {
            // Invisible: a clean zero compresses best.
            return out;
        }
        for c in 0..3 {
            // Lanczos' negative lobes can overshoot the alpha: clamp.
            let straight = ((u32::from(px[c]) * 65535 + a / 2) / a).min(65535);
            out[c] = lut[straight as usize];
        }
        out[3] = a8;
    } else {
        for c in 0..N {
            out[c] = lut[usize::from(px[c])];
        }
    }
    out
}

struct Luts {
    /// sRGB code -> linear light in 0..=65535.
    to_linear: [u16; 256],
    /// Linear light in 0..=65535 -> the nearest sRGB code (nearest in sRGB
    /// terms, i.e. rounded after the transfer function).
    to_srgb: Box<[u8; 65536]>,
}

fn luts() -> &'static Luts {
    static LUTS: OnceLock<Luts> = OnceLock::new();
    LUTS.get_or_init(|| {
        let mut to_linear = [0u16; 256];
        for (code, slot) in to_linear.iter_mut().enumerate() {
            *slot = (srgb_to_linear(code as f64 / 255.0) * 65535.0).round() as u16;
        }
        // Code v covers linear values from the midpoint (in sRGB terms)
        // with v-1 up to the one with v+1: 255 transfer-function
        // evaluations instead of 65536.
        let mut to_srgb = Box::new([0u8; 65536]);
        let mut code = 0usize;
        for (lin, slot) in to_srgb.iter_mut().enumerate() {
            while code < 255 && lin as f64 >= srgb_to_linear((code as f64 + 0.5) / 255.0) * 65535.0
            {
                code += 1;
            }
            *slot = code as u8;
        }
        Luts { to_linear, to_srgb }
    })
}

/// The sRGB transfer function, decoding (IEC 61966-2-1).
fn srgb_to_linear(v: f64) -> f64 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_codes_survive_the_round_trip() {
        let luts = luts();
        for code in 0..=255u8 {
            let lin = luts.to_linear[usize::from(code)];
            assert_eq!(luts.to_srgb[usize::from(lin)], code, "code {code} -> {lin}");
        }
        // Every step is distinct in 16 bits (it would not be in 8).
        assert!(luts.to_linear.windows(2).all(|w| w[1] - w[0] >= 19));
        assert_eq!(luts.to_linear[255], 65535);
        assert_eq!(luts.to_srgb[65535], 255);
    }

    #[test]
    fn premultiply_round_trip() {
        for a in [1u8, 2, 17, 128, 254, 255] {
            for c in [0u8, 1, 50, 128, 200, 255] {
                let px = [c, c / 2, 255 - c, a];
                let back = to_srgb::<4>(&to_linear::<4>(&px));
                assert_eq!(back[3], a);
                if a >= 128 {
                    assert_eq!(back, px, "alpha {a}");
                }
            }
        }
    }
}
