/* cmd_lopt.c - `lopt init-lopt`: writes an untrained learned optimizer as a .lopt
 * file, a starting point for meta-training (`lopt meta-train --init`) and a way to
 * try the learned-optimizer plumbing (`lopt train --opt learned:FILE`, the C API)
 * before anything is trained. Either random weights (lopt_theta_init) or weights
 * that make the MLP a hand-designed optimizer, normalised SGD or normalised
 * momentum at a given step size (lopt_theta_normalized), plus small noise so
 * meta-training can move every weight. DESIGN.md sections 1.1 and 5. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

int cmd_init_lopt(int argc, char **argv)
{
    const char *arch_name = "paper", *out = NULL, *like = "random";
    int64_t seed = 0;
    double lr = 1e-3, beta = 0.9, noise = 0.01;
    cli_opt opts[] = {
        {"arch", OPT_STR, &arch_name, "architecture preset paper|lo (default paper)", 0, 0},
        {"like", OPT_STR, &like, "random|sgd|momentum: random weights, or weights that "
                                 "make a per-tensor normalised SGD / momentum (default random)", 0, 0},
        {"lr", OPT_FLOAT, &lr, "with --like sgd|momentum: RMS step per tensor (default 1e-3)", 0, 0},
        {"beta", OPT_FLOAT, &beta, "with --like momentum: which of the preset's momenta (default 0.9)", 0, 0},
        {"noise", OPT_FLOAT, &noise, "with --like sgd|momentum: std of the noise on every weight "
                                     "(default 0.01)", 0, 0},
        {"seed", OPT_INT, &seed, "seed of the random weights (default 0)", 0, 0},
        {"out", OPT_STR, &out, "the .lopt file to write", 1, 0},
    };
    cli_spec spec = {"init-lopt", "lopt init-lopt [--arch paper|lo] [--like random|sgd|momentum] [--lr X] "
                     "[--beta B] [--noise X] [--seed S] --out FILE.lopt",
                     "Writes an untrained learned optimizer: random weights, or a hand-designed "
                     "normalised SGD / momentum to start meta-training from.",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (seed < 0) cli_usage_error(&spec, "--seed must be non-negative");

    lopt_err err = {0};
    lopt_arch a;
    if (lopt_arch_preset(&a, arch_name, &err) != LOPT_OK) cli_usage_error(&spec, "%s", err.msg);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np);
    lopt_provenance p = {0};
    lopt_provenance_set(p.estimator, sizeof p.estimator, "none");
    if (strcmp(like, "random") == 0) {
        lopt_theta_init(&a, (uint64_t)seed, theta);
        snprintf(p.note, sizeof p.note, "untrained: lopt init-lopt --arch %s --seed %lld",
                 arch_name, (long long)seed);
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
