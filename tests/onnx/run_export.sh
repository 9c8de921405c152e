#!/bin/sh
# run_export.sh NNCC MKIDX CC -- `nncc export`'s refusals (docs/onnx.md):
# no --load, a checkpoint of another model, an adaptive pool ONNX cannot
# express; each one line, exit 1 or 2, no output written.  (Every model's
# export, checked by onnx.checker and OpenCV's cv2.dnn and imported back, is
# tests/run_model.sh's: the ctests model_*.)  RT_LIB: the runtime library
# the trainers link (CMake's libnncc_rt.a), else runtime/*.c is compiled
# in; MODEL_CFLAGS are added to the trainers' flags.
set -u
[ $# -eq 3 ] || { echo "usage: $0 NNCC MKIDX CC" >&2; exit 2; }
nncc=$1 mkidx=$2 cc=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $nncc in /*) ;; *) nncc=$(pwd)/$nncc ;; esac
case $mkidx in /*) ;; *) mkidx=$(pwd)/$mkidx ;; esac
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 1
fails=0
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }

mkdir "$tmp/data" && "$mkidx" "$tmp/data" 256 32 > /dev/null || exit 1
# Speed only: the trainers at -O1 with the kernels' loops rolled
# (NNCC_KERNELS_NO_UNROLL, the same arithmetic), which compile 3x faster.
flags="-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -DNNCC_KERNELS_NO_UNROLL -march=native -fopenmp
  -ffp-contract=off ${MODEL_CFLAGS:-} -Iruntime"
rt=${RT_LIB:-runtime/*.c}
build() { # build SRC.nn OUT
  "$nncc" "$1" -o "$2.c" && "$cc" $flags -o "$2" "$2.c" $rt -lpng -lz -lm
}

echo "== refusals"
d=$tmp/mnist_cnn
mkdir "$d"
build models/mnist_cnn.nn "$d/t" &&
  "$d/t" train --data "$tmp/data" --steps 1 --save "$d/ck.safetensors" --quiet --threads 2 ||
  fail "mnist_cnn: building or training"
check() { # check WANT [nncc args]: exit status 1 or 2, stderr's first line WANT, no output
  want=$1; shift
  rm -f "$tmp/out.onnx"
  "$nncc" "$@" 2> "$tmp/err"
  rc=$?
  got=$(head -1 "$tmp/err")
  { [ $rc -eq 1 ] || [ $rc -eq 2 ]; } && [ "$got" = "$want" ] && [ ! -e "$tmp/out.onnx" ] ||
    fail "export $*: exit $rc, said: $got"
}
if [ -f "$d/ck.safetensors" ]; then
  check "nncc: error: export needs the trained parameters: --load CKPT.safetensors" \
    export models/mnist_cnn.nn -o "$tmp/out.onnx"
  check "nncc: checkpoint $d/ck.safetensors: missing tensor features1.conv1.weight" \
    export models/vgg11.nn --load "$d/ck.safetensors" -o "$tmp/out.onnx"
  cat > "$tmp/adaptive.nn" <<'END'
input x: f32[8, 1, 28, 28] = mnist
label y: class[8] of 10
h = adaptive_avgpool2d(conv2d(x, 4, kernel=3), 5)
logits = linear(flatten(h), 10)
loss = cross_entropy(logits, y)
END
  build "$tmp/adaptive.nn" "$tmp/adaptive" &&
    "$tmp/adaptive" train --data "$tmp/data" --steps 1 --save "$tmp/adaptive.safetensors" --quiet &&
    check "nncc: error: $tmp/adaptive.nn: node avgpool1 (adaptive_avgpool2d) cannot be exported to ONNX: output 5x5 does not divide the input 26x26, and ONNX has no adaptive pooling" \
      export "$tmp/adaptive.nn" --load "$tmp/adaptive.safetensors" -o "$tmp/out.onnx" ||
    fail "the adaptive pooling model"
fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all refused as they should be"
