/* plot_svg.c - a line plot as an SVG document (plot.h), from the shared layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "eval/plot_int.h"

/* the document, the background, the title and the grid lines; the plot area's clip
 * path is called clip_id (unique per panel when several plots share a document) */
static void svg_head(lopt_sbuf *b, const lopt_plot *p, const lopt_plot_layout_t *l,
                     const char *clip_id)
{
    lopt_sb_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, "
                  "sans-serif\">\n",
              l->W, l->H, l->W, l->H);
    lopt_sb_printf(b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", l->W, l->H);
    lopt_sb_printf(b, "<clipPath id=\"%s\"><rect x=\"%d\" y=\"%d\" width=\"%d\" "
                  "height=\"%d\"/></clipPath>\n",
              clip_id, l->L, l->T, l->R - l->L, l->B - l->T);
    lopt_sb_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"18\">",
              (l->L + l->R) / 2.0, 20 + CHAR_H);
    lopt_xml_text(b, p->title);
    lopt_sb_printf(b, "</text>\n<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n");
    for (int i = 0; i < l->nxt; i++)
        lopt_sb_printf(b, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", lopt_plot_px_x(l, l->xt[i]),
                  l->T, lopt_plot_px_x(l, l->xt[i]), l->B);
    for (int i = 0; i < l->nyt; i++)
        lopt_sb_printf(b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", l->L,
                  lopt_plot_px_y(l, l->yt[i]), l->R, lopt_plot_px_y(l, l->yt[i]));
}

/* the min..max bands: one closed subpath per run of valid points */
static void svg_bands(lopt_sbuf *b, const lopt_plot *p, const lopt_plot_layout_t *l)
{
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        if (!se->lo || !se->hi) continue;
        lopt_sb_printf(b, "<path class=\"band\" fill=\"#%06x\" fill-opacity=\"0.18\" "
                      "stroke=\"none\" d=\"",
                  lopt_plot_palette[s % NPALETTE]);
        for (int i = 0; i < se->n;) {
            if (!lopt_plot_band_ok(l, se, i)) { i++; continue; }
            int j = i;
            while (j < se->n && lopt_plot_band_ok(l, se, j)) j++;
            for (int k = i; k < j; k++)
                lopt_sb_printf(b, "%c%.2f,%.2f ", k == i ? 'M' : 'L', lopt_plot_px_x(l, se->x[k]),
                          lopt_plot_px_y(l, se->hi[k]));
            for (int k = j - 1; k >= i; k--)
                lopt_sb_printf(b, "L%.2f,%.2f ", lopt_plot_px_x(l, se->x[k]), lopt_plot_px_y(l, se->lo[k]));
            lopt_sb_printf(b, "Z ");
            i = j;
        }
        lopt_sb_printf(b, "\"/>\n");
    }
}

/* each series one path, broken where a point is not drawable */
static void svg_lines(lopt_sbuf *b, const lopt_plot *p, const lopt_plot_layout_t *l)
{
    for (int s = 0; s < p->nseries; s++) {
        const lopt_plot_series *se = &p->series[s];
        lopt_sb_printf(b, "<path class=\"line\" fill=\"none\" stroke=\"#%06x\" stroke-width=\"2.5\" "
                      "stroke-linejoin=\"round\" d=\"",
                  lopt_plot_palette[s % NPALETTE]);
        int pen = 0;
        for (int i = 0; i < se->n; i++) {
            if (!lopt_plot_point_ok(l, se, i)) { pen = 0; continue; }
            lopt_sb_printf(b, "%c%.2f,%.2f ", pen ? 'L' : 'M', lopt_plot_px_x(l, se->x[i]),
                      lopt_plot_px_y(l, se->y[i]));
            pen = 1;
        }
        lopt_sb_printf(b, "\"><title>");
        lopt_xml_text(b, se->label);
        lopt_sb_printf(b, "</title></path>\n");
    }
}

/* the frame, the ticks with their labels, the axis labels */
static void svg_axes(lopt_sbuf *b, const lopt_plot *p, const lopt_plot_layout_t *l)
{
    lopt_sb_printf(b, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                  "stroke=\"#333333\" stroke-width=\"1\"/>\n",
              l->L, l->T, l->R - l->L, l->B - l->T);
    lopt_sb_printf(b, "<g font-size=\"13\" fill=\"#222222\">\n");
    for (int i = 0; i < l->nxt; i++) {
        double x = lopt_plot_px_x(l, l->xt[i]);
        lopt_sb_printf(b, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#333333\"/>"
                      "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                  x, l->B, x, l->B + 6, x, l->B + 6 + 6 + 12, l->xtl[i]);
    }
    for (int i = 0; i < l->nyt; i++) {
        double y = lopt_plot_px_y(l, l->yt[i]);
        lopt_sb_printf(b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#333333\"/>"
                      "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                  l->L - 6, y, l->L, y, l->L - 10, y + 4.5, l->ytl[i]);
    }
    lopt_sb_printf(b, "</g>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"15\">",
              (l->L + l->R) / 2.0, l->H - 12);
    lopt_xml_text(b, p->xlabel);
    lopt_sb_printf(b, "</text>\n<text transform=\"translate(%d,%.1f) rotate(-90)\" "
                  "text-anchor=\"middle\" font-size=\"15\">",
              10 + CHAR_H, (l->T + l->B) / 2.0);
    lopt_xml_text(b, p->ylabel);
}

/* the legend, labels cut to its width */
static void svg_legend(lopt_sbuf *b, const lopt_plot *p, const lopt_plot_layout_t *l)
{
    lopt_sb_printf(b, "</text>\n<g font-size=\"14\">\n");
    for (int s = 0; s < p->nseries; s++) {
        int y = l->legend_y + 12 + s * 24 + 7;
        lopt_sb_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#%06x\" "
                      "stroke-width=\"2.5\"/><text x=\"%d\" y=\"%d\">",
                  l->legend_x + 12, y, l->legend_x + 40, y, lopt_plot_palette[s % NPALETTE],
                  l->legend_x + 48, y + 5);
        char lab[256];
        lopt_plot_legend_label(l, p->series[s].label, lab, sizeof lab);
        lopt_xml_text(b, lab);
        lopt_sb_printf(b, "</text>\n");
    }
    lopt_sb_printf(b, "</g>\n</svg>\n");
}

/* the SVG document of one plot, its clip path called clip_id */
static char *plot_svg(const lopt_plot *p, size_t *len, const char *clip_id)
{
    lopt_plot_layout_t l;
    lopt_plot_layout(p, &l);
    lopt_sbuf b = {0};
    svg_head(&b, p, &l, clip_id);
    lopt_sb_printf(&b, "</g>\n<g clip-path=\"url(#%s)\">\n", clip_id);
    svg_bands(&b, p, &l);
    svg_lines(&b, p, &l);
    svg_axes(&b, p, &l);
    svg_legend(&b, p, &l);
    if (len) *len = b.len;
    return b.s;
}

char *lopt_plot_svg(const lopt_plot *p, size_t *len) { return plot_svg(p, len, "plotarea"); }

char *lopt_plot_svg_row(const lopt_plot *p, int np, size_t *len)
{
    LOPT_ASSERT(np >= 1);
    int W, H;
    lopt_plot_row_size(p, np, &W, &H);
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
        x += lopt_plot_width(&p[k]);
    }
    lopt_sb_printf(&b, "</svg>\n");
    if (len) *len = b.len;
    return b.s;
}
