/*
 * shape.c -- the shape pass: type every node, shape every parameter, and
 * reject every ill-formed model before any code is emitted.
 *
 * Requires: an elaborated graph in topological order, with the input and
 * label typed by their declarations.
 * Guarantees: every node has a dtype and a full static shape, parameters
 * are shaped in PyTorch layouts with PyTorch 1.13's default init bounds,
 * and the model is within what the back end can build (nncc.h, "limits"):
 * sizes, tensor and parameter elements, parameter bytes, FLOPs; or a user
 * error was reported.
 */
#include "nncc.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

noreturn void shape_error(Node *n, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(n->loc, "%s", msg);
  diag_callsites(n->site);
  diag_fail();
}


/* ---- limits ------------------------------------------------------------- */

/* The product of dims[0..rank), or -1 past int64. */
static int64_t product(const int64_t *dims, int rank) {
  int64_t e = 1;
  for (int i = 0; i < rank; i++)
    if (__builtin_mul_overflow(e, dims[i], &e))
      return -1;
  return e;
}

/* The elements of a tensor of that shape, at most NNCC_MAX_ELEMENTS, or an
 * error: "<what> has 2,147,483,648 elements, more than the limit ..." */
int64_t shape_elements(Node *n, const char *what, const int64_t *dims, int rank) {
  int64_t e = product(dims, rank);
  if (e >= 0 && e <= NNCC_MAX_ELEMENTS)
    return e;
  double approx = 1;
  for (int i = 0; i < rank; i++)
    approx *= (double)dims[i];
  shape_error(n, "%s has %s elements, more than the limit of 2^30 (%s)", what,
              e >= 0 ? fmt_count(e) : format("about 2^%.0f", log2(approx)),
              fmt_count(NNCC_MAX_ELEMENTS));
}

/* Size attributes fit the kernels' int arithmetic (negative ones are the
 * shape rules' to report). */
static void check_attrs(Node *n) {
  const OpDesc *d = node_desc(n);
  for (int i = 0; i < d->nattrs; i++) {
    const AttrDesc *a = &d->attrs[i];
    const void *f = (const char *)n->attrs + a->offset;
    int64_t v[2] = {0, 0};
    if (a->type == AT_INT)
      v[0] = *(const int64_t *)f;
    else if (a->type == AT_PAIR)
      memcpy(v, f, sizeof v);
    else if (a->type == AT_PADDING)
      v[0] = ((const Padding *)f)->h, v[1] = ((const Padding *)f)->w;
    for (int k = 0; k < 2; k++)
      if (v[k] > NNCC_MAX_SIZE)
        shape_error(n, "%s: '%s' is %lld, more than the limit of 2^30 (%s)", op_name(n->op),
                    a->name, (long long)v[k], fmt_count(NNCC_MAX_SIZE));
  }
}

void set_type(Node *n, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  n->dtype = DT_F32;
  n->rank = rank;
  int64_t d[4] = {d0, d1, d2, d3};
  for (int i = 0; i < 4; i++)
    n->dims[i] = i < rank ? d[i] : 0;
}

void copy_type(Node *n, const Node *from) {
  n->dtype = from->dtype;
  n->rank = from->rank;
  memcpy(n->dims, from->dims, sizeof n->dims);
}

void add_param(Node *n, const char *suffix, ParamKind kind, int rank, const int64_t *dims,
                      int init, double bound) {
  Param *p = &n->params[n->nparams++];
  p->name = format("%s.%s", n->name, suffix);
  p->kind = kind;
  p->rank = rank;
  p->numel = shape_elements(n, format("%s: parameter %s %s", op_name(n->op), p->name, dims_str(dims, rank)),
                      dims, rank);
  for (int i = 0; i < rank; i++)
    p->dims[i] = dims[i];
  p->init = init;
  p->bound = bound;
}

/* "28" for square sizes, "28x20" otherwise */
static char *hw_str(const Node *n) {
  if (n->dims[2] == n->dims[3])
    return format("%lld", (long long)n->dims[2]);
  return format("%lldx%lld", (long long)n->dims[2], (long long)n->dims[3]);
}

/*
 * After a spatial error, say how the size got there: follow the first
 * input back to the model input and list every node that changed H x W.
 */
static void note_spatial_chain(Graph *g, Node *x) {
  Node *chain[256];
  int n = 0;
  for (Node *c = x; c->rank == 4 && n < 256;) {
    chain[n++] = c;
    if (c->nin == 0)
      break;
    c = node_in(g, c, 0);
  }
  Buf sizes = {0}, via = {0};
  Node *prev = NULL;
  for (int i = n - 1; i >= 0; i--) {
    Node *c = chain[i];
    if (prev && c->dims[2] == prev->dims[2] && c->dims[3] == prev->dims[3])
      continue;
    buf_printf(&sizes, "%s%s", prev ? " → " : "", hw_str(c));
    if (prev)
      buf_printf(&via, "%s%s", via.len ? ", " : "", c->name);
    prev = c;
  }
  if (via.len)
    diag_note(NULL, "spatial size went %s through %s", sizes.data, via.data);
  else
    diag_note(NULL, "the input '%s' is %s", chain[n - 1]->name, sizes.data);
  buf_free(&sizes);
  buf_free(&via);
}

void need_rank4(Graph *g, Node *n, int j, const char *what) {
  Node *x = node_in(g, n, j);
  if (x->rank != 4)
    shape_error(n, "%s: input must be 4-D [N, C, H, W], got %s %%%s", what, type_str(x), x->name);
}

/* PyTorch's output size of a window: floor, or with ceil_mode ceil, but a
 * last window that would start in the bottom/right padding is dropped. */
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t pad_lo, int64_t pad_hi, bool ceil_mode) {
  int64_t span = in + pad_lo + pad_hi - k;
  if (span < 0)
    return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + pad_lo)
    out--;
  return out;
}

void shape_window(Graph *g, Node *n, const char *what, Window w, int64_t *ho, int64_t *wo) {
  if (w.kh < 1 || w.kw < 1)
    shape_error(n, "%s: kernel must be at least 1, got %lldx%lld", what, (long long)w.kh,
                (long long)w.kw);
  if (w.sh < 1 || w.sw < 1)
    shape_error(n, "%s: stride must be at least 1, got %lldx%lld", what, (long long)w.sh,
                (long long)w.sw);
  if (w.pt < 0 || w.pl < 0 || w.pb < 0 || w.pr < 0)
    shape_error(n, "%s: padding must not be negative, got %lldx%lld", what, (long long)w.pt,
                (long long)w.pl);
  if (w.dh < 1 || w.dw < 1)
    shape_error(n, "%s: dilation must be at least 1, got %lldx%lld", what, (long long)w.dh,
                (long long)w.dw);
  Node *x = node_in(g, n, 0);
  /* the kernel's extent: dilation spreads its taps (sizes are at most 2^30) */
  int64_t eh = w.dh * (w.kh - 1) + 1, ew = w.dw * (w.kw - 1) + 1;
  int64_t H = x->dims[2] + w.pt + w.pb, W = x->dims[3] + w.pl + w.pr;
  if (H < eh || W < ew) {
    char *padded = w.pt || w.pl || w.pb || w.pr
                       ? (w.pt == w.pb && w.pl == w.pr ? format(" padded by %lldx%lld", (long long)w.pt, (long long)w.pl)
                                                        : format(" padded to %lldx%lld", (long long)H, (long long)W))
                       : "";
    char *kernel = eh != w.kh || ew != w.kw ? format(" (dilated to %lldx%lld)", (long long)eh, (long long)ew) : "";
    diag_error(n->loc, "%s: kernel %lldx%lld%s does not fit input %lldx%lldx%lld%s (output would be %lldx%lld)",
               what, (long long)w.kh, (long long)w.kw, kernel, (long long)x->dims[1], (long long)x->dims[2],
               (long long)x->dims[3], padded, (long long)window_out(x->dims[2], eh, w.sh, w.pt, w.pb, false),
               (long long)window_out(x->dims[3], ew, w.sw, w.pl, w.pr, false));
    note_spatial_chain(g, x);
    diag_callsites(n->site);
    diag_fail();
  }
  /* the kernels index the zero-padded input in int */
  int64_t padded[4] = {x->dims[0], x->dims[1], H, W};
  shape_elements(n, format("%s: the padded input %s", what, dims_str(padded, 4)), padded, 4);
  *ho = window_out(x->dims[2], eh, w.sh, w.pt, w.pb, w.ceil_mode);
  *wo = window_out(x->dims[3], ew, w.sw, w.pl, w.pr, w.ceil_mode);
}

void shape_pass(Graph *g) {
  int64_t floats = 0, flops = 0; /* of all parameters; of a training step */
  if (!g->groups) /* one process and the default groups, unless nncc said */
    ranks_pass(g, 1, 0);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    const OpDesc *d = node_desc(n);
    if (!d->shape)
      ICE("op %s has no shape rule", op_name(n->op));
    n->nparams = 0;
    check_attrs(n);
    /* only cross_entropy may read the label; nothing may read the loss */
    for (int j = 0; j < n->nin; j++) {
      Node *x = node_in(g, n, j);
      if (x->id == g->label && !((d->flags & OPF_LOSS) && j == n->nin - 1))
        shape_error(n, "%s: '%s' is the label; only cross_entropy can take it", op_name(n->op),
                    x->name);
      if (node_desc(x)->flags & OPF_LOSS)
        shape_error(n, "%s: the loss is a scalar; it cannot feed another op", op_name(n->op));
    }
    d->shape(g, n);
    shape_elements(n, !d->name
                    ? format("%s '%s' %s", op_name(n->op), n->name, type_str(n))
                    : format("%s: the output %s", op_name(n->op), type_str(n)),
             n->dims, n->rank);
    /* each term is below 2^63 by the limit on elements; their sums are checked */
    for (int k = 0; k < n->nparams; k++)
      floats += n->params[k].numel;
    if (floats > NNCC_MAX_BYTES / 4)
      shape_error(n, "%s: the model's parameters reach %s bytes here, more than the limit of "
                  "2^40 (%s)", op_name(n->op), fmt_count(4 * floats), fmt_count(NNCC_MAX_BYTES));
    if (__builtin_add_overflow(flops, node_flops_fwd(g, n) + node_flops_bwd(g, n), &flops) ||
        flops > NNCC_MAX_FLOPS)
      shape_error(n, "%s: a training step reaches %s FLOPs here, more than the limit of 2^62 (%s)",
                  op_name(n->op), flops > NNCC_MAX_FLOPS ? fmt_count(flops) : "over 2^63",
                  fmt_count(NNCC_MAX_FLOPS));
  }
  ir_count_users(g);
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = g->nodes[i];
    if (n->nusers == 0 && !(node_desc(n)->flags & OPF_LOSS))
      shape_error(n, "the result of this %s is never used", op_name(n->op));
  }
}

/* The groups every batch sum is taken in: a power of two dividing the
 * batch, so that 1, 2, 4 ... ranks up to the group count each hold whole
 * subtrees of the sum and agree with one process bit for bit. */
void ranks_pass(Graph *g, int ranks, int groups) {
  g->ranks = 1, g->groups = 1;
  if (g->input < 0)
    return;
  Node *in = g->nodes[g->input], *label = g->label >= 0 ? g->nodes[g->label] : NULL;
  int64_t B = in->dims[0];
  g->batch = B;
  if (in->rank < 1 || B < 1 || (label && label->dims[0] != B))
    return; /* shape_pass reports it */
  if (groups == 0) {
    groups = 1;
    while (groups < 8 && B % (2 * groups) == 0) groups *= 2;
  } else if (B % groups) {
    error_at(in->loc, "--groups %d does not divide the batch of %lld", groups, ll(B));
  }
  if (ranks > groups)
    error_at(in->loc, "--ranks %d: the batch of %lld is summed in %d group%s, and each rank must "
             "hold whole groups; use at most %d ranks, or more groups (--groups, a power of two "
             "dividing the batch)", ranks, ll(B), groups, groups == 1 ? "" : "s", groups);
  if (groups % ranks)
    error_at(in->loc, "--ranks %d: must divide the batch's %d reduction groups (use 1, 2, 4 ... "
             "up to %d ranks)", ranks, groups, groups);
  g->ranks = ranks, g->groups = groups;
  in->dims[0] = B / ranks;
  if (label)
    label->dims[0] = B / ranks;
}
