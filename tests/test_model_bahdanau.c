/* test_model_bahdanau.c - the bahdanau architecture: f64 gradients of a whole tiny
 * model (every parameter, through the bidirectional encoder with unequal lengths, the
 * additive attention and the decoder GRU), overfitting a small batch with Adam, and
 * attention weights. PyTorch parity is in test_models.c. */
#include <string.h>

#include "sg_model.h"
#include "test_util.h"

/* B = 3 sentences; src lengths 5, 2, 4 (</s> = 3 last); targets of lengths 4, 2, 3. */
static const int64_t SRC[3][5] = {{4, 5, 6, 7, 3}, {8, 3, 0, 0, 0}, {9, 6, 5, 3, 0}};
static const int64_t SRC_LEN[3] = {5, 2, 4};
static const int64_t TGT_IN[3][4] = {{2, 5, 7, 4}, {2, 9, 0, 0}, {2, 6, 8, 0}};
static const int64_t TGT_OUT[3][4] = {{5, 7, 4, 3}, {9, 3, 0, 0}, {6, 8, 3, 0}};

static void batch_make(sg_batch *b)
{
    memset(b, 0, sizeof *b);
    b->B = 3, b->S = 5, b->T = 4;
    b->src = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 5}, SRC);
    b->src_len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){3}, SRC_LEN);
    b->tgt_in = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 4}, TGT_IN);
    b->tgt_out = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 4}, TGT_OUT);
}

static sg_model_config tiny(int64_t E, int64_t H, int64_t A)
{
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_BAHDANAU);
    c.src_vocab_size = 10;
    c.tgt_vocab_size = 10;
    c.emb_dim = E;
    c.hidden_dim = H;
    c.attn_dim = A;
    return c;
}

typedef struct {
    sg_model *m;
    sg_batch b;
} fixture;

static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *inputs, void *user)
{
    (void)inputs; /* the inputs are the model's own parameters */
    fixture *fx = user;
    sg_rng_seed(sg_model_rng(fx->m), 42); /* the same dropout masks in every evaluation */
    return sg_model_loss(fx->m, g, &fx->b, 0.1, NULL);
}

/* dropout > 0: the masks (some drawn over the embeddings in place) enter the check */
static void gradcheck_bahdanau(double dropout)
{
    fixture fx;
    batch_make(&fx.b);
    sg_model_config c = tiny(3, 3, 2);
    c.dropout = dropout;
    fx.m = sg_model_new(&c, SG_F64, 7);
    sg_model_set_training(fx.m, true);
    cr_assert(fx.m, "%s", sg_last_error());
    sg_params *p = sg_model_params(fx.m);
    int n = sg_params_count(p);
    sg_tensor *in[32];
    cr_assert_leq(n, 32);
    sg_rng r;
    sg_rng_seed(&r, 11);
    for (int i = 0; i < n; i++) { /* larger than the init so every path matters */
        in[i] = sg_params_at(p, i)->value;
        sg_tensor_uniform_(in[i], &r, -0.9, 0.9);
    }
    sg_gradcheck_opts go = {.eps = 1e-6, .atol = 1e-8, .rtol = 1e-4};
    sg_gradcheck_result res;
    int rc = sg_gradcheck(loss_fn, &fx, n, in, &go, &res);
    cr_assert_eq(rc, SG_OK, "%s", rc == SG_ENUMERIC ? res.report : sg_last_error());
    cr_assert_gt(res.checked, 100);
    sg_model_free(fx.m);
    sg_batch_free(&fx.b);
}

Test(bahdanau, gradcheck_every_parameter) { gradcheck_bahdanau(0.0); }
Test(bahdanau, gradcheck_every_parameter_with_dropout) { gradcheck_bahdanau(0.3); }

Test(bahdanau, overfits_a_batch_and_decodes_it)
{
    sg_batch b;
    batch_make(&b);
    sg_model_config c = tiny(16, 32, 16);
    sg_model *m = sg_model_new(&c, SG_F32, 3);
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = 1e-2;
    sg_optim *o = sg_optim_new(sg_model_params(m), &oc);
    cr_assert(m && o, "%s", sg_last_error());
    sg_model_set_training(m, true);
    sg_graph *g = sg_graph_new();
    double last = 0;
    for (int k = 0; k < 300; k++) {
        sg_graph_reset(g);
        sg_params_zero_grad(sg_model_params(m));
        sg_tensor *loss = sg_model_loss(m, g, &b, 0.0, NULL);
        cr_assert(loss, "%s", sg_last_error());
        last = sg_tensor_get(loss, 0);
        cr_assert_eq(sg_backward(g, loss), SG_OK);
        cr_assert_eq(sg_optim_step(o, NULL), SG_OK);
    }
    cr_assert_lt(last, 0.02, "loss after 300 Adam steps: %g", last);
    sg_decode_opts d = sg_decode_opts_default();
    for (int beam = 0; beam <= 3; beam += 3) {
        d.beam = beam;
        sg_decode_result r;
        cr_assert_eq(sg_model_decode(m, b.src, b.src_len, &d, &r), SG_OK, "%s", sg_last_error());
        for (int64_t i = 0; i < 3; i++) {
            const sg_hypothesis *h = sg_decode_best(&r, i);
            int64_t want = i == 0 ? 3 : i == 1 ? 1 : 2;
            cr_assert_eq(h->len, want, "beam %d row %lld: length %lld", beam, (long long)i,
                         (long long)h->len);
            for (int64_t j = 0; j < want; j++)
                cr_assert_eq(h->tokens[j], TGT_OUT[i][j]);
        }
        sg_decode_result_free(&r);
    }
    sg_graph_free(g);
    sg_optim_free(o);
    sg_model_free(m);
    sg_batch_free(&b);
}

Test(bahdanau, attention_weights_are_a_distribution_over_real_positions)
{
    sg_batch b;
    batch_make(&b);
    sg_model_config c = tiny(4, 5, 3);
    sg_model *m = sg_model_new(&c, SG_F32, 1);
    sg_graph *g = sg_graph_new();
    sg_tensor *attn = NULL;
    cr_assert(sg_model_forward(m, g, &b, &attn), "%s", sg_last_error());
    cr_assert(attn && attn->ndim == 3 && attn->shape[0] == 3 && attn->shape[1] == 4 &&
              attn->shape[2] == 5);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t t = 0; t < 4; t++) {
            double sum = 0;
            for (int64_t j = 0; j < 5; j++) {
                double w = sg_tensor_get(attn, (i * 4 + t) * 5 + j);
                if (j >= SRC_LEN[i])
                    cr_assert_eq(w, 0.0, "weight on padding");
                sum += w;
            }
            cr_assert_float_eq(sum, 1.0, 1e-5);
        }
    sg_graph_free(g);
    sg_model_free(m);
    sg_batch_free(&b);
}

Test(bahdanau, rejects_ids_beyond_the_vocabulary)
{
    sg_batch b;
    batch_make(&b);
    ((int64_t *)b.src->data)[1] = 10; /* vocab is 10: ids 0..9 */
    sg_model_config c = tiny(4, 5, 3);
    sg_model *m = sg_model_new(&c, SG_F32, 1);
    sg_graph *g = sg_graph_new();
    cr_assert_null(sg_model_loss(m, g, &b, 0.0, NULL));
    cr_assert(strstr(sg_last_error(), "id 10"), "%s", sg_last_error());
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    sg_graph_free(g);
    sg_model_free(m);
    sg_batch_free(&b);
}
