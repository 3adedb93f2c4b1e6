/* sampler.c - the seeded batch sampler: an infinite sequence of epochs, each a
 * permutation of 0..n-1, cut into consecutive batches of B (a batch may span an epoch
 * boundary). Batch `step` is a pure function of (seed, step): the permutation of
 * epoch e is a Fisher-Yates shuffle whose i-th swap draws
 * lopt_rng_u64(seed, LOPT_STREAM_BATCH, e*n + i), so no state but the seed is needed
 * to resume, and the cached permutation is only a speed-up.
 */
#include "data.h"

#include <stdlib.h>
#include <string.h>

void lopt_sampler_init(lopt_sampler *s, uint64_t seed, int n, int B)
{
    LOPT_ASSERT(n > 0 && B > 0);
    s->seed = seed;
    s->n = n;
    s->B = B;
    s->epoch = -1;
    s->perm = lopt_xcalloc((size_t)n, sizeof *s->perm);
}

void lopt_sampler_free(lopt_sampler *s)
{
    if (!s) return;
    free(s->perm);
    s->perm = NULL;
    s->epoch = -1;
}

/* Makes s->perm the permutation of `epoch`. The modulo's bias is below n / 2^64. */
static void sampler_shuffle(lopt_sampler *s, int64_t epoch)
{
    int32_t *p = s->perm;
    for (int i = 0; i < s->n; i++) p[i] = i;
    uint64_t base = (uint64_t)epoch * (uint64_t)s->n;
    for (int i = s->n - 1; i > 0; i--) {
        uint64_t r = lopt_rng_u64(s->seed, LOPT_STREAM_BATCH, base + (uint64_t)i);
        int j = (int)(r % (uint64_t)(i + 1));
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    s->epoch = epoch;
}

void lopt_sampler_batch(lopt_sampler *s, int64_t step, int32_t *idx)
{
    LOPT_ASSERT(step >= 0 && s->perm);
    int64_t pos = step * (int64_t)s->B;
    for (int k = 0; k < s->B; k++, pos++) {
        int64_t epoch = pos / s->n;
        if (epoch != s->epoch) sampler_shuffle(s, epoch);
        idx[k] = s->perm[pos % s->n];
    }
}
