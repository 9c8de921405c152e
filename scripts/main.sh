#!/bin/sh
# main.sh [TRAIN FLAGS...] -- the main job: build nncc, fetch MNIST, compile
# the seed's CNN (models/mnist_cnn.nn) to C, build it and train it (the
# model's own settings: Adam lr 0.0002, 10 epochs).  Extra arguments go to
# the trainer, e.g. `sh scripts/main.sh --epochs 1`.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages $BUILD_PACKAGES
command -v npm > /dev/null || need_packages npm

# Its own build tree: the test suite's build/gcc never inherits BUILD_TESTING=OFF.
cmake -S . -B build/main -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF > /dev/null
cmake --build build/main -j "$(nproc 2>/dev/null || echo 2)"
bash scripts/fetch_mnist.sh

echo "== the model"
build/main/nncc --dump-ir models/mnist_cnn.nn | grep '^;'
echo "== compile and build"
build/main/nncc models/mnist_cnn.nn -o generated/mnist_cnn.c
make -C generated mnist_cnn
echo "== train"
generated/mnist_cnn train --data data/mnist --log data/mnist_cnn.jsonl --save data/mnist_cnn.safetensors "$@"
generated/mnist_cnn eval --data data/mnist --load data/mnist_cnn.safetensors
