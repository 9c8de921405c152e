/*
 * test_ckpt.c -- safetensors checkpoints: round trip, the file layout,
 * atomic saving, every validation message, and light fuzzing.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "testutil.h"

#define TINY_FLOATS (3 * 36 + 7)

static char *dir;
static const NnccModel *load_model;
static const char *load_path;

static void setup(void) { dir = tmpdir_new(); }
static void teardown(void) {
  rm_rf(dir);
  free(dir);
}

static int load_child(void *arg) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS] = {0};
  NnccTrainConfig c = load_model->defaults;
  NnccProgress p = {0};
  (void)arg;
  return ckpt_load(load_path, load_model, &c, params, state, &p) ? 1 : 0;
}

/* Loads path into model m in a child; expects failure with message. */
static void expect_load_error(const NnccModel *m, const char *path, const char *message) {
  char out[4096];
  load_model = m;
  load_path = path;
  ck_assert_int_eq(capture(load_child, NULL, out, sizeof out), 1);
  ck_assert_contains(out, message);
  ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
}

/* A checkpoint of the tiny model with recognizable contents. */
static void make_state(float *params, float *state, NnccProgress *p) {
  params_init(&tiny_model, params, 3);
  params[TINY_FLOATS - 1] = 7; /* num_batches_tracked */
  params[TINY_FLOATS - 2] = -0.5f;
  for (int i = 0; i < 2 * TINY_FLOATS; i++) state[i] = (float)i * 0.25f;
  *p = (NnccProgress){11, 2, 3, 1.0 / 3.0, 1, 0};
}

START_TEST(round_trip_is_exact) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS], p2[TINY_FLOATS], s2[2 * TINY_FLOATS] = {0};
  NnccProgress p, q = {0};
  NnccTrainConfig c = tiny_model.defaults, c2 = tiny_model_nopad.defaults;
  c.lr = 0.1 / 3; /* needs all 17 digits */
  c.seed = UINT64_MAX;
  make_state(params, state, &p);
  const char *path = path_in(dir, "a.safetensors");
  ck_assert_int_eq(ckpt_save(path, &tiny_model, &c, params, state, &p), 0);
  ck_assert_int_eq(ckpt_load(path, &tiny_model, &c2, p2, s2, &q), 0);
  ck_assert_mem_eq(params, p2, sizeof params);
  /* Only the NNCC_PARAM slots of the optimizer state travel. */
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3 * 36 + 3; i++) ck_assert(s2[k * TINY_FLOATS + i] == state[k * TINY_FLOATS + i]);
  ck_assert(c2.lr == c.lr && c2.optim == NNCC_ADAM && c2.seed == UINT64_MAX && c2.momentum == 0.0);
  ck_assert(q.step == 11 && q.epoch == 2 && q.epoch_step == 3 && q.epoch_loss == 1.0 / 3.0);
  /* Nothing but the file itself is left in the directory. */
  DIR *d = opendir(dir);
  int entries = 0;
  for (struct dirent *e; (e = readdir(d));) entries += e->d_name[0] != '.';
  closedir(d);
  ck_assert_int_eq(entries, 1);
}
END_TEST

START_TEST(layout_is_safetensors) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS];
  NnccProgress p;
  make_state(params, state, &p);
  const char *path = path_in(dir, "a.safetensors");
  ck_assert_int_eq(ckpt_save(path, &tiny_model, &tiny_model.defaults, params, state, &p), 0);
  size_t len;
  unsigned char *f = slurp(path, &len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | f[i];
  ck_assert_uint_eq(n % 8, 0);
  char err[200];
  JsonValue *h = json_parse((char *)f + 8, n, err, sizeof err);
  ck_assert_ptr_nonnull(h);
  ck_assert_str_eq(h->keys[0], "fc.weight");
  ck_assert_str_eq(h->keys[3], "stats.num_batches_tracked");
  ck_assert_str_eq(h->keys[4], "optim.exp_avg.fc.weight");
  ck_assert_str_eq(h->keys[5], "optim.exp_avg_sq.fc.weight");
  const JsonValue *cnt = json_get(h, "stats.num_batches_tracked");
  ck_assert_str_eq(json_get(cnt, "dtype")->str, "I64");
  ck_assert_int_eq(json_get(cnt, "shape")->count, 0);
  int64_t v;
  memcpy(&v, f + 8 + n + json_get(cnt, "data_offsets")->items[0].num, 8);
  ck_assert_int_eq(v, 7);
  const JsonValue *w = json_get(h, "fc.weight"), *meta = json_get(h, "__metadata__");
  ck_assert_mem_eq(f + 8 + n + json_get(w, "data_offsets")->items[0].num, params, 3 * 36 * 4);
  ck_assert_str_eq(json_get(meta, "format")->str, "pt");
  ck_assert_str_eq(json_get(meta, "optim")->str, "adam");
  ck_assert_str_eq(json_get(meta, "step")->str, "11");
  ck_assert_str_eq(json_get(meta, "model")->str, "tiny");
  json_free(h);
  free(f);
}
END_TEST

START_TEST(failed_save_keeps_the_old_file) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS];
  NnccProgress p;
  char out[4096];
  make_state(params, state, &p);
  const char *good = path_in(dir, "good.safetensors");
  ck_assert_int_eq(ckpt_save(good, &tiny_model, &tiny_model.defaults, params, state, &p), 0);
  size_t len;
  unsigned char *before = slurp(good, &len);
  /* A directory where the file should go makes the rename fail. */
  mkdir(path_in(dir, "blocked"), 0755);
  mkdir(path_in(dir, "blocked/x"), 0755);
  load_path = path_in(dir, "blocked");
  int rc = ckpt_save(load_path, &tiny_model, &tiny_model.defaults, params, state, &p);
  ck_assert_int_eq(rc, -1);
  ck_assert_int_eq(access(path_in(dir, "blocked/x"), F_OK), 0);
  DIR *d = opendir(dir);
  for (struct dirent *e; (e = readdir(d));) ck_assert_msg(!strstr(e->d_name, "nncc-tmp"), "left %s", e->d_name);
  closedir(d);
  unsigned char *after = slurp(good, &len);
  ck_assert_mem_eq(before, after, len);
  free(before);
  free(after);
  (void)out;
}
END_TEST

static int save_to_missing_dir(void *arg) {
  float params[TINY_FLOATS] = {0};
  NnccProgress p = {0};
  return ckpt_save((const char *)arg, &tiny_model, &tiny_model.defaults, params, NULL, &p) ? 1 : 0;
}

START_TEST(save_reports_the_file) {
  char out[4096], path[4200];
  snprintf(path, sizeof path, "%s/no/such/dir/c.safetensors", dir);
  ck_assert_int_eq(capture(save_to_missing_dir, path, out, sizeof out), 1);
  ck_assert_contains(out, "/no/such/dir/c.safetensors: cannot write checkpoint: ");
  ck_assert_contains(out, "No such file or directory");
}
END_TEST

START_TEST(shape_mismatch_names_the_tensor) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS];
  NnccProgress p;
  make_state(params, state, &p);
  const char *path = path_in(dir, "x.safetensors");
  ck_assert_int_eq(ckpt_save(path, &tiny_model, &tiny_model.defaults, params, state, &p), 0);
  char want[4300];
  snprintf(want, sizeof want, "nncc: checkpoint %s: fc.weight has shape [3,36], model expects [3,16]", path);
  expect_load_error(&tiny_model_nopad, path, want);
}
END_TEST

/* Writes a safetensors file from a header text and `data` bytes of data. */
static const char *raw(const char *header, size_t data) {
  const char *path = path_in(dir, "raw.safetensors");
  FILE *f = fopen(path, "wb");
  uint64_t n = strlen(header);
  fwrite(&n, 8, 1, f);
  fwrite(header, 1, n, f);
  for (size_t i = 0; i < data; i++) fputc(0, f);
  fclose(f);
  return path;
}

#define W "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,36],\"data_offsets\":[0,432]}"
#define B "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[432,444]}"
#define M "\"stats.running_mean\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[444,456]}"
#define C "\"stats.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[456,464]}"

static const struct {
  const char *header;
  size_t data;
  const char *message;
} bad_headers[] = {
    {"{" W "," B "," M "," C "}", 464, NULL},
    {"{" W "," B "," M "," C "," "\"__metadata__\":{\"step\":\"3\"}}", 464, "no optimizer state to resume step 3"},
    {"{" W "," B "," M "}", 456, "missing tensor stats.num_batches_tracked"},
    {"{" W "," B "," M "," C ",\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[464,468]}}", 468,
     "tensor x is not in model tiny"},
    {"{" W "," B "," M "," C "}", 465, "data section is 465 bytes, tensors cover 464"},
    {"{" W "," B "," M "," C "}", 400, "fc.weight: data_offsets [0,432] outside the 400 data bytes"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[428,440]}," M "," C "}", 464,
     "fc.weight and fc.bias overlap"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[433,445]}," M "," C "}", 464,
     "gap in the data section before fc.bias"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[432,444]}," M "," C "}", 464,
     "fc.bias: data_offsets span 12 bytes, shape and dtype need 16"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[432,444]}," M "," C "}", 464,
     "fc.bias has dtype F16, model expects F32"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"Q4\",\"shape\":[3],\"data_offsets\":[432,444]}," M "," C "}", 464,
     "fc.bias: unknown dtype"},
    {"{" W ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3]}," M "," C "}", 464,
     "fc.bias: entry needs exactly dtype, shape and data_offsets"},
    {"{" W "," B "," M ",\"stats.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[456,464]}}",
     464, "stats.num_batches_tracked has shape [1], model expects []"},
    {"{" W "," B "," M "," C ",\"__metadata__\":{\"step\":3}}", 464, "__metadata__ must map strings to strings"},
    {"{" W "," B "," M "," C ",\"__metadata__\":{\"lr\":\"fast\"}}", 464, "metadata lr is 'fast', not a positive number"},
    /* Metadata passes the command line's rules: what --lr refuses, a file cannot bring in. */
#define META(kv) "{" W "," B "," M "," C ",\"__metadata__\":{" kv "}}", 464
    {META("\"lr\":\"nan\""), "metadata lr is 'nan', not a positive number"},
    {META("\"lr\":\"-0.5\""), "metadata lr is '-0.5', not a positive number"},
    {META("\"lr\":\"inf\""), "metadata lr is 'inf', not a positive number"},
    {META("\"beta1\":\"1\""), "metadata beta1 is '1', not a number in [0, 1)"},
    {META("\"beta2\":\"-0.1\""), "metadata beta2 is '-0.1', not a number in [0, 1)"},
    {META("\"eps\":\"0\""), "metadata eps is '0', not a positive number"},
    {META("\"weight_decay\":\"-1e-4\""), "metadata weight_decay is '-1e-4', not a non-negative number"},
    {META("\"momentum\":\"nan\""), "metadata momentum is 'nan', not a non-negative number"},
    {META("\"epoch_loss\":\"inf\""), "metadata epoch_loss is 'inf', not a non-negative number"},
    {META("\"seed\":\"-1\""), "metadata seed is '-1', not a non-negative integer"},
    {META("\"epoch\":\"1000001\""), "metadata epoch is '1000001', not a non-negative integer (at most 1000000)"},
    {META("\"epoch_step\":\"2147483648\""), "metadata epoch_step is '2147483648', not a non-negative integer"},
    {META("\"has_optim\":\"2\""), "metadata has_optim is '2', not 0 or 1"},
    {META("\"lr\":\"0.5\",\"beta1\":\"0\",\"eps\":\"1e-300\",\"momentum\":\"0\",\"epoch\":\"1000000\""), NULL},
#undef META
    {"{" W "," B "," M "," C ",\"__metadata__\":{\"optim\":\"lion\"}}", 464, "metadata optim is 'lion'"},
    {"[1,2]", 0, "bad header: not a JSON object"},
    {"{\"a\":1.5}", 0, "bad header: only non-negative integers are allowed at byte 6"},
};

START_TEST(rejects_bad_headers) {
  const char *path = raw(bad_headers[_i].header, bad_headers[_i].data);
  if (!bad_headers[_i].message) { /* the valid baseline the others mutate */
    float params[TINY_FLOATS], state[2 * TINY_FLOATS] = {0};
    NnccTrainConfig c = tiny_model.defaults;
    NnccProgress p = {0};
    ck_assert_int_eq(ckpt_load(path, &tiny_model, &c, params, state, &p), 0);
    return;
  }
  expect_load_error(&tiny_model, path, bad_headers[_i].message);
}
END_TEST

/* A header of 100,000 tensors is refused before it is parsed: a header
 * costs ~10x its bytes to parse, so it may be no larger than the model's
 * own checkpoint can need (test_numerics parses 100,000 keys directly;
 * bench/hostile.sh times both). */
START_TEST(rejects_a_header_of_100000_tensors) {
  enum { N = 100000 };
  char *h = malloc((size_t)N * 80 + 1024);
  size_t n = (size_t)sprintf(h, "{" W "," B "," M "," C);
  for (int i = 0; i < N; i++)
    n += (size_t)sprintf(h + n, ",\"x.%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}", i,
                         464 + i, 465 + i);
  strcpy(h + n, "}");
  const char *path = raw(h, 464 + N);
  free(h);
  expect_load_error(&tiny_model, path, "is larger than this model's checkpoint can need");
}
END_TEST

START_TEST(rejects_bad_lengths) {
  const char *path = path_in(dir, "len.safetensors");
  FILE *f = fopen(path, "wb");
  fwrite("\x10\0\0", 1, 3, f);
  fclose(f);
  expect_load_error(&tiny_model, path, "truncated: 3 bytes, too short for a safetensors header");
  f = fopen(path, "wb");
  fwrite("\xff\xff\0\0\0\0\0\0{}", 1, 10, f);
  fclose(f);
  expect_load_error(&tiny_model, path, "header length 65535 does not fit the file's 10 bytes");
  expect_load_error(&tiny_model, path_in(dir, "absent"), "absent: No such file or directory");
  expect_load_error(&tiny_model, dir, "not a regular file");
}
END_TEST

/* Truncations and random byte flips must fail cleanly or load, never crash
 * (run under -fsanitize=address,undefined to make that a real check). */
START_TEST(survives_corruption) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS], p2[TINY_FLOATS], s2[2 * TINY_FLOATS];
  NnccProgress p, q;
  make_state(params, state, &p);
  const char *good = path_in(dir, "good.safetensors"), *bad = path_in(dir, "bad.safetensors");
  ck_assert_int_eq(ckpt_save(good, &tiny_model, &tiny_model.defaults, params, state, &p), 0);
  size_t len;
  unsigned char *bytes = slurp(good, &len);
  fflush(stderr);
  int saved = dup(2);
  FILE *null = freopen("/dev/null", "w", stderr);
  (void)null;
  uint32_t x = 12345;
  int failures = 0;
  for (int trial = 0; trial < 1500; trial++) {
    unsigned char *copy = malloc(len);
    memcpy(copy, bytes, len);
    size_t n = len;
    x = x * 1664525u + 1013904223u;
    if (trial < 300) n = (size_t)trial * len / 300; /* truncations */
    else
      for (int k = 0; k < 1 + trial % 4; k++, x = x * 1664525u + 1013904223u)
        copy[(x >> 8) % (trial % 2 ? 400 : len)] ^= (unsigned char)(1u << (x >> 29)); /* flips, often in the header */
    FILE *f = fopen(bad, "wb");
    fwrite(copy, 1, n, f);
    fclose(f);
    NnccTrainConfig c = tiny_model.defaults;
    memset(&q, 0, sizeof q);
    failures += ckpt_load(bad, &tiny_model, &c, p2, s2, &q) != 0;
    free(copy);
  }
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  free(bytes);
  ck_assert_int_gt(failures, 300);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ckpt");
  TCase *tc = tcase_create("all");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, round_trip_is_exact);
  tcase_add_test(tc, layout_is_safetensors);
  tcase_add_test(tc, failed_save_keeps_the_old_file);
  tcase_add_test(tc, save_reports_the_file);
  tcase_add_test(tc, shape_mismatch_names_the_tensor);
  tcase_add_loop_test(tc, rejects_bad_headers, 0, (int)(sizeof bad_headers / sizeof bad_headers[0]));
  tcase_add_test(tc, rejects_a_header_of_100000_tensors);
  tcase_add_test(tc, rejects_bad_lengths);
  tcase_add_test(tc, survives_corruption);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
