#!/usr/bin/env bash
# Runs the nginx cargo built, with the module loaded, under valgrind's
# memcheck, sends it requests that go through every codec and the main
# paths of the module, and checks that the responses are right and that
# valgrind reports no error in any process (master and worker).
#
#   tests/valgrind.sh        (make test-valgrind) exit 0 = pass, 1 = fail
#
# The requests: JPEG and PNG decoding; WebP, AVIF, JPEG 2000 and JPEG XR
# encoding (and their decoders, which the visual-quality guard runs on each
# candidate); resizing, and JPEG and PNG encoding after it; a proxied
# response; the guard off; a corrupt JPEG and a pixel bomb (the original
# served); HEAD (converted as GET is); a client that goes away while its image converts (the
# conversion goes on into the stash); the status endpoint. Small images
# (the samples, resized by the request) keep valgrind's ~50x slowdown
# bearable: a few minutes in all.
#
# Suppressions: tests/valgrind.supp (each entry says why).
#
# Environment (optional):
#   NGINX_BIN   nginx to run (the newest target/debug/build/nginx-sys-*/out/objs/nginx)
#   MODULE      the module (target/debug/libngx_http_smart_imaging_module.so)
#   VALGRIND_KEEP=1   keep the prefix (logs, valgrind's reports) after a pass
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
NGINX_BIN=${NGINX_BIN:-$ROOT/$(ls -t target/debug/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)}
MODULE=${MODULE:-$ROOT/target/debug/libngx_http_smart_imaging_module.so}
for f in "$NGINX_BIN" "$MODULE"; do
  [ -f "$f" ] || { echo "FAIL - $f not found (cargo build)"; exit 1; }
done
for tool in valgrind curl cmp dwebp avifdec opj_decompress JxrDecApp; do
  command -v "$tool" >/dev/null || { echo "FAIL - $tool not installed (scripts/install-deps.sh)"; exit 1; }
done

failures=0
ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }

prefix=$(mktemp -d "${TMPDIR:-/tmp}/smart-imaging-valgrind.XXXXXX")
chmod 755 "$prefix"
mkdir -p "$prefix"/{conf,logs,html/img,tmp,out}
cp samples/sk_coffee.jpg "$prefix/html/img/photo.jpg"
cp samples/sk_horse_alpha.png "$prefix/html/img/alpha.png"
cp samples/sk_text.png "$prefix/html/img/text.png"
# The first 60 % of a JPEG: libjpeg's "premature end of data" is a failure.
head -c $(( $(stat -c %s samples/sk_coffee.jpg) * 6 / 10 )) samples/sk_coffee.jpg >"$prefix/html/img/corrupt.jpg"
# A PNG header claiming 100000x100000 pixels (the fuzz seed of the same name).
cp fuzz/seeds/decode/huge.png "$prefix/html/img/bomb.png"
chmod -R a+rX "$prefix/html"

port=$(( 20000 + RANDOM % 20000 ))
origin=$(( port + 1 ))

cat >"$prefix/conf/nginx.conf" <<EOF
load_module $MODULE;

# A master and one worker, in the foreground under valgrind (which
# follows the fork).
daemon off;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log info;
thread_pool smart_imaging threads=2 max_queue=16;

events {
    worker_connections 64;
}

http {
    types {
        image/jpeg jpg;
        image/png png;
    }
    default_type application/octet-stream;
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    smart_imaging_thread_pool smart_imaging;
    smart_imaging_stash_path stash;
    # Conversions take seconds under valgrind.
    smart_imaging_timeout 600s;
    smart_imaging_debug_header on;

    server {
        listen 127.0.0.1:$port;
        root html;

        location /img/ {
            smart_imaging on;
        }
        location /noguard/ {
            alias html/img/;
            smart_imaging on;
            smart_imaging_guard off;
        }
        location /quick/ {
            alias html/img/;
            smart_imaging on;
            smart_imaging_timeout 1s;
        }
        location /shop/ {
            smart_imaging on;
            proxy_pass http://127.0.0.1:$origin/img/;
        }
        location = /metrics {
            smart_imaging_status;
        }
    }

    server {
        listen 127.0.0.1:$origin;
        root html;
    }
}
EOF

vg_pid=
stop_nginx() {
  [ -n "$vg_pid" ] || return 0
  local pid
  pid=$(cat "$prefix/logs/nginx.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null || true
  # valgrind writes its reports as each process exits.
  for _ in $(seq 600); do kill -0 "$vg_pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$vg_pid" 2>/dev/null || true
  wait "$vg_pid" 2>/dev/null || true
  vg_pid=
}
cleanup() {
  stop_nginx
  if [ "$failures" -eq 0 ] && [ "${VALGRIND_KEEP:-0}" != 1 ]; then
    rm -rf "$prefix"
  else
    echo "# kept $prefix (logs/: error.log, valgrind.<pid>.log)"
  fi
}
trap cleanup EXIT

started=$SECONDS
echo "# $("$NGINX_BIN" -v 2>&1) with $MODULE, under $(valgrind --version)"
valgrind --tool=memcheck --trace-children=yes --vgdb=no --error-limit=no --num-callers=40 \
  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --suppressions="$ROOT/tests/valgrind.supp" \
  --log-file="$prefix/logs/valgrind.%p.log" \
  "$NGINX_BIN" -p "$prefix" -c conf/nginx.conf -e logs/error.log &
vg_pid=$!

for _ in $(seq 300); do
  curl -s -o /dev/null "http://127.0.0.1:$port/metrics" && break
  sleep 0.5
done

# get NAME PATH [curl options...]: the response in out/NAME.{headers,body}.
get() {
  local name=$1 path=$2
  shift 2
  curl -s --max-time 900 -D "$prefix/out/$name.headers" -o "$prefix/out/$name.body" "$@" \
    "http://127.0.0.1:$port$path" || true
}
header() { # header NAME FIELD
  sed -n "s/^$2: *//Ip" "$prefix/out/$1.headers" | tr -d '\r' | head -n 1
}
status() { head -n 1 "$prefix/out/$1.headers" | cut -d' ' -f2; }

# A decoder other than the core's reads the file: `check_decodes NAME TYPE`.
check_decodes() {
  local name=$1 type=$2 file=$prefix/out/$1.body
  case $type in
    image/webp) dwebp -quiet "$file" -o "$prefix/out/$name.png" ;;
    image/avif) avifdec "$file" "$prefix/out/$name.png" >/dev/null ;;
    image/jp2) cp "$file" "$prefix/out/$name.jp2" &&
      opj_decompress -quiet -i "$prefix/out/$name.jp2" -o "$prefix/out/$name.ppm" >/dev/null 2>&1 ;;
    image/jxr) cp "$file" "$prefix/out/$name.jxr" &&
      JxrDecApp -i "$prefix/out/$name.jxr" -o "$prefix/out/$name.bmp" >/dev/null ;;
    image/jpeg) [ "$(head -c 3 "$file" | od -An -tx1 | tr -d ' ')" = ffd8ff ] ;;
    image/png) [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '211PNG' ] ;;
  esac
}

# converted NAME PATH TYPE [curl options]: converted to TYPE, decodable.
converted() {
  local name=$1 path=$2 type=$3
  shift 3
  get "$name" "$path" "$@"
  local got result
  got=$(header "$name" Content-Type)
  result=$(header "$name" X-Smart-Imaging)
  if [ "$(status "$name")" = 200 ] && [ "$got" = "$type" ] && [[ $result == converted* ]] &&
      check_decodes "$name" "$type"; then
    ok "$name: $type ($result)"
  else
    fail "$name: wanted $type, got $(status "$name") $got ($result)"
  fi
}

# original NAME PATH FILE REASON [curl options]: FILE byte for byte.
original() {
  local name=$1 path=$2 file=$3 reason=$4
  shift 4
  get "$name" "$path" "$@"
  local result
  result=$(header "$name" X-Smart-Imaging)
  if [ "$(status "$name")" = 200 ] && cmp -s "$prefix/out/$name.body" "$prefix/html/img/$file" &&
      [[ $result == *"reason=$reason"* ]]; then
    ok "$name: the original ($result)"
  else
    fail "$name: wanted the original with reason=$reason, got $(status "$name") ($result)"
  fi
}

safari13='Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15'
ie11='Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko'

converted jpeg-webp '/img/photo.jpg?wid=160' image/webp -H 'Accept: image/webp,*/*'
converted jpeg-avif '/img/photo.jpg?wid=160' image/avif -H 'Accept: image/avif,image/webp,*/*'
converted png-alpha-avif '/img/alpha.png?wid=160' image/avif -H 'Accept: image/avif,image/webp,*/*'
converted png-alpha-webp '/img/alpha.png?wid=120' image/webp -H 'Accept: image/webp,*/*'
converted jpeg-jp2 '/img/photo.jpg?wid=160' image/jp2 -H 'Accept: image/*' -A "$safari13"
converted png-alpha-jxr '/img/alpha.png?wid=160' image/jxr -H 'Accept: */*' -A "$ie11"
converted jpeg-resized '/img/photo.jpg?wid=160' image/jpeg -H 'Accept: */*'
converted png-resized '/img/text.png?wid=160' image/png -H 'Accept: */*'
converted proxied-webp '/shop/photo.jpg?wid=160' image/webp -H 'Accept: image/webp,*/*'
converted unguarded-webp '/noguard/photo.jpg?qlt=50' image/webp -H 'Accept: image/webp,*/*'
original corrupt '/img/corrupt.jpg' corrupt.jpg decode -H 'Accept: image/webp,*/*'
original bomb '/img/bomb.png' bomb.png too-many-pixels -H 'Accept: image/webp,*/*'

get head '/img/photo.jpg' -I -H 'Accept: image/webp,*/*'
# HEAD is converted as GET is (docs/responses.md#head): WebP's headers
# (tests/head.rs checks that no body follows).
if [ "$(status head)" = 200 ] && [ "$(header head Content-Type)" = image/webp ]; then
  ok "head: HEAD converted"
else
  fail "head: $(status head) $(header head Content-Type)"
fi

# A client that gives up after 1 s on a conversion that takes longer under
# valgrind: the conversion runs on, and nginx ends the request (in the
# access log) when it finishes.
lines() { wc -l <"$prefix/logs/access.log"; }
before=$(lines)
if curl -s --max-time 1 -o /dev/null -H 'Accept: image/avif,*/*' \
    "http://127.0.0.1:$port/img/photo.jpg?wid=300"; then
  fail "abort: the request completed within 1 s"
else
  for _ in $(seq 900); do [ "$(lines)" -gt "$before" ] && break; sleep 1; done
  if [ "$(lines)" -gt "$before" ]; then
    ok "abort: client gone after 1 s, request ended: $(tail -n 1 "$prefix/logs/access.log" | cut -d'"' -f2,3)"
  else
    fail "abort: the request never ended"
  fi
fi

# A conversion that outlasts smart_imaging_timeout: the original at once,
# the result stashed when it finishes, and served from the stash next time.
original timeout '/quick/photo.jpg?wid=200' photo.jpg timeout -H 'Accept: image/webp,*/*'
for _ in $(seq 900); do
  grep -q 'result stashed' "$prefix/logs/error.log" && break
  sleep 1
done
converted from-stash '/quick/photo.jpg?wid=200' image/webp -H 'Accept: image/webp,*/*'
[[ $(header from-stash X-Smart-Imaging) == *from=stash* ]] || fail "from-stash: not from the stash"

get metrics /metrics
if grep -q '^smart_imaging_' "$prefix/out/metrics.body"; then
  ok "metrics: served"
else
  fail "metrics: no smart_imaging_ line"
fi

stop_nginx
elapsed=$((SECONDS - started))

if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$prefix/logs/error.log"; then
  fail "error.log has alert/crit/emerg lines or a crashed process"
else
  ok "error.log: no alert, crit, emerg, no crashed process"
fi
reports=("$prefix"/logs/valgrind.*.log)
errors=0
for report in "${reports[@]}"; do
  summary=$(grep -h 'ERROR SUMMARY' "$report" | tail -n 1)
  echo "# $(basename "$report"): ${summary#==*== }"
  count=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' <<<"$summary")
  if [ -z "$count" ] || [ "$count" -ne 0 ]; then
    errors=$((errors + ${count:-1}))
    sed -n '/^==[0-9]*== [A-Z].*/,/^==[0-9]*== $/p' "$report" | head -n 80
  fi
done
if [ "${#reports[@]}" -ge 2 ] && [ "$errors" -eq 0 ]; then
  ok "valgrind: 0 errors in ${#reports[@]} processes (${elapsed}s)"
else
  fail "valgrind: $errors errors in ${#reports[@]} processes"
fi

[ "$failures" -eq 0 ] || { echo "# $failures failure(s)"; exit 1; }
echo "# all passed in ${elapsed}s"
