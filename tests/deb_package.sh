#!/usr/bin/env bash
# Installs the Debian package built by scripts/build-deb.sh (`make deb`) into
# the machine's nginx, checks that the package's modules-enabled link is
# what loads the module and that it converts, then purges the package.
#
#   tests/deb_package.sh        exit 0 = pass, 1 = fail
#
# Runs as root (it installs and removes a package). The nginx it starts is
# /usr/sbin/nginx with a test configuration in a temporary prefix that
# includes /etc/nginx/modules-enabled/*.conf, as Debian's own
# /etc/nginx/nginx.conf does, and adds only `smart_imaging on;` to a
# location: no load_module of its own. It leaves the system as it found it:
# the package purged (it purges a copy left installed before it starts),
# no nginx of its own running, and the system nginx service in the state it
# was in (the package's postinst triggers a reload of a running service;
# should the install have started one, it is stopped again).
#
# Environment (optional):
#   SMART_IMAGING_DEB    the .deb (default: the one target/deb/ has for the
#                        version in debian/changelog)
#   SMART_IMAGING_JPEG   JPEG to serve (default samples/sk_coffee.jpg)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PKG=libnginx-mod-http-smart-imaging
NGINX_BIN=/usr/sbin/nginx
MODULE_SO=/usr/lib/nginx/modules/ngx_http_smart_imaging_module.so
AVAILABLE=/usr/share/nginx/modules-available/mod-http-smart-imaging.conf
ENABLED=/etc/nginx/modules-enabled/50-mod-http-smart-imaging.conf

failures=0
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
die()  { echo "FAIL - $*"; echo "FAILED"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs and purges $PKG)"

if [ -n "${SMART_IMAGING_DEB:-}" ]; then
  DEB=$SMART_IMAGING_DEB
else
  version=$(dpkg-parsechangelog -S Version 2>/dev/null) || die "dpkg-parsechangelog failed (apt-get install dpkg-dev)"
  DEB=$ROOT/target/deb/${PKG}_${version}_$(dpkg --print-architecture).deb
fi
[ -f "$DEB" ] || die "$DEB not found (run: make deb)"
case $DEB in /*) ;; *) DEB=$PWD/$DEB ;; esac
JPEG=${SMART_IMAGING_JPEG:-$ROOT/samples/sk_coffee.jpg}
[ -f "$JPEG" ] || die "no JPEG to serve at $JPEG"
for tool in curl cmp od dwebp avifdec apt-get; do
  command -v "$tool" >/dev/null || die "$tool not installed (scripts/install-deps.sh)"
done
[ -x "$NGINX_BIN" ] || die "$NGINX_BIN not installed (scripts/build-for-system-nginx.sh installs it)"

export DEBIAN_FRONTEND=noninteractive
# Other apt users on the machine: wait for the dpkg lock instead of failing.
APT=(apt-get -y -qq -o DPkg::Lock::Timeout=300)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
# Is the package known to dpkg at all (installed, or removed with its
# configuration left)?
known() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -qv 'not-installed'
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

purge() {
  "${APT[@]}" purge "$PKG" >"$prefix/purge.log" 2>&1 || { cat "$prefix/purge.log"; return 1; }
}

prefix=$(mktemp -d "${TMPDIR:-/tmp}/smart-imaging-deb.XXXXXX")
# nginx's workers run as "nobody": let them read html/.
chmod 755 "$prefix"
mkdir -p "$prefix"/{logs,html/img,tmp}
cp "$JPEG" "$prefix/html/img/photo.jpg"
chmod -R a+rX "$prefix/html"

stop_nginx() {
  local pid
  pid=$(cat "$prefix/logs/nginx.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  # nginx removes its pid file when it has exited.
  for _ in $(seq 100); do [ -f "$prefix/logs/nginx.pid" ] || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$prefix/logs/nginx.pid"
}
we_installed=false
cleanup() {
  stop_nginx
  if $we_installed && known "$PKG"; then
    purge >/dev/null 2>&1 || true
  fi
  rm -rf "$prefix"
}
trap cleanup EXIT

echo "# $DEB"
echo "# $("$NGINX_BIN" -v 2>&1), nginx package $(dpkg-query -W -f='${Version}' nginx)"

# --- install --------------------------------------------------------------------

if known "$PKG"; then
  echo "# $PKG is already on the machine ($(dpkg-query -W -f='${Status} ${Version}' "$PKG")): purging it first"
  purge || die "could not purge the $PKG left from before"
fi
running_before=$(system_nginx_pid)

we_installed=true
if "${APT[@]}" install "$DEB" >"$prefix/install.log" 2>&1; then
  ok "apt-get install $(basename "$DEB")"
else
  sed 's/^/#   /' "$prefix/install.log"
  die "apt-get install $(basename "$DEB")"
fi

running_after=$(system_nginx_pid)
if [ -z "$running_before" ] && [ -n "$running_after" ]; then
  echo "# the install started the system nginx (pid $running_after): stopping it"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop nginx.service || kill -QUIT "$running_after" || true
  else
    kill -QUIT "$running_after" || true
  fi
fi

# --- what the package installed -------------------------------------------------

if [ -f "$MODULE_SO" ]; then ok "$MODULE_SO installed"; else fail "$MODULE_SO missing"; fi
if [ "$(cat "$AVAILABLE" 2>/dev/null)" = "load_module modules/ngx_http_smart_imaging_module.so;" ]; then
  ok "$AVAILABLE: load_module modules/ngx_http_smart_imaging_module.so;"
else
  fail "$AVAILABLE: '$(cat "$AVAILABLE" 2>/dev/null || echo missing)'"
fi
if [ -L "$ENABLED" ] && [ "$(readlink "$ENABLED")" = "$AVAILABLE" ]; then
  ok "$ENABLED -> $AVAILABLE"
else
  fail "$ENABLED is not a link to $AVAILABLE ($(ls -l "$ENABLED" 2>&1))"
fi
# The exact nginx ABI: the one the installed nginx provides.
depends=$(dpkg-query -W -f='${Depends}' "$PKG")
abi=$(dpkg-query -W -f='${Provides}' nginx | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
if [ -n "$abi" ] && printf '%s\n' "$depends" | tr ',' '\n' | sed 's/^ *//' | grep -qx "$abi"; then
  ok "Depends: $abi (what nginx $(dpkg-query -W -f='${Version}' nginx) provides)"
else
  fail "Depends '$depends' lacks the ABI the installed nginx provides ('$abi')"
fi
for lib in libavif15 libjxr0; do
  if printf '%s\n' "$depends" | grep -q "\b$lib\b"; then ok "Depends: $lib"; else fail "Depends lacks $lib: '$depends'"; fi
done

# --- nginx loads it through modules-enabled --------------------------------------

write_conf() {
  cat >"$prefix/nginx.conf" <<EOF
# As /etc/nginx/nginx.conf: the packages' modules are loaded from here.
include /etc/nginx/modules-enabled/*.conf;

worker_processes 1;
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log info;

events {
    worker_connections 64;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;

    server {
        listen 127.0.0.1:$1;
        root $prefix/html;

        location /img/ {
            smart_imaging on;
        }
    }
}
EOF
}

# No -p: `load_module modules/...` in the package's .conf is relative to the
# binary's own prefix (/usr/share/nginx, whose modules/ links to
# /usr/lib/nginx/modules), as for the system service. Every path nginx
# writes to is in $prefix.
run_nginx() { "$NGINX_BIN" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" "$@"; }

write_conf 1
if out=$(run_nginx -t 2>&1); then
  ok "nginx -t: smart_imaging is known through /etc/nginx/modules-enabled"
else
  echo "$out" | sed 's/^/#   /'
  fail "nginx -t with /etc/nginx/modules-enabled/*.conf"
fi

port=
for _ in 1 2 3 4 5; do
  try=$((20000 + RANDOM % 20000))
  (exec 3<>"/dev/tcp/127.0.0.1/$try") 2>/dev/null && continue
  write_conf "$try"
  if run_nginx 2>"$prefix/start.err"; then
    port=$try
    break
  fi
  grep -q "Address already in use" "$prefix/start.err" || { sed 's/^/#   /' "$prefix/start.err"; break; }
done
[ -n "$port" ] || die "nginx starts"
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
ok "nginx started on 127.0.0.1:$port (master pid $(cat "$prefix/logs/nginx.pid"))"

get() { # get <name> [curl args...]: body to $prefix/<name>.body, headers to .hdr
  local name=$1
  shift
  curl -s --max-time 60 -D "$prefix/$name.hdr" -o "$prefix/$name.body" "$@" \
    "http://127.0.0.1:$port/img/photo.jpg" || true
}
header() { grep -i "^$2:" "$prefix/$1.hdr" | sed -e 's/^[^:]*: *//' -e 's/\r$//' || true; }
status() { head -n 1 "$prefix/$1.hdr" 2>/dev/null | awk '{print $2}'; }
size() { stat -c %s "$prefix/$1.body" 2>/dev/null || echo 0; }

check_length() {
  local len
  len=$(header "$1" Content-Length)
  if [ "$len" = "$(size "$1")" ]; then
    ok "$1: Content-Length $len matches the body"
  else
    fail "$1: Content-Length '$len' but $(size "$1") bytes received"
  fi
}

# WebP.
get webp -H 'Accept: image/webp,*/*'
magic=$(od -A n -c -N 12 "$prefix/webp.body" 2>/dev/null | tr -d ' \n')
if [ "$(status webp)" = 200 ] && [ "$(header webp Content-Type)" = image/webp ] && [[ "$magic" =~ ^RIFF.*WEBP$ ]]; then
  ok "Accept: image/webp -> 200 image/webp, RIFF....WEBP, $(size webp) bytes (original $(stat -c %s "$JPEG"))"
else
  fail "Accept: image/webp -> status $(status webp), Content-Type '$(header webp Content-Type)', magic '$magic'"
fi
check_length webp
if dwebp "$prefix/webp.body" -o /dev/null >/dev/null 2>&1; then ok "dwebp decodes it"; else fail "dwebp cannot decode the WebP"; fi

# AVIF, preferred over WebP.
get avif -H 'Accept: image/avif,image/webp,*/*'
brand=$(od -A n -c -j 4 -N 8 "$prefix/avif.body" 2>/dev/null | tr -d ' \n')
if [ "$(status avif)" = 200 ] && [ "$(header avif Content-Type)" = image/avif ] && [ "$brand" = ftypavif ]; then
  ok "Accept: image/avif,image/webp -> 200 image/avif, ftyp brand avif, $(size avif) bytes"
else
  fail "Accept: image/avif,image/webp -> status $(status avif), Content-Type '$(header avif Content-Type)', box '$brand'"
fi
check_length avif
if avifdec "$prefix/avif.body" "$prefix/avif.png" >/dev/null 2>&1; then ok "avifdec decodes it"; else fail "avifdec cannot decode the AVIF"; fi

# Neither: the file itself.
get plain
if [ "$(status plain)" = 200 ] && [ "$(header plain Content-Type)" = image/jpeg ] && cmp -s "$JPEG" "$prefix/plain.body"; then
  ok "no Accept -> 200 image/jpeg, the file byte for byte"
else
  fail "no Accept -> status $(status plain), Content-Type '$(header plain Content-Type)'"
fi

if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$prefix/logs/error.log" >"$prefix/bad.log"; then
  sed 's/^/#   /' "$prefix/bad.log"
  fail "error.log has alert/crit/emerg lines"
else
  ok "error.log has no alert/crit/emerg lines"
fi

stop_nginx
if [ -f "$prefix/logs/nginx.pid" ] || pgrep -f "$prefix/nginx.conf" >/dev/null; then
  fail "nginx did not stop"
else
  ok "nginx stopped"
fi

# --- purge ------------------------------------------------------------------------

if purge; then ok "apt-get purge $PKG"; else fail "apt-get purge $PKG"; fi
we_installed=false
if known "$PKG"; then fail "dpkg still knows $PKG: $(dpkg-query -W -f='${Status}' "$PKG")"; fi
for f in "$MODULE_SO" "$AVAILABLE" "$ENABLED" "$ENABLED.removed"; do
  if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is still there after the purge"; else ok "$f gone"; fi
done
if [ -z "$running_before" ] && [ -n "$(system_nginx_pid)" ]; then
  fail "a system nginx is running (pid $(system_nginx_pid)), none was before"
else
  ok "system nginx as before the test ($([ -n "$running_before" ] && echo "running" || echo "not running"))"
fi

if [ "$failures" -ne 0 ]; then
  echo "FAILED: $failures check(s)"
  exit 1
fi
echo "PASS: $PKG installs, loads through modules-enabled, converts and purges cleanly"
