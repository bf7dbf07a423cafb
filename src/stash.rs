//! The stash: results of conversions no request waited for, kept so the
//! next requests for the same image and variant get them instead of
//! converting again: those whose request stopped waiting
//! (`smart_imaging_timeout`), and those `smart_imaging_background on` runs
//! without a request.
//!
//! One file per result in the `smart_imaging_stash_path` directory, shared
//! by every worker of the server. Only pool threads touch it (never the
//! event loop): a job looks its key up before converting ([`get`]), and a
//! result is written by a task of its own ([`put`]).
//!
//! A result is the converted image, or the reason the original is kept
//! when that reason holds every time (`not-smaller`, `guard`, ...: every
//! [`KeepReason`] but a caught panic, see [`keeps`]), so that a background
//! conversion that ends in the original is not run again at every request.
//!
//! - The key is the SHA-256 of the input bytes with everything else that
//!   decides the output: the plan (its variant name and every setting, as
//!   its `Debug` text), the limits and the module's version. The file's name
//!   is the SHA-256 of that text; the file holds the text itself, and a
//!   lookup serves it only if the text and the input's length match, so a
//!   clash of names can never serve another image.
//! - An entry serves every request for its key until it is older than the
//!   TTL (counted from when it was written), then never again: readers
//!   only open and read it. Writing sweeps expired and stale files, and the
//!   oldest entries beyond `max_size`.
//! - Files are written to a temporary name and renamed into place, so a
//!   reader never sees half an entry; a reader that opened an entry keeps
//!   reading that file, whole, whatever another worker renames over it or
//!   removes meanwhile. Two workers may write the same key at once: the
//!   last rename wins, and both files hold the same result.
//! - Entries used to be served once (claimed by renaming them to
//!   `.claim.*`, then deleted); such leftovers are swept like temporary
//!   files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use smart_imaging_core::{Converted, Format, KeepReason, Limits, Outcome, Plan};

use crate::config::StashDir;

/// The first line of every entry.
const MAGIC: &str = "smart-imaging stash 1";

/// A result's identity in the stash.
#[derive(Clone, Debug)]
pub struct Key {
    /// Everything that decides the output, as one line.
    text: String,
    /// The entry's file name: the SHA-256 of `text`, in hex.
    name: String,
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Key {
    /// The key of converting `input` with `plan` under `limits`. Hashes the
    /// input: on a pool thread.
    pub fn new(input: &[u8], plan: &Plan, limits: &Limits) -> Key {
        let text = format!(
            "v{} in={} sha256={} variant={} plan={:?} limits={:?}",
            env!("CARGO_PKG_VERSION"),
            input.len(),
            hex(&Sha256::digest(input)),
            plan.variant(),
            plan,
            limits
        )
        .replace('\n', " ");
        let name = hex(&Sha256::digest(text.as_bytes()));
        Key { text, name }
    }

    /// The entry's file name: a short identity of the result (for the
    /// conversions in flight, which the event loop keeps by it).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether `outcome` may be stashed: a conversion, or an original kept for
/// a reason that holds every time (not a caught panic, which says nothing
/// about the next try, nor a conversion that gave up).
pub fn keeps(outcome: &Outcome) -> bool {
    !matches!(
        outcome,
        Outcome::Original(KeepReason::Panic(_) | KeepReason::Stopped | KeepReason::Cancelled)
    )
}

/// Whether `name` is one of the stash's files (an entry, or one being
/// written or read): only those are ever removed.
fn is_ours(name: &str) -> bool {
    let entry = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
    entry(name) || name.starts_with(".tmp.") || name.starts_with(".claim.")
}

/// A unique file name for this process.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}.{}.{n}", std::process::id())
}

fn age(modified: io::Result<SystemTime>) -> std::time::Duration {
    modified
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

/// The entry of `key`, if one is there and fresh. It stays there for the
/// next requests, until it expires.
pub fn get(stash: &StashDir, key: &Key) -> io::Result<Option<Outcome>> {
    let mut file = match File::open(stash.dir.join(&key.name)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if age(file.metadata()?.modified()) > stash.ttl {
        return Ok(None);
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(parse(&data, key))
}

/// A float, exactly (its bits in hex), or `-`.
fn float_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:x}", v.to_bits()))
}

fn float_value(text: &str) -> Option<Option<f64>> {
    match text {
        "-" => Some(None),
        bits => Some(Some(f64::from_bits(u64::from_str_radix(bits, 16).ok()?))),
    }
}

/// An entry's contents: three lines (magic, key, fields), then the bytes
/// (the image; for a kept original, the reason's text, if it has one).
fn parse(data: &[u8], key: &Key) -> Option<Outcome> {
    let mut lines = data.splitn(4, |&b| b == b'\n');
    if lines.next()? != MAGIC.as_bytes() || lines.next()? != key.text.as_bytes() {
        return None;
    }
    let fields = std::str::from_utf8(lines.next()?).ok()?;
    let bytes = lines.next()?;
    let field = |name: &str| {
        fields
            .split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let number = |name: &str| field(name)?.parse::<u64>().ok();
    if number("bytes")? != bytes.len() as u64 {
        return None;
    }
    if let Some(code) = field("kept") {
        let text = || String::from_utf8_lossy(bytes).into_owned();
        let size = |name: &str| usize::try_from(number(name)?).ok();
        let reason = match code {
            "not-image" => KeepReason::NotAnImage,
            "unsupported" => KeepReason::Unsupported(text()),
            "too-many-pixels" => KeepReason::TooManyPixels {
                width: u32::try_from(number("width")?).ok()?,
                height: u32::try_from(number("height")?).ok()?,
                max_pixels: number("max_pixels")?,
            },
            "decode" => KeepReason::Decode(text()),
            "encode" => KeepReason::Encode(text()),
            "not-smaller" => KeepReason::NotSmaller {
                original: size("original")?,
                converted: size("converted")?,
            },
            "guard" => KeepReason::NotComparable {
                score: float_value(field("score")?)??,
                threshold: float_value(field("threshold")?)??,
            },
            "nothing-to-do" => KeepReason::NothingToDo,
            "too-much-work" => KeepReason::TooMuchWork {
                budget: number("budget")?,
                spent: number("spent")?,
                next: number("next")?,
            },
            _ => return None,
        };
        return Some(Outcome::Original(reason));
    }
    let format = Format::ALL
        .into_iter()
        .find(|f| f.name() == field("format").unwrap_or(""))?;
    Some(Outcome::Converted(Converted {
        bytes: bytes.to_vec(),
        format,
        width: u32::try_from(number("width")?).ok()?,
        height: u32::try_from(number("height")?).ok()?,
        quality: u8::try_from(number("quality")?).ok()?,
        score: float_value(field("score")?)?,
        encodes: usize::try_from(number("encodes")?).ok()?,
    }))
}

/// The fields line and the bytes of `outcome`; None if it is not kept.
fn fields(outcome: &Outcome) -> Option<(String, &[u8])> {
    let reason = match outcome {
        Outcome::Converted(c) => {
            let fields = format!(
                "format={} width={} height={} quality={} score={} encodes={}",
                c.format.name(),
                c.width,
                c.height,
                c.quality,
                float_text(c.score),
                c.encodes,
            );
            return Some((fields, &c.bytes));
        }
        Outcome::Original(reason) => reason,
    };
    let code = reason.code();
    Some(match reason {
        // Not a lasting answer for this image: never stored.
        KeepReason::Panic(_) | KeepReason::Stopped | KeepReason::Cancelled => return None,
        KeepReason::NotAnImage | KeepReason::NothingToDo => (format!("kept={code}"), &[]),
        KeepReason::Unsupported(text) | KeepReason::Decode(text) | KeepReason::Encode(text) => {
            (format!("kept={code}"), text.as_bytes())
        }
        KeepReason::TooManyPixels {
            width,
            height,
            max_pixels,
        } => (
            format!("kept={code} width={width} height={height} max_pixels={max_pixels}"),
            &[],
        ),
        KeepReason::NotSmaller {
            original,
            converted,
        } => (
            format!("kept={code} original={original} converted={converted}"),
            &[],
        ),
        KeepReason::TooMuchWork {
            budget,
            spent,
            next,
        } => (
            format!("kept={code} budget={budget} spent={spent} next={next}"),
            &[],
        ),
        KeepReason::NotComparable { score, threshold } => (
            format!(
                "kept={code} score={} threshold={}",
                float_text(Some(*score)),
                float_text(Some(*threshold))
            ),
            &[],
        ),
    })
}

fn serialize(key: &Key, outcome: &Outcome) -> Option<Vec<u8>> {
    let (fields, bytes) = fields(outcome)?;
    let mut out = format!("{MAGIC}\n{}\n{fields} bytes={}\n", key.text, bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    Some(out)
}

/// What [`put`] did.
#[derive(Debug)]
pub enum Stored {
    /// The entry is in place.
    Yes,
    /// The entry alone is larger than `max_size`.
    TooBig(u64),
    /// The outcome is not one the stash keeps ([`keeps`]).
    NotKept,
}

/// Keeps `outcome` under `key` (replacing an entry of the same key), after
/// sweeping expired files and making room under `max_size`.
pub fn put(stash: &StashDir, key: &Key, outcome: &Outcome) -> io::Result<Stored> {
    let Some(data) = serialize(key, outcome) else {
        return Ok(Stored::NotKept);
    };
    let size = data.len() as u64;
    if size > stash.max_size {
        return Ok(Stored::TooBig(size));
    }
    sweep(stash, size)?;
    let tmp = stash.dir.join(unique(".tmp"));
    let written = File::create_new(&tmp).and_then(|mut f| f.write_all(&data));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let path = stash.dir.join(&key.name);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Stored::Yes)
}

/// Removes the stash's files older than the TTL (entries, and temporary
/// or claimed files a crashed process left), then the oldest entries
/// until `incoming` more bytes fit under `max_size`. Other workers may
/// sweep at the same time: a file already gone is not an error.
fn sweep(stash: &StashDir, incoming: u64) -> io::Result<()> {
    let mut entries = Vec::new();
    for dirent in fs::read_dir(&stash.dir)? {
        let Ok(dirent) = dirent else { continue };
        let name = dirent.file_name();
        let Some(name) = name.to_str().filter(|n| is_ours(n)) else {
            continue;
        };
        let Ok(meta) = dirent.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let age = age(meta.modified());
        if age > stash.ttl {
            let _ = fs::remove_file(dirent.path());
        } else if !name.starts_with('.') {
            entries.push((age, meta.len(), dirent.path()));
        }
    }
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    // Oldest first.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, len, path) in entries {
        if total + incoming <= stash.max_size {
            break;
        }
        let _ = fs::remove_file(path);
        total -= len;
    }
    Ok(())
}
