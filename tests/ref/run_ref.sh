#!/bin/sh
# run_ref.sh NNCC CC [MODEL...] -- nncc's generated trainers against PyTorch
# 1.13 reference files (tests/ref/gen_ref.py writes them; PyTorch is not
# needed here).  For each model (default: all with a reference file):
#   1. nncc compiles it, CC builds the trainer against this tree's runtime;
#   2. `grads` from the reference's starting state: loss, logits and every
#      parameter gradient against <model>.ref.safetensors;
#   3. `eval` of the starting state: the test loss (eval mode, running
#      statistics) against the reference's test_loss;
#   4. with batch norm: one training step, then the running statistics and
#      num_batches_tracked against <model>.step1.safetensors;
#   5. 10 Adam steps on the one-batch training set (--no-shuffle, each step
#      an epoch followed by an eval-mode test pass): the --step-log losses
#      against the reference's `losses`.
# compare (tests/ref/compare.c, built by CMake; set COMPARE to its path, or
# it is built here with CC) prints every difference and its tolerance.
# MODEL_CFLAGS are added to the trainers' flags (the sanitizer build passes
# -fsanitize=address,undefined there).  RT_LIB, when set, is the runtime
# library the trainers link (CMake's libnncc_rt.a, built once with the
# build's compiler and sanitizers); else runtime/*.c is compiled into each.
# tests/onnx/run_onnx.sh reuses this for imported models: REF_DIR (default
# tests/ref) holds the reference files and data, MODEL_DIR the .nn files,
# and REF_NO_LOSSES=1 skips step 5 (an ONNX file carries no optimizer, so
# the training losses do not apply).
# Exits 0 if everything agrees, 1 otherwise.
set -u
[ $# -ge 2 ] || { echo "usage: $0 NNCC CC [MODEL...]" >&2; exit 2; }
nncc=$1 cc=$2
shift 2
ref=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$ref/../.." && pwd)
case $nncc in /*) ;; *) nncc=$(pwd)/$nncc ;; esac
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 1
# Speed only: the results do not depend on the thread count.
threads=--threads=1

compare=${COMPARE:-}
if [ -z "$compare" ]; then
  compare=$tmp/compare
  "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -Iruntime -o "$compare" tests/ref/compare.c \
    runtime/json.c runtime/util.c -lm || exit 1
fi

refdir=${REF_DIR:-tests/ref}
if [ $# -eq 0 ]; then
  for f in "$refdir"/*.ref.safetensors; do set -- "$@" "$(basename "$f" .ref.safetensors)"; done
fi

fails=0
fail() { echo "FAIL: $1: $2"; fails=$((fails + 1)); }
rt=${RT_LIB:-runtime/*.c}

for m in "$@"; do
  echo "== $m"
  src=${MODEL_DIR:-tests/ref}/$m.nn
  [ -f "$src" ] || [ -n "${MODEL_DIR:-}" ] || src=models/$m.nn
  data=$refdir/data_$m init=$refdir/$m.init.safetensors r=$refdir/$m.ref.safetensors
  d=$tmp/$m
  mkdir -p "$d"
  if ! "$nncc" "$src" -o "$d/$m.c"; then fail "$m" "nncc $src"; continue; fi
  if ! "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -march=native -fopenmp -ffp-contract=off \
      ${MODEL_CFLAGS:-} -Iruntime -o "$d/$m" "$d/$m.c" $rt -lpng -lz -lm; then
    fail "$m" "building the trainer"; continue
  fi
  t=$d/$m
  "$t" grads --data "$data" --load "$init" --out "$d/g.safetensors" --quiet $threads &&
    "$compare" "$r" "$d/g.safetensors" || fail "$m" "grads"
  # eval prints "test_loss L  test_acc A  (k/n)"; L has 6 decimals.
  "$t" eval --data "$data" --load "$init" $threads > "$d/eval.txt" &&
    sed -n 's/^test_loss \([^ ]*\) .*/{"test_loss":\1}/p' "$d/eval.txt" > "$d/eval.jsonl" &&
    "$compare" "$r" test_loss "$d/eval.jsonl" test_loss || fail "$m" "eval"
  if [ -f "$refdir/$m.step1.safetensors" ]; then
    "$t" train --data "$data" --load "$init" --steps 1 --no-shuffle --save "$d/s1.safetensors" \
        --quiet $threads &&
      "$compare" --subset "$refdir/$m.step1.safetensors" "$d/s1.safetensors" || fail "$m" "step 1 buffers"
  fi
  [ "${REF_NO_LOSSES:-0}" = 1 ] && continue
  # as many steps as the reference has losses (gen_ref.py: 10, or 2 for the
  # large models); --epochs: a model may train for fewer epochs (one step each here)
  steps=$("$compare" --count "$r" losses) || { fail "$m" "the reference has no losses"; continue; }
  "$t" train --data "$data" --load "$init" --epochs "$steps" --steps "$steps" --no-shuffle \
      --step-log "$d/steps.jsonl" --quiet $threads &&
    "$compare" "$r" losses "$d/steps.jsonl" loss || fail "$m" "training losses"
done

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all agree"
