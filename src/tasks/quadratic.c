/* quadratic.c - the `quadratic` task: L(w) = 1/2 sum_i a_i (w_i - c_i)^2, dim 64,
 * a_i log-uniform in [0.01, 100] (condition number up to 1e4), c_i ~ N(0, 1),
 * w_0 ~ N(0, 1); optional additive gradient noise N(0, grad_noise^2) per batch.
 * A task instance (a, c) is sampled by init(seed) together with w_0.
 * Hessian: diag(a), so H v = a * v exactly. */
#include <math.h>
#include <stdlib.h>

#include "tasks/task_impl.h"

#define QUAD_DIM 64

typedef struct {
    float a[QUAD_DIM], c[QUAD_DIM];
    float noise;
} quad_ctx;

static const lopt_tensor_spec quad_tensors[] = {{"w", QUAD_DIM, 0}};

static void quad_set_instance(void *ctx, uint64_t seed)
{
    quad_ctx *q = ctx;
    for (int i = 0; i < QUAD_DIM; i++) {
        double u = lopt_rng_uniform(seed, LOPT_STREAM_TASK, (uint64_t)i);
        q->a[i] = (float)pow(10.0, -2.0 + 4.0 * u);
        q->c[i] = (float)lopt_rng_normal(seed, LOPT_STREAM_TASK, 1000 + (uint64_t)i);
    }
}

static void quad_init(void *ctx, uint64_t seed, float *w)
{
    quad_set_instance(ctx, seed);
    for (int i = 0; i < QUAD_DIM; i++)
        w[i] = (float)lopt_rng_normal(seed, LOPT_STREAM_INIT, (uint64_t)i);
}

/* b->size == 0 (the whole split) is the exact loss: no noise */
static double quad_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    quad_ctx *q = ctx;
    double loss = 0.0;
    for (int i = 0; i < QUAD_DIM; i++) {
        float d = w[i] - q->c[i];
        loss += 0.5 * q->a[i] * (double)d * d;
        if (grad) {
            grad[i] = q->a[i] * d;
            if (q->noise > 0 && b->size > 0)
                grad[i] += q->noise * (float)lopt_rng_normal(b->key, LOPT_STREAM_NOISE, (uint64_t)i);
        }
    }
    return loss;
}

static double quad_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                       float *hv, float *grad)
{
    quad_ctx *q = ctx;
    for (int i = 0; i < QUAD_DIM; i++) hv[i] = q->a[i] * v[i];
    return quad_loss_grad(ctx, w, b, grad);
}

static double quad_accuracy(void *ctx) { (void)ctx; return NAN; }

static void quad_free(void *ctx) { free(ctx); }

lopt_status lopt_task_quadratic_spec(lopt_task_spec *s, const lopt_task_opts *o, lopt_err *err)
{
    (void)err;
    quad_ctx *q = lopt_xcalloc(1, sizeof *q);
    q->noise = o->grad_noise;
    s->name = "quadratic";
    s->nparams = QUAD_DIM;
    s->ntensors = 1;
    s->tensors = quad_tensors;
    s->batch_size = o->batch > 0 ? o->batch : 1;
    s->input = 0;   /* data-free: no held-out data, "valid" differs only in its noise */
    s->ctx = q;
    s->init = quad_init;
    s->set_instance = quad_set_instance;
    s->loss_grad = quad_loss_grad;
    s->hvp = quad_hvp;
    s->last_accuracy = quad_accuracy;
    s->free_ctx = quad_free;
    /* an instance exists from the start, so loss/hvp work before init */
    float w[QUAD_DIM];
    quad_init(q, 0, w);
    return LOPT_OK;
}
