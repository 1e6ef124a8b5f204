/* test_attention.c - RNN attention (Bahdanau additive, Luong dot/general/concat, global
 * and local-m/p): f64 gradchecks, PyTorch parity (tests/fixtures/attention.h5), the
 * decoding row map, f32 kernels against f64 and error paths. The transformer blocks are
 * in test_transformer_blocks.c. */
#include "test_attention_util.h"

/* ---- Bahdanau ------------------------------------------------------------------------ */

static const char *const bahdanau_names[] = {"query_proj.weight", "key_proj.weight",
                                             "key_proj.bias", "energy.weight", NULL};

Test(bahdanau, registers_reference_parameter_names)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention m;
    cr_assert_eq(sg_additive_attention_init(&m, p, "attention", 4, 6, 5, NULL), SG_OK);
    cr_assert_eq(sg_params_count(p), 4);
    const char *want[] = {"attention.query_proj.weight", "attention.key_proj.weight",
                          "attention.key_proj.bias", "attention.energy.weight"};
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(sg_params_at(p, i)->name, want[i]);
    cr_assert_eq(m.energy.weight->shape[0], 1);
    cr_assert_eq(m.energy.weight->shape[1], 5);
    sg_params_free(p);
}

Test(bahdanau, matches_torch_fixture)
{
    hid_t f = fx_open("attention.h5");
    const char *G = "bahdanau";
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention m;
    cr_assert_eq(sg_additive_attention_init(&m, p, "attention", 4, 6, 5, NULL), SG_OK);
    load_params(f, G, p, "attention", bahdanau_names);
    sg_tensor *s = rd_leaf(f, G, "s"), *h = rd_leaf(f, G, "h");
    sg_tensor *len = rd(f, G, "lengths", SG_I64);
    sg_tensor *gc = rd(f, G, "g_ctx", SG_F32), *ga = rd(f, G, "g_alpha", SG_F32);
    sg_graph *g = sg_graph_new();
    sg_attn_memory mem;
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &mem), SG_OK, "%s",
                 sg_last_error());
    sg_tensor *alpha, *ctx = sg_additive_attention_step(g, &m, &mem, s, &alpha);
    cr_assert(ctx, "%s", sg_last_error());
    assert_output(f, G, "ctx", ctx);
    assert_output(f, G, "alpha", alpha);
    cr_assert_eq(sg_backward(g, probe_loss(g, ctx, gc, alpha, ga)), SG_OK, "%s", sg_last_error());
    sg_tensor *ds = rd(f, G, "d_s", SG_F32), *dh = rd(f, G, "d_h", SG_F32);
    assert_grad(s, ds, 1e-6, 1e-4, "d_s");
    assert_grad(h, dh, 1e-6, 1e-4, "d_h");
    check_param_grads(f, G, p, "attention", bahdanau_names);
    sg_tensor_free(ds);
    sg_tensor_free(dh);
    sg_tensor_free(s);
    sg_tensor_free(h);
    sg_tensor_free(len);
    sg_tensor_free(gc);
    sg_tensor_free(ga);
    sg_graph_free(g);
    sg_params_free(p);
    H5Fclose(f);
}

typedef struct {
    sg_additive_attention *m;
    sg_tensor *lengths, *mask;
    bool weights; /* check alpha [B, S] instead of the context [B, Hk] */
} bah_user;

static sg_tensor *bahdanau_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    bah_user *u = user;
    sg_attn_memory mem;
    if (sg_additive_attention_precompute(g, u->m, in[1], u->lengths, u->mask, &mem) != SG_OK)
        return NULL;
    sg_tensor *alpha, *ctx = sg_additive_attention_step(g, u->m, &mem, in[0], &alpha);
    return u->weights ? alpha : ctx;
}

Test(bahdanau, gradcheck_with_padded_sources)
{
    sg_rng r;
    sg_rng_seed(&r, 11);
    sg_params *p = sg_params_new(SG_F64);
    sg_additive_attention m;
    cr_assert_eq(sg_additive_attention_init(&m, p, "attention", 3, 4, 5, &r), SG_OK);
    sg_tensor *s = tu_rand64(&r, -1, 1, 2, (int64_t)3, (int64_t)3);
    sg_tensor *h = tu_rand64(&r, -1, 1, 3, (int64_t)3, (int64_t)5, (int64_t)4);
    sg_tensor *len = lengths_of(3, (int64_t[]){5, 2, 1});
    bah_user u = {&m, len, NULL, false};
    sg_tensor *in[] = {s, h, m.query_proj.weight, m.key_proj.weight, m.key_proj.bias,
                       m.energy.weight};
    TU_GRADCHECK(bahdanau_fn, &u, 6, in);
    u.weights = true;
    TU_GRADCHECK(bahdanau_fn, &u, 6, in);
    sg_tensor_free(s);
    sg_tensor_free(h);
    sg_tensor_free(len);
    sg_params_free(p);
}

Test(bahdanau, bool_mask_equals_lengths_and_empty_row_gives_zeros)
{
    sg_rng r;
    sg_rng_seed(&r, 3);
    sg_params *p = sg_params_new(SG_F64);
    sg_additive_attention m;
    sg_additive_attention_init(&m, p, "att", 3, 4, 5, &r);
    sg_tensor *s = tu_rand64(&r, -1, 1, 2, (int64_t)2, (int64_t)3);
    sg_tensor *h = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)4, (int64_t)4);
    sg_tensor *len = lengths_of(2, (int64_t[]){3, 0});
    uint8_t mk[8] = {1, 1, 1, 0, 0, 0, 0, 0};
    sg_tensor *mask = sg_tensor_from_buffer(SG_BOOL, 2, (int64_t[]){2, 4}, mk);
    sg_graph *g = sg_graph_new();
    sg_attn_memory m1, m2;
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &m1), SG_OK);
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, NULL, mask, &m2), SG_OK);
    sg_tensor *a1, *a2;
    sg_tensor *c1 = sg_additive_attention_step(g, &m, &m1, s, &a1);
    sg_tensor *c2 = sg_additive_attention_step(g, &m, &m2, s, &a2);
    tu_assert_close(c1, c2, 0, 0, "ctx lengths vs mask");
    tu_assert_close(a1, a2, 0, 0, "alpha lengths vs mask");
    for (int j = 0; j < 4; j++)
        cr_assert_eq(sg_tensor_get(a1, 4 + j), 0.0);
    cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_add(g, sg_sum_all(g, c1), sg_sum_all(g, a1)))),
                 SG_OK);
    assert_finite(c1, "ctx");
    for (int j = 0; j < 3; j++)
        cr_assert_eq(sg_tensor_grad_get(s, 3 + j), 0.0, "empty row passes no gradient");
    sg_tensor_free(s);
    sg_tensor_free(h);
    sg_tensor_free(len);
    sg_tensor_free(mask);
    sg_graph_free(g);
    sg_params_free(p);
}

/* f32 against f64 with an attention width of 32 (the f32 scores take the AVX2 row kernel
 * on CPUs with AVX2 and no AVX-512), in training (tanh values kept) and no-grad
 * (decoding) mode; then a NaN in one source row of batch row 1 makes that row's scores
 * NaN and leaves row 0 alone. */
Test(bahdanau, f32_matches_f64_at_width_32_and_nan_stays_in_its_row)
{
    int64_t B = 2, S = 5, Hs = 6, C = 8, A = 32;
    sg_params *p[2] = {sg_params_new(SG_F32), sg_params_new(SG_F64)};
    sg_additive_attention m[2];
    for (int k = 0; k < 2; k++) {
        sg_rng r;
        sg_rng_seed(&r, 11); /* the same draws: f64 weights and their f32 roundings */
        cr_assert_eq(sg_additive_attention_init(&m[k], p[k], "att", Hs, C, A, &r), SG_OK);
    }
    sg_rng r;
    sg_rng_seed(&r, 12);
    sg_tensor *s64 = tu_rand64(&r, -3, 3, 2, B, Hs), *h64 = tu_rand64(&r, -3, 3, 3, B, S, C);
    sg_tensor *s32 = sg_tensor_new(SG_F32, 2, (int64_t[]){B, Hs});
    sg_tensor *h32 = sg_tensor_new(SG_F32, 3, (int64_t[]){B, S, C});
    for (int64_t i = 0; i < B * Hs; i++)
        sg_tensor_set(s32, i, sg_tensor_get(s64, i));
    for (int64_t i = 0; i < B * S * C; i++)
        sg_tensor_set(h32, i, sg_tensor_get(h64, i));
    sg_tensor *len = lengths_of(2, (int64_t[]){5, 3});
    for (int grad = 1; grad >= 0; grad--) {
        sg_graph *g = sg_graph_new();
        sg_graph_set_grad_enabled(g, grad);
        sg_tensor *ctx[2], *alpha[2];
        for (int k = 0; k < 2; k++) {
            sg_attn_memory mem;
            cr_assert_eq(sg_additive_attention_precompute(g, &m[k], k ? h64 : h32, len, NULL,
                                                          &mem),
                         SG_OK, "%s", sg_last_error());
            ctx[k] = sg_additive_attention_step(g, &m[k], &mem, k ? s64 : s32, &alpha[k]);
            cr_assert(ctx[k], "%s", sg_last_error());
        }
        tu_assert_close(alpha[0], alpha[1], 2e-6, 2e-5, "alpha f32 vs f64");
        tu_assert_close(ctx[0], ctx[1], 2e-6, 2e-5, "ctx f32 vs f64");
        sg_graph_free(g);
    }
    sg_tensor_set(h32, (1 * S + 1) * C + 2, NAN); /* row 1, source position 1 */
    sg_graph *g = sg_graph_new();
    sg_graph_set_grad_enabled(g, false);
    sg_attn_memory mem;
    cr_assert_eq(sg_additive_attention_precompute(g, &m[0], h32, len, NULL, &mem), SG_OK);
    sg_tensor *alpha, *ctx = sg_additive_attention_step(g, &m[0], &mem, s32, &alpha);
    cr_assert(ctx);
    for (int64_t j = 0; j < S; j++)
        cr_assert(isfinite(sg_tensor_get(alpha, j)), "row 0 weight %lld", (long long)j);
    cr_assert(isnan(sg_tensor_get(alpha, S + 1)), "row 1's NaN key gives a NaN weight");
    sg_graph_free(g);
    sg_tensor_free(s64);
    sg_tensor_free(h64);
    sg_tensor_free(s32);
    sg_tensor_free(h32);
    sg_tensor_free(len);
    for (int k = 0; k < 2; k++)
        sg_params_free(p[k]);
}

Test(bahdanau, rejects_wrong_widths_lengths_and_range)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention m;
    sg_additive_attention_init(&m, p, "attention", 3, 4, 5, NULL);
    sg_graph *g = sg_graph_new();
    sg_tensor *h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    sg_tensor *hbad = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 7});
    sg_attn_memory mem;
    /* wrong key width */
    cr_assert_eq(sg_additive_attention_precompute(g, &m, hbad, NULL, NULL, &mem), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "[2,6,7]"), "%s", sg_last_error());
    sg_graph_reset(g);
    h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    /* lengths array of the wrong size */
    sg_tensor *len3 = lengths_of(3, (int64_t[]){1, 2, 3});
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len3, NULL, &mem), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "lengths"), "%s", sg_last_error());
    sg_graph_reset(g);
    h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    /* a length outside [0, S] */
    sg_tensor *lbad = lengths_of(2, (int64_t[]){7, 2});
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, lbad, NULL, &mem), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "length 7"), "%s", sg_last_error());
    sg_graph_reset(g);
    h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    sg_tensor *lneg = lengths_of(2, (int64_t[]){-1, 2});
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, lneg, NULL, &mem), SG_ERANGE);
    sg_graph_reset(g);
    /* wrong query width */
    h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    sg_tensor *len = lengths_of(2, (int64_t[]){6, 2});
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &mem), SG_OK);
    sg_tensor *q = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 5});
    cr_assert_null(sg_additive_attention_step(g, &m, &mem, q, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "sg_additive_attention_step"), "%s", sg_last_error());
    cr_assert(strstr(sg_last_error(), "[2,5]"), "%s", sg_last_error());
    /* wrong dtype */
    sg_graph_reset(g);
    h = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 6, 4});
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &mem), SG_OK);
    cr_assert_null(sg_additive_attention_step(g, &m, &mem, sg_zeros(g, SG_F64, 2,
                                                                    (int64_t[]){2, 3}), NULL));
    cr_assert_eq(sg_graph_status(g), SG_EDTYPE);
    sg_tensor_free(len3);
    sg_tensor_free(lbad);
    sg_tensor_free(lneg);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
}

/* ---- Luong -------------------------------------------------------------------------- */

static const char *score_name[] = {"dot", "general", "concat"};
static const char *align_name[] = {"global", "local-m", "local-p"};

static void luong_fixture(sg_luong_score sc, sg_luong_align al)
{
    hid_t f = fx_open("attention.h5");
    char G[64];
    snprintf(G, sizeof G, "luong_%s_%s", score_name[sc], align_name[al]);
    hid_t grp = H5Gopen2(f, G, H5P_DEFAULT);
    int64_t t = 0, D = 0, A = 0;
    hid_t at = H5Aopen(grp, "t", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT64, &t);
    H5Aclose(at);
    at = H5Aopen(grp, "D", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT64, &D);
    H5Aclose(at);
    at = H5Aopen(grp, "A", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT64, &A);
    H5Aclose(at);
    H5Gclose(grp);
    sg_params *p = sg_params_new(SG_F32);
    sg_luong_attention m;
    cr_assert_eq(sg_luong_attention_init(&m, p, "attention", sc, al, 4, A, D, NULL), SG_OK);
    const char *names[5];
    int k = 0;
    if (sc != SG_LUONG_DOT)
        names[k++] = "W_a.weight";
    if (sc == SG_LUONG_CONCAT)
        names[k++] = "v.weight";
    if (al == SG_LUONG_LOCAL_P) {
        names[k++] = "W_p.weight";
        names[k++] = "v_p.weight";
    }
    names[k] = NULL;
    cr_assert_eq(sg_params_count(p), k);
    load_params(f, G, p, "attention", names);
    sg_tensor *ht = rd_leaf(f, G, "h_t"), *hbar = rd_leaf(f, G, "hbar");
    sg_tensor *len = rd(f, G, "lengths", SG_I64);
    sg_tensor *gc = rd(f, G, "g_ctx", SG_F32), *ga = rd(f, G, "g_alpha", SG_F32);
    sg_graph *g = sg_graph_new();
    sg_attn_memory mem;
    cr_assert_eq(sg_luong_attention_precompute(g, &m, hbar, len, NULL, &mem), SG_OK, "%s",
                 sg_last_error());
    sg_tensor *alpha, *ctx = sg_luong_attention_step(g, &m, &mem, ht, t, &alpha);
    cr_assert(ctx, "%s", sg_last_error());
    assert_output(f, G, "ctx", ctx);
    assert_output(f, G, "alpha", alpha);
    cr_assert_eq(sg_backward(g, probe_loss(g, ctx, gc, alpha, ga)), SG_OK, "%s", sg_last_error());
    sg_tensor *dht = rd(f, G, "d_h_t", SG_F32), *dhbar = rd(f, G, "d_hbar", SG_F32);
    assert_grad(ht, dht, 1e-6, 1e-4, "d_h_t");
    assert_grad(hbar, dhbar, 1e-6, 1e-4, "d_hbar");
    check_param_grads(f, G, p, "attention", names);
    sg_tensor *list[] = {dht, dhbar, ht, hbar, len, gc, ga};
    for (int i = 0; i < 7; i++)
        sg_tensor_free(list[i]);
    sg_graph_free(g);
    sg_params_free(p);
    H5Fclose(f);
}

#define LUONG_FIXTURE(sc, al, name)                                                          \
    Test(luong, name##_matches_torch_fixture) { luong_fixture(sc, al); }
LUONG_FIXTURE(SG_LUONG_DOT, SG_LUONG_GLOBAL, dot_global)
LUONG_FIXTURE(SG_LUONG_DOT, SG_LUONG_LOCAL_M, dot_local_m)
LUONG_FIXTURE(SG_LUONG_DOT, SG_LUONG_LOCAL_P, dot_local_p)
LUONG_FIXTURE(SG_LUONG_GENERAL, SG_LUONG_GLOBAL, general_global)
LUONG_FIXTURE(SG_LUONG_GENERAL, SG_LUONG_LOCAL_M, general_local_m)
LUONG_FIXTURE(SG_LUONG_GENERAL, SG_LUONG_LOCAL_P, general_local_p)
LUONG_FIXTURE(SG_LUONG_CONCAT, SG_LUONG_GLOBAL, concat_global)
LUONG_FIXTURE(SG_LUONG_CONCAT, SG_LUONG_LOCAL_M, concat_local_m)
LUONG_FIXTURE(SG_LUONG_CONCAT, SG_LUONG_LOCAL_P, concat_local_p)

typedef struct {
    sg_luong_attention *m;
    sg_tensor *lengths;
    int64_t t;
    bool weights;
} luong_user;

static sg_tensor *luong_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    luong_user *u = user;
    sg_attn_memory mem;
    if (sg_luong_attention_precompute(g, u->m, in[1], u->lengths, NULL, &mem) != SG_OK)
        return NULL;
    sg_tensor *alpha, *ctx = sg_luong_attention_step(g, u->m, &mem, in[0], u->t, &alpha);
    return u->weights ? alpha : ctx;
}

static void luong_gradcheck(sg_luong_score sc, sg_luong_align al)
{
    sg_rng r;
    sg_rng_seed(&r, 100 + 3 * (uint64_t)sc + (uint64_t)al);
    sg_params *p = sg_params_new(SG_F64);
    sg_luong_attention m;
    cr_assert_eq(sg_luong_attention_init(&m, p, "attention", sc, al, 3, 4, 2, &r), SG_OK);
    /* larger position-network weights so p_t moves across the source */
    if (m.W_p)
        sg_tensor_uniform_(m.W_p, &r, -1.5, 1.5);
    if (m.v_p)
        sg_tensor_uniform_(m.v_p, &r, -1.5, 1.5);
    sg_tensor *ht = tu_rand64(&r, -1, 1, 2, (int64_t)3, (int64_t)3);
    sg_tensor *hbar = tu_rand64(&r, -1, 1, 3, (int64_t)3, (int64_t)7, (int64_t)3);
    sg_tensor *len = lengths_of(3, (int64_t[]){7, 4, 2});
    luong_user u = {&m, len, 3, false};
    sg_tensor *in[6] = {ht, hbar};
    int n = 2;
    sg_tensor *params[] = {m.W_a, m.v, m.W_p, m.v_p};
    for (int i = 0; i < 4; i++)
        if (params[i])
            in[n++] = params[i];
    TU_GRADCHECK(luong_fn, &u, n, in);
    u.weights = true;
    TU_GRADCHECK(luong_fn, &u, n, in);
    sg_tensor_free(ht);
    sg_tensor_free(hbar);
    sg_tensor_free(len);
    sg_params_free(p);
}

#define LUONG_GRADCHECK(sc, al, name)                                                        \
    Test(luong, name##_gradcheck_with_padded_sources) { luong_gradcheck(sc, al); }
LUONG_GRADCHECK(SG_LUONG_DOT, SG_LUONG_GLOBAL, dot_global)
LUONG_GRADCHECK(SG_LUONG_DOT, SG_LUONG_LOCAL_M, dot_local_m)
LUONG_GRADCHECK(SG_LUONG_DOT, SG_LUONG_LOCAL_P, dot_local_p)
LUONG_GRADCHECK(SG_LUONG_GENERAL, SG_LUONG_GLOBAL, general_global)
LUONG_GRADCHECK(SG_LUONG_GENERAL, SG_LUONG_LOCAL_M, general_local_m)
LUONG_GRADCHECK(SG_LUONG_GENERAL, SG_LUONG_LOCAL_P, general_local_p)
LUONG_GRADCHECK(SG_LUONG_CONCAT, SG_LUONG_GLOBAL, concat_global)
LUONG_GRADCHECK(SG_LUONG_CONCAT, SG_LUONG_LOCAL_M, concat_local_m)
LUONG_GRADCHECK(SG_LUONG_CONCAT, SG_LUONG_LOCAL_P, concat_local_p)

/* The position network only acts through the Gaussian: its gradient is nonzero, and
 * exactly zero when the Gaussian is made flat (huge window: factor ~ 1 everywhere). */
Test(luong, local_p_position_gradient_flows_through_gaussian_only)
{
    sg_rng r;
    sg_rng_seed(&r, 5);
    for (int wide = 0; wide < 2; wide++) {
        sg_params *p = sg_params_new(SG_F64);
        sg_luong_attention m;
        int64_t D = wide ? 100000000 : 2;
        cr_assert_eq(sg_luong_attention_init(&m, p, "attention", SG_LUONG_DOT, SG_LUONG_LOCAL_P,
                                             3, 4, D, &r), SG_OK);
        sg_tensor *ht = tu_rand64(&r, -1, 1, 2, (int64_t)2, (int64_t)3);
        sg_tensor *hbar = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)6, (int64_t)3);
        sg_tensor *len = lengths_of(2, (int64_t[]){6, 4});
        sg_graph *g = sg_graph_new();
        sg_attn_memory mem;
        cr_assert_eq(sg_luong_attention_precompute(g, &m, hbar, len, NULL, &mem), SG_OK);
        sg_tensor *ctx = sg_luong_attention_step(g, &m, &mem, ht, 0, NULL);
        cr_assert_eq(sg_backward(g, sg_sum_all(g, ctx)), SG_OK);
        double nrm = 0;
        for (int64_t i = 0; i < sg_tensor_numel(m.W_p); i++)
            nrm += fabs(sg_tensor_grad_get(m.W_p, i));
        if (wide)
            cr_assert_lt(nrm, 1e-12, "flat Gaussian: W_p gradient %g should vanish", nrm);
        else
            cr_assert_gt(nrm, 1e-6, "W_p receives gradient through the Gaussian");
        sg_tensor_free(ht);
        sg_tensor_free(hbar);
        sg_tensor_free(len);
        sg_graph_free(g);
        sg_params_free(p);
    }
}

Test(luong, local_m_window_is_centred_on_min_t_last)
{
    sg_params *p = sg_params_new(SG_F64);
    sg_luong_attention m;
    sg_luong_attention_init(&m, p, "attention", SG_LUONG_DOT, SG_LUONG_LOCAL_M, 2, 0, 1, NULL);
    sg_graph *g = sg_graph_new();
    sg_tensor *hbar = sg_ones(g, SG_F64, 3, (int64_t[]){1, 8, 2});
    sg_tensor *len = lengths_of(1, (int64_t[]){5});
    sg_attn_memory mem;
    cr_assert_eq(sg_luong_attention_precompute(g, &m, hbar, len, NULL, &mem), SG_OK);
    sg_tensor *h = sg_ones(g, SG_F64, 2, (int64_t[]){1, 2});
    sg_tensor *a;
    sg_luong_attention_step(g, &m, &mem, h, 7, &a); /* p = min(7, 4) = 4: window {3, 4} */
    double want[8] = {0, 0, 0, 0.5, 0.5, 0, 0, 0};
    for (int j = 0; j < 8; j++)
        cr_assert_float_eq(sg_tensor_get(a, j), want[j], 1e-15, "j = %d", j);
    sg_luong_attention_step(g, &m, &mem, h, 0, &a); /* window {0, 1} */
    cr_assert_float_eq(sg_tensor_get(a, 0), 0.5, 1e-15);
    cr_assert_float_eq(sg_tensor_get(a, 2), 0.0, 0);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
}

Test(luong, registers_reference_parameter_names_and_rejects_bad_config)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_luong_attention m;
    cr_assert_eq(sg_luong_attention_init(&m, p, "attention", SG_LUONG_CONCAT, SG_LUONG_LOCAL_P,
                                         4, 5, 3, NULL), SG_OK);
    const char *want[] = {"attention.W_a.weight", "attention.v.weight", "attention.W_p.weight",
                          "attention.v_p.weight"};
    cr_assert_eq(sg_params_count(p), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(sg_params_at(p, i)->name, want[i]);
    cr_assert_eq(m.W_a->shape[0], 5);
    cr_assert_eq(m.W_a->shape[1], 8);
    sg_params *p2 = sg_params_new(SG_F32);
    cr_assert_eq(sg_luong_attention_init(&m, p2, "a", SG_LUONG_DOT, SG_LUONG_LOCAL_M, 4, 0, 0,
                                         NULL), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "window"), "%s", sg_last_error());
    cr_assert_eq(sg_luong_attention_init(&m, p2, "a", (sg_luong_score)7, SG_LUONG_GLOBAL, 4, 0,
                                         0, NULL), SG_EINVAL);
    sg_params_free(p);
    sg_params_free(p2);
}

Test(luong, rejects_wrong_query_width_and_negative_step)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_luong_attention m;
    sg_luong_attention_init(&m, p, "attention", SG_LUONG_GENERAL, SG_LUONG_GLOBAL, 4, 0, 0, NULL);
    sg_graph *g = sg_graph_new();
    sg_attn_memory mem;
    cr_assert_eq(sg_luong_attention_precompute(g, &m, sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 5}),
                                               NULL, NULL, &mem), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "5 features"), "%s", sg_last_error());
    sg_graph_reset(g);
    cr_assert_eq(sg_luong_attention_precompute(g, &m, sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 4}),
                                               NULL, NULL, &mem), SG_OK);
    cr_assert_null(sg_luong_attention_step(g, &m, &mem, sg_zeros(g, SG_F32, 2, (int64_t[]){2, 3}),
                                           0, NULL));
    cr_assert(strstr(sg_last_error(), "[2,3]"), "%s", sg_last_error());
    sg_graph_reset(g);
    cr_assert_eq(sg_luong_attention_precompute(g, &m, sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 4}),
                                               NULL, NULL, &mem), SG_OK);
    cr_assert_null(sg_luong_attention_step(g, &m, &mem, sg_zeros(g, SG_F32, 2, (int64_t[]){2, 4}),
                                           -1, NULL));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    /* both lengths and a mask */
    sg_graph_reset(g);
    sg_tensor *len = lengths_of(2, (int64_t[]){1, 2});
    sg_tensor *mask = sg_tensor_new(SG_BOOL, 2, (int64_t[]){2, 3});
    cr_assert_eq(sg_luong_attention_precompute(g, &m, sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 4}),
                                               len, mask, &mem), SG_EINVAL);
    sg_tensor_free(len);
    sg_tensor_free(mask);
    sg_graph_free(g);
    sg_params_free(p);
}

/* ---- small shapes ------------------------------------------------------------------------- */

Test(bahdanau, single_position_source_returns_that_vector)
{
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention m;
    sg_additive_attention_init(&m, p, "attention", 2, 3, 4, &r);
    sg_graph *g = sg_graph_new();
    sg_tensor *h = sg_randn(g, SG_F32, 3, (int64_t[]){1, 1, 3}, &r);
    sg_tensor *s = sg_randn(g, SG_F32, 2, (int64_t[]){1, 2}, &r);
    sg_attn_memory mem;
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, NULL, NULL, &mem), SG_OK);
    sg_tensor *a, *c = sg_additive_attention_step(g, &m, &mem, s, &a);
    cr_assert(c, "%s", sg_last_error());
    cr_assert_float_eq(sg_tensor_get(a, 0), 1.0, 0);
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq(sg_tensor_get(c, k), sg_tensor_get(h, k), 0);
    cr_assert_eq(sg_additive_attention_precompute(g, &m, h, NULL, NULL, NULL), SG_EINVAL);
    sg_graph_free(g);
    sg_params_free(p);
}


/* The f32 additive scores use a vectorised tanh: compare with f64 over a wide range. */
Test(bahdanau, f32_scores_match_f64_over_wide_range)
{
    sg_rng r;
    sg_rng_seed(&r, 6);
    sg_graph *g = sg_graph_new();
    int64_t B = 4, S = 9, A = 37;
    sg_tensor *q64 = sg_rand(g, SG_F64, 2, (int64_t[]){B, A}, &r);
    sg_tensor *k64 = sg_rand(g, SG_F64, 3, (int64_t[]){B, S, A}, &r);
    sg_tensor *v64 = sg_rand(g, SG_F64, 2, (int64_t[]){1, A}, &r);
    for (int64_t i = 0; i < B * A; i++) /* |q + K| from 0 up to ~14, tiny values too */
        sg_tensor_set(q64, i, (sg_tensor_get(q64, i) - 0.5) * (i % 3 == 0 ? 1e-4 : 14.0));
    for (int64_t i = 0; i < B * S * A; i++)
        sg_tensor_set(k64, i, (sg_tensor_get(k64, i) - 0.5) * (i % 5 == 0 ? 1e-3 : 4.0));
    sg_tensor *q32 = sg_empty(g, SG_F32, 2, q64->shape), *k32 = sg_empty(g, SG_F32, 3, k64->shape);
    sg_tensor *v32 = sg_empty(g, SG_F32, 2, v64->shape);
    sg_tensor_copy_(q32, q64);
    sg_tensor_copy_(k32, k64);
    sg_tensor_copy_(v32, v64);
    sg_tensor_copy_(q64, q32); /* the same rounded inputs on both sides */
    sg_tensor_copy_(k64, k32);
    sg_tensor_copy_(v64, v32);
    sg_tensor *e64 = sg_attn_additive_scores(g, q64, k64, v64, NULL);
    sg_tensor *e32 = sg_attn_additive_scores(g, q32, k32, v32, NULL);
    cr_assert(e64 && e32, "%s", sg_last_error());
    tu_assert_close(e32, e64, 2e-6, 2e-6, "f32 vs f64 additive scores");
    sg_graph_free(g);
}

/* Additive scores whose tanh values pass the size they are kept at (1 MiB a call: made
 * again in backward) give the scores and gradients of v . tanh(q + K_j) composed from
 * sg_add, sg_tanh and sg_matmul, f32 and f64, with padded keys (score 0, no gradient);
 * 4 x 130 x 256 is 0.5 MiB of f32 (kept) and 1.04 MiB of f64 (remade), 8 x 130 x 256
 * remade in both. */
Test(bahdanau, remade_tanh_values_give_the_composed_gradients)
{
    for (int k = 0; k < 4; k++) {
        sg_dtype dt = k & 1 ? SG_F64 : SG_F32;
        int64_t B = k & 2 ? 8 : 4, S = 130, A = 256;
        sg_rng r;
        sg_rng_seed(&r, 12 + (uint64_t)k);
        sg_tensor *q = sg_tensor_new(dt, 2, (int64_t[]){B, A});
        sg_tensor *K = sg_tensor_new(dt, 3, (int64_t[]){B, S, A});
        sg_tensor *v = sg_tensor_new(dt, 2, (int64_t[]){1, A});
        sg_tensor *w = sg_tensor_new(dt, 2, (int64_t[]){B, S});
        sg_tensor *ts[3] = {q, K, v};
        for (int i = 0; i < 3; i++) {
            sg_tensor_normal_(ts[i], &r, 0, 1);
            sg_tensor_set_requires_grad(ts[i], true);
        }
        sg_tensor_normal_(w, &r, 0, 1);
        uint8_t *valid = malloc((size_t)(B * S));
        for (int64_t i = 0; i < B * S; i++)
            valid[i] = i % S < S - 7 * (i / S); /* row b has 7 b padded keys */
        sg_tensor *mask = sg_tensor_new(dt, 2, (int64_t[]){B, S});
        for (int64_t i = 0; i < B * S; i++)
            sg_tensor_set(mask, i, valid[i]);
        sg_tensor *es[2], *grads[2][3];
        sg_graph *gs[2];
        for (int composed = 0; composed < 2; composed++) {
            sg_graph *g = gs[composed] = sg_graph_new();
            sg_tensor *e;
            if (composed) {
                sg_tensor *t = sg_tanh(g, sg_add(g, sg_unsqueeze(g, q, 1), K));
                e = sg_reshape(g, sg_matmul(g, t, sg_transpose(g, v, 0, 1)), 2,
                               (int64_t[]){B, S});
                e = sg_mul(g, e, mask);
            } else {
                e = sg_attn_additive_scores(g, q, K, v, valid);
            }
            cr_assert(e, "%s", sg_last_error());
            es[composed] = e;
            cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, e, w))), SG_OK, "%s",
                         sg_last_error());
            for (int i = 0; i < 3; i++) {
                grads[composed][i] = sg_tensor_from_buffer(dt, ts[i]->ndim, ts[i]->shape,
                                                           ts[i]->grad);
                sg_tensor_zero_grad(ts[i]);
            }
        }
        double tol = dt == SG_F64 ? 1e-12 : 2e-5;
        tu_assert_close(es[0], es[1], tol, tol, "additive scores");
        for (int i = 0; i < 3; i++) {
            char what[64];
            snprintf(what, sizeof what, "additive scores gradient %d (case %d)", i, k);
            tu_assert_close(grads[0][i], grads[1][i], tol, tol, what);
            sg_tensor_free(grads[0][i]);
            sg_tensor_free(grads[1][i]);
        }
        sg_graph_free(gs[0]);
        sg_graph_free(gs[1]);
        for (int i = 0; i < 3; i++)
            sg_tensor_free(ts[i]);
        sg_tensor_free(w);
        sg_tensor_free(mask);
        free(valid);
    }
}

/* A memory's steps keep their tanh values for backward up to a budget (10 MiB), later
 * steps make them again: the arena holds 4 MiB less after 14 steps of 1 MiB than without
 * the budget (mem.tanh_kept NULL: the per-call rule alone), with the same gradients,
 * bitwise. */
Test(bahdanau, tanh_values_kept_within_the_memory_budget_same_gradients)
{
    int64_t B = 8, S = 128, A = 256, Hq = 16, Hk = 8, steps = 14; /* 1 MiB of tanh a step */
    sg_rng r;
    sg_rng_seed(&r, 21);
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention m;
    cr_assert_eq(sg_additive_attention_init(&m, p, "attention", Hq, Hk, A, &r), SG_OK);
    sg_tensor *h = sg_tensor_new(SG_F32, 3, (int64_t[]){B, S, Hk});
    sg_tensor *s = sg_tensor_new(SG_F32, 3, (int64_t[]){steps, B, Hq});
    sg_tensor_normal_(h, &r, 0, 1);
    sg_tensor_normal_(s, &r, 0, 1);
    size_t used[2];
    sg_tensor *grads[2];
    for (int budget = 0; budget < 2; budget++) {
        sg_params_zero_grad(p);
        sg_graph *g = sg_graph_new();
        sg_attn_memory mem;
        cr_assert_eq(sg_additive_attention_precompute(g, &m, h, NULL, NULL, &mem), SG_OK);
        if (!budget)
            mem.tanh_kept = NULL;
        size_t before = sg_arena_used(sg_graph_arena(g));
        sg_tensor *total = NULL;
        for (int64_t t = 0; t < steps; t++) {
            sg_tensor *c = sg_additive_attention_step(g, &m, &mem, sg_select(g, s, 0, t), NULL);
            cr_assert(c, "%s", sg_last_error());
            sg_tensor *l = sg_sum_all(g, sg_mul(g, c, c));
            total = total ? sg_add(g, total, l) : l;
        }
        used[budget] = sg_arena_used(sg_graph_arena(g)) - before;
        cr_assert_eq(sg_backward(g, total), SG_OK, "%s", sg_last_error());
        sg_tensor *w = m.query_proj.weight;
        grads[budget] = sg_tensor_from_buffer(SG_F32, w->ndim, w->shape, w->grad);
        sg_graph_free(g);
    }
    size_t mib = (size_t)1 << 20;
    cr_assert_eq(used[0] - used[1], 4 * mib, "arena: %zu bytes without the budget, %zu with",
                 used[0], used[1]);
    tu_assert_close(grads[1], grads[0], 0, 0, "query_proj.weight's gradient");
    sg_tensor_free(grads[0]);
    sg_tensor_free(grads[1]);
    sg_tensor_free(h);
    sg_tensor_free(s);
    sg_params_free(p);
}

/* Rows split across threads above a size threshold: results must not depend on it. */
Test(bahdanau, threaded_kernels_match_single_thread_bitwise)
{
    sg_tensor *res[2][4];
    for (int run = 0; run < 2; run++) {
        sg_set_num_threads(run ? 2 : 1);
        sg_rng r;
        sg_rng_seed(&r, 77);
        sg_params *p = sg_params_new(SG_F32);
        sg_luong_attention lp;
        sg_luong_attention_init(&lp, p, "lp", SG_LUONG_CONCAT, SG_LUONG_LOCAL_P, 64, 256, 5, &r);
        sg_tensor *hbar = sg_tensor_new(SG_F32, 3, (int64_t[]){8, 20, 64});
        sg_tensor *h = sg_tensor_new(SG_F32, 2, (int64_t[]){8, 64});
        sg_tensor_normal_(hbar, &r, 0, 1);
        sg_tensor_normal_(h, &r, 0, 1);
        sg_tensor_set_requires_grad(hbar, true);
        sg_tensor *len = lengths_of(8, (int64_t[]){20, 19, 18, 12, 11, 5, 3, 1});
        sg_graph *g = sg_graph_new();
        sg_attn_memory mem;
        cr_assert_eq(sg_luong_attention_precompute(g, &lp, hbar, len, NULL, &mem), SG_OK);
        sg_tensor *a, *c = sg_luong_attention_step(g, &lp, &mem, h, 2, &a);
        cr_assert(c, "%s", sg_last_error());
        cr_assert_eq(sg_backward(g, sg_add(g, sg_sum_all(g, sg_mul(g, c, c)), sg_sum_all(g, a))),
                     SG_OK);
        res[run][0] = sg_tensor_clone(c);
        res[run][1] = sg_tensor_from_buffer(SG_F32, 3, hbar->shape, hbar->grad);
        res[run][2] = sg_tensor_from_buffer(SG_F32, 2, lp.W_a->shape, lp.W_a->grad);
        res[run][3] = sg_tensor_from_buffer(SG_F32, 2, lp.W_p->shape, lp.W_p->grad);
        sg_tensor_free(hbar);
        sg_tensor_free(h);
        sg_tensor_free(len);
        sg_graph_free(g);
        sg_params_free(p);
    }
    sg_set_num_threads(1);
    for (int k = 0; k < 4; k++) {
        tu_assert_close(res[1][k], res[0][k], 0, 0, "2 threads vs 1");
        sg_tensor_free(res[0][k]);
        sg_tensor_free(res[1][k]);
    }
}

/* Decoding's row map (sg_attn_memory.rows): query rows that read their sentence's memory
 * row give what copies of those rows give; with gradients it is refused, a row outside
 * the memory is an error; the Luong step takes a map with global alignment only. */
Test(bahdanau, row_map_equals_copied_rows)
{
    enum { BM = 3, S = 7, R = 5, HQ = 6, HK = 8, A = 5 };
    const int64_t rows[R] = {2, 0, 0, 1, 2}, bad[R] = {2, 0, 3, 1, 2};
    for (int d = 0; d < 2; d++) {
        sg_dtype dt = d ? SG_F64 : SG_F32;
        sg_rng r;
        sg_rng_seed(&r, 91);
        sg_params *p = sg_params_new(dt);
        sg_additive_attention m;
        cr_assert_eq(sg_additive_attention_init(&m, p, "a", HQ, HK, A, &r), SG_OK);
        sg_tensor *h = sg_tensor_new(dt, 3, (int64_t[]){BM, S, HK});
        sg_tensor *hc = sg_tensor_new(dt, 3, (int64_t[]){R, S, HK});
        sg_tensor *s = sg_tensor_new(dt, 2, (int64_t[]){R, HQ});
        sg_tensor_normal_(h, &r, 0, 1);
        sg_tensor_normal_(s, &r, 0, 1);
        for (int64_t i = 0; i < R * S * HK; i++) /* row i of hc = row rows[i] of h */
            sg_tensor_set(hc, i, sg_tensor_get(h, rows[i / (S * HK)] * S * HK + i % (S * HK)));
        sg_tensor *len = lengths_of(BM, (int64_t[]){7, 3, 5});
        sg_tensor *lenc = lengths_of(R, (int64_t[]){5, 7, 7, 3, 5});
        sg_graph *g = sg_graph_new();
        sg_graph_set_grad_enabled(g, false);
        sg_attn_memory mem, memc;
        cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &mem), SG_OK);
        cr_assert_eq(sg_additive_attention_precompute(g, &m, hc, lenc, NULL, &memc), SG_OK);
        mem.rows = rows;
        mem.B = R;
        sg_tensor *a1, *c1 = sg_additive_attention_step(g, &m, &mem, s, &a1);
        sg_tensor *a2, *c2 = sg_additive_attention_step(g, &m, &memc, s, &a2);
        cr_assert(c1 && c2, "%s", sg_last_error());
        double tol = d ? 1e-12 : 1e-6;
        tu_assert_close(c1, c2, tol, tol, "context with a row map vs copied rows");
        tu_assert_close(a1, a2, tol, tol, "weights with a row map vs copied rows");
        mem.rows = bad; /* memory row 3 of 3 */
        cr_assert_null(sg_additive_attention_step(g, &m, &mem, s, NULL));
        cr_assert_eq(sg_graph_status(g), SG_ERANGE, "%s", sg_last_error());
        sg_graph_free(g);

        g = sg_graph_new(); /* gradients on: the map is refused */
        cr_assert_eq(sg_additive_attention_precompute(g, &m, h, len, NULL, &mem), SG_OK);
        mem.rows = rows;
        mem.B = R;
        cr_assert_null(sg_additive_attention_step(g, &m, &mem, s, NULL));
        cr_assert_eq(sg_graph_status(g), SG_EINVAL);
        cr_assert(strstr(sg_last_error(), "row map"), "%s", sg_last_error());
        sg_graph_free(g);

        /* the Luong step: with global alignment (every score), the map gives what copied
         * rows give; a local window needs per-row copies and rejects it */
        sg_tensor *hq = sg_tensor_new(dt, 2, (int64_t[]){R, HK});
        sg_tensor_normal_(hq, &r, 0, 1);
        const sg_luong_score scores[3] = {SG_LUONG_DOT, SG_LUONG_GENERAL, SG_LUONG_CONCAT};
        for (int k = 0; k < 4; k++) {
            sg_luong_attention lm;
            char name[8];
            snprintf(name, sizeof name, "l%d", k);
            cr_assert_eq(sg_luong_attention_init(&lm, p, name, scores[k % 3],
                                                 k < 3 ? SG_LUONG_GLOBAL : SG_LUONG_LOCAL_M, HK,
                                                 A, 2, &r),
                         SG_OK, "%s", sg_last_error());
            g = sg_graph_new();
            sg_graph_set_grad_enabled(g, false);
            cr_assert_eq(sg_luong_attention_precompute(g, &lm, h, len, NULL, &mem), SG_OK);
            cr_assert_eq(sg_luong_attention_precompute(g, &lm, hc, lenc, NULL, &memc), SG_OK);
            mem.rows = rows;
            mem.B = R;
            sg_tensor *la1, *lc1 = sg_luong_attention_step(g, &lm, &mem, hq, 0, &la1);
            if (k == 3) {
                cr_assert_null(lc1);
                cr_assert_eq(sg_graph_status(g), SG_EINVAL);
                cr_assert(strstr(sg_last_error(), "global alignment"), "%s", sg_last_error());
            } else {
                sg_tensor *la2, *lc2 = sg_luong_attention_step(g, &lm, &memc, hq, 0, &la2);
                cr_assert(lc1 && lc2, "%s", sg_last_error());
                tu_assert_close(lc1, lc2, tol, tol, "Luong context with a row map vs copies");
                tu_assert_close(la1, la2, tol, tol, "Luong weights with a row map vs copies");
            }
            sg_graph_free(g);
        }
        sg_tensor_free(hq);
        sg_tensor_free(h), sg_tensor_free(hc), sg_tensor_free(s);
        sg_tensor_free(len), sg_tensor_free(lenc);
        sg_params_free(p);
    }
}

/* f32 context backward (a clone per row with a 32-lane dot) against f64 on the same
 * rounded inputs, wide enough (D = 75) for the dot's whole blocks and its tail, with a
 * masked key, with and without the local-p Gaussian. */
static sg_tensor *leaf_like(const sg_tensor *src, sg_dtype dt)
{
    sg_tensor *t = sg_tensor_new(dt, src->ndim, src->shape);
    sg_tensor_copy_(t, src);
    sg_tensor_set_requires_grad(t, true);
    return t;
}

static void context_f32_vs_f64(bool with_pos)
{
    sg_rng r;
    sg_rng_seed(&r, 11);
    int64_t B = 3, S = 7, D = 75;
    sg_graph *g = sg_graph_new();
    sg_tensor *e0 = sg_rand(g, SG_F32, 2, (int64_t[]){B, S}, &r);
    sg_tensor *v0 = sg_rand(g, SG_F32, 3, (int64_t[]){B, S, D}, &r);
    sg_tensor *gc0 = sg_rand(g, SG_F32, 2, (int64_t[]){B, D}, &r);
    sg_tensor *p0 = sg_rand(g, SG_F32, 1, (int64_t[]){B}, &r);
    for (int64_t i = 0; i < B * S * D; i++)
        sg_tensor_set(v0, i, sg_tensor_get(v0, i) * 4 - 2);
    for (int64_t i = 0; i < B; i++)
        sg_tensor_set(p0, i, sg_tensor_get(p0, i) * (double)(S - 1));
    uint8_t valid[3 * 7];
    for (int i = 0; i < 3 * 7; i++)
        valid[i] = i % 7 != 5; /* key 5 of every row is padding */
    sg_tensor *out[2][4]; /* [dtype][e, V, pos, context] */
    for (int k = 0; k < 2; k++) {
        sg_dtype dt = k ? SG_F64 : SG_F32;
        sg_tensor *e = leaf_like(e0, dt), *v = leaf_like(v0, dt), *gc = leaf_like(gc0, dt);
        sg_tensor *pos = with_pos ? leaf_like(p0, dt) : NULL;
        sg_tensor *c = sg_attn_context(g, e, v, valid, pos, 2.0, NULL);
        cr_assert(c, "%s", sg_last_error());
        cr_assert_eq(sg_backward(g, probe_loss(g, c, gc, NULL, NULL)), SG_OK, "%s",
                     sg_last_error());
        out[k][0] = e, out[k][1] = v, out[k][2] = pos, out[k][3] = c;
        sg_tensor_free(gc);
    }
    static const char *what[] = {"d scores", "d values", "d pos"};
    for (int i = 0; i < 3; i++) {
        if (!out[0][i])
            continue;
        int64_t n = sg_tensor_numel(out[0][i]);
        for (int64_t j = 0; j < n; j++) {
            double a = sg_tensor_grad_get(out[0][i], j), b = sg_tensor_grad_get(out[1][i], j);
            cr_assert(fabs(a - b) <= 2e-5 + 2e-5 * fabs(b), "%s[%lld]: f32 %.9g vs f64 %.9g",
                      what[i], (long long)j, a, b);
        }
    }
    tu_assert_close(out[0][3], out[1][3], 1e-5, 1e-5, "f32 vs f64 context");
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            sg_tensor_free(out[k][i]);
    sg_graph_free(g);
}

Test(attention, f32_context_gradients_match_f64) { context_f32_vs_f64(false); }
Test(attention, f32_local_p_context_gradients_match_f64) { context_f32_vs_f64(true); }
