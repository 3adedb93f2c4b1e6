/* core.h - what every stage of lopt shares: errors, assertions, the counter-based
 * random generator, timing, and atomic file output.
 *
 * Errors come in two kinds (STYLE.md). Programmer errors (a violated precondition)
 * go through LOPT_ASSERT, which reports expression, file and line and aborts.
 * User and environment errors (files, flags, data, divergence) are returned as a
 * lopt_status with a one-line message in a lopt_err the caller owns.
 */
#ifndef LOPT_CORE_H
#define LOPT_CORE_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------------ */

typedef enum {
    LOPT_OK = 0,
    LOPT_EIO,        /* a file could not be opened, read or written */
    LOPT_EFORMAT,    /* a file is corrupt, truncated or not what it claims */
    LOPT_EUSAGE,     /* a bad argument from the user */
    LOPT_ENOMEM,     /* an allocation failed */
    LOPT_EDIVERGED,  /* NaN/inf or a loss blow-up during training */
    LOPT_EINTR,      /* stopped on request (a signal), state kept consistent */
} lopt_status;

typedef struct {
    lopt_status status;
    char msg[512];   /* one line, no trailing newline */
} lopt_err;

/* Records status and a printf-style message in err (if err is not NULL) and
 * returns status, so callers can write `return lopt_fail(err, LOPT_EIO, ...)`. */
lopt_status lopt_fail(lopt_err *err, lopt_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The public API's error reporting (include/lopt.h): copies err's message (or msg)
 * into errbuf (if not NULL, truncated to errlen) and into this thread's last-error
 * buffer that lopt_last_error() returns. Returns -1, so public functions can
 * `return lopt_report(...)`. */
int lopt_report(char *errbuf, size_t errlen, const lopt_err *err);
int lopt_report_msg(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void lopt_assert_fail(const char *expr, const char *file, int line);
#define LOPT_ASSERT(e) ((e) ? (void)0 : lopt_assert_fail(#e, __FILE__, __LINE__))

/* Allocation for model-sized buffers, zero-initialised. On failure (or when
 * n * size overflows) they call the out-of-memory handler, which does not return:
 * the default prints one line and aborts; the CLI installs one that prints
 * "lopt CMD: out of memory ..." and exits 1. Code reachable from the public API
 * with a user's sizes uses the lopt_try_* variants, which return NULL instead. */
void *lopt_xcalloc(size_t n, size_t size);
void *lopt_xrealloc(void *p, size_t n);
float *lopt_floats(size_t n);       /* 64-byte aligned, zeroed; free with lopt_free */
void *lopt_try_calloc(size_t n, size_t size);   /* NULL on failure or overflow */
float *lopt_try_floats(size_t n);               /* NULL on failure or overflow */
void lopt_free(void *p);
typedef void (*lopt_oom_fn)(size_t bytes);      /* must not return */
void lopt_set_oom_handler(lopt_oom_fn fn);      /* NULL: the default (abort) */
/* Calls the out-of-memory handler for an allocation of bytes (does not return). */
void lopt_out_of_memory(size_t bytes) __attribute__((noreturn));

/* ---- randomness ----------------------------------------------------------------
 * Counter-based: every draw is a pure function of (seed, stream, index), so an
 * antithetic pair, a resumed run or another process sees the same numbers without
 * storing them. */

uint64_t lopt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* uniform in [0, 1), 24-bit resolution as float, 53-bit as double */
double lopt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* standard normal (Box-Muller over two uniform draws at 2*index, 2*index+1) */
double lopt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* fills x[0..n) with N(0, std²), draw i at index offset+i */
void lopt_rng_fill_normal(float *x, size_t n, float std, uint64_t seed,
                          uint64_t stream, uint64_t offset);

/* Stream identifiers, so no two uses of one seed ever overlap. */
enum {
    LOPT_STREAM_INIT = 1,     /* model weights */
    LOPT_STREAM_BATCH = 2,    /* data order */
    LOPT_STREAM_TASK = 3,     /* task instance constants (quadratic a, c) */
    LOPT_STREAM_NOISE = 4,    /* gradient noise */
    LOPT_STREAM_TEST = 99,    /* tests only */
};

/* ---- threads -------------------------------------------------------------------
 * One threading model (docs/decisions.md): lopt's OpenMP threads own the cores, at
 * the coarsest independent level there is (samples and trajectories in
 * meta-training, tuning runs in compare, groups of images inside a task's loss and
 * HVP, long element loops), and OpenBLAS runs single-threaded inside them, so its
 * pthreads never compete with OpenMP's workers for the same cores. lopt_task_create
 * calls this; it only sets OpenBLAS's thread count to 1 (once per process). */
void lopt_threads_init(void);

/* ---- time ---------------------------------------------------------------------- */
double lopt_now(void);   /* monotonic seconds */

/* ---- text ----------------------------------------------------------------------
 * A growing string for writers of CSV, JSON, Markdown and SVG. Start from
 * {NULL, 0, 0}; s is NUL-terminated after the first append; free(s) when done. */
typedef struct {
    char *s;
    size_t len, cap;
} lopt_sbuf;
void lopt_sb_printf(lopt_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- files ----------------------------------------------------------------------
 * Atomic write: the data go to PATH.tmp.<pid> (created exclusively), are fsync'ed,
 * then renamed over PATH, so a reader sees the old file or the new one, never half
 * of one. Only a regular file is ever replaced: an existing PATH that is anything
 * else (a directory, a device such as /dev/full, a FIFO, a socket, a symbolic link,
 * even one that points at a regular file) is refused with LOPT_EIO and nothing is
 * written - renaming over a symbolic link would silently replace the link, not its
 * target. Before writing, temp files PATH.tmp.<pid> left by processes that no
 * longer exist (kill -9 mid-write) are removed. */
lopt_status lopt_write_atomic(const char *path, const void *data, size_t n,
                              lopt_err *err);
/* The checks lopt_write_atomic makes before it writes, on their own, so a command
 * can refuse a bad output path before it spends time: PATH is empty, too long, an
 * existing non-regular file, or in a directory that is missing or not writable ->
 * LOPT_EIO (LOPT_EUSAGE for empty / too long) with a one-line reason. */
lopt_status lopt_check_output(const char *path, lopt_err *err);
/* Removes PATH.tmp.<pid> files whose process is gone; returns how many. */
int lopt_clean_stale_tmp(const char *path);
/* 1 if a and b name the same file: the same device and inode when both exist
 * (hard links, symbolic links, ./x and x), else the same canonical path (the real
 * path of the directory plus the last component). */
int lopt_same_file(const char *a, const char *b);

/* Reads a whole file into a malloc'ed buffer (caller frees), at most
 * LOPT_READ_MAX bytes: anything larger (or endless, /dev/zero or a FIFO that keeps
 * writing) is refused with LOPT_EFORMAT once the limit is passed, never read in
 * whole. */
#define LOPT_READ_MAX ((size_t)1 << 30)
lopt_status lopt_read_file(const char *path, unsigned char **data, size_t *n,
                           lopt_err *err);
/* The same with the caller's limit max (bytes) and, if magic is not NULL, the
 * first magic_len bytes required to equal magic: a file that does not start so is
 * refused as "not a WHAT" (LOPT_EFORMAT) as soon as those bytes are read. what
 * names the format in messages ("a .lopt file"). */
lopt_status lopt_read_file_max(const char *path, size_t max, const void *magic,
                               size_t magic_len, const char *what, unsigned char **data,
                               size_t *n, lopt_err *err);

#endif
