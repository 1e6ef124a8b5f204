/*
 * transformer.c - Transformer encoder-decoder as torch.nn.Transformer (MODELS.md 7).
 *
 *   X = dropout(embed[x] * sqrt(d) + PE[0:len])                  (source and target)
 *   memory = encoder.norm(encoder layers(X_src))                  (key padding: j >= n_b)
 *   out    = decoder.norm(decoder layers(X_tgt, memory))          (causal self-attention)
 *   logits = generator(out)
 * Post-LN (default) or pre-LN layers; both final norms exist in either mode. With
 * tie_embeddings the generator multiplies by tgt_embed.weight itself (an alias entry in
 * the store), so both uses accumulate into one gradient; it keeps its own bias.
 *
 * Training runs every layer over all B*T positions at once (the causal mask replaces
 * the recurrence). Decoding is incremental: per decoder layer, the self-attention
 * keys/values of the steps so far live in heap caches [rows, cap, d] (reordered by
 * parent row on beam moves), and the cross-attention keys/values of the memory are
 * computed once per sentence in the encoder graph and shared by that sentence's rows
 * through per-row pointers (never copied per row).
 */
#include "models_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sg_mha self_attn;
    sg_feedforward ff;
    sg_layernorm norm1, norm2;
} enc_layer;

typedef struct {
    sg_mha self_attn, cross_attn;
    sg_feedforward ff;
    sg_layernorm norm1, norm2, norm3;
} dec_layer;

typedef struct {
    sg_embedding src_embed, tgt_embed;
    enc_layer *enc;
    dec_layer *dec;
    sg_layernorm enc_norm, dec_norm;
    sg_linear_layer generator; /* weight = tgt_embed.weight when tied */
    sg_tensor *pe;             /* heap [n_pos, d] sinusoid table, grown on demand */
    int64_t n_enc, n_dec, d;
    double scale;              /* sqrt(d) */
    bool pre;                  /* norm_first */
} transformer;

/* ---- construction ------------------------------------------------------------- */

static int layer_name(char *out, const char *stack, int64_t i, const char *leaf)
{
    char pre[SG_PARAM_NAME_MAX];
    int n = snprintf(pre, sizeof pre, "transformer.%s.layers.%lld", stack, (long long)i);
    if (n < 0 || n >= (int)sizeof pre)
        return sg__error(SG_EINVAL, "transformer: layer name too long");
    return leaf ? sg_param_name(out, pre, leaf) : (strcpy(out, pre), SG_OK);
}

/* Registers the parameters in torch's state_dict order (MODELS.md 12). */
static int build(sg_model *m)
{
    const sg_model_config *c = &m->cfg;
    transformer *net = calloc(1, sizeof *net);
    if (!net)
        return sg__error(SG_ENOMEM, "transformer: out of memory");
    m->impl = net;
    int64_t d = c->d_model, h = c->nhead, F = c->dim_feedforward, Vt = c->tgt_vocab_size;
    double p = c->dropout;
    net->n_enc = c->num_encoder_layers;
    net->n_dec = c->num_decoder_layers;
    net->d = d;
    net->scale = sqrt((double)d);
    net->pre = c->norm_first != 0;
    net->enc = calloc((size_t)net->n_enc, sizeof *net->enc);
    net->dec = calloc((size_t)net->n_dec, sizeof *net->dec);
    if (!net->enc || !net->dec)
        return sg__error(SG_ENOMEM, "transformer: out of memory");
    sg_params *ps = m->params;
    char name[SG_PARAM_NAME_MAX];
    int rc;
    if ((rc = sg_embedding_init(&net->src_embed, ps, "src_embed", c->src_vocab_size, d, 0, NULL)) ||
        (rc = sg_embedding_init(&net->tgt_embed, ps, "tgt_embed", Vt, d, 0, NULL)))
        return rc;
    for (int64_t i = 0; i < net->n_enc; i++) {
        enc_layer *L = &net->enc[i];
        if ((rc = layer_name(name, "encoder", i, "self_attn")) ||
            (rc = sg_mha_init(&L->self_attn, ps, name, d, h, p, NULL)) ||
            (rc = layer_name(name, "encoder", i, NULL)) ||
            (rc = sg_feedforward_init(&L->ff, ps, name, d, F, SG_ACT_RELU, p, NULL)) ||
            (rc = layer_name(name, "encoder", i, "norm1")) ||
            (rc = sg_layernorm_init(&L->norm1, ps, name, d)) ||
            (rc = layer_name(name, "encoder", i, "norm2")) ||
            (rc = sg_layernorm_init(&L->norm2, ps, name, d)))
            return rc;
    }
    if ((rc = sg_layernorm_init(&net->enc_norm, ps, "transformer.encoder.norm", d)))
        return rc;
    for (int64_t i = 0; i < net->n_dec; i++) {
        dec_layer *L = &net->dec[i];
        if ((rc = layer_name(name, "decoder", i, "self_attn")) ||
            (rc = sg_mha_init(&L->self_attn, ps, name, d, h, p, NULL)) ||
            (rc = layer_name(name, "decoder", i, "multihead_attn")) ||
            (rc = sg_mha_init(&L->cross_attn, ps, name, d, h, p, NULL)) ||
            (rc = layer_name(name, "decoder", i, NULL)) ||
            (rc = sg_feedforward_init(&L->ff, ps, name, d, F, SG_ACT_RELU, p, NULL)) ||
            (rc = layer_name(name, "decoder", i, "norm1")) ||
            (rc = sg_layernorm_init(&L->norm1, ps, name, d)) ||
            (rc = layer_name(name, "decoder", i, "norm2")) ||
            (rc = sg_layernorm_init(&L->norm2, ps, name, d)) ||
            (rc = layer_name(name, "decoder", i, "norm3")) ||
            (rc = sg_layernorm_init(&L->norm3, ps, name, d)))
            return rc;
    }
    if ((rc = sg_layernorm_init(&net->dec_norm, ps, "transformer.decoder.norm", d)))
        return rc;
    if (!c->tie_embeddings)
        return sg_linear_layer_init(&net->generator, ps, "generator", d, Vt, true, NULL);
    /* tied: the state_dict lists generator.weight (same tensor) before generator.bias */
    if ((rc = sg_params_alias(ps, "generator.weight", "tgt_embed.weight")) != SG_OK)
        return rc;
    net->generator = (sg_linear_layer){.weight = net->tgt_embed.weight, .in = d, .out = Vt};
    if (!(net->generator.bias = sg_params_add(ps, "generator.bias", 1, &Vt)))
        return SG_EINVAL; /* message set by sg_params_add */
    return SG_OK;
}

static void destroy(sg_model *m)
{
    transformer *net = m->impl;
    if (net) {
        free(net->enc);
        free(net->dec);
        sg_tensor_free(net->pe);
        free(net);
    }
    m->impl = NULL;
}

/* ---- shared pieces ------------------------------------------------------------ */

static sg_tensor *drop(sg_graph *g, sg_model *m, sg_tensor *x)
{
    return sg_dropout(g, x, m->cfg.dropout, m->training, &m->rng);
}

/* Makes the position table hold at least n rows (never shrinks). */
static int ensure_pe(sg_model *m, int64_t n)
{
    transformer *net = m->impl;
    if (net->pe && net->pe->shape[0] >= n)
        return SG_OK;
    int64_t rows = n > 1024 ? n : 1024; /* the reference's table size */
    sg_tensor *t = sg_sinusoid_table(sg_params_dtype(m->params), rows, net->d);
    if (!t)
        return SG_ENOMEM;
    sg_tensor_free(net->pe);
    net->pe = t;
    return SG_OK;
}

/* embed[ids] * sqrt(d) + PE[pos0 + j] along ids' last dim j; ids [B, L] -> [B, L, d]
 * (or [R] -> [R, d] at a single position pos0). No dropout here. */
static sg_tensor *embed_pe(sg_graph *g, sg_model *m, const sg_embedding *emb, sg_tensor *ids,
                           int64_t pos0)
{
    transformer *net = m->impl;
    int64_t L = ids->ndim == 2 ? ids->shape[1] : 1;
    if (ensure_pe(m, pos0 + L) != SG_OK)
        return sg_graph_fail(g, SG_ENOMEM, "transformer: out of memory for positions");
    sg_tensor *pe = sg_narrow(g, net->pe, 0, pos0, L); /* [L, d] */
    if (ids->ndim == 1)
        pe = sg_select(g, pe, 0, 0); /* [d] */
    /* over the fresh lookup, which nothing reads again */
    return sg__scale_add_over(g, sg_embedding_forward(g, emb, ids), net->scale, pe);
}

/* Residual sub-layer: post-LN y = norm(x + dropout(f(x))), pre-LN y = x + dropout(f(norm(x))).
 * The caller computes f on sub_in(x) and passes it in fx. */
static sg_tensor *sub_in(sg_graph *g, const transformer *net, const sg_layernorm *n, sg_tensor *x)
{
    return net->pre ? sg_layernorm_forward(g, n, x) : x;
}

static sg_tensor *sub_out(sg_graph *g, sg_model *m, const sg_layernorm *n, sg_tensor *x,
                          sg_tensor *fx)
{
    const transformer *net = m->impl;
    /* fx (out_proj's or linear2's output) is not read again: the sum may reuse it */
    sg_tensor *y = sg_dropout_add(g, x, fx, m->cfg.dropout, m->training, &m->rng, true);
    return net->pre ? y : sg__layernorm_over(g, n, y); /* y is not read again */
}

static sg_tensor *feedforward(sg_graph *g, sg_model *m, const sg_feedforward *ff, sg_tensor *x)
{
    return sg_feedforward_forward(g, ff, x, m->training, &m->rng);
}

/* memory [B, S, d] = encoder.norm(encoder layers(dropout(X_src))). */
static sg_tensor *encode(sg_model *m, sg_graph *g, sg_tensor *src, sg_tensor *src_len)
{
    transformer *net = m->impl;
    sg_tensor *x = sg__model_drop_over(g, m, embed_pe(g, m, &net->src_embed, src, 0));
    sg_mha_opts o = {.key_lengths = src_len, .training = m->training, .rng = &m->rng};
    for (int64_t i = 0; i < net->n_enc && x; i++) {
        enc_layer *L = &net->enc[i];
        sg_tensor *h = sub_in(g, net, &L->norm1, x);
        x = sub_out(g, m, &L->norm1, x, sg_mha_forward(g, &L->self_attn, h, h, &o));
        x = sub_out(g, m, &L->norm2, x, feedforward(g, m, &L->ff, sub_in(g, net, &L->norm2, x)));
    }
    return sg_layernorm_forward(g, &net->enc_norm, x);
}

/* ---- training forward --------------------------------------------------------- */

static sg_tensor *features(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                          const sg_linear_layer **gen)
{
    transformer *net = m->impl;
    sg_tensor *mem = encode(m, g, b->src, b->src_len);
    SG_NEED(mem);
    sg_tensor *y = /* [B, T, d] */
        sg__model_drop_over(g, m, embed_pe(g, m, &net->tgt_embed, b->tgt_in, 0));
    sg_mha_opts self = {.causal = true, .training = m->training, .rng = &m->rng};
    sg_mha_opts cross = {.key_lengths = b->src_len, .training = m->training, .rng = &m->rng};
    sg_tensor *w = NULL; /* last layer's cross-attention probabilities [B, h, T, S] */
    for (int64_t i = 0; i < net->n_dec && y; i++) {
        dec_layer *L = &net->dec[i];
        cross.weights = attn && i == net->n_dec - 1 ? &w : NULL;
        sg_tensor *h = sub_in(g, net, &L->norm1, y);
        y = sub_out(g, m, &L->norm1, y, sg_mha_forward(g, &L->self_attn, h, h, &self));
        h = sub_in(g, net, &L->norm2, y);
        y = sub_out(g, m, &L->norm2, y, sg_mha_forward(g, &L->cross_attn, h, mem, &cross));
        y = sub_out(g, m, &L->norm3, y, feedforward(g, m, &L->ff, sub_in(g, net, &L->norm3, y)));
    }
    sg_tensor *out = sg_layernorm_forward(g, &net->dec_norm, y); /* [B, T, d] */
    *gen = &net->generator;
    if (attn && out && w) {
        bool was = sg_graph_set_grad_enabled(g, false);
        *attn = sg_mean(g, w, 1, (int[]){1}, false); /* [B, T, S], averaged over heads */
        sg_graph_set_grad_enabled(g, was);
    }
    return out;
}

/* ---- incremental decoding ----------------------------------------------------- */

typedef struct {
    sg_model *m;
    int64_t B, S;            /* sentences, source width */
    int64_t max_len, cap;    /* most steps any row may take; positions allocated */
    sg_tensor **ck, **cv;    /* per decoder layer: cross keys/values [B, S, d] (enc graph) */
    const int64_t *src_len;  /* [B] n_b (caller's tensor, lives through the decode) */
    /* self-attention caches: buf[w][l] keys and values [rows_cap, cap, d], w = 0/1
     * alternates on every reorder; cur is the live one */
    sg_tensor **buf[2];
    int cur;
    int64_t rows_cap, len;   /* allocated rows, positions filled */
    int64_t R;               /* live rows */
    int64_t *sentence;       /* [rows_cap] sentence of each row */
} dec_state;

static void free_bufs(dec_state *d, int w)
{
    if (!d->buf[w])
        return;
    for (int64_t i = 0; i < 2 * d->m->cfg.num_decoder_layers; i++)
        sg_tensor_free(d->buf[w][i]);
    free(d->buf[w]);
    d->buf[w] = NULL;
}

static void decoder_free(void *p)
{
    dec_state *d = p;
    if (!d)
        return;
    free_bufs(d, 0);
    free_bufs(d, 1);
    free(d->ck);
    free(d->sentence);
    free(d);
}

/* Allocates buffer set w for rows rows ([2 * layers] tensors: keys of layer l at 2l,
 * values at 2l + 1). */
static int alloc_bufs(dec_state *d, int w, int64_t rows)
{
    int64_t n = 2 * d->m->cfg.num_decoder_layers;
    free_bufs(d, w);
    d->buf[w] = calloc((size_t)n, sizeof *d->buf[w]);
    if (!d->buf[w])
        return sg__error(SG_ENOMEM, "transformer decoder: out of memory");
    sg_dtype dt = sg_params_dtype(d->m->params);
    for (int64_t i = 0; i < n; i++)
        if (!(d->buf[w][i] = sg_tensor_new(dt, 3, (int64_t[]){rows, d->cap, d->m->cfg.d_model})))
            return sg__error(SG_ENOMEM, "transformer decoder: out of memory for a %lld x %lld "
                                        "key/value cache",
                             (long long)rows, (long long)d->cap);
    return SG_OK;
}

static int grow_rows(dec_state *d, int64_t rows)
{
    int64_t *s = realloc(d->sentence, sizeof *s * (size_t)rows);
    if (!s)
        return sg__error(SG_ENOMEM, "transformer decoder: out of memory");
    d->sentence = s;
    d->rows_cap = rows;
    return SG_OK;
}

/* Doubles the position capacity of the live caches (keeping rows and filled positions);
 * the spare buffer set is dropped and made again at the next reorder. */
static int grow_positions(dec_state *d)
{
    int64_t cap = 2 * d->cap < d->max_len ? 2 * d->cap : d->max_len, dm = d->m->cfg.d_model;
    sg_tensor **cur = d->buf[d->cur];
    int64_t rows = cur[0]->shape[0];
    size_t es = sg_dtype_size(cur[0]->dtype), n = es * (size_t)(d->len * dm);
    for (int64_t k = 0; k < 2 * d->m->cfg.num_decoder_layers; k++) {
        sg_tensor *t = sg_tensor_new(cur[k]->dtype, 3, (int64_t[]){rows, cap, dm});
        if (!t)
            return sg__error(SG_ENOMEM, "transformer decoder: out of memory for a %lld x %lld "
                                        "key/value cache",
                             (long long)rows, (long long)cap);
        for (int64_t r = 0; r < rows; r++)
            memcpy((char *)t->data + (size_t)(r * cap * dm) * es,
                   (char *)cur[k]->data + (size_t)(r * d->cap * dm) * es, n);
        sg_tensor_free(cur[k]);
        cur[k] = t;
    }
    free_bufs(d, 1 - d->cur);
    d->cap = cap;
    return SG_OK;
}

static void *decoder_new(sg_model *m, sg_graph *enc, sg_tensor *src, sg_tensor *src_len)
{
    transformer *net = m->impl;
    dec_state *d = calloc(1, sizeof *d);
    int64_t nl = net->n_dec, dm = net->d;
    if (!d || !(d->ck = calloc((size_t)(2 * nl), sizeof *d->ck))) {
        free(d);
        sg_graph_fail(enc, SG_ENOMEM, "transformer decoder: out of memory");
        return NULL;
    }
    d->cv = d->ck + nl;
    d->m = m;
    d->B = d->R = src->shape[0];
    d->S = src->shape[1];
    d->src_len = src_len->data;
    for (int64_t b = 0; b < d->B; b++) {
        int64_t ml = sg_decode_max_len(d->src_len[b]);
        d->max_len = ml > d->max_len ? ml : d->max_len;
    }
    d->cap = d->max_len < 16 ? d->max_len : 16; /* doubled on demand */
    sg_tensor *mem = encode(m, enc, src, src_len);
    if (!mem || ensure_pe(m, d->max_len) != SG_OK) {
        if (mem)
            sg_graph_fail(enc, SG_ENOMEM, "transformer decoder: out of memory for positions");
        decoder_free(d);
        return NULL;
    }
    for (int64_t l = 0; l < nl; l++) { /* cross K/V of the memory, once per layer */
        const sg_mha *ca = &net->dec[l].cross_attn;
        sg_tensor *kv = sg_linear(enc, mem, sg_narrow(enc, ca->in_proj_weight, 0, dm, 2 * dm),
                                  sg_narrow(enc, ca->in_proj_bias, 0, dm, 2 * dm)); /* [B,S,2d] */
        d->ck[l] = sg_narrow(enc, kv, 2, 0, dm);
        d->cv[l] = sg_narrow(enc, kv, 2, dm, dm);
        if (!d->ck[l] || !d->cv[l]) {
            decoder_free(d);
            return NULL;
        }
    }
    if (grow_rows(d, d->B) != SG_OK || alloc_bufs(d, 0, d->B) != SG_OK) {
        sg_graph_fail(enc, SG_ENOMEM, "transformer decoder: out of memory");
        decoder_free(d);
        return NULL;
    }
    for (int64_t b = 0; b < d->B; b++)
        d->sentence[b] = b;
    return d;
}

/* One query per row (decoding): for row r and head h,
 *   o[r, h] = sum_j softmax_j(q[r, h] . K_r[j, h] / sqrt(dk)) V_r[j, h],  j < n_r,
 * where K_r / V_r start at key[r] / val[r] with ks elements between positions. Plain
 * loops: with Lq = 1 per row, per-(row, head) GEMM calls would cost more in call
 * overhead than the arithmetic. Inference only (records nothing). */
#define ATTEND_ROWS(T, SUF, EXP)                                                             \
    static void attend_rows_##SUF(int64_t R, int64_t d, int64_t heads, const T *q,           \
                                  int64_t qs, const T *const *key, const T *const *val,      \
                                  int64_t ks, const int64_t *n, T *out, T *sc)               \
    {                                                                                        \
        int64_t dk = d / heads;                                                              \
        T scale = (T)(1.0 / sqrt((double)dk));                                               \
        for (int64_t r = 0; r < R; r++)                                                      \
            for (int64_t h = 0; h < heads; h++) {                                            \
                const T *qr = q + r * qs + h * dk;                                           \
                const T *K = key[r] + h * dk, *V = val[r] + h * dk;                          \
                T mx = -INFINITY, sum = 0, *o = out + r * d + h * dk;                         \
                for (int64_t j = 0; j < n[r]; j++) {                                         \
                    const T *kj = K + j * ks;                                                \
                    T a[8] = {0}, acc = 0; /* 8 lanes: a vectorisable dot product */         \
                    int64_t c = 0;                                                           \
                    for (; c + 8 <= dk; c += 8)                                              \
                        for (int u = 0; u < 8; u++)                                          \
                            a[u] += qr[c + u] * kj[c + u];                                   \
                    for (; c < dk; c++)                                                      \
                        acc += qr[c] * kj[c];                                                \
                    acc += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])); \
                    sc[j] = acc * scale;                                                     \
                    mx = sc[j] > mx ? sc[j] : mx;                                            \
                }                                                                            \
                for (int64_t j = 0; j < n[r]; j++)                                           \
                    sum += (sc[j] = EXP(sc[j] - mx));                                        \
                memset(o, 0, sizeof(T) * (size_t)dk);                                        \
                for (int64_t j = 0; j < n[r]; j++) {                                         \
                    T p = sc[j] / sum;                                                       \
                    for (int64_t c = 0; c < dk; c++)                                         \
                        o[c] += p * V[j * ks + c];                                           \
                }                                                                            \
            }                                                                                \
    }
ATTEND_ROWS(float, f32, expf)
ATTEND_ROWS(double, f64, exp)

/* q [R, 1, d] (rows qs apart) attends per row over key[r], val[r] (n[r] positions, ks
 * apart); returns out_proj of the heads' outputs [R, 1, d]. */
static sg_tensor *attend(sg_graph *g, const sg_mha *a, sg_tensor *q, int64_t qs,
                         const void **key, const void **val, int64_t ks, const int64_t *n,
                         int64_t n_max)
{
    SG_NEED(q);
    int64_t R = q->shape[0], d = a->d;
    sg_tensor *o = sg_empty(g, q->dtype, 3, (int64_t[]){R, 1, d});
    void *sc = sg_arena_alloc(sg_graph_arena(g), sg_dtype_size(q->dtype) * (size_t)n_max);
    if (!o || !sc)
        return sg_graph_fail(g, SG_ENOMEM, "transformer decoder: out of memory");
    if (q->dtype == SG_F32)
        attend_rows_f32(R, d, a->heads, q->data, qs, (const float *const *)key,
                        (const float *const *)val, ks, n, o->data, sc);
    else
        attend_rows_f64(R, d, a->heads, q->data, qs, (const double *const *)key,
                        (const double *const *)val, ks, n, o->data, sc);
    return sg_linear(g, o, a->out_proj.weight, a->out_proj.bias);
}

/* Per-row pointer tables for attend (graph arena). */
static bool row_tables(sg_graph *g, int64_t R, const void ***key, const void ***val, int64_t **n)
{
    sg_arena *ar = sg_graph_arena(g);
    *key = sg_arena_alloc(ar, sizeof **key * (size_t)R);
    *val = sg_arena_alloc(ar, sizeof **val * (size_t)R);
    *n = sg_arena_alloc(ar, sizeof **n * (size_t)R);
    if (*key && *val && *n)
        return true;
    sg_graph_fail(g, SG_ENOMEM, "transformer decoder: out of memory");
    return false;
}

/* Self-attention of the new position (x [R, 1, d]) over the cached ones of layer l,
 * after appending its own key and value at position d->len. */
static sg_tensor *self_attend(dec_state *d, sg_graph *g, int64_t l, sg_tensor *x)
{
    const sg_mha *sa = &((transformer *)d->m->impl)->dec[l].self_attn;
    int64_t dm = sa->d, R = d->R, t = d->len;
    sg_tensor *qkv = sg_linear(g, x, sa->in_proj_weight, sa->in_proj_bias); /* [R, 1, 3d] */
    const void **key, **val;
    int64_t *n;
    if (!qkv || !row_tables(g, R, &key, &val, &n))
        return NULL;
    sg_tensor *K = d->buf[d->cur][2 * l], *V = d->buf[d->cur][2 * l + 1];
    size_t es = sg_dtype_size(K->dtype), row = es * (size_t)dm;
    for (int64_t r = 0; r < R; r++) {
        const char *src = (const char *)qkv->data + (size_t)(r * 3 * dm) * es;
        size_t at = (size_t)(r * d->cap * dm) * es;
        memcpy((char *)K->data + at + (size_t)t * row, src + row, row);
        memcpy((char *)V->data + at + (size_t)t * row, src + 2 * row, row);
        key[r] = (char *)K->data + at;
        val[r] = (char *)V->data + at;
        n[r] = t + 1;
    }
    return attend(g, sa, qkv, 3 * dm, key, val, dm, n, t + 1);
}

/* Cross-attention of x [R, 1, d] over the n_b memory positions of each row's sentence
 * (keys/values computed once per sentence, shared by its rows; no mask needed). */
static sg_tensor *cross_attend(dec_state *d, sg_graph *g, int64_t l, sg_tensor *x)
{
    const sg_mha *ca = &((transformer *)d->m->impl)->dec[l].cross_attn;
    int64_t dm = ca->d, R = d->R;
    sg_tensor *q = sg_linear(g, x, sg_narrow(g, ca->in_proj_weight, 0, 0, dm),
                             sg_narrow(g, ca->in_proj_bias, 0, 0, dm)); /* [R, 1, d] */
    const void **key, **val;
    int64_t *n;
    if (!q || !row_tables(g, R, &key, &val, &n))
        return NULL;
    const sg_tensor *ck = d->ck[l], *cv = d->cv[l]; /* [B, S, d] rows 2d apart */
    size_t es = sg_dtype_size(ck->dtype);
    for (int64_t r = 0; r < R; r++) {
        int64_t s = d->sentence[r];
        key[r] = (const char *)ck->data + (size_t)(s * ck->stride[0]) * es;
        val[r] = (const char *)cv->data + (size_t)(s * cv->stride[0]) * es;
        n[r] = d->src_len[s];
    }
    return attend(g, ca, q, dm, key, val, ck->stride[1], n, d->S);
}

static int dec_step(void *p, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    dec_state *d = p;
    sg_model *m = d->m;
    transformer *net = m->impl;
    *logits = NULL;
    if (t != d->len || t >= d->max_len || prev->shape[0] != d->R) {
        sg_graph_fail(g, SG_EINVAL, "transformer decoder: step %lld with %lld rows does not "
                                    "follow the cache (%lld positions of %lld, %lld rows)",
                      (long long)t, (long long)prev->shape[0], (long long)d->len,
                      (long long)d->max_len, (long long)d->R);
        return SG_EINVAL;
    }
    if (t == d->cap && grow_positions(d) != SG_OK)
        return SG_ENOMEM;
    int64_t dm = net->d;
    sg_tensor *x = drop(g, m, embed_pe(g, m, &net->tgt_embed, prev, t)); /* [R, d] */
    x = sg_view(g, x, 3, (int64_t[]){d->R, 1, dm});
    for (int64_t l = 0; l < net->n_dec && x; l++) {
        dec_layer *L = &net->dec[l];
        x = sub_out(g, m, &L->norm1, x, self_attend(d, g, l, sub_in(g, net, &L->norm1, x)));
        x = sub_out(g, m, &L->norm2, x, cross_attend(d, g, l, sub_in(g, net, &L->norm2, x)));
        x = sub_out(g, m, &L->norm3, x, feedforward(g, m, &L->ff, sub_in(g, net, &L->norm3, x)));
    }
    sg_tensor *y = sg_layernorm_forward(g, &net->dec_norm, x);
    y = sg_linear_layer_forward(g, &net->generator, sg_view(g, y, 2, (int64_t[]){d->R, dm}));
    if (!y)
        return sg_graph_status(g);
    d->len = t + 1;
    *logits = y;
    return SG_OK;
}

/* New row i continues old row parent[i]: the self caches' rows (positions 0..len-1 only)
 * move down in place when rows were only dropped (greedy), else they are copied into the
 * other buffer set, which then becomes the live one (beam). */
static int select_rows(void *p, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    (void)g;
    dec_state *d = p;
    int64_t R = parent->shape[0], nl = d->m->cfg.num_decoder_layers, dm = d->m->cfg.d_model;
    const int64_t *par = parent->data, *sen = sentence->data;
    size_t es = sg_dtype_size(d->buf[d->cur][0]->dtype), n = es * (size_t)(d->len * dm);
    size_t rs = es * (size_t)(d->cap * dm);
    bool compact = true; /* rows only dropped (greedy): move the survivors down in place */
    for (int64_t i = 0; i < R && compact; i++)
        compact = par[i] >= i && (i == 0 || par[i] > par[i - 1]);
    if (compact) {
        for (int64_t k = 0; k < 2 * nl; k++) {
            char *c = d->buf[d->cur][k]->data;
            for (int64_t i = 0; i < R; i++)
                if (par[i] != i)
                    memcpy(c + (size_t)i * rs, c + (size_t)par[i] * rs, n);
        }
        d->R = R;
        memcpy(d->sentence, sen, sizeof *sen * (size_t)R);
        return SG_OK;
    }
    int w = 1 - d->cur;
    if (R > d->rows_cap && grow_rows(d, R) != SG_OK)
        return SG_ENOMEM;
    if (!d->buf[w] || d->buf[w][0]->shape[0] < R || d->buf[w][0]->shape[1] != d->cap) {
        int64_t rows = d->buf[d->cur][0]->shape[0];
        int rc = alloc_bufs(d, w, R > rows ? R : rows);
        if (rc != SG_OK)
            return rc;
    }
    for (int64_t k = 0; k < 2 * nl; k++) {
        const char *from = d->buf[d->cur][k]->data;
        char *to = d->buf[w][k]->data;
        for (int64_t i = 0; i < R; i++)
            memcpy(to + (size_t)i * rs, from + (size_t)par[i] * rs, n);
    }
    d->cur = w;
    d->R = R;
    memcpy(d->sentence, sen, sizeof *sen * (size_t)R);
    return SG_OK;
}

const sg_model_vt sg__transformer_vt = {
    .build = build,
    .features = features,
    .decoder_new = decoder_new,
    .decoder_free = decoder_free,
    .ops = {.step = dec_step, .select_rows = select_rows},
    .free = destroy,
};
