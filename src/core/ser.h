/* ser.h - little-endian serialisation into a growing buffer and bounds-checked
 * reading back, for checkpoints. Header-only (static inline). A reader that runs
 * past its end sets `bad` and returns zeros from then on, so a decoder can read a
 * whole record and check once. */
#ifndef LOPT_SER_H
#define LOPT_SER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct {
    unsigned char *p;
    size_t len, cap;
} ser_out;

static inline void ser_bytes(ser_out *o, const void *src, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n) cap *= 2;
        o->p = lopt_xrealloc(o->p, cap);
        o->cap = cap;
    }
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static inline void ser_u64(ser_out *o, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    ser_bytes(o, b, 8);
}

static inline void ser_f64(ser_out *o, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    ser_u64(o, u);
}

static inline void ser_f32s(ser_out *o, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                              (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        ser_bytes(o, b, 4);
    }
}

static inline void ser_f64s(ser_out *o, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) ser_f64(o, v[i]);
}

static inline void ser_blob(ser_out *o, const void *src, size_t n)
{
    ser_u64(o, n);
    ser_bytes(o, src, n);
}

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    int bad;
} ser_in;

static inline const unsigned char *ser_take(ser_in *in, size_t n)
{
    if (in->bad || n > in->len - in->pos) {
        in->bad = 1;
        return NULL;
    }
    const unsigned char *r = in->p + in->pos;
    in->pos += n;
    return r;
}

static inline uint64_t ser_get_u64(ser_in *in)
{
    const unsigned char *b = ser_take(in, 8);
    uint64_t v = 0;
    if (b)
        for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static inline double ser_get_f64(ser_in *in)
{
    uint64_t u = ser_get_u64(in);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

static inline void ser_get_f32s(ser_in *in, float *v, size_t n)
{
    const unsigned char *b = ser_take(in, 4 * n);
    if (!b) {
        memset(v, 0, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        memcpy(&v[i], &u, 4);
    }
}

static inline void ser_get_f64s(ser_in *in, double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) v[i] = ser_get_f64(in);
}

/* a length-prefixed blob; returns a pointer into the input (NULL if bad) */
static inline const unsigned char *ser_get_blob(ser_in *in, size_t *n)
{
    uint64_t len = ser_get_u64(in);
    *n = (size_t)len;
    return ser_take(in, (size_t)len);
}

#endif
