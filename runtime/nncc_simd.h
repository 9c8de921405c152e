/*
 * nncc_simd.h -- the 16-lane float vector the kernels (nncc_kernels.h) are
 * written in, on three instruction sets, and the register tiles sized for
 * each.  Header-only, static inline C11; included by nncc_kernels.h.
 *
 *   NK_ISA_AVX512   __AVX512F__: one zmm register per vector
 *   NK_ISA_AVX2     __AVX2__ and __FMA__ (x86-64-v3): two ymm registers
 *   NK_ISA_GENERIC  anything else (x86-64 baseline, aarch64, ...), or
 *                   -DNNCC_SIMD_GENERIC: four 16-byte GCC/Clang vector
 *                   extension vectors, NEON q registers on aarch64 (whose
 *                   FMA is vfmaq_f32, fmla) and SSE on x86-64
 *
 * Same bits on every ISA: a vector is always 16 lanes, whatever the
 * registers, and every operation is defined lane by lane by the scalar
 * functions of nncc_kernels.h (nk_relu1, nk_gate1, ...) or by fmaf: the
 * multiply-add is one fused rounding everywhere (vfmadd on x86, fmaf,
 * which aarch64 compilers turn into fmla).  The tile constants decide only
 * which outputs are computed together, never the order in which one
 * output's terms are summed, so they differ per ISA freely: the
 * accumulators of a tile fill the register file without spilling
 * (32 zmm, 16 ymm, 32 NEON q registers).
 */
#ifndef NNCC_SIMD_H
#define NNCC_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) && !defined(NNCC_SIMD_GENERIC)
#define NK_ISA_AVX512 1
#define NK_ISA_NAME "avx512"
#elif defined(__AVX2__) && defined(__FMA__) && !defined(NNCC_SIMD_GENERIC)
#define NK_ISA_AVX2 1
#define NK_ISA_NAME "avx2"
#else
#define NK_ISA_GENERIC 1
#define NK_ISA_NAME "generic"
#endif
#if !defined(NK_ISA_GENERIC)
#include <immintrin.h>
#endif

#ifndef NK_INLINE
#define NK_INLINE static inline __attribute__((always_inline))
#endif

/* Register tiles, in 16-lane vectors (nncc_kernels.h):
 *   NK_MR x NK_NV   the convolution engine's and GEMM's micro-kernel: MR
 *                   rows of NV vectors of accumulators, NV B vectors and a
 *                   broadcast live beside them;
 *   NK_GC_TILE      the general (grouped, dilated, strided) convolution's
 *                   tile, at most NK_GC_VMAX vectors wide;
 *   NK_ACC          the accumulators every other tile may hold (the conv
 *                   weight gradient's), NK_MR * NK_NV. */
#if defined(NK_ISA_AVX512)
enum { NK_MR = 8, NK_NV = 3, NK_GC_TILE = 8, NK_GC_VMAX = 4 }; /* 24 + 3 + 1 of 32 zmm */
#elif defined(NK_ISA_AVX2)
enum { NK_MR = 6, NK_NV = 1, NK_GC_TILE = 6, NK_GC_VMAX = 3 }; /* 12 + 2 + 1 of 16 ymm */
#else
enum { NK_MR = 4, NK_NV = 1, NK_GC_TILE = 4, NK_GC_VMAX = 2 }; /* 16 + 4 + 1 of 32 q */
#endif
enum { NK_ACC = NK_MR * NK_NV };

/* ---------------------------------------------------------------------------
 * The operations, lane by lane (what every ISA computes):
 *   nk_fma(a, b, c)     fmaf(a, b, c)
 *   nk_add(a, b)        a + b
 *   nk_mul, nk_div      a * b, a / b
 *   nk_sqrt(v)          sqrtf(v) (correctly rounded, as IEEE 754 requires)
 *   nk_relu(v)          !(v <= 0) ? v : +0         (NaN stays)
 *   nk_gate(g, y)       y > 0 ? g : +0
 *   nk_relu6(v)         relu, then 6 where > 6     (NaN stays)
 *   nk_leaky(v, s)      v > 0 ? v : v * s
 *   nk_load_mask(p, m)  lanes of the 16-bit mask m read p[l], others +0 (no
 *                       other element is read); nk_store_mask writes them
 *   nk_store_compress   the lanes of m, packed, to p[0..popcount(m))
 *   nk_in_regs(v)       v (only a hint to the register allocator)
 *   nk_transpose16(r)   r[i] lane j becomes r[j] lane i (16 vectors; moves
 *                       only, by shuffles on AVX-512 and AVX2)
 */
/* the mask of lanes 0..n-1 (all 16 for n >= 16) */
NK_INLINE uint32_t nk_lanes(int n) { return n >= 16 ? 0xFFFFu : (1u << n) - 1u; }

#if defined(NK_ISA_AVX512)
typedef __m512 nk_v;
NK_INLINE nk_v nk_zero(void) { return _mm512_setzero_ps(); }
NK_INLINE nk_v nk_load(const float *p) { return _mm512_loadu_ps(p); }
NK_INLINE nk_v nk_load_mask(const float *p, uint32_t m) { return _mm512_maskz_loadu_ps((__mmask16)m, p); }
NK_INLINE nk_v nk_in_regs(nk_v v) { return v; }
NK_INLINE nk_v nk_bcast(float f) { return _mm512_set1_ps(f); }
NK_INLINE nk_v nk_fma(nk_v a, nk_v b, nk_v c) { return _mm512_fmadd_ps(a, b, c); }
NK_INLINE nk_v nk_add(nk_v a, nk_v b) { return _mm512_add_ps(a, b); }
NK_INLINE nk_v nk_sub(nk_v a, nk_v b) { return _mm512_sub_ps(a, b); }
NK_INLINE nk_v nk_mul(nk_v a, nk_v b) { return _mm512_mul_ps(a, b); }
NK_INLINE nk_v nk_div(nk_v a, nk_v b) { return _mm512_div_ps(a, b); }
NK_INLINE nk_v nk_sqrt(nk_v v) { return _mm512_sqrt_ps(v); }
NK_INLINE nk_v nk_relu(nk_v v) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
}
NK_INLINE nk_v nk_gate(nk_v g, nk_v y) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g);
}
NK_INLINE nk_v nk_relu6(nk_v v) {
  v = nk_relu(v);
  return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_set1_ps(6.0f), _CMP_GT_OQ),
                            _mm512_set1_ps(6.0f));
}
NK_INLINE nk_v nk_leaky(nk_v v, float slope) {
  return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NGT_UQ), v,
                            _mm512_set1_ps(slope));
}
NK_INLINE void nk_store(float *p, nk_v v) { _mm512_storeu_ps(p, v); }
NK_INLINE void nk_store_mask(float *p, uint32_t m, nk_v v) { _mm512_mask_storeu_ps(p, (__mmask16)m, v); }
NK_INLINE void nk_store_compress(float *p, uint32_t m, nk_v v) {
  __m512 c = _mm512_maskz_compress_ps((__mmask16)m, v);
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << __builtin_popcount(m)) - 1u), c);
}
/* Lane l of the result: lane i_l of the 32 lanes a, b (a's first).  Then
 * the even and the odd lanes, and lanes 0-7 (lo) or 8-15 (hi) of a and b
 * interleaved (a0 b0 a1 b1 ...) */
#define NK_PICK2(a, b, ...) _mm512_permutex2var_ps((a), _mm512_setr_epi32(__VA_ARGS__), (b))
NK_INLINE nk_v nk_even(nk_v a, nk_v b) { return NK_PICK2(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
NK_INLINE nk_v nk_odd(nk_v a, nk_v b) { return NK_PICK2(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31); }
NK_INLINE nk_v nk_zip_lo(nk_v a, nk_v b) { return NK_PICK2(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23); }
NK_INLINE nk_v nk_zip_hi(nk_v a, nk_v b) { return NK_PICK2(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31); }
#undef NK_PICK2
/* Pairs of rows interleaved, then pairs of pairs (as doubles): u[4i+k]'s
 * 128-bit lane L holds column 4L+k of rows 4i..4i+3. Two rounds of
 * 128-bit lane shuffles then gather each column's four lanes. */
NK_INLINE void nk_transpose16(nk_v r[16]) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 2; k++) {
      __m512d a = _mm512_castps_pd(t[4 * i + k]), b = _mm512_castps_pd(t[4 * i + k + 2]);
      u[4 * i + 2 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      u[4 * i + 2 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    }
  for (int k = 0; k < 4; k++) {
    v[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
    v[4 + k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
    v[8 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    v[12 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
  }
  for (int k = 0; k < 4; k++) {
    r[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0xdd);
    r[4 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0xdd);
  }
}

#elif defined(NK_ISA_AVX2)
typedef struct { __m256 lo, hi; } nk_v; /* lanes 0-7, 8-15 */
/* all-ones in the 32-bit lanes whose bit of m (8 bits) is set */
NK_INLINE __m256i nk_m8(uint32_t m) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m), bit), bit);
}
NK_INLINE nk_v nk_pair(__m256 lo, __m256 hi) { nk_v r = {lo, hi}; return r; }
NK_INLINE nk_v nk_zero(void) { return nk_pair(_mm256_setzero_ps(), _mm256_setzero_ps()); }
NK_INLINE nk_v nk_load(const float *p) { return nk_pair(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
/* Masked moves are slow on AVX2 (a masked store is microcoded on AMD
 * Zen): a half whose mask is full moves plainly, an empty one not at all. */
NK_INLINE __m256 nk_load8_mask(const float *p, uint32_t m8) {
  if (m8 == 0xFF) return _mm256_loadu_ps(p);
  if (m8 == 0) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p, nk_m8(m8));
}
NK_INLINE nk_v nk_load_mask(const float *p, uint32_t m) {
  return nk_pair(nk_load8_mask(p, m & 0xFF), nk_load8_mask(p + 8, m >> 8 & 0xFF));
}
/* v, held in registers: with 16 ymm gcc may fold a micro-kernel's B load
 * into each of the MR FMAs that read it, loading it MR times */
NK_INLINE nk_v nk_in_regs(nk_v v) {
  __asm__("" : "+x"(v.lo), "+x"(v.hi));
  return v;
}
NK_INLINE nk_v nk_bcast(float f) { return nk_pair(_mm256_set1_ps(f), _mm256_set1_ps(f)); }
NK_INLINE nk_v nk_fma(nk_v a, nk_v b, nk_v c) {
  return nk_pair(_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi));
}
NK_INLINE nk_v nk_add(nk_v a, nk_v b) { return nk_pair(_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)); }
NK_INLINE nk_v nk_sub(nk_v a, nk_v b) { return nk_pair(_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)); }
NK_INLINE nk_v nk_mul(nk_v a, nk_v b) { return nk_pair(_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)); }
NK_INLINE nk_v nk_div(nk_v a, nk_v b) { return nk_pair(_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)); }
NK_INLINE nk_v nk_sqrt(nk_v v) { return nk_pair(_mm256_sqrt_ps(v.lo), _mm256_sqrt_ps(v.hi)); }
NK_INLINE __m256 nk_relu8(__m256 v) { return _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ)); }
NK_INLINE nk_v nk_relu(nk_v v) { return nk_pair(nk_relu8(v.lo), nk_relu8(v.hi)); }
NK_INLINE nk_v nk_gate(nk_v g, nk_v y) {
  const __m256 z = _mm256_setzero_ps();
  return nk_pair(_mm256_and_ps(g.lo, _mm256_cmp_ps(y.lo, z, _CMP_GT_OQ)),
                 _mm256_and_ps(g.hi, _mm256_cmp_ps(y.hi, z, _CMP_GT_OQ)));
}
NK_INLINE __m256 nk_relu6_8(__m256 v) {
  const __m256 six = _mm256_set1_ps(6.0f);
  v = nk_relu8(v);
  return _mm256_blendv_ps(v, six, _mm256_cmp_ps(v, six, _CMP_GT_OQ));
}
NK_INLINE nk_v nk_relu6(nk_v v) { return nk_pair(nk_relu6_8(v.lo), nk_relu6_8(v.hi)); }
NK_INLINE __m256 nk_leaky8(__m256 v, __m256 s) {
  return _mm256_blendv_ps(v, _mm256_mul_ps(v, s), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NGT_UQ));
}
NK_INLINE nk_v nk_leaky(nk_v v, float slope) {
  __m256 s = _mm256_set1_ps(slope);
  return nk_pair(nk_leaky8(v.lo, s), nk_leaky8(v.hi, s));
}
NK_INLINE void nk_store(float *p, nk_v v) { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
NK_INLINE void nk_store8_mask(float *p, uint32_t m8, __m256 v) {
  if (m8 == 0xFF) _mm256_storeu_ps(p, v);
  else if (m8) _mm256_maskstore_ps(p, nk_m8(m8), v);
}
NK_INLINE void nk_store_mask(float *p, uint32_t m, nk_v v) {
  nk_store8_mask(p, m & 0xFF, v.lo);
  nk_store8_mask(p + 8, m >> 8 & 0xFF, v.hi);
}
/* The even (odd: sel 0xDD) lanes of the 16 lanes x, y: shuffles within
 * 128-bit halves, then the 64-bit pieces put in order */
NK_INLINE __m256 nk_pick8(__m256 x, __m256 y, const int odd) {
  __m256 t = odd ? _mm256_shuffle_ps(x, y, 0xDD) : _mm256_shuffle_ps(x, y, 0x88);
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xD8));
}
/* x0 y0 x1 y1 ... x7 y7 as two halves */
NK_INLINE nk_v nk_zip8(__m256 x, __m256 y) {
  __m256 l = _mm256_unpacklo_ps(x, y), h = _mm256_unpackhi_ps(x, y);
  return nk_pair(_mm256_permute2f128_ps(l, h, 0x20), _mm256_permute2f128_ps(l, h, 0x31));
}
NK_INLINE nk_v nk_zip_lo(nk_v a, nk_v b) { return nk_zip8(a.lo, b.lo); }
NK_INLINE nk_v nk_zip_hi(nk_v a, nk_v b) { return nk_zip8(a.hi, b.hi); }
NK_INLINE nk_v nk_even(nk_v a, nk_v b) { return nk_pair(nk_pick8(a.lo, a.hi, 0), nk_pick8(b.lo, b.hi, 0)); }
NK_INLINE nk_v nk_odd(nk_v a, nk_v b) { return nk_pair(nk_pick8(a.lo, a.hi, 1), nk_pick8(b.lo, b.hi, 1)); }
/* 8 x 8 of ymm: pairs of rows interleaved, then pairs of pairs, then the
 * two 128-bit halves exchanged */
NK_INLINE void nk_transpose8(__m256 *r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(*r[2 * i], *r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(*r[2 * i], *r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 2; k++) {
      __m256d a = _mm256_castps_pd(t[4 * i + k]), b = _mm256_castps_pd(t[4 * i + k + 2]);
      u[4 * i + 2 * k] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
      u[4 * i + 2 * k + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
    }
  for (int k = 0; k < 4; k++) {
    *r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
    *r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
  }
}
/* the four 8 x 8 blocks, the off-diagonal two exchanged */
NK_INLINE void nk_transpose16(nk_v r[16]) {
  __m256 *a[8], *b[8], *c[8], *d[8];
  for (int i = 0; i < 8; i++) a[i] = &r[i].lo, b[i] = &r[i].hi, c[i] = &r[8 + i].lo, d[i] = &r[8 + i].hi;
  nk_transpose8(a), nk_transpose8(b), nk_transpose8(c), nk_transpose8(d);
  for (int i = 0; i < 8; i++) {
    __m256 x = r[i].hi;
    r[i].hi = r[8 + i].lo, r[8 + i].lo = x;
  }
}

#else /* NK_ISA_GENERIC */
/* Four 16-byte vectors: NEON q registers on aarch64, SSE on x86-64 (a
 * 64-byte vector type would be passed by an ABI gcc warns about). Lane l
 * is NK_LANE(v, l). */
#if defined(__ARM_NEON) && defined(__ARM_FEATURE_FMA)
#include <arm_neon.h>
typedef float32x4_t nk_v4;
#else
typedef float nk_v4 __attribute__((vector_size(16)));
#endif
typedef struct { nk_v4 q[4]; } nk_v;
#define NK_LANE(v, l) ((v).q[(l) >> 2][(l) & 3])
NK_INLINE nk_v nk_zero(void) { nk_v r; for (int i = 0; i < 4; i++) r.q[i] = (nk_v4){0}; return r; }
NK_INLINE nk_v nk_load(const float *p) { nk_v r; memcpy(&r, p, sizeof r); return r; }
NK_INLINE nk_v nk_load_mask(const float *p, uint32_t m) {
  nk_v r = nk_zero();
  for (int l = 0; l < 16; l++)
    if (m >> l & 1) NK_LANE(r, l) = p[l];
  return r;
}
NK_INLINE nk_v nk_in_regs(nk_v v) { return v; }
NK_INLINE nk_v nk_bcast(float f) { nk_v r; for (int i = 0; i < 4; i++) r.q[i] = (nk_v4){f, f, f, f}; return r; }
NK_INLINE nk_v nk_fma(nk_v a, nk_v b, nk_v c) {
#if defined(__ARM_NEON) && defined(__ARM_FEATURE_FMA)
  for (int i = 0; i < 4; i++) c.q[i] = vfmaq_f32(c.q[i], a.q[i], b.q[i]); /* fused: fmla */
#else
  for (int l = 0; l < 16; l++) NK_LANE(c, l) = fmaf(NK_LANE(a, l), NK_LANE(b, l), NK_LANE(c, l));
#endif
  return c;
}
NK_INLINE nk_v nk_add(nk_v a, nk_v b) { for (int i = 0; i < 4; i++) a.q[i] += b.q[i]; return a; }
NK_INLINE nk_v nk_sub(nk_v a, nk_v b) { for (int i = 0; i < 4; i++) a.q[i] -= b.q[i]; return a; }
NK_INLINE nk_v nk_mul(nk_v a, nk_v b) { for (int i = 0; i < 4; i++) a.q[i] *= b.q[i]; return a; }
NK_INLINE nk_v nk_div(nk_v a, nk_v b) { for (int i = 0; i < 4; i++) a.q[i] /= b.q[i]; return a; }
NK_INLINE nk_v nk_sqrt(nk_v v) {
  for (int l = 0; l < 16; l++) NK_LANE(v, l) = sqrtf(NK_LANE(v, l));
  return v;
}
/* whole 4-lane vectors: v where !(v <= 0) (NaN kept), else +0, as bits;
 * lane by lane, gcc warned that the lanes of a tile's accumulators might
 * be uninitialized */
typedef int32_t nk_vi4 __attribute__((vector_size(16)));
NK_INLINE nk_v nk_relu(nk_v v) {
  for (int i = 0; i < 4; i++) v.q[i] = (nk_v4)((nk_vi4)v.q[i] & ~(nk_vi4)(v.q[i] <= 0.0f));
  return v;
}
NK_INLINE nk_v nk_gate(nk_v g, nk_v y) {
  for (int i = 0; i < 4; i++) g.q[i] = (nk_v4)((nk_vi4)g.q[i] & (nk_vi4)(y.q[i] > 0.0f));
  return g;
}
NK_INLINE nk_v nk_relu6(nk_v v) {
  v = nk_relu(v);
  for (int l = 0; l < 16; l++) NK_LANE(v, l) = NK_LANE(v, l) > 6.0f ? 6.0f : NK_LANE(v, l);
  return v;
}
NK_INLINE nk_v nk_leaky(nk_v v, float slope) {
  for (int l = 0; l < 16; l++)
    NK_LANE(v, l) = NK_LANE(v, l) > 0.0f ? NK_LANE(v, l) : NK_LANE(v, l) * slope;
  return v;
}
NK_INLINE void nk_store(float *p, nk_v v) { memcpy(p, &v, sizeof v); }
NK_INLINE void nk_store_mask(float *p, uint32_t m, nk_v v) {
  for (int l = 0; l < 16; l++)
    if (m >> l & 1) p[l] = NK_LANE(v, l);
}
/* lanes `from` .. from+7 of a and b interleaved (a's first) */
NK_INLINE nk_v nk_zip_from(nk_v a, nk_v b, int from) {
  nk_v r;
  for (int l = 0; l < 8; l++)
    NK_LANE(r, 2 * l) = NK_LANE(a, from + l), NK_LANE(r, 2 * l + 1) = NK_LANE(b, from + l);
  return r;
}
/* the lanes of parity odd (0 or 1) of a, then of b */
NK_INLINE nk_v nk_pick_parity(nk_v a, nk_v b, int odd) {
  nk_v r;
  for (int l = 0; l < 8; l++)
    NK_LANE(r, l) = NK_LANE(a, 2 * l + odd), NK_LANE(r, 8 + l) = NK_LANE(b, 2 * l + odd);
  return r;
}
NK_INLINE nk_v nk_zip_lo(nk_v a, nk_v b) { return nk_zip_from(a, b, 0); }
NK_INLINE nk_v nk_zip_hi(nk_v a, nk_v b) { return nk_zip_from(a, b, 8); }
NK_INLINE nk_v nk_even(nk_v a, nk_v b) { return nk_pick_parity(a, b, 0); }
NK_INLINE nk_v nk_odd(nk_v a, nk_v b) { return nk_pick_parity(a, b, 1); }
NK_INLINE void nk_transpose16(nk_v r[16]) {
  for (int i = 0; i < 16; i++)
    for (int j = i + 1; j < 16; j++) {
      float x = NK_LANE(r[i], j);
      NK_LANE(r[i], j) = NK_LANE(r[j], i), NK_LANE(r[j], i) = x;
    }
}
#endif

#if !defined(NK_ISA_AVX512)
/* Without AVX-512's compress: all lanes by one store; one run of lanes
 * (the usual mask: a piece of an output row) by one copy; others lane by
 * lane.  Moves only. */
NK_INLINE void nk_store_compress(float *p, uint32_t m, nk_v v) {
  if (m == 0xFFFFu) {
    nk_store(p, v);
    return;
  }
  if (!m) return;
  int lo = __builtin_ctz(m), n = __builtin_popcount(m);
  float t[16];
  nk_store(t, v);
  if (m >> lo == (1u << n) - 1u) {
    memcpy(p, t + lo, (size_t)n * sizeof(float));
    return;
  }
  for (int l = lo, k = 0; l < 16; l++)
    if (m >> l & 1) p[k++] = t[l];
}
#endif

#endif
