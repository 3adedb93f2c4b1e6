/* unroll.h - truncated unrolls of inner training under a learned optimizer
 * (docs/design.md section 1.2), forward-only (for es) and with exact backpropagation
 * through the K steps (for rp), including the inner Hessian-vector product at every
 * step.
 *
 * A trajectory trains one task instance from initialisation for its horizon; a
 * truncation advances it by K steps. The outer loss of a truncation is
 *     L = sum_{k=0}^{K-1} c_k min(l_outer(w_{k+1}), clip)
 * with l_outer the mean over `outer_batches` training batches other than the inner
 * one, or validation batches, and the weights c_k of the outer weighting:
 *   mean    c_k = 1/K                       (the paper: the truncation's mean)
 *   end     c_{K-1} = 1, others 0           (the loss where the truncation ends)
 *   tail:F  c_k = 1/T for the steps whose new parameters w_{k+1} lie in the last
 *           T = ceil(F * horizon) steps of the trajectory, 0 before: summed over a
 *           trajectory's truncations, the mean loss over the tail of its horizon.
 * The outer loss is computed only at steps with c_k > 0 (no forward pass on outer
 * batches that nothing reads). If the inner loss diverges (NaN/inf, or above
 * diverge_factor times its value at initialisation) at step k, the truncation
 * stops there; the remaining steps count as `clip` (with their weights) and the
 * trajectory is marked for reset.
 */
#ifndef LOPT_UNROLL_H
#define LOPT_UNROLL_H

#include <stdint.h>

#include "lopt/mlp_lopt.h"
#include "tasks/task.h"

typedef enum { LOPT_WEIGHT_MEAN, LOPT_WEIGHT_END, LOPT_WEIGHT_TAIL } lopt_weight_kind;

/* How the steps of a truncation weigh in its outer loss (see above). */
typedef struct {
    lopt_weight_kind kind;
    float tail;               /* F in (0, 1] for LOPT_WEIGHT_TAIL */
} lopt_outer_weight;

/* Parses "mean", "end" or "tail:F" (0 < F <= 1); LOPT_EUSAGE otherwise. The
 * printed form (lopt_outer_weight_str) parses back to the same weighting. */
lopt_status lopt_outer_weight_parse(lopt_outer_weight *w, const char *s, lopt_err *err);
void lopt_outer_weight_str(const lopt_outer_weight *w, char *buf, size_t cap);

typedef struct {
    int K;                    /* truncation length */
    lopt_split outer_split;   /* LOPT_SPLIT_TRAIN or LOPT_SPLIT_VALID */
    lopt_outer_weight weight; /* zero-initialised: mean */
    int outer_batches;        /* batches averaged per outer-loss evaluation (0 means 1) */
    float loss_clip;          /* outer losses clipped at this (<= 0: no clip) */
    float diverge_factor;     /* inner loss above factor * initial loss = diverged */
    int first_order;          /* rp: drop the inner HVP (an approximation, not default) */
} lopt_unroll_cfg;

/* One trajectory's inner state. */
typedef struct {
    float *w;              /* (n) */
    float *m;              /* (rows, n) the learned optimizer's state: its momenta (and
                            * the Adam direction's second moment), lopt_arch_state_rows */
    int64_t t;             /* inner steps taken */
    int64_t horizon;       /* steps before this trajectory restarts */
    uint64_t task_seed;    /* instance, initialisation and data order */
    double init_loss;      /* a training-batch loss at initialisation */
    int needs_reset;       /* horizon reached or diverged */
} lopt_traj;

/* rows: lopt_arch_state_rows of the optimizer the trajectory runs */
void lopt_traj_alloc(lopt_traj *tr, size_t n, int rows);
void lopt_traj_free(lopt_traj *tr);
void lopt_traj_copy(lopt_traj *dst, const lopt_traj *src, size_t n, int rows);

/* A workspace for one thread: its own task object, batches, the learned
 * optimizer's scratch and the rp tape.
 * Memory: keeping every step's state costs (3 + nmom) n floats per step, which
 * for long unrolls does not fit. With a segment length C > 0 the forward pass keeps
 * only the state (w, m) every C steps; the reverse pass recomputes one segment at a
 * time from its checkpoint (one extra forward step per step), so the tape holds
 * K/C states plus C steps: with C ~ sqrt(K), O(sqrt(K)) instead of O(K). */
typedef struct {
    lopt_task *task;        /* borrowed; one per thread */
    const lopt_arch *arch;
    lopt_batch inner, outer;
    lopt_mlp_work wk;
    int K;                  /* longest truncation */
    int seg;                /* segment length C; 0: keep every step */
    int slots;              /* steps the tape holds: K, or C; 0: no tape (forward only) */
    float *tape_w, *tape_m, *tape_g, *tape_go;   /* per step: w_k, m_k, g_k, grad l_outer(w_{k+1}) */
    double *tape_lo;        /* (K) per step: l_outer(w_{k+1}) (unclipped; 0 where unread) */
    float *weight;          /* (K) per step: c_k of the truncation being unrolled */
    float *ck_w, *ck_m;     /* (K/C + 1) checkpointed states, when seg > 0 */
    float *delta, *mtmp;    /* (n), (nmom, n) */
    float *gtmp;            /* (n) one outer batch's gradient (outer_batches > 1) */
    float *bw, *bm, *bg, *hv;   /* adjoints: w, m, g, and H g-bar */
} lopt_unroll_ws;

/* Sizes the workspace for truncations of up to K steps; keeps every step for
 * K <= 64 and checkpoints every ceil(sqrt(K)) steps beyond. */
void lopt_unroll_ws_init(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K);
/* A workspace without a tape, for forward-only unrolls (es, pes, nres, fulles):
 * lopt_unroll with dtheta != NULL is then a programmer error. */
void lopt_unroll_ws_init_forward(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch,
                                 int K);
/* The same with an explicit segment length (0: keep every step). */
void lopt_unroll_ws_init_seg(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K,
                             int seg);
/* Bytes the rp tape holds (the memory that grows with K). */
size_t lopt_unroll_tape_bytes(const lopt_unroll_ws *ws);
void lopt_unroll_ws_free(lopt_unroll_ws *ws);

/* Starts (or restarts) a trajectory: instance and initial parameters from
 * task_seed, zero momenta, t = 0. */
void lopt_traj_start(lopt_unroll_ws *ws, lopt_traj *tr, uint64_t task_seed, int64_t horizon);

typedef struct {
    double loss;          /* the truncation's outer loss L */
    int steps;            /* inner steps actually taken (< K if diverged / horizon) */
    int diverged;         /* the inner loss diverged during this truncation */
} lopt_unroll_out;

/* Advances tr by up to K steps (fewer if the horizon comes first: the mean is over
 * the steps taken) under theta. With dtheta != NULL also backpropagates through
 * the steps taken: dtheta += dL/dtheta (exact, with the inner HVP at every step,
 * unless cfg->first_order). */
lopt_unroll_out lopt_unroll(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg,
                            const float *theta, lopt_traj *tr, float *dtheta);

#endif
