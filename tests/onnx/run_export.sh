#!/bin/sh
# run_export.sh NNCC MKIDX CC -- `nncc export` of every model in models/
# (docs/onnx.md).  For each model:
#   1. builds its trainer, trains 2 steps on a small made-up data set (so
#      batch norm's running statistics are its own), and writes the
#      eval-mode logits of the test images (eval --logits);
#   2. exports the checkpoint to ONNX; tests/onnx/check_export.py then runs
#      onnx.checker and OpenCV's cv2.dnn on the file: cv2's logits within
#      1e-5 (relative to the largest) of the trainer's, the same classes;
#   3. the round trip: nncc import of the export gives the same graph
#      (tests/onnx/same_graph.py: the typed IR after shape, parameters
#      under the same names; node names, dropout and the two rewritings
#      export must make aside) and, its trainer built and run with the
#      weights import writes, bit-identical eval logits.
# Then export's refusals: no --load, a checkpoint of another model, an
# adaptive pool ONNX cannot express; each one line, no output written.
# MODEL_CFLAGS are added to the trainers' flags (the sanitizer build: it
# checks mnist_cnn and resnet_small only, EXPORT_MODELS overrides; the plain
# build checks those of tests/models.sh, NNCC_ALL_MODELS=1 every one).
# Needs python3 with onnx and cv2 (Debian python3-onnx, python3-opencv).
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
py=/usr/bin/python3
"$py" -c 'import onnx, cv2' || { echo "FAIL: $py lacks onnx or cv2 (python3-onnx, python3-opencv)"; exit 1; }

mkdir "$tmp/data" && "$mkidx" "$tmp/data" 256 32 > /dev/null || exit 1
# Speed only (the checks compare with tolerances, or two builds alike): the
# runtime compiled once, the trainers at -O1 with the kernels' loops rolled
# (NNCC_KERNELS_NO_UNROLL, the same arithmetic), which compile 3x faster.
flags="-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -DNNCC_KERNELS_NO_UNROLL -march=native -fopenmp
  -ffp-contract=off ${MODEL_CFLAGS:-} -Iruntime"
mkdir "$tmp/rt"
for f in runtime/*.c; do
  "$cc" $flags -c -o "$tmp/rt/$(basename "$f" .c).o" "$f" || exit 1
done
build() { # build SRC.nn OUT
  "$nncc" "$1" -o "$2.c" && "$cc" $flags -o "$2" "$2.c" "$tmp"/rt/*.o -lpng -lz -lm
}


if [ -n "${EXPORT_MODELS:-}" ]; then models=$EXPORT_MODELS
elif [ -n "${MODEL_CFLAGS:-}" ]; then models="mnist_cnn resnet_small"
else . tests/models.sh && models=$(test_models)
fi
n=0
for m in $models; do
  echo "== $m"
  d=$tmp/$m
  mkdir -p "$d/rt"
  src=models/$m.nn
  batch=$(sed -n 's/^input [^:]*: f32\[\([0-9]*\),.*/\1/p' "$src")
  pad=$(sed -n 's/^input [^:]*: f32\[[0-9]*, *1, *\([0-9]*\), *\([0-9]*\)\].*/\1 \2/p' "$src")
  if ! build "$src" "$d/t"; then fail "$m: building the trainer"; continue; fi
  "$d/t" train --data "$tmp/data" --steps 2 --save "$d/ck.safetensors" --quiet --threads 2 &&
    "$d/t" eval --data "$tmp/data" --load "$d/ck.safetensors" --logits "$d/logits.safetensors" \
      --threads 2 > /dev/null || { fail "$m: training or eval"; continue; }
  if ! "$nncc" export "$src" --load "$d/ck.safetensors" -o "$d/$m.onnx"; then
    fail "$m: export"; continue
  fi
  "$py" tests/onnx/check_export.py "$d/$m.onnx" --images "$tmp/data/t10k-images-idx3-ubyte" \
    --hw $pad --logits "$d/logits.safetensors" --weights "$d/ck.safetensors" ||
    fail "$m: onnx.checker or cv2.dnn"
  # the round trip
  if "$nncc" import "$d/$m.onnx" --batch "$batch" -o "$d/rt/$m.nn" --weights "$d/rt/w.safetensors"; then
    "$nncc" --dump-ir --dump-after=shape "$src" > "$d/a.ir" &&
      "$nncc" --dump-ir --dump-after=shape "$d/rt/$m.nn" > "$d/b.ir" &&
      "$py" tests/onnx/same_graph.py "$d/a.ir" "$d/b.ir" || fail "$m: the re-imported graph differs"
    build "$d/rt/$m.nn" "$d/rt/t" &&
      "$d/rt/t" eval --data "$tmp/data" --load "$d/rt/w.safetensors" \
        --logits "$d/rt/logits.safetensors" --threads 2 > /dev/null &&
      cmp "$d/logits.safetensors" "$d/rt/logits.safetensors" &&
      echo "round trip: the same eval logits, bit for bit" || fail "$m: the re-imported logits differ"
  else
    fail "$m: importing the export"
  fi
  n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no model exported"

echo "== refusals"
d=$tmp/mnist_cnn
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
echo "all agree ($n models)"
