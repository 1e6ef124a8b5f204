/* s2s.c - evaluation, translation and attention pictures for the seq2seq programs. */
#include "s2s.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "svg.h"

void sgx_strings_free(char **s, int64_t n)
{
    if (!s)
        return;
    for (int64_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void sgx_eval_free(sgx_eval *e)
{
    if (e) {
        sgx_strings_free(e->hyps, e->sentences);
        e->hyps = NULL;
    }
}

int sgx_make_batch(sg_batch *b, const sg_vocab *sv, const sg_vocab *tv, sg_text_level level,
                   const char *const *src, const char *const *tgt, int64_t n)
{
    sg_text_pairs pairs = {0};
    int rc = SG_OK;
    for (int64_t i = 0; i < n && rc == SG_OK; i++)
        rc = sg_text_pairs_push(&pairs, src[i], tgt ? tgt[i] : "x");
    sg_dataset d = {0};
    if (rc == SG_OK)
        rc = sg_dataset_build(&d, &pairs, level, sv, tv);
    int64_t *idx = malloc(sizeof *idx * (size_t)(n ? n : 1));
    if (rc == SG_OK && !idx)
        rc = sgx_error(SG_ENOMEM, "out of memory");
    for (int64_t i = 0; rc == SG_OK && i < n; i++)
        idx[i] = i;
    if (rc == SG_OK)
        rc = sg_batch_make(b, &d, idx, n);
    free(idx);
    sg_dataset_free(&d);
    sg_text_pairs_free(&pairs);
    return rc;
}

/* dec (NULL: greedy) with a weights graph for one pass over many batches, during which
 * the weights do not change: their W^T copies are made once (*own, for the caller to
 * free; NULL if dec brought its own or the graph could not be made: per-call copies). */
static sg_decode_opts decode_opts_for_pass(const sg_decode_opts *dec, sg_graph **own)
{
    sg_decode_opts o = sg_decode_opts_default();
    o.beam = 0;
    if (dec)
        o = *dec;
    if (!o.weights)
        o.weights = *own = sg_graph_new();
    return o;
}

int sgx_evaluate(sg_model *m, const sg_dataset *d, const sg_text_pairs *raw, const sg_vocab *tv,
                 sg_text_level level, int64_t batch_size, bool decode, const sg_decode_opts *dec,
                 bool keep_hyps, sgx_eval *out)
{
    memset(out, 0, sizeof *out);
    sg_batches bs = {0};
    int rc = sg_batches_length_sorted(&bs, d, batch_size, false);
    if (rc != SG_OK)
        return rc;
    bool was = sg_model_training(m);
    sg_model_set_training(m, false);
    sg_graph *own = NULL;
    sg_decode_opts o = decode_opts_for_pass(dec, &own);
    sg_graph *g = sg_graph_new();
    char **hyps = calloc((size_t)(d->n ? d->n : 1), sizeof *hyps);
    if (!g || !hyps)
        rc = sgx_error(SG_ENOMEM, "out of memory");
    sg_bleu_stats bleu = {0};
    double loss_sum = 0;
    int64_t tokens = 0;
    for (int64_t k = 0; rc == SG_OK && k < bs.n_batches; k++) {
        sg_batch b;
        if ((rc = sg_batch_make_at(&b, d, &bs, k)) != SG_OK)
            break;
        sg_graph_reset(g);
        sg_graph_set_grad_enabled(g, false);
        int64_t n_tok = 0;
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, &n_tok);
        if (!loss)
            rc = sg_graph_status(g) ? sg_graph_status(g) : SG_EINVAL;
        else {
            loss_sum += sg_tensor_get(loss, 0) * (double)n_tok;
            tokens += n_tok;
        }
        if (rc == SG_OK && decode) {
            sg_decode_result r;
            rc = sg_model_decode(m, b.src, b.src_len, &o, &r);
            int64_t count;
            const int64_t *idx = sg_batches_get(&bs, k, &count);
            for (int64_t i = 0; rc == SG_OK && i < count; i++) {
                const sg_hypothesis *h = sg_decode_best(&r, i);
                rc = sg_detokenize(tv, level, h->tokens, h->len, &hyps[idx[i]]);
                if (rc == SG_OK)
                    rc = sg_bleu_add_ids(&bleu, tv, level, h->tokens, h->len, raw->tgt[idx[i]]);
            }
            if (rc == SG_OK)
                sg_decode_result_free(&r);
        }
        sg_batch_free(&b);
    }
    if (rc == SG_OK) {
        out->loss = tokens ? loss_sum / (double)tokens : 0;
        out->tokens = tokens;
        out->sentences = d->n;
        if (decode) {
            out->bleu = sg_bleu_score(&bleu);
            out->exact = sg_exact_match((const char *const *)hyps, (const char *const *)raw->tgt,
                                        d->n);
        }
    }
    if (rc == SG_OK && keep_hyps && decode)
        out->hyps = hyps;
    else
        sgx_strings_free(hyps, d->n);
    sg_graph_free(g);
    sg_graph_free(own);
    sg_batches_free(&bs);
    sg_model_set_training(m, was);
    return rc;
}

int sgx_translate(sg_model *m, const sg_vocab *sv, const sg_vocab *tv, sg_text_level level,
                  const char *const *lines, int64_t n, int64_t batch_size, const sg_decode_opts *dec,
                  int64_t n_best, char ***out, double *scores)
{
    if (n_best < 1)
        n_best = 1;
    char **res = calloc((size_t)(n * n_best + 1), sizeof *res);
    if (!res)
        return sgx_error(SG_ENOMEM, "out of memory");
    int rc = SG_OK;
    sg_graph *own = NULL;
    sg_decode_opts o = decode_opts_for_pass(dec, &own);
    for (int64_t i0 = 0; rc == SG_OK && i0 < n; i0 += batch_size) {
        int64_t nb = n - i0 < batch_size ? n - i0 : batch_size;
        sg_batch b;
        if ((rc = sgx_make_batch(&b, sv, tv, level, lines + i0, NULL, nb)) != SG_OK)
            break;
        sg_decode_result r;
        rc = sg_model_decode(m, b.src, b.src_len, &o, &r);
        for (int64_t i = 0; rc == SG_OK && i < nb; i++) {
            for (int64_t j = 0; rc == SG_OK && j < n_best; j++) {
                int64_t at = (i0 + i) * n_best + j;
                if (j < sg_decode_count(&r, i)) {
                    const sg_hypothesis *h = &r.hyps[r.offset[i] + j];
                    rc = sg_detokenize(tv, level, h->tokens, h->len, &res[at]);
                    if (scores)
                        scores[at] = h->score;
                } else {
                    res[at] = strdup("");
                    if (scores)
                        scores[at] = -INFINITY;
                }
            }
        }
        if (rc == SG_OK)
            sg_decode_result_free(&r);
        sg_batch_free(&b);
    }
    sg_graph_free(own);
    if (rc != SG_OK) {
        sgx_strings_free(res, n * n_best);
        return rc;
    }
    *out = res;
    return SG_OK;
}

/* Labels of a tokenised line plus "</s>". */
static int labels(sg_text_level level, const char *text, sg_tokens *t, const char ***out, int *n)
{
    int rc = sg_tokenize(level, text, t);
    if (rc != SG_OK)
        return rc;
    *n = (int)t->n + 1;
    *out = malloc(sizeof **out * (size_t)*n);
    if (!*out)
        return sgx_error(SG_ENOMEM, "out of memory");
    for (int64_t i = 0; i < t->n; i++)
        (*out)[i] = sg_tokens_at(t, i);
    (*out)[t->n] = "</s>";
    return SG_OK;
}

int sgx_attention_svg(const char *path, sg_model *m, const sg_vocab *sv, const sg_vocab *tv,
                      sg_text_level level, const char *const *src, const char *const *tgt, int n)
{
    if (sg_model_get_config(m)->arch == SG_ARCH_SEQ2SEQ)
        return sgx_error(SG_EINVAL, "the seq2seq model has no attention to draw");
    sgx_heatmap *maps = calloc((size_t)n, sizeof *maps);
    sg_tokens *ts = calloc((size_t)n, sizeof *ts), *tt = calloc((size_t)n, sizeof *tt);
    float **ws = calloc((size_t)n, sizeof *ws);
    char **titles = calloc((size_t)n, sizeof *titles);
    if (!maps || !ts || !tt || !ws || !titles) {
        free(maps), free(ts), free(tt), free(ws), free(titles);
        return sgx_error(SG_ENOMEM, "out of memory");
    }
    bool was = sg_model_training(m);
    sg_model_set_training(m, false);
    sg_graph *g = sg_graph_new();
    int rc = g ? SG_OK : SG_ENOMEM;
    for (int i = 0; rc == SG_OK && i < n; i++) {
        sg_batch b;
        if ((rc = sgx_make_batch(&b, sv, tv, level, &src[i], &tgt[i], 1)) != SG_OK)
            break;
        sg_graph_reset(g);
        sg_tensor *attn = NULL;
        if (!sg_model_forward(m, g, &b, &attn) || !attn)
            rc = sg_graph_status(g) ? sg_graph_status(g) : SG_EINVAL;
        const char **sl = NULL, **tl = NULL;
        int S = 0, T = 0;
        if (rc == SG_OK)
            rc = labels(level, src[i], &ts[i], &sl, &S);
        if (rc == SG_OK)
            rc = labels(level, tgt[i], &tt[i], &tl, &T);
        if (rc == SG_OK && (attn->shape[1] != T || attn->shape[2] != S))
            rc = sgx_error(SG_ESHAPE, "attention [%lld, %lld] does not match %d x %d tokens",
                           (long long)attn->shape[1], (long long)attn->shape[2], T, S);
        if (rc == SG_OK && (ws[i] = malloc(sizeof(float) * (size_t)(T * S)))) {
            for (int64_t k = 0; k < (int64_t)T * S; k++)
                ws[i][k] = (float)sg_tensor_get(attn, k);
            size_t len = strlen(src[i]) + 16;
            titles[i] = malloc(len);
            if (titles[i])
                snprintf(titles[i], len, "%s", src[i]);
            maps[i] = (sgx_heatmap){titles[i], T, S, ws[i], sl, tl};
        } else if (rc == SG_OK) {
            rc = sgx_error(SG_ENOMEM, "out of memory");
        }
        if (rc != SG_OK) {
            free(sl);
            free(tl);
        }
        sg_batch_free(&b);
    }
    if (rc == SG_OK)
        rc = sgx_svg_heatmaps(path, maps, n);
    for (int i = 0; i < n; i++) {
        free((void *)maps[i].src);
        free((void *)maps[i].tgt);
        free(ws[i]);
        free(titles[i]);
        sg_tokens_free(&ts[i]);
        sg_tokens_free(&tt[i]);
    }
    free(maps), free(ts), free(tt), free(ws), free(titles);
    sg_graph_free(g);
    sg_model_set_training(m, was);
    return rc;
}
