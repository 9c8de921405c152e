/*
 * report.c -- `eval --report`: per-class accuracy, the confusion matrix and
 * the test images the model got wrong with the most confidence, printed
 * and (--report-json) written as JSON (docs/runtime.md).
 *
 * A prediction is the first largest logit (loss_argmax, as the accuracy
 * counts it); its confidence the softmax probability of that class, from
 * the row's log-sum-exp (loss_lse) in double.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int report_init(NnccReport *r, int classes) {
  memset(r, 0, sizeof *r);
  r->classes = classes;
  r->confusion = calloc((size_t)classes * (size_t)classes, sizeof *r->confusion);
  if (!r->confusion) {
    rt_error("out of memory for a %dx%d confusion matrix", classes, classes);
    return -1;
  }
  return 0;
}

void report_free(NnccReport *r) {
  free(r->confusion);
  r->confusion = NULL;
}

/* Keeps the NNCC_REPORT_WRONG most confident mistakes, the most confident
 * first; among equal confidences the lower image index first. */
static void keep_wrong(NnccReport *r, int index, int label, int pred, double p) {
  int n = r->nwrong, at = n;
  while (at > 0 && (r->wrong[at - 1].p < p || (r->wrong[at - 1].p == p && r->wrong[at - 1].index > index)))
    at--;
  if (at >= NNCC_REPORT_WRONG) return;
  if (n == NNCC_REPORT_WRONG) n--;
  memmove(&r->wrong[at + 1], &r->wrong[at], (size_t)(n - at) * sizeof r->wrong[0]);
  r->wrong[at].index = index, r->wrong[at].label = label, r->wrong[at].pred = pred, r->wrong[at].p = p;
  r->nwrong = n + 1;
}

void report_add(NnccReport *r, const float *logits, const int *labels, const uint32_t *index, int n) {
  int C = r->classes;
  for (int b = 0; b < n; b++) {
    const float *x = logits + (size_t)b * (size_t)C;
    int best = loss_argmax(x, C);
    r->confusion[(size_t)labels[b] * (size_t)C + (size_t)best]++;
    if (best != labels[b])
      keep_wrong(r, (int)index[b], labels[b], best, exp((double)x[best] - loss_lse(x, C)));
  }
}

static long row_sum(const NnccReport *r, int c) {
  long s = 0;
  for (int p = 0; p < r->classes; p++) s += r->confusion[(size_t)c * (size_t)r->classes + (size_t)p];
  return s;
}

static double class_acc(const NnccReport *r, int c) {
  long n = row_sum(r, c);
  return n ? (double)r->confusion[(size_t)c * (size_t)r->classes + (size_t)c] / (double)n : 0.0;
}

void report_print(const NnccReport *r, FILE *f) {
  int C = r->classes;
  fprintf(f, "per-class accuracy:\n  class   images  correct  accuracy\n");
  for (int c = 0; c < C; c++)
    fprintf(f, "  %5d %8ld %8ld    %.4f\n", c, row_sum(r, c),
            r->confusion[(size_t)c * (size_t)C + (size_t)c], class_acc(r, c));
  if (C <= 32) {
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class):\n      ");
    for (int p = 0; p < C; p++) fprintf(f, " %5d", p);
    fprintf(f, "\n");
    for (int c = 0; c < C; c++) {
      fprintf(f, "  %3d ", c);
      for (int p = 0; p < C; p++) fprintf(f, " %5ld", r->confusion[(size_t)c * (size_t)C + (size_t)p]);
      fprintf(f, "\n");
    }
  } else {
    fprintf(f, "confusion matrix: %d classes, too wide to print (--report-json has it)\n", C);
  }
  fprintf(f, "most confidently wrong (test image index from 0):\n");
  if (r->nwrong == 0) fprintf(f, "  none: every test image is classified correctly\n");
  for (int i = 0; i < r->nwrong; i++)
    fprintf(f, "  image %6d  true %3d  predicted %3d  probability %.4f\n", r->wrong[i].index,
            r->wrong[i].label, r->wrong[i].pred, r->wrong[i].p);
}

int report_write_json(const NnccReport *r, const char *path, double loss, double acc, long correct,
                      int images) {
  RtBuf b = {0};
  int C = r->classes;
  rt_buf_printf(&b, "{\"test_loss\":%.17g,\"test_acc\":%.17g,\"correct\":%ld,\"images\":%d,\"classes\":%d,",
                loss, acc, correct, images, C);
  rt_buf_printf(&b, "\"per_class\":[");
  for (int c = 0; c < C; c++)
    rt_buf_printf(&b, "%s{\"class\":%d,\"images\":%ld,\"correct\":%ld,\"accuracy\":%.17g}", c ? "," : "",
                  c, row_sum(r, c), r->confusion[(size_t)c * (size_t)C + (size_t)c], class_acc(r, c));
  rt_buf_printf(&b, "],\"confusion\":[");
  for (int c = 0; c < C; c++) {
    rt_buf_printf(&b, "%s[", c ? "," : "");
    for (int p = 0; p < C; p++)
      rt_buf_printf(&b, "%s%ld", p ? "," : "", r->confusion[(size_t)c * (size_t)C + (size_t)p]);
    rt_buf_printf(&b, "]");
  }
  rt_buf_printf(&b, "],\"most_confident_wrong\":[");
  for (int i = 0; i < r->nwrong; i++)
    rt_buf_printf(&b, "%s{\"index\":%d,\"label\":%d,\"predicted\":%d,\"probability\":%.17g}", i ? "," : "",
                  r->wrong[i].index, r->wrong[i].label, r->wrong[i].pred, r->wrong[i].p);
  rt_buf_printf(&b, "]}\n");
  int rc = -1;
  if (b.failed)
    rt_error("%s: out of memory building the report", path);
  else if (fio_write_file(path, b.p, b.len) != 0)
    rt_error("%s: cannot write the report: %s", path, fio_strerror(errno));
  else
    rc = 0;
  free(b.p);
  return rc;
}
