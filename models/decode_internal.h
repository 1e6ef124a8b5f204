/* decode_internal.h - helpers shared by decode_greedy.c and decode_beam.c; not installed. */
#ifndef SG_DECODE_INTERNAL_H
#define SG_DECODE_INTERNAL_H

#include "../tensor/tensor_internal.h"
#include "sg_decode.h"

/* The two alternating step graphs (MODELS.md-independent plumbing). */
typedef struct sg__decode_work {
    sg_graph *g[2];
    sg_graph *weights; /* lives for the whole decode: the steps' transposed weights */
    bool owned;
    bool weights_owned; /* weights made here (not the caller's opts->weights) */
    bool grad_was[2];
} sg__decode_work;

/* Checks what greedy and beam share; fn names the public function in messages. */
SG_INTERNAL int sg__decode_check(const char *fn, const sg_decoder_ops *ops, int64_t batch,
                                 const int64_t *src_len, const sg_decode_opts *opts,
                                 const sg_decode_result *out);
SG_INTERNAL int sg__decode_work_init(sg__decode_work *w, const sg_decode_opts *opts);
SG_INTERNAL void sg__decode_work_free(sg__decode_work *w);

/* Resets the graph of step t and runs the model on prev_tok [R]; on success *logits
 * is a validated [R, V] float tensor, *V its width (set at t = 0, checked after) and
 * *lse [R] (step t's graph arena) the log-sum-exp of each row (sg__decode_row_lse),
 * computed with the rows split across threads. */
SG_INTERNAL int sg__decode_step(const char *fn, const sg_decoder_ops *ops, void *model,
                                sg__decode_work *w, const int64_t *prev_tok, int64_t R,
                                int64_t t, sg_tensor **logits, int64_t *V,
                                const double **lse);

/* Output tokens allowed for a sentence of n_b source positions: opts->max_len when
 * set (> 0), else MODELS.md 8.3's rule. */
static inline int64_t sg__decode_limit(const sg_decode_opts *opts, int64_t n_b)
{
    return opts && opts->max_len > 0 ? opts->max_len : sg_decode_max_len(n_b);
}

/* Address of row r of logits [R, V] (elements stride[1] apart). */
static inline const void *sg__decode_row(const sg_tensor *logits, int64_t r)
{
    return (const char *)logits->data +
           r * logits->stride[0] * (int64_t)sg_dtype_size(logits->dtype);
}

/* log-sum-exp over all V logits of row r (log_softmax's normaliser; +inf if every
 * logit is -inf). SG_ENUMERIC (message names fn, row, step) on NaN/+inf logits.
 * logp[w] = x[w] - lse, with <pad> and <s> forced to -inf by the callers. */
SG_INTERNAL int sg__decode_row_lse(const char *fn, const sg_tensor *logits, int64_t r,
                                   int64_t t, double *lse);

/* Calls select_rows with parent/sentence [R] copied into SG_I64 tensors of step t's graph. */
SG_INTERNAL int sg__decode_select(const sg_decoder_ops *ops, void *model, sg__decode_work *w,
                                  int64_t t, const int64_t *parent, const int64_t *sentence,
                                  int64_t R);

/* Allocates out's arrays for n_hyps hypotheses of n_tokens tokens in total. */
SG_INTERNAL int sg__decode_result_alloc(sg_decode_result *out, int64_t batch, int64_t n_hyps,
                                        int64_t n_tokens);

#endif
