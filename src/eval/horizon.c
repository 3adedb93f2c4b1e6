/* horizon.c - full-horizon evaluation of a learned optimizer (see horizon.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "eval/horizon.h"
#include "eval/train.h"

struct lopt_horizon_eval {
    int nthreads;
    lopt_task *tasks;                 /* (nthreads) */
    uint64_t *seeds;                  /* (nseeds) */
    int nseeds;
    int64_t horizon, eval_every;
    double *final, *mean;             /* (nseeds) per-seed results */
    lopt_status *st;                  /* (nseeds) */
    lopt_err *errs;                   /* (nseeds) */
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
    if (nt > nseeds) nt = nseeds;
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
    he->final = lopt_xcalloc((size_t)nseeds, sizeof(double));
    he->mean = lopt_xcalloc((size_t)nseeds, sizeof(double));
    he->st = lopt_xcalloc((size_t)nseeds, sizeof *he->st);
    he->errs = lopt_xcalloc((size_t)nseeds, sizeof *he->errs);
    *out = he;
    return LOPT_OK;
}

/* one seed on task t: a diverged run is +inf, not a failure */
static void run_seed(lopt_horizon_eval *he, lopt_task *t, const lopt_arch *a, const float *theta,
                     int i)
{
    lopt_optimizer o;
    he->st[i] = lopt_learned_create(&o, a, theta, t->tensors, t->ntensors, t->n, &he->errs[i]);
    if (he->st[i] != LOPT_OK) return;
    lopt_train_opts opts = {.steps = he->horizon, .eval_every = he->eval_every,
                            .seed = he->seeds[i]};
    lopt_train_result res;
    lopt_status st = lopt_train_run(t, &o, &opts, &res, NULL, &he->errs[i]);
    o.free(&o);
    he->final[i] = he->mean[i] = INFINITY;
    if (st == LOPT_OK && res.nrows > 1) {
        double acc = 0;
        for (int r = 1; r < res.nrows; r++) acc += res.rows[r].valid_loss;
        he->final[i] = res.rows[res.nrows - 1].valid_loss;
        he->mean[i] = acc / (res.nrows - 1);
        if (!isfinite(he->final[i])) he->final[i] = INFINITY;
        if (!isfinite(he->mean[i])) he->mean[i] = INFINITY;
    }
    he->st[i] = st == LOPT_EDIVERGED ? LOPT_OK : st;
    lopt_train_result_free(&res);
}

lopt_status lopt_horizon_eval_run(lopt_horizon_eval *he, const lopt_arch *a, const float *theta,
                                  double *final, double *mean, lopt_err *err)
{
#ifdef _OPENMP
#pragma omp parallel for num_threads(he->nthreads) schedule(dynamic, 1)
#endif
    for (int i = 0; i < he->nseeds; i++) {
        int ti = 0;
#ifdef _OPENMP
        ti = omp_get_thread_num();
#endif
        run_seed(he, &he->tasks[ti], a, theta, i);
    }
    double f = 0, m = 0;
    for (int i = 0; i < he->nseeds; i++) {
        if (he->st[i] != LOPT_OK) {
            if (err) *err = he->errs[i];
            return he->st[i];
        }
        f += he->final[i];
        m += he->mean[i];
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
    free(he->final);
    free(he->mean);
    free(he->st);
    free(he->errs);
    free(he);
}
