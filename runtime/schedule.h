/*
 * schedule.h -- learning-rate schedules (schedule.c): parsed from the text form
 * the train line, the trainer's flags and checkpoint metadata share.
 * Included by the runtime (rt.h) and by nncc, which checks a train line's
 * schedule with the same parser.
 */
#ifndef NNCC_SCHEDULE_H
#define NNCC_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef enum NnccSchedKind {
  NNCC_SCHED_NONE,
  NNCC_SCHED_STEP,
  NNCC_SCHED_MULTISTEP,
  NNCC_SCHED_EXPONENTIAL,
  NNCC_SCHED_COSINE,
  NNCC_SCHED_ONECYCLE,
  NNCC_SCHED_LINEAR /* the warm-up */
} NnccSchedKind;

enum { NNCC_SCHED_MAX_MILESTONES = 16 };

/* The longest schedule text, its NUL included: as in nncc_rt.h (rt.h
 * includes both, so a change to one alone does not compile). */
#define NNCC_SCHED_TEXT 320

typedef struct NnccSchedule {
  NnccSchedKind kind;
  double gamma;                                   /* step, multistep, exponential */
  int step_size;                                  /* step */
  int nmilestones, milestones[NNCC_SCHED_MAX_MILESTONES]; /* multistep, non-decreasing */
  int t_max;                                      /* cosine */
  double eta_min;
  double max_lr, pct_start, base_momentum, max_momentum, div_factor, final_div_factor; /* onecycle */
  int64_t total_steps;                            /* onecycle; 0: epochs * steps per epoch */
  int anneal_linear, cycle_momentum, three_phase;
  double start_factor, end_factor;                /* linear (warm-up) */
  int total_iters;
} NnccSchedule;

/* Parses "cosine(T_max=10, eta_min=0)" (or "none", or "") into *out, the
 * arguments' defaults filled in: a schedule, or with warmup != 0 a warm-up
 * (linear(...)).  0, or -1 with one line in err saying what is wrong. */
int sched_parse(const char *spec, int warmup, NnccSchedule *out, char *err, size_t errlen);
/* The canonical text of *s, every argument given ("none" for none); -1 if
 * it does not fit in cap. */
int sched_format(const NnccSchedule *s, char *buf, size_t cap);
/* What a schedule and a warm-up cannot be together, or with the optimizer
 * (sgd_no_momentum: SGD with momentum 0): 0 if fine, else one line in err
 * and 1 (a warm-up before onecycle) or 2 (onecycle cycling a momentum the
 * optimizer lacks).  nncc checks a train line with it, the trainer its
 * final settings. */
int sched_check(const NnccSchedule *main, const NnccSchedule *warm, int sgd_no_momentum, char *err,
                size_t errlen);
/* 1 when the schedule steps per optimizer step (onecycle), 0 per epoch. */
int sched_per_step(const NnccSchedule *s);
/* The lr of epoch `epoch` (0-based: after that many scheduler.step()
 * calls) of the per-epoch schedule main, after the warm-up warm (either may
 * be NONE), from the optimizer's lr base.  prev_epoch >= 0 and prev_lr:
 * an earlier result to continue the recursion from (else -1). */
double sched_epoch_lr(const NnccSchedule *main, const NnccSchedule *warm, double base, int epoch,
                      int prev_epoch, double prev_lr);
/* onecycle's lr and momentum (Adam's beta1, SGD's momentum) at optimizer
 * step `step` (0-based) of total_steps. */
void sched_onecycle(const NnccSchedule *s, int64_t total_steps, uint64_t step, double *lr,
                    double *momentum);

#endif
