/*
 * sg_layers.h - Linear, Embedding, Dropout (and the other simple layers).
 */
#ifndef SG_LAYERS_H
#define SG_LAYERS_H

#include "sg_params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Joins prefix and name as "prefix.name" (or just name when prefix is empty) into
 * out (SG_PARAM_NAME_MAX bytes). SG_EINVAL when it does not fit. */
SG_API int sg_param_name(char *out, const char *prefix, const char *name);

/* ---- Linear: y = x W^T + b, W [out, in] "prefix.weight", b [out] "prefix.bias" ---- */
typedef struct sg_linear_layer {
    sg_tensor *weight, *bias; /* bias NULL without bias */
    int64_t in, out;
} sg_linear_layer;

/* Registers the parameters; PyTorch's default init U(-1/sqrt(in), 1/sqrt(in)) for
 * weight and bias when rng is not NULL. SG_EINVAL (sizes < 1, names), SG_ENOMEM. */
SG_API int sg_linear_layer_init(sg_linear_layer *m, sg_params *p, const char *prefix, int64_t in,
                          int64_t out, bool bias, sg_rng *rng);
/* x [..., in] -> [..., out]. SG_ESHAPE names the layer's width and x's shape. */
SG_API sg_tensor *sg_linear_layer_forward(sg_graph *g, const sg_linear_layer *m, sg_tensor *x);

/* ---- Embedding: table [vocab, dim] "prefix.weight" ----------------------------- */
typedef struct sg_embedding {
    sg_tensor *weight;
    int64_t vocab, dim;
    int64_t padding_idx; /* -1: none; that row gets no gradient and starts at zero */
} sg_embedding;

/* Registers the table; init N(0, 1) (PyTorch's default) when rng is not NULL, with
 * the padding row zeroed. */
SG_API int sg_embedding_init(sg_embedding *m, sg_params *p, const char *prefix, int64_t vocab,
                             int64_t dim, int64_t padding_idx, sg_rng *rng);
/* ids (SG_I64, any shape) -> [..., dim]. An id outside [0, vocab) is SG_ERANGE
 * naming the id and its position; nothing is read out of bounds. */
SG_API sg_tensor *sg_embedding_forward(sg_graph *g, const sg_embedding *m, sg_tensor *ids);
/* The lookup op itself on any [V, E] table (graph or heap), e.g. tied weights. */
SG_API sg_tensor *sg_embedding_lookup(sg_graph *g, sg_tensor *table, sg_tensor *ids,
                                      int64_t padding_idx);

/* ---- Dropout ------------------------------------------------------------------- */
/* Inverted dropout: in training x * m / (1 - p), m ~ Bernoulli(1 - p) drawn serially
 * from rng; identity (x itself) when !training or p == 0. SG_EINVAL for p outside
 * [0, 1). */
SG_API sg_tensor *sg_dropout(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng);
/* x + sg_dropout(z) (a residual connection) as one node: the same draws and values (up
 * to one rounding: x + z / (1 - p) is one multiply-add where the CPU has FMA), but the
 * backward keeps only the mask (a byte an element), not z's dropped copy. With
 * reuse_z the caller promises not to read z afterwards: when z is the output of the op
 * recorded just before (an sg_linear, which nothing else has read), the result is
 * written over it. The result is owned by g. SG_EINVAL as sg_dropout, SG_ESHAPE /
 * SG_EDTYPE when x and z differ, SG_ENOMEM. */
SG_API sg_tensor *sg_dropout_add(sg_graph *g, sg_tensor *x, sg_tensor *z, double p, bool training,
                                 sg_rng *rng, bool reuse_z);

#ifdef __cplusplus
}
#endif
#endif
