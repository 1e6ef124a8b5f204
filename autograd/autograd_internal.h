/* autograd_internal.h - helpers for op implementations; not installed. */
#ifndef SG_AUTOGRAD_INTERNAL_H
#define SG_AUTOGRAD_INTERNAL_H

#include "../tensor/tensor_internal.h"
#include "sg_autograd.h"

/* Gradient and scratch buffers of a graph's backward, each freed when put back
 * (grad_pool.c). */
typedef struct sg_grad_pool {
    int64_t live; /* buffers handed out and not put back */
} sg_grad_pool;

/* A zeroed buffer of bytes (64-byte aligned); NULL when out of memory. */
SG_INTERNAL void *sg__grad_pool_get(sg_grad_pool *p, size_t bytes);
/* sg__grad_pool_get without the zeroing (for a caller that writes all of it). */
SG_INTERNAL void *sg__grad_pool_get_raw(sg_grad_pool *p, size_t bytes);
/* Frees a buffer that sg__grad_pool_get gave. */
SG_INTERNAL void sg__grad_pool_put(sg_grad_pool *p, void *buf);

/* Transposed copies of weights made in this graph (sg__weight_t); a decoding weight home
 * holds the encoder's and the decoder's (a 3+3-layer transformer has ~35 weights). */
#define SG_WT_CACHE 64
typedef struct sg_wt_entry {
    const void *data; /* the weight's data */
    int64_t rows, cols, rs, cs;
    int kind;         /* SG_WT_COPY_T: W^T row-major; SG_WT_PACK_T / SG_WT_PACK: W^T / W packed */
    void *t;          /* the copy, malloc'ed (sg__graph_drop_weight_copies) */
    sg__packed pk;    /* the packed kinds: t described for sg__gemm_packed */
} sg_wt_entry;
enum { SG_WT_COPY_T, SG_WT_PACK_T, SG_WT_PACK };

struct sg_graph {
    sg_arena *arena;
    sg_wt_entry wt[SG_WT_CACHE];
    int n_wt;
    sg_graph *wt_home; /* where sg__weight_t keeps copies, if not here */
    sg_grad_pool pool; /* gradients of op outputs, released as backward passes them */
    sg_node *tape;      /* last recorded node */
    int64_t n_nodes;
    size_t kept_bytes, keep_budget; /* sg__graph_keep: kept since the reset, and may keep */
    int status;
    bool grad_enabled;
};

/* Return NULL from an op if any argument is NULL (first error already recorded). */
#define SG_NEED(...)                                                                        \
    do {                                                                                    \
        const void *need_[] = {__VA_ARGS__};                                                \
        for (size_t k_ = 0; k_ < sizeof need_ / sizeof *need_; k_++)                        \
            if (!need_[k_])                                                                 \
                return NULL;                                                                \
    } while (0)

/* Normalises a possibly negative dim for ndim dims; -1 if out of range. */
SG_INTERNAL int sg__dim(int dim, int ndim);
/* Whether an op that can either keep values for its backward or make them again there
 * keeps `bytes` more: yes while what such ops kept since sg_graph_reset stays within the
 * graph's budget (sg_graph_set_keep_budget), and then they are counted. */
SG_INTERNAL bool sg__graph_keep(sg_graph *g, size_t bytes);
/* The node recorded last in g (NULL if none): no op has consumed its outputs yet. */
SG_INTERNAL const sg_node *sg__graph_last_node(const sg_graph *g);

/* The transpose [cols, rows] (row-major) of the 2-D tensor w [rows, cols], which must be
 * a weight or a view of one, made once per graph and reused until sg_graph_reset or a
 * backward (after which an optimiser may change w): a step that multiplies by W^T at
 * every time step then gives the small-product kernels two row-major operands. The
 * caller must not change w's data in between. `uses`: products the caller is about to
 * make with it; a copy is made only when it will be reused (uses > 1, grad mode on: a
 * training step's decoder runs every step in the same graph, or g keeps its copies in
 * a longer-lived graph, sg__graph_set_weight_home). NULL if not, if w does not qualify,
 * or on SG_ENOMEM (no error recorded): the caller then uses w as it is. */
SG_INTERNAL const void *sg__weight_t(sg_graph *g, const sg_tensor *w, int64_t uses);

/* A matrix operand of sg__gemm: data, row stride, column stride; pk, when not NULL, the
 * same matrix packed for sg__gemm_packed (sg__gemm_op takes it). */
typedef struct sg__operand {
    const void *p;
    int64_t rs, cs;
    const sg__packed *pk;
} sg__operand;
/* C [m, n] = A [m, k] (row stride lda) B' + beta C (row stride ldc), B' rows [k0, k0 + k)
 * and columns [j0, j0 + n) of B, an operand of sg__weight_t_operand or
 * sg__weight_operand: through sg__gemm_packed when B.pk is set, beta is 0 or 1 and j0 a
 * multiple of 16, else sg__gemm. */
SG_INTERNAL void sg__gemm_op(sg_dtype dt, int64_t m, int64_t n, int64_t k, const void *A,
                             int64_t lda, sg__operand B, int64_t k0, int64_t j0, double beta,
                             void *C, int64_t ldc);
/* W [rows, cols] itself as the right operand of a product dY W (a step's input
 * gradient): packed once per graph when `reuse` says that products with it repeat and
 * the packed kernel runs here (sg__packed_gemm_on), else W read in place. Packed copies
 * made during a backward are dropped at its end. */
SG_INTERNAL sg__operand sg__weight_operand(sg_graph *g, const sg_tensor *w, bool reuse);
/* W^T for a product x W^T: sg__weight_t's row-major copy when `copy` asks for one, small
 * products go to LIBXSMM (sg__small_gemm_row_major) and it is made, else w's own data
 * read transposed. */
SG_INTERNAL sg__operand sg__weight_t_operand(sg_graph *g, const sg_tensor *w, int64_t uses,
                                             bool copy);
/* The W^T operand of a product x W^T of `rows` rows by a weight w [out, in]: the copy of
 * sg__weight_t_operand when the product is small (SG_SMALL_GEMM_MNK, at least 8 rows), or
 * has at most 128 rows and the packed kernel runs (op_matmul.c), and w is a heap tensor
 * (a decoder's per-step projection, a generator at a decoding step), since blas.c's
 * kernels for small products need row-major operands and a packed copy spares BLIS's
 * packing of W on every step; else w read transposed. */
SG_INTERNAL sg__operand sg__linear_weight_operand(sg_graph *g, const sg_tensor *w, int64_t rows);
/* Whether sg__linear_weight_operand takes a copy for this product (its backward's dY W
 * then takes one too: sg__weight_operand). */
SG_INTERNAL bool sg__linear_weight_reused(const sg_tensor *w, int64_t rows);
/* sg_grad_of for a backward that will write every element of t's gradient: when t has
 * no gradient yet and is an op's output, the pooled buffer comes unzeroed and *fresh is
 * true (the caller must then overwrite it all, e.g. a GEMM with beta = 0, instead of
 * adding); otherwise the existing or zeroed buffer and *fresh false. NULL as sg_grad_of. */
SG_INTERNAL void *sg__grad_for_write(sg_graph *g, sg_tensor *t, bool *fresh);
/* Scratch memory for one call of an op's forward or backward: uninitialised, 64-byte
 * aligned, from the gradient pool, so that it is reused by the gradients and scratch
 * that follow (from the arena, scratch stayed until the step ended: enfr-luong's 48
 * decoder cell steps left 28 MB of backward scratch). Give it back with sg__scratch_put
 * before the call returns. NULL with SG_ENOMEM recorded on g (the message names who). */
SG_INTERNAL void *sg__scratch_get(sg_graph *g, size_t bytes, const char *who);
SG_INTERNAL void sg__scratch_put(sg_graph *g, void *p);
/* y [B, T, D] = the K pieces side by side along the last dim, for a decoder's per-step
 * outputs: piece k is the T steps seq[k][0..T) [B, d_k] when seq[k] is not NULL, else
 * whole[k] [B, T, d_k]. One copy of each value (sg_stack of per-step sg_concats copies
 * twice), one in backward. SG_ESHAPE / SG_EDTYPE naming the first piece that does not
 * fit, SG_ENOMEM; NULL inputs propagate. */
#define SG_JOIN_STEPS_OP "sg_concat (of decoder steps)" /* its nodes' name */
SG_INTERNAL sg_tensor *sg__join_steps(sg_graph *g, int K, int64_t T, sg_tensor **const *seq,
                                      sg_tensor *const *whole);
/* sg_linear(sg_concat([a, b], last dim), w, bias) without making the join: a [..., Ka]
 * and b [..., Kb] with the same leading dims, w [out, Ka + Kb], bias [out] or NULL.
 * Recorded as an "sg_linear" node (its backward reads no output). SG_ESHAPE, SG_EDTYPE,
 * SG_ENOMEM recorded on g; NULL then. */
SG_INTERNAL sg_tensor *sg__linear_cat2(sg_graph *g, sg_tensor *a, sg_tensor *b, sg_tensor *w,
                                       sg_tensor *bias);
/* Y[r, 0..N) = b + X[r] W^T for the R rows of X (row stride ldx, unit column stride) into
 * Y (row stride ldy): W is [N, K] with strides (ws0, ws1), b [N] contiguous or NULL (then
 * no bias). The bias rows are written first and the product added (one GEMM, beta 1),
 * as sg_linear does; K = 0 leaves b (or zeros). */
SG_INTERNAL void sg__affine(sg_dtype dt, int64_t R, int64_t N, int64_t K, const void *X,
                            int64_t ldx, const void *W, int64_t ws0, int64_t ws1, const void *b,
                            void *Y, int64_t ldy);
/* sg__affine with W^T as an operand of sg__weight_t_operand (packed when it is). */
SG_INTERNAL void sg__affine_op(sg_dtype dt, int64_t R, int64_t N, int64_t K, const void *X,
                               int64_t ldx, sg__operand Wt, const void *b, void *Y,
                               int64_t ldy);
/* Makes g keep its transposed weights in home (NULL: in g itself), which must outlive
 * g's use and see no weight change meanwhile: a decoder's per-step graphs, reset every
 * step, share the copies of a graph that lives for the whole decode. */
SG_INTERNAL void sg__graph_set_weight_home(sg_graph *g, sg_graph *home);
/* Frees the transposed weight copies g made (sg__weight_t; malloc blocks, not arena
 * memory, so that they can go before the step ends): at reset, at free, when backward
 * starts (an optimiser may change the weights after it), and from an op that ends a
 * forward and needs memory (the fused generator loss: enfr-luong's decoder made 7 MB of
 * copies that the loss's chunk would sit on top of). A later sg__weight_t makes a copy
 * again. */
SG_INTERNAL void sg__graph_drop_weight_copies(sg_graph *g);

/* True when BLIS can read t's last two dims as a matrix in place: no stride 0 in a dim
 * of size > 1 (an expanded operand); else it must be made contiguous first. */
SG_INTERNAL bool sg__blis_ok(const sg_tensor *t);
/* Whether sg_record would record a node with these inputs (grad enabled and one of them
 * requires grad): an op may skip saving what only its backward reads. */
SG_INTERNAL bool sg__will_record(const sg_graph *g, int n_in, sg_tensor *const *ins);

/* A graph tensor header sharing data (for views); copies dtype from x. */
SG_INTERNAL sg_tensor *sg__view_header(sg_graph *g, const sg_tensor *x);

/* sg_tanh, sg_mul_scalar and sg_add writing their output over their (first) input, which
 * must be contiguous (for the sum: of the broadcast shape, else a new output is made) and
 * which the caller never reads again; their nodes and values are those of the ops. Safe
 * because their backwards need none of the input's old values (tanh's reads its output,
 * the other two no data). For model code (nn_internal.h: sg__tanh_over and
 * sg__scale_add_over decide when). */
SG_INTERNAL sg_tensor *sg__tanh_in_place(sg_graph *g, sg_tensor *x);
SG_INTERNAL sg_tensor *sg__mul_scalar_in_place(sg_graph *g, sg_tensor *x, double s);
SG_INTERNAL sg_tensor *sg__add_in_place(sg_graph *g, sg_tensor *a, sg_tensor *b);

/* Checks a float dtype (and equal dtypes for two operands); records error. */
SG_INTERNAL bool sg__check_float(sg_graph *g, const char *op, const sg_tensor *a);
SG_INTERNAL bool sg__check_same_float(sg_graph *g, const char *op, const sg_tensor *a,
                                      const sg_tensor *b);

/* dst (strided view over a float buffer, shape dst_shape) += src (contiguous, shape
 * src_shape which broadcasts to... the reverse: dst_strides are given for src's
 * shape and are 0 where dst is broadcast), so summing reduces over broadcast dims. */
SG_INTERNAL void sg__accumulate(sg_dtype dt, void *dst, const int64_t *dst_strides, int ndim,
                                const int64_t *shape, const void *src,
                                const int64_t *src_strides);
/* dst[j] += sum_r src[r * ld + j] for j < cols, r < rows: a bias's gradient. Columns
 * split over threads when large; each column is summed in row order (any thread count
 * gives the same result). */
SG_INTERNAL void sg__add_colsum(sg_dtype dt, void *dst, const void *src, int64_t rows,
                                int64_t cols, int64_t ld);

/* Contiguous strides of shape into out. */
SG_INTERNAL void sg__contig_strides(int ndim, const int64_t *shape, int64_t *out);

/* sg_empty for an op's result, but a size that overflows (numel * element size beyond
 * INT64_MAX) fails with SG_ENOMEM and a message naming op and the shape (op_util.c). */
SG_INTERNAL sg_tensor *sg__empty_for(sg_graph *g, const char *op, sg_dtype dt, int ndim,
                                     const int64_t *shape);

/* Element offsets (with strides) of every index of shape, in row-major order, into out
 * (prod(shape) entries; one entry 0 for ndim 0). */
SG_INTERNAL void sg__offsets(int ndim, const int64_t *shape, const int64_t *strides,
                             int64_t *out);

/* A shape array as "[2,3]" into buf (n bytes); returns buf. */
SG_INTERNAL const char *sg__dims_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define SG_DIMS(nd, s) sg__dims_str((nd), (s), (char[96]){0}, 96)

#endif
