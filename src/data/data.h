/* data.h - Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files, gzip),
 * the splits and normalisation of docs/design.md section 3, 8x8 area downsampling, and a
 * seeded batch sampler.
 *
 * Splits: train = first 50,000 training images, valid = last 10,000, test = the
 * 10,000 t10k images. Pixels /255, then (x - 0.2860) / 0.3530.
 */
#ifndef LOPT_DATA_H
#define LOPT_DATA_H

#include <stdint.h>

#include "lopt.h"          /* lopt_split */
#include "core/core.h"

#define LOPT_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define LOPT_FMNIST_PACKAGE "dataset-fashion-mnist"
#define LOPT_FMNIST_MEAN 0.2860f
#define LOPT_FMNIST_STD 0.3530f

typedef struct {
    int n;          /* examples */
    int h, w;       /* image height, width (one channel) */
    float *x;       /* (n, h*w) normalised pixels, owned */
    int32_t *y;     /* (n) labels in 0..9, owned */
} lopt_dataset;

/* lopt_split (train, valid, test) is public: include/lopt.h. */

typedef struct {
    lopt_dataset split[3];   /* indexed by lopt_split */
} lopt_fmnist;

/* Reads an IDX file, gzip-compressed or plain (detected by the gzip magic).
 * On success *data (malloc'ed, caller frees) holds the payload as unsigned bytes,
 * ndim/dims the shape. Refuses anything but unsigned-byte IDX with 1..4 dims, and
 * payloads shorter or longer than the header says. */
lopt_status lopt_idx_read(const char *path, int *ndim, int dims[4],
                          unsigned char **data, lopt_err *err);

/* Loads the four files from dir (NULL: $LOPT_FMNIST_DIR, else LOPT_FMNIST_DIR),
 * normalised, downsampled to size x size by area averaging when size < 28.
 * A missing file yields an error naming the Debian package to install; image and
 * label counts that do not agree yield a format error. */
lopt_status lopt_fmnist_load(lopt_fmnist *fm, const char *dir, int size, lopt_err *err);
void lopt_fmnist_free(lopt_fmnist *fm);   /* NULL-safe, idempotent */

/* Area-averaging resize of n single-channel images (n,H,W) -> (n,OH,OW): each output
 * pixel is the mean of the input area it covers, fractional pixels weighted by their
 * overlap (like torch's adaptive_avg_pool2d only when the ratio is an integer; exact
 * area weights otherwise, e.g. 28 -> 8). */
void lopt_downsample_area(float *out, const float *in, int n, int H, int W, int OH,
                          int OW);

/* Seeded sampler: the infinite sequence of epochs, each a permutation of 0..n-1
 * drawn from (seed, LOPT_STREAM_BATCH, epoch); batch number `step` takes positions
 * [step*B, (step+1)*B) of that sequence. A pure function of (seed, step): resumed
 * runs and antithetic pairs see the same batches. */
typedef struct {
    uint64_t seed;
    int n, B;
    int64_t epoch;     /* epoch whose permutation is cached, -1 none */
    int32_t *perm;     /* (n) */
} lopt_sampler;

void lopt_sampler_init(lopt_sampler *s, uint64_t seed, int n, int B);
void lopt_sampler_free(lopt_sampler *s);
void lopt_sampler_batch(lopt_sampler *s, int64_t step, int32_t *idx /* (B) */);

/* Copies examples idx[0..B) into x (B, h*w) and y (B). */
void lopt_dataset_gather(const lopt_dataset *d, const int32_t *idx, int B, float *x,
                         int32_t *y);

#endif
