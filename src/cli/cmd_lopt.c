/* cmd_lopt.c - `lopt init-lopt`: writes an untrained learned optimizer (theta from
 * lopt_theta_init) as a .lopt file, a starting point for meta-training and a way
 * to try the learned-optimizer plumbing (`lopt train --opt learned:FILE`, the C API)
 * before anything is trained. DESIGN.md sections 1.1 and 5. */
#include <stdio.h>

#include "cli/cli.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

int cmd_init_lopt(int argc, char **argv)
{
    const char *arch_name = "paper", *out = NULL;
    int64_t seed = 0;
    cli_opt opts[] = {
        {"arch", OPT_STR, &arch_name, "architecture preset paper|lo (default paper)", 0, 0},
        {"seed", OPT_INT, &seed, "seed of the random weights (default 0)", 0, 0},
        {"out", OPT_STR, &out, "the .lopt file to write", 1, 0},
    };
    cli_spec spec = {"init-lopt", "lopt init-lopt [--arch paper|lo] [--seed S] --out FILE.lopt",
                     "Writes an untrained learned optimizer (random weights): a starting "
                     "point for meta-training, not a useful optimizer.",
                     opts, (int)(sizeof opts / sizeof *opts)};
    cli_parse(&spec, argc, argv);
    if (seed < 0) cli_usage_error(&spec, "--seed must be non-negative");

    lopt_err err = {0};
    lopt_arch a;
    if (lopt_arch_preset(&a, arch_name, &err) != LOPT_OK) cli_usage_error(&spec, "%s", err.msg);
    size_t np = lopt_arch_nparams(&a);
    float *theta = lopt_floats(np);
    lopt_theta_init(&a, (uint64_t)seed, theta);
    lopt_provenance p = {0};
    lopt_provenance_set(p.estimator, sizeof p.estimator, "none");
    snprintf(p.note, sizeof p.note, "untrained: lopt init-lopt --arch %s --seed %lld",
             arch_name, (long long)seed);
    lopt_status st = lopt_file_write(out, &a, theta, &p, &err);
    lopt_free(theta);
    if (st != LOPT_OK) cli_fail("init-lopt", "%s", err.msg);
    printf("wrote %s: untrained %s learned optimizer, %zu weights, seed %lld\n", out,
           arch_name, np, (long long)seed);
    return 0;
}
