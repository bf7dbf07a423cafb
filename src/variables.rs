//! Variables: `$smart_imaging_variant` names, from the request alone, what
//! the module will serve for it (`webp-q85-w400-dpr2`, `src-q85-h300`,
//! `orig` when nothing would change, `off` for `bfc=off`, empty where the
//! module is off). Two requests with the same value get the same bytes, so
//! it belongs in `proxy_cache_key` (with the URI) when a cache sits in front
//! of or behind the module and stores converted responses.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_pnalloc, ngx_str_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use smart_imaging_core::policy::{decide, Decision};

use crate::{filter, http};

/// Registers the variables (preconfiguration).
///
/// # Safety
/// `cf` must be the configuration being read.
pub unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    let name = c"smart_imaging_variant";
    let mut name = ngx_str_t {
        len: name.count_bytes(),
        data: name.as_ptr().cast_mut().cast(),
    };
    // SAFETY: nginx copies the name; `cf` is valid (caller's contract).
    let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as usize) };
    if var.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: `var` was just returned by nginx and is ours to fill in.
    unsafe { (*var).get_handler = Some(variant_variable) };
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn variant_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value to fill in.
    let value = catch_unwind(AssertUnwindSafe(|| unsafe { variant(r) }));
    // SAFETY: as above.
    unsafe {
        let Ok(Some(value)) = value else {
            (*v).set_not_found(1);
            return NGX_OK as ngx_int_t;
        };
        let data = ngx_pnalloc((*r).pool, value.len()).cast::<u8>();
        if data.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        core::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        (*v).data = data;
        (*v).set_len(value.len() as u32);
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
    }
    NGX_OK as ngx_int_t
}

/// The variant for `r`, or None where the module is off.
///
/// # Safety
/// `r` must be a valid request whose headers have been read.
unsafe fn variant(r: *mut ngx_http_request_t) -> Option<String> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let conf = filter::loc_conf(r);
        if !conf.enabled() {
            return None;
        }
        let settings = conf.settings();
        let facts = http::request_facts(r, settings.dpr_header.as_deref());
        Some(match decide(&facts, &settings).decision {
            Decision::Off => "off".to_string(),
            Decision::Original => "orig".to_string(),
            Decision::Transcode(plan) => plan.variant(),
        })
    }
}
