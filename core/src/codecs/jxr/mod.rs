//! JPEG XR (for Internet Explorer 9-11 and EdgeHTML Edge) through jxrlib:
//! Debian's `libjxr` (a 2017 snapshot of Microsoft's reference code),
//! bound by bindgen in `build.rs` (see `ffi`) and linked as a shared
//! library. Its package, `libjxr0` (`libjxrglue.so.0`, `libjpegxr.so.0`),
//! is therefore a runtime dependency of whatever links this crate, the
//! nginx module included.
//!
//! What is used of jxrlib: its "glue" encoder object (`PKImageEncode`,
//! which writes the TIFF-like container: pixel format, size, ICC profile,
//! image and alpha planes) fed with our pixels in one call, writing to a
//! stream object of our own that keeps the bytes in memory. The encoder
//! writes the container header first with placeholders and seeks back to
//! patch the image and alpha sizes at the end, so the stream supports
//! seeking, and the output is everything up to the furthest byte written
//! (not the position the encoder last left the stream at).
//!
//! jxrlib never calls `exit()` (its shared libraries import no such
//! symbol), but it has C `assert`s and prints (to stdout, with `printf`)
//! the reason for a few argument errors; [`encode`] validates what it
//! passes so that those paths are not reached.
//!
//! [`decode`] reads back what [`encode`] writes, in process, for the
//! quality guard (which scores each encoded candidate against the source):
//! jxrlib's glue decoder object (`PKImageDecode`) over the same kind of
//! in-memory stream, after the container and the image headers have been
//! checked here (see [`decode`] for why).
//!
//! The parts:
//!
//! - `encoder`: quality to quantisers, and the encoder object fed with
//!   our pixels;
//! - `container`: the checks of the container and of the planes' image
//!   headers that run before jxrlib reads a file;
//! - `decoder`: the checked file through jxrlib's decoder object;
//! - `stream`: the in-memory stream both read and write through;
//! - `ffi`: the bindgen bindings to jxrlib.

mod container;
mod decoder;
mod encoder;
mod ffi;
mod stream;

pub use decoder::{decode, read_headers};
pub use encoder::encode;

use super::registry::{
    candidate_error, same_effort, unbounded, Codec, CodecWork, Format, QualityScale,
};

/// JPEG XR in the registry: for Internet Explorer 9+ and legacy Edge
/// (by `User-Agent`, see [`crate::negotiate`]) and clients listing it.
/// Its IANA-registered type is also what IE 11 and legacy Edge list in
/// `Accept` (`image/vnd.ms-photo` is the older Microsoft name).
pub static CODEC: Codec = Codec {
    format: Format::Jxr,
    name: "jxr",
    mime: "image/jxr",
    accept: &["image/jxr", "image/vnd.ms-photo"],
    quality: QualityScale {
        lossless: false,
        floor: 40,
        default_ceiling: 100,
        // Its quantiser curve is calibrated to WebP's scale, so
        // `smart_imaging_webp_quality` sets it.
        configured_by: Format::WebP,
        qlt: &[
            (0, 0),
            (10, 0),
            (20, 14),
            (30, 25),
            (40, 36),
            (50, 47),
            (60, 57),
            (70, 67),
            (75, 76),
            (80, 79),
            (85, 82),
            (90, 86),
            (95, 91),
            (100, 99),
        ],
    },
    encode: |image, encoding| encode(image, encoding.quality),
    decode: |bytes, _| decode(bytes).map_err(|e| candidate_error(Format::Jxr, e)),
    max_pixels: unbounded,
    cheaper_search: same_effort,
    // ~23-33 ms/MP per encode (more with alpha), ~15-23 per decode.
    work: CodecWork {
        encode: |_, alpha| if alpha { 0.45 } else { 0.35 },
        decode: 0.25,
    },
};

/// Largest width or height accepted. jxrlib's own limit is 2^28 (beyond
/// it refuses with a `printf`); requests are far smaller anyway (see
/// `Limits::max_pixels`), and this keeps the products in the encoder and
/// decoder in range.
pub const JXR_MAX_SIDE: u32 = 1 << 20;

/// Largest image [`decode`] accepts, in pixels: its output alone is then
/// up to 256 MiB (RGBA). Requests are far smaller (`Limits::max_pixels`).
pub const MAX_DECODE_PIXELS: u64 = 64 << 20;
