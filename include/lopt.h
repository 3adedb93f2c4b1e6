/* lopt.h - train your own model with a learned optimizer.
 *
 * lopt meta-trains small per-parameter MLP optimizers (Metz et al., "Understanding
 * and correcting pathologies in the training of learned optimizers", ICML 2019)
 * and saves them as .lopt files. This header is all a program needs to use one:
 * it depends on the C standard library only; link with liblopt.a and
 * `-lopenblas -lz -lm` (plus `-fopenmp` if liblopt was built with OpenMP, the default).
 *
 * Your parameters live in one flat float vector, tensor after tensor (for a
 * two-layer network: W1, b1, W2, b2). The learned optimizer normalises its
 * features per tensor, so it needs the tensor sizes; it keeps its own state
 * (momenta, step count), and each step reads your gradient and updates the
 * parameters in place:
 *
 *     #include "lopt.h"
 *
 *     char msg[256];
 *     lopt_model *m = lopt_model_load("my-optimizer.lopt", msg, sizeof msg);
 *     if (!m) { fprintf(stderr, "%s\n", msg); return 1; }
 *
 *     size_t sizes[] = {64 * 32, 32, 32 * 10, 10};     // W1, b1, W2, b2
 *     lopt_opt *opt = lopt_opt_new(m, sizes, 4);
 *     lopt_model_free(m);                              // opt keeps what it needs
 *
 *     for (int step = 0; step < 1000; step++) {
 *         my_loss_and_grad(params, grads);             // your forward + backward
 *         lopt_opt_step(opt, params, grads);           // params -= learned update
 *     }
 *     lopt_opt_free(opt);
 *
 * There is no learning rate: the step size is part of what was learned, for the
 * horizon (number of steps) and kind of task it was meta-trained on
 * (lopt_model_describe says which, when the file records it). To start a
 * new training run with the same optimizer, call lopt_opt_reset.
 *
 * Functions that can fail for reasons outside the program (files) take an
 * errbuf/errlen pair and write a one-line message there (errbuf may be NULL).
 * A lopt_opt is not thread-safe: use one per thread.
 */
#ifndef LOPT_H
#define LOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A learned optimizer as read from a .lopt file: architecture and weights. */
typedef struct lopt_model lopt_model;

/* The state of one learned optimizer applied to one program's parameters. */
typedef struct lopt_opt lopt_opt;

/* Reads a .lopt file. Returns NULL and a one-line reason in errbuf if the file is
 * missing, unreadable, truncated, corrupt or not a .lopt file; free with
 * lopt_model_free. */
lopt_model *lopt_model_load(const char *path,   /* the .lopt file */
                            char *errbuf,       /* receives the reason on failure, or NULL */
                            size_t errlen);     /* size of errbuf in bytes */

/* Releases a model; NULL is a no-op. Optimizers created from it stay valid. */
void lopt_model_free(lopt_model *m);

/* Writes a one-line description of the model (architecture, weight count, where
 * it was meta-trained) to buf, truncated to buflen. Returns buf. */
const char *lopt_model_describe(const lopt_model *m,   /* the model */
                                char *buf,             /* output */
                                size_t buflen);        /* size of buf in bytes */

/* Writes an UNTRAINED learned optimizer: random weights drawn from seed for the
 * architecture preset "paper" (the authors' release), "lo" (learned_optimization)
 * or "nominal" (a hand-designed normalised-momentum step with a learnable schedule
 * plus an MLP residual that starts at zero). Useful as a starting point for
 * meta-training and for testing a program's plumbing; an untrained "paper" or "lo"
 * is not a good optimizer, an untrained "nominal" is exactly normalised momentum
 * (beta 0.9) at an RMS step of 3e-3 per tensor. The file is written atomically.
 * Returns 0 on success, -1 with a one-line reason in errbuf. */
int lopt_model_write_initial(const char *path,     /* the .lopt file to create */
                             const char *preset,   /* "paper", "lo" or "nominal" */
                             uint64_t seed,        /* weight initialisation seed */
                             char *errbuf,         /* receives the reason on failure, or NULL */
                             size_t errlen);       /* size of errbuf in bytes */

/* Creates the optimizer state for a program whose parameters are ntensors
 * tensors laid out one after the other in a flat float vector of
 * sum(tensor_sizes) elements. Copies what it needs from the model and the sizes
 * (both may be freed afterwards). Returns NULL if model or tensor_sizes is NULL,
 * ntensors < 1, a size is 0, the sizes sum past SIZE_MAX or to more than 2^31 - 1
 * parameters, or the optimizer's state (4 (3 nmom + 2 nhidden hidden + 10) bytes
 * per parameter: 356 for the paper preset) cannot be allocated; it never aborts
 * the program. Free with lopt_opt_free. */
lopt_opt *lopt_opt_new(const lopt_model *model,      /* a loaded learned optimizer */
                       const size_t *tensor_sizes,   /* (ntensors) element counts */
                       int ntensors);                /* number of tensors, >= 1 */

/* lopt_opt_new, with a one-line reason in errbuf when it returns NULL. */
lopt_opt *lopt_opt_new2(const lopt_model *model,      /* a loaded learned optimizer */
                        const size_t *tensor_sizes,   /* (ntensors) element counts */
                        int ntensors,                 /* number of tensors, >= 1 */
                        char *errbuf,                 /* receives the reason, or NULL */
                        size_t errlen);               /* size of errbuf in bytes */

/* The number of parameters the optimizer updates (sum of the tensor sizes). */
size_t lopt_opt_nparams(const lopt_opt *opt);

/* One optimization step: updates params in place from grads (the gradient of
 * your loss at params) and advances the optimizer's momenta and step count.
 * Non-finite values are skipped element by element, never spread: where grads[i]
 * is NaN or +-inf, params[i] and that element's momenta stay as they were (the
 * element counts as a zero gradient in its tensor's normalisation, so the rest of
 * the tensor steps as usual), and where the computed update is not finite,
 * params[i] stays as it was. Each skipped element is counted (lopt_opt_nonfinite);
 * the step count advances either way. */
void lopt_opt_step(lopt_opt *opt,        /* the optimizer state */
                   float *params,        /* (nparams) updated in place */
                   const float *grads);  /* (nparams) gradient at params */

/* Elements skipped by lopt_opt_step (non-finite gradient or update) since the
 * optimizer was created or last reset: non-zero means your gradients (or
 * parameters) have NaN/inf in them. */
uint64_t lopt_opt_nonfinite(const lopt_opt *opt);

/* Forgets momenta, the step count and the skipped-element count, as for a freshly
 * created optimizer (use it when you re-initialise your parameters for a new
 * training run). */
void lopt_opt_reset(lopt_opt *opt);

/* Releases an optimizer; NULL is a no-op. */
void lopt_opt_free(lopt_opt *opt);

#ifdef __cplusplus
}
#endif

#endif
