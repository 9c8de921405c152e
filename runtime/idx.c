/*
 * idx.c -- MNIST IDX files (LeCun's format), raw or gzip-compressed.
 *
 * An IDX file is a 4-byte big-endian magic (0, 0, type 0x08 = ubyte, rank),
 * rank big-endian 32-bit dimensions, then the data.  zlib's gzread reads
 * raw files transparently, so one path serves both; the sizes checked here
 * are the uncompressed ones.  Everything in the header is distrusted: the
 * data is read in growing chunks, so a header claiming 4 billion images in
 * a 1 kB file fails as "truncated" instead of allocating 4 GB.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rt.h"

#define IDX_MAX_ITEMS 100000000u /* well above any real data set */

typedef struct IdxFile {
  char path[4096];
  uint32_t dims[3];
  unsigned char *data;
  size_t len;
} IdxFile;

/* The file may be stored raw or with a .gz suffix; raw wins if both exist. */
static int find_file(char *path, size_t cap, const char *dir, const char *name) {
  struct stat st;
  char gz[256];
  if (rt_path(path, cap, dir, name)) return -1;
  if (stat(path, &st) == 0) return 0;
  snprintf(gz, sizeof gz, "%s.gz", name);
  if (rt_path(path, cap, dir, gz)) return -1;
  if (stat(path, &st) == 0) return 0;
  rt_error("%s/%s: not found (nor %s.gz)", dir, name, name);
  return -1;
}

/* Reads up to want bytes; returns the count, or -1 on a read error. */
static int64_t gz_read_full(gzFile g, unsigned char *buf, size_t want, const char *path) {
  size_t got = 0;
  while (got < want) {
    unsigned chunk = want - got > (1u << 30) ? (1u << 30) : (unsigned)(want - got);
    int n = gzread(g, buf + got, chunk);
    if (n < 0) {
      int code;
      const char *msg = gzerror(g, &code);
      rt_error("%s: read error: %s", path, code == Z_ERRNO ? strerror(errno) : msg);
      return -1;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  return (int64_t)got;
}

/* Counts what is left after the data, to report how big the file really is. */
static int64_t gz_count_rest(gzFile g, const char *path) {
  unsigned char scratch[65536];
  int64_t total = 0;
  for (;;) {
    int64_t n = gz_read_full(g, scratch, sizeof scratch, path);
    if (n < 0) return -1;
    if (n == 0) return total;
    total += n;
  }
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads an IDX file of the given rank, validating magic, size and length. */
static int idx_read(IdxFile *f, int rank, const char *what) {
  unsigned char head[16];
  size_t head_len = 4 + 4 * (size_t)rank;
  int rc = -1;
  errno = 0;
  gzFile g = gzopen(f->path, "rb");
  f->data = NULL;
  if (!g) {
    rt_error("%s: %s", f->path, errno ? strerror(errno) : "cannot open");
    return -1;
  }
  int64_t n = gz_read_full(g, head, head_len, f->path);
  if (n < 0) goto done;
  if ((size_t)n < 4) {
    rt_error("%s: truncated: expected at least %zu bytes of header, got %lld", f->path,
             head_len, (long long)n);
    goto done;
  }
  uint32_t magic = be32(head);
  uint32_t want = 0x800u | (uint32_t)rank;
  if (magic != want) {
    if ((magic & 0xffffff00u) == 0x800u)
      rt_error("%s: rank %u, expected %d (%s)", f->path, magic & 0xff, rank, what);
    else
      rt_error("%s: bad magic 0x%08x, expected 0x%08x (%s)", f->path, magic, want, what);
    goto done;
  }
  if ((size_t)n < head_len) {
    rt_error("%s: truncated: expected at least %zu bytes of header, got %lld", f->path,
             head_len, (long long)n);
    goto done;
  }
  uint64_t items = 1;
  for (int i = 0; i < rank; i++) {
    f->dims[i] = be32(head + 4 + 4 * i);
    if (f->dims[i] > IDX_MAX_ITEMS || (items *= f->dims[i]) > (uint64_t)IDX_MAX_ITEMS * 1024) {
      rt_error("%s: dimension %d is %u, implausibly large", f->path, i, f->dims[i]);
      goto done;
    }
  }
  /* Grow the buffer as data arrives rather than trusting the header. */
  size_t cap = items < (1u << 20) ? (size_t)items : (1u << 20), got = 0;
  for (;;) {
    unsigned char *p = realloc(f->data, cap ? cap : 1);
    if (!p) {
      rt_error("%s: out of memory reading %zu bytes", f->path, cap);
      goto done;
    }
    f->data = p;
    n = gz_read_full(g, f->data + got, cap - got, f->path);
    if (n < 0) goto done;
    got += (size_t)n;
    if (got < cap || cap == items) break;
    cap = cap * 2 > items ? (size_t)items : cap * 2;
  }
  uint64_t expect = head_len + items;
  if (got < items) {
    rt_error("%s: truncated: expected %llu bytes, got %llu", f->path,
             (unsigned long long)expect, (unsigned long long)(head_len + got));
    goto done;
  }
  int64_t rest = gz_count_rest(g, f->path);
  if (rest < 0) goto done;
  if (rest > 0) {
    rt_error("%s: trailing data: expected %llu bytes, got %llu", f->path,
             (unsigned long long)expect, (unsigned long long)(expect + (uint64_t)rest));
    goto done;
  }
  f->len = got;
  rc = 0;
done:
  gzclose(g);
  if (rc) {
    free(f->data);
    f->data = NULL;
  }
  return rc;
}

void idx_free(NnccData *d) {
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

/* The image must fill the model's input canvas minus the padding on both
 * sides (28x28 in 32x32 with pad 2); anything else is the wrong data set. */
static int check_images(const IdxFile *im, const NnccModel *m) {
  int want_h = m->in_h - 2 * m->pad_top, want_w = m->in_w - 2 * m->pad_left;
  if (im->dims[1] != (uint32_t)want_h || im->dims[2] != (uint32_t)want_w) {
    rt_error("%s: images are %ux%u, model %s expects %dx%d (input %dx%d, padding %d,%d)",
             im->path, im->dims[1], im->dims[2], m->name, want_h, want_w, m->in_h, m->in_w,
             m->pad_top, m->pad_left);
    return -1;
  }
  if (im->dims[0] == 0) {
    rt_error("%s: contains no images", im->path);
    return -1;
  }
  return 0;
}

static int check_labels(const IdxFile *lb, const IdxFile *im, const NnccModel *m) {
  if (lb->dims[0] != im->dims[0]) {
    rt_error("%s: %u labels, but %s has %u images", lb->path, lb->dims[0], im->path,
             im->dims[0]);
    return -1;
  }
  for (size_t i = 0; i < lb->len; i++)
    if (lb->data[i] >= m->classes) {
      rt_error("%s: label %u at index %zu is out of range for %d classes", lb->path,
               lb->data[i], i, m->classes);
      return -1;
    }
  return 0;
}

int idx_load(NnccData *d, const char *dir, const char *split, const NnccModel *m) {
  IdxFile *im = xmalloc(sizeof *im, "IDX reader"), *lb = xmalloc(sizeof *lb, "IDX reader");
  char name[64];
  int rc = -1;
  memset(d, 0, sizeof *d);
  if (!im || !lb) goto done;
  im->data = lb->data = NULL;
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  if (find_file(im->path, sizeof im->path, dir, name)) goto done;
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  if (find_file(lb->path, sizeof lb->path, dir, name)) goto done;
  if (idx_read(im, 3, "an IDX3 ubyte image file") || check_images(im, m)) goto done;
  if (idx_read(lb, 1, "an IDX1 ubyte label file") || check_labels(lb, im, m)) goto done;
  d->n = (int)im->dims[0];
  d->rows = (int)im->dims[1];
  d->cols = (int)im->dims[2];
  d->images = im->data;
  d->labels = lb->data;
  im->data = lb->data = NULL;
  rc = 0;
done:
  if (im) free(im->data);
  if (lb) free(lb->data);
  free(im);
  free(lb);
  return rc;
}
