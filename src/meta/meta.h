/* meta.h - meta-training: outer steps over the estimators of estimator.h
 * (docs/design.md sections 1.3 and 1.4), Adam on theta, progress measured at the full
 * horizon, checkpoints that resume exactly.
 *
 * One outer step runs S antithetic pairs, one per trajectory s, with common random
 * numbers inside a pair, and combines their estimates:
 *   rp, es, merged: a fresh eps_s ~ N(0, sigma^2 I) per step; the pair starts from
 *        trajectory s's state and the trajectory carries on from the + side.
 *   pes: each trajectory keeps a + and a - state across truncations and the sum xi
 *        of its perturbations since its last reset; g_es = (L+ - L-) xi / (2 sigma^2).
 *   nres (noise-reuse ES, Li et al. 2023): + and - states kept across truncations
 *        as for pes, but one eps per trajectory life, reused for every truncation of
 *        that life; g_es = (L+ - L-) eps / (2 sigma^2). Unbiased for the smoothed
 *        whole-life loss, with a variance no worse than pes.
 *   fulles: each pair trains a fresh task instance over the whole horizon (no
 *        truncation); the outer loss is the loss at the end (outer weight `end`,
 *        over outer_batches batches), optionally sign/rank shaped.
 * Truncated estimators weigh the steps of a truncation by the outer weight
 * (unroll.h: mean, end, tail:F). `train` restricts the coordinates of theta that
 * move (lopt_arch_train_mask): the others get no noise and no update.
 * The merge may pool the variances over the last `pool` outer steps' samples.
 * Samples run on OpenMP threads, each with its own task object, and are reduced in
 * sample order, so the result does not depend on the thread count - nor on the
 * number of MPI ranks they are split over (meta/dist.h).
 *
 * Progress at the horizon: with eval_every > 0 and an evaluator (the caller's:
 * src/eval's lopt_horizon_eval for the CLI), theta is trained over the full
 * horizon on the eval seeds before the first step and after every eval_every
 * steps; the log gets the mean final validation loss and the mean over the
 * horizon, and the best theta so far by the final loss is kept (checkpointed).
 *
 * Intended usage (src/cli/cmd_meta.c is the whole of it, with checkpoints, MPI and
 * the best-theta file):
 *
 *     lopt_meta_cfg cfg;
 *     lopt_meta_cfg_default(&cfg);              // every default lives here
 *     cfg.estimator = LOPT_EST_MERGED; cfg.K = 20; cfg.outer_steps = 200;
 *     lopt_meta *m;
 *     if (lopt_meta_create(&m, &cfg, &err) != LOPT_OK) ...   // err.msg says why
 *     while (lopt_meta_steps_done(m) < cfg.outer_steps) {
 *         lopt_meta_row row;                    // one log row: losses, variances, w_es
 *         if (lopt_meta_step(m, &row, &err) != LOPT_OK) break;
 *         if (row.step % 50 == 0) lopt_meta_save(m, "run.ckpt", &err);   // resumable
 *     }
 *     const float *theta = lopt_meta_theta(m);  // with lopt_meta_arch(m): a .lopt
 *     lopt_meta_free(m);
 *
 * lopt_meta_load continues a saved run bit-identically; lopt_meta_set_evaluator
 * (src/eval/horizon.h) turns on the full-horizon evaluation.
 */
#ifndef LOPT_META_H
#define LOPT_META_H

#include <stdint.h>

#include "lopt/mlp_lopt.h"
#include "meta/estimator.h"
#include "meta/unroll.h"

typedef enum {
    LOPT_EST_RP, LOPT_EST_ES, LOPT_EST_MERGED, LOPT_EST_PES, LOPT_EST_NRES, LOPT_EST_FULLES,
    LOPT_EST_COUNT
} lopt_est_kind;
extern const char *const lopt_est_names[];   /* indexed by lopt_est_kind */

#define LOPT_META_MAX_EVAL 16    /* evaluation seeds */

typedef struct {
    char task[64];
    char arch[16];            /* preset name */
    lopt_est_kind estimator;
    int K;                    /* truncation length (the start of the schedule) */
    int K_max;                /* > K: grow K linearly to K_max over K_grow outer steps,
                               * each draw jittered by U(0.8, 1.2); 0: constant K */
    int64_t K_grow;
    int samples;              /* S: antithetic pairs = trajectories per outer step */
    float sigma;              /* perturbation scale */
    lopt_split outer_split;   /* train or valid */
    float outer_lr;           /* Adam on theta */
    float grad_clip;          /* clip the outer gradient by value (<= 0: off) */
    int64_t outer_steps;
    int64_t horizon;          /* inner steps per trajectory (jittered U(0.8, 1.2)) */
    uint64_t seed;
    float loss_clip;          /* outer losses clipped here (the authors: 10) */
    float diverge_factor;     /* inner loss > factor * initial = diverged */
    int first_order;          /* rp without the inner HVP (an approximation) */
    int threads;              /* 0: all (OpenMP) */
    lopt_outer_weight weight; /* truncated estimators: mean, end, tail:F */
    int outer_batches;        /* batches averaged per outer-loss evaluation */
    int pool;                 /* merged: variances from the last `pool` steps' samples */
    lopt_shape_kind shape;    /* es loss differences: none, sign, rank */
    char train[16];           /* coordinates that move: all | nominal | schedule */
    int64_t eval_every;       /* full-horizon evaluation every N outer steps (0: off) */
    int neval;                /* evaluation seeds (tuning seeds, never test seeds) */
    uint64_t eval_seeds[LOPT_META_MAX_EVAL];
    int eval_points;          /* evaluations along the horizon for the mean column */
} lopt_meta_cfg;

/* Defaults in one place (sized for this 2-core machine and fmnist8-mlp). */
void lopt_meta_cfg_default(lopt_meta_cfg *c);

/* What one outer step did: a row of the log (the --log CSV's columns, in order). */
typedef struct {
    int64_t step;             /* outer steps completed */
    double outer_loss;        /* mean over samples and both sides */
    double g_rp_norm, g_es_norm;   /* norms of the two mean estimates (NaN if absent) */
    double v_rp, v_es;        /* their per-coordinate variances, summed */
    double w_es;              /* mean es weight of the merge (1 for es, 0 for rp) */
    int K;                    /* truncation length used */
    double inner_steps_per_s;
    int64_t resets, diverged; /* totals so far */
    int skipped;              /* the update was refused (non-finite gradient) */
    double time_s;            /* wall-clock so far (all sessions) */
    double eval_final;        /* mean final validation loss at the horizon (NaN: not
                               * evaluated at this step) */
    double eval_mean;         /* mean validation loss over the horizon (NaN: idem) */
} lopt_meta_row;

/* The log's CSV header line (with its newline), and the log as CSV text: the header,
 * then a line per row, NaN as an empty field (malloc'ed; the caller frees it). */
extern const char lopt_meta_csv_header[];
char *lopt_meta_log_csv(const lopt_meta_row *rows, size_t n);

typedef struct lopt_meta lopt_meta;

/* Creates a run (tasks per thread, trajectories, theta from the preset's init). */
lopt_status lopt_meta_create(lopt_meta **m, const lopt_meta_cfg *cfg, lopt_err *err);
/* One outer step (with eval_every > 0, the first call evaluates the starting
 * theta first, as a log row of step 0). LOPT_EUSAGE when eval_every > 0 and no
 * evaluator was set; an evaluator's failure is returned as it is. */
lopt_status lopt_meta_step(lopt_meta *m, lopt_meta_row *row, lopt_err *err);

/* The full-horizon evaluation of theta: *final = mean over the evaluation seeds
 * of the final validation loss (+inf if a run diverged), *mean = the mean over
 * the horizon. */
typedef lopt_status (*lopt_meta_eval_fn)(void *user, const lopt_arch *a, const float *theta,
                                         double *final, double *mean, lopt_err *err);
void lopt_meta_set_evaluator(lopt_meta *m, lopt_meta_eval_fn fn, void *user);
/* The best theta evaluated so far: returns 0 if none; else its outer step and
 * final loss, and a pointer to it (valid until the next step). */
int lopt_meta_best(const lopt_meta *m, const float **theta, int64_t *step, double *final);
void lopt_meta_free(lopt_meta *m);

const lopt_meta_cfg *lopt_meta_config(const lopt_meta *m);
const lopt_arch *lopt_meta_arch(const lopt_meta *m);
const float *lopt_meta_theta(const lopt_meta *m);
/* The combined outer gradient of the last step (before clipping), np floats. */
const float *lopt_meta_gradient(const lopt_meta *m);
int64_t lopt_meta_steps_done(const lopt_meta *m);
/* Replaces theta (a warm start, before the first step): LOPT_EUSAGE if a is not the
 * run's architecture. */
lopt_status lopt_meta_set_theta(lopt_meta *m, const lopt_arch *a, const float *theta,
                                lopt_err *err);
/* Raises the outer-step target (resume with a longer run). */
void lopt_meta_set_outer_steps(lopt_meta *m, int64_t steps);
/* Changes the evaluation interval (resume; 0 turns it off). */
void lopt_meta_set_eval_every(lopt_meta *m, int64_t every);

/* The log so far, a row per outer step (and row 0, the starting theta's
 * evaluation, with eval_every > 0), kept in the checkpoint: sets *rows (valid until
 * the next step) and returns their count. */
size_t lopt_meta_rows(const lopt_meta *m, const lopt_meta_row **rows);

/* Checkpoint: everything needed to continue exactly (config, theta, Adam state,
 * RNG counters, live trajectories, the log), CRC-checked, written atomically, at most
 * LOPT_META_CKPT_MAX bytes (a larger one is neither written nor read; the reader
 * refuses a file without the checkpoint magic before reading further). */
#define LOPT_META_CKPT_MAX ((size_t)2 << 30)
lopt_status lopt_meta_save(const lopt_meta *m, const char *path, lopt_err *err);
lopt_status lopt_meta_load(lopt_meta **m, const char *path, lopt_err *err);
/* The same from a checkpoint's bytes in memory (path: its name in messages). */
lopt_status lopt_meta_load_image(lopt_meta **m, const unsigned char *data, size_t len,
                                 const char *path, lopt_err *err);

/* Under MPI (meta/dist.h; docs/scale-out.md) every rank runs its block of the
 * samples and the steps stay identical on every rank. lopt_meta_gather brings
 * every trajectory to rank 0, which alone then saves: call it on every rank
 * before each checkpoint (nothing to do on one rank). */
void lopt_meta_gather(lopt_meta *m);
/* Hashes (FNV-1a) of the configuration (the thread count left out: it does not
 * change the numbers) and of the state (architecture, theta, Adam, counters),
 * which the ranks compare before the first step. */
void lopt_meta_fingerprint(const lopt_meta *m, uint64_t *cfg_hash, uint64_t *state_hash);

/* Parses an estimator name; -1 if unknown. */
int lopt_est_parse(const char *name);

#endif
