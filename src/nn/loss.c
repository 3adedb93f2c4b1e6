/* loss.c - mean softmax cross-entropy over a batch of logits z (B,K):
 *   L = (1/B) sum_b [ logsumexp(z_b) - z_b[label_b] ],  prob = softmax(z).
 * Its gradient is (prob - onehot)/B; its R-backward is the softmax Jacobian applied
 * to the logit tangent (Pearlmutter 1994, section 4; Schraudolph 2002 eq. 14 for the
 * matching-loss form). No R-forward: the loss tangent is never needed for H v.
 * Labels are trusted to lie in [0, K) (the data module validates them). */
#include <math.h>

#include "core/core.h"
#include "nn/nn.h"

double softmax_xent_forward(float *prob, int *correct, const float *z,
                            const int32_t *labels, int B, int K)
{
    double loss = 0.0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *zb = z + (size_t)b * K;   /* (K) */
        float *pb = prob + (size_t)b * K;      /* (K) */
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (zb[k] > zb[arg]) arg = k;
        /* one exp per logit (kept in double until normalised), not two */
        double m = zb[arg], sum = 0.0, e[64];
        LOPT_ASSERT(K <= 64);
        for (int k = 0; k < K; k++) sum += e[k] = exp((double)zb[k] - m);
        for (int k = 0; k < K; k++) pb[k] = (float)(e[k] / sum);
        loss += log(sum) + m - zb[labels[b]];
        hits += arg == labels[b];
    }
    if (correct) *correct = hits;
    return loss / B;
}

/* L = (1/B) sum_b [logsumexp(z_b) - z_b[y_b]]  =>  dz += (prob - onehot(y)) / B */
void softmax_xent_backward(float *dz, const float *prob, const int32_t *labels, int B,
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
void softmax_xent_rbackward(float *rdz, const float *prob, const float *rz, int B, int K)
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
