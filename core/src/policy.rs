//! Request -> what to try. Pure functions over header values and the query
//! string, so they can be table-tested.

/// Whether `accept` (an `Accept` header value) lists `mime` with a non-zero
/// quality. Only an explicit listing counts: `*/*` and `image/*` are sent by
/// every browser, including ones that cannot decode WebP.
pub fn accepts(accept: &[u8], mime: &str) -> bool {
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let range = trim(parts.next().unwrap_or_default());
        if !range.eq_ignore_ascii_case(mime.as_bytes()) {
            continue;
        }
        let mut q = 1.0f32;
        for param in parts {
            let param = trim(param);
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = std::str::from_utf8(&param[2..])
                    .ok()
                    .and_then(|s| s.trim().parse::<f32>().ok())
                    .unwrap_or(0.0);
            }
        }
        return q > 0.0;
    }
    false
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// The value of query-string argument `name` (`a=1&bfc=off`), undecoded.
pub fn query_arg<'a>(args: &'a [u8], name: &str) -> Option<&'a [u8]> {
    args.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        (key == name.as_bytes()).then_some(value)
    })
}

/// URL arguments the module reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UrlArgs {
    /// `bfc=off`: the module does nothing at all for this request.
    pub bfc_off: bool,
}

pub fn parse_url_args(args: &[u8]) -> UrlArgs {
    UrlArgs {
        bfc_off: query_arg(args, "bfc").is_some_and(|v| v.eq_ignore_ascii_case(b"off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists() {
        let chrome = b"image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert!(accepts(chrome, "image/webp"));
        assert!(accepts(chrome, "image/avif"));
        let old_firefox = b"image/webp,*/*";
        assert!(accepts(old_firefox, "image/webp"));
        let safari13 = b"image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
        assert!(!accepts(safari13, "image/webp"));
        assert!(!accepts(b"*/*", "image/webp"));
        assert!(!accepts(b"image/*", "image/webp"));
        assert!(!accepts(b"", "image/webp"));
        assert!(!accepts(b"image/webp;q=0", "image/webp"));
        assert!(!accepts(b"image/webp; q=0.0, */*", "image/webp"));
        assert!(accepts(b"IMAGE/WEBP ; q=0.5", "image/webp"));
        assert!(!accepts(b"image/webpx", "image/webp"));
        assert!(!accepts(b"image/webp;q=junk", "image/webp"));
    }

    #[test]
    fn url_args() {
        assert!(parse_url_args(b"bfc=off").bfc_off);
        assert!(parse_url_args(b"x=1&bfc=OFF&y").bfc_off);
        assert!(!parse_url_args(b"bfc=on").bfc_off);
        assert!(!parse_url_args(b"abfc=off").bfc_off);
        assert!(!parse_url_args(b"").bfc_off);
        assert_eq!(query_arg(b"a&b=2", "a"), Some(&b""[..]));
    }
}
