/* test_model_seq2seq.c - the seq2seq architecture beyond the golden fixtures: f64
 * gradchecks of tiny instances, overfitting a small batch, reverse_source semantics
 * (padding untouched, </s> stays last), step-wise decoding agreeing with the fused
 * teacher-forced forward, and build errors. */
#include <string.h>

#include "sg_model.h"
#include "test_util.h"

/* A heap SG_I64 tensor [rows, cols] (cols 0: 1-D [rows]) holding v. */
static sg_tensor *ids_new(int64_t rows, int64_t cols, const int64_t *v)
{
    int64_t shape[2] = {rows, cols};
    sg_tensor *t = sg_tensor_new(SG_I64, cols ? 2 : 1, shape);
    cr_assert(t, "%s", sg_last_error());
    memcpy(t->data, v, sizeof(int64_t) * (size_t)(rows * (cols ? cols : 1)));
    return t;
}

/* A batch of 3 sentences with source lengths 5, 2, 1 (</s> = 3 last, pads 0) and
 * target lengths 4, 2, 3. */
static sg_batch tiny_batch(void)
{
    static const int64_t src[3 * 5] = {4, 5, 6, 7, 3, /**/ 8, 3, 0, 0, 0, /**/ 3, 0, 0, 0, 0};
    static const int64_t len[3] = {5, 2, 1};
    static const int64_t tin[3 * 4] = {2, 4, 5, 6, /**/ 2, 7, 0, 0, /**/ 2, 5, 4, 0};
    static const int64_t tout[3 * 4] = {4, 5, 6, 3, /**/ 7, 3, 0, 0, /**/ 5, 4, 3, 0};
    sg_batch b = {0};
    b.src = ids_new(3, 5, src);
    b.src_len = ids_new(3, 0, len);
    b.tgt_in = ids_new(3, 4, tin);
    b.tgt_out = ids_new(3, 4, tout);
    b.B = 3;
    b.S = 5;
    b.T = 4;
    return b;
}

static sg_model_config tiny_config(const char *cell, int64_t layers, int64_t reverse, int64_t feed)
{
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_SEQ2SEQ);
    c.src_vocab_size = 9;
    c.tgt_vocab_size = 8;
    c.emb_dim = 3;
    c.hidden_dim = 4;
    c.num_layers = layers;
    strcpy(c.cell, cell);
    c.reverse_source = reverse;
    c.feed_context = feed;
    return c;
}

/* Redraws every parameter U(-a, a), wider than MODELS.md 3.5 so the gates are lively. */
static void params_uniform(sg_model *m, double a, uint64_t seed)
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    sg_params_uniform_(sg_model_params(m), &r, -a, a);
}

static sg_model *model_new(const sg_model_config *c, sg_dtype dt, uint64_t seed)
{
    sg_model *m = sg_model_new(c, dt, seed);
    cr_assert(m, "sg_model_new: %s", sg_last_error());
    return m;
}

/* ---- gradients ------------------------------------------------------------------- */

typedef struct {
    sg_model *m;
    sg_batch *b;
} loss_ctx;

static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *inputs, void *user)
{
    (void)inputs; /* the parameters themselves, reached through the model */
    loss_ctx *c = user;
    sg_rng_seed(sg_model_rng(c->m), 42); /* the same dropout masks in every evaluation */
    return sg_model_loss(c->m, g, c->b, 0.1, NULL);
}

/* Every parameter of a tiny model against central differences of the loss; dropout > 0
 * in training mode puts its masks (the embeddings' and the generator inputs', drawn in
 * place) into the check. */
static void gradcheck_all_ex(const char *cell, int64_t layers, int64_t feed, double dropout)
{
    sg_model_config c = tiny_config(cell, layers, 1, feed);
    c.dropout = dropout;
    sg_model *m = model_new(&c, SG_F64, 7);
    if (dropout > 0)
        sg_model_set_training(m, true);
    sg_params *p = sg_model_params(m);
    params_uniform(m, 0.5, 1);
    sg_batch b = tiny_batch();
    int n = sg_params_count(p);
    sg_tensor *in[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++)
        in[i] = sg_params_at(p, i)->value;
    loss_ctx lc = {m, &b};
    TU_GRADCHECK(loss_fn, &lc, n, in);
    sg_batch_free(&b);
    sg_model_free(m);
}

static void gradcheck_all(const char *cell, int64_t layers, int64_t feed)
{
    gradcheck_all_ex(cell, layers, feed, 0.0);
}

Test(seq2seq, gradcheck_two_layer_lstm_reversed) { gradcheck_all("lstm", 2, 0); }
Test(seq2seq, gradcheck_gru_feed_context_with_dropout) { gradcheck_all_ex("gru", 2, 1, 0.3); }
Test(seq2seq, gradcheck_two_layer_gru_feed_context) { gradcheck_all("gru", 2, 1); }
Test(seq2seq, gradcheck_one_layer_lstm_feed_context) { gradcheck_all("lstm", 1, 1); }

/* ---- training --------------------------------------------------------------------- */

static double train(sg_model *m, sg_batch *b, int steps, double lr)
{
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = lr;
    sg_params *p = sg_model_params(m);
    sg_optim *opt = sg_optim_new(p, &oc);
    cr_assert(opt, "%s", sg_last_error());
    sg_graph *g = sg_graph_new();
    double last = 0;
    for (int k = 0; k < steps; k++) {
        sg_graph_reset(g);
        sg_params_zero_grad(p);
        sg_tensor *loss = sg_model_loss(m, g, b, 0.0, NULL);
        cr_assert(loss, "step %d: %s", k, sg_last_error());
        last = sg_tensor_get(loss, 0);
        cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
        cr_assert_eq(sg_optim_step(opt, NULL), SG_OK, "%s", sg_last_error());
    }
    sg_graph_free(g);
    sg_optim_free(opt);
    return last;
}

/* Greedy decoding reproduces every target sentence of the batch. */
static void assert_decodes_targets(sg_model *m, sg_batch *b)
{
    sg_decode_result r;
    cr_assert_eq(sg_model_decode(m, b->src, b->src_len, NULL, &r), SG_OK, "%s", sg_last_error());
    const int64_t *y = b->tgt_out->data;
    for (int64_t i = 0; i < b->B; i++) {
        const sg_hypothesis *h = sg_decode_best(&r, i);
        int64_t k = 0;
        while (y[i * b->T + k] != SG_TOK_EOS)
            k++;
        cr_assert(h->eos, "row %lld did not end with </s>", (long long)i);
        cr_assert_eq(h->len, k, "row %lld: %lld tokens, target has %lld", (long long)i,
                     (long long)h->len, (long long)k);
        for (int64_t j = 0; j < k; j++)
            cr_assert_eq(h->tokens[j], y[i * b->T + j], "row %lld token %lld", (long long)i,
                         (long long)j);
    }
    sg_decode_result_free(&r);
}

static void overfit(const char *cell, int64_t feed, double dropout)
{
    sg_model_config c = tiny_config(cell, 2, 1, feed);
    c.emb_dim = 8;
    c.hidden_dim = 16;
    c.dropout = dropout;
    sg_model *m = model_new(&c, SG_F32, 3);
    sg_batch b = tiny_batch();
    sg_model_set_training(m, true);
    double loss = train(m, &b, 300, 1e-2);
    sg_model_set_training(m, false);
    if (dropout == 0)
        cr_assert_lt(loss, 0.02, "%s feed %lld: loss %.4g after 300 Adam steps", cell,
                     (long long)feed, loss);
    assert_decodes_targets(m, &b);
    sg_batch_free(&b);
    sg_model_free(m);
}

Test(seq2seq, lstm_overfits_a_small_batch) { overfit("lstm", 0, 0.0); }
Test(seq2seq, gru_feed_context_overfits_a_small_batch) { overfit("gru", 1, 0.0); }
/* Dropout in every listed place (embeddings, between layers, before the generator)
 * still trains, and evaluation mode turns it off. */
Test(seq2seq, trains_with_dropout) { overfit("lstm", 1, 0.1); }

Test(seq2seq, dropout_only_in_training_mode)
{
    sg_model_config c = tiny_config("lstm", 2, 1, 1);
    c.dropout = 0.5;
    sg_model *m = model_new(&c, SG_F64, 5);
    sg_batch b = tiny_batch();
    sg_graph *g = sg_graph_new();
    sg_tensor *e1 = sg_model_forward(m, g, &b, NULL), *e2 = sg_model_forward(m, g, &b, NULL);
    sg_model_set_training(m, true);
    sg_tensor *t1 = sg_model_forward(m, g, &b, NULL);
    cr_assert(e1 && e2 && t1, "%s", sg_last_error());
    tu_assert_close(e1, e2, 0, 0, "evaluation logits");
    bool differ = false;
    for (int64_t i = 0; i < sg_tensor_numel(e1) && !differ; i++)
        differ = sg_tensor_get(e1, i) != sg_tensor_get(t1, i);
    cr_assert(differ, "training mode with dropout 0.5 gave the evaluation logits");
    sg_graph_free(g);
    sg_batch_free(&b);
    sg_model_free(m);
}

/* ---- reverse_source --------------------------------------------------------------- */

/* Logits of m on batch b with src replaced by the [3, 5] ids src. */
static sg_tensor *logits_with_src(sg_model *m, sg_graph *g, const sg_batch *b, const int64_t *src)
{
    sg_batch c = *b;
    c.src = sg_from_buffer(g, SG_I64, 2, b->src->shape, src);
    cr_assert(c.src, "%s", sg_last_error());
    sg_tensor *y = sg_model_forward(m, g, &c, NULL);
    cr_assert(y, "%s", sg_last_error());
    return y;
}

static bool all_equal(const sg_tensor *a, const sg_tensor *b)
{
    for (int64_t i = 0; i < sg_tensor_numel(a); i++)
        if (sg_tensor_get(a, i) != sg_tensor_get(b, i))
            return false;
    return true;
}

/* reverse_source = 1 on x equals reverse_source = 0 on x_{n-2} .. x_0, x_{n-1}: the
 * tokens before </s> reversed, </s> last, padding where it was. */
Test(seq2seq, reverse_source_keeps_eos_last_and_padding_in_place)
{
    for (int feed = 0; feed < 2; feed++) {
        sg_model_config c1 = tiny_config(feed ? "gru" : "lstm", 2, 1, feed);
        sg_model_config c0 = c1;
        c0.reverse_source = 0;
        sg_model *rev = model_new(&c1, SG_F64, 11), *plain = model_new(&c0, SG_F64, 11);
        params_uniform(rev, 1.0, 3); /* same shapes: the same values in both */
        params_uniform(plain, 1.0, 3);
        sg_batch b = tiny_batch();
        sg_graph *g = sg_graph_new();
        static const int64_t manual[15] = {7, 6, 5, 4, 3, /**/ 8, 3, 0, 0, 0, /**/ 3, 0, 0, 0, 0};
        /* what a whole-row reversal would give: </s> first */
        static const int64_t wrong[15] = {3, 7, 6, 5, 4, /**/ 3, 8, 0, 0, 0, /**/ 3, 0, 0, 0, 0};
        sg_tensor *y = sg_model_forward(rev, g, &b, NULL);
        cr_assert(y, "%s", sg_last_error());
        sg_tensor *want = logits_with_src(plain, g, &b, manual);
        tu_assert_close(y, want, 1e-12, 1e-12, "reversed vs manually reversed source");
        cr_assert(!all_equal(y, logits_with_src(plain, g, &b, wrong)),
                  "moving </s> to the front did not change the logits");
        cr_assert(!all_equal(y, logits_with_src(plain, g, &b, b.src->data)),
                  "reverse_source had no effect");
        /* ids at padding positions (not <pad> here) are never read, reversed or not */
        int64_t noisy[15];
        memcpy(noisy, b.src->data, sizeof noisy);
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = ((int64_t *)b.src_len->data)[i]; j < 5; j++)
                noisy[i * 5 + j] = 1 + (i + j) % 8;
        tu_assert_close(y, logits_with_src(rev, g, &b, noisy), 0, 0, "ids at padding positions");
        sg_graph_free(g);
        sg_batch_free(&b);
        sg_model_free(rev);
        sg_model_free(plain);
    }
}

/* ---- decoding ---------------------------------------------------------------------- */

/* The step-wise decoder (single-step cells, index_select'ed state) agrees with the
 * fused teacher-forced forward: a greedy hypothesis' log-probability equals its
 * score under sg_model_score, and beam search's best hypothesis too. */
static void decode_matches_forward(const char *cell, int64_t feed)
{
    sg_model_config c = tiny_config(cell, 2, 1, feed);
    sg_model *m = model_new(&c, SG_F64, 21);
    params_uniform(m, 1.0, 2);
    sg_batch b = tiny_batch();
    for (int w = 0; w < 2; w++) {
        sg_decode_opts o = sg_decode_opts_default();
        o.beam = w == 0 ? 0 : 3;
        sg_decode_result r;
        cr_assert_eq(sg_model_decode(m, b.src, b.src_len, &o, &r), SG_OK, "%s", sg_last_error());
        for (int64_t i = 0; i < b.B; i++) {
            const sg_hypothesis *h = sg_decode_best(&r, i);
            int64_t T = h->n;
            int64_t tin[64], tout[64];
            cr_assert_leq(T, 64);
            tin[0] = SG_TOK_BOS;
            for (int64_t j = 0; j < T; j++) {
                tout[j] = j < h->len ? h->tokens[j] : SG_TOK_EOS;
                if (j + 1 < T)
                    tin[j + 1] = tout[j];
            }
            sg_batch one = {.B = 1, .S = 5, .T = T};
            one.src = ids_new(1, 5, (int64_t *)b.src->data + i * 5);
            one.src_len = ids_new(1, 0, (int64_t *)b.src_len->data + i);
            one.tgt_in = ids_new(1, T, tin);
            one.tgt_out = ids_new(1, T, tout);
            double s;
            cr_assert_eq(sg_model_score(m, &one, &s), SG_OK, "%s", sg_last_error());
            cr_assert_float_eq(s, h->logp, 1e-9, "%s row %lld: score %.12g, decoder logp %.12g",
                               w ? "beam" : "greedy", (long long)i, s, h->logp);
            sg_batch_free(&one);
        }
        sg_decode_result_free(&r);
    }
    sg_batch_free(&b);
    sg_model_free(m);
}

Test(seq2seq, lstm_decoder_steps_match_teacher_forced_forward)
{
    decode_matches_forward("lstm", 0);
}
Test(seq2seq, gru_feed_decoder_steps_match_teacher_forced_forward)
{
    decode_matches_forward("gru", 1);
}

/* ---- errors ------------------------------------------------------------------------ */

Test(seq2seq, too_many_layers_is_an_error)
{
    sg_model_config c = tiny_config("lstm", 17, 1, 0);
    cr_assert_null(sg_model_new(&c, SG_F32, 1));
    cr_assert(strstr(sg_last_error(), "num_layers"), "message: %s", sg_last_error());
}

Test(seq2seq, target_id_beyond_vocabulary_is_an_error)
{
    sg_model_config c = tiny_config("gru", 1, 1, 1);
    sg_model *m = model_new(&c, SG_F32, 1);
    sg_batch b = tiny_batch();
    ((int64_t *)b.tgt_in->data)[1] = 8;
    sg_graph *g = sg_graph_new();
    cr_assert_null(sg_model_loss(m, g, &b, 0.0, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "tgt_in"), "message: %s", sg_last_error());
    sg_graph_free(g);
    sg_batch_free(&b);
    sg_model_free(m);
}
