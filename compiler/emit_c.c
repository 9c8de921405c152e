/*
 * emit_c.c -- the back end: a planned graph -> one C file that trains it.
 *
 * The file has a kernel pair per node, <node>_forward and <node>_backward,
 * with every size a literal, then forward() and backward(), which call them
 * in order inside one OpenMP parallel region each (a barrier between
 * nodes, and a call of the runtime's numerics check when it asks for one),
 * nodes[] (where each node's results lie, for that check) and the NnccModel
 * that hands them to the runtime's nncc_main().
 * Convolutions, linear layers, pooling and ReLU call the team kernels of
 * runtime/nncc_kernels.h; the simple ops are written out here.
 *
 * Everything is a pure function of the graph: the same .nn gives the same
 * bytes.
 */
#include "nncc.h"

#include <stdlib.h>
#include <string.h>

typedef struct Emit {
  Graph *g;
  Buf *out;
  bool *used;      /* arena buffers the current step function touches */
  bool *written;   /* backward: gradients already holding a contribution */
  int64_t *param_off; /* node id * MAX_PARAMS + k -> offset in floats */
  int *row;        /* node id -> its row of nodes[] (the nodes with kernels), -1 */
} Emit;

static long long ll(int64_t v) { return (long long)v; }

/* The shortest decimal that reads back as v, always with a '.' or an
 * exponent so that C sees a floating constant: 0.1, 1e-05, 2.0 */
static char *real(double v, bool as_float) {
  char *s = NULL;
  for (int prec = 1; prec <= 17; prec++) {
    s = format("%.*g", prec, v);
    if (as_float ? (float)strtod(s, NULL) == (float)v : strtod(s, NULL) == v)
      break;
  }
  if (!strpbrk(s, ".en"))
    s = format("%s.0", s);
  return as_float ? format("%sf", s) : s;
}

/* ---- names and pointers ---------------------------------------------------- */


/* The C expression for buffer b inside a step function. */
static const char *ptr(Emit *E, int b) {
  b = buf_root(E->g, b);
  if (E->g->bufs[b].external)
    return E->g->bufs[b].external;
  E->used[b] = true;
  return E->g->bufs[b].name;
}

static char *fn_name(const Node *n) {
  char *s = xstrdup(n->name);
  for (char *p = s; *p; p++)
    if (*p == '.')
      *p = '_';
  return s;
}

/* The node's k-th parameter (or its gradient) as a C expression into P or G. */
static const char *param_ref(Emit *E, const char *block, const Node *n, int k) {
  return format("%s + %lld /* %s */", block, ll(E->param_off[n->id * MAX_PARAMS + k]), n->params[k].name);
}

/* ---- the kernels of each op ---------------------------------------------- */

/* Forward: one call per node inside forward()'s parallel region. */
static void call_forward(Emit *E, Node *n) {
  Graph *g = E->g;
  Node *x = n->nin ? g->nodes[n->in[0]] : NULL;
  const char *y = ptr(E, n->act);
  const char *xs = x ? ptr(E, x->act) : NULL;
  Buf *o = E->out;
  char *f = fn_name(n);
  switch (n->op) {
  case OP_CONV2D:
    buf_printf(o, "    %s_forward(%s, %s, %s, %s, scratch);\n", f, y, xs, param_ref(E, "P", n, 0),
               n->bias ? param_ref(E, "P", n, 1) : "NULL");
    return;
  case OP_LINEAR:
    buf_printf(o, "    %s_forward(%s, %s, %s, %s, scratch);\n", f, y, xs, param_ref(E, "P", n, 0),
               n->bias ? param_ref(E, "P", n, 1) : "NULL");
    return;
  case OP_BATCHNORM2D:
    buf_printf(o, "    %s_forward(%s, %s, %s, %s, %s, %s, %s, %s, training);\n", f, y, xs,
               param_ref(E, "P", n, 0), param_ref(E, "P", n, 1), param_ref(E, "P", n, 2),
               param_ref(E, "P", n, 3), param_ref(E, "P", n, 4), ptr(E, n->aux));
    return;
  case OP_DROPOUT:
    buf_printf(o, "    %s_forward(%s, %s, s->seed, s->step, training);\n", f, y, xs);
    return;
  case OP_ADD:
    buf_printf(o, "    %s_forward(%s, %s, %s);\n", f, y, xs, ptr(E, g->nodes[n->in[1]]->act));
    return;
  case OP_FLATTEN:
    if (buf_root(g, n->act) == buf_root(g, x->act))
      buf_printf(o, "    /* %s: a view of %s */\n", n->name, x->name);
    else
      buf_printf(o, "    nncc_copy_team(%s, %s, %lld);\n", y, xs, ll(node_numel(n)));
    return;
  default:
    buf_printf(o, "    %s_forward(%s, %s);\n", f, y, xs);
  }
}

/* Where the gradient for input j of n goes: straight into the input's
 * gradient if this is its first contribution, else into grad_tmp (then added). */
static const char *grad_target(Emit *E, Node *n, int j, bool *accumulate) {
  Node *x = E->g->nodes[n->in[j]];
  int b = buf_root(E->g, x->grad);
  *accumulate = E->written[b];
  E->written[b] = true;
  return *accumulate ? ptr(E, E->g->tmp) : ptr(E, x->grad);
}

static void add_tmp(Emit *E, Node *n, int j) {
  Node *x = E->g->nodes[n->in[j]];
  buf_printf(E->out, "#pragma omp barrier\n    nncc_accumulate_team(%s, %s, %lld);\n", ptr(E, x->grad),
             ptr(E, E->g->tmp), ll(node_numel(x)));
}

/* Backward: gradients of n's inputs and parameters from n's own gradient. */
static void call_backward(Emit *E, Node *n) {
  Graph *g = E->g;
  Buf *o = E->out;
  char *f = fn_name(n);
  Node *x = n->nin ? g->nodes[n->in[0]] : NULL;
  if (n->op == OP_FLATTEN && buf_root(g, n->act) == buf_root(g, x->act)) {
    buf_printf(o, "    /* %s: a view, its gradient is d_%s's */\n", n->name, fn_name(x));
    return;
  }
  const char *dy = ptr(E, n->grad);
  bool acc[2] = {false, false};
  const char *dx[2] = {"NULL", "NULL"};
  for (int j = 0; j < n->nin; j++)
    if (g->nodes[n->in[j]]->needs_grad)
      dx[j] = grad_target(E, n, j, &acc[j]);
  switch (n->op) {
  case OP_CONV2D:
  case OP_LINEAR:
    buf_printf(o, "    %s_backward(%s, %s, %s, %s, %s%s%s, %s, scratch);\n", f, dx[0],
               param_ref(E, "G", n, 0), n->bias ? param_ref(E, "G", n, 1) : "NULL", dy,
               n->relu ? ptr(E, n->act) : "", n->relu ? ", " : "", ptr(E, x->act), param_ref(E, "P", n, 0));
    break;
  case OP_BATCHNORM2D:
    buf_printf(o, "    %s_backward(%s, %s, %s, %s, %s, %s, %s);\n", f, dx[0], param_ref(E, "G", n, 0),
               param_ref(E, "G", n, 1), dy, ptr(E, x->act), param_ref(E, "P", n, 0), ptr(E, n->aux));
    break;
  case OP_RELU:
    if (x->needs_grad)
      buf_printf(o, "    %s_backward(%s, %s, %s);\n", f, dx[0], dy, ptr(E, n->act));
    break;
  case OP_MAXPOOL2D:
    if (x->needs_grad)
      buf_printf(o, "    %s_backward(%s, %s, %s);\n", f, dx[0], dy, ptr(E, x->act));
    break;
  case OP_DROPOUT:
    if (x->needs_grad)
      buf_printf(o, "    %s_backward(%s, %s, s->seed, s->step);\n", f, dx[0], dy);
    break;
  case OP_ADD:
    for (int j = 0; j < 2; j++) {
      if (!g->nodes[n->in[j]]->needs_grad)
        continue;
      Buffer *from = &g->bufs[buf_root(g, n->grad)], *to = &g->bufs[buf_root(g, g->nodes[n->in[j]]->grad)];
      if (!acc[j] && !from->external && !to->external && from->offset == to->offset)
        buf_printf(o, "    /* %s's gradient is %s's, in place */\n", g->nodes[n->in[j]]->name, n->name);
      else
        buf_printf(o, "    nncc_copy_team(%s, %s, %lld);\n", dx[j], dy, ll(node_numel(n)));
    }
    break;
  case OP_FLATTEN:
    if (x->needs_grad)
      buf_printf(o, "    nncc_copy_team(%s, %s, %lld);\n", dx[0], dy, ll(node_numel(n)));
    break;
  default:
    if (x->needs_grad)
      buf_printf(o, "    %s_backward(%s, %s);\n", f, dx[0], dy);
  }
  for (int j = 0; j < n->nin; j++)
    if (acc[j])
      add_tmp(E, n, j);
}

/* ---- kernel definitions ------------------------------------------------------ */

static void define_kernels(Emit *E, Node *n) {
  Graph *g = E->g;
  Buf *o = E->out;
  Node *x = n->nin ? g->nodes[n->in[0]] : NULL;
  char *f = fn_name(n);
  int line, col;
  loc_line_col(n->loc, &line, &col);
  buf_printf(o, "/* %s = %s%s(", n->name, op_name(n->op), n->relu ? "+relu" : "");
  for (int j = 0; j < n->nin; j++)
    buf_printf(o, "%s%s", j ? ", " : "", g->nodes[n->in[j]]->name);
  buf_printf(o, ")  %s:%d:%d%s%s\n *   ", n->loc.file->name, line, col, n->fused ? ", fused " : "",
             n->fused ? n->fused : "");
  for (int j = 0; j < n->nin; j++) {
    Node *in = g->nodes[n->in[j]];
    buf_printf(o, "%s%s %s", j ? ", " : "", in->name, dims_str(in->dims, in->rank));
  }
  buf_printf(o, " -> %s */\n", dims_str(n->dims, n->rank));

  int64_t N = n->dims[0], C = n->rank == 4 ? n->dims[1] : 0;
  int64_t Ho = n->rank == 4 ? n->dims[2] : 0, Wo = n->rank == 4 ? n->dims[3] : 0;
  int64_t Ci = x && x->rank == 4 ? x->dims[1] : 0;
  int64_t H = x && x->rank == 4 ? x->dims[2] : 0, W = x && x->rank == 4 ? x->dims[3] : 0;
  int64_t e = node_numel(n);
  char *conv_sizes = format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld", ll(N),
                            ll(Ci), ll(H), ll(W), ll(n->out), ll(n->kh), ll(n->kw), ll(n->sh),
                            ll(n->sw), ll(n->ph), ll(n->pw));
  char *pool_sizes = format("%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld", ll(N), ll(Ci),
                            ll(H), ll(W), ll(n->kh), ll(n->kw), ll(n->sh), ll(n->sw), ll(n->ph),
                            ll(n->pw));
  switch (n->op) {
  case OP_CONV2D:
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x, const float *restrict w,\n"
               "    const float *restrict b, void *scratch) {\n"
               "  nncc_conv2d_forward_team(y, x, w, b, scratch, %s, %d);\n}\n",
               f, conv_sizes, n->relu);
    buf_printf(o,
               "KERNEL void %s_backward(float *restrict dx, float *restrict dw, float *restrict db,\n"
               "    const float *restrict dy,%s const float *restrict x, const float *restrict w,\n"
               "    void *scratch) {\n"
               "  nncc_conv2d_backward_team(dx, dw, db, dy, %s, x, w, scratch, %s);\n}\n",
               f, n->relu ? " const float *restrict y /* the mask */," : "", n->relu ? "y" : "NULL", conv_sizes);
    buf_printf(o, "SCRATCH(%s, nncc_conv2d_forward_scratch(%s), nncc_conv2d_backward_scratch(%s))\n", f,
               conv_sizes, conv_sizes);
    break;
  case OP_LINEAR: {
    char *sz = format("%lld, %lld, %lld", ll(N), ll(x->dims[1]), ll(n->out));
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x, const float *restrict w,\n"
               "    const float *restrict b, void *scratch) {\n"
               "  nncc_linear_forward_team(y, x, w, b, scratch, %s, %d);\n}\n",
               f, sz, n->relu);
    buf_printf(o,
               "KERNEL void %s_backward(float *restrict dx, float *restrict dw, float *restrict db,\n"
               "    const float *restrict dy,%s const float *restrict x, const float *restrict w,\n"
               "    void *scratch) {\n"
               "  nncc_linear_backward_team(dx, dw, db, dy, %s, x, w, scratch, %s);\n}\n",
               f, n->relu ? " const float *restrict y /* the mask */," : "", n->relu ? "y" : "NULL", sz);
    buf_printf(o, "SCRATCH(%s, nncc_linear_forward_scratch(%s), nncc_linear_backward_scratch(%s))\n", f, sz,
               sz);
    break;
  }
  case OP_RELU: /* y may be x, dx may be dy: in place */
    buf_printf(o,
               "KERNEL void %s_forward(float *y, const float *x) {\n"
               "  nncc_relu_forward_team(y, x, %lld);\n}\n"
               "KERNEL void %s_backward(float *dx, const float *dy, const float *restrict y) {\n"
               "  nncc_relu_backward_team(dx, dy, y, %lld);\n}\n",
               f, ll(e), f, ll(e));
    break;
  case OP_MAXPOOL2D:
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
               "  nncc_maxpool2d_forward_team(y, x, %s);\n}\n"
               "KERNEL void %s_backward(float *restrict dx, const float *restrict dy, const float *restrict x) {\n"
               "  nncc_maxpool2d_backward_team(dx, dy, x, %s);\n}\n",
               f, pool_sizes, f, pool_sizes);
    break;
  case OP_AVGPOOL2D:
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
               "  nncc_avgpool2d_forward_team(y, x, %s);\n}\n"
               "KERNEL void %s_backward(float *restrict dx, const float *restrict dy) {\n"
               "  nncc_avgpool2d_backward_team(dx, dy, %s);\n}\n",
               f, pool_sizes, f, pool_sizes);
    break;
  case OP_ADAPTIVE_AVGPOOL2D: {
    char *sz = format("%lld, %lld, %lld, %lld, %lld", ll(N * C), ll(H), ll(W), ll(Ho), ll(Wo));
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x) {\n"
               "  nncc_adaptive_avgpool2d_forward_team(y, x, %s);\n}\n"
               "KERNEL void %s_backward(float *restrict dx, const float *restrict dy) {\n"
               "  nncc_adaptive_avgpool2d_backward_team(dx, dy, %s);\n}\n",
               f, sz, f, sz);
    break;
  }
  case OP_FLATTEN:
    buf_printf(o, "/* a copy when not a view: see forward() */\n");
    break;
  case OP_BATCHNORM2D: {
    char *sz = format("%lld, %lld, %lld", ll(N), ll(C), ll(Ho * Wo));
    buf_printf(o,
               "KERNEL void %s_forward(float *restrict y, const float *restrict x,\n"
               "    const float *restrict gamma, const float *restrict beta,\n"
               "    float *restrict running_mean, float *restrict running_var,\n"
               "    float *restrict num_batches_tracked, float *restrict stats,\n"
               "    int training) {\n"
               "  nncc_batchnorm2d_forward_team(y, x, gamma, beta, running_mean, running_var,\n"
               "                                num_batches_tracked, stats, %s, %s, %s, training);\n}\n",
               f, sz, real(n->eps, false), real(n->momentum, false));
    buf_printf(o,
               "KERNEL void %s_backward(float *restrict dx, float *restrict dgamma, float *restrict dbeta,\n"
               "    const float *restrict dy, const float *restrict x,\n"
               "    const float *restrict gamma, const float *restrict stats) {\n"
               "  nncc_batchnorm2d_backward_team(dx, dgamma, dbeta, dy, x, gamma, stats, %s);\n}\n",
               f, sz);
    break;
  }
  case OP_DROPOUT: {
    /* the mask's stream is named after the node, which no pass renames */
    uint64_t stream = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = n->name; *c; c++)
      stream = (stream ^ (unsigned char)*c) * 1099511628211ull;
    char *args = format("%lld, seed, step, %lluull, %uu /* p = %g */, %s", ll(e), (unsigned long long)stream,
                        (uint32_t)(n->p * 16777216.0), n->p, real(1.0 / (1.0 - n->p), true));
    buf_printf(o,
               "KERNEL void %s_forward(float *y, const float *x, uint64_t seed, uint64_t step, int training) {\n"
               "  nncc_dropout_forward_team(y, x, %s, training);\n}\n"
               "KERNEL void %s_backward(float *dx, const float *dy, uint64_t seed, uint64_t step) {\n"
               "  nncc_dropout_backward_team(dx, dy, %s);\n}\n",
               f, args, f, args);
    break;
  }
  case OP_ADD:
    buf_printf(o,
               "KERNEL void %s_forward(float *y, const float *a, const float *b) {\n"
               "  nncc_add_forward_team(y, a, b, %lld);\n}\n",
               f, ll(e));
    break;
  case OP_INPUT:
  case OP_LABEL:
  case OP_CROSS_ENTROPY:
  case OP_COUNT:
    ICE("no kernels for %s", op_name(n->op));
  }
  buf_puts(o, "\n");
}

/* ---- step functions -------------------------------------------------------- */

/* A step function: declarations of the arena buffers its body uses, then
 * the body inside one parallel region. */
static void emit_step(Emit *E, const char *head, Buf *body) {
  Graph *g = E->g;
  Buf *o = E->out;
  buf_printf(o, "%s", head);
  for (int b = 0; b < g->nbufs; b++) {
    if (!E->used[b])
      continue;
    Buffer *buf = &g->bufs[b];
    char *what = "gradient contributions to add up";
    if (buf->node >= 0) {
      Node *n = g->nodes[buf->node];
      what = buf->kind == BUF_AUX ? format("[2,%lld]: mean, 1/std", ll(n->dims[1]))
                                  : dims_str(n->dims, n->rank);
    }
    buf_printf(o, "  float *%s = (float *)(A + %lld); /* %s */\n", buf->name, ll(buf->offset), what);
  }
  buf_printf(o, "  void *scratch = A + ARENA_BYTES;\n#pragma omp parallel\n  {\n%s  }\n}\n\n",
             body->data ? body->data : "");
}

static bool is_view(Graph *g, Node *n) {
  return n->op == OP_FLATTEN && buf_root(g, n->act) == buf_root(g, g->nodes[n->in[0]]->act);
}

/*
 * forward() walks the nodes in order, backward() in reverse over the nodes a
 * parameter's gradient flows through; either way one node call after another
 * with a barrier between them (a view has no code, so no barrier).
 */
static void emit_pass(Emit *E, bool backward, const char *head) {
  Graph *g = E->g;
  Buf body = {0}, *saved = E->out;
  memset(E->used, 0, sizeof(bool) * (size_t)g->nbufs);
  memset(E->written, 0, sizeof(bool) * (size_t)g->nbufs);
  E->out = &body;
  bool first = true;
  for (int k = 0; k < g->nnodes; k++) {
    Node *n = g->nodes[backward ? g->nnodes - 1 - k : k];
    if (!node_has_kernels(n) || (backward && !n->needs_grad))
      continue;
    if (!first && !is_view(g, n))
      buf_puts(&body, "#pragma omp barrier\n");
    first = false;
    if (backward)
      call_backward(E, n);
    else
      call_forward(E, n);
    if (!is_view(g, n)) /* costs one branch unless the runtime checks numerics */
      buf_printf(&body, "    if (s->check) s->check(s, %d, %s);\n", E->row[n->id],
                 backward ? "NNCC_BACKWARD" : "NNCC_FORWARD");
  }
  E->out = saved;
  emit_step(E, head, &body);
  buf_free(&body);
}

/* ---- the node table ------------------------------------------------------------ */

/* Where buffer b lies, as an NnccSpan initializer of numel floats. */
static char *span(Graph *g, int b, int64_t numel) {
  Buffer *buf = &g->bufs[buf_root(g, b)];
  if (!buf->external)
    return format("{NNCC_ARENA, %lld, %lld}", ll(buf->offset), ll(numel));
  const char *where = strcmp(buf->external, "s->input") == 0    ? "NNCC_INPUT"
                      : strcmp(buf->external, "s->logits") == 0 ? "NNCC_LOGITS"
                      : strcmp(buf->external, "s->dlogits") == 0 ? "NNCC_DLOGITS"
                                                                  : NULL;
  if (!where)
    ICE("buffer %s: unknown external %s", buf->name, buf->external);
  return format("{%s, 0, %lld}", where, ll(numel));
}

/*
 * nodes[]: per node with kernels, its name, op and source position, where
 * its output lies after forward() ran it and where the gradients of its
 * inputs lie after backward() ran it (the plan reuses memory, so only
 * then), and its rows of params[].  The runtime's numerics check reads it.
 */
static void emit_nodes(Emit *E) {
  Graph *g = E->g;
  Buf *o = E->out;
  int param = 0;
  buf_puts(o, "/* name, op, source; output after forward; inputs and their gradients after\n"
              " * backward (arena offsets in bytes); rows of params[]: for the numerics check */\n"
              "static const NnccNode nodes[] = {\n");
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (!node_has_kernels(n)) {
      param += n->nparams;
      continue;
    }
    int line, col;
    loc_line_col(n->loc, &line, &col);
    buf_printf(o, "    {\"%s\", \"%s%s\", \"%s:%d:%d\", %s,\n     {", n->name, op_name(n->op),
               n->relu ? "+relu" : "", n->loc.file->name, line, col, span(g, n->act, node_numel(n)));
    for (int j = 0; j < 2; j++)
      buf_printf(o, "%s%s%s%s", j ? ", " : "", j < n->nin ? "\"" : "",
                 j < n->nin ? g->nodes[n->in[j]]->name : "NULL", j < n->nin ? "\"" : "");
    buf_puts(o, "}, {");
    for (int j = 0; j < 2; j++) {
      Node *x = j < n->nin ? g->nodes[n->in[j]] : NULL;
      bool computed = x && n->needs_grad && x->needs_grad && !is_view(g, n);
      buf_printf(o, "%s%s", j ? ", " : "",
                 computed ? span(g, x->grad, node_numel(x)) : "{NNCC_NOWHERE, 0, 0}");
    }
    buf_printf(o, "}, %d, %d},\n", param, n->nparams);
    param += n->nparams;
  }
  buf_puts(o, "};\n\n");
}

/* ---- the file ---------------------------------------------------------------- */

static const char *init_name(int init) {
  return init == INIT_UNIFORM ? "NNCC_INIT_UNIFORM" : init == INIT_ONES ? "NNCC_INIT_ONES" : "NNCC_INIT_ZEROS";
}

static const char *kind_name(ParamKind k) {
  return k == P_WEIGHT ? "NNCC_PARAM" : k == P_BUFFER ? "NNCC_BUFFER" : "NNCC_BUFFER_COUNT";
}

void emit_c(Graph *g, Buf *out) {
  if (!g->planned)
    ICE("emit_c needs a planned graph");
  Emit E = {.g = g, .out = out};
  E.used = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  E.written = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  E.row = xalloc(sizeof(int) * (size_t)g->nnodes);
  int nrows = 0;
  for (int i = 0; i < g->nnodes; i++)
    E.row[i] = node_has_kernels(g->nodes[i]) ? nrows++ : -1;
  Node *x = g->nodes[g->input], *y = g->nodes[g->label];

  /* parameters, each 64-byte aligned in the block */
  E.param_off = xalloc(sizeof(int64_t) * (size_t)g->nnodes * MAX_PARAMS);
  int64_t floats = 0, nparams = 0, count = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nparams; k++) {
      E.param_off[i * MAX_PARAMS + k] = floats;
      floats += (g->nodes[i]->params[k].numel + 15) / 16 * 16;
      nparams++;
      if (g->nodes[i]->params[k].kind == P_WEIGHT)
        count += g->nodes[i]->params[k].numel;
    }

  buf_printf(out,
             "/*\n"
             " * %s.c -- a trainer for model %s, generated by nncc %s from %s.\n"
             " * Do not edit: change the model and run nncc again.\n"
             " *\n"
             " * Build: make -C generated %s\n"
             " *   (cc -std=c11 -O3 -march=native -fopenmp -ffp-contract=off -Iruntime %s.c\n"
             " *    runtime/{cli,train,...}.c -lz -lm)\n"
             " * Train: %s train --data data/mnist\n"
             " *\n"
             " * Input %s %s, labels %s %s; %s parameters;\n"
             " * activation arena %s bytes (+ kernel scratch).\n"
             " */\n"
             "#include \"nncc_kernels.h\"\n"
             "#include \"nncc_rt.h\"\n\n"
             "#include <math.h>\n#include <string.h>\n\n"
             "/* the kernels below are called inside forward()'s and backward()'s parallel\n"
             " * regions, by every thread: inlined, their sizes become constants; a backward\n"
             " * kernel no gradient needs (an op reading the input) is simply not called */\n"
             "#define KERNEL static inline __attribute__((always_inline, unused))\n\n",
             g->name, g->name, NNCC_VERSION, g->file->name, g->name, g->name, g->name, x->name,
             type_str(x), y->name, type_str(y), fmt_count(count), fmt_count(g->arena_bytes));

  /* size_t, not enum constants: the limits (nncc.h) allow more than INT_MAX */
  buf_printf(out, "#define PARAMS_FLOATS ((size_t)%lld)\n#define ARENA_BYTES ((size_t)%lld)\n\n",
             ll(floats), ll(g->arena_bytes));
  buf_puts(out, "static const NnccParam params[] = {\n");
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nparams; k++) {
      Param *p = &g->nodes[i]->params[k];
      buf_printf(out, "    {\"%s\", %s, %d, {", p->name, kind_name(p->kind), p->rank);
      for (int d = 0; d < p->rank; d++)
        buf_printf(out, "%s%lld", d ? ", " : "", ll(p->dims[d]));
      buf_printf(out, "}, %lld, %lld, %s, %s},\n", ll(p->numel), ll(E.param_off[i * MAX_PARAMS + k]),
                 init_name(p->init), real(p->bound, true));
    }
  buf_puts(out, "};\n\n");

  buf_puts(out,
           "/* kernel scratch: one region after the arena, as large as the largest need */\n"
           "static size_t scratch_bytes;\n"
           "#define SCRATCH(node, fwd, bwd)                                   \\\n"
           "  static void node##_scratch(void) {                              \\\n"
           "    size_t f = (fwd), b = (bwd);                                  \\\n"
           "    if (f > scratch_bytes) scratch_bytes = f;                     \\\n"
           "    if (b > scratch_bytes) scratch_bytes = b;                     \\\n"
           "  }\n\n");

  for (int i = 0; i < g->nnodes; i++)
    if (node_has_kernels(g->nodes[i]))
      define_kernels(&E, g->nodes[i]);
  emit_pass(&E, false,
            "/* input -> logits.  training: batch statistics and dropout; else running\n"
            " * statistics and no dropout. */\n"
            "static void forward(NnccState *s, int training) {\n"
            "  float *P = s->params;\n  unsigned char *A = s->arena;\n  (void)P, (void)training;\n");
  emit_pass(&E, true,
            "/* dlogits -> the gradient of every parameter (overwritten, not accumulated). */\n"
            "static void backward(NnccState *s) {\n"
            "  float *P = s->params, *G = s->grads;\n  unsigned char *A = s->arena;\n"
            "  (void)P, (void)G;\n");

  emit_nodes(&E);

  const TrainCfg *t = &g->train;
  buf_puts(out, "static NnccModel model = {\n");
  buf_printf(out, "    .abi = NNCC_RT_ABI,\n    .name = \"%s\",\n    .source = \"%s\",\n"
                  "    .nncc_version = \"%s\",\n",
             g->name, g->file->name, NNCC_VERSION);
  buf_printf(out, "    .batch = %lld,\n    .in_c = %lld, .in_h = %lld, .in_w = %lld,\n"
                  "    .pad_top = %lld, .pad_left = %lld,\n    .classes = %lld,\n",
             ll(x->dims[0]), ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]), ll(g->pad), ll(g->pad),
             ll(y->classes));
  buf_printf(out, "    .nparams = %lld,\n    .params = params,\n    .params_floats = PARAMS_FLOATS,\n",
             ll(nparams));
  buf_printf(out, "    .defaults = {.optim = %s, .lr = %s, .beta1 = %s, .beta2 = %s, .eps = %s,\n"
                  "                 .weight_decay = %s, .momentum = %s, .epochs = %lld, .seed = %lld},\n",
             t->optim == OPT_ADAM ? "NNCC_ADAM" : "NNCC_SGD", real(t->lr, false), real(t->beta1, false),
             real(t->beta2, false), real(t->eps, false), real(t->weight_decay, false),
             real(t->momentum, false), ll(t->epochs), ll(t->seed));
  buf_printf(out, "    .forward = forward,\n    .backward = backward,\n"
                  "    .nnodes = %d,\n    .nodes = nodes,\n};\n\n", nrows);

  buf_puts(out, "/* The model, its arena sized: the plan plus the largest kernel scratch. */\n"
                "const NnccModel *nncc_model(void) {\n");
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->op == OP_CONV2D || n->op == OP_LINEAR)
      buf_printf(out, "  %s_scratch();\n", fn_name(n));
  }
  buf_puts(out, "  model.arena_bytes = ARENA_BYTES + scratch_bytes;\n"
                "  return &model;\n}\n\n"
                "#ifndef NNCC_NO_MAIN\n"
                "int main(int argc, char **argv) { return nncc_main(argc, argv, nncc_model()); }\n"
                "#endif\n");
}
