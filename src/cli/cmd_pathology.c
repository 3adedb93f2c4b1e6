/* cmd_pathology.c - `lopt pathology surface|gradvar|bias` (docs/design.md sections 1.4 and 4):
 * the pathology studies of Metz et al. 2019 on lopt's unrolls; a short table on
 * stdout, CSV, summary.json and plots in --out. The engine is src/eval/pathology.c. */
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

typedef struct {
    cli_progress bar;
} path_ui;

static void on_progress(void *user, int64_t done, int64_t total, const char *what)
{
    path_ui *ui = user;
    cli_progress_update(&ui->bar, done, total, what);
}

/* "1,10,100" -> Ks; usage error on anything else */
static int parse_Ks(const cli_spec *spec, const char *what, const char *s, int *Ks)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long v = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
        if (v < 1 || errno || (*end && *end != ',') || v > 100000000)
            cli_usage_error(spec, "malformed --%s '%s' (want comma-separated positive "
                            "integers, e.g. 1,10,100)", what, s);
        if (n == LOPT_PATHOLOGY_MAX_K) cli_usage_error(spec, "at most %d unroll lengths",
                                                  LOPT_PATHOLOGY_MAX_K);
        Ks[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

static int opts_seen(const cli_spec *spec, const char *name)
{
    for (int i = 0; i < spec->nopts; i++)
        if (strcmp(spec->opts[i].name, name) == 0) return spec->opts[i].seen;
    return 0;
}

static lopt_split parse_split(const cli_spec *spec, const char *s)
{
    if (strcmp(s, "valid") == 0) return LOPT_SPLIT_VALID;
    if (strcmp(s, "train") == 0) return LOPT_SPLIT_TRAIN;
    cli_usage_error(spec, "--outer-loss must be train or valid, not '%s'", s);
}

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
    const char *study = argv[0];
    int is_surface = strcmp(study, "surface") == 0, is_gradvar = strcmp(study, "gradvar") == 0,
        is_bias = strcmp(study, "bias") == 0;
    if (!is_surface && !is_gradvar && !is_bias) {
        fprintf(stderr, "lopt pathology: unknown study '%s' (want surface, gradvar or bias)\n",
                study);
        general_usage(stderr);
        return EXIT_USAGE;
    }

    lopt_surface_opts so;
    lopt_gradvar_opts go;
    lopt_bias_opts bo;
    lopt_surface_opts_default(&so);
    lopt_gradvar_opts_default(&go);
    lopt_bias_opts_default(&bo);
    const char *task_name = is_bias ? "quadratic" : "fmnist8-mlp", *out = NULL,
               *lopt_path = NULL, *Ks_s = NULL, *outer_loss = "valid", *arch_name = "paper",
               *lr_range = NULL, *K2d_s = NULL;
    double step_mult = 0.03, sigma = NAN, radius = so.radius, loss_clip = NAN,
           grad_noise = 0, outer_lr = bo.outer_lr, lr0 = bo.lr0, clipf = bo.loss_clip_factor;
    int64_t seed = -1, warmup = 0, samples = -1, points = so.points, smooth_every = so.smooth_every,
            grid = so.grid, horizon = bo.horizon, instances = bo.instances,
            outer_steps = bo.outer_steps, grid_points = bo.grid_points;

    char outhelp[96];
    snprintf(outhelp, sizeof outhelp, "output directory, created if missing (default "
             "pathology-%s)", study);
    cli_opt common[] = {
        {"task", OPT_STR, &task_name, is_bias ? "task name (default quadratic)"
                                              : "task name (default fmnist8-mlp)", 0, 0},
        {"out", OPT_STR, &out, outhelp, 0, 0},
        {"Ks", OPT_STR, &Ks_s, is_surface ? "unroll lengths (default 1,10,100,1000)"
                               : is_gradvar ? "unroll lengths (default 1,3,10,30,100,300)"
                                            : "truncation lengths <= horizon (default "
                                              "1,5,20,50 below H, and H)", 0, 0},
        {"seed", OPT_INT, &seed, is_bias ? "first task instance (default 1)"
                                         : "task instance, directions, perturbations "
                                           "(default 9)", 0, 0},
    };
    cli_opt lopt_opts[] = {
        {"lopt", OPT_STR, &lopt_path, "learned optimizer (.lopt) to study (default: normalised "
                                      "SGD, d = g/rms(g), see --step-mult)", 0, 0},
        {"step-mult", OPT_FLOAT, &step_mult, "step of the default normalised-SGD theta "
                                             "(default 0.03: chaotic for long unrolls)", 0, 0},
        {"arch", OPT_STR, &arch_name, "preset of the default theta: paper|lo (default paper)",
         0, 0},
        {"warmup", OPT_INT, &warmup, "inner steps under theta before the start state "
                                     "(default 0)", 0, 0},
        {"outer-loss", OPT_STR, &outer_loss, "train|valid (default valid)", 0, 0},
        {"loss-clip", OPT_FLOAT, &loss_clip, "outer losses clipped here, <= 0 off (default 10; "
                                             "off on quadratic, whose losses start in the "
                                             "hundreds)", 0, 0},
    };
    cli_opt surface_opts[] = {
        {"points", OPT_INT, &points, "points along the line (default 121)", 0, 0},
        {"radius", OPT_FLOAT, &radius, "a in [-radius, radius] (default 1)", 0, 0},
        {"samples", OPT_INT, &samples, "perturbations for the smoothed loss, even, 0 off "
                                       "(default 16)", 0, 0},
        {"sigma", OPT_FLOAT, &sigma, "smoothing scale, per coordinate of theta (default 0.01)", 0, 0},
        {"smooth-every", OPT_INT, &smooth_every, "smoothed loss at every N-th point "
                                                 "(default 2)", 0, 0},
        {"grid", OPT_INT, &grid, "2-D slice of grid x grid points, 0 off (default 0)", 0, 0},
        {"K2d", OPT_STR, &K2d_s, "unroll lengths of the 2-D slices, one heatmap each "
                                "(default 100)", 0, 0},
    };
    cli_opt gradvar_opts[] = {
        {"samples", OPT_INT, &samples, "antithetic pairs S >= 2 (default 16)", 0, 0},
        {"sigma", OPT_FLOAT, &sigma, "perturbation scale (default 0.01)", 0, 0},
    };
    cli_opt bias_opts[] = {
        {"horizon", OPT_INT, &horizon, "inner steps H of a trajectory (default 200)", 0, 0},
        {"instances", OPT_INT, &instances, "task instances averaged (default 8)", 0, 0},
        {"outer-steps", OPT_INT, &outer_steps, "Adam steps on log lr per K (default 300)", 0, 0},
        {"outer-lr", OPT_FLOAT, &outer_lr, "Adam step on log lr (default 0.05)", 0, 0},
        {"lr0", OPT_FLOAT, &lr0, "initial lr of the meta-learning (default 1e-3)", 0, 0},
        {"lr-range", OPT_STR, &lr_range, "LO:HI grid for the full-horizon optimum "
                                         "(default 1e-4:1)", 0, 0},
        {"grid-points", OPT_INT, &grid_points, "lrs on the grid, log-spaced (default 81)", 0, 0},
        {"grad-noise", OPT_FLOAT, &grad_noise, "quadratic: std of gradient noise (default 0)",
         0, 0},
        {"clip-factor", OPT_FLOAT, &clipf, "inner loss above factor x initial = diverged "
                                           "(default 10)", 0, 0},
    };
    cli_opt opts[32];
    int nopts = 0;
#define ADD(arr) for (size_t i_ = 0; i_ < sizeof arr / sizeof *arr; i_++) opts[nopts++] = arr[i_]
    ADD(common);
    if (!is_bias) ADD(lopt_opts);
    if (is_surface) ADD(surface_opts);
    if (is_gradvar) ADD(gradvar_opts);
    if (is_bias) ADD(bias_opts);
#undef ADD
    char command[32], usage[512];
    snprintf(command, sizeof command, "pathology %s", study);
    snprintf(usage, sizeof usage, "lopt pathology %s [--task T] [--out DIR] [--Ks K1,K2,...] %s",
             study, is_surface ? "[--points N] [--radius R] [--samples S] [--sigma X] [--grid G] "
                                 "[--K2d K1,..] [--lopt FILE | --step-mult X] [--warmup N] ..."
                    : is_gradvar ? "[--samples S] [--sigma X] [--lopt FILE | --step-mult X] "
                                   "[--warmup N] ..."
                                 : "[--horizon H] [--instances M] [--outer-steps N] "
                                   "[--outer-lr X] [--lr-range LO:HI] [--grad-noise X] ...");
    const char *about =
        is_surface ? "Outer loss L_K(theta + a u) along a random unit direction u for each "
                     "unroll length K, and the smoothed loss E_eps L_K(theta + a u + eps) from "
                     "antithetic perturbations shared by every point; optionally a 2-D slice "
                     "(heatmap). Writes surface.csv, surface2d.csv, summary.json and plots."
        : is_gradvar ? "For each unroll length K, S antithetic pairs from one inner state: "
                       "rp (exact backprop) and es estimates of the smoothed outer gradient, "
                       "norms of their means, their summed per-coordinate variances and the "
                       "mean es weight of the inverse-variance merge. Writes gradvar.csv, "
                       "summary.json and plots."
                     : "Truncation bias: SGD's learning rate (log-parameterised) meta-learned by "
                       "Adam on the exact truncated meta-gradient (forward mode through the "
                       "task's Hessian-vector product) for each truncation K over a horizon H, "
                       "against the optimum of the full-horizon mean loss on an lr grid. "
                       "Writes bias.csv, grid.csv, outer.csv, summary.json and plots.";
    cli_spec spec = {command, usage, about, opts, nopts};
    cli_parse(&spec, argc - 1, argv + 1);

    /* flags: usage first, before anything slow */
    if (out && !*out) cli_usage_error(&spec, "--out needs a directory name");
    if (seed < -1) cli_usage_error(&spec, "--seed must not be negative");
    int Ks[LOPT_PATHOLOGY_MAX_K], nK = Ks_s ? parse_Ks(&spec, "Ks", Ks_s, Ks) : 0;
    lopt_err err = {0};
    lopt_arch arch;
    float *theta = NULL;
    char source[600];
    lopt_pathology_common *c = is_surface ? &so.c : is_gradvar ? &go.c : NULL;
    if (c) {
        if (lopt_path && !*lopt_path) cli_usage_error(&spec, "--lopt needs a file name");
        if (lopt_path && (opts_seen(&spec, "step-mult") || opts_seen(&spec, "arch")))
            cli_usage_error(&spec, "--step-mult and --arch set the default theta: not with "
                                   "--lopt");
        if (!(step_mult > 0)) cli_usage_error(&spec, "--step-mult must be positive");
        if (warmup < 0) cli_usage_error(&spec, "--warmup must not be negative");
        c->outer_split = parse_split(&spec, outer_loss);
        c->loss_clip = !isnan(loss_clip) ? (float)loss_clip
                       : strcmp(task_name, "quadratic") == 0 ? 0.0f : 10.0f;
        c->warmup = warmup;
        if (seed >= 0) c->seed = (uint64_t)seed;
        if (!lopt_path && lopt_arch_preset(&arch, arch_name, &err) != LOPT_OK)
            cli_usage_error(&spec, "%s", err.msg);
    }
    if (is_surface) {
        if (nK) memcpy(so.Ks, Ks, sizeof Ks), so.nK = nK;
        so.points = (int)points;
        so.radius = radius;
        if (samples >= 0) so.samples = samples > 1000000 ? 1000001 : (int)samples;
        if (!isnan(sigma)) so.sigma = (float)sigma;
        so.smooth_every = smooth_every > 1000000 ? 1000000 : (int)smooth_every;
        so.grid = grid > 100000 ? 100000 : (int)grid;
        if (K2d_s) so.nK2d = parse_Ks(&spec, "K2d", K2d_s, so.K2d);
        if (points < 3 || points > 100000) cli_usage_error(&spec, "--points must be in 3..100000");
        if (!(radius > 0)) cli_usage_error(&spec, "--radius must be positive");
        if (so.samples < 0 || so.samples % 2 || so.samples > 100000)
            cli_usage_error(&spec, "--samples must be even (antithetic pairs) in 0..100000");
        if (!(so.sigma > 0)) cli_usage_error(&spec, "--sigma must be positive");
        if (smooth_every < 1) cli_usage_error(&spec, "--smooth-every must be >= 1");
        if (grid < 0 || grid == 1 || grid > 1000)
            cli_usage_error(&spec, "--grid must be 0 (off) or in 2..1000");
    }
    if (is_gradvar) {
        if (nK) memcpy(go.Ks, Ks, sizeof Ks), go.nK = nK;
        if (samples >= 0) go.samples = samples > 1000000 ? 1000001 : (int)samples;
        if (!isnan(sigma)) go.sigma = (float)sigma;
        if (go.samples < 2 || go.samples > 100000)
            cli_usage_error(&spec, "--samples must be in 2..100000 (sample variances)");
        if (!(go.sigma > 0)) cli_usage_error(&spec, "--sigma must be positive");
    }
    if (is_bias) {
        if (horizon < 1 || horizon > 10000000)
            cli_usage_error(&spec, "--horizon must be in 1..10000000");
        bo.horizon = horizon;
        if (nK) {
            memcpy(bo.Ks, Ks, sizeof Ks), bo.nK = nK;
        } else {   /* the defaults, capped at the horizon, and the horizon itself */
            int m = 0;
            for (int i = 0; i < bo.nK; i++)
                if (bo.Ks[i] < horizon) bo.Ks[m++] = bo.Ks[i];
            bo.Ks[m++] = (int)horizon;
            bo.nK = m;
        }
        for (int i = 0; i < bo.nK; i++)
            if (bo.Ks[i] > horizon)
                cli_usage_error(&spec, "truncation %d is longer than the horizon %lld", bo.Ks[i],
                                (long long)horizon);
        if (instances < 1 || instances > 10000)
            cli_usage_error(&spec, "--instances must be in 1..10000");
        if (outer_steps < 0 || outer_steps > 10000000)
            cli_usage_error(&spec, "--outer-steps must be in 0..10000000");
        if (!(outer_lr > 0)) cli_usage_error(&spec, "--outer-lr must be positive");
        if (!(lr0 > 0)) cli_usage_error(&spec, "--lr0 must be positive");
        if (grid_points < 2 || grid_points > 100000)
            cli_usage_error(&spec, "--grid-points must be in 2..100000");
        if (!(clipf > 1)) cli_usage_error(&spec, "--clip-factor must be > 1");
        if (grad_noise < 0) cli_usage_error(&spec, "--grad-noise must not be negative");
        if (lr_range && !cli_parse_range(lr_range, &bo.lr_lo, &bo.lr_hi))
            cli_usage_error(&spec, "malformed --lr-range '%s' (want LO:HI with 0 < LO < HI, "
                            "e.g. 1e-4:1)", lr_range);
        bo.instances = (int)instances;
        bo.outer_steps = (int)outer_steps;
        bo.outer_lr = outer_lr;
        bo.lr0 = lr0;
        bo.grid_points = (int)grid_points;
        bo.loss_clip_factor = clipf;
        if (seed >= 0) bo.seed = (uint64_t)seed;
    }

    /* the learned optimizer, then the data */
    if (c) {
        if (lopt_path) {
            if (lopt_file_read(lopt_path, &arch, &theta, NULL, &err) != LOPT_OK)
                cli_fail(command, "%s", err.msg);
            snprintf(source, sizeof source, "%s", lopt_path);
        } else {
            arch.step_mult = (float)step_mult;
            theta = lopt_floats(lopt_arch_nparams(&arch));
            lopt_theta_normalized_sgd(&arch, 0.01f, 5, theta);
            snprintf(source, sizeof source, "normalized-sgd (arch %s, step_mult %g, noise 0.01, "
                     "seed 5)", arch_name, step_mult);
        }
        c->arch = &arch;
        c->theta = theta;
        c->theta_source = source;
    }
    lopt_task task;
    lopt_task_opts topts = {0};
    topts.grad_noise = (float)grad_noise;
    lopt_status st = lopt_task_create(&task, task_name, &topts, &err);
    if (st != LOPT_OK) {
        lopt_free(theta);
        if (st == LOPT_EUSAGE) cli_usage_error(&spec, "%s", err.msg);
        cli_fail(command, "%s", err.msg);
    }
    char defdir[64];
    snprintf(defdir, sizeof defdir, "pathology-%s", study);
    const char *outdir = out ? out : defdir;

    path_ui ui;
    cli_progress_init(&ui.bar, study);
    if (c) {
        c->progress = on_progress;
        c->user = &ui;
    } else {
        bo.progress = on_progress;
        bo.user = &ui;
    }
    char *summary = NULL;
    st = is_surface ? lopt_pathology_surface(&task, &so, outdir, &summary, &err)
       : is_gradvar ? lopt_pathology_gradvar(&task, &go, outdir, &summary, &err)
                    : lopt_pathology_bias(&task, &bo, outdir, &summary, &err);
    cli_progress_end(&ui.bar);
    lopt_free(theta);
    task.free(&task);
    if (st == LOPT_EUSAGE) cli_usage_error(&spec, "%s", err.msg);
    if (st != LOPT_OK) cli_fail(command, "%s", err.msg);
    fputs(summary, stdout);
    free(summary);
    printf("wrote %s/\n", outdir);
    return 0;
}
