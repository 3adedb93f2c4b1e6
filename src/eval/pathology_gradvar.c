/* pathology_gradvar.c - the gradvar study (pathology.h): rp against es outer-gradient
 * variance as the unroll grows. Metz et al. 2019, section 4, figure 4. The
 * per-sample estimates and their merge are meta-training's own (meta/estimator.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pathology_int.h"
#include "meta/estimator.h"

void lopt_gradvar_opts_default(lopt_gradvar_opts *o)
{
    memset(o, 0, sizeof *o);
    o->c.seed = 9;
    o->c.outer_split = LOPT_SPLIT_VALID;
    o->c.loss_clip = 10;
    int Ks[] = {1, 3, 10, 30, 100, 300};
    o->nK = 6;
    memcpy(o->Ks, Ks, sizeof Ks);
    o->samples = 16;
    o->sigma = 0.01f;
}

lopt_status lopt_gradvar_check(const lopt_gradvar_opts *o, lopt_err *err)
{
    lopt_status st = lopt_pathology_check_common(&o->c, err);
    if (st == LOPT_OK) st = lopt_pathology_check_Ks(o->Ks, o->nK, 1000000, err);
    if (st != LOPT_OK) return st;
    if (o->samples < 2 || o->samples > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "--samples must be in 2..100000 (sample variances)");
    if (!(o->sigma > 0)) return lopt_fail(err, LOPT_EUSAGE, "--sigma must be positive");
    return LOPT_OK;
}

/* ---- run ------------------------------------------------------------------------------ */

typedef struct {
    const lopt_gradvar_opts *o;
    lopt_task *t;
    lopt_unroll_cfg cfg;
    lopt_traj start, plus, minus;
    size_t np;
    float *eps, *grp, *ges, *g;   /* (np) */
    lopt_pair_ws pw;
    lopt_est_sums sums;
    int64_t done, total;
} gradvar_ws;

/* row k: S antithetic pairs from the start state, unrolled K steps */
static void run_K(gradvar_ws *s, lopt_gradvar_row *r, int K)
{
    const lopt_gradvar_opts *o = s->o;
    const lopt_arch *a = o->c.arch;
    const size_t np = s->np, n = s->t->n;
    const int S = o->samples;
    double t0 = lopt_now();
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, s->t, a, K);
    s->cfg.K = r->K = K;
    r->tape_mb = lopt_unroll_tape_bytes(&ws) / 1e6;
    lopt_est_sums_clear(&s->sums);
    for (int j = 0; j < S; j++) {
        /* the same perturbations at every K (common random numbers across K) */
        lopt_rng_fill_normal(s->eps, np, o->sigma, o->c.seed, PATHOLOGY_STREAM,
                             (uint64_t)(1000 + j) * np);
        lopt_traj_copy(&s->plus, &s->start, n, lopt_arch_state_rows(a));
        lopt_traj_copy(&s->minus, &s->start, n, lopt_arch_state_rows(a));
        lopt_pair_out po = lopt_pair_estimate(&ws, &s->pw, &s->cfg, o->c.theta, s->eps,
                                              &s->plus, &s->minus, s->grp);
        lopt_es_sample(po.loss_plus - po.loss_minus, o->sigma, s->eps, np, s->ges);
        lopt_est_sums_add(&s->sums, s->grp, s->ges);
        r->diverged += po.diverged;
        r->loss += 0.5 * (po.loss_plus + po.loss_minus) / S;
        double nr = 0, ne = 0;
        for (size_t i = 0; i < np; i++) {
            nr += (double)s->grp[i] * s->grp[i];
            ne += (double)s->ges[i] * s->ges[i];
        }
        r->rp_sample_norm += sqrt(nr) / S;
        r->es_sample_norm += sqrt(ne) / S;
        s->done += 2LL * K;
        lopt_pathology_report(o->c.progress, o->c.user, s->done, s->total, "K=%d sample %d/%d",
                              K, j + 1, S);
    }
    /* an overflowed rp sample has infinite variance: the merge takes es alone
     * (meta-training does the same, through the same combine) */
    lopt_est_stats es;
    lopt_est_combine(LOPT_COMBINE_MERGED, &s->sums, &s->sums, NULL, s->g, &es);
    r->rp_nonfinite = (int)s->sums.rp_nonfinite;
    r->g_rp_norm = es.g_rp_norm;
    r->g_es_norm = es.g_es_norm;
    r->v_rp = es.v_rp;
    r->v_es = es.v_es;
    r->w_es = es.w_es;
    if (r->rp_nonfinite) r->rp_sample_norm = INFINITY;
    r->time_s = lopt_now() - t0;
    lopt_unroll_ws_free(&ws);
}

static void ws_init(gradvar_ws *s, lopt_task *t, const lopt_gradvar_opts *o)
{
    const lopt_arch *a = o->c.arch;
    memset(s, 0, sizeof *s);
    s->o = o;
    s->t = t;
    s->np = lopt_arch_nparams(a);
    lopt_traj_alloc(&s->start, t->n, lopt_arch_state_rows(a));
    lopt_traj_alloc(&s->plus, t->n, lopt_arch_state_rows(a));
    lopt_traj_alloc(&s->minus, t->n, lopt_arch_state_rows(a));
    s->eps = lopt_floats(s->np);
    s->grp = lopt_floats(s->np);
    s->ges = lopt_floats(s->np);
    s->g = lopt_floats(s->np);
    lopt_pair_ws_init(&s->pw, s->np);
    lopt_est_sums_init(&s->sums, s->np);
}

static void ws_free(gradvar_ws *s)
{
    lopt_est_sums_free(&s->sums);
    lopt_pair_ws_free(&s->pw);
    lopt_free(s->eps); lopt_free(s->grp); lopt_free(s->ges); lopt_free(s->g);
    lopt_traj_free(&s->start);
    lopt_traj_free(&s->plus);
    lopt_traj_free(&s->minus);
}

lopt_status lopt_gradvar_run(lopt_task *t, const lopt_gradvar_opts *o, lopt_gradvar_result *r,
                             lopt_err *err)
{
    memset(r, 0, sizeof *r);
    lopt_status st = lopt_gradvar_check(o, err);
    if (st == LOPT_OK) st = lopt_pathology_check_theta(&o->c, err);
    if (st != LOPT_OK) return st;
    r->o = *o;
    r->task = t->name;
    r->rows = lopt_xcalloc((size_t)o->nK, sizeof *r->rows);
    gradvar_ws s;
    ws_init(&s, t, o);
    int Kmax = 1;
    s.total = s.done = o->c.warmup;
    for (int i = 0; i < o->nK; i++) {
        Kmax = o->Ks[i] > Kmax ? o->Ks[i] : Kmax;
        s.total += 2LL * o->samples * o->Ks[i];
    }
    lopt_unroll_ws ws0;   /* the start state: forward only */
    lopt_unroll_ws_init(&ws0, t, o->c.arch, Kmax);
    lopt_pathology_report(o->c.progress, o->c.user, 0, s.total, "warmup %lld steps",
                          (long long)o->c.warmup);
    s.cfg = lopt_pathology_start(&ws0, &o->c, &s.start);
    lopt_unroll_ws_free(&ws0);
    for (int k = 0; k < o->nK; k++) run_K(&s, &r->rows[k], o->Ks[k]);
    ws_free(&s);
    return LOPT_OK;
}

void lopt_gradvar_result_free(lopt_gradvar_result *r)
{
    if (!r) return;
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---- write ---------------------------------------------------------------------------- */

static lopt_status write_csv(const lopt_gradvar_result *r, const char *dir, lopt_err *err)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,samples,sigma,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,"
                  "rp_sample_norm,es_sample_norm,diverged,rp_nonfinite,tape_mb,time_s\n");
    for (int k = 0; k < r->o.nK; k++) {
        const lopt_gradvar_row *w = &r->rows[k];
        lopt_sb_printf(&b, "%d,%d,%g,%.8g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%d,%d,%.4f,%.3f\n",
                  w->K, r->o.samples, r->o.sigma, w->loss, w->g_rp_norm, w->g_es_norm, w->v_rp,
                  w->v_es, w->w_es, w->rp_sample_norm, w->es_sample_norm, w->diverged,
                  w->rp_nonfinite, w->tape_mb, w->time_s);
    }
    return lopt_write_sb_in(dir, "gradvar.csv", &b, err);
}

/* decades spanned by the finite positive values of columns c[i0..i0+n) */
static double log_span(double *const *c, int i0, int n, int m)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = i0; i < i0 + n; i++)
        for (int k = 0; k < m; k++)
            if (isfinite(c[i][k]) && c[i][k] > 0) lo = fmin(lo, c[i][k]), hi = fmax(hi, c[i][k]);
    return hi > lo ? log10(hi / lo) : 0;
}

static void to_log10(double *v, int n)
{
    for (int k = 0; k < n; k++) v[k] = v[k] > 0 ? log10(v[k]) : NAN;
}

/* variance, norm and es_weight against log10 K */
static lopt_status write_plots(const lopt_gradvar_result *r, const char *dir, lopt_err *err)
{
    const int nK = r->o.nK, S = r->o.samples;
    double *lk = lopt_pathology_dalloc((size_t)nK), *c[7];
    for (int i = 0; i < 7; i++) c[i] = lopt_pathology_dalloc((size_t)nK);
    for (int k = 0; k < nK; k++) {
        const lopt_gradvar_row *w = &r->rows[k];
        lk[k] = log10((double)w->K);
        c[0][k] = w->v_rp;
        c[1][k] = w->v_es;
        c[2][k] = w->g_rp_norm;
        c[3][k] = w->g_es_norm;
        c[4][k] = w->w_es;
        c[5][k] = w->rp_sample_norm;
        c[6][k] = w->es_sample_norm;
    }
    char title[200], ylab[2][96];
    /* log-y axes over more than 12 decades (rp's variance reaches 1e50) get
     * unreadable ticks: plot log10 of the values on a linear axis instead */
    int lg[2] = {log_span(c, 0, 2, nK) > 12, log_span(c, 2, 2, nK) > 12 ||
                                             log_span(c, 5, 2, nK) > 12};
    if (lg[0]) for (int i = 0; i < 2; i++) to_log10(c[i], nK);
    if (lg[1]) for (int i = 2; i < 7; i++) if (i != 4) to_log10(c[i], nK);
    snprintf(ylab[0], sizeof ylab[0], "%ssummed per-coordinate variance", lg[0] ? "log10 " : "");
    snprintf(ylab[1], sizeof ylab[1], "%sgradient norm", lg[1] ? "log10 " : "");
    lopt_plot_series sv[2] = {{"rp", lk, c[0], NULL, NULL, nK}, {"es", lk, c[1], NULL, NULL, nK}};
    snprintf(title, sizeof title,
             "%s: outer-gradient variance vs unroll length (%d samples, sigma %g)", r->task, S,
             r->o.sigma);
    lopt_plot pv = {title, "log10 K (unroll length)", ylab[0], !lg[0], 0, 0, sv, 2};
    lopt_status st = lopt_pathology_plot(&pv, dir, "variance", err);
    if (st == LOPT_OK) {
        lopt_plot_series s[4] = {{"rp |mean|", lk, c[2], NULL, NULL, nK},
                                 {"es |mean|", lk, c[3], NULL, NULL, nK},
                                 {"rp mean |sample|", lk, c[5], NULL, NULL, nK},
                                 {"es mean |sample|", lk, c[6], NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: outer-gradient norms vs unroll length", r->task);
        lopt_plot pl = {title, "log10 K (unroll length)", ylab[1], !lg[1], 0, 0, s, 4};
        st = lopt_pathology_plot(&pl, dir, "norm", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series s[1] = {{"mean es weight", lk, c[4], NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: weight of es in the merged gradient vs K", r->task);
        lopt_plot pl = {title, "log10 K (unroll length)", "mean es weight (0 rp .. 1 es)", 0, 0,
                        0, s, 1};
        st = lopt_pathology_plot(&pl, dir, "es_weight", err);
    }
    free(lk);
    for (int i = 0; i < 7; i++) free(c[i]);
    return st;
}

static lopt_status write_json(const lopt_gradvar_result *r, const char *dir, lopt_err *err)
{
    const lopt_gradvar_opts *o = &r->o;
    lopt_sbuf b = {0};
    lopt_pathology_json_head(&b, "gradvar", r->task);
    lopt_sb_printf(&b, ",\n  \"theta\": ");
    lopt_json_str(&b, o->c.theta_source ? o->c.theta_source : "(in memory)");
    lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"warmup\": %lld,\n  \"outer_loss\": \"%s\",\n"
                  "  \"loss_clip\": %g,\n  \"samples\": %d,\n  \"sigma\": %g,\n  \"rows\": [",
              (unsigned long long)o->c.seed, (long long)o->c.warmup,
              o->c.outer_split == LOPT_SPLIT_VALID ? "valid" : "train", o->c.loss_clip,
              o->samples, o->sigma);
    for (int k = 0; k < o->nK; k++) {
        const lopt_gradvar_row *w = &r->rows[k];
        const char *names[] = {"outer_loss", "g_rp_norm", "g_es_norm", "v_rp", "v_es",
                               "w_es", "rp_sample_norm", "es_sample_norm", "tape_mb"};
        double vals[] = {w->loss, w->g_rp_norm, w->g_es_norm, w->v_rp, w->v_es, w->w_es,
                         w->rp_sample_norm, w->es_sample_norm, w->tape_mb};
        lopt_sb_printf(&b, "%s\n    {\"K\": %d", k ? "," : "", w->K);
        for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
            lopt_sb_printf(&b, ", \"%s\": ", names[i]);
            lopt_json_num(&b, vals[i]);
        }
        lopt_sb_printf(&b, ", \"diverged\": %d, \"rp_nonfinite\": %d}", w->diverged,
                  w->rp_nonfinite);
    }
    lopt_sb_printf(&b, "\n  ]\n}\n");
    return lopt_write_sb_in(dir, "summary.json", &b, err);
}

static char *summary_text(const lopt_gradvar_result *r)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "gradvar on %s (%d antithetic pairs, sigma %g)\n"
                  "  K       v_rp        v_es        |g_rp|      |g_es|      w_es   "
                  "rp overflowed\n",
              r->task, r->o.samples, r->o.sigma);
    for (int k = 0; k < r->o.nK; k++) {
        const lopt_gradvar_row *w = &r->rows[k];
        lopt_sb_printf(&b, "  %-7d %-11.4g %-11.4g %-11.4g %-11.4g %-6.3f %d/%d\n", w->K,
                  w->v_rp, w->v_es, w->g_rp_norm, w->g_es_norm, w->w_es, w->rp_nonfinite,
                  r->o.samples);
    }
    return b.s;
}

lopt_status lopt_gradvar_write(const lopt_gradvar_result *r, const char *dir, char **summary,
                               lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = write_csv(r, dir, err);
    if (st == LOPT_OK) st = write_plots(r, dir, err);
    if (st == LOPT_OK) st = write_json(r, dir, err);
    if (st == LOPT_OK && summary) *summary = summary_text(r);
    return st;
}
