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

/* the command's state */
typedef struct {
    const char *task_name, *opt_name, *log, *sched_name;
    double lr;                    /* NAN: the optimizer's default */
    int64_t steps, batch, seed, eval_every, warmup, t_max;
    cli_opt opts[12];
    int nopts;
    cli_spec spec;
    const char *lopt_path;        /* FILE of --opt learned:FILE; NULL for a hand-designed one */
    lopt_hparams hp;              /* a hand-designed optimizer's */
    lopt_task task;
    lopt_optimizer opt;
    train_ui ui;
} train_cli;

static void define_flags(train_cli *s)
{
    s->lr = NAN;   /* a rule, not a number: torch.optim's for each optimizer */
    const cli_opt opts[] = {
        {"task", OPT_STR, &s->task_name, "task name (lopt tasks)", 1, 0},
        {"opt", OPT_STR, &s->opt_name,
         "sgd|momentum|nesterov|rmsprop|adam, or learned:FILE.lopt", 1, 0},
        {"lr", OPT_FLOAT, &s->lr,
         "learning rate (default: torch.optim's; not with learned:)", 0, 0},
        {"schedule", OPT_STR, &s->sched_name,
         "learning-rate schedule over --steps: const (default), cosine (to 0), linear "
         "(to 0); torch.optim.lr_scheduler's semantics; not with learned:", 0, 0},
        {"warmup", OPT_INT, &s->warmup,
         "linear warm-up steps before the schedule (default: 5% of --steps with cosine "
         "and linear, 0 with const)", 0, 0},
        {"steps", OPT_INT, &s->steps, "training steps", 1, 0},
        {"batch", OPT_INT, &s->batch, "batch size (default: the task's)", 0, 0},
        {"seed", OPT_I64, &s->seed, "initialisation and data-order seed", 0, 0},
        {"eval-every", OPT_INT, &s->eval_every,
         "evaluate on the validation split every E steps (default steps/20)", 0, 0},
        {"log", OPT_STR, &s->log, "write the curve as CSV (step,train_loss,valid_loss,time_s)",
         0, 0},
        {"t-max", OPT_INT, &s->t_max, "learned: feed the time features min(t, N) (default: the "
         "file's horizon, if recorded; 0: no clamp)", 0, 0},
    };
    s->nopts = (int)(sizeof opts / sizeof *opts);
    LOPT_ASSERT(s->nopts <= (int)(sizeof s->opts / sizeof *s->opts));
    memcpy(s->opts, opts, sizeof opts);
    s->spec = (cli_spec){"train",
                     "lopt train --task T --opt sgd|momentum|nesterov|rmsprop|adam|learned:FILE "
                     "[--lr X] [--schedule const|cosine|linear] [--warmup W] --steps N "
                     "[--batch B] [--seed S] [--eval-every E] [--log FILE.csv] [--t-max N]",
                     "Trains a task from a fresh initialisation with the given optimizer, "
                     "hand-designed or learned (a .lopt file: lopt meta-train, lopt init-lopt); "
                     "prints the final train/valid/test loss and accuracy.",
                     s->opts, s->nopts};
}

/* the numbers on their own, then which of them a learned optimizer refuses: it
 * carries its own step size and schedule */
static void check_flags(train_cli *s)
{
    const cli_spec *spec = &s->spec;
    if (s->steps <= 0) cli_usage_error(spec, "--steps must be positive");
    if (s->batch < 0 || s->batch > 65536 || (s->batch == 0 && cli_find(spec, "batch")->seen))
        cli_usage_error(spec, "--batch must be in 1..65536");
    if (s->eval_every < 0) cli_usage_error(spec, "--eval-every must be positive");
    if (s->seed < 0) cli_usage_error(spec, "--seed must be non-negative");
    if (!isnan(s->lr) && !(s->lr > 0)) cli_usage_error(spec, "--lr must be positive");
    if (s->t_max < 0) cli_usage_error(spec, "--t-max must be non-negative");

    s->lopt_path = strncmp(s->opt_name, "learned:", 8) == 0 ? s->opt_name + 8 : NULL;
    if (s->lopt_path && !*s->lopt_path) cli_usage_error(spec, "--opt learned: needs a file name");
    if (!s->lopt_path && cli_find(spec, "t-max")->seen)
        cli_usage_error(spec, "--t-max applies to a learned optimizer only");
    if (s->lopt_path && !isnan(s->lr))
        cli_usage_error(spec, "--lr does not apply to a learned optimizer (its step size "
                        "is learned)");
    if (s->lopt_path && (s->sched_name || cli_find(spec, "warmup")->seen))
        cli_usage_error(spec, "--%s does not apply to a learned optimizer (it has its own "
                        "schedule)", s->sched_name ? "schedule" : "warmup");
}

/* a hand-designed optimizer's hyperparameters: its defaults, then --lr, --schedule and
 * --warmup (whose default depends on the schedule) */
static void build_hparams(train_cli *s)
{
    const cli_spec *spec = &s->spec;
    lopt_err err = {0};
    if (lopt_hparams_default(&s->hp, s->opt_name, &err) != LOPT_OK)
        cli_usage_error(spec, "%s", err.msg);
    if (!isnan(s->lr)) s->hp.lr = (float)s->lr;
    if (s->sched_name && lopt_schedule_parse(s->sched_name, &s->hp.sched.kind, &err) != LOPT_OK)
        cli_usage_error(spec, "%s", err.msg);
    if (!cli_find(spec, "warmup")->seen)
        s->warmup = lopt_schedule_default_warmup(s->hp.sched.kind, s->steps);
    if (s->warmup < 0) cli_usage_error(spec, "--warmup must be non-negative");
    if (s->warmup >= s->steps)
        cli_usage_error(spec, "--warmup %lld must be less than --steps %lld",
                        (long long)s->warmup, (long long)s->steps);
    s->hp.sched.warmup = s->warmup;
    s->hp.sched.steps = s->steps;
}

/* the log's path before anything slow: never an input, never a device */
static void check_log(const train_cli *s)
{
    cli_check_distinct(&s->spec, "--log", s->log, "--opt learned:", s->lopt_path);
    cli_check_output(&s->spec, "log", s->log, 1, NULL);
}

static void create_task(train_cli *s)
{
    lopt_err err = {0};
    lopt_task_opts topts = {.batch = (int)s->batch};
    lopt_status st = lopt_task_create(&s->task, s->task_name, &topts, &err);
    if (st == LOPT_EUSAGE) cli_usage_error(&s->spec, "%s", err.msg);
    if (st != LOPT_OK) cli_fail("train", "%s", err.msg);
}

/* the learned optimizer of --opt learned:FILE, for the task's tensors */
static void load_learned(train_cli *s)
{
    lopt_err err = {0};
    lopt_arch arch;
    float *theta = NULL;
    lopt_provenance prov;
    lopt_status st = lopt_file_read(s->lopt_path, &arch, &theta, &prov, &err);
    if (st == LOPT_OK)
        st = lopt_learned_create(&s->opt, &arch, theta, s->task.tensors, s->task.ntensors,
                                 s->task.n, &err);
    lopt_free(theta);
    if (st != LOPT_OK) {
        s->task.free(&s->task);
        cli_fail("train", "%s", err.msg);
    }
    /* past the horizon the optimizer extrapolates (docs/design.md, "The horizon"):
     * clamp there, as the C API and the PyTorch optimizer do */
    int64_t h = prov.horizon <= (uint64_t)INT64_MAX ? (int64_t)prov.horizon : 0;
    if (!cli_find(&s->spec, "t-max")->seen) s->t_max = h;
    lopt_learned_set_t_max(&s->opt, s->t_max);
    if (h > 0 && s->steps > h)
        fprintf(stderr, "train: note: %lld steps, past the %lld-step horizon %s was "
                "meta-trained for; %s\n", (long long)s->steps, (long long)h, s->lopt_path,
                s->t_max > 0 ? "its time features are clamped at t = --t-max (0: off)"
                             : "no clamp (--t-max 0): expect it to drift");
}

static void create_optimizer(train_cli *s)
{
    lopt_err err = {0};
    if (s->lopt_path)
        load_learned(s);
    else if (lopt_optimizer_create(&s->opt, s->opt_name, &s->hp, s->task.n, &err) != LOPT_OK)
        cli_usage_error(&s->spec, "%s", err.msg);
}

/* the run's header and final line (stdout), from the last evaluation */
static void print_result(const train_cli *s, const lopt_train_result *res)
{
    const lopt_curve_row *r = &res->rows[res->nrows - 1];
    const lopt_hparams *hp = &s->hp;
    if (s->lopt_path)
        printf("task %s opt learned:%s steps %lld seed %lld\n", s->task.name, s->lopt_path,
               (long long)s->steps, (long long)s->seed);
    else if (s->sched_name || hp->sched.warmup)
        printf("task %s opt %s lr %g schedule %s warmup %lld steps %lld seed %lld\n",
               s->task.name, s->opt.name, hp->lr, lopt_schedule_name(hp->sched.kind),
               (long long)hp->sched.warmup, (long long)s->steps, (long long)s->seed);
    else
        printf("task %s opt %s lr %g steps %lld seed %lld\n", s->task.name, s->opt.name,
               hp->lr, (long long)s->steps, (long long)s->seed);
    printf("final train_loss %.4f valid_loss %.4f valid_acc %.4f test_loss %.4f "
           "test_acc %.4f time_s %.2f\n",
           r->train_loss, r->valid_loss, r->valid_acc, res->test_loss, res->test_acc,
           r->time_s);
}

/* trains and prints; --log is written whatever the outcome, so a diverged or
 * interrupted run keeps its rows so far. Failures exit; returns 0 */
static int run(train_cli *s)
{
    lopt_err err = {0};
    s->ui = (train_ui){.last_valid = NAN};
    /* SIGINT/SIGTERM stop the run between two steps; the log keeps the rows so far */
    cli_signals_install(NULL);
    cli_progress_init(&s->ui.bar, "train");
    int64_t steps = s->steps;
    lopt_train_opts to = {.steps = steps,
                          .eval_every = s->eval_every ? s->eval_every
                                                      : (steps >= 20 ? steps / 20 : 1),
                          .seed = (uint64_t)s->seed,
                          .on_step = on_step,
                          .on_eval = on_eval,
                          .user = &s->ui,
                          .stop = &cli_stop};
    lopt_train_result res;
    lopt_status st = lopt_train_run(&s->task, &s->opt, &to, &res, NULL, &err);
    cli_progress_end(&s->ui.bar);
    lopt_err werr = {0};
    cli_writing = 1;
    lopt_status wst = s->log ? lopt_curve_write_csv(s->log, &res, &werr) : LOPT_OK;
    cli_writing = 0;
    if (st == LOPT_EINTR && s->log && wst == LOPT_OK)
        snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg),
                 "; %s has the rows so far", s->log);
    if (st == LOPT_OK && res.nrows > 0) print_result(s, &res);
    lopt_train_result_free(&res);
    s->opt.free(&s->opt);
    s->task.free(&s->task);
    if (st != LOPT_OK) cli_fail("train", "%s", err.msg);
    if (wst != LOPT_OK) cli_fail("train", "%s", werr.msg);
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_cli s;
    memset(&s, 0, sizeof s);
    define_flags(&s);
    cli_parse(&s.spec, argc, argv);
    check_flags(&s);
    if (!s.lopt_path) build_hparams(&s);
    if (s.log) check_log(&s);
    create_task(&s);
    create_optimizer(&s);
    return run(&s);
}
