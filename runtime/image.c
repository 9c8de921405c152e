/*
 * image.c -- the images `predict` classifies (docs/runtime.md): PNG
 * through libpng, PGM (P5 binary, P2 text), and IDX3 image files (raw or
 * gzipped, idx.c), each made into the model's image bytes as MNIST stores
 * them.
 *
 * A PNG or PGM becomes 8-bit grey (libpng: palette and low bit depths
 * expanded, 16 bits stripped, RGB weighted as libpng's default
 * rgb_to_gray, alpha composited over white), is scaled to 28x28 by area
 * averaging to the model's image size (28x28 for MNIST models; each output
 * pixel the mean of the input area it covers), and
 * is inverted when its border is mostly light: MNIST digits are light on
 * black, a digit drawn in a paint program is dark on white.
 *
 * Hostile files: at most NNCC_IMAGE_MAX_PIXELS pixels (libpng's user
 * limits too), every libpng error caught (longjmp) and reported in one
 * line naming the file.
 */
#include <errno.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

#define NNCC_IMAGE_MAX_SIDE 16384
#define NNCC_IMAGE_MAX_PIXELS (64u << 20)

/* libpng's errors: the message, then a longjmp back into image_png() */
typedef struct PngErr {
  const char *path;
  char msg[200];
} PngErr;

static void png_error_fn(png_structp png, png_const_charp msg) {
  PngErr *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int image_png(FILE *f, const char *path, NnccImage *img) {
  PngErr err = {path, ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warning_fn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  unsigned char *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    rt_error("%s: out of memory for libpng", path);
    return -1;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    rt_error("%s: not a readable PNG: %s", path, err.msg);
    return -1;
  }
  png_set_user_limits(png, NNCC_IMAGE_MAX_SIDE, NNCC_IMAGE_MAX_SIDE);
  png_init_io(png, f);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if ((uint64_t)w * h > NNCC_IMAGE_MAX_PIXELS) png_error(png, "more than 64 Mi pixels");
  int color = png_get_color_type(png, info);
  png_set_expand(png);   /* palette to RGB, grey below 8 bits to 8, tRNS to alpha */
  png_set_strip_16(png); /* 16 bits to 8 */
  if (color & PNG_COLOR_MASK_COLOR || color == PNG_COLOR_TYPE_PALETTE)
    png_set_rgb_to_gray_fixed(png, PNG_ERROR_ACTION_NONE, -1, -1);
  png_color_16 white = {0, 255, 255, 255, 255};
  png_set_background(png, &white, PNG_BACKGROUND_GAMMA_SCREEN, 0, 1.0); /* alpha over white */
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 1 || png_get_bit_depth(png, info) != 8)
    png_error(png, "cannot be made 8-bit grey");
  pixels = malloc((size_t)w * h);
  rows = malloc(sizeof *rows * h);
  if (!pixels || !rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  img->w = (int)w, img->h = (int)h, img->pixels = pixels;
  return 0;
}

/* PGM: "P5" (bytes) or "P2" (decimal), width, height, maxval (1..65535),
 * comments from '#' to the end of a line. */
static int pgm_int(FILE *f, long *v) {
  int c;
  for (;;) {
    c = getc(f);
    if (c == '#')
      while (c != '\n' && c != EOF) c = getc(f);
    else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      break;
  }
  if (c < '0' || c > '9') return -1;
  *v = 0;
  for (; c >= '0' && c <= '9'; c = getc(f))
    if ((*v = *v * 10 + (c - '0')) > 1000000) return -1;
  return 0;
}

static int image_pgm(FILE *f, const char *path, int binary, NnccImage *img) {
  long w, h, maxval;
  if (pgm_int(f, &w) || pgm_int(f, &h) || pgm_int(f, &maxval) || w < 1 || h < 1 || maxval < 1 ||
      maxval > 65535 || w > NNCC_IMAGE_MAX_SIDE || h > NNCC_IMAGE_MAX_SIDE ||
      (uint64_t)w * (uint64_t)h > NNCC_IMAGE_MAX_PIXELS) {
    rt_error("%s: not a PGM image: a bad header (width, height, maxval up to 65535, at most %d pixels a side)",
             path, NNCC_IMAGE_MAX_SIDE);
    return -1;
  }
  unsigned char *p = malloc((size_t)w * (size_t)h);
  if (!p) {
    rt_error("%s: out of memory", path);
    return -1;
  }
  for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
    long v;
    if (binary) {
      int hi = getc(f), lo = maxval > 255 ? getc(f) : 0;
      if (hi == EOF || lo == EOF) v = -1;
      else v = maxval > 255 ? hi * 256 + lo : hi;
    } else if (pgm_int(f, &v)) {
      v = -1;
    }
    if (v < 0 || v > maxval) {
      rt_error("%s: PGM pixel %zu of %ld: %s", path, i + 1, w * h, v < 0 ? "missing" : "above maxval");
      free(p);
      return -1;
    }
    p[i] = (unsigned char)((v * 255 + maxval / 2) / maxval);
  }
  img->w = (int)w, img->h = (int)h, img->pixels = p;
  return 0;
}

int image_load(const char *path, NnccImage *img) {
  memset(img, 0, sizeof *img);
  int fd = fio_open_read(path);
  FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
  if (!f) {
    rt_error("%s: %s", path, fio_strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  unsigned char sig[8] = {0};
  size_t n = fread(sig, 1, sizeof sig, f);
  int rc;
  if (n == 8 && png_sig_cmp(sig, 0, 8) == 0) {
    rewind(f);
    rc = image_png(f, path, img);
  } else if (n >= 2 && sig[0] == 'P' && (sig[1] == '5' || sig[1] == '2')) {
    rewind(f);
    getc(f), getc(f);
    rc = image_pgm(f, path, sig[1] == '5', img);
  } else {
    rc = -2; /* not an image: the caller tries IDX */
  }
  fclose(f);
  return rc;
}

void image_fit(const NnccImage *img, int invert, int rows, int cols, unsigned char *out) {
  int w = img->w, h = img->h;
  /* border mean: light (> 127) means a dark drawing on a light page */
  if (invert < 0) {
    double sum = 0;
    long count = 0;
    for (int x = 0; x < w; x++) sum += img->pixels[x] + img->pixels[(size_t)(h - 1) * w + x], count += 2;
    for (int y = 0; y < h; y++) sum += img->pixels[(size_t)y * w] + img->pixels[(size_t)y * w + w - 1], count += 2;
    invert = sum / count > 127.5;
  }
  for (int oy = 0; oy < rows; oy++)
    for (int ox = 0; ox < cols; ox++) {
      /* the input area [x0, x1) x [y0, y1) this pixel covers, in input pixels */
      double x0 = (double)ox * w / cols, x1 = (double)(ox + 1) * w / cols;
      double y0 = (double)oy * h / rows, y1 = (double)(oy + 1) * h / rows;
      double sum = 0, area = 0;
      for (int y = (int)y0; y < h && y < y1; y++) {
        double hy = (y + 1 < y1 ? y + 1 : y1) - (y > y0 ? y : y0);
        for (int x = (int)x0; x < w && x < x1; x++) {
          double wx = (x + 1 < x1 ? x + 1 : x1) - (x > x0 ? x : x0);
          sum += wx * hy * img->pixels[(size_t)y * w + x];
          area += wx * hy;
        }
      }
      double v = area > 0 ? sum / area : 0;
      if (invert) v = 255 - v;
      out[oy * cols + ox] = (unsigned char)(v + 0.5);
    }
}

void image_free(NnccImage *img) {
  free(img->pixels);
  img->pixels = NULL;
}
