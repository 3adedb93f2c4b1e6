/* cmd_compare.c - `lopt compare` (docs/design.md sections 4 and 6): a learned optimizer
 * against hand-designed baselines whose learning rates are tuned on a log grid on
 * tuning seeds, all run on held-out test seeds; the table on stdout, curves,
 * tuning runs, summary and plots in --out. A baseline NAME:SCHEDULE (adam:cosine)
 * trains under that learning-rate schedule after --warmup steps of warm-up. The
 * engine is src/eval/compare.c. Under mpirun the ranks split the tuning runs;
 * rank 0 runs the test runs, writes and prints (docs/scale-out.md). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/out.h"
#include "eval/compare.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

typedef struct {
    cli_progress bar;
    int64_t steps;
    lopt_compare_run_info run;
    char what[160];
    const char *task_name;     /* for the parallel tuning workers' own tasks */
} compare_ui;

static lopt_status make_task(void *user, lopt_task *t, lopt_err *err)
{
    const compare_ui *ui = user;
    lopt_task_opts topts = {0};
    return lopt_task_create(t, ui->task_name, &topts, err);
}

/* a line on stderr that does not collide with the redrawn bar */
static void note(compare_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(compare_ui *ui, const char *fmt, ...)
{
    if (ui->bar.quiet) return;   /* not rank 0 */
    va_list ap;
    va_start(ap, fmt);
    if (ui->bar.tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "compare: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
}

static void on_run(void *user, const lopt_compare_run_info *info)
{
    compare_ui *ui = user;
    ui->run = *info;
    if (isnan(info->lr))
        snprintf(ui->what, sizeof ui->what, "%s %s seed %llu (run %d of %d)", info->phase,
                 info->optimizer, (unsigned long long)info->seed, info->run, info->nruns);
    else
        snprintf(ui->what, sizeof ui->what, "%s %s lr %.3g seed %llu (run %d of %d)",
                 info->phase, info->optimizer, info->lr, (unsigned long long)info->seed,
                 info->run, info->nruns);
    if (!ui->bar.tty) note(ui, "%s", ui->what);
}

static void on_step(void *user, int64_t step, int64_t steps, double loss)
{
    compare_ui *ui = user;
    char extra[200];
    snprintf(extra, sizeof extra, "%s loss %.4f", ui->what, loss);
    int64_t total = (int64_t)ui->run.nruns * ui->steps;
    cli_progress_update(&ui->bar, (int64_t)(ui->run.run - 1) * ui->steps + step, total, extra);
}

static void on_tuned(void *user, const char *name, double lr, double valid_loss, int edge)
{
    compare_ui *ui = user;
    note(ui, "%s: tuned lr %.3g (mean final valid loss %.4g)", name, lr, valid_loss);
    if (edge)
        note(ui, "warning: %s's best lr %.3g is the %s end of the grid: the grid may be "
             "too narrow (--lr-range)", name, lr, edge < 0 ? "low" : "high");
}

/* "a,b,c" -> names (pointers into buf, a copy of s) of option flag; returns the count */
static int split_list(const cli_spec *spec, const char *flag, const char *s, char *buf,
                      size_t cap, const char **names, int max)
{
    if (snprintf(buf, cap, "%s", s) >= (int)cap) cli_usage_error(spec, "%s too long", flag);
    int n = 0;
    for (char *tok = buf;;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        if (!*tok) cli_usage_error(spec, "empty name in %s '%s'", flag, s);
        if (n == max)
            cli_usage_error(spec, "at most %d %s", max,
                            strcmp(flag, "--baselines") == 0 ? "baselines"
                                                             : "further learned optimizers");
        names[n++] = tok;
        if (!comma) break;
        tok = comma + 1;
    }
    return n;
}

/* The directories this run creates for --out (deepest first), so a run that fails
 * or is interrupted before it writes anything leaves no empty folder behind. Filled
 * before the signal handler may use them; rmdir only removes empty ones. */
#define MAX_CREATED 32
static char created[MAX_CREATED][4096];
static int ncreated;

static void note_created(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return;
    ncreated = 0;
    for (;;) {
        size_t len = strlen(p);
        while (len > 1 && p[len - 1] == '/') p[--len] = 0;
        struct stat sb;
        if (!len || strcmp(p, ".") == 0 || stat(p, &sb) == 0 || ncreated == MAX_CREATED) break;
        snprintf(created[ncreated++], sizeof created[0], "%s", p);
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) break;
        *slash = 0;
    }
}

static void remove_created(void)
{
    for (int i = 0; i < ncreated; i++) rmdir(created[i]);   /* async-signal-safe */
}

/* SIGINT/SIGTERM before the results are being written: nothing to keep */
static void on_signal_now(int sig)
{
    (void)sig;
    remove_created();
    static const char msg[] = "lopt compare: interrupted; nothing written\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(EXIT_RUNTIME);
}

/* cli_fail after removing the folders this run created (still empty) */
static void fail_clean(const char *fmt, const char *msg) __attribute__((noreturn));
static void fail_clean(const char *fmt, const char *msg)
{
    remove_created();
    cli_fail("compare", fmt, msg);
}

static void free_thetas(float *theta, float **extra, int n)
{
    lopt_free(theta);
    for (int k = 0; k < n; k++) lopt_free(extra[k]);
}

/* the command's state */
typedef struct {
    const char *task_name, *lopt_path, *baselines, *extra_s, *seeds_s, *out, *lr_range;
    int64_t warmup;
    char baselines_default[256], seeds_default[LOPT_COMPARE_MAX_SEEDS * 21];
    cli_opt opts[16];
    int nopts;
    cli_spec spec;
    char extrabuf[2048], namebuf[512];
    const char *extra_spec[LOPT_COMPARE_MAX_EXTRA], *names[LOPT_COMPARE_MAX_OPT];
    lopt_compare_learned extra[LOPT_COMPARE_MAX_EXTRA];
    int nx, nb, ns;
    uint64_t seeds[LOPT_COMPARE_MAX_SEEDS];
    double lo[LOPT_COMPARE_MAX_OPT], hi[LOPT_COMPARE_MAX_OPT];
    lopt_arch arch, extra_arch[LOPT_COMPARE_MAX_EXTRA];
    float *theta, *extra_theta[LOPT_COMPARE_MAX_EXTRA];
    compare_ui ui;
    lopt_compare_opts co;   /* the flags bound to its fields: lopt_compare_opts_default */
    char defdir[96];
    const char *outdir;
} compare_cli;

static void define_flags(compare_cli *s)
{
    lopt_compare_opts_default(&s->co);
    size_t len = 0;
    for (int i = 0; i < s->co.nbaselines && len < sizeof s->baselines_default; i++)
        len += (size_t)snprintf(s->baselines_default + len, sizeof s->baselines_default - len,
                                "%s%s", i ? "," : "", s->co.baselines[i]);
    s->baselines = s->baselines_default;
    cli_format_seeds(s->co.seeds, s->co.nseeds, s->seeds_default, sizeof s->seeds_default);
    s->seeds_s = s->seeds_default;
    s->warmup = s->co.warmup;   /* a rule, not a number: OPT_INT, the help says it */
    const cli_opt opts[] = {
        {"task", OPT_STR, &s->task_name, "task name (lopt tasks)", 1, 0},
        {"lopt", OPT_STR, &s->lopt_path,
         "the learned optimizer (.lopt); without it, baselines only", 0, 0},
        {"lopt-extra", OPT_STR, &s->extra_s,
         "NAME:FILE[,NAME:FILE...]: further learned optimizers, each a row called NAME (e.g. "
         "warm:start.lopt, the untrained warm start); at most 3", 0, 0},
        {"baselines", OPT_STR, &s->baselines,
         "comma-separated NAME or NAME:SCHEDULE, NAME one of sgd, momentum, nesterov, rmsprop, "
         "adam and SCHEDULE one of const, cosine (to 0), linear (to 0), e.g. "
         "adam:cosine,momentum:cosine,adam; each its own tuned row", 0, 0},
        {"warmup", OPT_INT, &s->warmup,
         "linear warm-up steps of the NAME:SCHEDULE baselines (default: 5% of --steps for "
         "cosine and linear, 0 for const); bare names never warm up", 0, 0},
        {"steps", OPT_I64, &s->co.steps, "training steps of every run", 0, 0},
        {"seeds", OPT_STR, &s->seeds_s, "test seeds", 0, 0},
        {"out", OPT_STR, &s->out, "output directory, created if missing (default compare-TASK)",
         0, 0},
        {"grid-points", OPT_I32, &s->co.grid_points, "learning rates per baseline, log-spaced",
         0, 0},
        {"tune-seeds", OPT_I32, &s->co.tune_seeds, "tuning seeds 10000.. per learning rate",
         0, 0},
        {"eval-every", OPT_I64, &s->co.eval_every, "validation every E steps (0: steps/20)", 0,
         0},
        {"lr-range", OPT_STR, &s->lr_range,
         "LO:HI learning-rate grid for every baseline (default per optimizer: adam, rmsprop "
         "1e-4:1e-1; sgd, momentum, nesterov 1e-3:1)", 0, 0},
        {"jobs", OPT_I32, &s->co.jobs, "tuning runs in parallel, one core each (0: every "
         "core); test runs always run one at a time", 0, 0},
    };
    s->nopts = (int)(sizeof opts / sizeof *opts);
    LOPT_ASSERT(s->nopts <= (int)(sizeof s->opts / sizeof *s->opts));
    memcpy(s->opts, opts, sizeof opts);
    s->spec = (cli_spec){"compare",
                     "lopt compare --task T [--lopt FILE] [--lopt-extra NAME:FILE] "
                     "[--baselines adam,adam:cosine,...] [--warmup W] [--steps N] "
                     "[--seeds 1000,1001,1002] [--out DIR] [--grid-points N] [--tune-seeds N] "
                     "[--eval-every E] [--lr-range LO:HI] [--jobs N]",
                     "Compares a learned optimizer with hand-designed baselines on held-out "
                     "seeds. Each baseline's learning rate is tuned on a log grid by the mean "
                     "final validation loss over tuning seeds 10000.. (disjoint from the test "
                     "seeds); then every optimizer trains on every test seed. Prints the table "
                     "(final losses and accuracies, mean ± std; steps and wall-clock to reach "
                     "the strongest baseline's final validation loss, and tuned constant-lr "
                     "adam's when adam is a baseline; speedups) and writes "
                     "curves.csv, tuning.csv, summary.json, summary.md and loss plots "
                     "(.svg, .png) into --out.",
                     s->opts, s->nopts};
}

/* the lists the flags hold: --lopt-extra, --baselines, --seeds, --lr-range (the
 * numbers are lopt_compare_check's) */
static void parse_lists(compare_cli *s)
{
    const cli_spec *spec = &s->spec;
    if (s->lopt_path && !*s->lopt_path) cli_usage_error(spec, "--lopt needs a file name");
    if (s->out && !*s->out) cli_usage_error(spec, "--out needs a directory name");
    s->nx = s->extra_s ? split_list(spec, "--lopt-extra", s->extra_s, s->extrabuf,
                                    sizeof s->extrabuf, s->extra_spec, LOPT_COMPARE_MAX_EXTRA)
                       : 0;
    for (int k = 0; k < s->nx; k++) {
        /* extra_spec[k] points into extrabuf */
        char *tok = s->extrabuf + (s->extra_spec[k] - s->extrabuf);
        char *colon = strchr(tok, ':');
        if (!colon || colon == s->extra_spec[k] || !colon[1])
            cli_usage_error(spec, "malformed --lopt-extra '%s' (want NAME:FILE, e.g. "
                            "warm:start.lopt)", s->extra_spec[k]);
        *colon = 0;
        s->extra[k] = (lopt_compare_learned){s->extra_spec[k], NULL, NULL, colon + 1};
    }
    s->nb = split_list(spec, "--baselines", s->baselines, s->namebuf, sizeof s->namebuf,
                       s->names, LOPT_COMPARE_MAX_OPT - (s->lopt_path ? 1 : 0) - s->nx);
    int warmup_given = cli_find(spec, "warmup")->seen, nsched = 0;
    for (int i = 0; i < s->nb; i++) nsched += strchr(s->names[i], ':') != NULL;
    if (warmup_given && s->warmup < 0) cli_usage_error(spec, "--warmup must be non-negative");
    if (warmup_given && !nsched)
        cli_usage_error(spec, "--warmup applies to NAME:SCHEDULE baselines (e.g. adam:cosine) "
                        "and --baselines has none");
    s->ns = cli_parse_seeds(spec, "seeds", s->seeds_s, s->seeds, LOPT_COMPARE_MAX_SEEDS);
    if (s->lr_range) {
        double a, b;
        if (!cli_parse_range(s->lr_range, &a, &b))
            cli_usage_error(spec, "malformed --lr-range '%s' (want LO:HI with 0 < LO < HI, "
                            "e.g. 1e-5:1e-1)", s->lr_range);
        for (int i = 0; i < s->nb; i++) s->lo[i] = a, s->hi[i] = b;
    }
}

/* the engine's options (the bound flags are in s->co already), checked: usage errors
 * before anything slow */
static void build_opts(compare_cli *s)
{
    lopt_compare_opts *co = &s->co;
    s->ui = (compare_ui){.steps = co->steps, .task_name = s->task_name};
    co->baselines = s->names;
    co->nbaselines = s->nb;
    co->warmup = s->warmup;
    co->lr_lo = s->lr_range ? s->lo : NULL;
    co->lr_hi = s->lr_range ? s->hi : NULL;
    co->seeds = s->seeds;
    co->nseeds = s->ns;
    co->learned_source = s->lopt_path;
    co->extra = s->extra;
    co->nextra = s->nx;
    co->make_task = make_task;
    co->on_run = on_run;
    co->on_step = on_step;
    co->on_tuned = on_tuned;
    co->user = &s->ui;
    lopt_err err = {0};
    /* split_list kept a slot for the learned optimizer */
    if (lopt_compare_check(&s->co, &err) != LOPT_OK) cli_usage_error(&s->spec, "%s", err.msg);
}

/* --lopt and --lopt-extra's files */
static void load_learned(compare_cli *s)
{
    lopt_err err = {0};
    if (s->lopt_path) {
        lopt_status rst = lopt_file_read(s->lopt_path, &s->arch, &s->theta, NULL, &err);
        cli_settle(&s->spec, NULL, rst, &err);
        if (rst != LOPT_OK) cli_fail("compare", "%s", err.msg);
        s->co.arch = &s->arch;
        s->co.theta = s->theta;
    }
    for (int k = 0; k < s->nx; k++) {
        lopt_status rst = lopt_file_read(s->extra[k].source, &s->extra_arch[k],
                                         &s->extra_theta[k], NULL, &err);
        cli_settle(&s->spec, NULL, rst, &err);
        if (rst != LOPT_OK) {
            free_thetas(s->theta, s->extra_theta, k);
            cli_fail("compare", "%s", err.msg);
        }
        s->extra[k].arch = &s->extra_arch[k];
        s->extra[k].theta = s->extra_theta[k];
    }
}

/* --out (default compare-TASK) created by rank 0, and each file it will hold a regular
 * file or absent, none of them an input */
static void prepare_outdir(compare_cli *s, lopt_task *task)
{
    lopt_err err = {0};
    snprintf(s->defdir, sizeof s->defdir, "compare-%s", task->name);
    s->outdir = s->out ? s->out : s->defdir;
    if (lopt_dist_rank() == 0) {
        note_created(s->outdir);
        cli_signals_install(on_signal_now);
    }
    lopt_status st = lopt_dist_rank() == 0 ? lopt_outdir_create(s->outdir, &err) : LOPT_OK;
    cli_settle(&s->spec, NULL, st, &err);
    if (st != LOPT_OK) {
        free_thetas(s->theta, s->extra_theta, s->nx);
        task->free(task);
        fail_clean("%s", err.msg);
    }
    static const char *const outputs[] = {
        "curves.csv", "tuning.csv", "summary.json", "summary.md", "valid_loss_vs_step.svg",
        "valid_loss_vs_step.png", "valid_loss_vs_time.svg", "valid_loss_vs_time.png",
        "train_loss_vs_step.svg", "train_loss_vs_step.png", "train_valid_loss_vs_step.svg",
        "train_valid_loss_vs_step.png"};
    for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", s->outdir, outputs[i]);
        lopt_err oerr = {0};
        if (lopt_check_output(path, &oerr) != LOPT_OK) fail_clean("%s", oerr.msg);
        const char *in[1 + LOPT_COMPARE_MAX_EXTRA] = {s->lopt_path};
        for (int k = 0; k < s->nx; k++) in[1 + k] = s->extra[k].source;
        for (int k = 0; k <= s->nx; k++)
            if (in[k] && lopt_same_file(in[k], path)) {
                remove_created();
                cli_usage_error(&s->spec, "--out %s would overwrite the input %s", s->outdir,
                                in[k]);
            }
    }
}

/* rank 0: the files and the table */
static int report(compare_cli *s, lopt_compare_result *res)
{
    lopt_err err = {0};
    cli_writing = 1;   /* from here a signal waits for the files to be complete */
    lopt_status st = lopt_compare_write(res, s->outdir, &err);
    cli_writing = 0;
    char *md = lopt_compare_markdown(res);
    lopt_compare_free(res);
    if (st != LOPT_OK) {
        free(md);
        cli_fail_all("compare", "%s", err.msg);   /* rank 0's, the others have left */
    }
    fputs(md, stdout);
    free(md);
    printf("\nwrote %s/: curves.csv tuning.csv summary.json summary.md "
           "valid_loss_vs_step.{svg,png} valid_loss_vs_time.{svg,png} "
           "train_loss_vs_step.{svg,png} train_valid_loss_vs_step.{svg,png}\n", s->outdir);
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    cli_join("compare", argc, argv);
    compare_cli s;
    memset(&s, 0, sizeof s);
    define_flags(&s);
    cli_parse(&s.spec, argc, argv);
    parse_lists(&s);
    build_opts(&s);
    /* then the .lopt files, then the data: bad input fails before anything slow */
    load_learned(&s);
    lopt_err err = {0};
    lopt_task task;
    lopt_task_opts topts = {0};
    lopt_status st = lopt_task_create(&task, s.task_name, &topts, &err);
    cli_settle(&s.spec, NULL, st, &err);
    if (st != LOPT_OK) {
        free_thetas(s.theta, s.extra_theta, s.nx);
        if (st == LOPT_EUSAGE) cli_usage_error(&s.spec, "%s", err.msg);
        cli_fail("compare", "%s", err.msg);
    }
    prepare_outdir(&s, &task);
    cli_progress_init(&s.ui.bar, "compare");
    lopt_compare_result res;
    st = lopt_compare_run(&task, &s.co, &res, &err);
    cli_progress_end(&s.ui.bar);
    free_thetas(s.theta, s.extra_theta, s.nx);
    task.free(&task);
    if (lopt_dist_rank() != 0) {
        /* its tuning runs are done; a failure there is shared, and rank 0 reports it */
        lopt_compare_free(&res);
        lopt_dist_exit(st == LOPT_OK ? 0 : EXIT_RUNTIME);
    }
    if (st != LOPT_OK) {
        lopt_compare_free(&res);
        /* the other ranks are leaving too (tuning failures are shared, the test
         * runs are rank 0's): no abort needed */
        remove_created();
        cli_fail_all("compare", "%s", err.msg);
    }
    return report(&s, &res);
}
