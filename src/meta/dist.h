/* meta/dist.h - meta-training across the ranks of an MPI job (core/dist.h;
 * docs/scale-out.md): what the ranks exchange after each outer step and before a
 * checkpoint.
 *
 * Rank r owns the samples (trajectories) of its block, lopt_dist_block(S, r):
 * their inner state lives on r alone. Every rank keeps the rest of the run
 * identical - theta, Adam, counters, the perturbations (drawn again on every rank
 * from the counter-based generator: a pure function of seed, step, sample and
 * instance id, never sent) and the pes sums xi - and reduces all S samples in
 * sample order, so the result has the same bits on any number of ranks.
 *
 * Per outer step each sample's owner sends every other rank one record:
 *     loss_plus, loss_minus, inner steps, diverged, needs_reset  (5 doubles)
 *     g_rp                                          (np floats; rp and merged only)
 * = 40 + 4 np bytes with rp (2,480 for the paper preset), 40 without.
 * Before a checkpoint the owners send their trajectories to rank 0, which writes
 * them all: a checkpoint resumes on any number of ranks.
 */
#ifndef LOPT_META_DIST_H
#define LOPT_META_DIST_H

#include <stddef.h>

#include "meta/unroll.h"

/* Bytes one sample's record takes (with_rp: the rp sample goes with it). */
size_t lopt_meta_dist_record_bytes(size_t np, int with_rp);

/* After each rank ran the samples of its block: every rank gets every sample's
 * loss_plus, loss_minus, inner_steps, div_flags and g_rp (S, np; NULL without rp)
 * slots, and the needs_reset flag of the trajectories it does not own (plus, and
 * minus when not NULL). Collective; nothing to do on one rank. */
void lopt_meta_dist_share(int S, size_t np, double *loss_plus, double *loss_minus,
                          long *inner_steps, int *div_flags, float *g_rp, lopt_traj *plus,
                          lopt_traj *minus);

/* Brings every trajectory (plus, and minus when not NULL; n weights, rows state rows)
 * to rank 0 from its owner. Collective; nothing to do on one rank. */
void lopt_meta_dist_gather_trajs(int S, lopt_traj *plus, lopt_traj *minus, size_t n, int rows);

#endif
