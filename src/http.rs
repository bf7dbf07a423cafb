//! The request as the rest of this layer sees it: [`Req`], a handle on
//! nginx's `ngx_http_request_t` with safe methods for what the filters and
//! variables read and write, and [`Chain`], a body chain passed through the
//! body filter. The header rewriting methods of [`Req`] are in
//! [`crate::headers`].
//!
//! One `unsafe` per entry point creates the handle (nginx passes a valid
//! request for the duration of the call); the methods keep their own small
//! `unsafe` blocks around the field accesses and C calls they need.

use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::ptr;
use core::slice;
use std::sync::atomic::{AtomicUsize, Ordering};

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
    ngx_http_discard_request_body, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_msec_t, ngx_pcalloc, ngx_pnalloc, ngx_pool_cleanup_add,
    ngx_pool_cleanup_pt, ngx_pool_t, ngx_str_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_OK, NGX_OK,
};
use ngx::{ngx_log_debug, ngx_log_error};

use crate::config::LocConf;

/// `ctx_index` of this module in the running configuration (set at
/// postconfiguration by [`set_module_index`]; nginx assigns it before).
static MODULE_CTX_INDEX: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Records this module's `ctx_index` (postconfiguration, before any
/// request): it locates the module's configuration and context in a request.
pub fn set_module_index(index: usize) {
    MODULE_CTX_INDEX.store(index, Ordering::Relaxed);
}

fn module_index() -> usize {
    let index = MODULE_CTX_INDEX.load(Ordering::Relaxed);
    assert!(index != usize::MAX, "module index not set");
    index
}

/// The bytes of an nginx string that lives as long as `'a`.
///
/// # Safety
/// `s` must be empty or point to `s.len` bytes valid for `'a`.
unsafe fn str_bytes<'a>(s: ngx_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: caller's contract.
    unsafe { slice::from_raw_parts(s.data, s.len) }
}

/// The data of the request pool's cleanup entry that marks a `HEAD`
/// turned into a `GET` ([`Req::turn_head_into_get`]): the address of a
/// static of this module, which no other entry has.
static HEAD_MARK: u8 = 0;

fn head_mark() -> *mut c_void {
    ptr::addr_of!(HEAD_MARK).cast_mut().cast()
}

/// An nginx string of static bytes (nginx never writes to a method name).
fn static_str(s: &'static [u8]) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr().cast_mut(),
    }
}

/// A request nginx handed to this module, valid for `'a` (the call).
///
/// All access goes through the raw pointer, one field or C call at a time:
/// no Rust reference into the request is kept, so the handle may be copied
/// freely within the call.
#[derive(Clone, Copy)]
pub struct Req<'a> {
    r: *mut ngx_http_request_t,
    _request: PhantomData<&'a ngx_http_request_t>,
}

impl<'a> Req<'a> {
    /// # Safety
    /// `r` must be a valid request for `'a`, used on the event loop thread
    /// (what nginx guarantees to the handlers and filters it calls).
    pub unsafe fn new(r: *mut ngx_http_request_t) -> Req<'a> {
        Req {
            r,
            _request: PhantomData,
        }
    }

    pub fn as_ptr(self) -> *mut ngx_http_request_t {
        self.r
    }

    /// Whether this is the main request (not a subrequest).
    pub fn is_main(self) -> bool {
        // SAFETY: a valid request (the invariant of `Req`).
        self.r == unsafe { (*self.r).main }
    }

    /// The response status.
    pub fn status(self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.r).headers_out.status as u32 }
    }

    /// The query string.
    pub fn args(self) -> &'a [u8] {
        // SAFETY: `args` points into the request's buffers or pool.
        unsafe { str_bytes((*self.r).args) }
    }

    pub fn uri(self) -> &'a [u8] {
        // SAFETY: as for `args`.
        unsafe { str_bytes((*self.r).uri) }
    }

    /// The URI's extension (`jpg`).
    pub fn exten(self) -> &'a [u8] {
        // SAFETY: as for `args`.
        unsafe { str_bytes((*self.r).exten) }
    }

    pub fn method_is_head(self) -> bool {
        // SAFETY: a valid request.
        unsafe { (*self.r).method == NGX_HTTP_HEAD as ngx_uint_t }
    }

    fn method_is_get(self) -> bool {
        // SAFETY: a valid request.
        unsafe { (*self.r).method == NGX_HTTP_GET as ngx_uint_t }
    }

    /// Makes a `GET` of this `HEAD` request, so that the content handler
    /// produces the body the response's headers depend on (the static
    /// module reads the file, `proxy_pass` asks the upstream for a `GET`),
    /// and marks it so in the request pool; false (the request left as it
    /// is) if the mark cannot be allocated. [`Req::restore_head`] gives the
    /// method back.
    pub fn turn_head_into_get(self) -> bool {
        // SAFETY: a valid request and its pool. A cleanup entry without a
        // handler runs nothing (ngx_destroy_pool calls only set handlers,
        // ngx_pool_run_cleanup_file matches on the handler); its data is
        // only compared, never read. The method names are static.
        unsafe {
            let cln = ngx_pool_cleanup_add((*self.r).pool, 0);
            if cln.is_null() {
                return false;
            }
            (*cln).handler = None;
            (*cln).data = head_mark();
            (*self.r).method = NGX_HTTP_GET as ngx_uint_t;
            (*self.r).method_name = static_str(b"GET");
        }
        true
    }

    /// Whether this is a main request whose `HEAD` this module turned
    /// into a `GET` ([`Req::turn_head_into_get`]), whatever its method is
    /// now. The mark is in the request pool, so it survives what the
    /// module's context does not: internal redirects (`try_files`,
    /// `error_page`, `X-Accel-Redirect`) wipe `r->ctx`.
    pub fn head_turned_into_get(self) -> bool {
        if !self.is_main() {
            return false;
        }
        let mark = head_mark();
        // SAFETY: a valid request's pool; its cleanup list is NULL-terminated
        // and only changes on this thread.
        unsafe {
            let mut c = (*(*self.r).pool).cleanup;
            while !c.is_null() {
                if (*c).data == mark {
                    return true;
                }
                c = (*c).next;
            }
        }
        false
    }

    /// A `HEAD` turned into a `GET` is a `HEAD` again (from here on, for
    /// the rest of the request): nginx's last header filter marks its
    /// response header-only, the chunked filter leaves it unchunked, and
    /// `$request_method` says `HEAD`. Nothing for other requests.
    pub fn restore_head(self) {
        if !self.method_is_get() || !self.head_turned_into_get() {
            return;
        }
        // SAFETY: a valid request; the method name is static.
        unsafe {
            (*self.r).method = NGX_HTTP_HEAD as ngx_uint_t;
            (*self.r).method_name = static_str(b"HEAD");
        }
    }

    /// `GET` or `HEAD`.
    pub fn method_is_get_or_head(self) -> bool {
        // SAFETY: a valid request.
        let method = unsafe { (*self.r).method };
        method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t != 0
    }

    /// Reads and drops the request body, if any (for a content handler
    /// that has no use for it); nginx's return code.
    pub fn discard_body(self) -> ngx_int_t {
        // SAFETY: a valid main request, in its content phase.
        unsafe { ngx_http_discard_request_body(self.r) }
    }

    /// Sends a complete `200` response of `content_type` (a static string)
    /// with `body` (copied into the request pool), as a content handler
    /// does; nginx's return code.
    pub fn send_complete(self, content_type: &'static str, body: &[u8]) -> ngx_int_t {
        let r = self.r;
        // SAFETY: a valid request, in its content phase; the buffer, link
        // and copy of `body` are allocated in its pool, which outlives the
        // output; `content_type` is static.
        unsafe {
            (*r).headers_out.status = NGX_HTTP_OK as ngx_uint_t;
            (*r).headers_out.content_type = ngx_str_t {
                len: content_type.len(),
                data: content_type.as_ptr().cast_mut(),
            };
            (*r).headers_out.content_type_len = content_type.len();
            (*r).headers_out.content_length_n = body.len() as i64;
            let rc = ngx_http_send_header(r);
            if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
                return rc;
            }
            let pool = (*r).pool;
            let b = ngx_pcalloc(pool, size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
            let data = ngx_pnalloc(pool, body.len().max(1)).cast::<u8>();
            if b.is_null() || data.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            ptr::copy_nonoverlapping(body.as_ptr(), data, body.len());
            (*b).pos = data;
            (*b).last = data.add(body.len());
            (*b).start = (*b).pos;
            (*b).end = (*b).last;
            (*b).set_memory(u32::from(!body.is_empty()));
            (*b).set_last_buf(u32::from(r == (*r).main));
            (*b).set_last_in_chain(1);
            let mut out = ngx_chain_t {
                buf: b,
                next: ptr::null_mut(),
            };
            ngx_http_output_filter(r, &mut out)
        }
    }

    pub fn header_only(self) -> bool {
        // SAFETY: a valid request.
        unsafe { (*self.r).header_only() != 0 }
    }

    /// Whether the response header has gone through the whole filter chain.
    pub fn header_sent(self) -> bool {
        // SAFETY: a valid request.
        unsafe { (*self.r).header_sent() != 0 }
    }

    /// The response's `Content-Length`, when known.
    pub fn content_length(self) -> Option<usize> {
        // SAFETY: a valid request.
        let n = unsafe { (*self.r).headers_out.content_length_n };
        usize::try_from(n).ok()
    }

    /// Whether the response has a `Content-Encoding` (gzip, ...).
    pub fn content_encoding_set(self) -> bool {
        // SAFETY: a valid request; `content_encoding` is NULL or a valid
        // element of the response headers.
        unsafe {
            let ce = (*self.r).headers_out.content_encoding;
            !ce.is_null() && (*ce).hash != 0 && (*ce).value.len != 0
        }
    }

    /// This module's configuration for the request's location. The
    /// configuration outlives every request run under it.
    pub fn loc_conf(self) -> &'static LocConf {
        let index = module_index();
        // SAFETY: nginx allocated this module's LocConf (create_loc_conf)
        // for every location, at the module's ctx_index.
        unsafe { &*(*(*self.r).loc_conf.add(index)).cast::<LocConf>() }
    }

    /// `send_timeout` of the request's location.
    pub fn send_timeout(self) -> ngx_msec_t {
        // SAFETY: nginx's core module (its ctx_index is set before any
        // request); every HTTP location has its configuration.
        unsafe {
            let index = ngx_http_core_module.ctx_index;
            let clcf = (*(*self.r).loc_conf.add(index)).cast::<ngx_http_core_loc_conf_t>();
            (*clcf).send_timeout
        }
    }

    /// This module's slot in `r->ctx` (NULL until set).
    pub fn module_ctx(self) -> *mut c_void {
        let index = module_index();
        // SAFETY: r->ctx has one slot per HTTP module.
        unsafe { *(*self.r).ctx.add(index) }
    }

    pub fn set_module_ctx(self, ctx: *mut c_void) {
        let index = module_index();
        // SAFETY: as above.
        unsafe { *(*self.r).ctx.add(index) = ctx };
    }

    /// Registers `handler(data)` to run when the request pool is destroyed.
    ///
    /// # Safety
    /// `handler` must be sound to call with `data` at that point.
    pub unsafe fn add_cleanup(self, handler: ngx_pool_cleanup_pt, data: *mut c_void) -> bool {
        // SAFETY: the request pool is valid; the caller vouches for the
        // handler.
        unsafe {
            let cln = ngx_pool_cleanup_add((*self.r).pool, 0);
            if cln.is_null() {
                return false;
            }
            (*cln).handler = handler;
            (*cln).data = data;
        }
        true
    }

    pub fn pool(self) -> *mut ngx_pool_t {
        // SAFETY: a valid request.
        unsafe { (*self.r).pool }
    }

    /// Static files must reach the body filter as memory, not file buffers.
    pub fn need_in_memory(self) {
        // SAFETY: a valid request.
        unsafe { (*self.r).set_main_filter_need_in_memory(1) };
    }

    /// Sets or clears `flag` in `c->buffered` (the response is not complete
    /// while a module's flag is set).
    pub fn set_buffered(self, flag: u32, on: bool) {
        // SAFETY: a valid request has a valid connection.
        unsafe {
            let c = (*self.r).connection;
            let buffered = (*c).buffered();
            (*c).set_buffered(if on {
                buffered | flag
            } else {
                buffered & !flag
            });
        }
    }

    /// Writes `args` to the error log at `level` (`NGX_LOG_*`).
    pub fn log(self, level: u32, args: fmt::Arguments<'_>) {
        // SAFETY: a valid request has a connection with a log.
        let log = unsafe { (*(*self.r).connection).log };
        ngx_log_error!(level, log, "{}", args);
    }

    /// Writes `args` to the debug log (`debug_http`).
    pub fn log_debug(self, args: fmt::Arguments<'_>) {
        // SAFETY: as above.
        let log = unsafe { (*(*self.r).connection).log };
        ngx_log_debug!(mask: ngx::log::DebugMask::Http, log, "{}", args);
    }
}

/// A body chain (or NULL) passed to the body filter, valid for `'a`.
#[derive(Clone, Copy)]
pub struct Chain<'a> {
    cl: *mut ngx_chain_t,
    _chain: PhantomData<&'a ngx_chain_t>,
}

impl<'a> Chain<'a> {
    /// # Safety
    /// `cl` must be NULL or a valid chain of valid buffers for `'a`.
    pub unsafe fn new(cl: *mut ngx_chain_t) -> Chain<'a> {
        Chain {
            cl,
            _chain: PhantomData,
        }
    }

    /// No buffers.
    pub fn empty() -> Chain<'a> {
        Chain {
            cl: ptr::null_mut(),
            _chain: PhantomData,
        }
    }

    pub fn as_ptr(self) -> *mut ngx_chain_t {
        self.cl
    }

    /// The links of the chain, first to last.
    pub fn links(self) -> impl Iterator<Item = Link<'a>> {
        let mut cl = self.cl;
        core::iter::from_fn(move || {
            if cl.is_null() {
                return None;
            }
            let link = Link {
                cl,
                _chain: PhantomData,
            };
            // SAFETY: a valid link of the chain; `next` is NULL after the
            // last one.
            cl = unsafe { (*cl).next };
            Some(link)
        })
    }

    /// Marks every buffer as sent (so upstream buffers are recycled).
    pub fn consume(self) {
        for link in self.links() {
            link.consume();
        }
    }
}

/// One link of a [`Chain`] and its buffer.
#[derive(Clone, Copy)]
pub struct Link<'a> {
    cl: *mut ngx_chain_t,
    _chain: PhantomData<&'a ngx_chain_t>,
}

impl<'a> Link<'a> {
    fn in_memory(self) -> bool {
        // SAFETY: a valid link has a valid buffer.
        let b = unsafe { &*(*self.cl).buf };
        b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0
    }

    /// The unsent bytes of an in-memory buffer (none for a file buffer).
    pub fn bytes(self) -> &'a [u8] {
        if !self.in_memory() {
            return &[];
        }
        // SAFETY: a valid link has a valid buffer; in memory, `pos..last`
        // are its unsent bytes, valid for the call.
        unsafe {
            let b = (*self.cl).buf;
            let len = ((*b).last as usize).saturating_sub((*b).pos as usize);
            if len == 0 {
                return &[];
            }
            slice::from_raw_parts((*b).pos, len)
        }
    }

    /// Whether the buffer holds (unsent) bytes in a file rather than memory.
    pub fn has_file_data(self) -> bool {
        // SAFETY: as above.
        let (file_pos, file_last) = unsafe {
            let b = (*self.cl).buf;
            ((*b).file_pos, (*b).file_last)
        };
        !self.in_memory() && file_last > file_pos
    }

    /// Whether this is the last buffer of the response.
    pub fn is_last(self) -> bool {
        // SAFETY: as above.
        unsafe { (*(*self.cl).buf).last_buf() != 0 }
    }

    /// Marks the buffer as sent (its bytes in memory and in a file).
    pub fn consume(self) {
        // SAFETY: as above; the buffer is ours to update while the filter
        // runs.
        unsafe {
            let b = (*self.cl).buf;
            (*b).pos = (*b).last;
            if (*b).in_file() != 0 {
                (*b).file_pos = (*b).file_last;
            }
        }
    }

    /// The chain from this link on.
    pub fn rest(self) -> Chain<'a> {
        Chain {
            cl: self.cl,
            _chain: PhantomData,
        }
    }
}
