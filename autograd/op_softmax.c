/*
 * op_softmax.c - fused, numerically stable softmax and log-softmax along a dim with
 * an optional validity mask. A row with no valid position gives zeros (log-softmax:
 * -inf) and passes no gradient, never NaN.
 *
 * The dim is moved innermost by iterating over "rows": for each index of the other
 * dims, the row is the strided 1-D line along dim.
 */
#include "autograd_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    int64_t rows, len;
    int64_t xs, ys, ms;          /* element strides along dim for x, y(contig), mask */
    int64_t *xoff, *yoff, *moff; /* per-row element offsets */
} rows_layout;

/* Offsets of every row start for a tensor with (shape, strides) reduced along dim. */
static void row_offsets(int ndim, const int64_t *shape, const int64_t *st, int dim, int64_t *off)
{
    int64_t idx[SG_MAX_DIMS] = {0};
    int64_t rows = 1;
    for (int d = 0; d < ndim; d++)
        if (d != dim)
            rows *= shape[d];
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = 0;
        for (int d = 0; d < ndim; d++)
            o += idx[d] * st[d];
        off[r] = o;
        for (int d = ndim - 1; d >= 0; d--) {
            if (d == dim)
                continue;
            if (++idx[d] < shape[d])
                break;
            idx[d] = 0;
        }
    }
}

#define SOFTMAX_KERNELS(T, SUF, EXP, LOG)                                                   \
    static void softmax_fwd_##SUF(const rows_layout *L, const T *x, const uint8_t *m, T *y,   \
                                  bool logsm)                                               \
    {                                                                                       \
        for (int64_t r = 0; r < L->rows; r++) {                                             \
            const T *xr = x + L->xoff[r];                                                   \
            T *yr = y + L->yoff[r];                                                         \
            const uint8_t *mr = m ? m + L->moff[r] : NULL;                                  \
            T mx = -INFINITY;                                                               \
            for (int64_t j = 0; j < L->len; j++)                                            \
                if ((!mr || mr[j * L->ms]) && xr[j * L->xs] > mx)                           \
                    mx = xr[j * L->xs];                                                     \
            if (mx == -INFINITY) { /* no valid position (or all -inf) */                    \
                for (int64_t j = 0; j < L->len; j++)                                        \
                    yr[j * L->ys] = logsm ? -INFINITY : 0;                                  \
                continue;                                                                   \
            }                                                                               \
            T sum = 0;                                                                      \
            for (int64_t j = 0; j < L->len; j++) {                                          \
                T e = (!mr || mr[j * L->ms]) ? EXP(xr[j * L->xs] - mx) : 0;                 \
                if (!logsm)                                                                 \
                    yr[j * L->ys] = e;                                                      \
                sum += e;                                                                   \
            }                                                                               \
            if (logsm) {                                                                    \
                T lse = mx + LOG(sum);                                                      \
                for (int64_t j = 0; j < L->len; j++)                                        \
                    yr[j * L->ys] = (!mr || mr[j * L->ms]) ? xr[j * L->xs] - lse : -INFINITY; \
            } else {                                                                        \
                T inv = 1 / sum;                                                            \
                for (int64_t j = 0; j < L->len; j++)                                        \
                    yr[j * L->ys] *= inv;                                                   \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    /* softmax:     dx = y * (dy - sum(dy * y))                                           \
     * log-softmax: dx = dy - exp(y) * sum(dy)        (valid positions only) */             \
    static void softmax_bwd_##SUF(const rows_layout *L, const T *y, const T *dy,            \
                                  const uint8_t *m, T *dx, bool logsm)                      \
    {                                                                                       \
        for (int64_t r = 0; r < L->rows; r++) {                                             \
            const T *yr = y + L->yoff[r], *dyr = dy + L->yoff[r];                           \
            T *dxr = dx + L->yoff[r];                                                       \
            const uint8_t *mr = m ? m + L->moff[r] : NULL;                                  \
            T s = 0;                                                                        \
            for (int64_t j = 0; j < L->len; j++)                                            \
                if (!mr || mr[j * L->ms])                                                   \
                    s += logsm ? dyr[j * L->ys] : dyr[j * L->ys] * yr[j * L->ys];           \
            for (int64_t j = 0; j < L->len; j++) {                                          \
                if (mr && !mr[j * L->ms])                                                   \
                    continue;                                                               \
                T yv = yr[j * L->ys];                                                       \
                if (logsm) {                                                                \
                    if (yv != -INFINITY)                                                    \
                        dxr[j * L->ys] += dyr[j * L->ys] - EXP(yv) * s;                     \
                } else                                                                      \
                    dxr[j * L->ys] += yv * (dyr[j * L->ys] - s);                            \
            }                                                                               \
        }                                                                                   \
    }

SOFTMAX_KERNELS(float, f32, expf, logf)
SOFTMAX_KERNELS(double, f64, exp, log)

static bool layout(sg_graph *g, const sg_tensor *x, const sg_tensor *mask, int dim,
                   rows_layout *L, const int64_t *mstrides)
{
    L->len = x->shape[dim];
    L->rows = sg_tensor_numel(x) / (L->len ? L->len : 1);
    if (L->len == 0)
        L->rows = 0;
    int64_t cs[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, cs);
    L->xs = x->stride[dim];
    L->ys = cs[dim];
    L->ms = mask ? mstrides[dim] : 0;
    size_t bytes = sizeof(int64_t) * (size_t)(L->rows ? L->rows : 1);
    L->xoff = sg_arena_alloc(sg_graph_arena(g), bytes);
    L->yoff = sg_arena_alloc(sg_graph_arena(g), bytes);
    L->moff = mask ? sg_arena_alloc(sg_graph_arena(g), bytes) : NULL;
    if (!L->xoff || !L->yoff || (mask && !L->moff)) {
        sg_graph_fail(g, SG_ENOMEM, "softmax: out of memory");
        return false;
    }
    row_offsets(x->ndim, x->shape, x->stride, dim, L->xoff);
    row_offsets(x->ndim, x->shape, cs, dim, L->yoff);
    if (mask)
        row_offsets(x->ndim, x->shape, mstrides, dim, L->moff);
    return true;
}

static void softmax_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    const rows_layout *L = n->saved;
    const uint8_t *m = n->n_in > 1 ? n->in[1]->data : NULL;
    bool logsm = n->i[0];
    if (x->dtype == SG_F32)
        softmax_bwd_f32(L, y->data, y->grad, m, dx, logsm);
    else
        softmax_bwd_f64(L, y->data, y->grad, m, dx, logsm);
}

static sg_tensor *softmax(sg_graph *g, sg_tensor *x, int dim, sg_tensor *mask, bool logsm)
{
    const char *op = logsm ? "sg_log_softmax" : "sg_softmax";
    SG_NEED(g, x);
    if (!sg__check_float(g, op, x))
        return NULL;
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: dim %d out of range for %s", op, dim, SG_SHAPE(x));
    int64_t ms[SG_MAX_DIMS];
    if (mask) {
        int nd;
        int64_t bs[SG_MAX_DIMS];
        if (mask->dtype != SG_BOOL)
            return sg_graph_fail(g, SG_EDTYPE, "%s: mask must be bool, got %s", op,
                                 sg_dtype_name(mask->dtype));
        if (!sg__broadcast_shape(mask->ndim, mask->shape, x->ndim, x->shape, &nd, bs) ||
            nd != x->ndim || memcmp(bs, x->shape, sizeof(int64_t) * (size_t)nd) != 0)
            return sg_graph_fail(g, SG_ESHAPE, "%s: mask %s does not broadcast to input %s", op,
                                 SG_SHAPE(mask), SG_SHAPE(x));
        sg__broadcast_strides(mask, x->ndim, x->shape, ms);
    }
    rows_layout *L = sg_arena_alloc(sg_graph_arena(g), sizeof *L);
    if (!L)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
    if (!y || !layout(g, x, mask, d, L, ms))
        return NULL;
    const uint8_t *m = mask ? mask->data : NULL;
    if (x->dtype == SG_F32)
        softmax_fwd_f32(L, x->data, m, y->data, logsm);
    else
        softmax_fwd_f64(L, x->data, m, y->data, logsm);
    sg_tensor *ins[2] = {x, mask};
    sg_node *n = sg_record(g, op, softmax_bwd, mask ? 2 : 1, ins, 1, &y);
    if (n) {
        n->saved = L;
        n->i[0] = logsm;
    }
    return y;
}

sg_tensor *sg_softmax(sg_graph *g, sg_tensor *x, int dim, sg_tensor *mask)
{
    return softmax(g, x, dim, mask, false);
}

sg_tensor *sg_log_softmax(sg_graph *g, sg_tensor *x, int dim, sg_tensor *mask)
{
    return softmax(g, x, dim, mask, true);
}
