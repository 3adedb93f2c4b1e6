/* unroll.c - truncated unrolls, forward and exact reverse mode (see unroll.h).
 *
 * Forward, step k (state w_k, m_k, t_k):
 *   g_k     = grad l(w_k; inner batch t_k)
 *   m_{k+1} = beta m_k + (1 - beta) g_k
 *   w_{k+1} = w_k + delta(theta; g_k, w_k, m_{k+1}, t_k)
 *   L      += min(l_o(w_{k+1}; outer batch t_k), clip) / K
 * Reverse (adjoints bw of w_{k+1}, bm of m_{k+1}, from the later steps):
 *   bw     += grad l_o(w_{k+1}) / K                      (if not clipped)
 *   (dtheta, bg, bw_feat, bm_feat) = VJP of delta at step k with adjoint bw
 *   bm_tot  = bm + bm_feat
 *   bg     += sum_j (1 - beta_j) bm_tot_j ;  bm = beta bm_tot
 *   bw      = bw + bw_feat + H(w_k) bg                   (the second-order term)
 * The tape keeps w_k, m_k, g_k and grad l_o(w_{k+1}) for every step, so the reverse
 * pass recomputes only the learned optimizer's activations and the HVP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "meta/unroll.h"

/* outer training batches must differ from the inner ones */
#define OUTER_TRAIN_SALT 0x6f75746572ULL

void lopt_traj_alloc(lopt_traj *tr, size_t n, int nmom)
{
    memset(tr, 0, sizeof *tr);
    tr->w = lopt_floats(n);
    tr->m = lopt_floats((size_t)nmom * n);
    tr->needs_reset = 1;
}

void lopt_traj_free(lopt_traj *tr)
{
    if (!tr) return;
    lopt_free(tr->w);
    lopt_free(tr->m);
    memset(tr, 0, sizeof *tr);
}

void lopt_traj_copy(lopt_traj *dst, const lopt_traj *src, size_t n, int nmom)
{
    float *w = dst->w, *m = dst->m;
    *dst = *src;
    dst->w = w;
    dst->m = m;
    memcpy(w, src->w, n * sizeof(float));
    memcpy(m, src->m, (size_t)nmom * n * sizeof(float));
}

void lopt_unroll_ws_init_seg(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K,
                             int seg)
{
    memset(ws, 0, sizeof *ws);
    size_t n = task->n, M = (size_t)arch->nmom;
    if (seg >= K) seg = 0;
    ws->task = task;
    ws->arch = arch;
    ws->K = K;
    ws->seg = seg;
    ws->slots = seg > 0 ? seg : K;
    size_t S = (size_t)ws->slots;
    lopt_batch_alloc(&ws->inner, task, task->batch);
    lopt_batch_alloc(&ws->outer, task, task->batch);
    lopt_mlp_work_init(&ws->wk, arch, n, task->ntensors);
    ws->tape_w = lopt_floats(S * n);
    ws->tape_m = lopt_floats(S * M * n);
    ws->tape_g = lopt_floats(S * n);
    ws->tape_go = lopt_floats(S * n);
    ws->tape_lo = lopt_xcalloc((size_t)K, sizeof(double));
    if (seg > 0) {
        size_t nck = (size_t)(K / seg) + 1;
        ws->ck_w = lopt_floats(nck * n);
        ws->ck_m = lopt_floats(nck * M * n);
    }
    ws->delta = lopt_floats(n);
    ws->mtmp = lopt_floats(M * n);
    ws->bw = lopt_floats(n);
    ws->bm = lopt_floats(M * n);
    ws->bg = lopt_floats(n);
    ws->hv = lopt_floats(n);
}

void lopt_unroll_ws_init(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K)
{
    lopt_unroll_ws_init_seg(ws, task, arch, K, K <= 64 ? 0 : (int)ceil(sqrt((double)K)));
}

size_t lopt_unroll_tape_bytes(const lopt_unroll_ws *ws)
{
    size_t n = ws->task->n, M = (size_t)ws->arch->nmom;
    size_t steps = (size_t)ws->slots * (3 + M) * n;
    size_t ck = ws->seg > 0 ? ((size_t)(ws->K / ws->seg) + 1) * (1 + M) * n : 0;
    return (steps + ck) * sizeof(float) + (size_t)ws->K * sizeof(double);
}

void lopt_unroll_ws_free(lopt_unroll_ws *ws)
{
    if (!ws || !ws->task) return;
    lopt_batch_free(&ws->inner);
    lopt_batch_free(&ws->outer);
    lopt_mlp_work_free(&ws->wk);
    float *bufs[] = {ws->tape_w, ws->tape_m, ws->tape_g, ws->tape_go, ws->ck_w, ws->ck_m,
                     ws->delta, ws->mtmp, ws->bw, ws->bm, ws->bg, ws->hv};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) lopt_free(bufs[i]);
    free(ws->tape_lo);
    memset(ws, 0, sizeof *ws);
}

void lopt_traj_start(lopt_unroll_ws *ws, lopt_traj *tr, uint64_t task_seed, int64_t horizon)
{
    lopt_task *task = ws->task;
    task->init(task, task_seed, tr->w);
    memset(tr->m, 0, (size_t)ws->arch->nmom * task->n * sizeof(float));
    tr->t = 0;
    tr->horizon = horizon;
    tr->task_seed = task_seed;
    tr->needs_reset = 0;
    lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, task_seed, 0);
    tr->init_loss = task->loss_grad(task, tr->w, &ws->inner, NULL);
}

static int clipped(const lopt_unroll_cfg *cfg, double lo)
{
    return cfg->loss_clip > 0 && !(lo < cfg->loss_clip);
}

/* One forward step from (w, m) at inner step t: g (n) receives the inner
 * gradient, go (n, may be NULL) the outer loss's gradient at the new w; w and m are
 * advanced in place. Returns the inner loss; *lo the outer loss. Used by the
 * forward pass and, identically, by the reverse pass's recomputation. */
static double forward_step(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const float *theta,
                           uint64_t task_seed, int64_t t, float *w, float *m, float *g,
                           float *go, double init_loss, double *lo)
{
    lopt_task *task = ws->task;
    const size_t n = task->n;
    lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, task_seed, t);
    double li = task->loss_grad(task, w, &ws->inner, g);
    if (!isfinite(li) || li > cfg->diverge_factor * init_loss) return li;
    lopt_mlp_update(&ws->wk, theta, task->tensors, task->ntensors, w, g, m, t, ws->delta);
    for (size_t i = 0; i < n; i++) w[i] += ws->delta[i];
    if (cfg->outer_split == LOPT_SPLIT_TRAIN)
        lopt_task_sample(task, &ws->outer, LOPT_SPLIT_TRAIN, task_seed ^ OUTER_TRAIN_SALT, t);
    else
        lopt_task_sample(task, &ws->outer, cfg->outer_split, task_seed, t);
    *lo = task->loss_grad(task, w, &ws->outer, go);
    return li;
}

/* The reverse pass over steps [k0, k1) whose states sit in tape slots 0.. ;
 * t0 is the inner step of k = 0. Accumulates into dtheta and the adjoints. */
static void reverse_steps(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const float *theta,
                          uint64_t task_seed, int64_t t0, int k0, int k1, int K, float *dtheta)
{
    lopt_task *task = ws->task;
    const lopt_arch *a = ws->arch;
    const size_t n = task->n, M = (size_t)a->nmom;
    const float inv_k = 1.0f / (float)K;
    for (int k = k1 - 1; k >= k0; k--) {
        size_t slot = (size_t)(k - k0);
        const float *wk_ = ws->tape_w + slot * n, *gk = ws->tape_g + slot * n;
        const float *go = ws->tape_go + slot * n;
        int64_t tk = t0 + k;
        if (!clipped(cfg, ws->tape_lo[k]))
            for (size_t i = 0; i < n; i++) ws->bw[i] += inv_k * go[i];
        /* recompute step k's learned-optimizer activations */
        memcpy(ws->mtmp, ws->tape_m + slot * M * n, M * n * sizeof(float));
        lopt_mlp_update(&ws->wk, theta, task->tensors, task->ntensors, wk_, gk, ws->mtmp, tk,
                        ws->delta);
        memset(ws->bg, 0, n * sizeof(float));
        /* bw is the adjoint of delta too (w_{k+1} = w_k + delta); the VJP's dw is
         * accumulated into hv first so bw is not read while written */
        memset(ws->hv, 0, n * sizeof(float));
        lopt_mlp_vjp(&ws->wk, theta, task->tensors, task->ntensors, wk_, gk, ws->mtmp, tk,
                     ws->delta, ws->bw, dtheta, ws->bg, ws->hv, ws->bm);
        for (size_t i = 0; i < n; i++) ws->bw[i] += ws->hv[i];
        for (size_t j = 0; j < M; j++) {
            float b = a->beta[j], *bmj = ws->bm + j * n;
            for (size_t i = 0; i < n; i++) {
                ws->bg[i] += (1.0f - b) * bmj[i];
                bmj[i] *= b;
            }
        }
        if (!cfg->first_order) {
            lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, task_seed, tk);
            task->hvp(task, wk_, &ws->inner, ws->bg, ws->hv, NULL);
            for (size_t i = 0; i < n; i++) ws->bw[i] += ws->hv[i];
        }
    }
}

lopt_unroll_out lopt_unroll(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg,
                            const float *theta, lopt_traj *tr, float *dtheta)
{
    lopt_task *task = ws->task;
    const size_t n = task->n, M = (size_t)ws->arch->nmom;
    LOPT_ASSERT(cfg->K <= ws->K && cfg->K > 0);
    if (task->set_instance) task->set_instance(task, tr->task_seed);

    int64_t left = tr->horizon - tr->t;
    int K = left < cfg->K ? (int)(left > 0 ? left : 0) : cfg->K;
    lopt_unroll_out out = {0, 0, 0};
    if (K == 0) {
        tr->needs_reset = 1;
        return out;
    }
    const int seg = ws->seg;
    const int64_t t0 = tr->t;
    const double clip = cfg->loss_clip > 0 ? cfg->loss_clip : 1e30;
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        /* what the reverse pass needs: every step's state, or one per segment */
        float *gk = ws->bg, *gok = NULL;
        if (dtheta && seg == 0) {
            memcpy(ws->tape_w + (size_t)k * n, tr->w, n * sizeof(float));
            memcpy(ws->tape_m + (size_t)k * M * n, tr->m, M * n * sizeof(float));
            gk = ws->tape_g + (size_t)k * n;
            gok = ws->tape_go + (size_t)k * n;
        } else if (dtheta && k % seg == 0) {
            memcpy(ws->ck_w + (size_t)(k / seg) * n, tr->w, n * sizeof(float));
            memcpy(ws->ck_m + (size_t)(k / seg) * M * n, tr->m, M * n * sizeof(float));
        }
        double lo = NAN;
        double li = forward_step(ws, cfg, theta, tr->task_seed, tr->t, tr->w, tr->m, gk, gok,
                                 tr->init_loss, &lo);
        if (!isfinite(li) || li > cfg->diverge_factor * tr->init_loss) {
            out.diverged = 1;
            break;
        }
        tr->t++;
        out.steps++;
        ws->tape_lo[k] = lo;
        if (!isfinite(lo)) {
            out.diverged = 1;
            sum += clip;
            break;
        }
        sum += clipped(cfg, lo) ? cfg->loss_clip : lo;
    }
    if (out.diverged) {
        /* the steps not taken count as the clip value (constant: no gradient) */
        sum += (double)(K - out.steps) * clip;
        tr->needs_reset = 1;
    }
    if (tr->t >= tr->horizon) tr->needs_reset = 1;
    out.loss = sum / K;
    if (!dtheta) return out;

    /* reverse pass over the steps whose outer loss was finite */
    int last = out.steps;
    if (last > 0 && !isfinite(ws->tape_lo[last - 1])) last--;
    memset(ws->bw, 0, n * sizeof(float));
    memset(ws->bm, 0, M * n * sizeof(float));
    if (seg == 0) {
        reverse_steps(ws, cfg, theta, tr->task_seed, t0, 0, last, K, dtheta);
        return out;
    }
    /* segment by segment, last first: recompute its steps from its checkpoint into
     * the tape, then reverse them */
    float *w = lopt_floats(n), *m = lopt_floats(M * n);
    for (int k0 = ((last - 1) / seg) * seg; last > 0 && k0 >= 0; k0 -= seg) {
        int k1 = k0 + seg < last ? k0 + seg : last;
        memcpy(w, ws->ck_w + (size_t)(k0 / seg) * n, n * sizeof(float));
        memcpy(m, ws->ck_m + (size_t)(k0 / seg) * M * n, M * n * sizeof(float));
        for (int k = k0; k < k1; k++) {
            size_t slot = (size_t)(k - k0);
            memcpy(ws->tape_w + slot * n, w, n * sizeof(float));
            memcpy(ws->tape_m + slot * M * n, m, M * n * sizeof(float));
            double lo;
            forward_step(ws, cfg, theta, tr->task_seed, t0 + k, w, m, ws->tape_g + slot * n,
                         ws->tape_go + slot * n, tr->init_loss, &lo);
        }
        reverse_steps(ws, cfg, theta, tr->task_seed, t0, k0, k1, K, dtheta);
    }
    lopt_free(w);
    lopt_free(m);
    return out;
}
