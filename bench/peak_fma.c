/* peak_fma.c -- the machine's measured fp32 FMA peak, in GFLOP/s, on
 * OMP_NUM_THREADS threads, for the instruction set it is compiled for:
 * 12 independent chains of FMAs per thread (enough to cover the FMA
 * latency), best of 3.  bench/train.sh and bench/kernels/run.sh build it
 * with the same -march as the trainers they time (-march=native, or
 * x86-64-v3 for --isa avx2), so achieved GFLOP/s sit next to the ceiling
 * of the ISA in use.  Prints "GFLOPS ISA".
 *   AVX-512   512-bit vfmadd (on Zen 4 two 256-bit halves: 32 FLOP/cycle/core)
 *   AVX2      256-bit vfmadd
 *   generic   GCC/Clang vector extensions, 4 lanes of fmaf (fmla on aarch64;
 *             on x86-64 without FMA, libm's fmaf: a floor, not a peak) */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define ISA "avx512"
typedef __m512 vec;
enum { LANES = 16 };
static vec vset(float f) { return _mm512_set1_ps(f); }
static vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static float vsum(vec a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
#define ISA "avx2"
typedef __m256 vec;
enum { LANES = 8 };
static vec vset(float f) { return _mm256_set1_ps(f); }
static vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static float vsum(vec a) {
  float t[8];
  _mm256_storeu_ps(t, a);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#define ISA "generic"
typedef float vec __attribute__((vector_size(16)));
enum { LANES = 4 };
static vec vset(float f) { vec v = {f, f, f, f}; return v; }
static vec vfma(vec a, vec b, vec c) {
  for (int l = 0; l < 4; l++) c[l] = fmaf(a[l], b[l], c[l]);
  return c;
}
static float vsum(vec a) { return a[0] + a[1] + a[2] + a[3]; }
#endif

int main(void) {
  enum { CHAINS = 12 };
  /* the generic path may be libm's fmaf: fewer rounds keep it short */
  const long rounds = LANES == 4 ? 2000000 : 20000000;
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
    {
      vec acc[CHAINS], b = vset(0.999999f), c = vset(1e-7f);
      for (int i = 0; i < CHAINS; i++) acc[i] = vset((float)i);
      for (long r = 0; r < rounds; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = vfma(acc[i], b, c);
      for (int i = 0; i < CHAINS; i++) sink += vsum(acc[i]);
    }
    double gflops = (double)rounds * CHAINS * 2 * LANES * omp_get_max_threads() /
                    (omp_get_wtime() - t0) / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("%.1f %s\n", best + 0 * sink, ISA);
  return 0;
}
