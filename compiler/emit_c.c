/*
 * emit_c.c -- the back end: a planned graph -> one C file that trains it.
 *
 * The file has a kernel pair per node, <node>_forward and <node>_backward,
 * with every size a literal, then forward() and backward(), which call them
 * in order inside one OpenMP parallel region each (a barrier between
 * nodes, and a call of the runtime's numerics check when it asks for one),
 * nodes[] (where each node's results lie, for that check) and the NnccModel
 * that hands them to the runtime's nncc_main().
 * What each op emits is its descriptor's (compiler/ops/); this file walks
 * the graph, decides where each gradient goes, and writes the frame.
 *
 * Everything is a pure function of the graph: the same .nn gives the same
 * bytes.
 */
#include "nncc.h"

#include <stdlib.h>
#include <string.h>

struct Emit {
  Graph *g;
  Buf *out;
  bool *used;      /* arena buffers the current step function touches */
  bool *written;   /* backward: gradients already holding a contribution */
  int *row;        /* node id -> its row of nodes[] (the nodes with kernels), -1 */
  int step;        /* the step being emitted (plan.c's schedule) */
  const bool *in_place; /* backward: input j's gradient is the node's, in place */
};

long long ll(int64_t v) { return (long long)v; }

/* The shortest decimal that reads back as v, always with a '.' or an
 * exponent so that C sees a floating constant: 0.1, 1e-05, 2.0 */
void emit_real_to(char out[EMIT_REAL_MAX], double v, bool as_float) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, EMIT_REAL_MAX - 3, "%.*g", prec, v);
    if (as_float ? strtof(out, NULL) == (float)v : strtod(out, NULL) == v) /* as C reads it */
      break;
  }
  if (!strpbrk(out, ".en"))
    strcat(out, ".0");
  if (as_float)
    strcat(out, "f");
}

char *emit_real(double v, bool as_float) {
  char s[EMIT_REAL_MAX];
  emit_real_to(s, v, as_float);
  return xstrdup(s);
}

/* ---- names and pointers ---------------------------------------------------- */

Buf *emit_out(Emit *E) { return E->out; }
Node *emit_in(Emit *E, const Node *n, int j) { return E->g->nodes[n->in[j]]; }
bool emit_needed(const char *dx) { return strcmp(dx, "NULL") != 0; }

/* The C expression for buffer b inside a step function.  The plan must
 * keep b alive at the step being emitted: liveness and the emitters both
 * read what backward needs from the op table, and this is where the two
 * are held to agree. */
static const char *ptr(Emit *E, int b) {
  Graph *g = E->g;
  if (b < 0)
    ICE("a tensor with no buffer is used at step %d", E->step);
  b = buf_root(g, b);
  if (g->bufs[b].external)
    return g->bufs[b].external;
  if (E->step < g->bufs[b].first || E->step > g->bufs[b].last)
    ICE("%s is used at step %d but lives only at steps %d..%d", g->bufs[b].name, E->step,
        g->bufs[b].first, g->bufs[b].last);
  E->used[b] = true;
  return g->bufs[b].name;
}

const char *emit_act(Emit *E, const Node *n) { return ptr(E, n->act); }
const char *emit_grad(Emit *E, const Node *n) { return ptr(E, n->grad); }
const char *emit_aux(Emit *E, const Node *n) { return ptr(E, n->aux); }
const char *emit_work(Emit *E, const Node *n) { return ptr(E, n->work); }

char *emit_fn(const Node *n) {
  char *s = xstrdup(n->name);
  for (char *p = s; *p; p++)
    if (*p == '.')
      *p = '_';
  return s;
}

/* The node's k-th parameter (or its gradient) as a C expression into P or G. */
const char *emit_param(Emit *E, const Node *n, int k) {
  (void)E;
  return format("P + %lld /* %s */", ll(n->params[k].offset), n->params[k].name);
}
const char *emit_param_grad(Emit *E, const Node *n, int k) {
  (void)E;
  return format("G + %lld /* %s */", ll(n->params[k].offset), n->params[k].name);
}

char *emit_act_args(const Node *n) {
  if (!n->epilogue)
    return "NNCC_ACT_NONE, 0.0f";
  const OpDesc *d = node_desc(n->epilogue);
  return format("%s, %s", d->act_code, emit_real(d->act_alpha ? d->act_alpha(n->epilogue) : 0, true));
}

char *emit_bwd_act(const Node *n) { return node_bwd_gates(n) ? emit_act_args(n) : "NNCC_ACT_NONE, 0.0f"; }

char *emit_bwd_act_args(Emit *E, const Node *n) { return format(", %s, %s", emit_bwd_act(n), emit_group(E)); }

const char *emit_mask_param(const Node *n) {
  return node_bwd_gates(n) ? " const float *restrict y /* the mask */," : "";
}

const char *emit_mask_arg(const Node *n) { return node_bwd_gates(n) ? "y" : "NULL"; }

const char *emit_mask_ref(Emit *E, const Node *n) {
  return node_bwd_gates(n) ? format("%s, ", emit_act(E, n)) : "";
}

/* The batch's group size: its sums are taken in groups of that many images
 * (nncc_kernels.h, "batch reductions"; ranks_pass). */
const Graph *emit_graph(Emit *E) { return E->g; }

char *emit_group(Emit *E) { return format("%lld", ll(E->g->batch / E->g->groups)); }

void emit_static_assert(Emit *E, const Node *n, const char *rows, const char *cols) {
  if (strcmp(rows, cols) == 0)
    buf_printf(E->out, "_Static_assert(%s, \"%s: output size\");\n", rows, n->name);
  else
    buf_printf(E->out, "_Static_assert(%s &&\n               %s, \"%s: output size\");\n", rows, cols,
               n->name);
}

bool emit_grad_in_place(Emit *E, const Node *n, int j) { (void)n; return E->in_place && E->in_place[j]; }

void emit_forward_unary(Emit *E, Node *n) {
  buf_printf(E->out, "    %s_forward(%s, %s);\n", emit_fn(n), emit_act(E, n), emit_act(E, emit_in(E, n, 0)));
}

void emit_backward_unary(Emit *E, Node *n, const char *const *dx) {
  if (!emit_needed(dx[0]))
    return;
  int saves = node_saves(n);
  buf_printf(E->out, "    %s_backward(%s, %s", emit_fn(n), dx[0], emit_grad(E, n));
  if (saves & SAVES_IN)
    buf_printf(E->out, ", %s", emit_act(E, emit_in(E, n, 0)));
  if (saves & SAVES_OUT)
    buf_printf(E->out, ", %s", emit_act(E, n));
  buf_puts(E->out, ");\n");
}

/* ---- backward: where the gradients go ------------------------------------- */

/* Where the gradient for input j of n goes: straight into the input's
 * gradient if this is its first contribution, else into grad_tmp (then added). */
static const char *grad_target(Emit *E, Node *n, int j, bool *accumulate) {
  Node *x = emit_in(E, n, j);
  int b = buf_root(E->g, x->grad);
  *accumulate = E->written[b];
  E->written[b] = true;
  return *accumulate ? ptr(E, E->g->tmp) : ptr(E, x->grad);
}

static void add_tmp(Emit *E, Node *n, int j) {
  Node *x = emit_in(E, n, j);
  buf_printf(E->out, "#pragma omp barrier\n    nncc_accumulate_team(%s, %s, %lld);\n", ptr(E, x->grad),
             ptr(E, E->g->tmp), ll(node_numel(x)));
}

/* Does input j's gradient go straight into memory that n's own gradient
 * occupies (an in-place pair of the plan)? */
static bool same_memory(Emit *E, Node *n, int j) {
  Graph *g = E->g;
  Buffer *from = &g->bufs[buf_root(g, n->grad)], *to = &g->bufs[buf_root(g, emit_in(E, n, j)->grad)];
  return !from->external && !to->external && from->offset == to->offset;
}

/*
 * Backward of n: the gradients of its inputs and parameters from its own.
 * An input's gradient goes into its buffer on its first contribution and
 * through grad_tmp after that.  grad_tmp holds one contribution at a time,
 * so when several inputs of n add to earlier contributions, the op's
 * backward runs once per such input, each time asked for that one alone.
 */
static void call_backward(Emit *E, Node *n) {
  const OpDesc *d = node_desc(n);
  int nin = n->nin;
  const char **dx = xalloc(sizeof(char *) * (size_t)nin);
  bool *acc = xalloc(sizeof(bool) * (size_t)nin), *in_place = xalloc(sizeof(bool) * (size_t)nin);
  int first_acc = -1;
  for (int j = 0; j < nin; j++) {
    dx[j] = "NULL";
    if (!emit_in(E, n, j)->needs_grad)
      continue;
    const char *t = grad_target(E, n, j, &acc[j]);
    if (acc[j] && first_acc >= 0)
      continue; /* a later round */
    if (acc[j])
      first_acc = j;
    dx[j] = t;
    in_place[j] = !acc[j] && same_memory(E, n, j);
  }
  E->in_place = in_place;
  d->backward(E, n, dx);
  if (first_acc >= 0)
    add_tmp(E, n, first_acc);
  for (int j = first_acc + 1; first_acc >= 0 && j < nin; j++) {
    if (!acc[j])
      continue;
    if (n->nparams)
      ICE("%s: two inputs add to earlier gradients and the op has parameters", n->name);
    for (int k = 0; k < nin; k++)
      dx[k] = k == j ? ptr(E, E->g->tmp) : "NULL";
    memset(in_place, 0, sizeof(bool) * (size_t)nin);
    buf_puts(E->out, "#pragma omp barrier\n");
    d->backward(E, n, dx);
    add_tmp(E, n, j);
  }
  E->in_place = NULL;
}

/* ---- kernel definitions ------------------------------------------------------ */

static void define_kernels(Emit *E, Node *n) {
  Graph *g = E->g;
  Buf *o = E->out;
  int line, col;
  loc_line_col(n->loc, &line, &col);
  buf_printf(o, "/* %s = %s%s%s(", n->name, op_name(n->op), n->epilogue ? "+" : "",
             n->epilogue ? op_name(n->epilogue->op) : "");
  for (int j = 0; j < n->nin; j++)
    buf_printf(o, "%s%s", j ? ", " : "", g->nodes[n->in[j]]->name);
  buf_printf(o, ")  %s:%d:%d%s%s\n *   ", n->loc.file->name, line, col, n->epilogue ? ", fused " : "",
             n->epilogue ? n->epilogue->name : "");
  for (int j = 0; j < n->nin; j++) {
    Node *in = g->nodes[n->in[j]];
    buf_printf(o, "%s%s %s", j ? ", " : "", in->name, dims_str(in->dims, in->rank));
  }
  buf_printf(o, " -> %s */\n", dims_str(n->dims, n->rank));
  node_desc(n)->define_kernels(E, n);
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
    buf_printf(o, "  float *%s = (float *)(A + %lld); /* %s */\n", buf->name, ll(buf->offset), buf->what);
  }
  buf_printf(o,
             "  void *scratch = A + ARENA_BYTES;\n"
             "#pragma omp parallel num_threads(s->threads > 0 ? s->threads : 1)\n  {\n%s  }\n}\n\n",
             body->data ? body->data : "");
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
    bool view = node_is_view(g, n);
    /* a max pool whose input's forward computed it in its epilogue */
    const Node *by = !backward && n->nin ? emit_in(E, n, 0) : NULL;
    bool folded = by && by->pool_for == n;
    if (!first && !view && !folded)
      buf_puts(&body, "#pragma omp barrier\n");
    first = false;
    E->step = backward ? step_backward(g, n) : step_forward(g, n);
    if (folded)
      buf_printf(&body, "    /* %s: computed in %s's epilogue */\n", n->name, by->name);
    else if (view && backward)
      buf_printf(&body, "    /* %s: a view, its gradient is d_%s's */\n", n->name, emit_fn(emit_in(E, n, 0)));
    else if (view)
      buf_printf(&body, "    /* %s: a view of %s */\n", n->name, emit_in(E, n, 0)->name);
    else if (backward)
      call_backward(E, n);
    else
      node_desc(n)->forward(E, n);
    if (!view) /* costs one branch unless the runtime checks numerics */
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
    buf_printf(o, "    {\"%s\", \"%s%s%s\", \"%s:%d:%d\", %s,\n     %d, (const char *const[]){",
               n->name, op_name(n->op), n->epilogue ? "+" : "", n->epilogue ? op_name(n->epilogue->op) : "",
               n->loc.file->name, line, col, span(g, n->act, node_numel(n)), n->nin);
    for (int j = 0; j < n->nin; j++)
      buf_printf(o, "%s\"%s\"", j ? ", " : "", g->nodes[n->in[j]]->name);
    buf_puts(o, "},\n     (const NnccSpan[]){");
    for (int j = 0; j < n->nin; j++) {
      Node *x = g->nodes[n->in[j]];
      bool computed = n->needs_grad && x->needs_grad && !node_is_view(g, n);
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
  Emit E = {.g = g, .out = out, .step = -1};
  E.used = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  E.written = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  E.row = xalloc(sizeof(int) * (size_t)g->nnodes);
  int nrows = 0;
  for (int i = 0; i < g->nnodes; i++)
    E.row[i] = node_has_kernels(g->nodes[i]) ? nrows++ : -1;
  Node *x = g->nodes[g->input], *y = g->nodes[g->label];

  int64_t nparams = 0, count = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nparams; k++) {
      nparams++;
      if (g->nodes[i]->params[k].kind == P_WEIGHT)
        count += g->nodes[i]->params[k].numel;
    }

  buf_printf(out,
             "/*\n"
             " * %s.c -- a trainer for model %s, generated by nncc %s from %s.\n"
             " * Do not edit: change the model and run nncc again.\n"
             " *\n"
             " * Build with the installed runtime (its flags are part of the same-bits\n"
             " * promise), or in nncc's source tree with make -C generated %s:\n"
             " *   cc -O3 -march=native $(pkg-config --cflags nncc-runtime) %s.c \\\n"
             " *      $(pkg-config --libs nncc-runtime) -o %s\n"
             " * Train: %s train --data data/mnist\n"
             " *\n"
             " * Input %s %s, labels %s %s; %s parameters;\n"
             " * activation arena %s bytes (+ kernel scratch).\n"
             " */\n"
             "#include \"nncc_kernels.h\"\n"
             "#include \"nncc_rt.h\"\n\n"
             "#if NNCC_RT_ABI != %d\n"
             "#error \"this trainer was generated by nncc %s for runtime ABI %d, and this nncc_rt.h is another: regenerate it with the nncc of this runtime\"\n"
             "#endif\n\n"
             "#include <math.h>\n#include <string.h>\n\n"
             "%s"
             "/* the kernels below are called inside forward()'s and backward()'s parallel\n"
             " * regions, by every thread; each is its own function, with its sizes as\n"
             " * constants (an optimizer compiles many small functions much faster than\n"
             " * one huge one); a backward kernel no gradient needs (an op reading the\n"
             " * input) is simply not called */\n"
             "#define KERNEL static __attribute__((noinline, unused))\n\n",
             g->name, g->name, NNCC_VERSION, g->file->name, g->name, g->name, g->name, g->name,
             x->name, type_str(x), y->name, type_str(y), fmt_count(count), fmt_count(g->arena_bytes),
             NNCC_RT_ABI, NNCC_VERSION, NNCC_RT_ABI,
             g->ranks == 1 ? ""
             : format("/* Data parallel (nncc --ranks %d): each of %d MPI ranks trains %lld images\n"
                      " * of every batch of %lld.  make -C generated %s builds it with mpicc and\n"
                      " * the runtime's MPI layer; run it with mpirun -np %d %s train ... */\n"
                      "#define NNCC_MODEL_RANKS %d\n\n",
                      g->ranks, g->ranks, ll(x->dims[0]), ll(g->batch), g->name, g->ranks, g->name,
                      g->ranks));

  /* size_t, not enum constants: the limits (nncc.h) allow more than INT_MAX */
  buf_printf(out, "#define PARAMS_FLOATS ((size_t)%lld)\n#define ARENA_BYTES ((size_t)%lld)\n\n",
             ll(g->params_floats), ll(g->arena_bytes));
  buf_puts(out, "static const NnccParam params[] = {\n");
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nparams; k++) {
      Param *p = &g->nodes[i]->params[k];
      buf_printf(out, "    {\"%s\", %s, %d, {", p->name, kind_name(p->kind), p->rank);
      for (int d = 0; d < p->rank; d++)
        buf_printf(out, "%s%lld", d ? ", " : "", ll(p->dims[d]));
      bool synced = p->kind == P_WEIGHT && (node_desc(g->nodes[i])->flags & OPF_SYNCED);
      buf_printf(out, "}, %lld, %lld, %s, %s, %d},\n", ll(p->numel), ll(p->offset),
                 init_name(p->init), emit_real(p->bound, true), synced);
    }
  buf_puts(out, "};\n\n");

  buf_puts(out,
           "/* kernel scratch: one region after the arena, as large as the largest\n"
           " * need of a node's kernels run by a team of t threads */\n"
           "#define SCRATCH(node, fwd, bwd)                                   \\\n"
           "  static size_t node##_scratch(int t) {                           \\\n"
           "    size_t f = (fwd), b = (bwd);                                  \\\n"
           "    (void)t;                                                      \\\n"
           "    return f > b ? f : b;                                         \\\n"
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

  buf_puts(out, "/* The kernel scratch after the arena, for a team of t threads. */\n"
                "static size_t scratch_bytes(int t) {\n  const size_t need[] = {");
  int nscratch = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (node_desc(g->nodes[i])->flags & OPF_SCRATCH)
      buf_printf(out, "%s%s_scratch(t)", nscratch++ ? ", " : "", emit_fn(g->nodes[i]));
  buf_printf(out, "%s};\n  size_t most = 0;\n"
                  "  for (size_t i = 0; i < sizeof need / sizeof *need; i++)\n"
                  "    if (need[i] > most) most = need[i];\n"
                  "  %sreturn most;\n}\n\n",
             nscratch ? "" : "0", nscratch ? "" : "(void)t;\n  ");

  const TrainCfg *t = &g->train;
  buf_puts(out, "static NnccModel model = {\n");
  buf_printf(out, "    .abi = NNCC_RT_ABI,\n    .name = \"%s\",\n    .source = \"%s\",\n"
                  "    .nncc_version = \"%s\",\n",
             g->name, g->file->name, NNCC_VERSION);
  buf_printf(out, "    .batch = %lld,\n    .in_c = %lld, .in_h = %lld, .in_w = %lld,\n"
                  "    .pad_top = %lld, .pad_left = %lld, .pad_bottom = %lld, .pad_right = %lld,\n"
                  "    .classes = %lld,\n",
             ll(x->dims[0]), ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]), ll(g->pad_top),
             ll(g->pad_left), ll(x->dims[2] - 28 - g->pad_top), ll(x->dims[3] - 28 - g->pad_left),
             ll(y->classes));
  buf_printf(out, "    .nparams = %lld,\n    .params = params,\n    .params_floats = PARAMS_FLOATS,\n",
             ll(nparams));
  buf_printf(out, "    .defaults = {.optim = %s, .lr = %s, .beta1 = %s, .beta2 = %s, .eps = %s,\n"
                  "                 .weight_decay = %s, .momentum = %s, .epochs = %lld, .seed = %lld",
             t->optim == OPT_ADAM ? "NNCC_ADAM" : t->optim == OPT_ADAMW ? "NNCC_ADAMW" : "NNCC_SGD",
             emit_real(t->lr, false), emit_real(t->beta1, false),
             emit_real(t->beta2, false), emit_real(t->eps, false), emit_real(t->weight_decay, false),
             emit_real(t->momentum, false), ll(t->epochs), ll(t->seed));
  if (t->nesterov)
    buf_puts(out, ",\n                 .nesterov = 1");
  if (t->clip_grad_norm > 0)
    buf_printf(out, ",\n                 .clip_grad_norm = %s", emit_real(t->clip_grad_norm, false));
  if (t->clip_grad_value > 0)
    buf_printf(out, ",\n                 .clip_grad_value = %s", emit_real(t->clip_grad_value, false));
  /* schedule texts: letters, digits, "_=.,[]()+- " only (schedule.c's form) */
  if (t->schedule)
    buf_printf(out, ",\n                 .schedule = \"%s\"", t->schedule);
  if (t->warmup)
    buf_printf(out, ",\n                 .warmup = \"%s\"", t->warmup);
  buf_puts(out, "},\n");
  for (int i = 0; i < g->nnodes; i++)
    if (node_desc(g->nodes[i])->model_fields)
      node_desc(g->nodes[i])->model_fields(&E, g->nodes[i]);
  buf_printf(out, "    .forward = forward,\n    .backward = backward,\n"
                  "    .nnodes = %d,\n    .nodes = nodes,\n"
                  "    .arena_bytes = ARENA_BYTES,\n    .scratch_bytes = scratch_bytes,\n",
             nrows);
  if (g->aug_crop || g->aug_hflip) /* mnist(crop_padding=, hflip=): training only */
    buf_printf(out, "    .augment_crop = %lld,\n    .augment_hflip = %d,\n", ll(g->aug_crop), g->aug_hflip);
  buf_printf(out, "    .ranks = %d,\n    .groups = %d,\n", g->ranks, g->groups);
  buf_puts(out, "};\n\n");

  buf_puts(out, "/* The model, and whether this file was built fusing multiply-adds (refused). */\n"
                "const NnccModel *nncc_model(void) {\n"
                "  model.fp_contract = nncc_fp_contracts();\n"
                "  return &model;\n}\n\n"
                "#ifndef NNCC_NO_MAIN\n"
                "int main(int argc, char **argv) { return nncc_main(argc, argv, nncc_model()); }\n"
                "#endif\n");
}
