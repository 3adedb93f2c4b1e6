/* plot.c - line plots to SVG and PNG files (plot.h). The parts: plot_layout.c (one
 * layout for both renderers), plot_svg.c, plot_raster.c (with the bitmap font),
 * png.c (the encoder), heatmap.c. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/plot.h"

/* BASE.svg from svg (len bytes), then BASE.png from the rgb raster (w x h); both
 * atomically, both buffers freed */
static lopt_status write_svg_png(const char *base, char *svg, size_t len, uint8_t *rgb, int w,
                                 int h, lopt_err *err)
{
    char path[4096];
    lopt_status st = LOPT_OK;
    if (snprintf(path, sizeof path, "%s.svg", base) >= (int)sizeof path)
        st = lopt_fail(err, LOPT_EUSAGE, "path too long: %s", base);
    if (st == LOPT_OK) st = lopt_write_atomic(path, svg, len, err);
    free(svg);
    unsigned char *png = NULL;
    size_t n = 0;
    if (st == LOPT_OK) st = lopt_png_encode(rgb, w, h, &png, &n, err);
    free(rgb);
    if (st == LOPT_OK) {
        snprintf(path, sizeof path, "%s.png", base);
        st = lopt_write_atomic(path, png, n, err);
    }
    free(png);
    return st;
}

lopt_status lopt_plot_write(const lopt_plot *p, const char *base, lopt_err *err)
{
    size_t len;
    char *svg = lopt_plot_svg(p, &len);
    uint8_t *rgb;
    int w, h;
    lopt_plot_raster(p, &rgb, &w, &h);
    return write_svg_png(base, svg, len, rgb, w, h, err);
}

lopt_status lopt_plot_write_row(const lopt_plot *p, int np, const char *base, lopt_err *err)
{
    size_t len;
    char *svg = lopt_plot_svg_row(p, np, &len);
    uint8_t *rgb;
    int w, h;
    lopt_plot_raster_row(p, np, &rgb, &w, &h);
    return write_svg_png(base, svg, len, rgb, w, h, err);
}
