/* cnn.c - the `fmnist-cnn` task (docs/design.md section 3), the headline task:
 *   x (1,28,28) -> conv3x3 1->16 pad 1 -> ReLU -> maxpool 2
 *               -> conv3x3 16->32 pad 1 -> ReLU -> maxpool 2
 *               -> conv3x3 32->32 pad 1 -> ReLU -> global average pool
 *               -> dense 32->10 -> mean softmax cross-entropy;  batch 128.
 * 14,378 parameters, flat in torch's order (conv1.weight, conv1.bias, ..., fc.bias).
 *
 * Every quantity but the parameter gradient is per example, so the batch is run
 * through the whole network a few images at a time (CNN_CHUNK): forward, backward
 * and, for the HVP, the R-forward of the direction v and the R-backward whose
 * parameter outputs are H v (Pearlmutter's method), before the next chunk. A chunk's
 * activations (NHWC, nn.h) stay in the core's cache, and the convolutions' full-
 * resolution outputs exist only in per-chunk scratch: ReLU and max-pool are fused
 * (nhwc.c), keeping the pooled output and the window argmax.
 *
 * Threads: the batch is cut into CNN_GROUPS fixed groups of consecutive images,
 * handed out to the OpenMP threads one at a time (dynamic: a thread slowed by
 * another process on its core takes fewer); a group's chunks run in order on one
 * thread and sum their
 * parameter gradients into the group's own partial, and the partials (and losses)
 * are added in group order. So the result is the same bits for any thread count;
 * only the kernels' instruction set (nn_isa_active) changes the rounding. Inside an
 * enclosing parallel region (meta-training's workers) the groups run serially on
 * the calling thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/nn.h"
#include "tasks/task_impl.h"

enum { C1 = 16, C2 = 32, C3 = 32, NCLS = 10, CNN_BATCH = 128 };
enum { T_W1, T_B1, T_W2, T_B2, T_W3, T_B3, T_WF, T_BF };

/* images per pass through the network: ~250 KB of activations per image for the HVP,
 * so a chunk fits the 1-2 MB of L2 a core has */
#define CNN_CHUNK 4
/* gradient partial sums; a multiple of the usual thread counts */
#define CNN_GROUPS 8

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

/* One thread's buffers for a chunk of CNN_CHUNK images. "pad" buffers are padded
 * NHWC with a zero border no kernel writes. */
typedef struct {
    float *x;              /* (n,30,30,1) pad: the images */
    float *y1;             /* (n,28,28,16) conv1 output, then its tangent */
    float *p1, *rp1;       /* (n,16,16,16) pad: pool1 output and tangent */
    int32_t *am1;          /* (n,14,14,16) pool1 argmax */
    float *y2;             /* (n,14,14,32) conv2 output, then its tangent */
    float *p2, *rp2;       /* (n,9,9,32) pad */
    int32_t *am2;          /* (n,7,7,32) */
    float *a3, *ra3;       /* (n,7,7,32) relu(conv3) and tangent */
    float *g, *rg;         /* (n,32) global average pool */
    float *z, *rz, *prob;  /* (n,10) logits, tangent, softmax */
    float *dz, *rdz;       /* (n,10) adjoints */
    float *dg, *rdg;       /* (n,32) */
    float *da3, *rda3;     /* (n,9,9,32) pad: adjoint of conv3's output (pre-ReLU) */
    float *dp2;            /* (n,7,7,32) adjoint of pool2's output, then its tangent */
    float *da2, *rda2;     /* (n,16,16,32) pad */
    float *dp1;            /* (n,14,14,16) */
    float *da1, *rda1;     /* (n,30,30,16) pad */
} cnn_ws;

typedef struct {
    float *wp1, *wp2, *wp3;    /* packed forward weights (3,3,C,O) */
    float *wt2, *wt3;          /* packed adjoint weights (3,3,O,C) */
} cnn_packed;

typedef struct {
    int nws;                   /* thread workspaces */
    cnn_ws *ws;
    cnn_packed pw, pv;         /* w and the HVP direction v, packed */
    float *part_g, *part_h;    /* (CNN_GROUPS, N) per-group gradient / H v, packed */
    double part_loss[CNN_GROUPS];
    int part_correct[CNN_GROUPS];
    float *gbuf;               /* (N) hvp's gradient when the caller wants none */
    double accuracy;
    const lopt_fmnist *data;
} cnn_ctx;

#define P(w, k) ((w) + cnn_offset[k])

static void ws_alloc(cnn_ws *s)
{
    const int n = CNN_CHUNK;
    s->x = lopt_floats(nn_conv3_padded_floats(n, 28, 28, 1));
    s->y1 = lopt_floats((size_t)n * 784 * C1);
    s->p1 = lopt_floats(nn_conv3_padded_floats(n, 14, 14, C1));
    s->rp1 = lopt_floats(nn_conv3_padded_floats(n, 14, 14, C1));
    s->am1 = lopt_xcalloc((size_t)n * 196 * C1, sizeof(int32_t));
    s->y2 = lopt_floats((size_t)n * 196 * C2);
    s->p2 = lopt_floats(nn_conv3_padded_floats(n, 7, 7, C2));
    s->rp2 = lopt_floats(nn_conv3_padded_floats(n, 7, 7, C2));
    s->am2 = lopt_xcalloc((size_t)n * 49 * C2, sizeof(int32_t));
    s->a3 = lopt_floats((size_t)n * 49 * C3);
    s->ra3 = lopt_floats((size_t)n * 49 * C3);
    s->g = lopt_floats((size_t)n * C3);
    s->rg = lopt_floats((size_t)n * C3);
    s->dg = lopt_floats((size_t)n * C3);
    s->rdg = lopt_floats((size_t)n * C3);
    s->z = lopt_floats((size_t)n * NCLS);
    s->rz = lopt_floats((size_t)n * NCLS);
    s->prob = lopt_floats((size_t)n * NCLS);
    s->dz = lopt_floats((size_t)n * NCLS);
    s->rdz = lopt_floats((size_t)n * NCLS);
    s->da3 = lopt_floats(nn_conv3_padded_floats(n, 7, 7, C3));
    s->rda3 = lopt_floats(nn_conv3_padded_floats(n, 7, 7, C3));
    s->dp2 = lopt_floats((size_t)n * 49 * C2);
    s->da2 = lopt_floats(nn_conv3_padded_floats(n, 14, 14, C2));
    s->rda2 = lopt_floats(nn_conv3_padded_floats(n, 14, 14, C2));
    s->dp1 = lopt_floats((size_t)n * 196 * C1);
    s->da1 = lopt_floats(nn_conv3_padded_floats(n, 28, 28, C1));
    s->rda1 = lopt_floats(nn_conv3_padded_floats(n, 28, 28, C1));
}

static void ws_free(cnn_ws *s)
{
    float *f[] = {s->x,  s->y1, s->p1, s->rp1, s->y2,  s->p2,  s->rp2,  s->a3,   s->ra3,
                  s->g,  s->rg, s->dg, s->rdg, s->z,   s->rz,  s->prob, s->dz,   s->rdz,
                  s->da3, s->rda3, s->dp2, s->da2, s->rda2, s->dp1, s->da1, s->rda1};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) lopt_free(f[i]);
    free(s->am1);
    free(s->am2);
}

static void packed_alloc(cnn_packed *p)
{
    p->wp1 = lopt_floats(9 * C1);
    p->wp2 = lopt_floats(9 * C1 * C2);
    p->wp3 = lopt_floats(9 * C2 * C3);
    p->wt2 = lopt_floats(9 * C1 * C2);
    p->wt3 = lopt_floats(9 * C2 * C3);
}

static void packed_free(cnn_packed *p)
{
    lopt_free(p->wp1);
    lopt_free(p->wp2);
    lopt_free(p->wp3);
    lopt_free(p->wt2);
    lopt_free(p->wt3);
}

static void pack(cnn_packed *p, const float *w)
{
    nn_conv3_pack(p->wp1, P(w, T_W1), 1, C1);
    nn_conv3_pack(p->wp2, P(w, T_W2), C1, C2);
    nn_conv3_pack(p->wp3, P(w, T_W3), C2, C3);
    nn_conv3_pack_adjoint(p->wt2, P(w, T_W2), C1, C2);
    nn_conv3_pack_adjoint(p->wt3, P(w, T_W3), C2, C3);
}

static conv3_shape sh1(int n) { return (conv3_shape){n, 28, 28, 1, C1}; }
static conv3_shape sh2(int n) { return (conv3_shape){n, 14, 14, C1, C2}; }
static conv3_shape sh3(int n) { return (conv3_shape){n, 7, 7, C2, C3}; }

/* the forward of n images x (n,784) with labels y; returns the summed loss */
static double chunk_forward(cnn_ws *s, const cnn_packed *pw, const float *w, const float *x,
                            const int32_t *y, int n, int *correct)
{
    conv3_shape s1 = sh1(n), s2 = sh2(n), s3 = sh3(n);
    nn_nhwc_pad(s->x, x, n, 28, 28, 1);
    nn_conv3_forward(s->y1, s->x, pw->wp1, P(w, T_B1), &s1);
    nn_relu_maxpool2_forward(s->p1, s->am1, s->y1, n, 28, 28, C1);
    nn_conv3_forward(s->y2, s->p1, pw->wp2, P(w, T_B2), &s2);
    nn_relu_maxpool2_forward(s->p2, s->am2, s->y2, n, 14, 14, C2);
    nn_conv3_forward(s->a3, s->p2, pw->wp3, P(w, T_B3), &s3);
    nn_relu_gap_forward(s->g, s->a3, n, 49, C3);
    nn_dense_forward(s->z, s->g, P(w, T_WF), P(w, T_BF), n, C3, NCLS);
    double loss = 0;
    for (int i = 0; i < n; i++) {
        int ok = 0;
        loss += nn_softmax_xent_forward(s->prob + i * NCLS, &ok, s->z + i * NCLS, y + i, 1, NCLS);
        *correct += ok;
    }
    return loss;
}

/* the backward of the chunk just run forward; g (N, packed) += its gradient of the
 * batch mean (1/B per example) */
static void chunk_backward(cnn_ws *s, const cnn_packed *pw, const float *w, const int32_t *y,
                           int n, float invB, float *g)
{
    conv3_shape s1 = sh1(n), s2 = sh2(n), s3 = sh3(n);
    /* L = (1/B) sum_b xent(z_b)  =>  dz = (prob - onehot(y)) / B */
    for (int i = 0; i < n; i++) {
        float *d = s->dz + i * NCLS;
        const float *p = s->prob + i * NCLS;
        for (int k = 0; k < NCLS; k++) d[k] = p[k] * invB;
        d[y[i]] -= invB;
    }
    memset(s->dg, 0, (size_t)n * C3 * sizeof(float));
    nn_dense_backward(s->dg, P(g, T_WF), P(g, T_BF), s->dz, s->g, P(w, T_WF), n, C3, NCLS);
    nn_relu_gap_backward(s->da3, s->dg, s->a3, n, 7, 7, C3);
    nn_conv3_backward(s->dp2, P(g, T_W3), P(g, T_B3), s->da3, s->p2, pw->wt3, &s3);
    nn_relu_maxpool2_backward(s->da2, s->dp2, s->am2, s->p2, n, 14, 14, C2);
    nn_conv3_backward(s->dp1, P(g, T_W2), P(g, T_B2), s->da2, s->p1, pw->wt2, &s2);
    nn_relu_maxpool2_backward(s->da1, s->dp1, s->am1, s->p1, n, 28, 28, C1);
    nn_conv3_backward(NULL, P(g, T_W1), P(g, T_B1), s->da1, s->x, NULL, &s1);
}

/* R-forward along v, then R-backward; h (N, packed) += the chunk's share of H v */
static void chunk_hvp(cnn_ws *s, const cnn_packed *pw, const cnn_packed *pv, const float *w,
                      const float *v, int n, float invB, float *h)
{
    conv3_shape s1 = sh1(n), s2 = sh2(n), s3 = sh3(n);
    /* R-forward; the image is data, so the first convolution has no input tangent */
    nn_conv3_rforward(s->y1, NULL, s->x, pw->wp1, pv->wp1, P(v, T_B1), &s1);
    nn_relu_maxpool2_rforward(s->rp1, s->y1, s->am1, s->p1, n, 28, 28, C1);
    nn_conv3_rforward(s->y2, s->rp1, s->p1, pw->wp2, pv->wp2, P(v, T_B2), &s2);
    nn_relu_maxpool2_rforward(s->rp2, s->y2, s->am2, s->p2, n, 14, 14, C2);
    nn_conv3_rforward(s->ra3, s->rp2, s->p2, pw->wp3, pv->wp3, P(v, T_B3), &s3);
    nn_relu_gap_rforward(s->rg, s->ra3, s->a3, n, 49, C3);
    nn_dense_rforward(s->rz, s->rg, s->g, P(w, T_WF), P(v, T_WF), P(v, T_BF), n, C3, NCLS);

    /* dz = (prob - onehot)/B  =>  R{dz} = (prob * rz - prob <prob, rz>) / B */
    for (int i = 0; i < n; i++) {
        const float *p = s->prob + i * NCLS, *rz = s->rz + i * NCLS;
        float *r = s->rdz + i * NCLS;
        double dot = 0.0;
        for (int k = 0; k < NCLS; k++) dot += (double)p[k] * rz[k];
        for (int k = 0; k < NCLS; k++) r[k] = p[k] * (rz[k] - (float)dot) * invB;
    }
    memset(s->rdg, 0, (size_t)n * C3 * sizeof(float));
    nn_dense_rbackward(s->rdg, P(h, T_WF), P(h, T_BF), s->rdz, s->dz, s->g, s->rg, P(w, T_WF),
                    P(v, T_WF), n, C3, NCLS);
    nn_relu_gap_backward(s->rda3, s->rdg, s->a3, n, 7, 7, C3);
    nn_conv3_rbackward(s->dp2, P(h, T_W3), P(h, T_B3), s->rda3, s->da3, s->p2, s->rp2, pw->wt3,
                    pv->wt3, &s3);
    nn_relu_maxpool2_backward(s->rda2, s->dp2, s->am2, s->p2, n, 14, 14, C2);
    nn_conv3_rbackward(s->dp1, P(h, T_W2), P(h, T_B2), s->rda2, s->da2, s->p1, s->rp1, pw->wt2,
                    pv->wt2, &s2);
    nn_relu_maxpool2_backward(s->rda1, s->dp1, s->am1, s->p1, n, 28, 28, C1);
    nn_conv3_rbackward(NULL, P(h, T_W1), P(h, T_B1), s->rda1, s->da1, s->x, NULL, NULL, NULL, &s1);
}

/* out (N, torch layout) = sum over groups of part (packed), in group order */
static void reduce_groups(float *out, const float *part, int G)
{
    float *acc = (float *)part;   /* group 0's partial becomes the sum */
    for (int g = 1; g < G; g++) {
        const float *q = part + (size_t)g * CNN_N;
        for (size_t i = 0; i < CNN_N; i++) acc[i] += q[i];
    }
    memcpy(out, acc, CNN_N * sizeof(float));
    /* the conv weights were summed packed (3,3,C,O): back to (O,C,3,3) */
    memset(P(out, T_W1), 0, C1 * 9 * sizeof(float));
    memset(P(out, T_W2), 0, C2 * C1 * 9 * sizeof(float));
    memset(P(out, T_W3), 0, C3 * C2 * 9 * sizeof(float));
    nn_conv3_unpack_grad(P(out, T_W1), P(acc, T_W1), 1, C1);
    nn_conv3_unpack_grad(P(out, T_W2), P(acc, T_W2), C1, C2);
    nn_conv3_unpack_grad(P(out, T_W3), P(acc, T_W3), C2, C3);
}

/* The whole batch: the loss; grad (may be NULL) the gradient; with v, hv = H v. */
static double cnn_run(cnn_ctx *c, const float *w, const lopt_batch_view *b, const float *v,
                      float *hv, float *grad)
{
    const int B = b->size, G = B < CNN_GROUPS ? B : CNN_GROUPS;
    const float invB = 1.0f / (float)B;
    const int want_g = grad != NULL || v != NULL;
    pack(&c->pw, w);
    if (v) pack(&c->pv, v);
    int nt = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) nt = omp_get_max_threads();
#endif
    if (nt > c->nws) nt = c->nws;
    if (nt > G) nt = G;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
    for (int gi = 0; gi < G; gi++) {
        int tid = 0;
#ifdef _OPENMP
        tid = nt > 1 ? omp_get_thread_num() : 0;
#endif
        cnn_ws *s = &c->ws[tid];
        float *pg = c->part_g + (size_t)gi * CNN_N, *ph = c->part_h + (size_t)gi * CNN_N;
        if (want_g) memset(pg, 0, CNN_N * sizeof(float));
        if (v) memset(ph, 0, CNN_N * sizeof(float));
        double loss = 0;
        int correct = 0;
        const int i1 = (int)((long)(gi + 1) * B / G);
        for (int i = (int)((long)gi * B / G); i < i1; i += CNN_CHUNK) {
            int n = i1 - i < CNN_CHUNK ? i1 - i : CNN_CHUNK;
            loss += chunk_forward(s, &c->pw, w, b->x + (size_t)i * 784, b->labels + i, n,
                                  &correct);
            if (want_g) chunk_backward(s, &c->pw, w, b->labels + i, n, invB, pg);
            if (v) chunk_hvp(s, &c->pw, &c->pv, w, v, n, invB, ph);
        }
        c->part_loss[gi] = loss;
        c->part_correct[gi] = correct;
    }
    double loss = 0;
    int correct = 0;
    for (int gi = 0; gi < G; gi++) {
        loss += c->part_loss[gi];
        correct += c->part_correct[gi];
    }
    if (want_g) reduce_groups(grad ? grad : c->gbuf, c->part_g, G);
    if (v) reduce_groups(hv, c->part_h, G);
    c->accuracy = (double)correct / B;
    return loss / B;
}

static double cnn_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    return cnn_run(ctx, w, b, NULL, NULL, grad);
}

static double cnn_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                      float *hv, float *grad)
{
    return cnn_run(ctx, w, b, v, hv, grad);
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
    for (int i = 0; i < c->nws; i++) ws_free(&c->ws[i]);
    free(c->ws);
    packed_free(&c->pw);
    packed_free(&c->pv);
    lopt_free(c->part_g);
    lopt_free(c->part_h);
    lopt_free(c->gbuf);
    lopt_task_data_release(c->data);
    free(c);
}

lopt_status lopt_task_cnn_spec(lopt_task_spec *t, const lopt_task_opts *o, lopt_err *err)
{
    const lopt_fmnist *fm;
    lopt_status st = lopt_task_data_acquire(&fm, 28, o->data_dir, err);
    if (st != LOPT_OK) return st;
    cnn_ctx *c = lopt_xcalloc(1, sizeof *c);
    c->data = fm;
    c->nws = 1;
#ifdef _OPENMP
    c->nws = omp_get_max_threads();
#endif
    if (c->nws > CNN_GROUPS) c->nws = CNN_GROUPS;
    c->ws = lopt_xcalloc((size_t)c->nws, sizeof *c->ws);
    for (int i = 0; i < c->nws; i++) ws_alloc(&c->ws[i]);
    packed_alloc(&c->pw);
    packed_alloc(&c->pv);
    c->part_g = lopt_floats((size_t)CNN_GROUPS * CNN_N);
    c->part_h = lopt_floats((size_t)CNN_GROUPS * CNN_N);
    c->gbuf = lopt_floats(CNN_N);
    t->name = "fmnist-cnn";
    t->nparams = CNN_N;
    t->ntensors = 8;
    t->tensors = cnn_tensors;
    t->batch_size = o->batch > 0 ? o->batch : CNN_BATCH;
    t->input = 784;
    lopt_task_data_splits(t->data, fm);
    t->ctx = c;
    t->init = cnn_init;
    t->loss_grad = cnn_loss_grad;
    t->hvp = cnn_hvp;
    t->last_accuracy = cnn_accuracy;
    t->free_ctx = cnn_free;
    LOPT_ASSERT(t->nparams == 14378);
    return LOPT_OK;
}
