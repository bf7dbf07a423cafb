//! JPEG 2000 (`.jp2`, `image/jp2`: Safari up to 16 and other WebKit/ImageIO
//! clients) through OpenJPEG (`openjpeg-sys`, which builds its vendored
//! OpenJPEG 2.5 and links it statically: no runtime dependency; its C
//! `assert`s are compiled in, i.e. a failed one aborts the process).
//!
//! [`encode`] has OpenJPEG write the codestream (tile by tile, so memory
//! stays bounded by one tile however large the image) into an in-memory
//! output stream of ours, and writes the JP2 boxes around it itself
//! (OpenJPEG's own JP2 writer cannot embed an ICC profile: see
//! `container`).
//!
//! [`decode`] reads back what [`encode`] writes, in process, for the
//! quality guard (which scores each encoded candidate against the source).
//! The boxes are parsed here, and the codestream's structure is checked
//! before OpenJPEG sees it (see [`decode`] for why); OpenJPEG then decodes
//! it tile by tile straight into our buffer, so its memory is one tile's,
//! as when encoding.
//!
//! Every OpenJPEG message (error, warning, info) goes to handlers that
//! collect errors for the returned reason and drop the rest: nothing is
//! printed.
//!
//! The parts:
//!
//! - `encoder`: quality to PSNR target, tiling, the codestream through
//!   OpenJPEG;
//! - `container`: the JP2 boxes, written around a codestream and parsed
//!   back;
//! - `codestream`: the walk over a codestream's markers that vets it
//!   before OpenJPEG decodes it;
//! - `decoder`: the checked codestream through OpenJPEG, tile by tile,
//!   into RGB(A) rows;
//! - `stream`: what OpenJPEG is handed: in-memory streams, message
//!   handlers, and owners of its objects.

mod codestream;
mod container;
mod decoder;
mod encoder;
mod stream;

pub use decoder::decode;
pub use encoder::encode;

use super::registry::{
    candidate_error, same_effort, unbounded, Codec, CodecWork, Format, QualityScale,
};

/// JPEG 2000 in the registry: for Safari before WebP, granted by
/// `User-Agent` (see [`crate::negotiate`]) or an explicit `image/jp2`.
pub static CODEC: Codec = Codec {
    format: Format::Jp2,
    name: "jp2",
    mime: "image/jp2",
    accept: &["image/jp2"],
    quality: QualityScale {
        lossless: false,
        floor: 40,
        default_ceiling: 100,
        // Its quality curve is calibrated to WebP's scale (see
        // `encoder`), so `smart_imaging_webp_quality` sets it.
        configured_by: Format::WebP,
        qlt: &[
            (0, 0),
            (10, 5),
            (20, 20),
            (30, 35),
            (40, 45),
            (50, 54),
            (60, 62),
            (70, 71),
            (75, 76),
            (80, 78),
            (85, 80),
            (90, 83),
            (95, 88),
            (100, 99),
        ],
    },
    encode: |image, encoding| encode(image, encoding.quality),
    decode: |bytes, _| decode(bytes).map_err(|e| candidate_error(Format::Jp2, e)),
    max_pixels: unbounded,
    cheaper_search: same_effort,
    // ~75-80 ms/MP per encode, ~25-35 per decode.
    work: CodecWork {
        encode: |_, _| 1.0,
        decode: 0.35,
    },
};

/// Largest width or height accepted (JPEG 2000 allows 2^32 - 1; this keeps
/// every product in the encoder in range with room to spare).
pub const JP2_MAX_SIDE: u32 = 1 << 20;

/// Largest image [`decode`] accepts, in pixels: its output alone is then
/// up to 256 MiB (RGBA). Requests are far smaller (`Limits::max_pixels`).
pub const MAX_DECODE_PIXELS: u64 = 64 << 20;
