/*
 * testutil.h -- shared pieces of the runtime tests: a hand-written tiny
 * model (a linear softmax classifier), synthetic IDX files, and running a
 * function in a forked child with its output captured.
 */
#ifndef NNCC_TESTUTIL_H
#define NNCC_TESTUTIL_H

#include <check.h>

#include "rt.h"

/* The tiny model: 4x4 images padded by 1 into 6x6, 3 classes, batch 4.
 * fc.weight [3,36], fc.bias [3], plus stats.running_mean [3] (NNCC_BUFFER,
 * a running mean of the logits in training mode) and
 * stats.num_batches_tracked (NNCC_BUFFER_COUNT) to exercise buffers. */
#define TINY_CLASSES 3
#define TINY_IMG 4
extern const NnccModel tiny_model;
/* Same names, but fc.weight is [3,16] (input 4x4 without padding). */
extern const NnccModel tiny_model_nopad;
/* When >= 0, the tiny model's forward raises tiny_raise_signal (SIGINT
 * unless set) at this step. */
extern long tiny_raise_at_step;
extern int tiny_raise_signal;
/* When >= 0, the tiny model makes a NaN at this step, where tiny_nan_in
 * says: 'l' logit 5 (the default), 'm' stats.running_mean[0] (training
 * forward), 'g' the gradient of fc.bias[1]. */
extern long tiny_nan_at_step;
extern char tiny_nan_in;

/* A fresh temporary directory (removed by rm_rf). */
char *tmpdir_new(void);
void rm_rf(const char *dir);
char *path_in(const char *dir, const char *name); /* static buffer ring */

/* Writes an IDX file: magic, dims, then data (gzip when gz). */
void write_idx(const char *path, int gz, uint32_t magic, int rank, const uint32_t *dims,
               const unsigned char *data, size_t len);
/* Writes a learnable synthetic data set (label = i % classes, a bright
 * stripe per class plus noise) with the four standard file names. */
void write_dataset(const char *dir, int ntrain, int ntest, int gz);

/* Runs fn(arg) in a child with stdout/stderr captured into out (NUL-
 * terminated); returns its exit status (128+signal if killed). */
int capture(int (*fn)(void *), void *arg, char *out, size_t cap);
/* Runs nncc_main(model, "tiny", args...) in a child; args end with NULL. */
int run_cli(const NnccModel *m, char *out, size_t cap, ...);

/* Whole file into a malloc'ed buffer; *len its size.  NULL if absent. */
unsigned char *slurp(const char *path, size_t *len);
int files_equal(const char *a, const char *b);

/* Run every test of s; the exit status for main(). */
int run_suite(Suite *s);

#define ck_assert_contains(hay, needle)                                                        \
  ck_assert_msg(strstr((hay), (needle)) != NULL, "expected \"%s\" in output:\n%s", (needle), (hay))

#endif
