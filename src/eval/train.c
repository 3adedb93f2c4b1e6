/* train.c - a training run with periodic full-split evaluation (see train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/train.h"

static void add_row(lopt_train_result *res, lopt_task *t, const float *w, int64_t step,
                    double train_loss, double time_s, const lopt_train_opts *opts)
{
    res->rows = realloc(res->rows, (size_t)(res->nrows + 1) * sizeof *res->rows);
    LOPT_ASSERT(res->rows);
    lopt_curve_row *r = &res->rows[res->nrows++];
    r->step = step;
    r->train_loss = train_loss;
    r->time_s = time_s;
    lopt_task_eval(t, w, LOPT_SPLIT_VALID, &r->valid_loss, &r->valid_acc);
    if (opts->on_eval) opts->on_eval(opts->user, r);
}

lopt_status lopt_train_run(lopt_task *t, lopt_optimizer *o, const lopt_train_opts *opts,
                           lopt_train_result *res, float *w_out, lopt_err *err)
{
    memset(res, 0, sizeof *res);
    res->diverged_at = -1;
    float *w = lopt_floats(t->n), *g = lopt_floats(t->n);
    lopt_batch b;
    lopt_batch_alloc(&b, t, t->batch);
    t->init(t, opts->seed, w);
    o->reset(o);

    /* step-0 row: the training loss column is the loss of one batch at init */
    lopt_task_sample(t, &b, LOPT_SPLIT_TRAIN, opts->seed, 0);
    add_row(res, t, w, 0, t->loss_grad(t, w, &b, NULL), 0.0, opts);

    double train_time = 0.0, loss_sum = 0.0;
    int64_t since = 0;
    lopt_status st = LOPT_OK;
    for (int64_t step = 1; step <= opts->steps; step++) {
        double t0 = lopt_now();
        lopt_task_sample(t, &b, LOPT_SPLIT_TRAIN, opts->seed, step - 1);
        double loss = t->loss_grad(t, w, &b, g);
        if (!isfinite(loss)) {
            res->diverged_at = step;
            st = lopt_fail(err, LOPT_EDIVERGED, "training diverged at step %lld (loss %g)",
                           (long long)step, loss);
            break;
        }
        o->step(o, w, g);
        train_time += lopt_now() - t0;
        loss_sum += loss;
        since++;
        if (opts->on_step) opts->on_step(opts->user, step, opts->steps, loss);
        int due = opts->eval_every > 0 ? step % opts->eval_every == 0 : 0;
        if (due || step == opts->steps) {
            add_row(res, t, w, step, loss_sum / (double)since, train_time, opts);
            loss_sum = 0.0;
            since = 0;
        }
    }
    if (st == LOPT_OK) lopt_task_eval(t, w, LOPT_SPLIT_TEST, &res->test_loss, &res->test_acc);
    if (w_out) memcpy(w_out, w, t->n * sizeof(float));
    lopt_batch_free(&b);
    lopt_free(w);
    lopt_free(g);
    return st;
}

void lopt_train_result_free(lopt_train_result *res)
{
    if (!res) return;
    free(res->rows);
    res->rows = NULL;
    res->nrows = 0;
}

lopt_status lopt_curve_write_csv(const char *path, const lopt_train_result *res,
                                 lopt_err *err)
{
    size_t cap = 64 + (size_t)res->nrows * 96, len = 0;
    char *buf = lopt_xcalloc(cap, 1);
    len += (size_t)snprintf(buf + len, cap - len, "step,train_loss,valid_loss,time_s\n");
    for (int i = 0; i < res->nrows; i++) {
        const lopt_curve_row *r = &res->rows[i];
        len += (size_t)snprintf(buf + len, cap - len, "%lld,%.6f,%.6f,%.4f\n",
                                (long long)r->step, r->train_loss, r->valid_loss, r->time_s);
    }
    lopt_status st = lopt_write_atomic(path, buf, len, err);
    free(buf);
    return st;
}
