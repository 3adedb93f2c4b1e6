/* adam.h - Adam (Kingma & Ba 2015, algorithm 1), the one update every Adam in lopt
 * runs: the hand-designed inner optimizer (optim.c), the outer optimizer of
 * meta-training (meta.c) and the meta-learning of a learning rate in the bias study
 * (eval/pathology_bias.c).
 *
 *   m <- b1 m + (1-b1) g,  v <- b2 v + (1-b2) g²,  bc1 = 1 - b1^t,  bc2 = 1 - b2^t
 *   step = lr (m / bc1) / (sqrt(v / bc2) + eps)          t = 1, 2, ... (1-based)
 *
 * Two precisions of the same update, because their callers need their numbers kept:
 *  - lopt_adam_f32: a vector of float32 parameters with torch.optim.Adam's rounding
 *    (scalars in double rounded to float, element-wise products in float, torch's
 *    association order (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)), for inner
 *    training where results are compared with PyTorch;
 *  - lopt_adam_moments + lopt_adam_dir: one coordinate in double, the moments kept
 *    (or rounded to float) by the caller, for outer loops whose own bookkeeping
 *    (clipping, masks, refusing non-finite updates) stays with them.
 * Both take their bias corrections from lopt_adam_bias_at.
 */
#ifndef LOPT_ADAM_H
#define LOPT_ADAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double b1, b2;     /* moment decays, in [0, 1) */
    double bc1, bc2;   /* bias corrections at step t: 1 - b1^t, 1 - b2^t */
} lopt_adam_bias;

/* The bias corrections of step t >= 1 (the t-th update). */
lopt_adam_bias lopt_adam_bias_at(double b1, double b2, int64_t t);

/* One coordinate's moments in double: *m <- b1 *m + (1-b1) g, *v <- b2 *v + (1-b2) g g. */
static inline void lopt_adam_moments(const lopt_adam_bias *a, double *m, double *v, double g)
{
    *m = a->b1 * *m + (1 - a->b1) * g;
    *v = a->b2 * *v + (1 - a->b2) * g * g;
}

/* The denominator sqrt(v / bc2) + eps of the second moment v. */
double lopt_adam_denom(const lopt_adam_bias *a, double v, double eps);
/* The direction of moments m, v: (m / bc1) / lopt_adam_denom(v); the update is
 * w -= lr * lopt_adam_dir(...) (or, as the bias study rounds it,
 * w -= lr * (m / bc1) / lopt_adam_denom(v)). */
double lopt_adam_dir(const lopt_adam_bias *a, double m, double v, double eps);

/* torch.optim.Adam's step on n float32 parameters: d = g + wd w (wd 0: g), moments
 * m, v (n each) updated, w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), with the
 * rounding described above. lr is this step's learning rate (schedule applied). */
void lopt_adam_f32(float *w, float *m, float *v, const float *g, size_t n,
                   const lopt_adam_bias *a, double lr, float eps, float wd);

#endif
