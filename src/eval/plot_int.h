/* plot_int.h - what the two renderers of a line plot share, private to src/eval:
 * one layout (ranges, ticks, margins, legend) computed from a lopt_plot, read by the
 * SVG writer (plot_svg.c) and the rasteriser (plot_raster.c). Implemented in
 * plot_layout.c. */
#ifndef LOPT_PLOT_INT_H
#define LOPT_PLOT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "eval/plot.h"

#define FONT_SCALE 2
#define CHAR_W (6 * FONT_SCALE)   /* advance: 5 columns + 1 gap */
#define CHAR_H (7 * FONT_SCALE)
#define MAX_TICKS 32

#define NPALETTE 10
extern const uint32_t lopt_plot_palette[NPALETTE];

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
} lopt_plot_layout_t;

/* the layout of plot p */
void lopt_plot_layout(const lopt_plot *p, lopt_plot_layout_t *l);
/* a y value the axis can show (finite; positive on log-y) */
int lopt_plot_valid_y(const lopt_plot_layout_t *l, double y);
/* y in axis units (log10 y on log-y) */
double lopt_plot_ty(const lopt_plot_layout_t *l, double y);
/* data coordinates to pixels */
double lopt_plot_px_x(const lopt_plot_layout_t *l, double x);
double lopt_plot_px_y(const lopt_plot_layout_t *l, double y);
/* the width in pixels of s in the bitmap font */
int lopt_plot_text_width(const char *s);
/* s, cut to the legend's width (with "..") */
void lopt_plot_legend_label(const lopt_plot_layout_t *l, const char *s, char *out, size_t cap);
/* point i of series s drawable: its line, its band */
int lopt_plot_point_ok(const lopt_plot_layout_t *l, const lopt_plot_series *s, int i);
int lopt_plot_band_ok(const lopt_plot_layout_t *l, const lopt_plot_series *s, int i);
/* a panel's width in pixels (960 when unset) */
int lopt_plot_width(const lopt_plot *p);
/* a row of np panels: the panels' widths summed, the tallest panel's height */
void lopt_plot_row_size(const lopt_plot *p, int np, int *w, int *h);

#endif
