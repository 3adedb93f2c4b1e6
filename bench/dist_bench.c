/* dist_bench.c - the cost of the collective meta-train makes every outer step: one
 * lopt_dist_allgather of S per-sample records (core/dist.h; meta/dist.h gives
 * their size: 40 bytes, plus 4 np with the rp sample), here on its own, without
 * the compute around it. Built and run by bench/mpi_scale.sh:
 *     mpirun -np N dist_bench [REPS]
 * Prints one JSON line per (S, record) on rank 0: median and min microseconds per
 * allgather over REPS calls, each after a vote (an allreduce) that lines the ranks
 * up, so waiting for a slow rank is not counted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "meta/dist.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    lopt_err err = {0};
    if (lopt_dist_init(&err) != LOPT_OK) {
        fprintf(stderr, "dist_bench: %s\n", err.msg);
        return 1;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    if (reps < 1) reps = 1;
    const struct {
        const char *what;
        size_t np;
        int rp;
    } recs[] = {{"es", 0, 0}, {"merged-paper", 610, 1}, {"merged-lo", 1762, 1}};
    const int Ss[] = {8, 32, 128};
    double *t = lopt_xcalloc((size_t)reps, sizeof *t);
    for (size_t ri = 0; ri < sizeof recs / sizeof *recs; ri++)
        for (size_t si = 0; si < sizeof Ss / sizeof *Ss; si++) {
            int S = Ss[si];
            size_t rec = lopt_meta_dist_record_bytes(recs[ri].np, recs[ri].rp);
            unsigned char *buf = lopt_xcalloc((size_t)S, rec);
            for (int k = 0; k < 5; k++) lopt_dist_allgather(buf, rec, S);   /* warm-up */
            for (int k = 0; k < reps; k++) {
                lopt_dist_any(0);
                double t0 = lopt_now();
                lopt_dist_allgather(buf, rec, S);
                t[k] = lopt_now() - t0;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            if (lopt_dist_rank() == 0)
                printf("{\"bench\": \"dist/allgather\", \"ranks\": %d, \"estimator\": \"%s\", "
                       "\"samples\": %d, \"record_bytes\": %zu, \"gathered_bytes\": %zu, "
                       "\"median_us\": %.1f, \"min_us\": %.1f, \"runs\": %d}\n",
                       lopt_dist_size(), recs[ri].what, S, rec, (size_t)S * rec,
                       1e6 * t[reps / 2], 1e6 * t[0], reps);
            free(buf);
        }
    free(t);
    return 0;
}
