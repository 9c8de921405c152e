/*
 * settings.c -- the ranges of the trainer's numeric settings, one table for
 * the command line (cli.c) and a checkpoint's metadata (ckpt.c): a value
 * a flag refuses is refused in a file too, with the same words.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

/* Real settings: lo < v < hi, or lo <= v where lo_in (NaN fails both). */
static const struct {
  const char *key;
  double lo, hi;
  int lo_in;
  const char *what;
} reals[] = {
    {"lr", 0, INFINITY, 0, "a positive number"},
    {"eps", 0, INFINITY, 0, "a positive number"},
    {"beta1", 0, 1, 1, "a number in [0, 1)"},
    {"beta2", 0, 1, 1, "a number in [0, 1)"},
    {"weight_decay", 0, INFINITY, 1, "a non-negative number"},
    {"momentum", 0, INFINITY, 1, "a non-negative number"},
    {"clip_grad_norm", 0, INFINITY, 1, "a non-negative number (0: off)"},
    {"clip_grad_value", 0, INFINITY, 1, "a non-negative number (0: off)"},
    {"epoch_loss", 0, INFINITY, 1, "a non-negative number"},
};

/* Integer settings: decimal digits only, lo <= v <= hi. */
static const struct {
  const char *key;
  uint64_t lo, hi;
  const char *what;
} uints[] = {
    {"epochs", 1, 1000000, "a positive integer (at most 1000000)"},
    {"steps", 1, UINT64_MAX, "a positive integer"},
    {"threads", 1, 4096, "a positive integer (at most 4096)"},
    {"seed", 0, UINT64_MAX, "a non-negative integer"},
    {"step", 0, UINT64_MAX, "a non-negative integer"},
    {"epoch", 0, 1000000, "a non-negative integer (at most 1000000)"},
    {"epoch_step", 0, INT32_MAX, "a non-negative integer (at most 2147483647)"},
    {"has_optim", 0, 1, "0 or 1"},
    {"nesterov", 0, 1, "0 or 1"},
    {"val", 0, INT32_MAX, "a non-negative integer (at most 2147483647)"},
    {"top", 1, 256, "an integer from 1 to 256"},
};

const char *setting_real(const char *key, const char *text, double *out) {
  for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
    if (strcmp(key, reals[i].key) != 0) continue;
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || !(reals[i].lo_in ? v >= reals[i].lo : v > reals[i].lo) || !(v < reals[i].hi))
      return reals[i].what;
    *out = v;
    return NULL;
  }
  return "a known setting (nncc bug: unknown key)";
}

const char *setting_uint(const char *key, const char *text, uint64_t *out) {
  for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
    if (strcmp(key, uints[i].key) != 0) continue;
    char *end;
    if (*text < '0' || *text > '9') return uints[i].what; /* no sign, no space */
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end || errno || v < uints[i].lo || v > uints[i].hi) return uints[i].what;
    *out = v;
    return NULL;
  }
  return "a known setting (nncc bug: unknown key)";
}
