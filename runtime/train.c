/*
 * train.c -- the train, eval and grads commands.
 *
 * Every buffer is allocated once in run_open() (parameters, gradients,
 * optimizer state, the 64-byte aligned arena, input/logits/dlogits, labels,
 * the epoch order, the data sets); the step loop allocates nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

typedef struct Run {
  const NnccModel *m;
  NnccTrainConfig cfg;
  NnccState st;
  NnccProgress prog;
  float *optim;
  int *labels;
  uint32_t *order, *test_order;
  NnccData train, test;
  FILE *log, *step_log;
} Run;

/* The one piece of process state: a signal handler can do nothing but set
 * a flag.  An interrupt is a request to the whole process, so every model
 * training in it honours it. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
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
  if (!m->name || m->batch < 1 || m->in_c != 1 || m->pad_top < 0 || m->pad_left < 0 ||
      m->in_h - 2 * m->pad_top < 1 || m->in_w - 2 * m->pad_left < 1 || m->classes < 1 ||
      m->classes > 256 || m->nparams < 0 || !m->forward || !m->backward) {
    rt_error("model %s: bad description (batch %d, input %dx%dx%d, padding %d,%d, %d classes)",
             m->name ? m->name : "?", m->batch, m->in_c, m->in_h, m->in_w, m->pad_top,
             m->pad_left, m->classes);
    return -1;
  }
  for (int i = 0; i < m->nparams; i++)
    if (check_param(m, i)) return -1;
  return 0;
}

static void run_close(Run *r) {
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
  idx_free(&r->train);
  idx_free(&r->test);
  if (r->log) fclose(r->log);
  if (r->step_log) fclose(r->step_log);
}

/* All allocations of a command, up front.  want_* select the data sets. */
static int run_open(Run *r, const NnccModel *m, const NnccOptions *o, int want_train, int want_test) {
  memset(r, 0, sizeof *r);
  r->m = m;
  r->cfg = m->defaults;
  if (model_check(m)) return -1;
  size_t in = (size_t)m->batch * (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
  size_t out = (size_t)m->batch * (size_t)m->classes;
  NnccState *s = &r->st;
  if (!(s->params = xcalloc_aligned(m->params_floats * sizeof(float), "parameters")) ||
      !(s->grads = xcalloc_aligned(m->params_floats * sizeof(float), "gradients")) ||
      !(s->arena = xcalloc_aligned(m->arena_bytes, "activation arena")) ||
      !(s->input = xcalloc_aligned(in * sizeof(float), "input batch")) ||
      !(s->logits = xcalloc_aligned(out * sizeof(float), "logits")) ||
      !(s->dlogits = xcalloc_aligned(out * sizeof(float), "logit gradients")) ||
      !(r->labels = xcalloc_aligned((size_t)m->batch * sizeof(int), "labels")))
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

/* Test set in eval mode: every image, the last partial batch padded with
 * zeros whose rows are not counted (eval forward is per-sample). */
static void evaluate(Run *r, double *loss, double *acc, long *correct) {
  const NnccModel *m = r->m;
  double total = 0.0;
  *correct = 0;
  for (int start = 0; start < r->test.n; start += m->batch) {
    int count = r->test.n - start < m->batch ? r->test.n - start : m->batch;
    batch_fill(m, &r->test, r->test_order + start, count, r->st.input, r->labels);
    m->forward(&r->st, 0);
    total += loss_xent_eval(r->st.logits, r->labels, count, m->classes, correct);
  }
  *loss = total / r->test.n;
  *acc = (double)*correct / r->test.n;
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

static void json_num(FILE *f, const char *key, double v, const char *fmt) {
  fprintf(f, ",\"%s\":", key);
  if (isfinite(v)) fprintf(f, fmt, v);
  else fputs("null", f);
}

static void log_epoch(Run *r, int epoch, double loss, double test_loss, double test_acc,
                      double img_s, double secs) {
  if (!r->log) return;
  fprintf(r->log, "{\"epoch\":%d,\"steps\":%llu", epoch + 1, (unsigned long long)r->st.step);
  json_num(r->log, "loss", loss, "%.17g");
  json_num(r->log, "test_loss", test_loss, "%.17g");
  json_num(r->log, "test_acc", test_acc, "%.17g");
  json_num(r->log, "img_per_s", img_s, "%.1f");
  json_num(r->log, "seconds", secs, "%.3f");
  fputs("}\n", r->log);
  fflush(r->log);
}

/* --step-log: the step just taken (1-based, counting a loaded checkpoint's
 * steps), its epoch (1-based) and its batch loss as the float that grads
 * would write, %.9g so the text reads back to the same float. */
static void log_step(Run *r, double loss) {
  if (!r->step_log) return;
  fprintf(r->step_log, "{\"step\":%llu,\"epoch\":%d", (unsigned long long)r->st.step,
          r->prog.epoch + 1);
  json_num(r->step_log, "loss", (float)loss, "%.9g");
  fputs("}\n", r->step_log);
  fflush(r->step_log);
}

static int save(Run *r, const NnccOptions *o) {
  return o->save ? ckpt_save(o->save, r->m, &r->cfg, r->st.params, r->optim, &r->prog) : 0;
}

/* ---- train ---- */

static int train_setup(Run *r, const NnccModel *m, const NnccOptions *o) {
  if (run_open(r, m, o, 1, 1)) return -1;
  if (o->load) {
    /* The optimizer kind comes from the file, so allocate for the larger (Adam). */
    NnccTrainConfig adam = r->cfg;
    adam.optim = NNCC_ADAM;
    if (!(r->optim = xcalloc_aligned(optim_state_floats(m, &adam) * sizeof(float), "optimizer state")) ||
        ckpt_load(o->load, m, &r->cfg, r->st.params, r->optim, &r->prog))
      return -1;
  } else {
    r->cfg.seed = o->seed_given ? o->seed : r->cfg.seed;
    params_init(m, r->st.params, r->cfg.seed);
    if (!(r->optim = xcalloc_aligned(optim_state_floats(m, &r->cfg) * sizeof(float), "optimizer state")))
      return -1;
  }
  if (o->seed_given) r->cfg.seed = o->seed;
  if (o->lr > 0) r->cfg.lr = o->lr;
  if (o->epochs_given) r->cfg.epochs = o->epochs;
  r->st.seed = r->cfg.seed;
  r->st.step = r->prog.step;
  if (r->train.n < m->batch) {
    rt_error("%s: training set has %d images, fewer than one batch of %d", o->data, r->train.n,
             m->batch);
    return -1;
  }
  if (o->log && !(r->log = xfopen(o->log, "a"))) return -1;
  if (o->step_log && !(r->step_log = xfopen(o->step_log, "a"))) return -1;
  return 0;
}

/* One optimizer step on batch k of the epoch's order. */
static double train_step(Run *r, int k) {
  const NnccModel *m = r->m;
  batch_fill(m, &r->train, r->order + (size_t)k * (size_t)m->batch, m->batch, r->st.input, r->labels);
  m->forward(&r->st, 1);
  double loss = loss_xent(r->st.logits, r->labels, m->batch, m->classes, r->st.dlogits);
  m->backward(&r->st);
  optim_step(m, &r->cfg, r->st.params, r->st.grads, r->optim, r->st.step);
  r->st.step++;
  return loss;
}

/* Runs the rest of one epoch; returns 1 when it completed, 0 when stopped
 * early (--steps or SIGINT), with the progress updated either way. */
static int train_epoch(Run *r, const NnccOptions *o, int per_epoch, double *secs, int *ran) {
  Progress pg = {isatty(STDERR_FILENO) && !o->quiet, rt_now(), 0};
  int first = r->prog.epoch_step;
  batch_order(r->order, r->train.n, r->cfg.seed, r->prog.epoch, o->shuffle);
  for (int k = first; k < per_epoch; k++) {
    if (interrupted || (o->steps && r->st.step >= o->steps)) break;
    double loss = train_step(r, k);
    r->prog.epoch_loss += loss;
    log_step(r, loss);
    r->prog.epoch_step = k + 1;
    r->prog.step = r->st.step;
    progress_draw(&pg, r->prog.epoch, r->cfg.epochs, k + 1, per_epoch, r->m->batch,
                  r->prog.epoch_loss, first);
  }
  progress_clear(&pg);
  *secs = rt_now() - pg.start;
  *ran = r->prog.epoch_step - first;
  return r->prog.epoch_step == per_epoch;
}

/* secs and ran cover this process's part of the epoch (all of it unless resumed). */
static void epoch_done(Run *r, const NnccOptions *o, int per_epoch, double secs, int ran) {
  double test_loss, test_acc, loss = r->prog.epoch_loss / per_epoch;
  long correct;
  double img_s = secs > 0 ? (double)ran * r->m->batch / secs : 0;
  evaluate(r, &test_loss, &test_acc, &correct);
  if (!o->quiet)
    printf("epoch %d/%d  loss %.6f  test_loss %.6f  test_acc %.4f  %.0f img/s  %.2f s\n",
           r->prog.epoch + 1, r->cfg.epochs, loss, test_loss, test_acc, img_s, secs);
  fflush(stdout);
  log_epoch(r, r->prog.epoch, loss, test_loss, test_acc, img_s, secs);
  r->prog.epoch++;
  r->prog.epoch_step = 0;
  r->prog.epoch_loss = 0.0;
}

int run_train(const NnccModel *m, const NnccOptions *o) {
  Run r;
  struct sigaction sa, old;
  int rc = 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  if (train_setup(&r, m, o)) goto out;
  int per_epoch = r.train.n / m->batch; /* drop_last */
  if (r.prog.epoch >= r.cfg.epochs && !o->quiet)
    printf("nothing to do: the checkpoint finished epoch %d of --epochs %d\n", r.prog.epoch, r.cfg.epochs);
  interrupted = 0;
  sigaction(SIGINT, &sa, &old);
  while (r.prog.epoch < r.cfg.epochs) {
    double secs;
    int ran;
    if (!train_epoch(&r, o, per_epoch, &secs, &ran)) break;
    epoch_done(&r, o, per_epoch, secs, ran);
    if (save(&r, o)) goto restore;
  }
  if (interrupted) {
    rc = save(&r, o) ? 1 : 130;
    if (!o->quiet) fprintf(stderr, "nncc: interrupted at step %llu%s\n",
                           (unsigned long long)r.st.step, o->save && rc == 130 ? ", checkpoint saved" : "");
    goto restore;
  }
  if (r.prog.epoch < r.cfg.epochs) { /* stopped by --steps inside an epoch */
    if (save(&r, o)) goto restore;
    if (!o->quiet)
      printf("stopped at step %llu (epoch %d, batch %d of %d)  loss %.6f\n",
             (unsigned long long)r.st.step, r.prog.epoch + 1, r.prog.epoch_step, per_epoch,
             r.prog.epoch_step ? r.prog.epoch_loss / r.prog.epoch_step : 0.0);
  }
  rc = 0;
restore:
  sigaction(SIGINT, &old, NULL);
out:
  run_close(&r);
  return rc;
}

/* ---- eval, grads ---- */

int run_eval(const NnccModel *m, const NnccOptions *o) {
  Run r;
  int rc = 1;
  if (run_open(&r, m, o, 0, 1) || ckpt_load(o->load, m, &r.cfg, r.st.params, NULL, &r.prog))
    goto out;
  r.st.seed = r.cfg.seed;
  r.st.step = r.prog.step;
  double loss, acc;
  long correct;
  evaluate(&r, &loss, &acc, &correct);
  printf("test_loss %.6f  test_acc %.4f  (%ld/%d)\n", loss, acc, correct, r.test.n);
  rc = 0;
out:
  run_close(&r);
  return rc;
}

/* Forward (training mode), loss and backward on the first training batch in
 * file order: the data a PyTorch reference needs to compare gradients. */
int run_grads(const NnccModel *m, const NnccOptions *o) {
  Run r;
  NnccTensor *t = NULL;
  int rc = 1, n = 0;
  if (run_open(&r, m, o, 1, 0) || ckpt_load(o->load, m, &r.cfg, r.st.params, NULL, &r.prog))
    goto out;
  if (r.train.n < m->batch) {
    rt_error("%s: training set has %d images, fewer than one batch of %d", o->data, r.train.n, m->batch);
    goto out;
  }
  r.st.seed = r.cfg.seed;
  r.st.step = r.prog.step;
  batch_order(r.order, r.train.n, 0, 0, 0);
  batch_fill(m, &r.train, r.order, m->batch, r.st.input, r.labels);
  m->forward(&r.st, 1);
  float loss = (float)loss_xent(r.st.logits, r.labels, m->batch, m->classes, r.st.dlogits);
  m->backward(&r.st);
  if (!(t = xmalloc((size_t)(m->nparams + 2) * sizeof *t, "gradient list"))) goto out;
  t[n++] = (NnccTensor){"loss", 0, {0}, &loss};
  t[n++] = (NnccTensor){"logits", 2, {m->batch, m->classes}, r.st.logits};
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
