/* fmnist.c - Fashion-MNIST: the splits and normalisation of docs/design.md section 3, and
 * the area-averaging downsampling that makes the 8x8 images of fmnist8-mlp.
 *
 * Splits: train = first 50,000 of the 60,000 training images, valid = the last
 * 10,000, test = the 10,000 t10k images. A training file with fewer than 60,000
 * images (the tests' synthetic ones) is split in the same 5:1 proportion: valid =
 * its last sixth. Pixels are mapped p -> (p/255 - 0.2860) / 0.3530; downsampling,
 * being an average with weights that sum to 1, commutes with that affine map.
 *
 * Files are looked for as <name>.gz, then as the uncompressed <name>. Left out: the
 * MNIST digits and any other dataset.
 */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FM_SIDE 28
#define FM_CLASSES 10
#define FM_VALID 10000     /* last images of the training file held out */
#define FM_FULL 60000      /* training-file size at which valid is exactly FM_VALID */

void lopt_downsample_area(float *out, const float *in, int n, int H, int W, int OH,
                          int OW)
{
    LOPT_ASSERT(n >= 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
    /* Scale coordinates by OH (rows) / OW (cols) so every boundary is an integer:
     * output row oy covers [oy*H, (oy+1)*H), input row i covers [i*OH, (i+1)*OH).
     * The weight of row i in output row oy is overlap / H (the band has length H),
     * exact for any ratio, e.g. 3.5 for 28 -> 8; the weights of a band sum to 1. */
    for (int b = 0; b < n; b++) {
        const float *img = in + (size_t)b * H * W;   /* (H,W) */
        float *o = out + (size_t)b * OH * OW;        /* (OH,OW) */
        for (int oy = 0; oy < OH; oy++) {
            long y0 = (long)oy * H, y1 = (long)(oy + 1) * H;
            int i0 = (int)(y0 / OH), i1 = (int)((y1 + OH - 1) / OH);   /* rows [i0,i1) */
            for (int ox = 0; ox < OW; ox++) {
                long x0 = (long)ox * W, x1 = (long)(ox + 1) * W;
                int j0 = (int)(x0 / OW), j1 = (int)((x1 + OW - 1) / OW);
                double acc = 0.0;
                for (int i = i0; i < i1; i++) {
                    long lo = (long)i * OH > y0 ? (long)i * OH : y0;
                    long hi = (long)(i + 1) * OH < y1 ? (long)(i + 1) * OH : y1;
                    double wy = (double)(hi - lo) / H;
                    double row = 0.0;
                    for (int j = j0; j < j1; j++) {
                        long l = (long)j * OW > x0 ? (long)j * OW : x0;
                        long h = (long)(j + 1) * OW < x1 ? (long)(j + 1) * OW : x1;
                        row += (double)(h - l) / W * img[(size_t)i * W + j];
                    }
                    acc += wy * row;
                }
                o[oy * OW + ox] = (float)acc;
            }
        }
    }
}

void lopt_dataset_gather(const lopt_dataset *d, const int32_t *idx, int B, float *x,
                         int32_t *y)
{
    size_t D = (size_t)d->h * d->w;
    for (int b = 0; b < B; b++) {
        LOPT_ASSERT(idx[b] >= 0 && idx[b] < d->n);
        memcpy(x + (size_t)b * D, d->x + (size_t)idx[b] * D, D * sizeof *x);
        y[b] = d->y[idx[b]];
    }
}

static void dataset_free(lopt_dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

void lopt_fmnist_free(lopt_fmnist *fm)
{
    if (!fm) return;
    for (int s = 0; s < 3; s++) dataset_free(&fm->split[s]);
}

/* Reads dir/name(.gz) as an IDX file. A file absent under both names is an I/O error
 * that tells the user which package provides it. */
static lopt_status read_member(const char *dir, const char *name, int *ndim,
                               int dims[4], unsigned char **data, lopt_err *err)
{
    char gz[4096], plain[4096];
    if (snprintf(gz, sizeof gz, "%s/%s.gz", dir, name) >= (int)sizeof gz ||
        snprintf(plain, sizeof plain, "%s/%s", dir, name) >= (int)sizeof plain)
        return lopt_fail(err, LOPT_EUSAGE, "dataset directory path too long: %s", dir);
    const char *path = gz;
    if (access(gz, F_OK) != 0) {
        if (access(plain, F_OK) != 0)
            return lopt_fail(err, LOPT_EIO,
                             "missing %s: install the Debian package %s (scripts/deps.sh)"
                             " or point LOPT_FMNIST_DIR at a copy",
                             gz, LOPT_FMNIST_PACKAGE);
        path = plain;
    }
    return lopt_idx_read(path, ndim, dims, data, err);
}

/* Loads one images/labels pair: checks shapes (n,28,28) and (n), equal counts and
 * labels in 0..9. On success *px and *py (caller frees) and *n are set. */
static lopt_status read_pair(const char *dir, const char *images, const char *labels,
                             unsigned char **px, unsigned char **py, int *n,
                             lopt_err *err)
{
    int nd_x, nd_y, dx[4], dy[4];
    unsigned char *x = NULL, *y = NULL;
    *px = *py = NULL;
    lopt_status st = read_member(dir, images, &nd_x, dx, &x, err);
    if (st != LOPT_OK) return st;
    st = read_member(dir, labels, &nd_y, dy, &y, err);
    if (st != LOPT_OK) {
        free(x);
        return st;
    }
    if (nd_x != 3 || dx[1] != FM_SIDE || dx[2] != FM_SIDE) {
        st = lopt_fail(err, LOPT_EFORMAT,
                       "%s/%s: images of shape %s%dx%d, want n x %d x %d", dir, images,
                       nd_x == 3 ? "" : "(not 3-d) ", dx[1], dx[2], FM_SIDE, FM_SIDE);
    } else if (nd_y != 1) {
        st = lopt_fail(err, LOPT_EFORMAT, "%s/%s: labels with %d dimensions, want 1", dir,
                       labels, nd_y);
    } else if (dx[0] != dy[0]) {
        st = lopt_fail(err, LOPT_EFORMAT,
                       "%s: %s has %d images but %s has %d labels", dir, images, dx[0],
                       labels, dy[0]);
    } else if (dx[0] < 1) {
        st = lopt_fail(err, LOPT_EFORMAT, "%s/%s: no images", dir, images);
    } else {
        for (int i = 0; i < dy[0]; i++)
            if (y[i] >= FM_CLASSES) {
                st = lopt_fail(err, LOPT_EFORMAT,
                               "%s/%s: label %d of example %d, want 0..9", dir, labels,
                               y[i], i);
                break;
            }
    }
    if (st != LOPT_OK) {
        free(x);
        free(y);
        return st;
    }
    *px = x;
    *py = y;
    *n = dx[0];
    return LOPT_OK;
}

/* Fills d with examples [first, first+n) of raw 28x28 images x and labels y,
 * normalised and resized to size x size. */
static void make_split(lopt_dataset *d, const unsigned char *x, const unsigned char *y,
                       int first, int n, int size)
{
    const size_t D = FM_SIDE * FM_SIDE;
    float img[FM_SIDE * FM_SIDE];   /* (28,28) one normalised image */
    d->n = n;
    d->h = d->w = size;
    d->x = lopt_xcalloc((size_t)n * size * size, sizeof *d->x);
    d->y = lopt_xcalloc((size_t)n, sizeof *d->y);
    for (int i = 0; i < n; i++) {
        const unsigned char *p = x + (size_t)(first + i) * D;
        float *dst = size == FM_SIDE ? d->x + (size_t)i * D : img;
        for (size_t k = 0; k < D; k++)
            dst[k] = ((float)p[k] / 255.0f - LOPT_FMNIST_MEAN) / LOPT_FMNIST_STD;
        if (size != FM_SIDE)
            lopt_downsample_area(d->x + (size_t)i * size * size, img, 1, FM_SIDE, FM_SIDE,
                                 size, size);
        d->y[i] = y[first + i];
    }
}

/* Beyond data.h's contract: a size outside 1..28 is LOPT_EUSAGE; on any failure fm is
 * left zeroed (lopt_fmnist_free on it is harmless). The 28x28 bytes of both files stay
 * in memory only while the splits are built. */
lopt_status lopt_fmnist_load(lopt_fmnist *fm, const char *dir, int size, lopt_err *err)
{
    memset(fm, 0, sizeof *fm);
    if (size < 1 || size > FM_SIDE)
        return lopt_fail(err, LOPT_EUSAGE, "image size %d, want 1..%d", size, FM_SIDE);
    if (!dir) dir = getenv("LOPT_FMNIST_DIR");
    if (!dir || !*dir) dir = LOPT_FMNIST_DIR;

    unsigned char *tx, *ty, *sx, *sy;
    int ntrain, ntest;
    lopt_status st = read_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                               &tx, &ty, &ntrain, err);
    if (st != LOPT_OK) return st;
    st = read_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &sx, &sy,
                   &ntest, err);
    if (st != LOPT_OK) {
        free(tx);
        free(ty);
        return st;
    }
    int nvalid = ntrain >= FM_FULL ? FM_VALID : ntrain / 6;
    if (nvalid < 1 || ntrain - nvalid < 1) {
        free(tx); free(ty); free(sx); free(sy);
        return lopt_fail(err, LOPT_EFORMAT,
                         "%s: %d training images are too few to split train/valid", dir,
                         ntrain);
    }
    make_split(&fm->split[LOPT_SPLIT_TRAIN], tx, ty, 0, ntrain - nvalid, size);
    make_split(&fm->split[LOPT_SPLIT_VALID], tx, ty, ntrain - nvalid, nvalid, size);
    make_split(&fm->split[LOPT_SPLIT_TEST], sx, sy, 0, ntest, size);
    free(tx); free(ty); free(sx); free(sy);
    return LOPT_OK;
}
