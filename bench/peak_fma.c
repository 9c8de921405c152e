/* peak_fma.c -- the machine's measured fp32 FMA peak, in GFLOP/s, on
 * OMP_NUM_THREADS threads: 12 independent chains of 512-bit FMAs per thread
 * (enough to cover the FMA latency), best of 3.  bench/train.sh builds it
 * with -O3 -march=native to put achieved GFLOP/s next to a measured ceiling.
 * (On Zen 4 a 512-bit FMA is two 256-bit halves: 32 FLOP/cycle/core.) */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

int main(void) {
  const long chains = 12, rounds = 20000000;
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
    {
      __m512 acc[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
      for (int i = 0; i < chains; i++) acc[i] = _mm512_set1_ps((float)i);
      for (long r = 0; r < rounds; r++)
        for (int i = 0; i < chains; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
      for (int i = 0; i < chains; i++) sink += _mm512_reduce_add_ps(acc[i]);
    }
    double gflops = (double)rounds * chains * 32 * omp_get_max_threads() / (omp_get_wtime() - t0) / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("%.1f\n", best + 0 * sink);
  return 0;
}
