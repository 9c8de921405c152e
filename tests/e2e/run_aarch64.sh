#!/bin/sh
# run_aarch64.sh NNCC MKIDX -- the same bits on aarch64 (NEON: nncc_simd.h's
# generic vector path, whose FMA is fmla) as here: each op model of
# tests/ref is built for this CPU (-march=native) and, with Debian's cross
# gcc, statically for aarch64, both train 20 steps on the same data and
# seed, and the checkpoints must be byte-identical (the aarch64 one runs
# under qemu-user).  Then two gradient checks run under qemu: the general
# convolutions and the fused forms of passes/fuse.c.  scripts/test.sh
# installs the cross compiler, qemu and the arm64 zlib and libpng; without
# them this fails, it does not skip.
set -u
nncc=$1 mkidx=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
xcc=aarch64-linux-gnu-gcc
command -v $xcc > /dev/null && command -v qemu-aarch64 > /dev/null ||
  fail "no $xcc or qemu-aarch64 (scripts/test.sh installs gcc-aarch64-linux-gnu, qemu-user and the arm64 libraries)"
flags="-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -fopenmp -ffp-contract=off -Wall -Wextra -Werror -Iruntime"
# a static libgomp warns that it may dlopen at run time; nothing else may
xbuild() {
  out=$1
  shift
  # shellcheck disable=SC2086
  $xcc $flags "$@" -static -o "$out" > "$tmp/xbuild.log" 2>&1 || { cat "$tmp/xbuild.log"; return 1; }
  if grep -v 'dlopen\|goacc_profiling_initialize' "$tmp/xbuild.log" | grep -q .; then
    cat "$tmp/xbuild.log"
    return 1
  fi
}

mkdir "$tmp/data"
"$mkidx" "$tmp/data" 200 32 > /dev/null || fail "mkidx"
# the runtime, once for each target
mkdir "$tmp/rt.x86" "$tmp/rt.arm"
for f in runtime/*.c; do
  o=$(basename "$f" .c).o
  # shellcheck disable=SC2086
  gcc $flags -march=native -c "$f" -o "$tmp/rt.x86/$o" || fail "$f: build for this CPU"
  xbuild "$tmp/rt.arm/$o" -c "$f" || fail "$f: build for aarch64"
done
n=0
for model in tests/ref/ops_*.nn; do
  name=$(basename "$model" .nn)
  "$nncc" "$model" -o "$tmp/$name.c" || fail "nncc $model"
  # shellcheck disable=SC2086
  gcc $flags -march=native "$tmp/$name.c" "$tmp"/rt.x86/*.o -lpng -lz -lm -o "$tmp/$name.x86" ||
    fail "$name: build for this CPU"
  xbuild "$tmp/$name.arm" "$tmp/$name.c" "$tmp"/rt.arm/*.o -lpng -lz -lm || fail "$name: build for aarch64"
  for t in x86 arm; do
    run=""
    [ $t = arm ] && run=qemu-aarch64
    $run "$tmp/$name.$t" train --data "$tmp/data" --steps 20 --seed 13 --threads 2 --save "$tmp/$name.$t.st" \
      --quiet > "$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "$name: training the $t build"; }
  done
  cmp -s "$tmp/$name.x86.st" "$tmp/$name.arm.st" ||
    fail "$name: aarch64 gives other checkpoint bits than this CPU after 20 steps"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no models compared"
fmla=$(aarch64-linux-gnu-objdump -d "$tmp/ops_conv.arm" | grep -c 'fmla.*\.4s')
[ "$fmla" -gt 0 ] || fail "the aarch64 build has no NEON fmla: not the vector path"

for gc in conv_general fused; do
  "$nncc" "tests/gradcheck/$gc.nn" -o "$tmp/gc_$gc.c" || fail "nncc $gc"
  xbuild "$tmp/gc_$gc" -DNNCC_NO_MAIN "$tmp/gc_$gc.c" tests/gradcheck/gradcheck.c -lm || fail "$gc: build for aarch64"
  OMP_NUM_THREADS=2 qemu-aarch64 "$tmp/gc_$gc" > "$tmp/gc.log" 2>&1 || { cat "$tmp/gc.log"; fail "gradcheck $gc under qemu"; }
done
echo "ok: $n op models give the same checkpoint bits on aarch64 (qemu, $fmla NEON fmla in ops_conv) as here; gradcheck conv_general and fused pass there"
