/* cmd_pathology.c - `lopt pathology surface|gradvar|bias` (docs/design.md sections 1.4 and 4):
 * the pathology studies of Metz et al. 2019 on lopt's unrolls; a short table on
 * stdout, CSV, summary.json and plots in --out. The engine is src/eval/pathology*.c.
 *
 * A table of three small commands, one per study. Each binds its flags to the fields
 * of the study's options (the defaults and the range checks are the library's:
 * lopt_<study>_opts_default, lopt_<study>_check) and hands over to run_study, which
 * does what they share: the learned optimizer studied, the task, progress, output. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/pathology.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

#define PATH_USAGE "lopt pathology surface|gradvar|bias [--task T] [--out DIR] [options]"
#define MAX_OPTS 32

static const char *const split_names[] = {"train", "valid", NULL};   /* = lopt_split */

/* what every study's command shares */
typedef struct {
    const char *study;
    char command[32], usage[512], outhelp[96], seedhelp[96], Ks_default[256];
    cli_opt opts[MAX_OPTS];
    int nopts;
    cli_spec spec;
    /* flags of every study */
    const char *task_name, *out, *Ks_s;
    int64_t seed;
    int Ks[LOPT_PATHOLOGY_MAX_K], nK;
    /* the learned optimizer studied (surface, gradvar) */
    lopt_pathology_common *c;
    const char *lopt_path, *arch_name;
    double step_mult, loss_clip;
    int split;
    cli_choice split_choice;
    lopt_arch arch;
    float *theta;
    char source[600];
    /* the task */
    double grad_noise;
    cli_progress bar;
} study_cli;

static void on_progress(void *user, int64_t done, int64_t total, const char *what)
{
    study_cli *s = user;
    cli_progress_update(&s->bar, done, total, what);
}

/* "1,10,100" -> Ks; usage error on anything else */
static int parse_Ks(const cli_spec *spec, const char *what, const char *str, int *Ks)
{
    int n = 0;
    const char *p = str;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long v = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
        if (v < 1 || errno || (*end && *end != ',') || v > 100000000)
            cli_usage_error(spec, "malformed --%s '%s' (want comma-separated positive "
                            "integers, e.g. 1,10,100)", what, str);
        if (n == LOPT_PATHOLOGY_MAX_K)
            cli_usage_error(spec, "at most %d unroll lengths", LOPT_PATHOLOGY_MAX_K);
        Ks[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

/* the inverse: Ks as "1,10,100" (a default for --help) */
static void format_Ks(const int *Ks, int n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", Ks[i]);
}

static void add(study_cli *s, const cli_opt *o, size_t n)
{
    LOPT_ASSERT(s->nopts + (int)n <= MAX_OPTS);
    for (size_t i = 0; i < n; i++) s->opts[s->nopts++] = o[i];
}
#define ADD(s, arr) add(s, arr, sizeof arr / sizeof *arr)

/* --task, --out, --Ks, --seed; c: the learned optimizer's flags too (surface, gradvar).
 * Ks (nK): the study's default unroll lengths, or NULL when they follow a rule that
 * Ks_help states. */
static void init(study_cli *s, const char *study, lopt_pathology_common *c, uint64_t seed,
                 const int *Ks, int nK, const char *Ks_help)
{
    memset(s, 0, sizeof *s);
    s->study = study;
    s->c = c;
    s->task_name = c ? "fmnist8-mlp" : "quadratic";
    if (Ks) {
        format_Ks(Ks, nK, s->Ks_default, sizeof s->Ks_default);
        s->Ks_s = s->Ks_default;
    }
    s->seed = -1;
    snprintf(s->command, sizeof s->command, "pathology %s", study);
    snprintf(s->outhelp, sizeof s->outhelp, "output directory, created if missing (default "
             "pathology-%s)", study);
    snprintf(s->seedhelp, sizeof s->seedhelp, "%s (default %llu)",
             c ? "task instance, directions, perturbations" : "first task instance",
             (unsigned long long)seed);
    cli_opt common[] = {
        {"task", OPT_STR, &s->task_name, "task name", 0, 0},
        {"out", OPT_STR, &s->out, s->outhelp, 0, 0},
        {"Ks", OPT_STR, &s->Ks_s, Ks_help, 0, 0},
        {"seed", OPT_INT, &s->seed, s->seedhelp, 0, 0},
    };
    ADD(s, common);
    if (!c) return;
    s->step_mult = 0.03;
    s->arch_name = "paper";
    s->loss_clip = NAN;
    s->split = (int)c->outer_split;
    s->split_choice = (cli_choice){&s->split, split_names};
    cli_opt lopt_opts[] = {
        {"lopt", OPT_STR, &s->lopt_path, "learned optimizer (.lopt) to study (default: "
                                         "normalised SGD, d = g/rms(g), see --step-mult)", 0, 0 },
        {"step-mult", OPT_F64, &s->step_mult, "step of the default normalised-SGD theta (the "
                                              "default is chaotic for long unrolls)", 0, 0 },
        {"arch", OPT_STR, &s->arch_name, "preset of the default theta: paper|lo", 0, 0},
        {"warmup", OPT_I64, &c->warmup, "inner steps under theta before the start state", 0, 0 },
        {"outer-loss", OPT_CHOICE, &s->split_choice, "train|valid", 0, 0},
        {"loss-clip", OPT_FLOAT, &s->loss_clip, "outer losses clipped here, <= 0 off (default "
                                                "10; off on quadratic, whose losses start in the "
                                                "hundreds)", 0, 0},
    };
    ADD(s, lopt_opts);
}

/* parses the flags and makes the checks every study shares */
static void parse(study_cli *s, const char *usage_tail, const char *about, int argc, char **argv)
{
    snprintf(s->usage, sizeof s->usage, "lopt pathology %s [--task T] [--out DIR] "
             "[--Ks K1,K2,...] %s", s->study, usage_tail);
    s->spec = (cli_spec){s->command, s->usage, about, s->opts, s->nopts};
    cli_parse(&s->spec, argc, argv);
    if (s->out && !*s->out) cli_usage_error(&s->spec, "--out needs a directory name");
    if (s->seed < -1) cli_usage_error(&s->spec, "--seed must not be negative");
    s->nK = s->Ks_s ? parse_Ks(&s->spec, "Ks", s->Ks_s, s->Ks) : 0;
    lopt_pathology_common *c = s->c;
    if (!c) return;
    lopt_err err = {0};
    if (s->lopt_path && !*s->lopt_path) cli_usage_error(&s->spec, "--lopt needs a file name");
    if (s->lopt_path && (cli_find(&s->spec, "step-mult")->seen || cli_find(&s->spec, "arch")->seen))
        cli_usage_error(&s->spec, "--step-mult and --arch set the default theta: not with "
                                  "--lopt");
    if (!(s->step_mult > 0)) cli_usage_error(&s->spec, "--step-mult must be positive");
    c->outer_split = (lopt_split)s->split;
    c->loss_clip = !isnan(s->loss_clip) ? (float)s->loss_clip
                   : strcmp(s->task_name, "quadratic") == 0 ? 0.0f : 10.0f;
    if (s->seed >= 0) c->seed = (uint64_t)s->seed;
    if (!s->lopt_path && lopt_arch_preset(&s->arch, s->arch_name, &err) != LOPT_OK)
        cli_usage_error(&s->spec, "%s", err.msg);
}

/* the study's own checks (the library's), as usage errors */
static void check(study_cli *s, lopt_status st, const lopt_err *err)
{
    if (st != LOPT_OK) cli_usage_error(&s->spec, "%s", err->msg);
}

/* the learned optimizer studied: --lopt FILE, or normalised SGD */
static void load_theta(study_cli *s)
{
    lopt_pathology_common *c = s->c;
    lopt_err err = {0};
    if (s->lopt_path) {
        if (lopt_file_read(s->lopt_path, &s->arch, &s->theta, NULL, &err) != LOPT_OK)
            cli_fail(s->command, "%s", err.msg);
        snprintf(s->source, sizeof s->source, "%s", s->lopt_path);
    } else {
        s->arch.step_mult = (float)s->step_mult;
        s->theta = lopt_floats(lopt_arch_nparams(&s->arch));
        lopt_theta_normalized_sgd(&s->arch, 0.01f, 5, s->theta);
        snprintf(s->source, sizeof s->source, "normalized-sgd (arch %s, step_mult %g, noise "
                 "0.01, seed 5)", s->arch_name, s->step_mult);
    }
    c->arch = &s->arch;
    c->theta = s->theta;
    c->theta_source = s->source;
    c->progress = on_progress;
    c->user = s;
}

typedef lopt_status (*study_fn)(lopt_task *t, const void *opts, const char *dir,
                                char **summary, lopt_err *err);

/* the task, the study, its table on stdout */
static int run_study(study_cli *s, study_fn fn, const void *opts)
{
    if (s->c) load_theta(s);
    lopt_err err = {0};
    lopt_task task;
    lopt_task_opts topts = {0};
    topts.grad_noise = (float)s->grad_noise;
    lopt_status st = lopt_task_create(&task, s->task_name, &topts, &err);
    if (st != LOPT_OK) {
        lopt_free(s->theta);
        if (st == LOPT_EUSAGE) cli_usage_error(&s->spec, "%s", err.msg);
        cli_fail(s->command, "%s", err.msg);
    }
    char defdir[64];
    snprintf(defdir, sizeof defdir, "pathology-%s", s->study);
    const char *outdir = s->out ? s->out : defdir;
    cli_progress_init(&s->bar, s->study);
    char *summary = NULL;
    st = fn(&task, opts, outdir, &summary, &err);
    cli_progress_end(&s->bar);
    lopt_free(s->theta);
    task.free(&task);
    if (st == LOPT_EUSAGE) cli_usage_error(&s->spec, "%s", err.msg);
    if (st != LOPT_OK) cli_fail(s->command, "%s", err.msg);
    fputs(summary, stdout);
    free(summary);
    printf("wrote %s/\n", outdir);
    return 0;
}

/* ---- the three studies ------------------------------------------------------------- */

static lopt_status surface_fn(lopt_task *t, const void *o, const char *dir, char **summary,
                              lopt_err *err)
{
    return lopt_pathology_surface(t, o, dir, summary, err);
}

static int cmd_surface(int argc, char **argv)
{
    study_cli s;
    lopt_surface_opts o;
    lopt_surface_opts_default(&o);
    init(&s, "surface", &o.c, o.c.seed, o.Ks, o.nK, "unroll lengths");
    char K2d_default[256];
    format_Ks(o.K2d, o.nK2d, K2d_default, sizeof K2d_default);
    const char *K2d_s = K2d_default;
    cli_opt own[] = {
        {"points", OPT_I32, &o.points, "points along the line", 0, 0},
        {"radius", OPT_F64, &o.radius, "a in [-radius, radius]", 0, 0},
        {"samples", OPT_I32, &o.samples, "perturbations for the smoothed loss, even, 0 off", 0,
         0},
        {"sigma", OPT_F32, &o.sigma, "smoothing scale, per coordinate of theta", 0, 0},
        {"smooth-every", OPT_I32, &o.smooth_every, "smoothed loss at every N-th point", 0, 0 },
        {"grid", OPT_I32, &o.grid, "2-D slice of grid x grid points, 0 off", 0, 0},
        {"K2d", OPT_STR, &K2d_s, "unroll lengths of the 2-D slices, one heatmap each", 0, 0},
    };
    ADD(&s, own);
    parse(&s, "[--points N] [--radius R] [--samples S] [--sigma X] [--grid G] [--K2d K1,..] "
              "[--lopt FILE | --step-mult X] [--warmup N] ...",
          "Outer loss L_K(theta + a u) along a random unit direction u for each unroll length "
          "K, and the smoothed loss E_eps L_K(theta + a u + eps) from antithetic perturbations "
          "shared by every point; optionally a 2-D slice (heatmap). Writes surface.csv, "
          "surface2d.csv, summary.json and plots.", argc, argv);
    if (s.nK) memcpy(o.Ks, s.Ks, sizeof s.Ks), o.nK = s.nK;
    o.nK2d = parse_Ks(&s.spec, "K2d", K2d_s, o.K2d);
    lopt_err err = {0};
    check(&s, lopt_surface_check(&o, &err), &err);
    return run_study(&s, surface_fn, &o);
}

static lopt_status gradvar_fn(lopt_task *t, const void *o, const char *dir, char **summary,
                              lopt_err *err)
{
    return lopt_pathology_gradvar(t, o, dir, summary, err);
}

static int cmd_gradvar(int argc, char **argv)
{
    study_cli s;
    lopt_gradvar_opts o;
    lopt_gradvar_opts_default(&o);
    init(&s, "gradvar", &o.c, o.c.seed, o.Ks, o.nK, "unroll lengths");
    cli_opt own[] = {
        {"samples", OPT_I32, &o.samples, "antithetic pairs S >= 2", 0, 0},
        {"sigma", OPT_F32, &o.sigma, "perturbation scale", 0, 0},
    };
    ADD(&s, own);
    parse(&s, "[--samples S] [--sigma X] [--lopt FILE | --step-mult X] [--warmup N] ...",
          "For each unroll length K, S antithetic pairs from one inner state: rp (exact "
          "backprop) and es estimates of the smoothed outer gradient, norms of their means, "
          "their summed per-coordinate variances and the mean es weight of the inverse-variance "
          "merge. Writes gradvar.csv, summary.json and plots.", argc, argv);
    if (s.nK) memcpy(o.Ks, s.Ks, sizeof s.Ks), o.nK = s.nK;
    lopt_err err = {0};
    check(&s, lopt_gradvar_check(&o, &err), &err);
    return run_study(&s, gradvar_fn, &o);
}

static lopt_status bias_fn(lopt_task *t, const void *o, const char *dir, char **summary,
                           lopt_err *err)
{
    return lopt_pathology_bias(t, o, dir, summary, err);
}

static int cmd_bias(int argc, char **argv)
{
    study_cli s;
    lopt_bias_opts o;
    lopt_bias_opts_default(&o);
    init(&s, "bias", NULL, o.seed, NULL, 0, "truncation lengths <= horizon (default 1,5,20,50 "
                                            "below H, and H)");
    const char *lr_range = NULL;
    char lrhelp[96];
    snprintf(lrhelp, sizeof lrhelp, "LO:HI grid for the full-horizon optimum (default %g:%g)",
             o.lr_lo, o.lr_hi);
    cli_opt own[] = {
        {"horizon", OPT_I64, &o.horizon, "inner steps H of a trajectory", 0, 0},
        {"instances", OPT_I32, &o.instances, "task instances averaged", 0, 0},
        {"outer-steps", OPT_I32, &o.outer_steps, "Adam steps on log lr per K", 0, 0},
        {"outer-lr", OPT_F64, &o.outer_lr, "Adam step on log lr", 0, 0},
        {"lr0", OPT_F64, &o.lr0, "initial lr of the meta-learning", 0, 0},
        {"lr-range", OPT_STR, &lr_range, lrhelp, 0, 0},
        {"grid-points", OPT_I32, &o.grid_points, "lrs on the grid, log-spaced", 0, 0},
        {"grad-noise", OPT_F64, &s.grad_noise, "quadratic: std of gradient noise", 0, 0},
        {"clip-factor", OPT_F64, &o.loss_clip_factor, "inner loss above factor x initial = "
                                                      "diverged", 0, 0},
    };
    ADD(&s, own);
    parse(&s, "[--horizon H] [--instances M] [--outer-steps N] [--outer-lr X] "
              "[--lr-range LO:HI] [--grad-noise X] ...",
          "Truncation bias: SGD's learning rate (log-parameterised) meta-learned by Adam on the "
          "exact truncated meta-gradient (forward mode through the task's Hessian-vector "
          "product) for each truncation K over a horizon H, against the optimum of the "
          "full-horizon mean loss on an lr grid. Writes bias.csv, grid.csv, outer.csv, "
          "summary.json and plots.", argc, argv);
    if (s.nK) {
        memcpy(o.Ks, s.Ks, sizeof s.Ks), o.nK = s.nK;
    } else {   /* the defaults, capped at the horizon, and the horizon itself */
        int m = 0;
        for (int i = 0; i < o.nK; i++)
            if (o.Ks[i] < o.horizon) o.Ks[m++] = o.Ks[i];
        o.Ks[m++] = (int)o.horizon;
        o.nK = m;
    }
    for (int i = 0; i < o.nK; i++)
        if (o.Ks[i] > o.horizon)
            cli_usage_error(&s.spec, "truncation %d is longer than the horizon %lld", o.Ks[i],
                            (long long)o.horizon);
    if (s.grad_noise < 0) cli_usage_error(&s.spec, "--grad-noise must not be negative");
    if (lr_range && !cli_parse_range(lr_range, &o.lr_lo, &o.lr_hi))
        cli_usage_error(&s.spec, "malformed --lr-range '%s' (want LO:HI with 0 < LO < HI, "
                        "e.g. 1e-4:1)", lr_range);
    if (s.seed >= 0) o.seed = (uint64_t)s.seed;
    o.progress = on_progress;
    o.user = &s;
    lopt_err err = {0};
    check(&s, lopt_bias_check(&o, &err), &err);
    return run_study(&s, bias_fn, &o);
}

/* ---- the command --------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} studies[] = {
    {"surface", cmd_surface},
    {"gradvar", cmd_gradvar},
    {"bias", cmd_bias},
};

static void general_usage(FILE *f)
{
    fprintf(f, "usage: %s\n\n"
               "Pathologies of unrolled optimization (Metz et al. 2019):\n"
               "  surface  outer loss along a line through theta for several unroll lengths,\n"
               "           and the smoothed (variational) loss; optional 2-D slice\n"
               "  gradvar  rp vs es outer-gradient variance and the merged es weight vs K\n"
               "  bias     truncation bias: SGD's lr meta-learned with truncation K vs the\n"
               "           full-horizon optimum\n"
               "lopt pathology STUDY --help lists a study's options.\n", PATH_USAGE);
}

int cmd_pathology(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "lopt pathology: missing study (surface, gradvar or bias)\n");
        general_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        general_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof studies / sizeof *studies; i++)
        if (strcmp(argv[0], studies[i].name) == 0) return studies[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lopt pathology: unknown study '%s' (want surface, gradvar or bias)\n",
            argv[0]);
    general_usage(stderr);
    return EXIT_USAGE;
}
