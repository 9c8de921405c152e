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
 * $CFLAGS), so a run gives the same bits as the make-built trainer.  One
 * line on stderr says which path ran and how long compiling took.
 *
 * Each .c file's object is cached (cache.c) under a key of everything that
 * decides it, so the runtime is compiled once per compiler and CPU, a new
 * model costs one unit, and a model run before costs none (--no-cache:
 * neither read nor write).
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

static bool is_unit(const JitFile *f) {
  size_t n = strlen(f->path);
  return n >= 2 && strcmp(f->path + n - 2, ".c") == 0;
}

/* ---- the cache: one object per unit (cache.c) ---- */

/* keys[i] for each .c file: the compiler, nncc's version, the unit's path
 * and text and every header (any unit may include any of them). */
static char **unit_keys(const JitFile *files, int nfiles, const char *compiler_id) {
  Hash common;
  hash_init(&common);
  hash_str(&common, "nncc run: object");
  hash_str(&common, NNCC_VERSION);
  hash_str(&common, compiler_id);
  for (int i = 0; i < nfiles; i++)
    if (!is_unit(&files[i])) {
      hash_str(&common, files[i].path);
      hash_add(&common, files[i].text, files[i].len);
    }
  char **keys = xalloc(sizeof *keys * (size_t)nfiles);
  for (int i = 0; i < nfiles; i++)
    if (is_unit(&files[i])) {
      Hash h = common;
      hash_str(&h, files[i].path);
      hash_add(&h, files[i].text, files[i].len);
      keys[i] = hash_hex(&h);
    }
  return keys;
}

/* Fills objs[i] from the cache where it has unit i; the count found. */
static int cache_lookup(Cache *cache, const JitFile *files, int nfiles, char **keys, JitObject *objs) {
  int found = 0;
  for (int i = 0; cache && i < nfiles; i++)
    if (is_unit(&files[i]) && (objs[i].data = cache_get(cache, keys[i], &objs[i].len, "run")))
      found++;
  return found;
}

static int count_units(const JitFile *files, int nfiles) {
  int n = 0;
  for (int i = 0; i < nfiles; i++)
    n += is_unit(&files[i]);
  return n;
}

/* "compiled WHAT in 3.1 s" with what the cache gave, or FROM_CACHE when
 * it gave everything. */
static char *how_long(const char *what, const char *from_cache, double seconds, int cached,
                      int units) {
  if (cached == units)
    return format("%s in %.2f s", from_cache, seconds);
  if (cached == 0)
    return format("compiled %s in %.1f s", what, seconds);
  return format("compiled %s in %.1f s (%d of %d units from the cache)", what, seconds, cached, units);
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
  Jit *(*compile)(const JitFile *, int, const char *const *, const char *, JitObject *);
  void *(*lookup)(Jit *, const char *);
  void (*free)(Jit *);
  const char *(*version)(void);
  const char *(*target)(void);
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
  api->compile = (Jit * (*)(const JitFile *, int, const char *const *, const char *, JitObject *))
      dlsym(lib, "jit_compile");
  api->lookup = (void *(*)(Jit *, const char *))dlsym(lib, "jit_lookup");
  api->free = (void (*)(Jit *))dlsym(lib, "jit_free");
  api->version = (const char *(*)(void))dlsym(lib, "jit_version");
  api->target = (const char *(*)(void))dlsym(lib, "jit_target");
  if (!api->compile || !api->lookup || !api->free || !api->version || !api->target) {
    *why = format("%s is not nncc's JIT library", path);
    return false;
  }
  return true; /* never dlclosed: LLVM registers global state */
}

static int run_jit(const JitApi *api, const char *name, JitFile *files, int nfiles, Cache *cache,
                   int argc, char **argv) {
  const char *libomp = getenv("NNCC_LIBOMP");
  if (!libomp || !*libomp)
    libomp = NNCC_LIBOMP;
  static const char *const defines[] = {"-DNNCC_NO_MAIN", NULL};
  double t0 = now();
  /* jit.cpp's flags are fixed; the defines and the host CPU are not. */
  char **unit_key = NULL;
  JitObject *objs = xalloc(sizeof *objs * (size_t)nfiles);
  int cached = 0;
  if (cache) {
    unit_key = unit_keys(files, nfiles,
                         format("jit NNCCJIT1 %s | %s | %s", api->version(), api->target(), defines[0]));
    cached = cache_lookup(cache, files, nfiles, unit_key, objs);
  }
  bool *was_cached = xalloc((size_t)nfiles);
  for (int i = 0; i < nfiles; i++)
    was_cached[i] = objs[i].data != NULL;
  Jit *jit = api->compile(files, nfiles, defines, libomp, cache ? objs : NULL);
  for (int i = 0; i < nfiles; i++) {
    if (jit && cache && objs[i].data && !was_cached[i])
      cache_put(cache, unit_key[i], objs[i].data, objs[i].len, "run");
    free(objs[i].data);
  }
  if (!jit)
    return 1; /* jit_compile() said why */
  void *model = api->lookup(jit, "nncc_model");
  void *main_fn = model ? api->lookup(jit, "nncc_main") : NULL;
  if (!main_fn) {
    api->free(jit);
    return 1;
  }
  fprintf(stderr, "nncc: run: %s\n",
          how_long(format("in-process with %s (JIT)", api->version()),
                   format("loaded from the cache in-process with %s (JIT)", api->version()), now() - t0,
                   cached, count_units(files, nfiles)));
  int rc = call_trainer(model, main_fn, name, argc, argv);
  api->free(jit);
  return rc;
}
#endif

/* ---- the fallback: cc and dlopen ---- */

/* The compiler for the keys: its command line (cc.c's flags and $CFLAGS,
 * then the ones below), the executable it resolves to (path, inode, size,
 * mtime: an upgrade changes them) and, for -march=native, the host CPU. */
static const char *const cc_unit_flags[] = {"-fPIC", "-DNNCC_NO_MAIN"};

static void hash_file_id(Hash *h, const char *prog) {
  char *found = NULL;
  if (strchr(prog, '/'))
    found = xstrdup(prog);
  else {
    const char *path = getenv("PATH");
    char *copy = xstrdup(path ? path : "");
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
      char *p = format("%s/%s", *d ? d : ".", prog);
      if (access(p, X_OK) == 0)
        found = p;
    }
  }
  struct stat st; /* of the file a symlink chain ends at (alternatives: cc -> gcc-12) */
  if (found && stat(found, &st) == 0)
    hash_str(h, format("%s %llu %llu %lld %lld.%09ld", found, (unsigned long long)st.st_dev,
                       (unsigned long long)st.st_ino, (long long)st.st_size,
                       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
  else
    hash_str(h, "not found");
}

/* The first processor's identity and feature flags from /proc/cpuinfo
 * (x86: vendor_id, cpu family, model, model name, flags; arm64: CPU
 * implementer, part, variant, Features). */
static void hash_cpu(Hash *h) {
  static const char *const keys[] = {"vendor_id", "cpu family", "model", "model name", "flags",
                                     "Features", "CPU implementer", "CPU architecture",
                                     "CPU variant", "CPU part"};
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[8192];
  while (f && fgets(line, sizeof line, f) && line[0] != '\n') {
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      size_t n = strlen(keys[k]);
      if (strncmp(line, keys[k], n) == 0 && (line[n] == ':' || line[n] == ' ' || line[n] == '\t'))
        hash_str(h, line);
    }
  }
  if (f)
    fclose(f);
}

static char *cc_identity(void) {
  int n;
  const char **args = cc_command(0, &n);
  Hash h;
  hash_init(&h);
  for (int i = 0; i < n; i++)
    hash_str(&h, args[i]);
  for (size_t i = 0; i < sizeof cc_unit_flags / sizeof *cc_unit_flags; i++)
    hash_str(&h, cc_unit_flags[i]);
  hash_file_id(&h, args[0]);
  hash_cpu(&h);
  return format("cc %s", hash_hex(&h));
}

/* Writes the sources under dir and builds dir/NAME.so: each .c file's
 * object is objs[i] where that is set (from the cache), else cc compiles
 * it (one cc per file, in parallel) and objs_made[i] names the new object.
 * The paths it made go to made[] (for removal), the last one the shared
 * object.  False after one line saying why (cc's own diagnostics above it). */
static bool build_shared(const char *dir, const char *name, const JitFile *files, int nfiles,
                         const JitObject *objs, char **objs_made, char **made, int *nmade) {
  char *rtdir = format("%s/runtime", dir);
  if (mkdir(rtdir, 0700) != 0) {
    fprintf(stderr, "nncc: run: cannot create '%s': %s\n", rtdir, strerror(errno));
    return false;
  }
  pid_t *pids = xalloc(sizeof *pids * (size_t)nfiles);
  char **all = xalloc(sizeof *all * (size_t)nfiles);
  int npids = 0, nall = 0;
  bool ok = true;
  for (int i = 0; i < nfiles && ok; i++) {
    if (is_unit(&files[i]) && objs[i].data)
      continue; /* its object is all cc needs */
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
    if (!is_unit(&files[i]))
      continue;
    size_t n = strlen(files[i].path);
    char *obj = format("%s/%.*s.o", dir, (int)n - 2, files[i].path);
    if (objs[i].data) {
      if (!write_file_atomic(obj, objs[i].data, objs[i].len)) {
        fprintf(stderr, "nncc: run: cannot write '%s': %s\n", obj, strerror(errno));
        ok = false;
        break;
      }
      made[(*nmade)++] = all[nall++] = obj;
      continue;
    }
    int k;
    const char **args = cc_command(7, &k);
    for (size_t f = 0; f < sizeof cc_unit_flags / sizeof *cc_unit_flags; f++)
      args[k++] = cc_unit_flags[f];
    args[k++] = format("-I%s", rtdir);
    args[k++] = "-c";
    args[k++] = format("%s/%s", dir, files[i].path);
    args[k++] = "-o";
    args[k++] = obj;
    args[k] = NULL;
    pids[npids] = cc_spawn(args, "run");
    if (pids[npids] < 0) {
      ok = false;
      break;
    }
    npids++;
    made[(*nmade)++] = all[nall++] = objs_made[i] = obj;
  }
  bool compiled = true;
  for (int i = 0; i < npids; i++)
    compiled &= cc_wait(pids[i]);
  if (ok && !compiled && !cc_interrupted())
    fprintf(stderr, "nncc: run: compiling '%s.c' with cc failed\n", name);
  if (!ok || !compiled)
    return false;
  const char **args = xalloc(sizeof *args * (size_t)(nall + 10));
  int k = 0;
  args[k++] = cc_program();
  args[k++] = "-shared";
  args[k++] = "-fopenmp";
  args[k++] = "-o";
  args[k++] = made[(*nmade)++] = format("%s/%s.so", dir, name);
  for (int i = 0; i < nall; i++)
    args[k++] = all[i];
  args[k++] = "-lpng";
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

static int run_cc(const char *name, const JitFile *files, int nfiles, Cache *cache, int argc,
                  char **argv, const char *why) {
  double t0 = now();
  JitObject *objs = xalloc(sizeof *objs * (size_t)nfiles);
  char **keys = cache ? unit_keys(files, nfiles, cc_identity()) : NULL;
  int cached = cache_lookup(cache, files, nfiles, keys, objs);
  char *dir = cc_temp_dir("run");
  if (!dir)
    return 1;
  char **made = xalloc(sizeof *made * (size_t)(2 * nfiles + 2));
  char **objs_made = xalloc(sizeof *objs_made * (size_t)nfiles);
  int nmade = 0;
  bool built = build_shared(dir, name, files, nfiles, objs, objs_made, made, &nmade);
  void *so = built ? dlopen(made[nmade - 1], RTLD_NOW | RTLD_LOCAL) : NULL;
  if (built && !so)
    fprintf(stderr, "nncc: run: %s\n", dlerror());
  for (int i = 0; i < nfiles; i++) {
    size_t len;
    char *obj = so && cache && objs_made[i] ? fio_read_file(objs_made[i], (size_t)1 << 30, &len) : NULL;
    if (obj)
      cache_put(cache, keys[i], obj, len, "run");
    free(obj);
    free(objs[i].data);
  }
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
  fprintf(stderr, "nncc: run: %s; %s\n", why,
          how_long("with cc", "linked with cc from the cache", now() - t0, cached,
                   count_units(files, nfiles)));
  /* Never dlclose: OpenMP's worker threads may still sit in the object. */
  return call_trainer(model, main_fn, name, argc, argv);
}

int run_trainer(const char *name, const Buf *csrc, int argc, char **argv, RunOptions opt) {
  Buf patched = {0};
  int nfiles;
  JitFile *files = gather_sources(name, csrc, &patched, &nfiles);
  Cache *cache = opt.no_cache || env_set("NNCC_NO_CACHE") ? NULL : cache_open("run");
  const char *why = "no JIT in this build";
#ifdef NNCC_HAVE_JIT
  if (opt.no_jit)
    why = "JIT off (--no-jit)";
  else if (env_set("NNCC_NO_JIT"))
    why = "JIT off (NNCC_NO_JIT)";
  else {
    JitApi api;
    if (load_jit(&api, &why)) {
      int rc = run_jit(&api, name, files, nfiles, cache, argc, argv);
      buf_free(&patched);
      return rc;
    }
  }
#endif
  int rc = run_cc(name, files, nfiles, cache, argc, argv, why);
  buf_free(&patched);
  return rc;
}
