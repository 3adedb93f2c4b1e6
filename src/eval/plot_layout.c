/* plot_layout.c - the layout of a line plot (plot_int.h): data ranges, "nice" ticks
 * on linear and log axes, margins and the legend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/plot_int.h"

const uint32_t lopt_plot_palette[NPALETTE] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                              0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

int lopt_plot_valid_y(const lopt_plot_layout_t *l, double y) { return isfinite(y) && (!l->logy || y > 0); }
double lopt_plot_ty(const lopt_plot_layout_t *l, double y) { return l->logy ? log10(y) : y; }
double lopt_plot_px_x(const lopt_plot_layout_t *l, double x)
{
    return l->L + (x - l->xlo) / (l->xhi - l->xlo) * (l->R - l->L);
}
double lopt_plot_px_y(const lopt_plot_layout_t *l, double y)
{
    return l->B - (lopt_plot_ty(l, y) - l->ylo) / (l->yhi - l->ylo) * (l->B - l->T);
}

static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

/* nice linear ticks in [lo, hi] */
static int linear_ticks(double lo, double hi, int target, double *t)
{
    double step = nice_step(hi - lo, target);
    int n = 0;
    for (double k = ceil(lo / step - 1e-9); n < MAX_TICKS; k += 1.0) {
        double v = k * step;
        if (v > hi + step * 1e-9) break;
        t[n++] = fabs(v) < step * 1e-9 ? 0.0 : v;
    }
    return n;
}

/* ticks on a log axis over [10^lo, 10^hi]: decades, then 1-2-5, then 1..9 per
 * decade, whichever first gives at least 4; a range narrower than that gets
 * linear ticks (placed on the log scale). */
static int log_ticks(double lo, double hi, double *t)
{
    static const double sets[3][10] = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
    static const int nset[3] = {1, 3, 9};
    for (int s = 0; s < 3; s++) {
        int n = 0;
        for (int d = (int)floor(lo) - 1; d <= (int)ceil(hi) && n < MAX_TICKS; d++)
            for (int m = 0; m < nset[s] && n < MAX_TICKS; m++) {
                double v = sets[s][m] * pow(10.0, d), lv = log10(v);
                if (lv >= lo - 1e-9 && lv <= hi + 1e-9) t[n++] = v;
            }
        if (n >= 4 || (s == 2 && n >= 2)) return n;
    }
    double a = pow(10.0, lo), b = pow(10.0, hi);
    return linear_ticks(a, b, 5, t);
}

int lopt_plot_text_width(const char *s) { return (int)strlen(s) * CHAR_W - FONT_SCALE; }

void lopt_plot_layout(const lopt_plot *p, lopt_plot_layout_t *l)
{
    memset(l, 0, sizeof *l);
    l->W = p->width > 0 ? p->width : 960;
    l->H = p->height > 0 ? p->height : 600;
    l->logy = p->logy;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            if (!isfinite(se->x[i])) continue;
            const double *ys[3] = {se->y, se->lo, se->hi};
            for (int k = 0; k < 3; k++) {
                if (!ys[k] || !lopt_plot_valid_y(l, ys[k][i])) continue;
                double v = lopt_plot_ty(l, ys[k][i]);
                x0 = fmin(x0, se->x[i]);
                x1 = fmax(x1, se->x[i]);
                y0 = fmin(y0, v);
                y1 = fmax(y1, v);
            }
        }
    }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 - x0 < 1e-12 * fmax(1.0, fabs(x0))) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-12 * fmax(1.0, fabs(y0))) y0 -= 0.5, y1 += 0.5;
    double pad = 0.04 * (y1 - y0);
    l->xlo = x0, l->xhi = x1, l->ylo = y0 - pad, l->yhi = y1 + pad;

    l->nyt = l->logy ? log_ticks(l->ylo, l->yhi, l->yt) : linear_ticks(l->ylo, l->yhi, 6, l->yt);
    int ytw = 0;
    for (int i = 0; i < l->nyt; i++) {
        snprintf(l->ytl[i], sizeof l->ytl[i], "%g", l->yt[i]);
        if (lopt_plot_text_width(l->ytl[i]) > ytw) ytw = lopt_plot_text_width(l->ytl[i]);
    }
    /* the legend sits right of the plot area, never over the data; at most a third
     * of the width */
    l->legend_chars = (l->W / 3 - (12 + 28 + 8 + 12)) / CHAR_W;
    if (l->legend_chars < 4) l->legend_chars = 4;
    int legc = 0;
    for (int s = 0; s < p->nseries; s++) {
        int k = p->series[s].label ? (int)strlen(p->series[s].label) : 0;
        if (k > legc) legc = k;
    }
    if (legc > l->legend_chars) legc = l->legend_chars;
    int legw = legc * CHAR_W + 12 + 28 + 8 + 12;
    l->L = 10 + CHAR_H + 12 + ytw + 8 + 6;
    l->T = 20 + CHAR_H + 16;
    l->B = l->H - (6 + 6 + CHAR_H + 14 + CHAR_H + 12);
    l->R = l->W - legw - 14;
    if (l->R < l->L + 100) l->R = l->L + 100;
    if (l->B < l->T + 100) l->B = l->T + 100;
    l->legend_x = l->R + 14;
    l->legend_y = l->T;
    int tw = p->title ? lopt_plot_text_width(p->title) : 0;
    l->title_x = (l->L + l->R) / 2 - tw / 2;
    if (l->title_x + tw > l->W - 8) l->title_x = l->W - 8 - tw;
    if (l->title_x < 8) l->title_x = 8;

    /* fewer x ticks until their labels do not collide */
    for (int target = 6; target >= 1; target--) {
        l->nxt = linear_ticks(l->xlo, l->xhi, target, l->xt);
        int widest = 0;
        for (int i = 0; i < l->nxt; i++) {
            snprintf(l->xtl[i], sizeof l->xtl[i], "%g", l->xt[i]);
            if (lopt_plot_text_width(l->xtl[i]) > widest) widest = lopt_plot_text_width(l->xtl[i]);
        }
        double gap = l->nxt > 1 ? lopt_plot_px_x(l, l->xt[1]) - lopt_plot_px_x(l, l->xt[0]) : 1e9;
        if (gap >= widest + 2 * CHAR_W) break;
    }
}

/* a legend label cut to the lopt_plot_layout_t's width */
void lopt_plot_legend_label(const lopt_plot_layout_t *l, const char *s, char *out, size_t cap)
{
    size_t n = s ? strlen(s) : 0, max = (size_t)l->legend_chars;
    if (max + 1 > cap) max = cap - 1;
    if (n <= max) snprintf(out, cap, "%s", s ? s : "");
    else snprintf(out, cap, "%.*s..", (int)(max - 2), s);
}


int lopt_plot_point_ok(const lopt_plot_layout_t *l, const lopt_plot_series *s, int i)
{
    return isfinite(s->x[i]) && lopt_plot_valid_y(l, s->y[i]);
}
int lopt_plot_band_ok(const lopt_plot_layout_t *l, const lopt_plot_series *s, int i)
{
    return isfinite(s->x[i]) && lopt_plot_valid_y(l, s->lo[i]) && lopt_plot_valid_y(l, s->hi[i]);
}

int lopt_plot_width(const lopt_plot *p) { return p->width > 0 ? p->width : 960; }

void lopt_plot_row_size(const lopt_plot *p, int np, int *w, int *h)
{
    *w = *h = 0;
    for (int k = 0; k < np; k++) {
        int ph = p[k].height > 0 ? p[k].height : 600;
        *w += lopt_plot_width(&p[k]);
        if (ph > *h) *h = ph;
    }
}
