/* core.c - errors, allocation, the counter-based RNG, time, atomic files. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

lopt_status lopt_fail(lopt_err *err, lopt_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void lopt_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lopt: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

void *lopt_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "lopt: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

float *lopt_floats(size_t n)
{
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "lopt: out of memory (%zu floats)\n", n);
        abort();
    }
    memset(p, 0, bytes);
    return p;
}

void lopt_free(void *p) { free(p); }

void openblas_set_num_threads(int num_threads);   /* OpenBLAS's API (no cblas.h here) */

void lopt_threads_init(void)
{
    /* idempotent; called from the main thread before any parallel region */
    static int done = 0;
    if (done) return;
    openblas_set_num_threads(1);
    done = 1;
}

/* A keyed mix of the counter (splitmix64's finaliser applied to a Weyl sequence over
 * the key); three rounds decorrelate neighbouring (seed, stream, index) triples. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t lopt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = mix64(k ^ (stream * 0xd1b54a32d192ed03ULL));
    return mix64(k + index * 0x9e3779b97f4a7c15ULL);
}

double lopt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (double)(lopt_rng_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

double lopt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    double u1 = 1.0 - lopt_rng_uniform(seed, stream, 2 * index);  /* (0, 1] */
    double u2 = lopt_rng_uniform(seed, stream, 2 * index + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void lopt_rng_fill_normal(float *x, size_t n, float std, uint64_t seed,
                          uint64_t stream, uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        x[i] = std * (float)lopt_rng_normal(seed, stream, offset + i);
}

void lopt_sb_printf(lopt_sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        LOPT_ASSERT(k >= 0);
        if (b->s && b->len + (size_t)k < b->cap) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->len + (size_t)k) cap *= 2;
        char *p = realloc(b->s, cap);
        LOPT_ASSERT(p);
        b->s = p;
        b->cap = cap;
    }
}

double lopt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lopt_status lopt_write_atomic(const char *path, const void *data, size_t n,
                              lopt_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lopt_fail(err, LOPT_EUSAGE, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", path, strerror(errno));
    const unsigned char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return LOPT_OK;
}

lopt_status lopt_read_file(const char *path, unsigned char **data, size_t *n,
                           lopt_err *err)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lopt_fail(err, LOPT_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s", path);
    }
    for (;;) {
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return lopt_fail(err, LOPT_EIO, "cannot read %s", path);
    }
    *data = buf;
    *n = len;
    return LOPT_OK;
}
