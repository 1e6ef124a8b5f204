/*
 * op_view.c - views: reshape, permute, transpose, narrow/slice/select, expand,
 * squeeze/unsqueeze, contiguous. None of them copies (but contiguous and reshape
 * when the layout forces it).
 *
 * Each view is a transform of a header (shape, strides, element offset). The forward
 * applies it to x; the backward applies the same transform to a contiguous header of
 * x's gradient buffer, which tells where every view element lives there, and adds
 * the view's gradient in (summing over expanded dims, where the stride is 0).
 */
#include "autograd_internal.h"

#include <string.h>

typedef struct {
    int ndim;
    int64_t shape[SG_MAX_DIMS], stride[SG_MAX_DIMS];
    int64_t offset; /* in elements */
} hdr;

typedef struct {
    int kind;
    int dim, ndim;
    int64_t a, b, c;
    int64_t shape[SG_MAX_DIMS];
    int perm[SG_MAX_DIMS];
} view_args;

enum { V_VIEW, V_PERMUTE, V_SLICE, V_SELECT, V_EXPAND, V_SQUEEZE, V_UNSQUEEZE };

/* PyTorch's stride computation for viewing (shape, stride) as new_shape; false when
 * the memory layout does not allow it without a copy. */
static bool view_strides(const hdr *in, int nd, const int64_t *ns, int64_t *out)
{
    int64_t numel = 1;
    for (int d = 0; d < in->ndim; d++)
        numel *= in->shape[d];
    if (numel == 0 || in->ndim == 0) {
        sg__contig_strides(nd, ns, out);
        return true;
    }
    int view_d = nd - 1;
    int64_t chunk_base_stride = in->stride[in->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int td = in->ndim - 1; td >= 0; td--) {
        tensor_numel *= in->shape[td];
        if (td == 0 ||
            (in->shape[td - 1] != 1 && in->stride[td - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || ns[view_d] == 1)) {
                out[view_d] = view_numel * chunk_base_stride;
                view_numel *= ns[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel)
                return false;
            if (td > 0) {
                chunk_base_stride = in->stride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

/* Applies a view to a header; returns SG_OK or an error code with a message. */
static int apply(const view_args *v, const hdr *in, hdr *out, const char *op)
{
    *out = *in;
    switch (v->kind) {
    case V_VIEW:
        out->ndim = v->ndim;
        memcpy(out->shape, v->shape, sizeof(int64_t) * (size_t)v->ndim);
        if (!view_strides(in, v->ndim, v->shape, out->stride))
            return sg__error(SG_ESHAPE, "%s: this strided layout cannot be viewed with a new "
                                        "shape without a copy (use sg_reshape)", op);
        return SG_OK;
    case V_PERMUTE:
        for (int d = 0; d < in->ndim; d++) {
            out->shape[d] = in->shape[v->perm[d]];
            out->stride[d] = in->stride[v->perm[d]];
        }
        return SG_OK;
    case V_SLICE: { /* dim, start a, count b, step c */
        out->offset += v->a * in->stride[v->dim];
        out->shape[v->dim] = v->b;
        out->stride[v->dim] = in->stride[v->dim] * v->c;
        return SG_OK;
    }
    case V_SELECT:
        out->offset += v->a * in->stride[v->dim];
        for (int d = v->dim; d < in->ndim - 1; d++) {
            out->shape[d] = in->shape[d + 1];
            out->stride[d] = in->stride[d + 1];
        }
        out->ndim--;
        return SG_OK;
    case V_EXPAND: {
        int off = v->ndim - in->ndim;
        out->ndim = v->ndim;
        for (int d = 0; d < v->ndim; d++) {
            int id = d - off;
            out->shape[d] = v->shape[d];
            out->stride[d] = (id < 0 || (in->shape[id] == 1 && v->shape[d] != 1)) ? 0
                                                                                   : in->stride[id];
        }
        return SG_OK;
    }
    case V_SQUEEZE:
        for (int d = v->dim; d < in->ndim - 1; d++) {
            out->shape[d] = in->shape[d + 1];
            out->stride[d] = in->stride[d + 1];
        }
        out->ndim--;
        return SG_OK;
    case V_UNSQUEEZE:
        for (int d = in->ndim; d > v->dim; d--) {
            out->shape[d] = in->shape[d - 1];
            out->stride[d] = in->stride[d - 1];
        }
        out->shape[v->dim] = 1;
        out->stride[v->dim] = v->dim < in->ndim ? in->shape[v->dim] * in->stride[v->dim] : 1;
        out->ndim++;
        return SG_OK;
    }
    return SG_EINVAL;
}

static hdr hdr_of(const sg_tensor *t)
{
    hdr h = {.ndim = t->ndim};
    memcpy(h.shape, t->shape, sizeof h.shape);
    memcpy(h.stride, t->stride, sizeof h.stride);
    return h;
}

static void view_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    const hdr *gh = n->saved; /* where y's elements live in dx */
    int64_t st[SG_MAX_DIMS];
    sg__contig_strides(y->ndim, y->shape, st);
    char *base = (char *)dx + gh->offset * (int64_t)sg_dtype_size(x->dtype);
    sg__accumulate(x->dtype, base, gh->stride, y->ndim, y->shape, y->grad, st);
}

static sg_tensor *make_view(sg_graph *g, sg_tensor *x, const view_args *v, const char *op)
{
    hdr in = hdr_of(x), out;
    int rc = apply(v, &in, &out, op);
    if (rc != SG_OK)
        return sg_graph_fail(g, rc, "%s (input %s)", sg_last_error(), SG_SHAPE(x));
    sg_tensor *y = sg__view_header(g, x);
    if (!y)
        return NULL;
    y->ndim = out.ndim;
    memcpy(y->shape, out.shape, sizeof y->shape);
    memcpy(y->stride, out.stride, sizeof y->stride);
    y->data = (char *)x->data + out.offset * (int64_t)sg_dtype_size(x->dtype);
    sg_node *n = sg_record(g, op, view_bwd, 1, &x, 1, &y);
    if (n) {
        hdr gin = {.ndim = x->ndim}, *gout = sg_arena_alloc(g->arena, sizeof *gout);
        if (!gout)
            return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        memcpy(gin.shape, x->shape, sizeof gin.shape);
        sg__contig_strides(x->ndim, x->shape, gin.stride);
        apply(v, &gin, gout, op); /* a contiguous header always views */
        n->saved = gout;
    }
    return y;
}

static int64_t shape_numel(int nd, const int64_t *s)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= s[d];
    return n;
}

/* Resolves a -1 in shape against x's numel; false with an error message. */
static bool infer_shape(sg_graph *g, const char *op, const sg_tensor *x, int nd,
                        const int64_t *shape, int64_t *out)
{
    if (nd < 0 || nd > SG_MAX_DIMS) {
        sg_graph_fail(g, SG_EINVAL, "%s: %d dims is out of range 0..%d", op, nd, SG_MAX_DIMS);
        return false;
    }
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < nd; d++) {
        out[d] = shape[d];
        if (shape[d] == -1 && infer < 0)
            infer = d;
        else if (shape[d] < 0) {
            sg_graph_fail(g, SG_ESHAPE, "%s: invalid size %lld at dim %d", op,
                          (long long)shape[d], d);
            return false;
        } else
            known *= shape[d];
    }
    int64_t n = sg_tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known) {
            sg_graph_fail(g, SG_ESHAPE, "%s: cannot infer -1 for %s from %lld elements", op,
                          SG_SHAPE(x), (long long)n);
            return false;
        }
        out[infer] = n / known;
    }
    if (shape_numel(nd, out) != n) {
        sg_graph_fail(g, SG_ESHAPE, "%s: %s has %lld elements, the new shape %lld", op,
                      SG_SHAPE(x), (long long)n, (long long)shape_numel(nd, out));
        return false;
    }
    return true;
}

sg_tensor *sg_view(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape)
{
    SG_NEED(g, x);
    view_args v = {.kind = V_VIEW, .ndim = ndim};
    if (!infer_shape(g, "sg_view", x, ndim, shape, v.shape))
        return NULL;
    return make_view(g, x, &v, "sg_view");
}

sg_tensor *sg_reshape(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape)
{
    SG_NEED(g, x);
    view_args v = {.kind = V_VIEW, .ndim = ndim};
    if (!infer_shape(g, "sg_reshape", x, ndim, shape, v.shape))
        return NULL;
    hdr in = hdr_of(x);
    int64_t st[SG_MAX_DIMS];
    if (!view_strides(&in, v.ndim, v.shape, st))
        x = sg_contiguous(g, x);
    SG_NEED(x);
    return make_view(g, x, &v, "sg_reshape");
}

sg_tensor *sg_permute(sg_graph *g, sg_tensor *x, const int *perm)
{
    SG_NEED(g, x, perm);
    view_args v = {.kind = V_PERMUTE};
    bool seen[SG_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
        int p = sg__dim(perm[d], x->ndim);
        if (p < 0 || seen[p])
            return sg_graph_fail(g, SG_EINVAL, "sg_permute: %d at position %d is not a valid "
                                               "permutation of %d dims (input %s)",
                                 perm[d], d, x->ndim, SG_SHAPE(x));
        seen[p] = true;
        v.perm[d] = p;
    }
    return make_view(g, x, &v, "sg_permute");
}

sg_tensor *sg_transpose(sg_graph *g, sg_tensor *x, int d0, int d1)
{
    SG_NEED(g, x);
    int a = sg__dim(d0, x->ndim), b = sg__dim(d1, x->ndim);
    if (a < 0 || b < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_transpose: dims %d, %d out of range for %s", d0, d1,
                             SG_SHAPE(x));
    view_args v = {.kind = V_PERMUTE};
    for (int d = 0; d < x->ndim; d++)
        v.perm[d] = d;
    v.perm[a] = b;
    v.perm[b] = a;
    return make_view(g, x, &v, "sg_transpose");
}

sg_tensor *sg_slice(sg_graph *g, sg_tensor *x, int dim, int64_t start, int64_t stop, int64_t step)
{
    SG_NEED(g, x);
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_slice: dim %d out of range for %s", dim,
                             SG_SHAPE(x));
    if (step < 1)
        return sg_graph_fail(g, SG_EINVAL, "sg_slice: step %lld must be >= 1", (long long)step);
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    start = start < 0 ? 0 : start > n ? n : start;
    stop = stop < start ? start : stop > n ? n : stop;
    view_args v = {.kind = V_SLICE, .dim = d, .a = start, .b = (stop - start + step - 1) / step,
                   .c = step};
    return make_view(g, x, &v, "sg_slice");
}

sg_tensor *sg_narrow(sg_graph *g, sg_tensor *x, int dim, int64_t start, int64_t len)
{
    SG_NEED(g, x);
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_narrow: dim %d out of range for %s", dim,
                             SG_SHAPE(x));
    if (start < 0 || len < 0 || start + len > x->shape[d])
        return sg_graph_fail(g, SG_ERANGE, "sg_narrow: [%lld, %lld) is outside dim %d of %s",
                             (long long)start, (long long)(start + len), d, SG_SHAPE(x));
    view_args v = {.kind = V_SLICE, .dim = d, .a = start, .b = len, .c = 1};
    return make_view(g, x, &v, "sg_narrow");
}

sg_tensor *sg_select(sg_graph *g, sg_tensor *x, int dim, int64_t i)
{
    SG_NEED(g, x);
    int d = sg__dim(dim, x->ndim);
    if (d < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_select: dim %d out of range for %s", dim,
                             SG_SHAPE(x));
    if (i < 0)
        i += x->shape[d];
    if (i < 0 || i >= x->shape[d])
        return sg_graph_fail(g, SG_ERANGE, "sg_select: index %lld is outside dim %d of %s",
                             (long long)i, d, SG_SHAPE(x));
    view_args v = {.kind = V_SELECT, .dim = d, .a = i};
    return make_view(g, x, &v, "sg_select");
}

sg_tensor *sg_expand(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape)
{
    SG_NEED(g, x, shape);
    if (ndim < x->ndim || ndim > SG_MAX_DIMS)
        return sg_graph_fail(g, SG_ESHAPE, "sg_expand: cannot expand %s to %d dims", SG_SHAPE(x),
                             ndim);
    view_args v = {.kind = V_EXPAND, .ndim = ndim};
    int off = ndim - x->ndim;
    for (int d = 0; d < ndim; d++) {
        int id = d - off;
        int64_t want = shape[d] == -1 && id >= 0 ? x->shape[id] : shape[d];
        if (want < 0 || (id >= 0 && x->shape[id] != 1 && x->shape[id] != want))
            return sg_graph_fail(g, SG_ESHAPE, "sg_expand: dim %d of %s cannot become %lld", d,
                                 SG_SHAPE(x), (long long)shape[d]);
        v.shape[d] = want;
    }
    return make_view(g, x, &v, "sg_expand");
}

sg_tensor *sg_squeeze(sg_graph *g, sg_tensor *x, int dim)
{
    SG_NEED(g, x);
    int d = sg__dim(dim, x->ndim);
    if (d < 0 || x->shape[d] != 1)
        return sg_graph_fail(g, SG_ESHAPE, "sg_squeeze: dim %d of %s is not of size 1", dim,
                             SG_SHAPE(x));
    view_args v = {.kind = V_SQUEEZE, .dim = d};
    return make_view(g, x, &v, "sg_squeeze");
}

sg_tensor *sg_unsqueeze(sg_graph *g, sg_tensor *x, int dim)
{
    SG_NEED(g, x);
    int d = sg__dim(dim, x->ndim + 1);
    if (d < 0 || x->ndim >= SG_MAX_DIMS)
        return sg_graph_fail(g, SG_EINVAL, "sg_unsqueeze: dim %d out of range for %s", dim,
                             SG_SHAPE(x));
    view_args v = {.kind = V_UNSQUEEZE, .dim = d};
    return make_view(g, x, &v, "sg_unsqueeze");
}

sg_tensor *sg_contiguous(sg_graph *g, sg_tensor *x)
{
    SG_NEED(g, x);
    if (sg_tensor_is_contiguous(x))
        return x;
    return sg_copy(g, x);
}
