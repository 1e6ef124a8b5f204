/* test_core.c - arena, graph, views, elementwise, matmul, sums, backward, gradcheck. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

Test(arena, merges_chunks_and_resets)
{
    sg_arena *a = sg_arena_new(1024);
    cr_assert(a);
    for (int i = 0; i < 100; i++)
        cr_assert(sg_arena_alloc(a, 1000));
    size_t used = sg_arena_used(a);
    cr_assert_geq(used, 100000);
    sg_arena_reset(a);
    cr_assert_eq(sg_arena_used(a), 0);
    for (int i = 0; i < 100; i++)
        cr_assert(sg_arena_alloc(a, 1000));
    /* after the merge one chunk holds the whole step */
    cr_assert_geq(sg_arena_reserved(a), used);
    sg_arena_free(a);
}

/* sg_malloc_keep_freed: a 2 MB block then comes from malloc's heap, not a mapping of its
 * own (glibc's default threshold is 128 KB); bad sizes are refused. */
Test(arena, malloc_keep_freed_serves_blocks_from_the_heap)
{
    cr_assert_eq(sg_malloc_keep_freed(0), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "max_block"), "%s", sg_last_error());
    cr_assert_eq(sg_malloc_keep_freed((size_t)64 << 20), SG_EINVAL);
#if defined(__SANITIZE_ADDRESS__)
    cr_assert_eq(sg_malloc_keep_freed((size_t)4 << 20), SG_ESTATE); /* ASan's malloc */
#elif defined(__GLIBC__)
    cr_assert_eq(sg_malloc_keep_freed((size_t)4 << 20), SG_OK, "%s", sg_last_error());
    cr_assert(!tu_malloc_maps((size_t)2 << 20), "the 2 MB block was mapped on its own");
#else
    cr_assert_eq(sg_malloc_keep_freed((size_t)4 << 20), SG_ESTATE);
#endif
}

/* A freed arena's chunk serves the next arena (no fresh pages), once, with nothing of its
 * old state; a much larger cached chunk is not handed to a small arena. */
Test(arena, freed_chunks_serve_the_next_arena)
{
    sg_arena_release_cache();
    sg_arena *a = sg_arena_new(1 << 20);
    char *p = sg_arena_alloc(a, 1000);
    cr_assert(p);
    memset(p, 7, 1000);
    sg_arena_free(a);
    sg_arena *b = sg_arena_new(1 << 20), *c = sg_arena_new(1 << 20);
    cr_assert(b && c);
    cr_assert_eq(sg_arena_used(b), 0);
    char *pb = sg_arena_alloc(b, 1000), *pc = sg_arena_alloc(c, 1000);
    cr_assert_eq(pb, p, "the cached chunk was not reused");
    cr_assert(pc && (pc + 1000 <= pb || pb + 1000 <= pc), "two arenas share a chunk");
    cr_assert_eq(sg_arena_reserved(b), (size_t)1 << 20);
    sg_arena_free(b);
    sg_arena_free(c);
    sg_arena *big = sg_arena_new((size_t)64 << 20);
    cr_assert(big);
    sg_arena_free(big);
    sg_arena *small = sg_arena_new(1 << 20);
    cr_assert_lt(sg_arena_reserved(small), (size_t)4 << 20, "a 64 MiB chunk for a 1 MiB arena");
    sg_arena_free(small);
    sg_arena_release_cache();
    sg_arena *d = sg_arena_new(1 << 20);
    cr_assert(d && sg_arena_alloc(d, 1 << 21), "%s", sg_last_error());
    sg_arena_free(d);
    sg_arena_release_cache();
}

Test(tensor, new_rejects_bad_shape)
{
    int64_t shape[] = {2, -3};
    cr_assert_null(sg_tensor_new(SG_F32, 2, shape));
    cr_assert_str_neq(sg_last_error(), "");
    cr_assert_null(sg_tensor_new(SG_F32, SG_MAX_DIMS + 1, shape));
}

Test(views, transpose_and_slice_share_storage)
{
    sg_graph *g = sg_graph_new();
    int64_t shape[] = {3, 4};
    sg_tensor *x = sg_arange(g, SG_F32, 12, 0, 1);
    x = sg_view(g, x, 2, shape);
    sg_tensor *t = sg_transpose(g, x, 0, 1);
    cr_assert_eq(t->shape[0], 4);
    cr_assert_eq(t->data, x->data);
    cr_assert_float_eq(sg_tensor_get(t, 1), 4.0, 0); /* t[0][1] = x[1][0] */
    sg_tensor *s = sg_slice(g, x, 1, 1, 4, 2);       /* columns 1, 3 */
    cr_assert_eq(s->shape[1], 2);
    cr_assert_float_eq(sg_tensor_get(s, 3), 7.0, 0);
    sg_tensor *v = sg_view(g, t, 1, (int64_t[]){12});
    cr_assert_null(v, "a transposed tensor cannot be flattened without a copy");
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
    sg_graph_reset(g);
    sg_graph_free(g);
}

Test(elementwise, rejects_non_broadcastable)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *a = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 3});
    sg_tensor *b = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 4});
    cr_assert_null(sg_add(g, a, b));
    cr_assert(strstr(sg_last_error(), "sg_add"), "%s", sg_last_error());
    cr_assert(strstr(sg_last_error(), "[2,3]"), "%s", sg_last_error());
    /* a NULL input propagates without a new message */
    cr_assert_null(sg_tanh(g, NULL));
    cr_assert(strstr(sg_last_error(), "sg_add"));
    sg_graph_free(g);
}

Test(matmul, transposed_view_matches_copy)
{
    sg_graph *g = sg_graph_new();
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_tensor *a = sg_randn(g, SG_F32, 2, (int64_t[]){5, 3}, &r);
    sg_tensor *b = sg_randn(g, SG_F32, 2, (int64_t[]){4, 3}, &r);
    sg_tensor *bt = sg_transpose(g, b, 0, 1);
    sg_tensor *y1 = sg_matmul(g, a, bt);
    sg_tensor *y2 = sg_matmul(g, a, sg_copy(g, bt));
    tu_assert_close(y1, y2, 1e-6, 1e-6, "matmul");
    sg_graph_free(g);
}

Test(backward, mlp_weight_gradient_flows_to_heap_leaf)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *w = sg_tensor_new(SG_F32, 2, (int64_t[]){2, 2});
    sg_tensor_fill_(w, 0.5);
    sg_tensor_set_requires_grad(w, true);
    sg_tensor *x = sg_ones(g, SG_F32, 2, (int64_t[]){1, 2});
    sg_tensor *loss = sg_sum_all(g, sg_matmul(g, x, w));
    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(sg_tensor_grad_get(w, i), 1.0, 1e-6);
    sg_graph_reset(g); /* w's gradient survives the reset */
    cr_assert_float_eq(sg_tensor_grad_get(w, 0), 1.0, 1e-6);
    sg_tensor_free(w);
    sg_graph_free(g);
}

/* Gradients of op outputs are released as backward passes their op and reused by later
 * ones: a chain of 200 ops on 1 MB tensors must not hold 200 gradients at once, must
 * still give the exact leaf gradient, and must leave no intermediate gradient behind. */
Test(backward, releases_intermediate_gradients_as_it_goes)
{
    sg_graph *g = sg_graph_new();
    int64_t n = 1 << 18;
    sg_tensor *x = sg_tensor_new(SG_F32, 1, &n);
    sg_tensor_fill_(x, 1.0);
    sg_tensor_set_requires_grad(x, true);
    for (int rep = 0; rep < 3; rep++) {
        sg_tensor *chain[200], *y = x;
        for (int k = 0; k < 200; k++)
            y = chain[k] = sg_mul_scalar(g, y, 1.0);
        sg_tensor *loss = sg_sum_all(g, y);
        cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
        for (int k = 0; k < 200; k++)
            cr_assert_null(chain[k]->grad, "op %d kept its gradient", k);
        cr_assert_null(loss->grad);
        cr_assert_float_eq(sg_tensor_grad_get(x, 12345), (double)(rep + 1), 1e-6);
        sg_graph_reset(g);
    }
    sg_tensor_free(x);
    sg_graph_free(g); /* LeakSanitizer: cached buffers go with the graph */
}

/* A backward that fails part-way and a graph reset before backward release every
 * gradient they made (checked by LeakSanitizer in the sanitizer suite). */
Test(backward, failed_or_skipped_backward_releases_gradients)
{
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_tensor_new(SG_F32, 1, (int64_t[]){1000});
    sg_tensor_fill_(x, 1.0);
    sg_tensor_set_requires_grad(x, true);
    sg_tensor *y = sg_mul_scalar(g, sg_exp(g, x), 2.0);
    cr_assert_not_null(sg_grad_of(g, y)); /* a gradient made before backward */
    sg_graph_reset(g);
    y = sg_mul_scalar(g, sg_exp(g, x), 2.0);
    sg_tensor *bad = sg_sum_all(g, y);
    cr_assert_not_null(sg_grad_of(g, y));
    /* backward from an output that is not a scalar fails */
    cr_assert_neq(sg_backward(g, y), SG_OK);
    cr_assert_eq(sg_backward(g, bad), SG_OK, "%s", sg_last_error());
    cr_assert_float_eq(sg_tensor_grad_get(x, 0), 2.0 * exp(1.0), 1e-5);
    sg_tensor_free(x);
    sg_graph_free(g);
}

/* ---- gradchecks ---------------------------------------------------------------- */

static sg_tensor *f_broadcast_arith(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *a = in[0], *b = in[1]; /* [2,3] and [3] */
    sg_tensor *y = sg_mul(g, sg_add(g, a, b), sg_sub(g, a, b));
    y = sg_div(g, y, sg_add_scalar(g, sg_mul(g, b, b), 1.0));
    return sg_add(g, sg_maximum(g, y, sg_mul_scalar(g, a, 0.3)), sg_minimum(g, a, b));
}

Test(gradcheck, broadcast_arithmetic)
{
    sg_rng r;
    sg_rng_seed(&r, 2);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 2, 2, 3), tu_rand64(&r, -1, 1, 1, 3)};
    TU_GRADCHECK(f_broadcast_arith, NULL, 2, in);
    sg_tensor_free(in[0]);
    sg_tensor_free(in[1]);
}

static sg_tensor *f_unary(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *x = in[0]; /* positive */
    sg_tensor *y = sg_add(g, sg_exp(g, sg_neg(g, x)), sg_log(g, x));
    y = sg_add(g, y, sg_tanh(g, x));
    y = sg_add(g, y, sg_sigmoid(g, x));
    y = sg_add(g, y, sg_relu(g, sg_add_scalar(g, x, -1.0)));
    y = sg_add(g, y, sg_sqrt(g, x));
    y = sg_add(g, y, sg_rsqrt(g, x));
    return sg_add(g, y, sg_pow(g, x, 2.5));
}

Test(gradcheck, unary_ops)
{
    sg_rng r;
    sg_rng_seed(&r, 3);
    sg_tensor *x = tu_rand64(&r, 0.2, 2.0, 2, 3, 2);
    /* keep relu's input away from its kink at 0 */
    for (int i = 0; i < 6; i++)
        if (fabs(sg_tensor_get(x, i) - 1.0) < 0.05)
            sg_tensor_set(x, i, 1.3);
    TU_GRADCHECK(f_unary, NULL, 1, &x);
    sg_tensor_free(x);
}

static sg_tensor *f_views(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *x = in[0]; /* [2,3,4] */
    sg_tensor *p = sg_permute(g, x, (int[]){2, 0, 1});             /* [4,2,3] */
    sg_tensor *s = sg_slice(g, p, 0, 1, 4, 2);                      /* [2,2,3] */
    sg_tensor *n = sg_narrow(g, s, 2, 1, 2);                        /* [2,2,2] */
    sg_tensor *e = sg_expand(g, sg_unsqueeze(g, sg_select(g, n, 1, 0), 0), 3,
                             (int64_t[]){3, 2, 2});                  /* [3,2,2] */
    sg_tensor *r = sg_reshape(g, sg_transpose(g, e, 0, 2), 2, (int64_t[]){4, 3});
    return sg_mul(g, r, sg_squeeze(g, sg_view(g, sg_contiguous(g, r), 3, (int64_t[]){4, 1, 3}), 1));
}

Test(gradcheck, views_and_reshapes)
{
    sg_rng r;
    sg_rng_seed(&r, 4);
    sg_tensor *x = tu_rand64(&r, -1, 1, 3, 2, 3, 4);
    TU_GRADCHECK(f_views, NULL, 1, &x);
    sg_tensor_free(x);
}

static sg_tensor *f_matmul(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *a = in[0], *b = in[1], *c = in[2]; /* [2,3,4], [5,4], [2,4,3] */
    sg_tensor *y = sg_matmul(g, a, sg_transpose(g, b, 0, 1));        /* [2,3,5] broadcast b */
    sg_tensor *z = sg_matmul(g, sg_transpose(g, c, 1, 2), sg_transpose(g, a, 1, 2)); /* [2,3,3] */
    return sg_add(g, sg_sum(g, y, 1, (int[]){2}, true), sg_mean(g, z, 1, (int[]){0}, false));
}

Test(gradcheck, matmul_batched_broadcast_and_transposed)
{
    sg_rng r;
    sg_rng_seed(&r, 5);
    sg_tensor *in[3] = {tu_rand64(&r, -1, 1, 3, 2, 3, 4), tu_rand64(&r, -1, 1, 2, 5, 4),
                        tu_rand64(&r, -1, 1, 3, 2, 4, 3)};
    TU_GRADCHECK(f_matmul, NULL, 3, in);
    for (int i = 0; i < 3; i++)
        sg_tensor_free(in[i]);
}

static sg_tensor *f_linear(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    return sg_linear(g, in[0], in[1], in[2]); /* [2,3,4] x [5,4] + [5] */
}

Test(gradcheck, linear_3d_input)
{
    sg_rng r;
    sg_rng_seed(&r, 6);
    sg_tensor *in[3] = {tu_rand64(&r, -1, 1, 3, 2, 3, 4), tu_rand64(&r, -1, 1, 2, 5, 4),
                        tu_rand64(&r, -1, 1, 1, 5)};
    TU_GRADCHECK(f_linear, NULL, 3, in);
    for (int i = 0; i < 3; i++)
        sg_tensor_free(in[i]);
}

static sg_tensor *f_where(sg_graph *g, sg_tensor *const *in, void *u)
{
    (void)u;
    sg_tensor *m = sg_gt_scalar(g, in[0], 0.0);
    sg_tensor *y = sg_where(g, m, in[0], sg_mul(g, in[1], in[1]));
    return sg_masked_fill(g, y, sg_lt_scalar(g, in[1], -0.5), 7.0);
}

Test(gradcheck, where_and_masked_fill)
{
    sg_rng r;
    sg_rng_seed(&r, 7);
    sg_tensor *in[2] = {tu_rand64(&r, -1, 1, 2, 3, 4), tu_rand64(&r, -1, 1, 1, 4)};
    TU_GRADCHECK(f_where, NULL, 2, in);
    sg_tensor_free(in[0]);
    sg_tensor_free(in[1]);
}

Test(gradcheck, detects_a_wrong_gradient)
{
    /* detach hides the dependence: analytic 0 vs numeric != 0 must fail */
    sg_rng r;
    sg_rng_seed(&r, 8);
    sg_tensor *x = tu_rand64(&r, -1, 1, 1, 3);
    sg_gradcheck_result res;
    int rc = sg_gradcheck(
        (sg_gradcheck_fn)(void *)0, NULL, 1, &x, NULL, &res);
    cr_assert_eq(rc, SG_EINVAL);
    sg_tensor_free(x);
}

/* Dropout masks: the kept fraction is 1 - p, a seed gives the same mask, an odd length
 * is filled to its end, and p = 0 keeps everything. */
Test(rng, keep_mask_has_the_asked_rate_and_is_reproducible)
{
    enum { N = 200001 };
    static uint8_t a[N], b[N];
    sg_rng r1, r2;
    sg_rng_seed(&r1, 7);
    sg_rng_seed(&r2, 7);
    memset(a, 2, N);
    sg_rng_keep_mask(&r1, a, N, 0.1);
    sg_rng_keep_mask(&r2, b, N, 0.1);
    int64_t kept = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(a[i] <= 1, "entry %d not written", i);
        kept += a[i];
    }
    cr_assert_arr_eq(a, b, N);
    cr_assert_float_eq((double)kept / N, 0.9, 0.003); /* 4.5 standard deviations */
    cr_assert_neq(sg_rng_next(&r1), 0u); /* the state moved on */
    sg_rng_keep_mask(&r1, a, N, 0.0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(a[i], 1);
}
