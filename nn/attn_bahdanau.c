/*
 * attn_bahdanau.c - Bahdanau additive attention (MODELS.md 5):
 *   K_j = W_h h_j + b_a               once per source batch (one GEMM)
 *   e_j = v . tanh(W_s s + K_j)       per decoder step, j < n_b
 *   alpha = softmax_j(e), c = sum_j alpha_j h_j
 * A step is three nodes: the query projection, the fused scores, the fused context.
 */
#include "attn_internal.h"

#include <string.h>

int sg_additive_attention_init(sg_additive_attention *m, sg_params *p, const char *prefix,
                               int64_t query_dim, int64_t key_dim, int64_t attn_dim, sg_rng *rng)
{
    if (!m || !p)
        return sg__error(SG_EINVAL, "sg_additive_attention_init: module or store is NULL");
    if (query_dim < 1 || key_dim < 1 || attn_dim < 1)
        return sg__error(SG_EINVAL, "sg_additive_attention_init: '%s' needs query_dim, key_dim, "
                                    "attn_dim >= 1 (got %lld, %lld, %lld)",
                         prefix ? prefix : "", (long long)query_dim, (long long)key_dim,
                         (long long)attn_dim);
    memset(m, 0, sizeof *m);
    char name[SG_PARAM_NAME_MAX];
    int rc;
    /* state_dict order of the reference module: query_proj, key_proj, energy */
    if ((rc = sg_param_name(name, prefix, "query_proj")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->query_proj, p, name, query_dim, attn_dim, false, rng)) !=
            SG_OK)
        return rc;
    if ((rc = sg_param_name(name, prefix, "key_proj")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->key_proj, p, name, key_dim, attn_dim, true, rng)) != SG_OK)
        return rc;
    if ((rc = sg_param_name(name, prefix, "energy")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->energy, p, name, attn_dim, 1, false, rng)) != SG_OK)
        return rc;
    m->query_dim = query_dim;
    m->key_dim = key_dim;
    m->attn_dim = attn_dim;
    return SG_OK;
}

int sg_additive_attention_precompute(sg_graph *g, const sg_additive_attention *m, sg_tensor *h,
                                     sg_tensor *lengths, sg_tensor *mask, sg_attn_memory *mem)
{
    const char *op = "sg_additive_attention_precompute";
    if (!m || !mem)
        return g ? (sg_graph_fail(g, SG_EINVAL, "%s: module or mem is NULL", op), SG_EINVAL)
                 : sg__error(SG_EINVAL, "%s: module or mem is NULL", op);
    sg_attn_memory tmp;
    int rc = sg__attn_memory_init(g, op, h, lengths, mask, &tmp);
    if (rc != SG_OK)
        return rc;
    if (h->shape[2] != m->key_dim) {
        sg_graph_fail(g, SG_ESHAPE, "%s: encoder outputs %s have %lld features, key_proj expects "
                                    "%lld",
                      op, SG_SHAPE(h), (long long)h->shape[2], (long long)m->key_dim);
        return SG_ESHAPE;
    }
    tmp.keys = sg_linear(g, h, m->key_proj.weight, m->key_proj.bias); /* [B, S, A] */
    if (!tmp.keys)
        return sg_graph_status(g);
    *mem = tmp;
    return SG_OK;
}

sg_tensor *sg_additive_attention_step(sg_graph *g, const sg_additive_attention *m,
                                      const sg_attn_memory *mem, sg_tensor *s, sg_tensor **weights)
{
    const char *op = "sg_additive_attention_step";
    SG_NEED(g, s);
    if (!m || !mem || !mem->keys)
        return sg_graph_fail(g, SG_EINVAL, "%s: module or precomputed memory is missing", op);
    if (!sg__attn_check_query(g, op, mem, s, m->query_dim))
        return NULL;
    sg_tensor *q = sg_linear(g, s, m->query_proj.weight, NULL);                   /* [B, A] */
    sg_tensor *e =
        sg__attn_additive_scores_rows(g, q, mem->keys, m->energy.weight, mem->valid, mem->rows,
                                      mem->tanh_kept);
    return sg__attn_context_rows(g, e, mem->values, mem->valid, mem->rows, NULL, 0,
                                 weights); /* [B, Hk] */
}
