/* mlp_lopt.h - the learned optimizer of Metz et al. 2019 (docs/design.md section 1.1):
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
 *   w   <- w - step_mult * d * exp(exp_mult * s)                (form "mlp")
 * The architecture's numbers (betas, taus, widths, the two multipliers) are data,
 * stored in the .lopt file; presets "paper" (the authors' release) and "lo"
 * (learned_optimization's MLPLOpt).
 *
 * Form "nominal" (docs/design.md section 1.4, after Harrison et al. 2022, "A closer look
 * at learned optimization"): a hand-designed step with a learned schedule, plus the
 * MLP as a residual that starts at zero:
 *   sched(t) = b + sum_j a_j tanh(t / tau_j - 1)      (a learned log-scale, linear in
 *                                                      the time features)
 *   w   <- w - nominal_step * exp(sched(t)) * u_nom  -  step_mult * d * exp(exp_mult * s)
 * u_nom is one of the features above, the per-tensor normalised gradient or one
 * momentum m_k, so each tensor moves by nominal_step * exp(sched) in RMS.
 * Why u_nom is built from the existing momenta: the rp unroll (meta/unroll.c) carries
 * the optimizer state as the nmom momentum rows and backpropagates their recursion
 * itself, so a direction made of them needs no new state and no change there.
 * The Adam direction (LOPT_NOMINAL_ADAM) is torch's Adam step itself,
 *   v <- 0.999 v + 0.001 g^2,  u_nom = (m_k / (1 - b_k^(t+1))) / (sqrt(v / (1 - 0.999^(t+1))) + 1e-8)
 * with m_k = momentum nominal_mom (b_k its decay, 0.9 in the preset): a learned
 * schedule on Adam, at nominal_step as its learning rate. Its second moment v is one
 * more state row after the momenta (lopt_arch_state_rows). The exact reverse pass
 * through v is not written: rp and merged refuse it (the es estimators, which need
 * no reverse pass, train it). Also left out: a schedule per
 * tensor ("per layer"), whose theta size would depend on the task's tensor count,
 * so one .lopt would no longer fit every task.
 * With the MLP's output layer zero (lopt_theta_init does that for this form) d = s = 0
 * and the residual is exactly zero; with a, b zero exp(sched) = 1: an untrained
 * nominal optimizer is exactly normalised momentum (or SGD, or Adam) at nominal_step.
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

/* What the update is made of (see the top of this file). */
typedef enum {
    LOPT_FORM_MLP = 0,       /* the MLP's output is the step (paper, lo) */
    LOPT_FORM_NOMINAL = 1,   /* a scheduled hand-designed step + the MLP's residual */
} lopt_form;

/* The hand-designed direction u_nom of the nominal form. */
typedef enum {
    LOPT_NOMINAL_GRAD = 0,   /* the per-tensor normalised gradient (normalised SGD) */
    LOPT_NOMINAL_MOM = 1,    /* the per-tensor normalised momentum m_{nominal_mom} */
    LOPT_NOMINAL_ADAM = 2,   /* Adam's step from m_{nominal_mom} and a second moment */
} lopt_nominal_dir;

#define LOPT_ADAM_BETA2 0.999f   /* the Adam direction's second-moment decay (torch's) */
#define LOPT_ADAM_EPS 1e-8f

typedef struct {
    int nmom;                      /* momentum decays */
    float beta[LOPT_MAX_MOM];
    int ntime;                     /* time features */
    float tau[LOPT_MAX_TIME];
    int nhidden;                   /* hidden layers (1 paper, 2 lo) */
    int hidden;                    /* width of each hidden layer */
    float step_mult, exp_mult;     /* 0.001, 0.001 */
    lopt_form form;                /* LOPT_FORM_MLP for paper and lo */
    /* the nominal form only (all zero for the mlp form, so equal optimizers compare
     * equal field by field): */
    lopt_nominal_dir nominal_dir;  /* u_nom: normalised gradient or momentum */
    int nominal_mom;               /* LOPT_NOMINAL_MOM: index of the momentum (into beta);
                                    * 0 for LOPT_NOMINAL_GRAD */
    float nominal_step;            /* RMS step per tensor of the hand-designed rule */
} lopt_arch;

/* Fills a preset ("paper", "lo", "nominal": paper's features and MLP in the
 * nominal form, normalised momentum beta = 0.9 at nominal_step 3e-3, or
 * "nominal-adam": the same with the Adam direction at lr 3e-3); LOPT_EUSAGE
 * for another name. The presets' numbers live here and nowhere else. */
lopt_status lopt_arch_preset(lopt_arch *a, const char *name, lopt_err *err);
/* Checks ranges (for architectures read from files). */
lopt_status lopt_arch_validate(const lopt_arch *a, lopt_err *err);
/* 1 if a and b describe the same optimizer (every field in use equal). */
int lopt_arch_equal(const lopt_arch *a, const lopt_arch *b);
int lopt_arch_features(const lopt_arch *a);   /* normalised: 2 + nmom */
/* Rows of optimizer state per parameter: the nmom momenta, plus Adam's second
 * moment for the Adam direction. Every state buffer is (state_rows, n). */
int lopt_arch_state_rows(const lopt_arch *a);
/* 1 if the exact reverse pass (lopt_mlp_vjp's input adjoints) exists for a: not
 * for the Adam direction. */
int lopt_arch_has_vjp(const lopt_arch *a);
int lopt_arch_inputs(const lopt_arch *a);     /* 2 + nmom + ntime */
size_t lopt_arch_nparams(const lopt_arch *a); /* |theta|: 610 paper, 1762 lo, 620 nominal */
/* Offset in theta of the nominal form's schedule (a_1..a_ntime, b); for the mlp form
 * it is lopt_arch_nparams (no schedule). Equals the MLP's weight count. */
size_t lopt_arch_schedule_offset(const lopt_arch *a);
/* Offset in theta of the MLP's output layer (its W, then its b). */
size_t lopt_arch_output_offset(const lopt_arch *a);
/* The per-tensor normalised feature u_nom reads (0 = g, 2 + k = m_k); nominal only. */
int lopt_arch_nominal_feature(const lopt_arch *a);
/* The nominal form's log-scale sched(t) under theta (0 for the mlp form). */
float lopt_arch_schedule(const lopt_arch *a, const float *theta, int64_t t);

/* theta layout, layer by layer: W (out, in) row-major then b (out); layers
 * inputs -> hidden (-> hidden) -> 2; then, for the nominal form only, the schedule:
 * a_1..a_ntime (one per time feature), b. Initial theta: N(0, 1/fan_in) weights,
 * zero biases, from (seed, LOPT_STREAM_INIT) - the hidden layers' draws are the
 * same in both forms; the nominal form zeroes the output layer and the schedule,
 * so it starts as exactly the hand-designed step. */
void lopt_theta_init(const lopt_arch *a, uint64_t seed, float *theta);

/* Which coordinates of theta meta-training moves (`meta-train --train`):
 *   "all"       every coordinate (either form);
 *   "schedule"  the nominal form's schedule a_1..a_ntime, b only (ntime + 1: 10 for
 *               the nominal preset) - the hand-designed step's learned schedule;
 *   "nominal"   the schedule and the MLP's output layer (the residual's last layer:
 *               2 (hidden + 1) values, 76 in all for the nominal preset), so the
 *               residual can grow from zero on features the random hidden layer
 *               already computes, without moving the hidden layers.
 * mask (lopt_arch_nparams) receives 1 for a trained coordinate, 0 otherwise;
 * *ntrain (may be NULL) the number of ones. LOPT_EUSAGE for another name, or for
 * "schedule"/"nominal" with the mlp form (it has no schedule); mask is then untouched. */
lopt_status lopt_arch_train_mask(const lopt_arch *a, const char *which, unsigned char *mask,
                                 size_t *ntrain, lopt_err *err);

/* theta that makes the MLP a normalised gradient descent, d = g / rms_tensor(g)
 * (two hidden units: relu(x_g) - relu(-x_g)), plus N(0, noise^2) on every weight:
 * a known, well-behaved optimizer for pathology studies and tests. */
void lopt_theta_normalized_sgd(const lopt_arch *a, float noise, uint64_t seed, float *theta);

/* For the mlp form. The general form: d = gain * x_feature, the per-tensor normalised feature
 * `feature` (0 = g, 2 + k = momentum m_k), so each step moves every tensor by
 * step_mult * gain in RMS. Starting meta-training from a sensible hand-designed
 * optimizer (normalised momentum at a tuned step) instead of random weights. */
void lopt_theta_normalized(const lopt_arch *a, int feature, float gain, float noise,
                           uint64_t seed, float *theta);

/* For the nominal form: sets theta's schedule (a_1..a_ntime, b; nothing else) so that
 * the hand-designed step follows a learning-rate schedule of torch's kind at peak
 * rate `peak` (the nominal step times exp(sched(t)) = peak * factor), as closely as
 * the schedule's ntime tanh time features allow: the least-squares fit of
 *   sched(t) = log(peak / nominal_step * max(lopt_schedule_factor(s, t + 1), floor))
 * over the learned optimizer's times t = 0..s->steps-1 (its (t+1)-th update). The
 * floor (in (0, 1]) stands in for the factor's 0 at the end of cosine and linear,
 * whose log a finite schedule cannot reach. A tiny ridge (1e-6 per time step) keeps
 * the nearly collinear slow features' coefficients moderate. Returns the largest
 * |fit - target| in log-scale over the fitted times. A warm start for meta-training
 * that begins at a tuned scheduled baseline rather than at a constant one. */
double lopt_theta_fit_schedule(const lopt_arch *a, const lopt_schedule *s, double peak,
                               double floor, float *theta);

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
    float *e;            /* (n) exp(exp_mult * s) of the last update (the VJP reuses it) */
    int ntensors;
} lopt_mlp_work;

void lopt_mlp_work_init(lopt_mlp_work *wk, const lopt_arch *a, size_t n, int ntensors);
/* The same, returning LOPT_ENOMEM (wk freed) instead of calling the out-of-memory
 * handler; lopt_mlp_work_bytes is about what it allocates. */
lopt_status lopt_mlp_work_try_init(lopt_mlp_work *wk, const lopt_arch *a, size_t n,
                                   int ntensors);
size_t lopt_mlp_work_bytes(const lopt_arch *a, size_t n);
void lopt_mlp_work_free(lopt_mlp_work *wk);

/* One update of all n parameters. m (state rows, n) is updated in place with g; then
 * delta (n) = -step_mult * d * exp(exp_mult * s) is written (the nominal form adds
 * -nominal_step * exp(sched(t)) * u_nom; w is not changed:
 * the caller adds delta, so the unroll can keep w_t). The work buffers keep the
 * activations needed by lopt_mlp_vjp for the same inputs. */
void lopt_mlp_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                     int ntensors, const float *w, const float *g, float *m, int64_t t,
                     float *delta);

/* lopt_mlp_update for a step no lopt_mlp_vjp follows (forward unrolls, training):
 * the same m and delta bit for bit, but the hidden activations in wk may be left
 * stale (the lane-form forward skips writing them, ~1/3 of its time). */
void lopt_mlp_update_fwd(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
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

/* The time a learned optimizer's features see at step t: min(t, t_max) for t_max > 0
 * (the clamp at the horizon, docs/design.md), t for t_max 0. */
int64_t lopt_learned_time(int64_t t, int64_t t_max);

/* One step of a learned optimizer with its non-finite rule - the one place the rule
 * lives; lopt_learned_create's step and the public lopt_opt (api.c) both call these
 * two, so the CLI, the comparison and the C API skip the same elements:
 *   lopt_learned_update is lopt_mlp_update on (state rows, n) state m, except that an
 *   element whose gradient g[i] is NaN or +-inf enters it as 0 (so it counts as 0 in
 *   its tensor's normalisers and the rest of the tensor steps as usual), its state
 *   rows (momenta, and Adam's second moment) are restored afterwards, and its delta[i]
 *   is NaN. gclean (n) is scratch and may be g itself (then g's non-finite entries
 *   become 0). If the state rows of the bad elements cannot be kept (out of memory)
 *   the whole step is skipped: m untouched, every delta NaN. Allocates only when some
 *   g[i] is not finite. t is the time the features see (lopt_learned_time).
 *   lopt_learned_apply writes out[i] = w[i] - scale decay w[i] + scale delta[i]
 *   (exactly w[i] + delta[i] for scale 1, decay 0) where delta[i] is finite, and
 *   out[i] = w[i] where it is not - a NaN gradient, or an update that came out
 *   non-finite. out may be w. Returns the number of elements left alone: the count
 *   lopt_opt_nonfinite and lopt_learned_nonfinite add up. */
void lopt_learned_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                         int ntensors, const float *w, const float *g, float *m, int64_t t,
                         float *delta, float *gclean);
size_t lopt_learned_apply(float *out, const float *w, const float *delta, size_t n,
                          float scale, float decay);

/* A hand-designed-optimizer-shaped wrapper: lopt_optimizer whose step runs the
 * learned optimizer (copies theta and arch; the task's tensors must outlive it).
 * Never aborts on the caller's sizes: tensors that do not tile n, sizes whose sum
 * overflows or n above LOPT_LEARNED_MAX_PARAMS are LOPT_EUSAGE, a failed allocation
 * LOPT_ENOMEM, each with a reason. Its step is lopt_learned_update +
 * lopt_learned_apply (the non-finite rule above); the skipped elements are counted
 * (lopt_learned_nonfinite); reset sets the count to 0. */
#define LOPT_LEARNED_MAX_PARAMS ((size_t)INT32_MAX)   /* the matrix products take int sizes */
lopt_status lopt_learned_create(lopt_optimizer *o, const lopt_arch *a, const float *theta,
                                const lopt_tensor *tensors, int ntensors, size_t n,
                                lopt_err *err);
/* Elements skipped by a learned optimizer's steps since creation or reset (0 for an
 * optimizer that is not a learned one). */
uint64_t lopt_learned_nonfinite(const lopt_optimizer *o);
/* Past step t_max (> 0) the time features see t_max instead of t (the clamp at the
 * horizon, docs/design.md); 0, the default here, never clamps. o must come from
 * lopt_learned_create. */
void lopt_learned_set_t_max(lopt_optimizer *o, int64_t t_max);

#endif
