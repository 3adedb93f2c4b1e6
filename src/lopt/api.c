/* api.c - the public C API for using a learned optimizer (include/lopt.h): models
 * (.lopt files), and lopt_opt, the learned optimizer (mlp_lopt.h) over a program's
 * tensors with torch.optim's habits: parameter groups with a step scale and
 * decoupled weight decay, frozen tensors, tensors anywhere in memory, state that
 * saves and restores, and the clamp of the time features at the horizon.
 * Meta-training and training a named task (lopt_meta_train, lopt_train) are in
 * src/eval/api_run.c, past the layers they use.
 *
 * Per-tensor independence: the learned optimizer normalises its features per
 * tensor and applies its MLP per parameter, so a tensor's update depends on that
 * tensor's parameters, gradient and momenta and on the shared step count only.
 * That is why frozen tensors can simply be left out of the optimizer's vector,
 * a skipped tensor (no gradient this step) can be computed and then discarded,
 * and groups need nothing but per-tensor options.
 *
 * Robustness (docs/reliability.md): the one constructor, lopt_opt_new_groups,
 * checks the sizes (their sum within SIZE_MAX, at most LOPT_LEARNED_MAX_PARAMS
 * updated parameters) and every allocation, and returns NULL with a reason instead
 * of aborting; all the state is allocated there, so a step allocates nothing (but
 * a few bytes per bad element when a gradient has NaN/inf). The non-finite rule
 * itself is the learned optimizer's (lopt_learned_update / lopt_learned_apply in
 * mlp_lopt.c), shared with `lopt train`; this file only adds up its count.
 *
 * The state blob (lopt_opt_save_state), little-endian, every field a u64 unless
 * marked:
 *   magic "LOPTSTAT", version (1), CRC-32 of the model's theta, R (state rows per
 *   parameter: nmom, plus 1 for the Adam direction), ntensors, ngroups, per tensor:
 *   size, group, frozen; per group: f32 step_scale, f32 weight_decay; t, t_max;
 *   f32 state (R, n active parameters); CRC-32 of everything before it.
 * The count of skipped non-finite elements (lopt_opt_nonfinite) is not in it: it is
 * a diagnostic of the gradients this process fed, not state that shapes a later
 * update, so a resumed run is bit-identical without it and the layout stays at
 * version 1 (a load leaves the count as it is).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "core/ser.h"
#include "lopt/api_impl.h"

#define STATE_MAGIC "LOPTSTAT"
#define STATE_VERSION 1

typedef struct {
    size_t size;       /* elements */
    size_t flat_off;   /* offset in the flat layout of every tensor */
    int group;
    int active;        /* index into the active tensors, -1: frozen */
} opt_tensor;

struct lopt_opt {
    lopt_arch arch;
    float *theta;             /* (np) */
    size_t np;
    uint32_t theta_crc;
    int ntensors, ngroups, nact;
    opt_tensor *tens;         /* (ntensors) */
    lopt_group_opts *gopts;   /* (ngroups) */
    lopt_tensor *act;         /* (nact) views of the active vector, in order */
    int *act_src;             /* (nact) the tensor index of each active tensor */
    size_t n_flat, n;         /* all parameters; the active ones */
    int rows;                 /* state rows per parameter (lopt_arch_state_rows) */
    float *m;                 /* (rows, n) momenta, and Adam's second moment */
    float *delta;             /* (n) */
    float *wbuf, *gbuf;       /* (n) gathered parameters and gradients; gbuf is also
                               * the non-finite rule's scratch */
    float *msave;             /* (rows, n) state of skipped tensors */
    unsigned char *skip;      /* (nact) this step: no gradient */
    float **pview;            /* (ntensors) lopt_opt_step's views of a flat vector */
    const float **gview;      /* (ntensors) */
    lopt_mlp_work wk;
    int64_t t, t_max, horizon;
    uint64_t nonfinite;       /* elements skipped since creation or the last reset */
};

/* ---- models ------------------------------------------------------------------- */

lopt_model *lopt_model_make(const lopt_arch *a, const float *theta, const lopt_provenance *p)
{
    lopt_model *m = lopt_xcalloc(1, sizeof *m);
    m->arch = *a;
    size_t np = lopt_arch_nparams(a);
    m->theta = lopt_floats(np);
    memcpy(m->theta, theta, np * sizeof(float));
    if (p) m->prov = *p;
    return m;
}

lopt_model *lopt_model_load(const char *path, char *errbuf, size_t errlen)
{
    if (!path) {
        lopt_report_msg(errbuf, errlen, "lopt_model_load: path is NULL");
        return NULL;
    }
    lopt_model *m = lopt_try_calloc(1, sizeof *m);
    if (!m) {
        lopt_report_msg(errbuf, errlen, "lopt_model_load: out of memory");
        return NULL;
    }
    lopt_err err = {0};
    if (lopt_file_read(path, &m->arch, &m->theta, &m->prov, &err) != LOPT_OK) {
        lopt_report(errbuf, errlen, &err);
        free(m);
        return NULL;
    }
    return m;
}

int lopt_model_save(const lopt_model *m, const char *path, char *errbuf, size_t errlen)
{
    if (!m || !path) return lopt_report_msg(errbuf, errlen, "lopt_model_save: model or path is NULL");
    lopt_err err = {0};
    if (lopt_file_write(path, &m->arch, m->theta, &m->prov, &err) != LOPT_OK)
        return lopt_report(errbuf, errlen, &err);
    return 0;
}

void lopt_model_free(lopt_model *m)
{
    if (!m) return;
    lopt_free(m->theta);
    free(m);
}

const char *lopt_model_describe(const lopt_model *m, char *buf, size_t buflen)
{
    if (!buf || buflen == 0) return buf;
    const lopt_provenance *p = &m->prov;
    const lopt_arch *a = &m->arch;
    char form[160] = "mlp-lopt";
    if (a->form == LOPT_FORM_NOMINAL) {
        char dir[64] = "normalised gradient";
        if (a->nominal_dir == LOPT_NOMINAL_MOM)
            snprintf(dir, sizeof dir, "normalised momentum (beta %g)", a->beta[a->nominal_mom]);
        if (a->nominal_dir == LOPT_NOMINAL_ADAM)
            snprintf(dir, sizeof dir, "adam (beta1 %g)", a->beta[a->nominal_mom]);
        snprintf(form, sizeof form, "nominal lopt (%s at step %g x exp(sched(t)), "
                 "plus an MLP residual)", dir, a->nominal_step);
    }
    char horizon[48] = "";
    if (p->horizon > 0)
        snprintf(horizon, sizeof horizon, ", horizon %llu", (unsigned long long)p->horizon);
    if (p->outer_steps == 0)
        snprintf(buf, buflen, "%s: %d momenta, %d time features, %d x %d hidden, "
                 "%zu weights; untrained%s", form, a->nmom, a->ntime, a->nhidden, a->hidden,
                 lopt_arch_nparams(a), horizon);
    else
        snprintf(buf, buflen, "%s: %d momenta, %d time features, %d x %d hidden, "
                 "%zu weights; meta-trained on %s with %s (%s loss), %llu outer steps%s",
                 form, a->nmom, a->ntime, a->nhidden, a->hidden, lopt_arch_nparams(a),
                 p->task[0] ? p->task : "?", p->estimator[0] ? p->estimator : "?",
                 p->outer_loss[0] ? p->outer_loss : "?", (unsigned long long)p->outer_steps,
                 horizon);
    return buf;
}

int lopt_model_info(const lopt_model *m, lopt_info *info)
{
    memset(info, 0, sizeof *info);
    const lopt_arch *a = &m->arch;
    const lopt_provenance *p = &m->prov;
    info->file_version = p->file_version ? (int)p->file_version : (int)LOPT_FILE_VERSION;
    snprintf(info->form, sizeof info->form, "%s", a->form == LOPT_FORM_NOMINAL ? "nominal" : "mlp");
    info->nmom = a->nmom;
    info->ntime = a->ntime;
    info->nhidden = a->nhidden;
    info->hidden = a->hidden;
    info->nweights = lopt_arch_nparams(a);
    info->horizon = (int64_t)p->horizon;
    snprintf(info->task, sizeof info->task, "%s", p->task);
    snprintf(info->estimator, sizeof info->estimator, "%s", p->estimator);
    snprintf(info->outer_loss, sizeof info->outer_loss, "%s", p->outer_loss);
    info->outer_steps = (int64_t)p->outer_steps;
    return 0;
}

int lopt_model_write_initial(const char *path, const char *preset, uint64_t seed,
                             char *errbuf, size_t errlen)
{
    if (!path || !preset)
        return lopt_report_msg(errbuf, errlen, "lopt_model_write_initial: path or preset is NULL");
    lopt_err err = {0};
    lopt_arch a;
    if (lopt_arch_preset(&a, preset, &err) != LOPT_OK) return lopt_report(errbuf, errlen, &err);
    float *theta = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_init(&a, seed, theta);
    lopt_provenance p;
    memset(&p, 0, sizeof p);
    lopt_provenance_set(p.estimator, sizeof p.estimator, "none");
    snprintf(p.note, sizeof p.note, "untrained: preset %s, theta initialised with seed %llu",
             preset, (unsigned long long)seed);
    lopt_status st = lopt_file_write(path, &a, theta, &p, &err);
    lopt_free(theta);
    if (st != LOPT_OK) return lopt_report(errbuf, errlen, &err);
    return 0;
}

/* ---- optimizers: construction ------------------------------------------------- */

void lopt_group_opts_default(lopt_group_opts *o)
{
    o->step_scale = 1.0f;
    o->weight_decay = 0.0f;
    o->frozen = 0;
}

static int check_opts(const lopt_group_opts *o, int g, char *errbuf, size_t errlen)
{
    if (!(isfinite(o->step_scale) && o->step_scale >= 0))
        return lopt_report_msg(errbuf, errlen, "group %d: step_scale %g must be finite and >= 0",
                               g, o->step_scale);
    if (!(isfinite(o->weight_decay) && o->weight_decay >= 0))
        return lopt_report_msg(errbuf, errlen, "group %d: weight_decay %g must be finite and >= 0",
                               g, o->weight_decay);
    if (o->frozen != 0 && o->frozen != 1)
        return lopt_report_msg(errbuf, errlen, "group %d: frozen must be 0 or 1", g);
    return 0;
}

void lopt_opt_free(lopt_opt *o)
{
    if (!o) return;
    lopt_mlp_work_free(&o->wk);
    float *fl[] = {o->theta, o->m, o->delta, o->wbuf, o->gbuf, o->msave};
    for (size_t i = 0; i < sizeof fl / sizeof *fl; i++) lopt_free(fl[i]);
    free(o->tens);
    free(o->gopts);
    free(o->act);
    free(o->act_src);
    free(o->skip);
    free(o->pview);
    free(o->gview);
    free(o);
}

/* n * k floats, NULL if that overflows or the allocation fails */
static float *floats_nk(size_t n, size_t k)
{
    return k && n > SIZE_MAX / k ? NULL : lopt_try_floats(n * k);
}

/* The groups' counts, checked: tensors and parameters in all and those updated
 * (not frozen). Returns 0, or -1 with the reason in errbuf. */
typedef struct {
    int ntensors, nact;
    size_t n_flat, n_act;
} group_counts;

static int count_groups(const lopt_param_group *groups, int ngroups, group_counts *c,
                        char *errbuf, size_t errlen)
{
    *c = (group_counts){0};
    for (int g = 0; g < ngroups; g++) {
        const lopt_param_group *G = &groups[g];
        if (!G->tensor_sizes || G->ntensors < 1) {
            lopt_report_msg(errbuf, errlen, "group %d: %s", g, !G->tensor_sizes
                            ? "tensor_sizes is NULL" : "ntensors must be >= 1");
            return -1;
        }
        if (check_opts(&G->opts, g, errbuf, errlen) != 0) return -1;
        if (G->ntensors > (1 << 24) - c->ntensors) {
            lopt_report_msg(errbuf, errlen, "too many tensors");
            return -1;
        }
        for (int i = 0; i < G->ntensors; i++) {
            size_t sz = G->tensor_sizes[i];
            if (sz == 0) {
                lopt_report_msg(errbuf, errlen, "group %d: tensor %d has size 0", g, i);
                return -1;
            }
            if (sz > SIZE_MAX - c->n_flat) {
                lopt_report_msg(errbuf, errlen, "group %d: the tensor sizes overflow size_t "
                                "(their sum passes SIZE_MAX at tensor %d)", g, i);
                return -1;
            }
            c->n_flat += sz;
            if (!G->opts.frozen) c->n_act += sz;
        }
        c->ntensors += G->ntensors;
        if (!G->opts.frozen) c->nact += G->ntensors;
    }
    if (c->n_act > LOPT_LEARNED_MAX_PARAMS) {
        lopt_report_msg(errbuf, errlen, "%zu parameters to update: a learned optimizer "
                        "updates at most %zu", c->n_act, (size_t)LOPT_LEARNED_MAX_PARAMS);
        return -1;
    }
    return 0;
}

/* Every buffer of the optimizer, sized by the counts; NULL (with the memory it would
 * have needed in errbuf) if one cannot be had. */
static lopt_opt *alloc_opt(const lopt_model *model, int ngroups, const group_counts *c,
                           char *errbuf, size_t errlen)
{
    const int R = lopt_arch_state_rows(&model->arch);
    const size_t T = (size_t)c->ntensors, n = c->n_act;
    lopt_opt *o = lopt_try_calloc(1, sizeof *o);
    int ok = o != NULL;
    if (ok) {
        o->arch = model->arch;
        o->np = lopt_arch_nparams(&o->arch);
        o->rows = R;
        o->ntensors = c->ntensors;
        o->ngroups = ngroups;
        ok = (o->theta = lopt_try_floats(o->np)) &&
             (o->tens = lopt_try_calloc(T, sizeof *o->tens)) &&
             (o->gopts = lopt_try_calloc((size_t)ngroups, sizeof *o->gopts)) &&
             (o->act = lopt_try_calloc(T, sizeof *o->act)) &&
             (o->act_src = lopt_try_calloc(T, sizeof *o->act_src)) &&
             (o->skip = lopt_try_calloc(T, 1)) &&
             (o->pview = lopt_try_calloc(T, sizeof *o->pview)) &&
             (o->gview = lopt_try_calloc(T, sizeof *o->gview)) &&
             (o->m = floats_nk(n, (size_t)R)) && (o->msave = floats_nk(n, (size_t)R)) &&
             (o->delta = lopt_try_floats(n)) && (o->wbuf = lopt_try_floats(n)) &&
             (o->gbuf = lopt_try_floats(n)) &&
             lopt_mlp_work_try_init(&o->wk, &o->arch, n, c->nact) == LOPT_OK;
    }
    if (ok) return o;
    lopt_opt_free(o);
    /* m and msave (R rows each), delta, wbuf, gbuf, and the MLP's work space */
    double gb = ((double)lopt_mlp_work_bytes(&model->arch, n) +
                 (2.0 * R + 3.0) * (double)n * sizeof(float)) / 1e9;
    lopt_report_msg(errbuf, errlen, "out of memory: the learned optimizer's state for "
                    "%zu parameters needs about %.3g GB", n, gb);
    return NULL;
}

/* Each tensor's place in the flat vector of all parameters and, if updated, in the
 * packed vector of the updated ones (the learned optimizer's tensors) */
static void lay_out_tensors(lopt_opt *o, const lopt_param_group *groups, int ngroups)
{
    int k = 0;
    for (int g = 0; g < ngroups; g++) {
        o->gopts[g] = groups[g].opts;
        for (int i = 0; i < groups[g].ntensors; i++, k++) {
            opt_tensor *t = &o->tens[k];
            t->size = groups[g].tensor_sizes[i];
            t->flat_off = o->n_flat;
            t->group = g;
            t->active = groups[g].opts.frozen ? -1 : o->nact++;
            o->n_flat += t->size;
        }
    }
    for (int i = 0; i < o->ntensors; i++) {
        opt_tensor *t = &o->tens[i];
        if (t->active < 0) continue;
        o->act[t->active].name = "";
        o->act[t->active].offset = o->n;
        o->act[t->active].size = t->size;
        o->act_src[t->active] = i;
        o->n += t->size;
    }
}

/* The one constructor: lopt_opt_new and lopt_opt_new2 are its one-group case. */
lopt_opt *lopt_opt_new_groups(const lopt_model *model, const lopt_param_group *groups,
                              int ngroups, char *errbuf, size_t errlen)
{
    if (!model || !groups || ngroups < 1) {
        lopt_report_msg(errbuf, errlen, "lopt_opt_new_groups: %s", !model ? "model is NULL"
                        : !groups ? "groups is NULL" : "ngroups must be >= 1");
        return NULL;
    }
    group_counts c;
    if (count_groups(groups, ngroups, &c, errbuf, errlen) != 0) return NULL;
    lopt_opt *o = alloc_opt(model, ngroups, &c, errbuf, errlen);
    if (!o) return NULL;
    memcpy(o->theta, model->theta, o->np * sizeof(float));
    o->theta_crc = lopt_crc32(o->theta, o->np * sizeof(float));
    lay_out_tensors(o, groups, ngroups);
    LOPT_ASSERT(o->nact == c.nact && o->n == c.n_act && o->n_flat == c.n_flat);
    o->horizon = model->prov.horizon <= (uint64_t)INT64_MAX ? (int64_t)model->prov.horizon : 0;
    o->t_max = o->horizon;
    return o;
}

lopt_opt *lopt_opt_new2(const lopt_model *model, const size_t *tensor_sizes, int ntensors,
                        char *errbuf, size_t errlen)
{
    if (!tensor_sizes || ntensors < 1) {
        lopt_report_msg(errbuf, errlen, "lopt_opt_new: %s", !tensor_sizes
                        ? "tensor_sizes is NULL" : "ntensors must be >= 1");
        return NULL;
    }
    lopt_param_group g = {tensor_sizes, ntensors, {1.0f, 0.0f, 0}};
    return lopt_opt_new_groups(model, &g, 1, errbuf, errlen);
}

lopt_opt *lopt_opt_new(const lopt_model *model, const size_t *tensor_sizes, int ntensors)
{
    return lopt_opt_new2(model, tensor_sizes, ntensors, NULL, 0);
}

/* ---- groups, counters, the clamp ----------------------------------------------- */

int lopt_opt_set_group(lopt_opt *o, int group, const lopt_group_opts *opts, char *errbuf,
                       size_t errlen)
{
    if (group < 0 || group >= o->ngroups)
        return lopt_report_msg(errbuf, errlen, "group %d out of range (%d groups)", group,
                               o->ngroups);
    if (check_opts(opts, group, errbuf, errlen) != 0) return -1;
    if (opts->frozen != o->gopts[group].frozen)
        return lopt_report_msg(errbuf, errlen, "group %d: frozen is fixed at creation "
                               "(a frozen group has no optimizer state)", group);
    o->gopts[group] = *opts;
    return 0;
}

int lopt_opt_get_group(const lopt_opt *o, int group, lopt_group_opts *opts)
{
    if (group < 0 || group >= o->ngroups) return -1;
    *opts = o->gopts[group];
    return 0;
}

int lopt_opt_ngroups(const lopt_opt *o) { return o->ngroups; }
int lopt_opt_ntensors(const lopt_opt *o) { return o->ntensors; }
size_t lopt_opt_nparams(const lopt_opt *o) { return o->n_flat; }
int64_t lopt_opt_steps(const lopt_opt *o) { return o->t; }
void lopt_opt_set_t_max(lopt_opt *o, int64_t t_max) { o->t_max = t_max > 0 ? t_max : 0; }
int64_t lopt_opt_t_max(const lopt_opt *o) { return o->t_max; }
int64_t lopt_opt_horizon(const lopt_opt *o) { return o->horizon; }
int lopt_opt_past_horizon(const lopt_opt *o) { return o->horizon > 0 && o->t > o->horizon; }
uint64_t lopt_opt_nonfinite(const lopt_opt *o) { return o->nonfinite; }

void lopt_opt_reset(lopt_opt *o)
{
    memset(o->m, 0, (size_t)o->rows * o->n * sizeof(float));
    o->t = 0;
    o->nonfinite = 0;
}

/* ---- steps ----------------------------------------------------------------------- */

/* delta (n) from the active vectors w, g under the non-finite rule (NaN where an
 * element is to be left alone); advances the state, except that of skipped tensors
 * (o->skip), which is restored. g may be o->gbuf, the rule's scratch. */
static void compute_update(lopt_opt *o, const float *w, const float *g, int any_skip)
{
    if (o->nact == 0) return;
    const size_t R = (size_t)o->rows, n = o->n;
    if (any_skip)
        for (int a = 0; a < o->nact; a++)
            if (o->skip[a])
                for (size_t k = 0; k < R; k++)
                    memcpy(o->msave + k * n + o->act[a].offset, o->m + k * n + o->act[a].offset,
                           o->act[a].size * sizeof(float));
    /* past t_max the time features see t_max: the optimizer keeps doing what it did
     * at the end of the runs it was meta-trained on */
    lopt_learned_update(&o->wk, o->theta, o->act, o->nact, w, g, o->m,
                        lopt_learned_time(o->t, o->t_max), o->delta, o->gbuf);
    if (any_skip)
        for (int a = 0; a < o->nact; a++)
            if (o->skip[a])
                for (size_t k = 0; k < R; k++)
                    memcpy(o->m + k * n + o->act[a].offset, o->msave + k * n + o->act[a].offset,
                           o->act[a].size * sizeof(float));
}

/* active tensor a's update from w into out (out may be w): its group's step scale
 * and decoupled decay (lopt_learned_apply), the elements the rule skips counted */
static void apply(lopt_opt *o, int a, float *out, const float *w)
{
    const lopt_group_opts *go = &o->gopts[o->tens[o->act_src[a]].group];
    o->nonfinite += lopt_learned_apply(out, w, o->delta + o->act[a].offset, o->act[a].size,
                                       go->step_scale, go->weight_decay);
}

void lopt_opt_step_tensors(lopt_opt *o, float *const *params, const float *const *grads)
{
    LOPT_ASSERT(o && params && grads);
    int any_skip = 0;
    for (int a = 0; a < o->nact; a++) {
        int i = o->act_src[a];
        size_t off = o->act[a].offset, sz = o->act[a].size;
        o->skip[a] = grads[i] == NULL;
        if (o->skip[a]) {
            any_skip = 1;
            memset(o->wbuf + off, 0, sz * sizeof(float));
            memset(o->gbuf + off, 0, sz * sizeof(float));
            continue;
        }
        LOPT_ASSERT(params[i]);
        memcpy(o->wbuf + off, params[i], sz * sizeof(float));
        memcpy(o->gbuf + off, grads[i], sz * sizeof(float));
    }
    compute_update(o, o->wbuf, o->gbuf, any_skip);
    for (int a = 0; a < o->nact; a++)
        if (!o->skip[a]) apply(o, a, params[o->act_src[a]], o->wbuf + o->act[a].offset);
    o->t++;
}

void lopt_opt_step(lopt_opt *o, float *params, const float *grads)
{
    LOPT_ASSERT(o && params && grads);
    if (o->n == o->n_flat) {
        /* nothing frozen: the flat vector is the optimizer's own, no copies */
        memset(o->skip, 0, (size_t)o->ntensors);
        compute_update(o, params, grads, 0);
        for (int a = 0; a < o->nact; a++) {
            float *p = params + o->act[a].offset;
            apply(o, a, p, p);
        }
        o->t++;
        return;
    }
    for (int i = 0; i < o->ntensors; i++) {
        o->pview[i] = params + o->tens[i].flat_off;
        o->gview[i] = grads + o->tens[i].flat_off;
    }
    lopt_opt_step_tensors(o, o->pview, o->gview);
}

/* ---- state ----------------------------------------------------------------------- */

size_t lopt_opt_state_size(const lopt_opt *o)
{
    return 8 + 8 * 5 + 24 * (size_t)o->ntensors + 8 * (size_t)o->ngroups + 16 +
           4 * (size_t)o->rows * o->n + 8;
}

static void state_encode(const lopt_opt *o, ser_out *out)
{
    ser_bytes(out, STATE_MAGIC, 8);
    ser_u64(out, STATE_VERSION);
    ser_u64(out, o->theta_crc);
    ser_u64(out, (uint64_t)o->rows);
    ser_u64(out, (uint64_t)o->ntensors);
    ser_u64(out, (uint64_t)o->ngroups);
    for (int i = 0; i < o->ntensors; i++) {
        ser_u64(out, o->tens[i].size);
        ser_u64(out, (uint64_t)o->tens[i].group);
        ser_u64(out, o->tens[i].active < 0 ? 1u : 0u);
    }
    for (int g = 0; g < o->ngroups; g++) {
        ser_f32s(out, &o->gopts[g].step_scale, 1);
        ser_f32s(out, &o->gopts[g].weight_decay, 1);
    }
    ser_u64(out, (uint64_t)o->t);
    ser_u64(out, (uint64_t)o->t_max);
    ser_f32s(out, o->m, (size_t)o->rows * o->n);
    ser_u64(out, lopt_crc32(out->p, out->len));
}

size_t lopt_opt_save_state(const lopt_opt *o, void *buf, size_t cap, char *errbuf,
                           size_t errlen)
{
    size_t need = lopt_opt_state_size(o);
    if (!buf || cap < need) {
        lopt_report_msg(errbuf, errlen, "lopt_opt_save_state: the state needs %zu bytes, the "
                        "buffer has %zu", need, buf ? cap : 0);
        return 0;
    }
    ser_out out = {0};
    state_encode(o, &out);
    LOPT_ASSERT(out.len == need);
    memcpy(buf, out.p, need);
    free(out.p);
    return need;
}

int lopt_opt_load_state(lopt_opt *o, const void *buf, size_t len, char *errbuf, size_t errlen)
{
    const unsigned char *p = buf;
    if (!buf || len < 16 || memcmp(p, STATE_MAGIC, 8) != 0)
        return lopt_report_msg(errbuf, errlen, "not a lopt optimizer state");
    if (len != lopt_opt_state_size(o))
        return lopt_report_msg(errbuf, errlen, "optimizer state of %zu bytes, this optimizer's "
                               "is %zu (truncated, or another layout)", len,
                               lopt_opt_state_size(o));
    ser_in crc_in = {p + len - 8, 8, 0, 0};
    if (ser_get_u64(&crc_in) != lopt_crc32(p, len - 8))
        return lopt_report_msg(errbuf, errlen, "corrupt optimizer state (checksum mismatch)");
    ser_in in = {p, len - 8, 8, 0};
    if (ser_get_u64(&in) != STATE_VERSION)
        return lopt_report_msg(errbuf, errlen, "unsupported optimizer state version");
    if (ser_get_u64(&in) != o->theta_crc)
        return lopt_report_msg(errbuf, errlen, "the state was saved from another learned "
                               "optimizer (different weights)");
    if (ser_get_u64(&in) != (uint64_t)o->rows || ser_get_u64(&in) != (uint64_t)o->ntensors ||
        ser_get_u64(&in) != (uint64_t)o->ngroups)
        return lopt_report_msg(errbuf, errlen, "the state has another number of state rows, "
                               "tensors or groups");
    for (int i = 0; i < o->ntensors; i++) {
        uint64_t size = ser_get_u64(&in), group = ser_get_u64(&in), frozen = ser_get_u64(&in);
        if (size != o->tens[i].size || group != (uint64_t)o->tens[i].group ||
            frozen != (o->tens[i].active < 0 ? 1u : 0u))
            return lopt_report_msg(errbuf, errlen, "the state's tensor %d differs (size, group "
                                   "or frozen) from this optimizer's", i);
    }
    const size_t nm = (size_t)o->rows * o->n;
    lopt_group_opts *go = lopt_try_calloc((size_t)o->ngroups, sizeof *go);
    float *m = lopt_try_floats(nm);
    if (!go || !m) {
        free(go);
        lopt_free(m);
        return lopt_report_msg(errbuf, errlen, "lopt_opt_load_state: out of memory");
    }
    for (int g = 0; g < o->ngroups; g++) {
        ser_get_f32s(&in, &go[g].step_scale, 1);
        ser_get_f32s(&in, &go[g].weight_decay, 1);
        go[g].frozen = o->gopts[g].frozen;
        if (check_opts(&go[g], g, errbuf, errlen) != 0) {
            free(go);
            lopt_free(m);
            return -1;
        }
    }
    int64_t t = (int64_t)ser_get_u64(&in), t_max = (int64_t)ser_get_u64(&in);
    if (t < 0 || t_max < 0 || in.bad) {
        free(go);
        lopt_free(m);
        return lopt_report_msg(errbuf, errlen, "invalid optimizer state");
    }
    ser_get_f32s(&in, m, nm);
    if (in.bad || in.pos != in.len) {
        free(go);
        lopt_free(m);
        return lopt_report_msg(errbuf, errlen, "invalid optimizer state");
    }
    memcpy(o->gopts, go, (size_t)o->ngroups * sizeof *go);
    memcpy(o->m, m, nm * sizeof(float));
    o->t = t;
    o->t_max = t_max;
    free(go);
    lopt_free(m);
    return 0;
}

int lopt_opt_save_state_file(const lopt_opt *o, const char *path, char *errbuf, size_t errlen)
{
    if (!path) return lopt_report_msg(errbuf, errlen, "lopt_opt_save_state_file: path is NULL");
    ser_out out = {0};
    state_encode(o, &out);
    lopt_err err = {0};
    lopt_status st = lopt_write_atomic(path, out.p, out.len, &err);
    free(out.p);
    return st == LOPT_OK ? 0 : lopt_report(errbuf, errlen, &err);
}

int lopt_opt_load_state_file(lopt_opt *o, const char *path, char *errbuf, size_t errlen)
{
    if (!path) return lopt_report_msg(errbuf, errlen, "lopt_opt_load_state_file: path is NULL");
    unsigned char *data;
    size_t len;
    lopt_err err = {0};
    if (lopt_read_file(path, &data, &len, &err) != LOPT_OK) return lopt_report(errbuf, errlen, &err);
    char msg[512];
    int r = lopt_opt_load_state(o, data, len, msg, sizeof msg);
    free(data);
    if (r != 0) return lopt_report_msg(errbuf, errlen, "%s: %s", path, msg);
    return 0;
}
