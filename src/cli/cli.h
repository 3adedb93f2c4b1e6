/* cli.h - the `lopt` command (docs/design.md section 4): argument parsing, progress
 * display and the subcommands. The only code in lopt that prints for the user or
 * exits. Exit codes: 0 success, 1 runtime failure (one-line reason), 2 bad usage
 * (with the usage line). */
#ifndef LOPT_CLI_H
#define LOPT_CLI_H

#include <signal.h>
#include <stdint.h>

#include "core/core.h"

enum { EXIT_USAGE = 2, EXIT_RUNTIME = 1 };

/* Option kinds. OPT_INT, OPT_FLOAT, OPT_STR and OPT_FLAG fill a command's own
 * variables; OPT_INT and OPT_FLOAT print no default (their defaults are rules, such
 * as "steps/20", which the help text states). The bound kinds fill a field of a
 * library config directly (or a command's own variable), and --help prints that
 * value before parsing - the default config's value - as "(default V)": every
 * default lives in the library's _default function alone. An OPT_STR that points at
 * a string before parsing prints it the same way (its default); NULL prints nothing.
 *   OPT_I32     int*, an integer in int32 range
 *   OPT_I64     int64_t*, an integer
 *   OPT_F32     float*, a finite number that is a float (cli_float_ok)
 *   OPT_F64     double*, likewise
 *   OPT_CHOICE  cli_choice*: *value = the index of the flag's value in names; a bad
 *               value: "--NAME must be A, B or C, not 'X'" */
typedef enum { OPT_INT, OPT_FLOAT, OPT_STR, OPT_FLAG, OPT_I32, OPT_I64, OPT_F32, OPT_F64,
               OPT_CHOICE }
    opt_kind;

typedef struct {
    const char *name;     /* without the leading "--" */
    opt_kind kind;
    void *dest;           /* int64_t*, double*, const char**, int*; bound: see above */
    const char *help;
    int required;
    int seen;             /* set by the parser */
} cli_opt;

typedef struct {
    int *value;                  /* an index into names */
    const char *const *names;    /* NULL-terminated */
} cli_choice;

typedef struct {
    const char *command;  /* "train" */
    const char *usage;    /* one line: "lopt train --task T ..." */
    const char *about;    /* a sentence or two for --help */
    cli_opt *opts;
    int nopts;
} cli_spec;

/* Parses argv[0..argc) (after the subcommand) into spec's destinations. --help
 * prints the help and exits 0; errors print "lopt CMD: reason" and the usage line
 * and exit 2. */
void cli_parse(cli_spec *spec, int argc, char **argv);

/* The option called name (without "--") in spec; a programmer error if absent. */
const cli_opt *cli_find(const cli_spec *spec, const char *name);

/* 1 if x is a finite double that is also a float without overflow or underflow
 * to 0 (0 itself, or FLT_MIN <= |x| <= FLT_MAX). Every OPT_FLOAT option and every
 * number parsed out of a string option goes through it: the values end in floats. */
int cli_float_ok(double x);

/* Parses "LO:HI" with 0 < LO < HI, both floats (cli_float_ok); returns 1 and sets
 * *lo, *hi, or 0. */
int cli_parse_range(const char *s, double *lo, double *hi);

/* Parses a comma-separated list of non-negative integer seeds into seeds (at most
 * max); a malformed or overlong list is a usage error naming --flag. Returns the
 * count. */
int cli_parse_seeds(const cli_spec *spec, const char *flag, const char *s, uint64_t *seeds,
                    int max);

/* The inverse: seeds[0..n) as "a,b,c" into buf (a default for --help). */
void cli_format_seeds(const uint64_t *seeds, int n, char *buf, size_t cap);

/* Joins the MPI job when started by mpirun (core/dist.h) and checks that every rank
 * runs the same arguments (else exits 2). Called first by the commands that
 * split their work across ranks (meta-train, compare). Afterwards help, usage
 * errors and progress come from rank 0 alone. */
void cli_join(const char *command, int argc, char **argv);

/* Under MPI: every rank calls it with its own status after a step that may fail on
 * some ranks only (reading a file, loading data); if any failed, rank 0 prints the
 * lowest failing rank's message (prefixed by what, if not NULL; with the usage line
 * for LOPT_EUSAGE) and every rank leaves the job, exit 2 for LOPT_EUSAGE and 1
 * otherwise. Returns when all succeeded, and always on one rank (the caller then
 * handles st as it would alone). */
void cli_settle(const cli_spec *spec, const char *what, lopt_status st, const lopt_err *err);

/* Exits 2 with "lopt CMD: reason" and the usage line. Under MPI every rank calls
 * it (the same arguments give the same verdict); rank 0 prints. */
void cli_usage_error(const cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* Exits 1 with "lopt CMD: reason". Under MPI with several ranks, a failure that
 * this rank alone may have: it prints (with its rank) and ends the whole job. */
void cli_fail(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* The same for a failure that every rank reaches together (a collective result):
 * rank 0 prints, every rank leaves the job and exits 1. */
void cli_fail_all(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* An output path, before the command spends any time: empty or too long -> exit 2;
 * an existing non-regular file (device, FIFO, directory, symbolic link) or a
 * missing / unwritable directory -> exit 1, with the reason. If exists_ok is 0 an
 * existing file is refused with exit 2, "--FLAG PATH already exists: HINT" (hint
 * NULL: "add --force to replace it"). */
void cli_check_output(const cli_spec *spec, const char *flag, const char *path, int exists_ok,
                      const char *hint);
/* Exits 2 if a and b (either may be NULL: nothing to check) are the same file
 * (lopt_same_file: device and inode, or the real path), naming both. */
void cli_check_distinct(const cli_spec *spec, const char *what_a, const char *a,
                        const char *what_b, const char *b);

/* SIGINT and SIGTERM, installed with sigaction and kept installed (a second signal
 * is handled like the first): each sets cli_stop to the signal number, which long
 * loops check to stop at a consistent point. If now is not NULL and cli_writing is
 * 0, the handler calls now(sig) first, which must be async-signal-safe and end the
 * process (_exit) - for commands that have written nothing yet; while cli_writing
 * is 1 (outputs being written) the signal only sets cli_stop, so a write is never
 * cut short. */
extern volatile sig_atomic_t cli_stop, cli_writing;
void cli_signals_install(void (*now)(int sig));

/* Progress on stderr: a redrawn bar on a TTY, a line every few seconds otherwise. */
typedef struct {
    const char *label;
    int tty;
    int quiet;            /* not rank 0 of an MPI job */
    double start, last;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, int64_t done, int64_t total, const char *extra);
void cli_progress_end(cli_progress *p);

int cmd_tasks(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_meta_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_init_lopt(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_pathology(int argc, char **argv);

#endif
