/* cmd_bench.c - `lopt bench`: timings as JSON lines (docs/design.md sections 4 and 6).
 * Each measurement: a warm-up, then `runs` timed runs of `iters` repetitions; the
 * per-repetition median/min/max over runs. The PyTorch peer (bench/torch_peer.py)
 * prints the same names; scripts/bench.sh runs both and prints the ratios. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "meta/meta.h"
#include "optim/optim.h"
#include "tasks/task.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* ru_maxrss is in KiB on Linux */
}

typedef void (*bench_fn)(void *ctx);

/* Times fn; prints one JSON line; extra is appended inside the object (may be ""). */
static double measure(const char *name, bench_fn fn, void *ctx, int runs, int iters,
                    double gflop, const char *extra)
{
    for (int i = 0; i < iters; i++) fn(ctx);   /* warm-up */
    double *ms = calloc((size_t)runs, sizeof *ms);
    for (int r = 0; r < runs; r++) {
        double t0 = lopt_now();
        for (int i = 0; i < iters; i++) fn(ctx);
        ms[r] = 1e3 * (lopt_now() - t0) / iters;
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    double med = runs % 2 ? ms[runs / 2] : 0.5 * (ms[runs / 2 - 1] + ms[runs / 2]);
    printf("{\"bench\": \"%s\", \"impl\": \"lopt\", \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"max_ms\": %.4f, \"runs\": %d, \"iters\": %d, \"threads\": %s, "
           "\"peak_rss_mb\": %.1f",
           name, med, ms[0], ms[runs - 1], runs, iters,
           getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "\"default\"",
           peak_rss_mb());
    if (gflop > 0) printf(", \"gflop\": %.4f, \"gflops\": %.2f", gflop, gflop / (med * 1e-3));
    printf("%s}\n", extra);
    fflush(stdout);
    free(ms);
    return med;
}

typedef struct {
    lopt_task task;
    lopt_optimizer opt;
    lopt_batch batch;
    float *w, *g, *v, *hv;
} step_ctx;

static void train_step(void *p)
{
    step_ctx *c = p;
    c->task.loss_grad(&c->task, c->w, &c->batch, c->g);
    c->opt.step(&c->opt, c->w, c->g);
}

static void forward_only(void *p)
{
    step_ctx *c = p;
    c->task.loss_grad(&c->task, c->w, &c->batch, NULL);
}

static void hvp_step(void *p)
{
    step_ctx *c = p;
    c->task.hvp(&c->task, c->w, &c->batch, c->v, c->hv, c->g);
}

static int step_ctx_init(step_ctx *c, const char *task, lopt_err *err)
{
    memset(c, 0, sizeof *c);
    if (lopt_task_create(&c->task, task, NULL, err) != LOPT_OK) return -1;
    lopt_hparams hp;
    lopt_hparams_default(&hp, "adam", err);
    lopt_optim_create(&c->opt, "adam", &hp, c->task.n, err);
    lopt_batch_alloc(&c->batch, &c->task, c->task.batch);
    lopt_task_sample(&c->task, &c->batch, LOPT_SPLIT_TRAIN, 0, 0);
    c->w = lopt_floats(c->task.n);
    c->g = lopt_floats(c->task.n);
    c->v = lopt_floats(c->task.n);
    c->hv = lopt_floats(c->task.n);
    c->task.init(&c->task, 0, c->w);
    lopt_rng_fill_normal(c->v, c->task.n, 1.0f, 0, LOPT_STREAM_TEST, 0);
    return 0;
}

static void step_ctx_free(step_ctx *c)
{
    lopt_free(c->w);
    lopt_free(c->g);
    lopt_free(c->v);
    lopt_free(c->hv);
    lopt_batch_free(&c->batch);
    c->opt.free(&c->opt);
    c->task.free(&c->task);
}

/* ---- learned-optimizer measurements ---------------------------------------------- */

typedef struct {
    lopt_task task;
    lopt_arch arch;
    float *theta, *dtheta, *w, *g, *m, *delta;
    lopt_mlp_work wk;
    lopt_unroll_ws ws;
    lopt_unroll_cfg cfg;
    lopt_traj start, tr;
} lo_ctx;

static int lo_ctx_init_seg(lo_ctx *c, const char *task, int K, int seg, lopt_err *err)
{
    memset(c, 0, sizeof *c);
    if (lopt_task_create(&c->task, task, NULL, err) != LOPT_OK) return -1;
    lopt_arch_preset(&c->arch, "paper", err);
    size_t np = lopt_arch_nparams(&c->arch), n = c->task.n;
    c->theta = lopt_floats(np);
    c->dtheta = lopt_floats(np);
    lopt_theta_init(&c->arch, 0, c->theta);
    c->w = lopt_floats(n);
    c->g = lopt_floats(n);
    c->m = lopt_floats((size_t)c->arch.nmom * n);
    c->delta = lopt_floats(n);
    c->task.init(&c->task, 0, c->w);
    lopt_rng_fill_normal(c->g, n, 0.1f, 1, LOPT_STREAM_TEST, 0);
    lopt_mlp_work_init(&c->wk, &c->arch, n, c->task.ntensors);
    lopt_unroll_ws_init_seg(&c->ws, &c->task, &c->arch, K, seg);
    c->cfg = (lopt_unroll_cfg){.K = K, .outer_split = LOPT_SPLIT_VALID, .loss_clip = 10,
                               .diverge_factor = 1e30f};
    lopt_traj_alloc(&c->start, n, c->arch.nmom);
    lopt_traj_alloc(&c->tr, n, c->arch.nmom);
    lopt_traj_start(&c->ws, &c->start, 7, 1000000);
    return 0;
}

static int lo_ctx_init(lo_ctx *c, const char *task, int K, lopt_err *err)
{
    return lo_ctx_init_seg(c, task, K, 0, err);
}

static void lo_ctx_free(lo_ctx *c)
{
    lopt_traj_free(&c->start);
    lopt_traj_free(&c->tr);
    lopt_unroll_ws_free(&c->ws);
    lopt_mlp_work_free(&c->wk);
    float *f[] = {c->theta, c->dtheta, c->w, c->g, c->m, c->delta};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) lopt_free(f[i]);
    c->task.free(&c->task);
}

static void lopt_update_once(void *p)
{
    lo_ctx *c = p;
    lopt_mlp_update(&c->wk, c->theta, c->task.tensors, c->task.ntensors, c->w, c->g, c->m, 10,
                    c->delta);
}

/* one truncation of K steps from the same start, with the exact backward */
static void rp_truncation(void *p)
{
    lo_ctx *c = p;
    lopt_traj_copy(&c->tr, &c->start, c->task.n, c->arch.nmom);
    lopt_unroll(&c->ws, &c->cfg, c->theta, &c->tr, c->dtheta);
}

/* one antithetic es pair: two forward truncations */
static void es_pair(void *p)
{
    lo_ctx *c = p;
    for (int side = 0; side < 2; side++) {
        lopt_traj_copy(&c->tr, &c->start, c->task.n, c->arch.nmom);
        lopt_unroll(&c->ws, &c->cfg, c->theta, &c->tr, NULL);
    }
}

/* one merged outer step as meta-train runs it (defaults: S pairs with rp) */
static void merged_step(void *p)
{
    lopt_meta *m = p;
    lopt_meta_row row;
    lopt_meta_step(m, &row, NULL);
}

/* FLOPs of one fmnist-cnn training step at batch B (multiply-add = 2): each conv
 * costs 2*O*C*9*B*HW forward, the same again for dW, and again for dx (not conv1). */
static double cnn_step_gflop(int B)
{
    double hw[3] = {784, 196, 49}, cin[3] = {1, 16, 32}, cout[3] = {16, 32, 32};
    double f = 0;
    for (int i = 0; i < 3; i++) {
        double one = 2.0 * cout[i] * cin[i] * 9 * B * hw[i];
        f += one * (i == 0 ? 2 : 3);
    }
    f += 3 * 2.0 * 32 * 10 * B;
    return f * 1e-9;
}

int cmd_bench(int argc, char **argv)
{
    int64_t runs = 7;
    const char *only = NULL;
    cli_opt opts[] = {
        {"runs", OPT_INT, &runs, "timed runs per measurement (default 7)", 0, 0},
        {"only", OPT_STR, &only, "run only measurements whose name contains S", 0, 0},
    };
    cli_spec spec = {"bench", "lopt bench [--runs N] [--only S]",
                     "Times lopt's training step, HVP and (with a learned optimizer) its "
                     "update; one JSON object per line on stdout. Threads: "
                     "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (default: all cores).",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (runs < 1 || runs > 1000) cli_usage_error(&spec, "--runs must be in 1..1000");

    lopt_err err = {0};
    struct {
        const char *name, *task;
        bench_fn fn;
        int iters;
    } list[] = {
        {"fmnist-cnn/train-step", "fmnist-cnn", train_step, 10},
        {"fmnist-cnn/forward", "fmnist-cnn", forward_only, 10},
        {"fmnist-cnn/hvp", "fmnist-cnn", hvp_step, 5},
        {"fmnist8-mlp/train-step", "fmnist8-mlp", train_step, 200},
        {"fmnist8-mlp/hvp", "fmnist8-mlp", hvp_step, 200},
    };
    double cnn_step_ms = 0;
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) {
        if (only && !strstr(list[i].name, only)) continue;
        step_ctx c;
        if (step_ctx_init(&c, list[i].task, &err) != 0) cli_fail("bench", "%s", err.msg);
        double gflop = strcmp(list[i].name, "fmnist-cnn/train-step") == 0
                           ? cnn_step_gflop(c.task.batch) : 0;
        char extra[64];
        snprintf(extra, sizeof extra, ", \"batch\": %d", c.task.batch);
        double med = measure(list[i].name, list[i].fn, &c, (int)runs, list[i].iters, gflop, extra);
        if (i == 0) cnn_step_ms = med;
        step_ctx_free(&c);
    }

    /* the learned optimizer: its update on fmnist-cnn (and as a fraction of the
     * training step measured above), an rp truncation and an es pair on fmnist8-mlp */
    struct {
        const char *name, *task;
        bench_fn fn;
        int iters, K;
    } lo[] = {
        {"fmnist-cnn/lopt-update", "fmnist-cnn", lopt_update_once, 20, 1},
        {"fmnist8-mlp/rp-truncation", "fmnist8-mlp", rp_truncation, 10, 20},
        {"fmnist8-mlp/es-pair", "fmnist8-mlp", es_pair, 10, 20},
    };
    for (size_t i = 0; i < sizeof lo / sizeof *lo; i++) {
        if (only && !strstr(lo[i].name, only)) continue;
        lo_ctx c;
        if (lo_ctx_init(&c, lo[i].task, lo[i].K, &err) != 0) cli_fail("bench", "%s", err.msg);
        char extra[128];
        if (i == 0 && cnn_step_ms > 0)
            snprintf(extra, sizeof extra, ", \"batch\": %d, \"train_step_ms\": %.4f", c.task.batch,
                     cnn_step_ms);
        else
            snprintf(extra, sizeof extra, ", \"batch\": %d, \"K\": %d", c.task.batch, lo[i].K);
        double med = measure(lo[i].name, lo[i].fn, &c, (int)runs, lo[i].iters, 0, extra);
        if (i == 0 && cnn_step_ms > 0)
            printf("{\"bench\": \"fmnist-cnn/lopt-update-fraction\", \"impl\": \"lopt\", "
                   "\"fraction\": %.4f, \"target\": 0.10}\n", med / cnn_step_ms);
        lo_ctx_free(&c);
    }
    /* rp memory against K: the full tape grows as K, checkpointing every sqrt(K)
     * steps as sqrt(K), for one extra forward step per step (timed at K = 100) */
    if (!only || strstr("fmnist8-mlp/rp-memory", only)) {
        int Ks[] = {10, 100, 1000, 10000};
        for (size_t i = 0; i < sizeof Ks / sizeof *Ks; i++) {
            int K = Ks[i], seg = (int)ceil(sqrt((double)K));
            lo_ctx c;
            if (lo_ctx_init_seg(&c, "fmnist8-mlp", K, seg, &err) != 0) cli_fail("bench", "%s", err.msg);
            size_t n = c.task.n, M = (size_t)c.arch.nmom;
            double full = ((double)K * (3 + M) * n * sizeof(float) + K * 8.0) / 1e6;
            double ms_full = NAN, ms_ck = NAN;
            if (K == 100) {
                c.cfg.K = K;
                ms_ck = measure("fmnist8-mlp/rp-truncation-K100-checkpointed", rp_truncation, &c,
                                (int)runs, 2, 0, "");
                lo_ctx f;
                lo_ctx_init_seg(&f, "fmnist8-mlp", K, 0, &err);
                f.cfg.K = K;
                ms_full = measure("fmnist8-mlp/rp-truncation-K100-full-tape", rp_truncation, &f,
                                  (int)runs, 2, 0, "");
                lo_ctx_free(&f);
            }
            printf("{\"bench\": \"fmnist8-mlp/rp-memory\", \"impl\": \"lopt\", \"K\": %d, "
                   "\"full_tape_mb\": %.2f, \"checkpoint_every\": %d, \"checkpointed_tape_mb\": %.2f",
                   K, full, seg, lopt_unroll_tape_bytes(&c.ws) / 1e6);
            if (K == 100) printf(", \"time_ratio_checkpointed_over_full\": %.3f", ms_ck / ms_full);
            printf("}\n");
            lo_ctx_free(&c);
        }
    }
    if (!only || strstr("fmnist8-mlp/merged-step", only)) {
        lopt_meta_cfg mc;
        lopt_meta_cfg_default(&mc);
        lopt_meta *m;
        if (lopt_meta_create(&m, &mc, &err) != LOPT_OK) cli_fail("bench", "%s", err.msg);
        char extra[128];
        snprintf(extra, sizeof extra, ", \"K\": %d, \"samples\": %d, \"threads\": \"all\"", mc.K,
                 mc.samples);
        measure("fmnist8-mlp/merged-step", merged_step, m, (int)runs, 3, 0, extra);
        lopt_meta_free(m);
    }
    return 0;
}
