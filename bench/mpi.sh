#!/usr/bin/env bash
# mpi.sh -- data parallelism on one machine: the same model trained by
# 2 MPI ranks x 1 thread (nncc --ranks 2, mpirun -np 2) and by 1 process x
# 2 threads, in images/s, with the time the ranks spend communicating per
# step.  Not a test: timings never go in tests.  The two runs' checkpoints
# are compared too: they must be the same bits.
#
# usage: bench/mpi.sh [--models "mnist_cnn vgg16"] [--mnist_cnn W,N] [--vgg16 W,N]
#   W,N    warm-up steps, then measured steps (N rounded up to a multiple of
#          W); defaults mnist_cnn 10,40 and vgg16 2,6
#
# Timing as bench/train.sh: each model trains on a subset of MNIST whose
# epoch is exactly W steps; epoch 1 is the warm-up, epochs 2.. are measured
# by the trainer (its --log's img_per_s and seconds: training only), and
# comm_s is rank 0's time inside the sums, gathers and agreements over the
# ranks.  Everything built goes to ${TMPDIR:-/tmp}/nncc_bench_mpi.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/tmp}/nncc_bench_mpi
nncc=${NNCC:-$root/build/gcc/nncc}
models="mnist_cnn vgg16"
declare -A counts=([mnist_cnn]=10,40 [vgg16]=2,6)
die() { echo "mpi.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --models) models=$2; shift ;;
    --mnist_cnn | --vgg16) counts[${1#--}]=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
command -v mpirun > /dev/null || die "mpirun is missing: apt-get install -y openmpi-bin libopenmpi-dev"
[ -f "$root/data/mnist/train-images-idx3-ubyte" ] || bash "$root/scripts/fetch_mnist.sh"
[ -x "$nncc" ] || die "build nncc first (build/gcc/nncc), or set NNCC"
. "$root/bench/isa.sh"
bench_isa native
mkdir -p "$out"

echo "mpi.sh: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uptime | sed 's/.*load/load/')"
OMP_NUM_THREADS=2 bench_peak "$root" "$out"
echo "mpi.sh: FMA peak on 2 threads: $(cut -d' ' -f1 "$out/peak_fma.txt") GFLOP/s ($(cut -d' ' -f2- "$out/peak_fma.txt"))"

# mean img/s and seconds of the measured epochs (2..) of a --log, and the
# mean comm_s per step
measured() {
  awk -v steps="$2" '
    function num(k) { return match($0, "\"" k "\":[0-9.e+-]+") ? substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0 : 0 }
    num("epoch") > 1 { n++; s += num("img_per_s"); cs += num("comm_s") }
    END { printf "%.1f %.6f", s / n, cs / (n * steps) }' "$1"
}

printf '\n%-10s %14s %14s %7s %14s %8s\n' model "1x2 img/s" "2x1 img/s" ratio "comm ms/step" "comm %"
for m in $models; do
  IFS=, read -r warm steps <<<"${counts[$m]}"
  epochs=$(( 1 + (steps + warm - 1) / warm ))
  b=$(sed -n 's/^input [a-z_]*: f32\[\([0-9]*\),.*/\1/p' "$root/models/$m.nn")
  "$nncc" "$root/models/$m.nn" -o "$out/$m.c"
  "$nncc" "$root/models/$m.nn" --ranks 2 -o "$out/${m}_r2.c"
  make -s -C "$out" -f "$root/generated/Makefile" NNCC_ROOT="$root" OPTFLAGS="-O3 -march=native" \
    "$m" "${m}_r2" > /dev/null
  bench_subset "$root/data/mnist" "$out/data_$m" $(( warm * b )) "$b"
  rm -f "$out/$m".*.jsonl
  OMP_NUM_THREADS=2 "$out/$m" train --data "$out/data_$m" --epochs "$epochs" --threads 2 \
    --log "$out/$m.1x2.jsonl" --save "$out/$m.1x2.st" --quiet
  OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to core -np 2 "$out/${m}_r2" train \
    --data "$out/data_$m" --epochs "$epochs" --log "$out/$m.2x1.jsonl" --save "$out/$m.2x1.st" --quiet
  cmp -s "$out/$m.1x2.st" "$out/$m.2x1.st" || die "$m: 2 ranks and 1 process give different checkpoints"
  read -r one _ <<<"$(measured "$out/$m.1x2.jsonl" "$warm")"
  read -r two comm <<<"$(measured "$out/$m.2x1.jsonl" "$warm")"
  secs=$(awk -v b="$b" -v v="$two" 'BEGIN { print b / v }')
  printf '%-10s %14.1f %14.1f %6.2fx %14.1f %7.1f%%\n' "$m" "$one" "$two" \
    "$(awk -v a="$one" -v b="$two" 'BEGIN { print b / a }')" \
    "$(awk -v c="$comm" 'BEGIN { print c * 1000 }')" "$(awk -v c="$comm" -v s="$secs" 'BEGIN { print 100 * c / s }')"
done
echo "(same checkpoints from both; batch per step as the model; $(uptime | sed 's/.*load/load/'))"
