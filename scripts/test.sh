#!/bin/sh
# test.sh -- the whole test suite: build with gcc (warnings are errors) and
# run every test, then build with clang + AddressSanitizer + UBSan
# (warnings are errors) and run every test again, there with the gradient
# checks' and the PyTorch agreement tests' generated trainers built with
# the sanitizers too, and a short run of each fuzzer (tests/fuzz,
# docs/testing.md).
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages $BUILD_PACKAGES
need_arm64
need_packages $CROSS_PACKAGES

jobs=$(nproc 2>/dev/null || echo 2)
# Each models/*.nn, tests/errors/*.nn and tests/gradcheck/*.nn is a test of
# its own, so a build that registers fewer tests than there are such files
# lost tests somewhere (BUILD_TESTING=OFF, a broken glob): that fails, as
# does finding no tests at all (--no-tests=error).
floor=$(ls models/*.nn tests/errors/*.nn tests/gradcheck/*.nn | wc -l)
# libomp registers each process in /dev/shm/__KMP_REGISTERED_LIB_<pid>_<uid>
# and leaves the file behind when the process is killed or _exits (tests do
# both).  A later process that gets the same pid then finds "an unknown
# OpenMP library already initialized" and aborts: after the pids wrap, on a
# machine that ran the suite before.  Remove the files of dead processes.
clear_stale_omp() {
  for f in /dev/shm/__KMP_REGISTERED_LIB_*; do
    [ -O "$f" ] || continue
    pid=${f#/dev/shm/__KMP_REGISTERED_LIB_}
    pid=${pid%%_*}
    [ -d "/proc/$pid" ] || rm -f "$f"
  done
}
run_ctest() {
  clear_stale_omp
  n=$(ctest --test-dir "$1" --no-tests=error -N | sed -n 's/^Total Tests: //p')
  if [ "${n:-0}" -lt "$floor" ]; then
    echo "error: $1 has ${n:-0} tests, expected at least $floor" >&2
    exit 1
  fi
  ctest --test-dir "$1" --no-tests=error --output-on-failure -j "$jobs"
}

echo "== gcc build, all tests"
cmake -S . -B build/gcc -DCMAKE_C_COMPILER=gcc -DNNCC_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBUILD_TESTING=ON > /dev/null
cmake --build build/gcc -j "$jobs"
run_ctest build/gcc

echo "== clang + AddressSanitizer + UBSan build, all tests, fuzzing"
cmake -S . -B build/asan -DCMAKE_C_COMPILER=clang -DNNCC_WERROR=ON -DNNCC_SANITIZE=ON -DNNCC_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=ON > /dev/null
cmake --build build/asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_ctest build/asan
