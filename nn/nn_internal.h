/* nn_internal.h - shared by nn sources; not installed. */
#ifndef SG_NN_INTERNAL_H
#define SG_NN_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "sg_nn.h"

/* clip.c. The clipping coefficient min(1, max_norm / (N + 1e-6)) of the gradient norm N
 * of the store (*total_norm = N, may be NULL); SG_ENUMERIC (message names who) if N is
 * NaN or Inf. */
int sg__clip_coef(const sg_params *p, double max_norm, double *total_norm, double *coef,
                  const char *who);
/* params.c. Marks the gradient of the parameter whose value is t as mostly zero rows
 * (sg_param.sparse_grad); nothing when t is not a parameter of p. */
void sg__params_mark_sparse_grad(sg_params *p, const sg_tensor *t);
/* Zeroes the gradient of entry e (sg_tensor_zero_grad, or sg__zero_pages where it is
 * sparse_grad). */
void sg__param_zero_grad(const sg_param *e);

/* g[0..n) *= coef, f32 by an f32 coefficient as torch does */
void sg__scale_grad(sg_dtype dt, void *g, int64_t n, double coef);

/* layers.c. True when t is the output of the node just recorded on g, an sg_linear, the
 * ReLU feed-forward block (feedforward.c) or a training attention with its output
 * projection (mha.c): no other op has read it, and their backwards read only their
 * inputs, so the next op may write its own output over t (the logits' gradient, a fused
 * activation, a residual sum). */
bool sg__fresh_linear_output(sg_graph *g, const sg_tensor *t);
/* A graph tensor of the given shape over data (contiguous, not owned, kept alive by the
 * caller's graph); NULL with SG_ENOMEM recorded on g. */
sg_tensor *sg__header_over(sg_graph *g, void *data, sg_dtype dt, int ndim,
                           const int64_t *shape);
/* The output tensor of an elementwise op on h: a header over h's data when `over` (see
 * sg__fresh_linear_output; h contiguous), else a new tensor of h's shape and dtype.
 * NULL with SG_ENOMEM recorded on g. */
sg_tensor *sg__output_over(sg_graph *g, sg_tensor *h, bool over);

/* sg_dropout that writes its output over x when x was just made by an op whose backward
 * reads none of its outputs (sg_embedding_lookup, sg_linear, sg_add, sg_stack, sg_concat)
 * and nothing has read x yet: for model code that drops out a tensor it never reads again
 * (an embedding, joined decoder outputs), not for a caller's tensor that may be read
 * afterwards. */
sg_tensor *sg__dropout_over(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng);
/* sg_dropout written over x whenever x is contiguous: for a caller whose x nothing else
 * reads, not even the backward of the op that made it (a multi-layer RNN's output of a
 * layer, on its way to the next layer). */
sg_tensor *sg__dropout_over_own(sg_graph *g, sg_tensor *x, double p, bool training,
                                sg_rng *rng);
/* sg_tanh written over x when x is a fresh product (sg__fresh_linear_output; contiguous),
 * else sg_tanh: for model code that never reads x again (a Luong combine layer). The
 * node's backward reads only the output, as sg_tanh's does. */
sg_tensor *sg__tanh_over(sg_graph *g, sg_tensor *x);
/* sg_dropout(sg_tanh(x)) as one node that keeps only its output (its backward takes
 * tanh(x) = y (1 - p) where the mask kept), written over x when x is a fresh unread
 * output as for sg__dropout_over; sg__tanh_over when it does not drop. For model code
 * that never reads x again (a Luong combine layer). SG_EINVAL for p outside [0, 1) or no
 * rng, SG_ENOMEM. */
sg_tensor *sg__tanh_dropout_over(sg_graph *g, sg_tensor *x, double p, bool training,
                                 sg_rng *rng);
/* True when t is the only output of the node just recorded on g, made by an op whose
 * backward reads none of its outputs (sg_embedding_lookup, sg_linear, sg_add, sg_stack,
 * sg_concat): nothing has read t yet. */
bool sg__fresh_unread_output(sg_graph *g, const sg_tensor *t);
/* True when t is the output of the node just recorded on g, a residual sum (sg_add,
 * sg_dropout_add: their backward reads no output), contiguous: nothing has read t yet. */
bool sg__fresh_unread_sum(sg_graph *g, const sg_tensor *t);
/* layernorm.c. The module's LayerNorm written over x when x is such a fresh sum, the
 * module has a weight with no 0 and a bias, and the caller never reads x again (a
 * post-LN residual): the backward then makes xhat again from the output, (y - b) / w, so
 * the graph keeps one [rows, d] tensor instead of two (torch keeps the input; the
 * gradients agree to a few roundings of y). Else sg_layernorm_forward. */
sg_tensor *sg__layernorm_over(sg_graph *g, const sg_layernorm *m, sg_tensor *x);
/* sg_add(sg_mul_scalar(x, scale), t), both ops written over x when x is a fresh unread
 * output (as for sg__dropout_over) and t broadcasts to x's shape; the same nodes and
 * values either way. For model code that never reads x again (scaled embeddings plus
 * positions). */
sg_tensor *sg__scale_add_over(sg_graph *g, sg_tensor *x, double scale, sg_tensor *t);
/* Checks a dropout's probability (in [0, 1)) and rng (needed when it drops: training
 * and p > 0, *drop); *scale = 1 / (1 - p) when it drops, else 1. false with SG_EINVAL
 * recorded on g (the message names op). */
bool sg__dropout_args(sg_graph *g, const char *op, double p, bool training, const sg_rng *rng,
                      bool *drop, double *scale);
/* Elementwise kernels run over ranges of SG_RANGE elements, the ranges split over the
 * threads (SG_OMP_FOR) when there is more than one. */
#define SG_RANGE (1 << 15)

/* loss.c, shared with linear_loss.c. Checks the options (opts may be NULL: defaults,
 * copied to *o) and the SG_I64 targets: their shape is that of `rows` (named `what` in
 * messages: the logits, or the generator's input) without its last dim, their ids are
 * below V; made contiguous in place. *N = the counted (not ignored) rows. false with the
 * error recorded on g. */
bool sg__ce_prepare(sg_graph *g, const char *op, const sg_cross_entropy_opts *opts,
                    sg_tensor **targets, const sg_tensor *rows, const char *what, int64_t V,
                    sg_cross_entropy_opts *o, int64_t *N);
/* Per row of contiguous x [R, V] (f32/f64) with a counted target: lse[r] and the
 * (label-smoothed) loss lrow[r]; ignored rows are left untouched. */
void sg__ce_rows_forward(sg_dtype dt, const void *x, const int64_t *y, int64_t R, int64_t V,
                         int64_t ignore, double eps, double *lse, double *lrow);
/* sg__ce_rows_forward over the logits x + bias (bias [V] added to every row, may be
 * NULL; x does not hold it), then x := s (softmax(x + bias) - target distribution) on
 * counted rows and 0 on ignored ones, in one go (one exp a logit); db [V] (may be NULL)
 * += the column sums of the new x, added in row order (as sg__add_colsum does). */
void sg__ce_rows_forward_grad(sg_dtype dt, void *x, const void *bias, void *db,
                              const int64_t *y, int64_t R, int64_t V, int64_t ignore, double eps,
                              double s, double *lse, double *lrow);
/* Sum of lrow over counted rows, in row order; the reduction's scale (1/N or 1). */
double sg__ce_total(const int64_t *y, int64_t R, int64_t ignore, const double *lrow);
double sg__ce_scale(const sg_cross_entropy_opts *o, int64_t N);

#endif
