#!/bin/sh
# run_passes.sh NNCC MKIDX -- the passes change memory, not results:
#  - -O0 (no fusion, nothing shared) and -O1 (fused, planned) trainers give
#    bit-identical step losses and checkpoints over 20 steps
#  - a training step allocates nothing: 2 and 6 steps make the same number
#    of heap allocations
set -u
nncc=$1 mkidx=$2
tmp=$(mktemp -d) || exit 1
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -march=native -fopenmp -ffp-contract=off -Iruntime"
mkdir "$tmp/data"
"$mkidx" "$tmp/data" 512 64 || fail mkidx
mkdir "$tmp/rt"
for f in runtime/*.c; do
  cc $cflags -c "$f" -o "$tmp/rt/$(basename "$f" .c).o" || fail "runtime build"
done

for model in models/mnist_cnn.nn models/resnet_small.nn tests/passes/mixed.nn; do
  name=$(basename "$model" .nn)
  for o in 0 1; do
    "$nncc" -O$o "$model" -o "$tmp/$name-O$o.c" || fail "nncc -O$o $model"
    cc $cflags "$tmp/$name-O$o.c" "$tmp"/rt/*.o -o "$tmp/$name-O$o" -lpng -lz -lm || fail "build $name -O$o"
    "$tmp/$name-O$o" train --data "$tmp/data" --steps 20 --epochs 20 --seed 3 --threads 2 \
      --step-log "$tmp/$name-O$o.jsonl" --save "$tmp/$name-O$o.st" > "$tmp/$name-O$o.out" 2>&1 ||
      { cat "$tmp/$name-O$o.out"; fail "train $name -O$o"; }
  done
  [ "$(wc -l < "$tmp/$name-O1.jsonl")" = 20 ] || fail "$name: no 20 step losses"
  cmp -s "$tmp/$name-O0.jsonl" "$tmp/$name-O1.jsonl" || fail "$name: -O0 and -O1 losses differ"
  cmp -s "$tmp/$name-O0.st" "$tmp/$name-O1.st" || fail "$name: -O0 and -O1 checkpoints differ"
  echo "ok: $name: 20 losses and the checkpoint bit-identical with and without the passes"
done

wrap="-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=posix_memalign"
# mnist_cnn plain, then with clipping, a per-step schedule and the step
# log; fashion_cnn with its augmentation, warm-up and cosine schedule
for run in "mnist_cnn" "mnist_cnn --clip-grad-norm 1 --schedule onecycle(max_lr=0.01) --step-log $tmp/sl" \
           "fashion_cnn --val 64"; do
  set -- $run
  model=$1; shift
  if [ ! -x "$tmp/$model" ]; then # each model's counting trainer built once
    "$nncc" models/$model.nn -o "$tmp/$model.c" || fail nncc
    cc $cflags "$tmp/$model.c" "$tmp"/rt/*.o tests/passes/count_alloc.c $wrap -o "$tmp/$model" -lpng -lz -lm ||
      fail "build counting trainer"
  fi
  for steps in 2 6; do
    rm -f "$tmp/sl"
    "$tmp/$model" train --data "$tmp/data" --steps $steps --threads 2 "$@" > "$tmp/a$steps.out" 2>&1 || { cat "$tmp/a$steps.out"; fail "train $steps: $run"; }
    grep '^allocations: ' "$tmp/a$steps.out" > "$tmp/a$steps" || fail "no allocation count"
  done
  cmp -s "$tmp/a2" "$tmp/a6" || fail "$run: more steps, more allocations: $(cat "$tmp/a2") vs $(cat "$tmp/a6")"
  echo "ok: no allocation inside a training step of $run ($(cat "$tmp/a2") at start-up, the same for 2 and 6 steps)"
done
