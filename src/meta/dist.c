/* meta/dist.c - the per-step exchange of sample results and the gathering of
 * trajectories for a checkpoint (see meta/dist.h). */
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "meta/dist.h"

#define SCALARS 5   /* loss_plus, loss_minus, inner steps, diverged, needs_reset */

size_t lopt_meta_dist_record_bytes(size_t np, int with_rp)
{
    return SCALARS * sizeof(double) + (with_rp ? np * sizeof(float) : 0);
}

void lopt_meta_dist_share(int S, size_t np, double *loss_plus, double *loss_minus,
                          long *inner_steps, int *div_flags, float *g_rp, lopt_traj *plus,
                          lopt_traj *minus)
{
    if (lopt_dist_size() == 1) return;
    const size_t rec = lopt_meta_dist_record_bytes(np, g_rp != NULL);
    unsigned char *buf = lopt_xcalloc((size_t)S, rec);
    int lo, hi;
    lopt_dist_block(S, lopt_dist_rank(), &lo, &hi);
    for (int s = lo; s < hi; s++) {
        unsigned char *p = buf + (size_t)s * rec;
        /* integers as doubles: exact below 2^53 */
        double v[SCALARS] = {loss_plus[s], loss_minus[s], (double)inner_steps[s],
                             (double)div_flags[s], (double)plus[s].needs_reset};
        memcpy(p, v, sizeof v);
        if (g_rp) memcpy(p + sizeof v, g_rp + (size_t)s * np, np * sizeof(float));
    }
    lopt_dist_allgather(buf, rec, S);
    for (int s = 0; s < S; s++) {
        if (s >= lo && s < hi) continue;
        const unsigned char *p = buf + (size_t)s * rec;
        double v[SCALARS];
        memcpy(v, p, sizeof v);
        loss_plus[s] = v[0];
        loss_minus[s] = v[1];
        inner_steps[s] = (long)v[2];
        div_flags[s] = (int)v[3];
        plus[s].needs_reset = (int)v[4];
        if (minus) minus[s].needs_reset = (int)v[4];
        if (g_rp) memcpy(g_rp + (size_t)s * np, p + sizeof v, np * sizeof(float));
    }
    free(buf);
}

/* one trajectory: 5 scalars, w (n), m (rows, n): rows = lopt_arch_state_rows */
static size_t traj_bytes(size_t n, int rows)
{
    return 5 * sizeof(uint64_t) + (1 + (size_t)rows) * n * sizeof(float);
}

static unsigned char *put_traj(unsigned char *p, const lopt_traj *t, size_t n, int rows)
{
    uint64_t v[5] = {(uint64_t)t->t, (uint64_t)t->horizon, t->task_seed, 0,
                     (uint64_t)t->needs_reset};
    memcpy(&v[3], &t->init_loss, sizeof(double));
    memcpy(p, v, sizeof v);
    p += sizeof v;
    memcpy(p, t->w, n * sizeof(float));
    p += n * sizeof(float);
    memcpy(p, t->m, (size_t)rows * n * sizeof(float));
    return p + (size_t)rows * n * sizeof(float);
}

static const unsigned char *get_traj(const unsigned char *p, lopt_traj *t, size_t n, int rows)
{
    uint64_t v[5];
    memcpy(v, p, sizeof v);
    p += sizeof v;
    t->t = (int64_t)v[0];
    t->horizon = (int64_t)v[1];
    t->task_seed = v[2];
    memcpy(&t->init_loss, &v[3], sizeof(double));
    t->needs_reset = (int)v[4];
    memcpy(t->w, p, n * sizeof(float));
    p += n * sizeof(float);
    memcpy(t->m, p, (size_t)rows * n * sizeof(float));
    return p + (size_t)rows * n * sizeof(float);
}

void lopt_meta_dist_gather_trajs(int S, lopt_traj *plus, lopt_traj *minus, size_t n, int rows)
{
    if (lopt_dist_size() == 1) return;
    const int rank = lopt_dist_rank();
    const size_t rec = traj_bytes(n, rows) * (minus ? 2 : 1);
    unsigned char *buf = malloc(rec);
    LOPT_ASSERT(buf);
    /* one trajectory (pair) at a time, in sample order: rank 0's memory grows by
     * one record, whatever S */
    for (int s = 0; s < S; s++) {
        int owner = lopt_dist_owner(S, s);
        if (owner == 0) continue;
        if (rank == owner) {
            unsigned char *p = put_traj(buf, &plus[s], n, rows);
            if (minus) put_traj(p, &minus[s], n, rows);
            lopt_dist_send(buf, rec, 0, s);
        } else if (rank == 0) {
            lopt_dist_recv(buf, rec, owner, s);
            const unsigned char *p = get_traj(buf, &plus[s], n, rows);
            if (minus) get_traj(p, &minus[s], n, rows);
        }
    }
    free(buf);
}
