/* mlp_fast.c - the learned optimizer's loops on AVX-512 lanes, each behind a runtime
 * check and each returning 0 (nothing done) where it does not apply, so that
 * mlp_lopt.c's generic code runs instead: the forward over all parameters with one
 * parameter per vector lane (16 at a time) and the paper shape's VJP in two register
 * passes, for architectures with one hidden layer of 32 units and at most 8 features
 * (the paper preset and forms built on it); the momenta and per-tensor sums of squares
 * in one pass; the nominal-adam direction; layer 0's ReLU mask with its column sums.
 * All but the forward and the VJP (float rounding, see mlp_fast.h) are bit for bit
 * the scalar loops they replace, which test_lopt compares them with.
 *
 * The forward. Why: the generic forward (mlp_lopt.c) vectorises over the 32 hidden units of one
 * parameter and ends in a GEMM with 2 output columns, which OpenBLAS runs at a
 * fraction of its speed; with parameters across the lanes the hidden layer is 7
 * broadcast-weight multiply-adds per unit and the output layer two more, no
 * reductions. It fills exactly the buffers the generic forward fills (wk->x (n,F)
 * bit for bit, act[0] (n,32) post-ReLU, act[1] (n,2)), to float rounding: the
 * hidden layer uses fused multiply-adds and the output layer four partial sums. So
 * lopt_mlp_vjp and everything reading the buffers work unchanged. Without keep
 * (no VJP follows) act[0] is not written: its two in-register transposes and 2 KB of
 * stores per block are a third of a block's time, and only the VJP reads it.
 *
 * Single-threaded: at ~10 ns per parameter a whole fmnist-cnn update is ~0.15 ms,
 * less than a parallel region costs when another process shares the cores. */
#include <stddef.h>
#include <string.h>

#include "lopt/mlp_fast.h"
#include "nn/nn.h"
#include "nn/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>


/* parameters [i0, i0 + nl) of one tensor (nl <= 16); src[f] its feature rows,
 * scale[f] their normalisers. FF: the feature count, a constant for the paper
 * preset's 7 (the loops over features unroll) or 0 for any F <= 8. Hidden units
 * are done 16 at a time so their vectors, transposed in registers, become rows of
 * act0 without a trip through memory; KEEP 0: act0 is not written (a constant, so
 * each variant is its own function without the test in its loop). */
typedef void block16_fn(float *x, float *act0, float *act1, const float *const src[8],
                        const float *scale, int Frun, const float *W0, int IN,
                        const float *bias0, const float *W1, const float *b1, size_t i0,
                        int nl);
#define BLOCK16(NAME, FF, KEEP)                                                             \
    __attribute__((target("avx512f"))) static void NAME(                                   \
        float *x, float *act0, float *act1, const float *const src[8], const float *scale,  \
        int Frun, const float *W0, int IN, const float *bias0, const float *W1,             \
        const float *b1, size_t i0, int nl)                                                 \
    {                                                                                       \
        const int F = (FF) ? (FF) : Frun;                                                   \
        const __mmask16 k = (__mmask16)((1u << nl) - 1);                                    \
        __m512 xf[8];                                                                       \
        for (int f = 0; f < F; f++)                                                         \
            xf[f] = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, src[f] + i0),                    \
                                  _mm512_set1_ps(scale[f]));                                \
        {   /* x (n,F): lane l's F features are row l, the block's rows contiguous */     \
            __m512 t[16];                                                                   \
            for (int f = 0; f < 16; f++) t[f] = f < F ? xf[f] : _mm512_setzero_ps();         \
            nn_transpose16(t);                                                                 \
            const __mmask16 kf = (__mmask16)((1u << F) - 1);                                \
            float *xb = x + i0 * F;                                                         \
            for (int l = 0; l < nl; l++) _mm512_mask_storeu_ps(xb + l * F, kf, t[l]);       \
        }                                                                                   \
        /* four partial sums per output: one running sum is a chain of dependent FMAs */ \
        __m512 d4[4], s4[4];                                                                \
        for (int q = 0; q < 4; q++) d4[q] = s4[q] = _mm512_setzero_ps();                    \
        float *ab = act0 + i0 * 32;                                                         \
        for (int h0 = 0; h0 < 32; h0 += 16) {                                               \
            __m512 z[16];                                                                   \
            _Pragma("GCC unroll 16") for (int h = 0; h < 16; h++) {                         \
                const float *wr = W0 + (h0 + h) * IN;                                       \
                __m512 acc = _mm512_set1_ps(bias0[h0 + h]);                                 \
                _Pragma("GCC unroll 8") for (int f = 0; f < F; f++)                         \
                    acc = _mm512_fmadd_ps(xf[f], _mm512_set1_ps(wr[f]), acc);               \
                acc = _mm512_max_ps(acc, _mm512_setzero_ps()); /* r > 0 ? r : 0, NaN -> 0 */\
                z[h] = acc;                                                                 \
                d4[h & 3] = _mm512_fmadd_ps(acc, _mm512_set1_ps(W1[h0 + h]), d4[h & 3]);    \
                s4[h & 3] = _mm512_fmadd_ps(acc, _mm512_set1_ps(W1[32 + h0 + h]), s4[h & 3]); \
            }                                                                               \
            if (KEEP) {                                                                     \
                nn_transpose16(z); /* act0 (n,32): lanes become rows */                        \
                for (int l = 0; l < nl; l++) _mm512_storeu_ps(ab + l * 32 + h0, z[l]);      \
            }                                                                               \
        }                                                                                   \
        __m512 d = _mm512_add_ps(_mm512_add_ps(d4[0], d4[1]), _mm512_add_ps(d4[2], d4[3]));  \
        __m512 s = _mm512_add_ps(_mm512_add_ps(s4[0], s4[1]), _mm512_add_ps(s4[2], s4[3]));  \
        d = _mm512_add_ps(d, _mm512_set1_ps(b1[0]));                                        \
        s = _mm512_add_ps(s, _mm512_set1_ps(b1[1]));                                        \
        /* act1 (n,2): d and s interleaved */                                               \
        const __m512i lo =                                                                  \
            _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);       \
        const __m512i hi =                                                                  \
            _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8); \
        float *ob = act1 + i0 * 2;                                                          \
        __mmask16 k0 = (__mmask16)(nl >= 8 ? 0xFFFF : (1u << (2 * nl)) - 1);                \
        __mmask16 k1 = (__mmask16)(nl <= 8 ? 0 : (1u << (2 * (nl - 8))) - 1);              \
        _mm512_mask_storeu_ps(ob, k0, _mm512_permutex2var_ps(d, lo, s));                    \
        _mm512_mask_storeu_ps(ob + 16, k1, _mm512_permutex2var_ps(d, hi, s));               \
    }
BLOCK16(block16_f7, 7, 1)
BLOCK16(block16_any, 0, 1)
BLOCK16(block16_f7_nokeep, 7, 0)
BLOCK16(block16_any_nokeep, 0, 0)

/* One pass over each tensor instead of one per momentum and one per feature: the
 * separate sums of squares were each one chain of dependent adds per lane (8 partial
 * sums in double, ~4 cycles per 8 elements), ~10% of an update; here the F sums are
 * F independent chains. The same partial sums: lane l of acc[f] adds the elements
 * at l mod 8 from the tensor's start, then the lanes in order, then the tail in order
 * (mlp_lopt.c's sum_squares); the square of a float is exact in double, so the fused
 * multiply-add rounds the same as the multiply then add. */
__attribute__((target("avx512f"))) static void moments_avx512(
    const lopt_arch *a, const lopt_tensor *tensors, int ntensors, const float *w,
    const float *g, float *m, size_t n, float *scale)
{
    const int M = a->nmom, F = 2 + M;
    float b[LOPT_MAX_MOM], c[LOPT_MAX_MOM];
    for (int k = 0; k < M; k++) b[k] = a->beta[k], c[k] = 1.0f - a->beta[k];
    for (int T = 0; T < ntensors; T++) {
        const size_t off = tensors[T].offset, sz = tensors[T].size, end = off + sz;
        __m512d acc[8];
        for (int f = 0; f < 8; f++) acc[f] = _mm512_setzero_pd();
        size_t i = off;
        for (; i + 8 <= end; i += 8) {
            const __m256 gv = _mm256_loadu_ps(g + i);
            const __m512d gd = _mm512_cvtps_pd(gv), wd = _mm512_cvtps_pd(_mm256_loadu_ps(w + i));
            acc[0] = _mm512_fmadd_pd(gd, gd, acc[0]);
            acc[1] = _mm512_fmadd_pd(wd, wd, acc[1]);
            for (int k = 0; k < M; k++) {
                float *mk = m + (size_t)k * n + i;
                const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(b[k]), _mm256_loadu_ps(mk)),
                                               _mm256_mul_ps(_mm256_set1_ps(c[k]), gv));
                _mm256_storeu_ps(mk, v);
                const __m512d vd = _mm512_cvtps_pd(v);
                acc[2 + k] = _mm512_fmadd_pd(vd, vd, acc[2 + k]);
            }
        }
        double ss[8];
        for (int f = 0; f < F; f++) {
            double lanes[8];
            _mm512_storeu_pd(lanes, acc[f]);
            ss[f] = 0;
            for (int l = 0; l < 8; l++) ss[f] += lanes[l];
        }
        for (; i < end; i++) {
            ss[0] += (double)g[i] * g[i];
            ss[1] += (double)w[i] * w[i];
            for (int k = 0; k < M; k++) {
                float *mk = m + (size_t)k * n + i;
                *mk = b[k] * *mk + c[k] * g[i];
                ss[2 + k] += (double)*mk * *mk;
            }
        }
        for (int f = 0; f < F; f++) scale[T * F + f] = lopt_norm_scale(ss[f], sz);
    }
}

#endif

int lopt_mlp_moments_fast(lopt_mlp_work *wk, const lopt_tensor *tensors, int ntensors,
                          const float *w, const float *g, float *m)
{
#if defined(__x86_64__) || defined(__i386__)
    const lopt_arch *a = wk->arch;
    if (nn_isa_active() != NN_ISA_AVX512 || 2 + a->nmom > 8) return 0;
    size_t covered = 0;
    for (int T = 0; T < ntensors; T++) {
        if (tensors[T].offset != covered) return 0;
        covered += tensors[T].size;
    }
    if (covered != wk->n) return 0;
    moments_avx512(a, tensors, ntensors, w, g, m, wk->n, wk->scale);
    return 1;
#else
    (void)wk, (void)tensors, (void)ntensors, (void)w, (void)g, (void)m;
    return 0;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
/* dz (n,32) = dz [act > 0] in place, colsum (32) = its column sums, row after row in
 * two vector accumulators: the sums in the order of the generic loops, bit-identical */
__attribute__((target("avx512f"))) static void relu_colsum32_avx512(float *dz,
                                                                   const float *act,
                                                                   size_t n, float *colsum)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
    const __m512 zero = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i++) {
        float *d = dz + i * 32;
        const float *p = act + i * 32;
        const __m512 z0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(p), zero, _CMP_GT_OQ),
                                              _mm512_loadu_ps(d));
        const __m512 z1 = _mm512_maskz_mov_ps(
            _mm512_cmp_ps_mask(_mm512_loadu_ps(p + 16), zero, _CMP_GT_OQ), _mm512_loadu_ps(d + 16));
        _mm512_storeu_ps(d, z0);
        _mm512_storeu_ps(d + 16, z1);
        c0 = _mm512_add_ps(c0, z0);
        c1 = _mm512_add_ps(c1, z1);
    }
    _mm512_storeu_ps(colsum, c0);
    _mm512_storeu_ps(colsum + 16, c1);
}

/* The VJP below the outputs for one hidden layer of 32 (lopt_mlp_vjp_fast), pass 1,
 * row by row with every sum over the parameters in a register: dout's row (dd, ds)
 * gives dW1 += dout^T act0 (4 vectors) and db1 += its column sums (in order, as
 * nn_dense_backward's), dz = (dout W1)[act0 > 0] (as the dense tile computes it:
 * fma(ds, W1[1], fma(dd, W1[0], 0)), then the mask), kept in dz0 for pass 2, its
 * column sums (2 vectors, as relu_colsum32) and dW0^T += x^T dz (2 F vectors). */
__attribute__((target("avx512f"), always_inline)) static inline void vjp32_rows(
    float *dz0, float *colsum, float *gW1, float *gb1, float *gW0t, const float *dout,
    const float *act0, const float *x, const float *W1, size_t n, int F)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512 w00 = _mm512_loadu_ps(W1), w01 = _mm512_loadu_ps(W1 + 16);
    const __m512 w10 = _mm512_loadu_ps(W1 + 32), w11 = _mm512_loadu_ps(W1 + 48);
    __m512 gd0 = zero, gd1 = zero, gs0 = zero, gs1 = zero, c0 = zero, c1 = zero;
    __m512 g0[8], g1[8];
    for (int f = 0; f < 8; f++) g0[f] = g1[f] = zero;
    float bd = gb1[0], bs = gb1[1];
    for (size_t i = 0; i < n; i++) {
        const float *a = act0 + i * 32, *xi = x + i * F;
        const __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + 16);
        const __m512 dd = _mm512_set1_ps(dout[2 * i]), ds = _mm512_set1_ps(dout[2 * i + 1]);
        bd += dout[2 * i];
        bs += dout[2 * i + 1];
        gd0 = _mm512_fmadd_ps(dd, a0, gd0);
        gd1 = _mm512_fmadd_ps(dd, a1, gd1);
        gs0 = _mm512_fmadd_ps(ds, a0, gs0);
        gs1 = _mm512_fmadd_ps(ds, a1, gs1);
        __m512 z0 = _mm512_fmadd_ps(ds, w10, _mm512_fmadd_ps(dd, w00, zero));
        __m512 z1 = _mm512_fmadd_ps(ds, w11, _mm512_fmadd_ps(dd, w01, zero));
        z0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a0, zero, _CMP_GT_OQ), z0);
        z1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a1, zero, _CMP_GT_OQ), z1);
        _mm512_storeu_ps(dz0 + i * 32, z0);
        _mm512_storeu_ps(dz0 + i * 32 + 16, z1);
        c0 = _mm512_add_ps(c0, z0);
        c1 = _mm512_add_ps(c1, z1);
        for (int f = 0; f < F; f++) {
            const __m512 xf = _mm512_set1_ps(xi[f]);
            g0[f] = _mm512_fmadd_ps(xf, z0, g0[f]);
            g1[f] = _mm512_fmadd_ps(xf, z1, g1[f]);
        }
    }
    gb1[0] = bd;
    gb1[1] = bs;
    _mm512_storeu_ps(colsum, c0);
    _mm512_storeu_ps(colsum + 16, c1);
    _mm512_storeu_ps(gW1, gd0);
    _mm512_storeu_ps(gW1 + 16, gd1);
    _mm512_storeu_ps(gW1 + 32, gs0);
    _mm512_storeu_ps(gW1 + 48, gs1);
    for (int f = 0; f < F; f++) {
        _mm512_storeu_ps(gW0t + f * 32, g0[f]);
        _mm512_storeu_ps(gW0t + f * 32 + 16, g1[f]);
    }
}

/* pass 2, 16 parameters at a time: dx (n,F) = dz0 W0[:, :F], with dz0's rows
 * transposed to one vector per hidden unit (lanes = parameters), F chains of 32
 * broadcast multiply-adds, and the F result vectors transposed back into rows */
__attribute__((target("avx512f"), always_inline)) static inline void vjp32_dx(
    float *dx, const float *dz0, const float *W0, int IN, size_t n, int F)
{
    const __mmask16 kf = (__mmask16)((1u << F) - 1);
    for (size_t i0 = 0; i0 < n; i0 += 16) {
        const int nl = n - i0 < 16 ? (int)(n - i0) : 16;
        __m512 acc[16];
        for (int f = 0; f < 16; f++) acc[f] = _mm512_setzero_ps();
        for (int h0 = 0; h0 < 32; h0 += 16) {
            __m512 z[16];
            for (int l = 0; l < 16; l++)
                z[l] = l < nl ? _mm512_loadu_ps(dz0 + (i0 + l) * 32 + h0) : _mm512_setzero_ps();
            nn_transpose16(z);   /* z[h]: unit h0 + h across the parameters */
            for (int h = 0; h < 16; h++) {
                const float *wr = W0 + (size_t)(h0 + h) * IN;
                for (int f = 0; f < F; f++)
                    acc[f] = _mm512_fmadd_ps(z[h], _mm512_set1_ps(wr[f]), acc[f]);
            }
        }
        nn_transpose16(acc);   /* acc[l]: parameter i0 + l's F values */
        for (int l = 0; l < nl; l++) _mm512_mask_storeu_ps(dx + (i0 + l) * F, kf, acc[l]);
    }
}

/* both passes, with the paper preset's F = 7 a constant (the loops over features
 * unroll, as in BLOCK16) */
__attribute__((target("avx512f"))) static void vjp32_avx512(
    float *dz0, float *colsum, float *gW1, float *gb1, float *gW0t, float *dx,
    const float *dout, const float *act0, const float *x, const float *W0, int IN, size_t n,
    int F)
{
    const float *W1 = W0 + (size_t)32 * (IN + 1);
    if (F == 7) {
        vjp32_rows(dz0, colsum, gW1, gb1, gW0t, dout, act0, x, W1, n, 7);
        vjp32_dx(dx, dz0, W0, IN, n, 7);
    } else {
        vjp32_rows(dz0, colsum, gW1, gb1, gW0t, dout, act0, x, W1, n, F);
        vjp32_dx(dx, dz0, W0, IN, n, F);
    }
}
#endif

int lopt_mlp_vjp_fast(lopt_mlp_work *wk, const float *theta, float *dtheta, float *colsum)
{
#if defined(__x86_64__) || defined(__i386__)
    const lopt_arch *a = wk->arch;
    const int F = lopt_arch_features(a), IN = lopt_arch_inputs(a);
    if (a->nhidden != 1 || a->hidden != 32 || F > 8 || nn_isa_active() != NN_ISA_AVX512)
        return 0;
    const size_t n = wk->n, off1 = (size_t)32 * (IN + 1);   /* layer 1 (W1 (2,32), b1) */
    float gW1[64], gW0t[8 * 32];
    vjp32_avx512(wk->dact[0], colsum, gW1, dtheta + off1 + 64, gW0t, wk->dx, wk->dact[1],
                 wk->act[0], wk->x, theta, IN, n, F);
    for (int k = 0; k < 64; k++) dtheta[off1 + k] += gW1[k];
    for (int h = 0; h < 32; h++)
        for (int f = 0; f < F; f++) dtheta[(size_t)h * IN + f] += gW0t[f * 32 + h];
    return 1;
#else
    (void)wk, (void)theta, (void)dtheta, (void)colsum;
    return 0;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
/* mlp_lopt.c's nominal_adam loop on 16 lanes, its operations in its order (sqrtf's
 * errno path kept the scalar loop from vectorising) */
__attribute__((target("avx512f"))) static void adam_dir_avx512(
    float *delta, float *v, const float *mk, const float *g, const float *out, const float *e,
    size_t n, float b2, float step, float root_bc2, float eps, float step_mult)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512 vb2 = _mm512_set1_ps(b2), c2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vs = _mm512_set1_ps(step), rb = _mm512_set1_ps(root_bc2);
    const __m512 ve = _mm512_set1_ps(eps), sm = _mm512_set1_ps(step_mult);
    for (size_t i = 0; i < n; i += 16) {
        const size_t left = n - i;
        const __mmask16 k = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1);
        const __m512 gi = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_maskz_loadu_ps(k, v + i)),
                                        _mm512_mul_ps(_mm512_mul_ps(c2, gi), gi));
        _mm512_mask_storeu_ps(v + i, k, vi);
        const __m512 u = _mm512_div_ps(
            _mm512_maskz_loadu_ps(k, mk + i),
            _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), rb), ve));
        __m512 d = _mm512_mul_ps(vs, u);
        if (out) {
            const __mmask16 k0 = (__mmask16)(left >= 8 ? 0xFFFF : (1u << (2 * left)) - 1);
            const __mmask16 k1 = (__mmask16)(left >= 16 ? 0xFFFF : left <= 8 ? 0
                                                                 : (1u << (2 * (left - 8))) - 1);
            const __m512 dd = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(k0, out + 2 * i), even,
                                                     _mm512_maskz_loadu_ps(k1, out + 2 * i + 16));
            d = _mm512_sub_ps(d, _mm512_mul_ps(_mm512_mul_ps(sm, dd), _mm512_maskz_loadu_ps(k, e + i)));
        }
        _mm512_mask_storeu_ps(delta + i, k, d);
    }
}
#endif

int lopt_mlp_adam_dir_fast(float *delta, float *v, const float *mk, const float *g,
                           const float *out, const float *e, size_t n, float b2, float step,
                           float root_bc2, float eps, float step_mult)
{
#if defined(__x86_64__) || defined(__i386__)
    if (nn_isa_active() != NN_ISA_AVX512) return 0;
    adam_dir_avx512(delta, v, mk, g, out, e, n, b2, step, root_bc2, eps, step_mult);
    return 1;
#else
    (void)delta, (void)v, (void)mk, (void)g, (void)out, (void)e, (void)n, (void)b2;
    (void)step, (void)root_bc2, (void)eps, (void)step_mult;
    return 0;
#endif
}

int lopt_mlp_relu_colsum(float *dz, const float *act, size_t n, int H, float *colsum)
{
#if defined(__x86_64__) || defined(__i386__)
    if (H != 32 || nn_isa_active() != NN_ISA_AVX512) return 0;
    relu_colsum32_avx512(dz, act, n, colsum);
    return 1;
#else
    (void)dz, (void)act, (void)n, (void)H, (void)colsum;
    return 0;
#endif
}

int lopt_mlp_forward_fast(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                          int ntensors, const float *const *src, int F, int IN, int keep)
{
#if defined(__x86_64__) || defined(__i386__)
    const lopt_arch *a = wk->arch;
    if (a->nhidden != 1 || a->hidden != 32 || F > 8 || nn_isa_active() != NN_ISA_AVX512)
        return 0;
    const float *W0 = theta, *W1 = theta + (size_t)32 * (IN + 1), *b1 = W1 + 64;
    block16_fn *block = keep ? (F == 7 ? block16_f7 : block16_any)
                                     : (F == 7 ? block16_f7_nokeep : block16_any_nokeep);
    /* blocks of 16 parameters, never across a tensor boundary */
    for (int T = 0; T < ntensors; T++)
        for (size_t i = 0; i < tensors[T].size; i += 16) {
            size_t left = tensors[T].size - i;
            block(wk->x, wk->act[0], wk->act[1], src, wk->scale + T * F, F, W0, IN, wk->bias0,
                  W1, b1, tensors[T].offset + i, left < 16 ? (int)left : 16);
        }
    return 1;
#else
    (void)wk, (void)theta, (void)tensors, (void)ntensors, (void)src, (void)F, (void)IN;
    (void)keep;
    return 0;
#endif
}
