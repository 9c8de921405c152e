/*
 * fileio.c -- see fileio.h.  What a path may name, and what happens:
 *
 *   input   a regular file; anything else (a FIFO would block open() until
 *           some writer came, /dev/zero never ends) is FIO_ENOTREG.
 *   output  missing or a regular file: replaced atomically.  The data goes
 *           to an unnamed O_TMPFILE in the target's directory (or, where
 *           the file system lacks it, ".NAME.nncc-tmp.PID"), is fsynced,
 *           linked as ".NAME.nncc-tmp.PID", renamed over NAME and the
 *           directory fsynced: readers and crashes see the old file or the
 *           whole new one.  A SIGKILL can leave a named temp behind only in
 *           the fallback or between link and rename; the next save next to
 *           it removes temps whose PID is no longer running.
 *           A character device (/dev/null) or a FIFO is written in place;
 *           a FIFO with no reader is FIO_ENOREADER at once.  A directory
 *           is EISDIR, a block device or socket FIO_ENOTFILE.
 *           A symlink is followed: its final target is replaced, the link
 *           stays a link (a dangling one gets its target created).
 *   log     like an output, but appended to in place (O_APPEND).
 * Every open uses O_NONBLOCK, so that no open() can wait, and switches back
 * to blocking I/O once the file's type is known.
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"

#define OPEN_FLAGS (O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
#define TEMP_TAG ".nncc-tmp."
#define MAX_LINKS 40 /* symlinks followed before ELOOP, as the kernel does */

const char *fio_strerror(int err) {
  switch (err) {
  case FIO_ENOTREG: return "not a regular file";
  case FIO_ENOTFILE: return "not a regular file, character device or FIFO";
  case FIO_ENOREADER: return "FIFO has no reader";
  default: return strerror(err);
  }
}

static int close_with(int fd, int err) {
  close(fd);
  errno = err;
  return -1;
}

/* O_NONBLOCK was only there so that open() could not hang. */
static int make_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) return close_with(fd, errno);
  return fd;
}

int fio_open_read(const char *path) {
  struct stat st;
  int fd = open(path, O_RDONLY | OPEN_FLAGS);
  if (fd < 0) {
    if (errno == ENXIO) errno = FIO_ENOTREG; /* a socket */
    return -1;
  }
  if (fstat(fd, &st) != 0) return close_with(fd, errno);
  if (!S_ISREG(st.st_mode)) return close_with(fd, FIO_ENOTREG);
  return make_blocking(fd);
}

char *fio_read_file(const char *path, size_t max, size_t *len) {
  int fd = fio_open_read(path);
  if (fd < 0) return NULL;
  char *data = NULL;
  size_t n = 0, cap = 0;
  int err = 0;
  for (;;) {
    if (n > max) {
      err = EFBIG;
      break;
    }
    if (n == cap) { /* grown as it reads: the file need not keep its stat size */
      char *d = realloc(data, (cap = cap ? 2 * cap : 8192) + 1);
      if (!d) {
        err = ENOMEM;
        break;
      }
      data = d;
    }
    ssize_t r = read(fd, data + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      err = r < 0 ? errno : 0;
      break;
    }
    n += (size_t)r;
  }
  close(fd);
  if (err) {
    free(data);
    errno = err;
    return NULL;
  }
  data[n] = '\0';
  *len = n;
  return data;
}

/* After open(path, O_WRONLY | O_NONBLOCK) failed: ENXIO means a FIFO
 * nobody reads, or a socket. */
static int open_failed(const char *path) {
  struct stat st;
  if (errno == ENXIO)
    errno = stat(path, &st) == 0 && S_ISFIFO(st.st_mode) ? FIO_ENOREADER : FIO_ENOTFILE;
  return -1;
}

/* Keeps fd (open for writing) if it is a character device, a FIFO or, when
 * allowed, a regular file. */
static int check_writable(int fd, int regular_ok) {
  struct stat st;
  if (fstat(fd, &st) != 0) return close_with(fd, errno);
  if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode) && !(regular_ok && S_ISREG(st.st_mode)))
    return close_with(fd, S_ISDIR(st.st_mode) ? EISDIR : FIO_ENOTFILE);
  return make_blocking(fd);
}

int fio_open_append(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | OPEN_FLAGS, 0666);
  return fd < 0 ? open_failed(path) : check_writable(fd, 1);
}

int fio_write_all(int fd, const void *p, size_t n) { return fio_write_until(fd, p, n, NULL); }

int fio_write_until(int fd, const void *p, size_t n, volatile sig_atomic_t *stop) {
  /* SIGPIPE is blocked around the write; one it raised is taken back
   * (unless one was already pending) so that EPIPE is just an error. */
  sigset_t pipe, old, pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  sigpending(&pending);
  int was_pending = sigismember(&pending, SIGPIPE), err = 0;
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR && !(stop && *stop)) continue;
    if (w <= 0) {
      err = w < 0 ? errno : EIO;
      break;
    }
    c += w;
    n -= (size_t)w;
  }
  if (err == EPIPE && !was_pending) {
    struct timespec now = {0, 0};
    while (sigtimedwait(&pipe, NULL, &now) < 0 && errno == EINTR) {}
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return err ? -1 : 0;
}

/* N for "/proc/self/fd/N" or "/dev/fd/N" (where /dev/stdout leads), else -1:
 * such a path names an open file description, which must be written
 * through -- renaming over the file it points at would cut the shell's
 * redirection (`-o /dev/stdout >> all.c`) off from what is written. */
static int fd_path(const char *p) {
  const char *digits = strncmp(p, "/proc/self/fd/", 14) == 0 ? p + 14
                       : strncmp(p, "/dev/fd/", 8) == 0    ? p + 8
                                                           : NULL;
  if (!digits || *digits < '0' || *digits > '9' || strlen(digits) > 6) return -1;
  for (const char *c = digits; *c; c++)
    if (*c < '0' || *c > '9') return -1;
  return atoi(digits);
}

/* Follows symlinks from path to the file they finally name, which need not
 * exist, into out[cap]; *st is its lstat, *exists whether there is one;
 * *fdnum is N where a hop is an fd path (see fd_path), else -1. */
static int resolve(const char *path, char *out, size_t cap, struct stat *st, int *exists,
                   int *fdnum) {
  char link[4096];
  *fdnum = -1;
  if (strlen(path) >= cap) return errno = ENAMETOOLONG, -1;
  strcpy(out, path);
  for (int hops = 0;; hops++) {
    if ((*fdnum = fd_path(out)) >= 0) return 0;
    if (lstat(out, st) != 0) {
      *exists = 0;
      return errno == ENOENT ? 0 : -1;
    }
    *exists = 1;
    if (!S_ISLNK(st->st_mode)) return 0;
    if (hops == MAX_LINKS) return errno = ELOOP, -1;
    ssize_t n = readlink(out, link, sizeof link);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof link) return errno = ENAMETOOLONG, -1;
    /* a relative link is relative to the directory holding it */
    const char *slash = strrchr(out, '/');
    size_t dir = link[0] == '/' || !slash ? 0 : (size_t)(slash - out) + 1;
    if (dir + (size_t)n >= cap) return errno = ENAMETOOLONG, -1;
    memcpy(out + dir, link, (size_t)n);
    out[dir + (size_t)n] = '\0';
  }
}

/* Removes dir's files named prefix + PID whose process no longer exists:
 * what a writer killed while saving left behind. */
static void remove_stale(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  size_t len = strlen(prefix);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    const char *digits = e->d_name + len;
    char *end;
    if (strncmp(e->d_name, prefix, len) != 0 || *digits < '1' || *digits > '9') continue;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    if (*end || errno || pid > INT_MAX || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

/* path's directory ("." if none) into dir[cap]; returns its last component. */
static const char *split_dir(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, cap, ".");
  else snprintf(dir, cap, "%.*s", (int)(slash - path) + (slash == path), path);
  return slash ? slash + 1 : path;
}

/* A writer in the target's directory: unnamed (O_TMPFILE, linked at commit)
 * where the kernel and file system allow it, else the named temp. */
static int open_temp(FioOut *f, const char *dir) {
#ifdef O_TMPFILE
  /* linkat() of an unnamed file goes through /proc/self/fd; the test
   * suite sets NNCC_NO_TMPFILE to exercise the named fallback. */
  if (!getenv("NNCC_NO_TMPFILE") && access("/proc/self/fd", X_OK) == 0) {
    f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (f->fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return f->fd;
  }
#endif
  unlink(f->temp); /* ours by name and PID: a dead process's, or a failed try */
  f->fd = open(f->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  f->named = f->fd >= 0;
  return f->fd;
}

int fio_out_open(FioOut *f, const char *path) {
  struct stat st;
  int exists;
  char dir[4096], prefix[256];
  memset(f, 0, sizeof *f);
  f->fd = -1;
  /* The kernel follows every link, /proc/self/fd/N's too (-o /dev/stdout). */
  if (stat(path, &st) == 0) {
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
      int fd = open(path, O_WRONLY | OPEN_FLAGS);
      if (fd < 0) return open_failed(path);
      f->through = 1;
      return (f->fd = check_writable(fd, 0)) < 0 ? -1 : 0;
    }
    if (!S_ISREG(st.st_mode)) return errno = S_ISDIR(st.st_mode) ? EISDIR : FIO_ENOTFILE, -1;
  } else if (errno != ENOENT) {
    return -1;
  }
  int fdnum;
  if (resolve(path, f->target, sizeof f->target, &st, &exists, &fdnum)) return -1;
  if (fdnum >= 0) { /* an open file of this process's (-o /dev/stdout): written through */
    f->through = 1;
    return (f->fd = fcntl(fdnum, F_DUPFD_CLOEXEC, 0)) < 0 ? -1 : 0;
  }
  if (exists && !S_ISREG(st.st_mode)) return errno = FIO_ENOTFILE, -1; /* changed meanwhile */
  const char *name = split_dir(f->target, dir, sizeof dir);
  if (!*name) return errno = EISDIR, -1;
  snprintf(prefix, sizeof prefix, ".%.200s" TEMP_TAG, name);
  if ((size_t)snprintf(f->temp, sizeof f->temp, "%s/%s%ld", dir, prefix, (long)getpid()) >=
      sizeof f->temp)
    return errno = ENAMETOOLONG, -1;
  remove_stale(dir, prefix);
  if (open_temp(f, dir) < 0) return -1;
  if (exists) (void)fchmod(f->fd, st.st_mode & 07777); /* keep the file's mode; best effort */
  return 0;
}

int fio_out_write(FioOut *f, const void *p, size_t n) { return fio_write_all(f->fd, p, n); }

int fio_out_commit(FioOut *f) {
  char dir[4096];
  int fd = f->fd;
  f->fd = -1;
  if (f->through) return close(fd) == 0 ? 0 : -1;
  if (fsync(fd) != 0) goto fail;
  if (!f->named) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    unlink(f->temp);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, f->temp, AT_SYMLINK_FOLLOW) != 0) goto fail;
    f->named = 1;
  }
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  if (rename(f->temp, f->target) != 0) {
    fio_out_abort(f);
    return -1;
  }
  f->named = 0;
  /* fsync of the directory makes the rename itself durable */
  split_dir(f->target, dir, sizeof dir);
  int dfd = open(dir, O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
fail:
  f->fd = fd;
  fio_out_abort(f);
  return -1;
}

void fio_out_abort(FioOut *f) {
  int err = errno;
  if (f->fd >= 0) close(f->fd);
  if (f->named) unlink(f->temp);
  f->fd = -1;
  f->named = 0;
  errno = err;
}

int fio_write_file(const char *path, const void *data, size_t len) {
  FioOut f;
  if (fio_out_open(&f, path) == 0 && fio_out_write(&f, data, len) == 0 && fio_out_commit(&f) == 0)
    return 0;
  fio_out_abort(&f);
  return -1;
}
