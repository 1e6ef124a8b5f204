/* decode_greedy.c - batched greedy decoding (MODELS.md 8.3); finished rows are dropped. */
#include "decode_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* y = argmax over ids other than <pad> (0), <s> (2), lowest id on exact ties; xy = x[y]. */
#define ARGMAX_ROW(T)                                                              \
    do {                                                                           \
        const T *x = (const T *)row;                                               \
        T best = x[SG_TOK_UNK * sx];                                               \
        y = SG_TOK_UNK;                                                            \
        for (int64_t v = SG_TOK_EOS; v < V; v++)                                   \
            if (x[v * sx] > best) { /* strict: lowest id wins ties */              \
                best = x[v * sx];                                                  \
                y = v;                                                             \
            }                                                                      \
        xy = (double)best;                                                         \
    } while (0)

int sg_decode_greedy(const sg_decoder_ops *ops, void *model, int64_t batch,
                     const int64_t *src_len, const sg_decode_opts *opts, sg_decode_result *out)
{
    static const char fn[] = "sg_decode_greedy";
    int rc = sg__decode_check(fn, ops, batch, src_len, opts, out);
    if (rc != SG_OK)
        return rc;

    /* Bookkeeping, one block: per sentence a token buffer of max_len, its length, eos
     * flag and logp; per row its sentence, previous token and parent. */
    int64_t total = 0;
    for (int64_t b = 0; b < batch; b++)
        total += sg__decode_limit(opts, src_len[b]);
    size_t n_i64 = (size_t)(total + 7 * batch + 1);
    int64_t *blk = malloc(n_i64 * sizeof(int64_t) + (size_t)batch * sizeof(double));
    if (!blk)
        return sg__error(SG_ENOMEM, "%s: cannot allocate bookkeeping for %lld sentences", fn,
                         (long long)batch);
    int64_t *toks = blk;                 /* [total] */
    int64_t *first = toks + total;       /* [batch + 1] start of sentence b's tokens */
    int64_t *len = first + batch + 1;    /* [batch] */
    int64_t *eos = len + batch;          /* [batch] 0/1 */
    int64_t *row_sent = eos + batch;     /* [R] */
    int64_t *new_sent = row_sent + batch;
    int64_t *prev = new_sent + batch;
    int64_t *parent = prev + batch;
    double *sum = (double *)(parent + batch);   /* [batch] */

    first[0] = 0;
    for (int64_t b = 0; b < batch; b++) {
        first[b + 1] = first[b] + sg__decode_limit(opts, src_len[b]);
        len[b] = eos[b] = 0;
        sum[b] = 0.0;
        row_sent[b] = b;
        prev[b] = SG_TOK_BOS;
    }

    sg__decode_work w;
    rc = sg__decode_work_init(&w, opts);
    if (rc != SG_OK) {
        free(blk);
        return rc;
    }
    int64_t R = batch, V = 0;
    for (int64_t t = 0; R > 0; t++) {
        sg_tensor *logits;
        const double *lse_all = NULL;
        rc = sg__decode_step(fn, ops, model, &w, prev, R, t, &logits, &V, &lse_all);
        if (rc != SG_OK)
            goto done;
        const int64_t sx = logits->stride[1];
        int64_t R2 = 0;
        for (int64_t r = 0; r < R; r++) {
            int64_t b = row_sent[r], y;
            double lse = lse_all[r], xy;
            const void *row = sg__decode_row(logits, r);
            if (logits->dtype == SG_F32)
                ARGMAX_ROW(float);
            else
                ARGMAX_ROW(double);
            double lpy = xy - lse;
            sum[b] += lpy == lpy ? lpy : -INFINITY;   /* -inf - +inf: row with no mass */
            bool fin = y == SG_TOK_EOS;
            if (fin) {
                eos[b] = 1;
            } else {
                toks[first[b] + t] = y;
                len[b] = t + 1;
                fin = t + 1 >= first[b + 1] - first[b];
            }
            if (!fin) {   /* prev[r] was already copied into step t's tensor */
                parent[R2] = r;
                new_sent[R2] = b;
                prev[R2] = y;
                R2++;
            }
        }
        if (R2 > 0 && R2 != R) {   /* rows keep their order: identity iff nobody finished */
            rc = sg__decode_select(ops, model, &w, t, parent, new_sent, R2);
            if (rc != SG_OK)
                goto done;
        }
        memcpy(row_sent, new_sent, (size_t)R2 * sizeof(int64_t));
        R = R2;
    }

    sg_decode_result res;
    int64_t n_tok = 0;
    for (int64_t b = 0; b < batch; b++)
        n_tok += len[b];
    rc = sg__decode_result_alloc(&res, batch, batch, n_tok);
    if (rc != SG_OK)
        goto done;
    int64_t *dst = res.tokens_;
    for (int64_t b = 0; b < batch; b++) {
        memcpy(dst, toks + first[b], (size_t)len[b] * sizeof(int64_t));
        res.offset[b] = b;
        res.hyps[b] = (sg_hypothesis){.tokens = dst, .len = len[b], .n = len[b] + eos[b],
                                      .eos = eos[b] != 0, .logp = sum[b], .score = sum[b]};
        dst += len[b];
    }
    res.offset[batch] = batch;
    *out = res;
done:
    sg__decode_work_free(&w);
    free(blk);
    return rc;
}
