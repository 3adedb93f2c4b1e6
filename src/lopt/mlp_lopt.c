/* mlp_lopt.c - the per-parameter MLP learned optimizer: presets, forward over all
 * parameters (three batched matrix products, no call per scalar), and its VJP, in
 * the mlp form and the nominal form (a scheduled hand-designed step + the MLP as a
 * residual). Reference: Metz et al. 2019 section 3 / the authors' release
 * (task_specific_learned_opt); Harrison et al. 2022 for the nominal form; see
 * mlp_lopt.h and docs/design.md sections 1.1 and 1.4. */
#include <cblas.h>
/* cblas.h pulls in <complex.h>, whose macro I would clobber nn.h's dense size I */
#undef I
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lopt/mlp_fast.h"
#include "lopt/mlp_lopt.h"
#include "nn/nn.h"

/* the nominal preset's hand-designed rule: normalised momentum beta = 0.9 (index 1 of
 * paper's betas) at an RMS step of 3e-3 per tensor, as good as tuned Adam on
 * fmnist-cnn at 2,000 steps (docs/decisions.md) */
#define NOMINAL_MOM 1
#define NOMINAL_STEP 3e-3f
/* nominal-adam: torch's Adam (beta1 0.9 = momentum index 1) at lr 3e-3, tuned
 * constant-lr Adam's rate on fmnist-cnn at 2,000 steps (docs/results/fmnist-cnn) */
#define NOMINAL_ADAM_LR 3e-3f

lopt_status lopt_arch_preset(lopt_arch *a, const char *name, lopt_err *err)
{
    memset(a, 0, sizeof *a);
    a->hidden = 32;
    a->step_mult = 0.001f;
    a->exp_mult = 0.001f;
    int adam = strcmp(name, "nominal-adam") == 0;
    int nominal = adam || strcmp(name, "nominal") == 0;
    if (strcmp(name, "paper") == 0 || nominal) {
        static const float beta[] = {0.5f, 0.9f, 0.99f, 0.999f, 0.9999f};
        static const float tau[] = {3, 10, 30, 100, 300, 1e3f, 3e3f, 1e4f, 3e5f};
        a->nmom = 5;
        memcpy(a->beta, beta, sizeof beta);
        a->ntime = 9;
        memcpy(a->tau, tau, sizeof tau);
        a->nhidden = 1;
        if (nominal) {
            a->form = LOPT_FORM_NOMINAL;
            a->nominal_dir = LOPT_NOMINAL_MOM;
            a->nominal_mom = NOMINAL_MOM;
            a->nominal_step = NOMINAL_STEP;
            if (adam) {
                a->nominal_dir = LOPT_NOMINAL_ADAM;
                a->nominal_step = NOMINAL_ADAM_LR;
            }
        }
    } else if (strcmp(name, "lo") == 0) {
        static const float beta[] = {0.1f, 0.5f, 0.9f, 0.99f, 0.999f, 0.9999f};
        static const float tau[] = {1, 3, 10, 30, 100, 300, 1e3f, 3e3f, 1e4f, 3e4f, 1e5f};
        a->nmom = 6;
        memcpy(a->beta, beta, sizeof beta);
        a->ntime = 11;
        memcpy(a->tau, tau, sizeof tau);
        a->nhidden = 2;
    } else {
        return lopt_fail(err, LOPT_EUSAGE, "unknown architecture '%s' "
                         "(paper|lo|nominal|nominal-adam)", name);
    }
    return LOPT_OK;
}

lopt_status lopt_arch_validate(const lopt_arch *a, lopt_err *err)
{
    if (a->nmom < 0 || a->nmom > LOPT_MAX_MOM || a->ntime < 0 || a->ntime > LOPT_MAX_TIME ||
        a->nhidden < 1 || a->nhidden > LOPT_MAX_LAYERS || a->hidden < 1 || a->hidden > 4096)
        return lopt_fail(err, LOPT_EFORMAT, "architecture out of range (momenta %d, time "
                         "features %d, hidden layers %d x %d)", a->nmom, a->ntime, a->nhidden,
                         a->hidden);
    for (int k = 0; k < a->nmom; k++)
        if (!(a->beta[k] >= 0 && a->beta[k] < 1))
            return lopt_fail(err, LOPT_EFORMAT, "momentum decay %g outside [0, 1)", a->beta[k]);
    for (int j = 0; j < a->ntime; j++)
        if (!(a->tau[j] > 0 && isfinite(a->tau[j])))
            return lopt_fail(err, LOPT_EFORMAT, "time scale %g not positive", a->tau[j]);
    if (!isfinite(a->step_mult) || !isfinite(a->exp_mult))
        return lopt_fail(err, LOPT_EFORMAT, "non-finite output multipliers");
    if (a->form == LOPT_FORM_MLP) {
        /* unused fields stay zero, so one optimizer has one representation */
        if (a->nominal_dir != 0 || a->nominal_mom != 0 || a->nominal_step != 0)
            return lopt_fail(err, LOPT_EFORMAT, "mlp form with nominal-form fields set");
        return LOPT_OK;
    }
    if (a->form != LOPT_FORM_NOMINAL)
        return lopt_fail(err, LOPT_EFORMAT, "unknown form %d (0 mlp, 1 nominal)", (int)a->form);
    if (a->nominal_dir == LOPT_NOMINAL_MOM || a->nominal_dir == LOPT_NOMINAL_ADAM) {
        if (a->nominal_mom < 0 || a->nominal_mom >= a->nmom)
            return lopt_fail(err, LOPT_EFORMAT, "nominal momentum %d out of range (%d momenta)",
                             a->nominal_mom, a->nmom);
    } else if (a->nominal_dir != LOPT_NOMINAL_GRAD || a->nominal_mom != 0) {
        return lopt_fail(err, LOPT_EFORMAT, "unknown nominal direction %d (0 gradient, 1 "
                         "momentum, 2 adam)", (int)a->nominal_dir);
    }
    if (!(a->nominal_step > 0 && a->nominal_step <= 1))
        return lopt_fail(err, LOPT_EFORMAT, "nominal step %g outside (0, 1]", a->nominal_step);
    return LOPT_OK;
}

int lopt_arch_equal(const lopt_arch *a, const lopt_arch *b)
{
    if (a->nmom != b->nmom || a->ntime != b->ntime || a->nhidden != b->nhidden ||
        a->hidden != b->hidden || a->step_mult != b->step_mult || a->exp_mult != b->exp_mult ||
        a->form != b->form || a->nominal_dir != b->nominal_dir ||
        a->nominal_mom != b->nominal_mom || a->nominal_step != b->nominal_step)
        return 0;
    for (int k = 0; k < a->nmom; k++)
        if (a->beta[k] != b->beta[k]) return 0;
    for (int j = 0; j < a->ntime; j++)
        if (a->tau[j] != b->tau[j]) return 0;
    return 1;
}

int lopt_arch_features(const lopt_arch *a) { return 2 + a->nmom; }
int lopt_arch_inputs(const lopt_arch *a) { return 2 + a->nmom + a->ntime; }

static int adam_dir(const lopt_arch *a)
{
    return a->form == LOPT_FORM_NOMINAL && a->nominal_dir == LOPT_NOMINAL_ADAM;
}
int lopt_arch_state_rows(const lopt_arch *a) { return a->nmom + adam_dir(a); }
int lopt_arch_has_vjp(const lopt_arch *a) { return !adam_dir(a); }

/* in/out sizes of layer l (0 .. nhidden) */
static int layer_in(const lopt_arch *a, int l) { return l == 0 ? lopt_arch_inputs(a) : a->hidden; }
static int layer_out(const lopt_arch *a, int l) { return l == a->nhidden ? 2 : a->hidden; }

/* offset of layer l's W in theta (its b follows W) */
static size_t layer_offset(const lopt_arch *a, int l)
{
    size_t off = 0;
    for (int i = 0; i < l; i++)
        off += (size_t)layer_out(a, i) * (size_t)(layer_in(a, i) + 1);
    return off;
}

size_t lopt_arch_schedule_offset(const lopt_arch *a) { return layer_offset(a, a->nhidden + 1); }
size_t lopt_arch_output_offset(const lopt_arch *a) { return layer_offset(a, a->nhidden); }

size_t lopt_arch_nparams(const lopt_arch *a)
{
    size_t mlp = lopt_arch_schedule_offset(a);
    return a->form == LOPT_FORM_NOMINAL ? mlp + (size_t)a->ntime + 1 : mlp;
}

int lopt_arch_nominal_feature(const lopt_arch *a)
{
    LOPT_ASSERT(a->form == LOPT_FORM_NOMINAL);
    return a->nominal_dir == LOPT_NOMINAL_GRAD ? 0 : 2 + a->nominal_mom;
}

void lopt_theta_init(const lopt_arch *a, uint64_t seed, float *theta)
{
    for (int l = 0; l <= a->nhidden; l++) {
        size_t off = layer_offset(a, l);
        int in = layer_in(a, l), out = layer_out(a, l);
        lopt_rng_fill_normal(theta + off, (size_t)out * in, 1.0f / sqrtf((float)in), seed,
                             LOPT_STREAM_INIT, off);
        memset(theta + off + (size_t)out * in, 0, (size_t)out * sizeof(float));
    }
    if (a->form == LOPT_FORM_NOMINAL) {
        /* d = s = 0 exactly (residual 0) and sched = 0 (exp 1): the hand-designed step */
        size_t out0 = lopt_arch_output_offset(a);
        memset(theta + out0, 0, (lopt_arch_nparams(a) - out0) * sizeof(float));
    }
}

lopt_status lopt_arch_train_mask(const lopt_arch *a, const char *which, unsigned char *mask,
                                 size_t *ntrain, lopt_err *err)
{
    size_t np = lopt_arch_nparams(a), from;
    if (strcmp(which, "all") == 0) {
        from = 0;
    } else if (strcmp(which, "schedule") == 0 || strcmp(which, "nominal") == 0) {
        if (a->form != LOPT_FORM_NOMINAL)
            return lopt_fail(err, LOPT_EUSAGE, "training only '%s' needs the nominal form; this "
                             "is an mlp-form optimizer (no schedule): train 'all'", which);
        from = which[0] == 's' ? lopt_arch_schedule_offset(a) : lopt_arch_output_offset(a);
    } else {
        return lopt_fail(err, LOPT_EUSAGE, "unknown set of coordinates to train '%s' "
                         "(schedule|nominal|all)", which);
    }
    /* the schedule follows the output layer, which follows the hidden layers: each
     * choice is a suffix of theta */
    memset(mask, 0, from);
    memset(mask + from, 1, np - from);
    if (ntrain) *ntrain = np - from;
    return LOPT_OK;
}

void lopt_theta_normalized(const lopt_arch *a, int feature, float gain, float noise,
                           uint64_t seed, float *theta)
{
    size_t np = lopt_arch_nparams(a);
    lopt_rng_fill_normal(theta, np, noise, seed, LOPT_STREAM_INIT, 0);
    int IN = lopt_arch_inputs(a);
    theta[feature] += 1.0f;         /* unit 0 reads +x_feature */
    theta[IN + feature] -= 1.0f;    /* unit 1 reads -x_feature */
    /* the output layer's d row: gain * (unit 0 - unit 1) (through any further
     * hidden layers, the same pair is passed on by their units 0 and 1) */
    for (int l = 1; l <= a->nhidden; l++) {
        float *W = theta + layer_offset(a, l);
        int in = layer_in(a, l);
        if (l < a->nhidden) {
            W[0] += 1.0f;           /* unit 0 <- unit 0 */
            W[in + 1] += 1.0f;      /* unit 1 <- unit 1 */
        } else {
            W[0] += gain;
            W[1] -= gain;
        }
    }
}

void lopt_theta_normalized_sgd(const lopt_arch *a, float noise, uint64_t seed, float *theta)
{
    lopt_theta_normalized(a, 0, 1.0f, noise, seed, theta);
}

/* Solves the n x n system A x = b in place (A row-major, overwritten; b becomes x) by
 * Gaussian elimination with partial pivoting; A is symmetric positive definite here. */
static void solve_dense(double *A, double *b, int n)
{
    for (int i = 0; i < n; i++) {
        int p = i;
        for (int r = i + 1; r < n; r++)
            if (fabs(A[r * n + i]) > fabs(A[p * n + i])) p = r;
        for (int k = 0; k < n; k++) {
            double tmp = A[i * n + k];
            A[i * n + k] = A[p * n + k];
            A[p * n + k] = tmp;
        }
        double tb = b[i];
        b[i] = b[p];
        b[p] = tb;
        LOPT_ASSERT(A[i * n + i] != 0);
        for (int r = i + 1; r < n; r++) {
            double f = A[r * n + i] / A[i * n + i];
            for (int k = i; k < n; k++) A[r * n + k] -= f * A[i * n + k];
            b[r] -= f * b[i];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        for (int k = i + 1; k < n; k++) b[i] -= A[i * n + k] * b[k];
        b[i] /= A[i * n + i];
    }
}

double lopt_theta_fit_schedule(const lopt_arch *a, const lopt_schedule *s, double peak,
                               double floor, float *theta)
{
    LOPT_ASSERT(a->form == LOPT_FORM_NOMINAL && s->steps > 0 && peak > 0);
    LOPT_ASSERT(floor > 0 && floor <= 1 && a->ntime + 1 <= LOPT_MAX_TIME + 1);
    const int n = a->ntime + 1;   /* the features' coefficients a_j, then b */
    double A[(LOPT_MAX_TIME + 1) * (LOPT_MAX_TIME + 1)] = {0}, rhs[LOPT_MAX_TIME + 1] = {0};
    double row[LOPT_MAX_TIME + 1];
    for (int64_t t = 0; t < s->steps; t++) {
        double factor = fmax(lopt_schedule_factor(s, t + 1), floor);
        double y = log(peak / a->nominal_step * factor);
        for (int j = 0; j < a->ntime; j++) row[j] = tanh((double)t / a->tau[j] - 1.0);
        row[a->ntime] = 1.0;
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < n; k++) A[i * n + k] += row[i] * row[k];
            rhs[i] += row[i] * y;
        }
    }
    for (int i = 0; i < n; i++) A[i * n + i] += 1e-6 * (double)s->steps;
    solve_dense(A, rhs, n);
    float *sc = theta + lopt_arch_schedule_offset(a);
    for (int i = 0; i < n; i++) sc[i] = (float)rhs[i];
    double worst = 0;
    for (int64_t t = 0; t < s->steps; t++) {
        double factor = fmax(lopt_schedule_factor(s, t + 1), floor);
        double y = log(peak / a->nominal_step * factor);
        worst = fmax(worst, fabs(lopt_arch_schedule(a, theta, t) - y));
    }
    return worst;
}

/* n * k floats, NULL if that overflows or the allocation fails */
static float *floats_nk(size_t n, size_t k)
{
    return k && n > SIZE_MAX / k ? NULL : lopt_try_floats(n * k);
}

size_t lopt_mlp_work_bytes(const lopt_arch *a, size_t n)
{
    double per = 2.0 * lopt_arch_features(a) + 1.0;   /* x, dx, e */
    for (int l = 0; l <= a->nhidden; l++) per += 2.0 * layer_out(a, l);
    double b = per * (double)n * sizeof(float);
    return b >= (double)SIZE_MAX ? SIZE_MAX : (size_t)b;
}

lopt_status lopt_mlp_work_try_init(lopt_mlp_work *wk, const lopt_arch *a, size_t n,
                                   int ntensors)
{
    memset(wk, 0, sizeof *wk);
    wk->arch = a;
    wk->n = n;
    wk->ntensors = ntensors;
    size_t F = (size_t)lopt_arch_features(a), T = (size_t)ntensors;
    int ok = (wk->x = floats_nk(n, F)) && (wk->dx = floats_nk(n, F));
    for (int l = 0; ok && l <= a->nhidden; l++)
        ok = (wk->act[l] = floats_nk(n, (size_t)layer_out(a, l))) &&
             (wk->dact[l] = floats_nk(n, (size_t)layer_out(a, l)));
    ok = ok && (wk->scale = floats_nk(T, F)) && (wk->coef = floats_nk(T, F)) &&
         (wk->bias0 = lopt_try_floats((size_t)a->hidden)) &&
         (wk->w0t = floats_nk(F, (size_t)a->hidden)) && (wk->e = lopt_try_floats(n));
    if (ok) return LOPT_OK;
    lopt_mlp_work_free(wk);
    return LOPT_ENOMEM;
}

void lopt_mlp_work_init(lopt_mlp_work *wk, const lopt_arch *a, size_t n, int ntensors)
{
    if (lopt_mlp_work_try_init(wk, a, n, ntensors) != LOPT_OK)
        lopt_out_of_memory(lopt_mlp_work_bytes(a, n));
}

void lopt_mlp_work_free(lopt_mlp_work *wk)
{
    if (!wk || !wk->arch) return;
    lopt_free(wk->x);
    lopt_free(wk->dx);
    for (int l = 0; l <= wk->arch->nhidden; l++) {
        lopt_free(wk->act[l]);
        lopt_free(wk->dact[l]);
    }
    lopt_free(wk->scale);
    lopt_free(wk->coef);
    lopt_free(wk->bias0);
    lopt_free(wk->w0t);
    lopt_free(wk->e);
    memset(wk, 0, sizeof *wk);
}

/* the f-th feature source: g, w, then the momenta */
static const float *feature_src(int f, const float *g, const float *w, const float *m,
                                size_t n)
{
    return f == 0 ? g : f == 1 ? w : m + (size_t)(f - 2) * n;
}

static float time_feature(const lopt_arch *a, int j, int64_t t)
{
    return tanhf((float)t / a->tau[j] - 1.0f);
}

float lopt_arch_schedule(const lopt_arch *a, const float *theta, int64_t t)
{
    if (a->form != LOPT_FORM_NOMINAL) return 0.0f;
    const float *sc = theta + lopt_arch_schedule_offset(a);   /* a_1..a_ntime, b */
    float acc = sc[a->ntime];
    for (int j = 0; j < a->ntime; j++) acc += sc[j] * time_feature(a, j, t);
    return acc;
}

/* sum of v[i]^2 in double, over 8 independent partial sums so the loop vectorises
 * (a single running sum is a chain of dependent adds) */
static double sum_squares(const float *v, size_t n)
{
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)v[i + l] * v[i + l];
    double ss = 0;
    for (int l = 0; l < 8; l++) ss += acc[l];
    for (; i < n; i++) ss += (double)v[i] * v[i];
    return ss;
}

/* The MLP over every parameter, any architecture: normalised features x (n,F)
 * from the rows src[f] and wk->scale, layer 0 with the folded bias wk->bias0, the
 * other layers as GEMMs; fills wk->x and wk->act. */
static void forward_generic(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                            int ntensors, const float *const *src)
{
    const lopt_arch *a = wk->arch;
    const size_t n = wk->n;
    const int F = lopt_arch_features(a), IN = lopt_arch_inputs(a), H = a->hidden;
    const float *W0 = theta;
    for (int T = 0; T < ntensors; T++) {
        size_t off = tensors[T].offset, sz = tensors[T].size;
        for (int f = 0; f < F; f++) {
            const float *v = src[f] + off;
            float s = wk->scale[T * F + f];
            float *x = wk->x + off * F + f;
            for (size_t i = 0; i < sz; i++) x[i * F] = v[i] * s;
        }
    }
    /* (n,F) x (F,H) with F ~ 7 is too thin for a GEMM call to pay: a fused loop
     * over parameters, vectorised over the hidden units, with W0 transposed */
    float *w0t = wk->w0t;   /* (F, H) */
    for (int f = 0; f < F; f++)
        for (int h = 0; h < H; h++) w0t[f * H + h] = W0[h * IN + f];
    for (size_t i = 0; i < n; i++) {
        float *r = wk->act[0] + i * H;
        const float *xi = wk->x + i * F;
        for (int h = 0; h < H; h++) r[h] = wk->bias0[h];
        for (int f = 0; f < F; f++) {
            const float xf = xi[f], *wt = w0t + f * H;
            for (int h = 0; h < H; h++) r[h] += xf * wt[h];
        }
        for (int h = 0; h < H; h++) r[h] = r[h] > 0.0f ? r[h] : 0.0f;
    }
    /* the other layers are plain dense layers over the n parameters as a batch */
    for (int l = 1; l <= a->nhidden; l++) {
        int in = layer_in(a, l), out = layer_out(a, l);
        const float *W = theta + layer_offset(a, l), *b = W + (size_t)out * in;
        nn_dense_forward(wk->act[l], wk->act[l - 1], W, b, (int)n, in, out);
        if (l < a->nhidden) nn_relu_forward(wk->act[l], wk->act[l], n * (size_t)out);
    }
}

/* 1 when the MLP's output layer (its W and b) is all zero: then d = s = 0 for every
 * parameter and the nominal form's residual is exactly 0 */
static int residual_is_zero(const lopt_arch *a, const float *theta)
{
    const float *o = theta + lopt_arch_output_offset(a);
    const size_t len = lopt_arch_schedule_offset(a) - lopt_arch_output_offset(a);
    for (size_t i = 0; i < len; i++)
        if (o[i] != 0.0f) return 0;
    return 1;
}

/* torch's Adam at step t + 1 as the nominal direction: m is momentum nominal_mom, v the
 * state row after the momenta; delta = -nominal_step e^{sched(t)} m_hat / (sqrt(v_hat)
 * + eps) + the residual read from out (n, 2) and e (n, exp(exp_mult * s)), or none
 * for out NULL (a zero residual) */
static void nominal_adam(const lopt_arch *a, const float *theta, const float *g, float *m,
                         int64_t t, size_t n, const float *out, const float *e, float *delta)
{
    const float b1 = a->beta[a->nominal_mom], b2 = LOPT_ADAM_BETA2;
    const float *mk = m + (size_t)a->nominal_mom * n;
    float *v = m + (size_t)a->nmom * n;
    const double bc1 = 1.0 - pow(b1, (double)(t + 1)), bc2 = 1.0 - pow(b2, (double)(t + 1));
    const float c = -a->nominal_step * expf(lopt_arch_schedule(a, theta, t));
    const float step = (float)(c / bc1), root_bc2 = (float)sqrt(bc2);
    if (lopt_mlp_adam_dir_fast(delta, v, mk, g, out, e, n, b2, step, root_bc2, LOPT_ADAM_EPS,
                               a->step_mult))
        return;
    for (size_t i = 0; i < n; i++) {
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float u = mk[i] / (sqrtf(v[i]) / root_bc2 + LOPT_ADAM_EPS);
        delta[i] = out ? step * u - a->step_mult * out[2 * i] * e[i] : step * u;
    }
}

/* keep: leave the hidden activations lopt_mlp_vjp reads in wk (0: the lane-form
 * forward may skip them; what it returns is the same) */
static void mlp_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                       int ntensors, const float *w, const float *g, float *m, int64_t t,
                       float *delta, int keep)
{
    const lopt_arch *a = wk->arch;
    const size_t n = wk->n;
    const int F = lopt_arch_features(a), IN = lopt_arch_inputs(a), H = a->hidden;
    LOPT_ASSERT(ntensors == wk->ntensors);

    /* An Adam direction whose residual's output layer is all zero (as initialised, and
     * while meta-training moves only the schedule) has a residual of exactly 0 for
     * every input: the MLP's forward pass is skipped, the update is the same. */
    const int no_mlp = adam_dir(a) && residual_is_zero(a, theta);
    /* the momenta, then per-tensor normalisers of the features (in one pass where
     * mlp_fast.c can) */
    if (no_mlp || !lopt_mlp_moments_fast(wk, tensors, ntensors, w, g, m)) {
        for (int k = 0; k < a->nmom; k++) {
            float b = a->beta[k], *mk = m + (size_t)k * n;
            for (size_t i = 0; i < n; i++) mk[i] = b * mk[i] + (1.0f - b) * g[i];
        }
        if (no_mlp) {
            nominal_adam(a, theta, g, m, t, n, NULL, NULL, delta);
            return;
        }
        for (int T = 0; T < ntensors; T++) {
            size_t off = tensors[T].offset, sz = tensors[T].size;
            for (int f = 0; f < F; f++)
                wk->scale[T * F + f] =
                    lopt_norm_scale(sum_squares(feature_src(f, g, w, m, n) + off, sz), sz);
        }
    }
    /* layer 0: the time features are the same for every parameter, so they fold
     * into an effective bias */
    const float *W0 = theta, *b0 = theta + (size_t)H * IN;
    float tf[LOPT_MAX_TIME];
    for (int j = 0; j < a->ntime; j++) tf[j] = time_feature(a, j, t);
    for (int h = 0; h < H; h++) {
        float acc = b0[h];
        for (int j = 0; j < a->ntime; j++) acc += W0[h * IN + F + j] * tf[j];
        wk->bias0[h] = acc;
    }
    const float *src[LOPT_MAX_MOM + 2];
    for (int f = 0; f < F; f++) src[f] = feature_src(f, g, w, m, n);
    if (!lopt_mlp_forward_fast(wk, theta, tensors, ntensors, src, F, IN, keep))
        forward_generic(wk, theta, tensors, ntensors, src);
    const float *out = wk->act[a->nhidden];   /* (n, 2): d, s */
    /* the exps e^{k s} first, in a pass of their own (a scalar expf call per
     * parameter kept the loops below scalar), and kept for the VJP. Left out: a
     * vector exp; libm's expf is scalar here, and one of our own would not be expf
     * bit for bit, so every learned update would move at the rounding level */
    float *e = wk->e;
    for (size_t i = 0; i < n; i++) e[i] = expf(a->exp_mult * out[2 * i + 1]);
    if (adam_dir(a)) {
        nominal_adam(a, theta, g, m, t, n, out, e, delta);
        return;
    }
    if (a->form == LOPT_FORM_NOMINAL) {
        /* delta = -nominal_step e^{sched(t)} u_nom + residual; u_nom is feature f of x */
        const int f = lopt_arch_nominal_feature(a);
        const float c = -a->nominal_step * expf(lopt_arch_schedule(a, theta, t));
        for (size_t i = 0; i < n; i++)
            delta[i] = c * wk->x[i * F + f] - a->step_mult * out[2 * i] * e[i];
        return;
    }
    for (size_t i = 0; i < n; i++)
        delta[i] = -a->step_mult * out[2 * i] * e[i];
}

void lopt_mlp_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                     int ntensors, const float *w, const float *g, float *m, int64_t t,
                     float *delta)
{
    mlp_update(wk, theta, tensors, ntensors, w, g, m, t, delta, 1);
}

void lopt_mlp_update_fwd(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                         int ntensors, const float *w, const float *g, float *m, int64_t t,
                         float *delta)
{
    mlp_update(wk, theta, tensors, ntensors, w, g, m, t, delta, 0);
}

/* dot[f] = sum_i dx[i, f] v_f[i] over one tensor's rows [off, off + sz), in double, i
 * in order: the F sums side by side, so they are F independent chains of adds (one
 * sum at a time was one chain, ~20% of the VJP); each sum is the same */
static inline void norm_dots(double *dot, const float *dx, const float *const *src,
                             size_t off, size_t sz, int F)
{
    for (int f = 0; f < F; f++) dot[f] = 0;
    for (size_t i = off; i < off + sz; i++)
        for (int f = 0; f < F; f++) dot[f] += (double)dx[i * F + f] * src[f][i];
}

/* The VJP's dense layers, any shape: from dact[L] (the outputs' adjoint) down to
 * theta's layer weights, wk->dx (the features' adjoint, (n,F)) and colsum (H), layer
 * 0's adjoint summed over the parameters, for its bias and time features. */
static void vjp_dense_generic(lopt_mlp_work *wk, const float *theta, float *dtheta,
                              float *colsum)
{
    const lopt_arch *a = wk->arch;
    const size_t n = wk->n;
    const int F = lopt_arch_features(a), IN = lopt_arch_inputs(a), H = a->hidden;
    int have_colsum = 0;
    /* layers L .. 1, dense layers over the n parameters as a batch: dW += dz^T
     * act_{l-1}, db += sum dz, d(act_{l-1}) = dz W_l; then back through layer l-1's
     * ReLU in place (act_{l-1} > 0) */
    for (int l = a->nhidden; l >= 1; l--) {
        int in = layer_in(a, l), o = layer_out(a, l);
        const float *W = theta + layer_offset(a, l);
        float *dW = dtheta + layer_offset(a, l), *db = dW + (size_t)o * in;
        const float *dz = wk->dact[l], *prev = wk->act[l - 1];
        float *dprev = wk->dact[l - 1];
        nn_dense_backward_set_dx(dprev, dW, db, dz, prev, W, (int)n, in, o);
        /* layer 0's adjoint: masked and summed over the parameters (layer 0's bias
         * and time features) in one pass where mlp_fast.c can */
        if (l == 1 && lopt_mlp_relu_colsum(dprev, prev, n, in, colsum)) {
            have_colsum = 1;
            continue;
        }
        nn_relu_rforward(dprev, dprev, prev, n * (size_t)in);   /* the mask, in place */
    }
    /* layer 0 is not nn_dense_*: its weights W0 (H, IN) are used on the F features
     * only (row stride IN), the time features' columns folded into the bias.
     * z_0 = x W0[:, :F]^T + W0[:, F:] tf(t) + b0 */
    const float *dz0 = wk->dact[0];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, F, (int)n, 1.0f, dz0, H, wk->x, F,
                1.0f, dtheta, IN);
    if (!have_colsum) {
        for (int h = 0; h < H; h++) colsum[h] = 0.0f;
        for (size_t i = 0; i < n; i++)
            for (int h = 0; h < H; h++) colsum[h] += dz0[i * H + h];
    }
    /* dx = dz0 W0[:, :F] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, F, H, 1.0f, dz0, H, theta,
                IN, 0.0f, wk->dx, F);
}

void lopt_mlp_vjp(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                  int ntensors, const float *w, const float *g, const float *m, int64_t t,
                  const float *delta, const float *ddelta, float *dtheta, float *dg,
                  float *dw, float *dm)
{
    const lopt_arch *a = wk->arch;
    const size_t n = wk->n;
    const int F = lopt_arch_features(a), IN = lopt_arch_inputs(a), H = a->hidden;
    const int L = a->nhidden;
    LOPT_ASSERT(lopt_arch_has_vjp(a));   /* callers check: rp refuses the Adam direction */

    /* delta = -c d e^{k s}:  d(delta)/dd = -c e^{k s},  d(delta)/ds = k delta */
    const float *out = wk->act[L];
    float *dout = wk->dact[L];
    const int nominal = a->form == LOPT_FORM_NOMINAL;
    for (size_t i = 0; i < n; i++) {
        const float e = wk->e[i];   /* the update's exp(exp_mult * s) */
        dout[2 * i] = ddelta[i] * (-a->step_mult * e);
        /* nominal: delta is the residual r = -c d e^{k s} plus the nominal step, and
         * d(delta)/ds = k r (r recomputed as the forward did) */
        float r = nominal ? -a->step_mult * out[2 * i] * e : delta[i];
        dout[2 * i + 1] = ddelta[i] * a->exp_mult * r;
    }
    /* the dense layers: one hidden layer of 32 (the paper preset) in mlp_fast.c's two
     * passes over the parameters (OpenBLAS's n x 32 x F products were half of this
     * VJP), any other shape through src/nn */
    float *colsum = wk->bias0;   /* the forward's folded bias is not needed any more */
    if (!lopt_mlp_vjp_fast(wk, theta, dtheta, colsum)) vjp_dense_generic(wk, theta, dtheta, colsum);
    float *dW0 = dtheta, *db0 = dtheta + (size_t)H * IN;
    for (int h = 0; h < H; h++) {
        db0[h] += colsum[h];
        for (int j = 0; j < a->ntime; j++) dW0[h * IN + F + j] += colsum[h] * time_feature(a, j, t);
    }
    if (nominal) {
        /* the nominal step delta_nom = C x_f with C = -nominal_step e^{sched(t)},
         * sched = b + sum_j a_j tf_j(t):
         *   d/dsched = sum_i ddelta_i C x_f,i ;  d/db = d/dsched, d/da_j = tf_j d/dsched;
         *   d/dx_f,i = C ddelta_i, which joins the MLP's dx and goes through the
         *   per-tensor normaliser below to g or the momentum */
        const int f = lopt_arch_nominal_feature(a);
        const float C = -a->nominal_step * expf(lopt_arch_schedule(a, theta, t));
        double dsched = 0;
        for (size_t i = 0; i < n; i++) {
            dsched += (double)ddelta[i] * wk->x[i * F + f];
            wk->dx[i * F + f] += C * ddelta[i];
        }
        dsched *= C;
        float *dsc = dtheta + lopt_arch_schedule_offset(a);
        for (int j = 0; j < a->ntime; j++) dsc[j] += (float)(dsched * time_feature(a, j, t));
        dsc[a->ntime] += (float)dsched;
    }
    /* normalisation y = v s, s = (eps + mean v^2)^(-1/2):
     *   dv_i = s dy_i - s^3 v_i (sum_j dy_j v_j) / N */
    const float *src[LOPT_MAX_MOM + 2];
    for (int f = 0; f < F; f++) src[f] = feature_src(f, g, w, m, n);
    for (int T = 0; T < ntensors; T++) {
        size_t off = tensors[T].offset, sz = tensors[T].size;
        double dot[LOPT_MAX_MOM + 2];
        if (F == 7)   /* the paper preset's features: the sums in registers */
            norm_dots(dot, wk->dx, src, off, sz, 7);
        else
            norm_dots(dot, wk->dx, src, off, sz, F);
        for (int f = 0; f < F; f++) {
            const float *v = src[f] + off;
            const float *dy = wk->dx + off * F + f;
            float *dv = f == 0 ? dg : f == 1 ? dw : dm + (size_t)(f - 2) * n;
            dv += off;
            float s = wk->scale[T * F + f];
            float c = (float)((double)s * s * s * dot[f] / (double)sz);
            for (size_t i = 0; i < sz; i++) dv[i] += s * dy[i * F] - c * v[i];
        }
    }
}

/* ---- the step of a learned optimizer, with the non-finite rule ------------------ */

int64_t lopt_learned_time(int64_t t, int64_t t_max)
{
    return t_max > 0 && t > t_max ? t_max : t;
}

void lopt_learned_update(lopt_mlp_work *wk, const float *theta, const lopt_tensor *tensors,
                         int ntensors, const float *w, const float *g, float *m, int64_t t,
                         float *delta, float *gclean)
{
    const size_t n = wk->n;
    const size_t R = (size_t)lopt_arch_state_rows(wk->arch);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(g[i]);
    if (!bad) {
        lopt_mlp_update_fwd(wk, theta, tensors, ntensors, w, g, m, t, delta);
        return;
    }
    /* the bad elements' indices, then their state rows (bad, R), kept across the
     * update; gclean may be g, so the indices are recorded before it is written */
    size_t *idx = bad > (SIZE_MAX / 2) / (sizeof *idx + R * sizeof(float)) ? NULL
                  : lopt_try_calloc(bad, sizeof *idx + R * sizeof(float));
    if (!idx) {   /* no memory to keep them: the whole step is skipped, state untouched */
        for (size_t i = 0; i < n; i++) delta[i] = NAN;
        return;
    }
    float *rows = (float *)(idx + bad);
    for (size_t i = 0, j = 0; i < n; i++) {
        if (isfinite(g[i])) {
            gclean[i] = g[i];
            continue;
        }
        idx[j] = i;
        for (size_t k = 0; k < R; k++) rows[j * R + k] = m[k * n + i];
        gclean[i] = 0.0f;
        j++;
    }
    lopt_mlp_update_fwd(wk, theta, tensors, ntensors, w, gclean, m, t, delta);
    for (size_t j = 0; j < bad; j++) {
        size_t i = idx[j];
        for (size_t k = 0; k < R; k++) m[k * n + i] = rows[j * R + k];
        delta[i] = NAN;
    }
    free(idx);
}

size_t lopt_learned_apply(float *out, const float *w, const float *delta, size_t n,
                          float scale, float decay)
{
    const float s = scale, dec = scale * decay;
    size_t skipped = 0;
    if (dec != 0.0f) {
        for (size_t j = 0; j < n; j++) {
            float wj = w[j];
            int ok = isfinite(delta[j]) != 0;
            out[j] = ok ? wj - dec * wj + s * delta[j] : wj;
            skipped += !ok;
        }
    } else if (s == 1.0f) {
        for (size_t j = 0; j < n; j++) {
            int ok = isfinite(delta[j]) != 0;
            out[j] = ok ? w[j] + delta[j] : w[j];
            skipped += !ok;
        }
    } else {
        for (size_t j = 0; j < n; j++) {
            int ok = isfinite(delta[j]) != 0;
            out[j] = ok ? w[j] + s * delta[j] : w[j];
            skipped += !ok;
        }
    }
    return skipped;
}

/* ---- as an lopt_optimizer ------------------------------------------------------- */

typedef struct {
    lopt_arch arch;
    float *theta;
    const lopt_tensor *tensors;
    int ntensors;
    float *m, *delta;     /* (state rows, n), (n) */
    float *gclean;        /* (n) scratch of the non-finite rule */
    int64_t t;
    int64_t t_max;        /* > 0: the time features see min(t, t_max) */
    uint64_t nonfinite;   /* elements skipped since creation or the last reset */
    lopt_mlp_work wk;
} learned_ctx;

static void learned_step(lopt_optimizer *o, float *w, const float *g)
{
    learned_ctx *c = o->ctx;
    lopt_learned_update(&c->wk, c->theta, c->tensors, c->ntensors, w, g, c->m,
                        lopt_learned_time(c->t, c->t_max), c->delta, c->gclean);
    c->nonfinite += lopt_learned_apply(w, w, c->delta, o->n, 1.0f, 0.0f);
    c->t++;
}

void lopt_learned_set_t_max(lopt_optimizer *o, int64_t t_max)
{
    LOPT_ASSERT(o->step == learned_step);
    ((learned_ctx *)o->ctx)->t_max = t_max > 0 ? t_max : 0;
}

static void learned_reset(lopt_optimizer *o)
{
    learned_ctx *c = o->ctx;
    memset(c->m, 0, (size_t)lopt_arch_state_rows(&c->arch) * o->n * sizeof(float));
    c->t = 0;
    c->nonfinite = 0;
}

uint64_t lopt_learned_nonfinite(const lopt_optimizer *o)
{
    return o && o->step == learned_step ? ((const learned_ctx *)o->ctx)->nonfinite : 0;
}

static void learned_free(lopt_optimizer *o)
{
    if (!o || !o->ctx) return;
    learned_ctx *c = o->ctx;
    lopt_mlp_work_free(&c->wk);
    lopt_free(c->theta);
    lopt_free(c->m);
    lopt_free(c->delta);
    lopt_free(c->gclean);
    free(c);
    o->ctx = NULL;
}

lopt_status lopt_learned_create(lopt_optimizer *o, const lopt_arch *a, const float *theta,
                                const lopt_tensor *tensors, int ntensors, size_t n,
                                lopt_err *err)
{
    lopt_status st = lopt_arch_validate(a, err);
    if (st != LOPT_OK) return st;
    if (ntensors < 1) return lopt_fail(err, LOPT_EUSAGE, "no tensors");
    size_t covered = 0;
    for (int T = 0; T < ntensors; T++) {
        if (tensors[T].offset != covered || tensors[T].size == 0)
            return lopt_fail(err, LOPT_EUSAGE, "tensors must tile the parameter vector");
        if (tensors[T].size > SIZE_MAX - covered)
            return lopt_fail(err, LOPT_EUSAGE, "tensor sizes overflow (their sum exceeds "
                             "SIZE_MAX at tensor %d)", T);
        covered += tensors[T].size;
    }
    if (covered != n)
        return lopt_fail(err, LOPT_EUSAGE, "tensors cover %zu of %zu parameters", covered, n);
    if (n > LOPT_LEARNED_MAX_PARAMS)
        return lopt_fail(err, LOPT_EUSAGE, "%zu parameters: a learned optimizer updates at "
                         "most %zu", n, (size_t)LOPT_LEARNED_MAX_PARAMS);
    size_t np = lopt_arch_nparams(a);
    learned_ctx *c = lopt_try_calloc(1, sizeof *c);
    if (c) {
        c->arch = *a;
        c->tensors = tensors;
        c->ntensors = ntensors;
    }
    const size_t R = (size_t)lopt_arch_state_rows(a);
    if (!c || !(c->theta = lopt_try_floats(np)) || !(c->m = floats_nk(n, R)) ||
        !(c->delta = lopt_try_floats(n)) || !(c->gclean = lopt_try_floats(n)) ||
        lopt_mlp_work_try_init(&c->wk, &c->arch, n, ntensors) != LOPT_OK) {
        if (c) {
            lopt_free(c->theta);
            lopt_free(c->m);
            lopt_free(c->delta);
            lopt_free(c->gclean);
            free(c);
        }
        double gb = ((double)lopt_mlp_work_bytes(a, n) + (R + 2.0) * (double)n * 4) / 1e9;
        return lopt_fail(err, LOPT_ENOMEM, "out of memory: the learned optimizer's state for "
                         "%zu parameters needs about %.3g GB", n, gb);
    }
    memcpy(c->theta, theta, np * sizeof(float));
    memset(o, 0, sizeof *o);
    o->name = "learned";
    o->n = n;
    o->ctx = c;
    o->step = learned_step;
    o->reset = learned_reset;
    o->free = learned_free;
    return LOPT_OK;
}
