/*
 * nncc_kernels.h -- the compute kernels that generated code calls.
 *
 * Header-only, static inline C11. Tensors are float32, NCHW, conv weights
 * OIHW, linear weights [out, in] (PyTorch layouts). Every kernel exists in
 * two forms:
 *
 *   nncc_X(...)       opens its own OpenMP parallel region; for any caller.
 *   nncc_X_team(...)  must be called by every thread of an open team
 *                     (or outside any parallel region, then it runs on one
 *                     thread). Generated code should use this form with
 *                     literal sizes written directly inside its own
 *                     `#pragma omp parallel`: compilers outline a parallel
 *                     region *before* inlining, so sizes passed into
 *                     nncc_X() never become constants in the hot loops,
 *                     while sizes written inside the caller's region do, and
 *                     the register-blocked loops then unroll fully.
 *
 * Scratch: kernels never allocate. Each kernel that needs memory takes a
 * `scratch` pointer (64-byte aligned) of at least nncc_X_scratch(...) bytes,
 * computed from the same sizes; the convolutions' also take `nthr`, the
 * largest team that will run the kernel (a slice per thread): generated
 * code passes the team size of its parallel regions (NnccState.threads),
 * and callers of the nncc_X() forms nncc_team_size(), the team they open.
 * There is no cap on the thread count.
 *
 * Determinism: every output element is computed by exactly one thread, with
 * one fixed order of float operations that does not depend on the thread
 * count, the compiler (gcc or clang) or the batch grouping. Multiply-adds are
 * explicit FMAs (AVX-512 vfmadd or fmaf), each accumulator sums its terms in
 * the natural loop order (ci, kh, kw for a convolution; batch, then oh, ow
 * for a weight gradient), and the bias is added last. The vectors are 16
 * lanes on every ISA (nncc_simd.h: AVX-512, AVX2, or GCC/Clang vector
 * extensions), so AVX-512, AVX2 and the generic path give the same bits.
 *
 * Fused activation: conv2d and linear take `act, alpha`, one of the
 * NNCC_ACT_* codes below and the leaky slope (else 0.0f); forward stores
 * act(v). Backward kernels take the same `act, alpha` and `ymask`: NULL (no
 * gate), or the saved activated output y of the forward pass; then dy is
 * used as dy * act'(from y) everywhere (dx, dw and db):
 *   relu:  y > 0 ? dy : 0        relu6: (y > 0 && y < 6) ? dy : 0
 *   leaky: y > 0 ? dy : dy*alpha (alpha >= 0 only: y > 0 iff x > 0)
 * (act RELU keeps the bits of the former ReLU-only `relu` flag.)
 */
#ifndef NNCC_KERNELS_H
#define NNCC_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nncc_rt.h" /* nncc_hash64 */
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------------------
 * The build flags of the same-bits promise, checked where the code is
 * compiled: no fast-math (refused here), and no a*b+c fused into an FMA
 * except where the kernels write one.  clang's default (-ffp-contract=on)
 * fuses within an expression unless this pragma says otherwise; gcc's is
 * off under -std=c11.  A build that fuses anyway (-ffp-contract=fast, or
 * gcc's GNU modes) is refused at start-up: the generated nncc_model() sets
 * NnccModel.fp_contract from nncc_fp_contracts(), model_check() reads it.
 * `pkg-config --cflags nncc-runtime` and the nncc::runtime CMake target
 * carry -ffp-contract=off.
 */
#ifdef __FAST_MATH__
#error "nncc: generated code must not be built with -ffast-math (it breaks the same-bits promise; use the flags of 'pkg-config --cflags nncc-runtime')"
#endif
#ifdef __clang__
#pragma clang fp contract(off)
#endif

/* 1 if this translation unit fuses x*x+y into an FMA: the one product
 * below is (1 + 2^-11 + 2^-24) rounded down to 1 + 2^-11 when rounded on
 * its own, so the sum is 0 unrounded-fused and 2^-24 fused. */
static inline int nncc_fp_contracts(void) {
  volatile float xv = 1.0f + 0x1p-12f, yv = -(1.0f + 0x1p-11f);
  float x = xv, y = yv;
  return x * x + y != 0.0f;
}

/* Bytes of one thread's working set (a group of padded input planes) that
 * the direct convolution engine tries to keep in its L2; the column
 * layouts use NNCC_COL_GROUP_BYTES. */
#ifndef NNCC_GROUP_BYTES
#define NNCC_GROUP_BYTES (384 * 1024)
#endif

#define NK_INLINE static inline __attribute__((always_inline))
#define NK_PRAGMA(x) _Pragma(#x)

/* The 16-lane vector nk_v and its operations on AVX-512, AVX2 and the
 * generic path, and the register tile sizes of each (NK_MR, NK_NV,
 * NK_GC_TILE, NK_GC_VMAX, NK_ACC). */
#include "nncc_simd.h"

/* gcc on AVX2: weigh the register pressure of a loop before keeping values
 * it does not change in registers through it (-fira-loop-pressure, for the
 * rest of the unit: the generated kernels too).  Without it gcc 12 spilled
 * one accumulator of AVX2's 12-register micro-kernel tile in mnist_cnn's
 * conv3 forward, into a store-to-load chain on every step of its
 * reduction loop, while two ymm registers stayed unused: that forward ran
 * at half its speed, and the AVX2 trainer 5% slower.  Not on AVX-512: its
 * 32 zmm leave room, and there the option spilled more.  Register
 * allocation only: the same instructions compute, the same bits. */
#if defined(NK_ISA_AVX2) && !defined(__clang__)
#pragma GCC optimize("ira-loop-pressure")
#endif

/* The register tiles need their loops unrolled; with compile-time sizes
 * that is what makes them fast (about 2.5x on the convolutions). Code that
 * calls the kernels with runtime sizes (the tests) should define
 * NNCC_KERNELS_NO_UNROLL: the arithmetic is the same, the compile is ~7x
 * faster. */
/* clang: `#pragma unroll` (unroll.enable) left the micro-kernel's inner
 * loops rolled in big functions, so its tile stayed in stack memory (an
 * FMA, a store and a load per accumulator per step, ~2.5x slower); ask for
 * a full unroll, and keep the reduction loop rolled (NK_NOUNROLL), as gcc
 * does, or the runtime unroller multiplies the code ~8x. */
#if defined(NNCC_KERNELS_NO_UNROLL)
#define NK_UNROLL
#define NK_NOUNROLL
#define NK_ROLLED
#elif defined(__clang__)
#define NK_UNROLL NK_PRAGMA(clang loop unroll(full))
#define NK_NOUNROLL NK_PRAGMA(clang loop unroll(disable))
#define NK_ROLLED NK_NOUNROLL
#elif defined(NK_ISA_AVX512)
#define NK_UNROLL NK_PRAGMA(GCC unroll 32)
#define NK_NOUNROLL
#define NK_ROLLED /* 32 zmm: gcc's own unrolling spills nothing there */
#else
#define NK_UNROLL NK_PRAGMA(GCC unroll 32)
#define NK_NOUNROLL
#define NK_ROLLED NK_PRAGMA(GCC unroll 1)
#endif
/* NK_SCALAR_LOOP: a loop of scalar moves kept a plain loop, beside the
 * register-tiled kernels: vectorized, the transposed stores were most of a
 * model's code for no speed, clang made scatters of them (slow on Zen 4),
 * and gcc kept their vector constants live through the tile, which then
 * spilled (AVX2's 16 ymm). */
#if defined(__clang__)
#define NK_SCALAR_LOOP NK_PRAGMA(clang loop unroll(disable) vectorize(disable))
#else
#define NK_SCALAR_LOOP NK_PRAGMA(GCC unroll 1)
#endif
/* NK_STRIDED_LOOP: the row loops of the 2x2 max pools, which read (and
 * write) every other element.  gcc vectorizes them with shuffles; clang 14
 * unrolls them fully (literal sizes) and then vectorizes the loop over the
 * planes, or the loop over a row, with gathers and scatters, slower on AMD
 * Zen 4 than its scalar loop (mnist_cnn: clang's pools 12.8% of its
 * cycles, 9.5% scalar; gcc's 3%).  So under clang they stay scalar, and
 * the rows' windows go NK_PW at a time through explicit shuffles first
 * (NK_POOL_VECTORS), the loops finishing only a row's last few. */
#if defined(__clang__)
#define NK_STRIDED_LOOP NK_PRAGMA(clang loop unroll(disable) vectorize(disable))
#else
#define NK_STRIDED_LOOP
#endif

/* NK_DYNAMIC: a loop over independent blocks of work (groups of images
 * whose outputs, or whose own copy of a sum, no other block touches),
 * handed out one block at a time as threads come free, with no barrier at
 * its end.  A block's arithmetic does not depend on the thread that runs
 * it, so the bits are those of any fixed split; a thread that runs slower
 * (a busy sibling of its vCPU, an efficiency core) takes fewer blocks
 * instead of holding the team at the next barrier.  Every thread of the
 * team must reach the loop. */
#define NK_DYNAMIC NK_PRAGMA(omp for schedule(dynamic, 1) nowait)

/* scalar forms of relu/gate, bit-identical to the vector ones */
NK_INLINE float nk_relu1(float v) { return !(v <= 0.0f) ? v : 0.0f; }
NK_INLINE float nk_gate1(float g, float y) { return y > 0.0f ? g : 0.0f; }

/* The activations (PyTorch semantics: NaN passes through, -0 and 0 give +0
 * for relu/relu6, so relu6 is relu then a clamp at 6) and their gradients
 * from the saved output y (or, for leaky with a negative slope, from x). */
NK_INLINE float nk_relu6_1(float v) { v = nk_relu1(v); return v > 6.0f ? 6.0f : v; }
NK_INLINE float nk_leaky1(float v, float slope) { return v > 0.0f ? v : v * slope; }
NK_INLINE float nk_gate6_1(float g, float y) { return y > 0.0f && y < 6.0f ? g : 0.0f; }
NK_INLINE float nk_leaky_gate1(float g, float ref, float slope) {
  return ref > 0.0f ? g : g * slope;
}

/* Fused activation codes of conv2d/linear (the `act` argument). */
#define NNCC_ACT_NONE 0
#define NNCC_ACT_RELU 1
#define NNCC_ACT_RELU6 2
#define NNCC_ACT_LEAKY 3

/* act(v), and dy through act's derivative from the saved output y; with a
 * literal act (generated code) the switch folds away. */
NK_INLINE float nk_act1(float v, int act, float alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return nk_relu1(v);
  case NNCC_ACT_RELU6: return nk_relu6_1(v);
  case NNCC_ACT_LEAKY: return nk_leaky1(v, alpha);
  default: return v;
  }
}
NK_INLINE float nk_actgrad1(float g, float y, int act, float alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return nk_gate1(g, y);
  case NNCC_ACT_RELU6: return nk_gate6_1(g, y);
  case NNCC_ACT_LEAKY: return nk_leaky_gate1(g, y, alpha);
  default: return g;
  }
}
NK_INLINE nk_v nk_act(nk_v v, int act, float alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return nk_relu(v);
  case NNCC_ACT_RELU6: return nk_relu6(v);
  case NNCC_ACT_LEAKY: return nk_leaky(v, alpha);
  default: return v;
  }
}
NK_INLINE int nk_min(int a, int b) { return a < b ? a : b; }
NK_INLINE int nk_max(int a, int b) { return a > b ? a : b; }
NK_INLINE int nk_cdiv(int a, int b) { return (a + b - 1) / b; }
NK_INLINE size_t nk_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* This thread's index and the number of threads that take work. */
NK_INLINE int nk_tid(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
NK_INLINE int nk_nthr(void) {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}
/* The team a new parallel region gets (the nthr to size the scratch of an
 * nncc_X() call with). */
static inline int nncc_team_size(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
/* [lo, hi): thread t's share of n items */
NK_INLINE void nk_split(int n, int t, int nthr, int *lo, int *hi) {
  if (t >= nthr) { *lo = *hi = 0; return; }
  *lo = (int)((long)n * t / nthr);
  *hi = (int)((long)n * (t + 1) / nthr);
}

/* ---------------------------------------------------------------------------
 * Batch reductions in groups. Every sum over the batch (a weight or bias
 * gradient, a batch-norm statistic, the loss) is taken in groups of S
 * consecutive samples, each group summed in sample order from zero, and the
 * groups are then added as a complete binary tree, ((g0+g1)+(g2+g3))+...,
 * pairing neighbours first. A process that holds a power-of-two share of
 * the groups (an MPI rank with a slice of the batch) sums its own subtree;
 * the ranks finish the tree pairwise (runtime/dist.c). Float addition is
 * commutative, so both partners of a pair get the same bits, and N ranks
 * give the bits of one process. The group count G is the model's
 * (NnccModel.groups, a power of two, at most NNCC_MAX_GROUPS); kernels take
 * S, the group size, and their N is a multiple of it.
 *
 * The tree is built as a binary counter: before group g starts, level l
 * holds a pending left subtree iff bit l of g is set. Group g is summed
 * into level nk_tree_level(g) (the count of g's trailing ones, a free
 * level), then added to the pending levels below it, level 0 first. After
 * the last of Gl groups the whole sum is at level log2(Gl).
 */
enum { NK_TREE_LEVELS = 7 }; /* log2(NNCC_MAX_GROUPS) + 1 */

NK_INLINE int nk_tree_level(int g) {
  int l = 0;
  while ((g >> l) & 1) l++;
  return l;
}
/* log2 of a power of two */
NK_INLINE int nk_log2(int n) {
  int l = 0;
  while ((1 << l) < n) l++;
  return l;
}
/* Group g's partial v[0..n) ends: add the pending partials below its level
 * (level l at pend + l*stride), store the sum at its level.  For float
 * (nk_tree_fold) and double (nk_tree_fold_d) sums. */
#define NK_TREE_FOLD(name, T)                                                       \
  NK_INLINE void name(T *pend, size_t stride, T *v, int n, int g) {                  \
    int lf = nk_tree_level(g);                                                       \
    for (int l = 0; l < lf; l++)                                                     \
      for (int i = 0; i < n; i++) v[i] = pend[(size_t)l * stride + i] + v[i];        \
    for (int i = 0; i < n; i++) pend[(size_t)lf * stride + i] = v[i];               \
  }
NK_TREE_FOLD(nk_tree_fold, float)
NK_TREE_FOLD(nk_tree_fold_d, double)
#undef NK_TREE_FOLD

/*
 * Batch norm's statistics of one plane x[HW] (one image, one channel), in
 * double: ps[0] = the sum of x, ps[1] = the sum of (x - ps[0]/HW)^2.  Each
 * sum runs in NK_PS_LANES interleaved partial sums (element i in lane
 * i % NK_PS_LANES, in order), then the lanes are added as a fixed tree: a
 * pure function of the plane, whoever computes it -- the batch norm's own
 * forward, or the conv before it in its epilogue, while the plane is still
 * in cache (passes/fuse.c) -- on every ISA and thread count.  Batch norm
 * combines the planes per channel (nk_bn_combine).
 */
enum { NK_PS_LANES = 32 }; /* 4 zmm, 8 ymm of independent sums: not latency-bound */
/* the lanes' sum, halves added lane by lane until one is left (s is spent) */
NK_INLINE double nk_lanes_sum_d(double *s) {
  for (int w = NK_PS_LANES / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) s[l] += s[l + w];
  return s[0];
}
NK_INLINE void nk_plane_stats(double *restrict ps, const float *restrict x, int HW) {
  double s[NK_PS_LANES] = {0}, q[NK_PS_LANES] = {0};
  int i = 0;
  for (; i + NK_PS_LANES <= HW; i += NK_PS_LANES)
    for (int l = 0; l < NK_PS_LANES; l++) s[l] += x[i + l];
  for (int l = 0; i + l < HW; l++) s[l] += x[i + l];
  double sum = nk_lanes_sum_d(s), mu = sum / HW;
  for (i = 0; i + NK_PS_LANES <= HW; i += NK_PS_LANES)
    for (int l = 0; l < NK_PS_LANES; l++) {
      double d = x[i + l] - mu;
      q[l] += d * d;
    }
  for (int l = 0; i + l < HW; l++) {
    double d = x[i + l] - mu;
    q[l] += d * d;
  }
  ps[0] = sum;
  ps[1] = nk_lanes_sum_d(q);
}

/* ---------------------------------------------------------------------------
 * Pooling. Pool windows are kh x kw, stride sh, sw, padding ph, pw
 * (PyTorch semantics); parallel over (n, c) planes. The output size Ho, Wo
 * is the caller's (planned) size: NNCC_POOL_OUT gives PyTorch's, where
 * ceil_mode keeps a last, partial window only if it starts inside the input
 * or the left/top padding. A window is clipped to the input.
 *   maxpool: padding never wins; NaN wins (as PyTorch); backward sends dy to
 *            the first maximum in window order (kh, then kw), recomputed
 *            from x, and sums overlapping windows in (oh, ow) order.
 *   avgpool: the sum over the window in (kh, kw) order divided by PyTorch's
 *            divisor: the window clipped to the padded input (H + 2p) with
 *            count_include_pad, else clipped to the input itself. Without
 *            ceil_mode and with count_include_pad that is kh*kw.
 * The max pool's per-plane helpers are here, before the conv engine, whose
 * epilogue can run the pool (nk_maxpool_plane); the pools' kernels follow
 * the linear layer's.
 */
#define NK_FLOORDIV(a, b) ((a) >= 0 ? (a) / (b) : -((-(a) + (b) - 1) / (b)))
#define NNCC_POOL_OUT(H, k, s, p, ceil_mode)                                               \
  (NK_FLOORDIV((H) + 2 * (p) - (k) + ((ceil_mode) ? (s) - 1 : 0), (s)) + 1 -              \
   ((ceil_mode) && NK_FLOORDIV((H) + 2 * (p) - (k) + (s) - 1, (s)) * (s) >= (H) + (p)))

/* index in xp of the window's first maximum, or -1 for a window that holds
 * no input element (never with PyTorch's sizes) */
NK_INLINE int nk_pool_max_at(const float *xp, int H, int W, int Kh, int Kw, int h0, int w0) {
  int best = -1;
  float m = 0.0f;
  for (int i = 0; i < Kh; i++)
    for (int j = 0; j < Kw; j++) {
      int h = h0 + i, ww = w0 + j;
      if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
      float v = xp[h * W + ww];
      if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = h * W + ww;
    }
  return best;
}

NK_INLINE uint32_t nk_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
NK_INLINE float nk_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* The common pool -- 2x2 windows, stride 2, no padding, every window
 * inside x -- has a path of its own that the compiler vectorizes: the same
 * choice of maximum, the same bits. */
NK_INLINE int nk_pool_2x2(int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho,
                          int Wo) {
  return Kh == 2 && Kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2 * Ho <= H &&
         2 * Wo <= W;
}

/* All ones where v replaces m as the window's maximum so far
 * (nk_pool_max_at's rule), and the choice it makes: branch-free, so that
 * the pooling loops vectorize. */
NK_INLINE uint32_t nk_pool_takes(float v, float m) {
  return -(uint32_t)((v > m) | ((v != v) & (m == m)));
}
NK_INLINE float nk_pool_pick(uint32_t take, float v, float m) {
  return nk_from_bits((nk_bits(v) & take) | (nk_bits(m) & ~take));
}

/* The maximum of the 2x2 window (a, b / c, d); t[k] is all ones where
 * element k + 1 replaced the maximum so far. */
NK_INLINE float nk_pool_2x2_max(float a, float b, float c, float d, uint32_t t[3]) {
  t[0] = nk_pool_takes(b, a);
  float m = nk_pool_pick(t[0], b, a);
  t[1] = nk_pool_takes(c, m);
  m = nk_pool_pick(t[1], c, m);
  t[2] = nk_pool_takes(d, m);
  return nk_pool_pick(t[2], d, m);
}

/*
 * NK_PW 2x2 windows at once, for the row loops of the 2x2 pools: GCC/Clang
 * vector extensions (a zmm on AVX-512, a ymm on AVX2, two q registers on
 * NEON, SSE pairs on plain x86-64), with the even and odd elements of
 * 2*NK_PW consecutive floats split by shuffles.  The compilers' own
 * vectorization of those loops either shuffles (gcc) or gathers and
 * scatters (clang 14: slower than its scalar loop on Zen 4).  The choices
 * are the scalar rule's, lane by lane (nk_pool_takes / nk_pool_pick), so
 * the bits are the same.
 */
/* Pools whose windows tile x exactly take them under both compilers
 * (nk_pool2x2_rows); the row loops of the others under clang only: gcc
 * vectorizes those scalar loops itself. */
#if defined(__clang__)
#define NK_POOL_VECTORS 1
#else
#define NK_POOL_VECTORS 0
#endif
#if defined(__AVX512F__) /* windows per step: a zmm of them, else a ymm */
enum { NK_PW = 16 };
#define NK_PW_EVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define NK_PW_ODD 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define NK_PW_ZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define NK_PW_ZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#else
enum { NK_PW = 8 };
#define NK_PW_EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define NK_PW_ODD 1, 3, 5, 7, 9, 11, 13, 15
#define NK_PW_ZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define NK_PW_ZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#endif
typedef float nk_pw __attribute__((vector_size(NK_PW * 4)));
typedef int32_t nk_pwm __attribute__((vector_size(NK_PW * 4)));
/* Macros and pointers, no vector arguments or results: where the ISA's
 * registers are narrower (plain x86-64) those change the ABI, and the
 * compilers warn even about inline functions. */
#define NK_PWV_TAKES(v, m) (((v) > (m)) | (((v) != (v)) & ((m) == (m))))
#define NK_PWV_PICK(take, v, m) ((nk_pw)(((nk_pwm)(v) & (take)) | ((nk_pwm)(m) & ~(take))))
/* windows (e[0], e[1] / e[2], e[3]) of row pair r0, r1 from column 2*ow
 * on, the maximum's choices t, and the maximum */
NK_INLINE void nk_pool_pw_max(const float *r0, const float *r1, nk_pw e[4], nk_pwm t[3], nk_pw *max) {
  nk_pw u0, u1, l0, l1; /* four loads: gcc copies an array of vectors through the stack */
  memcpy(&u0, r0, sizeof u0);
  memcpy(&u1, r0 + NK_PW, sizeof u1);
  memcpy(&l0, r1, sizeof l0);
  memcpy(&l1, r1 + NK_PW, sizeof l1);
  e[0] = __builtin_shufflevector(u0, u1, NK_PW_EVEN);
  e[1] = __builtin_shufflevector(u0, u1, NK_PW_ODD);
  e[2] = __builtin_shufflevector(l0, l1, NK_PW_EVEN);
  e[3] = __builtin_shufflevector(l0, l1, NK_PW_ODD);
  t[0] = NK_PWV_TAKES(e[1], e[0]);
  nk_pw m = NK_PWV_PICK(t[0], e[1], e[0]);
  t[1] = NK_PWV_TAKES(e[2], m);
  m = NK_PWV_PICK(t[1], e[2], m);
  t[2] = NK_PWV_TAKES(e[3], m);
  *max = NK_PWV_PICK(t[2], e[3], m);
}
/* p[0..2*NK_PW-1] = a0 b0 a1 b1 ...: the inverse of the even/odd split */
NK_INLINE void nk_pw_zip_store(float *p, const nk_pw *a, const nk_pw *b) {
  nk_pw lo = __builtin_shufflevector(*a, *b, NK_PW_ZIP_LO),
        hi = __builtin_shufflevector(*a, *b, NK_PW_ZIP_HI);
  memcpy(p, &lo, sizeof lo);
  memcpy(p + NK_PW, &hi, sizeof hi);
}

/* The maxima of NK_PW 2x2 windows, rows r0, r1 of x from the windows'
 * first column, to y[0..NK_PW-1] */
NK_INLINE void nk_pool_pw_forward(float *y, const float *r0, const float *r1) {
  nk_pw e[4], mx;
  nk_pwm t[3];
  nk_pool_pw_max(r0, r1, e, t, &mx);
  memcpy(y, &mx, sizeof mx);
}

/* The gradient of one 2x2 window: rows r0, r1 of x from its first column,
 * its dy, written to rows o0, o1 of dx (which may be r0, r1 themselves:
 * everything is read first).  The window's maximum keeps 0 + its dy, gated
 * by act from x itself, every other element +0: by a mask of the bits,
 * which vectorizes (act is a literal in the generated code, so the gate's
 * switch folds).  A gate of +0 is +0 for every act that fuses (a slope
 * >= 0), so gating the maximum alone is gating all. */
NK_INLINE void nk_pool_1_backward(float *o0, float *o1, const float *r0, const float *r1,
                                  float dy, int act, float alpha) {
  float a = r0[0], b = r0[1], c = r1[0], d = r1[1], g = 0.0f + dy;
  uint32_t t[3];
  (void)nk_pool_2x2_max(a, b, c, d, t);
  o0[0] = nk_from_bits(nk_bits(nk_actgrad1(g, a, act, alpha)) & ~(t[0] | t[1] | t[2]));
  o0[1] = nk_from_bits(nk_bits(nk_actgrad1(g, b, act, alpha)) & t[0] & ~(t[1] | t[2]));
  o1[0] = nk_from_bits(nk_bits(nk_actgrad1(g, c, act, alpha)) & t[1] & ~t[2]);
  o1[1] = nk_from_bits(nk_bits(nk_actgrad1(g, d, act, alpha)) & t[2]);
}
/* The same for NK_PW windows, act none or relu, lane by lane. */
NK_INLINE void nk_pool_pw_backward(float *o0, float *o1, const float *r0, const float *r1,
                                   const float *g, int act) {
  nk_pw e[4], gv, mx, o[4];
  nk_pwm t[3], z = {0};
  nk_pool_pw_max(r0, r1, e, t, &mx);
  memcpy(&gv, g, sizeof gv);
  gv = 0.0f + gv;
  nk_pwm k[4] = {~(t[0] | t[1] | t[2]), t[0] & ~(t[1] | t[2]), t[1] & ~t[2], t[2]};
  for (int q = 0; q < 4; q++)
    o[q] = (nk_pw)((nk_pwm)gv & k[q] & (act == NNCC_ACT_RELU ? (e[q] > 0.0f) : ~z));
  nk_pw_zip_store(o0, &o[0], &o[1]);
  nk_pw_zip_store(o1, &o[2], &o[3]);
}

/* A 2x2 pool whose windows tile x exactly (H = 2*Ho, W = 2*Wo), by blocks
 * of row pairs: x's row pairs are then contiguous, and each NK_PW windows
 * go through the vector steps whatever Wo is.  Where a row holds whole steps
 * (Wo a multiple of NK_PW) they read x in place; otherwise the block's top
 * and bottom rows are first copied into two rows in L1 (the gradients
 * overwrite the copies, then go to dx).  Row by row, a short row
 * (mnist_cnn's 10 and 3) left most windows to the scalar rule, ~100
 * instructions a window: its backward was 2-6x slower. */
enum { NK_POOL_STAGE = 256 }; /* windows a block, at most */
NK_INLINE int nk_pool_2x2_exact(int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw,
                                int Ho, int Wo) {
  return nk_pool_2x2(H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo) && H == 2 * Ho && W == 2 * Wo &&
         Wo <= NK_POOL_STAGE;
}

/* Row pairs [r0, r0 + nr) of such a pool, nr * Wo <= NK_POOL_STAGE: out is
 * the pool's output, or (backward) dx from dy, gated by relu from x when
 * act is relu (act none or relu) */
NK_INLINE void nk_pool2x2_rows(float *restrict out, const float *restrict x,
                               const float *restrict dy, ptrdiff_t r0, int nr, int Wo, int act,
                               int backward) {
  const int W = 2 * Wo, m = nr * Wo;
  const float *xb = x + r0 * 2 * W, *g = backward ? dy + r0 * Wo : NULL;
  if (Wo % NK_PW == 0) {
    NK_SCALAR_LOOP for (int r = 0; r < nr; r++)
      NK_SCALAR_LOOP for (int ow = 0; ow < Wo; ow += NK_PW) {
        const float *x0 = xb + (ptrdiff_t)r * 2 * W + 2 * ow;
        if (backward) {
          float *d0 = out + (r0 + r) * 2 * W + 2 * ow;
          nk_pool_pw_backward(d0, d0 + W, x0, x0 + W, g + r * Wo + ow, act);
        } else {
          nk_pool_pw_forward(out + (r0 + r) * Wo + ow, x0, x0 + W);
        }
      }
    return;
  }
  float top[2 * NK_POOL_STAGE], bot[2 * NK_POOL_STAGE];
  NK_SCALAR_LOOP for (int r = 0; r < nr; r++) {
    memcpy(top + r * W, xb + (ptrdiff_t)r * 2 * W, (size_t)W * sizeof(float));
    memcpy(bot + r * W, xb + (ptrdiff_t)r * 2 * W + W, (size_t)W * sizeof(float));
  }
  int j = 0;
  NK_SCALAR_LOOP for (; j + NK_PW <= m; j += NK_PW) {
    if (backward)
      nk_pool_pw_backward(top + 2 * j, bot + 2 * j, top + 2 * j, bot + 2 * j, g + j, act);
    else
      nk_pool_pw_forward(out + r0 * Wo + j, top + 2 * j, bot + 2 * j);
  }
  NK_SCALAR_LOOP for (; j < m; j++) {
    float *p = top + 2 * j, *q = bot + 2 * j;
    if (backward) {
      nk_pool_1_backward(p, q, p, q, g[j], act, 0.0f);
    } else {
      uint32_t t[3];
      out[r0 * Wo + j] = nk_pool_2x2_max(p[0], p[1], q[0], q[1], t);
    }
  }
  if (backward)
    NK_SCALAR_LOOP for (int r = 0; r < nr; r++) {
      memcpy(out + (r0 + r) * 2 * W, top + r * W, (size_t)W * sizeof(float));
      memcpy(out + (r0 + r) * 2 * W + W, bot + r * W, (size_t)W * sizeof(float));
    }
}

/* Such a pool's rows, [0, rows), go by blocks of R row pairs: their count,
 * and block b */
NK_INLINE int nk_pool_block_rows(int Wo) { return nk_max(1, NK_POOL_STAGE / Wo); }
NK_INLINE ptrdiff_t nk_pool2x2_blocks(ptrdiff_t rows, int Wo) {
  return (rows + nk_pool_block_rows(Wo) - 1) / nk_pool_block_rows(Wo);
}
NK_INLINE void nk_pool2x2_block(float *restrict out, const float *restrict x,
                                const float *restrict dy, ptrdiff_t rows, ptrdiff_t b, int Wo,
                                int act, int backward) {
  const int R = nk_pool_block_rows(Wo);
  nk_pool2x2_rows(out, x, dy, b * R, (int)(rows - b * R < R ? rows - b * R : R), Wo, act,
                  backward);
}
/* all of them, the blocks handed out 16 at a time as threads come free
 * (each window's result is its own: any split gives the same bits) */
NK_INLINE void nk_pool2x2_team(float *restrict out, const float *restrict x,
                               const float *restrict dy, ptrdiff_t rows, int Wo, int act,
                               int backward) {
#pragma omp for schedule(dynamic, 16)
  for (ptrdiff_t b = 0; b < nk_pool2x2_blocks(rows, Wo); b++)
    nk_pool2x2_block(out, x, dy, rows, b, Wo, act, backward);
}

/* The max pool of one plane, yp[Ho][Wo] from xp[H][W]: the pool's forward
 * runs it on every plane, and so does the epilogue of a conv whose output
 * the pool reads (nk_engine_team), while the plane is in cache. */
NK_INLINE void nk_maxpool_plane(float *restrict yp, const float *restrict xp, int H, int W,
                                int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho, int Wo) {
  if (nk_pool_2x2(H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo)) {
    NK_STRIDED_LOOP for (int oh = 0; oh < Ho; oh++) {
      const float *r0 = xp + (size_t)2 * oh * W, *r1 = r0 + W;
      float *yr = yp + (size_t)oh * Wo;
      int ow = 0;
      if (NK_POOL_VECTORS)
        for (; ow + NK_PW <= Wo; ow += NK_PW) nk_pool_pw_forward(yr + ow, r0 + 2 * ow, r1 + 2 * ow);
      NK_STRIDED_LOOP for (; ow < Wo; ow++) {
        uint32_t t[3];
        yr[ow] = nk_pool_2x2_max(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1], t);
      }
    }
    return;
  }
  for (int oh = 0; oh < Ho; oh++)
    for (int ow = 0; ow < Wo; ow++) {
      int k = nk_pool_max_at(xp, H, W, Kh, Kw, oh * sh - ph, ow * sw - pw);
      yp[oh * Wo + ow] = k < 0 ? -INFINITY : xp[k];
    }
}

/* ---------------------------------------------------------------------------
 * The one micro-kernel. acc is a tile of MU*MV rows by NV vectors of 16
 * columns; row (u, v) reads its scalar at a + u*ar1 + v*ar0, the columns
 * are 16*NV consecutive floats at b (the last vector loaded under bmask).
 * The reduction runs over three nested loops (n2, n1, n0) that advance a and
 * b by their own strides, in order; each accumulator is one FMA chain.
 * With MU, MV, NV constant the tile unrolls into registers.
 * nk_kernel_rolled keeps the n0 loop rolled under gcc too (but on
 * AVX-512): for a short n0 (a kernel row of the direct convolution) gcc's
 * own unrolling overlaps the steps' loads and spills the AVX2 tile (20%
 * slower); a long one (a weight gradient's output row) gains from it.
 */
#define NK_KERNEL_BODY(UNROLL, NOUNROLL)                                                           \
  for (int i2 = 0; i2 < n2; i2++)                                                          \
    for (int i1 = 0; i1 < n1; i1++) {                                                      \
      const float *ap = a + i2 * a2 + i1 * a1;                                             \
      const float *bp = b + i2 * b2 + i1 * b1;                                             \
      NOUNROLL for (int i0 = 0; i0 < n0; i0++, ap += a0, bp += b0) {                       \
        nk_v bv[4] = {nk_zero(), nk_zero(), nk_zero(), nk_zero()};                         \
        UNROLL for (int j = 0; j < NV; j++)                                                \
          bv[j] = nk_in_regs(j == NV - 1 && bmask != 0xFFFF ? nk_load_mask(bp + 16 * j, bmask) \
                                                            : nk_load(bp + 16 * j));        \
        UNROLL for (int u = 0; u < MU; u++)                                                \
          UNROLL for (int v = 0; v < MV; v++) {                                            \
            nk_v s = nk_bcast(ap[u * ar1 + v * ar0]);                                      \
            UNROLL for (int j = 0; j < NV; j++)                                            \
              acc[(u * MV + v) * NV + j] = nk_fma(s, bv[j], acc[(u * MV + v) * NV + j]);   \
          }                                                                                \
      }                                                                                    \
    }

/* Unroll only when the tile shape is a compile-time constant (generated
 * code); unrolling runtime-sized loops would only bloat the code. */
#define NK_KERNEL_FN(name, ROLL)                                                              \
  NK_INLINE void name(nk_v *restrict acc, const int MU, const int MV, const int NV,           \
                      const float *a, const ptrdiff_t ar1, const ptrdiff_t ar0,               \
                      const float *b, const uint32_t bmask, const int n2, const ptrdiff_t a2, \
                      const ptrdiff_t b2, const int n1, const ptrdiff_t a1,                   \
                      const ptrdiff_t b1, const int n0, const ptrdiff_t a0,                   \
                      const ptrdiff_t b0) {                                                   \
    if (__builtin_constant_p(MU) && __builtin_constant_p(MV) && __builtin_constant_p(NV)) {   \
      NK_KERNEL_BODY(NK_UNROLL, ROLL)                                                         \
    } else {                                                                                  \
      NK_KERNEL_BODY(, )                                                                      \
    }                                                                                         \
  }
NK_KERNEL_FN(nk_kernel, NK_NOUNROLL)
NK_KERNEL_FN(nk_kernel_rolled, NK_ROLLED)
#undef NK_KERNEL_FN
#undef NK_KERNEL_BODY

/* ---------------------------------------------------------------------------
 * Convolution engine. A convolution is described over a "virtual plane":
 * V[n][c][r][col] = src[n][c][(r-pt)/dh][(col-pl)/dw] when the division is
 * exact and in range, else 0 (padding, and zero insertion for the transposed
 * convolution of a strided backward). The output is
 *   out[n][m][oh][ow] = sum_{c,kh,kw} wt[m][c][kh][kw] * V[n][c][oh*sh+kh][ow*sw+kw]
 * Forward uses it with V = padded x; backward-data with V = dilated,
 * padded dy and the flipped, transposed weights.
 */
typedef struct {
  int N, C, Hs, Ws;   /* source tensor */
  int dh, dw, pt, pl; /* zero insertion and top/left offset */
  int Hv, Wv;         /* virtual plane */
  int M, Kh, Kw, sh, sw, Ho, Wo; /* output channels, kernel, stride, output */
} nk_conv;

enum { NK_NR = 16 * NK_NV }; /* NK_MR, NK_NV: nncc_simd.h */

/* Where one output vector's lanes go: a run of lanes of one image. */
typedef struct { int32_t dst; uint32_t mask; } nk_seg;

/* How the engine lays out one thread's work; a pure function of the shape
 * (never of the thread count), so scratch sizes agree with the kernel. */
enum { NK_IM2COL, NK_DIRECT, NK_ROWS, NK_WINO };
typedef struct {
  int mode;          /* NK_DIRECT, NK_ROWS, NK_IM2COL or NK_WINO (nk_engine_plan) */
  int G;             /* images per group (upper bound) */
  int S;             /* segments per output vector, at most */
  size_t thread_bytes;
} nk_eplan;

/* Bytes of the matrices that one thread's group of images spans, for the
 * column layouts (nk_cols_group): about a thread's share of L2.  384 KiB
 * gave mnist_cnn's conv3 3 images, 108 columns of three 48-wide tiles;
 * 512 KiB gives it 4 (144, no waste): its dx 3.7 -> 2.9 ms on AVX-512,
 * 6.0 -> 5.8 ms on AVX2; its forward (im2col), 2 images in 96 columns
 * before, 3.6 -> 2.8 ms on AVX-512 (bench_kernels). */
#ifndef NNCC_COL_GROUP_BYTES
#define NNCC_COL_GROUP_BYTES (512 * 1024)
#endif

NK_INLINE int nk_cols_ld(int cols) { return nk_cdiv(cols, NK_NR) * NK_NR; }

/* Images per group for a GEMM whose columns are the group's output
 * positions, P per image, with `rows` floats per column across its
 * matrices (the column path: dy's Co and col's Ci*Kh*Kw; the engine's
 * im2col and rows layouts: B's and the output's M).  The most that fit
 * NNCC_COL_GROUP_BYTES, but at least one full tile of columns, past the
 * budget if need be: with fewer, the micro-kernel computes wasted columns
 * and each group streams all of the weights (vgg16's 4x4 layers: 16 of 48
 * columns, the 9 MiB w once per image).  Then, among the largest groups
 * (down to half), the one with the fewest wasted columns in its last tile.
 * A pure function of the shape, as the bits never depend on it. */
NK_INLINE int nk_cols_group(int N, int P, size_t rows) {
  size_t per = (size_t)P * rows * sizeof(float);
  int gmax = nk_max(1, nk_min(N, (int)(NNCC_COL_GROUP_BYTES / per)));
  if (gmax * P < NK_NR) gmax = nk_min(N, nk_cdiv(NK_NR, P));
  double best = -1;
  int G = 1;
  for (int g = gmax; g >= 1 && g * 2 > gmax; g--) {
    double eff = (double)g * P / nk_cols_ld(g * P);
    if (eff > best + 1e-9) best = eff, G = g;
  }
  return G;
}

/* The columns q of a group of g images (a tile covers NK_NR of them):
 *   NK_DIRECT  q = gi*Hv*Wv + r*Wv + col: V itself, the output at r < Ho,
 *              col < Wo; the other columns are computed and dropped;
 *   NK_IM2COL  q = gi*Ho*Wo + oh*Wo + ow: every column an output;
 *   NK_ROWS    q = oh*g*Wo + gi*Wo + ow: every column an output, the
 *              group's images side by side in each output row. */
NK_INLINE int nk_qspan(nk_conv d, int mode, int g) {
  return mode == NK_DIRECT ? (g - 1) * d.Hv * d.Wv + (d.Ho - 1) * d.Wv + d.Wo : g * d.Ho * d.Wo;
}
/* How many times the share of computed columns that are outputs (nk_engine_kept)
 * the rows layout must keep over direct to pay for its copies, which weigh
 * more where the arithmetic is faster (bench_kernels, forward, ms):
 *   AVX-512: vgg16's 128->256 8x8 (kept 0.89 against 0.62): 10.5 -> 7.5;
 *     mnist_cnn's conv2 (0.98 against 0.83): 8.4-9.1 -> 8.1-10.1, and
 *     conv1 (1.0 against 0.82): 0.6-0.7 -> 0.5-0.8: no gain; direct.
 *   AVX2: vgg16's 64->128 16x16 (1.0 against 0.85): 14.5 -> 12.5;
 *     mnist_cnn's conv2 (1.0 against 0.83): 17.3 -> 15.8-17.3. */
#if defined(NK_ISA_AVX512)
#define NK_ROWS_GAIN 1.3
#else
#define NK_ROWS_GAIN 1.15
#endif
/* NK_ROWS reads rows 0 .. Ho+Kh-2 of V (stride 1); nk_fill_b stages each
 * row on the stack up to NK_ROWS_VMAX columns */
enum { NK_ROWS_VMAX = 512 };
NK_INLINE int nk_rows_hr(nk_conv d) { return d.Ho + d.Kh - 1; }
NK_INLINE size_t nk_bfloats(nk_conv d, int mode, int g) {
  int K = d.C * d.Kh * d.Kw;
  if (mode == NK_DIRECT) return (size_t)d.C * g * d.Hv * d.Wv + NK_NR;
  if (mode == NK_ROWS) return (size_t)d.C * d.Kw * nk_rows_hr(d) * g * d.Wo + NK_NR;
  return (size_t)K * (size_t)(nk_cdiv(nk_qspan(d, mode, g), NK_NR) * NK_NR);
}
/* The share of the columns that a group of g images computes which are
 * outputs (direct skips the tiles that hold none: count the tiles each
 * output row's run of columns touches, in increasing order) */
NK_INLINE double nk_engine_kept(nk_conv d, int mode, int g) {
  int q = nk_qspan(d, mode, g), tiles = 0, last = -1;
  if (mode != NK_DIRECT) return (double)q / (nk_cdiv(q, NK_NR) * NK_NR);
  for (int gi = 0; gi < g; gi++)
    for (int oh = 0; oh < d.Ho; oh++) {
      int a = gi * d.Hv * d.Wv + oh * d.Wv, t1 = (a + d.Wo - 1) / NK_NR;
      tiles += t1 - nk_max(a / NK_NR, last + 1) + 1;
      last = t1;
    }
  return (double)g * d.Ho * d.Wo / ((double)tiles * NK_NR);
}
NK_INLINE size_t nk_segbytes(nk_conv d, int mode, int g, int S) {
  size_t nvec = (size_t)nk_cdiv(nk_qspan(d, mode, g), NK_NR) * NK_NV;
  return nk_align64(nvec * S * sizeof(nk_seg)) + nk_align64(nvec);
}
/* The engine's group size for a team of nthr: groups of at most Gmax of
 * the N images, their count rounded up to a multiple of the team, so that
 * every thread gets the same number of images (within one group) */
NK_INLINE int nk_team_group(int N, int Gmax, int nthr) {
  return nk_cdiv(N, nk_cdiv(nk_cdiv(N, Gmax), nthr) * nthr);
}
/* Winograd F(2x2, 5x5) (nk_wino_team, after the engine's tile): which
 * convolutions take it, and its per-thread scratch.  A 5x5 kernel at
 * stride 1 on an undilated plane, with at least NNCC_WINO_MIN_C input and
 * output channels (fewer make its GEMMs too short to pay for the
 * transforms: mnist_cnn's conv1, one channel in, stays direct).
 * NNCC_NO_WINOGRAD turns it off (bench_kernels compares the two).  A tile
 * is a 2x2 block of outputs; a group of g images has g * tiles-per-image
 * columns, rounded up to whole vectors. */
#ifndef NNCC_WINO_MIN_C
#define NNCC_WINO_MIN_C 8
#endif
/* The transformed input of a group (36 planes of C rows by its columns),
 * at most this many bytes but one image at least: about a thread's share
 * of L2 with the transformed weights beside it */
#ifndef NNCC_WINO_V_BYTES
#define NNCC_WINO_V_BYTES (512 * 1024)
#endif
enum { NK_WA = 6, NK_WXI = NK_WA * NK_WA }; /* a tile's input is 6x6: 36 products */

NK_INLINE int nk_wino_th(nk_conv d) { return nk_cdiv(d.Ho, 2); }
NK_INLINE int nk_wino_tw(nk_conv d) { return nk_cdiv(d.Wo, 2); }
/* a group's columns: its tiles, rounded up to whole vectors */
NK_INLINE int nk_wino_ncols(int tiles) { return nk_cdiv(tiles, 16) * 16; }
NK_INLINE int nk_wino_cols(nk_conv d, int g) {
  return nk_wino_ncols(g * nk_wino_th(d) * nk_wino_tw(d));
}
/* V's stride between its 36 planes: C rows of cols, padded to an odd
 * number of cache lines (a multiple of 4 KiB put all 36 stores of a tile's
 * transform in one set of L1: mnist_cnn's conv3 data gradient, 8 KiB) */
NK_INLINE size_t nk_wino_xs(int C, int cols) {
  size_t xs = (size_t)C * cols;
  return xs / 16 % 2 ? xs : xs + 16;
}
/* V's bytes, for C channels of cols columns */
NK_INLINE size_t nk_wino_vbytes(int C, int cols) {
  return (size_t)NK_WXI * nk_wino_xs(C, cols) * sizeof(float);
}
/* Images per group: the fewest wasted columns among the groups whose
 * transformed input fits NNCC_WINO_V_BYTES (one image at least), the
 * smallest group on a tie, for more groups to share out.  A pure function
 * of the shape; the bits never depend on it.
 *
 * Written without a loop, so that a compiler folds it for a kernel's
 * constant shape, and nk_wino_take with it: each convolution kernel then
 * compiles Winograd or the engine, not both (mnist_cnn's trainer, one
 * core, clang -O3: 6.3 -> 5.0 s; a loop, even of constant count, is not
 * folded before the rest of the kernel is optimized).  Sixteen candidates
 * suffice: with T tiles an image, a group of p = 16 / gcd(T, 16) images
 * wastes no column and no smaller group does, so where p fits it is the
 * answer, and where it does not, no larger group fits either (V's size
 * grows with g) and every fitting group is below p <= 16.  test_kernels'
 * test_wino_group compares this with the search over every group size. */
NK_INLINE int nk_wino_group(nk_conv d) {
  /* scalars: each trial's copies of d cost the optimizer more than the
   * trial itself */
  int T = nk_wino_th(d) * nk_wino_tw(d), C = d.C, N = d.N, G = 1;
  double best = 2;
#define NK_WINO_TRY(g)                                                                   \
  if ((g) <= N && ((g) == 1 || nk_wino_vbytes(C, nk_wino_ncols((g) * T)) <= NNCC_WINO_V_BYTES)) { \
    double waste = 1.0 - (double)(g) * T / nk_wino_ncols((g) * T);                       \
    if (waste < best - 1e-9) best = waste, G = (g);                                      \
  }
  NK_WINO_TRY(1) NK_WINO_TRY(2) NK_WINO_TRY(3) NK_WINO_TRY(4)
  NK_WINO_TRY(5) NK_WINO_TRY(6) NK_WINO_TRY(7) NK_WINO_TRY(8)
  NK_WINO_TRY(9) NK_WINO_TRY(10) NK_WINO_TRY(11) NK_WINO_TRY(12)
  NK_WINO_TRY(13) NK_WINO_TRY(14) NK_WINO_TRY(15) NK_WINO_TRY(16)
#undef NK_WINO_TRY
  return G;
}
/* Whether Winograd takes convolution d, and in groups of how many images:
 * nk_wino_group's G, or 0 where it does not.  It takes a 5x5 kernel at
 * stride 1 on an undilated plane, with enough channels, where its GEMMs'
 * products per image (36 per column) are at most NK_WINO_GAIN of the 25
 * per output position that the direct convolution needs, counting only the
 * positions where the source is not padding (a data gradient's plane is
 * mostly padding where dy is small).  The transforms cost the rest
 * (bench_kernels, AVX-512, ms, direct against Winograd; products per image
 * in brackets): mnist_cnn's conv2 forward 7.45 -> 4.65 (3744 against
 * 10000), its data gradient 8.15 -> 7.27 (5184 against 10000), conv3
 * forward 2.45 -> 1.98 (329 against 900), but conv3's data gradient 2.47
 * -> 6.25 (1152 against 900): direct. */
#define NK_WINO_GAIN 0.6
NK_INLINE int nk_wino_take(nk_conv d) {
#if defined(NNCC_NO_WINOGRAD)
  (void)d;
  return 0;
#else
  if (d.Kh != 5 || d.Kw != 5 || d.sh != 1 || d.sw != 1 || d.dh != 1 || d.dw != 1 ||
      d.C < NNCC_WINO_MIN_C || d.M < NNCC_WINO_MIN_C)
    return 0;
  int G = nk_wino_group(d);
  double useful = (double)nk_min(d.Ho * d.Wo, d.Hs * d.Ws);
  return 36.0 * nk_wino_cols(d, G) / G <= NK_WINO_GAIN * 25.0 * useful ? G : 0;
#endif
}
/* One thread's scratch, for groups of up to G images: the transformed
 * weights U, the group's transformed input V, one tile's 36 products Mx,
 * a channel's column-transformed rows Z, one source row R (nk_wino_fill),
 * and where each column's tile goes in the output */
typedef struct { size_t U, V, Mx, Z, R, off, bytes; } nk_wlayout;
enum { NK_WROW = 64 }; /* R: a source row for 16 tiles, 36 columns used */
NK_INLINE nk_wlayout nk_wino_layout(nk_conv d, int G) {
  nk_wlayout L;
  int cols = nk_wino_cols(d, G);
  L.U = 0;
  L.V = L.U + nk_align64((size_t)NK_WXI * d.M * d.C * sizeof(float));
  L.Mx = L.V + nk_align64(nk_wino_vbytes(d.C, cols));
  L.Z = L.Mx + nk_align64((size_t)NK_WXI * NK_MR * NK_NR * sizeof(float));
  L.R = L.Z + nk_align64((size_t)(2 * nk_wino_th(d) + 4) * NK_WA * 16 * sizeof(float));
  L.off = L.R + nk_align64(NK_WROW * sizeof(float));
  L.bytes = L.off + nk_align64((size_t)cols * sizeof(int32_t));
  return L;
}

NK_INLINE nk_eplan nk_engine_plan(nk_conv d) {
  nk_eplan p = {.mode = NK_IM2COL};
  int wino = nk_wino_take(d);
  if (wino) {
    p.mode = NK_WINO, p.G = wino, p.S = 0;
    p.thread_bytes = nk_wino_layout(d, p.G).bytes;
    return p;
  }
  /* Reading V directly (NK_DIRECT) copies nothing but computes and drops
   * the Kw-1 columns between output rows, and the rows between images; the
   * rows layout copies Kw times the input (each kw's shifted rows) and
   * drops only its last tile's excess; im2col copies Kh*Kw times.  For
   * stride 1: direct where at most half of V is waste and rows would keep
   * less than NK_ROWS_GAIN times the share of columns direct keeps, or
   * where one image's rows layout would not fit a thread's share of L2;
   * else rows. */
  int P = d.Ho * d.Wo;
  if (d.sh != 1 || d.sw != 1) {
    p.G = nk_cols_group(d.N, P, (size_t)d.C * d.Kh * d.Kw + d.M);
  } else {
    size_t rows_img = nk_bfloats(d, NK_ROWS, 1) - NK_NR;
    size_t dper = nk_bfloats(d, NK_DIRECT, 2) - nk_bfloats(d, NK_DIRECT, 1);
    nk_eplan r = {.mode = NK_ROWS, .G = nk_cols_group(d.N, P, rows_img / P + d.M)};
    nk_eplan di = {.mode = NK_DIRECT,
                   .G = nk_max(1, nk_min((int)(NNCC_GROUP_BYTES / 4 / dper), d.N))};
    int direct = 2 * P >= d.Hv * d.Wv &&
                 (rows_img * sizeof(float) > NNCC_COL_GROUP_BYTES ||
                  NK_ROWS_GAIN * nk_engine_kept(d, NK_DIRECT, di.G) >= nk_engine_kept(d, NK_ROWS, r.G));
    p = direct ? di : r;
  }
  /* runs break between images: every Hv*Wv or Ho*Wo columns, or (rows)
   * every Wo */
  p.S = nk_min(16, 16 / (p.mode == NK_DIRECT ? d.Hv * d.Wv : p.mode == NK_ROWS ? d.Wo : d.Ho * d.Wo) + 2);
  p.thread_bytes = nk_align64(nk_bfloats(d, p.mode, p.G) * sizeof(float)) +
                   nk_segbytes(d, p.mode, p.G, p.S);
  return p;
}

/* dst[i] = V[n][c][r][c0 + i*step] for i < count; srow/mrow are source row r
 * (NULL: an all-zero row) and the matching row of the saved activation
 * output that gates it (act, alpha; NULL: no gate). */
NK_INLINE void nk_vrow(float *restrict dst, const float *srow, const float *mrow, int act,
                       float alpha, int count, int c0, int step, int pl, int dil, int Ws) {
  if (!srow) {
    memset(dst, 0, (size_t)count * sizeof(float));
    return;
  }
  if (dil != 1) {
    for (int i = 0; i < count; i++) {
      int t = c0 + i * step - pl;
      float v = 0.0f;
      if (t >= 0 && t % dil == 0 && t / dil < Ws) {
        v = srow[t / dil];
        if (mrow) v = nk_actgrad1(v, mrow[t / dil], act, alpha);
      }
      dst[i] = v;
    }
    return;
  }
  /* i in [lo, hi) reads inside the source row */
  int lo = pl - c0 <= 0 ? 0 : (pl - c0 + step - 1) / step;
  int last = pl + Ws - 1 - c0;
  int hi = last < 0 ? 0 : nk_min(count, last / step + 1);
  if (lo > hi) lo = hi;
  for (int i = 0; i < lo; i++) dst[i] = 0.0f;
  const float *s = srow + (c0 + lo * step - pl);
  if (step == 1 && !mrow) {
    memcpy(dst + lo, s, (size_t)(hi - lo) * sizeof(float));
  } else if (mrow) {
    const float *m = mrow + (c0 + lo * step - pl);
    for (int i = lo; i < hi; i++)
      dst[i] = nk_actgrad1(s[(i - lo) * step], m[(i - lo) * step], act, alpha);
  } else {
    for (int i = lo; i < hi; i++) dst[i] = s[(i - lo) * step];
  }
  for (int i = hi; i < count; i++) dst[i] = 0.0f;
}

/* Source (and mask) row behind virtual row r of image n, channel c. */
NK_INLINE const float *nk_srow(nk_conv d, const float *src, int n, int c, int r) {
  int t = r - d.pt;
  if (t < 0 || t % d.dh || t / d.dh >= d.Hs) return NULL;
  return src + (((size_t)n * d.C + c) * d.Hs + t / d.dh) * d.Ws;
}

/* Fill a group's B matrix: direct: V of images n0.. laid out [c][g][r][col]
 * (plus zeroed slack for the last tile's over-read); rows: blocks (c, kw)
 * of rows r < Ho+Kh-1, each row the g images' V[c][r][kw .. kw+Wo) side by
 * side (plus the slack); im2col: row k = (c, kh, kw), columns
 * q = g*Ho*Wo + oh*Wo + ow, padded to whole tiles. */
NK_INLINE void nk_fill_b(float *restrict B, nk_conv d, nk_eplan p, const float *src,
                         const float *msk, int act, float alpha, int n0, int g) {
  if (p.mode == NK_ROWS) {
    /* each row of V once (nk_vrow), then its Kw shifted copies by vector
     * moves: one call per kw cost conv1 of mnist_cnn (one channel, little
     * arithmetic per copied row) 70% on AVX2 */
    int Hr = nk_rows_hr(d), Wr = d.Wo + d.Kw - 1;
    size_t gw = (size_t)g * d.Wo, plane = (size_t)Hr * gw;
    float vr[NK_ROWS_VMAX];
    for (int c = 0; c < d.C; c++)
      for (int r = 0; r < Hr; r++)
        for (int gi = 0; gi < g; gi++) {
          const float *s = nk_srow(d, src, n0 + gi, c, r);
          const float *m = s && msk ? msk + (s - src) : NULL;
          float *dst = B + (size_t)c * d.Kw * plane + r * gw + (size_t)gi * d.Wo;
          if (Wr > NK_ROWS_VMAX) {
            for (int kw = 0; kw < d.Kw; kw++)
              nk_vrow(dst + kw * plane, s, m, act, alpha, d.Wo, kw, 1, d.pl, d.dw, d.Ws);
            continue;
          }
          nk_vrow(vr, s, m, act, alpha, Wr, 0, 1, d.pl, d.dw, d.Ws);
          for (int kw = 0; kw < d.Kw; kw++) {
            float *o = dst + kw * plane;
            int i = 0;
            for (; i + 16 <= d.Wo; i += 16) nk_store(o + i, nk_load(vr + kw + i));
            if (i < d.Wo) {
              uint32_t mk = nk_lanes(d.Wo - i);
              nk_store_mask(o + i, mk, nk_load_mask(vr + kw + i, mk));
            }
          }
        }
    memset(B + (size_t)d.C * d.Kw * plane, 0, NK_NR * sizeof(float));
    return;
  }
  if (p.mode == NK_DIRECT) {
    size_t plane = (size_t)d.Hv * d.Wv;
    for (int c = 0; c < d.C; c++)
      for (int gi = 0; gi < g; gi++)
        for (int r = 0; r < d.Hv; r++) {
          const float *s = nk_srow(d, src, n0 + gi, c, r);
          const float *m = s && msk ? msk + (s - src) : NULL;
          nk_vrow(B + ((size_t)c * g + gi) * plane + (size_t)r * d.Wv, s, m, act, alpha, d.Wv,
                  0, 1, d.pl, d.dw, d.Ws);
        }
    memset(B + (size_t)d.C * g * plane, 0, NK_NR * sizeof(float));
    return;
  }
  int q = nk_qspan(d, NK_IM2COL, g), ldb = nk_cdiv(q, NK_NR) * NK_NR, P = d.Ho * d.Wo;
  for (int c = 0; c < d.C; c++)
    for (int kh = 0; kh < d.Kh; kh++)
      for (int kw = 0; kw < d.Kw; kw++) {
        float *row = B + (size_t)((c * d.Kh + kh) * d.Kw + kw) * ldb;
        for (int gi = 0; gi < g; gi++)
          for (int oh = 0; oh < d.Ho; oh++) {
            const float *s = nk_srow(d, src, n0 + gi, c, oh * d.sh + kh);
            const float *m = s && msk ? msk + (s - src) : NULL;
            nk_vrow(row + gi * P + oh * d.Wo, s, m, act, alpha, d.Wo, kw, d.sw, d.pl, d.dw,
                    d.Ws);
          }
        for (int i = q; i < ldb; i++) row[i] = 0.0f;
      }
}

/* For each output vector of a group, the runs of valid lanes per image and
 * where they go in out (relative to image n0, channel 0). */
NK_INLINE void nk_fill_segs(nk_seg *segs, uint8_t *cnt, nk_conv d, nk_eplan p, int g) {
  int q = nk_qspan(d, p.mode, g), nvec = nk_cdiv(q, NK_NR) * NK_NV;
  int Hq = p.mode == NK_DIRECT ? d.Hv : d.Ho, Wq = p.mode == NK_DIRECT ? d.Wv : d.Wo;
  for (int vi = 0; vi < nvec; vi++) {
    int ns = 0, cur = -1;
    for (int l = 0; l < 16; l++) {
      int qq = vi * 16 + l;
      if (qq >= q) break;
      int gi, oh, ow;
      if (p.mode == NK_ROWS)
        oh = qq / (g * d.Wo), gi = qq / d.Wo % g, ow = qq % d.Wo;
      else
        gi = qq / (Hq * Wq), oh = qq % (Hq * Wq) / Wq, ow = qq % Wq;
      if (oh >= d.Ho || ow >= d.Wo) continue;
      if (gi != cur) {
        cur = gi;
        segs[vi * p.S + ns].dst = (int32_t)((size_t)gi * d.M * d.Ho * d.Wo + oh * d.Wo + ow);
        segs[vi * p.S + ns].mask = 0;
        ns++;
      }
      segs[vi * p.S + ns - 1].mask |= 1u << l;
    }
    cnt[vi] = (uint8_t)ns;
  }
}

/* One MR x NR tile of the engine: rows m0..m0+mr of wt ([M][C*Kh*Kw]),
 * columns q0.. of B, then bias, activation and the scatter into out. */
NK_INLINE void nk_engine_tile(float *out, const float *wt, const float *bias, int act,
                              float alpha, const float *B, const nk_seg *segs, const uint8_t *cnt,
                              nk_conv d, nk_eplan p, int g, int m0, const int mr, int t) {
  nk_v acc[NK_MR * NK_NV];
  if (mr < 1 || mr > NK_MR) __builtin_unreachable();
  NK_UNROLL for (int i = 0; i < NK_MR * NK_NV; i++) acc[i] = nk_zero();
  int K = d.C * d.Kh * d.Kw, q0 = t * NK_NR;
  const float *a = wt + (size_t)m0 * K;
  if (p.mode == NK_ROWS) {
    /* k = (c, kh, kw) at B + (c*Kw + kw)*plane + kh*g*Wo + q: the same order */
    size_t plane = (size_t)nk_rows_hr(d) * g * d.Wo;
    nk_kernel_rolled(acc, mr, 1, NK_NV, a, K, 0, B + q0, 0xFFFF, d.C, d.Kh * d.Kw,
                     (ptrdiff_t)(d.Kw * plane), d.Kh, d.Kw, (ptrdiff_t)g * d.Wo, d.Kw, 1,
                     (ptrdiff_t)plane);
  } else if (p.mode == NK_DIRECT) {
    size_t cs = (size_t)g * d.Hv * d.Wv;
    nk_kernel_rolled(acc, mr, 1, NK_NV, a, K, 0, B + q0, 0xFFFF, d.C, d.Kh * d.Kw, cs, d.Kh, d.Kw,
              d.Wv, d.Kw, 1, 1);
  } else {
    int ldb = nk_cdiv(nk_qspan(d, NK_IM2COL, g), NK_NR) * NK_NR;
    nk_kernel(acc, mr, 1, NK_NV, a, K, 0, B + q0, 0xFFFF, 1, 0, 0, 1, 0, 0, K, 1, ldb);
  }
  size_t HW = (size_t)d.Ho * d.Wo;
  NK_UNROLL for (int u = 0; u < mr; u++) {
    float *orow = out + (size_t)(m0 + u) * HW;
    nk_v bv = nk_bcast(bias ? bias[m0 + u] : 0.0f);
    NK_UNROLL for (int j = 0; j < NK_NV; j++) {
      nk_v v = acc[u * NK_NV + j];
      if (bias) v = nk_add(v, bv);
      v = nk_act(v, act, alpha);
      int vi = t * NK_NV + j;
      for (int s = 0; s < cnt[vi]; s++)
        nk_store_compress(orow + segs[vi * p.S + s].dst, segs[vi * p.S + s].mask, v);
    }
  }
}

/* What a conv's forward does to each output plane of a group of images
 * while the group is still in cache (passes/fuse.c): pstats, the plane
 * statistics of the batch norm it feeds (nk_plane_stats); pool, the output
 * of the max pool it feeds (nk_maxpool_plane, its window in the rest);
 * NULL: not that. */
typedef struct nk_epi {
  double *pstats;
  float *pool;
  int kh, kw, sh, sw, ph, pw, ho, wo;
} nk_epi;

/* The epilogue of a group of g images from n0 (o: their output planes),
 * while the planes are still in cache */
NK_INLINE void nk_engine_epilogue(nk_epi e, nk_conv d, float *o, int n0, int g) {
  if (e.pstats)
    for (int k = 0; k < g * d.M; k++)
      nk_plane_stats(e.pstats + 2 * ((size_t)n0 * d.M + k), o + (size_t)k * d.Ho * d.Wo,
                     d.Ho * d.Wo);
  if (e.pool && nk_pool_2x2_exact(d.Ho, d.Wo, e.kh, e.kw, e.sh, e.sw, e.ph, e.pw, e.ho, e.wo)) {
    /* the group's planes at once: their row pairs follow each other */
    ptrdiff_t rows = (ptrdiff_t)g * d.M * e.ho;
    float *py = e.pool + (size_t)n0 * d.M * e.ho * e.wo;
    for (ptrdiff_t b = 0; b < nk_pool2x2_blocks(rows, e.wo); b++)
      nk_pool2x2_block(py, o, NULL, rows, b, e.wo, NNCC_ACT_NONE, 0);
  } else if (e.pool)
    for (int k = 0; k < g * d.M; k++)
      nk_maxpool_plane(e.pool + ((size_t)n0 * d.M + k) * e.ho * e.wo, o + (size_t)k * d.Ho * d.Wo,
                       d.Ho, d.Wo, e.kh, e.kw, e.sh, e.sw, e.ph, e.pw, e.ho, e.wo);
}

/* ---------------------------------------------------------------------------
 * Winograd F(2x2, 5x5) (Lavin and Gray's minimal filtering, 2016).  Each
 * 2x2 tile of outputs of a 5x5, stride-1 convolution comes from the 6x6
 * block d of V at its top-left corner:
 *   Y = A^T [ sum_c (G w[m][c] G^T) .* (B^T d[c] B) ] A
 * 36 products per input channel instead of 100.  With U[xi][m][c] the
 * transformed weights and V[xi][c][t] the transformed input of tile t,
 * each xi (an element of the 6x6) is a GEMM over c,
 *   Mx[xi][m][t] = sum_c U[xi][m][c] * V[xi][c][t],
 * run by the engine's micro-kernel (columns = tiles), and A^T Mx A gives
 * the tile.  The interpolation points are 0, 1, -1, 1/2, -2 and infinity:
 * B and A are then exact in float, and of the choices that keep them so it
 * had the smallest error (float32 against float64 on 32 channels of random
 * data: 1.4e-6 of the largest output on average, 6e-6 at worst; direct
 * summation 0.6e-6 and 1.8e-6; points 0, +-1, +-2: 2.2e-6 and 9e-6).
 * Same bits on every ISA and thread count: each transform is a fixed
 * sequence of float multiplies and adds, lane by lane (nk_wino_bt,
 * nk_wino_at, nk_wino_comb16), and
 * each Mx element one FMA chain over c in order, whatever the tile shape,
 * the vector width or the group of images.
 */

/* d[l] = the sum of coef[i] * x[i * stride + l] over the nonzero
 * coefficients, in order, for the 16 lanes l: the first term, then an add
 * per term; coefficient 1 is the term itself (an exact product).  The
 * weights' transform, once per call: plain loops compile fast. */
NK_INLINE void nk_wino_comb16(float *restrict d, const float *coef, int n, const float *x,
                              int stride) {
  int first = 1;
  for (int i = 0; i < n; i++) {
    if (coef[i] == 0.0f) continue;
    for (int l = 0; l < 16; l++) {
      float p = coef[i] == 1.0f ? x[i * stride + l] : coef[i] * x[i * stride + l];
      d[l] = first ? p : d[l] + p;
    }
    first = 0;
  }
}

/* o = B^T d for 6 values, B^T's rows
 *   [1 -3/2 -2 3/2 1 0]  [0 -1 1/2 5/2 1 0]  [0 1 -5/2 1/2 1 0]
 *   [0 -2 -1 2 1 0]      [0 1/2 -1 -1/2 1 0] [0 1 -3/2 -2 3/2 1]
 * in 26 operations (multiplying by 2 or 1/2 is exact) */
NK_INLINE void nk_wino_bt(nk_v *restrict o, nk_v d0, nk_v d1, nk_v d2, nk_v d3, nk_v d4,
                          nk_v d5) {
  nk_v two = nk_bcast(2.0f), half = nk_bcast(0.5f), h3 = nk_bcast(1.5f), h5 = nk_bcast(2.5f);
  nk_v t1 = nk_sub(d4, d2), t2 = nk_sub(d3, d1);
  o[0] = nk_add(nk_sub(nk_add(d0, d4), nk_mul(two, d2)), nk_mul(h3, t2));
  o[1] = nk_add(nk_sub(d4, d1), nk_add(nk_mul(h5, d3), nk_mul(half, d2)));
  o[2] = nk_add(nk_add(d4, d1), nk_sub(nk_mul(half, d3), nk_mul(h5, d2)));
  o[3] = nk_add(t1, nk_mul(two, t2));
  o[4] = nk_sub(t1, nk_mul(half, t2));
  o[5] = nk_add(nk_sub(nk_add(d1, d5), nk_mul(two, d3)), nk_mul(h3, t1));
}
/* A^T m for 6 values: y0 = m0+m1+m2+m3+m4, y1 = m1-m2+m3/2-2m4+m5 */
NK_INLINE void nk_wino_at(nk_v *restrict y0, nk_v *restrict y1, const nk_v *m) {
  *y0 = nk_add(nk_add(nk_add(m[1], m[2]), nk_add(m[3], m[4])), m[0]);
  *y1 = nk_add(nk_add(nk_sub(m[1], m[2]),
                      nk_sub(nk_mul(nk_bcast(0.5f), m[3]), nk_mul(nk_bcast(2.0f), m[4]))),
               m[5]);
}

/* U[xi][m][c] = (G wt[m][c] G^T)[xi] for all M x C kernels (wt is
 * [M][C][5][5]), 16 channels c at a time; every thread makes its own copy
 * (a few microseconds: no barrier, nothing shared) */
static __attribute__((noinline, unused)) void nk_wino_weights(float *restrict U,
                                                              const float *restrict wt, int M,
                                                              int C) {
  static const float gm[NK_WA][5] = {
      {1.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {1.0f / 3, 1.0f / 3, 1.0f / 3, 1.0f / 3, 1.0f / 3},
      {-1.0f / 3, 1.0f / 3, -1.0f / 3, 1.0f / 3, -1.0f / 3},
      {-16.0f / 15, -8.0f / 15, -4.0f / 15, -2.0f / 15, -1.0f / 15},
      {1.0f / 15, -2.0f / 15, 4.0f / 15, -8.0f / 15, 16.0f / 15},
      {0.0f, 0.0f, 0.0f, 0.0f, 1.0f}};
  float st[25][16], t[NK_WA][5][16], u[16];
  for (int m = 0; m < M; m++)
    for (int c0 = 0; c0 < C; c0 += 16) {
      int nc = nk_min(16, C - c0);
      for (int l = 0; l < 16; l++)
        for (int k = 0; k < 25; k++) st[k][l] = l < nc ? wt[((size_t)m * C + c0 + l) * 25 + k] : 0.0f;
      /* t = G w (over kernel rows), then t G^T (over kernel columns) */
      for (int x = 0; x < NK_WA; x++)
        for (int kw = 0; kw < 5; kw++) nk_wino_comb16(t[x][kw], gm[x], 5, st[kw], 5 * 16);
      for (int x = 0; x < NK_WA; x++)
        for (int y = 0; y < NK_WA; y++) {
          nk_wino_comb16(u, gm[y], 5, t[x][0], 16);
          memcpy(U + ((size_t)(x * NK_WA + y) * M + m) * C + c0, u, (size_t)nc * sizeof(float));
        }
    }
}

/* V[xi][c][t] (rows of cols, planes nk_wino_xs apart) for the g images from n0: per channel,
 * each row of V (R, 36 columns for 16 tiles) split into its even and odd
 * columns by lane moves (the 6 values of 16 neighbouring tiles: columns
 * 2t .. 2t+5), transformed along the row into Z, then each tile row's 6 rows of
 * Z transformed down the columns.  msk, act, alpha gate V as in nk_fill_b.
 * The columns past the group's tiles are zero (computed, then dropped). */
NK_INLINE void nk_wino_fill(float *restrict V, int cols, float *restrict Z, float *restrict R,
                            nk_conv d, const float *src, const float *msk, int act, float alpha,
                            int n0, int g) {
  int TH = nk_wino_th(d), TW = nk_wino_tw(d), T = TH * TW, Hz = 2 * TH + 4;
  size_t xs = nk_wino_xs(d.C, cols);
  for (int gi = 0; gi < g; gi++)
    for (int c = 0; c < d.C; c++)
      for (int tx0 = 0; tx0 < TW; tx0 += 16) {
        for (int r = 0; r < Hz; r++) {
          const float *s = nk_srow(d, src, n0 + gi, c, r);
          const float *m = s && msk ? msk + (s - src) : NULL;
          if (!s) { /* padding: its transform is +0 */
            for (int x = 0; x < NK_WA; x++) nk_store(Z + (r * NK_WA + x) * 16, nk_zero());
            continue;
          }
          nk_vrow(R, s, m, act, alpha, 36, 2 * tx0, 1, d.pl, 1, d.Ws);
          nk_v r0 = nk_load(R), r1 = nk_load(R + 16), r2 = nk_load(R + 2), r3 = nk_load(R + 18);
          nk_v r4 = nk_load(R + 4), r5 = nk_load(R + 20), z[NK_WA];
          nk_wino_bt(z, nk_even(r0, r1), nk_odd(r0, r1), nk_even(r2, r3), nk_odd(r2, r3),
                     nk_even(r4, r5), nk_odd(r4, r5));
          for (int x = 0; x < NK_WA; x++) nk_store(Z + (r * NK_WA + x) * 16, z[x]);
        }
        uint32_t lanes = nk_lanes(TW - tx0);
        for (int ty = 0; ty < TH; ty++) {
          float *vt = V + (size_t)c * cols + gi * T + ty * TW + tx0;
          const float *zt = Z + 2 * ty * NK_WA * 16;
          for (int xj = 0; xj < NK_WA; xj++) {
            nk_v v[NK_WA];
            nk_wino_bt(v, nk_load(zt + xj * 16), nk_load(zt + (NK_WA + xj) * 16),
                       nk_load(zt + (2 * NK_WA + xj) * 16), nk_load(zt + (3 * NK_WA + xj) * 16),
                       nk_load(zt + (4 * NK_WA + xj) * 16), nk_load(zt + (5 * NK_WA + xj) * 16));
            for (int xi = 0; xi < NK_WA; xi++)
              nk_store_mask(vt + (xi * NK_WA + xj) * xs, lanes, v[xi]);
          }
        }
      }
  if (g * T < cols)
    for (int xi = 0; xi < NK_WXI; xi++)
      for (int c = 0; c < d.C; c++)
        nk_store_mask(V + xi * xs + (size_t)c * cols + g * T, nk_lanes(cols - g * T), nk_zero());
}

/* Rows m0 .. m0+mr of tiles t0 .. t0+16*nv: the 36 GEMMs into Mx
 * ([xi][NK_MR][NK_NR]) here, then (nk_wino_out) A^T Mx A, bias and
 * activation, stored at each tile's place (off: the top-left output, from
 * image n0; the last row or column of an odd-sized output dropped).  nt:
 * the group's tiles. */
NK_INLINE void nk_wino_gemm(float *restrict Mx, const float *U, const float *V, nk_conv d,
                            int cols, int m0, const int mr, int t0, const int nv) {
  if (mr < 1 || mr > NK_MR || nv < 1 || nv > NK_NV) __builtin_unreachable();
  size_t xs = nk_wino_xs(d.C, cols);
  for (int xi = 0; xi < NK_WXI; xi++) {
    nk_v acc[NK_MR * NK_NV];
    NK_UNROLL for (int i = 0; i < NK_MR * NK_NV; i++) acc[i] = nk_zero();
    nk_kernel(acc, mr, 1, nv, U + ((size_t)xi * d.M + m0) * d.C, d.C, 0,
              V + xi * xs + t0, 0xFFFF, 1, 0, 0, 1, 0, 0, d.C, 1, cols);
    NK_UNROLL for (int u = 0; u < mr; u++)
      NK_UNROLL for (int j = 0; j < nv; j++)
        nk_store(Mx + ((size_t)xi * NK_MR + u) * NK_NR + 16 * j, acc[u * nv + j]);
  }
}

/* The output transform of nk_wino_gemm's tile: one copy (the tile's
 * shape as variables) for all of its shapes */
NK_INLINE void nk_wino_out(float *out, const float *restrict Mx, const int32_t *off,
                           const float *bias, int act, float alpha, nk_conv d, int nt, int m0,
                           int mr, int t0, int nv) {
  size_t HW = (size_t)d.Ho * d.Wo;
  int T = nk_wino_th(d) * nk_wino_tw(d), TW = nk_wino_tw(d);
  int even = !(d.Ho & 1) && !(d.Wo & 1);
  for (int u = 0; u < mr; u++) {
    float *plane = out + (size_t)(m0 + u) * HW;
    nk_v bv = nk_bcast(bias ? bias[m0 + u] : 0.0f);
    for (int j = 0; j < nv && t0 + 16 * j < nt; j++) {
      /* s[b][xi] = (Mx A)[xi][b], then Y[a][b] = (A^T s)[a][b] */
      nk_v s[2][NK_WA], y[2][2];
      const float *mp = Mx + (size_t)u * NK_NR + 16 * j;
      for (int xi = 0; xi < NK_WA; xi++) {
        nk_v mm[NK_WA];
        for (int xj = 0; xj < NK_WA; xj++)
          mm[xj] = nk_load(mp + (size_t)(xi * NK_WA + xj) * NK_MR * NK_NR);
        nk_wino_at(&s[0][xi], &s[1][xi], mm);
      }
      nk_wino_at(&y[0][0], &y[1][0], s[0]);
      nk_wino_at(&y[0][1], &y[1][1], s[1]);
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
          if (bias) y[a][b] = nk_add(y[a][b], bv);
          y[a][b] = nk_act(y[a][b], act, alpha);
        }
      int q0 = t0 + 16 * j, n = nk_min(16, nt - q0);
      if (even && TW >= 8) {
        /* each output row's two columns interleaved (32 lanes), stored by
         * the run of lanes whose tiles share a tile row: two compressing
         * stores per output row and run (shorter rows, as conv3's 3
         * tiles, store faster lane by lane) */
        nk_v z[2][2];
        for (int a = 0; a < 2; a++)
          z[a][0] = nk_zip_lo(y[a][0], y[a][1]), z[a][1] = nk_zip_hi(y[a][0], y[a][1]);
        for (int l0 = 0, l1; l0 < n; l0 = l1) {
          l1 = nk_min(n, l0 + TW - (q0 + l0) % TW);
          uint64_t m = ((1ull << 2 * l1) - 1) & ~((1ull << 2 * l0) - 1);
          uint32_t lo = (uint32_t)(m & 0xFFFF), hi = (uint32_t)(m >> 16);
          for (int a = 0; a < 2; a++) {
            float *p = plane + off[q0 + l0] + (size_t)a * d.Wo;
            nk_store_compress(p, lo, z[a][0]);
            nk_store_compress(p + __builtin_popcount(lo), hi, z[a][1]);
          }
        }
        continue;
      }
      float o[4][16];
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) nk_store(o[a * 2 + b], y[a][b]);
      if (even) {
        for (int l = 0; l < n; l++) {
          float *p = plane + off[q0 + l];
          p[0] = o[0][l], p[1] = o[1][l], p[d.Wo] = o[2][l], p[d.Wo + 1] = o[3][l];
        }
        continue;
      }
      for (int l = 0; l < n; l++) {
        float *p = plane + off[q0 + l];
        int r = (q0 + l) % T, right = 2 * (r % TW) + 1 < d.Wo, below = 2 * (r / TW) + 1 < d.Ho;
        p[0] = o[0][l];
        if (right) p[1] = o[1][l];
        if (below) p[d.Wo] = o[2][l];
        if (right && below) p[d.Wo + 1] = o[3][l];
      }
    }
  }
}

/* nk_engine_team's work by Winograd (nk_wino_take): the same contract, and
 * groups of at most G images (nk_wino_group) handed out the same way.
 * Specialized to each convolution's sizes, as the engine is: one copy for
 * all (sizes as variables) ran mnist_cnn's conv2 forward 4.5 -> 5.7 ms.
 * What needs no sizes is compiled once per unit (nk_wino_weights), and the
 * output transform once per site, not once per GEMM tile shape: mnist_cnn's
 * trainer compiles in 7.5 s (gcc -O3; 11.1 s before, 5.5 s without
 * Winograd). */
NK_INLINE void nk_wino_team(float *out, const float *src, const float *msk, const float *wt,
                            const float *bias, int act, float alpha, char *tscratch,
                            size_t tstride, nk_conv d, nk_epi e, int Gmax) {
  int tid = nk_tid(), nthr = nk_nthr();
  nk_wlayout L = nk_wino_layout(d, Gmax);
  char *mine = tscratch + (size_t)tid * tstride;
  float *U = (float *)(mine + L.U), *V = (float *)(mine + L.V), *Mx = (float *)(mine + L.Mx);
  float *Z = (float *)(mine + L.Z), *R = (float *)(mine + L.R);
  int32_t *off = (int32_t *)(mine + L.off);
  nk_wino_weights(U, wt, d.M, d.C);
  int G = nk_team_group(d.N, Gmax, nthr);
  int TW = nk_wino_tw(d), T = nk_wino_th(d) * TW, ngroups = nk_cdiv(d.N, G), filled_g = -1;
  int oact = msk ? NNCC_ACT_NONE : act;
  size_t img = (size_t)d.M * d.Ho * d.Wo;
  NK_DYNAMIC for (int gr = 0; gr < ngroups; gr++) {
    int n0 = gr * G, g = nk_min(G, d.N - n0), nt = g * T, cols = nk_wino_cols(d, g);
    nk_wino_fill(V, cols, Z, R, d, src, msk, act, alpha, n0, g);
    if (g != filled_g) {
      for (int q = 0; q < nt; q++)
        off[q] = (int32_t)((size_t)(q / T) * img + (q % T / TW) * 2 * d.Wo + (q % TW) * 2);
      filled_g = g;
    }
    float *o = out + (size_t)n0 * img;
    for (int t0 = 0; t0 < cols; t0 += NK_NR) {
      int nv = nk_min(NK_NV, (cols - t0) / 16);
      for (int m0 = 0; m0 < d.M; m0 += NK_MR) {
        int mr = nk_min(NK_MR, d.M - m0);
        if (mr == NK_MR && nv == NK_NV)
          nk_wino_gemm(Mx, U, V, d, cols, m0, NK_MR, t0, NK_NV);
        else if (mr == NK_MR && nv == 1)
          nk_wino_gemm(Mx, U, V, d, cols, m0, NK_MR, t0, 1);
        else if (NK_NV > 2 && mr == NK_MR && nv == 2)
          nk_wino_gemm(Mx, U, V, d, cols, m0, NK_MR, t0, NK_NV > 2 ? 2 : 1);
        else
          nk_wino_gemm(Mx, U, V, d, cols, m0, mr, t0, nv);
        nk_wino_out(o, Mx, off, bias, oact, alpha, d, nt, m0, mr, t0, nv);
      }
    }
    nk_engine_epilogue(e, d, o, n0, g);
  }
}

/* out[N][M][Ho][Wo] = act(conv(V, wt) + bias); called by all threads;
 * each thread takes whole groups of images as it comes free. With
 * msk (backward data) (act, alpha) gates V by msk instead, and out is the
 * plain convolution. */
NK_INLINE void nk_engine_team(float *out, const float *src, const float *msk, const float *wt,
                              const float *bias, int act, float alpha, char *tscratch,
                              size_t tstride, nk_conv d, nk_epi e) {
  nk_eplan p = nk_engine_plan(d);
  int tid = nk_tid(), nthr = nk_nthr();
  if (tid >= nthr) return;
  if (p.mode == NK_WINO) {
    nk_wino_team(out, src, msk, wt, bias, act, alpha, tscratch, tstride, d, e, p.G);
    return;
  }
  char *mine = tscratch + (size_t)tid * tstride;
  float *B = (float *)mine;
  nk_seg *segs = (nk_seg *)(mine + nk_align64(nk_bfloats(d, p.mode, p.G) * sizeof(float)));
  int G = nk_team_group(d.N, p.G, nthr);
  uint8_t *cnt = (uint8_t *)((char *)segs + nk_align64((size_t)nk_cdiv(nk_qspan(d, p.mode, G), NK_NR) *
                                                          NK_NV * p.S * sizeof(nk_seg)));
  int ngroups = nk_cdiv(d.N, G), filled_g = -1, oact = msk ? NNCC_ACT_NONE : act;
  size_t img = (size_t)d.M * d.Ho * d.Wo;
  /* groups handed out as threads come free (NK_DYNAMIC) */
  NK_DYNAMIC for (int gr = 0; gr < ngroups; gr++) {
    int n0 = gr * G, g = nk_min(G, d.N - n0);
    nk_fill_b(B, d, p, src, msk, act, alpha, n0, g);
    if (g != filled_g) nk_fill_segs(segs, cnt, d, p, g), filled_g = g;
    int ntile = nk_cdiv(nk_qspan(d, p.mode, g), NK_NR);
    float *o = out + (size_t)n0 * img;
    for (int m0 = 0; m0 < d.M; m0 += NK_MR)
      for (int t = 0; t < ntile; t++) {
        /* a direct tile may hold no output at all (the rows of V below the
         * last output row): skip it */
        int any = 0;
        for (int j = 0; j < NK_NV; j++) any |= cnt[t * NK_NV + j];
        if (!any) continue;
        if (m0 + NK_MR <= d.M)
          nk_engine_tile(o, wt, bias, oact, alpha, B, segs, cnt, d, p, g, m0, NK_MR, t);
        else
          nk_engine_tile(o, wt, bias, oact, alpha, B, segs, cnt, d, p, g, m0, d.M % NK_MR, t);
      }
    nk_engine_epilogue(e, d, o, n0, g);
  }
}

NK_INLINE nk_conv nk_conv_fwd_desc(int N, int Ci, int H, int W, int Co, int Kh, int Kw, int sh,
                                   int sw, int ph, int pw) {
  nk_conv d;
  d.N = N, d.C = Ci, d.Hs = H, d.Ws = W, d.dh = 1, d.dw = 1, d.pt = ph, d.pl = pw;
  d.Hv = H + 2 * ph, d.Wv = W + 2 * pw;
  d.M = Co, d.Kh = Kh, d.Kw = Kw, d.sh = sh, d.sw = sw;
  d.Ho = (d.Hv - Kh) / sh + 1, d.Wo = (d.Wv - Kw) / sw + 1;
  return d;
}

/* backward-data as a forward convolution: V = dy with stride-1 zeros
 * inserted, offset by K-1-p; weights flipped and transposed; output x-sized */
NK_INLINE nk_conv nk_conv_bwd_desc(int N, int Ci, int H, int W, int Co, int Kh, int Kw, int sh,
                                   int sw, int ph, int pw) {
  nk_conv f = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw), d;
  d.N = N, d.C = Co, d.Hs = f.Ho, d.Ws = f.Wo, d.dh = sh, d.dw = sw;
  d.pt = Kh - 1 - ph, d.pl = Kw - 1 - pw;
  d.Hv = H + Kh - 1, d.Wv = W + Kw - 1;
  d.M = Ci, d.Kh = Kh, d.Kw = Kw, d.sh = 1, d.sw = 1, d.Ho = H, d.Wo = W;
  return d;
}

/* ---------------------------------------------------------------------------
 * conv2d forward.
 *   y[N][Co][Ho][Wo] = conv(x[N][Ci][H][W], w[Co][Ci][Kh][Kw]) + b[Co]
 * Ho = (H + 2ph - Kh)/sh + 1, Wo likewise (PyTorch, floor). b may be NULL.
 * Stores act(y) (NNCC_ACT_*, alpha the leaky slope). Parallel over groups
 * of images.
 */
static inline size_t nncc_conv2d_forward_scratch(int N, int Ci, int H, int W, int Co, int Kh,
                                                 int Kw, int sh, int sw, int ph, int pw, int nthr) {
  nk_conv d = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  return (size_t)nthr * nk_engine_plan(d).thread_bytes;
}

/* The engine's forward with the epilogue e (nk_epi) */
NK_INLINE void nk_conv2d_forward_epi_team(float *restrict y, const float *restrict x,
                                          const float *restrict w, const float *restrict b,
                                          void *scratch, int N, int Ci, int H, int W, int Co,
                                          int Kh, int Kw, int sh, int sw, int ph, int pw, int act,
                                          float alpha, nk_epi e) {
  nk_conv d = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  nk_engine_team(y, x, NULL, w, b, act, alpha, (char *)scratch, nk_engine_plan(d).thread_bytes,
                 d, e);
}
/* pstats: for a conv that a batch norm reads, in training (passes/fuse.c),
 * its epilogue also writes each output plane's statistics,
 * pstats[n][Co][2] (nk_plane_stats), where the batch norm reads them (its
 * planes argument); NULL: none (nncc_conv2d_forward_team). */
NK_INLINE void nncc_conv2d_forward_stats_team(float *restrict y, double *restrict pstats,
                                              const float *restrict x, const float *restrict w,
                                              const float *restrict b, void *scratch, int N,
                                              int Ci, int H, int W, int Co, int Kh, int Kw, int sh,
                                              int sw, int ph, int pw, int act, float alpha) {
  nk_conv2d_forward_epi_team(y, x, w, b, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, act,
                             alpha, (nk_epi){.pstats = pstats});
}
/* py: for a conv that a max pool reads (passes/fuse.c), its epilogue also
 * writes the pool's output, py[N][Co][pHo][pWo], by the pool's own
 * per-plane kernel (nk_maxpool_plane): the same bits as
 * nncc_maxpool2d_forward_team on y, with no pass over y and no barrier. */
NK_INLINE void nncc_conv2d_forward_pool_team(float *restrict y, float *restrict py,
                                             const float *restrict x, const float *restrict w,
                                             const float *restrict b, void *scratch, int N,
                                             int Ci, int H, int W, int Co, int Kh, int Kw, int sh,
                                             int sw, int ph, int pw, int act, float alpha,
                                             int pKh, int pKw, int psh, int psw, int pph, int ppw,
                                             int pHo, int pWo) {
  nk_conv2d_forward_epi_team(y, x, w, b, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, act,
                             alpha,
                             (nk_epi){.pool = py, .kh = pKh, .kw = pKw, .sh = psh, .sw = psw,
                                      .ph = pph, .pw = ppw, .ho = pHo, .wo = pWo});
}
NK_INLINE void nncc_conv2d_forward_team(float *restrict y, const float *restrict x,
                                        const float *restrict w, const float *restrict b,
                                        void *scratch, int N, int Ci, int H, int W, int Co,
                                        int Kh, int Kw, int sh, int sw, int ph, int pw, int act,
                                        float alpha) {
  nk_conv2d_forward_epi_team(y, x, w, b, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, act,
                             alpha, (nk_epi){0});
}

static inline void nncc_conv2d_forward(float *restrict y, const float *restrict x,
                                       const float *restrict w, const float *restrict b,
                                       void *scratch, int N, int Ci, int H, int W, int Co, int Kh,
                                       int Kw, int sh, int sw, int ph, int pw, int act,
                                       float alpha) {
#pragma omp parallel
  nncc_conv2d_forward_team(y, x, w, b, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, act,
                           alpha);
}

/* ---------------------------------------------------------------------------
 * conv2d backward. Given dy[N][Co][Ho][Wo] (gated by act's derivative when
 * ymask, the saved activated y, is not NULL and act is not NONE):
 *   dx[N][Ci][H][W]     = grad wrt x   (skipped when dx is NULL)
 *   dw[Co][Ci][Kh][Kw]  = grad wrt w   (overwritten, not accumulated)
 *   db[Co]              = sum of dy    (skipped when db is NULL)
 * dx is a forward convolution of dy (parallel over images); dw is a GEMM
 * that reduces over batch and output pixels, parallel over tiles of dw:
 * each thread runs the whole batch for its own tiles.
 */

/* How dw is tiled: tiles are (ci, a run of rh kernel rows, NV*16 output
 * channels); the tile is rh*Kw*NV accumulators, at most NK_ACC when Kw
 * allows (a wider kernel row spills: Kw accumulators at least).
 * Where dW takes more than NNCC_DW_PASS_BYTES, or an image gives each
 * accumulator fewer than NNCC_DW_PASS_TERMS terms, a tile runs IB images
 * of a group in one pass, its accumulators in registers throughout: IB
 * divides the group size S, and the pass's padded x and transposed dy (IB
 * of each, per thread) take at most NNCC_DW_PASS_BYTES (one image at
 * least).
 * Where the output is small (vgg16's 4x4 and 2x2 layers) a single image is
 * a short reduction, and loading and storing the tiles between images
 * (megabytes of dw) would bound the layer by memory.  The bits are those
 * of one image a pass: each accumulator is one FMA chain in (image, oh,
 * ow) order either way. */
#ifndef NNCC_DW_PASS_BYTES
#define NNCC_DW_PASS_BYTES (512 * 1024)
#endif
#ifndef NNCC_DW_PASS_TERMS
#define NNCC_DW_PASS_TERMS 128
#endif
/* Where dW is too large for a copy per group (NNCC_DW_GROUPS_BYTES), each
 * group still loads and stores all of dW's tree once, which bounds a layer
 * whose group has few terms per accumulator (S*Ho*Wo at most
 * NNCC_DW_BATCH_TERMS: vgg16's 4x4 and 2x2 layers) by memory.  There, when
 * the whole batch's padded x and transposed dy take at most
 * NNCC_DW_BATCH_BYTES, the team makes them ready once (shared) and each
 * thread runs its tiles in blocks whose tree levels take
 * NNCC_DW_BLOCK_BYTES, each block over every group, so the tree stays in
 * L2 (nk_dw_team). */
#ifndef NNCC_DW_BATCH_TERMS
#define NNCC_DW_BATCH_TERMS 256
#endif
#ifndef NNCC_DW_BATCH_BYTES
#define NNCC_DW_BATCH_BYTES (8 * 1024 * 1024)
#endif
#ifndef NNCC_DW_BLOCK_BYTES
#define NNCC_DW_BLOCK_BYTES (256 * 1024)
#endif
/* a group with few terms per accumulator: dW may run in whole-batch blocks */
NK_INLINE int nk_dw_few_terms(nk_conv f, int S) { return S * f.Ho * f.Wo <= NNCC_DW_BATCH_TERMS; }
typedef struct {
  int Co16, ncv, NV, nch, nkh, RH, IB;
  size_t xbytes, dybytes, thread_bytes;
} nk_dwplan;

NK_INLINE nk_dwplan nk_dw_plan(nk_conv f, int S) {
  nk_dwplan p;
  p.Co16 = nk_cdiv(f.M, 16) * 16;
  p.ncv = p.Co16 / 16;
  p.NV = nk_min(p.ncv, nk_max(1, nk_min(4, NK_ACC / f.Kw)));
  p.nch = nk_cdiv(p.ncv, p.NV);
  int rhmax = nk_max(1, NK_ACC / (f.Kw * p.NV));
  p.nkh = nk_cdiv(f.Kh, rhmax);
  p.RH = nk_cdiv(f.Kh, p.nkh);
  p.nkh = nk_cdiv(f.Kh, p.RH);
  p.xbytes = nk_align64((size_t)f.C * f.Hv * f.Wv * sizeof(float));
  p.dybytes = nk_align64((size_t)f.Ho * f.Wo * p.Co16 * sizeof(float));
  p.IB = 1;
  /* a dW of at most NNCC_DW_PASS_BYTES stays in L2 between images, and one
   * image's inputs in L1 across its tiles; but where an image has fewer
   * than NNCC_DW_PASS_TERMS terms per accumulator, the fewest images that
   * reach it (mnist_cnn's conv3, 36 terms an image: 4 images a pass, 7.2
   * -> 4.5 ms on AVX2; 16 were 20% slower than one) */
  int big = (size_t)f.C * f.Kh * f.Kw * p.Co16 * sizeof(float) > NNCC_DW_PASS_BYTES;
  for (int ib = 2; ib <= S && (big || p.IB * f.Ho * f.Wo < NNCC_DW_PASS_TERMS); ib++)
    if (S % ib == 0 && (size_t)ib * (p.xbytes + p.dybytes) <= NNCC_DW_PASS_BYTES) p.IB = ib;
  p.thread_bytes = (size_t)p.IB * (p.xbytes + p.dybytes);
  return p;
}

/* dwT[k][co] (+)= sum_{i,oh,ow} xv_i[ci][oh*sh+kh][ow*sw+kw] * dyT_i[oh*Wo+ow][co]
 * over one tile, for ib images i of group g (image i's xv and dyT are
 * p.xbytes and p.dybytes after image i-1's): the group's running sum is at
 * level nk_tree_level(g) of dwT (levels `slot` floats apart); `first`
 * starts it from zero, `last` folds it into the tree (nk_tree_fold). */
NK_INLINE void nk_dw_tile(float *dwT, size_t slot, const float *xv, const float *dyT, nk_conv f,
                          nk_dwplan p, int ib, int ci, int kh0, const int rh, int co0,
                          const int nv, int first, int last, int g) {
  nk_v acc[32];
  int KK = f.Kh * f.Kw, lf = nk_tree_level(g);
  if (rh < 1 || nv < 1 || nv > 4 || rh * f.Kw * nv > 32) __builtin_unreachable();
  NK_UNROLL for (int i = 0; i < 32; i++) acc[i] = nk_zero();
  float *work = dwT + (size_t)lf * slot;
  NK_UNROLL for (int r = 0; r < rh * f.Kw; r++) {
    float *row = work + (size_t)(ci * KK + kh0 * f.Kw + r) * p.Co16 + co0;
    NK_UNROLL for (int j = 0; j < nv; j++)
      acc[r * nv + j] = first ? nk_zero() : nk_load(row + 16 * j);
  }
  const float *a = xv + (size_t)kh0 * f.Wv, *b = dyT + co0;
  ptrdiff_t a2 = (ptrdiff_t)(p.xbytes / sizeof(float)), b2 = (ptrdiff_t)(p.dybytes / sizeof(float));
  ptrdiff_t a1 = (ptrdiff_t)f.sh * f.Wv, b1 = (ptrdiff_t)f.Wo * p.Co16;
  /* one vector wide, gcc's unrolled output row spilled the AVX2 tile
   * (mnist_cnn's conv3: 6.5 -> 4.5 ms with 4 images a pass); two wide,
   * as vgg16's 3x3 layers, it was 2-4% faster */
  if (nv == 1)
    nk_kernel_rolled(acc, rh, f.Kw, nv, a, f.Wv, 1, b, 0xFFFF, ib, a2, b2, f.Ho, a1, b1, f.Wo, f.sw,
                     p.Co16);
  else
    nk_kernel(acc, rh, f.Kw, nv, a, f.Wv, 1, b, 0xFFFF, ib, a2, b2, f.Ho, a1, b1, f.Wo, f.sw, p.Co16);
  NK_UNROLL for (int r = 0; r < rh * f.Kw; r++) {
    size_t off = (size_t)(ci * KK + kh0 * f.Kw + r) * p.Co16 + co0;
    NK_UNROLL for (int j = 0; j < nv; j++) {
      nk_v v = acc[r * nv + j];
      if (last)
        for (int l = 0; l < lf; l++) v = nk_add(nk_load(dwT + (size_t)l * slot + off + 16 * j), v);
      nk_store(work + off + 16 * j, v);
    }
  }
}

/* dyT[q][co] = dy[co][q], gated by the mask m (act, alpha) when not NULL,
 * for rows q0..q0+qn of dyT and co in [co_lo, co_hi) */
NK_INLINE void nk_transpose_rows(float *restrict dyT, int ld, const float *restrict dy,
                                 const float *restrict m, int act, float alpha, int P, int q0,
                                 const int qn, int co_lo, int co_hi) {
  float *dq = dyT + (size_t)q0 * ld;
  /* 16 x 16 blocks by nk_transpose16, 16 loads and 16 stores of whole
   * vectors (and the gate, lane by lane, where it is ReLU's); the rest one
   * element at a time */
  int qv = m && act != NNCC_ACT_RELU ? 0 : qn / 16 * 16;
  int cv = qv ? co_lo + (co_hi - co_lo) / 16 * 16 : co_lo;
  for (int c0 = co_lo; c0 < cv; c0 += 16)
    for (int j0 = 0; j0 < qv; j0 += 16) {
      nk_v r[16];
      NK_UNROLL for (int i = 0; i < 16; i++) {
        size_t off = (size_t)(c0 + i) * P + q0 + j0;
        r[i] = m ? nk_gate(nk_load(dy + off), nk_load(m + off)) : nk_load(dy + off);
      }
      nk_transpose16(r);
      NK_UNROLL for (int i = 0; i < 16; i++) nk_store(dq + (size_t)(j0 + i) * ld + c0, r[i]);
    }
  for (int co = co_lo; co < co_hi; co++) {
    int j0 = co < cv ? qv : 0;
    if (j0 >= qn) continue;
    const float *src = dy + (size_t)co * P + q0;
    /* scalar stores: clang vectorizes these loops into scatters, slower
     * than scalar moves on AMD Zen 4 (a third of the weight gradient) */
    if (m) {
      const float *ms = m + (size_t)co * P + q0;
      NK_SCALAR_LOOP for (int j = j0; j < qn; j++)
        dq[(size_t)j * ld + co] = nk_actgrad1(src[j], ms[j], act, alpha);
    } else {
      NK_SCALAR_LOOP for (int j = j0; j < qn; j++) dq[(size_t)j * ld + co] = src[j];
    }
  }
}

/* Images n..n+ib-1 made ready for the tiles: each image's padded planes
 * ci_lo..ci_hi of x into xv, its dy's channels [co_lo, co_hi) transposed
 * (and gated) into dyT, image i at xv + i*p.xbytes and dyT + i*p.dybytes. */
NK_INLINE void nk_dw_prep(char *xv, char *dyT, const float *x, const float *dy,
                          const float *ymask, int act, float alpha, nk_conv f, nk_dwplan p, int n,
                          int ib, int ci_lo, int ci_hi, int co_lo, int co_hi) {
  int P = f.Ho * f.Wo;
  size_t plane = (size_t)f.Hv * f.Wv;
  for (int i = 0; i < ib; i++) {
    float *xi = (float *)(xv + i * p.xbytes), *di = (float *)(dyT + i * p.dybytes);
    for (int c = ci_lo; c <= ci_hi; c++)
      for (int r = 0; r < f.Hv; r++)
        nk_vrow(xi + (size_t)c * plane + (size_t)r * f.Wv, nk_srow(f, x, n + i, c, r), NULL,
                NNCC_ACT_NONE, 0.0f, f.Wv, 0, 1, f.pl, 1, f.Ws);
    /* dyT[p][co] = gated dy[n][co][p] */
    const float *dyn = dy + (size_t)(n + i) * f.M * P;
    const float *mn = ymask ? ymask + (size_t)(n + i) * f.M * P : NULL;
    /* column by column when all of dyT fits in L1; else in blocks of 16
     * rows, which stay in L1 while each column is written (column by
     * column over all of it, the writes would miss a line each) */
    if ((size_t)P * p.Co16 <= 4096) /* all of dyT fits in L1 */
      nk_transpose_rows(di, p.Co16, dyn, mn, act, alpha, P, 0, P, co_lo, co_hi);
    else
      for (int q0 = 0; q0 < P; q0 += 16)
        if (q0 + 16 <= P)
          nk_transpose_rows(di, p.Co16, dyn, mn, act, alpha, P, q0, 16, co_lo, co_hi);
        else
          nk_transpose_rows(di, p.Co16, dyn, mn, act, alpha, P, q0, P - q0, co_lo, co_hi);
  }
}

/* The terms of ib images made ready at xv and dyT (nk_dw_prep), of group g
 * at its tree level (first: they start the group; last: they end it, and
 * it is folded into the tree), in tiles [lo, hi) (in (output-channel
 * chunk, ci, kernel-row run) order), each tile over all ib images. */
NK_INLINE void nk_dw_tiles(float *dwT, size_t slot, float *dbT, size_t dbslot, const char *xv,
                           const char *dyT, nk_conv f, nk_dwplan p, int ib, int g, int first,
                           int last, int lo, int hi) {
  int per_cc = f.C * p.nkh, lf = nk_tree_level(g), P = f.Ho * f.Wo;
  size_t plane = (size_t)f.Hv * f.Wv;
  for (int t = lo; t < hi; t++) {
    int cc = t / per_cc, ci = t % per_cc / p.nkh, kc = t % p.nkh;
    int kh0 = kc * p.RH, co0 = cc * p.NV * 16;
    const float *xc = (const float *)xv + (size_t)ci * plane, *dc = (const float *)dyT;
    int full_kh = kh0 + p.RH <= f.Kh, full_co = cc < p.nch - 1 || p.ncv % p.NV == 0;
    int rt = f.Kh - (p.nkh - 1) * p.RH, vt = p.ncv - (p.nch - 1) * p.NV;
    if (full_kh && full_co)
      nk_dw_tile(dwT, slot, xc, dc, f, p, ib, ci, kh0, p.RH, co0, p.NV, first, last, g);
    else if (full_kh)
      nk_dw_tile(dwT, slot, xc, dc, f, p, ib, ci, kh0, p.RH, co0, vt, first, last, g);
    else if (full_co)
      nk_dw_tile(dwT, slot, xc, dc, f, p, ib, ci, kh0, rt, co0, p.NV, first, last, g);
    else nk_dw_tile(dwT, slot, xc, dc, f, p, ib, ci, kh0, rt, co0, vt, first, last, g);
    if (ci == 0 && kc == 0 && dbT) {
      int nv = full_co ? p.NV : vt;
      for (int j = 0; j < nv; j++) {
        float *work = dbT + (size_t)lf * dbslot + co0 + 16 * j;
        nk_v s = first ? nk_zero() : nk_load(work);
        for (int i = 0; i < ib; i++) {
          const float *di = (const float *)(dyT + i * p.dybytes) + co0 + 16 * j;
          for (int q = 0; q < P; q++) s = nk_add(s, nk_load(di + (size_t)q * p.Co16));
        }
        if (last)
          for (int l = 0; l < lf; l++) s = nk_add(nk_load(dbT + (size_t)l * dbslot + co0 + 16 * j), s);
        nk_store(work, s);
      }
    }
  }
}

/* dwT and dbT (when not NULL) at tree level log2(N/S): the grouped sums
 * over the batch.  Two ways to split the work, with the same bits:
 *  - by tiles: each thread runs the whole batch for its own tiles, folding
 *    each group into the tree as it ends;
 *  - by groups (p.gsplit, when the team is no larger than the group count):
 *    each thread runs all tiles for whole groups, each group's sum in a
 *    buffer of its own (gbuf: N/S slots of gslot floats, db's after them),
 *    then the team folds the groups' sums in group order, element by
 *    element, as the tiles do.  Each image's dy is transposed once, not
 *    once per thread whose tiles need its channels (all threads, when the
 *    output channels are one chunk). */
/* whether nk_dw_team splits by groups: a copy of dW per group (gbuf), and
 * a team no larger than the group count */
NK_INLINE int nk_dw_by_groups(const float *gbuf, nk_conv f, int S) {
  return gbuf && nk_nthr() <= f.N / S;
}

NK_INLINE void nk_dw_team(float *dwT, size_t slot, float *dbT, size_t dbslot, float *gbuf,
                          size_t gslot, char *batch, const float *x, const float *dy,
                          const float *ymask, int act, float alpha, char *tscratch,
                          size_t tstride, nk_conv f, int S) {
  nk_dwplan p = nk_dw_plan(f, S);
  int tid = nk_tid(), nthr = nk_nthr(), G = f.N / S, by_groups = nk_dw_by_groups(gbuf, f, S);
  int per_cc = f.C * p.nkh, ntiles = p.nch * per_cc;
  /* (the terms test again, where the compiler sees the shapes: a layer
   * that cannot run in blocks does not compile their tiles) */
  if (batch && nk_dw_few_terms(f, S)) {
    /* the whole batch made ready by the team, then each thread's tiles in
     * blocks whose tree levels stay in L2, each block over all groups */
    char *bx = batch, *bd = batch + (size_t)f.N * p.xbytes;
#pragma omp for schedule(static)
    for (int n = 0; n < f.N; n++) {
      if (p.Co16 != f.M) memset(bd + n * p.dybytes, 0, p.dybytes);
      nk_dw_prep(bx + n * p.xbytes, bd + n * p.dybytes, x, dy, ymask, act, alpha, f, p, n, 1, 0,
                 f.C - 1, 0, f.M);
    }
    int lo, hi, tb = nk_max(1, (int)(NNCC_DW_BLOCK_BYTES / (NK_ACC * 64 * (nk_log2(G) + 1))));
    nk_split(ntiles, tid, nthr, &lo, &hi);
    for (int b0 = lo; b0 < hi; b0 += tb)
      for (int g = 0; g < G; g++)
        nk_dw_tiles(dwT, slot, dbT, dbslot, bx + (size_t)g * S * p.xbytes,
                    bd + (size_t)g * S * p.dybytes, f, p, S, g, 1, 1, b0, nk_min(hi, b0 + tb));
    return;
  }
  char *xv = tscratch + (size_t)tid * tstride, *dyT = xv + p.IB * p.xbytes;
  float *gdb = by_groups ? gbuf + (size_t)G * gslot : NULL;
  /* by groups: all tiles, all of dy's channels, whole groups handed out
   * as threads come free; by tiles: tiles [lo, hi) in (output-channel chunk,
   * ci, kernel-row run) order -- a thread's run of tiles spans few chunks,
   * and it transposes only their columns of dy -- over the whole batch */
  int lo = 0, hi = ntiles, ci_lo = 0, ci_hi = f.C - 1, co_lo = 0, co_hi = f.M;
  if (!by_groups) {
    nk_split(ntiles, tid, nthr, &lo, &hi);
    if (lo >= hi) return;
    int cc_lo = lo / per_cc, cc_hi = (hi - 1) / per_cc;
    ci_lo = cc_lo == cc_hi ? lo % per_cc / p.nkh : 0;
    ci_hi = cc_lo == cc_hi ? (hi - 1) % per_cc / p.nkh : f.C - 1;
    co_lo = cc_lo * p.NV * 16, co_hi = nk_min(f.M, (cc_hi + 1) * p.NV * 16);
    memset(dyT, 0, p.IB * p.dybytes);
    for (int n = 0; n < f.N; n += p.IB) {
      nk_dw_prep(xv, dyT, x, dy, ymask, act, alpha, f, p, n, p.IB, ci_lo, ci_hi, co_lo, co_hi);
      nk_dw_tiles(dwT, slot, dbT, dbslot, xv, dyT, f, p, p.IB, n / S, n % S == 0,
                  (n + p.IB) % S == 0, lo, hi);
    }
    return;
  }
  memset(dyT, 0, p.IB * p.dybytes);
  /* by groups, each group's own sum, at level 0 of its own slot */
  NK_DYNAMIC for (int g = 0; g < G; g++)
    for (int n = g * S; n < (g + 1) * S; n += p.IB) {
      nk_dw_prep(xv, dyT, x, dy, ymask, act, alpha, f, p, n, p.IB, 0, f.C - 1, 0, f.M);
      nk_dw_tiles(gbuf + (size_t)g * gslot, gslot, dbT ? gdb + (size_t)g * dbslot : NULL, dbslot,
                  xv, dyT, f, p, p.IB, 0, n == g * S, 0, 0, ntiles);
    }
}

/* The end of nk_dw_team's split by groups, after a barrier the caller
 * places: the tiles' fold, element by element, group
 * g's sum plus the pending levels below its own, stored at its level (the
 * caller's barrier ends it). */
NK_INLINE void nk_dw_fold_team(float *dwT, size_t slot, float *dbT, size_t dbslot, float *gbuf,
                               size_t gslot, nk_conv f, int S) {
  nk_dwplan p = nk_dw_plan(f, S);
  int G = f.N / S;
  const float *gdb = gbuf + (size_t)G * gslot;
  size_t K = (size_t)f.C * f.Kh * f.Kw * p.Co16, E = K + (dbT ? (size_t)p.Co16 : 0);
#pragma omp for schedule(static) nowait
  for (size_t e = 0; e < E; e++) {
    float *tree = e < K ? dwT + e : dbT + (e - K);
    size_t ts = e < K ? slot : dbslot, gs = e < K ? gslot : dbslot;
    const float *src = e < K ? gbuf + e : gdb + (e - K);
    for (int g = 0; g < G; g++) {
      int lf = nk_tree_level(g);
      float v = src[(size_t)g * gs];
      for (int l = 0; l < lf; l++) v = tree[(size_t)l * ts] + v;
      tree[(size_t)lf * ts] = v;
    }
  }
}

/* Backward-data by GEMM + col2im, for when the transposed convolution would
 * mostly multiply padding (small or strided outputs):
 *   col[(ci,kh,kw)][q] = sum_co w[co][ci][kh][kw] * g[co][q]   (q = image, oh, ow)
 *   dx[n][ci][oh*sh-ph+kh][ow*sw-pw+kw] += col[(ci,kh,kw)][q]   in (kh, kw) order
 * Each thread takes whole groups of images as it comes free. */
typedef struct { int use, G; size_t thread_bytes; } nk_cplan;


NK_INLINE nk_cplan nk_col_plan(nk_conv f) {
  nk_cplan p;
  int P = f.Ho * f.Wo, K = f.C * f.Kh * f.Kw;
  /* the transposed convolution reads (H+Kh-1) x (W+Kw-1) planes of dy */
  double direct = (double)(f.Hs + f.Kh - 1) * (f.Ws + f.Kw - 1);
  /* (never for a data gradient that Winograd computes) */
  p.use = (f.sh != 1 || f.sw != 1 || direct > 1.3 * P) &&
          !nk_wino_take(nk_conv_bwd_desc(f.N, f.C, f.Hs, f.Ws, f.M, f.Kh, f.Kw, f.sh, f.sw, f.pt, f.pl));
  p.G = nk_cols_group(f.N, P, f.M + K);
  size_t ld = nk_cols_ld(p.G * P);
  p.thread_bytes = nk_align64((size_t)f.M * ld * sizeof(float)) + nk_align64((size_t)K * ld * sizeof(float));
  return p;
}

NK_INLINE void nk_col_tile(float *col, const float *w, const float *gb, int K, int Co, int ld, int m0,
                           const int mr, int t) {
  nk_v acc[NK_MR * NK_NV];
  if (mr < 1 || mr > NK_MR) __builtin_unreachable();
  NK_UNROLL for (int i = 0; i < NK_MR * NK_NV; i++) acc[i] = nk_zero();
  nk_kernel(acc, mr, 1, NK_NV, w + m0, 1, 0, gb + t * NK_NR, 0xFFFF, 1, 0, 0, 1, 0, 0, Co, K, ld);
  NK_UNROLL for (int u = 0; u < mr; u++)
    NK_UNROLL for (int j = 0; j < NK_NV; j++)
      nk_store(col + (size_t)(m0 + u) * ld + t * NK_NR + 16 * j, acc[u * NK_NV + j]);
}

/* col2im of one image and channel: x[h][w] = the sum over (kh, kw), in
 * that order, of col[(kh,kw)][oh][ow] where h = oh*sh - pt + kh and
 * w = ow*sw - pl + kw, starting from +0 (cc: the channel's first row).
 * Stride 1: each 16 columns of an x row sum their terms in registers,
 * one masked load per (kh, kw); a lane with no term adds +0, which changes
 * nothing (the sum starts at +0 and so is never -0). */
NK_INLINE void nk_col2im_s1(float *xp, const float *cc, int ld, nk_conv f) {
  /* two rows by two 16-column blocks at a time: four independent chains of
   * adds where one row's 25-add chain had left the adder waiting (mnist_cnn
   * conv2's backward-data) */
  for (int h = 0; h < f.Hs; h += 2)
    for (int w0 = 0; w0 < f.Ws; w0 += 32) {
      nk_v acc[2][2] = {{nk_zero(), nk_zero()}, {nk_zero(), nk_zero()}};
      for (int kh = 0; kh < f.Kh; kh++)
        for (int kw = 0; kw < f.Kw; kw++) {
          const float *ck = cc + (size_t)(kh * f.Kw + kw) * ld;
          NK_UNROLL for (int r = 0; r < 2; r++) {
            int oh = h + r + f.pt - kh;
            if (h + r >= f.Hs || oh < 0 || oh >= f.Ho) continue;
            NK_UNROLL for (int c = 0; c < 2; c++) {
              /* lane l is column w0 + 16c + l, term ow = that + pl - kw */
              int wc = w0 + 16 * c, base = wc + f.pl - kw;
              int lo = nk_max(0, -base), hi = nk_min(nk_min(16, f.Ws - wc), f.Wo - base);
              if (lo >= hi) continue;
              uint32_t m = nk_lanes(hi) & ~nk_lanes(lo);
              acc[r][c] = nk_add(acc[r][c], nk_load_mask(ck + (ptrdiff_t)oh * f.Wo + base, m));
            }
          }
        }
      NK_UNROLL for (int r = 0; r < 2; r++)
        NK_UNROLL for (int c = 0; c < 2; c++)
          if (h + r < f.Hs && w0 + 16 * c < f.Ws)
            nk_store_mask(xp + (size_t)(h + r) * f.Ws + w0 + 16 * c, nk_lanes(f.Ws - w0 - 16 * c),
                          acc[r][c]);
    }
}

/* The same for any stride: x zeroed, then each (kh, kw) term added in
 * place, element by element.  nk_col2im_s1 is faster on AVX-512 only
 * (mnist_cnn's conv2 backward-data: gcc 11.8 -> 10.9 ms, clang 15.2 ->
 * 10.4); with AVX2's masked loads gcc's took 1.7x as long as this. */
NK_INLINE void nk_col2im_rmw(float *xp, const float *cc, int ld, nk_conv f) {
  memset(xp, 0, (size_t)f.Hs * f.Ws * sizeof(float));
  for (int kh = 0; kh < f.Kh; kh++)
    for (int kw = 0; kw < f.Kw; kw++) {
      const float *c = cc + (size_t)(kh * f.Kw + kw) * ld;
      /* ow range with 0 <= ow*sw - pl + kw < Ws */
      int lo = f.pl - kw <= 0 ? 0 : (f.pl - kw + f.sw - 1) / f.sw;
      int last = f.Ws - 1 + f.pl - kw;
      int hi = last < 0 ? 0 : nk_min(f.Wo, last / f.sw + 1);
      for (int oh = 0; oh < f.Ho; oh++) {
        int h = oh * f.sh - f.pt + kh;
        if (h < 0 || h >= f.Hs) continue;
        float *xr = xp + (size_t)h * f.Ws - f.pl + kw;
        const float *cr = c + oh * f.Wo;
        if (f.sw == 1)
#ifdef __clang__
          /* clang 14 makes a slow loop of the scalar form (gcc a faster
           * one of it than of this): 16 columns at a time, the same adds
           * element by element */
          for (int ow = lo; ow < hi; ow += 16) {
            uint32_t m = nk_lanes(hi - ow);
            nk_store_mask(xr + ow, m, nk_add(nk_load_mask(xr + ow, m), nk_load_mask(cr + ow, m)));
          }
#else
          /* a plain loop: vectorized, its vector constants stayed live
           * through the whole kernel and gcc spilled five of the AVX2 GEMM
           * tile's twelve accumulators (mnist_cnn's conv3 backward-data
           * 1.8x slower) */
          NK_SCALAR_LOOP for (int ow = lo; ow < hi; ow++) xr[ow] += cr[ow];
#endif
        else
          NK_SCALAR_LOOP for (int ow = lo; ow < hi; ow++) xr[ow * f.sw] += cr[ow];
      }
    }
}

NK_INLINE void nk_col_team(float *dx, const float *dy, const float *ymask, int act, float alpha,
                           const float *w, char *tscratch, size_t tstride, nk_conv f) {
  nk_cplan p = nk_col_plan(f);
  int tid = nk_tid(), nthr = nk_nthr();
  if (tid >= nthr) return;
  int P = f.Ho * f.Wo, K = f.C * f.Kh * f.Kw, Co = f.M;
  int G = nk_min(p.G, nk_cdiv(f.N, nthr)), ld = nk_cols_ld(G * P);
  float *gb = (float *)(tscratch + (size_t)tid * tstride);
  float *col = (float *)((char *)gb + nk_align64((size_t)Co * nk_cols_ld(p.G * P) * sizeof(float)));
  size_t xplane = (size_t)f.Hs * f.Ws;
  NK_DYNAMIC for (int gr = 0; gr < nk_cdiv(f.N, G); gr++) {
    int n0 = gr * G, g = nk_min(G, f.N - n0), ntile = nk_cdiv(g * P, NK_NR);
    for (int co = 0; co < Co; co++) {
      float *row = gb + (size_t)co * ld;
      for (int gi = 0; gi < g; gi++) {
        size_t off = ((size_t)(n0 + gi) * Co + co) * P;
        if (ymask)
          for (int q = 0; q < P; q++)
            row[gi * P + q] = nk_actgrad1(dy[off + q], ymask[off + q], act, alpha);
        else
          memcpy(row + gi * P, dy + off, (size_t)P * sizeof(float));
      }
      for (int q = g * P; q < ntile * NK_NR; q++) row[q] = 0.0f;
    }
    /* each channel's col2im as soon as the GEMM has its rows, while
     * they are in L1 */
    for (int m0 = 0, ci = 0; m0 < K; m0 += NK_MR) {
      if (m0 + NK_MR <= K)
        for (int t = 0; t < ntile; t++) nk_col_tile(col, w, gb, K, Co, ld, m0, NK_MR, t);
      else
        for (int t = 0; t < ntile; t++) nk_col_tile(col, w, gb, K, Co, ld, m0, K % NK_MR, t);
      for (; ci < nk_min(K, m0 + NK_MR) / (f.Kh * f.Kw); ci++)
        for (int gi = 0; gi < g; gi++) {
          float *xp = dx + ((size_t)(n0 + gi) * f.C + ci) * xplane;
          const float *cc = col + (size_t)ci * f.Kh * f.Kw * ld + gi * P;
#if defined(NK_ISA_AVX512)
          if (f.sh == 1 && f.sw == 1) {
            nk_col2im_s1(xp, cc, ld, f);
            continue;
          }
#endif
          nk_col2im_rmw(xp, cc, ld, f);
        }
    }
  }
}

/* Layout of the backward scratch: flipped weights, dwT and dbT (one slot
 * per tree level of the N/S groups), then, when dw and db of all N/S
 * groups take at most NNCC_DW_GROUPS_BYTES, a slot per group for the
 * weight gradient split by groups (nk_dw_team; gbuf 0: none), then
 * per-thread space shared by the dx and dw phases. */
#ifndef NNCC_DW_GROUPS_BYTES
#define NNCC_DW_GROUPS_BYTES (1024 * 1024)
#endif
typedef struct { size_t wflip, dwT, dwslot, dbT, dbslot, gbuf, batch, threads, tstride; int levels; } nk_bwdlayout;

NK_INLINE nk_bwdlayout nk_bwd_layout(int N, int Ci, int H, int W, int Co, int Kh, int Kw, int sh,
                                     int sw, int ph, int pw, int S) {
  nk_conv f = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  nk_conv b = nk_conv_bwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  nk_dwplan dp = nk_dw_plan(f, S);
  nk_eplan ep = nk_engine_plan(b);
  nk_cplan cp = nk_col_plan(f);
  nk_bwdlayout L;
  size_t K = (size_t)Ci * Kh * Kw;
  L.levels = nk_log2(N / S) + 1;
  L.wflip = 0;
  L.dwT = L.wflip + nk_align64((size_t)Co * K * sizeof(float));
  L.dwslot = nk_align64(K * dp.Co16 * sizeof(float)) / sizeof(float);
  L.dbT = L.dwT + L.levels * L.dwslot * sizeof(float);
  L.dbslot = nk_align64((size_t)dp.Co16 * sizeof(float)) / sizeof(float);
  L.gbuf = L.dbT + L.levels * L.dbslot * sizeof(float);
  size_t gbytes = (size_t)(N / S) * (L.dwslot + L.dbslot) * sizeof(float);
  L.batch = L.gbuf + (gbytes <= NNCC_DW_GROUPS_BYTES ? gbytes : 0);
  if (gbytes > NNCC_DW_GROUPS_BYTES) L.gbuf = 0;
  size_t bbytes = (size_t)N * (dp.xbytes + dp.dybytes);
  int batch = !L.gbuf && nk_dw_few_terms(f, S) && bbytes <= NNCC_DW_BATCH_BYTES;
  L.threads = L.batch + (batch ? bbytes : 0);
  if (!batch) L.batch = 0;
  L.tstride = cp.use ? cp.thread_bytes : ep.thread_bytes;
  if (dp.thread_bytes > L.tstride) L.tstride = dp.thread_bytes;
  return L;
}

/* S: the batch's group size (N a multiple of it; N/S a power of two) */
static inline size_t nncc_conv2d_backward_scratch(int N, int Ci, int H, int W, int Co, int Kh,
                                                  int Kw, int sh, int sw, int ph, int pw, int nthr,
                                                  int S) {
  nk_bwdlayout L = nk_bwd_layout(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, S);
  return L.threads + (size_t)nthr * L.tstride;
}

/* The two halves of the backward, for callers (and benchmarks) that want
 * only one: dx alone, and dw (+ db) alone. Both use the same scratch. */
NK_INLINE void nncc_conv2d_backward_data_team(float *restrict dx, const float *restrict dy,
                                              const float *restrict ymask,
                                              const float *restrict w, void *scratch, int N,
                                              int Ci, int H, int W, int Co, int Kh, int Kw,
                                              int sh, int sw, int ph, int pw, int act,
                                              float alpha, int S) {
  nk_bwdlayout L = nk_bwd_layout(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, S);
  char *s = (char *)scratch;
  nk_conv f = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  if (act == NNCC_ACT_NONE) ymask = NULL;
  if (nk_col_plan(f).use) {
    nk_col_team(dx, dy, ymask, act, alpha, w, s + L.threads, L.tstride, f);
    return;
  }
  float *wflip = (float *)(s + L.wflip);
  int KK = Kh * Kw;
  /* wflip[ci][co][kh][kw] = w[co][ci][Kh-1-kh][Kw-1-kw] */
#pragma omp for schedule(static)
  for (int ci = 0; ci < Ci; ci++)
    for (int co = 0; co < Co; co++)
      for (int k = 0; k < KK; k++)
        wflip[((size_t)ci * Co + co) * KK + k] = w[((size_t)co * Ci + ci) * KK + (KK - 1 - k)];
  nk_engine_team(dx, dy, ymask, wflip, NULL, ymask ? act : NNCC_ACT_NONE, alpha, s + L.threads,
                 L.tstride, nk_conv_bwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw), (nk_epi){0});
}

/* The weight gradient in two calls, with other work of the team's between
 * them when the caller has some (the data gradient): the sums, which may
 * leave threads done at different times (a split by groups hands out only
 * N/S of them), then their fold and dw's layout. */
#define NK_DW_ARGS                                                                              \
  float *restrict dw, float *restrict db, const float *restrict dy, const float *restrict ymask, \
      const float *restrict x, void *scratch, int N, int Ci, int H, int W, int Co, int Kh,       \
      int Kw, int sh, int sw, int ph, int pw, int act, float alpha, int S
NK_INLINE void nk_conv2d_dw_sums_team(NK_DW_ARGS) {
  (void)dw;
  nk_conv f = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  nk_bwdlayout L = nk_bwd_layout(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, S);
  char *s = (char *)scratch;
  if (act == NNCC_ACT_NONE) ymask = NULL;
  nk_dw_team((float *)(s + L.dwT), L.dwslot, db ? (float *)(s + L.dbT) : NULL, L.dbslot,
             L.gbuf ? (float *)(s + L.gbuf) : NULL, L.dwslot, L.batch ? s + L.batch : NULL, x,
             dy, ymask, act, alpha, s + L.threads, L.tstride, f, S);
}

NK_INLINE void nk_conv2d_dw_finish_team(NK_DW_ARGS) {
  (void)dy, (void)ymask, (void)x, (void)act, (void)alpha;
  nk_conv f = nk_conv_fwd_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw);
  nk_bwdlayout L = nk_bwd_layout(N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, S);
  char *s = (char *)scratch;
  float *dwT = (float *)(s + L.dwT), *dbT = (float *)(s + L.dbT);
  int Co16 = nk_cdiv(Co, 16) * 16;
  float *gbuf = L.gbuf ? (float *)(s + L.gbuf) : NULL;
  if (nk_dw_by_groups(gbuf, f, S)) {
#pragma omp barrier
    nk_dw_fold_team(dwT, L.dwslot, db ? dbT : NULL, L.dbslot, gbuf, L.dwslot, f, S);
  }
#pragma omp barrier
  size_t K = (size_t)Ci * Kh * Kw;
  const float *dwsum = dwT + (size_t)(L.levels - 1) * L.dwslot;
  const float *dbsum = dbT + (size_t)(L.levels - 1) * L.dbslot;
  /* dw[co][k] = dwsum[k][co], in blocks of 16 x 16: each read is one line
   * of dwsum, and a block's 16 rows of dw are written a line each (a
   * column of dwsum at a time read a line per element: a quarter of
   * vgg16's 2x2 layers' weight gradient) */
#pragma omp for schedule(static)
  for (int co0 = 0; co0 < Co; co0 += 16) {
    int nc = nk_min(16, Co - co0);
    for (size_t k0 = 0; k0 < K; k0 += 16)
      for (size_t k = k0; k < k0 + 16 && k < K; k++)
        for (int c = 0; c < nc; c++) dw[(co0 + c) * K + k] = dwsum[k * Co16 + co0 + c];
    if (db)
      for (int c = 0; c < nc; c++) db[co0 + c] = dbsum[co0 + c];
  }
}

#define NK_DW_PASS dw, db, dy, ymask, x, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw, act, alpha, S
NK_INLINE void nncc_conv2d_backward_weight_team(NK_DW_ARGS) {
  nk_conv2d_dw_sums_team(NK_DW_PASS);
  nk_conv2d_dw_finish_team(NK_DW_PASS);
}

/* S: the batch's group size (N a multiple of it, N/S a power of two) */
NK_INLINE void nncc_conv2d_backward_team(float *restrict dx, float *restrict dw,
                                         float *restrict db, const float *restrict dy,
                                         const float *restrict ymask, const float *restrict x,
                                         const float *restrict w, void *scratch, int N, int Ci,
                                         int H, int W, int Co, int Kh, int Kw, int sh, int sw,
                                         int ph, int pw, int act, float alpha, int S) {
  /* the weight gradient's sums first, then the data gradient, whose many
   * groups (handed out as threads come free) fill the gaps the sums leave;
   * no barrier between them: they write different memory, and each thread
   * reuses only its own part of the per-thread scratch */
  nk_conv2d_dw_sums_team(NK_DW_PASS);
  if (dx)
    nncc_conv2d_backward_data_team(dx, dy, ymask, w, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw,
                                   ph, pw, act, alpha, S);
  nk_conv2d_dw_finish_team(NK_DW_PASS);
}
#undef NK_DW_PASS
#undef NK_DW_ARGS

static inline void nncc_conv2d_backward(float *restrict dx, float *restrict dw,
                                        float *restrict db, const float *restrict dy,
                                        const float *restrict ymask, const float *restrict x,
                                        const float *restrict w, void *scratch, int N, int Ci,
                                        int H, int W, int Co, int Kh, int Kw, int sh, int sw,
                                        int ph, int pw, int act, float alpha, int S) {
#pragma omp parallel
  nncc_conv2d_backward_team(dx, dw, db, dy, ymask, x, w, scratch, N, Ci, H, W, Co, Kh, Kw, sh, sw,
                            ph, pw, act, alpha, S);
}

/* ---------------------------------------------------------------------------
 * linear: y[N][O] = act(x[N][I] w[O][I]^T + b[O]), and its backward.
 * Forward transposes x once into scratch (x is small next to w), then
 * tiles of 8 outputs o by 48 batch rows n are shared out across threads;
 * each tile reads w's rows as they are and writes y transposed.
 */
static inline size_t nncc_linear_forward_scratch(int N, int I, int O) {
  (void)O;
  return nk_align64((size_t)I * nk_cdiv(N, 16) * 16 * sizeof(float));
}

NK_INLINE void nk_linear_fwd_tile(float *y, const float *w, const float *xT, const float *b,
                                  int act, float alpha, int N, int I, int O, int o0,
                                  const int mr, int n0, const int nv) {
  nk_v acc[NK_MR * NK_NV];
  if (mr < 1 || mr > NK_MR || nv < 1 || nv > NK_NV) __builtin_unreachable();
  int Np = nk_cdiv(N, 16) * 16;
  NK_UNROLL for (int i = 0; i < NK_MR * NK_NV; i++) acc[i] = nk_zero();
  nk_kernel(acc, mr, 1, nv, w + (size_t)o0 * I, I, 0, xT + n0, 0xFFFF, 1, 0, 0, 1, 0, 0, I, 1, Np);
  float t[NK_MR][NK_NV * 16];
  NK_UNROLL for (int u = 0; u < mr; u++) {
    nk_v bv = nk_bcast(b ? b[o0 + u] : 0.0f);
    NK_UNROLL for (int j = 0; j < nv; j++) {
      nk_v v = acc[u * nv + j];
      if (b) v = nk_add(v, bv);
      nk_store(t[u] + 16 * j, nk_act(v, act, alpha));
    }
  }
  /* y is written transposed, one float at a time: one plain loop (unrolled
   * per tile row and vectorized, it is most of the code of a model) */
  int nn = nk_min(16 * nv, N - n0);
  NK_SCALAR_LOOP for (int u = 0; u < mr; u++)
    NK_SCALAR_LOOP for (int l = 0; l < nn; l++) y[(size_t)(n0 + l) * O + o0 + u] = t[u][l];
}

NK_INLINE void nncc_linear_forward_team(float *restrict y, const float *restrict x,
                                        const float *restrict w, const float *restrict b,
                                        void *scratch, int N, int I, int O, int act,
                                        float alpha) {
  float *xT = (float *)scratch;
  int Np = nk_cdiv(N, 16) * 16;
  /* 16 rows of xT at a time: their stores, Np floats apart (1 KB for a
   * batch of 256), fall in few L1 sets, and 64 rows at a time thrashed
   * them (mnist_cnn's fc1: 0.22 ms, against 0.04 ms) */
#pragma omp for schedule(static)
  for (int i0 = 0; i0 < I; i0 += 16)
    for (int n = 0; n < Np; n++)
      for (int i = i0; i < nk_min(I, i0 + 16); i++)
        xT[(size_t)i * Np + n] = n < N ? x[(size_t)n * I + i] : 0.0f;
  int ncv = Np / 16, nch = nk_cdiv(ncv, NK_NV), vt = ncv - (nch - 1) * NK_NV;
  int nrb = nk_cdiv(O, NK_MR), rt = O - (nrb - 1) * NK_MR;
#pragma omp for schedule(static)
  for (int t = 0; t < nrb * nch; t++) {
    int rb = t / nch, cc = t % nch, o0 = rb * NK_MR, n0 = cc * NK_NV * 16;
    int fr = rb < nrb - 1, fc = cc < nch - 1;
    if (fr && fc) nk_linear_fwd_tile(y, w, xT, b, act, alpha, N, I, O, o0, NK_MR, n0, NK_NV);
    else if (fr) nk_linear_fwd_tile(y, w, xT, b, act, alpha, N, I, O, o0, NK_MR, n0, vt);
    else if (fc) nk_linear_fwd_tile(y, w, xT, b, act, alpha, N, I, O, o0, rt, n0, NK_NV);
    else nk_linear_fwd_tile(y, w, xT, b, act, alpha, N, I, O, o0, rt, n0, vt);
  }
}

static inline void nncc_linear_forward(float *restrict y, const float *restrict x,
                                       const float *restrict w, const float *restrict b,
                                       void *scratch, int N, int I, int O, int act,
                                       float alpha) {
#pragma omp parallel
  nncc_linear_forward_team(y, x, w, b, scratch, N, I, O, act, alpha);
}

/* linear backward: dx[N][I] = g w, dw[O][I] = g^T x, db[O] = sum_n g, where
 * g = dy gated by act's derivative from ymask (the saved activated y), or
 * dy itself when ymask is NULL or act NONE. dx, dw, db may each be NULL
 * (skipped). Scratch holds the gated copy of dy. dw and db sum the batch
 * in groups of S samples (N a multiple of S, N/S a power of two). */
static inline size_t nncc_linear_backward_scratch(int N, int I, int O) {
  (void)I;
  return nk_align64((size_t)N * O * sizeof(float));
}

/* out[r][c0..] = sum_k a[r*ar + k*ak] * bm[k*ldb + c0..] for a tile of mr
 * rows and nv vectors (the last one ending at column C), k in groups of S
 * added as a tree (S = K: one chain) */
NK_INLINE void nk_gemm_tile(float *out, int ldo, const float *a, ptrdiff_t ar, ptrdiff_t ak,
                            const float *bm, int ldb, int K, int S, int C, int r0, const int mr,
                            int c0, const int nv) {
  enum { T = NK_MR * NK_NV };
  nk_v acc[T], pend[NK_TREE_LEVELS - 1][T];
  if (mr < 1 || mr > NK_MR || nv < 1 || nv > NK_NV) __builtin_unreachable();
  uint32_t last = nk_lanes(C - (c0 + 16 * (nv - 1)));
  for (int g = 0; g * S < K; g++) {
    int lf = nk_tree_level(g);
    NK_UNROLL for (int i = 0; i < T; i++) acc[i] = nk_zero();
    nk_kernel(acc, mr, 1, nv, a + r0 * ar + (ptrdiff_t)g * S * ak, ar, 0,
              bm + (size_t)g * S * ldb + c0, last, 1, 0, 0, 1, 0, 0, S, ak, ldb);
    if (S == K) break;
    for (int l = 0; l < lf; l++)
      NK_UNROLL for (int i = 0; i < T; i++) acc[i] = nk_add(pend[l][i], acc[i]);
    if ((g + 1) * S < K)
      NK_UNROLL for (int i = 0; i < T; i++) pend[lf][i] = acc[i];
  }
  NK_UNROLL for (int u = 0; u < mr; u++)
    NK_UNROLL for (int j = 0; j < nv; j++)
      nk_store_mask(out + (size_t)(r0 + u) * ldo + c0 + 16 * j, nk_lanes(C - (c0 + 16 * j)),
                    acc[u * nv + j]);
}

/* all of out[R][C] (row stride ldo), tiles shared out with omp for; the
 * row blocks of one column chunk are consecutive, so that chunk of bm stays
 * in cache */
NK_INLINE void nk_gemm_team(float *out, int ldo, const float *a, ptrdiff_t ar, ptrdiff_t ak,
                            const float *bm, int ldb, int K, int S, int R, int C) {
  int ncv = nk_cdiv(C, 16), nch = nk_cdiv(ncv, NK_NV), vt = ncv - (nch - 1) * NK_NV;
  int nrb = nk_cdiv(R, NK_MR), rt = R - (nrb - 1) * NK_MR;
#pragma omp for schedule(static) nowait
  for (int t = 0; t < nrb * nch; t++) {
    int rb = t % nrb, cc = t / nrb, r0 = rb * NK_MR, c0 = cc * NK_NV * 16;
    int fr = rb < nrb - 1, fc = cc < nch - 1;
    if (fr && fc) nk_gemm_tile(out, ldo, a, ar, ak, bm, ldb, K, S, C, r0, NK_MR, c0, NK_NV);
    else if (fr) nk_gemm_tile(out, ldo, a, ar, ak, bm, ldb, K, S, C, r0, NK_MR, c0, vt);
    else if (fc) nk_gemm_tile(out, ldo, a, ar, ak, bm, ldb, K, S, C, r0, rt, c0, NK_NV);
    else nk_gemm_tile(out, ldo, a, ar, ak, bm, ldb, K, S, C, r0, rt, c0, vt);
  }
}

NK_INLINE void nncc_linear_backward_team(float *restrict dx, float *restrict dw,
                                         float *restrict db, const float *restrict dy,
                                         const float *restrict ymask, const float *restrict x,
                                         const float *restrict w, void *scratch, int N, int I,
                                         int O, int act, float alpha, int S) {
  const float *g = dy;
  if (ymask && act != NNCC_ACT_NONE) {
    float *gm = (float *)scratch;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < O; o++)
        gm[(size_t)n * O + o] =
            nk_actgrad1(dy[(size_t)n * O + o], ymask[(size_t)n * O + o], act, alpha);
    g = gm;
  }
  if (dx) nk_gemm_team(dx, I, g, O, 1, w, I, O, O, N, I);
  if (dw) nk_gemm_team(dw, I, g, 1, O, x, I, N, S, O, I);
  if (db) {
#pragma omp for schedule(static) nowait
    for (int ov = 0; ov < nk_cdiv(O, 16); ov++) {
      uint32_t m = nk_lanes(O - 16 * ov);
      nk_v s = nk_zero(), pend[NK_TREE_LEVELS - 1];
      for (int n0 = 0; n0 < N; n0 += S) {
        int gi = n0 / S, lf = nk_tree_level(gi);
        s = nk_zero();
        for (int n = n0; n < n0 + S; n++) s = nk_add(s, nk_load_mask(g + (size_t)n * O + 16 * ov, m));
        for (int l = 0; l < lf; l++) s = nk_add(pend[l], s);
        if (n0 + S < N) pend[lf] = s;
      }
      nk_store_mask(db + 16 * ov, m, s);
    }
  }
#pragma omp barrier
}

static inline void nncc_linear_backward(float *restrict dx, float *restrict dw, float *restrict db,
                                        const float *restrict dy, const float *restrict ymask,
                                        const float *restrict x, const float *restrict w,
                                        void *scratch, int N, int I, int O, int act,
                                        float alpha, int S) {
#pragma omp parallel
  nncc_linear_backward_team(dx, dw, db, dy, ymask, x, w, scratch, N, I, O, act, alpha, S);
}

/* ---------------------------------------------------------------------------
 * Pooling and ReLU kernels (the rules: see "Pooling" above).
 */
NK_INLINE void nncc_maxpool2d_forward_team(float *restrict y, const float *restrict x, int N,
                                           int C, int H, int W, int Kh, int Kw, int sh, int sw,
                                           int ph, int pw, int Ho, int Wo) {
  if (nk_pool_2x2_exact(H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo)) {
    nk_pool2x2_team(y, x, NULL, (ptrdiff_t)N * C * Ho, Wo, NNCC_ACT_NONE, 0);
    return;
  }
#pragma omp for schedule(static)
  for (int nc = 0; nc < N * C; nc++)
    nk_maxpool_plane(y + (size_t)nc * Ho * Wo, x + (size_t)nc * H * W, H, W, Kh, Kw, sh, sw, ph,
                     pw, Ho, Wo);
}

/* dx = the max pool's gradient, gated by act's derivative from x when act
 * is not NONE: x is then the output of the activation fused into the
 * producing conv (fuse.c), and dx what that conv's backward would have
 * gated itself, bit for bit. */
NK_INLINE void nncc_maxpool2d_backward_team(float *restrict dx, const float *restrict dy,
                                            const float *restrict x, int N, int C, int H, int W,
                                            int Kh, int Kw, int sh, int sw, int ph, int pw,
                                            int Ho, int Wo, int act, float alpha) {
  if (nk_pool_2x2_exact(H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo) &&
      (act == NNCC_ACT_NONE || act == NNCC_ACT_RELU)) {
    nk_pool2x2_team(dx, x, dy, (ptrdiff_t)N * C * Ho, Wo, act, 1);
    return;
  }
  if (nk_pool_2x2(H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo)) {
#pragma omp for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
      NK_STRIDED_LOOP for (int oh = 0; oh < Ho; oh++) {
        size_t r = ((size_t)nc * H + 2 * oh) * W;
        const float *x0 = x + r, *x1 = x0 + W, *dr = dy + ((size_t)nc * Ho + oh) * Wo;
        float *g0 = dx + r, *g1 = g0 + W;
        int ow = 0;
        /* NK_PW windows at once, as the scalar loop below does them */
        if (NK_POOL_VECTORS && (act == NNCC_ACT_NONE || act == NNCC_ACT_RELU))
          for (; ow + NK_PW <= Wo; ow += NK_PW)
            nk_pool_pw_backward(g0 + 2 * ow, g1 + 2 * ow, x0 + 2 * ow, x1 + 2 * ow, dr + ow, act);
        NK_STRIDED_LOOP for (; ow < Wo; ow++)
          nk_pool_1_backward(g0 + 2 * ow, g1 + 2 * ow, x0 + 2 * ow, x1 + 2 * ow, dr[ow], act,
                             alpha);
        for (int w = 2 * Wo; w < W; w++) g0[w] = g1[w] = 0.0f;
      }
      float *gp = dx + (size_t)nc * H * W;
      memset(gp + (size_t)2 * Ho * W, 0, (size_t)(H - 2 * Ho) * W * sizeof(float));
    }
    return;
  }
#pragma omp for schedule(static)
  for (int nc = 0; nc < N * C; nc++) {
    const float *xp = x + (size_t)nc * H * W;
    const float *dp = dy + (size_t)nc * Ho * Wo;
    float *gp = dx + (size_t)nc * H * W;
    memset(gp, 0, (size_t)H * W * sizeof(float));
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        int k = nk_pool_max_at(xp, H, W, Kh, Kw, oh * sh - ph, ow * sw - pw);
        if (k >= 0) gp[k] += dp[oh * Wo + ow];
      }
    /* windows may overlap: the gate goes on the sums */
    if (act != NNCC_ACT_NONE)
      for (int k = 0; k < H * W; k++) gp[k] = nk_actgrad1(gp[k], xp[k], act, alpha);
  }
}

/* PyTorch's avg_pool2d divisor for the window at (h0, w0) (padded coords) */
NK_INLINE float nk_pool_avg_div(int H, int W, int Kh, int Kw, int ph, int pw, int h0, int w0,
                                int count_include_pad) {
  int h1 = nk_min(h0 + Kh, H + ph), w1 = nk_min(w0 + Kw, W + pw);
  if (!count_include_pad)
    h0 = nk_max(h0, 0), w0 = nk_max(w0, 0), h1 = nk_min(h1, H), w1 = nk_min(w1, W);
  return (float)((h1 - h0) * (w1 - w0));
}

NK_INLINE void nncc_avgpool2d_forward_team(float *restrict y, const float *restrict x, int N,
                                           int C, int H, int W, int Kh, int Kw, int sh, int sw,
                                           int ph, int pw, int Ho, int Wo,
                                           int count_include_pad) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < N * C; nc++) {
    const float *xp = x + (size_t)nc * H * W;
    float *yp = y + (size_t)nc * Ho * Wo;
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float s = 0.0f;
        for (int i = 0; i < Kh; i++)
          for (int j = 0; j < Kw; j++) {
            int h = oh * sh - ph + i, ww = ow * sw - pw + j;
            if (h >= 0 && h < H && ww >= 0 && ww < W) s += xp[h * W + ww];
          }
        yp[oh * Wo + ow] = s / nk_pool_avg_div(H, W, Kh, Kw, ph, pw, oh * sh - ph, ow * sw - pw,
                                               count_include_pad);
      }
  }
}

NK_INLINE void nncc_avgpool2d_backward_team(float *restrict dx, const float *restrict dy, int N,
                                            int C, int H, int W, int Kh, int Kw, int sh, int sw,
                                            int ph, int pw, int Ho, int Wo,
                                            int count_include_pad) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < N * C; nc++) {
    const float *dp = dy + (size_t)nc * Ho * Wo;
    float *gp = dx + (size_t)nc * H * W;
    memset(gp, 0, (size_t)H * W * sizeof(float));
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float g = dp[oh * Wo + ow] / nk_pool_avg_div(H, W, Kh, Kw, ph, pw, oh * sh - ph,
                                                     ow * sw - pw, count_include_pad);
        for (int i = 0; i < Kh; i++)
          for (int j = 0; j < Kw; j++) {
            int h = oh * sh - ph + i, ww = ow * sw - pw + j;
            if (h >= 0 && h < H && ww >= 0 && ww < W) gp[h * W + ww] += g;
          }
      }
  }
}

/* y = max(x, 0) (NaN kept); dx = y > 0 ? dy : 0, from the saved output y.
 * No restrict on y/x and dx/dy: the memory plan may run them in place. */
NK_INLINE void nncc_relu_forward_team(float *y, const float *x, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = nk_relu1(x[i]);
}

NK_INLINE void nncc_relu_backward_team(float *dx, const float *dy, const float *restrict y,
                                       size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = nk_gate1(dy[i], y[i]);
}

/* The other activations, written like relu (in place allowed: y may be x,
 * dx may be dy), with their gradients from the saved output y:
 *   sigmoid: dx = dy*(1-y)*y   tanh: dx = dy*(1-y*y)
 *   relu6:   y = min(max(x,0),6), NaN kept; dx = (y > 0 && y < 6) ? dy : 0
 *   leaky:   y = x > 0 ? x : x*slope; dx = ref > 0 ? dy : dy*slope, where
 *            ref is y when slope >= 0, else x (y > 0 iff x > 0 needs it)
 * sigmoid and tanh are computed in double (libm's exp, tanh) and rounded
 * once to float: within half an ulp of the exact value, and the same bits
 * from gcc and clang, with or without AVX-512. */
NK_INLINE void nncc_sigmoid_forward_team(float *y, const float *x, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
}

NK_INLINE void nncc_sigmoid_backward_team(float *dx, const float *dy, const float *restrict y,
                                          size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i]) * y[i]; /* PyTorch's order */
}

NK_INLINE void nncc_tanh_forward_team(float *y, const float *x, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = (float)tanh((double)x[i]);
}

NK_INLINE void nncc_tanh_backward_team(float *dx, const float *dy, const float *restrict y,
                                       size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

NK_INLINE void nncc_relu6_forward_team(float *y, const float *x, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = nk_relu6_1(x[i]);
}

NK_INLINE void nncc_relu6_backward_team(float *dx, const float *dy, const float *restrict y,
                                        size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = nk_gate6_1(dy[i], y[i]);
}

/* hardtanh: clamp to [lo, hi], NaN kept; backward passes dy except where
 * y sits on a bound (y is x there), as PyTorch's hardtanh_backward does with
 * x, so a NaN lets dy through too. */
NK_INLINE void nncc_hardtanh_forward_team(float *y, const float *x, float lo, float hi, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

NK_INLINE void nncc_hardtanh_backward_team(float *dx, const float *dy, const float *y, float lo,
                                           float hi, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = y[i] <= lo || y[i] >= hi ? 0.0f : dy[i];
}

NK_INLINE void nncc_leaky_relu_forward_team(float *y, const float *x, float slope, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = nk_leaky1(x[i], slope);
}

/* No restrict on ref either: each element is read before it is written. */
NK_INLINE void nncc_leaky_relu_backward_team(float *dx, const float *dy, const float *ref,
                                             float slope, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = nk_leaky_gate1(dy[i], ref[i], slope);
}

#define NK_WRAP(name, params, args) \
  static inline void nncc_##name params { NK_PRAGMA(omp parallel) nncc_##name##_team args; }
NK_WRAP(maxpool2d_forward, (float *y, const float *x, int N, int C, int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho, int Wo),
        (y, x, N, C, H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo))
NK_WRAP(maxpool2d_backward, (float *dx, const float *dy, const float *x, int N, int C, int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int act, float alpha),
        (dx, dy, x, N, C, H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo, act, alpha))
NK_WRAP(avgpool2d_forward, (float *y, const float *x, int N, int C, int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int count_include_pad),
        (y, x, N, C, H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo, count_include_pad))
NK_WRAP(avgpool2d_backward, (float *dx, const float *dy, int N, int C, int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int count_include_pad),
        (dx, dy, N, C, H, W, Kh, Kw, sh, sw, ph, pw, Ho, Wo, count_include_pad))
NK_WRAP(relu_forward, (float *y, const float *x, size_t n), (y, x, n))
NK_WRAP(relu_backward, (float *dx, const float *dy, const float *y, size_t n), (dx, dy, y, n))
NK_WRAP(sigmoid_forward, (float *y, const float *x, size_t n), (y, x, n))
NK_WRAP(sigmoid_backward, (float *dx, const float *dy, const float *y, size_t n), (dx, dy, y, n))
NK_WRAP(tanh_forward, (float *y, const float *x, size_t n), (y, x, n))
NK_WRAP(tanh_backward, (float *dx, const float *dy, const float *y, size_t n), (dx, dy, y, n))
NK_WRAP(relu6_forward, (float *y, const float *x, size_t n), (y, x, n))
NK_WRAP(relu6_backward, (float *dx, const float *dy, const float *y, size_t n), (dx, dy, y, n))
NK_WRAP(leaky_relu_forward, (float *y, const float *x, float slope, size_t n), (y, x, slope, n))
NK_WRAP(hardtanh_forward, (float *y, const float *x, float lo, float hi, size_t n), (y, x, lo, hi, n))
NK_WRAP(hardtanh_backward, (float *dx, const float *dy, const float *y, float lo, float hi, size_t n),
        (dx, dy, y, lo, hi, n))
NK_WRAP(leaky_relu_backward, (float *dx, const float *dy, const float *ref, float slope, size_t n),
        (dx, dy, ref, slope, n))

/* ---------------------------------------------------------------------------
 * The simple ops the code generator calls, in team form like the rest.
 * Elementwise kernels take no restrict pointers: the memory plan may run
 * them in place (y == x, dx == dy).
 */

NK_INLINE void nncc_add_forward_team(float *y, const float *a, const float *b, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

NK_INLINE void nncc_copy_team(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

NK_INLINE void nncc_accumulate_team(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* dst[n][dst_c0 + c][:] = src[n][src_c0 + c][:] for n < N, c < C, HW
 * floats a plane; dst has dst_C channels, src src_C. concat's forward
 * (an input into its channels of y) and backward (its channels of dy out).
 * Parallel over (n, c) planes. */
NK_INLINE void nncc_copy_channels_team(float *restrict dst, int dst_C, int dst_c0,
                                       const float *restrict src, int src_C, int src_c0, int N,
                                       int C, int HW) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < N * C; nc++) {
    int n = nc / C, c = nc % C;
    memcpy(dst + ((size_t)n * dst_C + dst_c0 + c) * HW, src + ((size_t)n * src_C + src_c0 + c) * HW,
           (size_t)HW * sizeof(float));
  }
}
NK_WRAP(copy_channels, (float *dst, int dst_C, int dst_c0, const float *src, int src_C, int src_c0, int N, int C, int HW),
        (dst, dst_C, dst_c0, src, src_C, src_c0, N, C, HW))

/* Dropout keeps element i when 24 bits of hash(seed, step, stream, i) reach
 * `threshold` = p * 2^24: forward and backward agree without a stored mask.
 * `stream` names the node (the generator hashes its name).  i counts over
 * the whole batch: x's first element is element i0 (an MPI rank's share
 * starts at its first image's). */
NK_INLINE int nk_dropout_keep(uint64_t seed, uint64_t step, uint64_t stream, size_t i,
                              uint32_t threshold) {
  uint64_t h = nncc_hash64(seed ^ nncc_hash64(step ^ nncc_hash64(stream)));
  return (nncc_hash64(h + i) >> 40) >= threshold;
}

NK_INLINE void nncc_dropout_forward_team(float *y, const float *x, size_t n, uint64_t seed,
                                         uint64_t step, uint64_t stream, uint32_t threshold,
                                         float scale, int training, size_t i0) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++)
    y[i] = !training ? x[i]
           : nk_dropout_keep(seed, step, stream, i0 + i, threshold) ? x[i] * scale : 0.0f;
}

NK_INLINE void nncc_dropout_backward_team(float *dx, const float *dy, size_t n, uint64_t seed,
                                          uint64_t step, uint64_t stream, uint32_t threshold,
                                          float scale, size_t i0) {
#pragma omp for schedule(static)
  for (size_t i = 0; i < n; i++)
    dx[i] = nk_dropout_keep(seed, step, stream, i0 + i, threshold) ? dy[i] * scale : 0.0f;
}

/* adaptive average pooling: window i covers [floor(i*H/Ho), ceil((i+1)*H/Ho)) */
NK_INLINE void nncc_adaptive_avgpool2d_forward_team(float *restrict y, const float *restrict x,
                                                    int NC, int H, int W, int Ho, int Wo) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < NC; nc++)
    for (int i = 0; i < Ho; i++)
      for (int j = 0; j < Wo; j++) {
        int h0 = i * H / Ho, h1 = ((i + 1) * H + Ho - 1) / Ho;
        int w0 = j * W / Wo, w1 = ((j + 1) * W + Wo - 1) / Wo;
        float sum = 0.0f;
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) sum += x[((size_t)nc * H + h) * W + w];
        y[((size_t)nc * Ho + i) * Wo + j] = sum / (float)((h1 - h0) * (w1 - w0));
      }
}

NK_INLINE void nncc_adaptive_avgpool2d_backward_team(float *restrict dx, const float *restrict dy,
                                                     int NC, int H, int W, int Ho, int Wo) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < NC; nc++) {
    float *g = dx + (size_t)nc * H * W;
    memset(g, 0, (size_t)H * W * sizeof(float));
    for (int i = 0; i < Ho; i++)
      for (int j = 0; j < Wo; j++) {
        int h0 = i * H / Ho, h1 = ((i + 1) * H + Ho - 1) / Ho;
        int w0 = j * W / Wo, w1 = ((j + 1) * W + Wo - 1) / Wo;
        float d = dy[((size_t)nc * Ho + i) * Wo + j] / (float)((h1 - h0) * (w1 - w0));
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) g[h * W + w] += d;
      }
  }
}

/* ---------------------------------------------------------------------------
 * General convolution: groups, kernel dilation, asymmetric padding and an
 * explicit (planned) output size, with the fused activation. Direct loops
 * and no scratch, for the convolutions the engine above does not take
 * (depthwise and grouped, dilated, "same" with an even kernel), whose work
 * per output is small. y and dx are computed in tiles of up to 8 vectors
 * of 16 outputs (rows x columns), each lane one element's chain, padding
 * lanes masked out of the FMA; dW runs up to 32 weights' chains side by
 * side, one per (kh, kw). With g = co / (Co/groups), Cg = Ci/groups:
 *   y[n][co][oh][ow] = act(b[co] + sum_{c<Cg, kh, kw} w[co][c][kh][kw] *
 *                          x[n][g*Cg + c][oh*sh - pt + kh*dh][ow*sw - pl + kw*dw])
 * Terms whose x is outside the input (padding) are skipped, not added as
 * zeros. Each result is one fmaf chain from +0 over its terms in a fixed
 * order, the bias (when b is not NULL) added after it:
 *   y over (c, kh, kw); dW[co][c][kh][kw] and db[co] (plain adds) over
 *   (n, oh, ow); dx[n][ci][h][w] over (co in ci's group, kh, kw).
 * Threads share whole (n, co) planes of y, output channels co of dW/db and
 * (n, ci) planes of dx (`omp for schedule(static)`): each element is
 * written by one thread, in an order that does not depend on the thread
 * count. The backward gates dy by act's derivative from ymask (the saved
 * y) when ymask is not NULL and act is not NONE; dx, dW and db may each
 * be NULL (skipped).
 * NNCC_CONV_OUT is PyTorch's output size, for pads pt (before) and pb
 * (after): H + pt + pb - dil*(k-1) - 1, over s, floored, plus 1.
 */
#define NNCC_CONV_OUT(H, k, s, pt, pb, dil) \
  (NK_FLOORDIV((H) + (pt) + (pb) - (dil) * ((k) - 1) - 1, (s)) + 1)

/* [*lo, *hi): the i in [0, n) with 0 <= off + i*s < L (s > 0) */
NK_INLINE void nk_gc_span(int off, int s, int L, int n, int *lo, int *hi) {
  int l, h;
  if (s == 1) {
    l = nk_max(0, -off), h = nk_min(n, L - off);
  } else {
    l = off >= 0 ? 0 : (-off + s - 1) / s;
    h = L - 1 - off < 0 ? 0 : nk_min(n, (L - 1 - off) / s + 1);
  }
  *lo = nk_min(l, nk_max(h, 0)), *hi = nk_max(h, 0);
}

/* the lanes l with lo <= l < hi of a tile of 64 columns (4 vectors) */
NK_INLINE uint64_t nk_gc_range64(int lo, int hi) {
  lo = nk_min(nk_max(lo, 0), 64), hi = nk_min(nk_max(hi, 0), 64);
  uint64_t below_hi = hi ? ~0ull >> (64 - hi) : 0, below_lo = lo ? ~0ull >> (64 - lo) : 0;
  return below_hi & ~below_lo;
}
/* lanes 0, s, 2s, ... of 64 */
NK_INLINE uint64_t nk_gc_every(int s) {
  uint64_t m = 0;
  for (int l = 0; l < 64; l += s) m |= 1ull << l;
  return m;
}

/* fmaf(a, b, c) in the lanes of m, c elsewhere; lanes l of m get p[l*s],
 * others 0 (no other element is read); the lanes of m get p[0], p[1], ...
 * in order, the others 0; g through act's derivative from y, as
 * nk_actgrad1 lane by lane. */
#if defined(NK_ISA_AVX512)
NK_INLINE nk_v nk_gc_fma_mask(nk_v a, nk_v b, nk_v c, uint32_t m) {
  return _mm512_mask3_fmadd_ps(a, b, c, (__mmask16)m);
}
NK_INLINE nk_v nk_gc_load_strided(const float *p, int s, uint32_t m) {
  if (s == 1) return nk_load_mask(p, m);
  if (s == 2) {
    /* the even elements of p[0..32): spread m's halves to even bits */
    uint32_t lo = m & 0xFF, hi = m >> 8 & 0xFF;
    lo = (lo | lo << 4) & 0x0F0F, lo = (lo | lo << 2) & 0x3333, lo = (lo | lo << 1) & 0x5555;
    hi = (hi | hi << 4) & 0x0F0F, hi = (hi | hi << 2) & 0x3333, hi = (hi | hi << 1) & 0x5555;
    __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps((__mmask16)lo, p), even,
                                  _mm512_maskz_loadu_ps((__mmask16)hi, p + 16));
  }
  __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3,
                                                    2, 1, 0),
                                   _mm512_set1_epi32(s));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)m, idx, p, 4);
}
NK_INLINE nk_v nk_gc_load_expand(const float *p, uint32_t m) {
  return _mm512_maskz_expandloadu_ps((__mmask16)m, p);
}
NK_INLINE nk_v nk_gc_actgrad(nk_v g, nk_v y, int act, float alpha) {
  __mmask16 pos = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ);
  switch (act) {
  case NNCC_ACT_RELU: return _mm512_maskz_mov_ps(pos, g);
  case NNCC_ACT_RELU6:
    return _mm512_maskz_mov_ps(pos & _mm512_cmp_ps_mask(y, _mm512_set1_ps(6.0f), _CMP_LT_OQ), g);
  case NNCC_ACT_LEAKY: return _mm512_mask_mul_ps(g, (__mmask16)~pos, g, _mm512_set1_ps(alpha));
  default: return g;
  }
}
#elif defined(NK_ISA_AVX2)
NK_INLINE nk_v nk_gc_fma_mask(nk_v a, nk_v b, nk_v c, uint32_t m) {
  nk_v f = nk_fma(a, b, c);
  return nk_pair(_mm256_blendv_ps(c.lo, f.lo, _mm256_castsi256_ps(nk_m8(m & 0xFF))),
                 _mm256_blendv_ps(c.hi, f.hi, _mm256_castsi256_ps(nk_m8(m >> 8 & 0xFF))));
}
NK_INLINE nk_v nk_gc_load_strided(const float *p, int s, uint32_t m) {
  if (s == 1) return nk_load_mask(p, m);
  __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(s));
  const __m256 z = _mm256_setzero_ps();
  return nk_pair(_mm256_mask_i32gather_ps(z, p, idx, _mm256_castsi256_ps(nk_m8(m & 0xFF)), 4),
                 _mm256_mask_i32gather_ps(z, p + 8 * s, idx, _mm256_castsi256_ps(nk_m8(m >> 8 & 0xFF)), 4));
}
NK_INLINE nk_v nk_gc_load_expand(const float *p, uint32_t m) {
  float t[16];
  for (int l = 0, k = 0; l < 16; l++) t[l] = (m >> l & 1) ? p[k++] : 0.0f;
  return nk_load(t);
}
NK_INLINE __m256 nk_gc_actgrad8(__m256 g, __m256 y, int act, float alpha) {
  __m256 pos = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ);
  switch (act) {
  case NNCC_ACT_RELU: return _mm256_and_ps(g, pos);
  case NNCC_ACT_RELU6:
    return _mm256_and_ps(g, _mm256_and_ps(pos, _mm256_cmp_ps(y, _mm256_set1_ps(6.0f), _CMP_LT_OQ)));
  case NNCC_ACT_LEAKY: return _mm256_blendv_ps(_mm256_mul_ps(g, _mm256_set1_ps(alpha)), g, pos);
  default: return g;
  }
}
NK_INLINE nk_v nk_gc_actgrad(nk_v g, nk_v y, int act, float alpha) {
  return nk_pair(nk_gc_actgrad8(g.lo, y.lo, act, alpha), nk_gc_actgrad8(g.hi, y.hi, act, alpha));
}
#else
NK_INLINE nk_v nk_gc_fma_mask(nk_v a, nk_v b, nk_v c, uint32_t m) {
  for (int l = 0; l < 16; l++)
    if (m >> l & 1) NK_LANE(c, l) = fmaf(NK_LANE(a, l), NK_LANE(b, l), NK_LANE(c, l));
  return c;
}
NK_INLINE nk_v nk_gc_load_strided(const float *p, int s, uint32_t m) {
  nk_v r = nk_zero();
  for (int l = 0; l < 16; l++)
    if (m >> l & 1) NK_LANE(r, l) = p[l * s];
  return r;
}
NK_INLINE nk_v nk_gc_load_expand(const float *p, uint32_t m) {
  nk_v r = nk_zero();
  for (int l = 0, k = 0; l < 16; l++)
    if (m >> l & 1) NK_LANE(r, l) = p[k++];
  return r;
}
NK_INLINE nk_v nk_gc_actgrad(nk_v g, nk_v y, int act, float alpha) {
  for (int l = 0; l < 16; l++) NK_LANE(g, l) = nk_actgrad1(NK_LANE(g, l), NK_LANE(y, l), act, alpha);
  return g;
}
#endif

/* One convolution's sizes (Cg, Mg: input and output channels per group). */
typedef struct {
  int N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, Cg, Mg, Ho, Wo;
} nk_gc;

NK_INLINE nk_gc nk_gc_desc(int N, int Ci, int H, int W, int Co, int Kh, int Kw, int sh, int sw,
                           int pt, int pl, int dh, int dw, int groups, int Ho, int Wo) {
  nk_gc d = {N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, Ci / groups, Co / groups, Ho, Wo};
  return d;
}

/* Tiles of nr rows by nv 16-lane vectors, nr*nv <= NK_GC_TILE accumulators
 * (independent FMA chains, in registers when the sizes are constants). */
/* NK_GC_TILE, NK_GC_VMAX: nncc_simd.h */
NK_INLINE int nk_gc_tile_v(int cols) { return nk_min(NK_GC_VMAX, nk_cdiv(cols, 16)); }
NK_INLINE int nk_gc_tile_r(int cols) { return NK_GC_TILE / nk_gc_tile_v(cols); }

/* for (v < nv) for (r < nr) { body }, unrolled only when nr and nv are
 * compile-time constants (generated code): unrolling loops of runtime
 * length would only multiply the code */
#define NK_GC_LOOPS(...)                                                                  \
  if (__builtin_constant_p(nr) && __builtin_constant_p(nv)) {                            \
    NK_UNROLL for (int v = 0; v < nv; v++) NK_UNROLL for (int r = 0; r < nr; r++) {      \
      __VA_ARGS__                                                                         \
    }                                                                                     \
  } else {                                                                                \
    for (int v = 0; v < nv; v++)                                                          \
      for (int r = 0; r < nr; r++) {                                                      \
        __VA_ARGS__                                                                       \
      }                                                                                   \
  }

/* y rows oh0.. (nr) by columns o0.. (nv vectors) of plane (n, co): xg is
 * image n's first channel of co's group, wc = w[co]. Rows in the padding
 * and columns outside a kw's span are masked out, without branches. */
NK_INLINE void nk_gc_fwd_tile(float *yp, const float *xg, const float *wc, const float *bias,
                              int act, float alpha, nk_gc d, int oh0, const int nr, int o0,
                              const int nv) {
  nk_v acc[NK_GC_TILE];
  if (nr < 1 || nv < 1 || nr * nv > NK_GC_TILE) __builtin_unreachable();
  NK_UNROLL for (int i = 0; i < NK_GC_TILE; i++) acc[i] = nk_zero();
  for (int c = 0; c < d.Cg; c++)
    for (int kh = 0; kh < d.Kh; kh++) {
      const float *xr[NK_GC_TILE]; /* input row of each tile row (any, if padding) */
      uint64_t rm[NK_GC_TILE];     /* all lanes, or none for padding */
      for (int r = 0; r < nr; r++) {
        int ih = (oh0 + r) * d.sh - d.pt + kh * d.dh, in = ih >= 0 && ih < d.H;
        xr[r] = xg + ((size_t)c * d.H + (in ? ih : 0)) * d.W;
        rm[r] = in ? ~0ull : 0;
      }
      const float *wr = wc + ((size_t)c * d.Kh + kh) * d.Kw;
      for (int kw = 0; kw < d.Kw; kw++) {
        int off = kw * d.dw - d.pl, lo, hi;
        nk_gc_span(off, d.sw, d.W, d.Wo, &lo, &hi);
        uint64_t cols = nk_gc_range64(lo - o0, hi - o0);
        nk_v a = nk_bcast(wr[kw]);
        NK_GC_LOOPS(
          uint32_t m = (uint32_t)((cols & rm[r]) >> (16 * v)) & 0xFFFFu;
          const float *p = xr[r] + ((o0 + 16 * v) * d.sw + off);
          acc[r * nv + v] = nk_gc_fma_mask(a, nk_gc_load_strided(p, d.sw, m), acc[r * nv + v], m);
        )
      }
    }
  NK_GC_LOOPS(
    int o = o0 + 16 * v;
    nk_v s = acc[r * nv + v];
    if (bias) s = nk_add(s, nk_bcast(*bias));
    nk_store_mask(yp + (size_t)(oh0 + r) * d.Wo + o, nk_lanes(d.Wo - o), nk_act(s, act, alpha));
  )
}

NK_INLINE void nncc_conv2d_general_forward_team(float *restrict y, const float *restrict x,
                                                const float *restrict w, const float *restrict b,
                                                int N, int Ci, int H, int W, int Co, int Kh,
                                                int Kw, int sh, int sw, int pt, int pl, int dh,
                                                int dw, int groups, int Ho, int Wo, int act,
                                                float alpha) {
  nk_gc d = nk_gc_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo);
  int V = nk_gc_tile_v(Wo), R = nk_gc_tile_r(Wo), nvec = nk_cdiv(Wo, 16);
  int nch = nk_cdiv(nvec, V), vt = nvec - (nch - 1) * V, rt = Ho % R;
#pragma omp for schedule(static)
  for (int nco = 0; nco < N * Co; nco++) {
    int n = nco / Co, co = nco % Co;
    const float *xg = x + ((size_t)n * Ci + (size_t)(co / d.Mg) * d.Cg) * H * W;
    const float *wc = w + (size_t)co * d.Cg * Kh * Kw, *bc = b ? b + co : NULL;
    float *yp = y + (size_t)nco * Ho * Wo;
    for (int oh0 = 0; oh0 < Ho; oh0 += R)
      for (int ch = 0; ch < nch; ch++) {
        int o0 = ch * V * 16, full_v = ch < nch - 1;
        if (oh0 + R <= Ho) {
          if (full_v) nk_gc_fwd_tile(yp, xg, wc, bc, act, alpha, d, oh0, R, o0, V);
          else nk_gc_fwd_tile(yp, xg, wc, bc, act, alpha, d, oh0, R, o0, vt);
        } else {
          if (full_v) nk_gc_fwd_tile(yp, xg, wc, bc, act, alpha, d, oh0, rt, o0, V);
          else nk_gc_fwd_tile(yp, xg, wc, bc, act, alpha, d, oh0, rt, o0, vt);
        }
      }
  }
}

/* dx rows ih0.. (nr) by columns i0.. (nv vectors) of plane (n, ci): the
 * transposed convolution, gathering for each element the dy values its
 * terms (co, kh, kw) read, in that order. gp/mp: dy/ymask at (n, co0), the
 * group's first output channel; wk = w[co0][ci % Cg]; every: lanes 0, sw,
 * 2sw, ... of a 64-column tile. */
NK_INLINE void nk_gc_dx_tile(float *xp, const float *gp, const float *mp, const float *wk,
                             int act, float alpha, nk_gc d, uint64_t every, int ih0,
                             const int nr, int i0, const int nv) {
  nk_v acc[NK_GC_TILE];
  if (nr < 1 || nv < 1 || nr * nv > NK_GC_TILE) __builtin_unreachable();
  NK_UNROLL for (int i = 0; i < NK_GC_TILE; i++) acc[i] = nk_zero();
  size_t P = (size_t)d.Ho * d.Wo, KK = (size_t)d.Kh * d.Kw;
  for (int m = 0; m < d.Mg; m++)
    for (int kh = 0; kh < d.Kh; kh++) {
      /* dy row oh = (ih + pt - kh*dh) / sh when that divides, per dx row */
      const float *gr[NK_GC_TILE], *mr[NK_GC_TILE];
      uint64_t rm[NK_GC_TILE];
      for (int r = 0; r < nr; r++) {
        int t = ih0 + r + d.pt - kh * d.dh;
        int ok = t >= 0 && t % d.sh == 0 && t / d.sh < d.Ho;
        size_t row = m * P + (size_t)(ok ? t / d.sh : 0) * d.Wo;
        gr[r] = gp + row, mr[r] = mp ? mp + row : NULL, rm[r] = ok ? ~0ull : 0;
      }
      for (int kw = 0; kw < d.Kw; kw++) {
        nk_v a = nk_bcast(wk[m * d.Cg * KK + (size_t)kh * d.Kw + kw]);
        /* column iw reads dy column (iw + t0) / sw: the tile's columns with
         * i0 + l + t0 a multiple of sw in [0, Wo*sw), inside W */
        int t0 = d.pl - kw * d.dw, t = i0 + t0;
        uint64_t cols = nk_gc_range64(-t, nk_min(d.W - i0, d.Wo * d.sw - t));
        if (d.sw != 1) cols &= every << ((d.sw - t % d.sw) % d.sw);
        NK_GC_LOOPS(
          uint32_t lanes = (uint32_t)((cols & rm[r]) >> (16 * v)) & 0xFFFFu;
          nk_v g, yv;
          if (d.sw == 1) {
            g = nk_load_mask(gr[r] + (t + 16 * v), lanes);
            if (mp) yv = nk_load_mask(mr[r] + (t + 16 * v), lanes);
          } else {
            if (!lanes) continue; /* half the rows or more, for sh > 1 */
            int first = (t + 16 * v + __builtin_ctz(lanes)) / d.sw;
            g = nk_gc_load_expand(gr[r] + first, lanes);
            if (mp) yv = nk_gc_load_expand(mr[r] + first, lanes);
          }
          if (mp) g = nk_gc_actgrad(g, yv, act, alpha);
          acc[r * nv + v] = nk_gc_fma_mask(a, g, acc[r * nv + v], lanes);
        )
      }
    }
  NK_GC_LOOPS(
    int i = i0 + 16 * v;
    nk_store_mask(xp + (size_t)(ih0 + r) * d.W + i, nk_lanes(d.W - i), acc[r * nv + v]);
  )
}

#undef NK_GC_LOOPS

/* dW is blocked into at most NK_GC_CHAINS weights (kh, kw) at a time, one
 * independent FMA chain each, so that the chains overlap in the pipeline */
enum { NK_GC_CHAINS = 32 };

/* Columns [a, e) of dy row gr (ymask row mr) into the chains of a dW
 * block (and db's); with check 0 every row xr[r] is there and every column
 * inside every kw's span, so the loop runs without tests. */
NK_INLINE void nk_gc_dw_cols(float *acc, float *dbs, const float *const *xr, const float *gr,
                             const float *mr, int act, float alpha, nk_gc d, int col0,
                             const int *lo, const int *hi, int a, int e, const int nr,
                             const int nk, const int check) {
  float s = dbs ? *dbs : 0.0f;
  for (int ow = a; ow < e; ow++) {
    float g = mr ? nk_actgrad1(gr[ow], mr[ow], act, alpha) : gr[ow];
    int col = ow * d.sw + col0;
    if (dbs) s += g;
    for (int r = 0; r < nr; r++) {
      if (check && !xr[r]) continue;
      for (int j = 0; j < nk; j++)
        if (!check || (ow >= lo[j] && ow < hi[j]))
          acc[r * nk + j] = fmaf(g, xr[r][col + j * d.dw], acc[r * nk + j]);
    }
  }
  if (dbs) *dbs = s;
}

/* dW[co][c][kh0.., kw0..] for a block of nr x nk weights, one FMA chain
 * each over (n, oh, ow) per group of S images, the groups added as a tree,
 * and, with db, db[co] as one more chain of adds */
NK_INLINE void nk_gc_dw_block(float *dwc, float *db, const float *dy, const float *ymask,
                              const float *x, int act, float alpha, nk_gc d, int co, int c,
                              int kh0, const int nr, int kw0, const int nk, int S) {
  float acc[NK_GC_CHAINS + 1], dbs = 0.0f, *dbp = db ? &dbs : NULL;
  float pend[NK_TREE_LEVELS][NK_GC_CHAINS + 1];
  int lo[NK_GC_CHAINS], hi[NK_GC_CHAINS], mlo = 0, mhi = d.Wo;
  if (nr < 1 || nk < 1 || nr * nk > NK_GC_CHAINS) __builtin_unreachable();
  /* ow in [mlo, mhi) is inside every kw's span */
  for (int j = 0; j < nk; j++) {
    nk_gc_span((kw0 + j) * d.dw - d.pl, d.sw, d.W, d.Wo, &lo[j], &hi[j]);
    mlo = nk_max(mlo, lo[j]), mhi = nk_min(mhi, hi[j]);
  }
  if (mlo > mhi) mlo = mhi = d.Wo;
  size_t P = (size_t)d.Ho * d.Wo;
  int col0 = kw0 * d.dw - d.pl;
  for (int i = 0; i <= nr * nk; i++) acc[i] = 0.0f;
  for (int n = 0; n < d.N; n++) {
    if (n % S == 0) {
      for (int i = 0; i < nr * nk; i++) acc[i] = 0.0f;
      dbs = 0.0f;
    }
    const float *xc = x + ((size_t)n * d.Ci + (size_t)(co / d.Mg) * d.Cg + c) * d.H * d.W;
    const float *gp = dy + ((size_t)n * d.Co + co) * P;
    const float *mp = ymask ? ymask + ((size_t)n * d.Co + co) * P : NULL;
    for (int oh = 0; oh < d.Ho; oh++) {
      const float *xr[NK_GC_CHAINS];
      int nrows = 0;
      for (int r = 0; r < nr; r++) {
        int ih = oh * d.sh - d.pt + (kh0 + r) * d.dh;
        xr[r] = ih >= 0 && ih < d.H ? xc + (size_t)ih * d.W : NULL;
        nrows += xr[r] != NULL;
      }
      if (!nrows && !db) continue;
      const float *gr = gp + (size_t)oh * d.Wo, *mr = mp ? mp + (size_t)oh * d.Wo : NULL;
      if (nrows == nr) {
        nk_gc_dw_cols(acc, dbp, xr, gr, mr, act, alpha, d, col0, lo, hi, 0, mlo, nr, nk, 1);
        nk_gc_dw_cols(acc, dbp, xr, gr, mr, act, alpha, d, col0, lo, hi, mlo, mhi, nr, nk, 0);
        nk_gc_dw_cols(acc, dbp, xr, gr, mr, act, alpha, d, col0, lo, hi, mhi, d.Wo, nr, nk, 1);
      } else {
        nk_gc_dw_cols(acc, dbp, xr, gr, mr, act, alpha, d, col0, lo, hi, 0, d.Wo, nr, nk, 1);
      }
    }
    if (n % S == S - 1) { /* the group's sums (db's last) into the tree */
      acc[nr * nk] = dbs;
      nk_tree_fold(&pend[0][0], NK_GC_CHAINS + 1, acc, nr * nk + 1, n / S);
      dbs = acc[nr * nk];
    }
  }
  for (int r = 0; r < nr; r++)
    for (int j = 0; j < nk; j++)
      dwc[((size_t)c * d.Kh + kh0 + r) * d.Kw + kw0 + j] = acc[r * nk + j];
  if (db) *db = dbs;
}

NK_INLINE void nncc_conv2d_general_backward_team(
    float *restrict dx, float *restrict dW, float *restrict db, const float *restrict dy,
    const float *restrict ymask, const float *restrict x, const float *restrict w, int N, int Ci,
    int H, int W, int Co, int Kh, int Kw, int sh, int sw, int pt, int pl, int dh, int dw,
    int groups, int Ho, int Wo, int act, float alpha, int S) {
  nk_gc d = nk_gc_desc(N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo);
  size_t P = (size_t)Ho * Wo;
  if (act == NNCC_ACT_NONE) ymask = NULL;
  if (dx) {
    int V = nk_gc_tile_v(W), R = nk_gc_tile_r(W), nvec = nk_cdiv(W, 16);
    int nch = nk_cdiv(nvec, V), vt = nvec - (nch - 1) * V, rt = H % R;
    uint64_t every = nk_gc_every(sw);
#pragma omp for schedule(static) nowait
    for (int nci = 0; nci < N * Ci; nci++) {
      int n = nci / Ci, ci = nci % Ci, co0 = ci / d.Cg * d.Mg;
      float *xp = dx + (size_t)nci * H * W;
      const float *gp = dy + ((size_t)n * Co + co0) * P;
      const float *mp = ymask ? ymask + ((size_t)n * Co + co0) * P : NULL;
      const float *wk = w + ((size_t)co0 * d.Cg + ci % d.Cg) * Kh * Kw;
      for (int ih0 = 0; ih0 < H; ih0 += R)
        for (int ch = 0; ch < nch; ch++) {
          int i0 = ch * V * 16, full_v = ch < nch - 1;
          if (ih0 + R <= H) {
            if (full_v) nk_gc_dx_tile(xp, gp, mp, wk, act, alpha, d, every, ih0, R, i0, V);
            else nk_gc_dx_tile(xp, gp, mp, wk, act, alpha, d, every, ih0, R, i0, vt);
          } else {
            if (full_v) nk_gc_dx_tile(xp, gp, mp, wk, act, alpha, d, every, ih0, rt, i0, V);
            else nk_gc_dx_tile(xp, gp, mp, wk, act, alpha, d, every, ih0, rt, i0, vt);
          }
        }
    }
  }
  if (!dW) { /* db alone: the same chain of adds as with dW */
#pragma omp for schedule(static)
    for (int co = 0; co < (db ? Co : 0); co++) {
      float s = 0.0f, pend[NK_TREE_LEVELS];
      for (int n = 0; n < N; n++) {
        if (n % S == 0) s = 0.0f;
        for (size_t q = 0; q < P; q++) {
          size_t i = ((size_t)n * Co + co) * P + q;
          s += ymask ? nk_actgrad1(dy[i], ymask[i], act, alpha) : dy[i];
        }
        if (n % S == S - 1) nk_tree_fold(pend, 1, &s, 1, n / S);
      }
      db[co] = s;
    }
    return;
  }
  /* dW (and db with the first block), one output channel per iteration */
  int KB = nk_min(Kw, NK_GC_CHAINS), RB = nk_max(1, NK_GC_CHAINS / KB);
  int rt = Kh % RB, kt = Kw % KB;
#pragma omp for schedule(static)
  for (int co = 0; co < Co; co++) {
    float *dwc = dW + (size_t)co * d.Cg * Kh * Kw;
    for (int c = 0; c < d.Cg; c++)
      for (int kh0 = 0; kh0 < Kh; kh0 += RB)
        for (int kw0 = 0; kw0 < Kw; kw0 += KB) {
          float *dbc = db && c == 0 && kh0 == 0 && kw0 == 0 ? db + co : NULL;
          int full_r = kh0 + RB <= Kh, full_k = kw0 + KB <= Kw;
          if (full_r && full_k)
            nk_gc_dw_block(dwc, dbc, dy, ymask, x, act, alpha, d, co, c, kh0, RB, kw0, KB, S);
          else if (full_r)
            nk_gc_dw_block(dwc, dbc, dy, ymask, x, act, alpha, d, co, c, kh0, RB, kw0, kt, S);
          else if (full_k)
            nk_gc_dw_block(dwc, dbc, dy, ymask, x, act, alpha, d, co, c, kh0, rt, kw0, KB, S);
          else
            nk_gc_dw_block(dwc, dbc, dy, ymask, x, act, alpha, d, co, c, kh0, rt, kw0, kt, S);
        }
  }
}

/* adaptive max pooling: window i covers [floor(i*H/Ho), ceil((i+1)*H/Ho)),
 * as adaptive average pooling; first maximum wins, NaN wins, as maxpool2d */
NK_INLINE void nncc_adaptive_maxpool2d_forward_team(float *restrict y, const float *restrict x,
                                                    int NC, int H, int W, int Ho, int Wo) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < NC; nc++) {
    const float *xp = x + (size_t)nc * H * W;
    for (int i = 0; i < Ho; i++)
      for (int j = 0; j < Wo; j++) {
        int h0 = i * H / Ho, h1 = ((i + 1) * H + Ho - 1) / Ho;
        int w0 = j * W / Wo, w1 = ((j + 1) * W + Wo - 1) / Wo;
        y[((size_t)nc * Ho + i) * Wo + j] = xp[nk_pool_max_at(xp, H, W, h1 - h0, w1 - w0, h0, w0)];
      }
  }
}

/* dx = dy sent to each window's first maximum, summed in (i, j) order */
NK_INLINE void nncc_adaptive_maxpool2d_backward_team(float *restrict dx, const float *restrict dy,
                                                     const float *restrict x, int NC, int H,
                                                     int W, int Ho, int Wo) {
#pragma omp for schedule(static)
  for (int nc = 0; nc < NC; nc++) {
    const float *xp = x + (size_t)nc * H * W;
    float *g = dx + (size_t)nc * H * W;
    memset(g, 0, (size_t)H * W * sizeof(float));
    for (int i = 0; i < Ho; i++)
      for (int j = 0; j < Wo; j++) {
        int h0 = i * H / Ho, h1 = ((i + 1) * H + Ho - 1) / Ho;
        int w0 = j * W / Wo, w1 = ((j + 1) * W + Wo - 1) / Wo;
        g[nk_pool_max_at(xp, H, W, h1 - h0, w1 - w0, h0, w0)] +=
            dy[((size_t)nc * Ho + i) * Wo + j];
      }
  }
}

NK_WRAP(conv2d_general_forward,
        (float *y, const float *x, const float *w, const float *b, int N, int Ci, int H, int W,
         int Co, int Kh, int Kw, int sh, int sw, int pt, int pl, int dh, int dw, int groups,
         int Ho, int Wo, int act, float alpha),
        (y, x, w, b, N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo, act, alpha))
NK_WRAP(conv2d_general_backward,
        (float *dx, float *dW, float *db, const float *dy, const float *ymask, const float *x,
         const float *w, int N, int Ci, int H, int W, int Co, int Kh, int Kw, int sh, int sw,
         int pt, int pl, int dh, int dw, int groups, int Ho, int Wo, int act, float alpha, int S),
        (dx, dW, db, dy, ymask, x, w, N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pl, dh, dw, groups, Ho,
         Wo, act, alpha, S))
NK_WRAP(adaptive_maxpool2d_forward, (float *y, const float *x, int NC, int H, int W, int Ho, int Wo),
        (y, x, NC, H, W, Ho, Wo))
NK_WRAP(adaptive_maxpool2d_backward,
        (float *dx, const float *dy, const float *x, int NC, int H, int W, int Ho, int Wo),
        (dx, dy, x, NC, H, W, Ho, Wo))

/*
 * batchnorm2d over x[N][C][HW], N this process's share of a batch of NG
 * images.  Training: batch statistics in double, from each plane's sum and
 * centred sum of squares (nk_plane_stats; the conv before it may have
 * written them, prestats), combined per channel in groups of S images
 * added as a tree (the batch reductions above): first the mean, then the
 * centred sum of squares, each plane's plus HW (mean_n - mean)^2 (Chan et
 * al.'s pairwise update).  With rank_sum (SyncBatchNorm over MPI ranks)
 * each sum is completed over the ranks before it is used.  The running
 * statistics are updated as PyTorch does (unbiased variance, momentum).
 * stats holds 2C floats -- stats[c] = mean, stats[C + c] = 1/std, kept for
 * backward -- then 2C doubles of working sums (8-byte aligned); planes
 * the planes' statistics, N*C*2 doubles, forward's alone.  Eval: the
 * running statistics.  With HW = 1 (batchnorm1d) a plane is one value, and
 * the sums are the plain ones of the values.
 */

/* channel c's sum over the images (sq: its centred sum of squares about m)
 * from the planes' statistics ps[N][C][2], in groups of S images added as a
 * tree */
NK_INLINE double nk_bn_combine(const double *ps, int N, int C, int HW, int c, int S, double m,
                               int sq) {
  double s = 0.0, pend[NK_TREE_LEVELS];
  for (int n = 0; n < N; n++) {
    if (n % S == 0) s = 0.0;
    const double *p = ps + 2 * ((size_t)n * C + c);
    if (sq) {
      double d = p[0] / HW - m;
      s += p[1] + HW * (d * d);
    } else {
      s += p[0];
    }
    if (n % S == S - 1) nk_tree_fold_d(pend, 1, &s, 1, n / S);
  }
  return s;
}

/* the master thread sums v over the ranks while the team waits */
NK_INLINE void nk_rank_sum(nncc_rank_sum_fn rank_sum, void *ctx, double *v, size_t n) {
  if (!rank_sum) return;
#pragma omp master
  rank_sum(ctx, v, n);
#pragma omp barrier
}

/* y = act(batchnorm(x)): a fused activation (act, alpha as conv2d's) is
 * applied in the output loop, the same operations as its own kernel.
 * prestats: the conv before it wrote the planes' statistics. */
NK_INLINE void nncc_batchnorm2d_forward_team(float *restrict y, const float *restrict x,
                                             const float *restrict gamma,
                                             const float *restrict beta, float *restrict rmean,
                                             float *restrict rvar, float *restrict count,
                                             float *restrict stats, double *restrict ps, int N,
                                             int C, int HW, double eps, double momentum,
                                             int training, int prestats, int act, float alpha,
                                             int S, int NG, nncc_rank_sum_fn rank_sum,
                                             void *ctx) {
  const double M = (double)NG * HW;
  double *sum = (double *)(void *)(stats + 2 * C), *sq = sum + C;
  if (training && !prestats) {
#pragma omp for schedule(static)
    for (int k = 0; k < N * C; k++) nk_plane_stats(ps + 2 * (size_t)k, x + (size_t)k * HW, HW);
  }
  /* over MPI ranks each sum is completed before it is used; in one process
   * each channel's statistics need only its own sums (one loop, no barrier
   * between them) */
  if (training && rank_sum) {
#pragma omp for schedule(static)
    for (int c = 0; c < C; c++) sum[c] = nk_bn_combine(ps, N, C, HW, c, S, 0.0, 0);
    nk_rank_sum(rank_sum, ctx, sum, (size_t)C);
#pragma omp for schedule(static)
    for (int c = 0; c < C; c++) sq[c] = nk_bn_combine(ps, N, C, HW, c, S, sum[c] / M, 1);
    nk_rank_sum(rank_sum, ctx, sq, (size_t)C);
  }
#pragma omp for schedule(static)
  for (int c = 0; c < C; c++) {
    float mean, invstd;
    if (training) {
      if (!rank_sum) {
        sum[c] = nk_bn_combine(ps, N, C, HW, c, S, 0.0, 0);
        sq[c] = nk_bn_combine(ps, N, C, HW, c, S, sum[c] / M, 1);
      }
      double m = sum[c] / M, var = sq[c] / M;
      mean = (float)m;
      invstd = (float)(1.0 / sqrt(var + eps));
      rmean[c] = (float)((1.0 - momentum) * rmean[c] + momentum * m);
      rvar[c] = (float)((1.0 - momentum) * rvar[c] + momentum * var * M / (M > 1 ? M - 1 : 1));
      stats[c] = mean;
      stats[C + c] = invstd;
    } else {
      mean = rmean[c];
      invstd = (float)(1.0 / sqrt((double)rvar[c] + eps));
    }
    float scale = gamma[c] * invstd, shift = beta[c] - mean * scale;
    for (int n = 0; n < N; n++) {
      const float *xp = x + ((size_t)n * C + c) * HW;
      float *yp = y + ((size_t)n * C + c) * HW;
      for (int i = 0; i < HW; i++) yp[i] = nk_act1(xp[i] * scale + shift, act, alpha);
    }
  }
  if (training) {
#pragma omp single
    count[0] += 1.0f;
  }
}

/* The output gradient as batch norm's backward reads it: dy, gated by a
 * fused activation's derivative from its output ymask (act literal in the
 * generated code, so this folds). */
NK_INLINE float nk_bn_dy(const float *dy, const float *ymask, size_t k, int act, float alpha) {
  return act == NNCC_ACT_NONE ? dy[k] : nk_actgrad1(dy[k], ymask[k], act, alpha);
}

/* dx = gamma/std * (g - mean(g) - xhat * mean(g * xhat)) (skipped when dx
 * is NULL), g = dy gated by act from ymask (nk_bn_dy); dgamma =
 * sum(g * xhat), dbeta = sum(g), in double, in groups of S images and over
 * the ranks as forward's sums: dgamma and dbeta are complete on return
 * (NnccParam.synced) */
NK_INLINE void nncc_batchnorm2d_backward_team(float *restrict dx, float *restrict dgamma,
                                              float *restrict dbeta, const float *restrict dy,
                                              const float *restrict ymask,
                                              const float *restrict x,
                                              const float *restrict gamma,
                                              float *restrict stats, int N, int C, int HW,
                                              int act, float alpha, int S, int NG,
                                              nncc_rank_sum_fn rank_sum, void *ctx) {
  const double M = (double)NG * HW;
  double *sums = (double *)(void *)(stats + 2 * C); /* sum_dy[C], sum_dy_xhat[C] */
#pragma omp for schedule(static)
  for (int c = 0; c < C; c++) {
    float mean = stats[c], invstd = stats[C + c];
    double v[2] = {0.0, 0.0}, pend[NK_TREE_LEVELS][2];
    for (int n = 0; n < N; n++) {
      if (n % S == 0) v[0] = v[1] = 0.0;
      for (int i = 0; i < HW; i++) {
        size_t k = ((size_t)n * C + c) * HW + i;
        float g = nk_bn_dy(dy, ymask, k, act, alpha);
        v[0] += g;
        v[1] += (double)g * ((x[k] - mean) * invstd);
      }
      if (n % S == S - 1) nk_tree_fold_d(&pend[0][0], 2, v, 2, n / S);
    }
    sums[c] = v[0];
    sums[C + c] = v[1];
  }
  nk_rank_sum(rank_sum, ctx, sums, 2 * (size_t)C);
#pragma omp for schedule(static)
  for (int c = 0; c < C; c++) {
    float mean = stats[c], invstd = stats[C + c];
    double sum_dy = sums[c], sum_dy_xhat = sums[C + c];
    dgamma[c] = (float)sum_dy_xhat;
    dbeta[c] = (float)sum_dy;
    if (!dx) continue;
    float k1 = gamma[c] * invstd, k2 = (float)(sum_dy / M), k3 = (float)(sum_dy_xhat / M);
    for (int n = 0; n < N; n++)
      for (int i = 0; i < HW; i++) {
        size_t k = ((size_t)n * C + c) * HW + i;
        dx[k] = k1 * (nk_bn_dy(dy, ymask, k, act, alpha) - k2 - (x[k] - mean) * invstd * k3);
      }
  }
}

NK_WRAP(batchnorm2d_forward,
        (float *y, const float *x, const float *gamma, const float *beta, float *rmean, float *rvar,
         float *count, float *stats, double *planes, int N, int C, int HW, double eps, double momentum,
         int training, int prestats, int act, float alpha, int S, int NG, nncc_rank_sum_fn rank_sum,
         void *ctx),
        (y, x, gamma, beta, rmean, rvar, count, stats, planes, N, C, HW, eps, momentum, training,
         prestats, act, alpha, S, NG, rank_sum, ctx))
NK_WRAP(batchnorm2d_backward,
        (float *dx, float *dgamma, float *dbeta, const float *dy, const float *ymask, const float *x,
         const float *gamma, float *stats, int N, int C, int HW, int act, float alpha, int S, int NG,
         nncc_rank_sum_fn rank_sum, void *ctx),
        (dx, dgamma, dbeta, dy, ymask, x, gamma, stats, N, C, HW, act, alpha, S, NG, rank_sum, ctx))

#undef NK_WRAP

#endif /* NNCC_KERNELS_H */
