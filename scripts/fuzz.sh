#!/bin/sh
# fuzz.sh SECONDS [JOBS] -- fuzz every reader of untrusted input (the .nn
# front end, IDX, safetensors; tests/fuzz, docs/testing.md) for SECONDS
# each, JOBS fuzzers at a time (default 1: one after another).  Unlike the
# test suite's short runs it uses random seeds and keeps going after a
# finding (libFuzzer's fork mode), so one run can report several.
#   build:   build/fuzz (clang, ASan + UBSan, -O2; NNCC_FUZZ_BUILD overrides)
#   output:  build/fuzz-corpus/NAME/ (NNCC_FUZZ_WORK overrides the parent):
#            corpus/ grows from run to run, artifacts/ holds the reproducers
#            (crash-*, leak-*, timeout-*, oom-*), log is libFuzzer's output
# Prints executions and coverage per fuzzer; exits 1 if anything was found.
set -eu
cd "$(dirname "$0")/.."
case ${1:-} in
  '' | *[!0-9]*) echo "usage: sh scripts/fuzz.sh SECONDS [JOBS]" >&2; exit 2 ;;
esac
secs=$1 jobs=${2:-1}
. scripts/deps.sh
need_packages $BUILD_PACKAGES

build=${NNCC_FUZZ_BUILD:-build/fuzz} work=${NNCC_FUZZ_WORK:-build/fuzz-corpus}
names="front idx ckpt onnx"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DNNCC_WERROR=ON -DNNCC_SANITIZE=ON -DNNCC_FUZZ=ON \
  -DBUILD_TESTING=ON -DNNCC_JIT=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_front fuzz_idx fuzz_ckpt fuzz_onnx \
  > /dev/null
mkdir -p "$work"

# One fuzzer: every finding saved, none stops the run.
fuzz() {
  sh tests/fuzz/run_fuzz.sh "$build/tests/fuzz/fuzz_$1" "$1" "$secs" "$work/$1" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 > "$work/$1.out" 2>&1 || true
}
echo "== fuzzing $names for $secs s each, $jobs at a time (output: $work)"
running=0
for name in $names; do
  fuzz "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait
    running=0
  fi
done
wait

status=0
for name in $names; do
  grep "^fuzz $name: " "$work/$name.out" || echo "fuzz $name: no summary, see $work/$name.out"
  for f in "$work/$name"/artifacts/*; do
    [ -e "$f" ] || continue
    echo "  $f"
    status=1
  done
done
[ $status -eq 0 ] || echo "reproduce one with: $build/tests/fuzz/fuzz_NAME FILE"
exit $status
