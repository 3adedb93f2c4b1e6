/* test_compare.c - the comparison engine (src/eval/compare.h): the speedup
 * interpolation, the grid pick with its edge flag; and a small comparison on the
 * quadratic task (no data files): tuning rows, the chosen lr on the grid, the
 * seed-mean curve against the runs, the target and speedups, the option checks (seed
 * overlap, duplicates, unknown names), and the written files. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "eval/compare.h"
#include "eval/plot.h"
#include "lopt/mlp_lopt.h"

static void test_helpers(void)
{
    double steps[4] = {0, 10, 20, 30};
    double y[4] = {3, 2, 1, 0.5}, pos;
    CHECK(lopt_compare_reach(y, 4, 1.5, &pos) && fabs(pos - 1.5) < 1e-12, "reach 1.5 -> %g", pos);
    CHECK(fabs(lopt_compare_at(steps, 4, pos) - 15.0) < 1e-12, "interpolated step 15");
    CHECK(lopt_compare_reach(y, 4, 0.5, &pos) && pos == 3.0, "reach on the last row exactly");
    CHECK(lopt_compare_reach(y, 4, 3.0, &pos) && pos == 0.0, "reached at the start");
    CHECK(!lopt_compare_reach(y, 4, 0.4, &pos) && isnan(pos), "not reached");
    double y2[4] = {3, 1, 2, 0.5};
    CHECK(lopt_compare_reach(y2, 4, 1.5, &pos) && fabs(pos - 0.75) < 1e-12,
          "first crossing wins (0.75, got %g)", pos);
    double y3[3] = {INFINITY, 2, 1};
    CHECK(lopt_compare_reach(y3, 3, 1.5, &pos) && fabs(pos - 1.5) < 1e-12, "inf before crossing");
    double y4[3] = {2, INFINITY, 1};
    CHECK(lopt_compare_reach(y4, 3, 1.5, &pos) && pos == 2.0, "no interpolation from inf");
    double y5[3] = {NAN, NAN, 1};
    CHECK(!lopt_compare_reach(y5, 2, 1.5, &pos), "NaN rows never reach");
    CHECK(fabs(lopt_compare_at(steps, 4, 2.25) - 22.5) < 1e-12 && lopt_compare_at(steps, 4, 9) == 30 &&
              isnan(lopt_compare_at(steps, 4, NAN)),
          "lopt_compare_at");

    int edge;
    double g1[4] = {INFINITY, 0.5, 0.4, NAN};
    CHECK(lopt_compare_pick(g1, 4, &edge) == 2 && edge == 0, "pick inside");
    double g2[3] = {0.1, 0.5, 0.1};
    CHECK(lopt_compare_pick(g2, 3, &edge) == 0 && edge == -1, "pick low edge, first of ties");
    double g3[2] = {1, 0.5};
    CHECK(lopt_compare_pick(g3, 2, &edge) == 1 && edge == 1, "pick high edge");
    double g4[2] = {INFINITY, NAN};
    CHECK(lopt_compare_pick(g4, 2, &edge) == -1, "all diverged");

    double lo, hi;
    CHECK(lopt_compare_lr_range("adam", &lo, &hi, NULL) == LOPT_OK && lo == 1e-4 && hi == 1e-1,
          "adam grid");
    CHECK(lopt_compare_lr_range("momentum", &lo, &hi, NULL) == LOPT_OK && lo == 1e-3 && hi == 1,
          "momentum grid");
    CHECK(lopt_compare_lr_range("adamw", &lo, &hi, NULL) == LOPT_EUSAGE, "unknown name");
    CHECK(lopt_compare_lr_range("adam:cosine", &lo, &hi, NULL) == LOPT_OK && lo == 1e-4 &&
              hi == 1e-1, "a scheduled baseline keeps its optimizer's grid");
    CHECK(lopt_compare_lr_range("adam:step", &lo, &hi, NULL) == LOPT_EUSAGE, "unknown schedule");
}

static void test_engine(void)
{
    lopt_err err = {0};
    lopt_task t;
    if (lopt_task_create(&t, "quadratic", &(lopt_task_opts){0}, &err) != LOPT_OK) {
        CHECK(0, "quadratic task: %s", err.msg);
        return;
    }
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    float *theta = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_normalized_sgd(&a, 0.0f, 1, theta);
    const char *names[2] = {"adam", "sgd"};
    uint64_t seeds[2] = {1, 2};
    lopt_compare_opts o = {.steps = 40, .eval_every = 10, .baselines = names, .nbaselines = 2,
                           .grid_points = 3, .seeds = seeds, .nseeds = 2, .tune_seeds = 2,
                           .arch = &a, .theta = theta, .learned_source = "normalized-sgd"};

    /* option checks */
    lopt_compare_opts bad = o;
    uint64_t overlap[2] = {1, 10001};
    bad.seeds = overlap;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE && strstr(err.msg, "disjoint"),
          "tuning/test seed overlap refused: %s", err.msg);
    uint64_t dup[2] = {5, 5};
    bad = o;
    bad.seeds = dup;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE, "duplicate seed refused");
    const char *dupn[2] = {"adam", "adam"}, *unk[2] = {"adam", "lion"};
    bad = o;
    bad.baselines = dupn;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE, "duplicate baseline refused");
    bad.baselines = unk;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE && strstr(err.msg, "lion"),
          "unknown baseline refused: %s", err.msg);
    const char *same[2] = {"adam", "adam:const"}, *sched[2] = {"adam:cosine", "sgd:linear"};
    bad = o;
    bad.baselines = same;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE && strstr(err.msg, "same runs"),
          "adam and adam:const without warm-up refused: %s", err.msg);
    bad.warmup = 3;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_OK, "adam and adam:const with warm-up: %s",
          err.msg);
    bad.baselines = sched;
    bad.warmup = LOPT_COMPARE_WARMUP_DEFAULT;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_OK, "scheduled baselines: %s", err.msg);
    bad.warmup = 40;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE && strstr(err.msg, "adam:cosine"),
          "warm-up of the whole run refused: %s", err.msg);
    bad.warmup = -2;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE, "negative warm-up refused");
    bad = o;
    bad.steps = 0;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE, "steps 0 refused");
    bad = o;
    bad.grid_points = 1;
    CHECK(lopt_compare_check(&bad, &err) == LOPT_EUSAGE, "1-point grid refused");

    lopt_compare_result r;
    lopt_status st = lopt_compare_run(&t, &o, &r, &err);
    CHECK(st == LOPT_OK, "comparison on quadratic: %s", err.msg);
    if (st == LOPT_OK) {
        CHECK(r.nopt == 3 && r.opt[0].learned && strcmp(r.opt[1].name, "adam") == 0,
              "learned first, then the baselines");
        CHECK(r.ntuning == 2 * 3 * 2, "tuning rows: baselines x grid x tuning seeds (%d)",
              r.ntuning);
        for (int i = 0; i < r.ntuning; i++)
            CHECK(r.tuning[i].seed == 10000 || r.tuning[i].seed == 10001, "tuning seeds");
        for (int i = 1; i < 3; i++) {
            const lopt_compare_entry *e = &r.opt[i];
            int on_grid = 0;
            for (int k = 0; k < e->grid_points; k++) on_grid |= e->grid_lr[k] == e->lr;
            CHECK(on_grid && fabs(e->grid_lr[0] - e->lr_lo) < 1e-15 &&
                      fabs(e->grid_lr[2] - e->lr_hi) < 1e-12 &&
                      fabs(e->grid_lr[1] - sqrt(e->lr_lo * e->lr_hi)) < 1e-12,
                  "%s: lr %g from the log grid", e->name, e->lr);
            int edge, k = lopt_compare_pick(e->grid_loss, e->grid_points, &edge);
            CHECK(e->grid_lr[k] == e->lr && edge == e->lr_edge, "%s: lr is the grid's best",
                  e->name);
        }
        for (int i = 0; i < 3; i++) {
            const lopt_compare_entry *e = &r.opt[i];
            CHECK(e->nrows == 5 && e->step[4] == 40, "%s: 5 eval rows", e->name);
            double m[5] = {0};
            for (int k = 0; k < 5 && e->nrows == 5; k++)
                m[k] = 0.5 * (e->runs[0].rows[k].valid_loss + e->runs[1].rows[k].valid_loss);
            char name[64];
            snprintf(name, sizeof name, "%s: seed-mean valid curve", e->name);
            if (e->nrows == 5) check_close(name, e->valid_mean, m, 5, 1e-12, 0.0);
            CHECK(fabs(e->valid_loss.mean - e->valid_mean[4]) < 1e-12, "%s: final = curve end",
                  e->name);
        }
        CHECK(r.best == 1 || r.best == 2, "best is a baseline");
        if (r.best >= 0) {
            const lopt_compare_entry *b = &r.opt[r.best];
            CHECK(r.target == b->valid_loss.mean, "target is the best's final mean valid loss");
            CHECK(b->reach_step > 0 && b->reach_step <= 40 && b->speedup_steps >= 1.0,
                  "the best reaches its own target by its last step (%g)", b->reach_step);
            for (int i = 0; i < 3; i++) {
                const lopt_compare_entry *e = &r.opt[i];
                double pos;
                int reached = lopt_compare_reach(e->valid_mean, e->nrows, r.target, &pos);
                CHECK(reached == isfinite(e->reach_step) &&
                          (!reached || fabs(e->speedup_steps * e->reach_step - 40) < 1e-9),
                      "%s: speedup = 40 / reach step", e->name);
            }
        }
        char dir[128];
        snprintf(dir, sizeof dir, "/tmp/lopt_test_plot.%ld/a/b", (long)getpid());
        CHECK(lopt_compare_write(&r, dir, &err) == LOPT_OK, "write outputs: %s", err.msg);
        const char *files[] = {"curves.csv", "tuning.csv", "summary.json", "summary.md",
                               "valid_loss_vs_step.svg", "valid_loss_vs_step.png",
                               "valid_loss_vs_time.svg", "valid_loss_vs_time.png",
                               "train_loss_vs_step.svg", "train_loss_vs_step.png",
                               "train_valid_loss_vs_step.svg", "train_valid_loss_vs_step.png"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            char path[256];
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            CHECK(access(path, R_OK) == 0, "wrote %s", files[i]);
            unlink(path);
        }
        char md[512];
        snprintf(md, sizeof md, "/tmp/lopt_test_plot.%ld/a", (long)getpid());
        rmdir(dir);
        rmdir(md);
        snprintf(md, sizeof md, "/tmp/lopt_test_plot.%ld", (long)getpid());
        rmdir(md);
        char *text = lopt_compare_markdown(&r);
        CHECK(strstr(text, "| optimizer | lr |") && strstr(text, "(best)"), "markdown table");
        free(text);
    }
    lopt_compare_free(&r);

    /* a learned optimizer that blows up: every test run diverges, the comparison
     * still completes, with +inf losses, "not reached", and a warning */
    a.step_mult = 1e38f;
    const char *one[1] = {"sgd"};
    o.baselines = one;
    o.nbaselines = 1;
    o.tune_seeds = 1;
    st = lopt_compare_run(&t, &o, &r, &err);
    CHECK(st == LOPT_OK, "diverging learned optimizer: %s", err.msg);
    if (st == LOPT_OK) {
        const lopt_compare_entry *e = &r.opt[0];
        CHECK(e->ndiverged == 2 && isinf(e->valid_loss.mean) && isnan(e->valid_acc.mean) &&
                  isnan(e->reach_step) && r.best == 1,
              "diverged runs: +inf final loss, not reached, sgd best");
        CHECK(e->nrows >= 1 && e->runs[0].diverged_at > 0, "rows kept up to the divergence");
        char *text = lopt_compare_markdown(&r);
        CHECK(strstr(text, "learned diverged on 2 of 2 test seeds") != NULL, "divergence warning");
        CHECK(strstr(text, "| learned | (learned) | inf | inf |") != NULL, "inf in the table");
        free(text);
        char dir[128];
        snprintf(dir, sizeof dir, "/tmp/lopt_test_plot_div.%ld", (long)getpid());
        CHECK(lopt_compare_write(&r, dir, &err) == LOPT_OK, "write with diverged runs: %s",
              err.msg);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0, "clean up");
    }
    lopt_compare_free(&r);
    lopt_compare_free(NULL);
    lopt_free(theta);
    t.free(&t);
}

int main(void)
{
    test_helpers();
    test_engine();
    return check_done("test_compare");
}
