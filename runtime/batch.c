/*
 * batch.c -- epoch order, batch assembly and parameter initialization.
 *
 * Shuffling is a Fisher-Yates pass driven by rng_stream(seed, 1 + epoch),
 * so an epoch's order depends on nothing but (seed, epoch): a resumed run
 * rebuilds it without saved generator state.
 */
#include <string.h>

#include "rt.h"

void batch_order(uint32_t *order, int n, uint64_t seed, int epoch, int shuffle) {
  for (int i = 0; i < n; i++) order[i] = (uint32_t)i;
  if (!shuffle) return;
  NnccRng r = rng_stream(seed, RNG_STREAM_SHUFFLE(epoch));
  for (int i = n - 1; i > 0; i--) {
    uint32_t j = (uint32_t)rng_below(&r, (uint64_t)i + 1);
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* Augmentation of image `index` in an epoch: RandomCrop(size, padding=P)
 * pads the image with P zeros on every side and cuts size x size at a
 * random (top, left) in [0, 2P]^2, so output pixel (y, x) is input pixel
 * (y + top - P, x + left - P), or 0 outside it; RandomHorizontalFlip then
 * mirrors x with probability 1/2.  The draws come from a stream of their
 * own per (seed, epoch, image), in that order: top, left, flip. */
void batch_augment_draw(const NnccAugment *aug, uint32_t index, int *dy, int *dx, int *flip) {
  NnccRng r = rng_stream(aug->seed, RNG_STREAM_AUGMENT(aug->epoch, index));
  *dy = *dx = 0;
  if (aug->crop) {
    *dy = (int)rng_below(&r, 2 * (uint64_t)aug->crop + 1) - aug->crop;
    *dx = (int)rng_below(&r, 2 * (uint64_t)aug->crop + 1) - aug->crop;
  }
  *flip = aug->hflip ? (int)(rng_next(&r) >> 63) : 0;
}

/* Pixels become x/255 in float, exactly what torchvision's ToTensor does
 * (byte -> float, then a float division by 255). */
void batch_fill(const NnccAugment *aug, const NnccModel *m, const NnccData *d, const uint32_t *order,
                int count, float *input, int *labels) {
  size_t plane = (size_t)m->in_h * (size_t)m->in_w;
  memset(input, 0, (size_t)m->batch * plane * sizeof *input);
  memset(labels, 0, (size_t)m->batch * sizeof *labels);
  for (int b = 0; b < count; b++) {
    const unsigned char *img = d->images + (size_t)order[b] * (size_t)d->rows * (size_t)d->cols;
    float *dst = input + (size_t)b * plane + (size_t)m->pad_top * (size_t)m->in_w + (size_t)m->pad_left;
    int dy = 0, dx = 0, flip = 0;
    if (aug) batch_augment_draw(aug, order[b], &dy, &dx, &flip);
    /* crop, then flip: x takes source column sx = (flip ? cols-1-x : x) + dx,
     * in the image for x in [x0, x1); the rest stays 0 (loops without a
     * test per pixel, which the compilers vectorize) */
    int cols = d->cols;
    int x0 = flip ? (dx > 0 ? dx : 0) : (dx < 0 ? -dx : 0);
    int x1 = flip ? (dx < 0 ? cols + dx : cols) : (dx > 0 ? cols - dx : cols);
    for (int y = 0; y < d->rows; y++) {
      int sy = y + dy;
      if (sy < 0 || sy >= d->rows) continue;
      const unsigned char *src = img + (size_t)sy * (size_t)cols;
      float *row = dst + (size_t)y * (size_t)m->in_w;
      if (flip)
        for (int x = x0; x < x1; x++) row[x] = (float)src[cols - 1 - x + dx] / 255.0f;
      else
        for (int x = x0; x < x1; x++) row[x] = (float)src[x + dx] / 255.0f;
    }
    labels[b] = d->labels[order[b]];
  }
}

/* One stream for the whole model, drawn in parameter order: adding a
 * parameter at the end does not change the earlier ones' values. */
void params_init(const NnccModel *m, float *params, uint64_t seed) {
  NnccRng r = rng_stream(seed, RNG_STREAM_INIT);
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *p = &m->params[i];
    float *x = params + p->offset;
    for (size_t k = 0; k < p->numel; k++) {
      switch (p->init) {
      case NNCC_INIT_UNIFORM: x[k] = rng_uniform(&r, p->bound); break;
      case NNCC_INIT_ZEROS: x[k] = 0.0f; break;
      case NNCC_INIT_ONES: x[k] = 1.0f; break;
      }
    }
  }
}
