/* api_run.c - the public API's training and meta-training of a named task
 * (include/lopt.h: lopt_train, lopt_meta_train): what `lopt train` and
 * `lopt meta-train` do, for a built-in task or one registered with
 * lopt_task_register, without the CLI. It sits in src/eval because it uses the
 * training runs (eval/train.h) and meta-training (meta/meta.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/train.h"
#include "lopt/api_impl.h"
#include "meta/meta.h"

/* the public lopt_opt as a lopt_optimizer, so a training run can drive it */
static void opt_step(lopt_optimizer *o, float *w, const float *g) { lopt_opt_step(o->ctx, w, g); }
static void opt_reset(lopt_optimizer *o) { lopt_opt_reset(o->ctx); }
static void opt_free(lopt_optimizer *o) { lopt_opt_free(o->ctx); }

typedef struct {
    const lopt_train_settings *s;
} eval_user;

static void on_eval(void *user, const lopt_curve_row *r)
{
    const lopt_train_settings *s = ((eval_user *)user)->s;
    s->on_eval(s->user, r->step, r->train_loss, r->valid_loss, r->valid_acc);
}

int lopt_train(const lopt_train_settings *s, lopt_train_report *report, char *errbuf,
               size_t errlen)
{
    if (report) {
        memset(report, 0, sizeof *report);
        report->diverged_at = -1;
    }
    if (!s || !s->task) return lopt_report_msg(errbuf, errlen, "lopt_train: no task");
    if (s->steps < 1) return lopt_report_msg(errbuf, errlen, "lopt_train: steps must be >= 1");
    if (!s->model && !s->opt)
        return lopt_report_msg(errbuf, errlen, "lopt_train: give a model or a hand-designed "
                               "optimizer's name");
    lopt_err err = {0};
    lopt_task task;
    if (lopt_task_create(&task, s->task, NULL, &err) != LOPT_OK)
        return lopt_report(errbuf, errlen, &err);
    lopt_optimizer o;
    memset(&o, 0, sizeof o);
    if (s->model) {
        size_t *sizes = lopt_xcalloc((size_t)task.ntensors, sizeof *sizes);
        for (int i = 0; i < task.ntensors; i++) sizes[i] = task.tensors[i].size;
        lopt_param_group g = {sizes, task.ntensors, {1.0f, 0.0f, 0}};
        if (s->step_scale != 0) g.opts.step_scale = s->step_scale;
        char msg[512];
        lopt_opt *lo = lopt_opt_new_groups(s->model, &g, 1, msg, sizeof msg);
        free(sizes);
        if (!lo) {
            task.free(&task);
            return lopt_report_msg(errbuf, errlen, "lopt_train: %s", msg);
        }
        if (s->t_max < 0) lopt_opt_set_t_max(lo, 0);
        else if (s->t_max > 0) lopt_opt_set_t_max(lo, s->t_max);
        o.name = "learned";
        o.n = task.n;
        o.ctx = lo;
        o.step = opt_step;
        o.reset = opt_reset;
        o.free = opt_free;
    } else {
        lopt_hparams hp;
        lopt_status st = lopt_hparams_default(&hp, s->opt, &err);
        if (st == LOPT_OK && s->lr != 0) {
            if (s->lr > 0 && isfinite(s->lr)) hp.lr = s->lr;
            else st = lopt_fail(&err, LOPT_EUSAGE, "lopt_train: lr must be positive");
        }
        if (st == LOPT_OK) st = lopt_optimizer_create(&o, s->opt, &hp, task.n, &err);
        if (st != LOPT_OK) {
            task.free(&task);
            return lopt_report(errbuf, errlen, &err);
        }
    }
    eval_user eu = {s};
    lopt_train_opts to = {.steps = s->steps,
                          .eval_every = s->eval_every > 0 ? s->eval_every
                                        : (s->steps >= 20 ? s->steps / 20 : 1),
                          .seed = s->seed,
                          .on_eval = s->on_eval ? on_eval : NULL,
                          .user = &eu};
    lopt_train_result res;
    lopt_status st = lopt_train_run(&task, &o, &to, &res, s->params_out, &err);
    if (report && res.nrows > 0) {
        const lopt_curve_row *first = &res.rows[0], *last = &res.rows[res.nrows - 1];
        report->init_valid_loss = first->valid_loss;
        report->final_train_loss = last->train_loss;
        report->final_valid_loss = last->valid_loss;
        report->final_valid_acc = last->valid_acc;
        report->test_loss = st == LOPT_OK ? res.test_loss : NAN;
        report->test_acc = st == LOPT_OK ? res.test_acc : NAN;
        report->diverged_at = res.diverged_at;
        report->time_s = last->time_s;
    }
    lopt_err werr = {0};
    lopt_status wst = s->log_csv ? lopt_curve_write_csv(s->log_csv, &res, &werr) : LOPT_OK;
    lopt_train_result_free(&res);
    o.free(&o);
    task.free(&task);
    if (st != LOPT_OK) return lopt_report(errbuf, errlen, &err);
    if (wst != LOPT_OK) return lopt_report(errbuf, errlen, &werr);
    return 0;
}

lopt_model *lopt_meta_train(const lopt_meta_settings *s, char *errbuf, size_t errlen)
{
    if (!s || !s->task) {
        lopt_report_msg(errbuf, errlen, "lopt_meta_train: no task");
        return NULL;
    }
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    if (strlen(s->task) >= sizeof c.task) {
        lopt_report_msg(errbuf, errlen, "lopt_meta_train: task name too long");
        return NULL;
    }
    snprintf(c.task, sizeof c.task, "%s", s->task);
    const char *est = s->estimator ? s->estimator : "es";
    int e = lopt_est_parse(est);
    if (e < 0) {
        lopt_report_msg(errbuf, errlen, "unknown estimator '%s' (rp|es|merged|pes|nres|fulles)", est);
        return NULL;
    }
    c.estimator = (lopt_est_kind)e;
    const char *arch = s->arch ? s->arch : "paper";
    if (strlen(arch) >= sizeof c.arch) {
        lopt_report_msg(errbuf, errlen, "unknown architecture '%s' (paper|lo|nominal)", arch);
        return NULL;
    }
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    const char *ol = s->outer_loss ? s->outer_loss : "valid";
    if (strcmp(ol, "valid") == 0) c.outer_split = LOPT_SPLIT_VALID;
    else if (strcmp(ol, "train") == 0) c.outer_split = LOPT_SPLIT_TRAIN;
    else {
        lopt_report_msg(errbuf, errlen, "outer loss '%s': want train or valid", ol);
        return NULL;
    }
    if (s->K) c.K = s->K;
    if (s->samples) c.samples = s->samples;
    if (s->sigma != 0) c.sigma = s->sigma;
    if (s->outer_lr != 0) c.outer_lr = s->outer_lr;
    if (s->outer_steps) c.outer_steps = s->outer_steps;
    if (s->horizon) c.horizon = s->horizon;
    c.seed = s->seed;
    c.threads = s->threads;
    lopt_err err = {0};
    lopt_meta *m;
    if (lopt_meta_create(&m, &c, &err) != LOPT_OK) {
        lopt_report(errbuf, errlen, &err);
        return NULL;
    }
    if (s->init && lopt_meta_set_theta(m, &s->init->arch, s->init->theta, &err) != LOPT_OK) {
        lopt_meta_free(m);
        lopt_report(errbuf, errlen, &err);
        return NULL;
    }
    while (lopt_meta_steps_done(m) < c.outer_steps) {
        lopt_meta_row row;
        if (lopt_meta_step(m, &row, &err) != LOPT_OK) {
            lopt_meta_free(m);
            lopt_report(errbuf, errlen, &err);
            return NULL;
        }
        if (s->on_step && s->on_step(s->user, row.step, row.outer_loss) != 0) break;
    }
    lopt_provenance p;
    memset(&p, 0, sizeof p);
    lopt_provenance_set(p.task, sizeof p.task, c.task);
    lopt_provenance_set(p.estimator, sizeof p.estimator, lopt_est_names[c.estimator]);
    lopt_provenance_set(p.outer_loss, sizeof p.outer_loss, ol);
    p.outer_steps = (uint64_t)lopt_meta_steps_done(m);
    p.horizon = (uint64_t)c.horizon;
    snprintf(p.note, sizeof p.note, "lopt_meta_train: task %s, arch %s, estimator %s, K %d, "
             "samples %d, sigma %g, outer loss %s, outer lr %g, horizon %lld, seed %llu%s",
             c.task, c.arch, lopt_est_names[c.estimator], c.K, c.samples, c.sigma, ol,
             c.outer_lr, (long long)c.horizon, (unsigned long long)c.seed,
             s->init ? ", warm start" : "");
    lopt_model *out = lopt_model_make(lopt_meta_arch(m), lopt_meta_theta(m), &p);
    lopt_meta_free(m);
    return out;
}
