/*
 * run.c -- `nncc run FILE.nn COMMAND [flags]`: train without writing a C
 * file, running make or needing a compiler on PATH (docs/jit.md).
 *
 * The trainer's C (from emit_c) and the runtime's sources, embedded in nncc
 * at build time (cmake/embed.cmake), are compiled together and the
 * runtime's nncc_main() is called with the trainer's arguments:
 *
 *   JIT       in-process with clang 14 and LLVM ORC (jit.cpp), when nncc
 *             was built with NNCC_JIT and neither --no-jit nor NNCC_NO_JIT=1
 *             asks for the fallback
 *   fallback  the sources go to a temporary directory, $CC (else cc)
 *             builds a shared object from them (one cc per file, in
 *             parallel), dlopen
 *
 * Both use generated/Makefile's flags (the fallback: cc.c's, which take
 * $CFLAGS), so a run gives the same bits as the make-built trainer.  One line on stderr says which path ran and how long
 * compiling took.
 */
#include "nncc.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* nncc_rt.h's entry points, seen from the compiler (which does not include
 * the runtime's header): the model is opaque here. */
typedef const void *(*ModelFn)(void);
typedef int (*MainFn)(int argc, char **argv, const void *model);

/* The bad line NNCC_JIT_INJECT_ERROR=1 appends to the trainer's source, so
 * the tests can see how a compile error is reported (tests/jit/). */
static const char injected_error[] = "\nstatic int nncc_injected_error = no_such_identifier;\n";

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool env_set(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* The files to compile: the embedded runtime plus the trainer, "NAME.c". */
static JitFile *gather_sources(const char *name, const Buf *csrc, Buf *patched, int *nfiles) {
  JitFile *files = xalloc(sizeof *files * (size_t)(embedded_runtime_count + 1));
  memcpy(files, embedded_runtime, sizeof *files * (size_t)embedded_runtime_count);
  const char *text = csrc->data ? csrc->data : "";
  size_t len = csrc->len;
  if (env_set("NNCC_JIT_INJECT_ERROR")) {
    buf_printf(patched, "%.*s%s", (int)len, text, injected_error);
    text = patched->data;
    len = patched->len;
  }
  files[embedded_runtime_count] = (JitFile){format("%s.c", name), text, len};
  *nfiles = embedded_runtime_count + 1;
  return files;
}

static int call_trainer(void *model_sym, void *main_sym, const char *name, int argc,
                        char **argv) {
  ModelFn model_fn;
  MainFn main_fn;
  memcpy(&model_fn, &model_sym, sizeof model_fn);
  memcpy(&main_fn, &main_sym, sizeof main_fn);
  char **targv = xalloc(sizeof *targv * (size_t)(argc + 2));
  targv[0] = xstrdup(name);
  for (int i = 0; i < argc; i++)
    targv[i + 1] = argv[i];
  fflush(stderr);
  return main_fn(argc + 1, targv, model_fn());
}

#ifdef NNCC_HAVE_JIT
/*
 * The JIT lives in a shared library of its own, libnncc_jit.so beside the
 * nncc executable in its build tree, or in LIBDIR/nncc/ of an installed
 * tree (or $NNCC_JIT_LIB), loaded only here: every other nncc
 * command starts without loading LLVM and clang (tens of milliseconds, and
 * it needs the libraries installed).  RTLD_GLOBAL puts zlib, which the
 * library links, where the JIT'd runtime finds it.
 */
typedef struct JitApi {
  Jit *(*compile)(const JitFile *, int, const char *const *, const char *);
  void *(*lookup)(Jit *, const char *);
  void (*free)(Jit *);
  const char *(*version)(void);
} JitApi;

static bool load_jit(JitApi *api, const char **why) {
  const char *path = getenv("NNCC_JIT_LIB");
  if (!path || !*path) {
    /* beside nncc in its build tree, else where cmake --install puts it */
    char *dir = self_dir();
    if (!dir) {
      *why = "cannot find nncc's own directory (/proc/self/exe)";
      return false;
    }
    path = format("%s/libnncc_jit.so", dir);
    if (access(path, F_OK) != 0)
      path = format("%s/%s/nncc/libnncc_jit.so", dir, NNCC_REL_LIBDIR);
  }
  void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    *why = format("cannot load the JIT: %s", dlerror());
    return false;
  }
  api->compile = (Jit * (*)(const JitFile *, int, const char *const *, const char *)) dlsym(lib, "jit_compile");
  api->lookup = (void *(*)(Jit *, const char *))dlsym(lib, "jit_lookup");
  api->free = (void (*)(Jit *))dlsym(lib, "jit_free");
  api->version = (const char *(*)(void))dlsym(lib, "jit_version");
  if (!api->compile || !api->lookup || !api->free || !api->version) {
    *why = format("%s is not nncc's JIT library", path);
    return false;
  }
  return true; /* never dlclosed: LLVM registers global state */
}

static int run_jit(const JitApi *api, const char *name, JitFile *files, int nfiles, int argc,
                   char **argv) {
  const char *libomp = getenv("NNCC_LIBOMP");
  if (!libomp || !*libomp)
    libomp = NNCC_LIBOMP;
  static const char *const defines[] = {"-DNNCC_NO_MAIN", NULL};
  double t0 = now();
  Jit *jit = api->compile(files, nfiles, defines, libomp);
  if (!jit)
    return 1; /* jit_compile() said why */
  void *model = api->lookup(jit, "nncc_model");
  void *main_fn = model ? api->lookup(jit, "nncc_main") : NULL;
  if (!main_fn) {
    api->free(jit);
    return 1;
  }
  fprintf(stderr, "nncc: run: compiled in-process with %s (JIT) in %.1f s\n", api->version(),
          now() - t0);
  int rc = call_trainer(model, main_fn, name, argc, argv);
  api->free(jit);
  return rc;
}
#endif

/* ---- the fallback: cc and dlopen ---- */

/* Writes the sources under dir, builds dir/NAME.so; the paths it made go
 * to made[] (for removal), the last one the shared object.  False after
 * one line saying why (cc's own diagnostics above it). */
static bool build_shared(const char *dir, const char *name, const JitFile *files, int nfiles,
                         char **made, int *nmade) {
  char *rtdir = format("%s/runtime", dir);
  if (mkdir(rtdir, 0700) != 0) {
    fprintf(stderr, "nncc: run: cannot create '%s': %s\n", rtdir, strerror(errno));
    return false;
  }
  pid_t *pids = xalloc(sizeof *pids * (size_t)nfiles);
  char **objs = xalloc(sizeof *objs * (size_t)nfiles);
  int nobjs = 0;
  bool ok = true;
  for (int i = 0; i < nfiles && ok; i++) {
    char *path = format("%s/%s", dir, files[i].path);
    if (!write_file_atomic(path, files[i].text, files[i].len)) {
      fprintf(stderr, "nncc: run: cannot write '%s': %s\n", path, strerror(errno));
      ok = false;
      break;
    }
    made[(*nmade)++] = path;
  }
  /* One cc per .c file, all at once, as make -j would. */
  for (int i = 0; i < nfiles && ok; i++) {
    size_t n = strlen(files[i].path);
    if (n < 2 || strcmp(files[i].path + n - 2, ".c") != 0)
      continue;
    char *obj = format("%s/%.*s.o", dir, (int)n - 2, files[i].path);
    int k;
    const char **args = cc_command(7, &k);
    args[k++] = "-fPIC";
    args[k++] = "-DNNCC_NO_MAIN";
    args[k++] = format("-I%s", rtdir);
    args[k++] = "-c";
    args[k++] = format("%s/%s", dir, files[i].path);
    args[k++] = "-o";
    args[k++] = obj;
    args[k] = NULL;
    pids[nobjs] = cc_spawn(args, "run");
    if (pids[nobjs] < 0) {
      ok = false;
      break;
    }
    made[(*nmade)++] = obj;
    objs[nobjs++] = obj;
  }
  bool compiled = true;
  for (int i = 0; i < nobjs; i++)
    compiled &= cc_wait(pids[i]);
  if (ok && !compiled && !cc_interrupted())
    fprintf(stderr, "nncc: run: compiling '%s.c' with cc failed\n", name);
  if (!ok || !compiled)
    return false;
  const char **args = xalloc(sizeof *args * (size_t)(nobjs + 10));
  int k = 0;
  args[k++] = cc_program();
  args[k++] = "-shared";
  args[k++] = "-fopenmp";
  args[k++] = "-o";
  args[k++] = made[(*nmade)++] = format("%s/%s.so", dir, name);
  for (int i = 0; i < nobjs; i++)
    args[k++] = objs[i];
  args[k++] = "-lz";
  args[k++] = "-lm";
  args[k] = NULL;
  pid_t pid = cc_spawn(args, "run");
  if (pid < 0)
    return false;
  if (!cc_wait(pid)) {
    if (!cc_interrupted())
      fprintf(stderr, "nncc: run: linking '%s.so' with cc failed\n", name);
    return false;
  }
  return true;
}

static int run_cc(const char *name, const JitFile *files, int nfiles, int argc, char **argv,
                  const char *why) {
  char *dir = cc_temp_dir("run");
  if (!dir)
    return 1;
  char **made = xalloc(sizeof *made * (size_t)(2 * nfiles + 2));
  int nmade = 0;
  double t0 = now();
  bool built = build_shared(dir, name, files, nfiles, made, &nmade);
  void *so = built ? dlopen(made[nmade - 1], RTLD_NOW | RTLD_LOCAL) : NULL;
  if (built && !so)
    fprintf(stderr, "nncc: run: %s\n", dlerror());
  /* The mapped object stays usable once its file is gone. */
  for (int i = nmade - 1; i >= 0; i--)
    unlink(made[i]);
  rmdir(format("%s/runtime", dir));
  rmdir(dir);
  cc_end_guard();
  if (!so)
    return 1;
  void *model = dlsym(so, "nncc_model"), *main_fn = dlsym(so, "nncc_main");
  if (!model || !main_fn) {
    fprintf(stderr, "nncc: run: %s.so lacks nncc_model or nncc_main\n", name);
    return 1;
  }
  fprintf(stderr, "nncc: run: %s; compiled with cc in %.1f s\n", why, now() - t0);
  /* Never dlclose: OpenMP's worker threads may still sit in the object. */
  return call_trainer(model, main_fn, name, argc, argv);
}

int run_trainer(const char *name, const Buf *csrc, int argc, char **argv, bool no_jit) {
  Buf patched = {0};
  int nfiles;
  JitFile *files = gather_sources(name, csrc, &patched, &nfiles);
  const char *why = "no JIT in this build";
#ifdef NNCC_HAVE_JIT
  if (no_jit)
    why = "JIT off (--no-jit)";
  else if (env_set("NNCC_NO_JIT"))
    why = "JIT off (NNCC_NO_JIT)";
  else {
    JitApi api;
    if (load_jit(&api, &why)) {
      int rc = run_jit(&api, name, files, nfiles, argc, argv);
      buf_free(&patched);
      return rc;
    }
  }
#else
  (void)no_jit;
#endif
  int rc = run_cc(name, files, nfiles, argc, argv, why);
  buf_free(&patched);
  return rc;
}
