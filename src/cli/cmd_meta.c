/* cmd_meta.c - `lopt meta-train` (docs/design.md section 4): meta-trains a learned
 * optimizer, logs a CSV row per outer step, checkpoints every N steps and on
 * SIGINT/SIGTERM, continues exactly with --resume, writes the .lopt at the end.
 * With --eval-every it measures progress at the full horizon (src/eval/horizon.h)
 * and keeps the best optimizer so far as OUT.best.lopt. Under mpirun the ranks
 * split the samples and the evaluation seeds (meta/dist.h, docs/scale-out.md);
 * rank 0 alone reads the checkpoint, writes and prints. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "eval/horizon.h"
#include "eval/metaplot.h"
#include "lopt/lopt_file.h"
#include "meta/meta.h"

/* OUT.best.lopt beside OUT */
static void best_path(char *buf, size_t cap, const char *out)
{
    size_t len = strlen(out);
    if (len > 5 && strcmp(out + len - 5, ".lopt") == 0)
        snprintf(buf, cap, "%.*s.best.lopt", (int)(len - 5), out);
    else
        snprintf(buf, cap, "%s.best.lopt", out);
}

static void provenance(const lopt_meta *m, int64_t steps, lopt_provenance *p)
{
    const lopt_meta_cfg *c = lopt_meta_config(m);
    char weight[32];
    lopt_outer_weight_str(&c->weight, weight, sizeof weight);
    memset(p, 0, sizeof *p);
    snprintf(p->task, sizeof p->task, "%s", c->task);
    snprintf(p->estimator, sizeof p->estimator, "%s", lopt_est_names[c->estimator]);
    snprintf(p->outer_loss, sizeof p->outer_loss, "%s",
             c->outer_split == LOPT_SPLIT_VALID ? "valid" : "train");
    p->outer_steps = (uint64_t)steps;
    p->horizon = (uint64_t)c->horizon;
    snprintf(p->note, sizeof p->note,
             "lopt meta-train --task %s --arch %s --estimator %s --K %d --K-max %d --K-grow %lld "
             "--samples %d --sigma %g --outer-loss %s --outer-weight %s --outer-batches %d "
             "--pool %d --shape %s --train %s --outer-lr %g --grad-clip %g "
             "--horizon %lld --seed %llu --loss-clip %g%s",
             c->task, c->arch, lopt_est_names[c->estimator], c->K, c->K_max,
             (long long)c->K_grow, c->samples, c->sigma, p->outer_loss, weight, c->outer_batches,
             c->pool, lopt_shape_names[c->shape], c->train, c->outer_lr, c->grad_clip,
             (long long)c->horizon, (unsigned long long)c->seed, c->loss_clip,
             c->first_order ? " --first-order" : "");
}

/* OUT.best.lopt: the best theta by the full-horizon evaluation, if any */
static lopt_status write_best(const lopt_meta *m, const char *out, lopt_err *err)
{
    const float *theta;
    int64_t step;
    double final;
    if (!lopt_meta_best(m, &theta, &step, &final)) return LOPT_OK;
    lopt_provenance p;
    provenance(m, step, &p);
    size_t len = strlen(p.note);
    snprintf(p.note + len, sizeof p.note - len, "; best by --eval-every: outer step %lld, "
             "mean final validation loss %.6f", (long long)step, final);
    char path[4096];
    best_path(path, sizeof path, out);
    return lopt_file_write(path, lopt_meta_arch(m), theta, &p, err);
}

/* Collective under MPI: the trajectories go to rank 0, which alone writes. */
static lopt_status write_outputs(lopt_meta *m, const char *out, const char *ckpt,
                                 const char *log, lopt_err *err)
{
    lopt_meta_gather(m);
    if (lopt_dist_rank() != 0) return LOPT_OK;
    lopt_provenance p;
    provenance(m, lopt_meta_steps_done(m), &p);
    lopt_status st = lopt_meta_save(m, ckpt, err);
    if (st == LOPT_OK) st = lopt_file_write(out, lopt_meta_arch(m), lopt_meta_theta(m), &p, err);
    if (st == LOPT_OK) st = write_best(m, out, err);
    if (st == LOPT_OK && log) {
        const lopt_meta_row *rows;
        size_t nrows = lopt_meta_rows(m, &rows);
        char *text = lopt_meta_log_csv(rows, nrows);
        st = lopt_write_atomic(log, text, strlen(text), err);
        free(text);
        /* plots beside the log: LOG-without-.csv-loss.{svg,png}, ...-wes.{svg,png} */
        char base[1024];
        snprintf(base, sizeof base, "%s", log);
        size_t len = strlen(base);
        if (len > 4 && strcmp(base + len - 4, ".csv") == 0) base[len - 4] = 0;
        if (st == LOPT_OK) st = lopt_meta_plot(rows, nrows, base, err);
    }
    return st;
}

/* The checkpoint from rank 0's disk (it alone writes them), decoded on every rank:
 * the machines need not share a file system. */
static lopt_status load_ckpt(lopt_meta **m, const char *path, lopt_err *err)
{
    if (lopt_dist_size() == 1) return lopt_meta_load(m, path, err);
    unsigned char *data = NULL;
    size_t len = 0;
    lopt_status st = LOPT_OK;
    if (lopt_dist_rank() == 0)
        st = lopt_read_file_max(path, LOPT_META_CKPT_MAX, "LOPTCKPT", 8,
                                "a lopt meta-training checkpoint", &data, &len, err);
    int32_t code = (int32_t)st;
    lopt_dist_bcast(&code, sizeof code, 0);
    if (code != LOPT_OK) {
        lopt_dist_bcast(err->msg, sizeof err->msg, 0);
        return (lopt_status)code;
    }
    lopt_dist_bcast_blob(&data, &len);
    st = lopt_meta_load_image(m, data, len, path, err);
    free(data);
    return st;
}

/* The ranks of an MPI job must agree on the run before its first step: the
 * configuration (with the checkpoint interval, which decides when they gather) and
 * the state they start from (theta: an --init file may differ between machines). */
static void check_agreement(const lopt_meta *m, int64_t ckpt_every)
{
    if (lopt_dist_size() == 1) return;
    uint64_t cfg, state;
    lopt_meta_fingerprint(m, &cfg, &state);
    int bad = lopt_dist_agree(cfg ^ (uint64_t)ckpt_every * 0x9e3779b97f4a7c15ULL);
    if (bad >= 0)
        cli_fail_all("meta-train", "rank %d has another configuration than rank 0 (hash "
                     "%016llx on rank 0): every rank must run the same lopt with the same "
                     "arguments", bad, (unsigned long long)cfg);
    bad = lopt_dist_agree(state);
    if (bad >= 0)
        cli_fail_all("meta-train", "rank %d starts from another theta than rank 0 (hash "
                     "%016llx on rank 0): is the --init file the same on every machine?", bad,
                     (unsigned long long)state);
}

/* The outputs before anything runs. Without --resume an existing OUT, OUT.ckpt,
 * OUT.best.lopt or log is a finished (or interrupted) run: refused unless --force.
 * With or without, no two of them and no input (--init) may be the same file, and
 * each must be writable. */
static void check_outputs(const cli_spec *spec, int resume, int force, const char *out,
                          const char *ckpt, const char *best, const char *log,
                          const char *init)
{
    char hint[160];
    snprintf(hint, sizeof hint, "continue that run with --resume, or start afresh over it "
             "with --force");
    const char *flag[4] = {"out", "out (its checkpoint)", "out (its best optimizer)", "log"};
    const char *name[4] = {"--out", "OUT.ckpt", "OUT.best.lopt", "--log"};
    const char *path[4] = {out, ckpt, best, log};
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < i; j++) cli_check_distinct(spec, name[j], path[j], name[i], path[i]);
        cli_check_distinct(spec, "--init", init, name[i], path[i]);
    }
    for (int i = 0; i < 4; i++)
        if (path[i]) cli_check_output(spec, flag[i], path[i], resume || force, hint);
}

/* --resume keeps the checkpoint's settings: say which flags it does not use */
static void warn_resume_ignores(const cli_spec *spec)
{
    static const char *const used[] = {"resume", "out", "outer-steps", "eval-every", "log",
                                       "checkpoint-every", "eval-seeds"};
    char list[512] = "";
    for (int i = 0; i < spec->nopts; i++) {
        if (!spec->opts[i].seen) continue;
        int u = 0;
        for (size_t k = 0; k < sizeof used / sizeof *used; k++)
            u |= strcmp(spec->opts[i].name, used[k]) == 0;
        size_t len = strlen(list);
        if (!u) snprintf(list + len, sizeof list - len, "%s--%s", len ? ", " : "",
                         spec->opts[i].name);
    }
    if (*list)
        fprintf(stderr, "meta-train: warning: --resume continues with the checkpoint's "
                "settings; ignoring %s\n", list);
}

static const char *const split_names[] = {"train", "valid", NULL};   /* = lopt_split */

/* The command's state: the flags are bound to c's fields, so lopt_meta_cfg_default
 * is their one default. */
typedef struct {
    int rank, nranks;
    lopt_meta_cfg c;
    const char *task, *arch, *est, *out, *log, *init, *weight, *shape, *train, *eval_seeds;
    int64_t ckpt_every;
    int split;
    cli_choice split_choice;
    int resume, force;
    char weight_default[32], seeds_default[LOPT_META_MAX_EVAL * 21];
    cli_opt opts[40];
    int nopts;
    cli_spec spec;
    char outbuf[512], ckpt[4096], best_file[4096];
} meta_cli;

static void define_flags(meta_cli *s)
{
    lopt_meta_cfg_default(&s->c);
    s->task = s->c.task;
    s->arch = s->c.arch;
    s->train = s->c.train;
    s->est = lopt_est_names[s->c.estimator];
    lopt_outer_weight_str(&s->c.weight, s->weight_default, sizeof s->weight_default);
    s->weight = s->weight_default;
    s->shape = lopt_shape_names[s->c.shape];
    cli_format_seeds(s->c.eval_seeds, s->c.neval, s->seeds_default, sizeof s->seeds_default);
    s->eval_seeds = s->seeds_default;
    s->ckpt_every = 50;
    s->split = (int)s->c.outer_split;
    s->split_choice = (cli_choice){&s->split, split_names};
    const cli_opt opts[] = {
        {"task", OPT_STR, &s->task, "task to meta-train on", 0, 0},
        {"estimator", OPT_STR, &s->est, "rp|es|merged|pes|nres|fulles", 0, 0},
        {"arch", OPT_STR, &s->arch, "paper|lo|nominal|nominal-adam", 0, 0},
        {"train", OPT_STR, &s->train, "coordinates of theta that move: all|nominal|schedule", 0,
         0},
        {"K", OPT_I32, &s->c.K, "truncation length (fulles: the horizon)", 0, 0},
        {"K-max", OPT_I32, &s->c.K_max, "grow K linearly up to this (0: constant K)", 0, 0},
        {"K-grow", OPT_I64, &s->c.K_grow, "outer steps over which K grows", 0, 0},
        {"samples", OPT_I32, &s->c.samples, "antithetic pairs per outer step", 0, 0},
        {"sigma", OPT_F32, &s->c.sigma, "perturbation scale", 0, 0},
        {"outer-loss", OPT_CHOICE, &s->split_choice, "train|valid", 0, 0},
        {"outer-weight", OPT_STR, &s->weight, "steps of a truncation that count: mean|end|tail:F",
         0, 0},
        {"outer-batches", OPT_I32, &s->c.outer_batches, "batches averaged per outer-loss "
         "evaluation", 0, 0},
        {"pool", OPT_I32, &s->c.pool, "merged: per-coordinate variances from the samples of the "
         "last N outer steps", 0, 0},
        {"shape", OPT_STR, &s->shape, "es loss differences as they are, by sign or by rank: "
         "none|sign|rank", 0, 0},
        {"outer-lr", OPT_F32, &s->c.outer_lr, "Adam learning rate on theta", 0, 0},
        {"grad-clip", OPT_F32, &s->c.grad_clip, "clip outer gradient by value (0 off)", 0, 0},
        {"outer-steps", OPT_I64, &s->c.outer_steps, "outer steps", 0, 0},
        {"horizon", OPT_I64, &s->c.horizon, "inner steps per trajectory", 0, 0},
        {"seed", OPT_I64, &s->c.seed, "seed", 0, 0},
        {"loss-clip", OPT_F32, &s->c.loss_clip, "clip outer losses at this (0 off)", 0, 0},
        {"diverge", OPT_F32, &s->c.diverge_factor, "inner loss above this times its initial value "
         "resets the trajectory", 0, 0},
        {"first-order", OPT_FLAG, &s->c.first_order, "rp without the inner HVP (approximation)", 0,
         0},
        {"threads", OPT_I32, &s->c.threads, "worker threads (0: all cores)", 0, 0},
        {"eval-every", OPT_I64, &s->c.eval_every, "train theta over the full horizon on the eval "
         "seeds every N outer steps, log it, keep the best as OUT.best.lopt (0: off)", 0, 0},
        {"eval-seeds", OPT_STR, &s->eval_seeds, "tuning seeds of the evaluation (never the test "
         "seeds 1000..1999)", 0, 0},
        {"eval-points", OPT_I32, &s->c.eval_points, "validation evaluations along the horizon "
         "for the eval_mean column", 0, 0},
        {"out", OPT_STR, &s->out, "output .lopt (default lopt-TASK.lopt); checkpoint: OUT.ckpt", 0, 0},
        {"checkpoint-every", OPT_I64, &s->ckpt_every, "checkpoint every N outer steps", 0, 0},
        {"resume", OPT_FLAG, &s->resume, "continue from OUT.ckpt (its settings; --outer-steps may "
         "raise the target, --eval-every may turn evaluation on or change its interval)", 0, 0},
        {"force", OPT_FLAG, &s->force, "start afresh over an existing OUT, OUT.ckpt, OUT.best.lopt "
         "or --log (without it they are never replaced)", 0, 0},
        {"log", OPT_STR, &s->log, "CSV log, a row per outer step (plots beside it)", 0, 0},
        {"init", OPT_STR, &s->init, "start from this .lopt's theta (same arch) instead of a "
         "random one", 0, 0},
    };
    s->nopts = (int)(sizeof opts / sizeof *opts);
    LOPT_ASSERT(s->nopts <= (int)(sizeof s->opts / sizeof *s->opts));
    memcpy(s->opts, opts, sizeof opts);
    s->spec = (cli_spec){"meta-train",
                     "lopt meta-train --task T --estimator rp|es|merged|pes|nres|fulles "
                     "[--arch paper|lo|nominal|nominal-adam] [--train all|nominal|schedule] [--K 20] "
                     "[--samples S] [--sigma X] [--outer-loss train|valid] "
                     "[--outer-weight mean|end|tail:F] [--outer-lr X] [--outer-steps N] "
                     "[--horizon N] [--eval-every N] [--out FILE.lopt] [--resume | --force] [--log FILE.csv]",
                     "Meta-trains a learned optimizer by truncated unrolls (or full-horizon "
                     "es); with --eval-every, measures it at the full horizon as it goes.",
                     s->opts, s->nopts};
}

/* the checks on the flags, and what is not a plain field of c */
static void check_flags(meta_cli *s)
{
    lopt_meta_cfg *c = &s->c;
    const cli_spec *spec = &s->spec;
    lopt_err err = {0};
    int e = lopt_est_parse(s->est);
    if (e < 0)
        cli_usage_error(spec, "unknown estimator '%s' (rp|es|merged|pes|nres|fulles)", s->est);
    if (lopt_outer_weight_parse(&c->weight, s->weight, &err) != LOPT_OK)
        cli_usage_error(spec, "--outer-weight: %s", err.msg);
    int sh = -1;
    for (int i = 0; i <= LOPT_SHAPE_RANK; i++)
        if (strcmp(s->shape, lopt_shape_names[i]) == 0) sh = i;
    if (sh < 0) cli_usage_error(spec, "unknown --shape '%s' (none|sign|rank)", s->shape);
    if (s->ckpt_every < 1) cli_usage_error(spec, "--checkpoint-every must be positive");
    if ((int64_t)c->seed < 0) cli_usage_error(spec, "--seed must be non-negative");
    if (c->outer_steps < 0) cli_usage_error(spec, "--outer-steps must be >= 0");
    if (s->out && !*s->out) cli_usage_error(spec, "--out needs a file name");
    if (s->resume && s->force)
        cli_usage_error(spec, "--resume continues OUT's run, --force starts it afresh: not both");
    if (strlen(s->task) >= sizeof c->task || strlen(s->arch) >= sizeof c->arch ||
        strlen(s->train) >= sizeof c->train)
        cli_usage_error(spec, "task, arch or train name too long");
    if (c->K > 100000 || c->K_max > 100000 || c->samples > 4096 || c->threads < 0 ||
        c->threads > 256 || c->outer_batches > 1000 || c->pool > 1000 ||
        c->eval_points > 1000 || c->eval_every < 0)
        cli_usage_error(spec, "a size is out of range");
    /* the names may point into c (their defaults): memmove, lengths checked above */
    memmove(c->task, s->task, strlen(s->task) + 1);
    memmove(c->arch, s->arch, strlen(s->arch) + 1);
    memmove(c->train, s->train, strlen(s->train) + 1);
    c->estimator = (lopt_est_kind)e;
    c->outer_split = (lopt_split)s->split;
    c->shape = (lopt_shape_kind)sh;
    c->neval = cli_parse_seeds(spec, "eval-seeds", s->eval_seeds, c->eval_seeds,
                               LOPT_META_MAX_EVAL);
}

/* OUT (default lopt-TASK.lopt), OUT.ckpt, OUT.best.lopt: checked before anything runs */
static void output_paths(meta_cli *s)
{
    if (!s->out) {
        snprintf(s->outbuf, sizeof s->outbuf, "lopt-%s.lopt", s->c.task);
        s->out = s->outbuf;
    }
    if (strlen(s->out) + 16 >= sizeof s->ckpt)
        cli_usage_error(&s->spec, "--out too long (%zu characters)", strlen(s->out));
    snprintf(s->ckpt, sizeof s->ckpt, "%s.ckpt", s->out);
    best_path(s->best_file, sizeof s->best_file, s->out);
    check_outputs(&s->spec, s->resume, s->force, s->out, s->ckpt, s->best_file, s->log,
                  s->init);
}

/* the run: resumed from OUT.ckpt, or created (from --init's theta if given) */
static lopt_meta *open_run(meta_cli *s)
{
    const cli_spec *spec = &s->spec;
    lopt_err err = {0};
    lopt_meta *m = NULL;
    lopt_status st;
    if (s->resume) {
        if (cli_find(spec, "eval-seeds")->seen)
            cli_usage_error(spec, "--eval-seeds is fixed when a run starts (the best "
                            "optimizer is chosen on them)");
        if (s->rank == 0) warn_resume_ignores(spec);
        st = load_ckpt(&m, s->ckpt, &err);
        cli_settle(spec, "cannot resume", st, &err);
        if (st != LOPT_OK) cli_fail("meta-train", "cannot resume: %s", err.msg);
        if (cli_find(spec, "outer-steps")->seen) lopt_meta_set_outer_steps(m, s->c.outer_steps);
        if (cli_find(spec, "eval-every")->seen) lopt_meta_set_eval_every(m, s->c.eval_every);
        if (s->rank == 0)
            fprintf(stderr, "meta-train: resumed %s at outer step %lld\n", s->ckpt,
                    (long long)lopt_meta_steps_done(m));
        return m;
    }
    st = lopt_meta_create(&m, &s->c, &err);
    cli_settle(spec, NULL, st, &err);
    if (st == LOPT_EUSAGE) cli_usage_error(spec, "%s", err.msg);
    if (st != LOPT_OK) cli_fail("meta-train", "%s", err.msg);
    if (s->init) {
        lopt_arch ia;
        float *theta = NULL;
        st = lopt_file_read(s->init, &ia, &theta, NULL, &err);
        if (st == LOPT_OK) st = lopt_meta_set_theta(m, &ia, theta, &err);
        lopt_free(theta);
        cli_settle(spec, "--init", st, &err);
        if (st != LOPT_OK) {
            lopt_meta_free(m);
            cli_fail("meta-train", "--init: %s", err.msg);
        }
    }
    /* afresh without evaluation: the old run's best optimizer would be mistaken for
     * this one's. Only now, once the run is accepted: a refused one removes nothing */
    if (s->force && s->c.eval_every == 0 && s->rank == 0) remove(s->best_file);
    return m;
}

/* the notes on stderr about how the samples are split, and the evaluator */
static lopt_horizon_eval *prepare(meta_cli *s, lopt_meta *m)
{
    const lopt_meta_cfg *rc = lopt_meta_config(m);
    const int rank = s->rank, nranks = s->nranks;
    if (rank == 0 && nranks > 1)
        fprintf(stderr, "meta-train: %d ranks, %d samples each (%d in all)%s\n", nranks,
                rc->samples / nranks, rc->samples,
                rc->samples % nranks ? " or one more" : "");
    if (rank == 0 && nranks > rc->samples)
        fprintf(stderr, "meta-train: warning: %d ranks for %d samples: ranks %d.. have no "
                "sample to run (only evaluation seeds, if any)\n", nranks, rc->samples,
                rc->samples);
    if (rank == 0 && rc->estimator == LOPT_EST_MERGED && (int64_t)rc->samples * rc->pool < 8)
        fprintf(stderr, "meta-train: warning: merged estimates per-coordinate variances from "
                "%lld samples; below 8 its es weights are mostly noise (raise --samples or "
                "--pool)\n", (long long)rc->samples * rc->pool);
    lopt_horizon_eval *he = NULL;
    if (rc->eval_every > 0) {
        lopt_err err = {0};
        lopt_status st = lopt_horizon_eval_create(&he, rc->task, rc->eval_seeds, rc->neval,
                                                  rc->horizon, rc->eval_points, rc->threads,
                                                  &err);
        cli_settle(&s->spec, "evaluation", st, &err);
        if (st != LOPT_OK) {
            lopt_meta_free(m);
            cli_fail("meta-train", "evaluation: %s", err.msg);
        }
        lopt_meta_set_evaluator(m, lopt_horizon_eval_fn, he);
    }
    return he;
}

/* the outer steps, until the target or a signal; the outputs with every checkpoint.
 * *all_clipped counts the steps whose every outer loss was at the clip. */
static lopt_status train_loop(meta_cli *s, lopt_meta *m, int64_t start, int64_t *all_clipped,
                              lopt_err *err)
{
    const lopt_meta_cfg *rc = lopt_meta_config(m);
    lopt_status st = LOPT_OK;
    cli_progress bar;
    cli_progress_init(&bar, "meta-train");
    int64_t best_seen = -1;
    double last_eval = NAN;
    /* every rank takes part in the same steps: a signal on one rank stops all of
     * them after the same step (lopt_dist_any is the vote) */
    while (lopt_meta_steps_done(m) < rc->outer_steps && !lopt_dist_any(cli_stop != 0)) {
        lopt_meta_row row;
        if ((st = lopt_meta_step(m, &row, err)) != LOPT_OK) break;
        /* every loss at the clip: the gradient is exactly 0, nothing is learned */
        if (rc->loss_clip > 0 && row.outer_loss >= rc->loss_clip * (1 - 1e-6) &&
            (*all_clipped)++ == 0 && s->rank == 0)
            fprintf(stderr, "%smeta-train: warning: every outer loss of outer step %lld is at "
                    "--loss-clip %g, so its gradient is 0 (use --loss-clip 0 or a value above "
                    "the task's losses)\n", bar.tty ? "\r\033[K" : "", (long long)row.step,
                    rc->loss_clip);
        if (!isnan(row.eval_final)) last_eval = row.eval_final;
        int64_t best_step;
        double best;
        if (lopt_meta_best(m, NULL, &best_step, &best) && best_step != best_seen) {
            best_seen = best_step;
            if (s->rank == 0) st = write_best(m, s->out, err);
            cli_settle(&s->spec, NULL, st, err);
            if (st != LOPT_OK) break;
        }
        char extra[200];
        snprintf(extra, sizeof extra, "loss %.4f K %d w_es %.2f %.0f steps/s", row.outer_loss,
                 row.K, row.w_es, row.inner_steps_per_s);
        if (!isnan(last_eval)) {
            size_t len = strlen(extra);
            snprintf(extra + len, sizeof extra - len, " eval %.4f best %.4f@%lld", last_eval,
                     best, (long long)best_step);
        }
        cli_progress_update(&bar, row.step - start, rc->outer_steps - start, extra);
        /* the .lopt and the log go out with every checkpoint, so a long run can be
         * watched and its current optimizer tried */
        if (row.step % s->ckpt_every == 0) {
            st = write_outputs(m, s->out, s->ckpt, s->log, err);
            cli_settle(&s->spec, NULL, st, err);
            if (st != LOPT_OK) break;
        }
    }
    cli_progress_end(&bar);
    return st;
}

/* rank 0: the communication per outer step of an MPI run */
static void report_comm(const meta_cli *s, const lopt_dist_stats *ds, int64_t steps)
{
    if (s->rank != 0 || s->nranks <= 1 || steps <= 0) return;
    double k = 1.0 / (double)steps;
    fprintf(stderr, "meta-train: communication on rank 0: %.3f ms per outer step (%.1f "
            "calls, %.0f bytes received)", 1e3 * ds->comm_s * k, (double)ds->calls * k,
            (double)ds->bytes * k);
    if (ds->wait_s > 0)
        fprintf(stderr, ", plus %.3f ms waiting for the slowest rank", 1e3 * ds->wait_s * k);
    fprintf(stderr, "\n");
}

int cmd_meta_train(int argc, char **argv)
{
    cli_join("meta-train", argc, argv);
    meta_cli s;
    memset(&s, 0, sizeof s);
    s.rank = lopt_dist_rank();
    s.nranks = lopt_dist_size();
    define_flags(&s);
    cli_parse(&s.spec, argc, argv);
    check_flags(&s);
    output_paths(&s);
    lopt_meta *m = open_run(&s);
    check_agreement(m, s.ckpt_every);
    lopt_horizon_eval *he = prepare(&s, m);
    /* kept installed: a second signal while a checkpoint is written only repeats the
     * request, the write finishes */
    cli_signals_install(NULL);
    lopt_err err = {0};
    int64_t start = lopt_meta_steps_done(m), all_clipped = 0;
    lopt_status st = train_loop(&s, m, start, &all_clipped, &err);
    int stopped = lopt_dist_any(cli_stop != 0);
    lopt_dist_stats ds;   /* the steps' (and their checkpoints'), not the last write's */
    lopt_dist_get_stats(&ds);
    if (st == LOPT_OK) {
        st = write_outputs(m, s.out, s.ckpt, s.log, &err);
        cli_settle(&s.spec, NULL, st, &err);
    }
    int64_t done = lopt_meta_steps_done(m);
    report_comm(&s, &ds, done - start);
    int64_t best_step = -1;
    double best = NAN;
    int has_best = lopt_meta_best(m, NULL, &best_step, &best);
    const double clip = lopt_meta_config(m)->loss_clip;
    lopt_meta_free(m);
    lopt_horizon_eval_free(he);
    /* the failures left are shared by every rank (evaluation results are gathered) */
    if (st != LOPT_OK) cli_fail_all("meta-train", "%s", err.msg);
    if (stopped)
        cli_fail_all("meta-train", "interrupted at outer step %lld; checkpoint %s written "
                     "(continue with --resume)", (long long)done, s.ckpt);
    if (s.rank != 0) return 0;
    if (done > start && all_clipped == done - start)
        cli_fail("meta-train", "learned nothing: every outer loss was clipped at --loss-clip %g "
                 "(all %lld steps), so every gradient was 0; start again with --loss-clip 0 (off) "
                 "or above the task's losses, and --force", clip,
                 (long long)all_clipped);
    printf("meta-train: %lld outer steps; optimizer %s, checkpoint %s%s%s\n", (long long)done,
           s.out, s.ckpt, s.log ? ", log " : "", s.log ? s.log : "");
    if (has_best)
        printf("meta-train: best at the horizon: outer step %lld, mean final validation loss "
               "%.6f -> %s\n", (long long)best_step, best, s.best_file);
    return 0;
}
