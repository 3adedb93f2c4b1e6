/* dist.h - the processes of one job, behind a small interface: every MPI call in
 * lopt lives in dist.c (DESIGN.md section 2, "Scale-out"; docs/scale-out.md).
 *
 * Built with MPI (make MPI=1, or mpicc found), a process started by mpirun joins
 * the job in lopt_dist_init; started any other way it runs alone (size 1) and
 * never calls MPI, like a build without MPI. The build without MPI has the same
 * functions for one process, and refuses to run as one of several mpirun
 * processes (each would run the whole job and write the same files).
 *
 * Bit-identical results on any number of ranks: there is no allreduce(SUM) here,
 * since summing doubles in another order changes their bits. The fixed-order
 * reduction is lopt_dist_allgather of the per-item results (per sample, per seed,
 * per tuning run) followed by the same local reduction in item order on every
 * rank: the sum of item 0, 1, 2, ... whichever rank computed which item.
 *
 * Items are split in contiguous blocks in rank order (lopt_dist_block). The
 * collectives are called by every rank in the same order; a failed MPI call
 * prints which one, on which rank, and aborts the whole job (the communicator's
 * error handler is MPI_ERRORS_RETURN, so lopt sees the codes). A rank that dies
 * is mpirun's to notice: it ends the job (docs/scale-out.md, "Faults").
 * With LOPT_MPI_TIMEOUT=S in the environment a rank that has waited S seconds in
 * one collective (a peer stopped or unreachable, not dead) gives up and exits,
 * which ends the job the same way.
 *
 * Every function is called from the main thread only (MPI_THREAD_FUNNELED).
 */
#ifndef LOPT_DIST_H
#define LOPT_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Joins the job if this process was started by mpirun (idempotent). LOPT_EUSAGE
 * when this binary has no MPI but mpirun started several processes. */
lopt_status lopt_dist_init(lopt_err *err);
int lopt_dist_rank(void);      /* 0 alone */
int lopt_dist_size(void);      /* 1 alone */

/* Items [*lo, *hi) of n that `rank` owns: contiguous blocks in rank order whose
 * sizes differ by at most one. */
void lopt_dist_block(int n, int rank, int *lo, int *hi);
/* The rank that owns item i of n. */
int lopt_dist_owner(int n, int i);

/* items (n, item_bytes): on entry each rank's block (lopt_dist_block) holds its
 * items; on return every rank holds all n, in item order. Collective. */
void lopt_dist_allgather(void *items, size_t item_bytes, int n);
/* bytes of buf from root to every rank. Collective. */
void lopt_dist_bcast(void *buf, size_t bytes, int root);
/* A malloc'ed buffer of rank 0's (*buf, *len) to every rank: the others get their
 * own malloc'ed copy (free it). Collective. */
void lopt_dist_bcast_blob(unsigned char **buf, size_t *len);
/* 1 if flag is non-zero on any rank. Collective. */
int lopt_dist_any(int flag);
/* -1 if v is the same on every rank, else the lowest rank whose v differs from
 * rank 0's. Collective. */
int lopt_dist_agree(uint64_t v);
/* The verdict of a step that may fail on some ranks only (reading a file, loading
 * data): LOPT_OK if st is LOPT_OK on every rank, else the lowest failing rank's
 * status, its message in *err on every rank (with " (on rank R)" when R > 0).
 * Collective; returns st as it is on one rank. */
lopt_status lopt_dist_settle(lopt_status st, lopt_err *err);
/* Point to point (sizes agreed by both sides). */
void lopt_dist_send(const void *buf, size_t bytes, int dest, int tag);
void lopt_dist_recv(void *buf, size_t bytes, int src, int tag);

/* Ends the whole job now with exit code `code`, after printing the message on this
 * rank's stderr (prefixed with the rank when there are several). For a failure
 * that only this rank knows about. */
void lopt_dist_abort(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* Leaves the job (MPI_Finalize) and exits with `code`. Collective: for an end that
 * every rank reaches (success, usage errors, failures all ranks share). */
void lopt_dist_exit(int code) __attribute__((noreturn));

/* Time and volume of this rank's communication so far. With LOPT_MPI_PROFILE=1 in
 * the environment every collective is preceded by a barrier, timed as wait_s, so
 * comm_s is the transfer alone and wait_s the load imbalance. */
typedef struct {
    double comm_s, wait_s;     /* seconds in collectives, and in the barriers before them */
    uint64_t bytes;            /* bytes this rank received */
    uint64_t calls;            /* collectives and receives */
} lopt_dist_stats;
void lopt_dist_get_stats(lopt_dist_stats *st);

#endif
