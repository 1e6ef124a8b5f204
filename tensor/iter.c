/* iter.c - N-d strided iteration handing the innermost dimension to a 1-D kernel. */
#include "tensor_internal.h"

void sg__iter_init(sg__iter *it, int ndim, const int64_t *shape)
{
    it->ndim = ndim;
    it->nop = 0;
    for (int d = 0; d < ndim; d++)
        it->shape[d] = shape[d];
}

void sg__iter_add(sg__iter *it, void *data, size_t esize, const int64_t *strides)
{
    int k = it->nop++;
    it->ptr[k] = data;
    it->esize[k] = esize;
    for (int d = 0; d < it->ndim; d++)
        it->stride[k][d] = strides[d];
}

/* Drops size-1 dims and merges neighbours that are contiguous for every operand. */
static void coalesce(sg__iter *it)
{
    int nd = 0;
    for (int d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 1)
            continue;
        if (nd > 0) {
            bool merge = true;
            for (int k = 0; k < it->nop; k++)
                if (it->stride[k][nd - 1] != it->stride[k][d] * it->shape[d])
                    merge = false;
            if (merge) {
                it->shape[nd - 1] *= it->shape[d];
                for (int k = 0; k < it->nop; k++)
                    it->stride[k][nd - 1] = it->stride[k][d];
                continue;
            }
        }
        it->shape[nd] = it->shape[d];
        for (int k = 0; k < it->nop; k++)
            it->stride[k][nd] = it->stride[k][d];
        nd++;
    }
    it->ndim = nd;
}

void sg__iter_run(sg__iter *it, sg__iter_fn fn, void *user)
{
    for (int d = 0; d < it->ndim; d++)
        if (it->shape[d] == 0)
            return;
    coalesce(it);
    char *p[SG_ITER_MAX_OPS];
    int64_t inner_s[SG_ITER_MAX_OPS];
    for (int k = 0; k < it->nop; k++)
        p[k] = it->ptr[k];
    if (it->ndim == 0) {
        for (int k = 0; k < it->nop; k++)
            inner_s[k] = 0;
        fn(1, p, inner_s, user);
        return;
    }
    int last = it->ndim - 1;
    int64_t n = it->shape[last];
    for (int k = 0; k < it->nop; k++)
        inner_s[k] = it->stride[k][last];
    int64_t idx[SG_MAX_DIMS] = {0};
    for (;;) {
        fn(n, p, inner_s, user);
        /* odometer over the outer dims */
        int d = last - 1;
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < it->nop; k++)
                p[k] += it->stride[k][d] * (int64_t)it->esize[k];
            if (idx[d] < it->shape[d])
                break;
            for (int k = 0; k < it->nop; k++)
                p[k] -= it->stride[k][d] * it->shape[d] * (int64_t)it->esize[k];
            idx[d] = 0;
        }
        if (d < 0)
            return;
    }
}
