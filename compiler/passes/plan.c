/*
 * plan.c -- the tensors of a training step and where they live.
 *
 * buffers_build() decides which tensors exist: each node's output
 * (activation), the gradient of each output that a parameter's gradient
 * flows through, per-node saved state (batch-norm statistics) and one
 * temporary for gradient contributions that must be added up.  The model
 * input, the logits and their gradient live in the runtime's own buffers;
 * flatten is a view of its input.
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

/* The node whose output is the logits: cross_entropy's first input. */
static int logits_node(Graph *g) { return g->nodes[g->loss]->in[0]; }

void buffers_build(Graph *g) {
  g->nbufs = 0;
  int logits = logits_node(g);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    n->act = n->grad = n->aux = -1;
    n->needs_grad = node_params(n) > 0;
    for (int j = 0; j < n->nin; j++)
      n->needs_grad |= g->nodes[n->in[j]]->needs_grad;
    if (n->op == OP_LABEL || n->op == OP_CROSS_ENTROPY)
      continue;
    int64_t bytes = node_numel(n) * 4;
    Node *x = n->nin ? g->nodes[n->in[0]] : NULL;
    /* flatten is a view of its input when nothing else reads that input */
    bool view = n->op == OP_FLATTEN && x->nusers == 1;

    n->act = add_buffer(g, c_name("", n->name), BUF_ACT, i, bytes);
    if (n->op == OP_INPUT)
      g->bufs[n->act].external = "s->input";
    else if (i == logits)
      g->bufs[n->act].external = "s->logits";
    else if (view)
      g->bufs[n->act].alias = x->act;

    if (n->needs_grad) {
      n->grad = add_buffer(g, c_name("d_", n->name), BUF_GRAD, i, bytes);
      if (i == logits)
        g->bufs[n->grad].external = "s->dlogits";
      else if (view)
        g->bufs[n->grad].alias = x->grad;
    }
    if (n->op == OP_BATCHNORM2D) /* mean and 1/sqrt(var + eps) per channel */
      n->aux = add_buffer(g, c_name("", format("%s_stats", n->name)), BUF_AUX, i, 2 * n->dims[1] * 4);
  }
  /* the largest gradient that may need adding up: an input with several users */
  int64_t tmp = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->needs_grad && n->nusers > 1 && node_numel(n) * 4 > tmp)
      tmp = node_numel(n) * 4;
  }
  g->tmp = tmp ? add_buffer(g, "grad_tmp", BUF_TMP, -1, tmp) : -1;

}

/* The bytes of every arena tensor, each in memory of its own. */
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

void plan_naive(Graph *g) {
  liveness(g);
  int64_t off = 0;
  for (int b = 0; b < g->nbufs; b++) {
    Buffer *buf = &g->bufs[b];
    if (buf->external || buf->alias >= 0)
      continue;
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

bool node_has_kernels(const Node *n) {
  return n->op != OP_INPUT && n->op != OP_LABEL && n->op != OP_CROSS_ENTROPY;
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
    for (int j = 0; j < n->nin; j++)
      touch(g, g->nodes[n->in[j]]->act, s);
  }
  for (int i = g->nnodes - 1; i >= 0; i--) {
    Node *n = g->nodes[i];
    if (!node_has_kernels(n) || !n->needs_grad)
      continue;
    int s = step_backward(g, n);
    int saves = op_info[n->op].saves;
    touch(g, n->grad, s);
    touch(g, n->aux, s);
    if (saves & SAVES_IN)
      touch(g, g->nodes[n->in[0]]->act, s);
    if ((saves & SAVES_OUT) || n->relu)
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
} Packer;

static void add_pair(Packer *P, int src, int dst, int step) {
  src = buf_root(P->g, src);
  dst = buf_root(P->g, dst);
  if (src < 0 || dst < 0 || P->g->bufs[src].external || P->g->bufs[dst].external)
    return;
  InPlace ip = {src, dst, step};
  VEC_PUSH(P->pairs, P->npairs, P->cap, ip);
}

static bool in_place_pair(Packer *P, int a, int b) {
  for (int i = 0; i < P->npairs; i++) {
    InPlace *ip = &P->pairs[i];
    if ((ip->src == a && ip->dst == b) || (ip->src == b && ip->dst == a)) {
      Buffer *src = &P->g->bufs[ip->src], *dst = &P->g->bufs[ip->dst];
      if (src->last == ip->step && dst->first == ip->step)
        return true;
    }
  }
  return false;
}

static bool live_together(const Buffer *a, const Buffer *b) {
  return a->first <= b->last && b->first <= a->last;
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

/* Can b sit at offset off, given the buffers placed so far? */
static bool fits(Packer *P, int b, int64_t off, const bool *placed) {
  Graph *g = P->g;
  Buffer *buf = &g->bufs[b];
  int64_t end = off + align64(buf->bytes);
  for (int o = 0; o < g->nbufs; o++) {
    if (!placed[o] || !live_together(buf, &g->bufs[o]))
      continue;
    Buffer *other = &g->bufs[o];
    /* exactly over a dying input of an elementwise op: in place */
    if (other->offset == off && other->bytes == buf->bytes && in_place_pair(P, o, b))
      continue;
    if (off < other->offset + align64(other->bytes) && other->offset < end)
      return false;
  }
  return true;
}

void plan_pass(Graph *g) {
  liveness(g);
  Packer P = {.g = g};
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (!op_info[n->op].inplace)
      continue;
    for (int j = 0; j < n->nin; j++) {
      Node *x = g->nodes[n->in[j]];
      add_pair(&P, x->act, n->act, step_forward(g, n));
      if (n->needs_grad && x->needs_grad)
        add_pair(&P, n->grad, x->grad, step_backward(g, n));
    }
  }

  int *order = xalloc(sizeof(int) * (size_t)(g->nbufs + 1));
  int n = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].external && g->bufs[b].alias < 0 && g->bufs[b].first >= 0)
      order[n++] = b;
  sort_graph = g;
  qsort(order, (size_t)n, sizeof *order, by_size);

  bool *placed = xalloc(sizeof(bool) * (size_t)(g->nbufs + 1));
  g->arena_bytes = 0;
  for (int k = 0; k < n; k++) {
    int b = order[k];
    Buffer *buf = &g->bufs[b];
    /* candidates: an in-place partner's offset first, then 0 and the end of
     * every placed buffer; the lowest that fits wins */
    int64_t best = -1;
    for (int i = 0; i < P.npairs && best < 0; i++) {
      InPlace *ip = &P.pairs[i];
      int other = ip->src == b ? ip->dst : ip->dst == b ? ip->src : -1;
      if (other >= 0 && placed[other] && fits(&P, b, g->bufs[other].offset, placed))
        best = g->bufs[other].offset;
    }
    if (best < 0 && fits(&P, b, 0, placed))
      best = 0;
    for (int o = 0; o < g->nbufs; o++) {
      if (!placed[o])
        continue;
      int64_t off = g->bufs[o].offset + align64(g->bufs[o].bytes);
      if ((best < 0 || off < best) && fits(&P, b, off, placed))
        best = off;
    }
    if (best < 0)
      ICE("no offset fits %s", buf->name);
    buf->offset = best;
    placed[b] = true;
    if (best + align64(buf->bytes) > g->arena_bytes)
      g->arena_bytes = best + align64(buf->bytes);
  }
  /* buffers nothing touches (none today) still get a place of their own */
  for (int b = 0; b < g->nbufs; b++) {
    Buffer *buf = &g->bufs[b];
    if (!buf->external && buf->alias < 0 && buf->first < 0) {
      buf->offset = g->arena_bytes;
      g->arena_bytes += align64(buf->bytes);
    }
  }
  g->planned = true;
}
