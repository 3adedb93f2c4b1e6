/* meta.c - meta-training: estimators, outer Adam, checkpoints (see meta.h). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/ser.h"
#include "lopt/lopt_file.h"
#include "meta/meta.h"

const char *const lopt_est_names[] = {"rp", "es", "merged", "pes"};
const char lopt_meta_csv_header[] =
    "step,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,K,inner_steps_per_s,resets,"
    "diverged,skipped,time_s\n";

enum { STREAM_EPS = 10, STREAM_TRAJ = 11, STREAM_K = 12, STREAM_HORIZON = 13 };
#define VAR_FLOOR 1e-8
#define CKPT_MAGIC "LOPTCKPT"
#define CKPT_VERSION 1

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
}

typedef struct {
    lopt_task task;
    lopt_unroll_ws ws;
    lopt_traj minus;          /* scratch: the - side of a pair (not pes) */
    float *theta_pm;          /* (np) theta + eps or theta - eps */
    float *g_minus;           /* (np) rp gradient of the - side */
} worker;

struct lopt_meta {
    lopt_meta_cfg cfg;
    lopt_arch arch;
    size_t np, n;
    int nworkers, tape;
    worker *workers;
    float *theta, *adam_m, *adam_v;   /* (np) */
    int64_t adam_t;
    int64_t step;                     /* outer steps done */
    uint64_t traj_counter;            /* trajectories started (instance seeds) */
    int64_t resets, diverged;
    double time_s;
    lopt_traj *plus, *minus;          /* (S) live trajectories; minus only for pes */
    float *xi;                        /* (S, np) pes perturbation sums */
    /* per outer step */
    float *eps;                       /* (S, np) */
    float *g_rp, *g_es;               /* (S, np) per-sample estimates */
    double *loss;                     /* (S) */
    long *inner_steps;                /* (S) */
    int *reset_flags, *div_flags;     /* (S) */
    float *g;                         /* (np) the combined gradient */
    double *sum_rp, *sq_rp, *sum_es, *sq_es;   /* (np) */
    char *log;
    size_t log_len, log_cap;
};

static int uses_rp(const lopt_meta_cfg *c)
{
    return c->estimator == LOPT_EST_RP || c->estimator == LOPT_EST_MERGED;
}
static int uses_es(const lopt_meta_cfg *c) { return c->estimator != LOPT_EST_RP; }

static int tape_len(const lopt_meta_cfg *c)
{
    int k = c->K_max > c->K ? c->K_max : c->K;
    return (int)ceil(k * 1.2) + 1;
}

static void log_append(lopt_meta *m, const char *s)
{
    size_t n = strlen(s);
    if (m->log_len + n + 1 > m->log_cap) {
        m->log_cap = (m->log_len + n + 1) * 2;
        m->log = realloc(m->log, m->log_cap);
        LOPT_ASSERT(m->log);
    }
    memcpy(m->log + m->log_len, s, n + 1);
    m->log_len += n;
}

static lopt_status check_cfg(const lopt_meta_cfg *c, lopt_err *err)
{
    if (c->K < 1 || c->K > 100000) return lopt_fail(err, LOPT_EUSAGE, "--K must be in 1..100000");
    if (c->K_max != 0 && (c->K_max < c->K || c->K_max > 100000))
        return lopt_fail(err, LOPT_EUSAGE, "--K-max must be >= --K (and <= 100000)");
    if (c->samples < 1 || c->samples > 4096)
        return lopt_fail(err, LOPT_EUSAGE, "--samples must be in 1..4096");
    if (c->estimator == LOPT_EST_MERGED && c->samples < 2)
        return lopt_fail(err, LOPT_EUSAGE, "merged needs --samples >= 2 (it uses variances)");
    if (!(c->sigma >= 0) || (uses_es(c) && !(c->sigma > 0)))
        return lopt_fail(err, LOPT_EUSAGE, "--sigma must be positive for es, merged and pes");
    if (!(c->outer_lr > 0)) return lopt_fail(err, LOPT_EUSAGE, "--outer-lr must be positive");
    if (c->horizon < 1) return lopt_fail(err, LOPT_EUSAGE, "--horizon must be positive");
    if (c->outer_steps < 0) return lopt_fail(err, LOPT_EUSAGE, "--outer-steps must be >= 0");
    if (c->outer_split != LOPT_SPLIT_TRAIN && c->outer_split != LOPT_SPLIT_VALID)
        return lopt_fail(err, LOPT_EUSAGE, "outer loss must be on train or valid");
    return LOPT_OK;
}

static lopt_status meta_alloc(lopt_meta **out, const lopt_meta_cfg *cfg, lopt_err *err)
{
    *out = NULL;
    lopt_status st = check_cfg(cfg, err);
    if (st != LOPT_OK) return st;
    lopt_meta *m = lopt_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    if ((st = lopt_arch_preset(&m->arch, cfg->arch, err)) != LOPT_OK) {
        free(m);
        return st;
    }
    m->np = lopt_arch_nparams(&m->arch);
    int threads = 1;
#ifdef _OPENMP
    threads = cfg->threads > 0 ? cfg->threads : omp_get_max_threads();
#endif
    if (threads > cfg->samples) threads = cfg->samples;
    if (threads > 1) openblas_set_num_threads(1);   /* parallel over samples instead */
    m->nworkers = threads;
    m->tape = tape_len(cfg);
    m->workers = lopt_xcalloc((size_t)threads, sizeof *m->workers);
    for (int i = 0; i < threads; i++) {
        worker *w = &m->workers[i];
        if ((st = lopt_task_create(&w->task, cfg->task, NULL, err)) != LOPT_OK) {
            m->nworkers = i;
            lopt_meta_free(m);
            return st;
        }
        lopt_unroll_ws_init(&w->ws, &w->task, &m->arch, m->tape);
        lopt_traj_alloc(&w->minus, w->task.n, m->arch.nmom);
        w->theta_pm = lopt_floats(m->np);
        w->g_minus = lopt_floats(m->np);
    }
    m->n = m->workers[0].task.n;
    size_t S = (size_t)cfg->samples, np = m->np;
    m->theta = lopt_floats(np);
    m->adam_m = lopt_floats(np);
    m->adam_v = lopt_floats(np);
    m->plus = lopt_xcalloc(S, sizeof *m->plus);
    for (size_t s = 0; s < S; s++) lopt_traj_alloc(&m->plus[s], m->n, m->arch.nmom);
    if (cfg->estimator == LOPT_EST_PES) {
        m->minus = lopt_xcalloc(S, sizeof *m->minus);
        for (size_t s = 0; s < S; s++) lopt_traj_alloc(&m->minus[s], m->n, m->arch.nmom);
        m->xi = lopt_floats(S * np);
    }
    m->eps = lopt_floats(S * np);
    m->g_rp = lopt_floats(S * np);
    m->g_es = lopt_floats(S * np);
    m->loss = lopt_xcalloc(S, sizeof *m->loss);
    m->inner_steps = lopt_xcalloc(S, sizeof *m->inner_steps);
    m->reset_flags = lopt_xcalloc(S, sizeof(int));
    m->div_flags = lopt_xcalloc(S, sizeof(int));
    m->g = lopt_floats(np);
    m->sum_rp = lopt_xcalloc(np, sizeof(double));
    m->sq_rp = lopt_xcalloc(np, sizeof(double));
    m->sum_es = lopt_xcalloc(np, sizeof(double));
    m->sq_es = lopt_xcalloc(np, sizeof(double));
    *out = m;
    return LOPT_OK;
}

lopt_status lopt_meta_create(lopt_meta **out, const lopt_meta_cfg *cfg, lopt_err *err)
{
    lopt_meta *m;
    lopt_status st = meta_alloc(&m, cfg, err);
    if (st != LOPT_OK) return st;
    lopt_theta_init(&m->arch, cfg->seed, m->theta);
    log_append(m, lopt_meta_csv_header);
    *out = m;
    return LOPT_OK;
}

void lopt_meta_free(lopt_meta *m)
{
    if (!m) return;
    for (int i = 0; i < m->nworkers; i++) {
        worker *w = &m->workers[i];
        lopt_free(w->theta_pm);
        lopt_free(w->g_minus);
        lopt_traj_free(&w->minus);
        lopt_unroll_ws_free(&w->ws);
        w->task.free(&w->task);
    }
    free(m->workers);
    for (int s = 0; m->plus && s < m->cfg.samples; s++) lopt_traj_free(&m->plus[s]);
    for (int s = 0; m->minus && s < m->cfg.samples; s++) lopt_traj_free(&m->minus[s]);
    free(m->plus);
    free(m->minus);
    float *fl[] = {m->theta, m->adam_m, m->adam_v, m->xi, m->eps, m->g_rp, m->g_es, m->g};
    for (size_t i = 0; i < sizeof fl / sizeof *fl; i++) lopt_free(fl[i]);
    free(m->loss);
    free(m->inner_steps);
    free(m->reset_flags);
    free(m->div_flags);
    free(m->sum_rp);
    free(m->sq_rp);
    free(m->sum_es);
    free(m->sq_es);
    free(m->log);
    free(m);
}

const lopt_meta_cfg *lopt_meta_config(const lopt_meta *m) { return &m->cfg; }
const lopt_arch *lopt_meta_arch(const lopt_meta *m) { return &m->arch; }
const float *lopt_meta_theta(const lopt_meta *m) { return m->theta; }
int64_t lopt_meta_steps_done(const lopt_meta *m) { return m->step; }
lopt_status lopt_meta_set_theta(lopt_meta *m, const lopt_arch *a, const float *theta,
                                lopt_err *err)
{
    if (!lopt_arch_equal(a, &m->arch))
        return lopt_fail(err, LOPT_EUSAGE, "the initial optimizer's architecture is not "
                         "the '%s' preset", m->cfg.arch);
    memcpy(m->theta, theta, m->np * sizeof(float));
    return LOPT_OK;
}

void lopt_meta_set_outer_steps(lopt_meta *m, int64_t steps) { m->cfg.outer_steps = steps; }
const char *lopt_meta_log(const lopt_meta *m) { return m->log; }

/* the truncation length of outer step `step` */
static int k_for_step(const lopt_meta_cfg *c, int64_t step)
{
    if (c->K_max <= c->K) return c->K;
    double frac = c->K_grow > 0 ? fmin(1.0, (double)step / (double)c->K_grow) : 1.0;
    double k = c->K + (c->K_max - c->K) * frac;
    k *= 0.8 + 0.4 * lopt_rng_uniform(c->seed, STREAM_K, (uint64_t)step);
    int K = (int)lround(k);
    return K < 1 ? 1 : K;
}

/* a new trajectory for sample s: instance seeds have the top bit set, so they
 * never equal the small integers used as meta-test seeds */
static void start_traj(const lopt_meta *m, worker *w, int s, lopt_traj *tr, uint64_t id)
{
    int first_life = tr->horizon == 0;   /* never started: allocation zeroes it */
    uint64_t seed = lopt_rng_u64(m->cfg.seed, STREAM_TRAJ, id) | (1ULL << 63);
    double jitter = 0.8 + 0.4 * lopt_rng_uniform(m->cfg.seed, STREAM_HORIZON, id);
    int64_t h = (int64_t)llround((double)m->cfg.horizon * jitter);
    /* staggered phases: the first lives end at different times */
    if (first_life) h = h * (s + 1) / m->cfg.samples;
    if (h < 1) h = 1;
    lopt_traj_start(&w->ws, tr, seed, h);
}

/* One antithetic pair for sample s on worker w; a trajectory that needs a
 * restart gets instance id `id`. Writes only sample s's slots of m. */
static void run_sample(lopt_meta *m, worker *w, int s, int K, uint64_t id)
{
    const lopt_meta_cfg *c = &m->cfg;
    size_t np = m->np, n = m->n;
    int M = m->arch.nmom;
    float *eps = m->eps + (size_t)s * np, *grp = m->g_rp + (size_t)s * np;
    float *ges = m->g_es + (size_t)s * np;
    float *tp = w->theta_pm, *gm = uses_rp(c) ? w->g_minus : NULL;
    lopt_unroll_cfg uc = {.K = K, .outer_split = c->outer_split, .loss_clip = c->loss_clip,
                          .diverge_factor = c->diverge_factor, .first_order = c->first_order};
    lopt_traj *plus = &m->plus[s];
    lopt_traj *minus = c->estimator == LOPT_EST_PES ? &m->minus[s] : &w->minus;

    lopt_rng_fill_normal(eps, np, c->sigma, c->seed, STREAM_EPS,
                         ((uint64_t)m->step * (uint64_t)c->samples + (uint64_t)s) * np);
    if (c->estimator == LOPT_EST_PES) {
        float *xi = m->xi + (size_t)s * np;
        if (plus->needs_reset) {
            start_traj(m, w, s, plus, id);
            lopt_traj_copy(minus, plus, n, M);
            memset(xi, 0, np * sizeof(float));
            m->reset_flags[s] = 1;
        }
        for (size_t i = 0; i < np; i++) xi[i] += eps[i];
    } else {
        if (plus->needs_reset) {
            start_traj(m, w, s, plus, id);
            m->reset_flags[s] = 1;
        }
        lopt_traj_copy(minus, plus, n, M);   /* common start */
    }
    memset(grp, 0, np * sizeof(float));
    for (size_t i = 0; i < np; i++) tp[i] = m->theta[i] + eps[i];
    lopt_unroll_out op = lopt_unroll(&w->ws, &uc, tp, plus, gm ? grp : NULL);
    for (size_t i = 0; i < np; i++) tp[i] = m->theta[i] - eps[i];
    if (gm) memset(gm, 0, np * sizeof(float));
    lopt_unroll_out om = lopt_unroll(&w->ws, &uc, tp, minus, gm);
    if (gm)
        for (size_t i = 0; i < np; i++) grp[i] = 0.5f * (grp[i] + gm[i]);
    if (uses_es(c)) {
        const float *dir = c->estimator == LOPT_EST_PES ? m->xi + (size_t)s * np : eps;
        double scale = (op.loss - om.loss) / (2.0 * (double)c->sigma * c->sigma);
        for (size_t i = 0; i < np; i++) ges[i] = (float)(scale * dir[i]);
    }
    /* pes keeps both sides alive and resets them together */
    if (c->estimator == LOPT_EST_PES && (plus->needs_reset || minus->needs_reset))
        plus->needs_reset = minus->needs_reset = 1;
    m->loss[s] = 0.5 * (op.loss + om.loss);
    m->inner_steps[s] = op.steps + om.steps;
    m->div_flags[s] = op.diverged || om.diverged;
}

double lopt_merge(const double *sum_rp, const double *sq_rp, const double *sum_es,
                  const double *sq_es, int S, size_t np, float *g, double *v_rp,
                  double *v_es)
{
    double w_sum = 0;
    *v_rp = *v_es = 0;
    for (size_t i = 0; i < np; i++) {
        double mr = sum_rp[i] / S, me = sum_es[i] / S;
        double vr = fmax(0.0, (sq_rp[i] - S * mr * mr) / (S - 1)) + VAR_FLOOR;
        double ve = fmax(0.0, (sq_es[i] - S * me * me) / (S - 1)) + VAR_FLOOR;
        double w_es = (1.0 / ve) / (1.0 / vr + 1.0 / ve);
        g[i] = (float)((mr / vr + me / ve) / (1.0 / vr + 1.0 / ve));
        *v_rp += vr;
        *v_es += ve;
        w_sum += w_es;
    }
    return w_sum / (double)np;
}

static double norm_of_mean(const double *sum, int S, size_t np)
{
    double acc = 0;
    for (size_t i = 0; i < np; i++) acc += (sum[i] / S) * (sum[i] / S);
    return sqrt(acc);
}

static double variance_sum(const double *sum, const double *sq, int S, size_t np)
{
    if (S < 2) return NAN;
    double acc = 0;
    for (size_t i = 0; i < np; i++) {
        double mu = sum[i] / S;
        acc += fmax(0.0, (sq[i] - S * mu * mu) / (S - 1));
    }
    return acc;
}

lopt_status lopt_meta_step(lopt_meta *m, lopt_meta_row *row, lopt_err *err)
{
    const lopt_meta_cfg *c = &m->cfg;
    const int S = c->samples;
    const size_t np = m->np;
    int K = k_for_step(c, m->step);
    if (K > m->tape) K = m->tape;
    double t0 = lopt_now();
    memset(m->reset_flags, 0, (size_t)S * sizeof(int));

    /* The samples of an outer step are independent: one per worker at a time.
     * Restarting trajectories get their instance ids in sample order before the
     * parallel loop, so the ids do not depend on which thread gets there first. */
    uint64_t *ids = lopt_xcalloc((size_t)S, sizeof *ids);
    for (int s = 0; s < S; s++)
        if (m->plus[s].needs_reset) ids[s] = m->traj_counter++;
#ifdef _OPENMP
#pragma omp parallel for num_threads(m->nworkers) schedule(static, 1)
#endif
    for (int s = 0; s < S; s++) {
        int wi = 0;
#ifdef _OPENMP
        wi = omp_get_thread_num();
#endif
        run_sample(m, &m->workers[wi], s, K, ids[s]);
    }
    free(ids);
    for (int s = 0; s < S; s++) {
        m->resets += m->reset_flags[s];
        m->diverged += m->div_flags[s];
    }

    /* reduce in sample order */
    memset(m->sum_rp, 0, np * sizeof(double));
    memset(m->sq_rp, 0, np * sizeof(double));
    memset(m->sum_es, 0, np * sizeof(double));
    memset(m->sq_es, 0, np * sizeof(double));
    double loss = 0;
    long steps = 0;
    for (int s = 0; s < S; s++) {
        const float *gr = m->g_rp + (size_t)s * np, *ge = m->g_es + (size_t)s * np;
        for (size_t i = 0; i < np; i++) {
            m->sum_rp[i] += gr[i];
            m->sq_rp[i] += (double)gr[i] * gr[i];
            m->sum_es[i] += ge[i];
            m->sq_es[i] += (double)ge[i] * ge[i];
        }
        loss += m->loss[s];
        steps += m->inner_steps[s];
    }
    memset(row, 0, sizeof *row);
    row->g_rp_norm = uses_rp(c) ? norm_of_mean(m->sum_rp, S, np) : NAN;
    row->g_es_norm = uses_es(c) ? norm_of_mean(m->sum_es, S, np) : NAN;
    row->v_rp = uses_rp(c) ? variance_sum(m->sum_rp, m->sq_rp, S, np) : NAN;
    row->v_es = uses_es(c) ? variance_sum(m->sum_es, m->sq_es, S, np) : NAN;
    if (c->estimator == LOPT_EST_MERGED) {
        double vr, ve;
        row->w_es = lopt_merge(m->sum_rp, m->sq_rp, m->sum_es, m->sq_es, S, np, m->g, &vr, &ve);
    } else {
        const double *sum = uses_rp(c) ? m->sum_rp : m->sum_es;
        for (size_t i = 0; i < np; i++) m->g[i] = (float)(sum[i] / S);
        row->w_es = uses_rp(c) ? 0.0 : 1.0;
    }

    /* outer Adam, gradient clipped by value; a non-finite gradient is refused */
    int finite = 1;
    for (size_t i = 0; i < np; i++) finite &= isfinite(m->g[i]) != 0;
    if (finite) {
        const double b1 = 0.9, b2 = 0.999, e = 1e-8;
        m->adam_t++;
        double bc1 = 1 - pow(b1, (double)m->adam_t), bc2 = 1 - pow(b2, (double)m->adam_t);
        for (size_t i = 0; i < np; i++) {
            float g = m->g[i];
            if (c->grad_clip > 0) g = fminf(fmaxf(g, -c->grad_clip), c->grad_clip);
            m->adam_m[i] = (float)(b1 * m->adam_m[i] + (1 - b1) * g);
            m->adam_v[i] = (float)(b2 * m->adam_v[i] + (1 - b2) * (double)g * g);
            double upd = (m->adam_m[i] / bc1) / (sqrt(m->adam_v[i] / bc2) + e);
            m->theta[i] -= (float)(c->outer_lr * upd);
        }
    } else {
        row->skipped = 1;
    }
    m->step++;
    double dt = lopt_now() - t0;
    m->time_s += dt;
    row->step = m->step;
    row->outer_loss = loss / S;
    row->K = K;
    row->inner_steps_per_s = (double)steps / dt;
    row->resets = m->resets;
    row->diverged = m->diverged;
    row->time_s = m->time_s;
    char line[512];
    snprintf(line, sizeof line, "%lld,%.6f,%.6g,%.6g,%.6g,%.6g,%.4f,%d,%.1f,%lld,%lld,%d,%.2f\n",
             (long long)row->step, row->outer_loss, row->g_rp_norm, row->g_es_norm, row->v_rp,
             row->v_es, row->w_es, row->K, row->inner_steps_per_s, (long long)row->resets,
             (long long)row->diverged, row->skipped, row->time_s);
    log_append(m, line);
    (void)err;
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
}

static void get_cfg(ser_in *in, lopt_meta_cfg *c)
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
    for (int s = 0; s < c->samples; s++) put_traj(&o, &m->plus[s], m->n, m->arch.nmom);
    if (c->estimator == LOPT_EST_PES) {
        for (int s = 0; s < c->samples; s++) put_traj(&o, &m->minus[s], m->n, m->arch.nmom);
        ser_f32s(&o, m->xi, (size_t)c->samples * m->np);
    }
    ser_blob(&o, m->log, m->log_len);
    uint32_t crc = (uint32_t)crc32(0L, o.p, (uInt)o.len);
    ser_u64(&o, crc);
    lopt_status st = lopt_write_atomic(path, o.p, o.len, err);
    free(o.p);
    return st;
}

lopt_status lopt_meta_load(lopt_meta **out, const char *path, lopt_err *err)
{
    *out = NULL;
    unsigned char *data;
    size_t len;
    lopt_status st = lopt_read_file(path, &data, &len, err);
    if (st != LOPT_OK) return st;
    if (len < 16 || memcmp(data, CKPT_MAGIC, 8) != 0) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: not a lopt meta-training checkpoint", path);
    }
    ser_in crc_in = {data + len - 8, 8, 0, 0};
    uint64_t crc = ser_get_u64(&crc_in);
    if (crc != (uint32_t)crc32(0L, data, (uInt)(len - 8))) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: corrupt checkpoint (checksum mismatch)", path);
    }
    ser_in in = {data, len - 8, 8, 0};
    if (ser_get_u64(&in) != CKPT_VERSION) {
        free(data);
        return lopt_fail(err, LOPT_EFORMAT, "%s: unsupported checkpoint version", path);
    }
    lopt_meta_cfg cfg;
    lopt_meta_cfg_default(&cfg);
    get_cfg(&in, &cfg);
    if (in.bad || (unsigned)cfg.estimator > LOPT_EST_PES) {
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
        for (int s = 0; s < cfg.samples; s++) get_traj(&in, &m->plus[s], m->n, m->arch.nmom);
        if (cfg.estimator == LOPT_EST_PES) {
            for (int s = 0; s < cfg.samples; s++) get_traj(&in, &m->minus[s], m->n, m->arch.nmom);
            ser_get_f32s(&in, m->xi, (size_t)cfg.samples * m->np);
        }
        size_t loglen;
        const unsigned char *log = ser_get_blob(&in, &loglen);
        if (log) {
            m->log = malloc(loglen + 1);
            LOPT_ASSERT(m->log);
            memcpy(m->log, log, loglen);
            m->log[loglen] = 0;
            m->log_len = loglen;
            m->log_cap = loglen + 1;
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
