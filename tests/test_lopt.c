/* test_lopt.c - the learned optimizer (mlp-lopt): parameter counts of the presets,
 * and its VJP with respect to theta and every input (g, w, the momenta before the
 * update) against central finite differences, for both presets and the nominal form
 * (schedule coordinates included); that the hand-designed starting points
 * (lopt_theta_normalized) are the optimizers they claim; that an untrained nominal
 * optimizer (zero residual, zero schedule) is bit for bit the hand-designed
 * normalised-momentum / SGD step, and its schedule scales it as documented; the
 * nominal preset's fields and range checks; and lopt_arch_train_mask. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "lopt/mlp_fast.h"
#include "lopt/mlp_lopt.h"
#include "nn/nn.h"

/* two tensors of uneven sizes, so the per-tensor normalisation is exercised */
static const lopt_tensor tensors[] = {{"a", 0, 7, 0}, {"b", 7, 12, 0}};
enum { N = 19 };

typedef struct {
    const lopt_arch *a;
    lopt_mlp_work wk;
    float c[N];       /* objective weights */
    int64_t t;
} fixture;

/* which hidden units are active: a signature of the ReLU pattern */
static uint64_t relu_pattern(const fixture *fx)
{
    uint64_t sig = 0;
    for (int l = 0; l < fx->a->nhidden; l++)
        for (size_t i = 0; i < (size_t)N * fx->a->hidden; i++)
            if (fx->wk.act[l][i] > 0) sig = sig * 0x100000001b3ULL + i + 1 + (uint64_t)l * 1000003;
    return sig;
}

/* J = sum_i c_i delta_i(theta, g, w, m_old), in double; *pattern = ReLU pattern */
static double objective(fixture *fx, const float *theta, const float *g, const float *w,
                        const float *m_old, uint64_t *pattern)
{
    float m[LOPT_MAX_MOM * N], delta[N];
    memcpy(m, m_old, sizeof(float) * fx->a->nmom * N);
    lopt_mlp_update(&fx->wk, theta, tensors, 2, w, g, m, fx->t, delta);
    double J = 0;
    for (int i = 0; i < N; i++) J += (double)fx->c[i] * delta[i];
    *pattern = relu_pattern(fx);
    return J;
}

static int skipped, differenced;

/* central difference of J along coordinate i of x (x modified and restored).
 * ReLU kinks: where the +eps and -eps points see different active units the
 * difference straddles a kink and says nothing about the derivative; then the
 * analytic value got[i] is kept (counted as skipped; main bounds the count). */
static double fd(fixture *fx, float *x, size_t i, float eps, const float *theta,
                 const float *g, const float *w, const float *m, double got)
{
    float keep = x[i];
    uint64_t pp, pm;
    x[i] = keep + eps;
    double jp = objective(fx, theta, g, w, m, &pp);
    x[i] = keep - eps;
    double jm = objective(fx, theta, g, w, m, &pm);
    x[i] = keep;
    differenced++;
    if (pp != pm) {
        skipped++;
        return got;
    }
    return (jp - jm) / (2.0 * eps);
}

/* label names the check; noise: std of the perturbation added to lopt_theta_init's
 * theta (0 keeps it: for the nominal form, a zero output layer and schedule) */
static void vjp_check_arch(const char *label, lopt_arch a, int64_t t, float noise)
{
    const char *preset = label;
    /* larger multipliers than the presets' so the outputs are O(1) and the float32
     * finite differences resolve every path, the exp(s) one included */
    a.step_mult = 0.5f;
    a.exp_mult = 0.3f;
    if (a.form == LOPT_FORM_NOMINAL) a.nominal_step = 0.5f;
    fixture fx = {.a = &a, .t = t};
    lopt_mlp_work_init(&fx.wk, &a, N, 2);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np), *dtheta = lopt_floats(np);
    lopt_theta_init(&a, 11, theta);
    /* non-zero biases so every ReLU sits away from its kink in a known way */
    for (size_t i = 0; i < np; i++)
        theta[i] += noise * (float)lopt_rng_normal(12, LOPT_STREAM_TEST, i);
    float g[N], w[N], m_old[LOPT_MAX_MOM * N], m[LOPT_MAX_MOM * N], delta[N];
    lopt_rng_fill_normal(g, N, 1.0f, 1, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(w, N, 0.5f, 2, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(m_old, (size_t)a.nmom * N, 0.3f, 3, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(fx.c, N, 1.0f, 4, LOPT_STREAM_TEST, 0);

    memcpy(m, m_old, sizeof(float) * a.nmom * N);
    lopt_mlp_update(&fx.wk, theta, tensors, 2, w, g, m, t, delta);
    float dg[N] = {0}, dw[N] = {0}, dm[LOPT_MAX_MOM * N] = {0};
    lopt_mlp_vjp(&fx.wk, theta, tensors, 2, w, g, m, t, delta, fx.c, dtheta, dg, dw, dm);
    /* chain through the momentum update m = beta m_old + (1 - beta) g */
    double got_g[N], got_w[N], got_m[LOPT_MAX_MOM * N];
    for (int i = 0; i < N; i++) {
        got_g[i] = dg[i];
        got_w[i] = dw[i];
        for (int k = 0; k < a.nmom; k++) got_g[i] += (1.0 - a.beta[k]) * dm[k * N + i];
    }
    for (int k = 0; k < a.nmom; k++)
        for (int i = 0; i < N; i++) got_m[k * N + i] = a.beta[k] * dm[k * N + i];

    const float eps = 1e-3f;
    double *want_t = malloc(np * sizeof(double)), *got_t = malloc(np * sizeof(double));
    for (size_t i = 0; i < np; i++) {
        got_t[i] = dtheta[i];
        want_t[i] = fd(&fx, theta, i, eps, theta, g, w, m_old, got_t[i]);
    }
    double want_g[N], want_w[N], want_m[LOPT_MAX_MOM * N];
    for (int i = 0; i < N; i++) {
        want_g[i] = fd(&fx, g, (size_t)i, eps, theta, g, w, m_old, got_g[i]);
        want_w[i] = fd(&fx, w, (size_t)i, eps, theta, g, w, m_old, got_w[i]);
    }
    for (int i = 0; i < a.nmom * N; i++)
        want_m[i] = fd(&fx, m_old, (size_t)i, eps, theta, g, w, m_old, got_m[i]);
    char name[96];
    snprintf(name, sizeof name, "%s t=%lld VJP theta", preset, (long long)t);
    check_close(name, got_t, want_t, np, 2e-2, 2e-3);
    snprintf(name, sizeof name, "%s t=%lld VJP g", preset, (long long)t);
    check_close(name, got_g, want_g, N, 2e-2, 2e-3);
    snprintf(name, sizeof name, "%s t=%lld VJP w", preset, (long long)t);
    check_close(name, got_w, want_w, N, 2e-2, 2e-3);
    snprintf(name, sizeof name, "%s t=%lld VJP momenta", preset, (long long)t);
    check_close(name, got_m, want_m, (size_t)a.nmom * N, 2e-2, 2e-3);
    free(want_t);
    free(got_t);
    lopt_free(theta);
    lopt_free(dtheta);
    lopt_mlp_work_free(&fx.wk);
}

static void vjp_check(const char *preset, int64_t t)
{
    lopt_arch a;
    lopt_arch_preset(&a, preset, NULL);
    vjp_check_arch(preset, a, t, 0.1f);
}

/* the nominal form over another preset's features and MLP (lo: two hidden layers),
 * with direction dir (LOPT_NOMINAL_GRAD, or momentum index mom) */
static void vjp_check_nominal(const char *preset, int dir, int mom, int64_t t, float noise)
{
    lopt_arch a;
    lopt_arch_preset(&a, preset, NULL);
    a.form = LOPT_FORM_NOMINAL;
    a.nominal_dir = (lopt_nominal_dir)dir;
    a.nominal_mom = mom;
    a.nominal_step = 3e-3f;
    char label[64];
    snprintf(label, sizeof label, "nominal(%s, %s %d%s)", preset,
             dir == LOPT_NOMINAL_GRAD ? "grad" : "mom", mom, noise ? "" : ", untrained");
    LOPT_ASSERT(lopt_arch_validate(&a, NULL) == LOPT_OK);
    vjp_check_arch(label, a, t, noise);
}

/* With no noise, lopt_theta_normalized(feature, gain) must give exactly
 * delta = -step_mult * gain * x / sqrt(1e-5 + mean_tensor(x^2)) for x = g or the
 * updated momentum m_k, tensor by tensor, at any t (time features unused). */
static void normalized_check(const char *preset, int feature, float gain, int64_t t)
{
    lopt_arch a;
    lopt_arch_preset(&a, preset, NULL);
    lopt_mlp_work wk;
    lopt_mlp_work_init(&wk, &a, N, 2);
    float *theta = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_normalized(&a, feature, gain, 0.0f, 1, theta);
    float g[N], w[N], m[LOPT_MAX_MOM * N], delta[N];
    lopt_rng_fill_normal(g, N, 1.0f, 21, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(w, N, 0.5f, 22, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(m, (size_t)a.nmom * N, 0.3f, 23, LOPT_STREAM_TEST, 0);
    lopt_mlp_update(&wk, theta, tensors, 2, w, g, m, t, delta);
    /* m is now the updated momenta: the feature the optimizer reads */
    const float *x = feature == 0 ? g : m + (size_t)(feature - 2) * N;
    double got[N], want[N];
    for (int k = 0; k < 2; k++) {
        size_t lo = tensors[k].offset, n = tensors[k].size;
        double ms = 0;
        for (size_t i = lo; i < lo + n; i++) ms += (double)x[i] * x[i];
        double rms = sqrt(1e-5 + ms / (double)n);
        for (size_t i = lo; i < lo + n; i++) {
            got[i] = delta[i];
            want[i] = -(double)a.step_mult * gain * x[i] / rms;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "%s normalised feature %d gain %g t=%lld", preset, feature,
             gain, (long long)t);
    check_close(name, got, want, N, 1e-4, 1e-9);
    lopt_free(theta);
    lopt_mlp_work_free(&wk);
}

/* The hand-designed step, computed here from its definition: the momenta updated
 * m = beta m + (1 - beta) g in float, then per tensor u = v * rs with
 * rs = (float)(1 / sqrt(1e-5 + mean(v^2))) (mean accumulated in double in index
 * order), delta = -step * u. want32 (n) gets it in float, want64 (n) the same in
 * double throughout (rs not rounded). */
static void hand_designed(const lopt_arch *a, const float *g, const float *m_old, float step,
                          float *want32, double *want64)
{
    float m[LOPT_MAX_MOM * N];
    for (int k = 0; k < a->nmom; k++)
        for (int i = 0; i < N; i++)
            m[k * N + i] = a->beta[k] * m_old[k * N + i] + (1.0f - a->beta[k]) * g[i];
    const float *v = a->nominal_dir == LOPT_NOMINAL_GRAD ? g : m + a->nominal_mom * N;
    for (int T = 0; T < 2; T++) {
        size_t lo = tensors[T].offset, n = tensors[T].size;
        double ms = 0;
        for (size_t i = lo; i < lo + n; i++) ms += (double)v[i] * v[i];
        double r = 1.0 / sqrt(1e-5 + ms / (double)n);
        float rs = (float)r;
        for (size_t i = lo; i < lo + n; i++) {
            want32[i] = -step * (v[i] * rs);
            want64[i] = -(double)step * v[i] * r;
        }
    }
}

/* An untrained nominal optimizer (lopt_theta_init: random hidden layer, zero output
 * layer, zero schedule) makes exactly the hand-designed step: bit for bit equal to
 * the float recipe above, and to 1e-6 of the double one; then a non-zero schedule
 * scales it by exp(b + sum_j a_j tanh(t / tau_j - 1)). */
static void nominal_exact_check(int dir, int mom, int64_t t)
{
    lopt_arch a;
    lopt_arch_preset(&a, "nominal", NULL);
    a.nominal_dir = (lopt_nominal_dir)dir;
    a.nominal_mom = mom;
    LOPT_ASSERT(lopt_arch_validate(&a, NULL) == LOPT_OK);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np);
    lopt_theta_init(&a, 77 + (uint64_t)t, theta);
    lopt_mlp_work wk;
    lopt_mlp_work_init(&wk, &a, N, 2);
    float g[N], w[N], m_old[LOPT_MAX_MOM * N], m[LOPT_MAX_MOM * N], delta[N], want32[N];
    double want64[N], got[N];
    lopt_rng_fill_normal(g, N, 1.0f, 31, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(w, N, 0.5f, 32, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(m_old, (size_t)a.nmom * N, 0.3f, 33, LOPT_STREAM_TEST, 0);
    memcpy(m, m_old, sizeof(float) * a.nmom * N);
    lopt_mlp_update(&wk, theta, tensors, 2, w, g, m, t, delta);
    hand_designed(&a, g, m_old, a.nominal_step, want32, want64);
    int same = memcmp(delta, want32, sizeof delta) == 0;
    CHECK(same, "nominal (%s %d) t=%lld untrained: delta is not bit for bit the hand-designed "
          "step (delta[0] %.9g want %.9g)", dir ? "mom" : "grad", mom, (long long)t, delta[0],
          want32[0]);
    if (same)
        printf("ok   nominal (%s %d) t=%lld untrained = hand-designed step, bit for bit\n",
               dir ? "mom" : "grad", mom, (long long)t);
    char name[96];
    for (int i = 0; i < N; i++) got[i] = delta[i];
    snprintf(name, sizeof name, "nominal (%s %d) t=%lld untrained vs the step in double",
             dir ? "mom" : "grad", mom, (long long)t);
    check_close(name, got, want64, N, 1e-6, 0);

    /* a schedule: delta = exp(sched(t)) * the same step */
    float *sc = theta + lopt_arch_schedule_offset(&a);
    lopt_rng_fill_normal(sc, (size_t)a.ntime + 1, 0.5f, 34, LOPT_STREAM_TEST, 0);
    double sched = sc[a.ntime];
    for (int j = 0; j < a.ntime; j++) sched += sc[j] * tanh((double)t / a.tau[j] - 1.0);
    CHECK(fabs(lopt_arch_schedule(&a, theta, t) - sched) < 1e-5 * (1 + fabs(sched)),
          "lopt_arch_schedule %g, want %g", lopt_arch_schedule(&a, theta, t), sched);
    memcpy(m, m_old, sizeof(float) * a.nmom * N);
    lopt_mlp_update(&wk, theta, tensors, 2, w, g, m, t, delta);
    for (int i = 0; i < N; i++) {
        got[i] = delta[i];
        want64[i] *= exp(sched);
    }
    snprintf(name, sizeof name, "nominal (%s %d) t=%lld with a schedule: exp(sched(t)) x step",
             dir ? "mom" : "grad", mom, (long long)t);
    check_close(name, got, want64, N, 1e-5, 0);
    lopt_free(theta);
    lopt_mlp_work_free(&wk);
}

static void nominal_arch_checks(void)
{
    lopt_arch p, a;
    lopt_arch_preset(&p, "paper", NULL);
    CHECK(lopt_arch_preset(&a, "nominal", NULL) == LOPT_OK && a.form == LOPT_FORM_NOMINAL &&
          a.nominal_dir == LOPT_NOMINAL_MOM && a.beta[a.nominal_mom] == 0.9f &&
          a.nominal_step == 3e-3f, "nominal preset: normalised momentum 0.9 at 3e-3");
    CHECK(lopt_arch_nparams(&a) == 620 && lopt_arch_schedule_offset(&a) == 610 &&
          lopt_arch_output_offset(&a) == 544, "nominal layout: %zu weights, schedule at %zu, "
          "output layer at %zu", lopt_arch_nparams(&a), lopt_arch_schedule_offset(&a),
          lopt_arch_output_offset(&a));
    CHECK(p.form == LOPT_FORM_MLP && lopt_arch_schedule_offset(&p) == 610 &&
          lopt_arch_schedule(&p, NULL, 5) == 0.0f, "paper: mlp form, no schedule");
    CHECK(lopt_arch_validate(&a, NULL) == LOPT_OK && !lopt_arch_equal(&a, &p) &&
          lopt_arch_equal(&a, &a), "nominal validates and differs from paper");
    /* the same hidden layer draws as paper's; the output layer and schedule zero */
    float tp[610], tn[620];
    lopt_theta_init(&p, 5, tp);
    lopt_theta_init(&a, 5, tn);
    int zero = 1;
    for (int i = 544; i < 620; i++) zero &= tn[i] == 0.0f;
    CHECK(memcmp(tp, tn, 544 * sizeof(float)) == 0 && zero,
          "nominal theta_init: paper's hidden layer, zero output layer and schedule");
    /* range checks */
    lopt_arch b = a;
    b.nominal_mom = 5;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "nominal momentum 5 of 5 accepted");
    b = a;
    b.nominal_mom = -1;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "nominal momentum -1 accepted");
    b = a;
    b.nominal_step = 0;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "nominal step 0 accepted");
    b.nominal_step = NAN;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "nominal step NaN accepted");
    b = a;
    b.nominal_dir = (lopt_nominal_dir)3;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "nominal direction 3 accepted");
    b.nominal_dir = LOPT_NOMINAL_ADAM;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_OK, "the adam direction refused");
    b = a;
    b.nominal_dir = LOPT_NOMINAL_GRAD;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "gradient direction with momentum "
          "index 1 accepted");
    b.nominal_mom = 0;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_OK, "gradient direction refused");
    b = a;
    b.form = (lopt_form)2;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "form 2 accepted");
    b = p;
    b.nominal_step = 3e-3f;
    CHECK(lopt_arch_validate(&b, NULL) == LOPT_EFORMAT, "mlp form with a nominal step accepted");
    b = a;
    b.nominal_step = 1e-3f;
    CHECK(!lopt_arch_equal(&a, &b), "arch_equal ignores nominal_step");
}

static void mask_checks(void)
{
    lopt_arch p, a;
    lopt_arch_preset(&p, "paper", NULL);
    lopt_arch_preset(&a, "nominal", NULL);
    unsigned char mask[620];
    size_t k = 0;
    lopt_err err = {0};
    struct { const char *which; size_t from; } want[] = {{"all", 0}, {"nominal", 544},
                                                         {"schedule", 610}};
    for (int c = 0; c < 3; c++) {
        memset(mask, 7, sizeof mask);
        lopt_status st = lopt_arch_train_mask(&a, want[c].which, mask, &k, &err);
        int ok = st == LOPT_OK && k == 620 - want[c].from;
        for (size_t i = 0; i < 620; i++) ok &= mask[i] == (i >= want[c].from);
        CHECK(ok, "nominal --train %s: status %d, %zu coordinates (want %zu) or a wrong mask",
              want[c].which, (int)st, k, 620 - want[c].from);
    }
    CHECK(lopt_arch_train_mask(&a, "schedule", mask, NULL, &err) == LOPT_OK,
          "ntrain may be NULL");
    memset(mask, 7, sizeof mask);
    CHECK(lopt_arch_train_mask(&p, "all", mask, &k, &err) == LOPT_OK && k == 610 &&
          mask[0] == 1 && mask[609] == 1 && mask[610] == 7, "paper --train all");
    memset(mask, 7, sizeof mask);
    k = 99;
    CHECK(lopt_arch_train_mask(&p, "schedule", mask, &k, &err) == LOPT_EUSAGE &&
          strstr(err.msg, "nominal form") && mask[0] == 7 && k == 99,
          "paper --train schedule: %s", err.msg);
    CHECK(lopt_arch_train_mask(&p, "nominal", mask, &k, &err) == LOPT_EUSAGE,
          "paper --train nominal accepted");
    CHECK(lopt_arch_train_mask(&a, "mlp", mask, &k, &err) == LOPT_EUSAGE &&
          strstr(err.msg, "schedule|nominal|all"), "unknown set: %s", err.msg);
}


/* nominal-adam, untrained (zero residual, zero schedule), is torch's Adam at lr
 * nominal_step: the same trajectory as lopt's Adam (torch.optim semantics, checked
 * against torch in test_optim) over 30 steps of random gradients */
/* lopt_mlp_adam_dir_fast against the scalar loop of mlp_lopt.c's nominal_adam on the
 * same inputs, bit for bit: without a residual and with one (the MLP's (n,2) outputs
 * read in lanes), at lengths with every tail (n % 16 = 0..15, n < 8) */
static void adam_dir_lanes(void)
{
    if (!nn_isa_supported(NN_ISA_AVX512)) return;
    const size_t NMAX = 300;
    float *mk = lopt_floats(NMAX), *g = lopt_floats(NMAX), *v0 = lopt_floats(NMAX), *out = lopt_floats(2 * NMAX),
          *e = lopt_floats(NMAX), *v[2], *d[2];
    lopt_rng_fill_normal(mk, NMAX, 0.1f, 41, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(g, NMAX, 1.0f, 42, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(v0, NMAX, 1.0f, 43, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(out, 2 * NMAX, 0.5f, 44, LOPT_STREAM_TEST, 0);
    for (size_t i = 0; i < NMAX; i++) v0[i] *= v0[i], e[i] = expf(0.5f * out[2 * i + 1]);
    const float b2 = 0.999f, step = -3e-3f, root_bc2 = 0.1f, eps = 1e-8f, smult = 1e-3f;
    static const size_t lens[] = {1, 5, 7, 8, 9, 15, 16, 17, 31, 300};
    size_t bad = 0, ran = 0;
    for (int r = 0; r < 2; r++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            const size_t n = lens[li];
            for (int k = 0; k < 2; k++) {
                v[k] = lopt_floats(n);
                d[k] = lopt_floats(n);
                memcpy(v[k], v0, n * sizeof(float));
            }
            const float *o = r ? out : NULL;
            nn_isa old = nn_isa_force(NN_ISA_AVX512);
            ran += lopt_mlp_adam_dir_fast(d[1], v[1], mk, g, o, e, n, b2, step, root_bc2, eps,
                                          smult) != 0;
            nn_isa_force(old);
            for (size_t i = 0; i < n; i++) {
                v[0][i] = b2 * v[0][i] + (1.0f - b2) * g[i] * g[i];
                float u = mk[i] / (sqrtf(v[0][i]) / root_bc2 + eps);
                d[0][i] = o ? step * u - smult * o[2 * i] * e[i] : step * u;
            }
            bad += memcmp(v[0], v[1], n * sizeof(float)) != 0 ||
                   memcmp(d[0], d[1], n * sizeof(float)) != 0;
            for (int k = 0; k < 2; k++) lopt_free(v[k]), lopt_free(d[k]);
        }
    CHECK(ran == 20 && bad == 0, "Adam direction lanes: %zu of 20 runs took the lanes, %zu differ "
          "from the scalar loop", ran, bad);
    printf("ok   Adam direction lanes == scalar loop bit for bit (with and without a residual, "
           "10 lengths)\n");
    float *f[] = {mk, g, v0, out, e};
    for (size_t i = 0; i < 5; i++) lopt_free(f[i]);
}

static void nominal_adam_is_adam(void)
{
    lopt_arch a;
    lopt_arch_preset(&a, "nominal-adam", NULL);
    CHECK(lopt_arch_state_rows(&a) == a.nmom + 1 && !lopt_arch_has_vjp(&a),
          "nominal-adam: %d state rows, vjp %d", lopt_arch_state_rows(&a), lopt_arch_has_vjp(&a));
    enum { NW = 300, STEPS = 30 };
    lopt_tensor t[2] = {{"w", 0, 200, 10}, {"b", 200, 100, 0}};
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np), *w1 = lopt_floats(NW), *w2 = lopt_floats(NW),
          *g = lopt_floats(NW);
    lopt_theta_init(&a, 3, theta);
    lopt_optimizer lo, ad;
    lopt_hparams hp;
    lopt_hparams_default(&hp, "adam", NULL);
    hp.lr = a.nominal_step;
    CHECK(lopt_learned_create(&lo, &a, theta, t, 2, NW, NULL) == LOPT_OK &&
          lopt_optimizer_create(&ad, "adam", &hp, NW, NULL) == LOPT_OK, "create");
    lopt_rng_fill_normal(w1, NW, 1.0f, 4, LOPT_STREAM_TEST, 0);
    memcpy(w2, w1, NW * sizeof(float));
    double got[NW], want[NW];
    for (int k = 0; k < STEPS; k++) {
        /* gradients of varied scale per coordinate, so v matters */
        lopt_rng_fill_normal(g, NW, 1.0f, 5, LOPT_STREAM_TEST, (uint64_t)k * NW);
        for (int i = 0; i < NW; i++) g[i] *= (float)(1 + i % 7) * (float)(1 + k % 3);
        lo.step(&lo, w1, g);
        ad.step(&ad, w2, g);
    }
    for (int i = 0; i < NW; i++) {
        got[i] = w1[i];
        want[i] = w2[i];
    }
    check_close("untrained nominal-adam = Adam at lr nominal_step (30 steps)", got, want, NW,
                1e-5, 1e-7);
    lo.free(&lo);
    ad.free(&ad);

    /* A zero output layer skips the MLP (its residual is exactly 0). The same theta
     * with one output weight at 1e-30 runs the MLP, whose residual (~1e-33) is far
     * below half an ulp of the Adam step: both must give identical weights. */
    lopt_optimizer skip, full;
    float *theta2 = lopt_floats(np);
    memcpy(theta2, theta, np * sizeof(float));
    theta2[lopt_arch_output_offset(&a)] = 1e-30f;
    CHECK(lopt_learned_create(&skip, &a, theta, t, 2, NW, NULL) == LOPT_OK &&
          lopt_learned_create(&full, &a, theta2, t, 2, NW, NULL) == LOPT_OK, "create");
    lopt_rng_fill_normal(w1, NW, 1.0f, 4, LOPT_STREAM_TEST, 0);
    memcpy(w2, w1, NW * sizeof(float));
    for (int k = 0; k < STEPS; k++) {
        lopt_rng_fill_normal(g, NW, 1.0f, 5, LOPT_STREAM_TEST, (uint64_t)k * NW);
        skip.step(&skip, w1, g);
        full.step(&full, w2, g);
    }
    CHECK(memcmp(w1, w2, NW * sizeof(float)) == 0,
          "nominal-adam: the zero-residual shortcut changed the update");
    skip.free(&skip);
    full.free(&full);

    /* the Adam direction's AVX-512 loop (mlp_fast.c) is the scalar loop bit for bit
     * (the residual's branch: adam_dir_lanes below) */
    if (nn_isa_supported(NN_ISA_AVX512)) {
        lopt_optimizer on[2];
        float *w[2] = {w1, w2};
        for (int k = 0; k < 2; k++)
            CHECK(lopt_learned_create(&on[k], &a, theta, t, 2, NW, NULL) == LOPT_OK, "create");
        lopt_rng_fill_normal(w1, NW, 1.0f, 4, LOPT_STREAM_TEST, 0);
        memcpy(w2, w1, NW * sizeof(float));
        for (int s = 0; s < STEPS; s++) {
            lopt_rng_fill_normal(g, NW, 1.0f, 5, LOPT_STREAM_TEST, (uint64_t)s * NW);
            for (int k = 0; k < 2; k++) {
                nn_isa old = nn_isa_force(k ? NN_ISA_AVX512 : NN_ISA_SSE);
                on[k].step(&on[k], w[k], g);
                nn_isa_force(old);
            }
        }
        CHECK(memcmp(w1, w2, NW * sizeof(float)) == 0,
              "nominal-adam: the AVX-512 Adam direction differs from the scalar loop");
        for (int k = 0; k < 2; k++) on[k].free(&on[k]);
    }
    lopt_free(theta2);
    lopt_free(theta); lopt_free(w1); lopt_free(w2); lopt_free(g);
}

/* The lane-parallel forward (mlp_fast.c, on AVX-512) against the generic one on
 * fmnist-cnn's tensor layout (a tensor of 10, not a multiple of the 8 lanes): the
 * same momenta, normalisers and normalised features bit for bit, hidden
 * activations, outputs and update to rounding (fused multiply-adds, other sum
 * orders); and the same bits when called again. */
static void fast_vs_generic(void)
{
    static const lopt_tensor cnn[] = {{"c1", 0, 144, 9},       {"b1", 144, 16, 0},
                                      {"c2", 160, 4608, 144},  {"b2", 4768, 32, 0},
                                      {"c3", 4800, 9216, 288}, {"b3", 14016, 32, 0},
                                      {"fc", 14048, 320, 32},  {"bf", 14368, 10, 0}};
    const size_t n = 14378;
    if (!nn_isa_supported(NN_ISA_AVX512)) {
        printf("skip lane-parallel forward (no AVX-512)\n");
        return;
    }
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    size_t np = lopt_arch_nparams(&a), M = (size_t)a.nmom;
    float *theta = lopt_floats(np), *g = lopt_floats(n), *w = lopt_floats(n);
    lopt_theta_init(&a, 5, theta);
    lopt_rng_fill_normal(g, n, 0.1f, 31, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(w, n, 0.3f, 32, LOPT_STREAM_TEST, 0);
    float *m0 = lopt_floats(M * n);
    lopt_rng_fill_normal(m0, M * n, 0.05f, 33, LOPT_STREAM_TEST, 0);
    lopt_mlp_work wk[3];
    float *m[3], *delta[3];
    const nn_isa isa[3] = {NN_ISA_AVX2, NN_ISA_AVX512, NN_ISA_AVX512};   /* generic, fast, fast */
    for (int k = 0; k < 3; k++) {
        lopt_mlp_work_init(&wk[k], &a, n, 8);
        m[k] = lopt_floats(M * n);
        memcpy(m[k], m0, M * n * sizeof(float));
        delta[k] = lopt_floats(n);
        nn_isa old = nn_isa_force(isa[k]);
#ifdef _OPENMP
        int th = omp_get_max_threads();
        if (k == 2) omp_set_num_threads(1);
#endif
        lopt_mlp_update(&wk[k], theta, cnn, 8, w, g, m[k], 40, delta[k]);
#ifdef _OPENMP
        omp_set_num_threads(th);
#endif
        nn_isa_force(old);
    }
    CHECK(memcmp(wk[0].x, wk[1].x, n * 7 * sizeof(float)) == 0,
          "lane-parallel forward: features differ from the generic");
    CHECK(memcmp(m[0], m[1], M * n * sizeof(float)) == 0 &&
              memcmp(wk[0].scale, wk[1].scale, 8 * 7 * sizeof(float)) == 0,
          "one-pass momenta and normalisers differ from the generic loops");
    double *got = calloc(35 * n, sizeof(double)), *want = calloc(35 * n, sizeof(double));
    for (size_t i = 0; i < 32 * n; i++) got[i] = wk[1].act[0][i], want[i] = wk[0].act[0][i];
    check_close("lane-parallel forward: hidden activations vs generic", got, want, 32 * n, 1e-5,
                1e-6);
    for (size_t i = 0; i < 2 * n; i++) got[i] = wk[1].act[1][i], want[i] = wk[0].act[1][i];
    for (size_t i = 0; i < n; i++) got[2 * n + i] = delta[1][i], want[2 * n + i] = delta[0][i];
    check_close("lane-parallel forward: outputs and update vs generic", got, want, 3 * n, 1e-5,
                1e-6);
    CHECK(memcmp(delta[1], delta[2], n * sizeof(float)) == 0 &&
              memcmp(wk[1].act[0], wk[2].act[0], n * 32 * sizeof(float)) == 0,
          "lane-parallel forward: not reproducible");
    /* the update without the VJP's activations (the forward steps of an unroll): the
     * same update and momenta bit for bit */
    {
        lopt_mlp_work wf;
        lopt_mlp_work_init(&wf, &a, n, 8);
        float *mf = lopt_floats(M * n), *df = lopt_floats(n);
        memcpy(mf, m0, M * n * sizeof(float));
        nn_isa old = nn_isa_force(NN_ISA_AVX512);
        lopt_mlp_update_fwd(&wf, theta, cnn, 8, w, g, mf, 40, df);
        nn_isa_force(old);
        CHECK(memcmp(df, delta[1], n * sizeof(float)) == 0 &&
                  memcmp(mf, m[1], M * n * sizeof(float)) == 0,
              "lopt_mlp_update_fwd differs from lopt_mlp_update");
        lopt_mlp_work_free(&wf);
        lopt_free(mf);
        lopt_free(df);
    }
    /* layer 0's ReLU mask with its column sums in lanes: the generic loops' bits */
    {
        const int H = 32;
        float *dz = lopt_floats((size_t)H * n), *dz2 = lopt_floats((size_t)H * n),
              *act = lopt_floats((size_t)H * n), cs[32], cs2[32] = {0};
        lopt_rng_fill_normal(dz, (size_t)H * n, 1.0f, 35, LOPT_STREAM_TEST, 0);
        lopt_rng_fill_normal(act, (size_t)H * n, 1.0f, 36, LOPT_STREAM_TEST, 0);
        memcpy(dz2, dz, (size_t)H * n * sizeof(float));
        nn_isa old = nn_isa_force(NN_ISA_AVX512);
        int lanes = lopt_mlp_relu_colsum(dz, act, n, H, cs);
        nn_isa_force(old);
        for (size_t i = 0; i < (size_t)H * n; i++) dz2[i] = act[i] > 0.0f ? dz2[i] : 0.0f;
        for (size_t i = 0; i < n; i++)
            for (int h = 0; h < H; h++) cs2[h] += dz2[i * H + h];
        CHECK(lanes && memcmp(dz, dz2, (size_t)H * n * sizeof(float)) == 0 &&
                  memcmp(cs, cs2, sizeof cs) == 0,
              "ReLU mask + column sums in lanes differ from the generic loops (lanes %d)", lanes);
        lopt_free(dz);
        lopt_free(dz2);
        lopt_free(act);
    }
    /* the VJP: the paper shape's register pass (mlp_fast.c) against the generic one
     * through src/nn's dense layers, each after its own forward above */
    float *ddelta = lopt_floats(n);
    lopt_rng_fill_normal(ddelta, n, 1.0f, 34, LOPT_STREAM_TEST, 0);
    float *dth[2], *dgr[2], *dwr[2], *dmr[2];
    for (int k = 0; k < 2; k++) {
        dth[k] = lopt_floats(np), dgr[k] = lopt_floats(n), dwr[k] = lopt_floats(n);
        dmr[k] = lopt_floats(M * n);
        nn_isa old = nn_isa_force(isa[k]);
        lopt_mlp_vjp(&wk[k], theta, cnn, 8, w, g, m[k], 40, delta[k], ddelta, dth[k], dgr[k],
                     dwr[k], dmr[k]);
        nn_isa_force(old);
    }
    double *vg = calloc(np + (3 + M) * n, sizeof(double)), *vw = calloc(np + (3 + M) * n,
                                                                          sizeof(double));
    size_t nv = 0;
    for (size_t i = 0; i < np; i++, nv++) vg[nv] = dth[1][i], vw[nv] = dth[0][i];
    for (size_t i = 0; i < n; i++, nv++) vg[nv] = dgr[1][i], vw[nv] = dgr[0][i];
    for (size_t i = 0; i < n; i++, nv++) vg[nv] = dwr[1][i], vw[nv] = dwr[0][i];
    for (size_t i = 0; i < M * n; i++, nv++) vg[nv] = dmr[1][i], vw[nv] = dmr[0][i];
    check_close("register-pass VJP vs generic (theta, g, w, momenta)", vg, vw, nv, 1e-4, 1e-6);
    for (int k = 0; k < 2; k++) {
        lopt_free(dth[k]);
        lopt_free(dgr[k]);
        lopt_free(dwr[k]);
        lopt_free(dmr[k]);
    }
    lopt_free(ddelta);
    free(vg);
    free(vw);
    free(got);
    free(want);
    for (int k = 0; k < 3; k++) {
        lopt_mlp_work_free(&wk[k]);
        lopt_free(m[k]);
        lopt_free(delta[k]);
    }
    lopt_free(theta);
    lopt_free(g);
    lopt_free(w);
    lopt_free(m0);
}

/* init-lopt --schedule: the fit reproduces what it is asked for within the error it
 * reports; a constant schedule is represented exactly (b alone), and a cosine with a
 * warm-up closely enough to be a warm start (within a factor 2 everywhere above the
 * floor, the fit's error concentrated at its two ends). */
static void schedule_fit_checks(void)
{
    lopt_arch a;
    lopt_arch_preset(&a, "nominal-adam", NULL);
    size_t np = lopt_arch_nparams(&a), off = lopt_arch_schedule_offset(&a);
    float *theta = lopt_floats(np), *before = lopt_floats(np);
    lopt_theta_init(&a, 4, theta);
    memcpy(before, theta, np * sizeof(float));
    lopt_schedule constant = {LOPT_SCHED_CONST, 0, 500};
    double worst = lopt_theta_fit_schedule(&a, &constant, 2 * a.nominal_step, 0.01, theta);
    double at0 = lopt_arch_schedule(&a, theta, 0), at499 = lopt_arch_schedule(&a, theta, 499);
    CHECK(worst < 1e-3 && fabs(at0 - log(2.0)) < 1e-3 && fabs(at499 - log(2.0)) < 1e-3,
          "constant 2x step: sched(0) %g, sched(499) %g (want log 2), worst error %g", at0,
          at499, worst);
    CHECK(memcmp(theta, before, off * sizeof(float)) == 0,
          "fitting the schedule changed the MLP's weights");
    lopt_schedule cosine = {LOPT_SCHED_COSINE, 100, 2000};
    const double peak = 1e-2, floor_frac = 0.01;
    worst = lopt_theta_fit_schedule(&a, &cosine, peak, floor_frac, theta);
    double seen = 0, above = 0;
    for (int64_t t = 0; t < cosine.steps; t++) {
        double want = log(peak / a.nominal_step *
                          fmax(lopt_schedule_factor(&cosine, t + 1), floor_frac));
        double err = fabs(lopt_arch_schedule(&a, theta, t) - want);
        seen = fmax(seen, err);
        if (lopt_schedule_factor(&cosine, t + 1) > 0.05) above = fmax(above, err);
    }
    CHECK(fabs(seen - worst) < 1e-4, "cosine fit reports error %g, measured %g", worst, seen);
    CHECK(above < log(2.0), "cosine fit: off by a factor %g where the schedule is above 5%% "
          "of its peak", exp(above));
    printf("ok   cosine schedule fit: worst factor %.3g, %.3g above 5%% of the peak\n",
           exp(worst), exp(above));
    lopt_free(theta);
    lopt_free(before);
}

int main(void)
{
    lopt_arch a;
    CHECK(lopt_arch_preset(&a, "paper", NULL) == LOPT_OK && lopt_arch_nparams(&a) == 610,
          "paper preset has %zu weights, want 610", lopt_arch_nparams(&a));
    CHECK(lopt_arch_inputs(&a) == 16, "paper preset has %d inputs", lopt_arch_inputs(&a));
    CHECK(lopt_arch_preset(&a, "lo", NULL) == LOPT_OK && lopt_arch_nparams(&a) == 1762,
          "lo preset has %zu weights, want 1762", lopt_arch_nparams(&a));
    CHECK(lopt_arch_inputs(&a) == 19, "lo preset has %d inputs", lopt_arch_inputs(&a));
    CHECK(lopt_arch_preset(&a, "big", NULL) == LOPT_EUSAGE, "unknown preset accepted");
    vjp_check("paper", 0);
    vjp_check("paper", 57);
    vjp_check("lo", 7);
    normalized_check("paper", 0, 1.0f, 0);
    normalized_check("paper", 3, 3.0f, 500);
    normalized_check("lo", 4, 2.0f, 9);
    vjp_check("nominal", 0);
    vjp_check("nominal", 450);
    vjp_check_nominal("paper", LOPT_NOMINAL_GRAD, 0, 31, 0.1f);
    vjp_check_nominal("paper", LOPT_NOMINAL_MOM, 1, 31, 0.0f);   /* as initialised */
    vjp_check_nominal("lo", LOPT_NOMINAL_MOM, 3, 7, 0.1f);
    nominal_arch_checks();
    nominal_exact_check(LOPT_NOMINAL_MOM, 1, 0);
    nominal_exact_check(LOPT_NOMINAL_MOM, 4, 1234);
    nominal_exact_check(LOPT_NOMINAL_GRAD, 0, 20);
    mask_checks();
    nominal_adam_is_adam();
    adam_dir_lanes();
    schedule_fit_checks();
    fast_vs_generic();
    /* the kink rule must not hollow the test out */
    printf("finite differences: %d of %d straddled a ReLU kink (skipped)\n", skipped,
           differenced);
    CHECK(skipped * 20 < differenced, "too many kink skips: %d of %d", skipped, differenced);
    return check_done("test_lopt");
}
