# isa.sh -- sourced by bench/train.sh and bench/kernels/run.sh: one
# meaning for --isa on both.
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
