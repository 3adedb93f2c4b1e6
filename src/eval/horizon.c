/* horizon.c - full-horizon evaluation of a learned optimizer (see horizon.h). Under
 * MPI each rank trains its block of the seeds (core/dist.h) and every rank gets
 * every seed's result before the sum in seed order. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/dist.h"
#include "eval/horizon.h"
#include "eval/train.h"

/* one seed's run: what the other ranks get (the same binary on every rank) */
typedef struct {
    double final, mean;
    lopt_status st;
    lopt_err err;
} seed_result;

struct lopt_horizon_eval {
    int nthreads;
    lopt_task *tasks;                 /* (nthreads) */
    uint64_t *seeds;                  /* (nseeds) */
    int nseeds;
    int64_t horizon, eval_every;
    seed_result *res;                 /* (nseeds) */
};

lopt_status lopt_horizon_eval_create(lopt_horizon_eval **out, const char *task,
                                     const uint64_t *seeds, int nseeds, int64_t horizon,
                                     int points, int threads, lopt_err *err)
{
    *out = NULL;
    if (nseeds < 1 || horizon < 1 || points < 1)
        return lopt_fail(err, LOPT_EUSAGE, "evaluation needs seeds, a horizon and points");
    lopt_horizon_eval *he = lopt_xcalloc(1, sizeof *he);
    int nt = 1;
#ifdef _OPENMP
    nt = threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
#endif
    int lo, hi;   /* the seeds this rank trains */
    lopt_dist_block(nseeds, lopt_dist_rank(), &lo, &hi);
    if (nt > hi - lo) nt = hi - lo > 0 ? hi - lo : 1;
    if (nt > 1) openblas_set_num_threads(1);   /* parallel over seeds instead */
    he->tasks = lopt_xcalloc((size_t)nt, sizeof *he->tasks);
    for (int i = 0; i < nt; i++) {
        lopt_status st = lopt_task_create(&he->tasks[i], task, NULL, err);
        if (st != LOPT_OK) {
            he->nthreads = i;
            lopt_horizon_eval_free(he);
            return st;
        }
        he->nthreads = i + 1;
    }
    he->seeds = lopt_xcalloc((size_t)nseeds, sizeof *he->seeds);
    memcpy(he->seeds, seeds, (size_t)nseeds * sizeof *seeds);
    he->nseeds = nseeds;
    he->horizon = horizon;
    he->eval_every = horizon / points > 0 ? horizon / points : 1;
    he->res = lopt_xcalloc((size_t)nseeds, sizeof *he->res);
    *out = he;
    return LOPT_OK;
}

/* one seed on task t: a diverged run is +inf, not a failure */
static void run_seed(lopt_horizon_eval *he, lopt_task *t, const lopt_arch *a, const float *theta,
                     int i)
{
    lopt_optimizer o;
    seed_result *sr = &he->res[i];
    memset(sr, 0, sizeof *sr);
    sr->st = lopt_learned_create(&o, a, theta, t->tensors, t->ntensors, t->n, &sr->err);
    if (sr->st != LOPT_OK) return;
    lopt_train_opts opts = {.steps = he->horizon, .eval_every = he->eval_every,
                            .seed = he->seeds[i]};
    lopt_train_result res;
    lopt_status st = lopt_train_run(t, &o, &opts, &res, NULL, &sr->err);
    o.free(&o);
    sr->final = sr->mean = INFINITY;
    if (st == LOPT_OK && res.nrows > 1) {
        double acc = 0;
        for (int r = 1; r < res.nrows; r++) acc += res.rows[r].valid_loss;
        sr->final = res.rows[res.nrows - 1].valid_loss;
        sr->mean = acc / (res.nrows - 1);
        if (!isfinite(sr->final)) sr->final = INFINITY;
        if (!isfinite(sr->mean)) sr->mean = INFINITY;
    }
    sr->st = st == LOPT_EDIVERGED ? LOPT_OK : st;
    lopt_train_result_free(&res);
}

lopt_status lopt_horizon_eval_run(lopt_horizon_eval *he, const lopt_arch *a, const float *theta,
                                  double *final, double *mean, lopt_err *err)
{
    int lo, hi;
    lopt_dist_block(he->nseeds, lopt_dist_rank(), &lo, &hi);
#ifdef _OPENMP
#pragma omp parallel for num_threads(he->nthreads) schedule(dynamic, 1)
#endif
    for (int i = lo; i < hi; i++) {
        int ti = 0;
#ifdef _OPENMP
        ti = omp_get_thread_num();
#endif
        run_seed(he, &he->tasks[ti], a, theta, i);
    }
    lopt_dist_allgather(he->res, sizeof *he->res, he->nseeds);
    double f = 0, m = 0;
    for (int i = 0; i < he->nseeds; i++) {
        if (he->res[i].st != LOPT_OK) {
            if (err) *err = he->res[i].err;
            return he->res[i].st;
        }
        f += he->res[i].final;
        m += he->res[i].mean;
    }
    *final = f / he->nseeds;
    *mean = m / he->nseeds;
    return LOPT_OK;
}

lopt_status lopt_horizon_eval_fn(void *user, const lopt_arch *a, const float *theta,
                                 double *final, double *mean, lopt_err *err)
{
    return lopt_horizon_eval_run(user, a, theta, final, mean, err);
}

void lopt_horizon_eval_free(lopt_horizon_eval *he)
{
    if (!he) return;
    for (int i = 0; i < he->nthreads; i++) he->tasks[i].free(&he->tasks[i]);
    free(he->tasks);
    free(he->seeds);
    free(he->res);
    free(he);
}
