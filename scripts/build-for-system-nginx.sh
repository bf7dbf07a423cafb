#!/usr/bin/env bash
# Builds smart-imaging for the nginx installed from Debian packages
# (/usr/sbin/nginx), instead of for the nginx that nginx-sys vendors.
#
#   scripts/build-for-system-nginx.sh
#
# As root it installs what is missing (nginx-dev, which also pulls in the
# matching nginx, plus the build dependencies from install-deps.sh); as any
# other user it works when those are already installed. Idempotent: a second
# run reconfigures nothing and cargo rebuilds nothing.
#
# Steps:
#  1. copy the nginx source skeleton that nginx-dev ships (/usr/share/nginx/src:
#     headers, auto/, configure, but no objs/) to target/system-nginx/nginx-<version>
#  2. configure it with the flags Debian builds its own module packages with
#     (/usr/share/nginx/src/conf_flags, used by dh's nginx_mod build system),
#     which give the same module signature as /usr/sbin/nginx (checked)
#  3. cargo build --release --no-default-features against that tree, in its
#     own target directory (target/system-nginx), so the vendored build in
#     target/debug that `make` and the tests use is never touched
#  4. check that /usr/sbin/nginx accepts the module (nginx -t in a temp prefix)
#
# Environment (all optional):
#   NGINX_BIN                  nginx binary to build for (/usr/sbin/nginx)
#   NGINX_DEV_SRC              nginx-dev's source skeleton (/usr/share/nginx/src)
#   SYSTEM_NGINX_TARGET_DIR    cargo target dir (target/system-nginx)
#   SYSTEM_NGINX_FLAGS         "debian" (default: conf_flags from nginx-dev)
#                              or "full" (every flag of `nginx -V`)
#   CARGO                      cargo to use (cargo)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
NGINX_DEV_SRC=${NGINX_DEV_SRC:-/usr/share/nginx/src}
TARGET_DIR=${SYSTEM_NGINX_TARGET_DIR:-$ROOT/target/system-nginx}
FLAGS_MODE=${SYSTEM_NGINX_FLAGS:-debian}
CARGO=${CARGO:-cargo}
MODULE_NAME=ngx_http_smart_imaging_module

say() { echo "build-for-system-nginx: $*"; }
die() { echo "build-for-system-nginx: error: $*" >&2; exit 1; }

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# pid of a running nginx master started with the package defaults, if any.
system_nginx_pid() {
  local pid
  [ -r /run/nginx.pid ] || return 0
  pid=$(cat /run/nginx.pid 2>/dev/null) || return 0
  if [ -n "$pid" ] && [ -d "/proc/$pid" ] \
     && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    echo "$pid"
  fi
}

# --- 1. packages --------------------------------------------------------------

"$ROOT/scripts/install-deps.sh"

if ! installed nginx-dev || [ ! -x "$NGINX_BIN" ]; then
  [ "$(id -u)" -eq 0 ] || die "nginx-dev (and nginx) are not installed; run this as root or: apt-get install nginx-dev"
  running_before=$(system_nginx_pid)
  say "installing nginx-dev (pulls in the matching nginx)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx-dev depends on nginx (= its own version), so this also installs
  # or upgrades nginx to the version whose headers we get.
  apt-get install -y -qq --no-install-recommends nginx-dev >/dev/null
  # On a machine with working init scripts the nginx package's postinst
  # starts the system service. We came to build a module, not to run a web
  # server: stop it again if it was not running before.
  running_after=$(system_nginx_pid)
  if [ -z "$running_before" ] && [ -n "$running_after" ]; then
    say "the nginx package started the system nginx (pid $running_after); stopping it"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      systemctl stop nginx.service || kill -QUIT "$running_after" || true
    else
      kill -QUIT "$running_after" || true
    fi
    for _ in $(seq 50); do [ -n "$(system_nginx_pid)" ] || break; sleep 0.1; done
    [ -z "$(system_nginx_pid)" ] || say "warning: system nginx (pid $(system_nginx_pid)) is still running"
  fi
fi

[ -x "$NGINX_BIN" ] || die "$NGINX_BIN not found"
[ -f "$NGINX_DEV_SRC/src/core/nginx.h" ] || die "$NGINX_DEV_SRC/src/core/nginx.h not found (is nginx-dev installed?)"

# --- 2. versions and flags ----------------------------------------------------

bin_version=$("$NGINX_BIN" -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p')
src_version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$NGINX_DEV_SRC/src/core/nginx.h")
[ -n "$bin_version" ] || die "cannot read the version of $NGINX_BIN"
[ "$bin_version" = "$src_version" ] || die "$NGINX_BIN is nginx $bin_version but $NGINX_DEV_SRC is $src_version; a module only loads into the exact version it was built for"

bin_args=$("$NGINX_BIN" -V 2>&1 | sed -n 's/^configure arguments: //p')
for needed in --with-compat --with-threads; do
  case " $bin_args " in
    *" $needed "*) ;;
    *) die "$NGINX_BIN was not configured with $needed; smart-imaging needs it" ;;
  esac
done

case "$FLAGS_MODE" in
  debian)
    [ -f "$NGINX_DEV_SRC/conf_flags" ] || die "$NGINX_DEV_SRC/conf_flags not found; try SYSTEM_NGINX_FLAGS=full"
    # Defines the array NGX_CONF_FLAGS: the configure flags of Debian's nginx
    # minus the modules it builds as dynamic modules and minus compiler
    # flags. This is what Debian builds its libnginx-mod-* packages with.
    NGX_CONF_FLAGS=()
    # shellcheck disable=SC1091
    . "$NGINX_DEV_SRC/conf_flags"
    configure_flags=("${NGX_CONF_FLAGS[@]}")
    for f in "${configure_flags[@]}"; do
      case " $bin_args " in
        *" $f "*) ;;
        *) die "conf_flags has '$f', which '$NGINX_BIN -V' does not: nginx-dev does not match the installed nginx" ;;
      esac
    done
    ;;
  full)
    # Every flag the binary was configured with, as nginx -V prints them
    # (shell-quoted). Modules added from outside the nginx tree are dropped:
    # their paths do not exist here.
    eval "set -- $bin_args"
    configure_flags=()
    for f in "$@"; do
      case "$f" in --add-module=*|--add-dynamic-module=*) ;; *) configure_flags+=("$f") ;; esac
    done
    ;;
  *) die "SYSTEM_NGINX_FLAGS must be 'debian' or 'full', not '$FLAGS_MODE'" ;;
esac

# --- 3. configured source tree ------------------------------------------------

src_dir=$TARGET_DIR/nginx-$bin_version
build_dir=$src_dir/objs
dev_pkg_version=$(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || echo unknown)
stamp_text="nginx-dev $dev_pkg_version from $NGINX_DEV_SRC; flags ($FLAGS_MODE): ${configure_flags[*]}"

if [ -f "$build_dir/ngx_auto_config.h" ] && [ -f "$src_dir/.configured" ] \
   && [ "$(cat "$src_dir/.configured")" = "$stamp_text" ]; then
  say "nginx $bin_version source tree is already configured: $src_dir"
else
  say "configuring nginx $bin_version in $src_dir ($FLAGS_MODE flags)"
  rm -rf "$src_dir"
  mkdir -p "$TARGET_DIR"
  cp -a "$NGINX_DEV_SRC" "$src_dir"
  if ! (cd "$src_dir" && ./configure "${configure_flags[@]}") >"$TARGET_DIR/configure.log" 2>&1; then
    tail -n 20 "$TARGET_DIR/configure.log" >&2
    die "nginx configure failed (full log: $TARGET_DIR/configure.log)"
  fi
  printf '%s' "$stamp_text" >"$src_dir/.configured"
fi

# nginx refuses a module whose NGX_MODULE_SIGNATURE (a string built from the
# configure results that affect the module ABI) differs from its own:
# compare before spending minutes on the build.
signature_re='[0-9]+,[0-9]+,[0-9]+,[01]{30,}'
bin_signature=$(grep -aoE "$signature_re" "$NGINX_BIN" | sort -u || true)
tree_signature=$(cd "$src_dir" \
  && printf '#include <ngx_config.h>\n#include <ngx_core.h>\nNGX_RS_SIG=NGX_MODULE_SIGNATURE\n' \
  | cc -E -I src/core -I src/event -I src/event/modules -I src/os/unix -I objs -x c - \
  | sed -n 's/^NGX_RS_SIG=//p' | tr -d '" ')
say "module signature: nginx binary ${bin_signature:-?}, configured tree $tree_signature"
if [ -n "$bin_signature" ] && [ "$bin_signature" != "$tree_signature" ]; then
  die "signatures differ: a module built from this tree would not load ('is not binary compatible')"
fi

# --- 4. build -----------------------------------------------------------------

say "building (cargo build --release --no-default-features, CARGO_TARGET_DIR=$TARGET_DIR)"
start=$(date +%s)
NGINX_SOURCE_DIR=$src_dir NGINX_BUILD_DIR=$build_dir CARGO_TARGET_DIR=$TARGET_DIR \
  "$CARGO" build --release -p ngx-smart-imaging --no-default-features
say "cargo took $(( $(date +%s) - start )) s"

so=$TARGET_DIR/release/lib$MODULE_NAME.so
[ -f "$so" ] || die "$so was not built"

so_signature=$(grep -aoE "$signature_re" "$so" | sort -u || true)
[ -z "$bin_signature" ] || [ "$so_signature" = "$bin_signature" ] \
  || die "the built module's signature ($so_signature) differs from $NGINX_BIN's ($bin_signature)"

# --- 5. does this nginx accept it? ---------------------------------------------

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/logs"
cat >"$tmp/nginx.conf" <<EOF
load_module $so;
pid $tmp/logs/nginx.pid;
thread_pool smart_imaging threads=1;
events {}
http {
    access_log off;
    # keep nginx away from the package's /var/lib/nginx
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    smart_imaging_thread_pool smart_imaging;
    server {
        listen 127.0.0.1:1;
        location / { smart_imaging on; }
    }
}
EOF
if ! "$NGINX_BIN" -p "$tmp/" -e "$tmp/logs/error.log" -c "$tmp/nginx.conf" -t -q 2>"$tmp/t.err"; then
  cat "$tmp/t.err" >&2
  die "$NGINX_BIN rejects the module"
fi
say "$NGINX_BIN -t accepts the module"

cat <<EOF

Built $so
for nginx $bin_version ($NGINX_BIN). To use it, add at the top of nginx.conf:

    load_module $so;

or install it where Debian keeps modules and load it from there:

    install -m 644 $so /usr/lib/nginx/modules/$MODULE_NAME.so
    load_module modules/$MODULE_NAME.so;
EOF
