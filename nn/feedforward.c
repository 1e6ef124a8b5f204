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
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        if (y->dtype == SG_F32)
            relu_drop_bwd_f32(m, (const float *)y->data + i0, (const float *)y->grad + i0,
                              (float *)dh + i0, (float)n->f[0]);
        else
            relu_drop_bwd_f64(m, (const double *)y->data + i0, (const double *)y->grad + i0,
                              (double *)dh + i0, n->f[0]);
    });
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
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        const uint8_t *k = keep ? keep + i0 : NULL;
        if (h->dtype == SG_F32)
            relu_drop_fwd_f32(m, (const float *)h->data + i0, (float *)y->data + i0, k, (float)s);
        else
            relu_drop_fwd_f64(m, (const double *)h->data + i0, (double *)y->data + i0, k, s);
    });
    free(keep);
    sg_node *n = sg_record(g, "sg_relu_dropout", relu_dropout_bwd, 1, &h, 1, &y);
    if (n)
        n->f[0] = s;
    return y;
}

/* ---- the ReLU block of a graph that records: its hidden layer kept, or made again ----
 *
 * The hidden layer is [tokens x F], 4x the model width: ~38 MB of an enfr-transformer
 * forward at its longest batch (6 layers x 1,536 tokens x 1,024 x 4 bytes). This node
 * keeps its input x (the layer's input, kept anyway) and either the hidden layer itself
 * while the graph's budget allows (sg_graph_set_keep_budget), or only the rng states its
 * masks started from: backward then makes the hidden layer again, one chunk of rows at
 * a time in scratch, from the same products and masks, at the cost of one more x W1^T
 * product a layer. Either way the values are those of the unfused block (linear1, relu,
 * dropout, linear2). */

/* rows per chunk: a hidden chunk of at most 2 MiB (even, so that each chunk's mask starts
 * on a fresh draw of sg_rng_keep_mask, two entries a draw: the chunks' masks are then
 * those of one mask over the whole layer) */
#define FFN_CHUNK_BYTES ((size_t)2 << 20)

typedef struct {
    int64_t rows, chunk; /* x's rows, rows per chunk */
    double p, scale;     /* dropout probability; 1 / (1 - p) when it drops, else 1 */
    sg_rng *states;      /* [chunks] rng state before each chunk's mask; NULL: no dropout */
    void *hidden;        /* [rows, F] relu-dropout output kept for backward, or NULL */
} ffn_saved;

#define RELU_DROP_DH_KERNELS(T, SUF, ATTR)                                                   \
    /* dh := y != 0 ? dh s : 0 (the ReLU-dropout backward, in place over linear2's dx) */   \
    ATTR static void relu_drop_dh_##SUF(int64_t n, const T *restrict y, T *restrict dh, T s) \
    {                                                                                        \
        for (int64_t i = 0; i < n; i++)                                                      \
            dh[i] = y[i] != 0 ? dh[i] * s : (T)0;                                            \
    }
RELU_DROP_DH_KERNELS(float, f32, SG_HOT)
RELU_DROP_DH_KERNELS(double, f64, )
#undef RELU_DROP_DH_KERNELS

/* y[0..n) = relu(a) keep s (y may be a), or dh[0..n) := y != 0 ? dh s : 0 when bwd; in
 * ranges over the threads */
static void relu_drop_range(sg_dtype dt, int64_t N, void *y, const uint8_t *keep, double s,
                            void *dh)
{
    int64_t nr = (N + SG_RANGE - 1) / SG_RANGE;
    int nt = nr > 1 ? sg__threads() : 1;
    size_t es = sg_dtype_size(dt);
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        char *yr = (char *)y + (size_t)i0 * es;
        const uint8_t *k = keep ? keep + i0 : NULL;
        if (dh && dt == SG_F32)
            relu_drop_dh_f32(m, (const float *)yr, (float *)dh + i0, (float)s);
        else if (dh)
            relu_drop_dh_f64(m, (const double *)yr, (double *)dh + i0, s);
        else if (dt == SG_F32)
            relu_drop_fwd_f32(m, (const float *)yr, (float *)yr, k, (float)s);
        else
            relu_drop_fwd_f64(m, (const double *)yr, (double *)yr, k, s);
    });
}

/* h [n, F] = relu(x_rows W1^T + b1) keep s for the n rows at x_rows; the mask drawn from
 * *rng (advanced) into keep [n F] when it drops. W1 is read with strides, never a W^T
 * copy: backward must make the same hidden layer. */
static void ffn_hidden(const sg_tensor *W1, const sg_tensor *b1, const void *x_rows, int64_t n,
                       void *h, uint8_t *keep, sg_rng *rng, const ffn_saved *sv)
{
    sg_dtype dt = b1->dtype;
    int64_t d = W1->shape[1], F = W1->shape[0];
    sg__affine(dt, n, F, d, x_rows, d, W1->data, W1->stride[0], W1->stride[1], b1->data, h, F);
    if (sv->states)
        sg_rng_keep_mask(rng, keep, n * F, sv->p);
    relu_drop_range(dt, n * F, h, sv->states ? keep : NULL, sv->scale, NULL);
}

static void relu_ffn_bwd(sg_graph *g, sg_node *n)
{
    const char *op = "sg_feedforward backward";
    sg_tensor *x = n->in[0], *W1 = n->in[1], *b1 = n->in[2], *W2 = n->in[3], *b2 = n->in[4];
    sg_tensor *y = n->out[0];
    const ffn_saved *sv = n->saved;
    sg_dtype dt = y->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t d = W1->shape[1], F = W1->shape[0], R = sv->rows, C = sv->chunk;
    bool fresh = false;
    void *dx = sg__grad_for_write(g, x, &fresh), *dW1 = sg_grad_of(g, W1),
         *db1 = sg_grad_of(g, b1), *dW2 = sg_grad_of(g, W2), *db2 = sg_grad_of(g, b2);
    bool need_dh = dx || dW1 || db1;
    int64_t cr = R < C ? R : C;
    bool made = !sv->hidden; /* the hidden layer made again here */
    void *h = made ? sg__scratch_get(g, (size_t)(cr * F) * es, op) : NULL;
    void *dh = need_dh ? sg__scratch_get(g, (size_t)(cr * F) * es, op) : NULL;
    uint8_t *keep = made && sv->states ? sg__scratch_get(g, (size_t)(cr * F), op) : NULL;
    if ((made && !h) || (need_dh && !dh) || (made && sv->states && !keep))
        goto done;
    for (int64_t r0 = 0, c = 0; r0 < R; r0 += C, c++) {
        int64_t nr = R - r0 < C ? R - r0 : C;
        const char *xr = (const char *)x->data + (size_t)(r0 * d) * es;
        const char *dyr = (const char *)y->grad + (size_t)(r0 * d) * es;
        if (made) {
            sg_rng rng = sv->states ? sv->states[c] : (sg_rng){{0}};
            ffn_hidden(W1, b1, xr, nr, h, keep, &rng, sv);
        } else {
            h = (char *)sv->hidden + (size_t)(r0 * F) * es;
        }
        if (dW2) /* dW2 += dY^T H */
            sg__gemm(dt, d, F, nr, 1.0, dyr, 1, d, h, F, 1, 1.0, dW2, F, 1);
        if (db2)
            sg__add_colsum(dt, db2, dyr, nr, d, d);
        if (!need_dh)
            continue;
        /* dH = dY W2, through the ReLU and the mask */
        sg__gemm(dt, nr, F, d, 1.0, dyr, d, 1, W2->data, W2->stride[0], W2->stride[1], 0.0, dh,
                 F, 1);
        relu_drop_range(dt, nr * F, h, NULL, sv->scale, dh);
        if (dx) /* dX (+)= dH W1 */
            sg__gemm(dt, nr, d, F, 1.0, dh, F, 1, W1->data, W1->stride[0], W1->stride[1],
                     fresh ? 0.0 : 1.0, (char *)dx + (size_t)(r0 * d) * es, d, 1);
        if (dW1) /* dW1 += dH^T X */
            sg__gemm(dt, F, d, nr, 1.0, dh, 1, F, xr, d, 1, 1.0, dW1, d, 1);
        if (db1)
            sg__add_colsum(dt, db1, dh, nr, F, F);
    }
done:
    sg__scratch_put(g, keep);
    sg__scratch_put(g, dh);
    if (made)
        sg__scratch_put(g, h);
}

/* The ReLU block as one node (see above); NULL with the error recorded on g. */
static sg_tensor *relu_ffn(sg_graph *g, const sg_feedforward *m, sg_tensor *x, bool training,
                           sg_rng *rng)
{
    const char *op = "sg_feedforward_forward";
    sg_tensor *W1 = m->linear1.weight, *b1 = m->linear1.bias, *W2 = m->linear2.weight,
              *b2 = m->linear2.bias;
    int64_t d = m->linear1.in, F = m->linear1.out;
    bool drop;
    double s;
    if (!sg__check_same_float(g, op, x, W1) || !sg__dropout_args(g, op, m->dropout, training,
                                                                   rng, &drop, &s))
        return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != d)
        return sg_graph_fail(g, SG_ESHAPE, "%s: input %s does not end in the block's width %lld",
                             op, SG_SHAPE(x), (long long)d);
    if (!sg_tensor_is_contiguous(x) && !(x = sg_contiguous(g, x)))
        return NULL;
    sg_dtype dt = x->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t R = sg_tensor_numel(x) / d, C = (int64_t)(FFN_CHUNK_BYTES / ((size_t)F * es));
    C = C < 2 ? 2 : C & ~(int64_t)1;
    bool kept = sg__graph_keep(g, (size_t)(R * F) * es);
    if (kept) /* one chunk: the products over all rows at once */
        C = R > 0 ? R : 1;
    int64_t chunks = (R + C - 1) / C, cr = R < C ? R : C;
    sg_arena *a = sg_graph_arena(g);
    sg_tensor *y = sg_empty(g, dt, x->ndim, x->shape);
    ffn_saved *sv = sg_arena_alloc(a, sizeof *sv);
    if (!y || !sv)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    *sv = (ffn_saved){.rows = R, .chunk = C, .p = m->dropout, .scale = s};
    if (drop && !(sv->states = sg_arena_alloc(a, (size_t)(chunks ? chunks : 1) * sizeof(sg_rng))))
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    void *h = kept ? sg_arena_alloc(a, (size_t)(cr * F) * es)
                   : sg__scratch_get(g, (size_t)(cr * F) * es, op);
    uint8_t *keep = drop ? sg__scratch_get(g, (size_t)(cr * F), op) : NULL;
    if (!h || (drop && !keep)) {
        if (!kept)
            sg__scratch_put(g, h);
        return h ? NULL : sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    }
    sv->hidden = kept ? h : NULL;
    for (int64_t r0 = 0, c = 0; r0 < R; r0 += C, c++) {
        int64_t nr = R - r0 < C ? R - r0 : C;
        if (drop)
            sv->states[c] = *rng;
        ffn_hidden(W1, b1, (const char *)x->data + (size_t)(r0 * d) * es, nr, h, keep, rng, sv);
        sg__affine(dt, nr, d, F, h, F, W2->data, W2->stride[0], W2->stride[1], b2->data,
                   (char *)y->data + (size_t)(r0 * d) * es, d);
    }
    sg__scratch_put(g, keep);
    if (!kept)
        sg__scratch_put(g, h);
    sg_tensor *ins[5] = {x, W1, b1, W2, b2};
    sg_node *n = sg_record(g, "sg_feedforward", relu_ffn_bwd, 5, ins, 1, &y);
    if (n)
        n->saved = sv;
    return y;
}

sg_tensor *sg_feedforward_forward(sg_graph *g, const sg_feedforward *m, sg_tensor *x,
                                  bool training, sg_rng *rng)
{
    SG_NEED(g, m, x);
    sg_tensor *ins[5] = {x, m->linear1.weight, m->linear1.bias, m->linear2.weight,
                         m->linear2.bias};
    /* a graph that records the block keeps its input only (both biases: the block's own) */
    if (m->act == SG_ACT_RELU && ins[2] && ins[4] && sg__will_record(g, 5, ins))
        return relu_ffn(g, m, x, training, rng);
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
