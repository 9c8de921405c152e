/*
 * fuzz_idx.c -- libFuzzer harness for the MNIST IDX reader (runtime/idx.c),
 * raw and gzip, through its public entry point idx_load(): find the files,
 * read and check both, check the images against a model's input and the
 * labels against its classes.
 *
 * One input holds both files of a split (tests/fuzz/seeds/idx, made by
 * tests/fuzz/mkseeds.sh, are real MNIST-style files in this layout):
 *   byte 0     flags: bit 0 names the image file "train-images-idx3-ubyte.gz"
 *              instead of "train-images-idx3-ubyte", bit 1 likewise the
 *              label file (gzread reads raw bytes under either name);
 *              bits 2-3 pick the model (models[] below, modulo 3); bit 4
 *              gives it 2 classes instead of 10
 *   bytes 1-4  n, big-endian: the image file is the next n bytes (or what
 *              is left of the input)
 *   the rest   the label file
 * The files are written to a scratch directory (fuzz_files.h) for each run.
 */
#include "fuzz_files.h"

#include "rt.h"

static const char *images[2] = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"};
static const char *labels[2] = {"train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"};

/* MNIST as it is, MNIST padded to 32x32 (VGG), and tiny images that let
 * the fuzzer reach the label checks with small inputs. */
static const struct {
  int h, w, pad;
} models[3] = {{28, 28, 0}, {32, 32, 2}, {4, 4, 0}};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fuzz_dir_init("idx");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5)
    return -1;
  int flags = data[0];
  size_t n = (size_t)data[1] << 24 | (size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4];
  data += 5, size -= 5;
  if (n > size)
    n = size;
  for (int i = 0; i < 2; i++) {
    unlink(fuzz_path(images[i]));
    unlink(fuzz_path(labels[i]));
  }
  fuzz_write(images[flags & 1], data, n);
  fuzz_write(labels[flags >> 1 & 1], data + n, size - n);

  int k = (flags >> 2 & 3) % 3;
  NnccModel m = {.abi = NNCC_RT_ABI, .name = "fuzz", .batch = 1, .in_c = 1,
                 .in_h = models[k].h, .in_w = models[k].w,
                 .pad_top = models[k].pad, .pad_left = models[k].pad,
                 .pad_bottom = models[k].pad, .pad_right = models[k].pad,
                 .classes = flags & 16 ? 2 : 10};
  NnccData d;
  if (idx_load(&d, fuzz_dir, "train", &m) == 0)
    idx_free(&d);
  return 0;
}
