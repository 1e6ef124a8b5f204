/*
 * sg_rnn.h - GRU and LSTM: multi-layer, bidirectional, variable-length batches.
 *
 * Batch-first like PyTorch's batch_first=True: input x [B, T, I], output
 * [B, T, dirs*H]. Parameters follow PyTorch's state_dict names and shapes under a
 * prefix ("encoder" -> "encoder.weight_ih_l0", "encoder.bias_hh_l1_reverse", ...):
 * weight_ih_l{k} [G*H, I_k], weight_hh_l{k} [G*H, H], bias_ih_l{k}, bias_hh_l{k}
 * [G*H], with G = 3 (GRU gates r|z|n) or 4 (LSTM gates i|f|g|o).
 *
 * Variable lengths follow PyTorch's packed sequences (pack_padded_sequence with
 * enforce_sorted=False), without the caller sorting anything: row b runs over its
 * first len[b] steps only; the reverse direction starts at len[b]-1; outputs at
 * padding positions are 0; the final state of a row is its state after its last
 * valid step. Dropout is applied between layers only (training mode).
 *
 * Speed: each layer-direction is ONE autograd node. The input projections of all
 * time steps are one GEMM, only the hidden recurrence (one GEMM per step on the rows
 * still running) is sequential, the gate arithmetic is one fused loop, and the
 * backward runs BPTT with one GEMM per step plus one GEMM per weight gradient. The
 * gate loops of a step run on the library's threads (sg_set_num_threads) when the
 * step has at least 8192 elements. Rows are never reordered for the caller.
 *
 *     sg_gru enc;
 *     sg_rnn_config cfg = {.input_size = 256, .hidden_size = 256, .num_layers = 2,
 *                          .bidirectional = true};
 *     if (sg_gru_init(&enc, p, "encoder", &cfg, &rng) != SG_OK) ... sg_last_error()
 *     sg_rnn_opts o = {.lengths = len};              // SG_I64 [B], or NULL: all T
 *     sg_tensor *h_n;
 *     sg_tensor *out = sg_gru_forward(g, &enc, x, &o, &h_n);   // [B,T,512], [4,B,256]
 */
#ifndef SG_RNN_H
#define SG_RNN_H

#include "sg_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_RNN_MAX_LAYERS 16

typedef enum sg_rnn_cell {
    SG_RNN_GRU = 0,
    SG_RNN_LSTM,
    SG_RNN_CELL_COUNT
} sg_rnn_cell;

/* The parameters of one layer and direction (non-owning; bias_* may be NULL for
 * the single-step cell functions, meaning no bias). */
typedef struct sg_rnn_weights {
    sg_tensor *weight_ih; /* [G*H, I] */
    sg_tensor *weight_hh; /* [G*H, H] */
    sg_tensor *bias_ih;   /* [G*H] */
    sg_tensor *bias_hh;   /* [G*H] */
} sg_rnn_weights;

typedef struct sg_rnn_config {
    int64_t input_size;  /* I >= 1 */
    int64_t hidden_size; /* H >= 1 */
    int num_layers;      /* 1 .. SG_RNN_MAX_LAYERS; 0 means 1 */
    bool bidirectional;
    double dropout;      /* between layers, in [0, 1) */
    /* GRU only: Cho et al. (2014)'s original cell, the reset gate applied before
     * the hidden product: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Default
     * (false) is PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). */
    bool reset_before_matmul;
} sg_rnn_config;

/* A GRU or LSTM module: the parameter pointers of every layer and direction. */
typedef struct sg_rnn {
    sg_rnn_cell cell;
    sg_rnn_config cfg;
    int dirs;                                        /* 1 or 2 */
    sg_rnn_weights w[SG_RNN_MAX_LAYERS][2];          /* [layer][direction] */
} sg_rnn;

typedef sg_rnn sg_gru;
typedef sg_rnn sg_lstm;

/* Options of one forward run; a zeroed struct (or NULL) means: full lengths, zero
 * initial states, evaluation mode. */
typedef struct sg_rnn_opts {
    /* SG_I64 [B] with 1 <= len[b] <= T, or NULL (every row has length T). Read at
     * the call; not differentiable. */
    sg_tensor *lengths;
    /* Initial states [L*dirs, B, H] indexed l*dirs + dir like PyTorch, or NULL for
     * zeros. May require grad. c0 is for the LSTM only. */
    sg_tensor *h0, *c0;
    bool training;       /* dropout between layers when cfg.dropout > 0 */
    sg_rng *rng;         /* required when training with dropout > 0 */
} sg_rnn_opts;

/* Registers the parameters of every layer and direction under prefix in PyTorch's
 * order (per layer: forward then reverse; weight_ih, weight_hh, bias_ih, bias_hh)
 * and, when rng is not NULL, fills them with PyTorch's default U(-1/sqrt(H),
 * 1/sqrt(H)) in that order. Layer k > 0 has input size dirs*H.
 * SG_EINVAL (NULL arguments, sizes < 1, layers out of range, dropout outside
 * [0, 1), reset_before_matmul for an LSTM, duplicate/too long names), SG_ENOMEM.
 * On failure the store may hold some of the parameters. */
SG_API int sg_gru_init(sg_gru *m, sg_params *p, const char *prefix, const sg_rnn_config *cfg,
                       sg_rng *rng);
SG_API int sg_lstm_init(sg_lstm *m, sg_params *p, const char *prefix, const sg_rnn_config *cfg,
                        sg_rng *rng);

/* Runs the module over x [B, T, I] (float, the store's dtype; any layout) and returns
 * the top layer's output [B, T, dirs*H] (zeros at padding positions). *h_n (may be
 * NULL) receives the final hidden states [L*dirs, B, H], *c_n (LSTM, may be NULL)
 * the final cell states. Every result is owned by g; all are differentiable.
 * Errors (NULL, message naming the argument): SG_ESHAPE (x not 3-D, wrong input
 * width, h0/c0 not [L*dirs, B, H], lengths not [B]), SG_EDTYPE (dtype mismatch,
 * lengths not i64), SG_ERANGE (a length outside [1, T], naming the row), SG_EINVAL
 * (NULL module, training with dropout and no rng, c0 given to a GRU), SG_ENOMEM.
 * NaN/Inf in x or the states is not checked: it propagates to the outputs and
 * gradients of the affected rows (like PyTorch), nothing crashes. */
SG_API sg_tensor *sg_gru_forward(sg_graph *g, const sg_gru *m, sg_tensor *x,
                                 const sg_rnn_opts *opts, sg_tensor **h_n);
SG_API sg_tensor *sg_lstm_forward(sg_graph *g, const sg_lstm *m, sg_tensor *x,
                                  const sg_rnn_opts *opts, sg_tensor **h_n, sg_tensor **c_n);
/* Either cell, dispatching on m->cell (*c_n = NULL for a GRU). */
SG_API sg_tensor *sg_rnn_forward(sg_graph *g, const sg_rnn *m, sg_tensor *x,
                                 const sg_rnn_opts *opts, sg_tensor **h_n, sg_tensor **c_n);
/* sg_rnn_forward over embedded ids: the same results and gradients (to rounding) as
 * sg_rnn_forward(g, m, sg_embedding_lookup(g, table, ids, padding_idx), ...), with table
 * [V, I] (an sg_embedding's weight; may require grad) and ids SG_I64 [B, T]. With fewer
 * words than positions (V < B*T: a character model's encoder, 50 words for 1,600
 * positions), the first layer's input projection W_ih e + b_ih is made once per word
 * and looked up at each position, and its backward makes the weight gradients of V rows
 * instead of B*T. (No dropout can stand between the table and the RNN: a model that
 * drops its embeddings in training calls sg_rnn_forward then.) Errors: those of
 * sg_embedding_lookup (SG_ERANGE names an id outside the table) and sg_rnn_forward;
 * SG_ESHAPE for ids not [B, T] or a table of the wrong width. */
SG_API sg_tensor *sg_rnn_forward_ids(sg_graph *g, const sg_rnn *m, sg_tensor *table,
                                     sg_tensor *ids, int64_t padding_idx,
                                     const sg_rnn_opts *opts, sg_tensor **h_n, sg_tensor **c_n);

/* ---- single steps, for decoders ------------------------------------------------ */

/* One GRU step: x [B, I], h [B, H] and one layer's weights (e.g. &m->w[0][0]; biases
 * may be NULL) -> h' [B, H], owned by g, differentiable w.r.t. everything. One fused
 * node: two GEMMs and one gate loop. reset_before_matmul selects Cho's cell.
 * SG_ESHAPE (widths or batch sizes disagree with the weights, naming both shapes),
 * SG_EDTYPE, SG_EINVAL (NULL weights). */
SG_API sg_tensor *sg_gru_cell_forward(sg_graph *g, sg_tensor *x, sg_tensor *h,
                                      const sg_rnn_weights *w, bool reset_before_matmul);
/* One LSTM step: x [B, I], h [B, H], c [B, H] -> h' (returned) and *c_out = c', both
 * [B, H] and owned by g. Errors as sg_gru_cell_forward (c_out NULL: SG_EINVAL). */
SG_API sg_tensor *sg_lstm_cell_forward(sg_graph *g, sg_tensor *x, sg_tensor *h, sg_tensor *c,
                                       const sg_rnn_weights *w, sg_tensor **c_out);

#ifdef __cplusplus
}
#endif
#endif
