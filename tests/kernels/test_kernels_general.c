/*
 * test_kernels_general.c -- the general convolution (groups, dilation,
 * asymmetric padding, explicit output size, fused activations), pooling
 * with ceil_mode / count_include_pad, adaptive max pooling and the size
 * macros of runtime/nncc_kernels.h, against naive double-precision
 * references written from PyTorch's definitions; gradients against the
 * reference adjoint; thread-count determinism. With NNCC_KERNELS_DUMP=FILE
 * set it writes a bit-exact hex dump of a fixed set of results instead
 * (cross_compiler.sh diffs the gcc, clang and portable builds with it).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef NNCC_KERNELS_UNROLL
#define NNCC_KERNELS_NO_UNROLL
#endif
#include "nncc_kernels.h"

/* ---- the size macros are integer constant expressions ------------------ */

_Static_assert(NNCC_POOL_OUT(28, 2, 2, 0, 0) == 14, "pool floor");
_Static_assert(NNCC_POOL_OUT(5, 2, 2, 0, 0) == 2, "pool floor drops the partial window");
_Static_assert(NNCC_POOL_OUT(5, 2, 2, 0, 1) == 3, "ceil keeps a window starting inside");
_Static_assert(NNCC_POOL_OUT(5, 2, 2, 1, 0) == 3, "pool padded, floor");
/* ceil would give 4, but window 3 would start at 3*2-1 = 5 = H: dropped */
_Static_assert(NNCC_POOL_OUT(5, 2, 2, 1, 1) == 3, "ceil drops a window starting in the padding");
_Static_assert(NNCC_POOL_OUT(4, 2, 3, 1, 1) == 2, "ceil drops a window starting past the padding");
_Static_assert(NNCC_POOL_OUT(6, 3, 2, 1, 1) == 4, "ceil, last window half in the padding");
_Static_assert(NNCC_POOL_OUT(6, 3, 2, 1, 0) == 3, "floor of the same");
_Static_assert(NNCC_POOL_OUT(7, 3, 2, 0, 1) == 3, "ceil, exact fit");
_Static_assert(NNCC_POOL_OUT(2, 3, 1, 0, 0) == 0, "window larger than the input: floor division");
_Static_assert(NNCC_CONV_OUT(28, 5, 1, 0, 0, 1) == 24, "conv valid");
_Static_assert(NNCC_CONV_OUT(7, 4, 1, 1, 2, 1) == 7, "'same', even kernel");
_Static_assert(NNCC_CONV_OUT(9, 3, 1, 2, 2, 2) == 9, "'same', dilated");
_Static_assert(NNCC_CONV_OUT(112, 3, 2, 1, 1, 1) == 56, "stride 2");
_Static_assert(NNCC_CONV_OUT(10, 3, 2, 0, 1, 3) == 3, "asymmetric, dilated, strided");
_Static_assert(NNCC_CONV_OUT(2, 5, 1, 0, 0, 1) <= 0, "kernel larger than the input");

/* ---- helpers ------------------------------------------------------------ */

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
/* memory the kernel must overwrite completely */
static float *garbage_buf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  memset(p, 0xA5, (n ? n : 1) * sizeof(float));
  return p;
}
static double *dcalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static void set_threads(int t) {
#ifdef _OPENMP
  omp_set_num_threads(t);
#else
  (void)t;
#endif
}
static int same_bits(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* |got - ref| <= 1e-5 * scale for every element, where scale[i] is the sum
 * of the absolute values of the terms that make up ref[i] */
static void expect_close(const char *what, int tc, const float *got, const double *ref,
                         const double *scale, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - ref[i]);
    double tol = 1e-5 * scale[i] + 1e-30;
    ck_assert_msg(err <= tol, "case %d %s[%zu]: got %.9g want %.9g (err %.3g, tol %.3g)", tc,
                  what, i, (double)got[i], ref[i], err, tol);
  }
}

/* ---- general convolution ----------------------------------------------- */

typedef struct {
  int N, Ci, H, W, Co, Kh, Kw, sh, sw, pt, pb, pl, pr, dh, dw, groups;
} GConv;

static int gc_ho(GConv c) { return NNCC_CONV_OUT(c.H, c.Kh, c.sh, c.pt, c.pb, c.dh); }
static int gc_wo(GConv c) { return NNCC_CONV_OUT(c.W, c.Kw, c.sw, c.pl, c.pr, c.dw); }
static size_t gc_nx(GConv c) { return (size_t)c.N * c.Ci * c.H * c.W; }
static size_t gc_nw(GConv c) { return (size_t)c.Co * (c.Ci / c.groups) * c.Kh * c.Kw; }
static size_t gc_ny(GConv c) { return (size_t)c.N * c.Co * gc_ho(c) * gc_wo(c); }

/* "same" padding as PyTorch: total d*(k-1), top/left total/2, the rest after */
#define SAME(k, d) ((d) * ((k) - 1)) / 2, (d) * ((k) - 1) - ((d) * ((k) - 1)) / 2

static const GConv gconv_shapes[] = {
    /* N  Ci  H   W  Co Kh Kw sh sw pt pb pl pr dh dw groups */
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       /* plain, groups 1 */
    {3, 4, 9, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},      /* groups 2, 2 outputs each */
    {2, 8, 10, 37, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8},     /* depthwise, wide rows */
    {3, 8, 13, 12, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 8},     /* depthwise, stride 2 */
    {2, 6, 12, 11, 6, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 6},     /* depthwise, TF-style pad */
    {2, 3, 9, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},       /* depthwise multiplier 2 */
    {2, 4, 11, 10, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},     /* dilation 2 */
    {2, 4, 12, 13, 4, 3, 3, 2, 1, 1, 2, 3, 0, 2, 3, 2},     /* mixed dilation, stride */
    {2, 2, 7, 9, 3, 4, 4, 1, 1, SAME(4, 1), SAME(4, 1), 1, 1, 1}, /* "same", even kernel */
    {1, 2, 8, 7, 4, 2, 4, 1, 1, SAME(2, 3), SAME(4, 2), 3, 2, 2}, /* "same", even, dilated */
    {2, 3, 6, 7, 5, 3, 3, 1, 1, 0, 2, 2, 0, 1, 1, 1},       /* asymmetric padding */
    {2, 2, 5, 6, 2, 3, 3, 3, 2, 4, 4, 1, 3, 1, 1, 2},       /* rows entirely in padding */
    {1, 2, 9, 40, 2, 3, 35, 1, 1, 1, 1, 17, 17, 1, 1, 2},   /* Kw > the 32 dW chains */
    {2, 2, 10, 9, 4, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1},      /* 49 weights: row blocks */
    {2, 6, 5, 5, 9, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3},       /* 1x1 grouped */
    {5, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},       /* batch larger than planes */
    {1, 1, 3, 3, 1, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1},       /* kernel larger than input */
    {2, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16},  /* MobileNetV2-like block */
};
#define NGCONV (int)(sizeof gconv_shapes / sizeof gconv_shapes[0])

static const float leaky_slope = 0.125f;
static float act_alpha(int act) { return act == NNCC_ACT_LEAKY ? leaky_slope : 0.0f; }

static double ref_act(double v, int act, double alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return v > 0 ? v : 0;
  case NNCC_ACT_RELU6: return v > 0 ? (v < 6 ? v : 6) : 0;
  case NNCC_ACT_LEAKY: return v > 0 ? v : v * alpha;
  default: return v;
  }
}
/* the gate written from the spec: dy * act'(from the saved output y) */
static double ref_gate(double dy, float y, int act, double alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return y > 0 ? dy : 0;
  case NNCC_ACT_RELU6: return y > 0 && y < 6 ? dy : 0;
  case NNCC_ACT_LEAKY: return dy * (y > 0 ? 1.0 : alpha);
  default: return dy;
  }
}

/* x index of tap (kh, kw) of output (oh, ow), or -1 for padding */
static long gc_xi(GConv c, int n, int ci, int oh, int ow, int kh, int kw) {
  int h = oh * c.sh - c.pt + kh * c.dh, w = ow * c.sw - c.pl + kw * c.dw;
  if (h < 0 || h >= c.H || w < 0 || w >= c.W) return -1;
  return (((long)n * c.Ci + ci) * c.H + h) * c.W + w;
}

static void gconv_ref_fwd(double *y, double *scale, const float *x, const float *w,
                          const float *b, GConv c, int act) {
  int Ho = gc_ho(c), Wo = gc_wo(c), Cg = c.Ci / c.groups, Mg = c.Co / c.groups;
  double alpha = act_alpha(act);
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double s = b ? b[co] : 0.0, a = b ? fabs(b[co]) : 0.0;
          for (int cc = 0; cc < Cg; cc++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                long xi = gc_xi(c, n, co / Mg * Cg + cc, oh, ow, kh, kw);
                if (xi < 0) continue;
                double t = (double)x[xi] * w[((co * Cg + cc) * c.Kh + kh) * c.Kw + kw];
                s += t, a += fabs(t);
              }
          size_t i = (((size_t)n * c.Co + co) * Ho + oh) * Wo + ow;
          y[i] = ref_act(s, act, alpha), scale[i] = a;
        }
}

/* the adjoint of the forward map at the gated gradient g */
typedef struct { double *dx, *sdx, *dw, *sdw, *db, *sdb; } GRef;

static GRef gconv_ref_bwd(const double *g, const float *x, const float *w, GConv c) {
  int Ho = gc_ho(c), Wo = gc_wo(c), Cg = c.Ci / c.groups, Mg = c.Co / c.groups;
  GRef r = {dcalloc(gc_nx(c)), dcalloc(gc_nx(c)), dcalloc(gc_nw(c)),
            dcalloc(gc_nw(c)), dcalloc(c.Co),    dcalloc(c.Co)};
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double gv = g[(((size_t)n * c.Co + co) * Ho + oh) * Wo + ow];
          r.db[co] += gv, r.sdb[co] += fabs(gv);
          for (int cc = 0; cc < Cg; cc++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                long xi = gc_xi(c, n, co / Mg * Cg + cc, oh, ow, kh, kw);
                if (xi < 0) continue;
                size_t wi = ((size_t)(co * Cg + cc) * c.Kh + kh) * c.Kw + kw;
                r.dx[xi] += gv * w[wi], r.sdx[xi] += fabs(gv * w[wi]);
                r.dw[wi] += gv * x[xi], r.sdw[wi] += fabs(gv * x[xi]);
              }
        }
  return r;
}
static void gref_free(GRef r) {
  free(r.dx), free(r.sdx), free(r.dw), free(r.sdw), free(r.db), free(r.sdb);
}

typedef struct { float *y, *dx, *dw, *db; } GOut;

/* forward (y) and backward (dx, dw, db; each skipped when its want_ is 0)
 * with nthreads threads; ymask may be the returned y's own buffer when
 * `gate_with_y` */
static GOut gconv_run(GConv c, const float *x, const float *w, const float *b, const float *dy,
                      const float *ymask, int gate_with_y, int act, int want_dx, int want_db,
                      int nthreads) {
  GOut o;
  float alpha = act_alpha(act);
  int Ho = gc_ho(c), Wo = gc_wo(c);
  o.y = garbage_buf(gc_ny(c));
  o.dx = want_dx ? garbage_buf(gc_nx(c)) : NULL;
  o.dw = garbage_buf(gc_nw(c));
  o.db = want_db ? garbage_buf(c.Co) : NULL;
  set_threads(nthreads);
  nncc_conv2d_general_forward(o.y, x, w, b, c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw,
                              c.pt, c.pl, c.dh, c.dw, c.groups, Ho, Wo, act, alpha);
  nncc_conv2d_general_backward(o.dx, o.dw, o.db, dy, gate_with_y ? o.y : ymask, x, w, c.N, c.Ci,
                               c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.pt, c.pl, c.dh, c.dw,
                               c.groups, Ho, Wo, act, alpha, c.N);
  return o;
}
static void gout_free(GOut o) { free(o.y), free(o.dx), free(o.dw), free(o.db); }

/* every activation, with and without bias: y against the reference, and
 * dx, dw, db against the reference adjoint at dy gated by the kernel's own
 * saved y (and ungated, ymask NULL) */
START_TEST(test_gconv_vs_reference) {
  GConv c = gconv_shapes[_i];
  size_t nx = gc_nx(c), nw = gc_nw(c), ny = gc_ny(c);
  ck_assert(gc_ho(c) > 0 && gc_wo(c) > 0);
  rng_state = 100 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i++) x[i] *= 4.0f; /* so relu6 clamps somewhere */
  double *ry = dcalloc(ny), *sy = dcalloc(ny), *g = dcalloc(ny);
  for (int act = 0; act < 4; act++)
    for (int gated = 0; gated < 2; gated++) {
      const float *bias = (act + gated) % 2 ? b : NULL;
      GOut o = gconv_run(c, x, w, bias, dy, NULL, gated, act, 1, 1, 2);
      gconv_ref_fwd(ry, sy, x, w, bias, c, act);
      if (act == NNCC_ACT_LEAKY)
        for (size_t i = 0; i < ny; i++) sy[i] *= 1.0 + leaky_slope;
      expect_close("y", _i, o.y, ry, sy, ny);
      for (size_t i = 0; i < ny; i++)
        g[i] = gated ? ref_gate(dy[i], o.y[i], act, act_alpha(act)) : dy[i];
      GRef r = gconv_ref_bwd(g, x, w, c);
      expect_close("dx", _i, o.dx, r.dx, r.sdx, nx);
      expect_close("dw", _i, o.dw, r.dw, r.sdw, nw);
      expect_close("db", _i, o.db, r.db, r.sdb, c.Co);
      gref_free(r);
      gout_free(o);
    }
  free(x), free(w), free(b), free(dy), free(ry), free(sy), free(g);
}
END_TEST

/* the gates at their boundaries: y exactly 0, -0, 6, just around them,
 * NaN; the whole backward against the adjoint at the spec's gate */
static const float gate_special[] = {0.0f,    -0.0f,  6.0f, 5.9999995f, 6.0000005f,
                                     1e-30f,  -1e-30f, 3.0f, -2.0f,      NAN,
                                     7.0f,    1e-45f, -1e-45f, INFINITY,  -INFINITY};
#define NSPECIAL (sizeof gate_special / sizeof gate_special[0])

START_TEST(test_gconv_gate_boundaries) {
  const float *special = gate_special;
  const int ns = (int)NSPECIAL;
  GConv c = gconv_shapes[_i % NGCONV];
  int act = 1 + _i / NGCONV;
  size_t nx = gc_nx(c), nw = gc_nw(c), ny = gc_ny(c);
  rng_state = 200 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny), *m = rand_buf(ny);
  for (size_t i = 0; i < ny; i++) m[i] = special[(i * 7 + (size_t)_i) % (size_t)ns];
  double *g = dcalloc(ny);
  for (size_t i = 0; i < ny; i++) g[i] = ref_gate(dy[i], m[i], act, act_alpha(act));
  GOut o = gconv_run(c, x, w, NULL, dy, m, 0, act, 1, 1, 2);
  GRef r = gconv_ref_bwd(g, x, w, c);
  expect_close("dx", _i, o.dx, r.dx, r.sdx, nx);
  expect_close("dw", _i, o.dw, r.dw, r.sdw, nw);
  expect_close("db", _i, o.db, r.db, r.sdb, c.Co);
  /* the same gate by hand for a few values, so that the reference cannot
   * drift from the spec unnoticed */
  ck_assert(ref_gate(1.0, 0.0f, NNCC_ACT_RELU6, 0) == 0 && ref_gate(1.0, 6.0f, NNCC_ACT_RELU6, 0) == 0);
  ck_assert(ref_gate(1.0, 5.9999995f, NNCC_ACT_RELU6, 0) == 1);
  ck_assert(ref_gate(2.0, -0.0f, NNCC_ACT_LEAKY, 0.125) == 0.25);
  gref_free(r), gout_free(o);
  free(x), free(w), free(dy), free(m), free(g);
}
END_TEST

/* the fused activations at exact boundaries in the forward: 1x1 identity
 * weights put chosen values straight into y */
START_TEST(test_gconv_act_values) {
  static const float in[] = {-1.0f, -0.0f, 0.0f, 1e-45f, 5.9999995f, 6.0f, 6.0000005f, 100.0f,
                             NAN,   -INFINITY};
  const int n = (int)(sizeof in / sizeof in[0]);
  float one = 1.0f, y[10];
  for (int act = 0; act < 4; act++) {
    nncc_conv2d_general_forward(y, in, &one, NULL, 1, 1, 1, n, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1,
                                n, act, act_alpha(act));
    for (int i = 0; i < n; i++) {
      float v = in[i] + 0.0f; /* the chain starts from +0: -0 becomes +0 */
      float want = act == NNCC_ACT_RELU    ? nk_relu1(v)
                   : act == NNCC_ACT_RELU6 ? nk_relu6_1(v)
                   : act == NNCC_ACT_LEAKY ? nk_leaky1(v, leaky_slope)
                                           : v;
      ck_assert_msg(memcmp(&y[i], &want, 4) == 0 || (isnan(y[i]) && isnan(want)),
                    "act %d in %g: %g want %g", act, (double)in[i], (double)y[i], (double)want);
    }
  }
  /* relu and relu6 give +0 for -0 and negatives; relu6 keeps NaN */
  nncc_conv2d_general_forward(y, in, &one, NULL, 1, 1, 1, n, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, n,
                              NNCC_ACT_RELU6, 0.0f);
  ck_assert(y[0] == 0 && !signbit(y[0]) && !signbit(y[1]) && y[5] == 6 && y[6] == 6);
  ck_assert(y[4] == 5.9999995f && isnan(y[8]) && y[9] == 0);
}
END_TEST

/* The summation orders the header promises, written out in float: y over
 * (c, kh, kw) then the bias; dW and db over (n, oh, ow); dx over (co in
 * the group, kh, kw); each an fmaf chain from +0 skipping the padding. The
 * kernel must give exactly these bits. */
static float spec_gate(float dy, float y, int act, float alpha) {
  switch (act) {
  case NNCC_ACT_RELU: return y > 0 ? dy : 0.0f;
  case NNCC_ACT_RELU6: return y > 0 && y < 6 ? dy : 0.0f;
  case NNCC_ACT_LEAKY: return dy * (y > 0 ? 1.0f : alpha);
  default: return dy;
  }
}

START_TEST(test_gconv_order_bits) {
  GConv c = gconv_shapes[_i];
  int Ho = gc_ho(c), Wo = gc_wo(c), Cg = c.Ci / c.groups, Mg = c.Co / c.groups;
  int act = _i % 4;
  float alpha = act_alpha(act);
  size_t nx = gc_nx(c), nw = gc_nw(c), ny = gc_ny(c);
  rng_state = 350 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i++) x[i] *= 4.0f;
  /* the gate from the kernel's own y, or (odd cases) from boundary values */
  float *m = rand_buf(ny);
  for (size_t i = 0; i < ny; i++) m[i] = gate_special[(i * 5 + (size_t)_i) % NSPECIAL];
  const float *mask = _i / 4 % 2 ? m : NULL;
  GOut o = gconv_run(c, x, w, b, dy, mask, !mask, act, 1, 1, 2);
  float *g = malloc(ny * sizeof(float));
  for (size_t i = 0; i < ny; i++)
    g[i] = act ? spec_gate(dy[i], mask ? mask[i] : o.y[i], act, alpha) : dy[i];
  for (int n = 0; n < c.N; n++)
    for (int co = 0; co < c.Co; co++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          float s = 0.0f;
          for (int cc = 0; cc < Cg; cc++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                long xi = gc_xi(c, n, co / Mg * Cg + cc, oh, ow, kh, kw);
                if (xi >= 0) s = fmaf(w[((co * Cg + cc) * c.Kh + kh) * c.Kw + kw], x[xi], s);
              }
          s = nk_act1(s + b[co], act, alpha);
          size_t yi = (((size_t)n * c.Co + co) * Ho + oh) * Wo + ow;
          ck_assert_msg(same_bits(&s, &o.y[yi], 1), "case %d y[%zu]", _i, yi);
        }
  for (int co = 0; co < c.Co; co++) {
    float db = 0.0f;
    for (int n = 0; n < c.N; n++)
      for (int q = 0; q < Ho * Wo; q++) db += g[((size_t)n * c.Co + co) * Ho * Wo + q];
    ck_assert_msg(same_bits(&db, &o.db[co], 1), "case %d db[%d]", _i, co);
    for (int cc = 0; cc < Cg; cc++)
      for (int kh = 0; kh < c.Kh; kh++)
        for (int kw = 0; kw < c.Kw; kw++) {
          float s = 0.0f;
          for (int n = 0; n < c.N; n++)
            for (int oh = 0; oh < Ho; oh++)
              for (int ow = 0; ow < Wo; ow++) {
                long xi = gc_xi(c, n, co / Mg * Cg + cc, oh, ow, kh, kw);
                if (xi >= 0) s = fmaf(g[(((size_t)n * c.Co + co) * Ho + oh) * Wo + ow], x[xi], s);
              }
          size_t wi = ((size_t)(co * Cg + cc) * c.Kh + kh) * c.Kw + kw;
          ck_assert_msg(same_bits(&s, &o.dw[wi], 1), "case %d dw[%zu]", _i, wi);
        }
  }
  for (int n = 0; n < c.N; n++)
    for (int ci = 0; ci < c.Ci; ci++)
      for (int h = 0; h < c.H; h++)
        for (int ww = 0; ww < c.W; ww++) {
          float s = 0.0f;
          for (int co = ci / Cg * Mg; co < (ci / Cg + 1) * Mg; co++)
            for (int kh = 0; kh < c.Kh; kh++)
              for (int kw = 0; kw < c.Kw; kw++) {
                int th = h + c.pt - kh * c.dh, tw = ww + c.pl - kw * c.dw;
                if (th < 0 || th % c.sh || th / c.sh >= Ho || tw < 0 || tw % c.sw ||
                    tw / c.sw >= Wo)
                  continue;
                size_t gi = (((size_t)n * c.Co + co) * Ho + th / c.sh) * Wo + tw / c.sw;
                s = fmaf(w[((co * Cg + ci % Cg) * c.Kh + kh) * c.Kw + kw], g[gi], s);
              }
          size_t xi = (((size_t)n * c.Ci + ci) * c.H + h) * c.W + ww;
          ck_assert_msg(same_bits(&s, &o.dx[xi], 1), "case %d dx[%zu]", _i, xi);
        }
  gout_free(o);
  free(x), free(w), free(b), free(dy), free(g), free(m);
}
END_TEST

/* the same bits from 1, 2 and 3 threads (gated, bias, leaky) */
START_TEST(test_gconv_threads) {
  GConv c = gconv_shapes[_i];
  size_t nx = gc_nx(c), nw = gc_nw(c), ny = gc_ny(c);
  rng_state = 300 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  int act = 1 + _i % 3;
  GOut o1 = gconv_run(c, x, w, b, dy, NULL, 1, act, 1, 1, 1);
  for (int t = 2; t <= 3; t++) {
    GOut o2 = gconv_run(c, x, w, b, dy, NULL, 1, act, 1, 1, t);
    ck_assert(same_bits(o1.y, o2.y, ny) && same_bits(o1.dx, o2.dx, nx));
    ck_assert(same_bits(o1.dw, o2.dw, nw) && same_bits(o1.db, o2.db, c.Co));
    gout_free(o2);
  }
  gout_free(o1);
  free(x), free(w), free(b), free(dy);
}
END_TEST

/* dx and db may be skipped; dw (and db) keep their bits */
START_TEST(test_gconv_skip) {
  GConv c = gconv_shapes[_i];
  size_t nw = gc_nw(c), ny = gc_ny(c);
  rng_state = 400 + _i;
  float *x = rand_buf(gc_nx(c)), *w = rand_buf(nw), *dy = rand_buf(ny);
  GOut a = gconv_run(c, x, w, NULL, dy, NULL, 1, NNCC_ACT_RELU, 1, 1, 2);
  GOut b = gconv_run(c, x, w, NULL, dy, NULL, 1, NNCC_ACT_RELU, 0, 1, 2);
  GOut d = gconv_run(c, x, w, NULL, dy, NULL, 1, NNCC_ACT_RELU, 1, 0, 2);
  ck_assert(same_bits(a.dw, b.dw, nw) && same_bits(a.db, b.db, c.Co));
  ck_assert(same_bits(a.dw, d.dw, nw) && same_bits(a.dx, d.dx, gc_nx(c)));
  /* dW NULL: db alone, the same bits */
  float *db = garbage_buf(c.Co);
  nncc_conv2d_general_backward(NULL, NULL, db, dy, a.y, x, w, c.N, c.Ci, c.H, c.W, c.Co, c.Kh,
                               c.Kw, c.sh, c.sw, c.pt, c.pl, c.dh, c.dw, c.groups, gc_ho(c),
                               gc_wo(c), NNCC_ACT_RELU, 0.0f, c.N);
  ck_assert(same_bits(a.db, db, c.Co));
  free(db);
  gout_free(a), gout_free(b), gout_free(d);
  free(x), free(w), free(dy);
}
END_TEST

/* Where the engine applies (groups 1, no dilation, symmetric padding) it
 * sums y, dw and db in the same orders, adding the padding's zeros where
 * the general kernel skips them, which changes no bits: the results agree
 * exactly. (dx differs: the engine sums over flipped kernels.) */
START_TEST(test_gconv_matches_engine) {
  static const GConv shapes[] = {
      {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},
      {3, 2, 9, 11, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},
      {2, 5, 6, 6, 20, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1, 1},
      {3, 4, 12, 12, 8, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},
      {2, 3, 7, 9, 4, 3, 5, 2, 1, 1, 1, 2, 2, 1, 1, 1},
  };
  GConv c = shapes[_i];
  size_t nx = gc_nx(c), nw = gc_nw(c), ny = gc_ny(c);
  rng_state = 500 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(c.Co), *dy = rand_buf(ny);
  for (int act = 0; act < 4; act++) {
    float alpha = act_alpha(act);
    GOut o = gconv_run(c, x, w, b, dy, NULL, 1, act, 0, 1, 2);
    float *y = garbage_buf(ny), *dw = garbage_buf(nw), *db = garbage_buf(c.Co);
    void *s1 = aligned_alloc(64, nk_align64(nncc_conv2d_forward_scratch(
                                     c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.pt, c.pl, nncc_team_size())));
    void *s2 = aligned_alloc(64, nk_align64(nncc_conv2d_backward_scratch(
                                     c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.pt, c.pl, nncc_team_size(), c.N)));
    nncc_conv2d_forward(y, x, w, b, s1, c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw, c.sh, c.sw, c.pt,
                        c.pl, act, alpha);
    nncc_conv2d_backward(NULL, dw, db, dy, y, x, w, s2, c.N, c.Ci, c.H, c.W, c.Co, c.Kh, c.Kw,
                         c.sh, c.sw, c.pt, c.pl, act, alpha, c.N);
    ck_assert_msg(same_bits(o.y, y, ny), "y, act %d", act);
    ck_assert_msg(same_bits(o.dw, dw, nw), "dw, act %d", act);
    ck_assert_msg(same_bits(o.db, db, c.Co), "db, act %d", act);
    gout_free(o);
    free(y), free(dw), free(db), free(s1), free(s2);
  }
  free(x), free(w), free(b), free(dy);
}
END_TEST

/* Generated code calls the team kernels with literal sizes inside its own
 * parallel region, and then the tiles take their unrolled paths (and with
 * NNCC_KERNELS_UNROLL, cross_compiler.sh's build, the unroll pragmas): the
 * bits must not change. */
#define LITERAL_GCONV(NAME, N_, Ci_, H_, W_, Co_, Kh_, Kw_, sh_, sw_, pt_, pb_, pl_, pr_, dh_,  \
                      dw_, g_, act_)                                                        \
  static const GConv NAME##_shape = {N_,  Ci_, H_,  W_,  Co_, Kh_, Kw_, sh_,                \
                                     sw_, pt_, pb_, pl_, pr_, dh_, dw_, g_};                \
  static void NAME(GOut o, const float *x, const float *w, const float *b, const float *dy) { \
    _Pragma("omp parallel") {                                                               \
      nncc_conv2d_general_forward_team(                                                     \
          o.y, x, w, b, N_, Ci_, H_, W_, Co_, Kh_, Kw_, sh_, sw_, pt_, pl_, dh_, dw_, g_,   \
          NNCC_CONV_OUT(H_, Kh_, sh_, pt_, pb_, dh_),                                       \
          NNCC_CONV_OUT(W_, Kw_, sw_, pl_, pr_, dw_), act_,                                 \
          act_ == NNCC_ACT_LEAKY ? 0.125f : 0.0f);                                          \
      nncc_conv2d_general_backward_team(                                                    \
          o.dx, o.dw, o.db, dy, o.y, x, w, N_, Ci_, H_, W_, Co_, Kh_, Kw_, sh_, sw_, pt_,   \
          pl_, dh_, dw_, g_, NNCC_CONV_OUT(H_, Kh_, sh_, pt_, pb_, dh_),                    \
          NNCC_CONV_OUT(W_, Kw_, sw_, pl_, pr_, dw_), act_,                                 \
          act_ == NNCC_ACT_LEAKY ? 0.125f : 0.0f, N_);                                      \
    }                                                                                       \
  }
LITERAL_GCONV(lit_dw_s1, 2, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16, NNCC_ACT_RELU6)
LITERAL_GCONV(lit_dw_s2, 2, 8, 13, 12, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 8, NNCC_ACT_NONE)
LITERAL_GCONV(lit_wide, 1, 2, 9, 40, 2, 3, 35, 1, 1, 1, 1, 17, 17, 1, 1, 2, NNCC_ACT_LEAKY)
LITERAL_GCONV(lit_mixed, 2, 4, 12, 70, 4, 3, 3, 2, 1, 1, 2, 3, 0, 2, 3, 2, NNCC_ACT_RELU)
static const struct {
  void (*run)(GOut, const float *, const float *, const float *, const float *);
  const GConv *shape;
  int act;
} literal_cases[] = {{lit_dw_s1, &lit_dw_s1_shape, NNCC_ACT_RELU6},
                     {lit_dw_s2, &lit_dw_s2_shape, NNCC_ACT_NONE},
                     {lit_wide, &lit_wide_shape, NNCC_ACT_LEAKY},
                     {lit_mixed, &lit_mixed_shape, NNCC_ACT_RELU}};
#define NLITERAL (int)(sizeof literal_cases / sizeof literal_cases[0])

static GOut literal_run(int i, const float *x, const float *w, const float *b, const float *dy) {
  GConv c = *literal_cases[i].shape;
  GOut o = {garbage_buf(gc_ny(c)), garbage_buf(gc_nx(c)), garbage_buf(gc_nw(c)),
            garbage_buf(c.Co)};
  set_threads(2);
  literal_cases[i].run(o, x, w, b, dy);
  return o;
}

START_TEST(test_gconv_literal_sizes) {
  GConv c = *literal_cases[_i].shape;
  rng_state = 450 + _i;
  float *x = rand_buf(gc_nx(c)), *w = rand_buf(gc_nw(c)), *b = rand_buf(c.Co);
  float *dy = rand_buf(gc_ny(c));
  for (size_t i = 0; i < gc_nx(c); i++) x[i] *= 4.0f;
  GOut lit = literal_run(_i, x, w, b, dy);
  GOut run = gconv_run(c, x, w, b, dy, NULL, 1, literal_cases[_i].act, 1, 1, 2);
  ck_assert(same_bits(lit.y, run.y, gc_ny(c)) && same_bits(lit.dx, run.dx, gc_nx(c)));
  ck_assert(same_bits(lit.dw, run.dw, gc_nw(c)) && same_bits(lit.db, run.db, c.Co));
  gout_free(lit), gout_free(run);
  free(x), free(w), free(b), free(dy);
}
END_TEST

/* ---- pooling ------------------------------------------------------------ */

typedef struct { int N, C, H, W, Kh, Kw, sh, sw, ph, pw, ceil_mode; } Pool;
static const Pool pool_shapes[] = {
    {2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0},   {1, 2, 7, 9, 3, 3, 2, 2, 1, 1, 0},
    {3, 1, 5, 6, 3, 2, 1, 1, 1, 0, 0},   {2, 4, 24, 24, 2, 2, 2, 2, 0, 0, 0},
    {1, 3, 6, 6, 3, 3, 3, 3, 0, 0, 0},   {2, 2, 5, 5, 2, 2, 2, 2, 0, 0, 1},
    {2, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1},   {1, 2, 6, 6, 3, 3, 2, 2, 1, 1, 1},
    {2, 3, 7, 10, 3, 2, 2, 3, 1, 1, 1},  {1, 1, 4, 4, 2, 2, 3, 3, 1, 1, 1},
    {2, 2, 11, 9, 3, 3, 2, 2, 0, 1, 1},  {1, 2, 13, 13, 3, 3, 2, 2, 1, 1, 1},
    {2, 1, 8, 7, 4, 3, 3, 2, 2, 1, 1},   {1, 3, 9, 9, 5, 5, 3, 3, 2, 2, 0},
    {2, 2, 7, 9, 2, 2, 2, 2, 0, 0, 0}, /* 2x2 path, a row and a column in no window */
};
#define NPOOL (int)(sizeof pool_shapes / sizeof pool_shapes[0])
static int pool_ho(Pool p) { return NNCC_POOL_OUT(p.H, p.Kh, p.sh, p.ph, p.ceil_mode); }
static int pool_wo(Pool p) { return NNCC_POOL_OUT(p.W, p.Kw, p.sw, p.pw, p.ceil_mode); }

/* PyTorch's output size, written out as in ATen's pooling_output_shape */
static int torch_pool_out(int H, int k, int s, int p, int ceil_mode) {
  int num = H + 2 * p - k + (ceil_mode ? s - 1 : 0);
  int out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= H + p) out--;
  return out;
}

START_TEST(test_pool_out_macro) {
  for (int H = 1; H <= 12; H++)
    for (int k = 1; k <= 5; k++)
      for (int s = 1; s <= 4; s++)
        for (int p = 0; p <= k / 2; p++)
          for (int cm = 0; cm < 2; cm++)
            ck_assert_int_eq(NNCC_POOL_OUT(H, k, s, p, cm), torch_pool_out(H, k, s, p, cm));
  for (int H = 1; H <= 12; H++)
    for (int k = 1; k <= 5; k++)
      for (int s = 1; s <= 3; s++)
        for (int d = 1; d <= 3; d++)
          for (int pt = 0; pt <= 3; pt++)
            for (int pb = 0; pb <= 3; pb++) {
              int num = H + pt + pb - d * (k - 1) - 1;
              int want = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
              ck_assert_int_eq(NNCC_CONV_OUT(H, k, s, pt, pb, d), want);
            }
}
END_TEST

/* maxpool: first maximum of the clipped window; avgpool: the window sum
 * over PyTorch's divisor (both count_include_pad settings); gradients as
 * the adjoints */
START_TEST(test_pool_vs_reference) {
  Pool p = pool_shapes[_i];
  int Ho = pool_ho(p), Wo = pool_wo(p), NC = p.N * p.C;
  size_t nx = (size_t)NC * p.H * p.W, ny = (size_t)NC * Ho * Wo;
  rng_state = 600 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i += 5) x[i] = x[i / 2]; /* ties: first max wins */
  for (size_t i = 0; i < nx; i += 7) x[i] = 0.25f;
  float *y = garbage_buf(ny), *dx = garbage_buf(nx);
  double *rdx = dcalloc(nx);
  set_threads(2);
  nncc_maxpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo);
  nncc_maxpool2d_backward(dx, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                          Wo, NNCC_ACT_NONE, 0.0f);
  for (int nc = 0; nc < NC; nc++)
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        long best = -1;
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, w = ow * p.sw - p.pw + j;
            if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
            long xi = ((long)nc * p.H + h) * p.W + w;
            if (best < 0 || x[xi] > x[best]) best = xi;
          }
        ck_assert(best >= 0);
        size_t yi = ((size_t)nc * Ho + oh) * Wo + ow;
        ck_assert_msg(memcmp(&y[yi], &x[best], 4) == 0, "maxpool y[%zu]", yi);
        rdx[best] += dy[yi];
      }
  for (size_t i = 0; i < nx; i++)
    ck_assert_msg(fabs(dx[i] - rdx[i]) <= 1e-6, "maxpool dx[%zu]: %g vs %g", i, dx[i], rdx[i]);
  for (int cip = 0; cip < 2; cip++) {
    nncc_avgpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo,
                           cip);
    nncc_avgpool2d_backward(dx, dy, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                            Wo, cip);
    memset(rdx, 0, nx * sizeof(double));
    for (int nc = 0; nc < NC; nc++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          /* ATen's avg_pool2d */
          int hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
          int he = hs + p.Kh < p.H + p.ph ? hs + p.Kh : p.H + p.ph;
          int we = ws + p.Kw < p.W + p.pw ? ws + p.Kw : p.W + p.pw;
          int pool_size = (he - hs) * (we - ws);
          hs = hs > 0 ? hs : 0, ws = ws > 0 ? ws : 0;
          he = he < p.H ? he : p.H, we = we < p.W ? we : p.W;
          int div = cip ? pool_size : (he - hs) * (we - ws);
          double s = 0;
          for (int h = hs; h < he; h++)
            for (int w = ws; w < we; w++) s += x[((size_t)nc * p.H + h) * p.W + w];
          size_t yi = ((size_t)nc * Ho + oh) * Wo + ow;
          ck_assert_msg(fabs(y[yi] - s / div) <= 1e-6, "avgpool cip %d y[%zu]: %g vs %g", cip, yi,
                        y[yi], s / div);
          for (int h = hs; h < he; h++)
            for (int w = ws; w < we; w++) rdx[((size_t)nc * p.H + h) * p.W + w] += dy[yi] / (double)div;
        }
    for (size_t i = 0; i < nx; i++)
      ck_assert_msg(fabs(dx[i] - rdx[i]) <= 1e-6, "avgpool cip %d dx[%zu]", cip, i);
  }
  free(x), free(dy), free(y), free(dx), free(rdx);
}
END_TEST

/* PyTorch's values for a case worked by hand: avg_pool2d(ones(1,1,6,6),
 * 3, stride 2, padding 1, ceil_mode=True) is 4x4; rows/cols of windows
 * hold 2, 3, 3, 1 inputs of 3, 3, 3, 2 (padded) places. Max pooling of
 * 1..25 (5x5), kernel 2, stride 2, padding 1, ceil_mode: 3x3, the window
 * that would start in the padding is dropped. */
START_TEST(test_pool_ceil_values) {
  float x[36], y[16], dx[36], dy[16];
  for (int i = 0; i < 36; i++) x[i] = 1.0f;
  for (int i = 0; i < 16; i++) dy[i] = 1.0f;
  ck_assert_int_eq(NNCC_POOL_OUT(6, 3, 2, 1, 1), 4);
  const int in[4] = {2, 3, 3, 1}, all[4] = {3, 3, 3, 2};
  nncc_avgpool2d_forward(y, x, 1, 1, 6, 6, 3, 3, 2, 2, 1, 1, 4, 4, 1);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      ck_assert_msg(y[i * 4 + j] == (float)(in[i] * in[j]) / (float)(all[i] * all[j]),
                    "cip y[%d][%d] = %g", i, j, y[i * 4 + j]);
  ck_assert(y[0] == 4.0f / 9.0f && y[3] == 1.0f / 3.0f && y[15] == 0.25f && y[5] == 1.0f);
  nncc_avgpool2d_forward(y, x, 1, 1, 6, 6, 3, 3, 2, 2, 1, 1, 4, 4, 0);
  for (int i = 0; i < 16; i++) ck_assert(y[i] == 1.0f);
  /* count_include_pad=False: dx of the ones is, per input, the number of
   * windows that hold it, each over its own count */
  nncc_avgpool2d_backward(dx, dy, 1, 1, 6, 6, 3, 3, 2, 2, 1, 1, 4, 4, 0);
  /* x[5][5] is in windows (2,2) (2,3) (3,2) (3,3), of 9, 3, 3, 1 inputs */
  ck_assert(dx[35] == 1.0f / 9.0f + 1.0f / 3.0f + 1.0f / 3.0f + 1.0f);
  float m[25], my[9], mdx[25], mdy[9];
  for (int i = 0; i < 25; i++) m[i] = (float)(i + 1);
  for (int i = 0; i < 9; i++) mdy[i] = (float)(i + 1);
  ck_assert_int_eq(NNCC_POOL_OUT(5, 2, 2, 1, 1), 3);
  nncc_maxpool2d_forward(my, m, 1, 1, 5, 5, 2, 2, 2, 2, 1, 1, 3, 3);
  const float want[9] = {1, 3, 5, 11, 13, 15, 21, 23, 25};
  for (int i = 0; i < 9; i++) ck_assert(my[i] == want[i]);
  nncc_maxpool2d_backward(mdx, mdy, m, 1, 1, 5, 5, 2, 2, 2, 2, 1, 1, 3, 3, NNCC_ACT_NONE, 0.0f);
  for (int i = 0; i < 25; i++) {
    int k = -1;
    for (int j = 0; j < 9; j++)
      if (want[j] == m[i]) k = j;
    ck_assert(mdx[i] == (k >= 0 ? mdy[k] : 0.0f));
  }
  /* ceil_mode: the partial last window of 5 with kernel 2, stride 2 */
  nncc_maxpool2d_forward(my, m, 1, 1, 5, 5, 2, 2, 2, 2, 0, 0, 3, 3);
  const float want2[9] = {7, 9, 10, 17, 19, 20, 22, 24, 25};
  for (int i = 0; i < 9; i++) ck_assert(my[i] == want2[i]);
}
END_TEST

/* The pooling kernels as they were before ceil_mode (floor mode,
 * count_include_pad): the new ones, and max pooling's 2x2 path, must give
 * exactly these bits. */
static void legacy_avgpool_fwd(float *y, const float *x, Pool p) {
  int Ho = (p.H + 2 * p.ph - p.Kh) / p.sh + 1, Wo = (p.W + 2 * p.pw - p.Kw) / p.sw + 1;
  float div = (float)(p.Kh * p.Kw);
  for (int nc = 0; nc < p.N * p.C; nc++) {
    const float *xp = x + (size_t)nc * p.H * p.W;
    float *yp = y + (size_t)nc * Ho * Wo;
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float s = 0.0f;
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, ww = ow * p.sw - p.pw + j;
            if (h >= 0 && h < p.H && ww >= 0 && ww < p.W) s += xp[h * p.W + ww];
          }
        yp[oh * Wo + ow] = s / div;
      }
  }
}
static void legacy_avgpool_bwd(float *dx, const float *dy, Pool p) {
  int Ho = (p.H + 2 * p.ph - p.Kh) / p.sh + 1, Wo = (p.W + 2 * p.pw - p.Kw) / p.sw + 1;
  float div = (float)(p.Kh * p.Kw);
  for (int nc = 0; nc < p.N * p.C; nc++) {
    const float *dp = dy + (size_t)nc * Ho * Wo;
    float *gp = dx + (size_t)nc * p.H * p.W;
    memset(gp, 0, (size_t)p.H * p.W * sizeof(float));
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float g = dp[oh * Wo + ow] / div;
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, ww = ow * p.sw - p.pw + j;
            if (h >= 0 && h < p.H && ww >= 0 && ww < p.W) gp[h * p.W + ww] += g;
          }
      }
  }
}
static void legacy_maxpool(float *y, float *dx, const float *x, const float *dy, Pool p) {
  int Ho = (p.H + 2 * p.ph - p.Kh) / p.sh + 1, Wo = (p.W + 2 * p.pw - p.Kw) / p.sw + 1;
  for (int nc = 0; nc < p.N * p.C; nc++) {
    const float *xp = x + (size_t)nc * p.H * p.W;
    float *gp = dx + (size_t)nc * p.H * p.W;
    memset(gp, 0, (size_t)p.H * p.W * sizeof(float));
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        int best = -1;
        float m = 0.0f;
        for (int i = 0; i < p.Kh; i++)
          for (int j = 0; j < p.Kw; j++) {
            int h = oh * p.sh - p.ph + i, ww = ow * p.sw - p.pw + j;
            if (h < 0 || h >= p.H || ww < 0 || ww >= p.W) continue;
            float v = xp[h * p.W + ww];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = h * p.W + ww;
          }
        y[(size_t)nc * Ho * Wo + oh * Wo + ow] = xp[best];
        gp[best] += dy[(size_t)nc * Ho * Wo + oh * Wo + ow];
      }
  }
}

START_TEST(test_pool_legacy_bits) {
  Pool p = pool_shapes[_i];
  p.ceil_mode = 0;
  int Ho = pool_ho(p), Wo = pool_wo(p);
  size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * Ho * Wo;
  rng_state = 700 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i += 3) x[i] = x[i / 2];
  for (size_t i = 0; i < nx; i += 11) x[i] = NAN;
  /* ties of -0 and +0, where the first in window order must win, and a
   * -0 gradient (0 + -0 is +0 in dx) */
  for (size_t i = 1; i < nx; i += 5) x[i] = -0.0f, x[i - 1] = 0.0f;
  for (size_t i = 2; i < nx; i += 13) x[i] = 0.0f, x[i - 1] = -0.0f;
  for (size_t i = 0; i < ny; i += 7) dy[i] = -0.0f;
  float *y = garbage_buf(ny), *dx = garbage_buf(nx), *ly = garbage_buf(ny), *ldx = garbage_buf(nx);
  set_threads(2);
  nncc_avgpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo, 1);
  legacy_avgpool_fwd(ly, x, p);
  ck_assert(same_bits(y, ly, ny));
  nncc_avgpool2d_backward(dx, dy, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo,
                          1);
  legacy_avgpool_bwd(ldx, dy, p);
  ck_assert(same_bits(dx, ldx, nx));
  nncc_maxpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo);
  nncc_maxpool2d_backward(dx, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                          Wo, NNCC_ACT_NONE, 0.0f);
  legacy_maxpool(ly, ldx, x, dy, p);
  ck_assert(same_bits(y, ly, ny) && same_bits(dx, ldx, nx));
  free(x), free(dy), free(y), free(dx), free(ly), free(ldx);
}
END_TEST

/* A max pool that takes its input's activation gate (fuse.c) gives what
 * the pool and then the conv's gate gave: the pool's dx, gated element by
 * element by the activation's output x, bit for bit, for relu, relu6 and
 * leaky_relu, on the 2x2 path and on overlapping windows.  x is what the
 * activation can output: zeros of both signs, 6, NaN, and (leaky) values
 * below 0. */
START_TEST(test_pool_gate) {
  static const int acts[3] = {NNCC_ACT_RELU, NNCC_ACT_RELU6, NNCC_ACT_LEAKY};
  Pool p = pool_shapes[_i / 3];
  int act = acts[_i % 3];
  float alpha = act == NNCC_ACT_LEAKY ? 0.2f : 0.0f;
  int Ho = pool_ho(p), Wo = pool_wo(p);
  size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * Ho * Wo;
  rng_state = 900 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  for (size_t i = 0; i < nx; i++) {
    float v = 8.0f * x[i];
    x[i] = act == NNCC_ACT_LEAKY ? nk_leaky1(v, alpha) : act == NNCC_ACT_RELU ? nk_relu1(v) : nk_relu6_1(v);
  }
  for (size_t i = 0; i < nx; i += 7) x[i] = i % 2 ? -0.0f : 0.0f;
  for (size_t i = 3; i < nx; i += 17) x[i] = act == NNCC_ACT_RELU6 ? 6.0f : NAN;
  for (size_t i = 0; i < ny; i += 5) dy[i] = -0.0f;
  float *dx = garbage_buf(nx), *ref = garbage_buf(nx);
  set_threads(2);
  nncc_maxpool2d_backward(ref, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                          Wo, NNCC_ACT_NONE, 0.0f);
  for (size_t i = 0; i < nx; i++) ref[i] = nk_actgrad1(ref[i], x[i], act, alpha);
  nncc_maxpool2d_backward(dx, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                          Wo, act, alpha);
  ck_assert(same_bits(dx, ref, nx));
  free(x), free(dy), free(dx), free(ref);
}
END_TEST

/* Batch norm with a fused activation (fuse.c) gives what batch norm and
 * then the activation's own kernels gave, bit for bit: forward act(bn(x)),
 * and backward batch norm's gradients from the gate of dy by y, for relu,
 * relu6 and leaky_relu, in training.  gamma scales x up so that relu6
 * clips at 6 too. */
START_TEST(test_batchnorm_act) {
  static const int acts[3] = {NNCC_ACT_RELU, NNCC_ACT_RELU6, NNCC_ACT_LEAKY};
  int act = acts[_i], N = 4, C = 3, HW = 10, S = 2;
  float alpha = act == NNCC_ACT_LEAKY ? 0.2f : 0.0f;
  size_t n = (size_t)N * C * HW;
  rng_state = 950 + _i;
  float *x = rand_buf(n), *dy = rand_buf(n), gamma[3] = {4.0f, 1.0f, 7.0f}, beta[3] = {0.5f, -0.25f, 1.0f};
  float *y[2], *dx[2], dgamma[2][3], dbeta[2][3], run[2][2][3], count[2] = {0, 0};
  double stats[2][9], planes[24]; /* 2C floats, then 2C doubles; N*C*2 doubles, for N = 4, C = 3 */
  set_threads(2);
  for (int f = 0; f < 2; f++) { /* f = 0: batch norm, then the activation; 1: fused */
    y[f] = garbage_buf(n), dx[f] = garbage_buf(n);
    for (int c = 0; c < 3; c++) run[f][0][c] = 0.0f, run[f][1][c] = 1.0f;
    float *st = (float *)stats[f];
    nncc_batchnorm2d_forward(y[f], x, gamma, beta, run[f][0], run[f][1], &count[f], st, planes, N, C, HW, 1e-5,
                             0.1, 1, 0, f ? act : NNCC_ACT_NONE, alpha, S, N, NULL, NULL);
    const float *g = dy;
    float *gated = garbage_buf(n);
    if (!f) {
      if (act == NNCC_ACT_RELU) nncc_relu_forward(y[f], y[f], n), nncc_relu_backward(gated, dy, y[f], n);
      if (act == NNCC_ACT_RELU6) nncc_relu6_forward(y[f], y[f], n), nncc_relu6_backward(gated, dy, y[f], n);
      if (act == NNCC_ACT_LEAKY)
        nncc_leaky_relu_forward(y[f], y[f], alpha, n), nncc_leaky_relu_backward(gated, dy, y[f], alpha, n);
      g = gated;
    }
    nncc_batchnorm2d_backward(dx[f], dgamma[f], dbeta[f], g, f ? y[f] : NULL, x, gamma, st, N, C, HW,
                              f ? act : NNCC_ACT_NONE, alpha, S, N, NULL, NULL);
    free(gated);
  }
  ck_assert(same_bits(y[0], y[1], n) && same_bits(dx[0], dx[1], n));
  ck_assert(same_bits(dgamma[0], dgamma[1], 3) && same_bits(dbeta[0], dbeta[1], 3));
  ck_assert(same_bits(run[0][0], run[1][0], 6));
  if (act == NNCC_ACT_RELU6) { /* the test reaches both bounds */
    int six = 0, zero = 0;
    for (size_t i = 0; i < n; i++) six += y[1][i] == 6.0f, zero += y[1][i] == 0.0f;
    ck_assert(six > 0 && zero > 0);
  }
  free(x), free(dy);
  for (int f = 0; f < 2; f++) free(y[f]), free(dx[f]);
}
END_TEST

/* A conv whose epilogue writes its batch norm's plane statistics
 * (nncc_conv2d_forward_stats_team, passes/fuse.c), then the batch norm
 * starting from them (prestats), give what the conv and the batch norm
 * computing them itself gave, bit for bit: the output, the saved mean and
 * 1/std, the running statistics and the planes' statistics; on 1 and 3
 * threads, with planes of sizes that are not multiples of NK_PS_LANES and
 * images split over groups.  The mean and variance agree with a plain
 * two-pass sum in double. */
START_TEST(test_batchnorm_prestats) {
  static const int shapes[3][8] = {/* N, Ci, H, W, Co, K, pad, S (a power of two of groups) */
                                   {8, 3, 9, 7, 6, 3, 1, 2}, {4, 2, 12, 12, 5, 5, 0, 2}, {4, 4, 6, 6, 17, 1, 0, 1}};
  const int *sh = shapes[_i];
  int N = sh[0], Ci = sh[1], H = sh[2], W = sh[3], Co = sh[4], K = sh[5], pad = sh[6], S = sh[7];
  int Ho = H + 2 * pad - K + 1, Wo = W + 2 * pad - K + 1, HW = Ho * Wo;
  size_t nx = (size_t)N * Ci * H * W, ny = (size_t)N * Co * HW, nw = (size_t)Co * Ci * K * K;
  rng_state = 990 + _i;
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(Co), *gamma = rand_buf(Co), *beta = rand_buf(Co);
  for (int t = 0; t < 2; t++) {
    set_threads(t ? 3 : 1);
    void *scratch = aligned_alloc(64, nk_align64(nncc_conv2d_forward_scratch(
                                          N, Ci, H, W, Co, K, K, 1, 1, pad, pad, nncc_team_size())));
    float *y[2], *out[2], *run[2], *stats[2], count[2] = {0, 0};
    double *planes[2];
    for (int f = 0; f < 2; f++) { /* f = 0: the batch norm sums; 1: the conv's epilogue */
      y[f] = garbage_buf(ny), out[f] = garbage_buf(ny), stats[f] = garbage_buf(6 * (size_t)Co);
      planes[f] = (double *)(void *)garbage_buf(4 * (size_t)N * Co);
      run[f] = malloc(2 * (size_t)Co * sizeof(float));
      for (int c = 0; c < Co; c++) run[f][c] = 0.0f, run[f][Co + c] = 1.0f;
      if (f) {
#pragma omp parallel
        nncc_conv2d_forward_stats_team(y[f], planes[f], x, w, b, scratch, N, Ci, H, W, Co, K, K, 1,
                                       1, pad, pad, NNCC_ACT_NONE, 0.0f);
      } else {
        nncc_conv2d_forward(y[f], x, w, b, scratch, N, Ci, H, W, Co, K, K, 1, 1, pad, pad,
                            NNCC_ACT_NONE, 0.0f);
      }
      nncc_batchnorm2d_forward(out[f], y[f], gamma, beta, run[f], run[f] + Co, &count[f], stats[f],
                               planes[f], N, Co, HW, 1e-5, 0.1, 1, f, NNCC_ACT_RELU, 0.0f, S, N,
                               NULL, NULL);
    }
    ck_assert_msg(same_bits(y[0], y[1], ny), "%d threads: y", t ? 3 : 1);
    ck_assert_msg(same_bits(out[0], out[1], ny), "%d threads: output", t ? 3 : 1);
    ck_assert_msg(same_bits(stats[0], stats[1], 2 * (size_t)Co), "%d threads: mean, 1/std", t ? 3 : 1);
    ck_assert_msg(same_bits(run[0], run[1], 2 * (size_t)Co), "%d threads: running", t ? 3 : 1);
    ck_assert_msg(memcmp(planes[0], planes[1], 2 * (size_t)N * Co * sizeof(double)) == 0,
                  "%d threads: planes", t ? 3 : 1);
    for (int c = 0; c < Co; c++) {
      double m = 0.0, v = 0.0, M = (double)N * HW;
      for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) m += y[0][((size_t)n * Co + c) * HW + i];
      m /= M;
      for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) {
          double d = y[0][((size_t)n * Co + c) * HW + i] - m;
          v += d * d;
        }
      v /= M;
      ck_assert_msg(fabs(stats[0][c] - m) <= 1e-6 * (1.0 + fabs(m)), "channel %d: mean %g, want %g",
                    c, stats[0][c], m);
      double invstd = 1.0 / sqrt(v + 1e-5);
      ck_assert_msg(fabs(stats[0][Co + c] - invstd) <= 1e-6 * invstd, "channel %d: 1/std %g, want %g",
                    c, stats[0][Co + c], invstd);
    }
    for (int f = 0; f < 2; f++) free(y[f]), free(out[f]), free(stats[f]), free(planes[f]), free(run[f]);
    free(scratch);
  }
  free(x), free(w), free(b), free(gamma), free(beta);
}
END_TEST

/* a conv whose epilogue runs the max pool after it (passes/fuse.c) against
 * the conv and then the pool: the same bits, on 1 and 3 threads; the pool
 * windows of pool_shapes, on conv outputs of their size */
START_TEST(test_conv_pool_epilogue) {
  Pool p = pool_shapes[_i];
  int K = 3, Ci = 2, N = p.N + 3, H = p.H + K - 1, W = p.W + K - 1, Co = p.C + 1;
  int Ho = pool_ho(p), Wo = pool_wo(p);
  size_t nx = (size_t)N * Ci * H * W, ny = (size_t)N * Co * p.H * p.W, np = (size_t)N * Co * Ho * Wo;
  rng_state = 1900 + _i;
  float *x = rand_buf(nx), *w = rand_buf((size_t)Co * Ci * K * K), *b = rand_buf(Co);
  for (int t = 0; t < 2; t++) {
    set_threads(t ? 3 : 1);
    void *scratch = aligned_alloc(64, nk_align64(nncc_conv2d_forward_scratch(
                                          N, Ci, H, W, Co, K, K, 1, 1, 0, 0, nncc_team_size())));
    float *y[2], *py[2];
    for (int f = 0; f < 2; f++) { /* f = 0: the conv, then the pool; 1: the conv's epilogue */
      y[f] = garbage_buf(ny), py[f] = garbage_buf(np);
      if (f) {
#pragma omp parallel
        nncc_conv2d_forward_pool_team(y[f], py[f], x, w, b, scratch, N, Ci, H, W, Co, K, K, 1, 1,
                                      0, 0, NNCC_ACT_RELU, 0.0f, p.Kh, p.Kw, p.sh, p.sw, p.ph,
                                      p.pw, Ho, Wo);
      } else {
        nncc_conv2d_forward(y[f], x, w, b, scratch, N, Ci, H, W, Co, K, K, 1, 1, 0, 0,
                            NNCC_ACT_RELU, 0.0f);
        nncc_maxpool2d_forward(py[f], y[f], N, Co, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw,
                               Ho, Wo);
      }
    }
    ck_assert_msg(same_bits(y[0], y[1], ny), "%d threads: y", t ? 3 : 1);
    ck_assert_msg(same_bits(py[0], py[1], np), "%d threads: pooled", t ? 3 : 1);
    /* and the pool is a pool: each output is its window's largest */
    for (size_t k = 0; k < np; k++) {
      size_t nc = k / ((size_t)Ho * Wo);
      int oh = (int)(k / Wo % Ho), ow = (int)(k % Wo);
      float m = -INFINITY;
      for (int i = 0; i < p.Kh; i++)
        for (int j = 0; j < p.Kw; j++) {
          int h = oh * p.sh - p.ph + i, ww = ow * p.sw - p.pw + j;
          if (h >= 0 && h < p.H && ww >= 0 && ww < p.W) m = fmaxf(m, y[0][(nc * p.H + h) * p.W + ww]);
        }
      ck_assert_msg(py[1][k] == m, "output %zu: %g, want %g", k, py[1][k], m);
    }
    for (int f = 0; f < 2; f++) free(y[f]), free(py[f]);
    free(scratch);
  }
  free(x), free(w), free(b);
}
END_TEST

/* pooling, 1 thread vs 3: the same bits */
START_TEST(test_pool_threads) {
  Pool p = pool_shapes[_i];
  int Ho = pool_ho(p), Wo = pool_wo(p);
  size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * Ho * Wo;
  rng_state = 800 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny), *out[2][6];
  for (int t = 0; t < 2; t++) {
    set_threads(t ? 3 : 1);
    for (int k = 0; k < 6; k++) out[t][k] = garbage_buf(k % 2 ? nx : ny);
    nncc_maxpool2d_forward(out[t][0], x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw,
                           Ho, Wo);
    nncc_maxpool2d_backward(out[t][1], dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph,
                            p.pw, Ho, Wo, NNCC_ACT_NONE, 0.0f);
    for (int cip = 0; cip < 2; cip++) {
      nncc_avgpool2d_forward(out[t][2 + 2 * cip], x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw,
                             p.ph, p.pw, Ho, Wo, cip);
      nncc_avgpool2d_backward(out[t][3 + 2 * cip], dy, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw,
                              p.ph, p.pw, Ho, Wo, cip);
    }
  }
  for (int k = 0; k < 6; k++) ck_assert(same_bits(out[0][k], out[1][k], k % 2 ? nx : ny));
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 6; k++) free(out[t][k]);
  free(x), free(dy);
}
END_TEST

/* ---- adaptive max pooling ------------------------------------------------ */

typedef struct { int NC, H, W, Ho, Wo; } APool;
static const APool apool_shapes[] = {
    {3, 7, 7, 3, 3}, {2, 10, 6, 4, 5}, {2, 5, 5, 7, 7}, {1, 9, 4, 2, 3},
    {4, 6, 6, 1, 1}, {2, 3, 8, 3, 8},  {1, 13, 11, 5, 4},
};
#define NAPOOL (int)(sizeof apool_shapes / sizeof apool_shapes[0])

START_TEST(test_adaptive_max_vs_reference) {
  APool a = apool_shapes[_i];
  size_t nx = (size_t)a.NC * a.H * a.W, ny = (size_t)a.NC * a.Ho * a.Wo;
  rng_state = 900 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  /* few distinct values: many ties */
  for (size_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 2.0f) * 0.5f;
  float *y = garbage_buf(ny), *dx = garbage_buf(nx), *y1 = garbage_buf(ny), *dx1 = garbage_buf(nx);
  double *rdx = dcalloc(nx);
  set_threads(2);
  nncc_adaptive_maxpool2d_forward(y, x, a.NC, a.H, a.W, a.Ho, a.Wo);
  nncc_adaptive_maxpool2d_backward(dx, dy, x, a.NC, a.H, a.W, a.Ho, a.Wo);
  for (int nc = 0; nc < a.NC; nc++)
    for (int i = 0; i < a.Ho; i++)
      for (int j = 0; j < a.Wo; j++) {
        int h0 = (int)floor((double)i * a.H / a.Ho), h1 = (int)ceil((double)(i + 1) * a.H / a.Ho);
        int w0 = (int)floor((double)j * a.W / a.Wo), w1 = (int)ceil((double)(j + 1) * a.W / a.Wo);
        long best = -1;
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) {
            long xi = ((long)nc * a.H + h) * a.W + w;
            if (best < 0 || x[xi] > x[best]) best = xi;
          }
        size_t yi = ((size_t)nc * a.Ho + i) * a.Wo + j;
        ck_assert_msg(y[yi] == x[best], "y[%zu]", yi);
        rdx[best] += dy[yi];
      }
  for (size_t i = 0; i < nx; i++)
    ck_assert_msg(fabs(dx[i] - rdx[i]) <= 1e-6, "dx[%zu]: %g vs %g", i, dx[i], rdx[i]);
  set_threads(1);
  nncc_adaptive_maxpool2d_forward(y1, x, a.NC, a.H, a.W, a.Ho, a.Wo);
  nncc_adaptive_maxpool2d_backward(dx1, dy, x, a.NC, a.H, a.W, a.Ho, a.Wo);
  ck_assert(same_bits(y, y1, ny) && same_bits(dx, dx1, nx));
  free(x), free(dy), free(y), free(dx), free(y1), free(dx1), free(rdx);
}
END_TEST

/* uneven windows by hand: H = 5 into 3 takes rows [0,2) [1,4) [3,5); the
 * first of equal maxima wins; NaN wins, the first NaN */
START_TEST(test_adaptive_max_values) {
  const float x[5] = {2, 2, 1, 2, 0}, dy[3] = {10, 20, 30};
  float y[3], dx[5];
  nncc_adaptive_maxpool2d_forward(y, x, 1, 1, 5, 1, 3);
  nncc_adaptive_maxpool2d_backward(dx, dy, x, 1, 1, 5, 1, 3);
  ck_assert(y[0] == 2 && y[1] == 2 && y[2] == 2);
  ck_assert(dx[0] == 10 && dx[1] == 20 && dx[2] == 0 && dx[3] == 30 && dx[4] == 0);
  const float xn[5] = {1, NAN, 3, NAN, 0};
  nncc_adaptive_maxpool2d_forward(y, xn, 1, 5, 1, 3, 1);
  nncc_adaptive_maxpool2d_backward(dx, dy, xn, 1, 5, 1, 3, 1);
  ck_assert(isnan(y[0]) && isnan(y[1]) && isnan(y[2]));
  ck_assert(dx[0] == 0 && dx[1] == 30 && dx[2] == 0 && dx[3] == 30 && dx[4] == 0);
}
END_TEST

/* ---- bit-exact dump for cross-compiler comparison ----------------------- */

#include "dump.h"

static void write_dump(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(1);
  }
  for (int i = 0; i < NGCONV; i++) {
    GConv c = gconv_shapes[i];
    rng_state = 1000 + i;
    float *x = rand_buf(gc_nx(c)), *w = rand_buf(gc_nw(c)), *b = rand_buf(c.Co);
    float *dy = rand_buf(gc_ny(c));
    for (int act = 0; act < 4; act++) {
      GOut o = gconv_run(c, x, w, b, dy, NULL, 1, act, 1, 1, 2);
      dump(f, "gconv.y", o.y, gc_ny(c)), dump(f, "gconv.dx", o.dx, gc_nx(c));
      dump(f, "gconv.dw", o.dw, gc_nw(c)), dump(f, "gconv.db", o.db, c.Co);
      gout_free(o);
    }
    free(x), free(w), free(b), free(dy);
  }
  for (int i = 0; i < NLITERAL; i++) {
    GConv c = *literal_cases[i].shape;
    rng_state = 1050 + i;
    float *x = rand_buf(gc_nx(c)), *w = rand_buf(gc_nw(c)), *b = rand_buf(c.Co);
    float *dy = rand_buf(gc_ny(c));
    GOut o = literal_run(i, x, w, b, dy);
    dump(f, "literal.y", o.y, gc_ny(c)), dump(f, "literal.dx", o.dx, gc_nx(c));
    dump(f, "literal.dw", o.dw, gc_nw(c)), dump(f, "literal.db", o.db, c.Co);
    gout_free(o);
    free(x), free(w), free(b), free(dy);
  }
  for (int i = 0; i < NPOOL; i++) {
    Pool p = pool_shapes[i];
    int Ho = pool_ho(p), Wo = pool_wo(p);
    size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * Ho * Wo;
    rng_state = 1100 + i;
    float *x = rand_buf(nx), *dy = rand_buf(ny), *y = garbage_buf(ny), *dx = garbage_buf(nx);
    set_threads(2);
    for (int cip = 0; cip < 2; cip++) {
      nncc_avgpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo,
                             cip);
      nncc_avgpool2d_backward(dx, dy, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                              Wo, cip);
      dump(f, "avgpool.y", y, ny), dump(f, "avgpool.dx", dx, nx);
    }
    nncc_maxpool2d_forward(y, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho, Wo);
    nncc_maxpool2d_backward(dx, dy, x, p.N, p.C, p.H, p.W, p.Kh, p.Kw, p.sh, p.sw, p.ph, p.pw, Ho,
                            Wo, NNCC_ACT_NONE, 0.0f);
    dump(f, "maxpool.y", y, ny), dump(f, "maxpool.dx", dx, nx);
    free(x), free(dy), free(y), free(dx);
  }
  for (int i = 0; i < NAPOOL; i++) {
    APool a = apool_shapes[i];
    size_t nx = (size_t)a.NC * a.H * a.W, ny = (size_t)a.NC * a.Ho * a.Wo;
    rng_state = 1200 + i;
    float *x = rand_buf(nx), *dy = rand_buf(ny), *y = garbage_buf(ny), *dx = garbage_buf(nx);
    nncc_adaptive_maxpool2d_forward(y, x, a.NC, a.H, a.W, a.Ho, a.Wo);
    nncc_adaptive_maxpool2d_backward(dx, dy, x, a.NC, a.H, a.W, a.Ho, a.Wo);
    dump(f, "amaxpool.y", y, ny), dump(f, "amaxpool.dx", dx, nx);
    free(x), free(dy), free(y), free(dx);
  }
  fclose(f);
}

/* ---- batch reductions in groups (nncc_kernels.h) ------------------------
 * A batch of 8 images summed in groups of 2 gives, bit for bit, the
 * pairwise tree of its halves' sums and of its quarters' sums: what MPI
 * ranks holding those slices compute (runtime/dist.c).  For the
 * convolution engine, the general convolution and linear, weights and
 * bias; batch norm's sums are the same tree (tests/mpi). */
enum { GB = 8, GS = 2 };
typedef struct { int Ci, H, W, Co, K, pad, dil, groups; } GroupConv;
static const GroupConv group_convs[] = {
    {3, 9, 9, 17, 3, 1, 1, 1},  /* the engine (dilation 1, groups 1) */
    {4, 8, 10, 4, 3, 2, 2, 2},  /* the general convolution */
};
enum { GROUP_LINEAR = 2, NGROUPCASE = 3 }; /* case 2: linear, 33 -> 20 */

/* dw, db of images [n0, n0 + N) of the case's batch x, dy, groups of GS */
static void group_grads(int k, float *dw, float *db, const float *x, const float *dy, int n0, int N) {
  if (k == GROUP_LINEAR) {
    void *s = aligned_alloc(64, nk_align64(nncc_linear_backward_scratch(N, 33, 20)));
    nncc_linear_backward(NULL, dw, db, dy + (size_t)n0 * 20, NULL, x + (size_t)n0 * 33, NULL, s, N,
                         33, 20, NNCC_ACT_NONE, 0.0f, GS);
    free(s);
    return;
  }
  GroupConv c = group_convs[k];
  int Ho = NNCC_CONV_OUT(c.H, c.K, 1, c.pad, c.pad, c.dil), Wo = NNCC_CONV_OUT(c.W, c.K, 1, c.pad, c.pad, c.dil);
  const float *xs = x + (size_t)n0 * c.Ci * c.H * c.W, *dys = dy + (size_t)n0 * c.Co * Ho * Wo;
  if (c.dil == 1 && c.groups == 1) {
    void *s = aligned_alloc(64, nk_align64(nncc_conv2d_backward_scratch(
                                    N, c.Ci, c.H, c.W, c.Co, c.K, c.K, 1, 1, c.pad, c.pad, nncc_team_size(), GS)));
    nncc_conv2d_backward(NULL, dw, db, dys, NULL, xs, NULL, s, N, c.Ci, c.H, c.W, c.Co, c.K, c.K, 1, 1,
                         c.pad, c.pad, NNCC_ACT_NONE, 0.0f, GS);
    free(s);
  } else {
    nncc_conv2d_general_backward(NULL, dw, db, dys, NULL, xs, NULL, N, c.Ci, c.H, c.W, c.Co, c.K, c.K,
                                 1, 1, c.pad, c.pad, c.dil, c.dil, c.groups, Ho, Wo, NNCC_ACT_NONE,
                                 0.0f, GS);
  }
}

START_TEST(test_groups_split) {
  int k = _i;
  size_t nx, ny, nw, nb;
  if (k == GROUP_LINEAR) {
    nx = GB * 33, ny = GB * 20, nw = 20 * 33, nb = 20;
  } else {
    GroupConv c = group_convs[k];
    int Ho = NNCC_CONV_OUT(c.H, c.K, 1, c.pad, c.pad, c.dil), Wo = NNCC_CONV_OUT(c.W, c.K, 1, c.pad, c.pad, c.dil);
    nx = (size_t)GB * c.Ci * c.H * c.W, ny = (size_t)GB * c.Co * Ho * Wo;
    nw = (size_t)c.Co * (c.Ci / c.groups) * c.K * c.K, nb = c.Co;
  }
  rng_state = 1300 + k;
  float *x = rand_buf(nx), *dy = rand_buf(ny);
  float *w[7], *b[7]; /* [0]: the batch; [1, 2]: halves; [3..6]: quarters */
  for (int i = 0; i < 7; i++) w[i] = garbage_buf(nw), b[i] = garbage_buf(nb);
  float *w1 = garbage_buf(nw), *b1 = garbage_buf(nb); /* the batch's, on 8 threads */
  /* 8 threads (more than the groups) split the conv's weight gradient by
   * tiles, 3-1 by groups (nk_dw_team): the same bits.  The largest team
   * first: libomp 14 leaks a little (LeakSanitizer) when a process's team
   * grows past 3 threads after its first parallel region. */
  static const int teams[4] = {8, 3, 2, 1};
  for (int ti = 0; ti < 4; ti++) {
    int t = teams[ti];
    set_threads(t);
    group_grads(k, w[0], b[0], x, dy, 0, GB);
    if (ti == 0) memcpy(w1, w[0], nw * sizeof(float)), memcpy(b1, b[0], nb * sizeof(float));
    ck_assert_msg(same_bits(w1, w[0], nw) && same_bits(b1, b[0], nb), "case %d: %d threads", k, t);
    for (int h = 0; h < 2; h++) group_grads(k, w[1 + h], b[1 + h], x, dy, h * GB / 2, GB / 2);
    for (int q = 0; q < 4; q++) group_grads(k, w[3 + q], b[3 + q], x, dy, q * GB / 4, GB / 4);
    for (size_t i = 0; i < nw + nb; i++) {
      float *v[7];
      for (int j = 0; j < 7; j++) v[j] = i < nw ? &w[j][i] : &b[j][i - nw];
      float halves = *v[1] + *v[2], quarters = (*v[3] + *v[4]) + (*v[5] + *v[6]);
      ck_assert_msg(same_bits(v[0], &halves, 1), "case %d, %d threads, %s[%zu]: halves", k, t,
                    i < nw ? "dw" : "db", i < nw ? i : i - nw);
      ck_assert_msg(same_bits(v[0], &quarters, 1), "case %d, %d threads, %s[%zu]: quarters", k, t,
                    i < nw ? "dw" : "db", i < nw ? i : i - nw);
    }
  }
  for (int i = 0; i < 7; i++) free(w[i]), free(b[i]);
  free(w1), free(b1), free(x), free(dy);
}
END_TEST

/* ---- the weight gradient's multi-image passes (nncc_kernels.h) --------
 * A tile runs IB images of a group in one pass (nk_dw_plan), or, where dW
 * is large and the batch's inputs small, the team makes the whole batch
 * ready and runs blocks of tiles over all groups (nk_bwd_layout's batch).
 * Each accumulator is the same FMA chain as with one image a pass
 * (dw_one_image.c, built with neither): the same bits, by tiles (8 threads)
 * and by groups (3, 2, 1), with and without the ReLU gate, for a pass that
 * holds the whole group, one that holds part of it, and the whole batch;
 * for a large dW (passes within NNCC_DW_PASS_BYTES) and a small one with
 * few terms an image (passes until NNCC_DW_PASS_TERMS). */
int dw_one_image_ib(int N, int Ci, int H, int W, int Co, int K, int pad, int S);
void dw_one_image(float *dw, float *db, const float *dy, const float *ymask, const float *x,
                  int N, int Ci, int H, int W, int Co, int K, int pad, int S);
typedef struct { int N, Ci, H, W, Co, K, pad, S, ib, batch; } PassCase;
static const PassCase pass_cases[] = {
    {16, 64, 6, 6, 256, 3, 1, 8, 8, 0},  /* a 590 KiB dW, small images: the whole group a pass */
    {8, 128, 8, 8, 128, 3, 1, 8, 4, 0},  /* half a group a pass (83 KiB an image) */
    {12, 64, 10, 10, 250, 3, 1, 3, 3, 0}, /* an odd group size, a ragged output-channel chunk */
    {16, 5, 12, 12, 17, 3, 1, 4, 1, 0},  /* a small dW, 144 terms an image: one a pass */
    {16, 5, 2, 2, 17, 3, 1, 4, 4, 0},    /* the same, 4 terms an image: the group, a ragged chunk */
    {16, 8, 6, 6, 20, 3, 1, 8, 4, 0},    /* 36 terms an image: the fewest images to 128, 4 of 8 */
    {16, 64, 2, 2, 72, 3, 1, 2, 2, 1},   /* 8 copies of dW over 1 MiB: the whole batch */
    {24, 60, 3, 5, 50, 3, 1, 3, 3, 1},   /* the same, 8 groups of 3, a ragged chunk */
};
enum { NPASS = sizeof pass_cases / sizeof pass_cases[0] };

START_TEST(test_dw_pass_bits) {
  PassCase c = pass_cases[_i];
  int Ho = c.H + 2 * c.pad - c.K + 1, Wo = c.W + 2 * c.pad - c.K + 1;
  size_t nx = (size_t)c.N * c.Ci * c.H * c.W, ny = (size_t)c.N * c.Co * Ho * Wo;
  size_t nw = (size_t)c.Co * c.Ci * c.K * c.K;
  nk_conv f = nk_conv_fwd_desc(c.N, c.Ci, c.H, c.W, c.Co, c.K, c.K, 1, 1, c.pad, c.pad);
  ck_assert_int_eq(nk_dw_plan(f, c.S).IB, c.ib);
  ck_assert_int_eq(!!nk_bwd_layout(c.N, c.Ci, c.H, c.W, c.Co, c.K, c.K, 1, 1, c.pad, c.pad, c.S).batch,
                   c.batch);
  ck_assert_int_eq(dw_one_image_ib(c.N, c.Ci, c.H, c.W, c.Co, c.K, c.pad, c.S), 1);
  rng_state = 1400 + _i;
  float *x = rand_buf(nx), *dy = rand_buf(ny), *ymask = rand_buf(ny);
  float *dw = garbage_buf(nw), *db = garbage_buf(c.Co), *dw1 = garbage_buf(nw), *db1 = garbage_buf(c.Co);
  static const int teams[4] = {8, 3, 2, 1}; /* the largest first (see test_groups_split) */
  for (int ti = 0; ti < 4; ti++)
    for (int gate = 0; gate < 2; gate++) {
      const float *m = gate ? ymask : NULL;
      set_threads(teams[ti]);
      void *s = aligned_alloc(64, nk_align64(nncc_conv2d_backward_scratch(
                                      c.N, c.Ci, c.H, c.W, c.Co, c.K, c.K, 1, 1, c.pad, c.pad,
                                      nncc_team_size(), c.S)));
      nncc_conv2d_backward(NULL, dw, db, dy, m, x, NULL, s, c.N, c.Ci, c.H, c.W, c.Co, c.K, c.K,
                           1, 1, c.pad, c.pad, gate ? NNCC_ACT_RELU : NNCC_ACT_NONE, 0.0f, c.S);
      free(s);
      dw_one_image(dw1, db1, dy, m, x, c.N, c.Ci, c.H, c.W, c.Co, c.K, c.pad, c.S);
      ck_assert_msg(same_bits(dw, dw1, nw) && same_bits(db, db1, c.Co), "case %d, %d threads, gate %d",
                    _i, teams[ti], gate);
    }
  free(x), free(dy), free(ymask), free(dw), free(db), free(dw1), free(db1);
}
END_TEST

static Suite *general_suite(void) {
  Suite *s = suite_create("kernels_general");
  TCase *tc = tcase_create("gconv");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_gconv_vs_reference, 0, NGCONV);
  tcase_add_loop_test(tc, test_gconv_gate_boundaries, 0, 3 * NGCONV);
  tcase_add_test(tc, test_gconv_act_values);
  tcase_add_loop_test(tc, test_gconv_order_bits, 0, NGCONV);
  tcase_add_loop_test(tc, test_gconv_threads, 0, NGCONV);
  tcase_add_loop_test(tc, test_gconv_skip, 0, NGCONV);
  tcase_add_loop_test(tc, test_gconv_matches_engine, 0, 5);
  tcase_add_loop_test(tc, test_gconv_literal_sizes, 0, NLITERAL);
  tcase_add_loop_test(tc, test_groups_split, 0, NGROUPCASE);
  tcase_add_loop_test(tc, test_dw_pass_bits, 0, NPASS);
  suite_add_tcase(s, tc);
  tc = tcase_create("pool");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_pool_out_macro);
  tcase_add_loop_test(tc, test_pool_vs_reference, 0, NPOOL);
  tcase_add_test(tc, test_pool_ceil_values);
  tcase_add_loop_test(tc, test_pool_legacy_bits, 0, NPOOL);
  tcase_add_loop_test(tc, test_pool_threads, 0, NPOOL);
  tcase_add_loop_test(tc, test_pool_gate, 0, 3 * NPOOL);
  tcase_add_loop_test(tc, test_batchnorm_act, 0, 3);
  tcase_add_loop_test(tc, test_batchnorm_prestats, 0, 3);
  tcase_add_loop_test(tc, test_conv_pool_epilogue, 0, NPOOL);
  tcase_add_loop_test(tc, test_adaptive_max_vs_reference, 0, NAPOOL);
  tcase_add_test(tc, test_adaptive_max_values);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *path = getenv("NNCC_KERNELS_DUMP");
  if (path) {
    write_dump(path);
    return 0;
  }
  SRunner *sr = srunner_create(general_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
