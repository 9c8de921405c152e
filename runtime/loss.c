/*
 * loss.c -- softmax cross-entropy, as nn.CrossEntropyLoss (mean reduction).
 *
 * Per row: m = max x, lse = m + log(sum exp(x - m)) (stable for any
 * logits), loss = lse - x[label].  Everything is accumulated in double in
 * row order by one thread, so the result is the same for any thread count;
 * batch x classes is tiny next to the network, so this costs nothing.
 */
#include <math.h>

#include "rt.h"

/* Returns lse for one row and the row's max in *mx. */
static double row_lse(const float *x, int classes, double *mx) {
  double m = x[0], s = 0.0;
  for (int c = 1; c < classes; c++)
    if (x[c] > m) m = x[c];
  for (int c = 0; c < classes; c++) s += exp((double)x[c] - m);
  *mx = m;
  return m + log(s);
}

double loss_xent(const float *logits, const int *labels, int batch, int classes, float *dlogits) {
  double total = 0.0;
  for (int b = 0; b < batch; b++) {
    const float *x = logits + (size_t)b * (size_t)classes;
    float *dx = dlogits + (size_t)b * (size_t)classes;
    double m, lse = row_lse(x, classes, &m);
    total += lse - (double)x[labels[b]];
    for (int c = 0; c < classes; c++) {
      double p = exp((double)x[c] - lse);
      dx[c] = (float)((p - (c == labels[b] ? 1.0 : 0.0)) / batch);
    }
  }
  return total / batch;
}

double loss_xent_eval(const float *logits, const int *labels, int n, int classes, long *correct) {
  double total = 0.0;
  for (int b = 0; b < n; b++) {
    const float *x = logits + (size_t)b * (size_t)classes;
    double m, lse = row_lse(x, classes, &m);
    int best = 0; /* first maximum, like torch.argmax on CPU */
    for (int c = 1; c < classes; c++)
      if (x[c] > x[best]) best = c;
    total += lse - (double)x[labels[b]];
    *correct += best == labels[b];
  }
  return total;
}
