/* mlp_fast.c - the learned optimizer's forward over all parameters with one
 * parameter per vector lane (AVX-512: 16 parameters at a time), for architectures
 * with one hidden layer of 32 units and at most 8 features (the paper preset and
 * forms built on it).
 *
 * Why: the generic forward (mlp_lopt.c) vectorises over the 32 hidden units of one
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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* 16 rows of 16 floats transposed in registers (unpack, shuffle, two 128-bit lane
 * exchanges) */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

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
            transpose16(t);                                                                 \
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
                transpose16(z); /* act0 (n,32): lanes become rows */                        \
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
#endif

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
