/* idx.c - the IDX file reader (Yann LeCun's MNIST format, as Fashion-MNIST ships it),
 * plain or gzip-compressed.
 *
 * Format: a 4-byte magic 00 00 <type> <ndim>, then ndim big-endian u32 dimensions,
 * then the payload, row-major. Only type 0x08 (unsigned byte) with 1..4 dims is
 * accepted: it is all Fashion-MNIST uses. Left out: the other element types (int,
 * float, double), which no lopt dataset needs.
 *
 * The file is streamed (inflated through zlib's z_stream when it starts with the gzip
 * magic 1f 8b), so the payload buffer is allocated once, at the size the header
 * declares, after the header has been validated: a corrupt header cannot make us
 * allocate absurd amounts. Every failure is a one-line status, never a crash:
 * missing/unreadable file -> LOPT_EIO; bad magic, absurd dims, corrupt or truncated
 * gzip, short payload, bytes after the payload -> LOPT_EFORMAT. Concatenated gzip
 * members (valid gzip) are followed; anything else after the stream is refused.
 */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAX_ELEMS 1000000000ull  /* refuse headers claiming more (1e9 bytes) */
#define IDX_INBUF (1 << 16)

/* A byte source over an open file: either the raw bytes or their gzip inflation. */
typedef struct {
    FILE *f;
    const char *path;
    int gz;               /* 1: inflate through zs */
    int zs_live;          /* zs initialised (needs inflateEnd) */
    int member_done;      /* the current gzip member ended (Z_STREAM_END) */
    z_stream zs;
    unsigned char *in;    /* (IDX_INBUF) compressed input buffer, gz only */
} idx_src;

/* Refills the compressed input buffer. Returns the bytes read (0 at end of file),
 * or -1 after recording a read error in err. */
static long src_fill(idx_src *s, lopt_err *err)
{
    size_t r = fread(s->in, 1, IDX_INBUF, s->f);
    if (r == 0 && ferror(s->f)) {
        lopt_fail(err, LOPT_EIO, "cannot read %s: %s", s->path, strerror(errno));
        return -1;
    }
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)r;
    return (long)r;
}

/* Reads up to n bytes into buf; *got is how many were read, fewer than n only at the
 * end of the data. For gzip, the end of data means every member ended cleanly with
 * its CRC and length checked; a stream cut short, a corrupt one, or non-gzip bytes
 * after a member are format errors. */
static lopt_status src_read(idx_src *s, unsigned char *buf, size_t n, size_t *got,
                            lopt_err *err)
{
    *got = 0;
    if (!s->gz) {
        size_t r = fread(buf, 1, n, s->f);
        *got = r;
        if (r < n && ferror(s->f))
            return lopt_fail(err, LOPT_EIO, "cannot read %s: %s", s->path, strerror(errno));
        return LOPT_OK;
    }
    while (*got < n) {
        if (s->zs.avail_in == 0) {
            long r = src_fill(s, err);
            if (r < 0) return LOPT_EIO;
            if (r == 0) {
                if (s->member_done) return LOPT_OK;   /* clean end of the data */
                return lopt_fail(err, LOPT_EFORMAT,
                                 "%s: truncated gzip stream (file ends mid-stream)",
                                 s->path);
            }
        }
        if (s->member_done) {
            /* More bytes after a complete member: a further gzip member, or junk. */
            if (s->zs.next_in[0] != 0x1f ||
                (s->zs.avail_in >= 2 && s->zs.next_in[1] != 0x8b))
                return lopt_fail(err, LOPT_EFORMAT,
                                 "%s: trailing garbage after the gzip stream", s->path);
            if (inflateReset(&s->zs) != Z_OK)
                return lopt_fail(err, LOPT_EFORMAT, "%s: corrupt gzip stream", s->path);
            s->member_done = 0;
        }
        /* uInt is 32-bit: cap a single inflate call's output */
        size_t want = n - *got;
        if (want > (1u << 30)) want = 1u << 30;
        s->zs.next_out = buf + *got;
        s->zs.avail_out = (uInt)want;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        *got += want - s->zs.avail_out;
        if (rc == Z_STREAM_END) {
            s->member_done = 1;
        } else if (rc == Z_MEM_ERROR) {
            return lopt_fail(err, LOPT_ENOMEM, "out of memory inflating %s", s->path);
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
            return lopt_fail(err, LOPT_EFORMAT, "%s: corrupt gzip data (%s)", s->path,
                             s->zs.msg ? s->zs.msg : "invalid stream");
        }
        /* Z_OK / Z_BUF_ERROR: progress made or more input needed; loop refills. */
    }
    return LOPT_OK;
}

static void src_close(idx_src *s)
{
    if (s->zs_live) inflateEnd(&s->zs);
    free(s->in);
    if (s->f) fclose(s->f);
    memset(s, 0, sizeof *s);
}

static lopt_status src_open(idx_src *s, const char *path, lopt_err *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->f = fopen(path, "rb");
    if (!s->f)
        return lopt_fail(err, LOPT_EIO, "cannot open %s: %s", path, strerror(errno));
    int c0 = getc(s->f), c1 = c0 == EOF ? EOF : getc(s->f);
    if (ferror(s->f)) {
        lopt_status st =
            lopt_fail(err, LOPT_EIO, "cannot read %s: %s", path, strerror(errno));
        src_close(s);
        return st;
    }
    rewind(s->f);
    if (c0 == 0x1f && c1 == 0x8b) {
        s->gz = 1;
        s->in = malloc(IDX_INBUF);
        if (!s->in) {
            src_close(s);
            return lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s", path);
        }
        /* 16 + MAX_WBITS: expect a gzip wrapper and check its CRC32 and length */
        if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) {
            src_close(s);
            return lopt_fail(err, LOPT_ENOMEM, "cannot initialise zlib for %s", path);
        }
        s->zs_live = 1;
    }
    return LOPT_OK;
}

/* The header: magic, element type, dimensions (each checked before anything is
 * allocated); *total = the payload's bytes. */
static lopt_status read_header(idx_src *s, const char *path, int *nd, int dims[4],
                               uint64_t *total, lopt_err *err)
{
    unsigned char hdr[4 + 4 * 4];
    size_t got;
    lopt_status st = src_read(s, hdr, 4, &got, err);
    if (st != LOPT_OK) return st;
    if (got < 4)
        return lopt_fail(err, LOPT_EFORMAT, "%s: too short for an IDX header (%zu bytes)",
                         path, got);
    if (hdr[0] != 0 || hdr[1] != 0)
        return lopt_fail(err, LOPT_EFORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)",
                         path, hdr[0], hdr[1], hdr[2], hdr[3]);
    if (hdr[2] != 0x08)
        return lopt_fail(err, LOPT_EFORMAT,
                         "%s: IDX element type 0x%02x, only unsigned bytes (0x08) supported",
                         path, hdr[2]);
    *nd = hdr[3];
    if (*nd < 1 || *nd > 4)
        return lopt_fail(err, LOPT_EFORMAT, "%s: IDX with %d dimensions, want 1..4", path,
                         *nd);
    st = src_read(s, hdr + 4, 4 * (size_t)*nd, &got, err);
    if (st != LOPT_OK) return st;
    if (got < 4 * (size_t)*nd)
        return lopt_fail(err, LOPT_EFORMAT, "%s: truncated IDX header", path);
    *total = 1;
    for (int i = 0; i < *nd; i++) {
        const unsigned char *p = hdr + 4 + 4 * i;
        uint64_t d = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 |
                     p[3];   /* big-endian */
        /* each d < 2^32 and total <= 1e9 < 2^30 before multiplying: no overflow */
        *total *= d;
        if (d > INT_MAX || *total > IDX_MAX_ELEMS)
            return lopt_fail(err, LOPT_EFORMAT,
                             "%s: absurd IDX dimensions (dim %d = %llu, over %llu elements)",
                             path, i, (unsigned long long)d,
                             (unsigned long long)IDX_MAX_ELEMS);
        dims[i] = (int)d;
    }
    for (int i = *nd; i < 4; i++) dims[i] = 1;
    return LOPT_OK;
}

/* The payload, total bytes, into *buf (malloc'ed; NULL on failure). The buffer grows
 * with the data that actually arrives (doubling, up to what the header declares),
 * so a short file claiming 1e9 bytes costs no 1 GB. */
static lopt_status read_payload(idx_src *s, const char *path, uint64_t total,
                                unsigned char **out, lopt_err *err)
{
    size_t cap = total < ((size_t)1 << 20) ? (size_t)total : (size_t)1 << 20, got = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    lopt_status st = LOPT_OK;
    while (buf && st == LOPT_OK) {
        size_t r = 0;
        st = src_read(s, buf + got, cap - got, &r, err);
        got += r;
        if (st != LOPT_OK || got < cap || cap == total) break;
        size_t ncap = cap * 2 < total ? cap * 2 : (size_t)total;
        unsigned char *nb = realloc(buf, ncap);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap = ncap;
    }
    if (!buf)
        return lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s (%llu bytes)", path,
                         (unsigned long long)total);
    if (st == LOPT_OK && got < total)
        st = lopt_fail(err, LOPT_EFORMAT,
                       "%s: truncated payload (header declares %llu bytes, file has %zu)",
                       path, (unsigned long long)total, got);
    if (st != LOPT_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return LOPT_OK;
}

/* The data must end with the payload; for gzip this also reaches and checks the
 * trailer. */
static lopt_status check_end(idx_src *s, const char *path, uint64_t total, lopt_err *err)
{
    unsigned char extra;
    size_t got;
    lopt_status st = src_read(s, &extra, 1, &got, err);
    if (st == LOPT_OK && got)
        st = lopt_fail(err, LOPT_EFORMAT,
                       "%s: trailing data after the %llu bytes the header declares", path,
                       (unsigned long long)total);
    return st;
}

lopt_status lopt_idx_read(const char *path, int *ndim, int dims[4],
                          unsigned char **data, lopt_err *err)
{
    *data = NULL;
    *ndim = 0;
    idx_src s;
    lopt_status st = src_open(&s, path, err);
    if (st != LOPT_OK) return st;
    int nd = 0;
    uint64_t total = 0;
    unsigned char *buf = NULL;
    st = read_header(&s, path, &nd, dims, &total, err);
    if (st == LOPT_OK) st = read_payload(&s, path, total, &buf, err);
    if (st == LOPT_OK) st = check_end(&s, path, total, err);
    src_close(&s);
    if (st != LOPT_OK) {
        free(buf);
        return st;
    }
    *ndim = nd;
    *data = buf;
    return LOPT_OK;
}
