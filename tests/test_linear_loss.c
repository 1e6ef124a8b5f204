/* test_linear_loss.c - the generator and cross entropy as one node
 * (sg_linear_cross_entropy_ex): equal to sg_linear then sg_cross_entropy_ex in value and
 * gradients, chunked or not, for any upstream gradient; gradchecks; no-grad mode; errors;
 * sg_linear_cross_entropy_backward equal to the node then sg_backward. */
#include <stdlib.h>
#include <string.h>

#include "sg_nn.h"
#include "test_util.h"

/* x arrives as a transposed view of a heap [T, B, K] tensor and W as the transpose of a
 * heap [K, V] one (strides (1, V)): the node's copies and strides are exercised too. */
typedef struct {
    sg_tensor *xt, *wt, *b, *y; /* heap: [T, B, K], [K, V], [V], [B, T] */
    sg_cross_entropy_opts o;
    double upstream; /* the loss is multiplied by it before backward */
    bool fused;
    bool fresh_x; /* x made by sg_add just before the loss (o.overwrite_input can apply) */
    bool dropout_x; /* x made by sg_dropout (p 0.3, seed 99) just before the loss (also) */
} lce_case;

/* x of a case: a transposed view of xt, or fresh from sg_add or sg_dropout */
static sg_tensor *case_x(sg_graph *g, const lce_case *c)
{
    sg_tensor *x = sg_transpose(g, c->xt, 0, 1);
    if (c->fresh_x)
        x = sg_add(g, x, sg_zeros(g, x->dtype, 1, &x->shape[2]));
    if (c->dropout_x) {
        sg_rng r;
        sg_rng_seed(&r, 99);
        x = sg_dropout(g, x, 0.3, true, &r);
    }
    return x;
}

static sg_tensor *lce_loss(sg_graph *g, const lce_case *c, sg_cross_entropy_stats *st)
{
    sg_tensor *x = case_x(g, c), *w = sg_transpose(g, c->wt, 0, 1);
    sg_tensor *l = c->fused ? sg_linear_cross_entropy_ex(g, x, w, c->b, c->y, &c->o, st)
                            : sg_cross_entropy_ex(g, sg_linear(g, x, w, c->b), c->y, &c->o, st);
    return c->upstream == 1 ? l : sg_mul_scalar(g, l, c->upstream);
}

static sg_tensor *grad_copy(const sg_tensor *t)
{
    sg_tensor *gt = sg_tensor_new(t->dtype, t->ndim, t->shape);
    cr_assert(gt && t->grad);
    memcpy(gt->data, t->grad, (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype));
    return gt;
}

static lce_case make_case(sg_dtype dt, int64_t B, int64_t T, int64_t K, int64_t V, uint64_t seed)
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    lce_case c = {.xt = sg_tensor_new(dt, 3, (int64_t[]){T, B, K}),
                  .wt = sg_tensor_new(dt, 2, (int64_t[]){K, V}),
                  .b = sg_tensor_new(dt, 1, (int64_t[]){V}),
                  .y = sg_tensor_new(SG_I64, 2, (int64_t[]){B, T}),
                  .o = {.label_smoothing = 0.1},
                  .upstream = 1};
    sg_tensor_uniform_(c.xt, &r, -1, 1);
    sg_tensor_uniform_(c.wt, &r, -1, 1);
    sg_tensor_uniform_(c.b, &r, -0.5, 0.5);
    for (int64_t i = 0; i < B; i++) /* sentence i has T - i % 4 tokens, then pads */
        for (int64_t t = 0; t < T; t++)
            ((int64_t *)c.y->data)[i * T + t] = t < T - i % 4 ? 1 + (i * 131 + t * 7) % (V - 1) : 0;
    sg_tensor_set_requires_grad(c.xt, true);
    sg_tensor_set_requires_grad(c.wt, true);
    sg_tensor_set_requires_grad(c.b, true);
    return c;
}

static void free_case(lce_case *c)
{
    sg_tensor_free(c->xt);
    sg_tensor_free(c->wt);
    sg_tensor_free(c->b);
    sg_tensor_free(c->y);
}

/* The two runs' gradients of x, W and b agree (and are freed). */
static void compare_grads(sg_tensor *grads[2][3], double rtol, const char *what)
{
    const char *names[3] = {"dx", "dW", "db"};
    for (int k = 0; k < 3; k++) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s %s", what, names[k]);
        /* gradients are ~1/N each: an absolute floor well below that */
        tu_assert_close(grads[0][k], grads[1][k], rtol * 1e-3, rtol, msg);
        sg_tensor_free(grads[0][k]);
        sg_tensor_free(grads[1][k]);
    }
}

/* Runs the case fused and composed; loss, stats and the three gradients must agree. */
static void check_equal(lce_case *c, double rtol, const char *what)
{
    sg_tensor *grads[2][3];
    double loss[2];
    sg_cross_entropy_stats st[2];
    for (int run = 0; run < 2; run++) {
        c->fused = run == 0;
        sg_tensor_zero_grad(c->xt);
        sg_tensor_zero_grad(c->wt);
        sg_tensor_zero_grad(c->b);
        sg_graph *g = sg_graph_new();
        sg_tensor *l = lce_loss(g, c, &st[run]);
        cr_assert(l, "%s: %s", what, sg_last_error());
        cr_assert_eq(sg_backward(g, l), SG_OK, "%s: %s", what, sg_last_error());
        loss[run] = sg_tensor_get(l, 0);
        grads[run][0] = grad_copy(c->xt);
        grads[run][1] = grad_copy(c->wt);
        grads[run][2] = grad_copy(c->b);
        sg_graph_free(g);
    }
    cr_assert(fabs(loss[0] - loss[1]) <= rtol * fabs(loss[1]), "%s: loss %.12g vs %.12g", what,
              loss[0], loss[1]);
    cr_assert_eq(st[0].n_tokens, st[1].n_tokens, "%s", what);
    cr_assert(fabs(st[0].loss_sum - st[1].loss_sum) <= rtol * fabs(st[1].loss_sum), "%s", what);
    compare_grads(grads, rtol, what);
}

Test(linear_cross_entropy, chunked_equals_linear_then_cross_entropy_f64)
{
    /* V = 8192: 256-row chunks; 20 x 35 = 700 rows > 2 (256 + 6): three chunks, the last
     * one short, pads in every chunk */
    lce_case c = make_case(SG_F64, 20, 35, 6, 8192, 1);
    check_equal(&c, 1e-12, "f64 chunked");
    c.upstream = 2.5;
    c.o.reduction = SG_REDUCTION_SUM;
    check_equal(&c, 1e-12, "f64 chunked, sum, upstream 2.5");
    free_case(&c);
}

/* dloss/dx written over a fresh x, which becomes x's gradient (scaled in place when the
 * upstream gradient is not 1): the same gradients; an x that is not fresh is left alone */
Test(linear_cross_entropy, input_overwritten_only_when_fresh_same_gradients)
{
    lce_case c = make_case(SG_F64, 20, 35, 6, 8192, 4);
    c.o.overwrite_input = true;
    c.fresh_x = true;
    check_equal(&c, 1e-12, "f64 chunked, x overwritten");
    c.upstream = 2.5;
    check_equal(&c, 1e-12, "f64 chunked, x overwritten, upstream 2.5");
    c.fresh_x = false;
    c.dropout_x = true; /* from a dropout, whose backward reads no output */
    check_equal(&c, 1e-12, "f64 chunked, x from dropout overwritten, upstream 2.5");
    c.upstream = 1;
    check_equal(&c, 1e-12, "f64 chunked, x from dropout overwritten");
    c.dropout_x = false;
    c.upstream = 2.5;
    c.fresh_x = false; /* x is a view of the heap tensor xt, which must keep its values */
    sg_tensor *before = sg_tensor_new(SG_F64, 3, c.xt->shape);
    memcpy(before->data, c.xt->data, (size_t)sg_tensor_numel(c.xt) * sizeof(double));
    check_equal(&c, 1e-12, "f64 chunked, x not fresh");
    tu_assert_close(c.xt, before, 0, 0, "x not fresh: untouched");
    sg_tensor_free(before);
    free_case(&c);
}

Test(linear_cross_entropy, chunked_equals_linear_then_cross_entropy_f32)
{
    lce_case c = make_case(SG_F32, 20, 35, 6, 8192, 2);
    check_equal(&c, 2e-5, "f32 chunked");
    free_case(&c);
}

Test(linear_cross_entropy, whole_logits_path_equals_composition)
{
    /* 4 x 5 rows <= 2 (chunk + K): the logits are made whole */
    lce_case c = make_case(SG_F64, 4, 5, 3, 7, 3);
    c.upstream = -0.75;
    check_equal(&c, 1e-12, "f64 whole");
    free_case(&c);
}

Test(linear_cross_entropy, all_rows_ignored_give_zero_loss_and_gradients)
{
    lce_case c = make_case(SG_F64, 20, 35, 6, 8192, 4);
    memset(c.y->data, 0, sizeof(int64_t) * 700);
    sg_graph *g = sg_graph_new();
    sg_cross_entropy_stats st;
    c.fused = true;
    sg_tensor *l = lce_loss(g, &c, &st);
    cr_assert(l, "%s", sg_last_error());
    cr_assert_eq(sg_tensor_get(l, 0), 0.0);
    cr_assert_eq(st.n_tokens, 0);
    cr_assert_eq(sg_backward(g, l), SG_OK);
    for (int64_t i = 0; i < 8192 * 6; i += 97)
        cr_assert_eq(sg_tensor_grad_get(c.wt, i), 0.0);
    for (int64_t i = 0; i < 700 * 6; i += 7)
        cr_assert_eq(sg_tensor_grad_get(c.xt, i), 0.0);
    sg_graph_free(g);
    free_case(&c);
}

/* ---- f64 gradchecks ------------------------------------------------------------------ */

typedef struct {
    sg_tensor *w, *y;
    sg_cross_entropy_opts o;
} gc_case;

/* in[0] x [2, 3, 4], in[1] bias [5]; the weight is frozen, so even these few rows take
 * the chunked path (no weight gradient to keep); the upstream gradient is 2.5 */
static sg_tensor *f_frozen_w(sg_graph *g, sg_tensor *const *in, void *u)
{
    gc_case *c = u;
    return sg_mul_scalar(g, sg_linear_cross_entropy_ex(g, in[0], c->w, in[1], c->y, &c->o, NULL),
                         2.5);
}

Test(linear_cross_entropy, gradcheck_chunked_path_with_frozen_weight)
{
    sg_rng r;
    sg_rng_seed(&r, 5);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4),
                        tu_rand64(&r, -1, 1, 1, (int64_t)5)};
    gc_case c = {tu_rand64(&r, -1, 1, 2, (int64_t)5, (int64_t)4),
                 sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1, 4, 2, 0, 0}),
                 {.label_smoothing = 0.2}};
    sg_tensor_set_requires_grad(c.w, false);
    TU_GRADCHECK(f_frozen_w, &c, 2, in);
    sg_tensor_free(in[0]);
    sg_tensor_free(in[1]);
    sg_tensor_free(c.w);
    sg_tensor_free(c.y);
}

/* x [2, 3, 4], W [5, 4], no bias: the whole-logits path */
static sg_tensor *f_whole(sg_graph *g, sg_tensor *const *in, void *u)
{
    gc_case *c = u;
    return sg_linear_cross_entropy_ex(g, in[0], in[1], NULL, c->y, &c->o, NULL);
}

Test(linear_cross_entropy, gradcheck_whole_path_without_bias)
{
    sg_rng r;
    sg_rng_seed(&r, 6);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 3, (int64_t)2, (int64_t)3, (int64_t)4),
                        tu_rand64(&r, -1, 1, 2, (int64_t)5, (int64_t)4)};
    gc_case c = {NULL,
                 sg_tensor_from_buffer(SG_I64, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1, 4, 2, 0, 0}),
                 {.reduction = SG_REDUCTION_SUM}};
    TU_GRADCHECK(f_whole, &c, 2, in);
    sg_tensor_free(in[0]);
    sg_tensor_free(in[1]);
    sg_tensor_free(c.y);
}

/* ---- semantics ------------------------------------------------------------------------ */

Test(linear_cross_entropy, no_grad_mode_records_nothing_and_touches_no_gradient)
{
    lce_case c = make_case(SG_F32, 20, 35, 6, 8192, 7);
    sg_tensor_zero_grad(c.wt);
    sg_tensor_zero_grad(c.xt);
    c.fused = true;
    sg_graph *g = sg_graph_new();
    sg_graph_set_grad_enabled(g, false);
    sg_tensor *l = lce_loss(g, &c, NULL);
    cr_assert(l, "%s", sg_last_error());
    cr_assert(!l->requires_grad);
    for (int64_t i = 0; i < 8192 * 6; i += 101)
        cr_assert_eq(sg_tensor_grad_get(c.wt, i), 0.0);
    for (int64_t i = 0; i < 700 * 6; i += 7)
        cr_assert_eq(sg_tensor_grad_get(c.xt, i), 0.0);
    float got = *(float *)l->data;
    sg_graph_set_grad_enabled(g, true);
    c.fused = false;
    sg_tensor *want = lce_loss(g, &c, NULL);
    cr_assert(fabsf(got - *(float *)want->data) <= 2e-5f * fabsf(got), "%g vs %g", got,
              *(float *)want->data);
    sg_graph_free(g);
    free_case(&c);
}

Test(linear_cross_entropy, forward_without_backward_adds_no_gradient)
{
    lce_case c = make_case(SG_F64, 20, 35, 6, 8192, 8);
    c.fused = true;
    sg_tensor_zero_grad(c.wt);
    sg_graph *g = sg_graph_new();
    cr_assert(lce_loss(g, &c, NULL), "%s", sg_last_error());
    sg_graph_reset(g); /* the step is abandoned: no backward */
    for (int64_t i = 0; i < 8192 * 6; i += 101)
        cr_assert_eq(sg_tensor_grad_get(c.wt, i), 0.0);
    sg_graph_free(g);
    free_case(&c);
}

/* ---- sg_linear_cross_entropy_backward: the loss and its backward in one call ----------- */

/* Gradients start at `start` (accumulation) and must end as after
 * sg_linear_cross_entropy_ex + sg_backward. */
static void check_one_call(lce_case *c, double start, double rtol, const char *what)
{
    sg_tensor *grads[2][3];
    double loss[2];
    sg_tensor *heap[3] = {c->xt, c->wt, c->b};
    for (int run = 0; run < 2; run++) {
        for (int k = 0; k < 3; k++)
            for (int64_t i = 0; i < sg_tensor_numel(heap[k]); i++) {
                double v = start * (double)(i % 5);
                if (heap[k]->dtype == SG_F32)
                    ((float *)heap[k]->grad)[i] = (float)v;
                else
                    ((double *)heap[k]->grad)[i] = v;
            }
        sg_graph *g = sg_graph_new();
        sg_tensor *x = case_x(g, c), *w = sg_transpose(g, c->wt, 0, 1);
        sg_cross_entropy_stats st = {0};
        sg_tensor *l;
        if (run == 0) {
            l = sg_linear_cross_entropy_backward(g, x, w, c->b, c->y, &c->o, &st);
            cr_assert(l, "%s: %s", what, sg_last_error());
        } else {
            l = sg_linear_cross_entropy_ex(g, x, w, c->b, c->y, &c->o, &st);
            cr_assert(l && sg_backward(g, l) == SG_OK, "%s: %s", what, sg_last_error());
        }
        cr_assert_gt(st.n_tokens, 0);
        loss[run] = sg_tensor_get(l, 0);
        for (int k = 0; k < 3; k++)
            grads[run][k] = grad_copy(heap[k]);
        sg_graph_free(g);
    }
    cr_assert(fabs(loss[0] - loss[1]) <= rtol * fabs(loss[1]), "%s: loss", what);
    compare_grads(grads, rtol, what);
}

Test(linear_cross_entropy, backward_in_one_call_equals_loss_then_backward)
{
    lce_case c = make_case(SG_F64, 20, 35, 6, 8192, 9); /* three chunks of rows */
    check_one_call(&c, 0, 1e-12, "chunked");
    check_one_call(&c, 0.25, 1e-12, "chunked, gradients accumulate");
    c.o.overwrite_input = true;
    c.fresh_x = true;
    check_one_call(&c, 0.25, 1e-12, "chunked, x overwritten");
    c.fresh_x = false;
    c.dropout_x = true;
    check_one_call(&c, 0.25, 1e-12, "chunked, x from dropout overwritten");
    c.o.reduction = SG_REDUCTION_SUM;
    check_one_call(&c, 0, 1e-12, "chunked, sum");
    free_case(&c);
    /* K wide against the rows: loss then backward keeps the logits' gradient; one call
     * keeps nothing */
    c = make_case(SG_F64, 4, 5, 40, 30, 10);
    check_one_call(&c, 0.25, 1e-12, "wide");
    free_case(&c);
    c = make_case(SG_F32, 20, 35, 6, 8192, 11);
    check_one_call(&c, 0, 2e-5, "f32");
    free_case(&c);
}

Test(linear_cross_entropy, backward_in_one_call_refuses_a_second_backward_and_no_grad)
{
    lce_case c = make_case(SG_F64, 4, 5, 3, 7, 12);
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_transpose(g, c.xt, 0, 1), *w = sg_transpose(g, c.wt, 0, 1);
    sg_tensor *l = sg_linear_cross_entropy_backward(g, x, w, c.b, c.y, NULL, NULL);
    cr_assert(l, "%s", sg_last_error());
    sg_tensor *dw = grad_copy(c.wt);
    cr_assert_neq(sg_backward(g, l), SG_OK); /* dW was added in the forward: not twice */
    cr_assert(strstr(sg_last_error(), "twice"), "%s", sg_last_error());
    sg_tensor *dw2 = grad_copy(c.wt);
    tu_assert_close(dw2, dw, 0, 0, "W's gradient after the refused backward");
    sg_tensor_free(dw);
    sg_tensor_free(dw2);
    sg_graph_reset(g);
    sg_graph_set_grad_enabled(g, false);
    x = sg_transpose(g, c.xt, 0, 1);
    w = sg_transpose(g, c.wt, 0, 1);
    cr_assert_null(sg_linear_cross_entropy_backward(g, x, w, c.b, c.y, NULL, NULL));
    cr_assert_eq(sg_graph_status(g), SG_EINVAL, "%s", sg_last_error());
    cr_assert(strstr(sg_last_error(), "requires grad"), "%s", sg_last_error());
    sg_graph_free(g);
    free_case(&c);
}

/* ---- error paths ------------------------------------------------------------------------ */

/* Case k of the bad calls on a fresh graph: the status and a word of the message. */
static void expect_rejected(int k, int code, const char *says)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 4});
    sg_tensor *w = sg_zeros(g, SG_F32, 2, (int64_t[]){5, 4});
    sg_tensor *b = sg_zeros(g, SG_F32, 1, (int64_t[]){5});
    sg_tensor *y = sg_zeros(g, SG_I64, 2, (int64_t[]){2, 3});
    sg_cross_entropy_opts o = {0};
    switch (k) {
    case 0: w = sg_zeros(g, SG_F32, 2, (int64_t[]){5, 3}); break;
    case 1: b = sg_zeros(g, SG_F32, 1, (int64_t[]){4}); break;
    case 2: y = sg_zeros(g, SG_I64, 2, (int64_t[]){3, 2}); break;
    case 3: w = sg_zeros(g, SG_F32, 1, (int64_t[]){4}); break;
    case 4: w = sg_zeros(g, SG_F64, 2, (int64_t[]){5, 4}); break;
    case 5: y = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 3}); break;
    case 6: y = sg_from_buffer(g, SG_I64, 2, (int64_t[]){2, 3}, (int64_t[]){1, 2, 5, 0, 0, 0}); break;
    case 7: o.label_smoothing = -1; break;
    }
    cr_assert_null(sg_linear_cross_entropy_ex(g, x, w, b, y, &o, NULL), "case %d", k);
    cr_assert_eq(sg_graph_status(g), code, "case %d: %s", k, sg_last_error());
    cr_assert(!says || strstr(sg_last_error(), says), "case %d: %s", k, sg_last_error());
    sg_graph_free(g);
}

Test(linear_cross_entropy, rejects_mismatched_shapes_dtypes_and_options)
{
    expect_rejected(0, SG_ESHAPE, "features");
    expect_rejected(1, SG_ESHAPE, "bias");
    expect_rejected(2, SG_ESHAPE, "targets");
    expect_rejected(3, SG_ESHAPE, "2-D");
    expect_rejected(4, SG_EDTYPE, NULL);
    expect_rejected(5, SG_EDTYPE, "i64");
    expect_rejected(6, SG_ERANGE, "id 5 at position 2");
    expect_rejected(7, SG_EINVAL, "label_smoothing");
}
