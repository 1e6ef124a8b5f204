/* batch.c - length-sorted batches, bench(n) and padded batch tensors (MODELS.md 2.5, 10.2). */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

void sg_batches_free(sg_batches *b)
{
    if (!b)
        return;
    free(b->start);
    free(b->idx);
    free(b->order);
    memset(b, 0, sizeof *b);
}

/* qsort key: (src length, tgt length, index); the index makes the order total. */
typedef struct {
    int64_t ls, lt, i;
} len_key;

static int cmp_len(const void *pa, const void *pb)
{
    const len_key *a = pa, *b = pb;
    if (a->ls != b->ls)
        return a->ls < b->ls ? -1 : 1;
    if (a->lt != b->lt)
        return a->lt < b->lt ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int batches_alloc(sg_batches *b, int64_t n_batches, int64_t n_idx)
{
    b->n_batches = n_batches;
    b->start = malloc((size_t)(n_batches + 1) * sizeof *b->start);
    b->idx = malloc((size_t)(n_idx > 0 ? n_idx : 1) * sizeof *b->idx);
    b->order = malloc((size_t)(n_batches > 0 ? n_batches : 1) * sizeof *b->order);
    if (!b->start || !b->idx || !b->order) {
        sg_batches_free(b);
        return SG_ENOMEM;
    }
    for (int64_t k = 0; k < n_batches; k++)
        b->order[k] = k;
    b->start[0] = 0;
    return SG_OK;
}

int sg_batches_length_sorted(sg_batches *out, const sg_dataset *d, int64_t batch_size,
                             bool drop_last)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_batches_length_sorted: NULL output");
    memset(out, 0, sizeof *out);
    if (!d || batch_size < 1)
        return sg__error(SG_EINVAL, "sg_batches_length_sorted: NULL dataset or batch_size %lld < 1",
                         (long long)batch_size);
    int64_t n = d->n;
    len_key *keys = malloc((size_t)(n > 0 ? n : 1) * sizeof *keys);
    if (!keys)
        return sg__error(SG_ENOMEM, "sg_batches_length_sorted: out of memory");
    for (int64_t i = 0; i < n; i++)
        keys[i] = (len_key){sg_dataset_src_len(d, i), sg_dataset_tgt_len(d, i), i};
    qsort(keys, (size_t)n, sizeof *keys, cmp_len);
    int64_t nb = drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
    int64_t used = drop_last ? nb * batch_size : n;
    if (batches_alloc(out, nb, used) != SG_OK) {
        free(keys);
        return sg__error(SG_ENOMEM, "sg_batches_length_sorted: out of memory");
    }
    for (int64_t i = 0; i < used; i++)
        out->idx[i] = keys[i].i;
    for (int64_t k = 0; k < nb; k++)
        out->start[k + 1] = k + 1 < nb || drop_last ? (k + 1) * batch_size : used;
    free(keys);
    return SG_OK;
}

int sg_batches_bench(sg_batches *out, const sg_dataset *d, int64_t batch_size, int64_t n)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_batches_bench: NULL output");
    memset(out, 0, sizeof *out);
    if (n < 1)
        return sg__error(SG_EINVAL, "sg_batches_bench: n = %lld < 1", (long long)n);
    sg_batches full;
    int rc = sg_batches_length_sorted(&full, d, batch_size, true);
    if (rc != SG_OK)
        return rc;
    int64_t nb = full.n_batches;
    if (nb == 0) {
        sg_batches_free(&full);
        return sg__error(SG_EINVAL, "sg_batches_bench: %lld examples make no full batch of %lld",
                         (long long)d->n, (long long)batch_size);
    }
    if (batches_alloc(out, n, n * batch_size) != SG_OK) {
        sg_batches_free(&full);
        return sg__error(SG_ENOMEM, "sg_batches_bench: out of memory");
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t k = j * nb / n; /* floor(j*nb/n) */
        memcpy(out->idx + j * batch_size, full.idx + full.start[k],
               (size_t)batch_size * sizeof *out->idx);
        out->start[j + 1] = (j + 1) * batch_size;
    }
    sg_batches_free(&full);
    return SG_OK;
}

int sg_batches_shuffle(sg_batches *b, sg_rng *rng)
{
    if (!b || !rng)
        return sg__error(SG_EINVAL, "sg_batches_shuffle: NULL batches or rng");
    for (int64_t i = b->n_batches - 1; i > 0; i--) {
        int64_t j = (int64_t)sg_rng_below(rng, (uint64_t)i + 1);
        int64_t t = b->order[i];
        b->order[i] = b->order[j];
        b->order[j] = t;
    }
    return SG_OK;
}

const int64_t *sg_batches_get(const sg_batches *b, int64_t k, int64_t *count)
{
    if (!b || k < 0 || k >= b->n_batches) {
        sg__error(SG_ERANGE, "sg_batches_get: batch %lld outside [0, %lld)", (long long)k,
                  (long long)(b ? b->n_batches : 0));
        return NULL;
    }
    int64_t q = b->order[k];
    if (count)
        *count = b->start[q + 1] - b->start[q];
    return b->idx + b->start[q];
}

void sg_batch_free(sg_batch *b)
{
    if (!b)
        return;
    sg_tensor_free(b->src);
    sg_tensor_free(b->src_len);
    sg_tensor_free(b->src_mask);
    sg_tensor_free(b->tgt_in);
    sg_tensor_free(b->tgt_out);
    memset(b, 0, sizeof *b);
}

int sg_batch_make(sg_batch *out, const sg_dataset *d, const int64_t *idx, int64_t B)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_batch_make: NULL output");
    memset(out, 0, sizeof *out);
    if (!d || !idx || B < 1)
        return sg__error(SG_EINVAL, "sg_batch_make: NULL dataset/indices or B = %lld < 1",
                         (long long)B);
    int64_t S = 0, T = 0;
    for (int64_t b = 0; b < B; b++) {
        if (idx[b] < 0 || idx[b] >= d->n)
            return sg__error(SG_ERANGE, "sg_batch_make: idx[%lld] = %lld outside [0, %lld)",
                             (long long)b, (long long)idx[b], (long long)d->n);
        int64_t ls = sg_dataset_src_len(d, idx[b]), lt = sg_dataset_tgt_len(d, idx[b]) + 1;
        S = ls > S ? ls : S;
        T = lt > T ? lt : T;
    }
    sg_batch r = {.B = B, .S = S, .T = T};
    r.src = sg_tensor_new(SG_I64, 2, (int64_t[]){B, S});
    r.src_len = sg_tensor_new(SG_I64, 1, (int64_t[]){B});
    r.src_mask = sg_tensor_new(SG_BOOL, 2, (int64_t[]){B, S});
    r.tgt_in = sg_tensor_new(SG_I64, 2, (int64_t[]){B, T});
    r.tgt_out = sg_tensor_new(SG_I64, 2, (int64_t[]){B, T});
    if (!r.src || !r.src_len || !r.src_mask || !r.tgt_in || !r.tgt_out) {
        sg_batch_free(&r);
        return sg__error(SG_ENOMEM, "sg_batch_make: out of memory for B=%lld S=%lld T=%lld",
                         (long long)B, (long long)S, (long long)T);
    }
    /* sg_tensor_new zero-fills, so padding (0 = <pad>) is already in place. */
    int64_t *src = r.src->data, *len = r.src_len->data, *tin = r.tgt_in->data,
            *tout = r.tgt_out->data;
    uint8_t *mask = r.src_mask->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t i = idx[b], ls = sg_dataset_src_len(d, i), lt = sg_dataset_tgt_len(d, i);
        const int32_t *s = d->src_ids + d->src_off[i], *t = d->tgt_ids + d->tgt_off[i];
        for (int64_t j = 0; j < ls; j++)
            src[b * S + j] = s[j];
        memset(mask + b * S, 1, (size_t)ls);
        len[b] = ls;
        tin[b * T] = SG_BOS;
        for (int64_t j = 0; j < lt; j++)
            tin[b * T + 1 + j] = tout[b * T + j] = t[j];
        tout[b * T + lt] = SG_EOS;
        r.n_tgt_tokens += lt + 1;
    }
    *out = r;
    return SG_OK;
}

int sg_batch_make_at(sg_batch *out, const sg_dataset *d, const sg_batches *bs, int64_t k)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_batch_make_at: NULL output");
    memset(out, 0, sizeof *out);
    int64_t B;
    const int64_t *idx = sg_batches_get(bs, k, &B);
    if (!idx)
        return SG_ERANGE;
    return sg_batch_make(out, d, idx, B);
}
