#!/bin/sh
# mkseeds.sh NNCC MKIDX -- rewrite the fuzzers' seed corpora from real files
# (review the diff; the front end's seeds are the tree's .nn files, see
# run_fuzz.sh):
#   seeds/idx/   MNIST-style IDX files from tests/e2e/mkidx.c and
#                tests/ref/data_vgg_tiny_bn, raw and gzip, in fuzz_idx.c's
#                layout: flags byte, image file length, image file, label file
#   seeds/ckpt/  checkpoints of ckpt_model.nn written by its trainer (Adam
#                and SGD state, no state, a `grads` file) and one written by
#                PyTorch's safetensors (tests/ref)
# Run from anywhere: sh tests/fuzz/mkseeds.sh build/gcc/nncc build/gcc/tests/mkidx
set -eu
nncc=$(realpath "$1") mkidx=$(realpath "$2")
cd "$(dirname "$0")/../.."
out=tests/fuzz/seeds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- idx
be32() { # a 32-bit big-endian integer as raw bytes
  printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) \
    $(($1 >> 8 & 255)) $(($1 & 255)))"
}
# seed NAME FLAGS IMAGES LABELS
seed() {
  { printf "$(printf '\\%03o' "$2")"; be32 "$(wc -c < "$3")"; cat "$3" "$4"; } > "$out/idx/$1"
}
rm -rf "$out/idx" "$out/ckpt"
mkdir -p "$out/idx" "$out/ckpt" "$tmp/d"
"$mkidx" "$tmp/d" 2 1
d=$tmp/d
for f in "$d"/*-ubyte; do gzip -n -9 -c "$f" > "$f.gz"; done
seed mkidx_raw 0 "$d/train-images-idx3-ubyte" "$d/train-labels-idx1-ubyte"
seed mkidx_gz 3 "$d/train-images-idx3-ubyte.gz" "$d/train-labels-idx1-ubyte.gz"
seed mkidx_gz_images 1 "$d/t10k-images-idx3-ubyte.gz" "$d/t10k-labels-idx1-ubyte"
seed mkidx_pad2 4 "$d/t10k-images-idx3-ubyte" "$d/t10k-labels-idx1-ubyte"
r=tests/ref/data_vgg_tiny_bn
gzip -n -9 -c "$r/train-images-idx3-ubyte" > "$tmp/ri.gz"
gzip -n -9 -c "$r/train-labels-idx1-ubyte" > "$tmp/rl.gz"
seed ref16_gz 3 "$tmp/ri.gz" "$tmp/rl.gz"
# three 4x4 images (the harness's tiny model), labels 0 1 9: fine with 10
# classes, out of range with 2
{ be32 2051; be32 3; be32 4; be32 4; head -c 48 "$d/train-images-idx3-ubyte" | tail -c 32;
  head -c 16 "$d/train-images-idx3-ubyte"; } > "$tmp/tiny-images"
{ be32 2049; be32 3; printf '\000\001\011'; } > "$tmp/tiny-labels"
seed tiny_4x4 8 "$tmp/tiny-images" "$tmp/tiny-labels"
seed tiny_4x4_2classes 24 "$tmp/tiny-images" "$tmp/tiny-labels"

# ---- ckpt
"$nncc" tests/fuzz/ckpt_model.nn -o "$tmp/adam.c"
sed 's/^train .*/train sgd(lr=0.1, momentum=0.9) seed=2/' tests/fuzz/ckpt_model.nn > "$tmp/sgd.nn"
sed 's/^train .*/train sgd(lr=0.1)/' tests/fuzz/ckpt_model.nn > "$tmp/plain.nn"
"$nncc" "$tmp/sgd.nn" -o "$tmp/sgd.c"
"$nncc" "$tmp/plain.nn" -o "$tmp/plain.c"
for m in adam sgd plain; do
  cc -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -fopenmp -Iruntime -o "$tmp/$m" "$tmp/$m.c" runtime/*.c -lpng -lz -lm
done
q="--data $d --quiet --threads 1"
"$tmp/adam" train $q --steps 2 --save "$out/ckpt/adam_step2.safetensors"
"$tmp/sgd" train $q --steps 1 --save "$out/ckpt/sgd_momentum_step1.safetensors"
"$tmp/plain" train $q --steps 1 --save "$out/ckpt/sgd_plain_step1.safetensors"
"$tmp/adam" grads $q --load "$out/ckpt/adam_step2.safetensors" --out "$out/ckpt/grads.safetensors"
cp tests/ref/vgg_tiny_bn.step1.safetensors "$out/ckpt/pytorch_vgg_tiny_bn.safetensors"
ls -l "$out/idx" "$out/ckpt"
