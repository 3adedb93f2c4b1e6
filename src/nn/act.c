/* act.c - elementwise activations ReLU and tanh: forward, gradient, and the
 * R-operator pair (Pearlmutter 1994, eq. 4.3: R{f(a)} = f'(a) R{a}).
 * ReLU is piecewise linear, so its R-pair is its Jacobian applied to tangents (the
 * second derivative is zero almost everywhere); tanh adds the curvature term.
 * Both masks and derivatives are read from the cached output y, not the input, so
 * callers may run forward in place (y == x) and drop x.
 * Outputs may alias their same-shape inputs elementwise (y == x, ry == rx).
 * The ReLU masks load the passed-through value before the select: in
 * `y[i] > 0 ? dy[i] : 0` the load of dy[i] is conditional, which GCC will not
 * if-convert without masked loads (the baseline x86-64 has none), so the loop stayed
 * scalar with a branch per element (~10% of an rp truncation on fmnist8-mlp). */
#include <math.h>

#include "nn/kern.h"
#include "nn/nn.h"

void nn_relu_forward(float *y, const float *x, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* y = max(x, 0)  =>  dx += dy [y > 0] */
void nn_relu_backward(float *dx, const float *dy, const float *y, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) {
        const float d = dy[i];
        dx[i] += y[i] > 0.0f ? d : 0.0f;
    }
}

/* y = max(x, 0)  =>  ry = rx [y > 0] */
void nn_relu_rforward(float *ry, const float *rx, const float *y, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) {
        const float r = rx[i];
        ry[i] = y[i] > 0.0f ? r : 0.0f;
    }
}

/* dx = dy [y > 0], the mask constant almost everywhere  =>  R{dx} = rdy [y > 0] */
void nn_relu_rbackward(float *rdx, const float *rdy, const float *y, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) {
        const float r = rdy[i];
        rdx[i] += y[i] > 0.0f ? r : 0.0f;
    }
}

void nn_tanh_forward(float *y, const float *x, size_t n)
{
    /* tanhf costs ~20 ns, so fork at a smaller size than the streaming loops */
    NN_OMP(parallel for if (parallel: nn_par(16 * n)) schedule(static))
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

/* y = tanh(x)  =>  dx += dy (1 - y^2) */
void nn_tanh_backward(float *dx, const float *dy, const float *y, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

/* y = tanh(x)  =>  ry = rx (1 - y^2) */
void nn_tanh_rforward(float *ry, const float *rx, const float *y, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++) ry[i] = rx[i] * (1.0f - y[i] * y[i]);
}

/* dx = dy (1 - y^2)  =>  R{dx} = rdy (1 - y^2) - 2 dy y ry */
void nn_tanh_rbackward(float *rdx, const float *rdy, const float *dy, const float *y,
                    const float *ry, size_t n)
{
    NN_OMP(parallel for simd if (parallel: nn_par(n)) schedule(static))
    for (size_t i = 0; i < n; i++)
        rdx[i] += rdy[i] * (1.0f - y[i] * y[i]) - 2.0f * dy[i] * y[i] * ry[i];
}
