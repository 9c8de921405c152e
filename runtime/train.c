/*
 * train.c -- the train, eval and grads commands.
 *
 * Every buffer is allocated once in run_open() (parameters, gradients,
 * optimizer state, the 64-byte aligned arena, input/logits/dlogits, labels,
 * the epoch order, the data sets); the step loop allocates nothing.
 *
 * Data parallelism (a model compiled with nncc --ranks N, under mpirun;
 * dist.c): every rank holds the whole state and takes its contiguous slice
 * of each global batch of the same seeded order.  The logits are gathered
 * so that every rank computes the loss of the whole batch as one process
 * does, and keeps its slice of dlogits; batch norm sums its statistics over
 * the ranks inside the kernels; the other gradients are summed over the
 * ranks after backward, in the kernels' tree order.  So every rank takes
 * the same optimizer step, with one process's bits.  Rank 0 alone prints,
 * logs, plots and writes checkpoints; --load is read by rank 0 and sent to
 * the others.  Every decision that ends a run (a failure, a signal, --steps)
 * is agreed by all ranks before any of them acts on it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* --log or --step-log: lines appended with one write() each, so that they
 * never interleave with another writer's (fileio.c: O_APPEND, FIFOs and
 * devices written through). */
typedef struct Log {
  const char *path; /* NULL: no such log */
  int fd;
} Log;

typedef struct Run {
  const NnccModel *m;
  NnccTrainConfig cfg;
  NnccState st;
  NnccProgress prog;
  float *optim;
  int *labels;
  uint32_t *order, *test_order, *val_order;
  NnccData train, test, val; /* val: the end of train's images (--val), not a copy */
  Log log, step_log;
  int log_failed;      /* a log write failed (reported): stop, save, exit 1 */
  NnccCheck chk;       /* the numerics check's finding; chk.node < 0: none */
  double grad_norm;    /* the last step's gradient norm before clipping; < 0: not clipping by norm */
  /* The learning-rate schedule (schedule.c), parsed from cfg.schedule and
   * cfg.warmup; the lr and the epoch it was last computed for. */
  NnccSchedule sched, warm;
  int scheduled;       /* a schedule or a warm-up is set */
  int64_t total_steps; /* onecycle's */
  int sched_epoch;     /* -1: none computed yet */
  double sched_lr, lr_now;
  /* --plot: this process's curves; the step losses in a buffer sized at
   * the start (a point averages `stride` steps when the run is long), the
   * epochs grown at each epoch's end, never inside the step loop */
  PlotRun plot;
  int plot_stride, plot_pending, plot_warned;
  double plot_sum;
  /* Ranks: the global batch (m->batch per rank), this rank's first image
   * in it, the whole batch's logits and their gradient (this rank's own
   * buffers in one process), and the gradient spans summed over the ranks
   * after backward (offset, floats). */
  int B, r0;
  double comm_s;       /* the last epoch's training steps' time talking to the other ranks */
  float *glogits, *gdlogits;
  size_t (*spans)[2];
  int nspans;
  /* Sharded optimizer step (ranks, no clip_grad_norm): each rank updates
   * only the elements [own[i][0], own[i][1]) of the parameter block --
   * its shard of every span, and every parameter outside the spans (batch
   * norm's) -- then the spans' parameters are gathered; the optimizer
   * state outside its own elements is gathered before a save. */
  size_t (*own)[2];
  int nown, sharded;
  float *keep_logits;  /* eval --logits: every test image's logits, by image index */
} Run;

/* The one piece of process state: a signal handler can do nothing but set
 * a flag, here the number of the first SIGINT or SIGTERM.  It is a request
 * to the whole process, so every model training in it honours it. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  if (!interrupted) interrupted = sig;
}

static int check_param(const NnccModel *m, int i) {
  const NnccParam *q = &m->params[i];
  size_t numel = 1;
  if (!q->name || q->rank < 0 || q->rank > 4) {
    rt_error("model %s: parameter %d has no name or a bad rank", m->name, i);
    return -1;
  }
  for (int d = 0; d < q->rank; d++) numel *= (size_t)q->shape[d];
  if (numel != q->numel || q->offset > m->params_floats || q->numel > m->params_floats - q->offset ||
      (q->kind == NNCC_BUFFER_COUNT && q->numel != 1) || strncmp(q->name, "optim.", 6) == 0) {
    rt_error("model %s: parameter %s: numel, offset or name inconsistent", m->name, q->name);
    return -1;
  }
  for (int j = 0; j < i; j++)
    if (strcmp(m->params[j].name, q->name) == 0) {
      rt_error("model %s: parameter %s appears twice", m->name, q->name);
      return -1;
    }
  return 0;
}

int model_check(const NnccModel *m) {
  if (m->abi != NNCC_RT_ABI) {
    rt_error("model %s: built for runtime ABI %d, this runtime is ABI %d", m->name ? m->name : "?",
             m->abi, NNCC_RT_ABI);
    return -1;
  }
  if (m->fp_contract) {
    rt_error("model %s: its C was compiled fusing multiply-adds (-ffp-contract=fast or a GNU "
             "-std), which breaks nncc's same-bits promise; rebuild it with -std=c11 "
             "-ffp-contract=off (pkg-config --cflags nncc-runtime)", m->name ? m->name : "?");
    return -1;
  }
  if (!m->name || m->batch < 1 || m->in_c != 1 || m->pad_top < 0 || m->pad_left < 0 ||
      m->pad_bottom < 0 || m->pad_right < 0 || m->in_h - m->pad_top - m->pad_bottom < 1 ||
      m->in_w - m->pad_left - m->pad_right < 1 || m->classes < 1 ||
      m->classes > NNCC_MAX_CLASSES || m->nparams < 0 || !m->forward || !m->backward ||
      !(m->label_smoothing >= 0.0 && m->label_smoothing <= 1.0)) {
    rt_error("model %s: bad description (batch %d, input %dx%dx%d, padding %d,%d, %d classes, "
             "label smoothing %g)",
             m->name ? m->name : "?", m->batch, m->in_c, m->in_h, m->in_w, m->pad_top,
             m->pad_left, m->classes, m->label_smoothing);
    return -1;
  }
  for (int i = 0; i < m->nparams; i++)
    if (check_param(m, i)) return -1;
  return 0;
}

static int log_open(Log *l, const char *path) {
  if (!path) return 0;
  if ((l->fd = fio_open_append(path)) < 0) {
    rt_error("%s: %s", path, fio_strerror(errno));
    return -1;
  }
  l->path = path;
  return 0;
}

static int log_close(Log *l) {
  if (!l->path) return 0;
  int bad = close(l->fd) != 0;
  if (bad) rt_error("%s: cannot write log: %s", l->path, strerror(errno));
  l->path = NULL;
  return bad ? -1 : 0;
}

/* Returns -1 when a log could not be closed (reported). */
static int run_close(Run *r) {
  free(r->st.params);
  free(r->st.grads);
  free(r->st.arena);
  free(r->st.input);
  free(r->st.logits);
  free(r->st.dlogits);
  free(r->optim);
  free(r->labels);
  free(r->order);
  free(r->test_order);
  free(r->val_order);
  free(r->spans);
  free(r->own);
  if (r->glogits != r->st.logits) free(r->glogits);
  if (r->gdlogits != r->st.dlogits) free(r->gdlogits);
  plot_free(&r->plot);
  idx_free(&r->train);
  idx_free(&r->test);
  return log_close(&r->log) | log_close(&r->step_log);
}

/* All allocations of a command, up front.  want_* select the data sets. */
static int run_open(Run *r, const NnccModel *m, const NnccOptions *o, int want_train, int want_test) {
  memset(r, 0, sizeof *r);
  r->m = m;
  r->cfg = m->defaults;
  r->chk = (NnccCheck){.m = m, .node = -1};
  if (model_check(m) || check_nodes_valid(m) || dist_check_model(m)) return -1;
  size_t in = (size_t)m->batch * (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
  size_t out = (size_t)m->batch * (size_t)m->classes;
  r->B = m->batch * dist_size();
  r->r0 = m->batch * dist_rank();
  NnccState *s = &r->st;
  s->sample0 = r->r0;
  s->rank_sum = dist_size() > 1 ? dist_rank_sum : NULL;
#ifdef _OPENMP
  s->threads = omp_get_max_threads(); /* after --threads */
#else
  s->threads = 1;
#endif
  size_t scratch = m->scratch_bytes ? m->scratch_bytes(s->threads) : 0;
  if (scratch > SIZE_MAX / 2 - m->arena_bytes) {
    rt_error("model %s: the arena and %d threads' kernel scratch do not fit in memory", m->name,
             s->threads);
    return -1;
  }
  if (!(s->params = xcalloc_aligned(m->params_floats * sizeof(float), "parameters")) ||
      !(s->grads = xcalloc_aligned(m->params_floats * sizeof(float), "gradients")) ||
      !(s->arena = xcalloc_aligned(m->arena_bytes + scratch, "activation arena")) ||
      !(s->input = xcalloc_aligned(in * sizeof(float), "input batch")) ||
      !(s->logits = xcalloc_aligned(out * sizeof(float), "logits")) ||
      !(s->dlogits = xcalloc_aligned(out * sizeof(float), "logit gradients")) ||
      !(r->labels = xcalloc_aligned((size_t)r->B * sizeof(int), "labels")))
    return -1;
  r->glogits = s->logits, r->gdlogits = s->dlogits;
  if (dist_size() > 1 &&
      (!(r->glogits = xcalloc_aligned((size_t)r->B * m->classes * sizeof(float), "logits of the batch")) ||
       !(r->gdlogits = xcalloc_aligned((size_t)r->B * m->classes * sizeof(float), "logit gradients of the batch"))))
    return -1;
  if (want_train && (idx_load(&r->train, o->data, "train", m) ||
                     !(r->order = xmalloc((size_t)r->train.n * sizeof *r->order, "epoch order"))))
    return -1;
  if (want_test) {
    if (idx_load(&r->test, o->data, "t10k", m) ||
        !(r->test_order = xmalloc((size_t)r->test.n * sizeof *r->test_order, "test order")))
      return -1;
    batch_order(r->test_order, r->test.n, 0, 0, 0);
  }
  return 0;
}

/* Forward on `count` images of the global batch at `order` (the rest of
 * the batch zeros): this rank's slice into the input, every label of the
 * batch into r->labels, and after forward the whole batch's logits in
 * r->glogits, gathered from the ranks. */
static void forward_batch(Run *r, const NnccData *d, const uint32_t *order, int count,
                          int training, const NnccAugment *aug) {
  const NnccModel *m = r->m;
  int mine = count - r->r0 < 0 ? 0 : count - r->r0 > m->batch ? m->batch : count - r->r0;
  for (int i = 0; i < r->B; i++) r->labels[i] = i < count ? d->labels[order[i]] : 0;
  batch_fill(aug, m, d, order + (mine ? r->r0 : 0), mine, r->st.input, r->labels + r->r0);
  m->forward(&r->st, training);
  dist_allgather(r->st.logits, r->glogits, (size_t)m->batch * (size_t)m->classes * sizeof(float));
}

/* A data set in eval mode (the test set, or --val's images): every image,
 * the last partial batch padded with zeros whose rows are not counted (eval
 * forward is per-sample): mean loss, accuracy, images right; with rep, the
 * per-class report too.  Returns -1 (reported) when the numerics check, if
 * on, found a NaN or Inf. */
static int evaluate_set(Run *r, const NnccData *d, const uint32_t *order, const char *what,
                        double *loss, double *acc, long *correct, NnccReport *rep) {
  const NnccModel *m = r->m;
  double total = 0.0;
  *correct = 0;
  for (int start = 0; start < d->n; start += r->B) {
    int count = d->n - start < r->B ? d->n - start : r->B;
    forward_batch(r, d, order + start, count, 0, NULL);
    char why[600];
    int found = check_describe(&r->chk, why, sizeof why);
    if (found) rt_error("evaluation, %s images %d..%d: %s", what, start + 1, start + count, why);
    if (dist_any(found)) {
      dist_agree_failed();
      return -1;
    }
    total += loss_xent_eval(r->glogits, r->labels, count, m->classes, m->label_smoothing,
                            correct);
    if (rep) report_add(rep, r->glogits, r->labels, order + start, count);
    for (int b = 0; r->keep_logits && d == &r->test && b < count; b++)
      memcpy(r->keep_logits + (size_t)order[start + b] * (size_t)m->classes,
             r->glogits + (size_t)b * (size_t)m->classes, sizeof(float) * (size_t)m->classes);
  }
  *loss = total / d->n;
  *acc = (double)*correct / d->n;
  return 0;
}

static int evaluate(Run *r, double *loss, double *acc, long *correct, NnccReport *rep) {
  return evaluate_set(r, &r->test, r->test_order, "test", loss, acc, correct, rep);
}

/* ---- progress output ---- */

typedef struct Progress {
  int on;            /* a terminal and not --quiet */
  double start, last_draw;
} Progress;

static void progress_draw(Progress *pg, int epoch, int epochs, int done, int total, int batch,
                          double loss, int first_step) {
  double now = rt_now();
  if (!pg->on || (now - pg->last_draw < 0.1 && done < total)) return;
  pg->last_draw = now;
  double secs = now - pg->start, rate = secs > 0 ? (done - first_step) * (double)batch / secs : 0;
  double eta = rate > 0 ? (total - done) * (double)batch / rate : 0;
  int width = 30, fill = total ? (int)((long)width * done / total) : width;
  char bar[32];
  for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
  bar[width] = 0;
  fprintf(stderr, "\repoch %d/%d [%s] %d/%d  %.0f img/s  loss %.4f  ETA %d:%02d ", epoch + 1,
          epochs, bar, done * batch, total * batch, rate, done ? loss / done : 0.0, (int)eta / 60,
          (int)eta % 60);
  fflush(stderr);
}

static void progress_clear(Progress *pg) {
  if (pg->on) fputs("\r\033[K", stderr);
}

/* A log line under construction; a line never comes close to the size. */
typedef struct Line {
  char s[512];
  size_t n;
} Line;

static void line_add(Line *l, const char *fmt, ...) RT_PRINTF(2, 3);
static void line_add(Line *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->s + l->n, sizeof l->s - l->n, fmt, ap);
  va_end(ap);
  if (n > 0) l->n += (size_t)n < sizeof l->s - l->n ? (size_t)n : sizeof l->s - 1 - l->n;
}

static void json_num(Line *l, const char *key, double v, const char *fmt) {
  line_add(l, ",\"%s\":", key);
  if (isfinite(v)) line_add(l, fmt, v);
  else line_add(l, "null");
}

/* A failed write stops training: run_train saves the checkpoint and exits 1. */
static void log_write(Run *r, Log *l, Line *line) {
  if (!l->path || r->log_failed) return;
  line_add(line, "}\n");
  if (fio_write_until(l->fd, line->s, line->n, &interrupted)) {
    if (errno == EINTR) return; /* a signal: the step loop stops and saves */
    rt_error("%s: cannot write log: %s; training stopped", l->path, fio_strerror(errno));
    r->log_failed = 1;
  }
}

/* val: --val's loss and accuracy, or NULL */
static void log_epoch(Run *r, int epoch, double loss, const double *val, double test_loss,
                      double test_acc, double img_s, double secs) {
  Line l = {.n = 0};
  line_add(&l, "{\"epoch\":%d,\"steps\":%llu", epoch + 1, (unsigned long long)r->st.step);
  json_num(&l, "loss", loss, "%.17g");
  if (val) {
    json_num(&l, "val_loss", val[0], "%.17g");
    json_num(&l, "val_acc", val[1], "%.17g");
  }
  json_num(&l, "test_loss", test_loss, "%.17g");
  json_num(&l, "test_acc", test_acc, "%.17g");
  if (r->scheduled) json_num(&l, "lr", r->lr_now, "%.17g"); /* the epoch's (last step's) lr */
  json_num(&l, "img_per_s", img_s, "%.1f");
  json_num(&l, "seconds", secs, "%.3f");
  if (dist_size() > 1) json_num(&l, "comm_s", r->comm_s, "%.3f"); /* rank 0's, within seconds */
  log_write(r, &r->log, &l);
}

/* --step-log: the step just taken (1-based, counting a loaded checkpoint's
 * steps), its epoch (1-based) and its batch loss as the float that grads
 * would write, %.9g so the text reads back to the same float; with
 * clip_grad_norm, the gradients' norm before clipping (what torch's
 * clip_grad_norm_ returns); with a schedule, the step's learning rate. */
static void log_step(Run *r, double loss) {
  Line l = {.n = 0};
  line_add(&l, "{\"step\":%llu,\"epoch\":%d", (unsigned long long)r->st.step, r->prog.epoch + 1);
  json_num(&l, "loss", (float)loss, "%.9g");
  if (r->grad_norm >= 0) json_num(&l, "grad_norm", (float)r->grad_norm, "%.9g");
  if (r->scheduled) json_num(&l, "lr", r->lr_now, "%.17g");
  log_write(r, &r->step_log, &l);
}

/* fn (a sum, a scatter or a gather over the ranks) on each gradient span
 * of a block laid out as the parameters */
static void spans_do(const Run *r, float *block, void (*fn)(float *, size_t)) {
  for (int i = 0; i < r->nspans; i++) fn(block + r->spans[i][0], r->spans[i][1]);
}

/* The optimizer state of every rank's shard to every rank (before a save). */
static void state_gather(Run *r) {
  if (!r->sharded || !r->optim) return;
  int copies = optim_is_adam(r->cfg.optim) ? 2 : r->cfg.momentum != 0.0 ? 1 : 0;
  for (int c = 0; c < copies; c++) spans_do(r, r->optim + (size_t)c * r->m->params_floats, dist_allgather_f);
}

/* Never a checkpoint holding NaN or Inf unless --allow-nonfinite: the
 * last good one stays. */
static int save_here(Run *r, const NnccOptions *o) {
  NnccFound f;
  if (!o->save) return 0;
  if (!o->allow_nonfinite && find_nonfinite_tensor(r->m, &r->cfg, r->st.params, r->optim, 0, &f)) {
    rt_error("%s: not saved: %s holds a non-finite value (%s at index %zu); the last checkpoint is "
             "kept (--allow-nonfinite saves it)", o->save, f.name, nonfinite_name(f.value), f.index);
    return -1;
  }
  return ckpt_save(o->save, r->m, &r->cfg, r->st.params, r->optim, &r->prog);
}

/* Rank 0 writes the checkpoint; every rank learns whether it did. */
static int save(Run *r, const NnccOptions *o) {
  if (o->save) state_gather(r);
  int rc = dist_rank() == 0 ? save_here(r, o) : 0;
  if (dist_all_ok(rc == 0)) return 0;
  dist_agree_failed();
  return -1;
}

/* ckpt_load, and unless --allow-nonfinite the refusal of a checkpoint that
 * holds NaN or Inf, naming the first such tensor. */
static int load_here(Run *r, const NnccOptions *o, float *state) {
  NnccFound f;
  if (ckpt_load(o->load, r->m, &r->cfg, r->st.params, state, &r->prog)) return -1;
  if (o->allow_nonfinite || !find_nonfinite_tensor(r->m, &r->cfg, r->st.params, state, 0, &f)) return 0;
  rt_error("checkpoint %s: %s holds a non-finite value (%s at index %zu); not loaded "
           "(--allow-nonfinite loads it)", o->load, f.name, nonfinite_name(f.value), f.index);
  return -1;
}

/* Rank 0 reads the checkpoint and sends the others everything it set: the
 * parameters, the optimizer state (state_floats of it), the config and the
 * progress. */
static int load(Run *r, const NnccOptions *o, float *state, size_t state_floats) {
  int rc = dist_rank() == 0 ? load_here(r, o, state) : 0;
  if (!dist_all_ok(rc == 0)) {
    dist_agree_failed();
    return -1;
  }
  dist_bcast(r->st.params, r->m->params_floats * sizeof(float));
  if (state) dist_bcast(state, state_floats * sizeof(float));
  dist_bcast(&r->cfg, sizeof r->cfg);
  dist_bcast(&r->prog, sizeof r->prog);
  return 0;
}

/* ---- train ---- */

/* --val N: the last N training images become the validation set (a view,
 * not a copy), which a resumed run keeps: its checkpoint says how many. */
static int hold_out(Run *r, const NnccOptions *o) {
  int n = o->val_given ? o->val : r->prog.val;
  if (o->val_given && r->prog.step > 0 && o->val != r->prog.val) {
    rt_error("checkpoint %s was trained holding out %d training images (--val %d); resume with the same --val",
             o->load, r->prog.val, r->prog.val);
    return -1;
  }
  r->prog.val = n;
  if (n == 0) return 0;
  if (n >= r->train.n) {
    rt_error("%s: --val %d holds out all %d training images", o->data, n, r->train.n);
    return -1;
  }
  size_t pixels = (size_t)r->train.rows * (size_t)r->train.cols;
  r->train.n -= n;
  r->val = r->train;
  r->val.n = n;
  r->val.images = r->train.images + (size_t)r->train.n * pixels;
  r->val.labels = r->train.labels + r->train.n;
  if (!(r->val_order = xmalloc((size_t)n * sizeof *r->val_order, "validation order"))) return -1;
  batch_order(r->val_order, n, 0, 0, 0);
  return 0;
}

/* The gradients summed over the ranks after backward: every trainable
 * parameter's but those its kernels summed already (batch norm's),
 * adjacent ones merged into one span. */
static int grad_spans(Run *r) {
  const NnccModel *m = r->m;
  size_t most = 0;
  if (dist_size() == 1) return 0;
  if (!(r->spans = xmalloc((size_t)(m->nparams + 1) * sizeof *r->spans, "gradient spans"))) return -1;
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (q->kind != NNCC_PARAM || q->synced) continue;
    if (r->nspans && r->spans[r->nspans - 1][0] + r->spans[r->nspans - 1][1] == q->offset)
      r->spans[r->nspans - 1][1] += q->numel;
    else
      r->spans[r->nspans][0] = q->offset, r->spans[r->nspans++][1] = q->numel;
  }
  for (int i = 0; i < r->nspans; i++)
    if (r->spans[i][1] > most) most = r->spans[i][1];
  /* what this rank updates: its shard of each span, and the parameters
   * outside the spans (whole: every rank has their whole gradient) */
  if (!(r->own = xmalloc((size_t)(r->nspans + m->nparams) * sizeof *r->own, "optimizer shards")))
    return -1;
  for (int i = 0; i < r->nspans; i++) {
    size_t lo, hi;
    dist_shard(r->spans[i][1], &lo, &hi);
    r->own[r->nown][0] = r->spans[i][0] + lo, r->own[r->nown++][1] = r->spans[i][0] + hi;
  }
  for (int i = 0; i < m->nparams; i++)
    if (m->params[i].kind == NNCC_PARAM && m->params[i].synced)
      r->own[r->nown][0] = m->params[i].offset,
      r->own[r->nown++][1] = m->params[i].offset + m->params[i].numel;
  return dist_reserve(most * sizeof(float));
}


/* Across ranks: ok on this rank; returns 0 when every rank is ready, else
 * -1, rank 0 saying why if its own part went well. */
static int all_ready(int ok) {
  if (dist_all_ok(ok)) return 0;
  if (ok && dist_rank() == 0) rt_error("stopping: another rank could not start (its message above)");
  dist_agree_failed();
  return -1;
}

/* The same images and labels on every rank, or a refusal: a rank with
 * other files would train another model. */
static int same_data(const NnccData *const *sets, int n) {
  uint64_t h = DIST_FNV0;
  if (dist_size() == 1) return 0;
  for (int i = 0; i < n; i++) {
    const NnccData *d = sets[i];
    size_t pixels = (size_t)d->n * (size_t)d->rows * (size_t)d->cols;
    int dims[3] = {d->n, d->rows, d->cols};
    h = dist_fnv(dist_fnv(dist_fnv(h, dims, sizeof dims), d->labels, (size_t)d->n), d->images, pixels);
  }
  if (!dist_check_same(h, "has other data in --data",
                       "every rank needs the same IDX files (copy them, or share the directory)"))
    return 0;
  dist_agree_failed();
  return -1;
}

static int train_setup(Run *r, const NnccModel *m, const NnccOptions *o) {
  if (all_ready(run_open(r, m, o, 1, 1) == 0 && grad_spans(r) == 0) ||
      same_data((const NnccData *[]){&r->train, &r->test}, 2))
    return -1;
  if (o->load) {
    /* The optimizer kind comes from the file, so allocate for the larger (Adam). */
    NnccTrainConfig adam = r->cfg;
    adam.optim = NNCC_ADAM;
    size_t nstate = optim_state_floats(m, &adam);
    if (all_ready((r->optim = xcalloc_aligned(nstate * sizeof(float), "optimizer state")) != NULL) ||
        load(r, o, r->optim, nstate))
      return -1;
  } else {
    r->cfg.seed = o->seed_given ? o->seed : r->cfg.seed;
    params_init(m, r->st.params, r->cfg.seed);
    if (all_ready((r->optim = xcalloc_aligned(optim_state_floats(m, &r->cfg) * sizeof(float),
                                              "optimizer state")) != NULL))
      return -1;
  }
  if (o->seed_given) r->cfg.seed = o->seed;
  if (o->lr > 0) r->cfg.lr = o->lr;
  if (o->schedule) snprintf(r->cfg.schedule, sizeof r->cfg.schedule, "%s", o->schedule);
  if (o->warmup) snprintf(r->cfg.warmup, sizeof r->cfg.warmup, "%s", o->warmup);
  if (o->clip_grad_norm >= 0) r->cfg.clip_grad_norm = o->clip_grad_norm;
  if (o->clip_grad_value >= 0) r->cfg.clip_grad_value = o->clip_grad_value;
  if (o->epochs_given) r->cfg.epochs = o->epochs;
  r->st.seed = r->cfg.seed;
  r->st.step = r->prog.step;
  /* clipping by norm needs every gradient whole on every rank */
  r->sharded = dist_size() > 1 && !(r->cfg.clip_grad_norm > 0);
  if (hold_out(r, o)) return -1;
  if (r->train.n < r->B) {
    rt_error("%s: training set has %d images%s, fewer than one batch of %d", o->data, r->train.n,
             r->val.n ? " after --val" : "", r->B);
    return -1;
  }
  return all_ready(log_open(&r->log, o->log) == 0 && log_open(&r->step_log, o->step_log) == 0);
}

/* The run's length in steps: --epochs' worth, or --steps if sooner. */
static uint64_t planned_steps(const Run *r, const NnccOptions *o, int per_epoch) {
  uint64_t planned = (uint64_t)r->cfg.epochs * (uint64_t)per_epoch;
  return o->steps && o->steps < planned ? o->steps : planned;
}

/* The learning-rate schedule, checked once the run's length is known:
 * parsed from the config's text, no warm-up before onecycle (it has its
 * own), onecycle's steps within its total_steps (as torch, which raises
 * past them), its momentum cycle on an optimizer that has one. */
static int sched_setup(Run *r, int per_epoch, const NnccOptions *o) {
  char err[256];
  const char *what = o->load ? o->load : r->m->name;
  if (sched_parse(r->cfg.schedule, 0, &r->sched, err, sizeof err) ||
      sched_parse(r->cfg.warmup, 1, &r->warm, err, sizeof err)) {
    rt_error("%s: %s", what, err);
    return -1;
  }
  /* the canonical text, which the checkpoint keeps ("" for none) */
  if (sched_format(&r->sched, r->cfg.schedule, sizeof r->cfg.schedule) ||
      sched_format(&r->warm, r->cfg.warmup, sizeof r->cfg.warmup)) {
    rt_error("%s: the schedule's text is too long", what);
    return -1;
  }
  if (r->sched.kind == NNCC_SCHED_NONE) r->cfg.schedule[0] = '\0';
  if (r->warm.kind == NNCC_SCHED_NONE) r->cfg.warmup[0] = '\0';
  r->scheduled = r->sched.kind != NNCC_SCHED_NONE || r->warm.kind != NNCC_SCHED_NONE;
  r->sched_epoch = -1;
  r->lr_now = r->cfg.lr;
  if (sched_check(&r->sched, &r->warm, r->cfg.optim == NNCC_SGD && !(r->cfg.momentum > 0), err,
                  sizeof err)) {
    rt_error("%s: %s", what, err);
    return -1;
  }
  if (r->sched.kind != NNCC_SCHED_ONECYCLE) return 0;
  uint64_t planned = planned_steps(r, o, per_epoch);
  r->total_steps = r->sched.total_steps ? r->sched.total_steps : (int64_t)r->cfg.epochs * per_epoch;
  if (planned > (uint64_t)r->total_steps + 1) {
    rt_error("%s: onecycle(total_steps=%lld) ends before this run's %llu steps", what,
             (long long)r->total_steps, (unsigned long long)planned);
    return -1;
  }
  return 0;
}

/* The config of this step: the schedule's lr (and onecycle's momentum:
 * Adam's and AdamW's beta1, SGD's momentum) in place of the base ones. */
static void scheduled_config(Run *r, NnccTrainConfig *now) {
  if (r->sched.kind == NNCC_SCHED_ONECYCLE) {
    double m;
    sched_onecycle(&r->sched, r->total_steps, r->st.step, &now->lr, &m);
    if (r->sched.cycle_momentum) *(optim_is_adam(now->optim) ? &now->beta1 : &now->momentum) = m;
  } else {
    if (r->sched_epoch != r->prog.epoch) {
      r->sched_lr = sched_epoch_lr(&r->sched, &r->warm, r->cfg.lr, r->prog.epoch, r->sched_epoch,
                                   r->sched_lr);
      r->sched_epoch = r->prog.epoch;
    }
    now->lr = r->sched_lr;
  }
  r->lr_now = now->lr;
}

/* One optimizer step on batch k of the epoch's order.  Returns -1, the
 * step not taken, when the loss is not finite or the numerics check (if
 * on) found a NaN or Inf: before the optimizer changes anything. */
static int train_step(Run *r, int k, double *loss) {
  const NnccModel *m = r->m;
  NnccAugment aug = {m->augment_crop, m->augment_hflip, r->cfg.seed, r->prog.epoch};
  forward_batch(r, &r->train, r->order + (size_t)k * (size_t)r->B, r->B, 1,
                m->augment_crop || m->augment_hflip ? &aug : NULL);
  /* every rank: the loss of the whole batch, as one process computes it */
  *loss = loss_xent(r->glogits, r->labels, r->B, m->classes, m->label_smoothing, r->gdlogits);
  if (r->gdlogits != r->st.dlogits)
    memcpy(r->st.dlogits, r->gdlogits + (size_t)r->r0 * m->classes,
           (size_t)m->batch * m->classes * sizeof(float));
  /* the numerics check (on for every rank or none) may find a NaN on one */
  if (!isfinite(*loss) || (r->st.check && dist_any(r->chk.node >= 0))) return -1;
  m->backward(&r->st);
  if (r->st.check && dist_any(r->chk.node >= 0)) return -1;
  spans_do(r, r->st.grads, r->sharded ? dist_reduce_scatter_f : dist_sum_f);
  r->grad_norm = optim_clip(m, &r->cfg, r->st.grads);
  const NnccTrainConfig *c = &r->cfg;
  NnccTrainConfig now; /* a copy only under a schedule: the config holds its texts */
  if (r->scheduled) {
    now = r->cfg;
    scheduled_config(r, &now);
    c = &now;
  }
  if (r->sharded) {
    for (int i = 0; i < r->nown; i++)
      optim_step_range(m, c, r->st.params, r->st.grads, r->optim, r->st.step, r->own[i][0],
                       r->own[i][1]);
    spans_do(r, r->st.params, dist_allgather_f);
  } else {
    optim_step(m, c, r->st.params, r->st.grads, r->optim, r->st.step);
  }
  r->st.step++;
  return 0;
}

/* Says in one line why the step failed: a trainable parameter already
 * non-finite (the previous optimizer step made it so), else the first node
 * with a NaN or Inf result, found by running the step's forward pass again
 * with the per-node check unless it was on; else the logits. */
static void numerics_stop(Run *r, const NnccOptions *o, double loss) {
  char head[32] = "", why[700];
  NnccFound f;
  if (!isfinite(loss)) snprintf(head, sizeof head, "loss is %s: ", nonfinite_name(loss));
  if (find_nonfinite_tensor(r->m, &r->cfg, r->st.params, NULL, 1, &f)) {
    snprintf(why, sizeof why, "parameter %s is already non-finite (%s at index %zu); "
             "try a smaller --lr than %g", f.name, nonfinite_name(f.value), f.index, r->cfg.lr);
  } else {
    if (r->chk.node < 0) { /* the same batch and state: the same values, now checked */
      check_start(&r->chk, &r->st, r->m);
      r->m->forward(&r->st, 1);
      check_stop(&r->st);
    }
    if (!check_describe(&r->chk, why, sizeof why)) snprintf(why, sizeof why, "the logits are non-finite");
  }
  if (dist_rank() == 0 || r->chk.node >= 0)
    rt_error("step %llu: %s%s; training stopped%s", (unsigned long long)r->st.step + 1, head, why,
             o->save ? ", last checkpoint kept" : "");
  dist_agree_failed(); /* the loss and the checks' verdict are every rank's */
}

/* --plot: room for this run's step losses, at most PLOT_POINTS points. */
enum { PLOT_POINTS = 1 << 20 };
static int plot_setup(Run *r, const NnccOptions *o, int per_epoch) {
  if (!o->plot) return 0;
  uint64_t planned = planned_steps(r, o, per_epoch);
  planned = planned > r->prog.step ? planned - r->prog.step : 1;
  r->plot_stride = (int)((planned + PLOT_POINTS - 1) / PLOT_POINTS);
  r->plot.step_cap = (int)((planned + (uint64_t)r->plot_stride - 1) / (uint64_t)r->plot_stride);
  r->plot.label = r->m->name;
  if (!(r->plot.step = xmalloc((size_t)r->plot.step_cap * sizeof *r->plot.step, "plot points")) ||
      !(r->plot.step_loss = xmalloc((size_t)r->plot.step_cap * sizeof *r->plot.step_loss, "plot points")))
    return -1;
  return 0;
}

static void plot_step(Run *r, double loss) {
  if (!r->plot.step) return;
  r->plot_sum += loss;
  /* the room was sized for the run before its first step: nothing grows here */
  if (++r->plot_pending < r->plot_stride || r->plot.nsteps == r->plot.step_cap) return;
  plot_add_step(&r->plot, (double)r->st.step, r->plot_sum / r->plot_pending);
  r->plot_sum = 0, r->plot_pending = 0;
}

/* After each epoch: the epoch's point, then the picture.  A failed drawing
 * says so once and training goes on: the run matters more than its plot. */
static void plot_epoch(Run *r, const NnccOptions *o, double loss, const double *val,
                       double test_loss, double test_acc) {
  if (!r->plot.step ||
      plot_add_epoch(&r->plot, (PlotEpoch){r->prog.epoch + 1, loss, test_loss, test_acc,
                                           val ? val[0] : NAN, val ? val[1] : NAN}))
    return;
  char err[600];
  if (plot_png(o->plot, &r->plot, 1, err, sizeof err) && !r->plot_warned) {
    fprintf(stderr, "nncc: --plot: %s; training goes on\n", err);
    r->plot_warned = 1;
  }
}

/* Runs the rest of one epoch; returns 1 when it completed, 0 when stopped
 * early (--steps or a signal), with the progress updated either way, -1
 * when a step failed (reported). */
static int train_epoch(Run *r, const NnccOptions *o, int per_epoch, double *secs, int *ran) {
  Progress pg = {isatty(STDERR_FILENO) && !o->quiet, rt_now(), 0};
  int first = r->prog.epoch_step;
  double comm0 = dist_comm_seconds();
  batch_order(r->order, r->train.n, r->cfg.seed, r->prog.epoch, o->shuffle);
  for (int k = first; k < per_epoch; k++) {
    if (dist_size() > 1) { /* a signal to any rank, or rank 0's failed log, stops them all */
      int f = dist_any((int)interrupted | r->log_failed << 8);
      if (f & 0xff) interrupted = f & 0xff;
      r->log_failed = f >> 8;
      if (f) dist_agree_failed();
    }
    if (interrupted || r->log_failed || (o->steps && r->st.step >= o->steps)) break;
    double loss;
    if (train_step(r, k, &loss)) {
      progress_clear(&pg);
      numerics_stop(r, o, loss);
      return -1;
    }
    r->prog.epoch_loss += loss;
    log_step(r, loss);
    plot_step(r, loss);
    r->prog.epoch_step = k + 1;
    r->prog.step = r->st.step;
    progress_draw(&pg, r->prog.epoch, r->cfg.epochs, k + 1, per_epoch, r->B,
                  r->prog.epoch_loss, first);
  }
  progress_clear(&pg);
  *secs = rt_now() - pg.start;
  r->comm_s = dist_comm_seconds() - comm0;
  *ran = r->prog.epoch_step - first;
  return r->prog.epoch_step == per_epoch;
}

/* secs and ran cover this process's part of the epoch (all of it unless resumed). */
static int epoch_done(Run *r, const NnccOptions *o, int per_epoch, double secs, int ran) {
  double test_loss, test_acc, loss = r->prog.epoch_loss / per_epoch, val[2] = {0, 0};
  long correct;
  double img_s = secs > 0 ? (double)ran * r->B / secs : 0;
  if ((r->val.n && evaluate_set(r, &r->val, r->val_order, "validation", &val[0], &val[1], &correct, NULL)) ||
      evaluate(r, &test_loss, &test_acc, &correct, NULL))
    return -1;
  if (!o->quiet) {
    char vtext[64] = "";
    if (r->val.n) snprintf(vtext, sizeof vtext, "  val_loss %.6f  val_acc %.4f", val[0], val[1]);
    printf("epoch %d/%d  loss %.6f%s  test_loss %.6f  test_acc %.4f  %.0f img/s  %.2f s\n",
           r->prog.epoch + 1, r->cfg.epochs, loss, vtext, test_loss, test_acc, img_s, secs);
  }
  fflush(stdout);
  log_epoch(r, r->prog.epoch, loss, r->val.n ? val : NULL, test_loss, test_acc, img_s, secs);
  plot_epoch(r, o, loss, r->val.n ? val : NULL, test_loss, test_acc);
  r->prog.epoch++;
  r->prog.epoch_step = 0;
  r->prog.epoch_loss = 0.0;
  return 0;
}

int run_train(const NnccModel *m, const NnccOptions *o) {
  Run r;
  struct sigaction sa, old_int, old_term;
  int rc = 1;
  NnccOptions others = *o; /* ranks but 0: no output but the checkpoint's agreement */
  if (dist_rank() > 0) {
    others.log = others.step_log = others.plot = NULL;
    others.quiet = 1;
    o = &others;
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  /* No SA_RESTART: a signal ends a log write blocked on a stalled reader;
   * the save's writes retry (fio_write_all).  Each signal blocks the other
   * while its handler runs, so the first one decides the exit status. */
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  if (train_setup(&r, m, o)) goto out;
  int per_epoch = r.train.n / r.B; /* drop_last */
  if (r.prog.epoch_step > per_epoch) {
    rt_error("checkpoint %s: epoch_step %d is beyond the %d batches of an epoch (%d images in %s, batch %d)",
             o->load ? o->load : "", r.prog.epoch_step, per_epoch, r.train.n, o->data, r.B);
    goto out;
  }
  if (sched_setup(&r, per_epoch, o) || plot_setup(&r, o, per_epoch)) goto out;
  if (r.prog.epoch >= r.cfg.epochs && !o->quiet)
    printf("nothing to do: the checkpoint finished epoch %d of --epochs %d\n", r.prog.epoch, r.cfg.epochs);
  if (o->check_numerics) check_start(&r.chk, &r.st, m);
  interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  while (r.prog.epoch < r.cfg.epochs && !r.log_failed) {
    double secs;
    int ran, done = train_epoch(&r, o, per_epoch, &secs, &ran);
    if (done < 0) goto restore;
    if (!done) break;
    if (epoch_done(&r, o, per_epoch, secs, ran) || save(&r, o)) goto restore;
  }
  if (interrupted) { /* 130 for SIGINT, 143 for SIGTERM, as if killed by it */
    int sig = interrupted;
    rc = save(&r, o) ? 1 : 128 + sig;
    if (!o->quiet) fprintf(stderr, "nncc: interrupted at step %llu%s\n",
                           (unsigned long long)r.st.step, o->save && rc != 1 ? ", checkpoint saved" : "");
    goto restore;
  }
  if (r.prog.epoch < r.cfg.epochs) { /* stopped by --steps inside an epoch */
    if (save(&r, o)) goto restore;
    if (!o->quiet)
      printf("stopped at step %llu (epoch %d, batch %d of %d)  loss %.6f\n",
             (unsigned long long)r.st.step, r.prog.epoch + 1, r.prog.epoch_step, per_epoch,
             r.prog.epoch_step ? r.prog.epoch_loss / r.prog.epoch_step : 0.0);
  }
  rc = r.log_failed; /* stopped by a log that failed, checkpoint saved */
restore:
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
out:
  if (run_close(&r) && rc == 0) rc = 1;
  return rc;
}

/* ---- eval, grads ---- */

int run_eval(const NnccModel *m, const NnccOptions *o) {
  Run r;
  NnccReport rep = {0};
  int rc = 1;
  NnccOptions others = *o; /* ranks but 0 evaluate their share quietly */
  if (dist_rank() > 0) {
    others.report = 0, others.report_json = NULL;
    o = &others;
  }
  if (all_ready(run_open(&r, m, o, 0, 1) == 0) || same_data((const NnccData *[]){&r.test}, 1) ||
      load(&r, o, NULL, 0))
    goto out;
  r.st.seed = r.cfg.seed;
  r.st.step = r.prog.step;
  double loss, acc;
  long correct;
  if (o->check_numerics) check_start(&r.chk, &r.st, m);
  if (o->logits_out &&
      !(r.keep_logits = xmalloc(sizeof(float) * (size_t)r.test.n * (size_t)m->classes, "the logits")))
    goto out;
  if ((o->report && report_init(&rep, m->classes)) ||
      evaluate(&r, &loss, &acc, &correct, o->report ? &rep : NULL))
    goto out;
  NnccTensor lt = {"logits", 2, {r.test.n, m->classes}, r.keep_logits};
  if (o->logits_out && dist_rank() == 0 && ckpt_write_tensors(o->logits_out, &lt, 1)) goto out;
  if (dist_rank() == 0) printf("test_loss %.6f  test_acc %.4f  (%ld/%d)\n", loss, acc, correct, r.test.n);
  if (o->report) report_print(&rep, stdout);
  if (o->report_json && report_write_json(&rep, o->report_json, loss, acc, correct, r.test.n)) goto out;
  rc = 0;
out:
  free(r.keep_logits);
  report_free(&rep);
  run_close(&r);
  return rc;
}

/* ---- predict ---- */

/* The images of one input: a PNG or PGM made 28x28, or every image of an
 * IDX3 file (*idx set).  -1 after a message. */
static int predict_input(const NnccModel *m, const NnccOptions *o, const char *path, NnccData *d,
                         int *idx) {
  *idx = 0;
  NnccImage img;
  int rc = image_load(path, &img);
  if (rc == -1) return -1;
  if (rc == 0) {
    memset(d, 0, sizeof *d);
    d->n = 1;
    d->rows = m->in_h - m->pad_top - m->pad_bottom; /* the image inside the padding */
    d->cols = m->in_w - m->pad_left - m->pad_right;
    d->images = malloc((size_t)d->rows * (size_t)d->cols);
    d->labels = calloc(1, 1);
    if (!d->images || !d->labels) {
      image_free(&img);
      idx_free(d);
      rt_error("%s: out of memory", path);
      return -1;
    }
    image_fit(&img, o->invert, d->rows, d->cols, d->images);
    image_free(&img);
    return 0;
  }
  /* neither PNG nor PGM: an IDX3 image file, raw or gzipped, or nothing */
  if (!idx_is_images(path)) {
    rt_error("%s: neither a PNG, a PGM nor an IDX3 image file", path);
    return -1;
  }
  *idx = 1;
  return idx_load_images(d, path, m);
}

/* Softmax (in double, loss_lse) of each row of logits, and the top K classes,
 * the most probable first (the lower class among equals). */
static void print_top(const NnccModel *m, const float *x, int k, const char *name, int index) {
  double p[256], lse = loss_lse(x, m->classes);
  int C = m->classes, order[256];
  for (int c = 0; c < C; c++) p[c] = exp((double)x[c] - lse), order[c] = c;
  if (k > C) k = C;
  for (int i = 0; i < k; i++) /* partial selection sort: stable for equal p */
    for (int j = i + 1; j < C; j++)
      if (p[order[j]] > p[order[i]] || (p[order[j]] == p[order[i]] && order[j] < order[i])) {
        int t = order[i];
        order[i] = order[j], order[j] = t;
      }
  if (index >= 0) printf("%s[%d]:", name, index);
  else printf("%s:", name);
  for (int i = 0; i < k; i++) printf("  %d %.4f", order[i], p[order[i]]);
  printf("\n");
}

int run_predict(const NnccModel *m, const NnccOptions *o) {
  Run r;
  NnccData d = {0};
  uint32_t *order = NULL;
  int rc = 1;
  if (all_ready(run_open(&r, m, o, 0, 0) == 0)) goto out;
  if (dist_rank() > 0) { /* eval mode sums nothing over ranks: rank 0 predicts alone */
    rc = 0;
    goto out;
  }
  if (load_here(&r, o, NULL)) goto out;
  r.st.seed = r.cfg.seed;
  r.st.step = r.prog.step;
  for (int i = 0; i < o->ninputs; i++) {
    int idx;
    if (predict_input(m, o, o->inputs[i], &d, &idx)) goto out;
    free(order);
    if (!(order = xmalloc((size_t)d.n * sizeof *order + 1, "image order"))) goto out;
    batch_order(order, d.n, 0, 0, 0);
    for (int start = 0; start < d.n; start += m->batch) {
      int count = d.n - start < m->batch ? d.n - start : m->batch;
      batch_fill(NULL, m, &d, order + start, count, r.st.input, r.labels);
      m->forward(&r.st, 0);
      for (int b = 0; b < count; b++)
        print_top(m, r.st.logits + (size_t)b * (size_t)m->classes, o->top, o->inputs[i],
                  idx ? start + b : -1);
    }
    idx_free(&d);
  }
  if (fflush(stdout) != 0) {
    rt_error("standard output: %s", strerror(errno));
    goto out;
  }
  rc = 0;
out:
  free(order);
  idx_free(&d);
  run_close(&r);
  return rc;
}

/* Forward (training mode), loss and backward on the first training batch in
 * file order: the data a PyTorch reference needs to compare gradients. */
int run_grads(const NnccModel *m, const NnccOptions *o) {
  Run r;
  NnccTensor *t = NULL;
  int rc = 1, n = 0;
  if (all_ready(run_open(&r, m, o, 1, 0) == 0 && grad_spans(&r) == 0) ||
      same_data((const NnccData *[]){&r.train}, 1) || load(&r, o, NULL, 0))
    goto out;
  if (r.train.n < r.B) {
    rt_error("%s: training set has %d images, fewer than one batch of %d", o->data, r.train.n, r.B);
    goto out;
  }
  r.st.seed = r.cfg.seed;
  r.st.step = r.prog.step;
  batch_order(r.order, r.train.n, 0, 0, 0);
  forward_batch(&r, &r.train, r.order, r.B, 1, NULL); /* no augmentation */
  float loss = (float)loss_xent(r.glogits, r.labels, r.B, m->classes, m->label_smoothing,
                                r.gdlogits);
  if (r.gdlogits != r.st.dlogits)
    memcpy(r.st.dlogits, r.gdlogits + (size_t)r.r0 * m->classes,
           (size_t)m->batch * m->classes * sizeof(float));
  m->backward(&r.st);
  spans_do(&r, r.st.grads, dist_sum_f);
  if (dist_rank() > 0) { /* rank 0 writes them */
    rc = 0;
    goto out;
  }
  if (!(t = xmalloc((size_t)(m->nparams + 2) * sizeof *t, "gradient list"))) goto out;
  t[n++] = (NnccTensor){"loss", 0, {0}, &loss};
  t[n++] = (NnccTensor){"logits", 2, {r.B, m->classes}, r.glogits};
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *q = &m->params[i];
    if (q->kind != NNCC_PARAM) continue;
    t[n] = (NnccTensor){q->name, q->rank, {0}, r.st.grads + q->offset};
    memcpy(t[n++].shape, q->shape, sizeof q->shape);
  }
  if (ckpt_write_tensors(o->out, t, n)) goto out;
  if (!o->quiet) printf("loss %.6f, wrote %s\n", (double)loss, o->out);
  rc = 0;
out:
  free(t);
  run_close(&r);
  return rc;
}
