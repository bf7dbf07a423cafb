//! Encoder study: what each encoder setting and quality-search strategy
//! saves on the corpus at SSIMULACRA 2 >= 80, and what it costs.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example encoder_study -- SECTION [options]
//! ```
//!
//! Sections (run them separately; each stays within minutes on 2 cores):
//!
//! - `features`: [`classify::features`] per image and its cost.
//! - `webp`: lossy WebP searched (q 50..=100, 6 encodes) at method 4 and
//!   6, and "search at 4, one final encode at 6, re-scored"; for alpha
//!   images also lossy alpha (tied to the quality, or fixed at 70, 50).
//!   With `WEBP_LO=20` in the environment: only method 4 searched over
//!   20..=100 instead.
//! - `webp-ll`: lossless WebP at `-z` presets 0-6, near-lossless 80/60/40
//!   at `-z 2` and `-z 5`, each encoded once and scored (graphic and
//!   alpha images by default).
//! - `avif`: AVIF searched (q 20..=90, 6 encodes) at speed 9, 7 and 6;
//!   "search at 9, then at 6": one final encode at the quality found
//!   (`s9>s6`), at 3 below it then at it (`s9>s6d3`), at 4, 2, 0 below
//!   (`s9>s6d420`), or a 3-encode search in the 8 below (`s9>s6n`);
//!   4:4:4 too for graphic and alpha images, lossless alpha too for alpha
//!   images.
//! - `avif-ll`: lossless AVIF at speed 9 and 6.
//! - `verify`: lossless AVIF and WebP decoded by `avifdec` and `dwebp`
//!   must give back the visible pixels exactly.
//!
//! Options: `--max-mp 4.2` (skip larger images), `--kinds photo,graphic,alpha`,
//! `--only NAME` (substring), `--every N` (every Nth image), `--skip a,b`
//! (variants whose name contains one of these). Another corpus:
//! `SMART_IMAGING_CORPUS=dir` (its `manifest.csv` gives the kinds;
//! `ALPHA_FROM_PIXELS=1` turns "graphic" images with alpha into "alpha").
//!
//! Output: one CSV line per (image, variant) on stdout:
//! `name,kind,mp,orig_bytes,variant,bytes,quality,score,encodes,enc_ms,total_ms,extra`
//! (`bytes` empty when nothing passed; `enc_ms` is the encoder's CPU time
//! for all encodes of the variant, `total_ms` includes decoding and
//! scoring; both CPU time of the one thread that ran them, in ms);
//! progress on stderr.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;

use smart_imaging_core::classify;
use smart_imaging_core::codecs::{self, avif, webp, Image};
use smart_imaging_core::guard::{self, Found, Reference};
use smart_imaging_core::{KeepReason, Limits};

const THRESHOLD: f64 = 80.0;
const WEBP_RANGE: (u8, u8) = (50, 100);
const AVIF_RANGE: (u8, u8) = (20, 90);
const MAX_ENCODES: usize = 6;

/// One variant's outcome on one image.
struct Rec {
    variant: String,
    bytes: Option<usize>,
    quality: Option<u8>,
    score: f64,
    encodes: usize,
    enc_ms: f64,
    total_ms: f64,
    extra: String,
}

struct Ctx<'a> {
    img: &'a Image,
    reference: &'a Reference<'a>,
}

type Dec = fn(&[u8]) -> Result<Image, KeepReason>;

fn webp_dec(b: &[u8]) -> Result<Image, KeepReason> {
    webp::decode(b).map_err(KeepReason::Decode)
}

fn avif_dec(b: &[u8]) -> Result<Image, KeepReason> {
    avif::decode(b).map_err(KeepReason::Decode)
}

/// Variants (name substrings) not to run: `--skip a,b`.
static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn skipped(variant: &str) -> bool {
    SKIP.get()
        .is_some_and(|s| s.iter().any(|k| variant.contains(k.as_str())))
}

impl Ctx<'_> {
    /// `smallest_passing` with encode CPU time measured.
    fn search(
        &self,
        variant: &str,
        range: (u8, u8),
        encode: impl Fn(u8) -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> (Rec, Option<Found>) {
        self.search_n(variant, range, MAX_ENCODES, encode, decode)
    }

    /// [`Ctx::search`] with at most `max_encodes` encodes.
    fn search_n(
        &self,
        variant: &str,
        range: (u8, u8),
        max_encodes: usize,
        encode: impl Fn(u8) -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> (Rec, Option<Found>) {
        if skipped(variant) {
            let rec = Rec {
                variant: "skipped".into(),
                bytes: None,
                quality: None,
                score: f64::NAN,
                encodes: 0,
                enc_ms: 0.0,
                total_ms: 0.0,
                extra: String::new(),
            };
            return (rec, None);
        }
        let enc_ms = std::cell::Cell::new(0.0);
        let start = common::cpu_ms();
        let found = guard::smallest_passing_against(
            |q| {
                let t = common::cpu_ms();
                let r = encode(q);
                enc_ms.set(enc_ms.get() + common::cpu_ms() - t);
                r
            },
            decode,
            self.reference,
            THRESHOLD,
            range,
            max_encodes,
        )
        .unwrap_or_else(|e| panic!("{variant}: {e:?}"));
        let total_ms = common::cpu_ms() - start;
        let rec = Rec {
            variant: variant.into(),
            bytes: found.as_ref().map(|f| f.bytes.len()),
            quality: found.as_ref().map(|f| f.quality),
            score: found.as_ref().map_or(f64::NAN, |f| f.score),
            encodes: found.as_ref().map_or(max_encodes, |f| f.encodes),
            enc_ms: enc_ms.get(),
            total_ms,
            extra: String::new(),
        };
        (rec, found)
    }

    /// One encode, scored (lossless and near-lossless).
    fn once(
        &self,
        variant: &str,
        encode: impl Fn() -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> (Rec, Vec<u8>, f64) {
        let start = common::cpu_ms();
        let bytes = encode().unwrap_or_else(|e| panic!("{variant}: {e:?}"));
        let enc_ms = common::cpu_ms() - start;
        let score = self.reference.score(&decode(&bytes).unwrap()).unwrap();
        let total_ms = common::cpu_ms() - start;
        let rec = Rec {
            variant: variant.into(),
            bytes: (score >= THRESHOLD).then_some(bytes.len()),
            quality: None,
            score,
            encodes: 1,
            enc_ms,
            total_ms,
            extra: format!("raw_bytes={}", bytes.len()),
        };
        (rec, bytes, score)
    }

    /// "Search with a fast setting, then one final encode with a slow
    /// one at the found quality, re-scored": keeps the final encode if it
    /// passes and is smaller, else the searched one.
    fn refine(
        &self,
        variant: &str,
        searched: &Rec,
        found: &Option<Found>,
        encode: impl Fn(u8) -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> Rec {
        let Some(found) = found else {
            return Rec {
                variant: variant.into(),
                bytes: None,
                quality: None,
                score: f64::NAN,
                encodes: searched.encodes,
                enc_ms: searched.enc_ms,
                total_ms: searched.total_ms,
                extra: "final=none".into(),
            };
        };
        let start = common::cpu_ms();
        let bytes = encode(found.quality).unwrap();
        let enc = common::cpu_ms() - start;
        let score = self.reference.score(&decode(&bytes).unwrap()).unwrap();
        let total = common::cpu_ms() - start;
        let pass = score >= THRESHOLD;
        let better = pass && bytes.len() < found.bytes.len();
        Rec {
            variant: variant.into(),
            bytes: Some(if better {
                bytes.len()
            } else {
                found.bytes.len()
            }),
            quality: Some(found.quality),
            score: if better { score } else { found.score },
            encodes: searched.encodes + 1,
            enc_ms: searched.enc_ms + enc,
            total_ms: searched.total_ms + total,
            extra: format!(
                "final_pass={} final_bytes={} final_score={score:.2}",
                u8::from(pass),
                bytes.len()
            ),
        }
    }
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    /// "Search with a fast setting, then a short search with the slow one
    /// just below the fast one's answer": `encodes` probes of `encode`
    /// in `(q - below, q)`; the searched result if nothing there passes
    /// or is smaller.
    fn narrow(
        &self,
        variant: &str,
        searched: &Rec,
        found: &Option<Found>,
        below: u8,
        encodes: usize,
        encode: impl Fn(u8) -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> Rec {
        let Some(found) = found else {
            return Rec {
                variant: variant.into(),
                bytes: None,
                quality: None,
                score: f64::NAN,
                encodes: searched.encodes,
                enc_ms: searched.enc_ms,
                total_ms: searched.total_ms,
                extra: "final=none".into(),
            };
        };
        let q = found.quality;
        let (rec, f) = self.search_n(
            variant,
            (q.saturating_sub(below), q),
            encodes,
            encode,
            decode,
        );
        let better = f.as_ref().filter(|f| f.bytes.len() < found.bytes.len());
        Rec {
            variant: variant.into(),
            bytes: Some(better.map_or(found.bytes.len(), |f| f.bytes.len())),
            quality: Some(better.map_or(found.quality, |f| f.quality)),
            score: better.map_or(found.score, |f| f.score),
            encodes: searched.encodes + rec.encodes,
            enc_ms: searched.enc_ms + rec.enc_ms,
            total_ms: searched.total_ms + rec.total_ms,
            extra: format!("narrow_found={}", u8::from(f.is_some())),
        }
    }

    /// "Search with a fast setting, then the slow one at `step` below the
    /// fast one's answer, and if that fails at the answer itself".
    fn step_down(
        &self,
        variant: &str,
        searched: &Rec,
        found: &Option<Found>,
        steps: &[u8],
        encode: impl Fn(u8) -> Result<Vec<u8>, KeepReason>,
        decode: Dec,
    ) -> Rec {
        let Some(found) = found else {
            return self.narrow(variant, searched, found, 0, 0, encode, decode);
        };
        let (mut enc_ms, mut total_ms, mut encodes) =
            (searched.enc_ms, searched.total_ms, searched.encodes);
        let mut best = (found.bytes.len(), found.quality, found.score);
        let mut tried = Vec::new();
        for q in steps.iter().map(|&s| found.quality.saturating_sub(s)) {
            let start = common::cpu_ms();
            let bytes = encode(q).unwrap();
            enc_ms += common::cpu_ms() - start;
            let score = self.reference.score(&decode(&bytes).unwrap()).unwrap();
            total_ms += common::cpu_ms() - start;
            encodes += 1;
            let pass = score >= THRESHOLD;
            tried.push(format!("q{q}:{}", u8::from(pass)));
            if pass {
                if bytes.len() < best.0 {
                    best = (bytes.len(), q, score);
                }
                break;
            }
        }
        Rec {
            variant: variant.into(),
            bytes: Some(best.0),
            quality: Some(best.1),
            score: best.2,
            encodes,
            enc_ms,
            total_ms,
            extra: tried.join(" "),
        }
    }
}

fn webp_section(cx: &Ctx<'_>, kind: &str) -> Vec<Rec> {
    let img = cx.img;
    let mut out = Vec::new();
    let lossy = |method: u8, alpha: Option<Option<u8>>| {
        move |q: u8| {
            let alpha_quality = match alpha {
                None => None,
                Some(None) => Some(q),
                Some(Some(a)) => Some(a),
            };
            webp::encode_with(
                img,
                &webp::Options {
                    method,
                    alpha_quality,
                    ..webp::Options::new(q)
                },
            )
        }
    };
    if let Some(lo) = std::env::var("WEBP_LO")
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
    {
        // Only the lower-range variants (for graphics, alpha).
        let (m4, _) = cx.search(
            &format!("webp_m4_lo{lo}"),
            (lo, 100),
            lossy(4, None),
            webp_dec,
        );
        out.push(m4);
        if kind == "alpha" {
            let (tied, _) = cx.search(
                &format!("webp_m4_aq=q_lo{lo}"),
                (lo, 100),
                lossy(4, Some(None)),
                webp_dec,
            );
            out.push(tied);
        }
        return out;
    }
    let (m4, f4) = cx.search("webp_m4", WEBP_RANGE, lossy(4, None), webp_dec);
    let (m6, _) = cx.search("webp_m6", WEBP_RANGE, lossy(6, None), webp_dec);
    let refined = cx.refine("webp_m4>m6", &m4, &f4, lossy(6, None), webp_dec);
    out.extend([m4, m6, refined]);
    if kind == "alpha" {
        let (tied, ft) = cx.search("webp_m4_aq=q", WEBP_RANGE, lossy(4, Some(None)), webp_dec);
        let refined = cx.refine(
            "webp_m4>m6_aq=q",
            &tied,
            &ft,
            lossy(6, Some(None)),
            webp_dec,
        );
        let (fixed, _) = cx.search(
            "webp_m4_aq70",
            WEBP_RANGE,
            lossy(4, Some(Some(70))),
            webp_dec,
        );
        let (fixed50, _) = cx.search(
            "webp_m4_aq50",
            WEBP_RANGE,
            lossy(4, Some(Some(50))),
            webp_dec,
        );
        out.extend([tied, refined, fixed, fixed50]);
    }
    out
}

fn webp_ll_section(cx: &Ctx<'_>) -> Vec<Rec> {
    let img = cx.img;
    let mut out = Vec::new();
    for z in [0u8, 1, 2, 3, 5, 6] {
        let (rec, _, _) = cx.once(
            &format!("webp_ll_z{z}"),
            || webp::encode_with(img, &webp::Options::lossless_level(z)),
            webp_dec,
        );
        out.push(rec);
    }
    for z in [2u8, 5] {
        for nl in [80u8, 60, 40] {
            let (rec, _, _) = cx.once(
                &format!("webp_nl{nl}_z{z}"),
                || {
                    webp::encode_with(
                        img,
                        &webp::Options {
                            near_lossless: Some(nl),
                            ..webp::Options::lossless_level(z)
                        },
                    )
                },
                webp_dec,
            );
            out.push(rec);
        }
    }
    out
}

fn avif_section(cx: &Ctx<'_>, kind: &str) -> Vec<Rec> {
    let img = cx.img;
    let mut out = Vec::new();
    let lossy = |speed: u8, chroma: avif::Chroma, lossless_alpha: bool| {
        move |q: u8| {
            let mut o = avif::Options {
                chroma,
                ..avif::Options::new(q, speed)
            };
            if lossless_alpha {
                o.alpha_quality = None;
            }
            avif::encode_with(img, &o)
        }
    };
    let mut chromas = vec![("420", avif::Chroma::Yuv420)];
    if kind != "photo" {
        chromas.push(("444", avif::Chroma::Yuv444));
    }
    for (name, chroma) in chromas {
        let (s9, f9) = cx.search(
            &format!("avif_s9_{name}"),
            AVIF_RANGE,
            lossy(9, chroma, false),
            avif_dec,
        );
        let (s6, _) = cx.search(
            &format!("avif_s6_{name}"),
            AVIF_RANGE,
            lossy(6, chroma, false),
            avif_dec,
        );
        let refined = cx.refine(
            &format!("avif_s9>s6_{name}"),
            &s9,
            &f9,
            lossy(6, chroma, false),
            avif_dec,
        );
        let narrow = cx.narrow(
            &format!("avif_s9>s6n_{name}"),
            &s9,
            &f9,
            8,
            3,
            lossy(6, chroma, false),
            avif_dec,
        );
        let step = cx.step_down(
            &format!("avif_s9>s6d3_{name}"),
            &s9,
            &f9,
            &[3, 0],
            lossy(6, chroma, false),
            avif_dec,
        );
        let step420 = cx.step_down(
            &format!("avif_s9>s6d420_{name}"),
            &s9,
            &f9,
            &[4, 2, 0],
            lossy(6, chroma, false),
            avif_dec,
        );
        let (s7, _) = cx.search(
            &format!("avif_s7_{name}"),
            AVIF_RANGE,
            lossy(7, chroma, false),
            avif_dec,
        );
        out.extend([s9, s6, refined, narrow, step, step420, s7]);
        if kind == "alpha" {
            let (la, _) = cx.search(
                &format!("avif_s9_{name}_alossless"),
                AVIF_RANGE,
                lossy(9, chroma, true),
                avif_dec,
            );
            out.push(la);
        }
    }
    out
}

fn avif_ll_section(cx: &Ctx<'_>) -> Vec<Rec> {
    let img = cx.img;
    [9u8, 6]
        .into_iter()
        .map(|speed| {
            cx.once(
                &format!("avif_ll_s{speed}"),
                || avif::encode_with(img, &avif::Options::lossless(speed)),
                avif_dec,
            )
            .0
        })
        .collect()
}

/// Lossless round trips through the independent command-line decoders
/// (`avifdec`, `dwebp`): the visible pixels must come back exactly.
fn verify_section(img: &Image, name: &str) -> Vec<Rec> {
    // One directory per image: the two worker threads must not share it.
    let dir = std::env::temp_dir().join(format!("encoder_study_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let visible = |i: &Image| -> Vec<u8> {
        if !i.has_alpha {
            return i.pixels.clone();
        }
        i.pixels
            .chunks_exact(4)
            .flat_map(|p| {
                if p[3] == 0 {
                    [0; 4]
                } else {
                    [p[0], p[1], p[2], p[3]]
                }
            })
            .collect()
    };
    let mut out = Vec::new();
    let cases: [(&str, Vec<u8>, &str, &[&str]); 2] = [
        (
            "avif_ll_s9",
            avif::encode_with(img, &avif::Options::lossless(9)).unwrap(),
            "avifdec",
            &["--depth", "8"],
        ),
        (
            "webp_ll_z6",
            webp::encode_with(img, &webp::Options::lossless_level(6)).unwrap(),
            "dwebp",
            &["-o"],
        ),
    ];
    for (variant, bytes, tool, args) in cases {
        let input = dir.join(format!("{name}.{variant}"));
        let output = dir.join(format!("{name}.{variant}.png"));
        std::fs::write(&input, &bytes).unwrap();
        let mut cmd = std::process::Command::new(tool);
        if tool == "dwebp" {
            cmd.arg(&input).args(args).arg(&output);
        } else {
            cmd.args(args).arg(&input).arg(&output);
        }
        let ok = cmd.output().map(|o| o.status.success()).unwrap_or(false);
        let exact = ok
            && codecs::decode(&std::fs::read(&output).unwrap(), &Limits::default())
                .map(|back| {
                    (back.width, back.height) == (img.width, img.height)
                        && visible(&back) == visible(img)
                })
                .unwrap_or(false);
        out.push(Rec {
            variant: format!("verify_{variant}"),
            bytes: Some(bytes.len()),
            quality: None,
            score: f64::NAN,
            encodes: 1,
            enc_ms: 0.0,
            total_ms: 0.0,
            extra: format!("{tool}_ok={} exact={}", u8::from(ok), u8::from(exact)),
        });
    }
    std::fs::remove_dir_all(&dir).ok();
    out
}

fn features_section(img: &Image) -> Vec<Rec> {
    let start = common::cpu_ms();
    let f = classify::features(img);
    let ms = common::cpu_ms() - start;
    vec![Rec {
        variant: "features".into(),
        bytes: None,
        quality: None,
        score: f64::NAN,
        encodes: 0,
        enc_ms: ms,
        total_ms: ms,
        extra: format!(
            "colours={} flat={:.4} graphic={}",
            f.colours,
            f.flat,
            u8::from(f.is_graphic())
        ),
    }]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let section = args.first().cloned().unwrap_or_else(|| {
        eprintln!("usage: encoder_study features|webp|webp-ll|avif|avif-ll [--max-mp X] [--kinds a,b] [--only NAME] [--every N]");
        std::process::exit(2)
    });
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let max_mp: f64 = opt("--max-mp").map_or(4.2, |v| v.parse().unwrap());
    let kinds: Vec<String> = opt("--kinds").map_or_else(
        || match section.as_str() {
            "webp-ll" | "avif-ll" => vec!["graphic".into(), "alpha".into()],
            _ => vec!["photo".into(), "graphic".into(), "alpha".into()],
        },
        |v| v.split(',').map(str::to_owned).collect(),
    );
    let only = opt("--only");
    SKIP.set(opt("--skip").map_or_else(Vec::new, |v| v.split(',').map(str::to_owned).collect()))
        .unwrap();
    let every: usize = opt("--every").map_or(1, |v| v.parse().unwrap());

    let dir = common::corpus_dir().expect("no corpus (set SMART_IMAGING_CORPUS)");
    println!("name,kind,mp,orig_bytes,variant,bytes,quality,score,encodes,enc_ms,total_ms,extra");
    let started = std::time::Instant::now();
    common::map_corpus(&dir, |path: &Path, index, kind| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !kinds.contains(&kind)
            || index % every != 0
            || only.as_ref().is_some_and(|o| !name.contains(o.as_str()))
        {
            return;
        }
        let bytes = std::fs::read(path).unwrap();
        let img = codecs::decode(&bytes, &Limits::default()).unwrap();
        // A corpus without alpha/graphic distinction in its manifest.
        let kind = if kind == "graphic"
            && img.has_alpha
            && std::env::var_os("ALPHA_FROM_PIXELS").is_some()
        {
            "alpha".to_owned()
        } else {
            kind
        };
        let mp = f64::from(img.width) * f64::from(img.height) / 1e6;
        if mp > max_mp {
            eprintln!("skip {name}: {mp:.1} MP");
            return;
        }
        let t = std::time::Instant::now();
        let reference = Reference::sampled(&img, guard::DEFAULT_MAX_PIXELS).unwrap();
        let cx = Ctx {
            img: &img,
            reference: &reference,
        };
        let recs = match section.as_str() {
            "features" => features_section(&img),
            "verify" => verify_section(&img, &name),
            "webp" => webp_section(&cx, &kind),
            "webp-ll" => webp_ll_section(&cx),
            "avif" => avif_section(&cx, &kind),
            "avif-ll" => avif_ll_section(&cx),
            s => panic!("unknown section {s}"),
        };
        let mut lines = String::new();
        for r in recs.into_iter().filter(|r| r.variant != "skipped") {
            lines += &format!(
                "{name},{kind},{mp:.3},{},{},{},{},{:.2},{},{:.1},{:.1},{}\n",
                bytes.len(),
                r.variant,
                r.bytes.map_or(String::new(), |b| b.to_string()),
                r.quality.map_or(String::new(), |q| q.to_string()),
                r.score,
                r.encodes,
                r.enc_ms,
                r.total_ms,
                r.extra
            );
        }
        print!("{lines}");
        eprintln!(
            "{name} ({kind}, {mp:.2} MP): {:.1} s [{:.0} s elapsed]",
            t.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    });
}
