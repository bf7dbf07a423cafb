//! Builders for test images: JPEGs through MozJPEG, PNGs through the `png`
//! encoder or (for what it cannot write, e.g. Adam7) by hand.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use mozjpeg::{ColorSpace, ColorSpaceExt, Compress, Marker};

/// RGB image of four solid quadrants:
/// ```text
/// red   green
/// blue  white
/// ```
pub fn quadrants(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(match (x < width / 2, y < height / 2) {
                (true, true) => &[255, 0, 0],
                (false, true) => &[0, 255, 0],
                (true, false) => &[0, 0, 255],
                (false, false) => &[255, 255, 255],
            });
        }
    }
    pixels
}

/// A smooth, photo-like RGB gradient with some texture.
pub fn photo_like(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let t = ((x * 7 + y * 13) % 17) as u8;
            pixels.extend_from_slice(&[
                (x * 200 / width) as u8 + t,
                (y * 200 / height) as u8 + t,
                ((x + y) * 100 / (width + height)) as u8 + 60,
            ]);
        }
    }
    pixels
}

/// [`photo_like`] plus sensor-like noise (+-6): lossless PNG cannot
/// compress the noise, which makes a realistic case for conversion.
pub fn noisy_photo(width: usize, height: usize) -> Vec<u8> {
    let grain = noise(width * height * 3, 11);
    photo_like(width, height)
        .iter()
        .zip(grain)
        .map(|(&p, g)| p.saturating_add(g % 13).saturating_sub(6))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

pub struct JpegOptions<'a> {
    pub colour_space: ColorSpace,
    pub progressive: bool,
    pub quality: f32,
    /// (APPn number, payload) segments written after the JFIF header.
    pub markers: &'a [(u8, &'a [u8])],
}

impl Default for JpegOptions<'_> {
    fn default() -> Self {
        JpegOptions {
            colour_space: ColorSpace::JCS_RGB,
            progressive: false,
            quality: 90.0,
            markers: &[],
        }
    }
}

/// Encodes `pixels` (in `opts.colour_space`, e.g. 3 bytes/px for RGB).
pub fn jpeg(pixels: &[u8], width: usize, height: usize, opts: &JpegOptions<'_>) -> Vec<u8> {
    assert_eq!(
        pixels.len(),
        width * height * opts.colour_space.num_components()
    );
    let mut c = Compress::new(opts.colour_space);
    if opts.progressive {
        c.set_progressive_mode();
    } else {
        // libjpeg-turbo defaults: baseline (MozJPEG's own are progressive).
        c.set_fastest_defaults();
    }
    c.set_size(width, height);
    c.set_quality(opts.quality);
    let mut started = c.start_compress(Vec::new()).unwrap();
    for &(app, data) in opts.markers {
        started.write_marker(Marker::APP(app), data);
    }
    started.write_scanlines(pixels).unwrap();
    started.finish().unwrap()
}

/// APP2 payloads carrying `profile` as ICC_PROFILE chunks numbered from 1
/// (as the ICC spec and libjpeg-turbo have it).
pub fn icc_app2_chunks(profile: &[u8]) -> Vec<Vec<u8>> {
    let parts: Vec<&[u8]> = profile.chunks(65_000).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let mut seg = b"ICC_PROFILE\0".to_vec();
            seg.extend_from_slice(&[i as u8 + 1, parts.len() as u8]);
            seg.extend_from_slice(part);
            seg
        })
        .collect()
}

/// Byte offset of the SOFn marker (FFC0..FFC2) of a JPEG.
pub fn sof_offset(jpeg: &[u8]) -> usize {
    jpeg.windows(2)
        .position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1]))
        .expect("no SOF")
}

/// Encodes with the `png` crate; `setup` can set palette, gamma, ICC...
pub fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    setup: impl FnOnce(&mut png::Encoder<'_, &mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    setup(&mut encoder);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    out
}

/// A PNG assembled by hand from an IHDR and the raw (unfiltered) rows of
/// each Adam7 pass, for interlacing (the `png` encoder does not do it).
/// `pixels` are 8-bit samples, `channels` per pixel; `color_type` is the
/// PNG code (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA).
pub fn interlaced_png(
    width: u32,
    height: u32,
    color_type: u8,
    channels: usize,
    pixels: &[u8],
) -> Vec<u8> {
    const PASSES: [(usize, usize, usize, usize); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let (w, h) = (width as usize, height as usize);
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        if x0 >= w || y0 >= h {
            continue; // empty pass
        }
        for y in (y0..h).step_by(dy) {
            raw.push(0); // filter type None
            for x in (x0..w).step_by(dx) {
                let at = (y * w + x) * channels;
                raw.extend_from_slice(&pixels[at..at + channels]);
            }
        }
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 1]); // depth, type, deflate, filter, Adam7
    raw_png(&[
        (b"IHDR", &ihdr),
        (b"IDAT", &zlib_stored(&raw)),
        (b"IEND", &[]),
    ])
}

/// A PNG made of the given chunks (CRCs computed).
pub fn raw_png(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in chunks {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(*kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// `png` with one more chunk inserted right after IHDR (for chunks the
/// `png` encoder does not write, or not in combination).
pub fn with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    const AFTER_IHDR: usize = 8 + 25; // signature, IHDR chunk
    let chunk = raw_png(&[(kind, data)]);
    [&png[..AFTER_IHDR], &chunk[8..], &png[AFTER_IHDR..]].concat()
}

/// Recomputes the CRC of every complete chunk, so that corrupted test
/// PNGs reach the decoder's deeper layers instead of failing the CRC check.
pub fn fix_png_crcs(png: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8)
            .checked_add(len)
            .filter(|&end| end + 4 <= png.len())
        else {
            return;
        };
        let crc = crc32(&png[at + 4..end]);
        png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

/// IHDR payload: width, height, bit depth, colour type, no interlace.
pub fn ihdr(width: u32, height: u32, depth: u8, color_type: u8) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color_type, 0, 0, 0]);
    ihdr
}

/// A zlib stream of uncompressed ("stored") deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65_535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len())); // BFINAL, BTYPE=00
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The shared test corpus: `$SMART_IMAGING_CORPUS` when set, else
/// `shared/corpus` next to the repository. `None` (the caller skips) if it
/// does not exist, except under `CI=true` (or `CI=1`), where the corpus is
/// required: a missing one panics, so CI cannot pass by skipping it.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SMART_IMAGING_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "image corpus not found at {} (set SMART_IMAGING_CORPUS): under CI=true \
         the tests that use it must not be skipped",
        dir.display()
    );
    None
}

/// A non-sRGB RGB ICC profile (desc "Wide Test RGB"), `padding` bytes
/// longer than its minimum: the decoders keep it (an sRGB one they drop).
pub fn wide_profile(padding: usize) -> Vec<u8> {
    icc_profile("Wide Test RGB", padding)
}

/// A structurally valid RGB display profile (not sRGB, so decoders keep
/// it) whose one tag describes it as `description`, `padding` bytes longer
/// than its minimum.
pub fn icc_profile(description: &str, padding: usize) -> Vec<u8> {
    let mut tag = b"desc\0\0\0\0".to_vec();
    tag.extend_from_slice(&(description.len() as u32 + 1).to_be_bytes());
    tag.extend_from_slice(description.as_bytes());
    tag.push(0);
    let tag_offset = 128 + 4 + 12;
    let total = tag_offset + tag.len() + padding;
    let mut p = vec![0u8; 128];
    p[0..4].copy_from_slice(&(total as u32).to_be_bytes());
    p[12..16].copy_from_slice(b"mntr");
    p[16..20].copy_from_slice(b"RGB ");
    p[20..24].copy_from_slice(b"XYZ ");
    p[36..40].copy_from_slice(b"acsp");
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(b"desc");
    p.extend_from_slice(&(tag_offset as u32).to_be_bytes());
    p.extend_from_slice(&(tag.len() as u32).to_be_bytes());
    p.extend_from_slice(&tag);
    p.extend((0..padding).map(|i| (i % 253) as u8));
    p
}

/// The corpus `dir`'s manifest.csv: (file name, kind) per image, kind
/// being photo, graphic or alpha; empty if there is no manifest.
pub fn corpus_manifest(dir: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("manifest.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// For the studies in `core/examples`: runs `lines(name, bytes)` on the
/// images `names` of the corpus `dir`, two at a time, and prints each
/// image's lines together on stdout as it completes (its name on stderr).
pub fn print_per_image(
    dir: &std::path::Path,
    names: &[String],
    lines: impl Fn(&str, &[u8]) -> Vec<String> + Sync,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    let next = AtomicUsize::new(0);
    let out = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let input = std::fs::read(dir.join(name)).expect("read");
                let lines = lines(name, &input);
                let _guard = out.lock().unwrap();
                for line in lines {
                    println!("{line}");
                }
                eprintln!("{name}");
            });
        }
    });
}

/// Runs `check(path, index, kind)` on every JPEG and PNG of the corpus
/// `dir`, in name order (`index`), with `kind` from its manifest.csv
/// (photo/graphic/alpha, "?" when not listed), on two worker threads: the
/// machines this runs on have two cores. Returns the results in the order
/// they completed.
pub fn map_corpus<R: Send>(
    dir: &std::path::Path,
    check: impl Fn(&std::path::Path, usize, String) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    let kinds: std::collections::BTreeMap<String, String> =
        corpus_manifest(dir).into_iter().collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no images in {}", dir.display());

    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let kind = kinds.get(&name).cloned().unwrap_or_else(|| "?".into());
                let result = check(path, i, kind);
                results.lock().unwrap().push(result);
            });
        }
    });
    results.into_inner().unwrap()
}

/// A valid JPEG of `width` x `height` that is flat grey but for a small
/// textured square in its top-left corner (64x64), progressive at q75 as
/// MozJPEG writes it: at 3000x3000 a 27 KB file whose header says 9 MP,
/// the "tiny file with a huge header" of the work budget.
pub fn flat_jpeg_with_corner(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = vec![128u8; width * height * 3];
    let side = 64.min(width).min(height);
    let corner = noisy_photo(side, side);
    for y in 0..side {
        pixels[y * width * 3..(y * width + side) * 3]
            .copy_from_slice(&corner[y * side * 3..(y + 1) * side * 3]);
    }
    jpeg(
        &pixels,
        width,
        height,
        &JpegOptions {
            progressive: true,
            quality: 75.0,
            ..JpegOptions::default()
        },
    )
}

/// A 16-bit PNG of `width` x `height` in `color`, mid-grey but for 8x8
/// blocks of random levels in the `corner` x `corner` pixels at its top
/// left (blocky edges no cheap lossy encoding keeps), as small as the `png`
/// crate writes it (zlib level 9): at 4000x4000 grey, the default pixel
/// limit, ~40 KB that decode to 32 MB of samples.
pub fn flat_png16(width: u32, height: u32, color: png::ColorType, corner: u32) -> Vec<u8> {
    let channels = color.samples();
    let row = width as usize * channels * 2;
    let mut samples = vec![0x80; row * height as usize];
    let corner = corner.min(width).min(height) as usize;
    let photo = noisy_photo(corner, corner);
    for y in 0..corner {
        for x in 0..corner {
            let at = y * row + x * channels * 2;
            for c in 0..channels {
                let v = photo[(y * corner + x) * 3 + c.min(2)];
                samples[at + 2 * c..at + 2 * c + 2].copy_from_slice(&[v, v]);
            }
        }
    }
    png(
        width,
        height,
        color,
        png::BitDepth::Sixteen,
        &samples,
        |e| e.set_deflate_compression(png::DeflateCompression::Level(9)),
    )
}

/// A valid progressive JPEG (YCbCr 4:2:0) of `width` x `height`, mid-grey
/// but for pseudo-random blocks in the `corner` x `corner` pixels at its
/// top left, in `scans` scans (66..=190): the DC scan, one scan per luma AC
/// coefficient (1..=63), and the chroma AC coefficients split into the
/// remaining scans, half per component. Every scan makes the decoder visit
/// every block of its component, but a scan over grey blocks is one run of
/// empty blocks: a few bytes, the DC scan one bit per block. So: a tiny
/// file (3000x3000: ~30 KB) whose header says many pixels, and which costs
/// as many passes over them as it has scans. Written by hand: MozJPEG
/// takes no scan script through its Rust API.
pub fn progressive_jpeg(width: u16, height: u16, scans: usize, corner: u16) -> Vec<u8> {
    assert!((66..=190).contains(&scans), "{scans} scans");
    // Blocks per row and column: luma, chroma (half resolution), and the
    // MCUs of the interleaved DC scan (2x2 luma blocks, one of each chroma).
    let (w, h) = (usize::from(width), usize::from(height));
    let luma_blocks = (w.div_ceil(8), h.div_ceil(8));
    let chroma_blocks = (w.div_ceil(16), h.div_ceil(16));
    let mcus = chroma_blocks;
    let corner = usize::from(corner);
    // Luma coefficient `k` (zigzag order) of the block at (x, y).
    let luma = |x: usize, y: usize, k: usize| -> i32 {
        if x * 8 >= corner || y * 8 >= corner {
            return 0;
        }
        let mut v = ((y * 4096 + x) * 64 + k) as u64 ^ 0x9E37_79B9_7F4A_7C15;
        v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let r = (v ^ (v >> 31)) as i32 & 0x7FFF_FFFF;
        // Blocks of strong, varying levels with a little grain: blocky
        // edges no cheap lossy encoding keeps (the guard's check of the
        // whole image fails where the search's sample saw grey).
        if k == 0 {
            r % 601 - 300
        } else {
            r % 9 - 4
        }
    };
    let segment = |out: &mut Vec<u8>, marker: u8, payload: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        out.extend_from_slice(payload);
    };
    let mut out = vec![0xFF, 0xD8];
    // Quantisation table 0: all ones.
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1; 64]);
    segment(&mut out, 0xDB, &dqt);
    // SOF2: 8 bits, Y (2x2 sampling) Cb Cr (1x1), ids 1-3, table 0.
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]);
    segment(&mut out, 0xC2, &sof);
    // Huffman tables as (symbol, code length), codes assigned in this
    // order (canonical): DC 0, difference category 0 in one bit, 1..=11 in
    // five; AC 0, the end-of-band runs EOB0..EOB14 and the sizes 1..=11
    // with no zero run before, all in five bits.
    let dc: Vec<(u8, u32)> = [(0, 1)]
        .into_iter()
        .chain((1..12).map(|s| (s, 5)))
        .collect();
    let ac: Vec<(u8, u32)> = (0..15u8)
        .map(|r| (r << 4, 5))
        .chain((1..=11).map(|s| (s, 5)))
        .collect();
    let mut dht = Vec::new();
    for (class, table) in [(0x00, &dc), (0x10, &ac)] {
        dht.push(class);
        let mut counts = [0u8; 16];
        for &(_, len) in table.iter() {
            counts[len as usize - 1] += 1;
        }
        dht.extend_from_slice(&counts);
        dht.extend(table.iter().map(|&(symbol, _)| symbol));
    }
    segment(&mut out, 0xC4, &dht);
    // (code, length) of `symbol` in a canonical table.
    let code = |table: &[(u8, u32)], symbol: u8| -> (u32, u32) {
        let mut code = 0u32;
        let mut len = 1;
        for &(s, l) in table {
            code <<= l - len;
            len = l;
            if s == symbol {
                return (code, len);
            }
            code += 1;
        }
        panic!("no symbol {symbol:#x}");
    };

    // Bits, MSB first, 0xFF stuffed, padded with ones.
    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, (value, len): (u32, u32)) {
            for i in (0..len).rev() {
                self.acc = (self.acc << 1) | ((value >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    self.out.push(self.acc as u8);
                    if self.acc == 0xFF {
                        self.out.push(0);
                    }
                    (self.acc, self.n) = (0, 0);
                }
            }
        }
        /// A value's size category and its bits (negative: one's
        /// complement), as JPEG codes coefficients.
        fn magnitude(v: i32) -> (u32, u32) {
            let size = 32 - v.unsigned_abs().leading_zeros();
            let bits = if v >= 0 { v } else { v + (1 << size) - 1 };
            (size, bits as u32)
        }
        fn finish(mut self) -> Vec<u8> {
            while self.n != 0 {
                self.put((1, 1));
            }
            self.out
        }
    }
    let eob_run = |bits: &mut Bits, mut run: u32| {
        while run > 0 {
            let this = run.min(32_767);
            let r = 31 - this.leading_zeros();
            bits.put(code(&ac, (r as u8) << 4));
            bits.put((this - (1 << r), r));
            run -= this;
        }
    };
    // DC, interleaved: per MCU its four luma blocks, then Cb and Cr (no
    // difference: grey).
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0]);
    let mut bits = Bits::default();
    let mut previous = 0;
    for my in 0..mcus.1 {
        for mx in 0..mcus.0 {
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let v = luma(2 * mx + dx, 2 * my + dy, 0);
                let (size, value) = Bits::magnitude(v - previous);
                previous = v;
                bits.put(code(&dc, size as u8));
                bits.put((value, size));
            }
            bits.put(code(&dc, 0));
            bits.put(code(&dc, 0));
        }
    }
    out.extend_from_slice(&bits.finish());
    // AC: luma coefficient by coefficient, then chroma in bands; each
    // component's own blocks, row by row.
    let chroma_bands = scans - 64;
    let mut script: Vec<(u8, u8, u8)> = (1..=63).map(|k| (1, k, k)).collect();
    for (component, bands) in [(2, chroma_bands.div_ceil(2)), (3, chroma_bands / 2)] {
        for band in 0..bands {
            let start = 1 + band * 63 / bands;
            let end = (band + 1) * 63 / bands;
            script.push((component, start as u8, end as u8));
        }
    }
    for (component, ss, se) in script {
        segment(&mut out, 0xDA, &[1, component, 0x00, ss, se, 0]);
        let (columns, rows) = if component == 1 {
            luma_blocks
        } else {
            chroma_blocks
        };
        let mut bits = Bits::default();
        let mut run = 0;
        for y in 0..rows {
            for x in 0..columns {
                let v = if component == 1 {
                    luma(x, y, usize::from(ss))
                } else {
                    0
                };
                if v == 0 {
                    run += 1;
                    continue;
                }
                // (Luma bands are one coefficient: a non-zero one ends it.)
                eob_run(&mut bits, run);
                run = 0;
                let (size, value) = Bits::magnitude(v);
                bits.put(code(&ac, size as u8));
                bits.put((value, size));
            }
        }
        eob_run(&mut bits, run);
        out.extend_from_slice(&bits.finish());
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// CPU time of the calling thread, in ms (for the examples and tests that
/// report what a conversion costs).
pub fn cpu_ms() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
    #[allow(unsafe_code)] // a measuring tool, not the core
    unsafe {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts)
    };
    ts.sec as f64 * 1e3 + ts.nsec as f64 / 1e6
}

/// The reference implementation's SSIMULACRA 2 of `b` against `a`, whole
/// images: the `ssimulacra2` crate as published (0.5.1), which is what
/// "scores at least 80" is checked with. Alpha is composited over black.
pub fn reference_score(
    a: &smart_imaging_core::codecs::Image,
    b: &smart_imaging_core::codecs::Image,
) -> f64 {
    use ssimulacra2::{compute_frame_ssimulacra2, ColorPrimaries, Rgb, TransferCharacteristic};
    let rgb = |img: &smart_imaging_core::codecs::Image| {
        let c = img.channels();
        let data = img
            .pixels
            .chunks_exact(c)
            .map(|p| {
                let alpha = if c == 4 { f32::from(p[3]) / 255.0 } else { 1.0 };
                [0, 1, 2].map(|i| f32::from(p[i]) / 255.0 * alpha)
            })
            .collect();
        Rgb::new(
            data,
            img.width as usize,
            img.height as usize,
            TransferCharacteristic::SRGB,
            ColorPrimaries::BT709,
        )
        .expect("rgb")
    };
    compute_frame_ssimulacra2(rgb(a), rgb(b)).expect("score")
}

/// `img` encoded in `format` as the module encodes with the guard on and
/// the default tuning (the studies in core/examples).
pub fn guarded_encode(
    format: smart_imaging_core::Format,
    img: &smart_imaging_core::codecs::Image,
    quality: u8,
    effort: smart_imaging_core::codecs::Effort,
    from_png: bool,
) -> Vec<u8> {
    let encoding = smart_imaging_core::codecs::Encoding {
        quality,
        effort,
        from_png,
        guarded: true,
        tuning: smart_imaging_core::codecs::Tuning::DEFAULT,
    };
    (format.codec().encode)(img, &encoding).expect("encode")
}

/// The value after `name` (`--from 60`) in command-line `args`.
pub fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
