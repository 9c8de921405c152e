#!/bin/sh
# run_fashion.sh NNCC -- Fashion-MNIST end to end:
#  - scripts/fetch_fashion_mnist.sh puts verified files in a directory, does
#    nothing when they are there, and replaces a damaged one
#  - models/fashion_cnn.nn (AdamW, warm-up, cosine) trains 40 steps on it
#    with --val and learns (test accuracy well above chance, 0.1), and eval
#    --report reads it
set -u
nncc=$1
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
data=$tmp/fashion
sh scripts/fetch_fashion_mnist.sh "$data" > "$tmp/fetch1.out" 2>&1 || { cat "$tmp/fetch1.out"; fail "fetch"; }
grep -q "^Fashion-MNIST verified in $data$" "$tmp/fetch1.out" || { cat "$tmp/fetch1.out"; fail "fetch: no verification line"; }
sh scripts/fetch_fashion_mnist.sh "$data" > "$tmp/fetch2.out" 2>&1 || fail "fetch again"
grep -q "^Fashion-MNIST already present and verified in $data$" "$tmp/fetch2.out" || fail "fetch again did work"
printf 'X' | dd of="$data/train-labels-idx1-ubyte.gz" bs=1 seek=100 conv=notrunc 2> /dev/null
sh scripts/fetch_fashion_mnist.sh "$data" > "$tmp/fetch3.out" 2>&1 || fail "fetch over a damaged file"
grep -q "^Fashion-MNIST verified in $data$" "$tmp/fetch3.out" || fail "a damaged file was not replaced"
ls "$data" | grep -q '\.part$' && fail "partial files left"

mkdir "$tmp/build"
"$nncc" models/fashion_cnn.nn -o "$tmp/build/fashion_cnn.c" || fail nncc
make -s -C "$tmp/build" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=gcc fashion_cnn \
  > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail make; }
t=$tmp/build/fashion_cnn
"$t" train --data "$data" --steps 40 --val 5000 --threads 2 --save "$tmp/f.st" --step-log "$tmp/s.jsonl" \
  > "$tmp/train.out" 2>&1 || { cat "$tmp/train.out"; fail train; }
grep -q '"lr":0.0001}$' "$tmp/s.jsonl" || { head -2 "$tmp/s.jsonl"; fail "not at the warm-up's first lr"; }
"$t" eval --data "$data" --load "$tmp/f.st" --report > "$tmp/eval.out" 2>&1 || { cat "$tmp/eval.out"; fail eval; }
acc=$(sed -n 's/^test_loss [0-9.]*  test_acc \([0-9.]*\)  (\([0-9]*\)\/10000)$/\1/p' "$tmp/eval.out")
[ -n "$acc" ] || { cat "$tmp/eval.out"; fail "eval: no result on the 10,000 test images"; }
awk -v a="$acc" 'BEGIN { exit !(a > 0.3) }' || fail "test accuracy $acc after 40 steps: not learning"
[ "$(sed -n '/^per-class accuracy:/,/^confusion/p' "$tmp/eval.out" | grep -c '^ *[0-9]')" = 10 ] ||
  fail "eval --report: not 10 classes"
echo "ok: Fashion-MNIST fetched and verified, fashion_cnn reaches $acc after 40 steps"
