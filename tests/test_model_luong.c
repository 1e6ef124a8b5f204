/* test_model_luong.c - the luong architecture: f64 gradients of whole tiny models
 * (every parameter, through input feeding, local-p windows and both score kinds)
 * and overfitting a small batch with Adam. PyTorch parity is in test_models.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "sg_data.h"
#include "sg_model.h"
#include "sg_nn.h"
#include "test_util.h"

/* B = 3 sentences; src lengths 5, 3, 4 (</s> = 3 last); targets of lengths 4, 2, 3. */
#define B_ 3
#define S_ 5
#define T_ 4
static const int64_t SRC[B_][S_] = {{4, 5, 6, 7, 3}, {8, 4, 3, 0, 0}, {9, 6, 5, 3, 0}};
static const int64_t SRC_LEN[B_] = {5, 3, 4};
static const int64_t TGT_IN[B_][T_] = {{2, 5, 7, 4}, {2, 9, 0, 0}, {2, 6, 8, 0}};
static const int64_t TGT_OUT[B_][T_] = {{5, 7, 4, 3}, {9, 3, 0, 0}, {6, 8, 3, 0}};

typedef struct fixture {
    sg_batch b;
    sg_model *m;
} fixture;

static sg_tensor *i64(const int64_t *v, int ndim, int64_t d0, int64_t d1)
{
    int64_t shape[2] = {d0, d1};
    sg_tensor *t = sg_tensor_new(SG_I64, ndim, shape);
    cr_assert(t);
    memcpy(t->data, v, sizeof(int64_t) * (size_t)sg_tensor_numel(t));
    return t;
}

static void batch_make(sg_batch *b)
{
    memset(b, 0, sizeof *b);
    b->B = B_, b->S = S_, b->T = T_;
    b->src = i64(&SRC[0][0], 2, B_, S_);
    b->src_len = i64(SRC_LEN, 1, B_, 0);
    b->tgt_in = i64(&TGT_IN[0][0], 2, B_, T_);
    b->tgt_out = i64(&TGT_OUT[0][0], 2, B_, T_);
}

static sg_model_config tiny(const char *attn_type, const char *score, int64_t feed, int64_t E,
                            int64_t H, int64_t A, int64_t D)
{
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_LUONG);
    c.src_vocab_size = 10;
    c.tgt_vocab_size = 10;
    c.emb_dim = E;
    c.hidden_dim = H;
    c.attn_dim = A;
    c.num_layers = 2;
    c.local_window = D;
    c.input_feed = feed;
    c.dropout = 0.0;
    strcpy(c.attn_type, attn_type);
    strcpy(c.score, score);
    return c;
}

static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *inputs, void *user)
{
    (void)inputs; /* the inputs are the model's own parameters */
    fixture *fx = user;
    sg_rng_seed(sg_model_rng(fx->m), 42); /* the same dropout masks in every evaluation */
    return sg_model_loss(fx->m, g, &fx->b, 0.1, NULL);
}

static void gradcheck_config(const sg_model_config *c)
{
    fixture fx;
    batch_make(&fx.b);
    fx.m = sg_model_new(c, SG_F64, 7);
    cr_assert(fx.m, "%s", sg_last_error());
    sg_model_set_training(fx.m, true); /* the training path; loss_fn fixes the masks */
    sg_params *p = sg_model_params(fx.m);
    int n = sg_params_count(p);
    sg_tensor *in[64];
    cr_assert_leq(n, 64);
    /* larger weights than the U(-0.1, 0.1) init, so that every path (e.g. layer 0's
     * gates seen through two layers and attention) has gradients well above atol */
    sg_rng r;
    sg_rng_seed(&r, 11);
    for (int i = 0; i < n; i++) {
        in[i] = sg_params_at(p, i)->value;
        sg_tensor_uniform_(in[i], &r, -0.9, 0.9);
    }
    sg_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-8, .rtol = 1e-4};
    sg_gradcheck_result res;
    int rc = sg_gradcheck(loss_fn, &fx, n, in, &go, &res);
    cr_assert_eq(rc, SG_OK, "%s", rc == SG_ENUMERIC ? res.report : sg_last_error());
    cr_assert_gt(res.checked, 0);
    sg_model_free(fx.m);
    sg_batch_free(&fx.b);
}

Test(luong, gradcheck_global_general_input_feed)
{
    sg_model_config c = tiny("global", "general", 1, 3, 3, 2, 1);
    gradcheck_config(&c);
}

Test(luong, gradcheck_local_p_concat_input_feed)
{
    sg_model_config c = tiny("local-p", "concat", 1, 3, 3, 2, 1);
    gradcheck_config(&c);
}

Test(luong, gradcheck_global_general_input_feed_with_dropout)
{
    sg_model_config c = tiny("global", "general", 1, 3, 3, 3, 1);
    c.dropout = 0.3; /* masks between layers, after the combine and over the embeddings */
    gradcheck_config(&c);
}

Test(luong, gradcheck_local_m_dot_without_feed)
{
    sg_model_config c = tiny("local-m", "dot", 0, 2, 3, 2, 1);
    gradcheck_config(&c);
}

/* Adam on one batch drives the loss near zero, and greedy decoding then reproduces
 * the targets (the decoder's step-wise path agrees with the teacher-forced one). */
static void overfit(const char *attn_type, const char *score, int64_t feed)
{
    sg_model_config c = tiny(attn_type, score, feed, 16, 32, 16, 2);
    sg_batch b;
    batch_make(&b);
    sg_model *m = sg_model_new(&c, SG_F32, 3);
    cr_assert(m, "%s", sg_last_error());
    sg_model_set_training(m, true);
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = 1e-2;
    sg_optim *o = sg_optim_new(sg_model_params(m), &oc);
    cr_assert(o, "%s", sg_last_error());
    sg_graph *g = sg_graph_new();
    double first = -1, last = -1;
    for (int k = 0; k < 300; k++) {
        sg_graph_reset(g);
        sg_params_zero_grad(sg_model_params(m));
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
        cr_assert(loss, "%s", sg_last_error());
        last = sg_tensor_get(loss, 0);
        if (first < 0)
            first = last;
        cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
        cr_assert_eq(sg_optim_step(o, NULL), SG_OK, "%s", sg_last_error());
    }
    cr_assert_lt(last, 0.02, "%s/%s feed %lld: loss %g after 300 steps (first %g)", attn_type,
                 score, (long long)feed, last, first);
    for (int beam = 0; beam <= 3; beam += 3) { /* greedy, then beam 3 (row selection) */
        sg_decode_opts dopt = sg_decode_opts_default();
        dopt.beam = beam;
        sg_decode_result r;
        cr_assert_eq(sg_model_decode(m, b.src, b.src_len, &dopt, &r), SG_OK, "%s", sg_last_error());
        for (int64_t i = 0; i < B_; i++) {
            const sg_hypothesis *h = sg_decode_best(&r, i);
            int64_t n = 0;
            while (n < T_ && TGT_OUT[i][n] != 3)
                n++;
            cr_assert_eq(h->len, n, "row %lld: decoded %lld tokens, target has %lld", (long long)i,
                         (long long)h->len, (long long)n);
            for (int64_t j = 0; j < n; j++)
                cr_assert_eq(h->tokens[j], TGT_OUT[i][j], "row %lld token %lld", (long long)i,
                             (long long)j);
        }
        sg_decode_result_free(&r);
    }
    sg_graph_free(g);
    sg_optim_free(o);
    sg_model_free(m);
    sg_batch_free(&b);
}

Test(luong, overfits_a_batch_global_general_feed) { overfit("global", "general", 1); }
Test(luong, overfits_a_batch_local_p_concat_feed) { overfit("local-p", "concat", 1); }
Test(luong, overfits_a_batch_local_m_dot_nofeed) { overfit("local-m", "dot", 0); }

/* A bad choice string is rejected by the config check or the builder, naming it. */
Test(luong, rejects_unknown_score)
{
    sg_model_config c = tiny("global", "cosine", 1, 3, 3, 2, 1);
    cr_assert_null(sg_model_new(&c, SG_F32, 1));
    cr_assert(strstr(sg_last_error(), "score"), "message: %s", sg_last_error());
}

/* The forward returns attention weights [B, T, S]: zero at padding, rows summing to 1
 * (global), and in local-p only inside the window and at most 1 (Gaussian, no
 * renormalisation). */
Test(luong, attention_weights_respect_padding_and_windows)
{
    const char *types[2] = {"global", "local-p"};
    for (int k = 0; k < 2; k++) {
        sg_model_config c = tiny(types[k], "general", 1, 4, 5, 3, 1);
        sg_batch b;
        batch_make(&b);
        sg_model *m = sg_model_new(&c, SG_F64, 5);
        cr_assert(m, "%s", sg_last_error());
        sg_graph *g = sg_graph_new();
        sg_tensor *attn = NULL;
        sg_tensor *logits = sg_model_forward(m, g, &b, &attn);
        cr_assert(logits && attn, "%s", sg_last_error());
        cr_assert(attn->ndim == 3 && attn->shape[0] == B_ && attn->shape[1] == T_ &&
                  attn->shape[2] == S_);
        for (int64_t i = 0; i < B_; i++)
            for (int64_t t = 0; t < T_; t++) {
                double s = 0;
                int64_t nz = 0;
                for (int64_t j = 0; j < S_; j++) {
                    double a = sg_tensor_get(attn, (i * T_ + t) * S_ + j);
                    cr_assert(a >= 0 && (j < SRC_LEN[i] || a == 0),
                              "%s: alpha[%lld,%lld,%lld] = %g", types[k], (long long)i,
                              (long long)t, (long long)j, a);
                    s += a;
                    nz += a > 0;
                }
                if (k == 0)
                    cr_assert_float_eq(s, 1.0, 1e-12, "global row sum %g", s);
                else
                    cr_assert(s <= 1.0 + 1e-12 && nz >= 1 && nz <= 3, "local-p: sum %g over %lld",
                              s, (long long)nz);
            }
        sg_graph_free(g);
        sg_model_free(m);
        sg_batch_free(&b);
    }
}

/* Dropout in training changes the loss (masks drawn at every place), evaluation mode
 * is deterministic, and the training loss stays finite with gradients. */
Test(luong, dropout_only_in_training)
{
    sg_model_config c = tiny("local-m", "concat", 1, 4, 6, 3, 2);
    c.dropout = 0.3;
    sg_batch b;
    batch_make(&b);
    sg_model *m = sg_model_new(&c, SG_F32, 9);
    cr_assert(m, "%s", sg_last_error());
    sg_graph *g = sg_graph_new();
    double ev[2], tr[2];
    for (int r = 0; r < 2; r++) {
        sg_model_set_training(m, false);
        sg_graph_reset(g);
        ev[r] = sg_tensor_get(sg_model_loss(m, g, &b, 0.0, NULL), 0);
        sg_model_set_training(m, true);
        sg_graph_reset(g);
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
        cr_assert(loss, "%s", sg_last_error());
        tr[r] = sg_tensor_get(loss, 0);
        cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
        cr_assert(isfinite(tr[r]));
    }
    cr_assert_eq(ev[0], ev[1], "evaluation must be deterministic");
    cr_assert_neq(tr[0], tr[1], "training losses with fresh masks should differ");
    cr_assert_neq(tr[0], ev[0]);
    sg_graph_free(g);
    sg_model_free(m);
    sg_batch_free(&b);
}
