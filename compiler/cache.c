/*
 * cache.c -- `nncc run`'s cache of compiled objects (docs/jit.md).
 *
 * One file per translation unit and compiler, named by a 128-bit key over
 * everything that decides the object (run.c: nncc's version, the compiler
 * and its flags, the host CPU, the unit's source and every header), in
 * $NNCC_CACHE_DIR, else $XDG_CACHE_HOME/nncc, else $HOME/.cache/nncc:
 *
 *   KEY.o   "NNCCOBJ1", the payload's length (8 bytes, little-endian), the
 *           payload's CRC-32, the key's CRC-32 (4 bytes each), the payload
 *
 * Entries are written to a temporary file in the directory and renamed
 * into place, so readers see a whole entry or none, and runs that race
 * each write the same bytes.  A short, damaged or misnamed entry fails its
 * checks, is removed and compiled anew.  The directory is only used when
 * it belongs to this user and nobody else can write to it: nncc loads code
 * from it.  Used entries get a new mtime; beyond NNCC_CACHE_MAX entries
 * the least recently used go.
 */
#include "nncc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum {
  HEADER = 24,
  NNCC_CACHE_MAX = 256,       /* entries kept; beyond, the oldest go ... */
  NNCC_CACHE_KEEP = 192,      /* ... down to this many */
  STALE_TMP_S = 3600,         /* a temporary file this old was left by a killed nncc */
};
static const char magic[8] = {'N', 'N', 'C', 'C', 'O', 'B', 'J', '1'};
#define NNCC_CACHE_MAX_ENTRY ((uint64_t)1 << 30) /* bigger is damage, not an object */

/* ---- the key: FNV-1a 64 and CRC-32 over the same bytes, and their count */

/* CRC-32 (zlib) continued over len more bytes; crc_of: from the start. */
static uint32_t crc_more(uint32_t crc, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t done = 0; done < len;) { /* crc32() takes a uInt length */
    size_t n = len - done > (1u << 30) ? (1u << 30) : len - done;
    crc = (uint32_t)crc32(crc, p + done, (uInt)n);
    done += n;
  }
  return crc;
}

static uint32_t crc_of(const void *data, size_t len) {
  return crc_more((uint32_t)crc32(0L, Z_NULL, 0), data, len);
}

void hash_init(Hash *h) {
  h->fnv = 1469598103934665603ull;
  h->crc = (uint32_t)crc32(0L, Z_NULL, 0);
  h->len = 0;
}

static void hash_bytes(Hash *h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++)
    h->fnv = (h->fnv ^ p[i]) * 1099511628211ull;
  h->crc = crc_more(h->crc, data, len);
  h->len += len;
}

/* Length-prefixed, so that ("ab","c") and ("a","bc") differ. */
void hash_add(Hash *h, const void *data, size_t len) {
  unsigned char n[8];
  for (int i = 0; i < 8; i++)
    n[i] = (unsigned char)((uint64_t)len >> (8 * i));
  hash_bytes(h, n, sizeof n);
  hash_bytes(h, data, len);
}

void hash_str(Hash *h, const char *s) { hash_add(h, s, strlen(s)); }

char *hash_hex(const Hash *h) {
  return format("%016llx%08x%08x", (unsigned long long)h->fnv, (unsigned)h->crc,
                (unsigned)(h->len & 0xffffffffu));
}

/* ---- the directory ------------------------------------------------------ */

struct Cache {
  char *dir;
  bool warned; /* a failed write said so once */
};

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* mkdir -p, each new directory 0700 (the XDG base directory rules). */
static bool make_dirs(const char *path) {
  char *p = xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
      return false;
    *s = c;
    if (c == '\0')
      return true;
  }
}

static char *cache_dir(void) {
  const char *d = getenv("NNCC_CACHE_DIR");
  if (d && *d)
    return xstrdup(d);
  d = getenv("XDG_CACHE_HOME");
  if (d && d[0] == '/') /* the spec: a relative path is invalid, ignore it */
    return format("%s/nncc", d);
  d = getenv("HOME");
  if (d && d[0] == '/')
    return format("%s/.cache/nncc", d);
  return NULL;
}

Cache *cache_open(const char *who) {
  char *dir = cache_dir();
  if (!dir) {
    fprintf(stderr, "nncc: %s: no cache: neither NNCC_CACHE_DIR, XDG_CACHE_HOME nor HOME is set\n", who);
    return NULL;
  }
  if (!make_dirs(dir)) {
    fprintf(stderr, "nncc: %s: not caching: cannot create '%s': %s\n", who, dir, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "nncc: %s: not caching: '%s' is not a directory\n", who, dir);
    return NULL;
  }
  /* Code is loaded from here: nobody else may put it there. */
  if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    fprintf(stderr, "nncc: %s: not caching: '%s' %s\n", who, dir,
            st.st_uid != geteuid() ? "belongs to another user" : "is writable by others");
    return NULL;
  }
  Cache *c = xalloc(sizeof *c);
  c->dir = dir;
  return c;
}

static char *entry_path(const Cache *c, const char *key) { return format("%s/%s.o", c->dir, key); }

/* Reads the whole entry, or says why not (NULL why: there is none). */
static char *read_entry(const char *path, const char *key, size_t *len, const char **why) {
  *why = NULL;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      *why = strerror(errno);
    return NULL;
  }
  struct stat st;
  unsigned char h[HEADER];
  char *data = NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
    *why = "not a regular file of this user";
  else if (read(fd, h, HEADER) != HEADER || memcmp(h, magic, sizeof magic) != 0)
    *why = "no entry header";
  else {
    uint64_t n = get_le(h + 8, 8);
    if (n > NNCC_CACHE_MAX_ENTRY || (uint64_t)st.st_size != HEADER + n)
      *why = "its length is wrong";
    else if ((data = malloc(n ? n : 1)) == NULL)
      *why = "out of memory";
    else {
      size_t got = 0;
      for (ssize_t r; got < n && (r = read(fd, data + got, n - got)) > 0;)
        got += (size_t)r;
      if (got != n || crc_of(data, n) != (uint32_t)get_le(h + 16, 4))
        *why = "its checksum is wrong";
      else if (crc_of(key, strlen(key)) != (uint32_t)get_le(h + 20, 4))
        *why = "it is another key's entry";
      else
        *len = n;
    }
  }
  close(fd);
  if (*why) {
    free(data);
    return NULL;
  }
  return data;
}

char *cache_get(Cache *c, const char *key, size_t *len, const char *who) {
  char *path = entry_path(c, key);
  const char *why;
  char *data = read_entry(path, key, len, &why);
  if (data) {
    utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW); /* recently used */
    return data;
  }
  if (why) {
    fprintf(stderr, "nncc: %s: cache entry '%s' is damaged (%s); compiling it again\n", who, path, why);
    unlink(path);
  }
  return NULL;
}

/* Removes temporary files killed runs left, and beyond NNCC_CACHE_MAX
 * entries the least recently used ones. */
typedef struct Entry {
  char *path;
  struct timespec used;
} Entry;

static int least_recent_first(const void *a, const void *b) {
  const struct timespec *x = &((const Entry *)a)->used, *y = &((const Entry *)b)->used;
  if (x->tv_sec != y->tv_sec)
    return x->tv_sec < y->tv_sec ? -1 : 1;
  return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

static void tidy(const Cache *c) {
  DIR *d = opendir(c->dir);
  if (!d)
    return;
  Entry *entries = NULL;
  int n = 0, cap = 0;
  time_t now = time(NULL);
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    char *path = format("%s/%s", c->dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (strncmp(e->d_name, ".tmp-", 5) == 0) {
      if (now - st.st_mtim.tv_sec > STALE_TMP_S)
        unlink(path);
    } else if (len == 34 && strcmp(e->d_name + 32, ".o") == 0) {
      VEC_PUSH(entries, n, cap, ((Entry){path, st.st_mtim}));
    }
  }
  closedir(d);
  if (n <= NNCC_CACHE_MAX)
    return;
  qsort(entries, (size_t)n, sizeof *entries, least_recent_first);
  for (int i = 0; i < n - NNCC_CACHE_KEEP; i++)
    unlink(entries[i].path);
}

void cache_put(Cache *c, const char *key, const void *data, size_t len, const char *who) {
  unsigned char h[HEADER];
  memcpy(h, magic, sizeof magic);
  put_le(h + 8, len, 8);
  put_le(h + 16, crc_of(data, len), 4);
  put_le(h + 20, crc_of(key, strlen(key)), 4);
  char *tmp = format("%s/.tmp-XXXXXX", c->dir);
  char *path = entry_path(c, key);
  /* No signal between creating the temporary file and renaming it: none
   * is left behind (a pending one arrives at the sigprocmask below). */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  sigprocmask(SIG_BLOCK, &block, &old);
  int fd = mkstemp(tmp);
  bool ok = fd >= 0;
  if (ok) {
    const char *parts[2] = {(const char *)h, data};
    size_t lens[2] = {HEADER, len};
    for (int p = 0; p < 2 && ok; p++)
      for (size_t done = 0; ok && done < lens[p];) {
        ssize_t w = write(fd, parts[p] + done, lens[p] - done);
        if (w < 0 && errno == EINTR)
          continue;
        ok = w > 0;
        done += ok ? (size_t)w : 0;
      }
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
      int e = errno;
      unlink(tmp);
      errno = e;
    }
  }
  if (!ok && !c->warned) {
    fprintf(stderr, "nncc: %s: cannot write to the cache '%s': %s\n", who, c->dir, strerror(errno));
    c->warned = true;
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (ok)
    tidy(c);
}
