/* test_attention.c - RNN attention (Bahdanau, Luong), multi-head attention, LayerNorm,
 * positions, feed-forward: f64 gradchecks, PyTorch parity (tests/fixtures/attention.h5),
 * incremental decoding and error paths. */
#include <string.h>

#pragma GCC diagnostic ignored "-Wcomment" /* fixture.h's header comment has a glob */
#include "fixture.h"
#include "sg_nn.h"
#include "test_util.h"

/* ---- helpers ---------------------------------------------------------------------- */

static sg_tensor *rd(hid_t f, const char *grp, const char *name, sg_dtype dt)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    return fx_read(f, path, dt);
}

/* A fixture tensor as a leaf requiring grad. */
static sg_tensor *rd_leaf(hid_t f, const char *grp, const char *name)
{
    sg_tensor *t = rd(f, grp, name, SG_F32);
    cr_assert_eq(sg_tensor_set_requires_grad(t, true), SG_OK);
    return t;
}

/* Copies grp/p/<name> into the store's prefix.name for each name. */
static void load_params(hid_t f, const char *grp, sg_params *p, const char *prefix,
                        const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        char full[SG_PARAM_NAME_MAX], path[256];
        sg_param_name(full, prefix, names[i]);
        snprintf(path, sizeof path, "p/%s", names[i]);
        sg_tensor *dst = sg_params_find(p, full), *src = rd(f, grp, path, SG_F32);
        cr_assert(dst, "no parameter %s", full);
        cr_assert_eq(sg_tensor_copy_(dst, src), SG_OK, "%s: %s", full, sg_last_error());
        sg_tensor_free(src);
    }
}

static void assert_grad(const sg_tensor *t, const sg_tensor *ref, double atol, double rtol,
                        const char *what)
{
    cr_assert(t->grad, "%s has no gradient", what);
    sg_tensor *gt = sg_tensor_from_buffer(t->dtype, t->ndim, t->shape, t->grad);
    tu_assert_close(gt, ref, atol, rtol, what);
    sg_tensor_free(gt);
}

static void check_param_grads(hid_t f, const char *grp, sg_params *p, const char *prefix,
                              const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        char full[SG_PARAM_NAME_MAX], path[256];
        sg_param_name(full, prefix, names[i]);
        snprintf(path, sizeof path, "d/%s", names[i]);
        sg_tensor *ref = rd(f, grp, path, SG_F32);
        assert_grad(sg_params_find(p, full), ref, 1e-6, 1e-4, full);
        sg_tensor_free(ref);
    }
}

static void assert_output(hid_t f, const char *grp, const char *name, const sg_tensor *t)
{
    sg_tensor *ref = rd(f, grp, name, SG_F32);
    char what[128];
    snprintf(what, sizeof what, "%s/%s", grp, name);
    tu_assert_close(t, ref, 1e-6, 1e-5, what);
    sg_tensor_free(ref);
}

static sg_tensor *lengths_of(int n, const int64_t *v)
{
    return sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){n}, v);
}

/* sum(a * ga) + sum(b * gb) (b may be NULL) */
static sg_tensor *probe_loss(sg_graph *g, sg_tensor *a, sg_tensor *ga, sg_tensor *b,
                             sg_tensor *gb)
{
    sg_tensor *l = sg_sum_all(g, sg_mul(g, a, ga));
    return b ? sg_add(g, l, sg_sum_all(g, sg_mul(g, b, gb))) : l;
}

static void assert_finite(const sg_tensor *t, const char *what)
{
    for (int64_t i = 0; i < sg_tensor_numel(t); i++)
        cr_assert(isfinite(sg_tensor_get(t, i)), "%s[%lld] is not finite", what, (long long)i);
}

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

/* The ReLU feed-forward block's fused ReLU + dropout (written over linear1's output, no
 * mask kept) gives exactly what sg_relu + sg_dropout give with the same rng: the output
 * and every gradient, f32 and f64, in training (17 x 9 x 70: mask chunks and an odd
 * tail) and in evaluation. */
Test(feedforward, fused_relu_dropout_equals_relu_then_dropout)
{
    for (int d = 0; d < 2; d++)
        for (int train = 0; train < 2; train++) {
            sg_dtype dt = d ? SG_F64 : SG_F32;
            sg_rng r;
            sg_rng_seed(&r, 5);
            sg_params *p = sg_params_new(dt);
            sg_feedforward ff;
            cr_assert_eq(sg_feedforward_init(&ff, p, "ff", 9, 70, SG_ACT_RELU, 0.3, &r), SG_OK);
            sg_tensor *x = sg_tensor_new(dt, 3, (int64_t[]){17, 9, 9});
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
                    y = sg_feedforward_forward(g, &ff, x, train, &dr);
                } else {
                    sg_tensor *h = sg_relu(g, sg_linear_layer_forward(g, &ff.linear1, x));
                    h = sg_dropout(g, h, 0.3, train, &dr);
                    y = sg_linear_layer_forward(g, &ff.linear2, h);
                }
                cr_assert(y, "%s", sg_last_error());
                ys[fused] = y;
                cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, y))), SG_OK);
                sg_tensor *leaves[5] = {x, ff.linear1.weight, ff.linear1.bias,
                                        ff.linear2.weight, ff.linear2.bias};
                for (int k = 0; k < 5; k++) {
                    grads[fused][k] = sg_tensor_from_buffer(dt, leaves[k]->ndim,
                                                            leaves[k]->shape, leaves[k]->grad);
                    sg_tensor_zero_grad(leaves[k]);
                }
            }
            tu_assert_close(ys[1], ys[0], 0, 0, "fused output");
            for (int k = 0; k < 5; k++) {
                tu_assert_close(grads[1][k], grads[0][k], 0, 0, "fused gradient");
                sg_tensor_free(grads[0][k]);
                sg_tensor_free(grads[1][k]);
            }
            sg_graph_free(gs[0]);
            sg_graph_free(gs[1]);
            sg_tensor_free(x);
            sg_params_free(p);
        }
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

/* post-LN encoder and pre-LN decoder layers, without and with dropout in training (the
 * fused residual dropout and ReLU dropout) */
Test(transformer_layer, gradcheck_encoder_and_decoder_layers)
{
    for (int k = 0; k < 4; k++) {
        int dec = k % 2;
        bool train = k >= 2;
        sg_rng r;
        sg_rng_seed(&r, 50 + (uint64_t)dec);
        sg_params *p = sg_params_new(SG_F64);
        sg_transformer_layer m;
        cr_assert_eq(sg_transformer_layer_init(&m, p, "l", dec, 4, 2, 6, train ? 0.3 : 0.0,
                                               dec == 1, &r),
                     SG_OK);
        sg_params_uniform_(p, &r, -0.7, 0.7);
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
