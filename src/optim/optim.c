/* optim.c - the hand-designed optimizers with torch.optim's semantics (PyTorch 1.13,
 * the single-tensor code path of torch/optim/{sgd,rmsprop,adam}.py):
 *
 *   SGD (sgd, momentum, nesterov)    d = g + wd w
 *                                    b = d at the first step, else mu b + (1-damp) d
 *                                    d = d + mu b (nesterov) or b (heavy ball)
 *                                    w -= lr d
 *   RMSprop (non-centered)           d = g + wd w;  v = alpha v + (1-alpha) d²
 *                                    a = sqrt(v) + eps   (eps after the sqrt)
 *                                    b = mu b + d / a, w -= lr b   (mu > 0; b starts at 0)
 *                                    w -= lr d / a                 (mu = 0)
 *   Adam                             d = g + wd w;  m = b1 m + (1-b1) d
 *                                    v = b2 v + (1-b2) d²
 *                                    w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
 *                                    bc1 = 1 - b1^t, bc2 = 1 - b2^t, t from 1
 *
 * Weight decay is torch's coupled one (added to the gradient), skipped when 0 as torch
 * does. Scalar coefficients (bias corrections, step size) are computed in double and
 * rounded to float, like torch's Python scalars; the element-wise products keep
 * torch's association order (addcmul: (c a) b, addcdiv: (c a) / b), so results agree
 * with torch to float32 rounding. Left out: centered RMSprop, AMSGrad, AdamW,
 * maximize, and torch's foreach/fused paths (same math, other rounding).
 *
 * The learning rate at step t is hp.lr * lopt_schedule_factor(&hp.sched, t) (optim.h
 * for the mapping to torch.optim.lr_scheduler), computed in double like torch's
 * group["lr"]; under the default constant schedule the factor is exactly 1.
 *
 * Each optimizer's state is one flat allocation made at creation; step never
 * allocates.
 */
#include "optim.h"
#include "optim/adam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPTIM_X86 1
#endif

const char *const lopt_optimizer_names[] = {"sgd", "momentum", "nesterov", "rmsprop", "adam",
                                        NULL};

/* ---- learning-rate schedules ------------------------------------------------------ */

static const char *const schedule_names[] = {"const", "cosine", "linear"};

const char *lopt_schedule_name(lopt_schedule_kind kind)
{
    LOPT_ASSERT(kind >= LOPT_SCHED_CONST && kind <= LOPT_SCHED_LINEAR);
    return schedule_names[kind];
}

lopt_status lopt_schedule_parse(const char *name, lopt_schedule_kind *kind, lopt_err *err)
{
    for (int k = LOPT_SCHED_CONST; k <= LOPT_SCHED_LINEAR; k++)
        if (name && strcmp(name, schedule_names[k]) == 0) {
            *kind = (lopt_schedule_kind)k;
            return LOPT_OK;
        }
    return lopt_fail(err, LOPT_EUSAGE, "unknown schedule '%s' (const, cosine, linear)",
                     name ? name : "");
}

int64_t lopt_schedule_default_warmup(lopt_schedule_kind kind, int64_t steps)
{
    return kind == LOPT_SCHED_CONST ? 0 : steps / 20;
}

lopt_status lopt_schedule_check(const lopt_schedule *s, lopt_err *err)
{
    if (!(s->kind >= LOPT_SCHED_CONST && s->kind <= LOPT_SCHED_LINEAR))
        return lopt_fail(err, LOPT_EUSAGE, "unknown schedule kind %d", (int)s->kind);
    if (s->warmup < 0)
        return lopt_fail(err, LOPT_EUSAGE, "warm-up must be non-negative (got %lld)",
                         (long long)s->warmup);
    int needs_steps = s->kind != LOPT_SCHED_CONST || s->warmup > 0;
    if (needs_steps && s->steps <= 0)
        return lopt_fail(err, LOPT_EUSAGE, "a %s schedule%s needs the run's total steps",
                         schedule_names[s->kind], s->warmup > 0 ? " with warm-up" : "");
    if (needs_steps && !(s->steps > s->warmup))
        return lopt_fail(err, LOPT_EUSAGE,
                         "warm-up (%lld steps) must be shorter than the run (%lld steps)",
                         (long long)s->warmup, (long long)s->steps);
    return LOPT_OK;
}

double lopt_schedule_factor(const lopt_schedule *s, int64_t t)
{
    int64_t e = t > 1 ? t - 1 : 0;   /* torch's last_epoch */
    if (e < s->warmup) return (double)(e + 1) / (double)(s->warmup + 1);
    if (s->kind == LOPT_SCHED_CONST) return 1.0;
    double ep = (double)(e - s->warmup), T = (double)(s->steps - s->warmup);
    if (!(ep < T)) return 0.0;
    if (s->kind == LOPT_SCHED_COSINE) return (1.0 + cos(3.14159265358979323846 * ep / T)) / 2.0;
    return 1.0 - ep / T;
}

/* ---- the optimizers ----------------------------------------------------------------- */

typedef struct {
    lopt_hparams hp;
    int64_t t;      /* steps taken (torch's state["step"]) */
    float *m;       /* (n) sgd, rmsprop: momentum buffer; adam: first moment */
    float *v;       /* (n) rmsprop: square average; adam: 2nd moment; sgd: unused (NULL) */
} optim_ctx;

/* the learning rate of the step being taken (c->t already counts it) */
static double step_lr(const optim_ctx *c)
{
    return (double)c->hp.lr * lopt_schedule_factor(&c->hp.sched, c->t);
}

/* ---- SGD, heavy-ball and Nesterov momentum ------------------------------------- */

static void sgd_step(lopt_optimizer *o, float *w, const float *g)
{
    optim_ctx *c = o->ctx;
    const size_t n = o->n;
    const float wd = c->hp.weight_decay, mu = c->hp.momentum;
    const float keep = (float)(1.0 - (double)c->hp.dampening);   /* 1 - dampening */
    const int first = c->t == 0;
    float *b = c->m;   /* (n) momentum buffer */
    c->t++;
    const float lr = (float)step_lr(c);
    if (mu == 0.0f) {
        for (size_t i = 0; i < n; i++) {
            float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
            w[i] = w[i] + (-lr) * d;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        b[i] = first ? d : mu * b[i] + keep * d;   /* torch clones d at the first step */
        d = c->hp.nesterov ? d + mu * b[i] : b[i];
        w[i] = w[i] + (-lr) * d;
    }
}

/* ---- RMSprop ---------------------------------------------------------------------- */

#ifdef OPTIM_X86
/* rmsprop_step's loop on 16 lanes, the same operations in the same order, so the same
 * bits (sqrtf's errno path kept the scalar loop from vectorising, as in adam.c) */
__attribute__((target("avx512f"))) static void rmsprop_avx512(
    float *w, float *b, float *v, const float *g, size_t n, float wd, float mu, float alpha,
    float one_m_alpha, float eps, float lr)
{
    const __m512 vwd = _mm512_set1_ps(wd), vmu = _mm512_set1_ps(mu);
    const __m512 va = _mm512_set1_ps(alpha), vc = _mm512_set1_ps(one_m_alpha);
    const __m512 ve = _mm512_set1_ps(eps), nlr = _mm512_set1_ps(-lr);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        const __m512 wi = _mm512_maskz_loadu_ps(k, w + i);
        __m512 d = _mm512_maskz_loadu_ps(k, g + i);
        if (wd != 0.0f) d = _mm512_add_ps(d, _mm512_mul_ps(vwd, wi));
        const __m512 vi = _mm512_add_ps(_mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, v + i)),
                                        _mm512_mul_ps(_mm512_mul_ps(vc, d), d));
        _mm512_mask_storeu_ps(v + i, k, vi);
        const __m512 a = _mm512_add_ps(_mm512_sqrt_ps(vi), ve);
        if (mu > 0.0f) {
            const __m512 bi = _mm512_add_ps(_mm512_mul_ps(vmu, _mm512_maskz_loadu_ps(k, b + i)),
                                            _mm512_div_ps(d, a));
            _mm512_mask_storeu_ps(b + i, k, bi);
            _mm512_mask_storeu_ps(w + i, k, _mm512_add_ps(wi, _mm512_mul_ps(nlr, bi)));
        } else {
            _mm512_mask_storeu_ps(w + i, k,
                                  _mm512_add_ps(wi, _mm512_div_ps(_mm512_mul_ps(nlr, d), a)));
        }
    }
}
#endif

static void rmsprop_step(lopt_optimizer *o, float *w, const float *g)
{
    optim_ctx *c = o->ctx;
    const size_t n = o->n;
    const float wd = c->hp.weight_decay, mu = c->hp.momentum;
    const float alpha = c->hp.alpha, eps = c->hp.eps;
    const float one_m_alpha = (float)(1.0 - (double)alpha);
    float *b = c->m;   /* (n) momentum buffer, zero at the start */
    float *v = c->v;   /* (n) square average */
    c->t++;
    const float lr = (float)step_lr(c);
#ifdef OPTIM_X86
    if (nn_isa_active() == NN_ISA_AVX512) {
        rmsprop_avx512(w, b, v, g, n, wd, mu, alpha, one_m_alpha, eps, lr);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        v[i] = alpha * v[i] + (one_m_alpha * d) * d;
        float a = sqrtf(v[i]) + eps;
        if (mu > 0.0f) {
            b[i] = mu * b[i] + d / a;
            w[i] = w[i] + (-lr) * b[i];
        } else {
            w[i] = w[i] + ((-lr) * d) / a;
        }
    }
}

/* ---- Adam ------------------------------------------------------------------------- */

static void adam_step(lopt_optimizer *o, float *w, const float *g)
{
    optim_ctx *c = o->ctx;
    c->t++;
    const lopt_adam_bias a = lopt_adam_bias_at(c->hp.beta1, c->hp.beta2, c->t);
    lopt_adam_f32(w, c->m, c->v, g, o->n, &a, step_lr(c), c->hp.eps, c->hp.weight_decay);
}

/* ---- the common interface --------------------------------------------------------- */

static void optim_reset(lopt_optimizer *o)
{
    optim_ctx *c = o->ctx;
    c->t = 0;
    if (c->m) memset(c->m, 0, o->n * sizeof *c->m);
    if (c->v) memset(c->v, 0, o->n * sizeof *c->v);
}

static void optim_free(lopt_optimizer *o)
{
    if (!o || !o->ctx) return;
    optim_ctx *c = o->ctx;
    lopt_free(c->m);   /* v lives in the same allocation */
    free(c);
    o->ctx = NULL;
}

lopt_status lopt_hparams_default(lopt_hparams *hp, const char *name, lopt_err *err)
{
    memset(hp, 0, sizeof *hp);
    if (!name) return lopt_fail(err, LOPT_EUSAGE, "no optimizer name given");
    if (strcmp(name, "sgd") == 0) {
        hp->lr = 0.01f;
    } else if (strcmp(name, "momentum") == 0 || strcmp(name, "nesterov") == 0) {
        hp->lr = 0.01f;
        hp->momentum = 0.9f;
        hp->nesterov = name[0] == 'n';
    } else if (strcmp(name, "rmsprop") == 0) {
        hp->lr = 0.01f;
        hp->alpha = 0.99f;
        hp->eps = 1e-8f;
    } else if (strcmp(name, "adam") == 0) {
        hp->lr = 1e-3f;
        hp->beta1 = 0.9f;
        hp->beta2 = 0.999f;
        hp->eps = 1e-8f;
    } else {
        return lopt_fail(err, LOPT_EUSAGE,
                         "unknown optimizer '%s' (sgd, momentum, nesterov, rmsprop, adam)",
                         name);
    }
    return LOPT_OK;
}

/* The range checks torch's constructors make, with their wording. isfinite rejects
 * NaN, which every `x < 0` comparison would let through. */
static lopt_status check_hparams(const char *name, const lopt_hparams *hp, lopt_err *err)
{
    if (!(hp->lr >= 0.0f) || !isfinite(hp->lr))
        return lopt_fail(err, LOPT_EUSAGE, "%s: invalid learning rate %g", name, hp->lr);
    if (!(hp->weight_decay >= 0.0f) || !isfinite(hp->weight_decay))
        return lopt_fail(err, LOPT_EUSAGE, "%s: invalid weight_decay %g", name,
                         hp->weight_decay);
    if (!(hp->momentum >= 0.0f) || !isfinite(hp->momentum))
        return lopt_fail(err, LOPT_EUSAGE, "%s: invalid momentum %g", name, hp->momentum);
    if (strcmp(name, "rmsprop") == 0) {
        if (!(hp->alpha >= 0.0f) || !isfinite(hp->alpha))
            return lopt_fail(err, LOPT_EUSAGE, "rmsprop: invalid alpha %g", hp->alpha);
        if (!(hp->eps >= 0.0f) || !isfinite(hp->eps))
            return lopt_fail(err, LOPT_EUSAGE, "rmsprop: invalid eps %g", hp->eps);
    } else if (strcmp(name, "adam") == 0) {
        if (!(hp->beta1 >= 0.0f && hp->beta1 < 1.0f))
            return lopt_fail(err, LOPT_EUSAGE, "adam: invalid beta1 %g, want [0, 1)",
                             hp->beta1);
        if (!(hp->beta2 >= 0.0f && hp->beta2 < 1.0f))
            return lopt_fail(err, LOPT_EUSAGE, "adam: invalid beta2 %g, want [0, 1)",
                             hp->beta2);
        if (!(hp->eps >= 0.0f) || !isfinite(hp->eps))
            return lopt_fail(err, LOPT_EUSAGE, "adam: invalid eps %g", hp->eps);
    } else {
        if (!isfinite(hp->dampening))
            return lopt_fail(err, LOPT_EUSAGE, "%s: invalid dampening %g", name,
                             hp->dampening);
        if (hp->nesterov && (hp->momentum <= 0.0f || hp->dampening != 0.0f))
            return lopt_fail(err, LOPT_EUSAGE,
                             "%s: Nesterov momentum requires a momentum and zero dampening",
                             name);
        if (strcmp(name, "sgd") != 0 && hp->momentum <= 0.0f)
            return lopt_fail(err, LOPT_EUSAGE, "%s: needs momentum > 0", name);
    }
    return LOPT_OK;
}

/* sgd, momentum and nesterov are all torch.optim.SGD driven by hp; the name picks the
 * defaults (lopt_hparams_default), and "nesterov" also forces Nesterov's variant.
 * hp NULL means the name's defaults. */
lopt_status lopt_optimizer_create(lopt_optimizer *o, const char *name,
                              const lopt_hparams *hp, size_t n, lopt_err *err)
{
    memset(o, 0, sizeof *o);
    lopt_hparams h;
    lopt_status st = lopt_hparams_default(&h, name, err);
    if (st != LOPT_OK) return st;
    if (hp) h = *hp;
    int kind = 0;   /* 0 sgd family, 1 rmsprop, 2 adam */
    if (strcmp(name, "nesterov") == 0) h.nesterov = 1;
    if (strcmp(name, "rmsprop") == 0) kind = 1;
    if (strcmp(name, "adam") == 0) kind = 2;
    st = check_hparams(name, &h, err);
    if (st == LOPT_OK) st = lopt_schedule_check(&h.sched, err);
    if (st != LOPT_OK) return st;

    optim_ctx *c = lopt_xcalloc(1, sizeof *c);
    c->hp = h;
    /* sgd without momentum needs no state; the others one or two (n) vectors */
    size_t vecs = kind == 0 ? (h.momentum != 0.0f ? 1 : 0) : 2;
    if (vecs) {
        c->m = lopt_floats(vecs * n);
        if (vecs == 2) c->v = c->m + n;
    }
    for (int i = 0; lopt_optimizer_names[i]; i++)   /* static storage, outlives the caller's */
        if (strcmp(name, lopt_optimizer_names[i]) == 0) o->name = lopt_optimizer_names[i];
    o->n = n;
    o->ctx = c;
    o->step = kind == 0 ? sgd_step : kind == 1 ? rmsprop_step : adam_step;
    o->reset = optim_reset;
    o->free = optim_free;
    return LOPT_OK;
}
