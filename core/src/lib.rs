//! smart-imaging core: everything that decides and does the image work,
//! with no knowledge of nginx. The nginx layer (the crate at the repository
//! root) only moves bytes and headers in and out of these functions.
//!
//! - [`policy`]: request (Accept, URL args) -> what to try.
//! - [`mod@sniff`]: what the body really is, from its magic bytes.
//! - [`config`]: the directives' values: parsing, defaults, inheritance.
//! - [`exposition`]: the Prometheus text of `smart_imaging_status`.
//! - [`codecs`]: one file per format behind one registry ([`Format`]):
//!   decode JPEG/PNG to pixels, encode AVIF, WebP, JPEG 2000, JPEG XR,
//!   JPEG, PNG.
//! - [`resize`]: downscale decoded pixels (linear light, premultiplied alpha).
//! - [`transcode()`]: bytes + plan -> new bytes, or "keep the original, because ...".
//! - [`stop`]: conversions give up early when the process is stopping.
//! - [`work`]: the work a conversion may do, bounded by its input's size.

pub mod classify;
pub mod codecs;
pub mod config;
pub mod exposition;
pub mod guard;
pub mod metrics;
pub mod negotiate;
mod outcome;
mod plan;
pub mod policy;
pub mod quality_map;
pub mod resize;
pub mod sizing;
pub mod sniff;
pub mod stop;
mod transcode;
pub mod work;

pub use codecs::avif::AvifLimits;
pub use codecs::Format;
pub use outcome::{Converted, KeepReason, Limits, Outcome};
pub use plan::{Guard, Plan, Qualities};
pub use sniff::sniff;
pub use transcode::{transcode, transcode_with_work};
pub use work::WorkBudget;
