//! Writes the crafted inputs of the work budget's measurements
//! (docs/failures.md, "Work per conversion") to a directory, to time them
//! with `transcode_one`: the files `core/tests/work.rs` builds.
//!
//! ```text
//! cargo run --release -p smart-imaging-core --example crafted_inputs -- DIR
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use png::ColorType;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: crafted_inputs DIR"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let write = |name: &str, bytes: Vec<u8>| {
        println!("{name}: {} bytes", bytes.len());
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    // Each with a textured corner, which the guard's search on a sample of
    // the image does not see, and flat.
    write("jpeg_3000.jpg", common::flat_jpeg_with_corner(3000, 3000));
    write(
        "scans100_3000.jpg",
        common::progressive_jpeg(3000, 3000, 100, 64),
    );
    write(
        "scans100_3000_flat.jpg",
        common::progressive_jpeg(3000, 3000, 100, 0),
    );
    write(
        "png16_4000.png",
        common::flat_png16(4000, 4000, ColorType::Grayscale, 64),
    );
    write(
        "png16_4000_flat.png",
        common::flat_png16(4000, 4000, ColorType::Grayscale, 0),
    );
}
