/* cnn.c - the `fmnist-cnn` task (docs/design.md section 3), the headline task:
 *   x (1,28,28) -> conv3x3 1->16 pad 1 -> ReLU -> maxpool 2
 *               -> conv3x3 16->32 pad 1 -> ReLU -> maxpool 2
 *               -> conv3x3 32->32 pad 1 -> ReLU -> global average pool
 *               -> dense 32->10 -> mean softmax cross-entropy;  batch 128.
 * 14,378 parameters, flat in torch's order (conv1.weight, conv1.bias, ..., fc.bias).
 * Activations are (C,B,H,W) so each convolution is one GEMM over the batch (nn.h).
 *
 * hvp: forward, backward keeping every adjoint, R-forward of the direction v, then
 * R-backward whose parameter outputs are H v (Pearlmutter's method). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tasks/task_impl.h"

enum { C1 = 16, C2 = 32, C3 = 32, NCLS = 10, CNN_BATCH = 128 };
enum { T_W1, T_B1, T_W2, T_B2, T_W3, T_B3, T_WF, T_BF };

#define OFF_B1 (C1 * 9)
#define OFF_W2 (OFF_B1 + C1)
#define OFF_B2 (OFF_W2 + C2 * C1 * 9)
#define OFF_W3 (OFF_B2 + C2)
#define OFF_B3 (OFF_W3 + C3 * C2 * 9)
#define OFF_WF (OFF_B3 + C3)
#define OFF_BF (OFF_WF + NCLS * C3)
#define CNN_N (OFF_BF + NCLS)

static const lopt_tensor_spec cnn_tensors[] = {
    {"conv1.weight", C1 * 9, 9},
    {"conv1.bias", C1, 0},
    {"conv2.weight", C2 * C1 * 9, C1 * 9},
    {"conv2.bias", C2, 0},
    {"conv3.weight", C3 * C2 * 9, C2 * 9},
    {"conv3.bias", C3, 0},
    {"fc.weight", NCLS * C3, C3},
    {"fc.bias", NCLS, 0},
};
static const size_t cnn_offset[] = {0, OFF_B1, OFF_W2, OFF_B2, OFF_W3, OFF_B3, OFF_WF, OFF_BF};

/* Every activation buffer, its adjoint and both tangents share one shape, so they
 * are allocated as four copies of one set of sizes (see cnn_sizes). */
enum { A_COL1, A_A1, A_P1, A_COL2, A_A2, A_P2, A_COL3, A_A3, A_G, A_Z, A_COUNT };

typedef struct {
    int cap;
    float *act[A_COUNT];    /* forward values: im2col, relu outputs, pools, gap, logits */
    float *adj[A_COUNT];    /* adjoints d(loss)/d(act); adj[A_A*] hold d(pre-relu) */
    float *tan[A_COUNT];    /* R{act} */
    float *radj[A_COUNT];   /* R{adj} */
    float *dpost[3];        /* adjoint of relu outputs (before the relu mask) */
    float *rdpost[3];
    float *prob;            /* (B,10) */
    int32_t *am1, *am2;     /* max-pool argmax */
    float *scratch;         /* col2im scratch */
    double accuracy;
    const lopt_fmnist *data;
} cnn_ctx;

static void cnn_sizes(int B, size_t sz[A_COUNT])
{
    size_t b = (size_t)B;
    sz[A_COL1] = 9 * b * 784;
    sz[A_A1] = C1 * b * 784;
    sz[A_P1] = C1 * b * 196;
    sz[A_COL2] = C1 * 9 * b * 196;
    sz[A_A2] = C2 * b * 196;
    sz[A_P2] = C2 * b * 49;
    sz[A_COL3] = C2 * 9 * b * 49;
    sz[A_A3] = C3 * b * 49;
    sz[A_G] = b * C3;
    sz[A_Z] = b * NCLS;
}

typedef struct { conv_shape s1, s2, s3; } cnn_shapes;

static cnn_shapes shapes_for(int B)
{
    cnn_shapes s = {conv_shape_make(B, 1, 28, 28, C1, 3, 3, 1, 1),
                    conv_shape_make(B, C1, 14, 14, C2, 3, 3, 1, 1),
                    conv_shape_make(B, C2, 7, 7, C3, 3, 3, 1, 1)};
    return s;
}

#define P(w, k) ((w) + cnn_offset[k])

static double cnn_forward(cnn_ctx *c, const float *w, const lopt_batch_view *b)
{
    int B = b->size, correct = 0;
    LOPT_ASSERT(B <= c->cap);
    cnn_shapes s = shapes_for(B);
    float **a = c->act;
    conv2d_forward(a[A_A1], a[A_COL1], b->x, P(w, T_W1), P(w, T_B1), &s.s1);
    relu_forward(a[A_A1], a[A_A1], (size_t)C1 * B * 784);
    maxpool_forward(a[A_P1], c->am1, a[A_A1], C1 * B, 28, 28, 2);
    conv2d_forward(a[A_A2], a[A_COL2], a[A_P1], P(w, T_W2), P(w, T_B2), &s.s2);
    relu_forward(a[A_A2], a[A_A2], (size_t)C2 * B * 196);
    maxpool_forward(a[A_P2], c->am2, a[A_A2], C2 * B, 14, 14, 2);
    conv2d_forward(a[A_A3], a[A_COL3], a[A_P2], P(w, T_W3), P(w, T_B3), &s.s3);
    relu_forward(a[A_A3], a[A_A3], (size_t)C3 * B * 49);
    gap_forward(a[A_G], a[A_A3], C3, B, 49);
    dense_forward(a[A_Z], a[A_G], P(w, T_WF), P(w, T_BF), B, C3, NCLS);
    double loss = softmax_xent_forward(c->prob, &correct, a[A_Z], b->labels, B, NCLS);
    c->accuracy = (double)correct / B;
    return loss;
}

static void zero_all(float *const *bufs, int B)
{
    size_t sz[A_COUNT];
    cnn_sizes(B, sz);
    for (int i = A_A1; i < A_COUNT; i++)
        if (i != A_COL2 && i != A_COL3) memset(bufs[i], 0, sz[i] * sizeof(float));
}

static void zero_post(float *const *post, int B)
{
    memset(post[0], 0, (size_t)C1 * B * 784 * sizeof(float));
    memset(post[1], 0, (size_t)C2 * B * 196 * sizeof(float));
    memset(post[2], 0, (size_t)C3 * B * 49 * sizeof(float));
}

/* backward: grad (n) overwritten; adjoints kept in c->adj / c->dpost */
static void cnn_backward(cnn_ctx *c, const float *w, const lopt_batch_view *b, float *grad)
{
    int B = b->size;
    cnn_shapes s = shapes_for(B);
    float **a = c->act, **d = c->adj, **dp = c->dpost;
    memset(grad, 0, CNN_N * sizeof(float));
    zero_all(d, B);
    zero_post(dp, B);
    softmax_xent_backward(d[A_Z], c->prob, b->labels, B, NCLS);
    dense_backward(d[A_G], P(grad, T_WF), P(grad, T_BF), d[A_Z], a[A_G], P(w, T_WF), B,
                   C3, NCLS);
    gap_backward(dp[2], d[A_G], C3, B, 49);
    relu_backward(d[A_A3], dp[2], a[A_A3], (size_t)C3 * B * 49);
    conv2d_backward(d[A_P2], P(grad, T_W3), P(grad, T_B3), d[A_A3], a[A_COL3],
                    P(w, T_W3), &s.s3, c->scratch);
    maxpool_backward(dp[1], d[A_P2], c->am2, C2 * B, 14, 14, 2);
    relu_backward(d[A_A2], dp[1], a[A_A2], (size_t)C2 * B * 196);
    conv2d_backward(d[A_P1], P(grad, T_W2), P(grad, T_B2), d[A_A2], a[A_COL2],
                    P(w, T_W2), &s.s2, c->scratch);
    maxpool_backward(dp[0], d[A_P1], c->am1, C1 * B, 28, 28, 2);
    relu_backward(d[A_A1], dp[0], a[A_A1], (size_t)C1 * B * 784);
    conv2d_backward(NULL, P(grad, T_W1), P(grad, T_B1), d[A_A1], a[A_COL1], P(w, T_W1),
                    &s.s1, c->scratch);
}

static double cnn_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    cnn_ctx *c = ctx;
    double loss = cnn_forward(c, w, b);
    if (grad) cnn_backward(c, w, b, grad);
    return loss;
}

static double cnn_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                      float *hv, float *grad)
{
    cnn_ctx *c = ctx;
    int B = b->size;
    cnn_shapes s = shapes_for(B);
    float **a = c->act, **d = c->adj, **r = c->tan, **rd = c->radj, **rdp = c->rdpost;
    float gbuf[CNN_N];
    double loss = cnn_forward(c, w, b);
    cnn_backward(c, w, b, grad ? grad : gbuf);

    /* R-forward; the image is data, so the first convolution has no input tangent */
    conv2d_rforward(r[A_A1], NULL, NULL, a[A_COL1], P(w, T_W1), P(v, T_W1), P(v, T_B1),
                    &s.s1);
    relu_rforward(r[A_A1], r[A_A1], a[A_A1], (size_t)C1 * B * 784);
    maxpool_rforward(r[A_P1], r[A_A1], c->am1, C1 * B, 28, 28, 2);
    conv2d_rforward(r[A_A2], r[A_COL2], r[A_P1], a[A_COL2], P(w, T_W2), P(v, T_W2),
                    P(v, T_B2), &s.s2);
    relu_rforward(r[A_A2], r[A_A2], a[A_A2], (size_t)C2 * B * 196);
    maxpool_rforward(r[A_P2], r[A_A2], c->am2, C2 * B, 14, 14, 2);
    conv2d_rforward(r[A_A3], r[A_COL3], r[A_P2], a[A_COL3], P(w, T_W3), P(v, T_W3),
                    P(v, T_B3), &s.s3);
    relu_rforward(r[A_A3], r[A_A3], a[A_A3], (size_t)C3 * B * 49);
    gap_forward(r[A_G], r[A_A3], C3, B, 49);
    dense_rforward(r[A_Z], r[A_G], a[A_G], P(w, T_WF), P(v, T_WF), P(v, T_BF), B, C3,
                   NCLS);

    /* R-backward */
    memset(hv, 0, CNN_N * sizeof(float));
    zero_all(rd, B);
    zero_post(rdp, B);
    softmax_xent_rbackward(rd[A_Z], c->prob, r[A_Z], B, NCLS);
    dense_rbackward(rd[A_G], P(hv, T_WF), P(hv, T_BF), rd[A_Z], d[A_Z], a[A_G], r[A_G],
                    P(w, T_WF), P(v, T_WF), B, C3, NCLS);
    gap_backward(rdp[2], rd[A_G], C3, B, 49);
    relu_rbackward(rd[A_A3], rdp[2], a[A_A3], (size_t)C3 * B * 49);
    conv2d_rbackward(rd[A_P2], P(hv, T_W3), P(hv, T_B3), rd[A_A3], d[A_A3], a[A_COL3],
                     r[A_COL3], P(w, T_W3), P(v, T_W3), &s.s3, c->scratch);
    maxpool_rbackward(rdp[1], rd[A_P2], c->am2, C2 * B, 14, 14, 2);
    relu_rbackward(rd[A_A2], rdp[1], a[A_A2], (size_t)C2 * B * 196);
    conv2d_rbackward(rd[A_P1], P(hv, T_W2), P(hv, T_B2), rd[A_A2], d[A_A2], a[A_COL2],
                     r[A_COL2], P(w, T_W2), P(v, T_W2), &s.s2, c->scratch);
    maxpool_rbackward(rdp[0], rd[A_P1], c->am1, C1 * B, 28, 28, 2);
    relu_rbackward(rd[A_A1], rdp[0], a[A_A1], (size_t)C1 * B * 784);
    conv2d_rbackward(NULL, P(hv, T_W1), P(hv, T_B1), rd[A_A1], d[A_A1], a[A_COL1], NULL,
                     P(w, T_W1), P(v, T_W1), &s.s1, c->scratch);
    return loss;
}

static double cnn_accuracy(void *ctx) { return ((cnn_ctx *)ctx)->accuracy; }

static void cnn_init(void *ctx, uint64_t seed, float *w)
{
    (void)ctx;
    lopt_init_he(cnn_tensors, 8, seed, w);
}

static void cnn_free(void *ctx)
{
    if (!ctx) return;
    cnn_ctx *c = ctx;
    for (int i = 0; i < A_COUNT; i++) {
        lopt_free(c->act[i]);
        lopt_free(c->adj[i]);
        lopt_free(c->tan[i]);
        lopt_free(c->radj[i]);
    }
    for (int i = 0; i < 3; i++) {
        lopt_free(c->dpost[i]);
        lopt_free(c->rdpost[i]);
    }
    lopt_free(c->prob);
    free(c->am1);
    free(c->am2);
    lopt_free(c->scratch);
    task_data_release(c->data);
    free(c);
}

lopt_status task_cnn_spec(lopt_task_spec *t, const lopt_task_opts *o, lopt_err *err)
{
    const lopt_fmnist *fm;
    lopt_status st = task_data_acquire(&fm, 28, o->data_dir, err);
    if (st != LOPT_OK) return st;
    cnn_ctx *c = lopt_xcalloc(1, sizeof *c);
    int B = o->batch > 0 ? o->batch : CNN_BATCH;
    c->cap = B;
    c->data = fm;
    size_t sz[A_COUNT];
    cnn_sizes(B, sz);
    for (int i = 0; i < A_COUNT; i++) {
        c->act[i] = lopt_floats(sz[i]);
        c->tan[i] = lopt_floats(sz[i]);
        /* adjoints of im2col matrices are never formed: backward goes through col2im */
        if (i == A_COL1 || i == A_COL2 || i == A_COL3) continue;
        c->adj[i] = lopt_floats(sz[i]);
        c->radj[i] = lopt_floats(sz[i]);
    }
    size_t post[3] = {sz[A_A1], sz[A_A2], sz[A_A3]};
    for (int i = 0; i < 3; i++) {
        c->dpost[i] = lopt_floats(post[i]);
        c->rdpost[i] = lopt_floats(post[i]);
    }
    c->prob = lopt_floats(sz[A_Z]);
    c->am1 = lopt_xcalloc(sz[A_P1], sizeof(int32_t));
    c->am2 = lopt_xcalloc(sz[A_P2], sizeof(int32_t));
    c->scratch = lopt_floats(sz[A_COL2] > sz[A_COL3] ? sz[A_COL2] : sz[A_COL3]);
    t->name = "fmnist-cnn";
    t->nparams = CNN_N;
    t->ntensors = 8;
    t->tensors = cnn_tensors;
    t->batch_size = B;
    t->input = 784;
    task_data_splits(t->data, fm);
    t->ctx = c;
    t->init = cnn_init;
    t->loss_grad = cnn_loss_grad;
    t->hvp = cnn_hvp;
    t->last_accuracy = cnn_accuracy;
    t->free_ctx = cnn_free;
    LOPT_ASSERT(t->nparams == 14378);
    return LOPT_OK;
}
