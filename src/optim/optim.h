/* optim.h - the hand-designed optimizers, with torch.optim's semantics and defaults
 * (PyTorch 1.13): SGD, SGD with heavy-ball or Nesterov momentum, RMSProp, Adam.
 *
 * Every optimizer, hand-designed or learned, is driven through the same small
 * interface, so training loops and unrolls do not know which one they run.
 * Parameters, gradients and optimizer state are flat float vectors.
 *
 * Learning-rate schedules (docs/design.md section 1.4) are part of the hyper-parameters
 * (lopt_hparams.sched): each hand-designed optimizer scales its lr at step t by
 * lopt_schedule_factor(sched, t), using the step count it keeps itself, so training
 * loops and unrolls do not know a schedule is there. The mapping to
 * torch.optim.lr_scheduler (1.13), for N total steps and W warm-up steps, with the
 * usual loop (optimizer.step(), then scheduler.step(); lopt's step t = 1..N runs
 * with torch's last_epoch e = t - 1):
 *
 *   warm-up, W > 0   LinearLR(start_factor = 1/(W+1), end_factor = 1, total_iters = W),
 *                    then the schedule below from SequentialLR(milestones = [W]):
 *                    factor t/(W+1) at steps t = 1..W, so the ramp never takes a step
 *                    of lr 0 and reaches W/(W+1) just before the full lr
 *   const            1 after the warm-up (LinearLR alone stays at 1)
 *   cosine           CosineAnnealingLR(T_max = N-W, eta_min = 0): with e' = t-1-W,
 *                    (1 + cos(pi e' / (N-W))) / 2 -- 1 at the first step after the
 *                    warm-up, 0 right after the last one (the last step has a small
 *                    positive lr)
 *   linear           LinearLR(start_factor = 1, end_factor = 0, total_iters = N-W):
 *                    1 - e' / (N-W), the last step 1/(N-W)
 *
 * Past step N cosine and linear hold 0 (torch's LinearLR does too; its cosine would
 * climb back up, a period of 2 T_max, which a run of N steps never sees). Torch
 * computes these factors recursively, lopt in closed form: they agree to double
 * rounding (tests/torch/sched_ref.py, tests/test_optim.c).
 */
#ifndef LOPT_OPTIM_H
#define LOPT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* lopt_optimizer is lopt's one name for the optimizer concept inside the library:
 * lopt_optimizer_create makes a hand-designed one, lopt_learned_create
 * (lopt/mlp_lopt.h) a learned one. The public API's handle lopt_opt (include/lopt.h)
 * is the learned optimizer as programs outside lopt see it. */
typedef struct lopt_optimizer lopt_optimizer;
struct lopt_optimizer {
    const char *name;
    size_t n;      /* parameter count */
    void *ctx;     /* the optimizer's own state */
    /* w <- update(w, g); the optimizer counts its steps itself, like torch's
     * state["step"], starting at 1 */
    void (*step)(lopt_optimizer *o, float *w, const float *g);
    /* forget all state (new trajectory) */
    void (*reset)(lopt_optimizer *o);
    void (*free)(lopt_optimizer *o);
};

typedef enum {
    LOPT_SCHED_CONST = 0,   /* constant lr (the default: a zeroed lopt_schedule) */
    LOPT_SCHED_COSINE,
    LOPT_SCHED_LINEAR,
} lopt_schedule_kind;

/* A learning-rate schedule; all zero = constant lr, no warm-up. */
typedef struct {
    lopt_schedule_kind kind;
    int64_t warmup;   /* W >= 0 steps of linear warm-up */
    int64_t steps;    /* N > W, the run's total steps (needed unless const with W = 0) */
} lopt_schedule;

/* Default warm-up when the user names a schedule but no --warmup: steps/20 (5%) for
 * cosine and linear, 0 for const. The one place this default lives. */
int64_t lopt_schedule_default_warmup(lopt_schedule_kind kind, int64_t steps);

/* The lr multiplier at step t (1-based: the t-th update) under s; see the mapping to
 * torch above. Pure; t < 1 is taken as 1. */
double lopt_schedule_factor(const lopt_schedule *s, int64_t t);

/* "const" | "cosine" | "linear" -> *kind; LOPT_EUSAGE for anything else. */
lopt_status lopt_schedule_parse(const char *name, lopt_schedule_kind *kind, lopt_err *err);
/* The name of kind ("const", "cosine", "linear"). */
const char *lopt_schedule_name(lopt_schedule_kind kind);
/* Range checks: a known kind, W >= 0, and N > W when the schedule needs N (cosine,
 * linear, or a warm-up). LOPT_EUSAGE with a one-line reason. */
lopt_status lopt_schedule_check(const lopt_schedule *s, lopt_err *err);

/* Hyper-parameters; fields an optimizer does not use are ignored. */
typedef struct {
    float lr;
    float momentum;       /* sgd/momentum/nesterov: mu; rmsprop: momentum (torch) */
    float dampening;      /* sgd */
    float weight_decay;   /* all: g += wd * w, as torch's (coupled) weight_decay */
    float alpha;          /* rmsprop smoothing */
    float beta1, beta2;   /* adam */
    float eps;            /* rmsprop, adam */
    int nesterov;
    lopt_schedule sched;  /* all: lr at step t = lr * lopt_schedule_factor(&sched, t) */
} lopt_hparams;

/* torch.optim's defaults for name in {sgd, momentum, nesterov, rmsprop, adam}:
 * sgd lr 0.01 (torch has none: ours), momentum/nesterov mu 0.9 lr 0.01,
 * rmsprop lr 0.01 alpha 0.99 eps 1e-8, adam lr 1e-3 betas (0.9, 0.999) eps 1e-8;
 * a constant learning rate. Returns LOPT_EUSAGE for an unknown name. */
lopt_status lopt_hparams_default(lopt_hparams *hp, const char *name, lopt_err *err);

/* Creates the named optimizer for n parameters. o->free(o) releases it. */
lopt_status lopt_optimizer_create(lopt_optimizer *o, const char *name,
                              const lopt_hparams *hp, size_t n, lopt_err *err);

/* The names lopt_optimizer_create knows, NULL-terminated. */
extern const char *const lopt_optimizer_names[];

#endif
