/* test_loss.c - fused cross entropy: PyTorch parity, gradchecks, reporting numbers,
 * error paths. */
#include <stdlib.h>
#include <string.h>

/* fixture.h line 1 has a nested comment opener; silence -Wcomment for it */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "fixture.h"
#pragma GCC diagnostic pop
#include "sg_nn.h"
#include "test_util.h"

/* ---- PyTorch parity (tests/fixtures/loss_optim.h5, ce/<case>) ----------------------- */

static void check_torch_case(const char *name, const sg_cross_entropy_opts *o)
{
    hid_t f = fx_open("loss_optim.h5");
    char path[128];
    snprintf(path, sizeof path, "ce/%s/logits", name);
    sg_tensor *x = fx_read(f, path, SG_F32);
    snprintf(path, sizeof path, "ce/%s/targets", name);
    sg_tensor *y = fx_read(f, path, SG_I64);
    snprintf(path, sizeof path, "ce/%s/grad", name);
    sg_tensor *want_grad = fx_read(f, path, SG_F32);
    snprintf(path, sizeof path, "ce/%s/loss", name);
    double want = fx_scalar(f, path);
    H5Fclose(f);

    cr_assert_eq(sg_tensor_set_requires_grad(x, true), SG_OK);
    sg_graph *g = sg_graph_new();
    sg_cross_entropy_stats st = {-1, -1};
    sg_tensor *loss = sg_cross_entropy_ex(g, x, y, o, &st);
    cr_assert(loss, "%s", sg_last_error());
    cr_assert_eq(loss->ndim, 0);
    double got = sg_tensor_get(loss, 0);
    cr_assert(fabs(got - want) <= 1e-5 * fabs(want), "%s: loss %.9g vs torch %.9g", name, got,
              want);
    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
    sg_tensor gx = *x;
    gx.data = x->grad;
    tu_assert_close(&gx, want_grad, 1e-8, 1e-5, name);

    int64_t n = 0, R = sg_tensor_numel(y);
    for (int64_t r = 0; r < R; r++)
        n += ((int64_t *)y->data)[r] != 0;
    cr_assert_eq(st.n_tokens, n);
    double per_tok = o && o->reduction == SG_REDUCTION_SUM ? st.loss_sum : st.loss_sum / (double)n;
    cr_assert(fabs(per_tok - want) <= 1e-5 * fabs(want), "%s: loss_sum %.9g", name, st.loss_sum);
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
    sg_tensor_free(want_grad);
}

Test(cross_entropy, matches_torch_label_smoothing_with_pads)
{
    check_torch_case("smooth", &(sg_cross_entropy_opts){.label_smoothing = 0.1});
}

Test(cross_entropy, matches_torch_without_smoothing_by_default)
{
    check_torch_case("plain", NULL);
}

Test(cross_entropy, matches_torch_sum_reduction)
{
    check_torch_case("sum", &(sg_cross_entropy_opts){.label_smoothing = 0.1,
                                                     .reduction = SG_REDUCTION_SUM});
}

Test(cross_entropy, large_vocab_large_logits_are_stable_and_match_torch)
{
    check_torch_case("big", &(sg_cross_entropy_opts){.label_smoothing = 0.1});
}

/* ---- f64 gradchecks ------------------------------------------------------------------ */

typedef struct {
    sg_tensor *targets;
    sg_cross_entropy_opts o;
} ce_case;

static sg_tensor *f_ce(sg_graph *g, sg_tensor *const *in, void *u)
{
    ce_case *c = u;
    return sg_cross_entropy_ex(g, in[0], c->targets, &c->o, NULL);
}

/* targets [2, 3] over V = 5 with pads (0) on the right of row 1 */
static sg_tensor *small_targets(void)
{
    int64_t ids[] = {3, 1, 4, 2, 0, 0};
    return sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){2, 3}, ids);
}

/* Gradcheck of the loss over x [2, 3, 5] ~ U(-2, 2) (seeded) against small_targets(). */
static void gradcheck_small(uint64_t seed, sg_cross_entropy_opts o)
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    sg_tensor *x = tu_rand64(&r, -2, 2, 3, (int64_t)2, (int64_t)3, (int64_t)5);
    ce_case c = {small_targets(), o};
    TU_GRADCHECK(f_ce, &c, 1, &x);
    sg_tensor_free(x);
    sg_tensor_free(c.targets);
}

Test(cross_entropy, gradcheck_pads_and_label_smoothing)
{
    gradcheck_small(7, (sg_cross_entropy_opts){.label_smoothing = 0.2});
}

Test(cross_entropy, gradcheck_sum_reduction)
{
    gradcheck_small(8, (sg_cross_entropy_opts){.label_smoothing = 0.1,
                                               .reduction = SG_REDUCTION_SUM});
}

Test(cross_entropy, gradcheck_mean_over_a_larger_batch)
{
    gradcheck_small(10, (sg_cross_entropy_opts){.label_smoothing = 0.1, .mean_over = 11});
}

/* Two parts of a batch, each with mean_over = the whole batch's token count: their losses
 * and gradients add up to the whole batch's mean loss and its gradient. */
Test(cross_entropy, parts_with_mean_over_add_up_to_the_whole_batch)
{
    sg_rng r;
    sg_rng_seed(&r, 11);
    sg_tensor *x = tu_rand64(&r, -2, 2, 2, (int64_t)6, (int64_t)5);
    int64_t ids[6] = {1, 0, 4, 2, 3, 0}; /* 4 counted */
    sg_tensor *y = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){6}, ids);
    sg_cross_entropy_opts whole = {.label_smoothing = 0.1}, part = whole;
    part.mean_over = 4;
    sg_graph *g = sg_graph_new();
    sg_tensor *l = sg_cross_entropy_ex(g, x, y, &whole, NULL);
    cr_assert(l && sg_backward(g, l) == SG_OK, "%s", sg_last_error());
    double want = sg_tensor_get(l, 0), dwant[30];
    for (int i = 0; i < 30; i++)
        dwant[i] = sg_tensor_grad_get(x, i);
    sg_tensor_zero_grad(x);
    double sum = 0;
    for (int h = 0; h < 2; h++) { /* rows 0-2, then 3-5 */
        sg_graph_reset(g);
        sg_tensor *xp = sg_narrow(g, x, 0, 3 * h, 3), *yp = sg_narrow(g, y, 0, 3 * h, 3);
        sg_cross_entropy_stats st;
        l = sg_cross_entropy_ex(g, xp, yp, &part, &st);
        cr_assert(l && sg_backward(g, l) == SG_OK, "%s", sg_last_error());
        cr_assert_eq(st.n_tokens, 2); /* the count reported is still the part's own */
        sum += sg_tensor_get(l, 0);
    }
    cr_assert_float_eq(sum, want, 1e-12);
    for (int i = 0; i < 30; i++)
        cr_assert_float_eq(sg_tensor_grad_get(x, i), dwant[i], 1e-12, "gradient %d", i);
    sg_graph_reset(g);
    part.mean_over = -1;
    cr_assert_null(sg_cross_entropy_ex(g, x, y, &part, NULL));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "mean_over"), "%s", sg_last_error());
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
}

static sg_tensor *f_ce_scaled(sg_graph *g, sg_tensor *const *in, void *u)
{
    /* upstream gradient != 1 and logits reached through a transposed view */
    ce_case *c = u;
    sg_tensor *xt = sg_transpose(g, in[0], 0, 1); /* [V=4, N=3] -> [3, 4] */
    return sg_mul_scalar(g, sg_cross_entropy_ex(g, xt, c->targets, &c->o, NULL), 2.5);
}

Test(cross_entropy, gradcheck_strided_logits_and_scaled_upstream)
{
    sg_rng r;
    sg_rng_seed(&r, 9);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, (int64_t)4, (int64_t)3);
    int64_t ids[] = {1, 3, 2};
    ce_case c = {sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){3}, ids),
                 {.ignore_index = -100, .label_smoothing = 0.05}};
    TU_GRADCHECK(f_ce_scaled, &c, 1, &x);
    sg_tensor_free(x);
    sg_tensor_free(c.targets);
}

/* ---- semantics ------------------------------------------------------------------------ */

Test(cross_entropy, all_ignored_gives_zero_loss_and_zero_gradient)
{
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, (int64_t)3, (int64_t)4);
    sg_tensor *y = sg_tensor_new(SG_I64, 1, (int64_t[]){3}); /* all pad */
    sg_graph *g = sg_graph_new();
    sg_cross_entropy_stats st;
    sg_tensor *loss = sg_cross_entropy_ex(g, x, y, NULL, &st);
    cr_assert(loss, "%s", sg_last_error());
    cr_assert_eq(sg_tensor_get(loss, 0), 0.0);
    cr_assert_eq(st.n_tokens, 0);
    cr_assert_eq(sg_backward(g, loss), SG_OK);
    for (int64_t i = 0; i < 12; i++)
        cr_assert_eq(sg_tensor_grad_get(x, i), 0.0);
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
}

Test(cross_entropy, equals_log_softmax_composition)
{
    /* mean over non-pad of (0.9 nll + 0.1/V sum(-log p)), built from primitive ops */
    sg_rng r;
    sg_rng_seed(&r, 3);
    sg_tensor *x = tu_rand64(&r, -3, 3, 3, (int64_t)2, (int64_t)3, (int64_t)5);
    sg_tensor *y = small_targets();
    sg_graph *g = sg_graph_new();
    sg_tensor *loss = sg_cross_entropy_ex(g, x, y, &(sg_cross_entropy_opts){.label_smoothing = 0.1},
                                          NULL);
    sg_tensor *lp = sg_log_softmax(g, x, -1, NULL);
    cr_assert(loss && lp);
    double s = 0;
    for (int64_t row = 0; row < 6; row++) {
        int64_t t = ((int64_t *)y->data)[row];
        if (!t)
            continue;
        double sm = 0;
        for (int v = 0; v < 5; v++)
            sm -= sg_tensor_get(lp, row * 5 + v);
        s += 0.9 * -sg_tensor_get(lp, row * 5 + t) + 0.1 / 5 * sm;
    }
    cr_assert(fabs(sg_tensor_get(loss, 0) - s / 4) < 1e-12);
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
}

Test(cross_entropy, nan_logits_give_nan_loss_without_error)
{
    float xs[] = {1, 2, NAN, 0, 1, 2};
    int64_t ids[] = {1, 2};
    sg_tensor *x = sg_tensor_from_buffer(SG_F32, 2, (int64_t[]){2, 3}, xs);
    sg_tensor *y = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){2}, ids);
    sg_tensor_set_requires_grad(x, true);
    sg_graph *g = sg_graph_new();
    sg_tensor *loss = sg_cross_entropy(g, x, y);
    cr_assert(loss, "%s", sg_last_error());
    cr_assert(isnan(sg_tensor_get(loss, 0)));
    cr_assert_eq(sg_backward(g, loss), SG_OK);
    cr_assert(isnan(sg_tensor_grad_get(x, 0))); /* row 0 holds the NaN */
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
}

/* ---- error paths -------------------------------------------------------------------------- */

Test(cross_entropy, rejects_targets_of_wrong_shape)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 5});
    sg_tensor *y = sg_zeros(g, SG_I64, 2, (int64_t[]){2, 4});
    cr_assert_null(sg_cross_entropy(g, x, y));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    cr_assert(strstr(sg_last_error(), "[2,4]") && strstr(sg_last_error(), "[2,3,5]"), "%s",
              sg_last_error());
    sg_graph_free(g);
}

Test(cross_entropy, rejects_target_id_beyond_vocab_naming_position_and_id)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 2, (int64_t[]){3, 5});
    sg_tensor *y = sg_from_buffer(g, SG_I64, 1, (int64_t[]){3}, (int64_t[]){1, 0, 5});
    cr_assert_null(sg_cross_entropy(g, x, y));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "id 5 at position 2"), "%s", sg_last_error());
    sg_graph_reset(g);
    y = sg_from_buffer(g, SG_I64, 1, (int64_t[]){3}, (int64_t[]){1, -3, 2});
    cr_assert_null(sg_cross_entropy(g, sg_zeros(g, SG_F64, 2, (int64_t[]){3, 5}), y));
    cr_assert_eq(sg_graph_status(g), SG_ERANGE);
    sg_graph_free(g);
}

Test(cross_entropy, rejects_bad_dtypes_and_options)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 2, (int64_t[]){3, 5});
    sg_tensor *yf = sg_zeros(g, SG_F32, 1, (int64_t[]){3});
    sg_tensor *y = sg_zeros(g, SG_I64, 1, (int64_t[]){3});
    cr_assert_null(sg_cross_entropy(g, x, yf));
    cr_assert_eq(sg_graph_status(g), SG_EDTYPE);
    sg_graph_reset(g);
    x = sg_zeros(g, SG_F32, 2, (int64_t[]){3, 5});
    y = sg_zeros(g, SG_I64, 1, (int64_t[]){3});
    cr_assert_null(sg_cross_entropy_ex(g, x, y, &(sg_cross_entropy_opts){.label_smoothing = 1.5},
                                       NULL));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "label_smoothing"), "%s", sg_last_error());
    sg_graph_reset(g);
    cr_assert_null(sg_cross_entropy(g, sg_zeros(g, SG_F32, 0, NULL), sg_zeros(g, SG_I64, 0, NULL)));
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    sg_graph_reset(g);
    cr_assert_null(sg_cross_entropy(g, NULL, y)); /* NULL propagates */
    sg_graph_free(g);
}

Test(cross_entropy, result_does_not_depend_on_thread_count)
{
    /* [64, 2048] is above the size where rows are split over threads */
    sg_rng r;
    sg_rng_seed(&r, 11);
    sg_tensor *x = sg_tensor_new(SG_F32, 2, (int64_t[]){64, 2048});
    sg_tensor *y = sg_tensor_new(SG_I64, 1, (int64_t[]){64});
    sg_tensor_normal_(x, &r, 0, 4);
    for (int i = 0; i < 64; i++)
        ((int64_t *)y->data)[i] = (i * 37) % 2048 * (i % 5 != 0); /* every fifth is pad */
    sg_tensor_set_requires_grad(x, true);
    float loss[2], *grad[2];
    for (int run = 0; run < 2; run++) {
        sg_set_num_threads(run ? 2 : 1);
        sg_tensor_zero_grad(x);
        sg_graph *g = sg_graph_new();
        sg_tensor *l = sg_cross_entropy_ex(g, x, y, &(sg_cross_entropy_opts){.label_smoothing = 0.1},
                                           NULL);
        cr_assert(l, "%s", sg_last_error());
        cr_assert_eq(sg_backward(g, l), SG_OK);
        loss[run] = *(float *)l->data;
        grad[run] = malloc(64 * 2048 * sizeof(float));
        memcpy(grad[run], x->grad, 64 * 2048 * sizeof(float));
        sg_graph_free(g);
    }
    sg_set_num_threads(1);
    cr_assert_eq(loss[0], loss[1]);
    cr_assert_eq(memcmp(grad[0], grad[1], 64 * 2048 * sizeof(float)), 0);
    free(grad[0]);
    free(grad[1]);
    sg_tensor_free(x);
    sg_tensor_free(y);
}

Test(cross_entropy, empty_batch_gives_zero)
{
    sg_graph *g = sg_graph_new();
    sg_cross_entropy_stats st;
    sg_tensor *l = sg_cross_entropy_ex(g, sg_zeros(g, SG_F32, 2, (int64_t[]){0, 5}),
                                       sg_zeros(g, SG_I64, 1, (int64_t[]){0}), NULL, &st);
    cr_assert(l, "%s", sg_last_error());
    cr_assert_eq(sg_tensor_get(l, 0), 0.0);
    cr_assert_eq(st.n_tokens, 0);
    sg_graph_free(g);
}

Test(cross_entropy, f32_fast_exp_path_agrees_with_f64)
{
    /* [6, 8000] logits spread over [-60, 60]: exp arguments reach the underflow range */
    sg_rng r;
    sg_rng_seed(&r, 5);
    int64_t shape[] = {6, 8000};
    sg_tensor *x64 = sg_tensor_new(SG_F64, 2, shape);
    sg_tensor_uniform_(x64, &r, -60, 60);
    sg_tensor *x32 = sg_tensor_new(SG_F32, 2, shape);
    sg_tensor_copy_(x32, x64);
    sg_tensor_copy_(x64, x32); /* identical inputs */
    sg_tensor_set_requires_grad(x32, true);
    sg_tensor_set_requires_grad(x64, true);
    int64_t ids[] = {7, 0, 7999, 4000, 1, 123};
    sg_tensor *y = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){6}, ids);
    sg_graph *g = sg_graph_new(), *g2 = sg_graph_new(); /* one backward per graph */
    sg_cross_entropy_opts o = {.label_smoothing = 0.1};
    sg_tensor *l32 = sg_cross_entropy_ex(g, x32, y, &o, NULL);
    sg_tensor *l64 = sg_cross_entropy_ex(g2, x64, y, &o, NULL);
    cr_assert(l32 && l64, "%s", sg_last_error());
    double a = sg_tensor_get(l32, 0), b = sg_tensor_get(l64, 0);
    cr_assert(fabs(a - b) <= 1e-6 * fabs(b), "f32 %.9g vs f64 %.9g", a, b);
    cr_assert_eq(sg_backward(g, l32), SG_OK);
    cr_assert_eq(sg_backward(g2, l64), SG_OK);
    sg_tensor g32 = *x32, g64 = *x64;
    g32.data = x32->grad;
    g64.data = x64->grad;
    tu_assert_close(&g32, &g64, 1e-9, 1e-5, "f32 vs f64 gradient");
    sg_graph_free(g);
    sg_graph_free(g2);
    sg_tensor_free(x32);
    sg_tensor_free(x64);
    sg_tensor_free(y);
}

/* ---- overwrite_logits: the gradient written over logits made by sg_linear ---------- */

typedef struct {
    sg_tensor *targets, *w, *b;
    bool overwrite, later_use; /* later_use: a second loss term reads the logits too */
    sg_tensor *logits;         /* last logits made, to look at after backward */
} lin_ce_case;

static sg_tensor *f_lin_ce(sg_graph *g, sg_tensor *const *in, void *u)
{
    lin_ce_case *c = u;
    sg_cross_entropy_opts o = {.label_smoothing = 0.1, .overwrite_logits = c->overwrite};
    sg_tensor *logits = c->logits = sg_linear(g, in[0], c->w, c->b);
    sg_tensor *loss = sg_cross_entropy_ex(g, logits, c->targets, &o, NULL);
    if (c->later_use)
        loss = sg_add(g, loss, sg_sum_all(g, sg_mul_scalar(g, sg_tanh(g, logits), 0.3)));
    return loss;
}

Test(cross_entropy, overwrite_logits_gives_the_same_gradients)
{
    sg_rng r;
    sg_rng_seed(&r, 11);
    sg_tensor *x = tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    lin_ce_case c = {small_targets(), tu_rand64(&r, -1, 1, 2, (int64_t)5, (int64_t)4),
                     tu_rand64(&r, -1, 1, 1, (int64_t)5), true, false, NULL};
    for (int later = 0; later < 2; later++) {
        c.later_use = later;
        c.overwrite = true;
        TU_GRADCHECK(f_lin_ce, &c, 1, &x);
        /* against the ordinary backward: same gradients, and the logits really were
         * written over */
        double gx[2][24], gw[2][20], gb[2][5];
        for (int ow = 0; ow < 2; ow++) {
            c.overwrite = ow;
            sg_tensor *ts[3] = {x, c.w, c.b};
            for (int k = 0; k < 3; k++)
                sg_tensor_zero_grad(ts[k]);
            sg_graph *g = sg_graph_new();
            sg_tensor *loss = f_lin_ce(g, (sg_tensor *[]){x}, &c);
            cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
            if (ow)
                cr_assert_eq(c.logits->grad, c.logits->data, "the overwrite path was not taken");
            for (int i = 0; i < 24; i++)
                gx[ow][i] = sg_tensor_grad_get(x, i);
            for (int i = 0; i < 20; i++)
                gw[ow][i] = sg_tensor_grad_get(c.w, i);
            for (int i = 0; i < 5; i++)
                gb[ow][i] = sg_tensor_grad_get(c.b, i);
            sg_graph_free(g);
        }
        for (int i = 0; i < 24; i++)
            cr_assert_float_eq(gx[1][i], gx[0][i], 1e-12, "dx[%d]", i);
        for (int i = 0; i < 20; i++)
            cr_assert_float_eq(gw[1][i], gw[0][i], 1e-12, "dW[%d]", i);
        for (int i = 0; i < 5; i++)
            cr_assert_float_eq(gb[1][i], gb[0][i], 1e-12, "db[%d]", i);
    }
    /* logits not made by sg_linear just before: the ordinary backward (their values stay) */
    sg_graph *g = sg_graph_new();
    sg_tensor *logits = sg_tanh(g, sg_linear(g, x, c.w, c.b));
    sg_cross_entropy_opts o = {.overwrite_logits = true};
    sg_tensor *loss = sg_cross_entropy_ex(g, logits, c.targets, &o, NULL);
    double before = sg_tensor_get(logits, 3);
    cr_assert_eq(sg_backward(g, loss), SG_OK);
    cr_assert_float_eq(sg_tensor_get(logits, 3), before, 0);
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(c.w);
    sg_tensor_free(c.b);
    sg_tensor_free(c.targets);
}
