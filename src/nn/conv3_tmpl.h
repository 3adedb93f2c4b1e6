/* conv3_tmpl.h - the register-tiled kernels of conv3.c for one instruction set.
 * Not a header of its own: conv3.c includes it once per ISA with these defined (and
 * this file undefines them again at its end):
 *   SFX               suffix of the generated names (avx512, avx2, sse)
 *   TGT               the function attribute that enables the ISA (empty: baseline)
 *   V, VL             the vector type and how many floats it holds
 *   VLD(p), VST(p, v) unaligned load / store
 *   VBC(p)            *p broadcast to every lane
 *   VFMA(a, b, c)     a * b + c (fused where the ISA has it)
 *   VZERO()
 *   FWD_TILES(X)      the forward tile shapes X(NS, RW, NV) this ISA instantiates
 *   WG_TILES(X)       the weight-gradient tile shapes X(KHT, MC, NV)
 *
 * A forward tile computes NS row segments of RW output pixels times NV vectors of
 * output channels, entirely in registers (NS * RW * NV accumulators, sized to the
 * register file minus the weights and one broadcast), over the 9 taps and all
 * input channels: per step NV weight loads, NS * RW broadcasts, NS * RW * NV FMAs.
 * The input channel count is a compile-time constant CC (1, 16 or 32; 0 = read at
 * run time), so the broadcast addresses x + r*C + c are immediate displacements.
 *
 * A weight-gradient tile accumulates KHT kernel rows x 3 kernel columns x MC input
 * channels x NV vectors of output channels over every output pixel of the images
 * (per pixel: NV loads of dy, KHT * 3 * MC broadcasts of x). The tile runs over all
 * pixels before its sums are added to memory once, so the reduction is long and the
 * stores few. */

#define C3_CAT_(a, b) a##_##b
#define C3_CAT(a, b) C3_CAT_(a, b)
#define C3_FN(base, a, b, c, d) C3_CAT(C3_CAT(C3_CAT(C3_CAT(C3_CAT(base, a), b), c), d), SFX)

#define C3_FWD_TILE(NS, RW, NV, CC)                                                     \
    TGT static void C3_FN(fwd_tile, NS, RW, NV, CC)(const c3_fwd_args *a)               \
    {                                                                                   \
        const int C = (CC) ? (CC) : a->cin;                                             \
        const int O = a->cout;                                                          \
        const ptrdiff_t xrow = a->xrow;                                                 \
        V acc[NS][RW][NV];                                                              \
        _Pragma("GCC unroll 4") for (int s = 0; s < NS; s++)                            \
        _Pragma("GCC unroll 28") for (int r = 0; r < RW; r++)                           \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                            \
            acc[s][r][v] = a->bias ? VLD(a->bias + v * VL) : VZERO();                    \
        for (int p = 0; p < a->npairs; p++) {                                           \
            const float *wk = a->w[p];                                                  \
            for (int kh = 0; kh < 3; kh++)                                              \
                for (int kw = 0; kw < 3; kw++) {                                        \
                    const float *xs[NS];                                                \
                    _Pragma("GCC unroll 4") for (int s = 0; s < NS; s++)                \
                        xs[s] = a->x[p][s] + kh * xrow + kw * C;                        \
                    for (int c = 0; c < C; c++, wk += O) {                              \
                        V w[NV];                                                        \
                        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)            \
                            w[v] = VLD(wk + v * VL);                                    \
                        _Pragma("GCC unroll 4") for (int s = 0; s < NS; s++)            \
                        _Pragma("GCC unroll 28") for (int r = 0; r < RW; r++) {         \
                            V b = VBC(xs[s] + r * C + c);                               \
                            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)        \
                                acc[s][r][v] = VFMA(b, w[v], acc[s][r][v]);             \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
        }                                                                               \
        _Pragma("GCC unroll 4") for (int s = 0; s < NS; s++) {                          \
            if (!a->y[s]) continue;                                                     \
            _Pragma("GCC unroll 28") for (int r = 0; r < RW; r++) {                     \
                if (r >= a->ncols[s]) break;                                            \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                    \
                    VST(a->y[s] + (ptrdiff_t)r * a->ystride + v * VL, acc[s][r][v]);     \
            }                                                                           \
        }                                                                               \
    }

#define C3_WG_TILE(KHT, MC, NV, CC)                                                     \
    TGT static void C3_FN(wg_tile, KHT, MC, NV, CC)(const c3_wg_args *a)                \
    {                                                                                   \
        const int C = (CC) ? (CC) : a->cin;                                             \
        const ptrdiff_t xrow = a->xrow;                                                 \
        V acc[KHT][3][MC][NV];                                                          \
        _Pragma("GCC unroll 3") for (int i = 0; i < KHT; i++)                           \
        _Pragma("GCC unroll 3") for (int j = 0; j < 3; j++)                             \
        _Pragma("GCC unroll 8") for (int m = 0; m < MC; m++)                            \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                            \
            acc[i][j][m][v] = VZERO();                                                  \
        for (int p = 0; p < a->npairs; p++)                                             \
            for (int b = 0; b < a->nimg; b++)                                           \
                for (int h = 0; h < a->H; h++) {                                        \
                    const float *xp = a->x[p] + b * a->ximg + h * xrow;                 \
                    const float *dp = a->dy[p] + b * a->dyimg + h * a->dyrow;           \
                    for (int w = 0; w < a->W; w++, xp += C, dp += a->dystride) {        \
                        V d[NV];                                                        \
                        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)            \
                            d[v] = VLD(dp + v * VL);                                    \
                        _Pragma("GCC unroll 3") for (int i = 0; i < KHT; i++)           \
                        _Pragma("GCC unroll 3") for (int j = 0; j < 3; j++)             \
                        _Pragma("GCC unroll 8") for (int m = 0; m < MC; m++) {          \
                            V x = VBC(xp + i * xrow + j * C + m);                       \
                            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)        \
                                acc[i][j][m][v] = VFMA(x, d[v], acc[i][j][m][v]);       \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
        _Pragma("GCC unroll 3") for (int i = 0; i < KHT; i++)                           \
        _Pragma("GCC unroll 3") for (int j = 0; j < 3; j++)                             \
        _Pragma("GCC unroll 8") for (int m = 0; m < MC; m++)                            \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                          \
            float *dw = a->dw + ((ptrdiff_t)(i * 3 + j) * C + m) * a->cout + v * VL;     \
            VST(dw, VADD(VLD(dw), acc[i][j][m][v]));                                    \
        }                                                                               \
    }

/* every tile shape for C = 1, 16, 32 and a run-time C */
#define C3_FWD_ALL_C(NS, RW, NV) \
    C3_FWD_TILE(NS, RW, NV, 1) C3_FWD_TILE(NS, RW, NV, 16) C3_FWD_TILE(NS, RW, NV, 32) \
    C3_FWD_TILE(NS, RW, NV, 0)
#define C3_WG_ALL_C(KHT, MC, NV) \
    C3_WG_TILE(KHT, MC, NV, 1) C3_WG_TILE(KHT, MC, NV, 16) C3_WG_TILE(KHT, MC, NV, 32) \
    C3_WG_TILE(KHT, MC, NV, 0)
FWD_TILES(C3_FWD_ALL_C)
WG_TILES(C3_WG_ALL_C)

/* the tile function for (NS, RW, NV) and C */
#define C3_FWD_PICK(NS, RW, NV)                                                         \
    if (t->ns == NS && t->rw == RW && t->nv == NV)                                      \
        return C == 1 ? C3_FN(fwd_tile, NS, RW, NV, 1)                                  \
             : C == 16 ? C3_FN(fwd_tile, NS, RW, NV, 16)                                \
             : C == 32 ? C3_FN(fwd_tile, NS, RW, NV, 32) : C3_FN(fwd_tile, NS, RW, NV, 0);
static c3_fwd_fn C3_CAT(fwd_pick, SFX)(const c3_tile *t, int C)
{
    FWD_TILES(C3_FWD_PICK)
    return NULL;
}

#define C3_WG_PICK(KHT, MC, NV)                                                         \
    if (t->kht == KHT && t->mc == MC && t->nv == NV)                                    \
        return C == 1 ? C3_FN(wg_tile, KHT, MC, NV, 1)                                  \
             : C == 16 ? C3_FN(wg_tile, KHT, MC, NV, 16)                                \
             : C == 32 ? C3_FN(wg_tile, KHT, MC, NV, 32) : C3_FN(wg_tile, KHT, MC, NV, 0);
static c3_wg_fn C3_CAT(wg_pick, SFX)(const c3_tile *t, int C)
{
    WG_TILES(C3_WG_PICK)
    return NULL;
}

#undef C3_FWD_TILE
#undef C3_WG_TILE
#undef C3_FWD_ALL_C
#undef C3_WG_ALL_C
#undef C3_FWD_PICK
#undef C3_WG_PICK
/* the instruction set's macros (conv3.c defines them before each inclusion) */
#undef SFX
#undef TGT
#undef V
#undef VL
#undef VLD
#undef VST
#undef VBC
#undef VFMA
#undef VADD
#undef VZERO
#undef FWD_TILES
#undef WG_TILES
