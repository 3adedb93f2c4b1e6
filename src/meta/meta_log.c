/* meta_log.c - the meta-training log (meta_log.h): rows in memory and in
 * checkpoints, CSV only on the way out, and in from the logs of version-1 and -2
 * checkpoints, which kept it as CSV text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta_log.h"

const char lopt_meta_csv_header[] =
    "step,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,K,inner_steps_per_s,resets,"
    "diverged,skipped,time_s,eval_final,eval_mean\n";
/* the header of version-1 checkpoints' logs: the first 13 columns */
static const char csv_header_v1[] =
    "step,outer_loss,g_rp_norm,g_es_norm,v_rp,v_es,w_es,K,inner_steps_per_s,resets,"
    "diverged,skipped,time_s\n";

void lopt_meta_log_push(lopt_meta_log *l, const lopt_meta_row *r)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->rows = lopt_xrealloc(l->rows, l->cap * sizeof *l->rows);
    }
    l->rows[l->n++] = *r;
}

void lopt_meta_log_free(lopt_meta_log *l)
{
    free(l->rows);
    *l = (lopt_meta_log){0};
}

/* ---- CSV out ------------------------------------------------------------------- */

/* a CSV number: empty for NaN (not measured at this step) */
static void csv_num(char *buf, size_t cap, const char *fmt, double v)
{
    if (isnan(v)) buf[0] = 0;
    else snprintf(buf, cap, fmt, v);
}

/* one row as a CSV line with its newline; returns its length */
static int csv_line(const lopt_meta_row *r, char *line, size_t cap)
{
    const double v[9] = {r->outer_loss, r->g_rp_norm, r->g_es_norm, r->v_rp, r->v_es,
                         r->w_es, r->inner_steps_per_s, r->eval_final, r->eval_mean};
    static const char *const fmt[9] = {"%.6f", "%.6g", "%.6g", "%.6g", "%.6g",
                                       "%.4f", "%.1f", "%.6f", "%.6f"};
    char f[9][32];
    for (int i = 0; i < 9; i++) csv_num(f[i], sizeof f[i], fmt[i], v[i]);
    return snprintf(line, cap, "%lld,%s,%s,%s,%s,%s,%s,%d,%s,%lld,%lld,%d,%.2f,%s,%s\n",
                    (long long)r->step, f[0], f[1], f[2], f[3], f[4], f[5], r->K, f[6],
                    (long long)r->resets, (long long)r->diverged, r->skipped, r->time_s, f[7],
                    f[8]);
}

char *lopt_meta_log_csv(const lopt_meta_row *rows, size_t n)
{
    size_t cap = sizeof lopt_meta_csv_header + 128 * n + 1, len = 0;
    char *text = lopt_xrealloc(NULL, cap);
    len = (size_t)snprintf(text, cap, "%s", lopt_meta_csv_header);
    for (size_t i = 0; i < n; i++) {
        /* a line is at most ~700 characters (a time_s near DBL_MAX prints 310 of
         * them); a longer one would be cut, never read past */
        char line[1024];
        int w = csv_line(&rows[i], line, sizeof line);
        size_t k = w < 0 ? 0 : (size_t)w < sizeof line ? (size_t)w : sizeof line - 1;
        line[k] = 0;
        if (len + k + 1 > cap) {
            cap = 2 * (len + k + 1);
            text = lopt_xrealloc(text, cap);
        }
        memcpy(text + len, line, k + 1);
        len += k;
    }
    return text;
}

/* ---- checkpoints ------------------------------------------------------------------
 * Version 3: the row count, then each row's 15 fields in column order, integers as
 * u64 and the rest as f64 - exact, so a resumed run's log is the uninterrupted one's. */

#define ROW_BYTES (15 * 8)

void lopt_meta_log_put(ser_out *o, const lopt_meta_log *l)
{
    ser_u64(o, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const lopt_meta_row *r = &l->rows[i];
        ser_u64(o, (uint64_t)r->step);
        const double a[6] = {r->outer_loss, r->g_rp_norm, r->g_es_norm, r->v_rp, r->v_es,
                             r->w_es};
        ser_f64s(o, a, 6);
        ser_u64(o, (uint64_t)(int64_t)r->K);
        ser_f64(o, r->inner_steps_per_s);
        ser_u64(o, (uint64_t)r->resets);
        ser_u64(o, (uint64_t)r->diverged);
        ser_u64(o, (uint64_t)(int64_t)r->skipped);
        const double b[3] = {r->time_s, r->eval_final, r->eval_mean};
        ser_f64s(o, b, 3);
    }
}

void lopt_meta_log_get(ser_in *in, lopt_meta_log *l)
{
    uint64_t n = ser_get_u64(in);
    /* never an allocation that the bytes left cannot fill */
    if (in->bad || n > (in->len - in->pos) / ROW_BYTES) {
        in->bad = 1;
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        lopt_meta_row r;
        r.step = (int64_t)ser_get_u64(in);
        double a[6];
        ser_get_f64s(in, a, 6);
        r.outer_loss = a[0], r.g_rp_norm = a[1], r.g_es_norm = a[2];
        r.v_rp = a[3], r.v_es = a[4], r.w_es = a[5];
        r.K = (int)(int64_t)ser_get_u64(in);
        r.inner_steps_per_s = ser_get_f64(in);
        r.resets = (int64_t)ser_get_u64(in);
        r.diverged = (int64_t)ser_get_u64(in);
        r.skipped = (int)(int64_t)ser_get_u64(in);
        double b[3];
        ser_get_f64s(in, b, 3);
        r.time_s = b[0], r.eval_final = b[1], r.eval_mean = b[2];
        lopt_meta_log_push(l, &r);
    }
}

/* ---- CSV in: the logs of version-1 and -2 checkpoints ---------------------------- */

/* field k of a line as a number: NaN when empty or not a number */
static double num(char *const *field, int nfield, int k)
{
    if (k >= nfield || !*field[k]) return NAN;
    char *end;
    double v = strtod(field[k], &end);
    return end == field[k] ? NAN : v;
}

/* the same as an integer, 0 when empty */
static long long whole(char *const *field, int nfield, int k)
{
    double v = num(field, nfield, k);
    return isfinite(v) && fabs(v) < 9e18 ? (long long)v : 0;
}

static void parse_line(char *line, lopt_meta_log *l)
{
    char *field[15] = {0};
    int nf = 0;
    for (char *p = line; nf < 15;) {
        field[nf++] = p;
        p = strchr(p, ',');
        if (!p) break;
        *p++ = 0;
    }
    lopt_meta_row r = {
        .step = whole(field, nf, 0), .outer_loss = num(field, nf, 1),
        .g_rp_norm = num(field, nf, 2), .g_es_norm = num(field, nf, 3),
        .v_rp = num(field, nf, 4), .v_es = num(field, nf, 5), .w_es = num(field, nf, 6),
        .K = (int)whole(field, nf, 7), .inner_steps_per_s = num(field, nf, 8),
        .resets = whole(field, nf, 9), .diverged = whole(field, nf, 10),
        .skipped = (int)whole(field, nf, 11), .time_s = num(field, nf, 12),
        .eval_final = num(field, nf, 13), .eval_mean = num(field, nf, 14)};
    lopt_meta_log_push(l, &r);
}

int lopt_meta_log_from_csv(const unsigned char *text, size_t len, lopt_meta_log *l)
{
    const char *h = len >= strlen(lopt_meta_csv_header) &&
                            memcmp(text, lopt_meta_csv_header, strlen(lopt_meta_csv_header)) == 0
                        ? lopt_meta_csv_header
                    : len >= strlen(csv_header_v1) &&
                            memcmp(text, csv_header_v1, strlen(csv_header_v1)) == 0
                        ? csv_header_v1
                        : NULL;
    if (!h) return 0;
    char *copy = lopt_xrealloc(NULL, len + 1);   /* NUL-terminated lines for strtod */
    memcpy(copy, text, len);
    copy[len] = 0;
    for (char *p = copy + strlen(h); *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (*p) parse_line(p, l);
        if (!nl) break;
        p = nl + 1;
    }
    free(copy);
    return 1;
}
