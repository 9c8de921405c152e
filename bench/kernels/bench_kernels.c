/*
 * bench_kernels.c -- times every mnist_cnn and vgg16 layer of
 * runtime/nncc_kernels.h: forward, backward-data and backward-weight.
 * Sizes are literals inside each parallel region, as in generated code.
 * Prints one tab-separated line per op: net layer op gflop seconds.
 * Run through run.sh, which adds PyTorch's numbers for the same ops.
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nncc_kernels.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static float *buf(size_t n) {
  float *p = aligned_alloc(64, nk_align64(n * sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  return p;
}
static void *scratch(size_t bytes) { return aligned_alloc(64, nk_align64(bytes ? bytes : 64)); }

/* best time of a few runs, after a warm-up */
#define TIME(var, stmt)                                                 \
  do {                                                                  \
    stmt;                                                               \
    double best_ = 1e30, start_ = now();                                \
    for (int r_ = 0; r_ < 20 && (r_ < 3 || now() - start_ < 0.5); r_++) { \
      double t0_ = now();                                               \
      stmt;                                                             \
      double t_ = now() - t0_;                                          \
      if (t_ < best_) best_ = t_;                                       \
    }                                                                   \
    var = best_;                                                        \
  } while (0)

static void report(const char *net, const char *layer, const char *op, double flop, double s) {
  printf("%s\t%s\t%s\t%.6f\t%.6e\n", net, layer, op, flop * 1e-9, s);
  fflush(stdout);
}

/* The models' 8 reduction groups, as a literal inside each parallel region
 * (a variable set outside one is a captured value inside, not a constant:
 * the kernels' compile-time guards on S then stay in the code, and gcc
 * compiled mnist_cnn's conv3 weight gradient 20% slower than the trainer's) */
#define SG(N) ((N) / 8)

#define CONV(net, name, N, Ci, H, W, Co, K, P)                                                  \
  static void name(void) {                                                                      \
    int Ho = H + 2 * P - K + 1, Wo = W + 2 * P - K + 1;                                         \
    float *x = buf((size_t)N * Ci * H * W), *w = buf((size_t)Co * Ci * K * K), *b = buf(Co);    \
    float *y = buf((size_t)N * Co * Ho * Wo), *dy = buf((size_t)N * Co * Ho * Wo);              \
    float *dx = buf((size_t)N * Ci * H * W), *dw = buf((size_t)Co * Ci * K * K), *db = buf(Co); \
    int team = nncc_team_size();                                                              \
    void *sf = scratch(nncc_conv2d_forward_scratch(N, Ci, H, W, Co, K, K, 1, 1, P, P, team));   \
    void *sb =                                                                                  \
        scratch(nncc_conv2d_backward_scratch(N, Ci, H, W, Co, K, K, 1, 1, P, P, team, SG(N)));  \
    double flop = 2.0 * N * Co * Ho * Wo * Ci * K * K, t;                                       \
    TIME(t, _Pragma("omp parallel") nncc_conv2d_forward_team(y, x, w, b, sf, N, Ci, H, W, Co,   \
                                                             K, K, 1, 1, P, P, 1, 0.0f));       \
    report(net, #name, "fwd", flop, t);                                                         \
    TIME(t, _Pragma("omp parallel") nncc_conv2d_backward_data_team(dx, dy, y, w, sb, N, Ci, H,  \
                                                                   W, Co, K, K, 1, 1, P, P, 1,  \
                                                                   0.0f, SG(N)));                  \
    report(net, #name, "bwd_data", flop, t);                                                    \
    TIME(t, _Pragma("omp parallel") nncc_conv2d_backward_weight_team(                           \
                dw, db, dy, y, x, sb, N, Ci, H, W, Co, K, K, 1, 1, P, P, 1, 0.0f, SG(N)));      \
    report(net, #name, "bwd_weight", flop, t);                                                  \
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);                 \
    free(sf), free(sb);                                                                         \
  }

#define LINEAR(net, name, N, I, O)                                                            \
  static void name(void) {                                                                    \
    float *x = buf((size_t)N * I), *w = buf((size_t)O * I), *b = buf(O);                      \
    float *y = buf((size_t)N * O), *dy = buf((size_t)N * O), *dx = buf((size_t)N * I);       \
    float *dw = buf((size_t)O * I), *db = buf(O);                                             \
    void *sf = scratch(nncc_linear_forward_scratch(N, I, O));                                 \
    void *sb = scratch(nncc_linear_backward_scratch(N, I, O));                                \
    double flop = 2.0 * N * I * O, t;                                                         \
    TIME(t, _Pragma("omp parallel") nncc_linear_forward_team(y, x, w, b, sf, N, I, O, 1, 0.0f)); \
    report(net, #name, "fwd", flop, t);                                                       \
    TIME(t, _Pragma("omp parallel") nncc_linear_backward_team(dx, NULL, NULL, dy, y, x, w,   \
                                                               sb, N, I, O, 1, 0.0f, SG(N)));  \
    report(net, #name, "bwd_data", flop, t);                                                  \
    double tw;                                                                                \
    TIME(tw, _Pragma("omp parallel") nncc_linear_backward_team(NULL, dw, db, dy, y, x, w, sb, \
                                                                N, I, O, 1, 0.0f, SG(N)));    \
    report(net, #name, "bwd_weight", flop, tw);                                               \
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);               \
    free(sf), free(sb);                                                                       \
  }

CONV("mnist", conv1, 256, 1, 28, 28, 16, 5, 0)
CONV("mnist", conv2, 256, 16, 24, 24, 32, 5, 0)
CONV("mnist", conv3, 256, 32, 10, 10, 64, 5, 0)
LINEAR("mnist", fc1, 256, 576, 100)
LINEAR("mnist", fc2, 256, 100, 10)
CONV("vgg16", c1_1, 64, 1, 32, 32, 64, 3, 1)
CONV("vgg16", c1_2, 64, 64, 32, 32, 64, 3, 1)
CONV("vgg16", c2_1, 64, 64, 16, 16, 128, 3, 1)
CONV("vgg16", c2_2, 64, 128, 16, 16, 128, 3, 1)
CONV("vgg16", c3_1, 64, 128, 8, 8, 256, 3, 1)
CONV("vgg16", c3_2, 64, 256, 8, 8, 256, 3, 1)
CONV("vgg16", c4_1, 64, 256, 4, 4, 512, 3, 1)
CONV("vgg16", c4_2, 64, 512, 4, 4, 512, 3, 1)
CONV("vgg16", c5_1, 64, 512, 2, 2, 512, 3, 1)
LINEAR("vgg16", fc6, 64, 512, 4096)
LINEAR("vgg16", fc7, 64, 4096, 4096)
LINEAR("vgg16", fc8, 64, 4096, 10)

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : "";
#define L(net, fn) {net, #fn, fn}
  struct { const char *net, *layer; void (*fn)(void); } all[] = {
      L("mnist", conv1), L("mnist", conv2), L("mnist", conv3), L("mnist", fc1),  L("mnist", fc2),
      L("vgg16", c1_1),  L("vgg16", c1_2),  L("vgg16", c2_1),  L("vgg16", c2_2), L("vgg16", c3_1),
      L("vgg16", c3_2),  L("vgg16", c4_1),  L("vgg16", c4_2),  L("vgg16", c5_1), L("vgg16", fc6),
      L("vgg16", fc7),   L("vgg16", fc8)};
  /* argument: a net or a layer name; none: everything */
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (!*only || !strcmp(only, all[i].net) || !strcmp(only, all[i].layer)) all[i].fn();
  return 0;
}
