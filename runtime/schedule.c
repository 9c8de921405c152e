/*
 * schedule.c -- learning-rate schedules with torch.optim.lr_scheduler's names
 * and PyTorch 1.13's arithmetic, bit for bit (docs/runtime.md).
 *
 * A schedule is written as text, the one form the train line, the
 * trainer's --schedule/--warmup flags and checkpoint metadata share:
 *
 *   step(step_size=S, gamma=0.1)          StepLR          per epoch
 *   multistep(milestones=[a, b], gamma=0.1) MultiStepLR   per epoch
 *   exponential(gamma=G)                  ExponentialLR   per epoch
 *   cosine(T_max=T, eta_min=0)            CosineAnnealingLR per epoch
 *   onecycle(max_lr=M, ...)               OneCycleLR      per step
 *   linear(start_factor=1/3, end_factor=1, total_iters=5)
 *                                         LinearLR, the warm-up before
 *                                         any per-epoch schedule, composed
 *                                         as SequentialLR([LinearLR, it],
 *                                         milestones=[total_iters])
 *
 * The per-epoch schedules are chainable in torch: each lr is computed from
 * the previous one, in double (Python floats), with libm's cos and pow.
 * sched_epoch_lr() repeats that recursion in the same order of operations,
 * so the learning rates are torch's to the last bit; a resumed run replays
 * it from epoch 0 (the checkpoint holds the schedule, the base lr and the
 * epoch, which is all its state).  onecycle is a closed form per step.
 *
 * This file is also linked into nncc, which checks a train line's schedule
 * with sched_parse() and writes it in sched_format()'s canonical text.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "schedule.h"

/* Python's math.pi (M_PI is not C11) */
static const double PI = 3.141592653589793;

/* An argument: its type, range, default and where it goes in
 * NnccSchedule; the order of a kind's keys is the canonical text's. */
typedef struct Key {
  const char *name;
  enum { NUM, INT, INT64, BOOL, LIST, STRATEGY } type; /* double, int, int64_t, int (1: true / linear) */
  double lo, hi; /* NUM: lo < v < hi, or lo <= v with lo_in; INT: lo <= v <= hi */
  int lo_in;
  const char *def; /* default as text, NULL: required */
  size_t off;      /* offsetof(NnccSchedule, the field) */
} Key;

typedef struct Kind {
  const char *name;
  NnccSchedKind kind;
  Key keys[11];
} Kind;

#define F(field) offsetof(NnccSchedule, field)
#define END {NULL, NUM, 0, 0, 0, NULL, 0}
static const Kind kinds[] = {
    {"step", NNCC_SCHED_STEP,
     {{"step_size", INT, 1, 1e9, 1, NULL, F(step_size)}, {"gamma", NUM, 0, INFINITY, 1, "0.1", F(gamma)}, END}},
    {"multistep", NNCC_SCHED_MULTISTEP,
     {{"milestones", LIST, 0, 1e9, 1, NULL, F(milestones)}, {"gamma", NUM, 0, INFINITY, 1, "0.1", F(gamma)}, END}},
    {"exponential", NNCC_SCHED_EXPONENTIAL, {{"gamma", NUM, 0, INFINITY, 1, NULL, F(gamma)}, END}},
    {"cosine", NNCC_SCHED_COSINE,
     {{"T_max", INT, 1, 1e9, 1, NULL, F(t_max)}, {"eta_min", NUM, 0, INFINITY, 1, "0", F(eta_min)}, END}},
    {"onecycle", NNCC_SCHED_ONECYCLE,
     {{"max_lr", NUM, 0, INFINITY, 0, NULL, F(max_lr)},
      {"total_steps", INT64, 0, 1e18, 1, "0", F(total_steps)},
      {"pct_start", NUM, 0, 1, 1, "0.3", F(pct_start)},
      {"anneal_strategy", STRATEGY, 0, 0, 0, "cos", F(anneal_linear)},
      {"cycle_momentum", BOOL, 0, 0, 0, "true", F(cycle_momentum)},
      {"base_momentum", NUM, 0, 1, 1, "0.85", F(base_momentum)},
      {"max_momentum", NUM, 0, 1, 1, "0.95", F(max_momentum)},
      {"div_factor", NUM, 0, INFINITY, 0, "25", F(div_factor)},
      {"final_div_factor", NUM, 0, INFINITY, 0, "1e4", F(final_div_factor)},
      {"three_phase", BOOL, 0, 0, 0, "false", F(three_phase)},
      END}},
    {"linear", NNCC_SCHED_LINEAR,
     {{"start_factor", NUM, 0, 1, 0, "0.33333333333333331", F(start_factor)}, /* 0 divides by 0 in torch */
      {"end_factor", NUM, 0, 1, 1, "1", F(end_factor)},
      {"total_iters", INT, 1, 1e9, 1, "5", F(total_iters)},
      END}},
};
#undef END
#undef F


static const char *skip(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

/* The value text of one key: up to a ',' or ')' outside brackets. */
static const char *value_end(const char *p) {
  int depth = 0;
  for (; *p; p++) {
    if (*p == '[') depth++;
    else if (*p == ']') depth--;
    else if (depth == 0 && (*p == ',' || *p == ')')) break;
  }
  return p;
}

static int parse_num(const char *s, size_t n, double *out) {
  char buf[64], *end;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  *out = strtod(buf, &end);
  return *end || !isfinite(*out) ? -1 : 0;
}

static int set_key(NnccSchedule *s, const Kind *k, const Key *key, const char *v, size_t n,
                   char *err, size_t errlen) {
  double x;
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  const char *name = key->name;
  void *field = (char *)s + key->off;
  if (key->type == BOOL || key->type == STRATEGY) {
    const char *a = key->type == BOOL ? "true" : "cos", *b = key->type == BOOL ? "false" : "linear";
    int is_a = n == strlen(a) && strncmp(v, a, n) == 0, is_b = n == strlen(b) && strncmp(v, b, n) == 0;
    if (!is_a && !is_b)
      return errbuf_set(err, errlen, "%s(): '%s' must be %s or %s", k->name, name, a, b);
    *(int *)field = key->type == STRATEGY ? is_b : is_a; /* 1: "linear", or true */
    return 0;
  }
  if (key->type == LIST) {
    if (n < 2 || v[0] != '[' || v[n - 1] != ']')
      return errbuf_set(err, errlen, "%s(): '%s' must be a list of epochs, like [30, 80]", k->name, name);
    s->nmilestones = 0;
    const char *p = skip(v + 1), *stop = v + n - 1;
    while (p < stop) {
      const char *q = p;
      while (q < stop && *q != ',') q++;
      if (s->nmilestones == NNCC_SCHED_MAX_MILESTONES)
        return errbuf_set(err, errlen, "%s(): more than %d milestones", k->name, NNCC_SCHED_MAX_MILESTONES);
      if (parse_num(p, (size_t)(q - p), &x) || x != floor(x) || x < 0 || x > 1e9)
        return errbuf_set(err, errlen, "%s(): milestones must be epochs (integers from 0 to 1e9)", k->name);
      int m = (int)x;
      if (s->nmilestones && m < s->milestones[s->nmilestones - 1])
        return errbuf_set(err, errlen, "%s(): milestones must not decrease", k->name);
      s->milestones[s->nmilestones++] = m;
      p = q < stop ? skip(q + 1) : q;
    }
    if (s->nmilestones == 0) return errbuf_set(err, errlen, "%s(): 'milestones' is empty", k->name);
    return 0;
  }
  if (parse_num(v, n, &x))
    return errbuf_set(err, errlen, "%s(): '%s' must be a number, got '%.*s'", k->name, name, (int)n, v);
  if (key->type == INT || key->type == INT64) {
    if (x != floor(x) || x < key->lo || x > key->hi)
      return errbuf_set(err, errlen, "%s(): '%s' must be an integer from %.0f to %.0f", k->name, name,
                  key->lo, key->hi);
  } else if (!(key->lo_in ? x >= key->lo : x > key->lo) || !(x <= key->hi)) {
    if (isinf(key->hi))
      return errbuf_set(err, errlen, "%s(): '%s' must be %s", k->name, name,
                  key->lo_in ? "non-negative" : "positive");
    return errbuf_set(err, errlen, "%s(): '%s' must be in %s%g, %g]", k->name, name,
                key->lo_in ? "[" : "(", key->lo, key->hi);
  }
  if (key->type == NUM) *(double *)field = x;
  else if (key->type == INT64) *(int64_t *)field = (int64_t)x;
  else *(int *)field = (int)x;
  return 0;
}

int sched_parse(const char *spec, int warmup, NnccSchedule *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  const char *p = skip(spec);
  if (strcmp(p, "none") == 0 || *p == '\0') return 0;
  size_t n = 0;
  while ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '_') n++;
  const Kind *k = NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (strlen(kinds[i].name) == n && strncmp(p, kinds[i].name, n) == 0) k = &kinds[i];
  if (!k || (k->kind == NNCC_SCHED_LINEAR) != (warmup != 0)) {
    if (warmup) return errbuf_set(err, errlen, "unknown warm-up '%.*s'; nncc has linear(...)", (int)n, p);
    return errbuf_set(err, errlen,
                "unknown schedule '%.*s'; nncc has step(...), multistep(...), exponential(...), "
                "cosine(...) and onecycle(...)",
                (int)n, p);
  }
  out->kind = k->kind;
  int given[11] = {0};
  p = skip(p + n);
  if (*p == '(') {
    p = skip(p + 1);
    while (*p != ')') {
      size_t kn = 0;
      while ((p[kn] >= 'a' && p[kn] <= 'z') || (p[kn] >= 'A' && p[kn] <= 'Z') || p[kn] == '_') kn++;
      const char *eq = skip(p + kn);
      if (kn == 0 || *eq != '=') return errbuf_set(err, errlen, "%s(): expected NAME=VALUE at '%s'", k->name, p);
      int which = -1;
      for (int i = 0; k->keys[i].name; i++)
        if (strlen(k->keys[i].name) == kn && strncmp(p, k->keys[i].name, kn) == 0) which = i;
      if (which < 0) return errbuf_set(err, errlen, "%s() has no argument '%.*s'", k->name, (int)kn, p);
      if (given[which]++) return errbuf_set(err, errlen, "%s(): '%s' is given twice", k->name, k->keys[which].name);
      const char *v = skip(eq + 1), *e = value_end(v);
      if (set_key(out, k, &k->keys[which], v, (size_t)(e - v), err, errlen)) return -1;
      if (*e == '\0') return errbuf_set(err, errlen, "%s(: no closing ')'", k->name);
      p = *e == ',' ? skip(e + 1) : e;
    }
    p = skip(p + 1);
  }
  if (*p) return errbuf_set(err, errlen, "%s(...): unexpected '%s' after it", k->name, p);
  for (int i = 0; k->keys[i].name; i++) {
    if (given[i]) continue;
    if (!k->keys[i].def) return errbuf_set(err, errlen, "%s() needs '%s'", k->name, k->keys[i].name);
    const char *d = k->keys[i].def;
    if (set_key(out, k, &k->keys[i], d, strlen(d), err, errlen)) return -1;
  }
  return 0;
}

/* Appends to buf[*len..cap); *len may pass cap, which the caller checks. */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + (*len < cap ? *len : cap), *len < cap ? cap - *len : 0, fmt, ap);
  va_end(ap);
  *len += n > 0 ? (size_t)n : 0;
}

/* v with the fewest digits that read back as v (0.1, not
 * 0.10000000000000001), as Python's repr; integers as integers. */
static void number(char *buf, size_t cap, size_t *len, double v) {
  char text[32];
  if (v == floor(v) && fabs(v) < 1e15)
    snprintf(text, sizeof text, "%.0f", v); /* 10, not 1e+01 */
  else
    for (int digits = 1; digits <= 17; digits++) {
      snprintf(text, sizeof text, "%.*g", digits, v);
      if (strtod(text, NULL) == v) break;
    }
  append(buf, cap, len, "%s", text);
}

static const Kind *kind_of(NnccSchedKind kind) {
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (kinds[i].kind == kind) return &kinds[i];
  return NULL;
}

int sched_format(const NnccSchedule *s, char *buf, size_t cap) {
  const Kind *k = kind_of(s->kind);
  size_t n = 0;
  if (!k) {
    append(buf, cap, &n, "none");
    return n < cap ? 0 : -1;
  }
  append(buf, cap, &n, "%s(", k->name);
  for (int i = 0; k->keys[i].name; i++) {
    const Key *key = &k->keys[i];
    const void *field = (const char *)s + key->off;
    append(buf, cap, &n, "%s%s=", i ? ", " : "", key->name);
    switch (key->type) {
    case NUM: number(buf, cap, &n, *(const double *)field); break;
    case INT: number(buf, cap, &n, *(const int *)field); break;
    case INT64: number(buf, cap, &n, (double)*(const int64_t *)field); break;
    case BOOL: append(buf, cap, &n, *(const int *)field ? "true" : "false"); break;
    case STRATEGY: append(buf, cap, &n, *(const int *)field ? "linear" : "cos"); break;
    case LIST:
      append(buf, cap, &n, "[");
      for (int m = 0; m < s->nmilestones; m++) append(buf, cap, &n, "%s%d", m ? ", " : "", s->milestones[m]);
      append(buf, cap, &n, "]");
      break;
    }
  }
  append(buf, cap, &n, ")");
  return n < cap ? 0 : -1;
}

int sched_check(const NnccSchedule *main, const NnccSchedule *warm, int sgd_no_momentum, char *err,
                size_t errlen) {
  if (main->kind != NNCC_SCHED_ONECYCLE) return 0;
  if (warm->kind != NNCC_SCHED_NONE) {
    errbuf_set(err, errlen, "a warm-up does not go before onecycle(...), which warms up itself (pct_start)");
    return 1;
  }
  if (main->cycle_momentum && sgd_no_momentum) {
    errbuf_set(err, errlen, "onecycle(cycle_momentum=true) cycles SGD's momentum: give sgd a momentum > 0, "
                            "or cycle_momentum=false");
    return 2;
  }
  return 0;
}

int sched_per_step(const NnccSchedule *s) { return s->kind == NNCC_SCHED_ONECYCLE; }

/* Python's x % y for y > 0: never negative. */
static long long py_mod(long long x, long long y) {
  long long r = x % y;
  return r < 0 ? r + y : r;
}

/* The main schedule's lr at its own epoch e >= 1 from its lr at e - 1
 * (get_lr() after step()), in torch's order of operations. */
static double main_chain(const NnccSchedule *s, double base, int e, double lr) {
  switch (s->kind) {
  case NNCC_SCHED_STEP: return e % s->step_size != 0 ? lr : lr * s->gamma;
  case NNCC_SCHED_MULTISTEP: {
    int count = 0;
    for (int i = 0; i < s->nmilestones; i++) count += s->milestones[i] == e;
    return count ? lr * pow(s->gamma, (double)count) : lr;
  }
  case NNCC_SCHED_EXPONENTIAL: return lr * s->gamma;
  case NNCC_SCHED_COSINE: {
    double T = (double)s->t_max;
    if (py_mod((long long)e - 1 - s->t_max, 2LL * s->t_max) == 0)
      return lr + (base - s->eta_min) * (1 - cos(PI / T)) / 2;
    return (1 + cos(PI * (double)e / T)) / (1 + cos(PI * (double)(e - 1) / T)) *
               (lr - s->eta_min) +
           s->eta_min;
  }
  default: return lr;
  }
}

/* The main schedule's lr at its epoch 0: its first get_lr() (lr is the
 * base), or with a warm-up the closed form step(0) takes. */
static double main_first(const NnccSchedule *s, double base, int closed_form) {
  switch (s->kind) {
  case NNCC_SCHED_MULTISTEP: {
    int count = 0;
    for (int i = 0; i < s->nmilestones; i++) count += s->milestones[i] == 0;
    if (closed_form) return base * pow(s->gamma, (double)count); /* bisect_right(milestones, 0) */
    return count ? base * pow(s->gamma, (double)count) : base;
  }
  case NNCC_SCHED_STEP:
  case NNCC_SCHED_EXPONENTIAL: return closed_form ? base * pow(s->gamma, 0.0) : base;
  case NNCC_SCHED_COSINE:
    if (closed_form)
      return s->eta_min + (base - s->eta_min) * (1 + cos(PI * 0.0 / (double)s->t_max)) / 2;
    return base;
  default: return base;
  }
}

/* LinearLR's lr at its epoch e from its lr at e - 1 (e = 0: from the base). */
static double linear_chain(const NnccSchedule *w, int e, double lr) {
  if (e == 0) return lr * w->start_factor;
  if (e > w->total_iters) return lr;
  return lr * (1. + (w->end_factor - w->start_factor) /
                        ((double)w->total_iters * w->start_factor +
                         (double)(e - 1) * (w->end_factor - w->start_factor)));
}

double sched_epoch_lr(const NnccSchedule *main, const NnccSchedule *warm, double base, int epoch,
                      int prev_epoch, double prev_lr) {
  int e = 0;
  double lr = base;
  if (prev_epoch >= 0 && prev_epoch <= epoch) e = prev_epoch, lr = prev_lr;
  else {
    /* epoch 0: the first scheduler's initial step */
    if (warm->kind == NNCC_SCHED_LINEAR) lr = linear_chain(warm, 0, base);
    else lr = main_first(main, base, 0);
  }
  for (e = e + 1; e <= epoch; e++) {
    if (warm->kind == NNCC_SCHED_LINEAR) {
      int m = warm->total_iters; /* SequentialLR's milestone */
      if (main->kind == NNCC_SCHED_NONE) lr = linear_chain(warm, e, lr);
      else if (e < m) lr = linear_chain(warm, e, lr);
      else if (e == m) lr = main_first(main, base, 1);
      else lr = main_chain(main, base, e - m, lr);
    } else {
      lr = main_chain(main, base, e, lr);
    }
  }
  return lr;
}

/* OneCycleLR's anneal functions */
static double anneal(const NnccSchedule *s, double start, double end, double pct) {
  if (s->anneal_linear) return (end - start) * pct + start;
  double cos_out = cos(PI * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

void sched_onecycle(const NnccSchedule *s, int64_t total_steps, uint64_t step, double *lr,
                    double *momentum) {
  double initial = s->max_lr / s->div_factor, peak = s->max_lr;
  double min_lr = initial / s->final_div_factor;
  double T = (double)total_steps;
  struct {
    double end_step, start_lr, end_lr, start_m, end_m;
  } ph[3];
  int n;
  if (s->three_phase) {
    ph[0].end_step = s->pct_start * T - 1, ph[0].start_lr = initial, ph[0].end_lr = peak;
    ph[0].start_m = s->max_momentum, ph[0].end_m = s->base_momentum;
    ph[1].end_step = 2 * s->pct_start * T - 2, ph[1].start_lr = peak, ph[1].end_lr = initial;
    ph[1].start_m = s->base_momentum, ph[1].end_m = s->max_momentum;
    ph[2].end_step = T - 1, ph[2].start_lr = initial, ph[2].end_lr = min_lr;
    ph[2].start_m = s->max_momentum, ph[2].end_m = s->max_momentum;
    n = 3;
  } else {
    ph[0].end_step = s->pct_start * T - 1, ph[0].start_lr = initial, ph[0].end_lr = peak;
    ph[0].start_m = s->max_momentum, ph[0].end_m = s->base_momentum;
    ph[1].end_step = T - 1, ph[1].start_lr = peak, ph[1].end_lr = min_lr;
    ph[1].start_m = s->base_momentum, ph[1].end_m = s->max_momentum;
    n = 2;
  }
  double start_step = 0, num = (double)step;
  for (int i = 0; i < n; i++) {
    if (num <= ph[i].end_step || i == n - 1) {
      double pct = (num - start_step) / (ph[i].end_step - start_step);
      *lr = anneal(s, ph[i].start_lr, ph[i].end_lr, pct);
      *momentum = anneal(s, ph[i].start_m, ph[i].end_m, pct);
      return;
    }
    start_step = ph[i].end_step;
  }
}
