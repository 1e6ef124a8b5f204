/* test_rnn.c - GRU and LSTM: PyTorch parity (fixtures/rnn.h5 from
 * tools/gen_fixtures_rnn.py), f64 gradchecks, single-step cells, error paths. */
#include <string.h>

/* fixture.h nests a comment opener in a comment (not ours to edit) */
#pragma GCC diagnostic ignored "-Wcomment"
#include "fixture.h"
#include "sg_nn.h"
#include "test_util.h"

/* ---- PyTorch parity ---------------------------------------------------------- */

static sg_tensor *read_as(hid_t f, const char *cell, const char *name, sg_dtype dt)
{
    char path[320];
    snprintf(path, sizeof path, "%s/%s", cell, name);
    return fx_read(f, path, dt);
}

/* Runs the fixture's 2-layer bidirectional module in dt and compares outputs
 * (|a-b| <= atol + rtol |b|) and every gradient (gatol, grtol). */
static void check_fixture(sg_rnn_cell cell, sg_dtype dt, double atol, double rtol, double gatol,
                          double grtol)
{
    const char *cn = cell == SG_RNN_LSTM ? "lstm" : "gru";
    bool lstm = cell == SG_RNN_LSTM;
    hid_t f = fx_open("rnn.h5");
    sg_tensor *x = read_as(f, cn, "x", dt), *h0 = read_as(f, cn, "h0", dt);
    sg_tensor *len = read_as(f, cn, "lengths", SG_I64);
    sg_tensor *c0 = lstm ? read_as(f, cn, "c0", dt) : NULL;
    sg_tensor_set_requires_grad(x, true);
    sg_tensor_set_requires_grad(h0, true);
    if (c0)
        sg_tensor_set_requires_grad(c0, true);
    sg_params *p = sg_params_new(dt);
    sg_rnn m;
    sg_rnn_config cfg = {.input_size = x->shape[2], .hidden_size = h0->shape[2],
                         .num_layers = 2, .bidirectional = true};
    int rc = lstm ? sg_lstm_init(&m, p, "rnn", &cfg, NULL) : sg_gru_init(&m, p, "rnn", &cfg, NULL);
    cr_assert_eq(rc, SG_OK, "%s", sg_last_error());
    cr_assert_eq(sg_params_count(p), 16);
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        char name[256];
        snprintf(name, sizeof name, "param/%s", e->name + 4); /* drop "rnn." */
        sg_tensor *v = read_as(f, cn, name, dt);
        cr_assert_eq(sg_tensor_copy_(e->value, v), SG_OK, "%s: %s", e->name, sg_last_error());
        sg_tensor_free(v);
    }

    sg_graph *g = sg_graph_new();
    sg_rnn_opts o = {.lengths = len, .h0 = h0, .c0 = c0};
    sg_tensor *hn = NULL, *cnn = NULL;
    sg_tensor *out = sg_rnn_forward(g, &m, x, &o, &hn, &cnn);
    cr_assert(out, "%s", sg_last_error());
    sg_tensor *wy = read_as(f, cn, "wy", dt), *wh = read_as(f, cn, "wh", dt);
    sg_tensor *loss = sg_add(g, sg_sum_all(g, sg_mul(g, out, wy)),
                             sg_sum_all(g, sg_mul(g, hn, wh)));
    sg_tensor *wc = lstm ? read_as(f, cn, "wc", dt) : NULL;
    if (lstm)
        loss = sg_add(g, loss, sg_sum_all(g, sg_mul(g, cnn, wc)));
    cr_assert(loss, "%s", sg_last_error());
    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());

    sg_tensor *ref = read_as(f, cn, "out", SG_F64);
    tu_assert_close(out, ref, atol, rtol, "output");
    sg_tensor_free(ref);
    ref = read_as(f, cn, "h_n", SG_F64);
    tu_assert_close(hn, ref, atol, rtol, "h_n");
    sg_tensor_free(ref);
    if (lstm) {
        ref = read_as(f, cn, "c_n", SG_F64);
        tu_assert_close(cnn, ref, atol, rtol, "c_n");
        sg_tensor_free(ref);
    }
    /* gradients: every parameter, x, h0 (c0) */
    for (int i = 0; i < sg_params_count(p) + 3; i++) {
        sg_tensor *t;
        char name[256];
        if (i < sg_params_count(p)) {
            const sg_param *e = sg_params_at(p, i);
            t = e->value;
            snprintf(name, sizeof name, "grad/%s", e->name + 4);
        } else if (i == sg_params_count(p)) {
            t = x;
            snprintf(name, sizeof name, "grad/x");
        } else if (i == sg_params_count(p) + 1) {
            t = h0;
            snprintf(name, sizeof name, "grad/h0");
        } else {
            if (!lstm)
                continue;
            t = c0;
            snprintf(name, sizeof name, "grad/c0");
        }
        ref = read_as(f, cn, name, SG_F64);
        sg_tensor *gt = sg_tensor_new(dt, t->ndim, t->shape);
        memcpy(gt->data, t->grad, (size_t)sg_tensor_numel(t) * sg_dtype_size(dt));
        tu_assert_close(gt, ref, gatol, grtol, name);
        sg_tensor_free(gt);
        sg_tensor_free(ref);
    }
    sg_graph_free(g);
    sg_params_free(p);
    sg_tensor_free(x);
    sg_tensor_free(h0);
    sg_tensor_free(c0);
    sg_tensor_free(len);
    sg_tensor_free(wy);
    sg_tensor_free(wh);
    sg_tensor_free(wc);
    H5Fclose(f);
}

Test(gru, matches_torch_fixture_f32)
{
    check_fixture(SG_RNN_GRU, SG_F32, 1e-6, 1e-5, 1e-6, 1e-5);
}

Test(gru, matches_torch_fixture_f64)
{
    check_fixture(SG_RNN_GRU, SG_F64, 1e-12, 1e-10, 1e-12, 1e-10);
}

Test(lstm, matches_torch_fixture_f32)
{
    check_fixture(SG_RNN_LSTM, SG_F32, 1e-6, 1e-5, 1e-6, 1e-5);
}

Test(lstm, matches_torch_fixture_f64)
{
    check_fixture(SG_RNN_LSTM, SG_F64, 1e-12, 1e-10, 1e-12, 1e-10);
}

/* ---- gradchecks (f64) ------------------------------------------------------------ */

typedef struct {
    sg_rnn m;
    sg_tensor *len;
    int what; /* 0: output, 1: h_n, 2: c_n */
    bool no_h0; /* zero initial states (the inputs are then unused) */
    double dropout; /* > 0: training, the same masks at every evaluation */
} gc_rnn;

/* inputs: x, h0, c0 (LSTM), then the module's parameters (already in m) */
static sg_tensor *gc_rnn_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    gc_rnn *u = user;
    bool lstm = u->m.cell == SG_RNN_LSTM;
    sg_rnn_opts o = {.lengths = u->len, .h0 = in[1], .c0 = lstm ? in[2] : NULL};
    if (u->no_h0)
        o.h0 = o.c0 = NULL;
    sg_rng r;
    sg_rng_seed(&r, 17);
    if (u->dropout > 0) {
        o.training = true;
        o.rng = &r;
    }
    sg_tensor *hn = NULL, *cn = NULL;
    sg_tensor *out = sg_rnn_forward(g, &u->m, in[0], &o, &hn, &cn);
    return u->what == 0 ? out : u->what == 1 ? hn : cn;
}

/* full: every row runs all T steps (no lengths), so the rows keep their order and the
 * run reads the state before step 0 from h0 / c0 themselves */
static void gradcheck_module_drop(sg_rnn_cell cell, bool cho, int n_layers, bool bidir,
                                  bool no_h0, bool full, double dropout)
{
    bool lstm = cell == SG_RNN_LSTM;
    sg_rng r;
    sg_rng_seed(&r, 3);
    int64_t B = 3, T = 4, I = 3, H = 2, LD = n_layers * (bidir ? 2 : 1);
    gc_rnn u = {.what = 0, .no_h0 = no_h0, .dropout = dropout};
    sg_params *p = sg_params_new(SG_F64);
    sg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = n_layers,
                         .bidirectional = bidir, .reset_before_matmul = cho,
                         .dropout = dropout};
    int rc = lstm ? sg_lstm_init(&u.m, p, "", &cfg, &r) : sg_gru_init(&u.m, p, "", &cfg, &r);
    cr_assert_eq(rc, SG_OK, "%s", sg_last_error());
    sg_params_uniform_(p, &r, -0.8, 0.8);
    u.len = full ? NULL : sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){B}, (int64_t[]){2, 4, 1});
    sg_tensor *in[64];
    int n = 0;
    in[n++] = tu_rand64(&r, -1, 1, 3, B, T, I);
    in[n++] = tu_rand64(&r, -1, 1, 3, LD, B, H);
    if (lstm)
        in[n++] = tu_rand64(&r, -1, 1, 3, LD, B, H);
    int n_own = n;
    for (int i = 0; i < sg_params_count(p); i++)
        in[n++] = sg_params_at(p, i)->value;
    for (u.what = 0; u.what < (lstm ? 3 : 2); u.what++)
        TU_GRADCHECK(gc_rnn_fn, &u, n, in);
    for (int i = 0; i < n_own; i++)
        sg_tensor_free(in[i]);
    sg_tensor_free(u.len);
    sg_params_free(p);
}

static void gradcheck_module_ex(sg_rnn_cell cell, bool cho, int n_layers, bool bidir,
                                bool no_h0, bool full)
{
    gradcheck_module_drop(cell, cho, n_layers, bidir, no_h0, full, 0);
}

static void gradcheck_module(sg_rnn_cell cell, bool cho, int n_layers, bool bidir, bool no_h0)
{
    gradcheck_module_ex(cell, cho, n_layers, bidir, no_h0, false);
}

/* ---- sg_rnn_forward_ids ------------------------------------------------------- */

typedef struct {
    sg_rnn m;
    sg_tensor *ids, *len;
    int what; /* 0: output, 1: h_n, 2: c_n */
    bool via_lookup; /* sg_embedding_lookup then sg_rnn_forward, for comparison */
} gc_ids;

/* inputs: the table, then the module's parameters (already in m) */
static sg_tensor *gc_ids_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    gc_ids *u = user;
    sg_rnn_opts o = {.lengths = u->len};
    sg_tensor *hn = NULL, *cn = NULL;
    sg_tensor *out = u->via_lookup
                         ? sg_rnn_forward(g, &u->m, sg_embedding_lookup(g, in[0], u->ids, 0), &o,
                                          &hn, &cn)
                         : sg_rnn_forward_ids(g, &u->m, in[0], u->ids, 0, &o, &hn, &cn);
    return u->what == 0 ? out : u->what == 1 ? hn : cn;
}

/* 4 words at 3 x 4 positions (the per-word projection) and 20 words (the plain path):
 * gradients by central differences w.r.t. the table and every parameter, and the same
 * outputs and gradients as sg_embedding_lookup then sg_rnn_forward (pad id 0 included:
 * the table's row 0 gets no gradient either way). */
static void check_rnn_ids(sg_rnn_cell cell, bool cho, int n_layers, bool bidir)
{
    bool lstm = cell == SG_RNN_LSTM;
    sg_rng r;
    sg_rng_seed(&r, 5);
    int64_t B = 3, T = 4, I = 3, H = 2;
    for (int64_t V = 4; V <= 20; V += 16) {
        gc_ids u = {0};
        sg_params *p = sg_params_new(SG_F64);
        sg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = n_layers,
                             .bidirectional = bidir, .reset_before_matmul = cho};
        int rc = lstm ? sg_lstm_init(&u.m, p, "", &cfg, &r) : sg_gru_init(&u.m, p, "", &cfg, &r);
        cr_assert_eq(rc, SG_OK, "%s", sg_last_error());
        sg_params_uniform_(p, &r, -0.8, 0.8);
        int64_t ids[12] = {1, 3, 0, 0, 2, 1, 3, 2, 3, 0, 0, 0}; /* lengths 2, 4, 1; pads 0 */
        if (V > 4)
            ids[5] = 17;
        u.ids = sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){B, T}, ids);
        u.len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){B}, (int64_t[]){2, 4, 1});
        sg_tensor *in[64];
        int n = 0;
        in[n++] = tu_rand64(&r, -1, 1, 2, V, I);
        for (int i = 0; i < sg_params_count(p); i++)
            in[n++] = sg_params_at(p, i)->value;
        for (u.what = 0; u.what < (lstm ? 3 : 2); u.what++) {
            TU_GRADCHECK(gc_ids_fn, &u, n, in);
            /* output and table gradient, both ways; then the output of forward_ids in a
             * graph that records nothing (its gates are one step's rows) */
            double val[3][64], grad[2][64];
            for (int way = 0; way < 3; way++) {
                u.via_lookup = way == 1;
                sg_graph *g = sg_graph_new();
                sg_graph_set_grad_enabled(g, way < 2);
                for (int i = 0; i < n; i++)
                    sg_tensor_zero_grad(in[i]);
                sg_tensor *y = gc_ids_fn(g, in, &u);
                cr_assert(y, "%s", sg_last_error());
                if (way < 2) {
                    sg_tensor *sum = sg_sum_all(g, sg_mul(g, y, y));
                    cr_assert_eq(sg_backward(g, sum), SG_OK, "%s", sg_last_error());
                    for (int64_t k = 0; k < V * I && k < 64; k++)
                        grad[way][k] = sg_tensor_grad_get(in[0], k);
                }
                for (int64_t k = 0; k < sg_tensor_numel(y) && k < 64; k++)
                    val[way][k] = sg_tensor_get(y, k);
                int64_t ny = sg_tensor_numel(y);
                for (int64_t k = 0; k < ny && k < 64 && way > 0; k++)
                    cr_assert_float_eq(val[0][k], val[way][k], 1e-12,
                                       "V %lld what %d way %d value %lld", (long long)V, u.what,
                                       way, (long long)k);
                sg_graph_free(g);
            }
            u.via_lookup = false;
            for (int64_t k = 0; k < V * I && k < 64; k++)
                cr_assert_float_eq(grad[0][k], grad[1][k], 1e-12, "V %lld what %d d(table) %lld",
                                   (long long)V, u.what, (long long)k);
            for (int64_t k = 0; k < I; k++) /* the padding row */
                cr_assert_eq(grad[0][k], 0.0);
        }
        sg_tensor_free(in[0]);
        sg_tensor_free(u.ids);
        sg_tensor_free(u.len);
        sg_params_free(p);
    }
}

Test(gru, forward_ids_gradcheck_and_equals_lookup_bidirectional_two_layers)
{
    check_rnn_ids(SG_RNN_GRU, false, 2, true);
}

Test(gru, forward_ids_gradcheck_and_equals_lookup_cho_bidirectional)
{
    check_rnn_ids(SG_RNN_GRU, true, 1, true);
}

Test(lstm, forward_ids_gradcheck_and_equals_lookup)
{
    check_rnn_ids(SG_RNN_LSTM, false, 1, false);
}

Test(gru, forward_ids_rejects_bad_ids_and_tables)
{
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_params *p = sg_params_new(SG_F32);
    sg_rnn m;
    sg_rnn_config cfg = {.input_size = 3, .hidden_size = 2, .num_layers = 1};
    cr_assert_eq(sg_gru_init(&m, p, "", &cfg, &r), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *table = sg_zeros(g, SG_F32, 2, (int64_t[]){4, 3});
    sg_tensor *ids = sg_zeros(g, SG_I64, 2, (int64_t[]){3, 4});
    ((int64_t *)ids->data)[7] = 4; /* outside the table */
    cr_assert_null(sg_rnn_forward_ids(g, &m, table, ids, 0, NULL, NULL, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "position 7"), "%s", sg_last_error());
    sg_graph_reset(g);
    table = sg_zeros(g, SG_F32, 2, (int64_t[]){4, 5});
    ids = sg_zeros(g, SG_I64, 2, (int64_t[]){3, 4});
    cr_assert_null(sg_rnn_forward_ids(g, &m, table, ids, 0, NULL, NULL, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "table"), "%s", sg_last_error());
    sg_graph_reset(g);
    table = sg_zeros(g, SG_F32, 2, (int64_t[]){4, 3});
    ids = sg_zeros(g, SG_I64, 1, (int64_t[]){12});
    cr_assert_null(sg_rnn_forward_ids(g, &m, table, ids, 0, NULL, NULL, NULL));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "ids"), "%s", sg_last_error());
    sg_graph_free(g);
    sg_params_free(p);
}

Test(rnn, gradcheck_full_lengths_initial_state_read_in_place)
{
    gradcheck_module_ex(SG_RNN_GRU, false, 2, true, false, true);
    gradcheck_module_ex(SG_RNN_GRU, true, 1, false, false, true);
    gradcheck_module_ex(SG_RNN_LSTM, false, 2, true, false, true);
}

Test(gru, gradcheck_bidirectional_two_layers_unequal_lengths)
{
    gradcheck_module(SG_RNN_GRU, false, 2, true, false);
}

Test(gru, gradcheck_zero_initial_state)
{
    gradcheck_module(SG_RNN_GRU, false, 2, true, true);
    gradcheck_module(SG_RNN_GRU, true, 1, true, true);
}

Test(gru, gradcheck_cho_variant)
{
    gradcheck_module(SG_RNN_GRU, true, 2, true, false);
}

Test(lstm, gradcheck_bidirectional_two_layers_unequal_lengths)
{
    gradcheck_module(SG_RNN_LSTM, false, 2, true, false);
}

/* the dropout between layers is written over the lower layer's output, which the
 * layer's backward must not read */
Test(rnn, gradcheck_dropout_between_layers)
{
    gradcheck_module_drop(SG_RNN_LSTM, false, 3, false, false, false, 0.4);
    gradcheck_module_drop(SG_RNN_LSTM, false, 2, true, false, false, 0.4);
    gradcheck_module_drop(SG_RNN_GRU, false, 2, false, false, true, 0.4);
    gradcheck_module_drop(SG_RNN_GRU, true, 2, false, true, false, 0.4);
}

Test(lstm, gradcheck_zero_initial_state)
{
    gradcheck_module(SG_RNN_LSTM, false, 2, true, true);
}

typedef struct {
    sg_rnn_cell cell;
    bool cho;
    int what; /* 0: h', 1: c' */
} gc_cell;

/* inputs: x, h, (c), weight_ih, weight_hh, bias_ih, bias_hh */
static sg_tensor *gc_cell_fn(sg_graph *g, sg_tensor *const *in, void *user)
{
    gc_cell *u = user;
    if (u->cell == SG_RNN_GRU) {
        sg_rnn_weights w = {in[2], in[3], in[4], in[5]};
        return sg_gru_cell_forward(g, in[0], in[1], &w, u->cho);
    }
    sg_rnn_weights w = {in[3], in[4], in[5], in[6]};
    sg_tensor *c = NULL;
    sg_tensor *h = sg_lstm_cell_forward(g, in[0], in[1], in[2], &w, &c);
    return u->what == 0 ? h : c;
}

static void gradcheck_cell(sg_rnn_cell cell, bool cho)
{
    sg_rng r;
    sg_rng_seed(&r, 5);
    int64_t B = 2, I = 3, H = 3, G = cell == SG_RNN_LSTM ? 4 : 3;
    sg_tensor *in[7];
    int n = 0;
    in[n++] = tu_rand64(&r, -1, 1, 2, B, I);
    in[n++] = tu_rand64(&r, -1, 1, 2, B, H);
    if (cell == SG_RNN_LSTM)
        in[n++] = tu_rand64(&r, -1, 1, 2, B, H);
    in[n++] = tu_rand64(&r, -1, 1, 2, G * H, I);
    in[n++] = tu_rand64(&r, -1, 1, 2, G * H, H);
    in[n++] = tu_rand64(&r, -1, 1, 1, G * H);
    in[n++] = tu_rand64(&r, -1, 1, 1, G * H);
    gc_cell u = {cell, cho, 0};
    for (u.what = 0; u.what < (cell == SG_RNN_LSTM ? 2 : 1); u.what++)
        TU_GRADCHECK(gc_cell_fn, &u, n, in);
    for (int i = 0; i < n; i++)
        sg_tensor_free(in[i]);
}

Test(gru_cell, gradcheck) { gradcheck_cell(SG_RNN_GRU, false); }
Test(gru_cell, gradcheck_cho_variant) { gradcheck_cell(SG_RNN_GRU, true); }
Test(lstm_cell, gradcheck) { gradcheck_cell(SG_RNN_LSTM, false); }

/* ---- semantics -------------------------------------------------------------------- */

/* Cho's cell against the same formula written with core ops. */
Test(gru_cell, cho_variant_matches_formula)
{
    sg_rng r;
    sg_rng_seed(&r, 9);
    int64_t B = 3, I = 4, H = 5;
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, B, I), *h = tu_rand64(&r, -1, 1, 2, B, H);
    sg_tensor *wih = tu_rand64(&r, -1, 1, 2, 3 * H, I), *whh = tu_rand64(&r, -1, 1, 2, 3 * H, H);
    sg_tensor *bih = tu_rand64(&r, -1, 1, 1, 3 * H), *bhh = tu_rand64(&r, -1, 1, 1, 3 * H);
    sg_graph *g = sg_graph_new();
    sg_rnn_weights w = {wih, whh, bih, bhh};
    sg_tensor *got = sg_gru_cell_forward(g, x, h, &w, true);
    cr_assert(got, "%s", sg_last_error());
    sg_tensor *gi = sg_linear(g, x, wih, bih);
    sg_tensor *ghrz =
        sg_linear(g, h, sg_narrow(g, whh, 0, 0, 2 * H), sg_narrow(g, bhh, 0, 0, 2 * H));
    sg_tensor *rz = sg_sigmoid(g, sg_add(g, sg_narrow(g, gi, 1, 0, 2 * H), ghrz));
    sg_tensor *rr = sg_narrow(g, rz, 1, 0, H), *z = sg_narrow(g, rz, 1, H, H);
    sg_tensor *ghn = sg_linear(g, sg_mul(g, rr, h), sg_narrow(g, whh, 0, 2 * H, H),
                               sg_narrow(g, bhh, 0, 2 * H, H));
    sg_tensor *nn = sg_tanh(g, sg_add(g, sg_narrow(g, gi, 1, 2 * H, H), ghn));
    sg_tensor *want = sg_add(g, nn, sg_mul(g, z, sg_sub(g, h, nn)));
    tu_assert_close(got, want, 1e-12, 1e-12, "cho h'");
    /* and it differs from PyTorch's formula */
    sg_tensor *pt = sg_gru_cell_forward(g, x, h, &w, false);
    double d = 0;
    for (int64_t i = 0; i < B * H; i++)
        d += fabs(sg_tensor_get(pt, i) - sg_tensor_get(got, i));
    cr_assert_gt(d, 1e-6);
    sg_graph_free(g);
    sg_tensor *all[] = {x, h, wih, whh, bih, bhh};
    for (int i = 0; i < 6; i++)
        sg_tensor_free(all[i]);
}

/* The single-step cells equal one step of the module (weights shared). */
Test(lstm_cell, equals_one_module_step)
{
    sg_rng r;
    sg_rng_seed(&r, 4);
    sg_params *p = sg_params_new(SG_F32);
    sg_lstm m;
    sg_rnn_config cfg = {.input_size = 6, .hidden_size = 5};
    cr_assert_eq(sg_lstm_init(&m, p, "dec", &cfg, &r), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, SG_F32, 3, (int64_t[]){2, 1, 6}, &r);
    sg_tensor *h0 = sg_randn(g, SG_F32, 3, (int64_t[]){1, 2, 5}, &r);
    sg_tensor *c0 = sg_randn(g, SG_F32, 3, (int64_t[]){1, 2, 5}, &r);
    sg_rnn_opts o = {.h0 = h0, .c0 = c0};
    sg_tensor *hn, *cn, *c1;
    sg_tensor *out = sg_lstm_forward(g, &m, x, &o, &hn, &cn);
    sg_tensor *h1 = sg_lstm_cell_forward(g, sg_select(g, x, 1, 0), sg_select(g, h0, 0, 0),
                                         sg_select(g, c0, 0, 0), &m.w[0][0], &c1);
    cr_assert(out && h1, "%s", sg_last_error());
    tu_assert_close(h1, sg_select(g, hn, 0, 0), 1e-6, 1e-5, "h'");
    tu_assert_close(c1, sg_select(g, cn, 0, 0), 1e-6, 1e-5, "c'");
    tu_assert_close(h1, sg_select(g, out, 1, 0), 1e-6, 1e-5, "output");
    sg_graph_free(g);
    sg_params_free(p);
}

Test(gru, registers_pytorch_names_and_init_range)
{
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_params *p = sg_params_new(SG_F32);
    sg_gru m;
    sg_rnn_config cfg = {.input_size = 7, .hidden_size = 16, .num_layers = 2,
                         .bidirectional = true};
    cr_assert_eq(sg_gru_init(&m, p, "encoder", &cfg, &r), SG_OK, "%s", sg_last_error());
    const char *names[] = {"encoder.weight_ih_l0", "encoder.weight_hh_l0", "encoder.bias_ih_l0",
                           "encoder.bias_hh_l0", "encoder.weight_ih_l0_reverse"};
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(sg_params_at(p, i)->name, names[i]);
    sg_tensor *w = sg_params_find(p, "encoder.weight_ih_l1_reverse");
    cr_assert(w && w->shape[0] == 48 && w->shape[1] == 32);
    cr_assert_eq(w, m.w[1][1].weight_ih);
    cr_assert_eq(sg_params_find(p, "encoder.bias_hh_l1")->shape[0], 48);
    double mx = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        sg_tensor *t = sg_params_at(p, i)->value;
        for (int64_t k = 0; k < sg_tensor_numel(t); k++)
            mx = fmax(mx, fabs(sg_tensor_get(t, k)));
    }
    cr_assert(mx <= 0.25 && mx > 0.2, "max |w| %g, bound 1/sqrt(16)", mx);
    sg_params_free(p);
}

/* Rows do not influence each other and padding does not change a row. */
Test(gru, row_result_independent_of_padding)
{
    sg_rng r;
    sg_rng_seed(&r, 2);
    sg_params *p = sg_params_new(SG_F64);
    sg_gru m;
    sg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .bidirectional = true};
    cr_assert_eq(sg_gru_init(&m, p, "g", &cfg, &r), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, SG_F64, 3, (int64_t[]){2, 5, 3}, &r);
    sg_tensor *len = sg_from_buffer(g, SG_I64, 1, (int64_t[]){2}, (int64_t[]){5, 3});
    sg_rnn_opts o = {.lengths = len};
    sg_tensor *hn, *hn1;
    sg_tensor *out = sg_gru_forward(g, &m, x, &o, &hn);
    /* row 1 alone with T = 3 */
    sg_tensor *x1 = sg_narrow(g, sg_narrow(g, x, 0, 1, 1), 1, 0, 3);
    sg_tensor *out1 = sg_gru_forward(g, &m, x1, NULL, &hn1);
    cr_assert(out && out1, "%s", sg_last_error());
    tu_assert_close(sg_narrow(g, sg_narrow(g, out, 0, 1, 1), 1, 0, 3), out1, 1e-13, 1e-13, "row 1");
    tu_assert_close(sg_narrow(g, hn, 1, 1, 1), hn1, 1e-13, 1e-13, "h_n row 1");
    for (int64_t t = 3; t < 5; t++)
        for (int64_t j = 0; j < 8; j++)
            cr_assert_eq(sg_tensor_get(out, (1 * 5 + t) * 8 + j), 0.0, "padding must be 0");
    /* every row shorter than T: the same as the batch cut to the longest row */
    len = sg_from_buffer(g, SG_I64, 1, (int64_t[]){2}, (int64_t[]){3, 2});
    o.lengths = len;
    out = sg_gru_forward(g, &m, x, &o, &hn);
    sg_tensor *out3 = sg_gru_forward(g, &m, sg_narrow(g, x, 1, 0, 3), &o, &hn1);
    cr_assert(out && out3, "%s", sg_last_error());
    tu_assert_close(sg_narrow(g, out, 1, 0, 3), out3, 0, 0, "cut batch");
    tu_assert_close(hn, hn1, 0, 0, "cut batch h_n");
    sg_graph_free(g);
    sg_params_free(p);
}

Test(gru, dropout_only_between_layers)
{
    sg_rng r, dr;
    sg_rng_seed(&r, 6);
    sg_params *p = sg_params_new(SG_F32);
    sg_gru m;
    sg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .num_layers = 1, .dropout = 0.5};
    cr_assert_eq(sg_gru_init(&m, p, "g", &cfg, &r), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, SG_F32, 3, (int64_t[]){2, 4, 3}, &r);
    sg_rng_seed(&dr, 1);
    sg_rnn_opts train = {.training = true, .rng = &dr};
    sg_tensor *a = sg_gru_forward(g, &m, x, &train, NULL);
    sg_tensor *b = sg_gru_forward(g, &m, x, NULL, NULL);
    tu_assert_close(a, b, 0, 0, "one layer: no dropout after the top layer");
    /* two layers: training differs from evaluation, and needs an rng */
    sg_gru m2;
    cfg.num_layers = 2;
    cr_assert_eq(sg_gru_init(&m2, p, "g2", &cfg, &r), SG_OK);
    a = sg_gru_forward(g, &m2, x, &train, NULL);
    b = sg_gru_forward(g, &m2, x, NULL, NULL);
    cr_assert(a && b, "%s", sg_last_error());
    double d = 0;
    for (int64_t i = 0; i < sg_tensor_numel(a); i++)
        d += fabs(sg_tensor_get(a, i) - sg_tensor_get(b, i));
    cr_assert_gt(d, 1e-4);
    train.rng = NULL;
    cr_assert_null(sg_gru_forward(g, &m2, x, &train, NULL));
    cr_assert(strstr(sg_last_error(), "rng"), "%s", sg_last_error());
    sg_graph_free(g);
    sg_params_free(p);
}

/* ---- error paths ------------------------------------------------------------------- */

typedef struct {
    sg_params *p;
    sg_rnn m;
    sg_graph *g;
    sg_tensor *x;
} fx_err;

static void err_setup(fx_err *e, sg_rnn_cell cell)
{
    sg_rng r;
    sg_rng_seed(&r, 8);
    e->p = sg_params_new(SG_F32);
    sg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .num_layers = 2,
                         .bidirectional = true};
    int rc = cell == SG_RNN_LSTM ? sg_lstm_init(&e->m, e->p, "e", &cfg, &r)
                                 : sg_gru_init(&e->m, e->p, "e", &cfg, &r);
    cr_assert_eq(rc, SG_OK);
    e->g = sg_graph_new();
    e->x = sg_randn(e->g, SG_F32, 3, (int64_t[]){2, 5, 3}, &r);
}

static void err_teardown(fx_err *e)
{
    sg_graph_free(e->g);
    sg_params_free(e->p);
}

#define EXPECT_FAIL(call, code, needle)                                                     \
    do {                                                                                    \
        sg_clear_error();                                                                   \
        cr_assert_null((call));                                                             \
        cr_assert_eq(sg_graph_status(e.g), (code), "%s", sg_last_error());                  \
        cr_assert(strstr(sg_last_error(), (needle)), "message '%s' lacks '%s'",             \
                  sg_last_error(), (needle));                                               \
        sg_graph_reset(e.g);                                                                \
    } while (0)

Test(gru, rejects_wrong_input_width)
{
    fx_err e;
    err_setup(&e, SG_RNN_GRU);
    sg_tensor *x = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 5, 4});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, x, NULL, NULL), SG_ESHAPE, "[2,5,4]");
    x = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 3});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, x, NULL, NULL), SG_ESHAPE, "sg_gru_forward");
    x = sg_zeros(e.g, SG_F64, 3, (int64_t[]){2, 5, 3});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, x, NULL, NULL), SG_EDTYPE, "f64");
    err_teardown(&e);
}

Test(gru, rejects_bad_lengths_naming_the_row)
{
    fx_err e;
    err_setup(&e, SG_RNN_GRU);
    sg_rnn_opts o = {0};
    o.lengths = sg_from_buffer(e.g, SG_I64, 1, (int64_t[]){2}, (int64_t[]){5, 0});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, e.x, &o, NULL), SG_ERANGE, "lengths[1] = 0");
    e.x = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 5, 3});
    o.lengths = sg_from_buffer(e.g, SG_I64, 1, (int64_t[]){2}, (int64_t[]){6, 2});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, e.x, &o, NULL), SG_ERANGE, "lengths[0] = 6");
    e.x = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 5, 3});
    o.lengths = sg_from_buffer(e.g, SG_I64, 1, (int64_t[]){3}, (int64_t[]){1, 2, 3});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, e.x, &o, NULL), SG_ESHAPE, "one per batch row");
    e.x = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 5, 3});
    o.lengths = sg_zeros(e.g, SG_F32, 1, (int64_t[]){2});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, e.x, &o, NULL), SG_EDTYPE, "i64");
    err_teardown(&e);
}

Test(gru, rejects_null_arguments)
{
    fx_err e;
    err_setup(&e, SG_RNN_GRU);
    EXPECT_FAIL(sg_gru_forward(e.g, NULL, e.x, NULL, NULL), SG_EINVAL, "module is NULL");
    cr_assert_null(sg_gru_forward(e.g, &e.m, NULL, NULL, NULL));
    cr_assert_null(sg_gru_forward(NULL, &e.m, e.x, NULL, NULL));
    sg_rnn_config bad = {.input_size = 0, .hidden_size = 4};
    sg_gru m;
    cr_assert_eq(sg_gru_init(&m, e.p, "z", &bad, NULL), SG_EINVAL);
    cr_assert_eq(sg_gru_init(&m, e.p, "z", NULL, NULL), SG_EINVAL);
    bad = (sg_rnn_config){.input_size = 2, .hidden_size = 4, .dropout = 1.0};
    cr_assert_eq(sg_gru_init(&m, e.p, "z", &bad, NULL), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "dropout"), "%s", sg_last_error());
    bad = (sg_rnn_config){.input_size = 2, .hidden_size = 4, .reset_before_matmul = true};
    cr_assert_eq(sg_lstm_init(&m, e.p, "z", &bad, NULL), SG_EINVAL);
    /* a duplicate prefix collides in the store */
    bad = (sg_rnn_config){.input_size = 3, .hidden_size = 4};
    cr_assert_eq(sg_gru_init(&m, e.p, "e", &bad, NULL), SG_EINVAL);
    err_teardown(&e);
}

Test(lstm, rejects_wrong_state_shapes)
{
    fx_err e;
    err_setup(&e, SG_RNN_LSTM);
    sg_rnn_opts o = {0};
    o.h0 = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 2, 4}); /* needs [4,2,4] */
    EXPECT_FAIL(sg_lstm_forward(e.g, &e.m, e.x, &o, NULL, NULL), SG_ESHAPE, "h0 [2,2,4]");
    e.x = sg_zeros(e.g, SG_F32, 3, (int64_t[]){2, 5, 3});
    o.h0 = NULL;
    o.c0 = sg_zeros(e.g, SG_F32, 3, (int64_t[]){4, 3, 4});
    EXPECT_FAIL(sg_lstm_forward(e.g, &e.m, e.x, &o, NULL, NULL), SG_ESHAPE, "c0 [4,3,4]");
    err_teardown(&e);
    err_setup(&e, SG_RNN_GRU);
    o.c0 = sg_zeros(e.g, SG_F32, 3, (int64_t[]){4, 2, 4});
    EXPECT_FAIL(sg_gru_forward(e.g, &e.m, e.x, &o, NULL), SG_EINVAL, "c0 given to a GRU");
    err_teardown(&e);
}

Test(gru_cell, rejects_mismatched_shapes)
{
    fx_err e;
    err_setup(&e, SG_RNN_GRU);
    sg_tensor *x = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 3});
    sg_tensor *h = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 5});
    EXPECT_FAIL(sg_gru_cell_forward(e.g, x, h, &e.m.w[0][0], false), SG_ESHAPE, "h [2,5]");
    x = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 4});
    h = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 4});
    EXPECT_FAIL(sg_gru_cell_forward(e.g, x, h, &e.m.w[0][0], false), SG_ESHAPE, "x [2,4]");
    x = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 3});
    h = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 4});
    EXPECT_FAIL(sg_gru_cell_forward(e.g, x, h, NULL, false), SG_EINVAL, "weights");
    x = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 3});
    h = sg_zeros(e.g, SG_F32, 2, (int64_t[]){2, 4});
    sg_tensor *c = NULL;
    /* GRU weights (3H rows) given to the LSTM cell */
    EXPECT_FAIL(sg_lstm_cell_forward(e.g, x, h, h, &e.m.w[0][0], &c), SG_ESHAPE, "weight_hh");
    err_teardown(&e);
}

/* NaN in the input is not checked: it propagates to the affected row only. */
Test(gru, nan_input_propagates_to_its_row_only)
{
    fx_err e;
    err_setup(&e, SG_RNN_GRU);
    sg_tensor_set(e.x, 1 * 15 + 2 * 3 + 1, NAN); /* row 1, t = 2 */
    sg_tensor *hn;
    sg_tensor *out = sg_gru_forward(e.g, &e.m, e.x, NULL, &hn);
    cr_assert(out, "%s", sg_last_error());
    cr_assert(isnan(sg_tensor_get(out, (1 * 5 + 4) * 8)));
    for (int64_t i = 0; i < 5 * 8; i++)
        cr_assert(!isnan(sg_tensor_get(out, i)), "row 0 must stay finite");
    cr_assert_eq(sg_backward(e.g, sg_sum_all(e.g, out)), SG_OK);
    cr_assert(isnan(sg_tensor_grad_get(e.m.w[0][0].weight_ih, 0)));
    err_teardown(&e);
}

/* Big enough for the threaded row loops: 2 threads give the 1-thread result. */
static void run_threads(int threads, sg_rnn_cell cell, double *out, double *grad)
{
    sg_set_num_threads(threads);
    sg_rng r;
    sg_rng_seed(&r, 12);
    sg_params *p = sg_params_new(SG_F32);
    sg_rnn m;
    sg_rnn_config cfg = {.input_size = 8, .hidden_size = 128, .bidirectional = true};
    cr_assert_eq(cell == SG_RNN_LSTM ? sg_lstm_init(&m, p, "t", &cfg, &r)
                                     : sg_gru_init(&m, p, "t", &cfg, &r), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_randn(g, SG_F32, 3, (int64_t[]){80, 3, 8}, &r);
    int64_t lens[80];
    for (int i = 0; i < 80; i++)
        lens[i] = 1 + i % 3;
    sg_rnn_opts o = {.lengths = sg_from_buffer(g, SG_I64, 1, (int64_t[]){80}, lens)};
    sg_tensor *y = sg_rnn_forward(g, &m, x, &o, NULL, NULL);
    cr_assert(y, "%s", sg_last_error());
    cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, y))), SG_OK);
    for (int64_t i = 0; i < 80 * 3 * 256; i++)
        out[i] = sg_tensor_get(y, i);
    for (int64_t i = 0; i < 128 * 3 * 128; i++)
        grad[i] = sg_tensor_grad_get(m.w[0][1].weight_hh, i);
    sg_graph_free(g);
    sg_params_free(p);
    sg_set_num_threads(1);
}

static void check_threads(sg_rnn_cell cell)
{
    static double o1[80 * 3 * 256], o2[80 * 3 * 256], g1[4 * 128 * 128], g2[4 * 128 * 128];
    run_threads(1, cell, o1, g1);
    run_threads(2, cell, o2, g2);
    for (int64_t i = 0; i < 80 * 3 * 256; i++)
        cr_assert(fabs(o1[i] - o2[i]) <= 1e-6 + 1e-5 * fabs(o1[i]), "output %lld", (long long)i);
    for (int64_t i = 0; i < 128 * 3 * 128; i++)
        cr_assert(fabs(g1[i] - g2[i]) <= 1e-5 + 1e-4 * fabs(g1[i]), "grad %lld: %g vs %g",
                  (long long)i, g1[i], g2[i]);
}

Test(gru, two_threads_match_one) { check_threads(SG_RNN_GRU); }
Test(lstm, two_threads_match_one) { check_threads(SG_RNN_LSTM); }

/* Absent biases behave as zero biases. */
Test(gru_cell, null_biases_are_zero)
{
    sg_rng r;
    sg_rng_seed(&r, 13);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 2, 3), *h = tu_rand64(&r, -1, 1, 2, 2, 4);
    sg_tensor *wih = tu_rand64(&r, -1, 1, 2, 12, 3), *whh = tu_rand64(&r, -1, 1, 2, 12, 4);
    sg_tensor *zb = sg_tensor_new(SG_F64, 1, (int64_t[]){12});
    sg_graph *g = sg_graph_new();
    sg_rnn_weights w0 = {wih, whh, NULL, NULL}, wz = {wih, whh, zb, zb};
    for (int cho = 0; cho < 2; cho++)
        tu_assert_close(sg_gru_cell_forward(g, x, h, &w0, cho),
                        sg_gru_cell_forward(g, x, h, &wz, cho), 0, 0, "no bias");
    sg_graph_free(g);
    sg_tensor *all[] = {x, h, wih, whh, zb};
    for (int i = 0; i < 5; i++)
        sg_tensor_free(all[i]);
}

/* ---- f32 against f64 at awkward sizes ---------------------------------------------
 * The f32 per-step products may take the packed kernel (tensor/gemm_packed.c: 6-row
 * tiles, 16-column panels) where the f64 ones go to BLIS:
 * hidden sizes that leave partial panels (H 20: 60 gate columns), start the Cho GRU's
 * W_hn block on a panel (H 24) or give backward long panels (k = 288: H 72, 96), 13
 * rows (two 6-row tiles and one) shrinking as rows end, an initial state. */
/* One run in dt: parameters from src when given (else initialised; *keep receives
 * them when keep is not NULL), outputs to out, the gradients of every parameter, x and
 * h0 to grads (*n_grads values). */
static void run_dtype(sg_rnn_cell cell, bool cho, int64_t H, sg_dtype dt, const sg_params *src,
                      double *out, double *grads, int64_t *n_grads, sg_params **keep)
{
    enum { B = 13, T = 7, I = 9 };
    sg_rng r;
    sg_rng_seed(&r, 5);
    sg_params *p = sg_params_new(dt);
    sg_rnn m;
    sg_rnn_config cfg = {.input_size = I, .hidden_size = H, .bidirectional = true,
                         .reset_before_matmul = cho};
    cr_assert_eq(cell == SG_RNN_LSTM ? sg_lstm_init(&m, p, "t", &cfg, &r)
                                     : sg_gru_init(&m, p, "t", &cfg, &r), SG_OK);
    for (int i = 0; src && i < sg_params_count(p); i++) { /* the f64 module's values */
        sg_tensor *d = sg_params_at(p, i)->value, *s = sg_params_at(src, i)->value;
        for (int64_t e = 0; e < sg_tensor_numel(d); e++)
            sg_tensor_set(d, e, sg_tensor_get(s, e));
    }
    sg_graph *g = sg_graph_new();
    sg_rng_seed(&r, 6);
    /* x and h0 on the heap, where they can take gradients */
    sg_tensor *x = sg_tensor_new(dt, 3, (int64_t[]){B, T, I});
    sg_tensor *h0 = sg_tensor_new(dt, 3, (int64_t[]){2, B, H});
    sg_tensor_uniform_(x, &r, -1, 1);
    sg_tensor_uniform_(h0, &r, -1, 1);
    cr_assert_eq(sg_tensor_set_requires_grad(x, true), SG_OK);
    cr_assert_eq(sg_tensor_set_requires_grad(h0, true), SG_OK);
    sg_tensor *c0 = cell == SG_RNN_LSTM ? sg_randn(g, dt, 3, (int64_t[]){2, B, H}, &r) : NULL;
    sg_tensor *wy = sg_randn(g, dt, 3, (int64_t[]){B, T, 2 * H}, &r);
    int64_t lens[B];
    for (int i = 0; i < B; i++)
        lens[i] = 1 + (i * 5) % T;
    sg_rnn_opts o = {.lengths = sg_from_buffer(g, SG_I64, 1, (int64_t[]){B}, lens), .h0 = h0,
                     .c0 = c0};
    sg_tensor *y = sg_rnn_forward(g, &m, x, &o, NULL, NULL);
    cr_assert(y, "%s", sg_last_error());
    cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, wy))), SG_OK, "%s", sg_last_error());
    for (int64_t e = 0; e < sg_tensor_numel(y); e++)
        out[e] = sg_tensor_get(y, e);
    int64_t n = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        sg_tensor *v = sg_params_at(p, i)->value;
        for (int64_t e = 0; e < sg_tensor_numel(v); e++)
            grads[n++] = sg_tensor_grad_get(v, e);
    }
    for (int64_t e = 0; e < sg_tensor_numel(x); e++)
        grads[n++] = sg_tensor_grad_get(x, e);
    for (int64_t e = 0; e < sg_tensor_numel(h0); e++)
        grads[n++] = sg_tensor_grad_get(h0, e);
    *n_grads = n;
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(h0);
    if (keep)
        *keep = p;
    else
        sg_params_free(p);
}

static void check_f32_vs_f64(sg_rnn_cell cell, bool cho, int64_t H)
{
    static double o64[13 * 7 * 2 * 96], o32[13 * 7 * 2 * 96], g64[100000], g32[100000];
    int64_t n64, n32;
    sg_params *p64;
    run_dtype(cell, cho, H, SG_F64, NULL, o64, g64, &n64, &p64);
    run_dtype(cell, cho, H, SG_F32, p64, o32, g32, &n32, NULL);
    sg_params_free(p64);
    cr_assert_eq(n64, n32);
    for (int64_t i = 0; i < 13 * 7 * 2 * H; i++)
        cr_assert(fabs(o32[i] - o64[i]) <= 1e-5 + 1e-4 * fabs(o64[i]), "H %lld output %lld: "
                  "%g vs %g", (long long)H, (long long)i, o32[i], o64[i]);
    for (int64_t i = 0; i < n64; i++)
        cr_assert(fabs(g32[i] - g64[i]) <= 1e-4 + 1e-4 * fabs(g64[i]), "H %lld grad %lld: "
                  "%g vs %g", (long long)H, (long long)i, g32[i], g64[i]);
}

Test(gru, f32_matches_f64_at_awkward_sizes)
{
    for (int t = 1; t <= 2; t++) {
        sg_set_num_threads(t);
        check_f32_vs_f64(SG_RNN_GRU, false, 20);
        check_f32_vs_f64(SG_RNN_GRU, false, 48);
        check_f32_vs_f64(SG_RNN_GRU, true, 20);
        check_f32_vs_f64(SG_RNN_GRU, true, 24);
        check_f32_vs_f64(SG_RNN_GRU, false, 96); /* backward's k = 288 */
    }
    sg_set_num_threads(1);
}

Test(lstm, f32_matches_f64_at_awkward_sizes)
{
    for (int t = 1; t <= 2; t++) {
        sg_set_num_threads(t);
        check_f32_vs_f64(SG_RNN_LSTM, false, 20);
        check_f32_vs_f64(SG_RNN_LSTM, false, 40);
        check_f32_vs_f64(SG_RNN_LSTM, false, 72); /* backward's k = 288 */
    }
    sg_set_num_threads(1);
}

/* Gate inputs far outside the activations' ranges (|pre-activation| in the hundreds):
 * the f32 sigmoid's exp clamps at -87 / 88 and tanh's at +-9 are taken, on every form
 * of the GRU row (H 16: the AVX2 row where the CPU picks it; H 12: the generic one),
 * and the f32 outputs stay within 1e-4 of f64's (sums of terms in the hundreds). */
Test(gru, f32_matches_f64_with_saturated_gates)
{
    for (int64_t H = 12; H <= 16; H += 4) {
        double out[2][4 * 3 * 16];
        sg_params *p[2] = {sg_params_new(SG_F64), sg_params_new(SG_F32)};
        sg_rnn m[2];
        sg_rnn_config cfg = {.input_size = 8, .hidden_size = H};
        sg_rng r;
        sg_rng_seed(&r, 21);
        for (int d = 0; d < 2; d++)
            cr_assert_eq(sg_gru_init(&m[d], p[d], "g", &cfg, &r), SG_OK, "%s", sg_last_error());
        sg_params_uniform_(p[0], &r, -4, 4);
        cr_assert_eq(sg_params_copy_values(p[1], p[0]), SG_OK, "%s", sg_last_error());
        sg_tensor *x64 = tu_rand64(&r, -60, 60, 3, 4, 3, 8);
        for (int d = 0; d < 2; d++) {
            sg_dtype dt = d ? SG_F32 : SG_F64;
            sg_graph *g = sg_graph_new();
            sg_tensor *x = sg_empty(g, dt, 3, (int64_t[]){4, 3, 8});
            for (int64_t e = 0; e < 4 * 3 * 8; e++)
                sg_tensor_set(x, e, sg_tensor_get(x64, e));
            sg_tensor *y = sg_rnn_forward(g, &m[d], x, NULL, NULL, NULL);
            cr_assert(y, "%s", sg_last_error());
            for (int64_t e = 0; e < 4 * 3 * H; e++)
                out[d][e] = sg_tensor_get(y, e);
            sg_graph_free(g);
        }
        int saturated = 0;
        for (int64_t e = 0; e < 4 * 3 * H; e++) {
            cr_assert(fabs(out[1][e] - out[0][e]) <= 1e-4, "H %lld output %lld: %.9g vs %.9g",
                      (long long)H, (long long)e, out[1][e], out[0][e]);
            saturated += fabs(out[0][e]) > 0.999999;
        }
        cr_assert(saturated > 4 * 3 * H / 4, "too few saturated outputs (%d)", saturated);
        sg_tensor_free(x64);
        sg_params_free(p[0]);
        sg_params_free(p[1]);
    }
}
