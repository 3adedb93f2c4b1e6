/* dense.c - the fully connected layer y = x W^T + b with its gradient and the
 * R-operator pair (Pearlmutter 1994, section 4: R{} of a linear map). All four are
 * row-major CBLAS sgemm calls; backward and R-backward accumulate (beta = 1).
 * Batch rows are (B,I) row-major, weights (O,I) as in torch.nn.Linear. */
#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would clobber the dense
 * size I in nn.h; C11 7.3.1p6 allows a program to undefine it. */
#undef I

#include "nn/nn.h"

/* y (B,O) = b broadcast, then += x W^T, so the GEMM never needs a zeroing pass */
static void rows_set_bias(float *y, const float *b, int B, int O)
{
    for (int i = 0; i < B; i++)
        for (int o = 0; o < O; o++) y[(size_t)i * O + o] = b[o];
}

/* db (O) += sum over the B rows of dy (B,O) */
static void rows_sum_into(float *db, const float *dy, int B, int O)
{
    for (int i = 0; i < B; i++)
        for (int o = 0; o < O; o++) db[o] += dy[(size_t)i * O + o];
}

void dense_forward(float *y, const float *x, const float *W, const float *b, int B,
                   int I, int O)
{
    rows_set_bias(y, b, B, O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, I, 1.0f, x, I, W, I,
                1.0f, y, O);
}

/* y = x W^T + b  =>  dx += dy W ; dW += dy^T x ; db += sum_b dy */
void dense_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                    const float *W, int B, int I, int O)
{
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, I, O, 1.0f, dy, O, W,
                    I, 1.0f, dx, I);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, B, 1.0f, dy, O, x, I,
                1.0f, dW, I);
    rows_sum_into(db, dy, B, O);
}

/* y = x W^T + b  =>  ry = rx W^T + x rW^T + rb */
void dense_rforward(float *ry, const float *rx, const float *x, const float *W,
                    const float *rW, const float *rb, int B, int I, int O)
{
    rows_set_bias(ry, rb, B, O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, I, 1.0f, x, I, rW, I,
                1.0f, ry, O);
    if (rx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, I, 1.0f, rx, I, W, I,
                    1.0f, ry, O);
}

/* dx = dy W, dW = dy^T x, db = sum_b dy, differentiated along (rx, rW, rb):
 *   R{dx} = rdy W + dy rW ;  R{dW} = rdy^T x + dy^T rx ;  R{db} = sum_b rdy */
void dense_rbackward(float *rdx, float *rdW, float *rdb, const float *rdy,
                     const float *dy, const float *x, const float *rx, const float *W,
                     const float *rW, int B, int I, int O)
{
    if (rdx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, I, O, 1.0f, rdy, O, W,
                    I, 1.0f, rdx, I);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, I, O, 1.0f, dy, O, rW,
                    I, 1.0f, rdx, I);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, B, 1.0f, rdy, O, x, I,
                1.0f, rdW, I);
    if (rx)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, B, 1.0f, dy, O, rx,
                    I, 1.0f, rdW, I);
    rows_sum_into(rdb, rdy, B, O);
}
