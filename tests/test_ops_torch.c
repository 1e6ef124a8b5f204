/* test_ops_torch.c - core ops against PyTorch (tests/fixtures/ops.h5, written by
 * tools/gen_fixtures_ops.py): outputs and the input gradients of sum(out * w), in f32,
 * within |a - b| <= 1e-6 + 1e-5 |b|. */
#include <string.h>

#include "fixture.h"
#include "test_util.h"

#define ATOL 1e-6
#define RTOL 1e-5

typedef struct {
    sg_tensor *idx, *mask, *notmask; /* graph tensors, when the case has them */
} extras;

typedef sg_tensor *(*case_fn)(sg_graph *g, sg_tensor **x, const extras *e);

/* Equal infinities count as equal (log-softmax). */
static void assert_close(const sg_tensor *a, const sg_tensor *b, const char *what)
{
    cr_assert(a && b, "%s: missing tensor (%s)", what, sg_last_error());
    cr_assert(sg_tensor_same_shape(a, b), "%s: shape %s vs fixture", what,
              sg_tensor_shape_str(a, (char[64]){0}, 64));
    for (int64_t i = 0; i < sg_tensor_numel(a); i++) {
        double x = sg_tensor_get(a, i), y = sg_tensor_get(b, i);
        cr_assert(x == y || fabs(x - y) <= ATOL + RTOL * fabs(y),
                  "%s: element %lld is %.9g, PyTorch %.9g", what, (long long)i, x, y);
    }
}

static void run_case(const char *name, int n_in, case_fn fn)
{
    hid_t f = fx_open("ops.h5");
    char path[128];
    sg_tensor *x[4], *dx[4];
    for (int i = 0; i < n_in; i++) {
        snprintf(path, sizeof path, "%s/x%d", name, i);
        x[i] = fx_read(f, path, SG_F32);
        cr_assert_eq(sg_tensor_set_requires_grad(x[i], true), SG_OK);
        snprintf(path, sizeof path, "%s/dx%d", name, i);
        dx[i] = fx_read(f, path, SG_F32);
    }
    snprintf(path, sizeof path, "%s/out", name);
    sg_tensor *want = fx_read(f, path, SG_F32);
    snprintf(path, sizeof path, "%s/w", name);
    sg_tensor *w = fx_read(f, path, SG_F32);

    sg_graph *g = sg_graph_new();
    extras e = {0};
    snprintf(path, sizeof path, "%s/idx", name);
    if (H5Lexists(f, path, H5P_DEFAULT) > 0) {
        sg_tensor *t = fx_read(f, path, SG_I64);
        e.idx = sg_from_buffer(g, SG_I64, t->ndim, t->shape, t->data);
        sg_tensor_free(t);
    }
    snprintf(path, sizeof path, "%s/mask", name);
    if (H5Lexists(f, path, H5P_DEFAULT) > 0) {
        sg_tensor *t = fx_read(f, path, SG_I64);
        e.mask = sg_empty(g, SG_BOOL, t->ndim, t->shape);
        e.notmask = sg_empty(g, SG_BOOL, t->ndim, t->shape);
        for (int64_t i = 0; i < sg_tensor_numel(t); i++) {
            ((uint8_t *)e.mask->data)[i] = ((int64_t *)t->data)[i] != 0;
            ((uint8_t *)e.notmask->data)[i] = ((int64_t *)t->data)[i] == 0;
        }
        sg_tensor_free(t);
    }
    sg_tensor *out = fn(g, x, &e);
    assert_close(out, want, name);
    cr_assert_eq(sg_backward_ex(g, out, w), SG_OK, "%s: %s", name, sg_last_error());
    for (int i = 0; i < n_in; i++) {
        sg_tensor gi = *x[i];
        gi.data = x[i]->grad;
        snprintf(path, sizeof path, "%s: gradient of x%d", name, i);
        assert_close(&gi, dx[i], path);
    }
    if (strcmp(name, "max") == 0) { /* indices too */
        sg_tensor *ix;
        cr_assert(sg_max(g, x[0], 1, false, &ix));
        sg_tensor *wi = fx_read(f, "max/indices", SG_I64);
        for (int64_t i = 0; i < sg_tensor_numel(wi); i++)
            cr_assert_eq(sg_tensor_get(ix, i), sg_tensor_get(wi, i), "max index %lld",
                         (long long)i);
        sg_tensor_free(wi);
    }
    sg_graph_free(g);
    for (int i = 0; i < n_in; i++) {
        sg_tensor_free(x[i]);
        sg_tensor_free(dx[i]);
    }
    sg_tensor_free(want);
    sg_tensor_free(w);
    H5Fclose(f);
}

static sg_tensor *c_arith(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e; /* (a + b) * (a - c) / c + a * b */
    sg_tensor *y = sg_div(g, sg_mul(g, sg_add(g, x[0], x[1]), sg_sub(g, x[0], x[2])), x[2]);
    return sg_add(g, y, sg_mul(g, x[0], x[1]));
}
Test(reference, elementwise_broadcasting_matches_torch) { run_case("arith", 3, c_arith); }

static sg_tensor *c_unary(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e; /* tanh(x) + sigmoid(x) * exp(-x) + log(x) */
    sg_tensor *y = sg_mul(g, sg_sigmoid(g, x[0]), sg_exp(g, sg_neg(g, x[0])));
    return sg_add(g, sg_add(g, sg_tanh(g, x[0]), y), sg_log(g, x[0]));
}
Test(reference, tanh_sigmoid_exp_log_match_torch) { run_case("unary", 1, c_unary); }

static sg_tensor *c_matmul(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_matmul(g, x[0], sg_transpose(g, x[1], 1, 2));
}
Test(reference, batched_matmul_with_transposed_operand_matches_torch)
{
    run_case("matmul_bt", 2, c_matmul);
}

static sg_tensor *c_linear(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_linear(g, x[0], x[1], x[2]);
}
Test(reference, linear_matches_torch) { run_case("linear", 3, c_linear); }

static sg_tensor *c_softmax(sg_graph *g, sg_tensor **x, const extras *e)
{
    return sg_softmax(g, x[0], 1, e->mask);
}
Test(reference, masked_softmax_matches_torch) { run_case("softmax_mask", 1, c_softmax); }

static sg_tensor *c_log_softmax(sg_graph *g, sg_tensor **x, const extras *e)
{
    return sg_masked_fill(g, sg_log_softmax(g, x[0], 1, e->mask), e->notmask, 0.0);
}
Test(reference, masked_log_softmax_matches_torch)
{
    run_case("log_softmax_mask", 1, c_log_softmax);
}

static sg_tensor *c_lse(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_logsumexp(g, x[0], 1, false);
}
Test(reference, logsumexp_matches_torch) { run_case("logsumexp", 1, c_lse); }

static sg_tensor *c_max(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_max(g, x[0], 1, false, NULL);
}
Test(reference, max_values_indices_and_gradient_match_torch) { run_case("max", 1, c_max); }

static sg_tensor *c_sum(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_sum(g, x[0], 2, (int[]){0, 2}, true);
}
Test(reference, sum_over_dims_matches_torch) { run_case("sum_dims", 1, c_sum); }

static sg_tensor *c_mean(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_mean(g, x[0], 1, (int[]){1}, false);
}
Test(reference, mean_over_a_dim_matches_torch) { run_case("mean_dim", 1, c_mean); }

static sg_tensor *c_concat(sg_graph *g, sg_tensor **x, const extras *e)
{
    (void)e;
    return sg_concat(g, 2, x, 1);
}
Test(reference, concat_matches_torch) { run_case("concat", 2, c_concat); }

static sg_tensor *c_isel(sg_graph *g, sg_tensor **x, const extras *e)
{
    return sg_index_select(g, x[0], 0, e->idx);
}
Test(reference, index_select_matches_torch) { run_case("index_select", 1, c_isel); }

static sg_tensor *c_gather(sg_graph *g, sg_tensor **x, const extras *e)
{
    return sg_gather(g, x[0], 1, e->idx);
}
Test(reference, gather_matches_torch) { run_case("gather", 1, c_gather); }
