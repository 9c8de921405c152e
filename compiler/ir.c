/*
 * ir.c -- the graph IR: builders, costs, the verifier and the dumps.
 *
 * A Graph is a list of nodes in topological order (every input id is
 * smaller than the node's own id).  A node is one operator application
 * with its attributes, its static type, its parameters and the source
 * span it came from.
 */
#include "nncc.h"

#include <stdlib.h>
#include <string.h>

#define OP(e, desc) extern const OpDesc desc;
#include "ops.def"
#undef OP

const OpDesc *const op_desc[OP_COUNT] = {
#define OP(e, desc) &desc,
#include "ops.def"
#undef OP
};

const char *const op_x_input[] = {"x"};

const char *op_name(OpKind op) {
  return op_desc[op]->name ? op_desc[op]->name : op_desc[op]->abbrev;
}

Graph *graph_new(SrcFile *file) {
  Graph *g = xalloc(sizeof *g);
  g->file = file;
  g->input = g->label = g->loss = -1;
  g->train = (TrainCfg){.optim = OPT_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1e-8, .epochs = 1, .seed = 0};
  return g;
}

Node *node_new(OpKind op, int nin, Loc loc, CallSite *site) {
  Node *n = xalloc(sizeof *n);
  n->op = op;
  n->loc = loc;
  n->site = site;
  n->nin = nin;
  n->in = xalloc(sizeof(int) * (size_t)(nin > 0 ? nin : 1));
  n->attrs = xalloc(op_desc[op]->attrs_size ? op_desc[op]->attrs_size : 1);
  n->act = n->grad = n->aux = n->work = -1;
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

/* FLOPs, counting a multiply-add as 2: each op's rule (docs/language.md). */
int64_t node_flops_fwd(const Graph *g, const Node *n) {
  const OpDesc *d = node_desc(n);
  return n->dtype == DT_UNKNOWN || !d->flops_fwd ? 0 : d->flops_fwd(g, n);
}

int64_t node_flops_bwd(const Graph *g, const Node *n) {
  const OpDesc *d = node_desc(n);
  return n->dtype == DT_UNKNOWN || !d->flops_bwd ? 0 : d->flops_bwd(g, n);
}

/* What backward reads besides the output gradient: the op's own needs,
 * and the output when an activation is fused (its gate reads y), unless
 * the node's user applies that gate. */
int node_saves(const Node *n) {
  const OpDesc *d = node_desc(n);
  int saves = d->saves_fn ? d->saves_fn(n) : d->saves;
  return saves | (node_bwd_gates(n) ? SAVES_OUT : 0);
}

bool node_bwd_gates(const Node *n) { return n->epilogue && !n->gated_by; }

bool node_has_kernels(const Node *n) { return !(node_desc(n)->flags & OPF_NO_KERNELS); }

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

/* How many inputs of later nodes are node i, counted afresh. */
static int count_users(const Graph *g, int i) {
  int k = 0;
  for (int u = i + 1; u < g->nnodes; u++)
    for (int j = 0; j < g->nodes[u]->nin; j++)
      k += g->nodes[u]->in[j] == i;
  return k;
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
    int nin = node_desc(n)->nin;
    if (nin >= 0 ? n->nin != nin : n->nin < 1)
      ICE("after %s: %s has %d inputs, %s takes %d", after, n->name, n->nin, op_name(n->op), nin);
    for (int j = 0; j < n->nin; j++)
      if (n->in[j] < 0 || n->in[j] >= i)
        ICE("after %s: %s input %d is node %d (not before it)", after, n->name, j, n->in[j]);
    if (strmap_get(&names, n->name) >= 0)
      ICE("after %s: two nodes named %s", after, n->name);
    strmap_put(&names, n->name, i);
    if (n->dead)
      ICE("after %s: dead node %s left in the graph", after, n->name);
    if (n->epilogue && (!(node_desc(n)->flags & OPF_EPILOGUE) || !node_desc(n->epilogue)->act_code))
      ICE("after %s: %s fused into a %s", after, op_name(n->epilogue->op), op_name(n->op));
    if (n->gated_by && (!n->epilogue || !(node_desc(n->gated_by)->flags & OPF_TAKES_GATE) ||
                        n->gated_by->in[0] != i || count_users(g, i) != 1))
      ICE("after %s: %s's gate is taken by %s, not its only user", after, n->name, n->gated_by->name);
    if (n->stats_for && (!node_desc(n)->plane_epilogue || !node_desc(n)->plane_epilogue(n) ||
                         !(node_desc(n->stats_for)->flags & OPF_TAKES_STATS) ||
                         n->stats_for->in[0] != i))
      ICE("after %s: %s writes the statistics of %s, which does not read it", after, n->name,
          n->stats_for->name);
    if (n->pool_for && (!node_desc(n)->plane_epilogue || !node_desc(n)->plane_epilogue(n) ||
                        !(node_desc(n->pool_for)->flags & OPF_POOLS_PLANES) ||
                        n->pool_for->in[0] != i || n->stats_for))
      ICE("after %s: %s writes the output of %s, which does not read it", after, n->name,
          n->pool_for->name);
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
    if (!(node_desc(g->nodes[g->loss])->flags & OPF_LOSS))
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

/* An attribute's value as the dump shows it: 5, 5x5, 0.1, true, same. */
static void attr_value(Buf *b, const AttrDesc *a, const void *field) {
  switch (a->type) {
  case AT_INT: buf_printf(b, "%lld", (long long)*(const int64_t *)field); return;
  case AT_FLOAT: buf_printf(b, "%g", *(const double *)field); return;
  case AT_BOOL: buf_puts(b, *(const bool *)field ? "true" : "false"); return;
  case AT_PAIR: {
    const int64_t *p = field;
    buf_printf(b, "%lldx%lld", (long long)p[0], (long long)p[1]);
    return;
  }
  case AT_PADDING: {
    const Padding *p = field;
    if (p->same)
      buf_puts(b, "same");
    else
      buf_printf(b, "%lldx%lld", (long long)p->h, (long long)p->w);
    return;
  }
  }
  unreachable();
}

const void *node_attr(const Node *n, const char *name) {
  const OpDesc *d = node_desc(n);
  for (int i = 0; i < d->nattrs; i++)
    if (strcmp(d->attrs[i].name, name) == 0)
      return (const char *)n->attrs + d->attrs[i].offset;
  return NULL;
}

/* "out=16 kernel=5x5 stride=1x1 padding=0x0": the signature's attributes
 * in order, a quiet one only where it differs from its default. */
char *attr_str(const Node *n) {
  const OpDesc *d = node_desc(n);
  Buf b = {0};
  for (int i = 0; i < d->nattrs; i++) {
    const AttrDesc *a = &d->attrs[i];
    Buf v = {0};
    attr_value(&v, a, (const char *)n->attrs + a->offset);
    bool is_default = false;
    if (a->def) {
      Buf dv = {0};
      /* the default as the dump would show it */
      if (a->type == AT_PAIR && strchr("0123456789", a->def[0]))
        buf_printf(&dv, "%sx%s", a->def, a->def);
      else if (a->type == AT_PADDING && strchr("0123456789", a->def[0]))
        buf_printf(&dv, "%sx%s", a->def, a->def);
      else if (a->type == AT_FLOAT)
        buf_printf(&dv, "%g", strtod(a->def, NULL));
      else
        buf_puts(&dv, a->def);
      is_default = dv.data && strcmp(dv.data, v.data) == 0;
      buf_free(&dv);
    }
    if (!a->quiet || !is_default)
      buf_printf(&b, "%s%s=%s", b.len ? " " : "", a->name, v.data);
    buf_free(&v);
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

void table_fit(int *width, char *const *row, int ncol) {
  for (int k = 0; k < ncol; k++)
    if ((int)strlen(row[k]) > width[k])
      width[k] = (int)strlen(row[k]);
}

char *table_row(char *const *row, const int *width, int ncol) {
  Buf line = {0};
  for (int k = 0; k < ncol; k++)
    buf_printf(&line, "%-*s  ", width[k], row[k]);
  while (line.len && line.data[line.len - 1] == ' ')
    line.data[--line.len] = '\0';
  char *r = xstrdup(line.data ? line.data : "");
  buf_free(&line);
  return r;
}

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
    buf_printf(&call, "%s%s%s(", op_name(n->op), n->epilogue ? "+" : "",
               n->epilogue ? op_name(n->epilogue->op) : "");
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
    table_fit(width, c, ncol);
    params += np;
    fwd += f;
    bwd += node_flops_bwd(g, n);
    if (n->dtype == DT_F32 && !(node_desc(n)->flags & OPF_LOSS))
      act += node_numel(n) * 4;
  }

  buf_printf(out, "; nncc %s IR of model %s (%s), after %s\n", NNCC_VERSION,
             g->name ? g->name : "?", g->file->name, after);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    int ln, col;
    loc_line_col(n->loc, &ln, &col);
    const char *file = n->loc.file == g->file ? "" : n->loc.file->name;
    buf_printf(out, "%s  ; %s%s%d:%d", table_row(cells[i], width, ncol), file, *file ? ":" : "", ln, col);
    if (n->binding)
      buf_printf(out, " %s", n->binding);
    if (n->epilogue)
      buf_printf(out, " (fused %s)", n->epilogue->name);
    if (n->note)
      buf_printf(out, " (%s)", n->note);
    buf_puts(out, "\n");
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
  if (t->optim != OPT_SGD)
    buf_printf(out, "; train: %s lr=%g betas=[%g, %g] eps=%g weight_decay=%g",
               t->optim == OPT_ADAM ? "adam" : "adamw", t->lr, t->beta1, t->beta2, t->eps,
               t->weight_decay);
  else
    buf_printf(out, "; train: sgd lr=%g momentum=%g weight_decay=%g%s", t->lr, t->momentum,
               t->weight_decay, t->nesterov ? " nesterov=true" : "");
  if (t->warmup)
    buf_printf(out, " warmup=%s (per epoch)", t->warmup);
  if (t->schedule)
    buf_printf(out, " schedule=%s (per %s)", t->schedule,
               strncmp(t->schedule, "onecycle(", 9) == 0 ? "step" : "epoch");
  if (t->clip_grad_value > 0)
    buf_printf(out, " clip_grad_value=%g", t->clip_grad_value);
  if (t->clip_grad_norm > 0)
    buf_printf(out, " clip_grad_norm=%g", t->clip_grad_norm);
  buf_printf(out, " epochs=%lld seed=%lld\n", (long long)t->epochs, (long long)t->seed);
  if (g->aug_crop || g->aug_hflip)
    buf_printf(out, "; augment (training only): crop_padding=%lld hflip=%s\n", (long long)g->aug_crop,
               g->aug_hflip ? "true" : "false");
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
    if (i == g->input || i == g->label)
      buf_puts(out, ", style=filled, fillcolor=\"#dde8f8\"");
    else if (i == g->loss)
      buf_puts(out, ", style=filled, fillcolor=\"#f8e0dd\"");
    buf_puts(out, "];\n");
  }
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++)
      buf_printf(out, "  n%d -> n%d;\n", g->nodes[i]->in[j], i);
  buf_puts(out, "}\n");
}
