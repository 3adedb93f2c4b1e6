/* mlp.c - the `fmnist8-mlp` task: Fashion-MNIST area-averaged to 8x8,
 * MLP 64 -> 32 -> ReLU -> 10, mean softmax cross-entropy, batch 128, 2,410 params
 * (docs/design.md section 3). Flat parameter order as torch's nn.Sequential:
 * fc1.weight (32,64), fc1.bias (32), fc2.weight (10,32), fc2.bias (10).
 *
 * hvp runs forward, backward (keeping every adjoint), then the R-pair:
 * rforward pushes the direction v through the net, rbackward pulls the tangents of
 * the adjoints back, and its parameter outputs are H v. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tasks/task_impl.h"

enum { MLP_IN = 64, MLP_HID = 32, MLP_OUT = 10, MLP_BATCH = 128 };
enum { T_W1, T_B1, T_W2, T_B2 };

static const lopt_tensor_spec mlp_tensors[] = {
    {"fc1.weight", MLP_HID * MLP_IN, MLP_IN},
    {"fc1.bias", MLP_HID, 0},
    {"fc2.weight", MLP_OUT * MLP_HID, MLP_HID},
    {"fc2.bias", MLP_OUT, 0},
};
static const size_t mlp_offset[] = {0, MLP_HID * MLP_IN, MLP_HID * MLP_IN + MLP_HID,
                                    MLP_HID * MLP_IN + MLP_HID + MLP_OUT * MLP_HID};
#define MLP_N (MLP_HID * MLP_IN + MLP_HID + MLP_OUT * MLP_HID + MLP_OUT)

typedef struct {
    int cap;                 /* batch capacity of the buffers */
    float *h;                /* (B,HID) relu(fc1(x)) */
    float *z, *prob;         /* (B,OUT) logits, softmax */
    float *dz, *dh, *da;     /* adjoints: logits, h, fc1 pre-activation */
    float *rh, *rz;          /* tangents */
    float *rdz, *rdh, *rda;  /* tangents of adjoints */
    double accuracy;
    const lopt_fmnist *data;
} mlp_ctx;

#define P(w, k) ((w) + mlp_offset[k])

/* forward over the batch; returns the mean loss */
static double mlp_forward(mlp_ctx *c, const float *w, const lopt_batch_view *b)
{
    int B = b->size, correct = 0;
    LOPT_ASSERT(B <= c->cap);
    nn_dense_forward(c->h, b->x, P(w, T_W1), P(w, T_B1), B, MLP_IN, MLP_HID);
    nn_relu_forward(c->h, c->h, (size_t)B * MLP_HID);
    nn_dense_forward(c->z, c->h, P(w, T_W2), P(w, T_B2), B, MLP_HID, MLP_OUT);
    double loss = nn_softmax_xent_forward(c->prob, &correct, c->z, b->labels, B, MLP_OUT);
    c->accuracy = (double)correct / B;
    return loss;
}

/* backward; leaves the adjoints dz, dh, da in the context for the R-pair */
static void mlp_backward(mlp_ctx *c, const float *w, const lopt_batch_view *b, float *grad)
{
    int B = b->size;
    memset(grad, 0, MLP_N * sizeof(float));
    memset(c->dz, 0, (size_t)B * MLP_OUT * sizeof(float));
    memset(c->dh, 0, (size_t)B * MLP_HID * sizeof(float));
    memset(c->da, 0, (size_t)B * MLP_HID * sizeof(float));
    nn_softmax_xent_backward(c->dz, c->prob, b->labels, B, MLP_OUT);
    nn_dense_backward(c->dh, P(grad, T_W2), P(grad, T_B2), c->dz, c->h, P(w, T_W2), B,
                   MLP_HID, MLP_OUT);
    nn_relu_backward(c->da, c->dh, c->h, (size_t)B * MLP_HID);
    nn_dense_backward(NULL, P(grad, T_W1), P(grad, T_B1), c->da, b->x, P(w, T_W1), B,
                   MLP_IN, MLP_HID);
}

static double mlp_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    mlp_ctx *c = ctx;
    double loss = mlp_forward(c, w, b);
    if (grad) mlp_backward(c, w, b, grad);
    return loss;
}

static double mlp_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                      float *hv, float *grad)
{
    mlp_ctx *c = ctx;
    int B = b->size;
    float gbuf[MLP_N];
    double loss = mlp_forward(c, w, b);
    mlp_backward(c, w, b, grad ? grad : gbuf);
    /* R-forward: the input is data (no tangent) */
    nn_dense_rforward(c->rh, NULL, b->x, P(w, T_W1), P(v, T_W1), P(v, T_B1), B, MLP_IN,
                   MLP_HID);
    nn_relu_rforward(c->rh, c->rh, c->h, (size_t)B * MLP_HID);
    nn_dense_rforward(c->rz, c->rh, c->h, P(w, T_W2), P(v, T_W2), P(v, T_B2), B, MLP_HID,
                   MLP_OUT);
    /* R-backward */
    memset(hv, 0, MLP_N * sizeof(float));
    memset(c->rdz, 0, (size_t)B * MLP_OUT * sizeof(float));
    memset(c->rdh, 0, (size_t)B * MLP_HID * sizeof(float));
    memset(c->rda, 0, (size_t)B * MLP_HID * sizeof(float));
    nn_softmax_xent_rbackward(c->rdz, c->prob, c->rz, B, MLP_OUT);
    nn_dense_rbackward(c->rdh, P(hv, T_W2), P(hv, T_B2), c->rdz, c->dz, c->h, c->rh,
                    P(w, T_W2), P(v, T_W2), B, MLP_HID, MLP_OUT);
    nn_relu_rbackward(c->rda, c->rdh, c->h, (size_t)B * MLP_HID);
    nn_dense_rbackward(NULL, P(hv, T_W1), P(hv, T_B1), c->rda, c->da, b->x, NULL,
                    P(w, T_W1), P(v, T_W1), B, MLP_IN, MLP_HID);
    return loss;
}

static double mlp_accuracy(void *ctx) { return ((mlp_ctx *)ctx)->accuracy; }

static void mlp_init(void *ctx, uint64_t seed, float *w)
{
    (void)ctx;
    lopt_init_he(mlp_tensors, 4, seed, w);
}

static void mlp_free(void *ctx)
{
    if (!ctx) return;
    mlp_ctx *c = ctx;
    float *bufs[] = {c->h, c->z, c->prob, c->dz, c->dh, c->da, c->rh, c->rz,
                     c->rdz, c->rdh, c->rda};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) lopt_free(bufs[i]);
    lopt_task_data_release(c->data);
    free(c);
}

lopt_status lopt_task_mlp_spec(lopt_task_spec *t, const lopt_task_opts *o, lopt_err *err)
{
    const lopt_fmnist *fm;
    lopt_status st = lopt_task_data_acquire(&fm, 8, o->data_dir, err);
    if (st != LOPT_OK) return st;
    mlp_ctx *c = lopt_xcalloc(1, sizeof *c);
    int B = o->batch > 0 ? o->batch : MLP_BATCH;
    c->cap = B;
    c->data = fm;
    size_t bh = (size_t)B * MLP_HID, bo = (size_t)B * MLP_OUT;
    c->h = lopt_floats(bh);
    c->dh = lopt_floats(bh);
    c->da = lopt_floats(bh);
    c->rh = lopt_floats(bh);
    c->rdh = lopt_floats(bh);
    c->rda = lopt_floats(bh);
    c->z = lopt_floats(bo);
    c->prob = lopt_floats(bo);
    c->dz = lopt_floats(bo);
    c->rz = lopt_floats(bo);
    c->rdz = lopt_floats(bo);
    t->name = "fmnist8-mlp";
    t->nparams = MLP_N;
    t->ntensors = 4;
    t->tensors = mlp_tensors;
    t->batch_size = B;
    t->input = MLP_IN;
    lopt_task_data_splits(t->data, fm);
    t->ctx = c;
    t->init = mlp_init;
    t->loss_grad = mlp_loss_grad;
    t->hvp = mlp_hvp;
    t->last_accuracy = mlp_accuracy;
    t->free_ctx = mlp_free;
    LOPT_ASSERT(t->nparams == 2410);
    return LOPT_OK;
}
