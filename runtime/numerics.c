/*
 * numerics.c -- finding NaN and Inf: the per-node check and the scans of
 * parameters and checkpoints.
 *
 * The generated forward() and backward() call NnccState.check after every
 * node when it is set (one predictable branch per node when it is not).
 * The hook below makes every thread of the parallel region wait until the
 * node's kernels are done, then one thread scans the node's results, named
 * by the model's node table, while the others wait again.  It records the
 * first node with a non-finite result; the caller reads it after the pass.
 */
#include <math.h>
#include <string.h>

#include "rt.h"

size_t first_nonfinite(const float *x, size_t n) {
  /* Branch-free first, so that the common all-finite case vectorizes: a
   * float is NaN or Inf exactly when its exponent bits are all ones. */
  uint32_t any = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    any |= (u & 0x7f800000u) == 0x7f800000u;
  }
  if (!any) return n;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return i;
  return n;
}

const char *nonfinite_name(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

/* The floats a span names in state s, or NULL. */
static const float *span_data(const NnccState *s, const NnccSpan *p) {
  switch (p->where) {
  case NNCC_ARENA: return (const float *)(s->arena + p->offset);
  case NNCC_INPUT: return s->input;
  case NNCC_LOGITS: return s->logits;
  case NNCC_DLOGITS: return s->dlogits;
  case NNCC_NOWHERE: break;
  }
  return NULL;
}

static int span_ok(const NnccModel *m, const NnccSpan *p) {
  size_t in = (size_t)m->batch * (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
  size_t out = (size_t)m->batch * (size_t)m->classes;
  switch (p->where) {
  case NNCC_NOWHERE: return 1;
  case NNCC_ARENA:
    return p->offset % sizeof(float) == 0 && p->offset <= m->arena_bytes &&
           p->numel <= (m->arena_bytes - p->offset) / sizeof(float);
  case NNCC_INPUT: return p->numel <= in;
  case NNCC_LOGITS:
  case NNCC_DLOGITS: return p->numel <= out;
  }
  return 0;
}

int check_nodes_valid(const NnccModel *m) {
  if (m->nnodes < 0 || (m->nnodes > 0 && !m->nodes)) {
    rt_error("model %s: bad node table (%d nodes)", m->name, m->nnodes);
    return -1;
  }
  for (int k = 0; k < m->nnodes; k++) {
    const NnccNode *n = &m->nodes[k];
    int ok = n->name && n->op && n->loc && span_ok(m, &n->out) && n->nin >= 0 &&
             (n->nin == 0 || (n->in && n->din)) && n->param >= 0 && n->nparams >= 0 &&
             n->param <= m->nparams && n->nparams <= m->nparams - n->param;
    for (int j = 0; ok && j < n->nin; j++)
      ok = n->in[j] && span_ok(m, &n->din[j]);
    if (!ok) {
      rt_error("model %s: node %d of the node table lies outside the model's buffers", m->name, k);
      return -1;
    }
  }
  return 0;
}

/* Records the first non-finite value of x[0..n), if any and nothing is yet. */
static void note(NnccCheck *c, int k, int pass, const char *what, const float *x, size_t n) {
  size_t i;
  if (c->node >= 0 || !x || (i = first_nonfinite(x, n)) == n) return;
  c->node = k;
  c->pass = pass;
  c->what = what;
  c->index = i;
  c->value = x[i];
}

/* Node k's results after its pass: forward, its output and the buffers it
 * updates (batch norm's running statistics); backward, the gradients of
 * its inputs and of its parameters. */
static void check_node(NnccState *s, int k, int pass) {
  NnccCheck *c = s->check_data;
  const NnccModel *m = c->m;
  if (c->node >= 0 || k < 0 || k >= m->nnodes) return;
  const NnccNode *n = &m->nodes[k];
  if (pass == NNCC_FORWARD) note(c, k, pass, NULL, span_data(s, &n->out), n->out.numel);
  for (int j = 0; pass == NNCC_BACKWARD && j < n->nin; j++)
    note(c, k, pass, n->in[j], span_data(s, &n->din[j]), n->din[j].numel);
  for (int i = n->param; i < n->param + n->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (pass == NNCC_FORWARD && q->kind == NNCC_BUFFER)
      note(c, k, pass, q->name, s->params + q->offset, q->numel);
    if (pass == NNCC_BACKWARD && q->kind == NNCC_PARAM)
      note(c, k, pass, q->name, s->grads + q->offset, q->numel);
  }
}

static void check_hook(NnccState *s, int k, int pass) {
#pragma omp barrier
#pragma omp single
  check_node(s, k, pass);
  /* the end of single is a barrier: nobody overwrites what is being read */
}

void check_start(NnccCheck *c, NnccState *s, const NnccModel *m) {
  c->m = m;
  c->node = -1;
  s->check = check_hook;
  s->check_data = c;
}

void check_stop(NnccState *s) {
  s->check = NULL;
  s->check_data = NULL;
}

int check_describe(const NnccCheck *c, char *buf, size_t cap) {
  if (c->node < 0) return 0;
  const NnccNode *n = &c->m->nodes[c->node];
  const char *v = nonfinite_name(c->value);
  if (c->pass == NNCC_FORWARD && !c->what)
    snprintf(buf, cap, "first non-finite value (%s) in the forward output of %s (%s)", v, n->name, n->loc);
  else
    snprintf(buf, cap, "first non-finite value (%s) in %s%s, computed by the %s pass of %s (%s)", v,
             c->pass == NNCC_BACKWARD ? "the gradient of " : "", c->what,
             c->pass == NNCC_BACKWARD ? "backward" : "forward", n->name, n->loc);
  return 1;
}

int find_nonfinite_tensor(const NnccModel *m, const NnccTrainConfig *c, const float *params,
                          const float *state, int params_only, NnccFound *f) {
  static const char *adam[] = {"optim.exp_avg.", "optim.exp_avg_sq."}, *sgd[] = {"optim.momentum_buffer."};
  const char **pre = optim_is_adam(c->optim) ? adam : sgd;
  int npre = !state ? 0 : optim_is_adam(c->optim) ? 2 : c->momentum != 0.0 ? 1 : 0;
  for (int k = -1; k < npre; k++)
    for (int i = 0; i < m->nparams; i++) {
      const NnccParam *q = &m->params[i];
      if ((k >= 0 || params_only) && q->kind != NNCC_PARAM) continue;
      const float *x = k < 0 ? params + q->offset : state + (size_t)k * m->params_floats + q->offset;
      size_t at = first_nonfinite(x, q->numel);
      if (at == q->numel) continue;
      snprintf(f->name, sizeof f->name, "%s%s", k < 0 ? "" : pre[k], q->name);
      f->index = at;
      f->value = x[at];
      return 1;
    }
  return 0;
}
