/* luong_internal.h - pieces of the luong architecture shared by its files; not installed. */
#ifndef SG_LUONG_INTERNAL_H
#define SG_LUONG_INTERNAL_H

#include "models_internal.h"
#include "sg_nn.h"

/* One fused LSTM step of the input-feeding decoder's layer 0 (luong_step.c):
 * a = gx[:, t] + b + feed W_f^T + h W_hh^T with gx [B, T, 4H] (contiguous) the
 * precomputed embedding part of every step, b [4H] a bias or NULL (b_hh: b_ih is in
 * gx), feed [B, F], h and c [B, H], W_f [4H, F] and W_hh [4H, H] (any strides). Returns
 * h' and *c_out = c' ([B, H], graph-owned). gx is the caller's scratch, consumed by
 * these steps alone (the output of an sg_linear, whose backward does not read it): a
 * step keeps its gate activations over its rows, and its backward writes their
 * gradient there, which makes gx's data its gradient. SG_ESHAPE when the shapes do not
 * fit or t is outside [0, T), SG_ENOMEM. */
SG_INTERNAL sg_tensor *sg__luong_lstm_step(sg_graph *g, sg_tensor *gx, int64_t t, sg_tensor *b,
                                           sg_tensor *feed, sg_tensor *h, sg_tensor *c,
                                           sg_tensor *Wf, sg_tensor *Whh, sg_tensor **c_out);

#endif
