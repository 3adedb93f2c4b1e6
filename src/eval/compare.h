/* compare.h - a learned optimizer against tuned hand-designed baselines on held-out
 * seeds (docs/design.md sections 4 and 6): the engine behind `lopt compare`.
 *
 * Baselines are named NAME or NAME:SCHEDULE (adam, adam:cosine, momentum:linear, ...):
 * a bare name trains at a constant learning rate without warm-up; a :const, :cosine
 * or :linear suffix adds that schedule over the run's steps after a linear warm-up
 * (opts.warmup; src/optim/optim.h maps both to torch.optim.lr_scheduler). Each pair is
 * its own row, its (peak) learning rate tuned like any other.
 *
 * Protocol:
 *  1. Tuning. Each baseline's learning rate is chosen on a log grid (grid_points
 *     values over [lr_lo, lr_hi], by default a range around torch's default, see
 *     lopt_compare_lr_range) by the mean final validation loss over the TUNING
 *     seeds 10000, 10001, ... (disjoint from the test seeds; overlap is refused).
 *     A run that diverges, or ends with a non-finite validation loss, counts as
 *     +inf. A chosen lr on the edge of the grid is flagged: the grid may be too
 *     narrow.
 *  2. Test. The learned optimizer (if any) and every tuned baseline train the task
 *     from scratch on every test seed for `steps` steps, evaluating the full
 *     validation split every eval_every steps.
 *  3. Aggregates over test seeds: mean, sample std (n-1; 0 for one seed), min and
 *     max of the final train loss (mean minibatch loss over the last evaluation
 *     interval), validation loss and accuracy, test loss and accuracy, and training
 *     wall-clock (evaluation excluded); seed-mean curves with min..max bands.
 *     A test run that diverges has final losses +inf and accuracies NaN, and its
 *     missing curve rows count as +inf.
 *  4. Speedup. Target = the final mean validation loss of the best tuned baseline
 *     (lowest final mean validation loss, scheduled ones included: the strongest).
 *     For every optimizer: the first point, linearly interpolated between
 *     evaluation rows of its seed-mean validation curve, where the curve reaches
 *     the target; the step and mean wall-clock there; speedup = best baseline's
 *     steps / that step, and its mean total wall-clock / that time. NaN ("not
 *     reached") when the curve never gets there.
 *     When a plain `adam` row is in the comparison (tuned constant-lr Adam, the
 *     paper's reference), the same is reported against its final mean validation
 *     loss and wall-clock too (adam_* fields).
 *
 * Parallel runs: only the tuning runs (their wall-clock is not reported) may run
 * on several workers (jobs > 1, each with its own task from make_task), and under
 * MPI on several ranks (core/dist.h; lopt_compare_run is then collective, ranks
 * other than 0 return after the tuning with res holding the tuning rows alone).
 * The test runs, whose wall-clock the speedups use, run one at a time with every
 * core, on rank 0.
 *
 * Left out: tuning anything but the learning rate, tuning the learned optimizer
 * (it has no learning rate).
 *
 * Intended usage (src/cli/cmd_compare.c adds flags, progress, MPI and output checks):
 *
 *     const char *baselines[] = {"adam", "adam:cosine"};
 *     lopt_compare_opts o;
 *     lopt_compare_opts_default(&o);                          // every default lives here
 *     o.baselines = baselines, o.nbaselines = 2;
 *     o.arch = &arch, o.theta = theta, o.make_task = ...;
 *     if (lopt_compare_check(&o, &err) != LOPT_OK) ...        // bad options
 *     lopt_outdir_create(dir, &err);                          // fail before the runs
 *     lopt_compare_result r;
 *     if (lopt_compare_run(&task, &o, &r, &err) == LOPT_OK)   // compare.c: the engine
 *         lopt_compare_write(&r, dir, &err);                  // compare_report.c
 *     lopt_compare_free(&r);
 */
#ifndef LOPT_COMPARE_H
#define LOPT_COMPARE_H

#include <stdint.h>

#include "core/core.h"
#include "eval/train.h"
#include "lopt/mlp_lopt.h"
#include "tasks/task.h"

#define LOPT_COMPARE_MAX_OPT 12       /* baselines + the learned optimizers */
#define LOPT_COMPARE_MAX_SEEDS 64
#define LOPT_COMPARE_MAX_GRID 64
#define LOPT_COMPARE_TUNE_SEED0 10000 /* tuning seeds are 10000, 10001, ... */
#define LOPT_COMPARE_WARMUP_DEFAULT (-1)

/* What is running, for progress displays. */
typedef struct {
    const char *phase;       /* "tuning" or "test" */
    const char *optimizer;   /* "adam", ..., "learned" */
    double lr;               /* NaN for the learned optimizer */
    uint64_t seed;
    int run, nruns;          /* 1-based index of this run over the whole comparison */
} lopt_compare_run_info;

/* A further learned optimizer, a row of its own (e.g. the untrained warm start of the
 * meta-trained one). */
typedef struct {
    const char *name;              /* the row's name: letters, digits, '_', '-', '.' */
    const lopt_arch *arch;
    const float *theta;
    const char *source;            /* shown in reports (the .lopt path); may be NULL */
} lopt_compare_learned;

#define LOPT_COMPARE_MAX_EXTRA 3

typedef struct {
    int64_t steps;                 /* > 0 */
    int64_t eval_every;            /* 0: steps/20 (at least 1) */
    /* (nbaselines) NAME or NAME:SCHEDULE, NAME one that lopt_optimizer_create knows */
    const char *const *baselines;
    int nbaselines;
    /* warm-up steps of the baselines with a :SCHEDULE suffix; LOPT_COMPARE_WARMUP_DEFAULT:
     * lopt_schedule_default_warmup(schedule, steps) */
    int64_t warmup;
    const double *lr_lo, *lr_hi;   /* (nbaselines) grid ranges, or NULL: the defaults */
    int grid_points;               /* >= 2 */
    const uint64_t *seeds;         /* (nseeds) test seeds, distinct */
    int nseeds;
    int tune_seeds;                /* tuning seeds 10000 .. 10000+tune_seeds-1 */
    /* the learned optimizer, or arch == NULL for baselines only */
    const lopt_arch *arch;
    const float *theta;
    const char *learned_source;    /* shown in reports (the .lopt path); may be NULL */
    /* (nextra) further learned optimizers, rows after "learned"; lopt_compare_check
     * looks at their names only, so arch and theta may be filled in after it */
    const lopt_compare_learned *extra;
    int nextra;
    /* tuning runs in parallel on `jobs` workers (0: as many as OpenMP threads,
     * 1: one at a time); each worker but the first gets its own task from
     * make_task (the same task, a fresh object); NULL: one at a time */
    int jobs;
    lopt_status (*make_task)(void *user, lopt_task *t, lopt_err *err);

    void (*on_run)(void *user, const lopt_compare_run_info *info);   /* may be NULL */
    void (*on_step)(void *user, int64_t step, int64_t steps, double loss); /* may be NULL */
    /* after a baseline's tuning (may be NULL) */
    void (*on_tuned)(void *user, const char *name, double lr, double valid_loss, int edge);
    void *user;
} lopt_compare_opts;

typedef struct {
    double mean, std, min, max;
} lopt_stat;

typedef struct {
    int opt;                       /* index into lopt_compare_result.opt */
    double lr;
    uint64_t seed;
    double final_valid_loss;       /* +inf when the run diverged */
} lopt_tuning_row;

typedef struct {
    char name[32];                 /* "adam", "adam:cosine", ..., "learned", an extra's */
    int learned;                   /* 1 "learned" (opts.arch), 2 + k opts.extra[k] */
    char source[512];              /* learned rows: the .lopt path */
    /* baselines: the optimizer, and its schedule (.steps = the run's steps) */
    char optim[16];                /* "adam" */
    int scheduled;                 /* named with a :SCHEDULE suffix */
    lopt_schedule sched;
    /* tuning (baselines) */
    double lr;                     /* chosen; NaN for the learned optimizer */
    double lr_lo, lr_hi;           /* grid range */
    int grid_points;
    double *grid_lr, *grid_loss;   /* (grid_points) lr and mean final valid loss */
    int lr_edge;                   /* -1 lowest grid point, +1 highest, 0 inside */
    /* test runs, one per seed */
    int nseeds;
    lopt_train_result *runs;       /* (nseeds) */
    int ndiverged;
    lopt_stat train_loss, valid_loss, valid_acc, test_loss, test_acc, time_s;
    /* seed-mean curve over the evaluation rows */
    int nrows;
    double *step, *time_mean;                        /* (nrows) */
    double *train_mean, *train_min, *train_max;      /* (nrows) */
    double *valid_mean, *valid_min, *valid_max;      /* (nrows) */
    /* reaching the best baseline's final mean valid loss (NaN: not reached) */
    double reach_step, reach_time, speedup_steps, speedup_time;
    /* the same against tuned constant-lr adam (NaN without an `adam` row) */
    double adam_reach_step, adam_reach_time, adam_speedup_steps, adam_speedup_time;
} lopt_compare_entry;

typedef struct {
    int64_t steps, eval_every;
    int grid_points;
    int nseeds;
    uint64_t seeds[LOPT_COMPARE_MAX_SEEDS];
    int tune_seeds;
    char task[64];
    char learned_source[512];      /* "" without a learned optimizer */
    int nopt;
    lopt_compare_entry opt[LOPT_COMPARE_MAX_OPT];   /* the learned optimizers first */
    int best;                      /* index of the best tuned baseline, -1: none */
    double target;                 /* its final mean valid loss */
    int adam;                      /* index of the plain `adam` row, -1: none */
    double adam_target;            /* its final mean valid loss (NaN: none, or diverged) */
    lopt_tuning_row *tuning;       /* (ntuning) every tuning run */
    int ntuning;
    double elapsed_s;              /* wall-clock of the whole comparison */
} lopt_compare_result;

/* The defaults, in one place: 1000 steps, baselines adam, rmsprop and momentum,
 * warm-up LOPT_COMPARE_WARMUP_DEFAULT, a 7-point grid, test seeds 1000..1002, one
 * tuning seed, evaluation every steps/20, tuning on every core; no learned
 * optimizer and no callbacks. The arrays are static. */
void lopt_compare_opts_default(lopt_compare_opts *o);

/* Default learning-rate grid range for a baseline (NAME or NAME:SCHEDULE; the
 * schedule does not change it), around torch's default: adam, rmsprop [1e-4, 1e-1];
 * sgd, momentum, nesterov [1e-3, 1]. LOPT_EUSAGE for a name lopt_optimizer_create does
 * not know. */
lopt_status lopt_compare_lr_range(const char *name, double *lo, double *hi, lopt_err *err);

/* Checks the options without running anything (names, duplicates, seed overlap,
 * ranges). LOPT_EUSAGE with a one-line reason. */
lopt_status lopt_compare_check(const lopt_compare_opts *o, lopt_err *err);

/* Runs the whole comparison on task t. res is always initialised (free it with
 * lopt_compare_free, also on failure). LOPT_EUSAGE for bad options, LOPT_EDIVERGED
 * when a baseline diverged at every grid point, LOPT_EUSAGE/ENOMEM from creating
 * an optimizer. */
lopt_status lopt_compare_run(lopt_task *t, const lopt_compare_opts *o,
                             lopt_compare_result *res, lopt_err *err);
void lopt_compare_free(lopt_compare_result *res);

/* compare_report.c: writes curves.csv, tuning.csv, summary.json, summary.md and the four plots
 * (valid_loss_vs_step, valid_loss_vs_time, train_loss_vs_step, and
 * train_valid_loss_vs_step: training and validation loss side by side; .svg and
 * .png) into dir, creating it (and its parents) if missing. Every file atomically. */
lopt_status lopt_compare_write(const lopt_compare_result *res, const char *dir,
                               lopt_err *err);

/* The summary (header lines, warnings, the table) as Markdown: malloc'ed text,
 * caller frees. The same text as summary.md. */
char *lopt_compare_markdown(const lopt_compare_result *res);

/* The first point where y (n rows) gets to target or below, as a fractional row
 * index pos in [0, n-1] linearly interpolated between the two rows around the
 * crossing (y[i-1] > target >= y[i]). Returns 0 and pos = NaN when y never gets
 * there; non-finite rows never count as reached. */
int lopt_compare_reach(const double *y, int n, double target, double *pos);
/* x (n) at fractional row index pos (linear interpolation). */
double lopt_compare_at(const double *x, int n, double pos);

/* The grid point with the lowest loss (first of ties; non-finite never wins);
 * *edge = -1 / +1 when it is the first / last of n >= 2 points, else 0. Returns -1
 * when no loss is finite. */
int lopt_compare_pick(const double *loss, int n, int *edge);

#endif
