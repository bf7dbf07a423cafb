#!/usr/bin/env bash
# Runs the t/*.t suites under the real Test::Nginx (openresty/test-nginx)
# instead of the project's own harness in t/lib/Test/Nginx.  Optional: `make
# test` runs them under t/lib.  See t/README.md ("Under the real
# Test::Nginx") for the commit checked and the results.
#
#   t/run-real-test-nginx.sh REAL_LIB_DIR [prove arguments]
#
# REAL_LIB_DIR is the lib/ directory of a test-nginx checkout, the one that
# holds Test/Nginx/Socket.pm, e.g.
#
#   git clone https://github.com/openresty/test-nginx /tmp/test-nginx
#   git -C /tmp/test-nginx checkout cf245a0
#   t/run-real-test-nginx.sh /tmp/test-nginx/lib            # every file
#   t/run-real-test-nginx.sh /tmp/test-nginx/lib t/008-formats.t
#
# The prove arguments default to "-r t/".  Besides what t/ needs anyway
# (scripts/install-deps.sh), the real harness needs Test::LongString
# (Debian: libtest-longstring-perl).
#
# Environment: TEST_NGINX_BINARY and TEST_NGINX_LOAD_MODULES default to
# what `make build` builds (the newest vendored nginx and the debug module).
# The real harness writes load_module with the path as given, i.e. relative
# to the server root: relative paths are made absolute here.  Everything
# else (TEST_NGINX_PORT, TEST_NGINX_SERVROOT, ...) is passed through.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
fi

lib=$(cd "$1" && pwd)
shift
if [ ! -f "$lib/Test/Nginx/Socket.pm" ]; then
  echo "run-real-test-nginx: $lib/Test/Nginx/Socket.pm not found (give the lib/ of a test-nginx checkout)" >&2
  exit 2
fi
if [ -f "$(dirname "$0")/lib/Test/Nginx/Socket.pm" ] && [ "$lib" -ef "$(dirname "$0")/lib" ]; then
  echo "run-real-test-nginx: $lib is the project's own harness" >&2
  exit 2
fi
if ! perl -MTest::LongString -e 1 2>/dev/null; then
  echo "run-real-test-nginx: the real Test::Nginx needs Test::LongString (apt-get install libtest-longstring-perl)" >&2
  exit 1
fi

cd "$(dirname "$0")/.."

if [ -z "${TEST_NGINX_BINARY:-}" ]; then
  nginx=$(ls -t target/debug/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1 || true)
  if [ -z "$nginx" ]; then
    echo "run-real-test-nginx: no nginx built (make build), and TEST_NGINX_BINARY is not set" >&2
    exit 1
  fi
  export TEST_NGINX_BINARY=$PWD/$nginx
fi

if [ -z "${TEST_NGINX_LOAD_MODULES+set}" ]; then
  TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so
fi
modules=
for m in $TEST_NGINX_LOAD_MODULES; do
  case $m in
    /*) ;;
    *) m=$PWD/$m ;;
  esac
  if [ ! -f "$m" ]; then
    echo "run-real-test-nginx: module $m not found (make build)" >&2
    exit 1
  fi
  modules="$modules${modules:+ }$m"
done
export TEST_NGINX_LOAD_MODULES=$modules

if [ $# -eq 0 ]; then
  set -- -r t/
fi
echo "run-real-test-nginx: Test::Nginx from $lib" >&2
exec prove -I "$lib" "$@"
