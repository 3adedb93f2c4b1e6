/* lopt.h - train your own model with a learned optimizer, and meta-train one for
 * your own task.
 *
 * lopt meta-trains small per-parameter MLP optimizers (Metz et al., "Understanding
 * and correcting pathologies in the training of learned optimizers", ICML 2019)
 * and saves them as .lopt files. This header is all a program needs: it depends on
 * the C standard library only. After `make install`, build with
 *
 *     cc my.c $(pkg-config --cflags --libs lopt)
 *
 * (docs/design.md is the full account of the method, the tasks and the formats.)
 *
 * 1. Using a learned optimizer. Your parameters are tensors, in one flat float
 * vector or wherever you keep them. The learned optimizer normalises its features
 * per tensor, so it needs the tensor sizes; it keeps its own state (momenta, step
 * count), and each step reads your gradient and updates the parameters in place:
 *
 *     #include "lopt.h"
 *
 *     char msg[256];
 *     lopt_model *m = lopt_model_load("my-optimizer.lopt", msg, sizeof msg);
 *     if (!m) { fprintf(stderr, "%s\n", msg); return 1; }
 *
 *     size_t sizes[] = {64 * 32, 32, 32 * 10, 10};     // W1, b1, W2, b2
 *     lopt_opt *opt = lopt_opt_new(m, sizes, 4);
 *     lopt_model_free(m);                              // opt keeps what it needs
 *
 *     for (int step = 0; step < 1000; step++) {
 *         my_loss_and_grad(params, grads);             // your forward + backward
 *         lopt_opt_step(opt, params, grads);           // params -= learned update
 *     }
 *     lopt_opt_free(opt);
 *
 * There is no learning rate: the step size is part of what was learned, for the
 * horizon (number of steps) and kind of task it was meta-trained on (lopt_model_info).
 * A step scale (a learning-rate multiplier), decoupled weight decay, parameter
 * groups, frozen tensors and tensors anywhere in memory come with
 * lopt_opt_new_groups and lopt_opt_step_tensors; the optimizer's state saves and
 * restores with lopt_opt_save_state / lopt_opt_load_state.
 *
 * 2. Your own task (section "Tasks" below): a struct of callbacks over a flat
 * parameter vector, registered under a name with lopt_task_register; lopt_meta_train
 * meta-trains an optimizer for it and lopt_train trains it with one.
 * examples/own_task.c is a complete program.
 *
 * Errors: functions that can fail for reasons outside the program (files, bad
 * arguments, a task's own failures) take an errbuf/errlen pair and write a
 * one-line message there (errbuf may be NULL). Passing a NULL object where one
 * is required, or arrays of the wrong length, is a programmer error.
 * A lopt_opt is not thread-safe: use one per thread.
 */
#ifndef LOPT_H
#define LOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== learned optimizers ========================================================= */

/* A learned optimizer as read from a .lopt file: architecture and weights. */
typedef struct lopt_model lopt_model;

/* The state of one learned optimizer applied to one program's parameters. */
typedef struct lopt_opt lopt_opt;

/* Reads a .lopt file. Returns NULL and a one-line reason in errbuf if the file is
 * missing, unreadable, truncated, corrupt or not a .lopt file; free with
 * lopt_model_free. */
lopt_model *lopt_model_load(const char *path,   /* the .lopt file */
                            char *errbuf,       /* receives the reason on failure, or NULL */
                            size_t errlen);     /* size of errbuf in bytes */

/* Writes a model to a .lopt file (format version 2, atomically: a reader sees the
 * old file or the new one). Returns 0, or -1 with a one-line reason. */
int lopt_model_save(const lopt_model *m,   /* the model */
                    const char *path,      /* the .lopt file to write */
                    char *errbuf,          /* receives the reason on failure, or NULL */
                    size_t errlen);        /* size of errbuf in bytes */

/* Releases a model; NULL is a no-op. Optimizers created from it stay valid. */
void lopt_model_free(lopt_model *m);

/* Writes a one-line description of the model (architecture, weight count, where
 * it was meta-trained) to buf, truncated to buflen. Returns buf. */
const char *lopt_model_describe(const lopt_model *m,   /* the model */
                                char *buf,             /* output */
                                size_t buflen);        /* size of buf in bytes */

/* What a .lopt file says about itself (`lopt info FILE` prints the same). Empty
 * strings and zeros mean "not recorded". */
typedef struct {
    int file_version;          /* .lopt format version the file had (1 or 2) */
    char form[16];             /* "mlp" (paper, lo) or "nominal" */
    int nmom;                  /* momentum features */
    int ntime;                 /* time features */
    int nhidden, hidden;       /* hidden layers x width */
    size_t nweights;           /* learned weights */
    int64_t horizon;           /* inner steps per trajectory it was meta-trained for;
                                * 0: unknown (untrained, or a version-1 file) */
    char task[64];             /* the task it was meta-trained on */
    char estimator[64];        /* rp | es | merged | pes | nres | fulles; "none": untrained */
    char outer_loss[64];       /* train | valid */
    int64_t outer_steps;       /* meta-training steps; 0: untrained */
} lopt_info;

/* Fills info from the model. Returns 0. */
int lopt_model_info(const lopt_model *m,   /* the model */
                    lopt_info *info);      /* output */

/* Writes an UNTRAINED learned optimizer: random weights drawn from seed for the
 * architecture preset "paper" (the authors' release), "lo" (learned_optimization)
 * or "nominal" (a hand-designed normalised-momentum step with a learnable schedule
 * plus an MLP residual that starts at zero). Useful as a starting point for
 * meta-training and for testing a program's plumbing; an untrained "paper" or "lo"
 * is not a good optimizer, an untrained "nominal" is exactly normalised momentum
 * (beta 0.9) at an RMS step of 3e-3 per tensor. The file is written atomically.
 * Returns 0 on success, -1 with a one-line reason in errbuf. */
int lopt_model_write_initial(const char *path,     /* the .lopt file to create */
                             const char *preset,   /* "paper", "lo" or "nominal" */
                             uint64_t seed,        /* weight initialisation seed */
                             char *errbuf,         /* receives the reason on failure, or NULL */
                             size_t errlen);       /* size of errbuf in bytes */

/* Creates the optimizer state for a program whose parameters are ntensors
 * tensors laid out one after the other in a flat float vector of
 * sum(tensor_sizes) elements: one group, step scale 1, no weight decay (the
 * one-group case of lopt_opt_new_groups, with its checks). Copies what it needs
 * from the model and the sizes (both may be freed afterwards). Returns NULL if
 * model or tensor_sizes is NULL, ntensors < 1, a size is 0, the sizes sum past
 * SIZE_MAX or to more than 2^31 - 1 parameters, or the optimizer's state cannot be
 * allocated (4 (2 R + 2 nmom + 2 nhidden hidden + 11) bytes per parameter, R the
 * state rows: nmom, plus 1 for nominal-adam; 380 for the paper preset);
 * lopt_last_error() then says which. It never aborts the program. Free with
 * lopt_opt_free. */
lopt_opt *lopt_opt_new(const lopt_model *model,      /* a loaded learned optimizer */
                       const size_t *tensor_sizes,   /* (ntensors) element counts */
                       int ntensors);                /* number of tensors, >= 1 */

/* lopt_opt_new, with the one-line reason also in errbuf when it returns NULL. */
lopt_opt *lopt_opt_new2(const lopt_model *model,      /* a loaded learned optimizer */
                        const size_t *tensor_sizes,   /* (ntensors) element counts */
                        int ntensors,                 /* number of tensors, >= 1 */
                        char *errbuf,                 /* receives the reason, or NULL */
                        size_t errlen);               /* size of errbuf in bytes */

/* The reason the last failed call on this thread gave (lopt_opt_new and every
 * call with an errbuf set it); "" if none failed yet. Valid until the next failure
 * on this thread. */
const char *lopt_last_error(void);

/* The options of one parameter group, as torch.optim's param_groups:
 *   step_scale    multiplies the learned update (1: as meta-trained). The learned
 *                 optimizer has no learning rate; this is the multiplier a
 *                 learning-rate scheduler would drive.
 *   weight_decay  decoupled, as AdamW: each step
 *                     w <- w - step_scale * weight_decay * w + step_scale * update(w, g)
 *                 with the update computed from the parameters before the decay.
 *                 AdamW multiplies its weight_decay by its lr (1e-3 typically);
 *                 here nothing does, so AdamW's (lr 1e-3, weight_decay 1e-2) is
 *                 weight_decay 1e-5 here.
 *   frozen        1: the group's tensors are never updated and have no state.
 * Start from lopt_group_opts_default (a zeroed struct would be step_scale 0). */
typedef struct {
    float step_scale;     /* >= 0, finite */
    float weight_decay;   /* >= 0, finite */
    int frozen;           /* 0 or 1 */
} lopt_group_opts;

/* step_scale 1, weight_decay 0, not frozen. */
void lopt_group_opts_default(lopt_group_opts *o);

/* One parameter group: tensors and their options. */
typedef struct {
    const size_t *tensor_sizes;   /* (ntensors) element counts, each > 0 */
    int ntensors;                 /* >= 1 */
    lopt_group_opts opts;
} lopt_param_group;

/* Creates an optimizer over the tensors of every group, in order: group 0's
 * tensors, then group 1's, ... That order is the order of the pointer arrays of
 * lopt_opt_step_tensors and of the flat vector of lopt_opt_step (frozen tensors
 * included: they keep their place and are left alone). Every group is
 * normalised per tensor exactly as with lopt_opt_new, so the same tensors in one
 * group or in several give the same updates. Returns NULL with a one-line reason
 * (also in lopt_last_error) on bad sizes or options, as lopt_opt_new does: the
 * 2^31 - 1 limit and the state's size count the updated (not frozen) parameters. */
lopt_opt *lopt_opt_new_groups(const lopt_model *model,          /* a loaded learned optimizer */
                              const lopt_param_group *groups,   /* (ngroups) */
                              int ngroups,                      /* >= 1 */
                              char *errbuf,                     /* the reason on failure, or NULL */
                              size_t errlen);                   /* size of errbuf in bytes */

/* Changes a group's step scale and weight decay (e.g. from a schedule, before a
 * step). Freezing or unfreezing is not a change of options: refused, as are
 * negative or non-finite values. Returns 0, or -1 with a reason. */
int lopt_opt_set_group(lopt_opt *opt, int group,        /* 0 .. ngroups-1 */
                       const lopt_group_opts *opts, char *errbuf, size_t errlen);
/* Reads a group's options into *opts. Returns 0, -1 for a bad group index. */
int lopt_opt_get_group(const lopt_opt *opt, int group, lopt_group_opts *opts);

int lopt_opt_ngroups(const lopt_opt *opt);
int lopt_opt_ntensors(const lopt_opt *opt);    /* all groups, frozen included */

/* The number of parameters in the flat layout (sum of all tensor sizes, frozen
 * ones included). */
size_t lopt_opt_nparams(const lopt_opt *opt);

/* Non-finite values, in every step function below, are skipped element by element,
 * never spread: where a gradient element is NaN or +-inf, its parameter and its
 * momenta stay as they were (the element counts as a zero gradient in its tensor's
 * normalisation, so the rest of the tensor steps as usual); where the computed
 * update of an element is not finite (e.g. a NaN parameter), the parameter stays as
 * it was. Groups, step scales, weight decay, frozen and skipped tensors and the
 * horizon clamp do not change that: a skipped element is not decayed either. Each
 * skipped element is counted (lopt_opt_nonfinite); the step count advances anyway. */

/* One optimization step over the flat layout: updates params in place from grads
 * (the gradient of your loss at params) and advances the optimizer's momenta and
 * step count. Frozen tensors' entries are neither read nor written. */
void lopt_opt_step(lopt_opt *opt,        /* the optimizer state */
                   float *params,        /* (nparams) updated in place */
                   const float *grads);  /* (nparams) gradient at params */

/* The same over tensors anywhere in memory: params[i] and grads[i] point at tensor
 * i (ntensors entries, in the order of lopt_opt_new_groups). A tensor whose grads[i]
 * is NULL is skipped this step, as torch.optim skips a parameter without a .grad:
 * not updated, its momenta unchanged. Frozen tensors are not read (their entries
 * may be NULL). Gives bit for bit the update lopt_opt_step gives. */
void lopt_opt_step_tensors(lopt_opt *opt,
                           float *const *params,          /* (ntensors) */
                           const float *const *grads);    /* (ntensors), entries may be NULL */

/* Elements skipped by the non-finite rule (see above) since the optimizer was
 * created or last reset: non-zero means your gradients (or parameters) have NaN/inf
 * in them. */
uint64_t lopt_opt_nonfinite(const lopt_opt *opt);

/* Forgets momenta, the step count and the skipped-element count, as for a freshly
 * created optimizer (use it when you re-initialise your parameters for a new
 * training run). Group options and the horizon clamp are kept. */
void lopt_opt_reset(lopt_opt *opt);

/* Steps taken since creation or the last reset. */
int64_t lopt_opt_steps(const lopt_opt *opt);

/* Past its horizon. A learned optimizer sees the step count t through time features
 * tanh(t / tau - 1); it was meta-trained on runs of about `horizon` steps and never
 * saw larger t. Run past that, its behaviour is an extrapolation: a shipped optimizer
 * that reaches a loss of 2e-4 at step 3,000 can climb back to 3e-2 by step 5,000.
 * The clamp feeds it t' = min(t, t_max) instead, so it keeps behaving as it did at
 * the end of the runs it was trained on (momenta and the step count still advance).
 * Default: t_max = the file's horizon when the file records one (lopt_info.horizon),
 * no clamp otherwise. t_max 0 turns the clamp off; lopt_opt_t_max reads it. */
void lopt_opt_set_t_max(lopt_opt *opt, int64_t t_max);   /* >= 0; 0: no clamp */
int64_t lopt_opt_t_max(const lopt_opt *opt);
/* The horizon the model was meta-trained for (0: unknown), and whether the step
 * count has gone past it (1) - a program can warn its user. */
int64_t lopt_opt_horizon(const lopt_opt *opt);
int lopt_opt_past_horizon(const lopt_opt *opt);

/* Optimizer state as a blob, to resume a training run bit-identically (as
 * torch.optim's state_dict): the step count, the momenta, every group's options
 * and the clamp, tied to the tensor layout and to the model's weights by a
 * checksum, with a CRC-32 over the whole. lopt_opt_state_size gives the blob's
 * size in bytes; lopt_opt_save_state writes it to buf (cap >= that size) and
 * returns the bytes written, or 0 with a reason if cap is too small.
 * lopt_opt_load_state restores a blob saved from an optimizer with the same tensors
 * (sizes, groups, frozen flags) and the same model; a corrupt, truncated or
 * mismatched blob is refused (-1, a reason, opt unchanged); 0 on success.
 * lopt_opt_nonfinite's count is not part of the state (a diagnostic of the
 * gradients fed, it shapes no update): a load leaves it as it is. */
size_t lopt_opt_state_size(const lopt_opt *opt);
size_t lopt_opt_save_state(const lopt_opt *opt, void *buf, size_t cap, char *errbuf,
                           size_t errlen);
int lopt_opt_load_state(lopt_opt *opt, const void *buf, size_t len, char *errbuf,
                        size_t errlen);
/* The same to and from a file (written atomically). Return 0, or -1 with a reason. */
int lopt_opt_save_state_file(const lopt_opt *opt, const char *path, char *errbuf,
                             size_t errlen);
int lopt_opt_load_state_file(lopt_opt *opt, const char *path, char *errbuf, size_t errlen);

/* Releases an optimizer; NULL is a no-op. */
void lopt_opt_free(lopt_opt *opt);

/* ==== tasks ======================================================================
 *
 * A task is what meta-training trains on and what lopt_train runs: a model, its
 * loss, and its data, as a struct of callbacks over one flat float vector w of
 * nparams parameters (tensor after tensor). The built-in tasks (quadratic,
 * fmnist8-mlp, fmnist-cnn) are defined through this same struct.
 *
 * Batches. lopt never shows a task anything but a lopt_batch_view: which split,
 * the trajectory's data seed, the batch number, the batch size. Batch (split,
 * seed, step) must always mean the same examples - a pure function of the three:
 * antithetic pairs compare two optimizers on the same batches, and a resumed
 * meta-training run must see the batches the interrupted one would have. Either
 *  - give lopt your data in memory (lopt_task_spec.data): lopt then gathers each
 *    batch itself (seeded epochs over the split) and the view carries the examples
 *    in x and their labels (int32 class indices) or regression targets (floats);
 *  - or do the batching yourself from (split, seed, step) (input = 0; x, labels and
 *    targets are then NULL): a generator of synthetic data, a file, anything.
 * size == 0 means the whole split: lopt asks for it when it evaluates (train's
 * validation curve, compare, the horizon evaluation of meta-training) on a task
 * without in-memory data, always with grad == NULL (seed and step are 0 then).
 * For tasks with in-memory data lopt evaluates a whole split in batches of
 * batch_size itself, and size is never 0.
 *
 * Splits: train is what the inner optimizer trains on; valid is what
 * `--outer-loss valid` (lopt_meta_settings.outer_loss "valid", the default) measures
 * the optimizer by, and the curve of lopt_train; test is only read at the end of a
 * training run. For a data-free task (quadratic, or a task that draws its batches
 * itself) "valid" is whatever your loss_grad makes of split == LOPT_SPLIT_VALID:
 * the built-in quadratic has no held-out data, so there its outer loss is the same
 * loss as training's, under independent gradient noise; give your task real
 * held-out data under LOPT_SPLIT_VALID, or meta-train with outer_loss "train".
 *
 * Instances. init(seed, w) starts a fresh trajectory: the initial parameters, and
 * for tasks whose instances differ in more than their initialisation (quadratic's
 * curvatures, a dataset drawn per seed) the instance constants too. Meta-training
 * runs several trajectories through one task object in turn, so a task with
 * instance constants must also have set_instance(seed), which selects the constants
 * of seed without touching w; NULL for tasks whose instances differ only in w.
 *
 * Threads. lopt creates one task object per thread by calling the registered
 * factory once per thread (meta-training samples, horizon evaluations, compare's
 * tuning workers); one object's callbacks are only ever called from one thread at a
 * time. Data shared between objects must be read-only while lopt runs.
 */

typedef enum {
    LOPT_SPLIT_TRAIN = 0,   /* inner training */
    LOPT_SPLIT_VALID = 1,   /* held out: the outer loss of --outer-loss valid, train's curve */
    LOPT_SPLIT_TEST = 2,    /* held out: read once at the end of a training run */
} lopt_split;

/* The batch a callback is asked about (read-only, valid during the call). */
typedef struct {
    lopt_split split;
    uint64_t seed;           /* the trajectory's data seed (0 when size == 0) */
    int64_t step;            /* batch number, >= 0 (0 when size == 0) */
    int size;                /* examples, 1 .. batch_size; 0: the whole split */
    uint64_t key;            /* 64 random bits, a pure function of (split, seed, step):
                              * e.g. a seed for gradient noise */
    const float *x;          /* (size, input) examples, with in-memory data; else NULL */
    const int32_t *labels;   /* (size) class indices, if the data has labels; else NULL */
    const float *targets;    /* (size, ntargets) regression targets, if the data has
                              * them; else NULL */
} lopt_batch_view;

/* One split of in-memory data. Examples are rows; the arrays are the task's (lopt
 * reads them, never frees them) and must stay valid and unchanged while a task
 * object made from them lives. */
typedef struct {
    int n;                   /* examples; 0: the split is absent */
    const float *x;          /* (n, input) */
    const int32_t *labels;   /* (n) class indices, or NULL */
    const float *targets;    /* (n, ntargets) regression targets, or NULL */
} lopt_split_data;

/* One tensor of the flat parameter vector (they tile it in order). */
typedef struct {
    const char *name;        /* for messages; may be NULL */
    size_t size;             /* elements, > 0 */
    int fan_in;              /* for lopt_init_he: N(0, 2/fan_in); 0 marks zeros (a bias) */
} lopt_tensor_spec;

typedef struct lopt_task_spec lopt_task_spec;
struct lopt_task_spec {
    const char *name;                  /* ignored for a registered task: its registered
                                        * name is used */
    size_t nparams;                    /* n: the flat vector's length */
    int ntensors;                      /* >= 1 */
    const lopt_tensor_spec *tensors;   /* (ntensors); sizes sum to nparams. The array is
                                        * copied; the names must outlive the task object
                                        * (string literals do) */
    int batch_size;                    /* training batch size, >= 1 */
    int input;                         /* floats per example of in-memory data; 0: none */
    int ntargets;                      /* floats per regression target; 0: labels or none */
    lopt_split_data data[3];           /* in-memory data by lopt_split (input > 0):
                                        * train and valid needed, test optional */
    void *ctx;                         /* yours: passed to every callback */

    /* Required. A fresh trajectory: w (nparams, overwritten) from seed, and the
     * instance constants of seed if the task has any. */
    void (*init)(void *ctx, uint64_t seed, float *w);
    /* Optional (see "Instances"). */
    void (*set_instance)(void *ctx, uint64_t seed);
    /* Required. The mean loss on the batch; grad (nparams, overwritten) receives
     * its gradient when not NULL. A non-finite loss is returned as it is (lopt
     * treats it as divergence). */
    double (*loss_grad)(void *ctx, const float *w, const lopt_batch_view *b, float *grad);
    /* Optional. hv (nparams, overwritten) = H(w) v, the Hessian of the batch's loss
     * times v, exactly or to float accuracy (by hand, by the R-operator, or by
     * finite differences of gradients); grad (may be NULL) as in loss_grad.
     * Returns the loss. Needed by the rp and merged estimators (backpropagation
     * through the unroll): without it they are refused, es/pes/nres/fulles work. */
    double (*hvp)(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                  float *hv, float *grad);
    /* Optional. The fraction of the last loss_grad/hvp call's batch classified
     * correctly (NaN when it means nothing: regression). NULL: NaN. */
    double (*last_accuracy)(void *ctx);
    /* Optional. Releases ctx (once per object the factory made). */
    void (*free_ctx)(void *ctx);
};

/* Makes one task object: fills *spec (zeroed by the caller) and returns 0, or
 * returns -1 with a one-line reason in errbuf (then nothing is kept, free_ctx is
 * not called). user is the pointer given to lopt_task_register. */
typedef int (*lopt_task_factory)(void *user, lopt_task_spec *spec, char *errbuf,
                                 size_t errlen);

/* Registers a task under name (letters, digits, '-', '_', '.'; at most 63 bytes),
 * so that lopt_meta_train, lopt_train and everything else in the library that takes
 * a task name can create it. Refuses a name already taken (the built-ins included)
 * and a full registry (64 tasks). Not thread-safe: register before training.
 * Returns 0, or -1 with a reason. */
int lopt_task_register(const char *name,          /* the task's name */
                       const char *summary,       /* one line for listings; may be NULL */
                       lopt_task_factory factory, /* called once per task object */
                       void *user,                /* passed to factory */
                       char *errbuf, size_t errlen);
/* Removes a registered task (not a built-in). Returns 0, -1 if there is none. */
int lopt_task_unregister(const char *name);

/* Creates one task object through the registry and checks what the factory made
 * (sizes, callbacks, data), then releases it: a quick validation of a factory,
 * with the reason a meta-training run would fail on. Returns 0 or -1. */
int lopt_task_check(const char *name, char *errbuf, size_t errlen);

/* The N(0, 2/fan_in) initialisation of the built-in networks, for a task's init:
 * tensor by tensor, zeros where fan_in is 0; a pure function of seed. */
void lopt_init_he(const lopt_tensor_spec *tensors, int ntensors, uint64_t seed, float *w);

/* ==== training and meta-training a named task ==================================== */

/* One training run of a task from a fresh initialisation (what `lopt train` does). */
typedef struct {
    const char *task;            /* registered or built-in task name */
    const lopt_model *model;     /* the learned optimizer, or NULL for a hand-designed one */
    const char *opt;             /* model == NULL: "sgd", "momentum", "nesterov",
                                  * "rmsprop" or "adam" */
    float lr;                    /* hand-designed: learning rate (0: torch.optim's default) */
    float step_scale;            /* learned: step scale (0 means 1) */
    int64_t t_max;               /* learned: the horizon clamp (-1: none; 0: the default,
                                  * the file's horizon) */
    int64_t steps;               /* >= 1 */
    int64_t eval_every;          /* full-validation-split evaluation every E steps (0:
                                  * steps/20) */
    uint64_t seed;               /* instance, initialisation and data order */
    const char *log_csv;         /* write the curve (step,train_loss,valid_loss,time_s), or NULL */
    float *params_out;           /* (nparams) the final parameters, or NULL */
    void (*on_eval)(void *user, int64_t step, double train_loss, double valid_loss,
                    double valid_acc);   /* after each evaluation; may be NULL */
    void *user;
} lopt_train_settings;

typedef struct {
    double init_valid_loss;      /* before the first step */
    double final_train_loss;     /* mean minibatch loss over the last evaluation interval */
    double final_valid_loss, final_valid_acc;
    double test_loss, test_acc;  /* NaN where absent (no test split, regression) */
    int64_t diverged_at;         /* the step whose loss was not finite, or -1 */
    double time_s;               /* training wall-clock, evaluations excluded */
} lopt_train_report;

/* Trains; fills *report (may be NULL). A diverged run returns -1 with the reason
 * (and report->diverged_at); a bad name or setting returns -1 too. 0 on success. */
int lopt_train(const lopt_train_settings *s, lopt_train_report *report, char *errbuf,
               size_t errlen);

/* Meta-training (what `lopt meta-train` does). Zero and NULL fields take the
 * defaults shown; docs/design.md explains each. */
typedef struct {
    const char *task;            /* registered or built-in task name (required) */
    const char *estimator;       /* "es" (NULL), "pes", "nres", "fulles", or with an hvp
                                  * "rp", "merged" */
    const char *arch;            /* "paper" (NULL), "lo", "nominal" */
    const lopt_model *init;      /* warm start (same architecture as arch), or NULL */
    const char *outer_loss;      /* "valid" (NULL) or "train" */
    int K;                       /* truncation length (20) */
    int samples;                 /* antithetic pairs per outer step (4) */
    float sigma;                 /* perturbation scale (0.01) */
    float outer_lr;              /* Adam on the optimizer's weights (3e-3) */
    int64_t outer_steps;         /* (1000) */
    int64_t horizon;             /* inner steps per trajectory (1000) */
    uint64_t seed;               /* (0) */
    int threads;                 /* (0: all cores) */
    /* after each outer step; return non-zero to stop early (the model so far is
     * returned). May be NULL. */
    int (*on_step)(void *user, int64_t step, double outer_loss);
    void *user;
} lopt_meta_settings;

/* Meta-trains a learned optimizer for the task and returns it (free with
 * lopt_model_free; lopt_model_save writes it, its horizon and provenance
 * recorded). NULL with a reason on bad settings, an estimator that needs the
 * task's missing hvp, or the task's own failure. */
lopt_model *lopt_meta_train(const lopt_meta_settings *s, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
