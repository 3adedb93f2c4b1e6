/* pathology_bias.c - the bias study (pathology.h): truncation bias of an SGD
 * learning rate meta-learned by Adam on the truncated outer loss, against the
 * full-horizon optimum. Metz et al. 2019, section 3 (the greedy bias of short
 * truncations); the tangent dw/dp is exact, by forward mode with the task's HVP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pathology_int.h"
#include "optim/adam.h"

void lopt_bias_opts_default(lopt_bias_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->instances = 8;
    o->horizon = 200;
    int Ks[] = {1, 5, 20, 50, 200};
    o->nK = 5;
    memcpy(o->Ks, Ks, sizeof Ks);
    o->outer_steps = 300;
    o->outer_lr = 0.05;
    o->lr0 = 1e-3;
    o->lr_lo = 1e-4;
    o->lr_hi = 1.0;
    o->grid_points = 81;
    o->loss_clip_factor = 10;
}

lopt_status lopt_bias_check(const lopt_bias_opts *o, lopt_err *err)
{
    if (o->horizon < 1 || o->horizon > 10000000)
        return lopt_fail(err, LOPT_EUSAGE, "--horizon must be in 1..10000000");
    lopt_status st = lopt_pathology_check_Ks(o->Ks, o->nK, o->horizon, err);
    if (st != LOPT_OK) return st;
    if (o->instances < 1 || o->instances > 10000)
        return lopt_fail(err, LOPT_EUSAGE, "--instances must be in 1..10000");
    if (o->outer_steps < 0 || o->outer_steps > 10000000)
        return lopt_fail(err, LOPT_EUSAGE, "--outer-steps must be in 0..10000000");
    if (!(o->outer_lr > 0)) return lopt_fail(err, LOPT_EUSAGE, "--outer-lr must be positive");
    if (!(o->lr0 > 0) || !isfinite(o->lr0))
        return lopt_fail(err, LOPT_EUSAGE, "--lr0 must be positive");
    if (!(o->lr_lo > 0 && o->lr_hi > o->lr_lo && isfinite(o->lr_hi)))
        return lopt_fail(err, LOPT_EUSAGE, "lr range must satisfy 0 < lo < hi");
    if (o->grid_points < 2 || o->grid_points > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "--grid-points must be in 2..100000");
    if (!(o->loss_clip_factor > 1)) return lopt_fail(err, LOPT_EUSAGE, "--clip-factor must be > 1");
    return LOPT_OK;
}

/* ---- SGD unrolls with a tangent ----------------------------------------------------- */

typedef struct {
    lopt_task *t;
    const lopt_bias_opts *o;
    lopt_batch batch;
    float *w, *z, *g, *hz;   /* (n) parameters, dw/dp, gradient, H z */
    int64_t done, total;     /* progress in inner steps */
    int64_t per;             /* inner steps of one sgd_mean */
} sgd_ws;

/* SGD with lr = exp(p) for H steps on instance seed, losses after every step on the
 * next step's batch. The tangent z = dw/dp (exact, forward mode):
 *   w_{t+1} = w_t - lr g_t,   z_{t+1} = z_t - lr H_t z_t - lr g_t,
 * reset to 0 every K steps; the truncation loss is the mean of l(w_{t+1}) over its K
 * steps, its derivative the mean of grad l(w_{t+1}) . z_{t+1}. A loss above
 * clip_factor * l(w_0) (or non-finite) stops the run: the rest of the horizon counts
 * as that clip, with no gradient. */
static lopt_bias_point sgd_unroll(sgd_ws *s, uint64_t seed, double p, int64_t H, int K,
                                  double clip_factor)
{
    lopt_task *t = s->t;
    size_t n = t->n;
    double lr = exp(p);
    lopt_bias_point out = {0, 0, 0, 0};
    t->init(t, seed, s->w);
    memset(s->z, 0, n * sizeof(float));
    lopt_task_sample(t, &s->batch, LOPT_SPLIT_TRAIN, seed, 0);
    double l0 = t->loss_grad(t, s->w, &s->batch, s->g), clip = clip_factor * l0;
    memset(s->hz, 0, n * sizeof(float));
    double sum = 0, gsum = 0;
    int64_t step = 0;
    for (; step < H; step++) {
        for (size_t i = 0; i < n; i++) {
            s->z[i] -= (float)(lr * ((double)s->hz[i] + s->g[i]));
            s->w[i] -= (float)(lr * s->g[i]);
        }
        lopt_task_sample(t, &s->batch, LOPT_SPLIT_TRAIN, seed, step + 1);
        double l = t->hvp(t, s->w, &s->batch, s->z, s->hz, s->g);
        if (!isfinite(l) || l > clip) {
            out.diverged = 1;
            break;
        }
        sum += l;
        out.final_loss = l;
        double d = 0;
        for (size_t i = 0; i < n; i++) d += (double)s->g[i] * s->z[i];
        gsum += d / K;
        if ((step + 1) % K == 0) {
            memset(s->z, 0, n * sizeof(float));
            memset(s->hz, 0, n * sizeof(float));
        }
    }
    if (out.diverged) {
        sum += (double)(H - step) * clip;
        out.final_loss = clip;
    }
    out.mean_loss = sum / H;
    /* mean over the truncations of the horizon (the last may be shorter: weighted as
     * the steps it holds) */
    out.metagrad = gsum * K / H;
    return out;
}

/* mean over instances */
static lopt_bias_point sgd_mean(sgd_ws *s, double p, int K)
{
    const lopt_bias_opts *o = s->o;
    lopt_bias_point m = {0, 0, 0, 0};
    for (int i = 0; i < o->instances; i++) {
        lopt_bias_point r = sgd_unroll(s, o->seed + (uint64_t)i, p, o->horizon, K,
                                       o->loss_clip_factor);
        m.mean_loss += r.mean_loss / o->instances;
        m.final_loss += r.final_loss / o->instances;
        m.metagrad += r.metagrad / o->instances;
        m.diverged += r.diverged;
    }
    return m;
}

static double mean_loss_at(sgd_ws *s, double p) { return sgd_mean(s, p, (int)s->o->horizon).mean_loss; }

/* ---- the three stages of the run ------------------------------------------------------ */

/* the grid: full-horizon losses (K = H gives them; every K's meta-gradient too) */
static void run_grid(sgd_ws *s, lopt_bias_result *r)
{
    const lopt_bias_opts *o = s->o;
    const int GP = o->grid_points, nK = o->nK;
    for (int i = 0; i < GP; i++) {
        double p = log(o->lr_lo) + (log(o->lr_hi) - log(o->lr_lo)) * i / (GP - 1);
        r->grid_lr[i] = exp(p);
        r->grid_log10[i] = log10(r->grid_lr[i]);
        for (int k = 0; k < nK; k++) {
            lopt_bias_point pt = sgd_mean(s, p, o->Ks[k]);
            r->grid_mean[i] = pt.mean_loss;
            r->grid_final[i] = pt.final_loss;
            r->grid_metagrad[(size_t)k * GP + i] = pt.metagrad;
            s->done += s->per;
            lopt_pathology_report(o->progress, o->user, s->done, s->total, "grid lr %.3g K=%d",
                                  r->grid_lr[i], o->Ks[k]);
        }
    }
    r->best = r->best_final = 0;
    for (int i = 1; i < GP; i++) {
        if (r->grid_mean[i] < r->grid_mean[r->best]) r->best = i;
        if (r->grid_final[i] < r->grid_final[r->best_final]) r->best_final = i;
    }
}

/* refine the grid optimum by golden-section search on log lr between its
 * neighbours (the loss is smooth in lr below divergence) */
static void refine_optimum(sgd_ws *s, lopt_bias_result *r)
{
    const int GP = s->o->grid_points, best = r->best;
    double opt_p = log(r->grid_lr[best]), opt_loss = r->grid_mean[best];
    double lo = log(r->grid_lr[best > 0 ? best - 1 : 0]),
           hi = log(r->grid_lr[best < GP - 1 ? best + 1 : best]);
    const double gr = (sqrt(5.0) - 1) / 2;
    double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
    double f1 = mean_loss_at(s, x1), f2 = mean_loss_at(s, x2);
    for (int it = 0; it < 30; it++) {
        if (f1 < f2) {
            hi = x2; x2 = x1; f2 = f1;
            x1 = hi - gr * (hi - lo);
            f1 = mean_loss_at(s, x1);
        } else {
            lo = x1; x1 = x2; f1 = f2;
            x2 = lo + gr * (hi - lo);
            f2 = mean_loss_at(s, x2);
        }
    }
    double pm = 0.5 * (lo + hi), fm = mean_loss_at(s, pm);
    if (fm < opt_loss) opt_p = pm, opt_loss = fm;
    r->opt = sgd_mean(s, opt_p, (int)s->o->horizon);
    r->opt_lr = exp(opt_p);
}

/* truncation k: meta-learning p = log lr by Adam on the truncated meta-gradient */
static void meta_learn(sgd_ws *s, lopt_bias_result *r, int k)
{
    const lopt_bias_opts *o = s->o;
    const int K = o->Ks[k], OS = o->outer_steps;
    double *traj = r->traj + (size_t)k * (OS + 1);
    double p = log(o->lr0), m1 = 0, m2 = 0;
    for (int it = 0; it < OS; it++) {
        traj[it] = exp(p);
        double gr = sgd_mean(s, p, K).metagrad;
        s->done += s->per;
        lopt_pathology_report(o->progress, o->user, s->done, s->total,
                              "meta-learning K=%d step %d/%d lr %.4g", K, it + 1, OS, exp(p));
        if (!isfinite(gr)) continue;
        const lopt_adam_bias ab = lopt_adam_bias_at(0.9, 0.999, it + 1);
        lopt_adam_moments(&ab, &m1, &m2, gr);
        /* cosine decay to 1% of outer_lr: the deterministic meta-gradient lets
         * the last steps settle on the fixed point instead of circling it */
        double eta = o->outer_lr * (0.01 + 0.99 * 0.5 * (1 + cos(3.14159265358979323846 * it / OS)));
        p -= eta * (m1 / ab.bc1) / lopt_adam_denom(&ab, m2, 1e-12);
    }
    traj[OS] = exp(p);
    lopt_bias_point fin = sgd_mean(s, p, K);
    s->done += s->per;
    lopt_bias_point full = sgd_mean(s, p, (int)o->horizon);
    r->lr[k] = exp(p);
    r->final_metagrad[k] = fin.metagrad;
    r->mean_loss[k] = full.mean_loss;
    r->final_loss[k] = full.final_loss;
    r->diverged[k] = full.diverged;
    r->truncated_loss[k] = fin.mean_loss;
}

static void result_alloc(lopt_bias_result *r, lopt_task *t, const lopt_bias_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->task = t->name;
    size_t GP = (size_t)o->grid_points, nK = (size_t)o->nK;
    r->grid_lr = lopt_pathology_dalloc(GP);
    r->grid_log10 = lopt_pathology_dalloc(GP);
    r->grid_mean = lopt_pathology_dalloc(GP);
    r->grid_final = lopt_pathology_dalloc(GP);
    r->grid_metagrad = lopt_pathology_dalloc(GP * nK);
    r->lr = lopt_pathology_dalloc(nK);
    r->final_metagrad = lopt_pathology_dalloc(nK);
    r->mean_loss = lopt_pathology_dalloc(nK);
    r->final_loss = lopt_pathology_dalloc(nK);
    r->truncated_loss = lopt_pathology_dalloc(nK);
    r->diverged = lopt_xcalloc(nK, sizeof(int));
    r->traj = lopt_pathology_dalloc(nK * ((size_t)o->outer_steps + 1));
}

lopt_status lopt_bias_run(lopt_task *t, const lopt_bias_opts *o, lopt_bias_result *r,
                          lopt_err *err)
{
    memset(r, 0, sizeof *r);
    lopt_status st = lopt_bias_check(o, err);
    if (st != LOPT_OK) return st;
    result_alloc(r, t, o);
    size_t n = t->n;
    sgd_ws s = {.t = t, .o = o};
    lopt_batch_alloc(&s.batch, t, t->batch);
    s.w = lopt_floats(n);
    s.z = lopt_floats(n);
    s.g = lopt_floats(n);
    s.hz = lopt_floats(n);
    s.per = (int64_t)o->instances * o->horizon;
    s.total = s.per * ((int64_t)o->grid_points * o->nK + (int64_t)o->nK * (o->outer_steps + 1));
    run_grid(&s, r);
    refine_optimum(&s, r);
    for (int k = 0; k < o->nK; k++) meta_learn(&s, r, k);
    lopt_batch_free(&s.batch);
    lopt_free(s.w); lopt_free(s.z); lopt_free(s.g); lopt_free(s.hz);
    return LOPT_OK;
}

void lopt_bias_result_free(lopt_bias_result *r)
{
    if (!r) return;
    free(r->grid_lr); free(r->grid_log10); free(r->grid_mean); free(r->grid_final);
    free(r->grid_metagrad); free(r->lr); free(r->final_metagrad); free(r->mean_loss);
    free(r->final_loss); free(r->truncated_loss); free(r->diverged); free(r->traj);
    memset(r, 0, sizeof *r);
}

/* ---- write ---------------------------------------------------------------------------- */

static lopt_status write_csvs(const lopt_bias_result *r, const char *dir, lopt_err *err)
{
    const int nK = r->o.nK, GP = r->o.grid_points, OS = r->o.outer_steps;
    const int *Ks = r->o.Ks;
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,lr,log10_lr,final_metagrad,full_horizon_mean_loss,final_loss,diverged,"
                  "lr_over_optimum\n");
    for (int k = 0; k < nK; k++)
        lopt_sb_printf(&b, "%d,%.6g,%.6f,%.6g,%.8g,%.8g,%d,%.6g\n", Ks[k], r->lr[k],
                       log10(r->lr[k]), r->final_metagrad[k], r->mean_loss[k], r->final_loss[k],
                       r->diverged[k], r->lr[k] / r->opt_lr);
    lopt_status st = lopt_write_sb_in(dir, "bias.csv", &b, err);
    if (st != LOPT_OK) return st;
    lopt_sb_printf(&b, "lr,full_horizon_mean_loss,final_loss");
    for (int k = 0; k < nK; k++) lopt_sb_printf(&b, ",metagrad_K%d", Ks[k]);
    lopt_sb_printf(&b, "\n");
    for (int i = 0; i < GP; i++) {
        lopt_sb_printf(&b, "%.6g,%.8g,%.8g", r->grid_lr[i], r->grid_mean[i], r->grid_final[i]);
        for (int k = 0; k < nK; k++)
            lopt_sb_printf(&b, ",%.6g", r->grid_metagrad[(size_t)k * GP + i]);
        lopt_sb_printf(&b, "\n");
    }
    st = lopt_write_sb_in(dir, "grid.csv", &b, err);
    if (st != LOPT_OK) return st;
    lopt_sb_printf(&b, "K,outer_step,lr\n");
    for (int k = 0; k < nK; k++)
        for (int i = 0; i <= OS; i++)
            lopt_sb_printf(&b, "%d,%d,%.6g\n", Ks[k], i, r->traj[(size_t)k * (OS + 1) + i]);
    return lopt_write_sb_in(dir, "outer.csv", &b, err);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* each K's meta-gradient field on a symmetric log scale,
 * sign(g) log10(1 + |g| / g0) with g0 the median |g| of that K (the field
 * spans decades, from the slow small-lr side to the blow-up near divergence):
 * its zero crossings from - to + are where meta-learning with K settles */
static lopt_status plot_metagrad(const lopt_bias_result *r, const char *dir, lopt_err *err)
{
    const int nK = r->o.nK, GP = r->o.grid_points;
    double *nf = lopt_pathology_dalloc((size_t)GP * nK), *tmp = lopt_pathology_dalloc((size_t)GP);
    lopt_plot_series sr[LOPT_PATHOLOGY_MAX_K];
    char lab[LOPT_PATHOLOGY_MAX_K][48], title[200];
    for (int k = 0; k < nK; k++) {
        const double *f = r->grid_metagrad + (size_t)k * GP;
        int m = 0;
        for (int i = 0; i < GP; i++)
            if (isfinite(f[i]) && f[i] != 0) tmp[m++] = fabs(f[i]);
        qsort(tmp, (size_t)m, sizeof *tmp, cmp_double);
        double g0 = m ? tmp[m / 2] : 1;
        for (int i = 0; i < GP; i++)
            nf[(size_t)k * GP + i] = (f[i] < 0 ? -1 : 1) * log10(1 + fabs(f[i]) / g0);
        snprintf(lab[k], sizeof lab[k], "K=%d", r->o.Ks[k]);
        sr[k] = (lopt_plot_series){lab[k], r->grid_log10, nf + (size_t)k * GP, NULL, NULL, GP};
    }
    free(tmp);
    snprintf(title, sizeof title, "%s: truncated meta-gradient d/d(log lr) (symlog)", r->task);
    lopt_plot pl = {title, "log10 lr", "sign(g) log10(1 + |g| / median |g|)", 0, 0, 0, sr, nK};
    lopt_status st = lopt_pathology_plot(&pl, dir, "metagrad_vs_lr", err);
    free(nf);
    return st;
}

static lopt_status plot_outer(const lopt_bias_result *r, const char *dir, lopt_err *err)
{
    const int nK = r->o.nK, OS = r->o.outer_steps;
    double *ostep = lopt_pathology_dalloc((size_t)OS + 1);
    for (int i = 0; i <= OS; i++) ostep[i] = i;
    lopt_plot_series sr[LOPT_PATHOLOGY_MAX_K];
    char lab[LOPT_PATHOLOGY_MAX_K][48], title[200];
    for (int k = 0; k < nK; k++) {
        snprintf(lab[k], sizeof lab[k], "K=%d", r->o.Ks[k]);
        sr[k] = (lopt_plot_series){lab[k], ostep, r->traj + (size_t)k * (OS + 1), NULL, NULL,
                                   OS + 1};
    }
    snprintf(title, sizeof title, "%s: learning rate during meta-learning (Adam on log lr)",
             r->task);
    lopt_plot pl = {title, "outer step", "learning rate", 1, 0, 0, sr, nK};
    lopt_status st = lopt_pathology_plot(&pl, dir, "outer_lr", err);
    free(ostep);
    return st;
}

/* lr_vs_K, loss_vs_K and loss_vs_lr */
static lopt_status plot_K_and_lr(const lopt_bias_result *r, const char *dir, lopt_err *err)
{
    const lopt_bias_opts *o = &r->o;
    const int nK = o->nK, GP = o->grid_points;
    double *lk = lopt_pathology_dalloc((size_t)nK), *optl = lopt_pathology_dalloc((size_t)nK),
           *optv = lopt_pathology_dalloc((size_t)nK);
    for (int k = 0; k < nK; k++) {
        lk[k] = log10((double)o->Ks[k]);
        optl[k] = r->opt_lr;
        optv[k] = r->opt.mean_loss;
    }
    char title[200];
    lopt_plot_series s1[2] = {{"meta-learned lr", lk, r->lr, NULL, NULL, nK},
                              {"full-horizon optimum", lk, optl, NULL, NULL, nK}};
    snprintf(title, sizeof title, "%s: SGD learning rate meta-learned with truncation K "
             "(horizon %lld)", r->task, (long long)o->horizon);
    lopt_plot p1 = {title, "log10 K (truncation length)", "learning rate", 1, 0, 0, s1, 2};
    lopt_status st = lopt_pathology_plot(&p1, dir, "lr_vs_K", err);
    if (st == LOPT_OK) {
        lopt_plot_series sr[2] = {{"at K's lr", lk, r->mean_loss, NULL, NULL, nK},
                                  {"at the optimum lr", lk, optv, NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: full-horizon loss (mean over %lld steps) vs K",
                 r->task, (long long)o->horizon);
        lopt_plot pl = {title, "log10 K (truncation length)", "full-horizon mean loss", 1, 0, 0,
                        sr, 2};
        st = lopt_pathology_plot(&pl, dir, "loss_vs_K", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series sr[2] = {{"mean over horizon", r->grid_log10, r->grid_mean, NULL, NULL, GP},
                                  {"loss at step H", r->grid_log10, r->grid_final, NULL, NULL, GP}};
        snprintf(title, sizeof title, "%s: SGD, full horizon (%lld steps), %d instances",
                 r->task, (long long)o->horizon, o->instances);
        lopt_plot pl = {title, "log10 lr", "loss (diverged: clipped)", 1, 0, 0, sr, 2};
        st = lopt_pathology_plot(&pl, dir, "loss_vs_lr", err);
    }
    free(lk); free(optl); free(optv);
    return st;
}

static lopt_status write_json(const lopt_bias_result *r, const char *dir, lopt_err *err)
{
    const lopt_bias_opts *o = &r->o;
    lopt_sbuf b = {0};
    lopt_pathology_json_head(&b, "bias", r->task);
    lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"instances\": %d,\n  \"horizon\": %lld,\n"
                  "  \"outer_steps\": %d,\n  \"outer_lr\": %g,\n  \"lr0\": %g,\n"
                  "  \"lr_grid\": [%g, %g, %d],\n  \"loss_clip_factor\": %g,\n"
                  "  \"optimum\": {\"lr\": ",
              (unsigned long long)o->seed, o->instances, (long long)o->horizon, o->outer_steps,
              o->outer_lr, o->lr0, o->lr_lo, o->lr_hi, o->grid_points, o->loss_clip_factor);
    lopt_json_num(&b, r->opt_lr);
    lopt_sb_printf(&b, ", \"full_horizon_mean_loss\": ");
    lopt_json_num(&b, r->opt.mean_loss);
    lopt_sb_printf(&b, ", \"final_loss\": ");
    lopt_json_num(&b, r->opt.final_loss);
    lopt_sb_printf(&b, ", \"grid_lr\": ");
    lopt_json_num(&b, r->grid_lr[r->best]);
    lopt_sb_printf(&b, ", \"lr_minimising_final_loss_on_grid\": ");
    lopt_json_num(&b, r->grid_lr[r->best_final]);
    lopt_sb_printf(&b, "},\n  \"per_K\": [");
    for (int k = 0; k < o->nK; k++) {
        const char *names[] = {"lr", "lr_over_optimum", "final_metagrad", "truncated_loss",
                               "full_horizon_mean_loss", "final_loss"};
        double vals[] = {r->lr[k], r->lr[k] / r->opt_lr, r->final_metagrad[k],
                         r->truncated_loss[k], r->mean_loss[k], r->final_loss[k]};
        lopt_sb_printf(&b, "%s\n    {\"K\": %d", k ? "," : "", o->Ks[k]);
        for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
            lopt_sb_printf(&b, ", \"%s\": ", names[i]);
            lopt_json_num(&b, vals[i]);
        }
        lopt_sb_printf(&b, ", \"diverged_instances\": %d}", r->diverged[k]);
    }
    lopt_sb_printf(&b, "\n  ]\n}\n");
    return lopt_write_sb_in(dir, "summary.json", &b, err);
}

static char *summary_text(const lopt_bias_result *r)
{
    const lopt_bias_opts *o = &r->o;
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "bias on %s: SGD lr meta-learned with truncation K, horizon %lld, "
                  "%d instances\n  full-horizon optimum: lr %.4g, mean loss %.5g, final "
                  "loss %.5g\n  K       lr          lr/optimum  mean loss   final loss\n",
              r->task, (long long)o->horizon, o->instances, r->opt_lr, r->opt.mean_loss,
              r->opt.final_loss);
    for (int k = 0; k < o->nK; k++)
        lopt_sb_printf(&b, "  %-7d %-11.4g %-11.4g %-11.5g %.5g\n", o->Ks[k], r->lr[k],
                  r->lr[k] / r->opt_lr, r->mean_loss[k], r->final_loss[k]);
    return b.s;
}

lopt_status lopt_bias_write(const lopt_bias_result *r, const char *dir, char **summary,
                            lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = write_csvs(r, dir, err);
    if (st == LOPT_OK) st = plot_K_and_lr(r, dir, err);
    if (st == LOPT_OK) st = plot_metagrad(r, dir, err);
    if (st == LOPT_OK) st = plot_outer(r, dir, err);
    if (st == LOPT_OK) st = write_json(r, dir, err);
    if (st == LOPT_OK && summary) *summary = summary_text(r);
    return st;
}
