/*
 * count_alloc.c -- linked into a trainer with -Wl,--wrap=malloc,... : counts
 * every heap allocation the trainer and its runtime make and prints the
 * total at exit, so a test can show that more training steps make no more
 * allocations.
 */
#include <stdio.h>
#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);

static long count;

static void report(void) { fprintf(stderr, "allocations: %ld\n", count); }

static void counted(void) {
  if (count++ == 0)
    atexit(report);
}

void *__wrap_malloc(size_t n) { counted(); return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { counted(); return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { counted(); return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { counted(); return __real_aligned_alloc(a, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) { counted(); return __real_posix_memalign(p, a, n); }
