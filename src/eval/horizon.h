/* horizon.h - progress of meta-training measured where it counts: a learned
 * optimizer trained over the full horizon on fixed tuning seeds (docs/design.md
 * section 1.4), the number `meta-train --eval-every` logs and keeps the best
 * theta by.
 *
 * For each evaluation seed: a fresh task instance and initialisation from the
 * seed, `horizon` steps of the learned optimizer (exactly `lopt train --opt
 * learned:FILE --seed SEED --steps HORIZON --eval-every HORIZON/points`), the
 * full validation split evaluated every horizon/points steps. final = the mean
 * over seeds of the last validation loss; mean = the mean over seeds of the mean
 * of the validation losses after step 0 (the area under the curve, a measure of
 * speed). A run that diverges counts as +inf in both. The seeds run in parallel,
 * one task object per thread, and are summed in seed order (thread count does
 * not change the numbers).
 */
#ifndef LOPT_HORIZON_H
#define LOPT_HORIZON_H

#include <stdint.h>

#include "core/core.h"
#include "lopt/mlp_lopt.h"

typedef struct lopt_horizon_eval lopt_horizon_eval;

/* Creates the evaluator (one task object per thread; threads 0: all cores).
 * LOPT_EUSAGE for bad sizes, the task's own errors otherwise. */
lopt_status lopt_horizon_eval_create(lopt_horizon_eval **he, const char *task,
                                     const uint64_t *seeds, int nseeds, int64_t horizon,
                                     int points, int threads, lopt_err *err);
/* Trains theta over the horizon on every seed: *final and *mean as above. */
lopt_status lopt_horizon_eval_run(lopt_horizon_eval *he, const lopt_arch *a, const float *theta,
                                  double *final, double *mean, lopt_err *err);
/* The same with the signature of lopt_meta_eval_fn (user: the evaluator). */
lopt_status lopt_horizon_eval_fn(void *user, const lopt_arch *a, const float *theta,
                                 double *final, double *mean, lopt_err *err);
void lopt_horizon_eval_free(lopt_horizon_eval *he);

#endif
