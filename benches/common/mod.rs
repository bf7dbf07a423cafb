//! What both benches share: the corpus, loaded once, with each image's
//! kind (photo / graphic / alpha), and a median.

use std::path::{Path, PathBuf};

use smart_imaging_core::{codecs, Limits};

pub struct Sample {
    pub name: String,
    pub kind: String,
    pub bytes: Vec<u8>,
    pub pixels: u64,
}

pub fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SMART_IMAGING_CORPUS") {
        return dir.into();
    }
    // This bench belongs to the core crate (core/Cargo.toml), so that it
    // builds no nginx; the repository root is one level up.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/corpus");
    if shared.join("manifest.csv").exists() {
        shared
    } else {
        root.join("samples")
    }
}

/// Images of at most 4 MP, with their kind from manifest.csv when there is
/// one (photo / graphic / alpha), else from the extension and alpha channel.
pub fn load_corpus() -> Vec<Sample> {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap_or_default();
    let kind_of = |file: &str| {
        manifest.lines().skip(1).find_map(|l| {
            let mut cols = l.split(',');
            (cols.next() == Some(file)).then(|| cols.next().unwrap_or("").to_string())
        })
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "png")))
        .collect();
    files.sort();
    let limits = Limits::default();
    files
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let image = codecs::decode(&bytes, &limits).ok()?;
            let pixels = u64::from(image.width) * u64::from(image.height);
            if pixels > 4_000_000 {
                return None;
            }
            let name = path.file_name()?.to_string_lossy().into_owned();
            let kind = kind_of(&name).unwrap_or_else(|| {
                match (name.ends_with(".jpg"), image.has_alpha) {
                    (true, _) => "photo",
                    (false, true) => "alpha",
                    (false, false) => "graphic",
                }
                .to_string()
            });
            Some(Sample {
                name,
                kind,
                bytes,
                pixels,
            })
        })
        .collect()
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
