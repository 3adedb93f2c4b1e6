/* cmd_train.c - `lopt tasks` and `lopt train` (docs/design.md section 4). `--opt` names
 * a hand-designed optimizer or `learned:FILE`, a learned optimizer read from a
 * .lopt file (which carries its own step size and its own schedule, so --lr,
 * --schedule and --warmup are refused with it). `--schedule const|cosine|linear
 * [--warmup W]` spans the run's --steps (src/optim/optim.h for the mapping to
 * torch.optim.lr_scheduler). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/train.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

int cmd_tasks(int argc, char **argv)
{
    cli_spec spec = {"tasks", "lopt tasks", "Lists the standard tasks.", NULL, 0};
    cli_parse(&spec, argc, argv);
    lopt_task_info ti;
    for (int i = 0; lopt_task_nth(i, &ti); i++) printf("%-14s %s\n", ti.name, ti.summary);
    return 0;
}

typedef struct {
    cli_progress bar;
    double last_valid;
} train_ui;

static void on_step(void *user, int64_t step, int64_t steps, double loss)
{
    train_ui *ui = user;
    char extra[96];
    snprintf(extra, sizeof extra, "loss %.4f valid %.4f", loss, ui->last_valid);
    cli_progress_update(&ui->bar, step, steps, extra);
}

static void on_eval(void *user, const lopt_curve_row *r)
{
    ((train_ui *)user)->last_valid = r->valid_loss;
}

int cmd_train(int argc, char **argv)
{
    const char *task_name = NULL, *opt_name = NULL, *log = NULL, *sched_name = NULL;
    double lr = NAN;
    int64_t steps = 0, batch = 0, seed = 0, eval_every = 0, warmup = 0, t_max = 0;
    cli_opt opts[] = {
        {"task", OPT_STR, &task_name, "task name (lopt tasks)", 1, 0},
        {"opt", OPT_STR, &opt_name,
         "sgd|momentum|nesterov|rmsprop|adam, or learned:FILE.lopt", 1, 0},
        {"lr", OPT_FLOAT, &lr,
         "learning rate (default: torch.optim's; not with learned:)", 0, 0},
        {"schedule", OPT_STR, &sched_name,
         "learning-rate schedule over --steps: const (default), cosine (to 0), linear "
         "(to 0); torch.optim.lr_scheduler's semantics; not with learned:", 0, 0},
        {"warmup", OPT_INT, &warmup,
         "linear warm-up steps before the schedule (default: 5% of --steps with cosine "
         "and linear, 0 with const)", 0, 0},
        {"steps", OPT_INT, &steps, "training steps", 1, 0},
        {"batch", OPT_INT, &batch, "batch size (default: the task's)", 0, 0},
        {"seed", OPT_I64, &seed, "initialisation and data-order seed", 0, 0},
        {"eval-every", OPT_INT, &eval_every,
         "evaluate on the validation split every E steps (default steps/20)", 0, 0},
        {"log", OPT_STR, &log, "write the curve as CSV (step,train_loss,valid_loss,time_s)", 0, 0},
        {"t-max", OPT_INT, &t_max, "learned: feed the time features min(t, N) (default: the "
                                   "file's horizon, if recorded; 0: no clamp)", 0, 0},
    };
    cli_spec spec = {"train",
                     "lopt train --task T --opt sgd|momentum|nesterov|rmsprop|adam|learned:FILE "
                     "[--lr X] [--schedule const|cosine|linear] [--warmup W] --steps N "
                     "[--batch B] [--seed S] [--eval-every E] [--log FILE.csv] [--t-max N]",
                     "Trains a task from a fresh initialisation with the given optimizer, "
                     "hand-designed or learned (a .lopt file: lopt meta-train, lopt init-lopt); "
                     "prints the final train/valid/test loss and accuracy.",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (steps <= 0) cli_usage_error(&spec, "--steps must be positive");
    if (batch < 0 || batch > 65536 || (batch == 0 && cli_find(&spec, "batch")->seen))
        cli_usage_error(&spec, "--batch must be in 1..65536");
    if (eval_every < 0) cli_usage_error(&spec, "--eval-every must be positive");
    if (seed < 0) cli_usage_error(&spec, "--seed must be non-negative");
    if (!isnan(lr) && !(lr > 0)) cli_usage_error(&spec, "--lr must be positive");
    const cli_opt *tmax_opt = cli_find(&spec, "t-max");
    if (t_max < 0) cli_usage_error(&spec, "--t-max must be non-negative");

    const char *lopt_path = strncmp(opt_name, "learned:", 8) == 0 ? opt_name + 8 : NULL;
    if (lopt_path && !*lopt_path) cli_usage_error(&spec, "--opt learned: needs a file name");
    if (!lopt_path && tmax_opt->seen)
        cli_usage_error(&spec, "--t-max applies to a learned optimizer only");
    if (lopt_path && !isnan(lr))
        cli_usage_error(&spec, "--lr does not apply to a learned optimizer (its step size "
                        "is learned)");
    const cli_opt *warmup_opt = cli_find(&spec, "warmup");
    if (lopt_path && (sched_name || warmup_opt->seen))
        cli_usage_error(&spec, "--%s does not apply to a learned optimizer (it has its own "
                        "schedule)", sched_name ? "schedule" : "warmup");

    lopt_err err = {0};
    lopt_hparams hp;
    if (!lopt_path) {
        if (lopt_hparams_default(&hp, opt_name, &err) != LOPT_OK)
            cli_usage_error(&spec, "%s", err.msg);
        if (!isnan(lr)) hp.lr = (float)lr;
        if (sched_name && lopt_schedule_parse(sched_name, &hp.sched.kind, &err) != LOPT_OK)
            cli_usage_error(&spec, "%s", err.msg);
        if (!warmup_opt->seen) warmup = lopt_schedule_default_warmup(hp.sched.kind, steps);
        if (warmup < 0) cli_usage_error(&spec, "--warmup must be non-negative");
        if (warmup >= steps)
            cli_usage_error(&spec, "--warmup %lld must be less than --steps %lld",
                            (long long)warmup, (long long)steps);
        hp.sched.warmup = warmup;
        hp.sched.steps = steps;
    }

    /* the log's path before anything slow: never an input, never a device */
    if (log) {
        cli_check_distinct(&spec, "--log", log, "--opt learned:", lopt_path);
        cli_check_output(&spec, "log", log, 1, NULL);
    }

    lopt_task task;
    lopt_task_opts topts = {.batch = (int)batch};
    lopt_status st = lopt_task_create(&task, task_name, &topts, &err);
    if (st == LOPT_EUSAGE) cli_usage_error(&spec, "%s", err.msg);
    if (st != LOPT_OK) cli_fail("train", "%s", err.msg);
    lopt_optimizer opt;
    if (lopt_path) {
        lopt_arch arch;
        float *theta;
        lopt_provenance prov;
        st = lopt_file_read(lopt_path, &arch, &theta, &prov, &err);
        if (st == LOPT_OK)
            st = lopt_learned_create(&opt, &arch, theta, task.tensors, task.ntensors, task.n,
                                     &err);
        lopt_free(theta);
        if (st == LOPT_OK) {
            /* past the horizon the optimizer extrapolates (docs/design.md, "The
             * horizon"): clamp there, as the C API and the PyTorch optimizer do */
            int64_t h = prov.horizon <= (uint64_t)INT64_MAX ? (int64_t)prov.horizon : 0;
            if (!tmax_opt->seen) t_max = h;
            lopt_learned_set_t_max(&opt, t_max);
            if (h > 0 && steps > h)
                fprintf(stderr, "train: note: %lld steps, past the %lld-step horizon %s was "
                        "meta-trained for; %s\n", (long long)steps, (long long)h, lopt_path,
                        t_max > 0 ? "its time features are clamped at t = --t-max (0: off)"
                                  : "no clamp (--t-max 0): expect it to drift");
        }
        if (st != LOPT_OK) {
            task.free(&task);
            cli_fail("train", "%s", err.msg);
        }
    } else if (lopt_optimizer_create(&opt, opt_name, &hp, task.n, &err) != LOPT_OK) {
        cli_usage_error(&spec, "%s", err.msg);
    }

    train_ui ui = {.last_valid = NAN};
    /* SIGINT/SIGTERM stop the run between two steps; the log keeps the rows so far */
    cli_signals_install(NULL);
    cli_progress_init(&ui.bar, "train");
    lopt_train_opts to = {.steps = steps,
                          .eval_every = eval_every ? eval_every : (steps >= 20 ? steps / 20 : 1),
                          .seed = (uint64_t)seed,
                          .on_step = on_step,
                          .on_eval = on_eval,
                          .user = &ui,
                          .stop = &cli_stop};
    lopt_train_result res;
    st = lopt_train_run(&task, &opt, &to, &res, NULL, &err);
    cli_progress_end(&ui.bar);
    lopt_err werr = {0};
    cli_writing = 1;
    lopt_status wst = log ? lopt_curve_write_csv(log, &res, &werr) : LOPT_OK;
    cli_writing = 0;
    if (st == LOPT_EINTR && log && wst == LOPT_OK)
        snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg),
                 "; %s has the rows so far", log);
    if (st == LOPT_OK && res.nrows > 0) {
        const lopt_curve_row *r = &res.rows[res.nrows - 1];
        if (lopt_path)
            printf("task %s opt learned:%s steps %lld seed %lld\n", task.name, lopt_path,
                   (long long)steps, (long long)seed);
        else if (sched_name || hp.sched.warmup)
            printf("task %s opt %s lr %g schedule %s warmup %lld steps %lld seed %lld\n",
                   task.name, opt.name, hp.lr, lopt_schedule_name(hp.sched.kind),
                   (long long)hp.sched.warmup, (long long)steps, (long long)seed);
        else
            printf("task %s opt %s lr %g steps %lld seed %lld\n", task.name, opt.name, hp.lr,
                   (long long)steps, (long long)seed);
        printf("final train_loss %.4f valid_loss %.4f valid_acc %.4f test_loss %.4f "
               "test_acc %.4f time_s %.2f\n",
               r->train_loss, r->valid_loss, r->valid_acc, res.test_loss, res.test_acc,
               r->time_s);
    }
    lopt_train_result_free(&res);
    opt.free(&opt);
    task.free(&task);
    if (st != LOPT_OK) cli_fail("train", "%s", err.msg);
    if (wst != LOPT_OK) cli_fail("train", "%s", werr.msg);
    return 0;
}
