/* tensor.c - heap tensors, shapes, broadcasting, element access, printing. */
#include "tensor_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t sg_dtype_size(sg_dtype dt)
{
    switch (dt) {
    case SG_F32: return 4;
    case SG_F64: return 8;
    case SG_I64: return 8;
    case SG_BOOL: return 1;
    default: return 0;
    }
}

const char *sg_dtype_name(sg_dtype dt)
{
    static const char *names[] = {"f32", "f64", "i64", "bool"};
    _Static_assert(sizeof names / sizeof *names == SG_DTYPE_COUNT, "dtype name table");
    return (unsigned)dt < SG_DTYPE_COUNT ? names[dt] : "?";
}

bool sg_dtype_is_float(sg_dtype dt) { return dt == SG_F32 || dt == SG_F64; }

const char *sg_tensor_shape_str(const sg_tensor *t, char *buf, size_t n)
{
    return sg__shape_str(t, buf, n);
}

int64_t sg__init_contiguous(sg_tensor *t, sg_dtype dt, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > SG_MAX_DIMS || (unsigned)dt >= SG_DTYPE_COUNT)
        return -1;
    t->dtype = dt;
    t->ndim = ndim;
    int64_t n = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] < 0)
            return -1;
        t->shape[d] = shape[d];
        t->stride[d] = n;
        if (shape[d] && n > INT64_MAX / shape[d] / 8)
            return -1;
        n *= shape[d];
    }
    return n;
}

sg_tensor *sg_tensor_new(sg_dtype dt, int ndim, const int64_t *shape)
{
    sg_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        sg__error(SG_ENOMEM, "sg_tensor_new: out of memory");
        return NULL;
    }
    int64_t n = sg__init_contiguous(t, dt, ndim, ndim ? shape : NULL);
    if (n < 0) {
        free(t);
        sg__error(SG_EINVAL, "sg_tensor_new: invalid dtype %d, ndim %d or shape", (int)dt, ndim);
        return NULL;
    }
    size_t bytes = (size_t)n * sg_dtype_size(dt);
    t->data = calloc(bytes ? bytes : 1, 1);
    if (!t->data) {
        free(t);
        sg__error(SG_ENOMEM, "sg_tensor_new: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    t->owns_data = true;
    return t;
}

sg_tensor *sg_tensor_from_buffer(sg_dtype dt, int ndim, const int64_t *shape, const void *buf)
{
    if (!buf && ndim >= 0) {
        sg__error(SG_EINVAL, "sg_tensor_from_buffer: buffer is NULL");
        return NULL;
    }
    sg_tensor *t = sg_tensor_new(dt, ndim, shape);
    if (t)
        memcpy(t->data, buf, (size_t)sg_tensor_numel(t) * sg_dtype_size(dt));
    return t;
}

sg_tensor *sg_tensor_clone(const sg_tensor *src)
{
    if (!src) {
        sg__error(SG_EINVAL, "sg_tensor_clone: tensor is NULL");
        return NULL;
    }
    sg_tensor *t = sg_tensor_new(src->dtype, src->ndim, src->shape);
    if (t && sg_tensor_copy_(t, src) != SG_OK) {
        sg_tensor_free(t);
        return NULL;
    }
    return t;
}

void sg_tensor_free(sg_tensor *t)
{
    if (!t)
        return;
    if (t->owns_data) {
        free(t->data);
        free(t->grad);
    }
    free(t);
}

int sg_tensor_set_requires_grad(sg_tensor *t, bool on)
{
    if (!t)
        return sg__error(SG_EINVAL, "sg_tensor_set_requires_grad: tensor is NULL");
    if (!sg_dtype_is_float(t->dtype))
        return sg__error(SG_EINVAL, "sg_tensor_set_requires_grad: dtype %s cannot require grad",
                         sg_dtype_name(t->dtype));
    if (!t->owns_data)
        return sg__error(SG_EINVAL, "sg_tensor_set_requires_grad: not a heap tensor "
                                    "(graph tensors get gradients from their graph)");
    if (on && !t->grad) {
        size_t bytes = (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype);
        t->grad = calloc(bytes ? bytes : 1, 1);
        if (!t->grad)
            return sg__error(SG_ENOMEM, "sg_tensor_set_requires_grad: cannot allocate %zu bytes",
                             bytes);
    } else if (!on) {
        free(t->grad);
        t->grad = NULL;
    }
    t->requires_grad = on;
    return SG_OK;
}

void sg_tensor_zero_grad(sg_tensor *t)
{
    if (t && t->grad)
        memset(t->grad, 0, (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype));
}

int64_t sg_tensor_numel(const sg_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

bool sg_tensor_is_contiguous(const sg_tensor *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

bool sg_tensor_same_shape(const sg_tensor *a, const sg_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static int64_t flat_to_offset(const sg_tensor *t, int64_t flat)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t i = flat % t->shape[d];
        flat /= t->shape[d];
        off += i * t->stride[d];
    }
    return off;
}

static double load(sg_dtype dt, const void *base, int64_t i)
{
    switch (dt) {
    case SG_F32: return ((const float *)base)[i];
    case SG_F64: return ((const double *)base)[i];
    case SG_I64: return (double)((const int64_t *)base)[i];
    case SG_BOOL: return ((const uint8_t *)base)[i];
    default: return NAN;
    }
}

static void store(sg_dtype dt, void *base, int64_t i, double v)
{
    switch (dt) {
    case SG_F32: ((float *)base)[i] = (float)v; break;
    case SG_F64: ((double *)base)[i] = v; break;
    case SG_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    case SG_BOOL: ((uint8_t *)base)[i] = v != 0; break;
    default: break;
    }
}

double sg_tensor_get(const sg_tensor *t, int64_t flat)
{
    return load(t->dtype, t->data, flat_to_offset(t, flat));
}

void sg_tensor_set(sg_tensor *t, int64_t flat, double v)
{
    store(t->dtype, t->data, flat_to_offset(t, flat), v);
}

double sg_tensor_grad_get(const sg_tensor *t, int64_t flat)
{
    return t->grad ? load(t->dtype, t->grad, flat) : 0.0;
}

void sg_tensor_fill_(sg_tensor *t, double v)
{
    int64_t n = sg_tensor_numel(t);
    if (sg_tensor_is_contiguous(t) && t->dtype == SG_F32) {
        float *p = t->data;
        for (int64_t i = 0; i < n; i++)
            p[i] = (float)v;
        return;
    }
    for (int64_t i = 0; i < n; i++)
        sg_tensor_set(t, i, v);
}

typedef struct {
    sg_dtype dd, sd;
} copy_ctx;

static void copy_kernel(int64_t n, char **p, const int64_t *s, void *user)
{
    const copy_ctx *c = user;
    if (c->dd == c->sd && s[0] == 1 && s[1] == 1) { /* a contiguous run, e.g. a concat row */
        memcpy(p[0], p[1], (size_t)n * sg_dtype_size(c->dd));
        return;
    }
    if (c->dd == SG_F32 && c->sd == SG_F32) {
        float *d = (float *)p[0];
        const float *x = (const float *)p[1];
        for (int64_t i = 0; i < n; i++)
            d[i * s[0]] = x[i * s[1]];
        return;
    }
    for (int64_t i = 0; i < n; i++)
        store(c->dd, p[0], i * s[0], load(c->sd, p[1], i * s[1]));
}

int sg_tensor_copy_(sg_tensor *dst, const sg_tensor *src)
{
    if (!dst || !src)
        return sg__error(SG_EINVAL, "sg_tensor_copy_: tensor is NULL");
    if (!sg_tensor_same_shape(dst, src))
        return sg__error(SG_ESHAPE, "sg_tensor_copy_: destination %s and source %s differ",
                         SG_SHAPE(dst), SG_SHAPE(src));
    if (dst->dtype != src->dtype && !(sg_dtype_is_float(dst->dtype) && sg_dtype_is_float(src->dtype)))
        return sg__error(SG_EDTYPE, "sg_tensor_copy_: cannot copy %s into %s",
                         sg_dtype_name(src->dtype), sg_dtype_name(dst->dtype));
    if (dst->dtype == src->dtype && sg_tensor_is_contiguous(dst) && sg_tensor_is_contiguous(src)) {
        memmove(dst->data, src->data, (size_t)sg_tensor_numel(dst) * sg_dtype_size(dst->dtype));
        return SG_OK;
    }
    sg__iter it;
    sg__iter_init(&it, dst->ndim, dst->shape);
    sg__iter_add(&it, dst->data, sg_dtype_size(dst->dtype), dst->stride);
    sg__iter_add(&it, src->data, sg_dtype_size(src->dtype), src->stride);
    copy_ctx c = {dst->dtype, src->dtype};
    sg__iter_run(&it, copy_kernel, &c);
    return SG_OK;
}

bool sg__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                         int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < na ? a[na - 1 - i] : 1;
        int64_t db = i < nb ? b[nb - 1 - i] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        out[n - 1 - i] = da == 1 ? db : da;
    }
    *nout = n;
    return true;
}

void sg__broadcast_strides(const sg_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int off = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int td = d - off;
        strides[d] = (td < 0 || (t->shape[td] == 1 && shape[d] != 1)) ? 0 : t->stride[td];
    }
}

void sg_tensor_print(const sg_tensor *t, FILE *f, int64_t max_elems)
{
    if (!t) {
        fprintf(f, "tensor(NULL)\n");
        return;
    }
    int64_t n = sg_tensor_numel(t);
    fprintf(f, "tensor(%s, %s%s) [", SG_SHAPE(t), sg_dtype_name(t->dtype),
            t->requires_grad ? ", requires_grad" : "");
    for (int64_t i = 0; i < n && i < max_elems; i++) {
        if (t->ndim > 0 && i % t->shape[t->ndim - 1] == 0 && i)
            fprintf(f, "\n ");
        fprintf(f, sg_dtype_is_float(t->dtype) ? "% .6g " : "%.0f ", sg_tensor_get(t, i));
    }
    fprintf(f, "%s]\n", n > max_elems ? "..." : "");
}
