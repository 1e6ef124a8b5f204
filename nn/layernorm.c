/*
 * layernorm.c - LayerNorm over the last dim as one node (torch.nn.LayerNorm):
 *   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps), var biased (divide by d).
 * Row statistics are accumulated in double (in lanes, so the loops vectorise) and saved
 * for the backward.
 */
#include "attn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

typedef struct {
    double *mean, *rstd; /* [rows] */
    double eps;
    int64_t rows, d;
    bool over; /* y was written over x: backward remakes xhat = (y - b) / w */
} ln_saved;

/* Row sums in double over LN_LANES independent lanes, so that the loops vectorise (a
 * single double accumulator is a serial chain); the lane order is fixed. */
#define LN_LANES 16

/* xhat of element k in ln_bwd_row */
#define LN_XHAT(k) (from_y ? ((double)v[k] - (double)b[k]) / (double)w[k] : ((double)v[k] - m) * rs)

#define LN_KERNELS(T, SUF, HOT)                                                              \
    /* sum_i (x_i - c)^k for k = 1 (c = 0) or 2, in double */                                \
    HOT static double ln_sum_##SUF(const T *restrict x, int64_t d, double c, bool sq)       \
    {                                                                                        \
        double acc[LN_LANES] = {0}, s = 0;                                                   \
        int64_t i = 0;                                                                       \
        if (sq)                                                                              \
            for (; i + LN_LANES <= d; i += LN_LANES)                                         \
                for (int u = 0; u < LN_LANES; u++)                                           \
                    acc[u] += ((double)x[i + u] - c) * ((double)x[i + u] - c);               \
        else                                                                                 \
            for (; i + LN_LANES <= d; i += LN_LANES)                                         \
                for (int u = 0; u < LN_LANES; u++)                                           \
                    acc[u] += (double)x[i + u];                                              \
        for (; i < d; i++)                                                                   \
            acc[0] += sq ? ((double)x[i] - c) * ((double)x[i] - c) : (double)x[i];           \
        for (int u = 0; u < LN_LANES; u++)                                                   \
            s += acc[u];                                                                     \
        return s;                                                                            \
    }                                                                                        \
    HOT static void ln_fwd_row_##SUF(int64_t d, const T *restrict x, const T *restrict w,   \
                                     const T *restrict b, double m, double rs,               \
                                     T *restrict y)                                          \
    {                                                                                        \
        if (w && b)                                                                          \
            for (int64_t i = 0; i < d; i++)                                                  \
                y[i] = (T)(((double)x[i] - m) * rs) * w[i] + b[i];                           \
        else                                                                                 \
            for (int64_t i = 0; i < d; i++) {                                                \
                T xh = (T)(((double)x[i] - m) * rs);                                         \
                y[i] = xh * (w ? w[i] : (T)1) + (b ? b[i] : (T)0);                           \
            }                                                                                \
    }                                                                                        \
    /* The row written over its input: xy holds x, then y (each element read, then     \
     * written); w and b are given. */                                                      \
    HOT static void ln_fwd_row_over_##SUF(int64_t d, T *xy, const T *restrict w,            \
                                          const T *restrict b, double m, double rs)          \
    {                                                                                        \
        for (int64_t i = 0; i < d; i++)                                                      \
            xy[i] = (T)(((double)xy[i] - m) * rs) * w[i] + b[i];                             \
    }                                                                                        \
    static void ln_fwd_##SUF(ln_saved *s, const T *x, const T *w, const T *b, T *y)          \
    {                                                                                        \
        int64_t d = s->d;                                                                    \
        for (int64_t r = 0; r < s->rows; r++) {                                              \
            const T *xr = x + r * d;                                                         \
            double m = ln_sum_##SUF(xr, d, 0, false) / (double)d;                            \
            double v = ln_sum_##SUF(xr, d, m, true) / (double)d;                             \
            double rs = 1.0 / sqrt(v + s->eps);                                              \
            s->mean[r] = m;                                                                  \
            s->rstd[r] = rs;                                                                 \
            if (s->over) /* y is x */                                                        \
                ln_fwd_row_over_##SUF(d, y + r * d, w, b, m, rs);                            \
            else                                                                             \
                ln_fwd_row_##SUF(d, xr, w, b, m, rs, y + r * d);                             \
        }                                                                                    \
    }                                                                                        \
    /* One row: g = dy w;  dx += rstd (g - mean(g) - xhat mean(g xhat));  dw += dy xhat;      \
     * db += dy (dw, db, dx may be NULL). xhat from the input v = x, (x - mean) rstd, or     \
     * when from_y from the output v = y, (y - b) / w (w and b given, no w_i 0) */           \
    HOT static void ln_bwd_row_##SUF(int64_t d, const T *restrict v, const T *restrict w,   \
                                     const T *restrict b, bool from_y, const T *restrict dy, \
                                     double m, double rs, T *restrict dx, T *restrict dw,    \
                                     T *restrict db)                                         \
    {                                                                                        \
        double a1[LN_LANES] = {0}, a2[LN_LANES] = {0}, sg = 0, sgx = 0;                      \
        int64_t i = 0;                                                                       \
        for (; i + LN_LANES <= d; i += LN_LANES)                                             \
            for (int u = 0; u < LN_LANES; u++) {                                             \
                double xh = LN_XHAT(i + u);                                                  \
                double gi = (double)dy[i + u] * (w ? (double)w[i + u] : 1.0);                \
                a1[u] += gi;                                                                 \
                a2[u] += gi * xh;                                                            \
            }                                                                                \
        for (; i < d; i++) {                                                                 \
            double xh = LN_XHAT(i), gi = (double)dy[i] * (w ? (double)w[i] : 1.0);           \
            a1[0] += gi;                                                                     \
            a2[0] += gi * xh;                                                                \
        }                                                                                    \
        for (int u = 0; u < LN_LANES; u++) {                                                 \
            sg += a1[u];                                                                     \
            sgx += a2[u];                                                                    \
        }                                                                                    \
        if (dw)                                                                              \
            for (int64_t j = 0; j < d; j++)                                                  \
                dw[j] += (T)(dy[j] * LN_XHAT(j));                                            \
        if (db)                                                                              \
            for (int64_t j = 0; j < d; j++)                                                  \
                db[j] += dy[j];                                                              \
        if (!dx)                                                                             \
            return;                                                                          \
        sg /= (double)d;                                                                     \
        sgx /= (double)d;                                                                    \
        for (int64_t j = 0; j < d; j++) {                                                    \
            double xh = LN_XHAT(j);                                                          \
            double gi = (double)dy[j] * (w ? (double)w[j] : 1.0);                            \
            dx[j] += (T)(rs * (gi - sg - xh * sgx));                                         \
        }                                                                                    \
    }                                                                                        \
    /* xy: x, or y when s->over (then w and b are given) */                                 \
    static void ln_bwd_##SUF(const ln_saved *s, const T *xy, const T *w, const T *b,        \
                             const T *dy, T *dx, T *dw, T *db)                               \
    {                                                                                        \
        int64_t d = s->d;                                                                    \
        for (int64_t r = 0; r < s->rows; r++)                                                \
            ln_bwd_row_##SUF(d, xy + r * d, w, b, s->over, dy + r * d, s->mean[r], s->rstd[r], \
                             dx ? dx + r * d : NULL, dw, db);                                \
    }

LN_KERNELS(float, f32, SG_HOT)
LN_KERNELS(double, f64, )
#undef LN_XHAT

static void ln_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out[0];
    const ln_saved *s = n->saved;
    void *dx = sg_grad_of(g, x), *dw = w ? sg_grad_of(g, w) : NULL;
    void *db = b ? sg_grad_of(g, b) : NULL;
    const void *xy = s->over ? y->data : x->data, *wd = w ? w->data : NULL,
               *bd = b ? b->data : NULL;
    if (y->dtype == SG_F32)
        ln_bwd_f32(s, xy, wd, bd, y->grad, dx, dw, db);
    else
        ln_bwd_f64(s, xy, wd, bd, y->grad, dx, dw, db);
}

/* No weight element is 0 (xhat can then be made again from the output). */
static bool no_zero(const sg_tensor *w, int64_t d)
{
    for (int64_t i = 0; i < d; i++)
        if (w->dtype == SG_F32 ? ((const float *)w->data)[i] == 0
                               : ((const double *)w->data)[i] == 0)
            return false;
    return true;
}

static sg_tensor *layer_norm(sg_graph *g, sg_tensor *x, sg_tensor *weight, sg_tensor *bias,
                             double eps, bool may_overwrite)
{
    const char *op = "sg_layer_norm";
    SG_NEED(g, x);
    if (!sg__check_float(g, op, x) || (weight && !sg__check_same_float(g, op, x, weight)) ||
        (bias && !sg__check_same_float(g, op, x, bias)))
        return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1)
        return sg_graph_fail(g, SG_ESHAPE, "%s: input %s has no feature dim", op, SG_SHAPE(x));
    int64_t d = x->shape[x->ndim - 1];
    if ((weight && (weight->ndim != 1 || weight->shape[0] != d)) ||
        (bias && (bias->ndim != 1 || bias->shape[0] != d)))
        return sg_graph_fail(g, SG_ESHAPE, "%s: weight %s / bias %s must be [%lld] for input %s",
                             op, weight ? SG_SHAPE(weight) : "-", bias ? SG_SHAPE(bias) : "-",
                             (long long)d, SG_SHAPE(x));
    if (!(eps >= 0))
        return sg_graph_fail(g, SG_EINVAL, "%s: eps %g must be >= 0", op, eps);
    if (!sg_tensor_is_contiguous(x))
        x = sg_contiguous(g, x);
    if (weight && !sg_tensor_is_contiguous(weight))
        weight = sg_contiguous(g, weight);
    if (bias && !sg_tensor_is_contiguous(bias))
        bias = sg_contiguous(g, bias);
    SG_NEED(x);
    int64_t rows = sg_tensor_numel(x) / d;
    sg_arena *ar = sg_graph_arena(g);
    ln_saved *s = sg_arena_alloc(ar, sizeof *s);
    /* over x: a fresh residual sum the caller never reads again, with w and b, no w_i 0 */
    bool over = may_overwrite && weight && bias && sg__fresh_unread_sum(g, x) &&
                no_zero(weight, d);
    sg_tensor *y = sg__output_over(g, x, over);
    if (!s || !y)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    s->rows = rows;
    s->d = d;
    s->mean = sg_arena_alloc(ar, sizeof(double) * (size_t)(rows ? rows : 1));
    s->rstd = sg_arena_alloc(ar, sizeof(double) * (size_t)(rows ? rows : 1));
    if (!s->mean || !s->rstd)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    s->eps = eps;
    s->over = over;
    if (x->dtype == SG_F32)
        ln_fwd_f32(s, x->data, weight ? weight->data : NULL, bias ? bias->data : NULL, y->data);
    else
        ln_fwd_f64(s, x->data, weight ? weight->data : NULL, bias ? bias->data : NULL, y->data);
    sg_tensor *ins[3] = {x, weight, bias};
    sg_node *n = sg_record(g, op, ln_bwd, 3, ins, 1, &y);
    if (n)
        n->saved = s;
    return y;
}

sg_tensor *sg_layer_norm(sg_graph *g, sg_tensor *x, sg_tensor *weight, sg_tensor *bias, double eps)
{
    return layer_norm(g, x, weight, bias, eps, false);
}

sg_tensor *sg__layernorm_over(sg_graph *g, const sg_layernorm *m, sg_tensor *x)
{
    SG_NEED(g, m, x);
    return layer_norm(g, x, m->weight, m->bias, m->eps, true);
}

int sg_layernorm_init(sg_layernorm *m, sg_params *p, const char *prefix, int64_t d)
{
    if (!m || !p)
        return sg__error(SG_EINVAL, "sg_layernorm_init: module or store is NULL");
    if (d < 1)
        return sg__error(SG_EINVAL, "sg_layernorm_init: '%s' needs d >= 1, got %lld",
                         prefix ? prefix : "", (long long)d);
    memset(m, 0, sizeof *m);
    char name[SG_PARAM_NAME_MAX];
    if (sg_param_name(name, prefix, "weight") != SG_OK ||
        !(m->weight = sg_params_add(p, name, 1, (int64_t[]){d})))
        return SG_EINVAL;
    if (sg_param_name(name, prefix, "bias") != SG_OK ||
        !(m->bias = sg_params_add(p, name, 1, (int64_t[]){d})))
        return SG_EINVAL;
    sg_tensor_fill_(m->weight, 1.0);
    m->d = d;
    m->eps = 1e-5;
    return SG_OK;
}

sg_tensor *sg_layernorm_forward(sg_graph *g, const sg_layernorm *m, sg_tensor *x)
{
    SG_NEED(g, m, x);
    return sg_layer_norm(g, x, m->weight, m->bias, m->eps);
}
