#!/bin/sh
# frontend.sh -- time of `nncc --dump-ir` (read, parse, elaborate, check,
# dump) per model, median of many runs.  Usage: bench/frontend.sh [NNCC]
set -eu
cd "$(dirname "$0")/.."
nncc=${1:-build/gcc/nncc}
runs=200
for model in models/mnist_cnn.nn models/vgg16.nn models/vgg19.nn models/vgg19_bn.nn; do
  times=""
  i=0
  while [ $i -lt $runs ]; do
    t0=$(date +%s%N)
    "$nncc" --dump-ir "$model" > /dev/null
    t1=$(date +%s%N)
    times="$times $(( (t1 - t0) / 1000 ))"
    i=$((i + 1))
  done
  echo "$times" | tr ' ' '\n' | sed '/^$/d' | sort -n |
    awk -v m="$model" '{a[NR]=$1} END {printf "%-22s median %6.2f ms  min %6.2f ms  (%d runs, process start included)\n", m, a[int((NR+1)/2)]/1000, a[1]/1000, NR}'
done
