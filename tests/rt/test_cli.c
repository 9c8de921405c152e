/*
 * test_cli.c -- nncc_main end to end on the tiny model: training, eval,
 * grads, bit-exact resume and determinism, SIGINT, and every usage error.
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>

#include "testutil.h"

static char *dir;
static char out[1 << 16];

static void setup(void) {
  dir = tmpdir_new();
  write_dataset(dir, 22, 9, 1); /* 5 steps per epoch (drop_last), last test batch of 1 */
}
static void teardown(void) {
  rm_rf(dir);
  free(dir);
}

static char *P(const char *name) { return path_in(dir, name); }

/* Reads tensor `name` of a safetensors file; returns its float count. */
static size_t read_tensor(const char *path, const char *name, float *dst, size_t cap) {
  size_t len;
  unsigned char *f = slurp(path, &len);
  ck_assert_ptr_nonnull(f);
  uint64_t n;
  memcpy(&n, f, 8);
  char err[200];
  JsonValue *h = json_parse((char *)f + 8, n, err, sizeof err);
  ck_assert_ptr_nonnull(h);
  const JsonValue *t = json_get(h, name);
  ck_assert_msg(t != NULL, "%s: no tensor %s", path, name);
  const JsonValue *off = json_get(t, "data_offsets");
  size_t count = (size_t)(off->items[1].num - off->items[0].num) / 4;
  ck_assert_uint_le(count, cap);
  memcpy(dst, f + 8 + n + off->items[0].num, count * 4);
  json_free(h);
  free(f);
  return count;
}

static const char *meta(const char *path, const char *key) {
  static char value[128];
  size_t len;
  unsigned char *f = slurp(path, &len);
  uint64_t n;
  memcpy(&n, f, 8);
  char err[200];
  JsonValue *h = json_parse((char *)f + 8, n, err, sizeof err);
  snprintf(value, sizeof value, "%s", json_get(json_get(h, "__metadata__"), key)->str);
  json_free(h);
  free(f);
  return value;
}

START_TEST(trains_evaluates_and_logs) {
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "4", "--save",
                   P("m.safetensors"), "--log", P("log.jsonl"), "--seed", "5", NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  ck_assert_contains(out, "epoch 1/4  loss ");
  ck_assert_contains(out, "epoch 4/4  loss ");
  size_t len;
  char *log = (char *)slurp(P("log.jsonl"), &len);
  log[len] = 0;
  int lines = 0;
  double first = 0, last = 0, acc = 0;
  for (char *l = log; *l; l = strchr(l, '\n') + 1, lines++) {
    ck_assert(strncmp(l, "{\"epoch\":", 9) == 0);
    for (const char *k = "\"steps\":\0\"test_loss\":\0\"img_per_s\":\0\"seconds\":\0"; *k; k += strlen(k) + 1)
      ck_assert_msg(strstr(l, k) && strstr(l, k) < strchr(l, '\n'), "no %s in %s", k, l);
    double loss = strtod(strstr(l, "\"loss\":") + 7, NULL);
    if (!lines) first = loss;
    last = loss;
    acc = strtod(strstr(l, "\"test_acc\":") + 11, NULL);
  }
  free(log);
  ck_assert_int_eq(lines, 4);
  ck_assert_msg(last < first, "train loss went %g -> %g", first, last);
  ck_assert_msg(acc > 0.8, "test accuracy %g", acc);
  ck_assert_str_eq(meta(P("m.safetensors"), "step"), "20");
  ck_assert_str_eq(meta(P("m.safetensors"), "epoch"), "4");
  /* stats.num_batches_tracked counted every training forward. */
  float params[3 * 36 + 7];
  read_tensor(P("m.safetensors"), "stats.running_mean", params, 3);
  rc = run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("m.safetensors"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  ck_assert_contains(out, "test_loss ");
  ck_assert_contains(out, "/9)"); /* all 9 test images, the last batch partial */
}
END_TEST

START_TEST(resume_is_bit_exact) {
  /* 7 steps straight (crossing the epoch boundary at 5) vs 3 + 4 resumed. */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "7",
                           "--save", P("straight"), "--log", P("straight.jsonl"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("half"), "--log", P("resumed.jsonl"), "--quiet", NULL), 0);
  ck_assert_str_eq(meta(P("half"), "epoch_step"), "3");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "7",
                           "--load", P("half"), "--save", P("resumed"), "--log", P("resumed.jsonl"),
                           "--quiet", NULL), 0);
  ck_assert_msg(files_equal(P("straight"), P("resumed")), "resumed checkpoint differs");
  /* The epoch-1 log line (its loss spans both processes) matches too, up to the timing fields. */
  size_t la, lb;
  char *a = (char *)slurp(P("straight.jsonl"), &la), *b = (char *)slurp(P("resumed.jsonl"), &lb);
  ck_assert_ptr_nonnull(strstr(a, "img_per_s"));
  ck_assert_int_eq((int)(strstr(a, "img_per_s") - a), (int)(strstr(b, "img_per_s") - b));
  ck_assert_mem_eq(a, b, (size_t)(strstr(a, "img_per_s") - a));
  free(a);
  free(b);
}
END_TEST

START_TEST(same_seed_same_bits_any_thread_count) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--threads", "1", "--save", P("t1"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--threads", "2", "--save", P("t2"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("t1"), P("t2")));
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--seed", "9", "--save", P("s9"), "--quiet", NULL), 0);
  ck_assert(!files_equal(P("t1"), P("s9")));
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--no-shuffle", "--save", P("ns"), "--quiet", NULL), 0);
  ck_assert(!files_equal(P("t1"), P("ns")));
  /* SGD with momentum (the nopad model's default) resumes exactly as well. */
  char d2[4200];
  snprintf(d2, sizeof d2, "%s/plain", dir);
  mkdir(d2, 0755);
  write_dataset(d2, 22, 9, 0);
  /* tiny_model_nopad reads the 4x4 images directly. */
  ck_assert_int_eq(run_cli(&tiny_model_nopad, out, sizeof out, "train", "--data", d2, "--steps", "8",
                           "--save", P("sgd_a"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model_nopad, out, sizeof out, "train", "--data", d2, "--steps", "2",
                           "--save", P("sgd_h"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model_nopad, out, sizeof out, "train", "--data", d2, "--steps", "8",
                           "--load", P("sgd_h"), "--save", P("sgd_b"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("sgd_a"), P("sgd_b")));
  ck_assert_str_eq(meta(P("sgd_b"), "optim"), "sgd");
}
END_TEST

/* AdamW with clip_grad_norm, and SGD with Nesterov momentum and
 * clip_grad_value: resumed bit for bit, the settings carried by the
 * checkpoint, the flags overriding them, the norm in the step log. */
START_TEST(adamw_nesterov_clipping_resume_exactly) {
  NnccModel m = tiny_model;
  m.defaults.optim = NNCC_ADAMW;
  m.defaults.weight_decay = 0.1;
  m.defaults.clip_grad_norm = 0.05;
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "7", "--save",
                           P("aw_a"), "--step-log", P("aw.jsonl"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "3", "--save",
                           P("aw_h"), "--quiet", NULL), 0);
  /* the checkpoint, not the model, decides: a model without clipping resumes it */
  NnccModel plain = tiny_model;
  ck_assert_int_eq(run_cli(&plain, out, sizeof out, "train", "--data", dir, "--steps", "7", "--load",
                           P("aw_h"), "--save", P("aw_b"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("aw_a"), P("aw_b")));
  ck_assert_str_eq(meta(P("aw_b"), "optim"), "adamw");
  ck_assert_str_eq(meta(P("aw_b"), "clip_grad_norm"), "0.050000000000000003");
  size_t len;
  char *log = (char *)slurp(P("aw.jsonl"), &len);
  ck_assert_ptr_nonnull(strstr(log, "\"grad_norm\":"));
  free(log);
  /* --clip-grad-norm 0 turns it off: other bits, and no norm logged */
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "7", "--save",
                           P("aw_off"), "--step-log", P("aw_off.jsonl"), "--clip-grad-norm", "0",
                           "--quiet", NULL), 0);
  ck_assert(!files_equal(P("aw_a"), P("aw_off")));
  ck_assert_str_eq(meta(P("aw_off"), "clip_grad_norm"), "0");
  log = (char *)slurp(P("aw_off.jsonl"), &len);
  ck_assert_ptr_null(strstr(log, "grad_norm"));
  free(log);

  NnccModel n = tiny_model;
  n.defaults.optim = NNCC_SGD;
  n.defaults.momentum = 0.9;
  n.defaults.nesterov = 1;
  ck_assert_int_eq(run_cli(&n, out, sizeof out, "train", "--data", dir, "--steps", "7", "--save",
                           P("nv_a"), "--clip-grad-value", "0.01", "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&n, out, sizeof out, "train", "--data", dir, "--steps", "3", "--save",
                           P("nv_h"), "--clip-grad-value", "0.01", "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&n, out, sizeof out, "train", "--data", dir, "--steps", "7", "--load",
                           P("nv_h"), "--save", P("nv_b"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("nv_a"), P("nv_b")));
  ck_assert_str_eq(meta(P("nv_b"), "nesterov"), "1");
  ck_assert_str_eq(meta(P("nv_b"), "clip_grad_value"), "0.01");
  /* plain momentum differs */
  n.defaults.nesterov = 0;
  ck_assert_int_eq(run_cli(&n, out, sizeof out, "train", "--data", dir, "--steps", "7", "--save",
                           P("nv_plain"), "--clip-grad-value", "0.01", "--quiet", NULL), 0);
  ck_assert(!files_equal(P("nv_a"), P("nv_plain")));
  /* bad values are usage errors */
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--clip-grad-norm", "-1",
                           NULL), 2);
  ck_assert_contains(out, "--clip-grad-norm: '-1' is not a non-negative number (0: off)");
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "eval", "--data", dir, "--load", P("aw_a"),
                           "--clip-grad-value", "1", NULL), 2);
  ck_assert_contains(out, "--clip-grad-value does not apply to 'eval'");
}
END_TEST

/* Learning-rate schedules: a warm-up then cosine (per epoch) and onecycle
 * (per step) resume bit for bit from the middle of an epoch, the
 * checkpoint keeps the schedule's canonical text, the step log the lr,
 * --schedule/--warmup override it (none turns it off), and a damaged
 * schedule in a checkpoint or a model is refused in one line. */
START_TEST(schedules_resume_exactly) {
  NnccModel m = tiny_model; /* 5 steps per epoch */
  m.defaults.epochs = 4;
  snprintf(m.defaults.schedule, sizeof m.defaults.schedule, "cosine( T_max=2 )");
  snprintf(m.defaults.warmup, sizeof m.defaults.warmup, "linear(start_factor=0.5, total_iters=1)");
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--save", P("cw_a"),
                           "--step-log", P("cw.jsonl"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "7", "--save",
                           P("cw_h"), "--quiet", NULL), 0);
  ck_assert_str_eq(meta(P("cw_h"), "schedule"), "cosine(T_max=2, eta_min=0)");
  ck_assert_str_eq(meta(P("cw_h"), "warmup"), "linear(start_factor=0.5, end_factor=1, total_iters=1)");
  NnccModel plain = tiny_model;
  plain.defaults.epochs = 4;
  ck_assert_int_eq(run_cli(&plain, out, sizeof out, "train", "--data", dir, "--load", P("cw_h"),
                           "--save", P("cw_b"), "--quiet", NULL), 0);
  ck_assert_msg(files_equal(P("cw_a"), P("cw_b")), "resumed checkpoint differs");
  /* the lr of epochs 1..4: 0.5 base (warm-up), then cosine from the base */
  size_t len;
  char *log = (char *)slurp(P("cw.jsonl"), &len);
  ck_assert_ptr_nonnull(strstr(log, "{\"step\":1,\"epoch\":1,"));
  ck_assert_ptr_nonnull(strstr(log, "\"lr\":0.025000000000000001}")); /* 0.05 * 0.5 */
  ck_assert_ptr_nonnull(strstr(log, "\"lr\":0.050000000000000003}")); /* epoch 2: the base */
  free(log);
  /* --schedule none --warmup none: the constant lr, other bits */
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--save", P("cw_off"),
                           "--schedule", "none", "--warmup=none", "--quiet", NULL), 0);
  ck_assert(!files_equal(P("cw_a"), P("cw_off")));
  ck_assert_str_eq(meta(P("cw_off"), "schedule"), "");
  /* onecycle, per step, beta1 cycled too */
  NnccModel oc = tiny_model;
  oc.defaults.epochs = 2;
  snprintf(oc.defaults.schedule, sizeof oc.defaults.schedule, "onecycle(max_lr=0.1, total_steps=10)");
  ck_assert_int_eq(run_cli(&oc, out, sizeof out, "train", "--data", dir, "--save", P("oc_a"),
                           "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&oc, out, sizeof out, "train", "--data", dir, "--steps", "3", "--save",
                           P("oc_h"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&oc, out, sizeof out, "train", "--data", dir, "--load", P("oc_h"),
                           "--save", P("oc_b"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("oc_a"), P("oc_b")));
  /* total_steps 10 (2 epochs of 5; its default would follow --epochs): a third epoch steps past it */
  ck_assert_int_eq(run_cli(&oc, out, sizeof out, "train", "--data", dir, "--epochs", "3", NULL), 1);
  ck_assert_contains(out, "onecycle(total_steps=10) ends before this run's 15 steps");
  /* bad text: a flag, a model's default, a checkpoint's metadata */
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--schedule", "cosine(T_max=-1)",
                           NULL), 2);
  ck_assert_contains(out, "--schedule: cosine(): 'T_max' must be an integer from 1 to 1000000000");
  NnccModel bad = tiny_model;
  snprintf(bad.defaults.schedule, sizeof bad.defaults.schedule, "cosin(T_max=2)");
  ck_assert_int_eq(run_cli(&bad, out, sizeof out, "train", "--data", dir, NULL), 1);
  ck_assert_contains(out, "nncc: tiny: unknown schedule 'cosin'");
  NnccTrainConfig c = tiny_model.defaults;
  snprintf(c.schedule, sizeof c.schedule, "exponential(gamma=-2)");
  NnccProgress pr = {0};
  float *params = calloc(tiny_model.params_floats, sizeof *params);
  ck_assert_int_eq(ckpt_save(P("bad_sched"), &tiny_model, &c, params, NULL, &pr), 0);
  free(params);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--load",
                           P("bad_sched"), NULL), 1);
  ck_assert_contains(out, "metadata schedule is 'exponential(gamma=-2)': exponential(): 'gamma' must be non-negative");
}
END_TEST

/* --val N: the last N training images are held out (22 - 6 = 16: 4 steps
 * an epoch), val_loss and val_acc reported each epoch, kept by a resumed
 * run, and a different N refused there. */
START_TEST(val_holds_out_and_resumes) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--val", "6", "--log", P("v.jsonl"), "--save", P("v_a"), NULL), 0);
  ck_assert_contains(out, "val_loss ");
  ck_assert_contains(out, "val_acc ");
  size_t len;
  char *log = (char *)slurp(P("v.jsonl"), &len);
  ck_assert_ptr_nonnull(strstr(log, "{\"epoch\":1,\"steps\":4,"));
  ck_assert_ptr_nonnull(strstr(log, "\"val_loss\":"));
  ck_assert_ptr_nonnull(strstr(log, "\"val_acc\":"));
  free(log);
  ck_assert_str_eq(meta(P("v_a"), "val"), "6");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--val", "6", "--save", P("v_h"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--load", P("v_h"), "--val", "5", NULL), 1);
  ck_assert_contains(out, "was trained holding out 6 training images (--val 6); resume with the same --val");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--load", P("v_h"), "--save", P("v_b"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("v_a"), P("v_b")));
  /* without --val: all 22 images, other bits, no val in the log */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--save", P("v_none"), NULL), 0);
  ck_assert_ptr_null(strstr(out, "val_loss"));
  ck_assert(!files_equal(P("v_a"), P("v_none")));
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--val", "22", NULL), 1);
  ck_assert_contains(out, "--val 22 holds out all 22 training images");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--val", "19", NULL), 1);
  ck_assert_contains(out, "training set has 3 images after --val, fewer than one batch of 4");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--val", "-1", NULL), 2);
}
END_TEST

/* train --plot: a PNG after every epoch, from this run's points; without
 * gnuplot on PATH the flag is refused before anything runs. */
START_TEST(train_plot_draws_each_epoch) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "2",
                           "--val", "4", "--plot", P("curves.png"), "--quiet", NULL), 0);
  size_t len;
  unsigned char *png = slurp(P("curves.png"), &len);
  ck_assert_ptr_nonnull(png);
  ck_assert(len > 1000 && memcmp(png, "\x89PNG", 4) == 0);
  free(png);
  const char *path = getenv("PATH");
  char *saved = strdup(path ? path : "");
  setenv("PATH", "/nonexistent", 1);
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--plot", P("x.png"), NULL);
  setenv("PATH", saved, 1);
  free(saved);
  ck_assert_int_eq(rc, 2);
  ck_assert_contains(out, "--plot needs gnuplot, which is not on PATH (Debian: apt-get install gnuplot-nox)");
}
END_TEST

/* predict: PNG (written here with libpng's simplified API), binary and
 * text PGM, an IDX3 file; scaling by area averaging, inversion, the top
 * K; every kind of bad input in one line. */
static void write_png(const char *path, int w, int h, const unsigned char *grey, int rgb) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w, im.height = (png_uint_32)h;
  im.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  unsigned char *px = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h; i++)
    for (int c = 0; c < (rgb ? 3 : 1); c++) px[i * (rgb ? 3 : 1) + c] = grey[i];
  ck_assert(png_image_write_to_file(&im, path, 0, px, 0, NULL));
  free(px);
}

static void write_text(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(text, 1, len, f), len);
  fclose(f);
}

/* the part of out after "NAME:" on its line */
static const char *after(const char *out_text, const char *name) {
  const char *p = strstr(out_text, name);
  ck_assert_msg(p != NULL, "no line for %s in: %s", name, out_text);
  return p + strlen(name);
}

START_TEST(predict_reads_png_pgm_idx) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("p"), "--quiet", NULL), 0);
  /* an 8x8 light-on-dark picture (the model's images are 4x4): each 2x2
   * block one value, so area averaging gives it back exactly */
  unsigned char big[64], dark[64], small[16] = {0, 40, 80, 120, 160, 200, 240, 255, 10, 20, 30, 40, 250, 5, 0, 90};
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++) big[y * 8 + x] = small[(y / 2) * 4 + x / 2], dark[y * 8 + x] = 255 - big[y * 8 + x];
  /* auto inversion looks at the border: make the light-on-dark one's dark */
  write_png(P("a.png"), 8, 8, big, 0);
  write_png(P("a_rgb.png"), 8, 8, big, 1);
  write_png(P("a_dark.png"), 8, 8, dark, 0);
  char pgm[400];
  int n = snprintf(pgm, sizeof pgm, "P5\n# eight by eight\n8 8\n255\n");
  memcpy(pgm + n, big, 64);
  write_text(P("a.pgm"), pgm, (size_t)n + 64);
  n = snprintf(pgm, sizeof pgm, "P2 4 4 255\n");
  for (int i = 0; i < 16; i++) n += snprintf(pgm + n, sizeof pgm - (size_t)n, "%d ", small[i]);
  write_text(P("a_text.pgm"), pgm, (size_t)n);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), "--invert=no",
                           P("a.png"), P("a_rgb.png"), P("a.pgm"), P("a_text.pgm"), NULL), 0);
  char first[200];
  snprintf(first, sizeof first, "%.*s", (int)strcspn(after(out, "a.png:"), "\n"), after(out, "a.png:"));
  ck_assert_int_eq(strncmp(after(out, "a_rgb.png:"), first, strlen(first)), 0);
  ck_assert_int_eq(strncmp(after(out, "a.pgm:"), first, strlen(first)), 0);
  ck_assert_int_eq(strncmp(after(out, "a_text.pgm:"), first, strlen(first)), 0);
  /* the top 3 of 3 classes: descending, summing to 1 */
  int c[3];
  double p[3];
  ck_assert_int_eq(sscanf(first, " %d %lf %d %lf %d %lf", &c[0], &p[0], &c[1], &p[1], &c[2], &p[2]), 6);
  ck_assert(p[0] >= p[1] && p[1] >= p[2] && fabs(p[0] + p[1] + p[2] - 1) < 2e-4);
  ck_assert(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
  /* auto: a light border means a dark drawing on a light page, inverted:
   * 255 - the picture comes back as the picture; --invert yes differs */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"),
                           P("a_dark.png"), NULL), 0);
  ck_assert_int_eq(strncmp(after(out, "a_dark.png:"), first, strlen(first)), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), "--invert", "yes",
                           P("a.png"), NULL), 0);
  ck_assert_int_ne(strncmp(after(out, "a.png:"), first, strlen(first)), 0);
  /* an IDX3 file: every image, by index */
  char idx[4200];
  snprintf(idx, sizeof idx, "%s/t10k-images-idx3-ubyte.gz", dir);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), "--top", "2", idx, NULL), 0);
  ck_assert_contains(out, "t10k-images-idx3-ubyte.gz[0]:");
  ck_assert_contains(out, "t10k-images-idx3-ubyte.gz[8]:");
  ck_assert_ptr_null(strstr(out, "t10k-images-idx3-ubyte.gz[9]:"));
  /* bad input */
  static const struct {
    const char *file, *text, *message;
  } bad[] = {
      {"b.txt", "hello\n", "b.txt: neither a PNG, a PGM nor an IDX3 image file"},
      {"b1.pgm", "P5 4 4\n", "b1.pgm: not a PGM image: a bad header"},
      {"b2.pgm", "P5 4 4 255\nabc", "b2.pgm: PGM pixel 4 of 16: missing"},
      {"b3.pgm", "P2 2 1 10 3 11", "b3.pgm: PGM pixel 2 of 2: above maxval"},
      {"b4.pgm", "P5 99999999 99999999 255\n", "b4.pgm: not a PGM image: a bad header"},
      {"b5.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "b5.png: not a readable PNG: "},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_text(P(bad[i].file), bad[i].text, strlen(bad[i].text) + (i == 5 ? 8 : 0));
    ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), P(bad[i].file), NULL), 1);
    ck_assert_contains(out, bad[i].message);
  }
  /* a PNG declaring 20000 pixels a side: refused from its header */
  unsigned char one = 0;
  write_png(P("huge.png"), 1, 1, &one, 0);
  FILE *f = fopen(P("huge.png"), "r+b");
  unsigned char wide[4] = {0, 0, 0x4e, 0x20};
  fseek(f, 16, SEEK_SET);
  fwrite(wide, 1, 4, f);
  fclose(f);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), P("huge.png"), NULL), 1);
  ck_assert_contains(out, "huge.png: not a readable PNG: ");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), P("none.png"), NULL), 1);
  ck_assert_contains(out, "none.png: No such file or directory");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", P("a.png"), NULL), 2);
  ck_assert_contains(out, "predict needs --load F");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), NULL), 2);
  ck_assert_contains(out, "predict needs an image");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), "--top", "0", P("a.png"), NULL), 2);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "predict", "--load", P("p"), "--invert", "maybe", P("a.png"), NULL), 2);
  ck_assert_contains(out, "--invert: 'maybe' is not auto, yes or no");
}
END_TEST

/* Augmentation (mnist(crop_padding=P, hflip=true)): each image shifted as
 * RandomCrop's padding and cut define, then maybe mirrored, decided per
 * (seed, epoch, image) alone; training with it is the same for any thread
 * count and resumes bit for bit; eval sees the images as they are. */
START_TEST(augmentation_is_per_image_and_exact) {
  enum { N = 200, S = 4 }; /* tiny_model's images are 4x4 in a 6x6 canvas */
  unsigned char images[N * S * S], labels[N] = {0};
  for (int i = 0; i < N * S * S; i++) images[i] = (unsigned char)(1 + i % (S * S) * 15);
  NnccData d = {N, S, S, images, labels};
  NnccAugment aug = {1, 1, 5, 0};
  float input[4 * 36];
  int lab[4], seen_dy[3] = {0}, seen_dx[3] = {0}, seen_flip[2] = {0}, differs = 0;
  for (uint32_t i = 0; i < N; i++) {
    uint32_t order[4] = {i, i, i, i};
    batch_fill(&aug, &tiny_model, &d, order, 4, input, lab);
    int dy, dx, flip;
    batch_augment_draw(&aug, i, &dy, &dx, &flip);
    ck_assert(dy >= -1 && dy <= 1 && dx >= -1 && dx <= 1);
    seen_dy[dy + 1] = seen_dx[dx + 1] = seen_flip[flip] = 1;
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) {
        /* RandomCrop(4, padding=1): the 6x6 zero-padded image cut at
         * (1 + dy, 1 + dx); then the mirror */
        int cx = flip ? S - 1 - x : x, sy = y + dy, sx = cx + dx;
        float want = sy >= 0 && sy < S && sx >= 0 && sx < S ? (float)images[i * S * S + sy * S + sx] / 255.0f : 0.0f;
        for (int b = 0; b < 4; b++) /* the same wherever it sits in the batch */
          ck_assert(input[b * 36 + (1 + y) * 6 + 1 + x] == want);
      }
    /* the canvas's padding stays zero */
    ck_assert(input[0] == 0.0f && input[35] == 0.0f);
    int dy2, dx2, flip2;
    NnccAugment next = aug;
    next.epoch = 1;
    batch_augment_draw(&next, i, &dy2, &dx2, &flip2);
    differs |= dy2 != dy || dx2 != dx || flip2 != flip;
  }
  ck_assert(seen_dy[0] && seen_dy[1] && seen_dy[2] && seen_dx[0] && seen_dx[2] && seen_flip[0] && seen_flip[1]);
  ck_assert(differs);

  NnccModel m = tiny_model;
  m.augment_crop = 1;
  m.augment_hflip = 1;
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "8", "--threads", "1",
                           "--save", P("g1"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "8", "--threads", "2",
                           "--save", P("g2"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("g1"), P("g2")));
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("gh"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "8", "--load", P("gh"),
                           "--save", P("gr"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("g1"), P("gr")));
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "8",
                           "--save", P("g0"), "--quiet", NULL), 0);
  ck_assert(!files_equal(P("g1"), P("g0")));
  static char with[sizeof out];
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "eval", "--data", dir, "--load", P("g1"), NULL), 0);
  snprintf(with, sizeof with, "%s", out);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("g1"), NULL), 0);
  ck_assert_str_eq(with, out);
}
END_TEST

/* eval --report: the counts of a hand-made batch, the mistakes ordered by
 * confidence (ties by index) and capped, the JSON; then through the CLI. */
START_TEST(eval_report_counts_and_ranks) {
  NnccReport rep;
  ck_assert_int_eq(report_init(&rep, 3), 0);
  /* 13 rows with logit 1 + i / 4 on one class (confidence rises with i,
   * in equal pairs): the even rows on their label, class i % 3; the odd
   * rows, labelled 1, on class 0, so they are wrong */
  float logits[13][3] = {{0}};
  int labels[13];
  uint32_t index[13];
  for (int i = 0; i < 13; i++) {
    labels[i] = i % 2 ? 1 : i % 3;
    logits[i][i % 2 ? 0 : i % 3] = 1.0f + (float)(i / 4);
    index[i] = (uint32_t)(100 + i);
  }
  report_add(&rep, &logits[0][0], labels, index, 13);
  long total = 0, diag = 0;
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 3; p++) total += rep.confusion[c * 3 + p], diag += c == p ? rep.confusion[c * 3 + p] : 0;
  ck_assert_int_eq(total, 13);
  ck_assert_int_eq(diag, 7);
  ck_assert_int_eq(rep.nwrong, 6);
  /* rows 9 and 11 have the same logits, the highest: a tie, the lower
   * index first; then 5 and 7, then 1 and 3 */
  static const int order[6] = {109, 111, 105, 107, 101, 103};
  for (int i = 0; i < 6; i++) ck_assert_int_eq(rep.wrong[i].index, order[i]);
  ck_assert(rep.wrong[0].p == rep.wrong[1].p && rep.wrong[1].p > rep.wrong[2].p);
  ck_assert_int_eq(rep.confusion[1 * 3 + 0], 6);
  for (int i = 0; i < rep.nwrong; i++) ck_assert_int_ne(rep.wrong[i].label, rep.wrong[i].pred);
  ck_assert_int_eq(report_write_json(&rep, P("rep.json"), 0.5, 7.0 / 13, 7, 13), 0);
  size_t len;
  char *j = (char *)slurp(P("rep.json"), &len);
  ck_assert_ptr_nonnull(strstr(j, "\"correct\":7,\"images\":13,\"classes\":3,"));
  ck_assert_ptr_nonnull(strstr(j, "\"most_confident_wrong\":[{\"index\":109,"));
  free(j);
  /* many more mistakes than are listed: the list keeps the top 10 */
  for (int k = 0; k < 5; k++) report_add(&rep, &logits[0][0], labels, index, 13);
  ck_assert_int_eq(rep.nwrong, NNCC_REPORT_WRONG);
  report_free(&rep);

  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("r"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("r"),
                           "--report-json", P("r.json"), NULL), 0);
  ck_assert_contains(out, "per-class accuracy:");
  ck_assert_contains(out, "confusion matrix (rows: true class, columns: predicted class):");
  ck_assert_contains(out, "most confidently wrong (test image index from 0):");
  j = (char *)slurp(P("r.json"), &len);
  ck_assert_ptr_nonnull(j);
  ck_assert_ptr_nonnull(strstr(j, "\"images\":9,\"classes\":3,"));
  free(j);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("r"), NULL), 0);
  ck_assert_ptr_null(strstr(out, "per-class"));
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--report", NULL), 2);
  ck_assert_contains(out, "--report does not apply to 'train'");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("r"),
                           "--report-json", P("no/such/dir/r.json"), NULL), 1);
  ck_assert_contains(out, "no/such/dir/r.json: cannot write the report:");

  /* eval --logits: every test image's logits, [images, classes], the same
   * bytes for any thread count */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("r"),
                           "--logits", P("l1"), "--threads", "1", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("r"),
                           "--logits", P("l2"), "--threads", "2", NULL), 0);
  ck_assert(files_equal(P("l1"), P("l2")));
  j = (char *)slurp(P("l1"), &len);
  ck_assert_ptr_nonnull(j);
  ck_assert_ptr_nonnull(strstr(j + 8, "\"logits\":{\"dtype\":\"F32\",\"shape\":[9,3],"));
  uint64_t hlen;
  memcpy(&hlen, j, 8);
  ck_assert_uint_eq(len, 8 + hlen + 9 * 3 * sizeof(float));
  for (size_t i = 0; i < 27; i++) {
    float v;
    memcpy(&v, j + 8 + hlen + 4 * i, 4);
    ck_assert(isfinite(v));
  }
  free(j);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--logits", P("l3"),
                           NULL), 2);
  ck_assert_contains(out, "--logits does not apply to 'train'");
}
END_TEST

/* Case 1: the model's label smoothing reaches the loss and dlogits. */
static const double grads_smoothing[] = {0.0, 0.2};

START_TEST(grads_writes_loss_logits_and_gradients) {
  NnccModel m = tiny_model;
  m.label_smoothing = grads_smoothing[_i];
  ck_assert_int_eq(run_cli(&m, out, sizeof out, "train", "--data", dir, "--steps", "2",
                           "--save", P("m"), "--quiet", NULL), 0);
  int rc = run_cli(&m, out, sizeof out, "grads", "--data", dir, "--load", P("m"), "--out",
                   P("g.safetensors"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  float loss, logits[12], dw[3 * 36], db[3], params[3 * 36 + 7];
  ck_assert_uint_eq(read_tensor(P("g.safetensors"), "loss", &loss, 1), 1);
  ck_assert_uint_eq(read_tensor(P("g.safetensors"), "logits", logits, 12), 12);
  ck_assert_uint_eq(read_tensor(P("g.safetensors"), "fc.weight", dw, 108), 108);
  ck_assert_uint_eq(read_tensor(P("g.safetensors"), "fc.bias", db, 3), 3);
  read_tensor(P("m"), "fc.weight", params, 108);
  read_tensor(P("m"), "fc.bias", params + 108, 3);
  /* Recompute on the first 4 images in file order: labels 0,1,2,0. */
  NnccData d;
  ck_assert_int_eq(idx_load(&d, dir, "train", &tiny_model), 0);
  uint32_t order[4] = {0, 1, 2, 3};
  float input[4 * 36], dl[12], want_logits[12];
  int labels[4];
  batch_fill(NULL, &tiny_model, &d, order, 4, input, labels);
  for (int b = 0; b < 4; b++)
    for (int c = 0; c < 3; c++) {
      double z = params[108 + c];
      for (int k = 0; k < 36; k++) z += (double)params[c * 36 + k] * input[b * 36 + k];
      want_logits[b * 3 + c] = (float)z;
      ck_assert(fabs(logits[b * 3 + c] - z) < 1e-5);
    }
  double want = loss_xent(want_logits, labels, 4, 3, m.label_smoothing, dl);
  ck_assert(fabs(loss - want) < 1e-5);
  if (m.label_smoothing != 0.0) { /* and the test can tell */
    float dl0[12];
    ck_assert(fabs(loss - loss_xent(want_logits, labels, 4, 3, 0.0, dl0)) > 1e-3);
  }
  for (int c = 0; c < 3; c++) {
    double g = 0;
    for (int b = 0; b < 4; b++) g += dl[b * 3 + c];
    ck_assert(fabs(db[c] - g) < 1e-6);
  }
  idx_free(&d);
  /* Unknown to the model's parameter list, the buffers have no gradient. */
  size_t len;
  char *f = (char *)slurp(P("g.safetensors"), &len);
  f[len - 1] = 0;
  ck_assert_ptr_null(strstr(f + 8, "running_mean"));
  free(f);
}
END_TEST

/* --step-log: one line per step with the exact batch loss; a resumed run
 * appends the same lines the straight run wrote. */
START_TEST(step_log_records_every_step) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "7",
                           "--log", P("epochs.jsonl"), "--step-log", P("straight.jsonl"), "--quiet",
                           NULL), 0);
  size_t len;
  char *log = (char *)slurp(P("straight.jsonl"), &len);
  log[len] = 0;
  int lines = 0;
  double epoch1 = 0;
  for (char *l = log; *l; l = strchr(l, '\n') + 1, lines++) {
    char want[64];
    snprintf(want, sizeof want, "{\"step\":%d,\"epoch\":%d,\"loss\":", lines + 1, lines < 5 ? 1 : 2);
    ck_assert_msg(strncmp(l, want, strlen(want)) == 0, "line %d: %.60s", lines + 1, l);
    char *end;
    double loss = strtod(l + strlen(want), &end);
    ck_assert_msg(*end == '}' && end[1] == '\n' && loss > 0, "line %d: %.60s", lines + 1, l);
    if (lines < 5) epoch1 += loss;
  }
  ck_assert_int_eq(lines, 7);
  /* The epoch log's mean (summed in double) agrees with the logged floats. */
  char *ep = (char *)slurp(P("epochs.jsonl"), &len);
  ep[len] = 0;
  double mean = strtod(strstr(ep, "\"loss\":") + 7, NULL);
  ck_assert_msg(fabs(mean - epoch1 / 5) < 1e-6 * mean, "epoch loss %.9g, steps give %.9g", mean, epoch1 / 5);
  free(ep);
  /* 3 steps, then resumed to 7 with the same file: the same bytes. */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("half"), "--step-log", P("resumed.jsonl"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "7",
                           "--load", P("half"), "--step-log", P("resumed.jsonl"), "--quiet", NULL), 0);
  ck_assert_msg(files_equal(P("straight.jsonl"), P("resumed.jsonl")), "resumed step log differs");
  free(log);
  /* A step on the first batch in file order logs the loss grads computes, to the bit. */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "5",
                           "--save", P("e1"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "grads", "--data", dir, "--load", P("e1"),
                           "--out", P("g"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "6",
                           "--load", P("e1"), "--no-shuffle", "--step-log", P("one.jsonl"), "--quiet",
                           NULL), 0);
  float want;
  read_tensor(P("g"), "loss", &want, 1);
  log = (char *)slurp(P("one.jsonl"), &len);
  log[len] = 0;
  const char *head = "{\"step\":6,\"epoch\":2,\"loss\":";
  ck_assert_msg(strncmp(log, head, strlen(head)) == 0, "%s", log);
  ck_assert_msg(strtof(log + strlen(head), NULL) == want, "step log %s, grads %.9g", log, (double)want);
  free(log);
}
END_TEST

START_TEST(sigint_finishes_the_step_and_saves) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9",
                           "--save", P("straight"), "--quiet", NULL), 0);
  tiny_raise_at_step = 3; /* inside the 4th step */
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--save",
                   P("int"), NULL);
  tiny_raise_at_step = -1;
  ck_assert_msg(rc == 130, "rc %d: %s", rc, out);
  ck_assert_contains(out, "interrupted at step 4, checkpoint saved");
  ck_assert_str_eq(meta(P("int"), "step"), "4");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9",
                           "--load", P("int"), "--save", P("resumed"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("straight"), P("resumed")));
}
END_TEST

/* SIGTERM is SIGINT's twin: finish the step, save, exit 143; the first
 * of two signals decides the status. */
START_TEST(sigterm_finishes_the_step_and_saves) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9",
                           "--save", P("straight"), "--quiet", NULL), 0);
  tiny_raise_at_step = 5; /* the first step of epoch 2 */
  tiny_raise_signal = SIGTERM;
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--save",
                   P("term"), NULL);
  tiny_raise_at_step = -1;
  tiny_raise_signal = SIGINT;
  ck_assert_msg(rc == 143, "rc %d: %s", rc, out);
  ck_assert_contains(out, "interrupted at step 6, checkpoint saved");
  ck_assert_str_eq(meta(P("term"), "step"), "6");
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9",
                           "--load", P("term"), "--save", P("resumed"), "--quiet", NULL), 0);
  ck_assert(files_equal(P("straight"), P("resumed")));
}
END_TEST

/* Copies checkpoint from to `to` with one metadata value replaced by another
 * of the same length. */
static void patch_meta(const char *from, const char *to, const char *old, const char *new) {
  size_t len;
  unsigned char *f = slurp(from, &len);
  char *at = memmem(f, len, old, strlen(old));
  ck_assert_msg(at && strlen(old) == strlen(new), "%s not in %s", old, from);
  memcpy(at, new, strlen(new));
  FILE *o = fopen(to, "wb");
  ck_assert_uint_eq(fwrite(f, 1, len, o), len);
  fclose(o);
  free(f);
}

/* A non-finite loss stops training before the optimizer step, names the
 * node, and leaves the last checkpoint as it was. */
START_TEST(nan_loss_stops_and_keeps_the_checkpoint) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("c"), "--quiet", NULL), 0);
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("c0"), "--quiet", NULL), 0);
  tiny_nan_at_step = 4; /* the 5th step, the last of epoch 1: no epoch-end save comes first */
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
                   "--save", P("c"), "--step-log", P("s.jsonl"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 5: loss is nan: first non-finite value (nan) in the forward output of "
                          "fc (tiny.nn:3:5); training stopped, last checkpoint kept\n");
  ck_assert_msg(files_equal(P("c"), P("c0")), "the checkpoint changed");
  size_t len;
  char *log = (char *)slurp(P("s.jsonl"), &len);
  ck_assert_msg(len > 0 && !memmem(log, len, "\"step\":5", 8), "the failed step was logged");
  free(log);
  /* --check-numerics finds it in the same pass, and in eval too. */
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
               "--check-numerics", NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 5: loss is nan: first non-finite value (nan) in the forward output of "
                          "fc (tiny.nn:3:5); training stopped\n");
  tiny_nan_at_step = 3;
  rc = run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("c"), "--check-numerics", NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: evaluation, test images 1..4: first non-finite value (nan) in the forward "
                          "output of fc (tiny.nn:3:5)\n");
  tiny_nan_at_step = -1;
  /* A learning rate that overflows the parameters: the next step says which. */
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--lr", "1e39",
               "--save", P("big"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 2: loss is nan: parameter fc.weight is already non-finite (");
  ck_assert_contains(out, "try a smaller --lr than 1e+39; training stopped, last checkpoint kept\n");
  ck_assert_ptr_null(slurp(P("big"), &len));
}
END_TEST

/* The per-node check reports non-finite buffers and gradients that leave
 * the loss finite; no checkpoint with a NaN is written or read unless
 * --allow-nonfinite. */
START_TEST(nonfinite_buffers_gradients_and_checkpoints) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "2",
                           "--save", P("c"), "--quiet", NULL), 0);
  tiny_nan_at_step = 2;
  tiny_nan_in = 'm'; /* stats.running_mean */
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
                   "--check-numerics", NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 3: first non-finite value (nan) in stats.running_mean, computed by the "
                          "forward pass of fc (tiny.nn:3:5); training stopped\n");
  /* Unchecked, the loss stays finite; the save at the end of epoch 1 refuses. */
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
               "--save", P("n"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, ": not saved: stats.running_mean holds a non-finite value (nan at index 0); "
                          "the last checkpoint is kept (--allow-nonfinite saves it)\n");
  size_t len;
  ck_assert_ptr_null(slurp(P("n"), &len));
  /* The same on SIGINT and at --steps. */
  tiny_raise_at_step = 3;
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
               "--save", P("n"), NULL);
  tiny_raise_at_step = -1;
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "not saved: stats.running_mean holds a non-finite value");
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "4", "--load", P("c"),
               "--save", P("n"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_ptr_null(slurp(P("n"), &len));
  /* --allow-nonfinite writes it; loading it is refused unless asked for. */
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "4", "--load",
                           P("c"), "--save", P("n"), "--allow-nonfinite", NULL), 0);
  tiny_nan_at_step = -1;
  char want[4300];
  snprintf(want, sizeof want, "nncc: checkpoint %s: stats.running_mean holds a non-finite value (nan at "
           "index 0); not loaded (--allow-nonfinite loads it)\n", P("n"));
  const char *cmds[][8] = {{"eval", "--data", dir, "--load", P("n")},
                           {"train", "--data", dir, "--load", P("n"), "--steps", "5"},
                           {"grads", "--data", dir, "--load", P("n"), "--out", P("g")}};
  for (int i = 0; i < 3; i++) {
    rc = run_cli(&tiny_model, out, sizeof out, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3], cmds[i][4],
                 cmds[i][5], cmds[i][6], NULL);
    ck_assert_msg(rc == 1, "%s: rc %d: %s", cmds[i][0], rc, out);
    ck_assert_contains(out, want);
  }
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("n"),
                           "--allow-nonfinite", NULL), 0);
  /* A NaN gradient: --check-numerics stops before the optimizer step; unchecked,
   * the next step finds the parameter it spoiled. */
  tiny_nan_at_step = 2;
  tiny_nan_in = 'g'; /* the gradient of fc.bias */
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"),
               "--check-numerics", NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 3: first non-finite value (nan) in the gradient of fc.bias, computed by "
                          "the backward pass of fc (tiny.nn:3:5); training stopped\n");
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "9", "--load", P("c"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  ck_assert_contains(out, "nncc: step 4: loss is nan: parameter fc.bias is already non-finite (nan at index 1); "
                          "try a smaller --lr than 0.05; training stopped\n");
  tiny_nan_at_step = -1;
  tiny_nan_in = 'l';
}
END_TEST

/* A checkpoint's epoch_step beyond its epoch's batches (5 here) is refused. */
START_TEST(epoch_step_beyond_the_epoch) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "3",
                           "--save", P("c"), "--quiet", NULL), 0);
  patch_meta(P("c"), P("c6"), "\"epoch_step\":\"3\"", "\"epoch_step\":\"6\"");
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--load", P("c6"), NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  char want[4300];
  snprintf(want, sizeof want, "nncc: checkpoint %s: epoch_step 6 is beyond the 5 batches of an epoch "
           "(22 images in %s, batch 4)\n", P("c6"), dir);
  ck_assert_contains(out, want);
  /* All 5 done is the end of the epoch: it resumes with the evaluation. */
  patch_meta(P("c"), P("c5"), "\"epoch_step\":\"3\"", "\"epoch_step\":\"5\"");
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--load", P("c5"), "--epochs", "1", NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  ck_assert_contains(out, "epoch 1/1  loss ");
}
END_TEST

static const struct {
  const char *args[8];
  int rc;
  const char *message;
} errors[] = {
    {{"--help"}, 0, "usage: tiny train --data DIR"},
    {{"train", "--data", "D", "-h"}, 0, "usage: tiny train"},
    {{NULL}, 2, "nncc: missing command (train, eval, grads or predict)\nTry 'tiny --help' for usage."},
    {{"fit"}, 2, "nncc: unknown command 'fit'"},
    {{"train", "--data", "D", "--bogus"}, 2, "nncc: unknown option '--bogus'\nTry 'tiny --help'"},
    {{"train", "--data"}, 2, "nncc: --data needs a value"},
    {{"train", "--data="}, 2, "nncc: --data needs a value"},
    {{"train", "--data", "D", "--lr", "abc"}, 2, "nncc: --lr: 'abc' is not a positive number"},
    {{"train", "--data", "D", "--lr=-1"}, 2, "nncc: --lr: '-1' is not a positive number"},
    {{"train", "--data", "D", "--lr", "nan"}, 2, "nncc: --lr: 'nan' is not a positive number"},
    {{"train", "--data", "D", "--epochs", "-3"}, 2, "nncc: --epochs: '-3' is not a positive integer"},
    {{"train", "--data", "D", "--epochs", "2x"}, 2, "nncc: --epochs: '2x' is not a positive integer"},
    {{"train", "--data", "D", "--steps", "0"}, 2, "nncc: --steps: '0' is not a positive integer"},
    {{"train", "--data", "D", "--threads", "0"}, 2, "nncc: --threads: '0' is not a positive integer"},
    {{"train", "--data", "D", "--seed", "-1"}, 2, "nncc: --seed: '-1' is not a non-negative integer"},
    {{"train", "--data", "D", "--seed", "18446744073709551616"}, 2, "is not a non-negative integer"},
    {{"train", "--data", "D", "--quiet=1"}, 2, "nncc: --quiet takes no value"},
    {{"train", "--data", "D", "--epochs", "1000001"}, 2,
     "nncc: --epochs: '1000001' is not a positive integer (at most 1000000)"},
    {{"train", "--data", "D", "--check-numerics=1"}, 2, "nncc: --check-numerics takes no value"},
    {{"grads", "--data", "D", "--load", "F", "--out", "G", "--check-numerics"}, 2,
     "nncc: --check-numerics does not apply to 'grads'"},
    {{"train"}, 2, "nncc: train needs --data DIR"},
    {{"eval", "--data", "D"}, 2, "nncc: eval needs --load F"},
    {{"eval", "--data", "D", "--load", "F", "--epochs", "3"}, 2, "nncc: --epochs does not apply to 'eval'"},
    {{"grads", "--data", "D", "--load", "F"}, 2, "nncc: grads needs --out F"},
    {{"eval", "--data", "D", "--load", "F", "--step-log", "S"}, 2, "nncc: --step-log does not apply to 'eval'"},
    {{"train", "--data", "/nonexistent"}, 1, "nncc: /nonexistent/train-images-idx3-ubyte: not found"},
};

START_TEST(usage_errors) {
  char *argv[10] = {"tiny"};
  int argc = 1;
  for (; argc < 9 && errors[_i].args[argc - 1]; argc++) argv[argc] = (char *)errors[_i].args[argc - 1];
  argv[argc] = NULL;
  /* run_cli takes varargs; spell out the call for up to 8 args. */
  int rc = run_cli(&tiny_model, out, sizeof out, argv[1], argv[2], argv[3], argv[4], argv[5], argv[6],
                   argv[7], argv[8], NULL);
  ck_assert_msg(rc == errors[_i].rc, "case %d: rc %d, want %d: %s", _i, rc, errors[_i].rc, out);
  ck_assert_contains(out, errors[_i].message);
}
END_TEST

START_TEST(runtime_errors_exit_1) {
  ck_assert_int_eq(run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "1",
                           "--save", P("m"), "--quiet", NULL), 0);
  /* A checkpoint of the other model. */
  int rc = run_cli(&tiny_model_nopad, out, sizeof out, "eval", "--data", dir, "--load", P("m"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "fc.weight has shape [3,36], model expects [3,16]");
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--log", P("no/such/log"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "no/such/log: No such file or directory");
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--step-log", P("no/such/log"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "no/such/log: No such file or directory");
  rc = run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("absent"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "absent: No such file or directory");
  /* A node table pointing past the arena (64 bytes) is the model's bug, said as such. */
  NnccModel bad = tiny_model;
  NnccNode node = tiny_model.nodes[0];
  node.out = (NnccSpan){NNCC_ARENA, 60, 2};
  bad.nodes = &node;
  rc = run_cli(&bad, out, sizeof out, "train", "--data", dir, NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "nncc: model tiny: node 0 of the node table lies outside the model's buffers\n");
  /* Label smoothing outside [0, 1] (or NaN) is a bad description. */
  bad = tiny_model;
  bad.label_smoothing = 1.5;
  rc = run_cli(&bad, out, sizeof out, "train", "--data", dir, NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "3 classes, label smoothing 1.5)");
  bad.label_smoothing = NAN;
  ck_assert_int_eq(run_cli(&bad, out, sizeof out, "train", "--data", dir, NULL), 1);
  /* Fewer images than one batch. */
  char small[4200];
  snprintf(small, sizeof small, "%s/small", dir);
  mkdir(small, 0755);
  write_dataset(small, 3, 3, 0);
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", small, NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "training set has 3 images, fewer than one batch of 4");
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("all");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, trains_evaluates_and_logs);
  tcase_add_test(tc, resume_is_bit_exact);
  tcase_add_test(tc, adamw_nesterov_clipping_resume_exactly);
  tcase_add_test(tc, schedules_resume_exactly);
  tcase_add_test(tc, eval_report_counts_and_ranks);
  tcase_add_test(tc, val_holds_out_and_resumes);
  tcase_add_test(tc, train_plot_draws_each_epoch);
  tcase_add_test(tc, predict_reads_png_pgm_idx);
  tcase_add_test(tc, augmentation_is_per_image_and_exact);
  tcase_add_test(tc, same_seed_same_bits_any_thread_count);
  tcase_add_loop_test(tc, grads_writes_loss_logits_and_gradients, 0,
                      (int)(sizeof grads_smoothing / sizeof grads_smoothing[0]));
  tcase_add_test(tc, step_log_records_every_step);
  tcase_add_test(tc, sigint_finishes_the_step_and_saves);
  tcase_add_test(tc, sigterm_finishes_the_step_and_saves);
  tcase_add_test(tc, nan_loss_stops_and_keeps_the_checkpoint);
  tcase_add_test(tc, nonfinite_buffers_gradients_and_checkpoints);
  tcase_add_test(tc, epoch_step_beyond_the_epoch);
  tcase_add_loop_test(tc, usage_errors, 0, (int)(sizeof errors / sizeof errors[0]));
  tcase_add_test(tc, runtime_errors_exit_1);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
