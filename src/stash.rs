//! The stash: results of conversions whose request stopped waiting
//! (`smart_imaging_timeout`), kept so the next request for the same image
//! and variant gets them instead of converting again.
//!
//! One file per result in the `smart_imaging_stash_path` directory, shared
//! by every worker of the server. Only pool threads touch it (never the
//! event loop): a job looks its key up before converting ([`take`]), and an
//! abandoned result is written by a task of its own ([`put`]).
//!
//! - The key is the SHA-256 of the input bytes with everything else that
//!   decides the output: the plan (its variant name and every setting, as
//!   its `Debug` text), the limits and the module's version. The file's name
//!   is the SHA-256 of that text; the file holds the text itself, and a
//!   lookup serves it only if the text and the input's length match, so a
//!   clash of names can never serve another image.
//! - An entry is served once: the reader claims it by renaming it (atomic:
//!   of two workers asking, one gets it), then deletes it.
//! - An entry older than the TTL is never served; writing sweeps expired
//!   and stale files, and the oldest entries beyond `max_size`.
//! - Files are written to a temporary name and renamed into place, so a
//!   reader never sees half an entry.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use smart_imaging_core::{Converted, Format, Limits, Plan};

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

/// The entry of `key`, if one is there and fresh: claimed, read and
/// deleted, so no other request gets it.
pub fn take(stash: &StashDir, key: &Key) -> io::Result<Option<Converted>> {
    let path = stash.dir.join(&key.name);
    let claimed = stash.dir.join(unique(&format!(".claim.{}", key.name)));
    match fs::rename(&path, &claimed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let read = read_entry(&claimed, stash, key);
    fs::remove_file(&claimed)?;
    read
}

fn read_entry(path: &Path, stash: &StashDir, key: &Key) -> io::Result<Option<Converted>> {
    let mut file = File::open(path)?;
    if age(file.metadata()?.modified()) > stash.ttl {
        return Ok(None);
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(parse(&data, key))
}

/// An entry's contents: three lines (magic, key, fields), then the bytes.
fn parse(data: &[u8], key: &Key) -> Option<Converted> {
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
    let format = Format::ALL
        .into_iter()
        .find(|f| f.name() == field("format").unwrap_or(""))?;
    let score = match field("score")? {
        "-" => None,
        bits => Some(f64::from_bits(u64::from_str_radix(bits, 16).ok()?)),
    };
    Some(Converted {
        bytes: bytes.to_vec(),
        format,
        width: u32::try_from(number("width")?).ok()?,
        height: u32::try_from(number("height")?).ok()?,
        quality: u8::try_from(number("quality")?).ok()?,
        score,
        encodes: usize::try_from(number("encodes")?).ok()?,
    })
}

fn serialize(key: &Key, c: &Converted) -> Vec<u8> {
    let score = c
        .score
        .map_or_else(|| "-".to_string(), |s| format!("{:x}", s.to_bits()));
    let mut out = format!(
        "{MAGIC}\n{}\nformat={} width={} height={} quality={} score={score} encodes={} bytes={}\n",
        key.text,
        c.format.name(),
        c.width,
        c.height,
        c.quality,
        c.encodes,
        c.bytes.len()
    )
    .into_bytes();
    out.extend_from_slice(&c.bytes);
    out
}

/// What [`put`] did.
#[derive(Debug)]
pub enum Stored {
    /// The entry is in place.
    Yes,
    /// The entry alone is larger than `max_size`.
    TooBig(u64),
}

/// Keeps `c` under `key` (replacing an entry of the same key), after
/// sweeping expired files and making room under `max_size`.
pub fn put(stash: &StashDir, key: &Key, c: &Converted) -> io::Result<Stored> {
    let data = serialize(key, c);
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
