#!/bin/sh
# test.sh -- the whole test suite: build with gcc (warnings are errors) and
# run every test, then build with clang + AddressSanitizer + UBSan
# (warnings are errors) and run every test again.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages $BUILD_PACKAGES

jobs=$(nproc 2>/dev/null || echo 2)
echo "== gcc build, all tests"
cmake -S . -B build/gcc -DCMAKE_C_COMPILER=gcc -DNNCC_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build/gcc -j "$jobs"
ctest --test-dir build/gcc --output-on-failure -j "$jobs"

echo "== clang + AddressSanitizer + UBSan build, all tests"
cmake -S . -B build/asan -DCMAKE_C_COMPILER=clang -DNNCC_WERROR=ON -DNNCC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug > /dev/null
cmake --build build/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j "$jobs"
