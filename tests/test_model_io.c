/* test_model_io.c - model checkpoints: exact round trips for every architecture, and
 * resuming training continues bit for bit like the run that was never interrupted. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_model.h"
#include "test_util.h"

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/sg_model_io_XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(model_io, .init = make_dir, .fini = remove_dir);

/* A tiny config of each architecture (vocab 11 -> 9). */
static sg_model_config tiny(sg_arch arch)
{
    sg_model_config c;
    sg_model_config_defaults(&c, arch);
    c.src_vocab_size = 11;
    c.tgt_vocab_size = 9;
    c.emb_dim = 6;
    c.hidden_dim = 5;
    c.attn_dim = 4;
    c.num_layers = 2;
    c.local_window = 2;
    c.d_model = 8;
    c.nhead = 2;
    c.num_encoder_layers = 2;
    c.num_decoder_layers = 2;
    c.dim_feedforward = 12;
    c.dropout = 0.1;
    return c;
}

/* A fixed batch of 3 pairs with unequal lengths. */
static void tiny_batch(sg_batch *b)
{
    static const int64_t src[3][5] = {{4, 5, 6, 7, 3}, {8, 3, 0, 0, 0}, {9, 10, 4, 3, 0}};
    static const int64_t len[3] = {5, 2, 4};
    static const int64_t tin[3][4] = {{2, 4, 5, 6}, {2, 7, 0, 0}, {2, 8, 4, 0}};
    static const int64_t tout[3][4] = {{4, 5, 6, 3}, {7, 3, 0, 0}, {8, 4, 3, 0}};
    memset(b, 0, sizeof *b);
    b->B = 3;
    b->S = 5;
    b->T = 4;
    b->src = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 5}, src);
    b->src_len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){3}, len);
    b->tgt_in = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 4}, tin);
    b->tgt_out = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){3, 4}, tout);
}

static void assert_params_identical(sg_model *a, sg_model *b)
{
    sg_params *pa = sg_model_params(a), *pb = sg_model_params(b);
    cr_assert_eq(sg_params_count(pa), sg_params_count(pb));
    for (int i = 0; i < sg_params_count(pa); i++) {
        const sg_param *x = sg_params_at(pa, i), *y = sg_params_at(pb, i);
        cr_assert_str_eq(x->name, y->name);
        size_t bytes = (size_t)sg_tensor_numel(x->value) * sg_dtype_size(x->value->dtype);
        cr_assert(memcmp(x->value->data, y->value->data, bytes) == 0, "%s differs", x->name);
    }
}

static void round_trip(sg_arch arch)
{
    sg_model_config c = tiny(arch);
    sg_model *m = sg_model_new(&c, SG_F32, 3);
    if (!m && strstr(sg_last_error(), "not built in"))
        cr_skip_test("architecture %s not built in yet", sg_arch_name(arch));
    cr_assert(m, "%s", sg_last_error());
    char path[128];
    snprintf(path, sizeof path, "%s/%s.h5", dir, sg_arch_name(arch));
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    cr_assert_eq(sg_model_save(path, m, &ck, NULL), SG_OK, "%s", sg_last_error());
    sg_checkpoint_clear(&ck);
    sg_model *r = sg_model_load(path, SG_F32, NULL);
    cr_assert(r, "%s", sg_last_error());
    sg_config_item ia[32], ib[32];
    int na = sg_model_config_items(sg_model_get_config(m), ia, 32);
    int nb = sg_model_config_items(sg_model_get_config(r), ib, 32);
    cr_assert_eq(na, nb);
    for (int k = 0; k < na; k++) { /* every hyperparameter MODELS.md lists for the arch */
        cr_assert_str_eq(ia[k].key, ib[k].key);
        cr_assert(ia[k].i == ib[k].i && ia[k].f == ib[k].f &&
                      (ia[k].kind != 's' || !strcmp(ia[k].s, ib[k].s)),
                  "%s changed in the round trip", ia[k].key);
    }
    assert_params_identical(m, r);
    sg_batch b;
    tiny_batch(&b);
    sg_graph *g = sg_graph_new();
    sg_tensor *l1 = sg_model_loss(m, g, &b, 0.0, NULL);
    sg_tensor *l2 = sg_model_loss(r, g, &b, 0.0, NULL);
    cr_assert(l1 && l2, "%s", sg_last_error());
    cr_assert_eq(sg_tensor_get(l1, 0), sg_tensor_get(l2, 0));
    sg_graph_free(g);
    sg_batch_free(&b);
    sg_model_free(m);
    sg_model_free(r);
}

Test(model_io, round_trip_is_exact_seq2seq) { round_trip(SG_ARCH_SEQ2SEQ); }
Test(model_io, round_trip_is_exact_bahdanau) { round_trip(SG_ARCH_BAHDANAU); }
Test(model_io, round_trip_is_exact_luong) { round_trip(SG_ARCH_LUONG); }
Test(model_io, round_trip_is_exact_transformer) { round_trip(SG_ARCH_TRANSFORMER); }

/* n training steps with dropout and Adam + clipping; losses into out. */
static void train(sg_model *m, sg_optim *o, const sg_batch *b, int n, double *out)
{
    sg_graph *g = sg_graph_new();
    sg_model_set_training(m, true);
    for (int i = 0; i < n; i++) {
        sg_graph_reset(g);
        sg_tensor *loss = sg_model_loss(m, g, b, 0.1, NULL);
        cr_assert(loss, "%s", sg_last_error());
        cr_assert_eq(sg_backward(g, loss), SG_OK);
        cr_assert_eq(sg_optim_step(o, NULL), SG_OK, "%s", sg_last_error());
        sg_params_zero_grad(sg_model_params(m));
        out[i] = sg_tensor_get(loss, 0);
    }
    sg_graph_free(g);
}

Test(model_io, resume_continues_bit_for_bit)
{
    sg_model_config c = tiny(SG_ARCH_BAHDANAU);
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.clip_norm = 1.0;
    sg_batch b;
    tiny_batch(&b);
    /* the uninterrupted run: 6 steps */
    sg_model *m = sg_model_new(&c, SG_F32, 5);
    sg_optim *o = sg_optim_new(sg_model_params(m), &oc);
    double full[6], part[6];
    train(m, o, &b, 6, full);
    /* interrupted after 3 steps: save everything, load into fresh objects, 3 more */
    sg_model *m1 = sg_model_new(&c, SG_F32, 5);
    sg_optim *o1 = sg_optim_new(sg_model_params(m1), &oc);
    train(m1, o1, &b, 3, part);
    char path[128];
    snprintf(path, sizeof path, "%s/resume.h5", dir);
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    ck.has_train_state = true;
    ck.step = 3;
    ck.rng = *sg_model_rng(m1);
    cr_assert_eq(sg_model_save(path, m1, &ck, o1), SG_OK, "%s", sg_last_error());
    sg_checkpoint_clear(&ck);
    sg_model_free(m1);
    sg_optim_free(o1);

    sg_checkpoint meta;
    sg_model *m2 = sg_model_load(path, SG_F32, &meta);
    cr_assert(m2, "%s", sg_last_error());
    cr_assert(meta.has_train_state);
    *sg_model_rng(m2) = meta.rng;
    sg_checkpoint_clear(&meta);
    sg_optim *o2 = sg_optim_new(sg_model_params(m2), &oc);
    cr_assert_eq(sg_model_load_optim(path, m2, o2), SG_OK, "%s", sg_last_error());
    cr_assert_eq(sg_optim_step_count(o2), 3);
    train(m2, o2, &b, 3, part + 3);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(part[i], full[i], "step %d: loss %.9g vs uninterrupted %.9g", i, part[i],
                     full[i]);
    assert_params_identical(m, m2);
    sg_model_free(m);
    sg_optim_free(o);
    sg_model_free(m2);
    sg_optim_free(o2);
    sg_batch_free(&b);
}

Test(model_io, load_rejects_missing_and_corrupt_files)
{
    char path[128];
    snprintf(path, sizeof path, "%s/nothing.h5", dir);
    cr_assert_null(sg_model_load(path, SG_F32, NULL));
    cr_assert(strstr(sg_last_error(), "nothing.h5"), "%s", sg_last_error());
    snprintf(path, sizeof path, "%s/garbage.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("not an HDF5 file at all", f);
    fclose(f);
    cr_assert_null(sg_model_load(path, SG_F32, NULL));
    cr_assert(strstr(sg_last_error(), "garbage.h5"), "%s", sg_last_error());
}
