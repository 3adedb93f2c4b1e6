/* test_fuzz.c - a bounded, seeded mutation fuzz of the three binary readers, run by
 * `make test`: the .lopt decoder, the checkpoint loader and the IDX reader, from seed
 * inputs built here (every preset's .lopt, the version-1 fixture, checkpoints of
 * four estimators, plain and gzip IDX files). Mutations: bit flips, interesting
 * bytes and 32/64-bit values, truncation, extension, splices of two seeds, chunk
 * copies; half the inputs get their checksums repaired (tests/fuzz/fuzz.h) so the
 * fields behind them are reached. Passing means no crash, no sanitizer report and no
 * inconsistency (fuzz.h aborts on one); the counts are printed.
 * LOPT_FUZZ_SEED (default 11) and LOPT_FUZZ_SECONDS (default 1 per reader) vary
 * it; the libFuzzer harnesses (make fuzz) are the open-ended version. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fuzz/fuzz.h"
#include "lopt/mlp_lopt.h"

typedef struct {
    unsigned char *p;
    size_t n;
} blob;

static uint64_t seed = 11, draws = 0;
static uint64_t rnd(uint64_t k) { return lopt_rng_u64(seed, LOPT_STREAM_TEST, draws++) % k; }

static blob read_blob(const char *path)
{
    blob b = {NULL, 0};
    lopt_err err;
    if (lopt_read_file(path, &b.p, &b.n, &err) != LOPT_OK) {
        fprintf(stderr, "test setup: %s\n", err.msg);
        exit(1);
    }
    return b;
}

/* one mutated copy of seeds[rnd] (caller frees .p) */
static blob mutate(const blob *seeds, int nseeds)
{
    const blob *s = &seeds[rnd((uint64_t)nseeds)];
    size_t cap = s->n + 4096;
    blob m = {malloc(cap), s->n};
    LOPT_ASSERT(m.p);
    memcpy(m.p, s->p, s->n);
    static const uint64_t interesting[] = {0, 1, 2, 7, 8, 16, 127, 128, 255, 256, 4095,
                                           65535, 0x7fffffff, 0x80000000, 0xffffffff,
                                           0x7fffffffffffffffULL, 0xffffffffffffffffULL};
    int rounds = 1 + (int)rnd(4);
    for (int r = 0; r < rounds; r++) {
        size_t at = m.n ? (size_t)rnd(m.n) : 0;
        switch (rnd(8)) {
        case 0:   /* bit flip */
            if (m.n) m.p[at] ^= (unsigned char)(1u << rnd(8));
            break;
        case 1:   /* a random byte */
            if (m.n) m.p[at] = (unsigned char)rnd(256);
            break;
        case 2:   /* an interesting 32- or 64-bit value */
        case 3: {
            int w = rnd(2) ? 4 : 8;
            uint64_t v = interesting[rnd(sizeof interesting / sizeof *interesting)];
            if (m.n >= (size_t)w) fuzz_put_le(m.p + rnd(m.n - (size_t)w + 1), v, w);
            break;
        }
        case 4:   /* truncate */
            m.n = m.n ? (size_t)rnd(m.n) : 0;
            break;
        case 5: {   /* extend with random bytes */
            size_t k = 1 + (size_t)rnd(64);
            if (m.n + k <= cap)
                for (size_t i = 0; i < k; i++) m.p[m.n++] = (unsigned char)rnd(256);
            break;
        }
        case 6: {   /* splice: the tail of another seed */
            const blob *o = &seeds[rnd((uint64_t)nseeds)];
            size_t from = o->n ? (size_t)rnd(o->n) : 0, k = o->n - from;
            if (at + k <= cap) {
                memcpy(m.p + at, o->p + from, k);
                m.n = at + k;
            }
            break;
        }
        default: {   /* copy a chunk within */
            size_t k = 1 + (size_t)rnd(32);
            if (m.n > k) memmove(m.p + rnd(m.n - k), m.p + rnd(m.n - k), k);
            break;
        }
        }
    }
    return m;
}

typedef int (*one_fn)(const unsigned char *p, size_t n, const char *path);
static int lopt_one(const unsigned char *p, size_t n, const char *path)
{
    (void)path;
    return fuzz_one_lopt(p, n);
}

static void campaign(const char *what, const blob *seeds, int nseeds, one_fn one,
                     const char *path, double seconds, long max_inputs)
{
    long inputs = 0, accepted = 0;
    for (int i = 0; i < nseeds; i++) CHECK(one(seeds[i].p, seeds[i].n, path), "%s: seed %d "
                                           "refused", what, i);
    /* a budget of CPU time, so a loaded machine runs the same campaign, only slower */
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    while (inputs < max_inputs && (double)clock() / CLOCKS_PER_SEC - t0 < seconds) {
        blob m = mutate(seeds, nseeds);
        accepted += one(m.p, m.n, path);
        inputs++;
        free(m.p);
    }
    double used = (double)clock() / CLOCKS_PER_SEC - t0;
    printf("ok   fuzz %s: %ld inputs (seed %llu, %.1f s of CPU): %ld accepted, %ld refused, "
           "0 crashes\n", what, inputs, (unsigned long long)seed, used, accepted,
           inputs - accepted);
    CHECK(inputs >= 50, "fuzz %s: only %ld inputs in the time", what, inputs);
}

/* a finished small checkpoint of estimator est on the quadratic */
static blob make_ckpt(const char *est, const char *path)
{
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    snprintf(c.task, sizeof c.task, "quadratic");
    c.estimator = (lopt_est_kind)lopt_est_parse(est);
    c.K = 3;
    c.samples = 2;
    c.horizon = 8;
    c.threads = 1;
    c.loss_clip = 0;
    if (c.estimator == LOPT_EST_MERGED) c.pool = 2;
    lopt_meta *m;
    lopt_err err = {0};
    LOPT_ASSERT(lopt_meta_create(&m, &c, &err) == LOPT_OK);
    for (int i = 0; i < 3; i++) {
        lopt_meta_row row;
        LOPT_ASSERT(lopt_meta_step(m, &row, &err) == LOPT_OK);
    }
    LOPT_ASSERT(lopt_meta_save(m, path, &err) == LOPT_OK);
    lopt_meta_free(m);
    return read_blob(path);
}

static blob idx_seed(int ndim, const uint32_t *dims, size_t payload)
{
    blob b = {malloc(4 + 4 * (size_t)ndim + payload + 1), 0};
    b.p[0] = 0;   /* an even first byte: written as it is */
    b.p[1] = 0;
    b.p[2] = 0x08;
    b.p[3] = (unsigned char)ndim;
    b.n = 4;
    for (int i = 0; i < ndim; i++, b.n += 4)
        for (int k = 0; k < 4; k++) b.p[b.n + (size_t)k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    for (size_t i = 0; i < payload; i++) b.p[b.n++] = (unsigned char)(i * 37);
    return b;
}

int main(void)
{
    (void)check_close;
    if (getenv("LOPT_FUZZ_SEED")) seed = strtoull(getenv("LOPT_FUZZ_SEED"), NULL, 10);
    double seconds = getenv("LOPT_FUZZ_SECONDS") ? atof(getenv("LOPT_FUZZ_SECONDS")) : 1.0;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_fuzz.%ld", (long)getpid());
    LOPT_ASSERT(mkdir(dir, 0700) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/input", dir);

    /* .lopt: the presets (v2) and the version-1 fixture */
    blob lopts[4];
    const char *presets[] = {"paper", "lo", "nominal"};
    for (int i = 0; i < 3; i++) {
        lopt_arch a;
        lopt_arch_preset(&a, presets[i], NULL);
        float *theta = lopt_floats(lopt_arch_nparams(&a));
        lopt_theta_init(&a, 7, theta);
        lopt_provenance p = {0};
        lopt_provenance_set(p.task, sizeof p.task, "fmnist8-mlp");
        lopt_provenance_set(p.note, sizeof p.note, "fuzz seed");
        p.horizon = 100;
        LOPT_ASSERT(lopt_file_encode(&a, theta, &p, &lopts[i].p, &lopts[i].n, NULL) == LOPT_OK);
        lopt_free(theta);
    }
    char v1[600];
    snprintf(v1, sizeof v1, "%s/tests/data/v1-fmnist8-mlp.lopt",
             getenv("LOPT_SRCDIR") ? getenv("LOPT_SRCDIR") : ".");
    lopts[3] = read_blob(v1);
    campaign(".lopt", lopts, 4, lopt_one, path, seconds, 200000);

    /* checkpoints: truncated (es, pes, nres) and pooled merged */
    blob ckpts[4];
    const char *ests[] = {"es", "pes", "nres", "merged"};
    for (int i = 0; i < 4; i++) ckpts[i] = make_ckpt(ests[i], path);
    campaign("checkpoint", ckpts, 4, fuzz_one_ckpt, path, seconds, 20000);

    /* IDX: 1, 2 and 3 dimensions; an odd first byte makes fuzz.h gzip the rest */
    blob idx[4];
    uint32_t d1[] = {10}, d2[] = {3, 5}, d3[] = {2, 3, 4};
    idx[0] = idx_seed(1, d1, 10);
    idx[1] = idx_seed(2, d2, 15);
    idx[2] = idx_seed(3, d3, 24);
    idx[3] = idx_seed(3, d3, 24);
    memmove(idx[3].p + 1, idx[3].p, idx[3].n);   /* the gzip form: a marker byte first */
    idx[3].p[0] = 1;
    idx[3].n++;
    campaign("IDX", idx, 4, fuzz_one_idx, path, seconds, 100000);

    for (int i = 0; i < 4; i++) {
        free(lopts[i].p);
        free(ckpts[i].p);
        free(idx[i].p);
    }
    unlink(path);
    rmdir(dir);
    return check_done("test_fuzz");
}
