/*
 * ir.c -- the graph IR: builders, costs, the verifier and the dumps.
 *
 * A Graph is a list of nodes in topological order (every input id is
 * smaller than the node's own id).  A node is one operator application
 * with its attributes, its static type, its parameters and the source
 * span it came from.
 */
#include "nncc.h"

#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(e, name, abbrev, nin, saves, inplace, sig) {name, abbrev, nin, saves, inplace, sig},
#include "ops.def"
#undef OP
};

const char *op_name(OpKind op) {
  if (op == OP_INPUT)
    return "input";
  if (op == OP_LABEL)
    return "label";
  return op_info[op].name;
}

Graph *graph_new(SrcFile *file) {
  Graph *g = xalloc(sizeof *g);
  g->file = file;
  g->input = g->label = g->loss = -1;
  g->train = (TrainCfg){.optim = OPT_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1e-8, .epochs = 1, .seed = 0};
  return g;
}

Node *graph_add(Graph *g, OpKind op, Loc loc, CallSite *site) {
  Node *n = xalloc(sizeof *n);
  n->op = op;
  n->loc = loc;
  n->site = site;
  graph_push(g, n);
  return n;
}

void graph_push(Graph *g, Node *n) {
  n->id = g->nnodes;
  VEC_PUSH(g->nodes, g->nnodes, g->cap, n);
}

/* Remove the nodes marked dead; ids stay dense and inputs follow. */
void graph_compact(Graph *g) {
  int *map = xalloc(sizeof(int) * (size_t)g->nnodes);
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    map[i] = g->nodes[i]->dead ? -1 : n;
    if (!g->nodes[i]->dead)
      g->nodes[n++] = g->nodes[i];
  }
  g->nnodes = n;
  for (int i = 0; i < n; i++) {
    Node *node = g->nodes[i];
    node->id = i;
    for (int j = 0; j < node->nin; j++) {
      if (map[node->in[j]] < 0)
        ICE("%s reads a removed node", node->name);
      node->in[j] = map[node->in[j]];
    }
  }
  g->input = map[g->input];
  g->label = map[g->label];
  g->loss = map[g->loss];
  ir_count_users(g);
}

int64_t node_numel(const Node *n) {
  int64_t e = 1;
  for (int i = 0; i < n->rank; i++)
    e *= n->dims[i];
  return e;
}

char *dims_str(const int64_t *dims, int rank) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int i = 0; i < rank; i++)
    buf_printf(&b, "%s%lld", i ? "," : "", (long long)dims[i]);
  buf_puts(&b, "]");
  char *s = xstrdup(b.data);
  buf_free(&b);
  return s;
}

char *type_str(const Node *n) {
  if (n->dtype == DT_UNKNOWN)
    return "?";
  if (n->dtype == DT_CLASS)
    return format("class%s of %lld", dims_str(n->dims, n->rank), (long long)n->classes);
  return format("f32%s", dims_str(n->dims, n->rank));
}

int64_t node_params(const Node *n) {
  int64_t total = 0;
  for (int i = 0; i < n->nparams; i++)
    if (n->params[i].kind == P_WEIGHT)
      total += n->params[i].numel;
  return total;
}

/*
 * FLOPs, counting a multiply-add as 2 (see docs/language.md):
 * conv/linear are their multiply-adds plus bias adds; elementwise ops one
 * per element; pooling one per window element; batchnorm 7 per element
 * forward (mean, variance, normalize, scale, shift), 10 backward.
 */
static int64_t conv_macs(const Graph *g, const Node *n) {
  const Node *x = g->nodes[n->in[0]];
  return node_numel(n) * x->dims[1] * n->kh * n->kw;
}

int64_t node_flops_fwd(const Graph *g, const Node *n) {
  if (n->dtype == DT_UNKNOWN)
    return 0;
  int64_t e = node_numel(n);
  switch (n->op) {
  case OP_CONV2D: return 2 * conv_macs(g, n) + (n->bias ? e : 0);
  case OP_LINEAR: return 2 * e * g->nodes[n->in[0]]->dims[1] + (n->bias ? e : 0);
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D: return e * n->kh * n->kw;
  case OP_ADAPTIVE_AVGPOOL2D: return node_numel(g->nodes[n->in[0]]);
  case OP_BATCHNORM2D: return 7 * e;
  case OP_RELU:
  case OP_DROPOUT:
  case OP_ADD: return e;
  case OP_CROSS_ENTROPY: return 4 * node_numel(g->nodes[n->in[0]]);
  case OP_INPUT:
  case OP_LABEL:
  case OP_FLATTEN: return 0;
  case OP_COUNT: break;
  }
  unreachable();
}

/* The data gradient is skipped where the input is the model's input. */
int64_t node_flops_bwd(const Graph *g, const Node *n) {
  if (n->dtype == DT_UNKNOWN)
    return 0;
  int64_t e = node_numel(n);
  bool need_dx = n->nin > 0 && n->in[0] != g->input;
  switch (n->op) {
  case OP_CONV2D: return 2 * conv_macs(g, n) * (need_dx ? 2 : 1) + (n->bias ? e : 0);
  case OP_LINEAR: {
    int64_t macs = e * g->nodes[n->in[0]]->dims[1];
    return 2 * macs * (need_dx ? 2 : 1) + (n->bias ? e : 0);
  }
  case OP_BATCHNORM2D: return 10 * e;
  case OP_CROSS_ENTROPY: return 2 * node_numel(g->nodes[n->in[0]]);
  case OP_ADD: return 0;
  default: return node_flops_fwd(g, n);
  }
}

void ir_count_users(Graph *g) {
  for (int i = 0; i < g->nnodes; i++)
    g->nodes[i]->nusers = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++)
      g->nodes[g->nodes[i]->in[j]]->nusers++;
}

/* Buffers live at the same time must not share memory, except an
 * elementwise op writing exactly over its dying input. */
static void verify_plan(Graph *g, const char *after) {
  for (int a = 0; a < g->nbufs; a++) {
    Buffer *x = &g->bufs[a];
    if (x->external || x->alias >= 0 || x->first < 0)
      continue;
    if (x->offset < 0 || x->offset > g->arena_bytes - x->bytes || x->offset % 64)
      ICE("after %s: %s lies outside the arena", after, x->name);
  }
  int a, b;
  if (plan_find_overlap(g, &a, &b))
    ICE("after %s: %s and %s are live together in overlapping memory", after, g->bufs[a].name,
        g->bufs[b].name);
}

/*
 * Internal invariants, checked after every pass.  A failure here is a bug
 * in nncc, reported as an internal error naming the pass.
 */
void ir_verify(Graph *g, const char *after) {
  bool typed = strcmp(after, "parse") != 0;
  StrMap names = {0};
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->id != i)
      ICE("after %s: node %s has id %d at index %d", after, n->name, n->id, i);
    if (!n->name || !*n->name)
      ICE("after %s: node %d has no name", after, i);
    if (n->nin != op_info[n->op].nin)
      ICE("after %s: %s has %d inputs, %s takes %d", after, n->name, n->nin, op_name(n->op),
          op_info[n->op].nin);
    for (int j = 0; j < n->nin; j++)
      if (n->in[j] < 0 || n->in[j] >= i)
        ICE("after %s: %s input %d is node %d (not before it)", after, n->name, j, n->in[j]);
    if (strmap_get(&names, n->name) >= 0)
      ICE("after %s: two nodes named %s", after, n->name);
    strmap_put(&names, n->name, i);
    if (n->dead)
      ICE("after %s: dead node %s left in the graph", after, n->name);
    if (n->relu && n->op != OP_CONV2D && n->op != OP_LINEAR)
      ICE("after %s: relu fused into a %s", after, op_name(n->op));
    if (!typed)
      continue;
    if (n->dtype == DT_UNKNOWN || n->rank < 0 || n->rank > MAX_RANK)
      ICE("after %s: %s is untyped", after, n->name);
    for (int d = 0; d < n->rank; d++)
      if (n->dims[d] <= 0)
        ICE("after %s: %s has dimension %d = %lld", after, n->name, d, (long long)n->dims[d]);
    for (int k = 0; k < n->nparams; k++) {
      Param *p = &n->params[k];
      int64_t e = 1;
      for (int d = 0; d < p->rank; d++)
        e *= p->dims[d];
      if (e != p->numel || e <= 0)
        ICE("after %s: parameter %s has numel %lld, shape says %lld", after, p->name,
            (long long)p->numel, (long long)e);
    }
  }
  if (g->planned)
    verify_plan(g, after);
  if (typed) {
    if (g->input < 0 || g->label < 0 || g->loss < 0)
      ICE("after %s: graph lacks input, label or loss", after);
    if (g->nodes[g->loss]->op != OP_CROSS_ENTROPY)
      ICE("after %s: loss node is %s", after, op_name(g->nodes[g->loss]->op));
  }
}

/* ---- string maps ---------------------------------------------------------- */

static uint32_t str_hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* The slot of key, or of the empty slot where it would go. */
static int strmap_slot(const StrMap *m, const char *key) {
  int i = (int)(str_hash(key) & (uint32_t)(m->cap - 1));
  while (m->keys[i] && strcmp(m->keys[i], key) != 0)
    i = (i + 1) & (m->cap - 1);
  return i;
}

int strmap_get(const StrMap *m, const char *key) {
  if (m->cap == 0)
    return -1;
  int i = strmap_slot(m, key);
  return m->keys[i] ? m->vals[i] : -1;
}

void strmap_put(StrMap *m, const char *key, int val) {
  if (2 * (m->n + 1) > m->cap) { /* at most half full */
    StrMap big = {.cap = m->cap ? 2 * m->cap : 8};
    big.keys = xalloc(sizeof(char *) * (size_t)big.cap);
    big.vals = xalloc(sizeof(int) * (size_t)big.cap);
    for (int i = 0; i < m->cap; i++)
      if (m->keys[i]) {
        int j = strmap_slot(&big, m->keys[i]);
        big.keys[j] = m->keys[i];
        big.vals[j] = m->vals[i];
        big.n++;
      }
    *m = big;
  }
  int i = strmap_slot(m, key);
  if (!m->keys[i]) {
    m->keys[i] = key;
    m->n++;
  }
  m->vals[i] = val;
}

/* ---- text dump ---------------------------------------------------------- */

static char *attr_str(const Node *n) {
  Buf b = {0};
  switch (n->op) {
  case OP_CONV2D:
    buf_printf(&b, "out=%lld kernel=%lldx%lld stride=%lldx%lld padding=%lldx%lld%s",
               (long long)n->out, (long long)n->kh, (long long)n->kw, (long long)n->sh,
               (long long)n->sw, (long long)n->ph, (long long)n->pw, n->bias ? "" : " bias=false");
    break;
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D:
    buf_printf(&b, "kernel=%lldx%lld stride=%lldx%lld padding=%lldx%lld", (long long)n->kh,
               (long long)n->kw, (long long)n->sh, (long long)n->sw, (long long)n->ph,
               (long long)n->pw);
    break;
  case OP_ADAPTIVE_AVGPOOL2D:
    buf_printf(&b, "output=%lldx%lld", (long long)n->oh, (long long)n->ow);
    break;
  case OP_LINEAR:
    buf_printf(&b, "out=%lld%s", (long long)n->out, n->bias ? "" : " bias=false");
    break;
  case OP_BATCHNORM2D:
    buf_printf(&b, "eps=%g momentum=%g", n->eps, n->momentum);
    break;
  case OP_DROPOUT:
    buf_printf(&b, "p=%g", n->p);
    break;
  default:
    break;
  }
  char *s = xstrdup(b.data ? b.data : "");
  buf_free(&b);
  return s;
}

static char *human(double v, const char *unit) {
  const char *prefix[] = {"", "K", "M", "G", "T", "P"};
  int i = 0;
  while (v >= 1000 && i < 5) {
    v /= 1000;
    i++;
  }
  return format(i ? "%.2f %s%s" : "%.0f %s%s", v, prefix[i], unit);
}

static char *bytes_str(int64_t n) {
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    i++;
  }
  return format(i ? "%.2f %s" : "%.0f %s", v, unit[i]);
}

static char *pad_right(const char *s, int w) { return format("%-*s", w, s); }

/*
 * One line per node:
 *   name  op(inputs)  attributes  type  params  flops  file:line:col
 * then the totals.  Columns are padded to the widest entry; the output is
 * a pure function of the graph, so golden files can compare it byte for byte.
 */
void ir_dump(Graph *g, Buf *out, const char *after) {
  int ncol = 6;
  char ***cells = xalloc(sizeof(char **) * (size_t)g->nnodes);
  int width[6] = {0};
  int64_t params = 0, fwd = 0, bwd = 0, act = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    Buf call = {0};
    buf_printf(&call, "%s%s(", op_name(n->op), n->relu ? "+relu" : "");
    for (int j = 0; j < n->nin; j++)
      buf_printf(&call, "%s%%%s", j ? ", " : "", g->nodes[n->in[j]]->name);
    buf_puts(&call, ")");
    int64_t np = node_params(n), f = node_flops_fwd(g, n);
    char **c = cells[i] = xalloc(sizeof(char *) * (size_t)ncol);
    c[0] = format("%%%s", n->name);
    c[1] = xstrdup(call.data);
    c[2] = attr_str(n);
    c[3] = type_str(n);
    c[4] = np ? format("params=%s", fmt_count(np)) : "";
    c[5] = f ? format("flops=%s", fmt_count(f)) : "";
    buf_free(&call);
    for (int k = 0; k < ncol; k++) {
      int w = (int)strlen(c[k]);
      if (w > width[k])
        width[k] = w;
    }
    params += np;
    fwd += f;
    bwd += node_flops_bwd(g, n);
    if (n->dtype == DT_F32 && n->op != OP_CROSS_ENTROPY)
      act += node_numel(n) * 4;
  }

  buf_printf(out, "; nncc %s IR of model %s (%s), after %s\n", NNCC_VERSION,
             g->name ? g->name : "?", g->file->name, after);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    char **c = cells[i];
    Buf line = {0};
    for (int k = 0; k < ncol; k++)
      buf_printf(&line, "%s  ", pad_right(c[k], width[k]));
    while (line.len && line.data[line.len - 1] == ' ')
      line.data[--line.len] = '\0';
    int ln, col;
    loc_line_col(n->loc, &ln, &col);
    const char *file = n->loc.file == g->file ? "" : n->loc.file->name;
    buf_printf(out, "%s  ; %s%s%d:%d", line.data, file, *file ? ":" : "", ln, col);
    if (n->binding)
      buf_printf(out, " %s", n->binding);
    if (n->fused)
      buf_printf(out, " (fused %s)", n->fused);
    if (n->note)
      buf_printf(out, " (%s)", n->note);
    buf_puts(out, "\n");
    buf_free(&line);
    for (int k = 0; k < n->nparams; k++) {
      Param *p = &n->params[k];
      Buf shape = {0};
      for (int d = 0; d < p->rank; d++)
        buf_printf(&shape, "%s%lld", d ? "," : "", (long long)p->dims[d]);
      buf_printf(out, "    %s %s %s[%s]", p->kind == P_WEIGHT ? "param " : "buffer", p->name,
                 p->kind == P_COUNT ? "i64" : "f32", shape.data ? shape.data : "");
      if (p->init == INIT_UNIFORM)
        buf_printf(out, " init=uniform(%.6g)\n", p->bound);
      else
        buf_printf(out, " init=%s\n", p->init == INIT_ONES ? "ones" : "zeros");
      buf_free(&shape);
    }
  }
  if (strcmp(after, "parse") == 0)
    return;
  if (g->planned) {
    buf_printf(out, "; buffers (arena offset, bytes, live range: steps 0..%d forward, %d..%d backward):\n",
               g->nnodes - 1, g->nnodes, 2 * g->nnodes - 1);
    for (int b = 0; b < g->nbufs; b++) {
      Buffer *buf = &g->bufs[b];
      if (buf->external)
        buf_printf(out, ";   %-28s %14s  %12s  (%s)\n", buf->name, "-", fmt_count(buf->bytes), buf->external);
      else if (buf->alias >= 0)
        buf_printf(out, ";   %-28s %14s  %12s  (view of %s)\n", buf->name, "-", fmt_count(buf->bytes),
                   g->bufs[buf->alias].name);
      else
        buf_printf(out, ";   %-28s %14s  %12s  live %d..%d\n", buf->name, fmt_count(buf->offset),
                   fmt_count(buf->bytes), buf->first, buf->last);
    }
  }
  buf_printf(out, "; parameters: %s (%s f32)\n", fmt_count(params), bytes_str(params * 4));
  buf_printf(out, "; forward FLOPs: %s (%s)\n", fmt_count(fwd), human((double)fwd, "FLOP"));
  buf_printf(out, "; training step FLOPs (forward + backward): %s (%s)\n", fmt_count(fwd + bwd),
             human((double)(fwd + bwd), "FLOP"));
  buf_printf(out, "; activation bytes: %s (%s)\n", fmt_count(act), bytes_str(act));
  if (g->planned)
    buf_printf(out, "; training arena: %s bytes (%s) = %.1f%% of the naive sum %s (%s): every\n"
                    ";   activation, saved tensor and activation gradient of the model as written, unshared\n",
               fmt_count(g->arena_bytes), bytes_str(g->arena_bytes),
               100.0 * (double)g->arena_bytes / (double)(g->naive_bytes ? g->naive_bytes : 1),
               fmt_count(g->naive_bytes), bytes_str(g->naive_bytes));
  const TrainCfg *t = &g->train;
  if (t->optim == OPT_ADAM)
    buf_printf(out, "; train: adam lr=%g betas=[%g, %g] eps=%g weight_decay=%g", t->lr, t->beta1,
               t->beta2, t->eps, t->weight_decay);
  else
    buf_printf(out, "; train: sgd lr=%g momentum=%g weight_decay=%g", t->lr, t->momentum,
               t->weight_decay);
  buf_printf(out, " epochs=%lld seed=%lld\n", (long long)t->epochs, (long long)t->seed);
}

/* ---- Graphviz ------------------------------------------------------------ */

static void dot_escape(Buf *b, const char *s) {
  for (; *s; s++) {
    if (strchr("\"\\{}|<>", *s))
      buf_printf(b, "\\%c", *s);
    else
      buf_printf(b, "%c", *s);
  }
}

void ir_dump_dot(Graph *g, Buf *out) {
  buf_puts(out, "digraph \"");
  dot_escape(out, g->name ? g->name : "model");
  buf_puts(out, "\" {\n  rankdir=TB;\n  node [shape=record, fontname=\"monospace\", fontsize=10];\n");
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    buf_printf(out, "  n%d [label=\"{", i);
    dot_escape(out, n->name);
    buf_puts(out, " : ");
    dot_escape(out, op_name(n->op));
    char *attrs = attr_str(n);
    if (*attrs) {
      buf_puts(out, "|");
      dot_escape(out, attrs);
    }
    buf_puts(out, "|");
    dot_escape(out, type_str(n));
    int64_t np = node_params(n);
    if (np)
      buf_printf(out, "|params %s", fmt_count(np));
    buf_puts(out, "}\"");
    if (n->op == OP_INPUT || n->op == OP_LABEL)
      buf_puts(out, ", style=filled, fillcolor=\"#dde8f8\"");
    else if (n->op == OP_CROSS_ENTROPY)
      buf_puts(out, ", style=filled, fillcolor=\"#f8e0dd\"");
    buf_puts(out, "];\n");
  }
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++)
      buf_printf(out, "  n%d -> n%d;\n", g->nodes[i]->in[j], i);
  buf_puts(out, "}\n");
}
