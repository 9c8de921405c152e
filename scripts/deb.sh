#!/bin/sh
# deb.sh [BUILD_DIR] -- build nncc's Debian packages with CPack
# (cmake/install.cmake, docs/install.md):
#   nncc       the compiler, the runtime library and headers, pkg-config and
#              CMake files, the models, the docs and the manual page
#   nncc-jit   the clang/LLVM JIT of `nncc run` (only if this machine can
#              build it: llvm-14-dev, libclang-cpp14-dev, libomp-14-dev)
# into BUILD_DIR (default build/deb), prefix /usr.  Install them with
#   apt-get install ./build/deb/nncc_*.deb ./build/deb/nncc-jit_*.deb
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages $BUILD_PACKAGES
dir=${1:-build/deb}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DBUILD_TESTING=OFF \
  -DCMAKE_C_COMPILER=gcc > /dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)"
(cd "$dir" && cpack -G DEB > cpack.log 2>&1) || { cat "$dir/cpack.log" >&2; exit 1; }
ls "$dir"/*.deb
