//! Reading and rewriting request/response headers, as methods of
//! [`Req`]. These reimplement the small C macros nginx filters use
//! (`ngx_http_clear_content_length` etc.), which bindgen cannot bind.

use core::ptr;
use core::slice;

use smart_imaging_core::policy::RequestFacts;

use ngx::ffi::{
    ngx_list_part_t, ngx_list_push, ngx_pnalloc, ngx_str_t, ngx_table_elt_t, NGX_HTTP_NOT_MODIFIED,
};

use crate::http::Req;

/// Iterates over the entries of an nginx header list.
///
/// # Safety
/// `part` must be the first part of a valid `ngx_list_t` of
/// `ngx_table_elt_t` (initialised, or all zero), not changed while iterating.
unsafe fn entries(part: *mut ngx_list_part_t) -> impl Iterator<Item = *mut ngx_table_elt_t> {
    let mut part = part;
    let mut i = 0usize;
    core::iter::from_fn(move || loop {
        // SAFETY: the caller guarantees a well-formed list; `nelts` bounds
        // each part's element array and `next` is NULL after the last part.
        unsafe {
            if part.is_null() {
                return None;
            }
            if i < (*part).nelts {
                let elt = (*part).elts.cast::<ngx_table_elt_t>().add(i);
                i += 1;
                return Some(elt);
            }
            part = (*part).next;
            i = 0;
        }
    })
}

const fn static_str(s: &'static str) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr().cast_mut(),
    }
}

/// Case-insensitive header name comparison.
fn is_named(h: &ngx_table_elt_t, name: &str) -> bool {
    h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes())
}

impl<'a> Req<'a> {
    /// The response headers (deleted ones included: `hash == 0`). Each
    /// pointer is a valid, writable element for the request's life.
    fn response_headers(self) -> impl Iterator<Item = *mut ngx_table_elt_t> {
        // SAFETY: headers_out.headers is initialised with the request; the
        // iterator is used before anything is pushed to it.
        unsafe { entries(&raw mut (*self.as_ptr()).headers_out.headers.part) }
    }

    /// Whether a response header `name` already lists `token` (comma-separated,
    /// case-insensitive), e.g. `Vary: Accept-Encoding, Accept`.
    fn response_header_has_token(self, name: &str, token: &str) -> bool {
        self.response_headers().any(|h| {
            // SAFETY: a valid element (see `response_headers`).
            let h = unsafe { &*h };
            is_named(h, name)
                && h.value.as_bytes().split(|&b| b == b',').any(|t| {
                    t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()) || t.trim_ascii() == b"*"
                })
        })
    }

    /// Whether the response has a (not deleted) header `name`.
    fn response_header_present(self, name: &str) -> bool {
        self.response_headers().any(|h| {
            // SAFETY: a valid element (see `response_headers`).
            is_named(unsafe { &*h }, name)
        })
    }

    /// Deletes every response header `name` (`hash = 0`, as nginx does).
    fn delete_response_header(self, name: &str) {
        for h in self.response_headers() {
            // SAFETY: a valid, writable element (see `response_headers`).
            let h = unsafe { &mut *h };
            if is_named(h, name) {
                h.hash = 0;
            }
        }
    }

    /// Copies `bytes` into the request pool.
    fn pool_str(self, bytes: &[u8]) -> Option<ngx_str_t> {
        // SAFETY: the request pool is valid; it outlives every header.
        let data = unsafe { ngx_pnalloc(self.pool(), bytes.len()) }.cast::<u8>();
        if data.is_null() {
            return None;
        }
        // SAFETY: `data` has room for `bytes.len()` bytes and does not overlap.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
        Some(ngx_str_t {
            len: bytes.len(),
            data,
        })
    }

    /// Appends a response header `name: value` (`value` copied to the pool).
    fn push_header(self, name: &'static str, value: &[u8]) -> Option<*mut ngx_table_elt_t> {
        let value = self.pool_str(value)?;
        // SAFETY: the list belongs to the request and is allocated from its
        // pool.
        let h = unsafe { ngx_list_push(&raw mut (*self.as_ptr()).headers_out.headers) }
            .cast::<ngx_table_elt_t>();
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is a fresh, writable element of the list; key and
        // value live as long as the request (static, pool).
        unsafe {
            (*h).hash = 1;
            (*h).key = static_str(name);
            (*h).value = value;
            (*h).lowcase_key = ptr::null_mut();
            #[cfg(nginx1_23_0)]
            {
                (*h).next = ptr::null_mut();
            }
        }
        Some(h)
    }

    /// Adds one `Vary` header with those of `tokens` that no `Vary` header of the
    /// response covers yet (the upstream's, or `gzip_vary`'s, stay as they are).
    pub fn add_vary(self, tokens: &[String]) -> bool {
        let missing: Vec<&str> = tokens
            .iter()
            .map(String::as_str)
            .filter(|t| !self.response_header_has_token("Vary", t))
            .collect();
        if missing.is_empty() {
            return true;
        }
        self.push_header("Vary", missing.join(", ").as_bytes())
            .is_some()
    }

    /// Adds a response header `name: value` (e.g. `Accept-CH`), unless the
    /// response already has one of that name.
    pub fn add_header_once(self, name: &'static str, value: &str) -> bool {
        self.response_header_present(name) || self.push_header(name, value.as_bytes()).is_some()
    }

    /// Sets the response header `name` to `value`: any header of that name the
    /// response already has (an upstream's) is removed first.
    pub fn set_header(self, name: &'static str, value: &str) -> bool {
        self.delete_response_header(name);
        self.push_header(name, value.as_bytes()).is_some()
    }

    /// Everything the policy reads from the request, in one pass over its
    /// headers. `dpr_header` is the name set by `smart_imaging_dpr_header`.
    pub fn request_facts(self, dpr_header: Option<&str>) -> RequestFacts<'a> {
        let mut facts = RequestFacts {
            args: self.args(),
            ..RequestFacts::default()
        };
        let (mut dpr, mut width) = (None, None);
        // SAFETY: headers_in.headers is initialised once the request line is
        // read (all zero, so empty, before); nothing is added to it here.
        let headers = unsafe { entries(&raw mut (*self.as_ptr()).headers_in.headers.part) };
        for h in headers {
            // SAFETY: entries are valid table elements for the request's life.
            let h: &'a ngx_table_elt_t = unsafe { &*h };
            let (key, value) = (h.key.as_bytes(), h.value.as_bytes());
            let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
            if dpr_header.is_some_and(is) {
                facts.dpr_header = Some(value);
            } else if is("Accept") {
                facts.accept.push(value);
            } else if is("User-Agent") {
                facts.user_agent = Some(value);
            } else if is("Sec-CH-DPR") {
                facts.ch_dpr = Some(value);
            } else if is("DPR") {
                dpr = Some(value);
            } else if is("Sec-CH-Width") {
                facts.ch_width = Some(value);
            } else if is("Width") {
                width = Some(value);
            } else if is("Save-Data") {
                facts.save_data = Some(value);
            } else if is("ECT") {
                facts.ect = Some(value);
            } else if is("Downlink") {
                facts.downlink = Some(value);
            } else if is("RTT") {
                facts.rtt = Some(value);
            }
        }
        // The Sec-CH- names win over the legacy ones.
        facts.ch_dpr = facts.ch_dpr.or(dpr);
        facts.ch_width = facts.ch_width.or(width);
        facts
    }

    /// Adds `Cache-Control: max-age=<ttl>` when the response carries neither
    /// `Cache-Control` nor `Expires` (what `smart_imaging_ttl` promises), however
    /// they were set: by the upstream, `expires`, or `add_header` (which puts
    /// `Expires` in the list without setting `headers_out.expires`).
    pub fn add_default_ttl(self, ttl: i64) -> bool {
        // SAFETY: plain fields of a valid request.
        let (has_cache_control, has_expires) = unsafe {
            let out = &raw const (*self.as_ptr()).headers_out;
            // before 1.23: an array of `ngx_table_elt_t *`
            #[cfg(not(nginx1_23_0))]
            let has_cache_control = (*out).cache_control.nelts != 0;
            #[cfg(nginx1_23_0)]
            let has_cache_control = !(*out).cache_control.is_null();
            (has_cache_control, !(*out).expires.is_null())
        };
        if has_cache_control
            || has_expires
            || self.response_header_present("Cache-Control")
            || self.response_header_present("Expires")
        {
            return true;
        }
        self.push_cache_control(&format!("max-age={ttl}"))
    }

    /// Marks the response `Cache-Control: private` (no shared cache may store
    /// it), keeping the directives it had except `public`.
    pub fn make_private(self) -> bool {
        let mut directives = vec!["private".to_string()];
        for h in self.response_headers() {
            // SAFETY: a valid, writable element (see `response_headers`).
            let h = unsafe { &mut *h };
            if !is_named(h, "Cache-Control") {
                continue;
            }
            for d in h.value.as_bytes().split(|&b| b == b',') {
                let d = d.trim_ascii();
                if !d.is_empty()
                    && !d.eq_ignore_ascii_case(b"public")
                    && !d.eq_ignore_ascii_case(b"private")
                {
                    directives.push(String::from_utf8_lossy(d).into_owned());
                }
            }
            h.hash = 0; // replaced below
        }
        // SAFETY: forgetting the old (deleted) elements before registering
        // the new one; a plain field of a valid request.
        unsafe {
            #[cfg(nginx1_23_0)]
            {
                (*self.as_ptr()).headers_out.cache_control = ptr::null_mut();
            }
            #[cfg(not(nginx1_23_0))]
            {
                (*self.as_ptr()).headers_out.cache_control.nelts = 0;
            }
        }
        self.push_cache_control(&directives.join(", "))
    }

    /// Keeps every cache from storing the response: `Cache-Control: no-store`
    /// in place of whatever `Cache-Control` and `Expires` it had, and
    /// `X-Accel-Expires: 0`, which an nginx `proxy_cache` in front reads
    /// first (and still reads under `proxy_ignore_headers Cache-Control`).
    /// Validators are kept: nothing stored, nothing to revalidate.
    pub fn forbid_storing(self) -> bool {
        self.delete_response_header("Cache-Control");
        self.delete_response_header("Expires");
        // SAFETY: forgetting the elements just deleted; plain fields of a
        // valid request.
        unsafe {
            let out = &raw mut (*self.as_ptr()).headers_out;
            (*out).expires = ptr::null_mut();
            #[cfg(nginx1_23_0)]
            {
                (*out).cache_control = ptr::null_mut();
            }
            #[cfg(not(nginx1_23_0))]
            {
                (*out).cache_control.nelts = 0;
            }
        }
        self.push_cache_control("no-store") && self.set_header("X-Accel-Expires", "0")
    }

    /// Adds a `Cache-Control` header and registers it where nginx keeps it.
    /// The response must have no (live) `Cache-Control` yet.
    fn push_cache_control(self, value: &str) -> bool {
        let Some(h) = self.push_header("Cache-Control", value.as_bytes()) else {
            return false;
        };
        #[cfg(nginx1_23_0)]
        {
            // SAFETY: a plain field of a valid request; `h` lives as long.
            unsafe { (*self.as_ptr()).headers_out.cache_control = h };
            true
        }
        // before 1.23, as ngx_http_set_expires() does it
        #[cfg(not(nginx1_23_0))]
        {
            let r = self.as_ptr();
            // SAFETY: the array is the request's, allocated from its pool
            // (here, if it has no storage yet).
            unsafe {
                let cc = &raw mut (*r).headers_out.cache_control;
                if (*cc).elts.is_null() {
                    let elts = ngx::ffi::ngx_palloc((*r).pool, size_of::<*mut ngx_table_elt_t>());
                    if elts.is_null() {
                        return false;
                    }
                    (*cc).elts = elts;
                    (*cc).nelts = 0;
                    (*cc).size = size_of::<*mut ngx_table_elt_t>();
                    (*cc).nalloc = 1;
                    (*cc).pool = (*r).pool;
                }
                let slot = ngx::ffi::ngx_array_push(cc).cast::<*mut ngx_table_elt_t>();
                if slot.is_null() {
                    return false;
                }
                *slot = h;
            }
            true
        }
    }

    /// `ngx_http_clear_accept_ranges`: no byte ranges of this response.
    pub fn clear_accept_ranges(self) {
        let r = self.as_ptr();
        // SAFETY: a valid request; `accept_ranges` is NULL or a list element.
        unsafe {
            (*r).set_allow_ranges(0);
            let h = (*r).headers_out.accept_ranges;
            if !h.is_null() {
                (*h).hash = 0;
                (*r).headers_out.accept_ranges = ptr::null_mut();
            }
        }
    }

    /// `ngx_http_clear_content_length` followed by setting the new length.
    pub fn set_content_length(self, len: usize) {
        let r = self.as_ptr();
        // SAFETY: a valid request; `content_length` is NULL or a list element.
        unsafe {
            (*r).headers_out.content_length_n = len as _;
            let h = (*r).headers_out.content_length;
            if !h.is_null() {
                (*h).hash = 0;
                (*r).headers_out.content_length = ptr::null_mut();
            }
        }
    }

    /// Sets `Content-Type` to a static MIME type without charset.
    pub fn set_content_type(self, mime: &'static str) {
        // SAFETY: plain fields of a valid request; the static string
        // outlives the request.
        unsafe {
            let out = &raw mut (*self.as_ptr()).headers_out;
            (*out).content_type = static_str(mime);
            (*out).content_type_len = mime.len();
            (*out).content_type_lowcase = ptr::null_mut();
            (*out).content_type_hash = 0;
            (*out).charset = ngx_str_t::empty();
        }
    }

    /// Gives a converted response its own validator: the upstream ETag names
    /// different bytes, so the derivative gets a weak ETag derived from it and
    /// from the variant (`W/"<etag>-webp"`). Without an upstream ETag there is none.
    pub fn set_variant_etag(self, variant: &str) {
        let Some(value) = self.variant_etag(variant) else {
            return;
        };
        let value = self.pool_str(&value);
        let r = self.as_ptr();
        // SAFETY: `variant_etag` found a live `etag` element of the response.
        unsafe {
            let h = (*r).headers_out.etag;
            match value {
                Some(v) => (*h).value = v,
                None => {
                    // Better no validator than a wrong one.
                    (*h).hash = 0;
                    (*r).headers_out.etag = ptr::null_mut();
                }
            }
        }
    }

    /// The derivative ETag for `variant`: `W/"<opaque>-<variant>"` from the
    /// response's ETag, or None without one.
    fn variant_etag(self, variant: &str) -> Option<Vec<u8>> {
        // SAFETY: `etag` is NULL or a valid element of the response headers.
        let old = unsafe {
            let h = (*self.as_ptr()).headers_out.etag;
            if h.is_null() || (*h).hash == 0 {
                return None;
            }
            (*h).value.as_bytes()
        };
        let opaque = old.strip_prefix(b"W/").unwrap_or(old);
        let opaque = opaque.strip_prefix(b"\"").unwrap_or(opaque);
        let opaque = opaque.strip_suffix(b"\"").unwrap_or(opaque);
        let mut value = Vec::with_capacity(opaque.len() + variant.len() + 6);
        value.extend_from_slice(b"W/\"");
        value.extend_from_slice(opaque);
        value.push(b'-');
        value.extend_from_slice(variant.as_bytes());
        value.push(b'"');
        Some(value)
    }

    /// Whether the request's `If-None-Match` lists the derivative ETag of
    /// `variant` (weak comparison, as RFC 9110 asks for `If-None-Match`).
    pub fn if_none_match_has_variant(self, variant: &str) -> bool {
        let Some(etag) = self.variant_etag(variant) else {
            return false;
        };
        let opaque = &etag[2..]; // without W/
                                 // SAFETY: `if_none_match` is NULL or a valid request header.
        let list = unsafe {
            let inm = (*self.as_ptr()).headers_in.if_none_match;
            if inm.is_null() {
                return false;
            }
            (*inm).value.as_bytes()
        };
        list.split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
            tag == opaque
        })
    }

    /// Turns the response into a `304 Not Modified` for the derivative of
    /// `variant`, as nginx's not_modified filter does for originals.
    pub fn make_not_modified(self, variant: &str) {
        self.set_variant_etag(variant);
        let r = self.as_ptr();
        // SAFETY: plain fields of a valid request.
        unsafe {
            (*r).headers_out.status = NGX_HTTP_NOT_MODIFIED as usize;
            (*r).headers_out.status_line.len = 0;
            (*r).headers_out.content_type.len = 0;
        }
        self.set_content_length(0);
        // SAFETY: as above.
        unsafe { (*r).headers_out.content_length_n = -1 };
        self.clear_accept_ranges();
    }

    /// The MIME type a 304 made by nginx's not_modified filter had: that filter
    /// empties `content_type` but leaves `content_type_len` and the data, which
    /// still hold the type (without parameters). None when there is none.
    pub fn not_modified_mime(self) -> Option<Vec<u8>> {
        // SAFETY: `data` is NULL or points to at least `content_type_len` bytes
        // (it was set together with it, from pool or static memory).
        let bytes = unsafe {
            let out = &raw const (*self.as_ptr()).headers_out;
            if (*out).content_type.len != 0 {
                return Some(self.response_mime());
            }
            if (*out).content_type_len == 0 || (*out).content_type.data.is_null() {
                return None;
            }
            slice::from_raw_parts((*out).content_type.data, (*out).content_type_len)
        };
        Some(bytes.trim_ascii().to_ascii_lowercase())
    }

    /// The MIME type of the response, without parameters, lower-cased.
    pub fn response_mime(self) -> Vec<u8> {
        // SAFETY: content_type is empty or points to `len` valid bytes.
        let bytes = unsafe { (*self.as_ptr()).headers_out.content_type.as_bytes() };
        let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
        bytes[..end].trim_ascii().to_ascii_lowercase()
    }
}
