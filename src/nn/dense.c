/* dense.c - the fully connected layer y = x W^T + b with its gradient and the
 * R-operator pair (Pearlmutter 1994, section 4: R{} of a linear map). Every
 * product is one form, C (M,N) += sum_k A(m,k) B(k,:), with B row-major and A
 * read either by rows or by columns; backward and R-backward accumulate.
 * Batch rows are (B,I) row-major, weights (O,I) as in torch.nn.Linear.
 *
 * The layers of the standard tasks are small (128 x 64 x 32, 128 x 32 x 10): a
 * GEMM library spends most of such a call packing and in edge kernels (OpenBLAS's
 * took ~70% of an fmnist8-mlp training step), so on AVX-512 a register-tiled
 * kernel computes them directly (a tile of rows x up to 64 columns held in
 * registers over the whole reduction, the last vector masked); elsewhere, and
 * for shapes beyond what the stack copy of W^T holds, CBLAS. Single-threaded (the
 * callers own the threads, core.h). */
#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would clobber the dense
 * size I in nn.h; C11 7.3.1p6 allows a program to undefine it. */
#undef I
#include <stddef.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DN_X86 1
#endif

#include "nn/nn.h"
#include "nn/simd.h"

/* ---- C (M,N) += sum_k A(m,k) B(k,:) ---------------------------------------------------
 * A(m,k) = A[m * lda + k] (rows) or A[k * lda + m] (columns, TRANS). With load 0 the
 * tiles start from 0 instead of C (C = the sum), or, given a bias row (N), from it
 * in every row (C = bias + the sum: the forward's bias without a pass storing it
 * into C for the tiles to load back, ~10% of a dense forward). */

#ifdef DN_X86
/* One tile: RM rows x NV vectors of 16 columns (the last masked by `last`); rm <= RM
 * rows valid, the others computed on row 0 and dropped. */
#define DN_TILE(RM, NV, TRANS)                                                             \
    __attribute__((target("avx512f"))) static void dn_tile_##RM##_##NV##_##TRANS(        \
        float *C, ptrdiff_t ldc, const float *A, ptrdiff_t lda, const float *B,            \
        ptrdiff_t ldb, int rm, int K, __mmask16 last, int load, const float *bias)         \
    {                                                                                      \
        __m512 acc[RM][NV];                                                                \
        const float *ar[RM];                                                               \
        _Pragma("GCC unroll 24") for (int r = 0; r < RM; r++) {                            \
            int rr = r < rm ? r : 0;                                                       \
            ar[r] = TRANS ? A + rr : A + rr * lda;                                         \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                         \
                __mmask16 k = v == NV - 1 ? last : 0xFFFF;                                 \
                acc[r][v] = load && r < rm ? _mm512_maskz_loadu_ps(k, C + r * ldc + v * 16) \
                            : bias         ? _mm512_maskz_loadu_ps(k, bias + v * 16)       \
                                           : _mm512_setzero_ps();                          \
            }                                                                              \
        }                                                                                  \
        for (int k = 0; k < K; k++) {                                                      \
            __m512 b[NV];                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                           \
                b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, B + k * ldb + v * 16); \
            _Pragma("GCC unroll 24") for (int r = 0; r < RM; r++) {                        \
                __m512 a = _mm512_set1_ps(TRANS ? ar[r][k * lda] : ar[r][k]);              \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                       \
                    acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);                       \
            }                                                                              \
        }                                                                                  \
        _Pragma("GCC unroll 24") for (int r = 0; r < RM; r++) {                            \
            if (r >= rm) break;                                                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                           \
                _mm512_mask_storeu_ps(C + r * ldc + v * 16, v == NV - 1 ? last : 0xFFFF,   \
                                      acc[r][v]);                                          \
        }                                                                                  \
    }
DN_TILE(24, 1, 0)
DN_TILE(12, 2, 0)
DN_TILE(8, 3, 0)
DN_TILE(6, 4, 0)
DN_TILE(24, 1, 1)
DN_TILE(12, 2, 1)
DN_TILE(8, 3, 1)
DN_TILE(6, 4, 1)
typedef void (*dn_tile_fn)(float *, ptrdiff_t, const float *, ptrdiff_t, const float *,
                           ptrdiff_t, int, int, __mmask16, int, const float *);


/* wt (K,N) = W (N,K)^T in 16 x 16 blocks through registers (element by element the
 * strided stores were ~15% of a dense forward) */
__attribute__((target("avx512f"))) static void transpose_avx512(float *wt, const float *W,
                                                                int N, int K)
{
    for (int n0 = 0; n0 < N; n0 += 16) {
        const int nn = N - n0 < 16 ? N - n0 : 16;
        const __mmask16 kn = (__mmask16)((1u << nn) - 1);
        for (int k0 = 0; k0 < K; k0 += 16) {
            const int kk = K - k0 < 16 ? K - k0 : 16;
            const __mmask16 kr = (__mmask16)((1u << kk) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < nn ? _mm512_maskz_loadu_ps(kr, W + (size_t)(n0 + i) * K + k0)
                              : _mm512_setzero_ps();
            nn_transpose16(r);
            for (int i = 0; i < kk; i++)
                _mm512_mask_storeu_ps(wt + (size_t)(k0 + i) * N + n0, kn, r[i]);
        }
    }
}
#endif

/* Returns 0 (nothing done) when the AVX-512 tiles do not apply. */
static int gemm_tiles(float *C, int ldc, const float *A, int lda, int trans, const float *B,
                      int ldb, int M, int N, int K, int load, const float *bias)
{
#ifdef DN_X86
    if (nn_isa_active() != NN_ISA_AVX512) return 0;
    /* Every shape takes the tiles, however few its rows (a tile computes its RM rows
     * whatever M is): handing small M to CBLAS (tried for the learned optimizer's
     * M = 2 output layer) changed fmnist-cnn's training in the last bits, since its
     * image groups are small, and made it depend on OPENBLAS_CORETYPE. */
    static const int rows_for[5] = {0, 24, 12, 8, 6};
    for (int n0 = 0; n0 < N; n0 += 64) {
        int nn = N - n0 < 64 ? N - n0 : 64, nv = (nn + 15) / 16;
        __mmask16 last = (__mmask16)(nn % 16 ? (1u << (nn % 16)) - 1 : 0xFFFF);
        static const dn_tile_fn fns[2][5] = {
            {NULL, dn_tile_24_1_0, dn_tile_12_2_0, dn_tile_8_3_0, dn_tile_6_4_0},
            {NULL, dn_tile_24_1_1, dn_tile_12_2_1, dn_tile_8_3_1, dn_tile_6_4_1}};
        const int RM = rows_for[nv];   /* RM x nv = 24 accumulators */
        const dn_tile_fn fn = fns[trans][nv];
        for (int m0 = 0; m0 < M; m0 += RM) {
            int rm = M - m0 < RM ? M - m0 : RM;
            const float *Am = trans ? A + m0 : A + (ptrdiff_t)m0 * lda;
            fn(C + (ptrdiff_t)m0 * ldc + n0, ldc, Am, lda, B + n0, ldb, rm, K, last, load,
               bias ? bias + n0 : NULL);
        }
    }
    return 1;
#else
    (void)C, (void)ldc, (void)A, (void)lda, (void)trans, (void)B, (void)ldb, (void)M, (void)N,
        (void)K, (void)load, (void)bias;
    return 0;
#endif
}

/* C (M,N) = beta C + A (M,K) B (K,N), beta 1 or 0 (C then only written) */
static void gemm_nn(float *C, const float *A, const float *B, int M, int N, int K, float beta)
{
    if (!gemm_tiles(C, N, A, K, 0, B, N, M, N, K, beta != 0.0f, NULL))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, beta,
                    C, N);
}

/* C (M,N) += A^T B, A (K,M), B (K,N) */
static void gemm_tn(float *C, const float *A, const float *B, int M, int N, int K)
{
    if (!gemm_tiles(C, N, A, M, 1, B, N, M, N, K, 1, NULL))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, M, B, N, 1.0f,
                    C, N);
}

/* y (B,O) = b broadcast, then += x W^T, so the GEMM never needs a zeroing pass */
static void rows_set_bias(float *y, const float *b, int B, int O)
{
    for (int i = 0; i < B; i++)
        for (int o = 0; o < O; o++) y[(size_t)i * O + o] = b[o];
}

/* db (O) += sum over the B rows of dy (B,O) */
static void rows_sum_into(float *db, const float *dy, int B, int O)
{
    for (int i = 0; i < B; i++)
        for (int o = 0; o < O; o++) db[o] += dy[(size_t)i * O + o];
}

/* C (M,N) += A (M,K) W^T, W (N,K), or with a bias (N) C = bias broadcast + A W^T:
 * through a stack copy of W^T when it is small */
#define DN_WT_MAX 8192
static void gemm_nt(float *C, const float *A, const float *W, const float *bias, int M, int N,
                    int K)
{
#ifdef DN_X86
    if ((size_t)N * K <= DN_WT_MAX && nn_isa_active() == NN_ISA_AVX512) {
        float wt[DN_WT_MAX];   /* (K,N) */
        transpose_avx512(wt, W, N, K);
        if (gemm_tiles(C, N, A, K, 0, wt, N, M, N, K, !bias, bias)) return;
    }
#endif
    if (bias) rows_set_bias(C, bias, M, N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, W, K, 1.0f, C, N);
}

void nn_dense_forward(float *y, const float *x, const float *W, const float *b, int B,
                   int I, int O)
{
    gemm_nt(y, x, W, b, B, O, I);
}

/* y = x W^T + b  =>  dx += dy W ; dW += dy^T x ; db += sum_b dy */
void nn_dense_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                    const float *W, int B, int I, int O)
{
    if (dx) gemm_nn(dx, dy, W, B, I, O, 1.0f);
    gemm_tn(dW, dy, x, O, I, B);
    rows_sum_into(db, dy, B, O);
}

/* the same with dx = dy W written: no zeroing pass over dx, no reading it back */
void nn_dense_backward_set_dx(float *dx, float *dW, float *db, const float *dy,
                              const float *x, const float *W, int B, int I, int O)
{
    gemm_nn(dx, dy, W, B, I, O, 0.0f);
    gemm_tn(dW, dy, x, O, I, B);
    rows_sum_into(db, dy, B, O);
}

/* y = x W^T + b  =>  ry = rx W^T + x rW^T + rb */
void nn_dense_rforward(float *ry, const float *rx, const float *x, const float *W,
                    const float *rW, const float *rb, int B, int I, int O)
{
    gemm_nt(ry, x, rW, rb, B, O, I);
    if (rx) gemm_nt(ry, rx, W, NULL, B, O, I);
}

/* dx = dy W, dW = dy^T x, db = sum_b dy, differentiated along (rx, rW, rb):
 *   R{dx} = rdy W + dy rW ;  R{dW} = rdy^T x + dy^T rx ;  R{db} = sum_b rdy */
void nn_dense_rbackward(float *rdx, float *rdW, float *rdb, const float *rdy,
                     const float *dy, const float *x, const float *rx, const float *W,
                     const float *rW, int B, int I, int O)
{
    if (rdx) {
        gemm_nn(rdx, rdy, W, B, I, O, 1.0f);
        gemm_nn(rdx, dy, rW, B, I, O, 1.0f);
    }
    gemm_tn(rdW, rdy, x, O, I, B);
    if (rx) gemm_tn(rdW, dy, rx, O, I, B);
    rows_sum_into(rdb, rdy, B, O);
}
