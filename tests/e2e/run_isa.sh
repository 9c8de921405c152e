#!/bin/sh
# run_isa.sh NNCC MKIDX [MODEL:STEPS ...] -- the same checkpoint bits on
# every instruction set (runtime/nncc_simd.h): each model's trainer is
# built for AVX-512 (-march=native, where the CPU has it), AVX2
# (-march=x86-64-v3) and the generic vector-extension path (-march=x86-64),
# trained STEPS steps on the same data and seed, and the checkpoints must
# be byte-identical.  Default models: the op models of tests/ref (every op
# and attribute: general and depthwise convolutions, pools (ops_gate: the
# pools that apply a conv's activation gate), batch norm,
# concat, activations) 20 steps each, vgg_tiny_bn (convs that sum their
# batch norms' statistics in their epilogue) 5, and mnist_cnn (the convolution
# engine) 2 steps: the generic path's FMA is libm's fmaf on x86-64 baseline,
# about 100x slower.  A CPU without AVX2 runs what it can and says so.
# CC_FOR_MODELS and MODEL_CFLAGS choose the compiler and the other flags.
# ISA_NO_NATIVE=1 leaves out the -march=native build (the sanitizer build:
# every other sanitized test runs the native path; what only this test
# runs under the sanitizers is the AVX2 and generic paths).
set -u
nncc=$1 mkidx=$2
shift 2
models=${*:-"tests/ref/ops_act.nn:20 tests/ref/ops_conv.nn:20 tests/ref/ops_pool.nn:20 tests/ref/ops_misc.nn:20 tests/ref/ops_gate.nn:20 tests/ref/vgg_tiny_bn.nn:5 models/mnist_cnn.nn:2"}
cc=${CC_FOR_MODELS:-gcc}
cflags=${MODEL_CFLAGS:--O1}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

isas="x86-64"
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && isas="$isas x86-64-v3"
if [ "${ISA_NO_NATIVE:-0}" = 1 ]; then
  echo "note: ISA_NO_NATIVE=1, comparing $isas only"
elif grep -qw avx512f /proc/cpuinfo; then
  isas="$isas native"
else
  echo "note: no AVX-512 here, comparing $isas only"
fi

mkdir "$tmp/data"
"$mkidx" "$tmp/data" 600 64 > /dev/null || fail "mkidx"
# build ISA OUT SRC... : the flags every object of this test is built with
build() {
  isa=$1 out=$2
  shift 2
  # shellcheck disable=SC2086
  $cc -std=c11 -D_POSIX_C_SOURCE=200809L $cflags -march=$isa -fopenmp -ffp-contract=off \
    -Wall -Wextra -Werror -Iruntime "$@" -o "$out" > "$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; fail "$out: build for -march=$isa"; }
}
# the runtime, once per instruction set
for isa in $isas; do
  mkdir "$tmp/rt_$isa"
  for f in runtime/*.c; do build "$isa" "$tmp/rt_$isa/$(basename "$f" .c).o" -c "$f"; done
done
n=0
for spec in $models; do
  model=${spec%:*} steps=${spec##*:} name=$(basename "${spec%:*}" .nn)
  "$nncc" "$model" -o "$tmp/$name.c" || fail "nncc $model"
  for isa in $isas; do
    build "$isa" "$tmp/${name}_$isa" "$tmp/$name.c" "$tmp/rt_$isa"/*.o -lpng -lz -lm
  done
  for isa in $isas; do
    "$tmp/${name}_$isa" train --data "$tmp/data" --steps "$steps" --seed 11 --threads 2 \
      --save "$tmp/${name}_$isa.st" --quiet > "$tmp/run.log" 2>&1 ||
      { cat "$tmp/run.log"; fail "$name: training the -march=$isa build"; }
  done
  for isa in $isas; do
    cmp -s "$tmp/${name}_x86-64.st" "$tmp/${name}_$isa.st" ||
      fail "$name: -march=$isa gives other checkpoint bits than the generic path after $steps steps"
  done
  n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no models compared"
echo "ok: $n models give the same checkpoint bits with -march=$(echo $isas | sed 's/ / and -march=/g')"
