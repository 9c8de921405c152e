#!/bin/sh
# Rewrite tests/golden/ from the current nncc: the IR after every pass and
# the DOT graph of every model in models/ and of the op models
# tests/ref/ops_*.nn.  Review the diff before committing.
set -eu
cd "$(dirname "$0")/.."
nncc=${NNCC:-build/gcc/nncc}
[ -x "$nncc" ] || { echo "build nncc first (scripts/test.sh does), or set NNCC=path" >&2; exit 1; }
mkdir -p tests/golden
passes="parse shape fuse plan" # as tests/run_golden.sh lists them
for model in models/*.nn tests/ref/ops_*.nn; do
  name=$(basename "$model" .nn)
  for pass in $passes; do
    "$nncc" --dump-after="$pass" "$model" > "tests/golden/$name.$pass.ir"
  done
  "$nncc" --dump-dot "$model" > "tests/golden/$name.dot"
done
echo "updated tests/golden/ ($(ls tests/golden | wc -l) files)"
