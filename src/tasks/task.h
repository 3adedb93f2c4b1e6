/* task.h - one interface for every task lopt trains (docs/design.md section 3):
 * a model, its loss, its data splits, and the exact Hessian-vector product.
 *
 * Every task, built-in or a user's, is defined by the public lopt_task_spec
 * (include/lopt.h): a struct of callbacks over the flat parameter vector and,
 * optionally, in-memory data. lopt_task_create turns a spec from the registry
 * (the built-ins, then lopt_task_register's) into the lopt_task below, the view
 * the rest of the library uses: its callbacks forward to the spec's with a
 * lopt_batch_view of the batch. Standard tasks: quadratic (dim 64), fmnist8-mlp
 * (2,410 parameters), fmnist-cnn (14,378 parameters). A task object owns its
 * scratch buffers, so one object serves one thread; create one per thread.
 */
#ifndef LOPT_TASK_H
#define LOPT_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "lopt.h"
#include "core/core.h"
#include "data/data.h"

/* A named view into the flat parameter vector (per-tensor features need these). */
typedef struct {
    const char *name;
    size_t offset, size;
    int fan_in;     /* for N(0, 2/fan_in) initialisation; 0 marks a bias (zeros) */
} lopt_tensor;

/* Epoch orders a batch keeps: one batch object serves several trajectories in turn
 * (a meta-training worker's samples), and recomputing an epoch order costs ~0.3 ms
 * for the 50,000-image training split. */
#define LOPT_BATCH_ORDERS 8

/* One minibatch: examples gathered from a split (tasks with in-memory data), or
 * for tasks that batch themselves only its coordinates (split, seed, step) and a
 * key. Allocated by lopt_batch_alloc for a task. */
typedef struct {
    int B;            /* examples in this batch (<= capacity); 0: the whole split */
    int capacity;
    float *x;         /* (B, input size) */
    int32_t *y;       /* (B) labels, if the task's data has them */
    float *yt;        /* (B, ntargets) regression targets, if the task's data has them */
    uint64_t key;     /* noise key (quadratic) */
    lopt_split split; /* what lopt_task_sample was asked for */
    uint64_t seed;
    int64_t step;
    /* cached epoch orders of the most recently used (split, seed)s */
    lopt_sampler sampler[LOPT_BATCH_ORDERS];
    int sampler_split[LOPT_BATCH_ORDERS];     /* -1: slot unused */
    uint64_t sampler_used[LOPT_BATCH_ORDERS]; /* last use, for least-recently-used reuse */
    uint64_t uses;
} lopt_batch;

typedef struct lopt_task lopt_task;
struct lopt_task {
    const char *name;
    size_t n;                     /* parameter count */
    int ntensors;
    const lopt_tensor *tensors;   /* (ntensors), in the flat order */
    int batch;                    /* training batch size */
    int input;                    /* input size per example (0: no in-memory data; then
                                   * the task batches itself) */
    void *ctx;                    /* the spec's ctx */
    lopt_task_spec spec;          /* what the callbacks below forward to (spec.data:
                                   * the in-memory splits when input > 0) */

    /* Samples a task instance from seed: the initial parameters w (n), and for
     * tasks with instance constants (quadratic's a, c) those too. */
    void (*init)(lopt_task *t, uint64_t seed, float *w);
    /* Selects the instance constants of seed without touching parameters, so one
     * task object can serve trajectories of different instances in turn. NULL for
     * tasks whose instances differ only in their initial parameters. */
    void (*set_instance)(lopt_task *t, uint64_t seed);
    /* Mean loss on the batch; grad (n, overwritten) may be NULL. Non-finite losses
     * are returned as they are: the caller decides what divergence means. */
    double (*loss_grad)(lopt_task *t, const float *w, const lopt_batch *b, float *grad);
    /* hv = H(w) v (n, overwritten) on the batch, exactly (R-operator); grad (may be
     * NULL) receives the gradient as loss_grad would. Returns the loss. */
    double (*hvp)(lopt_task *t, const float *w, const lopt_batch *b, const float *v,
                  float *hv, float *grad);
    /* Accuracy on the batch (fraction correct, NaN for tasks without labels), of
     * the last loss_grad/hvp call. */
    double (*last_accuracy)(lopt_task *t);
    void (*free)(lopt_task *t);
    lopt_tensor *own_tensors;     /* the tensors array, owned */
};

typedef struct {
    int batch;             /* 0: the task's default */
    float grad_noise;      /* quadratic: std of additive gradient noise */
    const char *data_dir;  /* NULL: $LOPT_FMNIST_DIR or the Debian path */
} lopt_task_opts;

/* Creates a task by name: a built-in (loads its data) or one registered with
 * lopt_task_register. Checks the spec the factory made (sizes, callbacks, data):
 * LOPT_EUSAGE with the reason. opts->batch and opts->grad_noise apply to the
 * built-ins only (a registered task with opts->batch > 0 other than its own
 * batch size is refused). t->free(t) releases it. */
lopt_status lopt_task_create(lopt_task *t, const char *name, const lopt_task_opts *opts,
                             lopt_err *err);

typedef struct {
    const char *name;
    const char *summary;
} lopt_task_info;
extern const lopt_task_info lopt_task_list[];   /* the built-ins, terminated by {NULL, NULL} */
/* Every task by name, the built-ins first, then the registered ones in order of
 * registration: entry i (0-based) into *info; returns 0 past the end. */
int lopt_task_nth(int i, lopt_task_info *info);

/* Batches: lopt_batch_alloc sizes a batch for the task (capacity examples);
 * lopt_task_sample fills it with batch number `step` of split for data seed
 * `seed` (a pure function of its arguments). */
void lopt_batch_alloc(lopt_batch *b, const lopt_task *t, int capacity);
void lopt_batch_free(lopt_batch *b);
void lopt_task_sample(const lopt_task *t, lopt_batch *b, lopt_split split,
                      uint64_t seed, int64_t step);

/* Mean loss and accuracy over a whole split: in batches of the task's size with
 * in-memory data, otherwise one loss_grad call with B == 0 ("the whole split"). */
void lopt_task_eval(lopt_task *t, const float *w, lopt_split split, double *loss,
                    double *acc);

/* The initialisation every network task shares: N(0, 2/fan_in) weights, zero
 * biases, drawn from (seed, LOPT_STREAM_INIT) at each tensor's offset
 * (lopt_init_he over the task's tensors). */
void lopt_task_init_he(const lopt_task *t, uint64_t seed, float *w);

#endif
