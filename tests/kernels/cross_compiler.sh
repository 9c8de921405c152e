#!/bin/sh
# Build the kernel tests (test_kernels.c, test_kernels_general.c) with gcc,
# clang, gcc for AVX2 (-march=x86-64-v3) and for the generic path
# (-march=x86-64: nncc_simd.h's vector extensions) and gcc with the
# register tiles unrolled (as generated code gets them) and require
# bit-identical kernel results from all five, for each test file.
# usage: cross_compiler.sh RUNTIME_DIR WORK_DIR
set -eu
rt=$1 work=$2
dir=$(dirname "$0")
mkdir -p "$work"
flags="-O2 -march=native -ffp-contract=off -fopenmp -std=c11 -I$rt"
libs="$(pkg-config --cflags --libs check) -lm"
for t in test_kernels test_kernels_general; do
  src=$dir/$t.c
  gcc $flags "$src" -o "$work/${t}_gcc" $libs &
  clang $flags "$src" -o "$work/${t}_clang" $libs &
  wait
  gcc $flags -march=x86-64-v3 "$src" -o "$work/${t}_avx2" $libs &
  gcc $flags -march=x86-64 "$src" -o "$work/${t}_generic" $libs &
  wait
  gcc $flags -DNNCC_KERNELS_UNROLL "$src" -o "$work/${t}_unrolled" $libs
  for v in gcc clang avx2 generic unrolled; do
    NNCC_KERNELS_DUMP="$work/$t.$v.hex" "$work/${t}_$v"
  done
  for v in clang avx2 generic unrolled; do
    cmp "$work/$t.gcc.hex" "$work/$t.$v.hex"
  done
  echo "$t: gcc, clang, AVX2, generic and unrolled builds agree bit for bit ($(wc -l < "$work/$t.gcc.hex") lines)"
done
