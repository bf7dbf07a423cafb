//! smart-imaging core: everything that decides and does the image work,
//! with no knowledge of nginx. The nginx layer (the crate at the repository
//! root) only moves bytes and headers in and out of these functions.
//!
//! - [`policy`]: request (Accept, URL args) -> what to try.
//! - [`mod@sniff`]: what the body really is, from its magic bytes.
//! - [`codecs`]: decode JPEG/PNG to pixels, encode WebP.
//! - [`resize`]: downscale decoded pixels (linear light, premultiplied alpha).
//! - [`transcode()`]: bytes + plan -> new bytes, or "keep the original, because ...".

pub mod classify;
pub mod codecs;
pub mod guard;
pub mod metrics;
pub mod negotiate;
pub mod policy;
pub mod quality_map;
pub mod resize;
pub mod sizing;
pub mod sniff;
mod transcode;

pub use sniff::{sniff, SourceFormat};
pub use transcode::{
    transcode, AvifLimits, Converted, Guard, KeepReason, Limits, Outcome, Plan, Qualities,
    TargetFormat,
};
