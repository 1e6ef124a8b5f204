/*
 * op_join.c - concat and stack (copies), split and chunk (views).
 *
 * stack is concat of the inputs seen with a new size-1 dim: their data headers are
 * unsqueezed, and since a gradient buffer is contiguous the same unsqueezed header
 * describes it too, so one forward and one backward serve both ops.
 */
#include "autograd_internal.h"

#include <string.h>

/* Adds the slice [off, off + x's size) along dim of the output gradient into dx (copies
 * it when dx is new: the slice is all of it). */
static void join_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *y = n->out[0];
    int dim = (int)n->i[0];
    bool stack = n->i[1];
    size_t es = sg_dtype_size(y->dtype);
    int64_t ys[SG_MAX_DIMS];
    sg__contig_strides(y->ndim, y->shape, ys);
    int64_t off = 0;
    for (int k = 0; k < n->n_in; k++) {
        sg_tensor *x = n->in[k];
        int64_t shape[SG_MAX_DIMS], xs[SG_MAX_DIMS];
        memcpy(shape, y->shape, sizeof shape);
        shape[dim] = stack ? 1 : x->shape[dim];
        sg__contig_strides(y->ndim, shape, xs);
        bool fresh;
        void *dx = sg__grad_for_write(g, x, &fresh);
        const char *dy = (const char *)y->grad + off * ys[dim] * (int64_t)es;
        if (dx && fresh) { /* the slice is all of x's gradient: copy it */
            sg_tensor d = {.dtype = y->dtype, .ndim = y->ndim, .data = dx};
            sg_tensor src = {.dtype = y->dtype, .ndim = y->ndim, .data = (void *)dy};
            memcpy(d.shape, shape, sizeof shape);
            memcpy(src.shape, shape, sizeof shape);
            memcpy(d.stride, xs, sizeof xs);
            memcpy(src.stride, ys, sizeof ys);
            sg_tensor_copy_(&d, &src); /* same shape and dtype: cannot fail */
        } else if (dx) {
            sg__accumulate(y->dtype, dx, xs, y->ndim, shape, dy, ys);
        }
        off += shape[dim];
    }
}

/* Joins contiguous inputs row by row: y is R rows of the pieces' runs side by side
 * (R = the product of the dims before d), each row's runs memcpy'd together, rows split
 * over threads when y is large (a beam step's [320 x 448] generator input). Returns
 * false, doing nothing, if an input is not contiguous. */
static bool join_rows(sg_tensor *y, int n, const sg_tensor *hdrs, int d)
{
    for (int k = 0; k < n; k++)
        if (!sg_tensor_is_contiguous(&hdrs[k]))
            return false;
    if (sg_tensor_numel(y) == 0)
        return true;
    size_t es = sg_dtype_size(y->dtype);
    int64_t R = 1, run = (int64_t)es; /* bytes of y's row */
    for (int i = 0; i < d; i++)
        R *= y->shape[i];
    for (int i = d; i < y->ndim; i++)
        run *= y->shape[i];
    int nt = R > 1 && R * run >= (256 << 10) ? sg__threads() : 1;
    SG_FOR(nt, r, R, {
        char *dst = (char *)y->data + r * run;
        for (int k = 0; k < n; k++) {
            size_t len = (size_t)(run / y->shape[d] * hdrs[k].shape[d]);
            memcpy(dst, (const char *)hdrs[k].data + (size_t)r * len, len);
            dst += len;
        }
    });
    return true;
}

/* hdrs: the inputs' data as ndim-dim headers (stack: unsqueezed); d: a valid dim. */
static sg_tensor *join(sg_graph *g, const char *op, int n, sg_tensor *const *xs,
                       const sg_tensor *hdrs, int d, bool stack)
{
    const sg_tensor *h0 = &hdrs[0];
    int64_t shape[SG_MAX_DIMS];
    memcpy(shape, h0->shape, sizeof shape);
    shape[d] = 0;
    for (int k = 0; k < n; k++) {
        const sg_tensor *h = &hdrs[k];
        if (xs[k]->dtype != xs[0]->dtype)
            return sg_graph_fail(g, SG_EDTYPE, "%s: input %d is %s %s, input 0 is %s %s", op, k,
                                 sg_dtype_name(xs[k]->dtype), SG_SHAPE(xs[k]),
                                 sg_dtype_name(xs[0]->dtype), SG_SHAPE(xs[0]));
        bool ok = h->ndim == h0->ndim;
        for (int i = 0; ok && i < h->ndim; i++)
            ok = i == d || h->shape[i] == h0->shape[i];
        if (!ok)
            return sg_graph_fail(g, SG_ESHAPE, "%s: input %d has shape %s, input 0 has %s (they "
                                               "must agree except along dim %d)",
                                 op, k, SG_SHAPE(xs[k]), SG_SHAPE(xs[0]), d);
        if (__builtin_add_overflow(shape[d], h->shape[d], &shape[d]))
            return sg_graph_fail(g, SG_ENOMEM, "%s: the joined dim %d overflows", op, d);
    }
    sg_tensor *y = sg__empty_for(g, op, xs[0]->dtype, h0->ndim, shape);
    if (!y)
        return NULL;
    if (join_rows(y, n, hdrs, d))
        goto record;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        sg_tensor dst = *y, src = hdrs[k];
        dst.shape[d] = src.shape[d];
        dst.data = (char *)y->data + off * y->stride[d] * (int64_t)sg_dtype_size(y->dtype);
        off += src.shape[d];
        sg_tensor_copy_(&dst, &src); /* same shape and dtype: cannot fail */
    }
record:;
    sg_node *nd = sg_record(g, op, join_bwd, n, xs, 1, &y);
    if (nd) {
        nd->i[0] = d;
        nd->i[1] = stack;
    }
    return y;
}

/* Checks the input list: false on NULL (propagated) or a bad count (message). */
static bool check_list(sg_graph *g, const char *op, int n, sg_tensor *const *xs)
{
    if (!g)
        return false;
    if (n < 1 || !xs) {
        sg_graph_fail(g, SG_EINVAL, "%s: needs at least one input (got n = %d%s)", op, n,
                      xs ? "" : ", xs NULL");
        return false;
    }
    for (int k = 0; k < n; k++)
        if (!xs[k])
            return false;
    return true;
}

sg_tensor *sg_concat(sg_graph *g, int n, sg_tensor *const *xs, int dim)
{
    if (!check_list(g, "sg_concat", n, xs))
        return NULL;
    int d = sg__dim(dim, xs[0]->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_concat: dim %d out of range for input 0 %s", dim,
                             SG_SHAPE(xs[0]));
    sg_tensor *hdrs = sg_arena_alloc(sg_graph_arena(g), sizeof *hdrs * (size_t)n);
    if (!hdrs)
        return sg_graph_fail(g, SG_ENOMEM, "sg_concat: out of memory");
    for (int k = 0; k < n; k++)
        hdrs[k] = *xs[k];
    return join(g, "sg_concat", n, xs, hdrs, d, false);
}

sg_tensor *sg_stack(sg_graph *g, int n, sg_tensor *const *xs, int dim)
{
    if (!check_list(g, "sg_stack", n, xs))
        return NULL;
    int nd = xs[0]->ndim;
    int d = sg__dim(dim, nd + 1);
    if (d < 0 || nd >= SG_MAX_DIMS)
        return sg_graph_fail(g, SG_EINVAL, "sg_stack: dim %d out of range for inputs %s", dim,
                             SG_SHAPE(xs[0]));
    sg_tensor *hdrs = sg_arena_alloc(sg_graph_arena(g), sizeof *hdrs * (size_t)n);
    if (!hdrs)
        return sg_graph_fail(g, SG_ENOMEM, "sg_stack: out of memory");
    for (int k = 0; k < n; k++) {
        const sg_tensor *x = xs[k];
        if (x->ndim != nd || memcmp(x->shape, xs[0]->shape, sizeof(int64_t) * (size_t)nd) != 0)
            return sg_graph_fail(g, SG_ESHAPE, "sg_stack: input %d has shape %s, input 0 has %s "
                                               "(they must be equal)",
                                 k, SG_SHAPE(x), SG_SHAPE(xs[0]));
        sg_tensor *h = &hdrs[k];
        *h = *x;
        for (int i = nd; i > d; i--) {
            h->shape[i] = x->shape[i - 1];
            h->stride[i] = x->stride[i - 1];
        }
        h->shape[d] = 1;
        h->stride[d] = 1;
        h->ndim = nd + 1;
    }
    return join(g, "sg_stack", n, xs, hdrs, d, true);
}

/* ---- the per-step outputs of a decoder joined in one copy ------------------------ */

/* Layout of an sg__join_steps output: piece k is d[k] wide at column off[k], made of T
 * step inputs [B, d] (seq[k]) or one input [B, T, d]. */
typedef struct {
    int K;
    int64_t B, T, D;
    int64_t *d, *off;
    bool *seq;
} steps_layout;

/* Row r of x: x is [B, d] (one step) or [B, T, d] (rows b * T + t), unit column stride. */
static char *x_row(const sg_tensor *x, int64_t b, int64_t t, size_t es)
{
    int64_t o = b * x->stride[0] + (x->ndim == 3 ? t * x->stride[1] : 0);
    return (char *)x->data + o * (int64_t)es;
}

static void join_steps_bwd(sg_graph *g, sg_node *n)
{
    const steps_layout *L = n->saved;
    sg_tensor *y = n->out[0];
    size_t es = sg_dtype_size(y->dtype);
    int i = 0;
    for (int k = 0; k < L->K; k++) {
        int64_t nx = L->seq[k] ? L->T : 1, d = L->d[k];
        for (int64_t s = 0; s < nx; s++, i++) {
            sg_tensor *x = n->in[i];
            bool fresh;
            char *dx = sg__grad_for_write(g, x, &fresh);
            if (!dx)
                continue;
            /* x's slice of dy: [B, d] of step s, or [B, T, d]; x's gradient is contiguous */
            const char *src = (const char *)y->grad + (size_t)(s * L->D + L->off[k]) * es;
            if (fresh) {
                int64_t t0 = L->seq[k] ? s : 0, t1 = L->seq[k] ? s + 1 : L->T;
                for (int64_t b = 0; b < L->B; b++)
                    for (int64_t t = t0; t < t1; t++)
                        memcpy(dx + (size_t)((x->ndim == 3 ? b * L->T + t : b) * d) * es,
                               src + (size_t)((b * L->T + t - t0) * L->D) * es,
                               (size_t)d * es);
            } else if (x->ndim == 3) {
                sg__accumulate(y->dtype, dx, (int64_t[]){L->T * d, d, 1}, 3,
                               (int64_t[]){L->B, L->T, d}, src,
                               (int64_t[]){L->T * L->D, L->D, 1});
            } else {
                sg__accumulate(y->dtype, dx, (int64_t[]){d, 1}, 2, (int64_t[]){L->B, d}, src,
                               (int64_t[]){L->T * L->D, 1});
            }
        }
    }
}

sg_tensor *sg__join_steps(sg_graph *g, int K, int64_t T, sg_tensor **const *seq,
                          sg_tensor *const *whole)
{
    static const char *op = SG_JOIN_STEPS_OP;
    if (!g)
        return NULL;
    if (K < 1 || T < 1 || !seq || !whole)
        return sg_graph_fail(g, SG_EINVAL, "%s: needs pieces (K = %d) and steps (T = %lld)", op,
                             K, (long long)T);
    sg_arena *a = sg_graph_arena(g);
    steps_layout *L = sg_arena_alloc(a, sizeof *L);
    int64_t *dd = sg_arena_alloc(a, 2 * sizeof(int64_t) * (size_t)K);
    bool *sq = sg_arena_alloc(a, sizeof(bool) * (size_t)K);
    int n_in = 0;
    for (int k = 0; k < K; k++)
        n_in += seq[k] ? (int)T : 1;
    sg_tensor **ins = sg_arena_alloc(a, sizeof *ins * (size_t)n_in);
    if (!L || !dd || !sq || !ins)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    *L = (steps_layout){.K = K, .T = T, .d = dd, .off = dd + K, .seq = sq, .B = -1};
    sg_dtype dt = SG_F32;
    int i = 0;
    for (int k = 0; k < K; k++) {
        sq[k] = seq[k] != NULL;
        for (int64_t s = 0; s < (sq[k] ? T : 1); s++, i++) {
            sg_tensor *x = sq[k] ? seq[k][s] : whole[k];
            if (!x)
                return NULL; /* the error that made it is recorded */
            int nd = sq[k] ? 2 : 3;
            if (i == 0) {
                dt = x->dtype;
                L->B = x->ndim > 0 ? x->shape[0] : -1;
            }
            if (x->ndim != nd || x->shape[0] != L->B || (nd == 3 && x->shape[1] != T) ||
                (s > 0 && x->shape[nd - 1] != dd[k]) || x->dtype != dt)
                return sg_graph_fail(g, SG_ESHAPE, "%s: piece %d, step %lld is %s %s; pieces "
                                                   "must be %s [%lld, d] steps or [%lld, %lld, d]",
                                     op, k, (long long)s, sg_dtype_name(x->dtype), SG_SHAPE(x),
                                     sg_dtype_name(dt), (long long)L->B, (long long)L->B,
                                     (long long)T);
            if (x->stride[nd - 1] != 1 && !(x = sg_contiguous(g, x)))
                return NULL;
            dd[k] = x->shape[nd - 1];
            ins[i] = x;
        }
        L->off[k] = L->D;
        L->D += dd[k];
    }
    sg_tensor *y = sg__empty_for(g, op, dt, 3, (int64_t[]){L->B, T, L->D});
    if (!y)
        return NULL;
    size_t es = sg_dtype_size(dt);
    i = 0;
    for (int k = 0; k < K; k++)
        for (int64_t s = 0; s < (sq[k] ? T : 1); s++, i++) {
            const sg_tensor *x = ins[i];
            int64_t t0 = sq[k] ? s : 0, t1 = sq[k] ? s + 1 : T;
            for (int64_t b = 0; b < L->B; b++)
                for (int64_t t = t0; t < t1; t++)
                    memcpy((char *)y->data + (size_t)((b * T + t) * L->D + L->off[k]) * es,
                           x_row(x, b, t, es), (size_t)dd[k] * es);
        }
    sg_node *nd = sg_record(g, op, join_steps_bwd, n_in, ins, 1, &y);
    if (nd)
        nd->saved = L;
    return y;
}

/* Clears out[0..n) and reports a NULL input / bad arguments. */
static int split_fail(sg_graph *g, sg_tensor **out, int n, int code)
{
    if (out)
        for (int k = 0; k < n; k++)
            out[k] = NULL;
    if (code == SG_OK) /* NULL input: propagate the first error */
        return g && sg_graph_status(g) ? sg_graph_status(g) : SG_EINVAL;
    return code;
}

int sg_split(sg_graph *g, sg_tensor *x, int dim, int n, const int64_t *sizes, sg_tensor **out)
{
    if (!g || !x || !out || n < 1 || !sizes) {
        if (g && x && !(out && sizes && n >= 1)) {
            sg_graph_fail(g, SG_EINVAL, "sg_split: needs n >= 1 (got %d), sizes and out", n);
            return split_fail(g, out, n, SG_EINVAL);
        }
        return split_fail(g, out, n, SG_OK);
    }
    int d = sg__dim(dim, x->ndim);
    if (d < 0) {
        sg_graph_fail(g, SG_EINVAL, "sg_split: dim %d out of range for %s", dim, SG_SHAPE(x));
        return split_fail(g, out, n, SG_EINVAL);
    }
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] < 0 || __builtin_add_overflow(total, sizes[k], &total)) {
            sg_graph_fail(g, SG_ESHAPE, "sg_split: size %lld of piece %d is invalid for %s",
                          (long long)sizes[k], k, SG_SHAPE(x));
            return split_fail(g, out, n, SG_ESHAPE);
        }
    }
    if (total != x->shape[d]) {
        sg_graph_fail(g, SG_ESHAPE, "sg_split: sizes sum to %lld but dim %d of %s has %lld",
                      (long long)total, d, SG_SHAPE(x), (long long)x->shape[d]);
        return split_fail(g, out, n, SG_ESHAPE);
    }
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        out[k] = sg_narrow(g, x, d, off, sizes[k]);
        if (!out[k])
            return split_fail(g, out, n, sg_graph_status(g));
        off += sizes[k];
    }
    return SG_OK;
}

int sg_chunk(sg_graph *g, sg_tensor *x, int dim, int n, sg_tensor **out)
{
    if (!g || !x || !out || n < 1) {
        if (g && x && !(out && n >= 1)) {
            sg_graph_fail(g, SG_EINVAL, "sg_chunk: needs n >= 1 (got %d) and out", n);
            return split_fail(g, out, n, SG_EINVAL);
        }
        return split_fail(g, out, n, SG_OK);
    }
    int d = sg__dim(dim, x->ndim);
    if (d < 0) {
        sg_graph_fail(g, SG_EINVAL, "sg_chunk: dim %d out of range for %s", dim, SG_SHAPE(x));
        return split_fail(g, out, n, SG_EINVAL);
    }
    if (x->shape[d] % n) {
        sg_graph_fail(g, SG_ESHAPE, "sg_chunk: dim %d of %s does not divide into %d chunks", d,
                      SG_SHAPE(x), n);
        return split_fail(g, out, n, SG_ESHAPE);
    }
    int64_t len = x->shape[d] / n;
    for (int k = 0; k < n; k++) {
        out[k] = sg_narrow(g, x, d, k * len, len);
        if (!out[k])
            return split_fail(g, out, n, sg_graph_status(g));
    }
    return SG_OK;
}
