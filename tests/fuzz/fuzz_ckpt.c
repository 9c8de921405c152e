/*
 * fuzz_ckpt.c -- libFuzzer harness for the safetensors checkpoint reader
 * (runtime/ckpt.c, with runtime/json.c): the 8-byte header length, the
 * header JSON, every entry's dtype, shape and data_offsets, their tiling of
 * the data section, the __metadata__ (optimizer, hyperparameters,
 * progress), the tensors themselves and the optimizer state.
 *
 * The input is a whole .safetensors file, loaded with ckpt_load() as
 * `train --load` does (optimizer state included) into the model of
 * tests/fuzz/ckpt_model.nn, whose generated trainer (built with
 * -DNNCC_NO_MAIN) is linked in; tests/fuzz/seeds/ckpt holds checkpoints
 * its trainer wrote (tests/fuzz/mkseeds.sh).  The file is written to a
 * scratch directory (fuzz_files.h) for each run.
 */
#include "fuzz_files.h"

#include "rt.h"

const NnccModel *nncc_model(void); /* the generated trainer's */

static float *params, *state;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fuzz_dir_init("ckpt");
  const NnccModel *m = nncc_model();
  params = calloc(m->params_floats, sizeof *params);
  state = calloc(2 * m->params_floats, sizeof *state); /* Adam's two moments */
  if (!params || !state)
    abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_write("ckpt.safetensors", data, size);
  const NnccModel *m = nncc_model();
  NnccTrainConfig c = m->defaults;
  NnccProgress p = {0};
  ckpt_load(fuzz_path("ckpt.safetensors"), m, &c, params, state, &p);
  return 0;
}
