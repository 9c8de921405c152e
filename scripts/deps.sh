# deps.sh -- sourced by the set-up scripts: make sure Debian packages are
# installed.  As root it installs what is missing; otherwise it prints the
# exact apt line and stops.
need_packages() {
  missing=""
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing > /dev/null ||
      { echo "error: apt-get install failed for:$missing" >&2; exit 1; }
  else
    echo "missing Debian packages; run:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
}

# The arm64 architecture beside the machine's own (Debian multiarch), for
# CROSS_PACKAGES: as root it is added, otherwise the command is printed.
need_arm64() {
  dpkg --print-foreign-architectures | grep -qx arm64 && return 0
  if [ "$(id -u)" = 0 ]; then
    dpkg --add-architecture arm64
  else
    echo "the arm64 architecture is not enabled; run:" >&2
    echo "  sudo dpkg --add-architecture arm64" >&2
    exit 1
  fi
}

# The suite's aarch64 test (tests/e2e/run_aarch64.sh): Debian's cross gcc,
# qemu's user-mode emulator, and the runtime's libraries for arm64.
CROSS_PACKAGES="gcc-aarch64-linux-gnu qemu-user zlib1g-dev:arm64 libpng-dev:arm64"

# What building and testing nncc needs (libclang-rt-14-dev: clang's
# sanitizer runtimes and libFuzzer, only recommended by clang).
BUILD_PACKAGES="cmake make gcc clang pkg-config check zlib1g-dev libpng-dev libomp-14-dev libclang-rt-14-dev"
# Debian packages (scripts/deb.sh): dpkg-shlibdeps finds their library dependencies.
BUILD_PACKAGES="$BUILD_PACKAGES dpkg-dev"
# `nncc plot` and `train --plot` draw with gnuplot (their tests need it);
# Fashion-MNIST (scripts/fetch_fashion_mnist.sh, test e2e_fashion).
BUILD_PACKAGES="$BUILD_PACKAGES gnuplot-nox dataset-fashion-mnist"
# Data-parallel trainers (nncc --ranks N, mpirun; docs/distributed.md).
BUILD_PACKAGES="$BUILD_PACKAGES openmpi-bin libopenmpi-dev"
# ONNX import and export: protobuf-c and Debian's onnx.proto (docs/onnx.md); the
# export tests check the files with onnx.checker and OpenCV's cv2.dnn.
BUILD_PACKAGES="$BUILD_PACKAGES protobuf-c-compiler libprotobuf-c-dev libonnx-dev python3-onnx python3-opencv"
# The JIT of `nncc run` (CMake option NNCC_JIT, docs/jit.md).
BUILD_PACKAGES="$BUILD_PACKAGES g++ llvm-14-dev libclang-14-dev libclang-cpp14-dev"
