/*
 * rt.h -- internals of the nncc runtime, shared between its files and its
 * tests.  Generated code includes only nncc_rt.h.
 *
 * Error convention: a function that can fail on user input (a file, a flag)
 * prints one line "nncc: WHAT: problem" to stderr through rt_error() and
 * returns -1 (or NULL); the caller unwinds and nncc_main() turns it into a
 * non-zero exit status.  Nothing below exits or aborts on bad input.
 */
#ifndef NNCC_RT_INTERNAL_H
#define NNCC_RT_INTERNAL_H

#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include "fileio.h"
#include "nncc_rt.h"
#include "plot.h"
#include "schedule.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the nncc runtime writes IDX/safetensors data assuming a little-endian host"
#endif

#if defined(__GNUC__)
#define RT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RT_PRINTF(f, a)
#endif

/* ---- util.c ---- */
void rt_error(const char *fmt, ...) RT_PRINTF(1, 2);

/* ---- dist.c: the ranks (one process, or MPI with -DNNCC_MPI) ---- */
/* Start-up: MPI_Init and the check that the launch fits the model (ranks). */
int dist_init(int *argc, char ***argv, const NnccModel *m);
/* The end: MPI_Finalize, or with rc != 0 on this rank alone, the whole
 * job down (the others may be waiting on it). */
void dist_finish(int rc);
void dist_agree_failed(void);          /* every rank knows the run failed (a collective verdict) */
noreturn void dist_abort(int rc);      /* the whole job down, now */
int dist_rank(void);
int dist_size(void);
int dist_reserve(size_t bytes);        /* room for sums of that size, before the steps */
void dist_sum_f(float *v, size_t n);   /* over the ranks, pairwise tree order, result on all */
/* dist_sum_f in two halves: after the reduce-scatter this rank's shard of
 * v (dist_shard: [lo, hi), all of v for small vectors) holds the sum; the
 * allgather then sends every rank's shard to all. */
void dist_reduce_scatter_f(float *v, size_t n);
void dist_allgather_f(float *v, size_t n);
void dist_shard(size_t n, size_t *lo, size_t *hi);
void dist_sum_d(double *v, size_t n);
void dist_rank_sum(void *ctx, double *v, size_t n); /* nncc_rank_sum_fn */
int dist_all_ok(int ok);               /* 1 iff ok on every rank */
int dist_any(int flag);                /* the largest flag of any rank */
void dist_bcast(void *p, size_t bytes);/* rank 0's bytes to every rank */
/* rank r's `bytes` at all + r*bytes on every rank */
void dist_allgather(const void *mine, void *all, size_t bytes);
int dist_check_model(const NnccModel *m); /* -1 (reported) when ranks run different trainers */
double dist_comm_seconds(void);        /* time spent talking to the other ranks so far */
/* -1 (rank 0 says "rank R WHAT than rank 0 (hash differs); HINT") unless
 * h is every rank's */
int dist_check_same(uint64_t h, const char *what, const char *hint);
#define DIST_FNV0 1469598103934665603ull /* FNV-1a, 64 bits: start, then dist_fnv */
uint64_t dist_fnv(uint64_t h, const void *p, size_t n);
void *xmalloc(size_t n, const char *what);
void *xcalloc_aligned(size_t n, const char *what); /* 64-byte aligned, zeroed */
/* Formats into a fixed buffer; fails (returns -1 with an error) if it does not fit. */
int rt_path(char *buf, size_t cap, const char *dir, const char *name);
double rt_now(void); /* monotonic seconds */
/* A growable string (malloc'd p, len bytes, NUL-terminated); once an
 * allocation fails, `failed` is set and later appends do nothing. */
typedef struct RtBuf {
  char *p;
  size_t len, cap;
  int failed;
} RtBuf;
void rt_buf_printf(RtBuf *b, const char *fmt, ...) RT_PRINTF(2, 3);

/* ---- rng.c: splitmix64, the runtime's only random source ---- */
typedef struct NnccRng { uint64_t s; } NnccRng;
/* Independent stream `stream` of seed (0: parameter init, 1+epoch: shuffles). */
NnccRng rng_stream(uint64_t seed, uint64_t stream);
uint64_t rng_next(NnccRng *r);
uint64_t rng_below(NnccRng *r, uint64_t n); /* unbiased in [0, n) */
float rng_uniform(NnccRng *r, float bound);  /* in [-bound, bound) */
#define RNG_STREAM_INIT 0
#define RNG_STREAM_SHUFFLE(epoch) (1 + (uint64_t)(epoch))
/* Augmentation: one stream per (epoch, image), apart from the above. */
#define RNG_STREAM_AUGMENT(epoch, index) ((1ull << 63) | ((uint64_t)(epoch) << 32) | (uint64_t)(index))

/* ---- idx.c: MNIST IDX files, raw or gzip ---- */
typedef struct NnccData {
  int n;                 /* number of images (== labels) */
  int rows, cols;        /* per image, 28x28 for MNIST */
  unsigned char *images; /* n * rows * cols */
  unsigned char *labels; /* n */
} NnccData;
/* Loads "train" or "t10k" from dir, checking it against the model's input. */
int idx_load(NnccData *d, const char *dir, const char *split, const NnccModel *m);
void idx_free(NnccData *d);
/* 1 when path starts like an IDX3 image file, raw or gzipped. */
int idx_is_images(const char *path);
/* One IDX3 image file (raw or gzipped) for predict, labels all 0. */
int idx_load_images(NnccData *d, const char *path, const NnccModel *m);

/* ---- image.c: PNG (libpng) and PGM images for predict ---- */
typedef struct NnccImage {
  int w, h;
  unsigned char *pixels; /* w*h 8-bit grey */
} NnccImage;
/* 0; -1 after a message; -2 (no message) when the file is neither a PNG
 * nor a PGM. */
int image_load(const char *path, NnccImage *img);
/* rows x cols bytes by area averaging; invert: 1, 0, or -1 for automatic
 * (a light border means dark on light, inverted to MNIST's light on dark). */
void image_fit(const NnccImage *img, int invert, int rows, int cols, unsigned char *out);
void image_free(NnccImage *img);

/* ---- batch.c ---- */
/* order[0..n) = 0..n-1, shuffled with stream RNG_STREAM_SHUFFLE(epoch) unless !shuffle. */
void batch_order(uint32_t *order, int n, uint64_t seed, int epoch, int shuffle);
/* Fills input[batch, 1, in_h, in_w] and labels[batch] from images order[0..count);
 * rows count..batch are zeros (label 0). */
/* The augmentation of one epoch's training batches (NULL: none). */
typedef struct NnccAugment {
  int crop, hflip; /* the model's augment_crop, augment_hflip */
  uint64_t seed;
  int epoch;
} NnccAugment;
/* What happens to image `index`: shifted by (dy, dx) in [-crop, crop]
 * (output (y, x) reads input (y + dy, x + dx)), then mirrored if flip. */
void batch_augment_draw(const NnccAugment *aug, uint32_t index, int *dy, int *dx, int *flip);
void batch_fill(const NnccAugment *aug, const NnccModel *m, const NnccData *d, const uint32_t *order, int count,
                float *input, int *labels);
void params_init(const NnccModel *m, float *params, uint64_t seed);

/* ---- loss.c: softmax cross-entropy ---- */
/* Mean loss over the batch (nn.CrossEntropyLoss(label_smoothing=e));
 * dlogits = (softmax - ((1-e)*onehot + e/classes)) / batch. */
double loss_xent(const float *logits, const int *labels, int batch, int classes, double e,
                 float *dlogits);
/* Eval: over the first n rows only, returns the summed loss (smoothed by e
 * like the training loss); *correct += argmax hits. */
/* log(sum(exp(x))) of one row of logits, in double and stable: the
 * softmax probability of class c is exp(x[c] - lse). */
double loss_lse(const float *x, int classes);
/* The prediction: the row's first largest logit, as torch.argmax on CPU. */
int loss_argmax(const float *x, int classes);
double loss_xent_eval(const float *logits, const int *labels, int n, int classes, double e,
                      long *correct);

/* ---- optim.c: torch.optim.Adam / AdamW / SGD (PyTorch 1.13, single-tensor) ---- */
/* Adam and AdamW keep the same state. */
static inline int optim_is_adam(NnccOptim o) { return o == NNCC_ADAM || o == NNCC_ADAMW; }
/* Floats of optimizer state the config needs (Adam, AdamW: 2 per param
 * float, SGD with momentum: 1, plain SGD: 0). */
size_t optim_state_floats(const NnccModel *m, const NnccTrainConfig *c);
/* torch.nn.utils.clip_grad_value_ then clip_grad_norm_ over every
 * NNCC_PARAM's gradient, as the config asks (nothing when neither is set).
 * Returns the total 2-norm before clipping (a float, as torch returns it),
 * or -1 when clip_grad_norm is off. */
double optim_clip(const NnccModel *m, const NnccTrainConfig *c, float *grads);
/* One step on every NNCC_PARAM; step = steps taken before this one. */
/* optim_step on the elements [lo, hi) of the parameter block alone (the
 * update is elementwise: the same bits) */
void optim_step_range(const NnccModel *m, const NnccTrainConfig *c, float *params,
                      const float *grads, float *state, uint64_t step, size_t lo, size_t hi);
void optim_step(const NnccModel *m, const NnccTrainConfig *c, float *params,
                const float *grads, float *state, uint64_t step);

/* ---- report.c: eval --report ---- */
enum { NNCC_REPORT_WRONG = 10 }; /* the most confident mistakes listed */
typedef struct NnccReport {
  int classes;
  long *confusion; /* [true class][predicted class] */
  int nwrong;
  struct {
    int index, label, pred; /* test image (0-based), its class, the prediction */
    double p;               /* the prediction's softmax probability */
  } wrong[NNCC_REPORT_WRONG];
} NnccReport;
int report_init(NnccReport *r, int classes); /* -1 after a message */
void report_free(NnccReport *r);
/* n rows of logits with their labels and test image indices */
void report_add(NnccReport *r, const float *logits, const int *labels, const uint32_t *index, int n);
void report_print(const NnccReport *r, FILE *f);
/* The report and the totals as JSON, written atomically; -1 after a message. */
int report_write_json(const NnccReport *r, const char *path, double loss, double acc, long correct,
                      int images);

/* ---- cli.c ---- */
/* The one rule for every number a run takes from a flag (--KEY) or from
 * checkpoint metadata (KEY): parses all of text and checks its range.
 * Returns NULL and stores the value, or what the value must be ("a positive
 * number") for the caller's message; an unknown key is an internal error. */
const char *setting_real(const char *key, const char *text, double *out);
const char *setting_uint(const char *key, const char *text, uint64_t *out);

/* ---- json.c: the strict JSON subset of a safetensors header ---- */
typedef enum { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_INT } JsonKind;
typedef struct JsonValue {
  JsonKind kind;
  int count;                 /* object/array members */
  struct JsonValue *items;   /* object/array members */
  char **keys;               /* object: member names */
  char *str;                 /* string value (UTF-8, NUL-terminated) */
  int64_t num;               /* non-negative integer */
} JsonValue;
/* Parses text[0..len): objects, arrays, strings, non-negative integers.
 * On failure writes a reason with its byte offset into err and returns NULL. */
JsonValue *json_parse(const char *text, size_t len, char *err, size_t errcap);
void json_free(JsonValue *v);
const JsonValue *json_get(const JsonValue *obj, const char *key);

/* ---- ckpt.c: safetensors checkpoints ---- */
/* Where training stands, stored as checkpoint metadata. */
typedef struct NnccProgress {
  uint64_t step;       /* optimizer steps taken */
  int epoch;           /* epoch in progress (0-based) */
  int epoch_step;      /* batches of that epoch already done */
  double epoch_loss;   /* sum of their losses */
  int has_optim;       /* the file carried optimizer state */
  int val;             /* the last `val` training images are held out (--val) */
} NnccProgress;
/* Writes params (+ optimizer state if state != NULL) atomically to path. */
int ckpt_save(const char *path, const NnccModel *m, const NnccTrainConfig *c,
              const float *params, const float *state, const NnccProgress *p);
/* Writes the model's tensors alone (parameters and buffers, no optimizer
 * state, no metadata but "format": a PyTorch state_dict's content), as
 * `nncc import --weights` does; a trainer's --load starts from them at step 0. */
int ckpt_save_weights(const char *path, const NnccModel *m, const float *params);
/* Reads params; with state != NULL also the optimizer state, progress and
 * config (c is updated from the metadata, so a resume continues with the
 * same hyperparameters).  Validates everything against the model. */
int ckpt_load(const char *path, const NnccModel *m, NnccTrainConfig *c,
              float *params, float *state, NnccProgress *p);
/* A named tensor for ckpt_write_tensors (the grads command's output). */
typedef struct NnccTensor {
  const char *name;
  int rank;
  int64_t shape[4];
  const float *data;
} NnccTensor;
int ckpt_write_tensors(const char *path, const NnccTensor *t, int n);

/* ---- numerics.c: NaN and Inf ---- */
/* The index of the first NaN or Inf in x[0..n), or n when all are finite. */
size_t first_nonfinite(const float *x, size_t n);
const char *nonfinite_name(double v); /* "nan", "inf", "-inf" */
/* Checks a model's node table against its buffers. */
int check_nodes_valid(const NnccModel *m);
/* The per-node check: check_start() sets s->check, so that every forward
 * and backward pass after it checks each node's results until check_stop();
 * the first non-finite one is recorded here (node < 0: none yet). */
typedef struct NnccCheck {
  const NnccModel *m;
  int node, pass;       /* the node table's row; NNCC_FORWARD or NNCC_BACKWARD */
  const char *what;     /* NULL: the node's output; else the parameter or input it was in */
  size_t index;
  float value;
} NnccCheck;
void check_start(NnccCheck *c, NnccState *s, const NnccModel *m);
void check_stop(NnccState *s);
/* "first non-finite value (nan) in the forward output of conv2 (f.nn:7:10)";
 * returns 0 (and writes nothing) when the check found nothing. */
int check_describe(const NnccCheck *c, char *buf, size_t cap);
/* The first parameter or buffer (params_only: trainable parameter), then
 * optimizer state tensor (state != NULL) that holds a NaN or Inf, named as
 * in a checkpoint; returns 0 when all are finite. */
typedef struct NnccFound {
  char name[320];
  size_t index;
  float value;
} NnccFound;
int find_nonfinite_tensor(const NnccModel *m, const NnccTrainConfig *c, const float *params,
                          const float *state, int params_only, NnccFound *f);

/* ---- train.c ---- */
typedef struct NnccOptions {
  const char *data, *load, *save, *log, *out;
  const char *step_log; /* --step-log: one JSON line per optimizer step */
  int epochs, threads, shuffle, quiet;
  int check_numerics;  /* --check-numerics: the per-node check on every pass */
  int allow_nonfinite; /* --allow-nonfinite: load and save checkpoints holding NaN/Inf */
  uint64_t steps;      /* 0: no limit */
  double lr;           /* < 0: not given */
  double clip_grad_norm, clip_grad_value; /* < 0: not given; 0: off */
  const char *schedule, *warmup;          /* --schedule, --warmup text; NULL: not given */
  int report;                             /* eval --report (or --report-json) */
  int val, val_given;                     /* train --val N */
  const char *plot;                       /* train --plot F.png */
  int top, invert;                        /* predict --top K, --invert (-1: auto) */
  const char **inputs;                    /* predict's images */
  int ninputs;
  const char *report_json;                /* eval --report-json F */
  const char *logits_out;                 /* eval --logits F: every test image's logits */
  uint64_t seed;
  int seed_given, epochs_given;
} NnccOptions;
int run_train(const NnccModel *m, const NnccOptions *o);
int run_eval(const NnccModel *m, const NnccOptions *o);
int run_grads(const NnccModel *m, const NnccOptions *o);
int run_predict(const NnccModel *m, const NnccOptions *o);
/* Checks the model description itself (offsets, shapes, sizes). */
int model_check(const NnccModel *m);

#endif
