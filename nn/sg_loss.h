/*
 * sg_loss.h - token-level cross entropy (MODELS.md 8.1).
 *
 * One fused node: a numerically stable log-softmax over the last dim, the
 * (label-smoothed) negative log-likelihood of each counted token and its reduction.
 * Only the per-row log-sum-exp is saved; the backward recomputes the softmax from
 * the logits, so a [tokens x vocab] probability matrix is never stored.
 *
 *     // logits [B, T, V] (f32/f64), tgt_out [B, T] (SG_I64, pad = 0)
 *     sg_cross_entropy_opts o = {.label_smoothing = 0.1};   // ignore_index 0, mean
 *     sg_cross_entropy_stats st;
 *     sg_tensor *loss = sg_cross_entropy_ex(g, logits, tgt_out, &o, &st);
 *     if (!loss) fprintf(stderr, "%s\n", sg_last_error());
 *     sg_backward(g, loss);               // st.n_tokens tokens, st.loss_sum summed loss
 *
 * Semantics (PyTorch F.cross_entropy(ignore_index, label_smoothing, reduction)):
 *   log p = log_softmax(logits[r, :])   for every row r (all dims but the last)
 *   l_r   = (1-eps)(-log p[y_r]) + (eps/V) sum_v (-log p[v])
 *   mean: sum_{r: y_r != ignore} l_r / N,  N = number of rows with y_r != ignore_index
 *   sum:  sum_{r: y_r != ignore} l_r
 * Ignored rows contribute nothing to the loss and get zero gradient.
 * If every row is ignored the mean is 0 with zero gradient (PyTorch returns NaN).
 * NaN/Inf in the logits are not checked: the loss becomes NaN (no error, no crash).
 * Precision: sums are accumulated in double; f32 uses an inlined exp accurate to
 * ~3e-7 relative whose results below ~1e-38 flush to 0. Large inputs split rows over
 * sg_get_num_threads() threads; results do not depend on the thread count.
 */
#ifndef SG_LOSS_H
#define SG_LOSS_H

#include "sg_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sg_reduction {
    SG_REDUCTION_MEAN = 0, /* mean over counted (non-ignored) tokens */
    SG_REDUCTION_SUM,      /* sum over counted tokens */
    SG_REDUCTION_COUNT
} sg_reduction;

/* Zero-initialised = MODELS.md defaults: ignore_index 0 (pad), no smoothing, mean. */
typedef struct sg_cross_entropy_opts {
    int64_t ignore_index;   /* targets equal to it are skipped (any value, e.g. -100) */
    double label_smoothing; /* eps in [0, 1] */
    sg_reduction reduction;
    /* The caller will not read the logits after backward: when they come straight from
     * sg_linear (the op recorded just before), backward writes their gradient over them
     * instead of into a second [..., V] buffer (a vocabulary-sized saving per step). */
    bool overwrite_logits;
    /* sg_linear_cross_entropy_ex only. The caller will not read x after the call: when x
     * comes straight from an op whose backward reads no output (sg_stack, sg_concat,
     * sg_linear, sg_add, an embedding lookup: the op recorded just before) and is
     * contiguous, dloss/dx is written over x's data, chunk by chunk once each chunk's
     * products are made, and becomes x's gradient in backward (no [.., K] buffer for it,
     * none for x's gradient). */
    bool overwrite_input;
    /* SG_REDUCTION_MEAN: when > 0, the sum is divided by this count instead of the number
     * of counted rows, so that the loss of one part of a batch is its share of the whole
     * batch's mean (the parts' losses and gradients then add up to the whole's). */
    int64_t mean_over;
} sg_cross_entropy_opts;

/* Reporting numbers of one call (written only on success). */
typedef struct sg_cross_entropy_stats {
    int64_t n_tokens;       /* rows whose target is not ignore_index */
    double loss_sum;        /* sum of l_r over those rows (accumulated in double) */
} sg_cross_entropy_stats;

/* Cross entropy of logits [..., V] (f32 or f64, any layout) against SG_I64 targets
 * of shape [...] (logits' shape without the last dim; 1-D logits take a 0-d target).
 * Returns a 0-d tensor of the logits' dtype, owned by g. opts may be NULL (defaults),
 * stats may be NULL.
 * Errors (NULL, graph status set, message): SG_EDTYPE (logits not float, targets not
 * i64), SG_ESHAPE (logits 0-d or V = 0, targets' shape does not match), SG_ERANGE (a
 * counted target outside [0, V): names the flat position and the id), SG_EINVAL
 * (label_smoothing outside [0, 1], unknown reduction, negative mean_over), SG_ENOMEM. */
SG_API sg_tensor *sg_cross_entropy_ex(sg_graph *g, sg_tensor *logits, sg_tensor *targets,
                                      const sg_cross_entropy_opts *opts,
                                      sg_cross_entropy_stats *stats);

/* sg_cross_entropy_ex with the defaults: ignore_index 0, no smoothing, mean. */
SG_API sg_tensor *sg_cross_entropy(sg_graph *g, sg_tensor *logits, sg_tensor *targets);

/* The cross entropy of the logits x W^T + b (a generator's) without ever holding them:
 * equal to sg_cross_entropy_ex(g, sg_linear(g, x, w, bias), targets, opts, stats) (up to
 * f32 rounding), but the rows of x go through W in chunks of 2M logits, so a [tokens x
 * vocab] matrix is never stored (enfr, 1536 tokens x 8000 words: 49 MB). Where the
 * weight gradient kept for backward (below) would cost more than half of what chunks
 * save (R rows <= 2 (chunk rows + K)), the logits are made whole instead, as by
 * sg_linear then sg_cross_entropy_ex (their gradient written over them): same results.
 *
 * When the result is recorded (grad mode on; x, w or bias requires grad) the gradients
 * are computed during this call, chunk by chunk, as if for an upstream gradient of 1:
 * the logits' gradient overwrites each chunk and goes straight into dloss/dx [.., K],
 * dloss/dW [V, K] and dloss/db [V], kept in g until sg_backward scales them by the
 * actual upstream gradient and adds them to x's, w's and bias's gradients. Nothing is
 * added before sg_backward runs. Memory: the chunk (freed when the call returns),
 * dloss/dx (none with opts.overwrite_input, below) and dloss/dW (the size of W) in g;
 * the FLOPs are those of the linear and its backward. The call also frees the
 * transposed weight copies that earlier ops of g made for small products (g's forward
 * ends here; a later op makes them again).
 *
 * x [..., K] (f32/f64, any layout), w [V, K] (any strides), bias [V] or NULL, targets
 * SG_I64 of x's shape without the last dim; opts and stats as for sg_cross_entropy_ex
 * (opts.overwrite_logits is meaningless here and ignored). Returns a 0-d tensor of x's
 * dtype owned by g.
 * Errors (NULL, graph status set, message): SG_EDTYPE (x, w, bias not the same float
 * type, targets not i64), SG_ESHAPE (w not 2-D, K or V mismatch, bias not [V], targets'
 * shape not x's without the last dim), SG_ERANGE (a counted target outside [0, V)),
 * SG_EINVAL (label_smoothing, reduction, mean_over), SG_ENOMEM. */
SG_API sg_tensor *sg_linear_cross_entropy_ex(sg_graph *g, sg_tensor *x, sg_tensor *w,
                                             sg_tensor *bias, sg_tensor *targets,
                                             const sg_cross_entropy_opts *opts,
                                             sg_cross_entropy_stats *stats);

/* sg_linear_cross_entropy_ex, then sg_backward(g, loss), in less memory: knowing that the
 * backward follows at once with an upstream gradient of 1, the call adds dloss/dW and
 * dloss/db to w's and bias's gradients chunk by chunk during the forward, so neither a
 * [V, K] copy of dW nor (where rows are few against K) the [R, V] logits' gradient is
 * kept (enfr-bahdanau's generator, K = 1024: 47 MB of a step's peak). The gradients of
 * every input of g's graph are then as after sg_linear_cross_entropy_ex + sg_backward (up
 * to f32 rounding: dW is summed in another order). Use it as the last op of a training
 * step's forward; the returned loss (owned by g) is for reading: an sg_backward on it
 * again fails with SG_ESTATE.
 * Errors (NULL, graph status set, message): those of sg_linear_cross_entropy_ex, those of
 * sg_backward (a failed backward leaves the gradients part-accumulated, as sg_backward
 * does; dW and db are then already added), and SG_EINVAL when nothing records (grad mode
 * off, or neither x, w nor bias requires grad). */
SG_API sg_tensor *sg_linear_cross_entropy_backward(sg_graph *g, sg_tensor *x, sg_tensor *w,
                                                   sg_tensor *bias, sg_tensor *targets,
                                                   const sg_cross_entropy_opts *opts,
                                                   sg_cross_entropy_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
