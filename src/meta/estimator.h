/* estimator.h - the outer-gradient estimators as three pieces that every caller
 * (meta-training, `lopt pathology gradvar`, tests, the bench) shares
 * (docs/design.md section 1.3):
 *
 *  1. estimate one antithetic pair: theta + eps and theta - eps unrolled from the
 *     caller's two states (copies of one start, or two persistent states for pes
 *     and nres) with the same batches (common random numbers); the rp sample
 *         g_rp = (grad L(theta+eps) + grad L(theta-eps)) / 2     (exact backprop)
 *     and the es sample, from the pair's loss difference d = L+ - L-,
 *         g_es = d dir / (2 sigma^2)     (dir: eps; pes: the sum xi of its eps)
 *     both unbiased for the gradient of the smoothed loss E_eps L(theta + eps);
 *  2. accumulate the per-sample estimates as sums (sum and sum of squares per
 *     coordinate, in double): sums computed anywhere - other threads, other
 *     outer steps (pooling), other processes - combine by adding;
 *  3. combine the sums into one gradient: the mean of rp or of es, or the paper's
 *     merge, per coordinate by inverse variance with unbiased sample variances
 *     (S - 1) plus a floor of 1e-8:
 *         g = (m_rp / v_rp + m_es / v_es) / (1 / v_rp + 1 / v_es).
 *     A non-finite rp sample (an overflowed backprop through a chaotic unroll)
 *     has infinite variance: the merge then takes es alone.
 *
 * Beyond the paper, the loss differences of a step's S pairs may be shaped before
 * they make es samples (lopt_es_shape): by their sign or their centred rank,
 * rescaled to the mean |d| so the estimate stays on the loss's scale - robust to
 * the heavy tails of full-horizon losses.
 */
#ifndef LOPT_ESTIMATOR_H
#define LOPT_ESTIMATOR_H

#include <stddef.h>
#include <stdint.h>

#include "meta/unroll.h"

/* ---- 1. one antithetic pair ---------------------------------------------------- */

typedef struct {
    double loss_plus, loss_minus;   /* outer losses of the two sides */
    int steps;                      /* inner steps taken, both sides together */
    int diverged;                   /* either side diverged */
} lopt_pair_out;

/* Scratch for lopt_pair_estimate: theta +- eps and the - side's rp gradient. */
typedef struct {
    size_t np;
    float *theta_pm, *g_minus;      /* (np) */
} lopt_pair_ws;

void lopt_pair_ws_init(lopt_pair_ws *pw, size_t np);
void lopt_pair_ws_free(lopt_pair_ws *pw);

/* Unrolls theta + eps from *plus and theta - eps from *minus (advancing both).
 * With g_rp != NULL (np, overwritten) also the rp sample, by exact backprop
 * (ws must have a tape). Returns the two outer losses. */
lopt_pair_out lopt_pair_estimate(lopt_unroll_ws *ws, lopt_pair_ws *pw, const lopt_unroll_cfg *cfg,
                                 const float *theta, const float *eps, lopt_traj *plus,
                                 lopt_traj *minus, float *g_rp);

/* g_es (np) = d dir / (2 sigma^2). */
void lopt_es_sample(double d, float sigma, const float *dir, size_t np, float *g_es);

typedef enum { LOPT_SHAPE_NONE, LOPT_SHAPE_SIGN, LOPT_SHAPE_RANK } lopt_shape_kind;
extern const char *const lopt_shape_names[];   /* "none", "sign", "rank" */

/* Shapes the S loss differences d in place: sign -> sign(d) * mean|d|; rank ->
 * centred ranks (ties share their mean rank) scaled so that mean |.| = mean|d|.
 * none leaves d as it is. Non-finite differences are set to 0 first. */
void lopt_es_shape(lopt_shape_kind kind, double *d, int S);

/* ---- 2. sums of per-sample estimates --------------------------------------------- */

typedef struct {
    size_t np;
    int64_t count;                  /* samples added */
    int64_t rp_nonfinite;           /* rp samples with a non-finite coordinate */
    double *sum_rp, *sq_rp;         /* (np) */
    double *sum_es, *sq_es;         /* (np) */
} lopt_est_sums;

void lopt_est_sums_init(lopt_est_sums *s, size_t np);
void lopt_est_sums_clear(lopt_est_sums *s);
void lopt_est_sums_free(lopt_est_sums *s);
/* Adds one sample; g_rp or g_es may be NULL (that kind absent). */
void lopt_est_sums_add(lopt_est_sums *s, const float *g_rp, const float *g_es);
/* dst += src (same np). */
void lopt_est_sums_add_sums(lopt_est_sums *dst, const lopt_est_sums *src);

/* ---- 3. one gradient from the sums ----------------------------------------------- */

typedef enum { LOPT_COMBINE_RP, LOPT_COMBINE_ES, LOPT_COMBINE_MERGED } lopt_combine_kind;

typedef struct {
    double g_rp_norm, g_es_norm;    /* norms of the two mean estimates (NaN: absent) */
    double v_rp, v_es;              /* per-coordinate sample variances, summed (NaN: absent
                                     * or fewer than 2 samples; inf: rp overflowed) */
    double w_es;                    /* mean es weight (1 for es, 0 for rp) */
} lopt_est_stats;

/* g (np) from the means of `mean`; the merge weighs them by the variances of
 * `var` (the same sums, or sums pooled over more samples: the variance of one
 * sample changes slowly with theta, its mean must be today's). Merged needs
 * var->count >= 2. mask (np, may be NULL: all) marks the coordinates that are
 * trained; the mean es weight is over those. */
void lopt_est_combine(lopt_combine_kind kind, const lopt_est_sums *mean, const lopt_est_sums *var,
                      const unsigned char *mask, float *g, lopt_est_stats *st);

/* The merge on raw sums over S samples (the formula above): g (np); returns the
 * mean es weight and the summed variances. */
double lopt_merge(const double *sum_rp, const double *sq_rp, const double *sum_es,
                  const double *sq_es, int64_t S, size_t np, float *g, double *v_rp,
                  double *v_es);

#endif
