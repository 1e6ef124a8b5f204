/* clip.c - global-norm gradient clipping (torch.nn.utils.clip_grad_norm_, MODELS.md 8.2). */
#include "nn_internal.h"

#include <math.h>

/* Sum of squares of one gradient buffer, accumulated in double in 8 independent lanes
 * (vectorisable, no serial add chain); the lane order is fixed, so it is deterministic. */
#define SUMSQ(T)                                                                            \
    do {                                                                                    \
        const T *g = t->grad;                                                               \
        double acc[8] = {0};                                                                \
        int64_t i = 0;                                                                      \
        for (; i + 8 <= n; i += 8)                                                          \
            for (int u = 0; u < 8; u++)                                                     \
                acc[u] += (double)g[i + u] * (double)g[i + u];                              \
        for (; i < n; i++)                                                                  \
            acc[0] += (double)g[i] * (double)g[i];                                          \
        for (int u = 0; u < 8; u++)                                                         \
            s += acc[u];                                                                    \
    } while (0)

static double sumsq(const sg_tensor *t)
{
    int64_t n = sg_tensor_numel(t);
    double s = 0;
    if (t->dtype == SG_F32)
        SUMSQ(float);
    else
        SUMSQ(double);
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
            s += sumsq(e->value);
    }
    return sqrt(s);
}

int sg_clip_grad_norm(sg_params *p, double max_norm, double *total_norm)
{
    if (!p)
        return sg__error(SG_EINVAL, "sg_clip_grad_norm: store is NULL");
    if (!(max_norm > 0))
        return sg__error(SG_EINVAL, "sg_clip_grad_norm: max_norm must be > 0, got %g", max_norm);
    double N = sg_grad_norm(p);
    if (total_norm)
        *total_norm = N;
    if (!isfinite(N))
        return sg__error(SG_ENUMERIC, "sg_clip_grad_norm: the gradient norm is %g; gradients "
                                      "left unchanged", N);
    double coef = max_norm / (N + 1e-6);
    if (coef >= 1)
        return SG_OK;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0 || !e->value->grad)
            continue;
        int64_t n = sg_tensor_numel(e->value);
        if (e->value->dtype == SG_F32) {
            float *g = e->value->grad, c = (float)coef; /* torch multiplies by an f32 coef */
            for (int64_t j = 0; j < n; j++)
                g[j] *= c;
        } else {
            double *g = e->value->grad;
            for (int64_t j = 0; j < n; j++)
                g[j] *= coef;
        }
    }
    return SG_OK;
}
