/*
 * util.c -- memory pool, strings, whole-file writes.
 *
 * The compiler allocates freely and frees everything at once: every
 * xalloc() block is chained into one list that pool_free_all() walks.
 * That keeps passes simple and LeakSanitizer quiet, and lets one process
 * (the JIT, the tests) compile many models in a row.
 */
#include "nncc.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

typedef struct Chunk {
  struct Chunk *next;
  size_t size;
  max_align_t data[];
} Chunk;

static Chunk *pool;

static noreturn void out_of_memory(void) {
  fprintf(stderr, "nncc: out of memory\n");
  if (diag_abort)
    abort();
  exit(1);
}

void *xalloc(size_t n) {
  Chunk *c = calloc(1, sizeof(Chunk) + n);
  if (!c)
    out_of_memory();
  c->next = pool;
  c->size = n;
  pool = c;
  return c->data;
}

/* Pool blocks are never freed one by one, so growing copies. */
void *xrealloc_pool(void *p, size_t old, size_t n) {
  void *q = xalloc(n);
  if (p)
    memcpy(q, p, old < n ? old : n);
  return q;
}

void pool_free_all(void) {
  while (pool) {
    Chunk *next = pool->next;
    free(pool);
    pool = next;
  }
}

char *xstrndup(const char *s, size_t n) {
  char *p = xalloc(n + 1);
  memcpy(p, s, n);
  return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *format(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = xalloc((size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

static void buf_reserve(Buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d)
    out_of_memory();
  b->data = d;
  b->cap = cap;
}

void buf_printf(Buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->len += (size_t)n;
}

void buf_puts(Buf *b, const char *s) {
  size_t n = strlen(s);
  buf_reserve(b, n);
  memcpy(b->data + b->len, s, n + 1);
  b->len += n;
}

void buf_free(Buf *b) {
  free(b->data);
  *b = (Buf){0};
}

/* runtime/fileio.c does the work: the compiler and the runtime write
 * files by the same rules. */
bool write_file_atomic(const char *path, const char *data, size_t len) {
  return fio_write_file(path, data, len) == 0;
}

int write_output(const char *path, const char *data, size_t len) {
  if (!path) {
    fwrite(data, 1, len, stdout);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
  }
  if (!write_file_atomic(path, data ? data : "", len)) {
    fprintf(stderr, "nncc: error: cannot write '%s': %s\n", path, fio_strerror(errno));
    return 1;
  }
  return 0;
}

noreturn void command_usage(const char *usage, const char *fmt, const char *arg) {
  fputs("nncc: error: ", stderr);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", usage);
  exit(2);
}

bool same_file(const char *out, const char *other) {
  struct stat a, b;
  bool sa = stat(out, &a) == 0, sb = stat(other, &b) == 0;
  if (sa && sb)
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && S_ISREG(a.st_mode);
  return !sa && !sb && strcmp(out, other) == 0; /* both still to be written */
}

void refuse_clobber(const char *flag, const char *out, int n, const char *const *paths,
                    const char *const *roles) {
  for (int i = 0; out && i < n; i++)
    if (paths[i] && same_file(out, paths[i])) {
      fprintf(stderr, "nncc: error: %s '%s' is also %s; nothing was written\n", flag, out, roles[i]);
      exit(2);
    }
}

char *fmt_count(int64_t n) {
  char digits[32], out[48];
  int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
  int o = 0;
  if (n < 0)
    out[o++] = '-';
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
  return xstrdup(out);
}
