/* tasks.c - the task registry, batches, whole-split evaluation and the shared
 * initialisation (DESIGN.md section 3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/task.h"
#include "tasks/task_impl.h"

const lopt_task_info lopt_task_list[] = {
    {"quadratic", "1/2 sum a_i (w_i - c_i)^2, dim 64, a_i log-uniform in [0.01, 100]"},
    {"fmnist8-mlp", "Fashion-MNIST 8x8, MLP 64-32-ReLU-10, batch 128, 2,410 params"},
    {"fmnist-cnn", "Fashion-MNIST 28x28, 3 conv3x3 (16,32,32) + GAP + dense, batch 128, "
                   "14,378 params"},
    {NULL, NULL},
};

lopt_status lopt_task_create(lopt_task *t, const char *name, const lopt_task_opts *opts,
                             lopt_err *err)
{
    static const lopt_task_opts none = {0};
    if (!opts) opts = &none;
    lopt_threads_init();
    memset(t, 0, sizeof *t);
    if (strcmp(name, "quadratic") == 0) return task_quadratic_create(t, opts, err);
    if (strcmp(name, "fmnist8-mlp") == 0) return task_mlp_create(t, opts, err);
    if (strcmp(name, "fmnist-cnn") == 0) return task_cnn_create(t, opts, err);
    return lopt_fail(err, LOPT_EUSAGE, "unknown task '%s' (see `lopt tasks`)", name);
}

void lopt_batch_alloc(lopt_batch *b, const lopt_task *t, int capacity)
{
    memset(b, 0, sizeof *b);
    b->capacity = capacity;
    for (int i = 0; i < LOPT_BATCH_ORDERS; i++) b->sampler_split[i] = -1;
    if (t->input > 0) {
        b->x = lopt_floats((size_t)capacity * (size_t)t->input);
        b->y = lopt_xcalloc((size_t)capacity, sizeof(int32_t));
    }
}

void lopt_batch_free(lopt_batch *b)
{
    if (!b) return;
    lopt_free(b->x);
    free(b->y);
    for (int i = 0; i < LOPT_BATCH_ORDERS; i++) lopt_sampler_free(&b->sampler[i]);
    memset(b, 0, sizeof *b);
    for (int i = 0; i < LOPT_BATCH_ORDERS; i++) b->sampler_split[i] = -1;
}

/* the cached sampler of (split, seed) at batch size B, made in the least recently
 * used slot if there is none */
static lopt_sampler *batch_sampler(lopt_batch *b, int split, uint64_t seed, int n)
{
    int slot = -1;
    for (int i = 0; i < LOPT_BATCH_ORDERS && slot < 0; i++)
        if (b->sampler_split[i] == split && b->sampler[i].seed == seed && b->sampler[i].B == b->B)
            slot = i;
    if (slot >= 0) goto found;
    slot = 0;   /* an unused slot, else the least recently used */
    for (int i = 0; i < LOPT_BATCH_ORDERS; i++) {
        if (b->sampler_split[i] < 0) {
            slot = i;
            break;
        }
        if (b->sampler_used[i] < b->sampler_used[slot]) slot = i;
    }
    lopt_sampler_free(&b->sampler[slot]);
    lopt_sampler_init(&b->sampler[slot], seed, n, b->B);
    b->sampler_split[slot] = split;
found:
    b->sampler_used[slot] = ++b->uses;
    return &b->sampler[slot];
}

void lopt_task_sample(const lopt_task *t, lopt_batch *b, lopt_split split,
                      uint64_t seed, int64_t step)
{
    b->B = t->batch < b->capacity ? t->batch : b->capacity;
    /* the noise key distinguishes split, seed and step like the data order does */
    b->key = lopt_rng_u64(seed, LOPT_STREAM_NOISE, (uint64_t)step * 4 + (uint64_t)split);
    if (!t->data) return;
    const lopt_dataset *d = &t->data->split[split];
    lopt_sampler *smp = batch_sampler(b, (int)split, seed, d->n);
    int32_t idx[b->B];
    lopt_sampler_batch(smp, step, idx);
    lopt_dataset_gather(d, idx, b->B, b->x, b->y);
}

void lopt_task_eval(lopt_task *t, const float *w, lopt_split split, double *loss,
                    double *acc)
{
    if (!t->data) {
        /* data-free: the exact loss (no gradient noise) */
        lopt_batch b;
        lopt_batch_alloc(&b, t, 1);
        b.B = 0;
        b.key = 0;
        *loss = t->loss_grad(t, w, &b, NULL);
        *acc = NAN;
        lopt_batch_free(&b);
        return;
    }
    const lopt_dataset *d = &t->data->split[split];
    lopt_batch b;
    lopt_batch_alloc(&b, t, t->batch);
    double sum_loss = 0.0, sum_acc = 0.0;
    int32_t idx[t->batch];
    for (int start = 0; start < d->n; start += t->batch) {
        int B = d->n - start < t->batch ? d->n - start : t->batch;
        for (int i = 0; i < B; i++) idx[i] = start + i;
        lopt_dataset_gather(d, idx, B, b.x, b.y);
        b.B = B;
        sum_loss += B * t->loss_grad(t, w, &b, NULL);
        sum_acc += B * t->last_accuracy(t);
    }
    *loss = sum_loss / d->n;
    *acc = sum_acc / d->n;
    lopt_batch_free(&b);
}

void lopt_task_init_he(const lopt_task *t, uint64_t seed, float *w)
{
    for (int i = 0; i < t->ntensors; i++) {
        const lopt_tensor *T = &t->tensors[i];
        if (T->fan_in > 0)
            lopt_rng_fill_normal(w + T->offset, T->size, sqrtf(2.0f / (float)T->fan_in),
                                 seed, LOPT_STREAM_INIT, T->offset);
        else
            memset(w + T->offset, 0, T->size * sizeof(float));
    }
}
