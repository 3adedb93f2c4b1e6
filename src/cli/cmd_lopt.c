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

/* init-lopt's state */
typedef struct {
    const char *arch_name, *out, *like, *sched_name;
    int64_t seed, nominal_mom, warmup, horizon;
    double peak_lr, floor_frac, lr, beta, noise, nominal_step;
    int force;
    cli_opt opts[16];
    int nopts;
    cli_spec spec;
    lopt_arch a;
    int feature;              /* --like sgd|momentum: the normalised feature followed */
    lopt_schedule sched;
    int fit_schedule;         /* --schedule given: sched to be fitted */
    char nominal_args[96], sched_args[160];   /* echoed into the provenance note */
    lopt_provenance p;
} init_cli;

static void define_init_flags(init_cli *s)
{
    /* the defaults (the rest start at 0), here alone: --help prints the bound ones */
    s->arch_name = "paper", s->like = "random";
    s->lr = 1e-3, s->beta = 0.9, s->noise = 0.01, s->floor_frac = 0.01;
    const cli_opt opts[] = {
        {"arch", OPT_STR, &s->arch_name, "architecture preset paper|lo|nominal|nominal-adam", 0, 0},
        {"nominal-step", OPT_FLOAT, &s->nominal_step, "with --arch nominal: RMS step per tensor "
         "of the hand-designed rule (default: the preset's)", 0, 0},
        {"nominal-mom", OPT_INT, &s->nominal_mom, "with --arch nominal: index of the momentum the "
         "rule follows (0-based: 1 = beta 0.9, the default), or -1 for the gradient", 0, 0},
        {"like", OPT_STR, &s->like, "random|sgd|momentum: random weights, or weights that make a "
         "per-tensor normalised SGD / momentum", 0, 0},
        {"lr", OPT_F64, &s->lr, "with --like sgd|momentum: RMS step per tensor", 0, 0},
        {"beta", OPT_F64, &s->beta, "with --like momentum: which of the preset's momenta", 0, 0},
        {"noise", OPT_F64, &s->noise, "with --like sgd|momentum: std of the noise on every weight",
         0, 0},
        {"schedule", OPT_STR, &s->sched_name, "with --arch nominal*: start the hand-designed step "
         "on a learning-rate schedule const|cosine|linear over --horizon steps, as `lopt train "
         "--schedule` (default: none, a constant step)", 0, 0},
        {"peak-lr", OPT_FLOAT, &s->peak_lr, "with --schedule: the schedule's peak learning rate "
         "(default: the nominal step)", 0, 0},
        {"warmup", OPT_INT, &s->warmup, "with --schedule: linear warm-up steps (default: as `lopt "
         "train`, 5% of --horizon for cosine and linear)", 0, 0},
        {"horizon", OPT_INT, &s->horizon, "with --schedule: the steps the schedule spans (required "
         "with it); recorded as the file's horizon", 0, 0},
        {"floor", OPT_F64, &s->floor_frac, "with --schedule: the smallest fraction of the peak the "
         "fit aims at where the schedule reaches 0", 0, 0},
        {"seed", OPT_I64, &s->seed, "seed of the random weights", 0, 0},
        {"out", OPT_STR, &s->out, "the .lopt file to write (an existing file only with --force)",
         1, 0},
        {"force", OPT_FLAG, &s->force, "replace an existing --out", 0, 0},
    };
    s->nopts = (int)(sizeof opts / sizeof *opts);
    LOPT_ASSERT(s->nopts <= (int)(sizeof s->opts / sizeof *s->opts));
    memcpy(s->opts, opts, sizeof opts);
    s->spec = (cli_spec){"init-lopt",
                     "lopt init-lopt [--arch paper|lo|nominal|nominal-adam] "
                     "[--like random|sgd|momentum] [--lr X] [--beta B] [--noise X] "
                     "[--nominal-step X] [--nominal-mom K] "
                     "[--schedule const|cosine|linear --horizon N [--peak-lr X] [--warmup W] "
                     "[--floor F]] [--seed S] --out FILE.lopt [--force]",
                     "Writes an untrained learned optimizer: random weights, or a hand-designed "
                     "normalised SGD / momentum to start meta-training from. --arch nominal "
                     "starts as exactly its hand-designed step (normalised momentum at "
                     "--nominal-step), with a learnable schedule and an MLP residual at zero; "
                     "--schedule fits that schedule to a hand-designed one (e.g. Adam with a "
                     "cosine decay) to start from instead.",
                     s->opts, s->nopts};
}

/* the checks that need no architecture: --seed, --out, and which of --lr, --beta,
 * --noise the --like kind takes */
static void check_init_flags(const init_cli *s)
{
    const cli_spec *spec = &s->spec;
    if (s->seed < 0) cli_usage_error(spec, "--seed must be non-negative");
    /* a .lopt may be the result of a long meta-training run: never replaced unasked */
    cli_check_output(spec, "out", s->out, s->force, "add --force to replace it");
    if (strcmp(s->like, "random") == 0)
        for (int i = 0; i < spec->nopts; i++)
            if (s->opts[i].seen && (strcmp(s->opts[i].name, "lr") == 0 ||
                                    strcmp(s->opts[i].name, "beta") == 0 ||
                                    strcmp(s->opts[i].name, "noise") == 0))
                cli_usage_error(spec, "--%s applies to --like sgd|momentum, not to random "
                                "weights", s->opts[i].name);
    if (strcmp(s->like, "sgd") == 0 && cli_find(spec, "beta")->seen)
        cli_usage_error(spec, "--beta applies to --like momentum, not sgd");
}

/* --arch's preset, with --nominal-step and --nominal-mom applied to the nominal form
 * (and refused for the mlp form) */
static void build_arch(init_cli *s)
{
    const cli_spec *spec = &s->spec;
    lopt_err err = {0};
    if (lopt_arch_preset(&s->a, s->arch_name, &err) != LOPT_OK)
        cli_usage_error(spec, "%s", err.msg);
    lopt_arch *a = &s->a;
    int step_seen = cli_find(spec, "nominal-step")->seen;
    int mom_seen = cli_find(spec, "nominal-mom")->seen;
    if (a->form != LOPT_FORM_NOMINAL && (step_seen || mom_seen))
        cli_usage_error(spec, "--nominal-step and --nominal-mom apply to --arch nominal only");
    if (a->form != LOPT_FORM_NOMINAL) return;
    if (strcmp(s->like, "random") != 0)
        cli_usage_error(spec, "--like does not apply to --arch nominal: it starts as its "
                        "hand-designed step (see --nominal-step, --nominal-mom)");
    /* the preset's rule unless told otherwise */
    if (step_seen) a->nominal_step = (float)s->nominal_step;
    if (mom_seen) {
        int64_t k = s->nominal_mom;
        if (k < -1 || k >= a->nmom)
            cli_usage_error(spec, "--nominal-mom %lld is not -1 (the gradient) or one of "
                            "the %d momenta (0..%d)", (long long)k, a->nmom, a->nmom - 1);
        if (a->nominal_dir == LOPT_NOMINAL_ADAM && k < 0)
            cli_usage_error(spec, "--nominal-mom -1: the Adam direction needs a momentum "
                            "(its beta1)");
        if (a->nominal_dir != LOPT_NOMINAL_ADAM)
            a->nominal_dir = k < 0 ? LOPT_NOMINAL_GRAD : LOPT_NOMINAL_MOM;
        a->nominal_mom = k < 0 ? 0 : (int)k;
    }
    if (!(a->nominal_step > 0 && a->nominal_step <= 1))
        cli_usage_error(spec, "--nominal-step must be in (0, 1]");
    LOPT_ASSERT(lopt_arch_validate(a, NULL) == LOPT_OK);
    snprintf(s->nominal_args, sizeof s->nominal_args, " --nominal-step %g --nominal-mom %d",
             a->nominal_step, a->nominal_dir == LOPT_NOMINAL_GRAD ? -1 : a->nominal_mom);
}

/* --schedule and its companions, checked against the architecture: without --schedule
 * none of its companions may be given; with it, s->sched is filled in and
 * s->fit_schedule set */
static void check_schedule(init_cli *s)
{
    static const char *const companions[] = {"peak-lr", "warmup", "horizon", "floor"};
    const cli_spec *spec = &s->spec;
    if (!s->sched_name) {
        for (size_t i = 0; i < sizeof companions / sizeof *companions; i++)
            if (cli_find(spec, companions[i])->seen)
                cli_usage_error(spec, "--%s applies only with --schedule", companions[i]);
        return;
    }
    if (s->a.form != LOPT_FORM_NOMINAL)
        cli_usage_error(spec, "--schedule applies to --arch nominal|nominal-adam only (the mlp "
                        "form has no schedule)");
    lopt_err err = {0};
    if (lopt_schedule_parse(s->sched_name, &s->sched.kind, &err) != LOPT_OK)
        cli_usage_error(spec, "--schedule: %s", err.msg);
    if (s->horizon < 1)
        cli_usage_error(spec, "--schedule needs --horizon N >= 1, the steps it spans");
    if (cli_find(spec, "peak-lr")->seen && !(s->peak_lr > 0 && s->peak_lr <= 1))
        cli_usage_error(spec, "--peak-lr must be in (0, 1]");
    if (!(s->floor_frac > 0 && s->floor_frac <= 1))
        cli_usage_error(spec, "--floor must be in (0, 1]");
    s->sched.steps = s->horizon;
    s->sched.warmup = cli_find(spec, "warmup")->seen
                          ? s->warmup : lopt_schedule_default_warmup(s->sched.kind, s->horizon);
    if (lopt_schedule_check(&s->sched, &err) != LOPT_OK) cli_usage_error(spec, "%s", err.msg);
    snprintf(s->sched_args, sizeof s->sched_args,
             " --schedule %s --peak-lr %g --warmup %lld --horizon %lld --floor %g", s->sched_name,
             s->peak_lr > 0 ? s->peak_lr : s->a.nominal_step, (long long)s->sched.warmup,
             (long long)s->horizon, s->floor_frac);
    s->fit_schedule = 1;
}

/* --like sgd|momentum: the normalised feature the optimizer follows, g (0) or
 * momentum m_k (2 + k), and its step and noise */
static void check_like(init_cli *s)
{
    const cli_spec *spec = &s->spec;
    s->feature = -1;
    if (strcmp(s->like, "sgd") == 0) s->feature = 0;
    if (strcmp(s->like, "momentum") == 0) {
        for (int k = 0; k < s->a.nmom; k++)
            if (fabs(s->a.beta[k] - s->beta) < 1e-6) s->feature = 2 + k;
        if (s->feature < 0)
            cli_usage_error(spec, "--beta %g is not one of the %s preset's momenta", s->beta,
                            s->arch_name);
    }
    if (s->feature < 0) cli_usage_error(spec, "--like must be random, sgd or momentum");
    if (!(s->lr > 0 && s->lr < 1)) cli_usage_error(spec, "--lr must be in (0, 1)");
    if (!(s->noise >= 0 && s->noise < 1)) cli_usage_error(spec, "--noise must be in [0, 1)");
}

/* random weights, the nominal form's schedule fitted to --schedule if given */
static void random_weights(init_cli *s, float *theta)
{
    lopt_theta_init(&s->a, (uint64_t)s->seed, theta);
    if (s->fit_schedule) {
        double peak = s->peak_lr > 0 ? s->peak_lr : s->a.nominal_step;
        double worst = lopt_theta_fit_schedule(&s->a, &s->sched, peak, s->floor_frac, theta);
        s->p.horizon = (uint64_t)s->horizon;
        printf("schedule: %s at peak %g over %lld steps (warm-up %lld), fitted to within "
               "a factor %.3g of it (floor %g)\n", lopt_schedule_name(s->sched.kind), peak,
               (long long)s->horizon, (long long)s->sched.warmup, exp(worst), s->floor_frac);
    }
    snprintf(s->p.note, sizeof s->p.note, "untrained: lopt init-lopt --arch %s%s%s --seed %lld",
             s->arch_name, s->nominal_args, s->sched_args, (long long)s->seed);
}

/* the MLP as the hand-designed optimizer of --like, plus --noise */
static void hand_designed_weights(init_cli *s, float *theta)
{
    char beta_arg[48] = "";
    if (strcmp(s->like, "momentum") == 0)
        snprintf(beta_arg, sizeof beta_arg, " --beta %g", s->beta);
    lopt_theta_normalized(&s->a, s->feature, (float)(s->lr / s->a.step_mult), (float)s->noise,
                          (uint64_t)s->seed, theta);
    snprintf(s->p.note, sizeof s->p.note, "untrained: lopt init-lopt --arch %s --like %s "
             "--lr %g%s --noise %g --seed %lld", s->arch_name, s->like, s->lr, beta_arg, s->noise,
             (long long)s->seed);
}

int cmd_init_lopt(int argc, char **argv)
{
    init_cli s;
    memset(&s, 0, sizeof s);
    define_init_flags(&s);
    cli_parse(&s.spec, argc, argv);
    check_init_flags(&s);
    build_arch(&s);
    check_schedule(&s);
    int hand_designed = strcmp(s.like, "random") != 0;
    if (hand_designed) check_like(&s);

    size_t np = lopt_arch_nparams(&s.a);
    float *theta = lopt_floats(np);
    lopt_provenance_set(s.p.estimator, sizeof s.p.estimator, "none");
    if (hand_designed) hand_designed_weights(&s, theta);
    else random_weights(&s, theta);
    lopt_err err = {0};
    lopt_status st = lopt_file_write(s.out, &s.a, theta, &s.p, &err);
    lopt_free(theta);
    if (st != LOPT_OK) cli_fail("init-lopt", "%s", err.msg);
    printf("wrote %s: untrained %s learned optimizer (%s), %zu weights\n", s.out, s.arch_name,
           s.p.note + sizeof "untrained: " - 1, np);
    return 0;
}

/* "0.5 0.9 0.99" */
static void print_floats(const char *label, const float *v, int n)
{
    printf("%-12s", label);
    for (int i = 0; i < n; i++) printf(" %g", v[i]);
    printf("\n");
}

/* info's state: the file and what it holds */
typedef struct {
    cli_spec spec;
    const char *path;
    lopt_arch a;
    float *theta;
    lopt_provenance p;
} info_cli;

/* a single positional FILE: info has no options besides --help, so no cli_parse */
static void parse_info_args(info_cli *s, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            cli_parse(&s->spec, 1, argv + i);   /* prints the help, exits 0 */
        else if (argv[i][0] == '-' && argv[i][1])
            cli_usage_error(&s->spec, "unknown option '%s'", argv[i]);
        else if (s->path)
            cli_usage_error(&s->spec, "one file at a time ('%s', then '%s')", s->path, argv[i]);
        else
            s->path = argv[i];
    }
    if (!s->path) cli_usage_error(&s->spec, "missing FILE.lopt");
}

/* the update rule, with the architecture's constants in it */
static void print_form(const lopt_arch *a)
{
    if (a->form == LOPT_FORM_NOMINAL) {
        char dir[64] = "norm(g)";
        if (a->nominal_dir == LOPT_NOMINAL_MOM)
            snprintf(dir, sizeof dir, "norm(m[beta %g])", a->beta[a->nominal_mom]);
        if (a->nominal_dir == LOPT_NOMINAL_ADAM)
            snprintf(dir, sizeof dir, "adam(m[beta %g], v[beta %g])", a->beta[a->nominal_mom],
                     LOPT_ADAM_BETA2);
        printf("%-12s nominal: w <- w - %g exp(sched(t)) %s - %g d exp(%g s)\n", "form",
               a->nominal_step, dir, a->step_mult, a->exp_mult);
    } else {
        printf("%-12s mlp: w <- w - %g d exp(%g s)\n", "form", a->step_mult, a->exp_mult);
    }
}

static void print_mlp(const lopt_arch *a)
{
    printf("%-12s %d", "mlp", lopt_arch_inputs(a));
    for (int l = 0; l < a->nhidden; l++) printf(" -> %d", a->hidden);
    if (a->form == LOPT_FORM_NOMINAL)
        printf(" -> 2 (ReLU); %zu weights in all (%zu MLP + %d schedule)\n",
               lopt_arch_nparams(a), lopt_arch_schedule_offset(a), a->ntime + 1);
    else
        printf(" -> 2 (ReLU); %zu weights\n", lopt_arch_nparams(a));
}

/* the nominal form's learned parts: the schedule's coefficients, the step they give,
 * and how far the MLP's residual has moved from zero */
static void print_nominal(const info_cli *s)
{
    const lopt_arch *a = &s->a;
    const float *sc = s->theta + lopt_arch_schedule_offset(a);
    printf("%-12s b %g, a", "schedule", sc[a->ntime]);
    for (int j = 0; j < a->ntime; j++) printf(" %g", sc[j]);
    printf("\n%-12s", "nominal step");
    /* the RMS step per tensor the schedule gives, at a few points of training */
    static const int64_t at[] = {0, 100, 1000, 10000};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++)
        printf(" t=%lld %.3g", (long long)at[i],
               a->nominal_step * expf(lopt_arch_schedule(a, s->theta, at[i])));
    if (s->p.horizon > 0)
        printf(" (horizon %llu: %.3g)", (unsigned long long)s->p.horizon,
               a->nominal_step * expf(lopt_arch_schedule(a, s->theta, (int64_t)s->p.horizon)));
    size_t o = lopt_arch_output_offset(a), e = lopt_arch_schedule_offset(a);
    double ss = 0;
    for (size_t i = o; i < e; i++) ss += (double)s->theta[i] * s->theta[i];
    if (ss == 0)
        printf("\n%-12s zero (output layer all zero: the hand-designed step alone)\n",
               "residual");
    else
        printf("\n%-12s output layer RMS %.3g\n", "residual", sqrt(ss / (double)(e - o)));
}

/* the horizon, the meta-training and the note */
static void print_provenance(const lopt_provenance *p)
{
    if (p->horizon > 0)
        printf("%-12s %llu inner steps\n", "horizon", (unsigned long long)p->horizon);
    else
        printf("%-12s unknown%s\n", "horizon",
               p->file_version < 2 ? " (format version 1 does not record it)" : "");
    if (p->outer_steps == 0)
        printf("%-12s untrained\n", "trained");
    else
        printf("%-12s on %s, %s estimator, %s outer loss, %llu outer steps\n", "trained",
               p->task[0] ? p->task : "?", p->estimator[0] ? p->estimator : "?",
               p->outer_loss[0] ? p->outer_loss : "?", (unsigned long long)p->outer_steps);
    if (p->note[0]) {
        /* the note may span lines: indent the continuation lines */
        printf("%-12s ", "note");
        for (const char *c = p->note; *c; c++) {
            putchar(*c);
            if (*c == '\n' && c[1]) printf("%-12s ", "");
        }
        printf("\n");
    }
}

int cmd_info(int argc, char **argv)
{
    info_cli s;
    memset(&s, 0, sizeof s);
    s.spec = (cli_spec){"info", "lopt info FILE.lopt",
                        "Prints what a learned optimizer file holds: its form and architecture, "
                        "the horizon it was meta-trained for, and where it came from.", NULL, 0};
    parse_info_args(&s, argc, argv);
    lopt_err err = {0};
    if (lopt_file_read(s.path, &s.a, &s.theta, &s.p, &err) != LOPT_OK)
        cli_fail("info", "%s", err.msg);
    printf("%-12s %s (.lopt format version %u)\n", "file", s.path, s.p.file_version);
    print_form(&s.a);
    print_floats("momenta", s.a.beta, s.a.nmom);
    print_floats("time scales", s.a.tau, s.a.ntime);
    print_mlp(&s.a);
    if (s.a.form == LOPT_FORM_NOMINAL) print_nominal(&s);
    print_provenance(&s.p);
    lopt_free(s.theta);
    return 0;
}
