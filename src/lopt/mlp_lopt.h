/* mlp_lopt.h - the learned optimizer of Metz et al. 2019 (DESIGN.md section 1.1):
 * a small MLP applied to every scalar parameter independently, over features
 * normalised per tensor, with time features; forward over all parameters of a
 * task at once, and its VJP with respect to theta and to its inputs.
 *
 * Per inner step t (t = steps already taken, 0 at the first), for gradient g:
 *   m_k <- beta_k m_k + (1 - beta_k) g                        (no bias correction)
 *   x    = [norm(g), norm(w), norm(m_1..m_M)]  per parameter, norm per tensor:
 *          norm(v) = v / sqrt(1e-5 + mean_over_tensor(v^2))
 *   x   ++= tanh(t / tau_j - 1)  for every tau_j               (not normalised)
 *   (d, s) = MLP_theta(x)        hidden layers with ReLU, linear output
 *   w   <- w - step_mult * d * exp(exp_mult * s)
 * The architecture's numbers (betas, taus, widths, the two multipliers) are data,
 * stored in the .lopt file; presets "paper" (the authors' release) and "lo"
 * (learned_optimization's MLPLOpt).
 */
#ifndef LOPT_MLP_LOPT_H
#define LOPT_MLP_LOPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "optim/optim.h"
#include "tasks/task.h"

#define LOPT_MAX_MOM 8
#define LOPT_MAX_TIME 16
#define LOPT_MAX_LAYERS 4

typedef struct {
    int nmom;                      /* momentum decays */
    float beta[LOPT_MAX_MOM];
    int ntime;                     /* time features */
    float tau[LOPT_MAX_TIME];
    int nhidden;                   /* hidden layers (1 paper, 2 lo) */
    int hidden;                    /* width of each hidden layer */
    float step_mult, exp_mult;     /* 0.001, 0.001 */
} lopt_arch;

/* Fills a preset ("paper" or "lo"); LOPT_EUSAGE for another name. */
lopt_status lopt_arch_preset(lopt_arch *a, const char *name, lopt_err *err);
/* Checks ranges (for architectures read from files). */
lopt_status lopt_arch_validate(const lopt_arch *a, lopt_err *err);
/* 1 if a and b describe the same optimizer (every field in use equal). */
int lopt_arch_equal(const lopt_arch *a, const lopt_arch *b);
int lopt_arch_features(const lopt_arch *a);   /* normalised: 2 + nmom */
int lopt_arch_inputs(const lopt_arch *a);     /* 2 + nmom + ntime */
size_t lopt_arch_nparams(const lopt_arch *a); /* |theta|: 610 paper, 1762 lo */

/* theta layout, layer by layer: W (out, in) row-major then b (out); layers
 * inputs -> hidden (-> hidden) -> 2. Initial theta: N(0, 1/fan_in) weights, zero
 * biases, from (seed, LOPT_STREAM_INIT). */
void lopt_theta_init(const lopt_arch *a, uint64_t seed, float *theta);

/* theta that makes the MLP a normalised gradient descent, d = g / rms_tensor(g)
 * (two hidden units: relu(x_g) - relu(-x_g)), plus N(0, noise^2) on every weight:
 * a known, well-behaved optimizer for pathology studies and tests. */
void lopt_theta_normalized_sgd(const lopt_arch *a, float noise, uint64_t seed, float *theta);

/* The general form: d = gain * x_feature, the per-tensor normalised feature
 * `feature` (0 = g, 2 + k = momentum m_k), so each step moves every tensor by
 * step_mult * gain in RMS. Starting meta-training from a sensible hand-designed
 * optimizer (normalised momentum at a tuned step) instead of random weights. */
void lopt_theta_normalized(const lopt_arch *a, int feature, float gain, float noise,
                           uint64_t seed, float *theta);

/* Scratch for applying the MLP to n parameters (sized once, reused every step). */
typedef struct {
    const lopt_arch *arch;
    size_t n;
    float *x;            /* (n, features) normalised features */
    float *act[LOPT_MAX_LAYERS + 1];   /* (n, hidden) post-ReLU per hidden layer; last: (n,2) */
    float *dact[LOPT_MAX_LAYERS + 1];  /* adjoints, same shapes */
    float *dx;           /* (n, features) */
    float *scale;        /* (ntensors, features) per-tensor normalisers */
    float *coef;         /* (ntensors, features) VJP normaliser terms */
    float *bias0;        /* (hidden) first layer bias + time-feature contribution;
                          * the VJP reuses it as scratch */
    float *w0t;          /* (features, hidden) first layer's weights, transposed */
    int ntensors;
} lopt_mlp_work;

void lopt_mlp_work_init(lopt_mlp_work *wk, const lopt_arch *a, size_t n, int ntensors);
void lopt_mlp_work_free(lopt_mlp_work *wk);

/* One update of all n parameters. m (nmom, n) is updated in place with g; then
 * delta (n) = -step_mult * d * exp(exp_mult * s) is written (w is not changed:
 * the caller adds delta, so the unroll can keep w_t). The work buffers keep the
 * activations needed by lopt_mlp_vjp for the same inputs. */
void lopt_mlp_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                     int ntensors, const float *w, const float *g, float *m, int64_t t,
                     float *delta);

/* VJP of delta with respect to theta and the inputs, after lopt_mlp_update with the
 * same arguments (m is the momentum AFTER the update). ddelta (n) is the adjoint
 * of delta. Accumulates (+=): dtheta (|theta|), dg (n), dw (n), dm (nmom, n) - the
 * adjoint of the updated momenta through the features only. */
void lopt_mlp_vjp(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                  int ntensors, const float *w, const float *g, const float *m, int64_t t,
                  const float *delta, const float *ddelta, float *dtheta, float *dg,
                  float *dw, float *dm);

/* A hand-designed-optimizer-shaped wrapper: lopt_optimizer whose step runs the
 * learned optimizer (copies theta and arch; the task's tensors must outlive it). */
lopt_status lopt_learned_create(lopt_optimizer *o, const lopt_arch *a, const float *theta,
                                const lopt_tensor *tensors, int ntensors, size_t n,
                                lopt_err *err);

#endif
