/*
 * ops/pool.c -- pooling: maxpool2d, avgpool2d and their adaptive forms.
 * No parameters; the window rules are PyTorch 1.13's (nncc_kernels.h).
 */
#include "../nncc.h"

#include <string.h>

/* ---- maxpool2d(x, kernel, stride=kernel, padding=0, ceil_mode=false)
 *      avgpool2d(x, kernel, stride=kernel, padding=0, ceil_mode=false, count_include_pad=true)
 * max: padding counts as -inf, the first maximum wins; avg: the divisor
 * counts the padding inside the padded input, or with count_include_pad=false
 * only the input's own elements.  ceil_mode rounds the output size up,
 * dropping a last window that would start in the padding.
 */
typedef struct PoolAttrs {
  int64_t kernel[2], stride[2], padding[2];
  bool ceil_mode, count_include_pad;
} PoolAttrs;

static void shape_pool(Graph *g, Node *n) {
  const PoolAttrs *a = n->attrs;
  const char *what = op_name(n->op);
  need_rank4(g, n, 0, what);
  /* PyTorch: "pad should be at most half of effective kernel size" */
  if (2 * a->padding[0] > a->kernel[0] || 2 * a->padding[1] > a->kernel[1])
    shape_error(n, "%s: padding %lldx%lld is more than half the kernel %lldx%lld", what,
                (long long)a->padding[0], (long long)a->padding[1], (long long)a->kernel[0],
                (long long)a->kernel[1]);
  Window w = {a->kernel[0], a->kernel[1], a->stride[0], a->stride[1], a->padding[0], a->padding[0],
              a->padding[1], a->padding[1], 1, 1, a->ceil_mode};
  int64_t ho, wo;
  shape_window(g, n, what, w, &ho, &wo);
  Node *x = node_in(g, n, 0);
  set_type(n, 4, x->dims[0], x->dims[1], ho, wo);
}

/* one per window element, both ways */
static int64_t flops_pool(const Graph *g, const Node *n) {
  (void)g;
  const PoolAttrs *a = n->attrs;
  return node_numel(n) * a->kernel[0] * a->kernel[1];
}

/* N, C, H, W, kernel, stride, padding, Ho, Wo; the output size is the plan's
 * and the kernels' macro must agree with it */
static char *pool_sizes(Emit *E, Node *n) {
  const PoolAttrs *a = n->attrs;
  const Node *x = emit_in(E, n, 0);
  emit_static_assert(E, n, format("NNCC_POOL_OUT(%lld, %lld, %lld, %lld, %d) == %lld", ll(x->dims[2]),
                                   ll(a->kernel[0]), ll(a->stride[0]), ll(a->padding[0]), a->ceil_mode,
                                   ll(n->dims[2])),
                     format("NNCC_POOL_OUT(%lld, %lld, %lld, %lld, %d) == %lld", ll(x->dims[3]),
                            ll(a->kernel[1]), ll(a->stride[1]), ll(a->padding[1]), a->ceil_mode,
                            ll(n->dims[3])));
  return format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld", ll(x->dims[0]),
                ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]), ll(a->kernel[0]), ll(a->kernel[1]),
                ll(a->stride[0]), ll(a->stride[1]), ll(a->padding[0]), ll(a->padding[1]),
                ll(n->dims[2]), ll(n->dims[3]));
}

/* The window and output size, for the forward of the input whose epilogue
 * runs the pool (fuse.c; nncc_conv2d_forward_pool_team); the pool's own
 * kernels assert the sizes (pool_sizes). */
static char *epilogue_args_pool(Emit *E, Node *n) {
  (void)E;
  const PoolAttrs *a = n->attrs;
  return format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld", ll(a->kernel[0]), ll(a->kernel[1]),
                ll(a->stride[0]), ll(a->stride[1]), ll(a->padding[0]), ll(a->padding[1]),
                ll(n->dims[2]), ll(n->dims[3]));
}

/* Backward also applies the input's activation gate when it takes it
 * (fuse.c): x is that activation's output.  Forward is the input's
 * epilogue when the input runs it (pool_for). */
static void define_maxpool2d(Emit *E, Node *n) {
  char *f = emit_fn(n), *sz = pool_sizes(E, n);
  const Node *x = emit_in(E, n, 0);
  bool gates = x->gated_by == n;
  Buf *o = emit_out(E);
  if (x->pool_for == n)
    buf_printf(o, "/* forward: in %s's epilogue (%s_forward) */\n", x->name, emit_fn(x));
  else
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
               "  nncc_maxpool2d_forward_team(y, x, %s);\n}\n",
               f, sz);
  buf_printf(o,
             "KERNEL void %s_backward(float *restrict dx, const float *restrict dy, const float *restrict x) {\n"
             "  nncc_maxpool2d_backward_team(dx, dy, x, %s, %s);%s\n}\n",
             f, sz, gates ? emit_act_args(x) : "NNCC_ACT_NONE, 0.0f",
             gates ? format(" /* %s's gate */", x->epilogue->name) : "");
}

static void define_avgpool2d(Emit *E, Node *n) {
  char *f = emit_fn(n), *sz = pool_sizes(E, n);
  int cip = ATTRS(n, PoolAttrs)->count_include_pad;
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
             "  nncc_avgpool2d_forward_team(y, x, %s, %d);\n}\n"
             "KERNEL void %s_backward(float *restrict dx, const float *restrict dy) {\n"
             "  nncc_avgpool2d_backward_team(dx, dy, %s, %d);\n}\n",
             f, sz, cip, f, sz, cip);
}


static const AttrDesc maxpool2d_attrs[] = {
    ATTR(PoolAttrs, kernel, AT_PAIR, NULL, false),
    ATTR(PoolAttrs, stride, AT_PAIR, "kernel", false),
    ATTR(PoolAttrs, padding, AT_PAIR, "0", false),
    ATTR(PoolAttrs, ceil_mode, AT_BOOL, "false", true),
};

/* ONNX MaxPool / AveragePool: the window, pads on both sides alike */
static void onnx_pool(Onnx *X, const Node *n, const char *op_type) {
  const PoolAttrs *a = n->attrs;
  onnx_unary(X, n, op_type);
  onnx_attr_ints(X, "kernel_shape", a->kernel, 2);
  onnx_attr_ints(X, "strides", a->stride, 2);
  onnx_attr_ints(X, "pads", (int64_t[]){a->padding[0], a->padding[1], a->padding[0], a->padding[1]}, 4);
  onnx_attr_int(X, "ceil_mode", a->ceil_mode);
}

static void onnx_maxpool2d(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_pool(X, n, "MaxPool");
}

/* nncc --infer: the window of output (oh, ow) of channel c, its elements
 * inside the input only, as the trainer's kernels walk them. */
static void infer_window_loops(Buf *o, const Node *x, const PoolAttrs *a) {
  buf_printf(o,
             "        for (int i = 0; i < %lld; i++)\n"
             "          for (int j = 0; j < %lld; j++) {\n"
             "            const int ih = %s, iw = %s;\n"
             "            if (ih < 0 || ih >= %lld || iw < 0 || iw >= %lld)\n"
             "              continue;\n"
             "            const float v = x[(c * %lld + ih) * %lld + iw];\n",
             ll(a->kernel[0]), ll(a->kernel[1]), infer_index("oh", a->stride[0], "i", 1, -a->padding[0]),
             infer_index("ow", a->stride[1], "j", 1, -a->padding[1]), ll(x->dims[2]), ll(x->dims[3]),
             ll(x->dims[2]), ll(x->dims[3]));
}

static void infer_pool_loops(Buf *o, const Node *n) {
  buf_printf(o,
             "  for (int c = 0; c < %lld; c++)\n"
             "    for (int oh = 0; oh < %lld; oh++)\n"
             "      for (int ow = 0; ow < %lld; ow++) {\n",
             ll(n->dims[1]), ll(n->dims[2]), ll(n->dims[3]));
}

/* The first maximum wins, a NaN over a number (nk_pool_max_at); PyTorch's
 * sizes leave no window without an input element. */
static const char infer_max_step[] = "            if (first || v > m || (v != v && m == m))\n"
                                     "              m = v, first = 0;\n";

static void infer_maxpool2d(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_begin(I, n, false);
  if (!o)
    return;
  infer_pool_loops(o, n);
  buf_puts(o, "        float m = 0.0f;\n        int first = 1;\n");
  infer_window_loops(o, node_in(g, n, 0), n->attrs);
  buf_printf(o, "%s          }\n        y[(c * %lld + oh) * %lld + ow] = m;\n      }\n", infer_max_step,
             ll(n->dims[2]), ll(n->dims[3]));
}

const OpDesc op_maxpool2d = {
    .name = "maxpool2d",
    .abbrev = "maxpool",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = maxpool2d_attrs,
    .nattrs = sizeof maxpool2d_attrs / sizeof *maxpool2d_attrs,
    .attrs_size = sizeof(PoolAttrs),
    .flags = OPF_TAKES_GATE | OPF_POOLS_PLANES,
    .saves = SAVES_IN,
    .shape = shape_pool,
    .flops_fwd = flops_pool,
    .flops_bwd = flops_pool,
    .epilogue_args = epilogue_args_pool,
    .define_kernels = define_maxpool2d,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_maxpool2d,
    .infer = infer_maxpool2d,
};

static const AttrDesc avgpool2d_attrs[] = {
    ATTR(PoolAttrs, kernel, AT_PAIR, NULL, false),
    ATTR(PoolAttrs, stride, AT_PAIR, "kernel", false),
    ATTR(PoolAttrs, padding, AT_PAIR, "0", false),
    ATTR(PoolAttrs, ceil_mode, AT_BOOL, "false", true),
    ATTR(PoolAttrs, count_include_pad, AT_BOOL, "true", true),
};

static void onnx_avgpool2d(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_pool(X, n, "AveragePool");
  onnx_attr_int(X, "count_include_pad", ATTRS(n, PoolAttrs)->count_include_pad);
}

/* The divisor: the window clipped to the padded input, or with
 * count_include_pad=false to the input (nk_pool_avg_div). */
static void infer_avgpool2d(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_begin(I, n, false);
  if (!o)
    return;
  const PoolAttrs *a = n->attrs;
  const Node *x = node_in(g, n, 0);
  infer_pool_loops(o, n);
  buf_puts(o, "        float s = 0.0f;\n");
  infer_window_loops(o, x, a);
  int64_t H = x->dims[2], W = x->dims[3];
  buf_printf(o,
             "            s += v;\n"
             "          }\n"
             "        int h0 = %s, w0 = %s;\n"
             "        int h1 = h0 + %lld < %lld ? h0 + %lld : %lld, w1 = w0 + %lld < %lld ? w0 + %lld : %lld;\n",
             infer_index("oh", a->stride[0], "", 0, -a->padding[0]),
             infer_index("ow", a->stride[1], "", 0, -a->padding[1]), ll(a->kernel[0]),
             ll(H + a->padding[0]), ll(a->kernel[0]), ll(H + a->padding[0]), ll(a->kernel[1]),
             ll(W + a->padding[1]), ll(a->kernel[1]), ll(W + a->padding[1]));
  if (!a->count_include_pad)
    buf_printf(o,
               "        h0 = h0 > 0 ? h0 : 0, w0 = w0 > 0 ? w0 : 0;\n"
               "        h1 = h1 < %lld ? h1 : %lld, w1 = w1 < %lld ? w1 : %lld;\n",
               ll(H), ll(H), ll(W), ll(W));
  buf_printf(o, "        y[(c * %lld + oh) * %lld + ow] = s / (float)((h1 - h0) * (w1 - w0));\n      }\n",
             ll(n->dims[2]), ll(n->dims[3]));
}

const OpDesc op_avgpool2d = {
    .name = "avgpool2d",
    .abbrev = "avgpool",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = avgpool2d_attrs,
    .nattrs = sizeof avgpool2d_attrs / sizeof *avgpool2d_attrs,
    .attrs_size = sizeof(PoolAttrs),
    .shape = shape_pool,
    .flops_fwd = flops_pool,
    .flops_bwd = flops_pool,
    .define_kernels = define_avgpool2d,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_avgpool2d,
    .infer = infer_avgpool2d,
};

/* ---- adaptive_avgpool2d(x, output), adaptive_maxpool2d(x, output) ------
 * nn.AdaptiveAvgPool2d / nn.AdaptiveMaxPool2d: window i spans
 * [floor(i*H/oh), ceil((i+1)*H/oh)).
 */
typedef struct AdaptiveAttrs {
  int64_t output[2];
} AdaptiveAttrs;

static void shape_adaptive(Graph *g, Node *n) {
  const AdaptiveAttrs *a = n->attrs;
  const char *what = op_name(n->op);
  need_rank4(g, n, 0, what);
  Node *x = node_in(g, n, 0);
  if (a->output[0] < 1 || a->output[1] < 1)
    shape_error(n, "%s: output size must be at least 1, got %lldx%lld", what,
                (long long)a->output[0], (long long)a->output[1]);
  set_type(n, 4, x->dims[0], x->dims[1], a->output[0], a->output[1]);
}

/* one per input element */
static int64_t flops_adaptive(const Graph *g, const Node *n) { return node_numel(node_in(g, n, 0)); }

static char *adaptive_sizes(Emit *E, Node *n) {
  const Node *x = emit_in(E, n, 0);
  return format("%lld, %lld, %lld, %lld, %lld", ll(n->dims[0] * n->dims[1]), ll(x->dims[2]),
                ll(x->dims[3]), ll(n->dims[2]), ll(n->dims[3]));
}

static void define_adaptive_avgpool2d(Emit *E, Node *n) {
  char *f = emit_fn(n), *sz = adaptive_sizes(E, n);
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
             "  nncc_adaptive_avgpool2d_forward_team(y, x, %s);\n}\n"
             "KERNEL void %s_backward(float *restrict dx, const float *restrict dy) {\n"
             "  nncc_adaptive_avgpool2d_backward_team(dx, dy, %s);\n}\n",
             f, sz, f, sz);
}

static void define_adaptive_maxpool2d(Emit *E, Node *n) {
  char *f = emit_fn(n), *sz = adaptive_sizes(E, n);
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
             "  nncc_adaptive_maxpool2d_forward_team(y, x, %s);\n}\n"
             "KERNEL void %s_backward(float *restrict dx, const float *restrict dy, const float *restrict x) {\n"
             "  nncc_adaptive_maxpool2d_backward_team(dx, dy, x, %s);\n}\n",
             f, sz, f, sz);
}

static const AttrDesc adaptive_attrs[] = {
    ATTR(AdaptiveAttrs, output, AT_PAIR, NULL, false),
};

/* ONNX has no adaptive pooling: output 1x1 is the global pool, an output
 * that divides the input evenly is a plain pool of input/output windows
 * (where PyTorch's adaptive windows are exactly those); others refused. */
static void onnx_adaptive(Onnx *X, const Graph *g, const Node *n, bool max) {
  const Node *x = node_in(g, n, 0);
  const int64_t *o = ATTRS(n, AdaptiveAttrs)->output;
  if (o[0] == 1 && o[1] == 1) {
    onnx_unary(X, n, max ? "GlobalMaxPool" : "GlobalAveragePool");
  } else if (x->dims[2] % o[0] == 0 && x->dims[3] % o[1] == 0) {
    int64_t k[2] = {x->dims[2] / o[0], x->dims[3] / o[1]};
    onnx_unary(X, n, max ? "MaxPool" : "AveragePool");
    onnx_attr_ints(X, "kernel_shape", k, 2);
    onnx_attr_ints(X, "strides", k, 2);
  } else {
    onnx_refuse(X, n, format("output %lldx%lld does not divide the input %lldx%lld, and ONNX has no "
                             "adaptive pooling", ll(o[0]), ll(o[1]), ll(x->dims[2]), ll(x->dims[3])));
  }
}

static void onnx_adaptive_avgpool2d(Onnx *X, const Graph *g, const Node *n) { onnx_adaptive(X, g, n, false); }
static void onnx_adaptive_maxpool2d(Onnx *X, const Graph *g, const Node *n) { onnx_adaptive(X, g, n, true); }

/* nncc --infer: window (i, j) spans rows [floor(i*H/Ho), ceil((i+1)*H/Ho))
 * and the columns alike; the mean or the first maximum. */
static Buf *infer_adaptive(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_begin(I, n, false);
  if (!o)
    return NULL;
  const Node *x = node_in(g, n, 0);
  int64_t H = x->dims[2], W = x->dims[3], Ho = n->dims[2], Wo = n->dims[3];
  buf_printf(o,
             "  for (int c = 0; c < %lld; c++)\n"
             "    for (int i = 0; i < %lld; i++)\n"
             "      for (int j = 0; j < %lld; j++) {\n"
             "        const int h0 = i * %lld / %lld, h1 = ((i + 1) * %lld + %lld) / %lld;\n"
             "        const int w0 = j * %lld / %lld, w1 = ((j + 1) * %lld + %lld) / %lld;\n"
             "        float *out = &y[(c * %lld + i) * %lld + j];\n",
             ll(n->dims[1]), ll(Ho), ll(Wo), ll(H), ll(Ho), ll(H), ll(Ho - 1), ll(Ho), ll(W), ll(Wo), ll(W),
             ll(Wo - 1), ll(Wo), ll(Ho), ll(Wo));
  return o;
}

static const char infer_adaptive_window[] = "        for (int ih = h0; ih < h1; ih++)\n"
                                            "          for (int iw = w0; iw < w1; iw++) {\n"
                                            "            const float v = x[(c * %lld + ih) * %lld + iw];\n";

static void infer_adaptive_avgpool2d(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_adaptive(I, g, n);
  if (!o)
    return;
  const Node *x = node_in(g, n, 0);
  buf_puts(o, "        float s = 0.0f;\n");
  buf_printf(o, infer_adaptive_window, ll(x->dims[2]), ll(x->dims[3]));
  buf_puts(o, "            s += v;\n          }\n        *out = s / (float)((h1 - h0) * (w1 - w0));\n      }\n");
}

static void infer_adaptive_maxpool2d(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_adaptive(I, g, n);
  if (!o)
    return;
  const Node *x = node_in(g, n, 0);
  buf_puts(o, "        float m = 0.0f;\n        int first = 1;\n");
  buf_printf(o, infer_adaptive_window, ll(x->dims[2]), ll(x->dims[3]));
  buf_printf(o, "%s          }\n        *out = m;\n      }\n", infer_max_step);
}

const OpDesc op_adaptive_avgpool2d = {
    .name = "adaptive_avgpool2d",
    .abbrev = "avgpool",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = adaptive_attrs,
    .nattrs = 1,
    .attrs_size = sizeof(AdaptiveAttrs),
    .shape = shape_adaptive,
    .flops_fwd = flops_adaptive,
    .flops_bwd = flops_adaptive,
    .define_kernels = define_adaptive_avgpool2d,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_adaptive_avgpool2d,
    .infer = infer_adaptive_avgpool2d,
};

const OpDesc op_adaptive_maxpool2d = {
    .name = "adaptive_maxpool2d",
    .abbrev = "maxpool",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = adaptive_attrs,
    .nattrs = 1,
    .attrs_size = sizeof(AdaptiveAttrs),
    .saves = SAVES_IN,
    .shape = shape_adaptive,
    .flops_fwd = flops_adaptive,
    .flops_bwd = flops_adaptive,
    .define_kernels = define_adaptive_maxpool2d,
    .forward = emit_forward_unary,
    .backward = emit_backward_unary,
    .onnx = onnx_adaptive_maxpool2d,
    .infer = infer_adaptive_maxpool2d,
};
