#!/bin/sh
# run_e2e.sh NNCC MKIDX -- generate, build and train mnist_cnn end to end on
# a small data set this test writes itself:
#  - the trainer builds warning-free with gcc and with clang (-Werror)
#  - a few steps of training lower the loss, eval and grads work
#  - the same seed gives bit-identical checkpoints with 1, 2, 3 and 8
#    threads, and with the gcc and the clang build
set -u
nncc=$1 mkidx=$2
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$tmp/data"
"$mkidx" "$tmp/data" 1024 300 || fail "mkidx"
"$nncc" models/mnist_cnn.nn -o "$tmp/mnist_cnn.c" || fail "nncc"
for cc in gcc clang; do
  mkdir -p "$tmp/$cc" && cp "$tmp/mnist_cnn.c" "$tmp/$cc/"
  make -s -C "$tmp/$cc" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=$cc OPTFLAGS="-O3 -march=native -Werror" \
    mnist_cnn > "$tmp/$cc.log" 2>&1 || { cat "$tmp/$cc.log"; fail "$cc build"; }
done
bin=$tmp/gcc/mnist_cnn
run() { # run NAME ARGS... : the trainer's output goes to $tmp/NAME.out
  name=$1; shift
  "$@" > "$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out"; fail "$name: $*"; }
}
run t1 "$bin" train --data "$tmp/data" --steps 8 --threads 1 --seed 5 --save "$tmp/t1.st" --log "$tmp/t1.jsonl"
# any thread count, oversubscribed too (no cap; scratch sized for the team)
for t in 2 3 8; do
  run t$t "$bin" train --data "$tmp/data" --steps 8 --threads $t --seed 5 --save "$tmp/t$t.st"
  cmp -s "$tmp/t1.st" "$tmp/t$t.st" || fail "1 and $t threads give different checkpoints"
done
run tc "$tmp/clang/mnist_cnn" train --data "$tmp/data" --steps 8 --threads 2 --seed 5 --save "$tmp/tc.st"
cmp -s "$tmp/t1.st" "$tmp/tc.st" || fail "the gcc and the clang trainer give different checkpoints"
run t3 "$bin" train --data "$tmp/data" --steps 8 --threads 2 --seed 6 --save "$tmp/t3.st"
cmp -s "$tmp/t1.st" "$tmp/t3.st" && fail "another seed gives the same checkpoint"
# training learns: a few more epochs on the easy labels bring the loss down
run long "$bin" train --data "$tmp/data" --epochs 3 --seed 5 --log "$tmp/long.jsonl" --save "$tmp/long.st"
first=$(sed -n '1s/.*"loss":\([0-9.e+-]*\).*/\1/p' "$tmp/long.jsonl")
last=$(sed -n '3s/.*"loss":\([0-9.e+-]*\).*/\1/p' "$tmp/long.jsonl")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall: $first -> $last"
# eval: "test_loss L  test_acc A  (C/300)" with A = C/300 and a finite loss;
# eval of the 3-epoch checkpoint says what training's last epoch line said,
# and its test loss is below the 8-step model's
run eval "$bin" eval --data "$tmp/data" --load "$tmp/t1.st"
run eval1 "$bin" eval --data "$tmp/data" --load "$tmp/t1.st" --threads 1
cmp -s "$tmp/eval.out" "$tmp/eval1.out" || fail "eval differs between 2 threads and 1"
line=$(grep '^test_loss ' "$tmp/eval.out") || fail "eval prints no result line: $(cat "$tmp/eval.out")"
echo "$line" | awk '{ split($5, f, /[()\/]/); c = f[2]; n = f[3]
  exit !($1 == "test_loss" && $2 + 0 == $2 && $2 > 0 && $3 == "test_acc" && n == 300 &&
         c >= 0 && c <= n && (c / n - $4) ^ 2 < 1e-8) }' || fail "eval result malformed: $line"
run evaltrained "$bin" eval --data "$tmp/data" --load "$tmp/long.st"
said=$(sed -n 's/^epoch 3\/3 .*\(test_loss [0-9.]*  test_acc [0-9.]*\).*/\1/p' "$tmp/long.out")
got=$(sed -n 's/^\(test_loss [0-9.]*  test_acc [0-9.]*\).*/\1/p' "$tmp/evaltrained.out")
[ -n "$said" ] && [ "$said" = "$got" ] || fail "eval says '$got', training's last epoch said '$said'"
l8=$(sed -n 's/^test_loss \([0-9.]*\).*/\1/p' "$tmp/eval.out")
l3=$(sed -n 's/^test_loss \([0-9.]*\).*/\1/p' "$tmp/evaltrained.out")
awk -v a="$l8" -v b="$l3" 'BEGIN { exit !(b < a) }' || fail "test loss did not fall: $l8 after 8 steps, $l3 after 3 epochs"
run grads "$bin" grads --data "$tmp/data" --load "$tmp/t1.st" --out "$tmp/g.st"
for name in loss logits conv1.weight fc2.bias; do
  grep -q "\"$name\"" "$tmp/g.st" || fail "grads output lacks $name"
done
echo "ok: mnist_cnn trains end to end (loss $first -> $last), bit-identical across threads and compilers"
