/*
 * fileio.h -- opening files so that nothing in the file system can hang,
 * clobber or litter: one module for the compiler (-o, .nn sources) and the
 * runtime (checkpoints, IDX data, logs).  Both build runtime/fileio.c.
 *
 * Every function returns -1 (or a negative fd) with errno set on failure;
 * errno may then also be one of the FIO_E* codes below, so messages come
 * from fio_strerror(), never strerror().  docs/runtime.md, "Files".
 */
#ifndef NNCC_FILEIO_H
#define NNCC_FILEIO_H

#include <signal.h>
#include <stddef.h>

#define FIO_ENOTREG (-1001)   /* an input that is not a regular file */
#define FIO_ENOTFILE (-1002)  /* an output that is a block device or socket */
#define FIO_ENOREADER (-1003) /* an output FIFO that nobody has open */
/* strerror() that also knows the FIO_E* codes. */
const char *fio_strerror(int err);

/* An input: a regular file, never waiting on a FIFO.  An fd, or -1. */
int fio_open_read(const char *path);
/* A whole input (fio_open_read's rules) in malloc'd memory, *len bytes
 * followed by a NUL; more than max bytes is EFBIG.  NULL on failure. */
char *fio_read_file(const char *path, size_t max, size_t *len);
/* A log: a regular file (created if missing) appended to, or a character
 * device or FIFO written through.  An fd, or -1. */
int fio_open_append(const char *path);
/* Writes all of p, retrying short writes; a reader that went away is
 * EPIPE, never a SIGPIPE that kills the process. */
int fio_write_all(int fd, const void *p, size_t n);
/* The same, but a signal that set *stop ends a blocked write: -1, EINTR
 * (a log whose reader stalls must not keep SIGINT from stopping training). */
int fio_write_until(int fd, const void *p, size_t n, volatile sig_atomic_t *stop);

/*
 * An output written whole or not at all: a regular file (or none yet) is
 * replaced atomically by fio_out_commit(), a character device or FIFO is
 * written through; symlinks are followed, the link itself stays.
 */
typedef struct FioOut {
  int fd;
  int through;       /* a device or FIFO, written in place */
  int named;         /* temp exists under its name (remove on abort) */
  char target[4096]; /* the file replaced: path with symlinks followed */
  char temp[4096];   /* "DIR/.NAME.nncc-tmp.PID" */
} FioOut;
int fio_out_open(FioOut *f, const char *path);
int fio_out_write(FioOut *f, const void *p, size_t n);
/* Makes the output visible: fsync, rename over the target, fsync of the
 * directory; closes f.  On failure the old target is untouched. */
int fio_out_commit(FioOut *f);
/* Closes f and removes its temp file; the target is untouched.  Safe to
 * call after any of the above, failed or not. */
void fio_out_abort(FioOut *f);
/* open + write + commit of one buffer. */
int fio_write_file(const char *path, const void *data, size_t len);

#endif
