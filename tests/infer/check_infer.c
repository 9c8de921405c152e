/*
 * check_infer.c -- a generated predictor (nncc --infer) against the
 * trainer's eval-mode logits (eval --logits), on the same IDX test images.
 *
 * Built together with the generated file: cc -std=c99 -I DIR
 * -DINFER_H='"MODEL_infer.h"' -DMODEL=mnist_cnn -DUMODEL=MNIST_CNN
 * [-DWEIGHTS] check_infer.c DIR/MODEL_infer.c -lm; the header's macros
 * make it generic over models.
 *
 *   check_infer IMAGES COUNT LOGITS.safetensors [--out F] [--weights W --bad B...]
 *
 * Prepares the first COUNT images (0: all) as the trainer does
 * (runtime/batch.c: pixel / 255.0f at the model's padding, zeros around),
 * runs MODEL_predict_batch on all of them and MODEL_predict on each (the
 * same bits required), checks the API's refusals, and compares with the
 * trainer's logits: max |diff| / max |ref| within 1e-5 and the same
 * argmax for every image.  --out writes the logits (raw floats) for a
 * bit-for-bit comparison.  With -DWEIGHTS: predicting before the weights
 * are loaded is refused, each --bad file is refused (and predicting still
 * is), then --weights W is loaded.  Exits 0 if all holds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include INFER_H

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(x) #x
#define STR(x) STR_(x)
#define PREDICT CAT(MODEL, _predict)
#define PREDICT_BATCH CAT(MODEL, _predict_batch)
#define LOAD_WEIGHTS CAT(MODEL, _load_weights)
#define C_ CAT(UMODEL, _INPUT_C)
#define H_ CAT(UMODEL, _INPUT_H)
#define W_ CAT(UMODEL, _INPUT_W)
#define TOP CAT(UMODEL, _PAD_TOP)
#define LEFT CAT(UMODEL, _PAD_LEFT)
#define CLASSES CAT(UMODEL, _CLASSES)
#define PLANE ((size_t)C_ * H_ * W_)

static int fails;
static void fail(const char *what) {
  printf("FAIL: %s\n", what);
  fails++;
}

static unsigned be32(const unsigned char *p) {
  return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

static void *read_file(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  char *d = NULL;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (*len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
      !(d = malloc((size_t)*len + 1)) || fread(d, 1, (size_t)*len, f) != (size_t)*len) {
    fprintf(stderr, "check_infer: cannot read %s\n", path);
    exit(2);
  }
  fclose(f);
  d[*len] = 0;
  return d;
}

/* The integers after `key` in the safetensors header (from `from` on). */
static void header_ints(const char *from, const char *key, long *v, int n) {
  const char *p = strstr(from, key);
  for (int i = 0; i < n; i++) {
    while (p && *p && (*p < '0' || *p > '9'))
      p++;
    if (!p || !*p) {
      fprintf(stderr, "check_infer: no %s in the logits file\n", key);
      exit(2);
    }
    v[i] = strtol(p, (char **)&p, 10);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: check_infer IMAGES COUNT LOGITS [--out F] [--weights W --bad B...]\n");
    return 2;
  }
  const char *out = NULL, *good = NULL, *bad[8];
  int nbad = 0;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--out") == 0)
      out = argv[i + 1];
    else if (strcmp(argv[i], "--weights") == 0)
      good = argv[i + 1];
    else if (strcmp(argv[i], "--bad") == 0 && nbad < 8)
      bad[nbad++] = argv[i + 1];
  }
  long len;
  unsigned char *idx = read_file(argv[1], &len);
  int n = (int)be32(idx + 4), rows = (int)be32(idx + 8), cols = (int)be32(idx + 12);
  int count = atoi(argv[2]);
  if (count <= 0 || count > n)
    count = n;
  if (be32(idx) != 0x803 || len != 16 + (long)n * rows * cols || TOP + rows > H_ || LEFT + cols > W_) {
    fprintf(stderr, "check_infer: %s: not IDX3 images of this model\n", argv[1]);
    return 2;
  }
  float *input = calloc((size_t)count * PLANE, sizeof(float));
  float *logits = malloc((size_t)count * CLASSES * sizeof(float)), one[CLASSES];
  for (int b = 0; b < count; b++)
    for (int y = 0; y < rows; y++)
      for (int x = 0; x < cols; x++)
        input[(size_t)b * PLANE + (size_t)(TOP + y) * W_ + LEFT + x] =
            (float)idx[16 + ((size_t)b * rows + y) * cols + x] / 255.0f;

#ifdef WEIGHTS
  if (PREDICT(input, one) == 0 || PREDICT_BATCH(input, logits, 1) == 0)
    fail("predicting before the weights are loaded");
  for (int i = 0; i < nbad; i++) {
    if (LOAD_WEIGHTS(bad[i]) == 0)
      fail("a bad weights file loaded");
    if (PREDICT(input, one) == 0)
      fail("predicting after a bad weights file");
  }
  if (!good || LOAD_WEIGHTS(good) != 0) {
    fail("loading the weights");
    return 1;
  }
#else
  (void)good, (void)bad, (void)nbad;
#endif
  if (PREDICT_BATCH(input, logits, -1) == 0 || PREDICT(NULL, one) == 0 || PREDICT(input, NULL) == 0 ||
      PREDICT_BATCH(NULL, logits, 1) == 0 || PREDICT_BATCH(NULL, NULL, 0) != 0)
    fail("the API's argument checks");
  clock_t t0 = clock();
  if (PREDICT_BATCH(input, logits, count) != 0)
    fail("predict_batch");
  double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC / count;
  for (int b = 0; b < count; b++)
    if (PREDICT(input + (size_t)b * PLANE, one) != 0 || memcmp(one, logits + (size_t)b * CLASSES, sizeof one) != 0) {
      fail("predict differs from predict_batch");
      break;
    }

  long hlen, shape[2], offs[2];
  char *st = read_file(argv[3], &len);
  memcpy(&hlen, st, 8); /* little-endian u64; a header under 2^63 */
  st[8 + hlen - 1] = 0;
  const char *t = strstr(st + 8, "\"logits\"");
  if (!t || !strstr(t, "F32")) {
    fprintf(stderr, "check_infer: %s: no F32 tensor logits\n", argv[3]);
    return 2;
  }
  header_ints(t, "\"shape\"", shape, 2);
  header_ints(t, "\"data_offsets\"", offs, 2);
  if (shape[0] < count || shape[1] != CLASSES || offs[1] - offs[0] != shape[0] * shape[1] * 4 ||
      8 + hlen + offs[1] > len) {
    fprintf(stderr, "check_infer: %s: logits [%ld, %ld], expected [>= %d, %d]\n", argv[3], shape[0],
            shape[1], count, CLASSES);
    return 2;
  }
  const float *ref = (const float *)(void *)(st + 8 + hlen + offs[0]); /* little-endian host */
  double maxdiff = 0, maxref = 0;
  int agree = 0;
  for (int b = 0; b < count; b++) {
    int am = 0, ar = 0;
    for (int c = 0; c < CLASSES; c++) {
      float p = logits[(size_t)b * CLASSES + c], r = ref[(size_t)b * CLASSES + c];
      double d = fabs((double)p - r);
      maxdiff = d > maxdiff || d != d ? d : maxdiff;
      maxref = fabs(r) > maxref ? fabs(r) : maxref;
      am = p > logits[(size_t)b * CLASSES + am] ? c : am;
      ar = r > ref[(size_t)b * CLASSES + ar] ? c : ar;
    }
    agree += am == ar;
  }
  double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
  printf("%s: %d images, max rel diff %.2e (max abs %.2e), argmax %d/%d agree, %.3f ms per image\n",
         STR(MODEL), count, rel, maxdiff, agree, count, ms);
  if (!(rel <= 1e-5))
    fail("the logits differ from the trainer's by more than 1e-5 relative");
  if (agree != count)
    fail("an argmax differs from the trainer's");
  if (out) {
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)count * CLASSES, f) != (size_t)count * CLASSES ||
        fclose(f) != 0)
      fail("writing --out");
  }
  free(input);
  free(logits);
  free(idx);
  free(st);
  return fails ? 1 : 0;
}
