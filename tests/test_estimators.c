/* test_estimators.c - the outer-gradient estimators (docs/design.md section 1.3):
 *  - the merge equals the inverse-variance formula on synthetic estimates;
 *  - es and rp agree on the gradient of the smoothed loss given many samples, on a
 *    short smooth unroll (a statistical test with explicit bounds);
 *  - nres over whole trajectory lives and full-horizon es agree with the exact rp
 *    gradient of the same horizon-level objectives (statistical, explicit bounds),
 *    where truncated es, which forgets that theta shaped the state it starts
 *    from, is shown to be off;
 *  - meta-training's nres reuses one perturbation for every truncation of a life;
 *  - --train schedule moves the schedule's coordinates of theta and no others;
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


/* mean and standard error of n samples from their sum and sum of squares */
static void mean_se(double sum, double sq, int n, double *mean, double *se)
{
    *mean = sum / n;
    *se = sqrt(fmax(0.0, (sq - n * (*mean) * (*mean)) / (n - 1)) / n);
}

/* Whole-life objectives on a short smooth unroll (quadratic, horizon H = 6):
 *  nres: a life of J = 3 truncations of K = 2 under one eps, + and - states kept
 *        across truncations; the mean of its J estimates is unbiased for the
 *        gradient of the smoothed mean loss over the life, which rp gives exactly by
 *        backprop through the whole life (K = H) at theta +- eps.
 *  truncated es: the same, but each truncation's pair starts from the + state:
 *        biased (it ignores how theta shaped the start state) - shown to differ.
 *  fulles: one pair over the whole horizon, the loss at the end over 2 batches,
 *        against rp of the same end loss.
 * Compared along the rp direction u (the derivative that matters) and a random
 * one, by the difference of two sample means within 4.5 standard errors. */
static void horizon_estimators_agree_with_rp(void)
{
    lopt_task task;
    lopt_task_create(&task, "quadratic", NULL, NULL);
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    a.step_mult = 0.02f;
    enum { H = 6, KT = 2, J = H / KT, S = 3000 };
    const float sigma = 0.01f;
    size_t np = lopt_arch_nparams(&a), n = task.n;
    float *theta = lopt_floats(np), *eps = lopt_floats(np), *grp = lopt_floats(np),
          *ges = lopt_floats(np), *u[2] = {lopt_floats(np), lopt_floats(np)};
    lopt_theta_init(&a, 5, theta);
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, &task, &a, H);
    lopt_pair_ws pw;
    lopt_pair_ws_init(&pw, np);
    lopt_unroll_cfg trunc = {.K = KT, .outer_split = LOPT_SPLIT_TRAIN, .diverge_factor = 1e30f};
    lopt_unroll_cfg life = trunc, end = trunc;
    life.K = end.K = H;
    end.weight.kind = LOPT_WEIGHT_END;
    end.outer_batches = 2;
    lopt_traj start, plus, minus;
    lopt_traj_alloc(&start, n, a.nmom);
    lopt_traj_alloc(&plus, n, a.nmom);
    lopt_traj_alloc(&minus, n, a.nmom);
    lopt_traj_start(&ws, &start, 9, H);
    /* the directions: the exact life gradient at theta, and a random one */
    lopt_traj_copy(&plus, &start, n, a.nmom);
    memset(grp, 0, np * sizeof(float));
    lopt_unroll(&ws, &life, theta, &plus, grp);
    double nrm = 0;
    for (size_t i = 0; i < np; i++) nrm += (double)grp[i] * grp[i];
    for (size_t i = 0; i < np; i++) u[0][i] = (float)(grp[i] / sqrt(nrm));
    lopt_rng_fill_normal(u[1], np, 1.0f / sqrtf((float)np), 3, LOPT_STREAM_TEST, 0);

    /* per direction: sums and squares of the projections of 5 estimators */
    enum { NRES, TRUNC, RP_LIFE, FULLES, RP_END, NEST };
    static const char *names[NEST] = {"nres", "truncated es", "rp (life)", "fulles", "rp (end)"};
    double sum[2][NEST] = {{0}}, sq[2][NEST] = {{0}};
    for (int s = 0; s < S; s++) {
        lopt_rng_fill_normal(eps, np, sigma, 78, LOPT_STREAM_TEST, (uint64_t)s * np);
        double est[NEST][2] = {{0}};
        for (int persistent = 1; persistent >= 0; persistent--) {
            lopt_traj_copy(&plus, &start, n, a.nmom);
            lopt_traj_copy(&minus, &start, n, a.nmom);
            for (int j = 0; j < J; j++) {
                if (!persistent) lopt_traj_copy(&minus, &plus, n, a.nmom);
                lopt_pair_out po = lopt_pair_estimate(&ws, &pw, &trunc, theta, eps, &plus,
                                                      &minus, NULL);
                lopt_es_sample(po.loss_plus - po.loss_minus, sigma, eps, np, ges);
                for (int d = 0; d < 2; d++)
                    for (size_t i = 0; i < np; i++)
                        est[persistent ? NRES : TRUNC][d] += (double)ges[i] * u[d][i] / J;
            }
        }
        for (int e = 0; e < 2; e++) {
            const lopt_unroll_cfg *cfg = e ? &end : &life;
            lopt_traj_copy(&plus, &start, n, a.nmom);
            lopt_traj_copy(&minus, &start, n, a.nmom);
            lopt_pair_out po = lopt_pair_estimate(&ws, &pw, cfg, theta, eps, &plus, &minus, grp);
            lopt_es_sample(po.loss_plus - po.loss_minus, sigma, eps, np, ges);
            for (int d = 0; d < 2; d++)
                for (size_t i = 0; i < np; i++) {
                    est[e ? RP_END : RP_LIFE][d] += (double)grp[i] * u[d][i];
                    if (e) est[FULLES][d] += (double)ges[i] * u[d][i];
                }
        }
        for (int k = 0; k < NEST; k++)
            for (int d = 0; d < 2; d++) {
                sum[d][k] += est[k][d];
                sq[d][k] += est[k][d] * est[k][d];
            }
    }
    for (int d = 0; d < 2; d++) {
        double m[NEST], se[NEST];
        for (int k = 0; k < NEST; k++) mean_se(sum[d][k], sq[d][k], S, &m[k], &se[k]);
        printf("     direction %d:", d);
        for (int k = 0; k < NEST; k++) printf(" %s %.5g (se %.2g)%s", names[k], m[k], se[k],
                                              k + 1 < NEST ? "," : "\n");
        const int pairs[2][2] = {{NRES, RP_LIFE}, {FULLES, RP_END}};
        for (int p = 0; p < 2; p++) {
            int x = pairs[p][0], y = pairs[p][1];
            double bound = 4.5 * sqrt(se[x] * se[x] + se[y] * se[y]);
            CHECK(fabs(m[x] - m[y]) <= bound, "direction %d: %s (%.6g) and %s (%.6g) differ by "
                  "more than 4.5 standard errors (%.3g)", d, names[x], m[x], names[y], m[y],
                  bound / 4.5);
        }
        if (d == 0) {
            double bound = sqrt(se[TRUNC] * se[TRUNC] + se[RP_LIFE] * se[RP_LIFE]);
            CHECK(fabs(m[TRUNC] - m[RP_LIFE]) > 6 * bound, "truncated es (%.6g) is within 6 "
                  "standard errors of the life gradient (%.6g): the test cannot tell nres from "
                  "it", m[TRUNC], m[RP_LIFE]);
            CHECK(fabs(m[RP_LIFE]) > 10 * se[NRES] && fabs(m[RP_END]) > 10 * se[FULLES],
                  "no power: the gradients are within 10 standard errors of zero");
        }
    }
    lopt_traj_free(&start);
    lopt_traj_free(&plus);
    lopt_traj_free(&minus);
    lopt_pair_ws_free(&pw);
    lopt_unroll_ws_free(&ws);
    lopt_free(theta); lopt_free(eps); lopt_free(grp); lopt_free(ges);
    lopt_free(u[0]); lopt_free(u[1]);
    task.free(&task);
}

/* meta-training's nres: within a life every step's estimate lies along one
 * perturbation (with one sample, g = d eps / (2 sigma^2)); a new life draws a new
 * one. theta is held still by a vanishing outer learning rate. */
static void nres_reuses_its_perturbation(void)
{
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    snprintf(c.task, sizeof c.task, "quadratic");
    c.estimator = LOPT_EST_NRES;
    c.K = 2;
    c.samples = 1;
    c.horizon = 6;          /* a life of 5..7 steps: 3 or 4 truncations */
    c.outer_lr = 1e-30f;
    c.grad_clip = 0;
    c.threads = 1;
    lopt_meta *m;
    lopt_err err = {0};
    CHECK(lopt_meta_create(&m, &c, &err) == LOPT_OK, "meta create: %s", err.msg);
    size_t np = lopt_arch_nparams(lopt_meta_arch(m));
    enum { STEPS = 12 };
    float *g[STEPS];
    int64_t resets[STEPS];
    for (int t = 0; t < STEPS; t++) {
        lopt_meta_row row;
        lopt_meta_step(m, &row, &err);
        g[t] = lopt_floats(np);
        memcpy(g[t], lopt_meta_gradient(m), np * sizeof(float));
        resets[t] = row.resets;
    }
    /* |cos| of consecutive estimates: 1 inside a life, ~0 across lives */
    int same = 0, fresh = 0, bad = 0;
    for (int t = 1; t < STEPS; t++) {
        double dot = 0, a2 = 0, b2 = 0;
        for (size_t i = 0; i < np; i++) {
            dot += (double)g[t][i] * g[t - 1][i];
            a2 += (double)g[t][i] * g[t][i];
            b2 += (double)g[t - 1][i] * g[t - 1][i];
        }
        double cosv = fabs(dot) / sqrt(a2 * b2);
        if (resets[t] == resets[t - 1]) {
            same++;
            bad += cosv < 1 - 1e-5;
        } else {
            fresh++;
            bad += cosv > 0.5;
        }
    }
    CHECK(bad == 0 && same >= 4 && fresh >= 2, "nres: %d of %d step pairs break the one-eps-per-"
          "life rule (%d within lives, %d across)", bad, STEPS - 1, same, fresh);
    printf("ok   nres: one perturbation per life (%d step pairs within lives, %d across)\n", same,
           fresh);
    for (int t = 0; t < STEPS; t++) lopt_free(g[t]);
    lopt_meta_free(m);
}


/* --train schedule moves exactly the nominal form's schedule coordinates */
static void train_mask_moves_only_the_schedule(void)
{
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    snprintf(c.arch, sizeof c.arch, "nominal");
    snprintf(c.train, sizeof c.train, "schedule");
    c.estimator = LOPT_EST_ES;
    c.K = 5;
    c.samples = 4;
    c.horizon = 50;
    c.threads = 1;
    lopt_meta *m;
    lopt_err err = {0};
    CHECK(lopt_meta_create(&m, &c, &err) == LOPT_OK, "meta create: %s", err.msg);
    const lopt_arch *a = lopt_meta_arch(m);
    size_t np = lopt_arch_nparams(a), ntrain = 0;
    unsigned char *mask = calloc(np, 1);
    lopt_arch_train_mask(a, "schedule", mask, &ntrain, &err);
    float *start = lopt_floats(np);
    memcpy(start, lopt_meta_theta(m), np * sizeof(float));
    lopt_meta_row row;
    for (int i = 0; i < 3; i++) lopt_meta_step(m, &row, &err);
    const float *th = lopt_meta_theta(m);
    size_t moved_in = 0, moved_out = 0;
    for (size_t i = 0; i < np; i++) {
        if (th[i] == start[i]) continue;
        if (mask[i]) moved_in++;
        else moved_out++;
    }
    CHECK(moved_out == 0 && moved_in == ntrain && ntrain == (size_t)a->ntime + 1,
          "--train schedule: %zu of %zu schedule coordinates moved, %zu others moved",
          moved_in, ntrain, moved_out);
    printf("ok   --train schedule: the %zu schedule coordinates moved, the other %zu did not\n",
           moved_in, np - ntrain);
    c.estimator = LOPT_EST_ES;
    snprintf(c.arch, sizeof c.arch, "paper");
    lopt_meta *m2 = NULL;
    CHECK(lopt_meta_create(&m2, &c, &err) == LOPT_EUSAGE, "--train schedule with the paper "
          "preset (no schedule) was not refused");
    lopt_meta_free(m2);
    free(mask);
    lopt_free(start);
    lopt_meta_free(m);
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
    horizon_estimators_agree_with_rp();
    nres_reuses_its_perturbation();
    train_mask_moves_only_the_schedule();
    merge_leans_on_es_when_chaotic();
    divergence_resets();
    return check_done("test_estimators");
}
