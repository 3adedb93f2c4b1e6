/* pathology_surface.c - the surface study (pathology.h): the outer loss along a
 * line through theta for several unroll lengths, its smoothed version, and 2-D
 * slices. Metz et al. 2019, section 3, figure 2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pathology_int.h"

void lopt_surface_opts_default(lopt_surface_opts *o)
{
    memset(o, 0, sizeof *o);
    o->c.seed = 9;
    o->c.outer_split = LOPT_SPLIT_VALID;
    o->c.loss_clip = 10;
    int Ks[] = {1, 10, 100, 1000};
    o->nK = 4;
    memcpy(o->Ks, Ks, sizeof Ks);
    o->points = 121;
    o->radius = 1.0;
    o->samples = 16;
    o->sigma = 0.01f;
    o->smooth_every = 2;
    o->grid = 0;
    o->K2d[0] = 100;
    o->nK2d = 1;
}

lopt_status lopt_surface_check(const lopt_surface_opts *o, lopt_err *err)
{
    lopt_status st = lopt_pathology_check_common(&o->c, err);
    if (st == LOPT_OK) st = lopt_pathology_check_Ks(o->Ks, o->nK, 1000000, err);
    if (st != LOPT_OK) return st;
    if (o->points < 3 || o->points > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "--points must be in 3..100000");
    if (!(o->radius > 0) || !isfinite(o->radius))
        return lopt_fail(err, LOPT_EUSAGE, "--radius must be positive");
    if (o->samples < 0 || o->samples % 2 || o->samples > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "--samples must be even (antithetic pairs) in 0..100000");
    if (!(o->sigma > 0)) return lopt_fail(err, LOPT_EUSAGE, "--sigma must be positive");
    if (o->smooth_every < 1) return lopt_fail(err, LOPT_EUSAGE, "--smooth-every must be >= 1");
    if (o->grid < 0 || o->grid == 1 || o->grid > 1000)
        return lopt_fail(err, LOPT_EUSAGE, "--grid must be 0 (off) or in 2..1000");
    return o->grid ? lopt_pathology_check_Ks(o->K2d, o->nK2d, 1000000, err) : LOPT_OK;
}

/* ---- run ------------------------------------------------------------------------------ */

/* what every unroll of the study uses */
typedef struct {
    const lopt_surface_opts *o;
    lopt_unroll_ws ws;
    lopt_unroll_cfg cfg;
    lopt_traj start, tr;
    size_t np;
    float *u, *v, *tp;   /* (np) the two directions, the perturbed theta */
    float *eps;          /* (samples/2, np) the antithetic perturbations */
    int64_t done, total; /* progress in inner steps */
} surface_ws;

/* L_K(theta0 + a u + b v + sign eps) from the start state (v, eps may be NULL) */
static double line_loss(surface_ws *s, double a, const float *v, double b, const float *eps,
                        float sign)
{
    const float *theta0 = s->o->c.theta;
    for (size_t i = 0; i < s->np; i++) {
        double x = theta0[i] + a * s->u[i];
        if (v) x += b * v[i];
        if (eps) x += sign * eps[i];
        s->tp[i] = (float)x;
    }
    lopt_traj_copy(&s->tr, &s->start, s->ws.task->n, lopt_arch_state_rows(s->ws.arch));
    return lopt_unroll(&s->ws, &s->cfg, s->tp, &s->tr, NULL).loss;
}

/* progress: what runs, with the unroll length in it (fmt has one %d) */
static void report(surface_ws *s, const char *fmt)
{
    lopt_pathology_report(s->o->c.progress, s->o->c.user, s->done, s->total, fmt, s->cfg.K);
}

static void ws_init(surface_ws *s, lopt_task *t, const lopt_surface_opts *o, int Kmax)
{
    const lopt_arch *a = o->c.arch;
    memset(s, 0, sizeof *s);
    s->o = o;
    s->np = lopt_arch_nparams(a);
    lopt_unroll_ws_init(&s->ws, t, a, Kmax);
    lopt_traj_alloc(&s->start, t->n, lopt_arch_state_rows(a));
    lopt_traj_alloc(&s->tr, t->n, lopt_arch_state_rows(a));
    s->u = lopt_floats(s->np);
    s->v = lopt_floats(s->np);
    s->tp = lopt_floats(s->np);
    lopt_pathology_direction(s->u, s->np, o->c.seed, 0, NULL);
    lopt_pathology_direction(s->v, s->np, o->c.seed, 1, s->u);
    int E = o->samples;
    s->eps = lopt_floats((size_t)(E / 2 > 0 ? E / 2 : 1) * s->np);
    for (int j = 0; j < E / 2; j++)
        lopt_rng_fill_normal(s->eps + (size_t)j * s->np, s->np, o->sigma, o->c.seed,
                             PATHOLOGY_STREAM, (uint64_t)(2 + j) * s->np);
}

static void ws_free(surface_ws *s)
{
    lopt_free(s->u); lopt_free(s->v); lopt_free(s->tp); lopt_free(s->eps);
    lopt_traj_free(&s->start);
    lopt_traj_free(&s->tr);
    lopt_unroll_ws_free(&s->ws);
}

/* line k: the loss at every point, then the smoothed loss at every smooth_every-th */
static void run_line(surface_ws *s, lopt_surface_result *r, int k)
{
    const lopt_surface_opts *o = s->o;
    const int P = r->P, E = o->samples;
    s->cfg.K = o->Ks[k];
    r->at0[k] = line_loss(s, 0, NULL, 0, NULL, 0);
    for (int p = 0; p < P; p++) {
        r->loss[(size_t)k * P + p] = line_loss(s, r->a[p], NULL, 0, NULL, 0);
        s->done += s->cfg.K;
        report(s, "K=%d line");
    }
    for (int p = 0; p < P; p++) {
        r->smooth[(size_t)k * P + p] = NAN;
        if (!E || p % o->smooth_every) continue;
        double sum = 0;
        for (int j = 0; j < E; j++)
            sum += line_loss(s, r->a[p], NULL, 0, s->eps + (size_t)(j / 2) * s->np,
                             j % 2 ? -1.0f : 1.0f);
        r->smooth[(size_t)k * P + p] = sum / E;
        s->done += (int64_t)s->cfg.K * E;
        report(s, "K=%d smoothed");
    }
}

/* slice q: G x G points of the plane spanned by u and v */
static void run_slice(surface_ws *s, lopt_surface_result *r, int q)
{
    const int G = r->G;
    const double R = s->o->radius;
    s->cfg.K = s->o->K2d[q];
    for (int row = 0; row < G; row++)
        for (int c = 0; c < G; c++) {
            double aa = -R + 2 * R * c / (G - 1), bb = -R + 2 * R * row / (G - 1);
            r->z[((size_t)q * G + row) * G + c] = line_loss(s, aa, s->v, bb, NULL, 0);
            s->done += s->cfg.K;
            report(s, "2-D slice K=%d");
        }
}

/* min, max and roughness of each line */
static void line_stats(lopt_surface_result *r)
{
    const int P = r->P;
    double *ys = lopt_pathology_dalloc((size_t)P);
    for (int k = 0; k < r->nK; k++) {
        const double *lk = r->loss + (size_t)k * P, *sk = r->smooth + (size_t)k * P;
        r->lo[k] = INFINITY, r->hi[k] = -INFINITY;
        for (int p = 0; p < P; p++)
            if (isfinite(lk[p])) r->lo[k] = fmin(r->lo[k], lk[p]), r->hi[k] = fmax(r->hi[k], lk[p]);
        r->rough[k] = lopt_pathology_roughness(lk, P);
        int m = 0;
        for (int p = 0; p < P; p++)
            if (isfinite(sk[p])) ys[m++] = sk[p];
        r->rough_s[k] = lopt_pathology_roughness(ys, m);
    }
    free(ys);
}

static void result_alloc(lopt_surface_result *r, lopt_task *t, const lopt_surface_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->task = t->name;
    r->P = o->points;
    r->G = o->grid;
    r->nK = o->nK;
    r->n2 = o->grid ? o->nK2d : 0;
    size_t P = (size_t)r->P, nK = (size_t)r->nK;
    r->a = lopt_pathology_dalloc(P);
    r->loss = lopt_pathology_dalloc(nK * P);
    r->smooth = lopt_pathology_dalloc(nK * P);
    r->at0 = lopt_pathology_dalloc(nK);
    r->lo = lopt_pathology_dalloc(nK);
    r->hi = lopt_pathology_dalloc(nK);
    r->rough = lopt_pathology_dalloc(nK);
    r->rough_s = lopt_pathology_dalloc(nK);
    r->z = lopt_pathology_dalloc((size_t)r->G * r->G * r->n2);
    for (int p = 0; p < r->P; p++) r->a[p] = -o->radius + 2 * o->radius * p / (r->P - 1);
}

lopt_status lopt_surface_run(lopt_task *t, const lopt_surface_opts *o, lopt_surface_result *r,
                             lopt_err *err)
{
    memset(r, 0, sizeof *r);
    lopt_status st = lopt_surface_check(o, err);
    if (st == LOPT_OK) st = lopt_pathology_check_theta(&o->c, err);
    if (st != LOPT_OK) return st;
    result_alloc(r, t, o);
    int Kmax = 1;
    int64_t sum2 = 0, sumK = 0;
    for (int i = 0; i < r->n2; i++) {
        Kmax = o->K2d[i] > Kmax ? o->K2d[i] : Kmax;
        sum2 += o->K2d[i];
    }
    for (int i = 0; i < o->nK; i++) {
        Kmax = o->Ks[i] > Kmax ? o->Ks[i] : Kmax;
        sumK += o->Ks[i];
    }
    surface_ws s;
    ws_init(&s, t, o, Kmax);
    int E = o->samples, nsm = E ? (r->P - 1) / o->smooth_every + 1 : 0;
    s.total = o->c.warmup + sumK * (r->P + (int64_t)nsm * E) + (int64_t)r->G * r->G * sum2;
    s.done = o->c.warmup;
    lopt_pathology_report(o->c.progress, o->c.user, 0, s.total, "warmup %lld steps",
                          (long long)o->c.warmup);
    s.cfg = lopt_pathology_start(&s.ws, &o->c, &s.start);
    for (int k = 0; k < o->nK; k++) run_line(&s, r, k);
    for (int q = 0; q < r->n2; q++) run_slice(&s, r, q);
    line_stats(r);
    ws_free(&s);
    return LOPT_OK;
}

void lopt_surface_result_free(lopt_surface_result *r)
{
    if (!r) return;
    free(r->a); free(r->loss); free(r->smooth); free(r->at0); free(r->lo); free(r->hi);
    free(r->rough); free(r->rough_s); free(r->z);
    memset(r, 0, sizeof *r);
}

/* ---- write ---------------------------------------------------------------------------- */

static lopt_status write_csvs(const lopt_surface_result *r, const char *dir, lopt_err *err)
{
    const int P = r->P, G = r->G;
    const double R = r->o.radius;
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,a,loss,smoothed_loss\n");
    for (int k = 0; k < r->nK; k++)
        for (int p = 0; p < P; p++)
            lopt_sb_printf(&b, "%d,%.6g,%.8g,%.8g\n", r->o.Ks[k], r->a[p],
                           r->loss[(size_t)k * P + p], r->smooth[(size_t)k * P + p]);
    lopt_status st = lopt_write_sb_in(dir, "surface.csv", &b, err);
    if (st != LOPT_OK || !G) return st;
    lopt_sb_printf(&b, "K,a,b,loss\n");
    for (int q = 0; q < r->n2; q++)
        for (int row = 0; row < G; row++)
            for (int c = 0; c < G; c++)
                lopt_sb_printf(&b, "%d,%.6g,%.6g,%.8g\n", r->o.K2d[q], -R + 2 * R * c / (G - 1),
                               -R + 2 * R * row / (G - 1), r->z[((size_t)q * G + row) * G + c]);
    return lopt_write_sb_in(dir, "surface2d.csv", &b, err);
}

/* surface_K<K>: the line and its smoothed points */
static lopt_status plot_line(const lopt_surface_result *r, int k, const char *dir, lopt_err *err)
{
    const int P = r->P;
    const double *lk = r->loss + (size_t)k * P, *sk = r->smooth + (size_t)k * P;
    double *xs = lopt_pathology_dalloc((size_t)P), *ys = lopt_pathology_dalloc((size_t)P);
    int m = 0;
    for (int p = 0; p < P; p++)
        if (isfinite(sk[p])) xs[m] = r->a[p], ys[m++] = sk[p];
    char lab1[64], lab2[96], title[256], name[64];
    snprintf(lab1, sizeof lab1, "L(theta + a u), K=%d", r->o.Ks[k]);
    snprintf(lab2, sizeof lab2, "smoothed s=%g n=%d", r->o.sigma, r->o.samples);
    lopt_plot_series s[2] = {{lab1, r->a, lk, NULL, NULL, P}, {lab2, xs, ys, NULL, NULL, m}};
    snprintf(title, sizeof title, "%s: outer loss along a random direction, unroll K=%d",
             r->task, r->o.Ks[k]);
    lopt_plot pl = {title, "a (distance along u)", "outer loss (mean over the unroll)",
                    0, 0, 0, s, m > 0 ? 2 : 1};
    snprintf(name, sizeof name, "surface_K%d", r->o.Ks[k]);
    lopt_status st = lopt_pathology_plot(&pl, dir, name, err);
    free(xs);
    free(ys);
    return st;
}

/* surface_all: every K on one plot, each curve min-max normalised */
static lopt_status plot_all(const lopt_surface_result *r, const char *dir, lopt_err *err)
{
    const int P = r->P;
    double *norm = lopt_pathology_dalloc((size_t)r->nK * P);
    lopt_plot_series s[LOPT_PATHOLOGY_MAX_K];
    char labs[LOPT_PATHOLOGY_MAX_K][48];
    for (int k = 0; k < r->nK; k++) {
        const double *lk = r->loss + (size_t)k * P;
        const double lo = r->lo[k], hi = r->hi[k];
        for (int p = 0; p < P; p++)
            norm[(size_t)k * P + p] = hi > lo ? (lk[p] - lo) / (hi - lo) : 0;
        snprintf(labs[k], sizeof labs[k], "K=%d", r->o.Ks[k]);
        s[k] = (lopt_plot_series){labs[k], r->a, norm + (size_t)k * P, NULL, NULL, P};
    }
    char title[160];
    snprintf(title, sizeof title, "%s: outer loss along u, each K min-max normalised", r->task);
    lopt_plot pl = {title, "a (distance along u)", "(L - min) / (max - min)", 0, 0, 0, s, r->nK};
    lopt_status st = lopt_pathology_plot(&pl, dir, "surface_all", err);
    free(norm);
    return st;
}

static lopt_status plot_slice(const lopt_surface_result *r, int q, const char *dir,
                              lopt_err *err)
{
    char title[200], name[64], base[4096];
    snprintf(title, sizeof title, "%s: outer loss on a plane through theta, K=%d", r->task,
             r->o.K2d[q]);
    snprintf(name, sizeof name, "surface2d_K%d", r->o.K2d[q]);
    lopt_status st = lopt_path_join(base, sizeof base, dir, name, err);
    lopt_heatmap h = {title, "a (direction u)", "b (v)", r->z + (size_t)q * r->G * r->G, r->G,
                      r->o.radius};
    return st != LOPT_OK ? st : lopt_heatmap_write(&h, base, err);
}

static lopt_status write_json(const lopt_surface_result *r, const char *dir, lopt_err *err)
{
    const lopt_surface_opts *o = &r->o;
    lopt_sbuf b = {0};
    lopt_pathology_json_head(&b, "surface", r->task);
    lopt_sb_printf(&b, ",\n  \"theta\": ");
    lopt_json_str(&b, o->c.theta_source ? o->c.theta_source : "(in memory)");
    lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"warmup\": %lld,\n  \"outer_loss\": \"%s\",\n"
                  "  \"loss_clip\": %g,\n  \"points\": %d,\n  \"radius\": %g,\n"
                  "  \"samples\": %d,\n  \"sigma\": %g,\n  \"smooth_every\": %d,\n"
                  "  \"grid\": %d,\n  \"K2d\": [",
              (unsigned long long)o->c.seed, (long long)o->c.warmup,
              o->c.outer_split == LOPT_SPLIT_VALID ? "valid" : "train", o->c.loss_clip, r->P,
              o->radius, o->samples, o->sigma, o->smooth_every, r->G);
    for (int q = 0; q < r->n2; q++) lopt_sb_printf(&b, "%s%d", q ? ", " : "", o->K2d[q]);
    lopt_sb_printf(&b, "],\n  \"per_K\": [");
    for (int k = 0; k < r->nK; k++) {
        lopt_sb_printf(&b, "%s\n    {\"K\": %d, \"loss_at_theta\": ", k ? "," : "", o->Ks[k]);
        lopt_json_num(&b, r->at0[k]);
        lopt_sb_printf(&b, ", \"min\": ");
        lopt_json_num(&b, r->lo[k]);
        lopt_sb_printf(&b, ", \"max\": ");
        lopt_json_num(&b, r->hi[k]);
        lopt_sb_printf(&b, ", \"roughness\": ");
        lopt_json_num(&b, r->rough[k]);
        lopt_sb_printf(&b, ", \"roughness_smoothed\": ");
        lopt_json_num(&b, r->rough_s[k]);
        lopt_sb_printf(&b, "}");
    }
    lopt_sb_printf(&b, "\n  ],\n  \"roughness_definition\": \"sum |L_{i+1} - L_i| / (max L - "
                  "min L) over the line: 1 monotone, 2 one valley, large = jagged\"\n}\n");
    return lopt_write_sb_in(dir, "summary.json", &b, err);
}

static char *summary_text(const lopt_surface_result *r)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "surface on %s (%d points in [-%g, %g], smoothed: %d perturbations, "
                  "sigma %g)\n  K       L(theta)   min        max        roughness  "
                  "smoothed roughness\n",
              r->task, r->P, r->o.radius, r->o.radius, r->o.samples, r->o.sigma);
    for (int k = 0; k < r->nK; k++)
        lopt_sb_printf(&b, "  %-7d %-10.5g %-10.5g %-10.5g %-10.4g %.4g\n", r->o.Ks[k], r->at0[k],
                  r->lo[k], r->hi[k], r->rough[k], r->rough_s[k]);
    return b.s;
}

lopt_status lopt_surface_write(const lopt_surface_result *r, const char *dir, char **summary,
                               lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = write_csvs(r, dir, err);
    for (int k = 0; k < r->nK && st == LOPT_OK; k++) st = plot_line(r, k, dir, err);
    if (st == LOPT_OK) st = plot_all(r, dir, err);
    for (int q = 0; q < r->n2 && st == LOPT_OK; q++) st = plot_slice(r, q, dir, err);
    if (st == LOPT_OK) st = write_json(r, dir, err);
    if (st == LOPT_OK && summary) *summary = summary_text(r);
    return st;
}
