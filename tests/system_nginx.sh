#!/usr/bin/env bash
# Loads the module built by scripts/build-for-system-nginx.sh into the
# distribution's nginx (/usr/sbin/nginx) and checks that it converts.
#
#   tests/system_nginx.sh        exit 0 = pass (or SKIP), 1 = fail
#
# Runs nginx in a throw-away prefix (-p, -e, its own pid file and temp
# paths): /etc/nginx, /var/lib/nginx and the system service are not touched.
# The nginx it starts is stopped on exit, whatever happens.
#
# Environment (optional):
#   NGINX_BIN            nginx to test (/usr/sbin/nginx)
#   SMART_IMAGING_SO     module (target/system-nginx/release/libngx_http_smart_imaging_module.so)
#   SMART_IMAGING_JPEG   JPEG to serve (/work/shared/corpus/sk_coffee.jpg, else samples/sk_coffee.jpg)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
SO=${SMART_IMAGING_SO:-$ROOT/target/system-nginx/release/libngx_http_smart_imaging_module.so}

if [ ! -x "$NGINX_BIN" ]; then
  echo "SKIP: $NGINX_BIN not found (apt-get install nginx)"
  exit 0
fi
if [ ! -f "$SO" ]; then
  echo "SKIP: $SO not built (run scripts/build-for-system-nginx.sh)"
  exit 0
fi
for tool in curl cmp od; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 0; }
done

JPEG=${SMART_IMAGING_JPEG:-}
if [ -z "$JPEG" ]; then
  for candidate in "$ROOT/../shared/corpus/sk_coffee.jpg" "$ROOT/samples/sk_coffee.jpg"; do
    if [ -f "$candidate" ]; then JPEG=$candidate; break; fi
  done
fi
[ -n "$JPEG" ] && [ -f "$JPEG" ] || { echo "SKIP: no JPEG to serve (set SMART_IMAGING_JPEG)"; exit 0; }

failures=0
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }

prefix=$(mktemp -d "${TMPDIR:-/tmp}/smart-imaging-system-nginx.XXXXXX")
# When run as root, nginx's workers run as "nobody": let them read html/.
chmod 755 "$prefix"
mkdir -p "$prefix"/{conf,logs,html/img,html/exp,tmp}
cp "$JPEG" "$prefix/html/img/photo.jpg"
cp "$JPEG" "$prefix/html/exp/photo.jpg"
chmod -R a+rX "$prefix/html"

stop_nginx() {
  local pid
  pid=$(cat "$prefix/logs/nginx.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  # nginx removes its pid file when it has exited (a dead master may linger
  # as a zombie here, so kill -0 is no test).
  for _ in $(seq 50); do [ -f "$prefix/logs/nginx.pid" ] || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop_nginx
  rm -rf "$prefix"
}
trap cleanup EXIT

write_conf() {
  cat >"$prefix/conf/nginx.conf" <<EOF
load_module $SO;

worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log info;
thread_pool smart_imaging threads=2 max_queue=16;

events {
    worker_connections 64;
}

http {
    types {
        image/jpeg jpg jpeg;
    }
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    smart_imaging_thread_pool smart_imaging;

    server {
        listen 127.0.0.1:$1;
        root html;

        location /img/ {
            smart_imaging on;
            smart_imaging_ttl 1h;
        }

        # nginx's own Cache-Control wins over smart_imaging_ttl
        location /exp/ {
            smart_imaging on;
            smart_imaging_ttl 1h;
            expires 2h;
        }
    }
}
EOF
}

echo "# $("$NGINX_BIN" -v 2>&1) with $SO"
echo "# serving $JPEG ($(stat -c %s "$JPEG") bytes)"

write_conf 8080
if out=$("$NGINX_BIN" -p "$prefix/" -e "$prefix/logs/error.log" -c conf/nginx.conf -t 2>&1); then
  ok "nginx -t loads the module"
else
  echo "$out" | sed 's/^/#   /'
  fail "nginx -t loads the module"
  exit 1
fi

# Start on a free port (retry if another process grabs it first).
port=
for _ in 1 2 3 4 5; do
  try=$((20000 + RANDOM % 20000))
  (exec 3<>"/dev/tcp/127.0.0.1/$try") 2>/dev/null && continue
  write_conf "$try"
  if "$NGINX_BIN" -p "$prefix/" -e "$prefix/logs/error.log" -c conf/nginx.conf 2>"$prefix/start.err"; then
    port=$try
    break
  fi
  grep -q "Address already in use" "$prefix/start.err" || { cat "$prefix/start.err"; break; }
done
if [ -z "$port" ]; then
  fail "nginx starts"
  exit 1
fi
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
ok "nginx started on 127.0.0.1:$port (master pid $(cat "$prefix/logs/nginx.pid"))"

get() { # get <path> <name> [curl args...]: body to $prefix/<name>.body, headers to .hdr
  local path=$1 name=$2
  shift 2
  curl -s --max-time 30 -D "$prefix/$name.hdr" -o "$prefix/$name.body" "$@" \
    "http://127.0.0.1:$port$path" || true
}
header() { # header <name> <Header-Name>: its values, one per line
  grep -i "^$2:" "$prefix/$1.hdr" | sed -e 's/^[^:]*: *//' -e 's/\r$//' || true
}
status() { head -n 1 "$prefix/$1.hdr" 2>/dev/null | awk '{print $2}'; }

# 1. A client that accepts WebP gets WebP.
get /img/photo.jpg webp -H 'Accept: image/webp,*/*'
ct=$(header webp Content-Type)
magic=$(od -A n -c -N 12 "$prefix/webp.body" 2>/dev/null | tr -d ' \n')
size=$(stat -c %s "$prefix/webp.body" 2>/dev/null || echo 0)
if [ "$(status webp)" = 200 ] && [ "$ct" = image/webp ]; then
  ok "Accept: image/webp -> 200, Content-Type: image/webp"
else
  fail "Accept: image/webp -> status $(status webp), Content-Type '$ct' (want 200, image/webp)"
fi
if [[ "$magic" =~ ^RIFF.*WEBP$ ]]; then
  ok "WebP body is RIFF....WEBP ($size bytes, original $(stat -c %s "$JPEG"))"
else
  fail "WebP body does not start with RIFF....WEBP (got '$magic', $size bytes)"
fi
len=$(header webp Content-Length)
if [ -z "$len" ] || [ "$len" = "$size" ]; then
  ok "Content-Length (${len:-chunked}) matches the body"
else
  fail "Content-Length $len but $size bytes received"
fi
if command -v dwebp >/dev/null 2>&1; then
  if dwebp "$prefix/webp.body" -o /dev/null >/dev/null 2>&1; then
    ok "dwebp decodes the WebP body"
  else
    fail "dwebp cannot decode the WebP body"
  fi
fi
if header webp Vary | grep -qi accept; then ok "Vary: Accept"; else fail "no Vary: Accept on the WebP response"; fi
cc=$(header webp Cache-Control)
if [ "$cc" = max-age=3600 ]; then ok "smart_imaging_ttl 1h -> Cache-Control: max-age=3600"; else fail "Cache-Control '$cc' (want max-age=3600)"; fi

# 2. Without WebP in Accept the file comes back byte for byte.
get /img/photo.jpg plain
ct=$(header plain Content-Type)
if [ "$(status plain)" = 200 ] && [ "$ct" = image/jpeg ] && cmp -s "$JPEG" "$prefix/plain.body"; then
  ok "no Accept -> 200, image/jpeg, body identical to the file"
else
  fail "no Accept -> status $(status plain), Content-Type '$ct', body $(cmp -s "$JPEG" "$prefix/plain.body" && echo identical || echo DIFFERENT)"
fi
get /img/photo.jpg jpegonly -H 'Accept: image/jpeg'
if [ "$(header jpegonly Content-Type)" = image/jpeg ] && cmp -s "$JPEG" "$prefix/jpegonly.body"; then
  ok "Accept: image/jpeg -> body identical to the file"
else
  fail "Accept: image/jpeg -> Content-Type '$(header jpegonly Content-Type)', body not identical"
fi

# 3. With `expires`, nginx's Cache-Control stays, once (on 1.22 that header
#    lives in an array the module must keep consistent).
get /exp/photo.jpg exp -H 'Accept: image/webp'
ccs=$(header exp Cache-Control | tr '\n' ' ' | sed 's/ $//')
if [ "$(header exp Content-Type)" = image/webp ] && [ "$ccs" = max-age=7200 ]; then
  ok "expires 2h + smart_imaging_ttl -> one Cache-Control: max-age=7200, WebP body"
else
  fail "expires 2h + smart_imaging_ttl -> Content-Type '$(header exp Content-Type)', Cache-Control '$ccs' (want image/webp, max-age=7200)"
fi

# 4. Nothing alarming in the error log, and the worker survived.
if grep -E '\[(alert|crit|emerg)\]' "$prefix/logs/error.log" >"$prefix/bad.log"; then
  sed 's/^/#   /' "$prefix/bad.log"
  fail "error.log has alert/crit/emerg lines"
else
  ok "error.log has no alert/crit/emerg lines"
fi
if grep -q 'exited on signal' "$prefix/logs/error.log"; then
  fail "a worker crashed"
fi

stop_nginx
if [ -f "$prefix/logs/nginx.pid" ]; then fail "nginx did not stop"; else ok "nginx stopped"; fi

if [ "$failures" -ne 0 ]; then
  echo "FAILED: $failures check(s) against $("$NGINX_BIN" -v 2>&1)"
  exit 1
fi
echo "PASS: smart-imaging works in $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') ($NGINX_BIN)"
