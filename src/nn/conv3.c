/* conv3.c - direct 3x3 convolution, stride 1, padding 1, over NHWC images: the
 * layers of fmnist-cnn (nn.h, "NHWC 3x3"). No im2col and no GEMM library:
 * for C and O of 1-32 channels a generic GEMM spends its time packing and in edge
 * cases, while a direct kernel keeps a block of outputs in registers for the whole
 * 9*C reduction (the approach of oneDNN's direct convolutions and of Zhang et al.,
 * "High performance zero-memory overhead direct convolutions", ICML 2018).
 *
 *   forward         y[h,w,o]  = b[o] + sum_{kh,kw,c} x[h+kh-1, w+kw-1, c] W[o,c,kh,kw]
 *   input adjoint   dx[h,w,c] = sum_{kh,kw,o} dy[h-kh+1, w-kw+1, o] W[o,c,kh,kw]
 *                             = the forward of dy with the kernel flipped and
 *                               transposed (Wt[kh,kw,o,c] = W[o,c,2-kh,2-kw])
 *   weight gradient dW[o,c,kh,kw] = sum_{h,w} x[h+kh-1, w+kw-1, c] dy[h,w,o]
 * so two kernels serve all three products, and the R-operator pair
 * (ry = W*rx + rW*x + rb, R{dW} = rdy (x) x + dy (x) rx, R{dx} = W^T rdy + rW^T dy)
 * is the same kernels run over two (input, weight) pairs into one set of
 * accumulators.
 *
 * Implementations, chosen at run time per call (nn_isa_active):
 *   avx512   16-float vectors, 32 registers (conv3_tmpl.h with __m512)
 *   avx2     8-float vectors with FMA, 16 registers
 *   sse      4-float vectors, no FMA: the x86-64 baseline, so any x86-64 runs it
 *   ref      plain loops in the definition's order: the reference the others are
 *            tested against, and the path for channel counts the tiles do not cover
 * Each is compiled with a function-level target attribute, not the Makefile's
 * -march, so a binary built anywhere runs correctly everywhere. Results differ
 * between implementations by float rounding (FMA or not), never between runs or
 * thread counts: every kernel here is single-threaded and sums in a fixed order
 * (the callers parallelise over images, see tasks/cnn.c). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define C3_X86 1
#endif

#include "core/core.h"
#include "nn/nn.h"

/* ---- choosing the implementation ----------------------------------------------------- */

static nn_isa isa_forced = NN_ISA_AUTO;

static nn_isa isa_detect(void)
{
#ifdef C3_X86
    if (__builtin_cpu_supports("avx512f")) return NN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NN_ISA_AVX2;
    return NN_ISA_SSE;
#else
    return NN_ISA_REF;
#endif
}

int nn_isa_supported(nn_isa isa)
{
    if (isa == NN_ISA_AUTO || isa == NN_ISA_REF) return 1;
    nn_isa best = isa_detect();
    return best != NN_ISA_REF && isa <= best;
}

nn_isa nn_isa_force(nn_isa isa)
{
    LOPT_ASSERT(nn_isa_supported(isa));
    nn_isa old = isa_forced;
    isa_forced = isa;
    return old;
}

nn_isa nn_isa_active(void) { return isa_forced != NN_ISA_AUTO ? isa_forced : isa_detect(); }

const char *nn_isa_name(nn_isa isa)
{
    static const char *const names[] = {"auto", "ref", "sse", "avx2", "avx512"};
    return names[isa];
}

/* ---- tiles ------------------------------------------------------------------------------ */

/* what a forward tile reads and writes (conv3_tmpl.h) */
typedef struct {
    const float *x[2][4];   /* per pair, per segment: input tap (0,0) of the segment's first pixel */
    const float *w[2];      /* per pair: the packed weights (3,3,Cin,Cout) at the o-block */
    int npairs;
    float *y[4];            /* per segment: its first output pixel at the o-block; NULL: none */
    int ncols[4];           /* valid pixels of each segment */
    const float *bias;      /* at the o-block, or NULL */
    ptrdiff_t xrow;         /* floats per padded input row */
    ptrdiff_t ystride;      /* floats per output pixel */
    int cin, cout;          /* cout: the weights' row stride */
} c3_fwd_args;

/* what a weight-gradient tile reads and writes */
typedef struct {
    const float *x[2];      /* per pair: padded input of image 0 at row kh0, column 0, channel c0 */
    const float *dy[2];     /* per pair: padded dy of image 0 at (1,1), o-block */
    int npairs, nimg, H, W;
    float *dw;              /* dWp (3,3,Cin,Cout) at [kh0][0][c0][o0] */
    ptrdiff_t ximg, xrow, dyimg, dyrow, dystride;
    int cin, cout;
} c3_wg_args;

typedef struct {
    int ns, rw, nv;         /* forward: segments, pixels per segment, vectors */
    int kht, mc;            /* weight gradient: kernel rows, input channels (nv shared) */
} c3_tile;

typedef void (*c3_fwd_fn)(const c3_fwd_args *);
typedef void (*c3_wg_fn)(const c3_wg_args *);

#ifdef C3_X86
/* AVX-512: 32 registers; 28 accumulators + NV weights + a broadcast (or an embedded
 * {1to16} broadcast operand) */
#define SFX avx512
#define TGT __attribute__((target("avx512f")))
#define V __m512
#define VL 16
#define VLD(p) _mm512_loadu_ps(p)
#define VST(p, v) _mm512_storeu_ps((p), (v))
#define VBC(p) _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VZERO() _mm512_setzero_ps()
#define FWD_TILES(X) X(1, 14, 2) X(2, 7, 2) X(2, 14, 1) X(4, 7, 1)
#define WG_TILES(X) X(3, 1, 1) X(3, 1, 2) X(1, 4, 2) X(1, 8, 1)
#include "nn/conv3_tmpl.h"

/* AVX2 + FMA: 16 registers; 14 accumulators + a weight + a broadcast */
#define SFX avx2
#define TGT __attribute__((target("avx2,fma")))
#define V __m256
#define VL 8
#define VLD(p) _mm256_loadu_ps(p)
#define VST(p, v) _mm256_storeu_ps((p), (v))
#define VBC(p) _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VZERO() _mm256_setzero_ps()
#define FWD_TILES(X) X(1, 14, 1) X(2, 7, 1)
#define WG_TILES(X) X(3, 1, 1) X(1, 4, 1)
#include "nn/conv3_tmpl.h"

/* SSE (x86-64 baseline): 16 registers, multiply then add (no FMA) needs a temporary */
#define SFX sse
#define TGT
#define V __m128
#define VL 4
#define VLD(p) _mm_loadu_ps(p)
#define VST(p, v) _mm_storeu_ps((p), (v))
#define VBC(p) _mm_set1_ps(*(p))
#define VFMA(a, b, c) _mm_add_ps(_mm_mul_ps((a), (b)), (c))
#define VADD(a, b) _mm_add_ps((a), (b))
#define VZERO() _mm_setzero_ps()
#define FWD_TILES(X) X(1, 7, 1)
#define WG_TILES(X) X(3, 1, 1) X(1, 2, 1)
#include "nn/conv3_tmpl.h"
#endif

static int isa_floats(nn_isa isa)
{
    return isa == NN_ISA_AVX512 ? 16 : isa == NN_ISA_AVX2 ? 8 : isa == NN_ISA_SSE ? 4 : 1;
}

/* The forward tile for W output columns and Cout channels, or ns = 0 if the
 * vector paths do not cover Cout. Rows of 14 or 28 pixels take 14-pixel segments,
 * others 7 (a row whose width is not a multiple wastes part of its last tile). */
static c3_tile fwd_tile_for(nn_isa isa, int W, int Cout)
{
    c3_tile t = {0, 0, 0, 0, 0};
    int L = isa_floats(isa);
    if (isa == NN_ISA_REF || Cout % L) return t;
    int rw = W % 14 == 0 ? 14 : 7;
    if (isa == NN_ISA_AVX512) {
        t.nv = Cout % 32 == 0 ? 2 : 1;
        t.rw = rw;
        t.ns = (t.nv == 2 ? 14 : 28) / rw;
    } else if (isa == NN_ISA_AVX2) {
        t.nv = 1;
        t.rw = rw;
        t.ns = 14 / rw;
    } else {
        t.nv = 1;
        t.rw = 7;
        t.ns = 1;
    }
    return t;
}

static c3_tile wg_tile_for(nn_isa isa, int Cin, int Cout)
{
    c3_tile t = {0, 0, 0, 0, 0};
    int L = isa_floats(isa);
    if (isa == NN_ISA_REF || Cout % L) return t;
    t.nv = isa == NN_ISA_AVX512 && Cout % 32 == 0 ? 2 : 1;
    if (Cin == 1) {
        t.kht = 3;
        t.mc = 1;
        return t;
    }
    t.kht = 1;
    t.mc = isa == NN_ISA_AVX512 ? (t.nv == 2 ? 4 : 8) : isa == NN_ISA_AVX2 ? 4 : 2;
    if (Cin % t.mc) t.nv = t.kht = t.mc = 0;
    return t;
}

static c3_fwd_fn fwd_fn_for(nn_isa isa, const c3_tile *t, int Cin)
{
    if (!t->ns) return NULL;
#ifdef C3_X86
    if (isa == NN_ISA_AVX512) return fwd_pick_avx512(t, Cin);
    if (isa == NN_ISA_AVX2) return fwd_pick_avx2(t, Cin);
    if (isa == NN_ISA_SSE) return fwd_pick_sse(t, Cin);
#endif
    (void)isa;
    (void)Cin;
    return NULL;
}

static c3_wg_fn wg_fn_for(nn_isa isa, const c3_tile *t, int Cin)
{
    if (!t->kht) return NULL;
#ifdef C3_X86
    if (isa == NN_ISA_AVX512) return wg_pick_avx512(t, Cin);
    if (isa == NN_ISA_AVX2) return wg_pick_avx2(t, Cin);
    if (isa == NN_ISA_SSE) return wg_pick_sse(t, Cin);
#endif
    (void)isa;
    (void)Cin;
    return NULL;
}

/* ---- the reference ------------------------------------------------------------------------
 * The definitions above, loop by loop, accumulating in float in the order the tiles
 * do (pair, kh, kw, c), so the vector paths differ from it only by FMA rounding. */

static void fwd_ref(float *y, int npairs, const float *const x[2], const float *const Wp[2],
                    const float *bias, int B, int H, int W, int Cin, int Cout)
{
    const ptrdiff_t xrow = (ptrdiff_t)(W + 2) * Cin, ximg = (H + 2) * xrow;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                for (int o = 0; o < Cout; o++) {
                    float acc = bias ? bias[o] : 0.0f;
                    for (int p = 0; p < npairs; p++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++)
                                for (int c = 0; c < Cin; c++)
                                    acc += x[p][b * ximg + (h + kh) * xrow + (w + kw) * Cin + c] *
                                           Wp[p][((kh * 3 + kw) * Cin + c) * Cout + o];
                    y[(((ptrdiff_t)b * H + h) * W + w) * Cout + o] = acc;
                }
}

static void wg_ref(float *dWp, int npairs, const float *const x[2], const float *const dy[2],
                   int B, int H, int W, int Cin, int Cout)
{
    const ptrdiff_t xrow = (ptrdiff_t)(W + 2) * Cin, ximg = (H + 2) * xrow;
    const ptrdiff_t dyrow = (ptrdiff_t)(W + 2) * Cout, dyimg = (H + 2) * dyrow;
    for (int kh = 0; kh < 3; kh++)
        for (int kw = 0; kw < 3; kw++)
            for (int c = 0; c < Cin; c++)
                for (int o = 0; o < Cout; o++) {
                    float acc = 0.0f;
                    for (int p = 0; p < npairs; p++)
                        for (int b = 0; b < B; b++)
                            for (int h = 0; h < H; h++)
                                for (int w = 0; w < W; w++)
                                    acc += x[p][b * ximg + (h + kh) * xrow + (w + kw) * Cin + c] *
                                           dy[p][b * dyimg + (h + 1) * dyrow + (w + 1) * Cout + o];
                    dWp[((kh * 3 + kw) * Cin + c) * Cout + o] += acc;
                }
}

/* ---- drivers ------------------------------------------------------------------------------- */

/* y (B,H,W,Cout) = sum over pairs of conv(x_p; W_p) + bias; x_p padded, Cin channels */
static void fwd_pairs(float *y, int npairs, const float *const x[2], const float *const Wp[2],
                      const float *bias, int B, int H, int W, int Cin, int Cout)
{
    const nn_isa isa = nn_isa_active();
    const c3_tile t = fwd_tile_for(isa, W, Cout);
    const c3_fwd_fn fn = fwd_fn_for(isa, &t, Cin);
    if (!fn) {
        fwd_ref(y, npairs, x, Wp, bias, B, H, W, Cin, Cout);
        return;
    }
    const int OB = t.nv * isa_floats(isa), ntile = (W + t.rw - 1) / t.rw;
    const ptrdiff_t xrow = (ptrdiff_t)(W + 2) * Cin, ximg = (H + 2) * xrow;
    const long nseg = (long)B * H * ntile;
    c3_fwd_args a;
    memset(&a, 0, sizeof a);
    a.npairs = npairs;
    a.xrow = xrow;
    a.ystride = Cout;
    a.cin = Cin;
    a.cout = Cout;
    for (int o0 = 0; o0 < Cout; o0 += OB) {
        for (int p = 0; p < npairs; p++) a.w[p] = Wp[p] + o0;
        a.bias = bias ? bias + o0 : NULL;
        for (long q0 = 0; q0 < nseg; q0 += t.ns) {
            for (int s = 0; s < t.ns; s++) {
                long q = q0 + s;
                if (q >= nseg) {   /* no segment left: compute a copy of the first, keep none */
                    for (int p = 0; p < npairs; p++) a.x[p][s] = a.x[p][0];
                    a.y[s] = NULL;
                    a.ncols[s] = 0;
                    continue;
                }
                int ti = (int)(q % ntile), h = (int)(q / ntile % H), b = (int)(q / ntile / H);
                int w0 = ti * t.rw;
                for (int p = 0; p < npairs; p++) a.x[p][s] = x[p] + b * ximg + h * xrow + w0 * Cin;
                a.y[s] = y + (((ptrdiff_t)b * H + h) * W + w0) * Cout + o0;
                a.ncols[s] = W - w0 < t.rw ? W - w0 : t.rw;
            }
            fn(&a);
        }
    }
}

/* dWp (3,3,Cin,Cout) += sum over pairs and pixels of x_p (x) dy_p; both padded */
static void wg_pairs(float *dWp, int npairs, const float *const x[2], const float *const dy[2],
                     int B, int H, int W, int Cin, int Cout)
{
    const nn_isa isa = nn_isa_active();
    const c3_tile t = wg_tile_for(isa, Cin, Cout);
    const c3_wg_fn fn = wg_fn_for(isa, &t, Cin);
    if (!fn) {
        wg_ref(dWp, npairs, x, dy, B, H, W, Cin, Cout);
        return;
    }
    const int OB = t.nv * isa_floats(isa);
    c3_wg_args a;
    memset(&a, 0, sizeof a);
    a.npairs = npairs;
    a.nimg = B;
    a.H = H;
    a.W = W;
    a.xrow = (ptrdiff_t)(W + 2) * Cin;
    a.ximg = (H + 2) * a.xrow;
    a.dyrow = (ptrdiff_t)(W + 2) * Cout;
    a.dyimg = (H + 2) * a.dyrow;
    a.dystride = Cout;
    a.cin = Cin;
    a.cout = Cout;
    for (int o0 = 0; o0 < Cout; o0 += OB)
        for (int kh0 = 0; kh0 < 3; kh0 += t.kht)
            for (int c0 = 0; c0 < Cin; c0 += t.mc) {
                for (int p = 0; p < npairs; p++) {
                    a.x[p] = x[p] + kh0 * a.xrow + c0;
                    a.dy[p] = dy[p] + a.dyrow + Cout + o0;
                }
                a.dw = dWp + ((ptrdiff_t)kh0 * 3 * Cin + c0) * Cout + o0;
                fn(&a);
            }
}


/* ---- the layer ----------------------------------------------------------------------------- */

size_t nn_conv3_padded_floats(int B, int H, int W, int C)
{
    /* + a 32-pixel tail: a partial last tile reads past the last image */
    return ((size_t)B * (H + 2) * (W + 2) + 32) * (size_t)C;
}

void nn_conv3_pack(float *Wp, const float *W, int C, int O)
{
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) Wp[((size_t)k * C + c) * O + o] = W[((size_t)o * C + c) * 9 + k];
}

void nn_conv3_pack_adjoint(float *Wt, const float *W, int C, int O)
{
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++)
                Wt[((size_t)(8 - k) * O + o) * C + c] = W[((size_t)o * C + c) * 9 + k];
}

void nn_conv3_unpack_grad(float *dW, const float *dWp, int C, int O)
{
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) dW[((size_t)o * C + c) * 9 + k] += dWp[((size_t)k * C + c) * O + o];
}

void nn_conv3_forward(float *y, const float *x, const float *Wp, const float *b,
                   const conv3_shape *s)
{
    const float *xs[2] = {x, NULL}, *ws[2] = {Wp, NULL};
    fwd_pairs(y, 1, xs, ws, b, s->B, s->H, s->W, s->C, s->O);
}

void nn_conv3_backward(float *dx, float *dWp, float *db, const float *dy, const float *x,
                    const float *Wt, const conv3_shape *s)
{
    const float *xs[2] = {x, NULL}, *dys[2] = {dy, NULL};
    wg_pairs(dWp, 1, xs, dys, s->B, s->H, s->W, s->C, s->O);
    nn_nhwc_pixel_sum(db, dy, s->B, s->H, s->W, s->O);
    if (dx) {
        const float *ws[2] = {Wt, NULL};
        fwd_pairs(dx, 1, dys, ws, NULL, s->B, s->H, s->W, s->O, s->C);
    }
}

void nn_conv3_rforward(float *ry, const float *rx, const float *x, const float *Wp,
                    const float *rWp, const float *rb, const conv3_shape *s)
{
    const float *xs[2] = {x, rx}, *ws[2] = {rWp, Wp};
    fwd_pairs(ry, rx ? 2 : 1, xs, ws, rb, s->B, s->H, s->W, s->C, s->O);
}

void nn_conv3_rbackward(float *rdx, float *rdWp, float *rdb, const float *rdy, const float *dy,
                     const float *x, const float *rx, const float *Wt, const float *rWt,
                     const conv3_shape *s)
{
    const float *xs[2] = {x, rx}, *dys[2] = {rdy, dy};
    wg_pairs(rdWp, rx ? 2 : 1, xs, dys, s->B, s->H, s->W, s->C, s->O);
    nn_nhwc_pixel_sum(rdb, rdy, s->B, s->H, s->W, s->O);
    if (rdx) {
        const float *ws[2] = {Wt, rWt};
        fwd_pairs(rdx, 2, dys, ws, NULL, s->B, s->H, s->W, s->O, s->C);
    }
}
