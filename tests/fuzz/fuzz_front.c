/*
 * fuzz_front.c -- libFuzzer harness for the .nn front end.
 *
 * The input is a model's source text.  It goes through the pipeline of
 * compiler/main.c up to the memory plan -- lex, parse, elaborate, shape,
 * fuse, buffers, plan, with ir_verify() after each pass -- and is then
 * dumped as IR and as DOT, as `nncc --dump-ir` and `--dump-dot` would.
 * Inputs of odd length take the -O0 path (no fusion, plan_naive), even
 * ones -O1.
 *
 * What counts as a finding: user errors are fine (diag_fail() longjmps
 * back here through diag_trap); an internal error or running out of memory
 * abort()s (diag_abort), and libFuzzer reports that like any ASan/UBSan
 * finding, leak, timeout or memory blow-up.
 *
 * Files: the input is "models/fuzz.nn".  read_source_hook replaces the
 * file system, so `import` sees only the input itself and the libraries
 * of models/lib (read once at start-up), found by base name from any
 * directory: `import "lib/vgg.nn"` and `import "../../models/lib/vgg.nn"`
 * both work, everything else is "No such file or directory".
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nncc.h"

#ifndef NNCC_LIB_DIR
#error "build with -DNNCC_LIB_DIR=\"<repo>/models/lib\""
#endif

#define INPUT_NAME "models/fuzz.nn"

/* models/lib/<name>, malloc'ed once: the pool is emptied after every input. */
typedef struct LibFile {
  char *name, *text;
} LibFile;

static LibFile libs[16];
static int nlibs;
static const char *input; /* this run's input */
static size_t input_len;
static Buf dump;         /* static: untouched by the longjmp of a user error */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t len = 0, cap = 4096, n;
  char *s = malloc(cap);
  while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (len + 1 == cap) {
      char *t = realloc(s, cap *= 2);
      if (!t)
        free(s);
      s = t;
    }
  }
  fclose(f);
  if (s)
    s[len] = '\0';
  return s;
}

static void load_libs(void) {
  DIR *d = opendir(NNCC_LIB_DIR);
  if (!d) {
    fprintf(stderr, "fuzz_front: cannot open %s: %s\n", NNCC_LIB_DIR, strerror(errno));
    abort();
  }
  struct dirent *e;
  while ((e = readdir(d)) && nlibs < (int)(sizeof libs / sizeof *libs)) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".nn") != 0)
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", NNCC_LIB_DIR, e->d_name);
    char *text = slurp(path);
    if (!text)
      continue;
    libs[nlibs].name = strdup(e->d_name);
    libs[nlibs++].text = text;
  }
  closedir(d);
}

/* The harness's whole file system (see the top of this file). */
static SrcFile *fuzz_read_source(const char *path) {
  if (strcmp(path, INPUT_NAME) == 0)
    return source_from_bytes(path, input, input_len);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (int i = 0; i < nlibs; i++)
    if (strcmp(base, libs[i].name) == 0)
      return source_from_string(path, libs[i].text);
  errno = ENOENT;
  return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  load_libs();
  read_source_hook = fuzz_read_source;
  diag_abort = true;
  diag_out = fopen("/dev/null", "w"); /* user errors are expected, and many */
  return 0;
}

/* main.c's front_end() and dump, for one optimization level. */
static void compile(SrcFile *file, int opt_level) {
  Graph *g = elaborate(file, parse(file));
  ir_verify(g, "parse");
  shape_pass(g);
  ir_verify(g, "shape");
  measure_naive(g);
  if (opt_level > 0) {
    fuse_pass(g);
    ir_verify(g, "fuse");
  }
  buffers_build(g);
  if (opt_level > 0)
    plan_pass(g);
  else
    plan_naive(g);
  ir_verify(g, "plan");
  ir_dump(g, &dump, "plan");
  ir_dump_dot(g, &dump);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input = (const char *)data; /* every byte, as read_source() reads a file */
  input_len = size;
  jmp_buf trap;
  diag_trap = &trap;
  if (setjmp(trap) == 0)
    compile(read_source(INPUT_NAME), (int)(size % 2 == 0));
  diag_trap = NULL;
  buf_free(&dump);
  pool_free_all();
  return 0;
}
