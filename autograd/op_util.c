/* op_util.c - small helpers shared by the op files: checked result allocation,
 * offset tables for strided loops, shape strings. */
#include "autograd_internal.h"

#include <stdio.h>

const char *sg__dims_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}

sg_tensor *sg__empty_for(sg_graph *g, const char *op, sg_dtype dt, int ndim, const int64_t *shape)
{
    int64_t bytes = (int64_t)sg_dtype_size(dt);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(bytes, shape[d], &bytes))
            return sg_graph_fail(g, SG_ENOMEM, "%s: result %s of %s is too large to allocate", op,
                                 SG_DIMS(ndim, shape), sg_dtype_name(dt));
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (!t)
        return sg_graph_fail(g, sg_graph_status(g) ? sg_graph_status(g) : SG_ENOMEM,
                             "%s: cannot allocate the result %s of %s (%s)", op,
                             SG_DIMS(ndim, shape), sg_dtype_name(dt), sg_last_error());
    return t;
}

void sg__offsets(int ndim, const int64_t *shape, const int64_t *strides, int64_t *out)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    int64_t idx[SG_MAX_DIMS] = {0}, off = 0;
    for (int64_t p = 0; p < n; p++) {
        out[p] = off;
        for (int d = ndim - 1; d >= 0; d--) {
            off += strides[d];
            if (++idx[d] < shape[d])
                break;
            off -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}
