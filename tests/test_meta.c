/* test_meta.c - the rp meta-gradient: backpropagation through K unrolled steps of
 * the learned optimizer against central finite differences of the unrolled outer
 * loss, on quadratic and fmnist8-mlp, for the paper preset and the nominal form
 * (its schedule and the normalised momentum direction inside the unroll), for
 * every outer weighting (mean, end, tail:F) and several outer batches; and the
 * first-order variant (no inner HVP) shown NOT to match, so the check would catch
 * a missing second-order term. And the log kept as rows: a version-2 checkpoint's
 * CSV log is read into rows that print back to the same text, and a version-3
 * checkpoint keeps them bit for bit. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "meta/meta.h"
#include "meta/unroll.h"

static int fd_skipped, fd_total, diff_used;

/* L(theta) from a copy of the start state */
static double unrolled_loss(lopt_unroll_ws *ws, const lopt_unroll_cfg *cfg,
                            const float *theta, const lopt_traj *start, lopt_traj *scratch)
{
    size_t n = ws->task->n;
    lopt_traj_copy(scratch, start, n, ws->arch->nmom);
    return lopt_unroll(ws, cfg, theta, scratch, NULL).loss;
}

/* power: also require the first-order gradient to miss (shown once per task and
 * K with the mean weighting; with end and tail weights the second-order term is
 * a smaller share of the derivative) */
static void rp_vs_fd(const char *preset, const char *task_name, int K, float step_mult, int warm,
                     float eps, const char *weight, int outer_batches, int64_t horizon,
                     int power)
{
    lopt_task task;
    lopt_err err = {0};
    if (lopt_task_create(&task, task_name, NULL, &err) != LOPT_OK) {
        CHECK(0, "%s: %s", task_name, err.msg);
        return;
    }
    lopt_arch a;
    lopt_arch_preset(&a, preset, NULL);
    /* a bolder optimizer than an untrained preset, so the inner curvature shapes the
     * trajectory and the second-order term is large */
    a.step_mult = step_mult;
    a.exp_mult = 0.1f;
    if (a.form == LOPT_FORM_NOMINAL) a.nominal_step = step_mult;
    size_t np = lopt_arch_nparams(&a), n = task.n;
    float *theta = lopt_floats(np), *g = lopt_floats(np), *gfo = lopt_floats(np),
          *tp = lopt_floats(np), *u = lopt_floats(np);
    lopt_theta_init(&a, 3, theta);
    if (a.form == LOPT_FORM_NOMINAL)   /* a live residual and a non-trivial schedule */
        for (size_t i = lopt_arch_output_offset(&a); i < np; i++)
            theta[i] = 0.1f * (float)lopt_rng_normal(4, LOPT_STREAM_TEST, i);
    lopt_unroll_ws ws;
    lopt_unroll_ws_init(&ws, &task, &a, K);
    lopt_unroll_cfg cfg = {.K = K, .outer_split = LOPT_SPLIT_VALID, .loss_clip = 0,
                           .diverge_factor = 1e30f, .first_order = 0,
                           .outer_batches = outer_batches};
    CHECK(lopt_outer_weight_parse(&cfg.weight, weight, &err) == LOPT_OK, "%s", err.msg);
    if (!task.input) cfg.outer_split = LOPT_SPLIT_TRAIN;
    lopt_traj start, tr;
    lopt_traj_alloc(&start, n, a.nmom);
    lopt_traj_alloc(&tr, n, a.nmom);
    lopt_traj_start(&ws, &start, 42, horizon);
    /* begin mid-trajectory, with non-zero momenta and t > 0 */
    for (int i = 0; i < warm; i++) lopt_unroll(&ws, &cfg, theta, &start, NULL);

    diff_used = 0;
    lopt_traj_copy(&tr, &start, n, a.nmom);
    double L = lopt_unroll(&ws, &cfg, theta, &tr, g).loss;
    cfg.first_order = 1;
    lopt_traj_copy(&tr, &start, n, a.nmom);
    lopt_unroll(&ws, &cfg, theta, &tr, gfo);
    cfg.first_order = 0;
    CHECK(L == unrolled_loss(&ws, &cfg, theta, &start, &tr),
          "%s: the rp unroll's loss differs from the forward unroll's", task_name);

    /* Directional derivatives. u_0 = (g_rp - g_first_order)/|.|, the direction in
     * which the second-order term shows most; u_1 = g_rp/|g_rp|; then random ones.
     * ReLU networks make the unrolled loss piecewise smooth: the inner gradient
     * jumps where a unit switches, and so does every later step. A finite
     * difference straddling such a jump says nothing about the derivative, so each
     * is taken at eps and eps/2 and a direction where the two disagree is skipped
     * (counted; main bounds the count). */
    enum { DIRS = 6 };
    double gnorm = 0, dnorm = 0;
    for (size_t i = 0; i < np; i++) {
        gnorm += (double)g[i] * g[i];
        dnorm += (double)(g[i] - gfo[i]) * (g[i] - gfo[i]);
    }
    gnorm = sqrt(gnorm);
    dnorm = sqrt(dnorm);
    char name[128];
    int used = 0;
    for (int d = 0; d < DIRS; d++) {
        if (d == 0)
            for (size_t i = 0; i < np; i++) u[i] = (float)((g[i] - gfo[i]) / dnorm);
        else if (d == 1)
            for (size_t i = 0; i < np; i++) u[i] = (float)(g[i] / gnorm);
        else
            lopt_rng_fill_normal(u, np, 1.0f / sqrtf((float)np), 100 + d, LOPT_STREAM_TEST, 0);
        double fd[2];
        for (int e = 0; e < 2; e++) {
            float h = e ? eps / 2 : eps;
            for (size_t i = 0; i < np; i++) tp[i] = theta[i] + h * u[i];
            double lp = unrolled_loss(&ws, &cfg, tp, &start, &tr);
            for (size_t i = 0; i < np; i++) tp[i] = theta[i] - h * u[i];
            double lm = unrolled_loss(&ws, &cfg, tp, &start, &tr);
            fd[e] = (lp - lm) / (2.0 * h);
        }
        double rp = 0, fo = 0;
        for (size_t i = 0; i < np; i++) {
            rp += (double)g[i] * u[i];
            fo += (double)gfo[i] * u[i];
        }
        /* tolerance: the finite differences' own disagreement (noise and truncation
         * error), 0.1% of the value, and 1e-4 of the gradient's norm */
        double tol = 3 * fabs(fd[0] - fd[1]) + 1e-3 * fabs(fd[1]) + 1e-4 * gnorm;
        if (getenv("VERBOSE"))
            printf("     dir %d fd %.6g / %.6g rp %.6g first-order %.6g tol %.3g\n", d, fd[0],
                   fd[1], rp, fo, tol);
        fd_total++;
        if (fabs(fd[0] - fd[1]) > 1e-2 * fabs(fd[1]) + 1e-3 * gnorm) {
            fd_skipped++;
            continue;
        }
        used++;
        snprintf(name, sizeof name, "%s %s K=%d %s x%d rp meta-gradient along u_%d vs "
                 "finite differences", preset, task_name, K, weight, outer_batches, d);
        check_close(name, &rp, &fd[1], 1, 0, tol);
        if (d == 0 && power) {
            CHECK(fabs(fo - fd[1]) > 3 * tol,
                  "%s K=%d: the first-order gradient (%.6g) is within tolerance of the finite "
                  "difference (%.6g, rp %.6g): the check cannot see the second-order term",
                  task_name, K, fo, fd[1], rp);
            printf("ok   %s %s K=%d first-order misses by %.3g (tolerance %.3g)\n", preset,
                   task_name, K, fabs(fo - fd[1]), tol);
            diff_used = 1;
        }
    }
    CHECK(used >= 3, "%s K=%d: only %d smooth directions", task_name, K, used);
    CHECK(diff_used || !power, "%s K=%d: the second-order direction was not smooth", task_name,
          K);

    lopt_traj_free(&start);
    lopt_traj_free(&tr);
    lopt_unroll_ws_free(&ws);
    lopt_free(theta); lopt_free(g); lopt_free(gfo); lopt_free(tp); lopt_free(u);
    task.free(&task);
}

/* recomputing segments from checkpoints gives exactly the full tape's gradient */
static void checkpointed_equals_full(int K, int seg)
{
    lopt_task task;
    lopt_task_create(&task, "fmnist8-mlp", NULL, NULL);
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    a.step_mult = 0.05f;
    size_t np = lopt_arch_nparams(&a), n = task.n;
    float *theta = lopt_floats(np), *g_full = lopt_floats(np), *g_seg = lopt_floats(np);
    lopt_theta_init(&a, 3, theta);
    lopt_unroll_ws full, part;
    lopt_unroll_ws_init_seg(&full, &task, &a, K, 0);
    lopt_unroll_ws_init_seg(&part, &task, &a, K, seg);
    lopt_unroll_cfg cfg = {.K = K, .outer_split = LOPT_SPLIT_VALID, .loss_clip = 10,
                           .diverge_factor = 1e30f};
    lopt_traj start, tr;
    lopt_traj_alloc(&start, n, a.nmom);
    lopt_traj_alloc(&tr, n, a.nmom);
    lopt_traj_start(&full, &start, 5, 100000);
    lopt_traj_copy(&tr, &start, n, a.nmom);
    double l1 = lopt_unroll(&full, &cfg, theta, &tr, g_full).loss;
    lopt_traj_copy(&tr, &start, n, a.nmom);
    double l2 = lopt_unroll(&part, &cfg, theta, &tr, g_seg).loss;
    CHECK(l1 == l2 && memcmp(g_full, g_seg, np * sizeof(float)) == 0,
          "K=%d: checkpointing every %d steps changes the rp gradient", K, seg);
    printf("ok   K=%d rp with checkpoints every %d steps = full tape (bit-identical); tape %.2f MB "
           "-> %.2f MB\n", K, seg, lopt_unroll_tape_bytes(&full) / 1e6,
           lopt_unroll_tape_bytes(&part) / 1e6);
    CHECK(lopt_unroll_tape_bytes(&part) < lopt_unroll_tape_bytes(&full), "no memory saved");
    lopt_traj_free(&start);
    lopt_traj_free(&tr);
    lopt_unroll_ws_free(&full);
    lopt_unroll_ws_free(&part);
    lopt_free(theta); lopt_free(g_full); lopt_free(g_seg);
    task.free(&task);
}

/* the length-prefixed CSV log inside a version-2 checkpoint's bytes */
static const char *v2_log_text(const unsigned char *p, size_t n, size_t *len)
{
    size_t h = strlen(lopt_meta_csv_header);
    for (size_t i = 8; i + h <= n; i++)
        if (memcmp(p + i, lopt_meta_csv_header, h) == 0) {
            uint64_t l = 0;
            for (int k = 0; k < 8; k++) l |= (uint64_t)p[i - 8 + k] << (8 * k);
            *len = (size_t)l;
            return (const char *)p + i;
        }
    return NULL;
}

/* field by field (NaN equals NaN: the bits are compared) */
static int same_rows(const lopt_meta_row *a, const lopt_meta_row *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double da[] = {a[i].outer_loss, a[i].g_rp_norm, a[i].g_es_norm, a[i].v_rp,
                             a[i].v_es, a[i].w_es, a[i].inner_steps_per_s, a[i].time_s,
                             a[i].eval_final, a[i].eval_mean};
        const double db[] = {b[i].outer_loss, b[i].g_rp_norm, b[i].g_es_norm, b[i].v_rp,
                             b[i].v_es, b[i].w_es, b[i].inner_steps_per_s, b[i].time_s,
                             b[i].eval_final, b[i].eval_mean};
        if (memcmp(da, db, sizeof da) != 0 || a[i].step != b[i].step || a[i].K != b[i].K ||
            a[i].resets != b[i].resets || a[i].diverged != b[i].diverged ||
            a[i].skipped != b[i].skipped)
            return 0;
    }
    return 1;
}

/* file: a version-2 checkpoint under the source tree; optional ones may be absent */
static void log_rows_roundtrip(const char *file, int optional)
{
    const char *src = getenv("LOPT_SRCDIR") ? getenv("LOPT_SRCDIR") : ".";
    char path[600], out[] = "/tmp/lopt_test_meta_XXXXXX";
    snprintf(path, sizeof path, "%s/%s", src, file);
    if (optional && access(path, R_OK) != 0) return;
    lopt_err err = {0};
    unsigned char *bytes;
    size_t nbytes, textlen = 0;
    lopt_meta *m = NULL, *m3 = NULL;
    if (lopt_read_file(path, &bytes, &nbytes, &err) != LOPT_OK ||
        lopt_meta_load(&m, path, &err) != LOPT_OK) {
        CHECK(0, "%s: %s", path, err.msg);
        return;
    }
    const char *text = v2_log_text(bytes, nbytes, &textlen);
    const lopt_meta_row *rows, *rows3;
    size_t n = lopt_meta_rows(m, &rows);
    char *csv = lopt_meta_log_csv(rows, n);
    CHECK(n > 0 && rows[n - 1].step == lopt_meta_steps_done(m),
          "version-2 log: %zu rows, the last not of step %lld", n,
          (long long)lopt_meta_steps_done(m));
    CHECK(text && strlen(csv) == textlen && memcmp(csv, text, textlen) == 0,
          "version-2 log: %zu rows do not print back to its text", n);
    int fd = mkstemp(out);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) close(fd);
    if (lopt_meta_save(m, out, &err) != LOPT_OK || lopt_meta_load(&m3, out, &err) != LOPT_OK) {
        CHECK(0, "version 3: %s", err.msg);
    } else {
        size_t n3 = lopt_meta_rows(m3, &rows3);
        CHECK(n3 == n && same_rows(rows3, rows, n),
              "version-3 checkpoint: %zu rows read back, not the %zu saved bit for bit", n3, n);
        printf("ok   meta log: %s's %zu rows print back to its CSV (%zu bytes); version 3 "
               "keeps them bit for bit\n", file, n, textlen);
    }
    unlink(out);
    free(csv);
    free(bytes);
    lopt_meta_free(m);
    lopt_meta_free(m3);
}

/* extreme values print as a bounded line each (a time_s near DBL_MAX is 310 digits),
 * never read past the line buffer (ASan in make asan) */
static void log_extreme_rows(void)
{
    lopt_meta_row r[2] = {{.step = INT64_MAX, .outer_loss = -1e308, .g_rp_norm = 1e308,
                           .g_es_norm = -1e308, .v_rp = 1e308, .v_es = 1e308, .w_es = -1e308,
                           .K = INT32_MIN, .inner_steps_per_s = 1e308, .resets = INT64_MIN,
                           .diverged = INT64_MAX, .skipped = INT32_MAX, .time_s = 1.7e308,
                           .eval_final = -1e308, .eval_mean = 1e308},
                          {.step = 1, .outer_loss = NAN, .time_s = -1.7e308}};
    char *csv = lopt_meta_log_csv(r, 2);
    size_t lines = 0;
    for (const char *p = csv; *p; p++) lines += *p == '\n';
    CHECK(lines == 3 && strlen(csv) < 2 * 1024 + strlen(lopt_meta_csv_header),
          "extreme rows: %zu lines, %zu bytes", lines, strlen(csv));
    free(csv);
}

int main(void)
{
    log_extreme_rows();
    log_rows_roundtrip("tests/fuzz/corpus/ckpt/es.ckpt", 0);
    /* the headline run's, with the evaluation columns */
    log_rows_roundtrip("runs/fmnist-cnn-cos/sched.lopt.ckpt", 1);
    checkpointed_equals_full(10, 3);
    checkpointed_equals_full(100, 10);
    rp_vs_fd("paper", "quadratic", 10, 0.1f, 2, 1e-2f, "mean", 1, 100000, 1);
    rp_vs_fd("paper", "quadratic", 3, 0.1f, 0, 1e-2f, "mean", 1, 100000, 1);
    rp_vs_fd("paper", "fmnist8-mlp", 10, 0.05f, 2, 1e-3f, "mean", 1, 100000, 1);
    rp_vs_fd("paper", "fmnist8-mlp", 4, 0.05f, 3, 1e-3f, "mean", 1, 100000, 1);
    /* the outer weights on the smooth quadratic (on the ReLU network, the loss at
     * the end of a truncation crosses so many kinks along the gradient direction
     * that finite differences need steps below float32's reach: measured, they
     * approach rp as the step shrinks to 5e-5) */
    rp_vs_fd("paper", "quadratic", 10, 0.1f, 2, 1e-2f, "end", 1, 100000, 0);
    /* horizon 35, steps 20..30: tail:0.3 counts the last 11 steps, 6 of these */
    rp_vs_fd("paper", "quadratic", 10, 0.1f, 2, 1e-2f, "tail:0.3", 1, 35, 0);
    /* several outer batches, on real data */
    rp_vs_fd("paper", "fmnist8-mlp", 10, 0.05f, 2, 1e-3f, "mean", 3, 100000, 0);
    /* the nominal form: its meta-gradient is dominated by the schedule, which scales
     * every step at once, so along u_0 and u_1 the unrolled loss curves more (smaller
     * eps on the quadratic) and crosses the inner ReLU network's kinks soonest
     * (fmnist8-mlp: a short unroll, a smaller step, a smaller eps) */
    rp_vs_fd("nominal", "quadratic", 10, 0.1f, 2, 1e-3f, "mean", 1, 100000, 1);
    rp_vs_fd("nominal", "fmnist8-mlp", 4, 0.01f, 2, 3e-4f, "mean", 1, 100000, 1);
    printf("finite differences: %d of %d directions skipped as non-smooth\n", fd_skipped,
           fd_total);
    CHECK(fd_skipped * 3 <= fd_total, "too many skipped directions");
    return check_done("test_meta");
}
