/*
 * classify.c -- which digit is in an image?  A small program around the
 * predictor nncc generates from models/mnist_cnn.nn (docs/infer.md):
 *
 *   classify IMAGE...        (PNG, or PGM: P5 binary)
 *
 * prints "IMAGE: CLASS (probability P)" for each.  An image becomes what
 * mnist_cnn was trained on as the trainer's `predict` makes it
 * (runtime/image.c): 8-bit grey (libpng expands palettes and low bit
 * depths, strips 16 bits, weighs RGB as its rgb_to_gray does and puts
 * alpha over white), scaled to 28x28 by area averaging, and inverted when
 * its border is mostly light: MNIST's digits are light on black, while a
 * digit drawn in a paint program is dark on white.  Then each pixel is
 * pixel / 255.0f, the predictor's input.
 *
 * Build (Makefile): nncc --infer models/mnist_cnn.nn --load CKPT -o mnist_cnn_infer.c,
 * then cc -std=c99 -O2 -o classify classify.c mnist_cnn_infer.c -lpng -lm
 */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mnist_cnn_infer.h"

typedef struct Image {
  int w, h;
  unsigned char *pixels; /* h rows of w grey bytes */
} Image;

/* A PNG as 8-bit grey, or 0 after a message. */
static int read_png(FILE *f, const char *path, Image *img) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  unsigned char *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(pixels);
    free(rows);
    fprintf(stderr, "%s: not a readable PNG\n", path);
    return 0;
  }
  png_set_user_limits(png, 16384, 16384);
  png_init_io(png, f);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int color = png_get_color_type(png, info);
  png_set_expand(png);
  png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_COLOR || color == PNG_COLOR_TYPE_PALETTE)
    png_set_rgb_to_gray_fixed(png, PNG_ERROR_ACTION_NONE, -1, -1);
  png_color_16 white = {0, 255, 255, 255, 255};
  png_set_background(png, &white, PNG_BACKGROUND_GAMMA_SCREEN, 0, 1.0);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 1 || png_get_bit_depth(png, info) != 8)
    png_error(png, "not grey");
  pixels = malloc((size_t)w * h);
  rows = malloc(sizeof *rows * h);
  if (!pixels || !rows)
    png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = pixels + (size_t)y * w;
  png_read_image(png, rows);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  img->w = (int)w, img->h = (int)h, img->pixels = pixels;
  return 1;
}

/* A binary PGM ("P5 W H MAXVAL", then the bytes), maxval up to 255. */
static int read_pgm(FILE *f, const char *path, Image *img) {
  int w, h, maxval;
  if (fscanf(f, "P5 %d %d %d", &w, &h, &maxval) != 3 || w < 1 || h < 1 || w > 16384 || h > 16384 ||
      maxval < 1 || maxval > 255 || fgetc(f) == EOF) {
    fprintf(stderr, "%s: not a PGM (P5, maxval up to 255)\n", path);
    return 0;
  }
  img->w = w, img->h = h, img->pixels = malloc((size_t)w * h);
  if (!img->pixels || fread(img->pixels, 1, (size_t)w * h, f) != (size_t)w * h) {
    fprintf(stderr, "%s: truncated\n", path);
    free(img->pixels);
    return 0;
  }
  for (size_t i = 0; i < (size_t)w * h; i++)
    img->pixels[i] = (unsigned char)((img->pixels[i] * 255 + maxval / 2) / maxval);
  return 1;
}

/* rows x cols by area averaging, inverted when the border is light. */
static void fit(const Image *img, int rows, int cols, unsigned char *out) {
  int w = img->w, h = img->h;
  double sum = 0;
  for (int x = 0; x < w; x++)
    sum += img->pixels[x] + img->pixels[(size_t)(h - 1) * w + x];
  for (int y = 0; y < h; y++)
    sum += img->pixels[(size_t)y * w] + img->pixels[(size_t)y * w + w - 1];
  int invert = sum / (2.0 * w + 2.0 * h) > 127.5;
  for (int oy = 0; oy < rows; oy++)
    for (int ox = 0; ox < cols; ox++) {
      double x0 = (double)ox * w / cols, x1 = (double)(ox + 1) * w / cols;
      double y0 = (double)oy * h / rows, y1 = (double)(oy + 1) * h / rows;
      double s = 0, area = 0;
      for (int y = (int)y0; y < h && y < y1; y++) {
        double hy = (y + 1 < y1 ? y + 1 : y1) - (y > y0 ? y : y0);
        for (int x = (int)x0; x < w && x < x1; x++) {
          double wx = (x + 1 < x1 ? x + 1 : x1) - (x > x0 ? x : x0);
          s += wx * hy * img->pixels[(size_t)y * w + x];
          area += wx * hy;
        }
      }
      double v = area > 0 ? s / area : 0;
      out[oy * cols + ox] = (unsigned char)((invert ? 255 - v : v) + 0.5);
    }
}

int main(int argc, char **argv) {
  static float input[MNIST_CNN_INPUT_C * MNIST_CNN_INPUT_H * MNIST_CNN_INPUT_W];
  float logits[MNIST_CNN_CLASSES];
  int rc = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s IMAGE.png|IMAGE.pgm...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    unsigned char sig[8] = {0}, digit[28 * 28];
    Image img = {0};
    int ok = f && fread(sig, 1, 8, f) >= 2 && fseek(f, 0, SEEK_SET) == 0 &&
             (png_sig_cmp(sig, 0, 8) == 0 ? read_png(f, argv[i], &img) : read_pgm(f, argv[i], &img));
    if (f)
      fclose(f);
    if (!ok) {
      if (!f)
        perror(argv[i]);
      rc = 1;
      continue;
    }
    fit(&img, 28, 28, digit);
    free(img.pixels);
    memset(input, 0, sizeof input);
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++)
        input[(MNIST_CNN_PAD_TOP + y) * MNIST_CNN_INPUT_W + MNIST_CNN_PAD_LEFT + x] = digit[y * 28 + x] / 255.0f;
    if (mnist_cnn_predict(input, logits) != 0) {
      fprintf(stderr, "%s: the predictor failed\n", argv[i]);
      return 1;
    }
    int best = 0;
    double z = 0;
    for (int c = 0; c < MNIST_CNN_CLASSES; c++)
      best = logits[c] > logits[best] ? c : best;
    for (int c = 0; c < MNIST_CNN_CLASSES; c++)
      z += exp((double)logits[c] - logits[best]);
    printf("%s: %d (probability %.3f)\n", argv[i], best, 1.0 / z);
  }
  return rc;
}
