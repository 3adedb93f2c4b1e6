/* test_data.c - the data stage: IDX reading (plain and gzip, and every way a file can
 * be broken), the Fashion-MNIST loader (splits, normalisation, error messages), 8x8
 * area downsampling against independent computations, and the seeded sampler.
 *
 * Synthetic IDX files are written to a fresh directory under /tmp (removed at the
 * end). The checks on the real dataset run when /usr/share/datasets/fashion-mnist
 * holds it and print "skip" otherwise.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "data/data.h"

static char tmpdir[64];

/* ---- writing test files ------------------------------------------------------- */

/* An IDX header (type byte, ndim, big-endian dims) in hdr; returns its length. */
static size_t idx_header(unsigned char *hdr, int type, int ndim, const uint32_t *dims)
{
    hdr[0] = 0;
    hdr[1] = 0;
    hdr[2] = (unsigned char)type;
    hdr[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        hdr[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        hdr[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        hdr[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        hdr[7 + 4 * i] = (unsigned char)dims[i];
    }
    return 4 + 4 * (size_t)ndim;
}

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "test setup: cannot write %s\n", path);
        exit(1);
    }
}

/* Writes bytes to path as one gzip member, or appends a member (mode "ab"). */
static void write_gz(const char *path, const char *mode, const void *p, size_t n)
{
    gzFile g = gzopen(path, mode);
    if (!g || (n && gzwrite(g, p, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
        fprintf(stderr, "test setup: cannot write %s\n", path);
        exit(1);
    }
}

/* Header + payload as one buffer (caller frees); *len its size. */
static unsigned char *idx_bytes(int type, int ndim, const uint32_t *dims,
                                const unsigned char *payload, size_t plen, size_t *len)
{
    unsigned char hdr[4 + 4 * 8];
    size_t h = idx_header(hdr, type, ndim, dims);
    unsigned char *b = malloc(h + plen + 1);
    memcpy(b, hdr, h);
    if (plen) memcpy(b + h, payload, plen);
    *len = h + plen;
    return b;
}

static void write_idx(const char *path, int gz, int ndim, const uint32_t *dims,
                      const unsigned char *payload, size_t plen)
{
    size_t len;
    unsigned char *b = idx_bytes(0x08, ndim, dims, payload, plen, &len);
    if (gz) write_gz(path, "wb", b, len);
    else write_raw(path, b, len);
    free(b);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    unsigned char *d;
    lopt_err err;
    if (lopt_read_file(path, &d, n, &err) != LOPT_OK) {
        fprintf(stderr, "test setup: %s\n", err.msg);
        exit(1);
    }
    return d;
}

static const char *tpath(const char *name)
{
    static char buf[8][256];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* ---- IDX ---------------------------------------------------------------------- */

/* lopt_idx_read(path) must fail with `want`, a message, and no data. */
static void expect_idx_fail(const char *what, const char *path, lopt_status want,
                            const char *msg_has)
{
    int nd, dims[4];
    unsigned char *data = (unsigned char *)1;
    lopt_err err = {0};
    lopt_status st = lopt_idx_read(path, &nd, dims, &data, &err);
    CHECK(st == want && err.status == want && err.msg[0] && data == NULL &&
              (!msg_has || strstr(err.msg, msg_has)),
          "%s: status %d (want %d), message '%s'%s%s", what, st, want, err.msg,
          msg_has ? ", want it to mention " : "", msg_has ? msg_has : "");
    if (st == LOPT_OK) free(data);
    else if (st == want) printf("ok   %s: %s\n", what, err.msg);
}

static void test_idx(void)
{
    const uint32_t d3[3] = {3, 4, 5};
    unsigned char pay[60];
    for (int i = 0; i < 60; i++) pay[i] = (unsigned char)(i * 37 + 11);

    /* good files, plain and gzip, 3-d and 1-d */
    int f0 = check_failures;
    const char *names[4] = {"good.idx", "good.idx.gz", "lab.idx", "lab.idx.gz"};
    write_idx(tpath(names[0]), 0, 3, d3, pay, 60);
    write_idx(tpath(names[1]), 1, 3, d3, pay, 60);
    const uint32_t d1[1] = {60};
    write_idx(tpath(names[2]), 0, 1, d1, pay, 60);
    write_idx(tpath(names[3]), 1, 1, d1, pay, 60);
    for (int f = 0; f < 4; f++) {
        int nd = 0, dims[4] = {0};
        unsigned char *data = NULL;
        lopt_err err = {0};
        lopt_status st = lopt_idx_read(tpath(names[f]), &nd, dims, &data, &err);
        int want_nd = f < 2 ? 3 : 1;
        CHECK(st == LOPT_OK, "read %s: %s", names[f], err.msg);
        if (st != LOPT_OK) continue;
        CHECK(nd == want_nd, "%s: ndim %d", names[f], nd);
        CHECK(f < 2 ? dims[0] == 3 && dims[1] == 4 && dims[2] == 5 : dims[0] == 60,
              "%s: dims %d %d %d", names[f], dims[0], dims[1], dims[2]);
        CHECK(memcmp(data, pay, 60) == 0, "%s: payload differs", names[f]);
        free(data);
    }
    if (check_failures == f0)
        printf("ok   good IDX files read (plain and gzip, 1-d and 3-d)\n");

    /* concatenated gzip members are one valid gzip stream */
    {
        size_t len;
        unsigned char *b = idx_bytes(0x08, 3, d3, pay, 60, &len);
        const char *p = tpath("multi.gz");
        write_gz(p, "wb", b, 10);
        write_gz(p, "ab", b + 10, 30);
        write_gz(p, "ab", b + 40, len - 40);
        free(b);
        int nd, dims[4];
        unsigned char *data = NULL;
        lopt_err err = {0};
        CHECK(lopt_idx_read(p, &nd, dims, &data, &err) == LOPT_OK &&
                  memcmp(data, pay, 60) == 0,
              "multi-member gzip: %s", err.msg);
        free(data);
    }

    /* a good gzip file, then broken copies of it */
    size_t gzlen;
    unsigned char *gz = slurp(tpath("good.idx.gz"), &gzlen);
    unsigned char *bad = malloc(gzlen + 16);

    write_raw(tpath("trunc_half.gz"), gz, gzlen / 2);
    expect_idx_fail("gzip cut in half", tpath("trunc_half.gz"), LOPT_EFORMAT, "truncated");
    write_raw(tpath("trunc_trailer.gz"), gz, gzlen - 4);
    expect_idx_fail("gzip missing its length trailer", tpath("trunc_trailer.gz"),
                    LOPT_EFORMAT, NULL);
    memcpy(bad, gz, gzlen);
    bad[gzlen - 6] ^= 0x5a;   /* inside the CRC32 */
    write_raw(tpath("badcrc.gz"), bad, gzlen);
    expect_idx_fail("gzip with a wrong CRC", tpath("badcrc.gz"), LOPT_EFORMAT, "corrupt");
    memcpy(bad, gz, gzlen);
    for (size_t i = 12; i < gzlen - 10; i += 3) bad[i] ^= 0xa5;   /* the deflate data */
    write_raw(tpath("corrupt.gz"), bad, gzlen);
    expect_idx_fail("gzip with corrupt deflate data", tpath("corrupt.gz"), LOPT_EFORMAT,
                    NULL);
    memcpy(bad, gz, gzlen);
    memcpy(bad + gzlen, "garbage!", 8);
    write_raw(tpath("garbage.gz"), bad, gzlen + 8);
    expect_idx_fail("gzip with trailing garbage", tpath("garbage.gz"), LOPT_EFORMAT,
                    "trailing");

    /* payload shorter or longer than the header says, plain and gzip */
    write_idx(tpath("short.idx"), 0, 3, d3, pay, 59);
    expect_idx_fail("plain payload one byte short", tpath("short.idx"), LOPT_EFORMAT,
                    "truncated");
    write_idx(tpath("short.idx.gz"), 1, 3, d3, pay, 30);
    expect_idx_fail("gzip payload half missing", tpath("short.idx.gz"), LOPT_EFORMAT,
                    "truncated");
    unsigned char pay61[61];
    memcpy(pay61, pay, 60);
    pay61[60] = 7;
    write_idx(tpath("long.idx"), 0, 3, d3, pay61, 61);
    expect_idx_fail("plain payload one byte long", tpath("long.idx"), LOPT_EFORMAT,
                    "trailing");
    write_idx(tpath("long.idx.gz"), 1, 3, d3, pay61, 61);
    expect_idx_fail("gzip payload one byte long", tpath("long.idx.gz"), LOPT_EFORMAT,
                    "trailing");

    /* headers: magic, type, ndim, absurd dims, too short */
    {
        size_t len;
        unsigned char *b = idx_bytes(0x08, 3, d3, pay, 60, &len);
        b[0] = 0x50;   /* 'P': e.g. a PNG or text file */
        write_raw(tpath("magic.idx"), b, len);
        expect_idx_fail("wrong magic", tpath("magic.idx"), LOPT_EFORMAT, "not an IDX");
        b[0] = 0;
        b[2] = 0x0D;   /* float */
        write_raw(tpath("type.idx"), b, len);
        expect_idx_fail("float element type", tpath("type.idx"), LOPT_EFORMAT, "type");
        b[2] = 0x08;
        b[3] = 0;
        write_raw(tpath("nd0.idx"), b, len);
        expect_idx_fail("zero dimensions", tpath("nd0.idx"), LOPT_EFORMAT, "dimensions");
        b[3] = 5;
        write_raw(tpath("nd5.idx"), b, len);
        expect_idx_fail("five dimensions", tpath("nd5.idx"), LOPT_EFORMAT, "dimensions");
        free(b);
        const uint32_t huge[3] = {100000, 100000, 1000};
        write_idx(tpath("huge.idx.gz"), 1, 3, huge, pay, 60);
        expect_idx_fail("1e13 elements claimed", tpath("huge.idx.gz"), LOPT_EFORMAT,
                        "absurd");
        const uint32_t over[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
        write_idx(tpath("over.idx"), 0, 4, over, pay, 60);
        expect_idx_fail("dims whose product overflows", tpath("over.idx"), LOPT_EFORMAT,
                        "absurd");
        const uint32_t neg[1] = {0x80000000u};
        write_idx(tpath("neg.idx"), 0, 1, neg, pay, 60);
        expect_idx_fail("dim above INT_MAX", tpath("neg.idx"), LOPT_EFORMAT, "absurd");
        write_raw(tpath("empty.idx"), "", 0);
        expect_idx_fail("empty file", tpath("empty.idx"), LOPT_EFORMAT, "too short");
        write_gz(tpath("empty.idx.gz"), "wb", "", 0);
        expect_idx_fail("empty gzip file", tpath("empty.idx.gz"), LOPT_EFORMAT,
                        "too short");
        write_raw(tpath("hdr.idx"), "\0\0\x08\x03\0\0", 6);
        expect_idx_fail("header cut short", tpath("hdr.idx"), LOPT_EFORMAT, "header");
    }
    expect_idx_fail("missing file", tpath("no-such-file.gz"), LOPT_EIO, "no-such-file.gz");

    /* Fuzz: random truncations and byte flips of the good gzip and plain files must
     * give OK (a flip in a field gzip does not check, e.g. mtime) or a format error,
     * never a crash or an out-of-bounds read (run under ASan). */
    size_t plen;
    unsigned char *plain = slurp(tpath("good.idx"), &plen);
    int ok = 0, refused = 0, other = 0;
    for (int it = 0; it < 400; it++) {
        int use_gz = it % 2;
        const unsigned char *src = use_gz ? gz : plain;
        size_t n = use_gz ? gzlen : plen;
        memcpy(bad, src, n);
        uint64_t r = lopt_rng_u64(7, LOPT_STREAM_TEST, (uint64_t)it);
        if (r & 1) n = (size_t)((r >> 8) % n);                      /* truncate */
        else for (int k = 0; k < 1 + (int)((r >> 4) & 3); k++)      /* flip 1..4 bytes */
            bad[(r >> (16 + 8 * k)) % n] ^= (unsigned char)(1 + ((r >> 40) & 0x7f));
        write_raw(tpath("fuzz"), bad, n);
        int nd, dims[4];
        unsigned char *data = NULL;
        lopt_err err = {0};
        lopt_status st = lopt_idx_read(tpath("fuzz"), &nd, dims, &data, &err);
        if (st == LOPT_OK) ok++;
        else if (st == LOPT_EFORMAT && err.msg[0] && !data) refused++;
        else other++;
        free(data);
    }
    CHECK(other == 0, "fuzz: %d results neither OK nor a format error", other);
    if (other == 0)
        printf("ok   fuzz: 400 damaged files, %d read, %d refused, no crash\n", ok,
               refused);
    free(plain);
    free(gz);
    free(bad);
}

/* ---- Fashion-MNIST loader (synthetic files) --------------------------------------- */

static unsigned char synth_pixel(int img, int k)
{
    return (unsigned char)((img * 31 + k * 7) % 256);
}
static unsigned char synth_label(int img) { return (unsigned char)(img * 3 % 10); }

/* Writes a Fashion-MNIST-shaped set into dir: ntrain/ntest 28x28 images.
 * label_delta adds labels to the training label file; bad_label sets one label to 10;
 * side changes the image width; gz 0 writes the uncompressed names. */
static void write_fmnist(const char *dir, int ntrain, int ntest, int label_delta,
                         int bad_label, int side, int gz)
{
    char p[512];
    for (int s = 0; s < 2; s++) {
        int n = s == 0 ? ntrain : ntest;
        const char *pre = s == 0 ? "train" : "t10k";
        unsigned char *x = malloc((size_t)n * 28 * side);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 28 * side; k++)
                x[(size_t)i * 28 * side + k] = synth_pixel(i, k);
        int nl = n + (s == 0 ? label_delta : 0);
        unsigned char *y = malloc((size_t)nl + 1);
        for (int i = 0; i < nl; i++) y[i] = synth_label(i);
        if (bad_label && s == 0) y[nl / 2] = 10;
        const uint32_t dx[3] = {(uint32_t)n, 28, (uint32_t)side}, dy[1] = {(uint32_t)nl};
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, pre, gz ? ".gz" : "");
        write_idx(p, gz, 3, dx, x, (size_t)n * 28 * side);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, pre, gz ? ".gz" : "");
        write_idx(p, gz, 1, dy, y, (size_t)nl);
        free(x);
        free(y);
    }
}

static const char *mkdir_in_tmp(const char *name)
{
    const char *p = tpath(name);
    if (mkdir(p, 0700) != 0) {
        perror(p);
        exit(1);
    }
    return p;
}

static void expect_fmnist_fail(const char *what, const char *dir, int size,
                               lopt_status want, const char *msg_has)
{
    lopt_fmnist fm;
    lopt_err err = {0};
    lopt_status st = lopt_fmnist_load(&fm, dir, size, &err);
    CHECK(st == want && err.msg[0] && (!msg_has || strstr(err.msg, msg_has)) &&
              fm.split[0].x == NULL && fm.split[2].y == NULL,
          "%s: status %d (want %d), message '%s' (want it to mention %s)", what, st, want,
          err.msg, msg_has ? msg_has : "-");
    if (st == want) printf("ok   %s: %s\n", what, err.msg);
    lopt_fmnist_free(&fm);
}

static void test_fmnist_synthetic(void)
{
    const char *good = mkdir_in_tmp("fm_good");
    write_fmnist(good, 12, 6, 0, 0, 28, 1);
    lopt_fmnist fm;
    lopt_err err = {0};
    lopt_status st = lopt_fmnist_load(&fm, good, 28, &err);
    CHECK(st == LOPT_OK, "load synthetic: %s", err.msg);
    if (st == LOPT_OK) {
        /* 12 training images: valid = last sixth (2), train = first 10 */
        CHECK(fm.split[LOPT_SPLIT_TRAIN].n == 10 && fm.split[LOPT_SPLIT_VALID].n == 2 &&
                  fm.split[LOPT_SPLIT_TEST].n == 6,
              "synthetic split sizes %d %d %d", fm.split[0].n, fm.split[1].n,
              fm.split[2].n);
        int bad = 0;
        for (int s = 0; s < 3; s++) {
            const lopt_dataset *d = &fm.split[s];
            int first = s == LOPT_SPLIT_VALID ? 10 : 0;
            CHECK(d->h == 28 && d->w == 28, "split %d is %dx%d", s, d->h, d->w);
            for (int i = 0; i < d->n; i++) {
                if (d->y[i] != synth_label(first + i)) bad++;
                for (int k = 0; k < 784; k++) {
                    float p = (float)synth_pixel(first + i, k);
                    float want = (p / 255.0f - 0.2860f) / 0.3530f;
                    if (fabsf(d->x[(size_t)i * 784 + k] - want) > 1e-6f) bad++;
                }
            }
        }
        CHECK(bad == 0, "synthetic pixels/labels: %d wrong", bad);
        if (bad == 0)
            printf("ok   synthetic set: splits 10/2/6, normalised pixels, labels\n");
    }

    /* size 8 = area-downsampled normalised 28x28 images */
    lopt_fmnist f8;
    setenv("LOPT_FMNIST_DIR", good, 1);   /* also: dir NULL reads the variable */
    st = lopt_fmnist_load(&f8, NULL, 8, &err);
    unsetenv("LOPT_FMNIST_DIR");
    CHECK(st == LOPT_OK, "load synthetic 8x8 via LOPT_FMNIST_DIR: %s", err.msg);
    if (st == LOPT_OK && fm.split[0].x) {
        const lopt_dataset *d8 = &f8.split[LOPT_SPLIT_TEST];
        const lopt_dataset *d28 = &fm.split[LOPT_SPLIT_TEST];
        CHECK(d8->h == 8 && d8->w == 8 && d8->n == 6, "8x8 test split %d x %dx%d", d8->n,
              d8->h, d8->w);
        float *want = malloc((size_t)d28->n * 64 * sizeof *want);
        lopt_downsample_area(want, d28->x, d28->n, 28, 28, 8, 8);
        double *g = malloc((size_t)d28->n * 64 * sizeof *g);
        double *w = malloc((size_t)d28->n * 64 * sizeof *w);
        for (int i = 0; i < d28->n * 64; i++) { g[i] = d8->x[i]; w[i] = want[i]; }
        check_close("fmnist 8x8 = downsampled 28x28", g, w, (size_t)d28->n * 64, 1e-5,
                    1e-6);
        CHECK(memcmp(d8->y, d28->y, (size_t)d28->n * sizeof *d8->y) == 0, "8x8 labels");
        free(want);
        free(g);
        free(w);
    }
    lopt_fmnist_free(&f8);
    lopt_fmnist_free(&fm);
    lopt_fmnist_free(&fm);   /* idempotent */
    lopt_fmnist_free(NULL);

    const char *plain = mkdir_in_tmp("fm_plain");
    write_fmnist(plain, 12, 6, 0, 0, 28, 0);
    st = lopt_fmnist_load(&fm, plain, 28, &err);
    CHECK(st == LOPT_OK && fm.split[LOPT_SPLIT_TEST].n == 6,
          "uncompressed files are read too: %s", err.msg);
    lopt_fmnist_free(&fm);

    const char *mism = mkdir_in_tmp("fm_mismatch");
    write_fmnist(mism, 12, 6, -1, 0, 28, 1);
    expect_fmnist_fail("image/label count mismatch", mism, 28, LOPT_EFORMAT, "labels");
    const char *lab = mkdir_in_tmp("fm_label");
    write_fmnist(lab, 12, 6, 0, 1, 28, 1);
    expect_fmnist_fail("label 10", lab, 28, LOPT_EFORMAT, "label 10");
    const char *side = mkdir_in_tmp("fm_side");
    write_fmnist(side, 12, 6, 0, 0, 27, 1);
    expect_fmnist_fail("27-pixel-wide images", side, 28, LOPT_EFORMAT, "28");
    const char *few = mkdir_in_tmp("fm_few");
    write_fmnist(few, 5, 6, 0, 0, 28, 1);
    expect_fmnist_fail("5 training images", few, 28, LOPT_EFORMAT, "too few");
    const char *part = mkdir_in_tmp("fm_partial");
    write_fmnist(part, 12, 6, 0, 0, 28, 1);
    char p[512];
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", part);
    remove(p);
    expect_fmnist_fail("missing t10k labels", part, 28, LOPT_EIO, LOPT_FMNIST_PACKAGE);
    expect_fmnist_fail("missing directory", tpath("no-such-dir"), 8, LOPT_EIO,
                       LOPT_FMNIST_PACKAGE);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", part);
    write_raw(p, "\x1f\x8b\x08\x00junk", 8);
    expect_fmnist_fail("corrupt training images", part, 28, LOPT_EFORMAT, "train-images");
    expect_fmnist_fail("size 0", good, 0, LOPT_EUSAGE, NULL);
    expect_fmnist_fail("size 29", good, 29, LOPT_EUSAGE, NULL);
}

/* ---- downsampling ----------------------------------------------------------------- */

static void test_downsample(void)
{
    enum { H = 28, O = 8 };
    float in[2 * H * H], out[2 * O * O], ref[O * O];
    double g[2 * O * O], w[2 * O * O];

    /* constant images stay constant (ratio 3.5, 4, 1) */
    for (int i = 0; i < 2 * H * H; i++) in[i] = i < H * H ? 0.7f : -1.25f;
    lopt_downsample_area(out, in, 2, H, H, O, O);
    for (int i = 0; i < 2 * O * O; i++) { g[i] = out[i]; w[i] = i < O * O ? 0.7 : -1.25; }
    check_close("constant 28->8 stays constant", g, w, 2 * O * O, 1e-6, 1e-7);
    float out7[7 * 7];
    lopt_downsample_area(out7, in, 1, H, H, 7, 7);
    for (int i = 0; i < 49; i++) { g[i] = out7[i]; w[i] = 0.7; }
    check_close("constant 28->7 stays constant", g, w, 49, 1e-6, 1e-7);

    /* one bright pixel: its weight in each output pixel is the product of the row and
     * column overlaps with the 3.5-wide bands, over the band area 12.25 */
    struct { int y, x; int oy[2], ox[2]; double wy[2], wx[2]; } cases[] = {
        {3, 3, {0, 1}, {0, 1}, {0.5, 0.5}, {0.5, 0.5}},    /* straddles both bands */
        {0, 0, {0, -1}, {0, -1}, {1, 0}, {1, 0}},          /* inside band 0 */
        {10, 5, {2, 3}, {1, -1}, {0.5, 0.5}, {1, 0}},      /* 10.5 splits row 10 */
        {27, 24, {7, -1}, {6, 7}, {1, 0}, {0.5, 0.5}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memset(in, 0, sizeof in);
        in[cases[c].y * H + cases[c].x] = 1.0f;
        lopt_downsample_area(out, in, 1, H, H, O, O);
        for (int i = 0; i < O * O; i++) w[i] = 0.0;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                if (cases[c].oy[a] >= 0 && cases[c].ox[b] >= 0)
                    w[cases[c].oy[a] * O + cases[c].ox[b]] +=
                        cases[c].wy[a] * cases[c].wx[b] / 12.25;
        for (int i = 0; i < O * O; i++) g[i] = out[i];
        char name[64];
        snprintf(name, sizeof name, "bright pixel (%d,%d) spreads", cases[c].y, cases[c].x);
        check_close(name, g, w, O * O, 1e-6, 1e-9);
    }

    /* a random image against an independent computation: split every pixel into 2x2
     * half-pixels (the 3.5 boundaries fall on them), then plain 7x7 block means; and
     * the mean is preserved (every output pixel covers the same area) */
    for (int i = 0; i < 2 * H * H; i++)
        in[i] = (float)lopt_rng_normal(3, LOPT_STREAM_TEST, (uint64_t)i);
    lopt_downsample_area(out, in, 2, H, H, O, O);
    for (int b = 0; b < 2; b++) {
        double mean_in = 0, mean_out = 0;
        for (int oy = 0; oy < O; oy++)
            for (int ox = 0; ox < O; ox++) {
                double s = 0;
                for (int u = 0; u < 7; u++)
                    for (int v = 0; v < 7; v++)
                        s += in[b * H * H + ((oy * 7 + u) / 2) * H + (ox * 7 + v) / 2];
                ref[oy * O + ox] = (float)(s / 49.0);
            }
        for (int i = 0; i < O * O; i++) {
            g[b * O * O + i] = out[b * O * O + i];
            w[b * O * O + i] = ref[i];
            mean_out += out[b * O * O + i] / (O * O);
        }
        for (int i = 0; i < H * H; i++) mean_in += in[b * H * H + i] / (H * H);
        CHECK(fabs(mean_in - mean_out) < 1e-6, "image %d: mean %.9f in, %.9f out", b,
              mean_in, mean_out);
    }
    check_close("random 28->8 = half-pixel 7x7 block means", g, w, 2 * O * O, 1e-5, 1e-6);

    /* integer ratio: plain 4x4 block means (torch's adaptive_avg_pool2d) */
    lopt_downsample_area(out7, in, 1, H, H, 7, 7);
    for (int oy = 0; oy < 7; oy++)
        for (int ox = 0; ox < 7; ox++) {
            double s = 0;
            for (int u = 0; u < 4; u++)
                for (int v = 0; v < 4; v++) s += in[(oy * 4 + u) * H + ox * 4 + v];
            w[oy * 7 + ox] = s / 16;
            g[oy * 7 + ox] = out7[oy * 7 + ox];
        }
    check_close("random 28->7 = 4x4 block means", g, w, 49, 1e-5, 1e-6);
}

/* ---- sampler ---------------------------------------------------------------------- */

static void test_sampler(void)
{
    enum { N = 10, B = 3, STEPS = 40 };
    int f0 = check_failures;
    lopt_sampler a, b, one, other;
    lopt_sampler_init(&a, 42, N, B);
    lopt_sampler_init(&b, 42, N, B);
    lopt_sampler_init(&one, 42, N, 1);
    lopt_sampler_init(&other, 43, N, B);
    int32_t seq[STEPS * B], x[B], y[B];
    for (int s = 0; s < STEPS; s++) lopt_sampler_batch(&a, s, seq + s * B);

    /* pure function of (seed, step): any access order, any instance */
    int same = 1;
    for (int k = 0; k < 200; k++) {
        int s = (int)(lopt_rng_u64(1, LOPT_STREAM_TEST, (uint64_t)k) % STEPS);
        lopt_sampler_batch(&b, s, x);
        if (memcmp(x, seq + s * B, sizeof x) != 0) same = 0;
    }
    CHECK(same, "same (seed, step) in random order gives the same batch");
    /* the sequence does not depend on B: batch s of B is positions [sB, sB+B) */
    int consistent = 1;
    for (int p = 0; p < STEPS * B; p++) {
        lopt_sampler_batch(&one, p, x);
        if (x[0] != seq[p]) consistent = 0;
    }
    CHECK(consistent, "B=3 batches = B=1 positions (including across epoch boundaries)");
    /* batch 3 spans the first boundary: positions 9 | 10, 11 */
    lopt_sampler_batch(&a, 3, x);
    CHECK(x[0] == seq[9] && x[1] == seq[10] && x[2] == seq[11], "boundary batch");
    /* each epoch is a permutation, and epochs differ */
    int perms = 1, differ = 0;
    for (int e = 0; e < STEPS * B / N; e++) {
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            int v = seq[e * N + i];
            if (v < 0 || v >= N || seen[v]++) perms = 0;
        }
        if (e && memcmp(seq + e * N, seq + (e - 1) * N, N * sizeof *seq) != 0) differ = 1;
    }
    CHECK(perms, "every epoch holds each index exactly once");
    CHECK(differ, "epochs are shuffled differently");
    /* another seed, another order */
    int diff_seed = 0;
    for (int s = 0; s < 4; s++) {
        lopt_sampler_batch(&other, s, x);
        if (memcmp(x, seq + s * B, sizeof x) != 0) diff_seed = 1;
    }
    CHECK(diff_seed, "seed 43 differs from seed 42");
    if (check_failures == f0)
        printf("ok   sampler: deterministic, permutations, epoch boundaries, seeds\n");
    lopt_sampler_free(&a);
    lopt_sampler_free(&b);
    lopt_sampler_free(&one);
    lopt_sampler_free(&other);
    lopt_sampler_free(NULL);

    /* B > n: one batch spans several epochs */
    lopt_sampler big, unit;
    lopt_sampler_init(&big, 5, 4, 10);
    lopt_sampler_init(&unit, 5, 4, 1);
    int32_t bx[10];
    int ok = 1;
    for (int s = 0; s < 3; s++) {
        lopt_sampler_batch(&big, s, bx);
        for (int k = 0; k < 10; k++) {
            lopt_sampler_batch(&unit, s * 10 + k, y);
            if (bx[k] != y[0]) ok = 0;
        }
    }
    CHECK(ok, "B > n: batches span epochs consistently");
    lopt_sampler_free(&big);
    lopt_sampler_free(&unit);

    /* a large shuffle is not the identity and spreads the first slot evenly:
     * over 4000 epochs of n = 8, each index starts an epoch 500 ± 3 sqrt(437.5) times */
    lopt_sampler u;
    lopt_sampler_init(&u, 9, 8, 8);
    int counts[8] = {0};
    for (int e = 0; e < 4000; e++) {
        int32_t ex[8];
        lopt_sampler_batch(&u, e, ex);
        counts[ex[0]]++;
    }
    int even = 1;
    for (int i = 0; i < 8; i++) if (counts[i] < 437 || counts[i] > 563) even = 0;
    CHECK(even, "first slot roughly uniform: %d %d %d %d %d %d %d %d", counts[0], counts[1],
          counts[2], counts[3], counts[4], counts[5], counts[6], counts[7]);
    lopt_sampler_free(&u);

    /* gather copies the chosen rows */
    float dx[4 * 2] = {0, 1, 10, 11, 20, 21, 30, 31}, gx[3 * 2];
    int32_t dy[4] = {5, 6, 7, 8}, gy[3], idx[3] = {2, 0, 2};
    lopt_dataset d = {.n = 4, .h = 1, .w = 2, .x = dx, .y = dy};
    lopt_dataset_gather(&d, idx, 3, gx, gy);
    CHECK(gx[0] == 20 && gx[1] == 21 && gx[2] == 0 && gx[3] == 1 && gx[4] == 20 &&
              gy[0] == 7 && gy[1] == 5 && gy[2] == 7,
          "gather");
}

/* ---- the real dataset ------------------------------------------------------------- */

static void test_real(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", LOPT_FMNIST_DIR);
    if (access(p, R_OK) != 0) {
        printf("skip real Fashion-MNIST checks: %s absent (install %s)\n", p,
               LOPT_FMNIST_PACKAGE);
        return;
    }
    int f0 = check_failures;
    lopt_fmnist fm;
    lopt_err err = {0};
    lopt_status st = lopt_fmnist_load(&fm, LOPT_FMNIST_DIR, 28, &err);
    CHECK(st == LOPT_OK, "load %s: %s", LOPT_FMNIST_DIR, err.msg);
    if (st != LOPT_OK) return;
    const lopt_dataset *tr = &fm.split[LOPT_SPLIT_TRAIN];
    CHECK(tr->n == 50000 && fm.split[LOPT_SPLIT_VALID].n == 10000 &&
              fm.split[LOPT_SPLIT_TEST].n == 10000,
          "split sizes %d %d %d", tr->n, fm.split[1].n, fm.split[2].n);
    int bad = 0, counts[10] = {0};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < fm.split[s].n; i++) {
            int y = fm.split[s].y[i];
            if (y < 0 || y > 9) bad++;
            else if (s == LOPT_SPLIT_TRAIN) counts[y]++;
        }
    CHECK(bad == 0, "%d labels outside 0..9", bad);
    for (int c = 0; c < 10; c++)
        CHECK(counts[c] > 4500 && counts[c] < 5500, "class %d has %d training examples", c,
              counts[c]);
    double sum = 0, sq = 0;
    size_t D = (size_t)tr->n * 784;
    for (size_t i = 0; i < D; i++) { sum += tr->x[i]; sq += (double)tr->x[i] * tr->x[i]; }
    double mean = sum / (double)D, sd = sqrt(sq / (double)D - mean * mean);
    CHECK(fabs(mean) < 0.05 && fabs(sd - 1.0) < 0.05, "train mean %.4f std %.4f", mean, sd);
    if (check_failures == f0)
        printf("ok   real Fashion-MNIST: 50000/10000/10000, train mean %.4f std %.4f\n",
               mean, sd);

    /* valid = the last 10,000 of the training file */
    int nd, dims[4];
    unsigned char *lab = NULL;
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", LOPT_FMNIST_DIR);
    st = lopt_idx_read(p, &nd, dims, &lab, &err);
    CHECK(st == LOPT_OK && nd == 1 && dims[0] == 60000, "raw labels: %s", err.msg);
    if (st == LOPT_OK) {
        int mism = 0;
        for (int i = 0; i < 10000; i++)
            mism += fm.split[LOPT_SPLIT_VALID].y[i] != lab[50000 + i];
        for (int i = 0; i < 50000; i++) mism += tr->y[i] != lab[i];
        CHECK(mism == 0, "splits are the first 50,000 / last 10,000: %d labels differ",
              mism);
        free(lab);
    }

    /* 8x8: the mean survives area averaging */
    lopt_fmnist f8;
    st = lopt_fmnist_load(&f8, LOPT_FMNIST_DIR, 8, &err);
    CHECK(st == LOPT_OK, "load 8x8: %s", err.msg);
    if (st == LOPT_OK) {
        const lopt_dataset *t8 = &f8.split[LOPT_SPLIT_TRAIN];
        double s8 = 0;
        for (size_t i = 0; i < (size_t)t8->n * 64; i++) s8 += t8->x[i];
        s8 /= (double)t8->n * 64;
        CHECK(t8->n == 50000 && t8->h == 8 && fabs(s8 - mean) < 1e-4,
              "8x8 train: n %d, mean %.6f vs 28x28 %.6f", t8->n, s8, mean);
        lopt_fmnist_free(&f8);
    }
    lopt_fmnist_free(&fm);
}

int main(void)
{
    strcpy(tmpdir, "/tmp/lopt_test_data.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_idx();
    test_fmnist_synthetic();
    test_downsample();
    test_sampler();
    test_real();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_done("test_data");
}
