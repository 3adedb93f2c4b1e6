/* plot.c - line plots to SVG and PNG files (plot.h). The parts: plot_layout.c (one
 * layout for both renderers), plot_svg.c, plot_raster.c (with the bitmap font),
 * png.c (the encoder), heatmap.c. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/plot.h"

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
