#!/usr/bin/env bash
# Installs what building and testing smart-imaging needs on Debian (bookworm),
# and nothing that is already there. Run as root. Idempotent and quick when
# everything is present, so `make run` and `make test` call it every time.
set -euo pipefail

packages=(
  # building nginx (vendored by nginx-sys) and the module
  build-essential make pkg-config libclang-dev libpcre2-dev libssl-dev zlib1g-dev
  # SIMD for mozjpeg: without nasm it silently builds a slow scalar libjpeg
  nasm
  # tests: HTTP/2 client, TLS certificates, reference WebP decoder, process tools
  curl openssl webp procps
  # t/: our Test::Nginx-compatible harness and what it builds on
  # (t/run-real-test-nginx.sh, optional, also wants libtest-longstring-perl)
  perl libtest-base-perl libtext-diff-perl liblist-moreutils-perl libwww-perl
  libhttp-message-perl libipc-run-perl liburi-perl
  # JPEG XR encoder: jxrlib headers for bindgen, linked as a shared library
  # (runtime dependency of the module: Debian package libjxr0)
  libjxr-dev
  # tests: reference JPEG 2000 / JPEG XR decoders (opj_decompress, JxrDecApp)
  libopenjp2-tools libjxr-tools
  # AVIF encoder: libavif headers for bindgen, linked as a shared library
  # (runtime dependency of the module: Debian package libavif15, which
  # brings libaom3 and libdav1d6)
  libavif-dev
  # tests: reference AVIF decoder (avifdec)
  libavif-bin
  # tests/browser.rs: real browsers (headless) load pages of converted images
  chromium firefox-esr
  # tests/status.rs: `promtool check metrics` on smart_imaging_status, and a
  # real Prometheus server (started by the test on loopback, never as a
  # service) scraping it
  prometheus
  # make deb (scripts/build-deb.sh): Debian packaging and its checker; the
  # package build also needs nginx-dev, which build-for-system-nginx.sh
  # installs (stopping the nginx service its install may start)
  debhelper dpkg-dev lintian
  # make fuzz / test-fuzz (fuzz/run.sh): clang builds the C codecs with
  # AddressSanitizer and libFuzzer's coverage; cargo-fuzz itself is
  # installed by fuzz/run.sh (cargo install). make test-valgrind: memcheck
  clang-14 valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install packages (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  # Debian's own cargo/rustc (1.63 in bookworm) is too old for the ngx crate.
  echo "install-deps: cargo not found. Install Rust >= 1.87 with rustup" \
       "(https://rustup.rs), then run this again." >&2
  exit 1
fi
rustc_minor=$(rustc --version | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
if [ -n "$rustc_minor" ] && [ "$rustc_minor" -lt 87 ]; then
  echo "install-deps: $(rustc --version) is too old: smart-imaging needs Rust >= 1.87 (rustup update)" >&2
  exit 1
fi
