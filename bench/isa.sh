# isa.sh -- sourced by bench/train.sh, bench/kernels/run.sh and
# bench/mpi.sh: one meaning for --isa, the peak and the data subsets.
#   bench_isa ISA        sets march (what nncc's code and peak_fma.c are
#                        built with) and caps PyTorch's oneDNN at the same ISA:
#                        native (all the CPU has), avx2 (x86-64-v3, AVX2),
#                        generic (x86-64: nncc_simd.h's generic path, SSE4.1)
#   bench_peak ROOT OUT  builds ROOT/bench/peak_fma.c for march and runs it
#                        on OMP_NUM_THREADS threads: OUT/peak_fma.txt holds
#                        "GFLOPS ISA"
bench_isa() {
  case $1 in
    native) march=native ;;
    avx2) march=x86-64-v3; export ONEDNN_MAX_CPU_ISA=AVX2 ;;
    generic) march=x86-64; export ONEDNN_MAX_CPU_ISA=SSE41 ;;
    *) echo "unknown --isa '$1' (native, avx2, generic)" >&2; return 2 ;;
  esac
}
bench_peak() {
  gcc -O3 -march="$march" -fopenmp "$1/bench/peak_fma.c" -o "$2/peak_fma" -lm
  "$2/peak_fma" > "$2/peak_fma.txt"
}
# bench_subset SRC DST NTRAIN NTEST: the first images of MNIST's training and test
# files as IDX files of their own (the header's count rewritten).
bench_subset() {
  /usr/bin/python3 - "$@" <<'PY'
import os, struct, sys
src, dst, counts = sys.argv[1], sys.argv[2], {"train": int(sys.argv[3]), "t10k": int(sys.argv[4])}
os.makedirs(dst, exist_ok=True)
for kind, n in counts.items():
    for part, hdr, item in (("images-idx3-ubyte", 16, 784), ("labels-idx1-ubyte", 8, 1)):
        with open(os.path.join(src, f"{kind}-{part}"), "rb") as f:
            head, body = bytearray(f.read(hdr)), f.read(n * item)
        head[4:8] = struct.pack(">I", n)
        with open(os.path.join(dst, f"{kind}-{part}"), "wb") as f:
            f.write(head + body)
PY
}
