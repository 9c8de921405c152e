#!/bin/sh
# run_gradcheck.sh NNCC MODEL.nn -- compile MODEL with nncc, link it with
# gradcheck.c and compare backward() with central differences.
# CC_FOR_MODELS (default cc) builds it, with MODEL_CFLAGS added (the
# sanitizer build passes -fsanitize=address,undefined there).
set -u
nncc=$1 model=$2
cc=${CC_FOR_MODELS:-cc}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$nncc" "$model" -o "$tmp/model.c" || exit 1
"$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -march=native -fopenmp -ffp-contract=off -Wall -Wextra -Werror \
  ${MODEL_CFLAGS:-} -DNNCC_NO_MAIN -Iruntime "$tmp/model.c" tests/gradcheck/gradcheck.c \
  -o "$tmp/gradcheck" -lm || exit 1
OMP_NUM_THREADS=2 "$tmp/gradcheck"
