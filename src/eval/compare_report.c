/* compare_report.c - the reports of a comparison (compare.h): curves.csv,
 * tuning.csv, summary.json, summary.md and the loss plots. The engine that fills
 * lopt_compare_result is compare.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/out.h"
#include "eval/compare.h"
#include "eval/plot.h"

/* ---- text output -------------------------------------------------------------- */


static void sb_jstat(lopt_sbuf *b, const char *name, lopt_stat s, int last)
{
    lopt_sb_printf(b, "        \"%s\": {\"mean\": ", name);
    lopt_json_num(b, s.mean);
    lopt_sb_printf(b, ", \"std\": ");
    lopt_json_num(b, s.std);
    lopt_sb_printf(b, ", \"min\": ");
    lopt_json_num(b, s.min);
    lopt_sb_printf(b, ", \"max\": ");
    lopt_json_num(b, s.max);
    lopt_sb_printf(b, "}%s\n", last ? "" : ",");
}

/* "KEY": {"step": .., "time_s": .., "speedup_steps": .., "speedup_time": .., "reached": ..} */
static void json_reach(lopt_sbuf *b, const char *key, double step, double time_s,
                       double speedup_steps, double speedup_time)
{
    lopt_sb_printf(b, "      \"%s\": {\"step\": ", key);
    lopt_json_num(b, step);
    lopt_sb_printf(b, ", \"time_s\": ");
    lopt_json_num(b, time_s);
    lopt_sb_printf(b, ", \"speedup_steps\": ");
    lopt_json_num(b, speedup_steps);
    lopt_sb_printf(b, ", \"speedup_time\": ");
    lopt_json_num(b, speedup_time);
    lopt_sb_printf(b, ", \"reached\": %s},\n", isfinite(step) ? "true" : "false");
}

/* one optimizer's object in "optimizers" */
static void json_entry(lopt_sbuf *b, const lopt_compare_entry *e, int has_adam, int last)
{
    lopt_sb_printf(b, "    {\n      \"name\": ");
    lopt_json_str(b, e->name);
    lopt_sb_printf(b, ",\n      \"learned\": %s,\n      \"lr\": ", e->learned ? "true" : "false");
    lopt_json_num(b, e->lr);
    if (e->learned) {
        lopt_sb_printf(b, ",\n      \"lopt_file\": ");
        lopt_json_str(b, e->source);
    } else {
        lopt_sb_printf(b, ",\n      \"optimizer\": ");
        lopt_json_str(b, e->optim);
        lopt_sb_printf(b, ",\n      \"schedule\": \"%s\",\n      \"warmup\": %lld",
                       lopt_schedule_name(e->sched.kind), (long long)e->sched.warmup);
        lopt_sb_printf(b, ",\n      \"lr_grid\": ");
        lopt_json_nums(b, e->grid_lr, e->grid_points);
        lopt_sb_printf(b, ",\n      \"lr_grid_mean_final_valid_loss\": ");
        lopt_json_nums(b, e->grid_loss, e->grid_points);
        lopt_sb_printf(b, ",\n      \"lr_grid_edge\": %s",
                       e->lr_edge < 0 ? "\"low\"" : e->lr_edge > 0 ? "\"high\"" : "null");
    }
    lopt_sb_printf(b, ",\n      \"diverged_seeds\": %d,\n      \"final\": {\n", e->ndiverged);
    sb_jstat(b, "train_loss", e->train_loss, 0);
    sb_jstat(b, "valid_loss", e->valid_loss, 0);
    sb_jstat(b, "valid_acc", e->valid_acc, 0);
    sb_jstat(b, "test_loss", e->test_loss, 0);
    sb_jstat(b, "test_acc", e->test_acc, 0);
    sb_jstat(b, "time_s", e->time_s, 1);
    lopt_sb_printf(b, "      },\n");
    json_reach(b, "reach_target", e->reach_step, e->reach_time, e->speedup_steps,
               e->speedup_time);
    if (has_adam)
        json_reach(b, "reach_adam", e->adam_reach_step, e->adam_reach_time,
                   e->adam_speedup_steps, e->adam_speedup_time);
    lopt_sb_printf(b, "      \"mean_curve\": {\n        \"step\": ");
    lopt_json_nums(b, e->step, e->nrows);
    lopt_sb_printf(b, ",\n        \"time_s\": ");
    lopt_json_nums(b, e->time_mean, e->nrows);
    lopt_sb_printf(b, ",\n        \"train_loss\": ");
    lopt_json_nums(b, e->train_mean, e->nrows);
    lopt_sb_printf(b, ",\n        \"valid_loss\": ");
    lopt_json_nums(b, e->valid_mean, e->nrows);
    lopt_sb_printf(b, "\n      }\n    }%s\n", last ? "" : ",");
}

static char *summary_json(const lopt_compare_result *r)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "{\n  \"task\": ");
    lopt_json_str(&b, r->task);
    lopt_sb_printf(&b, ",\n  \"steps\": %lld,\n  \"eval_every\": %lld,\n  \"seeds\": [",
              (long long)r->steps, (long long)r->eval_every);
    for (int i = 0; i < r->nseeds; i++)
        lopt_sb_printf(&b, "%s%llu", i ? ", " : "", (unsigned long long)r->seeds[i]);
    lopt_sb_printf(&b, "],\n  \"tune_seeds\": [");
    for (int i = 0; i < r->tune_seeds; i++)
        lopt_sb_printf(&b, "%s%d", i ? ", " : "", LOPT_COMPARE_TUNE_SEED0 + i);
    lopt_sb_printf(&b, "],\n  \"grid_points\": %d,\n  \"tuning_criterion\": \"mean final "
                  "validation loss over the tuning seeds (diverged: +inf)\",\n"
                  "  \"lopt_file\": ", r->grid_points);
    if (r->learned_source[0]) lopt_json_str(&b, r->learned_source);
    else lopt_sb_printf(&b, "null");
    lopt_sb_printf(&b, ",\n  \"best_baseline\": ");
    if (r->best >= 0) lopt_json_str(&b, r->opt[r->best].name);
    else lopt_sb_printf(&b, "null");
    lopt_sb_printf(&b, ",\n  \"target_valid_loss\": ");
    lopt_json_num(&b, r->target);
    lopt_sb_printf(&b, ",\n  \"adam_target_valid_loss\": ");
    lopt_json_num(&b, r->adam_target);
    lopt_sb_printf(&b, ",\n  \"elapsed_s\": %.3f,\n  \"optimizers\": [\n", r->elapsed_s);
    for (int i = 0; i < r->nopt; i++) json_entry(&b, &r->opt[i], r->adam >= 0, i + 1 == r->nopt);
    lopt_sb_printf(&b, "  ]\n}\n");
    return b.s;
}

/* "0.5123 ± 0.0100" in format f (NULL: 4 decimals, or 3 significant digits in
 * exponent form below 1e-3), "inf" when some seed diverged, "n/a" when undefined */
static void fmt_stat(char *out, size_t cap, lopt_stat s, const char *f)
{
    char m[32], d[32];
    if (isnan(s.mean)) {
        snprintf(out, cap, "n/a");
        return;
    }
    if (!isfinite(s.mean)) {
        snprintf(out, cap, "inf");
        return;
    }
    if (!f) f = fabs(s.mean) >= 1e-3 || s.mean == 0 ? "%.4f" : "%.3e";   /* losses */
    snprintf(m, sizeof m, f, s.mean);
    snprintf(d, sizeof d, f, isfinite(s.std) ? s.std : 0.0);
    snprintf(out, cap, "%s ± %s", m, d);
}

/* the run: steps, seeds, the tuning grid and the schedules */
static void md_setup(lopt_sbuf *b, const lopt_compare_result *r)
{
    lopt_sb_printf(b, "- %lld steps, validation every %lld; test seeds", (long long)r->steps,
              (long long)r->eval_every);
    for (int i = 0; i < r->nseeds; i++)
        lopt_sb_printf(b, "%s%llu", i ? ", " : " ", (unsigned long long)r->seeds[i]);
    if (r->tune_seeds == 1)
        lopt_sb_printf(b, "; tuning seed %d (disjoint)\n", LOPT_COMPARE_TUNE_SEED0);
    else
        lopt_sb_printf(b, "; tuning seeds %d..%d (disjoint)\n", LOPT_COMPARE_TUNE_SEED0,
                  LOPT_COMPARE_TUNE_SEED0 + r->tune_seeds - 1);
    lopt_sb_printf(b, "- baselines: learning rate tuned on a %d-point log grid by the mean final "
                  "validation loss over the tuning seeds (a diverged run counts as +inf)\n",
              r->grid_points);
    int nsched = 0;
    for (int i = 0; i < r->nopt; i++) nsched += !r->opt[i].learned && r->opt[i].scheduled;
    if (nsched) {
        lopt_sb_printf(b, "- scheduled baselines (torch.optim.lr_scheduler's semantics over "
                       "the %lld steps; lr = the peak):", (long long)r->steps);
        for (int i = 0, k = 0; i < r->nopt; i++) {
            const lopt_compare_entry *e = &r->opt[i];
            if (e->learned || !e->scheduled) continue;
            lopt_sb_printf(b, "%s %s (warm-up %lld)", k++ ? "," : "", e->name,
                           (long long)e->sched.warmup);
        }
        lopt_sb_printf(b, "; cosine = CosineAnnealingLR to 0, linear = LinearLR to 0, "
                       "const = constant, each after a linear warm-up from lr/(W+1); a bare "
                       "name is a constant lr without warm-up\n");
    }
}

/* the learned optimizers compared, and the target the speedups are against */
static void md_learned(lopt_sbuf *b, const lopt_compare_result *r)
{
    int nextra = 0;
    for (int i = 0; i < r->nopt; i++) nextra += r->opt[i].learned > 1;
    lopt_sb_printf(b, "- learned optimizer: %s",
              r->learned_source[0] ? r->learned_source
              : nextra ? "none" : "none (baselines only)");
    for (int i = 0; i < r->nopt; i++)
        if (r->opt[i].learned > 1)
            lopt_sb_printf(b, "; row %s: %s", r->opt[i].name, r->opt[i].source);
    lopt_sb_printf(b, "\n");
    if (r->best >= 0)
        lopt_sb_printf(b, "- target: the strongest tuned baseline's final mean validation "
                      "loss, %s at lr %.3g: %.4g (speedups are against it)\n",
                  r->opt[r->best].name, r->opt[r->best].lr, r->target);
    else
        lopt_sb_printf(b, "- target: none (every baseline diverged on some test seed)\n");
    if (r->best >= 0 && r->opt[r->best].reach_step < (double)r->steps)
        lopt_sb_printf(b, "- note: %s's own seed-mean curve first gets to that loss at step %.0f "
                      "(a noisy tail), hence its own speedup above 1\n",
                  r->opt[r->best].name, r->opt[r->best].reach_step);
    lopt_sb_printf(b, "- mean ± std over %d test seeds; time = training wall-clock (s), "
                  "evaluation excluded; total %.1f s\n",
              r->nseeds, r->elapsed_s);
}

/* grid edges and diverged seeds */
static void md_warnings(lopt_sbuf *b, const lopt_compare_result *r)
{
    for (int i = 0; i < r->nopt; i++) {
        const lopt_compare_entry *e = &r->opt[i];
        if (!e->learned && e->lr_edge)
            lopt_sb_printf(b, "- WARNING: %s's tuned lr %.3g is the %s end of its grid "
                          "[%.3g, %.3g]: the grid may be too narrow\n",
                      e->name, e->lr, e->lr_edge < 0 ? "low" : "high", e->lr_lo, e->lr_hi);
        if (e->ndiverged)
            lopt_sb_printf(b, "- WARNING: %s diverged on %d of %d test seeds\n", e->name,
                      e->ndiverged, e->nseeds);
    }
}

/* the table: every optimizer, mean ± std over the test seeds */
static void md_table(lopt_sbuf *b, const lopt_compare_result *r)
{
    lopt_sb_printf(b, "\n| optimizer | lr | train loss | valid loss | valid acc | test loss | "
                  "test acc | time (s) | steps to target | time to target (s) | "
                  "speedup (steps) | speedup (time) |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < r->nopt; i++) {
        const lopt_compare_entry *e = &r->opt[i];
        char c[6][96], lr[48], rs[32], rt[32], ss[32], st[32];
        fmt_stat(c[0], sizeof c[0], e->train_loss, NULL);
        fmt_stat(c[1], sizeof c[1], e->valid_loss, NULL);
        fmt_stat(c[2], sizeof c[2], e->valid_acc, "%.4f");
        fmt_stat(c[3], sizeof c[3], e->test_loss, NULL);
        fmt_stat(c[4], sizeof c[4], e->test_acc, "%.4f");
        fmt_stat(c[5], sizeof c[5], e->time_s, "%.3f");
        if (e->learned) snprintf(lr, sizeof lr, "(learned)");
        else snprintf(lr, sizeof lr, "%.3g%s", e->lr, e->lr_edge ? " (grid edge)" : "");
        int reached = isfinite(e->reach_step);
        if (reached) {
            snprintf(rs, sizeof rs, "%.0f", e->reach_step);
            snprintf(rt, sizeof rt, "%.3f", e->reach_time);
            snprintf(ss, sizeof ss, "%.2fx", e->speedup_steps);
            snprintf(st, sizeof st, "%.2fx", e->speedup_time);
        } else {
            snprintf(rs, sizeof rs, "not reached");
            snprintf(rt, sizeof rt, "not reached");
            snprintf(ss, sizeof ss, "-");
            snprintf(st, sizeof st, "-");
        }
        lopt_sb_printf(b, "| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                  e->name, i == r->best ? " (best)" : "", lr, c[0], c[1], c[2], c[3], c[4],
                  c[5], rs, rt, ss, st);
    }
}

/* the speedups against tuned constant-lr adam, when it is not the target */
static void md_adam_table(lopt_sbuf *b, const lopt_compare_result *r)
{
    if (r->adam >= 0 && r->adam != r->best && isfinite(r->adam_target)) {
        lopt_sb_printf(b, "\nAgainst tuned constant-lr adam (lr %.3g), final mean validation "
                       "loss %.4g:\n\n| optimizer | steps to adam's loss | time to adam's loss "
                       "(s) | speedup (steps) | speedup (time) |\n|---|---|---|---|---|\n",
                       r->opt[r->adam].lr, r->adam_target);
        for (int i = 0; i < r->nopt; i++) {
            const lopt_compare_entry *e = &r->opt[i];
            if (isfinite(e->adam_reach_step))
                lopt_sb_printf(b, "| %s | %.0f | %.3f | %.2fx | %.2fx |\n", e->name,
                               e->adam_reach_step, e->adam_reach_time, e->adam_speedup_steps,
                               e->adam_speedup_time);
            else
                lopt_sb_printf(b, "| %s | not reached | not reached | - | - |\n", e->name);
        }
    }
}

char *lopt_compare_markdown(const lopt_compare_result *r)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "# lopt compare: %s\n\n", r->task);
    md_setup(&b, r);
    md_learned(&b, r);
    md_warnings(&b, r);
    md_table(&b, r);
    md_adam_table(&b, r);
    return b.s;
}

static char *curves_csv(const lopt_compare_result *r, size_t *len)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "optimizer,seed,step,train_loss,valid_loss,valid_acc,time_s\n");
    for (int i = 0; i < r->nopt; i++) {
        const lopt_compare_entry *e = &r->opt[i];
        for (int s = 0; s < e->nseeds; s++)
            for (int k = 0; k < e->runs[s].nrows; k++) {
                const lopt_curve_row *w = &e->runs[s].rows[k];
                lopt_sb_printf(&b, "%s,%llu,%lld,%.7g,%.7g,%.6g,%.5f\n", e->name,
                          (unsigned long long)r->seeds[s], (long long)w->step, w->train_loss,
                          w->valid_loss, w->valid_acc, w->time_s);
            }
    }
    *len = b.len;
    return b.s;
}

static char *tuning_csv(const lopt_compare_result *r, size_t *len)
{
    lopt_sbuf b = {0};
    lopt_sb_printf(&b, "optimizer,lr,seed,final_valid_loss\n");
    for (int i = 0; i < r->ntuning; i++) {
        const lopt_tuning_row *t = &r->tuning[i];
        lopt_sb_printf(&b, "%s,%.6g,%llu,%.7g\n", r->opt[t->opt].name, t->lr,
                  (unsigned long long)t->seed, t->final_valid_loss);
    }
    *len = b.len;
    return b.s;
}

/* writes text (len bytes) as dir/name and frees it */
static lopt_status write_text(const char *dir, const char *name, char *text, size_t len,
                              lopt_err *err)
{
    lopt_status st = lopt_write_in(dir, name, text, len, err);
    free(text);
    return st;
}

/* one plot: y = (valid or train loss) against x = (step or mean time) per optimizer */
static lopt_status write_plot(const lopt_compare_result *r, const char *dir, const char *name,
                              int train, int vs_time, lopt_err *err)
{
    lopt_plot_series s[LOPT_COMPARE_MAX_OPT];
    char labels[LOPT_COMPARE_MAX_OPT][64];
    for (int i = 0; i < r->nopt; i++) {
        const lopt_compare_entry *e = &r->opt[i];
        if (e->learned) snprintf(labels[i], sizeof labels[i], "%s", e->name);
        else snprintf(labels[i], sizeof labels[i], "%s lr %.3g", e->name, e->lr);
        s[i] = (lopt_plot_series){labels[i], vs_time ? e->time_mean : e->step,
                                  train ? e->train_mean : e->valid_mean,
                                  train ? e->train_min : e->valid_min,
                                  train ? e->train_max : e->valid_max, e->nrows};
    }
    char title[256];
    snprintf(title, sizeof title, "%s: %s loss vs %s (mean of %d seeds, band min..max)",
             r->task, train ? "training" : "validation", vs_time ? "time" : "step", r->nseeds);
    lopt_plot p = {title,
                   vs_time ? "training wall-clock, s (mean over seeds)" : "step",
                   train ? "train loss (minibatch mean)" : "validation loss",
                   1, 0, 0, s, r->nopt};
    char base[4096];
    lopt_status st = lopt_path_join(base, sizeof base, dir, name, err);
    return st != LOPT_OK ? st : lopt_plot_write(&p, base, err);
}

/* two panels side by side, training loss left and validation loss right, against
 * the step, one line per optimizer in the same colour in both */
static lopt_status write_panels(const lopt_compare_result *r, const char *dir, const char *name,
                                lopt_err *err)
{
    lopt_plot_series s[2][LOPT_COMPARE_MAX_OPT];
    char labels[LOPT_COMPARE_MAX_OPT][64], title[2][256];
    lopt_plot p[2];
    for (int k = 0; k < 2; k++) {
        int train = k == 0;
        for (int i = 0; i < r->nopt; i++) {
            const lopt_compare_entry *e = &r->opt[i];
            if (e->learned) snprintf(labels[i], sizeof labels[i], "%s", e->name);
            else snprintf(labels[i], sizeof labels[i], "%s lr %.3g", e->name, e->lr);
            s[k][i] = (lopt_plot_series){labels[i], e->step, train ? e->train_mean : e->valid_mean,
                                         train ? e->train_min : e->valid_min,
                                         train ? e->train_max : e->valid_max, e->nrows};
        }
        snprintf(title[k], sizeof title[k], "%s: %s loss (mean of %d seeds, band min..max)",
                 r->task, train ? "training" : "validation", r->nseeds);
        p[k] = (lopt_plot){title[k], "step",
                           train ? "train loss (minibatch mean)" : "validation loss", 1, 800, 600,
                           s[k], r->nopt};
    }
    char base[4096];
    lopt_status st = lopt_path_join(base, sizeof base, dir, name, err);
    return st != LOPT_OK ? st : lopt_plot_write_row(p, 2, base, err);
}

lopt_status lopt_compare_write(const lopt_compare_result *r, const char *dir, lopt_err *err)
{
    lopt_status st = lopt_outdir_create(dir, err);
    size_t len;
    char *text;
    if (st == LOPT_OK) {
        text = curves_csv(r, &len);
        st = write_text(dir, "curves.csv", text, len, err);
    }
    if (st == LOPT_OK) {
        text = tuning_csv(r, &len);
        st = write_text(dir, "tuning.csv", text, len, err);
    }
    if (st == LOPT_OK) {
        text = summary_json(r);
        st = write_text(dir, "summary.json", text, strlen(text), err);
    }
    if (st == LOPT_OK) {
        text = lopt_compare_markdown(r);
        st = write_text(dir, "summary.md", text, strlen(text), err);
    }
    if (st == LOPT_OK) st = write_plot(r, dir, "valid_loss_vs_step", 0, 0, err);
    if (st == LOPT_OK) st = write_plot(r, dir, "valid_loss_vs_time", 0, 1, err);
    if (st == LOPT_OK) st = write_plot(r, dir, "train_loss_vs_step", 1, 0, err);
    if (st == LOPT_OK) st = write_panels(r, dir, "train_valid_loss_vs_step", err);
    return st;
}
