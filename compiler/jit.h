/*
 * jit.h -- the C ABI of jit.cpp, nncc's only C++: compile C sources held in
 * memory with clang 14 (libclang-cpp) and load them into an LLVM ORC LLJIT
 * in this process.  Included by run.c and jit.cpp (and the JIT's tests);
 * only built when NNCC_HAVE_JIT is defined (CMake option NNCC_JIT).
 */
#ifndef NNCC_JIT_H
#define NNCC_JIT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A file clang sees, by path relative to the JIT's virtual source root. */
typedef struct JitFile {
  const char *path; /* "mnist_cnn.c", "runtime/nncc_rt.h" */
  const char *text; /* need not be NUL-terminated */
  size_t len;
} JitFile;

typedef struct Jit Jit;

/* An ELF relocatable object in memory: what jit_compile() made of one .c
 * file, or what the caller kept of an earlier compile (nncc run's cache). */
typedef struct JitObject {
  void *data; /* malloc'd when jit_compile() made it; the caller frees it */
  size_t len;
} JitObject;

/*
 * Compiles every file whose path ends in ".c" as one C11 translation unit
 * (the others are only visible to #include; "runtime/" is on the include
 * path) with the flags of generated/Makefile -- -O3 -march=native (the
 * host's CPU and features) -fopenmp -ffp-contract=off -- plus `defines`
 * (NULL-terminated "-DNAME" strings, or NULL), then links the modules into
 * one LLJIT that resolves OpenMP from `libomp` (a path or soname, loaded
 * first) and everything else (libc, libm, zlib) from this process.
 * `objects` (NULL, or one per file): a .c file whose objects[i].data is
 * set is not compiled, that object is linked instead; every other .c file's
 * new object is stored there (malloc'd).  Nothing is stored on failure.
 * On failure prints clang's diagnostics (file:line:col) or one line
 * "nncc: run: ..." to stderr and returns NULL.  Never exits.
 */
Jit *jit_compile(const JitFile *files, int nfiles, const char *const *defines,
                 const char *libomp, JitObject *objects);

/* The address of a defined symbol, or NULL (with a message on stderr). */
void *jit_lookup(Jit *jit, const char *symbol);

/* Frees everything jit_compile() made: code, modules, contexts. */
void jit_free(Jit *jit);

/* "clang 14.0.6": what jit_compile() compiles with. */
const char *jit_version(void);

/* What -march=native means here: the host's triple, CPU name and features
 * ("x86_64-pc-linux-gnu skylake-avx512 +adx,+aes,...,-xop"), for cache keys. */
const char *jit_target(void);

#ifdef __cplusplus
}
#endif

#endif
