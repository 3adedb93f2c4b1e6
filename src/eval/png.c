/* png.c - an 8-bit RGB image as a PNG (plot.h): filter type 0 on every row, one
 * zlib stream (PNG spec, ISO/IEC 15948, sections 5 and 11). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/out.h"
#include "eval/plot.h"

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
    put_u32(p + 8 + n, lopt_crc32(p + 4, n + 4));
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

