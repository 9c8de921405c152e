/*
 * nncc_rt.h -- the one public header of the nncc runtime.
 *
 * A generated trainer (nncc FILE.nn -o FILE.c) defines one NnccModel that
 * describes its parameters and points at its forward/backward kernels, then
 * hands it to nncc_main(), which owns everything model-independent: the
 * command line, MNIST IDX loading, batching, the softmax cross-entropy loss
 * (with the model's label smoothing), the optimizers, safetensors
 * checkpoints, logging and progress output.
 *
 * Memory: the runtime makes the four allocations of a training run at
 * start-up (parameters, gradients, optimizer state, activation arena) and
 * nothing inside a step.
 */
#ifndef NNCC_RT_H
#define NNCC_RT_H

#include <stddef.h>
#include <stdint.h>

/* nncc's version (CMakeLists.txt reads it from here: the one place it is
 * written) and the ABI of NnccModel and nncc_main(), raised whenever either
 * changes.  A generated trainer records both: its C refuses to build
 * against a header of another ABI, and model_check() refuses at start-up a
 * model whose header and runtime library disagree. */
#define NNCC_VERSION "0.1.0"
#define NNCC_RT_ABI 8

/* The most classes a model may have: labels are stored as bytes (IDX).
 * nncc checks it at compile time, model_check() at start-up. */
#define NNCC_MAX_CLASSES 256

/* The most groups a batch's sums may be taken in (NnccModel.groups;
 * nncc_kernels.h, "batch reductions"), and so the most MPI ranks. */
#define NNCC_MAX_GROUPS 64

/* How a parameter (or buffer) is initialized, following PyTorch 1.13. */
typedef enum NnccInit {
  NNCC_INIT_UNIFORM, /* U(-bound, bound): kaiming_uniform(a=sqrt(5)) weights and biases */
  NNCC_INIT_ZEROS,   /* batchnorm bias, running_mean, num_batches_tracked */
  NNCC_INIT_ONES,    /* batchnorm weight, running_var */
} NnccInit;

typedef enum NnccParamKind {
  NNCC_PARAM,         /* trainable: has a gradient and optimizer state */
  NNCC_BUFFER,        /* f32 buffer in the state_dict, e.g. running_mean */
  NNCC_BUFFER_COUNT,  /* stored as f32 here, saved as an I64 scalar (num_batches_tracked) */
} NnccParamKind;

typedef struct NnccParam {
  const char *name;   /* state_dict name, e.g. "conv1.weight" */
  NnccParamKind kind;
  int rank;           /* 0..4 */
  int64_t shape[4];   /* PyTorch layout: OIHW conv weights, [out, in] linear */
  size_t numel;
  size_t offset;      /* in floats, into the parameter block (and the gradient block) */
  NnccInit init;
  float bound;        /* for NNCC_INIT_UNIFORM */
  /* 1: its kernel leaves its gradient summed over all ranks already
   * (batch norm's, whose sums forward and backward need whole); the
   * runtime sums the others over the ranks after backward. */
  int synced;
} NnccParam;

/* The longest schedule text (NnccTrainConfig), its NUL included; as in
 * schedule.h. */
#define NNCC_SCHED_TEXT 320

/* torch.optim.Adam, SGD and AdamW (decoupled weight decay).  Adam and
 * AdamW keep the same state (exp_avg, exp_avg_sq). */
typedef enum NnccOptim { NNCC_ADAM, NNCC_SGD, NNCC_ADAMW } NnccOptim;

/* The training set-up; the .nn file gives the defaults, flags override.
 * Hyperparameters are double because PyTorch keeps them as Python floats
 * and computes the bias corrections in double; float here would shift the
 * update by ~1e-8 relative and break agreement with torch.optim. */
typedef struct NnccTrainConfig {
  NnccOptim optim;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  int epochs;
  uint64_t seed;
  int nesterov;           /* sgd: Nesterov momentum (needs momentum > 0) */
  double clip_grad_norm;  /* > 0: torch.nn.utils.clip_grad_norm_(max_norm) before each step */
  double clip_grad_value; /* > 0: torch.nn.utils.clip_grad_value_(clip_value) before each step */
  /* Learning-rate schedule and warm-up in their text form, "" for none:
   * "cosine(T_max=10, eta_min=0)", "linear(start_factor=0.1, ...)"
   * (runtime/schedule.c).  lr above is the base they scale. */
  char schedule[NNCC_SCHED_TEXT];
  char warmup[NNCC_SCHED_TEXT];
} NnccTrainConfig;

/* The sum over MPI ranks that the batch-norm kernels call (SyncBatchNorm):
 * v[0..n) is summed elementwise over the ranks, in the tree order of the
 * batch reductions (nncc_kernels.h), and the result left on every rank.
 * ctx is the NnccState.  Called by the team's master thread between
 * barriers. */
typedef void (*nncc_rank_sum_fn)(void *ctx, double *v, size_t n);

/* What a step's kernels see.  The runtime owns every pointer. */
typedef struct NnccState {
  float *params;        /* model->params_floats floats */
  float *grads;         /* same layout as params; buffers' slots unused */
  unsigned char *arena; /* model->arena_bytes + model->scratch_bytes(threads), 64-byte aligned */
  float *input;         /* [batch, in_c, in_h, in_w], filled by the runtime */
  float *logits;        /* [batch, classes], written by forward */
  float *dlogits;       /* [batch, classes], written by the loss, read by backward */
  uint64_t seed;        /* dropout streams: hash(seed, step, element) */
  uint64_t step;        /* optimizer steps taken so far */
  /* The numerics check (--check-numerics, and the diagnosis of a non-finite
   * loss): when not NULL, forward() and backward() call it after node k's
   * kernels, from every thread of their parallel region; it synchronizes
   * the threads itself.  Set only between passes, so every thread sees the
   * same value.  check_data is the runtime's. */
  void (*check)(struct NnccState *s, int k, int pass);
  void *check_data;
  /* The team forward() and backward() run with (num_threads), which the
   * kernel scratch was sized for: OpenMP's team size when the runtime
   * allocated the arena, after --threads.  Any count, same bits. */
  int threads;
  /* Data parallelism: the sum over ranks (NULL: one process) and the index
   * in the global batch of this rank's first image (dropout's streams
   * number elements across the whole batch). */
  nncc_rank_sum_fn rank_sum;
  int64_t sample0;
} NnccState;

enum { NNCC_FORWARD, NNCC_BACKWARD }; /* the pass argument of NnccState.check */

/* Where a tensor of the training step lies: in the arena at `offset` bytes,
 * or in one of the runtime's own buffers. */
typedef enum NnccWhere { NNCC_NOWHERE, NNCC_ARENA, NNCC_INPUT, NNCC_LOGITS, NNCC_DLOGITS } NnccWhere;

typedef struct NnccSpan {
  NnccWhere where;
  size_t offset;            /* NNCC_ARENA: bytes into the arena */
  size_t numel;             /* floats */
} NnccSpan;

/* A node of the model's graph, as the numerics check sees it.  The memory
 * plan reuses arena space, so a span holds the value only right after the
 * node's kernels ran. */
typedef struct NnccNode {
  const char *name;         /* "conv2" */
  const char *op;           /* "conv2d+relu" */
  const char *loc;          /* where the .nn defines it: "models/mnist_cnn.nn:11:10" */
  NnccSpan out;             /* its output, after forward ran it */
  int nin;                  /* its inputs: */
  const char *const *in;    /* their names */
  const NnccSpan *din;      /* their gradients, after backward ran it (NNCC_NOWHERE: not computed) */
  int param, nparams;       /* its rows of NnccModel.params, and their gradients */
} NnccNode;

typedef struct NnccModel {
  int abi;                  /* NNCC_RT_ABI */
  const char *name;         /* "mnist_cnn" */
  const char *source;       /* "models/mnist_cnn.nn" */
  const char *nncc_version;
  int batch;                /* fixed at compile time */
  int in_c, in_h, in_w;     /* the input tensor's per-image shape */
  int pad_top, pad_left,    /* the zeros around the 28x28 MNIST image inside in_h x in_w: */
      pad_bottom, pad_right;/*   mnist(pad=P) is P on every side, mnist(pad=[t, l]) t, l and the rest */
  int classes;
  double label_smoothing;   /* cross_entropy's label_smoothing, in [0, 1] (0: none) */
  int nparams;
  const NnccParam *params;
  size_t params_floats;     /* size of the parameter block (and of the gradient block) */
  size_t arena_bytes;       /* the memory plan's arena; the kernel scratch follows it */
  NnccTrainConfig defaults;
  /* forward: input -> logits.  training=1 uses batch statistics and dropout. */
  void (*forward)(NnccState *s, int training);
  /* backward: dlogits -> grads of every NNCC_PARAM (overwrites, does not accumulate). */
  void (*backward)(NnccState *s);
  int nnodes;               /* the nodes with kernels, in forward order (may be 0) */
  const NnccNode *nodes;
  /* Set by the generated nncc_model(): 1 if its C was compiled fusing a*b+c
   * into FMAs (-ffp-contract=fast), which breaks the same-bits promise;
   * model_check() refuses such a build (nncc_fp_contracts() in
   * nncc_kernels.h). */
  int fp_contract;
  /* The kernel scratch after the arena for a team of `threads` (NULL: none). */
  size_t (*scratch_bytes)(int threads);
  /* Training-time data augmentation, the input's mnist(crop_padding=P,
   * hflip=true): each training image is shifted as torchvision's
   * RandomCrop(28, padding=P) does, then mirrored half of the time
   * (RandomHorizontalFlip), decided by a hash of (seed, epoch, image
   * index), so any thread count, batch and resume sees the same images.
   * 0: none. */
  int augment_crop, augment_hflip;
  /* Data parallelism (nncc --ranks N, docs/distributed.md): `batch` above
   * is one rank's share of a batch of batch * ranks images, whose sums are
   * taken in `groups` groups (nncc_kernels.h, "batch reductions").  A
   * trainer with ranks > 1 is built with MPI and started by mpirun -np
   * ranks.  0 reads as 1. */
  int ranks, groups;
} NnccModel;

/* splitmix64's finalizer: a cheap, well-mixed 64-bit hash (the runtime's
 * PRNG uses the same mixer).  Generated dropout kernels may derive their
 * per-element bits from it, e.g.
 *   key = nncc_hash64(s->seed ^ nncc_hash64(s->step ^ nncc_hash64(node_id)));
 *   bits = nncc_hash64(key + i);   -- element i, independent of thread count */
static inline uint64_t nncc_hash64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The trainer's command line: train, eval, grads.  Returns the exit status. */
int nncc_main(int argc, char **argv, const NnccModel *model);

#endif
