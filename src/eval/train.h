/* train.h - one training run: a task, an optimizer, N steps, periodic evaluation
 * on the full validation split; the curve that `lopt train`, `lopt compare` and
 * the benchmarks report. */
#ifndef LOPT_TRAIN_H
#define LOPT_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "optim/optim.h"
#include "tasks/task.h"

typedef struct {
    int64_t step;        /* steps taken */
    double train_loss;   /* mean minibatch loss over the steps since the last row */
    double valid_loss;   /* full validation split */
    double valid_acc;
    double time_s;       /* training wall-clock so far, evaluation time excluded */
} lopt_curve_row;

typedef struct {
    int64_t steps;
    int64_t eval_every;  /* 0: only at the start and the end */
    uint64_t seed;       /* initialisation and data order */
    /* called after each step (may be NULL): progress display */
    void (*on_step)(void *user, int64_t step, int64_t steps, double loss);
    /* called after each evaluation row (may be NULL) */
    void (*on_eval)(void *user, const lopt_curve_row *row);
    void *user;
    /* if not NULL, checked before every step: non-zero stops the run (a signal) */
    const volatile sig_atomic_t *stop;
} lopt_train_opts;

typedef struct {
    lopt_curve_row *rows;   /* rows[0] is step 0 (before training) */
    int nrows;
    int64_t diverged_at;    /* step whose loss was not finite, or -1 */
    double test_loss, test_acc;   /* filled by lopt_train_run at the end */
} lopt_train_result;

/* Trains from a fresh initialisation. Stops early, with diverged_at set and status
 * LOPT_EDIVERGED, when a minibatch loss or an element of its gradient is NaN/inf
 * (the step is not taken). When *opts->stop becomes non-zero it stops before the
 * next step with LOPT_EINTR, after a row for the steps since the last one. The rows
 * up to then are kept either way. w (t->n) receives the final parameters if not
 * NULL. */
lopt_status lopt_train_run(lopt_task *t, lopt_optimizer *o, const lopt_train_opts *opts,
                           lopt_train_result *res, float *w, lopt_err *err);
void lopt_train_result_free(lopt_train_result *res);

/* The curve as CSV (header step,train_loss,valid_loss,time_s), written atomically. */
lopt_status lopt_curve_write_csv(const char *path, const lopt_train_result *res,
                                 lopt_err *err);

#endif
