/* rnn_internal.h - the fused layer-direction run shared by nn/rnn.c; not installed. */
#ifndef SG_RNN_INTERNAL_H
#define SG_RNN_INTERNAL_H

#include "nn_internal.h"

/*
 * One layer in one direction over a batch as a single autograd node.
 * Trusts its caller (rnn.c validates): x contiguous [B, T, I]; weights contiguous
 * with G*H rows (G = 3 GRU, 4 LSTM); biases contiguous [G*H] or NULL; h0, c0
 * contiguous [B, H] or NULL; len NULL (all T) or B values in [1, T]. All float
 * tensors share one dtype. cho: GRU with the reset gate before the hidden product.
 * words: NULL, or x is the input projection W_ih e + b_ih of each word, [V, G*H], and
 * words->ids [B, T] (values in [0, V)) the words at the positions: the input gates of a
 * position are x's row of its word (W_ih and b_ih are not read; x's gradient is the
 * positions' input gates summed per word, none from padding_idx's positions).
 * Outputs (graph-owned): *y [B, T, H] (zeros at padding), *h_n [B, H], and for the
 * LSTM *c_n [B, H]. Returns SG_OK or SG_ENOMEM (recorded on g).
 */
typedef struct sg__rnn_words {
    const int64_t *ids; /* [B, T], contiguous, alive until backward (graph memory) */
    int64_t B, T, padding_idx;
} sg__rnn_words;

SG_INTERNAL int sg__rnn_run(sg_graph *g, sg_rnn_cell cell, bool cho, bool reverse, sg_tensor *x,
                            const sg__rnn_words *words, const int64_t *len, const sg_rnn_weights *w,
                            sg_tensor *h0, sg_tensor *c0, sg_tensor **y, sg_tensor **h_n,
                            sg_tensor **c_n);

#endif
