/* test_ops.c - f64 gradchecks of the ops test_core.c does not cover: max, logsumexp,
 * softmax/log_softmax (masks, fully masked rows), joins and splits, indexing, copy,
 * expand; with transposed/sliced (non-contiguous) and broadcast inputs. */
#include <string.h>

#include "test_util.h"

static sg_tensor *idx_tensor(sg_graph *g, int ndim, const int64_t *shape, const int64_t *v)
{
    return sg_from_buffer(g, SG_I64, ndim, shape, v);
}

static void free_all(int n, sg_tensor **t)
{
    for (int i = 0; i < n; i++)
        sg_tensor_free(t[i]);
}

/* ---- reductions ------------------------------------------------------------------- */

static sg_tensor *f_max(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *xt = sg_transpose(g, in[0], 0, 1); /* [4,3] non-contiguous */
    sg_tensor *ix;
    sg_tensor *a = sg_max(g, xt, 1, false, &ix);  /* [4] */
    sg_tensor *b = sg_max(g, in[0], -1, true, NULL); /* [3,1] */
    return sg_add(g, a, sg_mul(g, b, b));          /* [3,4] broadcast */
}

Test(gradcheck, max_over_transposed_and_keepdim)
{
    sg_rng r;
    sg_rng_seed(&r, 11);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 3, 4);
    TU_GRADCHECK(f_max, NULL, 1, &x);
    sg_tensor_free(x);
}

static sg_tensor *f_lse(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *s = sg_slice(g, in[0], 2, 0, 5, 2);         /* [2,3,3] strided */
    sg_tensor *a = sg_logsumexp(g, s, 1, false);            /* [2,3] */
    sg_tensor *b = sg_logsumexp(g, sg_mul_scalar(g, in[0], 30.0), -1, true); /* large values */
    return sg_add(g, sg_unsqueeze(g, a, 2), sg_mul_scalar(g, b, 0.1));
}

Test(gradcheck, logsumexp_strided_and_large_values)
{
    sg_rng r;
    sg_rng_seed(&r, 12);
    sg_tensor *x = tu_rand64(&r, -1, 1, 3, 2, 3, 5);
    TU_GRADCHECK(f_lse, NULL, 1, &x);
    sg_tensor_free(x);
}

Test(ops, logsumexp_is_stable_and_matches_definition)
{
    sg_graph *g = sg_graph_new();
    double v[] = {1000, 1001, 999, -INFINITY, -INFINITY, -INFINITY};
    sg_tensor *x = sg_from_buffer(g, SG_F64, 2, (int64_t[]){2, 3}, v);
    sg_tensor *y = sg_logsumexp(g, x, 1, false);
    cr_assert(y, "%s", sg_last_error());
    double want = 1001 + log(exp(-1.0) + 1 + exp(-2.0));
    cr_assert_float_eq(sg_tensor_get(y, 0), want, 1e-9);
    cr_assert_eq(sg_tensor_get(y, 1), -INFINITY);
    sg_graph_free(g);
}

Test(ops, max_indices_and_argmax_pick_the_first_maximum)
{
    sg_graph *g = sg_graph_new();
    float v[] = {1, 5, 5, 2, 7, 7, 0, 1};
    sg_tensor *x = sg_from_buffer(g, SG_F32, 2, (int64_t[]){2, 4}, v);
    sg_tensor *ix;
    sg_tensor *m = sg_max(g, x, 1, true, &ix);
    cr_assert(m && ix, "%s", sg_last_error());
    cr_assert_eq(m->ndim, 2);
    cr_assert_eq(ix->dtype, SG_I64);
    cr_assert_eq(sg_tensor_get(m, 0), 5.0);
    cr_assert_eq(sg_tensor_get(ix, 0), 1.0);
    cr_assert_eq(sg_tensor_get(ix, 1), 0.0);
    sg_tensor *am = sg_argmax(g, sg_transpose(g, x, 0, 1), 0, false); /* [4] over rows */
    cr_assert(am, "%s", sg_last_error());
    cr_assert_eq(am->ndim, 1);
    cr_assert_eq(sg_tensor_get(am, 0), 1.0);
    cr_assert_eq(sg_tensor_get(am, 1), 0.0);
    cr_assert_eq(sg_tensor_get(am, 2), 1.0);
    sg_graph_free(g);
}

/* ---- softmax family ----------------------------------------------------------------- */

typedef struct {
    bool logsm;
} smx_t;

static sg_tensor *f_softmax_masked(sg_graph *g, sg_tensor *const *in, void *u)
{
    const smx_t *o = u;
    /* mask [3,1,4] broadcast over [3,2,4]; row 1 is fully masked */
    uint8_t mv[] = {1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0};
    sg_tensor *m = sg_from_buffer(g, SG_BOOL, 3, (int64_t[]){3, 1, 4}, mv);
    sg_tensor *y = o->logsm ? sg_log_softmax(g, in[0], -1, m) : sg_softmax(g, in[0], -1, m);
    /* masked log-softmax entries are -inf: keep only the valid ones */
    if (o->logsm) {
        uint8_t nv[12];
        for (int i = 0; i < 12; i++)
            nv[i] = !mv[i];
        y = sg_masked_fill(g, y, sg_from_buffer(g, SG_BOOL, 3, (int64_t[]){3, 1, 4}, nv), 0.0);
    }
    return sg_mul(g, y, in[1]);
}

Test(gradcheck, softmax_with_mask_and_fully_masked_row)
{
    sg_rng r;
    sg_rng_seed(&r, 13);
    sg_tensor *in[2] = {tu_rand64(&r, -2, 2, 3, 3, 2, 4), tu_rand64(&r, -1, 1, 3, 3, 2, 4)};
    smx_t o = {false};
    TU_GRADCHECK(f_softmax_masked, &o, 2, in);
    free_all(2, in);
}

Test(gradcheck, log_softmax_with_mask_and_fully_masked_row)
{
    sg_rng r;
    sg_rng_seed(&r, 14);
    sg_tensor *in[2] = {tu_rand64(&r, -2, 2, 3, 3, 2, 4), tu_rand64(&r, -1, 1, 3, 3, 2, 4)};
    smx_t o = {true};
    TU_GRADCHECK(f_softmax_masked, &o, 2, in);
    free_all(2, in);
}

static sg_tensor *f_softmax_transposed(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *xt = sg_transpose(g, in[0], 0, 2); /* [4,3,2] */
    sg_tensor *a = sg_softmax(g, xt, 1, NULL);
    sg_tensor *b = sg_log_softmax(g, xt, 0, NULL);
    return sg_mul(g, sg_add(g, a, sg_mul_scalar(g, b, 0.5)), in[1]);
}

Test(gradcheck, softmax_and_log_softmax_of_transposed_input)
{
    sg_rng r;
    sg_rng_seed(&r, 15);
    sg_tensor *in[2] = {tu_rand64(&r, -2, 2, 3, 2, 3, 4), tu_rand64(&r, -1, 1, 3, 4, 3, 2)};
    TU_GRADCHECK(f_softmax_transposed, NULL, 2, in);
    free_all(2, in);
}

Test(ops, fully_masked_row_gives_zeros_and_zero_gradient)
{
    sg_graph *g = sg_graph_new();
    sg_rng r;
    sg_rng_seed(&r, 16);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 2, 3);
    uint8_t mv[] = {1, 1, 0, 0, 0, 0}, nv[] = {0, 0, 1, 1, 1, 1};
    sg_tensor *m = sg_from_buffer(g, SG_BOOL, 2, (int64_t[]){2, 3}, mv);
    sg_tensor *notm = sg_from_buffer(g, SG_BOOL, 2, (int64_t[]){2, 3}, nv);
    sg_tensor *y = sg_softmax(g, x, 1, m);
    sg_tensor *ly = sg_log_softmax(g, x, 1, m);
    cr_assert(y && ly, "%s", sg_last_error());
    for (int j = 0; j < 3; j++) {
        cr_assert_eq(sg_tensor_get(y, 3 + j), 0.0);
        cr_assert_eq(sg_tensor_get(ly, 3 + j), -INFINITY);
    }
    cr_assert_eq(sg_tensor_get(y, 2), 0.0);
    /* loss = sum(softmax * w) + sum(log_softmax at valid positions) */
    sg_tensor *w = sg_full(g, SG_F64, 2, (int64_t[]){2, 3}, 0.7);
    sg_tensor *valid = sg_masked_fill(g, ly, notm, 0.0);
    sg_tensor *loss = sg_add(g, sg_sum_all(g, sg_mul(g, y, w)), sg_sum_all(g, valid));
    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
    for (int i = 0; i < 6; i++)
        cr_assert(!isnan(sg_tensor_grad_get(x, i)), "gradient %d is NaN", i);
    for (int j = 0; j < 3; j++)
        cr_assert_eq(sg_tensor_grad_get(x, 3 + j), 0.0);
    sg_graph_free(g);
    sg_tensor_free(x);
}

/* ---- joining and splitting ----------------------------------------------------------- */

static sg_tensor *f_concat(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    /* in: [2,3], [4,2] (transposed to [2,4]), [1,3] broadcast-expanded to [2,3] */
    sg_tensor *parts[3] = {in[0], sg_transpose(g, in[1], 0, 1),
                           sg_expand(g, in[2], 2, (int64_t[]){2, 3})};
    sg_tensor *c = sg_concat(g, 3, parts, 1); /* [2,10] */
    sg_tensor *d = sg_concat(g, 2, (sg_tensor *[]){c, sg_mul(g, c, c)}, 0); /* [4,10] */
    return sg_tanh(g, d);
}

Test(gradcheck, concat_of_transposed_and_expanded_inputs)
{
    sg_rng r;
    sg_rng_seed(&r, 17);
    sg_tensor *in[3] = {tu_rand64(&r, -1, 1, 2, 2, 3), tu_rand64(&r, -1, 1, 2, 4, 2),
                        tu_rand64(&r, -1, 1, 2, 1, 3)};
    TU_GRADCHECK(f_concat, NULL, 3, in);
    free_all(3, in);
}

static sg_tensor *f_stack(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *bt = sg_transpose(g, in[1], 0, 1); /* [2,3] */
    sg_tensor *s0 = sg_stack(g, 3, (sg_tensor *[]){in[0], bt, in[0]}, 0);  /* [3,2,3] */
    sg_tensor *s2 = sg_stack(g, 2, (sg_tensor *[]){bt, in[0]}, -1);        /* [2,3,2] */
    return sg_add(g, sg_sum(g, s0, 1, (int[]){0}, false), sg_mul(g, sg_select(g, s2, 2, 0),
                                                                  sg_select(g, s2, 2, 1)));
}

Test(gradcheck, stack_first_and_last_dim)
{
    sg_rng r;
    sg_rng_seed(&r, 18);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 2, 2, 3), tu_rand64(&r, -1, 1, 2, 3, 2)};
    TU_GRADCHECK(f_stack, NULL, 2, in);
    free_all(2, in);
}

static sg_tensor *f_split_chunk(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *p[3], *c[2];
    if (sg_split(g, in[0], 1, 3, (int64_t[]){1, 3, 2}, p) != SG_OK)
        return NULL;
    if (sg_chunk(g, sg_transpose(g, in[0], 0, 1), 0, 2, c) != SG_OK) /* [3,4] each */
        return NULL;
    sg_tensor *y = sg_mul(g, p[0], sg_sum(g, p[1], 1, (int[]){1}, true)); /* [4,1] */
    y = sg_add(g, y, sg_sum(g, sg_mul(g, p[2], p[2]), 1, (int[]){1}, true));
    return sg_add(g, sg_transpose(g, sg_mul(g, c[0], c[1]), 0, 1), y); /* [4,3] */
}

Test(gradcheck, split_and_chunk_views)
{
    sg_rng r;
    sg_rng_seed(&r, 19);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 4, 6);
    TU_GRADCHECK(f_split_chunk, NULL, 1, &x);
    sg_tensor_free(x);
}

Test(ops, split_and_chunk_share_storage)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_view(g, sg_arange(g, SG_F32, 12, 0, 1), 2, (int64_t[]){3, 4});
    sg_tensor *c[2];
    cr_assert_eq(sg_chunk(g, x, 1, 2, c), SG_OK, "%s", sg_last_error());
    cr_assert_eq(c[1]->shape[1], 2);
    cr_assert_eq(c[1]->data, (float *)x->data + 2);
    cr_assert_eq(sg_tensor_get(c[1], 2), 6.0);
    sg_graph_free(g);
}

/* ---- indexing ----------------------------------------------------------------------- */

static sg_tensor *f_index_select(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    int64_t iv[] = {2, 0, 2, 1, 3, 0}; /* repeated indices: gradients add up */
    sg_tensor *idx = idx_tensor(g, 2, (int64_t[]){2, 3}, iv);
    sg_tensor *a = sg_index_select(g, in[0], 0, idx);                         /* [2,3,3] */
    sg_tensor *xt = sg_transpose(g, in[0], 0, 1);                            /* [3,4] */
    sg_tensor *b = sg_index_select(g, xt, 1, idx);                            /* [3,2,3] */
    sg_tensor *e = sg_index_select(g, in[0], 1, sg_slice(g, idx, 1, 0, 3, 2)); /* [4,2,2] */
    sg_tensor *y = sg_add(g, a, sg_permute(g, b, (int[]){1, 2, 0}));
    return sg_add(g, y, sg_sum_all(g, sg_mul(g, e, e)));
}

Test(gradcheck, index_select_any_index_shape_and_layout)
{
    sg_rng r;
    sg_rng_seed(&r, 20);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 4, 3);
    TU_GRADCHECK(f_index_select, NULL, 1, &x);
    sg_tensor_free(x);
}

static sg_tensor *f_gather(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    int64_t iv[] = {1, 0, 1, 3, 3, 0}; /* [2,3] along dim 1 of x [3,4] */
    sg_tensor *idx = idx_tensor(g, 2, (int64_t[]){2, 3}, iv);
    sg_tensor *a = sg_gather(g, in[0], 1, idx);
    int64_t jv[] = {2, 0, 1, 1, 0, 2}; /* along dim 0 of x^T [4,3] */
    sg_tensor *jdx = idx_tensor(g, 2, (int64_t[]){2, 3}, jv);
    sg_tensor *b = sg_gather(g, sg_transpose(g, in[0], 0, 1), 0, jdx);
    return sg_mul(g, a, sg_add_scalar(g, b, 2.0));
}

Test(gradcheck, gather_on_both_dims_and_transposed_input)
{
    sg_rng r;
    sg_rng_seed(&r, 21);
    sg_tensor *x = tu_rand64(&r, -1, 1, 2, 3, 4);
    TU_GRADCHECK(f_gather, NULL, 1, &x);
    sg_tensor_free(x);
}

static sg_tensor *f_scatter(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    /* base [3,4]; src [3,3] (only its [2,3] corner is scattered); idx [2,3] along dim 0 */
    int64_t iv[] = {0, 2, 2, 2, 2, 1};
    sg_tensor *idx = idx_tensor(g, 2, (int64_t[]){2, 3}, iv);
    sg_tensor *y = sg_scatter_add(g, in[0], 0, idx, in[1]);
    sg_tensor *z = sg_scatter_add(g, sg_transpose(g, in[0], 0, 1), 1, idx,
                                  sg_transpose(g, in[1], 0, 1)); /* [4,3] */
    return sg_add(g, sg_mul(g, y, y), sg_transpose(g, z, 0, 1));
}

Test(gradcheck, scatter_add_with_collisions)
{
    sg_rng r;
    sg_rng_seed(&r, 22);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 2, 3, 4), tu_rand64(&r, -1, 1, 2, 3, 3)};
    TU_GRADCHECK(f_scatter, NULL, 2, in);
    free_all(2, in);
}

Test(ops, gather_and_scatter_add_values)
{
    sg_graph *g = sg_graph_new();
    float xv[] = {1, 2, 3, 4, 5, 6};
    sg_tensor *x = sg_from_buffer(g, SG_F32, 2, (int64_t[]){2, 3}, xv);
    int64_t iv[] = {2, 2, 0, 1};
    sg_tensor *idx = idx_tensor(g, 2, (int64_t[]){2, 2}, iv);
    sg_tensor *y = sg_gather(g, x, 1, idx); /* [[3,3],[4,5]] */
    cr_assert(y, "%s", sg_last_error());
    float want[] = {3, 3, 4, 5};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(sg_tensor_get(y, i), want[i]);
    sg_tensor *s = sg_scatter_add(g, sg_zeros(g, SG_F32, 2, (int64_t[]){2, 3}), 1, idx, x);
    cr_assert(s, "%s", sg_last_error());
    float want_s[] = {0, 0, 3, 4, 5, 0}; /* row 0: 1+2 at col 2; row 1: 4 at 0, 5 at 1 */
    for (int i = 0; i < 6; i++)
        cr_assert_eq(sg_tensor_get(s, i), want_s[i]);
    sg_tensor *e = sg_index_select(g, x, 0, idx_tensor(g, 1, (int64_t[]){3}, (int64_t[]){1, 1, 0}));
    cr_assert_eq(e->shape[0], 3);
    cr_assert_eq(sg_tensor_get(e, 3), 4.0);
    cr_assert_eq(sg_tensor_get(e, 8), 3.0);
    sg_graph_free(g);
}

/* ---- copy, expand ------------------------------------------------------------------- */

static sg_tensor *f_copy_expand(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *c = sg_copy(g, sg_transpose(g, in[0], 0, 1));          /* [3,2] */
    sg_tensor *e = sg_expand(g, in[1], 3, (int64_t[]){4, 3, 2});      /* [1,2] -> [4,3,2] */
    sg_tensor *ce = sg_copy(g, e);
    return sg_mul(g, ce, sg_add(g, c, sg_exp(g, c)));
}

Test(gradcheck, copy_and_expand)
{
    sg_rng r;
    sg_rng_seed(&r, 23);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 2, 2, 3), tu_rand64(&r, -1, 1, 2, 1, 2)};
    TU_GRADCHECK(f_copy_expand, NULL, 2, in);
    free_all(2, in);
}

/* f32 paths agree with f64 on the same data (the kernels are separate instances) */
Test(ops, f32_kernels_match_f64)
{
    sg_graph *g = sg_graph_new();
    sg_rng r;
    sg_rng_seed(&r, 24);
    sg_tensor *x64 = sg_randn(g, SG_F64, 2, (int64_t[]){3, 5}, &r);
    sg_tensor *x32 = sg_empty(g, SG_F32, 2, (int64_t[]){3, 5});
    sg_tensor_copy_(x32, x64);
    sg_tensor *idx = idx_tensor(g, 2, (int64_t[]){3, 2}, (int64_t[]){4, 0, 1, 1, 2, 3});
    sg_tensor *xs[2] = {x64, x32};
    sg_tensor *out[2][6];
    for (int k = 0; k < 2; k++) {
        sg_tensor *x = sg_transpose(g, sg_transpose(g, xs[k], 0, 1), 0, 1);
        out[k][0] = sg_max(g, x, 1, false, NULL);
        out[k][1] = sg_logsumexp(g, x, 0, false);
        out[k][2] = sg_concat(g, 2, (sg_tensor *[]){x, x}, 0);
        out[k][3] = sg_index_select(g, x, 1, idx);
        out[k][4] = sg_gather(g, x, 1, idx);
        out[k][5] = sg_scatter_add(g, x, 1, idx, sg_gather(g, x, 1, idx));
    }
    for (int i = 0; i < 6; i++)
        tu_assert_close(out[1][i], out[0][i], 1e-6, 1e-6, "f32 vs f64");
    sg_graph_free(g);
}

/* The f32 tanh is a rational approximation (fastmath.h), used by sg_tanh, the RNN cells and
 * the additive attention: a few ulp of the true value everywhere, never outside [-1, 1],
 * odd, and NaN in -> NaN out. */
Test(ops, f32_tanh_is_accurate_bounded_and_odd)
{
    sg_graph *g = sg_graph_new();
    const int64_t n = 400001;
    sg_tensor *x = sg_empty(g, SG_F32, 1, (int64_t[]){n + 4});
    float *xv = x->data;
    for (int64_t i = 0; i < n; i++) /* [-20, 20], denser near 0 */
        xv[i] = (float)(20.0 * pow((double)(i - n / 2) / (double)(n / 2), 3));
    xv[n] = 1e-30f, xv[n + 1] = -INFINITY, xv[n + 2] = INFINITY, xv[n + 3] = NAN;
    sg_tensor *y = sg_tanh(g, x), *ym = sg_tanh(g, sg_neg(g, x));
    cr_assert(y && ym, "%s", sg_last_error());
    const float *yv = y->data, *ymv = ym->data;
    double worst = 0;
    for (int64_t i = 0; i < n + 3; i++) {
        double want = tanh((double)xv[i]), err = fabs((double)yv[i] - want);
        double rel = want != 0 ? err / fabs(want) : err;
        worst = rel > worst ? rel : worst;
        cr_assert(fabsf(yv[i]) <= 1.0f, "tanh(%.9g) = %.9g is outside [-1, 1]", xv[i], yv[i]);
        cr_assert_eq(ymv[i], -yv[i], "tanh(-x) != -tanh(x) at x = %.9g", xv[i]);
    }
    cr_assert(worst <= 5e-7, "largest relative error %.3g", worst);
    cr_assert(isnan(yv[n + 3]), "tanh(NaN) = %g", yv[n + 3]);
    cr_assert_eq(yv[n + 1], -1.0f);
    cr_assert_eq(yv[n + 2], 1.0f);
    sg_graph_free(g);
}

/* ---- sums, linear without bias, contiguous ------------------------------------------ */

static sg_tensor *f_sums(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *xt = sg_transpose(g, in[0], 0, 2);                             /* [4,3,2] */
    sg_tensor *a = sg_mean(g, xt, 2, (int[]){0, -1}, true);                  /* [1,3,1] */
    sg_tensor *b = sg_sum(g, sg_contiguous(g, xt), 1, (int[]){1}, false);    /* [4,2] */
    sg_tensor *l = sg_linear(g, b, in[1], NULL);                              /* [4,3] */
    sg_tensor *s = sg_add(g, sg_sum_all(g, sg_mul(g, l, l)), sg_mean_all(g, in[0]));
    return sg_add(g, sg_mul(g, a, s), sg_transpose(g, l, 0, 1)); /* [1,3,4] */
}

Test(gradcheck, sums_means_and_linear_without_bias)
{
    sg_rng r;
    sg_rng_seed(&r, 25);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 3, 2, 3, 4), tu_rand64(&r, -1, 1, 2, 3, 2)};
    TU_GRADCHECK(f_sums, NULL, 2, in);
    free_all(2, in);
}
