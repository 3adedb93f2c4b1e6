/* test_lopt_file.c - the .lopt file (lopt_file.h) and the ways a learned optimizer
 * is applied: round trips for every preset (the nominal form's fields and the
 * horizon included); every truncation, every single-byte corruption, wrong magic,
 * an unsupported version, a foreign file, trailing bytes, a missing file and an
 * unwritable directory refused cleanly, for version-2 and version-1 images; every
 * version-2 field range-checked; version 1 still read - images from an encoder kept
 * here, and a file written by the version-1 code (tests/data/v1-fmnist8-mlp.lopt, a
 * copy of models/fmnist8-mlp.lopt) read back to the byte; atomic writes leave no
 * temp file; lopt_learned_create and the public API (include/lopt.h) step
 * bit-identically to lopt_mlp_update driven by hand, in both forms. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "lopt.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

static char dir[256];

static const char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void fill_prov(lopt_provenance *p)
{
    memset(p, 0, sizeof *p);
    lopt_provenance_set(p->task, sizeof p->task, "fmnist8-mlp");
    lopt_provenance_set(p->estimator, sizeof p->estimator, "merged");
    p->outer_steps = 0x123456789abULL;
    p->horizon = 2000;
    lopt_provenance_set(p->outer_loss, sizeof p->outer_loss, "valid");
    lopt_provenance_set(p->note, sizeof p->note, "K=50 sigma=0.01\nline two, ünïcödé");
}

/* a preset with theta drawn from seed */
static float *make_theta(lopt_arch *a, const char *preset, uint64_t seed)
{
    lopt_err err = {0};
    LOPT_ASSERT(lopt_arch_preset(a, preset, &err) == LOPT_OK);
    float *theta = lopt_floats(lopt_arch_nparams(a));
    lopt_theta_init(a, seed, theta);
    /* make biases non-zero too, so a dropped field would show */
    for (size_t i = 0; i < lopt_arch_nparams(a); i += 7) theta[i] += 0.25f;
    return theta;
}

static int theta_left_set = 0;   /* failed decodes that did not clear *theta */

/* decode from an exactly-sized heap copy, so ASan sees any read past the end */
static lopt_status decode_copy(const unsigned char *data, size_t n, lopt_err *err)
{
    unsigned char *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    lopt_arch a;
    float *theta = (float *)1;
    lopt_provenance p;
    lopt_status st = lopt_file_decode(copy, n, &a, &theta, &p, err);
    if (st == LOPT_OK) lopt_free(theta);
    else if (theta != NULL) theta_left_set++;
    free(copy);
    return st;
}

static void test_roundtrip(const char *preset)
{
    lopt_arch a;
    float *theta = make_theta(&a, preset, 7);
    lopt_provenance p;
    fill_prov(&p);
    lopt_err err = {0};
    const char *path = tmp_path("rt.lopt");
    CHECK(lopt_file_write(path, &a, theta, &p, &err) == LOPT_OK, "%s write: %s", preset, err.msg);

    lopt_arch a2;
    float *t2 = NULL;
    lopt_provenance p2;
    lopt_status st = lopt_file_read(path, &a2, &t2, &p2, &err);
    CHECK(st == LOPT_OK, "%s read: %s", preset, err.msg);
    if (st != LOPT_OK) {
        lopt_free(theta);
        return;
    }
    CHECK(lopt_arch_equal(&a2, &a) && a2.form == a.form && a2.nominal_dir == a.nominal_dir &&
          a2.nominal_mom == a.nominal_mom && a2.nominal_step == a.nominal_step,
          "%s: form differs after round trip", preset);
    CHECK(a2.nmom == a.nmom && a2.ntime == a.ntime && a2.nhidden == a.nhidden &&
          a2.hidden == a.hidden && a2.step_mult == a.step_mult && a2.exp_mult == a.exp_mult &&
          memcmp(a2.beta, a.beta, sizeof(float) * (size_t)a.nmom) == 0 &&
          memcmp(a2.tau, a.tau, sizeof(float) * (size_t)a.ntime) == 0,
          "%s: architecture differs after round trip", preset);
    CHECK(memcmp(t2, theta, lopt_arch_nparams(&a) * sizeof(float)) == 0,
          "%s: theta differs after round trip", preset);
    CHECK(strcmp(p2.task, p.task) == 0 && strcmp(p2.estimator, p.estimator) == 0 &&
          p2.outer_steps == p.outer_steps && strcmp(p2.outer_loss, p.outer_loss) == 0 &&
          strcmp(p2.note, p.note) == 0 && p2.horizon == p.horizon,
          "%s: provenance differs after round trip", preset);
    CHECK(p2.file_version == LOPT_FILE_VERSION, "%s: read back as version %u", preset,
          p2.file_version);
    lopt_free(t2);

    /* NULL provenance on both sides: empty strings */
    CHECK(lopt_file_write(path, &a, theta, NULL, &err) == LOPT_OK, "write without provenance");
    CHECK(lopt_file_read(path, &a2, &t2, NULL, &err) == LOPT_OK, "read without provenance");
    lopt_free(t2);
    CHECK(lopt_file_read(path, &a2, &t2, &p2, &err) == LOPT_OK && p2.task[0] == 0 &&
          p2.note[0] == 0 && p2.outer_steps == 0 && p2.horizon == 0,
          "empty provenance round trip");
    lopt_free(t2);
    lopt_free(theta);
    if (!check_failures)
        printf("ok   round trip %s (%zu weights)\n", preset, lopt_arch_nparams(&a));
}

/* every prefix and every corrupted byte of a valid image img (n bytes, version
 * `version`; modified and restored) is refused */
static void refusals_of(const char *label, unsigned char *img, size_t n, unsigned version)
{
    lopt_err err = {0};
    CHECK(decode_copy(img, n, &err) == LOPT_OK, "%s: the intact image decodes: %s", label,
          err.msg);

    int bad_trunc = 0;
    for (size_t len = 0; len < n; len++) {
        err.msg[0] = 0;
        if (decode_copy(img, len, &err) != LOPT_EFORMAT || !err.msg[0] || strchr(err.msg, '\n'))
            bad_trunc++;
    }
    CHECK(bad_trunc == 0, "%s: %d of %zu truncations not refused with one line", label,
          bad_trunc, n);

    /* single-byte corruption at every position, three patterns */
    static const unsigned char flips[] = {0x01, 0x80, 0xff};
    int bad_flip = 0, crc_msgs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof flips; k++) {
            img[i] ^= flips[k];
            lopt_status st = decode_copy(img, n, &err);
            if (st != LOPT_EFORMAT) bad_flip++;
            if (strstr(err.msg, "checksum mismatch")) crc_msgs++;
            img[i] ^= flips[k];
        }
    CHECK(bad_flip == 0, "%s: %d of %zu corrupted images not refused", label, bad_flip,
          n * sizeof flips);
    /* past the 20-byte header, every corruption is caught by the checksum */
    CHECK(crc_msgs == (int)((n - 20) * sizeof flips), "%s: %d checksum messages, want %zu",
          label, crc_msgs, (n - 20) * sizeof flips);

    /* trailing bytes */
    unsigned char *longer = malloc(n + 5);
    memcpy(longer, img, n);
    memset(longer + n, 0, 5);
    CHECK(decode_copy(longer, n + 5, &err) == LOPT_EFORMAT && strstr(err.msg, "trailing"),
          "%s: trailing bytes: %s", label, err.msg);
    CHECK(decode_copy(longer, n + 1, &err) == LOPT_EFORMAT && strstr(err.msg, "trailing"),
          "%s: one trailing byte: %s", label, err.msg);
    free(longer);

    /* wrong magic, and unsupported versions (the one after ours, and 0) */
    img[1] = 'X';
    CHECK(decode_copy(img, n, &err) == LOPT_EFORMAT && strstr(err.msg, "not a .lopt file"),
          "%s: wrong magic: %s", label, err.msg);
    img[1] = 'L';
    img[8] = (unsigned char)(LOPT_FILE_VERSION + 1);
    CHECK(decode_copy(img, n, &err) == LOPT_EFORMAT && strstr(err.msg, "version 3") &&
          strstr(err.msg, "versions 1 to 2"), "%s: version 3: %s", label, err.msg);
    img[8] = 0;
    CHECK(decode_copy(img, n, &err) == LOPT_EFORMAT && strstr(err.msg, "version 0"),
          "%s: version 0: %s", label, err.msg);
    img[8] = (unsigned char)version;
    CHECK(decode_copy(img, n, &err) == LOPT_OK, "%s: restored image decodes", label);
    if (!bad_trunc && !bad_flip)
        printf("ok   %s: %zu truncations, %zu corruptions refused\n", label, n,
               n * sizeof flips);
}

static void test_refusals(const char *preset)
{
    lopt_arch a;
    float *theta = make_theta(&a, preset, 3);
    lopt_provenance p;
    fill_prov(&p);
    unsigned char *img;
    size_t n;
    lopt_err err = {0};
    LOPT_ASSERT(lopt_file_encode(&a, theta, &p, &img, &n, &err) == LOPT_OK);
    refusals_of(preset, img, n, LOPT_FILE_VERSION);

    /* a truncated file on disk, and the path in the message */
    const char *path = tmp_path("trunc.lopt");
    CHECK(lopt_write_atomic(path, img, n / 2, &err) == LOPT_OK, "write truncated");
    lopt_arch a2;
    float *t2 = NULL;
    CHECK(lopt_file_read(path, &a2, &t2, NULL, &err) == LOPT_EFORMAT &&
          strstr(err.msg, "truncated") && strstr(err.msg, "trunc.lopt") && t2 == NULL,
          "truncated file: %s", err.msg);
    free(img);
    lopt_free(theta);
}

/* re-encodes an image with one field changed and a fresh CRC, so the field check
 * (not the checksum) must catch it */
static void recrc(unsigned char *img, size_t n)
{
    uint32_t c = (uint32_t)crc32(0L, Z_NULL, 0);
    c = (uint32_t)crc32(c, img, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) img[n - 4 + i] = (unsigned char)(c >> (8 * i));
}

static void put32(unsigned char *q, uint32_t v)
{
    for (int i = 0; i < 4; i++) q[i] = (unsigned char)(v >> (8 * i));
}

static void test_field_checks(void)
{
    lopt_arch a;
    float *theta = make_theta(&a, "paper", 5);
    unsigned char *img;
    size_t n;
    lopt_err err = {0};
    LOPT_ASSERT(lopt_file_encode(&a, theta, NULL, &img, &n, &err) == LOPT_OK);
    unsigned char *work = malloc(n);
    /* offsets per the layout in lopt_file.h */
    size_t o_nmom = 20, o_beta = 24, o_ntime = o_beta + 4 * 5, o_nhidden = o_ntime + 4 + 4 * 9;
    size_t o_form = o_nhidden + 16, o_ntheta = o_form + 16, o_theta = o_ntheta + 8;

    memcpy(work, img, n);
    put32(work + o_nmom, 9);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "out of range"),
          "nmom 9: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_nmom, 0xffffffffu);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "out of range"),
          "nmom 2^32-1: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_beta, 0x3f800000u);   /* beta = 1.0 */
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "momentum decay"),
          "beta 1: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_nhidden, 0);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "out of range"),
          "nhidden 0: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_ntheta, 611);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "theta has 611"),
          "ntheta 611: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_theta + 4 * 100, 0x7fc00000u);   /* NaN */
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "theta[100]"),
          "NaN theta: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_theta + 4 * 9, 0x7f800000u);     /* +inf */
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "not finite"),
          "inf theta: %s", err.msg);
    /* a string length pointing past the end */
    size_t o_task = o_theta + 4 * lopt_arch_nparams(&a);
    memcpy(work, img, n);
    put32(work + o_task, 60);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT, "task length past the end: %s", err.msg);
    memcpy(work, img, n);
    put32(work + o_task, 0xfffffff0u);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT, "huge task length: %s", err.msg);
    /* the version-2 fields: an mlp-form file with a nominal field set, and a horizon
     * above INT64_MAX (empty task and estimator strings, then outer_steps) */
    static const struct { size_t at; uint32_t v; const char *msg; } mlp_bad[] = {
        {0, 2, "unknown form 2"}, {4, 1, "nominal-form fields"}, {8, 1, "nominal-form fields"},
        {12, 0x3b449ba6u /* 3e-3 */, "nominal-form fields"}, {0, 0xffffffffu, "unknown form"}};
    for (size_t i = 0; i < sizeof mlp_bad / sizeof *mlp_bad; i++) {
        memcpy(work, img, n);
        put32(work + o_form + mlp_bad[i].at, mlp_bad[i].v);
        recrc(work, n);
        CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, mlp_bad[i].msg),
              "mlp form, field +%zu = %#x: %s", mlp_bad[i].at, mlp_bad[i].v, err.msg);
    }
    size_t o_horizon = o_task + 4 + 4 + 8;
    memcpy(work, img, n);
    put32(work + o_horizon + 4, 0x80000000u);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "horizon"),
          "horizon 2^63: %s", err.msg);
    put32(work + o_horizon + 4, 0x7fffffffu);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_OK, "horizon INT64_MAX refused: %s", err.msg);
    /* a size field smaller than the file says: trailing; larger: truncated */
    memcpy(work, img, n);
    put32(work + 12, (uint32_t)n - 1);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "trailing"),
          "size field n-1: %s", err.msg);
    put32(work + 12, (uint32_t)n + 1);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, "truncated"),
          "size field n+1: %s", err.msg);
    put32(work + 12, 3);
    CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT, "size field 3: %s", err.msg);
    free(work);
    free(img);

    /* the writer refuses what the reader would */
    theta[3] = NAN;
    CHECK(lopt_file_encode(&a, theta, NULL, &img, &n, &err) == LOPT_EUSAGE && img == NULL,
          "encode refuses NaN theta");
    theta[3] = 0;
    a.nhidden = 7;
    CHECK(lopt_file_encode(&a, theta, NULL, &img, &n, &err) == LOPT_EUSAGE,
          "encode refuses a bad architecture");
    a.nhidden = 1;
    lopt_provenance p;
    memset(&p, 'x', sizeof p);
    p.outer_steps = 1;
    CHECK(lopt_file_encode(&a, theta, &p, &img, &n, &err) == LOPT_EUSAGE,
          "encode refuses unterminated provenance");
    memset(&p, 0, sizeof p);
    p.horizon = (uint64_t)INT64_MAX + 1;
    CHECK(lopt_file_encode(&a, theta, &p, &img, &n, &err) == LOPT_EUSAGE &&
          strstr(err.msg, "horizon"), "encode refuses horizon 2^63: %s", err.msg);
    lopt_free(theta);

    /* the nominal form's fields in a nominal image */
    theta = make_theta(&a, "nominal", 5);
    LOPT_ASSERT(lopt_file_encode(&a, theta, NULL, &img, &n, &err) == LOPT_OK);
    work = malloc(n);
    static const struct { size_t at; uint32_t v; const char *msg; } nom_bad[] = {
        {4, 3, "unknown nominal direction 3"}, {4, 0, "unknown nominal direction 0"},
        {8, 5, "nominal momentum 5 out of range"}, {8, 9, "nominal momentum 9 out of range"},
        {8, 0x80000000u, "nominal momentum"}, {12, 0, "nominal step 0"},
        {12, 0xbb449ba6u /* -3e-3 */, "nominal step"}, {12, 0x7fc00000u, "nominal step nan"},
        {12, 0x40000000u /* 2 */, "nominal step 2"}, {0, 0, "theta has 620 values, the "
                                                     "architecture needs 610"}};
    for (size_t i = 0; i < sizeof nom_bad / sizeof *nom_bad; i++) {
        memcpy(work, img, n);
        put32(work + o_form + nom_bad[i].at, nom_bad[i].v);
        if (nom_bad[i].at == 0)   /* a consistent mlp form, so only ntheta is wrong */
            for (size_t k = 4; k <= 12; k += 4) put32(work + o_form + k, 0);
        recrc(work, n);
        CHECK(decode_copy(work, n, &err) == LOPT_EFORMAT && strstr(err.msg, nom_bad[i].msg),
              "nominal form, field +%zu = %#x: %s", nom_bad[i].at, nom_bad[i].v, err.msg);
    }
    /* the gradient direction with index 0 is well formed */
    memcpy(work, img, n);
    put32(work + o_form + 4, 0);
    put32(work + o_form + 8, 0);
    recrc(work, n);
    CHECK(decode_copy(work, n, &err) == LOPT_OK, "nominal gradient direction: %s", err.msg);
    free(work);
    free(img);
    lopt_free(theta);
}

/* ---- version 1 ---------------------------------------------------------------------
 * The version-1 encoder as it was, kept here so that version-1 images can be made:
 * the layout of lopt_file.h without the fields marked v2. */

static unsigned char *v1_put(unsigned char *q, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) *q++ = (unsigned char)(v >> (8 * i));
    return q;
}
static unsigned char *v1_f32(unsigned char *q, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    return v1_put(q, v, 4);
}
static unsigned char *v1_str(unsigned char *q, const char *s)
{
    size_t k = strlen(s);
    q = v1_put(q, k, 4);
    memcpy(q, s, k);
    return q + k;
}

static unsigned char *encode_v1(const lopt_arch *a, const float *theta, const lopt_provenance *p,
                                size_t *n)
{
    size_t np = lopt_arch_nparams(a);
    size_t size = 20 + 4 + 4 * (size_t)a->nmom + 4 + 4 * (size_t)a->ntime + 16 + 8 + 4 * np +
                  4 + strlen(p->task) + 4 + strlen(p->estimator) + 8 + 4 + strlen(p->outer_loss) +
                  4 + strlen(p->note) + 4;
    unsigned char *img = malloc(size), *q = img;
    static const unsigned char magic[8] = {0x89, 'L', 'O', 'P', 'T', '\r', '\n', 0x1a};
    memcpy(q, magic, 8);
    q = v1_put(q + 8, 1, 4);
    q = v1_put(q, size, 8);
    q = v1_put(q, (uint64_t)a->nmom, 4);
    for (int k = 0; k < a->nmom; k++) q = v1_f32(q, a->beta[k]);
    q = v1_put(q, (uint64_t)a->ntime, 4);
    for (int j = 0; j < a->ntime; j++) q = v1_f32(q, a->tau[j]);
    q = v1_put(q, (uint64_t)a->nhidden, 4);
    q = v1_put(q, (uint64_t)a->hidden, 4);
    q = v1_f32(q, a->step_mult);
    q = v1_f32(q, a->exp_mult);
    q = v1_put(q, np, 8);
    for (size_t i = 0; i < np; i++) q = v1_f32(q, theta[i]);
    q = v1_str(q, p->task);
    q = v1_str(q, p->estimator);
    q = v1_put(q, p->outer_steps, 8);
    q = v1_str(q, p->outer_loss);
    q = v1_str(q, p->note);
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), img, (uInt)(size - 4));
    q = v1_put(q, c, 4);
    LOPT_ASSERT((size_t)(q - img) == size);
    *n = size;
    return img;
}

/* a version-1 image decodes to the same architecture (mlp form), theta and
 * provenance (horizon unknown), and is refused cleanly when damaged */
static void test_v1(const char *preset)
{
    lopt_arch a;
    float *theta = make_theta(&a, preset, 13);
    lopt_provenance p;
    fill_prov(&p);
    p.horizon = 0;
    size_t n;
    unsigned char *img = encode_v1(&a, theta, &p, &n);
    lopt_arch a2;
    float *t2 = NULL;
    lopt_provenance p2;
    lopt_err err = {0};
    lopt_status st = lopt_file_decode(img, n, &a2, &t2, &p2, &err);
    CHECK(st == LOPT_OK, "%s v1: %s", preset, err.msg);
    if (st == LOPT_OK) {
        CHECK(lopt_arch_equal(&a2, &a) && a2.form == LOPT_FORM_MLP && a2.nominal_step == 0,
              "%s v1: architecture differs", preset);
        CHECK(memcmp(t2, theta, lopt_arch_nparams(&a) * sizeof(float)) == 0,
              "%s v1: theta differs", preset);
        CHECK(strcmp(p2.task, p.task) == 0 && strcmp(p2.note, p.note) == 0 &&
              p2.outer_steps == p.outer_steps && strcmp(p2.outer_loss, p.outer_loss) == 0 &&
              p2.horizon == 0 && p2.file_version == 1, "%s v1: provenance differs", preset);
        lopt_free(t2);
    }
    char label[32];
    snprintf(label, sizeof label, "%s v1", preset);
    refusals_of(label, img, n, 1);
    free(img);
    lopt_free(theta);
}

/* A file written by the version-1 code (models/fmnist8-mlp.lopt as it was) still
 * loads: re-encoded by the version-1 encoder it is the same bytes, so every field,
 * theta included, was read exactly; and the version-2 copy holds the same theta. */
static void test_v1_fixture(void)
{
    const char *src = getenv("LOPT_SRCDIR");
    char path[600];
    snprintf(path, sizeof path, "%s/tests/data/v1-fmnist8-mlp.lopt", src ? src : ".");
    unsigned char *file;
    size_t n;
    lopt_err err = {0};
    if (lopt_read_file(path, &file, &n, &err) != LOPT_OK) {
        CHECK(0, "the version-1 fixture: %s", err.msg);
        return;
    }
    lopt_arch a;
    float *theta = NULL;
    lopt_provenance p;
    lopt_status st = lopt_file_decode(file, n, &a, &theta, &p, &err);
    CHECK(st == LOPT_OK && p.file_version == 1 && a.form == LOPT_FORM_MLP &&
          lopt_arch_nparams(&a) == 610 && p.horizon == 0 && strcmp(p.task, "fmnist8-mlp") == 0,
          "the version-1 fixture: %s", st == LOPT_OK ? "wrong fields" : err.msg);
    if (st != LOPT_OK) {
        free(file);
        return;
    }
    size_t n1;
    unsigned char *again = encode_v1(&a, theta, &p, &n1);
    CHECK(n1 == n && memcmp(again, file, n) == 0, "the version-1 fixture re-encoded as "
          "version 1 is not the same bytes");
    free(again);
    unsigned char *v2;
    size_t n2;
    lopt_arch a2;
    float *t2 = NULL;
    lopt_provenance p2;
    CHECK(lopt_file_encode(&a, theta, &p, &v2, &n2, &err) == LOPT_OK &&
          lopt_file_decode(v2, n2, &a2, &t2, &p2, &err) == LOPT_OK && lopt_arch_equal(&a, &a2) &&
          memcmp(t2, theta, 610 * sizeof(float)) == 0 && p2.file_version == 2 &&
          strcmp(p2.note, p.note) == 0, "the version-1 fixture as version 2: %s", err.msg);
    if (!check_failures)
        printf("ok   %s (version 1) loads; re-encoded it is the same %zu bytes\n", path, n);
    free(v2);
    lopt_free(t2);
    lopt_free(theta);
    free(file);
}

static void test_files(const char *self)
{
    lopt_arch a;
    float *theta = NULL;
    lopt_err err = {0};
    CHECK(lopt_file_read(tmp_path("missing.lopt"), &a, &theta, NULL, &err) == LOPT_EIO &&
          theta == NULL && strstr(err.msg, "missing.lopt"), "missing file: %s", err.msg);
    CHECK(lopt_file_read(self, &a, &theta, NULL, &err) == LOPT_EFORMAT &&
          strstr(err.msg, "not a .lopt file"), "the test binary: %s", err.msg);
    const char *txt = tmp_path("notes.txt");
    const char *text = "step,train_loss\n1,2.3\n";
    CHECK(lopt_write_atomic(txt, text, strlen(text), &err) == LOPT_OK, "write text");
    CHECK(lopt_file_read(txt, &a, &theta, NULL, &err) == LOPT_EFORMAT &&
          strstr(err.msg, "not a .lopt file"), "a text file: %s", err.msg);
    CHECK(lopt_write_atomic(txt, "", 0, &err) == LOPT_OK, "write empty");
    CHECK(lopt_file_read(txt, &a, &theta, NULL, &err) == LOPT_EFORMAT, "an empty file: %s",
          err.msg);
    CHECK(lopt_file_read(dir, &a, &theta, NULL, &err) != LOPT_OK, "a directory: %s", err.msg);

    float *t0 = make_theta(&a, "paper", 1);
    CHECK(lopt_file_write(tmp_path("no/such/dir/x.lopt"), &a, t0, NULL, &err) == LOPT_EIO &&
          strstr(err.msg, "cannot write"), "nonexistent directory: %s", err.msg);
    /* overwrite an existing file atomically; no temp file is left anywhere */
    CHECK(lopt_file_write(tmp_path("a.lopt"), &a, t0, NULL, &err) == LOPT_OK, "write a");
    t0[0] = 42;
    CHECK(lopt_file_write(tmp_path("a.lopt"), &a, t0, NULL, &err) == LOPT_OK, "overwrite a");
    CHECK(lopt_file_read(tmp_path("a.lopt"), &a, &theta, NULL, &err) == LOPT_OK &&
          theta[0] == 42, "overwritten file has the new theta");
    lopt_free(theta);
    int temps = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) temps++;
    if (d) closedir(d);
    CHECK(temps == 0, "%d temp files left behind", temps);
    lopt_free(t0);
}

/* two tensors of uneven sizes: per-tensor normalisation matters */
static const lopt_tensor tensors[] = {{"a", 0, 7, 3}, {"b", 7, 12, 0}};
enum { N = 19, STEPS = 6 };

static void grad_at(const float *w, int step, float *g)
{
    for (int i = 0; i < N; i++)
        g[i] = (float)(w[i] - 0.3 * i) + (float)lopt_rng_normal(step, LOPT_STREAM_TEST, i) * 0.1f;
}

static void test_wrappers(const char *preset)
{
    lopt_arch a;
    float *theta = make_theta(&a, preset, 11);
    lopt_err err = {0};
    float w0[N], g[N];
    for (int i = 0; i < N; i++) w0[i] = (float)lopt_rng_normal(5, LOPT_STREAM_TEST, 100 + i);

    /* by hand */
    float wd[N], delta[N];
    float *m = lopt_floats((size_t)a.nmom * N);
    memcpy(wd, w0, sizeof w0);
    lopt_mlp_work wk;
    lopt_mlp_work_init(&wk, &a, N, 2);
    for (int s = 0; s < STEPS; s++) {
        grad_at(wd, s, g);
        lopt_mlp_update(&wk, theta, tensors, 2, wd, g, m, s, delta);
        for (int i = 0; i < N; i++) wd[i] += delta[i];
    }
    lopt_mlp_work_free(&wk);

    /* lopt_learned_create */
    lopt_optimizer o;
    float wl[N];
    memcpy(wl, w0, sizeof w0);
    CHECK(lopt_learned_create(&o, &a, theta, tensors, 2, N, &err) == LOPT_OK, "create: %s",
          err.msg);
    for (int s = 0; s < STEPS; s++) {
        grad_at(wl, s, g);
        o.step(&o, wl, g);
    }
    CHECK(memcmp(wl, wd, sizeof wd) == 0, "%s: lopt_learned_create differs from "
          "lopt_mlp_update by hand", preset);
    /* reset gives the same trajectory again */
    o.reset(&o);
    float wr[N];
    memcpy(wr, w0, sizeof w0);
    for (int s = 0; s < STEPS; s++) {
        grad_at(wr, s, g);
        o.step(&o, wr, g);
    }
    CHECK(memcmp(wr, wd, sizeof wd) == 0, "%s: learned optimizer after reset differs", preset);
    o.free(&o);

    /* the public API, from a file */
    const char *path = tmp_path("api.lopt");
    CHECK(lopt_file_write(path, &a, theta, NULL, &err) == LOPT_OK, "write api file");
    char msg[256];
    lopt_model *model = lopt_model_load(path, msg, sizeof msg);
    CHECK(model != NULL, "lopt_model_load: %s", msg);
    if (model) {
        size_t sizes[] = {7, 12};
        lopt_opt *opt = lopt_opt_new(model, sizes, 2);
        CHECK(opt && lopt_opt_nparams(opt) == N, "lopt_opt_new");
        lopt_model_free(model);   /* the optimizer must not need it */
        float wp[N];
        for (int run = 0; run < 2 && opt; run++) {
            memcpy(wp, w0, sizeof w0);
            for (int s = 0; s < STEPS; s++) {
                grad_at(wp, s, g);
                lopt_opt_step(opt, wp, g);
            }
            CHECK(memcmp(wp, wd, sizeof wd) == 0, "%s: public API run %d differs from "
                  "lopt_learned_create", preset, run);
            lopt_opt_reset(opt);
        }
        lopt_opt_free(opt);
    }
    lopt_free(m);
    lopt_free(theta);
    if (!check_failures)
        printf("ok   %s: by hand, lopt_learned_create and lopt_opt_step agree bit for bit\n",
               preset);
}

static void test_public_api(void)
{
    char msg[256] = "";
    CHECK(lopt_model_load(tmp_path("missing.lopt"), msg, sizeof msg) == NULL &&
          strstr(msg, "missing.lopt"), "load missing: %s", msg);
    CHECK(lopt_model_load(tmp_path("notes.txt"), msg, sizeof msg) == NULL &&
          strstr(msg, "not a .lopt file"), "load text: %s", msg);
    CHECK(lopt_model_load(tmp_path("missing.lopt"), NULL, 0) == NULL, "load with no errbuf");
    char tiny[8];
    CHECK(lopt_model_load(tmp_path("missing.lopt"), tiny, sizeof tiny) == NULL &&
          strlen(tiny) == 7, "message truncated to errlen");
    CHECK(lopt_model_write_initial(tmp_path("init.lopt"), "lo", 9, msg, sizeof msg) == 0,
          "write_initial: %s", msg);
    CHECK(lopt_model_write_initial(tmp_path("x.lopt"), "big", 9, msg, sizeof msg) == -1 &&
          strstr(msg, "unknown architecture"), "write_initial bad preset: %s", msg);
    CHECK(lopt_model_write_initial(tmp_path("no/dir/x.lopt"), "paper", 9, msg, sizeof msg) ==
          -1 && strstr(msg, "cannot write"), "write_initial bad dir: %s", msg);
    lopt_model *m = lopt_model_load(tmp_path("init.lopt"), msg, sizeof msg);
    CHECK(m != NULL, "load initial: %s", msg);
    if (!m) return;
    char desc[256];
    lopt_model_describe(m, desc, sizeof desc);
    CHECK(strstr(desc, "1762 weights") && strstr(desc, "untrained"), "describe: %s", desc);
    size_t bad[] = {3, 0};
    CHECK(lopt_opt_new(m, bad, 2) == NULL, "zero-size tensor refused");
    CHECK(lopt_opt_new(m, bad, 0) == NULL, "no tensors refused");
    CHECK(lopt_opt_new(NULL, bad, 1) == NULL, "NULL model refused");
    lopt_opt_free(NULL);
    lopt_model_free(NULL);
    lopt_model_free(m);

    /* the untrained file holds exactly lopt_theta_init's theta */
    lopt_arch a, a2;
    float *t = NULL;
    lopt_provenance p;
    lopt_err err = {0};
    lopt_arch_preset(&a, "lo", &err);
    float *want = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_init(&a, 9, want);
    CHECK(lopt_file_read(tmp_path("init.lopt"), &a2, &t, &p, &err) == LOPT_OK &&
          memcmp(t, want, lopt_arch_nparams(&a) * sizeof(float)) == 0 &&
          strcmp(p.estimator, "none") == 0 && p.outer_steps == 0,
          "initial file = lopt_theta_init(lo, 9)");
    lopt_free(t);
    lopt_free(want);

    /* an untrained nominal optimizer through the public API: described as such, and
     * its first step from zero momenta is the normalised momentum step
     * -3e-3 * g / rms_tensor(g) (m_1 = 0.1 g, and the normaliser is scale-free up to
     * its 1e-5) */
    CHECK(lopt_model_write_initial(tmp_path("nom.lopt"), "nominal", 9, msg, sizeof msg) == 0,
          "write_initial nominal: %s", msg);
    m = lopt_model_load(tmp_path("nom.lopt"), msg, sizeof msg);
    CHECK(m != NULL, "load nominal: %s", msg);
    if (!m) return;
    lopt_model_describe(m, desc, sizeof desc);
    CHECK(strstr(desc, "nominal") && strstr(desc, "momentum (beta 0.9)") &&
          strstr(desc, "620 weights") && strstr(desc, "untrained"), "describe nominal: %s", desc);
    size_t sizes[] = {7, 12};
    lopt_opt *opt = lopt_opt_new(m, sizes, 2);
    lopt_model_free(m);
    float w[N] = {0}, g[N];
    for (int i = 0; i < N; i++) g[i] = (float)lopt_rng_normal(8, LOPT_STREAM_TEST, i);
    lopt_opt_step(opt, w, g);
    int ok = 1;
    for (int T = 0; T < 2; T++) {
        size_t lo = tensors[T].offset, k = tensors[T].size;
        double ms = 0;
        for (size_t i = lo; i < lo + k; i++) ms += 0.01 * g[i] * g[i];
        for (size_t i = lo; i < lo + k; i++) {
            double want_i = -3e-3 * 0.1 * g[i] / sqrt(1e-5 + ms / (double)k);
            ok &= fabs(w[i] - want_i) <= 1e-6 * fabs(want_i) + 1e-12;
        }
    }
    CHECK(ok, "nominal through lopt_opt_step: the first step is not normalised momentum");
    lopt_opt_free(opt);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)check_close;   /* every comparison here is exact */
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/test_lopt_file.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip("paper");
    test_roundtrip("lo");
    test_roundtrip("nominal");
    test_refusals("paper");
    test_refusals("lo");
    test_refusals("nominal");
    test_field_checks();
    test_v1("paper");
    test_v1("lo");
    test_v1_fixture();
    test_files(argv[0]);
    test_wrappers("paper");
    test_wrappers("lo");
    test_wrappers("nominal");
    test_public_api();
    CHECK(theta_left_set == 0, "%d failed decodes left theta set", theta_left_set);
    remove_dir();
    return check_done("test_lopt_file");
}
