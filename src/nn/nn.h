/* nn.h - the layers lopt trains: forward, backward, and the R-operator pair that
 * gives the exact Hessian-vector product (Pearlmutter 1994, "Fast exact
 * multiplication by the Hessian").
 *
 * For a network f(w) with loss L, the R-operator R{.} = d/dr (.)(w + r v) |r=0
 * propagates a parameter direction v:
 *   rforward  : tangents  R{a}  of every activation a   (rx, rW, rb -> ry)
 *   rbackward : tangents  R{da} of every adjoint da      (-> rdW = (H v)_W)
 * so H v is read off the rbackward parameter outputs. Linear ops reuse their own
 * kernels for tangents; nonlinear ones add the curvature term (tanh) or none (ReLU,
 * max-pool: piecewise linear, second derivative zero almost everywhere).
 *
 * Conventions (STYLE.md): outputs first, then inputs, cached forward values, sizes.
 * Forward and rforward overwrite their outputs; backward and rbackward ACCUMULATE
 * (+=) into their outputs, which the caller zeroes. An output pointer for an input
 * adjoint (dx, rdx) may be NULL when the input is data. Kernels never allocate,
 * print or exit; scratch space is passed in.
 *
 * Dimension glossary:
 *   B batch, I/O dense in/out features, C input channels, O output channels,
 *   H,W input height/width, OH,OW output height/width, KH,KW kernel size,
 *   P planes (C*B) for per-plane ops, K classes, n element count.
 * Image activations are stored channel-major over the batch, (C,B,H,W) "CBHW", so a
 * convolution over the whole batch is one GEMM: (O, C*KH*KW) x (C*KH*KW, B*OH*OW).
 * With C = 1 this is the same memory as torch's (B,1,H,W). Dense activations are
 * (B,I) row-major. Weights use torch's layouts: dense (O,I), conv (O,C,KH,KW).
 */
#ifndef LOPT_NN_H
#define LOPT_NN_H

#include <stddef.h>
#include <stdint.h>

/* ---- dense: y = x W^T + b ----------------------------------------------------- */
void nn_dense_forward(float *y,                 /* (B,O) */
                   const float *x,           /* (B,I) */
                   const float *W,           /* (O,I) */
                   const float *b,           /* (O)   */
                   int B, int I, int O);
void nn_dense_backward(float *dx,               /* (B,I) += dy W, or NULL */
                    float *dW,               /* (O,I) += dy^T x */
                    float *db,               /* (O)   += sum_b dy */
                    const float *dy,         /* (B,O) */
                    const float *x,          /* (B,I) */
                    const float *W,          /* (O,I) */
                    int B, int I, int O);
/* The same with dx (B,I) = dy W written, not added: for a dx with no other
 * contribution, without a zeroing pass first (dW and db still accumulate). */
void nn_dense_backward_set_dx(float *dx, float *dW, float *db, const float *dy,
                              const float *x, const float *W, int B, int I, int O);
/* ry = rx W^T + x rW^T + rb */
void nn_dense_rforward(float *ry,               /* (B,O) */
                    const float *rx,         /* (B,I) or NULL (data input) */
                    const float *x,          /* (B,I) */
                    const float *W,          /* (O,I) */
                    const float *rW,         /* (O,I) */
                    const float *rb,         /* (O)   */
                    int B, int I, int O);
/* R{dx} = rdy W + dy rW ;  R{dW} = rdy^T x + dy^T rx ;  R{db} = sum_b rdy */
void nn_dense_rbackward(float *rdx,             /* (B,I) or NULL */
                     float *rdW,             /* (O,I) */
                     float *rdb,             /* (O)   */
                     const float *rdy,       /* (B,O) */
                     const float *dy,        /* (B,O) */
                     const float *x,         /* (B,I) */
                     const float *rx,        /* (B,I) or NULL (data input) */
                     const float *W,         /* (O,I) */
                     const float *rW,        /* (O,I) */
                     int B, int I, int O);

/* ---- conv2d: y = W * x + b (cross-correlation, like torch) ----------------------- */
typedef struct {
    int B, C, H, W;       /* input  (C,B,H,W) */
    int O, KH, KW;        /* weight (O,C,KH,KW) */
    int stride, pad;
    int OH, OW;           /* output (O,B,OH,OW) */
} conv_shape;

conv_shape nn_conv_shape_make(int B, int C, int H, int W, int O, int KH, int KW,
                           int stride, int pad);
size_t nn_conv_col_floats(const conv_shape *s);   /* C*KH*KW * B*OH*OW */

/* col: the im2col matrix of x, (C*KH*KW, B*OH*OW), written here and kept by the
 * caller as a cached forward value for backward and the R-pair. */
void nn_conv2d_forward(float *y, float *col, const float *x, const float *W,
                    const float *b, const conv_shape *s);
/* scratch: nn_conv_col_floats(s) floats (needed only when dx != NULL) */
void nn_conv2d_backward(float *dx, float *dW, float *db, const float *dy,
                     const float *col, const float *W, const conv_shape *s,
                     float *scratch);
/* ry = W * rx + rW * x + rb ; rcol (output, cached) = im2col(rx), unused if rx NULL */
void nn_conv2d_rforward(float *ry, float *rcol, const float *rx, const float *col,
                     const float *W, const float *rW, const float *rb,
                     const conv_shape *s);
/* R{dx} = W^T * rdy + rW^T * dy ; R{dW} = rdy x col^T + dy x rcol^T ; R{db} = sum rdy
 * rcol may be NULL when rx was NULL. */
void nn_conv2d_rbackward(float *rdx, float *rdW, float *rdb, const float *rdy,
                      const float *dy, const float *col, const float *rcol,
                      const float *W, const float *rW, const conv_shape *s,
                      float *scratch);

/* ---- NHWC 3x3 convolution, stride 1, padding 1 (conv3.c, nhwc.c) -----------------------
 * The fast path of fmnist-cnn: direct convolution kernels with run-time choice of
 * AVX-512 / AVX2 / SSE, plus a reference (see conv3.c). Images are NHWC, (B,H,W,C)
 * with channels innermost. A convolution's input, and the adjoint of its output, are
 * PADDED: (B, H+2, W+2, C) with a border of zeros that is the padding, which no
 * kernel writes (the caller zeroes the buffer once; nn_conv3_padded_floats adds the tail
 * the kernels may read past the last image). Outputs and input adjoints are not
 * padded. Weights are repacked per network call: Wp (3,3,C,O) for the forward and the
 * weight gradient, Wt (3,3,O,C) (kernel flipped and transposed) for the input adjoint.
 * Activations and input adjoints are OVERWRITTEN; parameter gradients (dWp, db)
 * accumulate. Single-threaded: callers parallelise over images. */
typedef struct {
    int B, H, W;   /* images; the output size, equal to the input size */
    int C, O;      /* input, output channels */
} conv3_shape;

size_t nn_conv3_padded_floats(int B, int H, int W, int C);
void nn_conv3_pack(float *Wp, const float *W, int C, int O);          /* (O,C,3,3) -> (3,3,C,O) */
void nn_conv3_pack_adjoint(float *Wt, const float *W, int C, int O);  /* -> (3,3,O,C) flipped */
void nn_conv3_unpack_grad(float *dW, const float *dWp, int C, int O); /* dW (O,C,3,3) += dWp */

/* y (B,H,W,O) = conv(x; W) + b ; x padded; b may be NULL (zero) */
void nn_conv3_forward(float *y, const float *x, const float *Wp, const float *b,
                   const conv3_shape *s);
/* dWp += sum_pixels x (x) dy ; db (O) += sum dy ; dx (B,H,W,C) = W^T * dy (or NULL).
 * dy (B,H+2,W+2,O) and x padded. */
void nn_conv3_backward(float *dx, float *dWp, float *db, const float *dy, const float *x,
                    const float *Wt, const conv3_shape *s);
/* ry = W * rx + rW * x + rb ; rx (padded) may be NULL (data input) */
void nn_conv3_rforward(float *ry, const float *rx, const float *x, const float *Wp,
                    const float *rWp, const float *rb, const conv3_shape *s);
/* R{dW} += rdy (x) x + dy (x) rx ; R{db} += sum rdy ; R{dx} = W^T * rdy + rW^T * dy.
 * rdy, dy, x, rx padded; rx NULL drops its term; rdx may be NULL. */
void nn_conv3_rbackward(float *rdx, float *rdWp, float *rdb, const float *rdy, const float *dy,
                     const float *x, const float *rx, const float *Wt, const float *rWt,
                     const conv3_shape *s);

/* Which implementation the NHWC kernels run: AUTO picks the widest the CPU has.
 * Tests force each one in turn and compare it with REF. */
typedef enum { NN_ISA_AUTO, NN_ISA_REF, NN_ISA_SSE, NN_ISA_AVX2, NN_ISA_AVX512 } nn_isa;
int nn_isa_supported(nn_isa isa);
nn_isa nn_isa_force(nn_isa isa);   /* returns the previous setting; not thread-safe */
nn_isa nn_isa_active(void);
const char *nn_isa_name(nn_isa isa);

/* x (B,H,W,C) into the interior of xp (B,H+2,W+2,C) */
void nn_nhwc_pad(float *xp, const float *x, int B, int H, int W, int C);
/* P (B,H/2+2,W/2+2,C) padded interior = maxpool2(relu(y)), y (B,H,W,C);
 * am (B,H/2,W/2,C) = the window position 0..3 (row-major) chosen */
void nn_relu_maxpool2_forward(float *P, int32_t *am, const float *y, int B, int H, int W, int C);
/* dy (B,H+2,W+2,C) padded interior = the adjoint through pooling and ReLU of dP
 * (B,H/2,W/2,C); also the R-backward (applied to R{dP}) */
void nn_relu_maxpool2_backward(float *dy, const float *dP, const int32_t *am, const float *P,
                            int B, int H, int W, int C);
/* rP padded interior = R{y}[am] where P > 0 */
void nn_relu_maxpool2_rforward(float *rP, const float *ry, const int32_t *am, const float *P,
                            int B, int H, int W, int C);
/* db (C) += sum over the interior pixels of the padded dy (B,H+2,W+2,C) */
void nn_nhwc_pixel_sum(float *db, const float *dy, int B, int H, int W, int C);
/* A (B,HW,C) = relu(A) in place; G (B,C) = mean over HW */
void nn_relu_gap_forward(float *G, float *A, int B, int HW, int C);
/* dy (B,H+2,W+2,C) padded interior = dG / HW where A > 0; also the R-backward */
void nn_relu_gap_backward(float *dy, const float *dG, const float *A, int B, int H, int W, int C);
/* rA = rA where A > 0 (in place); rG = mean over HW */
void nn_relu_gap_rforward(float *rG, float *rA, const float *A, int B, int HW, int C);

/* ---- max-pool, k x k windows with stride k (floor), per plane ---------------------
 * argmax (cached): for each output, the index within its plane of the chosen input. */
void nn_maxpool_forward(float *y, int32_t *argmax, const float *x, int P, int H, int W,
                     int k);
/* dx[plane, argmax] += dy ; n_out = P*OH*OW ; dx plane size H*W */
void nn_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, int P,
                      int H, int W, int k);
void nn_maxpool_rforward(float *ry, const float *rx, const int32_t *argmax, int P,
                      int H, int W, int k);
void nn_maxpool_rbackward(float *rdx, const float *rdy, const int32_t *argmax, int P,
                       int H, int W, int k);

/* ---- global average pool: (C,B,H,W) -> (B,C) ----------------------------------- */
void nn_gap_forward(float *y, const float *x, int C, int B, int HW);
void nn_gap_backward(float *dx, const float *dy, int C, int B, int HW);
/* linear: rforward/rbackward are forward/backward applied to tangents */

/* ---- elementwise ------------------------------------------------------------------ */
void nn_relu_forward(float *y, const float *x, size_t n);
void nn_relu_backward(float *dx, const float *dy, const float *y, size_t n);
void nn_relu_rforward(float *ry, const float *rx, const float *y, size_t n);
void nn_relu_rbackward(float *rdx, const float *rdy, const float *y, size_t n);

void nn_tanh_forward(float *y, const float *x, size_t n);
void nn_tanh_backward(float *dx, const float *dy, const float *y, size_t n);
void nn_tanh_rforward(float *ry, const float *rx, const float *y, size_t n);
/* dx = dy (1 - y^2)  =>  R{dx} = rdy (1 - y^2) - 2 dy y ry */
void nn_tanh_rbackward(float *rdx, const float *rdy, const float *dy, const float *y,
                    const float *ry, size_t n);

/* ---- softmax cross-entropy, mean over the batch ------------------------------------
 * Returns the mean loss; prob (cached) = softmax(z). correct (may be NULL) receives
 * the number of rows whose argmax equals the label. */
double nn_softmax_xent_forward(float *prob, int *correct, const float *z,
                            const int32_t *labels, int B, int K);
/* dz += (prob - onehot(label)) / B */
void nn_softmax_xent_backward(float *dz, const float *prob, const int32_t *labels, int B,
                           int K);
/* R{dz} += (prob * rz - prob * <prob, rz>) / B */
void nn_softmax_xent_rbackward(float *rdz, const float *prob, const float *rz, int B,
                            int K);

#endif
