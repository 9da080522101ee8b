/* What rank 0 shows and records: progress lines (a live bar on a terminal),
 * metrics.csv (one row per logged step) and eval.csv (one row per
 * evaluation). Whole files are written atomically with io/params.h. */
#ifndef DL_METRICS_H
#define DL_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct dl_metrics {
    FILE *csv, *eval_csv;
    int tty;      /* stdout is a terminal: redraw one progress line */
    int bar_open; /* a progress line is on screen without its newline */
} dl_metrics_t;

typedef struct dl_step_stats {
    int64_t step, total_steps; /* step is 1-based: steps done */
    double epoch;              /* fractional epochs done */
    int64_t epochs_total;
    double loss, accuracy, lr, samples_per_s, elapsed_s, eta_s;
    double data_wait_ms; /* mean wait for the next batch per step and rank */
    double allreduce_ms; /* mean time in the gradient all-reduce per step and rank */
    double compute_ms;   /* the rest of the mean step time, per step and rank */
} dl_step_stats_t;

/* Create run_dir (and parents) and open its CSV files for writing. bar: 1 to
 * redraw one live progress line, 0 for plain lines, -1 to decide from stdout. */
int dl_metrics_open(dl_metrics_t *m, const char *run_dir, int bar, dl_err_t *err);
void dl_metrics_step(dl_metrics_t *m, const dl_step_stats_t *s);
void dl_metrics_eval(dl_metrics_t *m, int64_t step, double epoch, double loss, double accuracy);
/* Print a line of text, first ending any live progress line. */
void dl_metrics_say(dl_metrics_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dl_metrics_close(dl_metrics_t *m);

/* Create a directory and its parents (like mkdir -p). */
int dl_mkdirs(const char *path, dl_err_t *err);
#endif
