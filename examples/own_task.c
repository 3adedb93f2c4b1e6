/* own_task.c - your own model and data, meta-train a learned optimizer for them,
 * then train with it: through the public API (include/lopt.h) only.
 *
 * The task: regression of y = 2u / (1 + u^2) + 0.05 noise, u = x . a, for x in R^4,
 * with a 4 -> 16 -> softsign -> 1 network (softsign(z) = z / (1 + |z|), a tanh-like
 * curve that needs no libm, so the program links with -llopt alone; W1, b1, W2, b2:
 * 97 parameters), mean squared error.
 * Its data live in memory (train 2,048, valid 512, test 512 examples drawn here),
 * so lopt does the batching (32 examples) and hands each call a lopt_batch_view
 * with the examples and their regression targets. The Hessian-vector product,
 * which the rp and merged estimators need, is taken by central differences of
 * the gradient: (g(w + e v) - g(w - e v)) / 2e, close to exact here because the
 * network's gradient is smooth (softsign's derivative is continuous). A task without one still meta-trains with
 * es, pes, nres or fulles.
 *
 *   usage: own_task OUT.lopt [OUTER_STEPS]     (default 200 outer steps, a few seconds)
 *
 * Meta-trains with the merged estimator for a horizon of 300 steps, writes OUT.lopt,
 * trains the network with it (lopt_train) and with Adam (lr 0.01, untuned) for
 * comparison, and runs it once more in a training loop of its own (lopt_opt_step).
 * With the defaults the learned optimizer ends at a validation loss of about 0.010,
 * Adam at 0.026.
 * Exits 1 with a message on any failure.
 * Build (after make install): cc own_task.c -llopt -o own_task
 *   or: cc own_task.c $(pkg-config --cflags --libs lopt) -o own_task
 */
#include <math.h>     /* isfinite (a macro: no libm needed) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lopt.h"

enum { D = 4, H = 16, NPARAMS = D * H + H + H + 1 };
enum { OFF_W1 = 0, OFF_B1 = D * H, OFF_W2 = D * H + H, OFF_B2 = D * H + 2 * H };
enum { NTRAIN = 2048, NVALID = 512, NTEST = 512, BATCH = 32, HORIZON = 300 };

/* ---- the data: made once, shared read-only by every task object ------------------ */

typedef struct {
    float x[NTRAIN * D], y[NTRAIN];
    float vx[NVALID * D], vy[NVALID];
    float tx[NTEST * D], ty[NTEST];
} dataset;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* uniform in [0, 1) (xorshift64*) */
static double uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * 0x1.0p-53;
}

/* approximately N(0, 1): the sum of 12 uniforms, minus 6 (Irwin-Hall) */
static double normal(uint64_t *s)
{
    double sum = 0;
    for (int i = 0; i < 12; i++) sum += uniform(s);
    return sum - 6.0;
}

static void make_split(float *x, float *y, int n)
{
    static const float a[D] = {1.0f, -0.5f, 0.8f, 0.3f};
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int k = 0; k < D; k++) {
            x[i * D + k] = (float)normal(&rng_state);
            dot += a[k] * x[i * D + k];
        }
        y[i] = (float)(2 * dot / (1 + dot * dot) + 0.05 * normal(&rng_state));
    }
}

/* ---- the model ---------------------------------------------------------------------- */

/* Mean squared error over the batch; grad (NPARAMS, overwritten) if not NULL. */
static double net_loss_grad(const float *w, const float *x, const float *y, int B, float *grad)
{
    const float *W1 = w + OFF_W1, *b1 = w + OFF_B1, *W2 = w + OFF_W2, *b2 = w + OFF_B2;
    if (grad) memset(grad, 0, NPARAMS * sizeof(float));
    double loss = 0;
    for (int n = 0; n < B; n++) {
        const float *xn = x + n * D;
        float h[H], out = b2[0];
        for (int j = 0; j < H; j++) {
            float z = b1[j];
            for (int k = 0; k < D; k++) z += W1[j * D + k] * xn[k];
            h[j] = z / (1.0f + (z < 0 ? -z : z));   /* softsign */
            out += W2[j] * h[j];
        }
        float err = out - y[n];
        loss += (double)err * err / B;
        if (!grad) continue;
        /* out = W2 h + b2, h = softsign(z), z = W1 x + b1; dh/dz = (1 - |h|)^2 */
        float dout = 2.0f * err / B;
        grad[OFF_B2] += dout;
        for (int j = 0; j < H; j++) {
            grad[OFF_W2 + j] += dout * h[j];
            float a = 1.0f - (h[j] < 0 ? -h[j] : h[j]);
            float dz = dout * W2[j] * a * a;
            grad[OFF_B1 + j] += dz;
            for (int k = 0; k < D; k++) grad[OFF_W1 + j * D + k] += dz * xn[k];
        }
    }
    return loss;
}

/* ---- the task: callbacks over the flat parameter vector -------------------------------- */

typedef struct {
    float wp[NPARAMS], wm[NPARAMS], gp[NPARAMS], gm[NPARAMS];   /* the HVP's scratch */
} task_ctx;

static const lopt_tensor_spec tensors[] = {
    {"W1", D * H, D}, {"b1", H, 0}, {"W2", H, H}, {"b2", 1, 0},
};

static void task_init(void *ctx, uint64_t seed, float *w)
{
    (void)ctx;
    lopt_init_he(tensors, 4, seed, w);   /* N(0, 2/fan_in) weights, zero biases */
}

static double task_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    (void)ctx;
    return net_loss_grad(w, b->x, b->targets, b->size, grad);
}

/* H v by central differences of the gradient, the step 1e-3 / max|v_i| */
static double task_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                       float *hv, float *grad)
{
    task_ctx *c = ctx;
    float vmax = 1e-12f;
    for (int i = 0; i < NPARAMS; i++) vmax = v[i] > vmax ? v[i] : -v[i] > vmax ? -v[i] : vmax;
    float e = 1e-3f / vmax;
    for (int i = 0; i < NPARAMS; i++) {
        c->wp[i] = w[i] + e * v[i];
        c->wm[i] = w[i] - e * v[i];
    }
    net_loss_grad(c->wp, b->x, b->targets, b->size, c->gp);
    net_loss_grad(c->wm, b->x, b->targets, b->size, c->gm);
    for (int i = 0; i < NPARAMS; i++) hv[i] = (c->gp[i] - c->gm[i]) / (2.0f * e);
    return net_loss_grad(w, b->x, b->targets, b->size, grad);
}

static void task_free(void *ctx) { free(ctx); }

/* Called once per task object (lopt makes one per thread). */
static int task_factory(void *user, lopt_task_spec *s, char *errbuf, size_t errlen)
{
    const dataset *d = user;
    task_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    s->nparams = NPARAMS;
    s->ntensors = 4;
    s->tensors = tensors;
    s->batch_size = BATCH;
    s->input = D;      /* in-memory data: lopt batches it */
    s->ntargets = 1;   /* regression targets, not labels */
    s->data[LOPT_SPLIT_TRAIN] = (lopt_split_data){NTRAIN, d->x, NULL, d->y};
    s->data[LOPT_SPLIT_VALID] = (lopt_split_data){NVALID, d->vx, NULL, d->vy};
    s->data[LOPT_SPLIT_TEST] = (lopt_split_data){NTEST, d->tx, NULL, d->ty};
    s->ctx = c;
    s->init = task_init;
    s->loss_grad = task_loss_grad;
    s->hvp = task_hvp;
    s->free_ctx = task_free;
    return 0;
}

static int show_progress(void *user, int64_t step, double outer_loss)
{
    (void)user;
    if (step % 10 == 0) fprintf(stderr, "own_task: outer step %lld, outer loss %.5f\n",
                                (long long)step, outer_loss);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: own_task OUT.lopt [OUTER_STEPS]\n");
        return 2;
    }
    long outer = argc == 3 ? strtol(argv[2], NULL, 10) : 200;
    if (outer < 1) {
        fprintf(stderr, "own_task: OUTER_STEPS must be a positive integer\n");
        return 2;
    }
    static dataset data;
    make_split(data.x, data.y, NTRAIN);
    make_split(data.vx, data.vy, NVALID);
    make_split(data.tx, data.ty, NTEST);

    char msg[512];
    if (lopt_task_register("bump-regression", "4-16-softsign-1 regression of 2u/(1+u^2)",
                           task_factory, &data, msg, sizeof msg) != 0 ||
        lopt_task_check("bump-regression", msg, sizeof msg) != 0) {
        fprintf(stderr, "own_task: %s\n", msg);
        return 1;
    }

    /* 1. meta-train: the merged estimator (rp + es), outer loss on the valid split */
    lopt_meta_settings ms = {.task = "bump-regression", .estimator = "merged", .K = 10,
                             .samples = 4, .outer_steps = outer, .horizon = HORIZON,
                             .on_step = show_progress};
    lopt_model *m = lopt_meta_train(&ms, msg, sizeof msg);
    if (!m || lopt_model_save(m, argv[1], msg, sizeof msg) != 0) {
        fprintf(stderr, "own_task: %s\n", msg);
        lopt_model_free(m);
        return 1;
    }
    lopt_info info;
    lopt_model_info(m, &info);
    printf("meta-trained on %s with %s for horizon %lld: %lld outer steps -> %s\n", info.task,
           info.estimator, (long long)info.horizon, (long long)info.outer_steps, argv[1]);

    /* 2. train the task with it, and with Adam, through lopt_train */
    lopt_train_settings ts = {.task = "bump-regression", .model = m, .steps = HORIZON, .seed = 7};
    lopt_train_report learned, adam;
    int bad = lopt_train(&ts, &learned, msg, sizeof msg) != 0;
    ts.model = NULL;
    ts.opt = "adam";
    ts.lr = 0.01f;
    if (!bad) bad = lopt_train(&ts, &adam, msg, sizeof msg) != 0;
    if (bad) {
        fprintf(stderr, "own_task: %s\n", msg);
        lopt_model_free(m);
        return 1;
    }
    printf("learned: valid loss %.5f -> %.5f, test %.5f\n", learned.init_valid_loss,
           learned.final_valid_loss, learned.test_loss);
    printf("adam:    valid loss %.5f -> %.5f, test %.5f\n", adam.init_valid_loss,
           adam.final_valid_loss, adam.test_loss);

    /* 3. the optimizer in a loop of one's own: full-batch steps on the training set */
    const size_t sizes[] = {D * H, H, H, 1};
    lopt_opt *opt = lopt_opt_new(m, sizes, 4);
    lopt_model_free(m);
    if (!opt) {
        fprintf(stderr, "own_task: %s\n", lopt_last_error());
        return 1;
    }
    float w[NPARAMS], g[NPARAMS];
    task_init(NULL, 7, w);
    double first = net_loss_grad(w, data.x, data.y, NTRAIN, g), loss = first;
    for (int step = 0; step < HORIZON && isfinite(loss); step++) {
        lopt_opt_step(opt, w, g);
        loss = net_loss_grad(w, data.x, data.y, NTRAIN, g);
    }
    lopt_opt_free(opt);
    printf("own loop: train loss %.5f -> %.5f after %d full-batch steps\n", first, loss, HORIZON);
    if (!isfinite(loss) || !isfinite(learned.final_valid_loss)) {
        fprintf(stderr, "own_task: the loss diverged\n");
        return 1;
    }
    lopt_task_unregister("bump-regression");
    return 0;
}
