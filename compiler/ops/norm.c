/*
 * ops/norm.c -- batch normalization: batchnorm2d over NCHW, batchnorm1d
 * over [N, F] (one kernel: H*W = 1).  Training uses the batch's statistics
 * and updates the running ones; eval uses the running ones.  Forward saves
 * each channel's mean and 1/std for backward (the aux buffer).
 */
#include "../nncc.h"

#include <math.h>

typedef struct BatchNormAttrs {
  double eps, momentum;
} BatchNormAttrs;

/* nn.BatchNorm2d / nn.BatchNorm1d (affine=True, track_running_stats=True) */
static void shape_batchnorm(Graph *g, Node *n) {
  const BatchNormAttrs *a = n->attrs;
  const char *what = op_name(n->op);
  Node *x = node_in(g, n, 0);
  if (n->op == OP_BATCHNORM1D) {
    if (x->rank != 2)
      shape_error(n, "batchnorm1d: input must be 2-D [N, features], got %s %%%s%s", type_str(x),
                  x->name, x->rank == 4 ? "; use batchnorm2d" : "");
  } else {
    need_rank4(g, n, 0, what);
  }
  if (!(a->eps > 0))
    shape_error(n, "%s: eps must be positive, got %g", what, a->eps);
  if (!(a->momentum >= 0 && a->momentum <= 1))
    shape_error(n, "%s: momentum must be in [0, 1], got %g", what, a->momentum);
  if (node_numel(x) / x->dims[1] < 2)
    shape_error(n, "%s: needs more than 1 value per channel to train, input is %s", what,
                type_str(x));
  copy_type(n, x);
  int64_t c[1] = {x->dims[1]};
  add_param(n, "weight", P_WEIGHT, 1, c, INIT_ONES, 0);
  add_param(n, "bias", P_WEIGHT, 1, c, INIT_ZEROS, 0);
  add_param(n, "running_mean", P_BUFFER, 1, c, INIT_ZEROS, 0);
  add_param(n, "running_var", P_BUFFER, 1, c, INIT_ONES, 0);
  add_param(n, "num_batches_tracked", P_COUNT, 0, c, INIT_ZEROS, 0);
}

/* mean, variance, normalize, scale, shift: 7 per element; backward 10 */
static int64_t flops_batchnorm_fwd(const Graph *g, const Node *n) {
  (void)g;
  return 7 * node_numel(n);
}
static int64_t flops_batchnorm_bwd(const Graph *g, const Node *n) {
  (void)g;
  return 10 * node_numel(n);
}

/* mean and 1/sqrt(var + eps) per channel, then two sums per channel in
 * double that the kernels work in (and send across ranks) */
static int64_t aux_batchnorm(const Node *n, const char **what) {
  *what = format("[2,%lld]: mean, 1/std; [2,%lld] double sums", ll(n->dims[1]), ll(n->dims[1]));
  return 2 * n->dims[1] * 4 + 2 * n->dims[1] * 8;
}

/* forward only: each plane's sum and centred sum of squares, in double
 * (nk_plane_stats), which the conv before it may fill */
static int64_t work_batchnorm(const Node *n, const char **what) {
  *what = format("[%lld,%lld,2] double: each plane's sum, centred sum of squares", ll(n->dims[0]),
                 ll(n->dims[1]));
  return n->dims[0] * n->dims[1] * 2 * 8;
}

static void define_batchnorm(Emit *E, Node *n) {
  const BatchNormAttrs *a = n->attrs;
  char *f = emit_fn(n);
  /* the sizes, then the group size and the whole batch over the ranks */
  char *sz = format("%lld, %lld, %lld", ll(n->dims[0]), ll(n->dims[1]),
                    ll(node_numel(n) / n->dims[0] / n->dims[1]));
  char *sync = format("%s, %lld, rank_sum, ctx", emit_group(E), ll(emit_graph(E)->batch));
  /* 1: the conv before it writes the planes' statistics (stats_for) */
  const Node *x = emit_in(E, n, 0);
  char *prestats = x->stats_for == n ? format("1 /* plane statistics: %s's epilogue */", x->name) : "0";
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *restrict y, const float *restrict x,\n"
             "    const float *restrict gamma, const float *restrict beta,\n"
             "    float *restrict running_mean, float *restrict running_var,\n"
             "    float *restrict num_batches_tracked, float *restrict stats, double *restrict planes,\n"
             "    int training, nncc_rank_sum_fn rank_sum, void *ctx) {\n"
             "  nncc_batchnorm2d_forward_team(y, x, gamma, beta, running_mean, running_var,\n"
             "                                num_batches_tracked, stats, planes, %s, %s, %s, training,\n"
             "                                %s, %s, %s);\n}\n",
             f, sz, emit_real(a->eps, false), emit_real(a->momentum, false), prestats,
             emit_act_args(n), sync);
  buf_printf(emit_out(E),
             "KERNEL void %s_backward(float *restrict dx, float *restrict dgamma, float *restrict dbeta,\n"
             "    const float *restrict dy,%s const float *restrict x,\n"
             "    const float *restrict gamma, float *restrict stats,\n"
             "    nncc_rank_sum_fn rank_sum, void *ctx) {\n"
             "  nncc_batchnorm2d_backward_team(dx, dgamma, dbeta, dy, %s, x, gamma, stats, %s,\n"
             "                                 %s, %s);\n}\n",
             f, emit_mask_param(n), emit_mask_arg(n), sz, emit_bwd_act(n), sync);
}

static void forward_batchnorm(Emit *E, Node *n) {
  buf_printf(emit_out(E),
             "    %s_forward(%s, %s, %s, %s, %s, %s, %s, %s, (double *)(void *)%s, training, s->rank_sum, s);\n",
             emit_fn(n), emit_act(E, n), emit_act(E, emit_in(E, n, 0)), emit_param(E, n, 0),
             emit_param(E, n, 1), emit_param(E, n, 2), emit_param(E, n, 3), emit_param(E, n, 4),
             emit_aux(E, n), emit_work(E, n));
}

static void backward_batchnorm(Emit *E, Node *n, const char *const *dx) {
  buf_printf(emit_out(E), "    %s_backward(%s, %s, %s, %s, %s%s, %s, %s, s->rank_sum, s);\n", emit_fn(n),
             dx[0], emit_param_grad(E, n, 0), emit_param_grad(E, n, 1), emit_grad(E, n), emit_mask_ref(E, n),
             emit_act(E, emit_in(E, n, 0)), emit_param(E, n, 0), emit_aux(E, n));
}

static const AttrDesc batchnorm_attrs[] = {
    ATTR(BatchNormAttrs, eps, AT_FLOAT, "1e-5", false),
    ATTR(BatchNormAttrs, momentum, AT_FLOAT, "0.1", false),
};

/* ONNX BatchNormalization in eval mode: the running statistics normalize;
 * ONNX's momentum weighs the running statistic, PyTorch's the batch's. */
static void onnx_batchnorm(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  const char *in[5] = {onnx_in(X, n, 0)};
  for (int k = 0; k < 4; k++) /* weight, bias, running_mean, running_var */
    in[k + 1] = onnx_param(X, n, k);
  onnx_node(X, n, "BatchNormalization", in, 5);
  onnx_attr_float(X, "epsilon", ATTRS(n, BatchNormAttrs)->eps);
  onnx_attr_float(X, "momentum", 1.0 - ATTRS(n, BatchNormAttrs)->momentum);
}

/* nncc --infer: eval mode's per-channel scale and shift, computed as the
 * trainer's kernel does (nncc_batchnorm2d_forward_team): folded into the
 * conv2d or linear before it where the plan can, else applied. */
static void infer_batchnorm(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  int64_t C = n->dims[1];
  const float *gamma = infer_param(I, n, 0), *beta = infer_param(I, n, 1);
  const float *mean = infer_param(I, n, 2), *var = infer_param(I, n, 3);
  float *scale = NULL, *shift = NULL;
  if (gamma) {
    scale = xalloc(sizeof(float) * (size_t)C);
    shift = xalloc(sizeof(float) * (size_t)C);
    for (int64_t c = 0; c < C; c++) {
      float invstd = (float)(1.0 / sqrt((double)var[c] + ATTRS(n, BatchNormAttrs)->eps));
      scale[c] = gamma[c] * invstd;
      float m = mean[c] * scale[c]; /* its own statement: never an FMA */
      shift[c] = beta[c] - m;
    }
  }
  infer_channel_affine(I, n, scale, shift);
}

#define BATCHNORM(op, more_flags)                                                                  \
  const OpDesc op_##op = {                                                                          \
      .name = #op,                                                                                  \
      .abbrev = "bn",                                                                               \
      .inputs = op_x_input,                                                                            \
      .nin = 1,                                                                                     \
      .attrs = batchnorm_attrs,                                                                     \
      .nattrs = 2,                                                                                  \
      .attrs_size = sizeof(BatchNormAttrs),                                                         \
      .flags = OPF_SYNCED | OPF_EPILOGUE | (more_flags),                                            \
      .saves = SAVES_IN,                                                                            \
      .shape = shape_batchnorm,                                                                     \
      .flops_fwd = flops_batchnorm_fwd,                                                             \
      .flops_bwd = flops_batchnorm_bwd,                                                             \
      .aux_bytes = aux_batchnorm,                                                                   \
      .work_bytes = work_batchnorm,                                                                 \
      .define_kernels = define_batchnorm,                                                           \
      .forward = forward_batchnorm,                                                                 \
      .backward = backward_batchnorm,                                                               \
      .onnx = onnx_batchnorm,                                                                       \
      .infer = infer_batchnorm,                                                                     \
  };
/* batchnorm2d takes its planes' statistics from a conv before it
 * (OPF_TAKES_STATS); batchnorm1d's planes are single values */
BATCHNORM(batchnorm2d, OPF_TAKES_STATS)
BATCHNORM(batchnorm1d, 0)
