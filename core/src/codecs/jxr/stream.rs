//! jxrlib's stream object (`WMPStream`) over bytes in memory: the
//! encoder's output and the decoder's input both go through a [`Sink`].

use std::ffi::c_void;
use std::ptr;

use super::ffi;

/// The bytes behind a stream: the encoder's output, written at `pos`,
/// growing the buffer (zero-filled) as needed, `bytes.len()` being the
/// high-water mark; or the file the decoder reads from `pos`.
#[derive(Default)]
pub(super) struct Sink {
    pub(super) bytes: Vec<u8>,
    pub(super) pos: usize,
    /// A write would have passed [`MAX_OUTPUT`].
    pub(super) overflow: bool,
}

/// jxrlib's container uses 32-bit offsets.
const MAX_OUTPUT: usize = i32::MAX as usize;

pub(super) fn new_stream(sink: &mut Sink) -> ffi::WMPStream {
    ffi::WMPStream {
        state: ffi::WMPStream__bindgen_ty_1 {
            pvObj: (sink as *mut Sink).cast::<c_void>(),
        },
        fMem: 0,
        Close: Some(stream_close),
        EOS: Some(stream_eos),
        Read: Some(stream_read),
        Write: Some(stream_write),
        SetPos: Some(stream_set_pos),
        GetPos: Some(stream_get_pos),
    }
}

const OK: ffi::ERR = ffi::WMP_errSuccess as ffi::ERR;
const FILE_IO: ffi::ERR = ffi::WMP_errFileIO as ffi::ERR;
const OVERFLOW: ffi::ERR = ffi::WMP_errBufferOverflow as ffi::ERR;

/// # Safety
/// `me` is a stream made by [`new_stream`] whose sink is alive and not
/// otherwise borrowed.
unsafe fn sink<'a>(me: *mut ffi::WMPStream) -> Option<&'a mut Sink> {
    // SAFETY: per the contract, pvObj points to a live Sink.
    unsafe { me.as_ref()?.state.pvObj.cast::<Sink>().as_mut() }
}

// The callbacks below are called by C: they must not panic (a panic cannot
// unwind through C), so they use no indexing that could fail.

pub(super) unsafe extern "C" fn stream_close(pme: *mut *mut ffi::WMPStream) -> ffi::ERR {
    // The stream and its sink belong to encode_unchecked or
    // decode_unchecked: nothing to free.
    if !pme.is_null() {
        // SAFETY: jxrlib passes the address of its stream pointer.
        unsafe { *pme = ptr::null_mut() };
    }
    OK
}

unsafe extern "C" fn stream_eos(me: *mut ffi::WMPStream) -> ffi::Bool {
    // SAFETY: called by jxrlib on our stream.
    match unsafe { sink(me) } {
        Some(s) => ffi::Bool::from(s.pos >= s.bytes.len()),
        None => 1,
    }
}

/// Reads `cb` bytes; at the end of the data, what is left (the rest of the
/// buffer zeroed) and an error, as jxrlib's file stream does (`fread`):
/// the decoder's bit reader fills its buffer with fixed-size reads however
/// little is left, ignores the error, and uses only the bytes that exist.
/// (All-or-nothing reads left it decoding zeros: small files failed.)
unsafe extern "C" fn stream_read(me: *mut ffi::WMPStream, pv: *mut c_void, cb: usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if cb == 0 {
        return OK;
    }
    if pv.is_null() {
        return FILE_IO;
    }
    let src = s.bytes.get(s.pos..).unwrap_or(&[]);
    let n = cb.min(src.len());
    // SAFETY: jxrlib gives a writable buffer of `cb` >= `n` bytes.
    unsafe {
        ptr::copy_nonoverlapping(src.as_ptr(), pv.cast::<u8>(), n);
        ptr::write_bytes(pv.cast::<u8>().add(n), 0, cb - n);
    }
    s.pos += n;
    if n == cb {
        OK
    } else {
        FILE_IO
    }
}

unsafe extern "C" fn stream_write(
    me: *mut ffi::WMPStream,
    pv: *const c_void,
    cb: usize,
) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if cb == 0 {
        return OK;
    }
    let end = match s.pos.checked_add(cb) {
        Some(end) if end <= MAX_OUTPUT => end,
        _ => {
            s.overflow = true;
            return OVERFLOW;
        }
    };
    if end > s.bytes.len() {
        s.bytes.resize(end, 0);
    }
    if let Some(dst) = s.bytes.get_mut(s.pos..end) {
        // SAFETY: jxrlib gives `cb` readable bytes at `pv`.
        let src = unsafe { std::slice::from_raw_parts(pv.cast::<u8>(), cb) };
        dst.copy_from_slice(src);
    }
    s.pos = end;
    OK
}

unsafe extern "C" fn stream_set_pos(me: *mut ffi::WMPStream, pos: usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if pos > MAX_OUTPUT {
        s.overflow = true;
        return OVERFLOW;
    }
    // Past the end is allowed: a later write fills the gap with zeros.
    s.pos = pos;
    OK
}

unsafe extern "C" fn stream_get_pos(me: *mut ffi::WMPStream, pos: *mut usize) -> ffi::ERR {
    // SAFETY: called by jxrlib on our stream.
    let Some(s) = (unsafe { sink(me) }) else {
        return FILE_IO;
    };
    if pos.is_null() {
        return FILE_IO;
    }
    // SAFETY: jxrlib passes a writable size_t.
    unsafe { *pos = s.pos };
    OK
}
