//! Request -> what to try. Pure functions over header values and the query
//! string, so they can be table-tested.

use crate::negotiate;
use crate::plan::{Guard, Plan, Qualities};
use crate::sizing::SizeRequest;

// The configuration the policy reads; defined with the directives.
pub use crate::config::{Ect, NetworkThresholds, Settings};

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

/// What a request says, as raw header values (None when absent). The nginx
/// layer only looks the headers up; all parsing is here.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts<'a> {
    /// The query string.
    pub args: &'a [u8],
    /// The `Accept` header values (a request may have several).
    pub accept: Vec<&'a [u8]>,
    /// `User-Agent` (only read for formats browsers don't announce).
    pub user_agent: Option<&'a [u8]>,
    /// The value of the header named by `Settings::dpr_header`.
    pub dpr_header: Option<&'a [u8]>,
    /// `Sec-CH-DPR`, else `DPR`.
    pub ch_dpr: Option<&'a [u8]>,
    /// `Sec-CH-Width`, else `Width` (physical pixels).
    pub ch_width: Option<&'a [u8]>,
    pub save_data: Option<&'a [u8]>,
    pub ect: Option<&'a [u8]>,
    pub downlink: Option<&'a [u8]>,
    pub rtt: Option<&'a [u8]>,
}

/// What to do with a candidate image response.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// `bfc=off`: the module does nothing for this request.
    Off,
    /// Nothing could change the response: serve it without buffering.
    Original,
    /// Buffer the body and produce this.
    Transcode(Plan),
}

/// The outcome of [`decide`]: the decision, the request headers whose
/// values can change the response (for `Vary`), and the URL arguments that
/// were malformed and ignored (for a debug log line).
#[derive(Clone, Debug, PartialEq)]
pub struct Negotiation {
    pub decision: Decision,
    pub vary: Vec<String>,
    pub ignored_args: Vec<String>,
    /// Whether the network was judged poor.
    pub poor_network: bool,
    /// The format depends on `User-Agent` (JPEG 2000 / JPEG XR for old
    /// browsers): the response must not be stored by shared caches that
    /// key on `Accept` only (see the negotiate module).
    pub private: bool,
}

/// The DPR argument: `dpr=off`, `dpr=on`, `dpr=on,2.5`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DprArg {
    Off,
    On(Option<f32>),
}

fn parse_number<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

fn parse_dpr(value: &[u8]) -> Option<f32> {
    parse_number::<f32>(value).filter(|d| d.is_finite() && *d > 0.0)
}

fn parse_css_length(value: &[u8]) -> Option<u32> {
    parse_number::<u32>(value).filter(|&v| (1..=65535).contains(&v))
}

/// `%2C` / `%2c` -> `,` (the only escape the module's arguments need).
fn unescape_comma(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && value
                .get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"2c"))
        {
            out.push(b',');
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    out
}

/// Rounds a DPR to 2 decimals, so equal-looking values give equal variants.
fn normalise_dpr(dpr: f32) -> f32 {
    (dpr * 100.0).round() / 100.0
}

/// Computes everything the module will do for this request, from the
/// request alone (so caches can key on the result, see [`Plan::variant`]).
pub fn decide(req: &RequestFacts<'_>, settings: &Settings) -> Negotiation {
    let mut ignored = Vec::new();
    let arg = |name: &str| query_arg(req.args, name).map(|v| (name.to_string(), v));

    if parse_url_args(req.args).bfc_off {
        return Negotiation {
            decision: Decision::Off,
            vary: Vec::new(),
            ignored_args: Vec::new(),
            poor_network: false,
            private: false,
        };
    }

    let css = |name: &str, ignored: &mut Vec<String>| {
        arg(name).and_then(|(n, v)| {
            let parsed = parse_css_length(v);
            if parsed.is_none() {
                ignored.push(format!("{n}={}", String::from_utf8_lossy(v)));
            }
            parsed
        })
    };
    let wid = css("wid", &mut ignored);
    let hei = css("hei", &mut ignored);

    let dpr_arg = query_arg(req.args, "dpr").and_then(|v| {
        // `dpr=on%2C2` is how URLSearchParams writes `dpr=on,2`.
        let unescaped = unescape_comma(v);
        let v = unescaped.as_slice();
        let parsed = if v.eq_ignore_ascii_case(b"off") {
            Some(DprArg::Off)
        } else if v.eq_ignore_ascii_case(b"on") {
            Some(DprArg::On(None))
        } else if v.len() > 3 && v[..3].eq_ignore_ascii_case(b"on,") {
            parse_dpr(&v[3..]).map(|d| DprArg::On(Some(d)))
        } else {
            None
        };
        if parsed.is_none() {
            ignored.push(format!("dpr={}", String::from_utf8_lossy(v)));
        }
        parsed
    });
    // `qlt=80` (Dynamic Media also allows `qlt=80,1`: the chroma flag is
    // ignored, the encoders choose their own subsampling).
    let qlt_arg = query_arg(req.args, "qlt").and_then(|v| {
        let unescaped = unescape_comma(v);
        let number = unescaped.split(|&b| b == b',').next().unwrap_or(&[]);
        let parsed = parse_number::<u8>(number).filter(|&q| q <= 100);
        if parsed.is_none() {
            ignored.push(format!("qlt={}", String::from_utf8_lossy(v)));
        }
        parsed
    });
    let network_arg = query_arg(req.args, "network").and_then(|v| {
        if v.eq_ignore_ascii_case(b"off") {
            Some(false)
        } else if v.eq_ignore_ascii_case(b"on") {
            Some(true)
        } else {
            ignored.push(format!("network={}", String::from_utf8_lossy(v)));
            None
        }
    });

    // Network: opt-in per location, opt-out (or in) per URL.
    let network_on = network_arg.unwrap_or(settings.network);
    let t = &settings.network_thresholds;
    let poor_network = network_on
        && (req
            .save_data
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"on"))
            || req.ect.and_then(Ect::parse).is_some_and(|e| e <= t.ect)
            || req
                .downlink
                .and_then(parse_number::<f32>)
                .is_some_and(|d| d.is_finite() && d >= 0.0 && d <= t.downlink_mbps)
            || req
                .rtt
                .and_then(parse_number::<u32>)
                .is_some_and(|r| r >= t.rtt_ms));

    // DPR: the URL value, else the configured header, else the client hints.
    let dpr_on = match dpr_arg {
        Some(DprArg::Off) => false,
        Some(DprArg::On(_)) => true,
        None => settings.dpr,
    };
    let url_dpr = match dpr_arg {
        Some(DprArg::On(Some(d))) => Some(d),
        _ => None,
    };
    let hinted_dpr = || {
        req.dpr_header
            .and_then(parse_dpr)
            .or_else(|| req.ch_dpr.and_then(parse_dpr))
    };
    let size = if !dpr_on || poor_network {
        SizeRequest::Css {
            width: wid,
            height: hei,
            dpr: 1.0,
        }
    } else {
        let physical_width = req
            .ch_width
            .and_then(parse_number::<u32>)
            .filter(|&w| w > 0);
        match (wid, hei, url_dpr, physical_width) {
            // A width hint already includes the DPR: use it as it is, unless
            // the URL asks for a size or a DPR itself.
            (None, None, None, Some(width)) => SizeRequest::Physical { width },
            _ => {
                let dpr = url_dpr.or_else(hinted_dpr).unwrap_or(1.0);
                SizeRequest::Css {
                    width: wid,
                    height: hei,
                    dpr: normalise_dpr(dpr.min(settings.max_dpr)),
                }
            }
        }
    };

    let step = if poor_network {
        settings.network_quality_step
    } else {
        0
    };
    let accept = req.accept.join(&b", "[..]);
    let client = negotiate::client_formats(&accept, req.user_agent);
    let targets = negotiate::preference(&client, &settings.formats);
    let private = targets
        .iter()
        .any(|f| negotiate::uses_user_agent(&client, Some(*f)));
    // The URL's quality replaces the configured ones, mapped onto each
    // encoder's scale; a poor network lowers either, and lowers the bar
    // the guard sets by as many points.
    let quality = qlt_arg.map_or(settings.quality, Qualities::from_qlt);
    let guard = Guard {
        threshold: settings
            .guard
            .threshold
            .map(|t| (t - f64::from(step)).max(0.0)),
        ..settings.guard
    };
    let plan = Plan {
        targets,
        quality: quality.lowered(step),
        size,
        caps: settings.caps,
        tuning: settings.tuning,
        guard,
    };

    let mut vary = vec!["Accept".to_string()];
    if private {
        vary.push("User-Agent".to_string());
    }
    if dpr_on && url_dpr.is_none() {
        // The hints (or the configured header) decide the DPR. The URL's
        // own arguments are part of the URL, and so of any cache key: only
        // request headers go into Vary.
        if let Some(h) = &settings.dpr_header {
            vary.push(h.clone());
        }
        vary.extend(["Sec-CH-DPR", "DPR", "Sec-CH-Width", "Width"].map(String::from));
    }
    if network_on {
        vary.extend(["Save-Data", "ECT", "Downlink", "RTT"].map(String::from));
    }

    let decision = if plan.targets.is_empty() && plan.size.is_source() && plan.caps.is_none() {
        Decision::Original
    } else {
        Decision::Transcode(plan)
    };
    Negotiation {
        decision,
        vary,
        ignored_args: ignored,
        poor_network,
        private,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::Format;
    use crate::sizing::OutputCaps;

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

    fn facts(args: &'static str, webp: bool) -> RequestFacts<'static> {
        RequestFacts {
            args: args.as_bytes(),
            accept: if webp {
                vec![b"image/webp,*/*"]
            } else {
                vec![b"*/*"]
            },
            ..RequestFacts::default()
        }
    }

    fn plan_of(n: &Negotiation) -> &Plan {
        match &n.decision {
            Decision::Transcode(plan) => plan,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    fn dpr_on() -> Settings {
        Settings {
            dpr: true,
            ..Settings::default()
        }
    }

    fn network_on() -> Settings {
        Settings {
            network: true,
            dpr: true,
            ..Settings::default()
        }
    }

    #[test]
    fn format_and_size_from_url() {
        let s = Settings::default();
        // WebP client, nothing else: WebP at the source size.
        let n = decide(&facts("", true), &s);
        assert_eq!(plan_of(&n).variant(), "webp-q100-src");
        assert_eq!(n.vary, ["Accept"]);
        // No WebP, nothing asked: nothing to do, no buffering.
        assert_eq!(decide(&facts("", false), &s).decision, Decision::Original);
        // No WebP, but a size: the source format, resized.
        let n = decide(&facts("hei=500", false), &s);
        assert!(plan_of(&n).targets.is_empty());
        assert_eq!(plan_of(&n).variant(), "src-q100-h500");
        // Both sides; DPR off by default, so no DPR.
        let n = decide(&facts("wid=400&hei=300", true), &s);
        assert_eq!(plan_of(&n).variant(), "webp-q100-w400-h300");
        // bfc=off wins over everything.
        assert_eq!(
            decide(&facts("wid=400&bfc=off", true), &s).decision,
            Decision::Off
        );
        // Caps configured: even a plain request may need resizing.
        let capped = Settings {
            caps: OutputCaps {
                max_width: Some(1000),
                ..OutputCaps::NONE
            },
            ..Settings::default()
        };
        assert!(matches!(
            decide(&facts("", false), &capped).decision,
            Decision::Transcode(_)
        ));
    }

    #[test]
    fn device_pixel_ratio() {
        let hint = |dpr: &'static str, args: &'static str| RequestFacts {
            ch_dpr: Some(dpr.as_bytes()),
            ..facts(args, true)
        };
        // DPR off in config: hints are ignored and not in Vary...
        let n = decide(&hint("2", "wid=400"), &Settings::default());
        assert_eq!(plan_of(&n).size.to_string(), "w400");
        assert_eq!(n.vary, ["Accept"]);
        // ... but dpr=on,<value> in the URL works anyway, and varies on nothing more.
        let n = decide(&hint("2", "wid=400&dpr=on,1.5"), &Settings::default());
        assert_eq!(plan_of(&n).size.to_string(), "w400-dpr1.5");
        let n = decide(&hint("2", "wid=400&dpr=on%2C1.5"), &Settings::default());
        assert_eq!(plan_of(&n).size.to_string(), "w400-dpr1.5");
        assert_eq!(n.vary, ["Accept"]);
        // dpr=on without a value: the hints decide, and Vary says so.
        let n = decide(&hint("2", "wid=400&dpr=on"), &Settings::default());
        assert_eq!(plan_of(&n).size.to_string(), "w400-dpr2");
        assert!(n.vary.contains(&"Sec-CH-DPR".to_string()));
        // DPR on in config.
        let n = decide(&hint("2", "wid=400"), &dpr_on());
        assert_eq!(plan_of(&n).size.to_string(), "w400-dpr2");
        assert_eq!(
            n.vary,
            ["Accept", "Sec-CH-DPR", "DPR", "Sec-CH-Width", "Width"]
        );
        // dpr=off in the URL.
        let n = decide(&hint("2", "wid=400&dpr=off"), &dpr_on());
        assert_eq!(plan_of(&n).size.to_string(), "w400");
        // Capped by smart_imaging_dpr_max, normalised to 2 decimals.
        assert_eq!(
            plan_of(&decide(&hint("4", ""), &dpr_on())).size.to_string(),
            "dpr3"
        );
        assert_eq!(
            plan_of(&decide(&hint("2.6251", ""), &dpr_on()))
                .size
                .to_string(),
            "dpr2.63"
        );
        // The configured header comes before the client hints.
        let s = Settings {
            dpr_header: Some("X-Device-Pixel-Ratio".into()),
            ..dpr_on()
        };
        let f = RequestFacts {
            dpr_header: Some(b"1.5"),
            ..hint("2", "wid=400")
        };
        let n = decide(&f, &s);
        assert_eq!(plan_of(&n).size.to_string(), "w400-dpr1.5");
        assert_eq!(n.vary[1], "X-Device-Pixel-Ratio");
        // A physical width hint is used as it is when the URL asks no size.
        let f = RequestFacts {
            ch_width: Some(b"828"),
            ..hint("2", "")
        };
        assert_eq!(
            plan_of(&decide(&f, &dpr_on())).size,
            SizeRequest::Physical { width: 828 }
        );
        let f = RequestFacts {
            ch_width: Some(b"828"),
            ..hint("2", "wid=400")
        };
        assert_eq!(
            plan_of(&decide(&f, &dpr_on())).size.to_string(),
            "w400-dpr2"
        );
        // Unusable hints mean DPR 1.
        for bad in ["0", "-1", "abc", "NaN", "inf", ""] {
            assert_eq!(
                plan_of(&decide(&hint(bad, "wid=400"), &dpr_on()))
                    .size
                    .to_string(),
                "w400"
            );
        }
    }

    #[test]
    fn network() {
        let poor = |f: RequestFacts<'static>, s: &Settings| decide(&f, s);
        let base = || RequestFacts {
            ch_dpr: Some(b"2"),
            ..facts("wid=400", true)
        };
        // A good network: DPR applies, full quality; network hints in Vary.
        let n = poor(
            RequestFacts {
                ect: Some(b"4g"),
                ..base()
            },
            &network_on(),
        );
        assert!(!n.poor_network);
        assert_eq!(plan_of(&n).variant(), "webp-q100-w400-dpr2");
        assert!(n
            .vary
            .ends_with(&["Save-Data", "ECT", "Downlink", "RTT"].map(String::from)));
        // Each signal of a poor network: quality down by the step, DPR off.
        for f in [
            RequestFacts {
                save_data: Some(b"on"),
                ..base()
            },
            RequestFacts {
                ect: Some(b"3g"),
                ..base()
            },
            RequestFacts {
                ect: Some(b"slow-2g"),
                ..base()
            },
            RequestFacts {
                downlink: Some(b"0.5"),
                ..base()
            },
            RequestFacts {
                rtt: Some(b"300"),
                ..base()
            },
        ] {
            let n = poor(f.clone(), &network_on());
            assert!(n.poor_network, "{f:?}");
            assert_eq!(plan_of(&n).variant(), "webp-q85-w400", "{f:?}");
        }
        // Not poor: fast values, junk values.
        for f in [
            RequestFacts {
                downlink: Some(b"10"),
                ..base()
            },
            RequestFacts {
                rtt: Some(b"50"),
                ..base()
            },
            RequestFacts {
                ect: Some(b"5g"),
                ..base()
            },
            RequestFacts {
                save_data: Some(b"off"),
                ..base()
            },
        ] {
            assert!(!poor(f.clone(), &network_on()).poor_network, "{f:?}");
        }
        // network=off in the URL opts out; off in config: hints ignored.
        let f = RequestFacts {
            save_data: Some(b"on"),
            ..base()
        };
        let n = decide(
            &RequestFacts {
                args: b"wid=400&network=off",
                ..f.clone()
            },
            &network_on(),
        );
        assert!(!n.poor_network);
        assert!(!n.vary.contains(&"Save-Data".to_string()));
        assert!(!decide(&f, &dpr_on()).poor_network);
        // The quality never reaches 0.
        let low = Settings {
            quality: Qualities::default_ceilings().with(Format::WebP, 5),
            ..network_on()
        };
        assert_eq!(plan_of(&decide(&f, &low)).quality.get(Format::WebP), 1);
    }

    #[test]
    fn malformed_arguments_are_ignored() {
        let n = decide(
            &facts("wid=abc&hei=0&dpr=on,-1&network=sometimes&wid=", true),
            &dpr_on(),
        );
        assert_eq!(plan_of(&n).variant(), "webp-q100-src");
        assert_eq!(
            n.ignored_args,
            ["wid=abc", "hei=0", "dpr=on,-1", "network=sometimes"]
        );
        let n = decide(&facts("dpr=maybe&wid=99999999", true), &dpr_on());
        assert_eq!(n.ignored_args, ["wid=99999999", "dpr=maybe"]);
    }

    #[test]
    fn formats_by_client() {
        let chrome = RequestFacts {
            accept: vec![b"image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"],
            user_agent: Some(b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
            ..RequestFacts::default()
        };
        let n = decide(&chrome, &Settings::default());
        assert_eq!(plan_of(&n).targets, [Format::Avif, Format::WebP]);
        assert_eq!(plan_of(&n).variant(), "avif+webp-q90-src");
        assert!(!n.private);
        assert_eq!(n.vary, ["Accept"]);
        // AVIF off in the configuration.
        let webp_only = Settings {
            formats: vec![Format::WebP],
            ..Settings::default()
        };
        assert_eq!(
            plan_of(&decide(&chrome, &webp_only)).variant(),
            "webp-q100-src"
        );
        // Old Safari: JPEG 2000, decided by User-Agent: Vary on it, and
        // private (no shared cache keying on Accept alone may store it).
        let safari13 = RequestFacts {
            accept: vec![b"image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"],
            user_agent: Some(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15"),
            ..RequestFacts::default()
        };
        let n = decide(&safari13, &Settings::default());
        assert_eq!(plan_of(&n).targets, [Format::Jp2]);
        assert!(n.private);
        assert_eq!(n.vary, ["Accept", "User-Agent"]);
        // Without JPEG 2000 in the configuration: nothing to do.
        let n = decide(&safari13, &webp_only);
        assert_eq!(n.decision, Decision::Original);
        assert!(!n.private);
        // Qualities per format, lowered together on a poor network.
        let poor = RequestFacts {
            save_data: Some(b"on"),
            ..chrome.clone()
        };
        let q = plan_of(&decide(&poor, &network_on())).quality;
        assert_eq!(
            (
                q.get(Format::Avif),
                q.get(Format::WebP),
                q.get(Format::Jpeg)
            ),
            (75, 85, 85)
        );
    }

    #[test]
    fn qlt_sets_the_qualities_and_the_network_lowers_the_guard() {
        let s = Settings::default();
        let q = plan_of(&decide(&facts("qlt=60", true), &s)).quality;
        assert_eq!(q, Qualities::from_qlt(60));
        assert_eq!(q.get(Format::Jpeg), 60);
        // Dynamic Media's chroma flag, escaped or not, is accepted.
        for args in ["qlt=60,1", "qlt=60%2C0", "qlt=060"] {
            let n = decide(&facts(args, true), &s);
            assert_eq!(plan_of(&n).quality, q, "{args}");
            assert!(n.ignored_args.is_empty(), "{args}");
        }
        // Malformed or out of range: ignored (the configured qualities),
        // and said so.
        for args in ["qlt=101", "qlt=-1", "qlt=high", "qlt=", "qlt=,1"] {
            let n = decide(&facts(args, true), &s);
            assert_eq!(plan_of(&n).quality, s.quality, "{args}");
            assert_eq!(n.ignored_args.len(), 1, "{args}");
        }
        // The URL's quality names the variant.
        assert_eq!(
            plan_of(&decide(&facts("qlt=60", true), &s)).variant(),
            format!("webp-q{}-src", Qualities::from_qlt(60).get(Format::WebP))
        );
        // A poor network lowers the qualities and the guard's bar by the
        // step; the guard stays off when it is off.
        let poor = RequestFacts {
            save_data: Some(b"on"),
            ..facts("qlt=60", true)
        };
        let plan = plan_of(&decide(&poor, &network_on())).clone();
        assert_eq!(plan.quality, Qualities::from_qlt(60).lowered(15));
        assert_eq!(plan.guard.threshold, Some(65.0));
        let no_guard = Settings {
            guard: Guard::OFF,
            ..network_on()
        };
        assert_eq!(plan_of(&decide(&poor, &no_guard)).guard, Guard::OFF);
        let good = plan_of(&decide(&facts("", true), &network_on())).clone();
        assert_eq!(good.guard, Guard::DEFAULT);
    }
}
