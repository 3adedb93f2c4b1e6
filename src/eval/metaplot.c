/* metaplot.c - plots of a meta-training log (see metaplot.h). A NaN field is a
 * value not measured at that step (row 0 has only the evaluation). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval/metaplot.h"
#include "eval/plot.h"

#define WINDOW 25

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

/* the columns the plots draw: over every row (row 0's outer loss and es weight are
 * NaN, drawn as gaps), and over the rows evaluated at the horizon */
typedef struct {
    int n, neval;
    double *step, *loss, *wes, *loss_mean, *wes_mean;   /* (n) */
    double *eval_step, *eval_final, *eval_mean;         /* (neval) */
} columns;

static void columns_fill(columns *c, const lopt_meta_row *rows, size_t n)
{
    double **all[] = {&c->step, &c->loss, &c->wes, &c->loss_mean, &c->wes_mean,
                      &c->eval_step, &c->eval_final, &c->eval_mean};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        *all[i] = lopt_xcalloc(n ? n : 1, sizeof(double));
    c->n = c->neval = 0;
    for (size_t i = 0; i < n; i++) {
        const lopt_meta_row *r = &rows[i];
        if (!isnan(r->eval_final)) {
            c->eval_step[c->neval] = (double)r->step;
            c->eval_final[c->neval] = r->eval_final;
            c->eval_mean[c->neval++] = r->eval_mean;
        }
        c->step[c->n] = (double)r->step;
        c->loss[c->n] = r->outer_loss;
        c->wes[c->n++] = r->w_es;
    }
    smooth(c->loss, c->n, c->loss_mean);
    smooth(c->wes, c->n, c->wes_mean);
}

static void columns_free(columns *c)
{
    double *all[] = {c->step, c->loss, c->wes, c->loss_mean, c->wes_mean,
                     c->eval_step, c->eval_final, c->eval_mean};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static lopt_status write_one(const lopt_plot *pl, const char *base, const char *suffix,
                             lopt_err *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s-%s", base, suffix);
    return lopt_plot_write(pl, path, err);
}

lopt_status lopt_meta_plot(const lopt_meta_row *rows, size_t n, const char *base,
                           lopt_err *err)
{
    columns c;
    columns_fill(&c, rows, n);
    lopt_status st = LOPT_OK;
    if (c.n > 0) {
        lopt_plot_series s1[] = {{"outer loss (per step)", c.step, c.loss, NULL, NULL, c.n},
                                 {"running mean of 25", c.step, c.loss_mean, NULL, NULL, c.n}};
        lopt_plot pl = {"meta-training: outer loss", "outer step", "outer loss", 1, 0, 0, s1, 2};
        lopt_plot_series s2[] = {{"es weight, mean of 25", c.step, c.wes_mean, NULL, NULL, c.n}};
        lopt_plot pw = {"meta-training: weight of es in the merged gradient", "outer step",
                        "mean es weight", 0, 0, 0, s2, 1};
        lopt_plot_series s3[] = {{"eval_final", c.eval_step, c.eval_final, NULL, NULL, c.neval},
                                 {"eval_mean", c.eval_step, c.eval_mean, NULL, NULL, c.neval}};
        lopt_plot pe = {"at the full horizon, tuning seeds: final and mean validation loss",
                        "outer step", "validation loss", 0, 0, 0, s3, 2};
        st = write_one(&pl, base, "loss", err);
        if (st == LOPT_OK) st = write_one(&pw, base, "wes", err);
        if (st == LOPT_OK && c.neval > 0) st = write_one(&pe, base, "eval", err);
    }
    columns_free(&c);
    return st;
}
