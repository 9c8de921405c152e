#!/bin/sh
# run_numerics.sh NNCC MKIDX -- a real mnist_cnn trainer on a small data set
# this test writes itself, where things go wrong:
#  - a learning rate that overflows stops training at the first non-finite
#    loss, one line names the node (--check-numerics names the same one),
#    and the last good checkpoint stays as it was; on finite values it
#    changes nothing, to the bit
#  - SIGTERM (sent again and again, so that some arrive during the save)
#    finishes the step, saves, exits 143, and the checkpoint resumes bit for
#    bit like a run that was never stopped
set -u
export LC_ALL=C
nncc=$1 mkidx=$2
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$tmp/data" "$tmp/build"
"$mkidx" "$tmp/data" 1024 300 || fail "mkidx" # 4 steps per epoch
"$nncc" models/mnist_cnn.nn -o "$tmp/build/mnist_cnn.c" || fail "nncc"
make -s -C "$tmp/build" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" OPTFLAGS="-O3 -march=native -Werror" \
  mnist_cnn > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "build"; }
bin=$tmp/build/mnist_cnn
d=$tmp/data

# --- NaN: stop at once, say where, keep the checkpoint ---------------------
"$bin" train --data "$d" --steps 4 --seed 5 --save "$tmp/c" --quiet > "$tmp/c.out" 2>&1 ||
  { cat "$tmp/c.out"; fail "the first epoch"; }
cp "$tmp/c" "$tmp/c0"
"$bin" train --data "$d" --steps 4 --seed 5 --save "$tmp/cc" --check-numerics --quiet > "$tmp/cc.out" 2>&1 ||
  { cat "$tmp/cc.out"; fail "--check-numerics on finite values"; }
cmp -s "$tmp/c" "$tmp/cc" || fail "--check-numerics changes the training results"
"$bin" train --data "$d" --load "$tmp/c" --lr 1e30 --steps 12 --save "$tmp/c" > "$tmp/nan.out" 2> "$tmp/nan.err"
rc=$?
[ $rc = 1 ] || { cat "$tmp/nan.out" "$tmp/nan.err"; fail "--lr 1e30: exit status $rc, want 1"; }
[ "$(wc -l < "$tmp/nan.err")" = 1 ] || { cat "$tmp/nan.err"; fail "--lr 1e30: not one line on stderr"; }
line='^nncc: step [0-9]*: loss is -*nan: first non-finite value (-*[a-z]*) in the forward output of [a-z0-9]* (models/mnist_cnn.nn:[0-9]*:[0-9]*); training stopped, last checkpoint kept$'
grep -q "$line" "$tmp/nan.err" || { cat "$tmp/nan.err"; fail "--lr 1e30: unexpected message"; }
cmp -s "$tmp/c" "$tmp/c0" || fail "--lr 1e30 changed the last checkpoint"
"$bin" train --data "$d" --load "$tmp/c" --lr 1e30 --steps 12 --check-numerics 2> "$tmp/chk.err" > /dev/null
[ $? = 1 ] || fail "--check-numerics: exit status"
sed 's/, last checkpoint kept$//' "$tmp/nan.err" | cmp -s - "$tmp/chk.err" ||
  { cat "$tmp/nan.err" "$tmp/chk.err"; fail "--check-numerics names another node"; }
echo "ok: $(cat "$tmp/nan.err")"

# --- SIGTERM: finish the step, save, exit 143, resume bit-exactly ----------
"$bin" train --data "$d" --steps 200 --epochs 50 --seed 7 --save "$tmp/t" --step-log "$tmp/t.jsonl" \
  > "$tmp/t.out" 2>&1 &
pid=$!
i=0 # wait for two steps (the handler is in place by then), at most ~60 s
while [ "$(cat "$tmp/t.jsonl" 2> /dev/null | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
while kill -TERM $pid 2> /dev/null; do sleep 0.02; done
wait $pid
rc=$?
[ $rc = 143 ] || { cat "$tmp/t.out"; fail "SIGTERM: exit status $rc, want 143"; }
grep -q "^nncc: interrupted at step [0-9]*, checkpoint saved$" "$tmp/t.out" || { cat "$tmp/t.out"; fail "SIGTERM: no save"; }
k=$(sed -n 's/.*"step":"\([0-9]*\)".*/\1/p' "$tmp/t")
[ -n "$k" ] && [ "$k" -ge 2 ] || fail "SIGTERM: the checkpoint's step is '$k'"
grep -q "interrupted at step $k," "$tmp/t.out" || fail "SIGTERM: the message and the checkpoint disagree"
n=$((k + 2))
"$bin" train --data "$d" --load "$tmp/t" --steps $n --epochs 50 --save "$tmp/r" --quiet > "$tmp/r.out" 2>&1 ||
  { cat "$tmp/r.out"; fail "resume"; }
"$bin" train --data "$d" --steps $n --epochs 50 --seed 7 --save "$tmp/s" --quiet > "$tmp/s.out" 2>&1 ||
  { cat "$tmp/s.out"; fail "straight run"; }
cmp -s "$tmp/r" "$tmp/s" || fail "SIGTERM at step $k: the resumed checkpoint differs from a straight run's"
echo "ok: SIGTERM at step $k: exit 143, checkpoint saved, resumed to step $n bit for bit"
