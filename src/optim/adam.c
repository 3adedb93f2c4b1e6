/* adam.c - the Adam update (adam.h): bias corrections, the double-precision
 * coordinate update and torch's float32 vector update. */
#include "optim/adam.h"

#include <math.h>

lopt_adam_bias lopt_adam_bias_at(double b1, double b2, int64_t t)
{
    return (lopt_adam_bias){b1, b2, 1 - pow(b1, (double)t), 1 - pow(b2, (double)t)};
}

double lopt_adam_denom(const lopt_adam_bias *a, double v, double eps)
{
    return sqrt(v / a->bc2) + eps;
}

double lopt_adam_dir(const lopt_adam_bias *a, double m, double v, double eps)
{
    return (m / a->bc1) / lopt_adam_denom(a, v, eps);
}

void lopt_adam_f32(float *w, float *m, float *v, const float *g, size_t n,
                   const lopt_adam_bias *a, double lr, float eps, float wd)
{
    const float b1 = (float)a->b1, b2 = (float)a->b2;
    const float one_m_b1 = (float)(1.0 - a->b1), one_m_b2 = (float)(1.0 - a->b2);
    const float neg_step = (float)(-(lr / a->bc1));
    const float bc2_sqrt = (float)sqrt(a->bc2);
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        m[i] = b1 * m[i] + one_m_b1 * d;
        v[i] = b2 * v[i] + (one_m_b2 * d) * d;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + (neg_step * m[i]) / denom;
    }
}
