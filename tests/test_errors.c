/* test_errors.c - every class of bad input to the ops returns the right code (or NULL
 * with the graph's sticky status) and a message naming the op and the shapes. */
#include <string.h>

#include "test_util.h"

static sg_graph *g;

static void setup(void) { g = sg_graph_new(); }
static void teardown(void) { sg_graph_free(g); }

TestSuite(errors, .init = setup, .fini = teardown);

static sg_tensor *t32(int ndim, const int64_t *shape) { return sg_zeros(g, SG_F32, ndim, shape); }

/* The last message mentions every one of the NULL-terminated words. */
static void expect_msg(int got, int want, ...)
{
    cr_assert_eq(got, want, "code %s, want %s (%s)", sg_strerror(got), sg_strerror(want),
                 sg_last_error());
    va_list ap;
    va_start(ap, want);
    for (const char *w; (w = va_arg(ap, const char *));)
        cr_assert(strstr(sg_last_error(), w), "message \"%s\" does not mention \"%s\"",
                  sg_last_error(), w);
    va_end(ap);
}

#define FAILS(expr, code, ...)                                                              \
    do {                                                                                    \
        sg_graph_reset(g);                                                                  \
        void *r_ = (void *)(expr);                                                          \
        cr_assert_null(r_, #expr " should fail");                                           \
        expect_msg(sg_graph_status(g), (code), __VA_ARGS__, NULL);                          \
    } while (0)

Test(errors, shape_mismatch_names_op_and_shapes)
{
    int64_t a[] = {2, 3}, b[] = {2, 4}, c[] = {3, 3};
    FAILS(sg_concat(g, 2, (sg_tensor *[]){t32(2, a), t32(2, c)}, 1), SG_ESHAPE, "sg_concat",
          "[2,3]", "[3,3]");
    FAILS(sg_stack(g, 2, (sg_tensor *[]){t32(2, a), t32(2, b)}, 0), SG_ESHAPE, "sg_stack",
          "[2,3]", "[2,4]");
    FAILS(sg_matmul(g, t32(2, a), t32(2, b)), SG_ESHAPE, "sg_matmul", "[2,3]", "[2,4]");
    FAILS(sg_add(g, t32(2, a), t32(2, b)), SG_ESHAPE, "sg_add", "[2,3]", "[2,4]");
    FAILS(sg_gather(g, t32(2, a), 1, sg_zeros(g, SG_I64, 1, (int64_t[]){3})), SG_ESHAPE,
          "sg_gather", "[3]", "[2,3]");
    FAILS(sg_scatter_add(g, t32(2, a), 0, sg_zeros(g, SG_I64, 2, (int64_t[]){2, 3}),
                         t32(2, (int64_t[]){1, 3})),
          SG_ESHAPE, "sg_scatter_add", "[2,3]", "[1,3]");
    FAILS(sg_softmax(g, t32(2, a), 1, sg_zeros(g, SG_BOOL, 2, b)), SG_ESHAPE, "sg_softmax",
          "[2,4]", "[2,3]");
}

Test(errors, dtype_mismatch_names_op_and_dtypes)
{
    int64_t a[] = {2, 3};
    FAILS(sg_concat(g, 2, (sg_tensor *[]){t32(2, a), sg_zeros(g, SG_F64, 2, a)}, 0), SG_EDTYPE,
          "sg_concat", "f64", "[2,3]");
    FAILS(sg_mul(g, t32(2, a), sg_zeros(g, SG_F64, 2, a)), SG_EDTYPE, "sg_mul", "f32", "f64");
    FAILS(sg_index_select(g, t32(2, a), 0, sg_zeros(g, SG_F32, 1, (int64_t[]){2})), SG_EDTYPE,
          "sg_index_select", "f32", "[2]");
    FAILS(sg_gather(g, t32(2, a), 0, t32(2, a)), SG_EDTYPE, "sg_gather", "i64");
    FAILS(sg_max(g, sg_zeros(g, SG_I64, 2, a), 0, false, NULL), SG_EDTYPE, "sg_max", "i64",
          "[2,3]");
    FAILS(sg_logsumexp(g, sg_zeros(g, SG_BOOL, 2, a), 0, false), SG_EDTYPE, "sg_logsumexp",
          "bool");
    FAILS(sg_scatter_add(g, t32(2, a), 0, sg_zeros(g, SG_I64, 2, a), sg_zeros(g, SG_F64, 2, a)),
          SG_EDTYPE, "sg_scatter_add", "f32", "f64");
}

Test(errors, out_of_range_index_names_the_index)
{
    int64_t a[] = {4, 3};
    FAILS(sg_index_select(g, t32(2, a), 0,
                          sg_from_buffer(g, SG_I64, 1, (int64_t[]){3}, (int64_t[]){1, 4, 0})),
          SG_ERANGE, "sg_index_select", "index 4", "[4,3]");
    FAILS(sg_index_select(g, t32(2, a), 1,
                          sg_from_buffer(g, SG_I64, 1, (int64_t[]){1}, (int64_t[]){-1})),
          SG_ERANGE, "sg_index_select", "index -1", "[4,3]");
    FAILS(sg_gather(g, t32(2, a), 1,
                    sg_from_buffer(g, SG_I64, 2, (int64_t[]){1, 2}, (int64_t[]){0, 3})),
          SG_ERANGE, "sg_gather", "index 3", "[4,3]");
    FAILS(sg_scatter_add(g, t32(2, a), 0,
                         sg_from_buffer(g, SG_I64, 2, (int64_t[]){1, 2}, (int64_t[]){7, 0}),
                         t32(2, a)),
          SG_ERANGE, "sg_scatter_add", "index 7", "[4,3]");
    FAILS(sg_select(g, t32(2, a), 0, 4), SG_ERANGE, "sg_select", "[4,3]");
    FAILS(sg_narrow(g, t32(2, a), 1, 2, 2), SG_ERANGE, "sg_narrow", "[4,3]");
}

Test(errors, impossible_view_or_split)
{
    int64_t a[] = {4, 6};
    FAILS(sg_view(g, sg_transpose(g, t32(2, a), 0, 1), 1, (int64_t[]){24}), SG_ESHAPE, "sg_view",
          "[6,4]");
    FAILS(sg_view(g, t32(2, a), 2, (int64_t[]){5, 5}), SG_ESHAPE, "sg_view", "[4,6]");
    FAILS(sg_expand(g, t32(2, a), 2, (int64_t[]){4, 7}), SG_ESHAPE, "sg_expand", "[4,6]");
    FAILS(sg_squeeze(g, t32(2, a), 0), SG_ESHAPE, "sg_squeeze", "[4,6]");
    sg_tensor *out[4] = {0};
    sg_graph_reset(g);
    expect_msg(sg_split(g, t32(2, a), 1, 2, (int64_t[]){2, 3}, out), SG_ESHAPE, "sg_split",
               "[4,6]", NULL);
    cr_assert_null(out[0]);
    sg_graph_reset(g);
    expect_msg(sg_chunk(g, t32(2, a), 0, 3, out), SG_ESHAPE, "sg_chunk", "[4,6]", NULL);
    cr_assert_eq(sg_graph_status(g), SG_ESHAPE);
}

Test(errors, bad_dim_names_dim_and_shape)
{
    int64_t a[] = {2, 3};
    FAILS(sg_max(g, t32(2, a), 2, false, NULL), SG_EINVAL, "sg_max", "dim 2", "[2,3]");
    FAILS(sg_argmax(g, t32(2, a), -3, false), SG_EINVAL, "sg_argmax", "dim -3", "[2,3]");
    FAILS(sg_logsumexp(g, t32(2, a), 5, true), SG_EINVAL, "sg_logsumexp", "dim 5", "[2,3]");
    FAILS(sg_concat(g, 1, (sg_tensor *[]){t32(2, a)}, 2), SG_EINVAL, "sg_concat", "dim 2",
          "[2,3]");
    FAILS(sg_stack(g, 1, (sg_tensor *[]){t32(2, a)}, 3), SG_EINVAL, "sg_stack", "dim 3", "[2,3]");
    FAILS(sg_index_select(g, t32(2, a), 2, sg_zeros(g, SG_I64, 1, (int64_t[]){1})), SG_EINVAL,
          "sg_index_select", "dim 2", "[2,3]");
    FAILS(sg_gather(g, t32(2, a), -3, sg_zeros(g, SG_I64, 2, a)), SG_EINVAL, "sg_gather",
          "dim -3", "[2,3]");
    FAILS(sg_softmax(g, t32(2, a), 2, NULL), SG_EINVAL, "sg_softmax", "dim 2", "[2,3]");
    FAILS(sg_sum(g, t32(2, a), 1, (int[]){4}, false), SG_EINVAL, "sg_sum", "dim 4", "[2,3]");
    FAILS(sg_transpose(g, t32(2, a), 0, 2), SG_EINVAL, "sg_transpose", "[2,3]");
    FAILS(sg_max(g, t32(2, (int64_t[]){2, 0}), 1, false, NULL), SG_ESHAPE, "sg_max", "[2,0]");
    sg_tensor *out[2];
    sg_graph_reset(g);
    expect_msg(sg_split(g, t32(2, a), 3, 1, (int64_t[]){2}, out), SG_EINVAL, "sg_split", "dim 3",
               "[2,3]", NULL);
}

Test(errors, null_input_propagates_without_a_new_message)
{
    int64_t a[] = {2, 3};
    sg_tensor *x = t32(2, a);
    cr_assert_null(sg_max(g, x, 7, false, NULL)); /* the first error */
    char first[512];
    snprintf(first, sizeof first, "%s", sg_last_error());
    sg_tensor *bad = NULL;
    sg_tensor *ix = x;
    cr_assert_null(sg_max(g, bad, 0, false, &ix));
    cr_assert_null(ix, "indices must be cleared on failure");
    cr_assert_null(sg_argmax(g, bad, 0, false));
    cr_assert_null(sg_logsumexp(g, bad, 0, false));
    cr_assert_null(sg_concat(g, 2, (sg_tensor *[]){x, bad}, 0));
    cr_assert_null(sg_stack(g, 2, (sg_tensor *[]){bad, x}, 0));
    cr_assert_null(sg_index_select(g, x, 0, bad));
    cr_assert_null(sg_index_select(g, bad, 0, sg_zeros(g, SG_I64, 1, (int64_t[]){1})));
    cr_assert_null(sg_gather(g, bad, 0, bad));
    cr_assert_null(sg_scatter_add(g, x, 0, bad, x));
    cr_assert_null(sg_copy(g, bad));
    cr_assert_null(sg_expand(g, bad, 2, a));
    cr_assert_null(sg_softmax(g, bad, 0, NULL));
    sg_tensor *out[2] = {x, x};
    cr_assert_eq(sg_split(g, bad, 0, 2, (int64_t[]){1, 1}, out), SG_EINVAL);
    cr_assert_null(out[0]);
    cr_assert_eq(sg_chunk(g, bad, 0, 2, out), SG_EINVAL);
    cr_assert_str_eq(sg_last_error(), first, "a NULL input must not replace the first message");
    cr_assert_eq(sg_graph_status(g), SG_EINVAL);
    cr_assert_neq(sg_backward(g, x), SG_OK);
}

Test(errors, allocation_size_overflow_is_reported)
{
    /* expanded views cost no memory but their copies would need > 2^63 bytes */
    sg_tensor *one = sg_tensor_new(SG_F32, 2, (int64_t[]){1, 1}); /* survives the resets */
    int64_t big[] = {INT64_C(1) << 31, INT64_C(1) << 31};
    sg_tensor *e = sg_expand(g, one, 2, big);
    cr_assert(e, "%s", sg_last_error());
    FAILS(sg_concat(g, 2, (sg_tensor *[]){sg_expand(g, one, 2, big), sg_expand(g, one, 2, big)}, 0),
          SG_ENOMEM, "sg_concat", "[4294967296,2147483648]");
    FAILS(sg_stack(g, 2, (sg_tensor *[]){sg_expand(g, one, 2, big), sg_expand(g, one, 2, big)}, 0),
          SG_ENOMEM, "sg_stack", "[2,2147483648,2147483648]");
    FAILS(sg_index_select(g, t32(2, (int64_t[]){3, 4}), 0,
                          sg_expand(g, sg_zeros(g, SG_I64, 1, (int64_t[]){1}), 2, big)),
          SG_ENOMEM, "sg_index_select", "[2147483648,2147483648,4]");
    int64_t tall[] = {INT64_C(1) << 61, 1}; /* 2^62 elements: numel fits, bytes do not */
    FAILS(sg_concat(g, 2, (sg_tensor *[]){sg_expand(g, one, 2, tall), sg_expand(g, one, 2, tall)},
                    1),
          SG_ENOMEM, "sg_concat", "[2305843009213693952,2]");
    FAILS(sg_copy(g, sg_expand(g, one, 2, (int64_t[]){INT64_C(1) << 61, 4})), SG_ENOMEM,
          "sg_copy", "[2305843009213693952,4]");
    FAILS(sg_tanh(g, sg_expand(g, one, 2, (int64_t[]){INT64_C(1) << 61, 4})), SG_EINVAL,
          "sg_empty", "[2305843009213693952,4]");
    sg_tensor_free(one);
}
