/* main.c - `lopt`: dispatches to the subcommands (docs/design.md section 4). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"

static const char *command = "";

/* Out of memory anywhere in the library: one line and exit 1, not an abort. */
static void on_oom(size_t bytes)
{
    fflush(stdout);
    if (bytes == SIZE_MAX)
        fprintf(stderr, "lopt%s%s: out of memory (a size beyond the address space)\n",
                *command ? " " : "", command);
    else
        fprintf(stderr, "lopt%s%s: out of memory (an allocation of %.4g MB failed; a smaller "
                "--batch, fewer --samples or a smaller task needs less)\n", *command ? " " : "",
                command, (double)bytes / 1e6);
    fflush(stderr);
    _exit(EXIT_RUNTIME);
}

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
    lopt_set_oom_handler(on_oom);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            command = commands[i].name;
            return commands[i].run(argc - 2, argv + 2);
        }
    fprintf(stderr, "lopt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
