/*
 * test_kernels.c -- runtime/nncc_kernels.h against naive double-precision
 * references, plus determinism: 1 thread vs 2 threads must give the same
 * bits. With NNCC_KERNELS_DUMP=FILE set, a bit-exact hex dump of a fixed set
 * of results is written to FILE (cross_compiler.sh diffs gcc, clang and the
 * portable non-AVX-512 build with it).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* runtime sizes here: unrolling would only slow the compile (the results
 * are the same bits, which cross_compiler.sh checks) */
#ifndef NNCC_KERNELS_UNROLL
#define NNCC_KERNELS_NO_UNROLL
#endif
#include "nncc_kernels.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state;
static float frand(void) { /* uniform in [-1, 1), reproducible */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float *rand_buf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = frand();
  return p;
}
static void *scratch_buf(size_t bytes) {
  void *p = aligned_alloc(64, nk_align64(bytes ? bytes : 64));
  memset(p, 0xA5, nk_align64(bytes ? bytes : 64)); /* garbage: kernels must not read it */
  return p;
}
static void set_threads(int t) {
#ifdef _OPENMP
  omp_set_num_threads(t);
#else
  (void)t;
#endif
}

/* |got - ref| <= tol * scale for every element; scale[i] is the sum of the
 * absolute values of the terms that make up ref[i] */
static void expect_close(const char *what, const float *got, const double *ref,
                         const double *scale, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - ref[i]);
    double tol = 1e-5 * scale[i] + 1e-30;
    ck_assert_msg(err <= tol, "%s[%zu]: got %.9g want %.9g (err %.3g, tol %.3g)", what, i,
                  (double)got[i], ref[i], err, tol);
  }
}

/* ---- convolution ------------------------------------------------------ */

typedef struct { int N, Ci, H, W, Co, Kh, Kw, sh, sw, ph, pw; } Conv;
#define HO(c) (((c).H + 2 * (c).ph - (c).Kh) / (c).sh + 1)
#define WO(c) (((c).W + 2 * (c).pw - (c).Kw) / (c).sw + 1)

static const Conv conv_shapes[] = {
    {1, 1, 5, 5, 1, 1, 1, 1, 1, 0, 0},    {2, 1, 7, 6, 3, 3, 3, 1, 1, 1, 1},
    {3, 2, 9, 11, 5, 3, 3, 2, 2, 1, 1},   {7, 3, 8, 8, 17, 5, 5, 1, 1, 2, 2},
    {2, 4, 10, 7, 16, 1, 1, 1, 1, 3, 3},  {5, 3, 13, 9, 9, 5, 5, 2, 2, 0, 0},
    {1, 5, 6, 6, 20, 3, 3, 1, 1, 3, 3},   {4, 16, 12, 12, 32, 5, 5, 1, 1, 0, 0},
    {3, 8, 4, 4, 33, 3, 3, 1, 1, 1, 1},   {2, 6, 2, 2, 40, 3, 3, 1, 1, 1, 1},
    {6, 1, 28, 28, 16, 5, 5, 1, 1, 0, 0}, {2, 3, 11, 11, 8, 3, 3, 2, 2, 3, 3},
    {1, 2, 5, 5, 3, 5, 5, 2, 2, 2, 2},    {3, 7, 9, 5, 70, 3, 3, 1, 1, 0, 0},
    {2, 3, 7, 9, 4, 3, 5, 2, 1, 1, 2},    {4, 32, 10, 10, 64, 5, 5, 1, 1, 0, 0},
    {3, 1, 6, 6, 2, 5, 5, 1, 1, 0, 0},    {2, 9, 3, 3, 24, 1, 1, 2, 2, 0, 0},
    /* Winograd F(2x2, 5x5) (nk_wino_take; test_wino_taken): mnist_cnn's conv2
     * (both ways), odd outputs and a last block of 2 of 8 output channels,
     * rows of more than 16 tiles, a padded 10x10 */
    {3, 16, 24, 24, 32, 5, 5, 1, 1, 0, 0}, {2, 9, 13, 11, 10, 5, 5, 1, 1, 2, 2},
    {2, 8, 40, 38, 16, 5, 5, 1, 1, 2, 2},  {3, 12, 10, 10, 8, 5, 5, 1, 1, 2, 2},
};
#define NCONV (int)(sizeof conv_shapes / sizeof conv_shapes[0])
enum { NWINO_SHAPES = 4 }; /* the last ones */

static void conv_ref_fwd(double *y, double *scale, const float *x, const float *w,
                         const float *b, Conv c) {
  int Ho = HO(c), Wo = WO(c);
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double s = b ? b[co] : 0.0, a = b ? fabs(b[co]) : 0.0;
          for (int ci = 0; ci < c.Ci; ci++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                int h = oh * c.sh - c.ph + kh, ww = ow * c.sw - c.pw + kw;
                if (h < 0 || h >= c.H || ww < 0 || ww >= c.W) continue;
                double t = (double)x[((n * c.Ci + ci) * c.H + h) * c.W + ww] *
                           w[((co * c.Ci + ci) * c.Kh + kh) * c.Kw + kw];
                s += t, a += fabs(t);
              }
          size_t i = ((size_t)(n * c.Co + co) * Ho + oh) * Wo + ow;
          y[i] = s, scale[i] = a;
        }
}

/* dx, dw, db (and scales) from the gated gradient g */
static void conv_ref_bwd(double *dx, double *sdx, double *dw, double *sdw, double *db,
                         double *sdb, const float *g, const float *x, const float *w, Conv c) {
  int Ho = HO(c), Wo = WO(c);
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
  memset(dx, 0, nx * sizeof(double)), memset(sdx, 0, nx * sizeof(double));
  memset(dw, 0, nw * sizeof(double)), memset(sdw, 0, nw * sizeof(double));
  memset(db, 0, c.Co * sizeof(double)), memset(sdb, 0, c.Co * sizeof(double));
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double gv = g[((size_t)(n * c.Co + co) * Ho + oh) * Wo + ow];
          db[co] += gv, sdb[co] += fabs(gv);
          for (int ci = 0; ci < c.Ci; ci++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                int h = oh * c.sh - c.ph + kh, ww = ow * c.sw - c.pw + kw;
                if (h < 0 || h >= c.H || ww < 0 || ww >= c.W) continue;
                size_t xi = ((size_t)(n * c.Ci + ci) * c.H + h) * c.W + ww;
                size_t wi = ((size_t)(co * c.Ci + ci) * c.Kh + kh) * c.Kw + kw;
                dx[xi] += gv * w[wi], sdx[xi] += fabs(gv * w[wi]);
                dw[wi] += gv * x[xi], sdw[wi] += fabs(gv * x[xi]);
              }
        }
}

/* all outputs of one forward + backward, run with nthreads threads */
typedef struct { float *y, *dx, *dw, *db; } ConvOut;

static ConvOut conv_run(Conv c, const float *x, const float *w, const float *b, const float *dy,
                        const float *ymask, int act, float alpha, int want_dx, int nthreads) {
  int Ho = HO(c), Wo = WO(c);
  ConvOut o;
  o.y = malloc((size_t)c.N * c.Co * Ho * Wo * sizeof(float));
  o.dx = want_dx ? malloc((size_t)c.N * c.Ci * c.H * c.W * sizeof(float)) : NULL;
  o.dw = malloc((size_t)c.Co * c.Ci * c.Kh * c.Kw * sizeof(float));
  o.db = malloc((size_t)c.Co * sizeof(float));
  set_threads(nthreads);
  void *s1 = scratch_buf(nncc_conv2d_forward_scratch(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh,
                                                     c.sw, c.ph, c.pw, nncc_team_size()));
  nncc_conv2d_forward(o.y, x, w, b, s1, c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.ph,
                      c.pw, act, alpha);
  void *s2 = scratch_buf(nncc_conv2d_backward_scratch(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw,
                                                      c.sh, c.sw, c.ph, c.pw, nncc_team_size(), c.N));
  nncc_conv2d_backward(o.dx, o.dw, o.db, dy, ymask, x, w, s2, c.N, c.Ci, c.H, c.W, c.Co, c.Kh,
                       c.Kw, c.sh, c.sw, c.ph, c.pw, act, alpha, c.N);
  free(s1), free(s2);
  return o;
}
static void conv_free(ConvOut o) { free(o.y), free(o.dx), free(o.dw), free(o.db); }

/* forward with/without bias and ReLU; backward with/without the ReLU gate */
START_TEST(test_conv_vs_reference) {
  Conv c = conv_shapes[_i];
  int Ho = HO(c), Wo = WO(c);
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
  size_t ny = (size_t)c.N * c.Co * Ho * Wo;
  rng_state = 1000 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  double *ry = malloc(ny * sizeof(double)), *sy = malloc(ny * sizeof(double));
  double *rdx = malloc(nx * sizeof(double)), *sdx = malloc(nx * sizeof(double));
  double *rdw = malloc(nw * sizeof(double)), *sdw = malloc(nw * sizeof(double));
  double *rdb = malloc(c.Co * sizeof(double)), *sdb = malloc(c.Co * sizeof(double));
  float *g = malloc(ny * sizeof(float));
  for (int variant = 0; variant < 2; variant++) {
    int relu = variant == 1;
    const float *bias = variant == 1 ? b : NULL;
    ConvOut o = conv_run(c, x, w, bias, dy, relu ? NULL : NULL, relu, 0.0f, 1, 2);
    conv_ref_fwd(ry, sy, x, w, bias, c);
    if (relu)
      for (size_t i = 0; i < ny; i++) ry[i] = ry[i] > 0 ? ry[i] : 0;
    expect_close("y", o.y, ry, sy, ny);
    /* backward gated by the (post-ReLU) forward output */
    conv_free(o);
    o = conv_run(c, x, w, bias, dy, NULL, relu, 0.0f, 1, 2);
    float *ysave = o.y;
    o.y = NULL;
    conv_free(o);
    o = conv_run(c, x, w, bias, dy, relu ? ysave : NULL, relu, 0.0f, 1, 2);
    for (size_t i = 0; i < ny; i++) g[i] = relu ? (ysave[i] > 0 ? dy[i] : 0) : dy[i];
    conv_ref_bwd(rdx, sdx, rdw, sdw, rdb, sdb, g, x, w, c);
    expect_close("dx", o.dx, rdx, sdx, nx);
    expect_close("dw", o.dw, rdw, sdw, nw);
    expect_close("db", o.db, rdb, sdb, c.Co);
    free(ysave);
    conv_free(o);
  }
  free(x), free(w), free(b), free(dy), free(g);
  free(ry), free(sy), free(rdx), free(sdx), free(rdw), free(sdw), free(rdb), free(sdb);
}
END_TEST

/* The engine's padded convolutions bit for bit against one fmaf chain per
 * output in its order, (c, kh, kw), that skips the padding: the engine
 * multiplies the padding by zero, which must change no bit (each such term
 * is +-0, and an accumulator that starts at +0 and only adds is never -0).
 * Backward data is the engine's transposed convolution (dy padded by
 * K-1-p, the kernel flipped) where nk_col_plan leaves it to the engine.
 * The shapes give the forward each layout (direct and rows) over padding
 * on every ISA (backward data takes rows only where direct wastes more
 * than these small shapes do: vgg16's 16x16 layers on AVX2). */
static const Conv engine_pad_shapes[] = {
    {3, 3, 16, 16, 5, 3, 3, 1, 1, 1, 1}, {2, 4, 20, 20, 6, 5, 5, 1, 1, 2, 2},
    {4, 2, 9, 30, 3, 3, 3, 1, 1, 1, 1},  {2, 3, 17, 19, 18, 5, 3, 1, 1, 2, 1},
    {5, 2, 8, 8, 4, 3, 3, 1, 1, 1, 1},   {2, 8, 16, 16, 8, 3, 3, 1, 1, 1, 1},
    {2, 3, 24, 24, 4, 5, 5, 1, 1, 0, 0},
};
#define NENGINEPAD (int)(sizeof engine_pad_shapes / sizeof engine_pad_shapes[0])

START_TEST(test_engine_padding_bits) {
  Conv c = engine_pad_shapes[_i];
  int Ho = HO(c), Wo = WO(c);
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
  size_t ny = (size_t)c.N * c.Co * Ho * Wo;
  nk_conv f = nk_conv_fwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, 1, 1, c.ph, c.pw);
  nk_conv bd = nk_conv_bwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, 1, 1, c.ph, c.pw);
  int dx_engine = !nk_col_plan(f).use;
  rng_state = 900 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  ConvOut o = conv_run(c, x, w, b, dy, NULL, NNCC_ACT_NONE, 0.0f, 1, 2);
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          float acc = 0.0f;
          for (int ci = 0; ci < c.Ci; ci++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                int h = oh - c.ph + kh, ww = ow - c.pw + kw;
                if (h < 0 || h >= c.H || ww < 0 || ww >= c.W) continue;
                acc = fmaf(w[((co * c.Ci + ci) * c.Kh + kh) * c.Kw + kw],
                           x[(((size_t)n * c.Ci + ci) * c.H + h) * c.W + ww], acc);
              }
          acc = acc + b[co];
          size_t yi = (((size_t)n * c.Co + co) * Ho + oh) * Wo + ow;
          ck_assert_msg(memcmp(&acc, &o.y[yi], 4) == 0, "shape %d (forward mode %d) y[%zu]", _i,
                        nk_engine_plan(f).mode, yi);
        }
  for (int n = 0; dx_engine && n < c.N; n++)
    for (int ci = 0; ci < c.Ci; ci++)
      for (int h = 0; h < c.H; h++)
        for (int ww = 0; ww < c.W; ww++) {
          float acc = 0.0f;
          for (int co = 0; co < c.Co; co++)
            for (int fh = 0; fh < c.Kh; fh++)
              for (int fw = 0; fw < c.Kw; fw++) {
                int kh = c.Kh - 1 - fh, kw = c.Kw - 1 - fw, th = h + c.ph - kh, tw = ww + c.pw - kw;
                if (th < 0 || th >= Ho || tw < 0 || tw >= Wo) continue;
                acc = fmaf(w[((co * c.Ci + ci) * c.Kh + kh) * c.Kw + kw],
                           dy[(((size_t)n * c.Co + co) * Ho + th) * Wo + tw], acc);
              }
          size_t xi = (((size_t)n * c.Ci + ci) * c.H + h) * c.W + ww;
          ck_assert_msg(memcmp(&acc, &o.dx[xi], 4) == 0, "shape %d (backward-data mode %d) dx[%zu]",
                        _i, nk_engine_plan(bd).mode, xi);
        }
  conv_free(o);
  free(x), free(w), free(b), free(dy);
}
END_TEST

/* the shapes above cover both layouts (forward) and the engine's backward
 * data on every ISA */
START_TEST(test_engine_padding_modes) {
  int seen = 0;
  for (int i = 0; i < NENGINEPAD; i++) {
    Conv c = engine_pad_shapes[i];
    nk_conv f = nk_conv_fwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, 1, 1, c.ph, c.pw);
    nk_conv bd = nk_conv_bwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, 1, 1, c.ph, c.pw);
    if (c.ph) seen |= 1 << nk_engine_plan(f).mode;
    if (!nk_col_plan(f).use) seen |= 8 << nk_engine_plan(bd).mode;
  }
  ck_assert_msg((seen & (1 << NK_DIRECT)) && (seen & (1 << NK_ROWS)), "forward modes 0x%x", seen);
  ck_assert_msg(seen & ((8 << NK_DIRECT) | (8 << NK_ROWS)), "backward modes 0x%x", seen);
}
END_TEST

/* nk_wino_group tries sixteen group sizes, in line; it must find what the
 * search over every size from 1 to N finds (the fewest wasted columns
 * among the groups that fit, the smallest on a tie), for planes of 1 to
 * 40 tiles a side, 1 to 512 channels and batches of 1 to 300 */
static int wino_group_search(nk_conv d) {
  int T = nk_wino_th(d) * nk_wino_tw(d), G = 1;
  double best = 2;
  for (int g = 1; g <= d.N; g++) {
    if (g > 1 && nk_wino_vbytes(d.C, nk_wino_cols(d, g)) > NNCC_WINO_V_BYTES) break;
    double waste = 1.0 - (double)g * T / nk_wino_cols(d, g);
    if (waste < best - 1e-9) best = waste, G = g;
  }
  return G;
}

START_TEST(test_wino_group) {
  static const int Ns[] = {1, 2, 3, 7, 16, 17, 64, 256, 300};
  static const int Cs[] = {1, 3, 8, 16, 32, 64, 100, 256, 512};
  int checked = 0, above1 = 0, largest = 0;
  for (int h = 2; h <= 80; h += 3)
    for (int w = 2; w <= 80; w += 5)
      for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
        for (size_t ci = 0; ci < sizeof Cs / sizeof *Cs; ci++) {
          nk_conv d = nk_conv_fwd_desc(Ns[ni], Cs[ci], h + 4, w + 4, 16, 5, 5, 1, 1, 0, 0);
          int g = nk_wino_group(d), want = wino_group_search(d);
          ck_assert_msg(g == want, "N %d C %d Ho %d Wo %d: %d, the search %d", d.N, d.C, d.Ho,
                        d.Wo, g, want);
          checked++, above1 += g > 1, largest = nk_max(largest, g);
        }
  /* not only groups of one, and up to the sixteenth candidate */
  ck_assert_int_gt(above1, checked / 10);
  ck_assert_int_eq(largest, 16);
}
END_TEST

/* The Winograd shapes of conv_shapes take it, forward and data gradient,
 * and the others (3x3, strided, one channel) do not, nor does the data
 * gradient of mnist_cnn's conv3 (32 -> 64 channels, 10x10: mostly
 * padding).  Their agreement with the reference is
 * test_conv_vs_reference's, at its tolerance. */
START_TEST(test_wino_taken) {
  int fwd = 0, bwd = 0, conv3 = 0;
  for (int i = 0; i < NCONV; i++) {
    Conv c = conv_shapes[i];
    nk_conv f = nk_conv_fwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.ph, c.pw);
    nk_conv bd = nk_conv_bwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.ph, c.pw);
    int wf = nk_engine_plan(f).mode == NK_WINO, wb = !nk_col_plan(f).use && nk_engine_plan(bd).mode == NK_WINO;
    ck_assert_int_eq(wf, nk_wino_take(f) > 0);
    ck_assert_int_eq(wb, nk_wino_take(bd) > 0);
    if (i < NCONV - NWINO_SHAPES) {
      ck_assert_msg((!wf && !wb) || (c.Kh == 5 && c.Ci >= 8), "shape %d", i);
      if (c.Ci == 32 && c.H == 10 && c.Co == 64) conv3 = 1, ck_assert(wf && !wb);
      continue;
    }
    fwd += wf, bwd += wb;
  }
  ck_assert_int_eq(fwd, NWINO_SHAPES);
  ck_assert_int_eq(bwd, NWINO_SHAPES);
  ck_assert(conv3);
}
END_TEST

/* Winograd with the max pool in its epilogue: the bits of the conv, then
 * the pool; and 1, 2 and 3 threads give the same bits */
START_TEST(test_wino_pool_epilogue) {
  Conv c = conv_shapes[NCONV - NWINO_SHAPES + _i];
  int Ho = HO(c), Wo = WO(c), pHo = Ho / 2, pWo = Wo / 2;
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, ny = (size_t)c.N * c.Co * Ho * Wo;
  size_t np = (size_t)c.N * c.Co * pHo * pWo;
  rng_state = 3000 + _i;
  float *x = rand_buf(nx), *w = rand_buf((size_t)c.Co * c.Ci * 25), *b = rand_buf(c.Co);
  float *y[4], *py[4];
  for (int t = 0; t < 4; t++) {
    set_threads(t ? t : 2);
    void *s = scratch_buf(nncc_conv2d_forward_scratch(c.N, c.Ci, c.H, c.W, c.Co, 5, 5, 1, 1, c.ph,
                                                      c.pw, nncc_team_size()));
    y[t] = malloc(ny * sizeof(float)), py[t] = malloc(np * sizeof(float));
    if (t == 0) {
      nncc_conv2d_forward(y[t], x, w, b, s, c.N, c.Ci, c.H, c.W, c.Co, 5, 5, 1, 1, c.ph, c.pw,
                          NNCC_ACT_RELU, 0.0f);
      nncc_maxpool2d_forward(py[t], y[t], c.N, c.Co, Ho, Wo, 2, 2, 2, 2, 0, 0, pHo, pWo);
    } else {
#pragma omp parallel
      nncc_conv2d_forward_pool_team(y[t], py[t], x, w, b, s, c.N, c.Ci, c.H, c.W, c.Co, 5, 5, 1,
                                    1, c.ph, c.pw, NNCC_ACT_RELU, 0.0f, 2, 2, 2, 2, 0, 0, pHo, pWo);
    }
    free(s);
    ck_assert_msg(memcmp(y[0], y[t], ny * sizeof(float)) == 0, "shape %d, %d threads: y", _i, t);
    ck_assert_msg(memcmp(py[0], py[t], np * sizeof(float)) == 0, "shape %d, %d threads: pool", _i, t);
  }
  for (int t = 0; t < 4; t++) free(y[t]), free(py[t]);
  free(x), free(w), free(b);
}
END_TEST

/* dx may be skipped; dw and db must not change */
START_TEST(test_conv_skip_dx) {
  Conv c = {3, 2, 9, 8, 5, 3, 3, 1, 1, 1, 1};
  size_t ny = (size_t)c.N * c.Co * HO(c) * WO(c);
  rng_state = 7;
  float *x = rand_buf((size_t)c.N * c.Ci * c.H * c.W), *w = rand_buf((size_t)c.Co * c.Ci * 9);
  float *dy = rand_buf(ny);
  ConvOut a = conv_run(c, x, w, NULL, dy, NULL, 0, 0.0f, 1, 2);
  ConvOut b = conv_run(c, x, w, NULL, dy, NULL, 0, 0.0f, 0, 2);
  ck_assert(memcmp(a.dw, b.dw, (size_t)c.Co * c.Ci * 9 * sizeof(float)) == 0);
  ck_assert(memcmp(a.db, b.db, (size_t)c.Co * sizeof(float)) == 0);
  conv_free(a), conv_free(b);
  free(x), free(w), free(dy);
}
END_TEST

/* the same bits from 1 and 2 threads, ReLU and gate on */
START_TEST(test_conv_threads) {
  Conv c = conv_shapes[_i];
  int Ho = HO(c), Wo = WO(c);
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
  size_t ny = (size_t)c.N * c.Co * Ho * Wo;
  rng_state = 2000 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  float *mask = rand_buf(ny);
  ConvOut o1 = conv_run(c, x, w, b, dy, mask, 1, 0.0f, 1, 1);
  ConvOut o2 = conv_run(c, x, w, b, dy, mask, 1, 0.0f, 1, 2);
  ck_assert(memcmp(o1.y, o2.y, ny * sizeof(float)) == 0);
  ck_assert(memcmp(o1.dx, o2.dx, nx * sizeof(float)) == 0);
  ck_assert(memcmp(o1.dw, o2.dw, nw * sizeof(float)) == 0);
  ck_assert(memcmp(o1.db, o2.db, c.Co * sizeof(float)) == 0);
  conv_free(o1), conv_free(o2);
  free(x), free(w), free(b), free(dy), free(mask);
}
END_TEST

/* ---- linear ----------------------------------------------------------- */

typedef struct { int N, I, O; } Lin;
static const Lin lin_shapes[] = {{1, 1, 1},   {7, 5, 3},     {9, 17, 33},  {16, 64, 48},
                                 {13, 576, 100}, {3, 100, 10}, {20, 33, 70}, {8, 48, 129}};
#define NLIN (int)(sizeof lin_shapes / sizeof lin_shapes[0])

typedef struct { float *y, *dx, *dw, *db; } LinOut;
static LinOut lin_run(Lin l, const float *x, const float *w, const float *b, const float *dy,
                      const float *ymask, int act, float alpha, int nthreads) {
  LinOut o;
  o.y = malloc((size_t)l.N * l.O * sizeof(float));
  o.dx = malloc((size_t)l.N * l.I * sizeof(float));
  o.dw = malloc((size_t)l.O * l.I * sizeof(float));
  o.db = malloc((size_t)l.O * sizeof(float));
  set_threads(nthreads);
  void *s1 = scratch_buf(nncc_linear_forward_scratch(l.N, l.I, l.O));
  void *s2 = scratch_buf(nncc_linear_backward_scratch(l.N, l.I, l.O));
  nncc_linear_forward(o.y, x, w, b, s1, l.N, l.I, l.O, act, alpha);
  nncc_linear_backward(o.dx, o.dw, o.db, dy, ymask, x, w, s2, l.N, l.I, l.O, act, alpha, l.N);
  free(s1), free(s2);
  return o;
}
static void lin_free(LinOut o) { free(o.y), free(o.dx), free(o.dw), free(o.db); }

START_TEST(test_linear_vs_reference) {
  Lin l = lin_shapes[_i];
  rng_state = 3000 + _i;
  float *x = rand_buf((size_t)l.N * l.I), *w = rand_buf((size_t)l.O * l.I);
  float *b = rand_buf(l.O), *dy = rand_buf((size_t)l.N * l.O);
  size_t ny = (size_t)l.N * l.O, nx = (size_t)l.N * l.I, nw = (size_t)l.O * l.I;
  double *ry = malloc(ny * 8), *sy = malloc(ny * 8), *rdx = calloc(nx, 8), *sdx = calloc(nx, 8);
  double *rdw = calloc(nw, 8), *sdw = calloc(nw, 8), *rdb = calloc(l.O, 8), *sdb = calloc(l.O, 8);
  float *g = malloc(ny * sizeof(float));
  LinOut o0 = lin_run(l, x, w, b, dy, NULL, 1, 0.0f, 2); /* y for the gate */
  LinOut o = lin_run(l, x, w, b, dy, o0.y, 1, 0.0f, 2);
  for (int n = 0; n < l.N; n++)
    for (int k = 0; k < l.O; k++) {
      double s = b[k], a = fabs(b[k]);
      for (int i = 0; i < l.I; i++) {
        double t = (double)x[n * l.I + i] * w[k * l.I + i];
        s += t, a += fabs(t);
      }
      ry[n * l.O + k] = s > 0 ? s : 0, sy[n * l.O + k] = a;
      g[n * l.O + k] = o0.y[n * l.O + k] > 0 ? dy[n * l.O + k] : 0;
    }
  for (int n = 0; n < l.N; n++)
    for (int k = 0; k < l.O; k++) {
      double gv = g[n * l.O + k];
      rdb[k] += gv, sdb[k] += fabs(gv);
      for (int i = 0; i < l.I; i++) {
        rdx[n * l.I + i] += gv * w[k * l.I + i], sdx[n * l.I + i] += fabs(gv * w[k * l.I + i]);
        rdw[k * l.I + i] += gv * x[n * l.I + i], sdw[k * l.I + i] += fabs(gv * x[n * l.I + i]);
      }
    }
  expect_close("y", o.y, ry, sy, ny);
  expect_close("dx", o.dx, rdx, sdx, nx);
  expect_close("dw", o.dw, rdw, sdw, nw);
  expect_close("db", o.db, rdb, sdb, l.O);
  LinOut o1 = lin_run(l, x, w, b, dy, o0.y, 1, 0.0f, 1);
  ck_assert(memcmp(o.y, o1.y, ny * 4) == 0 && memcmp(o.dx, o1.dx, nx * 4) == 0);
  ck_assert(memcmp(o.dw, o1.dw, nw * 4) == 0 && memcmp(o.db, o1.db, l.O * 4) == 0);
  lin_free(o0), lin_free(o), lin_free(o1);
  free(x), free(w), free(b), free(dy), free(g);
  free(ry), free(sy), free(rdx), free(sdx), free(rdw), free(sdw), free(rdb), free(sdb);
}
END_TEST

/* ---- pooling and ReLU ------------------------------------------------- */

typedef struct { int N, C, H, W, Kh, Kw, sh, sw, ph, pw; } Pool;
static const Pool pool_shapes[] = {{2, 3, 8, 8, 2, 2, 2, 2, 0, 0},   {1, 2, 7, 9, 3, 3, 2, 2, 1, 1},
                                   {3, 1, 5, 6, 3, 2, 1, 1, 1, 0},   {2, 4, 24, 24, 2, 2, 2, 2, 0, 0},
                                   {1, 3, 6, 6, 3, 3, 3, 3, 0, 0}};
#define NPOOL (int)(sizeof pool_shapes / sizeof pool_shapes[0])

START_TEST(test_pool_vs_reference) {
  Pool p = pool_shapes[_i];
  int Ho = (p.H + 2 * p.ph - p.Kh) / p.sh + 1, Wo = (p.W + 2 * p.pw - p.Kw) / p.sw + 1;
  size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * Ho * Wo;
  rng_state = 4000 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i += 5) x[i] = x[i / 2]; /* ties: first max wins */
  for (size_t i = 0; i < nx; i += 7) x[i] = 0.25f;
  float *y = malloc(ny * 4), *dx = malloc(nx * 4), *ya = malloc(ny * 4), *dxa = malloc(nx * 4);
  double *rdx = calloc(nx, 8), *rdxa = calloc(nx, 8);
  set_threads(2);
  nncc_maxpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo);
  nncc_maxpool2d_backward(dx, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                          Wo, NNCC_ACT_NONE, 0.0f);
  nncc_avgpool2d_forward(ya, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo, 1);
  nncc_avgpool2d_backward(dxa, dy, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo,
                          1);
  for (int nc = 0; nc < p.N * p.C; nc++)
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        int best = -1;
        double s = 0;
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, w = ow * p.sw - p.pw + j;
            if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
            size_t xi = (size_t)nc * p.H * p.W + h * p.W + w;
            s += x[xi];
            if (best < 0 || x[xi] > x[best]) best = (int)xi;
          }
        size_t yi = (size_t)nc * Ho * Wo + oh * Wo + ow;
        ck_assert_msg(y[yi] == x[best], "maxpool y[%zu]", yi);
        rdx[best] += dy[yi];
        ck_assert_msg(fabs(ya[yi] - s / (p.Kh * p.Kw)) <= 1e-6, "avgpool y[%zu]", yi);
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, w = ow * p.sw - p.pw + j;
            if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
            rdxa[(size_t)nc * p.H * p.W + h * p.W + w] += (double)dy[yi] / (p.Kh * p.Kw);
          }
      }
  for (size_t i = 0; i < nx; i++) {
    ck_assert_msg(fabs(dx[i] - rdx[i]) <= 1e-6, "maxpool dx[%zu]: %g vs %g", i, dx[i], rdx[i]);
    ck_assert_msg(fabs(dxa[i] - rdxa[i]) <= 1e-6, "avgpool dx[%zu]", i);
  }
  free(x), free(dy), free(y), free(dx), free(ya), free(dxa), free(rdx), free(rdxa);
}
END_TEST

/* The 2x2 stride-2 max pool, bit for bit against its rule, on the values
 * that test it (ties, +-0, +-inf, NaNs) and the shapes that take each of
 * its paths: whole vector steps in place (Wo a multiple of the step),
 * blocks of rows copied to L1 (a short row, rows spanning a block, a
 * partial last block, Wo = 1), a row too long for a block (Wo > 256), and
 * windows that don't tile x (odd H, W).  The rule: the first element that
 * is greater than the maximum so far, or a NaN where it is not, becomes the
 * maximum; it alone gets 0 + dy (gated by relu from x itself), every other
 * element +0. */
static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static float pick_value(void) {
  static const float v[] = {0.0f, -0.0f, 1.0f, -1.0f, NAN, -NAN, INFINITY, -INFINITY, 0.5f, 2.0f};
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  unsigned k = (unsigned)(rng_state >> 33) % 14;
  return k < 10 ? v[k] : (float)(k - 12);
}
static const int pool2_shapes[][3] = {{7, 20, 20}, {5, 6, 6},   {3, 2, 2},   {9, 14, 14},
                                      {2, 32, 32}, {3, 16, 16}, {11, 10, 6}, {40, 2, 2},
                                      {1, 2, 600}, {3, 5, 9},   {2, 4, 514}, {17, 2, 64}};
#define NPOOL2 (int)(sizeof pool2_shapes / sizeof pool2_shapes[0])

START_TEST(test_pool2x2_bits) {
  int NC = pool2_shapes[_i][0], H = pool2_shapes[_i][1], W = pool2_shapes[_i][2];
  int Ho = H / 2, Wo = W / 2;
  size_t nx = (size_t)NC * H * W, ny = (size_t)NC * Ho * Wo;
  rng_state = 4100 + _i;
  float *x = malloc(nx * 4), *dy = malloc(ny * 4), *y = malloc(ny * 4), *dx = malloc(nx * 4);
  for (size_t i = 0; i < nx; i++) x[i] = pick_value();
  for (size_t i = 0; i < ny; i++) dy[i] = pick_value();
  for (int act = NNCC_ACT_NONE; act <= NNCC_ACT_RELU; act++) {
    set_threads(3);
    nncc_maxpool2d_forward(y, x, 1, NC, H, W, 2, 2, 2, 2, 0, 0, Ho, Wo);
    memset(dx, 0xA5, nx * 4);
    nncc_maxpool2d_backward(dx, dy, x, 1, NC, H, W, 2, 2, 2, 2, 0, 0, Ho, Wo, act, 0.0f);
    for (int nc = 0; nc < NC; nc++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          size_t xi = ((size_t)nc * H + h) * W + w;
          float want = 0.0f;
          if (h < 2 * Ho && w < 2 * Wo) {
            size_t yi = ((size_t)nc * Ho + h / 2) * Wo + w / 2, best = 0;
            for (int k = 0; k < 4; k++) {
              size_t e = ((size_t)nc * H + (h & ~1) + k / 2) * W + (w & ~1) + k % 2;
              if (k == 0 || x[e] > x[best] || (isnan(x[e]) && !isnan(x[best]))) best = e;
            }
            ck_assert_msg(bits_of(y[yi]) == bits_of(x[best]), "%dx%dx%d y[%zu]", NC, H, W, yi);
            if (best == xi && (act == NNCC_ACT_NONE || x[xi] > 0.0f)) want = 0.0f + dy[yi];
          }
          ck_assert_msg(bits_of(dx[xi]) == bits_of(want), "%dx%dx%d act %d dx[%zu]: %a, want %a",
                        NC, H, W, act, xi, (double)dx[xi], (double)want);
        }
  }
  free(x), free(dy), free(y), free(dx);
}
END_TEST

START_TEST(test_relu) {
  float x[6] = {-1.0f, 0.0f, -0.0f, 2.5f, NAN, 1e-30f}, y[6], dx[6];
  float dy[6] = {1, 2, 3, 4, 5, 6};
  nncc_relu_forward(y, x, 6);
  nncc_relu_backward(dx, dy, y, 6);
  ck_assert(y[0] == 0.0f && !signbit(y[0]) && y[1] == 0.0f && y[2] == 0.0f && !signbit(y[2]));
  ck_assert(y[3] == 2.5f && isnan(y[4]) && y[5] == 1e-30f);
  ck_assert(dx[0] == 0 && dx[1] == 0 && dx[2] == 0 && dx[3] == 4 && dx[4] == 0 && dx[5] == 6);
}
END_TEST

/* ---- activations, fused activations, concat copies -------------------- */

/* The elementwise activations, one case each (leaky with several slopes). */
/* kind: 0 sigmoid 1 tanh 2 relu6 3 leaky (slope) 4 hardtanh(-1, slope) */
typedef struct { int kind; float slope; } ActCase;
static const ActCase act_cases[] = {{0, 0}, {1, 0}, {2, 0}, {3, 0.01f}, {3, 0.0f}, {3, -0.5f}, {3, 1.5f},
                                    {4, 6.0f}, {4, 0.5f}};
#define NACTCASE (int)(sizeof act_cases / sizeof act_cases[0])
enum { NACT = 1000 };

/* the special values first (NaN, +-0, 6 and its neighbours, subnormals,
 * infinities, large values), then a sweep over [-10, 10) */
static float *act_inputs(void) {
  float special[] = {0.0f, -0.0f, 6.0f, -6.0f, nextafterf(6.0f, 0.0f), nextafterf(6.0f, 7.0f),
                     nextafterf(0.0f, 1.0f), nextafterf(0.0f, -1.0f), 1e-30f, -1e-30f, 20.0f,
                     -20.0f, 88.0f, -88.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN, -NAN};
  float *x = rand_buf(NACT);
  for (size_t i = 0; i < NACT; i++) x[i] *= 10.0f;
  memcpy(x, special, sizeof special);
  return x;
}
static void act_fwd(ActCase a, float *y, const float *x, size_t n) {
  switch (a.kind) {
  case 0: nncc_sigmoid_forward(y, x, n); break;
  case 1: nncc_tanh_forward(y, x, n); break;
  case 2: nncc_relu6_forward(y, x, n); break;
  case 4: nncc_hardtanh_forward(y, x, -1.0f, a.slope, n); break;
  default: nncc_leaky_relu_forward(y, x, a.slope, n); break;
  }
}
/* the saved ref is y, except x for leaky with a negative slope */
static void act_bwd(ActCase a, float *dx, const float *dy, const float *y, const float *x, size_t n) {
  switch (a.kind) {
  case 0: nncc_sigmoid_backward(dx, dy, y, n); break;
  case 1: nncc_tanh_backward(dx, dy, y, n); break;
  case 2: nncc_relu6_backward(dx, dy, y, n); break;
  case 4: nncc_hardtanh_backward(dx, dy, y, -1.0f, a.slope, n); break;
  default: nncc_leaky_relu_backward(dx, dy, a.slope >= 0 ? y : x, a.slope, n); break;
  }
}
/* equal as floats, NaN equal to NaN, and the same sign for zeros */
static int same_float(float a, float b) {
  return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

START_TEST(test_activations) {
  ActCase a = act_cases[_i];
  rng_state = 8000 + _i;
  float *x = act_inputs(), *dy = rand_buf(NACT), *y = malloc(NACT * 4), *dx = malloc(NACT * 4);
  float *buf = malloc(NACT * 4), *y1 = malloc(NACT * 4), *dx1 = malloc(NACT * 4);
  set_threads(2);
  act_fwd(a, y, x, NACT);
  act_bwd(a, dx, dy, y, x, NACT);
  for (int i = 0; i < NACT; i++) {
    double xi = x[i], yi = y[i], gi = dy[i];
    if (a.kind <= 1) { /* within half an ulp of the exact value (NaN stays NaN) */
      long double r = a.kind == 0 ? 1.0L / (1.0L + expl(-(long double)xi)) : tanhl(xi);
      ck_assert_msg(isnan(xi) ? isnan(y[i]) : fabsl(y[i] - r) <= 0x1p-24L * fabsl(r) + 1e-45L,
                    "case %d: y(%.9g) = %.9g, want %.12Lg", _i, xi, yi, r);
      /* the float ops of PyTorch's formula, bounded by their roundings */
      double r1 = a.kind == 0 ? gi * (1 - yi) * yi : gi * (1 - yi * yi);
      double tol = a.kind == 0 ? 4e-7 * fabs(r1) : 1.2e-7 * fabs(gi) * (yi * yi + fabs(1 - yi * yi));
      ck_assert_msg(isnan(yi) ? isnan(dx[i]) : fabs(dx[i] - r1) <= tol + 1e-44,
                    "case %d: dx(y %.9g, dy %.9g) = %.9g, want %.12g", _i, yi, gi, (double)dx[i], r1);
    } else if (a.kind == 2) {
      float r = isnan(x[i]) ? x[i] : x[i] <= 0 ? 0.0f : x[i] > 6 ? 6.0f : x[i];
      ck_assert_msg(same_float(y[i], r), "case %d: relu6(%.9g) = %.9g", _i, xi, yi);
      ck_assert_msg(same_float(dx[i], y[i] > 0 && y[i] < 6 ? dy[i] : 0.0f),
                    "case %d: relu6' at y %.9g: %.9g", _i, yi, (double)dx[i]);
    } else if (a.kind == 4) { /* PyTorch: clamp, NaN kept; no gradient on a bound */
      float r = isnan(x[i]) ? x[i] : x[i] < -1 ? -1.0f : x[i] > a.slope ? a.slope : x[i];
      ck_assert_msg(same_float(y[i], r), "case %d: hardtanh(%.9g) = %.9g", _i, xi, yi);
      ck_assert_msg(same_float(dx[i], x[i] <= -1 || x[i] >= a.slope ? 0.0f : dy[i]),
                    "case %d: hardtanh' at x %.9g: %.9g", _i, xi, (double)dx[i]);
    } else { /* a product of two floats is exact in double: one rounding, as the kernel's */
      float r = x[i] > 0 ? x[i] : (float)(xi * a.slope);
      ck_assert_msg(same_float(y[i], r), "case %d: leaky(%.9g) = %.9g", _i, xi, yi);
      float ref = a.slope >= 0 ? y[i] : x[i];
      ck_assert_msg(same_float(dx[i], ref > 0 ? dy[i] : (float)(gi * a.slope)),
                    "case %d: leaky' at x %.9g: %.9g", _i, xi, (double)dx[i]);
    }
  }
  /* the boundaries themselves: y exactly 0 and 6 let no gradient through */
  if (a.kind == 2) ck_assert(y[0] == 0 && dx[0] == 0 && y[2] == 6 && dx[2] == 0 && dx[4] == dy[4]);
  /* hardtanh(-1, 6): 6 sits on the upper bound, just below it passes, NaN passes */
  if (a.kind == 4 && a.slope == 6.0f) ck_assert(y[2] == 6 && dx[2] == 0 && dx[4] == dy[4] && dx[18] == dy[18]);
  /* in place (y = x, dx = dy) and on 1 thread: the same bits */
  memcpy(buf, x, NACT * 4);
  act_fwd(a, buf, buf, NACT);
  ck_assert(memcmp(buf, y, NACT * 4) == 0);
  memcpy(buf, dy, NACT * 4);
  act_bwd(a, buf, buf, y, x, NACT);
  ck_assert(memcmp(buf, dx, NACT * 4) == 0);
  set_threads(1);
  act_fwd(a, y1, x, NACT);
  act_bwd(a, dx1, dy, y1, x, NACT);
  ck_assert(memcmp(y1, y, NACT * 4) == 0 && memcmp(dx1, dx, NACT * 4) == 0);
  free(x), free(dy), free(y), free(dx), free(buf), free(y1), free(dx1);
}
END_TEST

/* the fused activations other than ReLU (whose tests are above) */
static const struct { int act; float alpha; } fused_acts[] = {
    {NNCC_ACT_RELU6, 0.0f}, {NNCC_ACT_LEAKY, 0.1f}, {NNCC_ACT_LEAKY, 0.0f}};
#define NFUSED (int)(sizeof fused_acts / sizeof fused_acts[0])

static double fused_ref(double v, int act, float alpha) {
  if (act == NNCC_ACT_RELU6) return v <= 0 ? 0 : v > 6 ? 6 : v;
  return v > 0 ? v : v * alpha;
}
/* a saved y for the gate, with the boundary values: 0, 6, just inside and
 * outside both, and the gradient through it (float ops, as the kernels) */
static float *fused_mask(size_t n) {
  float *m = rand_buf(n);
  for (size_t i = 0; i < n; i++) {
    m[i] *= 7.0f;
    if (i % 5 == 1) m[i] = 0.0f;
    if (i % 7 == 2) m[i] = 6.0f;
    if (i % 11 == 3) m[i] = nextafterf(6.0f, 0.0f);
    if (i % 13 == 4) m[i] = nextafterf(0.0f, 1.0f);
    if (i % 17 == 5) m[i] = nextafterf(6.0f, 7.0f);
  }
  return m;
}
static float fused_gate(float g, float y, int act, float alpha) {
  if (act == NNCC_ACT_RELU6) return y > 0 && y < 6 ? g : 0.0f;
  return y > 0 ? g : g * alpha;
}

/* conv2d with act = RELU6 / LEAKY: forward against the reference with the
 * activation applied (inputs scaled so that outputs pass 6), backward gated
 * by a mask with the boundary values, and 1 vs 2 threads bit for bit */
START_TEST(test_conv_act_vs_reference) {
  Conv c = conv_shapes[_i / NFUSED];
  int act = fused_acts[_i % NFUSED].act;
  float alpha = fused_acts[_i % NFUSED].alpha;
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
  size_t ny = (size_t)c.N * c.Co * HO(c) * WO(c);
  rng_state = 9000 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i++) x[i] *= 4.0f;
  float *mask = fused_mask(ny), *g = calloc(ny, sizeof(float));
  double *ry = malloc(ny * 8), *sy = malloc(ny * 8), *rdx = malloc(nx * 8), *sdx = malloc(nx * 8);
  double *rdw = malloc(nw * 8), *sdw = malloc(nw * 8), *rdb = malloc(c.Co * 8), *sdb = malloc(c.Co * 8);
  ConvOut o = conv_run(c, x, w, b, dy, mask, act, alpha, 1, 2);
  conv_ref_fwd(ry, sy, x, w, b, c);
  for (size_t i = 0; i < ny; i++) ry[i] = fused_ref(ry[i], act, alpha); /* 1-Lipschitz: same tol */
  expect_close("y", o.y, ry, sy, ny);
  for (size_t i = 0; i < ny; i++) g[i] = fused_gate(dy[i], mask[i], act, alpha);
  conv_ref_bwd(rdx, sdx, rdw, sdw, rdb, sdb, g, x, w, c);
  expect_close("dx", o.dx, rdx, sdx, nx);
  expect_close("dw", o.dw, rdw, sdw, nw);
  expect_close("db", o.db, rdb, sdb, c.Co);
  ConvOut o1 = conv_run(c, x, w, b, dy, mask, act, alpha, 1, 1);
  ck_assert(memcmp(o.y, o1.y, ny * 4) == 0 && memcmp(o.dx, o1.dx, nx * 4) == 0);
  ck_assert(memcmp(o.dw, o1.dw, nw * 4) == 0 && memcmp(o.db, o1.db, c.Co * 4) == 0);
  conv_free(o), conv_free(o1);
  free(x), free(w), free(b), free(dy), free(mask), free(g);
  free(ry), free(sy), free(rdx), free(sdx), free(rdw), free(sdw), free(rdb), free(sdb);
}
END_TEST

/* linear with act = RELU6 / LEAKY, as for conv2d */
START_TEST(test_linear_act_vs_reference) {
  Lin l = lin_shapes[_i / NFUSED];
  int act = fused_acts[_i % NFUSED].act;
  float alpha = fused_acts[_i % NFUSED].alpha;
  size_t ny = (size_t)l.N * l.O, nx = (size_t)l.N * l.I, nw = (size_t)l.O * l.I;
  rng_state = 10000 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(l.O), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i++) x[i] *= 4.0f;
  float *mask = fused_mask(ny);
  double *ry = malloc(ny * 8), *sy = malloc(ny * 8), *rdx = calloc(nx, 8), *sdx = calloc(nx, 8);
  double *rdw = calloc(nw, 8), *sdw = calloc(nw, 8), *rdb = calloc(l.O, 8), *sdb = calloc(l.O, 8);
  LinOut o = lin_run(l, x, w, b, dy, mask, act, alpha, 2);
  for (int n = 0; n < l.N; n++)
    for (int k = 0; k < l.O; k++) {
      double s = b[k], a = fabs(b[k]);
      for (int i = 0; i < l.I; i++) {
        double t = (double)x[n * l.I + i] * w[k * l.I + i];
        s += t, a += fabs(t);
      }
      ry[n * l.O + k] = fused_ref(s, act, alpha), sy[n * l.O + k] = a;
      double gv = fused_gate(dy[n * l.O + k], mask[n * l.O + k], act, alpha);
      rdb[k] += gv, sdb[k] += fabs(gv);
      for (int i = 0; i < l.I; i++) {
        rdx[n * l.I + i] += gv * w[k * l.I + i], sdx[n * l.I + i] += fabs(gv * w[k * l.I + i]);
        rdw[k * l.I + i] += gv * x[n * l.I + i], sdw[k * l.I + i] += fabs(gv * x[n * l.I + i]);
      }
    }
  expect_close("y", o.y, ry, sy, ny);
  expect_close("dx", o.dx, rdx, sdx, nx);
  expect_close("dw", o.dw, rdw, sdw, nw);
  expect_close("db", o.db, rdb, sdb, l.O);
  LinOut o1 = lin_run(l, x, w, b, dy, mask, act, alpha, 1);
  ck_assert(memcmp(o.y, o1.y, ny * 4) == 0 && memcmp(o.dx, o1.dx, nx * 4) == 0);
  ck_assert(memcmp(o.dw, o1.dw, nw * 4) == 0 && memcmp(o.db, o1.db, l.O * 4) == 0);
  lin_free(o), lin_free(o1);
  free(x), free(w), free(b), free(dy), free(mask);
  free(ry), free(sy), free(rdx), free(sdx), free(rdw), free(sdw), free(rdb), free(sdb);
}
END_TEST

/* act NONE ignores a mask; RELU with a mask is the old gate (same bits as
 * gating dy by hand and passing no mask) */
START_TEST(test_fused_act_none_and_relu) {
  Conv c = {3, 2, 9, 8, 5, 3, 3, 1, 1, 1, 1};
  Lin l = {9, 17, 33};
  size_t ny = (size_t)c.N * c.Co * HO(c) * WO(c), nx = (size_t)c.N * c.Ci * c.H * c.W;
  size_t nw = (size_t)c.Co * c.Ci * 9, ly = (size_t)l.N * l.O;
  rng_state = 11;
  float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny), *m = fused_mask(ny);
  float *g = malloc(ny * 4);
  for (size_t i = 0; i < ny; i++) g[i] = m[i] > 0 ? dy[i] : 0.0f;
  ConvOut a = conv_run(c, x, w, NULL, dy, m, NNCC_ACT_NONE, 0.0f, 1, 2);
  ConvOut b = conv_run(c, x, w, NULL, dy, NULL, NNCC_ACT_NONE, 0.0f, 1, 2);
  ConvOut r = conv_run(c, x, w, NULL, dy, m, NNCC_ACT_RELU, 0.0f, 1, 2);
  ConvOut rg = conv_run(c, x, w, NULL, g, NULL, NNCC_ACT_RELU, 0.0f, 1, 2);
  ck_assert(memcmp(a.dx, b.dx, nx * 4) == 0 && memcmp(a.dw, b.dw, nw * 4) == 0);
  ck_assert(memcmp(r.dx, rg.dx, nx * 4) == 0 && memcmp(r.dw, rg.dw, nw * 4) == 0);
  ck_assert(memcmp(r.db, rg.db, c.Co * 4) == 0);
  conv_free(a), conv_free(b), conv_free(r), conv_free(rg);
  float *lx = rand_buf((size_t)l.N * l.I), *lw = rand_buf((size_t)l.O * l.I), *ldy = rand_buf(ly);
  float *lm = fused_mask(ly);
  LinOut la = lin_run(l, lx, lw, NULL, ldy, lm, NNCC_ACT_NONE, 0.0f, 2);
  LinOut lb = lin_run(l, lx, lw, NULL, ldy, NULL, NNCC_ACT_NONE, 0.0f, 2);
  ck_assert(memcmp(la.dx, lb.dx, (size_t)l.N * l.I * 4) == 0);
  ck_assert(memcmp(la.dw, lb.dw, (size_t)l.O * l.I * 4) == 0);
  lin_free(la), lin_free(lb);
  free(x), free(w), free(dy), free(m), free(g), free(lx), free(lw), free(ldy), free(lm);
}
END_TEST

/* concat: inputs into their channels of y, dy's channels back out, a
 * channel window of a source; the rest of dst is left alone */
START_TEST(test_copy_channels) {
  static const int hws[] = {1, 7, 33};
  int HW = hws[_i], N = 3;
  rng_state = 12000 + _i;
  float *a = rand_buf((size_t)N * 2 * HW), *b = rand_buf((size_t)N * 3 * HW);
  float *y = malloc((size_t)N * 5 * HW * 4), *da = malloc((size_t)N * 2 * HW * 4);
  float *db = malloc((size_t)N * 3 * HW * 4), *win = malloc((size_t)N * 4 * HW * 4);
  for (int t = 1; t <= 3; t += 2) {
    set_threads(t);
    nncc_copy_channels(y, 5, 0, a, 2, 0, N, 2, HW);
    nncc_copy_channels(y, 5, 2, b, 3, 0, N, 3, HW);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < 5; c++)
        for (int i = 0; i < HW; i++)
          ck_assert(y[((size_t)n * 5 + c) * HW + i] ==
                    (c < 2 ? a[((size_t)n * 2 + c) * HW + i] : b[((size_t)n * 3 + c - 2) * HW + i]));
    nncc_copy_channels(da, 2, 0, y, 5, 0, N, 2, HW);
    nncc_copy_channels(db, 3, 0, y, 5, 2, N, 3, HW);
    ck_assert(memcmp(da, a, (size_t)N * 2 * HW * 4) == 0);
    ck_assert(memcmp(db, b, (size_t)N * 3 * HW * 4) == 0);
    for (size_t i = 0; i < (size_t)N * 4 * HW; i++) win[i] = -7.0f;
    nncc_copy_channels(win, 4, 1, b, 3, 1, N, 2, HW); /* b's channels 1, 2 -> win's 1, 2 */
    for (int n = 0; n < N; n++)
      for (int c = 0; c < 4; c++)
        for (int i = 0; i < HW; i++)
          ck_assert(win[((size_t)n * 4 + c) * HW + i] ==
                    (c == 1 || c == 2 ? b[((size_t)n * 3 + c) * HW + i] : -7.0f));
  }
  free(a), free(b), free(y), free(da), free(db), free(win);
}
END_TEST

/* ---- bit-exact dump for cross-compiler comparison --------------------- */

#include "dump.h"

static void write_dump(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(1);
  }
  for (int i = 0; i < NCONV; i++) {
    Conv c = conv_shapes[i];
    size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
    size_t ny = (size_t)c.N * c.Co * HO(c) * WO(c);
    rng_state = 5000 + i;
    float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
    float *mask = rand_buf(ny);
    ConvOut o = conv_run(c, x, w, b, dy, mask, 1, 0.0f, 1, 2);
    dump(f, "conv.y", o.y, ny), dump(f, "conv.dx", o.dx, nx);
    dump(f, "conv.dw", o.dw, nw), dump(f, "conv.db", o.db, c.Co);
    conv_free(o);
    free(x), free(w), free(b), free(dy), free(mask);
  }
  for (int i = 0; i < NLIN; i++) {
    Lin l = lin_shapes[i];
    rng_state = 6000 + i;
    float *x = rand_buf((size_t)l.N * l.I), *w = rand_buf((size_t)l.O * l.I);
    float *b = rand_buf(l.O), *dy = rand_buf((size_t)l.N * l.O), *m = rand_buf((size_t)l.N * l.O);
    LinOut o = lin_run(l, x, w, b, dy, m, 1, 0.0f, 2);
    dump(f, "lin.y", o.y, (size_t)l.N * l.O), dump(f, "lin.dx", o.dx, (size_t)l.N * l.I);
    dump(f, "lin.dw", o.dw, (size_t)l.O * l.I), dump(f, "lin.db", o.db, l.O);
    lin_free(o);
    free(x), free(w), free(b), free(dy), free(m);
  }
  /* the activations: elementwise, and fused into conv2d and linear */
  for (int k = 0; k < NACTCASE; k++) {
    rng_state = 13000 + k;
    float *x = act_inputs(), *dy = rand_buf(NACT), *y = malloc(NACT * 4), *dx = malloc(NACT * 4);
    act_fwd(act_cases[k], y, x, NACT);
    act_bwd(act_cases[k], dx, dy, y, x, NACT);
    dump(f, "act.y", y, NACT), dump(f, "act.dx", dx, NACT);
    free(x), free(dy), free(y), free(dx);
  }
  for (int i = 0; i < NCONV; i++)
    for (int k = 0; k < NFUSED; k++) {
      Conv c = conv_shapes[i];
      size_t nx = (size_t)c.N * c.Ci * c.H * c.W, nw = (size_t)c.Co * c.Ci * c.Kh * c.Kw;
      size_t ny = (size_t)c.N * c.Co * HO(c) * WO(c);
      rng_state = 14000 + i * NFUSED + k;
      float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
      for (size_t j = 0; j < nx; j++) x[j] *= 4.0f;
      float *mask = fused_mask(ny);
      ConvOut o = conv_run(c, x, w, b, dy, mask, fused_acts[k].act, fused_acts[k].alpha, 1, 2);
      dump(f, "conv_act.y", o.y, ny), dump(f, "conv_act.dx", o.dx, nx);
      dump(f, "conv_act.dw", o.dw, nw), dump(f, "conv_act.db", o.db, c.Co);
      conv_free(o);
      free(x), free(w), free(b), free(dy), free(mask);
    }
  for (int i = 0; i < NLIN; i++)
    for (int k = 0; k < NFUSED; k++) {
      Lin l = lin_shapes[i];
      rng_state = 15000 + i * NFUSED + k;
      float *x = rand_buf((size_t)l.N * l.I), *w = rand_buf((size_t)l.O * l.I);
      float *b = rand_buf(l.O), *dy = rand_buf((size_t)l.N * l.O), *m = fused_mask((size_t)l.N * l.O);
      for (size_t j = 0; j < (size_t)l.N * l.I; j++) x[j] *= 4.0f;
      LinOut o = lin_run(l, x, w, b, dy, m, fused_acts[k].act, fused_acts[k].alpha, 2);
      dump(f, "lin_act.y", o.y, (size_t)l.N * l.O), dump(f, "lin_act.dx", o.dx, (size_t)l.N * l.I);
      dump(f, "lin_act.dw", o.dw, (size_t)l.O * l.I), dump(f, "lin_act.db", o.db, l.O);
      lin_free(o);
      free(x), free(w), free(b), free(dy), free(m);
    }
  fclose(f);
}

/* nk_transpose_rows, whose whole 16 x 16 blocks go through nk_transpose16
 * and the rest element by element, against its definition: dyT[q][co] =
 * dy[co][q0 + q], gated by ReLU's (or relu6's, no vector path) mask, for
 * ragged row counts and channel ranges; elements outside are untouched. */
typedef struct { int P, q0, qn, co_lo, co_hi, gate; } TransposeCase;
static const TransposeCase transpose_cases[] = {
    {400, 0, 16, 0, 32, 0}, {400, 384, 16, 0, 32, 1}, {36, 0, 36, 0, 64, 1},
    {576, 0, 576, 0, 16, 1}, {40, 0, 37, 5, 40, 1}, {40, 3, 21, 0, 19, 0},
    {64, 0, 64, 16, 48, 2}, {16, 0, 15, 0, 16, 0}};
#define NTRANSPOSE (int)(sizeof transpose_cases / sizeof transpose_cases[0])

START_TEST(test_transpose_rows) {
  TransposeCase c = transpose_cases[_i];
  int ld = nk_cdiv(c.co_hi, 16) * 16 + 16;
  float *dy = rand_buf((size_t)c.co_hi * c.P), *m = rand_buf((size_t)c.co_hi * c.P);
  /* NaN, -0, +0 and subnormal values in both, so the gate's lanes are seen */
  float special[] = {NAN, -0.0f, 0.0f, nextafterf(0.0f, 1.0f), -NAN, INFINITY};
  for (int i = 0; i < 6 && i < c.co_hi * c.P; i++) dy[i * 7 % (c.co_hi * c.P)] = special[i];
  for (int i = 0; i < 6 && i < c.co_hi * c.P; i++) m[i * 5 % (c.co_hi * c.P)] = special[i];
  int act = c.gate == 1 ? NNCC_ACT_RELU : NNCC_ACT_RELU6;
  size_t n = (size_t)(c.q0 + c.qn) * ld;
  float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) got[i] = want[i] = (float)i;
  nk_transpose_rows(got, ld, dy, c.gate ? m : NULL, act, 0.0f, c.P, c.q0, c.qn, c.co_lo, c.co_hi);
  for (int q = 0; q < c.qn; q++)
    for (int co = c.co_lo; co < c.co_hi; co++) {
      size_t s = (size_t)co * c.P + c.q0 + q;
      want[(size_t)(c.q0 + q) * ld + co] = c.gate ? nk_actgrad1(dy[s], m[s], act, 0.0f) : dy[s];
    }
  ck_assert_int_eq(memcmp(got, want, n * sizeof(float)), 0);
  free(dy), free(m), free(got), free(want);
}
END_TEST

static Suite *kernels_suite(void) {
  Suite *s = suite_create("kernels");
  TCase *tc = tcase_create("conv");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_conv_vs_reference, 0, NCONV);
  tcase_add_loop_test(tc, test_conv_threads, 0, NCONV);
  tcase_add_test(tc, test_conv_skip_dx);
  tcase_add_loop_test(tc, test_engine_padding_bits, 0, NENGINEPAD);
  tcase_add_test(tc, test_engine_padding_modes);
  tcase_add_test(tc, test_wino_taken);
  tcase_add_test(tc, test_wino_group);
  tcase_add_loop_test(tc, test_wino_pool_epilogue, 0, NWINO_SHAPES);
  suite_add_tcase(s, tc);
  tc = tcase_create("linear");
  tcase_add_loop_test(tc, test_linear_vs_reference, 0, NLIN);
  suite_add_tcase(s, tc);
  tc = tcase_create("pool_relu");
  tcase_add_loop_test(tc, test_pool_vs_reference, 0, NPOOL);
  tcase_add_loop_test(tc, test_pool2x2_bits, 0, NPOOL2);
  tcase_add_test(tc, test_relu);
  tcase_add_loop_test(tc, test_transpose_rows, 0, NTRANSPOSE);
  suite_add_tcase(s, tc);
  tc = tcase_create("activations");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_activations, 0, NACTCASE);
  tcase_add_loop_test(tc, test_conv_act_vs_reference, 0, NCONV * NFUSED);
  tcase_add_loop_test(tc, test_linear_act_vs_reference, 0, NLIN * NFUSED);
  tcase_add_test(tc, test_fused_act_none_and_relu);
  tcase_add_loop_test(tc, test_copy_channels, 0, 3);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *path = getenv("NNCC_KERNELS_DUMP");
  if (path) {
    write_dump(path);
    return 0;
  }
  SRunner *sr = srunner_create(kernels_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
