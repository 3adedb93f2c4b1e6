/* pathology.h - the studies behind `lopt pathology` (docs/design.md sections 1.4 and 4):
 * the pathologies of unrolled optimization that Metz et al. 2019 diagnose, measured
 * on lopt's own unrolls.
 *
 *  surface  the outer loss L_K(theta + a u) along a line through theta (u a random
 *           unit direction) for several unroll lengths K, and the smoothed loss
 *           E_eps L_K(theta + a u + eps), eps ~ N(0, sigma^2 I), estimated with
 *           antithetic perturbations shared by every point (common random numbers);
 *           optionally a 2-D slice over two orthonormal directions. Long unrolls make
 *           the surface rough (paper section 3, figure 2); smoothing keeps it usable.
 *  gradvar  for unroll lengths K: S antithetic pairs theta +- eps_s from one inner
 *           state, per-sample rp (exact backprop through the unroll) and es
 *           estimates; norms of their means, their per-coordinate variances summed,
 *           and the mean es weight of the inverse-variance merge (lopt_merge).
 *           rp's variance grows exponentially with K, es's stays bounded
 *           (paper section 4, figure 4).
 *  bias     truncation bias on a toy: SGD's learning rate lr = exp(p) meta-learned by
 *           gradient descent (Adam on p) on the truncated outer loss for several
 *           truncation lengths K over a horizon H, against the optimum of the
 *           full-horizon loss found on a grid. The derivative of the trajectory with
 *           respect to p is exact, by forward mode with the task's Hessian-vector
 *           product:  z_{t+1} = z_t - lr H_t z_t - lr g_t   (z = dw/dp),
 *           reset to 0 at the start of every truncation (the truncation treats its
 *           start state as a constant: exactly the truncated gradient).
 *
 * Every study writes CSV, summary.json and plots (SVG + PNG; the 2-D slice as a
 * heatmap) into a directory, each file atomically. The studies are single-threaded
 * and deterministic given their seeds.
 * Left out: the paper's learned-optimizer meta-training curves for each K (that is
 * `lopt meta-train`), and averaging the surfaces over several task instances.
 *
 * Intended usage (src/cli/cmd_pathology.c binds its flags to the options):
 *
 *     lopt_gradvar_opts o;
 *     lopt_gradvar_opts_default(&o);           // the defaults of `lopt pathology gradvar`
 *     o.c.arch = &arch; o.c.theta = theta;     // the learned optimizer studied
 *     o.Ks[0] = 1; o.Ks[1] = 100; o.nK = 2;
 *     char *table;
 *     st = lopt_pathology_gradvar(&task, &o, "out/gradvar", &table, &err);  // run + write
 *
 * or the parts, to use a result without files (tests, other reports):
 *     lopt_gradvar_result r;
 *     if (lopt_gradvar_run(&task, &o, &r, &err) == LOPT_OK) ... r.rows[k].v_rp ...
 *     lopt_gradvar_result_free(&r);
 * The files: pathology_{surface,gradvar,bias}.c, one study each, run then write;
 * pathology.c holds what they share and the pipelines.
 */
#ifndef LOPT_PATHOLOGY_H
#define LOPT_PATHOLOGY_H

#include <stdint.h>

#include "core/core.h"
#include "lopt/mlp_lopt.h"
#include "tasks/task.h"

#define LOPT_PATHOLOGY_MAX_K 32

/* Progress in units of inner steps (done of total), with what is running. */
typedef void (*lopt_pathology_progress)(void *user, int64_t done, int64_t total, const char *what);

/* What the surface and gradvar studies share: the learned optimizer studied and
 * the inner state the unrolls start from. */
typedef struct {
    const lopt_arch *arch;
    const float *theta;        /* (lopt_arch_nparams(arch)) */
    const char *theta_source;  /* shown in the summary ("normalized-sgd ..." or a path) */
    uint64_t seed;             /* task instance and data order of the start state;
                                * also seeds directions and perturbations */
    int64_t warmup;            /* inner steps under theta before the start state */
    lopt_split outer_split;    /* outer loss on train or valid batches */
    float loss_clip;           /* outer losses clipped here (<= 0: off) */
    lopt_pathology_progress progress;   /* may be NULL */
    void *user;
} lopt_pathology_common;

typedef struct {
    lopt_pathology_common c;
    int Ks[LOPT_PATHOLOGY_MAX_K];   /* unroll lengths */
    int nK;
    int points;                /* >= 3: a in linspace(-radius, radius, points) */
    double radius;
    int samples;               /* perturbations for the smoothed loss (even; 0: none) */
    float sigma;
    int smooth_every;          /* smoothed loss at every smooth_every-th point (>= 1) */
    int grid;                  /* 2-D slice: grid x grid points (0: none) */
    int K2d[LOPT_PATHOLOGY_MAX_K];  /* its unroll lengths (one slice each) */
    int nK2d;
} lopt_surface_opts;

typedef struct {
    lopt_pathology_common c;
    int Ks[LOPT_PATHOLOGY_MAX_K];
    int nK;
    int samples;               /* antithetic pairs S >= 2 */
    float sigma;
} lopt_gradvar_opts;

typedef struct {
    uint64_t seed;             /* instances seed .. seed+instances-1 (instance, init, data) */
    int instances;
    int64_t horizon;           /* H inner steps */
    int Ks[LOPT_PATHOLOGY_MAX_K];   /* truncation lengths (<= H) */
    int nK;
    int outer_steps;           /* Adam steps on p = log lr */
    double outer_lr;           /* Adam's step, cosine-decayed to 1% over outer_steps */
    double lr0;                /* initial lr of the meta-learning */
    double lr_lo, lr_hi;       /* grid for the true optimum and the plots */
    int grid_points;
    double loss_clip_factor;   /* inner loss above factor * initial: diverged, the rest
                                * of the horizon counts as that value */
    lopt_pathology_progress progress;
    void *user;
} lopt_bias_opts;

/* Fills defaults (the sizes `lopt pathology` uses without flags). */
void lopt_surface_opts_default(lopt_surface_opts *o);
void lopt_gradvar_opts_default(lopt_gradvar_opts *o);
void lopt_bias_opts_default(lopt_bias_opts *o);

/* Each study is a run, which validates the options and computes a result, and a
 * write, which puts a result on disk; lopt_pathology_<study> is the pipeline
 * check -> create dir -> run -> write -> free that `lopt pathology` calls.
 *
 * lopt_pathology_<study>: run a study on task t and write its files into dir
 * (created if missing). *summary (may be NULL) receives a few malloc'ed lines for
 * the terminal (caller frees). LOPT_EUSAGE for bad options (before dir is created),
 * LOPT_EIO when dir or a file cannot be written. Files:
 *   surface: surface.csv (K,a,loss,smoothed_loss), surface2d.csv (K,a,b,loss),
 *            summary.json, surface_K<K>.{svg,png} per K, surface_all.{svg,png}
 *            (each curve min-max normalised), surface2d_K<K>.{svg,png} (heatmap per
 *            K2d: the PNG is the bare image with a colour bar, the SVG is labelled)
 *   gradvar: gradvar.csv, summary.json, variance.{svg,png}, norm.{svg,png},
 *            es_weight.{svg,png}
 *   bias:    bias.csv (one row per K), grid.csv (per lr: full-horizon losses and each
 *            K's truncated meta-gradient), outer.csv (lr during meta-learning),
 *            summary.json, lr_vs_K, loss_vs_K, loss_vs_lr, metagrad_vs_lr,
 *            outer_lr .{svg,png} */
lopt_status lopt_pathology_surface(lopt_task *t, const lopt_surface_opts *o, const char *dir,
                                   char **summary, lopt_err *err);
lopt_status lopt_pathology_gradvar(lopt_task *t, const lopt_gradvar_opts *o, const char *dir,
                                   char **summary, lopt_err *err);
lopt_status lopt_pathology_bias(lopt_task *t, const lopt_bias_opts *o, const char *dir,
                                char **summary, lopt_err *err);

/* ---- the parts of the pipeline ----------------------------------------------------
 * _check: LOPT_EUSAGE with a one-line reason for options out of range (naming them
 *         by the flags of `lopt pathology`); it does not look at c.arch and c.theta,
 *         which lopt_pathology_check_theta checks (set, with an exact reverse pass).
 * _run: the computation (o checked, progress reported), into *r; the result keeps a
 *       copy of o and points at t's name (t must outlive it). Release with _free.
 * _write: r's files into dir (which must exist), *summary as above.
 * _free(NULL) and _free of a zeroed result are no-ops. */

/* surface: for each K of o->Ks, the line loss and its smoothed version */
typedef struct {
    lopt_surface_opts o;
    const char *task;
    int P, G, nK, n2;          /* points, grid side, line unroll lengths, 2-D slices */
    double *a;                 /* (P) positions along u */
    double *loss, *smooth;     /* (nK, P) L_K(theta + a u); smoothed (NaN: not sampled) */
    double *at0;               /* (nK) L_K(theta) */
    double *lo, *hi;           /* (nK) min, max of the finite line losses */
    double *rough, *rough_s;   /* (nK) roughness of the line and of the smoothed line */
    double *z;                 /* (n2, G, G) 2-D slice: row = b index, column = a index */
} lopt_surface_result;

/* gradvar: one row per unroll length K */
typedef struct {
    int K;
    double loss, g_rp_norm, g_es_norm, v_rp, v_es, w_es, rp_sample_norm, es_sample_norm;
    int diverged;
    int rp_nonfinite;   /* samples whose rp gradient overflowed float32 (inf/NaN) */
    double tape_mb, time_s;
} lopt_gradvar_row;

typedef struct {
    lopt_gradvar_opts o;
    const char *task;
    lopt_gradvar_row *rows;    /* (o.nK) */
} lopt_gradvar_result;

/* bias: the lr grid, the full-horizon optimum and each K's meta-learned lr */
typedef struct {
    double mean_loss;    /* mean over t = 1..H of l(w_t): the full-horizon objective */
    double final_loss;   /* l(w_H) */
    double metagrad;     /* mean over truncations of d(truncation loss)/dp */
    int diverged;        /* runs (instances) that diverged */
} lopt_bias_point;

typedef struct {
    lopt_bias_opts o;
    const char *task;
    /* the grid, GP = o.grid_points log-spaced learning rates */
    double *grid_lr, *grid_log10;     /* (GP) */
    double *grid_mean, *grid_final;   /* (GP) full-horizon mean and final losses */
    double *grid_metagrad;            /* (nK, GP) each K's truncated meta-gradient */
    int best, best_final;             /* grid indices minimising mean, final loss */
    double opt_lr;                    /* the refined full-horizon optimum */
    lopt_bias_point opt;              /* its full-horizon losses */
    /* meta-learning, OS = o.outer_steps Adam steps per K */
    double *lr, *final_metagrad, *mean_loss, *final_loss, *truncated_loss;   /* (nK) */
    int *diverged;                    /* (nK) */
    double *traj;                     /* (nK, OS + 1) lr before each outer step, last after */
} lopt_bias_result;

lopt_status lopt_pathology_check_theta(const lopt_pathology_common *c, lopt_err *err);

lopt_status lopt_surface_check(const lopt_surface_opts *o, lopt_err *err);
lopt_status lopt_surface_run(lopt_task *t, const lopt_surface_opts *o, lopt_surface_result *r,
                             lopt_err *err);
lopt_status lopt_surface_write(const lopt_surface_result *r, const char *dir, char **summary,
                               lopt_err *err);
void lopt_surface_result_free(lopt_surface_result *r);

lopt_status lopt_gradvar_check(const lopt_gradvar_opts *o, lopt_err *err);
lopt_status lopt_gradvar_run(lopt_task *t, const lopt_gradvar_opts *o, lopt_gradvar_result *r,
                             lopt_err *err);
lopt_status lopt_gradvar_write(const lopt_gradvar_result *r, const char *dir, char **summary,
                               lopt_err *err);
void lopt_gradvar_result_free(lopt_gradvar_result *r);

lopt_status lopt_bias_check(const lopt_bias_opts *o, lopt_err *err);
lopt_status lopt_bias_run(lopt_task *t, const lopt_bias_opts *o, lopt_bias_result *r,
                          lopt_err *err);
lopt_status lopt_bias_write(const lopt_bias_result *r, const char *dir, char **summary,
                            lopt_err *err);
void lopt_bias_result_free(lopt_bias_result *r);

/* Roughness of a curve y (n points): total variation over range,
 * sum |y_{i+1} - y_i| / (max y - min y); 1 for a monotone curve, 2 for a single
 * valley, large for a jagged one. NaN when fewer than 2 finite points or a flat
 * curve. Non-finite points are skipped. */
double lopt_pathology_roughness(const double *y, int n);

#endif
