/* test_model_transformer.c - the transformer architecture beyond the golden fixtures:
 * f64 gradient checks of tiny post-LN and pre-LN (tied) instances, overfitting a small
 * batch with Adam, and the incremental (K/V cached) decoder agreeing with the
 * teacher-forced forward through greedy and beam reorders. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_model.h"
#include "sg_optim.h"
#include "test_util.h"

enum { B = 3, S = 5, T = 4 };

/* Rows of lengths 5, 2, 3 (last token </s> = 3); targets padded on the right. */
static const int64_t src_ids[B * S] = {4, 5, 6, 4, 3, 6, 3, 0, 0, 0, 5, 4, 3, 0, 0};
static const int64_t src_lens[B] = {5, 2, 3};
static const int64_t tgt_in_ids[B * T] = {2, 4, 5, 6, 2, 7, 0, 0, 2, 5, 4, 0};
static const int64_t tgt_out_ids[B * T] = {4, 5, 6, 3, 7, 3, 0, 0, 5, 4, 3, 0};

static sg_batch make_batch(void)
{
    sg_batch b = {.B = B, .S = S, .T = T};
    b.src = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){B, S}, src_ids);
    b.src_len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){B}, src_lens);
    b.tgt_in = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){B, T}, tgt_in_ids);
    b.tgt_out = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){B, T}, tgt_out_ids);
    cr_assert(b.src && b.src_len && b.tgt_in && b.tgt_out);
    return b;
}

static void free_batch(sg_batch *b)
{
    sg_tensor_free(b->src);
    sg_tensor_free(b->src_len);
    sg_tensor_free(b->tgt_in);
    sg_tensor_free(b->tgt_out);
}

static sg_model_config tiny(bool pre, bool tied, int64_t d, int64_t heads, int64_t ff)
{
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_TRANSFORMER);
    c.src_vocab_size = 7;
    c.tgt_vocab_size = 8;
    c.d_model = d;
    c.nhead = heads;
    c.dim_feedforward = ff;
    c.num_encoder_layers = 1;
    c.num_decoder_layers = 2;
    c.dropout = 0;
    c.norm_first = pre;
    c.tie_embeddings = tied;
    return c;
}

typedef struct {
    sg_model *m;
    sg_batch *b;
} gc_ctx;

static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    (void)in; /* the inputs are the model's own parameters */
    gc_ctx *c = user;
    sg_rng_seed(sg_model_rng(c->m), 42); /* the same dropout masks in every evaluation */
    return sg_model_loss(c->m, g, c->b, 0.1, NULL);
}

static void gradcheck_model_ex(bool pre, bool tied, double dropout)
{
    sg_model_config c = tiny(pre, tied, 4, 2, 6);
    c.dropout = dropout;
    sg_model *m = sg_model_new(&c, SG_F64, 7);
    sg_model_set_training(m, true);
    cr_assert(m, "%s", sg_last_error());
    sg_params *p = sg_model_params(m);
    /* break the symmetry of the freshly initialised LayerNorms and biases */
    sg_rng r;
    sg_rng_seed(&r, 99);
    sg_params_uniform_(p, &r, -0.6, 0.6);
    sg_tensor *inputs[256];
    int n = 0;
    for (int i = 0; i < sg_params_count(p); i++)
        if (sg_params_at(p, i)->alias_of < 0)
            inputs[n++] = sg_params_at(p, i)->value;
    sg_batch b = make_batch();
    gc_ctx ctx = {m, &b};
    TU_GRADCHECK(loss_fn, &ctx, n, inputs);
    free_batch(&b);
    sg_model_free(m);
}

static void gradcheck_model(bool pre, bool tied) { gradcheck_model_ex(pre, tied, 0.0); }

Test(transformer, gradcheck_post_ln_all_parameters) { gradcheck_model(false, false); }
/* dropout > 0 (attention, residual and, in place, the embeddings' masks) */
Test(transformer, gradcheck_post_ln_with_dropout) { gradcheck_model_ex(false, false, 0.2); }
Test(transformer, gradcheck_pre_ln_tied_all_parameters) { gradcheck_model(true, true); }

/* State_dict order; the tied generator.weight is an alias placed before generator.bias. */
Test(transformer, parameter_names_and_tied_alias)
{
    sg_model_config c = tiny(false, true, 4, 2, 6);
    sg_model *m = sg_model_new(&c, SG_F32, 1);
    cr_assert(m, "%s", sg_last_error());
    sg_params *p = sg_model_params(m);
    int n = sg_params_count(p);
    /* 2 embeddings + 1 enc layer (12) + enc norm (2) + 2 dec layers (2 x 18) + dec norm (2)
     * + generator (2) */
    cr_assert_eq(n, 2 + 12 + 2 + 36 + 2 + 2);
    const char *want[] = {"src_embed.weight", "tgt_embed.weight",
                          "transformer.encoder.layers.0.self_attn.in_proj_weight"};
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(sg_params_at(p, i)->name, want[i]);
    cr_assert_str_eq(sg_params_at(p, 14)->name, "transformer.encoder.norm.weight");
    cr_assert_str_eq(sg_params_at(p, 16 + 4)->name,
                     "transformer.decoder.layers.0.multihead_attn.in_proj_weight");
    cr_assert_str_eq(sg_params_at(p, n - 4)->name, "transformer.decoder.norm.weight");
    cr_assert_str_eq(sg_params_at(p, n - 2)->name, "generator.weight");
    cr_assert_eq(sg_params_at(p, n - 2)->alias_of, 1);
    cr_assert_eq(sg_params_at(p, n - 2)->value, sg_params_at(p, 1)->value);
    cr_assert_str_eq(sg_params_at(p, n - 1)->name, "generator.bias");
    /* the embedding's pad row starts at zero and the generator still sends it gradient */
    sg_tensor *emb = sg_params_at(p, 1)->value;
    for (int64_t j = 0; j < 4; j++)
        cr_assert_eq(sg_tensor_get(emb, j), 0.0);
    sg_batch b = make_batch();
    sg_graph *g = sg_graph_new();
    sg_params_zero_grad(p);
    sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
    cr_assert(loss && sg_backward(g, loss) == SG_OK, "%s", sg_last_error());
    double pad = 0;
    for (int64_t j = 0; j < 4; j++)
        pad += fabs(sg_tensor_grad_get(emb, j));
    cr_assert_gt(pad, 0.0, "tied pad row gets the generator's gradient");
    sg_graph_free(g);
    free_batch(&b);
    sg_model_free(m);
}

/* Untied: the lookup never sends gradient to the pad rows. */
Test(transformer, untied_pad_rows_get_no_gradient)
{
    sg_model_config c = tiny(false, false, 4, 2, 6);
    sg_model *m = sg_model_new(&c, SG_F32, 1);
    cr_assert(m, "%s", sg_last_error());
    sg_params *p = sg_model_params(m);
    sg_batch b = make_batch();
    sg_graph *g = sg_graph_new();
    sg_params_zero_grad(p);
    sg_tensor *loss = sg_model_loss(m, g, &b, 0.1, NULL);
    cr_assert(loss && sg_backward(g, loss) == SG_OK, "%s", sg_last_error());
    for (int k = 0; k < 2; k++)
        for (int64_t j = 0; j < 4; j++)
            cr_assert_eq(sg_tensor_grad_get(sg_params_at(p, k)->value, j), 0.0);
    sg_graph_free(g);
    free_batch(&b);
    sg_model_free(m);
}

static double train(bool pre, bool tied, int steps, sg_model **keep)
{
    sg_model_config c = tiny(pre, tied, 16, 2, 32);
    c.dropout = 0.1;
    sg_model *m = sg_model_new(&c, SG_F32, 3);
    cr_assert(m, "%s", sg_last_error());
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = 1e-2;
    oc.clip_norm = 1.0;
    sg_optim *opt = sg_optim_new(sg_model_params(m), &oc);
    cr_assert(opt, "%s", sg_last_error());
    sg_batch b = make_batch();
    sg_graph *g = sg_graph_new();
    sg_model_set_training(m, true);
    for (int k = 0; k < steps; k++) {
        sg_params_zero_grad(sg_model_params(m));
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
        cr_assert(loss && sg_backward(g, loss) == SG_OK, "step %d: %s", k, sg_last_error());
        cr_assert_eq(sg_optim_step(opt, NULL), SG_OK, "%s", sg_last_error());
        sg_graph_reset(g);
    }
    sg_model_set_training(m, false);
    sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
    cr_assert(loss, "%s", sg_last_error());
    double v = sg_tensor_get(loss, 0);
    /* the trained model reproduces the targets by greedy decoding */
    if (steps >= 100) {
        sg_decode_result r;
        cr_assert_eq(sg_model_decode(m, b.src, b.src_len, NULL, &r), SG_OK, "%s", sg_last_error());
        for (int64_t i = 0; i < B; i++) {
            const sg_hypothesis *h = sg_decode_best(&r, i);
            int64_t n = 0;
            while (n < T && tgt_out_ids[i * T + n] != 3)
                n++;
            cr_assert_eq(h->len, n, "row %lld decoded %lld tokens, want %lld", (long long)i,
                         (long long)h->len, (long long)n);
            for (int64_t j = 0; j < n; j++)
                cr_assert_eq(h->tokens[j], tgt_out_ids[i * T + j]);
        }
        sg_decode_result_free(&r);
    }
    sg_graph_free(g);
    free_batch(&b);
    sg_optim_free(opt);
    if (keep)
        *keep = m;
    else
        sg_model_free(m);
    return v;
}

Test(transformer, overfits_a_small_batch_post_ln)
{
    double loss = train(false, false, 200, NULL);
    cr_assert_lt(loss, 0.05, "loss after 200 Adam steps: %g", loss);
}

Test(transformer, overfits_a_small_batch_pre_ln_tied)
{
    double loss = train(true, true, 200, NULL);
    cr_assert_lt(loss, 0.05, "loss after 200 Adam steps: %g", loss);
}

/* Every beam hypothesis' log-probability (accumulated by the cached incremental decoder
 * through row reorders) equals the teacher-forced score of the same tokens. */
static void check_decoder_matches_forward(bool pre, bool tied, int64_t beam, int steps)
{
    /* partly trained (its beams hold varied prefixes whose scores depend on them) or
     * untrained with large weights (decodes run to max_len, past the initial cache size) */
    sg_model *m = NULL;
    train(pre, tied, steps, &m);
    if (steps == 0) {
        sg_rng r0;
        sg_rng_seed(&r0, 5);
        sg_params_uniform_(sg_model_params(m), &r0, -1.5, 1.5);
        sg_tensor_set(sg_params_find(sg_model_params(m), "generator.bias"), 3, -30.0); /* no </s> */
    }
    sg_batch b = make_batch();
    sg_decode_opts o = sg_decode_opts_default();
    o.beam = beam;
    o.n_best = beam > 0 ? beam : 1;
    sg_decode_result r;
    cr_assert_eq(sg_model_decode(m, b.src, b.src_len, &o, &r), SG_OK, "%s", sg_last_error());
    int checked = 0;
    int64_t longest = 0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t k = 0; k < sg_decode_count(&r, i); k++) {
            const sg_hypothesis *h = &r.hyps[r.offset[i] + k];
            int64_t n = h->n, L = n > 0 ? n : 1;
            int64_t tin[64], tout[64];
            cr_assert_leq(L, 64);
            for (int64_t j = 0; j < L; j++) {
                tin[j] = j == 0 ? 2 : h->tokens[j - 1];
                tout[j] = j < h->len ? h->tokens[j] : 3;
            }
            sg_batch one = {.B = 1, .S = S, .T = L};
            one.src = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){1, S}, src_ids + i * S);
            one.src_len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){1}, src_lens + i);
            one.tgt_in = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){1, L}, tin);
            one.tgt_out = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){1, L}, tout);
            double score;
            cr_assert_eq(sg_model_score(m, &one, &score), SG_OK, "%s", sg_last_error());
            cr_assert_float_eq(h->logp, score, 2e-5 * (1 + fabs(score)),
                               "sentence %lld hyp %lld (%lld tokens): decoder %.7g, forward %.7g",
                               (long long)i, (long long)k, (long long)n, h->logp, score);
            checked++;
            longest = n > longest ? n : longest;
            free_batch(&one);
        }
    cr_assert_geq(checked, B);
    if (steps == 0) /* past the caches' initial 16 positions */
        cr_assert_gt(longest, 16, "longest hypothesis %lld", (long long)longest);
    sg_decode_result_free(&r);
    free_batch(&b);
    sg_model_free(m);
}

Test(transformer, greedy_decoder_matches_teacher_forced_scores)
{
    check_decoder_matches_forward(false, false, 0, 25);
    check_decoder_matches_forward(true, false, 0, 0);
}

Test(transformer, beam_decoder_caches_follow_reorders)
{
    check_decoder_matches_forward(false, false, 4, 25);
    check_decoder_matches_forward(true, true, 3, 25);
    check_decoder_matches_forward(false, true, 3, 0);
}

/* Dropout only in training mode; evaluation is deterministic. */
Test(transformer, dropout_only_in_training)
{
    sg_model_config c = tiny(false, false, 8, 2, 12);
    c.dropout = 0.3;
    sg_model *m = sg_model_new(&c, SG_F32, 5);
    cr_assert(m, "%s", sg_last_error());
    sg_batch b = make_batch();
    double e1, e2, t1, t2;
    sg_graph *g = sg_graph_new();
    double *out[4] = {&e1, &e2, &t1, &t2};
    for (int k = 0; k < 4; k++) {
        sg_model_set_training(m, k >= 2);
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
        cr_assert(loss, "%s", sg_last_error());
        *out[k] = sg_tensor_get(loss, 0);
        sg_graph_reset(g);
    }
    cr_assert_eq(e1, e2);
    cr_assert_neq(t1, t2);
    cr_assert_neq(t1, e1);
    sg_graph_free(g);
    free_batch(&b);
    sg_model_free(m);
}

/* Attention weights: last decoder layer's cross-attention averaged over heads. */
Test(transformer, forward_returns_cross_attention_weights)
{
    sg_model_config c = tiny(false, false, 8, 2, 12);
    sg_model *m = sg_model_new(&c, SG_F32, 5);
    cr_assert(m, "%s", sg_last_error());
    sg_batch b = make_batch();
    sg_graph *g = sg_graph_new();
    sg_tensor *attn = NULL;
    sg_tensor *logits = sg_model_forward(m, g, &b, &attn);
    cr_assert(logits && attn, "%s", sg_last_error());
    cr_assert_eq(attn->ndim, 3);
    cr_assert(attn->shape[0] == B && attn->shape[1] == T && attn->shape[2] == S);
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            double s = 0;
            for (int64_t j = 0; j < S; j++) {
                double a = sg_tensor_get(attn, (i * T + t) * S + j);
                if (j >= src_lens[i])
                    cr_assert_eq(a, 0.0, "padded key gets weight");
                s += a;
            }
            cr_assert_float_eq(s, 1.0, 1e-5);
        }
    sg_graph_free(g);
    free_batch(&b);
    sg_model_free(m);
}

Test(transformer, bad_config_is_rejected_with_a_message)
{
    sg_model_config c = tiny(false, false, 6, 4, 12); /* 6 not divisible by 4 heads */
    cr_assert_null(sg_model_new(&c, SG_F32, 1));
    cr_assert(strstr(sg_last_error(), "nhead") || strstr(sg_last_error(), "d_model"), "%s",
              sg_last_error());
}

/* A tied model survives a checkpoint round trip: same logits, generator.weight is again
 * an alias of tgt_embed.weight. */
Test(transformer, tied_checkpoint_round_trip)
{
    sg_model_config c = tiny(true, true, 8, 2, 12);
    sg_model *m = sg_model_new(&c, SG_F32, 21);
    cr_assert(m, "%s", sg_last_error());
    char path[] = "/tmp/sg_trf_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    cr_assert_eq(sg_model_save(path, m, &ck, NULL), SG_OK, "%s", sg_last_error());
    sg_checkpoint_clear(&ck);
    sg_model *m2 = sg_model_load(path, SG_F32, NULL);
    unlink(path);
    cr_assert(m2, "%s", sg_last_error());
    sg_params *p2 = sg_model_params(m2);
    int n = sg_params_count(p2);
    cr_assert_str_eq(sg_params_at(p2, n - 2)->name, "generator.weight");
    cr_assert_eq(sg_params_at(p2, n - 2)->value, sg_params_find(p2, "tgt_embed.weight"));
    sg_batch b = make_batch();
    sg_graph *g = sg_graph_new();
    sg_tensor *l1 = sg_model_forward(m, g, &b, NULL), *l2 = sg_model_forward(m2, g, &b, NULL);
    tu_assert_close(l2, l1, 0, 0, "logits after reload");
    sg_graph_free(g);
    free_batch(&b);
    sg_model_free(m2);
    sg_model_free(m);
}
