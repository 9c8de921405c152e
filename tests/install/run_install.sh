#!/bin/sh
# run_install.sh BUILD_DIR MKIDX -- nncc installed as a C tool is used from
# outside its source tree (docs/install.md):
#  - `cmake --install BUILD_DIR --prefix P` lays out bin, the runtime library
#    and headers, the pkg-config and CMake files, models, docs, the man page
#  - from another directory, with only P's files, mnist_cnn is compiled and
#    built three ways (pkg-config + cc, a CMake project with
#    find_package(nncc), nncc build) and trained 3 steps: each checkpoint
#    equals the in-tree build's (generated/Makefile, runtime/*.c)
#  - nncc run from P, with the JIT (if built) and with cc, gives the same bits
#  - P still works after it is moved elsewhere (every path is relative)
#  - a header of another runtime ABI fails the build, a runtime library of
#    another ABI is refused at start-up, -ffast-math fails the build and a
#    build that fuses multiply-adds is refused at start-up
# CC_FOR_MODELS and MODEL_CFLAGS (the sanitizer build) choose how trainers
# are built, as for the gradient checks; INSTALL_TEST_MODEL (the sanitizer
# build: tests/jit/tiny.nn) replaces the installed mnist_cnn, whose dozen
# trainings under the sanitizers take most of an hour.
set -u
build=$(cd "$1" && pwd) mkidx=$2
repo=$(pwd)
cc=${CC_FOR_MODELS:-cc}
cflags=${MODEL_CFLAGS:--O3 -march=native}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export NNCC_CACHE_DIR="$tmp/cache" # nncc run caches here, not in ~/.cache
fail() { echo "FAIL: $*"; exit 1; }
run() { # run NAME CMD... : output to $tmp/NAME.out, fail on non-zero
  name=$1; shift
  "$@" > "$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out"; fail "$name: $*"; }
}

P=$tmp/prefix
run install cmake --install "$build" --prefix "$P"
for f in bin/nncc include/nncc/nncc_rt.h include/nncc/nncc_kernels.h include/nncc/nncc_simd.h \
         share/nncc/models/mnist_cnn.nn share/nncc/models/lib/vgg.nn \
         share/doc/nncc/README.md share/doc/nncc/language.md share/man/man1/nncc.1.gz; do
  [ -f "$P/$f" ] || fail "install lacks $f"
done
[ -e "$P/include/nncc/rt.h" ] && fail "install ships the runtime's internal header rt.h"
lib=$(cd "$P" && find . -name libnncc_rt.a) pc=$(cd "$P" && find . -name nncc-runtime.pc)
cfg=$(cd "$P" && find . -name nnccConfig.cmake)
[ -n "$lib" ] && [ -n "$pc" ] && [ -n "$cfg" ] || fail "install lacks libnncc_rt.a, nncc-runtime.pc or nnccConfig.cmake"
jit=$(cd "$P" && find . -name libnncc_jit.so)
[ -f "$build/libnncc_jit.so" ] && [ -z "$jit" ] && fail "the build has the JIT, the install does not"

# Everything below runs outside the checkout, from P's files only.
W=$tmp/work
mkdir -p "$W/data" && cd "$W" || fail "cd"
run mkidx "$mkidx" "$W/data" 512 64
model=${INSTALL_TEST_MODEL:-$P/share/nncc/models/mnist_cnn.nn}
mname=$(sed -n 's/^model \([A-Za-z0-9_]*\).*/\1/p' "$model")
[ -n "$mname" ] || mname=$(basename "$model" .nn) # no `model` line: the file's name
run compile "$P/bin/nncc" "$model" -o mnist_cnn.c
run version "$P/bin/nncc" --version
grep -q "^nncc [0-9]" "$tmp/version.out" || fail "nncc --version: $(cat "$tmp/version.out")"

# 1. pkg-config + cc, warnings as errors
export PKG_CONFIG_PATH="$P/$(dirname "$pc")"
run pc_flags pkg-config --cflags --libs nncc-runtime
grep -q -- "-ffp-contract=off" "$tmp/pc_flags.out" || fail "pkg-config's flags lack -ffp-contract=off"
# shellcheck disable=SC2046,SC2086
run build_pc $cc $cflags -Wall -Wextra -Werror $(pkg-config --cflags nncc-runtime) mnist_cnn.c \
  $(pkg-config --libs nncc-runtime) -o t_pc

# 2. a CMake project
mkdir -p proj
cat > proj/CMakeLists.txt <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(uses_nncc C)
find_package(nncc 0.1 REQUIRED)
nncc_add_trainer(mnist_cnn "$model")
CMAKE
run cmake_cfg cmake -S proj -B proj/b -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" -DCMAKE_BUILD_TYPE=
run cmake_build cmake --build proj/b
grep -q -- "-ffp-contract=off" proj/b/CMakeFiles/mnist_cnn.dir/flags.make ||
  fail "nncc::runtime does not pass -ffp-contract=off"

# 3. nncc build
run build_nncc env CC="$cc" CFLAGS="$cflags" "$P/bin/nncc" build "$model" -o t_build
[ -x t_build ] || fail "nncc build made no executable"
run build_default env CC="$cc" CFLAGS="$cflags" "$P/bin/nncc" build "$model"
[ -x "$mname" ] || fail "nncc build without -o made no ./$mname"

# nncc build's failures: one clear line, exit 1, no trainer, no temp files
mkdir -p "$tmp/t"
fails() { # fails NAME EXPECTED CMD... : CMD exits 1, says EXPECTED, leaves nothing
  name=$1 expect=$2; shift 2
  TMPDIR=$tmp/t "$@" > "$tmp/$name.out" 2>&1 && fail "$name succeeded"
  [ $? = 1 ] || fail "$name: exit status is not 1"
  grep -q -- "$expect" "$tmp/$name.out" || fail "$name: no '$expect' in: $(cat "$tmp/$name.out")"
  [ -z "$(ls -A "$tmp/t")" ] || fail "$name left temp files: $(ls -A "$tmp/t")"
  [ -e t_fail ] && fail "$name left an output"
  return 0
}
fails no_cc "no C compiler: 'no-such-cc' is not on PATH" \
  env CC=no-such-cc "$P/bin/nncc" build "$model" -o t_fail
fails cc_fails "failed building the trainer of model $mname" \
  env CC="$cc" CFLAGS="-no-such-flag" "$P/bin/nncc" build "$model" -o t_fail
mkfifo fifo
fails fifo "cannot write 'fifo': FIFO has no reader" \
  env CC="$cc" CFLAGS="$cflags" "$P/bin/nncc" build "$model" -o fifo
fails bad_model "error:" "$P/bin/nncc" build "$P/share/nncc/models/lib/vgg.nn" -o t_fail

# the in-tree build, as README's `make -C generated` does it
mkdir intree && cp mnist_cnn.c intree/
run build_tree make -s -C intree -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC="$cc" \
  OPTFLAGS="$cflags" mnist_cnn

train() { # train NAME EXE...
  name=$1; shift
  run "$name" "$@" train --data data --steps 3 --seed 7 --threads 2 --save "$name.st"
}
train ref intree/mnist_cnn
train pc ./t_pc
train cmake proj/b/mnist_cnn
train build ./t_build
for t in pc cmake build; do
  cmp -s ref.st $t.st || fail "the $t build's checkpoint differs from the in-tree build's"
done

# nncc run from P: the JIT (when installed) and cc
run run_cc env CC="$cc" CFLAGS="$cflags" "$P/bin/nncc" run --no-jit "$model" train --data data \
  --steps 3 --seed 7 --threads 2 --save run_cc.st
cmp -s ref.st run_cc.st || fail "nncc run --no-jit's checkpoint differs"
if [ -n "$jit" ]; then
  run run_jit "$P/bin/nncc" run "$model" train --data data --steps 3 --seed 7 --threads 2 --save run_jit.st
  grep -q "(JIT)" "$tmp/run_jit.out" || fail "installed nncc run did not use the JIT: $(head -1 "$tmp/run_jit.out")"
  cmp -s ref.st run_jit.st || fail "nncc run's (JIT) checkpoint differs"
fi

# the prefix moved: nothing in it names where it was installed
mv "$P" "$tmp/moved" && P=$tmp/moved
export PKG_CONFIG_PATH="$P/$(dirname "$pc")"
[ -z "${INSTALL_TEST_MODEL:-}" ] && model=$P/share/nncc/models/mnist_cnn.nn
run moved_build env CC="$cc" CFLAGS="$cflags" "$P/bin/nncc" build "$model" -o t_moved
# shellcheck disable=SC2046,SC2086
run moved_pc $cc $cflags $(pkg-config --cflags nncc-runtime) mnist_cnn.c \
  $(pkg-config --libs nncc-runtime) -o t_moved_pc
train moved ./t_moved
train moved_pc ./t_moved_pc
cmp -s ref.st moved.st && cmp -s ref.st moved_pc.st || fail "a moved prefix builds other bits"
if [ -n "$jit" ]; then
  run moved_jit "$P/bin/nncc" run "$model" train --data data --steps 3 --seed 7 --threads 2 --save moved_jit.st
  grep -q "(JIT)" "$tmp/moved_jit.out" || fail "moved nncc run lost the JIT: $(head -1 "$tmp/moved_jit.out")"
fi

# version checks: another ABI's header, another ABI's runtime library
inc=$P/include/nncc
mkdir -p abi99/inc && cp "$inc"/*.h abi99/inc/
sed -i 's/^#define NNCC_RT_ABI [0-9]*/#define NNCC_RT_ABI 99/' abi99/inc/nncc_rt.h
$cc -std=c11 -fopenmp -ffp-contract=off -Iabi99/inc -c mnist_cnn.c -o abi99/x.o > "$tmp/abi_h.out" 2>&1 &&
  fail "mnist_cnn.c built against a header of another ABI"
grep -q "regenerate it" "$tmp/abi_h.out" || fail "no clear error for another ABI's header: $(cat "$tmp/abi_h.out")"
cp "$repo"/runtime/*.c "$repo"/runtime/*.h abi99/ &&
  sed -i 's/^#define NNCC_RT_ABI [0-9]*/#define NNCC_RT_ABI 99/' abi99/nncc_rt.h
for f in abi99/*.c; do
  # shellcheck disable=SC2086
  $cc -std=c11 -D_POSIX_C_SOURCE=200809L -O0 -fopenmp -ffp-contract=off $cflags -c "$f" -o "$f.o" ||
    fail "building the ABI-99 runtime"
done
# shellcheck disable=SC2046,SC2086
run abi_obj $cc $cflags $(pkg-config --cflags nncc-runtime) -c mnist_cnn.c -o mnist_cnn.o
# shellcheck disable=SC2086
run abi_link $cc $cflags -fopenmp mnist_cnn.o abi99/*.o -lpng -lz -lm -o t_abi99
./t_abi99 train --data data --steps 1 > "$tmp/abi_rt.out" 2>&1 && fail "a runtime of another ABI ran the model"
grep -q "built for runtime ABI [0-9]*, this runtime is ABI 99" "$tmp/abi_rt.out" ||
  fail "no clear start-up error for another ABI's runtime: $(cat "$tmp/abi_rt.out")"

# the same-bits flags: -ffast-math fails the build; fused multiply-adds are refused
# shellcheck disable=SC2046,SC2086
$cc $cflags $(pkg-config --cflags nncc-runtime) -ffast-math -c mnist_cnn.c -o fm.o > "$tmp/fm.out" 2>&1 &&
  fail "mnist_cnn.c built with -ffast-math"
grep -q "must not be built with -ffast-math" "$tmp/fm.out" || fail "no clear -ffast-math error: $(cat "$tmp/fm.out")"
if command -v clang > /dev/null; then
  # shellcheck disable=SC2046
  # shellcheck disable=SC2086
  run fused clang $cflags -march=native $(pkg-config --cflags nncc-runtime) -ffp-contract=fast \
    mnist_cnn.c $(pkg-config --libs nncc-runtime) -o t_fused
  if ./t_fused train --data data --steps 1 > "$tmp/fused.out" 2>&1; then
    # only where the CPU has no FMA can nothing be fused
    grep -q fma /proc/cpuinfo && fail "a trainer built with -ffp-contract=fast ran"
  else
    grep -q "fusing multiply-adds" "$tmp/fused.out" || fail "no clear error for fused multiply-adds: $(cat "$tmp/fused.out")"
  fi
fi
echo "ok: installed nncc builds $mname three ways (and nncc run${jit:+ with the JIT}) to the in-tree bits"
