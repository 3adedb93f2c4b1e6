/* optim.h - the hand-designed optimizers, with torch.optim's semantics and defaults
 * (PyTorch 1.13): SGD, SGD with heavy-ball or Nesterov momentum, RMSProp, Adam.
 *
 * Every optimizer, hand-designed or learned, is driven through the same small
 * interface, so training loops and unrolls do not know which one they run.
 * Parameters, gradients and optimizer state are flat float vectors.
 */
#ifndef LOPT_OPTIM_H
#define LOPT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

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
} lopt_hparams;

/* torch.optim's defaults for name in {sgd, momentum, nesterov, rmsprop, adam}:
 * sgd lr 0.01 (torch has none: ours), momentum/nesterov mu 0.9 lr 0.01,
 * rmsprop lr 0.01 alpha 0.99 eps 1e-8, adam lr 1e-3 betas (0.9, 0.999) eps 1e-8.
 * Returns LOPT_EUSAGE for an unknown name. */
lopt_status lopt_hparams_default(lopt_hparams *hp, const char *name, lopt_err *err);

/* Creates the named optimizer for n parameters. o->free(o) releases it. */
lopt_status lopt_optim_create(lopt_optimizer *o, const char *name,
                              const lopt_hparams *hp, size_t n, lopt_err *err);

/* The names lopt_optim_create knows, NULL-terminated. */
extern const char *const lopt_optim_names[];

#endif
