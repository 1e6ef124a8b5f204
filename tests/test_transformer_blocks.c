/* test_transformer_blocks.c - multi-head attention, LayerNorm, positions, feed-forward,
 * dropout + residual, transformer layers: f64 gradchecks, PyTorch parity
 * (tests/fixtures/attention*.h5), incremental decoding and error paths. */
#include "test_attention_util.h"

/* ---- multi-head attention --------------------------------------------------------------- */

static const char *const mha_names[] = {"in_proj_weight", "in_proj_bias", "out_proj.weight",
                                        "out_proj.bias", NULL};

static void mha_fixture(const char *G, bool self_attn)
{
    hid_t f = fx_open("attention.h5");
    hid_t grp = H5Gopen2(f, G, H5P_DEFAULT);
    int64_t heads = 0, causal = 0;
    hid_t at = H5Aopen(grp, "heads", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT64, &heads);
    H5Aclose(at);
    at = H5Aopen(grp, "causal", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT64, &causal);
    H5Aclose(at);
    H5Gclose(grp);
    sg_tensor *q = rd_leaf(f, G, "query");
    int64_t d = q->shape[2];
    sg_params *p = sg_params_new(SG_F32);
    sg_mha m;
    cr_assert_eq(sg_mha_init(&m, p, "self_attn", d, heads, 0.0, NULL), SG_OK);
    load_params(f, G, p, "self_attn", mha_names);
    sg_tensor *kv = self_attn ? q : rd_leaf(f, G, "key_value");
    sg_tensor *len = rd(f, G, "lengths", SG_I64), *gout = rd(f, G, "g_out", SG_F32);
    sg_graph *g = sg_graph_new();
    sg_tensor *w = NULL;
    sg_mha_opts o = {.key_lengths = len, .causal = causal, .weights = &w};
    sg_tensor *out = sg_mha_forward(g, &m, q, kv, &o);
    cr_assert(out, "%s", sg_last_error());
    assert_output(f, G, "out", out);
    assert_output(f, G, "weights", w);
    cr_assert_eq(sg_backward(g, probe_loss(g, out, gout, NULL, NULL)), SG_OK);
    sg_tensor *dq = rd(f, G, "d_query", SG_F32);
    assert_grad(q, dq, 1e-6, 1e-4, "d_query");
    sg_tensor_free(dq);
    if (!self_attn) {
        sg_tensor *dkv = rd(f, G, "d_key_value", SG_F32);
        assert_grad(kv, dkv, 1e-6, 1e-4, "d_key_value");
        sg_tensor_free(dkv);
        sg_tensor_free(kv);
    }
    check_param_grads(f, G, p, "self_attn", mha_names);
    sg_tensor_free(q);
    sg_tensor_free(len);
    sg_tensor_free(gout);
    sg_graph_free(g);
    sg_params_free(p);
    H5Fclose(f);
}

Test(mha, cross_attention_with_key_padding_matches_torch_fixture)
{
    mha_fixture("mha_cross", false);
}

Test(mha, causal_self_attention_with_key_padding_matches_torch_fixture)
{
    mha_fixture("mha_self_causal", true);
}

typedef struct {
    sg_mha *m;
    sg_mha_opts o;
    bool self_attn;
    uint64_t seed;
} mha_user;

static sg_tensor *mha_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    mha_user *u = user;
    sg_rng r; /* the same dropout mask at every evaluation */
    sg_rng_seed(&r, u->seed);
    sg_mha_opts o = u->o;
    o.rng = &r;
    return sg_mha_forward(g, u->m, in[0], u->self_attn ? in[0] : in[1], &o);
}

static void mha_gradcheck(bool self_attn, bool causal, bool dropout)
{
    sg_rng r;
    sg_rng_seed(&r, 21);
    sg_params *p = sg_params_new(SG_F64);
    sg_mha m;
    cr_assert_eq(sg_mha_init(&m, p, "self_attn", 4, 2, dropout ? 0.3 : 0.0, &r), SG_OK);
    sg_params_uniform_(p, &r, -0.8, 0.8);
    int64_t Lq = 3, Lk = self_attn ? 3 : 4;
    sg_tensor *q = tu_rand64(&r, -1, 1, 3, (int64_t)2, Lq, (int64_t)4);
    sg_tensor *kv = tu_rand64(&r, -1, 1, 3, (int64_t)2, Lk, (int64_t)4);
    /* row 0: keys 0, 1 real (with causal: query 0 sees key 0 only);
     * cross-attention row 1: every key masked */
    uint8_t mk[8] = {1, 1, 0, 0, 0, 0, 0, 0};
    sg_tensor *mask = sg_tensor_from_buffer(SG_BOOL, 2, (int64_t[]){2, Lk}, mk);
    sg_tensor *len = lengths_of(2, (int64_t[]){2, 3});
    mha_user u = {&m, {.causal = causal, .training = dropout}, self_attn, 9};
    if (self_attn)
        u.o.key_lengths = len;
    else
        u.o.key_mask = mask;
    sg_tensor *in[] = {q, kv, m.in_proj_weight, m.in_proj_bias, m.out_proj.weight,
                       m.out_proj.bias};
    if (self_attn) {
        in[1] = m.in_proj_weight;
        in[2] = m.in_proj_bias;
        in[3] = m.out_proj.weight;
        in[4] = m.out_proj.bias;
    }
    TU_GRADCHECK(mha_fn, &u, self_attn ? 5 : 6, in);
    sg_tensor_free(q);
    sg_tensor_free(kv);
    sg_tensor_free(mask);
    sg_tensor_free(len);
    sg_params_free(p);
}

Test(mha, gradcheck_cross_attention_with_fully_masked_row) { mha_gradcheck(false, false, false); }
Test(mha, gradcheck_causal_self_attention_with_key_padding) { mha_gradcheck(true, true, false); }
Test(mha, gradcheck_with_attention_dropout) { mha_gradcheck(false, true, true); }

Test(mha, fully_masked_row_gives_bias_and_zero_gradient)
{
    sg_rng r;
    sg_rng_seed(&r, 4);
    sg_params *p = sg_params_new(SG_F64);
    sg_mha m;
    sg_mha_init(&m, p, "attn", 4, 2, 0.0, &r);
    sg_tensor_uniform_(m.out_proj.bias, &r, -1, 1);
    sg_tensor *q = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)2, (int64_t)4);
    sg_tensor *kv = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    sg_tensor *len = lengths_of(2, (int64_t[]){3, 0});
    sg_graph *g = sg_graph_new();
    sg_mha_opts o = {.key_lengths = len};
    sg_tensor *out = sg_mha_forward(g, &m, q, kv, &o);
    cr_assert(out, "%s", sg_last_error());
    assert_finite(out, "out");
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++)
            cr_assert_float_eq(sg_tensor_get(out, 8 + i * 4 + c), sg_tensor_get(m.out_proj.bias, c),
                               1e-15);
    cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, out, out))), SG_OK);
    for (int i = 8; i < 16; i++)
        cr_assert_eq(sg_tensor_grad_get(q, i), 0.0, "masked row passes no gradient");
    for (int i = 12; i < 24; i++)
        cr_assert_eq(sg_tensor_grad_get(kv, i), 0.0);
    for (int64_t i = 0; i < sg_tensor_numel(m.in_proj_weight); i++)
        cr_assert(isfinite(sg_tensor_grad_get(m.in_proj_weight, i)));
    sg_tensor_free(q);
    sg_tensor_free(kv);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
}

Test(mha, dropout_changes_training_output_only)
{
    sg_rng r;
    sg_rng_seed(&r, 8);
    sg_params *p = sg_params_new(SG_F32);
    sg_mha m;
    sg_mha_init(&m, p, "attn", 8, 2, 0.5, &r);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, SG_F32, 3, (int64_t[]){2, 5, 8}, &r);
    sg_mha_opts ev = {0}, tr = {.training = true, .rng = &r};
    sg_tensor *a = sg_mha_forward(g, &m, x, x, &ev), *b = sg_mha_forward(g, &m, x, x, &ev);
    sg_tensor *c = sg_mha_forward(g, &m, x, x, &tr);
    cr_assert(a && b && c, "%s", sg_last_error());
    tu_assert_close(a, b, 0, 0, "eval is deterministic");
    double diff = 0;
    for (int64_t i = 0; i < sg_tensor_numel(a); i++)
        diff += fabs(sg_tensor_get(a, i) - sg_tensor_get(c, i));
    cr_assert_gt(diff, 1e-3);
    sg_mha_opts norng = {.training = true};
    cr_assert_null(sg_mha_forward(g, &m, x, x, &norng));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    sg_graph_free(g);
    sg_params_free(p);
}

static void incremental_matches_full(sg_dtype dt, double tol)
{
    sg_rng r;
    sg_rng_seed(&r, 12);
    sg_params *p = sg_params_new(dt);
    sg_mha self, cross;
    sg_mha_init(&self, p, "self_attn", 8, 4, 0.1, &r);
    sg_mha_init(&cross, p, "multihead_attn", 8, 4, 0.1, &r);
    int64_t B = 2, T = 5, S = 6, d = 8;
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, dt, 3, (int64_t[]){B, T, d}, &r);
    sg_tensor *mem = sg_randn(g, dt, 3, (int64_t[]){B, S, d}, &r);
    sg_tensor *len = lengths_of(2, (int64_t[]){6, 3});
    sg_mha_opts causal = {.causal = true}, pad = {.key_lengths = len};
    sg_tensor *full_self = sg_mha_forward(g, &self, x, x, &causal);
    sg_tensor *full_cross = sg_mha_forward(g, &cross, x, mem, &pad);
    cr_assert(full_self && full_cross, "%s", sg_last_error());
    sg_mha_cache cs, cc;
    cr_assert_eq(sg_mha_cache_init(&cs, dt, B, T, d), SG_OK);
    cr_assert_eq(sg_mha_cache_init(&cc, dt, B, S, d), SG_OK);
    cr_assert_eq(sg_mha_cache_fill(g, &cross, &cc, mem), SG_OK, "%s", sg_last_error());
    for (int64_t t = 0; t < T; t++) {
        sg_tensor *xt = sg_narrow(g, x, 1, t, 1); /* [B, 1, d] */
        cr_assert_eq(sg_mha_cache_append(g, &self, &cs, xt), SG_OK, "%s", sg_last_error());
        sg_tensor *ys = sg_mha_forward_cached(g, &self, &cs, xt, NULL);
        sg_tensor *yc = sg_mha_forward_cached(g, &cross, &cc, xt, &pad);
        cr_assert(ys && yc, "%s", sg_last_error());
        tu_assert_close(ys, sg_narrow(g, full_self, 1, t, 1), tol, tol, "cached self-attention");
        tu_assert_close(yc, sg_narrow(g, full_cross, 1, t, 1), tol, tol, "cached cross-attention");
    }
    /* the cache is full now */
    cr_assert_eq(sg_mha_cache_append(g, &self, &cs, sg_narrow(g, x, 1, 0, 1)), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "capacity"), "%s", sg_last_error());
    sg_mha_cache_free(&cs);
    sg_mha_cache_free(&cc);
    sg_mha_cache_free(NULL);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
}

Test(mha, incremental_decoding_matches_full_forward_f64)
{
    incremental_matches_full(SG_F64, 1e-12);
}

Test(mha, incremental_decoding_matches_full_forward_f32)
{
    incremental_matches_full(SG_F32, 1e-5);
}

Test(mha, rejects_bad_heads_widths_and_masks)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_mha m;
    cr_assert_eq(sg_mha_init(&m, p, "attn", 10, 3, 0.0, NULL), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "divisible"), "%s", sg_last_error());
    cr_assert_eq(sg_params_count(p), 0, "a failed init registers nothing");
    cr_assert_eq(sg_mha_init(&m, p, "attn", 8, 2, 1.5, NULL), SG_EINVAL);
    cr_assert_eq(sg_mha_init(&m, p, "attn", 8, 2, 0.0, NULL), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 8});
    sg_tensor *bad = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 6});
    cr_assert_null(sg_mha_forward(g, &m, bad, x, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "[2,3,6]"), "%s", sg_last_error());
    sg_graph_reset(g);
    x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 8});
    sg_tensor *len = lengths_of(3, (int64_t[]){1, 2, 3});
    sg_mha_opts o = {.key_lengths = len};
    cr_assert_null(sg_mha_forward(g, &m, x, x, &o));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    sg_graph_reset(g);
    x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 8});
    sg_tensor *len2 = lengths_of(2, (int64_t[]){4, 2});
    o.key_lengths = len2;
    cr_assert_null(sg_mha_forward(g, &m, x, x, &o));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    sg_graph_reset(g);
    x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 8});
    sg_tensor *mask = sg_tensor_new(SG_BOOL, 2, (int64_t[]){2, 4});
    sg_mha_opts om = {.key_mask = mask};
    cr_assert_null(sg_mha_forward(g, &m, x, x, &om));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "mask"), "%s", sg_last_error());
    sg_graph_reset(g);
    sg_tensor *q = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 6});
    cr_assert_null(sg_scaled_dot_attention(g, q, q, q, 4, 0.0, NULL));
    cr_assert(strstr(sg_last_error(), "divisible"), "%s", sg_last_error());
    sg_tensor_free(len);
    sg_tensor_free(len2);
    sg_tensor_free(mask);
    sg_graph_free(g);
    sg_params_free(p);
}

/* ---- LayerNorm, positions, feed-forward --------------------------------------------------- */

Test(layernorm, matches_torch_fixture)
{
    hid_t f = fx_open("attention.h5");
    const char *G = "layernorm";
    sg_params *p = sg_params_new(SG_F32);
    sg_layernorm ln;
    cr_assert_eq(sg_layernorm_init(&ln, p, "norm1", 6), SG_OK);
    cr_assert_str_eq(sg_params_at(p, 0)->name, "norm1.weight");
    cr_assert_str_eq(sg_params_at(p, 1)->name, "norm1.bias");
    const char *names[] = {"weight", "bias", NULL};
    load_params(f, G, p, "norm1", names);
    sg_tensor *x = rd_leaf(f, G, "x"), *gy = rd(f, G, "g_y", SG_F32);
    sg_graph *g = sg_graph_new();
    sg_tensor *y = sg_layernorm_forward(g, &ln, x);
    assert_output(f, G, "y", y);
    cr_assert_eq(sg_backward(g, probe_loss(g, y, gy, NULL, NULL)), SG_OK);
    sg_tensor *dx = rd(f, G, "d_x", SG_F32);
    assert_grad(x, dx, 1e-6, 1e-4, "d_x");
    check_param_grads(f, G, p, "norm1", names);
    sg_tensor_free(dx);
    sg_tensor_free(x);
    sg_tensor_free(gy);
    sg_graph_free(g);
    sg_params_free(p);
    H5Fclose(f);
}

static sg_tensor *ln_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    (void)user;
    return sg_layer_norm(g, in[0], in[1], in[2], 1e-5);
}

Test(layernorm, gradcheck)
{
    sg_rng r;
    sg_rng_seed(&r, 2);
    sg_tensor *x = tu_rand64(&r, -2, 2, 3, (int64_t)2, (int64_t)3, (int64_t)5);
    sg_tensor *w = tu_rand64(&r, 0.5, 1.5, 1, (int64_t)5);
    sg_tensor *b = tu_rand64(&r, -1, 1, 1, (int64_t)5);
    sg_tensor *in[] = {x, w, b};
    TU_GRADCHECK(ln_fn, NULL, 3, in);
    sg_tensor_free(x);
    sg_tensor_free(w);
    sg_tensor_free(b);
}

Test(layernorm, rejects_wrong_weight_shape)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 5});
    sg_tensor *w = sg_ones(g, SG_F32, 1, (int64_t[]){4});
    cr_assert_null(sg_layer_norm(g, x, w, NULL, 1e-5));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "sg_layer_norm"), "%s", sg_last_error());
    sg_graph_free(g);
}

Test(posenc, matches_double_precision_table)
{
    hid_t f = fx_open("attention.h5");
    int64_t ds[] = {8, 7};
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "pe%lld", (long long)ds[i]);
        sg_tensor *ref = rd(f, "misc", name, SG_F32);
        sg_tensor *pe = sg_sinusoid_table(SG_F32, 12, ds[i]);
        tu_assert_close(pe, ref, 0, 0, name); /* bitwise: double then rounded */
        sg_tensor_free(ref);
        sg_tensor_free(pe);
    }
    cr_assert_null(sg_sinusoid_table(SG_F32, 0, 4));
    cr_assert_null(sg_sinusoid_table(SG_I64, 4, 4));
    H5Fclose(f);
}

Test(feedforward, gelu_matches_torch_fixture)
{
    hid_t f = fx_open("attention.h5");
    sg_tensor *x = rd_leaf(f, "misc", "gelu_x");
    sg_graph *g = sg_graph_new();
    sg_tensor *y = sg_gelu(g, x);
    assert_output(f, "misc", "gelu_y", y);
    sg_backward(g, sg_sum_all(g, y));
    sg_tensor *dx = rd(f, "misc", "gelu_dx", SG_F32);
    assert_grad(x, dx, 1e-6, 1e-4, "gelu dx");
    sg_tensor_free(dx);
    sg_tensor_free(x);
    sg_graph_free(g);
    H5Fclose(f);
}

typedef struct {
    sg_feedforward *m;
} ff_user;

static sg_tensor *ff_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    ff_user *u = user;
    sg_rng r;
    sg_rng_seed(&r, 77);
    return sg_feedforward_forward(g, u->m, in[0], true, &r);
}

Test(feedforward, gradcheck_relu_and_gelu_with_dropout)
{
    for (int act = 0; act < SG_ACT_COUNT; act++) {
        sg_rng r;
        sg_rng_seed(&r, 31 + (uint64_t)act);
        sg_params *p = sg_params_new(SG_F64);
        sg_feedforward ff;
        cr_assert_eq(sg_feedforward_init(&ff, p, "layers.0", 3, 5, (sg_activation)act, 0.25, &r),
                     SG_OK);
        if (act == 0)
            cr_assert_str_eq(sg_params_at(p, 0)->name, "layers.0.linear1.weight");
        sg_tensor *x = tu_rand64(&r, -1, 1, 2, (int64_t)4, (int64_t)3);
        ff_user u = {&ff};
        sg_tensor *in[] = {x, ff.linear1.weight, ff.linear1.bias, ff.linear2.weight,
                           ff.linear2.bias};
        TU_GRADCHECK(ff_fn, &u, 5, in);
        sg_tensor_free(x);
        sg_params_free(p);
    }
}

/* The ReLU feed-forward block of a recording graph (one node that keeps its input and
 * either its hidden layer or nothing more, making the hidden layer again in backward in
 * chunks of rows) and of an evaluation (the ReLU + dropout written over linear1's output,
 * no mask kept) gives what linear1, sg_relu, sg_dropout and linear2 give with the same
 * rng: the output and every gradient, f32 and f64, in training and in evaluation, for
 * 17 x 9 rows (one chunk, an odd mask tail) and for 4,000 rows (two chunks of the f64
 * hidden layer when made again: 3,744 + 256), with the hidden layer kept (the default
 * budget) and made again (budget 0: the graph then keeps no [rows x 70] hidden layer).
 * The unfused products of few rows read a copy of W^T through other kernels than the
 * node's, so the values agree to a few roundings, not bitwise. */
Test(feedforward, fused_relu_dropout_equals_relu_then_dropout)
{
    for (int k = 0; k < 16; k++) {
        int d = k & 1, train = (k >> 1) & 1, big = (k >> 2) & 1, remake = (k >> 3) & 1;
        sg_dtype dt = d ? SG_F64 : SG_F32;
        double tol = d ? 1e-12 : 2e-5;
        sg_rng r;
        sg_rng_seed(&r, 5);
        sg_params *p = sg_params_new(dt);
        sg_feedforward ff;
        cr_assert_eq(sg_feedforward_init(&ff, p, "ff", 9, 70, SG_ACT_RELU, 0.3, &r), SG_OK);
        int64_t shape[3] = {big ? 4000 : 17, big ? 1 : 9, 9};
        sg_tensor *x = sg_tensor_new(dt, 3, shape);
        sg_tensor_normal_(x, &r, 0, 1);
        sg_tensor_set_requires_grad(x, true);
        sg_tensor *grads[2][5];
        sg_tensor *ys[2];
        sg_graph *gs[2];
        for (int fused = 0; fused < 2; fused++) {
            sg_graph *g = gs[fused] = sg_graph_new();
            sg_rng dr;
            sg_rng_seed(&dr, 42);
            sg_tensor *y;
            if (fused) {
                cr_assert_eq(sg_graph_set_keep_budget(g, remake ? 0 : SG_GRAPH_KEEP_DEFAULT),
                             SG_GRAPH_KEEP_DEFAULT);
                size_t before = sg_arena_used(sg_graph_arena(g));
                y = sg_feedforward_forward(g, &ff, x, train, &dr);
                size_t rows = (size_t)(shape[0] * shape[1]), hidden = rows * 70 * sg_dtype_size(dt),
                       kept = sg_arena_used(sg_graph_arena(g)) - before;
                if (remake) /* no [rows x 70] hidden layer (nor a mask) */
                    cr_assert_lt(kept, rows * 9 * sg_dtype_size(dt) + 4096, "kept %zu bytes", kept);
                else
                    cr_assert_geq(kept, hidden, "kept %zu bytes", kept);
            } else {
                sg_tensor *h = sg_relu(g, sg_linear_layer_forward(g, &ff.linear1, x));
                h = sg_dropout(g, h, 0.3, train, &dr);
                y = sg_linear_layer_forward(g, &ff.linear2, h);
            }
            cr_assert(y, "%s", sg_last_error());
            ys[fused] = y;
            cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, y))), SG_OK);
            sg_tensor *leaves[5] = {x, ff.linear1.weight, ff.linear1.bias, ff.linear2.weight,
                                    ff.linear2.bias};
            for (int j = 0; j < 5; j++) {
                grads[fused][j] = sg_tensor_from_buffer(dt, leaves[j]->ndim, leaves[j]->shape,
                                                        leaves[j]->grad);
                sg_tensor_zero_grad(leaves[j]);
            }
        }
        tu_assert_close(ys[1], ys[0], tol, tol, "fused output");
        for (int j = 0; j < 5; j++) {
            tu_assert_close(grads[1][j], grads[0][j], tol, tol, "fused gradient");
            sg_tensor_free(grads[0][j]);
            sg_tensor_free(grads[1][j]);
        }
        sg_graph_free(gs[0]);
        sg_graph_free(gs[1]);
        sg_tensor_free(x);
        sg_params_free(p);
    }
}

/* The keep budget is the graph's, shared by its blocks and renewed by sg_graph_reset:
 * with room for one hidden layer, the first of two blocks keeps its own and the second
 * makes its own again (both still differentiable), and after a reset the first keeps
 * again. */
Test(feedforward, keep_budget_is_shared_by_a_graphs_blocks)
{
    sg_rng r;
    sg_rng_seed(&r, 3);
    sg_params *p = sg_params_new(SG_F32);
    sg_feedforward ff;
    cr_assert_eq(sg_feedforward_init(&ff, p, "ff", 8, 64, SG_ACT_RELU, 0.1, &r), SG_OK);
    int64_t shape[2] = {50, 8};
    size_t hidden = 50 * 64 * sizeof(float);
    sg_tensor *x = sg_tensor_new(SG_F32, 2, shape);
    sg_tensor_normal_(x, &r, 0, 1);
    sg_tensor_set_requires_grad(x, true);
    sg_graph *g = sg_graph_new();
    cr_assert_eq(sg_graph_set_keep_budget(NULL, hidden), 0);
    sg_graph_set_keep_budget(g, hidden);
    sg_arena *a = sg_graph_arena(g);
    for (int round = 0; round < 2; round++) {
        size_t before = sg_arena_used(a);
        sg_tensor *y = sg_feedforward_forward(g, &ff, x, true, &r);
        size_t first = sg_arena_used(a) - before;
        before = sg_arena_used(a);
        y = sg_feedforward_forward(g, &ff, y, true, &r);
        size_t second = sg_arena_used(a) - before;
        cr_assert_geq(first, hidden, "round %d: the first block kept %zu bytes", round, first);
        cr_assert_lt(second, hidden, "round %d: the second block kept %zu bytes", round, second);
        cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, y))), SG_OK, "%s", sg_last_error());
        cr_assert_neq(((const float *)x->grad)[0], 0.0f);
        sg_tensor_zero_grad(x);
        sg_graph_reset(g);
    }
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_params_free(p);
}

/* sg_dropout_add = sg_add(x, sg_dropout(z)) (values and gradients to one rounding, f32
 * and f64, training and evaluation), with z straight from sg_linear written over
 * (reuse_z) or not; bad probability, shapes and dtypes are errors. */
Test(layers, dropout_add_equals_add_of_dropout)
{
    for (int k = 0; k < 8; k++) {
        sg_dtype dt = k & 1 ? SG_F64 : SG_F32;
        bool train = k & 2, reuse = k & 4;
        sg_rng r;
        sg_rng_seed(&r, 9);
        sg_tensor *x = sg_tensor_new(dt, 2, (int64_t[]){33, 7});
        sg_tensor *a = sg_tensor_new(dt, 2, (int64_t[]){33, 5});
        sg_tensor *w = sg_tensor_new(dt, 2, (int64_t[]){7, 5});
        sg_tensor *leaves[3] = {x, a, w}, *grads[2][3], *outs[2];
        for (int i = 0; i < 3; i++) {
            sg_tensor_normal_(leaves[i], &r, 0, 1);
            sg_tensor_set_requires_grad(leaves[i], true);
        }
        sg_graph *gs[2];
        for (int fused = 0; fused < 2; fused++) {
            sg_graph *g = gs[fused] = sg_graph_new();
            sg_rng dr;
            sg_rng_seed(&dr, 3);
            sg_tensor *z = sg_linear(g, a, w, NULL);
            sg_tensor *s = fused ? sg_dropout_add(g, x, z, 0.4, train, &dr, reuse)
                                 : sg_add(g, x, sg_dropout(g, z, 0.4, train, &dr));
            cr_assert(s, "%s", sg_last_error());
            outs[fused] = s;
            cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, s, s))), SG_OK);
            for (int i = 0; i < 3; i++) {
                grads[fused][i] = sg_tensor_from_buffer(dt, 2, leaves[i]->shape, leaves[i]->grad);
                sg_tensor_zero_grad(leaves[i]);
            }
        }
        double tol = dt == SG_F32 ? 2e-7 : 1e-15; /* one rounding: a fused multiply-add */
        tu_assert_close(outs[1], outs[0], tol, tol, "sg_dropout_add output");
        for (int i = 0; i < 3; i++) {
            tu_assert_close(grads[1][i], grads[0][i], 4 * tol, 4 * tol, "sg_dropout_add gradient");
            sg_tensor_free(grads[0][i]);
            sg_tensor_free(grads[1][i]);
        }
        if (k == 3) { /* x + dropout(x): x and z one tensor, one gradient */
            sg_tensor *gx[2];
            for (int fused = 0; fused < 2; fused++) {
                sg_graph *g = sg_graph_new();
                sg_rng dr;
                sg_rng_seed(&dr, 4);
                sg_tensor *s2 = fused ? sg_dropout_add(g, x, x, 0.4, true, &dr, true)
                                      : sg_add(g, x, sg_dropout(g, x, 0.4, true, &dr));
                cr_assert(s2, "%s", sg_last_error());
                cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, s2, s2))), SG_OK);
                gx[fused] = sg_tensor_from_buffer(dt, 2, x->shape, x->grad);
                sg_tensor_zero_grad(x);
                sg_graph_free(g);
            }
            tu_assert_close(gx[1], gx[0], 1e-14, 1e-14, "x + dropout(x) gradient");
            sg_tensor_free(gx[0]);
            sg_tensor_free(gx[1]);
        }
        if (k == 0) { /* errors */
            sg_graph *g = sg_graph_new();
            sg_tensor *z5 = sg_linear(g, a, w, NULL);
            cr_assert_null(sg_dropout_add(g, a, z5, 0.1, true, &r, false));
            cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
            sg_graph_free(g);
            g = sg_graph_new();
            cr_assert_null(sg_dropout_add(g, x, x, 1.0, true, &r, false));
            cr_assert_eq(sg_graph_status(g), SG_EINVAL);
            sg_graph_free(g);
            g = sg_graph_new();
            sg_tensor *x64 = sg_tensor_new(SG_F64, 2, (int64_t[]){33, 7});
            cr_assert_null(sg_dropout_add(g, x64, x, 0.1, true, &r, false));
            cr_assert_eq(sg_graph_status(g), SG_EDTYPE);
            sg_tensor_free(x64);
            sg_graph_free(g);
        }
        sg_graph_free(gs[0]);
        sg_graph_free(gs[1]);
        for (int i = 0; i < 3; i++)
            sg_tensor_free(leaves[i]);
    }
}

/* ---- small shapes ------------------------------------------------------------------------- */

Test(mha, single_key_gets_all_the_weight)
{
    sg_rng r;
    sg_rng_seed(&r, 2);
    sg_params *p = sg_params_new(SG_F64);
    sg_mha m;
    sg_mha_init(&m, p, "attn", 6, 3, 0.0, &r);
    sg_graph *g = sg_graph_new();
    sg_tensor *q = sg_randn(g, SG_F64, 3, (int64_t[]){1, 2, 6}, &r);
    sg_tensor *kv = sg_randn(g, SG_F64, 3, (int64_t[]){1, 1, 6}, &r);
    sg_tensor *w = NULL;
    sg_mha_opts o = {.weights = &w};
    sg_tensor *out = sg_mha_forward(g, &m, q, kv, &o);
    cr_assert(out && w, "%s", sg_last_error());
    for (int i = 0; i < 6; i++) /* [1, 3 heads, 2 queries, 1 key] */
        cr_assert_float_eq(sg_tensor_get(w, i), 1.0, 1e-15);
    /* out = out_proj(W_v kv + b_v) for both queries */
    sg_tensor *v = sg_linear(g, kv, sg_narrow(g, m.in_proj_weight, 0, 12, 6),
                             sg_narrow(g, m.in_proj_bias, 0, 12, 6));
    sg_tensor *want = sg_linear(g, v, m.out_proj.weight, m.out_proj.bias);
    tu_assert_close(sg_narrow(g, out, 1, 0, 1), want, 1e-12, 1e-12, "query 0");
    tu_assert_close(sg_narrow(g, out, 1, 1, 1), want, 1e-12, 1e-12, "query 1");
    sg_graph_free(g);
    sg_params_free(p);
}
/* ---- transformer layers -------------------------------------------------------------------- */

static void layer_fixture(const char *G, bool decoder, bool norm_first)
{
    hid_t f = fx_open("attention_layers.h5");
    sg_tensor *x = rd_leaf(f, G, "x");
    int64_t d = x->shape[2];
    sg_params *p = sg_params_new(SG_F32);
    sg_transformer_layer m;
    cr_assert_eq(sg_transformer_layer_init(&m, p, "layers.0", decoder, d, 2, 12, 0.0, norm_first,
                                           NULL), SG_OK, "%s", sg_last_error());
    /* every parameter, in PyTorch's state_dict order */
    static const char *enc[] = {"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                "linear1.weight", "linear1.bias", "linear2.weight",
                                "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight",
                                "norm2.bias", NULL};
    static const char *dec[] = {"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                "multihead_attn.in_proj_weight", "multihead_attn.in_proj_bias",
                                "multihead_attn.out_proj.weight", "multihead_attn.out_proj.bias",
                                "linear1.weight", "linear1.bias", "linear2.weight",
                                "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight",
                                "norm2.bias", "norm3.weight", "norm3.bias", NULL};
    const char **names = decoder ? dec : enc;
    int n = 0;
    for (; names[n]; n++) {
        char full[SG_PARAM_NAME_MAX];
        sg_param_name(full, "layers.0", names[n]);
        cr_assert_str_eq(sg_params_at(p, n)->name, full);
    }
    cr_assert_eq(sg_params_count(p), n);
    load_params(f, G, p, "layers.0", names);
    sg_tensor *len = rd(f, G, "lengths", SG_I64), *gy = rd(f, G, "g_y", SG_F32);
    sg_tensor *mem = decoder ? rd_leaf(f, G, "memory") : NULL;
    sg_graph *g = sg_graph_new();
    sg_tensor *y = decoder ? sg_transformer_decoder_layer_forward(g, &m, x, mem, len, NULL, false,
                                                                  NULL)
                           : sg_transformer_encoder_layer_forward(g, &m, x, len, NULL, false, NULL);
    cr_assert(y, "%s", sg_last_error());
    assert_output(f, G, "y", y);
    cr_assert_eq(sg_backward(g, probe_loss(g, y, gy, NULL, NULL)), SG_OK);
    sg_tensor *dx = rd(f, G, "d_x", SG_F32);
    assert_grad(x, dx, 1e-5, 1e-4, "d_x");
    sg_tensor_free(dx);
    if (decoder) {
        sg_tensor *dm = rd(f, G, "d_memory", SG_F32);
        assert_grad(mem, dm, 1e-5, 1e-4, "d_memory");
        sg_tensor_free(dm);
        sg_tensor_free(mem);
    }
    for (int i = 0; names[i]; i++) {
        char full[SG_PARAM_NAME_MAX], path[256];
        sg_param_name(full, "layers.0", names[i]);
        snprintf(path, sizeof path, "d/%s", names[i]);
        sg_tensor *ref = rd(f, G, path, SG_F32);
        assert_grad(sg_params_find(p, full), ref, 1e-5, 1e-4, full);
        sg_tensor_free(ref);
    }
    sg_tensor_free(x);
    sg_tensor_free(len);
    sg_tensor_free(gy);
    sg_graph_free(g);
    sg_params_free(p);
    H5Fclose(f);
}

Test(transformer_layer, encoder_post_ln_matches_torch_fixture)
{
    layer_fixture("encoder_post", false, false);
}

Test(transformer_layer, encoder_pre_ln_matches_torch_fixture)
{
    layer_fixture("encoder_pre", false, true);
}

Test(transformer_layer, decoder_post_ln_matches_torch_fixture)
{
    layer_fixture("decoder_post", true, false);
}

Test(transformer_layer, decoder_pre_ln_matches_torch_fixture)
{
    layer_fixture("decoder_pre", true, true);
}

static void decoder_step_matches_full(bool norm_first)
{
    sg_rng r;
    sg_rng_seed(&r, 40);
    sg_params *p = sg_params_new(SG_F64);
    sg_transformer_layer m;
    cr_assert_eq(sg_transformer_layer_init(&m, p, "l", true, 8, 2, 16, 0.1, norm_first, &r), SG_OK);
    sg_params_uniform_(p, &r, -0.5, 0.5);
    int64_t B = 2, T = 4, S = 5, d = 8;
    sg_graph *g = sg_graph_new();
    sg_tensor *y = sg_randn(g, SG_F64, 3, (int64_t[]){B, T, d}, &r);
    sg_tensor *mem = sg_randn(g, SG_F64, 3, (int64_t[]){B, S, d}, &r);
    sg_tensor *len = lengths_of(2, (int64_t[]){3, 5});
    sg_tensor *full = sg_transformer_decoder_layer_forward(g, &m, y, mem, len, NULL, false, NULL);
    cr_assert(full, "%s", sg_last_error());
    sg_mha_cache sc, cc;
    sg_mha_cache_init(&sc, SG_F64, B, T, d);
    sg_mha_cache_init(&cc, SG_F64, B, S, d);
    cr_assert_eq(sg_mha_cache_fill(g, &m.cross_attn, &cc, mem), SG_OK);
    for (int64_t t = 0; t < T; t++) {
        sg_tensor *o = sg_transformer_decoder_layer_step(g, &m, &sc, &cc, sg_narrow(g, y, 1, t, 1),
                                                         len, NULL);
        cr_assert(o, "%s", sg_last_error());
        tu_assert_close(o, sg_narrow(g, full, 1, t, 1), 1e-12, 1e-12, "decoder step");
    }
    sg_mha_cache_free(&sc);
    sg_mha_cache_free(&cc);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
}

Test(transformer_layer, cached_decoder_step_matches_full_forward_post_ln)
{
    decoder_step_matches_full(false);
}

Test(transformer_layer, cached_decoder_step_matches_full_forward_pre_ln)
{
    decoder_step_matches_full(true);
}

typedef struct {
    sg_transformer_layer *m;
    sg_tensor *len;
    bool training; /* with the same dropout masks at every evaluation */
} layer_user;

static sg_tensor *enc_layer_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    layer_user *u = user;
    sg_rng r;
    sg_rng_seed(&r, 77);
    return sg_transformer_encoder_layer_forward(g, u->m, in[0], u->len, NULL, u->training, &r);
}

static sg_tensor *dec_layer_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    layer_user *u = user;
    sg_rng r;
    sg_rng_seed(&r, 77);
    return sg_transformer_decoder_layer_forward(g, u->m, in[0], in[1], u->len, NULL, u->training,
                                                &r);
}

/* A post-LN encoder layer as wide as the norms' vector lanes (d = 40: two blocks of 16
 * and a tail of 8), its norms written over their residual sums: the input's and the
 * norms' gradients against central differences, with dropout in training. */
Test(transformer_layer, gradcheck_wide_post_ln_norms)
{
    sg_rng r;
    sg_rng_seed(&r, 61);
    sg_params *p = sg_params_new(SG_F64);
    sg_transformer_layer m;
    cr_assert_eq(sg_transformer_layer_init(&m, p, "l", false, 40, 4, 12, 0.2, false, &r), SG_OK);
    sg_params_uniform_(p, &r, -0.7, 0.7);
    sg_tensor *x = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)40);
    sg_tensor *len = lengths_of(2, (int64_t[]){3, 2});
    layer_user u = {&m, len, true};
    sg_tensor *in[] = {x, m.norm1.weight, m.norm1.bias, m.norm2.weight, m.norm2.bias};
    TU_GRADCHECK(enc_layer_fn, &u, 5, in);
    sg_tensor_free(x);
    sg_tensor_free(len);
    sg_params_free(p);
}

/* post-LN encoder and pre-LN decoder layers, without and with dropout in training (the
 * fused residual dropout and ReLU dropout; the post-LN norms written over their residual
 * sums, xhat made again from their outputs); then post-LN encoder layers whose norms have
 * a weight element of 0, which keep their input instead */
Test(transformer_layer, gradcheck_encoder_and_decoder_layers)
{
    for (int k = 0; k < 6; k++) {
        int dec = k < 4 ? k % 2 : 0;
        bool train = k >= 2 && k != 4;
        sg_rng r;
        sg_rng_seed(&r, 50 + (uint64_t)dec);
        sg_params *p = sg_params_new(SG_F64);
        sg_transformer_layer m;
        cr_assert_eq(sg_transformer_layer_init(&m, p, "l", dec, 4, 2, 6, train ? 0.3 : 0.0,
                                               dec == 1, &r),
                     SG_OK);
        sg_params_uniform_(p, &r, -0.7, 0.7);
        if (k >= 4) {
            sg_tensor_set(m.norm1.weight, 1, 0.0);
            sg_tensor_set(m.norm2.weight, 2, 0.0);
        }
        sg_tensor *x = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4);
        sg_tensor *mem = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4);
        sg_tensor *len = lengths_of(2, (int64_t[]){3, 2});
        layer_user u = {&m, len, train};
        sg_tensor *in[40] = {x, mem};
        int n = dec ? 2 : 1;
        for (int i = 0; i < sg_params_count(p); i++)
            in[n++] = sg_params_at(p, i)->value;
        TU_GRADCHECK(dec ? dec_layer_fn : enc_layer_fn, &u, n, in);
        sg_tensor_free(x);
        sg_tensor_free(mem);
        sg_tensor_free(len);
        sg_params_free(p);
    }
}
