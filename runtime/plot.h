/*
 * plot.h -- training curves as a PNG through gnuplot (plot.c): `nncc plot`
 * over --log/--step-log files and `train --plot` over the run in progress.
 */
#ifndef NNCC_PLOT_H
#define NNCC_PLOT_H

#include <stddef.h>

typedef struct PlotEpoch {
  int epoch;                  /* 1-based */
  double loss, test_loss, test_acc;
  double val_loss, val_acc;   /* NaN: no --val */
} PlotEpoch;

typedef struct PlotRun {
  const char *label;          /* the legend's text */
  int nsteps;
  double *step, *step_loss;   /* the step (1-based) and its batch loss */
  int nepochs;
  PlotEpoch *epochs;
  int step_cap, epoch_cap;    /* the room in step[] and step_loss[], and in epochs[] */
} PlotRun;

/* Draws the runs into the PNG `path` (written atomically) with gnuplot.
 * 0, or -1 with one line in err (gnuplot missing or failing, a file). */
int plot_png(const char *path, const PlotRun *runs, int n, char *err, size_t errlen);
/* Reads a --step-log or --log file (or one holding both) into *run
 * (malloc'd arrays; plot_free), labelled `label`.  0, or -1 with one line
 * in err naming the file and line. */
int plot_read_jsonl(const char *path, const char *label, PlotRun *run, char *err, size_t errlen);
void plot_free(PlotRun *run);
/* Append a point, growing the arrays; -1 when memory runs out. */
int plot_add_step(PlotRun *run, double step, double loss);
int plot_add_epoch(PlotRun *run, PlotEpoch e);
/* 1 when gnuplot is on PATH. */
int plot_available(void);

#endif
