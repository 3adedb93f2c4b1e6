/* plot.c - line plots to SVG and PNG (see plot.h).
 *
 * One layout (ranges, ticks, margins) feeds two renderers: an SVG writer and a
 * small rasteriser. Lines are anti-aliased by distance to the segment, taking the
 * maximum coverage per pixel over a series' segments before blending once, so
 * joints are not darkened. Text in the PNG uses a 5x7 bitmap font at 2x. The PNG
 * is 8-bit RGB, filter type 0 on every row, one zlib stream (PNG spec, ISO/IEC
 * 15948, sections 5 and 11).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "eval/plot.h"

/* ---- the 5x7 font: printable ASCII 32..126, rows top to bottom, '#' = ink; rows 7
 * and 8 are the descenders of g, j, p, q, y (below the 7-row cell the layout uses) */

static const char *const font5x7[95][9] = {
    {".....", ".....", ".....", ".....", ".....", ".....", ".....", ".....", "....."}, /*   */
    {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#..", ".....", "....."}, /* ! */
    {".#.#.", ".#.#.", ".#.#.", ".....", ".....", ".....", ".....", ".....", "....."}, /* " */
    {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#.", ".....", "....."}, /* # */
    {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#..", ".....", "....."}, /* $ */
    {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##", ".....", "....."}, /* % */
    {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#", ".....", "....."}, /* & */
    {"..#..", "..#..", ".....", ".....", ".....", ".....", ".....", ".....", "....."}, /* ' */
    {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.", ".....", "....."}, /* ( */
    {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...", ".....", "....."}, /* ) */
    {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", ".....", ".....", "....."}, /* * */
    {".....", "..#..", "..#..", "#####", "..#..", "..#..", ".....", ".....", "....."}, /* + */
    {".....", ".....", ".....", ".....", ".##..", "..#..", ".#...", ".....", "....."}, /* , */
    {".....", ".....", ".....", "#####", ".....", ".....", ".....", ".....", "....."}, /* - */
    {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", ".....", "....."}, /* . */
    {".....", "....#", "...#.", "..#..", ".#...", "#....", ".....", ".....", "....."}, /* / */
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.", ".....", "....."}, /* 0 */
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}, /* 1 */
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####", ".....", "....."}, /* 2 */
    {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###.", ".....", "....."}, /* 3 */
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.", ".....", "....."}, /* 4 */
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###.", ".....", "....."}, /* 5 */
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.", ".....", "....."}, /* 6 */
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...", ".....", "....."}, /* 7 */
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.", ".....", "....."}, /* 8 */
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..", ".....", "....."}, /* 9 */
    {".....", ".##..", ".##..", ".....", ".##..", ".##..", ".....", ".....", "....."}, /* : */
    {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#...", ".....", "....."}, /* ; */
    {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#.", ".....", "....."}, /* < */
    {".....", ".....", "#####", ".....", "#####", ".....", ".....", ".....", "....."}, /* = */
    {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#...", ".....", "....."}, /* > */
    {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#..", ".....", "....."}, /* ? */
    {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###.", ".....", "....."}, /* @ */
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#", ".....", "....."}, /* A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####.", ".....", "....."}, /* B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###.", ".....", "....."}, /* C */
    {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###..", ".....", "....."}, /* D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####", ".....", "....."}, /* E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#....", ".....", "....."}, /* F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####", ".....", "....."}, /* G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#", ".....", "....."}, /* H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}, /* I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##..", ".....", "....."}, /* J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#", ".....", "....."}, /* K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####", ".....", "....."}, /* L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#", ".....", "....."}, /* M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", ".....", "....."}, /* N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.", ".....", "....."}, /* O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#....", ".....", "....."}, /* P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#", ".....", "....."}, /* Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#", ".....", "....."}, /* R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####.", ".....", "....."}, /* S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..", ".....", "....."}, /* T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.", ".....", "....."}, /* U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#..", ".....", "....."}, /* V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#.", ".....", "....."}, /* W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#", ".....", "....."}, /* X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#..", ".....", "....."}, /* Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####", ".....", "....."}, /* Z */
    {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###.", ".....", "....."}, /* [ */
    {".....", "#....", ".#...", "..#..", "...#.", "....#", ".....", ".....", "....."}, /* backslash */
    {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###.", ".....", "....."}, /* ] */
    {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", ".....", ".....", "....."}, /* ^ */
    {".....", ".....", ".....", ".....", ".....", ".....", "#####", ".....", "....."}, /* _ */
    {".#...", "..#..", ".....", ".....", ".....", ".....", ".....", ".....", "....."}, /* ` */
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####", ".....", "....."}, /* a */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####.", ".....", "....."}, /* b */
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###.", ".....", "....."}, /* c */
    {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####", ".....", "....."}, /* d */
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###.", ".....", "....."}, /* e */
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#...", ".....", "....."}, /* f */
    {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."}, /* g */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#", ".....", "....."}, /* h */
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}, /* i */
    {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* j */
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#.", ".....", "....."}, /* k */
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.", ".....", "....."}, /* l */
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#", ".....", "....."}, /* m */
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#", ".....", "....."}, /* n */
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###.", ".....", "....."}, /* o */
    {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."}, /* p */
    {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"}, /* q */
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#....", ".....", "....."}, /* r */
    {".....", ".....", ".###.", "#....", ".###.", "....#", "####.", ".....", "....."}, /* s */
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##.", ".....", "....."}, /* t */
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#", ".....", "....."}, /* u */
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#..", ".....", "....."}, /* v */
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#.", ".....", "....."}, /* w */
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", ".....", "....."}, /* x */
    {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."}, /* y */
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####", ".....", "....."}, /* z */
    {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#.", ".....", "....."}, /* { */
    {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..", ".....", "....."}, /* | */
    {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#...", ".....", "....."}, /* } */
    {".....", ".....", ".#...", "#.#.#", "...#.", ".....", ".....", ".....", "....."}, /* ~ */
};

/* ---- layout -------------------------------------------------------------------- */

#define FONT_SCALE 2
#define CHAR_W (6 * FONT_SCALE)   /* advance: 5 columns + 1 gap */
#define CHAR_H (7 * FONT_SCALE)
#define MAX_TICKS 32

static const uint32_t palette[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
#define NPALETTE ((int)(sizeof palette / sizeof *palette))

typedef struct {
    int W, H;
    int L, T, R, B;              /* plot area: x in [L, R], y in [T, B] (pixels) */
    double xlo, xhi;             /* data range on x */
    double ylo, yhi;             /* range on y, in log10 units when logy */
    int logy;
    int nxt, nyt;
    double xt[MAX_TICKS], yt[MAX_TICKS];   /* tick values (data units) */
    char xtl[MAX_TICKS][24], ytl[MAX_TICKS][24];
    int legend_x, legend_y;      /* top-left of the legend */
    int legend_chars;            /* labels longer than this are cut (with "..") */
    int title_x;                 /* left edge of the title (PNG) */
} layout;

static int valid_y(const layout *l, double y) { return isfinite(y) && (!l->logy || y > 0); }
static double ty(const layout *l, double y) { return l->logy ? log10(y) : y; }
static double px_x(const layout *l, double x)
{
    return l->L + (x - l->xlo) / (l->xhi - l->xlo) * (l->R - l->L);
}
static double px_y(const layout *l, double y)
{
    return l->B - (ty(l, y) - l->ylo) / (l->yhi - l->ylo) * (l->B - l->T);
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

static int text_width(const char *s) { return (int)strlen(s) * CHAR_W - FONT_SCALE; }

static void make_layout(const lopt_plot *p, layout *l)
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
                if (!ys[k] || !valid_y(l, ys[k][i])) continue;
                double v = ty(l, ys[k][i]);
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
        if (text_width(l->ytl[i]) > ytw) ytw = text_width(l->ytl[i]);
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
    int tw = p->title ? text_width(p->title) : 0;
    l->title_x = (l->L + l->R) / 2 - tw / 2;
    if (l->title_x + tw > l->W - 8) l->title_x = l->W - 8 - tw;
    if (l->title_x < 8) l->title_x = 8;

    /* fewer x ticks until their labels do not collide */
    for (int target = 6; target >= 1; target--) {
        l->nxt = linear_ticks(l->xlo, l->xhi, target, l->xt);
        int widest = 0;
        for (int i = 0; i < l->nxt; i++) {
            snprintf(l->xtl[i], sizeof l->xtl[i], "%g", l->xt[i]);
            if (text_width(l->xtl[i]) > widest) widest = text_width(l->xtl[i]);
        }
        double gap = l->nxt > 1 ? px_x(l, l->xt[1]) - px_x(l, l->xt[0]) : 1e9;
        if (gap >= widest + 2 * CHAR_W) break;
    }
}

/* a legend label cut to the layout's width */
static void legend_label(const layout *l, const char *s, char *out, size_t cap)
{
    size_t n = s ? strlen(s) : 0, max = (size_t)l->legend_chars;
    if (max + 1 > cap) max = cap - 1;
    if (n <= max) snprintf(out, cap, "%s", s ? s : "");
    else snprintf(out, cap, "%.*s..", (int)(max - 2), s);
}

/* ---- SVG ----------------------------------------------------------------------- */


static void sb_text(lopt_sbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': lopt_sb_printf(b, "&amp;"); break;
        case '<': lopt_sb_printf(b, "&lt;"); break;
        case '>': lopt_sb_printf(b, "&gt;"); break;
        case '"': lopt_sb_printf(b, "&quot;"); break;
        default: lopt_sb_printf(b, "%c", *s);
        }
    }
}

static int point_ok(const layout *l, const lopt_plot_series *s, int i)
{
    return isfinite(s->x[i]) && valid_y(l, s->y[i]);
}
static int band_ok(const layout *l, const lopt_plot_series *s, int i)
{
    return isfinite(s->x[i]) && valid_y(l, s->lo[i]) && valid_y(l, s->hi[i]);
}

/* the SVG document of one plot; its clip path is called clip_id (unique per panel
 * when several plots share a document) */
static char *plot_svg(const lopt_plot *p, size_t *len, const char *clip_id)
{
    layout l;
    make_layout(p, &l);
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, "
                  "sans-serif\">\n",
              l.W, l.H, l.W, l.H);
    lopt_sb_printf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", l.W, l.H);
    lopt_sb_printf(&b, "<clipPath id=\"%s\"><rect x=\"%d\" y=\"%d\" width=\"%d\" "
                  "height=\"%d\"/></clipPath>\n",
              clip_id, l.L, l.T, l.R - l.L, l.B - l.T);
    lopt_sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"18\">",
              (l.L + l.R) / 2.0, 20 + CHAR_H);
    sb_text(&b, p->title);
    lopt_sb_printf(&b, "</text>\n<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n");
    for (int i = 0; i < l.nxt; i++)
        lopt_sb_printf(&b, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", px_x(&l, l.xt[i]),
                  l.T, px_x(&l, l.xt[i]), l.B);
    for (int i = 0; i < l.nyt; i++)
        lopt_sb_printf(&b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", l.L,
                  px_y(&l, l.yt[i]), l.R, px_y(&l, l.yt[i]));
    lopt_sb_printf(&b, "</g>\n<g clip-path=\"url(#%s)\">\n", clip_id);
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        if (!se->lo || !se->hi) continue;
        lopt_sb_printf(&b, "<path class=\"band\" fill=\"#%06x\" fill-opacity=\"0.18\" "
                      "stroke=\"none\" d=\"",
                  palette[s % NPALETTE]);
        for (int i = 0; i < se->n;) {   /* one closed subpath per run of valid points */
            if (!band_ok(&l, se, i)) { i++; continue; }
            int j = i;
            while (j < se->n && band_ok(&l, se, j)) j++;
            for (int k = i; k < j; k++)
                lopt_sb_printf(&b, "%c%.2f,%.2f ", k == i ? 'M' : 'L', px_x(&l, se->x[k]),
                          px_y(&l, se->hi[k]));
            for (int k = j - 1; k >= i; k--)
                lopt_sb_printf(&b, "L%.2f,%.2f ", px_x(&l, se->x[k]), px_y(&l, se->lo[k]));
            lopt_sb_printf(&b, "Z ");
            i = j;
        }
        lopt_sb_printf(&b, "\"/>\n");
    }
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        lopt_sb_printf(&b, "<path class=\"line\" fill=\"none\" stroke=\"#%06x\" stroke-width=\"2.5\" "
                      "stroke-linejoin=\"round\" d=\"",
                  palette[s % NPALETTE]);
        int pen = 0;
        for (int i = 0; i < se->n; i++) {
            if (!point_ok(&l, se, i)) { pen = 0; continue; }
            lopt_sb_printf(&b, "%c%.2f,%.2f ", pen ? 'L' : 'M', px_x(&l, se->x[i]),
                      px_y(&l, se->y[i]));
            pen = 1;
        }
        lopt_sb_printf(&b, "\"><title>");
        sb_text(&b, se->label);
        lopt_sb_printf(&b, "</title></path>\n");
    }
    lopt_sb_printf(&b, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                  "stroke=\"#333333\" stroke-width=\"1\"/>\n",
              l.L, l.T, l.R - l.L, l.B - l.T);
    lopt_sb_printf(&b, "<g font-size=\"13\" fill=\"#222222\">\n");
    for (int i = 0; i < l.nxt; i++) {
        double x = px_x(&l, l.xt[i]);
        lopt_sb_printf(&b, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#333333\"/>"
                      "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                  x, l.B, x, l.B + 6, x, l.B + 6 + 6 + 12, l.xtl[i]);
    }
    for (int i = 0; i < l.nyt; i++) {
        double y = px_y(&l, l.yt[i]);
        lopt_sb_printf(&b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#333333\"/>"
                      "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                  l.L - 6, y, l.L, y, l.L - 10, y + 4.5, l.ytl[i]);
    }
    lopt_sb_printf(&b, "</g>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"15\">",
              (l.L + l.R) / 2.0, l.H - 12);
    sb_text(&b, p->xlabel);
    lopt_sb_printf(&b, "</text>\n<text transform=\"translate(%d,%.1f) rotate(-90)\" "
                  "text-anchor=\"middle\" font-size=\"15\">",
              10 + CHAR_H, (l.T + l.B) / 2.0);
    sb_text(&b, p->ylabel);
    lopt_sb_printf(&b, "</text>\n<g font-size=\"14\">\n");
    for (int s = 0; s < p->nseries; s++) {
        int y = l.legend_y + 12 + s * 24 + 7;
        lopt_sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#%06x\" "
                      "stroke-width=\"2.5\"/><text x=\"%d\" y=\"%d\">",
                  l.legend_x + 12, y, l.legend_x + 40, y, palette[s % NPALETTE],
                  l.legend_x + 48, y + 5);
        char lab[256];
        legend_label(&l, p->series[s].label, lab, sizeof lab);
        sb_text(&b, lab);
        lopt_sb_printf(&b, "</text>\n");
    }
    lopt_sb_printf(&b, "</g>\n</svg>\n");
    if (len) *len = b.len;
    return b.s;
}

char *lopt_plot_svg(const lopt_plot *p, size_t *len) { return plot_svg(p, len, "plotarea"); }

/* the row's size: the panels' widths summed, the tallest panel's height */
static void row_size(const lopt_plot *p, int np, int *w, int *h)
{
    *w = *h = 0;
    for (int k = 0; k < np; k++) {
        int pw = p[k].width > 0 ? p[k].width : 960, ph = p[k].height > 0 ? p[k].height : 600;
        *w += pw;
        if (ph > *h) *h = ph;
    }
}

char *lopt_plot_svg_row(const lopt_plot *p, int np, size_t *len)
{
    LOPT_ASSERT(np >= 1);
    int W, H;
    row_size(p, np, &W, &H);
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
              W, H, W, H, W, H);
    int x = 0;
    for (int k = 0; k < np; k++) {
        char id[32];
        snprintf(id, sizeof id, "plotarea%d", k);
        char *one = plot_svg(&p[k], NULL, id);
        /* the panel as a nested <svg> at its offset, without its XML declaration */
        const char *tag = strstr(one, "<svg ");
        LOPT_ASSERT(tag);
        lopt_sb_printf(&b, "<svg x=\"%d\" y=\"0\" %s", x, tag + 5);
        free(one);
        x += p[k].width > 0 ? p[k].width : 960;
    }
    lopt_sb_printf(&b, "</svg>\n");
    if (len) *len = b.len;
    return b.s;
}

/* ---- raster -------------------------------------------------------------------- */

typedef struct {
    uint8_t *px;   /* (h, w, 3) */
    int w, h;
    float *cov;    /* (h, w) per-series coverage */
} canvas;

static void blend(canvas *c, int x, int y, uint32_t rgb, double a)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || !(a > 0)) return;
    if (a > 1) a = 1;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    for (int k = 0; k < 3; k++) {
        double src = (double)((rgb >> (16 - 8 * k)) & 0xff);
        p[k] = (uint8_t)lround(p[k] + a * (src - p[k]));
    }
}

static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb)
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) blend(c, x, y, rgb, 1.0);
}

/* text with its top-left at (x, y); vertical: rotated 90 degrees counter-clockwise,
 * (x, y) then being the bottom-left, reading upwards */
static void draw_text(canvas *c, int x, int y, const char *s, uint32_t rgb, int vertical)
{
    for (int i = 0; s && s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];
        int g = ch >= 32 && ch < 127 ? ch - 32 : '?' - 32;
        for (int r = 0; r < 9; r++)
            for (int col = 0; col < 5; col++) {
                if (font5x7[g][r][col] != '#') continue;
                for (int dy = 0; dy < FONT_SCALE; dy++)
                    for (int dx = 0; dx < FONT_SCALE; dx++) {
                        int u = i * CHAR_W + col * FONT_SCALE + dx, v = r * FONT_SCALE + dy;
                        if (vertical) blend(c, x + v, y - u, rgb, 1.0);
                        else blend(c, x + u, y + v, rgb, 1.0);
                    }
            }
    }
}

static double seg_dist(double px, double py, double ax, double ay, double bx, double by)
{
    double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0.0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double ex = ax + t * dx - px, ey = ay + t * dy - py;
    return sqrt(ex * ex + ey * ey);
}

/* max-accumulates the coverage of a thick anti-aliased segment, clipped to clip */
static void cover_segment(canvas *c, const layout *l, double ax, double ay, double bx,
                          double by, double hw)
{
    int x0 = (int)floor(fmin(ax, bx) - hw - 1), x1 = (int)ceil(fmax(ax, bx) + hw + 1);
    int y0 = (int)floor(fmin(ay, by) - hw - 1), y1 = (int)ceil(fmax(ay, by) + hw + 1);
    if (x0 < l->L) x0 = l->L;
    if (y0 < l->T) y0 = l->T;
    if (x1 > l->R) x1 = l->R;
    if (y1 > l->B) y1 = l->B;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double d = seg_dist(x + 0.5, y + 0.5, ax, ay, bx, by);
            double a = hw + 0.5 - d;
            if (a <= 0) continue;
            float *cv = &c->cov[(size_t)y * (size_t)c->w + (size_t)x];
            if (a > *cv) *cv = (float)(a > 1 ? 1 : a);
        }
}

static void flush_cover(canvas *c, const layout *l, uint32_t rgb, double alpha)
{
    for (int y = l->T; y <= l->B; y++)
        for (int x = l->L; x <= l->R; x++) {
            float *cv = &c->cov[(size_t)y * (size_t)c->w + (size_t)x];
            if (*cv > 0) blend(c, x, y, rgb, alpha * *cv);
            *cv = 0;
        }
}

static void cover_band(canvas *c, const layout *l, const lopt_plot_series *s)
{
    for (int i = 1; i < s->n; i++) {
        if (!band_ok(l, s, i - 1) || !band_ok(l, s, i)) continue;
        double xa = px_x(l, s->x[i - 1]), xb = px_x(l, s->x[i]);
        if (xb < xa) continue;
        double ha = px_y(l, s->hi[i - 1]), hb = px_y(l, s->hi[i]);
        double la = px_y(l, s->lo[i - 1]), lb = px_y(l, s->lo[i]);
        for (int x = (int)floor(xa); x <= (int)ceil(xb); x++) {
            double cx = x + 0.5;
            if (cx < xa || cx > xb || x < l->L || x > l->R) continue;
            double t = xb > xa ? (cx - xa) / (xb - xa) : 0.0;
            double top = ha + t * (hb - ha), bot = la + t * (lb - la);
            for (int y = (int)floor(top); y <= (int)ceil(bot); y++) {
                if (y < l->T || y > l->B || y + 0.5 < top || y + 0.5 > bot) continue;
                c->cov[(size_t)y * (size_t)c->w + (size_t)x] = 1.0f;
            }
        }
    }
}

void lopt_plot_raster(const lopt_plot *p, uint8_t **rgb, int *w, int *h)
{
    layout l;
    make_layout(p, &l);
    canvas c = {lopt_xcalloc((size_t)l.W * (size_t)l.H * 3, 1), l.W, l.H,
                lopt_xcalloc((size_t)l.W * (size_t)l.H, sizeof(float))};
    memset(c.px, 0xff, (size_t)l.W * (size_t)l.H * 3);
    const uint32_t grid = 0xe6e6e6, axis = 0x333333, ink = 0x222222;
    for (int i = 0; i < l.nxt; i++) {
        int x = (int)lround(px_x(&l, l.xt[i]));
        fill_rect(&c, x, l.T, x, l.B, grid);
    }
    for (int i = 0; i < l.nyt; i++) {
        int y = (int)lround(px_y(&l, l.yt[i]));
        fill_rect(&c, l.L, y, l.R, y, grid);
    }
    for (int s = 0; s < p->nseries; s++) {
        if (!p->series[s].lo || !p->series[s].hi) continue;
        cover_band(&c, &l, &p->series[s]);
        flush_cover(&c, &l, palette[s % NPALETTE], 0.18);
    }
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        int prev = -1;
        for (int i = 0; i < se->n; i++) {
            if (!point_ok(&l, se, i)) { prev = -1; continue; }
            double x = px_x(&l, se->x[i]), y = px_y(&l, se->y[i]);
            if (prev >= 0)
                cover_segment(&c, &l, px_x(&l, se->x[prev]), px_y(&l, se->y[prev]), x, y, 1.25);
            else
                cover_segment(&c, &l, x, y, x, y, 1.25);
            prev = i;
        }
        flush_cover(&c, &l, palette[s % NPALETTE], 1.0);
    }
    fill_rect(&c, l.L, l.T, l.R, l.T, axis);
    fill_rect(&c, l.L, l.B, l.R, l.B, axis);
    fill_rect(&c, l.L, l.T, l.L, l.B, axis);
    fill_rect(&c, l.R, l.T, l.R, l.B, axis);
    for (int i = 0; i < l.nxt; i++) {
        int x = (int)lround(px_x(&l, l.xt[i]));
        fill_rect(&c, x, l.B, x, l.B + 6, axis);
        draw_text(&c, x - text_width(l.xtl[i]) / 2, l.B + 6 + 6, l.xtl[i], ink, 0);
    }
    for (int i = 0; i < l.nyt; i++) {
        int y = (int)lround(px_y(&l, l.yt[i]));
        fill_rect(&c, l.L - 6, y, l.L, y, axis);
        draw_text(&c, l.L - 10 - text_width(l.ytl[i]), y - CHAR_H / 2, l.ytl[i], ink, 0);
    }
    if (p->title)
        draw_text(&c, l.title_x, 20, p->title, 0x000000, 0);
    if (p->xlabel)
        draw_text(&c, (l.L + l.R) / 2 - text_width(p->xlabel) / 2, l.H - 12 - CHAR_H,
                  p->xlabel, ink, 0);
    if (p->ylabel)
        draw_text(&c, 10, (l.T + l.B) / 2 + text_width(p->ylabel) / 2, p->ylabel, ink, 1);
    for (int s = 0; s < p->nseries; s++) {
        int y = l.legend_y + 12 + s * 24 + 7;
        for (int k = -1; k <= 1; k++) fill_rect(&c, l.legend_x + 12, y + k, l.legend_x + 40, y + k,
                                                palette[s % NPALETTE]);
        char lab[256];
        legend_label(&l, p->series[s].label, lab, sizeof lab);
        draw_text(&c, l.legend_x + 48, y - CHAR_H / 2, lab, ink, 0);
    }
    free(c.cov);
    *rgb = c.px;
    *w = l.W;
    *h = l.H;
}

void lopt_plot_raster_row(const lopt_plot *p, int np, uint8_t **rgb, int *w, int *h)
{
    LOPT_ASSERT(np >= 1);
    int W, H;
    row_size(p, np, &W, &H);
    uint8_t *px = lopt_xcalloc((size_t)W * (size_t)H * 3, 1);
    memset(px, 0xff, (size_t)W * (size_t)H * 3);
    int x = 0;
    for (int k = 0; k < np; k++) {
        uint8_t *one;
        int pw, ph;
        lopt_plot_raster(&p[k], &one, &pw, &ph);
        for (int y = 0; y < ph; y++)
            memcpy(px + ((size_t)y * (size_t)W + (size_t)x) * 3, one + (size_t)y * (size_t)pw * 3,
                   (size_t)pw * 3);
        free(one);
        x += pw;
    }
    *rgb = px;
    *w = W;
    *h = H;
}

/* ---- PNG ----------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* appends a chunk (length, type, data, CRC over type and data) at out + *pos */
static void put_chunk(unsigned char *out, size_t *pos, const char *type,
                      const unsigned char *data, size_t n)
{
    unsigned char *p = out + *pos;
    put_u32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    put_u32(p + 8 + n, (uint32_t)crc32(0L, p + 4, (uInt)(n + 4)));
    *pos += 12 + n;
}

lopt_status lopt_png_encode(const uint8_t *rgb, int w, int h, unsigned char **png,
                            size_t *n, lopt_err *err)
{
    LOPT_ASSERT(w > 0 && h > 0);
    *png = NULL;
    *n = 0;
    size_t stride = (size_t)w * 3 + 1, raw_n = stride * (size_t)h;
    unsigned char *raw = lopt_xcalloc(raw_n, 1);
    for (int y = 0; y < h; y++) {   /* filter type 0 (None) on every row */
        raw[(size_t)y * stride] = 0;
        memcpy(raw + (size_t)y * stride + 1, rgb + (size_t)y * (size_t)w * 3, (size_t)w * 3);
    }
    uLongf zn = compressBound((uLong)raw_n);
    unsigned char *z = lopt_xcalloc(zn, 1);
    int zs = compress2(z, &zn, raw, (uLong)raw_n, 6);
    free(raw);
    if (zs != Z_OK) {
        free(z);
        return lopt_fail(err, LOPT_ENOMEM, "PNG compression failed (zlib error %d)", zs);
    }
    unsigned char ihdr[13];
    put_u32(ihdr, (uint32_t)w);
    put_u32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;    /* bit depth */
    ihdr[9] = 2;    /* colour type: truecolour RGB */
    ihdr[10] = 0;   /* deflate */
    ihdr[11] = 0;   /* adaptive filtering (type per row) */
    ihdr[12] = 0;   /* no interlace */
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t total = 8 + (12 + 13) + (12 + (size_t)zn) + 12, pos = 8;
    unsigned char *out = lopt_xcalloc(total, 1);
    memcpy(out, sig, 8);
    put_chunk(out, &pos, "IHDR", ihdr, 13);
    put_chunk(out, &pos, "IDAT", z, zn);
    put_chunk(out, &pos, "IEND", NULL, 0);
    LOPT_ASSERT(pos == total);
    free(z);
    *png = out;
    *n = total;
    return LOPT_OK;
}

lopt_status lopt_plot_write(const lopt_plot *p, const char *base, lopt_err *err)
{
    char path[4096];
    size_t len;
    char *svg = lopt_plot_svg(p, &len);
    if (snprintf(path, sizeof path, "%s.svg", base) >= (int)sizeof path) {
        free(svg);
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s", base);
    }
    lopt_status st = lopt_write_atomic(path, svg, len, err);
    free(svg);
    if (st != LOPT_OK) return st;
    uint8_t *rgb;
    int w, h;
    lopt_plot_raster(p, &rgb, &w, &h);
    unsigned char *png;
    size_t n;
    st = lopt_png_encode(rgb, w, h, &png, &n, err);
    free(rgb);
    if (st != LOPT_OK) return st;
    snprintf(path, sizeof path, "%s.png", base);
    st = lopt_write_atomic(path, png, n, err);
    free(png);
    return st;
}

lopt_status lopt_plot_write_row(const lopt_plot *p, int np, const char *base, lopt_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s.svg", base) >= (int)sizeof path)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s", base);
    size_t len;
    char *svg = lopt_plot_svg_row(p, np, &len);
    lopt_status st = lopt_write_atomic(path, svg, len, err);
    free(svg);
    if (st != LOPT_OK) return st;
    uint8_t *rgb;
    int w, h;
    lopt_plot_raster_row(p, np, &rgb, &w, &h);
    unsigned char *png;
    size_t n;
    st = lopt_png_encode(rgb, w, h, &png, &n, err);
    free(rgb);
    if (st != LOPT_OK) return st;
    snprintf(path, sizeof path, "%s.png", base);
    st = lopt_write_atomic(path, png, n, err);
    free(png);
    return st;
}
