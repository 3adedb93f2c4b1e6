/* nhwc_tmpl.h - the vector forms of nhwc.c's fused layers for one instruction set,
 * included by nhwc.c once per ISA (the macro set of conv3_tmpl.h plus masks and
 * 32-bit integer lanes, see nhwc.c; undefined again at the end of this file, so
 * the next inclusion defines its own). Vectors run over channels; C % VL == 0.
 * Lane for lane the same operations as the scalar forms (selects and the same
 * summation order), NaN rules included, so both give the same bits. */

#define N2_CAT_(a, b) a##_##b
#define N2_CAT(a, b) N2_CAT_(a, b)
#define N2_FN(base) N2_CAT(base, SFX)

/* relu passing NaN on; max(x, 0) returns its second operand, +0, for x = -0 */
#define N2_RELU(x) VSEL(VUNORD(x), VMAX((x), zero), (x))
/* v replaces the best m: strictly greater, or a NaN over a number */
#define N2_TAKES(v, m) VMOR(VGT((v), (m)), VMANDNOT(VUNORD(v), VUNORD(m)))

TGT static void N2_FN(pool_fwd)(float *P, int32_t *am, const float *y, int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    const V zero = VZERO();
    for (int b = 0; b < B; b++)
        for (int i = 0; i < OH; i++) {
            const float *r0 = y + (((ptrdiff_t)b * H + 2 * i) * W) * C, *r1 = r0 + (ptrdiff_t)W * C;
            float *p = P + b * pimg + (i + 1) * prow + C;
            int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++)
                for (int c = 0; c < C; c += VL) {
                    const ptrdiff_t o = (ptrdiff_t)2 * j * C + c;
                    V x1 = VLD(r0 + o + C), x2 = VLD(r1 + o), x3 = VLD(r1 + o + C);
                    /* the first maximum in window order of the relus */
                    V m = VLD(r0 + o);
                    m = N2_RELU(m);
                    VI k = VISET1(0);
                    V v = N2_RELU(x1);
                    VM t = N2_TAKES(v, m);
                    k = VISEL(t, k, VISET1(1));
                    m = VSEL(t, m, v);
                    v = N2_RELU(x2);
                    t = N2_TAKES(v, m);
                    k = VISEL(t, k, VISET1(2));
                    m = VSEL(t, m, v);
                    v = N2_RELU(x3);
                    t = N2_TAKES(v, m);
                    k = VISEL(t, k, VISET1(3));
                    m = VSEL(t, m, v);
                    VST(p + (ptrdiff_t)j * C + c, m);
                    VIST(a + (ptrdiff_t)j * C + c, k);
                }
        }
}

TGT static void N2_FN(pool_bwd)(float *dy, const float *dP, const int32_t *am, const float *P,
                                int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    const ptrdiff_t drow = (ptrdiff_t)(W + 2) * C, dimg = (H + 2) * drow;
    const V zero = VZERO();
    for (int b = 0; b < B; b++)
        for (int i = 0; i < OH; i++) {
            float *d0 = dy + b * dimg + (2 * i + 1) * drow + C, *d1 = d0 + drow;
            const float *g = dP + (((ptrdiff_t)b * OH + i) * OW) * C;
            const float *p = P + b * pimg + (i + 1) * prow + C;
            const int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++)
                for (int c = 0; c < C; c += VL) {
                    const ptrdiff_t t = (ptrdiff_t)j * C + c, e = (ptrdiff_t)2 * j * C + c;
                    V v = VSEL(VGT(VLD(p + t), zero), zero, VLD(g + t));
                    VI k = VILD(a + t);
                    VST(d0 + e, VSEL(VIEQ(k, 0), zero, v));
                    VST(d0 + e + C, VSEL(VIEQ(k, 1), zero, v));
                    VST(d1 + e, VSEL(VIEQ(k, 2), zero, v));
                    VST(d1 + e + C, VSEL(VIEQ(k, 3), zero, v));
                }
        }
}

TGT static void N2_FN(pool_rfwd)(float *rP, const float *ry, const int32_t *am, const float *P,
                                 int B, int H, int W, int C)
{
    const int OH = H / 2, OW = W / 2;
    const ptrdiff_t prow = (ptrdiff_t)(OW + 2) * C, pimg = (OH + 2) * prow;
    const V zero = VZERO();
    for (int b = 0; b < B; b++)
        for (int i = 0; i < OH; i++) {
            const float *r0 = ry + (((ptrdiff_t)b * H + 2 * i) * W) * C, *r1 = r0 + (ptrdiff_t)W * C;
            const float *p = P + b * pimg + (i + 1) * prow + C;
            float *rp = rP + b * pimg + (i + 1) * prow + C;
            const int32_t *a = am + (((ptrdiff_t)b * OH + i) * OW) * C;
            for (int j = 0; j < OW; j++)
                for (int c = 0; c < C; c += VL) {
                    const ptrdiff_t t = (ptrdiff_t)j * C + c, o = (ptrdiff_t)2 * j * C + c;
                    VI k = VILD(a + t);
                    V v = VLD(r0 + o);
                    v = VSEL(VIEQ(k, 1), v, VLD(r0 + o + C));
                    v = VSEL(VIEQ(k, 2), v, VLD(r1 + o));
                    v = VSEL(VIEQ(k, 3), v, VLD(r1 + o + C));
                    VST(rp + t, VSEL(VGT(VLD(p + t), zero), zero, v));
                }
        }
}

TGT static void N2_FN(gap_fwd)(float *G, float *A, int B, int HW, int C)
{
    const V zero = VZERO(), inv = VSET1(1.0f / (float)HW);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c += VL) {
            float *a = A + (ptrdiff_t)b * HW * C + c;
            V s = VZERO();
            for (int i = 0; i < HW; i++, a += C) {
                V x = VLD(a);
                x = N2_RELU(x);
                VST(a, x);
                s = VADD(s, x);
            }
            VST(G + (ptrdiff_t)b * C + c, VMUL(s, inv));
        }
}

TGT static void N2_FN(gap_bwd)(float *dy, const float *dG, const float *A, int B, int H, int W,
                               int C)
{
    const V zero = VZERO(), inv = VSET1(1.0f / (float)(H * W));
    const ptrdiff_t drow = (ptrdiff_t)(W + 2) * C, dimg = (H + 2) * drow;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c += VL) {
            V g = VMUL(VLD(dG + (ptrdiff_t)b * C + c), inv);
            for (int h = 0; h < H; h++) {
                float *d = dy + b * dimg + (h + 1) * drow + C + c;
                const float *a = A + (((ptrdiff_t)b * H + h) * W) * C + c;
                for (int w = 0; w < W; w++)
                    VST(d + (ptrdiff_t)w * C, VSEL(VGT(VLD(a + (ptrdiff_t)w * C), zero), zero, g));
            }
        }
}

TGT static void N2_FN(gap_rfwd)(float *rG, float *rA, const float *A, int B, int HW, int C)
{
    const V zero = VZERO(), inv = VSET1(1.0f / (float)HW);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c += VL) {
            float *r = rA + (ptrdiff_t)b * HW * C + c;
            const float *a = A + (ptrdiff_t)b * HW * C + c;
            V s = VZERO();
            for (int i = 0; i < HW; i++) {
                V x = VSEL(VGT(VLD(a + (ptrdiff_t)i * C), zero), zero, VLD(r + (ptrdiff_t)i * C));
                VST(r + (ptrdiff_t)i * C, x);
                s = VADD(s, x);
            }
            VST(rG + (ptrdiff_t)b * C + c, VMUL(s, inv));
        }
}

/* db (C) += sum over the interior pixels of the padded dy */
TGT static void N2_FN(pixel_sum)(float *db, const float *dy, int B, int H, int W, int C)
{
    const ptrdiff_t row = (ptrdiff_t)(W + 2) * C, img = (H + 2) * row;
    for (int c = 0; c < C; c += VL) {
        V s = VZERO();
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const float *r = dy + b * img + (h + 1) * row + C + c;
                for (int w = 0; w < W; w++) s = VADD(s, VLD(r + (ptrdiff_t)w * C));
            }
        VST(db + c, VADD(VLD(db + c), s));
    }
}

static const nhwc_impl N2_FN(nhwc_impl) = {
    VL, N2_FN(pool_fwd), N2_FN(pool_bwd), N2_FN(pool_rfwd), N2_FN(gap_fwd), N2_FN(gap_bwd),
    N2_FN(gap_rfwd), N2_FN(pixel_sum),
};

#undef N2_RELU
#undef N2_TAKES
/* the instruction set's macros (nhwc.c defines them before each inclusion) */
#undef SFX
#undef TGT
#undef V
#undef VI
#undef VM
#undef VL
#undef VLD
#undef VST
#undef VILD
#undef VIST
#undef VSET1
#undef VISET1
#undef VZERO
#undef VADD
#undef VMUL
#undef VMAX
#undef VGT
#undef VUNORD
#undef VIEQ
#undef VSEL
#undef VISEL
#undef VMOR
#undef VMANDNOT
