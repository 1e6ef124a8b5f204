/* clip.c - global-norm gradient clipping (torch.nn.utils.clip_grad_norm_, MODELS.md 8.2). */
#include "nn_internal.h"
#include "fastmath.h"

#include <math.h>

/* Sum of squares of one gradient buffer, accumulated in double in 32 independent lanes:
 * four vector add chains, so the pass runs at memory speed instead of waiting on one
 * chain's FMA latency (8 lanes ran at half the speed); the lane order is fixed, so the
 * sum is deterministic. */
#define SUMSQ_FN(T, SUF)                                                                    \
    SG_HOT static double sumsq_##SUF(const T *restrict g, int64_t n)                        \
    {                                                                                       \
        double acc[32] = {0}, s = 0;                                                        \
        int64_t i = 0;                                                                      \
        for (; i + 32 <= n; i += 32)                                                        \
            for (int u = 0; u < 32; u++)                                                    \
                acc[u] += (double)g[i + u] * (double)g[i + u];                              \
        for (; i < n; i++)                                                                  \
            acc[0] += (double)g[i] * (double)g[i];                                          \
        for (int u = 0; u < 32; u++)                                                        \
            s += acc[u];                                                                    \
        return s;                                                                           \
    }
SUMSQ_FN(float, f32)
SUMSQ_FN(double, f64)
#undef SUMSQ_FN

static double sumsq(const sg_tensor *t)
{
    int64_t n = sg_tensor_numel(t);
    return t->dtype == SG_F32 ? sumsq_f32(t->grad, n) : sumsq_f64(t->grad, n);
}

double sg_grad_norm(const sg_params *p)
{
    if (!p)
        return 0;
    double s = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of < 0 && e->value->grad) /* a tied parameter counts once */
            s += sumsq(e->value);
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
