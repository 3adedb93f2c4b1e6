/* meta.c - meta-training: outer steps, outer Adam, progress at the horizon,
 * checkpoints (see meta.h; the estimators themselves are in estimator.c). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/out.h"
#include "core/dist.h"
#include "core/ser.h"
#include "lopt/lopt_file.h"
#include "optim/adam.h"
#include "meta/dist.h"
#include "meta/meta.h"
#include "meta/meta_log.h"

const char *const lopt_est_names[] = {"rp", "es", "merged", "pes", "nres", "fulles"};

enum {
    STREAM_EPS = 10, STREAM_TRAJ = 11, STREAM_K = 12, STREAM_HORIZON = 13, STREAM_EPS_LIFE = 14
};
#define CKPT_MAGIC "LOPTCKPT"
#define CKPT_VERSION 3   /* 3: the log as rows; 1 and 2: as CSV text */

void lopt_meta_cfg_default(lopt_meta_cfg *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->task, sizeof c->task, "fmnist8-mlp");
    snprintf(c->arch, sizeof c->arch, "paper");
    c->estimator = LOPT_EST_MERGED;
    c->K = 20;
    c->K_max = 0;
    c->K_grow = 2000;
    c->samples = 4;
    c->sigma = 0.01f;
    c->outer_split = LOPT_SPLIT_VALID;
    c->outer_lr = 3e-3f;
    c->grad_clip = 0.1f;
    c->outer_steps = 1000;
    c->horizon = 1000;
    c->seed = 0;
    c->loss_clip = 10.0f;
    c->diverge_factor = 5.0f;
    c->first_order = 0;
    c->threads = 0;
    c->weight.kind = LOPT_WEIGHT_MEAN;
    c->outer_batches = 1;
    c->pool = 1;
    c->shape = LOPT_SHAPE_NONE;
    snprintf(c->train, sizeof c->train, "all");
    c->eval_every = 0;
    c->neval = 3;   /* tuning seeds 10000, 10001, 10002 (compare's tuning seeds) */
    for (int i = 0; i < c->neval; i++) c->eval_seeds[i] = 10000 + (uint64_t)i;
    c->eval_points = 10;
}

int lopt_est_parse(const char *name)
{
    for (int i = 0; i < LOPT_EST_COUNT; i++)
        if (strcmp(name, lopt_est_names[i]) == 0) return i;
    return -1;
}

typedef struct {
    lopt_task task;
    lopt_unroll_ws ws;
    lopt_pair_ws pair;
    lopt_traj minus;          /* scratch: the - side of a pair (not pes, nres) */
} worker;

struct lopt_meta {
    lopt_meta_cfg cfg;
    lopt_arch arch;
    size_t np, n;
    int nworkers, tape;
    worker *workers;
    unsigned char *mask;              /* (np) coordinates that are trained; NULL: all */
    float *theta, *adam_m, *adam_v;   /* (np) */
    int64_t adam_t;
    int64_t step;                     /* outer steps done */
    uint64_t traj_counter;            /* trajectories started (instance seeds) */
    int64_t resets, diverged;
    double time_s;
    lopt_traj *plus, *minus;          /* (S) live trajectories; minus for pes and nres */
    float *xi;                        /* (S, np) pes perturbation sums */
    float *eps;                       /* (S, np) this step's (nres: this life's) eps */
    /* per outer step */
    float *g_rp;                      /* (S, np) rp samples */
    float *g_es;                      /* (np) one es sample at a time */
    double *loss_plus, *loss_minus;   /* (S) */
    double *diff;                     /* (S) loss differences, shaped */
    long *inner_steps;                /* (S) */
    int *reset_flags, *div_flags;     /* (S) */
    uint64_t *ids;                    /* (S) instance ids of the trajectories (re)started */
    float *g;                         /* (np) the combined gradient */
    lopt_est_sums sums;               /* this step's samples */
    lopt_est_sums *ring;              /* (pool) the last steps' sums, for the variances */
    lopt_est_sums pooled;
    int ring_pos, ring_fill;
    /* progress at the horizon */
    lopt_meta_eval_fn eval_fn;
    void *eval_user;
    int evaluated;                    /* the starting theta has been evaluated */
    float *best_theta;                /* (np) */
    int64_t best_step;                /* -1: none yet */
    double best_final;
    lopt_meta_log log;
};

static int uses_rp(const lopt_meta_cfg *c)
{
    return c->estimator == LOPT_EST_RP || c->estimator == LOPT_EST_MERGED;
}
static int uses_es(const lopt_meta_cfg *c) { return c->estimator != LOPT_EST_RP; }
/* pes and nres keep both sides of each pair alive across truncations */
static int persistent(const lopt_meta_cfg *c)
{
    return c->estimator == LOPT_EST_PES || c->estimator == LOPT_EST_NRES;
}
static lopt_combine_kind combine_kind(const lopt_meta_cfg *c)
{
    return c->estimator == LOPT_EST_RP       ? LOPT_COMBINE_RP
           : c->estimator == LOPT_EST_MERGED ? LOPT_COMBINE_MERGED
                                             : LOPT_COMBINE_ES;
}

/* the longest unroll a worker runs */
static int tape_len(const lopt_meta_cfg *c)
{
    if (c->estimator == LOPT_EST_FULLES) return (int)c->horizon;
    int k = c->K_max > c->K ? c->K_max : c->K;
    return (int)ceil(k * 1.2) + 1;
}

static lopt_status check_cfg(const lopt_meta_cfg *c, lopt_err *err)
{
    if ((unsigned)c->estimator >= LOPT_EST_COUNT)
        return lopt_fail(err, LOPT_EUSAGE, "unknown estimator");
    if (c->K < 1 || c->K > 100000) return lopt_fail(err, LOPT_EUSAGE, "--K must be in 1..100000");
    if (c->K_max != 0 && (c->K_max < c->K || c->K_max > 100000))
        return lopt_fail(err, LOPT_EUSAGE, "--K-max must be >= --K (and <= 100000)");
    if (c->samples < 1 || c->samples > 4096)
        return lopt_fail(err, LOPT_EUSAGE, "--samples must be in 1..4096");
    if (c->pool < 1 || c->pool > 1000) return lopt_fail(err, LOPT_EUSAGE, "--pool must be in 1..1000");
    if (c->estimator == LOPT_EST_MERGED && (int64_t)c->samples * c->pool < 2)
        return lopt_fail(err, LOPT_EUSAGE, "merged needs --samples >= 2 (it uses variances)");
    if (!(c->sigma >= 0) || (uses_es(c) && !(c->sigma > 0)))
        return lopt_fail(err, LOPT_EUSAGE, "--sigma must be positive for the es estimators");
    if (!isfinite(c->sigma)) return lopt_fail(err, LOPT_EUSAGE, "--sigma must be finite");
    if (!(c->outer_lr > 0 && isfinite(c->outer_lr)))
        return lopt_fail(err, LOPT_EUSAGE, "--outer-lr must be positive");
    if (!(c->grad_clip >= 0 && isfinite(c->grad_clip)))
        return lopt_fail(err, LOPT_EUSAGE, "--grad-clip must be >= 0 (0: off)");
    if (!(c->loss_clip >= 0 && isfinite(c->loss_clip)))
        return lopt_fail(err, LOPT_EUSAGE, "--loss-clip must be >= 0 (0: off)");
    if (!(c->diverge_factor >= 1 && isfinite(c->diverge_factor)))
        return lopt_fail(err, LOPT_EUSAGE, "--diverge must be >= 1 (a factor on the initial "
                         "inner loss)");
    if (c->horizon < 1) return lopt_fail(err, LOPT_EUSAGE, "--horizon must be positive");
    if (c->estimator == LOPT_EST_FULLES && c->horizon > 1000000)
        return lopt_fail(err, LOPT_EUSAGE, "fulles: --horizon must be <= 1000000");
    if (c->outer_steps < 0) return lopt_fail(err, LOPT_EUSAGE, "--outer-steps must be >= 0");
    if (c->outer_split != LOPT_SPLIT_TRAIN && c->outer_split != LOPT_SPLIT_VALID)
        return lopt_fail(err, LOPT_EUSAGE, "outer loss must be on train or valid");
    if (c->outer_batches < 1 || c->outer_batches > 1000)
        return lopt_fail(err, LOPT_EUSAGE, "--outer-batches must be in 1..1000");
    if (c->weight.kind == LOPT_WEIGHT_TAIL && !(c->weight.tail > 0 && c->weight.tail <= 1))
        return lopt_fail(err, LOPT_EUSAGE, "--outer-weight tail:F needs 0 < F <= 1");
    if ((unsigned)c->shape > LOPT_SHAPE_RANK)
        return lopt_fail(err, LOPT_EUSAGE, "unknown loss-difference shaping");
    if (c->shape != LOPT_SHAPE_NONE && !uses_es(c))
        return lopt_fail(err, LOPT_EUSAGE, "--shape needs an es estimator (not rp)");
    if (c->eval_every < 0) return lopt_fail(err, LOPT_EUSAGE, "--eval-every must be >= 0");
    if (c->neval < 1 || c->neval > LOPT_META_MAX_EVAL)
        return lopt_fail(err, LOPT_EUSAGE, "--eval-seeds: 1..%d seeds", LOPT_META_MAX_EVAL);
    for (int i = 0; i < c->neval; i++)
        if (c->eval_seeds[i] >= 1000 && c->eval_seeds[i] < 2000)
            return lopt_fail(err, LOPT_EUSAGE, "--eval-seeds: %llu is a test seed (1000..1999 "
                             "are kept for lopt compare's held-out runs); use tuning seeds "
                             "such as 10000,10001,10002", (unsigned long long)c->eval_seeds[i]);
    if (c->eval_points < 1 || c->eval_points > 1000)
        return lopt_fail(err, LOPT_EUSAGE, "evaluation points must be in 1..1000");
    return LOPT_OK;
}

/* Worker threads: as configured (0: every OpenMP thread), at most one per sample
 * this rank runs (under MPI only its block of the samples) */
static int worker_count(const lopt_meta_cfg *cfg)
{
    int threads = 1;
#ifdef _OPENMP
    threads = cfg->threads > 0 ? cfg->threads : omp_get_max_threads();
#endif
    int own_lo, own_hi;
    lopt_dist_block(cfg->samples, lopt_dist_rank(), &own_lo, &own_hi);
    if (threads > own_hi - own_lo) threads = own_hi - own_lo > 0 ? own_hi - own_lo : 1;
    return threads;
}

/* Each worker's own task, unroll and pair workspaces; on failure m->nworkers counts
 * the workers made, for lopt_meta_free. */
static lopt_status init_workers(lopt_meta *m, int threads, lopt_err *err)
{
    const lopt_meta_cfg *cfg = &m->cfg;
    m->workers = lopt_xcalloc((size_t)threads, sizeof *m->workers);
    for (int i = 0; i < threads; i++) {
        worker *w = &m->workers[i];
        m->nworkers = i;
        lopt_status st = lopt_task_create(&w->task, cfg->task, NULL, err);
        if (st != LOPT_OK) return st;
        if (uses_rp(cfg) && !cfg->first_order && !w->task.hvp) {
            /* backpropagation through the unroll needs H v at every inner step */
            w->task.free(&w->task);
            return lopt_fail(err, LOPT_EUSAGE, "estimator '%s' backpropagates through the "
                             "unroll and needs the task's Hessian-vector product, which task "
                             "'%s' does not provide: use es, pes, nres or fulles, or give the "
                             "task an hvp", lopt_est_names[cfg->estimator], cfg->task);
        }
        if (uses_rp(cfg))
            lopt_unroll_ws_init(&w->ws, &w->task, &m->arch, m->tape);
        else
            lopt_unroll_ws_init_forward(&w->ws, &w->task, &m->arch, m->tape);
        lopt_pair_ws_init(&w->pair, m->np);
        lopt_traj_alloc(&w->minus, w->task.n, lopt_arch_state_rows(&m->arch));
    }
    m->nworkers = threads;
    return LOPT_OK;
}

/* theta, Adam, the trajectories and the per-sample buffers of an outer step */
static void alloc_state(lopt_meta *m)
{
    const lopt_meta_cfg *cfg = &m->cfg;
    const size_t S = (size_t)cfg->samples, np = m->np;
    const int rows = lopt_arch_state_rows(&m->arch);
    m->n = m->workers[0].task.n;
    m->theta = lopt_floats(np);
    m->adam_m = lopt_floats(np);
    m->adam_v = lopt_floats(np);
    m->best_theta = lopt_floats(np);
    m->plus = lopt_xcalloc(S, sizeof *m->plus);
    for (size_t s = 0; s < S; s++) lopt_traj_alloc(&m->plus[s], m->n, rows);
    if (persistent(cfg)) {
        m->minus = lopt_xcalloc(S, sizeof *m->minus);
        for (size_t s = 0; s < S; s++) lopt_traj_alloc(&m->minus[s], m->n, rows);
    }
    if (cfg->estimator == LOPT_EST_PES) m->xi = lopt_floats(S * np);
    m->eps = lopt_floats(S * np);
    if (uses_rp(cfg)) m->g_rp = lopt_floats(S * np);
    m->g_es = lopt_floats(np);
    m->loss_plus = lopt_xcalloc(S, sizeof(double));
    m->loss_minus = lopt_xcalloc(S, sizeof(double));
    m->diff = lopt_xcalloc(S, sizeof(double));
    m->inner_steps = lopt_xcalloc(S, sizeof *m->inner_steps);
    m->reset_flags = lopt_xcalloc(S, sizeof(int));
    m->div_flags = lopt_xcalloc(S, sizeof(int));
    m->ids = lopt_xcalloc(S, sizeof *m->ids);
    m->g = lopt_floats(np);
    lopt_est_sums_init(&m->sums, np);
    lopt_est_sums_init(&m->pooled, np);
    m->ring = lopt_xcalloc((size_t)cfg->pool, sizeof *m->ring);
    for (int i = 0; i < cfg->pool; i++) lopt_est_sums_init(&m->ring[i], np);
}

static lopt_status meta_alloc(lopt_meta **out, const lopt_meta_cfg *cfg, lopt_err *err)
{
    *out = NULL;
    lopt_status st = check_cfg(cfg, err);
    if (st != LOPT_OK) return st;
    lopt_meta *m = lopt_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->best_step = -1;
    if ((st = lopt_arch_preset(&m->arch, cfg->arch, err)) != LOPT_OK) {
        free(m);
        return st;
    }
    m->np = lopt_arch_nparams(&m->arch);
    if (uses_rp(cfg) && !lopt_arch_has_vjp(&m->arch)) {
        free(m);
        return lopt_fail(err, LOPT_EUSAGE, "'%s' has no exact reverse pass (the Adam "
                         "direction): rp and merged cannot train it; use es, pes, nres or "
                         "fulles", cfg->arch);
    }
    if (strcmp(cfg->train, "all") != 0) {
        m->mask = lopt_xcalloc(m->np, 1);
        if ((st = lopt_arch_train_mask(&m->arch, cfg->train, m->mask, NULL, err)) != LOPT_OK) {
            free(m->mask);
            free(m);
            return st;
        }
    }
    int threads = worker_count(cfg);
    if (threads > 1) openblas_set_num_threads(1);   /* parallel over samples instead */
    m->tape = tape_len(cfg);
    if ((st = init_workers(m, threads, err)) != LOPT_OK) {
        lopt_meta_free(m);
        return st;
    }
    alloc_state(m);
    *out = m;
    return LOPT_OK;
}

lopt_status lopt_meta_create(lopt_meta **out, const lopt_meta_cfg *cfg, lopt_err *err)
{
    lopt_meta *m;
    lopt_status st = meta_alloc(&m, cfg, err);
    if (st != LOPT_OK) return st;
    lopt_theta_init(&m->arch, cfg->seed, m->theta);
    *out = m;
    return LOPT_OK;
}

void lopt_meta_free(lopt_meta *m)
{
    if (!m) return;
    for (int i = 0; i < m->nworkers; i++) {
        worker *w = &m->workers[i];
        lopt_pair_ws_free(&w->pair);
        lopt_traj_free(&w->minus);
        lopt_unroll_ws_free(&w->ws);
        w->task.free(&w->task);
    }
    free(m->workers);
    for (int s = 0; m->plus && s < m->cfg.samples; s++) lopt_traj_free(&m->plus[s]);
    for (int s = 0; m->minus && s < m->cfg.samples; s++) lopt_traj_free(&m->minus[s]);
    free(m->plus);
    free(m->minus);
    float *fl[] = {m->theta, m->adam_m, m->adam_v, m->best_theta, m->xi, m->eps, m->g_rp,
                   m->g_es, m->g};
    for (size_t i = 0; i < sizeof fl / sizeof *fl; i++) lopt_free(fl[i]);
    void *pl[] = {m->mask, m->loss_plus, m->loss_minus, m->diff, m->inner_steps,
                  m->reset_flags, m->div_flags, m->ids};
    for (size_t i = 0; i < sizeof pl / sizeof *pl; i++) free(pl[i]);
    lopt_meta_log_free(&m->log);
    lopt_est_sums_free(&m->sums);
    lopt_est_sums_free(&m->pooled);
    for (int i = 0; m->ring && i < m->cfg.pool; i++) lopt_est_sums_free(&m->ring[i]);
    free(m->ring);
    free(m);
}

const lopt_meta_cfg *lopt_meta_config(const lopt_meta *m) { return &m->cfg; }
const lopt_arch *lopt_meta_arch(const lopt_meta *m) { return &m->arch; }
const float *lopt_meta_theta(const lopt_meta *m) { return m->theta; }
const float *lopt_meta_gradient(const lopt_meta *m) { return m->g; }
int64_t lopt_meta_steps_done(const lopt_meta *m) { return m->step; }
/* a has the shape of the run's architecture (its buffers fit): the same form,
 * feature and layer counts; its constants (decays, time scales, step sizes) may
 * differ */
static int same_shape(const lopt_arch *a, const lopt_arch *b)
{
    return a->form == b->form && a->nmom == b->nmom && a->ntime == b->ntime &&
           lopt_arch_state_rows(a) == lopt_arch_state_rows(b) &&
           a->nhidden == b->nhidden && a->hidden == b->hidden &&
           lopt_arch_nparams(a) == lopt_arch_nparams(b);
}

lopt_status lopt_meta_set_theta(lopt_meta *m, const lopt_arch *a, const float *theta,
                                lopt_err *err)
{
    if (!same_shape(a, &m->arch))
        return lopt_fail(err, LOPT_EUSAGE, "the initial optimizer's architecture is not "
                         "shaped like the '%s' preset (form, momenta, time features, layers)",
                         m->cfg.arch);
    m->arch = *a;   /* the workers' buffers point at m->arch */
    memcpy(m->theta, theta, m->np * sizeof(float));
    return LOPT_OK;
}

void lopt_meta_set_outer_steps(lopt_meta *m, int64_t steps)
{
    LOPT_ASSERT(steps >= 0);   /* a checkpoint with a negative target could not resume */
    m->cfg.outer_steps = steps;
}
void lopt_meta_set_eval_every(lopt_meta *m, int64_t every)
{
    m->cfg.eval_every = every > 0 ? every : 0;
}
size_t lopt_meta_rows(const lopt_meta *m, const lopt_meta_row **rows)
{
    *rows = m->log.rows;
    return m->log.n;
}

void lopt_meta_set_evaluator(lopt_meta *m, lopt_meta_eval_fn fn, void *user)
{
    m->eval_fn = fn;
    m->eval_user = user;
}

int lopt_meta_best(const lopt_meta *m, const float **theta, int64_t *step, double *final)
{
    if (m->best_step < 0) return 0;
    if (theta) *theta = m->best_theta;
    if (step) *step = m->best_step;
    if (final) *final = m->best_final;
    return 1;
}

/* the truncation length of outer step `step` */
static int k_for_step(const lopt_meta_cfg *c, int64_t step)
{
    if (c->estimator == LOPT_EST_FULLES) return (int)c->horizon;
    if (c->K_max <= c->K) return c->K;
    double frac = c->K_grow > 0 ? fmin(1.0, (double)step / (double)c->K_grow) : 1.0;
    double k = c->K + (c->K_max - c->K) * frac;
    k *= 0.8 + 0.4 * lopt_rng_uniform(c->seed, STREAM_K, (uint64_t)step);
    int K = (int)lround(k);
    return K < 1 ? 1 : K;
}

/* eps (np) ~ N(0, sigma^2) at counter offset `at`, zero where theta is not trained */
static void draw_eps(const lopt_meta *m, float *eps, int stream, uint64_t at)
{
    lopt_rng_fill_normal(eps, m->np, m->cfg.sigma, m->cfg.seed, stream, at);
    if (m->mask)
        for (size_t i = 0; i < m->np; i++)
            if (!m->mask[i]) eps[i] = 0;
}

/* a new trajectory for sample s: instance seeds have the top bit set, so they
 * never equal the small integers used as meta-test seeds */
static void start_traj(const lopt_meta *m, worker *w, int s, lopt_traj *tr, uint64_t id)
{
    int first_life = tr->horizon == 0;   /* never started: allocation zeroes it */
    uint64_t seed = lopt_rng_u64(m->cfg.seed, STREAM_TRAJ, id) | (1ULL << 63);
    int64_t h = m->cfg.horizon;
    if (m->cfg.estimator != LOPT_EST_FULLES) {
        /* jittered horizons, and staggered phases: the first lives end at
         * different times (full-horizon es measures exactly the horizon) */
        h = (int64_t)llround((double)h * (0.8 + 0.4 * lopt_rng_uniform(m->cfg.seed,
                                                                        STREAM_HORIZON, id)));
        if (first_life) h = h * (s + 1) / m->cfg.samples;
    }
    if (h < 1) h = 1;
    lopt_traj_start(&w->ws, tr, seed, h);
}

/* whether sample s starts a new trajectory life this step */
static int sample_fresh(const lopt_meta *m, int s)
{
    return m->plus[s].needs_reset || m->cfg.estimator == LOPT_EST_FULLES;
}

/* Sample s's reset flag and perturbation for this step (nres: one per life; pes:
 * added to its sum xi). Every rank of an MPI job computes them for every sample
 * (they are pure functions of the seed, step and instance ids), so only the
 * sample's results travel. Writes only sample s's slots of m. */
static void sample_noise(lopt_meta *m, int s, int fresh)
{
    const lopt_meta_cfg *c = &m->cfg;
    size_t np = m->np;
    float *eps = m->eps + (size_t)s * np;
    if (fresh) m->reset_flags[s] = 1;
    if (c->estimator == LOPT_EST_NRES) {
        /* one perturbation per life */
        if (fresh) draw_eps(m, eps, STREAM_EPS_LIFE, m->ids[s] * np);
    } else {
        draw_eps(m, eps, STREAM_EPS, ((uint64_t)m->step * (uint64_t)c->samples + (uint64_t)s) * np);
    }
    if (c->estimator == LOPT_EST_PES) {
        float *xi = m->xi + (size_t)s * np;
        if (fresh) memset(xi, 0, np * sizeof(float));
        for (size_t i = 0; i < np; i++) xi[i] += eps[i];
    }
}

/* Sample s's pair on worker w: (re)starts its trajectory if needed (instance id
 * m->ids[s]), sets its perturbation and runs the pair. Writes only sample s's
 * slots of m. */
static void run_sample(lopt_meta *m, worker *w, int s, int K)
{
    const lopt_meta_cfg *c = &m->cfg;
    size_t np = m->np, n = m->n;
    int M = lopt_arch_state_rows(&m->arch);
    float *eps = m->eps + (size_t)s * np;
    lopt_traj *plus = &m->plus[s];
    lopt_traj *minus = persistent(c) ? &m->minus[s] : &w->minus;
    int fresh = sample_fresh(m, s);
    if (fresh) start_traj(m, w, s, plus, m->ids[s]);
    sample_noise(m, s, fresh);
    if (!persistent(c) || fresh) lopt_traj_copy(minus, plus, n, M);   /* common start */

    lopt_unroll_cfg uc = {.K = K, .outer_split = c->outer_split, .weight = c->weight,
                          .outer_batches = c->outer_batches, .loss_clip = c->loss_clip,
                          .diverge_factor = c->diverge_factor, .first_order = c->first_order};
    if (c->estimator == LOPT_EST_FULLES) uc.weight.kind = LOPT_WEIGHT_END;
    float *grp = uses_rp(c) ? m->g_rp + (size_t)s * np : NULL;
    lopt_pair_out po = lopt_pair_estimate(&w->ws, &w->pair, &uc, m->theta, eps, plus, minus, grp);
    if (grp && m->mask)
        for (size_t i = 0; i < np; i++)
            if (!m->mask[i]) grp[i] = 0;
    /* persistent pairs restart together */
    if (persistent(c) && (plus->needs_reset || minus->needs_reset))
        plus->needs_reset = minus->needs_reset = 1;
    m->loss_plus[s] = po.loss_plus;
    m->loss_minus[s] = po.loss_minus;
    m->inner_steps[s] = po.steps;
    m->div_flags[s] = po.diverged;
}

/* Reduces the samples in sample order: es samples from the (shaped) loss
 * differences, the step's sums, the pool of variances, the combined gradient. */
static void reduce_samples(lopt_meta *m, lopt_meta_row *row)
{
    const lopt_meta_cfg *c = &m->cfg;
    const int S = c->samples;
    const size_t np = m->np;
    for (int s = 0; s < S; s++) m->diff[s] = m->loss_plus[s] - m->loss_minus[s];
    if (uses_es(c)) lopt_es_shape(c->shape, m->diff, S);
    lopt_est_sums_clear(&m->sums);
    for (int s = 0; s < S; s++) {
        const float *dir = c->estimator == LOPT_EST_PES ? m->xi + (size_t)s * np
                                                        : m->eps + (size_t)s * np;
        if (uses_es(c)) lopt_es_sample(m->diff[s], c->sigma, dir, np, m->g_es);
        lopt_est_sums_add(&m->sums, uses_rp(c) ? m->g_rp + (size_t)s * np : NULL,
                          uses_es(c) ? m->g_es : NULL);
    }
    /* the variances: this step's samples, or pooled with the previous pool-1 steps' */
    const lopt_est_sums *var = &m->sums;
    if (c->pool > 1) {
        lopt_est_sums *slot = &m->ring[m->ring_pos];
        lopt_est_sums_clear(slot);
        lopt_est_sums_add_sums(slot, &m->sums);
        m->ring_pos = (m->ring_pos + 1) % c->pool;
        if (m->ring_fill < c->pool) m->ring_fill++;
        lopt_est_sums_clear(&m->pooled);
        for (int i = 0; i < m->ring_fill; i++) lopt_est_sums_add_sums(&m->pooled, &m->ring[i]);
        var = &m->pooled;
    }
    lopt_combine_kind kind = combine_kind(c);
    if (kind == LOPT_COMBINE_MERGED && var->count < 2) kind = LOPT_COMBINE_RP;
    lopt_est_stats es;
    lopt_est_combine(kind, &m->sums, var, m->mask, m->g, &es);
    row->g_rp_norm = es.g_rp_norm;
    row->g_es_norm = es.g_es_norm;
    row->v_rp = es.v_rp;
    row->v_es = es.v_es;
    row->w_es = es.w_es;
}

/* Adam on the trained coordinates of theta, the gradient clipped by value; a
 * non-finite gradient, or an update that would make theta non-finite, is refused
 * (returns 0, nothing changes). */
static int outer_update(lopt_meta *m)
{
    const lopt_meta_cfg *c = &m->cfg;
    const size_t np = m->np;
    for (size_t i = 0; i < np; i++)
        if (!isfinite(m->g[i])) return 0;
    const int64_t t = m->adam_t + 1;
    const lopt_adam_bias ab = lopt_adam_bias_at(0.9, 0.999, t);
    for (int pass = 0; pass < 2; pass++) {   /* 0: check, 1: apply */
        for (size_t i = 0; i < np; i++) {
            if (m->mask && !m->mask[i]) continue;
            float g = m->g[i];
            if (c->grad_clip > 0) g = fminf(fmaxf(g, -c->grad_clip), c->grad_clip);
            double dm = m->adam_m[i], dv = m->adam_v[i];
            lopt_adam_moments(&ab, &dm, &dv, g);
            float am = (float)dm, av = (float)dv;   /* the moments are kept in float */
            double upd = lopt_adam_dir(&ab, am, av, 1e-8);
            float th = m->theta[i] - (float)(c->outer_lr * upd);
            if (pass == 0) {
                if (!isfinite(th)) return 0;
                continue;
            }
            m->adam_m[i] = am;
            m->adam_v[i] = av;
            m->theta[i] = th;
        }
    }
    m->adam_t = t;
    return 1;
}

/* The full-horizon evaluation of the current theta; keeps it if it is the best. */
static lopt_status evaluate(lopt_meta *m, double *final, double *mean, lopt_err *err)
{
    if (!m->eval_fn)
        return lopt_fail(err, LOPT_EUSAGE, "eval_every > 0 needs an evaluator "
                         "(lopt_meta_set_evaluator)");
    lopt_status st = m->eval_fn(m->eval_user, &m->arch, m->theta, final, mean, err);
    if (st != LOPT_OK) return st;
    if (m->best_step < 0 || *final < m->best_final) {
        m->best_step = m->step;
        m->best_final = *final;
        memcpy(m->best_theta, m->theta, m->np * sizeof(float));
    }
    return LOPT_OK;
}

static int eval_due(const lopt_meta *m)
{
    return m->cfg.eval_every > 0 && m->step % m->cfg.eval_every == 0;
}

lopt_status lopt_meta_step(lopt_meta *m, lopt_meta_row *row, lopt_err *err)
{
    const lopt_meta_cfg *c = &m->cfg;
    const int S = c->samples;
    lopt_status st;
    memset(row, 0, sizeof *row);
    if (c->eval_every > 0 && !m->evaluated) {
        /* where meta-training starts from, as row 0 */
        double t0 = lopt_now();
        lopt_meta_row r0 = {.step = m->step, .outer_loss = NAN, .g_rp_norm = NAN,
                            .g_es_norm = NAN, .v_rp = NAN, .v_es = NAN, .w_es = NAN,
                            .inner_steps_per_s = NAN};
        if ((st = evaluate(m, &r0.eval_final, &r0.eval_mean, err)) != LOPT_OK) return st;
        m->evaluated = 1;
        m->time_s += lopt_now() - t0;
        r0.resets = m->resets;
        r0.diverged = m->diverged;
        r0.time_s = m->time_s;
        lopt_meta_log_push(&m->log, &r0);
    }
    int K = k_for_step(c, m->step);
    if (K > m->tape) K = m->tape;
    double t0 = lopt_now();
    memset(m->reset_flags, 0, (size_t)S * sizeof(int));

    /* The samples of an outer step are independent: one per worker at a time.
     * Restarting trajectories get their instance ids in sample order before the
     * parallel loop, so the ids do not depend on which thread gets there first. */
    for (int s = 0; s < S; s++)
        if (sample_fresh(m, s)) m->ids[s] = m->traj_counter++;
    /* under MPI this rank runs the samples of its block; the others' noise is
     * drawn here and their results come from their owners */
    int lo, hi;
    lopt_dist_block(S, lopt_dist_rank(), &lo, &hi);
#ifdef _OPENMP
#pragma omp parallel for num_threads(m->nworkers) schedule(static, 1)
#endif
    for (int s = lo; s < hi; s++) {
        int wi = 0;
#ifdef _OPENMP
        wi = omp_get_thread_num();
#endif
        run_sample(m, &m->workers[wi], s, K);
    }
    for (int s = 0; s < S; s++)
        if (s < lo || s >= hi) sample_noise(m, s, sample_fresh(m, s));
    lopt_meta_dist_share(S, m->np, m->loss_plus, m->loss_minus, m->inner_steps, m->div_flags,
                         uses_rp(c) ? m->g_rp : NULL, m->plus, persistent(c) ? m->minus : NULL);
    double loss = 0;
    long steps = 0;
    for (int s = 0; s < S; s++) {
        m->resets += m->reset_flags[s];
        m->diverged += m->div_flags[s];
        loss += 0.5 * (m->loss_plus[s] + m->loss_minus[s]);
        steps += m->inner_steps[s];
    }
    reduce_samples(m, row);
    row->skipped = !outer_update(m);
    m->step++;
    double dt = lopt_now() - t0;
    row->step = m->step;
    row->outer_loss = loss / S;
    row->K = K;
    row->inner_steps_per_s = (double)steps / dt;
    row->eval_final = row->eval_mean = NAN;
    if (eval_due(m) && (st = evaluate(m, &row->eval_final, &row->eval_mean, err)) != LOPT_OK)
        return st;
    m->time_s += lopt_now() - t0;
    row->resets = m->resets;
    row->diverged = m->diverged;
    row->time_s = m->time_s;
    lopt_meta_log_push(&m->log, row);
    return LOPT_OK;
}

/* ---- checkpoints ---------------------------------------------------------------- */

static void put_traj(ser_out *o, const lopt_traj *t, size_t n, int M)
{
    ser_u64(o, (uint64_t)t->t);
    ser_u64(o, (uint64_t)t->horizon);
    ser_u64(o, t->task_seed);
    ser_f64(o, t->init_loss);
    ser_u64(o, (uint64_t)t->needs_reset);
    ser_f32s(o, t->w, n);
    ser_f32s(o, t->m, (size_t)M * n);
}

static void get_traj(ser_in *in, lopt_traj *t, size_t n, int M)
{
    t->t = (int64_t)ser_get_u64(in);
    t->horizon = (int64_t)ser_get_u64(in);
    t->task_seed = ser_get_u64(in);
    t->init_loss = ser_get_f64(in);
    t->needs_reset = (int)ser_get_u64(in);
    ser_get_f32s(in, t->w, n);
    ser_get_f32s(in, t->m, (size_t)M * n);
}

static void put_cfg(ser_out *o, const lopt_meta_cfg *c)
{
    ser_bytes(o, c->task, sizeof c->task);
    ser_bytes(o, c->arch, sizeof c->arch);
    ser_u64(o, (uint64_t)c->estimator);
    ser_u64(o, (uint64_t)c->K);
    ser_u64(o, (uint64_t)c->K_max);
    ser_u64(o, (uint64_t)c->K_grow);
    ser_u64(o, (uint64_t)c->samples);
    ser_f32s(o, &c->sigma, 1);
    ser_u64(o, (uint64_t)c->outer_split);
    ser_f32s(o, &c->outer_lr, 1);
    ser_f32s(o, &c->grad_clip, 1);
    ser_u64(o, (uint64_t)c->outer_steps);
    ser_u64(o, (uint64_t)c->horizon);
    ser_u64(o, c->seed);
    ser_f32s(o, &c->loss_clip, 1);
    ser_f32s(o, &c->diverge_factor, 1);
    ser_u64(o, (uint64_t)c->first_order);
    ser_u64(o, (uint64_t)c->threads);
    /* version 2 */
    ser_u64(o, (uint64_t)c->weight.kind);
    ser_f32s(o, &c->weight.tail, 1);
    ser_u64(o, (uint64_t)c->outer_batches);
    ser_u64(o, (uint64_t)c->pool);
    ser_u64(o, (uint64_t)c->shape);
    ser_bytes(o, c->train, sizeof c->train);
    ser_u64(o, (uint64_t)c->eval_every);
    ser_u64(o, (uint64_t)c->neval);
    for (int i = 0; i < LOPT_META_MAX_EVAL; i++) ser_u64(o, c->eval_seeds[i]);
    ser_u64(o, (uint64_t)c->eval_points);
}

static void get_cfg(ser_in *in, lopt_meta_cfg *c, uint64_t version)
{
    const unsigned char *p = ser_take(in, sizeof c->task);
    if (p) memcpy(c->task, p, sizeof c->task);
    p = ser_take(in, sizeof c->arch);
    if (p) memcpy(c->arch, p, sizeof c->arch);
    c->task[sizeof c->task - 1] = 0;
    c->arch[sizeof c->arch - 1] = 0;
    c->estimator = (lopt_est_kind)ser_get_u64(in);
    c->K = (int)ser_get_u64(in);
    c->K_max = (int)ser_get_u64(in);
    c->K_grow = (int64_t)ser_get_u64(in);
    c->samples = (int)ser_get_u64(in);
    ser_get_f32s(in, &c->sigma, 1);
    c->outer_split = (lopt_split)ser_get_u64(in);
    ser_get_f32s(in, &c->outer_lr, 1);
    ser_get_f32s(in, &c->grad_clip, 1);
    c->outer_steps = (int64_t)ser_get_u64(in);
    c->horizon = (int64_t)ser_get_u64(in);
    c->seed = ser_get_u64(in);
    ser_get_f32s(in, &c->loss_clip, 1);
    ser_get_f32s(in, &c->diverge_factor, 1);
    c->first_order = (int)ser_get_u64(in);
    c->threads = (int)ser_get_u64(in);
    if (version < 2) return;   /* version 1: the defaults of the later fields */
    c->weight.kind = (lopt_weight_kind)ser_get_u64(in);
    ser_get_f32s(in, &c->weight.tail, 1);
    c->outer_batches = (int)ser_get_u64(in);
    c->pool = (int)ser_get_u64(in);
    c->shape = (lopt_shape_kind)ser_get_u64(in);
    p = ser_take(in, sizeof c->train);
    if (p) memcpy(c->train, p, sizeof c->train);
    c->train[sizeof c->train - 1] = 0;
    c->eval_every = (int64_t)ser_get_u64(in);
    c->neval = (int)ser_get_u64(in);
    for (int i = 0; i < LOPT_META_MAX_EVAL; i++) c->eval_seeds[i] = ser_get_u64(in);
    c->eval_points = (int)ser_get_u64(in);
    if ((unsigned)c->weight.kind > LOPT_WEIGHT_TAIL) in->bad = 1;
}

static void put_sums(ser_out *o, const lopt_est_sums *s)
{
    ser_u64(o, (uint64_t)s->count);
    ser_u64(o, (uint64_t)s->rp_nonfinite);
    ser_f64s(o, s->sum_rp, s->np);
    ser_f64s(o, s->sq_rp, s->np);
    ser_f64s(o, s->sum_es, s->np);
    ser_f64s(o, s->sq_es, s->np);
}

static void get_sums(ser_in *in, lopt_est_sums *s)
{
    s->count = (int64_t)ser_get_u64(in);
    s->rp_nonfinite = (int64_t)ser_get_u64(in);
    ser_get_f64s(in, s->sum_rp, s->np);
    ser_get_f64s(in, s->sq_rp, s->np);
    ser_get_f64s(in, s->sum_es, s->np);
    ser_get_f64s(in, s->sq_es, s->np);
}

/* the state that version 2 added: nres perturbations, the pool, the best theta */
static void put_state_v2(ser_out *o, const lopt_meta *m)
{
    const lopt_meta_cfg *c = &m->cfg;
    /* the architecture itself (a warm start may change the preset's constants), as a
     * .lopt image: its reader validates it */
    unsigned char *img = NULL;
    size_t len = 0;
    float *zeros = lopt_floats(m->np);   /* theta itself is stored below as it is */
    lopt_status st = lopt_file_encode(&m->arch, zeros, NULL, &img, &len, NULL);
    LOPT_ASSERT(st == LOPT_OK);
    ser_blob(o, img, len);
    free(img);
    lopt_free(zeros);
    if (c->estimator == LOPT_EST_NRES) ser_f32s(o, m->eps, (size_t)c->samples * m->np);
    ser_u64(o, (uint64_t)m->ring_pos);
    ser_u64(o, (uint64_t)m->ring_fill);
    for (int i = 0; i < m->ring_fill; i++) put_sums(o, &m->ring[i]);
    ser_u64(o, (uint64_t)m->evaluated);
    ser_u64(o, (uint64_t)m->best_step);
    ser_f64(o, m->best_final);
    ser_f32s(o, m->best_theta, m->np);
}

static void get_state_v2(ser_in *in, lopt_meta *m)
{
    const lopt_meta_cfg *c = &m->cfg;
    size_t len;
    const unsigned char *img = ser_get_blob(in, &len);
    lopt_arch a;
    float *th = NULL;
    if (!img || lopt_file_decode(img, len, &a, &th, NULL, NULL) != LOPT_OK ||
        !same_shape(&a, &m->arch)) {
        lopt_free(th);
        in->bad = 1;
        return;
    }
    m->arch = a;
    lopt_free(th);
    if (c->estimator == LOPT_EST_NRES) ser_get_f32s(in, m->eps, (size_t)c->samples * m->np);
    m->ring_pos = (int)ser_get_u64(in);
    m->ring_fill = (int)ser_get_u64(in);
    if (m->ring_pos < 0 || m->ring_pos >= c->pool || m->ring_fill < 0 || m->ring_fill > c->pool) {
        in->bad = 1;
        return;
    }
    for (int i = 0; i < m->ring_fill; i++) get_sums(in, &m->ring[i]);
    m->evaluated = (int)ser_get_u64(in);
    m->best_step = (int64_t)ser_get_u64(in);
    m->best_final = ser_get_f64(in);
    ser_get_f32s(in, m->best_theta, m->np);
}

lopt_status lopt_meta_save(const lopt_meta *m, const char *path, lopt_err *err)
{
    const lopt_meta_cfg *c = &m->cfg;
    ser_out o = {0};
    ser_bytes(&o, CKPT_MAGIC, 8);
    ser_u64(&o, CKPT_VERSION);
    put_cfg(&o, c);
    ser_u64(&o, (uint64_t)m->step);
    ser_u64(&o, m->traj_counter);
    ser_u64(&o, (uint64_t)m->resets);
    ser_u64(&o, (uint64_t)m->diverged);
    ser_f64(&o, m->time_s);
    ser_u64(&o, (uint64_t)m->adam_t);
    ser_u64(&o, m->np);
    ser_u64(&o, m->n);
    ser_f32s(&o, m->theta, m->np);
    ser_f32s(&o, m->adam_m, m->np);
    ser_f32s(&o, m->adam_v, m->np);
    for (int s = 0; s < c->samples; s++) put_traj(&o, &m->plus[s], m->n, lopt_arch_state_rows(&m->arch));
    if (persistent(c))
        for (int s = 0; s < c->samples; s++) put_traj(&o, &m->minus[s], m->n, lopt_arch_state_rows(&m->arch));
    if (c->estimator == LOPT_EST_PES) ser_f32s(&o, m->xi, (size_t)c->samples * m->np);
    put_state_v2(&o, m);
    lopt_meta_log_put(&o, &m->log);
    uint32_t crc = lopt_crc32(o.p, o.len);
    ser_u64(&o, crc);
    /* never a checkpoint that lopt_meta_load would refuse as too large */
    lopt_status st = o.len > LOPT_META_CKPT_MAX
        ? lopt_fail(err, LOPT_EUSAGE, "cannot checkpoint: %zu bytes, above the %zu a checkpoint "
                    "may have (fewer --samples)", o.len, (size_t)LOPT_META_CKPT_MAX)
        : lopt_write_atomic(path, o.p, o.len, err);
    free(o.p);
    return st;
}

/* the checkpoint in data (len bytes, malloc'ed; freed here) */
static lopt_status load_owned(lopt_meta **out, unsigned char *data, size_t len, const char *path,
                              lopt_err *err)
{
    *out = NULL;
    lopt_status st;
    if (len < 16 || memcmp(data, CKPT_MAGIC, 8) != 0) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: not a lopt meta-training checkpoint", path);
    }
    ser_in crc_in = {data + len - 8, 8, 0, 0};
    uint64_t crc = ser_get_u64(&crc_in);
    if (crc != lopt_crc32(data, len - 8)) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: corrupt checkpoint (checksum mismatch)", path);
    }
    ser_in in = {data, len - 8, 8, 0};
    uint64_t version = ser_get_u64(&in);
    if (version < 1 || version > CKPT_VERSION) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: unsupported checkpoint version", path);
    }
    lopt_meta_cfg cfg;
    lopt_meta_cfg_default(&cfg);
    get_cfg(&in, &cfg, version);
    if (in.bad || (unsigned)cfg.estimator >= LOPT_EST_COUNT ||
        (version < 2 && cfg.estimator > LOPT_EST_PES)) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: truncated or invalid checkpoint", path);
    }
    lopt_meta *m;
    if ((st = meta_alloc(&m, &cfg, err)) != LOPT_OK) {
        free(data);
        return st;
    }
    m->step = (int64_t)ser_get_u64(&in);
    m->traj_counter = ser_get_u64(&in);
    m->resets = (int64_t)ser_get_u64(&in);
    m->diverged = (int64_t)ser_get_u64(&in);
    m->time_s = ser_get_f64(&in);
    m->adam_t = (int64_t)ser_get_u64(&in);
    uint64_t np = ser_get_u64(&in), n = ser_get_u64(&in);
    if (np != m->np || n != m->n) in.bad = 1;
    if (!in.bad) {
        ser_get_f32s(&in, m->theta, m->np);
        ser_get_f32s(&in, m->adam_m, m->np);
        ser_get_f32s(&in, m->adam_v, m->np);
        for (int s = 0; s < cfg.samples; s++) get_traj(&in, &m->plus[s], m->n, lopt_arch_state_rows(&m->arch));
        if (persistent(&cfg))
            for (int s = 0; s < cfg.samples; s++) get_traj(&in, &m->minus[s], m->n, lopt_arch_state_rows(&m->arch));
        if (cfg.estimator == LOPT_EST_PES) ser_get_f32s(&in, m->xi, (size_t)cfg.samples * m->np);
        if (version >= 2) get_state_v2(&in, m);
        if (version >= 3) {
            lopt_meta_log_get(&in, &m->log);
        } else {
            size_t loglen;
            const unsigned char *log = ser_get_blob(&in, &loglen);
            if (log && !lopt_meta_log_from_csv(log, loglen, &m->log)) in.bad = 1;
        }
    }
    int bad = in.bad || in.pos != in.len;
    free(data);
    if (bad) {
        lopt_meta_free(m);
        return lopt_fail(err, LOPT_EFORMAT, "%s: truncated or inconsistent checkpoint", path);
    }
    *out = m;
    return LOPT_OK;
}

lopt_status lopt_meta_load(lopt_meta **out, const char *path, lopt_err *err)
{
    *out = NULL;
    unsigned char *data;
    size_t len;
    lopt_status st = lopt_read_file_max(path, LOPT_META_CKPT_MAX, CKPT_MAGIC, 8,
                                        "a lopt meta-training checkpoint", &data, &len, err);
    if (st != LOPT_OK) return st;
    return load_owned(out, data, len, path, err);
}

lopt_status lopt_meta_load_image(lopt_meta **out, const unsigned char *data, size_t len,
                                 const char *path, lopt_err *err)
{
    unsigned char *copy = malloc(len ? len : 1);
    LOPT_ASSERT(copy);
    memcpy(copy, data, len);
    return load_owned(out, copy, len, path, err);
}

/* ---- across ranks (meta/dist.h) ------------------------------------------------------ */

void lopt_meta_gather(lopt_meta *m)
{
    lopt_meta_dist_gather_trajs(m->cfg.samples, m->plus, persistent(&m->cfg) ? m->minus : NULL,
                                m->n, lopt_arch_state_rows(&m->arch));
}

/* FNV-1a, 64 bits: not a CRC, whose value over data that end with their own CRC
 * (a .lopt image does) is a constant */
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

void lopt_meta_fingerprint(const lopt_meta *m, uint64_t *cfg_hash, uint64_t *state_hash)
{
    lopt_meta_cfg c = m->cfg;
    c.threads = 0;   /* does not change the numbers */
    ser_out o = {0};
    put_cfg(&o, &c);
    *cfg_hash = fnv1a(o.p, o.len);
    o.len = 0;
    unsigned char *img = NULL;
    size_t len = 0;
    lopt_status st = lopt_file_encode(&m->arch, m->theta, NULL, &img, &len, NULL);
    LOPT_ASSERT(st == LOPT_OK);
    ser_blob(&o, img, len);
    free(img);
    ser_f32s(&o, m->adam_m, m->np);
    ser_f32s(&o, m->adam_v, m->np);
    ser_u64(&o, (uint64_t)m->adam_t);
    ser_u64(&o, (uint64_t)m->step);
    ser_u64(&o, m->traj_counter);
    *state_hash = fnv1a(o.p, o.len);
    free(o.p);
}
