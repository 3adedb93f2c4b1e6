/* unroll.c - truncated unrolls, forward and exact reverse mode (see unroll.h).
 *
 * Forward, step k (state w_k, m_k, t_k):
 *   g_k     = grad l(w_k; inner batch t_k)
 *   m_{k+1} = beta m_k + (1 - beta) g_k
 *   w_{k+1} = w_k + delta(theta; g_k, w_k, m_{k+1}, t_k)
 *   L      += c_k min(l_o(w_{k+1}; outer batches of t_k), clip)   (c_k: unroll.h)
 * Reverse (adjoints bw of w_{k+1}, bm of m_{k+1}, from the later steps):
 *   bw     += c_k grad l_o(w_{k+1})                      (if read and not clipped)
 *   (dtheta, bg, bw_feat, bm_feat) = VJP of delta at step k with adjoint bw
 *   bm_tot  = bm + bm_feat
 *   bg     += sum_j (1 - beta_j) bm_tot_j ;  bm = beta bm_tot
 *   bw      = bw + bw_feat + H(w_k) bg                   (the second-order term)
 * The tape keeps w_k, m_k, g_k and grad l_o(w_{k+1}) for every step, so the reverse
 * pass recomputes only the learned optimizer's activations and the HVP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta/unroll.h"

/* outer training batches must differ from the inner ones */
#define OUTER_TRAIN_SALT 0x6f75746572ULL

void lopt_traj_alloc(lopt_traj *tr, size_t n, int rows)
{
    memset(tr, 0, sizeof *tr);
    tr->w = lopt_floats(n);
    tr->m = lopt_floats((size_t)rows * n);
    tr->needs_reset = 1;
}

void lopt_traj_free(lopt_traj *tr)
{
    if (!tr) return;
    lopt_free(tr->w);
    lopt_free(tr->m);
    memset(tr, 0, sizeof *tr);
}

void lopt_traj_copy(lopt_traj *dst, const lopt_traj *src, size_t n, int rows)
{
    float *w = dst->w, *m = dst->m;
    *dst = *src;
    dst->w = w;
    dst->m = m;
    memcpy(w, src->w, n * sizeof(float));
    memcpy(m, src->m, (size_t)rows * n * sizeof(float));
}

/* seg: segment length (0: every step); tape: 0 for a forward-only workspace */
static void ws_init(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K, int seg,
                    int tape)
{
    memset(ws, 0, sizeof *ws);
    size_t n = task->n, M = (size_t)arch->nmom;
    if (seg >= K) seg = 0;
    ws->task = task;
    ws->arch = arch;
    ws->K = K;
    ws->seg = tape ? seg : 0;
    ws->slots = !tape ? 0 : seg > 0 ? seg : K;
    size_t S = (size_t)ws->slots;
    lopt_batch_alloc(&ws->inner, task, task->batch);
    lopt_batch_alloc(&ws->outer, task, task->batch);
    lopt_mlp_work_init(&ws->wk, arch, n, task->ntensors);
    if (tape) {
        ws->tape_w = lopt_floats(S * n);
        ws->tape_m = lopt_floats(S * M * n);
        ws->tape_g = lopt_floats(S * n);
        ws->tape_go = lopt_floats(S * n);
    }
    ws->tape_lo = lopt_xcalloc((size_t)K, sizeof(double));
    ws->weight = lopt_floats((size_t)K);
    if (ws->seg > 0) {
        size_t nck = (size_t)(K / seg) + 1;
        ws->ck_w = lopt_floats(nck * n);
        ws->ck_m = lopt_floats(nck * M * n);
    }
    ws->delta = lopt_floats(n);
    ws->mtmp = lopt_floats(M * n);
    ws->gtmp = lopt_floats(n);
    ws->bw = lopt_floats(n);
    ws->bm = lopt_floats(M * n);
    ws->bg = lopt_floats(n);
    ws->hv = lopt_floats(n);
}

void lopt_unroll_ws_init_seg(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K,
                             int seg)
{
    ws_init(ws, task, arch, K, seg, 1);
}

void lopt_unroll_ws_init(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch, int K)
{
    ws_init(ws, task, arch, K, K <= 64 ? 0 : (int)ceil(sqrt((double)K)), 1);
}

void lopt_unroll_ws_init_forward(lopt_unroll_ws *ws, lopt_task *task, const lopt_arch *arch,
                                 int K)
{
    ws_init(ws, task, arch, K, 0, 0);
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
                     ws->weight, ws->delta, ws->mtmp, ws->gtmp, ws->bw, ws->bm, ws->bg,
                     ws->hv};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) lopt_free(bufs[i]);
    free(ws->tape_lo);
    memset(ws, 0, sizeof *ws);
}

void lopt_traj_start(lopt_unroll_ws *ws, lopt_traj *tr, uint64_t task_seed, int64_t horizon)
{
    lopt_task *task = ws->task;
    task->init(task, task_seed, tr->w);
    memset(tr->m, 0, (size_t)lopt_arch_state_rows(ws->arch) * task->n * sizeof(float));
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

lopt_status lopt_outer_weight_parse(lopt_outer_weight *w, const char *s, lopt_err *err)
{
    memset(w, 0, sizeof *w);
    if (strcmp(s, "mean") == 0) return LOPT_OK;
    if (strcmp(s, "end") == 0) {
        w->kind = LOPT_WEIGHT_END;
        return LOPT_OK;
    }
    if (strncmp(s, "tail:", 5) == 0) {
        char *end;
        double f = strtod(s + 5, &end);
        if (end != s + 5 && *end == 0 && f > 0 && f <= 1) {
            w->kind = LOPT_WEIGHT_TAIL;
            w->tail = (float)f;
            return LOPT_OK;
        }
    }
    return lopt_fail(err, LOPT_EUSAGE, "outer weight '%s': want mean, end or tail:F with "
                     "0 < F <= 1", s);
}

void lopt_outer_weight_str(const lopt_outer_weight *w, char *buf, size_t cap)
{
    if (w->kind == LOPT_WEIGHT_END) snprintf(buf, cap, "end");
    else if (w->kind == LOPT_WEIGHT_TAIL) snprintf(buf, cap, "tail:%.9g", w->tail);
    else snprintf(buf, cap, "mean");
}

/* The weights c_k of a truncation of K steps starting at inner step t0 of a
 * trajectory with this horizon, as raw weights r_k in {0, 1} and one
 * normaliser D (c_k = r_k / D): the sums stay in the loss's own arithmetic. */
static double truncation_weights(const lopt_unroll_cfg *cfg, int64_t t0, int64_t horizon,
                                 int K, float *r)
{
    switch (cfg->weight.kind) {
    case LOPT_WEIGHT_END:
        for (int k = 0; k < K; k++) r[k] = k == K - 1 ? 1.0f : 0.0f;
        return 1.0;
    case LOPT_WEIGHT_TAIL: {
        int64_t T = (int64_t)ceil((double)cfg->weight.tail * (double)horizon);
        if (T < 1) T = 1;
        /* step k produces w at inner step t0 + k + 1 */
        for (int k = 0; k < K; k++) r[k] = t0 + k + 1 > horizon - T ? 1.0f : 0.0f;
        return (double)T;
    }
    default:
        for (int k = 0; k < K; k++) r[k] = 1.0f;
        return (double)K;
    }
}

/* The outer loss at w for inner step t: the mean over cfg->outer_batches batches
 * of the outer split (training batches drawn apart from the inner ones); go (n,
 * may be NULL) receives its gradient. With one batch, batch number t. */
static double outer_loss(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, uint64_t task_seed,
                         int64_t t, const float *w, float *go)
{
    lopt_task *task = ws->task;
    const size_t n = task->n;
    int nb = cfg->outer_batches > 1 ? cfg->outer_batches : 1;
    uint64_t seed = cfg->outer_split == LOPT_SPLIT_TRAIN ? task_seed ^ OUTER_TRAIN_SALT : task_seed;
    if (nb == 1) {
        lopt_task_sample(task, &ws->outer, cfg->outer_split, seed, t);
        return task->loss_grad(task, w, &ws->outer, go);
    }
    double sum = 0.0;
    if (go) memset(go, 0, n * sizeof(float));
    for (int j = 0; j < nb; j++) {
        lopt_task_sample(task, &ws->outer, cfg->outer_split, seed, t * nb + j);
        sum += task->loss_grad(task, w, &ws->outer, go ? ws->gtmp : NULL);
        if (go)
            for (size_t i = 0; i < n; i++) go[i] += ws->gtmp[i] / (float)nb;
    }
    return sum / nb;
}

/* One forward step from (w, m) at inner step t: g (n) receives the inner
 * gradient; w and m are advanced in place. When read_outer, *lo receives the
 * outer loss at the new w and go (n, may be NULL) its gradient; otherwise *lo = 0.
 * Returns the inner loss. Used by the forward pass and, identically, by the
 * reverse pass's recomputation. */
static double forward_step(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const float *theta,
                           uint64_t task_seed, int64_t t, float *w, float *m, float *g,
                           float *go, double init_loss, int read_outer, double *lo)
{
    lopt_task *task = ws->task;
    const size_t n = task->n;
    lopt_task_sample(task, &ws->inner, LOPT_SPLIT_TRAIN, task_seed, t);
    double li = task->loss_grad(task, w, &ws->inner, g);
    if (!isfinite(li) || li > cfg->diverge_factor * init_loss) return li;
    /* the reverse pass recomputes the activations it needs (reverse_steps) */
    lopt_mlp_update_fwd(&ws->wk, theta, task->tensors, task->ntensors, w, g, m, t, ws->delta);
    for (size_t i = 0; i < n; i++) w[i] += ws->delta[i];
    *lo = read_outer ? outer_loss(ws, cfg, task_seed, t, w, go) : 0.0;
    return li;
}

/* The reverse pass over steps [k0, k1) whose states sit in tape slots 0.. ;
 * t0 is the inner step of k = 0. Accumulates into dtheta and the adjoints. */
static void reverse_steps(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg, const float *theta,
                          uint64_t task_seed, int64_t t0, int k0, int k1, float inv_d,
                          float *dtheta)
{
    lopt_task *task = ws->task;
    const lopt_arch *a = ws->arch;
    const size_t n = task->n, M = (size_t)a->nmom;
    for (int k = k1 - 1; k >= k0; k--) {
        size_t slot = (size_t)(k - k0);
        const float *wk_ = ws->tape_w + slot * n, *gk = ws->tape_g + slot * n;
        const float *go = ws->tape_go + slot * n;
        int64_t tk = t0 + k;
        if (ws->weight[k] != 0 && !clipped(cfg, ws->tape_lo[k])) {
            float c = ws->weight[k] * inv_d;
            for (size_t i = 0; i < n; i++) ws->bw[i] += c * go[i];
        }
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
    LOPT_ASSERT(!dtheta || (ws->slots > 0 && lopt_arch_has_vjp(ws->arch)));
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
    const double D = truncation_weights(cfg, t0, tr->horizon, K, ws->weight);
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
        int read = ws->weight[k] != 0;
        double lo = NAN;
        double li = forward_step(ws, cfg, theta, tr->task_seed, tr->t, tr->w, tr->m, gk, gok,
                                 tr->init_loss, read, &lo);
        if (!isfinite(li) || li > cfg->diverge_factor * tr->init_loss) {
            out.diverged = 1;
            break;
        }
        tr->t++;
        out.steps++;
        ws->tape_lo[k] = lo;
        if (!isfinite(lo)) {
            out.diverged = 1;
            sum += ws->weight[k] * clip;
            break;
        }
        if (read) sum += ws->weight[k] * (clipped(cfg, lo) ? cfg->loss_clip : lo);
    }
    if (out.diverged) {
        /* the steps not taken count as the clip value (constant: no gradient) */
        for (int k = out.steps; k < K; k++) sum += ws->weight[k] * clip;
        tr->needs_reset = 1;
    }
    if (tr->t >= tr->horizon) tr->needs_reset = 1;
    out.loss = sum / D;
    if (!dtheta) return out;

    /* reverse pass over the steps whose outer loss was finite */
    const float inv_d = 1.0f / (float)D;
    int last = out.steps;
    if (last > 0 && !isfinite(ws->tape_lo[last - 1])) last--;
    memset(ws->bw, 0, n * sizeof(float));
    memset(ws->bm, 0, M * n * sizeof(float));
    if (seg == 0) {
        reverse_steps(ws, cfg, theta, tr->task_seed, t0, 0, last, inv_d, dtheta);
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
                         ws->tape_go + slot * n, tr->init_loss, ws->weight[k] != 0, &lo);
        }
        reverse_steps(ws, cfg, theta, tr->task_seed, t0, k0, k1, inv_d, dtheta);
    }
    lopt_free(w);
    lopt_free(m);
    return out;
}
