/* op_reduce_sum.c - sum and mean over any set of dims, with keepdim. */
#include "autograd_internal.h"

#include <string.h>

/* Which dims are reduced; false with an error on a bad or repeated dim. */
static bool reduced_dims(sg_graph *g, const char *op, const sg_tensor *x, int n_dims,
                         const int *dims, bool *red)
{
    memset(red, 0, sizeof(bool) * SG_MAX_DIMS);
    if (n_dims == 0) {
        for (int d = 0; d < x->ndim; d++)
            red[d] = true;
        return true;
    }
    if (!dims) {
        sg_graph_fail(g, SG_EINVAL, "%s: dims is NULL", op);
        return false;
    }
    for (int k = 0; k < n_dims; k++) {
        int d = sg__dim(dims[k], x->ndim);
        if (d < 0 || red[d]) {
            sg_graph_fail(g, SG_EINVAL, "%s: dim %d is out of range or repeated for %s", op,
                          dims[k], SG_SHAPE(x));
            return false;
        }
        red[d] = true;
    }
    return true;
}

/* Shape of the result, and strides that map x's index space onto it (0 where reduced). */
static void reduced_layout(const sg_tensor *x, const bool *red, bool keepdim, int *nd,
                           int64_t *shape, int64_t *map_strides)
{
    int64_t full[SG_MAX_DIMS], st[SG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
        full[d] = red[d] ? 1 : x->shape[d];
    sg__contig_strides(x->ndim, full, st);
    int k = 0;
    for (int d = 0; d < x->ndim; d++) {
        map_strides[d] = red[d] ? 0 : st[d];
        if (keepdim || !red[d])
            shape[k++] = full[d];
    }
    *nd = k;
}

static void scale(sg_tensor *t, double s)
{
    int64_t n = sg_tensor_numel(t);
    if (t->dtype == SG_F32) {
        float *p = t->data;
        for (int64_t i = 0; i < n; i++)
            p[i] *= (float)s;
    } else {
        double *p = t->data;
        for (int64_t i = 0; i < n; i++)
            p[i] *= s;
    }
}

static void sum_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    const int64_t *map = n->saved;
    int64_t cs[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, cs);
    double s = n->f[0];
    if (s == 1.0) {
        sg__accumulate(x->dtype, dx, cs, x->ndim, x->shape, y->grad, map);
        return;
    }
    /* dx += s * broadcast(dy): scale a copy of dy first (dy is small) */
    int64_t ny = sg_tensor_numel(y);
    size_t es = sg_dtype_size(x->dtype);
    void *tmp = sg__scratch_get(g, (size_t)ny * es, "sg_mean");
    if (!tmp)
        return;
    memcpy(tmp, y->grad, (size_t)ny * es);
    sg_tensor th = *y;
    th.data = tmp;
    sg__contig_strides(y->ndim, y->shape, th.stride);
    scale(&th, s);
    sg__accumulate(x->dtype, dx, cs, x->ndim, x->shape, tmp, map);
    sg__scratch_put(g, tmp);
}

static sg_tensor *reduce_sum(sg_graph *g, sg_tensor *x, int n_dims, const int *dims, bool keepdim,
                             bool mean, const char *op)
{
    SG_NEED(g, x);
    bool red[SG_MAX_DIMS];
    if (!sg__check_float(g, op, x) || !reduced_dims(g, op, x, n_dims, dims, red))
        return NULL;
    int nd;
    int64_t shape[SG_MAX_DIMS];
    int64_t *map = sg_arena_alloc(g->arena, sizeof(int64_t) * SG_MAX_DIMS);
    if (!map)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    reduced_layout(x, red, keepdim, &nd, shape, map);
    sg_tensor *y = sg_zeros(g, x->dtype, nd, shape);
    if (!y)
        return NULL;
    sg__accumulate(x->dtype, y->data, map, x->ndim, x->shape, x->data, x->stride);
    double s = 1.0;
    if (mean) {
        int64_t count = sg_tensor_numel(x) / (sg_tensor_numel(y) ? sg_tensor_numel(y) : 1);
        s = count ? 1.0 / (double)count : 0.0;
        scale(y, s);
    }
    sg_node *n = sg_record(g, op, sum_bwd, 1, &x, 1, &y);
    if (n) {
        n->saved = map;
        n->f[0] = s;
    }
    return y;
}

sg_tensor *sg_sum(sg_graph *g, sg_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_sum(g, x, n_dims, dims, keepdim, false, "sg_sum");
}

sg_tensor *sg_mean(sg_graph *g, sg_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_sum(g, x, n_dims, dims, keepdim, true, "sg_mean");
}

sg_tensor *sg_sum_all(sg_graph *g, sg_tensor *x) { return sg_sum(g, x, 0, NULL, false); }
sg_tensor *sg_mean_all(sg_graph *g, sg_tensor *x) { return sg_mean(g, x, 0, NULL, false); }
