/* loss.c - mean softmax cross-entropy over a batch of logits z (B,K):
 *   L = (1/B) sum_b [ logsumexp(z_b) - z_b[label_b] ],  prob = softmax(z).
 * Its gradient is (prob - onehot)/B; its R-backward is the softmax Jacobian applied
 * to the logit tangent (Pearlmutter 1994, section 4; Schraudolph 2002 eq. 14 for the
 * matching-loss form). No R-forward: the loss tangent is never needed for H v.
 * Labels are trusted to lie in [0, K) (the data module validates them). */
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LS_X86 1
#endif

#include "core/core.h"
#include "nn/nn.h"

#ifdef LS_X86
/* exp of 8 doubles, x <= 0 (logits minus their maximum): x = n ln2 + r with
 * |r| <= ln2/2 (Cody-Waite split of ln2, exact products for |n| < 2^32), e^r by its
 * Taylor series to r^13 (truncation < 2e-16 relative), times 2^n by vscalefpd,
 * which also underflows to 0. Within 1 ulp of glibc's exp on [-60, 0] (measured
 * over 1.6e7 draws); NaN stays NaN; x < -750 (including -inf) is taken as -750,
 * whose exp is 0 either way. Why: glibc's exp per logit was a third of an
 * fmnist8-mlp forward pass. */
__attribute__((target("avx512f"))) static __m512d exp8_neg(__m512d x)
{
    static const double c[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5,
                                 1.0,                1.0};
    x = _mm512_max_pd(_mm512_set1_pd(-750.0), x);   /* max(a, NaN) returns the NaN */
    __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634074)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93145751953125E-1), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.42860682030941723212E-6), r);
    __m512d p = _mm512_set1_pd(c[0]);
    for (int i = 1; i < 14; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[i]));
    return _mm512_scalef_pd(p, n);
}

/* x[i] = exp(x[i]), i < n, for x <= 0 */
__attribute__((target("avx512f"))) static void exp_neg_avx512(double *x, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 mk = (__mmask8)(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1);
        _mm512_mask_storeu_pd(x + i, mk, exp8_neg(_mm512_maskz_loadu_pd(mk, x + i)));
    }
}
#endif

static void exp_neg(double *x, size_t n)
{
#ifdef LS_X86
    if (nn_isa_active() == NN_ISA_AVX512) {
        exp_neg_avx512(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) x[i] = exp(x[i]);
}

/* Rows are done a chunk at a time, each pass over the whole chunk: maxima and the
 * shifted logits, then their exps as one flat vector, then sums and probabilities.
 * Why: row by row, every row waited for its own exps (a 14-step chain of dependent
 * multiply-adds, ~70 cycles for 10 logits) before summing them, ~35 ns a row; a flat
 * vector of independent exps runs at the multiply-adds' throughput. Each value is
 * computed by the same operations as row by row, so the results are the same. */
double nn_softmax_xent_forward(float *prob, int *correct, const float *z,
                            const int32_t *labels, int B, int K)
{
    enum { CHUNK = 1024 };   /* shifted logits, then exps, of a chunk: 8 KB */
    double e[CHUNK], mrow[CHUNK];
    int argr[CHUNK];
    LOPT_ASSERT(K >= 1 && K <= 64);
    const int rows = CHUNK / K;
    double loss = 0.0;
    int hits = 0;
    for (int b0 = 0; b0 < B; b0 += rows) {
        const int nb = B - b0 < rows ? B - b0 : rows;
        for (int r = 0; r < nb; r++) {
            const float *zb = z + (size_t)(b0 + r) * K;   /* (K) */
            int arg = 0;
            for (int k = 1; k < K; k++)
                if (zb[k] > zb[arg]) arg = k;
            const double m = zb[arg];
            for (int k = 0; k < K; k++) e[r * K + k] = (double)zb[k] - m;
            mrow[r] = m;
            argr[r] = arg;
        }
        /* one exp per logit (kept in double until normalised), not two */
        exp_neg(e, (size_t)nb * K);
        for (int r = 0; r < nb; r++) {
            const int b = b0 + r;
            const float *zb = z + (size_t)b * K;
            float *pb = prob + (size_t)b * K;
            const double *er = e + (size_t)r * K;
            double sum = 0.0;
            for (int k = 0; k < K; k++) sum += er[k];
            const double inv = 1.0 / sum;   /* one division per row; prob is float anyway */
            for (int k = 0; k < K; k++) pb[k] = (float)(er[k] * inv);
            loss += log(sum) + mrow[r] - zb[labels[b]];
            hits += argr[r] == labels[b];
        }
    }
    if (correct) *correct = hits;
    return loss / B;
}

/* L = (1/B) sum_b [logsumexp(z_b) - z_b[y_b]]  =>  dz += (prob - onehot(y)) / B */
void nn_softmax_xent_backward(float *dz, const float *prob, const int32_t *labels, int B,
                           int K)
{
    float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        float *db = dz + (size_t)b * K;
        const float *pb = prob + (size_t)b * K;
        for (int k = 0; k < K; k++) db[k] += pb[k] * inv;
        db[labels[b]] -= inv;
    }
}

/* dz = (prob - onehot)/B with prob = softmax(z)  =>
 * R{dz} = R{prob}/B = (prob * rz - prob <prob, rz>) / B  (softmax Jacobian) */
void nn_softmax_xent_rbackward(float *rdz, const float *prob, const float *rz, int B, int K)
{
    float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        float *rb = rdz + (size_t)b * K;
        const float *pb = prob + (size_t)b * K;
        const float *zb = rz + (size_t)b * K;
        double dot = 0.0;
        for (int k = 0; k < K; k++) dot += (double)pb[k] * zb[k];
        for (int k = 0; k < K; k++) rb[k] += pb[k] * (zb[k] - (float)dot) * inv;
    }
}
