/*
 * sg_attention.h - attention and transformer building blocks (MODELS.md 5, 6, 7.2-7.4).
 *
 * RNN attention (Bahdanau additive, Luong dot/general/concat, global/local-m/local-p)
 * splits the work the way a decoder needs it: everything that depends only on the
 * source is computed ONCE per batch by a _precompute call into an sg_attn_memory
 * (one GEMM for the keys), and each decoder step calls _step with the query [B, H].
 * A step is two or three fused graph nodes (score, masked softmax + window/Gaussian
 * + context) with hand-written backward.
 *
 *     sg_additive_attention att;                       // "attention.query_proj.weight", ...
 *     sg_additive_attention_init(&att, p, "attention", H, 2 * H, A, &rng);
 *     sg_attn_memory mem;
 *     sg_additive_attention_precompute(g, &att, enc_out, src_len, NULL, &mem);
 *     for (t...) {
 *         sg_tensor *alpha;                           // [B, S], optional
 *         sg_tensor *ctx = sg_additive_attention_step(g, &att, &mem, s, &alpha); // [B, 2H]
 *         ...
 *     }
 *
 * Source validity: either per-row lengths n_b (SG_I64 [B], 0 <= n_b <= S; position j
 * is real when j < n_b) or a bool mask [B, S] (true = real position), or neither (all
 * real). A row with no real position gets zero weights and a zero context and passes
 * no gradient, never NaN. Local attention counts n_b = the number of true mask entries
 * (masks are expected to be right-padded).
 *
 * Transformer pieces: multi-head attention in PyTorch's layout (in_proj_weight [3d, d]
 * = [W_q; W_k; W_v], in_proj_bias [3d], out_proj.weight/bias) on batch-first inputs
 * with key-padding and causal masks, an inference key/value cache for incremental
 * decoding, a fused LayerNorm, the sinusoidal position table and the feed-forward
 * block. Everything supports SG_F32 and SG_F64.
 *
 * Ownership: tensors returned by functions taking a graph belong to that graph (valid
 * until sg_graph_reset); an sg_attn_memory holds graph tensors, so it is valid for
 * the graph's current step only. Parameters belong to the sg_params store.
 */
#ifndef SG_ATTENTION_H
#define SG_ATTENTION_H

#include "sg_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- source memory shared by the RNN attention modules -------------------------- */

/* What _precompute makes once per source batch. All pointers are graph-owned. */
typedef struct sg_attn_memory {
    /* [B, S, Dv] vectors averaged into the context (h_j / hbar_j): when the graph
     * records, a view of them made by one more node, to which the context steps leave
     * their share of the values' gradient (added at once in its backward) */
    sg_tensor *values;
    sg_tensor *keys;       /* [B, S, K] precomputed keys (K_j, W_a hbar_j, ...) */
    const uint8_t *valid;  /* [B, S] 1 = real source position */
    const int64_t *len;    /* [B] n_b (number of real positions) */
    int64_t B, S;
    /* Optional, for decoding without gradients: B query rows where row b reads memory
     * row rows[b] of values, keys, valid and len, so that a beam's hypotheses share their
     * sentence's memory instead of a copy each. NULL: row b reads row b. The Luong step
     * takes it with global alignment only (SG_EINVAL for local-m/p). */
    const int64_t *rows;
    /* Internal (graph-owned, set by _precompute): bytes of additive-score tanh values the
     * steps have kept for backward, against a budget (sg_attn_additive_scores) */
    size_t *tanh_kept;
} sg_attn_memory;

/* ---- Bahdanau additive attention (MODELS.md 5) --------------------------------- */
/* e_j = v . tanh(W_s s + K_j), K_j = W_h h_j + b_a; alpha = softmax over j < n_b;
 * context = sum_j alpha_j h_j. Parameters "prefix.query_proj.weight" [A, Hq],
 * "prefix.key_proj.weight" [A, Hk], "prefix.key_proj.bias" [A], "prefix.energy.weight"
 * [1, A]. */
typedef struct sg_additive_attention {
    sg_linear_layer query_proj, key_proj, energy;
    int64_t query_dim, key_dim, attn_dim;
} sg_additive_attention;

/* Registers the parameters (PyTorch Linear init when rng is not NULL). SG_EINVAL for
 * sizes < 1 or bad names, SG_ENOMEM. */
SG_API int sg_additive_attention_init(sg_additive_attention *m, sg_params *p,
                                      const char *prefix, int64_t query_dim, int64_t key_dim,
                                      int64_t attn_dim, sg_rng *rng);
/* Fills *mem from the encoder outputs h [B, S, Hk]: keys = key_proj(h) [B, S, A] (one
 * GEMM), validity from lengths (SG_I64 [B]) or mask (SG_BOOL [B, S]) or neither.
 * Returns SG_OK or: SG_EINVAL (NULL, both lengths and mask given), SG_ESHAPE (h not
 * [B, S, Hk], lengths not [B], mask not [B, S]), SG_EDTYPE, SG_ERANGE (a length
 * outside [0, S]). Errors are also recorded on the graph. */
SG_API int sg_additive_attention_precompute(sg_graph *g, const sg_additive_attention *m,
                                            sg_tensor *h, sg_tensor *lengths, sg_tensor *mask,
                                            sg_attn_memory *mem);
/* One decoder step: query s [B, Hq] -> context [B, Hk]; *weights (if not NULL) gets
 * alpha [B, S] (differentiable). NULL with SG_ESHAPE if s is not [B, Hq]. */
SG_API sg_tensor *sg_additive_attention_step(sg_graph *g, const sg_additive_attention *m,
                                             const sg_attn_memory *mem, sg_tensor *s,
                                             sg_tensor **weights);

/* ---- Luong attention (MODELS.md 6) ---------------------------------------------- */
typedef enum sg_luong_score {
    SG_LUONG_DOT = 0,   /* h_t . hbar_j */
    SG_LUONG_GENERAL,   /* h_t . (W_a hbar_j), "prefix.W_a.weight" [H, H] */
    SG_LUONG_CONCAT,    /* v . tanh(W_a [h_t ; hbar_j]), "prefix.W_a.weight" [A, 2H],
                           "prefix.v.weight" [1, A] */
    SG_LUONG_SCORE_COUNT
} sg_luong_score;

typedef enum sg_luong_align {
    SG_LUONG_GLOBAL = 0, /* all j < n_b */
    SG_LUONG_LOCAL_M,    /* window around p_t = min(t, n_b - 1) */
    SG_LUONG_LOCAL_P,    /* window around p_t = n_b sigmoid(v_p . tanh(W_p h_t)), times a
                            Gaussian exp(-(j - p_t)^2 / (2 (D/2)^2)) after the softmax;
                            "prefix.W_p.weight" [A, H], "prefix.v_p.weight" [1, A] */
    SG_LUONG_ALIGN_COUNT
} sg_luong_align;

typedef struct sg_luong_attention {
    sg_luong_score score;
    sg_luong_align align;
    int64_t hidden, attn_dim, window; /* H, A, D */
    sg_tensor *W_a, *v, *W_p, *v_p;   /* NULL when the configuration has none */
} sg_luong_attention;

/* Registers the parameters of the configuration (no biases; PyTorch Linear init when
 * rng is not NULL). attn_dim is used by concat and local-p, window D (>= 1) by local
 * attention. SG_EINVAL for a bad enum, sizes < 1, names; SG_ENOMEM. */
SG_API int sg_luong_attention_init(sg_luong_attention *m, sg_params *p, const char *prefix,
                                   sg_luong_score score, sg_luong_align align, int64_t hidden,
                                   int64_t attn_dim, int64_t window, sg_rng *rng);
/* Fills *mem from hbar [B, S, H]: keys = hbar (dot), hbar W_a^T (general), hbar
 * W_a[:, H:]^T (concat). Validity and errors as sg_additive_attention_precompute. */
SG_API int sg_luong_attention_precompute(sg_graph *g, const sg_luong_attention *m,
                                         sg_tensor *hbar, sg_tensor *lengths, sg_tensor *mask,
                                         sg_attn_memory *mem);
/* Decoder step t (0-based; used by local-m): h_t [B, H] -> context [B, H]; *weights
 * (optional) gets alpha [B, S] (after the Gaussian for local-p). NULL with SG_ESHAPE
 * (h_t not [B, H]) or SG_EINVAL (t < 0). */
SG_API sg_tensor *sg_luong_attention_step(sg_graph *g, const sg_luong_attention *m,
                                          const sg_attn_memory *mem, sg_tensor *h_t, int64_t t,
                                          sg_tensor **weights);

/* ---- lower-level fused attention ops (used by the modules above) ------------------ */
/* `valid` is a [B, S] byte mask (1 = take part) or NULL (all positions); the node keeps
 * the pointer for its backward, so it must live as long as the graph's step (use the
 * graph's arena, e.g. sg_attn_memory.valid). Errors: SG_ESHAPE, SG_EDTYPE (mixed or
 * non-float dtypes), SG_EINVAL (sigma <= 0 with pos). */

/* e[b, j] = sum_a v[a] tanh(q[b, a] + keys[b, j, a]) for valid positions (0 elsewhere).
 * q [B, A], keys [B, S, A], v [1, A] or [A]; valid (may be NULL) [B, S]. */
SG_API sg_tensor *sg_attn_additive_scores(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                          sg_tensor *v, const uint8_t *valid);
/* e[b, j] = keys[b, j, :] . q[b, :] for valid positions (0 elsewhere). */
SG_API sg_tensor *sg_attn_dot_scores(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                     const uint8_t *valid);
/* alpha = softmax of scores [B, S] over valid positions; with pos (SG float [B], may be
 * NULL) alpha_j *= exp(-(j - pos_b)^2 / (2 sigma^2)) afterwards (no renormalisation,
 * gradient reaches pos); context [B, Dv] = sum_j alpha_j values[b, j, :]. Returns the
 * context, *weights (optional) = alpha. A row with no valid position: zeros. */
SG_API sg_tensor *sg_attn_context(sg_graph *g, sg_tensor *scores, sg_tensor *values,
                                  const uint8_t *valid, sg_tensor *pos, double sigma,
                                  sg_tensor **weights);

/* ---- multi-head attention (MODELS.md 7.3, torch.nn.MultiheadAttention) ------------ */
typedef struct sg_mha {
    sg_tensor *in_proj_weight; /* [3d, d] rows W_q; W_k; W_v */
    sg_tensor *in_proj_bias;   /* [3d] */
    sg_linear_layer out_proj;  /* "prefix.out_proj.weight" [d, d], ".bias" [d] */
    int64_t d, heads;
    double dropout;            /* attention dropout probability */
} sg_mha;

/* Registers "prefix.in_proj_weight", "prefix.in_proj_bias", "prefix.out_proj.weight",
 * "prefix.out_proj.bias"; with rng: Xavier-uniform in_proj_weight and PyTorch Linear
 * out_proj weight, zero biases (PyTorch's init). SG_EINVAL when d < 1, heads < 1, d is
 * not divisible by heads, dropout outside [0, 1), bad names; SG_ENOMEM. */
SG_API int sg_mha_init(sg_mha *m, sg_params *p, const char *prefix, int64_t d, int64_t heads,
                       double dropout, sg_rng *rng);

/* Options of one attention call (zero-initialise, then set what is needed). */
typedef struct sg_mha_opts {
    sg_tensor *key_lengths; /* SG_I64 [B]: key j of row b is real when j < len[b] */
    sg_tensor *key_mask;    /* SG_BOOL [B, Lk]: true = real key (PyTorch's
                               key_padding_mask is the negation) */
    bool causal;            /* query i sees keys j <= i + (Lk - Lq) */
    bool training;          /* attention dropout on (needs rng): inverted dropout on the
                               probabilities, Bernoulli draws taken serially from rng as
                               sg_dropout does */
    sg_rng *rng;
    sg_tensor **weights;    /* if set: receives the attention probabilities [B, heads,
                               Lq, Lk] before dropout (graph-owned, read-only: the
                               backward uses them; not differentiable) */
} sg_mha_opts;

/* out [B, Lq, d] = attention of query [B, Lq, d] over key_value [B, Lk, d] (pass the
 * same tensor for self-attention: one fused projection GEMM). opts may be NULL. A query
 * row with every key masked gives zeros before out_proj (so out = out_proj.bias) and
 * zero gradient. In a graph that records, attention and out_proj are one node that keeps
 * Q, K, V and the probabilities, not the context (backward makes it again). SG_ESHAPE
 * (widths, batch, mask/length shapes), SG_EDTYPE, SG_ERANGE (a key length outside
 * [0, Lk]), SG_EINVAL (training without rng). */
SG_API sg_tensor *sg_mha_forward(sg_graph *g, const sg_mha *m, sg_tensor *query,
                                 sg_tensor *key_value, const sg_mha_opts *opts);

/* The fused core: softmax(Q_h K_h^T / sqrt(dk) + mask) (dropout) V_h for every head,
 * Q [B, Lq, d], K and V [B, Lk, d] (rows may be strided, last dim contiguous) ->
 * [B, Lq, d] heads concatenated. Hand-written backward. Same options and errors. */
SG_API sg_tensor *sg_scaled_dot_attention(sg_graph *g, sg_tensor *q, sg_tensor *k,
                                          sg_tensor *v, int64_t heads, double dropout,
                                          const sg_mha_opts *opts);

/* Inference key/value cache for incremental decoding (no gradient flows into it).
 * Cross-attention: sg_mha_cache_fill once with the memory; self-attention: reset, then
 * sg_mha_cache_append the new position(s) before each sg_mha_forward_cached. */
typedef struct sg_mha_cache {
    sg_tensor *k, *v; /* heap [B, cap, d] projected keys / values; rows [0, len) used */
    int64_t len, cap, B, d;
} sg_mha_cache;

/* A cache for batch B, up to cap positions of width d in dtype dt. SG_EINVAL, SG_ENOMEM. */
SG_API int sg_mha_cache_init(sg_mha_cache *c, sg_dtype dt, int64_t B, int64_t cap, int64_t d);
/* Frees the buffers (accepts NULL or a zeroed cache). */
SG_API void sg_mha_cache_free(sg_mha_cache *c);
/* Projects x [B, n, d] with W_k, W_v and appends (append) or replaces (fill) the
 * positions. SG_ESHAPE for a wrong shape, SG_ERANGE when the cache would exceed cap. */
SG_API int sg_mha_cache_append(sg_graph *g, const sg_mha *m, sg_mha_cache *c, sg_tensor *x);
SG_API int sg_mha_cache_fill(sg_graph *g, const sg_mha *m, sg_mha_cache *c, sg_tensor *x);
/* Attention of query [B, Lq, d] over the cache's len positions; options as
 * sg_mha_forward (key_mask is [B, len]). Result [B, Lq, d]. */
SG_API sg_tensor *sg_mha_forward_cached(sg_graph *g, const sg_mha *m, const sg_mha_cache *c,
                                        sg_tensor *query, const sg_mha_opts *opts);

/* ---- LayerNorm (eps 1e-5, biased variance, over the last dim) ---------------------- */
typedef struct sg_layernorm {
    sg_tensor *weight, *bias; /* [d] "prefix.weight" (init 1), "prefix.bias" (init 0) */
    int64_t d;
    double eps;
} sg_layernorm;

SG_API int sg_layernorm_init(sg_layernorm *m, sg_params *p, const char *prefix, int64_t d);
SG_API sg_tensor *sg_layernorm_forward(sg_graph *g, const sg_layernorm *m, sg_tensor *x);
/* The fused op: (x - mean) / sqrt(var + eps) * weight + bias over x's last dim (d);
 * weight and bias [d] or NULL. One node, hand-written backward. SG_ESHAPE, SG_EDTYPE,
 * SG_EINVAL (eps < 0). */
SG_API sg_tensor *sg_layer_norm(sg_graph *g, sg_tensor *x, sg_tensor *weight, sg_tensor *bias,
                                double eps);

/* ---- sinusoidal positions (MODELS.md 7.2) ---------------------------------------- */
/* A heap table [n_pos, d]: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same),
 * computed in double and rounded to dt. Not a parameter. Free with sg_tensor_free.
 * NULL on SG_EINVAL (n_pos < 1, d < 1, non-float dt) or SG_ENOMEM. */
SG_API sg_tensor *sg_sinusoid_table(sg_dtype dt, int64_t n_pos, int64_t d);

/* ---- feed-forward block (MODELS.md 7.4) ------------------------------------------ */
typedef enum sg_activation { SG_ACT_RELU = 0, SG_ACT_GELU, SG_ACT_COUNT } sg_activation;

/* FF(x) = linear2(dropout(act(linear1(x)))); "prefix.linear1.*" [F, d], "prefix.linear2.*"
 * [d, F] (the transformer layer's own prefix, as in PyTorch's state_dict). */
typedef struct sg_feedforward {
    sg_linear_layer linear1, linear2;
    sg_activation act;
    double dropout;
} sg_feedforward;

SG_API int sg_feedforward_init(sg_feedforward *m, sg_params *p, const char *prefix, int64_t d,
                               int64_t dff, sg_activation act, double dropout, sg_rng *rng);
/* x [..., d] -> [..., d]; dropout only when training (needs rng then). In a graph that
 * records, the ReLU block is one node that keeps x and its [..., F] hidden layer while
 * the graph's keep budget allows (sg_graph_set_keep_budget), else only x, making the
 * hidden layer again in backward (one more x W1^T product; the same values). Errors:
 * SG_ESHAPE (x does not end in d), SG_EDTYPE, SG_EINVAL (no rng in training with
 * dropout), SG_ENOMEM, recorded on g; NULL then. */
SG_API sg_tensor *sg_feedforward_forward(sg_graph *g, const sg_feedforward *m, sg_tensor *x,
                                         bool training, sg_rng *rng);
/* GELU, exact erf form (PyTorch's default): x/2 (1 + erf(x / sqrt 2)). */
SG_API sg_tensor *sg_gelu(sg_graph *g, sg_tensor *x);

/* ---- transformer layers (torch.nn.TransformerEncoderLayer / DecoderLayer) --------- */
/* Encoder: post-LN x = norm1(x + drop(SelfAttn(x))); x = norm2(x + drop(FF(x)));
 * pre-LN (norm_first) x = x + drop(SelfAttn(norm1(x))); x = x + drop(FF(norm2(x))).
 * Decoder: self-attention (causal), cross-attention "multihead_attn" over the memory,
 * FF, with norm1..norm3 likewise. Parameters under prefix exactly as PyTorch:
 * self_attn.*, [multihead_attn.*], linear1.*, linear2.*, norm1.*, norm2.*, [norm3.*]. */
typedef struct sg_transformer_layer {
    sg_mha self_attn, cross_attn; /* cross_attn only in decoder layers */
    sg_feedforward ff;
    sg_layernorm norm1, norm2, norm3;
    bool decoder, norm_first;
    double dropout;
} sg_transformer_layer;

/* Registers the layer's parameters (init as sg_mha_init / sg_linear_layer_init / LayerNorm
 * ones and zeros). Errors as sg_mha_init (d divisible by heads, dropout) and
 * sg_feedforward_init. */
SG_API int sg_transformer_layer_init(sg_transformer_layer *m, sg_params *p, const char *prefix,
                                     bool decoder, int64_t d, int64_t heads, int64_t dff,
                                     double dropout, bool norm_first, sg_rng *rng);
/* x [B, L, d] -> [B, L, d]; source key padding by lengths (SG_I64 [B]) or mask (SG_BOOL
 * [B, L], true = real) or neither. Dropout (attention, residual, FF) when training. */
SG_API sg_tensor *sg_transformer_encoder_layer_forward(sg_graph *g, const sg_transformer_layer *m,
                                                       sg_tensor *x, sg_tensor *key_lengths,
                                                       sg_tensor *key_mask, bool training,
                                                       sg_rng *rng);
/* y [B, T, d] (causal self-attention), memory [B, S, d] with its key padding -> [B, T, d]. */
SG_API sg_tensor *sg_transformer_decoder_layer_forward(sg_graph *g, const sg_transformer_layer *m,
                                                       sg_tensor *y, sg_tensor *memory,
                                                       sg_tensor *mem_lengths,
                                                       sg_tensor *mem_mask, bool training,
                                                       sg_rng *rng);
/* Incremental decoding (inference, no dropout, no gradient into the caches): y [B, 1, d]
 * is position t = self_cache->len; its keys/values are appended to self_cache (capacity
 * >= number of steps), cross_cache holds the memory's projected keys/values
 * (sg_mha_cache_fill with the memory, once). Equals row t of the full decoder forward. */
SG_API sg_tensor *sg_transformer_decoder_layer_step(sg_graph *g, const sg_transformer_layer *m,
                                                    sg_mha_cache *self_cache,
                                                    const sg_mha_cache *cross_cache,
                                                    sg_tensor *y, sg_tensor *mem_lengths,
                                                    sg_tensor *mem_mask);

#ifdef __cplusplus
}
#endif
#endif
