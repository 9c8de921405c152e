/*
 * gradcheck.c -- checks a generated model's backward() against central
 * differences of its loss, computed in double from the float forward().
 *
 * Linked with a model compiled with -DNNCC_NO_MAIN.  For every trainable
 * parameter it compares the analytic gradient with
 *   (L(p + h) - L(p - h)) / 2h
 * at up to 16 coordinates, the loss being nn.CrossEntropyLoss's mean
 * evaluated in double.  A coordinate whose
 * has left and right slopes that differ sits near a ReLU/max-pool kink and is skipped; more skipped than checked
 * fails, and so does any checked coordinate that disagrees.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nncc_rt.h"
#ifdef _OPENMP
#include <omp.h>
#endif

const NnccModel *nncc_model(void);

static uint64_t rng = 88172645463325252ull;
static double uniform(void) { /* xorshift64 in [0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* Large weights keep pre-activations away from ReLU kinks. */
#ifndef WEIGHT_SCALE
#define WEIGHT_SCALE 4
#endif
#ifndef H_REL
#define H_REL 1e-3f
#endif

static const NnccModel *m;
static NnccState s;
static int *labels;

/* forward in training mode, then the mean cross-entropy in double */
static double loss(void) {
  m->forward(&s, 1);
  double total = 0;
  for (int n = 0; n < m->batch; n++) {
    const float *z = s.logits + (size_t)n * m->classes;
    double mx = z[0], sum = 0;
    for (int c = 1; c < m->classes; c++)
      mx = z[c] > mx ? z[c] : mx;
    for (int c = 0; c < m->classes; c++)
      sum += exp(z[c] - mx);
    total += mx + log(sum) - z[labels[n]];
  }
  return total / m->batch;
}

static void gradients(void) {
  m->forward(&s, 1);
  for (int n = 0; n < m->batch; n++) {
    float *z = s.logits + (size_t)n * m->classes, *d = s.dlogits + (size_t)n * m->classes;
    double mx = z[0], sum = 0;
    for (int c = 1; c < m->classes; c++)
      mx = z[c] > mx ? z[c] : mx;
    for (int c = 0; c < m->classes; c++)
      sum += exp(z[c] - mx);
    for (int c = 0; c < m->classes; c++)
      d[c] = (float)((exp(z[c] - mx) / sum - (c == labels[n])) / m->batch);
  }
  m->backward(&s);
}

/* The one-sided slopes (L(v) - L(v - h)) / h and (L(v + h) - L(v)) / h,
 * in double from the float forward */
static void slopes(float *v, float h, double *left, double *right) {
  float saved = *v;
  double mid = loss();
  *v = saved + h;
  double up = loss();
  *v = saved - h;
  double down = loss();
  *v = saved;
  *left = (mid - down) / ((double)saved - (double)(saved - h));
  *right = (up - mid) / ((double)(saved + h) - (double)saved);
}

int main(void) {
  m = nncc_model();
  size_t in = (size_t)m->batch * m->in_c * m->in_h * m->in_w, out = (size_t)m->batch * m->classes;
  s.params = calloc(m->params_floats, sizeof(float));
  s.grads = calloc(m->params_floats, sizeof(float));
#ifdef _OPENMP
  s.threads = omp_get_max_threads(); /* the team the kernel scratch is sized for */
#else
  s.threads = 1;
#endif
  size_t arena = m->arena_bytes + (m->scratch_bytes ? m->scratch_bytes(s.threads) : 0);
  s.arena = aligned_alloc(64, (arena + 63) / 64 * 64);
  s.input = malloc(in * sizeof(float));
  s.logits = malloc(out * sizeof(float));
  s.dlogits = malloc(out * sizeof(float));
  labels = malloc(sizeof(int) * (size_t)m->batch);
  s.seed = 12345;
  s.step = 3;
  for (size_t i = 0; i < in; i++)
    s.input[i] = (float)uniform();
  for (int n = 0; n < m->batch; n++)
    labels[n] = (int)(uniform() * m->classes);
  /* random parameters, batch-norm scales and shifts included */
  for (int k = 0; k < m->nparams; k++) {
    const NnccParam *p = &m->params[k];
    for (size_t i = 0; i < p->numel; i++) {
      double u = 2 * uniform() - 1;
      float *v = &s.params[p->offset + i];
      switch (p->init) {
      case NNCC_INIT_UNIFORM: *v = (float)(u * p->bound * WEIGHT_SCALE); break;
      case NNCC_INIT_ONES: *v = p->kind == NNCC_PARAM ? (float)(1 + 0.3 * u) : 1.0f; break;
      case NNCC_INIT_ZEROS: *v = p->kind == NNCC_PARAM ? (float)(0.2 * u) : 0.0f; break;
      }
    }
  }
  gradients();

  int failures = 0;
  for (int k = 0; k < m->nparams; k++) {
    const NnccParam *p = &m->params[k];
    if (p->kind != NNCC_PARAM)
      continue;
    double gmax = 0, worst = 0;
    for (size_t i = 0; i < p->numel; i++)
      gmax = fmax(gmax, fabs(s.grads[p->offset + i]));
    /* the floor covers float noise, ~1e-4 in a slope, where the gradient is ~0 */
    double scale = fmax(gmax, 0.05);
    size_t stride = p->numel > 16 ? p->numel / 16 : 1;
    int checked = 0, kinks = 0;
    for (size_t i = 0; i < p->numel; i += stride) {
      float *v = &s.params[p->offset + i], saved = *v;
      float h = H_REL * fmaxf(1.0f, fabsf(saved));
      double left, right;
      slopes(v, h, &left, &right);
      double narrow = (left + right) / 2; /* the central difference */
      /* A ReLU or max-pool kink within reach makes the two slopes differ:
       * the loss is not smooth there and the coordinate proves nothing. */
      if (fabs(right - left) > fmax(1e-2 * gmax, 5e-4)) {
        kinks++;
        continue;
      }
      checked++;
      /* error relative to the tensor's largest gradient, with a floor for
       * tensors whose gradient is tiny everywhere */
      double err = fabs(narrow - s.grads[p->offset + i]) / scale;
      if (err > worst)
        worst = err;
    }
    bool bad = worst > 1e-2 || kinks > checked;
    printf("%-32s max|g| %.3e  max error %.2e  (%d checked, %d near a kink)%s\n", p->name, gmax,
           worst, checked, kinks, bad ? "  FAIL" : "");
    failures += bad;
  }
  free(s.params), free(s.grads), free(s.arena), free(s.input), free(s.logits), free(s.dlogits);
  free(labels);
  return failures ? 1 : 0;
}
