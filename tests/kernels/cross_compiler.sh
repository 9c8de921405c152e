#!/bin/sh
# Build test_kernels with gcc, clang and gcc without AVX-512 (the portable
# lane-loop path) and require bit-identical kernel results from all three.
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
for v in gcc clang portable; do
  NNCC_KERNELS_DUMP="$work/$v.hex" "$work/t_$v"
done
cmp "$work/gcc.hex" "$work/clang.hex"
cmp "$work/gcc.hex" "$work/portable.hex"
echo "gcc, clang and portable builds agree bit for bit ($(wc -l < "$work/gcc.hex") lines)"
