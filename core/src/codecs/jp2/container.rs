//! The JP2 file format around a codestream: the boxes [`wrap_jp2`] writes,
//! and [`parse_jp2`], which reads them back (8-bit RGB or RGBA, sRGB or an
//! ICC profile: what the decoder handles; anything else is refused).
//!
//! ```text
//! jP   signature
//! ftyp brand "jp2 ", compatible "jp2 "
//! jp2h ihdr (size, components, 8 bits)
//!      colr enumerated sRGB, or the image's ICC profile
//!      cdef (with alpha only) R, G, B colour; A opacity of the whole image
//! jp2c the codestream
//! ```
//!
//! Why not OpenJPEG's own JP2 writer: it cannot embed an ICC profile (it
//! never copies the image's profile into its colour box, and then fails a C
//! `assert`, i.e. aborts, with asserts compiled in as they are here), and it
//! needs a seekable output to patch box lengths afterwards. The codestream
//! alone is written sequentially; the stream still supports seeking.

use crate::codecs::bytes::{be_u16, be_u32, u64_at, Endian};
use crate::codecs::Image;

/// Wraps a codestream in the JP2 boxes (see the module documentation).
pub(super) fn wrap_jp2(img: &Image, codestream: &[u8]) -> Vec<u8> {
    let channels = img.channels() as u16;

    let mut ihdr = Vec::with_capacity(14);
    ihdr.extend_from_slice(&img.height.to_be_bytes());
    ihdr.extend_from_slice(&img.width.to_be_bytes());
    ihdr.extend_from_slice(&channels.to_be_bytes());
    ihdr.push(7); // bits per component - 1, unsigned
    ihdr.push(7); // compression type: always 7 (JPEG 2000)
    ihdr.push(0); // colour space known (given by colr)
    ihdr.push(0); // no intellectual property box

    let mut colr = Vec::new();
    match &img.icc_profile {
        Some(icc) => {
            colr.extend_from_slice(&[2, 0, 0]); // method: restricted ICC
            colr.extend_from_slice(icc);
        }
        None => {
            colr.extend_from_slice(&[1, 0, 0]); // method: enumerated
            colr.extend_from_slice(&16u32.to_be_bytes()); // sRGB
        }
    }

    let mut jp2h = Vec::new();
    push_box(&mut jp2h, b"ihdr", &ihdr);
    push_box(&mut jp2h, b"colr", &colr);
    if img.has_alpha {
        // Channel definitions: (channel, type, association). Colour
        // channels 0-2 are colours 1-3; channel 3 is (unpremultiplied)
        // opacity applying to the whole image.
        let mut cdef = Vec::new();
        cdef.extend_from_slice(&4u16.to_be_bytes());
        for (channel, kind, association) in [(0u16, 0u16, 1u16), (1, 0, 2), (2, 0, 3), (3, 1, 0)] {
            cdef.extend_from_slice(&channel.to_be_bytes());
            cdef.extend_from_slice(&kind.to_be_bytes());
            cdef.extend_from_slice(&association.to_be_bytes());
        }
        push_box(&mut jp2h, b"cdef", &cdef);
    }

    let mut out = Vec::with_capacity(codestream.len() + jp2h.len() + 64);
    push_box(&mut out, b"jP  ", &[0x0D, 0x0A, 0x87, 0x0A]);
    let mut ftyp = Vec::with_capacity(12);
    ftyp.extend_from_slice(b"jp2 "); // brand
    ftyp.extend_from_slice(&0u32.to_be_bytes()); // minor version
    ftyp.extend_from_slice(b"jp2 "); // compatibility list
    push_box(&mut out, b"ftyp", &ftyp);
    push_box(&mut out, b"jp2h", &jp2h);
    push_box(&mut out, b"jp2c", codestream);
    out
}

/// Appends a box: 32-bit length (header included), type, payload. The
/// largest payload, the codestream, is bounded by `stream::MAX_OUTPUT`.
fn push_box(out: &mut Vec<u8>, kind: &[u8; 4], payload: &[u8]) {
    let len = (payload.len() + 8) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
}

/// What [`parse_jp2`] found in the boxes.
pub(super) struct Jp2File<'a> {
    /// Payload of the first `jp2c` box.
    pub(super) codestream: &'a [u8],
    pub(super) width: u32,
    pub(super) height: u32,
    /// Components: 3 (RGB) or 4 (RGBA).
    pub(super) channels: usize,
    /// Codestream component of each output channel: R, G, B (, A).
    pub(super) order: [usize; 4],
    pub(super) icc_profile: Option<Vec<u8>>,
}

/// A box: its type and payload.
type JpBox<'a> = ([u8; 4], &'a [u8]);

/// Splits the next box off `data`. `Ok(None)` at the end; an error if the
/// box runs past it.
fn next_box<'a>(data: &mut &'a [u8]) -> Result<Option<JpBox<'a>>, String> {
    let all = *data;
    if all.is_empty() {
        return Ok(None);
    }
    let header = all.get(..8).ok_or("truncated box header")?;
    let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
    let (header_len, len) = match be_u32(header) {
        // The box runs to the end of the file.
        0 => (8, all.len()),
        // 64-bit length after the type.
        1 => {
            let len = u64_at(all, 8, Endian::Big).ok_or("truncated box header")?;
            (16, usize::try_from(len).unwrap_or(usize::MAX))
        }
        len => (8, len as usize),
    };
    if len < header_len || len > all.len() {
        return Err(format!(
            "box '{}' of {len} bytes does not fit in the {} left",
            String::from_utf8_lossy(&kind),
            all.len()
        ));
    }
    *data = &all[len..];
    Ok(Some((kind, &all[header_len..len])))
}

/// Parses the JP2 boxes: signature, `ftyp` (compatible with "jp2 "), then
/// `jp2h` before the first `jp2c`; other boxes are skipped.
pub(super) fn parse_jp2(bytes: &[u8]) -> Result<Jp2File<'_>, String> {
    let mut rest = bytes;
    match next_box(&mut rest) {
        Ok(Some((kind, payload))) if &kind == b"jP  " && payload == [0x0D, 0x0A, 0x87, 0x0A] => {}
        _ => return Err("not a JP2 file (no signature box)".into()),
    }
    match next_box(&mut rest)? {
        Some((kind, payload)) if &kind == b"ftyp" && payload.len() >= 8 => {
            let brands = std::iter::once(&payload[..4]).chain(payload[8..].chunks_exact(4));
            if !brands.into_iter().any(|brand| brand == b"jp2 ") {
                return Err("not compatible with JP2 (ftyp)".into());
            }
        }
        _ => return Err("no ftyp box after the signature".into()),
    }
    let mut header = None;
    while let Some((kind, payload)) = next_box(&mut rest)? {
        match &kind {
            b"jp2h" if header.is_none() => header = Some(parse_jp2h(payload)?),
            b"jp2h" => return Err("two jp2h boxes".into()),
            b"jp2c" => {
                let header = header.ok_or("codestream before the jp2h box")?;
                return Ok(Jp2File {
                    codestream: payload,
                    ..header
                });
            }
            _ => {}
        }
    }
    Err("no codestream (jp2c box)".into())
}

/// Parses the `jp2h` box (`codestream` is filled in by the caller).
fn parse_jp2h(mut data: &[u8]) -> Result<Jp2File<'static>, String> {
    let ihdr = match next_box(&mut data)? {
        Some((kind, payload)) if &kind == b"ihdr" && payload.len() == 14 => payload,
        _ => return Err("jp2h does not start with an image header box".into()),
    };
    let (height, width) = (be_u32(&ihdr[0..]), be_u32(&ihdr[4..]));
    let components = be_u16(&ihdr[8..]);
    // Bits per component - 1, and unsigned (255 would mean "varies").
    if ihdr[10] != 7 {
        return Err(format!("{} bits per component, not 8 unsigned", ihdr[10]));
    }
    if ihdr[11] != 7 {
        return Err("compression type is not JPEG 2000".into());
    }
    let channels = match components {
        3 => 3,
        4 => 4,
        n => return Err(format!("{n} components (only RGB and RGBA are decoded)")),
    };
    let mut colour = None;
    let mut cdef = None;
    while let Some((kind, payload)) = next_box(&mut data)? {
        match &kind {
            // The first colour specification is the one to use.
            b"colr" if colour.is_none() => colour = Some(payload),
            b"cdef" if cdef.is_none() => cdef = Some(payload),
            b"cdef" => return Err("two cdef boxes".into()),
            b"pclr" | b"cmap" => return Err("palette images are not decoded".into()),
            _ => {}
        }
    }
    let icc_profile = match colour {
        None => return Err("no colour specification box".into()),
        Some([1, _, _, cs @ ..]) if cs.len() == 4 => match be_u32(cs) {
            16 => None, // sRGB
            other => return Err(format!("enumerated colour space {other} is not sRGB")),
        },
        // Restricted (2) or any (3) ICC profile.
        Some([2 | 3, _, _, icc @ ..]) if !icc.is_empty() => Some(icc.to_vec()),
        Some(_) => return Err("unsupported colour specification".into()),
    };
    Ok(Jp2File {
        codestream: &[],
        width,
        height,
        channels,
        order: channel_order(channels, cdef)?,
        icc_profile,
    })
}

/// The codestream component of each output channel (R, G, B, then A),
/// from the channel definitions. Without a `cdef` box 3 components are
/// R, G, B; with 4 it must say which one is opacity.
fn channel_order(channels: usize, cdef: Option<&[u8]>) -> Result<[usize; 4], String> {
    let Some(cdef) = cdef else {
        return if channels == 3 {
            Ok([0, 1, 2, 3])
        } else {
            Err("4 components without channel definitions".into())
        };
    };
    if cdef.len() < 2 || usize::from(be_u16(cdef)) != channels || cdef.len() != 2 + 6 * channels {
        return Err("channel definitions do not match the components".into());
    }
    let mut order = [usize::MAX; 4];
    for entry in cdef[2..].chunks_exact(6) {
        let (channel, kind, association) = (
            usize::from(be_u16(&entry[0..])),
            be_u16(&entry[2..]),
            be_u16(&entry[4..]),
        );
        let slot = match (kind, association) {
            // A colour channel: association 1-3 is R, G, B.
            (0, a @ 1..=3) => usize::from(a) - 1,
            // Opacity (not premultiplied) of the whole image.
            (1, 0) if channels == 4 => 3,
            _ => {
                return Err(format!(
                    "unsupported channel definition (type {kind}, association {association})"
                ))
            }
        };
        if channel >= channels || order[slot] != usize::MAX {
            return Err("inconsistent channel definitions".into());
        }
        order[slot] = channel;
    }
    // `channels` entries, each filling a distinct slot below `channels`.
    Ok(order)
}
