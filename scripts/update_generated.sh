#!/bin/sh
# Rewrite generated/NAME.c for every models/NAME.nn with the current nncc.
set -eu
cd "$(dirname "$0")/.."
nncc=${NNCC:-build/gcc/nncc}
for model in models/*.nn; do
  "$nncc" "$model" -o "generated/$(basename "$model" .nn).c"
done
echo "updated generated/"
