/* out.c - the output toolkit (out.h): JSON values, XML text, paths in an output
 * directory, CRC-32. */
#define _POSIX_C_SOURCE 200809L
#include "core/out.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

void lopt_json_num(lopt_sbuf *b, double v)
{
    if (isfinite(v)) lopt_sb_printf(b, "%.8g", v);
    else lopt_sb_printf(b, "null");
}

void lopt_json_str(lopt_sbuf *b, const char *s)
{
    lopt_sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') lopt_sb_printf(b, "\\%c", *p);
        else if (*p < 0x20) lopt_sb_printf(b, "\\u%04x", *p);
        else lopt_sb_printf(b, "%c", *p);
    }
    lopt_sb_printf(b, "\"");
}

void lopt_json_nums(lopt_sbuf *b, const double *v, int n)
{
    lopt_sb_printf(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) lopt_sb_printf(b, ", ");
        lopt_json_num(b, v[i]);
    }
    lopt_sb_printf(b, "]");
}

void lopt_xml_text(lopt_sbuf *b, const char *s)
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

lopt_status lopt_path_join(char *out, size_t cap, const char *dir, const char *name,
                           lopt_err *err)
{
    if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s/%s", dir, name);
    return LOPT_OK;
}

lopt_status lopt_write_in(const char *dir, const char *name, const void *data, size_t n,
                          lopt_err *err)
{
    char path[4096];
    lopt_status st = lopt_path_join(path, sizeof path, dir, name, err);
    return st != LOPT_OK ? st : lopt_write_atomic(path, data, n, err);
}

lopt_status lopt_write_sb_in(const char *dir, const char *name, lopt_sbuf *b, lopt_err *err)
{
    lopt_status st = lopt_write_in(dir, name, b->s ? b->s : "", b->len, err);
    free(b->s);
    memset(b, 0, sizeof *b);
    return st;
}

lopt_status lopt_outdir_create(const char *dir, lopt_err *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s", dir);
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != 0) continue;
        char saved = *c;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return lopt_fail(err, LOPT_EIO, "cannot create directory %s: %s", p,
                             strerror(errno));
        *c = saved;
        if (!saved) break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lopt_fail(err, LOPT_EIO, "cannot create directory %s: not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return lopt_fail(err, LOPT_EIO, "cannot write into %s: %s", dir, strerror(errno));
    return LOPT_OK;
}

uint32_t lopt_crc32(const void *data, size_t n)
{
    const unsigned char *p = data;
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (size_t)UINT_MAX ? UINT_MAX : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}
