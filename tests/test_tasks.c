/* test_tasks.c - the standard tasks: parameter counts, and fmnist8-mlp and
 * fmnist-cnn loss, gradient and Hessian-vector product against PyTorch (double
 * backward in float64) on identical weights and batch, with a bounded relative
 * error; the HVP symmetry u^T(Hv) = v^T(Hu); quadratic's exact HVP; determinism of
 * initialisation and batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "nn/nn.h"
#include "refio.h"
#include "optim/optim.h"
#include "tasks/task.h"

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* Compares a float32 result against a float64 reference: relative error per
 * element, with an absolute floor at 1e-4 of the array's largest entry (float32
 * sums of ~1e4 terms cannot resolve entries far below that). */
static void compare(const char *name, const float *got, const ref_array *want)
{
    double *g = to_double(got, want->n);
    check_close(name, g, want->v, want->n, 2e-3, 1e-4 * max_abs(want->v, want->n));
    free(g);
}

static void against_torch(const ref_file *rf, const char *name, const char *tag)
{
    char key[128];
#define REF(k) (snprintf(key, sizeof key, "%s/%s", name, k), ref_get(rf, key, 0))
    const ref_array *w = REF("w"), *x = REF("x"), *y = REF("y"), *v = REF("v"),
                    *loss = REF("loss"), *grad = REF("grad"), *hv = REF("hv");
#undef REF
    CHECK(w && x && y && v && loss && grad && hv, "%s: fixture incomplete", name);
    if (!(w && x && y && v && loss && grad && hv)) return;
    int B = (int)y->n;
    lopt_task t;
    lopt_err err = {0};
    lopt_task_opts o = {.batch = B};
    if (lopt_task_create(&t, name, &o, &err) != LOPT_OK) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    CHECK(t.n == w->n, "%s: %zu params, torch has %zu", name, t.n, w->n);
    if (t.n != w->n) { t.free(&t); return; }
    float *wf = lopt_floats(t.n), *vf = lopt_floats(t.n), *g = lopt_floats(t.n),
          *h = lopt_floats(t.n), *g2 = lopt_floats(t.n);
    for (size_t i = 0; i < t.n; i++) { wf[i] = (float)w->v[i]; vf[i] = (float)v->v[i]; }
    lopt_batch b;
    lopt_batch_alloc(&b, &t, B);
    b.B = B;
    for (size_t i = 0; i < x->n; i++) b.x[i] = (float)x->v[i];
    for (int i = 0; i < B; i++) b.y[i] = (int32_t)y->v[i];

    double l = t.loss_grad(&t, wf, &b, g);
    char nm[160];
    snprintf(nm, sizeof nm, "%s%s loss vs torch", name, tag);
    check_close(nm, &l, loss->v, 1, 1e-5, 0);
    snprintf(nm, sizeof nm, "%s%s gradient vs torch", name, tag);
    compare(nm, g, grad);
    double l2 = t.hvp(&t, wf, &b, vf, h, g2);
    snprintf(nm, sizeof nm, "%s%s HVP vs torch double-backward", name, tag);
    compare(nm, h, hv);
    CHECK(l2 == l && memcmp(g, g2, t.n * sizeof(float)) == 0,
          "%s: hvp's loss/gradient differ from loss_grad's", name);
    /* the loss without a gradient is the same number */
    CHECK(t.loss_grad(&t, wf, &b, NULL) == l, "%s: loss without gradient differs", name);

    /* 20 Adam steps on the same batch: the same losses and weights as torch.optim */
    const ref_array *tl = ref_get(rf, (snprintf(key, sizeof key, "%s/train_losses", name), key), 0);
    const ref_array *tw = ref_get(rf, (snprintf(key, sizeof key, "%s/train_w", name), key), t.n);
    if (tl && tw) {
        lopt_optimizer opt;
        lopt_hparams hp;
        lopt_hparams_default(&hp, "adam", NULL);
        lopt_optimizer_create(&opt, "adam", &hp, t.n, NULL);
        double *losses = calloc(tl->n, sizeof *losses);
        for (size_t k = 0; k < tl->n; k++) {
            losses[k] = t.loss_grad(&t, wf, &b, g);
            opt.step(&opt, wf, g);
        }
        snprintf(nm, sizeof nm, "%s%s 20 Adam steps: losses vs torch.optim", name, tag);
        check_close(nm, losses, tl->v, tl->n, 1e-4, 0);
        snprintf(nm, sizeof nm, "%s%s 20 Adam steps: weights vs torch.optim", name, tag);
        compare(nm, wf, tw);
        free(losses);
        opt.free(&opt);
    }
    lopt_batch_free(&b);
    lopt_free(wf); lopt_free(vf); lopt_free(g); lopt_free(h); lopt_free(g2);
    t.free(&t);
}

/* u^T (H v) = v^T (H u) on the task's own data and initialisation */
static void symmetry(const char *name)
{
    lopt_task t;
    lopt_err err = {0};
    if (lopt_task_create(&t, name, NULL, &err) != LOPT_OK) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    float *w = lopt_floats(t.n), *u = lopt_floats(t.n), *v = lopt_floats(t.n),
          *hu = lopt_floats(t.n), *hv = lopt_floats(t.n);
    t.init(&t, 7, w);
    lopt_rng_fill_normal(u, t.n, 1.0f, 1, LOPT_STREAM_TEST, 0);
    lopt_rng_fill_normal(v, t.n, 1.0f, 2, LOPT_STREAM_TEST, 0);
    lopt_batch b;
    lopt_batch_alloc(&b, &t, t.batch);
    lopt_task_sample(&t, &b, LOPT_SPLIT_TRAIN, 3, 0);
    t.hvp(&t, w, &b, v, hv, NULL);
    t.hvp(&t, w, &b, u, hu, NULL);
    double uhv = 0, vhu = 0, scale = 0;
    for (size_t i = 0; i < t.n; i++) {
        uhv += (double)u[i] * hv[i];
        vhu += (double)v[i] * hu[i];
        scale += fabs((double)u[i] * hv[i]);
    }
    CHECK(fabs(uhv - vhu) <= 1e-4 * scale, "%s: u'Hv = %.8g but v'Hu = %.8g", name, uhv,
          vhu);
    printf("ok   %s symmetry u'Hv=%.6g v'Hu=%.6g\n", name, uhv, vhu);

    /* initialisation and batches are pure functions of their seeds */
    float *w2 = lopt_floats(t.n);
    t.init(&t, 7, w2);
    CHECK(memcmp(w, w2, t.n * sizeof(float)) == 0, "%s: init(7) not deterministic", name);
    t.init(&t, 8, w2);
    CHECK(memcmp(w, w2, t.n * sizeof(float)) != 0, "%s: init(8) == init(7)", name);
    if (t.input > 0) {
        float *x0 = lopt_floats((size_t)t.batch * t.input);
        memcpy(x0, b.x, (size_t)t.batch * t.input * sizeof(float));
        lopt_task_sample(&t, &b, LOPT_SPLIT_TRAIN, 3, 1);
        lopt_task_sample(&t, &b, LOPT_SPLIT_TRAIN, 3, 0);
        CHECK(memcmp(x0, b.x, (size_t)t.batch * t.input * sizeof(float)) == 0,
              "%s: batch (seed 3, step 0) not reproducible", name);
        lopt_free(x0);
    }
    lopt_batch_free(&b);
    lopt_free(w); lopt_free(u); lopt_free(v); lopt_free(hu); lopt_free(hv); lopt_free(w2);
    t.free(&t);
}

/* fmnist-cnn's loss, gradient and H v are the same bits for any thread count: the
 * batch is cut into fixed groups whose partial sums are added in order */
static void thread_count_independent(const char *name)
{
#ifdef _OPENMP
    lopt_task t;
    lopt_err err = {0};
    if (lopt_task_create(&t, name, NULL, &err) != LOPT_OK) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    float *w = lopt_floats(t.n), *v = lopt_floats(t.n);
    float *g[3], *h[3];
    double l[3];
    t.init(&t, 3, w);
    lopt_rng_fill_normal(v, t.n, 1.0f, 4, LOPT_STREAM_TEST, 0);
    lopt_batch b;
    lopt_batch_alloc(&b, &t, t.batch);
    lopt_task_sample(&t, &b, LOPT_SPLIT_TRAIN, 5, 0);
    int threads0 = omp_get_max_threads();
    const int counts[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        g[k] = lopt_floats(t.n);
        h[k] = lopt_floats(t.n);
        omp_set_num_threads(counts[k]);
        l[k] = t.hvp(&t, w, &b, v, h[k], g[k]);
    }
    omp_set_num_threads(threads0);
    for (int k = 1; k < 3; k++)
        CHECK(l[k] == l[0] && memcmp(g[k], g[0], t.n * sizeof(float)) == 0 &&
                  memcmp(h[k], h[0], t.n * sizeof(float)) == 0,
              "%s: loss/gradient/HVP on %d threads differ from 1 thread", name, counts[k]);
    printf("ok   %s: loss, gradient, HVP bitwise equal on 1, 2, 3 threads\n", name);
    for (int k = 0; k < 3; k++) {
        lopt_free(g[k]);
        lopt_free(h[k]);
    }
    lopt_batch_free(&b);
    lopt_free(w);
    lopt_free(v);
    t.free(&t);
#else
    (void)name;
#endif
}

/* A batch object serving many trajectories in turn (its cache of epoch orders
 * full, slots reused) gives the same batches as a fresh object per trajectory. */
static void batch_order_cache(void)
{
    lopt_task t;
    lopt_err err = {0};
    if (lopt_task_create(&t, "fmnist8-mlp", NULL, &err) != LOPT_OK) {
        CHECK(0, "fmnist8-mlp: %s", err.msg);
        return;
    }
    lopt_batch shared, fresh;
    lopt_batch_alloc(&shared, &t, t.batch);
    size_t nx = (size_t)t.batch * t.input;
    int bad = 0;
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < LOPT_BATCH_ORDERS + 3; k++) {
            uint64_t seed = 1000 + (uint64_t)(k * 7 % (LOPT_BATCH_ORDERS + 3));
            lopt_split split = k % 3 == 0 ? LOPT_SPLIT_VALID : LOPT_SPLIT_TRAIN;
            int64_t step = round * 200 + k;   /* round 1 and 2 cross epoch boundaries */
            lopt_task_sample(&t, &shared, split, seed, step);
            lopt_batch_alloc(&fresh, &t, t.batch);
            lopt_task_sample(&t, &fresh, split, seed, step);
            bad += memcmp(shared.x, fresh.x, nx * sizeof(float)) != 0 ||
                   memcmp(shared.y, fresh.y, (size_t)t.batch * sizeof(int32_t)) != 0;
            lopt_batch_free(&fresh);
        }
    CHECK(bad == 0, "batch order cache: %d batches differ from a fresh batch object's", bad);
    printf("ok   batch order cache: %d (split, seed) in turn give the batches of fresh objects\n",
           LOPT_BATCH_ORDERS + 3);
    lopt_batch_free(&shared);
    t.free(&t);
}

static void quadratic(void)
{
    lopt_task t;
    lopt_err err = {0};
    CHECK(lopt_task_create(&t, "quadratic", NULL, &err) == LOPT_OK, "quadratic: %s", err.msg);
    CHECK(t.n == 64, "quadratic has %zu params", t.n);
    float w[64], v[64], hv[64], g[64], gp[64], gm[64], wp[64], wm[64];
    t.init(&t, 5, w);
    lopt_rng_fill_normal(v, 64, 1.0f, 9, LOPT_STREAM_TEST, 0);
    lopt_batch b;
    lopt_batch_alloc(&b, &t, 1);
    lopt_task_sample(&t, &b, LOPT_SPLIT_TRAIN, 1, 0);
    t.hvp(&t, w, &b, v, hv, g);
    /* exact for a quadratic: H v = (g(w + e v) - g(w - e v)) / 2e up to rounding */
    const float e = 1e-2f;
    for (int i = 0; i < 64; i++) { wp[i] = w[i] + e * v[i]; wm[i] = w[i] - e * v[i]; }
    t.loss_grad(&t, wp, &b, gp);
    t.loss_grad(&t, wm, &b, gm);
    double fd[64], got[64];
    for (int i = 0; i < 64; i++) { fd[i] = (gp[i] - gm[i]) / (2.0 * e); got[i] = hv[i]; }
    check_close("quadratic HVP vs finite differences", got, fd, 64, 1e-3, 1e-3);
    lopt_batch_free(&b);
    t.free(&t);
}

int main(void)
{
    const char *build = getenv("LOPT_BUILD") ? getenv("LOPT_BUILD") : "build";
    char path[512];
    snprintf(path, sizeof path, "%s/fixtures/net_ref.bin", build);
    ref_file rf;
    CHECK(ref_load(&rf, path) == 0, "cannot load %s", path);
    against_torch(&rf, "fmnist8-mlp", "");
    against_torch(&rf, "fmnist-cnn", "");
    /* every other convolution implementation the CPU has (nn.h, nn_isa) */
    static const nn_isa isas[] = {NN_ISA_REF, NN_ISA_SSE, NN_ISA_AVX2, NN_ISA_AVX512};
    for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
        if (!nn_isa_supported(isas[k]) || isas[k] == nn_isa_active()) continue;
        char tag[32];
        snprintf(tag, sizeof tag, " (%s)", nn_isa_name(isas[k]));
        nn_isa old = nn_isa_force(isas[k]);
        against_torch(&rf, "fmnist-cnn", tag);
        nn_isa_force(old);
    }
    ref_free(&rf);
    thread_count_independent("fmnist-cnn");
    batch_order_cache();
    symmetry("fmnist8-mlp");
    symmetry("fmnist-cnn");
    quadratic();
    lopt_err err = {0};
    lopt_task t;
    CHECK(lopt_task_create(&t, "no-such-task", NULL, &err) == LOPT_EUSAGE,
          "unknown task accepted");
    return check_done("test_tasks");
}
