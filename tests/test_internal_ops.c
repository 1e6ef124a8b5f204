/* test_internal_ops.c - gradient checks of the library's internal fused ops in the forms
 * that no public path differentiates (decoding uses them without gradients). Linked with
 * the library's objects, so that it reaches their hidden symbols. */
#include "models_internal.h"
#include "sg_model.h"
#include "test_util.h"

#include <string.h>

enum { B = 3, T = 2, H = 4, C = 5, G = 3 * H };

typedef struct {
    bool bias; /* pass b_hh, or NULL (zeros) */
} step_case;

/* Two decoder GRU steps without a context: the caller's gates gx (made here from the leaf
 * gx_in by one op, since the steps write their gates into gx's rows) carry all of the
 * input part; a weighted sum of both states makes the check see every output. */
static sg_tensor *two_steps_without_context(sg_graph *g, sg_tensor *const *in, void *user)
{
    const step_case *c = user;
    sg_tensor *gx = sg_add_scalar(g, in[0], 0.0), *s = in[1], *Whh = in[2];
    sg_tensor *b = c->bias ? in[3] : NULL;
    sg_tensor *s1 = sg__bahdanau_gru_step(g, gx, 0, b, NULL, s, NULL, Whh);
    sg_tensor *s2 = sg__bahdanau_gru_step(g, gx, 1, b, NULL, s1, NULL, Whh);
    return sg_sum_all(g, sg_add(g, sg_mul(g, s2, s2), sg_mul_scalar(g, s1, 0.7)));
}

static void gradcheck_without_context(bool bias)
{
    sg_rng r;
    sg_rng_seed(&r, 5);
    sg_tensor *in[4] = {tu_rand64(&r, -1.5, 1.5, 3, (int64_t)B, (int64_t)T, (int64_t)G),
                        tu_rand64(&r, -1, 1, 2, (int64_t)B, (int64_t)H),
                        tu_rand64(&r, -0.9, 0.9, 2, (int64_t)G, (int64_t)H),
                        tu_rand64(&r, -0.5, 0.5, 1, (int64_t)G)};
    step_case c = {bias};
    TU_GRADCHECK(two_steps_without_context, &c, bias ? 4 : 3, in);
    for (int i = 0; i < 4; i++)
        sg_tensor_free(in[i]);
}

Test(bahdanau_step, gradcheck_without_context) { gradcheck_without_context(true); }
Test(bahdanau_step, gradcheck_without_context_or_bias) { gradcheck_without_context(false); }

/* One step's leaves, f64 and requiring grad: gx [B, 1, 3H], ctx [B, C], s [B, H], W_c
 * [3H, C], W_hh [3H, H], b_hh [3H], in this order; the caller frees them. */
enum { N_STEP_LEAVES = 6 };
static void step_leaves(uint64_t seed, sg_tensor *t[N_STEP_LEAVES])
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    t[0] = tu_rand64(&r, -1, 1, 3, (int64_t)B, (int64_t)1, (int64_t)G);
    t[1] = tu_rand64(&r, -1, 1, 2, (int64_t)B, (int64_t)C);
    t[2] = tu_rand64(&r, -1, 1, 2, (int64_t)B, (int64_t)H);
    t[3] = tu_rand64(&r, -0.8, 0.8, 2, (int64_t)G, (int64_t)C);
    t[4] = tu_rand64(&r, -0.8, 0.8, 2, (int64_t)G, (int64_t)H);
    t[5] = tu_rand64(&r, -0.5, 0.5, 1, (int64_t)G);
}

static void free_all(sg_tensor *t[N_STEP_LEAVES])
{
    for (int l = 0; l < N_STEP_LEAVES; l++)
        sg_tensor_free(t[l]);
}

/* The step over gx + ctx W_c^T made by the caller (beam decoding's form) gives the state
 * and the gradients of the step that is given ctx and W_c. */
Test(bahdanau_step, caller_added_context_matches_context_step)
{
    sg_tensor *leaves[N_STEP_LEAVES];
    step_leaves(9, leaves);
    sg_tensor *gx0 = leaves[0], *ctx = leaves[1], *s = leaves[2], *Wc = leaves[3];
    sg_tensor *Whh = leaves[4], *b = leaves[5];
    enum { N_LEAVES = N_STEP_LEAVES };
    double out[2][B * H], grad[2][N_LEAVES][B * G * C];
    for (int k = 0; k < 2; k++) {
        sg_graph *g = sg_graph_new();
        cr_assert(g);
        sg_tensor *gx = sg_add_scalar(g, gx0, 0.0);
        if (k == 1) /* the context's part added by the caller */
            gx = sg_add(g, gx, sg_view(g, sg_linear(g, ctx, Wc, NULL), 3,
                                       (int64_t[]){B, 1, G}));
        sg_tensor *s2 = k == 0 ? sg__bahdanau_gru_step(g, gx, 0, b, ctx, s, Wc, Whh)
                               : sg__bahdanau_gru_step(g, gx, 0, b, NULL, s, NULL, Whh);
        cr_assert(s2, "%s", sg_last_error());
        cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, s2, s2))), SG_OK, "%s",
                     sg_last_error());
        for (int64_t i = 0; i < B * H; i++)
            out[k][i] = sg_tensor_get(s2, i);
        for (int l = 0; l < N_LEAVES; l++) {
            for (int64_t i = 0; i < sg_tensor_numel(leaves[l]); i++)
                grad[k][l][i] = sg_tensor_grad_get(leaves[l], i);
            sg_tensor_zero_grad(leaves[l]);
        }
        sg_graph_free(g);
    }
    for (int64_t i = 0; i < B * H; i++)
        cr_assert_float_eq(out[1][i], out[0][i], 1e-12, "state %lld", (long long)i);
    for (int l = 0; l < N_LEAVES; l++)
        for (int64_t i = 0; i < sg_tensor_numel(leaves[l]); i++)
            cr_assert_float_eq(grad[1][l][i], grad[0][l][i], 1e-12,
                               "input %d's gradient %lld: %.12g vs %.12g", l, (long long)i,
                               grad[1][l][i], grad[0][l][i]);
    free_all(leaves);
}

/* Only one of ctx and W_c: an error that says so, no crash. */
Test(bahdanau_step, context_without_weight_is_an_error)
{
    sg_tensor *leaves[N_STEP_LEAVES];
    step_leaves(3, leaves);
    sg_tensor *gx0 = leaves[0], *ctx = leaves[1], *s = leaves[2], *Whh = leaves[4];
    sg_graph *g = sg_graph_new();
    sg_tensor *gx = sg_add_scalar(g, gx0, 0.0);
    cr_assert_null(sg__bahdanau_gru_step(g, gx, 0, NULL, ctx, s, NULL, Whh));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "W_c"), "%s", sg_last_error());
    sg_graph_free(g);
    free_all(leaves);
}

/* ---- Bahdanau beam search: the context mix against the per-step products ---- */

/* Beam search (width 4, 4 best) of a random Bahdanau model over `rows` sentences, made
 * with the context mix (the default) and again with the mix forbidden (a budget of 0
 * bytes: the per-step context products); both give the same hypotheses. With at least
 * as many rows as target words, the embedding part of the gates comes from per-word rows
 * (gx_word) instead of a product per step: both forms are covered. */
static void beam_with_and_without_mix(int64_t rows, int64_t tgt_vocab, sg_dtype dt, double tol)
{
    static const int64_t src3[3][5] = {{4, 5, 6, 7, 3}, {8, 3, 0, 0, 0}, {9, 6, 5, 3, 0}};
    static const int64_t len3[3] = {5, 2, 4};
    int64_t src[16][5], len[16];
    cr_assert_leq(rows, 16);
    for (int64_t i = 0; i < rows; i++) {
        memcpy(src[i], src3[i % 3], sizeof src[i]);
        len[i] = len3[i % 3];
    }
    sg_tensor *S = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){rows, 5}, src);
    sg_tensor *L = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){rows}, len);
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_BAHDANAU);
    c.src_vocab_size = 10, c.tgt_vocab_size = tgt_vocab;
    c.emb_dim = 4, c.hidden_dim = 5, c.attn_dim = 3;
    sg_model *m = sg_model_new(&c, dt, 7);
    cr_assert(S && L && m, "%s", sg_last_error());
    sg_params *p = sg_model_params(m);
    sg_rng r;
    sg_rng_seed(&r, 17);
    for (int i = 0; i < sg_params_count(p); i++) /* sharper than the init: few near-ties */
        sg_tensor_uniform_(sg_params_at(p, i)->value, &r, -1.5, 1.5);
    sg_decode_opts o = sg_decode_opts_default();
    o.beam = 4, o.n_best = 4;
    sg_decode_result res[2];
    size_t budget = sg__bahdanau_mix_max_bytes;
    for (int k = 0; k < 2; k++) {
        sg__bahdanau_mix_max_bytes = k == 0 ? budget : 0;
        cr_assert_eq(sg_model_decode(m, S, L, &o, &res[k]), SG_OK, "%s", sg_last_error());
    }
    sg__bahdanau_mix_max_bytes = budget;
    for (int64_t b = 0; b < rows; b++) {
        cr_assert_eq(sg_decode_count(&res[0], b), sg_decode_count(&res[1], b));
        for (int64_t j = 0; j < sg_decode_count(&res[0], b); j++) {
            const sg_hypothesis *x = &res[0].hyps[res[0].offset[b] + j];
            const sg_hypothesis *y = &res[1].hyps[res[1].offset[b] + j];
            cr_assert_eq(x->len, y->len, "sentence %lld, hypothesis %lld", (long long)b,
                         (long long)j);
            cr_assert_arr_eq(x->tokens, y->tokens, sizeof *x->tokens * (size_t)x->len);
            cr_assert_float_eq(x->score, y->score, tol, "sentence %lld, hypothesis %lld: %.12g "
                               "with the mix, %.12g without", (long long)b, (long long)j,
                               x->score, y->score);
        }
    }
    for (int k = 0; k < 2; k++)
        sg_decode_result_free(&res[k]);
    sg_model_free(m);
    sg_tensor_free(S);
    sg_tensor_free(L);
}

Test(bahdanau_beam, mix_matches_per_step_products_f64)
{
    beam_with_and_without_mix(3, 10, SG_F64, 1e-12);  /* embedding part by product */
    beam_with_and_without_mix(12, 10, SG_F64, 1e-12); /* by gx_word's rows */
}

Test(bahdanau_beam, mix_matches_per_step_products_f32)
{
    beam_with_and_without_mix(3, 10, SG_F32, 1e-5);
    beam_with_and_without_mix(12, 10, SG_F32, 1e-5);
}
