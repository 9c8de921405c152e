#!/bin/sh
# schedules.sh [DATA [SEEDS]] -- the seed's CNN (models/mnist_cnn.nn, Adam
# lr 0.0002, 10 epochs) with its constant learning rate against a cosine
# schedule after a linear warm-up (--schedule 'cosine(T_max=8)' --warmup
# 'linear(start_factor=0.1, total_iters=2)', the same base lr), over
# several seeds: the final test accuracy of each run and a PNG of all the
# curves (nncc plot).  Not a test: it takes about 10 epochs x 2 x seeds.
# Results go to bench/results/schedules/ (ignored by git).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-$repo/data/mnist}
seeds=${2:-1 2 3}
nncc=${NNCC:-$repo/build/gcc/nncc}
out=$repo/bench/results/schedules
mkdir -p "$out"
cd "$repo"
"$nncc" models/mnist_cnn.nn -o generated/mnist_cnn.c
make -s -C generated mnist_cnn
echo "uptime: $(uptime)"
printf "%-10s %6s %10s %10s\n" run seed test_acc test_loss
for seed in $seeds; do
  for run in constant cosine; do
    log=$out/$run-seed$seed.jsonl
    rm -f "$log"
    if [ $run = constant ]; then
      generated/mnist_cnn train --data "$data" --seed "$seed" --log "$log" --quiet
    else
      generated/mnist_cnn train --data "$data" --seed "$seed" --log "$log" --quiet \
        --schedule 'cosine(T_max=8)' --warmup 'linear(start_factor=0.1, total_iters=2)'
    fi
    tail -1 "$log" | sed 's/.*"test_loss":\([0-9.e-]*\),"test_acc":\([0-9.e-]*\).*/\2 \1/' |
      awk -v r=$run -v s="$seed" '{ printf "%-10s %6s %10.4f %10.4f\n", r, s, $1, $2 }'
  done
done
"$nncc" plot -o "$out/schedules.png" "$out"/*.jsonl
echo "curves: $out/schedules.png"
