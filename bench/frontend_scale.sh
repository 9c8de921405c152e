#!/bin/sh
# frontend_scale.sh -- how compile time grows with the size of the graph.
#
# Generates models of about N nodes (N = 5k, 10k, 20k, 40k by default):
# residual units of conv-bn-relu-conv-add-relu on small tensors, half of
# them written inline at the top level (one scope numbers thousands of
# nodes) and half through a block call (thousands of scopes).  Prints the
# seconds of `nncc --dump-after=plan` (front end, fusion, planning, dump)
# and of `nncc -o OUT.c` (the same plus code generation).  Time that grows
# ~2x per row is linear; ~4x is quadratic.
#
# Usage: bench/frontend_scale.sh [NNCC [N...]]
set -eu
cd "$(dirname "$0")/.."
nncc=${1:-build/gcc/nncc}
[ $# -gt 0 ] && shift
sizes=${*:-5000 10000 20000 40000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# gen N: a model of about N nodes on stdout
gen() {
  awk -v n="$1" 'BEGIN {
    print "model scale"
    print "input x: f32[4, 1, 28, 28] = mnist"
    print "label y: class[4] of 10"
    print "block unit(h) {"
    print "  r = relu(batchnorm2d(conv2d(h, 2, kernel=3, padding=1, bias=false)))"
    print "  return relu(h + conv2d(r, 2, kernel=3, padding=1, bias=false))"
    print "}"
    print "h = maxpool2d(conv2d(x, 2, kernel=3, padding=1), 4)"
    for (i = 0; 6 * i + 8 < n; i++) {
      if (i % 2) {
        print "h = unit(h)"
      } else {
        print "r = relu(batchnorm2d(conv2d(h, 2, kernel=3, padding=1, bias=false)))"
        print "h = relu(h + conv2d(r, 2, kernel=3, padding=1, bias=false))"
      }
    }
    print "logits = linear(flatten(h), 10)"
    print "loss = cross_entropy(logits, y)"
  }'
}

# secs CMD...: wall-clock seconds of one run
secs() {
  t0=$(date +%s%N)
  "$@" > /dev/null
  t1=$(date +%s%N)
  awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }'
}

printf '%8s %8s %12s %12s\n' nodes lines "plan (s)" "emit C (s)"
for n in $sizes; do
  gen "$n" > "$tmp/m$n.nn"
  plan=$(secs "$nncc" --dump-after=plan "$tmp/m$n.nn")
  emit=$(secs "$nncc" "$tmp/m$n.nn" -o "$tmp/m$n.c")
  printf '%8s %8s %12s %12s\n' "$n" "$(wc -l < "$tmp/m$n.nn")" "$plan" "$emit"
done
