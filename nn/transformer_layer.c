/*
 * transformer_layer.c - torch.nn.TransformerEncoderLayer / TransformerDecoderLayer
 * (MODELS.md 7.4) from the blocks: multi-head attention, feed-forward, LayerNorm,
 * post-LN or pre-LN, plus a cached one-position decoder step for incremental decoding.
 */
#include "attn_internal.h"

#include <string.h>

int sg_transformer_layer_init(sg_transformer_layer *m, sg_params *p, const char *prefix,
                              bool decoder, int64_t d, int64_t heads, int64_t dff, double dropout,
                              bool norm_first, sg_rng *rng)
{
    const char *op = "sg_transformer_layer_init";
    if (!m || !p)
        return sg__error(SG_EINVAL, "%s: module or store is NULL", op);
    memset(m, 0, sizeof *m);
    char name[SG_PARAM_NAME_MAX];
    int rc;
    /* PyTorch's state_dict order: self_attn, multihead_attn, linear1, linear2, norms */
#define SUB(n) if ((rc = sg_param_name(name, prefix, (n))) != SG_OK) return rc
    SUB("self_attn");
    if ((rc = sg_mha_init(&m->self_attn, p, name, d, heads, dropout, rng)) != SG_OK)
        return rc;
    if (decoder) {
        SUB("multihead_attn");
        if ((rc = sg_mha_init(&m->cross_attn, p, name, d, heads, dropout, rng)) != SG_OK)
            return rc;
    }
    if ((rc = sg_feedforward_init(&m->ff, p, prefix, d, dff, SG_ACT_RELU, dropout, rng)) != SG_OK)
        return rc;
    SUB("norm1");
    if ((rc = sg_layernorm_init(&m->norm1, p, name, d)) != SG_OK)
        return rc;
    SUB("norm2");
    if ((rc = sg_layernorm_init(&m->norm2, p, name, d)) != SG_OK)
        return rc;
    if (decoder) {
        SUB("norm3");
        if ((rc = sg_layernorm_init(&m->norm3, p, name, d)) != SG_OK)
            return rc;
    }
#undef SUB
    m->decoder = decoder;
    m->norm_first = norm_first;
    m->dropout = dropout;
    return SG_OK;
}

/* One residual sub-layer: post-LN x = norm(x + drop(f(x))), pre-LN x = x + drop(f(norm(x))).
 * f is given as the sub-layer's output for input `in` computed by the caller. */
typedef sg_tensor *(*sublayer_fn)(sg_graph *g, const void *ctx, sg_tensor *in);

static sg_tensor *residual(sg_graph *g, const sg_transformer_layer *m, const sg_layernorm *norm,
                           sg_tensor *x, sublayer_fn f, const void *ctx, bool training,
                           sg_rng *rng)
{
    sg_tensor *in = m->norm_first ? sg_layernorm_forward(g, norm, x) : x;
    sg_tensor *s = sg_dropout_add(g, x, f(g, ctx, in), m->dropout, training, rng, true);
    return m->norm_first ? s : sg__layernorm_over(g, norm, s); /* s is not read again */
}

typedef struct {
    const sg_mha *mha;
    const sg_mha_cache *cache;
    sg_tensor *kv; /* NULL: self-attention on the input */
    sg_mha_opts opts;
    const sg_feedforward *ff;
} sub_ctx;

static sg_tensor *attn_sub(sg_graph *g, const void *c, sg_tensor *in)
{
    const sub_ctx *s = c;
    if (s->cache)
        return sg_mha_forward_cached(g, s->mha, s->cache, in, &s->opts);
    return sg_mha_forward(g, s->mha, in, s->kv ? s->kv : in, &s->opts);
}

static sg_tensor *ff_sub(sg_graph *g, const void *c, sg_tensor *in)
{
    const sub_ctx *s = c;
    return sg_feedforward_forward(g, s->ff, in, s->opts.training, s->opts.rng);
}

sg_tensor *sg_transformer_encoder_layer_forward(sg_graph *g, const sg_transformer_layer *m,
                                                sg_tensor *x, sg_tensor *key_lengths,
                                                sg_tensor *key_mask, bool training, sg_rng *rng)
{
    SG_NEED(g, x);
    if (!m || m->decoder)
        return sg_graph_fail(g, SG_EINVAL, "sg_transformer_encoder_layer_forward: needs an "
                                           "encoder layer");
    sub_ctx sa = {.mha = &m->self_attn,
                  .opts = {.key_lengths = key_lengths, .key_mask = key_mask,
                           .training = training, .rng = rng}};
    sub_ctx ff = {.ff = &m->ff, .opts = {.training = training, .rng = rng}};
    x = residual(g, m, &m->norm1, x, attn_sub, &sa, training, rng);
    return residual(g, m, &m->norm2, x, ff_sub, &ff, training, rng);
}

sg_tensor *sg_transformer_decoder_layer_forward(sg_graph *g, const sg_transformer_layer *m,
                                                sg_tensor *y, sg_tensor *memory,
                                                sg_tensor *mem_lengths, sg_tensor *mem_mask,
                                                bool training, sg_rng *rng)
{
    SG_NEED(g, y, memory);
    if (!m || !m->decoder)
        return sg_graph_fail(g, SG_EINVAL, "sg_transformer_decoder_layer_forward: needs a "
                                           "decoder layer");
    sub_ctx sa = {.mha = &m->self_attn, .opts = {.causal = true, .training = training, .rng = rng}};
    sub_ctx ca = {.mha = &m->cross_attn, .kv = memory,
                  .opts = {.key_lengths = mem_lengths, .key_mask = mem_mask,
                           .training = training, .rng = rng}};
    sub_ctx ff = {.ff = &m->ff, .opts = {.training = training, .rng = rng}};
    y = residual(g, m, &m->norm1, y, attn_sub, &sa, training, rng);
    y = residual(g, m, &m->norm2, y, attn_sub, &ca, training, rng);
    return residual(g, m, &m->norm3, y, ff_sub, &ff, training, rng);
}

sg_tensor *sg_transformer_decoder_layer_step(sg_graph *g, const sg_transformer_layer *m,
                                             sg_mha_cache *self_cache,
                                             const sg_mha_cache *cross_cache, sg_tensor *y,
                                             sg_tensor *mem_lengths, sg_tensor *mem_mask)
{
    const char *op = "sg_transformer_decoder_layer_step";
    SG_NEED(g, y);
    if (!m || !m->decoder || !self_cache || !cross_cache)
        return sg_graph_fail(g, SG_EINVAL, "%s: needs a decoder layer and both caches", op);
    /* self-attention: the new position's K/V join the cache, then the query attends to
     * every cached position (all <= t, so no causal mask is needed) */
    sg_tensor *in = m->norm_first ? sg_layernorm_forward(g, &m->norm1, y) : y;
    SG_NEED(in);
    if (sg_mha_cache_append(g, &m->self_attn, self_cache, in) != SG_OK)
        return NULL;
    sub_ctx sa = {.mha = &m->self_attn, .cache = self_cache};
    sg_tensor *a = attn_sub(g, &sa, in);
    y = m->norm_first ? sg_add(g, y, a) : sg_layernorm_forward(g, &m->norm1, sg_add(g, y, a));
    sub_ctx ca = {.mha = &m->cross_attn, .cache = cross_cache,
                  .opts = {.key_lengths = mem_lengths, .key_mask = mem_mask}};
    sub_ctx ff = {.ff = &m->ff};
    y = residual(g, m, &m->norm2, y, attn_sub, &ca, false, NULL);
    return residual(g, m, &m->norm3, y, ff_sub, &ff, false, NULL);
}
