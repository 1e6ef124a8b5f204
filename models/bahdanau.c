/*
 * bahdanau.c - additive attention encoder-decoder (Bahdanau et al. 2015, MODELS.md 5).
 *
 * Encoder: bidirectional GRU over dropout(src_embed[x]) with exact lengths; the
 * decoder starts from s = tanh(W_init bwd_0 + b_init). Decoder step t:
 *   c_t = attention(s_{t-1}, h)            (keys W_h h + b_a precomputed once)
 *   s_t = GRU([e_t ; c_t], s_{t-1})
 *   logits_t = generator(dropout([s_t ; c_t ; e_t]))
 * Training runs the recurrence step by step (the attention needs s_{t-1}), the GRU as
 * one fused node a step over the embedding part of its input gates made for all steps
 * at once (bahdanau_step.c), and the generator once over all B*T rows after the loop.
 * Decoding runs the same fused step a step at a time; a beam makes the context's products
 * once per source position instead of once per hypothesis and step (MIX_MAX_BYTES).
 */
#include "models_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    sg_embedding src_embed, tgt_embed;
    sg_gru encoder;
    sg_linear_layer init_proj;
    sg_additive_attention attention;
    sg_gru decoder;
    sg_linear_layer generator;
} bahdanau;

static int build(sg_model *m)
{
    const sg_model_config *c = &m->cfg;
    bahdanau *net = calloc(1, sizeof *net);
    if (!net)
        return sg__error(SG_ENOMEM, "bahdanau: out of memory");
    m->impl = net;
    int64_t E = c->emb_dim, H = c->hidden_dim, A = c->attn_dim;
    sg_params *p = m->params;
    sg_rnn_config enc = {.input_size = E, .hidden_size = H, .num_layers = 1, .bidirectional = true};
    sg_rnn_config dec = {.input_size = E + 2 * H, .hidden_size = H, .num_layers = 1};
    int rc;
    if ((rc = sg_embedding_init(&net->src_embed, p, "src_embed", c->src_vocab_size, E, 0, NULL)) ||
        (rc = sg_embedding_init(&net->tgt_embed, p, "tgt_embed", c->tgt_vocab_size, E, 0, NULL)) ||
        (rc = sg_gru_init(&net->encoder, p, "encoder", &enc, NULL)) ||
        (rc = sg_linear_layer_init(&net->init_proj, p, "init_proj", H, H, true, NULL)) ||
        (rc = sg_additive_attention_init(&net->attention, p, "attention", H, 2 * H, A, NULL)) ||
        (rc = sg_gru_init(&net->decoder, p, "decoder", &dec, NULL)) ||
        (rc = sg_linear_layer_init(&net->generator, p, "generator", 3 * H + E, c->tgt_vocab_size,
                                   true, NULL)))
        return rc;
    return SG_OK;
}

static void destroy(sg_model *m)
{
    free(m->impl);
    m->impl = NULL;
}

/* Encoder outputs h [B, S, 2H] (zeros at padding), the attention memory and s_0. */
static int encode(sg_model *m, sg_graph *g, sg_tensor *src, sg_tensor *src_len,
                  sg_attn_memory *mem, sg_tensor **s0)
{
    bahdanau *net = m->impl;
    sg_rnn_opts o = {.lengths = src_len, .training = m->training, .rng = &m->rng};
    sg_tensor *h_n = NULL; /* [2, B, H] */
    sg_tensor *h = sg__model_encode_ids(g, m, &net->encoder, &net->src_embed, src, &o, &h_n, NULL);
    if (!h)
        return sg_graph_status(g);
    sg_tensor *bwd0 = sg_select(g, h_n, 0, 1);                   /* backward state [B, H] */
    *s0 = sg_tanh(g, sg_linear_layer_forward(g, &net->init_proj, bwd0));
    if (!*s0)
        return sg_graph_status(g);
    return sg_additive_attention_precompute(g, &net->attention, h, src_len, NULL, mem);
}

static sg_tensor *features(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                          const sg_linear_layer **gen)
{
    bahdanau *net = m->impl;
    int64_t T = b->tgt_in->shape[1], E = m->cfg.emb_dim, C = 2 * m->cfg.hidden_dim;
    sg_attn_memory mem;
    sg_tensor *s;
    if (encode(m, g, b->src, b->src_len, &mem, &s) != SG_OK)
        return NULL;
    sg_tensor *emb = /* [B, T, E] */
        sg__model_drop_over(g, m, sg_embedding_forward(g, &net->tgt_embed, b->tgt_in));
    const sg_rnn_weights *w = &net->decoder.w[0][0];
    /* the embedding part of the decoder's input gates for every step, with b_ih: one GEMM
     * for [B, T, 3H]; each step adds its context's part (W_c, a strided view). Without
     * dropout and with fewer words than positions, made once per word and looked up (as
     * sg_rnn_forward_ids does for the encoder). */
    sg_tensor *We = sg_narrow(g, w->weight_ih, 1, 0, E), *table = net->tgt_embed.weight;
    sg_tensor *gx = !sg__model_drops(m) && table->shape[0] < b->tgt_in->shape[0] * T
                        ? sg_embedding_lookup(g, sg_linear(g, table, We, w->bias_ih), b->tgt_in,
                                              net->tgt_embed.padding_idx)
                        : sg_linear(g, emb, We, w->bias_ih);
    sg_tensor *Wc = sg_narrow(g, w->weight_ih, 1, E, C);
    sg_arena *a = sg_graph_arena(g);
    sg_tensor **ss = sg_arena_alloc(a, sizeof *ss * (size_t)T);
    sg_tensor **cs = sg_arena_alloc(a, sizeof *cs * (size_t)T);
    sg_tensor **alphas = attn ? sg_arena_alloc(a, sizeof *alphas * (size_t)T) : NULL;
    SG_NEED(gx, Wc);
    if (!ss || !cs || (attn && !alphas))
        return sg_graph_fail(g, SG_ENOMEM, "bahdanau: out of memory");
    for (int64_t t = 0; t < T; t++) {
        cs[t] = sg_additive_attention_step(g, &net->attention, &mem, s,
                                           alphas ? &alphas[t] : NULL); /* [B, 2H] */
        s = ss[t] = sg__bahdanau_gru_step(g, gx, t, w->bias_hh, cs[t], s, Wc, w->weight_hh);
        SG_NEED(s);
    }
    if (attn)
        *attn = sg_stack(g, (int)T, alphas, 1); /* [B, T, S] */
    /* the generator's input [s_t ; c_t ; e_t] for all steps, each value copied once */
    sg_tensor *o = sg__join_steps(g, 3, T, (sg_tensor **const[]){ss, cs, NULL},
                                  (sg_tensor *const[]){NULL, NULL, emb}); /* [B, T, 3H+E] */
    *gen = &net->generator;
    return sg__model_drop_over(g, m, o);
}

/* ---- decoding ------------------------------------------------------------------- */

/* The context's products made once per source position for a beam (MIX_MAX_BYTES):
 * c_t W^T = sum_j a_tj (h_j W^T), so with mix_j = h_j [W_c ; G_c]^T (W_c the decoder's
 * input weight on c_t, G_c the generator's) a step's attention averages mix_j instead of
 * h_j and gets both products of c_t at once. A sentence's S products then serve all of
 * its hypotheses' steps (beam 5 on dates: ~55 steps for ~16 positions); greedy decoding
 * (about as many steps as positions) keeps the per-step products. */
#define MIX_MAX_BYTES ((size_t)256 << 20)
size_t sg__bahdanau_mix_max_bytes = MIX_MAX_BYTES;

typedef struct {
    sg_model *m;
    sg__attn_rows mem;  /* encoder outputs and keys, per decoding row */
    sg_tensor *s;       /* [R, H] decoder state, in a step graph */
    sg_tensor *gx_word; /* [Vt, 3H] the embedding part of the input gates, with b_ih, of
                         * every target word (in the encoder's graph), or NULL: made per
                         * step when the vocabulary has more words than the batch rows */
    sg_tensor *mix;     /* [B, S, 3H + Vt] h_j [W_c ; G_c]^T (owned), once rows share a
                         * sentence; NULL before, or when larger than
                         * sg__bahdanau_mix_max_bytes */
} dec_state;

static void decoder_free(void *p)
{
    dec_state *d = p;
    if (!d)
        return;
    sg__attn_rows_free(&d->mem);
    sg_tensor_free(d->mix);
    free(d);
}

/* d->mix from the encoder outputs (no graph: decoding keeps no gradient). SG_OK also
 * when it is too large to make (d->mix stays NULL: the next beam step asks again, a few
 * multiplications), SG_ENOMEM. */
static int make_mix(dec_state *d)
{
    bahdanau *net = d->m->impl;
    const sg_tensor *h = d->mem.base.values; /* [B, S, 2H] contiguous */
    const sg_tensor *Wih = net->decoder.w[0][0].weight_ih, *Wg = net->generator.weight;
    int64_t B = h->shape[0], S = h->shape[1], C = h->shape[2], E = d->m->cfg.emb_dim;
    int64_t H = d->m->cfg.hidden_dim, G = 3 * H, V = Wg->shape[0], D = G + V;
    sg_dtype dt = h->dtype;
    size_t es = sg_dtype_size(dt);
    if ((double)(B * S) * (double)D * (double)es > (double)sg__bahdanau_mix_max_bytes)
        return SG_OK;
    if (!(d->mix = sg_tensor_new(dt, 3, (int64_t[]){B, S, D})))
        return sg__error(SG_ENOMEM, "bahdanau decoder: out of memory for the beam's context "
                                    "products [%lld, %lld, %lld]",
                         (long long)B, (long long)S, (long long)D);
    /* W_c = W_ih[:, E:E+C] and G_c = W_g[:, H:H+C], read transposed through strides */
    sg__gemm(dt, B * S, G, C, 1.0, h->data, C, 1, (const char *)Wih->data + (size_t)E * es,
             Wih->stride[1], Wih->stride[0], 0.0, d->mix->data, D, 1);
    sg__gemm(dt, B * S, V, C, 1.0, h->data, C, 1, (const char *)Wg->data + (size_t)H * es,
             Wg->stride[1], Wg->stride[0], 0.0, (char *)d->mix->data + (size_t)G * es, D, 1);
    return SG_OK;
}

static void *decoder_new(sg_model *m, sg_graph *enc, sg_tensor *src, sg_tensor *src_len)
{
    dec_state *d = calloc(1, sizeof *d);
    if (!d) {
        sg_graph_fail(enc, SG_ENOMEM, "bahdanau decoder: out of memory");
        return NULL;
    }
    d->m = m;
    sg_attn_memory base;
    bahdanau *net = m->impl;
    const sg_rnn_weights *w = &net->decoder.w[0][0];
    sg_tensor *table = net->tgt_embed.weight;
    bool per_word = table->shape[0] <= src->shape[0]; /* dates: 15 words, 64 rows */
    if (encode(m, enc, src, src_len, &base, &d->s) != SG_OK ||
        sg__attn_rows_init(&d->mem, enc, &base, true) != SG_OK ||
        (per_word &&
         !(d->gx_word = sg_linear(enc, table, sg_narrow(enc, w->weight_ih, 1, 0, m->cfg.emb_dim),
                                  w->bias_ih)))) {
        decoder_free(d);
        return NULL;
    }
    return d;
}

static int select_rows(void *p, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    dec_state *d = p;
    d->s = sg_index_select(g, d->s, 0, parent);
    if (!d->s)
        return sg_graph_status(g);
    int rc = sg__attn_rows_select(&d->mem, sentence->data, sentence->shape[0]);
    if (rc == SG_OK && !d->mix && sentence->shape[0] > d->mem.base.B)
        rc = make_mix(d); /* more rows than sentences: a beam */
    return rc;
}

/* The embedding part of a step's input gates, b_ih included, [R, 3H]: the words' rows of
 * gx_word, or one product per step (as the training step's, bahdanau_step.c) */
static sg_tensor *embedding_gates(dec_state *d, sg_graph *g, sg_tensor *e, sg_tensor *prev)
{
    const sg_rnn_weights *w = &((bahdanau *)d->m->impl)->decoder.w[0][0];
    return d->gx_word ? sg_embedding_lookup(g, d->gx_word, prev, -1)
                      : sg_linear(g, e, sg_narrow(g, w->weight_ih, 1, 0, d->m->cfg.emb_dim),
                                  w->bias_ih);
}

/* dec_step with d->mix: the attention averages mix_j, whose parts stand for c_t W_c^T
 * and c_t G_c^T (c_t itself is not needed). */
static int dec_step_mixed(dec_state *d, sg_graph *g, sg_tensor *e, sg_tensor *prev,
                          sg_tensor **logits)
{
    bahdanau *net = d->m->impl;
    const sg_rnn_weights *w = &net->decoder.w[0][0];
    int64_t R = prev->shape[0], E = d->m->cfg.emb_dim, H = d->m->cfg.hidden_dim, G = 3 * H;
    int64_t V = net->generator.weight->shape[0];
    sg_attn_memory mem = d->mem.cur;
    mem.values = d->mix;
    sg_tensor *mixed = sg_additive_attention_step(g, &net->attention, &mem, d->s, NULL);
    sg_tensor *gx = sg_add(g, embedding_gates(d, g, e, prev), sg_narrow(g, mixed, 1, 0, G));
    gx = sg_view(g, gx, 3, (int64_t[]){R, 1, G});
    if (!gx)
        return sg_graph_status(g);
    d->s = sg__bahdanau_gru_step(g, gx, 0, w->bias_hh, NULL, d->s, NULL, w->weight_hh);
    /* generator([s ; c ; e]) = s G_s^T + b + c G_c^T + e G_e^T */
    sg_tensor *Wg = net->generator.weight;
    sg_tensor *ls = sg_linear(g, d->s, sg_narrow(g, Wg, 1, 0, H), net->generator.bias);
    sg_tensor *le = sg_linear(g, e, sg_narrow(g, Wg, 1, 3 * H, E), NULL);
    *logits = sg_add(g, sg_add(g, ls, le), sg_narrow(g, mixed, 1, G, V));
    return *logits ? SG_OK : sg_graph_status(g);
}

static int dec_step(void *p, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    (void)t;
    dec_state *d = p;
    bahdanau *net = d->m->impl;
    const sg_rnn_weights *w = &net->decoder.w[0][0];
    int64_t R = prev->shape[0], E = d->m->cfg.emb_dim, H = d->m->cfg.hidden_dim;
    /* the training step's GRU (bahdanau_step.c) over the embedding part of the input gates */
    sg_tensor *e = sg_embedding_forward(g, &net->tgt_embed, prev); /* [R, E] */
    if (!e)
        return sg_graph_status(g);
    if (d->mix)
        return dec_step_mixed(d, g, e, prev, logits);
    sg_tensor *ctx = sg_additive_attention_step(g, &net->attention, &d->mem.cur, d->s, NULL);
    sg_tensor *gx = sg_view(g, embedding_gates(d, g, e, prev), 3, (int64_t[]){R, 1, 3 * H});
    if (!ctx || !gx)
        return sg_graph_status(g);
    d->s = sg__bahdanau_gru_step(g, gx, 0, w->bias_hh, ctx, d->s,
                                 sg_narrow(g, w->weight_ih, 1, E, 2 * H), w->weight_hh);
    sg_tensor *o = sg_concat(g, 3, (sg_tensor *[]){d->s, ctx, e}, 1); /* [s_t ; c_t ; e_t] */
    *logits = sg_linear_layer_forward(g, &net->generator, o);
    return *logits ? SG_OK : sg_graph_status(g);
}

const sg_model_vt sg__bahdanau_vt = {
    .build = build,
    .features = features,
    .decoder_new = decoder_new,
    .decoder_free = decoder_free,
    .ops = {.step = dec_step, .select_rows = select_rows},
    .free = destroy,
};
