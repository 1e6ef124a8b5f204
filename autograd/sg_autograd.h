/*
 * sg_autograd.h - define-by-run reverse-mode automatic differentiation.
 *
 * A graph (sg_graph) owns an arena. Every op takes the graph first, allocates its
 * result tensor in that arena and, when an input requires grad and grad mode is on,
 * records a node with its backward. sg_backward() walks the recorded nodes in
 * reverse creation order (a valid reverse topological order for define-by-run) and
 * accumulates gradients: into t->grad of leaves (heap tensors such as parameters,
 * whose grad buffers persist) and of intermediates. The gradient of an op's output is
 * released (t->grad back to NULL) as soon as that op's backward has run, so backward
 * never holds more than the live gradients. sg_graph_reset() releases every tensor,
 * node and gradient made in the graph; parameters and optimiser state live outside it.
 *
 *     sg_graph *g = sg_graph_new();
 *     for (step...) {
 *         sg_tensor *h = sg_tanh(g, sg_matmul(g, x, w));   // w: heap, requires grad
 *         sg_tensor *loss = sg_mean(g, sg_mul(g, h, h));
 *         if (!loss) { puts(sg_last_error()); break; }     // any op failing -> NULL
 *         sg_backward(g, loss);                            // w->grad += dloss/dw
 *         ... optimiser step, zero grads ...
 *         sg_graph_reset(g);                               // drop h, loss, nodes
 *     }
 *     sg_graph_free(g);
 *
 * Errors: an op given a NULL input returns NULL without a new message (the first
 * error is kept); an op that detects a problem records a message naming the op and
 * the shapes, sets the graph's sticky status and returns NULL. So an expression can
 * be built and checked once at the end (sg_graph_status).
 *
 * Ownership: every sg_tensor * returned by an op below is owned by the graph and
 * valid until sg_graph_reset/sg_graph_free; never sg_tensor_free it.
 * Masks are SG_BOOL tensors. Dims may be negative (counted from the end).
 */
#ifndef SG_AUTOGRAD_H
#define SG_AUTOGRAD_H

#include "sg_rng.h"
#include "sg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_graph sg_graph;
typedef struct sg_node sg_node;

/* Backward of a node: reads out[i]->grad (NULL if that output got no gradient) and
 * accumulates into the gradients of inputs that require grad (sg_grad_of). */
typedef void (*sg_backward_fn)(sg_graph *g, sg_node *node);

#define SG_NODE_MAX_OUT 4

struct sg_node {
    const char *name;          /* op name, for errors and debugging */
    sg_backward_fn backward;
    int n_in, n_out;
    sg_tensor **in;            /* arena array of n_in inputs */
    sg_tensor *out[SG_NODE_MAX_OUT];
    void *saved;               /* op-specific data saved for backward (arena) */
    double f[4];               /* op-specific scalars */
    int64_t i[4];              /* op-specific integers (dims, ...) */
    sg_node *prev;             /* previous node on the tape */
};

/* ---- graph ---------------------------------------------------------------- */

/* A new graph with an empty arena. NULL on SG_ENOMEM. */
SG_API sg_graph *sg_graph_new(void);
/* Frees the graph and everything made in it. Accepts NULL. */
SG_API void sg_graph_free(sg_graph *g);
/* Releases all tensors, nodes and gradients made in the graph (O(1)); clears the
 * sticky status. Leaves' (heap tensors') gradients are untouched. */
SG_API void sg_graph_reset(sg_graph *g);
/* SG_OK, or the first error code an op in this graph reported since the reset. */
SG_API int sg_graph_status(const sg_graph *g);
/* Turns recording on/off (no-grad scope); returns the previous setting. */
SG_API bool sg_graph_set_grad_enabled(sg_graph *g, bool enabled);
SG_API bool sg_graph_grad_enabled(const sg_graph *g);
/* The graph's arena, for ops that need scratch or saved memory. */
SG_API sg_arena *sg_graph_arena(sg_graph *g);
/* Number of nodes recorded since the last reset. */
SG_API int64_t sg_graph_node_count(const sg_graph *g);
/* Memory against speed: ops that can either keep values for their backward or make them
 * again there (the transformer feed-forward block's [tokens x F] hidden layer) keep them
 * while what they kept in one forward stays within `bytes`, and make the others again
 * (one more product each). A graph starts with SG_GRAPH_KEEP_DEFAULT; 0 keeps none (the
 * least memory). Applies from the next such op on; the values are the same either way.
 * Returns the previous budget (0 for a NULL g, which changes nothing). */
#define SG_GRAPH_KEEP_DEFAULT ((size_t)40 << 20)
SG_API size_t sg_graph_set_keep_budget(sg_graph *g, size_t bytes);

/* Computes gradients of scalar (numel 1) `loss` w.r.t. everything that requires grad,
 * seeding d loss = 1. SG_EINVAL if loss is NULL or not a scalar, or if the graph's
 * status is an error. May be called once per graph construction. */
SG_API int sg_backward(sg_graph *g, sg_tensor *loss);
/* Like sg_backward with an explicit output gradient of out's shape (any layout). */
SG_API int sg_backward_ex(sg_graph *g, sg_tensor *out, const sg_tensor *grad_out);

/* ---- for op authors (nn modules define fused ops with these) --------------- */

/* An uninitialised contiguous tensor in the graph's arena. NULL on error. */
SG_API sg_tensor *sg_empty(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
/* Records a node making outs from ins if grad mode is on and some input requires
 * grad; marks the outputs requires_grad then. Returns the node (to fill saved/f/i),
 * or NULL when nothing was recorded (also on SG_ENOMEM: check sg_graph_status). */
SG_API sg_node *sg_record(sg_graph *g, const char *name, sg_backward_fn backward, int n_in,
                          sg_tensor *const *ins, int n_out, sg_tensor *const *outs);
/* t's gradient buffer, allocated zero-filled in the graph if absent; NULL if t does
 * not require grad (or on SG_ENOMEM). Backward functions accumulate into it. */
SG_API void *sg_grad_of(sg_graph *g, sg_tensor *t);
/* A tensor header describing t's gradient buffer (contiguous, t's shape), or NULL. */
SG_API sg_tensor *sg_grad_tensor(sg_graph *g, sg_tensor *t);
/* Records an error on the graph (sticky) and as the thread's message; returns NULL. */
SG_API void *sg_graph_fail(sg_graph *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- creation (graph-owned) ------------------------------------------------ */
SG_API sg_tensor *sg_zeros(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
SG_API sg_tensor *sg_ones(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
SG_API sg_tensor *sg_full(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, double v);
/* [start, start+step, ...) with n elements, 1-D. */
SG_API sg_tensor *sg_arange(sg_graph *g, sg_dtype dt, int64_t n, double start, double step);
/* A copy of a row-major C buffer. */
SG_API sg_tensor *sg_from_buffer(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape,
                                 const void *buf);
SG_API sg_tensor *sg_rand(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, sg_rng *r);
SG_API sg_tensor *sg_randn(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, sg_rng *r);
/* A differentiable contiguous copy (always copies). */
SG_API sg_tensor *sg_copy(sg_graph *g, sg_tensor *x);
/* A tensor sharing x's data that does not require grad and records nothing. */
SG_API sg_tensor *sg_detach(sg_graph *g, sg_tensor *x);

/* ---- views (never copy) ---------------------------------------------------- */
/* Reshape: one dim may be -1. Views when x's layout allows, else SG_ESHAPE; use
 * sg_reshape to copy when needed. */
SG_API sg_tensor *sg_view(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape);
/* Like sg_view, copying (sg_contiguous) first when a view is impossible. */
SG_API sg_tensor *sg_reshape(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape);
SG_API sg_tensor *sg_permute(sg_graph *g, sg_tensor *x, const int *perm);
SG_API sg_tensor *sg_transpose(sg_graph *g, sg_tensor *x, int d0, int d1);
/* Elements start, start+1, ..., start+len-1 along dim. */
SG_API sg_tensor *sg_narrow(sg_graph *g, sg_tensor *x, int dim, int64_t start, int64_t len);
/* start:stop:step along dim (step >= 1, bounds clamped like Python slices). */
SG_API sg_tensor *sg_slice(sg_graph *g, sg_tensor *x, int dim, int64_t start, int64_t stop,
                           int64_t step);
/* Index i along dim, removing that dim. */
SG_API sg_tensor *sg_select(sg_graph *g, sg_tensor *x, int dim, int64_t i);
/* Broadcast size-1 dims (and new leading dims) to shape; -1 keeps a dim. */
SG_API sg_tensor *sg_expand(sg_graph *g, sg_tensor *x, int ndim, const int64_t *shape);
SG_API sg_tensor *sg_squeeze(sg_graph *g, sg_tensor *x, int dim);
SG_API sg_tensor *sg_unsqueeze(sg_graph *g, sg_tensor *x, int dim);
/* x itself if contiguous, else a contiguous copy. */
SG_API sg_tensor *sg_contiguous(sg_graph *g, sg_tensor *x);

/* ---- elementwise, NumPy broadcasting; a and b of the same float dtype ------- */
SG_API sg_tensor *sg_add(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_sub(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_mul(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_div(sg_graph *g, sg_tensor *a, sg_tensor *b);
/* Elementwise max/min; the gradient goes to a where a >= b (max) / a <= b (min). */
SG_API sg_tensor *sg_maximum(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_minimum(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_add_scalar(sg_graph *g, sg_tensor *a, double s);
SG_API sg_tensor *sg_mul_scalar(sg_graph *g, sg_tensor *a, double s);
/* a^p for a scalar exponent p. */
SG_API sg_tensor *sg_pow(sg_graph *g, sg_tensor *a, double p);
SG_API sg_tensor *sg_neg(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_exp(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_log(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_tanh(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_sigmoid(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_relu(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_sqrt(sg_graph *g, sg_tensor *a);
SG_API sg_tensor *sg_rsqrt(sg_graph *g, sg_tensor *a);

/* Comparisons (broadcasting) returning SG_BOOL masks; not differentiable. */
SG_API sg_tensor *sg_eq(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_lt(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_gt(sg_graph *g, sg_tensor *a, sg_tensor *b);
SG_API sg_tensor *sg_eq_scalar(sg_graph *g, sg_tensor *a, double s);
SG_API sg_tensor *sg_lt_scalar(sg_graph *g, sg_tensor *a, double s);
SG_API sg_tensor *sg_gt_scalar(sg_graph *g, sg_tensor *a, double s);
/* cond ? a : b elementwise (all three broadcast); gradient to the chosen side. */
SG_API sg_tensor *sg_where(sg_graph *g, sg_tensor *cond, sg_tensor *a, sg_tensor *b);
/* x with v where mask is true (mask broadcasts to x); no gradient there. */
SG_API sg_tensor *sg_masked_fill(sg_graph *g, sg_tensor *x, sg_tensor *mask, double v);

/* ---- reductions over a set of dims (n_dims = 0: all dims) ------------------ */
SG_API sg_tensor *sg_sum(sg_graph *g, sg_tensor *x, int n_dims, const int *dims, bool keepdim);
SG_API sg_tensor *sg_mean(sg_graph *g, sg_tensor *x, int n_dims, const int *dims, bool keepdim);
/* Max along one dim; *indices (optional) receives the SG_I64 argmax (first maximum; a
 * NaN counts as the maximum) and is set to NULL on failure. The gradient goes to the
 * argmax. Errors (max, argmax, logsumexp): SG_EDTYPE for a non-float x, SG_EINVAL for a
 * bad dim, SG_ESHAPE for an empty dim, SG_ENOMEM. */
SG_API sg_tensor *sg_max(sg_graph *g, sg_tensor *x, int dim, bool keepdim, sg_tensor **indices);
SG_API sg_tensor *sg_argmax(sg_graph *g, sg_tensor *x, int dim, bool keepdim);
/* log(sum(exp(x))) along dim, computed as m + log(sum(exp(x - m))) with m the max; a
 * row of -inf gives -inf and no gradient. */
SG_API sg_tensor *sg_logsumexp(sg_graph *g, sg_tensor *x, int dim, bool keepdim);
/* Shorthands: sum / mean of all elements to a scalar. */
SG_API sg_tensor *sg_sum_all(sg_graph *g, sg_tensor *x);
SG_API sg_tensor *sg_mean_all(sg_graph *g, sg_tensor *x);

/* ---- softmax family --------------------------------------------------------- */
/* Softmax / log-softmax along dim, numerically stable. mask (SG_BOOL, broadcast to x,
 * may be NULL): true = position takes part; masked positions get probability 0
 * (log-softmax: -inf). A row with no valid position yields all zeros (log-softmax:
 * all -inf) and zero gradient, never NaN. */
SG_API sg_tensor *sg_softmax(sg_graph *g, sg_tensor *x, int dim, sg_tensor *mask);
SG_API sg_tensor *sg_log_softmax(sg_graph *g, sg_tensor *x, int dim, sg_tensor *mask);

/* ---- matrix products (BLIS, strided operands are never copied) -------------- */
/* a [M,K] @ b [K,N] -> [M,N]; a [B,M,K] @ b [B,K,N] -> [B,M,N], a batch dim of 1 (or a
 * 2-D operand) broadcasts. Transposed views go to BLIS as strides. */
SG_API sg_tensor *sg_matmul(sg_graph *g, sg_tensor *a, sg_tensor *b);
/* x [..., in] @ w^T [out, in] + bias [out] (bias may be NULL): PyTorch's F.linear.
 * For a small product by a heap tensor w (a parameter), g keeps a transposed copy of w
 * for its later products until sg_backward or sg_graph_reset: do not write into w's
 * data in between (an optimiser steps after backward; gradcheck resets). */
SG_API sg_tensor *sg_linear(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *bias);

/* ---- joining, splitting, indexing -------------------------------------------- */
/* Copies n >= 1 tensors of one dtype (any layout) into one along dim (concat: shapes
 * equal except along dim; stack: equal shapes, joined along a new dim, which may be
 * ndim). SG_EINVAL (n < 1, bad dim), SG_EDTYPE, SG_ESHAPE, SG_ENOMEM (also when the
 * result's size overflows). A NULL in xs returns NULL. */
SG_API sg_tensor *sg_concat(sg_graph *g, int n, sg_tensor *const *xs, int dim);
SG_API sg_tensor *sg_stack(sg_graph *g, int n, sg_tensor *const *xs, int dim);
/* Views of x cut along dim into pieces of `sizes` (n pieces, sizes sum to the dim),
 * written to out[0..n). Returns SG_OK, SG_EINVAL (bad dim, n < 1, NULL sizes/out; a
 * NULL x returns the graph's first error, or SG_EINVAL, without a new message) or
 * SG_ESHAPE (sizes do not sum to the dim); on failure out[] is all NULL. */
SG_API int sg_split(sg_graph *g, sg_tensor *x, int dim, int n, const int64_t *sizes,
                    sg_tensor **out);
/* n equal views (the dim must divide by n, else SG_ESHAPE); errors like sg_split. */
SG_API int sg_chunk(sg_graph *g, sg_tensor *x, int dim, int n, sg_tensor **out);
/* Rows of x along dim picked by SG_I64 idx (any shape): result shape replaces dim
 * by idx's shape. Out-of-range index -> SG_ERANGE naming the index. Backward is a
 * scatter-add. With dim 0 on a [V, E] table this is the embedding lookup. */
SG_API sg_tensor *sg_index_select(sg_graph *g, sg_tensor *x, int dim, sg_tensor *idx);
/* torch.gather: out[i][j] = x[i][idx[i][j]] along dim (idx has x's ndim, and no dim
 * larger than x's except dim; out has idx's shape). Backward is a scatter-add.
 * Errors (index_select, gather, scatter_add): SG_EDTYPE (idx not SG_I64; x not float
 * for gather / scatter_add), SG_EINVAL (bad dim), SG_ESHAPE, SG_ERANGE (an index
 * outside [0, size of dim); checked before anything is written), SG_ENOMEM. */
SG_API sg_tensor *sg_gather(sg_graph *g, sg_tensor *x, int dim, sg_tensor *idx);
/* torch.scatter_add (out-of-place): base with src added at idx along dim:
 * out[i][idx[i][j]] += src[i][j] (dim 1). idx has base's ndim, is no larger than src
 * in any dim and no larger than base except along dim; base and src of one float
 * dtype. Gradients: d base = d out, d src = d out gathered at idx (0 elsewhere). */
SG_API sg_tensor *sg_scatter_add(sg_graph *g, sg_tensor *base, int dim, sg_tensor *idx,
                                 sg_tensor *src);

/* ---- gradient checking --------------------------------------------------------- */

/* Builds a function of the inputs in g and returns its (any-shape) output. */
typedef sg_tensor *(*sg_gradcheck_fn)(sg_graph *g, sg_tensor *const *inputs, void *user);

typedef struct sg_gradcheck_opts {
    double eps, atol, rtol;    /* 0: PyTorch gradcheck's 1e-6, 1e-5, 1e-3 */
} sg_gradcheck_opts;

typedef struct sg_gradcheck_result {
    double max_abs_err;        /* worst |analytic - numeric| */
    int worst_input;           /* where it happened */
    int64_t worst_index, worst_output;
    double worst_analytic, worst_numeric;
    int64_t checked;           /* Jacobian entries compared */
    char report[512];          /* a line describing the worst element */
} sg_gradcheck_result;

/* Compares the analytic Jacobian (one backward per output element) with central
 * differences, for every element of every input. Inputs are SG_F64 heap tensors
 * with requires_grad (module parameters included: pass them as inputs and reach
 * the module through user). Returns SG_OK if every entry satisfies
 * |a - n| <= atol + rtol |n|, SG_ENUMERIC otherwise (message = report), or the error
 * f produced. res may be NULL. */
SG_API int sg_gradcheck(sg_gradcheck_fn f, void *user, int n_inputs, sg_tensor *const *inputs,
                        const sg_gradcheck_opts *opts, sg_gradcheck_result *res);

#ifdef __cplusplus
}
#endif
#endif
