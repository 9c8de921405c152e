/*
 * idx.c -- MNIST IDX files (LeCun's format), raw or gzip-compressed.
 *
 * An IDX file is a 4-byte big-endian magic (0, 0, type 0x08 = ubyte, rank),
 * rank big-endian 32-bit dimensions, then the data.  zlib's gzread reads
 * raw files transparently, so one path serves both; the sizes checked here
 * are the uncompressed ones.  Everything in the header is distrusted: it is
 * checked against the model first, then the data is measured in a pass
 * that stores nothing and stops at the first byte past the declared size,
 * and only a file of exactly that size is read into memory.  A header
 * claiming 4 billion images in a 1 kB file, or a gzip bomb inflating far
 * past its header, costs neither memory nor more time than the data the
 * header declares.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt.h"

#define IDX_MAX_ITEMS 100000000u /* well above any real data set */

typedef struct IdxFile {
  char path[4096];
  gzFile g;
  uint32_t dims[3];
  size_t head_len;
  uint64_t items; /* data bytes the header declares */
  unsigned char *data;
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

/* Reads up to want bytes into buf (or, with buf NULL, counts them through
 * scratch space); returns the count, or -1 on a read error. */
static int64_t gz_read_full(gzFile g, unsigned char *buf, uint64_t want, const char *path) {
  unsigned char scratch[65536];
  uint64_t got = 0;
  while (got < want) {
    uint64_t left = want - got, cap = buf ? 1u << 30 : sizeof scratch;
    int n = gzread(g, buf ? buf + got : scratch, (unsigned)(left < cap ? left : cap));
    if (n < 0) {
      int code;
      const char *msg = gzerror(g, &code);
      rt_error("%s: read error: %s", path, code == Z_ERRNO ? strerror(errno) : msg);
      return -1;
    }
    if (n == 0) break;
    got += (uint64_t)n;
  }
  return (int64_t)got;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Opens f->path and reads its header: magic, rank and plausible dims. */
static int idx_open(IdxFile *f, int rank, const char *what) {
  unsigned char head[16];
  f->head_len = 4 + 4 * (size_t)rank;
  int fd = fio_open_read(f->path); /* a FIFO is refused, not waited on */
  if (fd < 0 || !(f->g = gzdopen(fd, "rb"))) {
    rt_error("%s: %s", f->path, fd < 0 ? fio_strerror(errno) : "cannot open");
    if (fd >= 0) close(fd);
    return -1;
  }
  int64_t n = gz_read_full(f->g, head, f->head_len, f->path);
  if (n < 0) return -1;
  if ((size_t)n < 4) {
    rt_error("%s: truncated: expected at least %zu bytes of header, got %lld", f->path,
             f->head_len, (long long)n);
    return -1;
  }
  uint32_t magic = be32(head);
  uint32_t want = 0x800u | (uint32_t)rank;
  if (magic != want) {
    if ((magic & 0xffffff00u) == 0x800u)
      rt_error("%s: rank %u, expected %d (%s)", f->path, magic & 0xff, rank, what);
    else
      rt_error("%s: bad magic 0x%08x, expected 0x%08x (%s)", f->path, magic, want, what);
    return -1;
  }
  if ((size_t)n < f->head_len) {
    rt_error("%s: truncated: expected at least %zu bytes of header, got %lld", f->path,
             f->head_len, (long long)n);
    return -1;
  }
  f->items = 1;
  for (int i = 0; i < rank; i++) {
    f->dims[i] = be32(head + 4 + 4 * i);
    if (f->dims[i] > IDX_MAX_ITEMS || (f->items *= f->dims[i]) > (uint64_t)IDX_MAX_ITEMS * 1024) {
      rt_error("%s: dimension %d is %u, implausibly large", f->path, i, f->dims[i]);
      return -1;
    }
  }
  return 0;
}

/* Reads the data the (checked) header declares into f->data: first counts
 * it, storing nothing and stopping one byte past the declared size, then
 * allocates exactly that and reads it from the start. */
static int idx_read_data(IdxFile *f) {
  uint64_t expect = f->head_len + f->items;
  int64_t got = gz_read_full(f->g, NULL, f->items + 1, f->path);
  if (got < 0) return -1;
  if ((uint64_t)got < f->items) {
    rt_error("%s: truncated: expected %llu bytes, got %llu", f->path, (unsigned long long)expect,
             (unsigned long long)(f->head_len + (uint64_t)got));
    return -1;
  }
  if ((uint64_t)got > f->items) {
    rt_error("%s: trailing data: expected %llu bytes, got more", f->path,
             (unsigned long long)expect);
    return -1;
  }
  unsigned char head[16];
  if (!(f->data = xmalloc((size_t)f->items, f->path))) return -1;
  if (gzrewind(f->g) != 0) {
    rt_error("%s: cannot rewind", f->path);
    return -1;
  }
  int64_t h = gz_read_full(f->g, head, f->head_len, f->path);
  int64_t n = h == (int64_t)f->head_len ? gz_read_full(f->g, f->data, f->items, f->path) : h;
  if (n < 0) return -1;
  if (h != (int64_t)f->head_len || n != (int64_t)f->items) {
    rt_error("%s: changed while being read", f->path);
    return -1;
  }
  return 0;
}

static void idx_close(IdxFile *f) {
  if (f->g) gzclose(f->g);
  free(f->data);
}

void idx_free(NnccData *d) {
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

/* The image must fill the model's input canvas minus the padding on each
 * side (28x28 in 32x32 with pad 2); anything else is the wrong data set. */
static int check_images(const IdxFile *im, const NnccModel *m) {
  int want_h = m->in_h - m->pad_top - m->pad_bottom, want_w = m->in_w - m->pad_left - m->pad_right;
  if (im->dims[1] != (uint32_t)want_h || im->dims[2] != (uint32_t)want_w) {
    if (m->pad_top == m->pad_bottom && m->pad_left == m->pad_right)
      rt_error("%s: images are %ux%u, model %s expects %dx%d (input %dx%d, padding %d,%d)",
               im->path, im->dims[1], im->dims[2], m->name, want_h, want_w, m->in_h, m->in_w,
               m->pad_top, m->pad_left);
    else
      rt_error("%s: images are %ux%u, model %s expects %dx%d (input %dx%d, padding top %d, "
               "left %d, bottom %d, right %d)", im->path, im->dims[1], im->dims[2], m->name, want_h,
               want_w, m->in_h, m->in_w, m->pad_top, m->pad_left, m->pad_bottom, m->pad_right);
    return -1;
  }
  if (im->dims[0] == 0) {
    rt_error("%s: contains no images", im->path);
    return -1;
  }
  return 0;
}

static int check_label_count(const IdxFile *lb, const IdxFile *im) {
  if (lb->dims[0] != im->dims[0]) {
    rt_error("%s: %u labels, but %s has %u images", lb->path, lb->dims[0], im->path,
             im->dims[0]);
    return -1;
  }
  return 0;
}

static int check_label_range(const IdxFile *lb, const NnccModel *m) {
  for (size_t i = 0; i < lb->items; i++)
    if (lb->data[i] >= m->classes) {
      rt_error("%s: label %u at index %zu is out of range for %d classes", lb->path,
               lb->data[i], i, m->classes);
      return -1;
    }
  return 0;
}

int idx_is_images(const char *path) {
  unsigned char head[4];
  int fd = fio_open_read(path);
  gzFile g = fd >= 0 ? gzdopen(fd, "rb") : NULL;
  int n = g ? gzread(g, head, 4) : -1;
  if (g) gzclose(g);
  else if (fd >= 0) close(fd);
  return n == 4 && be32(head) == 0x803u;
}

int idx_load_images(NnccData *d, const char *path, const NnccModel *m) {
  IdxFile *im = xmalloc(sizeof *im, "IDX reader");
  int rc = -1;
  memset(d, 0, sizeof *d);
  if (!im) return -1;
  memset(im, 0, sizeof *im);
  snprintf(im->path, sizeof im->path, "%s", path);
  if (idx_open(im, 3, "an IDX3 ubyte image file") || check_images(im, m) || idx_read_data(im) ||
      !(d->labels = calloc(im->dims[0] ? im->dims[0] : 1, 1)))
    goto done;
  d->n = (int)im->dims[0];
  d->rows = (int)im->dims[1];
  d->cols = (int)im->dims[2];
  d->images = im->data;
  im->data = NULL;
  rc = 0;
done:
  idx_close(im);
  free(im);
  return rc;
}

/* Each header is checked against the model (and the labels' against the
 * images') before any data is read. */
int idx_load(NnccData *d, const char *dir, const char *split, const NnccModel *m) {
  IdxFile *im = xmalloc(sizeof *im, "IDX reader"), *lb = xmalloc(sizeof *lb, "IDX reader");
  char name[64];
  int rc = -1;
  memset(d, 0, sizeof *d);
  if (!im || !lb) goto done;
  memset(im, 0, sizeof *im);
  memset(lb, 0, sizeof *lb);
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  if (find_file(im->path, sizeof im->path, dir, name)) goto done;
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  if (find_file(lb->path, sizeof lb->path, dir, name)) goto done;
  if (idx_open(im, 3, "an IDX3 ubyte image file") || check_images(im, m) || idx_read_data(im))
    goto done;
  if (idx_open(lb, 1, "an IDX1 ubyte label file") || check_label_count(lb, im) ||
      idx_read_data(lb) || check_label_range(lb, m))
    goto done;
  d->n = (int)im->dims[0];
  d->rows = (int)im->dims[1];
  d->cols = (int)im->dims[2];
  d->images = im->data;
  d->labels = lb->data;
  im->data = lb->data = NULL;
  rc = 0;
done:
  if (im) idx_close(im);
  if (lb) idx_close(lb);
  free(im);
  free(lb);
  return rc;
}
