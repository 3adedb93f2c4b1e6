/* estimator.c - one antithetic pair, sums of per-sample estimates, and their
 * combination (see estimator.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "meta/estimator.h"

#define VAR_FLOOR 1e-8

const char *const lopt_shape_names[] = {"none", "sign", "rank"};

void lopt_pair_ws_init(lopt_pair_ws *pw, size_t np)
{
    pw->np = np;
    pw->theta_pm = lopt_floats(np);
    pw->g_minus = lopt_floats(np);
}

void lopt_pair_ws_free(lopt_pair_ws *pw)
{
    if (!pw) return;
    lopt_free(pw->theta_pm);
    lopt_free(pw->g_minus);
    memset(pw, 0, sizeof *pw);
}

lopt_pair_out lopt_pair_estimate(lopt_unroll_ws *ws, lopt_pair_ws *pw, const lopt_unroll_cfg *cfg,
                                 const float *theta, const float *eps, lopt_traj *plus,
                                 lopt_traj *minus, float *g_rp)
{
    const size_t np = pw->np;
    float *tp = pw->theta_pm, *gm = g_rp ? pw->g_minus : NULL;
    if (g_rp) {
        memset(g_rp, 0, np * sizeof(float));
        memset(gm, 0, np * sizeof(float));
    }
    for (size_t i = 0; i < np; i++) tp[i] = theta[i] + eps[i];
    lopt_unroll_out op = lopt_unroll(ws, cfg, tp, plus, g_rp);
    for (size_t i = 0; i < np; i++) tp[i] = theta[i] - eps[i];
    lopt_unroll_out om = lopt_unroll(ws, cfg, tp, minus, gm);
    if (g_rp)
        for (size_t i = 0; i < np; i++) g_rp[i] = 0.5f * (g_rp[i] + gm[i]);
    lopt_pair_out out = {op.loss, om.loss, op.steps + om.steps, op.diverged || om.diverged};
    return out;
}

void lopt_es_sample(double d, float sigma, const float *dir, size_t np, float *g_es)
{
    double scale = d / (2.0 * (double)sigma * sigma);
    for (size_t i = 0; i < np; i++) g_es[i] = (float)(scale * dir[i]);
}


/* ranks (0-based, ties averaged) of d into r, via an index sort */
static void centred_ranks(const double *d, int S, double *r)
{
    int *idx = lopt_xcalloc((size_t)S, sizeof *idx);
    for (int i = 0; i < S; i++) idx[i] = i;
    /* insertion sort: S is the number of pairs of one step (tens) */
    for (int i = 1; i < S; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && d[idx[j]] > d[v]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
    for (int i = 0; i < S;) {
        int j = i;
        while (j + 1 < S && d[idx[j + 1]] == d[idx[i]]) j++;
        double mean_rank = 0.5 * (i + j);
        for (int k = i; k <= j; k++) r[idx[k]] = mean_rank - 0.5 * (S - 1);
        i = j + 1;
    }
    free(idx);
}

void lopt_es_shape(lopt_shape_kind kind, double *d, int S)
{
    double mean_abs = 0;
    for (int s = 0; s < S; s++) {
        if (!isfinite(d[s])) d[s] = 0;
        mean_abs += fabs(d[s]) / S;
    }
    if (kind == LOPT_SHAPE_SIGN) {
        for (int s = 0; s < S; s++) d[s] = d[s] > 0 ? mean_abs : d[s] < 0 ? -mean_abs : 0;
    } else if (kind == LOPT_SHAPE_RANK) {
        double *r = lopt_xcalloc((size_t)S, sizeof *r), rank_abs = 0;
        centred_ranks(d, S, r);
        for (int s = 0; s < S; s++) rank_abs += fabs(r[s]) / S;
        for (int s = 0; s < S; s++) d[s] = rank_abs > 0 ? r[s] * mean_abs / rank_abs : 0;
        free(r);
    }
}

void lopt_est_sums_init(lopt_est_sums *s, size_t np)
{
    memset(s, 0, sizeof *s);
    s->np = np;
    s->sum_rp = lopt_xcalloc(np, sizeof(double));
    s->sq_rp = lopt_xcalloc(np, sizeof(double));
    s->sum_es = lopt_xcalloc(np, sizeof(double));
    s->sq_es = lopt_xcalloc(np, sizeof(double));
}

void lopt_est_sums_clear(lopt_est_sums *s)
{
    s->count = s->rp_nonfinite = 0;
    memset(s->sum_rp, 0, s->np * sizeof(double));
    memset(s->sq_rp, 0, s->np * sizeof(double));
    memset(s->sum_es, 0, s->np * sizeof(double));
    memset(s->sq_es, 0, s->np * sizeof(double));
}

void lopt_est_sums_free(lopt_est_sums *s)
{
    if (!s) return;
    free(s->sum_rp);
    free(s->sq_rp);
    free(s->sum_es);
    free(s->sq_es);
    memset(s, 0, sizeof *s);
}

void lopt_est_sums_add(lopt_est_sums *s, const float *g_rp, const float *g_es)
{
    const size_t np = s->np;
    s->count++;
    if (g_rp) {
        int finite = 1;
        for (size_t i = 0; i < np; i++) {
            s->sum_rp[i] += g_rp[i];
            s->sq_rp[i] += (double)g_rp[i] * g_rp[i];
            finite &= isfinite(g_rp[i]) != 0;
        }
        s->rp_nonfinite += !finite;
    }
    if (g_es)
        for (size_t i = 0; i < np; i++) {
            s->sum_es[i] += g_es[i];
            s->sq_es[i] += (double)g_es[i] * g_es[i];
        }
}

void lopt_est_sums_add_sums(lopt_est_sums *dst, const lopt_est_sums *src)
{
    LOPT_ASSERT(dst->np == src->np);
    dst->count += src->count;
    dst->rp_nonfinite += src->rp_nonfinite;
    for (size_t i = 0; i < dst->np; i++) {
        dst->sum_rp[i] += src->sum_rp[i];
        dst->sq_rp[i] += src->sq_rp[i];
        dst->sum_es[i] += src->sum_es[i];
        dst->sq_es[i] += src->sq_es[i];
    }
}

/* unbiased sample variance from a sum and a sum of squares over S samples */
static double sample_var(double sum, double sq, int64_t S)
{
    double mu = sum / (double)S;
    return fmax(0.0, (sq - (double)S * mu * mu) / (double)(S - 1));
}

/* the merge with means from (sum, Sm) and variances from (vsum, vsq, Sv) */
static double merge2(const double *sum_rp, const double *sum_es, int64_t Sm,
                     const double *vsum_rp, const double *vsq_rp, const double *vsum_es,
                     const double *vsq_es, int64_t Sv, size_t np, const unsigned char *mask,
                     float *g, double *v_rp, double *v_es)
{
    double w_sum = 0;
    size_t ntrain = 0;
    *v_rp = *v_es = 0;
    for (size_t i = 0; i < np; i++) {
        double mr = sum_rp[i] / (double)Sm, me = sum_es[i] / (double)Sm;
        double vr = sample_var(vsum_rp[i], vsq_rp[i], Sv) + VAR_FLOOR;
        double ve = sample_var(vsum_es[i], vsq_es[i], Sv) + VAR_FLOOR;
        double w_es = (1.0 / ve) / (1.0 / vr + 1.0 / ve);
        g[i] = (float)((mr / vr + me / ve) / (1.0 / vr + 1.0 / ve));
        *v_rp += vr;
        *v_es += ve;
        if (!mask || mask[i]) {
            w_sum += w_es;
            ntrain++;
        }
    }
    return ntrain ? w_sum / (double)ntrain : NAN;
}

double lopt_merge(const double *sum_rp, const double *sq_rp, const double *sum_es,
                  const double *sq_es, int64_t S, size_t np, float *g, double *v_rp,
                  double *v_es)
{
    return merge2(sum_rp, sum_es, S, sum_rp, sq_rp, sum_es, sq_es, S, np, NULL, g, v_rp, v_es);
}

static double norm_of_mean(const double *sum, int64_t S, size_t np)
{
    double acc = 0;
    for (size_t i = 0; i < np; i++) acc += (sum[i] / (double)S) * (sum[i] / (double)S);
    return sqrt(acc);
}

static double variance_sum(const double *sum, const double *sq, int64_t S, size_t np)
{
    if (S < 2) return NAN;
    double acc = 0;
    for (size_t i = 0; i < np; i++) acc += sample_var(sum[i], sq[i], S);
    return acc;
}

void lopt_est_combine(lopt_combine_kind kind, const lopt_est_sums *mean, const lopt_est_sums *var,
                      const unsigned char *mask, float *g, lopt_est_stats *st)
{
    const size_t np = mean->np;
    const int64_t S = mean->count, Sv = var->count;
    LOPT_ASSERT(S >= 1 && var->np == np);
    int rp = kind != LOPT_COMBINE_ES, es = kind != LOPT_COMBINE_RP;
    int rp_over = rp && var->rp_nonfinite + mean->rp_nonfinite > 0;
    st->g_rp_norm = !rp ? NAN : rp_over ? INFINITY : norm_of_mean(mean->sum_rp, S, np);
    st->g_es_norm = es ? norm_of_mean(mean->sum_es, S, np) : NAN;
    st->v_rp = !rp ? NAN : rp_over ? INFINITY : variance_sum(var->sum_rp, var->sq_rp, Sv, np);
    st->v_es = es ? variance_sum(var->sum_es, var->sq_es, Sv, np) : NAN;
    if (kind == LOPT_COMBINE_MERGED && !rp_over) {
        LOPT_ASSERT(Sv >= 2);
        double vr, ve;
        st->w_es = merge2(mean->sum_rp, mean->sum_es, S, var->sum_rp, var->sq_rp, var->sum_es,
                          var->sq_es, Sv, np, mask, g, &vr, &ve);
        return;
    }
    /* rp alone, es alone, or a merge whose rp overflowed: es alone */
    const double *sum = kind == LOPT_COMBINE_RP ? mean->sum_rp : mean->sum_es;
    for (size_t i = 0; i < np; i++) g[i] = (float)(sum[i] / (double)S);
    st->w_es = kind == LOPT_COMBINE_RP ? 0.0 : 1.0;
}
