#!/bin/sh
# main.sh -- the main job: build nncc, fetch MNIST, compile the seed's CNN
# (models/mnist_cnn.nn) and show its IR.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages $BUILD_PACKAGES
command -v npm > /dev/null || need_packages npm

cmake -S . -B build/gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF > /dev/null
cmake --build build/gcc -j "$(nproc 2>/dev/null || echo 2)"
bash scripts/fetch_mnist.sh
build/gcc/nncc --dump-ir models/mnist_cnn.nn
