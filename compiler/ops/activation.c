/*
 * ops/activation.c -- elementwise activations and dropout.  All may work
 * in place (OPF_INPLACE): the output may take a dying input's memory, the
 * input's gradient the output gradient's.  relu, relu6 and leaky_relu
 * also have a fused form that conv2d and linear apply in their output loop.
 */
#include "../nncc.h"

/* KERNEL wrappers for an elementwise op: forward y = f(x[, args]), backward
 * dx = f'(dy, saved[, args]) where saved is the tensor node_saves() names
 * (y for SAVES_OUT, x for SAVES_IN).  `args` are constants before the count. */
static void define_elementwise(Emit *E, Node *n, const char *kernel, const char *args) {
  char *f = emit_fn(n);
  const char *saved = node_saves(n) & SAVES_OUT ? "y" : "x";
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *y, const float *x) {\n"
             "  nncc_%s_forward_team(y, x, %s%lld);\n}\n"
             "KERNEL void %s_backward(float *dx, const float *dy, const float *restrict %s) {\n"
             "  nncc_%s_backward_team(dx, dy, %s, %s%lld);\n}\n",
             f, kernel, args, ll(node_numel(n)), f, saved, kernel, saved, args, ll(node_numel(n)));
}

static void shape_elementwise(Graph *g, Node *n) { copy_type(n, node_in(g, n, 0)); }

/* one per element, both ways */
static int64_t flops_elementwise(const Graph *g, const Node *n) {
  (void)g;
  return node_numel(n);
}


/* nncc --infer: each activation as an expression in the float v, with
 * the trainer's NaN and signed-zero behaviour (nncc_kernels.h); fused into
 * the conv2d or linear before it where the plan can. */
static void infer_relu(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_activation(I, n, "!(v <= 0.0f) ? v : 0.0f");
}
static void infer_sigmoid(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_use_libm(I);
  infer_activation(I, n, "1.0f / (1.0f + expf(-v))");
}
static void infer_tanh(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_use_libm(I);
  infer_activation(I, n, "tanhf(v)");
}

#define ACTIVATION(op, kernel_name, code, onnx_type)                                               \
  static void define_##op(Emit *E, Node *n) { define_elementwise(E, n, kernel_name, ""); }        \
  static void onnx_##op(Onnx *X, const Graph *g, const Node *n) {                                  \
    (void)g;                                                                                        \
    onnx_unary(X, n, onnx_type);                                                                    \
  }                                                                                                 \
  const OpDesc op_##op = {                                                                          \
      .name = #op,                                                                                  \
      .abbrev = #op,                                                                                \
      .inputs = op_x_input,                                                                            \
      .nin = 1,                                                                                     \
      .flags = OPF_INPLACE,                                                                         \
      .saves = SAVES_OUT,                                                                           \
      .shape = shape_elementwise,                                                                   \
      .flops_fwd = flops_elementwise,                                                               \
      .flops_bwd = flops_elementwise,                                                               \
      .act_code = code,                                                                             \
      .define_kernels = define_##op,                                                                \
      .forward = emit_forward_unary,                                                                \
      .backward = emit_backward_unary,                                                              \
      .onnx = onnx_##op,                                                                            \
      .infer = infer_##op,                                                                          \
  };

/* relu(x): max(x, 0), NaN kept (nn.ReLU); backward: dy where y > 0 */
ACTIVATION(relu, "relu", "NNCC_ACT_RELU", "Relu")
/* sigmoid(x): 1 / (1 + exp(-x)); backward: dy * y * (1 - y) */
ACTIVATION(sigmoid, "sigmoid", NULL, "Sigmoid")
/* tanh(x); backward: dy * (1 - y * y) */
ACTIVATION(tanh, "tanh", NULL, "Tanh")

/* relu6(x): min(max(x, 0), 6) (nn.ReLU6, hardtanh(0, 6)); backward: dy where
 * 0 < y < 6, which is exactly where 0 < x < 6 */
static void define_relu6(Emit *E, Node *n) { define_elementwise(E, n, "relu6", ""); }
/* ONNX Clip(x, min, max) (opset 11 on: the bounds are inputs) */
static void onnx_clip(Onnx *X, const Node *n, double lo, double hi) {
  onnx_node(X, n, "Clip", (const char *[]){onnx_in(X, n, 0), onnx_scalar(X, n, "min", lo),
                                           onnx_scalar(X, n, "max", hi)}, 3);
}

static void onnx_relu6(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_clip(X, n, 0, 6);
}

static void infer_relu6(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_activation(I, n, "!(v <= 0.0f) ? (v > 6.0f ? 6.0f : v) : 0.0f");
}

const OpDesc op_relu6 = {
    .name = "relu6",
    .abbrev = "relu6",
    .inputs = op_x_input,
    .nin = 1,
    .flags = OPF_INPLACE,
    .saves = SAVES_OUT,
    .shape = shape_elementwise,
    .flops_fwd = flops_elementwise,
    .flops_bwd = flops_elementwise,
    .act_code = "NNCC_ACT_RELU6",
    .define_kernels = define_relu6,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_relu6,
    .infer = infer_relu6,
};

/* ---- hardtanh(x, min_val=-1.0, max_val=1.0) -----------------------------
 * min(max(x, min_val), max_val) (nn.Hardtanh); backward: dy where
 * min_val < x < max_val, which is exactly where min_val < y < max_val, so
 * it reads y and may work in place.  (docs/adding-an-op.md adds this op.)
 */
typedef struct HardtanhAttrs {
  double min_val, max_val;
} HardtanhAttrs;

static void shape_hardtanh(Graph *g, Node *n) {
  const HardtanhAttrs *a = n->attrs;
  if (!(a->min_val < a->max_val))
    shape_error(n, "hardtanh: min_val (%g) must be less than max_val (%g)", a->min_val, a->max_val);
  copy_type(n, node_in(g, n, 0));
}

static void define_hardtanh(Emit *E, Node *n) {
  const HardtanhAttrs *a = n->attrs;
  define_elementwise(E, n, "hardtanh",
                     format("%s, %s, ", emit_real(a->min_val, true), emit_real(a->max_val, true)));
}

static const AttrDesc hardtanh_attrs[] = {
    ATTR(HardtanhAttrs, min_val, AT_FLOAT, "-1.0", false),
    ATTR(HardtanhAttrs, max_val, AT_FLOAT, "1.0", false),
};

static void onnx_hardtanh(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_clip(X, n, ATTRS(n, HardtanhAttrs)->min_val, ATTRS(n, HardtanhAttrs)->max_val);
}

static void infer_hardtanh(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  char *lo = emit_real(ATTRS(n, HardtanhAttrs)->min_val, true), *hi = emit_real(ATTRS(n, HardtanhAttrs)->max_val, true);
  infer_activation(I, n, format("v < %s ? %s : v > %s ? %s : v", lo, lo, hi, hi));
}

const OpDesc op_hardtanh = {
    .name = "hardtanh",
    .abbrev = "hardtanh",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = hardtanh_attrs,
    .nattrs = sizeof hardtanh_attrs / sizeof *hardtanh_attrs,
    .attrs_size = sizeof(HardtanhAttrs),
    .flags = OPF_INPLACE,
    .saves = SAVES_OUT,
    .shape = shape_hardtanh,
    .flops_fwd = flops_elementwise,
    .flops_bwd = flops_elementwise,
    .define_kernels = define_hardtanh,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_hardtanh,
    .infer = infer_hardtanh,
};

/* ---- leaky_relu(x, negative_slope=0.01) ----------------------------------
 * x > 0 ? x : x * slope (nn.LeakyReLU); backward dy * (x > 0 ? 1 : slope).
 * With slope >= 0, y > 0 exactly where x > 0, so backward reads y (and the
 * op can work in place, or be fused); a negative slope flips y's sign, so
 * then backward reads x.
 */
typedef struct LeakyReluAttrs {
  double negative_slope;
} LeakyReluAttrs;

static double leaky_slope(const Node *n) { return ATTRS(n, LeakyReluAttrs)->negative_slope; }
static int leaky_saves(const Node *n) { return leaky_slope(n) >= 0 ? SAVES_OUT : SAVES_IN; }
static bool leaky_fusible(const Node *n) { return leaky_slope(n) >= 0; }

static void shape_leaky_relu(Graph *g, Node *n) {
  double slope = leaky_slope(n);
  if (!(slope > -1e30 && slope < 1e30))
    shape_error(n, "leaky_relu: negative_slope must be a finite number, got %g", slope);
  copy_type(n, node_in(g, n, 0));
}

static void define_leaky_relu(Emit *E, Node *n) {
  define_elementwise(E, n, "leaky_relu", format("%s, ", emit_real(leaky_slope(n), true)));
}

static const AttrDesc leaky_relu_attrs[] = {
    ATTR(LeakyReluAttrs, negative_slope, AT_FLOAT, "0.01", false),
};

static void onnx_leaky_relu(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_unary(X, n, "LeakyRelu");
  onnx_attr_float(X, "alpha", leaky_slope(n));
}

static void infer_leaky_relu(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_activation(I, n, format("v > 0.0f ? v : v * %s", emit_real(leaky_slope(n), true)));
}

const OpDesc op_leaky_relu = {
    .name = "leaky_relu",
    .abbrev = "leaky_relu",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = leaky_relu_attrs,
    .nattrs = 1,
    .attrs_size = sizeof(LeakyReluAttrs),
    .flags = OPF_INPLACE,
    .saves_fn = leaky_saves,
    .shape = shape_leaky_relu,
    .flops_fwd = flops_elementwise,
    .flops_bwd = flops_elementwise,
    .act_code = "NNCC_ACT_LEAKY",
    .act_alpha = leaky_slope,
    .fusible = leaky_fusible,
    .define_kernels = define_leaky_relu,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_leaky_relu,
    .infer = infer_leaky_relu,
};

/* ---- dropout(x, p=0.5) ----------------------------------------------------
 * nn.Dropout: zero with probability p, scale the rest by 1/(1-p); identity
 * in eval.  The mask is not stored: backward draws it again from the same
 * counter-based stream (seed, step, the node's name).
 */
typedef struct DropoutAttrs {
  double p;
} DropoutAttrs;

static void shape_dropout(Graph *g, Node *n) {
  double p = ATTRS(n, DropoutAttrs)->p;
  if (!(p >= 0 && p < 1))
    shape_error(n, "dropout: p must be in [0, 1), got %g", p);
  copy_type(n, node_in(g, n, 0));
}

static void define_dropout(Emit *E, Node *n) {
  double p = ATTRS(n, DropoutAttrs)->p;
  /* the mask's stream is named after the node, which no pass renames */
  uint64_t stream = 1469598103934665603ull; /* FNV-1a */
  for (const char *c = n->name; *c; c++)
    stream = (stream ^ (unsigned char)*c) * 1099511628211ull;
  char *args = format("%lld, seed, step, %lluull, %uu /* p = %g */, %s", ll(node_numel(n)),
                      (unsigned long long)stream, (uint32_t)(p * 16777216.0), p,
                      emit_real(1.0 / (1.0 - p), true));
  char *f = emit_fn(n);
  long long per = ll(node_numel(n) / n->dims[0]); /* elements per image */
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *y, const float *x, uint64_t seed, uint64_t step, int training,\n"
             "    int64_t sample0) {\n"
             "  nncc_dropout_forward_team(y, x, %s, training, (size_t)sample0 * %lld);\n}\n"
             "KERNEL void %s_backward(float *dx, const float *dy, uint64_t seed, uint64_t step,\n"
             "    int64_t sample0) {\n"
             "  nncc_dropout_backward_team(dx, dy, %s, (size_t)sample0 * %lld);\n}\n",
             f, args, per, f, args, per);
}

static void forward_dropout(Emit *E, Node *n) {
  buf_printf(emit_out(E), "    %s_forward(%s, %s, s->seed, s->step, training, s->sample0);\n", emit_fn(n),
             emit_act(E, n), emit_act(E, emit_in(E, n, 0)));
}

static void backward_dropout(Emit *E, Node *n, const char *const *dx) {
  if (emit_needed(dx[0]))
    buf_printf(emit_out(E), "    %s_backward(%s, %s, s->seed, s->step, s->sample0);\n", emit_fn(n), dx[0],
               emit_grad(E, n));
}

static const AttrDesc dropout_attrs[] = {
    ATTR(DropoutAttrs, p, AT_FLOAT, "0.5", false),
};

/* Dropout is the identity at inference: no ONNX node. */
static void onnx_dropout(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_alias(X, n);
}

/* nncc --infer: the identity at eval, so nothing. */
static void infer_dropout(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_alias(I, n);
}

const OpDesc op_dropout = {
    .name = "dropout",
    .abbrev = "dropout",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = dropout_attrs,
    .nattrs = 1,
    .attrs_size = sizeof(DropoutAttrs),
    .flags = OPF_INPLACE,
    .shape = shape_dropout,
    .flops_fwd = flops_elementwise,
    .flops_bwd = flops_elementwise,
    .define_kernels = define_dropout,
    .forward = forward_dropout,
    .backward = backward_dropout,
    .onnx = onnx_dropout,
    .infer = infer_dropout,
};
