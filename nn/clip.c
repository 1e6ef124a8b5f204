/* clip.c - global-norm gradient clipping (torch.nn.utils.clip_grad_norm_, MODELS.md 8.2). */
#include "nn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sum of squares of one gradient buffer, accumulated in double in 32 independent lanes:
 * four vector add chains, so the pass runs at memory speed instead of waiting on one
 * chain's FMA latency (8 lanes ran at half the speed); the lane order is fixed, so the
 * sum is deterministic. sumsq_range adds the squares of g[i0, i1) to the lanes of a pass
 * over all n elements (element i in lane i % 32, the last n % 32 in lane 0), so a pass
 * over the ranges that may be non-zero of a sparse gradient sums the same as a pass over
 * all of it (adding 0 leaves a lane as it is). */
#define SUMSQ_FN(T, SUF)                                                                    \
    SG_HOT static void sumsq_range_##SUF(const T *restrict g, int64_t n, int64_t i0,         \
                                         int64_t i1, double *restrict lanes)                 \
    {                                                                                       \
        double acc[32];                                                                     \
        memcpy(acc, lanes, sizeof acc);                                                     \
        int64_t n32 = n - n % 32, i = i0;                                                   \
        for (; i < i1 && i % 32 != 0 && i < n32; i++)                                       \
            acc[i % 32] += (double)g[i] * (double)g[i];                                     \
        for (; i + 32 <= i1 && i < n32; i += 32)                                            \
            for (int u = 0; u < 32; u++)                                                    \
                acc[u] += (double)g[i + u] * (double)g[i + u];                              \
        for (; i < i1; i++)                                                                 \
            acc[i < n32 ? i % 32 : 0] += (double)g[i] * (double)g[i];                       \
        memcpy(lanes, acc, sizeof acc);                                                     \
    }
SUMSQ_FN(float, f32)
SUMSQ_FN(double, f64)
#undef SUMSQ_FN

/* Sum of squares of a parameter's gradient: of all of it, or of a sparse one's pages
 * that may hold non-zero values (the rest reads as zeros: sg__nonzero_spans) */
static double sumsq(const sg_param *e)
{
    const sg_tensor *t = e->value;
    int64_t n = sg_tensor_numel(t);
    size_t es = sg_dtype_size(t->dtype);
    sg__span whole = {0, n}, *spans = NULL;
    int64_t ns = e->sparse_grad ? sg__nonzero_spans(t->grad, n, es, &spans) : -1;
    const sg__span *sp = ns >= 0 ? spans : &whole;
    ns = ns >= 0 ? ns : 1;
    double lanes[32] = {0}, s = 0;
    for (int64_t k = 0; k < ns; k++) {
        if (t->dtype == SG_F32)
            sumsq_range_f32(t->grad, n, sp[k].begin, sp[k].end, lanes);
        else
            sumsq_range_f64(t->grad, n, sp[k].begin, sp[k].end, lanes);
    }
    free(spans);
    for (int u = 0; u < 32; u++)
        s += lanes[u];
    return s;
}

double sg_grad_norm(const sg_params *p)
{
    if (!p)
        return 0;
    double s = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of < 0 && e->value->grad) /* a tied parameter counts once */
            s += sumsq(e);
    }
    return sqrt(s);
}

int sg__clip_coef(const sg_params *p, double max_norm, double *total_norm, double *coef,
                  const char *who)
{
    double N = sg_grad_norm(p);
    if (total_norm)
        *total_norm = N;
    if (!isfinite(N))
        return sg__error(SG_ENUMERIC, "%s: the gradient norm is %g; gradients left unchanged",
                         who, N);
    double c = max_norm / (N + 1e-6);
    *coef = c < 1 ? c : 1;
    return SG_OK;
}

SG_HOT static void scale_f32(float *restrict g, int64_t n, float c)
{
    for (int64_t j = 0; j < n; j++)
        g[j] *= c;
}

SG_HOT static void scale_f64(double *restrict g, int64_t n, double c)
{
    for (int64_t j = 0; j < n; j++)
        g[j] *= c;
}

void sg__scale_grad(sg_dtype dt, void *g, int64_t n, double coef)
{
    if (dt == SG_F32)
        scale_f32(g, n, (float)coef); /* torch multiplies by an f32 coef */
    else
        scale_f64(g, n, coef);
}

int sg_clip_grad_norm(sg_params *p, double max_norm, double *total_norm)
{
    if (!p)
        return sg__error(SG_EINVAL, "sg_clip_grad_norm: store is NULL");
    if (!(max_norm > 0))
        return sg__error(SG_EINVAL, "sg_clip_grad_norm: max_norm must be > 0, got %g", max_norm);
    double coef = 1;
    int rc = sg__clip_coef(p, max_norm, total_norm, &coef, "sg_clip_grad_norm");
    if (rc != SG_OK || coef == 1)
        return rc;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of < 0 && e->value->grad)
            sg__scale_grad(e->value->dtype, e->value->grad, sg_tensor_numel(e->value), coef);
    }
    return SG_OK;
}
