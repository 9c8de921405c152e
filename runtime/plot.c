/*
 * plot.c -- training curves as a PNG, drawn by gnuplot (Debian
 * gnuplot-nox; docs/runtime.md): `nncc plot` (compiler/main.c) over
 * --log/--step-log files and `train --plot` over the run in progress.
 *
 * Three panels side by side: the training loss per step (thin: raw;
 * thick: an exponential moving average, debiased, weight 0.9), the
 * training, validation and test loss per epoch, and the validation and test
 * accuracy per epoch.  Several runs overlay in one colour each, with a
 * legend.
 *
 * The data go to files in a fresh $TMPDIR/nncc-plot-XXXXXX directory,
 * gnuplot reads a script from there and draws into it, and the PNG is then
 * written to the target atomically (fio_write_file): a failed or killed
 * gnuplot leaves the old picture.  The directory is removed on every path.
 * Linked into nncc too, so nothing here uses the runtime's rt_error().
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errbuf.h"
#include "fileio.h"
#include "plot.h"

extern char **environ;


/* x as gnuplot reads it; NaN (a missing value) as "NaN" */
static void put(FILE *f, double x) {
  if (isfinite(x)) fprintf(f, " %.9g", x);
  else fprintf(f, " NaN");
}

static int write_data(const char *dir, int i, const PlotRun *r) {
  char path[4200];
  snprintf(path, sizeof path, "%s/steps%d.dat", dir, i);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  double ema = 0, weight = 0;
  for (int k = 0; k < r->nsteps; k++) {
    double y = r->step_loss[k];
    if (isfinite(y)) { /* debiased EMA: the first points are not pulled to 0 */
      ema = 0.9 * ema + 0.1 * y;
      weight = 0.9 * weight + 0.1;
    }
    fprintf(f, "%.9g", r->step[k]);
    put(f, y);
    put(f, weight > 0 ? ema / weight : NAN);
    fprintf(f, "\n");
  }
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  snprintf(path, sizeof path, "%s/epochs%d.dat", dir, i);
  if (bad || !(f = fopen(path, "w"))) return -1;
  for (int k = 0; k < r->nepochs; k++) {
    const PlotEpoch *e = &r->epochs[k];
    fprintf(f, "%d", e->epoch);
    put(f, e->loss);
    put(f, e->test_loss);
    put(f, e->test_acc);
    put(f, e->val_loss);
    put(f, e->val_acc);
    fprintf(f, "\n");
  }
  bad = ferror(f);
  bad |= fclose(f) != 0;
  return bad ? -1 : 0;
}

/* a gnuplot single-quoted string: ' doubled */
static void quoted(FILE *f, const char *s) {
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'') fputc('\'', f);
    if ((unsigned char)*s >= 0x20) fputc(*s, f);
  }
  fputc('\'', f);
}

/* A panel without data: fixed ranges, or gnuplot stops ("all points
 * undefined"), and a word saying what is missing. */
#define EMPTY_PANEL                                                                     \
  "set label 1 'no %s data' at graph 0.5,0.5 center\nset xrange [0:1]\nset yrange [0:1]\n" \
  "plot NaN notitle\nunset label 1\nset autoscale\n"

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};
enum { NCOLORS = sizeof colors / sizeof *colors };

static int write_script(const char *dir, const PlotRun *runs, int n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/plot.gp", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  int steps = 0, epochs = 0, val = 0;
  for (int i = 0; i < n; i++) {
    steps |= runs[i].nsteps > 0;
    epochs |= runs[i].nepochs > 0;
    for (int k = 0; k < runs[i].nepochs; k++) val |= isfinite(runs[i].epochs[k].val_loss);
  }
  fprintf(f, "set terminal pngcairo size 1500,460 font 'sans,10' noenhanced\n");
  fprintf(f, "set output '%s/plot.png'\n", dir);
  fprintf(f, "set datafile missing 'NaN'\nset grid\nset key top right\n");
  fprintf(f, "set multiplot layout 1,3\n");
  /* 1: loss per step */
  fprintf(f, "set title 'training loss per step (thick: moving average)'\nset xlabel 'step'\nset ylabel 'loss'\n");
  if (!steps) fprintf(f, EMPTY_PANEL, "--step-log");
  else {
    fprintf(f, "plot");
    for (int i = 0, first = 1; i < n; i++) {
      if (!runs[i].nsteps) continue;
      const char *c = colors[i % NCOLORS];
      /* '#AARRGGBB': the raw loss 50% transparent */
      fprintf(f, "%s '%s/steps%d.dat' using 1:2 with lines lw 1 lc rgb '#80%s' notitle, "
              "'%s/steps%d.dat' using 1:3 with lines lw 2 lc rgb '%s' title ",
              first ? "" : ",", dir, i, c + 1, dir, i, c);
      quoted(f, runs[i].label);
      first = 0;
    }
    fprintf(f, "\n");
  }
  /* 2: loss per epoch, 3: accuracy per epoch */
  static const char *const what[2][2] = {{"loss", "loss"}, {"accuracy", "accuracy"}};
  for (int panel = 0; panel < 2; panel++) {
    /* accuracy rises to the top right: its legend goes below */
    fprintf(f, "set key %s right\n", panel == 0 ? "top" : "bottom");
    fprintf(f, "set title '%s per epoch (%s)'\nset xlabel 'epoch'\nset ylabel '%s'\n", what[panel][0],
            panel == 0 ? "points: test, thin: training, dashed: validation"
                       : "points: test, dashed: validation",
            what[panel][1]);
    if (!epochs) {
      fprintf(f, EMPTY_PANEL, "--log");
      continue;
    }
    fprintf(f, "plot");
    for (int i = 0, first = 1; i < n; i++) {
      if (!runs[i].nepochs) continue;
      const char *c = colors[i % NCOLORS];
      int test_col = panel == 0 ? 3 : 4, val_col = panel == 0 ? 5 : 6;
      /* the legend entry goes to the test curve, or to the training loss
       * of a log without test losses (bench/torch_accuracy.py's) */
      int has_test = 0;
      for (int k = 0; k < runs[i].nepochs; k++)
        has_test |= isfinite(panel == 0 ? runs[i].epochs[k].test_loss : runs[i].epochs[k].test_acc);
      fprintf(f, "%s '%s/epochs%d.dat' using 1:%d with linespoints lw 2 pt 7 ps 0.6 lc rgb '%s' ",
              first ? "" : ",", dir, i, test_col, c);
      if (has_test) {
        fprintf(f, "title ");
        quoted(f, runs[i].label);
      } else {
        fprintf(f, "notitle");
      }
      if (panel == 0) {
        fprintf(f, ", '%s/epochs%d.dat' using 1:2 with lines lw 1 lc rgb '%s' ", dir, i, c);
        if (has_test) {
          fprintf(f, "notitle");
        } else {
          fprintf(f, "title ");
          quoted(f, runs[i].label);
        }
      }
      if (val)
        fprintf(f, ", '%s/epochs%d.dat' using 1:%d with lines lw 1 dt 2 lc rgb '%s' notitle", dir, i,
                val_col, c);
      first = 0;
    }
    fprintf(f, "\n");
  }
  fprintf(f, "unset multiplot\nset output\n");
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  return bad ? -1 : 0;
}

int plot_available(void) {
  const char *path = getenv("PATH");
  char buf[4200];
  for (const char *p = path ? path : ""; *p;) {
    size_t n = strcspn(p, ":");
    if (snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, n ? p : ".") < (int)sizeof buf &&
        access(buf, X_OK) == 0)
      return 1;
    p += n + (p[n] == ':');
  }
  return 0;
}

/* gnuplot DIR/plot.gp, its messages to DIR/gnuplot.log; 0 when it exited 0 */
static int run_gnuplot(const char *dir, char *err, size_t errlen) {
  char script[4200], log[4200];
  snprintf(script, sizeof script, "%s/plot.gp", dir);
  snprintf(log, sizeof log, "%s/gnuplot.log", dir);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  char *argv[] = {"gnuplot", script, NULL};
  pid_t pid;
  int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc == ENOENT)
    return errbuf_set(err, errlen, "gnuplot is not installed (Debian: apt-get install gnuplot-nox)");
  if (rc) return errbuf_set(err, errlen, "cannot run gnuplot: %s", strerror(rc));
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errbuf_set(err, errlen, "waiting for gnuplot: %s", strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  /* its first message line says why */
  char line[300] = "";
  FILE *f = fopen(log, "r");
  while (f && fgets(line, sizeof line, f) && (line[0] == '\n' || line[0] == ' ')) line[0] = '\0';
  if (f) fclose(f);
  line[strcspn(line, "\n")] = '\0';
  return errbuf_set(err, errlen, "gnuplot failed%s%s", *line ? ": " : "", line);
}

static void remove_dir(const char *dir, int n) {
  char path[4200];
  static const char *const fixed[] = {"plot.gp", "plot.png", "gnuplot.log"};
  for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++) {
    snprintf(path, sizeof path, "%s/%s", dir, fixed[k]);
    unlink(path);
  }
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/steps%d.dat", dir, i);
    unlink(path);
    snprintf(path, sizeof path, "%s/epochs%d.dat", dir, i);
    unlink(path);
  }
  rmdir(dir);
}

int plot_png(const char *path, const PlotRun *runs, int n, char *err, size_t errlen) {
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s/nncc-plot-XXXXXX", tmp && *tmp ? tmp : "/tmp") >= (int)sizeof dir)
    return errbuf_set(err, errlen, "TMPDIR is too long");
  if (!mkdtemp(dir)) return errbuf_set(err, errlen, "cannot create a directory '%s': %s", dir, strerror(errno));
  int rc = -1;
  for (int i = 0; i < n; i++)
    if (write_data(dir, i, &runs[i])) {
      errbuf_set(err, errlen, "cannot write the plot's data in '%s': %s", dir, strerror(errno));
      goto out;
    }
  if (write_script(dir, runs, n)) {
    errbuf_set(err, errlen, "cannot write the plot's script in '%s': %s", dir, strerror(errno));
    goto out;
  }
  if (run_gnuplot(dir, err, errlen)) goto out;
  char png[4200];
  snprintf(png, sizeof png, "%s/plot.png", dir);
  size_t len = 0;
  char *data = fio_read_file(png, (size_t)1 << 30, &len);
  if (!data || len == 0)
    errbuf_set(err, errlen, "gnuplot wrote no picture");
  else if (fio_write_file(path, data, len) != 0)
    errbuf_set(err, errlen, "%s: cannot write: %s", path, fio_strerror(errno));
  else
    rc = 0;
  free(data);
out:
  remove_dir(dir, n);
  return rc;
}

/* ---- reading --log / --step-log files ---- */

enum { MAX_POINTS = 10000000, MAX_LINE = 4096 };

/* the number after "KEY": in a line, or NaN (absent, or null) */
static double field(const char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(line, pat);
  if (!p) return NAN;
  p += strlen(pat);
  p += strspn(p, " \t");
  if (*p++ != ':') return NAN;
  char *end;
  double v = strtod(p, &end); /* skips blanks; null reads as nothing */
  return end == p ? NAN : v;
}

static int grow(void **p, int *cap, int n, size_t size) {
  if (n < *cap) return 0;
  int nc = *cap ? 2 * *cap : 256;
  void *q = realloc(*p, (size_t)nc * size);
  if (!q) return -1;
  *p = q;
  *cap = nc;
  return 0;
}

int plot_add_step(PlotRun *run, double step, double loss) {
  int cap = run->step_cap; /* the two arrays grow together */
  if (grow((void **)&run->step, &cap, run->nsteps, sizeof *run->step) ||
      grow((void **)&run->step_loss, &run->step_cap, run->nsteps, sizeof *run->step_loss))
    return -1;
  run->step[run->nsteps] = step;
  run->step_loss[run->nsteps++] = loss;
  return 0;
}

int plot_add_epoch(PlotRun *run, PlotEpoch e) {
  if (grow((void **)&run->epochs, &run->epoch_cap, run->nepochs, sizeof *run->epochs)) return -1;
  run->epochs[run->nepochs++] = e;
  return 0;
}

int plot_read_jsonl(const char *path, const char *label, PlotRun *run, char *err, size_t errlen) {
  memset(run, 0, sizeof *run);
  run->label = label;
  int fd = fio_open_read(path);
  FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
  if (!f) {
    if (fd >= 0) close(fd);
    return errbuf_set(err, errlen, "%s: %s", path, fio_strerror(errno));
  }
  char line[MAX_LINE + 2];
  int lineno = 0, rc = -1;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len > MAX_LINE) {
      errbuf_set(err, errlen, "%s:%d: a line longer than %d bytes: not a --log or --step-log file", path,
           lineno, MAX_LINE);
      goto out;
    }
    if (line[strspn(line, " \t\r\n")] == '\0') continue;
    if (run->nsteps + run->nepochs >= MAX_POINTS) {
      errbuf_set(err, errlen, "%s:%d: more than %d points", path, lineno, MAX_POINTS);
      goto out;
    }
    /* the kind of line by its first key: {"step": ...} or {"epoch": ...}
     * (json.dumps's spaces allowed, as in bench/torch_accuracy.py's) */
    const char *k = line + strspn(line, " \t");
    k = *k == '{' ? k + 1 + strspn(k + 1, " \t") : k;
    if (strncmp(k, "\"step\"", 6) == 0) {
      double step = field(line, "step");
      if (!isfinite(step)) {
        errbuf_set(err, errlen, "%s:%d: a step line without a step number", path, lineno);
        goto out;
      }
      if (plot_add_step(run, step, field(line, "loss"))) {
        errbuf_set(err, errlen, "%s: out of memory", path);
        goto out;
      }
    } else if (strncmp(k, "\"epoch\"", 7) == 0) {
      double e = field(line, "epoch");
      if (!(e >= 1 && e <= 1e9) ||
          plot_add_epoch(run, (PlotEpoch){(int)e, field(line, "loss"), field(line, "test_loss"),
                                          field(line, "test_acc"), field(line, "val_loss"),
                                          field(line, "val_acc")})) {
        errbuf_set(err, errlen, "%s:%d: %s", path, lineno, e >= 1 && e <= 1e9 ? "out of memory" : "a bad epoch number");
        goto out;
      }
    } else {
      errbuf_set(err, errlen, "%s:%d: neither a --log nor a --step-log line", path, lineno);
      goto out;
    }
  }
  if (ferror(f)) {
    errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
    goto out;
  }
  if (run->nsteps + run->nepochs == 0) {
    errbuf_set(err, errlen, "%s: no --log or --step-log lines", path);
    goto out;
  }
  rc = 0;
out:
  fclose(f);
  if (rc) plot_free(run);
  return rc;
}

void plot_free(PlotRun *run) {
  free(run->step);
  free(run->step_loss);
  free(run->epochs);
  run->step = run->step_loss = NULL;
  run->epochs = NULL;
  run->nsteps = run->nepochs = run->step_cap = run->epoch_cap = 0;
}
