/* cmd_bench.c - `lopt bench`: timings as JSON lines (docs/design.md sections 4 and 6).
 * Each measurement: a warm-up, then `runs` timed runs of `iters` repetitions; the
 * per-repetition median/min/max over runs. Every line names the set-up it ran in
 * (threads, OpenBLAS's kernel choice) so lines from runs under different
 * environments can be told apart. The PyTorch peer (bench/torch_peer.py) prints the
 * same names; scripts/bench.sh runs both interleaved and bench/compare.py prints
 * the ratios against their targets.
 *
 * The measurements are tables: a plain step (train step, forward, HVP) per task,
 * the learned optimizer's pieces, and whole meta-training outer steps per
 * (task, estimator), reported as inner steps per second. Adding an estimator to the
 * bench is one line in meta_rows. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

#include "cli/cli.h"
#include "meta/meta.h"
#include "optim/optim.h"
#include "tasks/task.h"

/* OpenBLAS's own API (its cblas.h would pull in <complex.h>) */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* ru_maxrss is in KiB on Linux */
}

static int omp_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static void set_omp_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* The set-up fields every line carries. */
static void print_setup(void)
{
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf(", \"threads\": %d, \"openblas_threads\": %d, \"coretype\": \"%s\", "
           "\"openblas_core\": \"%s\", \"peak_rss_mb\": %.1f",
           omp_threads(), openblas_get_num_threads(), ct && *ct ? ct : "unset",
           openblas_get_corename(), peak_rss_mb());
}

typedef void (*bench_fn)(void *ctx);

typedef struct {
    double med, min, max;   /* wall-clock ms per call */
    double cpu;             /* median CPU ms per call, all threads of the process */
} timing;

/* CPU seconds of the process: unlike wall-clock time it leaves out the time another
 * process held the core, so on a shared machine it is the steadier measure of a
 * one-thread row (for several threads it includes their spin-waits) */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Times fn: a warm-up of iters calls, then runs x iters; ms per call. */
static timing time_fn(bench_fn fn, void *ctx, int runs, int iters)
{
    for (int i = 0; i < iters; i++) fn(ctx);
    double *ms = calloc((size_t)runs, sizeof *ms), *cpu = calloc((size_t)runs, sizeof *cpu);
    for (int r = 0; r < runs; r++) {
        double t0 = lopt_now(), c0 = cpu_now();
        for (int i = 0; i < iters; i++) fn(ctx);
        ms[r] = 1e3 * (lopt_now() - t0) / iters;
        cpu[r] = 1e3 * (cpu_now() - c0) / iters;
    }
    timing t;
    t.med = median_of(ms, runs);
    t.min = ms[0];
    t.max = ms[runs - 1];
    t.cpu = median_of(cpu, runs);
    free(ms);
    free(cpu);
    return t;
}

/* one JSON line; extra is appended inside the object (may be "") */
static void print_timing(const char *name, timing t, int runs, int iters, double gflop,
                         const char *extra)
{
    printf("{\"bench\": \"%s\", \"impl\": \"lopt\", \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"max_ms\": %.4f, \"cpu_ms\": %.4f, \"runs\": %d, \"iters\": %d",
           name, t.med, t.min, t.max, t.cpu, runs, iters);
    print_setup();
    if (gflop > 0) printf(", \"gflop\": %.4f, \"gflops\": %.2f", gflop, gflop / (t.med * 1e-3));
    printf("%s}\n", extra);
    fflush(stdout);
}

static double measure(const char *name, bench_fn fn, void *ctx, int runs, int iters,
                      double gflop, const char *extra)
{
    timing t = time_fn(fn, ctx, runs, iters);
    print_timing(name, t, runs, iters, gflop, extra);
    return t.med;
}

/* ---- the fp32 peak of the cores in use ----------------------------------------------
 * Independent FMA chains (enough to cover the latency of two pipes), one per
 * thread; the widest vector unit the CPU has. What the GFLOP/s of the other lines
 * are compared with. */
#ifdef BENCH_X86
__attribute__((target("avx512f"))) static float fma_loop_512(long n)
{
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(1e-3f * (float)i);
    const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-4f);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    for (int i = 1; i < 16; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long n)
{
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1e-3f * (float)i);
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    for (int i = 1; i < 12; i++) a[0] = _mm256_add_ps(a[0], a[i]);
    float o[8];
    _mm256_storeu_ps(o, a[0]);
    return o[0];
}

static volatile float peak_sink;

/* GFLOP/s of `threads` threads running the loop at once */
static double fma_peak(int threads, const char **isa)
{
    int wide = __builtin_cpu_supports("avx512f");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    *isa = wide ? "avx512" : avx2 ? "avx2" : "none";
    if (!wide && !avx2) return NAN;
    const long n = 20000000;
    const double flop = (double)n * (wide ? 16 * 32 : 12 * 16);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = lopt_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
        peak_sink = wide ? fma_loop_512(n) : fma_loop_256(n);
        double g = flop * threads / (lopt_now() - t0) * 1e-9;
        if (g > best) best = g;
    }
    return best;
}
#else
static double fma_peak(int threads, const char **isa)
{
    (void)threads;
    *isa = "none";
    return NAN;
}
#endif

/* ---- plain steps -------------------------------------------------------------------- */

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
    lopt_optimizer_create(&c->opt, "adam", &hp, c->task.n, err);
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

/* FLOPs of the fmnist-cnn convolutions at batch B (multiply-add = 2), in units of
 * one pass over every layer's forward product: the forward is 1 unit; the training
 * step adds the weight gradient and the input adjoint (none for conv1, whose input
 * is data); the HVP adds to those the R-forward (2 products, conv1: 1) and the
 * R-backward (4, conv1: 1). The dense layer is counted the same way. */
static double cnn_gflop(int B, const int units[3], int dense_units)
{
    static const double hw[3] = {784, 196, 49}, cin[3] = {1, 16, 32}, cout[3] = {16, 32, 32};
    double f = 0;
    for (int i = 0; i < 3; i++) f += units[i] * 2.0 * cout[i] * cin[i] * 9 * B * hw[i];
    f += dense_units * 2.0 * 32 * 10 * B;
    return f * 1e-9;
}
static double cnn_step_gflop(int B) { return cnn_gflop(B, (const int[3]){2, 3, 3}, 3); }
static double cnn_forward_gflop(int B) { return cnn_gflop(B, (const int[3]){1, 1, 1}, 1); }
static double cnn_hvp_gflop(int B) { return cnn_gflop(B, (const int[3]){4, 9, 9}, 9); }

/* a row run with one thread (OpenMP and OpenBLAS) */
#define ONE_THREAD 1

static const struct {
    const char *name, *task;
    bench_fn fn;
    int iters, threads;          /* threads: 0 = the process's, 1 = one */
    double (*gflop)(int B);      /* NULL: not counted */
} step_rows[] = {
    {"fmnist-cnn/train-step", "fmnist-cnn", train_step, 10, 0, cnn_step_gflop},
    {"fmnist-cnn/train-step-1t", "fmnist-cnn", train_step, 5, ONE_THREAD, cnn_step_gflop},
    {"fmnist-cnn/forward", "fmnist-cnn", forward_only, 10, 0, cnn_forward_gflop},
    {"fmnist-cnn/hvp", "fmnist-cnn", hvp_step, 5, 0, cnn_hvp_gflop},
    {"fmnist-cnn/hvp-1t", "fmnist-cnn", hvp_step, 3, ONE_THREAD, cnn_hvp_gflop},
    {"fmnist8-mlp/train-step", "fmnist8-mlp", train_step, 200, 0, NULL},
    {"fmnist8-mlp/train-step-1t", "fmnist8-mlp", train_step, 200, ONE_THREAD, NULL},
    {"fmnist8-mlp/hvp", "fmnist8-mlp", hvp_step, 200, 0, NULL},
};

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

static const struct {
    const char *name, *task;
    bench_fn fn;
    int iters, K;
} lo_rows[] = {
    {"fmnist-cnn/lopt-update", "fmnist-cnn", lopt_update_once, 20, 1},
    {"fmnist8-mlp/lopt-update", "fmnist8-mlp", lopt_update_once, 200, 1},
    {"fmnist8-mlp/rp-truncation", "fmnist8-mlp", rp_truncation, 10, 20},
    {"fmnist8-mlp/es-pair", "fmnist8-mlp", es_pair, 10, 20},
};

/* ---- whole outer steps of meta-training -----------------------------------------------
 * lopt_meta_step as `meta-train` runs it (every worker thread, the estimator's
 * samples spread over them), from the default configuration with the task,
 * estimator, K and S of the row. The rate counts the inner steps both sides of
 * every pair took. runs = 0: the command's --runs; threads = 1: one worker (the
 * -1t row, the single-core rate). horizon 0: the default; fulles trains a whole
 * horizon per pair, so its row runs a shorter one (fmnist-cnn: 400, long enough that
 * a trajectory's start - initialisation, first loss - weighs in as little as it does
 * at the headline horizon) and also reports what one outer step at the headline
 * horizon (2,000) costs at the measured rate. end = 1: the -end row,
 * --outer-weight end (the outer loss's forward at a truncation's last step only). */
static const struct {
    const char *task, *estimator;
    int samples, K, runs, threads, horizon, end;
} meta_rows[] = {
    {"fmnist8-mlp", "es", 8, 20, 0, 0, 0, 0},
    {"fmnist8-mlp", "es", 8, 20, 0, 1, 0, 0},
    {"fmnist8-mlp", "pes", 8, 20, 0, 0, 0, 0},
    {"fmnist8-mlp", "nres", 8, 20, 0, 0, 0, 0},
    {"fmnist8-mlp", "merged", 8, 20, 0, 0, 0, 0},
    {"fmnist8-mlp", "fulles", 8, 0, 0, 0, 200, 0},
    {"fmnist-cnn", "es", 2, 20, 2, 0, 0, 0},
    {"fmnist-cnn", "es", 4, 20, 2, 0, 0, 1},   /* -end: outer forward at the end only; S 4, the default */
    {"fmnist-cnn", "pes", 2, 20, 2, 0, 0, 0},
    {"fmnist-cnn", "nres", 2, 20, 2, 0, 0, 0},
    {"fmnist-cnn", "merged", 2, 20, 2, 0, 0, 0},
    {"fmnist-cnn", "fulles", 2, 0, 2, 0, 400, 0},
};

static void bench_meta_row(const char *name, const char *task, const char *est, int S, int K,
                           int runs, int threads, int horizon, int end)
{
    lopt_err err = {0};
    lopt_meta_cfg mc;
    lopt_meta_cfg_default(&mc);
    snprintf(mc.task, sizeof mc.task, "%s", task);
    int e = lopt_est_parse(est);
    if (e < 0) cli_fail("bench", "%s: unknown estimator '%s'", name, est);
    mc.estimator = (lopt_est_kind)e;
    mc.samples = S;
    if (K > 0) mc.K = K;
    if (horizon > 0) mc.horizon = horizon;
    mc.threads = threads;
    if (end) mc.weight.kind = LOPT_WEIGHT_END;
    lopt_meta *m;
    if (lopt_meta_create(&m, &mc, &err) != LOPT_OK) cli_fail("bench", "%s", err.msg);
    lopt_meta_row row;
    lopt_meta_step(m, &row, NULL);   /* warm-up: trajectories started, caches filled */
    double *ms = calloc((size_t)runs, sizeof *ms), *rate = calloc((size_t)runs, sizeof *rate);
    double *cpu = calloc((size_t)runs, sizeof *cpu);
    double t_prev = row.time_s;
    for (int r = 0; r < runs; r++) {
        double t0 = lopt_now(), c0 = cpu_now();
        lopt_meta_step(m, &row, NULL);
        ms[r] = 1e3 * (lopt_now() - t0);
        cpu[r] = 1e3 * (cpu_now() - c0);
        double steps = row.inner_steps_per_s * (row.time_s - t_prev);
        t_prev = row.time_s;
        rate[r] = steps / (ms[r] * 1e-3);
    }
    timing t;
    t.med = median_of(ms, runs);
    t.min = ms[0];
    t.max = ms[runs - 1];
    t.cpu = median_of(cpu, runs);
    free(cpu);
    double rmed = median_of(rate, runs);
    char extra[448];
    int workers = threads > 0 ? threads : omp_threads();
    if (workers > S) workers = S;
    snprintf(extra, sizeof extra,
             ", \"task\": \"%s\", \"estimator\": \"%s\", \"samples\": %d, \"K\": %d, "
             "\"batch\": 128, \"workers\": %d, \"inner_steps_per_s\": %.1f, "
             "\"inner_steps_per_s_min\": %.1f, \"inner_steps_per_s_max\": %.1f",
             task, est, S, row.K, workers, rmed, rate[0], rate[runs - 1]);
    if (mc.estimator == LOPT_EST_FULLES) {
        size_t len = strlen(extra);
        snprintf(extra + len, sizeof extra - len, ", \"horizon\": %d, "
                 "\"outer_step_s_at_horizon_2000\": %.1f", (int)mc.horizon,
                 2.0 * S * 2000 / rmed);
    }
    print_timing(name, t, runs, 1, 0, extra);
    free(ms);
    free(rate);
    lopt_meta_free(m);
}

/* ---- rp memory against K ------------------------------------------------------------- */

static void bench_rp_memory(int runs)
{
    lopt_err err = {0};
    /* the full tape grows as K, checkpointing every sqrt(K) steps as sqrt(K), for one
     * extra forward step per step (timed at K = 100) */
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
                            runs, 2, 0, "");
            lo_ctx f;
            lo_ctx_init_seg(&f, "fmnist8-mlp", K, 0, &err);
            f.cfg.K = K;
            ms_full = measure("fmnist8-mlp/rp-truncation-K100-full-tape", rp_truncation, &f,
                              runs, 2, 0, "");
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

static int wanted(const char *name, const char *only)
{
    return !only || strstr(name, only) != NULL;
}

int cmd_bench(int argc, char **argv)
{
    int64_t runs = 7;
    const char *only = NULL;
    cli_opt opts[] = {
        {"runs", OPT_I64, &runs, "timed runs per measurement", 0, 0},
        {"only", OPT_STR, &only, "run only measurements whose name contains S", 0, 0},
    };
    cli_spec spec = {"bench", "lopt bench [--runs N] [--only S]",
                     "Times lopt's training step, HVP, learned-optimizer update and "
                     "whole meta-training outer steps; one JSON object per line on "
                     "stdout. Threads: OMP_NUM_THREADS (default: all cores).",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (runs < 1 || runs > 1000) cli_usage_error(&spec, "--runs must be in 1..1000");

    lopt_err err = {0};
    const int nthreads = omp_threads();
    {   /* always: the GFLOP/s of every other line are read against it */
        const char *isa;
        double one = fma_peak(1, &isa), all = fma_peak(nthreads, &isa);
        printf("{\"bench\": \"cpu/fp32-peak\", \"impl\": \"lopt\", \"isa\": \"%s\", "
               "\"gflops_1t\": %.1f, \"gflops\": %.1f",
               isa, one, all);
        print_setup();
        printf("}\n");
    }

    double cnn_step_ms = 0;
    for (size_t i = 0; i < sizeof step_rows / sizeof *step_rows; i++) {
        if (!wanted(step_rows[i].name, only)) continue;
        step_ctx c;
        if (step_ctx_init(&c, step_rows[i].task, &err) != 0) cli_fail("bench", "%s", err.msg);
        int blas = openblas_get_num_threads();
        if (step_rows[i].threads == ONE_THREAD) {
            set_omp_threads(1);
            openblas_set_num_threads(1);
        }
        double gflop = step_rows[i].gflop ? step_rows[i].gflop(c.task.batch) : 0;
        timing t = time_fn(step_rows[i].fn, &c, (int)runs, step_rows[i].iters);
        char extra[128];
        snprintf(extra, sizeof extra, ", \"batch\": %d, \"steps_per_s\": %.1f", c.task.batch,
                 1e3 / t.med);
        print_timing(step_rows[i].name, t, (int)runs, step_rows[i].iters, gflop, extra);
        if (strcmp(step_rows[i].name, "fmnist-cnn/train-step") == 0) cnn_step_ms = t.med;
        set_omp_threads(nthreads);
        openblas_set_num_threads(blas);
        step_ctx_free(&c);
    }

    for (size_t i = 0; i < sizeof lo_rows / sizeof *lo_rows; i++) {
        if (!wanted(lo_rows[i].name, only)) continue;
        lo_ctx c;
        if (lo_ctx_init_seg(&c, lo_rows[i].task, lo_rows[i].K, 0, &err) != 0)
            cli_fail("bench", "%s", err.msg);
        char extra[128];
        snprintf(extra, sizeof extra, ", \"batch\": %d, \"K\": %d", c.task.batch, lo_rows[i].K);
        double med = measure(lo_rows[i].name, lo_rows[i].fn, &c, (int)runs, lo_rows[i].iters, 0,
                             extra);
        if (strcmp(lo_rows[i].name, "fmnist-cnn/lopt-update") == 0 && cnn_step_ms > 0)
            printf("{\"bench\": \"fmnist-cnn/lopt-update-fraction\", \"impl\": \"lopt\", "
                   "\"fraction\": %.4f, \"target\": 0.10}\n", med / cnn_step_ms);
        lo_ctx_free(&c);
    }
    if (wanted("fmnist8-mlp/rp-memory", only)) bench_rp_memory((int)runs);

    /* last: the estimators make OpenBLAS single-threaded for the process */
    for (size_t i = 0; i < sizeof meta_rows / sizeof *meta_rows; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s/%s%s-outer-step%s", meta_rows[i].task,
                 meta_rows[i].estimator, meta_rows[i].end ? "-end" : "",
                 meta_rows[i].threads == 1 ? "-1t" : "");
        if (!wanted(name, only)) continue;
        bench_meta_row(name, meta_rows[i].task, meta_rows[i].estimator, meta_rows[i].samples,
                       meta_rows[i].K, meta_rows[i].runs > 0 ? meta_rows[i].runs : (int)runs,
                       meta_rows[i].threads, meta_rows[i].horizon, meta_rows[i].end);
    }
    return 0;
}
