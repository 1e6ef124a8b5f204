/*
 * sg_tensor.h - n-dimensional strided tensors.
 *
 * A tensor is a view: dtype, shape, strides in elements and a pointer to element
 * [0,...,0]. Views (transpose, slice, expand, ...) share the storage of the tensor
 * they come from and never copy. Tensors are not reference counted: a tensor lives
 * as long as its owner.
 *   - Heap tensors (sg_tensor_new) own their storage; free them with sg_tensor_free.
 *     Model parameters are heap tensors owned by an sg_params store (nn/sg_params.h).
 *   - Graph tensors (autograd/sg_autograd.h) live in a graph's arena and are all
 *     released at once by sg_graph_reset / sg_graph_free.
 *
 * Gradients: t->grad, when not NULL, is a contiguous row-major buffer with t's
 * shape and dtype, owned like t (heap tensors: by the tensor; graph tensors: by the
 * graph's arena).
 *
 *     int64_t shape[] = {2, 3};
 *     sg_tensor *w = sg_tensor_new(SG_F32, 2, shape);   // zero-filled
 *     sg_tensor_set_requires_grad(w, true);             // allocates w->grad
 *     ...
 *     sg_tensor_free(w);
 */
#ifndef SG_TENSOR_H
#define SG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sg_arena.h"
#include "sg_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_MAX_DIMS 8

typedef enum sg_dtype {
    SG_F32 = 0, /* float: models */
    SG_F64,     /* double: gradient checks; every float op supports it */
    SG_I64,     /* int64_t: token ids, indices, argmax */
    SG_BOOL,    /* uint8_t 0/1: masks (1 = true) */
    SG_DTYPE_COUNT
} sg_dtype;

struct sg_node;

typedef struct sg_tensor {
    sg_dtype dtype;
    int ndim;                      /* 0 <= ndim <= SG_MAX_DIMS; 0 is a scalar */
    int64_t shape[SG_MAX_DIMS];
    int64_t stride[SG_MAX_DIMS];   /* in elements; 0 for broadcast (expanded) dims */
    void *data;                    /* address of element [0,...,0] */
    void *grad;                    /* contiguous gradient of shape `shape`, or NULL */
    struct sg_node *node;          /* op that made this tensor in a graph; NULL for leaves */
    bool requires_grad;            /* gradients flow to it (leaf) or through it */
    bool owns_data;                /* heap tensor that frees data and grad */
} sg_tensor;

/* Size in bytes of one element of dtype; 0 for an invalid dtype. */
SG_API size_t sg_dtype_size(sg_dtype dt);
/* "f32", "f64", "i64", "bool"; "?" for an invalid dtype. */
SG_API const char *sg_dtype_name(sg_dtype dt);
SG_API bool sg_dtype_is_float(sg_dtype dt);

/* A zero-filled contiguous heap tensor. NULL on SG_EINVAL (ndim or shape out of
 * range, negative size, bad dtype) or SG_ENOMEM. Free with sg_tensor_free. */
SG_API sg_tensor *sg_tensor_new(sg_dtype dt, int ndim, const int64_t *shape);

/* A heap tensor holding a copy of a row-major C buffer of numel elements of dt. */
SG_API sg_tensor *sg_tensor_from_buffer(sg_dtype dt, int ndim, const int64_t *shape,
                                        const void *buf);

/* A contiguous heap copy of any tensor (views included), without the gradient. */
SG_API sg_tensor *sg_tensor_clone(const sg_tensor *t);

/* Frees a heap tensor with its data and gradient; accepts NULL. Must not be given a
 * graph tensor (those are freed by their graph). */
SG_API void sg_tensor_free(sg_tensor *t);

/* Marks a leaf heap tensor as requiring gradients and allocates its zeroed grad
 * buffer (or drops it when on = false). SG_EINVAL for non-float dtypes or graph
 * tensors, SG_ENOMEM. */
SG_API int sg_tensor_set_requires_grad(sg_tensor *t, bool on);

/* Zeroes t->grad if present. */
SG_API void sg_tensor_zero_grad(sg_tensor *t);

SG_API int64_t sg_tensor_numel(const sg_tensor *t);
SG_API bool sg_tensor_is_contiguous(const sg_tensor *t);
/* Checks that two tensors have equal shapes (SG_ESHAPE with a message naming op). */
SG_API bool sg_tensor_same_shape(const sg_tensor *a, const sg_tensor *b);

/* Element access by flat row-major index (views are honoured), as double.
 * For tests and debugging, not for kernels. Out-of-range index is not checked. */
SG_API double sg_tensor_get(const sg_tensor *t, int64_t flat_index);
SG_API void sg_tensor_set(sg_tensor *t, int64_t flat_index, double v);
/* The gradient element at a flat index (0 if there is no gradient). */
SG_API double sg_tensor_grad_get(const sg_tensor *t, int64_t flat_index);

/* Copies src into dst elementwise (shapes must match; dtypes may differ between
 * float types; views are honoured on both sides). SG_ESHAPE/SG_EDTYPE. */
SG_API int sg_tensor_copy_(sg_tensor *dst, const sg_tensor *src);

/* Fills every element of t with v. */
SG_API void sg_tensor_fill_(sg_tensor *t, double v);

/* Prints shape, dtype and (up to max_elems) values, PyTorch-like; to stream f. */
SG_API void sg_tensor_print(const sg_tensor *t, FILE *f, int64_t max_elems);

/* The shape as "[2,3,4]" into buf (at most n bytes); returns buf. */
SG_API const char *sg_tensor_shape_str(const sg_tensor *t, char *buf, size_t n);

/* Number of compute threads for BLIS and seqgrad's own parallel loops together
 * (n >= 1; SG_EINVAL otherwise). Also read from SG_NUM_THREADS at the first BLAS call.
 *
 * BLIS runs its threads with OpenMP (libgomp). With n > 1, set OMP_WAIT_POLICY=PASSIVE
 * and GOMP_SPINCOUNT=10000 in the environment of the program. By default idle BLIS
 * threads spin for milliseconds after every GEMM, burning a core while the main thread
 * runs single-threaded ops (and stealing it from the main thread when cores are
 * shared); with PASSIVE alone they sleep at once, which makes the barriers inside one
 * small GEMM slow (a futex wake each) when cores are busy; a short spin (10000) keeps
 * those fast. libgomp reads both once, when it is loaded, so the library cannot set
 * them for its own process. seqgrad's test scripts, CI and benchmarks set them.
 *
 * The first call (or first BLAS use) also selects BLIS's AVX-512 (skx) kernels on CPUs
 * that have AVX-512, unless BLIS_ARCH_TYPE is set (BLIS 0.9 wants its numeric arch id
 * there). This only works if nothing initialised BLIS before seqgrad did. */
SG_API int sg_set_num_threads(int n);
SG_API int sg_get_num_threads(void);

/* Floating-point operations (2 m n k per m x k by k x n product) of every matrix
 * product run through BLIS by this process so far, all threads together; for
 * benchmarks that report achieved GFLOP/s (difference of two readings). */
SG_API uint64_t sg_gemm_flops(void);

#ifdef __cplusplus
}
#endif
#endif
