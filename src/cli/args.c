/* args.c - table-driven option parsing, the checks every command makes on its
 * numbers and paths, signal handling and the progress display for `lopt`. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "core/dist.h"

/* Under MPI (cli_join) only rank 0 prints help, usage errors and progress: every
 * rank parses the same arguments and reaches the same verdict. */
static int quiet(void) { return lopt_dist_rank() != 0; }

void cli_join(const char *command, int argc, char **argv)
{
    lopt_err err = {0};
    if (lopt_dist_init(&err) != LOPT_OK) cli_fail(command, "%s", err.msg);
    if (lopt_dist_size() == 1) return;
    /* the first collective: later ones are only safe if every rank runs the same
     * command (FNV-1a over the arguments) */
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < argc; i++)
        for (const unsigned char *c = (const unsigned char *)argv[i];; c++) {
            h = (h ^ *c) * 1099511628211ULL;
            if (!*c) break;
        }
    int bad = lopt_dist_agree(h);
    if (bad >= 0) {
        if (!quiet())
            fprintf(stderr, "lopt %s: rank %d was started with other arguments than rank 0; "
                    "every rank of an MPI job must run the same command (threads per rank: "
                    "OMP_NUM_THREADS)\n", command, bad);
        lopt_dist_exit(EXIT_USAGE);
    }
}

void cli_settle(const cli_spec *spec, const char *what, lopt_status st, const lopt_err *err)
{
    if (lopt_dist_size() == 1) return;
    lopt_err e = {0};
    if (err) e = *err;
    st = lopt_dist_settle(st, &e);
    if (st == LOPT_OK) return;
    if (!quiet()) {
        fprintf(stderr, "lopt %s: %s%s%s\n", spec->command, what ? what : "", what ? ": " : "",
                e.msg);
        if (st == LOPT_EUSAGE) fprintf(stderr, "usage: %s\n", spec->usage);
    }
    lopt_dist_exit(st == LOPT_EUSAGE ? EXIT_USAGE : EXIT_RUNTIME);
}

/* " (default V)" for a bound option, and for a string option that has a value
 * before parsing: that value */
static void default_text(const cli_opt *o, char *out, size_t cap)
{
    out[0] = 0;
    switch (o->kind) {
    case OPT_I32: snprintf(out, cap, " (default %d)", *(const int *)o->dest); break;
    case OPT_I64: snprintf(out, cap, " (default %lld)", (long long)*(const int64_t *)o->dest); break;
    case OPT_F32: snprintf(out, cap, " (default %g)", (double)*(const float *)o->dest); break;
    case OPT_F64: snprintf(out, cap, " (default %g)", *(const double *)o->dest); break;
    case OPT_CHOICE: {
        const cli_choice *c = o->dest;
        snprintf(out, cap, " (default %s)", c->names[*c->value]);
        break;
    }
    case OPT_STR: {
        const char *v = *(const char *const *)o->dest;
        if (v) snprintf(out, cap, " (default %s)", v);
        break;
    }
    default: break;
    }
}

static void print_help(const cli_spec *s)
{
    if (quiet()) return;
    printf("usage: %s\n\n%s\n\noptions:\n", s->usage, s->about);
    for (int i = 0; i < s->nopts; i++) {
        const cli_opt *o = &s->opts[i];
        const char *arg = o->kind == OPT_INT || o->kind == OPT_I32 || o->kind == OPT_I64 ? " N"
                        : o->kind == OPT_FLOAT || o->kind == OPT_F32 || o->kind == OPT_F64 ? " X"
                        : o->kind == OPT_STR || o->kind == OPT_CHOICE ? " S" : "";
        char left[64], def[160];
        snprintf(left, sizeof left, "--%s%s", o->name, arg);
        default_text(o, def, sizeof def);
        printf("  %-22s %s%s%s\n", left, o->help, def, o->required ? " (required)" : "");
    }
    printf("  %-22s %s\n", "--help", "this text");
}

/* OPT_CHOICE: "--NAME must be A, B or C, not 'X'" */
static void bad_choice(const cli_spec *s, const cli_opt *o, const char *v)
{
    const cli_choice *c = o->dest;
    char list[256] = "";
    int n = 0;
    while (c->names[n]) n++;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                 c->names[i]);
    }
    cli_usage_error(s, "--%s must be %s, not '%s'", o->name, list, v);
}

void cli_usage_error(const cli_spec *s, const char *fmt, ...)
{
    if (!quiet()) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "lopt %s: ", s->command);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nusage: %s\n", s->usage);
    }
    lopt_dist_exit(EXIT_USAGE);
}

void cli_fail(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (lopt_dist_size() > 1) {
        /* only this rank may know: it ends the whole job */
        char msg[1024];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        lopt_dist_abort(EXIT_RUNTIME, "lopt %s: %s", command, msg);
    }
    fprintf(stderr, "lopt %s: ", command);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(EXIT_RUNTIME);
}

void cli_fail_all(const char *command, const char *fmt, ...)
{
    if (!quiet()) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "lopt %s: ", command);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n");
    }
    lopt_dist_exit(EXIT_RUNTIME);
}

int cli_float_ok(double x)
{
    if (!isfinite(x) || fabs(x) > FLT_MAX) return 0;
    float f = (float)x;
    return isfinite(f) && (x == 0 || fabsf(f) >= FLT_MIN);
}

static void parse_value(const cli_spec *s, cli_opt *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    /* strtoll and strtod skip leading white space; a value is the number alone */
    int space = isspace((unsigned char)v[0]);
    switch (o->kind) {
    case OPT_INT: {
        long long x = strtoll(v, &end, 10);
        if (space || errno || end == v || *end)
            cli_usage_error(s, "bad value for --%s: '%s' (want an integer)", o->name, v);
        *(int64_t *)o->dest = x;
        break;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        int range = errno == ERANGE;
        if (space || end == v || *end || (!range && !isfinite(x)))
            cli_usage_error(s, "bad value for --%s: '%s' (want a finite number)", o->name, v);
        /* every float option ends up in a float: it must be one */
        if (range || !cli_float_ok(x))
            cli_usage_error(s, "bad value for --%s: '%s' (out of range: a single-precision "
                            "float is 0 or between %g and %g in magnitude)", o->name, v,
                            FLT_MIN, FLT_MAX);
        *(double *)o->dest = x;
        break;
    }
    case OPT_STR:
        *(const char **)o->dest = v;
        break;
    case OPT_FLAG:
        *(int *)o->dest = 1;
        break;
    case OPT_I32: {
        long long x = strtoll(v, &end, 10);
        if (space || errno || end == v || *end)
            cli_usage_error(s, "bad value for --%s: '%s' (want an integer)", o->name, v);
        if (x < INT32_MIN || x > INT32_MAX)
            cli_usage_error(s, "bad value for --%s: '%s' (out of range)", o->name, v);
        *(int *)o->dest = (int)x;
        break;
    }
    case OPT_I64: {
        cli_opt tmp = *o;
        tmp.kind = OPT_INT;
        parse_value(s, &tmp, v);
        break;
    }
    case OPT_F32:
    case OPT_F64: {
        double x;
        cli_opt tmp = *o;
        tmp.kind = OPT_FLOAT;
        tmp.dest = &x;
        parse_value(s, &tmp, v);
        if (o->kind == OPT_F32) *(float *)o->dest = (float)x;
        else *(double *)o->dest = x;
        break;
    }
    case OPT_CHOICE: {
        const cli_choice *c = o->dest;
        int k = 0;
        while (c->names[k] && strcmp(c->names[k], v) != 0) k++;
        if (!c->names[k]) bad_choice(s, o, v);
        *c->value = k;
        break;
    }
    }
}

const cli_opt *cli_find(const cli_spec *s, const char *name)
{
    for (int k = 0; k < s->nopts; k++)
        if (strcmp(s->opts[k].name, name) == 0) return &s->opts[k];
    LOPT_ASSERT(!"cli_find: no such option");
    return NULL;
}

int cli_parse_range(const char *s, double *lo, double *hi)
{
    char *end;
    if (isspace((unsigned char)s[0])) return 0;
    double a = strtod(s, &end), b = NAN;
    if (end != s && *end == ':' && !isspace((unsigned char)end[1])) {
        char *end2;
        b = strtod(end + 1, &end2);
        if (end2 == end + 1 || *end2) b = NAN;
    }
    if (!(a > 0 && b > a && cli_float_ok(a) && cli_float_ok(b))) return 0;
    *lo = a;
    *hi = b;
    return 1;
}

void cli_parse(cli_spec *s, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(s);
            lopt_dist_exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            cli_usage_error(s, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < s->nopts; k++)
            if (strlen(s->opts[k].name) == len && strncmp(s->opts[k].name, name, len) == 0)
                o = &s->opts[k];
        if (!o) cli_usage_error(s, "unknown option '%.*s'", (int)(len + 2), a);
        o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (eq) cli_usage_error(s, "--%s takes no value", o->name);
            parse_value(s, o, "");
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v || (!eq && strncmp(v, "--", 2) == 0 && strlen(v) > 2))
            cli_usage_error(s, "missing value for --%s", o->name);
        parse_value(s, o, v);
    }
    for (int k = 0; k < s->nopts; k++)
        if (s->opts[k].required && !s->opts[k].seen)
            cli_usage_error(s, "missing --%s", s->opts[k].name);
}

void cli_progress_init(cli_progress *p, const char *label)
{
    p->label = label;
    p->quiet = quiet();
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last = lopt_now();
}

void cli_progress_update(cli_progress *p, int64_t done, int64_t total, const char *extra)
{
    if (p->quiet) return;
    double now = lopt_now();
    double every = p->tty ? 0.1 : 5.0;
    if (now - p->last < every && done != total) return;
    p->last = now;
    double el = now - p->start, frac = total > 0 ? (double)done / (double)total : 0.0;
    double eta = frac > 0 ? el * (1.0 - frac) / frac : 0.0;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %5.1fs eta %5.1fs %s\033[K", p->label, bar,
                (long long)done, (long long)total, el, eta, extra ? extra : "");
    } else {
        fprintf(stderr, "%s %lld/%lld (%.0f%%) %.1fs eta %.1fs %s\n", p->label,
                (long long)done, (long long)total, 100 * frac, el, eta, extra ? extra : "");
    }
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->tty && !p->quiet) fprintf(stderr, "\n");
}

int cli_parse_seeds(const cli_spec *spec, const char *flag, const char *s, uint64_t *seeds,
                    int max)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end = NULL;
        errno = 0;
        if (*p < '0' || *p > '9')
            cli_usage_error(spec, "malformed --%s '%s' (want comma-separated "
                            "non-negative integers)", flag, s);
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p || (*end && *end != ','))
            cli_usage_error(spec, "malformed --%s '%s' (want comma-separated "
                            "non-negative integers)", flag, s);
        if (n == max) cli_usage_error(spec, "--%s: at most %d seeds", flag, max);
        seeds[n++] = (uint64_t)v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

void cli_format_seeds(const uint64_t *seeds, int n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%llu", i ? "," : "",
                                (unsigned long long)seeds[i]);
}

/* ---- outputs -------------------------------------------------------------------- */

void cli_check_output(const cli_spec *spec, const char *flag, const char *path, int exists_ok,
                      const char *hint)
{
    lopt_err err = {0};
    lopt_status st = lopt_check_output(path, &err);
    if (st == LOPT_EUSAGE) cli_usage_error(spec, "--%s: %s", flag, err.msg);
    if (st != LOPT_OK) cli_fail(spec->command, "%s", err.msg);
    struct stat sb;
    if (!exists_ok && lstat(path, &sb) == 0)
        cli_usage_error(spec, "--%s %s already exists: %s", flag, path,
                        hint ? hint : "add --force to replace it");
}

void cli_check_distinct(const cli_spec *spec, const char *what_a, const char *a,
                        const char *what_b, const char *b)
{
    if (a && b && lopt_same_file(a, b))
        cli_usage_error(spec, "%s and %s are the same file (%s): one would overwrite the "
                        "other", what_a, what_b, a);
}

/* ---- signals -------------------------------------------------------------------- */

volatile sig_atomic_t cli_stop = 0;
volatile sig_atomic_t cli_writing = 0;
static void (*signal_now)(int sig);

static void on_signal(int sig)
{
    if (signal_now && !cli_writing) signal_now(sig);   /* ends the process */
    cli_stop = sig;
}

void cli_signals_install(void (*now)(int sig))
{
    signal_now = now;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;   /* no SA_RESETHAND: a second signal is handled the same way */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
