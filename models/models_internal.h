/* models_internal.h - what every architecture file implements; not installed. */
#ifndef SG_MODELS_INTERNAL_H
#define SG_MODELS_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "../nn/nn_internal.h" /* sg__dropout_over */
#include "sg_model.h"

/* One architecture. Every function gets the model with cfg, params and rng set. */
typedef struct sg_model_vt {
    /* Builds the modules, registering every parameter in m->params in state_dict order
     * (MODELS.md 12) WITHOUT initialising them (sg_model_new applies MODELS.md 3.5).
     * Stores its state in m->impl. SG_OK or an error code with message. */
    int (*build)(sg_model *m);
    /* Teacher-forced generator input [B, T, F] (dropout applied) and the generator
     * (*gen) that makes the logits [B, T, Vt] of it; *attn (if asked and supported)
     * [B, T, S]. The logits are made by the caller: sg_model_forward applies the
     * generator, sg_model_loss fuses it with the loss. */
    sg_tensor *(*features)(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                           const sg_linear_layer **gen);
    /* Encodes src in graph enc (which lives through the whole decode) and returns a
     * decoder state for ops (one row per sentence); NULL on error. */
    void *(*decoder_new)(sg_model *m, sg_graph *enc, sg_tensor *src, sg_tensor *src_len);
    void (*decoder_free)(void *state);
    sg_decoder_ops ops;
    /* Frees m->impl (not the params). */
    void (*free)(sg_model *m);
} sg_model_vt;

typedef struct sg__replica sg__replica;

struct sg_model {
    sg_model_config cfg;
    sg_params *params;
    sg_rng rng;     /* dropout masks */
    bool training;
    const sg_model_vt *vt;
    void *impl;
    sg__replica *replica; /* train_halves.c's second model, or NULL */
};

/* Small models, of at most this many parameters, work on two halves of a batch side by
 * side (one thread each, at 2+ threads; training steps), or a batch to decode in one or
 * two pieces a thread (model.c, decode_pieces), with at least SG_SPLIT_MIN sentences a
 * half or piece; sg_model_tune_malloc tunes malloc for them. Measured at
 * 2 threads: halves decoded side by side made greedy decoding of dates-bahdanau (0.4M
 * parameters) 1.3x faster, but enfr models (14M) 10-20% slower (each thread streams the
 * [8000 x 1024] generator on its own, where BLIS shares it). Beam search was slower in
 * halves on the Intel machine of 2026-11 (the halves' beams finish at different steps); on
 * the AMD EPYC of 2026-12-06 dates-bahdanau's beam-5 decoding was 12-23% faster in halves
 * (three pairs), and it is split too. */
#define SG_SMALL_MODEL_PARAMS 2000000
#define SG_SPLIT_MIN 16

/* The model's dropout over a fresh tensor its code never reads again (an embedding,
 * joined decoder outputs): in place when sg__dropout_over can. */
static inline sg_tensor *sg__model_drop_over(sg_graph *g, sg_model *m, sg_tensor *x)
{
    return sg__dropout_over(g, x, m->cfg.dropout, m->training, &m->rng);
}

/* Whether the model drops its embeddings now (training with dropout > 0). */
static inline bool sg__model_drops(const sg_model *m) { return m->training && m->cfg.dropout > 0; }

/* An encoder RNN over the embedded ids, the embeddings dropped as the model drops them:
 * without dropout through sg_rnn_forward_ids (the first layer's input projection made
 * once per word when the vocabulary is small), else embedding, dropout, sg_rnn_forward. */
static inline sg_tensor *sg__model_encode_ids(sg_graph *g, sg_model *m, const sg_rnn *rnn,
                                              const sg_embedding *emb, sg_tensor *ids,
                                              const sg_rnn_opts *o, sg_tensor **h_n,
                                              sg_tensor **c_n)
{
    if (!sg__model_drops(m))
        return sg_rnn_forward_ids(g, rnn, emb->weight, ids, emb->padding_idx, o, h_n, c_n);
    sg_tensor *e = sg__model_drop_over(g, m, sg_embedding_forward(g, emb, ids));
    return sg_rnn_forward(g, rnn, e, o, h_n, c_n);
}

SG_INTERNAL extern const sg_model_vt sg__seq2seq_vt;
SG_INTERNAL extern const sg_model_vt sg__bahdanau_vt;
SG_INTERNAL extern const sg_model_vt sg__luong_vt;
SG_INTERNAL extern const sg_model_vt sg__transformer_vt;

/* sg_model_new without MODELS.md 3.5's initialisation, for callers that set every
 * parameter next (a checkpoint load, a replica copying the model's values): the random
 * draws were ~40% of loading enfr-bahdanau. The values are zeros until then. */
SG_INTERNAL sg_model *sg__model_new_uninit(const sg_model_config *cfg, sg_dtype dt,
                                           uint64_t seed);
/* Checks a batch against the model's vocabularies (shapes, dtypes, ids in range,
 * lengths in [1, S]); SG_OK or an error recorded on g. */
SG_INTERNAL int sg__check_batch(sg_graph *g, const sg_model *m, const sg_batch *b);

/* Makes gx's data [B, T, G] (contiguous) its gradient buffer when the backward of step
 * t reaches it, the first step whose backward runs being the last step that has one
 * (every earlier step then has one too, through the state): the rows of later steps,
 * which never ran backward, still hold activations and are zeroed. False when gx
 * already has a gradient buffer of its own (another consumer), which the steps then add
 * into. For the fused decoder steps that keep their gates over their rows of gx. */
SG_INTERNAL bool sg__claim_gate_rows_grad(sg_tensor *gx, int64_t t);
/* Pieces of a fused step's backward, its gates' gradient da [B, G] (row stride lda)
 * being over rows t of gx [B, T, G]. sg__step_gx_bwd adds da into gx's own gradient
 * buffer unless own (sg__claim_gate_rows_grad made gx's data its gradient).
 * sg__step_product_bwd is the backward of da's share x W_x^T: dx += da W_x and dW_x +=
 * da^T x for x [B, F] (contiguous) and W_x [G, F] (any strides). */
SG_INTERNAL void sg__step_gx_bwd(sg_graph *g, sg_tensor *gx, int64_t t, bool own, const void *da,
                                 int64_t lda);
SG_INTERNAL void sg__step_product_bwd(sg_graph *g, const void *da, int64_t lda, int64_t G,
                                      sg_tensor *x, const sg_tensor *Wx);
/* One fused GRU step of the Bahdanau decoder (bahdanau_step.c): a = gx[:, t] + ctx
 * W_c^T with gx [B, T, 3H] (contiguous) the precomputed embedding part of every step (b_ih
 * included), ctx [B, C], s [B, H], W_c [3H, C] and W_hh [3H, H] (any strides), b [3H] the
 * hidden bias or NULL; ctx and W_c both NULL: a = gx[:, t] (the caller added the context's
 * part; beam decoding does). PyTorch's GRU update of s from a and s W_hh^T + b. Returns s'
 * ([B, H], graph-owned). gx is consumed by these steps alone, as sg__luong_lstm_step's
 * (its rows hold the gates, then their gradient). SG_ESHAPE when the shapes do not fit
 * or t is outside [0, T), SG_EINVAL when only one of ctx and W_c is
 * given, SG_EDTYPE, SG_ENOMEM. */
SG_INTERNAL sg_tensor *sg__bahdanau_gru_step(sg_graph *g, sg_tensor *gx, int64_t t, sg_tensor *b,
                                             sg_tensor *ctx, sg_tensor *s, sg_tensor *Wc,
                                             sg_tensor *Whh);

/* The largest beam context mix (bahdanau.c: h_j [W_c ; G_c]^T per source position) a
 * Bahdanau decoder makes, in bytes (256 MiB); above it a beam keeps the per-step
 * products. A variable so that tests can decode both ways. */
SG_INTERNAL extern size_t sg__bahdanau_mix_max_bytes;

/* Graph-owned [B, T] slice helpers: column t of an SG_I64 [B, T] tensor as [B]. */
SG_INTERNAL sg_tensor *sg__column(sg_graph *g, sg_tensor *ids, int64_t t);

/* sg_model_loss (backward_now false) or sg_model_loss_backward (true), the mean taken
 * over mean_over tokens when > 0 (sg_cross_entropy_opts.mean_over). */
SG_INTERNAL sg_tensor *sg__loss_of(sg_model *m, sg_graph *g, const sg_batch *b,
                                   double label_smoothing, int64_t mean_over, int64_t *n_tokens,
                                   bool backward_now, const char *who);

/* ---- train_halves.c ---- */
/* Whether sg_model_loss_backward runs b as two halves side by side (2+ threads, a small
 * model, a large enough batch of the usual layout). */
SG_INTERNAL bool sg__train_halves_wanted(const sg_model *m, const sg_batch *b);
/* sg_model_loss_backward on the halves of a checked batch; the same contract. */
SG_INTERNAL sg_tensor *sg__loss_backward_halves(sg_model *m, sg_graph *g, const sg_batch *b,
                                                double label_smoothing, int64_t *n_tokens);
SG_INTERNAL void sg__replica_free(sg__replica *r);

/* An attention memory with one row per decoding row. Beam search and finished
 * sentences change which sentence each row belongs to; the memory rows depend only on
 * that, so they are gathered into heap buffers when the map changes, not every step.
 * `cur` is what a decoder step reads. */
typedef struct sg__attn_rows {
    sg_attn_memory base;        /* one row per sentence (contiguous, encoder graph) */
    sg_attn_memory cur;         /* base, or the first n rows of the heap copies */
    sg_tensor *values, *keys;   /* heap copies with room for cap rows */
    sg_tensor vh, kh;           /* views of their first n rows */
    uint8_t *valid;
    int64_t *len, *sent;        /* per row: n_b and sentence */
    int64_t n, cap;
    bool share;                 /* no copies: cur reads base through the row map `sent` */
    int64_t sent_cap;           /* rows `sent` has room for (share) */
} sg__attn_rows;

/* Starts with one row per sentence of base (made contiguous in enc if needed). share:
 * rows read base through sg_attn_memory.rows instead of copies (for decoders whose
 * attention takes a row map: the additive one). */
SG_INTERNAL int sg__attn_rows_init(sg__attn_rows *r, sg_graph *enc, const sg_attn_memory *base,
                                   bool share);
/* Row i := the memory of sentence sent[i], for R rows. SG_ENOMEM. */
SG_INTERNAL int sg__attn_rows_select(sg__attn_rows *r, const int64_t *sent, int64_t R);
SG_INTERNAL void sg__attn_rows_free(sg__attn_rows *r);

#endif
