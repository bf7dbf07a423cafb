//! Format negotiation: which of AVIF, WebP, JPEG 2000 (JP2) and JPEG XR
//! (JXR) a client may be sent, from its `Accept` and `User-Agent` request
//! headers. Pure functions, table-tested below with real browser headers.
//!
//! - [`client_formats`]: headers -> [`ClientFormats`] (what the client takes).
//! - [`preference`]: [`ClientFormats`] + the formats the configuration
//!   enables -> the formats to try, best first.
//! - [`uses_user_agent`]: whether the format actually served was chosen
//!   because of the `User-Agent` (see "Caches" below).
//!
//! # Rules
//!
//! Preference is fixed: AVIF, WebP, JP2, JXR, then the original. The
//! client's own q-values only include (q > 0) or exclude (q = 0) a type;
//! they do not reorder it.
//!
//! - **AVIF / WebP**: only when `Accept` lists `image/avif` / `image/webp`
//!   with q > 0. `*/*` and `image/*` do not count (every browser sends them).
//!   Media types are matched case-insensitively; the first listing of a type
//!   counts (as in [`crate::policy::accepts`], whose result this agrees with).
//! - **JXR**: when `Accept` lists `image/jxr` or `image/vnd.ms-photo` with
//!   q > 0 (IE 11 on Windows 8.1/10 and legacy Edge do), or by `User-Agent`
//!   for Internet Explorer 9+ and legacy (EdgeHTML) Edge 12 to 17.
//!   IE is recognised by its engine, `Trident/5.0` (IE 9) and later, else
//!   `MSIE 9.0` and later: in Compatibility View IE 9-11 claim `MSIE 7.0` but
//!   keep their real `Trident/` token and decoder. Chromium Edge says `Edg/`
//!   (no "e"), legacy Edge `Edge/`.
//! - **JP2**: by `User-Agent` only (no browser has ever listed it in
//!   `Accept`), to WebKit on Apple systems that predate WebP:
//!   - iOS / iPadOS before 14, in any browser: every iOS browser (Safari,
//!     `CriOS`, `FxiOS`, `EdgiOS`, in-app web views...) is WebKit, so the
//!     decision is by the OS version in `CPU iPhone OS 13_7` / `CPU OS 12_4`.
//!   - Safari on macOS, by the `Version/` token, because the UA's macOS
//!     version is frozen at `10_15_7` since Big Sur (and 10.15.7 is also a
//!     real Catalina release): `Version/13` and older -> JP2. Safari 14 and 15
//!     also ran on Catalina and Mojave, where the OS cannot decode WebP, and
//!     WebKit lists `image/webp` in its image `Accept` only when built for a
//!     system that decodes it. So for Safari 14 and 15 the `Accept` tells the
//!     systems apart: `image/webp` listed -> Big Sur or later -> WebP, not
//!     JP2; not listed -> an older macOS -> JP2. Safari 16+ needs Big Sur, so
//!     never JP2 (and Safari 18 removed JPEG 2000 altogether).
//!     "Safari" means `(Macintosh;` + `AppleWebKit/` + `Safari/` + `Version/`
//!     and none of `Chrome/`, `Chromium/`, `CriOS/`, `FxiOS/`, `EdgiOS/`,
//!     `Edg/`, `Edge/`, `OPR/`, `Opera`, `Firefox/`, `SamsungBrowser/`,
//!     `Android`, `YaBrowser/`, `Electron/` (Chromium browsers carry
//!     `Safari/` too). iPadOS 13+ in desktop mode sends exactly this UA, and
//!     is handled by the same rule. WebKit on Windows (Safari 5) and Linux
//!     (GNOME Web, which also sends `Version/.. Safari/..`) cannot decode JP2
//!     and is not matched; neither is the old Android browser.
//!   - An explicit `image/jp2` in `Accept` with q > 0 also gives JP2 (it is a
//!     declaration like any other, and needs no `Vary: User-Agent`).
//! - An explicit q = 0 for the type (`image/jp2;q=0`, `image/jxr;q=0`)
//!   vetoes a `User-Agent` grant.
//! - Crawlers never get a format by `User-Agent` (anything whose UA contains
//!   `bot`, `crawl`, `spider`, `slurp` or `+http`, case-insensitively):
//!   Applebot, for one, sends a Safari 13 UA, and indexing a JP2 helps nobody.
//! - User-Agent tokens are matched case-sensitively (real browsers never vary
//!   them; a false match costs a broken image, a missed one only bytes).
//!
//! # Caches
//!
//! AVIF, WebP, and JXR or JP2 listed in `Accept`, depend on `Accept` alone:
//! `Vary: Accept` covers them. A format granted by `User-Agent` does not: a
//! shared cache keyed on URL + `Accept` would hand that JP2 to any other
//! client with the same `Accept`. Identical `Accept` values across browsers
//! are common: `text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8`
//! is what both Safari 13 and Firefox 66-71 send when the image URL is opened
//! directly, and `*/*` is what many clients send.
//!
//! So a response in a format for which [`uses_user_agent`] is true must be
//! kept from other clients. Two ways, and the trade-off:
//!
//! - `Vary: Accept, User-Agent`: correct, but it fragments caches, one copy
//!   per distinct User-Agent string (thousands of them; every browser update
//!   changes the string), and some shared caches and CDNs ignore `Vary`
//!   beyond `Accept-Encoding`, or refuse to cache with `Vary: User-Agent`.
//! - `Cache-Control: private`: shared caches do not store the response at all;
//!   the browser's own cache still does. This is the safe default: it does
//!   not rely on the cache honouring `Vary`. Send `Vary: Accept, User-Agent`
//!   with it as well (harmless, and right for caches that honour it).
//!
//! Responses whose format does not come from the `User-Agent` (the original,
//! AVIF, WebP, `Accept`-listed JXR/JP2) get no `Vary: User-Agent`, even when
//! the `User-Agent` was looked at: every client sending that same `Accept`
//! can decode them, so the worst a shared cache can do is hand an old Safari
//! the original JPEG instead of a JP2, a missed saving and not a broken
//! image. (A strict reading of RFC 9110 would list `User-Agent` whenever it
//! was consulted; that would fragment the cache for every response, to
//! protect only the UA-derived ones, which are already protected.) Responses
//! of one URL with different `Vary` values are allowed (RFC 9111 keeps each
//! stored response's own `Vary`).

use crate::codecs::{Format, PerFormat};

/// The formats a client may be sent (see the module documentation for the
/// rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientFormats {
    accepted: PerFormat<bool>,
    /// The one accepted format that is accepted only because of the
    /// `User-Agent` (JP2 for old Apple WebKit, JXR for IE and legacy Edge),
    /// if any. A response in that format must not reach other clients
    /// through a shared cache; see [`uses_user_agent`].
    pub from_user_agent: Option<Format>,
}

impl ClientFormats {
    /// A client that takes exactly `formats`, none of them by `User-Agent`.
    pub fn taking(formats: &[Format]) -> ClientFormats {
        ClientFormats {
            accepted: PerFormat::from_fn(|f| formats.contains(&f)),
            from_user_agent: None,
        }
    }

    /// Whether the client may be sent `format`.
    pub fn supports(&self, format: Format) -> bool {
        self.accepted.get(format)
    }
}

/// What the client may be sent.
///
/// `accept` is the `Accept` header value, empty when absent. A request with
/// several `Accept` header lines must pass them joined with `,` (or `", "`),
/// which is what they mean (RFC 9110, 5.3) and what nginx's `$http_accept`
/// gives since 1.23. `user_agent` is the `User-Agent` value, `None` when
/// absent.
pub fn client_formats(accept: &[u8], user_agent: Option<&[u8]>) -> ClientFormats {
    // A format's listing: any of its media types with q > 0 grants it;
    // otherwise any with q = 0 refuses it; otherwise `Accept` is silent.
    let listing = |format: Format| -> Option<bool> {
        let qs = format
            .codec()
            .accept
            .iter()
            .filter_map(|mime| media_type_quality(accept, mime));
        qs.fold(None, |seen, q| Some(seen == Some(true) || q > 0.0))
    };
    let listings = PerFormat::from_fn(listing);
    let mut formats = ClientFormats {
        accepted: PerFormat::from_fn(|f| listings.get(f) == Some(true)),
        from_user_agent: None,
    };
    // The User-Agent only adds a format the Accept says nothing about:
    // listed with q > 0, it is already granted (and needs no User-Agent);
    // listed with q = 0, the client refuses it.
    let accepts_webp = formats.supports(Format::WebP);
    if let Some(format) = user_agent.and_then(|ua| user_agent_format(ua, accepts_webp)) {
        if listings.get(format).is_none() {
            formats.accepted.set(format, true);
            formats.from_user_agent = Some(format);
        }
    }
    formats
}

/// The formats to try for this client, best first: those of `enabled` (in
/// any order; duplicates are ignored) that the client may be sent, in the
/// order of [`Format::PREFERENCE`]. Empty: serve the original format.
pub fn preference(formats: &ClientFormats, enabled: &[Format]) -> Vec<Format> {
    Format::PREFERENCE
        .into_iter()
        .filter(|f| enabled.contains(f) && formats.supports(*f))
        .collect()
}

/// Whether a response in `served` (the format actually sent, `None` for the
/// original) was chosen because of the `User-Agent`. When true, the response
/// must not be handed to other clients by a shared cache: add
/// `Vary: User-Agent` (to `Vary: Accept`) and, as the safe default,
/// `Cache-Control: private`. See the module documentation.
pub fn uses_user_agent(formats: &ClientFormats, served: Option<Format>) -> bool {
    served.is_some() && served == formats.from_user_agent
}

/// The quality of the first listing of `mime` in `accept`: `None` when not
/// listed, `Some(q)` otherwise (1 without a `q` parameter, 0 when it cannot
/// be read). The same reading as [`crate::policy::accepts`].
fn media_type_quality(accept: &[u8], mime: &str) -> Option<f32> {
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let range = parts.next().unwrap_or_default().trim_ascii();
        if !range.eq_ignore_ascii_case(mime.as_bytes()) {
            continue;
        }
        let mut q = 1.0f32;
        for param in parts {
            let param = param.trim_ascii();
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = std::str::from_utf8(&param[2..])
                    .ok()
                    .and_then(|s| s.trim().parse::<f32>().ok())
                    .unwrap_or(0.0);
            }
        }
        return Some(q);
    }
    None
}

/// The format the `User-Agent` alone entitles the client to, if any.
/// `accepts_webp`: whether `Accept` lists WebP (tells Safari 14/15 on Big Sur
/// and later, which get WebP, from Safari 14/15 on older macOS).
fn user_agent_format(ua: &[u8], accepts_webp: bool) -> Option<Format> {
    if ua.is_empty() || is_crawler(ua) {
        return None;
    }
    if internet_explorer(ua).is_some_and(|v| v >= 9)
        || number_after(ua, b"Edge/").is_some_and(|v| (12..=17).contains(&v))
    {
        return Some(Format::Jxr);
    }
    if ios_version(ua).is_some_and(|v| v < 14) {
        return Some(Format::Jp2);
    }
    match macos_safari_version(ua) {
        Some(v) if v <= 13 => Some(Format::Jp2),
        Some(14 | 15) if !accepts_webp => Some(Format::Jp2),
        _ => None,
    }
}

fn is_crawler(ua: &[u8]) -> bool {
    const MARKS: [&[u8]; 5] = [b"bot", b"crawl", b"spider", b"slurp", b"+http"];
    MARKS
        .iter()
        .any(|m| ua.len() >= m.len() && ua.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
}

/// The Internet Explorer version, by engine: `Trident/N` is IE N+4 (also in
/// Compatibility View, whose `MSIE` token lies), else `MSIE N`.
fn internet_explorer(ua: &[u8]) -> Option<u32> {
    if contains(ua, b"Opera") {
        // Old Opera could pose as MSIE.
        return None;
    }
    number_after(ua, b"Trident/")
        .map(|t| t + 4)
        .or_else(|| number_after(ua, b"MSIE "))
}

/// The major iOS/iPadOS version of a WebKit client on an iPhone, iPad or
/// iPod touch (any browser there is WebKit).
fn ios_version(ua: &[u8]) -> Option<u32> {
    let device = [&b"(iPhone"[..], b"(iPad", b"(iPod"]
        .iter()
        .any(|d| contains(ua, d));
    if !device || !contains(ua, b"like Mac OS X") || !contains(ua, b"AppleWebKit/") {
        return None;
    }
    number_after(ua, b"CPU iPhone OS ").or_else(|| number_after(ua, b"CPU OS "))
}

/// The major `Version/` of Safari on macOS (or iPadOS in desktop mode).
fn macos_safari_version(ua: &[u8]) -> Option<u32> {
    const NOT_SAFARI: [&[u8]; 14] = [
        b"Chrome/",
        b"Chromium/",
        b"CriOS/",
        b"FxiOS/",
        b"EdgiOS/",
        b"Edg/",
        b"Edge/",
        b"OPR/",
        b"Opera",
        b"Firefox/",
        b"SamsungBrowser/",
        b"Android",
        b"YaBrowser/",
        b"Electron/",
    ];
    if !contains(ua, b"(Macintosh;")
        || !contains(ua, b"AppleWebKit/")
        || !contains(ua, b"Safari/")
        || NOT_SAFARI.iter().any(|t| contains(ua, t))
    {
        return None;
    }
    number_after(ua, b"Version/")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The decimal number right after the first `token` (`Version/13.1` -> 13).
fn number_after(haystack: &[u8], token: &[u8]) -> Option<u32> {
    let rest = &haystack[find(haystack, token)? + token.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Image-request `Accept` values, as the browsers send them for <img>.
    /// Chrome 85+, and Chromium browsers (Opera, Samsung Internet, Android
    /// WebView, Edge 121+).
    const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    /// Chrome before AVIF (84 and older).
    const CHROME_84: &str = "image/webp,image/apng,image/*,*/*;q=0.8";
    /// Chromium Edge before 121 (no AVIF).
    const EDGE_120: &str = "image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    const FIREFOX_47_64: &str = "*/*";
    const FIREFOX_65_91: &str = "image/webp,*/*";
    const FIREFOX_92_127: &str = "image/avif,image/webp,*/*";
    const FIREFOX_128: &str =
        "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    /// Safari 11.1-15 on macOS before Big Sur, iOS 11.3-13.
    const SAFARI_NO_WEBP: &str = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
    /// Safari 14-15 on Big Sur and later, iOS 14-15.
    const SAFARI_WEBP: &str =
        "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
    /// Safari 16 on macOS 13+, iOS 16.
    const SAFARI_16: &str =
        "image/webp,image/avif,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    /// Safari 17+.
    const SAFARI_17: &str = "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    /// IE 9 and 10, IE 11 on Windows 7.
    const IE9: &str = "image/png, image/svg+xml, image/*;q=0.8, */*;q=0.5";
    /// IE 11 on Windows 8.1/10, legacy Edge.
    const IE11_JXR: &str = "image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5";
    /// Opera 12 (Presto), for every request.
    const PRESTO: &str = "text/html, application/xml;q=0.9, application/xhtml+xml, image/png, image/webp, image/jpeg, image/gif, image/x-xbitmap, */*;q=0.1";
    /// Navigation (the image URL opened directly): Safari up to 15, Firefox 66-71.
    const NAVIGATION: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    /// (client, User-Agent (None: header absent), Accept, expected formats;
    /// "(ua)" marks the one granted by User-Agent, "-" is none).
    const TABLE: &[(&str, Option<&str>, &str, &str)] = &[
        // Chrome.
        ("Chrome 120, Windows", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), CHROME, "avif webp"),
        ("Chrome 120, macOS", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), CHROME, "avif webp"),
        ("Chrome 120, macOS, navigation", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), NAVIGATION, "-"),
        ("Chrome 84, Windows", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/84.0.4147.135 Safari/537.36"), CHROME_84, "webp"),
        ("Chrome 120, Android", Some("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"), CHROME, "avif webp"),
        // Firefox.
        ("Firefox 64, Windows", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:64.0) Gecko/20100101 Firefox/64.0"), FIREFOX_47_64, "-"),
        ("Firefox 65, Windows", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:65.0) Gecko/20100101 Firefox/65.0"), FIREFOX_65_91, "webp"),
        ("Firefox 93, Linux", Some("Mozilla/5.0 (X11; Linux x86_64; rv:93.0) Gecko/20100101 Firefox/93.0"), FIREFOX_92_127, "avif webp"),
        ("Firefox 115, macOS", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:109.0) Gecko/20100101 Firefox/115.0"), FIREFOX_92_127, "avif webp"),
        ("Firefox 128, Windows", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"), FIREFOX_128, "avif webp"),
        ("Firefox 120, Android", Some("Mozilla/5.0 (Android 13; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0"), FIREFOX_92_127, "avif webp"),
        ("Firefox 68, Android", Some("Mozilla/5.0 (Android 9; Mobile; rv:68.0) Gecko/68.0 Firefox/68.0"), FIREFOX_65_91, "webp"),
        // Safari on macOS.
        ("Safari 12, Mojave", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("Safari 13, Catalina", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("Safari 13, navigation", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"), NAVIGATION, "jp2(ua)"),
        ("Safari 14, Catalina 10.15.6", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("Safari 14, Catalina 10.15.7", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("Safari 14, Big Sur", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15"), SAFARI_WEBP, "webp"),
        ("Safari 14, Big Sur, navigation", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15"), NAVIGATION, "jp2(ua)"),
        ("Safari 15, Catalina", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6.1 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("Safari 15, Monterey", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6.1 Safari/605.1.15"), SAFARI_WEBP, "webp"),
        ("Safari 16, Ventura", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15"), SAFARI_16, "avif webp"),
        ("Safari 16, navigation", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15"), NAVIGATION, "-"),
        ("Safari 17, Sonoma", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2.1 Safari/605.1.15"), SAFARI_17, "avif webp"),
        ("iPadOS 13 Safari, desktop mode", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        // iOS: any browser, by iOS version.
        ("iOS 12 Safari, iPhone", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 12 Safari, iPad", Some("Mozilla/5.0 (iPad; CPU OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 13 Safari", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 13_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Mobile/15E148 Safari/604.1"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 14 Safari", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Mobile/15E148 Safari/604.1"), SAFARI_WEBP, "webp"),
        ("iOS 16 Safari", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"), SAFARI_16, "avif webp"),
        ("iOS 17 Safari", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"), SAFARI_17, "avif webp"),
        ("iOS 13 Chrome (CriOS)", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 13_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/87.0.4280.77 Mobile/15E148 Safari/604.1"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 17 Chrome (CriOS)", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1"), SAFARI_17, "avif webp"),
        ("iOS 13 Firefox (FxiOS)", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/24.0 Mobile/15E148 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 13 Edge (EdgiOS)", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 EdgiOS/45.1.1 Mobile/15E148 Safari/605.1.15"), SAFARI_NO_WEBP, "jp2(ua)"),
        ("iOS 13 Facebook in-app", Some("Mozilla/5.0 (iPhone; CPU iPhone OS 13_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone11,8;FBMD/iPhone;FBSN/iOS;FBSV/13.6;FBSS/2;FBID/phone;FBLC/en_US;FBOP/5]"), SAFARI_NO_WEBP, "jp2(ua)"),
        // Microsoft.
        ("IE 8", Some("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)"), "*/*", "-"),
        ("IE 9", Some("Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)"), IE9, "jxr(ua)"),
        ("IE 9, Compatibility View", Some("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/5.0)"), IE9, "jxr(ua)"),
        ("IE 10", Some("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; WOW64; Trident/6.0)"), IE9, "jxr(ua)"),
        ("IE 11, Windows 7", Some("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko"), IE9, "jxr(ua)"),
        ("IE 11, Windows 10", Some("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko"), IE11_JXR, "jxr"),
        ("IE 11, Windows Phone 8.1", Some("Mozilla/5.0 (Mobile; Windows Phone 8.1; Android 4.0; ARM; Trident/7.0; Touch; rv:11.0; IEMobile/11.0; NOKIA; Lumia 635) like iPhone OS 7_0_3 Mac OS X AppleWebKit/537 (KHTML, like Gecko) Mobile Safari/537"), IE9, "jxr(ua)"),
        ("Edge 15 (EdgeHTML)", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36 Edge/15.15063"), IE11_JXR, "jxr"),
        ("Edge 15, no jxr in Accept", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36 Edge/15.15063"), IE9, "jxr(ua)"),
        ("Edge 17 (EdgeHTML)", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.140 Safari/537.36 Edge/17.17134"), IE9, "jxr(ua)"),
        ("Edge 18 (EdgeHTML), jxr in Accept", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.17763"), IE11_JXR, "jxr"),
        ("Edge 18 (EdgeHTML), no jxr in Accept", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.17763"), IE9, "-"),
        ("Edge 120 (Chromium)", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"), EDGE_120, "webp"),
        ("Edge 121 (Chromium), macOS", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 Edg/121.0.0.0"), CHROME, "avif webp"),
        // Other browsers.
        ("Opera 106", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0"), CHROME, "avif webp"),
        ("Opera 12 (Presto), macOS", Some("Opera/9.80 (Macintosh; Intel Mac OS X 10.10.4) Presto/2.12.388 Version/12.16"), PRESTO, "webp"),
        ("Samsung Internet 23", Some("Mozilla/5.0 (Linux; Android 13; SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36"), CHROME, "avif webp"),
        ("Android WebView", Some("Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/118.0.0.0 Mobile Safari/537.36"), CHROME, "avif webp"),
        ("Android 4 stock browser", Some("Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30"), "", "-"),
        ("Safari 5, Windows", Some("Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534.57.2 (KHTML, like Gecko) Version/5.1.7 Safari/534.57.2"), "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "-"),
        ("GNOME Web (WebKitGTK)", Some("Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15"), SAFARI_NO_WEBP, "-"),
        // Crawlers and tools.
        ("Googlebot", Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), "*/*", "-"),
        ("Googlebot smartphone", Some("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), CHROME, "avif webp"),
        ("Googlebot-Image", Some("Googlebot-Image/1.0"), "*/*", "-"),
        ("bingbot", Some("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"), "*/*", "-"),
        ("bingbot (Edge-based)", Some("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"), "*/*", "-"),
        ("Applebot (poses as Safari 13)", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"), "*/*", "-"),
        ("curl", Some("curl/8.5.0"), "*/*", "-"),
        ("wget", Some("Wget/1.21.4"), "*/*", "-"),
        ("empty User-Agent", Some(""), "*/*", "-"),
        ("no User-Agent, no Accept", None, "", "-"),
        ("no User-Agent, Safari 17 Accept", None, SAFARI_17, "avif webp"),
        ("no User-Agent, old Safari Accept", None, SAFARI_NO_WEBP, "-"),
        // q-values, case, joined header lines.
        ("avif q=0", Some("curl/8.5.0"), "image/avif;q=0,image/webp,*/*", "webp"),
        ("avif q=0 in Chrome", Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), "image/avif;q=0,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "webp"),
        ("both q=0", Some("curl/8.5.0"), "image/avif; q=0.0, image/webp;q=0, image/*", "-"),
        ("tiny q", Some("curl/8.5.0"), "image/avif;q=0.001", "avif"),
        ("junk q", Some("curl/8.5.0"), "image/avif;q=high, image/webp", "webp"),
        ("mixed case", Some("curl/8.5.0"), "IMAGE/AVIF, Image/WebP;Q=0.8", "avif webp"),
        ("wildcards only", Some("curl/8.5.0"), "image/*,*/*", "-"),
        ("lookalike types", Some("curl/8.5.0"), "image/avifs, image/webp2, x-image/webp", "-"),
        ("two Accept lines joined", Some("curl/8.5.0"), "image/avif;q=0, image/webp", "webp"),
        ("jp2 listed", Some("curl/8.5.0"), "image/jp2,*/*", "jp2"),
        ("jxr by old type name", Some("curl/8.5.0"), "Image/Vnd.MS-Photo, */*", "jxr"),
        ("Safari 13 refusing jp2", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"), "image/jp2;q=0, image/png, image/*;q=0.8", "-"),
        ("Safari 13 listing jp2", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"), "image/jp2, image/png, image/*;q=0.8", "jp2"),
        ("IE 11 refusing jxr", Some("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko"), "image/jxr;q=0, image/png, */*;q=0.5", "-"),
        ("Safari 14 refusing webp", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15"), "image/webp;q=0,image/png,image/*;q=0.8", "jp2(ua)"),
    ];

    fn summary(f: &ClientFormats) -> String {
        let names: Vec<String> = Format::PREFERENCE
            .into_iter()
            .filter(|&fmt| f.supports(fmt))
            .map(|fmt| {
                if f.from_user_agent == Some(fmt) {
                    format!("{fmt}(ua)")
                } else {
                    fmt.to_string()
                }
            })
            .collect();
        if names.is_empty() {
            "-".into()
        } else {
            names.join(" ")
        }
    }

    #[test]
    fn decision_table() {
        let mut failures = Vec::new();
        for &(client, ua, accept, expected) in TABLE {
            let f = client_formats(accept.as_bytes(), ua.map(str::as_bytes));
            let got = summary(&f);
            if let Some(fmt) = f.from_user_agent {
                assert!(f.supports(fmt), "{client}: {f:?}");
            }
            // The same reading of Accept as policy::accepts.
            assert_eq!(
                f.supports(Format::WebP),
                crate::policy::accepts(accept.as_bytes(), "image/webp"),
                "{client}"
            );
            assert_eq!(
                f.supports(Format::Avif),
                crate::policy::accepts(accept.as_bytes(), "image/avif"),
                "{client}"
            );
            if std::env::var_os("NEGOTIATE_PRINT").is_some() {
                println!("| {client} | {got} |");
            }
            if got != expected {
                failures.push(format!("{client}: expected {expected}, got {got}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn user_agent_exclusions() {
        // A Safari 13 UA with each non-Safari token added is no longer Safari.
        let safari13 = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15";
        assert_eq!(
            client_formats(b"*/*", Some(safari13.as_bytes())).from_user_agent,
            Some(Format::Jp2)
        );
        for token in [
            "Chrome/120.0.0.0",
            "Chromium/120.0.0.0",
            "CriOS/87.0",
            "FxiOS/24.0",
            "EdgiOS/45.1",
            "Edg/120.0",
            "OPR/106.0",
            "Firefox/115.0",
            "SamsungBrowser/23.0",
            "YaBrowser/23.1",
            "Electron/28.0",
            "Googlebot/2.1",
        ] {
            let ua = format!("{safari13} {token}");
            assert_eq!(
                client_formats(b"*/*", Some(ua.as_bytes())),
                ClientFormats::taking(&[]),
                "{token}"
            );
        }
        // Lowercase tokens are not the real ones.
        let lower = safari13.replace("Version/", "version/");
        assert!(!client_formats(b"*/*", Some(lower.as_bytes())).supports(Format::Jp2));
        // Version numbers: missing or absurd -> nothing.
        let no_version = safari13.replace("Version/13.1.2 ", "");
        assert!(!client_formats(b"*/*", Some(no_version.as_bytes())).supports(Format::Jp2));
        let huge = safari13.replace("Version/13.1.2", "Version/99999999999");
        assert!(!client_formats(b"*/*", Some(huge.as_bytes())).supports(Format::Jp2));
        // Edge 12 is the first EdgeHTML; "Edge/1" is not a version of it.
        for (token, jxr) in [
            ("Edge/12.10240", true),
            ("Edge/1.0", false),
            ("Edge/18.19041", false),
        ] {
            let ua = format!("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 {token}");
            assert_eq!(
                client_formats(b"*/*", Some(ua.as_bytes())).supports(Format::Jxr),
                jxr,
                "{token}"
            );
        }
        // Opera once posed as MSIE.
        let opera = "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; en) Opera 11.51";
        assert!(!client_formats(b"*/*", Some(opera.as_bytes())).supports(Format::Jxr));
        // Garbage does not panic.
        for ua in [
            "Version/",
            "Trident/",
            "MSIE ",
            "CPU OS ",
            "(iPhone; CPU OS x_1 like Mac OS X) AppleWebKit/",
        ] {
            let _ = client_formats(b"", Some(ua.as_bytes()));
        }
        let _ = client_formats(b";;,,;q=,q", Some(&[0xff, 0xfe, b'M']));
    }

    #[test]
    fn preference_order_and_filter() {
        use Format::*;
        let all = ClientFormats::taking(&[Avif, WebP, Jp2, Jxr]);
        assert_eq!(
            preference(&all, &[Jxr, Jp2, WebP, Avif]),
            [Avif, WebP, Jp2, Jxr]
        );
        assert_eq!(preference(&all, &[WebP, WebP, Jxr]), [WebP, Jxr]);
        assert_eq!(preference(&all, &[]), []);
        let chrome = client_formats(CHROME.as_bytes(), None);
        assert_eq!(preference(&chrome, &Format::PREFERENCE), [Avif, WebP]);
        assert_eq!(preference(&chrome, &[WebP, Jp2]), [WebP]);
        assert_eq!(preference(&chrome, &[Jp2, Jxr]), []);
        let safari13 = client_formats(
            SAFARI_NO_WEBP.as_bytes(),
            Some(b"Mozilla/5.0 (iPhone; CPU iPhone OS 13_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Mobile/15E148 Safari/604.1"),
        );
        assert_eq!(preference(&safari13, &Format::PREFERENCE), [Jp2]);
        assert_eq!(preference(&safari13, &[Avif, WebP]), []);
    }

    #[test]
    fn user_agent_dependence() {
        use Format::*;
        let ua = |s: &'static str| Some(s.as_bytes());
        let safari13 = client_formats(
            SAFARI_NO_WEBP.as_bytes(),
            ua("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"),
        );
        assert!(uses_user_agent(&safari13, Some(Jp2)));
        // No User-Agent format in the plan (JP2 not enabled): cacheable by
        // Accept. (When JP2 is planned but the original is served, not
        // smaller or failing the guard, the response stays `Vary:
        // User-Agent` + private: that is decided from the request, so
        // that 200, 304 and HEAD agree.)
        assert!(!uses_user_agent(&safari13, None));

        let ie11_win7 = client_formats(
            IE9.as_bytes(),
            ua("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko"),
        );
        assert!(uses_user_agent(&ie11_win7, Some(Jxr)));
        // IE 11 on Windows 10 lists image/jxr: Accept alone decides.
        let ie11_win10 = client_formats(
            IE11_JXR.as_bytes(),
            ua("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko"),
        );
        assert!(ie11_win10.supports(Jxr));
        assert!(!uses_user_agent(&ie11_win10, Some(Jxr)));

        let big_sur = client_formats(
            SAFARI_WEBP.as_bytes(),
            ua("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15"),
        );
        assert!(!uses_user_agent(&big_sur, Some(WebP)));
        let chrome = client_formats(CHROME.as_bytes(), None);
        assert!(!uses_user_agent(&chrome, Some(Avif)));
    }

    #[test]
    fn format_names() {
        for f in Format::PREFERENCE {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(Format::from_name(&f.name().to_uppercase()), Some(f));
            assert!(f.mime().starts_with("image/"));
        }
        assert_eq!(Format::from_name("jpeg"), None);
        assert_eq!(Format::WebP.to_string(), "webp");
    }
}
