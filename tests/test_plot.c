/* test_plot.c - the plotting module (src/eval/plot.h): the PNG encoder decoded back
 * with zlib (signature, chunk lengths and CRCs, IHDR, filter bytes, every pixel); the
 * rasterised plot (white background, each series drawn in its colour, a non-finite
 * point breaking a line); the SVG (one line path per series, one band path per band,
 * subpaths split at a gap). The comparison engine is tests/test_compare.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "eval/plot.h"

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes a PNG as lopt_png_encode writes it (RGB8, filter 0); returns the pixels
 * (malloc'ed) or NULL, with the reason on stderr. */
static uint8_t *png_decode(const unsigned char *png, size_t n, int *w, int *h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 8 || memcmp(png, sig, 8) != 0) return fprintf(stderr, "  bad signature\n"), NULL;
    size_t pos = 8, zcap = 0, zn = 0;
    unsigned char *z = NULL;
    int seen_ihdr = 0, seen_iend = 0;
    while (pos + 12 <= n && !seen_iend) {
        uint32_t len = be32(png + pos);
        const unsigned char *type = png + pos + 4, *data = png + pos + 8;
        if (pos + 12 + len > n) return fprintf(stderr, "  chunk overruns the file\n"), NULL;
        uint32_t crc = (uint32_t)crc32(0L, type, len + 4);
        if (crc != be32(data + len)) return fprintf(stderr, "  bad CRC\n"), NULL;
        if (memcmp(type, "IHDR", 4) == 0) {
            if (len != 13 || data[8] != 8 || data[9] != 2 || data[12] != 0)
                return fprintf(stderr, "  unexpected IHDR\n"), NULL;
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (zn + len > zcap) z = realloc(z, zcap = zn + len);
            memcpy(z + zn, data, len);
            zn += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            seen_iend = 1;
        }
        pos += 12 + len;
    }
    if (!seen_ihdr || !seen_iend || pos != n) {
        free(z);
        return fprintf(stderr, "  missing IHDR/IEND or trailing bytes\n"), NULL;
    }
    uLongf raw_n = (uLongf)((size_t)*h * ((size_t)*w * 3 + 1));
    unsigned char *raw = malloc(raw_n);
    int zs = uncompress(raw, &raw_n, z, (uLong)zn);
    free(z);
    if (zs != Z_OK || raw_n != (uLongf)((size_t)*h * ((size_t)*w * 3 + 1))) {
        free(raw);
        return fprintf(stderr, "  zlib: %d\n", zs), NULL;
    }
    uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
    for (int y = 0; y < *h; y++) {
        const unsigned char *row = raw + (size_t)y * ((size_t)*w * 3 + 1);
        if (row[0] != 0) {
            free(raw);
            free(rgb);
            return fprintf(stderr, "  filter type %d on row %d\n", row[0], y), NULL;
        }
        memcpy(rgb + (size_t)y * (size_t)*w * 3, row + 1, (size_t)*w * 3);
    }
    free(raw);
    return rgb;
}

static void test_png(void)
{
    int w = 7, h = 5;
    uint8_t img[7 * 5 * 3];
    for (int i = 0; i < w * h * 3; i++) img[i] = (uint8_t)(i * 37 + 11);
    unsigned char *png;
    size_t n;
    lopt_err err = {0};
    CHECK(lopt_png_encode(img, w, h, &png, &n, &err) == LOPT_OK, "png encode: %s", err.msg);
    CHECK(be32(png + 8) == 13 && memcmp(png + 12, "IHDR", 4) == 0 && be32(png + 16) == 7 &&
              be32(png + 20) == 5,
          "IHDR first, 7x5");
    int dw = 0, dh = 0;
    uint8_t *back = png_decode(png, n, &dw, &dh);
    CHECK(back && dw == w && dh == h && memcmp(back, img, sizeof img) == 0,
          "PNG decodes back to the same pixels");
    if (back) printf("ok   PNG round trip %dx%d, %zu bytes\n", dw, dh, n);
    free(back);
    free(png);
}

static int count_color(const uint8_t *rgb, int w, int h, uint32_t c, int x0, int x1)
{
    int k = 0;
    for (int y = 0; y < h; y++)
        for (int x = x0; x < x1 && x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            if (p[0] == (c >> 16 & 0xff) && p[1] == (c >> 8 & 0xff) && p[2] == (c & 0xff)) k++;
        }
    return k;
}

static int count_str(const char *s, const char *needle)
{
    int k = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) k++;
    return k;
}

static void test_plot(void)
{
    enum { N = 21 };
    double x[N], y1[N], lo[N], hi[N], y2[N];
    for (int i = 0; i < N; i++) {
        x[i] = 50.0 * i;
        y1[i] = 2.3 * exp(-i / 5.0) + 0.5;
        lo[i] = 0.9 * y1[i];
        hi[i] = 1.1 * y1[i];
        y2[i] = i == 10 ? NAN : 1.5 + 0.2 * sin(i);
    }
    lopt_plot_series s[2] = {{"adam lr 0.001", x, y1, lo, hi, N}, {"learned", x, y2, NULL, NULL, N}};
    lopt_plot p = {"test: loss vs step", "step", "loss", 1, 0, 0, s, 2};
    size_t len = 0;
    char *svg = lopt_plot_svg(&p, &len);
    CHECK(svg && strlen(svg) == len && strncmp(svg, "<?xml", 5) == 0 && strstr(svg, "<svg") &&
              strstr(svg, "</svg>"),
          "SVG document");
    CHECK(count_str(svg, "class=\"line\"") == 2, "one line path per series");
    CHECK(count_str(svg, "class=\"band\"") == 1, "one band path per band");
    char *second = strstr(svg, "<title>learned</title>");
    char *path = second ? second : svg;
    while (path > svg && strncmp(path, "<path", 5) != 0) path--;
    int moves = 0;
    for (char *q = strstr(path, "d=\""); q && q < second; q++) moves += *q == 'M';
    CHECK(moves == 2, "a NaN point splits the line into 2 subpaths (got %d)", moves);
    free(svg);

    uint8_t *rgb;
    int w, h;
    lopt_plot_raster(&p, &rgb, &w, &h);
    CHECK(w == 960 && h == 600, "default size 960x600 (got %dx%d)", w, h);
    CHECK(count_color(rgb, w, h, 0xffffff, 0, 10) == 10 * h, "white left margin");
    /* the lines are 2.5 px wide: far more fully covered pixels than the legend's 87 */
    int blue = count_color(rgb, w, h, 0x1f77b4, 0, w), orange = count_color(rgb, w, h, 0xff7f0e, 0, w);
    CHECK(blue > 600 && orange > 600, "both series drawn (blue %d, orange %d px)", blue, orange);
    printf("ok   raster plot: %d blue, %d orange pixels\n", blue, orange);
    free(rgb);

    /* degenerate input: nothing finite, one point */
    double nx[1] = {NAN}, ny[1] = {NAN}, ox[1] = {3}, oy[1] = {2};
    lopt_plot_series d[2] = {{"none", nx, ny, NULL, NULL, 1}, {"one", ox, oy, NULL, NULL, 1}};
    lopt_plot q = {"", "", "", 0, 320, 200, d, 2};
    lopt_plot_raster(&q, &rgb, &w, &h);
    CHECK(w == 320 && h == 200, "explicit size");
    free(rgb);
    svg = lopt_plot_svg(&q, NULL);
    CHECK(count_str(svg, "class=\"line\"") == 2, "degenerate plot still has its paths");
    free(svg);
}

/* two panels side by side: each panel's pixels exactly where the row puts them,
 * white under the shorter one, each panel's SVG nested with its own clip path */
static void test_plot_row(void)
{
    enum { N = 11 };
    double x[N], y1[N], y2[N];
    for (int i = 0; i < N; i++) {
        x[i] = 100.0 * i;
        y1[i] = 2.0 * exp(-i / 3.0) + 0.4;
        y2[i] = 1.0 + 0.1 * i;
    }
    lopt_plot_series a[1] = {{"train", x, y1, NULL, NULL, N}};
    lopt_plot_series b[2] = {{"valid", x, y2, NULL, NULL, N}, {"other", x, y1, NULL, NULL, N}};
    lopt_plot p[2] = {{"left", "step", "loss", 1, 320, 200, a, 1},
                      {"right", "step", "loss", 0, 400, 250, b, 2}};
    uint8_t *row, *one[2];
    int w, h, pw[2], ph[2];
    lopt_plot_raster_row(p, 2, &row, &w, &h);
    for (int k = 0; k < 2; k++) lopt_plot_raster(&p[k], &one[k], &pw[k], &ph[k]);
    CHECK(w == 720 && h == 250, "row size: widths summed, tallest height (got %dx%d)", w, h);
    int same[2] = {1, 1}, white = 1;
    for (int y = 0; y < h; y++)
        for (int k = 0, x0 = 0; k < 2; x0 += pw[k], k++)
            for (int xx = 0; xx < pw[k]; xx++) {
                const uint8_t *q = row + ((size_t)y * (size_t)w + (size_t)(x0 + xx)) * 3;
                if (y < ph[k]) {
                    const uint8_t *o = one[k] + ((size_t)y * (size_t)pw[k] + (size_t)xx) * 3;
                    if (memcmp(q, o, 3) != 0) same[k] = 0;
                } else if (q[0] != 0xff || q[1] != 0xff || q[2] != 0xff) {
                    white = 0;
                }
            }
    CHECK(same[0] && same[1], "each panel's pixels in place (left %d, right %d)", same[0], same[1]);
    CHECK(white, "white below the shorter panel");
    free(row);
    free(one[0]);
    free(one[1]);

    size_t len = 0;
    char *svg = lopt_plot_svg_row(p, 2, &len);
    CHECK(svg && strlen(svg) == len && count_str(svg, "<?xml") == 1 && count_str(svg, "<svg ") == 3 &&
              count_str(svg, "</svg>") == 3 && strstr(svg, "width=\"720\" height=\"250\""),
          "one SVG document holding 2 nested panels, 720x250");
    CHECK(svg && strstr(svg, "<svg x=\"0\" y=\"0\"") && strstr(svg, "<svg x=\"320\" y=\"0\""),
          "panels at x = 0 and 320");
    CHECK(svg && count_str(svg, "class=\"line\"") == 3, "a line per series over both panels");
    CHECK(svg && count_str(svg, "url(#plotarea0)") == 1 && count_str(svg, "url(#plotarea1)") == 1 &&
              count_str(svg, "id=\"plotarea0\"") == 1 && count_str(svg, "id=\"plotarea1\"") == 1 &&
              !strstr(svg, "\"plotarea\""),
          "a clip path of its own per panel");
    free(svg);
}

int main(void)
{
    test_png();
    test_plot();
    test_plot_row();
    return check_done("test_plot");
}
