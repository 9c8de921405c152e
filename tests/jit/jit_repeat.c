/*
 * jit_repeat.c MODEL.c N -- compile MODEL.c with the embedded runtime N
 * times in one process through jit.h's C ABI (the third time with a
 * compile error appended; the second keeps the objects it made, and the
 * last links those, compiling nothing, as nncc run does from its cache),
 * and fail if the heap in use after jit_free()
 * grows from the second compile on.  Built with LeakSanitizer (ASan in the
 * sanitizer build), which counts the heap and fails the run on any leak at
 * exit.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit.h"
#include "nncc_rt.h"

/* The sanitizer's allocator (LSan or ASan: the test always has one) counts
 * the bytes in use; glibc's mallinfo2() would see none of them. */
size_t __sanitizer_get_current_allocated_bytes(void);

extern const JitFile embedded_runtime[];
extern const int embedded_runtime_count;

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  size_t cap = 0, n = 0, got;
  do {
    if (n == cap && !(buf = realloc(buf, cap = 2 * cap + 4096)))
      exit(1);
    got = fread(buf + n, 1, cap - n, f);
    n += got;
  } while (got > 0);
  fclose(f);
  *len = n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: jit_repeat MODEL.c N\n");
    return 2;
  }
  int n = atoi(argv[2]);
  size_t len;
  char *src = slurp(argv[1], &len);
  if (!src || n < 3) {
    fprintf(stderr, "jit_repeat: cannot read '%s' (or N < 3)\n", argv[1]);
    return 2;
  }
  static const char bad[] = "\nint broken = no_such_identifier;\n";
  char *broken = malloc(len + sizeof bad);
  memcpy(broken, src, len);
  memcpy(broken + len, bad, sizeof bad);

  JitFile *files = calloc((size_t)embedded_runtime_count + 1, sizeof *files);
  memcpy(files, embedded_runtime, sizeof *files * (size_t)embedded_runtime_count);
  static const char *const defines[] = {"-DNNCC_NO_MAIN", NULL};
  JitObject *objs = calloc((size_t)embedded_runtime_count + 1, sizeof *objs);
  size_t in_use[64] = {0};
  int status = 0;
  for (int i = 0; i < n && i < 64; i++) {
    bool fail = i == 2; /* the error path must not leak either */
    files[embedded_runtime_count] =
        (JitFile){"model.c", fail ? broken : src, fail ? len + sizeof bad - 1 : len};
    bool keep = i == 1, reuse = i == n - 1 && !fail;
    Jit *jit = jit_compile(files, embedded_runtime_count + 1, defines, NNCC_LIBOMP,
                           keep || reuse ? objs : NULL);
    if (keep)
      for (int f = 0; f <= embedded_runtime_count; f++)
        if (strstr(files[f].path, ".c") && !objs[f].data) {
          fprintf(stderr, "FAIL: compile 2 gave no object for %s\n", files[f].path);
          return 1;
        }
    if (fail != !jit) {
      fprintf(stderr, "FAIL: compile %d %s\n", i + 1, fail ? "succeeded" : "failed");
      return 1;
    }
    if (jit) {
      const NnccModel *(*model)(void);
      void *sym = jit_lookup(jit, "nncc_model");
      memcpy(&model, &sym, sizeof model);
      if (!sym || model()->abi != NNCC_RT_ABI || !model()->name) {
        fprintf(stderr, "FAIL: compile %d: no usable nncc_model\n", i + 1);
        return 1;
      }
      jit_free(jit);
    }
    in_use[i] = __sanitizer_get_current_allocated_bytes();
    printf("compile %d%s: %zu bytes in use after jit_free\n", i + 1,
           fail ? " (with an error)" : reuse ? " (compile 2's objects, linked)" : "", in_use[i]);
    fflush(stdout);
  }
  /* The first compile initializes LLVM for good (targets, options); after
   * that a compile must give back what it took.  A few KiB of slack cover
   * the allocator's own bookkeeping. */
  long growth = (long)in_use[n - 1] - (long)in_use[1];
  if (growth > 64 * 1024) {
    printf("FAIL: %ld bytes more in use after compile %d than after compile 2\n", growth, n);
    status = 1;
  } else {
    printf("ok: %d compiles in one process, heap in use grew %ld bytes from compile 2 to %d\n",
           n, growth, n);
  }
  for (int f = 0; f <= embedded_runtime_count; f++)
    free(objs[f].data);
  free(objs);
  free(files);
  free(broken);
  free(src);
  return status;
}
