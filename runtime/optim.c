/*
 * optim.c -- torch.optim.Adam, AdamW and SGD (with Nesterov momentum), and
 * torch.nn.utils' gradient clipping, as PyTorch 1.13's single-tensor
 * (foreach=False) code computes them.
 *
 * The scalar factors are computed in double like PyTorch's Python floats
 * and rounded to float where PyTorch hands them to a float tensor op; each
 * tensor op below is one float expression in the same order as the ATen
 * kernel (mul_, add_(alpha), addcmul_, sqrt, div, add_, addcdiv_).  ATen's
 * vectorized paths may fuse a multiply-add, so agreement is to an ulp or
 * two per step rather than bit-for-bit.
 *
 * State layout (same offsets as the parameter block): Adam and AdamW keep
 * exp_avg in state[0, F) and exp_avg_sq in state[F, 2F); SGD with momentum
 * keeps momentum_buffer in state[0, F).  F = model->params_floats.
 *
 * Clipping's norm is summed in double, each tensor in index order, then
 * the tensors in parameter order, by one thread: the same bits for every
 * thread count.  torch sums in float32 in its own blocked order, so the
 * norm agrees to an ulp or so, not bit for bit.
 */
#include <math.h>

#include "nncc_simd.h"
#include "rt.h"

size_t optim_state_floats(const NnccModel *m, const NnccTrainConfig *c) {
  if (optim_is_adam(c->optim)) return 2 * m->params_floats;
  return c->momentum != 0.0 ? m->params_floats : 0;
}

/* Small tensors run serially: a parallel region costs more than they do. */
#define OMP_MIN 4096

static void adam_tensor(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, long n, const NnccTrainConfig *c, uint64_t step) {
  double bc1 = 1.0 - pow(c->beta1, (double)step);
  double bc2 = 1.0 - pow(c->beta2, (double)step);
  const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
  const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
  const float wd = (float)c->weight_decay, eps = (float)c->eps;
  const float bc2_sqrt = (float)sqrt(bc2), neg_step_size = (float)-(c->lr / bc1);
  /* Adam adds weight_decay * p to the gradient; AdamW first scales p by
   * 1 - lr * weight_decay (a Python float, then float32 in mul_). */
  const int decay = c->weight_decay != 0.0 && c->optim == NNCC_ADAM;
  const int decoupled = c->weight_decay != 0.0 && c->optim == NNCC_ADAMW;
  const float shrink = (float)(1.0 - c->lr * c->weight_decay);
  /* 16 elements at a time (the last block masked), by nncc_simd.h's
   * lane-by-lane operations: the scalar expressions' bits, with sqrt and
   * the divisions in vector registers (plain sqrtf keeps the loop scalar:
   * it may set errno) */
  const nk_v vb1 = nk_bcast(b1), vone_b1 = nk_bcast(one_b1), vb2 = nk_bcast(b2);
  const nk_v vone_b2 = nk_bcast(one_b2), vwd = nk_bcast(wd), veps = nk_bcast(eps);
  const nk_v vbc2 = nk_bcast(bc2_sqrt), vstep = nk_bcast(neg_step_size), vshrink = nk_bcast(shrink);
  long nb = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN)
  for (long blk = 0; blk < nb; blk++) {
    long i = blk * 16;
    uint32_t lanes = nk_lanes(n - i >= 16 ? 16 : (int)(n - i));
    nk_v pi = nk_load_mask(p + i, lanes), gi = nk_load_mask(g + i, lanes);
    nk_v mi = nk_load_mask(m + i, lanes), vi = nk_load_mask(v + i, lanes);
    if (decoupled) pi = nk_mul(pi, vshrink);
    if (decay) gi = nk_add(gi, nk_mul(vwd, pi));
    mi = nk_add(nk_mul(mi, vb1), nk_mul(vone_b1, gi));
    vi = nk_add(nk_mul(vi, vb2), nk_mul(nk_mul(vone_b2, gi), gi));
    nk_v denom = nk_add(nk_div(nk_sqrt(vi), vbc2), veps);
    pi = nk_add(pi, nk_div(nk_mul(vstep, mi), denom));
    nk_store_mask(m + i, lanes, mi), nk_store_mask(v + i, lanes, vi), nk_store_mask(p + i, lanes, pi);
  }
}

static void sgd_tensor(float *restrict p, const float *restrict g, float *restrict buf, long n,
                       const NnccTrainConfig *c, uint64_t step) {
  const float wd = (float)c->weight_decay, mom = (float)c->momentum, neg_lr = (float)-c->lr;
  const int decay = c->weight_decay != 0.0;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN)
  for (long i = 0; i < n; i++) {
    float d = decay ? g[i] + wd * p[i] : g[i];
    if (buf) {
      /* torch.clone(d_p) on the first step, then buf*momentum + d_p;
       * Nesterov: d_p + momentum*buf, else buf. */
      buf[i] = step == 0 ? d : buf[i] * mom + d;
      d = c->nesterov ? d + mom * buf[i] : buf[i];
    }
    p[i] = p[i] + neg_lr * d;
  }
}

/* sum of squares of one tensor, in double and index order */
static double sum_squares(const float *g, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
  return s;
}

double optim_clip(const NnccModel *m, const NnccTrainConfig *c, float *grads) {
  if (c->clip_grad_value > 0) {
    /* clamp_(min=-v, max=v), v as float32 */
    const float v = (float)c->clip_grad_value;
    for (int i = 0; i < m->nparams; i++) {
      const NnccParam *q = &m->params[i];
      if (q->kind != NNCC_PARAM) continue;
      float *g = grads + q->offset;
      for (size_t k = 0; k < q->numel; k++) g[k] = g[k] < -v ? -v : g[k] > v ? v : g[k];
    }
  }
  if (!(c->clip_grad_norm > 0)) return -1;
  /* torch: the norm of the stack of the tensors' norms, in float32 */
  double total = 0;
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (q->kind != NNCC_PARAM) continue;
    float norm = (float)sqrt(sum_squares(grads + q->offset, q->numel));
    total += (double)norm * (double)norm;
  }
  const float total_norm = (float)sqrt(total);
  /* clip_coef = max_norm / (total_norm + 1e-6), which torch computes as
   * reciprocal(total_norm + 1e-6) * max_norm (Tensor.__rtruediv__), clamped
   * to at most 1; every gradient is multiplied by it (by 1 too, exactly) */
  float coef = (1.0f / (total_norm + 1e-6f)) * (float)c->clip_grad_norm;
  if (coef > 1.0f) coef = 1.0f;
  if (coef != 1.0f)
    for (int i = 0; i < m->nparams; i++) {
      const NnccParam *q = &m->params[i];
      if (q->kind != NNCC_PARAM) continue;
      float *g = grads + q->offset;
      for (size_t k = 0; k < q->numel; k++) g[k] = g[k] * coef;
    }
  return total_norm;
}

void optim_step_range(const NnccModel *m, const NnccTrainConfig *c, float *params,
                      const float *grads, float *state, uint64_t step, size_t lo, size_t hi) {
  size_t F = m->params_floats;
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (q->kind != NNCC_PARAM) continue;
    size_t a = q->offset > lo ? q->offset : lo, e = q->offset + q->numel < hi ? q->offset + q->numel : hi;
    if (a >= e) continue;
    if (optim_is_adam(c->optim))
      adam_tensor(params + a, grads + a, state + a, state + F + a, (long)(e - a), c, step + 1);
    else
      sgd_tensor(params + a, grads + a, c->momentum != 0.0 ? state + a : NULL, (long)(e - a), c,
                 step);
  }
}

void optim_step(const NnccModel *m, const NnccTrainConfig *c, float *params,
                const float *grads, float *state, uint64_t step) {
  optim_step_range(m, c, params, grads, state, step, 0, m->params_floats);
}
