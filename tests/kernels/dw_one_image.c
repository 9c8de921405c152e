/* The conv weight gradient built with one image per tile pass
 * (NNCC_DW_PASS_BYTES 1, so nk_dw_plan's IB is 1) and never the whole
 * batch at once (NNCC_DW_BATCH_BYTES 0), for test_kernels_general's
 * test_dw_pass_bits: the default build's multi-image passes and whole-batch
 * tile blocks must give these bits. */
#define NNCC_DW_PASS_BYTES 1
#define NNCC_DW_BATCH_BYTES 0
/* runtime sizes, as in test_kernels_general.c: the same arithmetic with
 * the tiles' loops rolled (unrolled, clang + ASan/UBSan took 15 minutes
 * over this file) */
#define NNCC_KERNELS_NO_UNROLL
#include <stdlib.h>
#include "nncc_kernels.h"

int dw_one_image_ib(int N, int Ci, int H, int W, int Co, int K, int pad, int S);
void dw_one_image(float *dw, float *db, const float *dy, const float *ymask, const float *x,
                  int N, int Ci, int H, int W, int Co, int K, int pad, int S);

/* the images per pass this file's build uses (1), or -1 if it would
 * make the whole batch ready at once */
int dw_one_image_ib(int N, int Ci, int H, int W, int Co, int K, int pad, int S) {
  if (nk_bwd_layout(N, Ci, H, W, Co, K, K, 1, 1, pad, pad, S).batch) return -1;
  return nk_dw_plan(nk_conv_fwd_desc(N, Ci, H, W, Co, K, K, 1, 1, pad, pad), S).IB;
}

void dw_one_image(float *dw, float *db, const float *dy, const float *ymask, const float *x,
                  int N, int Ci, int H, int W, int Co, int K, int pad, int S) {
  void *s = aligned_alloc(64, nk_align64(nncc_conv2d_backward_scratch(
                                  N, Ci, H, W, Co, K, K, 1, 1, pad, pad, nncc_team_size(), S)));
  nncc_conv2d_backward(NULL, dw, db, dy, ymask, x, NULL, s, N, Ci, H, W, Co, K, K, 1, 1, pad, pad,
                       ymask ? NNCC_ACT_RELU : NNCC_ACT_NONE, 0.0f, S);
  free(s);
}
