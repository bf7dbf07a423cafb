#!/usr/bin/env bash
# Builds the Debian package of smart-imaging for the nginx installed from
# Debian's packages (bookworm: 1.22.1):
#
#   scripts/build-deb.sh      (make deb)
#   -> target/deb/libnginx-mod-http-smart-imaging_<version>_<arch>.deb
#
# The packaging in debian/ is the one Debian uses for its own nginx module
# packages (debhelper compat 13 + dh-sequence-nginx from nginx-dev); the Rust
# build is scripts/build-for-system-nginx.sh, in target/system-nginx.
#
# Steps: install what is missing (scripts/install-deps.sh: debhelper,
# dpkg-dev, lintian; build-for-system-nginx.sh: nginx-dev and the nginx of
# the same version), check the build dependencies (dpkg-checkbuilddeps),
# `debian/rules clean build binary` (what dpkg-buildpackage -b runs, without
# the .changes/.buildinfo it would write next to the repository), then lintian
# on the .deb: an error fails the build, warnings are printed.
#
# As root on a fresh machine; as any other user once the packages are in
# (the binary target needs no root: Rules-Requires-Root: no).
#
# Environment (optional):
#   CARGO         cargo to use (default: on PATH, else ~/.cargo/bin/cargo)
#   DEB_DIR       where the .deb goes (target/deb)
#   SKIP_LINTIAN  1: do not run lintian
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DEB_DIR=${DEB_DIR:-$ROOT/target/deb}
PKG=libnginx-mod-http-smart-imaging

say() { echo "build-deb: $*"; }
die() { echo "build-deb: error: $*" >&2; exit 1; }

if [ -z "${CARGO:-}" ]; then
  CARGO=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
fi
[ -x "$CARGO" ] || die "cargo not found (install Rust >= 1.87 with rustup, or set CARGO)"
export CARGO
# build-for-system-nginx.sh and install-deps.sh look for cargo and rustc on PATH.
PATH=$(dirname "$CARGO"):$PATH
export PATH

# --- packages -------------------------------------------------------------------

"$ROOT/scripts/install-deps.sh"
# Installs nginx-dev (and the nginx it belongs to) if needed, stopping the
# service the nginx package may start, and builds the module.
"$ROOT/scripts/build-for-system-nginx.sh"

# --- versions -------------------------------------------------------------------

deb_version=$(dpkg-parsechangelog -S Version)
crate_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ "${deb_version%%[-+~]*}" = "$crate_version" ] \
  || die "debian/changelog is at $deb_version but Cargo.toml at $crate_version: add a changelog entry (dch -v $crate_version)"
arch=$(dpkg --print-architecture)
deb=$DEB_DIR/${PKG}_${deb_version}_${arch}.deb

dpkg-checkbuilddeps || die "build dependencies missing (see above)"

# --- build ----------------------------------------------------------------------

mkdir -p "$DEB_DIR"
rm -f "$deb"
export DEB_DIR
debian/rules clean
debian/rules build
debian/rules binary
[ -f "$deb" ] || die "$deb was not built"
debian/rules clean >/dev/null

say "built $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/  \1:/p'
dpkg-deb --contents "$deb" | awk '{print "  " $1, $6, $7, $8}'

# --- lintian --------------------------------------------------------------------

if [ "${SKIP_LINTIAN:-0}" != 1 ]; then
  command -v lintian >/dev/null || die "lintian not installed"
  say "lintian $deb"
  # lintian exits non-zero on errors (its default --fail-on error).
  lintian --info --display-info --fail-on error "$deb" | sed 's/^/  /' || die "lintian reports errors"
  # (--show-overrides would print them, but also make --fail-on fail on them)
  say "lintian: no errors; overridden, with the reasons in debian/$PKG.lintian-overrides:"
  grep -v '^#' "debian/$PKG.lintian-overrides" | sed '/^$/d; s/^/  /'

fi
