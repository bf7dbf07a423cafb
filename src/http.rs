//! Reading and rewriting request/response headers. These reimplement the
//! small C macros nginx filters use (`ngx_http_clear_content_length` etc.),
//! which bindgen cannot bind.

use core::ptr;
use core::slice;

use smart_imaging_core::policy::RequestFacts;

use ngx::ffi::{
    ngx_http_request_t, ngx_list_part_t, ngx_list_push, ngx_pnalloc, ngx_str_t, ngx_table_elt_t,
    NGX_HTTP_NOT_MODIFIED,
};

/// Iterates over the entries of an nginx header list.
///
/// # Safety
/// `list` must be a valid, initialised `ngx_list_t` of `ngx_table_elt_t`.
unsafe fn header_entries(part: *mut ngx_list_part_t) -> impl Iterator<Item = *mut ngx_table_elt_t> {
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

/// Whether a response header `name` already lists `token` (comma-separated,
/// case-insensitive), e.g. `Vary: Accept-Encoding, Accept`.
///
/// # Safety
/// `r` must be a valid request.
unsafe fn response_header_has_token(r: *mut ngx_http_request_t, name: &str, token: &str) -> bool {
    // SAFETY: headers_out.headers is initialised for every request.
    let mut entries = unsafe { header_entries(&raw mut (*r).headers_out.headers.part) };
    entries.any(|h| {
        // SAFETY: as above.
        let h = unsafe { &*h };
        h.hash != 0
            && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes())
            && h.value.as_bytes().split(|&b| b == b',').any(|t| {
                t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()) || t.trim_ascii() == b"*"
            })
    })
}

/// Whether the response has a (not deleted) header `name`.
///
/// # Safety
/// `r` must be a valid request.
unsafe fn response_header_present(r: *mut ngx_http_request_t, name: &str) -> bool {
    // SAFETY: headers_out.headers is initialised for every request.
    let mut entries = unsafe { header_entries(&raw mut (*r).headers_out.headers.part) };
    entries.any(|h| {
        // SAFETY: entries are valid table elements.
        let h = unsafe { &*h };
        h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes())
    })
}

/// Appends a response header. `key` and `value` must live as long as the
/// request (static strings, or memory from the request pool).
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
unsafe fn push_header(
    r: *mut ngx_http_request_t,
    key: ngx_str_t,
    value: ngx_str_t,
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: the list belongs to the request and is allocated from its pool.
    let h = unsafe { ngx_list_push(&raw mut (*r).headers_out.headers) }.cast::<ngx_table_elt_t>();
    if h.is_null() {
        return None;
    }
    // SAFETY: `h` is a fresh, writable element of the list.
    unsafe {
        (*h).hash = 1;
        (*h).key = key;
        (*h).value = value;
        (*h).lowcase_key = ptr::null_mut();
        #[cfg(nginx1_23_0)]
        {
            (*h).next = ptr::null_mut();
        }
    }
    Some(h)
}

const fn static_str(s: &'static str) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr().cast_mut(),
    }
}

/// Copies `bytes` into the request pool.
///
/// # Safety
/// `r` must be a valid request.
unsafe fn pool_str(r: *mut ngx_http_request_t, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: the pool outlives every header of the request.
    let data = unsafe { ngx_pnalloc((*r).pool, bytes.len()) }.cast::<u8>();
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

/// Adds one `Vary` header with those of `tokens` that no `Vary` header of the
/// response covers yet (the upstream's, or `gzip_vary`'s, stay as they are).
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn add_vary(r: *mut ngx_http_request_t, tokens: &[String]) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe {
        let missing: Vec<&str> = tokens
            .iter()
            .map(String::as_str)
            .filter(|t| !response_header_has_token(r, "Vary", t))
            .collect();
        if missing.is_empty() {
            return true;
        }
        let Some(value) = pool_str(r, missing.join(", ").as_bytes()) else {
            return false;
        };
        push_header(r, static_str("Vary"), value).is_some()
    }
}

/// Adds a response header `name: value` (e.g. `Accept-CH`), unless the
/// response already has one of that name.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn add_header_once(r: *mut ngx_http_request_t, name: &'static str, value: &str) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe {
        if response_header_present(r, name) {
            return true;
        }
        let Some(value) = pool_str(r, value.as_bytes()) else {
            return false;
        };
        push_header(r, static_str(name), value).is_some()
    }
}

/// Sets the response header `name` to `value`: any header of that name the
/// response already has (an upstream's) is removed first.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn set_header(r: *mut ngx_http_request_t, name: &'static str, value: &str) -> bool {
    // SAFETY: headers_out.headers is initialised for every request.
    for h in unsafe { header_entries(&raw mut (*r).headers_out.headers.part) } {
        // SAFETY: entries are valid, writable table elements.
        let h = unsafe { &mut *h };
        if h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
            h.hash = 0;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some(value) = pool_str(r, value.as_bytes()) else {
            return false;
        };
        push_header(r, static_str(name), value).is_some()
    }
}

/// The response's `Content-Length`, when known.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn content_length(r: *mut ngx_http_request_t) -> Option<usize> {
    // SAFETY: a plain field of a valid request.
    let n = unsafe { (*r).headers_out.content_length_n };
    usize::try_from(n).ok()
}

/// Everything the policy reads from the request, in one pass over its
/// headers. `dpr_header` is the name set by `smart_imaging_dpr_header`.
///
/// # Safety
/// `r` must be a valid request whose headers have been parsed; the slices
/// live as long as the request.
pub unsafe fn request_facts<'a>(
    r: *mut ngx_http_request_t,
    dpr_header: Option<&str>,
) -> RequestFacts<'a> {
    let mut facts = RequestFacts {
        // SAFETY: `args` points into the request's buffers.
        args: unsafe { (*r).args.as_bytes() },
        ..RequestFacts::default()
    };
    let (mut dpr, mut width) = (None, None);
    // SAFETY: headers_in.headers is initialised once the request is read.
    for h in unsafe { header_entries(&raw mut (*r).headers_in.headers.part) } {
        // SAFETY: entries are valid table elements for the request's life.
        let h: &'a ngx_table_elt_t = unsafe { &*h };
        let (key, value) = (h.key.as_bytes(), h.value.as_bytes());
        let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
        if dpr_header.is_some_and(|name| is(name)) {
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
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn add_default_ttl(r: *mut ngx_http_request_t, ttl: i64) -> bool {
    // SAFETY: `r` is valid; header pointers are NULL or valid elements.
    unsafe {
        let out = &raw mut (*r).headers_out;
        // before 1.23: an array of `ngx_table_elt_t *`
        #[cfg(not(nginx1_23_0))]
        let has_cache_control = (*out).cache_control.nelts != 0;
        #[cfg(nginx1_23_0)]
        let has_cache_control = !(*out).cache_control.is_null();
        if has_cache_control
            || !(*out).expires.is_null()
            || response_header_present(r, "Cache-Control")
            || response_header_present(r, "Expires")
        {
            return true;
        }
        push_cache_control(r, &format!("max-age={ttl}"))
    }
}

/// Marks the response `Cache-Control: private` (no shared cache may store
/// it), keeping the directives it had except `public`.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn make_private(r: *mut ngx_http_request_t) -> bool {
    let mut directives = vec!["private".to_string()];
    // SAFETY: headers_out.headers is initialised for every request.
    for h in unsafe { header_entries(&raw mut (*r).headers_out.headers.part) } {
        // SAFETY: entries are valid, writable table elements.
        let h = unsafe { &mut *h };
        if h.hash == 0 || !h.key.as_bytes().eq_ignore_ascii_case(b"Cache-Control") {
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
    // SAFETY: forgetting the old elements before registering the new one.
    unsafe {
        #[cfg(nginx1_23_0)]
        {
            (*r).headers_out.cache_control = ptr::null_mut();
        }
        #[cfg(not(nginx1_23_0))]
        {
            (*r).headers_out.cache_control.nelts = 0;
        }
        push_cache_control(r, &directives.join(", "))
    }
}

/// Adds a `Cache-Control` header and registers it where nginx keeps it.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet, and the
/// response must have no (live) `Cache-Control` yet.
unsafe fn push_cache_control(r: *mut ngx_http_request_t, value: &str) -> bool {
    // SAFETY: `r` is valid (caller's contract).
    unsafe {
        let out = &raw mut (*r).headers_out;
        let Some(value) = pool_str(r, value.as_bytes()) else {
            return false;
        };
        match push_header(r, static_str("Cache-Control"), value) {
            #[cfg(nginx1_23_0)]
            Some(h) => {
                (*out).cache_control = h;
                true
            }
            // before 1.23, as ngx_http_set_expires() does it
            #[cfg(not(nginx1_23_0))]
            Some(h) => {
                let cc = &raw mut (*out).cache_control;
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
                true
            }
            None => false,
        }
    }
}

/// `ngx_http_clear_accept_ranges`: no byte ranges of this response.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn clear_accept_ranges(r: *mut ngx_http_request_t) {
    // SAFETY: `r` is valid; `accept_ranges` is NULL or a list element.
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
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn set_content_length(r: *mut ngx_http_request_t, len: usize) {
    // SAFETY: as above.
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
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn set_content_type(r: *mut ngx_http_request_t, mime: &'static str) {
    // SAFETY: as above; the static string outlives the request.
    unsafe {
        let out = &raw mut (*r).headers_out;
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
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn set_variant_etag(r: *mut ngx_http_request_t, variant: &str) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some(value) = variant_etag(r, variant) else {
            return;
        };
        let h = (*r).headers_out.etag;
        match pool_str(r, &value) {
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
///
/// # Safety
/// `r` must be a valid request.
unsafe fn variant_etag(r: *mut ngx_http_request_t, variant: &str) -> Option<Vec<u8>> {
    // SAFETY: `etag` is NULL or a valid element of the response headers.
    let h = unsafe { (*r).headers_out.etag };
    // SAFETY: as above.
    if h.is_null() || unsafe { (*h).hash } == 0 {
        return None;
    }
    // SAFETY: as above.
    let old = unsafe { (*h).value.as_bytes() };
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
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn if_none_match_has_variant(r: *mut ngx_http_request_t, variant: &str) -> bool {
    // SAFETY: forwarded from the caller.
    let Some(etag) = (unsafe { variant_etag(r, variant) }) else {
        return false;
    };
    let opaque = &etag[2..]; // without W/
                             // SAFETY: `if_none_match` is NULL or a valid request header.
    let inm = unsafe { (*r).headers_in.if_none_match };
    if inm.is_null() {
        return false;
    }
    // SAFETY: as above.
    let list = unsafe { (*inm).value.as_bytes() };
    list.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == opaque
    })
}

/// Turns the response into a `304 Not Modified` for the derivative of
/// `variant`, as nginx's not_modified filter does for originals.
///
/// # Safety
/// `r` must be a valid request whose header has not been sent yet.
pub unsafe fn make_not_modified(r: *mut ngx_http_request_t, variant: &str) {
    // SAFETY: forwarded from the caller.
    unsafe {
        set_variant_etag(r, variant);
        (*r).headers_out.status = NGX_HTTP_NOT_MODIFIED as usize;
        (*r).headers_out.status_line.len = 0;
        (*r).headers_out.content_type.len = 0;
        set_content_length(r, 0);
        (*r).headers_out.content_length_n = -1;
        clear_accept_ranges(r);
    }
}

/// The MIME type a 304 made by nginx's not_modified filter had: that filter
/// empties `content_type` but leaves `content_type_len` and the data, which
/// still hold the type (without parameters). None when there is none.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn not_modified_mime(r: *mut ngx_http_request_t) -> Option<Vec<u8>> {
    // SAFETY: `data` is NULL or points to at least `content_type_len` bytes
    // (it was set together with it, from pool or static memory).
    unsafe {
        let out = &(*r).headers_out;
        if out.content_type.len != 0 {
            return Some(response_mime(r));
        }
        if out.content_type_len == 0 || out.content_type.data.is_null() {
            return None;
        }
        let bytes = slice::from_raw_parts(out.content_type.data, out.content_type_len);
        Some(bytes.trim_ascii().to_ascii_lowercase())
    }
}

/// The MIME type of the response, without parameters, lower-cased.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn response_mime(r: *mut ngx_http_request_t) -> Vec<u8> {
    // SAFETY: content_type is empty or points to valid bytes.
    let ct = unsafe { &(*r).headers_out.content_type };
    if ct.len == 0 || ct.data.is_null() {
        return Vec::new();
    }
    // SAFETY: `data` holds `len` bytes.
    let bytes = unsafe { slice::from_raw_parts(ct.data, ct.len) };
    let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
    bytes[..end].trim_ascii().to_ascii_lowercase()
}
