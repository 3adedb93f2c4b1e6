/* test_estimators.c - the outer-gradient estimators (DESIGN.md section 1.3):
 *  - the merge equals the inverse-variance formula on synthetic estimates;
 *  - es and rp agree on the gradient of the smoothed loss given many samples, on a
 *    short smooth unroll (a statistical test with explicit bounds);
 *  - the merge leans on es as K grows in a chaotic setting;
 *  - a NaN / blown-up inner loss is detected, counted and resets the trajectory,
 *    and meta-training goes on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "meta/meta.h"

static void merge_formula(void)
{
    enum { S = 5, NP = 7 };
    double sr[NP] = {0}, qr[NP] = {0}, se[NP] = {0}, qe[NP] = {0};
    double xr[S][NP], xe[S][NP];
    for (int s = 0; s < S; s++)
        for (int i = 0; i < NP; i++) {
            xr[s][i] = lopt_rng_normal(1, LOPT_STREAM_TEST, (uint64_t)(s * NP + i)) * (i + 1);
            xe[s][i] = 3 + lopt_rng_normal(2, LOPT_STREAM_TEST, (uint64_t)(s * NP + i)) * 10.0 / (i + 1);
            sr[i] += xr[s][i];
            qr[i] += xr[s][i] * xr[s][i];
            se[i] += xe[s][i];
            qe[i] += xe[s][i] * xe[s][i];
        }
    float g[NP];
    double vr, ve;
    double w = lopt_merge(sr, qr, se, qe, S, NP, g, &vr, &ve);
    double want[NP], got[NP], wsum = 0, vrs = 0, ves = 0;
    for (int i = 0; i < NP; i++) {
        /* two-pass mean and unbiased variance, then the DESIGN formula */
        double mr = 0, me = 0, vri = 0, vei = 0;
        for (int s = 0; s < S; s++) { mr += xr[s][i] / S; me += xe[s][i] / S; }
        for (int s = 0; s < S; s++) {
            vri += (xr[s][i] - mr) * (xr[s][i] - mr) / (S - 1);
            vei += (xe[s][i] - me) * (xe[s][i] - me) / (S - 1);
        }
        vri += 1e-8;
        vei += 1e-8;
        want[i] = (mr / vri + me / vei) / (1 / vri + 1 / vei);
        got[i] = g[i];
        wsum += (1 / vei) / (1 / vri + 1 / vei);
        vrs += vri;
        ves += vei;
    }
    check_close("merged gradient = inverse-variance formula", got, want, NP, 1e-5, 1e-7);
    double gw[3] = {w, vr, ve}, ww[3] = {wsum / NP, vrs, ves};
    check_close("merged es weight and variances", gw, ww, 3, 1e-9, 0);
    /* the weights move the way they should: high rp variance (late coordinates in
     * xr) leans on es */
    CHECK(fabs(g[NP - 1] - want[NP - 1]) < 1e-4 && w > 0 && w < 1, "merge weights out of range");
}

/* per-sample rp and es estimates for S antithetic pairs from one start state */
typedef struct {
    double *sum_rp, *sq_rp, *sum_es, *sq_es;
} sums;

static void sample_estimates(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const lopt_arch *a,
                             const float *theta, const lopt_traj *start, int S, float sigma,
                             sums *out, const float *u, double *proj_rp, double *proj_es,
                             double *var_rp_u, double *var_es_u)
{
    size_t np = lopt_arch_nparams(a), n = ws->task->n;
    float *eps = lopt_floats(np), *tp = lopt_floats(np), *gp = lopt_floats(np),
          *gm = lopt_floats(np);
    lopt_traj tr;
    lopt_traj_alloc(&tr, n, a->nmom);
    double pr = 0, pr2 = 0, pe = 0, pe2 = 0;
    for (int s = 0; s < S; s++) {
        lopt_rng_fill_normal(eps, np, sigma, 77, LOPT_STREAM_TEST, (uint64_t)s * np);
        for (size_t i = 0; i < np; i++) tp[i] = theta[i] + eps[i];
        memset(gp, 0, np * sizeof(float));
        lopt_traj_copy(&tr, start, n, a->nmom);
        double lp = lopt_unroll(ws, cfg, tp, &tr, gp).loss;
        for (size_t i = 0; i < np; i++) tp[i] = theta[i] - eps[i];
        memset(gm, 0, np * sizeof(float));
        lopt_traj_copy(&tr, start, n, a->nmom);
        double lm = lopt_unroll(ws, cfg, tp, &tr, gm).loss;
        double r = 0, e = 0, c = (lp - lm) / (2.0 * sigma * sigma);
        for (size_t i = 0; i < np; i++) {
            double grp = 0.5 * ((double)gp[i] + gm[i]), ges = c * eps[i];
            if (out) {
                out->sum_rp[i] += grp;
                out->sq_rp[i] += grp * grp;
                out->sum_es[i] += ges;
                out->sq_es[i] += ges * ges;
            }
            if (u) {
                r += grp * u[i];
                e += ges * u[i];
            }
        }
        pr += r; pr2 += r * r; pe += e; pe2 += e * e;
    }
    if (u) {
        *proj_rp = pr / S;
        *proj_es = pe / S;
        *var_rp_u = (pr2 - S * (*proj_rp) * (*proj_rp)) / (S - 1);
        *var_es_u = (pe2 - S * (*proj_es) * (*proj_es)) / (S - 1);
    }
    lopt_traj_free(&tr);
    lopt_free(eps); lopt_free(tp); lopt_free(gp); lopt_free(gm);
}

static void es_agrees_with_rp(void)
{
    lopt_task task;
    lopt_task_create(&task, "quadratic", NULL, NULL);
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    a.step_mult = 0.02f;
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np), *u = lopt_floats(np), *g = lopt_floats(np);
    lopt_theta_init(&a, 5, theta);
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, &task, &a, 5);
    lopt_unroll_cfg cfg = {.K = 5, .outer_split = LOPT_SPLIT_TRAIN, .loss_clip = 0,
                           .diverge_factor = 1e30f};
    lopt_traj start, tr;
    lopt_traj_alloc(&start, task.n, a.nmom);
    lopt_traj_alloc(&tr, task.n, a.nmom);
    lopt_traj_start(&ws, &start, 9, 1000);
    /* the rp gradient at theta gives the direction that matters */
    lopt_traj_copy(&tr, &start, task.n, a.nmom);
    lopt_unroll(&ws, &cfg, theta, &tr, g);
    double nrm = 0;
    for (size_t i = 0; i < np; i++) nrm += (double)g[i] * g[i];
    for (int d = 0; d < 2; d++) {
        if (d == 0)
            for (size_t i = 0; i < np; i++) u[i] = (float)(g[i] / sqrt(nrm));
        else
            lopt_rng_fill_normal(u, np, 1.0f / sqrtf((float)np), 3, LOPT_STREAM_TEST, 0);
        const int S = 2000;
        double pr = 0, pe = 0, vr = 0, ve = 0;
        sample_estimates(&ws, &cfg, &a, theta, &start, S, 0.01f, NULL, u, &pr, &pe, &vr, &ve);
        /* the difference of two sample means: 4.5 standard errors (p < 1e-5 under
         * agreement, the bound is honest for a deterministic test) */
        double se = sqrt(vr / S + ve / S);
        printf("     direction %d: rp %.6g es %.6g (standard error %.3g)\n", d, pr, pe, se);
        CHECK(fabs(pr - pe) <= 4.5 * se,
              "es (%.6g) and rp (%.6g) disagree along direction %d beyond 4.5 standard errors "
              "(%.3g)", pe, pr, d, se);
        if (d == 0)
            CHECK(fabs(pr) > 10 * se, "the test has no power: |rp| %.3g vs se %.3g", pr, se);
    }
    lopt_traj_free(&start);
    lopt_traj_free(&tr);
    lopt_unroll_ws_free(&ws);
    lopt_free(theta); lopt_free(u); lopt_free(g);
    task.free(&task);
}

/* mean es weight of the merge for S samples at truncation length K */
static double es_weight(lopt_unroll_ws *ws, const lopt_arch *a, const float *theta,
                        const lopt_traj *start, int K)
{
    size_t np = lopt_arch_nparams(a);
    sums acc = {calloc(np, 8), calloc(np, 8), calloc(np, 8), calloc(np, 8)};
    lopt_unroll_cfg cfg = {.K = K, .outer_split = LOPT_SPLIT_VALID, .loss_clip = 10,
                           .diverge_factor = 1e30f};
    sample_estimates(ws, &cfg, a, theta, start, 8, 0.01f, &acc, NULL, NULL, NULL, NULL, NULL);
    float *g = lopt_floats(np);
    double vr, ve;
    double w = lopt_merge(acc.sum_rp, acc.sq_rp, acc.sum_es, acc.sq_es, 8, np, g, &vr, &ve);
    printf("     K=%d: summed variances rp %.3g es %.3g, mean es weight %.3f\n", K, vr, ve, w);
    free(acc.sum_rp); free(acc.sq_rp); free(acc.sum_es); free(acc.sq_es);
    lopt_free(g);
    return w;
}

static void merge_leans_on_es_when_chaotic(void)
{
    lopt_task task;
    lopt_task_create(&task, "fmnist8-mlp", NULL, NULL);
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    /* normalised gradient descent with a bold step: training works (the loss
     * falls) but the dynamics amplify perturbations exponentially (chaotic) */
    a.step_mult = 0.03f;
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np);
    lopt_theta_normalized_sgd(&a, 0.01f, 5, theta);
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, &task, &a, 100);
    lopt_traj start;
    lopt_traj_alloc(&start, task.n, a.nmom);
    lopt_traj_start(&ws, &start, 9, 100000);
    double w_short = es_weight(&ws, &a, theta, &start, 2);
    double w_long = es_weight(&ws, &a, theta, &start, 100);
    CHECK(w_short < 0.1 && w_long > 0.5,
          "the merge did not move from rp to es as K grew: es weight %.3f (K=2) -> %.3f (K=100)",
          w_short, w_long);
    lopt_traj_free(&start);
    lopt_unroll_ws_free(&ws);
    lopt_free(theta);
    task.free(&task);
}

static void divergence_resets(void)
{
    lopt_task task;
    lopt_task_create(&task, "fmnist8-mlp", NULL, NULL);
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    a.step_mult = 1e4f;   /* absurd steps: the inner loss blows up / turns NaN */
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np), *g = lopt_floats(np);
    lopt_theta_init(&a, 5, theta);
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, &task, &a, 10);
    lopt_traj tr;
    lopt_traj_alloc(&tr, task.n, a.nmom);
    lopt_traj_start(&ws, &tr, 9, 1000);
    lopt_unroll_cfg cfg = {.K = 10, .outer_split = LOPT_SPLIT_VALID, .loss_clip = 10,
                           .diverge_factor = 5};
    lopt_unroll_out o = lopt_unroll(&ws, &cfg, theta, &tr, g);
    CHECK(o.diverged && tr.needs_reset, "a blown-up trajectory was not flagged for reset");
    CHECK(o.loss <= 10.0 + 1e-9 && isfinite(o.loss), "outer loss not clipped: %g", o.loss);
    int finite = 1;
    for (size_t i = 0; i < np; i++) finite &= isfinite(g[i]) != 0;
    CHECK(finite, "the rp gradient of a diverged truncation is not finite");
    printf("ok   divergence: stopped after %d of 10 steps, loss %.3f, reset flagged\n", o.steps,
           o.loss);
    lopt_traj_free(&tr);
    lopt_unroll_ws_free(&ws);
    lopt_free(theta);
    lopt_free(g);
    task.free(&task);

    /* meta-training with a huge perturbation scale: some samples diverge, they are
     * counted, their trajectories restart, and the steps go on with finite theta */
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    c.estimator = LOPT_EST_ES;
    c.sigma = 30.0f;
    c.K = 5;
    c.samples = 4;
    c.outer_steps = 6;
    c.threads = 1;
    lopt_meta *m;
    lopt_err err = {0};
    CHECK(lopt_meta_create(&m, &c, &err) == LOPT_OK, "meta create: %s", err.msg);
    lopt_meta_row row = {0};
    for (int i = 0; i < 6; i++) lopt_meta_step(m, &row, &err);
    const float *th = lopt_meta_theta(m);
    finite = 1;
    for (size_t i = 0; i < np; i++) finite &= isfinite(th[i]) != 0;
    printf("ok   meta-training with sigma 30: %lld diverged samples, %lld resets, theta finite %d\n",
           (long long)row.diverged, (long long)row.resets, finite);
    CHECK(row.diverged > 0, "sigma 30 produced no divergence: the test does not test it");
    CHECK(row.resets > 4, "diverged trajectories were not restarted");
    CHECK(finite && row.step == 6, "meta-training did not go on");
    lopt_meta_free(m);
}

int main(void)
{
    merge_formula();
    es_agrees_with_rp();
    merge_leans_on_es_when_chaotic();
    divergence_resets();
    return check_done("test_estimators");
}
