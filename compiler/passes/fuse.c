/*
 * fuse.c -- fold an activation into the conv2d, linear or batch norm that
 * feeds it.
 *
 * An activation with a fused form (its descriptor's act_code: relu, relu6,
 * leaky_relu with a slope >= 0) becomes the epilogue of an OPF_EPILOGUE op
 * (conv2d, linear, batchnorm2d/1d).  Forward then applies it in the op's
 * own output loop, and backward gates the incoming gradient with the saved
 * output y (relu: y > 0), so the pre-activation tensor is never stored or
 * read again, and the activation's own passes over memory (and their
 * barriers) are gone.  Batch norm itself never folds into the conv before
 * it here: in training it uses batch statistics (nncc --infer folds it).
 *
 * Only legal when the activation is the op's single user: another user
 * would need the value before it.
 *
 * Then the gate moves down one node.  When such a node's only user is a
 * max pool (OPF_TAKES_GATE), the pool's backward applies the gate to the
 * gradient it writes, reading y, which it reads anyway to find each
 * window's maximum; the conv's (or batch norm's) backward then reads no
 * mask at all.  The
 * bits are the same: the pool's backward writes the conv's whole output
 * gradient, and gating each element of it by the same y with the same
 * rule is what the conv's backward would have done.
 *
 * Last, a conv2d feeding a batch norm computes the batch norm's per-plane
 * statistics in its own forward epilogue, and one feeding a max pool
 * computes the pool's output there (plane_pass): each group of images'
 * output planes, while they are still in cache.
 */
#include "nncc.h"

/* Requires: users counted.  Guarantees: x->gated_by = u for each node x
 * with an epilogue whose single user u takes its gate. */
static void gate_pass(Graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    Node *u = g->nodes[i];
    if (!(node_desc(u)->flags & OPF_TAKES_GATE))
      continue;
    Node *x = node_in(g, u, 0);
    if (!x->epilogue || x->nusers != 1)
      continue;
    x->gated_by = u;
    u->note = format("its backward applies %s's gate", x->epilogue->name);
  }
}

/* Guarantees: for each batch norm u (OPF_TAKES_STATS) or max pool u
 * (OPF_POOLS_PLANES) whose input x has an epilogue per output plane (a
 * conv2d on the fast engine) that no earlier user took, x->stats_for = u
 * or x->pool_for = u: one per x.  x's epilogue then sums the batch norm's
 * per-plane statistics, which u's forward starts from instead of reading
 * x once more for them, or computes the pool's output, and u's forward is
 * gone (x still writes its own output: the pool's backward and x's other
 * users read it).  The bits are the same: either way one function per
 * plane computes them (nk_plane_stats, nk_maxpool_plane). */
static void plane_pass(Graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    Node *u = g->nodes[i];
    unsigned takes = node_desc(u)->flags & (OPF_TAKES_STATS | OPF_POOLS_PLANES);
    if (!takes)
      continue;
    Node *x = node_in(g, u, 0);
    const OpDesc *xd = node_desc(x);
    if (x->stats_for || x->pool_for || !xd->plane_epilogue || !xd->plane_epilogue(x))
      continue;
    if (takes & OPF_TAKES_STATS)
      x->stats_for = u;
    else
      x->pool_for = u;
    char *said = format(takes & OPF_TAKES_STATS ? "its epilogue sums %s's statistics" : "its epilogue computes %s",
                        u->name);
    x->note = x->note ? format("%s; %s", x->note, said) : said;
  }
}

void fuse_pass(Graph *g) {
  ir_count_users(g);
  bool changed = false;
  /* a fused activation's users read its producer instead: each node's
   * inputs are redirected when the loop reaches it, one pass over the graph */
  int *redirect = xalloc(sizeof(int) * (size_t)(g->nnodes + 1));
  for (int i = 0; i < g->nnodes; i++)
    redirect[i] = i;
  for (int i = 0; i < g->nnodes; i++) {
    Node *act = g->nodes[i];
    const OpDesc *d = node_desc(act);
    for (int j = 0; j < act->nin; j++)
      act->in[j] = redirect[act->in[j]];
    if (!d->act_code)
      continue;
    Node *x = node_in(g, act, 0);
    const OpDesc *xd = node_desc(x);
    if (d->fusible && !d->fusible(act)) {
      act->note = format("not fused: its backward needs the input %s", x->name);
      continue;
    }
    if (!(xd->flags & OPF_EPILOGUE)) {
      act->note = format("not fused: input %s (%s) is not a conv2d, linear or batch norm", x->name,
                         op_name(x->op));
      continue;
    }
    if (x->epilogue) {
      act->note = format("not fused: %s already ends in a %s", x->name, op_name(x->epilogue->op));
      continue;
    }
    if (x->nusers > 1) {
      act->note = format("not fused: %s has %d users and they need it before the %s", x->name,
                         x->nusers, op_name(act->op));
      continue;
    }
    /* the producer takes over: its users are the activation's users */
    x->epilogue = act;
    if (act->binding)
      x->binding = act->binding;
    redirect[act->id] = x->id;
    act->dead = true;
    changed = true;
  }
  if (changed)
    graph_compact(g); /* counts the users again */
  gate_pass(g);
  plane_pass(g);
}
