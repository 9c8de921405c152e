/*
 * loss.c -- softmax cross-entropy, as nn.CrossEntropyLoss (mean reduction,
 * label_smoothing e as in PyTorch 1.13).
 *
 * Per row: m = max x, lse = m + log(sum exp(x - m)) (stable for any
 * logits), -log p_c = lse - x[c], and
 *   loss = (1-e) * (lse - x[label]) + e * mean_c(lse - x[c])
 * (e = 0: exactly lse - x[label]).  Everything is accumulated in double in
 * row order by one thread, so the result is the same for any thread count;
 * batch x classes is tiny next to the network, so this costs nothing.
 */
#include <math.h>

#include "rt.h"

double loss_lse(const float *x, int classes) {
  double m = x[0], s = 0.0;
  for (int c = 1; c < classes; c++)
    if (x[c] > m) m = x[c];
  for (int c = 0; c < classes; c++) s += exp((double)x[c] - m);
  return m + log(s);
}

int loss_argmax(const float *x, int classes) {
  int best = 0; /* the first maximum, like torch.argmax on CPU */
  for (int c = 1; c < classes; c++)
    if (x[c] > x[best]) best = c;
  return best;
}

/* One row's loss with label smoothing e, given its lse. */
static double row_loss(const float *x, int label, int classes, double lse, double e) {
  double nll = lse - (double)x[label];
  if (e == 0.0) return nll;
  double smooth = 0.0;
  for (int c = 0; c < classes; c++) smooth += lse - (double)x[c];
  return (1.0 - e) * nll + e * (smooth / classes);
}

double loss_xent(const float *logits, const int *labels, int batch, int classes, double e,
                 float *dlogits) {
  double total = 0.0, off = e / classes; /* the smoothed target off the label */
  for (int b = 0; b < batch; b++) {
    const float *x = logits + (size_t)b * (size_t)classes;
    float *dx = dlogits + (size_t)b * (size_t)classes;
    double lse = loss_lse(x, classes);
    total += row_loss(x, labels[b], classes, lse, e);
    for (int c = 0; c < classes; c++) {
      double p = exp((double)x[c] - lse);
      /* e = 0: the target is exactly 1.0 or 0.0 */
      dx[c] = (float)((p - ((c == labels[b] ? 1.0 - e : 0.0) + off)) / batch);
    }
  }
  return total / batch;
}

double loss_xent_eval(const float *logits, const int *labels, int n, int classes, double e,
                      long *correct) {
  double total = 0.0;
  for (int b = 0; b < n; b++) {
    const float *x = logits + (size_t)b * (size_t)classes;
    total += row_loss(x, labels[b], classes, loss_lse(x, classes), e);
    *correct += loss_argmax(x, classes) == labels[b];
  }
  return total;
}
