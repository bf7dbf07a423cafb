#!/usr/bin/env bash
# Builds the module against an nginx source tree: the recipe the Dockerfile
# uses, and the one to follow for any nginx you run (see docs/building.md, "Building
# against an existing nginx").
#
#   scripts/build-module.sh NGINX_SOURCE_DIR [CARGO_TARGET_DIR]
#
# NGINX_SOURCE_DIR must hold the source of exactly the nginx version the
# module will be loaded into. It is configured here (once; again only when
# the flags change) with --with-compat, which the official and distribution
# binaries are built with, plus the features the module's code uses. Add
# flags with NGINX_CONFIGURE_EXTRA. Prints the path of the built module.
set -euo pipefail

src=$(cd "${1:?usage: $0 NGINX_SOURCE_DIR [CARGO_TARGET_DIR]}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
target=${2:-$root/target/nginx-$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$src/src/core/nginx.h")}

flags="--with-compat --with-threads --with-http_ssl_module --with-http_v2_module ${NGINX_CONFIGURE_EXTRA:-}"
stamp=$src/objs/.smart-imaging-configure-flags
if [ ! -f "$src/objs/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$flags" ]; then
  echo "build-module: configuring $src with: $flags" >&2
  # Release tarballs have ./configure; a checkout of nginx's repository
  # (and the nginx-src crate) only auto/configure.
  configure=./configure
  [ -x "$src/configure" ] || configure=auto/configure
  # shellcheck disable=SC2086  # flags are words
  (cd "$src" && $configure $flags >/dev/null)
  echo "$flags" > "$stamp"
fi

echo "build-module: building against $src into $target" >&2
cd "$root"
NGINX_SOURCE_DIR=$src NGINX_BUILD_DIR=$src/objs CARGO_TARGET_DIR=$target \
  cargo build --release -p ngx-smart-imaging --no-default-features >&2
echo "$target/release/libngx_http_smart_imaging_module.so"
