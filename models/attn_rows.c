/* attn_rows.c - an attention memory with one row per decoding row (see
 * models_internal.h): re-gathered only when the row -> sentence map changes. */
#include "models_internal.h"

#include <stdlib.h>
#include <string.h>

int sg__attn_rows_init(sg__attn_rows *r, sg_graph *enc, const sg_attn_memory *base,
                       bool share)
{
    memset(r, 0, sizeof *r);
    r->share = share;
    r->base = *base;
    r->base.values = sg_contiguous(enc, base->values);
    r->base.keys = sg_contiguous(enc, base->keys);
    r->sent = malloc(sizeof *r->sent * (size_t)(base->B ? base->B : 1));
    if (!r->base.values || !r->base.keys || !r->sent) {
        free(r->sent);
        r->sent = NULL;
        return sg_graph_status(enc) ? sg_graph_status(enc)
                                    : sg__error(SG_ENOMEM, "decoder: out of memory");
    }
    for (int64_t b = 0; b < base->B; b++)
        r->sent[b] = b;
    r->sent_cap = base->B;
    r->cur = r->base;
    r->n = base->B;
    return SG_OK;
}

void sg__attn_rows_free(sg__attn_rows *r)
{
    if (!r)
        return;
    sg_tensor_free(r->values);
    sg_tensor_free(r->keys);
    free(r->valid);
    free(r->len);
    free(r->sent);
    memset(r, 0, sizeof *r);
}

int sg__attn_rows_select(sg__attn_rows *r, const int64_t *sent, int64_t R)
{
    if (R == r->n && !memcmp(sent, r->sent, sizeof *sent * (size_t)R))
        return SG_OK;
    if (r->share) { /* only the map changes */
        if (R > r->sent_cap) {
            int64_t *st = realloc(r->sent, sizeof *st * (size_t)R);
            if (!st)
                return sg__error(SG_ENOMEM, "decoder: out of memory for %lld rows", (long long)R);
            r->sent = st;
            r->sent_cap = R;
        }
        memcpy(r->sent, sent, sizeof *sent * (size_t)R);
        r->n = R;
        r->cur = r->base;
        r->cur.B = R;
        r->cur.rows = r->sent;
        return SG_OK;
    }
    const sg_attn_memory *b = &r->base;
    int64_t S = b->S, Dv = b->values->shape[2], Dk = b->keys->shape[2];
    if (R > r->cap) { /* grow once; later selections reuse the buffers */
        sg_tensor *v = sg_tensor_new(b->values->dtype, 3, (int64_t[]){R, S, Dv});
        sg_tensor *k = sg_tensor_new(b->keys->dtype, 3, (int64_t[]){R, S, Dk});
        uint8_t *valid = malloc((size_t)(R * S));
        int64_t *len = malloc(sizeof *len * (size_t)R), *st = malloc(sizeof *st * (size_t)R);
        if (!v || !k || !valid || !len || !st) {
            sg_tensor_free(v);
            sg_tensor_free(k);
            free(valid), free(len), free(st);
            return sg__error(SG_ENOMEM, "decoder: out of memory for %lld rows", (long long)R);
        }
        sg_tensor_free(r->values);
        sg_tensor_free(r->keys);
        free(r->valid), free(r->len), free(r->sent);
        r->values = v, r->keys = k, r->valid = valid, r->len = len, r->sent = st;
        r->cap = R;
    }
    size_t es = sg_dtype_size(b->values->dtype);
    for (int64_t i = 0; i < R; i++) {
        int64_t s = sent[i];
        memcpy((char *)r->values->data + (size_t)(i * S * Dv) * es,
               (const char *)b->values->data + (size_t)(s * S * Dv) * es, (size_t)(S * Dv) * es);
        memcpy((char *)r->keys->data + (size_t)(i * S * Dk) * es,
               (const char *)b->keys->data + (size_t)(s * S * Dk) * es, (size_t)(S * Dk) * es);
        memcpy(r->valid + i * S, b->valid + s * S, (size_t)S);
        r->len[i] = b->len[s];
        r->sent[i] = s;
    }
    r->n = R;
    /* the first R rows of the heap buffers, as [R, S, *] */
    r->vh = *r->values;
    r->kh = *r->keys;
    r->vh.shape[0] = r->kh.shape[0] = R;
    r->cur = (sg_attn_memory){.values = &r->vh, .keys = &r->kh, .valid = r->valid, .len = r->len,
                              .B = R, .S = S};
    return SG_OK;
}
