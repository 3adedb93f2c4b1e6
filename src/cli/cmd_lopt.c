/* cmd_lopt.c - the commands over .lopt files.
 * `lopt init-lopt` writes an untrained learned optimizer, a starting point for
 * meta-training (`lopt meta-train --init`) and a way to try the learned-optimizer
 * plumbing (`lopt train --opt learned:FILE`, the C API) before anything is trained.
 * Either random weights (lopt_theta_init) or weights that make the MLP a
 * hand-designed optimizer, normalised SGD or normalised momentum at a given step
 * size (lopt_theta_normalized), plus small noise so meta-training can move every
 * weight; or, for --arch nominal, the nominal form as initialised (exactly its
 * hand-designed step, --nominal-step and --nominal-mom choosing which).
 * `lopt info FILE` prints what a .lopt file holds (docs/design.md section 4).
 * docs/design.md sections 1.1, 1.4 and 5. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

/* init-lopt's --schedule and its companions: checked against the architecture, then
 * *s filled in and the flags echoed into args for the provenance note. Returns 1 when
 * a schedule is to be fitted, 0 without --schedule (when none of its companions may
 * be given either). */
static int parse_schedule_start(const cli_spec *spec, const lopt_arch *a, const char *name,
                                double peak_lr, int64_t warmup, int64_t horizon, double floor_frac,
                                lopt_schedule *s, char *args, size_t nargs)
{
    static const char *const companions[] = {"peak-lr", "warmup", "horizon", "floor"};
    if (!name) {
        for (size_t i = 0; i < sizeof companions / sizeof *companions; i++)
            if (cli_find(spec, companions[i])->seen)
                cli_usage_error(spec, "--%s applies only with --schedule", companions[i]);
        return 0;
    }
    if (a->form != LOPT_FORM_NOMINAL)
        cli_usage_error(spec, "--schedule applies to --arch nominal|nominal-adam only (the mlp "
                        "form has no schedule)");
    lopt_err err = {0};
    if (lopt_schedule_parse(name, &s->kind, &err) != LOPT_OK)
        cli_usage_error(spec, "--schedule: %s", err.msg);
    if (horizon < 1) cli_usage_error(spec, "--schedule needs --horizon N >= 1, the steps it spans");
    if (cli_find(spec, "peak-lr")->seen && !(peak_lr > 0 && peak_lr <= 1))
        cli_usage_error(spec, "--peak-lr must be in (0, 1]");
    if (!(floor_frac > 0 && floor_frac <= 1)) cli_usage_error(spec, "--floor must be in (0, 1]");
    s->steps = horizon;
    s->warmup = cli_find(spec, "warmup")->seen ? warmup : lopt_schedule_default_warmup(s->kind, horizon);
    if (lopt_schedule_check(s, &err) != LOPT_OK) cli_usage_error(spec, "%s", err.msg);
    snprintf(args, nargs, " --schedule %s --peak-lr %g --warmup %lld --horizon %lld --floor %g",
             name, peak_lr > 0 ? peak_lr : a->nominal_step, (long long)s->warmup,
             (long long)horizon, floor_frac);
    return 1;
}

int cmd_init_lopt(int argc, char **argv)
{
    const char *arch_name = "paper", *out = NULL, *like = "random";
    const char *sched_name = NULL;
    int64_t seed = 0, nominal_mom = 0, warmup = -1, horizon = 0;
    double peak_lr = 0, floor_frac = 0.01;
    int force = 0;
    double lr = 1e-3, beta = 0.9, noise = 0.01, nominal_step = 0;
    cli_opt opts[] = {
        {"arch", OPT_STR, &arch_name, "architecture preset paper|lo|nominal|nominal-adam", 0, 0},
        {"nominal-step", OPT_FLOAT, &nominal_step, "with --arch nominal: RMS step per tensor of "
                                                   "the hand-designed rule (default: the preset's)", 0, 0},
        {"nominal-mom", OPT_INT, &nominal_mom, "with --arch nominal: index of the momentum the "
                                               "rule follows (0-based: 1 = beta 0.9, the "
                                               "default), or -1 for the gradient", 0, 0},
        {"like", OPT_STR, &like, "random|sgd|momentum: random weights, or weights that "
                                 "make a per-tensor normalised SGD / momentum", 0, 0},
        {"lr", OPT_F64, &lr, "with --like sgd|momentum: RMS step per tensor", 0, 0},
        {"beta", OPT_F64, &beta, "with --like momentum: which of the preset's momenta", 0, 0},
        {"noise", OPT_F64, &noise, "with --like sgd|momentum: std of the noise on every weight",
         0, 0},
        {"schedule", OPT_STR, &sched_name, "with --arch nominal*: start the hand-designed step on "
                                           "a learning-rate schedule const|cosine|linear over "
                                           "--horizon steps, as `lopt train --schedule` (default: "
                                           "none, a constant step)", 0, 0},
        {"peak-lr", OPT_FLOAT, &peak_lr, "with --schedule: the schedule's peak learning rate "
                                         "(default: the nominal step)", 0, 0},
        {"warmup", OPT_INT, &warmup, "with --schedule: linear warm-up steps (default: as "
                                     "`lopt train`, 5% of --horizon for cosine and linear)", 0, 0},
        {"horizon", OPT_INT, &horizon, "with --schedule: the steps the schedule spans (required "
                                       "with it); recorded as the file's horizon", 0, 0},
        {"floor", OPT_F64, &floor_frac, "with --schedule: the smallest fraction of the peak "
                                        "the fit aims at where the schedule reaches 0", 0, 0},
        {"seed", OPT_I64, &seed, "seed of the random weights", 0, 0},
        {"out", OPT_STR, &out, "the .lopt file to write (an existing file only with --force)",
         1, 0},
        {"force", OPT_FLAG, &force, "replace an existing --out", 0, 0},
    };
    cli_spec spec = {"init-lopt", "lopt init-lopt [--arch paper|lo|nominal|nominal-adam] [--like random|sgd|momentum] "
                     "[--lr X] [--beta B] [--noise X] [--nominal-step X] [--nominal-mom K] "
                     "[--schedule const|cosine|linear --horizon N [--peak-lr X] [--warmup W] "
                     "[--floor F]] [--seed S] --out FILE.lopt [--force]",
                     "Writes an untrained learned optimizer: random weights, or a hand-designed "
                     "normalised SGD / momentum to start meta-training from. --arch nominal "
                     "starts as exactly its hand-designed step (normalised momentum at "
                     "--nominal-step), with a learnable schedule and an MLP residual at zero; "
                     "--schedule fits that schedule to a hand-designed one (e.g. Adam with a "
                     "cosine decay) to start from instead.",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (seed < 0) cli_usage_error(&spec, "--seed must be non-negative");
    /* a .lopt may be the result of a long meta-training run: never replaced unasked */
    cli_check_output(&spec, "out", out, force, "add --force to replace it");
    if (strcmp(like, "random") == 0)
        for (int i = 0; i < spec.nopts; i++)
            if (opts[i].seen && (strcmp(opts[i].name, "lr") == 0 ||
                                 strcmp(opts[i].name, "beta") == 0 ||
                                 strcmp(opts[i].name, "noise") == 0))
                cli_usage_error(&spec, "--%s applies to --like sgd|momentum, not to random "
                                "weights", opts[i].name);
    if (strcmp(like, "sgd") == 0 && cli_find(&spec, "beta")->seen)
        cli_usage_error(&spec, "--beta applies to --like momentum, not sgd");

    lopt_err err = {0};
    lopt_arch a;
    if (lopt_arch_preset(&a, arch_name, &err) != LOPT_OK) cli_usage_error(&spec, "%s", err.msg);
    int step_seen = 0, mom_seen = 0;
    for (int i = 0; i < spec.nopts; i++) {
        if (strcmp(opts[i].name, "nominal-step") == 0) step_seen = opts[i].seen;
        if (strcmp(opts[i].name, "nominal-mom") == 0) mom_seen = opts[i].seen;
    }
    char nominal_args[96] = "";
    if (a.form != LOPT_FORM_NOMINAL && (step_seen || mom_seen))
        cli_usage_error(&spec, "--nominal-step and --nominal-mom apply to --arch nominal only");
    if (a.form == LOPT_FORM_NOMINAL) {
        if (strcmp(like, "random") != 0)
            cli_usage_error(&spec, "--like does not apply to --arch nominal: it starts as its "
                            "hand-designed step (see --nominal-step, --nominal-mom)");
        /* the preset's rule unless told otherwise */
        if (step_seen) a.nominal_step = (float)nominal_step;
        if (mom_seen) {
            if (nominal_mom < -1 || nominal_mom >= a.nmom)
                cli_usage_error(&spec, "--nominal-mom %lld is not -1 (the gradient) or one of "
                                "the %d momenta (0..%d)", (long long)nominal_mom, a.nmom,
                                a.nmom - 1);
            if (a.nominal_dir == LOPT_NOMINAL_ADAM && nominal_mom < 0)
                cli_usage_error(&spec, "--nominal-mom -1: the Adam direction needs a momentum "
                                "(its beta1)");
            if (a.nominal_dir != LOPT_NOMINAL_ADAM)
                a.nominal_dir = nominal_mom < 0 ? LOPT_NOMINAL_GRAD : LOPT_NOMINAL_MOM;
            a.nominal_mom = nominal_mom < 0 ? 0 : (int)nominal_mom;
        }
        if (!(a.nominal_step > 0 && a.nominal_step <= 1))
            cli_usage_error(&spec, "--nominal-step must be in (0, 1]");
        LOPT_ASSERT(lopt_arch_validate(&a, NULL) == LOPT_OK);
        snprintf(nominal_args, sizeof nominal_args, " --nominal-step %g --nominal-mom %d",
                 a.nominal_step, a.nominal_dir == LOPT_NOMINAL_GRAD ? -1 : a.nominal_mom);
    }
    lopt_schedule sched = {0};
    char sched_args[160] = "";
    int fit_schedule = parse_schedule_start(&spec, &a, sched_name, peak_lr, warmup, horizon,
                                            floor_frac, &sched, sched_args, sizeof sched_args);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np);
    lopt_provenance p = {0};
    lopt_provenance_set(p.estimator, sizeof p.estimator, "none");
    if (strcmp(like, "random") == 0) {
        lopt_theta_init(&a, (uint64_t)seed, theta);
        if (fit_schedule) {
            double peak = peak_lr > 0 ? peak_lr : a.nominal_step;
            double worst = lopt_theta_fit_schedule(&a, &sched, peak, floor_frac, theta);
            p.horizon = (uint64_t)horizon;
            printf("schedule: %s at peak %g over %lld steps (warm-up %lld), fitted to within "
                   "a factor %.3g of it (floor %g)\n", lopt_schedule_name(sched.kind), peak,
                   (long long)horizon, (long long)sched.warmup, exp(worst), floor_frac);
        }
        snprintf(p.note, sizeof p.note, "untrained: lopt init-lopt --arch %s%s%s --seed %lld",
                 arch_name, nominal_args, sched_args, (long long)seed);
    } else {
        /* which normalised feature the optimizer follows: g (0) or momentum m_k (2 + k) */
        int feature = -1;
        char beta_arg[48] = "";
        if (strcmp(like, "sgd") == 0) feature = 0;
        if (strcmp(like, "momentum") == 0) {
            for (int k = 0; k < a.nmom; k++)
                if (fabs(a.beta[k] - beta) < 1e-6) feature = 2 + k;
            snprintf(beta_arg, sizeof beta_arg, " --beta %g", beta);
        }
        if (feature < 0) {
            lopt_free(theta);
            if (strcmp(like, "momentum") == 0)
                cli_usage_error(&spec, "--beta %g is not one of the %s preset's momenta", beta,
                                arch_name);
            cli_usage_error(&spec, "--like must be random, sgd or momentum");
        }
        if (!(lr > 0 && lr < 1)) cli_usage_error(&spec, "--lr must be in (0, 1)");
        if (!(noise >= 0 && noise < 1)) cli_usage_error(&spec, "--noise must be in [0, 1)");
        lopt_theta_normalized(&a, feature, (float)(lr / a.step_mult), (float)noise,
                              (uint64_t)seed, theta);
        snprintf(p.note, sizeof p.note, "untrained: lopt init-lopt --arch %s --like %s --lr %g%s "
                 "--noise %g --seed %lld", arch_name, like, lr, beta_arg, noise, (long long)seed);
    }
    lopt_status st = lopt_file_write(out, &a, theta, &p, &err);
    lopt_free(theta);
    if (st != LOPT_OK) cli_fail("init-lopt", "%s", err.msg);
    printf("wrote %s: untrained %s learned optimizer (%s), %zu weights\n", out, arch_name,
           p.note + sizeof "untrained: " - 1, np);
    return 0;
}

/* "0.5 0.9 0.99" */
static void print_floats(const char *label, const float *v, int n)
{
    printf("%-12s", label);
    for (int i = 0; i < n; i++) printf(" %g", v[i]);
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    cli_spec spec = {"info", "lopt info FILE.lopt",
                     "Prints what a learned optimizer file holds: its form and architecture, "
                     "the horizon it was meta-trained for, and where it came from.", NULL, 0};
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            cli_parse(&spec, 1, argv + i);   /* prints the help, exits 0 */
        else if (argv[i][0] == '-' && argv[i][1])
            cli_usage_error(&spec, "unknown option '%s'", argv[i]);
        else if (path)
            cli_usage_error(&spec, "one file at a time ('%s', then '%s')", path, argv[i]);
        else
            path = argv[i];
    }
    if (!path) cli_usage_error(&spec, "missing FILE.lopt");

    lopt_arch a;
    float *theta = NULL;
    lopt_provenance p;
    lopt_err err = {0};
    if (lopt_file_read(path, &a, &theta, &p, &err) != LOPT_OK) cli_fail("info", "%s", err.msg);

    printf("%-12s %s (.lopt format version %u)\n", "file", path, p.file_version);
    if (a.form == LOPT_FORM_NOMINAL) {
        char dir[64] = "norm(g)";
        if (a.nominal_dir == LOPT_NOMINAL_MOM)
            snprintf(dir, sizeof dir, "norm(m[beta %g])", a.beta[a.nominal_mom]);
        if (a.nominal_dir == LOPT_NOMINAL_ADAM)
            snprintf(dir, sizeof dir, "adam(m[beta %g], v[beta %g])", a.beta[a.nominal_mom],
                     LOPT_ADAM_BETA2);
        printf("%-12s nominal: w <- w - %g exp(sched(t)) %s - %g d exp(%g s)\n", "form",
               a.nominal_step, dir, a.step_mult, a.exp_mult);
    } else {
        printf("%-12s mlp: w <- w - %g d exp(%g s)\n", "form", a.step_mult, a.exp_mult);
    }
    print_floats("momenta", a.beta, a.nmom);
    print_floats("time scales", a.tau, a.ntime);
    printf("%-12s %d", "mlp", lopt_arch_inputs(&a));
    for (int l = 0; l < a.nhidden; l++) printf(" -> %d", a.hidden);
    if (a.form == LOPT_FORM_NOMINAL)
        printf(" -> 2 (ReLU); %zu weights in all (%zu MLP + %d schedule)\n",
               lopt_arch_nparams(&a), lopt_arch_schedule_offset(&a), a.ntime + 1);
    else
        printf(" -> 2 (ReLU); %zu weights\n", lopt_arch_nparams(&a));
    if (a.form == LOPT_FORM_NOMINAL) {
        const float *sc = theta + lopt_arch_schedule_offset(&a);
        printf("%-12s b %g, a", "schedule", sc[a.ntime]);
        for (int j = 0; j < a.ntime; j++) printf(" %g", sc[j]);
        printf("\n%-12s", "nominal step");
        /* the RMS step per tensor the schedule gives, at a few points of training */
        static const int64_t at[] = {0, 100, 1000, 10000};
        for (size_t i = 0; i < sizeof at / sizeof *at; i++)
            printf(" t=%lld %.3g", (long long)at[i],
                   a.nominal_step * expf(lopt_arch_schedule(&a, theta, at[i])));
        if (p.horizon > 0)
            printf(" (horizon %llu: %.3g)", (unsigned long long)p.horizon,
                   a.nominal_step * expf(lopt_arch_schedule(&a, theta, (int64_t)p.horizon)));
        size_t o = lopt_arch_output_offset(&a), e = lopt_arch_schedule_offset(&a);
        double ss = 0;
        for (size_t i = o; i < e; i++) ss += (double)theta[i] * theta[i];
        if (ss == 0)
            printf("\n%-12s zero (output layer all zero: the hand-designed step alone)\n",
                   "residual");
        else
            printf("\n%-12s output layer RMS %.3g\n", "residual", sqrt(ss / (double)(e - o)));
    }
    if (p.horizon > 0)
        printf("%-12s %llu inner steps\n", "horizon", (unsigned long long)p.horizon);
    else
        printf("%-12s unknown%s\n", "horizon",
               p.file_version < 2 ? " (format version 1 does not record it)" : "");
    if (p.outer_steps == 0)
        printf("%-12s untrained\n", "trained");
    else
        printf("%-12s on %s, %s estimator, %s outer loss, %llu outer steps\n", "trained",
               p.task[0] ? p.task : "?", p.estimator[0] ? p.estimator : "?",
               p.outer_loss[0] ? p.outer_loss : "?", (unsigned long long)p.outer_steps);
    if (p.note[0]) {
        /* the note may span lines: indent the continuation lines */
        printf("%-12s ", "note");
        for (const char *c = p.note; *c; c++) {
            putchar(*c);
            if (*c == '\n' && c[1]) printf("%-12s ", "");
        }
        printf("\n");
    }
    lopt_free(theta);
    return 0;
}
