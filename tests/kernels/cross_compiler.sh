#!/bin/sh
# Build test_kernels with gcc, clang, gcc without AVX-512 (the portable
# lane-loop path) and gcc with the register tiles unrolled (as generated code
# gets them) and require bit-identical kernel results from all four.
# usage: cross_compiler.sh RUNTIME_DIR WORK_DIR
set -eu
rt=$1 work=$2
src=$(dirname "$0")/test_kernels.c
mkdir -p "$work"
flags="-O2 -march=native -ffp-contract=off -fopenmp -std=c11 -I$rt"
libs="$(pkg-config --cflags --libs check) -lm"
gcc $flags "$src" -o "$work/t_gcc" $libs &
clang $flags "$src" -o "$work/t_clang" $libs &
gcc $flags -mno-avx512f "$src" -o "$work/t_portable" $libs &
wait
gcc $flags -DNNCC_KERNELS_UNROLL "$src" -o "$work/t_unrolled" $libs
for v in gcc clang portable unrolled; do
  NNCC_KERNELS_DUMP="$work/$v.hex" "$work/t_$v"
done
cmp "$work/gcc.hex" "$work/clang.hex"
cmp "$work/gcc.hex" "$work/portable.hex"
cmp "$work/gcc.hex" "$work/unrolled.hex"
echo "gcc, clang, portable and unrolled builds agree bit for bit ($(wc -l < "$work/gcc.hex") lines)"
