/*
 * cli.c -- nncc_main: the generated trainer's command line.
 *
 * A usage error (unknown flag, missing value, bad number) prints one line
 * naming the flag and the problem plus a hint, and returns 2; failures
 * while running return 1; a training run stopped by SIGINT returns 130,
 * by SIGTERM 143.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "rt.h"

enum { TRAIN = 1, EVAL = 2, GRADS = 4, PREDICT = 8 };

typedef struct Flag {
  const char *name;
  int has_value;
  int commands; /* which commands accept it */
} Flag;

static const Flag flags[] = {
    {"--data", 1, TRAIN | EVAL | GRADS}, {"--load", 1, TRAIN | EVAL | GRADS | PREDICT},
    {"--threads", 1, TRAIN | EVAL | GRADS | PREDICT}, {"--quiet", 0, TRAIN | EVAL | GRADS},
    {"--top", 1, PREDICT}, {"--invert", 1, PREDICT},
    {"--epochs", 1, TRAIN}, {"--steps", 1, TRAIN}, {"--lr", 1, TRAIN}, {"--seed", 1, TRAIN},
    {"--clip-grad-norm", 1, TRAIN}, {"--clip-grad-value", 1, TRAIN},
    {"--schedule", 1, TRAIN}, {"--warmup", 1, TRAIN}, {"--val", 1, TRAIN},
    {"--plot", 1, TRAIN},
    {"--no-shuffle", 0, TRAIN}, {"--save", 1, TRAIN}, {"--log", 1, TRAIN},
    {"--step-log", 1, TRAIN}, {"--check-numerics", 0, TRAIN | EVAL},
    {"--allow-nonfinite", 0, TRAIN | EVAL | GRADS},
    {"--out", 1, GRADS}, {"--report", 0, EVAL}, {"--report-json", 1, EVAL}, {"--logits", 1, EVAL},
};

static void usage(FILE *f, const char *prog) {
  fprintf(f,
          "usage: %s train --data DIR [--epochs N] [--steps N] [--lr X] [--seed S] [--threads T]\n"
          "          [--no-shuffle] [--load F] [--save F] [--log F.jsonl] [--step-log F.jsonl]\n"
          "          [--schedule S] [--warmup W] [--clip-grad-norm X] [--clip-grad-value X] [--val N]\n"
          "          [--plot F.png]\n"
          "          [--check-numerics] [--allow-nonfinite] [--quiet]\n"
          "       %s eval --data DIR --load F [--report] [--report-json F.json] [--logits F]\n"
          "          [--threads T] [--check-numerics] [--allow-nonfinite]\n"
          "       %s grads --data DIR --load F --out G.safetensors [--threads T] [--allow-nonfinite]\n"
          "       %s predict --load F [--top K] [--invert auto|yes|no] [--threads T] IMAGE...\n"
          "       %s --version   the model, the nncc that generated it, the runtime\n"
          "DIR holds the MNIST IDX files (train-images-idx3-ubyte, ..., raw or .gz).\n"
          "--epochs and --steps count the whole run, including a loaded checkpoint's progress.\n"
          "--schedule 'cosine(T_max=10)' (step, multistep, exponential, cosine, onecycle, or\n"
          "none), --warmup 'linear(start_factor=0.1, total_iters=2)' (or none), --clip-grad-norm\n"
          "and --clip-grad-value (torch.nn.utils' clipping, 0: off) override the model's train\n"
          "line and a loaded checkpoint's settings.\n"
          "--plot F.png redraws the training curves after every epoch (gnuplot).\n"
          "--val N holds out the last N training images and reports val_loss and val_acc\n"
          "after every epoch.\n"
          "eval --report prints per-class accuracy, the confusion matrix and the most\n"
          "confidently wrong test images; --report-json writes them as JSON too; --logits F\n"
          "writes every test image's logits (safetensors, `logits` F32 [images, classes]).\n"
          "predict classifies PNG or PGM images (scaled to 28x28, a dark drawing on a light\n"
          "page inverted with --invert auto) and IDX3 image files, printing the top K classes.\n"
          "--check-numerics checks every node's results for NaN/Inf; --allow-nonfinite loads\n"
          "and saves checkpoints that hold NaN/Inf.\n",
          prog, prog, prog, prog, prog);
}

static int usage_error(const char *prog, const char *fmt, ...) RT_PRINTF(2, 3);
static int usage_error(const char *prog, const char *fmt, ...) {
  va_list ap;
  if (dist_rank() > 0) return 2; /* every rank has the same command line: rank 0 says it */
  va_start(ap, fmt);
  fputs("nncc: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s --help' for usage.\n", prog);
  return 2;
}

/* Stores one flag's value; returns 0 or a usage error status. */
static int set_flag(NnccOptions *o, const char *prog, const char *name, const char *v) {
  uint64_t u;
  const char *bad = NULL;
  if (strcmp(name, "--data") == 0) o->data = v;
  else if (strcmp(name, "--load") == 0) o->load = v;
  else if (strcmp(name, "--save") == 0) o->save = v;
  else if (strcmp(name, "--log") == 0) o->log = v;
  else if (strcmp(name, "--step-log") == 0) o->step_log = v;
  else if (strcmp(name, "--out") == 0) o->out = v;
  else if (strcmp(name, "--quiet") == 0) o->quiet = 1;
  else if (strcmp(name, "--no-shuffle") == 0) o->shuffle = 0;
  else if (strcmp(name, "--check-numerics") == 0) o->check_numerics = 1;
  else if (strcmp(name, "--allow-nonfinite") == 0) o->allow_nonfinite = 1;
  else if (strcmp(name, "--report") == 0) o->report = 1;
  else if (strcmp(name, "--plot") == 0) {
    if (!plot_available())
      return usage_error(prog, "--plot needs gnuplot, which is not on PATH (Debian: apt-get install gnuplot-nox)");
    o->plot = v;
  }
  else if (strcmp(name, "--report-json") == 0) o->report_json = v, o->report = 1;
  else if (strcmp(name, "--logits") == 0) o->logits_out = v;
  else if (strcmp(name, "--epochs") == 0) {
    if (!(bad = setting_uint("epochs", v, &u))) o->epochs = (int)u, o->epochs_given = 1;
  } else if (strcmp(name, "--steps") == 0) {
    bad = setting_uint("steps", v, &o->steps);
  } else if (strcmp(name, "--threads") == 0) {
    if (!(bad = setting_uint("threads", v, &u))) o->threads = (int)u;
  } else if (strcmp(name, "--seed") == 0) {
    if (!(bad = setting_uint("seed", v, &o->seed))) o->seed_given = 1;
  } else if (strcmp(name, "--lr") == 0) {
    bad = setting_real("lr", v, &o->lr);
  } else if (strcmp(name, "--top") == 0) {
    if (!(bad = setting_uint("top", v, &u))) o->top = (int)u;
  } else if (strcmp(name, "--invert") == 0) {
    if (strcmp(v, "auto") == 0) o->invert = -1;
    else if (strcmp(v, "yes") == 0) o->invert = 1;
    else if (strcmp(v, "no") == 0) o->invert = 0;
    else bad = "auto, yes or no";
  } else if (strcmp(name, "--val") == 0) {
    if (!(bad = setting_uint("val", v, &u))) o->val = (int)u, o->val_given = 1;
  } else if (strcmp(name, "--schedule") == 0 || strcmp(name, "--warmup") == 0) {
    NnccSchedule s;
    char err[256];
    if (sched_parse(v, name[2] == 'w', &s, err, sizeof err))
      return usage_error(prog, "%s: %s", name, err);
    *(name[2] == 'w' ? &o->warmup : &o->schedule) = v;
  } else if (strcmp(name, "--clip-grad-norm") == 0) {
    bad = setting_real("clip_grad_norm", v, &o->clip_grad_norm);
  } else if (strcmp(name, "--clip-grad-value") == 0) {
    bad = setting_real("clip_grad_value", v, &o->clip_grad_value);
  }
  return bad ? usage_error(prog, "%s: '%s' is not %s", name, v, bad) : 0;
}

static int parse_args(int argc, char **argv, const char *prog, int cmd, const char *cmd_name,
                      NnccOptions *o) {
  for (int i = 2; i < argc; i++) {
    const char *arg = argv[i], *eq = strchr(arg, '='), *value = NULL;
    if (cmd == PREDICT && (arg[0] != '-' || !arg[1])) { /* an image to classify */
      o->inputs[o->ninputs++] = arg;
      continue;
    }
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const Flag *f = NULL;
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
      if (len == strlen(flags[k].name) && strncmp(arg, flags[k].name, len) == 0) f = &flags[k];
    if (!f) return usage_error(prog, "unknown option '%s'", arg);
    if (!(f->commands & cmd)) return usage_error(prog, "%s does not apply to '%s'", f->name, cmd_name);
    if (f->has_value) {
      if (eq) value = eq + 1;
      else if (i + 1 < argc) value = argv[++i];
      else return usage_error(prog, "%s needs a value", f->name);
      if (!*value) return usage_error(prog, "%s needs a value", f->name);
    } else if (eq) {
      return usage_error(prog, "%s takes no value", f->name);
    }
    int rc = set_flag(o, prog, f->name, value);
    if (rc) return rc;
  }
  if (cmd == PREDICT) {
    if (!o->load) return usage_error(prog, "predict needs --load F");
    if (!o->ninputs) return usage_error(prog, "predict needs an image: a PNG, a PGM or an IDX3 file");
    return 0;
  }
  if (!o->data) return usage_error(prog, "%s needs --data DIR", cmd_name);
  if ((cmd & (EVAL | GRADS)) && !o->load) return usage_error(prog, "%s needs --load F", cmd_name);
  if ((cmd & GRADS) && !o->out) return usage_error(prog, "%s needs --out F", cmd_name);
  return 0;
}

static int nncc_command(int argc, char **argv, const char *prog, const NnccModel *model);

int nncc_main(int argc, char **argv, const NnccModel *model) {
  const char *prog = argc > 0 && argv[0] ? argv[0] : model->name;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout, prog);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("%s: model %s from %s, generated by nncc %s; runtime nncc %s, ABI %d\n", prog,
             model->name, model->source, model->nncc_version, NNCC_VERSION, NNCC_RT_ABI);
      return 0;
    }
  if (dist_init(&argc, &argv, model)) return 1;
  int rc = nncc_command(argc, argv, prog, model);
  dist_finish(rc);
  return rc;
}

/* The command, once the ranks (dist.c) are up. */
static int nncc_command(int argc, char **argv, const char *prog, const NnccModel *model) {
  NnccOptions o;
  int cmd;
  if (argc < 2) {
    dist_agree_failed(); /* every rank sees the same command line */
    return usage_error(prog, "missing command (train, eval, grads or predict)");
  }
  if (strcmp(argv[1], "train") == 0) cmd = TRAIN;
  else if (strcmp(argv[1], "eval") == 0) cmd = EVAL;
  else if (strcmp(argv[1], "grads") == 0) cmd = GRADS;
  else if (strcmp(argv[1], "predict") == 0) cmd = PREDICT;
  else {
    dist_agree_failed();
    return usage_error(prog, "unknown command '%s'", argv[1]);
  }
  memset(&o, 0, sizeof o);
  o.shuffle = 1;
  o.lr = -1;
  o.clip_grad_norm = o.clip_grad_value = -1;
  o.top = 3;
  o.invert = -1;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  if (!inputs) return usage_error(prog, "out of memory");
  o.inputs = inputs;
  int rc = parse_args(argc, argv, prog, cmd, argv[1], &o);
  if (rc) {
    dist_agree_failed();
    free(inputs);
    return rc;
  }
#ifdef _OPENMP
  if (o.threads) omp_set_num_threads(o.threads);
#endif
  if (cmd == TRAIN) rc = run_train(model, &o);
  else if (cmd == EVAL) rc = run_eval(model, &o);
  else if (cmd == GRADS) rc = run_grads(model, &o);
  else rc = run_predict(model, &o);
  free(inputs);
  return rc;
}
