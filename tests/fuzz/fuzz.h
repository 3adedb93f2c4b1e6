/* fuzz.h - what one fuzz input does to each reader, shared by the bounded seeded fuzz
 * in `make test` (tests/test_fuzz.c) and the libFuzzer harnesses (`make fuzz`,
 * tests/fuzz/fuzz_*.c). Header-only.
 *
 * A reader must refuse a bad input with a status and a message, never crash, and
 * what it accepts must be consistent. Random bytes rarely get past a checksum, so an
 * input whose first byte is odd has its checks repaired first (the .lopt size field
 * and CRC-32, the checkpoint CRC): the fields behind them get fuzzed too. */
#ifndef LOPT_FUZZ_H
#define LOPT_FUZZ_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/core.h"
#include "data/data.h"
#include "lopt/lopt_file.h"
#include "meta/meta.h"

static void fuzz_put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* .lopt: size field (offset 12) = n, CRC-32 of [0, n-4) in the last 4 bytes */
static void fuzz_repair_lopt(unsigned char *p, size_t n)
{
    if (n < 24) return;
    fuzz_put_le(p + 12, n, 8);
    fuzz_put_le(p + n - 4, (uint32_t)crc32(0L, p, (uInt)(n - 4)), 4);
}

/* checkpoint: u64 CRC-32 of [0, n-8) in the last 8 bytes */
static void fuzz_repair_ckpt(unsigned char *p, size_t n)
{
    if (n < 16) return;
    fuzz_put_le(p + n - 8, (uint32_t)crc32(0L, p, (uInt)(n - 8)), 8);
}

static int fuzz_write(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Decodes a .lopt image (a copy of exactly n bytes, so a sanitizer sees any read past
 * the end); an accepted one must re-encode to an image that decodes to the same.
 * Returns 1 accepted, 0 refused; aborts on an inconsistency. */
static int fuzz_one_lopt(const unsigned char *data, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) return 0;
    memcpy(p, data, n);
    if (n && (p[0] & 1)) fuzz_repair_lopt(p, n);
    lopt_arch a, a2;
    lopt_provenance pv, pv2;
    float *theta = NULL, *t2 = NULL;
    lopt_err err = {0};
    int ok = lopt_file_decode(p, n, &a, &theta, &pv, &err) == LOPT_OK;
    if (!ok && (theta || !err.msg[0] || strchr(err.msg, '\n'))) abort();   /* no half-reads */
    if (ok) {
        size_t np = lopt_arch_nparams(&a);
        for (size_t i = 0; i < np; i++)
            if (!isfinite(theta[i])) abort();
        unsigned char *img = NULL;
        size_t len = 0;
        if (lopt_file_encode(&a, theta, &pv, &img, &len, &err) != LOPT_OK ||
            lopt_file_decode(img, len, &a2, &t2, &pv2, &err) != LOPT_OK ||
            !lopt_arch_equal(&a, &a2) || memcmp(theta, t2, np * sizeof(float)) != 0)
            abort();
        free(img);
        lopt_free(t2);
    }
    lopt_free(theta);
    free(p);
    return ok;
}

/* Loads a checkpoint from the n bytes (written to path); an accepted one is saved
 * again. Returns 1 accepted, 0 refused. */
static int fuzz_one_ckpt(const unsigned char *data, size_t n, const char *path)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) return 0;
    memcpy(p, data, n);
    if (n && (p[0] & 1)) fuzz_repair_ckpt(p, n);
    int wrote = fuzz_write(path, p, n);
    free(p);
    if (!wrote) return 0;
    lopt_meta *m = NULL;
    lopt_err err = {0};
    int ok = lopt_meta_load(&m, path, &err) == LOPT_OK;
    if (!ok && (m || !err.msg[0])) abort();
    if (ok && lopt_meta_save(m, path, &err) != LOPT_OK) abort();
    if (ok) {
        /* the log as --log writes it and as the plots read it: whatever the rows hold */
        const lopt_meta_row *rows;
        size_t nrows = lopt_meta_rows(m, &rows);
        char *csv = lopt_meta_log_csv(rows, nrows);
        if (!csv || strncmp(csv, lopt_meta_csv_header, strlen(lopt_meta_csv_header)) != 0)
            abort();
        free(csv);
    }
    lopt_meta_free(m);
    return ok;
}

/* Reads the n bytes (written to path) as an IDX file; an odd first byte gzips them
 * first, so the inflating path sees well-formed gzip around fuzzed IDX. */
static int fuzz_one_idx(const unsigned char *data, size_t n, const char *path)
{
    if (n && (data[0] & 1)) {
        gzFile g = gzopen(path, "wb");
        if (!g) return 0;
        if (n > 1) gzwrite(g, data + 1, (unsigned)(n - 1));
        gzclose(g);
    } else if (!fuzz_write(path, data, n)) {
        return 0;
    }
    int nd, dims[4];
    unsigned char *out = NULL;
    lopt_err err = {0};
    int ok = lopt_idx_read(path, &nd, dims, &out, &err) == LOPT_OK;
    if (!ok && (out || !err.msg[0])) abort();
    if (ok) {
        size_t total = 1;
        for (int i = 0; i < nd; i++) total *= (size_t)dims[i];
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < total; i++) sink ^= out[i];   /* every byte readable */
        (void)sink;
    }
    free(out);
    return ok;
}

#endif
