/* heatmap.c - square heatmaps to PNG and SVG (plot.h), for 2-D slices of a loss
 * surface. Five viridis anchors, linear in between. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "eval/plot.h"

static void colormap(double v, uint8_t rgb[3])
{
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

typedef struct {
    double lo, hi;            /* the colour range */
    int cell, side, bar, gap; /* pixels: a cell, the grid, the colour bar, between */
} heat_layout;

static heat_layout layout_of(const lopt_heatmap *h)
{
    heat_layout l = {INFINITY, -INFINITY, 0, 0, 24, 12};
    const int G = h->G;
    for (int i = 0; i < G * G; i++)
        if (isfinite(h->z[i])) l.lo = fmin(l.lo, h->z[i]), l.hi = fmax(l.hi, h->z[i]);
    if (!(l.hi > l.lo)) l.hi = l.lo + 1;
    l.cell = G >= 120 ? 4 : 480 / G > 4 ? 480 / G : 4;
    l.side = l.cell * G;
    return l;
}

/* the colour of image row r (top = largest y), column c */
static void cell_colour(const lopt_heatmap *h, const heat_layout *l, int r, int c, uint8_t col[3])
{
    colormap((h->z[(size_t)(h->G - 1 - r) * h->G + c] - l->lo) / (l->hi - l->lo), col);
}

static lopt_status write_png(const lopt_heatmap *h, const heat_layout *l, const char *base,
                             lopt_err *err)
{
    const int G = h->G, W = l->side + l->gap + l->bar, H = l->side;
    uint8_t *rgb = lopt_xcalloc((size_t)W * H * 3, 1);
    memset(rgb, 255, (size_t)W * H * 3);
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            uint8_t col[3];
            cell_colour(h, l, r, c, col);
            for (int y = r * l->cell; y < (r + 1) * l->cell; y++)
                for (int x = c * l->cell; x < (c + 1) * l->cell; x++)
                    memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
        }
    for (int y = 0; y < H; y++) {
        uint8_t col[3];
        colormap(1.0 - (double)y / (H - 1), col);
        for (int x = l->side + l->gap; x < W; x++) memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
    }
    unsigned char *png = NULL;
    size_t n = 0;
    char path[4096];
    lopt_status st = lopt_png_encode(rgb, W, H, &png, &n, err);
    free(rgb);
    if (st == LOPT_OK) {
        if (snprintf(path, sizeof path, "%s.png", base) >= (int)sizeof path)
            st = lopt_fail(err, LOPT_EUSAGE, "path too long: %s", base);
        else
            st = lopt_write_atomic(path, png, n, err);
    }
    free(png);
    return st;
}

static char *svg_text(const lopt_heatmap *h, const heat_layout *l, size_t *len)
{
    const int G = h->G, side = l->side, gap = l->gap, bar = l->bar, cell = l->cell;
    const double radius = h->radius;
    lopt_sbuf b = {0};
    int svgw = 80 + side + gap + bar + 90, svgh = 60 + side + 50;
    lopt_sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              svgw, svgh, svgw, svgh);
    lopt_sb_printf(&b, "<text x=\"10\" y=\"30\" font-size=\"15\">");
    lopt_xml_text(&b, h->title);
    lopt_sb_printf(&b, "</text>\n<g transform=\"translate(80,50)\">\n");
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            uint8_t col[3];
            cell_colour(h, l, r, c, col);
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
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"10\">%.4g</text>\n", side + gap + bar + 4, l->hi);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\">%.4g</text>\n", side + gap + bar + 4, side, l->lo);
    lopt_sb_printf(&b, "<text x=\"0\" y=\"%d\">-%g</text>\n", side + 18, radius);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%g</text>\n", side, side + 18,
              radius);
    lopt_sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", side / 2, side + 36);
    lopt_xml_text(&b, h->xlabel);
    lopt_sb_printf(&b, "</text>\n");
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"%d\" text-anchor=\"end\">-%g</text>\n", side, radius);
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"12\" text-anchor=\"end\">%g</text>\n", radius);
    lopt_sb_printf(&b, "<text x=\"-6\" y=\"%d\" text-anchor=\"end\">", side / 2);
    lopt_xml_text(&b, h->ylabel);
    lopt_sb_printf(&b, "</text>\n</g>\n</svg>\n");
    *len = b.len;
    return b.s;
}

lopt_status lopt_heatmap_write(const lopt_heatmap *h, const char *base, lopt_err *err)
{
    LOPT_ASSERT(h->G >= 2);
    heat_layout l = layout_of(h);
    lopt_status st = write_png(h, &l, base, err);
    if (st != LOPT_OK) return st;
    char path[4096];
    if (snprintf(path, sizeof path, "%s.svg", base) >= (int)sizeof path)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s", base);
    size_t len;
    char *svg = svg_text(h, &l, &len);
    st = lopt_write_atomic(path, svg, len, err);
    free(svg);
    return st;
}
