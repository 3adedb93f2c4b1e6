/* check.h - the test harness: named checks, the first mismatches printed, a
 * non-zero exit on any failure. Header-only; each test binary includes it once. */
#ifndef LOPT_CHECK_H
#define LOPT_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures = 0;
static int check_count = 0;

/* A named boolean check. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond)) {                                                         \
            check_failures++;                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

/* Compares got[0..n) to want[0..n) elementwise with |got-want| <= atol + rtol|want|,
 * prints up to 5 mismatches and the max relative error; returns 1 if all close. */
static __attribute__((unused)) int check_close(const char *name, const double *got, const double *want,
                       size_t n, double rtol, double atol)
{
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        double rel = d / (fabs(want[i]) + atol);
        if (rel > worst || isnan(d)) worst = isnan(d) ? INFINITY : rel;
        if (!(d <= atol + rtol * fabs(want[i]))) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.8g want %.8g\n", name, i, got[i], want[i]);
            bad++;
        }
    }
    check_count++;
    if (bad) {
        check_failures++;
        fprintf(stderr, "FAIL %s: %zu of %zu mismatched (max rel err %.3g)\n", name,
                bad, n, worst);
        return 0;
    }
    printf("ok   %s (n=%zu, max rel err %.3g)\n", name, n, worst);
    return 1;
}

/* Ends main: prints the tally, returns the exit status. */
static int check_done(const char *suite)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", suite, check_failures, check_count);
        return 1;
    }
    printf("%s: all %d checks passed\n", suite, check_count);
    return 0;
}

#endif
