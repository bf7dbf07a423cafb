//! What OpenJPEG is handed, and the callbacks it calls: the in-memory
//! output ([`Sink`]) and input ([`Source`]) behind its streams, the
//! handlers that collect its messages ([`Messages`]), and owners that
//! destroy its codec, stream and image objects.
//!
//! Everything here with a C callback must not unwind into C: no panics
//! (no fallible indexing), or a `catch_unwind`.

use std::ffi::{c_char, c_void, CStr};
use std::panic::catch_unwind;
use std::ptr;

use openjpeg_sys as opj;

/// OpenJPEG's messages for one encode or decode.
#[derive(Default)]
pub(super) struct Messages {
    errors: Vec<String>,
}

impl Messages {
    /// `what` failed, with OpenJPEG's error messages if it gave any.
    pub(super) fn describe(&self, what: &str) -> String {
        let detail = self.errors.join("; ");
        if detail.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", detail.trim_end())
        }
    }
}

/// Error handler: keeps the message for the returned reason. Called by C:
/// must not unwind.
unsafe extern "C" fn on_error(msg: *const c_char, user: *mut c_void) {
    let _ = catch_unwind(|| {
        if msg.is_null() || user.is_null() {
            return;
        }
        // SAFETY: OpenJPEG passes a NUL-terminated message and the user
        // data we registered: a live `Messages`.
        let (msg, messages) = unsafe { (CStr::from_ptr(msg), &mut *user.cast::<Messages>()) };
        if messages.errors.len() < 8 {
            messages
                .errors
                .push(msg.to_string_lossy().trim_end().to_owned());
        }
    });
}

/// Warning and info handler: drops the message (the default would be to
/// print nothing either, but OpenJPEG builds differ).
unsafe extern "C" fn on_other(_msg: *const c_char, _user: *mut c_void) {}

/// OpenJPEG's stream buffers this much before calling [`stream_write`].
pub(super) const STREAM_BUFFER: usize = 64 * 1024;

/// Largest output accepted: JP2 box lengths are 32-bit.
const MAX_OUTPUT: usize = u32::MAX as usize - 4096;

/// Where the codestream goes: bytes written at `pos`, growing the buffer
/// (zero-filled) as needed; `bytes.len()` is the high-water mark.
#[derive(Default)]
pub(super) struct Sink {
    pub(super) bytes: Vec<u8>,
    pos: usize,
    pub(super) overflow: bool,
}

const STREAM_ERROR: usize = usize::MAX; // (OPJ_SIZE_T)-1

// Stream callbacks, called by C: no panics (no fallible indexing).

pub(super) unsafe extern "C" fn stream_write(
    buffer: *mut c_void,
    len: usize,
    user: *mut c_void,
) -> usize {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return STREAM_ERROR;
    };
    if len == 0 {
        return 0;
    }
    let end = match sink.pos.checked_add(len) {
        Some(end) if end <= MAX_OUTPUT => end,
        _ => {
            sink.overflow = true;
            return STREAM_ERROR;
        }
    };
    if end > sink.bytes.len() {
        sink.bytes.resize(end, 0);
    }
    if let Some(dst) = sink.bytes.get_mut(sink.pos..end) {
        // SAFETY: OpenJPEG passes `len` readable bytes.
        dst.copy_from_slice(unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) });
    }
    sink.pos = end;
    len
}

pub(super) unsafe extern "C" fn stream_skip(offset: i64, user: *mut c_void) -> i64 {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return -1;
    };
    match i64::try_from(sink.pos)
        .ok()
        .and_then(|pos| pos.checked_add(offset))
        .and_then(|pos| usize::try_from(pos).ok())
    {
        Some(pos) if pos <= MAX_OUTPUT => {
            sink.pos = pos;
            offset
        }
        _ => -1,
    }
}

pub(super) unsafe extern "C" fn stream_seek(offset: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: the user data is our live Sink.
    let Some(sink) = (unsafe { user.cast::<Sink>().as_mut() }) else {
        return 0;
    };
    match usize::try_from(offset) {
        Ok(pos) if pos <= MAX_OUTPUT => {
            sink.pos = pos;
            1
        }
        _ => 0,
    }
}

/// Owns an `opj_image_t`.
pub(super) struct OwnedImage(pub(super) *mut opj::opj_image_t);

impl Drop for OwnedImage {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by opj_image_tile_create or opj_read_header,
            // destroyed once.
            unsafe { opj::opj_image_destroy(self.0) }
        }
    }
}

/// Owns an `opj_codec_t` (compressor or decompressor).
pub(super) struct Codec(pub(super) *mut opj::opj_codec_t);

impl Codec {
    /// Takes ownership of `codec` (from opj_create_compress or
    /// opj_create_decompress; `None` if that returned null) and sends its
    /// errors, warnings and info to `messages`, which must outlive it.
    pub(super) fn reporting_to(
        codec: *mut opj::opj_codec_t,
        messages: &mut Messages,
    ) -> Option<Codec> {
        if codec.is_null() {
            return None;
        }
        let codec = Codec(codec);
        let user: *mut c_void = (messages as *mut Messages).cast();
        // SAFETY: a valid codec; the caller keeps `messages` alive (and in
        // place: it is boxed) for the codec's lifetime; the handlers only
        // touch it.
        unsafe {
            opj::opj_set_error_handler(codec.0, Some(on_error), user);
            opj::opj_set_warning_handler(codec.0, Some(on_other), user);
            opj::opj_set_info_handler(codec.0, Some(on_other), user);
        }
        Some(codec)
    }
}

impl Drop for Codec {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: created by opj_create_(de)compress, destroyed once.
        unsafe { opj::opj_destroy_codec(self.0) }
    }
}

/// Owns an `opj_stream_t`.
pub(super) struct Stream(pub(super) *mut opj::opj_stream_t);

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by opj_stream_create, destroyed once; it
            // does not own its user data (no free function registered).
            unsafe { opj::opj_stream_destroy(self.0) }
        }
    }
}

/// The codestream OpenJPEG reads, and how far it has.
pub(super) struct Source<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
}

// Input stream callbacks, called by C: no panics (no fallible indexing).

pub(super) unsafe extern "C" fn source_read(
    buffer: *mut c_void,
    len: usize,
    user: *mut c_void,
) -> usize {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return STREAM_ERROR;
    };
    let rest = source.data.get(source.pos..).unwrap_or(&[]);
    let n = len.min(rest.len());
    if n == 0 {
        return STREAM_ERROR; // end of stream
    }
    // SAFETY: OpenJPEG passes a buffer of `len` >= `n` writable bytes.
    unsafe { ptr::copy_nonoverlapping(rest.as_ptr(), buffer.cast::<u8>(), n) };
    source.pos += n;
    n
}

pub(super) unsafe extern "C" fn source_skip(offset: i64, user: *mut c_void) -> i64 {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return -1;
    };
    // OpenJPEG never skips past the length it was given; clamp anyway.
    let target = i64::try_from(source.pos)
        .ok()
        .and_then(|pos| pos.checked_add(offset))
        .map(|pos| pos.clamp(0, source.data.len() as i64));
    match target {
        Some(target) => {
            let skipped = target - source.pos as i64;
            source.pos = target as usize;
            if skipped == 0 && offset != 0 {
                -1
            } else {
                skipped
            }
        }
        None => -1,
    }
}

pub(super) unsafe extern "C" fn source_seek(offset: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: the user data is our live Source.
    let Some(source) = (unsafe { user.cast::<Source<'_>>().as_mut() }) else {
        return 0;
    };
    match usize::try_from(offset) {
        Ok(pos) if pos <= source.data.len() => {
            source.pos = pos;
            1
        }
        _ => 0,
    }
}
