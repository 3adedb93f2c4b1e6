/* main.c - `lopt`: dispatches to the subcommands (docs/design.md section 4). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
} commands[] = {
    {"tasks", cmd_tasks, "list the standard tasks"},
    {"train", cmd_train, "train a task with an optimizer, log the curve"},
    {"meta-train", cmd_meta_train, "meta-train a learned optimizer (rp, es, merged, pes)"},
    {"bench", cmd_bench, "time lopt's kernels (JSON lines)"},
    {"init-lopt", cmd_init_lopt, "write an untrained learned optimizer (.lopt)"},
    {"info", cmd_info, "what a .lopt file holds: form, architecture, horizon, provenance"},
    {"compare", cmd_compare, "learned optimizer vs tuned baselines on held-out seeds"},
    {"pathology", cmd_pathology, "surface | gradvar | bias: the pathologies of unrolling"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: lopt <command> [options]   (lopt <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].about);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "lopt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
