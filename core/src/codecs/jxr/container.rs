//! The JPEG XR container (a TIFF-like directory) and the image headers of
//! its planes, parsed and checked before jxrlib sees a file: only tags it
//! handles harmlessly, only byte ranges within the file (see
//! [`decode`](super::decode) for why).

use super::ffi;
use crate::codecs::bytes::{be_u16, be_u32, le_u16, le_u32};

/// What [`parse_container`] found.
pub(super) struct Container<'a> {
    /// The colour plane's bytes (`ImageOffset`, `ImageByteCount`).
    pub(super) image: &'a [u8],
    /// The alpha plane's bytes, for 32bppRGBA.
    pub(super) alpha: Option<&'a [u8]>,
    /// The `ImageWidth` and `ImageHeight` tags, if present.
    pub(super) width: Option<u32>,
    pub(super) height: Option<u32>,
    pub(super) icc_profile: Option<Vec<u8>>,
}

/// The 16 bytes of a pixel format GUID as the container stores it
/// (Data1-3 little-endian, then Data4).
fn guid_bytes(guid: &ffi::GUID) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&guid.Data1.to_le_bytes());
    out[4..6].copy_from_slice(&guid.Data2.to_le_bytes());
    out[6..8].copy_from_slice(&guid.Data3.to_le_bytes());
    out[8..].copy_from_slice(&guid.Data4);
    out
}

/// Parses the container (a TIFF-like directory: "II", 0xBC, version 0 or
/// 1, then entries of tag, type, count, value), accepting only tags
/// jxrlib handles harmlessly and only byte ranges within `bytes`.
pub(super) fn parse_container(bytes: &[u8]) -> Result<Container<'_>, String> {
    if bytes.len() < 8 || &bytes[..3] != b"II\xBC" || bytes[3] > 1 {
        return Err("not a JPEG XR file".into());
    }
    let range = |offset: u32, len: u32| -> Result<&[u8], String> {
        crate::codecs::bytes::range(bytes, offset as usize, len as usize)
            .ok_or_else(|| "container points past the end of the file".to_owned())
    };
    let directory = le_u32(&bytes[4..]);
    let count = le_u16(range(directory, 2)?);
    if count == 0 || count == u16::MAX {
        return Err("empty container directory".into());
    }
    let entries = range(
        directory.checked_add(2).ok_or("bad directory offset")?,
        12 * u32::from(count),
    )?;
    let (mut format, mut width, mut height, mut icc_profile) = (None, None, None, None);
    let (mut image_offset, mut image_len, mut alpha_offset, mut alpha_len) =
        (None, None, None, None);
    for entry in entries.chunks_exact(12) {
        let (tag, count, value) = (le_u16(entry), le_u32(&entry[4..]), le_u32(&entry[8..]));
        let single = |field: &mut Option<u32>| {
            if count != 1 || field.is_some() {
                return Err(format!("malformed container tag {tag:#06x}"));
            }
            *field = Some(value);
            Ok(())
        };
        match tag {
            // Pixel format: a GUID stored at `value`.
            0xBC01 => format = Some(range(value, 16)?),
            // Orientation: jxrlib asserts it is below 8, and anything but
            // 0 would flip or rotate the decoded image.
            0xBC02 if count == 1 && value == 0 => {}
            0xBC02 => return Err("rotated or flipped images are not decoded".into()),
            0xBC80 => single(&mut width)?,
            0xBC81 => single(&mut height)?,
            0xBCC0 => single(&mut image_offset)?,
            0xBCC1 => single(&mut image_len)?,
            0xBCC2 => single(&mut alpha_offset)?,
            0xBCC3 => single(&mut alpha_len)?,
            0x8773 if icc_profile.is_none() && count > 4 => {
                icc_profile = Some(range(value, count)?.to_vec())
            }
            // Resolution (jxrlib refuses a count other than 1), XMP,
            // compression, image type, discarded data: recorded or
            // ignored by jxrlib, and by us.
            0xBC82 | 0xBC83 if count == 1 => {}
            0x02BC | 0xBC03 | 0xBC04 | 0xBCC4 | 0xBCC5 => {}
            _ => return Err(format!("unsupported container tag {tag:#06x}")),
        }
    }
    // SAFETY (both): immutable GUIDs exported by libjxrglue.
    let rgb = guid_bytes(unsafe { &ffi::GUID_PKPixelFormat24bppRGB });
    let rgba = guid_bytes(unsafe { &ffi::GUID_PKPixelFormat32bppRGBA });
    let has_alpha = match format {
        Some(f) if f == rgb => false,
        Some(f) if f == rgba => true,
        Some(_) => return Err("pixel format is not 24bppRGB or 32bppRGBA".into()),
        None => return Err("no pixel format".into()),
    };
    let image = match (image_offset, image_len) {
        (Some(offset), Some(len)) if offset > 0 && len > 0 => range(offset, len)?,
        _ => return Err("no image plane".into()),
    };
    let alpha = match (alpha_offset, alpha_len) {
        _ if !has_alpha => None,
        (Some(offset), Some(len)) if offset > 0 && len > 0 => Some(
            range(offset, len)
                // jxrlib's writer records the alpha plane's end offset as
                // its byte count (nCbAlpha + nOffAlpha), and its reader
                // only checks that it is not 0: accept both readings.
                .or_else(|e| match len.checked_sub(offset) {
                    Some(len) if len > 0 => range(offset, len),
                    _ => Err(e),
                })?,
        ),
        _ => return Err("no alpha plane".into()),
    };
    if width == Some(0) || height == Some(0) {
        return Err("image has no pixels".into());
    }
    Ok(Container {
        image,
        alpha,
        width,
        height,
        icc_profile,
    })
}

/// What [`parse_plane_header`] found.
pub(super) struct PlaneHeader {
    pub(super) width: u32,
    pub(super) height: u32,
}

/// Checks the start of an image plane (JPEG XR's image header): the
/// "WMPHOTO" signature, codec version 1, no windowing, the `colour` format
/// (`CF_RGB` for the colour plane, `Y_ONLY` for alpha) at 8 bits, and
/// returns its size.
pub(super) fn parse_plane_header(plane: &[u8], colour: u8) -> Result<PlaneHeader, String> {
    let fixed = plane.get(..12).ok_or("truncated image header")?;
    if &fixed[..8] != b"WMPHOTO\0" {
        return Err("no image header signature".into());
    }
    if fixed[8] >> 4 != 1 {
        return Err("unknown codec version".into());
    }
    let flags = fixed[10];
    let (short_header, windowing) = (flags & 0x80 != 0, flags & 0x20 != 0);
    if windowing {
        return Err("windowed images are not decoded".into());
    }
    let (format, depth) = (fixed[11] >> 4, fixed[11] & 0x0F);
    if format != colour || depth != ffi::BD_8 as u8 {
        return Err(format!(
            "colour format {format} / bit depth {depth} is not 8-bit {}",
            if colour == ffi::Y_ONLY as u8 {
                "grey"
            } else {
                "RGB"
            }
        ));
    }
    // Width and height minus 1, big-endian, 16 or 32 bits each.
    let (width, height) = if short_header {
        let b = plane.get(12..16).ok_or("truncated image header")?;
        (u32::from(be_u16(b)) + 1, u32::from(be_u16(&b[2..])) + 1)
    } else {
        let b = plane.get(12..20).ok_or("truncated image header")?;
        let field = |i: usize| be_u32(&b[i..]).checked_add(1);
        match (field(0), field(4)) {
            (Some(w), Some(h)) => (w, h),
            _ => return Err("image too large".into()),
        }
    };
    Ok(PlaneHeader { width, height })
}
