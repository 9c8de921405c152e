/*
 * ops/tensor.c -- ops that move or combine tensors: flatten, add, concat.
 */
#include "../nncc.h"

#include <string.h>

/* ---- flatten(x) -------------------------------------------------------------
 * [N, C, H, W] -> [N, C*H*W] (torch.flatten(x, 1)).  A view of its input
 * when the plan can make it one (OPF_VIEW: nothing else reads the input);
 * else a copy.
 */
static void shape_flatten(Graph *g, Node *n) {
  Node *x = node_in(g, n, 0);
  if (x->rank < 2)
    shape_error(n, "flatten: input must have a batch and at least one more dimension, got %s",
                type_str(x));
  int64_t f = 1;
  for (int i = 1; i < x->rank; i++)
    f *= x->dims[i];
  set_type(n, 2, x->dims[0], f, 0, 0);
}

static void define_flatten(Emit *E, Node *n) {
  (void)n;
  buf_puts(emit_out(E), "/* a copy when not a view: see forward() */\n");
}

static void forward_flatten(Emit *E, Node *n) {
  buf_printf(emit_out(E), "    nncc_copy_team(%s, %s, %lld);\n", emit_act(E, n),
             emit_act(E, emit_in(E, n, 0)), ll(node_numel(n)));
}

static void backward_flatten(Emit *E, Node *n, const char *const *dx) {
  if (emit_needed(dx[0]))
    buf_printf(emit_out(E), "    nncc_copy_team(%s, %s, %lld);\n", dx[0], emit_grad(E, n),
               ll(node_numel(n)));
}


static void onnx_flatten(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_unary(X, n, "Flatten");
}

/* nncc --infer: a view of its input, whose memory holds the same order. */
static void infer_flatten(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  infer_alias(I, n);
}

const OpDesc op_flatten = {
    .name = "flatten",
    .abbrev = "flatten",
    .inputs = op_x_input,
    .nin = 1,
    .flags = OPF_VIEW,
    .shape = shape_flatten,
    .define_kernels = define_flatten,
    .forward = forward_flatten,
    .backward = backward_flatten,
    .onnx = onnx_flatten,
    .infer = infer_flatten,
};

/* ---- add(a, b), also written a + b ------------------------------------------
 * The elementwise sum of two tensors of one shape (a residual connection).
 * Backward hands the output gradient to both inputs; where the plan put an
 * input's gradient in the output gradient's memory, nothing is copied.
 */
static void shape_add(Graph *g, Node *n) {
  Node *a = node_in(g, n, 0), *b = node_in(g, n, 1);
  if (a->rank != b->rank || memcmp(a->dims, b->dims, sizeof a->dims) != 0)
    shape_error(n, "add: shapes differ: %%%s is %s but %%%s is %s", a->name, type_str(a), b->name,
                type_str(b));
  copy_type(n, a);
}

static int64_t flops_add(const Graph *g, const Node *n) {
  (void)g;
  return node_numel(n);
}

static void define_add(Emit *E, Node *n) {
  buf_printf(emit_out(E),
             "KERNEL void %s_forward(float *y, const float *a, const float *b) {\n"
             "  nncc_add_forward_team(y, a, b, %lld);\n}\n",
             emit_fn(n), ll(node_numel(n)));
}

static void forward_add(Emit *E, Node *n) {
  buf_printf(emit_out(E), "    %s_forward(%s, %s, %s);\n", emit_fn(n), emit_act(E, n),
             emit_act(E, emit_in(E, n, 0)), emit_act(E, emit_in(E, n, 1)));
}

static void backward_add(Emit *E, Node *n, const char *const *dx) {
  for (int j = 0; j < 2; j++) {
    if (!emit_needed(dx[j]))
      continue;
    if (emit_grad_in_place(E, n, j))
      buf_printf(emit_out(E), "    /* %s's gradient is %s's, in place */\n", emit_in(E, n, j)->name,
                 n->name);
    else
      buf_printf(emit_out(E), "    nncc_copy_team(%s, %s, %lld);\n", dx[j], emit_grad(E, n),
                 ll(node_numel(n)));
  }
}

static const char *const add_inputs[] = {"a", "b"};

static void onnx_add(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  onnx_node(X, n, "Add", (const char *[]){onnx_in(X, n, 0), onnx_in(X, n, 1)}, 2);
}

static void infer_add(Infer *I, const Graph *g, const Node *n) {
  (void)g;
  Buf *o = infer_begin(I, n, true);
  if (o)
    buf_printf(o, "  for (int i = 0; i < %lld; i++)\n    y[i] = a[i] + b[i];\n",
               ll(node_numel(n) / n->dims[0]));
}

const OpDesc op_add = {
    .name = "add",
    .abbrev = "add",
    .inputs = add_inputs,
    .nin = 2,
    .flags = OPF_INPLACE,
    .shape = shape_add,
    .flops_fwd = flops_add,
    .define_kernels = define_add,
    .forward = forward_add,
    .backward = backward_add,
    .onnx = onnx_add,
    .infer = infer_add,
};

/* ---- concat(tensors) ----------------------------------------------------------
 * torch.cat(tensors, dim=1): the inputs' channels (or features) one after
 * another.  Forward copies each input into its slice of the output,
 * backward each slice of the output gradient to its input's gradient.
 */
static void shape_concat(Graph *g, Node *n) {
  Node *x0 = node_in(g, n, 0);
  if (x0->rank != 4 && x0->rank != 2)
    shape_error(n, "concat: inputs must be 4-D [N, C, H, W] or 2-D [N, F], got %s %%%s",
                type_str(x0), x0->name);
  int64_t channels = 0;
  for (int j = 0; j < n->nin; j++) {
    Node *x = node_in(g, n, j);
    bool same = x->rank == x0->rank && x->dims[0] == x0->dims[0] &&
                (x->rank == 2 || (x->dims[2] == x0->dims[2] && x->dims[3] == x0->dims[3]));
    if (!same)
      shape_error(n, "concat: input %d %%%s is %s but input 0 %%%s is %s; all but dimension 1 "
                  "must agree", j, x->name, type_str(x), x0->name, type_str(x0));
    channels += x->dims[1]; /* each at most 2^30, and at most NNCC_MAX_ARGS of them */
  }
  if (x0->rank == 4)
    set_type(n, 4, x0->dims[0], channels, x0->dims[2], x0->dims[3]);
  else
    set_type(n, 2, x0->dims[0], channels, 0, 0);
}

/* one per element copied, both ways */
static int64_t flops_concat(const Graph *g, const Node *n) {
  (void)g;
  return node_numel(n);
}

static void define_concat(Emit *E, Node *n) {
  (void)n;
  buf_puts(emit_out(E), "/* copies of channel slices: see forward() and backward() */\n");
}

static int64_t plane(const Node *n) { return n->rank == 4 ? n->dims[2] * n->dims[3] : 1; }

static void forward_concat(Emit *E, Node *n) {
  int64_t off = 0;
  for (int j = 0; j < n->nin; j++) {
    const Node *x = emit_in(E, n, j);
    buf_printf(emit_out(E), "    nncc_copy_channels_team(%s, %lld, %lld, %s, %lld, 0, %lld, %lld, %lld);\n",
               emit_act(E, n), ll(n->dims[1]), ll(off), emit_act(E, x), ll(x->dims[1]), ll(n->dims[0]),
               ll(x->dims[1]), ll(plane(n)));
    off += x->dims[1];
  }
}

static void backward_concat(Emit *E, Node *n, const char *const *dx) {
  int64_t off = 0;
  for (int j = 0; j < n->nin; j++) {
    const Node *x = emit_in(E, n, j);
    if (emit_needed(dx[j]))
      buf_printf(emit_out(E), "    nncc_copy_channels_team(%s, %lld, 0, %s, %lld, %lld, %lld, %lld, %lld);\n",
                 dx[j], ll(x->dims[1]), emit_grad(E, n), ll(n->dims[1]), ll(off), ll(n->dims[0]),
                 ll(x->dims[1]), ll(plane(n)));
    off += x->dims[1];
  }
}

static const char *const concat_inputs[] = {"tensors"};

/* ONNX Concat along the channels */
static void onnx_concat(Onnx *X, const Graph *g, const Node *n) {
  (void)g;
  const char **in = xalloc(sizeof(char *) * (size_t)n->nin);
  for (int j = 0; j < n->nin; j++)
    in[j] = onnx_in(X, n, j);
  onnx_node(X, n, "Concat", in, n->nin);
  onnx_attr_int(X, "axis", 1);
}

/* nncc --infer: each input copied into its channels of y. */
static void infer_concat(Infer *I, const Graph *g, const Node *n) {
  Buf *o = infer_begin(I, n, false);
  int64_t off = 0;
  for (int j = 0; o && j < n->nin; j++) {
    int64_t len = node_in(g, n, j)->dims[1] * plane(n);
    buf_printf(o, "  for (int i = 0; i < %lld; i++)\n    y[%s%si] = %s[i];\n", ll(len),
               off ? format("%lld", ll(off)) : "", off ? " + " : "", infer_in(I, n, j));
    off += len;
  }
}

const OpDesc op_concat = {
    .name = "concat",
    .abbrev = "cat",
    .inputs = concat_inputs,
    .nin = -1,
    .shape = shape_concat,
    .flops_fwd = flops_concat,
    .flops_bwd = flops_concat,
    .define_kernels = define_concat,
    .forward = forward_concat,
    .backward = backward_concat,
    .onnx = onnx_concat,
    .infer = infer_concat,
};
