/* test_models.c - every model variant against the PyTorch reference of MODELS.md:
 * tests/fixtures/models/<variant>.h5 (tools/gen_fixtures_models.sh) is a reference
 * checkpoint plus /golden inputs, logits, loss, gradients and greedy/beam decodes. */
#include <string.h>

#include "fixture.h"
#include "sg_model.h"
#include "test_util.h"

typedef struct {
    sg_model *m;
    sg_batch b;
    hid_t f;
} golden;

static void golden_open(golden *gd, const char *variant)
{
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "models/%s.h5", variant);
    const char *dir = getenv("SG_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", rel);
    gd->m = sg_model_load(path, SG_F32, NULL);
    cr_assert(gd->m, "loading %s: %s", path, sg_last_error());
    gd->f = fx_open(rel);
    memset(&gd->b, 0, sizeof gd->b);
    gd->b.src = fx_read(gd->f, "/golden/src", SG_I64);
    gd->b.src_len = fx_read(gd->f, "/golden/src_len", SG_I64);
    gd->b.tgt_in = fx_read(gd->f, "/golden/tgt_in", SG_I64);
    gd->b.tgt_out = fx_read(gd->f, "/golden/tgt_out", SG_I64);
    gd->b.B = gd->b.src->shape[0];
    gd->b.S = gd->b.src->shape[1];
    gd->b.T = gd->b.tgt_in->shape[1];
}

static void golden_close(golden *gd)
{
    sg_tensor_free(gd->b.src);
    sg_tensor_free(gd->b.src_len);
    sg_tensor_free(gd->b.tgt_in);
    sg_tensor_free(gd->b.tgt_out);
    H5Fclose(gd->f);
    sg_model_free(gd->m);
}

/* Every parameter gradient against the reference's; how = what ran. */
static void check_grads(golden *gd, const char *variant, const char *how)
{
    sg_params *p = sg_model_params(gd->m);
    int checked = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        char path[256] = "/golden/grad/", what[256];
        size_t k = strlen(path);
        for (const char *c = e->name; *c && k < sizeof path - 1; c++)
            path[k++] = *c == '.' ? '/' : *c;
        path[k] = 0;
        if (e->alias_of >= 0 || H5Lexists(gd->f, path, H5P_DEFAULT) <= 0)
            continue;
        sg_tensor *gref = fx_read(gd->f, path, SG_F32);
        sg_tensor got = *e->value;
        got.data = e->value->grad;
        snprintf(what, sizeof what, "%s %s (%s)", variant, e->name, how);
        tu_assert_close(&got, gref, 1e-5, 1e-3, what);
        sg_tensor_free(gref);
        checked++;
    }
    cr_assert_gt(checked, 5, "only %d gradients compared", checked);
}

/* Logits, loss (label smoothing 0.1) and every parameter gradient, by sg_model_loss then
 * sg_backward and by sg_model_loss_backward. */
static void check_forward_backward(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    sg_graph *g = sg_graph_new();
    sg_tensor *logits = sg_model_forward(gd.m, g, &gd.b, NULL);
    cr_assert(logits, "%s forward: %s", variant, sg_last_error());
    sg_tensor *ref = fx_read(gd.f, "/golden/logits", SG_F32);
    tu_assert_close(logits, ref, 2e-5, 1e-4, "logits");
    sg_tensor_free(ref);
    sg_graph_reset(g);

    sg_params *p = sg_model_params(gd.m);
    sg_params_zero_grad(p);
    sg_tensor *loss = sg_model_loss(gd.m, g, &gd.b, 0.1, NULL);
    cr_assert(loss, "%s loss: %s", variant, sg_last_error());
    double want = fx_scalar(gd.f, "/golden/loss");
    cr_assert_float_eq(sg_tensor_get(loss, 0), want, 1e-5 + 1e-5 * fabs(want), "loss %.8g vs %.8g",
                       sg_tensor_get(loss, 0), want);
    /* backward's scratch and gradients come from the pool, never the arena: the arena
     * holds the forward alone, and memory freed during backward is reused within it */
    size_t fwd_bytes = sg_arena_used(sg_graph_arena(g));
    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
    cr_assert_eq(sg_arena_used(sg_graph_arena(g)), fwd_bytes, "%s: backward took %zu arena bytes",
                 variant, sg_arena_used(sg_graph_arena(g)) - fwd_bytes);
    check_grads(&gd, variant, "sg_model_loss, sg_backward");

    sg_graph_reset(g);
    sg_params_zero_grad(p);
    int64_t n_tok = 0;
    loss = sg_model_loss_backward(gd.m, g, &gd.b, 0.1, &n_tok);
    cr_assert(loss, "%s loss_backward: %s", variant, sg_last_error());
    cr_assert_float_eq(sg_tensor_get(loss, 0), want, 1e-5 + 1e-5 * fabs(want), "loss %.8g vs %.8g",
                       sg_tensor_get(loss, 0), want);
    cr_assert_gt(n_tok, 0);
    check_grads(&gd, variant, "sg_model_loss_backward");
    sg_graph_free(g);
    golden_close(&gd);
}

/* Greedy and beam (k = 3, alpha 0.7, avg) decodes of src (row b being golden row
 * b mod the golden batch's size) equal the reference's. */
static void check_decodes_of(golden *gd, const char *variant, sg_tensor *src, sg_tensor *src_len)
{
    const char *names[2] = {"greedy", "beam"};
    for (int w = 0; w < 2; w++) {
        sg_decode_opts o = sg_decode_opts_default();
        o.beam = w == 0 ? 0 : 3;
        o.alpha = 0.7;
        sg_decode_result r;
        cr_assert_eq(sg_model_decode(gd->m, src, src_len, &o, &r), SG_OK, "%s %s: %s",
                     variant, names[w], sg_last_error());
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "/golden/%s", names[w]);
        snprintf(p2, sizeof p2, "/golden/%s_len", names[w]);
        sg_tensor *toks = fx_read(gd->f, p1, SG_I64), *lens = fx_read(gd->f, p2, SG_I64);
        for (int64_t row = 0; row < src->shape[0]; row++) {
            const sg_hypothesis *h = sg_decode_best(&r, row);
            int64_t b = row % gd->b.B, want = ((int64_t *)lens->data)[b];
            cr_assert_eq(h->len, want, "%s %s row %lld: length %lld, reference %lld", variant,
                         names[w], (long long)b, (long long)h->len, (long long)want);
            for (int64_t j = 0; j < want; j++)
                cr_assert_eq(h->tokens[j], ((int64_t *)toks->data)[b * toks->shape[1] + j],
                             "%s %s row %lld token %lld", variant, names[w], (long long)b,
                             (long long)j);
        }
        sg_tensor_free(toks);
        sg_tensor_free(lens);
        sg_decode_result_free(&r);
    }
}

static void check_decodes(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    check_decodes_of(&gd, variant, gd.b.src, gd.b.src_len);
    golden_close(&gd);
}

/* A batch of B source rows drawn from the golden batch (row i is golden row i * step mod
 * its size), with their lengths; the caller frees both. */
static void repeat_golden_rows(const golden *gd, int64_t B, int64_t step, sg_tensor **src,
                               sg_tensor **len)
{
    int64_t S = gd->b.S;
    *src = sg_tensor_new(SG_I64, 2, (int64_t[]){B, S});
    *len = sg_tensor_new(SG_I64, 1, &B);
    cr_assert(*src && *len);
    for (int64_t i = 0; i < B; i++) {
        int64_t r = (i * step) % gd->b.B;
        memcpy((int64_t *)(*src)->data + i * S, (int64_t *)gd->b.src->data + r * S,
               (size_t)S * sizeof(int64_t));
        ((int64_t *)(*len)->data)[i] = ((int64_t *)gd->b.src_len->data)[r];
    }
}

/* Whether two decodes of one batch agree: the same tokens, and log-probabilities and
 * scores within tol relative (0: bitwise). */
static void assert_same_decodes(const char *variant, const char *what, const sg_decode_result *x0,
                                const sg_decode_result *y0, double tol)
{
    cr_assert_eq(x0->batch, y0->batch, "%s %s", variant, what);
    for (int64_t b = 0; b < x0->batch; b++) {
        cr_assert_eq(sg_decode_count(x0, b), sg_decode_count(y0, b), "%s %s row %lld", variant,
                     what, (long long)b);
        for (int64_t k = 0; k < sg_decode_count(x0, b); k++) {
            const sg_hypothesis *x = &x0->hyps[x0->offset[b] + k];
            const sg_hypothesis *y = &y0->hyps[y0->offset[b] + k];
            cr_assert(x->len == y->len && x->n == y->n && x->eos == y->eos &&
                          fabs(x->logp - y->logp) <= tol * (1 + fabs(x->logp)) &&
                          fabs(x->score - y->score) <= tol * (1 + fabs(x->score)),
                      "%s %s row %lld hypothesis %lld: length %lld / %lld, log-prob %.9g / %.9g",
                      variant, what, (long long)b, (long long)k, (long long)x->len,
                      (long long)y->len, x->logp, y->logp);
            cr_assert(!memcmp(x->tokens, y->tokens, (size_t)x->len * sizeof *x->tokens),
                      "%s %s row %lld hypothesis %lld: tokens differ", variant, what,
                      (long long)b, (long long)k);
        }
    }
}

/* At 2 threads sg_model_decode decodes a batch of 32 or more sentences in pieces side by
 * side (2 of 37 or 50 rows, 4 of 67), taken by whichever thread is free: every sentence must
 * come out as from the whole batch at 1 thread (the same tokens; log-probabilities to
 * f32 rounding, as products of other shapes round differently), and two runs at 2
 * threads must agree bitwise. */
static void check_split_decode(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    int before = sg_get_num_threads();
    static const int64_t sizes[] = {37, 50, 67}; /* pieces of 18 and 19; 25; 16 and 17 */
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int64_t B = sizes[i];
        sg_tensor *src, *len;
        repeat_golden_rows(&gd, B, 7, &src, &len);
        for (int beam = 0; beam <= 3; beam += 3) {
            sg_decode_opts o = sg_decode_opts_default();
            o.beam = beam;
            o.alpha = 0.7;
            sg_decode_result r[3];
            for (int run = 0; run < 3; run++) { /* 1 thread, then 2 threads twice */
                cr_assert_eq(sg_set_num_threads(run == 0 ? 1 : 2), SG_OK);
                cr_assert_eq(sg_model_decode(gd.m, src, len, &o, &r[run]), SG_OK, "%s: %s",
                             variant, sg_last_error());
            }
            char what[64];
            snprintf(what, sizeof what, "%lld rows, beam %d", (long long)B, beam);
            assert_same_decodes(variant, what, &r[0], &r[1], 1e-5);
            assert_same_decodes(variant, what, &r[1], &r[2], 0);
            for (int run = 0; run < 3; run++)
                sg_decode_result_free(&r[run]);
        }
        sg_tensor_free(src);
        sg_tensor_free(len);
    }
    sg_set_num_threads(before);
    golden_close(&gd);
}

/* The golden batch's rows repeated into a batch of B (row i is golden row i * step mod
 * its size), targets too; free with batch_free. */
static sg_batch repeat_golden_batch(const golden *gd, int64_t B, int64_t step)
{
    sg_batch b = {.B = B, .S = gd->b.S, .T = gd->b.T};
    repeat_golden_rows(gd, B, step, &b.src, &b.src_len);
    b.tgt_in = sg_tensor_new(SG_I64, 2, (int64_t[]){B, b.T});
    b.tgt_out = sg_tensor_new(SG_I64, 2, (int64_t[]){B, b.T});
    cr_assert(b.tgt_in && b.tgt_out);
    for (int64_t i = 0; i < B; i++) {
        int64_t r = (i * step) % gd->b.B;
        size_t row = (size_t)b.T * sizeof(int64_t);
        memcpy((int64_t *)b.tgt_in->data + i * b.T, (int64_t *)gd->b.tgt_in->data + r * b.T, row);
        memcpy((int64_t *)b.tgt_out->data + i * b.T, (int64_t *)gd->b.tgt_out->data + r * b.T,
               row);
    }
    return b;
}

/* The parameters' gradients, concatenated (aliases once), as a malloc'd f64 array. */
static double *grads_of(sg_model *m, int64_t *n)
{
    sg_params *p = sg_model_params(m);
    double *out = malloc((size_t)sg_params_numel(p) * sizeof *out);
    cr_assert(out);
    int64_t k = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        const float *gr = e->value->grad;
        for (int64_t j = 0; j < sg_tensor_numel(e->value); j++)
            out[k++] = gr ? gr[j] : 0.0;
    }
    *n = k;
    return out;
}

/* The golden batch with every row repeated 8 times: the mean loss and its gradients, and
 * every row's greedy and beam decodes, are the reference's. With 32 rows every
 * vocabulary is smaller than the positions and the target one than the rows, so the
 * input projections of the embeddings are made once per word (sg_rnn_forward_ids, the
 * Bahdanau decoder's gx in training and decoding), where the golden batch itself makes
 * the target side's per position. */
static void check_repeated_rows(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    sg_batch b = repeat_golden_batch(&gd, 8 * gd.b.B, 1);
    sg_graph *g = sg_graph_new();
    sg_params_zero_grad(sg_model_params(gd.m));
    sg_tensor *loss = sg_model_loss_backward(gd.m, g, &b, 0.1, NULL);
    cr_assert(loss, "%s: %s", variant, sg_last_error());
    double want = fx_scalar(gd.f, "/golden/loss");
    cr_assert_float_eq(sg_tensor_get(loss, 0), want, 1e-5 + 1e-5 * fabs(want), "loss %.8g vs %.8g",
                       sg_tensor_get(loss, 0), want);
    check_grads(&gd, variant, "rows repeated 8 times");
    int before = sg_get_num_threads();
    cr_assert_eq(sg_set_num_threads(1), SG_OK); /* the whole batch (2 threads split it) */
    check_decodes_of(&gd, variant, b.src, b.src_len);
    sg_set_num_threads(before);
    sg_graph_free(g);
    sg_batch_free(&b);
    golden_close(&gd);
}

/* At 2 threads sg_model_loss_backward runs a small model's batch of 32 or more sentences
 * as two halves side by side (train_halves.c): the loss, the token count and every
 * gradient must be the whole batch's at 1 thread (to f32 rounding), gradients must add
 * to those already there, and two runs at 2 threads must agree bitwise. A bad id is
 * reported with its row in the whole batch. */
static void check_split_training(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    sg_batch b = repeat_golden_batch(&gd, 37, 3);
    int before = sg_get_num_threads();
    sg_graph *g = sg_graph_new();
    sg_params *p = sg_model_params(gd.m);
    double loss[3];
    int64_t ntok[3], n = 0;
    double *grad[3];
    for (int run = 0; run < 3; run++) { /* 1 thread, then 2 threads twice */
        cr_assert_eq(sg_set_num_threads(run == 0 ? 1 : 2), SG_OK);
        sg_params_zero_grad(p);
        sg_graph_reset(g);
        sg_tensor *l = sg_model_loss_backward(gd.m, g, &b, 0.1, &ntok[run]);
        cr_assert(l, "%s run %d: %s", variant, run, sg_last_error());
        loss[run] = sg_tensor_get(l, 0);
        grad[run] = grads_of(gd.m, &n);
    }
    cr_assert_eq(ntok[1], ntok[0]);
    cr_assert(fabs(loss[1] - loss[0]) <= 1e-5 * (1 + fabs(loss[0])), "%s: loss %.9g at 2 "
              "threads, %.9g at 1", variant, loss[1], loss[0]);
    cr_assert(loss[2] == loss[1], "%s: two runs at 2 threads: loss %.9g / %.9g", variant,
              loss[1], loss[2]);
    for (int64_t k = 0; k < n; k++) {
        cr_assert(fabs(grad[1][k] - grad[0][k]) <= 1e-6 + 1e-4 * fabs(grad[0][k]),
                  "%s: gradient %lld is %.9g at 2 threads, %.9g at 1", variant, (long long)k,
                  grad[1][k], grad[0][k]);
        cr_assert(grad[2][k] == grad[1][k], "%s: gradient %lld differs between two runs at 2 "
                  "threads", variant, (long long)k);
    }
    /* accumulation: a second step without zeroing doubles every gradient */
    sg_graph_reset(g);
    cr_assert(sg_model_loss_backward(gd.m, g, &b, 0.1, NULL), "%s", sg_last_error());
    double *twice = grads_of(gd.m, &n);
    for (int64_t k = 0; k < n; k++)
        cr_assert(fabs(twice[k] - 2 * grad[1][k]) <= 1e-6 + 1e-5 * fabs(grad[1][k]),
                  "%s: gradient %lld after two steps %.9g, one step %.9g", variant,
                  (long long)k, twice[k], grad[1][k]);
    /* an id outside the vocabulary in the second half: named by its row in the batch */
    int64_t *src = b.src->data, keep = src[30 * b.S];
    src[30 * b.S] = 1 << 30;
    sg_graph_reset(g);
    cr_assert_null(sg_model_loss_backward(gd.m, g, &b, 0.1, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "row 30"), "%s", sg_last_error());
    src[30 * b.S] = keep;
    free(twice);
    for (int run = 0; run < 3; run++)
        free(grad[run]);
    sg_set_num_threads(before);
    sg_graph_free(g);
    sg_batch_free(&b);
    golden_close(&gd);
}

/* Bitwise the same hypotheses (the same products run with or without kept copies). */
static void assert_same_results(const sg_decode_result *x, const sg_decode_result *y,
                                const char *what)
{
    cr_assert_eq(x->batch, y->batch, "%s", what);
    for (int64_t b = 0; b <= x->batch; b++)
        cr_assert_eq(x->offset[b], y->offset[b], "%s: sentence %lld", what, (long long)b);
    for (int64_t i = 0; i < x->offset[x->batch]; i++) {
        const sg_hypothesis *h = &x->hyps[i], *k = &y->hyps[i];
        cr_assert(h->len == k->len && h->logp == k->logp && h->score == k->score &&
                      !memcmp(h->tokens, k->tokens, (size_t)h->len * sizeof *h->tokens),
                  "%s: hypothesis %lld differs (length %lld / %lld, log-prob %.9g / %.9g)",
                  what, (long long)i, (long long)h->len, (long long)k->len, h->logp, k->logp);
    }
}

/* sg_decode_opts.weights: W^T copies kept across calls (and shared by the halves of a
 * split decode at 2 threads) decode exactly as copies made per call; after the weights
 * change and the graph is reset, the results follow the new weights; the graph may not
 * be one of the step graphs. */
static void check_weights_graph(const char *variant)
{
    golden gd;
    golden_open(&gd, variant);
    int64_t B = 37;
    sg_tensor *src, *len;
    repeat_golden_rows(&gd, B, 5, &src, &len);
    int before = sg_get_num_threads();
    sg_graph *wg = sg_graph_new();
    sg_params *p = sg_model_params(gd.m);
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* new weights: halve every parameter, then forget the copies */
            for (int i = 0; i < sg_params_count(p); i++) {
                sg_tensor *t = sg_params_at(p, i)->value;
                for (int64_t j = 0; j < sg_tensor_numel(t); j++)
                    sg_tensor_set(t, j, 0.5 * sg_tensor_get(t, j));
            }
            sg_graph_reset(wg);
        }
        for (int t = 1; t <= 2; t++)
            for (int beam = 0; beam <= 3; beam += 3) {
                cr_assert_eq(sg_set_num_threads(t), SG_OK);
                sg_decode_opts plain = sg_decode_opts_default(), kept = plain;
                plain.beam = kept.beam = beam;
                kept.weights = wg;
                sg_decode_result r[3];
                cr_assert_eq(sg_model_decode(gd.m, src, len, &plain, &r[0]), SG_OK, "%s: %s",
                             variant, sg_last_error());
                for (int k = 1; k < 3; k++) /* the second call reuses the first's copies */
                    cr_assert_eq(sg_model_decode(gd.m, src, len, &kept, &r[k]), SG_OK, "%s: %s",
                                 variant, sg_last_error());
                char what[128];
                snprintf(what, sizeof what, "%s round %d, %d threads, beam %d", variant, round,
                         t, beam);
                assert_same_results(&r[1], &r[0], what);
                assert_same_results(&r[2], &r[0], what);
                for (int k = 0; k < 3; k++)
                    sg_decode_result_free(&r[k]);
            }
    }
    sg_decode_opts bad = sg_decode_opts_default();
    sg_graph *work[2] = {sg_graph_new(), sg_graph_new()};
    bad.work[0] = work[0], bad.work[1] = work[1], bad.weights = work[1];
    sg_decode_result r;
    cr_assert_eq(sg_model_decode(gd.m, src, len, &bad, &r), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "opts->weights"), "%s", sg_last_error());
    sg_graph_free(work[0]);
    sg_graph_free(work[1]);
    sg_graph_free(wg);
    sg_set_num_threads(before);
    sg_tensor_free(src);
    sg_tensor_free(len);
    golden_close(&gd);
}

#define GOLDEN_TESTS(id, variant)                                                           \
    Test(id, matches_torch_logits_loss_and_gradients) { check_forward_backward(variant); } \
    Test(id, greedy_and_beam_match_torch) { check_decodes(variant); }                      \
    Test(id, split_decode_matches_whole_batch) { check_split_decode(variant); }            \
    Test(id, weights_graph_decodes_as_per_call_copies) { check_weights_graph(variant); }    \
    Test(id, split_training_step_matches_whole_batch) { check_split_training(variant); }    \
    Test(id, repeated_rows_match_torch) { check_repeated_rows(variant); }

GOLDEN_TESTS(bahdanau, "bahdanau")
GOLDEN_TESTS(seq2seq_lstm, "seq2seq-lstm")
GOLDEN_TESTS(seq2seq_gru_feed, "seq2seq-gru-feed")
GOLDEN_TESTS(luong_general, "luong-general")
GOLDEN_TESTS(luong_dot_localm, "luong-dot-localm")
GOLDEN_TESTS(luong_concat_localp, "luong-concat-localp")
GOLDEN_TESTS(luong_general_nofeed, "luong-general-nofeed")
GOLDEN_TESTS(transformer_post, "transformer-post")
GOLDEN_TESTS(transformer_pre_tied, "transformer-pre-tied")

/* sg_model_tune_malloc keeps freed malloc blocks for small models only: after it, a 2 MB
 * block comes from malloc's heap for dates-bahdanau's size (0.4M parameters); for
 * enfr-bahdanau's (14M) it does nothing, which shows where the malloc is a sanitizer's
 * (SG_OK instead of SG_ESTATE; glibc's own threshold moves as blocks are freed). */
static void tune(const char *config, int want_rc)
{
    const sg_named_config *nc = sg_named_config_find(config);
    cr_assert(nc);
    sg_model_config mc = nc->model;
    mc.src_vocab_size = mc.tgt_vocab_size = strcmp(config, "dates-bahdanau") ? 8000 : 50;
    sg_model *m = sg_model_new(&mc, SG_F32, 1);
    cr_assert(m, "%s", sg_last_error());
    cr_assert_eq(sg_model_tune_malloc(m), want_rc, "%s: %s", config, sg_last_error());
    sg_model_free(m);
}

Test(model, tune_malloc_only_for_small_models)
{
    cr_assert_eq(sg_model_tune_malloc(NULL), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "NULL"), "%s", sg_last_error());
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
    /* first, before any large block is freed and moves glibc's threshold */
    tune("dates-bahdanau", SG_OK);
    cr_assert(!tu_malloc_maps((size_t)2 << 20), "the 2 MB block was mapped on its own");
#else
    tune("dates-bahdanau", SG_ESTATE); /* a sanitizer's malloc: nothing changed */
#endif
    tune("enfr-bahdanau", SG_OK); /* nothing to do, whatever the malloc */
}
