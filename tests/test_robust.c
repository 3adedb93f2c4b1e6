/* test_robust.c - the library's side of "nothing lost, whatever the input" (issue 11,
 * docs/reliability.md): the atomic writer replaces only regular files (a symbolic
 * link, a FIFO, a directory and - where mknod is allowed - a character device are
 * refused and left as they were) and removes the temp files of dead processes;
 * lopt_same_file sees through hard links, symbolic links and spellings; reads are
 * bounded (/dev/zero, an endless FIFO, a file above the limit) and refuse a wrong
 * magic at once; allocations that cannot succeed are statuses (or the installable
 * out-of-memory handler), never an abort; the public API refuses tensor sizes that
 * overflow or exceed its limit with a reason (lopt_opt_new2, lopt_opt_new_groups,
 * lopt_last_error), and skips non-finite gradients element by element, counting them
 * (lopt_opt_nonfinite), so one NaN never freezes a tensor - in the flat step and in
 * the pointer-array step with groups, decay, a frozen group and the clamp, the count
 * staying out of the state blob; lopt_train_run stops on a non-finite gradient and on
 * request; meta-training refuses out-of-range clip and divergence settings. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "eval/train.h"
#include "lopt.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"
#include "meta/meta.h"

/* under AddressSanitizer, an allocation that cannot succeed returns NULL as it does
 * without it (the checks below ask for terabytes on purpose) */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static char dir[256];

static const char *tmp_path(const char *name)
{
    static char p[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    LOPT_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static int has(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t r = fread(buf, 1, sizeof buf - 1, f);
    buf[r] = 0;
    fclose(f);
    return strcmp(buf, text) == 0;
}

static int count_temps(void)
{
    int temps = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) temps++;
    if (d) closedir(d);
    return temps;
}

/* a pid that no process has: a child that has exited and been reaped */
static pid_t dead_pid(void)
{
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

static void test_writer(void)
{
    lopt_err err = {0};
    struct stat sb;
    /* a symbolic link to a regular file: refused, the link and its target untouched */
    put(tmp_path("target.txt"), "precious");
    CHECK(symlink("target.txt", tmp_path("link")) == 0, "symlink: %s", strerror(errno));
    CHECK(lopt_write_atomic(tmp_path("link"), "new", 3, &err) == LOPT_EIO &&
              strstr(err.msg, "symbolic link"), "symlink target: %s", err.msg);
    CHECK(lstat(tmp_path("link"), &sb) == 0 && S_ISLNK(sb.st_mode) &&
              has(tmp_path("target.txt"), "precious"), "the link or its target changed");
    /* a dangling link too */
    CHECK(symlink("nowhere", tmp_path("dangling")) == 0, "symlink");
    CHECK(lopt_write_atomic(tmp_path("dangling"), "x", 1, &err) == LOPT_EIO,
          "dangling symlink accepted");
    /* a FIFO: refused without opening it (opening would block) */
    CHECK(mkfifo(tmp_path("fifo"), 0644) == 0, "mkfifo: %s", strerror(errno));
    CHECK(lopt_write_atomic(tmp_path("fifo"), "x", 1, &err) == LOPT_EIO &&
              strstr(err.msg, "FIFO"), "FIFO target: %s", err.msg);
    CHECK(lstat(tmp_path("fifo"), &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    /* a directory */
    CHECK(mkdir(tmp_path("sub"), 0755) == 0, "mkdir");
    CHECK(lopt_write_atomic(tmp_path("sub"), "x", 1, &err) == LOPT_EIO &&
              strstr(err.msg, "directory"), "directory target: %s", err.msg);
    /* a character device (as root: /dev/null's numbers, in our own directory) */
    if (mknod(tmp_path("devnode"), S_IFCHR | 0644, makedev(1, 3)) == 0) {
        CHECK(lopt_write_atomic(tmp_path("devnode"), "x", 1, &err) == LOPT_EIO &&
                  strstr(err.msg, "character device"), "device target: %s", err.msg);
        CHECK(lstat(tmp_path("devnode"), &sb) == 0 && S_ISCHR(sb.st_mode),
              "the device node was replaced by a regular file");
        unlink(tmp_path("devnode"));
    } else {
        printf("skip character device target (mknod: %s)\n", strerror(errno));
    }
    CHECK(lopt_write_atomic("", "x", 1, &err) == LOPT_EUSAGE, "empty path accepted");
    CHECK(lopt_check_output(tmp_path("no/such/x"), &err) == LOPT_EIO &&
              strstr(err.msg, "cannot write"), "missing directory: %s", err.msg);
    char longp[5000];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK(lopt_check_output(longp, &err) == LOPT_EUSAGE && strlen(err.msg) < 200,
          "overlong path: %s", err.msg);

    /* stale temps: a dead process's is removed at the next write, a live one's kept */
    char stale[600], live[600];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", tmp_path("out.lopt"), (long)dead_pid());
    snprintf(live, sizeof live, "%s.tmp.%ld", tmp_path("out.lopt"), (long)getppid());
    put(stale, "half");
    put(live, "busy");
    put(tmp_path("out.lopt.tmp.notapid"), "other");
    CHECK(lopt_write_atomic(tmp_path("out.lopt"), "done", 4, &err) == LOPT_OK, "write: %s",
          err.msg);
    CHECK(access(stale, F_OK) != 0, "a dead process's temp file was left");
    CHECK(access(live, F_OK) == 0 && access(tmp_path("out.lopt.tmp.notapid"), F_OK) == 0,
          "a live process's temp file, or a foreign file, was removed");
    unlink(live);
    unlink(tmp_path("out.lopt.tmp.notapid"));
    /* our own pid's leftover (pid reuse) does not stop the write */
    char mine[600];
    snprintf(mine, sizeof mine, "%s.tmp.%ld", tmp_path("out.lopt"), (long)getpid());
    put(mine, "old");
    CHECK(lopt_write_atomic(tmp_path("out.lopt"), "again", 5, &err) == LOPT_OK &&
              has(tmp_path("out.lopt"), "again"), "write over our pid's leftover: %s", err.msg);
    CHECK(count_temps() == 0, "%d temp files left", count_temps());
    printf("ok   the atomic writer: links, FIFOs, directories, devices refused; stale temps "
           "cleaned\n");
}

static void test_same_file(void)
{
    put(tmp_path("a.csv"), "a");
    put(tmp_path("b.csv"), "b");
    CHECK(link(tmp_path("a.csv"), tmp_path("hard.csv")) == 0, "link");
    CHECK(symlink("a.csv", tmp_path("soft.csv")) == 0, "symlink");
    char dotted[600], up[600];
    snprintf(dotted, sizeof dotted, "%s/./a.csv", dir);
    snprintf(up, sizeof up, "%s/sub/../a.csv", dir);
    CHECK(lopt_same_file(tmp_path("a.csv"), tmp_path("hard.csv")), "hard link");
    CHECK(lopt_same_file(tmp_path("a.csv"), tmp_path("soft.csv")), "symbolic link");
    CHECK(lopt_same_file(tmp_path("a.csv"), dotted) && lopt_same_file(up, tmp_path("a.csv")),
          "spellings of one path");
    CHECK(!lopt_same_file(tmp_path("a.csv"), tmp_path("b.csv")), "two files");
    char ghost[600];
    snprintf(ghost, sizeof ghost, "%s/./new.csv", dir);
    CHECK(lopt_same_file(tmp_path("new.csv"), ghost), "one file to be: two spellings");
    CHECK(!lopt_same_file(tmp_path("new.csv"), tmp_path("other.csv")), "two files to be");
    CHECK(!lopt_same_file(tmp_path("new.csv"), tmp_path("a.csv")), "one exists, one not");
}

/* a FIFO fed by a child that writes `byte` until the reader goes away */
static pid_t endless_fifo(const char *path, unsigned char byte)
{
    unlink(path);
    LOPT_ASSERT(mkfifo(path, 0644) == 0);
    pid_t p = fork();
    if (p == 0) {
        signal(SIGPIPE, SIG_DFL);
        int fd = open(path, O_WRONLY);
        unsigned char buf[4096];
        memset(buf, byte, sizeof buf);
        if (byte == 0x89) memcpy(buf, "\x89LOPT\r\n\x1a", 8);   /* a .lopt magic first */
        while (fd >= 0 && write(fd, buf, sizeof buf) > 0) memset(buf, byte, 8);
        _exit(0);
    }
    return p;
}

static void test_reads(void)
{
    lopt_err err = {0};
    unsigned char *data = NULL;
    size_t n = 0;
    /* CPU time, not wall-clock: a hang guard that a starved machine does not trip */
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    CHECK(lopt_read_file_max("/dev/zero", 1 << 20, NULL, 0, "a test file", &data, &n, &err) ==
              LOPT_EFORMAT && data == NULL && strstr(err.msg, "more than"),
          "/dev/zero, no magic: %s", err.msg);
    CHECK(lopt_read_file_max("/dev/zero", (size_t)1 << 40, "LOPTCKPT", 8, "a checkpoint", &data,
                             &n, &err) == LOPT_EFORMAT && strstr(err.msg, "not a checkpoint"),
          "/dev/zero with a magic: %s", err.msg);
    lopt_arch a;
    float *theta = NULL;
    CHECK(lopt_file_read("/dev/zero", &a, &theta, NULL, &err) == LOPT_EFORMAT && !theta &&
              strstr(err.msg, "not a .lopt file"), ".lopt from /dev/zero: %s", err.msg);
    lopt_meta *m = NULL;
    CHECK(lopt_meta_load(&m, "/dev/zero", &err) == LOPT_EFORMAT && !m &&
              strstr(err.msg, "not a lopt meta-training checkpoint"),
          "checkpoint from /dev/zero: %s", err.msg);
    /* an endless FIFO that starts like a .lopt: stopped at the limit */
    pid_t p = endless_fifo(tmp_path("pipe"), 0x89);
    CHECK(lopt_read_file_max(tmp_path("pipe"), 1 << 20, "\x89LOPT", 5, "a .lopt file", &data,
                             &n, &err) == LOPT_EFORMAT && strstr(err.msg, "more than 1048576"),
          "endless FIFO: %s", err.msg);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    p = endless_fifo(tmp_path("pipe"), 0x89);
    CHECK(lopt_file_read(tmp_path("pipe"), &a, &theta, NULL, &err) == LOPT_EFORMAT,
          ".lopt from an endless FIFO: %s", err.msg);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    /* a regular file above the limit: refused by its size, not read */
    put(tmp_path("big"), "0123456789");
    CHECK(lopt_read_file_max(tmp_path("big"), 9, NULL, 0, "a tiny file", &data, &n, &err) ==
              LOPT_EFORMAT && strstr(err.msg, "10 bytes"), "file above the limit: %s", err.msg);
    CHECK(lopt_read_file_max(tmp_path("big"), 10, NULL, 0, "a tiny file", &data, &n, &err) ==
              LOPT_OK && n == 10 && memcmp(data, "0123456789", 10) == 0, "file at the limit");
    free(data);
    CHECK(lopt_read_file_max(tmp_path("big"), 100, "0124", 4, "digits", &data, &n, &err) ==
              LOPT_EFORMAT && strstr(err.msg, "not digits"), "wrong magic: %s", err.msg);
    CHECK(lopt_read_file_max(dir, 100, NULL, 0, NULL, &data, &n, &err) == LOPT_EIO &&
              strstr(err.msg, "directory"), "a directory: %s", err.msg);
    double cpu = (double)clock() / CLOCKS_PER_SEC - t0;
    CHECK(cpu < 5, "bounded reads took %.1f s of CPU", cpu);
    CHECK(lopt_file_max_bytes() > 200000000 && lopt_file_max_bytes() < 210000000,
          "the .lopt size limit is the format's maximum: %zu", lopt_file_max_bytes());
}

static jmp_buf oom_jump;
static size_t oom_bytes;
static void oom_catch(size_t bytes)
{
    oom_bytes = bytes;
    longjmp(oom_jump, 1);
}

static void test_alloc(void)
{
    CHECK(lopt_try_floats(SIZE_MAX / 2) == NULL, "lopt_try_floats of SIZE_MAX / 2");
    CHECK(lopt_try_calloc(SIZE_MAX / 2, 4) == NULL, "lopt_try_calloc overflow");
    lopt_set_oom_handler(oom_catch);
    volatile int reached = 0;
    if (setjmp(oom_jump) == 0) {
        lopt_xcalloc(SIZE_MAX / 2, 4);
        reached = 1;
    }
    CHECK(!reached && oom_bytes == SIZE_MAX, "lopt_xcalloc overflow did not call the handler");
    oom_bytes = 0;
    if (setjmp(oom_jump) == 0) lopt_floats(SIZE_MAX / 8);
    CHECK(oom_bytes > 0, "lopt_floats did not call the handler");
    lopt_set_oom_handler(NULL);
}

static lopt_model *load_model(const char *preset)
{
    char msg[256];
    const char *path = tmp_path("api.lopt");
    unlink(path);
    LOPT_ASSERT(lopt_model_write_initial(path, preset, 3, msg, sizeof msg) == 0);
    lopt_model *m = lopt_model_load(path, msg, sizeof msg);
    LOPT_ASSERT(m);
    return m;
}

static void test_api_sizes(void)
{
    lopt_model *m = load_model("paper");
    char msg[256] = "";
    size_t over[] = {SIZE_MAX / 2, SIZE_MAX / 2 + 2};
    CHECK(lopt_opt_new2(m, over, 2, msg, sizeof msg) == NULL && strstr(msg, "overflow"),
          "sizes summing past SIZE_MAX: %s", msg);
    CHECK(lopt_opt_new(m, over, 2) == NULL, "lopt_opt_new with overflowing sizes");
    size_t huge[] = {(size_t)1 << 40};
    CHECK(lopt_opt_new2(m, huge, 1, msg, sizeof msg) == NULL && strstr(msg, "at most"),
          "2^40 parameters: %s", msg);
    size_t most[] = {(size_t)INT32_MAX};   /* allowed, but ~800 GB of state */
    lopt_opt *o = lopt_opt_new2(m, most, 1, msg, sizeof msg);
    CHECK(o == NULL && strstr(msg, "out of memory"), "2^31 - 1 parameters: %s", msg);
    lopt_opt_free(o);
    size_t zero[] = {4, 0};
    CHECK(lopt_opt_new2(m, zero, 2, msg, sizeof msg) == NULL && strstr(msg, "tensor 1"),
          "zero-size tensor: %s", msg);
    CHECK(lopt_opt_new2(NULL, zero, 1, msg, sizeof msg) == NULL && strstr(msg, "NULL"),
          "NULL model: %s", msg);
    size_t ok[] = {5, 3};
    o = lopt_opt_new2(m, ok, 2, msg, sizeof msg);
    CHECK(o && lopt_opt_nparams(o) == 8 && lopt_opt_nonfinite(o) == 0, "a small optimizer");
    lopt_opt_free(o);
    /* the groups constructor has the same checks (lopt_opt_new is its one-group case);
     * the limit counts the updated parameters, not the frozen ones */
    lopt_param_group g[2] = {{over, 2, {1.0f, 0.0f, 0}}, {ok, 2, {1.0f, 0.0f, 0}}};
    CHECK(lopt_opt_new_groups(m, g, 2, msg, sizeof msg) == NULL && strstr(msg, "overflow") &&
          strstr(lopt_last_error(), "overflow"), "groups: sizes past SIZE_MAX: %s", msg);
    g[0] = (lopt_param_group){huge, 1, {1.0f, 0.0f, 0}};
    CHECK(lopt_opt_new_groups(m, g, 2, msg, sizeof msg) == NULL && strstr(msg, "at most"),
          "groups: 2^40 parameters: %s", msg);
    g[0] = (lopt_param_group){most, 1, {1.0f, 0.0f, 0}};
    g[1].opts.frozen = 1;
    CHECK(lopt_opt_new_groups(m, g, 2, msg, sizeof msg) == NULL &&
          strstr(lopt_last_error(), "out of memory"), "groups: 2^31 - 1 parameters: %s", msg);
    g[0].opts.frozen = 1;   /* frozen: no state, so the same sizes are fine */
    g[1].opts.frozen = 0;
    o = lopt_opt_new_groups(m, g, 2, msg, sizeof msg);
    CHECK(o && lopt_opt_nparams(o) == (size_t)INT32_MAX + 8, "a frozen 2^31 - 1 group: %s",
          o ? "ok" : msg);
    lopt_opt_free(o);
    CHECK(lopt_opt_new(m, over, 2) == NULL && strstr(lopt_last_error(), "overflow"),
          "lopt_opt_new sets lopt_last_error: %s", lopt_last_error());
    lopt_model_free(m);
}

/* one NaN (or inf) gradient element: skipped, counted, and the tensor keeps training */
static void test_api_nonfinite(const char *preset, float badval)
{
    enum { N1 = 6, N2 = 10, N = N1 + N2, STEPS = 8, BAD_STEP = 2, BAD = 3 };
    lopt_model *m = load_model(preset);
    size_t sizes[] = {N1, N2};
    lopt_opt *o = lopt_opt_new(m, sizes, 2);
    /* the same optimizer by hand, to check the step with the bad element */
    lopt_arch a;
    float *theta = NULL;
    lopt_err err = {0};
    LOPT_ASSERT(lopt_file_read(tmp_path("api.lopt"), &a, &theta, NULL, &err) == LOPT_OK);
    lopt_model_free(m);
    const lopt_tensor tens[] = {{"a", 0, N1, 0}, {"b", N1, N2, 0}};
    lopt_mlp_work wk;
    lopt_mlp_work_init(&wk, &a, N, 2);
    const int R = lopt_arch_state_rows(&a);   /* momenta, and Adam's second moment */
    float *mm = lopt_floats((size_t)R * N), w[N], wh[N], g[N], delta[N];
    for (int i = 0; i < N; i++) wh[i] = w[i] = (float)lopt_rng_normal(1, LOPT_STREAM_TEST, i);
    int held = 1, moved_after = 1, finite = 1, as_zero = 1;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++)
            g[i] = w[i] + 0.1f * (float)lopt_rng_normal(2 + s, LOPT_STREAM_TEST, i);
        float before[N], mom_before[LOPT_MAX_MOM + 1];
        memcpy(before, w, sizeof w);
        for (int k = 0; k < R; k++) mom_before[k] = mm[(size_t)k * N + BAD];
        float gh[N];
        memcpy(gh, g, sizeof g);
        if (s == BAD_STEP) {
            g[BAD] = badval;
            gh[BAD] = 0;   /* the rule: counts as 0 in the normalisers */
        }
        lopt_opt_step(o, w, g);
        lopt_mlp_update(&wk, theta, tens, 2, wh, gh, mm, s, delta);
        for (int i = 0; i < N; i++)
            if (!(s == BAD_STEP && i == BAD)) wh[i] += delta[i];
        if (s == BAD_STEP) {
            held = w[BAD] == before[BAD];
            for (int k = 0; k < R; k++) mm[(size_t)k * N + BAD] = mom_before[k];
        }
        if (s > BAD_STEP)
            for (int i = 0; i < N1; i++) moved_after &= w[i] != before[i];
        for (int i = 0; i < N; i++) finite &= isfinite(w[i]) != 0;
        as_zero &= memcmp(w, wh, sizeof w) == 0;
    }
    CHECK(held, "%s: the parameter with a %g gradient moved", preset, badval);
    CHECK(finite && moved_after, "%s: a %g gradient froze its tensor (or made it non-finite)",
          preset, badval);
    CHECK(as_zero, "%s: the step with a %g element differs from the rule (others as with a "
          "zero there, its momenta kept)", preset, badval);
    CHECK(lopt_opt_nonfinite(o) == 1, "%s: lopt_opt_nonfinite = %llu, want 1", preset,
          (unsigned long long)lopt_opt_nonfinite(o));
    lopt_opt_reset(o);
    CHECK(lopt_opt_nonfinite(o) == 0, "reset keeps the count");
    /* a NaN parameter (the caller's) stays NaN and spreads to no other parameter */
    w[0] = NAN;
    lopt_opt_step(o, w, g);
    int rest = 1;
    for (int i = 1; i < N; i++) rest &= isfinite(w[i]) != 0;
    CHECK(isnan(w[0]) && rest, "a NaN parameter spread to others");
    lopt_opt_free(o);
    lopt_mlp_work_free(&wk);
    lopt_free(mm);
    lopt_free(theta);
    if (!check_failures)
        printf("ok   %s: a %g gradient element is skipped and counted; its tensor trains on\n",
               preset, badval);
}

/* The rule in the pointer-array step, with groups (a step scale and weight decay), a
 * frozen group, the clamp and nominal-adam's second moment: a NaN element is left
 * alone (not decayed either) and counted, the rest of its tensor steps as with a 0
 * there; a one-element tensor whose gradient is inf leaves exactly the state a skipped
 * tensor (NULL gradient) leaves. Checked on the state blobs, which the count is no
 * part of. */
static void test_api_nonfinite_groups(void)
{
    enum { NA = 6, NF = 4, NB = 9, NT = 4, NG = 3, STEPS = 5, BAD = 2 };
    enum { NW = NA + 1 + NF + NB, N = NA + 1 + NB };   /* all parameters; the updated ones */
    lopt_model *m = load_model("nominal-adam");
    const size_t sa[] = {NA, 1}, sf[] = {NF}, sb[] = {NB};
    const lopt_param_group gr[NG] = {{sa, 2, {0.5f, 0.01f, 0}}, {sf, 1, {1.0f, 0.0f, 1}},
                                     {sb, 1, {1.0f, 0.0f, 0}}};
    char msg[256];
    lopt_opt *o[2];   /* 0: NaN at BAD, inf in the one-element tensor; 1: 0 there, NULL */
    for (int r = 0; r < 2; r++) {
        o[r] = lopt_opt_new_groups(m, gr, NG, msg, sizeof msg);
        LOPT_ASSERT(o[r]);
        lopt_opt_set_t_max(o[r], 2);   /* the clamp is on from step 3 */
    }
    lopt_model_free(m);
    float w0[NW], w[2][NW], g[NW];
    for (int i = 0; i < NW; i++) w0[i] = (float)lopt_rng_normal(9, LOPT_STREAM_TEST, (uint64_t)i);
    memcpy(w[0], w0, sizeof w0);
    memcpy(w[1], w0, sizeof w0);
    int held = 1, same_rest = 1;
    for (int s = 0; s < STEPS; s++) {
        const int bad = s == STEPS - 1;
        for (int i = 0; i < NW; i++)
            g[i] = w[0][i] + 0.1f * (float)lopt_rng_normal(20 + s, LOPT_STREAM_TEST, i);
        float before = w[0][BAD], one = w[0][NA];
        for (int r = 0; r < 2; r++) {
            float ga[NA], gone = g[NA];
            memcpy(ga, g, sizeof ga);
            if (bad) {
                ga[BAD] = r == 0 ? NAN : 0.0f;
                gone = INFINITY;
            }
            float *p[NT] = {w[r], w[r] + NA, NULL, w[r] + NA + 1 + NF};
            const float *q[NT] = {ga, bad && r == 1 ? NULL : &gone, NULL, g + NA + 1 + NF};
            lopt_opt_step_tensors(o[r], p, q);
        }
        if (bad) {
            held = w[0][BAD] == before && w[0][NA] == one && w[1][NA] == one;
            for (int i = 0; i < NW; i++)
                if (i != BAD) same_rest &= w[0][i] == w[1][i];
        }
    }
    CHECK(held, "groups: a NaN (in a decayed group) or an inf (one-element tensor) moved");
    CHECK(same_rest, "groups: the other parameters differ from a run with a 0 there");
    CHECK(memcmp(w[0] + NA + 1, w0 + NA + 1, NF * sizeof(float)) == 0,
          "groups: a frozen tensor was written");
    CHECK(lopt_opt_nonfinite(o[0]) == 2 && lopt_opt_nonfinite(o[1]) == 0,
          "groups: nonfinite %llu, want 2", (unsigned long long)lopt_opt_nonfinite(o[0]));
    /* blob: header (magic, 5 u64, 3 u64 per tensor, 2 f32 per group, t, t_max), the
     * state (R, N), a CRC */
    const size_t ss = lopt_opt_state_size(o[0]), head = 8 + 8 * 5 + 24 * NT + 8 * NG + 16;
    const size_t R = (ss - head - 8) / (4 * (size_t)N);
    unsigned char *b[2];
    for (int r = 0; r < 2; r++) {
        b[r] = malloc(ss);
        LOPT_ASSERT(b[r] && lopt_opt_save_state(o[r], b[r], ss, NULL, 0) == ss);
    }
    int same_state = memcmp(b[0], b[1], head) == 0;
    for (size_t k = 0; k < R; k++)
        for (size_t i = 0; i < N; i++)
            if (i != BAD)   /* the NaN's own rows: kept in o[0], the zero's in o[1] */
                same_state &= memcmp(b[0] + head + 4 * (k * N + i),
                                     b[1] + head + 4 * (k * N + i), 4) == 0;
    CHECK(R == 6 && same_state, "groups: the state after the NaN/inf differs from the 0/NULL "
          "run elsewhere than the NaN's rows (%zu rows)", R);
    lopt_opt_reset(o[0]);
    CHECK(lopt_opt_nonfinite(o[0]) == 0, "groups: reset keeps the count");
    for (int r = 0; r < 2; r++) {
        free(b[r]);
        lopt_opt_free(o[r]);
    }
    if (!check_failures)
        printf("ok   groups, decay, a frozen group, pointer arrays, the clamp, nominal-adam: "
               "NaN/inf elements skipped and counted, the state as a skip's\n");
}

/* the quadratic with a NaN in one gradient element at one step, the loss finite */
static double (*quad_loss)(lopt_task *, const float *, const lopt_batch *, float *);
static int calls;
static double nan_grad(lopt_task *t, const float *w, const lopt_batch *b, float *g)
{
    double l = quad_loss(t, w, b, g);
    if (g && ++calls == 5) g[7] = NAN;
    return l;
}

static volatile sig_atomic_t stop_now;
static void stop_after(void *user, int64_t step, int64_t steps, double loss)
{
    (void)user, (void)steps, (void)loss;
    if (step == 13) stop_now = 1;
}

static void test_train(void)
{
    lopt_task t;
    lopt_err err = {0};
    LOPT_ASSERT(lopt_task_create(&t, "quadratic", NULL, &err) == LOPT_OK);
    lopt_hparams hp;
    LOPT_ASSERT(lopt_hparams_default(&hp, "adam", &err) == LOPT_OK);
    lopt_optimizer o;
    LOPT_ASSERT(lopt_optimizer_create(&o, "adam", &hp, t.n, &err) == LOPT_OK);
    quad_loss = t.loss_grad;
    t.loss_grad = nan_grad;
    lopt_train_opts to = {.steps = 20, .eval_every = 2, .seed = 1};
    lopt_train_result res;
    calls = 0;
    lopt_status st = lopt_train_run(&t, &o, &to, &res, NULL, &err);
    CHECK(st == LOPT_EDIVERGED && res.diverged_at == 5 && strstr(err.msg, "gradient"),
          "a NaN gradient with a finite loss: %d at %lld: %s", st, (long long)res.diverged_at,
          err.msg);
    int finite = res.nrows > 0;
    for (int i = 0; i < res.nrows; i++)
        finite &= isfinite(res.rows[i].train_loss) && isfinite(res.rows[i].valid_loss);
    CHECK(finite && res.rows[res.nrows - 1].step == 4, "rows up to the divergence: %d", res.nrows);
    lopt_train_result_free(&res);
    t.loss_grad = quad_loss;
    to.stop = &stop_now;
    to.on_step = stop_after;
    st = lopt_train_run(&t, &o, &to, &res, NULL, &err);
    CHECK(st == LOPT_EINTR && res.nrows == 8 && res.rows[7].step == 13,
          "stop request: %d, %d rows, last at %lld", st, res.nrows,
          res.nrows ? (long long)res.rows[res.nrows - 1].step : -1LL);
    lopt_train_result_free(&res);
    o.free(&o);
    t.free(&t);
}

static void test_meta_cfg(void)
{
    struct { const char *what; float lc, gc, dv, lr; } bad[] = {
        {"--loss-clip -1", -1, 0.1f, 5, 3e-3f}, {"--grad-clip -1", 10, -1, 5, 3e-3f},
        {"--diverge 0.5", 10, 0.1f, 0.5f, 3e-3f}, {"--outer-lr inf", 10, 0.1f, 5, INFINITY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lopt_meta_cfg c;
        lopt_meta_cfg_default(&c);
        snprintf(c.task, sizeof c.task, "quadratic");
        c.loss_clip = bad[i].lc;
        c.grad_clip = bad[i].gc;
        c.diverge_factor = bad[i].dv;
        c.outer_lr = bad[i].lr;
        lopt_meta *m = NULL;
        lopt_err err = {0};
        CHECK(lopt_meta_create(&m, &c, &err) == LOPT_EUSAGE && !m, "%s accepted", bad[i].what);
        lopt_meta_free(m);
    }
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    (void)check_close;
    signal(SIGPIPE, SIG_IGN);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/test_robust.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_writer();
    test_same_file();
    test_reads();
    test_alloc();
    test_api_sizes();
    test_api_nonfinite("paper", NAN);
    test_api_nonfinite("lo", INFINITY);
    test_api_nonfinite("nominal", -INFINITY);
    test_api_nonfinite("nominal-adam", NAN);
    test_api_nonfinite_groups();
    test_train();
    test_meta_cfg();
    remove_dir();
    return check_done("test_robust");
}
