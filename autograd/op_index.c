/*
 * op_index.c - index_select, gather and scatter_add along a dim, with SG_I64 indices.
 *
 * index_select: x is seen as [outer, X, inner] around dim (outer/inner as offset
 * tables, so any layout works); the result is [outer, nidx, inner] contiguous.
 * gather / scatter_add walk the index tensor's positions, moving an offset into each
 * operand whose stride along dim is left out; the index value supplies that part.
 * Every index is range-checked before anything is written.
 */
#include "autograd_internal.h"

#include <string.h>

/* ---- index_select ---------------------------------------------------------------- */

typedef struct {
    int64_t outer, inner, nidx, xdim; /* xdim: x's size along dim */
    const int64_t *idx;               /* contiguous copy of the indices */
} isel_t;

/* Copies idx (any layout) into a contiguous arena array and range-checks it against
 * [0, size); NULL with SG_ERANGE naming the first bad index. */
static int64_t *flat_indices(sg_graph *g, const char *op, const sg_tensor *idx, int64_t size,
                             int d, const sg_tensor *x)
{
    int64_t n = sg_tensor_numel(idx);
    int64_t *flat = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)(n ? n : 1));
    int64_t *off = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!flat || !off)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory for %lld indices", op, (long long)n);
    sg__offsets(idx->ndim, idx->shape, idx->stride, off);
    const int64_t *p = idx->data;
    for (int64_t k = 0; k < n; k++) {
        flat[k] = p[off[k]];
        if (flat[k] < 0 || flat[k] >= size)
            return sg_graph_fail(g, SG_ERANGE, "%s: index %lld (at flat position %lld of idx %s) "
                                               "is out of range for dim %d of size %lld of %s",
                                 op, (long long)flat[k], (long long)k, SG_SHAPE(idx), d,
                                 (long long)size, SG_SHAPE(x));
    }
    return flat;
}

#define ISEL_BWD(T, SUF)                                                                     \
    static void isel_bwd_##SUF(const isel_t *s, const T *dy, T *dx)                          \
    {                                                                                        \
        for (int64_t o = 0; o < s->outer; o++)                                               \
            for (int64_t k = 0; k < s->nidx; k++) {                                          \
                T *dr = dx + (o * s->xdim + s->idx[k]) * s->inner;                           \
                const T *gr = dy + (o * s->nidx + k) * s->inner;                             \
                for (int64_t i = 0; i < s->inner; i++)                                       \
                    dr[i] += gr[i];                                                          \
            }                                                                                \
    }
ISEL_BWD(float, f32)
ISEL_BWD(double, f64)

static void isel_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    if (x->dtype == SG_F32)
        isel_bwd_f32(n->saved, y->grad, dx);
    else
        isel_bwd_f64(n->saved, y->grad, dx);
}

static bool check_index(sg_graph *g, const char *op, const sg_tensor *idx)
{
    if (idx->dtype == SG_I64)
        return true;
    sg_graph_fail(g, SG_EDTYPE, "%s: idx must be i64, got %s %s", op, sg_dtype_name(idx->dtype),
                  SG_SHAPE(idx));
    return false;
}

sg_tensor *sg_index_select(sg_graph *g, sg_tensor *x, int dim, sg_tensor *idx)
{
    const char *op = "sg_index_select";
    SG_NEED(g, x, idx);
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: dim %d out of range for %s", op, dim, SG_SHAPE(x));
    if (!check_index(g, op, idx))
        return NULL;
    int nd = x->ndim - 1 + idx->ndim;
    if (nd > SG_MAX_DIMS)
        return sg_graph_fail(g, SG_ESHAPE, "%s: result of x %s and idx %s would have %d > %d dims",
                             op, SG_SHAPE(x), SG_SHAPE(idx), nd, SG_MAX_DIMS);
    int64_t shape[SG_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < d; i++)
        shape[k++] = x->shape[i];
    for (int i = 0; i < idx->ndim; i++)
        shape[k++] = idx->shape[i];
    for (int i = d + 1; i < x->ndim; i++)
        shape[k++] = x->shape[i];
    sg_tensor *y = sg__empty_for(g, op, x->dtype, nd, shape);
    isel_t *s = sg_arena_alloc(sg_graph_arena(g), sizeof *s);
    if (!y || !s)
        return y ? sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op) : NULL;
    s->xdim = x->shape[d];
    s->nidx = sg_tensor_numel(idx);
    s->outer = s->inner = 1;
    for (int i = 0; i < d; i++)
        s->outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++)
        s->inner *= x->shape[i];
    s->idx = flat_indices(g, op, idx, s->xdim, d, x);
    int64_t *ooff = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)s->outer);
    int64_t *ioff = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)s->inner);
    if (!s->idx || !ooff || !ioff)
        return s->idx ? sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op) : NULL;
    sg__offsets(d, x->shape, x->stride, ooff);
    sg__offsets(x->ndim - d - 1, x->shape + d + 1, x->stride + d + 1, ioff);
    /* rows of `inner` elements are contiguous in x when their offsets are 0..inner-1 */
    bool rows_contig = s->inner == 1 || ioff[s->inner - 1] == s->inner - 1;
    for (int i = d + 1; rows_contig && i < x->ndim; i++) {
        int64_t want = i + 1 < x->ndim ? x->stride[i + 1] * x->shape[i + 1] : 1;
        rows_contig = x->shape[i] == 1 || x->stride[i] == want;
    }
    size_t es = sg_dtype_size(x->dtype);
    const char *xp = x->data;
    char *yp = y->data;
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t j = 0; j < s->nidx; j++) {
            const char *src = xp + (ooff[o] + s->idx[j] * x->stride[d]) * (int64_t)es;
            char *dst = yp + (o * s->nidx + j) * s->inner * (int64_t)es;
            if (rows_contig)
                memcpy(dst, src, (size_t)s->inner * es);
            else
                for (int64_t i = 0; i < s->inner; i++)
                    memcpy(dst + i * (int64_t)es, src + ioff[i] * (int64_t)es, es);
        }
    sg_node *n = sg_record(g, op, isel_bwd, 1, &x, 1, &y);
    if (n)
        n->saved = s;
    return y;
}

/* ---- gather / scatter_add ---------------------------------------------------------- */

/* Walks idx's positions (row-major). For each operand k, off[k] follows strides st[k]
 * (0 along dim for operands addressed by the index value). */
typedef struct {
    int ndim, nop;
    const int64_t *shape;
    int64_t st[3][SG_MAX_DIMS];
    int64_t off[3], pos[SG_MAX_DIMS];
} walk_t;

static void walk_next(walk_t *w)
{
    for (int d = w->ndim - 1; d >= 0; d--) {
        for (int k = 0; k < w->nop; k++)
            w->off[k] += w->st[k][d];
        if (++w->pos[d] < w->shape[d])
            return;
        for (int k = 0; k < w->nop; k++)
            w->off[k] -= w->st[k][d] * w->shape[d];
        w->pos[d] = 0;
    }
}

/* Checks idx against x for gather (limit: x) or scatter (limit: base, and src must
 * cover idx) and range-checks its values; false with a message. */
static bool check_gs(sg_graph *g, const char *op, const sg_tensor *x, const sg_tensor *idx,
                     const sg_tensor *src, int d)
{
    if (!check_index(g, op, idx))
        return false;
    bool ok = idx->ndim == x->ndim && (!src || src->ndim == x->ndim);
    for (int i = 0; ok && i < idx->ndim; i++)
        ok = (i == d || idx->shape[i] <= x->shape[i]) && (!src || idx->shape[i] <= src->shape[i]);
    if (!ok) {
        if (src)
            sg_graph_fail(g, SG_ESHAPE, "%s: idx %s must have the dims of base %s and src %s, no "
                                        "larger than src, nor than base except along dim %d",
                          op, SG_SHAPE(idx), SG_SHAPE(x), SG_SHAPE(src), d);
        else
            sg_graph_fail(g, SG_ESHAPE, "%s: idx %s must have the dims of x %s, no larger except "
                                        "along dim %d",
                          op, SG_SHAPE(idx), SG_SHAPE(x), d);
        return false;
    }
    walk_t w = {.ndim = idx->ndim, .nop = 1, .shape = idx->shape};
    memcpy(w.st[0], idx->stride, sizeof w.st[0]);
    int64_t n = sg_tensor_numel(idx);
    const int64_t *ip = idx->data;
    for (int64_t p = 0; p < n; p++, walk_next(&w)) {
        int64_t v = ip[w.off[0]];
        if (v < 0 || v >= x->shape[d]) {
            sg_graph_fail(g, SG_ERANGE, "%s: index %lld (at flat position %lld of idx %s) is out "
                                        "of range for dim %d of size %lld of %s",
                          op, (long long)v, (long long)p, SG_SHAPE(idx), d,
                          (long long)x->shape[d], SG_SHAPE(x));
            return false;
        }
    }
    return true;
}

/* The two loops over idx's positions (v = the index value there), f32 and f64. */
#define GS_KERNELS(T, SUF)                                                                   \
    /* dst[o1] (+)= src[o2 + v*sd]: gather (dst contiguous over idx) */                      \
    static void gather_##SUF(walk_t *w, int64_t n, const int64_t *ip, const T *src, int64_t sd, \
                             T *dst, bool add)                                               \
    {                                                                                        \
        for (int64_t p = 0; p < n; p++, walk_next(w)) {                                      \
            T v = src[w->off[1] + ip[w->off[0]] * sd];                                       \
            if (add)                                                                         \
                dst[w->off[2]] += v;                                                         \
            else                                                                             \
                dst[w->off[2]] = v;                                                          \
        }                                                                                    \
    }                                                                                        \
    /* dst[o1 + v*sd] += src[o2]: scatter-add */                                             \
    static void scatter_##SUF(walk_t *w, int64_t n, const int64_t *ip, const T *src, T *dst, \
                              int64_t sd)                                                    \
    {                                                                                        \
        for (int64_t p = 0; p < n; p++, walk_next(w))                                        \
            dst[w->off[1] + ip[w->off[0]] * sd] += src[w->off[2]];                           \
    }
GS_KERNELS(float, f32)
GS_KERNELS(double, f64)

/* Operand 0: idx; operand 1: the tensor addressed by the index (dim stride dropped);
 * operand 2: the tensor walked in lockstep with idx. */
static walk_t walker(const sg_tensor *idx, const int64_t *st1, int d, const int64_t *st2)
{
    walk_t w = {.ndim = idx->ndim, .nop = 3, .shape = idx->shape};
    memcpy(w.st[0], idx->stride, sizeof w.st[0]);
    memcpy(w.st[1], st1, sizeof(int64_t) * (size_t)idx->ndim);
    w.st[1][d] = 0;
    memcpy(w.st[2], st2, sizeof(int64_t) * (size_t)idx->ndim);
    return w;
}

static void run_gather(sg_dtype dt, walk_t *w, int64_t n, const int64_t *ip, const void *src,
                       int64_t sd, void *dst, bool add)
{
    if (dt == SG_F32)
        gather_f32(w, n, ip, src, sd, dst, add);
    else
        gather_f64(w, n, ip, src, sd, dst, add);
}

static void run_scatter(sg_dtype dt, walk_t *w, int64_t n, const int64_t *ip, const void *src,
                        void *dst, int64_t sd)
{
    if (dt == SG_F32)
        scatter_f32(w, n, ip, src, dst, sd);
    else
        scatter_f64(w, n, ip, src, dst, sd);
}

/* gather backward: dx[pos with dim = idx] += dy[pos] */
static void gather_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *idx = n->in[1], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    int d = (int)n->i[0];
    int64_t xs[SG_MAX_DIMS], ys[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, xs);
    sg__contig_strides(y->ndim, y->shape, ys);
    walk_t w = walker(idx, xs, d, ys);
    run_scatter(x->dtype, &w, sg_tensor_numel(idx), idx->data, y->grad, dx, xs[d]);
}

sg_tensor *sg_gather(sg_graph *g, sg_tensor *x, int dim, sg_tensor *idx)
{
    const char *op = "sg_gather";
    SG_NEED(g, x, idx);
    if (!sg__check_float(g, op, x))
        return NULL;
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: dim %d out of range for %s", op, dim, SG_SHAPE(x));
    if (!check_gs(g, op, x, idx, NULL, d))
        return NULL;
    sg_tensor *y = sg__empty_for(g, op, x->dtype, idx->ndim, idx->shape);
    if (!y)
        return NULL;
    walk_t w = walker(idx, x->stride, d, y->stride);
    run_gather(x->dtype, &w, sg_tensor_numel(idx), idx->data, x->data, x->stride[d], y->data,
               false);
    sg_tensor *ins[2] = {x, idx};
    sg_node *n = sg_record(g, op, gather_bwd, 2, ins, 1, &y);
    if (n)
        n->i[0] = d;
    return y;
}

/* scatter_add backward: dbase += dy; dsrc[pos] += dy[pos with dim = idx] */
static void scatter_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *base = n->in[0], *idx = n->in[1], *src = n->in[2], *y = n->out[0];
    int d = (int)n->i[0];
    int64_t ys[SG_MAX_DIMS], ss[SG_MAX_DIMS];
    sg__contig_strides(y->ndim, y->shape, ys);
    void *db = sg_grad_of(g, base);
    if (db)
        sg__accumulate(y->dtype, db, ys, y->ndim, y->shape, y->grad, ys);
    void *ds = sg_grad_of(g, src);
    if (ds) {
        sg__contig_strides(src->ndim, src->shape, ss);
        walk_t w = walker(idx, ys, d, ss);
        run_gather(y->dtype, &w, sg_tensor_numel(idx), idx->data, y->grad, ys[d], ds, true);
    }
}

sg_tensor *sg_scatter_add(sg_graph *g, sg_tensor *base, int dim, sg_tensor *idx, sg_tensor *src)
{
    const char *op = "sg_scatter_add";
    SG_NEED(g, base, idx, src);
    if (!sg__check_same_float(g, op, base, src))
        return NULL;
    int d = sg__dim(dim, base->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: dim %d out of range for %s", op, dim,
                             SG_SHAPE(base));
    if (!check_gs(g, op, base, idx, src, d))
        return NULL;
    sg_tensor *y = sg__empty_for(g, op, base->dtype, base->ndim, base->shape);
    if (!y)
        return NULL;
    sg_tensor_copy_(y, base);
    walk_t w = walker(idx, y->stride, d, src->stride);
    run_scatter(y->dtype, &w, sg_tensor_numel(idx), idx->data, src->data, y->data, y->stride[d]);
    sg_tensor *ins[3] = {base, idx, src};
    sg_node *n = sg_record(g, op, scatter_bwd, 3, ins, 1, &y);
    if (n)
        n->i[0] = d;
    return y;
}
