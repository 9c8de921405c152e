#!/bin/sh
# run_mpi.sh NNCC MKIDX -- data-parallel training on Open MPI is one process's
# training, bit for bit (docs/distributed.md):
#  - for mnist_cnn, resnet_small (batch norm, add) and alexnet_mini
#    (dropout), `train --steps 20` on 1, 2 and 4 ranks (nncc --ranks N,
#    mpirun -np N) writes the same step log and the same checkpoint as the
#    trainer built without MPI;
#  - the same with clipping by norm (whole gradients on every rank) and by
#    value (the sharded optimizer step);
#  - a checkpoint written by 4 ranks resumes on 2 and on 1 with the same
#    bits; eval and grads split over the ranks print and write what one
#    process does;
#  - refusals: the wrong -np, a trainer without MPI under mpirun, ranks
#    running different models, a data directory missing on one rank or
#    holding other files;
#  - faults: a rank killed mid-run takes the job down within seconds
#    naming the rank, the last checkpoint intact; SIGTERM to mpirun saves
#    one checkpoint, the one a single process has at that step.
set -u
nncc=$1 mkidx=$2
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v mpirun > /dev/null || fail "mpirun not found (scripts/deps.sh installs openmpi-bin)"
export OMP_NUM_THREADS=1
# loopback only, as root, more ranks than cores (Open MPI 4)
mpi() { mpirun --allow-run-as-root --oversubscribe --mca btl self,vader "$@"; }

mkdir "$tmp/data"
"$mkidx" "$tmp/data" 2560 300 || fail "mkidx"
build() { # build MODEL RANKS: $tmp/MODEL_rRANKS (RANKS 1: no --ranks, no MPI)
  name=$1_r$2
  if [ "$2" = 1 ]; then "$nncc" "models/$1.nn" -o "$tmp/$name.c" || fail "nncc $1"
  else "$nncc" "models/$1.nn" --ranks "$2" -o "$tmp/$name.c" || fail "nncc $1 --ranks $2"; fi
  make -s -C "$tmp" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" OPTFLAGS="-O3 -march=native -Werror" "$name" \
    > "$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; fail "build $name"; }
}
run() { # run NAME CMD... : output in $tmp/NAME.out, must succeed
  name=$1; shift
  "$@" > "$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out"; fail "$name: $*"; }
}
same() { cmp -s "$1" "$2" || fail "$3: $(basename "$1") and $(basename "$2") differ"; }

for model in mnist_cnn resnet_small alexnet_mini; do
  for n in 1 2 4; do build $model $n; done
  args="train --data $tmp/data --steps 20 --seed 3"
  run $model.1 "$tmp/${model}_r1" $args --step-log "$tmp/$model.1.jsonl" --save "$tmp/$model.1.st"
  [ "$(wc -l < "$tmp/$model.1.jsonl")" = 20 ] || fail "$model: not 20 steps"
  # -np 1 runs the trainer without MPI (mpirun sets only its variables)
  run $model.np1 mpi -np 1 "$tmp/${model}_r1" $args --step-log "$tmp/$model.np1.jsonl" \
    --save "$tmp/$model.np1.st"
  same "$tmp/$model.1.st" "$tmp/$model.np1.st" "$model, mpirun -np 1"
  for n in 2 4; do
    run $model.$n mpi -np $n "$tmp/${model}_r$n" $args --step-log "$tmp/$model.$n.jsonl" \
      --save "$tmp/$model.$n.st"
    same "$tmp/$model.1.jsonl" "$tmp/$model.$n.jsonl" "$model, $n ranks: step losses"
    same "$tmp/$model.1.st" "$tmp/$model.$n.st" "$model, $n ranks: checkpoint"
    # only rank 0 prints
    [ "$(grep -c '^stopped at step 20' "$tmp/$model.$n.out")" = 1 ] ||
      fail "$model, $n ranks: expected one 'stopped at' line: $(cat "$tmp/$model.$n.out")"
  done
done

# clipping: by norm the ranks sum whole gradients (every rank needs the
# norm), by value they shard the optimizer step as without clipping
m=mnist_cnn
run noclip "$tmp/${m}_r1" train --data "$tmp/data" --steps 6 --seed 3 --save "$tmp/noclip.st"
for clip in "--clip-grad-norm 0.5" "--clip-grad-value 0.002"; do
  tag=$(echo "$clip" | tr -dc 'a-z')
  run $tag.1 "$tmp/${m}_r1" train --data "$tmp/data" --steps 6 --seed 3 $clip --save "$tmp/$tag.1.st"
  run $tag.4 mpi -np 4 "$tmp/${m}_r4" train --data "$tmp/data" --steps 6 --seed 3 $clip --save "$tmp/$tag.4.st"
  same "$tmp/$tag.1.st" "$tmp/$tag.4.st" "4 ranks, $clip"
  cmp -s "$tmp/$tag.1.st" "$tmp/noclip.st" && fail "$clip changed nothing"
done

# resume: 4 ranks to step 10, then 2 ranks or 1 process to 20
run half mpi -np 4 "$tmp/${m}_r4" train --data "$tmp/data" --steps 10 --seed 3 --save "$tmp/half.st"
run resume2 mpi -np 2 "$tmp/${m}_r2" train --data "$tmp/data" --steps 20 --load "$tmp/half.st" \
  --save "$tmp/resume2.st"
same "$tmp/$m.1.st" "$tmp/resume2.st" "4 ranks resumed on 2"
run resume1 "$tmp/${m}_r1" train --data "$tmp/data" --steps 20 --load "$tmp/half.st" --save "$tmp/resume1.st"
same "$tmp/$m.1.st" "$tmp/resume1.st" "4 ranks resumed on 1"

# eval and grads over the ranks: one process's output
run eval1 "$tmp/${m}_r1" eval --data "$tmp/data" --load "$tmp/$m.1.st" --report
run eval4 mpi -np 4 "$tmp/${m}_r4" eval --data "$tmp/data" --load "$tmp/$m.1.st" --report
same "$tmp/eval1.out" "$tmp/eval4.out" "eval on 4 ranks"
run grads1 "$tmp/resnet_small_r1" grads --data "$tmp/data" --load "$tmp/resnet_small.1.st" --out "$tmp/g1.st"
run grads2 mpi -np 2 "$tmp/resnet_small_r2" grads --data "$tmp/data" --load "$tmp/resnet_small.1.st" \
  --out "$tmp/g2.st"
same "$tmp/g1.st" "$tmp/g2.st" "grads on 2 ranks"

# refusals: one line saying what to do, non-zero, no checkpoint
refuse() { # refuse NAME PATTERN CMD...
  name=$1 pat=$2; shift 2
  "$@" > "$tmp/$name.out" 2>&1 && fail "$name: succeeded: $*"
  grep -q "$pat" "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "$name: no message '$pat'"; }
  [ ! -e "$tmp/$name.st" ] || fail "$name: wrote a checkpoint"
}
refuse np mpirun\ started\ 2 mpi -np 2 "$tmp/${m}_r4" train --data "$tmp/data" --steps 2 --save "$tmp/np.st"
refuse nompi "built without MPI" mpi -np 2 "$tmp/${m}_r1" train --data "$tmp/data" --steps 2 --save "$tmp/nompi.st"
refuse nompi2 "built without MPI" env OMPI_COMM_WORLD_SIZE=2 "$tmp/${m}_r1" train --data "$tmp/data" --steps 2
refuse mixed "rank 1 runs another model" mpi -np 1 "$tmp/${m}_r2" train --data "$tmp/data" --steps 2 \
  --save "$tmp/mixed.st" : -np 1 "$tmp/resnet_small_r2" train --data "$tmp/data" --steps 2
refuse nodata "rank 1: .*missing" mpi -np 1 "$tmp/${m}_r2" train --data "$tmp/data" --steps 2 \
  --save "$tmp/nodata.st" : -np 1 "$tmp/${m}_r2" train --data "$tmp/missing" --steps 2 --save "$tmp/nodata.st"
mkdir "$tmp/other" && "$mkidx" "$tmp/other" 2561 300 || fail "mkidx" # one image more
refuse otherdata "rank 1 has other data" mpi -np 1 "$tmp/${m}_r2" train --data "$tmp/data" --steps 2 \
  --save "$tmp/otherdata.st" : -np 1 "$tmp/${m}_r2" train --data "$tmp/other" --steps 2 --save "$tmp/otherdata.st"
refuse norun "run trains in one process" "$nncc" run --ranks 2 models/mnist_cnn.nn train
"$nncc" models/mnist_cnn.nn --ranks 3 -o "$tmp/r3.c" 2> "$tmp/r3.out" && fail "--ranks 3 accepted"
grep -q "power of two" "$tmp/r3.out" || fail "--ranks 3: $(cat "$tmp/r3.out")"
"$nncc" models/mnist_cnn.nn --ranks 16 -o "$tmp/r16.c" 2> "$tmp/r16.out" && fail "--ranks 16 accepted"
grep -q "at most 8 ranks" "$tmp/r16.out" || fail "--ranks 16: $(cat "$tmp/r16.out")"
[ ! -e "$tmp/r3.c" ] && [ ! -e "$tmp/r16.c" ] || fail "a refused --ranks wrote its output"

# faults: long runs (an epoch of 10 steps saves a checkpoint), then a kill
long() { # long NAME: 2 ranks of mnist_cnn in the background, mpirun's pid in $pid
  mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -np 2 "$tmp/${m}_r2" train \
    --data "$tmp/data" --epochs 100 --seed 3 --save "$tmp/$1.st" --step-log "$tmp/$1.jsonl" \
    > "$tmp/$1.out" 2>&1 &
  pid=$!
}
wait_for() { # wait_for FILE LINES: up to 60 s for FILE to hold LINES lines
  i=0
  while [ "$(cat "$1" 2> /dev/null | wc -l)" -lt "$2" ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "timed out waiting for $1"; sleep 0.1
  done
}
long killed
wait_for "$tmp/killed.jsonl" 15 # past the first epoch's checkpoint (10 steps)
cp "$tmp/killed.st" "$tmp/killed.before.st" 2> /dev/null || fail "no checkpoint after the first epoch"
victim=$(pgrep -f "${m}_r2 train" | while read p; do
  tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && echo "$p"; done)
[ -n "$victim" ] || fail "no rank to kill"
kill -9 "$victim"
start=$(date +%s)
wait $pid && fail "a killed rank: mpirun exited 0"
[ $(($(date +%s) - start)) -le 10 ] || fail "a killed rank: the job took more than 10 s to end"
grep -q "rank 1" "$tmp/killed.out" || { cat "$tmp/killed.out"; fail "a killed rank: no message naming it"; }
same "$tmp/killed.before.st" "$tmp/killed.st" "a killed rank: the last complete checkpoint"
ls "$tmp" | grep -q '\.tmp' && fail "a killed rank left a temporary file"

long term
wait_for "$tmp/term.jsonl" 5
kill -TERM $pid
wait $pid && fail "SIGTERM: mpirun exited 0"
[ "$(grep -c 'checkpoint saved' "$tmp/term.out")" = 1 ] || { cat "$tmp/term.out"; fail "SIGTERM: not one save"; }
at=$(sed -n 's/.*interrupted at step \([0-9]*\).*/\1/p' "$tmp/term.out")
run term1 "$tmp/${m}_r1" train --data "$tmp/data" --epochs 100 --seed 3 --steps "$at" --save "$tmp/term1.st"
same "$tmp/term1.st" "$tmp/term.st" "SIGTERM at step $at: the checkpoint"
echo "ok: 1, 2 and 4 ranks give one process's bits; refusals and faults"
