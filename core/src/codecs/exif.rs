//! EXIF orientation: read the tag, and turn the pixels the way a browser
//! displays them (browsers honour the tag for JPEG; the WebP we write
//! carries no EXIF, so the rotation has to be baked into the pixels).

use super::bytes::{self, Endian};
use super::Image;

/// TIFF tag number of Orientation in IFD0.
const ORIENTATION_TAG: u16 = 0x0112;

/// Reads the Orientation tag (1..=8) from the payload of an APP1 segment.
/// Returns `None` if the segment is not EXIF, is malformed, or has no
/// valid orientation (the browser then shows the image as stored).
pub(super) fn orientation(app1: &[u8]) -> Option<u8> {
    let tiff = app1.strip_prefix(b"Exif\0\0")?;
    let endian = match tiff.get(0..4)? {
        b"II*\0" => Endian::Little,
        b"MM\0*" => Endian::Big,
        _ => return None,
    };
    let u16_at = |at: usize| bytes::u16_at(tiff, at, endian);
    let u32_at = |at: usize| bytes::u32_at(tiff, at, endian);

    let ifd0 = u32_at(4)? as usize;
    let entries = u16_at(ifd0)? as usize;
    for i in 0..entries {
        let entry = ifd0 + 2 + i * 12;
        if u16_at(entry)? != ORIENTATION_TAG {
            continue;
        }
        // Type SHORT (3) per the spec; some writers use LONG (4). Either
        // way the single value sits at the start of the value field.
        let value = match u16_at(entry + 2)? {
            3 => u32::from(u16_at(entry + 8)?),
            4 => u32_at(entry + 8)?,
            _ => return None,
        };
        return (1..=8).contains(&value).then_some(value as u8);
    }
    None
}

/// Whether EXIF `orientation` swaps width and height (5-8).
pub(super) fn transposes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// Returns `image` transformed as EXIF `orientation` prescribes for display.
/// Orientations 5-8 swap width and height.
pub(super) fn apply(image: Image, orientation: u8) -> Image {
    if !(2..=8).contains(&orientation) {
        return image;
    }
    let (w, h) = (image.width as usize, image.height as usize);
    let ch = image.channels();
    let swaps = transposes(orientation);
    let (out_w, out_h) = if swaps { (h, w) } else { (w, h) };

    // For each output pixel (x, y), the source pixel it comes from.
    let source = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),         // mirror horizontally
            3 => (w - 1 - x, h - 1 - y), // rotate 180°
            4 => (x, h - 1 - y),         // mirror vertically
            5 => (y, x),                 // transpose
            6 => (y, h - 1 - x),         // rotate 90° clockwise
            7 => (w - 1 - y, h - 1 - x), // transverse
            _ => (w - 1 - y, x),         // 8: rotate 90° counter-clockwise
        }
    };

    let mut pixels = vec![0u8; image.pixels.len()];
    for (y, row) in pixels.chunks_exact_mut(out_w * ch).enumerate() {
        for (x, px) in row.chunks_exact_mut(ch).enumerate() {
            let (sx, sy) = source(x, y);
            let at = (sy * w + sx) * ch;
            px.copy_from_slice(&image.pixels[at..at + ch]);
        }
    }
    Image {
        width: out_w as u32,
        height: out_h as u32,
        pixels,
        ..image
    }
}

/// Builds an APP1 EXIF payload holding only an Orientation tag. For tests.
#[cfg(test)]
pub(crate) fn test_app1(orientation: u16, big_endian: bool) -> Vec<u8> {
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
    app1.extend_from_slice(&u32b(8)); // IFD0 right after the header
    app1.extend_from_slice(&u16b(1)); // one entry
    app1.extend_from_slice(&u16b(ORIENTATION_TAG));
    app1.extend_from_slice(&u16b(3)); // SHORT
    app1.extend_from_slice(&u32b(1)); // count
    app1.extend_from_slice(&u16b(orientation));
    app1.extend_from_slice(&[0, 0]); // value field padding
    app1.extend_from_slice(&u32b(0)); // no next IFD
    app1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders() {
        for o in 1..=8 {
            assert_eq!(orientation(&test_app1(o, false)), Some(o as u8));
            assert_eq!(orientation(&test_app1(o, true)), Some(o as u8));
        }
        assert_eq!(orientation(&test_app1(0, false)), None);
        assert_eq!(orientation(&test_app1(9, true)), None);
        assert_eq!(orientation(b"http://ns.adobe.com/xap/1.0/\0<x/>"), None);
        let full = test_app1(6, true);
        for len in 0..full.len() {
            // Truncations must not panic; the tag is lost once they reach it.
            let _ = orientation(&full[..len]);
        }
    }

    /// 3x2 image whose pixels are numbered 0..6 in reading order:
    /// ```text
    /// 0 1 2
    /// 3 4 5
    /// ```
    fn numbered() -> Image {
        Image::rgb(3, 2, (0..6).flat_map(|i| [i, i, i]).collect())
    }

    fn layout(img: &Image) -> Vec<u8> {
        img.pixels.chunks_exact(3).map(|px| px[0]).collect()
    }

    #[test]
    fn all_orientations() {
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]),
            (3, (3, 2), [5, 4, 3, 2, 1, 0]),
            (4, (3, 2), [3, 4, 5, 0, 1, 2]),
            (5, (2, 3), [0, 3, 1, 4, 2, 5]),
            (6, (2, 3), [3, 0, 4, 1, 5, 2]),
            (7, (2, 3), [5, 2, 4, 1, 3, 0]),
            (8, (2, 3), [2, 5, 1, 4, 0, 3]),
        ];
        for (o, dims, expected) in cases {
            let out = apply(numbered(), o);
            assert_eq!((out.width, out.height), dims, "orientation {o}");
            assert_eq!(layout(&out), expected, "orientation {o}");
        }
    }
}
