/*
 * fuzz_files.h -- scratch files for the runtime's fuzzers.
 *
 * The runtime's readers take paths (idx.c opens with gzopen, ckpt.c with
 * fopen and checks fstat), so each input is written to a file in a private
 * directory, made at start-up under $TMPDIR (default /tmp; the scripts
 * point it into the build tree) and emptied and removed at exit.  Nothing
 * from an input ever names a path.
 */
#ifndef NNCC_FUZZ_FILES_H
#define NNCC_FUZZ_FILES_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[4096];

static void fuzz_dir_remove(void) {
  DIR *d = opendir(fuzz_dir);
  if (!d)
    return;
  char path[sizeof fuzz_dir + 256];
  for (struct dirent *e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(fuzz_dir);
}

/* Makes the directory; aborts when it cannot (the harness is useless). */
static void fuzz_dir_init(const char *tag) {
  const char *tmp = getenv("TMPDIR");
  snprintf(fuzz_dir, sizeof fuzz_dir, "%s/nncc-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
  if (!mkdtemp(fuzz_dir)) {
    perror(fuzz_dir);
    abort();
  }
  atexit(fuzz_dir_remove);
}

/* "<fuzz_dir>/name" in a static buffer. */
static const char *fuzz_path(const char *name) {
  static char path[sizeof fuzz_dir + 256];
  snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
  return path;
}

/* Writes data to a new <fuzz_dir>/name; aborts on failure.  A new file:
 * ext4 writes a truncated and rewritten one back at close (auto_da_alloc),
 * which costs milliseconds. */
static void fuzz_write(const char *name, const uint8_t *data, size_t n) {
  const char *path = fuzz_path(name);
  unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  size_t done = 0;
  while (fd >= 0 && done < n) {
    ssize_t w = write(fd, data + done, n - done);
    if (w <= 0)
      break;
    done += (size_t)w;
  }
  if (fd < 0 || done < n || close(fd) != 0) {
    perror(path);
    abort();
  }
}

#endif
