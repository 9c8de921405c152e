/*
 * shape.c -- the shape pass: type every node, shape every parameter, and
 * reject every ill-formed model before any code is emitted.
 *
 * Requires: an elaborated graph in topological order, with the input and
 * label typed by their declarations.
 * Guarantees: every node has a dtype and a full static shape, parameters
 * are shaped in PyTorch layouts with PyTorch 1.13's default init bounds,
 * and the model is within what the back end can build (nncc.h, "limits"):
 * sizes, tensor and parameter elements, parameter bytes, FLOPs; or a user
 * error was reported.
 */
#include "nncc.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static noreturn void shape_error(Node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void shape_error(Node *n, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(n->loc, "%s", msg);
  diag_callsites(n->site);
  diag_fail();
}

static Node *input(Graph *g, Node *n, int i) { return g->nodes[n->in[i]]; }

/* ---- limits ------------------------------------------------------------- */

/* The product of dims[0..rank), or -1 past int64. */
static int64_t product(const int64_t *dims, int rank) {
  int64_t e = 1;
  for (int i = 0; i < rank; i++)
    if (__builtin_mul_overflow(e, dims[i], &e))
      return -1;
  return e;
}

/* The elements of a tensor of that shape, at most NNCC_MAX_ELEMENTS, or an
 * error: "<what> has 2,147,483,648 elements, more than the limit ..." */
static int64_t elements(Node *n, const char *what, const int64_t *dims, int rank) {
  int64_t e = product(dims, rank);
  if (e >= 0 && e <= NNCC_MAX_ELEMENTS)
    return e;
  double approx = 1;
  for (int i = 0; i < rank; i++)
    approx *= (double)dims[i];
  shape_error(n, "%s has %s elements, more than the limit of 2^30 (%s)", what,
              e >= 0 ? fmt_count(e) : format("about 2^%.0f", log2(approx)),
              fmt_count(NNCC_MAX_ELEMENTS));
}

/* Size attributes fit the kernels' int arithmetic (negative ones are the
 * shape rules' to report). */
static void check_attrs(Node *n) {
  static const struct {
    const char *name;
    size_t off;
  } attrs[] = {{"out", offsetof(Node, out)},     {"kernel", offsetof(Node, kh)},
               {"kernel", offsetof(Node, kw)},   {"stride", offsetof(Node, sh)},
               {"stride", offsetof(Node, sw)},   {"padding", offsetof(Node, ph)},
               {"padding", offsetof(Node, pw)},  {"output", offsetof(Node, oh)},
               {"output", offsetof(Node, ow)}};
  for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
    int64_t v = *(const int64_t *)((const char *)n + attrs[i].off);
    if (v > NNCC_MAX_SIZE)
      shape_error(n, "%s: '%s' is %lld, more than the limit of 2^30 (%s)", op_name(n->op),
                  attrs[i].name, (long long)v, fmt_count(NNCC_MAX_SIZE));
  }
}

static void set_type(Node *n, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  n->dtype = DT_F32;
  n->rank = rank;
  int64_t d[4] = {d0, d1, d2, d3};
  for (int i = 0; i < 4; i++)
    n->dims[i] = i < rank ? d[i] : 0;
}

static void copy_type(Node *n, const Node *from) {
  n->dtype = from->dtype;
  n->rank = from->rank;
  memcpy(n->dims, from->dims, sizeof n->dims);
}

static void add_param(Node *n, const char *suffix, ParamKind kind, int rank, const int64_t *dims,
                      int init, double bound) {
  Param *p = &n->params[n->nparams++];
  p->name = format("%s.%s", n->name, suffix);
  p->kind = kind;
  p->rank = rank;
  p->numel = elements(n, format("%s: parameter %s %s", op_name(n->op), p->name, dims_str(dims, rank)),
                      dims, rank);
  for (int i = 0; i < rank; i++)
    p->dims[i] = dims[i];
  p->init = init;
  p->bound = bound;
}

/* "28" for square sizes, "28x20" otherwise */
static char *hw_str(const Node *n) {
  if (n->dims[2] == n->dims[3])
    return format("%lld", (long long)n->dims[2]);
  return format("%lldx%lld", (long long)n->dims[2], (long long)n->dims[3]);
}

/*
 * After a spatial error, say how the size got there: follow the first
 * input back to the model input and list every node that changed H x W.
 */
static void note_spatial_chain(Graph *g, Node *x) {
  Node *chain[256];
  int n = 0;
  for (Node *c = x; c->rank == 4 && n < 256;) {
    chain[n++] = c;
    if (c->nin == 0)
      break;
    c = input(g, c, 0);
  }
  Buf sizes = {0}, via = {0};
  Node *prev = NULL;
  for (int i = n - 1; i >= 0; i--) {
    Node *c = chain[i];
    if (prev && c->dims[2] == prev->dims[2] && c->dims[3] == prev->dims[3])
      continue;
    buf_printf(&sizes, "%s%s", prev ? " → " : "", hw_str(c));
    if (prev)
      buf_printf(&via, "%s%s", via.len ? ", " : "", c->name);
    prev = c;
  }
  if (via.len)
    diag_note(NULL, "spatial size went %s through %s", sizes.data, via.data);
  else
    diag_note(NULL, "the input '%s' is %s", chain[n - 1]->name, sizes.data);
  buf_free(&sizes);
  buf_free(&via);
}

static void need_rank4(Graph *g, Node *n, const char *what) {
  Node *x = input(g, n, 0);
  if (x->rank != 4)
    shape_error(n, "%s: input must be 4-D [N, C, H, W], got %s %%%s", what, type_str(x), x->name);
}

static void check_window(Graph *g, Node *n, const char *what) {
  if (n->kh < 1 || n->kw < 1)
    shape_error(n, "%s: kernel must be at least 1, got %lldx%lld", what, (long long)n->kh,
                (long long)n->kw);
  if (n->sh < 1 || n->sw < 1)
    shape_error(n, "%s: stride must be at least 1, got %lldx%lld", what, (long long)n->sh,
                (long long)n->sw);
  if (n->ph < 0 || n->pw < 0)
    shape_error(n, "%s: padding must not be negative, got %lldx%lld", what, (long long)n->ph,
                (long long)n->pw);
  Node *x = input(g, n, 0);
  int64_t H = x->dims[2] + 2 * n->ph, W = x->dims[3] + 2 * n->pw;
  if (H < n->kh || W < n->kw) {
    diag_error(n->loc, "%s: kernel %lldx%lld does not fit input %lldx%lldx%lld%s (output would be %lldx%lld)",
               what, (long long)n->kh, (long long)n->kw, (long long)x->dims[1], (long long)x->dims[2],
               (long long)x->dims[3],
               n->ph || n->pw ? format(" padded by %lldx%lld", (long long)n->ph, (long long)n->pw) : "",
               (long long)(H < n->kh ? 0 : (H - n->kh) / n->sh + 1),
               (long long)(W < n->kw ? 0 : (W - n->kw) / n->sw + 1));
    note_spatial_chain(g, x);
    diag_callsites(n->site);
    diag_fail();
  }
  /* the kernels index the zero-padded input in int */
  int64_t padded[4] = {x->dims[0], x->dims[1], H, W};
  elements(n, format("%s: the padded input %s", what, dims_str(padded, 4)), padded, 4);
  set_type(n, 4, x->dims[0], x->dims[1], (H - n->kh) / n->sh + 1, (W - n->kw) / n->sw + 1);
}

static void shape_conv2d(Graph *g, Node *n) {
  need_rank4(g, n, "conv2d");
  Node *x = input(g, n, 0);
  if (n->out < 1)
    shape_error(n, "conv2d: out channels must be at least 1, got %lld", (long long)n->out);
  check_window(g, n, "conv2d");
  n->dims[1] = n->out;
  /* the input gradient is a convolution of the output gradient spread over
   * (H + kh - 1) x (W + kw - 1) */
  int64_t spread[4] = {x->dims[0], n->out, x->dims[2] + n->kh - 1, x->dims[3] + n->kw - 1};
  elements(n, format("conv2d: the input gradient's work %s", dims_str(spread, 4)), spread, 4);
  /* PyTorch 1.13: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in); bias the same */
  int64_t w[4] = {n->out, x->dims[1], n->kh, n->kw};
  add_param(n, "weight", P_WEIGHT, 4, w, INIT_UNIFORM, 0);
  int64_t fan_in = x->dims[1] * n->kh * n->kw; /* at most the weight's elements */
  double bound = n->params[0].bound = 1.0 / sqrt((double)fan_in);
  if (n->bias)
    add_param(n, "bias", P_WEIGHT, 1, w, INIT_UNIFORM, bound);
}

static void shape_pool(Graph *g, Node *n) {
  const char *what = op_name(n->op);
  need_rank4(g, n, what);
  /* PyTorch: "pad should be at most half of effective kernel size" */
  if (2 * n->ph > n->kh || 2 * n->pw > n->kw)
    shape_error(n, "%s: padding %lldx%lld is more than half the kernel %lldx%lld", what,
                (long long)n->ph, (long long)n->pw, (long long)n->kh, (long long)n->kw);
  check_window(g, n, what);
}

static void shape_adaptive_avgpool2d(Graph *g, Node *n) {
  need_rank4(g, n, "adaptive_avgpool2d");
  Node *x = input(g, n, 0);
  if (n->oh < 1 || n->ow < 1)
    shape_error(n, "adaptive_avgpool2d: output size must be at least 1, got %lldx%lld",
                (long long)n->oh, (long long)n->ow);
  set_type(n, 4, x->dims[0], x->dims[1], n->oh, n->ow);
}

static void shape_linear(Graph *g, Node *n) {
  Node *x = input(g, n, 0);
  if (x->rank != 2)
    shape_error(n, "linear: input must be 2-D [N, features], got %s %%%s%s", type_str(x), x->name,
                x->rank > 2 ? "; flatten() it first" : "");
  if (n->out < 1)
    shape_error(n, "linear: out features must be at least 1, got %lld", (long long)n->out);
  set_type(n, 2, x->dims[0], n->out, 0, 0);
  double bound = 1.0 / sqrt((double)x->dims[1]);
  int64_t w[2] = {n->out, x->dims[1]};
  add_param(n, "weight", P_WEIGHT, 2, w, INIT_UNIFORM, bound);
  if (n->bias)
    add_param(n, "bias", P_WEIGHT, 1, w, INIT_UNIFORM, bound);
}

static void shape_flatten(Graph *g, Node *n) {
  Node *x = input(g, n, 0);
  if (x->rank < 2)
    shape_error(n, "flatten: input must have a batch and at least one more dimension, got %s",
                type_str(x));
  int64_t f = 1;
  for (int i = 1; i < x->rank; i++)
    f *= x->dims[i];
  set_type(n, 2, x->dims[0], f, 0, 0);
}

static void shape_batchnorm2d(Graph *g, Node *n) {
  need_rank4(g, n, "batchnorm2d");
  Node *x = input(g, n, 0);
  if (!(n->eps > 0))
    shape_error(n, "batchnorm2d: eps must be positive, got %g", n->eps);
  if (!(n->momentum >= 0 && n->momentum <= 1))
    shape_error(n, "batchnorm2d: momentum must be in [0, 1], got %g", n->momentum);
  if (x->dims[0] * x->dims[2] * x->dims[3] < 2)
    shape_error(n, "batchnorm2d: needs more than 1 value per channel to train, input is %s",
                type_str(x));
  copy_type(n, x);
  int64_t c[1] = {x->dims[1]};
  add_param(n, "weight", P_WEIGHT, 1, c, INIT_ONES, 0);
  add_param(n, "bias", P_WEIGHT, 1, c, INIT_ZEROS, 0);
  add_param(n, "running_mean", P_BUFFER, 1, c, INIT_ZEROS, 0);
  add_param(n, "running_var", P_BUFFER, 1, c, INIT_ONES, 0);
  add_param(n, "num_batches_tracked", P_COUNT, 0, c, INIT_ZEROS, 0);
}

static void shape_elementwise(Graph *g, Node *n) { copy_type(n, input(g, n, 0)); }

static void shape_dropout(Graph *g, Node *n) {
  if (!(n->p >= 0 && n->p < 1))
    shape_error(n, "dropout: p must be in [0, 1), got %g", n->p);
  copy_type(n, input(g, n, 0));
}

static void shape_add(Graph *g, Node *n) {
  Node *a = input(g, n, 0), *b = input(g, n, 1);
  if (a->rank != b->rank || memcmp(a->dims, b->dims, sizeof a->dims) != 0)
    shape_error(n, "add: shapes differ: %%%s is %s but %%%s is %s", a->name, type_str(a), b->name,
                type_str(b));
  copy_type(n, a);
}

static void shape_cross_entropy(Graph *g, Node *n) {
  Node *logits = input(g, n, 0), *y = input(g, n, 1);
  if (y->op != OP_LABEL)
    shape_error(n, "cross_entropy: 'labels' must be the model's label, got %s %%%s", type_str(y),
                y->name);
  if (logits->rank != 2)
    shape_error(n, "cross_entropy: logits must be 2-D [N, classes], got %s %%%s", type_str(logits),
                logits->name);
  if (logits->dims[0] != y->dims[0])
    shape_error(n, "cross_entropy: logits have batch %lld but label '%s' has batch %lld",
                (long long)logits->dims[0], y->name, (long long)y->dims[0]);
  if (logits->dims[1] != y->classes)
    shape_error(n, "cross_entropy: logits have %lld classes (%s) but label '%s' has %lld",
                (long long)logits->dims[1], type_str(logits), y->name, (long long)y->classes);
  set_type(n, 0, 0, 0, 0, 0);
}

/* The declared input must match its data source, MNIST's 1x28x28 images. */
static void shape_input(Graph *g, Node *n) {
  if (n->rank != 4)
    shape_error(n, "input '%s' must be 4-D [N, C, H, W], got %d dimensions", n->name, n->rank);
  int64_t side = 28 + 2 * g->pad;
  if (n->dims[1] != 1 || n->dims[2] != side || n->dims[3] != side) {
    diag_error(g->source_loc, "input '%s' is %s, but mnist%s gives 1x%lldx%lld images", n->name,
               type_str(n), g->pad ? format("(pad=%lld)", (long long)g->pad) : "",
               (long long)side, (long long)side);
    if (n->dims[1] == 1 && n->dims[2] == n->dims[3] && n->dims[2] > 28 && (n->dims[2] - 28) % 2 == 0)
      diag_note(NULL, "to place 28x28 images in %lldx%lld, use mnist(pad=%lld)",
                (long long)n->dims[2], (long long)n->dims[3], (long long)(n->dims[2] - 28) / 2);
    diag_fail();
  }
}

static void shape_label(Graph *g, Node *n) {
  Node *x = g->nodes[g->input];
  if (n->dims[0] != x->dims[0])
    shape_error(n, "label '%s' has batch %lld but input '%s' has batch %lld", n->name,
                (long long)n->dims[0], x->name, (long long)x->dims[0]);
}

typedef void ShapeRule(Graph *g, Node *n);
static ShapeRule *const shape_rule[OP_COUNT] = {
    [OP_INPUT] = shape_input,
    [OP_LABEL] = shape_label,
    [OP_CONV2D] = shape_conv2d,
    [OP_RELU] = shape_elementwise,
    [OP_MAXPOOL2D] = shape_pool,
    [OP_AVGPOOL2D] = shape_pool,
    [OP_ADAPTIVE_AVGPOOL2D] = shape_adaptive_avgpool2d,
    [OP_LINEAR] = shape_linear,
    [OP_FLATTEN] = shape_flatten,
    [OP_BATCHNORM2D] = shape_batchnorm2d,
    [OP_DROPOUT] = shape_dropout,
    [OP_ADD] = shape_add,
    [OP_CROSS_ENTROPY] = shape_cross_entropy,
};

void shape_pass(Graph *g) {
  int64_t floats = 0, flops = 0; /* of all parameters; of a training step */
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (!shape_rule[n->op])
      ICE("op %s has no shape rule", op_name(n->op));
    n->nparams = 0;
    check_attrs(n);
    /* only cross_entropy may read the label; nothing may read the loss */
    for (int j = 0; j < n->nin; j++) {
      Node *x = input(g, n, j);
      if (x->op == OP_LABEL && !(n->op == OP_CROSS_ENTROPY && j == 1))
        shape_error(n, "%s: '%s' is the label; only cross_entropy can take it", op_name(n->op),
                    x->name);
      if (x->op == OP_CROSS_ENTROPY)
        shape_error(n, "%s: the loss is a scalar; it cannot feed another op", op_name(n->op));
    }
    shape_rule[n->op](g, n);
    elements(n, n->op == OP_INPUT || n->op == OP_LABEL
                    ? format("%s '%s' %s", op_name(n->op), n->name, type_str(n))
                    : format("%s: the output %s", op_name(n->op), type_str(n)),
             n->dims, n->rank);
    /* each term is below 2^63 by the limit on elements; their sums are checked */
    for (int k = 0; k < n->nparams; k++)
      floats += n->params[k].numel;
    if (floats > NNCC_MAX_BYTES / 4)
      shape_error(n, "%s: the model's parameters reach %s bytes here, more than the limit of "
                  "2^40 (%s)", op_name(n->op), fmt_count(4 * floats), fmt_count(NNCC_MAX_BYTES));
    if (__builtin_add_overflow(flops, node_flops_fwd(g, n) + node_flops_bwd(g, n), &flops) ||
        flops > NNCC_MAX_FLOPS)
      shape_error(n, "%s: a training step reaches %s FLOPs here, more than the limit of 2^62 (%s)",
                  op_name(n->op), flops > NNCC_MAX_FLOPS ? fmt_count(flops) : "over 2^63",
                  fmt_count(NNCC_MAX_FLOPS));
  }
  ir_count_users(g);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->nusers == 0 && n->op != OP_CROSS_ENTROPY)
      shape_error(n, "the result of this %s is never used", op_name(n->op));
  }
}
