/* pool.c - max-pooling (k x k windows, stride k, floor division: trailing rows and
 * columns that do not fill a window are dropped, like torch's ceil_mode=False) and
 * global average pooling, with their gradients and R-pairs.
 * Max-pool is piecewise linear: its R-forward gathers tangents through the cached
 * argmax and its R-backward scatters them, exactly like its backward (Pearlmutter
 * 1994; second derivative zero away from ties). Global average pooling is linear, so
 * its R-pair is nn_gap_forward / nn_gap_backward applied to tangents.
 * Ties pick the first maximum in row-major window order, and a NaN wins (as torch),
 * so divergence is not hidden. */
#include "nn/kern.h"
#include "nn/nn.h"

/* a k x k window whose output is (m, at): if the window holds a NaN, the first NaN
 * wins instead (the > comparisons that found (m, at) pass over NaN) */
static void window_nan(float *m, int32_t *at, const float *x, int W, int32_t first,
                       int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            int32_t idx = first + i * W + j;
            if (x[idx] != x[idx]) {
                *m = x[idx];
                *at = idx;
                return;
            }
        }
}

/* one plane, 2x2 windows: the pooling of every conv layer of the fmnist CNN.
 * Selects only, so the loop vectorises and never mispredicts (on ReLU outputs the
 * comparisons are coin flips): row-major first maximum = max(max(a, b), max(c, d))
 * with ties kept on the left / upper side. Assumes finite inputs; see
 * plane_is_finite. */
static void maxpool2_plane(float *restrict y, int32_t *restrict am,
                           const float *restrict x, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = x + (size_t)2 * oh * W;   /* (W) window row 0 */
        const float *r1 = r0 + W;                   /* (W) window row 1 */
        for (int ow = 0; ow < OW; ow++) {
            float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            int t0 = b > a, t1 = d > c;
            float m0 = t0 ? b : a, m1 = t1 ? d : c;
            int t = m1 > m0;
            y[oh * OW + ow] = t ? m1 : m0;
            am[oh * OW + ow] = 2 * oh * W + 2 * ow + t * (W + t1 - t0) + t0;
        }
    }
}

/* 1 if x (n) holds no NaN or inf: x * 0 is 0 exactly for finite x. 16 independent
 * lanes so the loop vectorises; the input is in L1, just read by the pooling. */
static int plane_is_finite(const float *x, int n)
{
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += x[i + l] * 0.0f;
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += x[i] * 0.0f;
    return s == 0.0f;
}

static void maxpool_plane(float *y, int32_t *am, const float *x, int H, int W, int k)
{
    int OH = H / k, OW = W / k;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            int32_t at = oh * k * W + ow * k;
            float best = x[at];
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) {
                    int32_t idx = (oh * k + i) * W + ow * k + j;
                    if (x[idx] > best) {
                        best = x[idx];
                        at = idx;
                    }
                }
            window_nan(&best, &at, x, W, oh * k * W + ow * k, k);
            y[oh * OW + ow] = best;
            am[oh * OW + ow] = at;
        }
}

void nn_maxpool_forward(float *y, int32_t *argmax, const float *x, int P, int H, int W,
                     int k)
{
    size_t HW = (size_t)H * W, OHW = (size_t)(H / k) * (W / k);
    NN_OMP(parallel for if (parallel: nn_par((size_t)P * HW)) schedule(static))
    for (int p = 0; p < P; p++) {
        /* the general path also handles planes with NaN or inf (rare, divergence) */
        if (k == 2) {
            maxpool2_plane(y + p * OHW, argmax + p * OHW, x + p * HW, H, W);
            if (!plane_is_finite(x + p * HW, (int)HW))
                maxpool_plane(y + p * OHW, argmax + p * OHW, x + p * HW, H, W, k);
        } else {
            maxpool_plane(y + p * OHW, argmax + p * OHW, x + p * HW, H, W, k);
        }
    }
}

/* y[j] = x[argmax[j]] (per plane)  =>  dx[argmax[j]] += dy[j]. Windows do not
 * overlap, so planes are independent and no two outputs hit one input. */
void nn_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, int P, int H,
                      int W, int k)
{
    size_t HW = (size_t)H * W, OHW = (size_t)(H / k) * (W / k);
    NN_OMP(parallel for if (parallel: nn_par((size_t)P * HW)) schedule(static))
    for (int p = 0; p < P; p++) {
        float *dxp = dx + p * HW;             /* (H,W) */
        const float *dyp = dy + p * OHW;      /* (OH,OW) */
        const int32_t *ap = argmax + p * OHW; /* (OH,OW) */
        for (size_t j = 0; j < OHW; j++) dxp[ap[j]] += dyp[j];
    }
}

/* y[j] = x[argmax[j]]  =>  ry[j] = rx[argmax[j]] */
void nn_maxpool_rforward(float *ry, const float *rx, const int32_t *argmax, int P, int H,
                      int W, int k)
{
    size_t HW = (size_t)H * W, OHW = (size_t)(H / k) * (W / k);
    NN_OMP(parallel for if (parallel: nn_par((size_t)P * HW)) schedule(static))
    for (int p = 0; p < P; p++) {
        const float *rxp = rx + p * HW;
        for (size_t j = 0; j < OHW; j++) ry[p * OHW + j] = rxp[argmax[p * OHW + j]];
    }
}

/* dx[argmax[j]] += dy[j] is linear in dy with a fixed argmax  =>
 * R{dx}[argmax[j]] += rdy[j] */
void nn_maxpool_rbackward(float *rdx, const float *rdy, const int32_t *argmax, int P,
                       int H, int W, int k)
{
    nn_maxpool_backward(rdx, rdy, argmax, P, H, W, k);
}

/* y[b,c] = (1/HW) sum_i x[c,b,i] */
void nn_gap_forward(float *y, const float *x, int C, int B, int HW)
{
    float inv = 1.0f / (float)HW;
    NN_OMP(parallel for if (parallel: nn_par((size_t)C * B * HW)) schedule(static))
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            const float *xp = x + ((size_t)c * B + b) * HW;   /* (HW) */
            float s = 0.0f;
            for (int i = 0; i < HW; i++) s += xp[i];
            y[(size_t)b * C + c] = s * inv;
        }
}

/* y[b,c] = (1/HW) sum_i x[c,b,i]  =>  dx[c,b,i] += dy[b,c] / HW */
void nn_gap_backward(float *dx, const float *dy, int C, int B, int HW)
{
    float inv = 1.0f / (float)HW;
    NN_OMP(parallel for if (parallel: nn_par((size_t)C * B * HW)) schedule(static))
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            float *dxp = dx + ((size_t)c * B + b) * HW;   /* (HW) */
            float g = dy[(size_t)b * C + c] * inv;
            for (int i = 0; i < HW; i++) dxp[i] += g;
        }
}
