#!/bin/sh
# run_onnx.sh NNCC CC -- `nncc import` against PyTorch 1.13 (docs/onnx.md).
# The ONNX files and references are tests/onnx/gen_onnx.py's (committed:
# PyTorch is not needed here).  For each model it
#   1. imports MODEL.onnx (with --batch, the reference's batch) into a .nn
#      and --weights, and compares the .nn with tests/onnx/golden/MODEL.nn
#      byte for byte;
#   2. compares the written weights with the starting state PyTorch
#      exported (bit for bit);
#   3. runs tests/ref/run_ref.sh on the imported model: `grads` (loss,
#      logits, every gradient) within 1e-5, the eval-mode test loss, and
#      with batch norm the running statistics after one step;
# then checks that every malformed or unsupported file in tests/onnx/ is
# refused with its one-line message, exit status 1, and no file written or
# clobbered.  ONNX_GRADS=MODEL... limits step 3 to those models (the
# sanitizer build).  UPDATE_GOLDEN=1 rewrites the golden .nn files instead of
# comparing them.  Exits 0 if everything agrees.
set -u
[ $# -eq 2 ] || { echo "usage: $0 NNCC CC" >&2; exit 2; }
nncc=$1 cc=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $nncc in /*) ;; *) nncc=$(pwd)/$nncc ;; esac
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$root" || exit 1
mkdir -p "$tmp/nn"
fails=0
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }

# model and the batch of its reference (gen_onnx.py)
models="mnist_cnn:256 resnet_small:128 vgg11_narrow:64 squeezenet_mini:64 mobilenetv2_mini:64"
names=""
for mb in $models; do
  m=${mb%%:*} b=${mb#*:}
  names="$names $m"
  echo "== import $m"
  if ! "$nncc" import "tests/onnx/$m.onnx" --batch "$b" -o "$tmp/nn/$m.nn" \
      --weights "$tmp/nn/$m.weights.safetensors"; then
    fail "$m: import"; continue
  fi
  if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$tmp/nn/$m.nn" "tests/onnx/golden/$m.nn"
  else
    diff -u "tests/onnx/golden/$m.nn" "$tmp/nn/$m.nn" || fail "$m: the .nn differs from tests/onnx/golden/$m.nn"
  fi
  COMPARE_TOL=1e-30 "${COMPARE:?COMPARE: tests/ref/compare.c built}" "tests/onnx/$m.init.safetensors" \
    "$tmp/nn/$m.weights.safetensors" > "$tmp/w.txt" || { cat "$tmp/w.txt"; fail "$m: --weights"; }
done
COMPARE_TOL=1e-5 REF_DIR=tests/onnx MODEL_DIR="$tmp/nn" REF_NO_LOSSES=1 \
  sh tests/ref/run_ref.sh "$nncc" "$cc" ${ONNX_GRADS:-$names} || fail "the imported models against PyTorch"

# models without a reference, against their golden .nn: MatMul + Add and
# Dropout (dropout_gemm), the naming rules (names); each imported twice
# gives the same bytes, .nn and weights
mkdir -p "$tmp/a" "$tmp/b"
for m in dropout_gemm names; do
  echo "== import $m"
  "$nncc" import "tests/onnx/$m.onnx" -o "$tmp/a/$m.nn" --weights "$tmp/a/$m.safetensors" &&
    "$nncc" import "tests/onnx/$m.onnx" -o "$tmp/b/$m.nn" --weights "$tmp/b/$m.safetensors" &&
    cmp "$tmp/a/$m.nn" "$tmp/b/$m.nn" && cmp "$tmp/a/$m.safetensors" "$tmp/b/$m.safetensors" ||
    { fail "$m.onnx: import"; continue; }
  if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$tmp/a/$m.nn" "tests/onnx/golden/$m.nn"
  else
    diff -u "tests/onnx/golden/$m.nn" "$tmp/a/$m.nn" || fail "$m: the .nn differs from tests/onnx/golden/$m.nn"
  fi
done

# refusals: FILE|the message
echo "== refusals"
printf 'keep\n' > "$tmp/keep.nn"
while IFS='|' read -r f want; do
  [ -n "$f" ] || continue
  rm -f "$tmp/out.nn" "$tmp/out.safetensors"
  "$nncc" import "tests/onnx/$f" -o "$tmp/out.nn" --weights "$tmp/out.safetensors" 2> "$tmp/err"
  rc=$?
  got=$(head -1 "$tmp/err")
  case $want in "$tmp/"*) exp=$want ;; *) exp="tests/onnx/$f: error: $want" ;; esac
  if [ $rc -ne 1 ] || [ "$got" != "$exp" ]; then
    fail "$f: exit $rc, said: $got"
  elif [ -e "$tmp/out.nn" ] || [ -e "$tmp/out.safetensors" ]; then
    fail "$f: an output was written"
  fi
  # an existing output is left as it was
  "$nncc" import "tests/onnx/$f" -o "$tmp/keep.nn" 2>/dev/null
  [ "$(cat "$tmp/keep.nn")" = keep ] || fail "$f: clobbered an existing output"
done <<END
bad_op.onnx|node 'erf' (Erf): op Erf is not supported; nncc imports Conv, Gemm, MatMul (+ Add), BatchNormalization, Relu, Sigmoid, Tanh, LeakyRelu, Clip, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Flatten, Reshape (to [N, -1]), Add, Concat, Dropout, Identity, Constant
bad_autopad.onnx|node 'conv' (Conv): auto_pad SAME_UPPER is not supported (only NOTSET with explicit pads, or VALID); export with explicit padding
bad_pads.onnx|node 'conv' (Conv): pads [1, 1, 0, 0] differ between the two sides; nncc pads both sides alike (or as padding="same" at stride 1: the odd pixel at the bottom/right)
bad_dtype.onnx|input 'x' is DOUBLE; nncc trains FLOAT (float32) models
two_outputs.onnx|the graph has 2 outputs; nncc trains a model of one output (the logits)
external_data.onnx|node 'fc' (Gemm): tensor 'fc.weight' keeps its data in an external file; nncc imports only self-contained models (onnx.load(path) then onnx.save(model, path, save_as_external_data=False))
bad_opset.onnx|opset 6 is not supported (nncc reads opsets 7 to 18)
truncated.onnx|not an ONNX model (a truncated file, or not an ONNX protobuf)
garbage.onnx|not an ONNX model (a truncated file, or not an ONNX protobuf)
bad_shape.onnx|$tmp/out.nn:10:11: error: maxpool2d: kernel 7x7 does not fit input 1x4x4 (output would be 0x0)
END
# a front-end error quotes the .nn text import made, and says it was not written
"$nncc" import tests/onnx/bad_shape.onnx -o "$tmp/out.nn" 2> "$tmp/err"
[ "$(tail -1 "$tmp/err")" = "note: in the .nn text nncc import made of tests/onnx/bad_shape.onnx; nothing was written" ] ||
  fail "bad_shape.onnx: no note on the text: $(tail -1 "$tmp/err")"
n=$(ls tests/onnx/*.onnx | wc -l)
[ "$n" -ge 14 ] || fail "only $n ONNX files in tests/onnx"

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all agree"
