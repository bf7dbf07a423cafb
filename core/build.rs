//! Build script of smart-imaging-core: bindings to the system C libraries
//! that no crate wraps for us. One function per library; `main` calls them.

use std::env;
use std::path::PathBuf;

fn main() {
    avif();
}

/// libavif (Debian `libavif-dev`; at run time `libavif15`, which pulls in
/// libaom3, libdav1d6 and friends): bindgen over `<avif/avif.h>`, linked
/// dynamically. `AVIF_INCLUDE_DIR` / `AVIF_LIB_DIR` point elsewhere.
fn avif() {
    println!("cargo:rerun-if-env-changed=AVIF_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=AVIF_LIB_DIR");
    let include_dir = env::var_os("AVIF_INCLUDE_DIR").map(PathBuf::from);
    if let Some(lib_dir) = env::var_os("AVIF_LIB_DIR") {
        println!(
            "cargo:rustc-link-search=native={}",
            PathBuf::from(lib_dir).display()
        );
    }
    println!("cargo:rustc-link-lib=dylib=avif");

    let header = match &include_dir {
        Some(dir) => dir.join("avif/avif.h"),
        None => PathBuf::from("/usr/include/avif/avif.h"),
    };
    println!("cargo:rerun-if-changed={}", header.display());
    let mut builder = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_function("avif.*")
        .allowlist_type("avif.*")
        .allowlist_var("AVIF_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false);
    if let Some(dir) = &include_dir {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on avif/avif.h (is libavif-dev installed?)");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("avif_bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("writing the libavif bindings");
}
