/*
 * layernorm.c - LayerNorm over the last dim as one node (torch.nn.LayerNorm):
 *   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps), var biased (divide by d).
 * Row statistics are accumulated in double and saved for the backward.
 */
#include "attn_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    double *mean, *rstd; /* [rows] */
    double eps;
    int64_t rows, d;
} ln_saved;

#define LN_KERNELS(T, SUF)                                                                   \
    static void ln_fwd_##SUF(ln_saved *s, const T *x, const T *w, const T *b, T *y)    \
    {                                                                                        \
        int64_t d = s->d;                                                                    \
        for (int64_t r = 0; r < s->rows; r++) {                                              \
            const T *xr = x + r * d;                                                         \
            T *yr = y + r * d;                                                               \
            double m = 0, v = 0;                                                             \
            for (int64_t i = 0; i < d; i++)                                                  \
                m += xr[i];                                                                  \
            m /= (double)d;                                                                  \
            for (int64_t i = 0; i < d; i++)                                                  \
                v += ((double)xr[i] - m) * ((double)xr[i] - m);                              \
            v /= (double)d;                                                                  \
            double rs = 1.0 / sqrt(v + s->eps);                                              \
            s->mean[r] = m;                                                                  \
            s->rstd[r] = rs;                                                                 \
            for (int64_t i = 0; i < d; i++) {                                                \
                T xh = (T)(((double)xr[i] - m) * rs);                                        \
                yr[i] = xh * (w ? w[i] : (T)1) + (b ? b[i] : (T)0);                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* g = dy w;  dx = rstd (g - mean(g) - xhat mean(g xhat));  dw += dy xhat;  db += dy */   \
    static void ln_bwd_##SUF(const ln_saved *s, const T *x, const T *w, const T *dy, T *dx,  \
                             T *dw, T *db)                                                   \
    {                                                                                        \
        int64_t d = s->d;                                                                    \
        for (int64_t r = 0; r < s->rows; r++) {                                              \
            const T *xr = x + r * d, *dyr = dy + r * d;                                      \
            double m = s->mean[r], rs = s->rstd[r], sg = 0, sgx = 0;                         \
            for (int64_t i = 0; i < d; i++) {                                                \
                double xh = ((double)xr[i] - m) * rs, gi = (double)dyr[i] * (w ? w[i] : 1);  \
                sg += gi;                                                                    \
                sgx += gi * xh;                                                              \
                if (dw)                                                                      \
                    dw[i] += (T)(dyr[i] * xh);                                               \
                if (db)                                                                      \
                    db[i] += dyr[i];                                                         \
            }                                                                                \
            if (!dx)                                                                         \
                continue;                                                                    \
            sg /= (double)d;                                                                 \
            sgx /= (double)d;                                                                \
            for (int64_t i = 0; i < d; i++) {                                                \
                double xh = ((double)xr[i] - m) * rs, gi = (double)dyr[i] * (w ? w[i] : 1);  \
                dx[r * d + i] += (T)(rs * (gi - sg - xh * sgx));                             \
            }                                                                                \
        }                                                                                    \
    }

LN_KERNELS(float, f32)
LN_KERNELS(double, f64)

static void ln_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out[0];
    const ln_saved *s = n->saved;
    void *dx = sg_grad_of(g, x), *dw = w ? sg_grad_of(g, w) : NULL;
    void *db = b ? sg_grad_of(g, b) : NULL;
    if (y->dtype == SG_F32)
        ln_bwd_f32(s, x->data, w ? w->data : NULL, y->grad, dx, dw, db);
    else
        ln_bwd_f64(s, x->data, w ? w->data : NULL, y->grad, dx, dw, db);
}

sg_tensor *sg_layer_norm(sg_graph *g, sg_tensor *x, sg_tensor *weight, sg_tensor *bias, double eps)
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
    sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
    if (!s || !y)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    s->rows = rows;
    s->d = d;
    s->mean = sg_arena_alloc(ar, sizeof(double) * (size_t)(rows ? rows : 1));
    s->rstd = sg_arena_alloc(ar, sizeof(double) * (size_t)(rows ? rows : 1));
    if (!s->mean || !s->rstd)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    s->eps = eps;
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
