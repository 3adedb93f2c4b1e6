/* test_nn.c - every layer of src/nn against finite differences.
 *
 * Each layer is wrapped as a map theta -> y, where theta holds the differentiated
 * inputs and parameters flat (x, W, b; an input that is data is left out and its
 * adjoint pointer passed as NULL), and closed with a quadratic head
 *     J(theta) = sum_i c_i y_i + 0.5 q_i y_i^2          (c, q fixed, random)
 * so dJ/dy = c + q y and R{dJ/dy} = q ry: the Hessian is non-trivial even for linear
 * layers, and for bilinear ones (dense, conv) the direction mixes rx with rW, which
 * exercises the cross terms (dy rW, dy^T rx) of the R-backward. The loss layer is
 * its own head (J = the loss). For each layer:
 *   grad   backward vs central differences of J in double, coordinate by coordinate,
 *          reported per segment (input, weight, bias);
 *   hvp    rforward + rbackward vs (grad(theta + e v) - grad(theta - e v)) / 2e for
 *          a random joint direction v (input and parameter tangents together);
 *   rfwd   R{y} vs central differences of y along v (an R-forward error can cancel
 *          out of H v, e.g. a ReLU mask applied again by the R-backward);
 *   sym    u^T (H v) = v^T (H u).
 * Objectives are summed in double; the FD noise floor (float rounding of y over a
 * 2e-3 step) is ~1e-4 of the largest entry, the tolerances sit 5x above it, and a
 * dropped term moves entries by O(1) of it (verified by mutating the kernels).
 * The buffers a kernel must overwrite are pre-filled with NaN and the ones it must
 * accumulate into with a known pattern (subtracted afterwards), so a kernel that
 * reads its output or assigns instead of adding fails.
 *
 * Kinks: ReLU and max-pool inputs are a random permutation of a grid with spacing
 * GRID (half-integer multiples, so |x| >= GRID/2 and window entries differ by at
 * least GRID). The largest finite-difference displacement is EPS * max|v| < 5e-3,
 * far below GRID/2 = 2.5e-2, so no step crosses a kink or changes an argmax.
 *
 * Conv is checked on the fast path (3x3 / pad 1 / stride 1) and the general one
 * (5x5 pad 2 stride 2; 3x3 pad 0 on a non-square input; 1x1; a 2x3 kernel), with
 * C = 1 and a data input (dx = NULL). At the fmnist-cnn layer sizes, with batches
 * that span several col2im slices, the forward and R-forward are compared with a
 * naive direct convolution, backward with dot-product (adjoint) identities for dx,
 * dW, db, and R-backward with backward applied to its two terms. Last, the big
 * kernels are run with their OpenMP loops off and on and must agree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/core.h"
#include "nn/nn.h"

#define SEED 20240611u
#define EPS 1e-3     /* finite-difference step (theta is O(1)) */
#define GRID 0.05    /* spacing of kink-free inputs */
#define RTOL 5e-3    /* relative tolerance of FD comparisons */
#define ATOL 5e-4    /* absolute tolerance, times the largest |want| of the check */

static uint64_t rng_next = 0;   /* draws used so far: no two buffers share noise */

static void fill_normal(float *x, size_t n, float std)
{
    lopt_rng_fill_normal(x, n, std, SEED, LOPT_STREAM_TEST, rng_next);
    rng_next += n;
}

static void fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* x = a random permutation of (k + 1/2 - floor(n/2)) GRID, k = 0..n-1 */
static void fill_grid(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(((double)i - (double)(n / 2) + 0.5) * GRID);
    for (size_t i = n; i > 1; i--) {
        size_t j = lopt_rng_u64(SEED, LOPT_STREAM_TEST + 1, rng_next++) % i;
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

static double max_abs(const double *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* ---- a layer as theta -> y ---------------------------------------------------------- */

typedef struct lcase lcase;
struct lcase {
    char name[64];
    size_t n;              /* theta */
    size_t ny;             /* y */
    int nseg;
    const char *seg[3];
    size_t off[4];         /* segment k is theta[off[k], off[k+1]) */
    int loss_head;         /* y is the loss itself: J = loss, dy = 1, rdy = 0 */
    double loss;           /* set by fwd when loss_head, in double */
    double eps;            /* finite-difference step; 0 means EPS */
    int kinks;             /* piecewise linear: theta is on the GRID, see above */
    void (*fwd)(lcase *L, const float *th, float *y);
    void (*bwd)(lcase *L, const float *th, const float *dy, float *g);
    void (*rfwd)(lcase *L, const float *th, const float *v, float *ry);
    void (*rbwd)(lcase *L, const float *th, const float *v, const float *dy,
                 const float *rdy, float *hv);
    void *ctx;
};

typedef struct {
    lcase *L;
    float *c, *q;            /* (ny) head coefficients */
    float *y, *dy, *ry, *rdy;   /* (ny) */
    float *acc;              /* (n) accumulation target */
    float *pat;              /* (n) pattern the accumulation target starts from */
} driver;

static void driver_init(driver *d, lcase *L)
{
    d->L = L;
    d->c = lopt_floats(L->ny);
    d->q = lopt_floats(L->ny);
    d->y = lopt_floats(L->ny);
    d->dy = lopt_floats(L->ny);
    d->ry = lopt_floats(L->ny);
    d->rdy = lopt_floats(L->ny);
    d->acc = lopt_floats(L->n);
    d->pat = lopt_floats(L->n);
    if (L->loss_head) {
        d->c[0] = 1.0f;   /* q = 0 */
    } else {
        fill_normal(d->c, L->ny, 1.0f);
        fill_normal(d->q, L->ny, 1.0f);
    }
    for (size_t i = 0; i < L->n; i++) d->pat[i] = (float)(0.25 * sin(1.0 + (double)i));
}

static void driver_free(driver *d)
{
    lopt_free(d->c);
    lopt_free(d->q);
    lopt_free(d->y);
    lopt_free(d->dy);
    lopt_free(d->ry);
    lopt_free(d->rdy);
    lopt_free(d->acc);
    lopt_free(d->pat);
}

static double objective(driver *d, const float *th)
{
    lcase *L = d->L;
    fill_nan(d->y, L->ny);
    L->fwd(L, th, d->y);
    if (L->loss_head) return L->loss;
    double J = 0.0;
    for (size_t i = 0; i < L->ny; i++)
        J += (double)d->c[i] * d->y[i] + 0.5 * (double)d->q[i] * d->y[i] * d->y[i];
    return J;
}

/* g (n) = dJ/dtheta by backward, accumulated onto the pattern then read back */
static void gradient(driver *d, const float *th, double *g)
{
    lcase *L = d->L;
    objective(d, th);
    for (size_t i = 0; i < L->ny; i++) d->dy[i] = d->c[i] + d->q[i] * d->y[i];
    memcpy(d->acc, d->pat, L->n * sizeof(float));
    L->bwd(L, th, d->dy, d->acc);
    for (size_t i = 0; i < L->n; i++) g[i] = (double)d->acc[i] - d->pat[i];
}

/* hv (n) = H v by forward, backward, rforward, rbackward */
static void hvp(driver *d, const float *th, const float *v, double *hv)
{
    lcase *L = d->L;
    double *g = malloc(L->n * sizeof(double));
    gradient(d, th, g);
    free(g);
    fill_nan(d->ry, L->ny);
    L->rfwd(L, th, v, d->ry);
    for (size_t i = 0; i < L->ny; i++) d->rdy[i] = d->q[i] * d->ry[i];
    memcpy(d->acc, d->pat, L->n * sizeof(float));
    L->rbwd(L, th, v, d->dy, d->rdy, d->acc);
    for (size_t i = 0; i < L->n; i++) hv[i] = (double)d->acc[i] - d->pat[i];
}

static void check_segments(const lcase *L, const char *what, const double *got,
                           const double *want)
{
    double scale = max_abs(want, L->n);
    for (int k = 0; k < L->nseg; k++) {
        char name[128];
        snprintf(name, sizeof name, "%s %s %s", L->name, what, L->seg[k]);
        size_t a = L->off[k], n = L->off[k + 1] - a;
        check_close(name, got + a, want + a, n, RTOL, ATOL * scale + 1e-9);
    }
}

/* grad, hvp and symmetry checks of one layer at the point th (L->n) */
static void check_layer(lcase *L, const float *th)
{
    driver d;
    driver_init(&d, L);
    size_t n = L->n;
    float *tp = lopt_floats(n), *tm = lopt_floats(n), *u = lopt_floats(n),
          *v = lopt_floats(n);
    double *got = calloc(n, sizeof(double)), *want = calloc(n, sizeof(double)),
           *gp = calloc(n, sizeof(double)), *gm = calloc(n, sizeof(double)),
           *hu = calloc(n, sizeof(double));

    const float e = (float)(L->eps > 0 ? L->eps : EPS);

    /* gradient vs central differences, one coordinate at a time */
    gradient(&d, th, got);
    memcpy(tp, th, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float t = th[i];
        tp[i] = t + e;
        double jp = objective(&d, tp);
        tp[i] = t - e;
        double jm = objective(&d, tp);
        want[i] = (jp - jm) / ((double)(t + e) - (double)(t - e));
        tp[i] = t;
    }
    check_segments(L, "grad", got, want);

    /* H v vs central differences of the gradient along v */
    fill_normal(v, n, 1.0f);
    fill_normal(u, n, 1.0f);
    float vmax = 0.0f;
    for (size_t i = 0; i < n; i++) vmax = fmaxf(vmax, fabsf(v[i]));
    CHECK(!L->kinks || e * vmax < GRID / 2, "%s: step %g x |v| %g could cross a kink",
          L->name, e, vmax);
    for (size_t i = 0; i < n; i++) {
        tp[i] = th[i] + e * v[i];
        tm[i] = th[i] - e * v[i];
    }
    gradient(&d, tp, gp);
    gradient(&d, tm, gm);
    for (size_t i = 0; i < n; i++) want[i] = (gp[i] - gm[i]) / (2.0 * (double)e);
    hvp(&d, th, v, got);
    check_segments(L, "hvp", got, want);

    /* R{y} vs central differences of the output along v (an R-forward error can
     * cancel out of H v, e.g. a ReLU mask applied again by the R-backward) */
    if (!L->loss_head) {
        size_t ny = L->ny;
        double *ryg = calloc(ny, sizeof(double)), *ryw = calloc(ny, sizeof(double));
        for (size_t i = 0; i < ny; i++) ryg[i] = d.ry[i];
        objective(&d, tp);
        for (size_t i = 0; i < ny; i++) ryw[i] = d.y[i];
        objective(&d, tm);
        for (size_t i = 0; i < ny; i++) ryw[i] = (ryw[i] - d.y[i]) / (2.0 * (double)e);
        char name[128];
        snprintf(name, sizeof name, "%s rforward", L->name);
        check_close(name, ryg, ryw, ny, RTOL, ATOL * max_abs(ryw, ny) + 1e-9);
        free(ryg);
        free(ryw);
    }

    /* symmetry: u^T H v = v^T H u */
    hvp(&d, th, u, hu);
    double a = 0.0, b = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        a += (double)u[i] * got[i];
        b += (double)v[i] * hu[i];
        mag += fabs((double)u[i] * got[i]) + fabs((double)v[i] * hu[i]);
    }
    char name[128];
    snprintf(name, sizeof name, "%s sym uHv=vHu", L->name);
    check_close(name, &a, &b, 1, 1e-5, 1e-5 * mag);

    lopt_free(tp);
    lopt_free(tm);
    lopt_free(u);
    lopt_free(v);
    free(got);
    free(want);
    free(gp);
    free(gm);
    free(hu);
    driver_free(&d);
}

/* weights ~ N(0, 1/fan_in) as at initialisation, so outputs stay O(1) and the
 * float rounding of y does not swamp the finite differences */
static void scale_weights(const lcase *L, float *th, int fan_in)
{
    float f = (float)(1.0 / sqrt((double)fan_in));
    for (size_t i = L->off[L->nseg - 2]; i < L->off[L->nseg - 1]; i++) th[i] *= f;
}

/* ---- dense ------------------------------------------------------------------------- */

typedef struct {
    int B, I, O;
    const float *x;   /* (B,I) when the input is data, else NULL */
} dense_ctx;

#define DENSE_X(L, th) (((dense_ctx *)(L)->ctx)->x ? ((dense_ctx *)(L)->ctx)->x : (th))

static void dense_fwd(lcase *L, const float *th, float *y)
{
    dense_ctx *c = L->ctx;
    nn_dense_forward(y, DENSE_X(L, th), th + L->off[L->nseg - 2], th + L->off[L->nseg - 1],
                  c->B, c->I, c->O);
}

static void dense_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    dense_ctx *c = L->ctx;
    nn_dense_backward(c->x ? NULL : g, g + L->off[L->nseg - 2], g + L->off[L->nseg - 1], dy,
                   DENSE_X(L, th), th + L->off[L->nseg - 2], c->B, c->I, c->O);
}

static void dense_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    dense_ctx *c = L->ctx;
    nn_dense_rforward(ry, c->x ? NULL : v, DENSE_X(L, th), th + L->off[L->nseg - 2],
                   v + L->off[L->nseg - 2], v + L->off[L->nseg - 1], c->B, c->I, c->O);
}

static void dense_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                       const float *rdy, float *hv)
{
    dense_ctx *c = L->ctx;
    nn_dense_rbackward(c->x ? NULL : hv, hv + L->off[L->nseg - 2], hv + L->off[L->nseg - 1],
                    rdy, dy, DENSE_X(L, th), c->x ? NULL : v, th + L->off[L->nseg - 2],
                    v + L->off[L->nseg - 2], c->B, c->I, c->O);
}

static void test_dense(int data_input)
{
    dense_ctx c = {3, 4, 5, NULL};
    float xdata[3 * 4];
    lcase L = {.fwd = dense_fwd, .bwd = dense_bwd, .rfwd = dense_rfwd,
               .rbwd = dense_rbwd, .ctx = &c, .ny = (size_t)c.B * c.O};
    size_t nx = (size_t)c.B * c.I, nw = (size_t)c.O * c.I;
    int k = 0;
    L.off[0] = 0;
    if (data_input) {
        fill_normal(xdata, nx, 1.0f);
        c.x = xdata;
    } else {
        L.seg[k] = "x";
        L.off[k + 1] = L.off[k] + nx;
        k++;
    }
    L.seg[k] = "W";
    L.off[k + 1] = L.off[k] + nw;
    k++;
    L.seg[k] = "b";
    L.off[k + 1] = L.off[k] + (size_t)c.O;
    k++;
    L.nseg = k;
    L.n = L.off[k];
    snprintf(L.name, sizeof L.name, "dense%s", data_input ? "(data x)" : "");
    float *th = lopt_floats(L.n);
    fill_normal(th, L.n, 1.0f);
    scale_weights(&L, th, c.I);
    check_layer(&L, th);
    lopt_free(th);
}

/* The dense layer's AVX-512 tiles against CBLAS (the path every other ISA takes)
 * at the standard tasks' sizes and at ragged ones (rows not a multiple of the tile,
 * 1..4 column vectors with a masked last one): the four functions, to rounding. */
static void test_dense_tiles(int B, int I, int O)
{
    if (!nn_isa_supported(NN_ISA_AVX512)) return;
    size_t nx = (size_t)B * I, ny = (size_t)B * O, nw = (size_t)O * I;
    /* and nn_dense_backward_set_dx into NaN: written, not accumulated */
    size_t tot = 2 * ny + 3 * nx + 3 * nw + 3 * (size_t)O;
    float *x = lopt_floats(nx), *rx = lopt_floats(nx), *W = lopt_floats(nw), *rW = lopt_floats(nw),
          *b = lopt_floats(O), *dy = lopt_floats(ny), *rdy = lopt_floats(ny);
    fill_normal(x, nx, 1.0f);
    fill_normal(rx, nx, 1.0f);
    fill_normal(W, nw, 0.3f);
    fill_normal(rW, nw, 0.3f);
    fill_normal(b, O, 1.0f);
    fill_normal(dy, ny, 1.0f);
    fill_normal(rdy, ny, 1.0f);
    float *out[2];
    const nn_isa isa[2] = {NN_ISA_AVX2, NN_ISA_AVX512};
    for (int k = 0; k < 2; k++) {
        nn_isa old = nn_isa_force(isa[k]);
        float *o = out[k] = lopt_floats(tot);
        float *y = o, *ry = y + ny, *dx = ry + ny, *rdx = dx + nx, *dW = rdx + nx, *rdW = dW + nw,
              *db = rdW + nw, *rdb = db + O, *sdx = rdb + O, *sdW = sdx + nx, *sdb = sdW + nw;
        for (size_t i = 0; i < nx; i++) sdx[i] = NAN;
        nn_dense_forward(y, x, W, b, B, I, O);
        nn_dense_rforward(ry, rx, x, W, rW, b, B, I, O);
        nn_dense_backward(dx, dW, db, dy, x, W, B, I, O);
        nn_dense_rbackward(rdx, rdW, rdb, rdy, dy, x, rx, W, rW, B, I, O);
        nn_dense_backward_set_dx(sdx, sdW, sdb, dy, x, W, B, I, O);
        nn_isa_force(old);
    }
    double *g = calloc(tot, sizeof(double)), *w = calloc(tot, sizeof(double));
    for (size_t i = 0; i < tot; i++) g[i] = out[1][i], w[i] = out[0][i];
    char name[96];
    snprintf(name, sizeof name, "dense tiles %dx%dx%d vs cblas (5 functions)", B, I, O);
    check_close(name, g, w, tot, 1e-5, 1e-5 * max_abs(w, tot));
    float *f[] = {x, rx, W, rW, b, dy, rdy, out[0], out[1]};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) lopt_free(f[i]);
    free(g);
    free(w);
}

/* ---- conv2d ---------------------------------------------------------------------------- */

typedef struct {
    conv_shape s;
    const float *x;                /* (C,B,H,W) data input, or NULL */
    float *col, *rcol, *scratch;   /* (C*KH*KW, B*OH*OW) */
} conv_ctx;

static const float *conv_x(lcase *L, const float *th)
{
    conv_ctx *c = L->ctx;
    return c->x ? c->x : th;
}

static const float *conv_w(lcase *L, const float *t) { return t + L->off[L->nseg - 2]; }
static float *conv_wm(lcase *L, float *t) { return t + L->off[L->nseg - 2]; }
static const float *conv_b(lcase *L, const float *t) { return t + L->off[L->nseg - 1]; }
static float *conv_bm(lcase *L, float *t) { return t + L->off[L->nseg - 1]; }

static void conv_fwd(lcase *L, const float *th, float *y)
{
    conv_ctx *c = L->ctx;
    fill_nan(c->col, nn_conv_col_floats(&c->s));
    nn_conv2d_forward(y, c->col, conv_x(L, th), conv_w(L, th), conv_b(L, th), &c->s);
}

static void conv_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    conv_ctx *c = L->ctx;
    fill_nan(c->scratch, nn_conv_col_floats(&c->s));
    nn_conv2d_backward(c->x ? NULL : g, conv_wm(L, g), conv_bm(L, g), dy, c->col,
                    conv_w(L, th), &c->s, c->scratch);
}

static void conv_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    conv_ctx *c = L->ctx;
    fill_nan(c->rcol, nn_conv_col_floats(&c->s));
    nn_conv2d_rforward(ry, c->x ? NULL : c->rcol, c->x ? NULL : v, c->col, conv_w(L, th),
                    conv_w(L, v), conv_b(L, v), &c->s);
}

static void conv_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    conv_ctx *c = L->ctx;
    fill_nan(c->scratch, nn_conv_col_floats(&c->s));
    nn_conv2d_rbackward(c->x ? NULL : hv, conv_wm(L, hv), conv_bm(L, hv), rdy, dy, c->col,
                     c->x ? NULL : c->rcol, conv_w(L, th), conv_w(L, v), &c->s,
                     c->scratch);
}

static void test_conv(const char *tag, conv_shape s, int data_input)
{
    conv_ctx c = {s, NULL, NULL, NULL, NULL};
    size_t ncol = nn_conv_col_floats(&s);
    size_t nx = (size_t)s.C * s.B * s.H * s.W, nw = (size_t)s.O * s.C * s.KH * s.KW;
    float *xdata = lopt_floats(nx);
    c.col = lopt_floats(ncol);
    c.rcol = lopt_floats(ncol);
    c.scratch = lopt_floats(ncol);
    lcase L = {.fwd = conv_fwd, .bwd = conv_bwd, .rfwd = conv_rfwd, .rbwd = conv_rbwd,
               .ctx = &c, .ny = (size_t)s.O * s.B * s.OH * s.OW};
    int k = 0;
    if (data_input) {
        fill_normal(xdata, nx, 1.0f);
        c.x = xdata;
    } else {
        L.seg[k] = "x";
        L.off[k + 1] = L.off[k] + nx;
        k++;
    }
    L.seg[k] = "W";
    L.off[k + 1] = L.off[k] + nw;
    k++;
    L.seg[k] = "b";
    L.off[k + 1] = L.off[k] + (size_t)s.O;
    k++;
    L.nseg = k;
    L.n = L.off[k];
    snprintf(L.name, sizeof L.name, "conv %s", tag);
    float *th = lopt_floats(L.n);
    fill_normal(th, L.n, 1.0f);
    scale_weights(&L, th, s.C * s.KH * s.KW);
    check_layer(&L, th);
    lopt_free(th);
    lopt_free(xdata);
    lopt_free(c.col);
    lopt_free(c.rcol);
    lopt_free(c.scratch);
}

/* y (O,B,OH,OW) by the definition of cross-correlation, in double */
static void conv_naive(double *y, const float *x, const float *W, const float *b,
                       const conv_shape *s)
{
    for (int o = 0; o < s->O; o++)
        for (int bb = 0; bb < s->B; bb++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh;
                                int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += (double)W[((o * s->C + c) * s->KH + kh) * s->KW + kw] *
                                       x[(((size_t)c * s->B + bb) * s->H + ih) * s->W + iw];
                            }
                    y[(((size_t)o * s->B + bb) * s->OH + oh) * s->OW + ow] = acc;
                }
}

/* forward vs the naive convolution, then the adjoint identities of backward:
 *   <dy, conv(rx; W, 0)> = <dx, rx>,  <dy, conv(x; rW, 0)> = <dW, rW>,
 *   sum dy[o,:] = db[o] */
static void test_conv_reference(const char *tag, conv_shape s)
{
    size_t ncol = nn_conv_col_floats(&s);
    size_t nx = (size_t)s.C * s.B * s.H * s.W, nw = (size_t)s.O * s.C * s.KH * s.KW;
    size_t ny = (size_t)s.O * s.B * s.OH * s.OW;
    float *x = lopt_floats(nx), *rx = lopt_floats(nx), *dx = lopt_floats(nx);
    float *W = lopt_floats(nw), *rW = lopt_floats(nw), *dW = lopt_floats(nw);
    float *b = lopt_floats(s.O), *db = lopt_floats(s.O);
    float *y = lopt_floats(ny), *dy = lopt_floats(ny);
    float *col = lopt_floats(ncol), *scratch = lopt_floats(ncol);
    double *want = calloc(ny, sizeof(double)), *got = calloc(ny, sizeof(double));
    fill_normal(x, nx, 1.0f);
    fill_normal(rx, nx, 1.0f);
    fill_normal(W, nw, 0.3f);
    fill_normal(rW, nw, 0.3f);
    fill_normal(b, s.O, 1.0f);
    fill_normal(dy, ny, 1.0f);
    char name[128];

    fill_nan(col, ncol);
    nn_conv2d_forward(y, col, x, W, b, &s);
    conv_naive(want, x, W, b, &s);
    for (size_t i = 0; i < ny; i++) got[i] = y[i];
    snprintf(name, sizeof name, "conv %s forward vs naive", tag);
    check_close(name, got, want, ny, 1e-5, 1e-5);

    fill_nan(scratch, ncol);
    nn_conv2d_backward(dx, dW, db, dy, col, W, &s, scratch);
    double lhs[3], rhs[3], mag = 0.0;
    conv_naive(want, rx, W, NULL, &s);
    lhs[0] = 0.0;
    for (size_t i = 0; i < ny; i++) lhs[0] += (double)dy[i] * want[i];
    rhs[0] = 0.0;
    for (size_t i = 0; i < nx; i++) {
        rhs[0] += (double)dx[i] * rx[i];
        mag += fabs((double)dx[i] * rx[i]);
    }
    conv_naive(want, x, rW, NULL, &s);
    lhs[1] = 0.0;
    for (size_t i = 0; i < ny; i++) lhs[1] += (double)dy[i] * want[i];
    rhs[1] = 0.0;
    for (size_t i = 0; i < nw; i++) {
        rhs[1] += (double)dW[i] * rW[i];
        mag += fabs((double)dW[i] * rW[i]);
    }
    lhs[2] = rhs[2] = 0.0;
    size_t per = ny / s.O;
    for (int o = 0; o < s.O; o++) {
        double sum = 0.0;
        for (size_t j = 0; j < per; j++) sum += dy[o * per + j];
        lhs[2] += sum * (o + 1);
        rhs[2] += (double)db[o] * (o + 1);
    }
    snprintf(name, sizeof name, "conv %s backward adjoint dx,dW,db", tag);
    check_close(name, rhs, lhs, 3, 1e-5, 1e-6 * mag + 1e-4);

    /* the R-pair at full size (the FD checks use tiny shapes, one col2im slice):
     * ry = conv(rx; W, rb) + conv(x; rW, 0) against the naive convolution, and
     * R{dx}, R{dW}, R{db} against backward applied to (rdy; W, col) + (dy; rW, rcol) */
    float *ry = lopt_floats(ny), *rdy = lopt_floats(ny), *rcol = lopt_floats(ncol);
    float *rdx = lopt_floats(nx), *rdW = lopt_floats(nw), *rdb = lopt_floats(s.O);
    double *want2 = calloc(ny, sizeof(double));
    fill_normal(rdy, ny, 1.0f);
    fill_nan(rcol, ncol);
    nn_conv2d_rforward(ry, rcol, rx, col, W, rW, b, &s);   /* rb = b */
    conv_naive(want, rx, W, b, &s);
    conv_naive(want2, x, rW, NULL, &s);
    for (size_t i = 0; i < ny; i++) {
        want[i] += want2[i];
        got[i] = ry[i];
    }
    snprintf(name, sizeof name, "conv %s rforward vs naive", tag);
    check_close(name, got, want, ny, 1e-5, 1e-5);

    memset(dx, 0, nx * sizeof(float));
    memset(dW, 0, nw * sizeof(float));
    memset(db, 0, s.O * sizeof(float));
    fill_nan(scratch, ncol);
    nn_conv2d_backward(dx, dW, db, rdy, col, W, &s, scratch);
    nn_conv2d_backward(dx, dW, rdb, dy, rcol, rW, &s, scratch);   /* R{db} has no dy term */
    memset(rdb, 0, s.O * sizeof(float));
    fill_nan(scratch, ncol);
    nn_conv2d_rbackward(rdx, rdW, rdb, rdy, dy, col, rcol, W, rW, &s, scratch);
    size_t nall = nx + nw + s.O;
    double *g = calloc(nall, sizeof(double)), *w = calloc(nall, sizeof(double));
    for (size_t i = 0; i < nx; i++) g[i] = rdx[i], w[i] = dx[i];
    for (size_t i = 0; i < nw; i++) g[nx + i] = rdW[i], w[nx + i] = dW[i];
    for (int o = 0; o < s.O; o++) g[nx + nw + o] = rdb[o], w[nx + nw + o] = db[o];
    snprintf(name, sizeof name, "conv %s rbackward vs backward pair", tag);
    check_close(name, g, w, nall, 1e-5, 1e-5 * max_abs(w, nall));

    lopt_free(ry);
    lopt_free(rdy);
    lopt_free(rcol);
    lopt_free(rdx);
    lopt_free(rdW);
    lopt_free(rdb);
    free(want2);
    free(g);
    free(w);
    lopt_free(x);
    lopt_free(rx);
    lopt_free(dx);
    lopt_free(W);
    lopt_free(rW);
    lopt_free(dW);
    lopt_free(b);
    lopt_free(db);
    lopt_free(y);
    lopt_free(dy);
    lopt_free(col);
    lopt_free(scratch);
    free(want);
    free(got);
}

/* ---- NHWC 3x3 convolution and its fused neighbours --------------------------------------
 * Every implementation the CPU has (nn_isa: ref, sse, avx2, avx512) against the
 * im2col convolution above (itself checked against finite differences and a naive
 * convolution): forward, backward (dx, dW, db), R-forward and R-backward, at the
 * fmnist-cnn layer sizes and at shapes that leave partial tiles, fall back to the
 * reference, or split the output channels into several blocks. */

static const nn_isa all_isas[] = {NN_ISA_REF, NN_ISA_SSE, NN_ISA_AVX2, NN_ISA_AVX512};

/* x (C,B,H,W) -> xp (B,H+2,W+2,C) interior (border left as is) */
static void cbhw_to_padded(float *xp, const float *x, int B, int H, int W, int C)
{
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    xp[(((size_t)b * (H + 2) + h + 1) * (W + 2) + w + 1) * C + c] =
                        x[(((size_t)c * B + b) * H + h) * W + w];
}

/* y (B,H,W,C) -> (C,B,H,W) as double */
static void nhwc_to_cbhw(double *y, const float *x, int B, int H, int W, int C)
{
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    y[(((size_t)c * B + b) * H + h) * W + w] =
                        x[(((size_t)b * H + h) * W + w) * C + c];
}

static void to_double(double *d, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = x[i];
}

static void test_conv3_vs_im2col(const char *tag, int B, int H, int W, int C, int O)
{
    conv_shape s = nn_conv_shape_make(B, C, H, W, O, 3, 3, 1, 1);
    conv3_shape s3 = {B, H, W, C, O};
    size_t nx = (size_t)C * B * H * W, ny = (size_t)O * B * H * W, nw = (size_t)O * C * 9;
    size_t px = nn_conv3_padded_floats(B, H, W, C), py = nn_conv3_padded_floats(B, H, W, O);
    size_t ncol = nn_conv_col_floats(&s);
    float *x = lopt_floats(nx), *rx = lopt_floats(nx), *dy = lopt_floats(ny),
          *rdy = lopt_floats(ny), *Wt_ = lopt_floats(nw), *rW = lopt_floats(nw),
          *b = lopt_floats(O), *rb = lopt_floats(O);
    fill_normal(x, nx, 1.0f);
    fill_normal(rx, nx, 1.0f);
    fill_normal(dy, ny, 1.0f);
    fill_normal(rdy, ny, 1.0f);
    fill_normal(Wt_, nw, 0.3f);
    fill_normal(rW, nw, 0.3f);
    fill_normal(b, O, 1.0f);
    fill_normal(rb, O, 1.0f);

    /* the im2col layer's four results */
    float *col = lopt_floats(ncol), *rcol = lopt_floats(ncol), *scr = lopt_floats(ncol);
    float *y0 = lopt_floats(ny), *ry0 = lopt_floats(ny), *dx0 = lopt_floats(nx),
          *rdx0 = lopt_floats(nx), *dW0 = lopt_floats(nw), *rdW0 = lopt_floats(nw),
          *db0 = lopt_floats(O), *rdb0 = lopt_floats(O);
    nn_conv2d_forward(y0, col, x, Wt_, b, &s);
    nn_conv2d_backward(dx0, dW0, db0, dy, col, Wt_, &s, scr);
    nn_conv2d_rforward(ry0, rcol, rx, col, Wt_, rW, rb, &s);
    nn_conv2d_rbackward(rdx0, rdW0, rdb0, rdy, dy, col, rcol, Wt_, rW, &s, scr);

    /* the same in NHWC */
    float *xp = lopt_floats(px), *rxp = lopt_floats(px), *dyp = lopt_floats(py),
          *rdyp = lopt_floats(py);
    cbhw_to_padded(xp, x, B, H, W, C);
    cbhw_to_padded(rxp, rx, B, H, W, C);
    cbhw_to_padded(dyp, dy, B, H, W, O);
    cbhw_to_padded(rdyp, rdy, B, H, W, O);
    float *Wp = lopt_floats(nw), *Wt = lopt_floats(nw), *rWp = lopt_floats(nw),
          *rWt = lopt_floats(nw);
    nn_conv3_pack(Wp, Wt_, C, O);
    nn_conv3_pack_adjoint(Wt, Wt_, C, O);
    nn_conv3_pack(rWp, rW, C, O);
    nn_conv3_pack_adjoint(rWt, rW, C, O);
    float *y = lopt_floats(ny), *dx = lopt_floats(nx), *dWp = lopt_floats(nw),
          *dW = lopt_floats(nw), *db = lopt_floats(O);
    double *got = calloc(ny + nx + nw + O, sizeof(double)),
           *want = calloc(ny + nx + nw + O, sizeof(double));
    char name[160];
    for (size_t k = 0; k < sizeof all_isas / sizeof *all_isas; k++) {
        if (!nn_isa_supported(all_isas[k])) continue;
        nn_isa old = nn_isa_force(all_isas[k]);
        const char *in = nn_isa_name(all_isas[k]);

        fill_nan(y, ny);
        nn_conv3_forward(y, xp, Wp, b, &s3);
        nhwc_to_cbhw(got, y, B, H, W, O);
        to_double(want, y0, ny);
        snprintf(name, sizeof name, "conv3 %s %s forward vs im2col", in, tag);
        check_close(name, got, want, ny, 1e-5, 1e-5 * max_abs(want, ny));

        fill_nan(y, ny);
        nn_conv3_rforward(y, rxp, xp, Wp, rWp, rb, &s3);
        nhwc_to_cbhw(got, y, B, H, W, O);
        to_double(want, ry0, ny);
        snprintf(name, sizeof name, "conv3 %s %s rforward vs im2col", in, tag);
        check_close(name, got, want, ny, 1e-5, 1e-5 * max_abs(want, ny));

        /* backward: dx overwritten, dW and db accumulated onto a pattern */
        for (size_t r = 0; r < 2; r++) {
            fill_nan(dx, nx);
            for (size_t i = 0; i < nw; i++) dWp[i] = (float)(0.25 * sin(1.0 + (double)i));
            for (int o = 0; o < O; o++) db[o] = 0.5f;
            if (r == 0)
                nn_conv3_backward(dx, dWp, db, dyp, xp, Wt, &s3);
            else
                nn_conv3_rbackward(dx, dWp, db, rdyp, dyp, xp, rxp, Wt, rWt, &s3);
            for (size_t i = 0; i < nw; i++) dWp[i] -= (float)(0.25 * sin(1.0 + (double)i));
            memset(dW, 0, nw * sizeof(float));
            nn_conv3_unpack_grad(dW, dWp, C, O);
            nhwc_to_cbhw(got, dx, B, H, W, C);
            to_double(got + nx, dW, nw);
            for (int o = 0; o < O; o++) got[nx + nw + o] = (double)db[o] - 0.5;
            to_double(want, r == 0 ? dx0 : rdx0, nx);
            to_double(want + nx, r == 0 ? dW0 : rdW0, nw);
            to_double(want + nx + nw, r == 0 ? db0 : rdb0, O);
            snprintf(name, sizeof name, "conv3 %s %s %s dx vs im2col", in, tag,
                     r == 0 ? "backward" : "rbackward");
            check_close(name, got, want, nx, 1e-5, 1e-5 * max_abs(want, nx));
            snprintf(name, sizeof name, "conv3 %s %s %s dW,db vs im2col", in, tag,
                     r == 0 ? "backward" : "rbackward");
            check_close(name, got + nx, want + nx, nw + O, 1e-4,
                        1e-5 * max_abs(want + nx, nw + O));
        }
        nn_isa_force(old);
    }
    float *f[] = {x, rx, dy, rdy, Wt_, rW, b, rb, col, rcol, scr, y0, ry0, dx0, rdx0, dW0,
                  rdW0, db0, rdb0, xp, rxp, dyp, rdyp, Wp, Wt, rWp, rWt, y, dx, dWp, dW, db};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) lopt_free(f[i]);
    free(got);
    free(want);
}

/* a data input (rx = NULL, dx = NULL), as fmnist-cnn's first layer: every
 * implementation against the reference */
static void test_conv3_data_input(void)
{
    const int B = 2, H = 28, W = 28, C = 1, O = 16;
    conv3_shape s = {B, H, W, C, O};
    size_t px = nn_conv3_padded_floats(B, H, W, C), py = nn_conv3_padded_floats(B, H, W, O);
    size_t ny = (size_t)B * H * W * O, nw = 9 * C * O;
    float *xp = lopt_floats(px), *dyp = lopt_floats(py), *rdyp = lopt_floats(py);
    float *W0 = lopt_floats(nw), *rW = lopt_floats(nw), *Wp = lopt_floats(nw),
          *rWp = lopt_floats(nw), *rb = lopt_floats(O);
    float *x = lopt_floats((size_t)B * H * W), *d = lopt_floats(ny);
    fill_normal(x, (size_t)B * H * W, 1.0f);
    nn_nhwc_pad(xp, x, B, H, W, C);
    fill_normal(d, ny, 1.0f);
    nn_nhwc_pad(dyp, d, B, H, W, O);
    fill_normal(d, ny, 1.0f);
    nn_nhwc_pad(rdyp, d, B, H, W, O);
    fill_normal(W0, nw, 0.3f);
    fill_normal(rW, nw, 0.3f);
    fill_normal(rb, O, 1.0f);
    nn_conv3_pack(Wp, W0, C, O);
    nn_conv3_pack(rWp, rW, C, O);
    double *want = calloc(ny + 2 * (nw + O), sizeof(double)),
           *got = calloc(ny + 2 * (nw + O), sizeof(double));
    float *ry = lopt_floats(ny), *g = lopt_floats(2 * (nw + O));
    for (size_t k = 0; k < sizeof all_isas / sizeof *all_isas; k++) {
        if (!nn_isa_supported(all_isas[k])) continue;
        nn_isa old = nn_isa_force(all_isas[k]);
        nn_conv3_rforward(ry, NULL, xp, Wp, rWp, rb, &s);
        memset(g, 0, 2 * (nw + O) * sizeof(float));
        nn_conv3_backward(NULL, g, g + nw, dyp, xp, NULL, &s);
        nn_conv3_rbackward(NULL, g + nw + O, g + 2 * nw + O, rdyp, dyp, xp, NULL, NULL, NULL, &s);
        double *dst = k == 0 ? want : got;
        to_double(dst, ry, ny);
        to_double(dst + ny, g, 2 * (nw + O));
        if (k > 0) {
            char name[96];
            snprintf(name, sizeof name, "conv3 %s data input (C=1) vs ref",
                     nn_isa_name(all_isas[k]));
            check_close(name, got, want, ny + 2 * (nw + O), 1e-5,
                        1e-5 * max_abs(want, ny + 2 * (nw + O)));
        }
        nn_isa_force(old);
    }
    float *f[] = {xp, dyp, rdyp, W0, rW, Wp, rWp, rb, x, d, ry, g};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) lopt_free(f[i]);
    free(want);
    free(got);
}

/* ReLU + 2x2 max-pool and ReLU + global average pool as layers theta -> y, for the
 * finite-difference checks (NHWC; y the pooled interior) */
typedef struct {
    int B, H, W, C;
    float *P, *dA, *rP;   /* padded scratch */
    int32_t *am;
    float *A;             /* relu_gap: relu'd copy of the input */
} fused_ctx;

static void interior(float *dst, const float *pad, int B, int H, int W, int C, int add)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++) {
                    float v = pad[(((size_t)b * (H + 2) + h + 1) * (W + 2) + w + 1) * C + c];
                    size_t i = (((size_t)b * H + h) * W + w) * C + c;
                    dst[i] = add ? dst[i] + v : v;
                }
}

static void rmp_fwd(lcase *L, const float *th, float *y)
{
    fused_ctx *c = L->ctx;
    nn_relu_maxpool2_forward(c->P, c->am, th, c->B, c->H, c->W, c->C);
    interior(y, c->P, c->B, c->H / 2, c->W / 2, c->C, 0);
}

static void rmp_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    fused_ctx *c = L->ctx;
    nn_relu_maxpool2_backward(c->dA, dy, c->am, c->P, c->B, c->H, c->W, c->C);
    interior(g, c->dA, c->B, c->H, c->W, c->C, 1);
}

static void rmp_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    fused_ctx *c = L->ctx;
    nn_relu_maxpool2_rforward(c->rP, v, c->am, c->P, c->B, c->H, c->W, c->C);
    interior(ry, c->rP, c->B, c->H / 2, c->W / 2, c->C, 0);
}

static void rmp_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                     const float *rdy, float *hv)
{
    rmp_bwd(L, th, rdy, hv);
}

static void rgap_fwd(lcase *L, const float *th, float *y)
{
    fused_ctx *c = L->ctx;
    memcpy(c->A, th, L->n * sizeof(float));
    nn_relu_gap_forward(y, c->A, c->B, c->H * c->W, c->C);
}

static void rgap_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    fused_ctx *c = L->ctx;
    nn_relu_gap_backward(c->dA, dy, c->A, c->B, c->H, c->W, c->C);
    interior(g, c->dA, c->B, c->H, c->W, c->C, 1);
}

static void rgap_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    fused_ctx *c = L->ctx;
    memcpy(c->rP, v, L->n * sizeof(float));
    nn_relu_gap_rforward(ry, c->rP, c->A, c->B, c->H * c->W, c->C);
}

static void rgap_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    rgap_bwd(L, th, rdy, hv);
}

static void test_fused(int gap, int B, int H, int W, int C)
{
    size_t n = (size_t)B * H * W * C;
    fused_ctx c = {B, H, W, C, lopt_floats(nn_conv3_padded_floats(B, H, W, C)),
                   lopt_floats(nn_conv3_padded_floats(B, H, W, C)),
                   lopt_floats(nn_conv3_padded_floats(B, H, W, C) + n),
                   calloc(n, sizeof(int32_t)), lopt_floats(n)};
    lcase L = {.n = n, .nseg = 1, .seg = {"y"}, .off = {0, n}, .ctx = &c, .kinks = 1};
    if (gap) {
        L.ny = (size_t)B * C;
        L.fwd = rgap_fwd, L.bwd = rgap_bwd, L.rfwd = rgap_rfwd, L.rbwd = rgap_rbwd;
    } else {
        L.ny = (size_t)B * (H / 2) * (W / 2) * C;
        L.fwd = rmp_fwd, L.bwd = rmp_bwd, L.rfwd = rmp_rfwd, L.rbwd = rmp_rbwd;
    }
    snprintf(L.name, sizeof L.name, "%s %dx%dx%dx%d (%s)", gap ? "relu+gap" : "relu+maxpool2",
             B, H, W, C, nn_isa_name(nn_isa_active()));
    float *x = lopt_floats(n);
    fill_grid(x, n);
    check_layer(&L, x);
    lopt_free(x);
    lopt_free(c.P);
    lopt_free(c.dA);
    lopt_free(c.rP);
    lopt_free(c.A);
    free(c.am);
}

/* every vector form of the fused layers gives the reference's bits, on inputs with
 * NaN, +-inf, -0 and ties (all within one window) */
static void test_fused_isas(void)
{
    enum { B = 2, H = 6, W = 8, C = 32 };
    const size_t n = (size_t)B * H * W * C, np = nn_conv3_padded_floats(B, H, W, C);
    const size_t no = (size_t)B * (H / 2) * (W / 2) * C;
    float *y = lopt_floats(n), *ry = lopt_floats(n), *dP = lopt_floats(no), *dG = lopt_floats(B * C);
    fill_normal(y, n, 1.0f);
    fill_normal(ry, n, 1.0f);
    fill_normal(dP, no, 1.0f);
    fill_normal(dG, B * C, 1.0f);
    for (size_t i = 0; i < n; i += 7) y[i] = 0.0f;       /* ties among zeros after relu */
    for (size_t i = 3; i < n; i += 29) y[i] = -0.0f;
    for (size_t i = 5; i < n; i += 31) y[i] = y[i - 1 < n ? i - 1 : 0];   /* equal pairs */
    y[40] = NAN;
    y[41 + C] = NAN;
    y[42] = INFINITY;
    y[43] = -INFINITY;
    y[2 * W * C + 9] = NAN;   /* NaN in the second window row */
    float *out[2];
    int32_t *am[2];
    const size_t tot = 3 * np + n + 2 * B * C + np + C;
    for (int k = 0; k < 2; k++) {
        out[k] = lopt_floats(tot);
        am[k] = calloc(no, sizeof(int32_t));
    }
    for (size_t k = 1; k < sizeof all_isas / sizeof *all_isas; k++) {
        if (!nn_isa_supported(all_isas[k])) continue;
        for (int r = 0; r < 2; r++) {
            nn_isa old = nn_isa_force(r == 0 ? NN_ISA_REF : all_isas[k]);
            float *o = out[r];
            memset(o, 0, tot * sizeof(float));
            float *P = o, *dA = o + np, *rP = o + 2 * np, *A = o + 3 * np, *G = A + n,
                  *rG = G + B * C, *dy3 = rG + B * C, *sum = dy3 + np;
            nn_relu_maxpool2_forward(P, am[r], y, B, H, W, C);
            nn_relu_maxpool2_backward(dA, dP, am[r], P, B, H, W, C);
            nn_relu_maxpool2_rforward(rP, ry, am[r], P, B, H, W, C);
            memcpy(A, y, n * sizeof(float));
            nn_relu_gap_forward(G, A, B, H * W, C);
            nn_relu_gap_backward(dy3, dG, A, B, H, W, C);
            float *rA = lopt_floats(n);
            memcpy(rA, ry, n * sizeof(float));
            nn_relu_gap_rforward(rG, rA, A, B, H * W, C);
            lopt_free(rA);
            nn_nhwc_pixel_sum(sum, dy3, B, H, W, C);
            nn_isa_force(old);
        }
        size_t bad = 0;
        for (size_t i = 0; i < tot; i++) bad += memcmp(&out[0][i], &out[1][i], sizeof(float)) != 0;
        for (size_t i = 0; i < no; i++) bad += am[0][i] != am[1][i];
        CHECK(bad == 0, "fused layers %s: %zu values differ from the reference",
              nn_isa_name(all_isas[k]), bad);
        if (bad == 0) printf("ok   fused layers %s == ref bitwise (NaN, inf, -0, ties)\n",
                             nn_isa_name(all_isas[k]));
    }
    /* the semantics, on the reference: a NaN wins its window, relu passes it on */
    CHECK(isnan(out[0][((size_t)(W / 2 + 2) + 1) * C + 8]), "relu+maxpool2: NaN not propagated");
    lopt_free(y);
    lopt_free(ry);
    lopt_free(dP);
    lopt_free(dG);
    for (int k = 0; k < 2; k++) {
        lopt_free(out[k]);
        free(am[k]);
    }
}

/* ---- max-pool, global average pool --------------------------------------------------- */

typedef struct {
    int P, H, W, k;
    int32_t *argmax;   /* (P,OH,OW) */
} pool_ctx;

static void pool_fwd(lcase *L, const float *th, float *y)
{
    pool_ctx *c = L->ctx;
    nn_maxpool_forward(y, c->argmax, th, c->P, c->H, c->W, c->k);
}

static void pool_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    pool_ctx *c = L->ctx;
    nn_maxpool_backward(g, dy, c->argmax, c->P, c->H, c->W, c->k);
}

static void pool_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    pool_ctx *c = L->ctx;
    nn_maxpool_rforward(ry, v, c->argmax, c->P, c->H, c->W, c->k);
}

static void pool_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    pool_ctx *c = L->ctx;
    nn_maxpool_rbackward(hv, rdy, c->argmax, c->P, c->H, c->W, c->k);
}

static void test_maxpool(int P, int H, int W, int k)
{
    int OH = H / k, OW = W / k;
    size_t n = (size_t)P * H * W, ny = (size_t)P * OH * OW;
    pool_ctx c = {P, H, W, k, calloc(ny, sizeof(int32_t))};
    lcase L = {.n = n, .ny = ny, .nseg = 1, .seg = {"x"}, .off = {0, n},
               .fwd = pool_fwd, .bwd = pool_bwd, .rfwd = pool_rfwd, .rbwd = pool_rbwd,
               .ctx = &c, .kinks = 1};
    snprintf(L.name, sizeof L.name, "maxpool k%d %dx%d", k, H, W);
    float *x = lopt_floats(n), *y = lopt_floats(ny);
    fill_grid(x, n);

    /* forward vs the definition, floor division dropping the ragged edge */
    nn_maxpool_forward(y, c.argmax, x, P, H, W, k);
    int bad = 0;
    for (int p = 0; p < P; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *xp = x + (size_t)p * H * W;
                int at = oh * k * W + ow * k;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        if (xp[(oh * k + i) * W + ow * k + j] > xp[at])
                            at = (oh * k + i) * W + ow * k + j;
                size_t o = ((size_t)p * OH + oh) * OW + ow;
                bad += c.argmax[o] != at || y[o] != xp[at];
            }
    CHECK(bad == 0, "%s forward: %d windows wrong", L.name, bad);

    check_layer(&L, x);

    /* a NaN anywhere in a window wins it (divergence must not be pooled away) and
     * +inf is an ordinary maximum (plane 0, windows (0,0) and (0,1)); ties go to
     * the first maximum in row-major order (plane 1, all finite so the fast path
     * runs: window (1,0) all zero as after a ReLU, window (1,1) = 1 then all 2) */
    size_t w1 = (size_t)(k - 1) * W + (k - 1);   /* last cell of window (0,0) */
    float *x1 = x + (size_t)H * W;
    x[w1] = NAN;
    x[k] = INFINITY;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            x1[(k + i) * W + j] = 0.0f;
            x1[(k + i) * W + k + j] = i + j == 0 ? 1.0f : 2.0f;
        }
    nn_maxpool_forward(y, c.argmax, x, P, H, W, k);
    CHECK(isnan(y[0]) && c.argmax[0] == (int32_t)w1,
          "%s: NaN not propagated (y %g at %d)", L.name, y[0], c.argmax[0]);
    CHECK(y[1] == INFINITY && c.argmax[1] == k, "%s: inf not the max (y %g at %d)",
          L.name, y[1], c.argmax[1]);
    const int32_t *a1 = c.argmax + OH * OW;
    CHECK(a1[OW] == k * W && a1[OW + 1] == k * W + k + 1,
          "%s: ties not broken to the first maximum (%d, %d)", L.name, a1[OW],
          a1[OW + 1]);
    lopt_free(x);
    lopt_free(y);
    free(c.argmax);
}

typedef struct { int C, B, HW; } gap_ctx;

static void gap_fwd(lcase *L, const float *th, float *y)
{
    gap_ctx *c = L->ctx;
    nn_gap_forward(y, th, c->C, c->B, c->HW);
}

static void gap_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    gap_ctx *c = L->ctx;
    nn_gap_backward(g, dy, c->C, c->B, c->HW);
}

static void gap_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    gap_ctx *c = L->ctx;
    nn_gap_forward(ry, v, c->C, c->B, c->HW);
}

static void gap_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                     const float *rdy, float *hv)
{
    gap_ctx *c = L->ctx;
    nn_gap_backward(hv, rdy, c->C, c->B, c->HW);
}

static void test_gap(void)
{
    gap_ctx c = {3, 2, 5};
    size_t n = (size_t)c.C * c.B * c.HW;
    lcase L = {.name = "gap", .n = n, .ny = (size_t)c.B * c.C, .nseg = 1, .seg = {"x"},
               .off = {0, n}, .fwd = gap_fwd, .bwd = gap_bwd, .rfwd = gap_rfwd,
               .rbwd = gap_rbwd, .ctx = &c};
    float *x = lopt_floats(n), y[6];
    fill_normal(x, n, 1.0f);
    nn_gap_forward(y, x, c.C, c.B, c.HW);
    double got[6], want[6];
    for (int b = 0; b < c.B; b++)
        for (int ch = 0; ch < c.C; ch++) {
            double s = 0.0;
            for (int i = 0; i < c.HW; i++) s += x[((size_t)ch * c.B + b) * c.HW + i];
            want[b * c.C + ch] = s / c.HW;
            got[b * c.C + ch] = y[b * c.C + ch];
        }
    check_close("gap forward (B,C) layout", got, want, 6, 1e-6, 1e-7);
    check_layer(&L, x);
    lopt_free(x);
}

/* ---- elementwise ---------------------------------------------------------------------- */

typedef struct {
    size_t n;
    float *y, *ry;   /* (n) cached forward output and tangent */
} act_ctx;

static void relu_fwd(lcase *L, const float *th, float *y)
{
    act_ctx *c = L->ctx;
    nn_relu_forward(y, th, c->n);
    memcpy(c->y, y, c->n * sizeof(float));
}

static void relu_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    act_ctx *c = L->ctx;
    nn_relu_backward(g, dy, c->y, c->n);
}

static void relu_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    act_ctx *c = L->ctx;
    nn_relu_rforward(ry, v, c->y, c->n);
}

static void relu_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    act_ctx *c = L->ctx;
    nn_relu_rbackward(hv, rdy, c->y, c->n);
}

static void tanh_fwd(lcase *L, const float *th, float *y)
{
    act_ctx *c = L->ctx;
    nn_tanh_forward(y, th, c->n);
    memcpy(c->y, y, c->n * sizeof(float));
}

static void tanh_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    act_ctx *c = L->ctx;
    nn_tanh_backward(g, dy, c->y, c->n);
}

static void tanh_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    act_ctx *c = L->ctx;
    nn_tanh_rforward(ry, v, c->y, c->n);
    memcpy(c->ry, ry, c->n * sizeof(float));
}

static void tanh_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    act_ctx *c = L->ctx;
    nn_tanh_rbackward(hv, rdy, dy, c->y, c->ry, c->n);
}

static void test_act(int is_tanh)
{
    size_t n = 40;
    act_ctx c = {n, lopt_floats(n), lopt_floats(n)};
    lcase L = {.n = n, .ny = n, .nseg = 1, .seg = {"x"}, .off = {0, n}, .ctx = &c};
    float *x = lopt_floats(n), *y = lopt_floats(n), *z = lopt_floats(n);
    if (is_tanh) {
        snprintf(L.name, sizeof L.name, "tanh");
        L.fwd = tanh_fwd, L.bwd = tanh_bwd, L.rfwd = tanh_rfwd, L.rbwd = tanh_rbwd;
        fill_normal(x, n, 1.0f);
    } else {
        snprintf(L.name, sizeof L.name, "relu");
        L.fwd = relu_fwd, L.bwd = relu_bwd, L.rfwd = relu_rfwd, L.rbwd = relu_rbwd;
        L.kinks = 1;
        fill_grid(x, n);
    }
    /* forward, and forward in place (y == x), as the tasks call it */
    int bad = 0;
    memcpy(z, x, n * sizeof(float));
    if (is_tanh) {
        nn_tanh_forward(y, x, n);
        nn_tanh_forward(z, z, n);
        for (size_t i = 0; i < n; i++) bad += fabs(y[i] - tanh((double)x[i])) > 1e-6;
    } else {
        nn_relu_forward(y, x, n);
        nn_relu_forward(z, z, n);
        for (size_t i = 0; i < n; i++) bad += y[i] != (x[i] > 0 ? x[i] : 0.0f);
    }
    for (size_t i = 0; i < n; i++) bad += y[i] != z[i];
    CHECK(bad == 0, "%s forward (and in place): %d wrong", L.name, bad);
    check_layer(&L, x);
    lopt_free(x);
    lopt_free(y);
    lopt_free(z);
    lopt_free(c.y);
    lopt_free(c.ry);
}

/* ---- softmax cross-entropy -------------------------------------------------------------- */

typedef struct {
    int B, K;
    const int32_t *labels;
    float *prob;   /* (B,K) */
} xent_ctx;

static void xent_fwd(lcase *L, const float *th, float *y)
{
    xent_ctx *c = L->ctx;
    L->loss = nn_softmax_xent_forward(c->prob, NULL, th, c->labels, c->B, c->K);
    y[0] = (float)L->loss;
}

static void xent_bwd(lcase *L, const float *th, const float *dy, float *g)
{
    xent_ctx *c = L->ctx;
    nn_softmax_xent_backward(g, c->prob, c->labels, c->B, c->K);   /* dy = 1 */
}

static void xent_rfwd(lcase *L, const float *th, const float *v, float *ry)
{
    ry[0] = 0.0f;   /* the loss tangent is never used: its head has q = 0 */
}

static void xent_rbwd(lcase *L, const float *th, const float *v, const float *dy,
                      const float *rdy, float *hv)
{
    xent_ctx *c = L->ctx;
    nn_softmax_xent_rbackward(hv, c->prob, v, c->B, c->K);   /* rz = v */
}

/* the vectorised exp of the AVX-512 path against glibc's (the reference path):
 * loss to double rounding, probabilities to float rounding, a NaN logit still makes
 * the loss NaN and a -inf logit gets probability 0 */
static void test_xent_isas(void)
{
    enum { B = 128, K = 10 };
    if (!nn_isa_supported(NN_ISA_AVX512)) return;
    float z[B * K], p[2][B * K];
    int32_t labels[B];
    fill_normal(z, B * K, 4.0f);
    for (int b = 0; b < B; b++) labels[b] = b % K;
    double loss[2];
    int correct[2];
    for (int k = 0; k < 2; k++) {
        nn_isa old = nn_isa_force(k ? NN_ISA_AVX512 : NN_ISA_REF);
        loss[k] = nn_softmax_xent_forward(p[k], &correct[k], z, labels, B, K);
        nn_isa_force(old);
    }
    check_close("softmax-xent avx512 exp: loss vs glibc", &loss[1], &loss[0], 1, 1e-14, 0);
    double g[B * K], w[B * K];
    for (int i = 0; i < B * K; i++) g[i] = p[1][i], w[i] = p[0][i];
    check_close("softmax-xent avx512 exp: prob vs glibc", g, w, B * K, 1e-6, 1e-9);
    CHECK(correct[0] == correct[1], "softmax-xent avx512: %d correct vs %d", correct[1],
          correct[0]);
    z[3] = -INFINITY;
    float q[B * K];
    double l = nn_softmax_xent_forward(q, NULL, z, labels, B, K);
    CHECK(isfinite(l) && q[3] == 0.0f, "softmax-xent: -inf logit gives loss %g, prob %g", l, q[3]);
    z[K + 2] = NAN;
    l = nn_softmax_xent_forward(q, NULL, z, labels, B, K);
    CHECK(isnan(l), "softmax-xent: a NaN logit gives loss %g", l);
}

static void test_xent(void)
{
    enum { B = 4, K = 5 };
    int32_t labels[B] = {2, 0, 4, 2};
    float prob[B * K], z[B * K];
    xent_ctx c = {B, K, labels, prob};
    lcase L = {.name = "softmax-xent", .n = B * K, .ny = 1, .nseg = 1, .seg = {"z"},
               .off = {0, B * K}, .loss_head = 1, .fwd = xent_fwd, .bwd = xent_bwd,
               .rfwd = xent_rfwd, .rbwd = xent_rbwd, .ctx = &c, .eps = 1e-2};
    fill_normal(z, B * K, 2.0f);
    z[1 * K + 0] = 9.0f;   /* row 1 is surely right, row 2 surely wrong */
    z[2 * K + 1] = 9.0f;

    int correct = -1, want_correct = 0;
    double loss = nn_softmax_xent_forward(prob, &correct, z, labels, B, K), want = 0.0;
    double pgot[B * K], pwant[B * K];
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        int arg = 0;
        for (int k = 0; k < K; k++) {
            s += exp((double)z[b * K + k]);
            if (z[b * K + k] > z[b * K + arg]) arg = k;
        }
        for (int k = 0; k < K; k++) {
            pwant[b * K + k] = exp((double)z[b * K + k]) / s;
            pgot[b * K + k] = prob[b * K + k];
        }
        want += (log(s) - z[b * K + labels[b]]) / B;
        want_correct += arg == labels[b];
    }
    check_close("softmax-xent loss", &loss, &want, 1, 1e-12, 1e-12);
    check_close("softmax-xent prob", pgot, pwant, B * K, 1e-6, 1e-7);
    CHECK(correct == want_correct, "softmax-xent correct: got %d want %d", correct,
          want_correct);
    check_layer(&L, z);
}

/* ---- the kernels' OpenMP loops ---------------------------------------------------------
 * They fork only when OpenBLAS is single-threaded (src/nn/kern.h), so the big
 * kernels are run twice, with OpenBLAS's default threads (loops serial) and with one
 * OpenBLAS thread (loops parallel when built with OpenMP), and must agree: bitwise
 * for the loops, to rounding for the convolution (its GEMM may split differently). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

enum { PAR_C = 16, PAR_B = 24, PAR_HW = 28 * 28 };

static void run_big_kernels(float *out, const float *x, const float *dy, const float *W,
                            const float *b, float *col, float *scratch, int32_t *am)
{
    const size_t n = (size_t)PAR_C * PAR_B * PAR_HW, npool = n / 4;
    const conv_shape s = nn_conv_shape_make(PAR_B, PAR_C, 28, 28, 8, 3, 3, 1, 1);
    const conv_shape g = nn_conv_shape_make(PAR_B, PAR_C, 28, 28, 4, 5, 5, 2, 2);
    float *o = out;   /* outputs laid end to end; backward ones start zeroed */
    nn_relu_forward(o, x, n), o += n;
    nn_relu_backward(o, dy, x, n), o += n;
    nn_tanh_forward(o, x, n), o += n;
    nn_tanh_rbackward(o, dy, x, dy, x, n), o += n;
    nn_maxpool_forward(o, am, x, PAR_C * PAR_B, 28, 28, 2), o += npool;
    nn_maxpool_backward(o, dy, am, PAR_C * PAR_B, 28, 28, 2), o += n;
    nn_maxpool_forward(o, am, x, PAR_C * PAR_B, 28, 28, 3), o += npool;
    nn_gap_forward(o, x, PAR_C, PAR_B, PAR_HW), o += (size_t)PAR_C * PAR_B;
    nn_gap_backward(o, dy, PAR_C, PAR_B, PAR_HW), o += n;
    nn_conv2d_forward(o, col, x, W, b, &s), o += (size_t)8 * PAR_B * PAR_HW;
    nn_conv2d_backward(o, o + n, o + n + 8 * 9 * PAR_C, dy, col, W, &s, scratch);
    o += n + 8 * 9 * PAR_C + 8;
    nn_conv2d_forward(o, col, x, W, b, &g), o += (size_t)4 * PAR_B * g.OH * g.OW;
    nn_conv2d_backward(o, o + n, o + n + 4 * 25 * PAR_C, dy, col, W, &g, scratch);
}

static void test_parallel_loops(void)
{
    const size_t n = (size_t)PAR_C * PAR_B * PAR_HW, nout = 16 * n;
    float *x = lopt_floats(n), *dy = lopt_floats(n), *W = lopt_floats(4 * 25 * PAR_C);
    float *b = lopt_floats(8), *col = lopt_floats(25 * n), *scratch = lopt_floats(25 * n);
    float *o1 = lopt_floats(nout), *o2 = lopt_floats(nout);
    int32_t *am = calloc(n, sizeof(int32_t));
    fill_normal(x, n, 1.0f);
    fill_normal(dy, n, 1.0f);
    fill_normal(W, 4 * 25 * PAR_C, 0.1f);   /* the larger of (8,16,3,3), (4,16,5,5) */
    fill_normal(b, 8, 1.0f);
    int threads = openblas_get_num_threads();
    run_big_kernels(o1, x, dy, W, b, col, scratch, am);
    openblas_set_num_threads(1);
    run_big_kernels(o2, x, dy, W, b, col, scratch, am);
    openblas_set_num_threads(threads);
    size_t conv_at = 5 * n + 2 * (n / 4) + (size_t)PAR_C * PAR_B + n, bad = 0;
    for (size_t i = 0; i < conv_at; i++) bad += memcmp(&o1[i], &o2[i], sizeof(float)) != 0;
    CHECK(bad == 0, "parallel loops: %zu of %zu outputs differ from serial", bad, conv_at);
    double *g = calloc(nout - conv_at, sizeof(double)), *w = calloc(nout - conv_at, sizeof(double));
    for (size_t i = conv_at; i < nout; i++) g[i - conv_at] = o2[i], w[i - conv_at] = o1[i];
    check_close("parallel loops: conv forward+backward", g, w, nout - conv_at, 1e-5,
                1e-5 * max_abs(w, nout - conv_at));
    lopt_free(x);
    lopt_free(dy);
    lopt_free(W);
    lopt_free(b);
    lopt_free(col);
    lopt_free(scratch);
    lopt_free(o1);
    lopt_free(o2);
    free(am);
    free(g);
    free(w);
}

int main(void)
{
    test_dense(0);
    test_dense(1);
    test_dense_tiles(128, 64, 32);
    test_dense_tiles(128, 32, 10);
    test_dense_tiles(37, 70, 45);
    test_dense_tiles(5, 9, 130);

    /* the fast path, then the general one on shapes that stress its index ranges */
    test_conv("3x3 p1 s1 5x6", nn_conv_shape_make(2, 3, 5, 6, 4, 3, 3, 1, 1), 0);
    test_conv("5x5 p2 s2 7x8", nn_conv_shape_make(2, 2, 7, 8, 3, 5, 5, 2, 2), 0);
    test_conv("3x3 p0 s1 5x7", nn_conv_shape_make(2, 2, 5, 7, 3, 3, 3, 1, 0), 0);
    test_conv("1x1 p0 s1 4x4", nn_conv_shape_make(2, 3, 4, 4, 2, 1, 1, 1, 0), 0);
    test_conv("2x3 p1 s1 4x5", nn_conv_shape_make(2, 2, 4, 5, 3, 2, 3, 1, 1), 0);
    test_conv("C=1 data 3x3 p1 s1 6x6", nn_conv_shape_make(2, 1, 6, 6, 3, 3, 3, 1, 1), 1);
    test_conv("C=1 data 5x5 p2 s2 6x6", nn_conv_shape_make(2, 1, 6, 6, 3, 5, 5, 2, 2), 1);

    test_conv_reference("3x3 p1 s1 5x6", nn_conv_shape_make(2, 3, 5, 6, 4, 3, 3, 1, 1));
    test_conv_reference("3x3 p1 s1 2x2", nn_conv_shape_make(2, 2, 2, 2, 3, 3, 3, 1, 1));
    test_conv_reference("5x5 p2 s2 7x8", nn_conv_shape_make(2, 2, 7, 8, 3, 5, 5, 2, 2));
    test_conv_reference("3x3 p0 s1 5x7", nn_conv_shape_make(2, 2, 5, 7, 3, 3, 3, 1, 0));
    test_conv_reference("3x3 p2 s3 9x7", nn_conv_shape_make(2, 2, 9, 7, 3, 3, 3, 3, 2));
    test_conv_reference("fmnist conv1", nn_conv_shape_make(40, 1, 28, 28, 16, 3, 3, 1, 1));
    test_conv_reference("fmnist conv2", nn_conv_shape_make(11, 16, 14, 14, 32, 3, 3, 1, 1));
    test_conv_reference("fmnist conv3", nn_conv_shape_make(21, 32, 7, 7, 32, 3, 3, 1, 1));

    test_conv3_vs_im2col("fmnist conv1", 3, 28, 28, 1, 16);
    test_conv3_vs_im2col("fmnist conv2", 3, 14, 14, 16, 32);
    test_conv3_vs_im2col("fmnist conv3", 3, 7, 7, 32, 32);
    test_conv3_vs_im2col("partial tiles 5x9 C16 O16", 2, 5, 9, 16, 16);
    test_conv3_vs_im2col("3 o-blocks 6x14 C32 O48", 1, 6, 14, 32, 48);
    test_conv3_vs_im2col("reference fallback 4x6 C3 O5", 2, 4, 6, 3, 5);
    test_conv3_vs_im2col("O=8 3x30 C8", 1, 3, 30, 8, 8);
    test_conv3_data_input();
    for (size_t k = 0; k < sizeof all_isas / sizeof *all_isas; k++) {
        if (k != 0 && k != sizeof all_isas / sizeof *all_isas - 1) continue;   /* ref, widest */
        if (!nn_isa_supported(all_isas[k])) continue;
        nn_isa old = nn_isa_force(all_isas[k]);
        test_fused(0, 2, 6, 6, 16);
        test_fused(0, 1, 5, 7, 3);   /* floor drops a row and a column; scalar */
        test_fused(1, 2, 5, 1, 16);
        nn_isa_force(old);
    }
    test_fused_isas();

    test_maxpool(3, 6, 6, 2);
    test_maxpool(2, 7, 8, 3);
    test_maxpool(2, 5, 7, 2);
    test_gap();
    test_act(0);
    test_act(1);
    test_xent();
    test_xent_isas();
    test_parallel_loops();
    /* last, so that the random data of the checks above stay as they were: 3 rows of
     * 64 columns, the fewest a tile still takes (6-row tiles); the learned
     * optimizer's output layer (n x 32 -> 2, and dW with M = 2): CBLAS's share */
    test_dense_tiles(3, 9, 64);
    test_dense_tiles(1000, 32, 2);
    return check_done("test_nn");
}
