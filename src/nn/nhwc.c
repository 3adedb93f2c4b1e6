/* nhwc.c - the layers between the NHWC 3x3 convolutions of fmnist-cnn (nn.h):
 * ReLU fused with 2x2 max-pooling, ReLU fused with global average pooling, and the
 * copy of images into the padded layout, each with its gradient and R-forward.
 *
 * Fusing ReLU into the pooling means the convolution's full-resolution output
 * lives only in the caller's scratch for one chunk of images, and what backward
 * needs of both layers is the pooled output P and the argmax (0..3) per output: the
 * ReLU was active at the chosen input exactly when P > 0 (relu(y) > 0 iff y > 0).
 * Both layers are piecewise linear, so the R-forward selects tangents through the
 * same argmax and mask and the R-backward is the backward applied to tangents
 * (Pearlmutter 1994; second derivatives zero away from ties and zero inputs).
 *
 * Conventions of the NHWC family: outputs that are activations or input adjoints
 * are overwritten (each fused step owns its output buffer; zeroing it first would
 * only add memory traffic); padded outputs get their interior written and their
 * zero border left alone. Loops run over channels innermost, contiguous, so they
 * vectorise. Semantics as torch: ReLU passes NaN on, the pooling picks the first
 * maximum in row-major window order and a NaN wins, windows that do not fit are
 * dropped (floor). */
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define N2_X86 1
#endif

#include "nn/nn.h"

/* relu that passes NaN on (x != x), as torch.relu; relu(-0) = +0 */
static inline float relu_nan(float x) { return x > 0.0f || x != x ? x : 0.0f; }

/* the window element k (0..3 row-major) replaces the current best m */
static inline int takes(float v, float m) { return v > m || (v != v && m == m); }

void nn_nhwc_pad(float *xp, const float *x, int B, int H, int W, int C)
{
    const ptrdiff_t prow = (ptrdiff_t)(W + 2) * C, pimg = (H + 2) * prow;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            memcpy(xp + b * pimg + (h + 1) * prow + C, x + (((ptrdiff_t)b * H + h) * W) * C,
                   (size_t)W * C * sizeof(float));
}

static void relu_maxpool2_forward_scalar(float *P, int32_t *am, const float *y, int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < OH; i++) {
            const float *r0 = y + (((ptrdiff_t)b * H + 2 * i) * W) * C;   /* (W,C) */
            const float *r1 = r0 + (ptrdiff_t)W * C;
            float *p = P + b * pimg + (i + 1) * prow + C;                  /* (OW,C) */
            int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++) {
                const float *q0 = r0 + (ptrdiff_t)2 * j * C, *q1 = r1 + (ptrdiff_t)2 * j * C;
                for (int c = 0; c < C; c++) {
                    float m = relu_nan(q0[c]), v;
                    int k = 0;
                    v = relu_nan(q0[C + c]);
                    if (takes(v, m)) m = v, k = 1;
                    v = relu_nan(q1[c]);
                    if (takes(v, m)) m = v, k = 2;
                    v = relu_nan(q1[C + c]);
                    if (takes(v, m)) m = v, k = 3;
                    p[(ptrdiff_t)j * C + c] = m;
                    a[(ptrdiff_t)j * C + c] = k;
                }
            }
        }
}

/* P = relu(y)[argmax]  =>  dy[argmax] = dP where the ReLU was active (P > 0), 0
 * elsewhere (including rows/columns the floor dropped) */
static void relu_maxpool2_backward_scalar(float *dy, const float *dP, const int32_t *am, const float *P,
                            int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    const ptrdiff_t drow = (ptrdiff_t)(W + 2) * C, dimg = (H + 2) * drow;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < OH; i++) {
            float *d0 = dy + b * dimg + (2 * i + 1) * drow + C, *d1 = d0 + drow;
            const float *g = dP + (((ptrdiff_t)b * OH + i) * OW) * C;
            const float *p = P + b * pimg + (i + 1) * prow + C;
            const int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++) {
                float *e0 = d0 + (ptrdiff_t)2 * j * C, *e1 = d1 + (ptrdiff_t)2 * j * C;
                for (int c = 0; c < C; c++) {
                    ptrdiff_t t = (ptrdiff_t)j * C + c;
                    float v = p[t] > 0.0f ? g[t] : 0.0f;
                    int k = a[t];
                    e0[c] = k == 0 ? v : 0.0f;
                    e0[C + c] = k == 1 ? v : 0.0f;
                    e1[c] = k == 2 ? v : 0.0f;
                    e1[C + c] = k == 3 ? v : 0.0f;
                }
            }
            for (int w = 2 * OW; w < W; w++)   /* a dropped last column */
                for (int c = 0; c < C; c++) d0[(ptrdiff_t)w * C + c] = d1[(ptrdiff_t)w * C + c] = 0.0f;
        }
        for (int h = 2 * OH; h < H; h++)        /* a dropped last row */
            for (ptrdiff_t t = 0; t < (ptrdiff_t)W * C; t++) dy[b * dimg + (h + 1) * drow + C + t] = 0.0f;
    }
}

/* P = relu(y)[argmax]  =>  R{P} = R{y}[argmax] where P > 0 */
static void relu_maxpool2_rforward_scalar(float *rP, const float *ry, const int32_t *am, const float *P,
                            int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < OH; i++) {
            const float *r0 = ry + (((ptrdiff_t)b * H + 2 * i) * W) * C, *r1 = r0 + (ptrdiff_t)W * C;
            const float *p = P + b * pimg + (i + 1) * prow + C;
            float *rp = rP + b * pimg + (i + 1) * prow + C;
            const int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++) {
                const float *q0 = r0 + (ptrdiff_t)2 * j * C, *q1 = r1 + (ptrdiff_t)2 * j * C;
                for (int c = 0; c < C; c++) {
                    ptrdiff_t t = (ptrdiff_t)j * C + c;
                    int k = a[t];
                    float v = k == 0 ? q0[c] : k == 1 ? q0[C + c] : k == 2 ? q1[c] : q1[C + c];
                    rp[t] = p[t] > 0.0f ? v : 0.0f;
                }
            }
        }
}

static void relu_gap_forward_scalar(float *G, float *A, int B, int HW, int C)
{
    const float inv = 1.0f / (float)HW;
    for (int b = 0; b < B; b++) {
        float *g = G + (ptrdiff_t)b * C;
        float *a = A + (ptrdiff_t)b * HW * C;
        for (int c = 0; c < C; c++) g[c] = 0.0f;
        for (int i = 0; i < HW; i++)
            for (int c = 0; c < C; c++) {
                float v = relu_nan(a[(ptrdiff_t)i * C + c]);
                a[(ptrdiff_t)i * C + c] = v;
                g[c] += v;
            }
        for (int c = 0; c < C; c++) g[c] *= inv;
    }
}

/* G = mean relu(y)  =>  dy = dG / HW where A = relu(y) > 0, into padded dy */
static void relu_gap_backward_scalar(float *dy, const float *dG, const float *A, int B, int H, int W, int C)
{
    const float inv = 1.0f / (float)(H * W);
    const ptrdiff_t drow = (ptrdiff_t)(W + 2) * C, dimg = (H + 2) * drow;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *d = dy + b * dimg + (h + 1) * drow + C;
            const float *a = A + (((ptrdiff_t)b * H + h) * W) * C;
            const float *g = dG + (ptrdiff_t)b * C;
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++) {
                    ptrdiff_t t = (ptrdiff_t)w * C + c;
                    d[t] = a[t] > 0.0f ? g[c] * inv : 0.0f;
                }
        }
}

/* A = relu(y), G = mean A  =>  R{A} = R{y} where A > 0 (in place), R{G} = mean R{A} */
static void relu_gap_rforward_scalar(float *rG, float *rA, const float *A, int B, int HW, int C)
{
    const float inv = 1.0f / (float)HW;
    for (int b = 0; b < B; b++) {
        float *g = rG + (ptrdiff_t)b * C;
        float *r = rA + (ptrdiff_t)b * HW * C;
        const float *a = A + (ptrdiff_t)b * HW * C;
        for (int c = 0; c < C; c++) g[c] = 0.0f;
        for (int i = 0; i < HW; i++)
            for (int c = 0; c < C; c++) {
                ptrdiff_t t = (ptrdiff_t)i * C + c;
                float v = a[t] > 0.0f ? r[t] : 0.0f;
                r[t] = v;
                g[c] += v;
            }
        for (int c = 0; c < C; c++) g[c] *= inv;
    }
}

static void pixel_sum_scalar(float *db, const float *dy, int B, int H, int W, int C)
{
    const ptrdiff_t row = (ptrdiff_t)(W + 2) * C, img = (H + 2) * row;
    for (int c = 0; c < C; c++) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) acc += dy[b * img + (h + 1) * row + (ptrdiff_t)(w + 1) * C + c];
        db[c] += acc;
    }
}

/* ---- the vector forms (nhwc_tmpl.h), one table per instruction set ------------------ */

typedef struct {
    int vl;
    void (*pool_fwd)(float *, int32_t *, const float *, int, int, int, int);
    void (*pool_bwd)(float *, const float *, const int32_t *, const float *, int, int, int, int);
    void (*pool_rfwd)(float *, const float *, const int32_t *, const float *, int, int, int, int);
    void (*gap_fwd)(float *, float *, int, int, int);
    void (*gap_bwd)(float *, const float *, const float *, int, int, int, int);
    void (*gap_rfwd)(float *, float *, const float *, int, int, int);
    void (*pixel_sum)(float *, const float *, int, int, int, int);
} nhwc_impl;

#ifdef N2_X86
#define SFX avx512
#define TGT __attribute__((target("avx512f")))
#define V __m512
#define VI __m512i
#define VM __mmask16
#define VL 16
#define VLD(p) _mm512_loadu_ps(p)
#define VST(p, v) _mm512_storeu_ps((p), (v))
#define VILD(p) _mm512_loadu_si512((const void *)(p))
#define VIST(p, v) _mm512_storeu_si512((void *)(p), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VISET1(x) _mm512_set1_epi32(x)
#define VZERO() _mm512_setzero_ps()
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VMAX(a, b) _mm512_max_ps((a), (b))
#define VGT(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GT_OQ)
#define VUNORD(a) _mm512_cmp_ps_mask((a), (a), _CMP_UNORD_Q)
#define VIEQ(i, k) _mm512_cmpeq_epi32_mask((i), _mm512_set1_epi32(k))
#define VSEL(m, a, b) _mm512_mask_blend_ps((m), (a), (b))
#define VISEL(m, a, b) _mm512_mask_blend_epi32((m), (a), (b))
#define VMOR(a, b) ((VM)((a) | (b)))
#define VMANDNOT(a, b) ((VM)((a) & ~(b)))
#include "nn/nhwc_tmpl.h"

#define SFX avx2
#define TGT __attribute__((target("avx2")))
#define V __m256
#define VI __m256i
#define VM __m256
#define VL 8
#define VLD(p) _mm256_loadu_ps(p)
#define VST(p, v) _mm256_storeu_ps((p), (v))
#define VILD(p) _mm256_loadu_si256((const __m256i *)(p))
#define VIST(p, v) _mm256_storeu_si256((__m256i *)(p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VISET1(x) _mm256_set1_epi32(x)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VMAX(a, b) _mm256_max_ps((a), (b))
#define VGT(a, b) _mm256_cmp_ps((a), (b), _CMP_GT_OQ)
#define VUNORD(a) _mm256_cmp_ps((a), (a), _CMP_UNORD_Q)
#define VIEQ(i, k) _mm256_castsi256_ps(_mm256_cmpeq_epi32((i), _mm256_set1_epi32(k)))
#define VSEL(m, a, b) _mm256_blendv_ps((a), (b), (m))
#define VISEL(m, a, b) \
    _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), (m)))
#define VMOR(a, b) _mm256_or_ps((a), (b))
#define VMANDNOT(a, b) _mm256_andnot_ps((b), (a))
#include "nn/nhwc_tmpl.h"

#define SFX sse
#define TGT
#define V __m128
#define VI __m128i
#define VM __m128
#define VL 4
#define VLD(p) _mm_loadu_ps(p)
#define VST(p, v) _mm_storeu_ps((p), (v))
#define VILD(p) _mm_loadu_si128((const __m128i *)(p))
#define VIST(p, v) _mm_storeu_si128((__m128i *)(p), (v))
#define VSET1(x) _mm_set1_ps(x)
#define VISET1(x) _mm_set1_epi32(x)
#define VZERO() _mm_setzero_ps()
#define VADD(a, b) _mm_add_ps((a), (b))
#define VMUL(a, b) _mm_mul_ps((a), (b))
#define VMAX(a, b) _mm_max_ps((a), (b))
#define VGT(a, b) _mm_cmpgt_ps((a), (b))
#define VUNORD(a) _mm_cmpunord_ps((a), (a))
#define VIEQ(i, k) _mm_castsi128_ps(_mm_cmpeq_epi32((i), _mm_set1_epi32(k)))
#define VSEL(m, a, b) _mm_or_ps(_mm_and_ps((m), (b)), _mm_andnot_ps((m), (a)))
#define VISEL(m, a, b) \
    _mm_castps_si128(VSEL((m), _mm_castsi128_ps(a), _mm_castsi128_ps(b)))
#define VMOR(a, b) _mm_or_ps((a), (b))
#define VMANDNOT(a, b) _mm_andnot_ps((b), (a))
#include "nn/nhwc_tmpl.h"
#endif

/* the vector table for C channels, or NULL: the scalar code */
static const nhwc_impl *impl_for(int C)
{
    const nhwc_impl *t = NULL;
#ifdef N2_X86
    switch (nn_isa_active()) {
    case NN_ISA_AVX512: t = &nhwc_impl_avx512; break;
    case NN_ISA_AVX2: t = &nhwc_impl_avx2; break;
    case NN_ISA_SSE: t = &nhwc_impl_sse; break;
    default: break;
    }
#endif
    return t && C % t->vl == 0 ? t : NULL;
}

void nn_relu_maxpool2_forward(float *P, int32_t *am, const float *y, int B, int H, int W, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->pool_fwd(P, am, y, B, H, W, C);
    else
        relu_maxpool2_forward_scalar(P, am, y, B, H, W, C);
}

void nn_relu_maxpool2_backward(float *dy, const float *dP, const int32_t *am, const float *P,
                            int B, int H, int W, int C)
{
    const nhwc_impl *t = impl_for(C);
    /* rows and columns that the floor dropped are zeroed by the scalar form only */
    if (t && H % 2 == 0 && W % 2 == 0)
        t->pool_bwd(dy, dP, am, P, B, H, W, C);
    else
        relu_maxpool2_backward_scalar(dy, dP, am, P, B, H, W, C);
}

void nn_relu_maxpool2_rforward(float *rP, const float *ry, const int32_t *am, const float *P,
                            int B, int H, int W, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->pool_rfwd(rP, ry, am, P, B, H, W, C);
    else
        relu_maxpool2_rforward_scalar(rP, ry, am, P, B, H, W, C);
}

void nn_relu_gap_forward(float *G, float *A, int B, int HW, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->gap_fwd(G, A, B, HW, C);
    else
        relu_gap_forward_scalar(G, A, B, HW, C);
}

void nn_relu_gap_backward(float *dy, const float *dG, const float *A, int B, int H, int W, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->gap_bwd(dy, dG, A, B, H, W, C);
    else
        relu_gap_backward_scalar(dy, dG, A, B, H, W, C);
}

void nn_relu_gap_rforward(float *rG, float *rA, const float *A, int B, int HW, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->gap_rfwd(rG, rA, A, B, HW, C);
    else
        relu_gap_rforward_scalar(rG, rA, A, B, HW, C);
}

void nn_nhwc_pixel_sum(float *db, const float *dy, int B, int H, int W, int C)
{
    const nhwc_impl *t = impl_for(C);
    if (t)
        t->pixel_sum(db, dy, B, H, W, C);
    else
        pixel_sum_scalar(db, dy, B, H, W, C);
}
