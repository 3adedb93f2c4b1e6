/* api.c - the public C API (include/lopt.h): thin wrappers over the .lopt reader
 * (lopt_file.h) and the learned optimizer as an lopt_optimizer (mlp_lopt.h).
 * Left out: meta-training and the hand-designed optimizers (internal APIs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lopt.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

struct lopt_model {
    lopt_arch arch;
    float *theta;   /* (lopt_arch_nparams(&arch)) */
    lopt_provenance prov;
};

struct lopt_opt {
    lopt_optimizer o;
    lopt_tensor *tensors;   /* (ntensors), outlives o as lopt_learned_create requires */
    int ntensors;
};

static void set_err(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen > 0) snprintf(errbuf, errlen, "%s", msg);
}

lopt_model *lopt_model_load(const char *path, char *errbuf, size_t errlen)
{
    if (!path) {
        set_err(errbuf, errlen, "lopt_model_load: path is NULL");
        return NULL;
    }
    lopt_model *m = calloc(1, sizeof *m);
    if (!m) {
        set_err(errbuf, errlen, "out of memory");
        return NULL;
    }
    lopt_err err = {0};
    if (lopt_file_read(path, &m->arch, &m->theta, &m->prov, &err) != LOPT_OK) {
        set_err(errbuf, errlen, err.msg);
        free(m);
        return NULL;
    }
    return m;
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
        char dir[48] = "gradient";
        if (a->nominal_dir == LOPT_NOMINAL_MOM)
            snprintf(dir, sizeof dir, "momentum (beta %g)", a->beta[a->nominal_mom]);
        snprintf(form, sizeof form, "nominal lopt (normalised %s at step %g x exp(sched(t)), "
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

int lopt_model_write_initial(const char *path, const char *preset, uint64_t seed,
                             char *errbuf, size_t errlen)
{
    if (!path || !preset) {
        set_err(errbuf, errlen, "lopt_model_write_initial: path or preset is NULL");
        return -1;
    }
    lopt_err err = {0};
    lopt_arch a;
    if (lopt_arch_preset(&a, preset, &err) != LOPT_OK) {
        set_err(errbuf, errlen, err.msg);
        return -1;
    }
    float *theta = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_init(&a, seed, theta);
    lopt_provenance p;
    memset(&p, 0, sizeof p);
    lopt_provenance_set(p.estimator, sizeof p.estimator, "none");
    snprintf(p.note, sizeof p.note, "untrained: preset %s, theta initialised with seed %llu",
             preset, (unsigned long long)seed);
    lopt_status st = lopt_file_write(path, &a, theta, &p, &err);
    lopt_free(theta);
    if (st != LOPT_OK) {
        set_err(errbuf, errlen, err.msg);
        return -1;
    }
    return 0;
}

lopt_opt *lopt_opt_new2(const lopt_model *model, const size_t *tensor_sizes, int ntensors,
                        char *errbuf, size_t errlen)
{
    char msg[600];
    if (!model || !tensor_sizes || ntensors < 1) {
        set_err(errbuf, errlen, !model ? "lopt_opt_new: model is NULL"
                                : !tensor_sizes ? "lopt_opt_new: tensor_sizes is NULL"
                                                : "lopt_opt_new: ntensors must be >= 1");
        return NULL;
    }
    size_t off = 0;
    for (int i = 0; i < ntensors; i++) {
        if (tensor_sizes[i] == 0) {
            snprintf(msg, sizeof msg, "lopt_opt_new: tensor %d has size 0", i);
            set_err(errbuf, errlen, msg);
            return NULL;
        }
        if (tensor_sizes[i] > SIZE_MAX - off) {
            snprintf(msg, sizeof msg, "lopt_opt_new: the tensor sizes overflow size_t "
                     "(their sum passes SIZE_MAX at tensor %d)", i);
            set_err(errbuf, errlen, msg);
            return NULL;
        }
        off += tensor_sizes[i];
    }
    lopt_opt *s = lopt_try_calloc(1, sizeof *s);
    if (s) s->tensors = lopt_try_calloc((size_t)ntensors, sizeof *s->tensors);
    if (!s || !s->tensors) {
        free(s);
        set_err(errbuf, errlen, "lopt_opt_new: out of memory");
        return NULL;
    }
    s->ntensors = ntensors;
    off = 0;
    for (int i = 0; i < ntensors; i++) {
        s->tensors[i].name = "";
        s->tensors[i].offset = off;
        s->tensors[i].size = tensor_sizes[i];
        off += tensor_sizes[i];
    }
    lopt_err err = {0};
    if (lopt_learned_create(&s->o, &model->arch, model->theta, s->tensors, ntensors, off,
                            &err) != LOPT_OK) {
        snprintf(msg, sizeof msg, "lopt_opt_new: %s", err.msg);
        set_err(errbuf, errlen, msg);
        free(s->tensors);
        free(s);
        return NULL;
    }
    return s;
}

lopt_opt *lopt_opt_new(const lopt_model *model, const size_t *tensor_sizes, int ntensors)
{
    return lopt_opt_new2(model, tensor_sizes, ntensors, NULL, 0);
}

size_t lopt_opt_nparams(const lopt_opt *opt) { return opt->o.n; }

uint64_t lopt_opt_nonfinite(const lopt_opt *opt) { return lopt_learned_nonfinite(&opt->o); }

void lopt_opt_step(lopt_opt *opt, float *params, const float *grads)
{
    opt->o.step(&opt->o, params, grads);
}

void lopt_opt_reset(lopt_opt *opt) { opt->o.reset(&opt->o); }

void lopt_opt_free(lopt_opt *opt)
{
    if (!opt) return;
    opt->o.free(&opt->o);
    free(opt->tensors);
    free(opt);
}
