/*
 * ops/conv.c -- the ops with weights that multiply: conv2d and linear.
 * Both may end in a fused activation (OPF_EPILOGUE): forward applies it in
 * the output loop, backward gates the incoming gradient with the saved
 * output y, so the pre-activation tensor is never stored.
 */
#include "../nncc.h"

#include <math.h>

/* ---- conv2d(x, out, kernel, stride=1, padding=0, dilation=1, groups=1, bias=true)
 * y = x * w + b over NCHW, weight OIHW [out, in/groups, kh, kw] (nn.Conv2d).
 * padding="same" (stride 1) pads dilation*(kernel-1) in all, the odd one
 * at the bottom/right, as PyTorch does.
 */
typedef struct Conv2dAttrs {
  int64_t out, kernel[2], stride[2];
  Padding padding;
  int64_t dilation[2], groups;
  bool bias;
  int64_t pt, pb, pl, pr;  /* the padding, resolved by shape() */
} Conv2dAttrs;

static void shape_conv2d(Graph *g, Node *n) {
  Conv2dAttrs *a = n->attrs;
  need_rank4(g, n, 0, "conv2d");
  Node *x = node_in(g, n, 0);
  if (a->out < 1)
    shape_error(n, "conv2d: out channels must be at least 1, got %lld", (long long)a->out);
  if (a->groups < 1)
    shape_error(n, "conv2d: groups must be at least 1, got %lld", (long long)a->groups);
  if (x->dims[1] % a->groups || a->out % a->groups)
    shape_error(n, "conv2d: groups=%lld must divide the in channels (%lld) and the out channels (%lld)",
                (long long)a->groups, (long long)x->dims[1], (long long)a->out);
  if (a->padding.same) {
    if (a->stride[0] != 1 || a->stride[1] != 1)
      shape_error(n, "conv2d: padding=\"same\" needs stride 1 (as in PyTorch), got %lldx%lld",
                  (long long)a->stride[0], (long long)a->stride[1]);
    if (a->kernel[0] < 1 || a->kernel[1] < 1 || a->dilation[0] < 1 || a->dilation[1] < 1)
      shape_error(n, "conv2d: kernel and dilation must be at least 1, got kernel %lldx%lld, "
                  "dilation %lldx%lld", (long long)a->kernel[0], (long long)a->kernel[1],
                  (long long)a->dilation[0], (long long)a->dilation[1]);
    int64_t th = a->dilation[0] * (a->kernel[0] - 1), tw = a->dilation[1] * (a->kernel[1] - 1);
    a->pt = th / 2, a->pb = th - th / 2, a->pl = tw / 2, a->pr = tw - tw / 2;
  } else {
    a->pt = a->pb = a->padding.h;
    a->pl = a->pr = a->padding.w;
  }
  Window w = {a->kernel[0], a->kernel[1], a->stride[0], a->stride[1], a->pt, a->pb, a->pl, a->pr,
              a->dilation[0], a->dilation[1], false};
  int64_t ho, wo;
  shape_window(g, n, "conv2d", w, &ho, &wo);
  set_type(n, 4, x->dims[0], a->out, ho, wo);
  /* the input gradient is a convolution of the output gradient spread over
   * (H + kh - 1) x (W + kw - 1), the kernel's extent */
  int64_t spread[4] = {x->dims[0], a->out, x->dims[2] + a->dilation[0] * (a->kernel[0] - 1),
                       x->dims[3] + a->dilation[1] * (a->kernel[1] - 1)};
  shape_elements(n, format("conv2d: the input gradient's work %s", dims_str(spread, 4)), spread, 4);
  /* PyTorch 1.13: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in); bias the same */
  int64_t wd[4] = {a->out, x->dims[1] / a->groups, a->kernel[0], a->kernel[1]};
  add_param(n, "weight", P_WEIGHT, 4, wd, INIT_UNIFORM, 0);
  int64_t fan_in = wd[1] * wd[2] * wd[3]; /* at most the weight's elements */
  double bound = n->params[0].bound = 1.0 / sqrt((double)fan_in);
  if (a->bias)
    add_param(n, "bias", P_WEIGHT, 1, wd, INIT_UNIFORM, bound);
}

static int64_t conv_macs(const Graph *g, const Node *n) {
  const Conv2dAttrs *a = n->attrs;
  return node_numel(n) * (node_in(g, n, 0)->dims[1] / a->groups) * a->kernel[0] * a->kernel[1];
}

/* multiply-adds, then the bias */
static int64_t flops_conv2d_fwd(const Graph *g, const Node *n) {
  return 2 * conv_macs(g, n) + (ATTRS(n, Conv2dAttrs)->bias ? node_numel(n) : 0);
}

/* the weight gradient, and the input's unless the input is the model's */
static int64_t flops_conv2d_bwd(const Graph *g, const Node *n) {
  bool need_dx = n->in[0] != g->input;
  return 2 * conv_macs(g, n) * (need_dx ? 2 : 1) + (ATTRS(n, Conv2dAttrs)->bias ? node_numel(n) : 0);
}

/* The fast engine takes groups 1, no dilation and even padding; the
 * general kernel the rest. */
static bool conv_general(const Conv2dAttrs *a) {
  return a->groups != 1 || a->dilation[0] != 1 || a->dilation[1] != 1 || a->pt != a->pb ||
         a->pl != a->pr;
}

/* On the fast engine, a conv's forward has an epilogue per output plane:
 * the statistics of the batch norm it feeds, or the max pool it feeds
 * (passes/fuse.c). */
static bool plane_epilogue_conv2d(const Node *n) { return !conv_general(n->attrs); }

/* The kernels' size arguments after the tensors. */
static char *conv_sizes(Emit *E, const Node *n) {
  const Conv2dAttrs *a = n->attrs;
  const Node *x = emit_in(E, n, 0);
  if (conv_general(a))
    return format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, "
                  "%lld, %lld", ll(x->dims[0]), ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]),
                  ll(a->out), ll(a->kernel[0]), ll(a->kernel[1]), ll(a->stride[0]), ll(a->stride[1]),
                  ll(a->pt), ll(a->pl), ll(a->dilation[0]), ll(a->dilation[1]), ll(a->groups),
                  ll(n->dims[2]), ll(n->dims[3]));
  return format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld", ll(x->dims[0]),
                ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]), ll(a->out), ll(a->kernel[0]),
                ll(a->kernel[1]), ll(a->stride[0]), ll(a->stride[1]), ll(a->pt), ll(a->pl));
}

static void define_conv2d(Emit *E, Node *n) {
  const Conv2dAttrs *a = n->attrs;
  const Node *x = emit_in(E, n, 0);
  Buf *o = emit_out(E);
  char *f = emit_fn(n), *sz = conv_sizes(E, n), *act = emit_act_args(n);
  const char *mask = emit_mask_param(n), *y = emit_mask_arg(n);
  if (conv_general(a)) {
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x, const float *restrict w,\n"
               "    const float *restrict b, void *scratch) {\n"
               "  (void)scratch;\n"
               "  nncc_conv2d_general_forward_team(y, x, w, b, %s, %s);\n}\n",
               f, sz, act);
    buf_printf(o,
               "KERNEL void %s_backward(float *restrict dx, float *restrict dw, float *restrict db,\n"
               "    const float *restrict dy,%s const float *restrict x, const float *restrict w,\n"
               "    void *scratch) {\n"
               "  (void)scratch;\n"
               "  nncc_conv2d_general_backward_team(dx, dw, db, dy, %s, x, w, %s%s);\n}\n",
               f, mask, y, sz, emit_bwd_act_args(E, n));
    buf_printf(o, "SCRATCH(%s, 0, 0) /* none */\n", f);
    return;
  }
  /* the engine computes the output size itself: it must be the plan's */
  emit_static_assert(E, n, format("NNCC_CONV_OUT(%lld, %lld, %lld, %lld, %lld, 1) == %lld",
                                   ll(x->dims[2]), ll(a->kernel[0]), ll(a->stride[0]), ll(a->pt),
                                   ll(a->pb), ll(n->dims[2])),
                     format("NNCC_CONV_OUT(%lld, %lld, %lld, %lld, %lld, 1) == %lld", ll(x->dims[3]),
                            ll(a->kernel[1]), ll(a->stride[1]), ll(a->pl), ll(a->pr), ll(n->dims[3])));
  if (n->pool_for)
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, float *restrict py, const float *restrict x,\n"
               "    const float *restrict w, const float *restrict b, void *scratch) {\n"
               "  nncc_conv2d_forward_pool_team(y, py, x, w, b, scratch, %s, %s,\n"
               "                                %s); /* %s's window */\n}\n",
               f, sz, act, node_desc(n->pool_for)->epilogue_args(E, n->pool_for), n->pool_for->name);
  else if (n->stats_for)
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, double *restrict pstats, const float *restrict x,\n"
               "    const float *restrict w, const float *restrict b, void *scratch) {\n"
               "  nncc_conv2d_forward_stats_team(y, pstats, x, w, b, scratch, %s, %s);\n}\n",
               f, sz, act);
  else
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x, const float *restrict w,\n"
               "    const float *restrict b, void *scratch) {\n"
               "  nncc_conv2d_forward_team(y, x, w, b, scratch, %s, %s);\n}\n",
               f, sz, act);
  /* where x needs no gradient (the model's input), the kernel computes
   * only the weight gradient's: a data gradient it would never run is
   * code the C compiler would optimize all the same (the JIT's parts make
   * kernels external, so it cannot see that dx is always NULL) */
  bool dx = x->needs_grad;
  buf_printf(o,
             "KERNEL void %s_backward(float *restrict dx, float *restrict dw, float *restrict db,\n"
             "    const float *restrict dy,%s const float *restrict x, const float *restrict w,\n"
             "    void *scratch) {\n"
             "%s"
             "  nncc_conv2d_backward%s_team(%sdw, db, dy, %s, x, %sscratch, %s%s);\n}\n",
             f, mask, dx ? "" : "  (void)dx, (void)w; /* x needs no gradient */\n",
             dx ? "" : "_weight", dx ? "dx, " : "", y, dx ? "w, " : "", sz, emit_bwd_act_args(E, n));
  buf_printf(o, "SCRATCH(%s, nncc_conv2d_forward_scratch(%s, t), nncc_conv2d_backward_scratch(%s, t, %s))\n",
             f, sz, sz, emit_group(E));
}

/* conv2d and linear call their kernels alike; a conv that writes a batch
 * norm's statistics passes where they go, in training, and one that
 * computes a max pool the pool's output */
static void forward_weighted(Emit *E, Node *n) {
  char *pstats = n->stats_for  ? format(" training ? (double *)(void *)%s : NULL,",
                                        emit_work(E, n->stats_for))
                 : n->pool_for ? format(" %s,", emit_act(E, n->pool_for))
                               : "";
  buf_printf(emit_out(E), "    %s_forward(%s,%s %s, %s, %s, scratch);\n", emit_fn(n), emit_act(E, n),
             pstats, emit_act(E, emit_in(E, n, 0)), emit_param(E, n, 0),
             n->nparams > 1 ? emit_param(E, n, 1) : "NULL");
}

static void backward_weighted(Emit *E, Node *n, const char *const *dx) {
  Buf *o = emit_out(E);
  buf_printf(o, "    %s_backward(%s, %s, %s, %s, %s%s, %s, scratch);\n", emit_fn(n), dx[0],
             emit_param_grad(E, n, 0), n->nparams > 1 ? emit_param_grad(E, n, 1) : "NULL", emit_grad(E, n),
             emit_mask_ref(E, n), emit_act(E, emit_in(E, n, 0)), emit_param(E, n, 0));
}

static const AttrDesc conv2d_attrs[] = {
    ATTR(Conv2dAttrs, out, AT_INT, NULL, false),
    ATTR(Conv2dAttrs, kernel, AT_PAIR, NULL, false),
    ATTR(Conv2dAttrs, stride, AT_PAIR, "1", false),
    ATTR(Conv2dAttrs, padding, AT_PADDING, "0", false),
    ATTR(Conv2dAttrs, dilation, AT_PAIR, "1", true),
    ATTR(Conv2dAttrs, groups, AT_INT, "1", true),
    ATTR(Conv2dAttrs, bias, AT_BOOL, "true", true),
};


/* ONNX Conv: pads [top, left, bottom, right] as shape() resolved them */
static void onnx_conv2d(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  const Conv2dAttrs *a = n->attrs;
  const char *in[3] = {onnx_in(X, n, 0), onnx_param(X, n, 0), a->bias ? onnx_param(X, n, 1) : NULL};
  onnx_node(X, n, "Conv", in, a->bias ? 3 : 2);
  onnx_attr_ints(X, "kernel_shape", a->kernel, 2);
  onnx_attr_ints(X, "strides", a->stride, 2);
  onnx_attr_ints(X, "pads", (int64_t[]){a->pt, a->pl, a->pb, a->pr}, 4);
  onnx_attr_ints(X, "dilations", a->dilation, 2);
  onnx_attr_int(X, "group", a->groups);
}

/* nncc --infer: per output channel and row, the row's sums accumulate in
 * y over (c, kh, kw), the trainer's order, terms in the padding skipped;
 * then the bias and the fused epilogue.  The columns ow whose input
 * column ow*sw - pl + kw*dw is inside are [lo[kw], hi[kw]), decided here. */
static void infer_conv2d(Infer *I, const Graph *g, const Node *n) {
  const Conv2dAttrs *a = n->attrs;
  const Node *x = node_in(g, n, 0);
  int64_t H = x->dims[2], W = x->dims[3], Co = a->out, Ho = n->dims[2], Wo = n->dims[3];
  int64_t Cg = x->dims[1] / a->groups, Og = a->out / a->groups, KH = a->kernel[0], KW = a->kernel[1];
  Buf *o = infer_weighted(I, n, Co * Ho * Wo * Cg * KH * KW);
  if (!o)
    return;
  Buf lo = {0}, hi = {0};
  bool full = true;
  for (int64_t kw = 0; kw < KW; kw++) {
    int64_t off = kw * a->dilation[1] - a->pl, l = 0, h = Wo;
    while (l < Wo && off + l * a->stride[1] < 0)
      l++;
    while (h > l && off + (h - 1) * a->stride[1] >= W)
      h--;
    buf_printf(&lo, "%s%lld", kw ? ", " : "", ll(l));
    buf_printf(&hi, "%s%lld", kw ? ", " : "", ll(h));
    full &= l == 0 && h == Wo;
  }
  bool rows_inside = a->pt == 0 && (Ho - 1) * a->stride[0] + (KH - 1) * a->dilation[0] < H;
  if (!full)
    buf_printf(o, "  static const int lo[%lld] = {%s}, hi[%lld] = {%s};\n", ll(KW), lo.data, ll(KW), hi.data);
  buf_free(&lo);
  buf_free(&hi);
  buf_printf(o,
             "#ifdef _OPENMP\n#pragma omp parallel for\n#endif\n"
             "  for (int co = 0; co < %lld; co++) {\n"
             "    const float *xg = %s;\n"
             "    for (int oh = 0; oh < %lld; oh++) {\n"
             "      float *yr = y + (co * %lld + oh) * %lld;\n"
             "      for (int ow = 0; ow < %lld; ow++)\n"
             "        yr[ow] = 0.0f;\n"
             "      for (int c = 0; c < %lld; c++)\n"
             "        for (int kh = 0; kh < %lld; kh++) {\n"
             "          const int ih = %s;\n",
             ll(Co), a->groups > 1 ? format("x + co / %lld * %lld", ll(Og), ll(Cg * H * W)) : "x", ll(Ho),
             ll(Ho), ll(Wo), ll(Wo), ll(Cg), ll(KH), infer_index("oh", a->stride[0], "kh", a->dilation[0], -a->pt));
  if (!rows_inside)
    buf_printf(o, "          if (ih < 0 || ih >= %lld)\n            continue;\n", ll(H));
  buf_printf(o,
             "          const float *xr = xg + (c * %lld + ih) * %lld;\n"
             "          const float *wr = w + ((co * %lld + c) * %lld + kh) * %lld;\n"
             "          for (int kw = 0; kw < %lld; kw++)\n"
             "            for (int ow = %s; ow < %s; ow++)\n"
             "              yr[ow] += wr[kw] * xr[%s];\n"
             "        }\n"
             "      for (int ow = 0; ow < %lld; ow++) {\n"
             "        float v = yr[ow]%s;\n"
             "        yr[ow] = %s;\n"
             "      }\n"
             "    }\n"
             "  }\n",
             ll(H), ll(W), ll(Cg), ll(KH), ll(KW), ll(KW), full ? "0" : "lo[kw]",
             full ? format("%lld", ll(Wo)) : "hi[kw]", infer_index("ow", a->stride[1], "kw", a->dilation[1], -a->pl),
             ll(Wo), infer_bias(I, n, "co"), infer_epilogue(I, n));
}

const OpDesc op_conv2d = {
    .name = "conv2d",
    .abbrev = "conv",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = conv2d_attrs,
    .nattrs = sizeof conv2d_attrs / sizeof *conv2d_attrs,
    .attrs_size = sizeof(Conv2dAttrs),
    .flags = OPF_EPILOGUE | OPF_SCRATCH,
    .saves = SAVES_IN,
    .shape = shape_conv2d,
    .flops_fwd = flops_conv2d_fwd,
    .flops_bwd = flops_conv2d_bwd,
    .plane_epilogue = plane_epilogue_conv2d,
    .define_kernels = define_conv2d,
    .forward = forward_weighted,
    .backward = backward_weighted,
    .onnx = onnx_conv2d,
    .infer = infer_conv2d,
};

/* ---- linear(x, out, bias=true) ----------------------------------------
 * y = x w^T + b, weight [out, in] (nn.Linear); x must be [N, in].
 */
typedef struct LinearAttrs {
  int64_t out;
  bool bias;
} LinearAttrs;

static void shape_linear(Graph *g, Node *n) {
  const LinearAttrs *a = n->attrs;
  Node *x = node_in(g, n, 0);
  if (x->rank != 2)
    shape_error(n, "linear: input must be 2-D [N, features], got %s %%%s%s", type_str(x), x->name,
                x->rank > 2 ? "; flatten() it first" : "");
  if (a->out < 1)
    shape_error(n, "linear: out features must be at least 1, got %lld", (long long)a->out);
  set_type(n, 2, x->dims[0], a->out, 0, 0);
  double bound = 1.0 / sqrt((double)x->dims[1]);
  int64_t w[2] = {a->out, x->dims[1]};
  add_param(n, "weight", P_WEIGHT, 2, w, INIT_UNIFORM, bound);
  if (a->bias)
    add_param(n, "bias", P_WEIGHT, 1, w, INIT_UNIFORM, bound);
}

static int64_t flops_linear_fwd(const Graph *g, const Node *n) {
  int64_t e = node_numel(n);
  return 2 * e * node_in(g, n, 0)->dims[1] + (ATTRS(n, LinearAttrs)->bias ? e : 0);
}

static int64_t flops_linear_bwd(const Graph *g, const Node *n) {
  int64_t e = node_numel(n), macs = e * node_in(g, n, 0)->dims[1];
  bool need_dx = n->in[0] != g->input;
  return 2 * macs * (need_dx ? 2 : 1) + (ATTRS(n, LinearAttrs)->bias ? e : 0);
}

static void define_linear(Emit *E, Node *n) {
  Buf *o = emit_out(E);
  const Node *x = emit_in(E, n, 0);
  char *f = emit_fn(n), *act = emit_act_args(n);
  char *sz = format("%lld, %lld, %lld", ll(n->dims[0]), ll(x->dims[1]), ll(n->dims[1]));
  buf_printf(o,
             "KERNEL void %s_forward(float *restrict y, const float *restrict x, const float *restrict w,\n"
             "    const float *restrict b, void *scratch) {\n"
             "  nncc_linear_forward_team(y, x, w, b, scratch, %s, %s);\n}\n",
             f, sz, act);
  buf_printf(o,
             "KERNEL void %s_backward(float *restrict dx, float *restrict dw, float *restrict db,\n"
             "    const float *restrict dy,%s const float *restrict x, const float *restrict w,\n"
             "    void *scratch) {\n"
             "  nncc_linear_backward_team(dx, dw, db, dy, %s, x, w, scratch, %s%s);\n}\n",
             f, emit_mask_param(n), emit_mask_arg(n), sz, emit_bwd_act_args(E, n));
  buf_printf(o, "SCRATCH(%s, nncc_linear_forward_scratch(%s), nncc_linear_backward_scratch(%s))\n", f, sz,
             sz);
}

static const AttrDesc linear_attrs[] = {
    ATTR(LinearAttrs, out, AT_INT, NULL, false),
    ATTR(LinearAttrs, bias, AT_BOOL, "true", true),
};

/* ONNX Gemm(x, W, b) with W as [out, in]: transB */
static void onnx_linear(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  bool bias = ATTRS(n, LinearAttrs)->bias;
  const char *in[3] = {onnx_in(X, n, 0), onnx_param(X, n, 0), bias ? onnx_param(X, n, 1) : NULL};
  onnx_node(X, n, "Gemm", in, bias ? 3 : 2);
  onnx_attr_int(X, "transB", 1);
}

/* nncc --infer: each output's sum over the inputs in order, then the
 * bias and the fused epilogue. */
static void infer_linear(Infer *I, const Graph *g, const Node *n) {
  int64_t in = node_in(g, n, 0)->dims[1], out = n->dims[1];
  Buf *o = infer_weighted(I, n, in * out);
  if (!o)
    return;
  buf_printf(o,
             "  for (int o = 0; o < %lld; o++) {\n"
             "    const float *wr = w + o * %lld;\n"
             "    float s = 0.0f;\n"
             "    for (int i = 0; i < %lld; i++)\n"
             "      s += wr[i] * x[i];\n"
             "    float v = s%s;\n"
             "    y[o] = %s;\n"
             "  }\n",
             ll(out), ll(in), ll(in), infer_bias(I, n, "o"), infer_epilogue(I, n));
}

const OpDesc op_linear = {
    .name = "linear",
    .abbrev = "fc",
    .inputs = op_x_input,
    .nin = 1,
    .attrs = linear_attrs,
    .nattrs = sizeof linear_attrs / sizeof *linear_attrs,
    .attrs_size = sizeof(LinearAttrs),
    .flags = OPF_EPILOGUE | OPF_SCRATCH,
    .saves = SAVES_IN,
    .shape = shape_linear,
    .flops_fwd = flops_linear_fwd,
    .flops_bwd = flops_linear_bwd,
    .define_kernels = define_linear,
    .forward = forward_weighted,
    .backward = backward_weighted,
    .onnx = onnx_linear,
    .infer = infer_linear,
};
