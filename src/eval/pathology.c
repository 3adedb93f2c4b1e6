/* pathology.c - the pathology studies (see pathology.h): loss surfaces along lines
 * and planes through theta, rp vs es gradient variance against the unroll length,
 * and truncation bias of a meta-learned SGD learning rate. Metz et al. 2019,
 * sections 3-4; docs/design.md section 1.4. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/compare.h"
#include "eval/pathology.h"
#include "eval/plot.h"
#include "meta/meta.h"
#include "meta/unroll.h"
#include "optim/adam.h"

/* directions and perturbations: a stream of their own */
#define PATH_STREAM 0x70617468ULL

/* ---- small helpers ---------------------------------------------------------------- */


/* a JSON number, or null for NaN/inf */
static void sb_jnum(lopt_sbuf *b, double v)
{
    if (isfinite(v)) lopt_sb_printf(b, "%.8g", v);
    else lopt_sb_printf(b, "null");
}

static void sb_jstr(lopt_sbuf *b, const char *s)
{
    lopt_sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') lopt_sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) lopt_sb_printf(b, "\\u%04x", *s);
        else lopt_sb_printf(b, "%c", *s);
    }
    lopt_sb_printf(b, "\"");
}

static lopt_status write_buf(const char *dir, const char *name, lopt_sbuf *b, lopt_err *err)
{
    char path[4096];
    lopt_status st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        st = lopt_fail(err, LOPT_EUSAGE, "path too long: %s/%s", dir, name);
    else
        st = lopt_write_atomic(path, b->s ? b->s : "", b->len, err);
    free(b->s);
    memset(b, 0, sizeof *b);
    return st;
}

static lopt_status write_plot(const lopt_plot *p, const char *dir, const char *name,
                              lopt_err *err)
{
    char base[4096];
    if (snprintf(base, sizeof base, "%s/%s", dir, name) >= (int)sizeof base)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s/%s", dir, name);
    return lopt_plot_write(p, base, err);
}

static double *dalloc(size_t n) { return lopt_xcalloc(n ? n : 1, sizeof(double)); }

static void report(lopt_path_progress cb, void *user, int64_t done, int64_t total,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(lopt_path_progress cb, void *user, int64_t done, int64_t total,
                   const char *fmt, ...)
{
    if (!cb) return;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cb(user, done, total, what);
}

double lopt_path_roughness(const double *y, int n)
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

static lopt_status check_Ks(const int *Ks, int nK, int64_t max, lopt_err *err)
{
    if (nK < 1 || nK > LOPT_PATH_MAX_K)
        return lopt_fail(err, LOPT_EUSAGE, "between 1 and %d unroll lengths", LOPT_PATH_MAX_K);
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

static lopt_status check_common(const lopt_path_common *c, lopt_err *err)
{
    if (!c->arch || !c->theta) return lopt_fail(err, LOPT_EUSAGE, "no learned optimizer");
    if (c->warmup < 0) return lopt_fail(err, LOPT_EUSAGE, "warmup must not be negative");
    if (!lopt_arch_has_vjp(c->arch))
        return lopt_fail(err, LOPT_EUSAGE, "the Adam direction has no exact reverse pass, "
                         "which the studies need (rp)");
    return LOPT_OK;
}

/* the inner state every unroll of a study starts from: a fresh trajectory of
 * instance c->seed, advanced c->warmup steps under theta */
static lopt_unroll_cfg start_state(lopt_unroll_ws *ws, const lopt_path_common *c, int K,
                                   lopt_traj *start)
{
    lopt_unroll_cfg cfg = {.K = K, .outer_split = c->outer_split, .loss_clip = c->loss_clip,
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

/* a unit direction in theta space, orthogonal to `against` (unit) if given */
static void direction(float *u, size_t np, uint64_t seed, uint64_t which, const float *against)
{
    lopt_rng_fill_normal(u, np, 1.0f, seed, PATH_STREAM, which * np);
    if (against) {
        double d = 0;
        for (size_t i = 0; i < np; i++) d += (double)u[i] * against[i];
        for (size_t i = 0; i < np; i++) u[i] -= (float)(d * against[i]);
    }
    double s = 0;
    for (size_t i = 0; i < np; i++) s += (double)u[i] * u[i];
    for (size_t i = 0; i < np; i++) u[i] = (float)(u[i] / sqrt(s));
}

/* ---- heatmap (the 2-D slice): plot.h draws lines only ---------------------------- */

static void colormap(double v, uint8_t rgb[3])
{
    /* viridis, five anchors, linear in between; NaN grey */
    static const uint8_t anchor[5][3] = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    if (!isfinite(v)) {
        rgb[0] = rgb[1] = rgb[2] = 128;
        return;
    }
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    double x = v * 4;
    int i = x >= 4 ? 3 : (int)x;
    double f = x - i;
    for (int k = 0; k < 3; k++)
        rgb[k] = (uint8_t)lround(anchor[i][k] + f * (anchor[i + 1][k] - anchor[i][k]));
}

/* z (G x G, row = b index, column = a index) as a heatmap: PNG (cells, colour bar)
 * and SVG (the same with a title and the value range). */
static lopt_status write_heatmap(const char *dir, const char *name, const char *title,
                                 const double *z, int G, double radius, lopt_err *err)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < G * G; i++)
        if (isfinite(z[i])) lo = fmin(lo, z[i]), hi = fmax(hi, z[i]);
    if (!(hi > lo)) hi = lo + 1;
    int cell = G >= 120 ? 4 : 480 / G > 4 ? 480 / G : 4;
    int side = cell * G, bar = 24, gap = 12, W = side + gap + bar, H = side;
    uint8_t *rgb = lopt_xcalloc((size_t)W * H * 3, 1);
    memset(rgb, 255, (size_t)W * H * 3);
    for (int r = 0; r < G; r++)      /* top row of the image = largest b */
        for (int c = 0; c < G; c++) {
            uint8_t col[3];
            colormap((z[(size_t)(G - 1 - r) * G + c] - lo) / (hi - lo), col);
            for (int y = r * cell; y < (r + 1) * cell; y++)
                for (int x = c * cell; x < (c + 1) * cell; x++)
                    memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
        }
    for (int y = 0; y < H; y++) {
        uint8_t col[3];
        colormap(1.0 - (double)y / (H - 1), col);
        for (int x = side + gap; x < W; x++) memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
    }
    unsigned char *png = NULL;
    size_t n = 0;
    char path[4096];
    lopt_status st = lopt_png_encode(rgb, W, H, &png, &n, err);
    free(rgb);
    if (st == LOPT_OK) {
        if (snprintf(path, sizeof path, "%s/%s.png", dir, name) >= (int)sizeof path)
            st = lopt_fail(err, LOPT_EUSAGE, "path too long: %s/%s", dir, name);
        else
            st = lopt_write_atomic(path, png, n, err);
    }
    free(png);
    if (st != LOPT_OK) return st;

    lopt_sbuf b = {0};
    int px = 10, svgw = 80 + side + gap + bar + 90, svgh = 60 + side + 50;
    lopt_sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              svgw, svgh, svgw, svgh);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"30\" font-size=\"15\">", px);
    for (const char *s = title; *s; s++) {
        if (*s == '<') lopt_sb_printf(&b, "&lt;");
        else if (*s == '&') lopt_sb_printf(&b, "&amp;");
        else lopt_sb_printf(&b, "%c", *s);
    }
    lopt_sb_printf(&b, "</text>\n<g transform=\"translate(80,50)\">\n");
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            uint8_t col[3];
            colormap((z[(size_t)(G - 1 - r) * G + c] - lo) / (hi - lo), col);
            lopt_sb_printf(&b, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                          "fill=\"#%02x%02x%02x\"/>\n",
                      c * cell, r * cell, cell, cell, col[0], col[1], col[2]);
        }
    for (int k = 0; k <= 10; k++) {
        uint8_t col[3];
        colormap(1.0 - k / 10.0, col);
        lopt_sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                      "fill=\"#%02x%02x%02x\"/>\n",
                  side + gap, k * side / 11, bar, side / 11 + 1, col[0], col[1], col[2]);
    }
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"10\">%.4g</text>\n", side + gap + bar + 4, hi);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\">%.4g</text>\n", side + gap + bar + 4, side, lo);
    lopt_sb_printf(&b, "<text x=\"0\" y=\"%d\">-%g</text>\n", side + 18, radius);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%g</text>\n", side, side + 18,
              radius);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">a (direction u)</text>\n",
              side / 2, side + 36);
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"%d\" text-anchor=\"end\">-%g</text>\n", side, radius);
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"12\" text-anchor=\"end\">%g</text>\n", radius);
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"%d\" text-anchor=\"end\">b (v)</text>\n", side / 2);
    lopt_sb_printf(&b, "</g>\n</svg>\n");
    char fname[256];
    snprintf(fname, sizeof fname, "%s.svg", name);
    return write_buf(dir, fname, &b, err);
}

/* ---- surface ------------------------------------------------------------------------ */

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

/* L_K(theta0 + a u + b v + eps) from the start state */
static double line_loss(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const float *theta0,
                        const float *u, double a, const float *v, double b, const float *eps,
                        float sign, float *tp, lopt_traj *tr, const lopt_traj *start, size_t np)
{
    for (size_t i = 0; i < np; i++) {
        double x = theta0[i] + a * u[i];
        if (v) x += b * v[i];
        if (eps) x += sign * eps[i];
        tp[i] = (float)x;
    }
    lopt_traj_copy(tr, start, ws->task->n, lopt_arch_state_rows(ws->arch));
    return lopt_unroll(ws, cfg, tp, tr, NULL).loss;
}

lopt_status lopt_pathology_surface(lopt_task *t, const lopt_surface_opts *o, const char *dir,
                                   char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = check_common(&o->c, err);
    if (st == LOPT_OK) st = check_Ks(o->Ks, o->nK, 1000000, err);
    if (st != LOPT_OK) return st;
    if (o->points < 3 || o->points > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "points must be in 3..100000");
    if (!(o->radius > 0) || !isfinite(o->radius))
        return lopt_fail(err, LOPT_EUSAGE, "radius must be positive");
    if (o->samples < 0 || o->samples % 2 || o->samples > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "samples must be even (antithetic pairs), 0..100000");
    if (o->samples > 0 && !(o->sigma > 0))
        return lopt_fail(err, LOPT_EUSAGE, "sigma must be positive");
    if (o->smooth_every < 1) return lopt_fail(err, LOPT_EUSAGE, "smooth-every must be >= 1");
    if (o->grid < 0 || o->grid == 1 || o->grid > 1000)
        return lopt_fail(err, LOPT_EUSAGE, "grid must be 0 (off) or in 2..1000");
    if (o->grid) st = check_Ks(o->K2d, o->nK2d, 1000000, err);
    if (st != LOPT_OK) return st;
    st = lopt_compare_outdir(dir, err);
    if (st != LOPT_OK) return st;

    const lopt_arch *a = o->c.arch;
    size_t np = lopt_arch_nparams(a), n = t->n;
    int Kmax = 1, n2 = o->grid ? o->nK2d : 0;
    int64_t sum2 = 0;
    for (int i = 0; i < n2; i++) {
        Kmax = o->K2d[i] > Kmax ? o->K2d[i] : Kmax;
        sum2 += o->K2d[i];
    }
    for (int i = 0; i < o->nK; i++) Kmax = o->Ks[i] > Kmax ? o->Ks[i] : Kmax;
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, t, a, Kmax);
    lopt_traj start, tr;
    lopt_traj_alloc(&start, n, lopt_arch_state_rows(a));
    lopt_traj_alloc(&tr, n, lopt_arch_state_rows(a));
    float *u = lopt_floats(np), *v = lopt_floats(np), *tp = lopt_floats(np);
    direction(u, np, o->c.seed, 0, NULL);
    direction(v, np, o->c.seed, 1, u);
    int E = o->samples;
    float *eps = lopt_floats((size_t)(E / 2 > 0 ? E / 2 : 1) * np);
    for (int j = 0; j < E / 2; j++)
        lopt_rng_fill_normal(eps + (size_t)j * np, np, o->sigma, o->c.seed, PATH_STREAM,
                             (uint64_t)(2 + j) * np);

    int P = o->points, nsm = E ? (P - 1) / o->smooth_every + 1 : 0;
    int64_t sumK = 0;
    for (int i = 0; i < o->nK; i++) sumK += o->Ks[i];
    int64_t total = o->c.warmup + sumK * (P + (int64_t)nsm * E) +
                    (int64_t)o->grid * o->grid * sum2, done = o->c.warmup;
    report(o->c.progress, o->c.user, 0, total, "warmup %lld steps", (long long)o->c.warmup);
    lopt_unroll_cfg cfg = start_state(&ws, &o->c, Kmax, &start);

    double *as = dalloc((size_t)P), *loss = dalloc((size_t)o->nK * P),
           *smooth = dalloc((size_t)o->nK * P), *at0 = dalloc((size_t)o->nK);
    for (int p = 0; p < P; p++) as[p] = -o->radius + 2 * o->radius * p / (P - 1);
    for (int k = 0; k < o->nK; k++) {
        cfg.K = o->Ks[k];
        at0[k] = line_loss(&ws, &cfg, o->c.theta, u, 0, NULL, 0, NULL, 0, tp, &tr, &start, np);
        for (int p = 0; p < P; p++) {
            loss[(size_t)k * P + p] = line_loss(&ws, &cfg, o->c.theta, u, as[p], NULL, 0, NULL,
                                                0, tp, &tr, &start, np);
            done += cfg.K;
            report(o->c.progress, o->c.user, done, total, "K=%d line", cfg.K);
        }
        for (int p = 0; p < P; p++) {
            smooth[(size_t)k * P + p] = NAN;
            if (!E || p % o->smooth_every) continue;
            double s = 0;
            for (int j = 0; j < E; j++)
                s += line_loss(&ws, &cfg, o->c.theta, u, as[p], NULL, 0,
                               eps + (size_t)(j / 2) * np, j % 2 ? -1.0f : 1.0f, tp, &tr,
                               &start, np);
            smooth[(size_t)k * P + p] = s / E;
            done += (int64_t)cfg.K * E;
            report(o->c.progress, o->c.user, done, total, "K=%d smoothed", cfg.K);
        }
    }
    int G = o->grid;
    double *z = dalloc((size_t)G * G * n2);
    for (int q = 0; q < n2; q++) {
        cfg.K = o->K2d[q];
        for (int r = 0; r < G; r++)
            for (int c = 0; c < G; c++) {
                double aa = -o->radius + 2 * o->radius * c / (G - 1);
                double bb = -o->radius + 2 * o->radius * r / (G - 1);
                z[((size_t)q * G + r) * G + c] = line_loss(&ws, &cfg, o->c.theta, u, aa, v, bb, NULL, 0,
                                                 tp, &tr, &start, np);
                done += cfg.K;
                report(o->c.progress, o->c.user, done, total, "2-D slice K=%d", cfg.K);
            }
    }

    /* files */
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,a,loss,smoothed_loss\n");
    for (int k = 0; k < o->nK; k++)
        for (int p = 0; p < P; p++)
            lopt_sb_printf(&b, "%d,%.6g,%.8g,%.8g\n", o->Ks[k], as[p], loss[(size_t)k * P + p],
                      smooth[(size_t)k * P + p]);
    st = write_buf(dir, "surface.csv", &b, err);
    if (st == LOPT_OK && G) {
        lopt_sb_printf(&b, "K,a,b,loss\n");
        for (int q = 0; q < n2; q++)
            for (int r = 0; r < G; r++)
                for (int c = 0; c < G; c++)
                    lopt_sb_printf(&b, "%d,%.6g,%.6g,%.8g\n", o->K2d[q],
                              -o->radius + 2 * o->radius * c / (G - 1),
                              -o->radius + 2 * o->radius * r / (G - 1),
                              z[((size_t)q * G + r) * G + c]);
        st = write_buf(dir, "surface2d.csv", &b, err);
    }
    double *rough = dalloc((size_t)o->nK), *rough_s = dalloc((size_t)o->nK);
    double *xs = dalloc((size_t)P), *ys = dalloc((size_t)P);
    for (int k = 0; k < o->nK && st == LOPT_OK; k++) {
        const double *lk = loss + (size_t)k * P, *sk = smooth + (size_t)k * P;
        rough[k] = lopt_path_roughness(lk, P);
        int m = 0;
        for (int p = 0; p < P; p++)
            if (isfinite(sk[p])) xs[m] = as[p], ys[m++] = sk[p];
        rough_s[k] = lopt_path_roughness(ys, m);
        char lab1[64], lab2[96], title[256], name[64];
        snprintf(lab1, sizeof lab1, "L(theta + a u), K=%d", o->Ks[k]);
        snprintf(lab2, sizeof lab2, "smoothed s=%g n=%d", o->sigma, E);
        lopt_plot_series s[2] = {{lab1, as, lk, NULL, NULL, P}, {lab2, xs, ys, NULL, NULL, m}};
        snprintf(title, sizeof title, "%s: outer loss along a random direction, unroll K=%d",
                 t->name, o->Ks[k]);
        lopt_plot pl = {title, "a (distance along u)", "outer loss (mean over the unroll)",
                        0, 0, 0, s, m > 0 ? 2 : 1};
        snprintf(name, sizeof name, "surface_K%d", o->Ks[k]);
        st = write_plot(&pl, dir, name, err);
    }
    if (st == LOPT_OK) {
        /* every K on one plot: each curve min-max normalised */
        double *norm = dalloc((size_t)o->nK * P);
        lopt_plot_series s[LOPT_PATH_MAX_K];
        char labs[LOPT_PATH_MAX_K][48];
        for (int k = 0; k < o->nK; k++) {
            const double *lk = loss + (size_t)k * P;
            double lo = INFINITY, hi = -INFINITY;
            for (int p = 0; p < P; p++)
                if (isfinite(lk[p])) lo = fmin(lo, lk[p]), hi = fmax(hi, lk[p]);
            for (int p = 0; p < P; p++)
                norm[(size_t)k * P + p] = hi > lo ? (lk[p] - lo) / (hi - lo) : 0;
            snprintf(labs[k], sizeof labs[k], "K=%d", o->Ks[k]);
            s[k] = (lopt_plot_series){labs[k], as, norm + (size_t)k * P, NULL, NULL, P};
        }
        char title[160];
        snprintf(title, sizeof title, "%s: outer loss along u, each K min-max normalised",
                 t->name);
        lopt_plot pl = {title, "a (distance along u)", "(L - min) / (max - min)", 0, 0, 0,
                        s, o->nK};
        st = write_plot(&pl, dir, "surface_all", err);
        free(norm);
    }
    for (int q = 0; q < n2 && st == LOPT_OK; q++) {
        char title[200], name[64];
        snprintf(title, sizeof title, "%s: outer loss on a plane through theta, K=%d",
                 t->name, o->K2d[q]);
        snprintf(name, sizeof name, "surface2d_K%d", o->K2d[q]);
        st = write_heatmap(dir, name, title, z + (size_t)q * G * G, G, o->radius, err);
    }
    if (st == LOPT_OK) {
        lopt_sb_printf(&b, "{\n  \"study\": \"surface\",\n  \"task\": ");
        sb_jstr(&b, t->name);
        lopt_sb_printf(&b, ",\n  \"theta\": ");
        sb_jstr(&b, o->c.theta_source ? o->c.theta_source : "(in memory)");
        lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"warmup\": %lld,\n  \"outer_loss\": \"%s\",\n"
                      "  \"loss_clip\": %g,\n  \"points\": %d,\n  \"radius\": %g,\n"
                      "  \"samples\": %d,\n  \"sigma\": %g,\n  \"smooth_every\": %d,\n"
                      "  \"grid\": %d,\n  \"K2d\": [",
                  (unsigned long long)o->c.seed, (long long)o->c.warmup,
                  o->c.outer_split == LOPT_SPLIT_VALID ? "valid" : "train", o->c.loss_clip, P,
                  o->radius, E, o->sigma, o->smooth_every, G);
        for (int q = 0; q < n2; q++) lopt_sb_printf(&b, "%s%d", q ? ", " : "", o->K2d[q]);
        lopt_sb_printf(&b, "],\n  \"per_K\": [");
        for (int k = 0; k < o->nK; k++) {
            const double *lk = loss + (size_t)k * P;
            double lo = INFINITY, hi = -INFINITY;
            for (int p = 0; p < P; p++)
                if (isfinite(lk[p])) lo = fmin(lo, lk[p]), hi = fmax(hi, lk[p]);
            lopt_sb_printf(&b, "%s\n    {\"K\": %d, \"loss_at_theta\": ", k ? "," : "", o->Ks[k]);
            sb_jnum(&b, at0[k]);
            lopt_sb_printf(&b, ", \"min\": ");
            sb_jnum(&b, lo);
            lopt_sb_printf(&b, ", \"max\": ");
            sb_jnum(&b, hi);
            lopt_sb_printf(&b, ", \"roughness\": ");
            sb_jnum(&b, rough[k]);
            lopt_sb_printf(&b, ", \"roughness_smoothed\": ");
            sb_jnum(&b, rough_s[k]);
            lopt_sb_printf(&b, "}");
        }
        lopt_sb_printf(&b, "\n  ],\n  \"roughness_definition\": \"sum |L_{i+1} - L_i| / (max L - "
                      "min L) over the line: 1 monotone, 2 one valley, large = jagged\"\n}\n");
        st = write_buf(dir, "summary.json", &b, err);
    }
    if (st == LOPT_OK && summary) {
        lopt_sb_printf(&b, "surface on %s (%d points in [-%g, %g], smoothed: %d perturbations, "
                      "sigma %g)\n  K       L(theta)   min        max        roughness  "
                      "smoothed roughness\n",
                  t->name, P, o->radius, o->radius, E, o->sigma);
        for (int k = 0; k < o->nK; k++) {
            const double *lk = loss + (size_t)k * P;
            double lo = INFINITY, hi = -INFINITY;
            for (int p = 0; p < P; p++)
                if (isfinite(lk[p])) lo = fmin(lo, lk[p]), hi = fmax(hi, lk[p]);
            lopt_sb_printf(&b, "  %-7d %-10.5g %-10.5g %-10.5g %-10.4g %.4g\n", o->Ks[k], at0[k],
                      lo, hi, rough[k], rough_s[k]);
        }
        *summary = b.s;
        b.s = NULL;
    }
    free(b.s);
    free(rough); free(rough_s); free(xs); free(ys);
    free(as); free(loss); free(smooth); free(at0); free(z);
    lopt_free(u); lopt_free(v); lopt_free(tp); lopt_free(eps);
    lopt_traj_free(&start);
    lopt_traj_free(&tr);
    lopt_unroll_ws_free(&ws);
    return st;
}

/* ---- gradvar ------------------------------------------------------------------------ */

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

typedef struct {
    int K;
    double loss, g_rp_norm, g_es_norm, v_rp, v_es, w_es, rp_sample_norm, es_sample_norm;
    int diverged;
    int rp_nonfinite;   /* samples whose rp gradient overflowed float32 (inf/NaN) */
    double tape_mb, time_s;
} gradvar_row;

lopt_status lopt_pathology_gradvar(lopt_task *t, const lopt_gradvar_opts *o, const char *dir,
                                   char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    lopt_status st = check_common(&o->c, err);
    if (st == LOPT_OK) st = check_Ks(o->Ks, o->nK, 1000000, err);
    if (st != LOPT_OK) return st;
    if (o->samples < 2 || o->samples > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "samples must be in 2..100000 (sample variances)");
    if (!(o->sigma > 0)) return lopt_fail(err, LOPT_EUSAGE, "sigma must be positive");
    st = lopt_compare_outdir(dir, err);
    if (st != LOPT_OK) return st;

    const lopt_arch *a = o->c.arch;
    size_t np = lopt_arch_nparams(a), n = t->n;
    int S = o->samples, Kmax = 1;
    int64_t total = o->c.warmup, done = o->c.warmup;
    for (int i = 0; i < o->nK; i++) {
        Kmax = o->Ks[i] > Kmax ? o->Ks[i] : Kmax;
        total += 2LL * S * o->Ks[i];
    }
    lopt_traj start, tr;
    lopt_traj_alloc(&start, n, lopt_arch_state_rows(a));
    lopt_traj_alloc(&tr, n, lopt_arch_state_rows(a));
    lopt_unroll_ws ws0;   /* the start state: forward only */
    lopt_unroll_ws_init(&ws0, t, a, Kmax);
    report(o->c.progress, o->c.user, 0, total, "warmup %lld steps", (long long)o->c.warmup);
    lopt_unroll_cfg cfg = start_state(&ws0, &o->c, Kmax, &start);
    lopt_unroll_ws_free(&ws0);

    float *eps = lopt_floats(np), *grp = lopt_floats(np), *ges = lopt_floats(np),
          *g = lopt_floats(np);
    lopt_pair_ws pw;
    lopt_pair_ws_init(&pw, np);
    lopt_est_sums sums;
    lopt_est_sums_init(&sums, np);
    lopt_traj minus;
    lopt_traj_alloc(&minus, n, lopt_arch_state_rows(a));
    gradvar_row *rows = lopt_xcalloc((size_t)o->nK, sizeof *rows);
    for (int k = 0; k < o->nK; k++) {
        gradvar_row *r = &rows[k];
        double t0 = lopt_now();
        lopt_unroll_ws ws;
        lopt_unroll_ws_init(&ws, t, a, o->Ks[k]);
        cfg.K = r->K = o->Ks[k];
        r->tape_mb = lopt_unroll_tape_bytes(&ws) / 1e6;
        lopt_est_sums_clear(&sums);
        for (int s = 0; s < S; s++) {
            /* the same perturbations at every K (common random numbers across K) */
            lopt_rng_fill_normal(eps, np, o->sigma, o->c.seed, PATH_STREAM,
                                 (uint64_t)(1000 + s) * np);
            lopt_traj_copy(&tr, &start, n, lopt_arch_state_rows(a));
            lopt_traj_copy(&minus, &start, n, lopt_arch_state_rows(a));
            lopt_pair_out po = lopt_pair_estimate(&ws, &pw, &cfg, o->c.theta, eps, &tr, &minus,
                                                  grp);
            lopt_es_sample(po.loss_plus - po.loss_minus, o->sigma, eps, np, ges);
            lopt_est_sums_add(&sums, grp, ges);
            r->diverged += po.diverged;
            r->loss += 0.5 * (po.loss_plus + po.loss_minus) / S;
            double nr = 0, ne = 0;
            for (size_t i = 0; i < np; i++) {
                nr += (double)grp[i] * grp[i];
                ne += (double)ges[i] * ges[i];
            }
            r->rp_sample_norm += sqrt(nr) / S;
            r->es_sample_norm += sqrt(ne) / S;
            done += 2LL * cfg.K;
            report(o->c.progress, o->c.user, done, total, "K=%d sample %d/%d", cfg.K, s + 1, S);
        }
        /* an overflowed rp sample has infinite variance: the merge takes es alone
         * (meta-training does the same, through the same combine) */
        lopt_est_stats es;
        lopt_est_combine(LOPT_COMBINE_MERGED, &sums, &sums, NULL, g, &es);
        r->rp_nonfinite = (int)sums.rp_nonfinite;
        r->g_rp_norm = es.g_rp_norm;
        r->g_es_norm = es.g_es_norm;
        r->v_rp = es.v_rp;
        r->v_es = es.v_es;
        r->w_es = es.w_es;
        if (r->rp_nonfinite) r->rp_sample_norm = INFINITY;
        r->time_s = lopt_now() - t0;
        lopt_unroll_ws_free(&ws);
    }

    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,samples,sigma,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,"
                  "rp_sample_norm,es_sample_norm,diverged,rp_nonfinite,tape_mb,time_s\n");
    for (int k = 0; k < o->nK; k++) {
        const gradvar_row *r = &rows[k];
        lopt_sb_printf(&b, "%d,%d,%g,%.8g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%d,%d,%.4f,%.3f\n",
                  r->K, S, o->sigma, r->loss, r->g_rp_norm, r->g_es_norm, r->v_rp, r->v_es,
                  r->w_es, r->rp_sample_norm, r->es_sample_norm, r->diverged, r->rp_nonfinite,
                  r->tape_mb, r->time_s);
    }
    st = write_buf(dir, "gradvar.csv", &b, err);
    int nK = o->nK;
    double *lk = dalloc((size_t)nK), *c[7];
    for (int i = 0; i < 7; i++) c[i] = dalloc((size_t)nK);
    for (int k = 0; k < nK; k++) {
        lk[k] = log10((double)rows[k].K);
        c[0][k] = rows[k].v_rp;
        c[1][k] = rows[k].v_es;
        c[2][k] = rows[k].g_rp_norm;
        c[3][k] = rows[k].g_es_norm;
        c[4][k] = rows[k].w_es;
        c[5][k] = rows[k].rp_sample_norm;
        c[6][k] = rows[k].es_sample_norm;
    }
    char title[200], ylab[2][96];
    /* log-y axes over more than 12 decades (rp's variance reaches 1e50) get
     * unreadable ticks: plot log10 of the values on a linear axis instead */
    int lg[2] = {log_span(c, 0, 2, nK) > 12, log_span(c, 2, 2, nK) > 12 ||
                                             log_span(c, 5, 2, nK) > 12};
    if (lg[0]) for (int i = 0; i < 2; i++) to_log10(c[i], nK);
    if (lg[1]) for (int i = 2; i < 7; i++) if (i != 4) to_log10(c[i], nK);
    snprintf(ylab[0], sizeof ylab[0], "%ssummed per-coordinate variance%s", lg[0] ? "log10 " : "",
             "");
    snprintf(ylab[1], sizeof ylab[1], "%sgradient norm", lg[1] ? "log10 " : "");
    if (st == LOPT_OK) {
        lopt_plot_series s[2] = {{"rp", lk, c[0], NULL, NULL, nK},
                                 {"es", lk, c[1], NULL, NULL, nK}};
        snprintf(title, sizeof title,
                 "%s: outer-gradient variance vs unroll length (%d samples, sigma %g)",
                 t->name, S, o->sigma);
        lopt_plot pl = {title, "log10 K (unroll length)", ylab[0], !lg[0], 0, 0, s, 2};
        st = write_plot(&pl, dir, "variance", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series s[4] = {{"rp |mean|", lk, c[2], NULL, NULL, nK},
                                 {"es |mean|", lk, c[3], NULL, NULL, nK},
                                 {"rp mean |sample|", lk, c[5], NULL, NULL, nK},
                                 {"es mean |sample|", lk, c[6], NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: outer-gradient norms vs unroll length", t->name);
        lopt_plot pl = {title, "log10 K (unroll length)", ylab[1], !lg[1], 0, 0, s, 4};
        st = write_plot(&pl, dir, "norm", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series s[1] = {{"mean es weight", lk, c[4], NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: weight of es in the merged gradient vs K", t->name);
        lopt_plot pl = {title, "log10 K (unroll length)", "mean es weight (0 rp .. 1 es)", 0, 0,
                        0, s, 1};
        st = write_plot(&pl, dir, "es_weight", err);
    }
    if (st == LOPT_OK) {
        lopt_sb_printf(&b, "{\n  \"study\": \"gradvar\",\n  \"task\": ");
        sb_jstr(&b, t->name);
        lopt_sb_printf(&b, ",\n  \"theta\": ");
        sb_jstr(&b, o->c.theta_source ? o->c.theta_source : "(in memory)");
        lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"warmup\": %lld,\n  \"outer_loss\": \"%s\",\n"
                      "  \"loss_clip\": %g,\n  \"samples\": %d,\n  \"sigma\": %g,\n  \"rows\": [",
                  (unsigned long long)o->c.seed, (long long)o->c.warmup,
                  o->c.outer_split == LOPT_SPLIT_VALID ? "valid" : "train", o->c.loss_clip, S,
                  o->sigma);
        for (int k = 0; k < nK; k++) {
            const gradvar_row *r = &rows[k];
            const char *names[] = {"outer_loss", "g_rp_norm", "g_es_norm", "v_rp", "v_es",
                                   "w_es", "rp_sample_norm", "es_sample_norm", "tape_mb"};
            double vals[] = {r->loss, r->g_rp_norm, r->g_es_norm, r->v_rp, r->v_es, r->w_es,
                             r->rp_sample_norm, r->es_sample_norm, r->tape_mb};
            lopt_sb_printf(&b, "%s\n    {\"K\": %d", k ? "," : "", r->K);
            for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
                lopt_sb_printf(&b, ", \"%s\": ", names[i]);
                sb_jnum(&b, vals[i]);
            }
            lopt_sb_printf(&b, ", \"diverged\": %d, \"rp_nonfinite\": %d}", r->diverged,
                      r->rp_nonfinite);
        }
        lopt_sb_printf(&b, "\n  ]\n}\n");
        st = write_buf(dir, "summary.json", &b, err);
    }
    if (st == LOPT_OK && summary) {
        lopt_sb_printf(&b, "gradvar on %s (%d antithetic pairs, sigma %g)\n"
                      "  K       v_rp        v_es        |g_rp|      |g_es|      w_es   "
                      "rp overflowed\n",
                  t->name, S, o->sigma);
        for (int k = 0; k < nK; k++)
            lopt_sb_printf(&b, "  %-7d %-11.4g %-11.4g %-11.4g %-11.4g %-6.3f %d/%d\n", rows[k].K,
                      rows[k].v_rp, rows[k].v_es, rows[k].g_rp_norm, rows[k].g_es_norm,
                      rows[k].w_es, rows[k].rp_nonfinite, S);
        *summary = b.s;
        b.s = NULL;
    }
    free(b.s);
    free(lk);
    for (int i = 0; i < 7; i++) free(c[i]);
    free(rows);
    lopt_est_sums_free(&sums);
    lopt_pair_ws_free(&pw);
    lopt_free(eps); lopt_free(grp); lopt_free(ges); lopt_free(g);
    lopt_traj_free(&start);
    lopt_traj_free(&tr);
    lopt_traj_free(&minus);
    return st;
}

/* ---- bias --------------------------------------------------------------------------- */

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

/* scratch for SGD unrolls with a tangent */
typedef struct {
    lopt_task *t;
    lopt_batch batch;
    float *w, *z, *g, *hz;   /* (n) parameters, dw/dp, gradient, H z */
} sgd_ws;

typedef struct {
    double mean_loss;    /* mean over t = 1..H of l(w_t): the full-horizon objective */
    double final_loss;   /* l(w_H) */
    double metagrad;     /* mean over truncations of d(truncation loss)/dp */
    int diverged;
} sgd_out;

/* SGD with lr = exp(p) for H steps on instance seed, losses after every step on the
 * next step's batch. The tangent z = dw/dp (exact, forward mode):
 *   w_{t+1} = w_t - lr g_t,   z_{t+1} = z_t - lr H_t z_t - lr g_t,
 * reset to 0 every K steps; the truncation loss is the mean of l(w_{t+1}) over its K
 * steps, its derivative the mean of grad l(w_{t+1}) . z_{t+1}. A loss above
 * clip_factor * l(w_0) (or non-finite) stops the run: the rest of the horizon counts
 * as that clip, with no gradient. */
static sgd_out sgd_unroll(sgd_ws *s, uint64_t seed, double p, int64_t H, int K,
                          double clip_factor)
{
    lopt_task *t = s->t;
    size_t n = t->n;
    double lr = exp(p);
    sgd_out out = {0, 0, 0, 0};
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* mean over instances */
static sgd_out sgd_mean(sgd_ws *s, const lopt_bias_opts *o, double p, int K)
{
    sgd_out m = {0, 0, 0, 0};
    for (int i = 0; i < o->instances; i++) {
        sgd_out r = sgd_unroll(s, o->seed + (uint64_t)i, p, o->horizon, K, o->loss_clip_factor);
        m.mean_loss += r.mean_loss / o->instances;
        m.final_loss += r.final_loss / o->instances;
        m.metagrad += r.metagrad / o->instances;
        m.diverged += r.diverged;
    }
    return m;
}

lopt_status lopt_pathology_bias(lopt_task *t, const lopt_bias_opts *o, const char *dir,
                                char **summary, lopt_err *err)
{
    if (summary) *summary = NULL;
    if (o->horizon < 1 || o->horizon > 10000000)
        return lopt_fail(err, LOPT_EUSAGE, "horizon must be in 1..10000000");
    lopt_status st = check_Ks(o->Ks, o->nK, o->horizon, err);
    if (st != LOPT_OK) return st;
    if (o->instances < 1 || o->instances > 10000)
        return lopt_fail(err, LOPT_EUSAGE, "instances must be in 1..10000");
    if (o->outer_steps < 0 || o->outer_steps > 10000000)
        return lopt_fail(err, LOPT_EUSAGE, "outer-steps must be in 0..10000000");
    if (!(o->outer_lr > 0)) return lopt_fail(err, LOPT_EUSAGE, "outer-lr must be positive");
    if (!(o->lr0 > 0) || !isfinite(o->lr0))
        return lopt_fail(err, LOPT_EUSAGE, "lr0 must be positive");
    if (!(o->lr_lo > 0 && o->lr_hi > o->lr_lo && isfinite(o->lr_hi)))
        return lopt_fail(err, LOPT_EUSAGE, "lr range must satisfy 0 < lo < hi");
    if (o->grid_points < 2 || o->grid_points > 100000)
        return lopt_fail(err, LOPT_EUSAGE, "grid-points must be in 2..100000");
    if (!(o->loss_clip_factor > 1)) return lopt_fail(err, LOPT_EUSAGE, "clip factor must be > 1");
    st = lopt_compare_outdir(dir, err);
    if (st != LOPT_OK) return st;

    size_t n = t->n;
    sgd_ws s = {.t = t};
    lopt_batch_alloc(&s.batch, t, t->batch);
    s.w = lopt_floats(n);
    s.z = lopt_floats(n);
    s.g = lopt_floats(n);
    s.hz = lopt_floats(n);
    int nK = o->nK, GP = o->grid_points, OS = o->outer_steps;
    int64_t per = (int64_t)o->instances * o->horizon;
    int64_t total = per * ((int64_t)GP * nK + (int64_t)nK * (OS + 1)), done = 0;

    /* the grid: full-horizon losses (K = H gives them; every K's meta-gradient too) */
    double *glr = dalloc((size_t)GP), *glog = dalloc((size_t)GP), *gmean = dalloc((size_t)GP),
           *gfinal = dalloc((size_t)GP), *gfield = dalloc((size_t)GP * nK);
    for (int i = 0; i < GP; i++) {
        double p = log(o->lr_lo) + (log(o->lr_hi) - log(o->lr_lo)) * i / (GP - 1);
        glr[i] = exp(p);
        glog[i] = log10(glr[i]);
        for (int k = 0; k < nK; k++) {
            sgd_out r = sgd_mean(&s, o, p, o->Ks[k]);
            gmean[i] = r.mean_loss;
            gfinal[i] = r.final_loss;
            gfield[(size_t)k * GP + i] = r.metagrad;
            done += per;
            report(o->progress, o->user, done, total, "grid lr %.3g K=%d", glr[i], o->Ks[k]);
        }
    }
    int best = 0, best_final = 0;
    for (int i = 1; i < GP; i++) {
        if (gmean[i] < gmean[best]) best = i;
        if (gfinal[i] < gfinal[best_final]) best_final = i;
    }
    /* refine the grid optimum by golden-section search on log lr between its
     * neighbours (the loss is smooth in lr below divergence) */
    double opt_p = log(glr[best]), opt_loss = gmean[best];
    {
        double lo = log(glr[best > 0 ? best - 1 : 0]), hi = log(glr[best < GP - 1 ? best + 1 : best]);
        const double gr = (sqrt(5.0) - 1) / 2;
        double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
        double f1 = sgd_mean(&s, o, x1, (int)o->horizon).mean_loss,
               f2 = sgd_mean(&s, o, x2, (int)o->horizon).mean_loss;
        for (int it = 0; it < 30; it++) {
            if (f1 < f2) {
                hi = x2; x2 = x1; f2 = f1;
                x1 = hi - gr * (hi - lo);
                f1 = sgd_mean(&s, o, x1, (int)o->horizon).mean_loss;
            } else {
                lo = x1; x1 = x2; f1 = f2;
                x2 = lo + gr * (hi - lo);
                f2 = sgd_mean(&s, o, x2, (int)o->horizon).mean_loss;
            }
        }
        double pm = 0.5 * (lo + hi), fm = sgd_mean(&s, o, pm, (int)o->horizon).mean_loss;
        if (fm < opt_loss) opt_p = pm, opt_loss = fm;
    }
    sgd_out opt = sgd_mean(&s, o, opt_p, (int)o->horizon);

    /* meta-learning p = log lr by Adam on each K's truncated meta-gradient */
    double *lrK = dalloc((size_t)nK), *gK = dalloc((size_t)nK), *meanK = dalloc((size_t)nK),
           *finalK = dalloc((size_t)nK), *trunc = dalloc((size_t)nK),
           *otraj = dalloc((size_t)nK * (OS + 1));
    int *divK = lopt_xcalloc((size_t)nK, sizeof(int));
    double *ostep = dalloc((size_t)OS + 1);
    for (int i = 0; i <= OS; i++) ostep[i] = i;
    for (int k = 0; k < nK; k++) {
        int K = o->Ks[k];
        double p = log(o->lr0), m1 = 0, m2 = 0;
        for (int it = 0; it < OS; it++) {
            otraj[(size_t)k * (OS + 1) + it] = exp(p);
            sgd_out r = sgd_mean(&s, o, p, K);
            double gr = r.metagrad;
            done += per;
            report(o->progress, o->user, done, total, "meta-learning K=%d step %d/%d lr %.4g",
                   K, it + 1, OS, exp(p));
            if (!isfinite(gr)) continue;
            const lopt_adam_bias ab = lopt_adam_bias_at(0.9, 0.999, it + 1);
            lopt_adam_moments(&ab, &m1, &m2, gr);
            /* cosine decay to 1% of outer_lr: the deterministic meta-gradient lets
             * the last steps settle on the fixed point instead of circling it */
            double eta = o->outer_lr * (0.01 + 0.99 * 0.5 * (1 + cos(3.14159265358979323846 * it / OS)));
            p -= eta * (m1 / ab.bc1) / lopt_adam_denom(&ab, m2, 1e-12);
        }
        otraj[(size_t)k * (OS + 1) + OS] = exp(p);
        sgd_out fin = sgd_mean(&s, o, p, K);
        done += per;
        sgd_out full = sgd_mean(&s, o, p, (int)o->horizon);
        lrK[k] = exp(p);
        gK[k] = fin.metagrad;
        meanK[k] = full.mean_loss;
        finalK[k] = full.final_loss;
        divK[k] = full.diverged;
        trunc[k] = fin.mean_loss;
    }

    /* files */
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "K,lr,log10_lr,final_metagrad,full_horizon_mean_loss,final_loss,diverged,"
                  "lr_over_optimum\n");
    for (int k = 0; k < nK; k++)
        lopt_sb_printf(&b, "%d,%.6g,%.6f,%.6g,%.8g,%.8g,%d,%.6g\n", o->Ks[k], lrK[k], log10(lrK[k]),
                  gK[k], meanK[k], finalK[k], divK[k], lrK[k] / exp(opt_p));
    st = write_buf(dir, "bias.csv", &b, err);
    if (st == LOPT_OK) {
        lopt_sb_printf(&b, "lr,full_horizon_mean_loss,final_loss");
        for (int k = 0; k < nK; k++) lopt_sb_printf(&b, ",metagrad_K%d", o->Ks[k]);
        lopt_sb_printf(&b, "\n");
        for (int i = 0; i < GP; i++) {
            lopt_sb_printf(&b, "%.6g,%.8g,%.8g", glr[i], gmean[i], gfinal[i]);
            for (int k = 0; k < nK; k++) lopt_sb_printf(&b, ",%.6g", gfield[(size_t)k * GP + i]);
            lopt_sb_printf(&b, "\n");
        }
        st = write_buf(dir, "grid.csv", &b, err);
    }
    if (st == LOPT_OK) {
        lopt_sb_printf(&b, "K,outer_step,lr\n");
        for (int k = 0; k < nK; k++)
            for (int i = 0; i <= OS; i++)
                lopt_sb_printf(&b, "%d,%d,%.6g\n", o->Ks[k], i, otraj[(size_t)k * (OS + 1) + i]);
        st = write_buf(dir, "outer.csv", &b, err);
    }
    double *lk = dalloc((size_t)nK), *optl = dalloc((size_t)nK), *optv = dalloc((size_t)nK);
    for (int k = 0; k < nK; k++) {
        lk[k] = log10((double)o->Ks[k]);
        optl[k] = exp(opt_p);
        optv[k] = opt.mean_loss;
    }
    char title[200], lab[LOPT_PATH_MAX_K][48];
    if (st == LOPT_OK) {
        lopt_plot_series sr[2] = {{"meta-learned lr", lk, lrK, NULL, NULL, nK},
                                  {"full-horizon optimum", lk, optl, NULL,
                                   NULL, nK}};
        snprintf(title, sizeof title, "%s: SGD learning rate meta-learned with truncation K "
                 "(horizon %lld)", t->name, (long long)o->horizon);
        lopt_plot pl = {title, "log10 K (truncation length)", "learning rate", 1, 0, 0, sr, 2};
        st = write_plot(&pl, dir, "lr_vs_K", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series sr[2] = {{"at K's lr", lk, meanK, NULL, NULL, nK},
                                  {"at the optimum lr", lk, optv, NULL, NULL, nK}};
        snprintf(title, sizeof title, "%s: full-horizon loss (mean over %lld steps) vs K",
                 t->name, (long long)o->horizon);
        lopt_plot pl = {title, "log10 K (truncation length)", "full-horizon mean loss", 1, 0, 0,
                        sr, 2};
        st = write_plot(&pl, dir, "loss_vs_K", err);
    }
    if (st == LOPT_OK) {
        lopt_plot_series sr[2] = {{"mean over horizon", glog, gmean, NULL, NULL, GP},
                                  {"loss at step H", glog, gfinal, NULL, NULL, GP}};
        snprintf(title, sizeof title, "%s: SGD, full horizon (%lld steps), %d instances",
                 t->name, (long long)o->horizon, o->instances);
        lopt_plot pl = {title, "log10 lr", "loss (diverged: clipped)", 1, 0, 0, sr, 2};
        st = write_plot(&pl, dir, "loss_vs_lr", err);
    }
    if (st == LOPT_OK) {
        /* each K's meta-gradient field on a symmetric log scale,
         * sign(g) log10(1 + |g| / g0) with g0 the median |g| of that K (the field
         * spans decades, from the slow small-lr side to the blow-up near divergence):
         * its zero crossings from - to + are where meta-learning with K settles */
        double *nf = dalloc((size_t)GP * nK), *tmp = dalloc((size_t)GP);
        lopt_plot_series sr[LOPT_PATH_MAX_K];
        for (int k = 0; k < nK; k++) {
            const double *f = gfield + (size_t)k * GP;
            int m = 0;
            for (int i = 0; i < GP; i++)
                if (isfinite(f[i]) && f[i] != 0) tmp[m++] = fabs(f[i]);
            qsort(tmp, (size_t)m, sizeof *tmp, cmp_double);
            double g0 = m ? tmp[m / 2] : 1;
            for (int i = 0; i < GP; i++)
                nf[(size_t)k * GP + i] = (f[i] < 0 ? -1 : 1) * log10(1 + fabs(f[i]) / g0);
            snprintf(lab[k], sizeof lab[k], "K=%d", o->Ks[k]);
            sr[k] = (lopt_plot_series){lab[k], glog, nf + (size_t)k * GP, NULL, NULL, GP};
        }
        free(tmp);
        snprintf(title, sizeof title, "%s: truncated meta-gradient d/d(log lr) (symlog)",
                 t->name);
        lopt_plot pl = {title, "log10 lr", "sign(g) log10(1 + |g| / median |g|)", 0, 0, 0, sr,
                        nK};
        st = write_plot(&pl, dir, "metagrad_vs_lr", err);
        free(nf);
    }
    if (st == LOPT_OK) {
        lopt_plot_series sr[LOPT_PATH_MAX_K];
        for (int k = 0; k < nK; k++) {
            snprintf(lab[k], sizeof lab[k], "K=%d", o->Ks[k]);
            sr[k] = (lopt_plot_series){lab[k], ostep, otraj + (size_t)k * (OS + 1), NULL, NULL,
                                       OS + 1};
        }
        snprintf(title, sizeof title, "%s: learning rate during meta-learning (Adam on log lr)",
                 t->name);
        lopt_plot pl = {title, "outer step", "learning rate", 1, 0, 0, sr, nK};
        st = write_plot(&pl, dir, "outer_lr", err);
    }
    if (st == LOPT_OK) {
        lopt_sb_printf(&b, "{\n  \"study\": \"bias\",\n  \"task\": ");
        sb_jstr(&b, t->name);
        lopt_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"instances\": %d,\n  \"horizon\": %lld,\n"
                      "  \"outer_steps\": %d,\n  \"outer_lr\": %g,\n  \"lr0\": %g,\n"
                      "  \"lr_grid\": [%g, %g, %d],\n  \"loss_clip_factor\": %g,\n"
                      "  \"optimum\": {\"lr\": ",
                  (unsigned long long)o->seed, o->instances, (long long)o->horizon, OS,
                  o->outer_lr, o->lr0, o->lr_lo, o->lr_hi, GP, o->loss_clip_factor);
        sb_jnum(&b, exp(opt_p));
        lopt_sb_printf(&b, ", \"full_horizon_mean_loss\": ");
        sb_jnum(&b, opt.mean_loss);
        lopt_sb_printf(&b, ", \"final_loss\": ");
        sb_jnum(&b, opt.final_loss);
        lopt_sb_printf(&b, ", \"grid_lr\": ");
        sb_jnum(&b, glr[best]);
        lopt_sb_printf(&b, ", \"lr_minimising_final_loss_on_grid\": ");
        sb_jnum(&b, glr[best_final]);
        lopt_sb_printf(&b, "},\n  \"per_K\": [");
        for (int k = 0; k < nK; k++) {
            lopt_sb_printf(&b, "%s\n    {\"K\": %d, \"lr\": ", k ? "," : "", o->Ks[k]);
            sb_jnum(&b, lrK[k]);
            lopt_sb_printf(&b, ", \"lr_over_optimum\": ");
            sb_jnum(&b, lrK[k] / exp(opt_p));
            lopt_sb_printf(&b, ", \"final_metagrad\": ");
            sb_jnum(&b, gK[k]);
            lopt_sb_printf(&b, ", \"truncated_loss\": ");
            sb_jnum(&b, trunc[k]);
            lopt_sb_printf(&b, ", \"full_horizon_mean_loss\": ");
            sb_jnum(&b, meanK[k]);
            lopt_sb_printf(&b, ", \"final_loss\": ");
            sb_jnum(&b, finalK[k]);
            lopt_sb_printf(&b, ", \"diverged_instances\": %d}", divK[k]);
        }
        lopt_sb_printf(&b, "\n  ]\n}\n");
        st = write_buf(dir, "summary.json", &b, err);
    }
    if (st == LOPT_OK && summary) {
        lopt_sb_printf(&b, "bias on %s: SGD lr meta-learned with truncation K, horizon %lld, "
                      "%d instances\n  full-horizon optimum: lr %.4g, mean loss %.5g, final "
                      "loss %.5g\n  K       lr          lr/optimum  mean loss   final loss\n",
                  t->name, (long long)o->horizon, o->instances, exp(opt_p), opt.mean_loss,
                  opt.final_loss);
        for (int k = 0; k < nK; k++)
            lopt_sb_printf(&b, "  %-7d %-11.4g %-11.4g %-11.5g %.5g\n", o->Ks[k], lrK[k],
                      lrK[k] / exp(opt_p), meanK[k], finalK[k]);
        *summary = b.s;
        b.s = NULL;
    }
    free(b.s);
    free(lk); free(optl); free(optv);
    free(glr); free(glog); free(gmean); free(gfinal); free(gfield);
    free(lrK); free(gK); free(meanK); free(finalK); free(trunc); free(otraj); free(divK);
    free(ostep);
    lopt_batch_free(&s.batch);
    lopt_free(s.w); lopt_free(s.z); lopt_free(s.g); lopt_free(s.hz);
    return st;
}
