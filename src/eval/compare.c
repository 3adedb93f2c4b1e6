/* compare.c - tuned-baseline comparison (see compare.h for the protocol), its
 * engine: tuning, test runs and their statistics. Its reports (CSV, JSON, Markdown,
 * plots) are compare_report.c. docs/design.md sections 4 and 6. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/dist.h"
#include "eval/compare.h"
#include "eval/plot.h"

/* ---- pure helpers ---------------------------------------------------------------- */

int lopt_compare_reach(const double *y, int n, double target, double *pos)
{
    *pos = NAN;
    for (int i = 0; i < n; i++) {
        if (!(isfinite(y[i]) && y[i] <= target)) continue;
        if (i == 0 || !isfinite(y[i - 1]) || y[i - 1] <= y[i]) {
            *pos = i;
        } else {   /* y[i-1] > target >= y[i]: the straight line between them */
            double f = (y[i - 1] - target) / (y[i - 1] - y[i]);
            *pos = (i - 1) + (f < 0 ? 0 : f > 1 ? 1 : f);
        }
        return 1;
    }
    return 0;
}

double lopt_compare_at(const double *x, int n, double pos)
{
    if (!(pos >= 0) || n <= 0) return NAN;
    if (pos >= n - 1) return x[n - 1];
    int i = (int)floor(pos);
    double f = pos - i;
    return f == 0 ? x[i] : x[i] + f * (x[i + 1] - x[i]);
}

int lopt_compare_pick(const double *loss, int n, int *edge)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (isfinite(loss[i]) && (best < 0 || loss[i] < loss[best])) best = i;
    *edge = best < 0 || n < 2 ? 0 : best == 0 ? -1 : best == n - 1 ? 1 : 0;
    return best;
}

/* ---- options ----------------------------------------------------------------------- */

/* "NAME[:SCHEDULE]" -> the optimizer name (optim, cap bytes), and the schedule over
 * `steps` with its warm-up (warmup as in lopt_compare_opts) when there is a suffix.
 * LOPT_EUSAGE with a one-line reason; nothing range-checked but the names. */
static lopt_status parse_baseline(const char *spec, int64_t steps, int64_t warmup,
                                  char *optim, size_t cap, int *scheduled,
                                  lopt_schedule *sched, lopt_err *err)
{
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    memset(sched, 0, sizeof *sched);
    *scheduled = colon != NULL;
    lopt_hparams hp;
    if (len >= cap) len = cap - 1;   /* too long for any known name: refused below */
    memcpy(optim, spec, len);
    optim[len] = 0;
    if (lopt_hparams_default(&hp, optim, NULL) != LOPT_OK) {
        char known[128] = "";
        for (int k = 0; lopt_optimizer_names[k]; k++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                     k ? ", " : "", lopt_optimizer_names[k]);
        return lopt_fail(err, LOPT_EUSAGE, "unknown baseline '%s' (want one of %s, "
                         "optionally with :const, :cosine or :linear)", spec, known);
    }
    if (!colon) return LOPT_OK;
    lopt_err serr = {0};
    if (lopt_schedule_parse(colon + 1, &sched->kind, &serr) != LOPT_OK)
        return lopt_fail(err, LOPT_EUSAGE, "unknown schedule '%s' in baseline '%s' (const, "
                         "cosine, linear)", colon + 1, spec);
    sched->steps = steps;
    sched->warmup = warmup == LOPT_COMPARE_WARMUP_DEFAULT
                        ? lopt_schedule_default_warmup(sched->kind, steps)
                        : warmup;
    return LOPT_OK;
}

lopt_status lopt_compare_lr_range(const char *name, double *lo, double *hi, lopt_err *err)
{
    char optim[16];
    int scheduled;
    lopt_schedule sched;
    lopt_status st = parse_baseline(name, 1, 0, optim, sizeof optim, &scheduled, &sched, err);
    if (st != LOPT_OK) return st;
    /* adaptive methods (torch default 1e-3 / 1e-2) vs plain and heavy-ball SGD (ours
     * 1e-2): three decades each, the default well inside */
    int adaptive = strcmp(optim, "adam") == 0 || strcmp(optim, "rmsprop") == 0;
    *lo = adaptive ? 1e-4 : 1e-3;
    *hi = adaptive ? 1e-1 : 1.0;
    return LOPT_OK;
}

void lopt_compare_opts_default(lopt_compare_opts *o)
{
    static const char *const baselines[] = {"adam", "rmsprop", "momentum"};
    static const uint64_t seeds[] = {1000, 1001, 1002};
    *o = (lopt_compare_opts){.steps = 1000,
                             .baselines = baselines,
                             .nbaselines = 3,
                             .warmup = LOPT_COMPARE_WARMUP_DEFAULT,
                             .grid_points = 7,
                             .seeds = seeds,
                             .nseeds = 3,
                             .tune_seeds = 1};
}

/* the further learned optimizers' row names: well-formed, none taken twice */
static lopt_status check_extras(const lopt_compare_opts *o, lopt_err *err)
{
    for (int k = 0; k < o->nextra; k++) {
        const char *nm = o->extra[k].name;
        size_t len = nm ? strlen(nm) : 0;
        int ok = len > 0 && len < sizeof ((lopt_compare_entry *)0)->name;
        for (size_t i = 0; ok && i < len; i++)
            ok = (nm[i] >= 'a' && nm[i] <= 'z') || (nm[i] >= 'A' && nm[i] <= 'Z') ||
                 (nm[i] >= '0' && nm[i] <= '9') || nm[i] == '_' || nm[i] == '-' || nm[i] == '.';
        if (!ok)
            return lopt_fail(err, LOPT_EUSAGE, "learned optimizer name '%s': want 1-31 letters, "
                             "digits, '_', '-' or '.'", nm ? nm : "");
        if (o->extra[k].arch && !o->extra[k].theta)
            return lopt_fail(err, LOPT_EUSAGE, "learned optimizer %s without theta", nm);
        int clash = strcmp(nm, "learned") == 0;
        for (int j = 0; j < k; j++) clash |= strcmp(o->extra[j].name, nm) == 0;
        for (int b = 0; b < o->nbaselines; b++) clash |= strcmp(o->baselines[b], nm) == 0;
        if (clash)
            return lopt_fail(err, LOPT_EUSAGE, "row name '%s' is taken (by the learned "
                             "optimizer, a baseline or another row)", nm);
    }
    return LOPT_OK;
}

/* each baseline a known optimizer and schedule, no run given twice, its grid range */
static lopt_status check_baselines(const lopt_compare_opts *o, lopt_err *err)
{
    char optim[LOPT_COMPARE_MAX_OPT][16];
    lopt_schedule sched[LOPT_COMPARE_MAX_OPT];
    for (int b = 0; b < o->nbaselines; b++) {
        int scheduled;
        lopt_status st = parse_baseline(o->baselines[b], o->steps, o->warmup, optim[b],
                                        sizeof optim[b], &scheduled, &sched[b], err);
        if (st != LOPT_OK) return st;
        lopt_err serr = {0};
        if (lopt_schedule_check(&sched[b], &serr) != LOPT_OK)
            return lopt_fail(err, LOPT_EUSAGE, "baseline %s: %s", o->baselines[b], serr.msg);
        /* the same run under two names (adam and adam:const without warm-up) too */
        for (int k = 0; k < b; k++)
            if (strcmp(optim[k], optim[b]) == 0 && sched[k].kind == sched[b].kind &&
                sched[k].warmup == sched[b].warmup)
                return strcmp(o->baselines[k], o->baselines[b]) == 0
                           ? lopt_fail(err, LOPT_EUSAGE, "baseline '%s' given twice",
                                       o->baselines[b])
                           : lopt_fail(err, LOPT_EUSAGE, "baselines '%s' and '%s' are the "
                                       "same runs", o->baselines[k], o->baselines[b]);
        if (o->lr_lo && o->lr_hi &&
            !(o->lr_lo[b] > 0 && o->lr_hi[b] > o->lr_lo[b] && isfinite(o->lr_hi[b])))
            return lopt_fail(err, LOPT_EUSAGE, "learning-rate range for %s must satisfy "
                             "0 < lo < hi", o->baselines[b]);
    }
    return LOPT_OK;
}

/* the test seeds distinct and disjoint from the tuning seeds */
static lopt_status check_seeds(const lopt_compare_opts *o, lopt_err *err)
{
    for (int i = 0; i < o->nseeds; i++) {
        for (int k = 0; k < i; k++)
            if (o->seeds[k] == o->seeds[i])
                return lopt_fail(err, LOPT_EUSAGE, "test seed %llu given twice",
                                 (unsigned long long)o->seeds[i]);
        uint64_t s = o->seeds[i];
        if (s >= LOPT_COMPARE_TUNE_SEED0 &&
            s < LOPT_COMPARE_TUNE_SEED0 + (uint64_t)o->tune_seeds)
            return lopt_fail(err, LOPT_EUSAGE,
                             "test seed %llu is also a tuning seed (tuning uses %d..%d): "
                             "tuning and test seeds must be disjoint",
                             (unsigned long long)s, LOPT_COMPARE_TUNE_SEED0,
                             LOPT_COMPARE_TUNE_SEED0 + o->tune_seeds - 1);
    }
    return LOPT_OK;
}

lopt_status lopt_compare_check(const lopt_compare_opts *o, lopt_err *err)
{
    if (o->steps <= 0) return lopt_fail(err, LOPT_EUSAGE, "--steps must be positive");
    if (o->eval_every < 0)
        return lopt_fail(err, LOPT_EUSAGE, "--eval-every must be >= 0 (0: steps/20)");
    if (o->jobs < 0 || o->jobs > 256)
        return lopt_fail(err, LOPT_EUSAGE, "--jobs must be in 0..256 (0: every core)");
    if (o->nbaselines < 1)
        return lopt_fail(err, LOPT_EUSAGE, "at least one baseline is needed");
    if (o->nextra < 0 || o->nextra > LOPT_COMPARE_MAX_EXTRA)
        return lopt_fail(err, LOPT_EUSAGE, "at most %d further learned optimizers",
                         LOPT_COMPARE_MAX_EXTRA);
    if (o->nbaselines + (o->arch ? 1 : 0) + o->nextra > LOPT_COMPARE_MAX_OPT)
        return lopt_fail(err, LOPT_EUSAGE, "at most %d optimizers in one comparison",
                         LOPT_COMPARE_MAX_OPT);
    lopt_status st = check_extras(o, err);
    if (st != LOPT_OK) return st;
    if (o->warmup < 0 && o->warmup != LOPT_COMPARE_WARMUP_DEFAULT)
        return lopt_fail(err, LOPT_EUSAGE, "warm-up must be non-negative");
    if ((st = check_baselines(o, err)) != LOPT_OK) return st;
    if (o->grid_points < 2 || o->grid_points > LOPT_COMPARE_MAX_GRID)
        return lopt_fail(err, LOPT_EUSAGE, "--grid-points must be in 2..%d",
                         LOPT_COMPARE_MAX_GRID);
    if (o->nseeds < 1 || o->nseeds > LOPT_COMPARE_MAX_SEEDS)
        return lopt_fail(err, LOPT_EUSAGE, "between 1 and %d test seeds",
                         LOPT_COMPARE_MAX_SEEDS);
    if (o->tune_seeds < 1 || o->tune_seeds > LOPT_COMPARE_MAX_SEEDS)
        return lopt_fail(err, LOPT_EUSAGE, "--tune-seeds must be in 1..%d",
                         LOPT_COMPARE_MAX_SEEDS);
    if ((st = check_seeds(o, err)) != LOPT_OK) return st;
    if (o->arch && !o->theta)
        return lopt_fail(err, LOPT_EUSAGE, "learned optimizer without theta");
    return LOPT_OK;
}

/* ---- running --------------------------------------------------------------------- */

typedef struct {
    const lopt_compare_opts *o;
    int run, nruns;
} run_ctx;

static void announce(run_ctx *rc, const char *phase, const char *name, double lr,
                     uint64_t seed)
{
    rc->run++;
    if (!rc->o->on_run) return;
    lopt_compare_run_info info = {phase, name, lr, seed, rc->run, rc->nruns};
    rc->o->on_run(rc->o->user, &info);
}

static lopt_train_opts train_opts(const lopt_compare_opts *o, int64_t eval_every,
                                  uint64_t seed)
{
    lopt_train_opts to = {.steps = o->steps, .eval_every = eval_every, .seed = seed,
                          .on_step = o->on_step, .user = o->user};
    return to;
}

/* A baseline's optimizer at learning rate lr (the peak lr under a schedule). */
static lopt_status baseline_create(lopt_optimizer *opt, const lopt_compare_entry *e, double lr,
                                   size_t n, lopt_err *err)
{
    lopt_hparams hp;
    lopt_status st = lopt_hparams_default(&hp, e->optim, err);
    if (st != LOPT_OK) return st;
    hp.lr = (float)lr;
    hp.sched = e->sched;
    return lopt_optimizer_create(opt, e->optim, &hp, n, err);
}

/* the final validation loss of one tuning run; +inf when it diverged */
static lopt_status tune_run(lopt_task *t, lopt_optimizer *opt, const lopt_compare_opts *o,
                            uint64_t seed, double *loss, lopt_err *err)
{
    lopt_train_opts to = train_opts(o, 0, seed);
    lopt_train_result r;
    lopt_err terr = {0};
    lopt_status st = lopt_train_run(t, opt, &to, &r, NULL, &terr);
    *loss = INFINITY;
    if (st == LOPT_OK && r.nrows > 0 && isfinite(r.rows[r.nrows - 1].valid_loss))
        *loss = r.rows[r.nrows - 1].valid_loss;
    lopt_train_result_free(&r);
    if (st != LOPT_OK && st != LOPT_EDIVERGED)
        return lopt_fail(err, st, "%s", terr.msg);
    return LOPT_OK;
}

/* the per-step callback of the parallel worker that shows progress, under the
 * lock that announcements from the other workers take */
static void locked_on_step(void *user, int64_t step, int64_t steps, double loss)
{
    const lopt_compare_opts *o = user;
#ifdef _OPENMP
#pragma omp critical(lopt_compare_progress)
#endif
    o->on_step(o->user, step, steps, loss);
}

/* One tuning run for a row of res->tuning, already filled with (opt, lr, seed):
 * trains a fresh optimizer of that kind and records its final validation loss.
 * worker: -1 when runs go one at a time, else the parallel worker's index. Every
 * run is announced; only worker 0 (or a serial run) makes per-step callbacks, so a
 * progress bar follows one run at a time. */
static lopt_status tune_row(lopt_task *t, const lopt_compare_opts *o, lopt_compare_result *res,
                            lopt_tuning_row *row, run_ctx *rc, int worker, lopt_err *err)
{
    const char *name = res->opt[row->opt].name;
    lopt_optimizer opt;
    lopt_status st = baseline_create(&opt, &res->opt[row->opt], row->lr, t->n, err);
    if (st != LOPT_OK) return st;
#ifdef _OPENMP
#pragma omp critical(lopt_compare_progress)
#endif
    announce(rc, "tuning", name, row->lr, row->seed);
    lopt_compare_opts ro = *o;
    if (worker > 0) ro.on_step = NULL;
    if (worker == 0 && o->on_step) ro.on_step = locked_on_step, ro.user = (void *)o;
    st = tune_run(t, &opt, &ro, row->seed, &row->final_valid_loss, err);
    opt.free(&opt);
    return st;
}

/* The tuning runs [lo, hi) on `jobs` workers, each with its own task (tasks[0] is
 * the caller's), taking the next row until all are done or one fails. OpenBLAS
 * runs single-threaded meanwhile: the cores go to the workers. */
static lopt_status tune_parallel(lopt_task *tasks, int jobs, const lopt_compare_opts *o,
                                 lopt_compare_result *res, int lo, int hi, run_ctx *rc,
                                 lopt_err *err)
{
    lopt_status *wst = lopt_xcalloc((size_t)jobs, sizeof *wst);
    lopt_err *werr = lopt_xcalloc((size_t)jobs, sizeof *werr);
    int next = lo, blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
#ifdef _OPENMP
#pragma omp parallel num_threads(jobs)
#endif
    {
        int w = 0;
#ifdef _OPENMP
        w = omp_get_thread_num();
#endif
        for (;;) {
            int i;
#ifdef _OPENMP
#pragma omp critical(lopt_compare_next)
#endif
            i = wst[w] == LOPT_OK && next < hi ? next++ : -1;
            if (i < 0) break;
            wst[w] = tune_row(&tasks[w], o, res, &res->tuning[i], rc, w, &werr[w]);
        }
    }
    openblas_set_num_threads(blas);
    lopt_status st = LOPT_OK;
    for (int w = 0; w < jobs && st == LOPT_OK; w++)
        if (wst[w] != LOPT_OK) st = lopt_fail(err, wst[w], "%s", werr[w].msg);
    free(wst);
    free(werr);
    return st;
}

/* Tunes every baseline: all grid points x tuning seeds, on o->jobs workers (each
 * with its own task from o->make_task; OpenBLAS single-threaded meanwhile), then
 * picks each baseline's learning rate. A run is a pure function of (optimizer, lr,
 * seed), so the choice does not depend on the number of workers. Under MPI each
 * rank runs its block of the rows and every rank gets every row (core/dist.h). */
static lopt_status tune_all(lopt_task *t, const lopt_compare_opts *o, lopt_compare_result *res,
                            run_ctx *rc, lopt_err *err)
{
    int G = o->grid_points;
    for (int ei = 0; ei < res->nopt; ei++) {
        lopt_compare_entry *e = &res->opt[ei];
        if (e->learned) continue;
        e->grid_points = G;
        e->grid_lr = lopt_xcalloc((size_t)G, sizeof(double));
        e->grid_loss = lopt_xcalloc((size_t)G, sizeof(double));
        for (int k = 0; k < G; k++) {
            e->grid_lr[k] = e->lr_lo * pow(e->lr_hi / e->lr_lo, (double)k / (G - 1));
            for (int s = 0; s < o->tune_seeds; s++) {
                lopt_tuning_row *row = &res->tuning[res->ntuning++];
                row->opt = ei;
                row->lr = e->grid_lr[k];
                row->seed = LOPT_COMPARE_TUNE_SEED0 + (uint64_t)s;
                row->final_valid_loss = NAN;
            }
        }
    }
    int jobs = 1;
#ifdef _OPENMP
    if (o->make_task) jobs = o->jobs > 0 ? o->jobs : omp_get_max_threads();
#endif
    int lo, hi;
    lopt_dist_block(res->ntuning, lopt_dist_rank(), &lo, &hi);
    if (jobs > hi - lo) jobs = hi - lo > 0 ? hi - lo : 1;
    lopt_status st = LOPT_OK;
    if (jobs == 1) {
        for (int i = lo; i < hi && st == LOPT_OK; i++)
            st = tune_row(t, o, res, &res->tuning[i], rc, -1, err);
    } else {
        lopt_task *tasks = lopt_xcalloc((size_t)jobs, sizeof *tasks);
        int made = 1;
        tasks[0] = *t;
        while (made < jobs && st == LOPT_OK)
            if ((st = o->make_task(o->user, &tasks[made], err)) == LOPT_OK) made++;
        if (st == LOPT_OK) st = tune_parallel(tasks, jobs, o, res, lo, hi, rc, err);
        for (int w = 1; w < made; w++) tasks[w].free(&tasks[w]);
        free(tasks);
    }
    if ((st = lopt_dist_settle(st, err)) != LOPT_OK) return st;
    lopt_dist_allgather(res->tuning, sizeof *res->tuning, res->ntuning);
    rc->run = res->ntuning;   /* the runs of the other ranks count as done */

    /* the rows in the order they were laid out above: baseline, grid point, seed */
    const lopt_tuning_row *row = res->tuning;
    for (int ei = 0; ei < res->nopt; ei++) {
        lopt_compare_entry *e = &res->opt[ei];
        if (e->learned) continue;
        for (int k = 0; k < G; k++) {
            double sum = 0.0;
            for (int s = 0; s < o->tune_seeds; s++) sum += (row++)->final_valid_loss;
            e->grid_loss[k] = sum / o->tune_seeds;
        }
        int best = lopt_compare_pick(e->grid_loss, G, &e->lr_edge);
        if (best < 0)
            return lopt_fail(err, LOPT_EDIVERGED,
                             "%s diverged at every learning rate of its grid [%g, %g]",
                             e->name, e->lr_lo, e->lr_hi);
        e->lr = e->grid_lr[best];
        if (o->on_tuned) o->on_tuned(o->user, e->name, e->lr, e->grid_loss[best], e->lr_edge);
    }
    return LOPT_OK;
}

static lopt_status test_runs(lopt_task *t, const lopt_compare_opts *o, lopt_compare_entry *e,
                             int64_t eval_every, run_ctx *rc, lopt_err *err)
{
    lopt_optimizer opt;
    lopt_status st;
    if (e->learned) {
        const lopt_arch *arch = e->learned == 1 ? o->arch : o->extra[e->learned - 2].arch;
        const float *theta = e->learned == 1 ? o->theta : o->extra[e->learned - 2].theta;
        st = lopt_learned_create(&opt, arch, theta, t->tensors, t->ntensors, t->n, err);
    } else {
        st = baseline_create(&opt, e, e->lr, t->n, err);
    }
    if (st != LOPT_OK) return st;
    e->nseeds = o->nseeds;
    e->runs = lopt_xcalloc((size_t)o->nseeds, sizeof *e->runs);
    for (int s = 0; s < o->nseeds; s++) {
        announce(rc, "test", e->name, e->lr, o->seeds[s]);
        lopt_train_opts to = train_opts(o, eval_every, o->seeds[s]);
        lopt_err terr = {0};
        st = lopt_train_run(t, &opt, &to, &e->runs[s], NULL, &terr);
        if (st == LOPT_EDIVERGED) {
            e->ndiverged++;
            st = LOPT_OK;
        }
        if (st != LOPT_OK) {
            lopt_fail(err, st, "%s", terr.msg);
            break;
        }
    }
    opt.free(&opt);
    return st;
}

static lopt_stat stat_of(const double *v, int n)
{
    lopt_stat s = {0.0, 0.0, INFINITY, -INFINITY};
    for (int i = 0; i < n; i++) {
        s.mean += v[i];
        s.min = fmin(s.min, v[i]);
        s.max = fmax(s.max, v[i]);
    }
    s.mean /= n;
    if (n > 1) {
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
        s.std = sqrt(ss / (n - 1));
    }
    if (!isfinite(s.mean)) s.std = NAN;
    return s;
}

static void aggregate(lopt_compare_entry *e)
{
    int n = e->nseeds;
    double *v[6];
    for (int k = 0; k < 6; k++) v[k] = lopt_xcalloc((size_t)n, sizeof(double));
    for (int s = 0; s < n; s++) {
        const lopt_train_result *r = &e->runs[s];
        const lopt_curve_row *last = r->nrows ? &r->rows[r->nrows - 1] : NULL;
        int ok = r->diverged_at < 0 && last;
        v[0][s] = ok ? last->train_loss : INFINITY;
        v[1][s] = ok ? last->valid_loss : INFINITY;
        v[2][s] = ok ? last->valid_acc : NAN;
        v[3][s] = ok ? r->test_loss : INFINITY;
        v[4][s] = ok ? r->test_acc : NAN;
        v[5][s] = last ? last->time_s : 0.0;
    }
    e->train_loss = stat_of(v[0], n);
    e->valid_loss = stat_of(v[1], n);
    e->valid_acc = stat_of(v[2], n);
    e->test_loss = stat_of(v[3], n);
    e->test_acc = stat_of(v[4], n);
    e->time_s = stat_of(v[5], n);
    for (int k = 0; k < 6; k++) free(v[k]);

    /* the seed-mean curve on the longest run's rows (every run that did not
     * diverge has the same ones); a row a diverged run never reached is +inf */
    int longest = 0;
    for (int s = 1; s < n; s++)
        if (e->runs[s].nrows > e->runs[longest].nrows) longest = s;
    int R = e->nrows = e->runs[longest].nrows;
    double **c[] = {&e->step, &e->time_mean, &e->train_mean, &e->train_min, &e->train_max,
                    &e->valid_mean, &e->valid_min, &e->valid_max};
    for (size_t k = 0; k < sizeof c / sizeof *c; k++)
        *c[k] = lopt_xcalloc((size_t)(R ? R : 1), sizeof(double));
    for (int i = 0; i < R; i++) {
        e->step[i] = (double)e->runs[longest].rows[i].step;
        double tsum = 0.0, trs = 0.0, vs = 0.0;
        int present = 0;
        e->train_min[i] = e->valid_min[i] = INFINITY;
        e->train_max[i] = e->valid_max[i] = -INFINITY;
        for (int s = 0; s < n; s++) {
            const lopt_train_result *r = &e->runs[s];
            double tr = INFINITY, va = INFINITY;
            if (i < r->nrows) {
                tr = r->rows[i].train_loss;
                va = r->rows[i].valid_loss;
                tsum += r->rows[i].time_s;
                present++;
            }
            trs += tr;
            vs += va;
            e->train_min[i] = fmin(e->train_min[i], tr);
            e->train_max[i] = fmax(e->train_max[i], tr);
            e->valid_min[i] = fmin(e->valid_min[i], va);
            e->valid_max[i] = fmax(e->valid_max[i], va);
        }
        e->train_mean[i] = trs / n;
        e->valid_mean[i] = vs / n;
        e->time_mean[i] = present ? tsum / present : NAN;
    }
}

/* Where e's seed-mean validation curve first gets to target (steps, mean wall-clock)
 * and the speedups over a reference that took ref_steps and ref_time; NaN when it
 * never does. */
static void reach_of(const lopt_compare_entry *e, double target, double ref_steps,
                     double ref_time, double *step, double *time, double *sp_steps,
                     double *sp_time)
{
    double pos;
    *step = *time = *sp_steps = *sp_time = NAN;
    if (!lopt_compare_reach(e->valid_mean, e->nrows, target, &pos)) return;
    *step = lopt_compare_at(e->step, e->nrows, pos);
    *time = lopt_compare_at(e->time_mean, e->nrows, pos);
    *sp_steps = *step > 0 ? ref_steps / *step : INFINITY;
    *sp_time = *time > 0 ? ref_time / *time : INFINITY;
}

static void speedups(lopt_compare_result *res)
{
    res->best = res->adam = -1;
    res->target = res->adam_target = NAN;
    for (int i = 0; i < res->nopt; i++) {
        const lopt_compare_entry *e = &res->opt[i];
        if (!e->learned && strcmp(e->name, "adam") == 0) res->adam = i;
        if (e->learned || !isfinite(e->valid_loss.mean)) continue;
        if (res->best < 0 || e->valid_loss.mean < res->opt[res->best].valid_loss.mean)
            res->best = i;
    }
    for (int i = 0; i < res->nopt; i++) {
        lopt_compare_entry *e = &res->opt[i];
        e->reach_step = e->reach_time = e->speedup_steps = e->speedup_time = NAN;
        e->adam_reach_step = e->adam_reach_time = e->adam_speedup_steps =
            e->adam_speedup_time = NAN;
    }
    if (res->best >= 0) {
        const lopt_compare_entry *b = &res->opt[res->best];
        res->target = b->valid_loss.mean;
        for (int i = 0; i < res->nopt; i++) {
            lopt_compare_entry *e = &res->opt[i];
            reach_of(e, res->target, (double)res->steps, b->time_mean[b->nrows - 1],
                     &e->reach_step, &e->reach_time, &e->speedup_steps, &e->speedup_time);
        }
    }
    const lopt_compare_entry *a = res->adam >= 0 ? &res->opt[res->adam] : NULL;
    if (a && isfinite(a->valid_loss.mean)) {
        res->adam_target = a->valid_loss.mean;
        for (int i = 0; i < res->nopt; i++) {
            lopt_compare_entry *e = &res->opt[i];
            reach_of(e, res->adam_target, (double)res->steps, a->time_mean[a->nrows - 1],
                     &e->adam_reach_step, &e->adam_reach_time, &e->adam_speedup_steps,
                     &e->adam_speedup_time);
        }
    }
}

lopt_status lopt_compare_run(lopt_task *t, const lopt_compare_opts *o,
                             lopt_compare_result *res, lopt_err *err)
{
    memset(res, 0, sizeof *res);
    res->best = res->adam = -1;
    res->target = res->adam_target = NAN;
    lopt_status st = lopt_compare_check(o, err);
    if (st != LOPT_OK) return st;
    double t0 = lopt_now();
    int64_t eval_every = o->eval_every ? o->eval_every : (o->steps >= 20 ? o->steps / 20 : 1);
    res->steps = o->steps;
    res->eval_every = eval_every;
    res->grid_points = o->grid_points;
    res->nseeds = o->nseeds;
    memcpy(res->seeds, o->seeds, (size_t)o->nseeds * sizeof *o->seeds);
    res->tune_seeds = o->tune_seeds;
    snprintf(res->task, sizeof res->task, "%s", t->name);
    if (o->arch)
        snprintf(res->learned_source, sizeof res->learned_source, "%s",
                 o->learned_source ? o->learned_source : "(in memory)");

    if (o->arch) {
        lopt_compare_entry *e = &res->opt[res->nopt++];
        snprintf(e->name, sizeof e->name, "learned");
        snprintf(e->source, sizeof e->source, "%s", res->learned_source);
        e->learned = 1;
        e->lr = e->lr_lo = e->lr_hi = NAN;
    }
    for (int k = 0; k < o->nextra; k++) {
        LOPT_ASSERT(o->extra[k].arch && o->extra[k].theta);   /* check only needs the names */
        lopt_compare_entry *e = &res->opt[res->nopt++];
        snprintf(e->name, sizeof e->name, "%s", o->extra[k].name);
        snprintf(e->source, sizeof e->source, "%s",
                 o->extra[k].source ? o->extra[k].source : "(in memory)");
        e->learned = 2 + k;
        e->lr = e->lr_lo = e->lr_hi = NAN;
    }
    for (int b = 0; b < o->nbaselines; b++) {
        lopt_compare_entry *e = &res->opt[res->nopt++];
        snprintf(e->name, sizeof e->name, "%s", o->baselines[b]);
        parse_baseline(e->name, o->steps, o->warmup, e->optim, sizeof e->optim,
                       &e->scheduled, &e->sched, NULL);
        lopt_compare_lr_range(e->name, &e->lr_lo, &e->lr_hi, NULL);
        if (o->lr_lo && o->lr_hi) e->lr_lo = o->lr_lo[b], e->lr_hi = o->lr_hi[b];
    }
    res->tuning = lopt_xcalloc((size_t)(o->nbaselines * o->grid_points * o->tune_seeds),
                               sizeof *res->tuning);
    run_ctx rc = {o, 0, o->nbaselines * o->grid_points * o->tune_seeds +
                            res->nopt * o->nseeds};
    st = tune_all(t, o, res, &rc, err);
    /* under MPI the test runs, whose wall-clock counts, run on rank 0 alone */
    if (lopt_dist_rank() != 0) {
        res->elapsed_s = lopt_now() - t0;
        return st;
    }
    for (int i = 0; i < res->nopt && st == LOPT_OK; i++) {
        st = test_runs(t, o, &res->opt[i], eval_every, &rc, err);
        if (st == LOPT_OK) aggregate(&res->opt[i]);
    }
    if (st == LOPT_OK) speedups(res);
    res->elapsed_s = lopt_now() - t0;
    return st;
}

void lopt_compare_free(lopt_compare_result *res)
{
    if (!res) return;
    for (int i = 0; i < res->nopt; i++) {
        lopt_compare_entry *e = &res->opt[i];
        free(e->grid_lr);
        free(e->grid_loss);
        for (int s = 0; e->runs && s < e->nseeds; s++) lopt_train_result_free(&e->runs[s]);
        free(e->runs);
        double *c[] = {e->step, e->time_mean, e->train_mean, e->train_min, e->train_max,
                       e->valid_mean, e->valid_min, e->valid_max};
        for (size_t k = 0; k < sizeof c / sizeof *c; k++) free(c[k]);
    }
    free(res->tuning);
    memset(res, 0, sizeof *res);
    res->best = res->adam = -1;
}
