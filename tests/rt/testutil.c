/*
 * testutil.c -- see testutil.h.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <math.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

long tiny_raise_at_step = -1;
int tiny_raise_signal = SIGINT;
long tiny_nan_at_step = -1;
char tiny_nan_in = 'l';

#define IN_H 6
#define IN_W 6
#define IN (IN_H * IN_W)

/* Parameter block: fc.weight (3*IN), fc.bias (3), running_mean (3), count (1). */
static const NnccParam tiny_params[] = {
    {"fc.weight", NNCC_PARAM, 2, {3, IN}, 3 * IN, 0, NNCC_INIT_UNIFORM, 0.1666667f, 0},
    {"fc.bias", NNCC_PARAM, 1, {3}, 3, 3 * IN, NNCC_INIT_UNIFORM, 0.1666667f, 0},
    {"stats.running_mean", NNCC_BUFFER, 1, {3}, 3, 3 * IN + 3, NNCC_INIT_ZEROS, 0, 0},
    {"stats.num_batches_tracked", NNCC_BUFFER_COUNT, 0, {0}, 1, 3 * IN + 6, NNCC_INIT_ZEROS, 0, 0},
};

static void tiny_forward_n(NnccState *s, int training, int in) {
  const float *w = s->params, *bias = s->params + 3 * in;
  float *mean = s->params + 3 * in + 3, *count = s->params + 3 * in + 6;
  if (training && tiny_raise_at_step >= 0 && s->step == (uint64_t)tiny_raise_at_step) raise(tiny_raise_signal);
  /* Use the arena as scratch, as generated code would. */
  float *acc = (float *)s->arena;
  for (int b = 0; b < 4; b++)
    for (int c = 0; c < 3; c++) {
      float z = bias[c];
      for (int k = 0; k < in; k++) z += w[c * in + k] * s->input[b * in + k];
      acc[b * 3 + c] = z;
      s->logits[b * 3 + c] = z;
    }
  int nan_now = tiny_nan_at_step >= 0 && s->step == (uint64_t)tiny_nan_at_step;
  if (nan_now && tiny_nan_in == 'l') s->logits[5] = NAN;
  if (training) {
    for (int c = 0; c < 3; c++) {
      float m = 0;
      for (int b = 0; b < 4; b++) m += acc[b * 3 + c];
      mean[c] = 0.9f * mean[c] + 0.1f * (m / 4);
    }
    *count += 1;
    if (nan_now && tiny_nan_in == 'm') mean[0] = NAN;
  }
  if (s->check) s->check(s, 0, NNCC_FORWARD);
}

static void tiny_backward_n(NnccState *s, int in) {
  float *dw = s->grads, *db = s->grads + 3 * in;
#pragma omp parallel for
  for (int c = 0; c < 3; c++) {
    float g = 0;
    for (int b = 0; b < 4; b++) g += s->dlogits[b * 3 + c];
    db[c] = g;
    for (int k = 0; k < in; k++) {
      float gw = 0;
      for (int b = 0; b < 4; b++) gw += s->dlogits[b * 3 + c] * s->input[b * in + k];
      dw[c * in + k] = gw;
    }
  }
  if (tiny_nan_at_step >= 0 && s->step == (uint64_t)tiny_nan_at_step && tiny_nan_in == 'g') db[1] = NAN;
  if (s->check) s->check(s, 0, NNCC_BACKWARD);
}

static void tiny_forward(NnccState *s, int training) { tiny_forward_n(s, training, IN); }
static void tiny_backward(NnccState *s) { tiny_backward_n(s, IN); }
static void nopad_forward(NnccState *s, int training) { tiny_forward_n(s, training, 16); }
static void nopad_backward(NnccState *s) { tiny_backward_n(s, 16); }

/* One node: fc (with the running mean as its buffer), its output the logits. */
static const NnccNode tiny_nodes[] = {
    {"fc", "linear", "tiny.nn:3:5", {NNCC_LOGITS, 0, 12}, 1, (const char *const[]){"x"},
     (const NnccSpan[]){{0}}, 0, 4},
};

const NnccModel tiny_model = {
    NNCC_RT_ABI, "tiny", "tests/rt/testutil.c", "test", 4, 1, IN_H, IN_W, 1, 1, 1, 1, 3, 0.0,
    4, tiny_params, 3 * IN + 7, 64,
    {NNCC_ADAM, 0.05, 0.9, 0.999, 1e-8, 0.0, 0.0, 2, 1234, 0, 0.0, 0.0, "", ""},
    tiny_forward, tiny_backward, 1, tiny_nodes, 0, NULL, 0, 0, 1, 1,
};

static const NnccParam nopad_params[] = {
    {"fc.weight", NNCC_PARAM, 2, {3, 16}, 48, 0, NNCC_INIT_UNIFORM, 0.25f, 0},
    {"fc.bias", NNCC_PARAM, 1, {3}, 3, 48, NNCC_INIT_UNIFORM, 0.25f, 0},
    {"stats.running_mean", NNCC_BUFFER, 1, {3}, 3, 51, NNCC_INIT_ZEROS, 0, 0},
    {"stats.num_batches_tracked", NNCC_BUFFER_COUNT, 0, {0}, 1, 54, NNCC_INIT_ZEROS, 0, 0},
};

const NnccModel tiny_model_nopad = {
    NNCC_RT_ABI, "tiny_nopad", "tests/rt/testutil.c", "test", 4, 1, 4, 4, 0, 0, 0, 0, 3, 0.0,
    4, nopad_params, 55, 64,
    {NNCC_SGD, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.9, 2, 99, 0, 0.0, 0.0, "", ""},
    nopad_forward, nopad_backward, 1, tiny_nodes, 0, NULL, 0, 0, 1, 1,
};

char *tmpdir_new(void) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *p = malloc(strlen(base) + 32);
  sprintf(p, "%s/nncc_rt_XXXXXX", base);
  ck_assert_ptr_nonnull(mkdtemp(p));
  return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

char *path_in(const char *dir, const char *name) {
  static char ring[8][4096];
  static int next;
  char *p = ring[next++ % 8];
  snprintf(p, 4096, "%s/%s", dir, name);
  return p;
}

void write_idx(const char *path, int gz, uint32_t magic, int rank, const uint32_t *dims,
               const unsigned char *data, size_t len) {
  unsigned char head[4 + 4 * 4];
  size_t n = 0;
  for (int i = -1; i < rank; i++) {
    uint32_t v = i < 0 ? magic : dims[i];
    for (int k = 3; k >= 0; k--) head[n++] = (unsigned char)(v >> (8 * k));
  }
  if (gz) {
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, head, (unsigned)n), (int)n);
    if (len) ck_assert_int_eq(gzwrite(g, data, (unsigned)len), (int)len);
    ck_assert_int_eq(gzclose(g), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(head, 1, n, f), n);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
  }
}

static void write_split(const char *dir, const char *split, int n, int gz, uint32_t salt) {
  unsigned char *img = malloc((size_t)n * 16), *lab = malloc((size_t)n);
  uint32_t x = salt;
  for (int i = 0; i < n; i++) {
    lab[i] = (unsigned char)(i % TINY_CLASSES);
    for (int p = 0; p < 16; p++) {
      x = x * 1664525u + 1013904223u;
      int stripe = p / 4 == lab[i]; /* row `label` is bright */
      img[i * 16 + p] = (unsigned char)(stripe ? 160 + (x >> 27) : (x >> 26));
    }
  }
  char name[64];
  uint32_t idims[3] = {(uint32_t)n, 4, 4}, ldims[1] = {(uint32_t)n};
  snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", split, gz ? ".gz" : "");
  write_idx(path_in(dir, name), gz, 0x803, 3, idims, img, (size_t)n * 16);
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", split, gz ? ".gz" : "");
  write_idx(path_in(dir, name), gz, 0x801, 1, ldims, lab, (size_t)n);
  free(img);
  free(lab);
}

void write_dataset(const char *dir, int ntrain, int ntest, int gz) {
  write_split(dir, "train", ntrain, gz, 1);
  write_split(dir, "t10k", ntest, gz, 2);
}

int capture(int (*fn)(void *), void *arg, char *out, size_t cap) {
  char path[] = "/tmp/nncc_rt_out_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    int rc = fn(arg);
    fflush(stdout);
    fflush(stderr);
    _exit(rc & 0xff);
  }
  int status;
  waitpid(pid, &status, 0);
  ssize_t n = pread(fd, out, cap - 1, 0);
  out[n > 0 ? n : 0] = 0;
  close(fd);
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

typedef struct CliCall {
  const NnccModel *m;
  int argc;
  char *argv[64];
} CliCall;

static int cli_child(void *arg) {
  CliCall *c = arg;
  return nncc_main(c->argc, c->argv, c->m);
}

int run_cli(const NnccModel *m, char *out, size_t cap, ...) {
  CliCall c = {m, 1, {"tiny"}};
  va_list ap;
  va_start(ap, cap);
  for (char *a; (a = va_arg(ap, char *)) && c.argc < 63;) c.argv[c.argc++] = a;
  va_end(ap);
  c.argv[c.argc] = NULL;
  return capture(cli_child, &c, out, cap);
}

unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)n + 1);
  *len = fread(p, 1, (size_t)n, f);
  p[*len] = 0; /* a string too, for strstr */
  fclose(f);
  return p;
}

int files_equal(const char *a, const char *b) {
  size_t la, lb;
  unsigned char *pa = slurp(a, &la), *pb = slurp(b, &lb);
  int eq = pa && pb && la == lb && memcmp(pa, pb, la) == 0;
  free(pa);
  free(pb);
  return eq;
}

int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
