/* metaplot.c - plots of a meta-training log (see metaplot.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metaplot.h"
#include "eval/plot.h"

enum { COL_STEP = 0, COL_LOSS = 1, COL_WES = 6, COL_K = 7, NCOL = 13 };
#define WINDOW 25

/* running mean of y over the last WINDOW points */
static void smooth(const double *y, int n, double *out)
{
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += y[i];
        if (i >= WINDOW) acc -= y[i - WINDOW];
        out[i] = acc / (i + 1 < WINDOW ? i + 1 : WINDOW);
    }
}

lopt_status lopt_meta_plot(const char *csv, const char *base, lopt_err *err)
{
    int cap = 1024, n = 0;
    double *step = malloc(cap * sizeof *step), *loss = malloc(cap * sizeof *loss),
           *wes = malloc(cap * sizeof *wes);
    const char *p = strchr(csv, '\n');   /* skip the header */
    while (p && p[1]) {
        p++;
        double v[NCOL];
        int k = 0;
        const char *q = p;
        while (k < NCOL) {
            char *end;
            v[k++] = strtod(q, &end);
            q = strchr(end, ',');
            if (!q || q > strchr(p, '\n')) break;
            q++;
        }
        if (k > COL_K) {
            if (n == cap) {
                cap *= 2;
                step = realloc(step, cap * sizeof *step);
                loss = realloc(loss, cap * sizeof *loss);
                wes = realloc(wes, cap * sizeof *wes);
                LOPT_ASSERT(step && loss && wes);
            }
            step[n] = v[COL_STEP];
            loss[n] = v[COL_LOSS];
            wes[n] = v[COL_WES];
            n++;
        }
        p = strchr(p, '\n');
    }
    lopt_status st = LOPT_OK;
    if (n > 0) {
        double *sl = malloc(n * sizeof *sl), *sw = malloc(n * sizeof *sw);
        smooth(loss, n, sl);
        smooth(wes, n, sw);
        char path[1024];
        lopt_plot_series s1[] = {{"outer loss (per step)", step, loss, NULL, NULL, n},
                                 {"running mean of 25", step, sl, NULL, NULL, n}};
        lopt_plot pl = {"meta-training: outer loss", "outer step", "outer loss", 1, 0, 0, s1, 2};
        snprintf(path, sizeof path, "%s-loss", base);
        st = lopt_plot_write(&pl, path, err);
        lopt_plot_series s2[] = {{"es weight, mean of 25", step, sw, NULL, NULL, n}};
        lopt_plot pw = {"meta-training: weight of es in the merged gradient", "outer step",
                        "mean es weight", 0, 0, 0, s2, 1};
        snprintf(path, sizeof path, "%s-wes", base);
        if (st == LOPT_OK) st = lopt_plot_write(&pw, path, err);
        free(sl);
        free(sw);
    }
    free(step);
    free(loss);
    free(wes);
    return st;
}
