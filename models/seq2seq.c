/*
 * seq2seq.c - the vanilla encoder-decoder of MODELS.md 4: Sutskever et al. (2014)'s deep
 * LSTM/GRU with a reversed source and the decoder started from the encoder's final
 * states (per layer), plus Cho et al. (2014)'s feed_context, which gives the summary
 * ctx = top-layer final h to every decoder step and to the generator.
 *
 * Training: no decoder step depends on the previous output, so the decoder runs over
 * all T steps at once with the fused multi-layer RNN (input projections of every step
 * in one GEMM) and the generator is one GEMM over all B*T rows.
 * Decoding: the encoder runs once (graph enc); each step runs the L single-step cells;
 * select_rows picks the per-row states with index_select.
 */
#include "models_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct s2s {
    sg_embedding src_embed, tgt_embed;
    sg_rnn encoder, decoder;
    sg_linear_layer generator;
    bool lstm, feed, reverse;
    int L;
} s2s;

/* Decoder state of R live rows: h[l], c[l] [R, H] per layer, ctx [R, H] (feed only). */
typedef struct s2s_dec {
    sg_model *m;
    sg_tensor *h[SG_RNN_MAX_LAYERS], *c[SG_RNN_MAX_LAYERS];
    sg_tensor *ctx;
} s2s_dec;

/* Parameters in the reference state_dict order (MODELS.md 4, 12): src_embed,
 * tgt_embed, encoder.*, decoder.*, generator.*. Values are set by sg_model_new. */
static int s2s_build(sg_model *m)
{
    const sg_model_config *c = &m->cfg;
    if (c->num_layers > SG_RNN_MAX_LAYERS)
        return sg__error(SG_EINVAL, "seq2seq: num_layers = %lld exceeds the maximum %d",
                         (long long)c->num_layers, SG_RNN_MAX_LAYERS);
    s2s *n = calloc(1, sizeof *n);
    if (!n)
        return sg__error(SG_ENOMEM, "seq2seq: out of memory");
    m->impl = n;
    n->lstm = strcmp(c->cell, "lstm") == 0;
    n->feed = c->feed_context != 0;
    n->reverse = c->reverse_source != 0;
    n->L = (int)c->num_layers;
    int64_t E = c->emb_dim, H = c->hidden_dim;
    sg_params *p = m->params;
    int rc = sg_embedding_init(&n->src_embed, p, "src_embed", c->src_vocab_size, E, SG_TOK_PAD,
                               NULL);
    if (rc == SG_OK)
        rc = sg_embedding_init(&n->tgt_embed, p, "tgt_embed", c->tgt_vocab_size, E, SG_TOK_PAD,
                               NULL);
    sg_rnn_config ec = {.input_size = E, .hidden_size = H, .num_layers = n->L,
                        .dropout = c->dropout};
    sg_rnn_config dc = ec;
    dc.input_size = E + (n->feed ? H : 0);
    int (*init)(sg_rnn *, sg_params *, const char *, const sg_rnn_config *, sg_rng *) =
        n->lstm ? sg_lstm_init : sg_gru_init;
    if (rc == SG_OK)
        rc = init(&n->encoder, p, "encoder", &ec, NULL);
    if (rc == SG_OK)
        rc = init(&n->decoder, p, "decoder", &dc, NULL);
    if (rc == SG_OK)
        rc = sg_linear_layer_init(&n->generator, p, "generator", (n->feed ? 2 : 1) * H,
                                  c->tgt_vocab_size, true, NULL);
    return rc;
}

static void s2s_free(sg_model *m)
{
    free(m->impl);
    m->impl = NULL;
}

/* MODELS.md 4 step 1: row b's x_0..x_{n-2} reversed, </s> (x_{n-1}) and padding kept.
 * src [B, S] contiguous (checked by sg__check_batch), len [B] in [1, S]. */
static sg_tensor *reversed_source(sg_graph *g, sg_tensor *src, sg_tensor *src_len)
{
    int64_t B = src->shape[0], S = src->shape[1];
    sg_tensor *r = sg_empty(g, SG_I64, 2, src->shape);
    if (!r)
        return NULL;
    const int64_t *x = src->data, *len = src_len->data;
    int64_t *y = r->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = len[b];
        for (int64_t j = 0; j < S; j++)
            y[b * S + j] = x[b * S + (j < n - 1 ? n - 2 - j : j)];
    }
    return r;
}

/* Runs the encoder (MODELS.md 4): final states h_n, c_n [L, B, H] (c_n LSTM only). */
static int encode(sg_model *m, sg_graph *g, sg_tensor *src, sg_tensor *src_len, sg_tensor **h_n,
                  sg_tensor **c_n)
{
    s2s *n = m->impl;
    *c_n = NULL;
    sg_tensor *ids = n->reverse ? reversed_source(g, src, src_len) : src;
    sg_rnn_opts o = {.lengths = src_len, .training = m->training, .rng = &m->rng};
    sg_tensor *out = ids ? sg__model_encode_ids(g, m, &n->encoder, &n->src_embed, ids, &o, h_n, c_n)
                         : NULL; /* [B, S, H] */
    return out ? SG_OK : sg_graph_status(g);
}

/* ctx [B, H] seen as [B, T, H] without copying (stride 0 along T). */
static sg_tensor *ctx_over_steps(sg_graph *g, sg_tensor *ctx, int64_t T)
{
    int64_t shape[3] = {ctx->shape[0], T, ctx->shape[1]};
    return sg_expand(g, sg_unsqueeze(g, ctx, 1), 3, shape);
}

static sg_tensor *s2s_features(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                              const sg_linear_layer **gen)
{
    s2s *n = m->impl;
    if (attn)
        *attn = NULL;
    sg_tensor *h_n, *c_n;
    if (encode(m, g, b->src, b->src_len, &h_n, &c_n) != SG_OK)
        return NULL;
    int64_t T = b->tgt_in->shape[1];
    sg_tensor *ctx = n->feed ? ctx_over_steps(g, sg_select(g, h_n, 0, n->L - 1), T) : NULL;
    sg_tensor *u = sg_embedding_forward(g, &n->tgt_embed, b->tgt_in); /* [B, T, E] */
    u = sg__model_drop_over(g, m, u); /* read no more */
    if (n->feed)
        u = sg_concat(g, 2, (sg_tensor *[]){u, ctx}, 2); /* [B, T, E+H] */
    SG_NEED(u);
    sg_rnn_opts o = {.h0 = h_n, .c0 = c_n, .training = m->training, .rng = &m->rng};
    sg_tensor *s = sg_rnn_forward(g, &n->decoder, u, &o, NULL, NULL); /* [B, T, H] */
    if (n->feed)
        s = sg_concat(g, 2, (sg_tensor *[]){s, ctx}, 2); /* [B, T, 2H] */
    SG_NEED(s);
    *gen = &n->generator;
    /* in place over the concatenation, which nothing reads again */
    return sg__model_drop_over(g, m, s); /* [B, T, F] */
}

/* ---- decoding ------------------------------------------------------------------- */

static void *s2s_decoder_new(sg_model *m, sg_graph *enc, sg_tensor *src, sg_tensor *src_len)
{
    s2s *n = m->impl;
    sg_tensor *h_n, *c_n;
    if (encode(m, enc, src, src_len, &h_n, &c_n) != SG_OK)
        return NULL;
    s2s_dec *d = calloc(1, sizeof *d);
    if (!d) {
        sg_graph_fail(enc, SG_ENOMEM, "seq2seq: out of memory for the decoder state");
        return NULL;
    }
    d->m = m;
    for (int l = 0; l < n->L; l++) {
        d->h[l] = sg_select(enc, h_n, 0, l); /* [B, H] */
        d->c[l] = n->lstm ? sg_select(enc, c_n, 0, l) : NULL;
    }
    d->ctx = n->feed ? d->h[n->L - 1] : NULL;
    if (sg_graph_status(enc) != SG_OK) {
        free(d);
        return NULL;
    }
    return d;
}

static void s2s_decoder_free(void *state) { free(state); }

/* One step of every live row: prev [R] -> logits [R, Vt]; advances h, c. */
static int s2s_step(void *state, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    (void)t;
    s2s_dec *d = state;
    s2s *n = d->m->impl;
    sg_tensor *x = sg_embedding_forward(g, &n->tgt_embed, prev); /* [R, E] */
    if (n->feed)
        x = sg_concat(g, 2, (sg_tensor *[]){x, d->ctx}, 1); /* [R, E+H] */
    for (int l = 0; l < n->L && x; l++) {
        const sg_rnn_weights *w = &n->decoder.w[l][0];
        if (n->lstm)
            x = sg_lstm_cell_forward(g, x, d->h[l], d->c[l], w, &d->c[l]);
        else
            x = sg_gru_cell_forward(g, x, d->h[l], w, false);
        d->h[l] = x; /* [R, H] */
    }
    if (x && n->feed)
        x = sg_concat(g, 2, (sg_tensor *[]){x, d->ctx}, 1); /* [R, 2H] */
    *logits = x ? sg_linear_layer_forward(g, &n->generator, x) : NULL; /* [R, Vt] */
    return *logits ? SG_OK : sg_graph_status(g);
}

/* New row i continues old row parent[i]. */
static int s2s_select_rows(void *state, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    (void)sentence;
    s2s_dec *d = state;
    s2s *n = d->m->impl;
    for (int l = 0; l < n->L; l++) {
        d->h[l] = sg_index_select(g, d->h[l], 0, parent);
        if (n->lstm)
            d->c[l] = sg_index_select(g, d->c[l], 0, parent);
    }
    if (n->feed)
        d->ctx = sg_index_select(g, d->ctx, 0, parent);
    return sg_graph_status(g);
}

const sg_model_vt sg__seq2seq_vt = {
    .build = s2s_build,
    .features = s2s_features,
    .decoder_new = s2s_decoder_new,
    .decoder_free = s2s_decoder_free,
    .ops = {s2s_step, s2s_select_rows},
    .free = s2s_free,
};
