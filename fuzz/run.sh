#!/usr/bin/env bash
# Builds and runs the fuzz targets of fuzz/fuzz_targets/ (libFuzzer through
# cargo-fuzz, on the stable toolchain; see docs/testing.md#fuzzing).
#
#   fuzz/run.sh build                     install cargo-fuzz if missing, build every target
#   fuzz/run.sh regressions               every reproducer in fuzz/regressions/<target>/, once
#   fuzz/run.sh run TARGET...             fuzz each TARGET (default: all) in turn, for
#                                         FUZZ_RUNS executions (default 10000000) or
#                                         FUZZ_SECONDS seconds, whichever comes first
#
# Environment: FUZZ_RUNS, FUZZ_SECONDS (0 or unset: no time bound),
# FUZZ_TIMEOUT (seconds one input may take, default 120), FUZZ_RSS_MB
# (memory limit, default 3072), FUZZ_NICE (default 10).
#
# What each run found goes to fuzz/corpus/<target>/ (kept between runs,
# not committed), a crash's input to fuzz/artifacts/<target>/, the log to
# fuzz/logs/<target>.log; the last line of each log (libFuzzer's final
# statistics) is summarised in fuzz/logs/summary.txt.
set -euo pipefail

cd "$(dirname "$0")"
FUZZ_DIR=$PWD
TARGETS=(policy decode container transcode)
TRIPLE=x86_64-unknown-linux-gnu
BIN_DIR=$FUZZ_DIR/target/$TRIPLE/release
# libFuzzer's exit status when stopped by SIGINT (its default, made
# explicit): not a failure.
INTERRUPTED=72

# AddressSanitizer needs rustc's -Zsanitizer, an unstable flag: the stable
# toolchain takes it under RUSTC_BOOTSTRAP=1 (it ships the ASan runtime).
# The C codecs built by the -sys crates (mozjpeg, libwebp, OpenJPEG) are
# compiled by clang with ASan and libFuzzer's coverage too, so that their
# memory errors are caught and their branches guide the search. The system
# libraries (libavif with libaom and dav1d, jxrlib) are not instrumented.
export RUSTC_BOOTSTRAP=1
export CC_x86_64_unknown_linux_gnu=clang-14
export CFLAGS_x86_64_unknown_linux_gnu="-fsanitize=address -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp -fno-omit-frame-pointer -g"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0:allocator_may_return_null=1"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$FUZZ_DIR/lsan.supp:print_suppressions=0"

need_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install, into ~/.cargo/bin)"
    cargo install cargo-fuzz --locked
  fi
  if ! command -v clang-14 >/dev/null; then
    echo "fuzz: clang-14 is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
}

build() {
  need_cargo_fuzz
  nice -n "${FUZZ_NICE:-10}" cargo fuzz build --sanitizer address "$@"
}

# libFuzzer's options for a target.
options() {
  local target=$1
  echo -timeout="${FUZZ_TIMEOUT:-120}" -rss_limit_mb="${FUZZ_RSS_MB:-3072}" \
    -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$target/" \
    -interrupted_exitcode="$INTERRUPTED"
  case $target in
    policy) echo -dict="$FUZZ_DIR/policy.dict" -max_len=4096 ;;
    # Room for the seeds (small images behind a control byte).
    transcode | decode) echo -max_len=65536 ;;
    container) echo -max_len=20000 ;;
  esac
}

regressions() {
  local status=0 target files
  for target in "${TARGETS[@]}"; do
    files=("$FUZZ_DIR/regressions/$target"/*)
    [ -e "${files[0]}" ] || continue
    echo "fuzz: $target: ${#files[@]} reproducer(s)"
    # shellcheck disable=SC2046
    if ! "$BIN_DIR/$target" $(options "$target") -runs=1 "${files[@]}" \
        >"$FUZZ_DIR/logs/$target-regressions.log" 2>&1; then
      echo "fuzz: $target: a reproducer fails, see fuzz/logs/$target-regressions.log" >&2
      tail -n 30 "$FUZZ_DIR/logs/$target-regressions.log" >&2
      status=1
    fi
  done
  return $status
}

# Linux schedules a session's processes as one group (autogroup), and
# `nice` only ranks a process within its group: a fuzzer started in a
# session of its own (`setsid nohup fuzz/run.sh run ...`, as
# docs/testing.md does) competed as an equal with the builds and
# benchmarks of the shell beside it, however niced. When this script leads
# its own session, the whole group gets FUZZ_NICE too. (Not otherwise: the
# group would be the caller's terminal.)
nice_session() {
  local sid
  sid=$(ps -o sid= -p $$ | tr -d ' ')
  if [ "$sid" = "$$" ] && [ -w /proc/self/autogroup ]; then
    echo "${FUZZ_NICE:-10}" >/proc/self/autogroup 2>/dev/null || true
  fi
}

run() {
  local runs=${FUZZ_RUNS:-10000000} seconds=${FUZZ_SECONDS:-0} target log status=0
  nice_session
  for target in "$@"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log=$FUZZ_DIR/logs/$target.log
    echo "fuzz: $target: up to $runs runs$([ "$seconds" -gt 0 ] && echo " or ${seconds}s") (log: fuzz/logs/$target.log)"
    local start=$SECONDS rc=0
    # New inputs go to corpus/ (the first directory); seeds/ and
    # regressions/ are read, never written.
    # shellcheck disable=SC2046
    nice -n "${FUZZ_NICE:-10}" "$BIN_DIR/$target" $(options "$target") \
      -runs="$runs" -max_total_time="$seconds" \
      "corpus/$target" "seeds/$target" $( [ -d "regressions/$target" ] && echo "regressions/$target") \
      >"$log" 2>&1 || rc=$?
    summarise "$target" "$rc" $((SECONDS - start)) | tee -a logs/summary.txt
    if [ "$rc" -eq "$INTERRUPTED" ]; then
      # Stopped with SIGINT, the way to stop a run early: its executions
      # count, and nothing was found.
      echo "fuzz: $target: stopped (SIGINT) after $((SECONDS - start)) s"
      continue
    fi
    if [ "$rc" -ne 0 ]; then
      echo "fuzz: $target FAILED (exit $rc): the input is in fuzz/artifacts/$target/" >&2
      grep -m1 -A25 -E "^==[0-9]+==ERROR|panicked at|^SUMMARY" "$log" >&2 || tail -n 30 "$log" >&2
      status=1
    fi
  done
  return $status
}

# One line: date, target, executions, seconds, coverage (libFuzzer's cov:
# edges reached, of the instrumented edges of the whole binary: Rust std,
# the crates and the C codecs included; ft: features), corpus size, exit
# status.
summarise() {
  local target=$1 rc=$2 elapsed=$3 log=$FUZZ_DIR/logs/$1.log runs cov edges ft corp
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  edges=$(sed -n 's/^INFO: Loaded 1 modules *(\([0-9]*\) inline 8-bit counters.*/\1/p' "$log" | head -n 1)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)
  printf '%s %-9s runs=%s seconds=%s cov=%s/%s ft=%s corpus=%s exit=%s\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$target" "${runs:-?}" "$elapsed" "${cov:-?}" "${edges:-?}" \
    "${ft:-?}" "${corp:-?}" "$rc"
}

mkdir -p logs $(printf "artifacts/%s " "${TARGETS[@]}")
case "${1:-}" in
  build) shift; build "$@" ;;
  regressions) regressions ;;
  run)
    shift
    [ $# -gt 0 ] || set -- "${TARGETS[@]}"
    run "$@"
    ;;
  *)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
