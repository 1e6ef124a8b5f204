/* test_gemm.c - matrix products in every operand layout against a naive product: the
 * small ones take LIBXSMM's kernels (when built with it), the others BLIS; and the
 * transposed weights sg_linear keeps per graph follow changes of the weight. */
#include <string.h>

#include "test_util.h"

/* A [r, c] operand laid out as asked: contiguous, a transposed view of a [c, r] tensor,
 * or a slice of a wider [r, c + 3] tensor (row stride larger than the row). The base
 * is a heap tensor that requires grad (freed by the caller); layout() makes the view. */
enum layout { PLAIN, TRANSPOSED, PADDED, N_LAYOUTS };

static sg_tensor *base(sg_dtype dt, int64_t r, int64_t c, enum layout l, sg_rng *rng)
{
    int64_t shape[2] = {l == TRANSPOSED ? c : r, l == TRANSPOSED ? r : l == PADDED ? c + 3 : c};
    sg_tensor *t = sg_tensor_new(dt, 2, shape);
    cr_assert(t, "%s", sg_last_error());
    sg_tensor_uniform_(t, rng, -1, 1);
    cr_assert_eq(sg_tensor_set_requires_grad(t, true), SG_OK);
    return t;
}

static sg_tensor *layout(sg_graph *g, sg_tensor *t, enum layout l, int64_t c)
{
    sg_tensor *v = l == PLAIN        ? t
                   : l == TRANSPOSED ? sg_transpose(g, t, 0, 1)
                                     : sg_slice(g, t, 1, 1, c + 1, 1);
    cr_assert(v, "%s", sg_last_error());
    return v;
}

/* out[i, j] = sum_k a[i, k] b[k, j] in double, from element reads (any layout) */
static void naive(const sg_tensor *a, const sg_tensor *b, double *out)
{
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += sg_tensor_get(a, i * k + p) * sg_tensor_get(b, p * n + j);
            out[i * n + j] = s;
        }
}

static void assert_matches(const sg_tensor *y, const double *want, int64_t n, double tol,
                           const char *what, int64_t m, int64_t nn, int64_t k, int la, int lb)
{
    for (int64_t i = 0; i < n; i++) {
        double got = sg_tensor_get(y, i);
        cr_assert(fabs(got - want[i]) <= tol * (1 + fabs(want[i])),
                  "%s of %lldx%lldx%lld (layouts %d, %d) element %lld: %.9g, want %.9g", what,
                  (long long)m, (long long)nn, (long long)k, la, lb, (long long)i, got, want[i]);
    }
}

/* The tolerance for a sum of n products: rounding grows about as sqrt(n) (dates-sized
 * sums of 2500 f32 products of unit values are off by ~4e-5). */
static double tol_sum(double tol, int64_t n) { return n > 100 ? tol * sqrt(n / 100.0) : tol; }

/* y = a b, and the gradients of sum(y * G): da = G b^T, db = a^T G (accumulating
 * products, beta 1, in the transposed layouts) for every pair of operand layouts, f32
 * and f64, at 1 and 2 threads. */
Test(gemm, every_layout_matches_naive_product)
{
    /* up to 64 x 64 x 64 the products are made by sg__gemm_small (13 x 37 x 21 and the
     * next two: outputs wider than one 16-column panel and not a multiple of it); the
     * three before the last are large enough to be split across threads, in unequal
     * parts: by columns of C (wider than tall) and by rows (taller than wide); the last
     * one's dB = a^T G sums over 2500 rows, which one thread does in unequal pieces of at
     * most 1024 */
    static const int64_t shapes[][3] = {{1, 1, 1},      {1, 7, 5},      {5, 1, 3},
                                        {3, 4, 1},      {7, 13, 9},     {13, 37, 21},
                                        {6, 33, 64},    {25, 50, 40},   {64, 48, 33},
                                        {17, 130, 65},  {40, 300, 70},  {64, 200, 100},
                                        {33, 257, 130}, {131, 64, 120}, {2500, 12, 9}};
    sg_rng rng;
    sg_rng_seed(&rng, 7);
    int threads_before = sg_get_num_threads();
    for (int d = 0; d < 4; d++) {
        cr_assert_eq(sg_set_num_threads(d < 2 ? 1 : 2), SG_OK);
        sg_dtype dt = d % 2 ? SG_F64 : SG_F32;
        double tol = d % 2 ? 1e-12 : 2e-5;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            for (int la = 0; la < N_LAYOUTS; la++)
                for (int lb = 0; lb < N_LAYOUTS; lb++) {
                    sg_graph *g = sg_graph_new();
                    sg_tensor *A = base(dt, m, k, (enum layout)la, &rng);
                    sg_tensor *B = base(dt, k, n, (enum layout)lb, &rng);
                    sg_tensor *a = layout(g, A, (enum layout)la, k);
                    sg_tensor *b = layout(g, B, (enum layout)lb, n);
                    sg_tensor *G = sg_randn(g, dt, 2, (int64_t[]){m, n}, &rng);
                    sg_tensor *y = sg_matmul(g, a, b);
                    cr_assert(y, "%s", sg_last_error());
                    int64_t most = m * n > m * k ? m * n : m * k;
                    double *want = malloc(sizeof(double) * (size_t)(most > k * n ? most : k * n));
                    naive(a, b, want);
                    assert_matches(y, want, m * n, tol_sum(tol, k), "product", m, n, k, la, lb);
                    sg_tensor *loss = sg_sum_all(g, sg_mul(g, y, G));
                    cr_assert_eq(sg_backward(g, loss), SG_OK, "%s", sg_last_error());
                    /* the bases' gradients seen through the operands' layouts */
                    sg_tensor *da = layout(g, sg_grad_tensor(g, A), (enum layout)la, k);
                    sg_tensor *db = layout(g, sg_grad_tensor(g, B), (enum layout)lb, n);
                    naive(G, sg_transpose(g, b, 0, 1), want); /* [m, k] */
                    assert_matches(da, want, m * k, tol_sum(tol, n), "dA", m, n, k, la, lb);
                    naive(sg_transpose(g, a, 0, 1), G, want); /* [k, n] */
                    assert_matches(db, want, k * n, tol_sum(tol, m), "dB", m, n, k, la, lb);
                    free(want);
                    sg_graph_free(g);
                    sg_tensor_free(A);
                    sg_tensor_free(B);
                }
        }
    }
    sg_set_num_threads(threads_before);
}

/* sg_linear multiplies small products by a transposed copy of the weight made once per
 * graph; a backward (after which an optimiser changes the weight) or a reset must drop
 * it, so the next forward in the same graph sees the new values. */
static void check_linear(sg_graph *g, sg_tensor *x, sg_tensor *w, const char *what)
{
    int64_t m = x->shape[0], n = w->shape[0], k = w->shape[1];
    double *want = malloc(sizeof *want * (size_t)(m * n));
    cr_assert(want);
    sg_tensor *y = sg_linear(g, x, w, NULL);
    naive(x, sg_transpose(g, sg_detach(g, w), 0, 1), want); /* x w^T, recording nothing */
    assert_matches(y, want, m * n, x->dtype == SG_F32 ? 2e-5 : 1e-12, what, m, n, k, 0, 0);
    free(want);
}

/* what an optimiser step does: new values in the same buffer */
static void update(sg_tensor *w)
{
    for (int64_t i = 0; i < sg_tensor_numel(w); i++)
        sg_tensor_set(w, i, sg_tensor_get(w, i) * 0.5 + 0.25);
}

/* f32 and f64; weight shapes with whole 16 x 16 tiles of the copy and edges in both dims */
Test(gemm, linear_sees_weight_updates_after_backward_and_reset)
{
    const int64_t shapes[][2] = {{24, 40}, {33, 17}, {48, 32}};
    for (int d = 0; d < 2; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            sg_dtype dt = d ? SG_F64 : SG_F32;
            int64_t out = shapes[s][0], in = shapes[s][1];
            sg_rng rng;
            sg_rng_seed(&rng, 3);
            sg_tensor *w = sg_tensor_new(dt, 2, (int64_t[]){out, in});
            sg_tensor_uniform_(w, &rng, -1, 1);
            sg_tensor_set_requires_grad(w, true);
            sg_graph *g = sg_graph_new();
            sg_tensor *x = sg_randn(g, dt, 2, (int64_t[]){32, in}, &rng);
            check_linear(g, x, w, "first use");
            check_linear(g, x, w, "second use of the same copy");
            sg_tensor *y = sg_linear(g, x, w, NULL);
            cr_assert_eq(sg_backward(g, sg_sum_all(g, y)), SG_OK, "%s", sg_last_error());
            update(w);
            check_linear(g, x, w, "after backward and an update");
            sg_graph_reset(g);
            update(w);
            x = sg_randn(g, dt, 2, (int64_t[]){32, in}, &rng);
            check_linear(g, x, w, "after a reset and an update");
            sg_graph_free(g);
            sg_tensor_free(w);
        }
}

/* Small f32 products of a weight may take the packed kernel (tensor/gemm_packed.c),
 * whose row tiles differ by the number of rows: blocks of 6 and, at the end, 1-6 rows
 * or 4 + 3 or 4 + 4. Every row count from 8 (the least that takes it) to 26, over a
 * partial last panel (40 columns) and one panel (13). */
Test(gemm, linear_matches_naive_product_at_every_row_count)
{
    const int64_t outs[] = {40, 13};
    for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++)
        for (int64_t rows = 8; rows <= 26; rows++) {
            sg_rng rng;
            sg_rng_seed(&rng, (uint64_t)rows);
            sg_tensor *w = sg_tensor_new(SG_F32, 2, (int64_t[]){outs[o], 33});
            sg_tensor_uniform_(w, &rng, -1, 1);
            sg_graph *g = sg_graph_new();
            check_linear(g, sg_randn(g, SG_F32, 2, (int64_t[]){rows, 33}, &rng), w, "rows");
            sg_graph_free(g);
            sg_tensor_free(w);
        }
}

/* sg_gemm_flops counts every product once, whichever kernel makes it: a linear's forward
 * and weight gradient over 64 rows (the weight gradient by sg__gemm_direct, which once
 * counted it a second time) and over 300 rows (BLIS). */
Test(gemm, flop_counter_counts_each_product_once)
{
    static const int64_t rows[] = {64, 300};
    int64_t out = 32, in = 48;
    sg_rng rng;
    sg_rng_seed(&rng, 5);
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        sg_tensor *w = sg_tensor_new(SG_F32, 2, (int64_t[]){out, in});
        sg_tensor *x = sg_tensor_new(SG_F32, 2, (int64_t[]){rows[r], in});
        sg_tensor_uniform_(w, &rng, -1, 1);
        sg_tensor_uniform_(x, &rng, -1, 1);
        cr_assert_eq(sg_tensor_set_requires_grad(w, true), SG_OK);
        sg_graph *g = sg_graph_new();
        uint64_t before = sg_gemm_flops();
        sg_tensor *y = sg_linear(g, x, w, NULL);
        cr_assert_eq(sg_backward(g, sg_sum_all(g, y)), SG_OK, "%s", sg_last_error());
        uint64_t counted = sg_gemm_flops() - before, want = 2 * 2 * (uint64_t)(rows[r] * out * in);
        cr_assert_eq(counted, want, "%lld rows: %llu FLOPs counted, %llu made (y = x W^T, dW)",
                     (long long)rows[r], (unsigned long long)counted, (unsigned long long)want);
        sg_graph_free(g);
        sg_tensor_free(w);
        sg_tensor_free(x);
    }
}

/* A linear's weight gradient over a few rows, dW += dY^T X (the per-step products of a
 * recurrent loop: sg__gemm_direct reads dY^T and X in place up to 128 rows, and copies X
 * into panels from 512 outputs on) equals the naive product, for every row count of the
 * kernel's blocks of 6 (1-8, 13, 14; 515 and 518 with X copied), 1 to 128 summed rows
 * and 129 (BLIS), at 1 and 2 threads; two backward passes accumulate (beta 1). */
Test(gemm, weight_gradient_of_few_rows_matches_naive_product)
{
    static const int64_t outs[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 515, 518};
    static const int64_t rows[] = {1, 5, 64, 128, 129}, ins[] = {16, 48};
    int threads_before = sg_get_num_threads();
    sg_rng rng;
    sg_rng_seed(&rng, 11);
    for (int th = 1; th <= 2; th++) {
        cr_assert_eq(sg_set_num_threads(th), SG_OK);
        for (size_t o = 0; o < sizeof outs / sizeof *outs; o++)
            for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
                for (size_t i = 0; i < sizeof ins / sizeof *ins; i++) {
                    int64_t m = outs[o], k = rows[r], n = ins[i];
                    sg_tensor *w = sg_tensor_new(SG_F32, 2, (int64_t[]){m, n});
                    sg_tensor *x = sg_tensor_new(SG_F32, 2, (int64_t[]){k, n});
                    sg_tensor *G = sg_tensor_new(SG_F32, 2, (int64_t[]){k, m});
                    sg_tensor_uniform_(w, &rng, -1, 1);
                    sg_tensor_uniform_(x, &rng, -1, 1);
                    sg_tensor_uniform_(G, &rng, -1, 1);
                    cr_assert_eq(sg_tensor_set_requires_grad(w, true), SG_OK);
                    for (int pass = 0; pass < 2; pass++) {
                        sg_graph *g = sg_graph_new();
                        sg_tensor *y = sg_linear(g, x, w, NULL);
                        cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, G))), SG_OK,
                                     "%s", sg_last_error());
                        sg_graph_free(g);
                    }
                    double *want = malloc(sizeof(double) * (size_t)(m * n));
                    sg_graph *g = sg_graph_new();
                    naive(sg_transpose(g, G, 0, 1), x, want); /* dW = G^T X, twice */
                    for (int64_t e = 0; e < m * n; e++)
                        want[e] *= 2;
                    sg_tensor *dw = sg_grad_tensor(g, w);
                    assert_matches(dw, want, m * n, tol_sum(2e-5, k), "dW", m, n, k, th, 0);
                    free(want);
                    sg_graph_free(g);
                    sg_tensor_free(w);
                    sg_tensor_free(x);
                    sg_tensor_free(G);
                }
    }
    sg_set_num_threads(threads_before);
}
