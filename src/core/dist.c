/* dist.c - the job's processes (see dist.h): Open MPI when built with LOPT_MPI
 * (make MPI=1), one process otherwise. The only file in lopt that calls MPI. */
#define _POSIX_C_SOURCE 200809L
#include "core/dist.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LOPT_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_init_done = 0;
static lopt_dist_stats g_stats;

int lopt_dist_rank(void) { return g_rank; }
int lopt_dist_size(void) { return g_size; }

void lopt_dist_get_stats(lopt_dist_stats *st) { *st = g_stats; }

void lopt_dist_block(int n, int rank, int *lo, int *hi)
{
    LOPT_ASSERT(n >= 0 && rank >= 0 && rank < g_size);
    *lo = (int)((int64_t)n * rank / g_size);
    *hi = (int)((int64_t)n * (rank + 1) / g_size);
}

int lopt_dist_owner(int n, int i)
{
    LOPT_ASSERT(i >= 0 && i < n);
    int lo, hi;
    for (int r = 0; r < g_size; r++) {
        lopt_dist_block(n, r, &lo, &hi);
        if (i < hi) return r;
    }
    return g_size - 1;
}

/* the size that mpirun (Open MPI; PMI_SIZE: MPICH's hydra) announced, 1 under a
 * PMIx launcher that does not say, 0 when no launcher started this process */
static int launcher_size(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

static void vprint(const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (g_size > 1) fprintf(stderr, "[rank %d of %d] %s\n", g_rank, g_size, msg);
    else fprintf(stderr, "%s\n", msg);
    fflush(stderr);
}

#ifndef LOPT_MPI

/* ---- one process ------------------------------------------------------------------ */

lopt_status lopt_dist_init(lopt_err *err)
{
    if (g_init_done) return LOPT_OK;
    if (launcher_size() > 1)
        return lopt_fail(err, LOPT_EUSAGE, "this lopt was built without MPI, and mpirun "
                         "started %d copies of it: each would run the whole job and write "
                         "the same files; rebuild with `make MPI=1` (needs libopenmpi-dev)",
                         launcher_size());
    g_init_done = 1;
    return LOPT_OK;
}

void lopt_dist_allgather(void *items, size_t item_bytes, int n) { (void)items, (void)item_bytes, (void)n; }
void lopt_dist_bcast(void *buf, size_t bytes, int root) { (void)buf, (void)bytes, (void)root; }
void lopt_dist_bcast_blob(unsigned char **buf, size_t *len) { (void)buf, (void)len; }
int lopt_dist_any(int flag) { return flag != 0; }
int lopt_dist_agree(uint64_t v) { (void)v; return -1; }

void lopt_dist_send(const void *buf, size_t bytes, int dest, int tag)
{
    (void)buf, (void)bytes, (void)dest, (void)tag;
    LOPT_ASSERT(!"lopt_dist_send with one process");
}

void lopt_dist_recv(void *buf, size_t bytes, int src, int tag)
{
    (void)buf, (void)bytes, (void)src, (void)tag;
    LOPT_ASSERT(!"lopt_dist_recv with one process");
}

void lopt_dist_abort(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
    exit(code);
}

void lopt_dist_exit(int code) { exit(code); }

#else

/* ---- Open MPI --------------------------------------------------------------------- */

static MPI_Comm g_comm;
static int g_joined = 0;                /* MPI_Init done */
static int g_profile = 0;
static unsigned g_timeout = 0;          /* LOPT_MPI_TIMEOUT seconds; 0: none */
static char g_alarm_msg[256];
static size_t g_alarm_len;

static void on_alarm(int sig)
{
    (void)sig;
    /* async-signal-safe: the message was formatted before the collective */
    ssize_t w = write(STDERR_FILENO, g_alarm_msg, g_alarm_len);
    (void)w;
    _exit(1);   /* without MPI_Finalize: mpirun sees a dead rank and ends the job */
}

static void finalize_at_exit(void)
{
    int fin = 0;
    if (g_joined && MPI_Finalized(&fin) == MPI_SUCCESS && !fin) MPI_Finalize();
}

lopt_status lopt_dist_init(lopt_err *err)
{
    if (g_init_done) return LOPT_OK;
    g_init_done = 1;
    if (launcher_size() < 1) return LOPT_OK;   /* not started by mpirun: run alone */
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return lopt_fail(err, LOPT_EIO, "MPI_Init_thread failed");
    g_joined = 1;
    atexit(finalize_at_exit);
    g_comm = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    const char *p = getenv("LOPT_MPI_PROFILE");
    g_profile = p && *p && strcmp(p, "0") != 0;
    const char *t = getenv("LOPT_MPI_TIMEOUT");
    if (t && *t) {
        long s = strtol(t, NULL, 10);
        if (s < 0 || s > 100000000)
            return lopt_fail(err, LOPT_EUSAGE, "LOPT_MPI_TIMEOUT must be seconds (0: none)");
        g_timeout = (unsigned)s;
        if (g_timeout > 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_alarm;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGALRM, &sa, NULL);
        }
    }
    return LOPT_OK;
}

void lopt_dist_abort(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
    if (g_joined && g_size > 1) MPI_Abort(g_comm, code);
    exit(code);
}

void lopt_dist_exit(int code) { exit(code); }   /* finalize_at_exit leaves the job */

/* a failed MPI call: which, where, why; then the whole job ends */
static void check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return;
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    lopt_dist_abort(1, "lopt: %s failed: %s (a peer may have died); aborting the job", what, s);
}

typedef struct {
    double t0;
    const char *what;
} span;

/* brackets one call: the profile's barrier (collectives only), the watchdog, the
 * clock */
static span span_begin(const char *what, int collective)
{
    if (g_profile && collective) {
        double w0 = lopt_now();
        check(MPI_Barrier(g_comm), "MPI_Barrier");
        g_stats.wait_s += lopt_now() - w0;
    }
    if (g_timeout > 0) {
        int n = snprintf(g_alarm_msg, sizeof g_alarm_msg,
                         "[rank %d of %d] lopt: waited %u s in %s: a peer is stopped or "
                         "unreachable (LOPT_MPI_TIMEOUT); leaving the job\n",
                         g_rank, g_size, g_timeout, what);
        g_alarm_len = n > 0 && (size_t)n < sizeof g_alarm_msg ? (size_t)n : sizeof g_alarm_msg - 1;
        alarm(g_timeout);
    }
    span sp = {lopt_now(), what};
    return sp;
}

static void span_end(span sp, uint64_t bytes)
{
    if (g_timeout > 0) alarm(0);
    g_stats.comm_s += lopt_now() - sp.t0;
    g_stats.bytes += bytes;
    g_stats.calls++;
}

void lopt_dist_allgather(void *items, size_t item_bytes, int n)
{
    if (g_size == 1 || n == 0) return;
    LOPT_ASSERT(item_bytes > 0 && item_bytes <= INT_MAX);
    int *counts = lopt_xcalloc((size_t)g_size, sizeof *counts);
    int *displs = lopt_xcalloc((size_t)g_size, sizeof *displs);
    for (int r = 0; r < g_size; r++) {
        int lo, hi;
        lopt_dist_block(n, r, &lo, &hi);
        counts[r] = hi - lo;
        displs[r] = lo;
    }
    MPI_Datatype item;
    check(MPI_Type_contiguous((int)item_bytes, MPI_BYTE, &item), "MPI_Type_contiguous");
    check(MPI_Type_commit(&item), "MPI_Type_commit");
    span sp = span_begin("MPI_Allgatherv", 1);
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, items, counts, displs, item, g_comm),
          "MPI_Allgatherv");
    span_end(sp, (uint64_t)(n - counts[g_rank]) * item_bytes);
    MPI_Type_free(&item);
    free(counts);
    free(displs);
}

/* MPI counts are ints: large buffers go in chunks */
#define CHUNK ((size_t)1 << 30)

void lopt_dist_bcast(void *buf, size_t bytes, int root)
{
    if (g_size == 1) return;
    span sp = span_begin("MPI_Bcast", 1);
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
        check(MPI_Bcast((unsigned char *)buf + off, (int)n, MPI_BYTE, root, g_comm), "MPI_Bcast");
    }
    span_end(sp, g_rank == root ? 0 : bytes);
}

void lopt_dist_bcast_blob(unsigned char **buf, size_t *len)
{
    if (g_size == 1) return;
    uint64_t n = g_rank == 0 ? (uint64_t)*len : 0;
    lopt_dist_bcast(&n, sizeof n, 0);
    if (g_rank != 0) {
        *len = (size_t)n;
        *buf = malloc(n ? (size_t)n : 1);
        LOPT_ASSERT(*buf);
    }
    lopt_dist_bcast(*buf, (size_t)n, 0);
}

int lopt_dist_any(int flag)
{
    if (g_size == 1) return flag != 0;
    int v = flag != 0, out = 0;
    span sp = span_begin("MPI_Allreduce", 1);
    check(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, g_comm), "MPI_Allreduce");
    span_end(sp, sizeof out);
    return out;
}

int lopt_dist_agree(uint64_t v)
{
    if (g_size == 1) return -1;
    uint64_t *all = lopt_xcalloc((size_t)g_size, sizeof *all);
    all[g_rank] = v;
    lopt_dist_allgather(all, sizeof *all, g_size);
    int bad = -1;
    for (int r = 1; r < g_size && bad < 0; r++)
        if (all[r] != all[0]) bad = r;
    free(all);
    return bad;
}

void lopt_dist_send(const void *buf, size_t bytes, int dest, int tag)
{
    LOPT_ASSERT(g_size > 1 && bytes <= INT_MAX);
    span sp = span_begin("MPI_Send", 0);
    check(MPI_Send(buf, (int)bytes, MPI_BYTE, dest, tag, g_comm), "MPI_Send");
    span_end(sp, 0);
}

void lopt_dist_recv(void *buf, size_t bytes, int src, int tag)
{
    LOPT_ASSERT(g_size > 1 && bytes <= INT_MAX);
    span sp = span_begin("MPI_Recv", 0);
    check(MPI_Recv(buf, (int)bytes, MPI_BYTE, src, tag, g_comm, MPI_STATUS_IGNORE), "MPI_Recv");
    span_end(sp, bytes);
}

#endif

/* ---- either --------------------------------------------------------------------- */

lopt_status lopt_dist_settle(lopt_status st, lopt_err *err)
{
    if (g_size == 1) return st;
    int bad = -1;
    lopt_err *all = lopt_xcalloc((size_t)g_size, sizeof *all);   /* item r: rank r's */
    all[g_rank].status = st;
    if (st != LOPT_OK)
        snprintf(all[g_rank].msg, sizeof all[g_rank].msg, "%s", err ? err->msg : "failed");
    lopt_dist_allgather(all, sizeof *all, g_size);
    for (int r = 0; r < g_size && bad < 0; r++)
        if (all[r].status != LOPT_OK) bad = r;
    lopt_status out = LOPT_OK;
    if (bad >= 0) {
        out = all[bad].status;
        if (err) {
            if (bad > 0)
                lopt_fail(err, out, "%.480s (on rank %d)", all[bad].msg, bad);
            else
                lopt_fail(err, out, "%s", all[bad].msg);
        }
    }
    free(all);
    return out;
}
