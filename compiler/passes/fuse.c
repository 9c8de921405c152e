/*
 * fuse.c -- fold a ReLU into the conv2d or linear that feeds it.
 *
 * Forward then applies max(v, 0) in the conv's own output loop, and
 * backward masks the incoming gradient with the saved output (y > 0), so
 * the pre-activation tensor is never stored or read again.
 *
 * Only legal when the relu is the conv's single user: another user would
 * need the value before the ReLU.  A batchnorm between conv and relu stays
 * as it is: in training it uses batch statistics, so it cannot be folded
 * into the conv's weights.
 */
#include "nncc.h"

void fuse_pass(Graph *g) {
  ir_count_users(g);
  bool changed = false;
  /* a fused relu's users read its conv instead: each node's inputs are
   * redirected when the loop reaches it, one pass over the graph */
  int *redirect = xalloc(sizeof(int) * (size_t)(g->nnodes + 1));
  for (int i = 0; i < g->nnodes; i++)
    redirect[i] = i;
  for (int i = 0; i < g->nnodes; i++) {
    Node *relu = g->nodes[i];
    for (int j = 0; j < relu->nin; j++)
      relu->in[j] = redirect[relu->in[j]];
    if (relu->op != OP_RELU)
      continue;
    Node *x = g->nodes[relu->in[0]];
    if (x->op == OP_BATCHNORM2D) {
      relu->note = format("not fused: input %s is a batchnorm2d, folding it is only legal in eval", x->name);
      continue;
    }
    if (x->op != OP_CONV2D && x->op != OP_LINEAR) {
      relu->note = format("not fused: input %s (%s) is not a conv2d or linear", x->name, op_name(x->op));
      continue;
    }
    if (x->relu) {
      relu->note = format("not fused: %s already ends in a relu", x->name);
      continue;
    }
    if (x->nusers > 1) {
      relu->note = format("not fused: %s has %d users and they need it before the relu", x->name,
                          x->nusers);
      continue;
    }
    /* the conv takes over: its users are the relu's users */
    x->relu = true;
    x->fused = relu->name;
    if (relu->binding)
      x->binding = relu->binding;
    redirect[relu->id] = x->id;
    relu->dead = true;
    changed = true;
  }
  if (changed)
    graph_compact(g);
}
