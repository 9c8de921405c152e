/*
 * plan.c -- the tensors of a training step and where they live.
 *
 * buffers_build() decides which tensors exist: each node's output
 * (activation), the gradient of each output that a parameter's gradient
 * flows through, per-node saved state (batch-norm statistics) and one
 * temporary for gradient contributions that must be added up.  The model
 * input, the logits and their gradient live in the runtime's own buffers;
 * a view op (flatten) is its input's memory when the plan can make it so.
 *
 * A plan gives every arena buffer an offset: plan_naive() lays them end to
 * end (-O0); plan_pass() computes each buffer's live range over the whole
 * training step -- forward in node order, then backward in reverse order --
 * and packs buffers whose ranges do not overlap into the same memory,
 * letting an elementwise op (relu, add, dropout and their gradients) write
 * over an input that dies at that step.
 */
#include "nncc.h"

#include <stdlib.h>
#include <string.h>

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

static char *c_name(const char *prefix, const char *node) {
  char *s = format("%s%s", prefix, node);
  for (char *p = s; *p; p++)
    if (*p == '.')
      *p = '_';
  return s;
}

static int add_buffer(Graph *g, const char *name, BufKind kind, int node, int64_t bytes) {
  Buffer b = {.name = xstrdup(name), .kind = kind, .node = node, .bytes = bytes, .offset = -1,
              .alias = -1, .first = -1, .last = -1};
  VEC_PUSH(g->bufs, g->nbufs, g->bufcap, b);
  return g->nbufs - 1;
}

/* The node whose output is the logits: the loss's first input. */
static int logits_node(Graph *g) { return g->nodes[g->loss]->in[0]; }

/* A view op's output is its input's memory when nothing else reads that
 * input (else a later reader would see the view's writes, of which there
 * are none today, or its gradient mixed in: so only then). */
static bool can_view(Graph *g, Node *n) {
  return (node_desc(n)->flags & OPF_VIEW) && node_in(g, n, 0)->nusers == 1;
}

bool node_is_view(const Graph *g, const Node *n) {
  return n->act >= 0 && g->bufs[n->act].alias >= 0;
}

/* A node's own state buffer (NAME_SUFFIX) of the size bytes() gives, or -1
 * where the op has none: its saved statistics (aux), its forward's work. */
static int node_state(Graph *g, Node *n, int i, int64_t (*bytes)(const Node *, const char **),
                      const char *suffix) {
  if (!bytes)
    return -1;
  const char *what = NULL;
  int64_t size = bytes(n, &what);
  int b = add_buffer(g, c_name("", format("%s_%s", n->name, suffix)), BUF_AUX, i, size);
  g->bufs[b].what = what;
  return b;
}

void buffers_build(Graph *g) {
  g->nbufs = 0;
  int logits = logits_node(g);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    const OpDesc *d = node_desc(n);
    n->act = n->grad = n->aux = n->work = -1;
    n->needs_grad = node_params(n) > 0;
    for (int j = 0; j < n->nin; j++)
      n->needs_grad |= node_in(g, n, j)->needs_grad;
    if (d->flags & OPF_NO_BUFFER)
      continue;
    int64_t bytes = node_numel(n) * 4;
    const char *shape = dims_str(n->dims, n->rank);
    bool view = can_view(g, n);
    Node *x = view ? node_in(g, n, 0) : NULL;

    n->act = add_buffer(g, c_name("", n->name), BUF_ACT, i, bytes);
    g->bufs[n->act].what = shape;
    if (i == g->input)
      g->bufs[n->act].external = "s->input";
    else if (i == logits)
      g->bufs[n->act].external = "s->logits";
    else if (view)
      g->bufs[n->act].alias = x->act;

    if (n->needs_grad) {
      n->grad = add_buffer(g, c_name("d_", n->name), BUF_GRAD, i, bytes);
      g->bufs[n->grad].what = shape;
      if (i == logits)
        g->bufs[n->grad].external = "s->dlogits";
      else if (view)
        g->bufs[n->grad].alias = x->grad;
    }
    n->aux = node_state(g, n, i, d->aux_bytes, "stats");
    n->work = node_state(g, n, i, d->work_bytes, "work");
  }
  /* the largest gradient that may need adding up: an input with several users */
  int64_t tmp = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->needs_grad && n->nusers > 1 && node_numel(n) * 4 > tmp)
      tmp = node_numel(n) * 4;
  }
  g->tmp = tmp ? add_buffer(g, "grad_tmp", BUF_TMP, -1, tmp) : -1;
  if (g->tmp >= 0)
    g->bufs[g->tmp].what = "gradient contributions to add up";
}

/* Parameters lie in node order, each 64-byte aligned in the block. */
void params_layout(Graph *g) {
  int64_t floats = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nparams; k++) {
      g->nodes[i]->params[k].offset = floats;
      floats += (g->nodes[i]->params[k].numel + 15) / 16 * 16;
    }
  g->params_floats = floats;
}

/* The bytes of every arena tensor, each in memory of its own.  No overflow:
 * a buffer has at most 4 * NNCC_MAX_ELEMENTS bytes, a node three buffers. */
static int64_t sum_of_buffers(Graph *g) {
  int64_t sum = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].external && g->bufs[b].alias < 0)
      sum += align64(g->bufs[b].bytes);
  return sum;
}

/* What the model as written would need with nothing shared: the yardstick
 * for plans.  Called before any pass changes the graph. */
void measure_naive(Graph *g) {
  buffers_build(g);
  g->naive_bytes = sum_of_buffers(g);
}

static void liveness(Graph *g);
static noreturn void arena_too_big(Graph *g, int b, int64_t bytes);

void plan_naive(Graph *g) {
  params_layout(g);
  liveness(g);
  int64_t off = 0;
  for (int b = 0; b < g->nbufs; b++) {
    Buffer *buf = &g->bufs[b];
    if (buf->external || buf->alias >= 0)
      continue;
    if (off > NNCC_MAX_BYTES - align64(buf->bytes))
      arena_too_big(g, b, off + align64(buf->bytes));
    buf->offset = off;
    off += align64(buf->bytes);
  }
  g->arena_bytes = off;
  g->planned = true;
}

/* ---- liveness ------------------------------------------------------------- */

int buf_root(const Graph *g, int b) {
  while (b >= 0 && g->bufs[b].alias >= 0)
    b = g->bufs[b].alias;
  return b;
}

int step_forward(const Graph *g, const Node *n) { (void)g; return n->id; }
int step_backward(const Graph *g, const Node *n) { return 2 * g->nnodes - 1 - n->id; }

static void touch(Graph *g, int b, int step) {
  b = buf_root(g, b);
  if (b < 0 || g->bufs[b].external)
    return;
  Buffer *buf = &g->bufs[b];
  if (buf->first < 0 || step < buf->first)
    buf->first = step;
  if (step > buf->last)
    buf->last = step;
}

/* Every buffer's first and last step, from what each step reads and writes. */
static void liveness(Graph *g) {
  for (int b = 0; b < g->nbufs; b++)
    g->bufs[b].first = g->bufs[b].last = -1;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (!node_has_kernels(n))
      continue;
    int s = step_forward(g, n);
    touch(g, n->act, s);
    touch(g, n->aux, s);
    touch(g, n->work, s);
    if (n->stats_for) /* its forward writes the batch norm's statistics */
      touch(g, n->stats_for->work, s);
    if (n->pool_for) /* and the pool's output */
      touch(g, n->pool_for->act, s);
    for (int j = 0; j < n->nin; j++)
      touch(g, g->nodes[n->in[j]]->act, s);
  }
  for (int i = g->nnodes - 1; i >= 0; i--) {
    Node *n = g->nodes[i];
    if (!node_has_kernels(n) || !n->needs_grad)
      continue;
    int s = step_backward(g, n);
    int saves = node_saves(n);
    touch(g, n->grad, s);
    touch(g, n->aux, s);
    if (saves & SAVES_IN)
      for (int j = 0; j < n->nin; j++)
        touch(g, node_in(g, n, j)->act, s);
    if (saves & SAVES_OUT)
      touch(g, n->act, s);
    for (int j = 0; j < n->nin; j++) {
      Node *x = g->nodes[n->in[j]];
      if (!x->needs_grad)
        continue;
      touch(g, x->grad, s);
      if (x->nusers > 1)
        touch(g, g->tmp, s);
    }
  }
}

/* ---- interval treaps -------------------------------------------------------- */

/*
 * A treap of buffers ordered by arena offset (ties by id), each subtree
 * knowing the span of its memory and the range of its lifetimes.  Packing
 * asks it whether a buffer at a given offset collides with a placed one,
 * the verifier which live buffers overlap a new one; both skip the
 * subtrees that cannot matter instead of scanning every buffer.
 */
typedef struct TNode {
  int buf;
  int64_t off, end;  /* memory [off, end) */
  int first, last;   /* live range, steps */
  uint32_t prio;
  int left, right;   /* children, -1 for none */
  /* the subtree's lowest offset, highest end, earliest birth, latest death */
  int64_t lo, hi;
  int min_first, max_last;
} TNode;

typedef struct Treap {
  TNode *t;
  int n, root;
  uint32_t rand; /* xorshift32: the same tree shape on every run */
} Treap;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static void treap_init(Treap *tr, int cap) {
  *tr = (Treap){.t = xalloc(sizeof(TNode) * (size_t)(cap + 1)), .root = -1, .rand = 2463534242u};
}

/* Recompute v's subtree summary from its children. */
static void pull(Treap *tr, int v) {
  TNode *n = &tr->t[v];
  n->lo = n->off;
  n->hi = n->end;
  n->min_first = n->first;
  n->max_last = n->last;
  for (int k = 0; k < 2; k++) {
    int c = k ? n->right : n->left;
    if (c < 0)
      continue;
    const TNode *ch = &tr->t[c];
    if (k == 0)
      n->lo = ch->lo;
    n->hi = max64(n->hi, ch->hi);
    n->min_first = ch->min_first < n->min_first ? ch->min_first : n->min_first;
    n->max_last = ch->max_last > n->max_last ? ch->max_last : n->max_last;
  }
}

/* Is node v's key below (off, buf)?  or_equal: at or below. */
static bool key_below(const TNode *n, int64_t off, int buf, bool or_equal) {
  if (n->off != off)
    return n->off < off;
  return or_equal ? n->buf <= buf : n->buf < buf;
}

/* Split v into the keys below (off, buf) (or at or below) and the rest. */
static void split(Treap *tr, int v, int64_t off, int buf, bool or_equal, int *a, int *b) {
  if (v < 0) {
    *a = *b = -1;
    return;
  }
  TNode *n = &tr->t[v];
  if (key_below(n, off, buf, or_equal)) {
    split(tr, n->right, off, buf, or_equal, &n->right, b);
    *a = v;
  } else {
    split(tr, n->left, off, buf, or_equal, a, &n->left);
    *b = v;
  }
  pull(tr, v);
}

/* Join a and b, every key of a below every key of b. */
static int merge(Treap *tr, int a, int b) {
  if (a < 0)
    return b;
  if (b < 0)
    return a;
  if (tr->t[a].prio > tr->t[b].prio) {
    tr->t[a].right = merge(tr, tr->t[a].right, b);
    pull(tr, a);
    return a;
  }
  tr->t[b].left = merge(tr, a, tr->t[b].left);
  pull(tr, b);
  return b;
}

static void treap_insert(Treap *tr, int buf, int64_t off, int64_t end, int first, int last) {
  int v = tr->n++;
  tr->rand ^= tr->rand << 13;
  tr->rand ^= tr->rand >> 17;
  tr->rand ^= tr->rand << 5;
  tr->t[v] = (TNode){.buf = buf, .off = off, .end = end, .first = first, .last = last,
                     .prio = tr->rand, .left = -1, .right = -1};
  pull(tr, v);
  int a, b;
  split(tr, tr->root, off, buf, false, &a, &b);
  tr->root = merge(tr, merge(tr, a, v), b);
}

static void treap_erase(Treap *tr, int64_t off, int buf) {
  int a, bc, b, c;
  split(tr, tr->root, off, buf, false, &a, &bc);
  split(tr, bc, off, buf, true, &b, &c);
  tr->root = merge(tr, a, c);
}

/* ---- packing --------------------------------------------------------------- */

/* dst may take src's memory at step `step`: src dies there, dst is born there
 * and the op is elementwise. */
typedef struct InPlace {
  int src, dst, step;
} InPlace;

typedef struct Packer {
  Graph *g;
  InPlace *pairs;
  int npairs, cap;
  int *pair_start, *pair_list; /* the pairs of buffer b: pair_list[pair_start[b] ..
                                  pair_start[b + 1]), in creation order */
  Treap placed;
  int64_t *ends;               /* hash set of the ends of placed buffers (0: empty) */
  int ends_cap;
  int64_t min_end;
} Packer;

static void add_pair(Packer *P, int src, int dst, int step) {
  src = buf_root(P->g, src);
  dst = buf_root(P->g, dst);
  if (src < 0 || dst < 0 || P->g->bufs[src].external || P->g->bufs[dst].external)
    return;
  InPlace ip = {src, dst, step};
  VEC_PUSH(P->pairs, P->npairs, P->cap, ip);
}

/* Index the pairs by buffer, keeping their order. */
static void index_pairs(Packer *P) {
  int nb = P->g->nbufs;
  P->pair_start = xalloc(sizeof(int) * (size_t)(nb + 2));
  P->pair_list = xalloc(sizeof(int) * (size_t)(2 * P->npairs + 1));
  for (int i = 0; i < P->npairs; i++) {
    P->pair_start[P->pairs[i].src + 2]++;
    if (P->pairs[i].dst != P->pairs[i].src)
      P->pair_start[P->pairs[i].dst + 2]++;
  }
  for (int b = 0; b < nb; b++)
    P->pair_start[b + 2] += P->pair_start[b + 1];
  for (int i = 0; i < P->npairs; i++) {
    P->pair_list[P->pair_start[P->pairs[i].src + 1]++] = i;
    if (P->pairs[i].dst != P->pairs[i].src)
      P->pair_list[P->pair_start[P->pairs[i].dst + 1]++] = i;
  }
}

static bool in_place_pair(Packer *P, int a, int b) {
  for (int k = P->pair_start[a]; k < P->pair_start[a + 1]; k++) {
    InPlace *ip = &P->pairs[P->pair_list[k]];
    if ((ip->src == a && ip->dst == b) || (ip->src == b && ip->dst == a)) {
      Buffer *src = &P->g->bufs[ip->src], *dst = &P->g->bufs[ip->dst];
      if (src->last == ip->step && dst->first == ip->step)
        return true;
    }
  }
  return false;
}

/* The other buffer of pair k of buffer b. */
static int partner(Packer *P, int b, int k) {
  InPlace *ip = &P->pairs[P->pair_list[k]];
  return ip->src == b ? ip->dst : ip->src;
}

static void ends_add(Packer *P, int64_t end) {
  int mask = P->ends_cap - 1;
  int i = (int)((uint64_t)end / 64 * 0x9E3779B97F4A7C15ull >> 40) & mask;
  while (P->ends[i] && P->ends[i] != end)
    i = (i + 1) & mask;
  P->ends[i] = end;
  if (P->min_end < 0 || end < P->min_end)
    P->min_end = end;
}

static bool ends_has(Packer *P, int64_t end) {
  int mask = P->ends_cap - 1;
  int i = (int)((uint64_t)end / 64 * 0x9E3779B97F4A7C15ull >> 40) & mask;
  while (P->ends[i] && P->ends[i] != end)
    i = (i + 1) & mask;
  return P->ends[i] == end;
}

static const Graph *sort_graph;

/* largest first; ties by birth, then by id, so the plan is deterministic */
static int by_size(const void *pa, const void *pb) {
  const Buffer *a = &sort_graph->bufs[*(const int *)pa], *b = &sort_graph->bufs[*(const int *)pb];
  int64_t sa = align64(a->bytes), sb = align64(b->bytes);
  if (sa != sb)
    return sa > sb ? -1 : 1;
  if (a->first != b->first)
    return a->first < b->first ? -1 : 1;
  return *(const int *)pa - *(const int *)pb;
}

/* Does a placed buffer in subtree v that is live with b overlap b put at
 * [x, x + size)?  Exactly over a dying input of an elementwise op (same
 * offset and size, an in-place pair) is not a collision. */
static bool collides(Packer *P, int v, int b, int64_t x, int64_t size) {
  if (v < 0)
    return false;
  const TNode *n = &P->placed.t[v];
  const Buffer *buf = &P->g->bufs[b];
  if (n->hi <= x || n->lo >= x + size || n->min_first > buf->last || n->max_last < buf->first)
    return false;
  if (n->first <= buf->last && buf->first <= n->last && n->off < x + size && n->end > x &&
      !(n->off == x && P->g->bufs[n->buf].bytes == buf->bytes && in_place_pair(P, n->buf, b)))
    return true;
  return collides(P, n->left, b, x, size) || collides(P, n->right, b, x, size);
}

static bool fits(Packer *P, int b, int64_t off) {
  return !collides(P, P->placed.root, b, off, align64(P->g->bufs[b].bytes));
}

/* ---- free memory over time -------------------------------------------------- */

/*
 * Where a buffer living [first, last] may go: memory not used by any
 * placed buffer live at some step of [first, last].  Those buffers are the
 * ones live at step `first` and the ones born in (first, last], so two
 * segment trees over the steps hold the placed buffers' memory as sets of
 * runs (unions of intervals): `stab` has each buffer at the O(log n) nodes
 * that make up its live range (the nodes on the path to step `first` hold
 * the buffers live there), `birth` at every node above its first step (the
 * nodes that make up (first, last] hold the buffers born there).  A deep
 * network's stack of saved activations is then a few runs, not thousands
 * of buffers to step over.
 */
typedef struct Run {
  int64_t lo, hi; /* memory [lo, hi); runs of one set neither overlap nor touch */
  uint32_t prio;
  int left, right;
} Run;

typedef struct RunSets {
  Run *r;
  int n, cap, free; /* free: a list of removed runs, through .left */
  uint32_t rand;
  int leaves;       /* a power of two above the last step */
  int *stab, *birth; /* run-set roots of the tree nodes 1 .. 2 * leaves - 1 */
} RunSets;

static int run_new(RunSets *R, int64_t lo, int64_t hi) {
  int v;
  if (R->free >= 0) {
    v = R->free;
    R->free = R->r[v].left;
  } else {
    if (R->n == R->cap) {
      int cap = R->cap ? 2 * R->cap : 1024;
      R->r = xrealloc_pool(R->r, sizeof(Run) * (size_t)R->cap, sizeof(Run) * (size_t)cap);
      R->cap = cap;
    }
    v = R->n++;
  }
  R->rand ^= R->rand << 13;
  R->rand ^= R->rand >> 17;
  R->rand ^= R->rand << 5;
  R->r[v] = (Run){lo, hi, R->rand, -1, -1};
  return v;
}

static void run_free_all(RunSets *R, int v) {
  if (v < 0)
    return;
  run_free_all(R, R->r[v].left);
  run_free_all(R, R->r[v].right);
  R->r[v].left = R->free;
  R->free = v;
}

/* Split v into the runs starting below `at` and the rest. */
static void run_split(RunSets *R, int v, int64_t at, int *a, int *b) {
  if (v < 0) {
    *a = *b = -1;
  } else if (R->r[v].lo < at) {
    run_split(R, R->r[v].right, at, &R->r[v].right, b);
    *a = v;
  } else {
    run_split(R, R->r[v].left, at, a, &R->r[v].left);
    *b = v;
  }
}

static int run_merge(RunSets *R, int a, int b) {
  if (a < 0)
    return b;
  if (b < 0)
    return a;
  if (R->r[a].prio > R->r[b].prio) {
    R->r[a].right = run_merge(R, R->r[a].right, b);
    return a;
  }
  R->r[b].left = run_merge(R, a, R->r[b].left);
  return b;
}

/* The run with the highest start below `at`, or -1. */
static int run_last_below(const RunSets *R, int v, int64_t at) {
  int best = -1;
  while (v >= 0) {
    if (R->r[v].lo < at) {
      best = v;
      v = R->r[v].right;
    } else {
      v = R->r[v].left;
    }
  }
  return best;
}

/* Add [lo, hi) to the set rooted at *root, merging the runs it meets. */
static void run_add(RunSets *R, int *root, int64_t lo, int64_t hi) {
  int a, bc, b, c;
  run_split(R, *root, lo, &a, &bc);
  int prev = run_last_below(R, a, lo);
  if (prev >= 0 && R->r[prev].hi >= lo) { /* the run before reaches lo */
    int a1, a2;
    run_split(R, a, R->r[prev].lo, &a1, &a2);
    lo = R->r[prev].lo;
    hi = hi > R->r[prev].hi ? hi : R->r[prev].hi;
    run_free_all(R, a2);
    a = a1;
  }
  run_split(R, bc, hi + 1, &b, &c); /* runs starting in [lo, hi] join */
  int last = run_last_below(R, b, hi + 1);
  if (last >= 0 && R->r[last].hi > hi)
    hi = R->r[last].hi;
  run_free_all(R, b);
  *root = run_merge(R, run_merge(R, a, run_new(R, lo, hi)), c);
}

static void runsets_init(RunSets *R, int steps) {
  *R = (RunSets){.free = -1, .rand = 2463534242u, .leaves = 1};
  while (R->leaves < steps)
    R->leaves *= 2;
  R->stab = xalloc(sizeof(int) * (size_t)(2 * R->leaves));
  R->birth = xalloc(sizeof(int) * (size_t)(2 * R->leaves));
  for (int v = 0; v < 2 * R->leaves; v++)
    R->stab[v] = R->birth[v] = -1;
}

static void runsets_add(RunSets *R, int first, int last, int64_t lo, int64_t hi) {
  for (int l = first + R->leaves, r = last + R->leaves + 1; l < r; l >>= 1, r >>= 1) {
    if (l & 1)
      run_add(R, &R->stab[l++], lo, hi);
    if (r & 1)
      run_add(R, &R->stab[--r], lo, hi);
  }
  for (int v = first + R->leaves; v >= 1; v >>= 1)
    run_add(R, &R->birth[v], lo, hi);
}

/* The lowest offset from x up -- x, or the end of a placed buffer -- where
 * size bytes are free over [first, last]: each run in the way moves x to
 * its end, until none is. */
static int64_t runsets_lowest(const RunSets *R, int first, int last, int64_t x, int64_t size) {
  int sets[128], n = 0;
  for (int v = first + R->leaves; v >= 1; v >>= 1)
    sets[n++] = R->stab[v];
  for (int l = first + 1 + R->leaves, r = last + R->leaves + 1; l < r; l >>= 1, r >>= 1) {
    if (l & 1)
      sets[n++] = R->birth[l++];
    if (r & 1)
      sets[n++] = R->birth[--r];
  }
  for (bool moved = true; moved;) {
    moved = false;
    for (int i = 0; i < n; i++) {
      int run = run_last_below(R, sets[i], x + size);
      if (run >= 0 && R->r[run].hi > x) {
        x = R->r[run].hi;
        moved = true;
      }
    }
  }
  return x;
}

static noreturn void arena_too_big(Graph *g, int b, int64_t bytes) {
  Buffer *buf = &g->bufs[b];
  Node *n = g->nodes[buf->node >= 0 ? buf->node : g->loss];
  diag_error(n->loc, "the training step needs an activation arena of %s bytes with %s, more "
             "than the limit of 2^40 (%s)", fmt_count(bytes), buf->name, fmt_count(NNCC_MAX_BYTES));
  diag_callsites(n->site);
  diag_fail();
}

/*
 * Buffers are placed largest first.  Each goes to the lowest offset where
 * it collides with no placed buffer live at the same time, among: the
 * offset of an in-place partner (the first in pair order that fits), else
 * 0, and the end of every placed buffer.  The treap finds that offset
 * without trying the candidates one by one.
 */
void plan_pass(Graph *g) {
  params_layout(g);
  liveness(g);
  Packer P = {.g = g, .min_end = -1};
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (!(node_desc(n)->flags & OPF_INPLACE))
      continue;
    for (int j = 0; j < n->nin; j++) {
      Node *x = g->nodes[n->in[j]];
      add_pair(&P, x->act, n->act, step_forward(g, n));
      if (n->needs_grad && x->needs_grad)
        add_pair(&P, n->grad, x->grad, step_backward(g, n));
    }
  }
  index_pairs(&P);

  int *order = xalloc(sizeof(int) * (size_t)(g->nbufs + 1));
  int n = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].external && g->bufs[b].alias < 0 && g->bufs[b].first >= 0)
      order[n++] = b;
  sort_graph = g;
  qsort(order, (size_t)n, sizeof *order, by_size);

  bool *placed = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  treap_init(&P.placed, n);
  RunSets free_mem;
  runsets_init(&free_mem, 2 * g->nnodes);
  P.ends_cap = 16;
  while (P.ends_cap < 2 * n)
    P.ends_cap *= 2;
  P.ends = xalloc(sizeof(int64_t) * (size_t)P.ends_cap);
  g->arena_bytes = 0;
  for (int k = 0; k < n; k++) {
    int b = order[k];
    Buffer *buf = &g->bufs[b];
    int64_t size = align64(buf->bytes), best = -1;
    for (int q = P.pair_start[b]; q < P.pair_start[b + 1] && best < 0; q++) {
      int other = partner(&P, b, q);
      if (placed[other] && fits(&P, b, g->bufs[other].offset))
        best = g->bufs[other].offset;
    }
    if (best < 0 && fits(&P, b, 0))
      best = 0;
    if (P.placed.n > 0) {
      /* the lowest end of a placed buffer where b fits: from the free
       * memory over its lifetime, which counts an in-place partner as in
       * the way, or a partner's offset where the exception lets it fit */
      int64_t end_fit = runsets_lowest(&free_mem, buf->first, buf->last, P.min_end, size);
      for (int q = P.pair_start[b]; q < P.pair_start[b + 1]; q++) {
        int other = partner(&P, b, q);
        int64_t off = g->bufs[other].offset;
        if (placed[other] && off < end_fit && ends_has(&P, off) && fits(&P, b, off))
          end_fit = off;
      }
      if (best < 0 || end_fit < best)
        best = end_fit;
    }
    if (best < 0)
      ICE("no offset fits %s", buf->name);
    if (best > NNCC_MAX_BYTES - size)
      arena_too_big(g, b, best + size);
    buf->offset = best;
    placed[b] = true;
    treap_insert(&P.placed, b, best, best + size, buf->first, buf->last);
    runsets_add(&free_mem, buf->first, buf->last, best, best + size);
    ends_add(&P, best + size);
    if (best + size > g->arena_bytes)
      g->arena_bytes = best + size;
  }
  /* buffers nothing touches (none today) still get a place of their own */
  for (int b = 0; b < g->nbufs; b++) {
    Buffer *buf = &g->bufs[b];
    if (!buf->external && buf->alias < 0 && buf->first < 0) {
      if (g->arena_bytes > NNCC_MAX_BYTES - align64(buf->bytes))
        arena_too_big(g, b, g->arena_bytes + align64(buf->bytes));
      buf->offset = g->arena_bytes;
      g->arena_bytes += align64(buf->bytes);
    }
  }
  g->planned = true;
}

/* ---- checking a plan -------------------------------------------------------- */

/* A buffer in subtree v overlapping [off, end) that is not b's in-place
 * partner (same offset and size, one dies where the other is born), or -1. */
static int overlapping(const Graph *g, const Treap *tr, int v, int b, int64_t off, int64_t end) {
  if (v < 0)
    return -1;
  const TNode *n = &tr->t[v];
  if (n->hi <= off || n->lo >= end)
    return -1;
  const Buffer *x = &g->bufs[n->buf], *y = &g->bufs[b];
  bool in_place = x->offset == y->offset && x->bytes == y->bytes &&
                  (x->last == y->first || y->last == x->first);
  if (n->off < end && n->end > off && !in_place)
    return n->buf;
  int o = overlapping(g, tr, n->left, b, off, end);
  return o >= 0 ? o : overlapping(g, tr, n->right, b, off, end);
}

bool plan_find_overlap(const Graph *g, int *a, int *b) {
  /* sweep the steps: at each, the buffers born there meet every live one,
   * then those that die there leave */
  int nsteps = 2 * g->nnodes + 1, n = 0;
  int *born = xalloc(sizeof(int) * (size_t)(nsteps + 1)), *died = xalloc(sizeof(int) * (size_t)(nsteps + 1));
  int *by_birth = xalloc(sizeof(int) * (size_t)(g->nbufs + 1)), *by_death = xalloc(sizeof(int) * (size_t)(g->nbufs + 1));
  for (int i = 0; i < g->nbufs; i++) {
    const Buffer *x = &g->bufs[i];
    if (x->external || x->alias >= 0 || x->first < 0)
      continue;
    if (x->last >= nsteps || x->first > x->last)
      ICE("%s lives from step %d to %d", x->name, x->first, x->last);
    born[x->first + 1]++;
    died[x->last + 1]++;
    n++;
  }
  for (int s = 0; s < nsteps; s++) {
    born[s + 1] += born[s];
    died[s + 1] += died[s];
  }
  for (int i = 0; i < g->nbufs; i++) {
    const Buffer *x = &g->bufs[i];
    if (x->external || x->alias >= 0 || x->first < 0)
      continue;
    by_birth[born[x->first]++] = i;
    by_death[died[x->last]++] = i;
  }
  Treap live;
  treap_init(&live, n);
  for (int s = 0, i = 0, j = 0; s < nsteps; s++) {
    for (; i < n && g->bufs[by_birth[i]].first == s; i++) {
      const Buffer *x = &g->bufs[by_birth[i]];
      int o = overlapping(g, &live, live.root, by_birth[i], x->offset, x->offset + x->bytes);
      if (o >= 0) {
        *a = o;
        *b = by_birth[i];
        return true;
      }
      treap_insert(&live, by_birth[i], x->offset, x->offset + x->bytes, x->first, x->last);
    }
    for (; j < n && g->bufs[by_death[j]].last == s; j++)
      treap_erase(&live, g->bufs[by_death[j]].offset, by_death[j]);
  }
  return false;
}
