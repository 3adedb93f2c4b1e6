/* pathology_int.h - what the three pathology studies (pathology_{surface,gradvar,
 * bias}.c) share, private to src/eval: option checks, the start state of the
 * unrolls, random directions, progress, and the file helpers. Implemented in
 * pathology.c. */
#ifndef LOPT_PATHOLOGY_INT_H
#define LOPT_PATHOLOGY_INT_H

#include <stdint.h>

#include "core/out.h"
#include "eval/pathology.h"
#include "eval/plot.h"
#include "meta/unroll.h"

/* directions and perturbations: a stream of their own */
#define PATHOLOGY_STREAM 0x70617468ULL

/* zeroed doubles (n may be 0); free with free */
double *lopt_pathology_dalloc(size_t n);

/* progress through o's callback, if any (printf-style "what") */
void lopt_pathology_report(lopt_pathology_progress cb, void *user, int64_t done,
                           int64_t total, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* nK in 1..LOPT_PATHOLOGY_MAX_K distinct lengths in 1..max (max <= 0: 1..1000000) */
lopt_status lopt_pathology_check_Ks(const int *Ks, int nK, int64_t max, lopt_err *err);
/* warmup >= 0 */
lopt_status lopt_pathology_check_common(const lopt_pathology_common *c, lopt_err *err);

/* The inner state every unroll of a study starts from: a fresh trajectory of
 * instance c->seed, advanced c->warmup steps under theta. Returns the unroll
 * configuration of the study (K = ws->K). */
lopt_unroll_cfg lopt_pathology_start(lopt_unroll_ws *ws, const lopt_pathology_common *c,
                                     lopt_traj *start);

/* u = a unit direction in theta space (draw `which` of seed), orthogonal to the unit
 * vector `against` if it is not NULL */
void lopt_pathology_direction(float *u, size_t np, uint64_t seed, uint64_t which,
                              const float *against);

/* writes plot p as dir/name.{svg,png} */
lopt_status lopt_pathology_plot(const lopt_plot *p, const char *dir, const char *name,
                                lopt_err *err);

/* the JSON opening every study's summary.json shares:
 * {"study": STUDY, "task": TASK[, "theta": ...] -- the caller continues */
void lopt_pathology_json_head(lopt_sbuf *b, const char *study, const char *task);

#endif
