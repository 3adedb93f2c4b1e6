/* lopt_file.c - encoding and decoding the .lopt file (layout in lopt_file.h,
 * docs/design.md section 5). Serialised byte by byte so the file is the same on every
 * host; decoding goes through a bounds-checked cursor, so a hostile or damaged
 * file can make it fail but never read outside the buffer.
 * Version 2 adds the form fields and the horizon; version 1 is still read.
 * Left out: streaming (files are small and read whole), writing version 1. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "lopt/lopt_file.h"

_Static_assert(sizeof(float) == 4 && FLT_RADIX == 2, "the .lopt format needs binary32 floats");

static const unsigned char MAGIC[8] = {0x89, 'L', 'O', 'P', 'T', '\r', '\n', 0x1a};
enum {
    HEADER_BYTES = 20,   /* magic, version, size */
    /* the smallest well-formed file: header, nmom 0, ntime 0, nhidden, hidden,
     * two multipliers, ntheta, four empty strings, outer_steps, crc */
    MIN_BYTES_V1 = HEADER_BYTES + 4 + 4 + 4 + 4 + 4 + 4 + 8 + 4 * 4 + 8 + 4,
    /* version 2: plus form, nominal_dir, nominal_mom, nominal_step and horizon */
    MIN_BYTES_V2 = MIN_BYTES_V1 + 4 * 4 + 8,
};

/* ---- encoding ------------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len;
} wbuf;   /* sized exactly beforehand: puts never overflow */

static void put_u32(wbuf *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b->p[b->len++] = (unsigned char)(v >> (8 * i));
}
static void put_u64(wbuf *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b->p[b->len++] = (unsigned char)(v >> (8 * i));
}
static void put_f32(wbuf *b, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}
static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static int field_ok(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

/* The file's own ranges for the two output multipliers, beyond finiteness: a step
 * multiplier above 1 (the presets: 0.001) or an exponent multiplier above 1 only
 * blows training up, and a non-positive step multiplier turns descent around. */
static lopt_status file_ranges(const lopt_arch *a, lopt_err *err)
{
    if (!(a->step_mult > 0 && a->step_mult <= 1))
        return lopt_fail(err, LOPT_EFORMAT, "step multiplier %g outside (0, 1]", a->step_mult);
    if (!(a->exp_mult >= 0 && a->exp_mult <= 1))
        return lopt_fail(err, LOPT_EFORMAT, "exponent multiplier %g outside [0, 1]",
                         a->exp_mult);
    return LOPT_OK;
}

size_t lopt_file_max_bytes(void)
{
    lopt_arch a = {.nmom = LOPT_MAX_MOM, .ntime = LOPT_MAX_TIME, .nhidden = LOPT_MAX_LAYERS,
                   .hidden = 4096, .form = LOPT_FORM_NOMINAL};
    return HEADER_BYTES + 4 + 4 * LOPT_MAX_MOM + 4 + 4 * LOPT_MAX_TIME + 4 + 4 + 4 + 4 + 4 * 4 +
           8 + 4 * lopt_arch_nparams(&a) + 3 * (4 + LOPT_PROV_NAME - 1) + 8 + 8 +
           4 + LOPT_PROV_NOTE - 1 + 4;
}

lopt_status lopt_file_encode(const lopt_arch *a, const float *theta, const lopt_provenance *p,
                             unsigned char **data, size_t *n, lopt_err *err)
{
    *data = NULL;
    *n = 0;
    lopt_err verr;
    if (lopt_arch_validate(a, &verr) != LOPT_OK || file_ranges(a, &verr) != LOPT_OK)
        return lopt_fail(err, LOPT_EUSAGE, "cannot save learned optimizer: %s", verr.msg);
    size_t np = lopt_arch_nparams(a);
    for (size_t i = 0; i < np; i++)
        if (!isfinite(theta[i]))
            return lopt_fail(err, LOPT_EUSAGE,
                             "cannot save learned optimizer: theta[%zu] is not finite", i);
    static const lopt_provenance none;
    if (!p) p = &none;
    if (!field_ok(p->task, sizeof p->task) || !field_ok(p->estimator, sizeof p->estimator) ||
        !field_ok(p->outer_loss, sizeof p->outer_loss) || !field_ok(p->note, sizeof p->note))
        return lopt_fail(err, LOPT_EUSAGE, "cannot save learned optimizer: provenance "
                         "string not terminated");
    if (p->horizon > (uint64_t)INT64_MAX)
        return lopt_fail(err, LOPT_EUSAGE, "cannot save learned optimizer: horizon %llu out "
                         "of range", (unsigned long long)p->horizon);

    size_t size = HEADER_BYTES + 4 + 4 * (size_t)a->nmom + 4 + 4 * (size_t)a->ntime + 4 + 4 +
                  4 + 4 + 4 * 4 + 8 + 4 * np + 4 + strlen(p->task) + 4 + strlen(p->estimator) +
                  8 + 8 + 4 + strlen(p->outer_loss) + 4 + strlen(p->note) + 4;
    wbuf b = {malloc(size), 0};
    if (!b.p) return lopt_fail(err, LOPT_ENOMEM, "out of memory encoding a .lopt file");
    memcpy(b.p, MAGIC, sizeof MAGIC);
    b.len = sizeof MAGIC;
    put_u32(&b, LOPT_FILE_VERSION);
    put_u64(&b, (uint64_t)size);
    put_u32(&b, (uint32_t)a->nmom);
    for (int k = 0; k < a->nmom; k++) put_f32(&b, a->beta[k]);
    put_u32(&b, (uint32_t)a->ntime);
    for (int j = 0; j < a->ntime; j++) put_f32(&b, a->tau[j]);
    put_u32(&b, (uint32_t)a->nhidden);
    put_u32(&b, (uint32_t)a->hidden);
    put_f32(&b, a->step_mult);
    put_f32(&b, a->exp_mult);
    put_u32(&b, (uint32_t)a->form);
    put_u32(&b, (uint32_t)a->nominal_dir);
    put_u32(&b, (uint32_t)a->nominal_mom);
    put_f32(&b, a->nominal_step);
    put_u64(&b, (uint64_t)np);
    for (size_t i = 0; i < np; i++) put_f32(&b, theta[i]);
    put_str(&b, p->task);
    put_str(&b, p->estimator);
    put_u64(&b, p->outer_steps);
    put_u64(&b, p->horizon);
    put_str(&b, p->outer_loss);
    put_str(&b, p->note);
    put_u32(&b, lopt_crc32(b.p, b.len));
    LOPT_ASSERT(b.len == size);
    *data = b.p;
    *n = size;
    return LOPT_OK;
}

/* ---- decoding ------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    int overrun;   /* a read went past len: every later read returns zeros */
} rbuf;

static const unsigned char *take(rbuf *b, size_t k)
{
    if (b->overrun || k > b->len - b->pos) {
        b->overrun = 1;
        return NULL;
    }
    const unsigned char *q = b->p + b->pos;
    b->pos += k;
    return q;
}
static uint32_t get_u32(rbuf *b)
{
    const unsigned char *q = take(b, 4);
    if (!q) return 0;
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}
static uint64_t get_u64(rbuf *b)
{
    uint64_t lo = get_u32(b), hi = get_u32(b);
    return lo | hi << 32;
}
static float get_f32(rbuf *b)
{
    uint32_t v = get_u32(b);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
/* a length-prefixed string into dst[cap]; returns 0 if too long or holding a NUL */
static int get_str(rbuf *b, char *dst, size_t cap)
{
    uint32_t n = get_u32(b);
    if (b->overrun || n >= cap) return 0;
    const unsigned char *q = take(b, n);
    if (!q || memchr(q, 0, n)) return 0;
    memcpy(dst, q, n);
    dst[n] = 0;
    return 1;
}

static lopt_status decode_body(rbuf *b, uint32_t version, lopt_arch *a, float **theta,
                               lopt_provenance *p, lopt_err *err)
{
    const char *overrun = "corrupt: fields run past the end of the file";
    uint32_t nmom = get_u32(b);
    if (nmom > LOPT_MAX_MOM)
        return lopt_fail(err, LOPT_EFORMAT, "architecture out of range (%u momenta, at most %d)",
                         nmom, LOPT_MAX_MOM);
    a->nmom = (int)nmom;
    for (uint32_t k = 0; k < nmom; k++) a->beta[k] = get_f32(b);
    uint32_t ntime = get_u32(b);
    if (ntime > LOPT_MAX_TIME)
        return lopt_fail(err, LOPT_EFORMAT,
                         "architecture out of range (%u time features, at most %d)", ntime,
                         LOPT_MAX_TIME);
    a->ntime = (int)ntime;
    for (uint32_t j = 0; j < ntime; j++) a->tau[j] = get_f32(b);
    uint32_t nhidden = get_u32(b), hidden = get_u32(b);
    if (nhidden > LOPT_MAX_LAYERS || hidden > 4096)
        return lopt_fail(err, LOPT_EFORMAT, "architecture out of range (%u hidden layers of %u)",
                         nhidden, hidden);
    a->nhidden = (int)nhidden;
    a->hidden = (int)hidden;
    a->step_mult = get_f32(b);
    a->exp_mult = get_f32(b);
    if (version >= 2) {   /* version 1: the mlp form, nominal fields zero */
        uint32_t form = get_u32(b), dir = get_u32(b), mom = get_u32(b);
        a->nominal_step = get_f32(b);
        if (b->overrun) return lopt_fail(err, LOPT_EFORMAT, "%s", overrun);
        /* the u32s are checked before they become ints; lopt_arch_validate checks
         * how they go together */
        if (form > LOPT_FORM_NOMINAL)
            return lopt_fail(err, LOPT_EFORMAT, "unknown form %u (0 mlp, 1 nominal)", form);
        if (dir > LOPT_NOMINAL_ADAM)
            return lopt_fail(err, LOPT_EFORMAT, "unknown nominal direction %u (0 gradient, "
                             "1 momentum, 2 adam)", dir);
        if (mom > LOPT_MAX_MOM)
            return lopt_fail(err, LOPT_EFORMAT, "nominal momentum %u out of range", mom);
        a->form = (lopt_form)form;
        a->nominal_dir = (lopt_nominal_dir)dir;
        a->nominal_mom = (int)mom;
    }
    if (b->overrun) return lopt_fail(err, LOPT_EFORMAT, "%s", overrun);
    lopt_status st = lopt_arch_validate(a, err);
    if (st == LOPT_OK) st = file_ranges(a, err);
    if (st != LOPT_OK) return st;

    uint64_t ntheta = get_u64(b);
    size_t want = lopt_arch_nparams(a);
    if (b->overrun) return lopt_fail(err, LOPT_EFORMAT, "%s", overrun);
    if (ntheta != (uint64_t)want)
        return lopt_fail(err, LOPT_EFORMAT, "theta has %llu values, the architecture needs %zu",
                         (unsigned long long)ntheta, want);
    if (want > (b->len - b->pos) / 4) return lopt_fail(err, LOPT_EFORMAT, "%s", overrun);
    float *th = lopt_try_floats(want);
    if (!th) return lopt_fail(err, LOPT_ENOMEM, "out of memory for %zu weights", want);
    for (size_t i = 0; i < want; i++) {
        th[i] = get_f32(b);
        if (!isfinite(th[i])) {
            lopt_free(th);
            return lopt_fail(err, LOPT_EFORMAT, "theta[%zu] is not finite", i);
        }
    }

    int ok = get_str(b, p->task, sizeof p->task) &&
             get_str(b, p->estimator, sizeof p->estimator);
    p->outer_steps = get_u64(b);
    p->horizon = version >= 2 ? get_u64(b) : 0;
    if (ok && !b->overrun && p->horizon > (uint64_t)INT64_MAX) {
        lopt_free(th);
        return lopt_fail(err, LOPT_EFORMAT, "horizon %llu out of range",
                         (unsigned long long)p->horizon);
    }
    ok = ok && get_str(b, p->outer_loss, sizeof p->outer_loss) &&
         get_str(b, p->note, sizeof p->note);
    if (!ok || b->overrun) {
        lopt_free(th);
        if (b->overrun) return lopt_fail(err, LOPT_EFORMAT, "%s", overrun);
        return lopt_fail(err, LOPT_EFORMAT, "corrupt: provenance string too long or not text");
    }
    if (b->pos != b->len) {
        lopt_free(th);
        return lopt_fail(err, LOPT_EFORMAT, "corrupt: fields end %zu bytes before the checksum",
                         b->len - b->pos);
    }
    p->file_version = version;
    *theta = th;
    return LOPT_OK;
}

lopt_status lopt_file_decode(const unsigned char *data, size_t n, lopt_arch *a, float **theta,
                             lopt_provenance *p, lopt_err *err)
{
    lopt_provenance scratch;
    lopt_provenance *pp = p ? p : &scratch;
    *theta = NULL;
    memset(a, 0, sizeof *a);
    memset(pp, 0, sizeof *pp);

    if (n == 0) return lopt_fail(err, LOPT_EFORMAT, "not a .lopt file (empty)");
    if (memcmp(data, MAGIC, n < sizeof MAGIC ? n : sizeof MAGIC) != 0)
        return lopt_fail(err, LOPT_EFORMAT, "not a .lopt file (bad magic)");
    if (n < HEADER_BYTES)
        return lopt_fail(err, LOPT_EFORMAT, "truncated .lopt file (%zu bytes)", n);
    rbuf h = {data, n, sizeof MAGIC, 0};
    uint32_t version = get_u32(&h);
    if (version < LOPT_FILE_VERSION_OLDEST || version > LOPT_FILE_VERSION)
        return lopt_fail(err, LOPT_EFORMAT, "unsupported .lopt format version %u (this build "
                         "reads versions %u to %u)", version, LOPT_FILE_VERSION_OLDEST,
                         LOPT_FILE_VERSION);
    uint64_t size = get_u64(&h);
    const int min_bytes = version == 1 ? MIN_BYTES_V1 : MIN_BYTES_V2;
    if (size < (uint64_t)min_bytes)
        return lopt_fail(err, LOPT_EFORMAT, "corrupt: size field %llu below the minimum %d",
                         (unsigned long long)size, min_bytes);
    if (size > (uint64_t)n)
        return lopt_fail(err, LOPT_EFORMAT, "truncated .lopt file (%zu of %llu bytes)", n,
                         (unsigned long long)size);
    if (size < (uint64_t)n)
        return lopt_fail(err, LOPT_EFORMAT, "%llu trailing bytes after the .lopt data",
                         (unsigned long long)(n - size));
    rbuf c = {data, n, n - 4, 0};
    if (get_u32(&c) != lopt_crc32(data, n - 4))
        return lopt_fail(err, LOPT_EFORMAT, "corrupt: checksum mismatch");

    rbuf b = {data, n - 4, HEADER_BYTES, 0};
    lopt_status st = decode_body(&b, version, a, theta, pp, err);
    if (st != LOPT_OK) {
        memset(a, 0, sizeof *a);
        memset(pp, 0, sizeof *pp);
    }
    return st;
}

lopt_status lopt_file_write(const char *path, const lopt_arch *a, const float *theta,
                            const lopt_provenance *p, lopt_err *err)
{
    unsigned char *data;
    size_t n;
    lopt_status st = lopt_file_encode(a, theta, p, &data, &n, err);
    if (st != LOPT_OK) return st;
    st = lopt_write_atomic(path, data, n, err);
    free(data);
    return st;
}

lopt_status lopt_file_read(const char *path, lopt_arch *a, float **theta, lopt_provenance *p,
                           lopt_err *err)
{
    *theta = NULL;
    memset(a, 0, sizeof *a);
    if (p) memset(p, 0, sizeof *p);
    unsigned char *data;
    size_t n;
    lopt_status st = lopt_read_file_max(path, lopt_file_max_bytes(), MAGIC, sizeof MAGIC,
                                        "a .lopt file", &data, &n, err);
    if (st != LOPT_OK) return st;
    lopt_err derr = {0};
    st = lopt_file_decode(data, n, a, theta, p, &derr);
    free(data);
    if (st != LOPT_OK) return lopt_fail(err, st, "%.200s: %.300s", path, derr.msg);
    return LOPT_OK;
}

void lopt_provenance_set(char *field, size_t cap, const char *src)
{
    LOPT_ASSERT(cap > 0);
    size_t k = src ? strlen(src) : 0;
    if (k >= cap) k = cap - 1;
    if (k) memcpy(field, src, k);
    field[k] = 0;
}
