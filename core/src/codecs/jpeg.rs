//! JPEG decoding and encoding through MozJPEG (the `mozjpeg` crate).
//!
//! libjpeg cannot return from its error handler; the `mozjpeg` crate makes
//! it unwind (a Rust panic through the C frames, which are built with
//! unwinding support). We install our own handler so that we can also stop
//! on a truncated file, and catch the unwind right here.

use std::os::raw::c_int;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg::{ColorSpace, Compress, Decompress, Marker};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};

use super::registry::{same_effort, unbounded, Codec, CodecWork, Format, QualityScale};
use super::{check_dimensions, exif, icc, panic_message, Image};
use crate::{KeepReason, Limits};

/// JPEG in the registry: a source, and re-encoded (MozJPEG) after resizing
/// for clients that take no better format.
pub static CODEC: Codec = Codec {
    format: Format::Jpeg,
    name: "jpeg",
    mime: "image/jpeg",
    accept: &[],
    quality: QualityScale {
        lossless: false,
        floor: 40,
        default_ceiling: 100,
        configured_by: Format::Jpeg,
        // `qlt` is a JPEG quality to begin with.
        qlt: &[],
    },
    encode: |image, encoding| encode(image, encoding.quality),
    decode,
    max_pixels: unbounded,
    cheaper_search: same_effort,
    // ~50-60 ms/MP per encode (MozJPEG: trellis, optimised scans); a
    // decode as `decode_work` charges a baseline one.
    work: CodecWork {
        encode: |_, _| 0.75,
        decode: DECODE_WORK,
    },
};

/// More scans than any real encoder writes (progressive JPEGs have about 10;
/// MozJPEG's optimised scripts under 20). Each scan of a progressive JPEG
/// makes the decoder revisit the whole image, so a small file with
/// thousands of scans is a CPU bomb; it is refused before decoding.
pub const MAX_SCANS: usize = 100;

/// APP1 carries EXIF, APP2 the ICC profile.
const SAVED_MARKERS: &[Marker] = &[Marker::APP(1), Marker::APP(2)];

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Image, KeepReason> {
    guarded(bytes, limits, &|_, _| FULL).map(|(image, _)| image)
}

/// [`decode`], and possibly halved: libjpeg halves the image while it
/// decodes it (its inverse DCT computes 4x4 pixels of each 8x8 block) when
/// both sides stay at least [`DCT_SCALE_MARGIN`] times what `fit` (given
/// the size as displayed, orientation applied) says they will be resized
/// to. Returns the image and the full size as displayed.
///
/// Halving while decoding does a quarter of the inverse DCT, colour
/// conversion and upsampling, holds a quarter of the pixels, and leaves
/// the resize a quarter of them.
pub(super) fn decode_scaled(
    bytes: &[u8],
    limits: &Limits,
    fit: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<(Image, (u32, u32)), KeepReason> {
    let halve = |(width, height): (u32, u32), target: (u32, u32)| {
        let keeps = |side: u32, target: u32| {
            u64::from(side).div_ceil(2) >= u64::from(target) * u64::from(DCT_SCALE_MARGIN)
        };
        keeps(width, target.0) && keeps(height, target.1)
    };
    guarded(bytes, limits, &|(width, height), transposed| {
        let target = fit(width, height);
        // Compared as stored, before the orientation swaps the sides.
        let swap = |(a, b)| if transposed { (b, a) } else { (a, b) };
        if halve(swap((width, height)), swap(target)) {
            HALF
        } else {
            FULL
        }
    })
}

/// [`decode`] at `scale_num` / 8 of the size (1 to 8: libjpeg's scaled
/// inverse DCT), whatever the result is for: for studies of what scaling
/// while decoding changes (`core/examples/dct_study.rs`).
pub fn decode_at_scale(bytes: &[u8], limits: &Limits, scale_num: u8) -> Result<Image, KeepReason> {
    let scale_num = scale_num.clamp(1, FULL);
    guarded(bytes, limits, &|_, _| scale_num).map(|(image, _)| image)
}

/// libjpeg's `scale_num` (over 8) for no scaling, and for halving.
const FULL: u8 = 8;
const HALF: u8 = 4;

/// [`decode_unguarded`] with libjpeg's unwinding errors caught.
fn guarded(
    bytes: &[u8],
    limits: &Limits,
    scale: &dyn Fn((u32, u32), bool) -> u8,
) -> Result<(Image, (u32, u32)), KeepReason> {
    catch_unwind(AssertUnwindSafe(|| decode_unguarded(bytes, limits, scale)))
        .unwrap_or_else(|payload| Err(KeepReason::Decode(panic_message(&*payload))))
}

/// How much larger than the size it will be resized to a halved decode
/// must stay, per side. libjpeg's scaled inverse DCT averages
/// gamma-encoded values (where it differs most, it scores within 0.3 of
/// a 2x2 mean of them), where `crate::resize` filters in linear light;
/// so the halving is kept to images delivered at an eighth of their size
/// or less, where the resize after it still does most of the work. What is delivered
/// then scores at least 83.5 (SSIMULACRA 2; mean 95) against a full decode
/// resized the same way, on the corpus photos; at twice the size, as low
/// as 74.9, and quartering (1/4) lower still. More margin does not remove
/// the rest (85.7 at 8x, 87.2 at 16x): it is the gamma-space average of
/// fine bright detail (`core/examples/dct_study.rs`, docs/benchmarks.md).
pub const DCT_SCALE_MARGIN: u32 = 4;

/// Decodes at the scale (libjpeg's `scale_num` over 8) that `scale`
/// chooses from the full size as displayed and whether the orientation
/// swaps the sides. Returns the image (as displayed) and that full size.
fn decode_unguarded(
    bytes: &[u8],
    limits: &Limits,
    scale: &dyn Fn((u32, u32), bool) -> u8,
) -> Result<(Image, (u32, u32)), KeepReason> {
    let scans = count_scans(bytes);
    if scans > MAX_SCANS {
        return Err(KeepReason::Unsupported(format!(
            "JPEG with {scans} scans (more than {MAX_SCANS})"
        )));
    }
    let io_error = |e: std::io::Error| KeepReason::Decode(format!("JPEG: {e}"));

    // Reads the header (and the saved markers) only.
    let mut header = Decompress::builder()
        .with_err(error_manager())
        .with_markers(SAVED_MARKERS)
        .from_mem(bytes)
        .map_err(io_error)?;

    let (width, height) = (header.width() as u32, header.height() as u32);
    check_dimensions(width, height, limits)?;

    if matches!(
        header.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    ) {
        // Browsers render CMYK JPEGs through their own (profile-dependent)
        // conversion; we would not match it.
        return Err(KeepReason::Unsupported("CMYK JPEG".into()));
    }

    let mut orientation = None;
    let mut icc_chunks = Vec::new();
    for marker in header.markers() {
        match marker.marker {
            Marker::APP(1) if orientation.is_none() => orientation = exif::orientation(marker.data),
            Marker::APP(2) => {
                if let Some(chunk) = marker.data.strip_prefix(b"ICC_PROFILE\0") {
                    icc_chunks.push(chunk);
                }
            }
            _ => {}
        }
    }
    let icc_profile = match reassemble_icc(&icc_chunks) {
        Some(profile) => icc::classify(profile)?,
        None => None,
    };

    let transposed = orientation.is_some_and(exif::transposes);
    let displayed = if transposed {
        (height, width)
    } else {
        (width, height)
    };
    let scale = scale(displayed, transposed);
    if scale != FULL {
        header.scale(scale);
    }
    let scaled = |side: u32| (u64::from(side) * u64::from(scale)).div_ceil(8) as u32;
    let (width, height) = (scaled(width), scaled(height));

    // Gray is expanded to RGB by libjpeg itself.
    let mut started = header.rgb().map_err(io_error)?;
    if (started.width(), started.height()) != (width as usize, height as usize) {
        return Err(KeepReason::Decode(
            "JPEG output size differs from the header".into(),
        ));
    }
    let pixels: Vec<u8> = started.read_scanlines().map_err(io_error)?;
    started.finish().map_err(io_error)?;
    if pixels.len() != width as usize * height as usize * 3 {
        return Err(KeepReason::Decode(
            "JPEG: fewer scanlines than the header promised".into(),
        ));
    }

    let image = Image {
        width,
        height,
        pixels,
        has_alpha: false,
        icc_profile,
    };
    let image = match orientation {
        Some(o) => exif::apply(image, o),
        None => image,
    };
    Ok((image, displayed))
}

/// Encodes `img` as a JPEG at `quality` (1-100; 0 counts as 1) with
/// MozJPEG's defaults: progressive with optimised scans, trellis
/// quantisation, optimised Huffman tables; 4:2:0 chroma. The ICC profile,
/// if any, is embedded. No EXIF is written: the pixels are already in
/// display orientation.
///
/// An image with alpha is `Err(KeepReason::Unsupported)`: JPEG has no
/// transparency, and dropping it would show the hidden colours of
/// transparent pixels. (Decoders already drop an all-opaque alpha.)
///
/// libjpeg's errors (which unwind) become `Err(KeepReason::Encode)`.
pub fn encode(img: &Image, quality: u8) -> Result<Vec<u8>, KeepReason> {
    if !img.is_consistent() {
        return Err(KeepReason::Encode(
            "JPEG: pixel buffer does not match the dimensions".into(),
        ));
    }
    if img.has_alpha {
        return Err(KeepReason::Unsupported(
            "JPEG cannot keep an alpha channel".into(),
        ));
    }
    if img.width == 0 || img.height == 0 || img.width > MAX_SIDE || img.height > MAX_SIDE {
        return Err(KeepReason::Unsupported(format!(
            "{}x{} is outside JPEG's 1..={MAX_SIDE} pixels per side",
            img.width, img.height
        )));
    }
    let icc_segments = match &img.icc_profile {
        Some(profile) => icc_app2_segments(profile)?,
        None => Vec::new(),
    };
    catch_unwind(AssertUnwindSafe(|| {
        encode_unguarded(img, quality, &icc_segments)
    }))
    .unwrap_or_else(|payload| Err(KeepReason::Encode(panic_message(&*payload))))
}

/// Largest width or height libjpeg accepts (`JPEG_MAX_DIMENSION`).
const MAX_SIDE: u32 = 65500;

fn encode_unguarded(
    img: &Image,
    quality: u8,
    icc_segments: &[Vec<u8>],
) -> Result<Vec<u8>, KeepReason> {
    let io_error = |e: std::io::Error| KeepReason::Encode(format!("JPEG: {e}"));
    // jpeg_set_defaults in MozJPEG selects its "max compression" profile:
    // progressive, optimised scans, trellis quantisation, optimised coding.
    let mut compress = Compress::new_err(Box::new(error_manager()), ColorSpace::JCS_RGB);
    compress.set_size(img.width as usize, img.height as usize);
    compress.set_quality(f32::from(quality.clamp(1, 100)));
    compress.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
    // Rough output size, to avoid most reallocations.
    let capacity = img.width as usize * img.height as usize / 4 + 1024;
    let mut started = compress
        .start_compress(Vec::with_capacity(capacity))
        .map_err(io_error)?;
    for segment in icc_segments {
        started.write_marker(Marker::APP(2), segment);
    }
    started.write_scanlines(&img.pixels).map_err(io_error)?;
    started.finish().map_err(io_error)
}

/// Payload bytes of one APP2 segment after "ICC_PROFILE\0" and the two
/// sequence bytes: the 65533-byte marker limit less 14 bytes of header.
const ICC_CHUNK_LEN: usize = 65_519;

/// APP2 payloads carrying `profile` as ICC_PROFILE chunks numbered from 1,
/// as the ICC specification (and every decoder, see [`reassemble_icc`])
/// wants them; MozJPEG's own `write_icc_profile` numbers them from 0.
fn icc_app2_segments(profile: &[u8]) -> Result<Vec<Vec<u8>>, KeepReason> {
    let parts: Vec<&[u8]> = profile.chunks(ICC_CHUNK_LEN).collect();
    let count = u8::try_from(parts.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            KeepReason::Unsupported(format!(
                "ICC profile of {} bytes does not fit in JPEG's 255 APP2 segments",
                profile.len()
            ))
        })?;
    Ok(parts
        .iter()
        .zip(1..=count)
        .map(|(part, seq)| {
            let mut segment = Vec::with_capacity(14 + part.len());
            segment.extend_from_slice(b"ICC_PROFILE\0");
            segment.extend_from_slice(&[seq, count]);
            segment.extend_from_slice(part);
            segment
        })
        .collect())
}

/// Counts start-of-scan markers (FF DA). In entropy-coded data a 0xFF byte is
/// always followed by 0x00 or a restart marker, so FF DA there is always a
/// real marker; inside metadata (an EXIF thumbnail) it may also be counted,
/// which only over-estimates.
fn count_scans(bytes: &[u8]) -> usize {
    bytes.windows(2).filter(|w| w == &[0xFF, 0xDA]).count()
}

/// Decoding cost, in pixel-passes per pixel (see [`crate::work`]): a
/// baseline JPEG ~2-4 ms/MP on the corpus photos, plus [`SCAN_WORK`] per
/// scan: each scan of a progressive JPEG revisits every block (a flat
/// 9 MP image in 64 scans decodes at ~8 ms/MP, in 100 scans ~15).
const DECODE_WORK: f64 = 0.03;
const SCAN_WORK: f64 = 0.0025;

/// What decoding `bytes` costs (see [`super::decode_work`]): its pixels and
/// pixel-passes per pixel, from the frame header and its scans, counted by
/// a walk over the markers.
pub(super) fn decode_work(bytes: &[u8]) -> Option<(u64, f64)> {
    let header = walk_markers(bytes)?;
    let pixels = u64::from(header.width) * u64::from(header.height);
    Some((pixels, DECODE_WORK + SCAN_WORK * header.scans as f64))
}

/// What [`walk_markers`] found.
#[derive(Debug, PartialEq)]
struct Header {
    width: u32,
    height: u32,
    scans: usize,
}

/// Walks the segments of a JPEG as libjpeg reads them (skipping each
/// segment by its length, and each scan's entropy-coded data up to the
/// next marker that is not a stuffed 0xFF or a restart): the size in the
/// first frame header, and the number of scans up to EOI or the end of the
/// data. Only the file's own markers count: an EXIF thumbnail's are inside
/// its APP1 segment. `None` without a frame header or when a segment is
/// malformed (the decoder then says why).
fn walk_markers(bytes: &[u8]) -> Option<Header> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut size = None;
    let mut scans = 0;
    let mut at = 2;
    while at < bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        // Fill bytes before a marker.
        while bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at + 1) else {
            break;
        };
        at += 2;
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
        let segment = bytes.get(at + 2..at + len.max(2))?;
        // SOF0..SOF15 (not DHT, JPG or DAC): P, Y, X, ...
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) && size.is_none()
        {
            let height = u16::from_be_bytes([*segment.get(1)?, *segment.get(2)?]);
            let width = u16::from_be_bytes([*segment.get(3)?, *segment.get(4)?]);
            size = Some((u32::from(width), u32::from(height)));
        }
        at += len.max(2);
        if marker == 0xDA {
            scans += 1;
            // The entropy-coded data: up to the next 0xFF that starts a
            // marker (not 0xFF00, a restart, or more fill).
            loop {
                let Some(ff) = bytes[at.min(bytes.len())..].iter().position(|&b| b == 0xFF) else {
                    at = bytes.len();
                    break;
                };
                at += ff;
                match bytes.get(at + 1) {
                    Some(0x00 | 0xD0..=0xD7) => at += 2,
                    _ => break,
                }
            }
        }
    }
    let (width, height) = size?;
    Some(Header {
        width,
        height,
        scans,
    })
}

/// Joins the APP2 ICC chunks (payload after "ICC_PROFILE\0": sequence
/// number from 1, chunk count, data) in sequence order. As in libjpeg-turbo's
/// `jpeg_read_icc_profile`, an inconsistent set (missing, duplicate or zero
/// sequence numbers, differing counts) means "no profile", i.e. sRGB.
/// (Note: MozJPEG's own `write_icc_profile` numbers chunks from 0, which
/// decoders reject the same way.)
fn reassemble_icc(chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let count = usize::from(*chunks.first()?.get(1)?);
    if count != chunks.len() {
        return None;
    }
    let mut ordered: Vec<Option<&[u8]>> = vec![None; count];
    for chunk in chunks {
        let (&[seq, chunk_count], data) = chunk.split_first_chunk::<2>()?;
        let slot = ordered.get_mut(usize::from(seq).checked_sub(1)?)?;
        if usize::from(chunk_count) != count || slot.is_some() {
            return None;
        }
        *slot = Some(data);
    }
    let parts: Option<Vec<&[u8]>> = ordered.into_iter().collect();
    Some(parts?.concat())
}

/// libjpeg's standard error manager, with the two exits that would print
/// to stderr or call `exit()` replaced.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a C struct of integers, nullable pointers
    // and `Option`s of function pointers: all-zero is a valid value, and
    // jpeg_std_error fills in every field before anything reads it.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `err` is a valid, exclusively borrowed jpeg_error_mgr; the
    // function only stores static pointers into it.
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// Fatal errors: unwind (libjpeg requires this function not to return).
/// `resume_unwind` skips the panic hook, so nothing is printed.
extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    resume_unwind(Box::new(format!("JPEG: {}", message(cinfo))));
}

/// Warnings (level < 0) and trace messages (ignored). Every warning is a
/// failure, named in the reason (and so in the `error_log` line): libjpeg
/// goes on after "Corrupt JPEG data: premature end of data segment" and
/// the like with pixels it made up (grey rows, garbled blocks), and a
/// derivative of those would be served as if it were the image. The
/// original is served instead, as the browser would show it. Warnings
/// that only concern metadata (an unknown JFIF revision) are failures too:
/// a file that makes libjpeg complain is not one to rewrite.
extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return;
    }
    // SAFETY: libjpeg calls this with `cinfo.err` pointing to the error
    // manager installed by `error_manager()`, alive for the whole decode.
    let code = unsafe { (*cinfo.err).msg_code };
    if code == JWRN_JPEG_EOF as c_int {
        resume_unwind(Box::new(String::from("JPEG: file is truncated")));
    }
    resume_unwind(Box::new(format!("JPEG warning: {}", message(cinfo))));
}

/// The (unformatted) libjpeg message for the current error code.
fn message(cinfo: &mut jpeg_common_struct) -> String {
    /// libjpeg's `JMSG_LENGTH_MAX`: what `format_message` may write.
    const JMSG_LENGTH_MAX: usize = 200;
    // SAFETY: see emit_message; `cinfo.err` is our live error manager.
    let format = unsafe { (*cinfo.err).format_message };
    let Some(format) = format else {
        return "libjpeg error".into();
    };
    let mut buffer = [0u8; JMSG_LENGTH_MAX];
    // The binding types the buffer as `&[u8; 80]`, but libjpeg writes up to
    // JMSG_LENGTH_MAX bytes into it: call it through a pointer instead.
    type FormatMessage = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8);
    // SAFETY: a reference and a raw pointer have the same ABI, so this is
    // the same C function with a truthful parameter type.
    let format: FormatMessage = unsafe { std::mem::transmute(format) };
    // SAFETY: libjpeg's format_message() writes at most JMSG_LENGTH_MAX
    // bytes, NUL included (snprintf), and `buffer` has that room.
    unsafe { format(cinfo, buffer.as_mut_ptr()) };
    let len = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_walk_counts_the_file_own_scans() {
        let jpeg = |progressive: bool| {
            let mut c = Compress::new(ColorSpace::JCS_RGB);
            if progressive {
                c.set_progressive_mode();
            } else {
                c.set_fastest_defaults();
            }
            c.set_size(40, 24);
            let mut started = c.start_compress(Vec::new()).unwrap();
            started.write_scanlines(&[90; 40 * 24 * 3]).unwrap();
            started.finish().unwrap()
        };
        let baseline = jpeg(false);
        assert_eq!(
            walk_markers(&baseline),
            Some(Header {
                width: 40,
                height: 24,
                scans: 1
            })
        );
        let progressive = jpeg(true);
        let header = walk_markers(&progressive).unwrap();
        assert_eq!((header.width, header.height), (40, 24));
        assert_eq!(header.scans, count_scans(&progressive));
        assert!(header.scans > 1);
        // A thumbnail in an APP1 segment: its frame header and scan are
        // not the file's.
        let mut app1 = vec![0xFF, 0xE1];
        let thumbnail = jpeg(false);
        app1.extend_from_slice(&(thumbnail.len() as u16 + 2).to_be_bytes());
        app1.extend_from_slice(&thumbnail);
        let with_thumbnail = [&progressive[..2], &app1, &progressive[2..]].concat();
        assert_eq!(walk_markers(&with_thumbnail), Some(header));
        // Truncated: what was seen; no frame header: nothing.
        assert_eq!(
            walk_markers(&baseline[..baseline.len() - 10])
                .unwrap()
                .scans,
            1
        );
        assert_eq!(walk_markers(&baseline[..20]), None);
        assert_eq!(walk_markers(b"not a jpeg"), None);
    }

    #[test]
    fn icc_chunks_in_any_order() {
        let a: &[u8] = &[2, 3, b'b'];
        let b: &[u8] = &[1, 3, b'a'];
        let c: &[u8] = &[3, 3, b'c', b'd'];
        assert_eq!(reassemble_icc(&[a, b, c]), Some(b"abcd".to_vec()));
        assert_eq!(reassemble_icc(&[]), None);
        // Missing, duplicate, zero-based, inconsistent counts, short chunk.
        assert_eq!(reassemble_icc(&[a, b]), None);
        assert_eq!(reassemble_icc(&[a, a, c]), None);
        assert_eq!(reassemble_icc(&[&[0, 1, b'x']]), None);
        assert_eq!(reassemble_icc(&[&[1, 2, b'x'], &[2, 3, b'y']]), None);
        assert_eq!(reassemble_icc(&[&[1]]), None);
    }

    #[test]
    fn icc_segments_numbered_from_one() {
        let profile: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        let segments = icc_app2_segments(&profile).unwrap();
        assert_eq!(segments.len(), 3);
        assert!(segments.iter().all(|s| s.len() <= 65_533));
        let chunks: Vec<&[u8]> = segments
            .iter()
            .map(|s| s.strip_prefix(b"ICC_PROFILE\0").unwrap())
            .collect();
        assert_eq!(chunks[0][..2], [1, 3]);
        assert_eq!(chunks[2][..2], [3, 3]);
        assert_eq!(reassemble_icc(&chunks), Some(profile));
        assert!(icc_app2_segments(&[]).is_err());
        assert!(icc_app2_segments(&vec![0; ICC_CHUNK_LEN * 256]).is_err());
    }
}
