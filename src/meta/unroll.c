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

void lopt_unroll_ws_init(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K)
{
    memset(ws, 0, sizeof *ws);
    size_t n = task->n, M = (size_t)arch->nmom;
    ws->task = task;
    ws->arch = arch;
    ws->K = K;
    lopt_batch_alloc(&ws->inner, task, task->batch);
    lopt_batch_alloc(&ws->outer, task, task->batch);
    lopt_mlp_work_init(&ws->wk, arch, n, task->ntensors);
    ws->tape_w = lopt_floats((size_t)K * n);
    ws->tape_m = lopt_floats((size_t)K * M * n);
    ws->tape_g = lopt_floats((size_t)K * n);
    ws->tape_go = lopt_floats((size_t)K * n);
    ws->tape_lo = lopt_xcalloc((size_t)K, sizeof(double));
    ws->delta = lopt_floats(n);
    ws->mtmp = lopt_floats(M * n);
    ws->bw = lopt_floats(n);
    ws->bm = lopt_floats(M * n);
    ws->bg = lopt_floats(n);
    ws->hv = lopt_floats(n);
}

void lopt_unroll_ws_free(lopt_unroll_ws *ws)
{
    if (!ws || !ws->task) return;
    lopt_batch_free(&ws->inner);
    lopt_batch_free(&ws->outer);
    lopt_mlp_work_free(&ws->wk);
    float *bufs[] = {ws->tape_w, ws->tape_m, ws->tape_g, ws->tape_go, ws->delta,
                     ws->mtmp, ws->bw, ws->bm, ws->bg, ws->hv};
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

static void sample_outer(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const lopt_traj *tr,
                         int64_t t)
{
    if (cfg->outer_split == LOPT_SPLIT_TRAIN)
        lopt_task_sample(ws->task, &ws->outer, LOPT_SPLIT_TRAIN, tr->task_seed ^ OUTER_TRAIN_SALT, t);
    else
        lopt_task_sample(ws->task, &ws->outer, cfg->outer_split, tr->task_seed, t);
}

static int clipped(const lopt_unroll_cfg *cfg, double lo)
{
    return cfg->loss_clip > 0 && !(lo < cfg->loss_clip);
}

lopt_unroll_out lopt_unroll(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg,
                            const float *theta, lopt_traj *tr, float *dtheta)
{
    lopt_task *task = ws->task;
    const lopt_arch *a = ws->arch;
    const size_t n = task->n, M = (size_t)a->nmom;
    LOPT_ASSERT(cfg->K <= ws->K && cfg->K > 0);
    if (task->set_instance) task->set_instance(task, tr->task_seed);

    int64_t left = tr->horizon - tr->t;
    int K = left < cfg->K ? (int)(left > 0 ? left : 0) : cfg->K;
    lopt_unroll_out out = {0, 0, 0};
    if (K == 0) {
        tr->needs_reset = 1;
        return out;
    }
    double sum = 0.0;
    float *g = ws->bg;   /* the forward's gradient buffer when no tape is kept */
    for (int k = 0; k < K; k++) {
        float *gk = dtheta ? ws->tape_g + (size_t)k * n : g;
        if (dtheta) {
            memcpy(ws->tape_w + (size_t)k * n, tr->w, n * sizeof(float));
            memcpy(ws->tape_m + (size_t)k * M * n, tr->m, M * n * sizeof(float));
        }
        lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, tr->task_seed, tr->t);
        double li = task->loss_grad(task, tr->w, &ws->inner, gk);
        if (!isfinite(li) || li > cfg->diverge_factor * tr->init_loss) {
            out.diverged = 1;
            break;
        }
        lopt_mlp_update(&ws->wk, theta, task->tensors, task->ntensors, tr->w, gk, tr->m, tr->t,
                        ws->delta);
        for (size_t i = 0; i < n; i++) tr->w[i] += ws->delta[i];
        tr->t++;
        sample_outer(ws, cfg, tr, tr->t - 1);
        double lo = task->loss_grad(task, tr->w, &ws->outer,
                                    dtheta ? ws->tape_go + (size_t)k * n : NULL);
        if (!isfinite(lo)) {
            out.diverged = 1;
            out.steps++;
            sum += cfg->loss_clip > 0 ? cfg->loss_clip : 1e30;
            ws->tape_lo[k] = lo;
            break;
        }
        if (dtheta) ws->tape_lo[k] = lo;
        sum += clipped(cfg, lo) ? cfg->loss_clip : lo;
        out.steps++;
    }
    if (out.diverged) {
        /* the steps not taken count as the clip value (constant: no gradient) */
        sum += (double)(K - out.steps) * (cfg->loss_clip > 0 ? cfg->loss_clip : 1e30);
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
    const float inv_k = 1.0f / (float)K;
    for (int k = last - 1; k >= 0; k--) {
        const float *wk_ = ws->tape_w + (size_t)k * n, *gk = ws->tape_g + (size_t)k * n;
        const float *go = ws->tape_go + (size_t)k * n;
        int64_t tk = tr->t - (out.steps - k);
        if (!clipped(cfg, ws->tape_lo[k]))
            for (size_t i = 0; i < n; i++) ws->bw[i] += inv_k * go[i];
        /* recompute step k's learned-optimizer activations */
        memcpy(ws->mtmp, ws->tape_m + (size_t)k * M * n, M * n * sizeof(float));
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
            lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, tr->task_seed, tk);
            task->hvp(task, wk_, &ws->inner, ws->bg, ws->hv, NULL);
            for (size_t i = 0; i < n; i++) ws->bw[i] += ws->hv[i];
        }
    }
    return out;
}
