/*
 * optim.c - SGD, Adam and AdamW with PyTorch 1.13 single-tensor semantics (MODELS.md
 * 8.2). Each update is a handful of contiguous loops per parameter; scalar factors are
 * rounded to the parameter dtype first, as torch does with Python-float arguments.
 */
#include "nn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sg_optim {
    sg_params *params;
    int n;                 /* store entries at creation */
    sg_optim_config cfg;
    int64_t step;          /* completed updates */
    sg_tensor **m, **v;    /* [n] per entry; NULL for aliases / unused state */
};

static const char *const kind_names[] = {
    [SG_OPTIM_SGD] = "sgd",
    [SG_OPTIM_ADAM] = "adam",
    [SG_OPTIM_ADAMW] = "adamw",
};
_Static_assert(sizeof kind_names / sizeof *kind_names == SG_OPTIM_KIND_COUNT,
               "one name per optimiser");

const char *sg_optim_kind_name(sg_optim_kind kind)
{
    return (unsigned)kind < SG_OPTIM_KIND_COUNT ? kind_names[kind] : "?";
}

int sg_optim_kind_parse(const char *name, sg_optim_kind *kind)
{
    for (int k = 0; name && k < SG_OPTIM_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            if (kind)
                *kind = (sg_optim_kind)k;
            return SG_OK;
        }
    return sg__error(SG_EINVAL, "sg_optim_kind_parse: unknown optimiser '%s'",
                     name ? name : "(null)");
}

sg_optim_config sg_optim_config_default(sg_optim_kind kind)
{
    sg_optim_config c = {.kind = kind, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    if (kind == SG_OPTIM_ADAMW)
        c.weight_decay = 1e-2;
    else if (kind == SG_OPTIM_SGD)
        c.lr = 1e-2;
    return c;
}

/* v is in [lo, hi) (hi_open) or [lo, hi]; false for NaN. */
static bool in_range(double v, double lo, double hi, bool hi_open)
{
    return v >= lo && (hi_open ? v < hi : v <= hi);
}

int sg_optim_config_check(const sg_optim_config *c)
{
    static const char *f = "sg_optim_config_check";
    if (!c)
        return sg__error(SG_EINVAL, "%s: config is NULL", f);
    if ((unsigned)c->kind >= SG_OPTIM_KIND_COUNT)
        return sg__error(SG_EINVAL, "%s: unknown optimiser kind %d", f, (int)c->kind);
    const char *k = kind_names[c->kind];
    if (!in_range(c->lr, 0, INFINITY, true))
        return sg__error(SG_EINVAL, "%s: %s lr must be finite and >= 0, got %g", f, k, c->lr);
    if (!in_range(c->weight_decay, 0, INFINITY, true))
        return sg__error(SG_EINVAL, "%s: %s weight_decay must be >= 0, got %g", f, k,
                         c->weight_decay);
    if (!in_range(c->clip_norm, 0, INFINITY, true))
        return sg__error(SG_EINVAL, "%s: clip_norm must be >= 0 (0 = off), got %g", f,
                         c->clip_norm);
    if (!in_range(c->label_smoothing, 0, 1, false))
        return sg__error(SG_EINVAL, "%s: label_smoothing must be in [0, 1], got %g", f,
                         c->label_smoothing);
    if (c->kind == SG_OPTIM_SGD) {
        if (!in_range(c->momentum, 0, INFINITY, true))
            return sg__error(SG_EINVAL, "%s: sgd momentum must be >= 0, got %g", f, c->momentum);
        if (!in_range(c->dampening, 0, 1, false))
            return sg__error(SG_EINVAL, "%s: sgd dampening must be in [0, 1], got %g", f,
                             c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return sg__error(SG_EINVAL, "%s: nesterov needs momentum > 0 and dampening 0 (got "
                                        "momentum %g, dampening %g)", f, c->momentum,
                             c->dampening);
    } else {
        if (!in_range(c->beta1, 0, 1, true) || !in_range(c->beta2, 0, 1, true))
            return sg__error(SG_EINVAL, "%s: %s betas must be in [0, 1), got (%g, %g)", f, k,
                             c->beta1, c->beta2);
        if (!in_range(c->eps, 0, INFINITY, true))
            return sg__error(SG_EINVAL, "%s: %s eps must be >= 0, got %g", f, k, c->eps);
    }
    return sg_lr_schedule_check(&c->schedule);
}

void sg_optim_free(sg_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        sg_tensor_free(o->m[i]);
        sg_tensor_free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o);
}

sg_optim *sg_optim_new(sg_params *p, const sg_optim_config *c)
{
    if (!p || !c) {
        sg__error(SG_EINVAL, "sg_optim_new: %s is NULL", p ? "config" : "parameter store");
        return NULL;
    }
    if (sg_optim_config_check(c) != SG_OK)
        return NULL;
    sg_optim *o = calloc(1, sizeof *o);
    int n = sg_params_count(p);
    if (o) {
        o->params = p;
        o->n = n;
        o->cfg = *c;
        o->m = calloc((size_t)(n ? n : 1), sizeof *o->m);
        o->v = calloc((size_t)(n ? n : 1), sizeof *o->v);
    }
    if (!o || !o->m || !o->v)
        goto oom;
    bool adam = c->kind != SG_OPTIM_SGD, mom = adam || c->momentum > 0;
    for (int i = 0; i < n; i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        const sg_tensor *t = e->value;
        if (mom && !(o->m[i] = sg_tensor_new(t->dtype, t->ndim, t->shape)))
            goto oom;
        if (adam && !(o->v[i] = sg_tensor_new(t->dtype, t->ndim, t->shape)))
            goto oom;
    }
    return o;
oom:
    sg_optim_free(o);
    sg__error(SG_ENOMEM, "sg_optim_new: out of memory for the state of %d parameters", n);
    return NULL;
}

/* ---- per-parameter kernels (contiguous, restrict: the compiler vectorises them) ---- */

/* sqrt of v >= 0 never sets errno; without this GCC keeps a scalar errno branch in the
 * Adam loop and cannot vectorise it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-math-errno")
#endif

#define ADAM_SPAN 16384

/* Large parameters are split over threads (SG_FOR): elementwise, so results do not
 * depend on it. */
static int elem_threads(int64_t n)
{
    return n >= (1 << 18) ? sg__threads() : 1;
}

/* elements of the zeros a sparse gradient's update reads in place of its untouched pages */
#define ZERO_ELEMS 1024

/* The first of the spans sp[0, ns) (increasing) that ends after element i, or ns. */
static int64_t first_span_ending_after(const sg__span *sp, int64_t ns, int64_t i)
{
    int64_t lo = 0, hi = ns;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sp[mid].end <= i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* What the Adam pass does with each gradient element after reading it: leave it, store
 * it clipped (g *= coef, as torch's clip_grad_norm_ leaves it), or zero it for the next
 * step (sg_optim_step_zero_grad: the zeroing rides on the update's pass over memory). */
enum grad_after { GRAD_KEEP, GRAD_STORE_CLIPPED, GRAD_ZERO };

#define OPTIM_KERNELS(T, SUF, SQRT)                                                          \
    /* torch _single_tensor_adam(w): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g g;          \
     * theta -= step_size m / (sqrt(v) / bc2_sqrt + eps)                                  \
     * decay: coupled g += wd theta (Adam) or theta *= 1 - lr wd first (AdamW).           \
     * g is first multiplied by the clipping coefficient gs in T, as torch's g.mul_(coef) \
     * does (x 1 is exact). Inlined with a constant `after`, one loop per mode. */         \
    static inline __attribute__((always_inline)) void adam_loop_##SUF(                      \
        int64_t n, T *restrict th, T *restrict g, T *restrict m, T *restrict v, T gs, T b1, \
        T b2, T eps, T wd, T decoupled, T step_size, T bc2_sqrt, const enum grad_after after) \
    {                                                                                       \
        const T c1 = (T)1 - b1, c2 = (T)1 - b2;                                             \
        for (int64_t i = 0; i < n; i++) {                                                   \
            T gc = g[i] * gs;                                                               \
            if (after == GRAD_STORE_CLIPPED)                                                \
                g[i] = gc;                                                                  \
            else if (after == GRAD_ZERO)                                                    \
                g[i] = 0;                                                                   \
            T p = th[i] * decoupled;                                                        \
            T gi = gc + wd * p;                                                             \
            T mi = m[i] * b1 + c1 * gi;                                                     \
            T vi = v[i] * b2 + c2 * gi * gi;                                                \
            m[i] = mi;                                                                      \
            v[i] = vi;                                                                      \
            th[i] = p - step_size * (mi / (SQRT(vi) / bc2_sqrt + eps));                     \
        }                                                                                   \
    }                                                                                       \
    SG_HOT static void adam_span_##SUF(int64_t n, T *restrict th, T *restrict g,             \
                                       T *restrict m, T *restrict v, T gs, T b1, T b2, T eps, \
                                       T wd, T decoupled, T step_size, T bc2_sqrt,            \
                                       enum grad_after after)                                 \
    {                                                                                       \
        if (after == GRAD_ZERO)                                                             \
            adam_loop_##SUF(n, th, g, m, v, gs, b1, b2, eps, wd, decoupled, step_size,       \
                            bc2_sqrt, GRAD_ZERO);                                           \
        else if (after == GRAD_STORE_CLIPPED)                                               \
            adam_loop_##SUF(n, th, g, m, v, gs, b1, b2, eps, wd, decoupled, step_size,       \
                            bc2_sqrt, GRAD_STORE_CLIPPED);                                  \
        else                                                                                \
            adam_loop_##SUF(n, th, g, m, v, gs, b1, b2, eps, wd, decoupled, step_size,       \
                            bc2_sqrt, GRAD_KEEP);                                           \
    }                                                                                       \
    /* spans of ADAM_SPAN elements split across threads; each runs the vector clone */      \
    static void adam_##SUF(int64_t n, T *restrict th, T *restrict g, T *restrict m,         \
                           T *restrict v, T b1, T b2, T eps, T wd, T decoupled, T step_size, \
                           T bc2_sqrt, double gs, enum grad_after after)                    \
    {                                                                                       \
        int64_t spans = (n + ADAM_SPAN - 1) / ADAM_SPAN;                                    \
        int nt = elem_threads(n);                                                           \
        SG_FOR(nt, s, spans, {                                                              \
            int64_t i = s * ADAM_SPAN, k = n - i < ADAM_SPAN ? n - i : ADAM_SPAN;           \
            adam_span_##SUF(k, th + i, g + i, m + i, v + i, (T)gs, b1, b2, eps, wd,          \
                            decoupled, step_size, bc2_sqrt, after);                         \
        });                                                                                 \
    }                                                                                       \
    /* adam_##SUF over a sparse gradient of which only spans[0, ns) may be non-zero       \
     * (sg__nonzero_spans), read and not written (GRAD_KEEP): the elements outside them   \
     * are updated with g read from a buffer of zeros, not from g's pages that were given  \
     * back (each read would fault in the zero page). The same values as adam_##SUF. */    \
    static void adam_sparse_##SUF(int64_t n, T *restrict th, T *restrict g, T *restrict m,  \
                                  T *restrict v, T b1, T b2, T eps, T wd, T decoupled,       \
                                  T step_size, T bc2_sqrt, double gs, const sg__span *sp,    \
                                  int64_t ns)                                               \
    {                                                                                       \
        static const T zeros[ZERO_ELEMS];                                                   \
        int64_t chunks = (n + ADAM_SPAN - 1) / ADAM_SPAN;                                   \
        int nt = elem_threads(n);                                                           \
        SG_FOR(nt, c, chunks, {                                                             \
            int64_t i = c * ADAM_SPAN, end = n - i < ADAM_SPAN ? n : i + ADAM_SPAN;         \
            int64_t k = first_span_ending_after(sp, ns, i);                                 \
            while (i < end) {                                                               \
                bool data = k < ns && sp[k].begin <= i;                                     \
                int64_t j = data ? sp[k].end : k < ns ? sp[k].begin : end;                  \
                j = j < end ? j : end;                                                      \
                if (!data && j - i > ZERO_ELEMS)                                            \
                    j = i + ZERO_ELEMS;                                                     \
                T *gi = data ? g + i : (T *)zeros; /* GRAD_KEEP: never written */           \
                adam_span_##SUF(j - i, th + i, gi, m + i, v + i, (T)gs, b1, b2, eps, wd,    \
                                decoupled, step_size, bc2_sqrt, GRAD_KEEP);                 \
                if (data && j == sp[k].end)                                                 \
                    k++;                                                                    \
                i = j;                                                                      \
            }                                                                               \
        });                                                                                 \
    }                                                                                       \
    /* torch _single_tensor_sgd: d = g + wd theta; buf = first ? d : mu buf + (1-damp) d; \
     * d = nesterov ? d + mu buf : buf; theta -= lr d. buf == NULL: no momentum. */         \
    static void sgd_##SUF(int64_t n, T *restrict th, const T *restrict g, T *restrict buf,  \
                          T lr, T wd, T mu, T damp1, bool first, bool nesterov)              \
    {                                                                                       \
        int nt = elem_threads(n);                                                           \
        if (!buf) {                                                                         \
            SG_FOR(nt, i, n, { th[i] -= lr * (g[i] + wd * th[i]); });                       \
            return;                                                                         \
        }                                                                                   \
        SG_FOR(nt, i, n, {                                                                  \
            T d = g[i] + wd * th[i];                                                        \
            T b = first ? d : buf[i] * mu + damp1 * d;                                      \
            buf[i] = b;                                                                     \
            th[i] -= lr * (nesterov ? d + mu * b : b);                                      \
        });                                                                                 \
    }

OPTIM_KERNELS(float, f32, sqrtf)
OPTIM_KERNELS(double, f64, sqrt)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* One update; zero: every gradient is zero afterwards (Adam zeroes each span as it
 * reads it; SGD, rarely the hot path, zeroes a parameter after its update). */
static int step(sg_optim *o, double *total_norm, bool zero, const char *who)
{
    if (total_norm)
        *total_norm = 0;
    if (!o)
        return sg__error(SG_EINVAL, "%s: optimiser is NULL", who);
    if (sg_params_count(o->params) != o->n)
        return sg__error(SG_ESTATE, "%s: the store has %d entries, the optimiser was made "
                                    "for %d", who, sg_params_count(o->params), o->n);
    const sg_optim_config *c = &o->cfg;
    double coef = 1; /* the clipping coefficient (torch clip_grad_norm_), applied below */
    if (c->clip_norm > 0) {
        int rc = sg__clip_coef(o->params, c->clip_norm, total_norm, &coef, who);
        if (rc != SG_OK)
            return rc; /* NaN/Inf norm: nothing updated (documented in the header) */
    }
    int64_t k = o->step + 1;
    double lr = sg_lr_schedule_at(&c->schedule, c->lr, k);
    /* Adam scalars as torch computes them in Python floats */
    double bc1 = 1 - pow(c->beta1, (double)k), bc2 = 1 - pow(c->beta2, (double)k);
    double step_size = lr / bc1, bc2_sqrt = sqrt(bc2);
    bool adamw = c->kind == SG_OPTIM_ADAMW;
    double wd = adamw ? 0 : c->weight_decay, decoupled = adamw ? 1 - lr * c->weight_decay : 1;
    for (int i = 0; i < o->n; i++) {
        const sg_param *e = sg_params_at(o->params, i);
        sg_tensor *t = e->value;
        if (e->alias_of >= 0 || !t->grad)
            continue;
        int64_t n = sg_tensor_numel(t), ns;
        sg__span *spans = NULL;
        /* a sparse gradient is read but not written by the update, then given back
         * (sg__param_zero_grad): writing its zeros would touch every page */
        bool zero_after = zero && e->sparse_grad;
        enum grad_after after = zero_after  ? GRAD_KEEP
                                : zero      ? GRAD_ZERO
                                : coef != 1 ? GRAD_STORE_CLIPPED
                                            : GRAD_KEEP;
        if (c->kind == SG_OPTIM_SGD) {
            if (coef != 1)
                sg__scale_grad(t->dtype, t->grad, n, coef);
            if (t->dtype == SG_F32)
                sgd_f32(n, t->data, t->grad, o->m[i] ? o->m[i]->data : NULL, (float)lr,
                        (float)wd, (float)c->momentum, (float)(1 - c->dampening), k == 1,
                        c->nesterov);
            else
                sgd_f64(n, t->data, t->grad, o->m[i] ? o->m[i]->data : NULL, lr, wd,
                        c->momentum, 1 - c->dampening, k == 1, c->nesterov);
        } else if (after == GRAD_KEEP && e->sparse_grad &&
                   (ns = sg__nonzero_spans(t->grad, n, sg_dtype_size(t->dtype), &spans)) >= 0) {
            if (t->dtype == SG_F32)
                adam_sparse_f32(n, t->data, t->grad, o->m[i]->data, o->v[i]->data,
                                (float)c->beta1, (float)c->beta2, (float)c->eps, (float)wd,
                                (float)decoupled, (float)step_size, (float)bc2_sqrt, coef,
                                spans, ns);
            else
                adam_sparse_f64(n, t->data, t->grad, o->m[i]->data, o->v[i]->data, c->beta1,
                                c->beta2, c->eps, wd, decoupled, step_size, bc2_sqrt, coef,
                                spans, ns);
            free(spans);
        } else if (t->dtype == SG_F32) {
            adam_f32(n, t->data, t->grad, o->m[i]->data, o->v[i]->data, (float)c->beta1,
                     (float)c->beta2, (float)c->eps, (float)wd, (float)decoupled,
                     (float)step_size, (float)bc2_sqrt, coef, after);
        } else {
            adam_f64(n, t->data, t->grad, o->m[i]->data, o->v[i]->data, c->beta1, c->beta2,
                     c->eps, wd, decoupled, step_size, bc2_sqrt, coef, after);
        }
        if (zero && (zero_after || c->kind == SG_OPTIM_SGD))
            sg__param_zero_grad(e);
    }
    o->step = k;
    return SG_OK;
}

int sg_optim_step(sg_optim *o, double *total_norm)
{
    return step(o, total_norm, false, "sg_optim_step");
}

int sg_optim_step_zero_grad(sg_optim *o, double *total_norm)
{
    int rc = step(o, total_norm, true, "sg_optim_step_zero_grad");
    if (rc != SG_OK && o) /* skipped or refused: the gradients are zeroed all the same */
        sg_params_zero_grad(o->params);
    return rc;
}

double sg_optim_current_lr(const sg_optim *o)
{
    return o ? sg_lr_schedule_at(&o->cfg.schedule, o->cfg.lr, o->step + 1) : 0;
}

const sg_optim_config *sg_optim_get_config(const sg_optim *o) { return o ? &o->cfg : NULL; }

int sg_optim_set_config(sg_optim *o, const sg_optim_config *c)
{
    if (!o || !c)
        return sg__error(SG_EINVAL, "sg_optim_set_config: %s is NULL", o ? "config" : "optimiser");
    if (c->kind != o->cfg.kind)
        return sg__error(SG_EINVAL, "sg_optim_set_config: cannot change a %s optimiser into %s",
                         kind_names[o->cfg.kind], sg_optim_kind_name(c->kind));
    if (c->kind == SG_OPTIM_SGD && (c->momentum > 0) != (o->cfg.momentum > 0))
        return sg__error(SG_EINVAL, "sg_optim_set_config: cannot switch sgd momentum on or off "
                                    "(%g -> %g)", o->cfg.momentum, c->momentum);
    int rc = sg_optim_config_check(c);
    if (rc != SG_OK)
        return rc;
    o->cfg = *c;
    return SG_OK;
}

int64_t sg_optim_step_count(const sg_optim *o) { return o ? o->step : 0; }

int sg_optim_set_step_count(sg_optim *o, int64_t k)
{
    if (!o || k < 0)
        return sg__error(SG_EINVAL, "sg_optim_set_step_count: %s", o ? "negative step count"
                                                                    : "optimiser is NULL");
    o->step = k;
    return SG_OK;
}

sg_params *sg_optim_params(const sg_optim *o) { return o ? o->params : NULL; }

sg_tensor *sg_optim_exp_avg(const sg_optim *o, int i)
{
    return o && i >= 0 && i < o->n ? o->m[i] : NULL;
}

sg_tensor *sg_optim_exp_avg_sq(const sg_optim *o, int i)
{
    return o && i >= 0 && i < o->n ? o->v[i] : NULL;
}
