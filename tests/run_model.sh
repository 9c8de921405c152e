#!/bin/sh
# run_model.sh NNCC MKIDX CC MODEL -- one model through everything that
# leaves the trainer: the ctest model_MODEL (tests/CMakeLists.txt registers
# one per model of tests/models.sh, the op models of tests/ref/ and
# tests/infer/edge.nn).  One trainer serves every check:
#   1. its trainer (all kernels' loops rolled at -O1, NNCC_KERNELS_NO_UNROLL:
#      the same bits from a compile three times faster) trains 2 steps on a
#      small data set MKIDX writes, so batch-norm statistics are its own,
#      and `eval --logits` writes the test images' eval-mode logits;
#   2. nncc --infer (docs/infer.md): the predictor from that checkpoint,
#      built with tests/infer/check_infer.c at -std=c99 -O2 -Wall -Wextra
#      -Werror -pedantic, within 1e-5 relative of the trainer's logits on
#      100 test images, the same argmax, predict equal to predict_batch;
#   3. nncc export (docs/onnx.md; ops_pool's adaptive pool must be refused,
#      ONNX has no such op): onnx.checker and
#      OpenCV's cv2.dnn on the file (tests/onnx/check_export.py: within 1e-5
#      of the trainer's logits, the same classes);
#   4. the round trip: nncc import of that export gives the same graph
#      (tests/onnx/same_graph.py: the typed IR after shape, parameters under
#      the same names; node names, dropout and the two rewritings export must
#      make aside), and the predictor of the imported model and weights gives
#      step 2's logits bit for bit.  (Trainers built from imported models are
#      onnx_import's part: tests/onnx/run_onnx.sh.)
# The VGGs (100+ MB of weights, slow in plain C) train 1 step, use
# --infer-weights and 10 test images.  RT_LIB: the runtime library the
# trainer links (CMake's libnncc_rt.a), else runtime/*.c is compiled in.
# MODEL_CFLAGS are added to the trainer's flags; when set (the sanitizer
# build) the predictors are built with ASan and UBSan too.  By hand,
# INFER_FULL=data/mnist trains 20 steps on the real MNIST and compares all
# its 10,000 test images (INFER_COUNT: the first N), and INFER_PFLAGS sets
# the predictors' optimization (default -O2).  Exits 0 if everything agrees.
set -u
[ $# -eq 4 ] || { echo "usage: $0 NNCC MKIDX CC MODEL" >&2; exit 2; }
nncc=$1 mkidx=$2 cc=$3 m=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
case $nncc in /*) ;; *) nncc=$(pwd)/$nncc ;; esac
case $mkidx in /*) ;; *) mkidx=$(pwd)/$mkidx ;; esac
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 1
fails=0
fail() { echo "FAIL: $m: $1"; fails=$((fails + 1)); }
py=/usr/bin/python3

src=""
for f in models/$m.nn tests/ref/$m.nn tests/infer/$m.nn; do [ -f "$f" ] && src=$f && break; done
[ -n "$src" ] || { echo "FAIL: no model $m in models/, tests/ref/ or tests/infer/"; exit 1; }

. tests/infer/build_check.sh # build_check, $sanitize
mflags=${MODEL_CFLAGS:-}
if [ -n "$mflags" ]; then
  pflags="-O1 $sanitize"
else
  pflags=${INFER_PFLAGS:--O2}
fi
tflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -DNNCC_KERNELS_NO_UNROLL -march=native -fopenmp
  -ffp-contract=off $mflags -Iruntime"
rt=${RT_LIB:-runtime/*.c}

data=$tmp/data count=100 steps=2 w=""
case $m in vgg1*) count=10 steps=1 w="--infer-weights" ;; esac
if [ -n "${INFER_FULL:-}" ]; then
  data=$INFER_FULL count=${INFER_COUNT:-0} steps=20
else
  mkdir "$data" && "$mkidx" "$data" 512 $count > /dev/null || { echo "FAIL: mkidx"; exit 1; }
fi
images=$data/t10k-images-idx3-ubyte

# predictor DIR MODEL.nn CKPT: DIR/check from nncc --infer and check_infer.c,
# run against the trainer's logits; its logits to DIR/logits.raw
predictor() {
  d=$1
  mkdir -p "$d"
  "$nncc" --infer "$2" --load "$3" -o "$d/p_infer.c" ${w:+$w "$d/w.bin"} || return 1
  build_check "$d" p $pflags ${w:+-DWEIGHTS} &&
    "$d/check" "$images" "$count" "$tmp/logits.safetensors" --out "$d/logits.raw" ${w:+--weights "$d/w.bin"}
}

echo "== $m ($src)"
t0=$(date +%s)
"$nncc" "$src" -o "$tmp/t.c" && "$cc" $tflags -o "$tmp/t" "$tmp/t.c" $rt -lpng -lz -lm || {
  echo "FAIL: $m: building the trainer"
  exit 1
}
"$tmp/t" train --data "$data" --steps $steps --save "$tmp/ck.safetensors" --quiet --threads 2 &&
  "$tmp/t" eval --data "$data" --load "$tmp/ck.safetensors" --logits "$tmp/logits.safetensors" \
    --threads 2 > /dev/null || { echo "FAIL: $m: training or eval"; exit 1; }
echo "trainer: built, trained $steps steps ($(($(date +%s) - t0)) s)"

predictor "$tmp/p" "$src" "$tmp/ck.safetensors" || fail "nncc --infer's predictor"

case $m in
ops_pool) # its adaptive max pool (output 3x2 of 4x4) has no ONNX form: refused
  "$nncc" export "$src" --load "$tmp/ck.safetensors" -o "$tmp/$m.onnx" 2> "$tmp/err"
  rc=$?
  [ $rc = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "cannot be exported to ONNX" "$tmp/err" &&
    [ ! -e "$tmp/$m.onnx" ] && echo "export: refused, as it should be: $(cat "$tmp/err")" ||
    fail "export: exit $rc, said: $(cat "$tmp/err")"
  ;;
*)
  batch=$(sed -n 's/^input [^:]*: f32\[\([0-9]*\),.*/\1/p' "$src")
  hw=$(sed -n 's/^input [^:]*: f32\[[0-9]*, *1, *\([0-9]*\), *\([0-9]*\)\].*/\1 \2/p' "$src")
  # where mnist(pad=[TOP, LEFT]) puts the image (check_export.py centres it
  # otherwise, which mnist and mnist(pad=P) also do)
  at=$(sed -n 's/^input .*= *mnist(pad=\[ *\([0-9]*\), *\([0-9]*\) *\]).*/--pad \1 \2/p' "$src")
  if "$nncc" export "$src" --load "$tmp/ck.safetensors" -o "$tmp/$m.onnx"; then
    "$py" tests/onnx/check_export.py "$tmp/$m.onnx" --images "$images" --hw $hw $at \
      --logits "$tmp/logits.safetensors" --weights "$tmp/ck.safetensors" || fail "onnx.checker or cv2.dnn"
    mkdir "$tmp/rt"
    # ONNX does not say where an image sits on the input canvas: --input
    # gives import the original's data source (docs/onnx.md)
    source=$(sed -n 's/^input [^=]*= *\([^#]*[^# ]\).*/\1/p' "$src")
    if "$nncc" import "$tmp/$m.onnx" --batch "$batch" --input "$source" -o "$tmp/rt/$m.nn" \
      --weights "$tmp/rt/w.safetensors"; then
      "$nncc" --dump-ir --dump-after=shape "$src" > "$tmp/a.ir" &&
        "$nncc" --dump-ir --dump-after=shape "$tmp/rt/$m.nn" > "$tmp/b.ir" &&
        "$py" tests/onnx/same_graph.py "$tmp/a.ir" "$tmp/b.ir" || fail "the re-imported graph differs"
      predictor "$tmp/rt/p" "$tmp/rt/$m.nn" "$tmp/rt/w.safetensors" &&
        cmp "$tmp/p/logits.raw" "$tmp/rt/p/logits.raw" &&
        echo "round trip: the re-imported model's predictor gives the same logits, bit for bit" ||
        fail "the re-imported model's logits differ"
    else
      fail "importing the export"
    fi
  else
    fail "nncc export"
  fi
  ;;
esac

echo "$m: $(($(date +%s) - t0)) s"
[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all agree"
