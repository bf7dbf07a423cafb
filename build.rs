//! Passes the location of the nginx this module is built against on to the
//! crate's tests and benches (nginx-sys exports it only to direct dependents).

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        // `<dir>/nginx` is the binary when nginx-sys built nginx itself
        // (feature `vendored`); tests use it to run a real server.
        println!("cargo::rustc-env=SMART_IMAGING_NGINX_BUILD_DIR={dir}");
    }
    // nginx version, for code that must differ between nginx releases.
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values(any()))");
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values(any()))");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(v) = std::env::var("DEP_NGINX_VERSION_NUMBER") {
        println!("cargo::rustc-env=SMART_IMAGING_NGINX_VERSION_NUMBER={v}");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
