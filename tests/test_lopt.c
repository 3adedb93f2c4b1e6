/* test_lopt.c - the learned optimizer (mlp-lopt): parameter counts of the presets,
 * and its VJP with respect to theta and every input (g, w, the momenta before the
 * update) against central finite differences, for both presets; and that the
 * hand-designed starting points (lopt_theta_normalized) are the optimizers they claim. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
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

static void vjp_check(const char *preset, int64_t t)
{
    lopt_arch a;
    lopt_arch_preset(&a, preset, NULL);
    /* larger multipliers than the presets' so the outputs are O(1) and the float32
     * finite differences resolve every path, the exp(s) one included */
    a.step_mult = 0.5f;
    a.exp_mult = 0.3f;
    fixture fx = {.a = &a, .t = t};
    lopt_mlp_work_init(&fx.wk, &a, N, 2);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np), *dtheta = lopt_floats(np);
    lopt_theta_init(&a, 11, theta);
    /* non-zero biases so every ReLU sits away from its kink in a known way */
    for (size_t i = 0; i < np; i++)
        theta[i] += 0.1f * (float)lopt_rng_normal(12, LOPT_STREAM_TEST, i);
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

/* The lane-parallel forward (mlp_fast.c, on AVX-512) against the generic one on
 * fmnist-cnn's tensor layout: the same normalised features bit for bit, hidden
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
    fast_vs_generic();
    /* the kink rule must not hollow the test out */
    printf("finite differences: %d of %d straddled a ReLU kink (skipped)\n", skipped,
           differenced);
    CHECK(skipped * 20 < differenced, "too many kink skips: %d of %d", skipped, differenced);
    return check_done("test_lopt");
}
