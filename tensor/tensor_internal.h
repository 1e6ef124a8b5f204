/* tensor_internal.h - helpers shared by the library's .c files; not installed. */
#ifndef SG_TENSOR_INTERNAL_H
#define SG_TENSOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_rng.h"
#include "sg_tensor.h"

#define SG_INTERNAL __attribute__((visibility("hidden")))

/* Records this thread's error message and returns code. */
SG_INTERNAL int sg__error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
SG_INTERNAL const char *sg__shape_str(const sg_tensor *t, char *buf, size_t n);

/* Shape string for messages: SG_SHAPE(t) expands to a temporary buffer. */
#define SG_SHAPE(t) sg__shape_str((t), (char[96]){0}, 96)

/* Sets bytes of buf to 0; where buf is large (1 MiB or more) and the system allows it
 * (Linux), by giving its whole pages back, which take no memory until written again
 * (zero_pages.c). buf must be memory of this process's heap or private mappings. */
SG_INTERNAL void sg__zero_pages(void *buf, size_t bytes);

/* Element ranges [begin, end) of a buffer. */
typedef struct sg__span {
    int64_t begin, end;
} sg__span;

/* The ranges of buf's n elements (es bytes each; es divides the page size) that may hold
 * non-zero values: every page that is present or swapped out, per Linux's
 * /proc/self/pagemap. A page of private anonymous memory that is neither has not been
 * written since sg__zero_pages gave it back (or since it was mapped): it reads as zeros,
 * and reading it would only fault in the zero page. For a gradient of which a batch
 * wrote a few rows, the readers (the norm, the update) skip the rest. Returns the number
 * of spans, in increasing order, in *spans (malloc'd; the caller frees it; NULL when 0);
 * or -1 when the buffer is smaller than what sg__zero_pages gives back (1 MiB) or the
 * map cannot be read (not Linux, no /proc, out of memory): the caller reads the whole
 * buffer. */
SG_INTERNAL int64_t sg__nonzero_spans(const void *buf, int64_t n, size_t es, sg__span **spans);

/* Fills shape/stride of a contiguous row-major tensor; returns numel or -1. */
SG_INTERNAL int64_t sg__init_contiguous(sg_tensor *t, sg_dtype dt, int ndim, const int64_t *shape);

/* Broadcast shapes a and b (NumPy rules) into out; false if incompatible. */
SG_INTERNAL bool sg__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b,
                                     int *nout, int64_t *out);
/* Strides of t seen through a broadcast to (ndim, shape): 0 in broadcast dims. */
SG_INTERNAL void sg__broadcast_strides(const sg_tensor *t, int ndim, const int64_t *shape,
                                       int64_t *strides);

/*
 * N-d iteration over a shape with up to 4 operands, each with its own element
 * strides and element size. The innermost dimension is handed to a kernel as one
 * strided 1-D loop, so kernels are tight loops. Dims are coalesced when possible.
 */
#define SG_ITER_MAX_OPS 4
typedef struct sg__iter {
    int ndim, nop;
    int64_t shape[SG_MAX_DIMS];
    int64_t stride[SG_ITER_MAX_OPS][SG_MAX_DIMS]; /* in elements */
    char *ptr[SG_ITER_MAX_OPS];
    size_t esize[SG_ITER_MAX_OPS];
} sg__iter;

/* kernel(n, ptrs, inner strides in elements, user) */
typedef void (*sg__iter_fn)(int64_t n, char **p, const int64_t *s, void *user);

SG_INTERNAL void sg__iter_init(sg__iter *it, int ndim, const int64_t *shape);
SG_INTERNAL void sg__iter_add(sg__iter *it, void *data, size_t esize, const int64_t *strides);
SG_INTERNAL void sg__iter_run(sg__iter *it, sg__iter_fn fn, void *user);

/* The OpenMP form of SG_FOR's loop (use SG_FOR): iterations split over nt threads in
 * equal static shares, so results do not depend on the split. */
#ifdef _OPENMP
#define SG_OMP_FOR(nt) _Pragma("omp parallel for num_threads(nt) if(nt > 1) schedule(static)")
#else
#define SG_OMP_FOR(nt)
#endif

/* for (int64_t i = 0; i < n; i++) { body }, a loop whose iterations are independent:
 * split over nt threads when nt > 1 (SG_OMP_FOR), else run on the calling thread without
 * entering OpenMP: libgomp makes a team even for a region whose if() is false and ends
 * it with a futex system call (0.7 us on this KVM machine), which the per-time-step
 * products and row loops paid ~350 times a dates training step at 1 thread. The caller's
 * thread count must be a variable named nt. */
#define SG_FOR(nt, i, n, ...)                                                               \
    do {                                                                                    \
        if ((nt) > 1) {                                                                     \
            SG_OMP_FOR(nt)                                                                  \
            for (int64_t i = 0; i < (n); i++) {                                             \
                __VA_ARGS__                                                                 \
            }                                                                               \
        } else {                                                                            \
            for (int64_t i = 0; i < (n); i++) {                                             \
                __VA_ARGS__                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)

/* Products up to this many multiply-adds count as small: blas.c sends them to LIBXSMM
 * (when built with it) if both operands are row-major. Their operands fit in a core's L2
 * (e.g. a beam's 320 x 320 x 384 step projection), where LIBXSMM's unpacked kernels beat
 * BLIS's packing: 400^3 rather than 256^3 made dates-bahdanau training 6-8% faster. */
#define SG_SMALL_GEMM_MNK (400.0 * 400.0 * 400.0)
/* Products of at least this many multiply-adds are worth waking the library's threads. */
#define SG_SMALL_GEMM_THREADS (96.0 * 96.0 * 96.0)
/* Adds a product's 2 m n k to sg_gemm_flops. */
SG_INTERNAL void sg__count_gemm_flops(int64_t m, int64_t n, int64_t k);

/* A right operand B [k, n] of f32 packed for sg__gemm_packed (gemm_packed.c): column
 * panels 16 wide, each k rows deep, the last padded with zeros. p is the caller's. */
typedef struct sg__packed {
    float *p;
    int64_t k, n;
} sg__packed;
/* Whether sg__gemm_packed runs here: f32 on an AVX2+FMA CPU where small products do
 * not go to LIBXSMM. Where false, callers use sg__gemm. */
SG_INTERNAL bool sg__packed_gemm_on(sg_dtype dt);
/* Floats that sg__pack needs for a B of [k, n]. */
SG_INTERNAL size_t sg__packed_floats(int64_t k, int64_t n);
/* Packs B [k, n] (element strides rsb, csb) into buf (sg__packed_floats(k, n) floats,
 * the caller's) and describes it in *dst. */
SG_INTERNAL void sg__pack(sg__packed *dst, float *buf, const float *B, int64_t k, int64_t n,
                          int64_t rsb, int64_t csb);
/* C [m, n] = A [m, k] B' (acc: C += A B') where B' is rows [k0, k0 + k) and columns
 * [j0, j0 + n) of the packed B (j0 a multiple of 16); A and C row-major with row strides
 * lda, ldc. Requires sg__packed_gemm_on(SG_F32). */
SG_INTERNAL void sg__gemm_packed(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                                 const sg__packed *B, int64_t k0, int64_t j0, bool acc,
                                 float *C, int64_t ldc);
/* C [m, n] = A B (acc: C += A B) with A [m, k] of any element strides (rsa, csa), B [k, n]
 * row-major with row stride ldb, C row-major (ldc), by the kernel of sg__gemm_packed:
 * A's rows copied six at a time, B read in place (copied into panels from 512 rows of C
 * on, when that memory can be had); false, doing nothing, unless sg__packed_gemm_on(SG_F32),
 * n is a multiple of 16 and 1 <= k <= SG_DIRECT_GEMM_MAX_K (a panel of B, k x 16, then
 * stays in L1). For the weight gradients of one time step, dY^T X over a batch of rows.
 * Called by sg__gemm only, which counts the product's FLOPs (this does not). */
#define SG_DIRECT_GEMM_MAX_K 128
SG_INTERNAL bool sg__gemm_direct(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa,
                                 int64_t csa, const float *B, int64_t ldb, bool acc, float *C,
                                 int64_t ldc);
/* C [m, n] = alpha A B (acc: C += alpha A B) for a product too small for BLIS's set-up to
 * pay (one attention head's scores, 12 x 12 x 64: BLIS made 9.6 GFLOP/s of enfr-
 * transformer's): A [m, k] and B [k, n] of any element strides, C row-major (ldc), by the
 * kernel of sg__gemm_packed: B copied into panels on the stack, A's rows six at a time,
 * alpha applied to A's copy; on the calling thread. false, doing nothing, unless
 * sg__packed_gemm_on(SG_F32), 1 <= k <= SG_DIRECT_GEMM_MAX_K and B's panels fit in
 * SG_SMALL_GEMM_MAX_B floats. Called by sg__gemm only, which counts the product's FLOPs. */
#define SG_SMALL_GEMM_MAX_B 8192
SG_INTERNAL bool sg__gemm_small(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                                int64_t rsa, int64_t csa, const float *B, int64_t rsb,
                                int64_t csb, bool acc, float *C, int64_t ldc);
/* Whether small products go to LIBXSMM (built with it, and chosen for this CPU or by
 * SG_XSMM), whose kernels need row-major operands: only then is a transposed copy of a
 * weight worth making for them. */
SG_INTERNAL bool sg__small_gemm_row_major(void);
/* C = alpha * op(A) * op(B) + beta * C with arbitrary element strides (rs, cs) on
 * every matrix, through BLIS; dt is SG_F32 or SG_F64. A is m x k, B is k x n after
 * the strides (transposition is expressed by swapping rs/cs). */
SG_INTERNAL void sg__gemm(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha,
                          const void *A, int64_t rsa, int64_t csa, const void *B, int64_t rsb,
                          int64_t csb, double beta, void *C, int64_t rsc, int64_t csc);

/* Threads for seqgrad's own loops and BLIS (<= the configured count, and <= the calling
 * thread's cap). */
SG_INTERNAL int sg__threads(void);
/* Caps the threads the calling thread's operations use (0: no cap): a thread that is
 * itself one of several workers runs its operations on 1. */
SG_INTERNAL void sg__set_thread_cap(int n);

#endif
