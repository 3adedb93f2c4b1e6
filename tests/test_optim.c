/* test_optim.c - the hand-designed optimizers against torch.optim 1.13.
 *
 * The fixture $LOPT_BUILD/fixtures/optim_ref.bin (tests/torch/optim_ref.py) holds,
 * per configuration, the initial parameters, a fixed gradient sequence and torch's
 * parameters after every step. We replay the gradients through our optimizer and
 * compare every step's parameters (float32 rounding: rtol 1e-5, atol 1e-6) and every
 * step's update w_t - w_{t-1} (rtol 1e-3 of the update, so an error of a fraction of
 * a small Adam step is not hidden by |w|). Also: reset replays the trajectory exactly,
 * lopt_hparams_default matches torch's constructor defaults, and bad names and
 * hyper-parameters are refused with LOPT_EUSAGE.
 *
 * Schedules: $LOPT_BUILD/fixtures/sched_ref.bin (tests/torch/sched_ref.py) holds the lr
 * torch.optim.lr_scheduler gives every step of a few const/cosine/linear schedules with
 * and without warm-up (compared with lr * lopt_schedule_factor to double rounding),
 * and whole trajectories of Adam, momentum and RMSprop driven by a schedule (compared
 * as above; and they must differ from the constant-lr run, so a schedule that is never
 * applied cannot pass).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/core.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "refio.h"

/* fixture configuration -> lopt optimizer; hp_from_fixture 0: create with hp NULL
 * (lopt's defaults, which must then reproduce torch's default run) */
static const struct {
    const char *cfg, *opt;
    int hp_from_fixture;
} CONFIGS[] = {
    {"sgd", "sgd", 1},           {"sgd_wd", "sgd", 1},
    {"momentum", "momentum", 1}, {"momentum_damp", "momentum", 1},
    {"nesterov", "nesterov", 1}, {"rmsprop", "rmsprop", 1},
    {"rmsprop_mom", "rmsprop", 1}, {"adam", "adam", 1},
    {"adam_wd", "adam", 1},      {"adam_default", "adam", 0},
};

/* hp layout of the fixture: lr, momentum, dampening, weight_decay, alpha, beta1,
 * beta2, eps, nesterov */
static lopt_hparams hp_from(const double *v)
{
    lopt_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.lr = (float)v[0];
    hp.momentum = (float)v[1];
    hp.dampening = (float)v[2];
    hp.weight_decay = (float)v[3];
    hp.alpha = (float)v[4];
    hp.beta1 = (float)v[5];
    hp.beta2 = (float)v[6];
    hp.eps = (float)v[7];
    hp.nesterov = v[8] != 0.0;
    return hp;
}

static void hp_to(double *v, const lopt_hparams *hp)
{
    v[0] = hp->lr; v[1] = hp->momentum; v[2] = hp->dampening; v[3] = hp->weight_decay;
    v[4] = hp->alpha; v[5] = hp->beta1; v[6] = hp->beta2; v[7] = hp->eps;
    v[8] = hp->nesterov;
}

/* Runs o for T steps from w0 over g (T,N); traj (T,N) gets the parameters after each. */
static void run(lopt_optimizer *o, const double *w0, const double *g, int T, int N,
                double *traj)
{
    float *w = malloc((size_t)N * sizeof *w), *gf = malloc((size_t)N * sizeof *gf);
    for (int i = 0; i < N; i++) w[i] = (float)w0[i];
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < N; i++) gf[i] = (float)g[(size_t)t * N + i];
        o->step(o, w, gf);
        for (int i = 0; i < N; i++) traj[(size_t)t * N + i] = w[i];
    }
    free(w);
    free(gf);
}

/* First step at which got and want (T,N) differ beyond tolerance, or -1. */
static int first_bad_step(const double *got, const double *want, int T, int N,
                          double rtol, double atol)
{
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            size_t k = (size_t)t * N + i;
            if (!(fabs(got[k] - want[k]) <= atol + rtol * fabs(want[k]))) return t;
        }
    return -1;
}

static void test_against_torch(const ref_file *rf)
{
    const ref_array *meta = ref_get(rf, "meta", 2);
    CHECK(meta != NULL, "fixture meta");
    if (!meta) return;
    const int N = (int)meta->v[0], T = (int)meta->v[1];
    double *traj = malloc((size_t)T * N * sizeof *traj);
    double *again = malloc((size_t)T * N * sizeof *again);
    double *dgot = malloc((size_t)T * N * sizeof *dgot);
    double *dwant = malloc((size_t)T * N * sizeof *dwant);
    char name[160];
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        const char *cfg = CONFIGS[c].cfg;
        snprintf(name, sizeof name, "%s/hp", cfg);
        const ref_array *hpa = ref_get(rf, name, 9);
        snprintf(name, sizeof name, "%s/w0", cfg);
        const ref_array *w0 = ref_get(rf, name, (size_t)N);
        snprintf(name, sizeof name, "%s/g", cfg);
        const ref_array *g = ref_get(rf, name, (size_t)T * N);
        snprintf(name, sizeof name, "%s/w", cfg);
        const ref_array *want = ref_get(rf, name, (size_t)T * N);
        CHECK(hpa && w0 && g && want, "fixture arrays of %s", cfg);
        if (!(hpa && w0 && g && want)) continue;

        lopt_hparams hp = hp_from(hpa->v);
        lopt_optimizer o;
        lopt_err err = {0};
        lopt_status st = lopt_optimizer_create(&o, CONFIGS[c].opt,
                                           CONFIGS[c].hp_from_fixture ? &hp : NULL,
                                           (size_t)N, &err);
        CHECK(st == LOPT_OK, "create %s: %s", cfg, err.msg);
        if (st != LOPT_OK) continue;
        CHECK(strcmp(o.name, CONFIGS[c].opt) == 0, "%s: name %s", cfg, o.name);

        run(&o, w0->v, g->v, T, N, traj);
        snprintf(name, sizeof name, "%s params, %d steps", cfg, T);
        if (!check_close(name, traj, want->v, (size_t)T * N, 1e-5, 1e-6))
            fprintf(stderr, "  %s: first mismatch at step %d (1-based)\n", cfg,
                    first_bad_step(traj, want->v, T, N, 1e-5, 1e-6) + 1);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N; i++) {
                size_t k = (size_t)t * N + i;
                double prev_got = t ? traj[k - N] : w0->v[i];
                double prev_want = t ? want->v[k - N] : w0->v[i];
                dgot[k] = traj[k] - prev_got;
                dwant[k] = want->v[k] - prev_want;
            }
        snprintf(name, sizeof name, "%s updates, %d steps", cfg, T);
        if (!check_close(name, dgot, dwant, (size_t)T * N, 1e-3, 1e-6))
            fprintf(stderr, "  %s: first update mismatch at step %d (1-based)\n", cfg,
                    first_bad_step(dgot, dwant, T, N, 1e-3, 1e-6) + 1);

        /* reset forgets everything: the same run again gives the same numbers */
        o.reset(&o);
        run(&o, w0->v, g->v, T, N, again);
        CHECK(memcmp(again, traj, (size_t)T * N * sizeof *traj) == 0,
              "%s: run after reset differs from the first run", cfg);
        o.free(&o);
        CHECK(o.ctx == NULL, "%s: free clears ctx", cfg);
        o.free(&o);   /* a second free is a no-op */
    }
    free(traj);
    free(again);
    free(dgot);
    free(dwant);
}

static void expect_usage(const char *what, const char *name, const lopt_hparams *hp)
{
    lopt_optimizer o;
    lopt_err err = {0};
    lopt_status st = lopt_optimizer_create(&o, name, hp, 4, &err);
    CHECK(st == LOPT_EUSAGE && err.status == LOPT_EUSAGE && err.msg[0],
          "%s: status %d, message '%s'", what, st, err.msg);
    if (st == LOPT_OK) o.free(&o);
    else printf("ok   %s refused: %s\n", what, err.msg);
}

/* ---- learning-rate schedules against torch.optim.lr_scheduler ---------------------- */

static const struct {
    const char *cfg;
    lopt_schedule_kind kind;
} SCHEDULES[] = {
    {"const_n30_w0", LOPT_SCHED_CONST},    {"const_n30_w5", LOPT_SCHED_CONST},
    {"cosine_n50_w0", LOPT_SCHED_COSINE},  {"cosine_n50_w10", LOPT_SCHED_COSINE},
    {"cosine_n7_w6", LOPT_SCHED_COSINE},   {"cosine_n1_w0", LOPT_SCHED_COSINE},
    {"linear_n40_w0", LOPT_SCHED_LINEAR},  {"linear_n40_w7", LOPT_SCHED_LINEAR},
    {"linear_n2_w1", LOPT_SCHED_LINEAR},
};

static const struct {
    const char *cfg, *opt;
    lopt_schedule_kind kind;
} SCHED_TRAJ[] = {
    {"adam_cosine_w4", "adam", LOPT_SCHED_COSINE},
    {"adam_cosine_w0", "adam", LOPT_SCHED_COSINE},
    {"momentum_linear_w3", "momentum", LOPT_SCHED_LINEAR},
    {"rmsprop_const_w5", "rmsprop", LOPT_SCHED_CONST},
};

static void test_schedules(const ref_file *rf)
{
    char name[160];
    for (size_t c = 0; c < sizeof SCHEDULES / sizeof SCHEDULES[0]; c++) {
        snprintf(name, sizeof name, "sched/%s/cfg", SCHEDULES[c].cfg);
        const ref_array *cfg = ref_get(rf, name, 3);
        CHECK(cfg != NULL, "fixture %s", name);
        if (!cfg) continue;
        const int N = (int)cfg->v[0];
        snprintf(name, sizeof name, "sched/%s/lr", SCHEDULES[c].cfg);
        const ref_array *want = ref_get(rf, name, (size_t)N);
        CHECK(want != NULL, "fixture %s", name);
        if (!want) continue;
        lopt_schedule s = {SCHEDULES[c].kind, (int64_t)cfg->v[1], N};
        lopt_err err = {0};
        CHECK(lopt_schedule_check(&s, &err) == LOPT_OK, "%s: %s", SCHEDULES[c].cfg, err.msg);
        double *got = malloc((size_t)N * sizeof *got);
        for (int t = 1; t <= N; t++) got[t - 1] = cfg->v[2] * lopt_schedule_factor(&s, t);
        snprintf(name, sizeof name, "schedule %s: lr of all %d steps", SCHEDULES[c].cfg, N);
        check_close(name, got, want->v, (size_t)N, 1e-12, 0.0);
        free(got);
    }

    for (size_t c = 0; c < sizeof SCHED_TRAJ / sizeof SCHED_TRAJ[0]; c++) {
        const char *cfgname = SCHED_TRAJ[c].cfg;
        snprintf(name, sizeof name, "traj/%s/cfg", cfgname);
        const ref_array *cfg = ref_get(rf, name, 3);
        CHECK(cfg != NULL, "fixture %s", name);
        if (!cfg) continue;
        const int T = (int)cfg->v[0];
        snprintf(name, sizeof name, "traj/%s/w0", cfgname);
        const ref_array *w0 = ref_get(rf, name, 0);
        const int N = w0 ? (int)w0->n : 0;
        snprintf(name, sizeof name, "traj/%s/g", cfgname);
        const ref_array *g = ref_get(rf, name, (size_t)T * N);
        snprintf(name, sizeof name, "traj/%s/w", cfgname);
        const ref_array *want = ref_get(rf, name, (size_t)T * N);
        CHECK(w0 && g && want, "fixture arrays of %s", cfgname);
        if (!(w0 && g && want)) continue;

        lopt_hparams hp;
        lopt_err err = {0};
        lopt_hparams_default(&hp, SCHED_TRAJ[c].opt, NULL);
        hp.lr = (float)cfg->v[2];
        hp.sched = (lopt_schedule){SCHED_TRAJ[c].kind, (int64_t)cfg->v[1], T};
        lopt_optimizer o;
        lopt_status st = lopt_optimizer_create(&o, SCHED_TRAJ[c].opt, &hp, (size_t)N, &err);
        CHECK(st == LOPT_OK, "create %s: %s", cfgname, err.msg);
        if (st != LOPT_OK) continue;
        double *traj = malloc((size_t)T * N * sizeof *traj);
        double *again = malloc((size_t)T * N * sizeof *again);
        double *dgot = malloc((size_t)T * N * sizeof *dgot);
        double *dwant = malloc((size_t)T * N * sizeof *dwant);
        run(&o, w0->v, g->v, T, N, traj);
        snprintf(name, sizeof name, "%s params, %d steps", cfgname, T);
        if (!check_close(name, traj, want->v, (size_t)T * N, 1e-5, 1e-6))
            fprintf(stderr, "  %s: first mismatch at step %d (1-based)\n", cfgname,
                    first_bad_step(traj, want->v, T, N, 1e-5, 1e-6) + 1);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N; i++) {
                size_t k = (size_t)t * N + i;
                dgot[k] = traj[k] - (t ? traj[k - N] : w0->v[i]);
                dwant[k] = want->v[k] - (t ? want->v[k - N] : w0->v[i]);
            }
        snprintf(name, sizeof name, "%s updates, %d steps", cfgname, T);
        if (!check_close(name, dgot, dwant, (size_t)T * N, 1e-3, 1e-6))
            fprintf(stderr, "  %s: first update mismatch at step %d (1-based)\n", cfgname,
                    first_bad_step(dgot, dwant, T, N, 1e-3, 1e-6) + 1);
        o.reset(&o);   /* the schedule restarts with the step count */
        run(&o, w0->v, g->v, T, N, again);
        CHECK(memcmp(again, traj, (size_t)T * N * sizeof *traj) == 0,
              "%s: run after reset differs from the first run", cfgname);
        o.free(&o);

        /* the same optimizer at a constant lr must miss torch's scheduled run */
        hp.sched = (lopt_schedule){0};
        lopt_optimizer_create(&o, SCHED_TRAJ[c].opt, &hp, (size_t)N, NULL);
        run(&o, w0->v, g->v, T, N, again);
        o.free(&o);
        CHECK(first_bad_step(again, want->v, T, N, 1e-5, 1e-6) >= 0,
              "%s: the constant-lr run matches the scheduled one (schedule not applied?)",
              cfgname);
        free(traj);
        free(again);
        free(dgot);
        free(dwant);
    }
}

static void test_schedule_edges(void)
{
    lopt_err err = {0};
    lopt_schedule_kind k = LOPT_SCHED_CONST;
    CHECK(lopt_schedule_parse("cosine", &k, &err) == LOPT_OK && k == LOPT_SCHED_COSINE,
          "parse cosine");
    CHECK(lopt_schedule_parse("linear", &k, &err) == LOPT_OK && k == LOPT_SCHED_LINEAR,
          "parse linear");
    CHECK(lopt_schedule_parse("const", &k, &err) == LOPT_OK && k == LOPT_SCHED_CONST,
          "parse const");
    CHECK(strcmp(lopt_schedule_name(LOPT_SCHED_COSINE), "cosine") == 0, "name of cosine");
    CHECK(lopt_schedule_parse("step", &k, &err) == LOPT_EUSAGE && strstr(err.msg, "'step'"),
          "unknown schedule refused: '%s'", err.msg);
    CHECK(lopt_schedule_default_warmup(LOPT_SCHED_COSINE, 2000) == 100 &&
              lopt_schedule_default_warmup(LOPT_SCHED_LINEAR, 2000) == 100 &&
              lopt_schedule_default_warmup(LOPT_SCHED_CONST, 2000) == 0,
          "default warm-up: 5%% of the steps for cosine and linear, none for const");

    lopt_schedule none = {0};
    CHECK(lopt_schedule_check(&none, &err) == LOPT_OK && lopt_schedule_factor(&none, 1) == 1.0 &&
              lopt_schedule_factor(&none, 1000000) == 1.0,
          "a zeroed schedule is a constant lr of factor exactly 1");
    lopt_schedule cos10 = {LOPT_SCHED_COSINE, 0, 10}, lin10 = {LOPT_SCHED_LINEAR, 2, 10};
    CHECK(lopt_schedule_factor(&cos10, 11) == 0.0 && lopt_schedule_factor(&cos10, 50) == 0.0 &&
              lopt_schedule_factor(&lin10, 11) == 0.0,
          "cosine and linear hold 0 past the last step");
    CHECK(lopt_schedule_factor(&lin10, 0) == lopt_schedule_factor(&lin10, 1) &&
              fabs(lopt_schedule_factor(&lin10, 1) - 1.0 / 3.0) < 1e-15,
          "step 0 is taken as step 1; warm-up starts at 1/(W+1)");

    const struct {
        const char *what;
        lopt_schedule s;
    } bad[] = {
        {"negative warm-up", {LOPT_SCHED_CONST, -1, 10}},
        {"warm-up = steps", {LOPT_SCHED_COSINE, 10, 10}},
        {"warm-up > steps", {LOPT_SCHED_CONST, 11, 10}},
        {"cosine without steps", {LOPT_SCHED_COSINE, 0, 0}},
        {"linear without steps", {LOPT_SCHED_LINEAR, 0, 0}},
        {"unknown kind", {(lopt_schedule_kind)7, 0, 10}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lopt_err e = {0};
        CHECK(lopt_schedule_check(&bad[i].s, &e) == LOPT_EUSAGE && e.msg[0],
              "%s refused", bad[i].what);
        lopt_hparams hp;
        lopt_hparams_default(&hp, "adam", NULL);
        hp.sched = bad[i].s;
        expect_usage(bad[i].what, "adam", &hp);
    }
}

static void test_defaults(const ref_file *rf)
{
    for (int i = 0; lopt_optimizer_names[i]; i++) {
        const char *nm = lopt_optimizer_names[i];
        char key[64];
        snprintf(key, sizeof key, "defaults/%s", nm);
        const ref_array *want = ref_get(rf, key, 9);
        lopt_hparams hp;
        lopt_err err = {0};
        CHECK(lopt_hparams_default(&hp, nm, &err) == LOPT_OK, "default %s: %s", nm,
              err.msg);
        if (!want) {
            CHECK(0, "fixture %s", key);
            continue;
        }
        double got[9];
        hp_to(got, &hp);
        check_close(key, got, want->v, 9, 1e-7, 0.0);

        lopt_optimizer o;
        CHECK(lopt_optimizer_create(&o, nm, NULL, 10, &err) == LOPT_OK, "create %s: %s", nm,
              err.msg);
        CHECK(o.n == 10 && o.step && o.reset && o.free && strcmp(o.name, nm) == 0,
              "create %s fills the interface", nm);
        o.free(&o);
    }
}

static void test_errors(void)
{
    lopt_hparams hp;
    lopt_err err = {0};
    CHECK(lopt_hparams_default(&hp, "adagrad", &err) == LOPT_EUSAGE &&
              strstr(err.msg, "adagrad"),
          "unknown default name: '%s'", err.msg);
    expect_usage("unknown optimizer", "adagrad", NULL);
    expect_usage("empty name", "", NULL);

    lopt_hparams_default(&hp, "sgd", NULL);
    hp.lr = -1.0f;
    expect_usage("negative lr", "sgd", &hp);
    hp.lr = NAN;
    expect_usage("NaN lr", "sgd", &hp);

    lopt_hparams_default(&hp, "nesterov", NULL);
    hp.dampening = 0.1f;
    expect_usage("nesterov with dampening", "nesterov", &hp);
    lopt_hparams_default(&hp, "momentum", NULL);
    hp.momentum = 0.0f;
    expect_usage("momentum without momentum", "momentum", &hp);

    lopt_hparams_default(&hp, "adam", NULL);
    hp.beta1 = 1.0f;
    expect_usage("adam beta1 = 1", "adam", &hp);
    lopt_hparams_default(&hp, "adam", NULL);
    hp.eps = -1e-8f;
    expect_usage("adam negative eps", "adam", &hp);
    lopt_hparams_default(&hp, "rmsprop", NULL);
    hp.alpha = -0.5f;
    expect_usage("rmsprop negative alpha", "rmsprop", &hp);
    hp.alpha = 0.99f;
    hp.weight_decay = -1.0f;
    expect_usage("rmsprop negative weight_decay", "rmsprop", &hp);
}

/* The AVX-512 paths of Adam and RMSprop give the scalar loops' bits: 8 steps on 37
 * parameters (two full vectors and a partial one), with and without weight decay
 * (and RMSprop with and without momentum), a zero gradient among them */
static void isa_bits(void)
{
    if (!nn_isa_supported(NN_ISA_AVX512)) {
        printf("skip Adam / RMSprop AVX-512 vs scalar (no AVX-512)\n");
        return;
    }
    enum { N = 37 };
    static const struct { const char *name; float wd, mu; } cases[] = {
        {"adam", 0.0f, 0.0f}, {"adam", 0.1f, 0.0f}, {"rmsprop", 0.0f, 0.0f},
        {"rmsprop", 0.1f, 0.0f}, {"rmsprop", 0.0f, 0.9f}, {"rmsprop", 0.1f, 0.9f}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        float w[2][N], g[N];
        lopt_rng_fill_normal(w[0], N, 1.0f, 5, LOPT_STREAM_TEST, 0);
        memcpy(w[1], w[0], sizeof w[0]);
        lopt_optimizer o[2];
        for (int k = 0; k < 2; k++) {
            lopt_hparams hp;
            lopt_hparams_default(&hp, cases[c].name, NULL);
            hp.lr = 1e-2f;
            hp.weight_decay = cases[c].wd;
            hp.momentum = cases[c].mu;
            CHECK(lopt_optimizer_create(&o[k], cases[c].name, &hp, N, NULL) == LOPT_OK,
                  "create %s", cases[c].name);
        }
        for (int t = 1; t <= 8; t++) {
            lopt_rng_fill_normal(g, N, 0.1f, 6, LOPT_STREAM_TEST, (uint64_t)t * N);
            g[t] = 0.0f;
            for (int k = 0; k < 2; k++) {
                nn_isa old = nn_isa_force(k ? NN_ISA_AVX512 : NN_ISA_SSE);
                o[k].step(&o[k], w[k], g);
                nn_isa_force(old);
            }
        }
        CHECK(memcmp(w[0], w[1], sizeof w[0]) == 0,
              "%s (weight decay %g, momentum %g) on AVX-512 differs from the scalar loop",
              cases[c].name, cases[c].wd, cases[c].mu);
        for (int k = 0; k < 2; k++) o[k].free(&o[k]);
    }
    printf("ok   Adam's and RMSprop's AVX-512 paths == the scalar loops bit for bit\n");
}

int main(void)
{
    const char *build = getenv("LOPT_BUILD");
    char path[4096];
    if (!build || !*build) build = "build";
    snprintf(path, sizeof path, "%s/fixtures/optim_ref.bin", build);
    ref_file rf;
    if (ref_load(&rf, path) != 0) {
        CHECK(0, "load fixture %s", path);
        return check_done("test_optim");
    }
    test_against_torch(&rf);
    test_defaults(&rf);
    isa_bits();
    test_errors();
    ref_free(&rf);
    snprintf(path, sizeof path, "%s/fixtures/sched_ref.bin", build);
    if (ref_load(&rf, path) != 0) {
        CHECK(0, "load fixture %s", path);
        return check_done("test_optim");
    }
    test_schedules(&rf);
    test_schedule_edges();
    ref_free(&rf);
    return check_done("test_optim");
}
