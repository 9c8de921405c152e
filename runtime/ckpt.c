/*
 * ckpt.c -- checkpoints in the safetensors format.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"key": "value", ...}}
 * padded with spaces to a multiple of 8, then the tensors' raw little-endian
 * bytes; offsets are relative to the end of the header.  Model tensors use
 * the PyTorch state_dict names, so safetensors.torch.load_file() gives a
 * state dict the equivalent nn.Module loads directly.  Optimizer state sits
 * under "optim.exp_avg.NAME", "optim.exp_avg_sq.NAME" (Adam) and
 * "optim.momentum_buffer.NAME" (SGD): "optim" is never a module name in a
 * generated model, so these cannot clash.  Metadata carries the progress
 * and hyperparameters a bit-exact resume needs (docs/runtime.md).
 *
 * Saving is atomic (fileio.c: temp file, fsync, rename, fsync of the
 * directory), or writes through to a device or FIFO;
 * loading trusts nothing in the file.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

/* The longest metadata value: a schedule's text (nncc_rt.h). */
#define META_LEN NNCC_SCHED_TEXT

#define HEADER_MAX (100u << 20) /* the reference implementation's limit */
#define NAME_MAX_LEN 256
/* The most header a checkpoint of m can need: per tensor (a parameter and
 * up to two optimizer-state copies) a generously padded entry, plus the
 * metadata.  Parsing costs ~10x the header's bytes in memory, so a hostile
 * header is bounded by the model's size, not by HEADER_MAX. */
#define HEADER_PER_TENSOR 4096u
#define HEADER_META (64u << 10)
static uint64_t header_cap(const NnccModel *m) {
  uint64_t cap = HEADER_META + HEADER_PER_TENSOR * (3u * (uint64_t)m->nparams + 1u);
  return cap < HEADER_MAX ? cap : HEADER_MAX;
}

/* ---- writing ---- */

typedef struct Entry {
  char name[NAME_MAX_LEN];
  const char *dtype; /* "F32" or "I64" */
  int rank;
  int64_t shape[4];
  const float *data; /* F32: numel floats; I64: one float holding the count */
  size_t nbytes;
} Entry;

/* JSON string literal; names and metadata are ASCII in practice, but a
 * quote or control character must still not break the header. */
static void buf_json_string(RtBuf *b, const char *s) {
  rt_buf_printf(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') rt_buf_printf(b, "\\%c", c);
    else if (c < 0x20) rt_buf_printf(b, "\\u%04x", c);
    else rt_buf_printf(b, "%c", c);
  }
  rt_buf_printf(b, "\"");
}

static size_t entry_numel(const Entry *e) {
  size_t n = 1;
  for (int i = 0; i < e->rank; i++) n *= (size_t)e->shape[i];
  return n;
}

static int entry_set(Entry *e, const char *prefix, const char *name, const char *dtype, int rank,
                     const int64_t *shape, const float *data) {
  int n = snprintf(e->name, sizeof e->name, "%s%s", prefix, name);
  if (n < 0 || (size_t)n >= sizeof e->name) {
    rt_error("tensor name %s%s is too long", prefix, name);
    return -1;
  }
  e->dtype = dtype;
  e->rank = rank;
  memcpy(e->shape, shape, sizeof e->shape);
  e->data = data;
  e->nbytes = strcmp(dtype, "I64") == 0 ? 8 : entry_numel(e) * sizeof(float);
  return 0;
}

/* Header JSON, space-padded so the data starts 8-byte aligned. */
static int build_header(RtBuf *b, const Entry *e, int n, char (*meta)[2][META_LEN], int nmeta) {
  size_t off = 0;
  rt_buf_printf(b, "{");
  for (int i = 0; i < n; i++) {
    buf_json_string(b, e[i].name);
    rt_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", e[i].dtype);
    for (int d = 0; d < e[i].rank; d++) rt_buf_printf(b, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
    rt_buf_printf(b, "],\"data_offsets\":[%zu,%zu]},", off, off + e[i].nbytes);
    off += e[i].nbytes;
  }
  rt_buf_printf(b, "\"__metadata__\":{");
  for (int i = 0; i < nmeta; i++) {
    rt_buf_printf(b, "%s", i ? "," : "");
    buf_json_string(b, meta[i][0]);
    rt_buf_printf(b, ":");
    buf_json_string(b, meta[i][1]);
  }
  rt_buf_printf(b, "}}");
  while (!b->failed && b->len % 8) rt_buf_printf(b, " ");
  if (b->failed) rt_error("out of memory building a checkpoint header");
  return b->failed ? -1 : 0;
}

static int write_body(FioOut *f, const RtBuf *hdr, const Entry *e, int n) {
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr->len >> (8 * i));
  if (fio_out_write(f, len8, 8) || fio_out_write(f, hdr->p, hdr->len)) return -1;
  for (int i = 0; i < n; i++) {
    if (strcmp(e[i].dtype, "I64") == 0) {
      int64_t v = (int64_t)llround((double)e[i].data[0]);
      if (fio_out_write(f, &v, 8)) return -1;
    } else if (fio_out_write(f, e[i].data, e[i].nbytes)) {
      return -1;
    }
  }
  return 0;
}

/* Atomic for a regular file, written through for a device or FIFO
 * (fileio.c). */
static int write_atomic(const char *path, const Entry *e, int n, char (*meta)[2][META_LEN], int nmeta) {
  RtBuf hdr = {0};
  FioOut out;
  int rc = -1;
  if (build_header(&hdr, e, n, meta, nmeta)) goto done;
  if (fio_out_open(&out, path) || write_body(&out, &hdr, e, n) || fio_out_commit(&out)) {
    fio_out_abort(&out);
    rt_error("%s: cannot write checkpoint: %s", path, fio_strerror(errno));
    goto done;
  }
  rc = 0;
done:
  free(hdr.p);
  return rc;
}

static const char *optim_name(NnccOptim o) {
  return o == NNCC_ADAM ? "adam" : o == NNCC_ADAMW ? "adamw" : "sgd";
}

/* The model's tensors (parameters and buffers, a count as I64) as the
 * first m->nparams entries of e. */
static int model_entries(Entry *e, const NnccModel *m, const float *params) {
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    int count = q->kind == NNCC_BUFFER_COUNT;
    if (entry_set(&e[i], "", q->name, count ? "I64" : "F32", count ? 0 : q->rank, q->shape,
                  params + q->offset))
      return -1;
  }
  return 0;
}

int ckpt_save_weights(const char *path, const NnccModel *m, const float *params) {
  Entry *e = xmalloc((size_t)(m->nparams ? m->nparams : 1) * sizeof *e, "checkpoint entries");
  int rc = -1;
  if (!e) return -1;
  char meta[1][2][META_LEN] = {{"format", "pt"}};
  if (!model_entries(e, m, params)) rc = write_atomic(path, e, m->nparams, meta, 1);
  free(e);
  return rc;
}

int ckpt_save(const char *path, const NnccModel *m, const NnccTrainConfig *c,
              const float *params, const float *state, const NnccProgress *p) {
  int cap = 3 * m->nparams, n = m->nparams, rc = -1;
  Entry *e = xmalloc((size_t)(cap ? cap : 1) * sizeof *e, "checkpoint entries");
  if (!e) return -1;
  size_t F = m->params_floats;
  if (model_entries(e, m, params)) goto out;
  for (int i = 0; state && i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (q->kind != NNCC_PARAM) continue;
    if (optim_is_adam(c->optim)) {
      if (entry_set(&e[n++], "optim.exp_avg.", q->name, "F32", q->rank, q->shape, state + q->offset) ||
          entry_set(&e[n++], "optim.exp_avg_sq.", q->name, "F32", q->rank, q->shape,
                    state + F + q->offset))
        goto out;
    } else if (c->momentum != 0.0) {
      if (entry_set(&e[n++], "optim.momentum_buffer.", q->name, "F32", q->rank, q->shape,
                    state + q->offset))
        goto out;
    }
  }
  char meta[24][2][META_LEN];
  int k = 0;
#define META(key, ...) (snprintf(meta[k][0], META_LEN, "%s", key), snprintf(meta[k][1], META_LEN, __VA_ARGS__), k++)
  META("format", "pt");
  META("model", "%s", m->name ? m->name : "");
  META("optim", "%s", optim_name(c->optim));
  META("lr", "%.17g", c->lr);
  META("beta1", "%.17g", c->beta1);
  META("beta2", "%.17g", c->beta2);
  META("eps", "%.17g", c->eps);
  META("weight_decay", "%.17g", c->weight_decay);
  META("momentum", "%.17g", c->momentum);
  META("nesterov", "%d", c->nesterov);
  META("clip_grad_norm", "%.17g", c->clip_grad_norm);
  META("clip_grad_value", "%.17g", c->clip_grad_value);
  META("schedule", "%s", c->schedule);
  META("warmup", "%s", c->warmup);
  META("seed", "%llu", (unsigned long long)c->seed);
  META("step", "%llu", (unsigned long long)p->step);
  META("epoch", "%d", p->epoch);
  META("epoch_step", "%d", p->epoch_step);
  META("epoch_loss", "%.17g", p->epoch_loss);
  META("has_optim", "%d", state != NULL);
  META("val", "%d", p->val);
#undef META
  rc = write_atomic(path, e, n, meta, k);
out:
  free(e);
  return rc;
}

int ckpt_write_tensors(const char *path, const NnccTensor *t, int n) {
  Entry *e = xmalloc((size_t)(n ? n : 1) * sizeof *e, "checkpoint entries");
  int rc = -1;
  if (!e) return -1;
  for (int i = 0; i < n; i++)
    if (entry_set(&e[i], "", t[i].name, "F32", t[i].rank, t[i].shape, t[i].data)) goto out;
  char meta[1][2][META_LEN] = {{"format", "pt"}};
  rc = write_atomic(path, e, n, meta, 1);
out:
  free(e);
  return rc;
}

/* ---- reading ---- */

typedef struct Tensor {
  const char *name;
  const char *dtype;
  size_t elem;
  int rank;
  int64_t shape[8];
  uint64_t begin, end;
  int used;
} Tensor;

typedef struct Reader {
  const char *path;
  FILE *f;
  uint64_t data_start, data_len;
  JsonValue *root;
  Tensor *t;
  int nt;
  const JsonValue *meta;
} Reader;

static size_t dtype_size(const char *s) {
  static const struct { const char *name; size_t size; } dt[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"F64", 8},  {"I64", 8}, {"U64", 8}};
  for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++)
    if (strcmp(s, dt[i].name) == 0) return dt[i].size;
  return 0;
}

static void shape_str(char *out, size_t cap, int rank, const int64_t *shape) {
  size_t n = (size_t)snprintf(out, cap, "[");
  for (int i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (n < cap) snprintf(out + n, cap - n, "]");
}

/* One header entry: exactly dtype, shape and data_offsets, consistent. */
static int read_entry(Reader *r, const char *name, const JsonValue *v, Tensor *t) {
  const JsonValue *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"),
                  *off = json_get(v, "data_offsets");
  t->name = name;
  if (v->kind != JSON_OBJECT || !dt || !sh || !off || v->count != 3) {
    rt_error("checkpoint %s: %s: entry needs exactly dtype, shape and data_offsets", r->path, name);
    return -1;
  }
  if (dt->kind != JSON_STRING || !(t->elem = dtype_size(dt->str))) {
    rt_error("checkpoint %s: %s: unknown dtype", r->path, name);
    return -1;
  }
  t->dtype = dt->str;
  if (sh->kind != JSON_ARRAY || sh->count > 8) {
    rt_error("checkpoint %s: %s: shape must be an array of at most 8 sizes", r->path, name);
    return -1;
  }
  uint64_t numel = 1;
  t->rank = sh->count;
  for (int i = 0; i < sh->count; i++) {
    if (sh->items[i].kind != JSON_INT || sh->items[i].num > (int64_t)1 << 40 ||
        (numel *= (uint64_t)sh->items[i].num) > (uint64_t)1 << 40) {
      rt_error("checkpoint %s: %s: bad shape", r->path, name);
      return -1;
    }
    t->shape[i] = sh->items[i].num;
  }
  if (off->kind != JSON_ARRAY || off->count != 2 || off->items[0].kind != JSON_INT ||
      off->items[1].kind != JSON_INT) {
    rt_error("checkpoint %s: %s: data_offsets must be [begin, end]", r->path, name);
    return -1;
  }
  t->begin = (uint64_t)off->items[0].num;
  t->end = (uint64_t)off->items[1].num;
  if (t->begin > t->end || t->end > r->data_len) {
    rt_error("checkpoint %s: %s: data_offsets [%llu,%llu] outside the %llu data bytes", r->path,
             name, (unsigned long long)t->begin, (unsigned long long)t->end,
             (unsigned long long)r->data_len);
    return -1;
  }
  if (t->end - t->begin != numel * t->elem) {
    rt_error("checkpoint %s: %s: data_offsets span %llu bytes, shape and dtype need %llu", r->path,
             name, (unsigned long long)(t->end - t->begin), (unsigned long long)(numel * t->elem));
    return -1;
  }
  return 0;
}

static int by_begin(const void *a, const void *b) {
  const Tensor *x = *(const Tensor *const *)a, *y = *(const Tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* The tensors must tile the data section exactly, as the reference
 * implementation requires: no overlap (two tensors sharing bytes), no gap,
 * nothing after the last one. */
static int check_tiling(Reader *r) {
  const Tensor **s = xmalloc((size_t)(r->nt ? r->nt : 1) * sizeof *s, "checkpoint index");
  if (!s) return -1;
  for (int i = 0; i < r->nt; i++) s[i] = &r->t[i];
  qsort(s, (size_t)r->nt, sizeof *s, by_begin);
  uint64_t pos = 0;
  int rc = -1;
  for (int i = 0; i < r->nt; i++) {
    if (s[i]->begin < pos) {
      rt_error("checkpoint %s: %s and %s overlap in the data section", r->path, s[i - 1]->name,
               s[i]->name);
      goto out;
    }
    if (s[i]->begin > pos) {
      rt_error("checkpoint %s: gap in the data section before %s", r->path, s[i]->name);
      goto out;
    }
    pos = s[i]->end;
  }
  if (pos != r->data_len) {
    rt_error("checkpoint %s: data section is %llu bytes, tensors cover %llu", r->path,
             (unsigned long long)r->data_len, (unsigned long long)pos);
    goto out;
  }
  rc = 0;
out:
  free(s);
  return rc;
}

static int reader_open(Reader *r, const char *path, uint64_t max_header) {
  memset(r, 0, sizeof *r);
  r->path = path;
  int fd = fio_open_read(path); /* a FIFO is refused, not waited on */
  if (fd < 0 || !(r->f = fdopen(fd, "rb"))) {
    rt_error("checkpoint %s: %s", path, fio_strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  struct stat st;
  unsigned char len8[8];
  char err[256];
  if (fstat(fd, &st)) {
    rt_error("checkpoint %s: %s", path, strerror(errno));
    return -1;
  }
  uint64_t size = (uint64_t)st.st_size, n = 0;
  if (size < 8 || fread(len8, 1, 8, r->f) != 8) {
    rt_error("checkpoint %s: truncated: %llu bytes, too short for a safetensors header", path,
             (unsigned long long)size);
    return -1;
  }
  for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
  if (n < 2 || n > size - 8) {
    rt_error("checkpoint %s: header length %llu does not fit the file's %llu bytes", path,
             (unsigned long long)n, (unsigned long long)size);
    return -1;
  }
  if (n > max_header) {
    rt_error("checkpoint %s: header of %llu bytes is larger than this model's checkpoint can "
             "need (%llu)", path, (unsigned long long)n, (unsigned long long)max_header);
    return -1;
  }
  char *text = xmalloc((size_t)n, "checkpoint header");
  if (!text) return -1;
  if (fread(text, 1, (size_t)n, r->f) != n) {
    rt_error("checkpoint %s: cannot read the header", path);
    free(text);
    return -1;
  }
  r->data_start = 8 + n;
  r->data_len = size - 8 - n;
  r->root = json_parse(text, (size_t)n, err, sizeof err);
  free(text);
  if (!r->root || r->root->kind != JSON_OBJECT) {
    rt_error("checkpoint %s: bad header: %s", path, r->root ? "not a JSON object" : err);
    return -1;
  }
  r->t = xmalloc((size_t)(r->root->count ? r->root->count : 1) * sizeof *r->t, "checkpoint index");
  if (!r->t) return -1;
  for (int i = 0; i < r->root->count; i++) {
    const JsonValue *v = &r->root->items[i];
    if (strcmp(r->root->keys[i], "__metadata__") == 0) {
      int bad = v->kind != JSON_OBJECT;
      for (int k = 0; !bad && k < v->count; k++) bad = v->items[k].kind != JSON_STRING;
      if (bad) {
        rt_error("checkpoint %s: __metadata__ must map strings to strings", path);
        return -1;
      }
      r->meta = v;
      continue;
    }
    memset(&r->t[r->nt], 0, sizeof r->t[r->nt]);
    if (read_entry(r, r->root->keys[i], v, &r->t[r->nt])) return -1;
    r->nt++;
  }
  return check_tiling(r);
}

static void reader_close(Reader *r) {
  if (r->f) fclose(r->f);
  json_free(r->root);
  free(r->t);
}

static Tensor *find_tensor(Reader *r, const char *name) {
  for (int i = 0; i < r->nt; i++)
    if (strcmp(r->t[i].name, name) == 0) return &r->t[i];
  return NULL;
}

/* Reads tensor `name` into dst, checking dtype and shape against the model. */
static int load_tensor(Reader *r, const char *name, const NnccParam *q, int count, float *dst) {
  Tensor *t = find_tensor(r, name);
  char want[96], got[96];
  int rank = count ? 0 : q->rank;
  if (!t) {
    rt_error("checkpoint %s: missing tensor %s", r->path, name);
    return -1;
  }
  t->used = 1;
  if (strcmp(t->dtype, count ? "I64" : "F32") != 0) {
    rt_error("checkpoint %s: %s has dtype %s, model expects %s", r->path, name, t->dtype,
             count ? "I64" : "F32");
    return -1;
  }
  if (t->rank != rank || memcmp(t->shape, q->shape, (size_t)rank * sizeof *t->shape) != 0) {
    shape_str(got, sizeof got, t->rank, t->shape);
    shape_str(want, sizeof want, rank, q->shape);
    rt_error("checkpoint %s: %s has shape %s, model expects %s", r->path, name, got, want);
    return -1;
  }
  if (fseek(r->f, (long)(r->data_start + t->begin), SEEK_SET)) goto io;
  if (count) {
    int64_t v;
    if (fread(&v, 8, 1, r->f) != 1) goto io;
    *dst = (float)v;
  } else if (fread(dst, sizeof(float), q->numel, r->f) != q->numel) {
    goto io;
  }
  return 0;
io:
  rt_error("checkpoint %s: cannot read %s: %s", r->path, name, ferror(r->f) ? strerror(errno) : "short read");
  return -1;
}

static const char *meta_get(const Reader *r, const char *key) {
  const JsonValue *v = json_get(r->meta, key);
  return v ? v->str : NULL;
}

/* A metadata number, checked by the same rule as the flag of that name
 * (setting_real/setting_uint in cli.c): what the command line refuses, a
 * checkpoint cannot bring in. */
static int meta_bad(const Reader *r, const char *key, const char *s, const char *what) {
  rt_error("checkpoint %s: metadata %s is '%s', not %s", r->path, key, s, what);
  return -1;
}

static int meta_u64(const Reader *r, const char *key, uint64_t *out) {
  const char *s = meta_get(r, key), *what;
  return s && (what = setting_uint(key, s, out)) ? meta_bad(r, key, s, what) : 0;
}

static int meta_int(const Reader *r, const char *key, int *out) {
  uint64_t v = (uint64_t)*out;
  if (meta_u64(r, key, &v)) return -1;
  *out = (int)v; /* the setting's range fits an int */
  return 0;
}

static int meta_double(const Reader *r, const char *key, double *out) {
  const char *s = meta_get(r, key), *what;
  return s && (what = setting_real(key, s, out)) ? meta_bad(r, key, s, what) : 0;
}

/* Progress and hyperparameters; absent keys keep the caller's values, so a
 * plain PyTorch state dict loads as "step 0" with the model's defaults. */
static int load_meta(Reader *r, NnccTrainConfig *c, NnccProgress *p) {
  const char *o = meta_get(r, "optim");
  if (o) {
    if (strcmp(o, "adam") == 0) c->optim = NNCC_ADAM;
    else if (strcmp(o, "adamw") == 0) c->optim = NNCC_ADAMW;
    else if (strcmp(o, "sgd") == 0) c->optim = NNCC_SGD;
    else {
      rt_error("checkpoint %s: metadata optim is '%s', expected adam, adamw or sgd", r->path, o);
      return -1;
    }
  }
  /* the schedule's text, checked by the parser the --schedule flag uses */
  static const char *const texts[2] = {"schedule", "warmup"};
  for (int i = 0; i < 2; i++) {
    const char *t = meta_get(r, texts[i]);
    NnccSchedule s;
    char err[256];
    if (!t) continue;
    if (strlen(t) >= NNCC_SCHED_TEXT || sched_parse(t, i, &s, err, sizeof err)) {
      rt_error("checkpoint %s: metadata %s is '%.60s%s': %s", r->path, texts[i], t,
               strlen(t) > 60 ? "..." : "", strlen(t) >= NNCC_SCHED_TEXT ? "too long" : err);
      return -1;
    }
    memcpy(i ? c->warmup : c->schedule, t, strlen(t) + 1);
  }
  int has_optim = 0;
  if (meta_double(r, "lr", &c->lr) || meta_double(r, "beta1", &c->beta1) ||
      meta_double(r, "beta2", &c->beta2) || meta_double(r, "eps", &c->eps) ||
      meta_double(r, "weight_decay", &c->weight_decay) ||
      meta_double(r, "momentum", &c->momentum) || meta_int(r, "nesterov", &c->nesterov) ||
      meta_double(r, "clip_grad_norm", &c->clip_grad_norm) ||
      meta_double(r, "clip_grad_value", &c->clip_grad_value) || meta_u64(r, "seed", &c->seed) ||
      meta_u64(r, "step", &p->step) || meta_int(r, "epoch", &p->epoch) ||
      meta_int(r, "epoch_step", &p->epoch_step) || meta_double(r, "epoch_loss", &p->epoch_loss) ||
      meta_int(r, "has_optim", &has_optim) || meta_int(r, "val", &p->val))
    return -1;
  p->has_optim = has_optim;
  return 0;
}

/* Optimizer tensors: all of the configured optimizer's, or (a fresh start,
 * step 0) none; a partial set means a damaged or mismatched file. */
static int load_optim(Reader *r, const NnccModel *m, const NnccTrainConfig *c, float *state,
                      const NnccProgress *p) {
  static const char *adam[] = {"optim.exp_avg.", "optim.exp_avg_sq."}, *sgd[] = {"optim.momentum_buffer."};
  const char **pre = optim_is_adam(c->optim) ? adam : sgd;
  int npre = optim_is_adam(c->optim) ? 2 : c->momentum != 0.0 ? 1 : 0;
  char name[NAME_MAX_LEN * 2];
  if (p->step == 0) return 0;
  if (!p->has_optim) {
    rt_error("checkpoint %s: no optimizer state to resume step %llu from", r->path,
             (unsigned long long)p->step);
    return -1;
  }
  for (int k = 0; k < npre; k++)
    for (int i = 0; i < m->nparams; i++) {
      const NnccParam *q = &m->params[i];
      if (q->kind != NNCC_PARAM) continue;
      snprintf(name, sizeof name, "%s%s", pre[k], q->name);
      if (load_tensor(r, name, q, 0, state + (size_t)k * m->params_floats + q->offset)) return -1;
    }
  return 0;
}

int ckpt_load(const char *path, const NnccModel *m, NnccTrainConfig *c, float *params,
              float *state, NnccProgress *p) {
  Reader r;
  int rc = -1;
  if (reader_open(&r, path, header_cap(m))) goto out;
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (load_tensor(&r, q->name, q, q->kind == NNCC_BUFFER_COUNT, params + q->offset)) goto out;
  }
  if (load_meta(&r, c, p)) goto out;
  if (state && load_optim(&r, m, c, state, p)) goto out;
  for (int i = 0; i < r.nt; i++)
    if (!r.t[i].used && strncmp(r.t[i].name, "optim.", 6) != 0) {
      rt_error("checkpoint %s: tensor %s is not in model %s", path, r.t[i].name, m->name);
      goto out;
    }
  rc = 0;
out:
  reader_close(&r);
  return rc;
}
