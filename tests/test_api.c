/* test_api.c - the public API of include/lopt.h beyond loading a file:
 *  - lopt_opt_step is bit for bit the library's learned optimizer (the one `lopt
 *    train` runs); groups, pointer arrays and frozen tensors give the same updates
 *    as one flat vector; a skipped tensor (NULL gradient) keeps its parameters and
 *    momenta; the step scale and the decoupled weight decay are the documented
 *    formula; constructors refuse bad input with a reason;
 *  - the state blob resumes a run bit-identically (buffer and file) and refuses
 *    corrupt, truncated and mismatched blobs;
 *  - the horizon: lopt_model_info reads it, the clamp defaults to it and feeds the
 *    time features min(t, t_max), and turning it off changes the updates past it;
 *  - tasks: a user's task registered by name (in-memory data with regression
 *    targets, its own exact HVP) trains with lopt_train and meta-trains with
 *    lopt_meta_train; a task without an HVP is refused by rp and merged with a
 *    clear message and works with es; bad specs and names are refused. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lopt.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

/* a model with random (untrained) paper weights, optionally with a horizon */
static lopt_model *make_model(uint64_t horizon, const char *name)
{
    lopt_arch a;
    lopt_arch_preset(&a, "paper", NULL);
    float *theta = lopt_floats(lopt_arch_nparams(&a));
    lopt_theta_init(&a, 3, theta);
    lopt_provenance p;
    memset(&p, 0, sizeof p);
    p.horizon = horizon;
    snprintf(p.estimator, sizeof p.estimator, "none");
    char path[512];
    tmp_path(path, sizeof path, name);
    lopt_err err = {0};
    CHECK(lopt_file_write(path, &a, theta, &p, &err) == LOPT_OK, "write: %s", err.msg);
    lopt_free(theta);
    char msg[256];
    lopt_model *m = lopt_model_load(path, msg, sizeof msg);
    CHECK(m != NULL, "load %s: %s", path, msg);
    return m;
}

static const size_t sizes[] = {40, 8, 16, 3};   /* four tensors of uneven sizes */
enum { NT = 4, N = 67 };

static void grads_at(int step, float *g)
{
    lopt_rng_fill_normal(g, N, 0.1f, 77, LOPT_STREAM_TEST, (uint64_t)step * N);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_flat_vs_library(lopt_model *m)
{
    /* the library's learned optimizer, as `lopt train` runs it */
    lopt_arch a;
    float *theta;
    char path[512];
    tmp_path(path, sizeof path, "plain.lopt");
    lopt_file_read(path, &a, &theta, NULL, NULL);
    lopt_tensor T[NT];
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        T[i] = (lopt_tensor){"", off, sizes[i], 0};
        off += sizes[i];
    }
    lopt_optimizer ref;
    CHECK(lopt_learned_create(&ref, &a, theta, T, NT, N, NULL) == LOPT_OK, "learned_create");
    lopt_opt *o = lopt_opt_new(m, sizes, NT);
    CHECK(o && lopt_opt_nparams(o) == N && lopt_opt_ntensors(o) == NT, "lopt_opt_new");
    float w1[N], w2[N], g[N];
    lopt_rng_fill_normal(w1, N, 1.0f, 5, LOPT_STREAM_TEST, 0);
    memcpy(w2, w1, sizeof w1);
    int ok = 1;
    for (int s = 0; s < 30; s++) {
        grads_at(s, g);
        ref.step(&ref, w1, g);
        lopt_opt_step(o, w2, g);
        ok &= same(w1, w2, N);
    }
    CHECK(ok, "lopt_opt_step differs from the library's learned optimizer");
    if (ok) printf("ok   lopt_opt_step == the library's learned optimizer, 30 steps, bit for bit\n");
    CHECK(lopt_opt_steps(o) == 30, "step count %lld", (long long)lopt_opt_steps(o));
    ref.free(&ref);
    lopt_free(theta);
    lopt_opt_free(o);
}

static void test_groups_pointers_frozen(lopt_model *m)
{
    lopt_opt *flat = lopt_opt_new(m, sizes, NT);
    /* the same tensors in two groups, stepped through pointers to separate arrays */
    lopt_param_group gr[2] = {{sizes, 2, {1, 0, 0}}, {sizes + 2, 2, {1, 0, 0}}};
    char msg[256];
    lopt_opt *grp = lopt_opt_new_groups(m, gr, 2, msg, sizeof msg);
    CHECK(grp && lopt_opt_ngroups(grp) == 2, "two groups: %s", msg);
    float w[N], g[N], *p[NT];
    lopt_rng_fill_normal(w, N, 1.0f, 6, LOPT_STREAM_TEST, 0);
    size_t off[NT + 1] = {0};
    for (int i = 0; i < NT; i++) {
        off[i + 1] = off[i] + sizes[i];
        p[i] = malloc(sizes[i] * sizeof(float));
        memcpy(p[i], w + off[i], sizes[i] * sizeof(float));
    }
    int ok = 1;
    for (int s = 0; s < 20; s++) {
        grads_at(s, g);
        const float *gp[NT];
        for (int i = 0; i < NT; i++) gp[i] = g + off[i];
        lopt_opt_step(flat, w, g);
        lopt_opt_step_tensors(grp, p, gp);
        for (int i = 0; i < NT; i++) ok &= same(w + off[i], p[i], sizes[i]);
    }
    CHECK(ok, "groups + pointer arrays differ from one flat vector");
    if (ok) printf("ok   two groups through pointer arrays == one flat vector, bit for bit\n");

    /* frozen: group 1 (tensors 2, 3) frozen; tensors 0, 1 as an optimizer of their own */
    gr[1].opts.frozen = 1;
    lopt_opt *fz = lopt_opt_new_groups(m, gr, 2, msg, sizeof msg);
    lopt_opt *own = lopt_opt_new(m, sizes, 2);
    float wf[N], wo[N], gf[N];
    lopt_rng_fill_normal(wf, N, 1.0f, 7, LOPT_STREAM_TEST, 0);
    memcpy(wo, wf, sizeof wf);
    float frozen0[N];
    memcpy(frozen0, wf, sizeof wf);
    ok = 1;
    for (int s = 0; s < 10; s++) {
        grads_at(s, gf);
        lopt_opt_step(fz, wf, gf);
        lopt_opt_step(own, wo, gf);
        ok &= same(wf, wo, off[2]);
    }
    CHECK(ok, "frozen group changed the other tensors' updates");
    CHECK(same(wf + off[2], frozen0 + off[2], N - off[2]), "a frozen tensor moved");
    CHECK(lopt_opt_state_size(fz) < lopt_opt_state_size(flat), "frozen tensors carry state");
    lopt_group_opts go;
    lopt_opt_get_group(fz, 1, &go);
    go.frozen = 0;
    CHECK(lopt_opt_set_group(fz, 1, &go, msg, sizeof msg) != 0 && strstr(msg, "frozen"),
          "unfreezing accepted");
    printf("ok   a frozen group is left alone and changes nothing else\n");

    /* skipped: tensor 1's gradient NULL at step 3 of 6 */
    lopt_opt *sk = lopt_opt_new(m, sizes, NT), *ref = lopt_opt_new(m, sizes, NT);
    float ws[N], wr[N];
    lopt_rng_fill_normal(ws, N, 1.0f, 8, LOPT_STREAM_TEST, 0);
    memcpy(wr, ws, sizeof ws);
    size_t ss = lopt_opt_state_size(sk);
    unsigned char *b0 = malloc(ss), *b1 = malloc(ss);
    ok = 1;
    for (int s = 0; s < 6; s++) {
        grads_at(s, g);
        float *pp[NT];
        const float *gp[NT];
        for (int i = 0; i < NT; i++) {
            pp[i] = ws + off[i];
            gp[i] = g + off[i];
        }
        float before[16];
        if (s == 3) {
            gp[1] = NULL;
            memcpy(before, ws + off[1], sizes[1] * sizeof(float));
            lopt_opt_save_state(sk, b0, ss, NULL, 0);
        }
        lopt_opt_step_tensors(sk, pp, gp);
        lopt_opt_step(ref, wr, g);
        if (s == 3) {
            lopt_opt_save_state(sk, b1, ss, NULL, 0);
            CHECK(same(before, ws + off[1], sizes[1]), "a skipped tensor moved");
            /* the momenta (the blob's tail before the CRC): tensor 1's unchanged,
             * tensor 0's advanced */
            size_t mo = ss - 8 - 4 * 5 * N;
            int kept = 1, moved = 0;
            for (int k = 0; k < 5; k++) {
                kept &= memcmp(b0 + mo + 4 * ((size_t)k * N + off[1]),
                               b1 + mo + 4 * ((size_t)k * N + off[1]), 4 * sizes[1]) == 0;
                moved |= memcmp(b0 + mo + 4 * (size_t)k * N, b1 + mo + 4 * (size_t)k * N,
                                4 * sizes[0]) != 0;
            }
            CHECK(kept && moved, "skipped tensor's momenta: kept %d, others moved %d", kept, moved);
        }
        if (s <= 3) ok &= same(ws, wr, off[1]) && same(ws + off[2], wr + off[2], N - off[2]);
    }
    CHECK(ok, "skipping one tensor changed the others' updates");
    printf("ok   a tensor without a gradient is skipped: parameters and momenta kept\n");
    free(b0);
    free(b1);
    for (int i = 0; i < NT; i++) free(p[i]);
    lopt_opt_free(flat);
    lopt_opt_free(grp);
    lopt_opt_free(fz);
    lopt_opt_free(own);
    lopt_opt_free(sk);
    lopt_opt_free(ref);
}

static void test_scale_decay(lopt_model *m)
{
    float w0[N], g[N], wr[N], ws[N], wd[N], wz[N];
    lopt_rng_fill_normal(w0, N, 1.0f, 9, LOPT_STREAM_TEST, 0);
    grads_at(0, g);
    lopt_param_group gr = {sizes, NT, {1, 0, 0}};
    lopt_opt *r = lopt_opt_new_groups(m, &gr, 1, NULL, 0);
    gr.opts.step_scale = 0.25f;
    lopt_opt *s = lopt_opt_new_groups(m, &gr, 1, NULL, 0);
    gr.opts.step_scale = 1.0f;
    gr.opts.weight_decay = 0.1f;
    lopt_opt *d = lopt_opt_new_groups(m, &gr, 1, NULL, 0);
    gr.opts.step_scale = 0.0f;
    lopt_opt *z = lopt_opt_new_groups(m, &gr, 1, NULL, 0);
    memcpy(wr, w0, sizeof w0);
    memcpy(ws, w0, sizeof w0);
    memcpy(wd, w0, sizeof w0);
    memcpy(wz, w0, sizeof w0);
    lopt_opt_step(r, wr, g);
    lopt_opt_step(s, ws, g);
    lopt_opt_step(d, wd, g);
    lopt_opt_step(z, wz, g);
    double got[N], want[N], gd[N], wdd[N];
    for (int i = 0; i < N; i++) {
        got[i] = (double)ws[i] - w0[i];
        want[i] = 0.25 * ((double)wr[i] - w0[i]);
        gd[i] = wd[i];
        wdd[i] = (double)wr[i] - 0.1 * w0[i];
    }
    check_close("step_scale 0.25: update = 0.25 x the learned update", got, want, N, 1e-3, 1e-7);
    check_close("weight_decay 0.1: w - 0.1 w + update", gd, wdd, N, 1e-6, 1e-7);
    CHECK(same(wz, w0, N), "step_scale 0 moved the parameters");
    /* set_group changes the scale of the next step */
    lopt_group_opts go;
    lopt_group_opts_default(&go);
    go.step_scale = 2.0f;
    CHECK(lopt_opt_set_group(r, 0, &go, NULL, 0) == 0, "set_group");
    go.step_scale = NAN;
    char msg[256] = "";
    CHECK(lopt_opt_set_group(r, 0, &go, msg, sizeof msg) != 0 && strstr(msg, "step_scale"),
          "a NaN step scale accepted");
    lopt_opt_get_group(r, 0, &go);
    CHECK(go.step_scale == 2.0f, "get_group after a refused set");
    lopt_opt_free(r);
    lopt_opt_free(s);
    lopt_opt_free(d);
    lopt_opt_free(z);
}

static void test_refusals(lopt_model *m)
{
    size_t bad[] = {3, 0};
    CHECK(lopt_opt_new(m, bad, 2) == NULL && strstr(lopt_last_error(), "size 0"),
          "a zero-size tensor accepted (%s)", lopt_last_error());
    CHECK(lopt_opt_new(NULL, sizes, 2) == NULL && strstr(lopt_last_error(), "model is NULL"),
          "a NULL model accepted (%s)", lopt_last_error());
    CHECK(lopt_opt_new(m, sizes, 0) == NULL && strstr(lopt_last_error(), "ntensors"),
          "0 tensors accepted (%s)", lopt_last_error());
    lopt_param_group g = {sizes, NT, {1, -1, 0}};
    char msg[256] = "";
    CHECK(lopt_opt_new_groups(m, &g, 1, msg, sizeof msg) == NULL && strstr(msg, "weight_decay"),
          "a negative weight decay accepted (%s)", msg);
    printf("ok   constructors refuse bad input with a reason (%s)\n", msg);
}

static void test_state(lopt_model *m)
{
    lopt_param_group gr[2] = {{sizes, 3, {0.5f, 1e-3f, 0}}, {sizes + 3, 1, {1, 0, 0}}};
    lopt_opt *a = lopt_opt_new_groups(m, gr, 2, NULL, 0);
    float w[N], g[N], w_mid[N];
    lopt_rng_fill_normal(w, N, 1.0f, 10, LOPT_STREAM_TEST, 0);
    for (int s = 0; s < 10; s++) {
        grads_at(s, g);
        lopt_opt_step(a, w, g);
    }
    size_t ss = lopt_opt_state_size(a);
    unsigned char *blob = malloc(ss);
    char msg[256] = "";
    CHECK(lopt_opt_save_state(a, blob, ss - 1, msg, sizeof msg) == 0 && strstr(msg, "bytes"),
          "a short buffer accepted");
    CHECK(lopt_opt_save_state(a, blob, ss, msg, sizeof msg) == ss, "save_state: %s", msg);
    char path[512];
    tmp_path(path, sizeof path, "opt.state");
    CHECK(lopt_opt_save_state_file(a, path, msg, sizeof msg) == 0, "save_state_file: %s", msg);
    memcpy(w_mid, w, sizeof w);
    for (int s = 10; s < 25; s++) {
        grads_at(s, g);
        lopt_opt_step(a, w, g);
    }
    /* a fresh optimizer with other options, restored from the blob and from the file */
    for (int via = 0; via < 2; via++) {
        lopt_param_group gb[2] = {{sizes, 3, {1, 0, 0}}, {sizes + 3, 1, {1, 0, 0}}};
        lopt_opt *b = lopt_opt_new_groups(m, gb, 2, NULL, 0);
        int r = via == 0 ? lopt_opt_load_state(b, blob, ss, msg, sizeof msg)
                         : lopt_opt_load_state_file(b, path, msg, sizeof msg);
        CHECK(r == 0, "load_state (%s): %s", via ? "file" : "buffer", msg);
        lopt_group_opts go;
        lopt_opt_get_group(b, 0, &go);
        CHECK(go.step_scale == 0.5f && go.weight_decay == 1e-3f, "group options not restored");
        CHECK(lopt_opt_steps(b) == 10, "step count not restored");
        float w2[N];
        memcpy(w2, w_mid, sizeof w2);
        for (int s = 10; s < 25; s++) {
            grads_at(s, g);
            lopt_opt_step(b, w2, g);
        }
        CHECK(same(w, w2, N), "resumed run (%s) differs", via ? "file" : "buffer");
        lopt_opt_free(b);
    }
    printf("ok   state saved at step 10 resumes bit-identically (buffer and file)\n");
    /* refusals, and a refused load leaves the optimizer as it was */
    lopt_opt *c = lopt_opt_new_groups(m, gr, 2, NULL, 0);
    blob[ss / 2] ^= 0x10;
    CHECK(lopt_opt_load_state(c, blob, ss, msg, sizeof msg) != 0 && strstr(msg, "checksum"),
          "a corrupt state accepted (%s)", msg);
    blob[ss / 2] ^= 0x10;
    CHECK(lopt_opt_load_state(c, blob, ss - 9, msg, sizeof msg) != 0 && strstr(msg, "truncated"),
          "a truncated state accepted (%s)", msg);
    CHECK(lopt_opt_steps(c) == 0, "a refused load changed the optimizer");
    lopt_opt *d = lopt_opt_new(m, sizes, NT);   /* one group: another layout */
    CHECK(lopt_opt_load_state(d, blob, ss, msg, sizeof msg) != 0, "another layout accepted");
    lopt_model *other = make_model(0, "other.lopt");
    lopt_arch oa;
    float *oth;
    tmp_path(path, sizeof path, "other.lopt");
    lopt_file_read(path, &oa, &oth, NULL, NULL);
    oth[0] += 1.0f;
    lopt_file_write(path, &oa, oth, NULL, NULL);
    lopt_free(oth);
    lopt_model_free(other);
    other = lopt_model_load(path, NULL, 0);
    lopt_opt *e = lopt_opt_new_groups(other, gr, 2, NULL, 0);
    CHECK(lopt_opt_load_state(e, blob, ss, msg, sizeof msg) != 0 && strstr(msg, "another learned"),
          "a state from another model accepted (%s)", msg);
    CHECK(lopt_opt_load_state(e, "LOPTxxxxxxxxxxxxxxxx", 20, msg, sizeof msg) != 0 &&
              strstr(msg, "not a lopt"), "garbage accepted");
    printf("ok   corrupt, truncated, other-layout and other-model states refused\n");
    free(blob);
    lopt_opt_free(a);
    lopt_opt_free(c);
    lopt_opt_free(d);
    lopt_opt_free(e);
    lopt_model_free(other);
}

static void test_horizon(void)
{
    lopt_model *m = make_model(5, "h5.lopt");
    lopt_info info;
    lopt_model_info(m, &info);
    CHECK(info.horizon == 5 && info.file_version == 2 && strcmp(info.form, "mlp") == 0 &&
              info.nweights == 610 && info.nmom == 5 && strcmp(info.estimator, "none") == 0,
          "lopt_model_info: horizon %lld version %d form %s weights %zu", (long long)info.horizon,
          info.file_version, info.form, info.nweights);
    lopt_opt *c = lopt_opt_new(m, sizes, NT), *u = lopt_opt_new(m, sizes, NT);
    CHECK(lopt_opt_t_max(c) == 5 && lopt_opt_horizon(c) == 5, "the clamp defaults to the horizon");
    lopt_opt_set_t_max(u, 0);
    /* reference: the update with t' = min(t, 5), by hand */
    lopt_arch a;
    float *theta;
    char path[512];
    tmp_path(path, sizeof path, "h5.lopt");
    lopt_file_read(path, &a, &theta, NULL, NULL);
    lopt_tensor T[NT];
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        T[i] = (lopt_tensor){"", off, sizes[i], 0};
        off += sizes[i];
    }
    lopt_mlp_work wk;
    lopt_mlp_work_init(&wk, &a, N, NT);
    float mom[5 * N] = {0}, delta[N], wref[N], wc[N], wu[N], g[N];
    lopt_rng_fill_normal(wref, N, 1.0f, 11, LOPT_STREAM_TEST, 0);
    memcpy(wc, wref, sizeof wc);
    memcpy(wu, wref, sizeof wu);
    int ok = 1, diverged_after = 1, equal_before = 1;
    for (int s = 0; s < 12; s++) {
        grads_at(s, g);
        lopt_mlp_update(&wk, theta, T, NT, wref, g, mom, s < 5 ? s : 5, delta);
        for (int i = 0; i < N; i++) wref[i] += delta[i];
        lopt_opt_step(c, wc, g);
        lopt_opt_step(u, wu, g);
        ok &= same(wc, wref, N);
        if (s <= 5) equal_before &= same(wc, wu, N);
        if (s == 11) diverged_after = !same(wc, wu, N);
    }
    CHECK(ok, "the clamp is not t' = min(t, t_max)");
    CHECK(equal_before && diverged_after, "clamp on/off: equal up to the horizon %d, differ "
          "after %d", equal_before, diverged_after);
    CHECK(lopt_opt_past_horizon(c) && lopt_opt_steps(c) == 12, "past_horizon");
    printf("ok   horizon 5 read from the file; t clamped at it by default, off on request\n");
    lopt_mlp_work_free(&wk);
    lopt_free(theta);
    lopt_opt_free(c);
    lopt_opt_free(u);
    lopt_model_free(m);
}

/* ---- a user's task: linear regression y = x . a + 0.1 noise, in-memory data ---- */

enum { LR_D = 5, LR_N = 512 };

typedef struct {
    float x[3][LR_N * LR_D], y[3][LR_N];
    int saw_targets, saw_whole;
} lr_data;

typedef struct {
    const lr_data *d;
    int hvp_calls;
} lr_ctx;

static void lr_init(void *ctx, uint64_t seed, float *w)
{
    (void)ctx;
    lopt_rng_fill_normal(w, LR_D + 1, 0.5f, seed, LOPT_STREAM_INIT, 0);
}

/* mean (x.w + b - y)^2 ; grad 2/B sum r x, 2/B sum r ; H = 2/B [x 1]^T [x 1] */
static double lr_loss_grad(void *ctx, const float *w, const lopt_batch_view *b, float *grad)
{
    lr_data *d = (lr_data *)((lr_ctx *)ctx)->d;
    if (b->targets && !b->labels) d->saw_targets = 1;
    if (b->size == 0) d->saw_whole = 1;
    if (grad) memset(grad, 0, (LR_D + 1) * sizeof(float));
    double loss = 0;
    for (int i = 0; i < b->size; i++) {
        const float *x = b->x + i * LR_D;
        double r = w[LR_D] - b->targets[i];
        for (int k = 0; k < LR_D; k++) r += (double)w[k] * x[k];
        loss += r * r / b->size;
        if (grad) {
            for (int k = 0; k < LR_D; k++) grad[k] += (float)(2 * r * x[k] / b->size);
            grad[LR_D] += (float)(2 * r / b->size);
        }
    }
    return loss;
}

static double lr_hvp(void *ctx, const float *w, const lopt_batch_view *b, const float *v,
                     float *hv, float *grad)
{
    ((lr_ctx *)ctx)->hvp_calls++;
    memset(hv, 0, (LR_D + 1) * sizeof(float));
    for (int i = 0; i < b->size; i++) {
        const float *x = b->x + i * LR_D;
        double xv = v[LR_D];
        for (int k = 0; k < LR_D; k++) xv += (double)x[k] * v[k];
        for (int k = 0; k < LR_D; k++) hv[k] += (float)(2 * xv * x[k] / b->size);
        hv[LR_D] += (float)(2 * xv / b->size);
    }
    return lr_loss_grad(ctx, w, b, grad);
}

static void lr_free(void *ctx) { free(ctx); }

static const lopt_tensor_spec lr_tensors[] = {{"a", LR_D, LR_D}, {"b", 1, 0}};

static int lr_spec(const lr_data *d, lopt_task_spec *s, int with_hvp)
{
    lr_ctx *c = calloc(1, sizeof *c);
    c->d = d;
    s->nparams = LR_D + 1;
    s->ntensors = 2;
    s->tensors = lr_tensors;
    s->batch_size = 32;
    s->input = LR_D;
    s->ntargets = 1;
    for (int k = 0; k < 3; k++) s->data[k] = (lopt_split_data){LR_N, d->x[k], NULL, d->y[k]};
    s->ctx = c;
    s->init = lr_init;
    s->loss_grad = lr_loss_grad;
    s->hvp = with_hvp ? lr_hvp : NULL;
    s->free_ctx = lr_free;
    return 0;
}

static int lr_factory(void *user, lopt_task_spec *s, char *errbuf, size_t errlen)
{
    (void)errbuf, (void)errlen;
    return lr_spec(user, s, 1);
}

static int lr_factory_nohvp(void *user, lopt_task_spec *s, char *errbuf, size_t errlen)
{
    (void)errbuf, (void)errlen;
    return lr_spec(user, s, 0);
}

static int bad_factory(void *user, lopt_task_spec *s, char *errbuf, size_t errlen)
{
    (void)errbuf, (void)errlen;
    lr_spec(user, s, 1);
    s->nparams = 7;   /* tensors sum to 6 */
    return 0;
}

static int failing_factory(void *user, lopt_task_spec *s, char *errbuf, size_t errlen)
{
    (void)user, (void)s;
    snprintf(errbuf, errlen, "no data file here");
    return -1;
}

static int count_steps(void *user, int64_t step, double loss)
{
    (void)step;
    int *n = user;
    (*n)++;
    return !isfinite(loss);
}

static void test_tasks(void)
{
    static lr_data d;
    const float a[LR_D] = {1.0f, -2.0f, 0.5f, 0.0f, 3.0f};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < LR_N; i++) {
            double y = 0.3;
            for (int j = 0; j < LR_D; j++) {
                float x = (float)lopt_rng_normal(k, LOPT_STREAM_TEST, (uint64_t)(i * LR_D + j));
                d.x[k][i * LR_D + j] = x;
                y += a[j] * x;
            }
            d.y[k][i] = (float)(y + 0.1 * lopt_rng_normal(k + 10, LOPT_STREAM_TEST, (uint64_t)i));
        }
    char msg[512] = "";
    CHECK(lopt_task_register("linreg", "linear regression", lr_factory, &d, msg, sizeof msg) == 0,
          "register: %s", msg);
    CHECK(lopt_task_register("linreg", NULL, lr_factory, &d, msg, sizeof msg) != 0 &&
              strstr(msg, "already"), "a duplicate name accepted");
    CHECK(lopt_task_register("fmnist-cnn", NULL, lr_factory, &d, msg, sizeof msg) != 0,
          "a built-in's name accepted");
    CHECK(lopt_task_register("a b", NULL, lr_factory, &d, msg, sizeof msg) != 0, "'a b' accepted");
    lopt_task_register("linreg-nohvp", NULL, lr_factory_nohvp, &d, NULL, 0);
    lopt_task_register("linreg-bad", NULL, bad_factory, &d, NULL, 0);
    lopt_task_register("linreg-fails", NULL, failing_factory, &d, NULL, 0);
    CHECK(lopt_task_check("linreg", msg, sizeof msg) == 0, "check linreg: %s", msg);
    CHECK(lopt_task_check("linreg-bad", msg, sizeof msg) != 0 && strstr(msg, "sum to 6"),
          "a bad spec accepted (%s)", msg);
    CHECK(lopt_task_check("linreg-fails", msg, sizeof msg) != 0 && strstr(msg, "no data file"),
          "a failing factory's reason lost (%s)", msg);
    CHECK(lopt_task_check("nope", msg, sizeof msg) != 0 && strstr(msg, "unknown task"),
          "an unknown task accepted");
    printf("ok   registry: names, duplicates, bad specs and factory failures (%s)\n", msg);

    /* hand-designed training of the user's task through lopt_train */
    lopt_train_settings ts = {.task = "linreg", .opt = "adam", .lr = 0.05f, .steps = 300,
                              .seed = 1};
    lopt_train_report rep;
    CHECK(lopt_train(&ts, &rep, msg, sizeof msg) == 0, "lopt_train adam: %s", msg);
    CHECK(rep.final_valid_loss < 0.05 && rep.final_valid_loss < 0.1 * rep.init_valid_loss,
          "adam on linreg: valid %g -> %g", rep.init_valid_loss, rep.final_valid_loss);
    CHECK(isnan(rep.test_acc) && isfinite(rep.test_loss), "regression: accuracy NaN, test loss");
    CHECK(d.saw_targets && !d.saw_whole, "batches carry targets (%d), never size 0 (%d)",
          d.saw_targets, d.saw_whole);
    printf("ok   lopt_train(adam) on a registered regression task: valid %.4f -> %.4f\n",
           rep.init_valid_loss, rep.final_valid_loss);

    /* meta-training: rp and merged need the hvp */
    int steps = 0;
    lopt_meta_settings ms = {.task = "linreg-nohvp", .estimator = "rp", .K = 5, .samples = 2,
                             .outer_steps = 3, .horizon = 40, .threads = 1, .on_step = count_steps,
                             .user = &steps};
    lopt_model *m = lopt_meta_train(&ms, msg, sizeof msg);
    CHECK(!m && strstr(msg, "Hessian-vector product") && strstr(msg, "es, pes"),
          "rp on a task without hvp: %s", msg);
    ms.estimator = "merged";
    m = lopt_meta_train(&ms, msg, sizeof msg);
    CHECK(!m && strstr(msg, "Hessian-vector product"), "merged on a task without hvp: %s", msg);
    printf("ok   rp and merged refuse a task without an hvp: %s\n", msg);
    ms.estimator = "es";
    m = lopt_meta_train(&ms, msg, sizeof msg);
    CHECK(m && steps == 3, "es on a task without hvp: %s (%d steps)", msg, steps);
    lopt_model_free(m);
    ms.task = "linreg";
    ms.estimator = "merged";
    steps = 0;
    m = lopt_meta_train(&ms, msg, sizeof msg);
    CHECK(m && steps == 3, "merged on linreg: %s", msg);
    if (m) {
        lopt_info info;
        lopt_model_info(m, &info);
        CHECK(info.horizon == 40 && info.outer_steps == 3 && strcmp(info.task, "linreg") == 0 &&
                  strcmp(info.estimator, "merged") == 0 && strcmp(info.outer_loss, "valid") == 0,
              "meta-trained model's info: horizon %lld task %s", (long long)info.horizon, info.task);
        char path[512];
        tmp_path(path, sizeof path, "linreg.lopt");
        CHECK(lopt_model_save(m, path, msg, sizeof msg) == 0, "save: %s", msg);
        lopt_model *back = lopt_model_load(path, msg, sizeof msg);
        lopt_info bi;
        if (back) lopt_model_info(back, &bi);
        CHECK(back && bi.horizon == 40, "saved model's horizon");
        lopt_model_free(back);
        ts.model = m;
        ts.opt = NULL;
        ts.steps = 60;
        CHECK(lopt_train(&ts, &rep, msg, sizeof msg) == 0 && isfinite(rep.final_valid_loss),
              "lopt_train with the meta-trained model: %s", msg);
        lopt_model_free(m);
    }
    printf("ok   lopt_meta_train(merged) on the registered task, model saved with its horizon\n");
    lopt_meta_settings bad = {.task = "linreg", .estimator = "sgd"};
    CHECK(!lopt_meta_train(&bad, msg, sizeof msg) && strstr(msg, "unknown estimator"),
          "an unknown estimator accepted");
    CHECK(lopt_task_unregister("linreg") == 0 && lopt_task_unregister("linreg") != 0 &&
              lopt_task_unregister("quadratic") != 0, "unregister");
    CHECK(lopt_task_check("linreg", msg, sizeof msg) != 0, "an unregistered task still found");
    lopt_task_unregister("linreg-nohvp");
    lopt_task_unregister("linreg-bad");
    lopt_task_unregister("linreg-fails");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lopt_test_api.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    lopt_model *m = make_model(0, "plain.lopt");
    if (m) {
        test_flat_vs_library(m);
        test_groups_pointers_frozen(m);
        test_scale_decay(m);
        test_refusals(m);
        test_state(m);
        lopt_model_free(m);
    }
    test_horizon();
    test_tasks();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_api");
}
