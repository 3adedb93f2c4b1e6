/* core.c - errors, allocation, the counter-based RNG, time, atomic and bounded files. */
#define _XOPEN_SOURCE 700
#include "core.h"
#include "lopt.h"   /* lopt_last_error */

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

lopt_status lopt_fail(lopt_err *err, lopt_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

static _Thread_local char last_error[512];

const char *lopt_last_error(void) { return last_error; }

int lopt_report(char *errbuf, size_t errlen, const lopt_err *err)
{
    const char *msg = err && err->msg[0] ? err->msg : "unknown error";
    snprintf(last_error, sizeof last_error, "%s", msg);
    if (errbuf && errlen > 0) snprintf(errbuf, errlen, "%s", msg);
    return -1;
}

int lopt_report_msg(char *errbuf, size_t errlen, const char *fmt, ...)
{
    lopt_err e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    return lopt_report(errbuf, errlen, &e);
}

void lopt_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lopt: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void default_oom(size_t bytes)
{
    fprintf(stderr, "lopt: out of memory (%zu bytes)\n", bytes);
    abort();
}
static lopt_oom_fn oom_handler = default_oom;

void lopt_set_oom_handler(lopt_oom_fn fn) { oom_handler = fn ? fn : default_oom; }

void lopt_out_of_memory(size_t bytes)
{
    oom_handler(bytes);
    abort();   /* a handler must not return */
}
#define oom lopt_out_of_memory

void *lopt_try_calloc(size_t n, size_t size)
{
    if (n == 0) n = 1;
    if (size == 0) size = 1;
    if (n > SIZE_MAX / size) return NULL;
    return calloc(n, size);
}

void *lopt_xcalloc(size_t n, size_t size)
{
    void *p = lopt_try_calloc(n, size);
    if (!p) oom(n > SIZE_MAX / (size ? size : 1) ? SIZE_MAX : n * size);
    return p;
}

void *lopt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

float *lopt_try_floats(size_t n)
{
    if (n > (SIZE_MAX - 63) / sizeof(float)) return NULL;
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

float *lopt_floats(size_t n)
{
    float *p = lopt_try_floats(n);
    if (!p) oom(n > SIZE_MAX / sizeof(float) ? SIZE_MAX : n * sizeof(float));
    return p;
}

void lopt_free(void *p) { free(p); }

void openblas_set_num_threads(int num_threads);   /* OpenBLAS's API (no cblas.h here) */

void lopt_threads_init(void)
{
    /* idempotent; called from the main thread before any parallel region */
    static int done = 0;
    if (done) return;
    openblas_set_num_threads(1);
    done = 1;
}

/* A keyed mix of the counter (splitmix64's finaliser applied to a Weyl sequence over
 * the key); three rounds decorrelate neighbouring (seed, stream, index) triples. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t lopt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = mix64(k ^ (stream * 0xd1b54a32d192ed03ULL));
    return mix64(k + index * 0x9e3779b97f4a7c15ULL);
}

double lopt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (double)(lopt_rng_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

double lopt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    double u1 = 1.0 - lopt_rng_uniform(seed, stream, 2 * index);  /* (0, 1] */
    double u2 = lopt_rng_uniform(seed, stream, 2 * index + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void lopt_rng_fill_normal(float *x, size_t n, float std, uint64_t seed,
                          uint64_t stream, uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        x[i] = std * (float)lopt_rng_normal(seed, stream, offset + i);
}

void lopt_sb_printf(lopt_sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        LOPT_ASSERT(k >= 0);
        if (b->s && b->len + (size_t)k < b->cap) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->len + (size_t)k) cap *= 2;
        b->s = lopt_xrealloc(b->s, cap);
        b->cap = cap;
    }
}

double lopt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- files ------------------------------------------------------------------------ */

#define PATH_CAP 4096

/* a path for a one-line message: long ones keep their start and end, so the reason
 * after them still fits in lopt_err */
typedef struct { char s[200]; } short_path;
static short_path shorten(const char *path)
{
    short_path r;
    size_t len = strlen(path);
    if (len < sizeof r.s) snprintf(r.s, sizeof r.s, "%s", path);
    else snprintf(r.s, sizeof r.s, "%.90s...%s", path, path + len - 90);
    return r;
}
#define SP(p) (shorten(p).s)

/* dir (".", or everything before the last '/') and the last component of path */
static int split_path(const char *path, char *dir, size_t cap, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
        *base = path;
        return 1;
    }
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= cap) return 0;
    memcpy(dir, path, len);
    dir[len] = 0;
    *base = slash + 1;
    return 1;
}

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "directory" : S_ISCHR(m) ? "character device"
         : S_ISBLK(m) ? "block device" : S_ISFIFO(m) ? "FIFO"
         : S_ISSOCK(m) ? "socket" : S_ISLNK(m) ? "symbolic link" : "special file";
}

/* an existing path that is not a regular file: refused, with what it is */
static lopt_status refuse_special(const char *path, const struct stat *sb, lopt_err *err)
{
    if (S_ISLNK(sb->st_mode))
        return lopt_fail(err, LOPT_EIO, "refusing to write %s: it is a symbolic link (lopt "
                         "replaces only regular files; write to the link's target itself)",
                         SP(path));
    return lopt_fail(err, LOPT_EIO, "refusing to write %s: it is a %s, not a regular file",
                     SP(path), kind_of(sb->st_mode));
}

lopt_status lopt_check_output(const char *path, lopt_err *err)
{
    if (!path || !*path) return lopt_fail(err, LOPT_EUSAGE, "empty output path");
    size_t len = strlen(path);
    if (len + 32 >= PATH_CAP)
        return lopt_fail(err, LOPT_EUSAGE, "output path too long (%zu characters, at most %d)",
                         len, PATH_CAP - 32);
    char dir[PATH_CAP];
    const char *base;
    if (!split_path(path, dir, sizeof dir, &base) || !*base || strcmp(base, ".") == 0 ||
        strcmp(base, "..") == 0)
        return lopt_fail(err, LOPT_EUSAGE, "output path %s names a directory, not a file", SP(path));
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) return refuse_special(path, &sb, err);
    } else if (errno != ENOENT) {
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(errno));
    }
    if (stat(dir, &sb) != 0)
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s is not a directory", SP(path), SP(dir));
    if (access(dir, W_OK | X_OK) != 0)
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(errno));
    return LOPT_OK;
}

int lopt_clean_stale_tmp(const char *path)
{
    char dir[PATH_CAP];
    const char *base;
    if (!path || !split_path(path, dir, sizeof dir, &base) || !*base) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t bl = strlen(base);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, base, bl) != 0 || strncmp(name + bl, ".tmp.", 5) != 0) continue;
        const char *num = name + bl + 5;
        char *end;
        errno = 0;
        long pid = strtol(num, &end, 10);
        if (end == num || *end || errno || pid <= 0 || num[0] < '0' || num[0] > '9') continue;
        if (pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours */
        char full[PATH_CAP];
        if (snprintf(full, sizeof full, "%s/%s", dir, name) >= (int)sizeof full) continue;
        struct stat sb;
        if (lstat(full, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(full) == 0) removed++;
    }
    closedir(d);
    return removed;
}

/* the real path of path's directory plus its last component */
static int canonical(const char *path, char *out, size_t cap)
{
    char dir[PATH_CAP], real[PATH_MAX];
    const char *base;
    if (!split_path(path, dir, sizeof dir, &base)) return 0;
    if (!realpath(dir, real)) return 0;
    return snprintf(out, cap, "%s/%s", real, base) < (int)cap;
}

int lopt_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea != eb) return 0;
    char ca[PATH_CAP + PATH_MAX], cb[PATH_CAP + PATH_MAX];
    if (canonical(a, ca, sizeof ca) && canonical(b, cb, sizeof cb)) return strcmp(ca, cb) == 0;
    return strcmp(a, b) == 0;
}

lopt_status lopt_write_atomic(const char *path, const void *data, size_t n,
                              lopt_err *err)
{
    lopt_status st = lopt_check_output(path, err);
    if (st != LOPT_OK) return st;
    lopt_clean_stale_tmp(path);
    char tmp[PATH_CAP];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = -1;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        struct stat sb;
        /* a leftover of a dead process that had our pid: a regular file goes */
        if (fd < 0 && errno == EEXIST && lstat(tmp, &sb) == 0 && S_ISREG(sb.st_mode))
            unlink(tmp);
        else if (fd < 0)
            break;
    }
    if (fd < 0)
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(errno));
    const unsigned char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(e));
    }
    /* the target may have changed while we wrote: look again just before the rename */
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        unlink(tmp);
        return refuse_special(path, &sb, err);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lopt_fail(err, LOPT_EIO, "cannot write %s: %s", SP(path), strerror(e));
    }
    /* the rename itself to disk (best effort) */
    char dir[PATH_CAP];
    const char *base;
    if (split_path(path, dir, sizeof dir, &base)) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return LOPT_OK;
}

lopt_status lopt_read_file_max(const char *path, size_t max, const void *magic,
                               size_t magic_len, const char *what, unsigned char **data,
                               size_t *n, lopt_err *err)
{
    *data = NULL;
    *n = 0;
    if (!what) what = "the expected kind of file";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lopt_fail(err, LOPT_EIO, "cannot open %s: %s", SP(path), strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lopt_fail(err, LOPT_EIO, "cannot read %s: %s", SP(path), strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return lopt_fail(err, LOPT_EIO, "cannot read %s: it is a directory", SP(path));
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > (uint64_t)max) {
        close(fd);
        return lopt_fail(err, LOPT_EFORMAT, "%s: %lld bytes, more than %s can hold (%zu)", SP(path),
                         (long long)sb.st_size, what, max);
    }
    /* grow geometrically, never past max + 1 bytes (one more tells "too large") */
    size_t cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : (size_t)1 << 16, len = 0;
    if (cap > max + 1) cap = max + 1;
    if (cap < 64) cap = 64;
    unsigned char *buf = malloc(cap);
    lopt_status st = LOPT_OK;
    if (!buf) st = lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s", SP(path));
    while (st == LOPT_OK) {
        if (len == cap) {
            if (len > max) {
                st = lopt_fail(err, LOPT_EFORMAT, "%s: more than %zu bytes, more than %s can "
                               "hold", SP(path), max, what);
                break;
            }
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                st = lopt_fail(err, LOPT_ENOMEM, "out of memory reading %s", SP(path));
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = lopt_fail(err, LOPT_EIO, "cannot read %s: %s", SP(path), strerror(errno));
            break;
        }
        size_t before = len;
        len += (size_t)r;
        if (magic && before < magic_len && len >= magic_len && memcmp(buf, magic, magic_len) != 0)
            st = lopt_fail(err, LOPT_EFORMAT, "%s: not %s (wrong magic bytes)", SP(path), what);
        if (r == 0) break;
        if (len > max)
            st = lopt_fail(err, LOPT_EFORMAT, "%s: more than %zu bytes, more than %s can hold",
                           SP(path), max, what);
    }
    close(fd);
    if (st != LOPT_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *n = len;
    return LOPT_OK;
}

lopt_status lopt_read_file(const char *path, unsigned char **data, size_t *n,
                           lopt_err *err)
{
    return lopt_read_file_max(path, LOPT_READ_MAX, NULL, 0, NULL, data, n, err);
}
