/*
 * fuzz_onnx.c -- libFuzzer harness for `nncc import` (compiler/onnx/
 * import.c): the ONNX protobuf (protobuf-c's unpacking), the opset and
 * graph checks, every op's attributes and initializers, the .nn text it
 * writes -- compiled by the front end as import does -- and the weights
 * filled from the initializers.
 *
 * The input is a whole .onnx file, imported as `nncc import F.onnx -o
 * fuzz.nn --weights W` would, in memory.  User errors are fine (onnx_import
 * returns false after its message, which goes to /dev/null); an internal
 * error or running out of memory abort()s (diag_abort), which libFuzzer
 * reports like any sanitizer finding, leak, timeout or memory blow-up.
 * Seeds: the small ONNX files of tests/onnx/ (run_fuzz.sh).
 */
#include <stdlib.h>

#include "nncc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  diag_abort = true;
  diag_out = fopen("/dev/null", "w");
  return diag_out ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  OnnxImport res = {.nn_name = "fuzz.nn", .want_weights = true};
  if (onnx_import("fuzz.onnx", data, size, &res)) {
    buf_free(&res.text);
    free(res.weights);
  }
  pool_free_all();
  return 0;
}
