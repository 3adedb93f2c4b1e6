/* conv.c - 2-D convolution (cross-correlation, as torch.nn.Conv2d) over a batch
 * stored (C,B,H,W), as im2col + one GEMM (Chellapilla et al. 2006; darknet, Caffe):
 *   col (C*KH*KW, B*OH*OW) = im2col(x)
 *   y   (O, B*OH*OW)       = W (O, C*KH*KW) x col + b
 * with its gradient and R-operator pair (Pearlmutter 1994): y is bilinear in
 * (W, x), so R{y} = W * rx + rW * x + rb and the R-backward is the backward applied
 * to (rdy, dy) with the weights (W, rW) and columns (col, rcol).
 *
 * The forward and the weight gradient are one GEMM each over the whole batch; the
 * input adjoint W^T dy is formed and folded back by col2im one batch slice at a
 * time (conv_slice_images), so it never leaves L2.
 *
 * Two im2col/col2im paths: a general one (any kernel, stride, padding; per-row
 * index ranges, no per-element bounds checks), and a fast one for the 3x3 / pad 1 /
 * stride 1 case, where every column row of a plane is the plane itself shifted by
 * (kh-1, kw-1): one contiguous copy plus a few zeroed border cells. Dilation and
 * groups are not supported. Threads: OpenBLAS's in the GEMMs, OpenMP's in the
 * copies only when OpenBLAS is single-threaded (kern.h). */
#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would clobber the dense
 * size I in nn.h; C11 7.3.1p6 allows a program to undefine it. */
#undef I
#include <stddef.h>
#include <string.h>

#include "core/core.h"
#include "nn/kern.h"
#include "nn/nn.h"

conv_shape nn_conv_shape_make(int B, int C, int H, int W, int O, int KH, int KW,
                           int stride, int pad)
{
    LOPT_ASSERT(B > 0 && C > 0 && H > 0 && W > 0 && O > 0 && KH > 0 && KW > 0);
    LOPT_ASSERT(stride > 0 && pad >= 0);
    LOPT_ASSERT(H + 2 * pad >= KH && W + 2 * pad >= KW);
    conv_shape s = {B, C, H, W, O, KH, KW, stride, pad, 0, 0};
    s.OH = (H + 2 * pad - KH) / stride + 1;
    s.OW = (W + 2 * pad - KW) / stride + 1;
    return s;
}

size_t nn_conv_col_floats(const conv_shape *s)
{
    return (size_t)s->C * s->KH * s->KW * s->B * s->OH * s->OW;
}

static int conv_is_3x3_same(const conv_shape *s)
{
    return s->KH == 3 && s->KW == 3 && s->stride == 1 && s->pad == 1 && s->H >= 2 &&
           s->W >= 2;
}

/* ---- general im2col / col2im -------------------------------------------------------
 * col[(c,kh,kw), (b,oh,ow)] = x[c, b, oh*st - pad + kh, ow*st - pad + kw], 0 outside.
 * For a fixed kw the valid ow form one range [ow0, ow1). */
static void ow_range(int *ow0, int *ow1, int kw, const conv_shape *s)
{
    int lo = s->pad - kw, hi = s->W - 1 + s->pad - kw;   /* need lo <= ow*st <= hi */
    int a = lo <= 0 ? 0 : (lo + s->stride - 1) / s->stride;
    int e = hi < 0 ? 0 : hi / s->stride + 1;
    if (e > s->OW) e = s->OW;
    if (e < a) e = a;
    *ow0 = a;
    *ow1 = e;
}

static void im2col_general(float *col, const float *x, const conv_shape *s)
{
    const int B = s->B, KK = s->KH * s->KW, st = s->stride;
    const size_t HW = (size_t)s->H * s->W, OHW = (size_t)s->OH * s->OW, N = B * OHW;
    const long tasks = (long)s->C * KK * B;
    NN_OMP(parallel for if (parallel: nn_par((size_t)tasks * OHW)) schedule(static))
    for (long t = 0; t < tasks; t++) {
        int r = (int)(t / B), b = (int)(t % B);         /* r = (c,kh,kw) */
        int c = r / KK, kh = r % KK / s->KW, kw = r % s->KW;
        const float *xp = x + ((size_t)c * B + b) * HW;   /* (H,W) */
        float *cp = col + r * N + b * OHW;                /* (OH,OW) */
        int ow0, ow1;
        ow_range(&ow0, &ow1, kw, s);
        for (int oh = 0; oh < s->OH; oh++) {
            float *row = cp + (size_t)oh * s->OW;
            int ih = oh * st - s->pad + kh;
            if (ih < 0 || ih >= s->H) {
                memset(row, 0, sizeof(float) * s->OW);
                continue;
            }
            const float *xr = xp + (size_t)ih * s->W;   /* (W) input row ih */
            const int iw0 = kw - s->pad;                /* iw = ow*st + iw0, >= 0 on range */
            for (int ow = 0; ow < ow0; ow++) row[ow] = 0.0f;
            if (st == 1)
                memcpy(row + ow0, xr + ow0 + iw0, sizeof(float) * (ow1 - ow0));
            else
                for (int ow = ow0; ow < ow1; ow++) row[ow] = xr[ow * st + iw0];
            for (int ow = ow1; ow < s->OW; ow++) row[ow] = 0.0f;
        }
    }
}

/* the adjoint of im2col over the images [b0, b0+nb): dx[c,b,ih,iw] += every col
 * entry that copied it, col being the (C*KH*KW, nb*OH*OW) slice of those images.
 * One task per (c,b) plane, so no two threads touch one dx element. */
static void col2im_general(float *dx, const float *col, const conv_shape *s, int b0,
                           int nb)
{
    const int st = s->stride;
    const size_t HW = (size_t)s->H * s->W, OHW = (size_t)s->OH * s->OW, ld = nb * OHW;
    const long planes = (long)s->C * nb;
    NN_OMP(parallel for if (parallel: nn_par((size_t)planes * s->KH * s->KW * OHW))
           schedule(static))
    for (long t = 0; t < planes; t++) {
        int c = (int)(t / nb), b = (int)(t % nb);
        float *dxp = dx + ((size_t)c * s->B + b0 + b) * HW;   /* (H,W) */
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                size_t r = ((size_t)c * s->KH + kh) * s->KW + kw;
                const float *cp = col + r * ld + b * OHW;   /* (OH,OW) */
                int ow0, ow1;
                ow_range(&ow0, &ow1, kw, s);
                for (int oh = 0; oh < s->OH; oh++) {
                    int ih = oh * st - s->pad + kh;
                    if (ih < 0 || ih >= s->H) continue;
                    const float *row = cp + (size_t)oh * s->OW;
                    float *dr = dxp + (size_t)ih * s->W;   /* (W) adjoint row ih */
                    const int iw0 = kw - s->pad;
                    for (int ow = ow0; ow < ow1; ow++) dr[ow * st + iw0] += row[ow];
                }
            }
    }
}

/* ---- 3x3, pad 1, stride 1 ------------------------------------------------------------
 * OH = H, OW = W and col[(c,kh,kw), (b,j)] = x[c,b][j + (kh-1)W + (kw-1)] for the
 * flat output index j = oh*W + ow, wherever (oh+kh-1, ow+kw-1) is inside the plane.
 * Rows oh outside [lo,hi) are zero; within them, the kw = 0 / 2 shifts wrap into the
 * neighbouring row at column 0 / W-1, which is then overwritten with zero. */
static void im2col_3x3(float *col, const float *x, const conv_shape *s)
{
    const int B = s->B, H = s->H, W = s->W;
    const size_t HW = (size_t)H * W, N = B * HW;
    const long planes = (long)s->C * B;
    NN_OMP(parallel for if (parallel: nn_par(nn_conv_col_floats(s))) schedule(static))
    for (long t = 0; t < planes; t++) {
        int c = (int)(t / B), b = (int)(t % B);
        const float *xp = x + (size_t)t * HW;   /* (H,W), t = c*B + b */
        for (int kh = 0; kh < 3; kh++) {
            int lo = kh == 0 ? 1 : 0, hi = kh == 2 ? H - 1 : H;   /* valid oh */
            size_t j0 = (size_t)lo * W, j1 = (size_t)hi * W;
            for (int kw = 0; kw < 3; kw++) {
                float *cp = col + ((size_t)c * 9 + kh * 3 + kw) * N + b * HW;   /* (H,W) */
                ptrdiff_t d = (ptrdiff_t)(kh - 1) * W + (kw - 1);   /* cp[j] = xp[j + d] */
                if (lo) memset(cp, 0, sizeof(float) * W);
                if (hi < H) memset(cp + (size_t)(H - 1) * W, 0, sizeof(float) * W);
                if (kw == 0) {   /* j = j0 would read xp[-1] when kh = 1 */
                    memcpy(cp + j0 + 1, xp + ((ptrdiff_t)j0 + 1 + d),
                           sizeof(float) * (j1 - j0 - 1));
                    for (int oh = lo; oh < hi; oh++) cp[(size_t)oh * W] = 0.0f;
                } else if (kw == 1) {
                    memcpy(cp + j0, xp + ((ptrdiff_t)j0 + d), sizeof(float) * (j1 - j0));
                } else {         /* j = j1-1 would read xp[HW] when kh = 1 */
                    memcpy(cp + j0, xp + ((ptrdiff_t)j0 + d), sizeof(float) * (j1 - j0 - 1));
                    for (int oh = lo; oh < hi; oh++) cp[(size_t)oh * W + W - 1] = 0.0f;
                }
            }
        }
    }
}

/* dx[c,b, oh+kh-1, ow+kw-1] += col[(c,kh,kw), (b,oh,ow)] over the images
 * [b0, b0+nb) (col: their (C*9, nb*H*W) slice), gathered per dx row: row ih
 * receives, for each kh with oh = ih-kh+1 valid, the three column rows shifted by
 * kw-1 = -1, 0, +1 (kw = 0 never reaches column W-1, kw = 2 never column 0). */
static void col2im_3x3(float *dx, const float *col, const conv_shape *s, int b0, int nb)
{
    const int H = s->H, W = s->W;
    const size_t HW = (size_t)H * W, ld = nb * HW;
    const long planes = (long)s->C * nb;
    NN_OMP(parallel for if (parallel: nn_par((size_t)planes * 9 * HW)) schedule(static))
    for (long t = 0; t < planes; t++) {
        int c = (int)(t / nb), b = (int)(t % nb);
        float *dxp = dx + ((size_t)c * s->B + b0 + b) * HW;   /* (H,W) */
        for (int kh = 0; kh < 3; kh++) {
            const float *c0 = col + ((size_t)c * 9 + kh * 3) * ld + b * HW;   /* kw = 0 */
            const float *c1 = c0 + ld, *c2 = c1 + ld;                         /* kw = 1, 2 */
            int lo = kh == 0 ? 1 : 0, hi = kh == 2 ? H - 1 : H;
            for (int oh = lo; oh < hi; oh++) {
                float *restrict d = dxp + (size_t)(oh + kh - 1) * W;   /* (W) */
                const float *r0 = c0 + (size_t)oh * W, *r1 = c1 + (size_t)oh * W,
                            *r2 = c2 + (size_t)oh * W;
                d[0] += r0[1] + r1[0];
                for (int iw = 1; iw < W - 1; iw++) d[iw] += r0[iw + 1] + r1[iw] + r2[iw - 1];
                d[W - 1] += r1[W - 1] + r2[W - 2];
            }
        }
    }
}

static void im2col(float *col, const float *x, const conv_shape *s)
{
    if (conv_is_3x3_same(s))
        im2col_3x3(col, x, s);
    else
        im2col_general(col, x, s);
}

static void col2im(float *dx, const float *col, const conv_shape *s, int b0, int nb)
{
    if (conv_is_3x3_same(s))
        col2im_3x3(dx, col, s, b0, nb);
    else
        col2im_general(dx, col, s, b0, nb);
}

/* Images per slice of the input-adjoint pass: dcol = W^T dy is produced and folded
 * back by col2im one slice at a time, so the slice (CKK, nb*OH*OW) stays in L2
 * instead of a full-batch matrix making two trips to memory (and one more for the
 * zeroing OpenBLAS does for beta = 0). */
#define CONV_SLICE_BYTES (512 * 1024)

static int conv_slice_images(const conv_shape *s)
{
    size_t per = (size_t)s->C * s->KH * s->KW * s->OH * s->OW * sizeof(float);
    size_t nb = CONV_SLICE_BYTES / per;
    if (nb < 1) nb = 1;
    if (nb > (size_t)s->B) nb = (size_t)s->B;
    return (int)nb;
}

/* dW (O,CKK) += a (O,N) b^T, b (CKK,N): the weight-gradient GEMM. When its output
 * is tiny and its reduction long (conv1 of the fmnist CNN: 16 x 9 outputs over
 * N = 100352) OpenBLAS's threads split the outputs, not the reduction, and spend
 * the time synchronising (measured 1.8 ms on 2 threads, 0.76 ms on one). Such
 * products are cut into reduction slices of at most CONV_SMALL_GEMM multiply-adds,
 * below the size from which OpenBLAS threads a GEMM (65536 x 4 in interface/gemm.c),
 * so each runs on the calling thread. */
#define CONV_SMALL_GEMM ((size_t)1 << 18)
#define CONV_SMALL_OUT 1024

static void gemm_weight_grad(float *dW, const float *a, const float *b, int O, int CKK,
                             size_t N)
{
    size_t out = (size_t)O * CKK;
    size_t slice = out < CONV_SMALL_OUT ? CONV_SMALL_GEMM / out : N;
    for (size_t j0 = 0; j0 < N; j0 += slice) {
        size_t c = N - j0 < slice ? N - j0 : slice;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, CKK, (int)c, 1.0f,
                    a + j0, (int)N, b + j0, (int)N, 1.0f, dW, CKK);
    }
}

/* ---- bias -------------------------------------------------------------------------- */

/* y[o, :] = b[o]  (y (O,N)); the GEMM then accumulates with beta = 1, which spares
 * the zeroing pass OpenBLAS makes for beta = 0 */
static void rows_set_bias(float *y, const float *b, int O, size_t N)
{
    NN_OMP(parallel for if (parallel: nn_par((size_t)O * N)) schedule(static))
    for (int o = 0; o < O; o++) {
        float *yo = y + (size_t)o * N, v = b[o];
        for (size_t j = 0; j < N; j++) yo[j] = v;
    }
}

/* db[o] += sum_j dy[o, j]  (dy (O,N)); 16 independent float lanes so the loop
 * vectorises without reassociation, combined in double */
static void rows_sum_into(float *db, const float *dy, int O, size_t N)
{
    NN_OMP(parallel for if (parallel: nn_par((size_t)O * N)) schedule(static))
    for (int o = 0; o < O; o++) {
        const float *r = dy + (size_t)o * N;
        float acc[16] = {0};
        size_t j = 0;
        for (; j + 16 <= N; j += 16)
            for (int l = 0; l < 16; l++) acc[l] += r[j + l];
        double sum = 0.0;
        for (int l = 0; l < 16; l++) sum += acc[l];
        for (; j < N; j++) sum += r[j];
        db[o] += (float)sum;
    }
}

/* ---- the layer ------------------------------------------------------------------------ */

void nn_conv2d_forward(float *y, float *col, const float *x, const float *W,
                    const float *b, const conv_shape *s)
{
    const int CKK = s->C * s->KH * s->KW;
    const size_t N = (size_t)s->B * s->OH * s->OW;
    im2col(col, x, s);                  /* col (CKK, N) */
    rows_set_bias(y, b, s->O, N);       /* y (O, N) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->O, (int)N, CKK, 1.0f, W,
                CKK, col, (int)N, 1.0f, y, (int)N);
}

/* y = W col + b, col = im2col(x)  =>
 *   dW += dy col^T ;  db += sum_j dy ;  dx += col2im(W^T dy) */
/* dx += col2im(W^T dy [+ W2^T dy2]): the input adjoint, formed and folded back one
 * batch slice at a time (conv_slice_images) so the column block stays in cache.
 * scratch: (C*KH*KW, slice*OH*OW). W2, dy2 may be NULL (backward) or the R-pair's
 * second term (R-backward). */
static void input_adjoint(float *dx, const float *W, const float *dy, const float *W2,
                          const float *dy2, const conv_shape *s, float *scratch)
{
    const int CKK = s->C * s->KH * s->KW;
    const size_t N = (size_t)s->B * s->OH * s->OW, OHW = (size_t)s->OH * s->OW;
    const int nb = conv_slice_images(s);
    for (int b0 = 0; b0 < s->B; b0 += nb) {
        int n = s->B - b0 < nb ? s->B - b0 : nb;
        int cols = (int)(n * OHW);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, cols, s->O, 1.0f, W, CKK,
                    dy + b0 * OHW, (int)N, 0.0f, scratch, cols);
        if (W2)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, cols, s->O, 1.0f, W2,
                        CKK, dy2 + b0 * OHW, (int)N, 1.0f, scratch, cols);
        col2im(dx, scratch, s, b0, n);
    }
}

void nn_conv2d_backward(float *dx, float *dW, float *db, const float *dy,
                     const float *col, const float *W, const conv_shape *s,
                     float *scratch)
{
    const int CKK = s->C * s->KH * s->KW;
    const size_t N = (size_t)s->B * s->OH * s->OW;
    gemm_weight_grad(dW, dy, col, s->O, CKK, N);   /* dW (O,CKK) += dy col^T */
    rows_sum_into(db, dy, s->O, N);
    if (dx) input_adjoint(dx, W, dy, NULL, NULL, s, scratch);
}

/* y = W col + b  =>  ry = W rcol + rW col + rb,  rcol = im2col(rx) */
void nn_conv2d_rforward(float *ry, float *rcol, const float *rx, const float *col,
                     const float *W, const float *rW, const float *rb,
                     const conv_shape *s)
{
    const int CKK = s->C * s->KH * s->KW;
    const size_t N = (size_t)s->B * s->OH * s->OW;
    rows_set_bias(ry, rb, s->O, N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->O, (int)N, CKK, 1.0f, rW,
                CKK, col, (int)N, 1.0f, ry, (int)N);
    if (rx) {
        im2col(rcol, rx, s);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->O, (int)N, CKK, 1.0f,
                    W, CKK, rcol, (int)N, 1.0f, ry, (int)N);
    }
}

/* dW = dy col^T, db = sum dy, dcol = W^T dy, differentiated along (rx, rW, rb):
 *   R{dW} = rdy col^T + dy rcol^T ;  R{db} = sum rdy ;
 *   R{dx} = col2im(W^T rdy + rW^T dy) */
void nn_conv2d_rbackward(float *rdx, float *rdW, float *rdb, const float *rdy,
                      const float *dy, const float *col, const float *rcol,
                      const float *W, const float *rW, const conv_shape *s,
                      float *scratch)
{
    const int CKK = s->C * s->KH * s->KW;
    const size_t N = (size_t)s->B * s->OH * s->OW;
    gemm_weight_grad(rdW, rdy, col, s->O, CKK, N);          /* rdW += rdy col^T */
    if (rcol) gemm_weight_grad(rdW, dy, rcol, s->O, CKK, N);  /* rdW += dy rcol^T */
    rows_sum_into(rdb, rdy, s->O, N);
    /* R{dcol} = W^T rdy + rW^T dy */
    if (rdx) input_adjoint(rdx, W, rdy, rW, dy, s, scratch);
}
