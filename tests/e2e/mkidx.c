/*
 * mkidx.c -- write a small MNIST-like data set: DIR/{train,t10k}-{images,labels}
 * IDX files with pseudo-random digits.  The label is the mean brightness of
 * the image's top half, bucketed into 10 classes, so there is something to
 * learn.  Usage: mkidx DIR NTRAIN NTEST
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t state = 0x853c49e6748fea9bull;
static uint32_t next(void) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(state >> 33);
}

static void be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
  fwrite(b, 1, 4, f);
}

static int write_split(const char *dir, const char *split, int n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
  FILE *img = fopen(path, "wb");
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
  FILE *lab = fopen(path, "wb");
  if (!img || !lab) {
    perror(path);
    return 1;
  }
  be32(img, 0x803), be32(img, (uint32_t)n), be32(img, 28), be32(img, 28);
  be32(lab, 0x801), be32(lab, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    unsigned char px[784];
    int level = (int)(next() % 10), top = 0;
    for (int p = 0; p < 784; p++) {
      int v = p < 392 ? level * 25 + (int)(next() % 20) : (int)(next() % 256);
      px[p] = (unsigned char)(v > 255 ? 255 : v);
      if (p < 392)
        top += px[p];
    }
    fwrite(px, 1, 784, img);
    fputc(top / 392 / 25 > 9 ? 9 : top / 392 / 25, lab);
  }
  return fclose(img) | fclose(lab);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: mkidx DIR NTRAIN NTEST\n");
    return 2;
  }
  return write_split(argv[1], "train", atoi(argv[2])) || write_split(argv[1], "t10k", atoi(argv[3]));
}
