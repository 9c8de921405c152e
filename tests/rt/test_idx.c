/*
 * test_idx.c -- the IDX reader (raw and gzip), its error messages, and
 * batch assembly (scaling, padding, the zero-padded last batch).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

#include "testutil.h"

static char *dir;

static void setup(void) { dir = tmpdir_new(); }
static void teardown(void) {
  rm_rf(dir);
  free(dir);
}

static int load_train(void *arg) {
  NnccData d;
  (void)arg;
  int rc = idx_load(&d, dir, "train", &tiny_model);
  idx_free(&d);
  return rc ? 1 : 0;
}

/* Loads the train split in a child; returns its status, message in out. */
static int try_load(char *out, size_t cap) { return capture(load_train, NULL, out, cap); }

START_TEST(loads_raw_and_gz) {
  NnccData d;
  write_dataset(dir, 10, 5, _i);
  ck_assert_int_eq(idx_load(&d, dir, "train", &tiny_model), 0);
  ck_assert_int_eq(d.n, 10);
  ck_assert_int_eq(d.rows, 4);
  ck_assert_int_eq(d.cols, 4);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(d.labels[i], i % 3);
  /* Image 7 (label 1): row 1 is the bright stripe. */
  ck_assert_int_ge(d.images[7 * 16 + 4], 160);
  ck_assert_int_lt(d.images[7 * 16 + 0], 64);
  idx_free(&d);
  ck_assert_int_eq(idx_load(&d, dir, "t10k", &tiny_model), 0);
  ck_assert_int_eq(d.n, 5);
  idx_free(&d);
}
END_TEST

START_TEST(fashion_mnist_gz_names_load_when_installed) {
  static const NnccModel *m;
  NnccModel big = tiny_model;
  big.in_h = big.in_w = 28;
  big.pad_top = big.pad_left = big.pad_bottom = big.pad_right = 0;
  big.classes = 10;
  m = &big;
  NnccData d;
  const char *fm = "/usr/share/datasets/fashion-mnist";
  FILE *f = fopen("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "rb");
  if (!f) return; /* package dataset-fashion-mnist not installed */
  fclose(f);
  ck_assert_int_eq(idx_load(&d, fm, "t10k", m), 0);
  ck_assert_int_eq(d.n, 10000);
  idx_free(&d);
}
END_TEST

typedef struct BadCase {
  const char *what;
  char file;        /* which train file to replace: 'i'mages or 'l'abels */
  uint32_t magic;
  int rank;
  uint32_t dims[3];
  size_t len;       /* data bytes actually written */
  int bad_label;
  const char *message; /* after "FILE: " */
} BadCase;

static const BadCase bad[] = {
    {"bad magic", 'i', 0x12345678, 3, {6, 4, 4}, 96, 0, "bad magic 0x12345678, expected 0x00000803 (an IDX3 ubyte image file)"},
    {"labels as images", 'i', 0x801, 1, {6}, 6, 0, "rank 1, expected 3"},
    {"wrong size", 'i', 0x803, 3, {6, 5, 4}, 120, 0, "images are 5x4, model tiny expects 4x4 (input 6x6, padding 1,1)"},
    {"truncated", 'i', 0x803, 3, {6, 4, 4}, 91, 0, "truncated: expected 112 bytes, got 107"},
    {"trailing", 'i', 0x803, 3, {6, 4, 4}, 99, 0, "trailing data: expected 112 bytes, got more"},
    {"huge header", 'i', 0x803, 3, {100000000, 4, 4}, 96, 0, "truncated: expected 1600000016 bytes, got 112"},
    {"implausible", 'i', 0x803, 3, {0xffffffff, 4, 4}, 96, 0, "dimension 0 is 4294967295, implausibly large"},
    {"no images", 'i', 0x803, 3, {0, 4, 4}, 0, 0, "contains no images"},
    {"count mismatch", 'l', 0x801, 1, {5}, 5, 0, "5 labels, but "},
    {"label range", 'l', 0x801, 1, {6}, 6, 1, "label 3 at index 4 is out of range for 3 classes"},
    {"labels truncated", 'l', 0x801, 1, {6}, 0, 0, "truncated: expected 14 bytes, got 8"},
};

START_TEST(rejects_bad_files) {
  const BadCase *c = &bad[_i / 2];
  int gz = _i % 2;
  char out[4096], name[64], want[256];
  unsigned char data[200];
  write_dataset(dir, 6, 3, 0);
  memset(data, 7, sizeof data);
  if (c->file == 'l')
    for (int i = 0; i < 6; i++) data[i] = (unsigned char)(i % 3 + (c->bad_label && i == 4 ? 2 : 0));
  snprintf(name, sizeof name, "%s", c->file == 'i' ? "train-images-idx3-ubyte" : "train-labels-idx1-ubyte");
  remove(path_in(dir, name));
  if (gz) strcat(name, ".gz");
  write_idx(path_in(dir, name), gz, c->magic, c->rank, c->dims, data, c->len);
  ck_assert_int_eq(try_load(out, sizeof out), 1);
  snprintf(want, sizeof want, "nncc: %s: %s", path_in(dir, name), c->message);
  ck_assert_contains(out, want);
  ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "%s: not one line: %s", c->what, out);
}
END_TEST

START_TEST(rejects_missing_and_corrupt_files) {
  char out[4096];
  ck_assert_int_eq(try_load(out, sizeof out), 1);
  ck_assert_contains(out, "train-images-idx3-ubyte: not found (nor train-images-idx3-ubyte.gz)");
  /* An empty file, a short header, and a gzip stream cut in half. */
  write_dataset(dir, 6, 3, 1);
  FILE *f = fopen(path_in(dir, "train-labels-idx1-ubyte.gz"), "wb");
  fclose(f);
  ck_assert_int_eq(try_load(out, sizeof out), 1);
  ck_assert_contains(out, "train-labels-idx1-ubyte.gz: truncated: expected at least 8 bytes of header, got 0");
  f = fopen(path_in(dir, "train-labels-idx1-ubyte.gz"), "wb");
  fwrite("\0\0\x08\x01\0", 1, 5, f);
  fclose(f);
  ck_assert_int_eq(try_load(out, sizeof out), 1);
  ck_assert_contains(out, "truncated: expected at least 8 bytes of header, got 5");
  size_t len;
  unsigned char *gzdata = slurp(path_in(dir, "train-images-idx3-ubyte.gz"), &len);
  f = fopen(path_in(dir, "train-images-idx3-ubyte.gz"), "wb");
  fwrite(gzdata, 1, len / 2, f);
  fclose(f);
  free(gzdata);
  ck_assert_int_eq(try_load(out, sizeof out), 1);
  ck_assert_contains(out, "train-images-idx3-ubyte.gz: ");
}
END_TEST

START_TEST(batches_scale_pad_and_zero_fill) {
  NnccData d;
  write_dataset(dir, 6, 3, 0);
  ck_assert_int_eq(idx_load(&d, dir, "train", &tiny_model), 0);
  float input[4 * 36];
  int labels[4];
  uint32_t order[2] = {5, 2};
  memset(input, 0xff, sizeof input);
  batch_fill(NULL, &tiny_model, &d, order, 2, input, labels);
  for (int b = 0; b < 4; b++)
    for (int y = 0; y < 6; y++)
      for (int x = 0; x < 6; x++) {
        float v = input[b * 36 + y * 6 + x];
        int inside = b < 2 && y >= 1 && y < 5 && x >= 1 && x < 5;
        float want = inside ? (float)d.images[order[b] * 16 + (y - 1) * 4 + (x - 1)] / 255.0f : 0.0f;
        ck_assert_msg(v == want, "b %d y %d x %d: %g vs %g", b, y, x, v, want);
      }
  ck_assert_int_eq(labels[0], 5 % 3);
  ck_assert_int_eq(labels[1], 2 % 3);
  ck_assert_int_eq(labels[2], 0);
  idx_free(&d);
}
END_TEST

/* A gzip bomb: a header declaring `declared` 4x4 images, then `present`
 * bytes of zeros; 40 MB of them compress to about 40 kB. */
static void write_bomb(const char *path, uint32_t declared, size_t present) {
  static const unsigned char zeros[65536];
  uint32_t dims[3] = {declared, 4, 4};
  unsigned char head[16] = {0, 0, 8, 3};
  for (int i = 0; i < 12; i++) head[4 + i] = (unsigned char)(dims[i / 4] >> (24 - 8 * (i % 4)));
  gzFile g = gzopen(path, "wb9");
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(gzwrite(g, head, 16), 16);
  for (size_t left = present, n; left; left -= n) {
    n = left < sizeof zeros ? left : sizeof zeros;
    ck_assert_int_eq(gzwrite(g, zeros, (unsigned)n), (int)n);
  }
  ck_assert_int_eq(gzclose(g), Z_OK);
}

/* load_train, then how much the peak RSS grew, in kB, on its own line. */
static int load_train_rss(void *arg) {
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  int rc = load_train(arg);
  getrusage(RUSAGE_SELF, &after);
  fflush(stderr);
  printf("\nrss grew %ld kB\n", after.ru_maxrss - before.ru_maxrss);
  return rc;
}

/* The data is measured before anything is allocated for it, and the
 * measuring stops at the first byte past the declared size: a file that
 * inflates to more, or less, than its header says costs no memory. */
START_TEST(gzip_bombs_cost_no_memory) {
  static const struct { uint32_t declared; const char *message; } c[] = {
      {3000000, "truncated: expected 48000016 bytes, got 41943056\n"},
      {6, "trailing data: expected 112 bytes, got more\n"},
  };
  char out[4096], want[4400];
  write_dataset(dir, 6, 3, 0);
  remove(path_in(dir, "train-images-idx3-ubyte"));
  for (int i = 0; i < 2; i++) {
    write_bomb(path_in(dir, "train-images-idx3-ubyte.gz"), c[i].declared, (size_t)40 << 20);
    ck_assert_int_eq(capture(load_train_rss, NULL, out, sizeof out), 1);
    snprintf(want, sizeof want, "nncc: %s: %s", path_in(dir, "train-images-idx3-ubyte.gz"), c[i].message);
    ck_assert_contains(out, want);
    long kb = strtol(strstr(out, "rss grew ") + 9, NULL, 10);
    ck_assert_msg(kb < 8192, "case %d: the peak RSS grew by %ld kB", i, kb);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("idx");
  TCase *tc = tcase_create("all");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, loads_raw_and_gz, 0, 2);
  tcase_add_test(tc, fashion_mnist_gz_names_load_when_installed);
  tcase_add_loop_test(tc, rejects_bad_files, 0, (int)(2 * sizeof bad / sizeof bad[0]));
  tcase_add_test(tc, rejects_missing_and_corrupt_files);
  tcase_add_test(tc, batches_scale_pad_and_zero_fill);
  tcase_add_test(tc, gzip_bombs_cost_no_memory);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
