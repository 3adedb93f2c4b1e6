/* cmd_meta.c - `lopt meta-train` (DESIGN.md section 4): meta-trains a learned
 * optimizer, logs a CSV row per outer step, checkpoints every N steps and on
 * SIGINT/SIGTERM, continues exactly with --resume, writes the .lopt at the end. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/metaplot.h"
#include "lopt/lopt_file.h"
#include "meta/meta.h"

static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; }

static int parse_estimator(const char *s)
{
    for (int i = 0; i <= LOPT_EST_PES; i++)
        if (strcmp(s, lopt_est_names[i]) == 0) return i;
    return -1;
}

static lopt_status write_outputs(const lopt_meta *m, const char *out, const char *ckpt,
                                 const char *log, lopt_err *err)
{
    const lopt_meta_cfg *c = lopt_meta_config(m);
    lopt_provenance p;
    memset(&p, 0, sizeof p);
    snprintf(p.task, sizeof p.task, "%s", c->task);
    snprintf(p.estimator, sizeof p.estimator, "%s", lopt_est_names[c->estimator]);
    snprintf(p.outer_loss, sizeof p.outer_loss, "%s",
             c->outer_split == LOPT_SPLIT_VALID ? "valid" : "train");
    p.outer_steps = (uint64_t)lopt_meta_steps_done(m);
    p.horizon = (uint64_t)c->horizon;
    snprintf(p.note, sizeof p.note,
             "lopt meta-train --task %s --arch %s --estimator %s --K %d --K-max %d --K-grow %lld "
             "--samples %d --sigma %g --outer-loss %s --outer-lr %g --grad-clip %g "
             "--horizon %lld --seed %llu --loss-clip %g%s",
             c->task, c->arch, lopt_est_names[c->estimator], c->K, c->K_max,
             (long long)c->K_grow, c->samples, c->sigma, p.outer_loss, c->outer_lr,
             c->grad_clip, (long long)c->horizon, (unsigned long long)c->seed, c->loss_clip,
             c->first_order ? " --first-order" : "");
    lopt_status st = lopt_meta_save(m, ckpt, err);
    if (st == LOPT_OK) st = lopt_file_write(out, lopt_meta_arch(m), lopt_meta_theta(m), &p, err);
    if (st == LOPT_OK && log) {
        const char *text = lopt_meta_log(m);
        st = lopt_write_atomic(log, text, strlen(text), err);
        /* plots beside the log: LOG-without-.csv-loss.{svg,png}, ...-wes.{svg,png} */
        char base[1024];
        snprintf(base, sizeof base, "%s", log);
        size_t len = strlen(base);
        if (len > 4 && strcmp(base + len - 4, ".csv") == 0) base[len - 4] = 0;
        if (st == LOPT_OK) st = lopt_meta_plot(text, base, err);
    }
    return st;
}

int cmd_meta_train(int argc, char **argv)
{
    lopt_meta_cfg c;
    lopt_meta_cfg_default(&c);
    const char *task = "fmnist8-mlp", *arch = "paper", *est = "merged", *outer = "valid";
    const char *out = NULL, *log = NULL, *init = NULL;
    int64_t K = c.K, K_max = 0, K_grow = c.K_grow, samples = c.samples;
    int64_t outer_steps = c.outer_steps, horizon = c.horizon, seed = 0, threads = 0;
    int64_t ckpt_every = 50;
    double sigma = c.sigma, outer_lr = c.outer_lr, grad_clip = c.grad_clip;
    double loss_clip = c.loss_clip, diverge = c.diverge_factor;
    int resume = 0, first_order = 0;
    cli_opt opts[] = {
        {"task", OPT_STR, &task, "task to meta-train on (default fmnist8-mlp)", 0, 0},
        {"estimator", OPT_STR, &est, "rp|es|merged|pes (default merged)", 0, 0},
        {"arch", OPT_STR, &arch, "paper|lo|nominal (default paper)", 0, 0},
        {"K", OPT_INT, &K, "truncation length (default 20)", 0, 0},
        {"K-max", OPT_INT, &K_max, "grow K linearly up to this (default: constant K)", 0, 0},
        {"K-grow", OPT_INT, &K_grow, "outer steps over which K grows (default 2000)", 0, 0},
        {"samples", OPT_INT, &samples, "antithetic pairs per outer step (default 4)", 0, 0},
        {"sigma", OPT_FLOAT, &sigma, "perturbation scale (default 0.01)", 0, 0},
        {"outer-loss", OPT_STR, &outer, "train|valid (default valid)", 0, 0},
        {"outer-lr", OPT_FLOAT, &outer_lr, "Adam learning rate on theta (default 3e-3)", 0, 0},
        {"grad-clip", OPT_FLOAT, &grad_clip, "clip outer gradient by value (default 0.1; 0 off)", 0, 0},
        {"outer-steps", OPT_INT, &outer_steps, "outer steps (default 1000)", 0, 0},
        {"horizon", OPT_INT, &horizon, "inner steps per trajectory (default 1000)", 0, 0},
        {"seed", OPT_INT, &seed, "seed (default 0)", 0, 0},
        {"loss-clip", OPT_FLOAT, &loss_clip, "clip outer losses at this (default 10; 0 off)", 0, 0},
        {"diverge", OPT_FLOAT, &diverge, "inner loss above this times its initial value "
         "resets the trajectory (default 5)", 0, 0},
        {"first-order", OPT_FLAG, &first_order, "rp without the inner HVP (approximation)", 0, 0},
        {"threads", OPT_INT, &threads, "worker threads (default: all cores)", 0, 0},
        {"out", OPT_STR, &out, "output .lopt (default lopt-TASK.lopt); checkpoint: OUT.ckpt", 0, 0},
        {"checkpoint-every", OPT_INT, &ckpt_every, "checkpoint every N outer steps (default 50)", 0, 0},
        {"resume", OPT_FLAG, &resume, "continue from OUT.ckpt (its settings; --outer-steps may "
         "raise the target)", 0, 0},
        {"log", OPT_STR, &log, "CSV log, a row per outer step (plots beside it)", 0, 0},
        {"init", OPT_STR, &init, "start from this .lopt's theta (same arch) instead of a "
         "random one", 0, 0},
    };
    cli_spec spec = {"meta-train",
                     "lopt meta-train --task T --estimator rp|es|merged|pes [--arch paper|lo|nominal] "
                     "[--K 20] [--samples S] [--sigma X] [--outer-loss train|valid] "
                     "[--outer-lr X] [--outer-steps N] [--horizon N] [--out FILE.lopt] "
                     "[--resume] [--log FILE.csv]",
                     "Meta-trains a learned optimizer by truncated unrolls.",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    int e = parse_estimator(est);
    if (e < 0) cli_usage_error(&spec, "unknown estimator '%s' (rp|es|merged|pes)", est);
    if (strcmp(outer, "train") != 0 && strcmp(outer, "valid") != 0)
        cli_usage_error(&spec, "--outer-loss must be train or valid");
    if (ckpt_every < 1) cli_usage_error(&spec, "--checkpoint-every must be positive");
    if (strlen(task) >= sizeof c.task || strlen(arch) >= sizeof c.arch)
        cli_usage_error(&spec, "task or arch name too long");
    snprintf(c.task, sizeof c.task, "%s", task);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.estimator = (lopt_est_kind)e;
    c.K = (int)K;
    c.K_max = (int)K_max;
    c.K_grow = K_grow;
    c.samples = (int)samples;
    c.sigma = (float)sigma;
    c.outer_split = strcmp(outer, "valid") == 0 ? LOPT_SPLIT_VALID : LOPT_SPLIT_TRAIN;
    c.outer_lr = (float)outer_lr;
    c.grad_clip = (float)grad_clip;
    c.outer_steps = outer_steps;
    c.horizon = horizon;
    c.seed = (uint64_t)seed;
    c.loss_clip = (float)loss_clip;
    c.diverge_factor = (float)diverge;
    c.first_order = first_order;
    c.threads = (int)threads;
    if (K > 100000 || K_max > 100000 || samples > 4096 || threads < 0 || threads > 256)
        cli_usage_error(&spec, "a size is out of range");

    char outbuf[512], ckpt[600];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "lopt-%s.lopt", c.task);
        out = outbuf;
    }
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    lopt_err err = {0};
    lopt_meta *m = NULL;
    lopt_status st;
    if (resume) {
        st = lopt_meta_load(&m, ckpt, &err);
        if (st != LOPT_OK) cli_fail("meta-train", "cannot resume: %s", err.msg);
        for (int i = 0; i < spec.nopts; i++)
            if (opts[i].seen && strcmp(opts[i].name, "outer-steps") == 0)
                lopt_meta_set_outer_steps(m, outer_steps);
        fprintf(stderr, "meta-train: resumed %s at outer step %lld\n", ckpt,
                (long long)lopt_meta_steps_done(m));
    } else {
        st = lopt_meta_create(&m, &c, &err);
        if (st == LOPT_EUSAGE) cli_usage_error(&spec, "%s", err.msg);
        if (st != LOPT_OK) cli_fail("meta-train", "%s", err.msg);
        if (init) {
            lopt_arch ia;
            float *theta = NULL;
            st = lopt_file_read(init, &ia, &theta, NULL, &err);
            if (st == LOPT_OK) st = lopt_meta_set_theta(m, &ia, theta, &err);
            lopt_free(theta);
            if (st != LOPT_OK) {
                lopt_meta_free(m);
                cli_fail("meta-train", "--init: %s", err.msg);
            }
        }
    }
    const lopt_meta_cfg *rc = lopt_meta_config(m);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    cli_progress bar;
    cli_progress_init(&bar, "meta-train");
    int64_t start = lopt_meta_steps_done(m);
    while (lopt_meta_steps_done(m) < rc->outer_steps && !stop_signal) {
        lopt_meta_row row;
        if ((st = lopt_meta_step(m, &row, &err)) != LOPT_OK) break;
        char extra[160];
        snprintf(extra, sizeof extra, "loss %.4f K %d w_es %.2f %.0f steps/s", row.outer_loss,
                 row.K, row.w_es, row.inner_steps_per_s);
        cli_progress_update(&bar, row.step - start, rc->outer_steps - start, extra);
        /* the .lopt and the log go out with every checkpoint, so a long run can be
         * watched and its current optimizer tried */
        if (row.step % ckpt_every == 0 && (st = write_outputs(m, out, ckpt, log, &err)) != LOPT_OK)
            break;
    }
    cli_progress_end(&bar);
    if (st == LOPT_OK) st = write_outputs(m, out, ckpt, log, &err);
    int64_t done = lopt_meta_steps_done(m);
    lopt_meta_free(m);
    if (st != LOPT_OK) cli_fail("meta-train", "%s", err.msg);
    if (stop_signal)
        cli_fail("meta-train", "interrupted at outer step %lld; checkpoint %s written "
                 "(continue with --resume)", (long long)done, ckpt);
    printf("meta-train: %lld outer steps; optimizer %s, checkpoint %s%s%s\n", (long long)done,
           out, ckpt, log ? ", log " : "", log ? log : "");
    return 0;
}
