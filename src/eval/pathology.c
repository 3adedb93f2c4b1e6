/* pathology.c - what the pathology studies share (pathology_int.h), the roughness
 * measure, and each study's pipeline: check, create the directory, run, write, free.
 * The studies themselves are pathology_surface.c, pathology_gradvar.c and
 * pathology_bias.c (Metz et al. 2019, sections 3-4; docs/design.md section 1.4). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "eval/pathology_int.h"

double *lopt_pathology_dalloc(size_t n) { return lopt_xcalloc(n ? n : 1, sizeof(double)); }

void lopt_pathology_report(lopt_pathology_progress cb, void *user, int64_t done,
                           int64_t total, const char *fmt, ...)
{
    if (!cb) return;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cb(user, done, total, what);
}

double lopt_pathology_roughness(const double *y, int n)
{
    double lo = INFINITY, hi = -INFINITY, tv = 0, prev = NAN;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        lo = fmin(lo, y[i]);
        hi = fmax(hi, y[i]);
        if (m++) tv += fabs(y[i] - prev);
        prev = y[i];
    }
    if (m < 2 || !(hi > lo)) return NAN;
    return tv / (hi - lo);
}

lopt_status lopt_pathology_check_Ks(const int *Ks, int nK, int64_t max, lopt_err *err)
{
    if (nK < 1 || nK > LOPT_PATHOLOGY_MAX_K)
        return lopt_fail(err, LOPT_EUSAGE, "between 1 and %d unroll lengths",
                         LOPT_PATHOLOGY_MAX_K);
    for (int i = 0; i < nK; i++) {
        if (Ks[i] < 1 || (max > 0 && Ks[i] > max))
            return lopt_fail(err, LOPT_EUSAGE, "unroll length %d out of range 1..%lld", Ks[i],
                             (long long)(max > 0 ? max : 1000000));
        for (int k = 0; k < i; k++)
            if (Ks[k] == Ks[i])
                return lopt_fail(err, LOPT_EUSAGE, "unroll length %d given twice", Ks[i]);
    }
    return LOPT_OK;
}

lopt_status lopt_pathology_check_common(const lopt_pathology_common *c, lopt_err *err)
{
    if (c->warmup < 0) return lopt_fail(err, LOPT_EUSAGE, "--warmup must not be negative");
    return LOPT_OK;
}

lopt_status lopt_pathology_check_theta(const lopt_pathology_common *c, lopt_err *err)
{
    if (!c->arch || !c->theta) return lopt_fail(err, LOPT_EUSAGE, "no learned optimizer");
    if (!lopt_arch_has_vjp(c->arch))
        return lopt_fail(err, LOPT_EUSAGE, "the Adam direction has no exact reverse pass, "
                         "which the studies need (rp)");
    return LOPT_OK;
}

lopt_unroll_cfg lopt_pathology_start(lopt_unroll_ws *ws, const lopt_pathology_common *c,
                                     lopt_traj *start)
{
    lopt_unroll_cfg cfg = {.K = ws->K, .outer_split = c->outer_split, .loss_clip = c->loss_clip,
                           .diverge_factor = 1e30f, .first_order = 0};
    lopt_traj_start(ws, start, c->seed, INT64_MAX / 4);
    for (int64_t left = c->warmup; left > 0;) {
        lopt_unroll_cfg w = cfg;
        w.K = left < ws->K ? (int)left : ws->K;
        lopt_unroll(ws, &w, c->theta, start, NULL);
        left -= w.K;
    }
    start->needs_reset = 0;
    return cfg;
}

void lopt_pathology_direction(float *u, size_t np, uint64_t seed, uint64_t which,
                              const float *against)
{
    lopt_rng_fill_normal(u, np, 1.0f, seed, PATHOLOGY_STREAM, which * np);
    if (against) {
        double d = 0;
        for (size_t i = 0; i < np; i++) d += (double)u[i] * against[i];
        for (size_t i = 0; i < np; i++) u[i] -= (float)(d * against[i]);
    }
    double s = 0;
    for (size_t i = 0; i < np; i++) s += (double)u[i] * u[i];
    for (size_t i = 0; i < np; i++) u[i] = (float)(u[i] / sqrt(s));
}

lopt_status lopt_pathology_plot(const lopt_plot *p, const char *dir, const char *name,
                                lopt_err *err)
{
    char base[4096];
    lopt_status st = lopt_path_join(base, sizeof base, dir, name, err);
    return st != LOPT_OK ? st : lopt_plot_write(p, base, err);
}

void lopt_pathology_json_head(lopt_sbuf *b, const char *study, const char *task)
{
    lopt_sb_printf(b, "{\n  \"study\": \"%s\",\n  \"task\": ", study);
    lopt_json_str(b, task);
}

/* ---- the pipelines ----------------------------------------------------------------- */

lopt_status lopt_pathology_surface(lopt_task *t, const lopt_surface_opts *o, const char *dir,
                                   char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = lopt_surface_check(o, err);
    if (st == LOPT_OK) st = lopt_pathology_check_theta(&o->c, err);
    if (st == LOPT_OK) st = lopt_outdir_create(dir, err);
    if (st != LOPT_OK) return st;
    lopt_surface_result r;
    st = lopt_surface_run(t, o, &r, err);
    if (st == LOPT_OK) st = lopt_surface_write(&r, dir, summary, err);
    lopt_surface_result_free(&r);
    return st;
}

lopt_status lopt_pathology_gradvar(lopt_task *t, const lopt_gradvar_opts *o, const char *dir,
                                   char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = lopt_gradvar_check(o, err);
    if (st == LOPT_OK) st = lopt_pathology_check_theta(&o->c, err);
    if (st == LOPT_OK) st = lopt_outdir_create(dir, err);
    if (st != LOPT_OK) return st;
    lopt_gradvar_result r;
    st = lopt_gradvar_run(t, o, &r, err);
    if (st == LOPT_OK) st = lopt_gradvar_write(&r, dir, summary, err);
    lopt_gradvar_result_free(&r);
    return st;
}

lopt_status lopt_pathology_bias(lopt_task *t, const lopt_bias_opts *o, const char *dir,
                                char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = lopt_bias_check(o, err);
    if (st == LOPT_OK) st = lopt_outdir_create(dir, err);
    if (st != LOPT_OK) return st;
    lopt_bias_result r;
    st = lopt_bias_run(t, o, &r, err);
    if (st == LOPT_OK) st = lopt_bias_write(&r, dir, summary, err);
    lopt_bias_result_free(&r);
    return st;
}
