//! Passes facts about the nginx this module is built against on to the
//! crate: its build directory (for tests, which run that nginx) and its
//! feature set (for code that exists only with, e.g., HTTP/2 or threads).
//! nginx-sys exports these only to crates that depend on it directly.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");

    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        // `<dir>/nginx` is the binary when nginx-sys built nginx itself
        // (feature `vendored`).
        println!("cargo::rustc-env=SMART_IMAGING_NGINX_BUILD_DIR={dir}");
    }

    // nginx 1.23.0 added ngx_table_elt_t.next and turned
    // headers_out.cache_control from an array into a single element.
    println!("cargo::rustc-check-cfg=cfg(nginx1_23_0)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(version) = std::env::var("DEP_NGINX_VERSION_NUMBER") {
        if version.parse::<u64>().is_ok_and(|v| v >= 1_023_000) {
            println!("cargo::rustc-cfg=nginx1_23_0");
        }
    }

    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        std::env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".into())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    let features = std::env::var("DEP_NGINX_FEATURES").unwrap_or_default();
    for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
    }
    if !features.split(',').any(|f| f.trim() == "threads") && !features.is_empty() {
        // Transcoding must not run on the event loop; without thread pools
        // the module cannot work.
        println!(
            "cargo::warning=nginx was configured without --with-threads: smart-imaging needs thread pools"
        );
    }
}
