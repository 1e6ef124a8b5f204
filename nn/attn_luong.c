/*
 * attn_luong.c - Luong attention (MODELS.md 6): dot / general / concat scores with
 * global, local-m or local-p alignment.
 *   general: keys = hbar W_a^T, concat: keys = hbar W_a[:, H:]^T   (once per batch)
 *   local window J = {j < n_b : |j - p_t| <= D}, softmax over J only; local-p then
 *   multiplies by exp(-(j - p_t)^2 / (2 sigma^2)), sigma = D / 2, without renormalising.
 * The window comparison is done in the model's dtype, as the reference does.
 */
#include "attn_internal.h"

#include <math.h>
#include <string.h>

static sg_tensor *add_matrix(sg_params *p, const char *prefix, const char *name, int64_t rows,
                             int64_t cols, sg_rng *rng)
{
    char full[SG_PARAM_NAME_MAX], mod[SG_PARAM_NAME_MAX];
    if (sg_param_name(mod, prefix, name) != SG_OK || sg_param_name(full, mod, "weight") != SG_OK)
        return NULL;
    sg_tensor *w = sg_params_add(p, full, 2, (int64_t[]){rows, cols});
    if (w && rng) { /* PyTorch Linear default: U(+-1/sqrt(in)) */
        double b = 1.0 / sqrt((double)cols);
        sg_tensor_uniform_(w, rng, -b, b);
    }
    return w;
}

int sg_luong_attention_init(sg_luong_attention *m, sg_params *p, const char *prefix,
                            sg_luong_score score, sg_luong_align align, int64_t hidden,
                            int64_t attn_dim, int64_t window, sg_rng *rng)
{
    const char *op = "sg_luong_attention_init";
    if (!m || !p)
        return sg__error(SG_EINVAL, "%s: module or store is NULL", op);
    if ((int)score < 0 || score >= SG_LUONG_SCORE_COUNT || (int)align < 0 ||
        align >= SG_LUONG_ALIGN_COUNT)
        return sg__error(SG_EINVAL, "%s: unknown score %d or alignment %d", op, (int)score,
                         (int)align);
    bool need_a = score == SG_LUONG_CONCAT || align == SG_LUONG_LOCAL_P;
    if (hidden < 1 || (need_a && attn_dim < 1) || (align != SG_LUONG_GLOBAL && window < 1))
        return sg__error(SG_EINVAL, "%s: '%s' needs hidden >= 1, attn_dim >= 1 (concat, local-p) "
                                    "and window >= 1 (local); got %lld, %lld, %lld",
                         op, prefix ? prefix : "", (long long)hidden, (long long)attn_dim,
                         (long long)window);
    memset(m, 0, sizeof *m);
    m->score = score;
    m->align = align;
    m->hidden = hidden;
    m->attn_dim = attn_dim;
    m->window = window;
    if (score == SG_LUONG_GENERAL && !(m->W_a = add_matrix(p, prefix, "W_a", hidden, hidden, rng)))
        return SG_EINVAL;
    if (score == SG_LUONG_CONCAT &&
        (!(m->W_a = add_matrix(p, prefix, "W_a", attn_dim, 2 * hidden, rng)) ||
         !(m->v = add_matrix(p, prefix, "v", 1, attn_dim, rng))))
        return SG_EINVAL;
    if (align == SG_LUONG_LOCAL_P &&
        (!(m->W_p = add_matrix(p, prefix, "W_p", attn_dim, hidden, rng)) ||
         !(m->v_p = add_matrix(p, prefix, "v_p", 1, attn_dim, rng))))
        return SG_EINVAL;
    return SG_OK;
}

int sg_luong_attention_precompute(sg_graph *g, const sg_luong_attention *m, sg_tensor *hbar,
                                  sg_tensor *lengths, sg_tensor *mask, sg_attn_memory *mem)
{
    const char *op = "sg_luong_attention_precompute";
    if (!m || !mem)
        return g ? (sg_graph_fail(g, SG_EINVAL, "%s: module or mem is NULL", op), SG_EINVAL)
                 : sg__error(SG_EINVAL, "%s: module or mem is NULL", op);
    sg_attn_memory tmp;
    int rc = sg__attn_memory_init(g, op, hbar, lengths, mask, &tmp);
    if (rc != SG_OK)
        return rc;
    int64_t H = m->hidden;
    if (hbar->shape[2] != H) {
        sg_graph_fail(g, SG_ESHAPE, "%s: encoder outputs %s have %lld features, the attention "
                                    "expects %lld",
                      op, SG_SHAPE(hbar), (long long)hbar->shape[2], (long long)H);
        return SG_ESHAPE;
    }
    if (m->score == SG_LUONG_DOT)
        tmp.keys = hbar;
    else if (m->score == SG_LUONG_GENERAL)
        tmp.keys = sg_linear(g, hbar, m->W_a, NULL);                            /* [B, S, H] */
    else
        tmp.keys = sg_linear(g, hbar, sg_narrow(g, m->W_a, 1, H, H), NULL);     /* [B, S, A] */
    if (!tmp.keys)
        return sg_graph_status(g);
    *mem = tmp;
    return SG_OK;
}

/* valid[b, j] && |j - p_b| <= D, the distance computed in T as the reference does. */
#define WINDOW(T, ABS)                                                                       \
    for (int64_t b = 0; b < B; b++)                                                          \
        for (int64_t j = 0; j < S; j++) {                                                    \
            T dist = (T)j - (T)p[b];                                                         \
            out[b * S + j] = mem->valid[b * S + j] && ABS(dist) <= (T)D;                     \
        }

static uint8_t *window(sg_graph *g, const sg_attn_memory *mem, const double *p, int64_t D,
                       sg_dtype dt)
{
    int64_t B = mem->B, S = mem->S;
    uint8_t *out = sg_arena_alloc(sg_graph_arena(g), (size_t)(B * S > 0 ? B * S : 1));
    if (!out) {
        sg_graph_fail(g, SG_ENOMEM, "sg_luong_attention_step: out of memory");
        return NULL;
    }
    if (dt == SG_F32) {
        WINDOW(float, fabsf)
    } else {
        WINDOW(double, fabs)
    }
    return out;
}

sg_tensor *sg_luong_attention_step(sg_graph *g, const sg_luong_attention *m,
                                   const sg_attn_memory *mem, sg_tensor *h_t, int64_t t,
                                   sg_tensor **weights)
{
    const char *op = "sg_luong_attention_step";
    SG_NEED(g, h_t);
    if (!m || !mem || !mem->keys)
        return sg_graph_fail(g, SG_EINVAL, "%s: module or precomputed memory is missing", op);
    if (t < 0)
        return sg_graph_fail(g, SG_EINVAL, "%s: step t = %lld must be >= 0", op, (long long)t);
    if (mem->rows && m->align != SG_LUONG_GLOBAL)
        return sg_graph_fail(g, SG_EINVAL, "%s: the memory has a row map (global alignment "
                                           "only: local windows need each row's length)", op);
    int64_t H = m->hidden, B = mem->B;
    if (!sg__attn_check_query(g, op, mem, h_t, H))
        return NULL;
    const uint8_t *valid = mem->valid;
    sg_tensor *pos = NULL;
    if (m->align != SG_LUONG_GLOBAL) {
        double *p = sg_arena_alloc(sg_graph_arena(g), sizeof(double) * (size_t)(B ? B : 1));
        if (!p)
            return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        if (m->align == SG_LUONG_LOCAL_M) { /* p_t = min(t, n_b - 1) */
            for (int64_t b = 0; b < B; b++)
                p[b] = (double)(t < mem->len[b] - 1 ? t : mem->len[b] - 1);
        } else { /* p_t = n_b sigmoid(v_p . tanh(W_p h_t)), [B, 1] */
            sg_tensor *nb = sg_empty(g, h_t->dtype, 2, (int64_t[]){B, 1});
            SG_NEED(nb);
            for (int64_t b = 0; b < B; b++)
                sg_tensor_set(nb, b, (double)mem->len[b]);
            sg_tensor *z = sg_linear(g, sg_tanh(g, sg_linear(g, h_t, m->W_p, NULL)), m->v_p, NULL);
            pos = sg_mul(g, nb, sg_sigmoid(g, z));
            SG_NEED(pos);
            for (int64_t b = 0; b < B; b++)
                p[b] = sg_tensor_get(pos, b);
        }
        if (!(valid = window(g, mem, p, m->window, h_t->dtype)))
            return NULL;
    }
    sg_tensor *e;
    if (m->score == SG_LUONG_CONCAT) {
        sg_tensor *q = sg_linear(g, h_t, sg_narrow(g, m->W_a, 1, 0, H), NULL); /* [B, A] */
        e = sg__attn_additive_scores_rows(g, q, mem->keys, m->v, valid, mem->rows, mem->tanh_kept);
    } else {
        e = sg__attn_dot_scores_rows(g, h_t, mem->keys, valid, mem->rows);
    }
    return sg__attn_context_rows(g, e, mem->values, valid, mem->rows, pos,
                                 (double)m->window / 2.0, weights);
}
