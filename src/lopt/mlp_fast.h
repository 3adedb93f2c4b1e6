/* mlp_fast.h - private to src/lopt: the learned optimizer's forward with one
 * parameter per vector lane (mlp_fast.c). */
#ifndef LOPT_MLP_FAST_H
#define LOPT_MLP_FAST_H

#include <math.h>

#include "lopt/mlp_lopt.h"

/* the per-tensor normaliser of a feature, from its sum of squares ss over sz elements:
 * (eps + mean v^2)^(-1/2) */
static inline float lopt_norm_scale(double ss, size_t sz)
{
    return (float)(1.0 / sqrt(1e-5 + ss / (double)sz));
}

/* After lopt_mlp_update has set wk->scale and wk->bias0: fills wk->x, act[0] and
 * act[1] for the n parameters from the F feature rows src[f] (each (n)); keep 0
 * leaves act[0] (only the VJP reads it) unwritten. Returns 0, doing nothing, if the
 * architecture or the CPU is not one it handles. */
int lopt_mlp_forward_fast(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                          int ntensors, const float *const *src, int F, int IN, int keep);

/* The update's first pass: the momenta m_k = beta_k m_k + (1 - beta_k) g (m (nmom, n)),
 * and wk->scale (ntensors, F) from the sums of squares of every feature (g, w, the
 * updated momenta) per tensor, bit for bit what the scalar loops give. Returns 0,
 * doing nothing, if the CPU, the feature count or the tensors (not tiling [0, n) in
 * order) are not ones it handles. */
int lopt_mlp_moments_fast(lopt_mlp_work *wk, const lopt_tensor *tensors, int ntensors,
                          const float *w, const float *g, float *m);

/* lopt_mlp_vjp's dense layers for one hidden layer of 32 units and F <= 8 features,
 * after its output adjoints wk->dact[1] (n,2) are set: accumulates dW1, db1 and
 * dW0[:, :F] into dtheta, leaves dz0 (n,32) in wk->dact[0], its column sums in colsum
 * (32) and dx = dz0 W0[:, :F] in wk->dx (n,F). The sums over the parameters run in
 * vector registers in parameter order, not in OpenBLAS's blocking: dW1, dW0 and dx
 * round differently from the generic path (db1, dz0 and colsum are the same bits).
 * Returns 0, doing nothing, for another architecture or CPU. */
int lopt_mlp_vjp_fast(lopt_mlp_work *wk, const float *theta, float *dtheta, float *colsum);

/* The nominal-adam update's loop (mlp_lopt.c's nominal_adam): v = b2 v + (1 - b2) g^2,
 * u = mk / (sqrt(v) / root_bc2 + eps), delta = step u (- step_mult d e with out (n,2)
 * and e (n) given), bit for bit the scalar loop. Returns 0, doing nothing, on a CPU
 * without AVX-512. */
int lopt_mlp_adam_dir_fast(float *delta, float *v, const float *mk, const float *g,
                           const float *out, const float *e, size_t n, float b2, float step,
                           float root_bc2, float eps, float step_mult);

/* The VJP's ReLU of the first hidden layer (H 32): dz (n,H) = dz [act > 0] in place
 * and colsum (H) = the column sums of the result, bit for bit the generic loops.
 * Returns 0, doing nothing, for another H or CPU. */
int lopt_mlp_relu_colsum(float *dz, const float *act, size_t n, int H, float *colsum);

#endif
