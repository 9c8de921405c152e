#!/bin/sh
# Build bench_kernels, time nncc's kernels and PyTorch's on the same ops at
# two threads, and print one table per layer with the % of the FMA peak
# bench/peak_fma.c measures for the same ISA, so the weakest kernels stay
# visible.  Not a test: timings never go in tests.
# usage: bench/kernels/run.sh [--isa native|avx2|generic] [mnist|vgg16]
#   --isa avx2: nncc's kernels built with -march=x86-64-v3 and oneDNN capped
#   with ONEDNN_MAX_CPU_ISA=AVX2 (generic: -march=x86-64, SSE4.1).
#   CC=clang to use clang.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../..
out=${TMPDIR:-/tmp}/nncc_bench_kernels
isa=native
if [ "${1:-}" = --isa ]; then isa=$2; shift 2; fi
. "$root/bench/isa.sh"
bench_isa "$isa" || exit 2
mkdir -p "$out"
${CC:-gcc} -O3 -march=$march -fopenmp -ffp-contract=off -std=c11 -I"$root/runtime" \
  "$here/bench_kernels.c" -o "$out/bench_kernels" -lm
export OMP_NUM_THREADS=2
bench_peak "$root" "$out"
"$out/bench_kernels" "${1:-}" > "$out/nncc.tsv"
/usr/bin/python3 "$here/bench_torch.py" "${1:-}" > "$out/torch.tsv"
echo "uptime: $(uptime)"
/usr/bin/python3 - "$out/nncc.tsv" "$out/torch.tsv" "$out/peak_fma.txt" "$isa" <<'PY'
import sys
peak_text = open(sys.argv[3]).read().split()
PEAK, peak_isa, isa = float(peak_text[0]), peak_text[1], sys.argv[4]
def load(p):
    return {tuple(l.split("\t")[:3]): [float(v) for v in l.split("\t")[3:]] for l in open(p)}
ours, torch = load(sys.argv[1]), load(sys.argv[2])
print(f"ISA {isa}: measured {peak_isa} FMA peak on 2 threads (bench/peak_fma.c) {PEAK:.0f} GFLOP/s")
print(f"{'net':6} {'layer':6} {'op':10} {'GFLOP':>8} {'nncc GF/s':>10} {'torch GF/s':>10} "
      f"{'ratio':>6} {'nncc %pk':>8} {'torch %pk':>9} {'nncc ms':>8} {'torch ms':>8}")
tot = {}
for key, (gf, t) in ours.items():
    tg, tt = torch.get(key, (gf, float("nan")))
    a, b = gf / t, gf / tt
    net = key[0]
    s = tot.setdefault(net, [0.0, 0.0])
    s[0] += t; s[1] += tt
    print(f"{key[0]:6} {key[1]:6} {key[2]:10} {gf:8.3f} {a:10.1f} {b:10.1f} {a / b:6.2f} "
          f"{100 * a / PEAK:7.1f}% {100 * b / PEAK:8.1f}% {1e3 * t:8.2f} {1e3 * tt:8.2f}")
print("GFLOP: a direct convolution's multiply-adds; a Winograd layer of nncc's (5x5, stride 1; "
      "docs/backend.md) does about 36/100 of them, so its %pk can pass 100")
for net, (a, b) in tot.items():
    print(f"{net}: sum of op times nncc {1e3 * a:.1f} ms, torch {1e3 * b:.1f} ms, "
          f"torch/nncc time ratio {b / a:.2f}")
PY
