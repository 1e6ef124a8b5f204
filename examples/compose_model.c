/*
 * compose_model - a new encoder-decoder composed from nn modules and core ops (not a
 * zoo model): GRU encoder, GRU decoder started from the encoder's last state, dot-
 * product attention over the encoder outputs, output layer on [decoder ; context].
 * It learns the built-in "reverse" task, is saved, reloaded into a fresh instance
 * (same loss to the last bit) and decodes a few sentences greedily. See README.md,
 * "Compose your own model". Options: --steps N (default 600), --save PATH.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "sg_model.h" /* the whole API: tensors, autograd, nn, data, checkpoints */

typedef struct tiny {
    sg_params *p;               /* owns every weight, named like a PyTorch state_dict */
    sg_embedding src_emb, tgt_emb;
    sg_gru enc, dec;
    sg_linear_layer out;        /* [H + H] -> V */
} tiny;

static tiny tiny_new(int64_t Vs, int64_t Vt, int64_t E, int64_t H, uint64_t seed)
{
    tiny m;
    sg_rng rng;
    sg_rng_seed(&rng, seed);
    CHECK(m.p = sg_params_new(SG_F32));
    sg_rnn_config rc = {.input_size = E, .hidden_size = H};
    CHECK(sg_embedding_init(&m.src_emb, m.p, "src_emb", Vs, E, SG_PAD, &rng) == SG_OK);
    CHECK(sg_embedding_init(&m.tgt_emb, m.p, "tgt_emb", Vt, E, SG_PAD, &rng) == SG_OK);
    CHECK(sg_gru_init(&m.enc, m.p, "encoder", &rc, &rng) == SG_OK);
    CHECK(sg_gru_init(&m.dec, m.p, "decoder", &rc, &rng) == SG_OK);
    CHECK(sg_linear_layer_init(&m.out, m.p, "out", 2 * H, Vt, true, &rng) == SG_OK);
    return m;
}

/* Dot-product attention and output: q [B,T,H], enc [B,S,H], mask [B,1,S] -> [B,T,Vt]. */
static sg_tensor *attend(sg_graph *g, const tiny *m, sg_tensor *q, sg_tensor *enc,
                         sg_tensor *mask)
{
    sg_tensor *scores = sg_matmul(g, q, sg_transpose(g, enc, 1, 2));   /* [B,T,S] */
    sg_tensor *w = sg_softmax(g, scores, -1, mask);                    /* pads get 0 */
    sg_tensor *ctx = sg_matmul(g, w, enc);                              /* [B,T,H] */
    return sg_linear_layer_forward(g, &m->out, sg_concat(g, 2, (sg_tensor *[]){q, ctx}, 2));
}

/* Encoder outputs [B,S,H] and last states *h [1,B,H] (rows stop at their length). */
static sg_tensor *encode(sg_graph *g, const tiny *m, const sg_batch *b, sg_tensor **h)
{
    sg_rnn_opts o = {.lengths = b->src_len};
    return sg_gru_forward(g, &m->enc, sg_embedding_forward(g, &m->src_emb, b->src), &o, h);
}

/* Teacher-forced mean token cross entropy of a batch (pads ignored). */
static sg_tensor *tiny_loss(sg_graph *g, const tiny *m, const sg_batch *b)
{
    sg_tensor *h, *enc = encode(g, m, b, &h);
    sg_rnn_opts o = {.h0 = h};
    sg_tensor *q = sg_gru_forward(g, &m->dec, sg_embedding_forward(g, &m->tgt_emb, b->tgt_in),
                                  &o, NULL);                            /* [B,T,H] */
    sg_tensor *logits = attend(g, m, q, enc, sg_unsqueeze(g, b->src_mask, 1));
    return sg_cross_entropy(g, logits, b->tgt_out);
}

/* Greedy decoding of b's sources, one GRU cell step at a time, into ids [B, L]. */
static void tiny_greedy(sg_graph *g, const tiny *m, const sg_batch *b, int64_t L, int64_t *ids)
{
    sg_graph_set_grad_enabled(g, false);
    sg_tensor *h, *enc = encode(g, m, b, &h), *mask = sg_unsqueeze(g, b->src_mask, 1);
    h = sg_select(g, h, 0, 0);                                          /* [B,H] */
    sg_tensor *prev = sg_full(g, SG_I64, 1, &b->B, SG_BOS);
    for (int64_t t = 0; t < L; t++) {
        h = sg_gru_cell_forward(g, sg_embedding_forward(g, &m->tgt_emb, prev), h,
                                &m->dec.w[0][0], false);
        sg_tensor *logits = attend(g, m, sg_unsqueeze(g, h, 1), enc, mask);  /* [B,1,V] */
        CHECK(prev = sg_argmax(g, sg_select(g, logits, 1, 0), -1, false));
        for (int64_t i = 0; i < b->B; i++)
            ids[i * L + t] = ((int64_t *)prev->data)[i];
    }
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    int steps = 600;
    const char *path = "/tmp/compose_model.h5";
    sgx_option opt[] = {SGX_INT("steps", &steps, "training steps"),
                        SGX_STRING("save", &path, "checkpoint to write"), SGX_END};
    sgx_options_parse_or_exit(opt, argc, argv, "compose_model [options]", NULL);

    /* data: "c a f" -> "f a c", word level, vocabularies from the training split */
    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    CHECK(sg_task_sequences(sp, SG_SEQ_REVERSE, 1, 4000, 100, 0, 3, 8, 12) == SG_OK);
    sg_corpus c;
    CHECK(sg_corpus_from_pairs(&c, sp, SG_LEVEL_WORD, 1, 100, NULL, NULL) == SG_OK);
    int64_t Vs = sg_vocab_size(c.src_vocab), Vt = sg_vocab_size(c.tgt_vocab);
    tiny m = tiny_new(Vs, Vt, 32, 64, 1);
    printf("tiny model: %lld parameters\n", (long long)sg_params_numel(m.p));

    /* training: Adam on shuffled length-sorted batches */
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = 3e-3;
    oc.clip_norm = 1.0;
    sg_optim *adam = sg_optim_new(m.p, &oc);
    sg_batches bs;
    CHECK(adam && sg_batches_length_sorted(&bs, &c.data[SG_SPLIT_TRAIN], 32, false) == SG_OK);
    sg_rng rng;
    sg_rng_seed(&rng, 2);
    sg_graph *g = sg_graph_new();
    for (int step = 0; step < steps; step++) {
        if (step % bs.n_batches == 0)
            CHECK(sg_batches_shuffle(&bs, &rng) == SG_OK);
        sg_batch b;
        CHECK(sg_batch_make_at(&b, &c.data[SG_SPLIT_TRAIN], &bs, step % bs.n_batches) == SG_OK);
        sg_graph_reset(g);
        sg_tensor *loss = tiny_loss(g, &m, &b);
        CHECK(loss && sg_backward(g, loss) == SG_OK && sg_optim_step(adam, NULL) == SG_OK);
        sg_params_zero_grad(m.p);
        if ((step + 1) % 100 == 0)
            printf("step %d: loss %.4f\n", step + 1, sg_tensor_get(loss, 0));
        sg_batch_free(&b);
    }

    /* save the weights with the vocabularies, reload them into a fresh instance */
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    CHECK(sg_attrs_set_str(&ck.model, "arch", "tiny-gru-dot") == SG_OK);
    const sg_vocab *v[2] = {c.src_vocab, c.tgt_vocab};
    for (int k = 0; k < 2; k++) {
        CHECK(sg_ckpt_vocab_set(&ck.vocab[k], sg_vocab_size(v[k]), sg_vocab_strings(v[k])) == 0);
        CHECK(sg_attrs_set_str(&ck.vocab[k].attrs, "level", "word") == SG_OK);
    }
    CHECK(sg_checkpoint_save(path, &ck, m.p, NULL, NULL, 0) == SG_OK);
    tiny m2 = tiny_new(Vs, Vt, 32, 64, 99);                 /* other random weights */
    CHECK(sg_checkpoint_load_params(path, m2.p) == SG_OK);

    const sg_dataset *valid = &c.data[SG_SPLIT_VALID];
    sg_batch b;
    CHECK(sg_batch_make(&b, valid, (int64_t[]){0, 1, 2, 3, 4}, 5) == SG_OK);
    sg_graph_reset(g);
    double l1 = sg_tensor_get(tiny_loss(g, &m, &b), 0);
    double l2 = sg_tensor_get(tiny_loss(g, &m2, &b), 0);
    printf("saved %s; validation loss %.9g before, %.9g after reloading: %s\n", path, l1, l2,
           l1 == l2 ? "identical" : "DIFFERENT");

    int64_t ids[5 * 20];
    sg_graph_reset(g);
    tiny_greedy(g, &m2, &b, 20, ids);
    for (int i = 0; i < 5; i++) {
        char *hyp;
        CHECK(sg_detokenize(c.tgt_vocab, SG_LEVEL_WORD, ids + i * 20, 20, &hyp) == SG_OK);
        printf("  %-18s -> %-18s %s\n", c.raw[SG_SPLIT_VALID].src[i], hyp,
               strcmp(hyp, c.raw[SG_SPLIT_VALID].tgt[i]) ? "" : "(correct)");
        free(hyp);
    }
    sg_batch_free(&b);
    sg_graph_free(g);
    sg_batches_free(&bs);
    sg_optim_free(adam);
    sg_checkpoint_clear(&ck);
    sg_params_free(m.p);
    sg_params_free(m2.p);
    sg_corpus_free(&c);
    return l1 == l2 ? 0 : 1;
}
