//! Build script of smart-imaging-core: bindings to the system C libraries
//! that no crate wraps for us. One function per library; `main` calls them.

use std::env;
use std::path::PathBuf;

fn main() {
    avif();
    jxrlib();
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

/// jxrlib, for JPEG XR (Debian `libjxr-dev`, a 2017 snapshot of Microsoft's
/// reference code; at run time `libjxr0`: `libjxrglue.so.0` and
/// `libjpegxr.so.0`): found with pkg-config (`libjxr.pc`), bindgen over
/// `<JXRGlue.h>` (the encoder and decoder objects only), linked dynamically.
///
/// The headers need the defines of jxrlib's non-Windows build, `__ANSI__`
/// and `DISABLE_PERF_MEASUREMENT` (they change struct layouts, so they must
/// match the library's build); `libjxr.pc` lists them, and they are added
/// if an older one does not.
fn jxrlib() {
    let lib = pkg_config::Config::new()
        .probe("libjxr")
        .unwrap_or_else(|e| panic!("jxrlib not found (is libjxr-dev installed?): {e}"));
    let mut clang_args: Vec<String> = lib
        .include_paths
        .iter()
        .map(|dir| format!("-I{}", dir.display()))
        .collect();
    for (name, value) in &lib.defines {
        clang_args.push(match value {
            Some(value) => format!("-D{name}={value}"),
            None => format!("-D{name}"),
        });
    }
    for define in ["__ANSI__", "DISABLE_PERF_MEASUREMENT"] {
        if !lib.defines.contains_key(define) {
            clang_args.push(format!("-D{define}"));
        }
    }
    for dir in &lib.include_paths {
        let header = dir.join("JXRGlue.h");
        if header.exists() {
            println!("cargo:rerun-if-changed={}", header.display());
        }
    }

    let bindings = bindgen::Builder::default()
        .header_contents("jxrlib_wrapper.h", "#include <JXRGlue.h>\n")
        .clang_args(&clang_args)
        .allowlist_function("PKImageEncode_Create_WMP")
        .allowlist_type("PKImageEncode")
        .allowlist_function("PKImageDecode_Create_WMP")
        .allowlist_type("PKImageDecode")
        .allowlist_type("WMPStream")
        .allowlist_type("CWMIStrCodecParam")
        .allowlist_var("GUID_PKPixelFormat24bppRGB")
        .allowlist_var("GUID_PKPixelFormat32bppRGBA")
        .allowlist_var("WMP_err.*")
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on jxrlib's JXRGlue.h (is libjxr-dev installed?)");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("jxrlib_bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("writing the jxrlib bindings");
}
