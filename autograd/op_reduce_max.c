/*
 * op_reduce_max.c - max (with argmax indices), argmax and a numerically stable
 * logsumexp along one dim.
 *
 * x is seen as `rows` strided lines of `len` elements along dim (any layout); row r
 * starts at xoff[r] in x and at goff[r] in x's contiguous gradient; results are
 * contiguous with one element per row (keepdim only changes the shape).
 */
#include "autograd_internal.h"

#include <math.h>

typedef struct {
    int64_t rows, len;
    int64_t xs, gs;      /* element strides along dim in x and in its gradient */
    int64_t *xoff, *goff;
    int64_t *arg;        /* max: argmax per row */
} rows_t;

/* Validates x and dim, computes the result shape and the row layout. */
static rows_t *rows_of(sg_graph *g, const char *op, sg_tensor *x, int dim, bool keepdim,
                       int *nd, int64_t *shape)
{
    if (!sg__check_float(g, op, x))
        return NULL;
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: dim %d out of range for %s", op, dim, SG_SHAPE(x));
    if (x->shape[d] == 0)
        return sg_graph_fail(g, SG_ESHAPE, "%s: cannot reduce the empty dim %d of %s", op, d,
                             SG_SHAPE(x));
    rows_t *L = sg_arena_alloc(sg_graph_arena(g), sizeof *L);
    if (!L)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    int64_t rs[SG_MAX_DIMS], xst[SG_MAX_DIMS], gst[SG_MAX_DIMS], cs[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, cs);
    int k = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i != d) {
            rs[k] = x->shape[i];
            xst[k] = x->stride[i];
            gst[k++] = cs[i];
        }
    }
    *nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d || keepdim)
            shape[(*nd)++] = i == d ? 1 : x->shape[i];
    L->len = x->shape[d];
    L->rows = sg_tensor_numel(x) / L->len;
    L->xs = x->stride[d];
    L->gs = cs[d];
    size_t bytes = sizeof(int64_t) * (size_t)(L->rows ? L->rows : 1);
    L->xoff = sg_arena_alloc(sg_graph_arena(g), bytes);
    L->goff = sg_arena_alloc(sg_graph_arena(g), bytes);
    L->arg = sg_arena_alloc(sg_graph_arena(g), bytes);
    if (!L->xoff || !L->goff || !L->arg)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory for %lld rows", op,
                             (long long)L->rows);
    sg__offsets(k, rs, xst, L->xoff);
    sg__offsets(k, rs, gst, L->goff);
    return L;
}

#define MAX_KERNELS(T, SUF, EXP, LOG)                                                      \
    /* The first maximum; NaN wins like in PyTorch. */                                     \
    static void max_fwd_##SUF(const rows_t *L, const T *x, T *y)                           \
    {                                                                                      \
        for (int64_t r = 0; r < L->rows; r++) {                                            \
            const T *xr = x + L->xoff[r];                                                  \
            T mx = xr[0];                                                                  \
            int64_t am = 0;                                                                \
            for (int64_t j = 1; j < L->len && !isnan(mx); j++) {                           \
                T v = xr[j * L->xs];                                                       \
                if (v > mx || isnan(v)) {                                                  \
                    mx = v;                                                                \
                    am = j;                                                                \
                }                                                                          \
            }                                                                              \
            y[r] = mx;                                                                     \
            L->arg[r] = am;                                                                \
        }                                                                                  \
    }                                                                                      \
    static void max_bwd_##SUF(const rows_t *L, const T *dy, T *dx)                         \
    {                                                                                      \
        for (int64_t r = 0; r < L->rows; r++)                                              \
            dx[L->goff[r] + L->arg[r] * L->gs] += dy[r];                                   \
    }                                                                                      \
    /* m + log(sum exp(x - m)); a row of -inf gives -inf, +inf gives +inf. */              \
    static void lse_fwd_##SUF(const rows_t *L, const T *x, T *y)                           \
    {                                                                                      \
        for (int64_t r = 0; r < L->rows; r++) {                                            \
            const T *xr = x + L->xoff[r];                                                  \
            T mx = -INFINITY;                                                              \
            for (int64_t j = 0; j < L->len; j++)                                           \
                if (xr[j * L->xs] > mx || isnan(xr[j * L->xs]))                            \
                    mx = xr[j * L->xs];                                                    \
            if (isinf(mx)) {                                                               \
                y[r] = mx;                                                                 \
                continue;                                                                  \
            }                                                                              \
            T s = 0;                                                                       \
            for (int64_t j = 0; j < L->len; j++)                                           \
                s += EXP(xr[j * L->xs] - mx);                                              \
            y[r] = mx + LOG(s);                                                            \
        }                                                                                  \
    }                                                                                      \
    /* dx = dy * exp(x - y) = dy * softmax(x); nothing for an all -inf row. */             \
    static void lse_bwd_##SUF(const rows_t *L, const T *x, const T *y, const T *dy, T *dx) \
    {                                                                                      \
        for (int64_t r = 0; r < L->rows; r++) {                                            \
            if (y[r] == -INFINITY)                                                         \
                continue;                                                                  \
            const T *xr = x + L->xoff[r];                                                  \
            T *dr = dx + L->goff[r];                                                       \
            for (int64_t j = 0; j < L->len; j++)                                           \
                dr[j * L->gs] += dy[r] * EXP(xr[j * L->xs] - y[r]);                        \
        }                                                                                  \
    }

MAX_KERNELS(float, f32, expf, logf)
MAX_KERNELS(double, f64, exp, log)

static void max_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    if (x->dtype == SG_F32)
        max_bwd_f32(n->saved, y->grad, dx);
    else
        max_bwd_f64(n->saved, y->grad, dx);
}

static void indices_of(sg_graph *g, const rows_t *L, int nd, const int64_t *shape,
                       sg_tensor **indices, const char *op)
{
    sg_tensor *ix = sg__empty_for(g, op, SG_I64, nd, shape);
    if (ix)
        for (int64_t r = 0; r < L->rows; r++)
            ((int64_t *)ix->data)[r] = L->arg[r];
    *indices = ix;
}

sg_tensor *sg_max(sg_graph *g, sg_tensor *x, int dim, bool keepdim, sg_tensor **indices)
{
    if (indices)
        *indices = NULL;
    SG_NEED(g, x);
    int nd;
    int64_t shape[SG_MAX_DIMS];
    rows_t *L = rows_of(g, "sg_max", x, dim, keepdim, &nd, shape);
    if (!L)
        return NULL;
    sg_tensor *y = sg__empty_for(g, "sg_max", x->dtype, nd, shape);
    if (!y)
        return NULL;
    if (x->dtype == SG_F32)
        max_fwd_f32(L, x->data, y->data);
    else
        max_fwd_f64(L, x->data, y->data);
    if (indices) {
        indices_of(g, L, nd, shape, indices, "sg_max");
        if (!*indices)
            return NULL;
    }
    sg_node *n = sg_record(g, "sg_max", max_bwd, 1, &x, 1, &y);
    if (n)
        n->saved = L;
    return y;
}

sg_tensor *sg_argmax(sg_graph *g, sg_tensor *x, int dim, bool keepdim)
{
    SG_NEED(g, x);
    int nd;
    int64_t shape[SG_MAX_DIMS];
    rows_t *L = rows_of(g, "sg_argmax", x, dim, keepdim, &nd, shape);
    if (!L)
        return NULL;
    /* the max values go to scratch: argmax is not differentiable */
    void *tmp = sg_arena_alloc(sg_graph_arena(g), sg_dtype_size(x->dtype) * (size_t)L->rows + 1);
    if (!tmp)
        return sg_graph_fail(g, SG_ENOMEM, "sg_argmax: out of memory");
    if (x->dtype == SG_F32)
        max_fwd_f32(L, x->data, tmp);
    else
        max_fwd_f64(L, x->data, tmp);
    sg_tensor *ix;
    indices_of(g, L, nd, shape, &ix, "sg_argmax");
    return ix;
}

static void lse_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    if (x->dtype == SG_F32)
        lse_bwd_f32(n->saved, x->data, y->data, y->grad, dx);
    else
        lse_bwd_f64(n->saved, x->data, y->data, y->grad, dx);
}

sg_tensor *sg_logsumexp(sg_graph *g, sg_tensor *x, int dim, bool keepdim)
{
    SG_NEED(g, x);
    int nd;
    int64_t shape[SG_MAX_DIMS];
    rows_t *L = rows_of(g, "sg_logsumexp", x, dim, keepdim, &nd, shape);
    if (!L)
        return NULL;
    sg_tensor *y = sg__empty_for(g, "sg_logsumexp", x->dtype, nd, shape);
    if (!y)
        return NULL;
    if (x->dtype == SG_F32)
        lse_fwd_f32(L, x->data, y->data);
    else
        lse_fwd_f64(L, x->data, y->data);
    sg_node *n = sg_record(g, "sg_logsumexp", lse_bwd, 1, &x, 1, &y);
    if (n)
        n->saved = L;
    return y;
}
