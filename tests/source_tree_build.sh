#!/usr/bin/env bash
# Checks the Dockerfile's recipe (scripts/build-module.sh: configure an nginx
# source tree --with-compat, build the module against it without the
# vendored nginx) on the one nginx source this machine has: the 1.28 source
# of the nginx-src crate. The module built that way must load into, and
# convert in, the vendored nginx of the same version (built by cargo for the
# other tests), as it would in the official image.
#
#   tests/source_tree_build.sh        exit 0 = pass (or SKIP), 1 = fail
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
nginx_bin=$(ls -t target/debug/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)
[ -n "$nginx_bin" ] || { echo "SKIP: no vendored nginx built yet (cargo build)"; exit 0; }

# The source cargo vendored (same version as $nginx_bin).
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
pristine=$(ls -d "$registry"/*/nginx-src-*/nginx 2>/dev/null | sort -V | tail -n 1)
[ -n "$pristine" ] || { echo "SKIP: nginx-src crate not in the cargo registry"; exit 0; }
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$pristine/src/core/nginx.h")
if ! "$nginx_bin" -v 2>&1 | grep -q "nginx/$version\$"; then
  echo "SKIP: vendored nginx is not $version"
  exit 0
fi

# A private copy: configure writes objs/ into the tree.
tree=$root/target/source-tree/nginx-$version
if [ ! -f "$tree/src/core/nginx.h" ]; then
  rm -rf "$tree" && mkdir -p "$(dirname "$tree")"
  cp -r "$pristine" "$tree"
fi

module=$(scripts/build-module.sh "$tree" "$root/target/source-tree/cargo")
echo "built $module against $tree"
NGINX_BIN=$root/$nginx_bin SMART_IMAGING_SO=$module tests/system_nginx.sh
