/* plot.h - line plots of a few series (loss curves) to SVG and PNG, with no
 * external tools: axes, ticks, tick labels, axis labels, title, a legend, an
 * optional log-scale y axis and an optional shaded band per series (min..max over
 * seeds). The PNG is rasterised here (anti-aliased lines, a built-in 5x7 bitmap
 * font drawn at 2x) and encoded with zlib (IHDR, one IDAT from compress2, IEND).
 *
 * Panels side by side in one image (lopt_plot_write_row).
 *
 * Left out: scatter/bar plots, log-x, dashes, Unicode text in the PNG (bytes
 * outside printable ASCII are drawn as '?'; the SVG keeps them).
 */
#ifndef LOPT_PLOT_H
#define LOPT_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct {
    const char *label;        /* legend text */
    const double *x, *y;      /* (n) the line; non-finite (or, on log-y, non-positive)
                               * points break it */
    const double *lo, *hi;    /* (n) optional band drawn under the line, or NULL */
    int n;
} lopt_plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int logy;                 /* log10 y axis */
    int width, height;        /* pixels (SVG user units); 0: 960 x 600 */
    const lopt_plot_series *series;
    int nseries;
} lopt_plot;

/* The plot as an SVG document: malloc'ed NUL-terminated text (caller frees), its
 * length in *len if len is not NULL. Each series is one <path class="line">, each
 * band one <path class="band">. */
char *lopt_plot_svg(const lopt_plot *p, size_t *len);

/* The plot rasterised into rgb (width*height*3 bytes, row-major, top row first);
 * *w, *h receive the size. Caller frees *rgb with free. */
void lopt_plot_raster(const lopt_plot *p, uint8_t **rgb, int *w, int *h);

/* Encodes an 8-bit RGB image (w*h*3 bytes) as a PNG into a malloc'ed buffer
 * (caller frees). LOPT_ENOMEM if zlib fails. */
lopt_status lopt_png_encode(const uint8_t *rgb, int w, int h, unsigned char **png,
                            size_t *n, lopt_err *err);

/* Writes BASE.svg and BASE.png atomically. LOPT_EIO when a file cannot be written. */
lopt_status lopt_plot_write(const lopt_plot *p, const char *base, lopt_err *err);

/* np >= 1 plots side by side, left to right, each at its own size; the row is as
 * tall as its tallest panel (white below a shorter one). The SVG holds each panel
 * as a nested <svg> at its x offset (clip paths plotarea0, plotarea1, ...); the
 * raster is each panel's lopt_plot_raster copied in place. Ownership as above. */
char *lopt_plot_svg_row(const lopt_plot *p, int np, size_t *len);
void lopt_plot_raster_row(const lopt_plot *p, int np, uint8_t **rgb, int *w, int *h);
lopt_status lopt_plot_write_row(const lopt_plot *p, int np, const char *base, lopt_err *err);

/* ---- heatmaps (heatmap.c) -------------------------------------------------------
 * A square grid of values z over [-radius, radius]^2 in viridis (NaN grey), each
 * colour min-max normalised over the finite values. */
typedef struct {
    const char *title;        /* SVG only */
    const char *xlabel, *ylabel;
    const double *z;          /* (G, G) row = y index (bottom row first), column = x index */
    int G;
    double radius;            /* both axes span [-radius, radius] */
} lopt_heatmap;

/* Writes BASE.png (the bare cells and a colour bar) and BASE.svg (the same with the
 * title, the axes' ends and the value range) atomically, PNG first. */
lopt_status lopt_heatmap_write(const lopt_heatmap *h, const char *base, lopt_err *err);

#endif
