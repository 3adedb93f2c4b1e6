/* adam.c - the Adam update (adam.h): bias corrections, the double-precision
 * coordinate update and torch's float32 vector update. */
#include "optim/adam.h"

#include <math.h>

#include "nn/nn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ADAM_X86 1
#endif

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

#ifdef ADAM_X86
/* The loop below on 16 lanes, the same operations in the same order (no fused
 * multiply-adds; sqrt and division are correctly rounded either way), so the same
 * bits. Why: sqrtf's errno path (a branch to the library call for negative v) kept
 * GCC from vectorising the scalar loop, ~15% of an fmnist8-mlp training step. */
__attribute__((target("avx512f"))) static void adam_f32_avx512(
    float *w, float *m, float *v, const float *g, size_t n, float b1, float b2, float one_m_b1,
    float one_m_b2, float neg_step, float bc2_sqrt, float eps, float wd)
{
    const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2);
    const __m512 c1 = _mm512_set1_ps(one_m_b1), c2 = _mm512_set1_ps(one_m_b2);
    const __m512 step = _mm512_set1_ps(neg_step), bc = _mm512_set1_ps(bc2_sqrt);
    const __m512 ve = _mm512_set1_ps(eps), vwd = _mm512_set1_ps(wd);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        const __m512 wi = _mm512_maskz_loadu_ps(k, w + i);
        __m512 d = _mm512_maskz_loadu_ps(k, g + i);
        if (wd != 0.0f) d = _mm512_add_ps(d, _mm512_mul_ps(vwd, wi));
        const __m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_maskz_loadu_ps(k, m + i)),
                                        _mm512_mul_ps(c1, d));
        const __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_maskz_loadu_ps(k, v + i)),
                                        _mm512_mul_ps(_mm512_mul_ps(c2, d), d));
        const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc), ve);
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        _mm512_mask_storeu_ps(w + i, k,
                              _mm512_add_ps(wi, _mm512_div_ps(_mm512_mul_ps(step, mi), denom)));
    }
}
#endif

void lopt_adam_f32(float *w, float *m, float *v, const float *g, size_t n,
                   const lopt_adam_bias *a, double lr, float eps, float wd)
{
    const float b1 = (float)a->b1, b2 = (float)a->b2;
    const float one_m_b1 = (float)(1.0 - a->b1), one_m_b2 = (float)(1.0 - a->b2);
    const float neg_step = (float)(-(lr / a->bc1));
    const float bc2_sqrt = (float)sqrt(a->bc2);
#ifdef ADAM_X86
    if (nn_isa_active() == NN_ISA_AVX512) {
        adam_f32_avx512(w, m, v, g, n, b1, b2, one_m_b1, one_m_b2, neg_step, bc2_sqrt, eps, wd);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        m[i] = b1 * m[i] + one_m_b1 * d;
        v[i] = b2 * v[i] + (one_m_b2 * d) * d;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + (neg_step * m[i]) / denom;
    }
}
