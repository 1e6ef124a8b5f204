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
 * projected: x is the input projection W_ih x + b_ih itself, [B, T, G*H] (W_ih and b_ih
 * are not read; x's gradient is the input gates').
 * Outputs (graph-owned): *y [B, T, H] (zeros at padding), *h_n [B, H], and for the
 * LSTM *c_n [B, H]. Returns SG_OK or SG_ENOMEM (recorded on g).
 */
SG_INTERNAL int sg__rnn_run(sg_graph *g, sg_rnn_cell cell, bool cho, bool reverse, sg_tensor *x,
                            bool projected, const int64_t *len, const sg_rnn_weights *w,
                            sg_tensor *h0, sg_tensor *c0, sg_tensor **y, sg_tensor **h_n,
                            sg_tensor **c_n);

#endif
