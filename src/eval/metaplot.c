/* metaplot.c - plots of a meta-training log (see metaplot.h). Columns are found
 * by their header names, so logs of older checkpoints (without the evaluation
 * columns) plot too; an empty field is a value not measured at that step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metaplot.h"
#include "eval/plot.h"

#define WINDOW 25
enum { C_STEP, C_LOSS, C_WES, C_EVAL_FINAL, C_EVAL_MEAN, NWANT };
static const char *const wanted[NWANT] = {"step", "outer_loss", "w_es", "eval_final",
                                          "eval_mean"};

/* running mean of the finite y over the last WINDOW points */
static void smooth(const double *y, int n, double *out)
{
    for (int i = 0; i < n; i++) {
        double acc = 0;
        int k = 0;
        for (int j = i - WINDOW + 1 < 0 ? 0 : i - WINDOW + 1; j <= i; j++)
            if (isfinite(y[j])) {
                acc += y[j];
                k++;
            }
        out[i] = k ? acc / k : NAN;
    }
}

/* the column index of each wanted name in the header line (-1: absent) */
static void find_columns(const char *csv, int *col)
{
    for (int w = 0; w < NWANT; w++) col[w] = -1;
    const char *end = strchr(csv, '\n');
    int idx = 0;
    for (const char *p = csv; p && p < (end ? end : p + strlen(p)); idx++) {
        const char *q = strpbrk(p, ",\n");
        size_t len = q ? (size_t)(q - p) : strlen(p);
        for (int w = 0; w < NWANT; w++)
            if (strlen(wanted[w]) == len && strncmp(p, wanted[w], len) == 0) col[w] = idx;
        if (!q || *q == '\n') break;
        p = q + 1;
    }
}

/* field `k` of the line at p as a number; NaN when empty or absent */
static double field(const char *p, int k)
{
    if (k < 0) return NAN;
    for (int i = 0; i < k; i++) {
        p = strpbrk(p, ",\n");
        if (!p || *p == '\n') return NAN;
        p++;
    }
    if (*p == ',' || *p == '\n' || *p == 0) return NAN;
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}

static lopt_status plot_eval(const double *step, const double *fin, const double *mean, int n,
                             const char *base, lopt_err *err)
{
    /* only the rows that were evaluated */
    double *x = lopt_xcalloc((size_t)n, sizeof *x), *yf = lopt_xcalloc((size_t)n, sizeof *yf),
           *ym = lopt_xcalloc((size_t)n, sizeof *ym);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(fin[i])) {
            x[k] = step[i];
            yf[k] = fin[i];
            ym[k++] = mean[i];
        }
    lopt_status st = LOPT_OK;
    if (k > 0) {
        char path[1024];
        lopt_plot_series s[] = {{"eval_final", x, yf, NULL, NULL, k},
                                {"eval_mean", x, ym, NULL, NULL, k}};
        lopt_plot pl = {"at the full horizon, tuning seeds: final and mean validation loss",
                        "outer step", "validation loss", 0, 0, 0, s, 2};
        snprintf(path, sizeof path, "%s-eval", base);
        st = lopt_plot_write(&pl, path, err);
    }
    free(x);
    free(yf);
    free(ym);
    return st;
}

lopt_status lopt_meta_plot(const char *csv, const char *base, lopt_err *err)
{
    int col[NWANT];
    find_columns(csv, col);
    int cap = 1024, n = 0;
    double *v[NWANT];
    for (int w = 0; w < NWANT; w++) {
        v[w] = lopt_xcalloc((size_t)cap, sizeof(double));
    }
    for (const char *p = strchr(csv, '\n'); p && p[1]; p = strchr(p, '\n')) {
        p++;
        if (n == cap) {
            cap *= 2;
            for (int w = 0; w < NWANT; w++) {
                v[w] = lopt_xrealloc(v[w], (size_t)cap * sizeof(double));
            }
        }
        for (int w = 0; w < NWANT; w++) v[w][n] = field(p, col[w]);
        if (!isnan(v[C_STEP][n])) n++;
    }
    lopt_status st = LOPT_OK;
    if (n > 0) {
        double *sl = lopt_xcalloc((size_t)n, sizeof *sl), *sw = lopt_xcalloc((size_t)n, sizeof *sw);
        smooth(v[C_LOSS], n, sl);
        smooth(v[C_WES], n, sw);
        char path[1024];
        lopt_plot_series s1[] = {{"outer loss (per step)", v[C_STEP], v[C_LOSS], NULL, NULL, n},
                                 {"running mean of 25", v[C_STEP], sl, NULL, NULL, n}};
        lopt_plot pl = {"meta-training: outer loss", "outer step", "outer loss", 1, 0, 0, s1, 2};
        snprintf(path, sizeof path, "%s-loss", base);
        st = lopt_plot_write(&pl, path, err);
        lopt_plot_series s2[] = {{"es weight, mean of 25", v[C_STEP], sw, NULL, NULL, n}};
        lopt_plot pw = {"meta-training: weight of es in the merged gradient", "outer step",
                        "mean es weight", 0, 0, 0, s2, 1};
        snprintf(path, sizeof path, "%s-wes", base);
        if (st == LOPT_OK) st = lopt_plot_write(&pw, path, err);
        if (st == LOPT_OK)
            st = plot_eval(v[C_STEP], v[C_EVAL_FINAL], v[C_EVAL_MEAN], n, base, err);
        free(sl);
        free(sw);
    }
    for (int w = 0; w < NWANT; w++) free(v[w]);
    return st;
}
