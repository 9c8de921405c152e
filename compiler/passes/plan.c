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
 * end.
 */
#include "nncc.h"

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
              .alias = -1};
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

  g->naive_bytes = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].external && g->bufs[b].alias < 0)
      g->naive_bytes += align64(g->bufs[b].bytes);
}

void plan_naive(Graph *g) {
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
