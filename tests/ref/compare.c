/*
 * compare.c -- checks nncc's numbers against a PyTorch reference file
 * written by tests/ref/gen_ref.py.
 *
 *   compare [--subset] REF.safetensors GOT.safetensors
 *       Every tensor of REF against the tensor of the same name in GOT:
 *       same dtype and shape, values within tolerance.  REF's `noise.*`
 *       entries and the values checked against logs (`losses`,
 *       `test_loss`) are skipped.  GOT may hold nothing else unless
 *       --subset (a checkpoint checked for a few of its tensors).
 *   compare REF.safetensors NAME LOG.jsonl KEY
 *       The number after "KEY": on each line of LOG, in order, against the
 *       elements of REF's tensor NAME (same count).
 *   compare --count REF.safetensors NAME
 *       Prints the number of elements of REF's tensor NAME.
 *
 * Tolerance.  For a tensor t with reference r and result g (1e-4 below;
 * COMPARE_TOL=T in the environment makes it T),
 *
 *     rel(t) = max_i |g_i - r_i| / max(max_i |r_i|, 1e5 * noise(t))
 *
 * where noise(t) is REF's `noise.<t>` (0 if absent): how far PyTorch's own
 * float32 result is from the same computation in float64.  So a tensor
 * passes (rel <= 1e-4) when it is within 1e-4 of its largest reference
 * value, or within 10x PyTorch's own float32 error, whichever is looser.
 * The second only matters for tensors that are zero in exact arithmetic
 * and noise in float32 (the bias of a convolution feeding a batch norm),
 * where "relative to the largest value" would compare noise with noise.
 * I64 tensors must be equal.  Logged values are compared one by one,
 * relative to |r_i|.
 *
 * Decision flips.  float32 results of two correct implementations differ
 * in the last bits, and where a value lies within that distance of a kink
 * (a ReLU at 0, a ReLU6 at 6, a max-pool's two largest values) the two take
 * different branches.  The signature: one output channel of one layer
 * differs, every other element of its tensors agrees.  In a model of a
 * few million activations some value always lies within 1e-8 of a kink
 * (gen_ref.py's batches were measured), so a reference cannot avoid them.
 * The flipped node is the last node of the file (the one nearest the
 * output: parameters are in forward order) with a failing tensor.  Its
 * failing tensors ("a.b.weight" and "a.b.bias": node "a.b") pass as a flip
 * when every element outside one index of dimension 0, the same for all of
 * them, is within tolerance.  The gradient that went the other way at the
 * kink then flows on into the nodes before it, so their failing parameter
 * gradients pass too when they are off by at most FLIP_SPREAD times the
 * flipped channel's own difference (mnist_cnn with Winograd convolutions:
 * a max-pool window of conv3 whose two largest values lie 2.5e-7 apart,
 * relative to the layer's largest; conv3's channel off by 3.1e-3, conv2's
 * and conv1's gradients by 2.9e-3 and 2.4e-3).  The loss, the logits and
 * anything else that fails, fail; a flip is reported.
 *
 * Prints a line per tensor (max |ref|, max abs diff, rel) and the worst
 * rel; exits 0 if everything passes, 1 if anything fails or is missing,
 * mis-shaped or unreadable, 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

/* 1e-4, or the environment's COMPARE_TOL (tests/onnx asks 1e-5); the
 * noise floor stays 10x PyTorch's float32 error. */
static double TOLERANCE = 1e-4;
#define NOISE_FACTOR (10.0 / TOLERANCE)

typedef struct Entry {
  const char *name, *dtype;
  int rank;
  int64_t shape[8];
  size_t numel;
  const unsigned char *data;
} Entry;

typedef struct File {
  const char *path;
  unsigned char *bytes;
  JsonValue *header;
  int n;
  Entry *e;
} File;

static int fail(const char *path, const char *what) {
  fprintf(stderr, "compare: %s: %s\n", path, what);
  return -1;
}

/* Reads and checks a safetensors file: header length, JSON, and that each
 * tensor (F32 or I64) lies inside the data section with the right size. */
static int file_open(File *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->path = path;
  FILE *fp = fopen(path, "rb");
  if (!fp) return fail(path, "cannot open");
  long size = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
  rewind(fp);
  if (size < 8 || !(f->bytes = malloc((size_t)size)) || fread(f->bytes, 1, (size_t)size, fp) != (size_t)size) {
    fclose(fp);
    return fail(path, "unreadable or shorter than 8 bytes");
  }
  fclose(fp);
  uint64_t hlen;
  memcpy(&hlen, f->bytes, 8);
  if (hlen > (uint64_t)size - 8) return fail(path, "header length beyond the end of the file");
  size_t data_len = (size_t)size - 8 - (size_t)hlen;
  const unsigned char *data = f->bytes + 8 + hlen;
  char err[256];
  if (!(f->header = json_parse((const char *)f->bytes + 8, (size_t)hlen, err, sizeof err)) ||
      f->header->kind != JSON_OBJECT)
    return fail(path, f->header ? "header is not an object" : err);
  f->e = calloc((size_t)f->header->count + 1, sizeof *f->e);
  for (int i = 0; i < f->header->count; i++) {
    const JsonValue *v = &f->header->items[i];
    if (strcmp(f->header->keys[i], "__metadata__") == 0) continue;
    const JsonValue *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"), *off = json_get(v, "data_offsets");
    Entry *e = &f->e[f->n++];
    e->name = f->header->keys[i];
    if (!dt || dt->kind != JSON_STRING || (strcmp(dt->str, "F32") && strcmp(dt->str, "I64")) || !sh ||
        sh->kind != JSON_ARRAY || sh->count > 8 || !off || off->kind != JSON_ARRAY || off->count != 2 ||
        off->items[0].kind != JSON_INT || off->items[1].kind != JSON_INT)
      return fail(e->name, "bad dtype, shape or data_offsets (only F32 and I64 are expected)");
    e->dtype = dt->str;
    e->rank = sh->count;
    e->numel = 1;
    for (int d = 0; d < e->rank; d++) {
      if (sh->items[d].kind != JSON_INT || sh->items[d].num > (1 << 30)) return fail(e->name, "bad shape");
      e->shape[d] = sh->items[d].num;
      e->numel *= (size_t)e->shape[d];
    }
    int64_t lo = off->items[0].num, hi = off->items[1].num;
    size_t elem = strcmp(e->dtype, "I64") == 0 ? 8 : 4;
    if (lo > hi || (uint64_t)hi > data_len || (size_t)(hi - lo) != e->numel * elem)
      return fail(e->name, "data_offsets outside the data section or not matching the shape");
    e->data = data + lo;
  }
  return 0;
}

static void file_close(File *f) {
  json_free(f->header);
  free(f->e);
  free(f->bytes);
}

static const Entry *find(const File *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
  return NULL;
}

static double value(const Entry *e, size_t i) {
  if (strcmp(e->dtype, "I64") == 0) {
    int64_t v;
    memcpy(&v, e->data + 8 * i, 8);
    return (double)v;
  }
  float v;
  memcpy(&v, e->data + 4 * i, 4);
  return v;
}

static void shape_str(const Entry *e, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "[");
  for (int d = 0; d < e->rank && n > 0 && (size_t)n < cap; d++)
    n += snprintf(buf + n, cap - (size_t)n, d ? ",%lld" : "%lld", (long long)e->shape[d]);
  if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "]");
}

/* Tensors of REF that are not compared with a tensor of GOT. */
static int skipped(const char *name) {
  return strncmp(name, "noise.", 6) == 0 || strcmp(name, "losses") == 0 || strcmp(name, "test_loss") == 0;
}

/* How far the gradients of the nodes before a flipped node may be off,
 * as a multiple of the flipped channel's own rel (see the top) */
#define FLIP_SPREAD 2.0

/* The tensor's node: its name up to the last '.' ("" for none) */
static void node_of(const char *name, char *node, size_t cap) {
  const char *dot = strrchr(name, '.');
  size_t n = dot ? (size_t)(dot - name) : 0;
  snprintf(node, cap, "%.*s", (int)(n < cap ? n : cap - 1), name);
}

/* Do r and g agree within scale * TOLERANCE everywhere but at one index
 * of dimension 0?  That index, or -1. */
static long one_channel(const Entry *r, const Entry *g, double scale) {
  if (r->rank < 1 || r->shape[0] < 2 || scale <= 0) return -1;
  size_t per = r->numel / (size_t)r->shape[0];
  long bad = -1;
  for (size_t i = 0; i < r->numel; i++) {
    double a = value(r, i), b = value(g, i);
    if (isfinite(b) && fabs(a - b) <= TOLERANCE * scale) continue;
    long c = (long)(i / per);
    if (!isfinite(b) || (bad >= 0 && bad != c)) return -1;
    bad = c;
  }
  return bad;
}

/* One tensor's comparison: its line, whether it is within tolerance, its
 * rel, and (failing F32) the one channel it fails in, or -1 */
typedef struct Result {
  char line[512], node[256];
  int ok, f32;
  double rel;
  long channel;
} Result;

static Result compare_tensor(const File *ref, const Entry *r, const Entry *g) {
  Result res = {.ok = 0, .channel = -1};
  char rs[96], gs[96], noise_name[512];
  shape_str(r, rs, sizeof rs);
  shape_str(g, gs, sizeof gs);
  node_of(r->name, res.node, sizeof res.node);
  if (strcmp(r->dtype, g->dtype) || strcmp(rs, gs)) {
    snprintf(res.line, sizeof res.line, "  %-36s FAIL: %s %s, reference is %s %s", r->name, g->dtype,
             gs, r->dtype, rs);
    res.rel = INFINITY;
    return res;
  }
  double max_ref = 0, max_diff = 0, noise = 0;
  int nonfinite = 0;
  for (size_t i = 0; i < r->numel; i++) {
    double a = value(r, i), b = value(g, i);
    if (!isfinite(b)) nonfinite = 1;
    max_ref = fmax(max_ref, fabs(a));
    max_diff = fmax(max_diff, fabs(a - b));
  }
  snprintf(noise_name, sizeof noise_name, "noise.%s", r->name);
  const Entry *n = find(ref, noise_name);
  if (n && n->numel == 1) noise = value(n, 0);
  double scale = fmax(max_ref, NOISE_FACTOR * noise);
  res.rel = strcmp(r->dtype, "I64") == 0 ? (max_diff > 0 ? INFINITY : 0)
            : scale > 0                  ? max_diff / scale
            : max_diff > 0               ? INFINITY
                                         : 0;
  if (nonfinite) res.rel = INFINITY;
  res.ok = res.rel <= TOLERANCE;
  res.f32 = strcmp(r->dtype, "F32") == 0 && !nonfinite;
  if (!res.ok && res.f32) res.channel = one_channel(r, g, scale);
  snprintf(res.line, sizeof res.line, "  %-36s %-14s max|ref| %.3e  max diff %.3e  rel %.3e%s", r->name,
           rs, max_ref, max_diff, res.rel, scale > max_ref ? " (noise floor)" : "");
  return res;
}

/* The flip that explains the failing results, if one does (see the top):
 * marks them passed, with why; returns the flipped node's index in res or
 * -1 */
static int explain_flip(Result *res, int n, char (*why)[320]) {
  int last = -1;
  for (int i = 0; i < n; i++)
    if (!res[i].ok) last = i;
  if (last < 0 || !res[last].f32 || !*res[last].node) return -1;
  const char *node = res[last].node;
  long c = res[last].channel;
  double own = 0;
  int first = last;
  for (int i = 0; i < n; i++) {
    if (strcmp(res[i].node, node)) continue;
    if (i < first) first = i;
    if (res[i].ok) continue;
    if (res[i].channel < 0 || res[i].channel != c) return -1;
    own = fmax(own, res[i].rel);
  }
  for (int i = 0; i < n; i++) {
    if (res[i].ok || !strcmp(res[i].node, node)) continue;
    if (i > first || !res[i].f32 || !*res[i].node || res[i].rel > FLIP_SPREAD * own) return -1;
  }
  for (int i = 0; i < n; i++) {
    if (res[i].ok) continue;
    if (!strcmp(res[i].node, node))
      snprintf(why[i], sizeof why[i], "  (a decision flip: only channel %ld differs)", c);
    else
      snprintf(why[i], sizeof why[i], "  (below the flip in %s: within %.0fx its rel)", node, FLIP_SPREAD);
    res[i].ok = 1;
  }
  return last;
}

static int compare_files(const char *ref_path, const char *got_path, int subset) {
  File ref, got;
  int bad = 0, compared = 0;
  double worst = 0;
  memset(&got, 0, sizeof got);
  if (file_open(&ref, ref_path) || file_open(&got, got_path)) {
    file_close(&ref);
    file_close(&got);
    return 1;
  }
  printf("%s vs %s\n", got_path, ref_path);
  Result *res = calloc((size_t)ref.n + 1, sizeof *res);
  char(*why)[320] = calloc((size_t)ref.n + 1, sizeof *why);
  int nres = 0;
  for (int i = 0; i < ref.n; i++) {
    const Entry *r = &ref.e[i], *g;
    if (skipped(r->name)) continue;
    if (!(g = find(&got, r->name))) {
      printf("  %-36s FAIL: missing\n", r->name);
      bad = 1;
      continue;
    }
    res[nres++] = compare_tensor(&ref, r, g);
    compared++;
  }
  int flip = explain_flip(res, nres, why);
  for (int i = 0; i < nres; i++) {
    printf("%s%s%s\n", res[i].line, res[i].ok ? "" : "  FAIL", why[i]);
    bad |= !res[i].ok;
    if (res[i].rel > worst && !*why[i]) worst = res[i].rel;
  }
  for (int i = 0; i < got.n && !subset; i++)
    if (!find(&ref, got.e[i].name) || skipped(got.e[i].name)) {
      printf("  %-36s FAIL: not in the reference\n", got.e[i].name);
      bad = 1;
    }
  if (flip >= 0)
    printf("  a decision flip in channel %ld of %s: the float32 rounding of PyTorch and of nncc put a\n"
           "  value on two sides of a kink (one channel of one layer, and the gradient it sent on to\n"
           "  the layers before it; see compare.c)\n", res[flip].channel, res[flip].node);
  printf("  %d tensors, worst rel %.3e (tolerance %.0e)%s: %s\n", compared, worst, TOLERANCE,
         flip >= 0 ? " outside the flip" : "", bad ? "FAIL" : "ok");
  free(res);
  free(why);
  file_close(&ref);
  file_close(&got);
  return bad;
}

/* The numbers after "KEY": on each line of a JSON-lines log. */
static int compare_log(const char *ref_path, const char *name, const char *log_path, const char *key) {
  File ref;
  int bad = 0;
  if (file_open(&ref, ref_path)) {
    file_close(&ref);
    return 1;
  }
  const Entry *r = find(&ref, name);
  FILE *log = fopen(log_path, "r");
  if (!r || !log) {
    fprintf(stderr, "compare: %s\n", !r ? "no such tensor in the reference" : "cannot open the log");
    if (log) fclose(log);
    file_close(&ref);
    return 1;
  }
  char line[4096], pattern[256];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  size_t n = 0;
  double worst = 0, worst_diff = 0;
  printf("%s \"%s\" vs %s %s\n", log_path, key, ref_path, name);
  while (fgets(line, sizeof line, log)) {
    const char *p = strstr(line, pattern);
    char *end;
    double v = p ? strtod(p + strlen(pattern), &end) : NAN;
    if (!p || end == p + strlen(pattern) || n >= r->numel) {
      printf("  line %zu: %s\n", n + 1, n >= r->numel ? "more lines than reference values" : "no number");
      bad = 1;
      break;
    }
    double want = value(r, n), diff = fabs(v - want), rel = want != 0 ? diff / fabs(want) : diff;
    if (!isfinite(v)) rel = INFINITY;
    printf("  %3zu  ref %.9g  got %.9g  diff %.3e  rel %.3e%s\n", n + 1, want, v, diff, rel,
           rel <= TOLERANCE ? "" : "  FAIL");
    bad |= !(rel <= TOLERANCE);
    worst = fmax(worst, rel);
    worst_diff = fmax(worst_diff, diff);
    n++;
  }
  fclose(log);
  if (n != r->numel) {
    printf("  %zu lines, the reference has %zu values\n", n, r->numel);
    bad = 1;
  }
  printf("  %zu values, max diff %.3e, worst rel %.3e (tolerance %.0e): %s\n", n, worst_diff, worst,
         TOLERANCE, bad ? "FAIL" : "ok");
  file_close(&ref);
  return bad;
}

/* The number of elements of REF's tensor NAME, on stdout. */
static int count(const char *ref_path, const char *name) {
  File ref;
  if (file_open(&ref, ref_path)) {
    file_close(&ref);
    return 1;
  }
  const Entry *r = find(&ref, name);
  if (r)
    printf("%zu\n", r->numel);
  else
    fprintf(stderr, "compare: %s: no tensor %s\n", ref_path, name);
  file_close(&ref);
  return r ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *tol = getenv("COMPARE_TOL");
  if (tol && *tol) {
    char *end;
    TOLERANCE = strtod(tol, &end);
    if (*end || !(TOLERANCE > 0 && TOLERANCE < 1)) {
      fprintf(stderr, "compare: COMPARE_TOL must be a number in (0, 1), not '%s'\n", tol);
      return 2;
    }
  }
  if (argc == 4 && strcmp(argv[1], "--count") == 0) return count(argv[2], argv[3]);
  if (argc == 3) return compare_files(argv[1], argv[2], 0);
  if (argc == 4 && strcmp(argv[1], "--subset") == 0) return compare_files(argv[2], argv[3], 1);
  if (argc == 5) return compare_log(argv[1], argv[2], argv[3], argv[4]);
  fprintf(stderr,
          "usage: compare [--subset] REF.safetensors GOT.safetensors\n"
          "       compare REF.safetensors NAME LOG.jsonl KEY\n"
          "       compare --count REF.safetensors NAME\n");
  return 2;
}
