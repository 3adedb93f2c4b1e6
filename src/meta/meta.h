/* meta.h - meta-training: the rp, es, merged and pes estimators of the outer
 * gradient (DESIGN.md section 1.3), Adam on theta, checkpoints that resume
 * exactly.
 *
 * One outer step draws S perturbations eps_s ~ N(0, sigma^2 I), one per trajectory
 * s, and unrolls an antithetic pair theta + eps_s, theta - eps_s from the same
 * inner state with the same batches (common random numbers). Per sample:
 *   rp : g_rp,s = (grad L(theta+eps_s) + grad L(theta-eps_s)) / 2   (backprop, exact)
 *   es : g_es,s = (L(theta+eps_s) - L(theta-eps_s)) eps_s / (2 sigma^2)
 * both unbiased for the gradient of the smoothed loss E_eps L(theta + eps).
 *   merged: per coordinate, inverse-variance weighting of the two sample means,
 *           with unbiased sample variances (S - 1) plus a floor of 1e-8.
 *   pes: each trajectory keeps a + and a - state across truncations and the sum xi
 *        of its perturbations since its last reset; g = (L+ - L-) xi / (2 sigma^2).
 * The trajectory carries on from the + side's final state (pes: both sides).
 * The per-sample estimates are reduced by sums (means and second moments), so
 * samples can be computed anywhere and combined; within a process the samples run
 * on OpenMP threads, each with its own task object, and are summed in sample order
 * so the result does not depend on the thread count.
 */
#ifndef LOPT_META_H
#define LOPT_META_H

#include <stdint.h>

#include "lopt/mlp_lopt.h"
#include "meta/unroll.h"

typedef enum { LOPT_EST_RP, LOPT_EST_ES, LOPT_EST_MERGED, LOPT_EST_PES } lopt_est_kind;
extern const char *const lopt_est_names[];   /* indexed by lopt_est_kind */

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
} lopt_meta_cfg;

/* Defaults in one place (sized for this 2-core machine and fmnist8-mlp). */
void lopt_meta_cfg_default(lopt_meta_cfg *c);

/* What one outer step did: a CSV row. */
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
} lopt_meta_row;

extern const char lopt_meta_csv_header[];

typedef struct lopt_meta lopt_meta;

/* Creates a run (tasks per thread, trajectories, theta from the preset's init). */
lopt_status lopt_meta_create(lopt_meta **m, const lopt_meta_cfg *cfg, lopt_err *err);
/* One outer step. */
lopt_status lopt_meta_step(lopt_meta *m, lopt_meta_row *row, lopt_err *err);
void lopt_meta_free(lopt_meta *m);

const lopt_meta_cfg *lopt_meta_config(const lopt_meta *m);
const lopt_arch *lopt_meta_arch(const lopt_meta *m);
const float *lopt_meta_theta(const lopt_meta *m);
int64_t lopt_meta_steps_done(const lopt_meta *m);
/* Replaces theta (a warm start, before the first step): LOPT_EUSAGE if a is not the
 * run's architecture. */
lopt_status lopt_meta_set_theta(lopt_meta *m, const lopt_arch *a, const float *theta,
                                lopt_err *err);
/* Raises the outer-step target (resume with a longer run). */
void lopt_meta_set_outer_steps(lopt_meta *m, int64_t steps);

/* The CSV log so far (header + one line per step), kept in the checkpoint. */
const char *lopt_meta_log(const lopt_meta *m);

/* Checkpoint: everything needed to continue exactly (config, theta, Adam state,
 * RNG counters, live trajectories, the log), CRC-checked, written atomically. */
lopt_status lopt_meta_save(const lopt_meta *m, const char *path, lopt_err *err);
lopt_status lopt_meta_load(lopt_meta **m, const char *path, lopt_err *err);

/* The merge, on sums over S samples (sum and sum of squares per coordinate):
 * g (np) = inverse-variance weighted mean; returns the mean es weight and the
 * summed variances. Exposed for tests. */
double lopt_merge(const double *sum_rp, const double *sq_rp, const double *sum_es,
                  const double *sq_es, int S, size_t np, float *g, double *v_rp,
                  double *v_es);

#endif
