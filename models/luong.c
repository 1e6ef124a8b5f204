/*
 * luong.c - the `luong` architecture (MODELS.md 6): L-layer LSTM encoder and decoder,
 * global / local-m / local-p attention with dot / general / concat scores (nn's
 * sg_luong_attention), optional input feeding, htilde = dropout(tanh(W_c [c ; h]))
 * and a generator over all B*T rows at once.
 *
 * Training forward:
 *   - without input feeding the decoder LSTM runs over all steps in one fused run,
 *     attention per step afterwards, W_c and the generator over all steps at once;
 *   - with input feeding the steps are sequential, but the embedding part of layer
 *     0's input projection is one GEMM for all steps (luong_step.c adds the feed part
 *     through a strided view of weight_ih), upper layers use the single-step cell.
 * The attention keys (W_a hbar) are computed once per batch in both cases.
 */
#include "luong_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct luong {
    sg_embedding src_embed, tgt_embed;
    sg_lstm encoder, decoder;
    sg_luong_attention att;
    sg_linear_layer combine, generator;
    int64_t E, H, L;
    bool feed;
} luong;

static int parse_choice(const char *what, const char *s, const char *const *names, int n)
{
    for (int k = 0; k < n; k++)
        if (strcmp(s, names[k]) == 0)
            return k;
    return sg__error(SG_EINVAL, "luong: unknown %s '%s'", what, s);
}

static int luong_build(sg_model *m)
{
    const sg_model_config *c = &m->cfg;
    static const char *const aligns[] = {"global", "local-m", "local-p"};
    static const char *const scores[] = {"dot", "general", "concat"};
    int al = parse_choice("attn_type", c->attn_type, aligns, 3);
    int sc = parse_choice("score", c->score, scores, 3);
    if (al < 0 || sc < 0)
        return SG_EINVAL;
    if (c->num_layers < 1 || c->num_layers > SG_RNN_MAX_LAYERS)
        return sg__error(SG_EINVAL, "luong: num_layers = %lld must be in [1, %d]",
                         (long long)c->num_layers, SG_RNN_MAX_LAYERS);
    luong *z = calloc(1, sizeof *z);
    if (!z)
        return sg__error(SG_ENOMEM, "luong: out of memory");
    m->impl = z;
    z->E = c->emb_dim;
    z->H = c->hidden_dim;
    z->L = c->num_layers;
    z->feed = c->input_feed != 0;
    sg_params *p = m->params;
    sg_rnn_config ec = {.input_size = z->E, .hidden_size = z->H, .num_layers = (int)z->L,
                        .dropout = c->dropout};
    sg_rnn_config dc = ec;
    dc.input_size = z->E + (z->feed ? z->H : 0);
    int rc;
    /* state_dict order (MODELS.md 12): embeddings, encoder, decoder, attention, W_c,
     * generator */
    if ((rc = sg_embedding_init(&z->src_embed, p, "src_embed", c->src_vocab_size, z->E, SG_TOK_PAD,
                                NULL)) != SG_OK ||
        (rc = sg_embedding_init(&z->tgt_embed, p, "tgt_embed", c->tgt_vocab_size, z->E, SG_TOK_PAD,
                                NULL)) != SG_OK ||
        (rc = sg_lstm_init(&z->encoder, p, "encoder", &ec, NULL)) != SG_OK ||
        (rc = sg_lstm_init(&z->decoder, p, "decoder", &dc, NULL)) != SG_OK ||
        (rc = sg_luong_attention_init(&z->att, p, "attention", (sg_luong_score)sc,
                                      (sg_luong_align)al, z->H, c->attn_dim, c->local_window,
                                      NULL)) != SG_OK ||
        (rc = sg_linear_layer_init(&z->combine, p, "combine", 2 * z->H, z->H, false, NULL)) !=
            SG_OK ||
        (rc = sg_linear_layer_init(&z->generator, p, "generator", z->H, c->tgt_vocab_size, true,
                                   NULL)) != SG_OK)
        return rc;
    return SG_OK;
}

static void luong_free(sg_model *m)
{
    free(m->impl);
    m->impl = NULL;
}

/* hbar [B, S, H] (zeros at padding) and the final states [L, B, H]. */
static sg_tensor *encode(sg_model *m, sg_graph *g, sg_tensor *src, sg_tensor *src_len,
                         sg_tensor **h_n, sg_tensor **c_n)
{
    luong *z = m->impl;
    sg_rnn_opts o = {.lengths = src_len, .training = m->training, .rng = &m->rng};
    return sg__model_encode_ids(g, m, &z->encoder, &z->src_embed, src, &o, h_n, c_n);
}

/* htilde = dropout(tanh(W_c [ctx ; h])) for [..., H] operands. */
static sg_tensor *combine(sg_model *m, sg_graph *g, sg_tensor *ctx, sg_tensor *h)
{
    luong *z = m->impl;
    SG_NEED(ctx, h);
    /* W_c [ctx ; h] without the join, then tanh and dropout over W_c's output */
    sg_tensor *x = sg__linear_cat2(g, ctx, h, z->combine.weight, z->combine.bias);
    return sg__tanh_dropout_over(g, x, m->cfg.dropout, m->training, &m->rng);
}

/* Decoder without input feeding: one LSTM run over all T steps, then attention per
 * step and W_c over all steps. Returns htilde [B, T, H]. */
static sg_tensor *decode_nofeed(sg_model *m, sg_graph *g, sg_tensor *emb, sg_tensor *hn,
                                sg_tensor *cn, const sg_attn_memory *mem, sg_tensor **ws)
{
    luong *z = m->impl;
    int64_t T = emb->shape[1];
    sg_rnn_opts o = {.h0 = hn, .c0 = cn, .training = m->training, .rng = &m->rng};
    sg_tensor *hs = sg_lstm_forward(g, &z->decoder, emb, &o, NULL, NULL); /* [B, T, H] */
    sg_tensor **ctx = sg_arena_alloc(sg_graph_arena(g), sizeof *ctx * (size_t)T);
    SG_NEED(hs, ctx);
    for (int64_t t = 0; t < T; t++) {
        ctx[t] = sg_luong_attention_step(g, &z->att, mem, sg_select(g, hs, 1, t), t,
                                         ws ? &ws[t] : NULL);
        SG_NEED(ctx[t]);
    }
    return combine(m, g, sg_stack(g, (int)T, ctx, 1), hs);
}

/* Decoder with input feeding: sequential steps. Returns htilde [B, T, H]. */
static sg_tensor *decode_feed(sg_model *m, sg_graph *g, sg_tensor *emb, sg_tensor *hn,
                              sg_tensor *cn, const sg_attn_memory *mem, sg_tensor **ws)
{
    luong *z = m->impl;
    int64_t B = emb->shape[0], T = emb->shape[1], E = z->E, H = z->H, L = z->L;
    double p = m->cfg.dropout;
    const sg_rnn_weights *w0 = &z->decoder.w[0][0];
    /* embedding part of layer 0's gates for every step with b_ih: [B, T, 4H] (each step
     * adds b_hh) */
    sg_tensor *gx = sg_linear(g, emb, sg_narrow(g, w0->weight_ih, 1, 0, E), w0->bias_ih);
    sg_tensor *Wf = sg_narrow(g, w0->weight_ih, 1, E, H); /* [4H, H], row stride E + H */
    sg_tensor *h[SG_RNN_MAX_LAYERS], *c[SG_RNN_MAX_LAYERS];
    for (int64_t l = 0; l < L; l++) {
        h[l] = sg_select(g, hn, 0, l);
        c[l] = sg_select(g, cn, 0, l);
        SG_NEED(h[l], c[l]);
    }
    sg_tensor *feed = sg_zeros(g, emb->dtype, 2, (int64_t[]){B, H});
    sg_tensor **out = sg_arena_alloc(sg_graph_arena(g), sizeof *out * (size_t)T);
    SG_NEED(gx, Wf, feed, out);
    for (int64_t t = 0; t < T; t++) {
        /* gx is this loop's alone: each step keeps its gates over its rows */
        h[0] = sg__luong_lstm_step(g, gx, t, w0->bias_hh, feed, h[0], c[0], Wf, w0->weight_hh,
                                   &c[0]);
        sg_tensor *x = h[0];
        for (int64_t l = 1; l < L; l++) {
            x = sg_dropout(g, x, p, m->training, &m->rng);
            SG_NEED(x);
            h[l] = sg_lstm_cell_forward(g, x, h[l], c[l], &z->decoder.w[l][0], &c[l]);
            x = h[l];
        }
        SG_NEED(x);
        sg_tensor *ctx = sg_luong_attention_step(g, &z->att, mem, x, t, ws ? &ws[t] : NULL);
        feed = out[t] = combine(m, g, ctx, x);
        SG_NEED(feed);
    }
    return sg_stack(g, (int)T, out, 1);
}

static sg_tensor *luong_features(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                                const sg_linear_layer **gen)
{
    luong *z = m->impl;
    int64_t T = b->tgt_in->shape[1];
    sg_tensor *hn, *cn;
    sg_tensor *hbar = encode(m, g, b->src, b->src_len, &hn, &cn);
    SG_NEED(hbar);
    sg_attn_memory mem;
    if (sg_luong_attention_precompute(g, &z->att, hbar, b->src_len, NULL, &mem) != SG_OK)
        return NULL;
    sg_tensor *emb = sg_embedding_forward(g, &z->tgt_embed, b->tgt_in);
    emb = sg__model_drop_over(g, m, emb); /* [B, T, E] */
    sg_tensor **ws = attn ? sg_arena_alloc(sg_graph_arena(g), sizeof *ws * (size_t)T) : NULL;
    SG_NEED(emb);
    if (attn && !ws)
        return sg_graph_fail(g, SG_ENOMEM, "luong forward: out of memory");
    sg_tensor *ht = z->feed ? decode_feed(m, g, emb, hn, cn, &mem, ws)
                            : decode_nofeed(m, g, emb, hn, cn, &mem, ws);
    SG_NEED(ht);
    if (attn)
        *attn = sg_stack(g, (int)T, ws, 1); /* [B, T, S] */
    *gen = &z->generator;
    return ht; /* [B, T, H] */
}

/* ---- decoding ---------------------------------------------------------------------- */

/* Per-row decoder state. h, c, feed live in the step graphs (or enc at first). The
 * attention memory rows depend only on the sentence of a row, so they are gathered
 * into heap buffers only when the row -> sentence map changes (a sentence finished,
 * or beam went from 1 to k rows), not at every step. */
typedef struct luong_dec {
    sg_model *m;
    sg_tensor *h[SG_RNN_MAX_LAYERS], *c[SG_RNN_MAX_LAYERS], *feed;
    sg__attn_rows mem;           /* attention memory per decoding row */
} luong_dec;

static void dec_free(void *u)
{
    luong_dec *d = u;
    if (!d)
        return;
    sg__attn_rows_free(&d->mem);
    free(d);
}

static void *dec_new(sg_model *m, sg_graph *enc, sg_tensor *src, sg_tensor *src_len)
{
    luong *z = m->impl;
    int64_t B = src->shape[0];
    sg_tensor *hn, *cn;
    sg_tensor *hbar = encode(m, enc, src, src_len, &hn, &cn);
    SG_NEED(hbar);
    luong_dec *d = calloc(1, sizeof *d);
    if (!d)
        return sg_graph_fail(enc, SG_ENOMEM, "luong decoder_new: out of memory");
    d->m = m;
    sg_attn_memory base;
    if (sg_luong_attention_precompute(enc, &z->att, sg_contiguous(enc, hbar), src_len, NULL,
                                      &base) != SG_OK ||
        /* a beam's hypotheses read their sentence's memory through a row map; local
         * windows need a copy per row (their positions are per row) */
        sg__attn_rows_init(&d->mem, enc, &base, z->att.align == SG_LUONG_GLOBAL) != SG_OK)
        goto fail;
    d->feed = sg_zeros(enc, hbar->dtype, 2, (int64_t[]){B, z->H});
    if (!d->feed)
        goto fail;
    for (int64_t l = 0; l < z->L; l++)
        if (!(d->h[l] = sg_select(enc, hn, 0, l)) || !(d->c[l] = sg_select(enc, cn, 0, l)))
            goto fail;
    return d;
fail:
    if (sg_graph_status(enc) == SG_OK)
        sg_graph_fail(enc, SG_ENOMEM, "luong decoder_new: out of memory");
    dec_free(d);
    return NULL;
}

static int dec_step(void *u, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    luong_dec *d = u;
    sg_model *m = d->m;
    luong *z = m->impl;
    sg_tensor *x = sg_embedding_forward(g, &z->tgt_embed, prev); /* [R, E]; eval: no dropout */
    if (z->feed)
        x = sg_concat(g, 2, (sg_tensor *[]){x, d->feed}, 1);
    for (int64_t l = 0; l < z->L && x; l++)
        x = d->h[l] = sg_lstm_cell_forward(g, x, d->h[l], d->c[l], &z->decoder.w[l][0], &d->c[l]);
    sg_tensor *ctx = x ? sg_luong_attention_step(g, &z->att, &d->mem.cur, x, t, NULL) : NULL;
    d->feed = ctx ? combine(m, g, ctx, x) : NULL;
    *logits = d->feed ? sg_linear_layer_forward(g, &z->generator, d->feed) : NULL;
    return *logits ? SG_OK : sg_graph_status(g);
}

static int dec_select(void *u, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    luong_dec *d = u;
    luong *z = d->m->impl;
    for (int64_t l = 0; l < z->L; l++) {
        d->h[l] = sg_index_select(g, d->h[l], 0, parent);
        d->c[l] = sg_index_select(g, d->c[l], 0, parent);
        if (!d->h[l] || !d->c[l])
            return sg_graph_status(g);
    }
    if (!(d->feed = sg_index_select(g, d->feed, 0, parent)))
        return sg_graph_status(g);
    return sg__attn_rows_select(&d->mem, sentence->data, sentence->shape[0]);
}

const sg_model_vt sg__luong_vt = {
    .build = luong_build,
    .features = luong_features,
    .decoder_new = dec_new,
    .decoder_free = dec_free,
    .ops = {.step = dec_step, .select_rows = dec_select},
    .free = luong_free,
};
