#!/bin/sh
# hostile.sh [NNCC [MKIDX]] -- how long (and how much memory) the mnist_cnn
# trainer takes to reject hostile files, each of which once took far more:
#   keys  a checkpoint header of 100,000 tensors (json.c's duplicate-key
#         check was pairwise: 45 s; now refused before parsing, as larger
#         than the model's checkpoint can need)
#   bomb  train-images-idx3-ubyte.gz, ~600 kB inflating to 600 MB, under a
#         header declaring 784 MB (idx.c grew a buffer to 617 MB before
#         saying "truncated")
# Each line: seconds, peak RSS of the trainer, and its one-line error.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
nncc=$(realpath "${1:-$repo/build/gcc/nncc}")
mkidx=$(realpath "${2:-$(dirname "$nncc")/tests/mkidx}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/data" "$tmp/bomb"
"$mkidx" "$tmp/data" 256 64 > /dev/null
"$nncc" "$repo/models/mnist_cnn.nn" -o "$tmp/mnist_cnn.c"
make -s -C "$tmp" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=gcc mnist_cnn > /dev/null 2>&1
bin=$tmp/mnist_cnn

# le64 N: N as 8 little-endian bytes
le64() { v=$1; i=0; while [ $i -lt 8 ]; do printf "\\$(printf %03o $((v % 256)))"; v=$((v / 256)); i=$((i + 1)); done; }

n=100000
awk -v n=$n 'BEGIN { printf "{"; for (i = 0; i < n; i++)
  printf "%s\"x.%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}", i ? "," : "", i, i, i + 1
  printf "}" }' > "$tmp/header"
{ le64 "$(wc -c < "$tmp/header")"; cat "$tmp/header"; head -c $n /dev/zero; } > "$tmp/keys.safetensors"

# 1,000,000 28x28 images declared, 600 MB of zeros present
{ printf '\0\0\10\3\0\17\102\100\0\0\0\34\0\0\0\34'; head -c 600000000 /dev/zero; } | gzip -9 \
  > "$tmp/bomb/train-images-idx3-ubyte.gz"
cp "$tmp/data/train-labels-idx1-ubyte" "$tmp/data/t10k-"* "$tmp/bomb/"

# measure NAME CMD...: seconds, peak RSS (GNU time, if installed), the error
measure() {
  name=$1; shift
  t0=$(date +%s.%N)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M" -o "$tmp/rss" "$@" > /dev/null 2> "$tmp/err" || true
    rss="$(($(tail -1 "$tmp/rss") / 1024)) MB"
  else
    "$@" > /dev/null 2> "$tmp/err" || true
    rss="?"
  fi
  t=$(echo "$(date +%s.%N) $t0" | awk '{ printf "%.2f", $1 - $2 }')
  printf "%-5s %6s s  peak RSS %7s  %s\n" "$name" "$t" "$rss" "$(head -1 "$tmp/err" | sed "s|$tmp/||")"
}
printf "%-5s %8s  %16s  %s\n" input time "" "message (bomb: $(wc -c < "$tmp/bomb/train-images-idx3-ubyte.gz") bytes gzipped)"
measure keys "$bin" eval --data "$tmp/data" --load "$tmp/keys.safetensors"
measure bomb "$bin" train --data "$tmp/bomb" --steps 1
