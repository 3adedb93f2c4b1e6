/* tasks.c - the task registry (the built-ins and lopt_task_register's), the
 * adapter from a public lopt_task_spec to the library's lopt_task, batches,
 * whole-split evaluation and the shared initialisation (docs/design.md section 3).
 *
 * Every task goes through the same path: a factory fills a lopt_task_spec, the
 * spec is checked, and the lopt_task's callbacks forward to the spec's with a
 * lopt_batch_view built from the lopt_batch. The registry is a fixed table (no
 * allocation, nothing to free at exit), changed only on the main thread. */
#include <math.h>
#include <stdio.h>
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

typedef lopt_status (*builtin_fn)(lopt_task_spec *s, const lopt_task_opts *o, lopt_err *err);
static const builtin_fn builtins[] = {lopt_task_quadratic_spec, lopt_task_mlp_spec, lopt_task_cnn_spec};

#define REG_MAX 64
#define REG_NAME 64
#define REG_SUMMARY 160

typedef struct {
    char name[REG_NAME];
    char summary[REG_SUMMARY];
    lopt_task_factory factory;
    void *user;
} reg_entry;

static reg_entry reg[REG_MAX];
static int nreg;

static int builtin_index(const char *name)
{
    for (int i = 0; lopt_task_list[i].name; i++)
        if (strcmp(lopt_task_list[i].name, name) == 0) return i;
    return -1;
}

static reg_entry *reg_find(const char *name)
{
    for (int i = 0; i < nreg; i++)
        if (strcmp(reg[i].name, name) == 0) return &reg[i];
    return NULL;
}

int lopt_task_register(const char *name, const char *summary, lopt_task_factory factory,
                       void *user, char *errbuf, size_t errlen)
{
    if (!name || !factory)
        return lopt_report_msg(errbuf, errlen, "lopt_task_register: name or factory is NULL");
    size_t len = strlen(name);
    if (len == 0 || len >= REG_NAME)
        return lopt_report_msg(errbuf, errlen, "task name '%s': want 1..%d bytes", name,
                               REG_NAME - 1);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return lopt_report_msg(errbuf, errlen, "task name '%s': only letters, digits, "
                                   "'-', '_' and '.'", name);
    }
    if (builtin_index(name) >= 0 || reg_find(name))
        return lopt_report_msg(errbuf, errlen, "task '%s' is already registered", name);
    if (nreg == REG_MAX)
        return lopt_report_msg(errbuf, errlen, "the task registry is full (%d tasks)", REG_MAX);
    reg_entry *e = &reg[nreg++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->summary, sizeof e->summary, "%s", summary ? summary : "");
    e->factory = factory;
    e->user = user;
    return 0;
}

int lopt_task_unregister(const char *name)
{
    reg_entry *e = name ? reg_find(name) : NULL;
    if (!e) return -1;
    int i = (int)(e - reg);
    memmove(&reg[i], &reg[i + 1], (size_t)(nreg - i - 1) * sizeof *reg);
    nreg--;
    return 0;
}

int lopt_task_nth(int i, lopt_task_info *info)
{
    int nb = (int)(sizeof builtins / sizeof *builtins);
    if (i < 0) return 0;
    if (i < nb) {
        *info = lopt_task_list[i];
        return 1;
    }
    if (i - nb >= nreg) return 0;
    info->name = reg[i - nb].name;
    info->summary = reg[i - nb].summary;
    return 1;
}

/* ---- the adapter: lopt_task callbacks over the spec's ---------------------------- */

static lopt_batch_view view_of(const lopt_task *t, const lopt_batch *b)
{
    lopt_batch_view v = {b->split, b->seed, b->step, b->B, b->key, NULL, NULL, NULL};
    if (t->input > 0) {
        v.x = b->x;
        v.labels = b->y;
        v.targets = b->yt;
    }
    return v;
}

static void spec_init(lopt_task *t, uint64_t seed, float *w) { t->spec.init(t->spec.ctx, seed, w); }

static void spec_set_instance(lopt_task *t, uint64_t seed)
{
    t->spec.set_instance(t->spec.ctx, seed);
}

static double spec_loss_grad(lopt_task *t, const float *w, const lopt_batch *b, float *grad)
{
    lopt_batch_view v = view_of(t, b);
    return t->spec.loss_grad(t->spec.ctx, w, &v, grad);
}

static double spec_hvp(lopt_task *t, const float *w, const lopt_batch *b, const float *v,
                       float *hv, float *grad)
{
    lopt_batch_view bv = view_of(t, b);
    return t->spec.hvp(t->spec.ctx, w, &bv, v, hv, grad);
}

static double spec_accuracy(lopt_task *t)
{
    return t->spec.last_accuracy ? t->spec.last_accuracy(t->spec.ctx) : NAN;
}

static void spec_free(lopt_task *t)
{
    if (!t) return;
    if (t->spec.free_ctx) t->spec.free_ctx(t->spec.ctx);
    free(t->own_tensors);
    memset(t, 0, sizeof *t);
}

/* Checks a spec; the message names the task and what is wrong. */
static lopt_status spec_check(const lopt_task_spec *s, const char *name, lopt_err *err)
{
#define BAD(...) lopt_fail(err, LOPT_EUSAGE, __VA_ARGS__)
    if (!s->init || !s->loss_grad)
        return BAD("task '%s': init and loss_grad are required", name);
    if (s->nparams == 0) return BAD("task '%s': nparams is 0", name);
    if (s->ntensors < 1 || !s->tensors) return BAD("task '%s': no tensors", name);
    size_t sum = 0;
    for (int i = 0; i < s->ntensors; i++) {
        if (s->tensors[i].size == 0)
            return BAD("task '%s': tensor %d (%s) has size 0", name, i,
                       s->tensors[i].name ? s->tensors[i].name : "unnamed");
        if (s->tensors[i].fan_in < 0)
            return BAD("task '%s': tensor %d has a negative fan_in", name, i);
        sum += s->tensors[i].size;
    }
    if (sum != s->nparams)
        return BAD("task '%s': tensor sizes sum to %zu, nparams is %zu", name, sum, s->nparams);
    if (s->batch_size < 1) return BAD("task '%s': batch_size must be >= 1", name);
    if (s->input < 0 || s->ntargets < 0)
        return BAD("task '%s': negative input or ntargets", name);
    static const char *const split_name[3] = {"train", "valid", "test"};
    if (s->input == 0) {
        for (int k = 0; k < 3; k++)
            if (s->data[k].n != 0)
                return BAD("task '%s': in-memory data for split %s but input is 0", name,
                           split_name[k]);
        return LOPT_OK;
    }
    int labels = s->data[LOPT_SPLIT_TRAIN].labels != NULL;
    for (int k = 0; k < 3; k++) {
        const lopt_split_data *d = &s->data[k];
        if (d->n < 0) return BAD("task '%s': split %s has n < 0", name, split_name[k]);
        if (d->n == 0) {
            if (k != LOPT_SPLIT_TEST)
                return BAD("task '%s': in-memory data needs a %s split", name, split_name[k]);
            continue;
        }
        if (!d->x) return BAD("task '%s': split %s has no x", name, split_name[k]);
        if ((d->labels != NULL) != labels)
            return BAD("task '%s': labels in some splits and not in others", name);
        if (s->ntargets > 0 && !d->targets)
            return BAD("task '%s': ntargets is %d but split %s has no targets", name,
                       s->ntargets, split_name[k]);
    }
#undef BAD
    return LOPT_OK;
}

/* Turns a checked spec into t (which takes ownership of the spec's ctx). */
static void task_from_spec(lopt_task *t, const lopt_task_spec *s, const char *name)
{
    memset(t, 0, sizeof *t);
    t->spec = *s;
    t->name = name;
    t->n = s->nparams;
    t->ntensors = s->ntensors;
    t->own_tensors = lopt_xcalloc((size_t)s->ntensors, sizeof *t->own_tensors);
    size_t off = 0;
    for (int i = 0; i < s->ntensors; i++) {
        t->own_tensors[i].name = s->tensors[i].name ? s->tensors[i].name : "";
        t->own_tensors[i].offset = off;
        t->own_tensors[i].size = s->tensors[i].size;
        t->own_tensors[i].fan_in = s->tensors[i].fan_in;
        off += s->tensors[i].size;
    }
    t->spec.tensors = NULL;   /* the factory's array need not outlive creation */
    t->tensors = t->own_tensors;
    t->batch = s->batch_size;
    t->input = s->input;
    t->ctx = s->ctx;
    t->init = spec_init;
    t->set_instance = s->set_instance ? spec_set_instance : NULL;
    t->loss_grad = spec_loss_grad;
    t->hvp = s->hvp ? spec_hvp : NULL;
    t->last_accuracy = spec_accuracy;
    t->free = spec_free;
}

lopt_status lopt_task_create(lopt_task *t, const char *name, const lopt_task_opts *opts,
                             lopt_err *err)
{
    static const lopt_task_opts none = {0};
    if (!opts) opts = &none;
    lopt_threads_init();
    memset(t, 0, sizeof *t);
    lopt_task_spec s;
    memset(&s, 0, sizeof s);
    int b = builtin_index(name);
    const char *tname;
    if (b >= 0) {
        lopt_status st = builtins[b](&s, opts, err);
        if (st != LOPT_OK) return st;
        tname = lopt_task_list[b].name;
    } else {
        reg_entry *e = reg_find(name);
        if (!e) return lopt_fail(err, LOPT_EUSAGE, "unknown task '%s' (see `lopt tasks`)", name);
        char msg[512] = "";
        if (e->factory(e->user, &s, msg, sizeof msg) != 0)
            return lopt_fail(err, LOPT_EUSAGE, "task '%s': %s", name,
                             msg[0] ? msg : "its factory failed");
        tname = e->name;
        if (opts->batch > 0 && opts->batch != s.batch_size) {
            if (s.free_ctx) s.free_ctx(s.ctx);
            return lopt_fail(err, LOPT_EUSAGE, "task '%s' sets its own batch size (%d)", name,
                             s.batch_size);
        }
    }
    lopt_status st = spec_check(&s, tname, err);
    if (st != LOPT_OK) {
        if (s.free_ctx) s.free_ctx(s.ctx);
        return st;
    }
    task_from_spec(t, &s, tname);
    return LOPT_OK;
}

int lopt_task_check(const char *name, char *errbuf, size_t errlen)
{
    if (!name) return lopt_report_msg(errbuf, errlen, "lopt_task_check: name is NULL");
    lopt_task t;
    lopt_err err = {0};
    if (lopt_task_create(&t, name, NULL, &err) != LOPT_OK) return lopt_report(errbuf, errlen, &err);
    t.free(&t);
    return 0;
}

/* ---- batches --------------------------------------------------------------------- */

/* the in-memory splits, NULL for a task that batches itself */
static const lopt_split_data *task_data(const lopt_task *t)
{
    return t->input > 0 ? t->spec.data : NULL;
}

void lopt_batch_alloc(lopt_batch *b, const lopt_task *t, int capacity)
{
    memset(b, 0, sizeof *b);
    b->capacity = capacity;
    for (int i = 0; i < LOPT_BATCH_ORDERS; i++) b->sampler_split[i] = -1;
    if (t->input > 0) {
        b->x = lopt_floats((size_t)capacity * (size_t)t->input);
        if (task_data(t)[LOPT_SPLIT_TRAIN].labels)
            b->y = lopt_xcalloc((size_t)capacity, sizeof(int32_t));
        if (t->spec.ntargets > 0)
            b->yt = lopt_floats((size_t)capacity * (size_t)t->spec.ntargets);
    }
}

void lopt_batch_free(lopt_batch *b)
{
    if (!b) return;
    lopt_free(b->x);
    free(b->y);
    lopt_free(b->yt);
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

/* Copies examples idx[0..B) of split d into the batch. */
static void gather(const lopt_task *t, const lopt_split_data *d, const int32_t *idx, int B,
                   lopt_batch *b)
{
    size_t D = (size_t)t->input, T = (size_t)t->spec.ntargets;
    for (int i = 0; i < B; i++) {
        LOPT_ASSERT(idx[i] >= 0 && idx[i] < d->n);
        memcpy(b->x + (size_t)i * D, d->x + (size_t)idx[i] * D, D * sizeof(float));
        if (b->y) b->y[i] = d->labels[idx[i]];
        if (b->yt) memcpy(b->yt + (size_t)i * T, d->targets + (size_t)idx[i] * T, T * sizeof(float));
    }
}

void lopt_task_sample(const lopt_task *t, lopt_batch *b, lopt_split split,
                      uint64_t seed, int64_t step)
{
    b->B = t->batch < b->capacity ? t->batch : b->capacity;
    /* the noise key distinguishes split, seed and step like the data order does */
    b->key = lopt_rng_u64(seed, LOPT_STREAM_NOISE, (uint64_t)step * 4 + (uint64_t)split);
    b->split = split;
    b->seed = seed;
    b->step = step;
    if (!task_data(t)) return;
    const lopt_split_data *d = &task_data(t)[split];
    LOPT_ASSERT(d->n > 0);
    lopt_sampler *smp = batch_sampler(b, (int)split, seed, d->n);
    int32_t idx[b->B];
    lopt_sampler_batch(smp, step, idx);
    gather(t, d, idx, b->B, b);
}

void lopt_task_eval(lopt_task *t, const float *w, lopt_split split, double *loss,
                    double *acc)
{
    if (!task_data(t)) {
        /* without in-memory data: one call, B == 0, "the whole split" (quadratic:
         * the exact loss, no gradient noise) */
        lopt_batch b;
        lopt_batch_alloc(&b, t, 1);
        b.B = 0;
        b.key = 0;
        b.split = split;
        *loss = t->loss_grad(t, w, &b, NULL);
        *acc = t->last_accuracy(t);
        lopt_batch_free(&b);
        return;
    }
    const lopt_split_data *d = &task_data(t)[split];
    if (d->n == 0) {   /* an absent (test) split */
        *loss = *acc = NAN;
        return;
    }
    lopt_batch b;
    lopt_batch_alloc(&b, t, t->batch);
    b.split = split;
    double sum_loss = 0.0, sum_acc = 0.0;
    int32_t idx[t->batch];
    for (int start = 0; start < d->n; start += t->batch) {
        int B = d->n - start < t->batch ? d->n - start : t->batch;
        for (int i = 0; i < B; i++) idx[i] = start + i;
        gather(t, d, idx, B, &b);
        b.B = B;
        sum_loss += B * t->loss_grad(t, w, &b, NULL);
        sum_acc += B * t->last_accuracy(t);
    }
    *loss = sum_loss / d->n;
    *acc = sum_acc / d->n;
    lopt_batch_free(&b);
}

/* ---- initialisation -------------------------------------------------------------- */

static void init_tensor(float *w, size_t off, size_t size, int fan_in, uint64_t seed)
{
    if (fan_in > 0)
        lopt_rng_fill_normal(w + off, size, sqrtf(2.0f / (float)fan_in), seed, LOPT_STREAM_INIT,
                             off);
    else
        memset(w + off, 0, size * sizeof(float));
}

void lopt_init_he(const lopt_tensor_spec *tensors, int ntensors, uint64_t seed, float *w)
{
    size_t off = 0;
    for (int i = 0; i < ntensors; i++) {
        init_tensor(w, off, tensors[i].size, tensors[i].fan_in, seed);
        off += tensors[i].size;
    }
}

void lopt_task_init_he(const lopt_task *t, uint64_t seed, float *w)
{
    for (int i = 0; i < t->ntensors; i++)
        init_tensor(w, t->tensors[i].offset, t->tensors[i].size, t->tensors[i].fan_in, seed);
}
