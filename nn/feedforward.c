/* feedforward.c - the transformer feed-forward block (MODELS.md 7.4) and GELU. */
#include "attn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sg_feedforward_init(sg_feedforward *m, sg_params *p, const char *prefix, int64_t d,
                        int64_t dff, sg_activation act, double dropout, sg_rng *rng)
{
    const char *op = "sg_feedforward_init";
    if (!m || !p)
        return sg__error(SG_EINVAL, "%s: module or store is NULL", op);
    if (d < 1 || dff < 1 || (int)act < 0 || act >= SG_ACT_COUNT || !(dropout >= 0 && dropout < 1))
        return sg__error(SG_EINVAL, "%s: '%s' has bad d %lld, dim_feedforward %lld, activation "
                                    "%d or dropout %g",
                         op, prefix ? prefix : "", (long long)d, (long long)dff, (int)act, dropout);
    memset(m, 0, sizeof *m);
    char name[SG_PARAM_NAME_MAX];
    int rc;
    if ((rc = sg_param_name(name, prefix, "linear1")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->linear1, p, name, d, dff, true, rng)) != SG_OK)
        return rc;
    if ((rc = sg_param_name(name, prefix, "linear2")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->linear2, p, name, dff, d, true, rng)) != SG_OK)
        return rc;
    m->act = act;
    m->dropout = dropout;
    return SG_OK;
}

/* ReLU then dropout as one node: y = max(h, 0) keep / (1 - p). Its backward needs only y:
 * y != 0 exactly where h > 0 and the unit was kept, and there dy/dh = 1 / (1 - p) (0
 * elsewhere), so neither the activation nor the mask is kept (unfused: two more [tokens x
 * F] tensors a layer). The values and the mask's draws are those of sg_relu + sg_dropout.
 * The kernels are CPU clones; the forward may write over its input (b == a), which ivdep
 * lets the compiler vectorise anyway (each element is read before it is written). */
#define RELU_DROP_KERNELS(T, SUF, ATTR)                                                      \
    ATTR static void relu_drop_fwd_##SUF(int64_t n, const T *a, T *b, const uint8_t *keep,    \
                                         T s)                                                \
    {                                                                                        \
        if (keep)                                                                            \
            _Pragma("GCC ivdep") for (int64_t i = 0; i < n; i++) b[i] =                      \
                keep[i] ? (a[i] > 0 ? a[i] : (T)0) * s : (T)0;                               \
        else /* no dropout: the ReLU alone */                                                \
            _Pragma("GCC ivdep") for (int64_t i = 0; i < n; i++) b[i] = a[i] > 0 ? a[i] : (T)0; \
    }                                                                                        \
    ATTR static void relu_drop_bwd_##SUF(int64_t n, const T *restrict y, const T *restrict dy, \
                                         T *restrict d, T s)                                 \
    {                                                                                        \
        for (int64_t i = 0; i < n; i++)                                                      \
            d[i] += y[i] != 0 ? dy[i] * s : (T)0;                                            \
    }
RELU_DROP_KERNELS(float, f32, SG_HOT)
RELU_DROP_KERNELS(double, f64, )
#undef RELU_DROP_KERNELS

static void relu_dropout_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *h = n->in[0], *y = n->out[0];
    void *dh = sg_grad_of(g, h);
    if (!dh)
        return;
    int64_t N = sg_tensor_numel(y), nr = (N + SG_RANGE - 1) / SG_RANGE;
    int nt = nr > 1 ? sg__threads() : 1;
    SG_OMP_FOR(nt)
    for (int64_t r = 0; r < nr; r++) {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        if (y->dtype == SG_F32)
            relu_drop_bwd_f32(m, (const float *)y->data + i0, (const float *)y->grad + i0,
                              (float *)dh + i0, (float)n->f[0]);
        else
            relu_drop_bwd_f64(m, (const double *)y->data + i0, (const double *)y->grad + i0,
                              (double *)dh + i0, n->f[0]);
    }
}

/* h is linear1's output. It is overwritten when nothing else can read it (made by the
 * node just recorded, an sg_linear, whose backward reads its inputs only), else y is
 * new. In training the mask is drawn whole (serially, as sg_dropout does) into a
 * temporary. */
static sg_tensor *relu_dropout(sg_graph *g, sg_tensor *h, double p, bool training, sg_rng *rng)
{
    const char *op = "sg_feedforward_forward";
    SG_NEED(h);
    bool drop;
    double s;
    if (!sg__dropout_args(g, op, p, training, rng, &drop, &s))
        return NULL;
    if (!sg_tensor_is_contiguous(h) && !(h = sg_contiguous(g, h)))
        return NULL;
    sg_tensor *y = sg__output_over(g, h, sg__fresh_linear_output(g, h));
    SG_NEED(y);
    int64_t N = sg_tensor_numel(h), nr = (N + SG_RANGE - 1) / SG_RANGE;
    uint8_t *keep = drop ? malloc((size_t)(N ? N : 1)) : NULL;
    if (drop && !keep)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory for a %lld-element mask", op,
                             (long long)N);
    if (drop)
        sg_rng_keep_mask(rng, keep, N, p);
    int nt = nr > 1 ? sg__threads() : 1;
    SG_OMP_FOR(nt)
    for (int64_t r = 0; r < nr; r++) {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        const uint8_t *k = keep ? keep + i0 : NULL;
        if (h->dtype == SG_F32)
            relu_drop_fwd_f32(m, (const float *)h->data + i0, (float *)y->data + i0, k, (float)s);
        else
            relu_drop_fwd_f64(m, (const double *)h->data + i0, (double *)y->data + i0, k, s);
    }
    free(keep);
    sg_node *n = sg_record(g, "sg_relu_dropout", relu_dropout_bwd, 1, &h, 1, &y);
    if (n)
        n->f[0] = s;
    return y;
}

sg_tensor *sg_feedforward_forward(sg_graph *g, const sg_feedforward *m, sg_tensor *x,
                                  bool training, sg_rng *rng)
{
    SG_NEED(g, m, x);
    sg_tensor *h = sg_linear_layer_forward(g, &m->linear1, x);
    if (m->act == SG_ACT_GELU)
        h = sg_dropout(g, sg_gelu(g, h), m->dropout, training, rng);
    else
        h = relu_dropout(g, h, m->dropout, training, rng);
    return sg_linear_layer_forward(g, &m->linear2, h);
}

/* y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2;  dy/dx = Phi(x) + x phi(x) */
static void gelu_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    int64_t N = sg_tensor_numel(x);
    const double k = 0.70710678118654752440, c = 0.39894228040143267794; /* 1/sqrt2, 1/sqrt(2pi) */
    for (int64_t i = 0; i < N; i++) {
        if (x->dtype == SG_F32) {
            double v = ((const float *)x->data)[i];
            double gr = 0.5 * (1 + erf(v * k)) + v * c * exp(-0.5 * v * v);
            ((float *)dx)[i] += (float)(((const float *)y->grad)[i] * gr);
        } else {
            double v = ((const double *)x->data)[i];
            double gr = 0.5 * (1 + erf(v * k)) + v * c * exp(-0.5 * v * v);
            ((double *)dx)[i] += ((const double *)y->grad)[i] * gr;
        }
    }
}

sg_tensor *sg_gelu(sg_graph *g, sg_tensor *x)
{
    SG_NEED(g, x);
    if (!sg__check_float(g, "sg_gelu", x))
        return NULL;
    if (!sg_tensor_is_contiguous(x) && !(x = sg_contiguous(g, x)))
        return NULL;
    sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
    if (!y)
        return NULL;
    int64_t N = sg_tensor_numel(x);
    const double k = 0.70710678118654752440;
    if (x->dtype == SG_F32) {
        const float *a = x->data;
        float *b = y->data;
        for (int64_t i = 0; i < N; i++)
            b[i] = 0.5f * a[i] * (1.0f + erff(a[i] * (float)k));
    } else {
        const double *a = x->data;
        double *b = y->data;
        for (int64_t i = 0; i < N; i++)
            b[i] = 0.5 * a[i] * (1.0 + erf(a[i] * k));
    }
    sg_record(g, "sg_gelu", gelu_bwd, 1, &x, 1, &y);
    return y;
}
