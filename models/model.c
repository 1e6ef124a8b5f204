/* model.c - the architecture-independent part of sg_model: construction with
 * MODELS.md 3.5 initialisation, loss, scoring and decoding glue. */
#include "models_internal.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sg_model_vt *vt_of(sg_arch a)
{
    switch (a) {
    case SG_ARCH_SEQ2SEQ: return &sg__seq2seq_vt;
    case SG_ARCH_BAHDANAU: return &sg__bahdanau_vt;
    case SG_ARCH_LUONG: return &sg__luong_vt;
    case SG_ARCH_TRANSFORMER: return &sg__transformer_vt;
    default: return NULL;
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* MODELS.md 3.5. RNN archs: every parameter U(-0.1, 0.1). Transformer: embeddings
 * N(0, d^-1/2), other matrices Xavier-uniform, LayerNorm weights 1, biases 0. Then the
 * pad rows of both embeddings are zero. Parameters are drawn in state_dict order. */
static void init_params(sg_model *m, uint64_t seed)
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    sg_params *p = m->params;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        sg_tensor *t = e->value;
        if (e->alias_of >= 0)
            continue;
        if (m->cfg.arch != SG_ARCH_TRANSFORMER) {
            sg_tensor_uniform_(t, &r, -0.1, 0.1);
        } else if (strstr(e->name, "embed.weight")) {
            sg_tensor_normal_(t, &r, 0.0, 1.0 / sqrt((double)m->cfg.d_model));
        } else if (t->ndim == 2) {
            double b = sqrt(6.0 / (double)(t->shape[0] + t->shape[1]));
            sg_tensor_uniform_(t, &r, -b, b);
        } else if (ends_with(e->name, ".weight") && strstr(e->name, "norm")) {
            sg_tensor_fill_(t, 1.0);
        } else {
            sg_tensor_fill_(t, 0.0);
        }
    }
    const char *emb[] = {"src_embed.weight", "tgt_embed.weight"};
    for (int k = 0; k < 2; k++) {
        sg_tensor *t = sg_params_find(p, emb[k]);
        if (t)
            for (int64_t j = 0; j < t->shape[1]; j++)
                sg_tensor_set(t, j, 0.0);
    }
}

sg_model *sg__model_new_uninit(const sg_model_config *cfg, sg_dtype dt, uint64_t seed)
{
    if (sg_model_config_validate(cfg) != SG_OK)
        return NULL;
    sg_model *m = calloc(1, sizeof *m);
    if (!m) {
        sg__error(SG_ENOMEM, "sg_model_new: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->vt = vt_of(cfg->arch);
    if (!m->vt || !m->vt->build) {
        free(m);
        sg__error(SG_EINVAL, "sg_model_new: architecture %s is not built in", sg_arch_name(cfg->arch));
        return NULL;
    }
    sg_rng_seed(&m->rng, seed ^ 0x5eed5eedULL);
    m->params = sg_params_new(dt);
    if (!m->params || m->vt->build(m) != SG_OK) {
        sg_model_free(m);
        return NULL;
    }
    return m;
}

sg_model *sg_model_new(const sg_model_config *cfg, sg_dtype dt, uint64_t seed)
{
    sg_model *m = sg__model_new_uninit(cfg, dt, seed);
    if (m)
        init_params(m, seed);
    return m;
}

void sg_model_free(sg_model *m)
{
    if (!m)
        return;
    if (m->vt && m->vt->free)
        m->vt->free(m);
    sg__replica_free(m->replica);
    sg_params_free(m->params);
    free(m);
}

const sg_model_config *sg_model_get_config(const sg_model *m) { return &m->cfg; }
sg_params *sg_model_params(sg_model *m) { return m->params; }
void sg_model_set_training(sg_model *m, bool training) { m->training = training; }
bool sg_model_training(const sg_model *m) { return m->training; }
sg_rng *sg_model_rng(sg_model *m) { return &m->rng; }

static int check_ids(sg_graph *g, const char *what, const sg_tensor *t, int64_t B, int64_t V)
{
    char buf[96];
    if (!t || t->dtype != SG_I64 || t->ndim != 2 || t->shape[0] != B || t->shape[1] < 1 ||
        !sg_tensor_is_contiguous(t)) {
        sg_graph_fail(g, SG_ESHAPE, "model: batch %s must be contiguous i64 [%lld, >=1], got %s %s",
                      what, (long long)B, t ? sg_dtype_name(t->dtype) : "NULL",
                      t ? sg_tensor_shape_str(t, buf, sizeof buf) : "");
        return SG_ESHAPE;
    }
    const int64_t *id = t->data;
    for (int64_t k = 0; k < sg_tensor_numel(t); k++)
        if (id[k] < 0 || id[k] >= V) {
            sg_graph_fail(g, SG_ERANGE, "model: %s id %lld at row %lld, position %lld is outside "
                                        "the vocabulary [0, %lld)",
                          what, (long long)id[k], (long long)(k / t->shape[1]),
                          (long long)(k % t->shape[1]), (long long)V);
            return SG_ERANGE;
        }
    return SG_OK;
}

int sg__check_batch(sg_graph *g, const sg_model *m, const sg_batch *b)
{
    if (!b || !b->src || !b->src_len) {
        sg_graph_fail(g, SG_EINVAL, "model: batch or its source is NULL");
        return SG_EINVAL;
    }
    int64_t B = b->src->ndim == 2 ? b->src->shape[0] : -1;
    int rc = check_ids(g, "src", b->src, B, m->cfg.src_vocab_size);
    if (rc == SG_OK && b->tgt_in)
        rc = check_ids(g, "tgt_in", b->tgt_in, B, m->cfg.tgt_vocab_size);
    if (rc == SG_OK && b->tgt_out)
        rc = check_ids(g, "tgt_out", b->tgt_out, B, m->cfg.tgt_vocab_size);
    if (rc != SG_OK)
        return rc;
    const sg_tensor *l = b->src_len;
    if (l->dtype != SG_I64 || l->ndim != 1 || l->shape[0] != B) {
        sg_graph_fail(g, SG_ESHAPE, "model: src_len must be i64 [%lld]", (long long)B);
        return SG_ESHAPE;
    }
    for (int64_t i = 0; i < B; i++) {
        int64_t n = ((const int64_t *)l->data)[i];
        if (n < 1 || n > b->src->shape[1]) {
            sg_graph_fail(g, SG_ERANGE, "model: src_len[%lld] = %lld is outside [1, %lld]",
                          (long long)i, (long long)n, (long long)b->src->shape[1]);
            return SG_ERANGE;
        }
    }
    return SG_OK;
}

sg_tensor *sg__column(sg_graph *g, sg_tensor *ids, int64_t t)
{
    int64_t B = ids->shape[0], T = ids->shape[1];
    sg_tensor *c = sg_empty(g, SG_I64, 1, &B);
    if (c)
        for (int64_t b = 0; b < B; b++)
            ((int64_t *)c->data)[b] = ((const int64_t *)ids->data)[b * T + t];
    return c;
}

/* The checked batch's generator input and generator (see sg_model_vt.features). */
static sg_tensor *features(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn,
                           const sg_linear_layer **gen, const char *who)
{
    if (sg__check_batch(g, m, b) != SG_OK)
        return NULL;
    if (!b->tgt_in)
        return sg_graph_fail(g, SG_EINVAL, "%s: batch has no tgt_in", who);
    return m->vt->features(m, g, b, attn, gen);
}

sg_tensor *sg_model_forward(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn)
{
    SG_NEED(m, g);
    if (attn)
        *attn = NULL;
    const sg_linear_layer *gen = NULL;
    sg_tensor *x = features(m, g, b, attn, &gen, "sg_model_forward");
    return x ? sg_linear_layer_forward(g, gen, x) : NULL;
}

/* sg_model_loss, and with backward_now its backward too (the loss op adds the generator's
 * weight gradients during its forward). */
sg_tensor *sg__loss_of(sg_model *m, sg_graph *g, const sg_batch *b, double label_smoothing,
                       int64_t mean_over, int64_t *n_tokens, bool backward_now, const char *who)
{
    SG_NEED(m, g, b);
    if (!b->tgt_out)
        return sg_graph_fail(g, SG_EINVAL, "%s: batch has no tgt_out", who);
    const sg_linear_layer *gen = NULL;
    sg_tensor *x = features(m, g, b, NULL, &gen, who);
    SG_NEED(x);
    /* the generator and the loss as one node: the logits are never stored whole; the
     * features are read by nothing else (dloss/dx may be written over them) */
    sg_cross_entropy_opts o = {.ignore_index = SG_TOK_PAD, .label_smoothing = label_smoothing,
                               .reduction = SG_REDUCTION_MEAN, .overwrite_input = true,
                               .mean_over = mean_over};
    sg_cross_entropy_stats st = {0};
    sg_tensor *loss =
        (backward_now ? sg_linear_cross_entropy_backward : sg_linear_cross_entropy_ex)(
            g, x, gen->weight, gen->bias, b->tgt_out, &o, &st);
    if (loss && n_tokens)
        *n_tokens = st.n_tokens;
    return loss;
}

sg_tensor *sg_model_loss(sg_model *m, sg_graph *g, const sg_batch *b, double label_smoothing,
                         int64_t *n_tokens)
{
    return sg__loss_of(m, g, b, label_smoothing, 0, n_tokens, false, "sg_model_loss");
}

int sg_model_tune_malloc(const sg_model *m)
{
    if (!m)
        return sg__error(SG_EINVAL, "sg_model_tune_malloc: model is NULL");
    /* a small model's step frees and takes again the same gradient blocks of up to about
     * 1 MB: keep blocks of up to 4 MiB */
    return sg_params_numel(m->params) <= SG_SMALL_MODEL_PARAMS
               ? sg_malloc_keep_freed((size_t)4 << 20)
               : SG_OK;
}

sg_tensor *sg_model_loss_backward(sg_model *m, sg_graph *g, const sg_batch *b,
                                  double label_smoothing, int64_t *n_tokens)
{
    static const char who[] = "sg_model_loss_backward";
    SG_NEED(m, g, b);
    if (sg__train_halves_wanted(m, b)) {
        /* checked whole first, so that a message names the batch's own row numbers */
        if (sg__check_batch(g, m, b) != SG_OK)
            return NULL;
        return sg__loss_backward_halves(m, g, b, label_smoothing, n_tokens);
    }
    return sg__loss_of(m, g, b, label_smoothing, 0, n_tokens, true, who);
}

int sg_model_score(sg_model *m, const sg_batch *b, double *out)
{
    if (!m || !b || !out)
        return sg__error(SG_EINVAL, "sg_model_score: NULL argument");
    sg_graph *g = sg_graph_new();
    if (!g)
        return SG_ENOMEM;
    bool was = m->training;
    m->training = false;
    sg_graph_set_grad_enabled(g, false);
    int rc = SG_OK;
    sg_tensor *logits = sg_model_forward(m, g, b, NULL);
    sg_tensor *lp = sg_log_softmax(g, logits, -1, NULL);
    if (!lp || !b->tgt_out) {
        rc = b->tgt_out ? sg_graph_status(g) : sg__error(SG_EINVAL, "sg_model_score: no tgt_out");
    } else {
        int64_t B = lp->shape[0], T = lp->shape[1], V = lp->shape[2];
        const int64_t *y = b->tgt_out->data;
        for (int64_t i = 0; i < B; i++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++)
                if (y[i * T + t] != SG_TOK_PAD)
                    s += sg_tensor_get(lp, (i * T + t) * V + y[i * T + t]);
            out[i] = s;
        }
    }
    m->training = was;
    sg_graph_free(g);
    return rc;
}

static _Thread_local int decoder_new_rc; /* why the last sg_model_decoder_new failed */

struct sg_model_decoder {
    sg_model *m;
    sg_graph *enc; /* the encoder's outputs live here during the whole decode */
    void *state;
    bool was_training;
};

void sg_model_decoder_free(sg_model_decoder *d)
{
    if (!d)
        return;
    if (d->state)
        d->m->vt->decoder_free(d->state);
    if (d->was_training) /* written only if it changed: pieces of a split decode share m */
        d->m->training = true;
    sg_graph_free(d->enc);
    free(d);
}

/* home: where the encoder keeps W^T copies (the caller's sg_decode_opts.weights);
 * NULL: in its own graph, which lives for the whole decode, so copies for its small
 * products pay off even for one use (LIBXSMM instead of BLIS packing W on each call). */
static sg_model_decoder *decoder_new(sg_model *m, const sg_tensor *src, const sg_tensor *src_len,
                                     sg_graph *home)
{
    if (!m || !src || !src_len) {
        decoder_new_rc = sg__error(SG_EINVAL, "sg_model_decoder_new: NULL argument");
        return NULL;
    }
    sg_model_decoder *d = calloc(1, sizeof *d);
    if (!d || !(d->enc = sg_graph_new())) {
        free(d);
        decoder_new_rc = sg__error(SG_ENOMEM, "sg_model_decoder_new: out of memory");
        return NULL;
    }
    d->m = m;
    d->was_training = m->training;
    if (m->training)
        m->training = false;
    sg_graph_set_grad_enabled(d->enc, false);
    sg__graph_set_weight_home(d->enc, home ? home : d->enc);
    sg_batch b = {.src = (sg_tensor *)src, .src_len = (sg_tensor *)src_len};
    if (sg__check_batch(d->enc, m, &b) == SG_OK)
        d->state = m->vt->decoder_new(m, d->enc, (sg_tensor *)src, (sg_tensor *)src_len);
    if (!d->state) {
        decoder_new_rc = sg_graph_status(d->enc);
        if (decoder_new_rc == SG_OK)
            decoder_new_rc = sg__error(SG_ENOMEM, "sg_model_decoder_new: out of memory");
        sg_model_decoder_free(d);
        return NULL;
    }
    return d;
}

sg_model_decoder *sg_model_decoder_new(sg_model *m, const sg_tensor *src, const sg_tensor *src_len)
{
    return decoder_new(m, src, src_len, NULL);
}

const sg_decoder_ops *sg_model_decoder_ops(const sg_model_decoder *d) { return &d->m->vt->ops; }

void *sg_model_decoder_state(sg_model_decoder *d) { return d->state; }

static int decode_whole(sg_model *m, const sg_tensor *src, const sg_tensor *src_len,
                        const sg_decode_opts *opts, sg_decode_result *out)
{
    sg_model_decoder *d = decoder_new(m, src, src_len, opts ? opts->weights : NULL);
    if (!d)
        return decoder_new_rc;
    int64_t B = src->shape[0];
    const int64_t *len = src_len->data;
    int rc = (!opts || opts->beam == 0)
                 ? sg_decode_greedy(&m->vt->ops, d->state, B, len, opts, out)
                 : sg_decode_beam(&m->vt->ops, d->state, B, len, opts, out);
    sg_model_decoder_free(d);
    return rc;
}

/* One result holding the sentences of res[0], ..., res[n - 1] in that order; frees them
 * all (also on failure). */
static int join_results(sg_decode_result *res, int64_t n, sg_decode_result *out)
{
    int64_t B = 0, H = 0, T = 0;
    for (int64_t p = 0; p < n; p++) {
        int64_t h = res[p].offset[res[p].batch];
        B += res[p].batch;
        H += h;
        for (int64_t i = 0; i < h; i++)
            T += res[p].hyps[i].len;
    }
    sg_decode_result r = {.batch = B};
    r.offset = malloc((size_t)(B + 1) * sizeof *r.offset);
    r.hyps = malloc((size_t)(H > 0 ? H : 1) * sizeof *r.hyps);
    r.tokens_ = malloc((size_t)(T > 0 ? T : 1) * sizeof *r.tokens_);
    int rc = SG_OK;
    if (!r.offset || !r.hyps || !r.tokens_) {
        sg_decode_result_free(&r);
        rc = sg__error(SG_ENOMEM, "sg_model_decode: out of memory joining the pieces");
    }
    for (int64_t p = 0, b0 = 0, h0 = 0, t = 0; p < n && rc == SG_OK; p++) {
        const sg_decode_result *x = &res[p];
        for (int64_t s = 0; s < x->batch; s++)
            r.offset[b0 + s] = h0 + x->offset[s];
        for (int64_t i = 0; i < x->offset[x->batch]; i++) {
            sg_hypothesis h = x->hyps[i];
            memcpy(r.tokens_ + t, h.tokens, (size_t)h.len * sizeof *r.tokens_);
            h.tokens = r.tokens_ + t;
            t += h.len;
            r.hyps[h0 + i] = h;
        }
        b0 += x->batch;
        h0 += x->offset[x->batch];
    }
    for (int64_t p = 0; p < n; p++)
        sg_decode_result_free(&res[p]);
    if (rc == SG_OK) {
        r.offset[B] = H;
        *out = r;
    }
    return rc;
}

/* Rows [r0, r0 + n) of t: a header over t's data (nothing is copied; no gradient). */
static sg_tensor rows_of(const sg_tensor *t, int64_t r0, int64_t n)
{
    sg_tensor h = *t;
    h.shape[0] = n;
    h.data = (char *)t->data + (size_t)(r0 * t->stride[0]) * sg_dtype_size(t->dtype);
    h.grad = NULL;
    h.node = NULL;
    h.requires_grad = h.owns_data = false;
    return h;
}

/* One piece of a split decode: its rows and, once decoded, its status and error. */
typedef struct {
    sg_tensor src, len;
    int rc;
    char msg[512];
} piece;

/* At 2+ threads a small model's batch is decoded in pieces side by side, each piece whole
 * on one thread (its operations capped at 1 thread): a small model's decoding step is
 * made of operations too small to split well (the threads wait for each other at the end
 * of every one of them), whole sentences are not. Every sentence is decoded as in the
 * whole batch. Small models only (SG_SMALL_MODEL_PARAMS).
 *
 * Two pieces a thread when each can have SG_SPLIT_MIN sentences (4 of 16 for 64 at 2
 * threads), else one, each taken by the next thread that is free: a virtual CPU can run
 * at half speed for seconds (timed per half, one half of dates' batch took 7.5 ms, the
 * other 3.5), and with halves the other thread waited for it. Which thread takes a piece
 * changes from run to run, but the pieces do not (they depend on the batch and the
 * thread count only), nor how a piece is decoded: results are the same in every run. */
static int decode_pieces(sg_model *m, const sg_tensor *src, const sg_tensor *src_len,
                         const sg_decode_opts *opts, sg_decode_result *out)
{
    /* two pieces a thread, else one, of SG_SPLIT_MIN sentences or more; a count that is
     * not a multiple of the threads would leave a thread with one piece more than the
     * others (3 of 16 at 2 threads: 32 sentences on one, where halves give 24 each) */
    int64_t B = src->shape[0], nt = sg__threads(), per = B / (SG_SPLIT_MIN * nt);
    int64_t n = per >= 2 ? 2 * nt : per == 1 ? nt : B / SG_SPLIT_MIN;
    int threads = (int)(n < nt ? n : nt);
    piece *pc = calloc((size_t)n, sizeof *pc);
    sg_decode_opts *o = calloc((size_t)threads, sizeof *o);
    sg_graph **made = calloc((size_t)(2 * threads), sizeof *made); /* step graphs made here */
    sg_decode_result *res = calloc((size_t)n, sizeof *res); /* piece p's in res[p] */
    /* thread 0 decodes in the caller's step graphs if given, the others in their own, made
     * once for all their pieces; one set of W^T copies for all (the caller's, or made for
     * this call) */
    sg_graph *shared = opts && opts->weights ? NULL : sg_graph_new();
    bool ok = pc && o && made && res && (shared || (opts && opts->weights));
    for (int t = 0; t < threads && ok; t++) {
        o[t] = opts ? *opts : sg_decode_opts_default();
        if (shared)
            o[t].weights = shared;
        if (t > 0 || !o[t].work[0])
            ok = (o[t].work[0] = made[2 * t] = sg_graph_new()) &&
                 (o[t].work[1] = made[2 * t + 1] = sg_graph_new());
    }
    int rc = SG_OK;
    if (!ok) {
        rc = sg__error(SG_ENOMEM, "sg_model_decode: out of memory");
        goto out;
    }
    for (int64_t p = 0; p < n; p++) {
        int64_t r0 = B * p / n, r1 = B * (p + 1) / n;
        pc[p].src = rows_of(src, r0, r1 - r0);
        pc[p].len = rows_of(src_len, r0, r1 - r0);
    }
    int64_t next = 0; /* the next piece to take */
    bool was = m->training;
    m->training = false; /* before the threads: each piece's decoder then leaves it alone */
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
#ifdef _OPENMP
        int me = omp_get_thread_num();
#else
        int me = 0;
#endif
        sg__set_thread_cap(1);
        for (int64_t p; (p = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED)) < n;) {
            pc[p].rc = decode_whole(m, &pc[p].src, &pc[p].len, &o[me], &res[p]);
            if (pc[p].rc != SG_OK)
                snprintf(pc[p].msg, sizeof pc[p].msg, "%s", sg_last_error());
        }
        sg__set_thread_cap(0);
    }
    m->training = was;
    for (int64_t p = 0; p < n && rc == SG_OK; p++)
        if (pc[p].rc != SG_OK)
            rc = sg__error(pc[p].rc, "%s", pc[p].msg); /* the worker's message, here */
    if (rc == SG_OK)
        rc = join_results(res, n, out);
    else
        for (int64_t p = 0; p < n; p++)
            sg_decode_result_free(&res[p]);
out:
    for (int i = 0; made && i < 2 * threads; i++)
        sg_graph_free(made[i]);
    sg_graph_free(shared);
    free(res);
    free(made);
    free(o);
    free(pc);
    return rc;
}

int sg_model_decode(sg_model *m, const sg_tensor *src, const sg_tensor *src_len,
                    const sg_decode_opts *opts, sg_decode_result *out)
{
    if (!m || !src || !src_len || !out)
        return sg__error(SG_EINVAL, "sg_model_decode: NULL argument");
    if (opts && opts->weights && (opts->weights == opts->work[0] || opts->weights == opts->work[1]))
        return sg__error(SG_EINVAL, "sg_model_decode: opts->weights must not be one of opts->work");
    /* a batch that the checks would reject is decoded whole, for their message */
    bool split = sg__threads() >= 2 && sg_params_numel(m->params) <= SG_SMALL_MODEL_PARAMS &&
                 src->ndim == 2 && src_len->ndim == 1 && src_len->shape[0] == src->shape[0] &&
                 src->shape[0] >= 2 * SG_SPLIT_MIN;
    return split ? decode_pieces(m, src, src_len, opts, out)
                 : decode_whole(m, src, src_len, opts, out);
}

int sg_named_config_optim(const sg_named_config *nc, sg_optim_config *out)
{
    if (!nc || !out)
        return sg__error(SG_EINVAL, "sg_named_config_optim: NULL argument");
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = nc->lr;
    oc.beta1 = nc->beta1;
    oc.beta2 = nc->beta2;
    oc.eps = nc->eps;
    oc.weight_decay = nc->weight_decay;
    oc.clip_norm = nc->clip_norm;
    oc.label_smoothing = nc->label_smoothing;
    int rc = sg_lr_schedule_parse(nc->schedule, &oc.schedule.kind);
    if (rc != SG_OK)
        return rc;
    oc.schedule.warmup_steps = nc->warmup_steps > 0 ? nc->warmup_steps : 1;
    *out = oc;
    return SG_OK;
}
