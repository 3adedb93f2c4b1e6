/* train.c - a training run with periodic full-split evaluation (see train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/train.h"

static void add_row(lopt_train_result *res, lopt_task *t, const float *w, int64_t step,
                    double train_loss, double time_s, const lopt_train_opts *opts)
{
    res->rows = lopt_xrealloc(res->rows, (size_t)(res->nrows + 1) * sizeof *res->rows);
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
        if (opts->stop && *opts->stop) {
            if (since > 0)
                add_row(res, t, w, step - 1, loss_sum / (double)since, train_time, opts);
            st = lopt_fail(err, LOPT_EINTR, "interrupted after step %lld", (long long)(step - 1));
            break;
        }
        double t0 = lopt_now();
        lopt_task_sample(t, &b, LOPT_SPLIT_TRAIN, opts->seed, step - 1);
        double loss = t->loss_grad(t, w, &b, g);
        size_t bad = 0;
        if (isfinite(loss))
            while (bad < t->n && isfinite(g[bad])) bad++;
        if (!isfinite(loss) || bad < t->n) {
            res->diverged_at = step;
            if (isfinite(loss))
                st = lopt_fail(err, LOPT_EDIVERGED, "training diverged at step %lld (gradient "
                               "element %zu is %g)", (long long)step, bad, g[bad]);
            else
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

/* a CSV number; a value that is not finite as "inf", "-inf" or "nan" (never "-nan"),
 * which every CSV reader that reads floats understands */
static void csv_value(lopt_sbuf *b, double v)
{
    if (isnan(v)) lopt_sb_printf(b, "nan");
    else if (isinf(v)) lopt_sb_printf(b, v > 0 ? "inf" : "-inf");
    else lopt_sb_printf(b, "%.6f", v);
}

lopt_status lopt_curve_write_csv(const char *path, const lopt_train_result *res,
                                 lopt_err *err)
{
    lopt_sbuf b = {NULL, 0, 0};
    lopt_sb_printf(&b, "step,train_loss,valid_loss,time_s\n");
    for (int i = 0; i < res->nrows; i++) {
        const lopt_curve_row *r = &res->rows[i];
        lopt_sb_printf(&b, "%lld,", (long long)r->step);
        csv_value(&b, r->train_loss);
        lopt_sb_printf(&b, ",");
        csv_value(&b, r->valid_loss);
        lopt_sb_printf(&b, ",%.4f\n", r->time_s);
    }
    lopt_status st = lopt_write_atomic(path, b.s, b.len, err);
    free(b.s);
    return st;
}
