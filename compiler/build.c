/*
 * build.c -- `nncc build FILE.nn [-o TRAINER]`: from a model to an
 * executable trainer in one step, with the installed runtime (the static
 * library and headers found beside nncc, cc.c) and the system's C compiler.
 *
 * The trainer's C goes to a temporary directory, cc builds the executable
 * there, and it is then copied to TRAINER by the rules of every nncc output
 * (runtime/fileio.c): all or nothing, never a half-written file, a device
 * or FIFO written through.  The temporary directory is removed on every
 * path, a signal included.
 */
#include "nncc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copies the file at `from` to the output `to`, executable. */
static bool install_output(const char *from, const char *to) {
  int in = fio_open_read(from);
  if (in < 0)
    return false;
  FioOut f;
  bool ok = fio_out_open(&f, to) == 0;
  if (ok && !f.through) {
    mode_t mask = umask(0);
    umask(mask);
    ok = fchmod(f.fd, 0777 & ~mask) == 0;
  }
  char buf[1 << 16];
  ssize_t n = 0;
  while (ok && (n = read(in, buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    ok = n > 0 && fio_out_write(&f, buf, (size_t)n) == 0;
  }
  int err = errno; /* why the loop stopped, if it failed */
  close(in);
  if (ok) {
    if (fio_out_commit(&f) == 0)
      return true;
    err = errno;
  }
  fio_out_abort(&f);
  errno = err;
  return false;
}

int build_trainer(const char *name, const Buf *csrc, const char *out) {
  char *inc, *lib, *why = "";
  if (!find_runtime(&inc, &lib, &why)) {
    fprintf(stderr,
            "nncc: build: cannot find nncc's runtime (libnncc_rt.a and nncc_rt.h): %s; "
            "install nncc (cmake --install) or use the nncc of a build tree\n",
            why);
    return 1;
  }
  char *dir = cc_temp_dir("build");
  if (!dir)
    return 1;
  char *src = format("%s/%s.c", dir, name), *exe = format("%s/%s", dir, name);
  bool ok = write_file_atomic(src, csrc->data ? csrc->data : "", csrc->len);
  if (!ok)
    fprintf(stderr, "nncc: build: cannot write '%s': %s\n", src, fio_strerror(errno));
  if (ok) {
    int k;
    const char **args = cc_command(9, &k);
    args[k++] = format("-I%s", inc);
    args[k++] = src;
    args[k++] = lib;
    args[k++] = "-lpng";
    args[k++] = "-lz";
    args[k++] = "-lm";
    args[k++] = "-o";
    args[k++] = exe;
    args[k] = NULL;
    pid_t pid = cc_spawn(args, "build");
    ok = pid > 0 && cc_wait(pid);
    if (pid > 0 && !ok && !cc_interrupted())
      fprintf(stderr, "nncc: build: '%s' failed building the trainer of model %s\n", args[0], name);
  }
  if (ok && !cc_interrupted() && !install_output(exe, out)) {
    fprintf(stderr, "nncc: build: cannot write '%s': %s\n", out, fio_strerror(errno));
    ok = false;
  }
  unlink(exe);
  unlink(src);
  rmdir(dir);
  cc_end_guard();
  return ok ? 0 : 1;
}
