#!/bin/sh
# fetch_fashion_mnist.sh [DIR] -- Fashion-MNIST's four IDX files (gzipped,
# as Zalando publishes them; the trainers read .gz) in DIR (default
# data/fashion-mnist at the repository root), verified by SHA-256.
#
# They come from Debian's dataset-fashion-mnist package, installed here
# like every other dependency (scripts/deps.sh: as root it installs it,
# otherwise it prints the apt line); its files are checked against the
# checksums below before they are copied.  If DIR already holds all four
# with the right checksums, nothing is done.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/data/fashion-mnist}
src=/usr/share/datasets/fashion-mnist
sums="cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz"
die() { echo "fetch_fashion_mnist.sh: $*" >&2; exit 1; }
# verified DIR: all four files of DIR have their checksums
verified() { (cd "$1" 2>/dev/null && echo "$sums" | sha256sum --check --status 2>/dev/null); }

if verified "$dest"; then
  echo "Fashion-MNIST already present and verified in $dest"
  exit 0
fi
. "$repo/scripts/deps.sh"
need_packages dataset-fashion-mnist
verified "$src" || die "$src does not hold the expected files (SHA-256 mismatch or missing): $(cd "$src" && echo "$sums" | sha256sum --check 2>&1 | grep -v ': OK$' | head -1)"
mkdir -p "$dest"
echo "$sums" | while read -r sum name; do
  # copy then rename: an interrupted run never leaves a partial file under the real name
  cp "$src/$name" "$dest/$name.part" && mv "$dest/$name.part" "$dest/$name" || die "cannot write $dest/$name"
done
verified "$dest" || die "the copies in $dest do not verify"
echo "Fashion-MNIST verified in $dest"
