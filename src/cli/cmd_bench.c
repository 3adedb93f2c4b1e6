/* cmd_bench.c - `lopt bench`: timings as JSON lines (DESIGN.md sections 4 and 6).
 * Each measurement: a warm-up, then `runs` timed runs of `iters` repetitions; the
 * per-repetition median/min/max over runs. The PyTorch peer (bench/torch_peer.py)
 * prints the same names; scripts/bench.sh runs both and prints the ratios. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
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
static void measure(const char *name, bench_fn fn, void *ctx, int runs, int iters,
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
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) {
        if (only && !strstr(list[i].name, only)) continue;
        step_ctx c;
        if (step_ctx_init(&c, list[i].task, &err) != 0) cli_fail("bench", "%s", err.msg);
        double gflop = strcmp(list[i].name, "fmnist-cnn/train-step") == 0
                           ? cnn_step_gflop(c.task.batch) : 0;
        char extra[64];
        snprintf(extra, sizeof extra, ", \"batch\": %d", c.task.batch);
        measure(list[i].name, list[i].fn, &c, (int)runs, list[i].iters, gflop, extra);
        step_ctx_free(&c);
    }
    return 0;
}
