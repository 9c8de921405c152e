/*
 * util.c -- error reporting and checked helpers.
 *
 * Every user-facing failure is one line on stderr starting with "nncc: ",
 * naming the file or flag and the problem.  Helpers return NULL/-1 instead
 * of exiting so the caller can release what it holds and a test can call
 * them in-process.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt.h"

/* The line is formatted whole and written with one call: stderr is
 * unbuffered, and under mpirun the ranks' lines share one stream, so a
 * line written in pieces can be cut by another rank's. */
void rt_error(const char *fmt, ...) {
  char line[8192]; /* room for a PATH_MAX path and its message */
  int n = dist_size() > 1 ? snprintf(line, sizeof line, "nncc: rank %d: ", dist_rank())
                          : snprintf(line, sizeof line, "nncc: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  line[len] = '\n';
  fwrite(line, 1, len + 1, stderr);
}

void *xmalloc(size_t n, const char *what) {
  void *p = malloc(n ? n : 1);
  if (!p) rt_error("out of memory allocating %zu bytes for %s", n, what);
  return p;
}

/* 64-byte alignment lets generated kernels assume cache-line (and AVX-512)
 * aligned buffers; zeroing makes unused slots deterministic. */
void *xcalloc_aligned(size_t n, const char *what) {
  size_t size = (n + 63) / 64 * 64;
  if (size < n) {
    rt_error("%s: size %zu overflows", what, n);
    return NULL;
  }
  void *p = aligned_alloc(64, size ? size : 64);
  if (!p) {
    rt_error("out of memory allocating %zu bytes for %s", n, what);
    return NULL;
  }
  memset(p, 0, size ? size : 64);
  return p;
}

int rt_path(char *buf, size_t cap, const char *dir, const char *name) {
  int n = snprintf(buf, cap, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= cap) {
    rt_error("%s: path too long", dir);
    return -1;
  }
  return 0;
}

double rt_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void rt_buf_printf(RtBuf *b, const char *fmt, ...) {
  if (!b->p && !b->failed && !(b->p = malloc(b->cap = 4096))) b->failed = 1;
  for (;;) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap + (size_t)n) * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}
