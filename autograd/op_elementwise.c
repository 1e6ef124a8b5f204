/*
 * op_elementwise.c - unary, scalar, binary (NumPy broadcasting), comparison and
 * where/masked_fill ops. Forward and backward run through the strided iterator, so
 * any views are accepted; the backward of a broadcast operand sums over the
 * broadcast dims by accumulating with stride 0.
 */
#include "autograd_internal.h"
#include "fastmath.h"

#include <string.h>
#include <tgmath.h>

enum { U_NEG, U_EXP, U_LOG, U_TANH, U_SIGMOID, U_RELU, U_SQRT, U_RSQRT, U_POW, U_ADDS, U_MULS };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN };
enum { C_EQ, C_LT, C_GT };

typedef struct {
    int op, side;
    double param;
} ew_ctx;

/* f32 tanh without libm, so that its loops vectorise (fastmath.h: 4e-7 relative) */
#define T float
#define SUF f32
#define TANH sg__tanhf
#include "elementwise_kernels.inc"
#undef TANH
#undef T
#undef SUF
#define T double
#define SUF f64
#define TANH tanh
#include "elementwise_kernels.inc"
#undef TANH
#undef T
#undef SUF

#define PICK(dt, name) ((dt) == SG_F32 ? name##_f32 : name##_f64)

static const char *unary_names[] = {"sg_neg", "sg_exp", "sg_log", "sg_tanh", "sg_sigmoid",
                                    "sg_relu", "sg_sqrt", "sg_rsqrt", "sg_pow", "sg_add_scalar",
                                    "sg_mul_scalar"};
static const char *binary_names[] = {"sg_add", "sg_sub", "sg_mul", "sg_div", "sg_maximum",
                                     "sg_minimum"};

/* ---- unary ------------------------------------------------------------------- */

static void unary_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    int64_t cs[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, cs);
    size_t es = sg_dtype_size(x->dtype);
    sg__iter it;
    sg__iter_init(&it, x->ndim, x->shape);
    sg__iter_add(&it, dx, es, cs);
    sg__iter_add(&it, y->grad, es, cs);
    sg__iter_add(&it, x->data, es, x->stride);
    sg__iter_add(&it, y->data, es, y->stride);
    ew_ctx c = {.op = (int)n->i[0], .param = n->f[0]};
    sg__iter_run(&it, PICK(x->dtype, unary_bwd_kernel), &c);
}

/* over: y is written over x (contiguous; see sg__tanh_in_place) */
static sg_tensor *unary_to(sg_graph *g, sg_tensor *x, int op, double param, bool over)
{
    SG_NEED(g, x);
    const char *name = unary_names[op];
    if (!sg__check_float(g, name, x))
        return NULL;
    sg_tensor *y = over ? sg__view_header(g, x) : sg_empty(g, x->dtype, x->ndim, x->shape);
    if (!y)
        return NULL;
    size_t es = sg_dtype_size(x->dtype);
    sg__iter it;
    sg__iter_init(&it, x->ndim, x->shape);
    sg__iter_add(&it, y->data, es, y->stride);
    sg__iter_add(&it, x->data, es, x->stride);
    ew_ctx c = {.op = op, .param = param};
    sg__iter_run(&it, PICK(x->dtype, unary_fwd_kernel), &c);
    sg_node *n = sg_record(g, name, unary_bwd, 1, &x, 1, &y);
    if (n) {
        n->i[0] = op;
        n->f[0] = param;
    }
    return y;
}

static sg_tensor *unary(sg_graph *g, sg_tensor *x, int op, double param)
{
    return unary_to(g, x, op, param, false);
}

sg_tensor *sg__tanh_in_place(sg_graph *g, sg_tensor *x)
{
    return unary_to(g, x, U_TANH, 0, true);
}

sg_tensor *sg__mul_scalar_in_place(sg_graph *g, sg_tensor *x, double s)
{
    return unary_to(g, x, U_MULS, s, true);
}

sg_tensor *sg_neg(sg_graph *g, sg_tensor *a) { return unary(g, a, U_NEG, 0); }
sg_tensor *sg_exp(sg_graph *g, sg_tensor *a) { return unary(g, a, U_EXP, 0); }
sg_tensor *sg_log(sg_graph *g, sg_tensor *a) { return unary(g, a, U_LOG, 0); }
sg_tensor *sg_tanh(sg_graph *g, sg_tensor *a) { return unary(g, a, U_TANH, 0); }
sg_tensor *sg_sigmoid(sg_graph *g, sg_tensor *a) { return unary(g, a, U_SIGMOID, 0); }
sg_tensor *sg_relu(sg_graph *g, sg_tensor *a) { return unary(g, a, U_RELU, 0); }
sg_tensor *sg_sqrt(sg_graph *g, sg_tensor *a) { return unary(g, a, U_SQRT, 0); }
sg_tensor *sg_rsqrt(sg_graph *g, sg_tensor *a) { return unary(g, a, U_RSQRT, 0); }
sg_tensor *sg_pow(sg_graph *g, sg_tensor *a, double p) { return unary(g, a, U_POW, p); }
sg_tensor *sg_add_scalar(sg_graph *g, sg_tensor *a, double s) { return unary(g, a, U_ADDS, s); }
sg_tensor *sg_mul_scalar(sg_graph *g, sg_tensor *a, double s) { return unary(g, a, U_MULS, s); }

/* ---- binary ------------------------------------------------------------------ */

/* Output shape of broadcasting a with b, or an error naming op. */
static bool bshape(sg_graph *g, const char *op, const sg_tensor *a, const sg_tensor *b, int *nd,
                   int64_t *shape)
{
    if (sg__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, nd, shape))
        return true;
    sg_graph_fail(g, SG_ESHAPE, "%s: shapes %s and %s do not broadcast", op, SG_SHAPE(a),
                  SG_SHAPE(b));
    return false;
}

static void binary_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *y = n->out[0];
    size_t es = sg_dtype_size(y->dtype);
    int64_t ys[SG_MAX_DIMS];
    sg__contig_strides(y->ndim, y->shape, ys);
    for (int side = 0; side < 2; side++) {
        sg_tensor *t = n->in[side];
        void *dt = sg_grad_of(g, t);
        if (!dt)
            continue;
        /* t's contiguous gradient seen through the broadcast: 0 strides sum up */
        sg_tensor gh = *t;
        sg__contig_strides(t->ndim, t->shape, gh.stride);
        int64_t ds[SG_MAX_DIMS], as[SG_MAX_DIMS], bs[SG_MAX_DIMS];
        sg__broadcast_strides(&gh, y->ndim, y->shape, ds);
        sg__broadcast_strides(n->in[0], y->ndim, y->shape, as);
        sg__broadcast_strides(n->in[1], y->ndim, y->shape, bs);
        sg__iter it;
        sg__iter_init(&it, y->ndim, y->shape);
        sg__iter_add(&it, dt, es, ds);
        sg__iter_add(&it, y->grad, es, ys);
        sg__iter_add(&it, n->in[0]->data, es, as);
        sg__iter_add(&it, n->in[1]->data, es, bs);
        ew_ctx c = {.op = (int)n->i[0], .side = side};
        sg__iter_run(&it, PICK(y->dtype, binary_bwd_kernel), &c);
    }
}

/* over: y is written over a (contiguous, of the broadcast shape; see sg__add_in_place) */
static sg_tensor *binary_to(sg_graph *g, sg_tensor *a, sg_tensor *b, int op, bool over)
{
    SG_NEED(g, a, b);
    const char *name = binary_names[op];
    int nd;
    int64_t shape[SG_MAX_DIMS];
    if (!sg__check_same_float(g, name, a, b) || !bshape(g, name, a, b, &nd, shape))
        return NULL;
    over = over && nd == a->ndim && !memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd);
    sg_tensor *y = over ? sg__view_header(g, a) : sg_empty(g, a->dtype, nd, shape);
    if (!y)
        return NULL;
    int64_t as[SG_MAX_DIMS], bs[SG_MAX_DIMS];
    sg__broadcast_strides(a, nd, shape, as);
    sg__broadcast_strides(b, nd, shape, bs);
    size_t es = sg_dtype_size(a->dtype);
    sg__iter it;
    sg__iter_init(&it, nd, shape);
    sg__iter_add(&it, y->data, es, y->stride);
    sg__iter_add(&it, a->data, es, as);
    sg__iter_add(&it, b->data, es, bs);
    ew_ctx c = {.op = op};
    sg__iter_run(&it, PICK(a->dtype, binary_fwd_kernel), &c);
    sg_tensor *ins[2] = {a, b};
    sg_node *n = sg_record(g, name, binary_bwd, 2, ins, 1, &y);
    if (n)
        n->i[0] = op;
    return y;
}

static sg_tensor *binary(sg_graph *g, sg_tensor *a, sg_tensor *b, int op)
{
    return binary_to(g, a, b, op, false);
}

sg_tensor *sg__add_in_place(sg_graph *g, sg_tensor *a, sg_tensor *b)
{
    return binary_to(g, a, b, B_ADD, true);
}

sg_tensor *sg_add(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_ADD); }
sg_tensor *sg_sub(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_SUB); }
sg_tensor *sg_mul(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_MUL); }
sg_tensor *sg_div(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_DIV); }
sg_tensor *sg_maximum(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_MAX); }
sg_tensor *sg_minimum(sg_graph *g, sg_tensor *a, sg_tensor *b) { return binary(g, a, b, B_MIN); }

/* ---- comparisons --------------------------------------------------------------- */

static sg_tensor *compare(sg_graph *g, sg_tensor *a, sg_tensor *b, int op, const char *name)
{
    SG_NEED(g, a, b);
    int nd;
    int64_t shape[SG_MAX_DIMS];
    if (!sg__check_same_float(g, name, a, b) || !bshape(g, name, a, b, &nd, shape))
        return NULL;
    sg_tensor *m = sg_empty(g, SG_BOOL, nd, shape);
    if (!m)
        return NULL;
    int64_t as[SG_MAX_DIMS], bs[SG_MAX_DIMS];
    sg__broadcast_strides(a, nd, shape, as);
    sg__broadcast_strides(b, nd, shape, bs);
    size_t es = sg_dtype_size(a->dtype);
    sg__iter it;
    sg__iter_init(&it, nd, shape);
    sg__iter_add(&it, m->data, 1, m->stride);
    sg__iter_add(&it, a->data, es, as);
    sg__iter_add(&it, b->data, es, bs);
    ew_ctx c = {.op = op};
    sg__iter_run(&it, PICK(a->dtype, compare_kernel), &c);
    return m;
}

static sg_tensor *scalar_like(sg_graph *g, sg_tensor *a, double s)
{
    SG_NEED(g, a);
    return sg_full(g, sg_dtype_is_float(a->dtype) ? a->dtype : SG_F64, 0, NULL, s);
}

sg_tensor *sg_eq(sg_graph *g, sg_tensor *a, sg_tensor *b) { return compare(g, a, b, C_EQ, "sg_eq"); }
sg_tensor *sg_lt(sg_graph *g, sg_tensor *a, sg_tensor *b) { return compare(g, a, b, C_LT, "sg_lt"); }
sg_tensor *sg_gt(sg_graph *g, sg_tensor *a, sg_tensor *b) { return compare(g, a, b, C_GT, "sg_gt"); }
sg_tensor *sg_eq_scalar(sg_graph *g, sg_tensor *a, double s)
{
    return compare(g, a, scalar_like(g, a, s), C_EQ, "sg_eq_scalar");
}
sg_tensor *sg_lt_scalar(sg_graph *g, sg_tensor *a, double s)
{
    return compare(g, a, scalar_like(g, a, s), C_LT, "sg_lt_scalar");
}
sg_tensor *sg_gt_scalar(sg_graph *g, sg_tensor *a, double s)
{
    return compare(g, a, scalar_like(g, a, s), C_GT, "sg_gt_scalar");
}

/* ---- where / masked_fill -------------------------------------------------------- */

static void where_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *y = n->out[0], *cond = n->in[0];
    size_t es = sg_dtype_size(y->dtype);
    int64_t ys[SG_MAX_DIMS], ms[SG_MAX_DIMS];
    sg__contig_strides(y->ndim, y->shape, ys);
    sg__broadcast_strides(cond, y->ndim, y->shape, ms);
    for (int side = 0; side < 2; side++) {
        sg_tensor *t = n->in[1 + side];
        void *dt = sg_grad_of(g, t);
        if (!dt)
            continue;
        sg_tensor gh = *t;
        sg__contig_strides(t->ndim, t->shape, gh.stride);
        int64_t ds[SG_MAX_DIMS];
        sg__broadcast_strides(&gh, y->ndim, y->shape, ds);
        sg__iter it;
        sg__iter_init(&it, y->ndim, y->shape);
        sg__iter_add(&it, dt, es, ds);
        sg__iter_add(&it, y->grad, es, ys);
        sg__iter_add(&it, cond->data, 1, ms);
        ew_ctx c = {.side = side};
        sg__iter_run(&it, PICK(y->dtype, where_bwd_kernel), &c);
    }
}

sg_tensor *sg_where(sg_graph *g, sg_tensor *cond, sg_tensor *a, sg_tensor *b)
{
    SG_NEED(g, cond, a, b);
    if (cond->dtype != SG_BOOL)
        return sg_graph_fail(g, SG_EDTYPE, "sg_where: condition must be bool, got %s %s",
                             sg_dtype_name(cond->dtype), SG_SHAPE(cond));
    int nd, nd2;
    int64_t s1[SG_MAX_DIMS], shape[SG_MAX_DIMS];
    if (!sg__check_same_float(g, "sg_where", a, b) || !bshape(g, "sg_where", a, b, &nd, s1))
        return NULL;
    if (!sg__broadcast_shape(cond->ndim, cond->shape, nd, s1, &nd2, shape))
        return sg_graph_fail(g, SG_ESHAPE, "sg_where: condition %s does not broadcast with %s",
                             SG_SHAPE(cond), SG_SHAPE(a));
    sg_tensor *y = sg_empty(g, a->dtype, nd2, shape);
    if (!y)
        return NULL;
    int64_t ms[SG_MAX_DIMS], as[SG_MAX_DIMS], bs[SG_MAX_DIMS];
    sg__broadcast_strides(cond, nd2, shape, ms);
    sg__broadcast_strides(a, nd2, shape, as);
    sg__broadcast_strides(b, nd2, shape, bs);
    size_t es = sg_dtype_size(a->dtype);
    sg__iter it;
    sg__iter_init(&it, nd2, shape);
    sg__iter_add(&it, y->data, es, y->stride);
    sg__iter_add(&it, cond->data, 1, ms);
    sg__iter_add(&it, a->data, es, as);
    sg__iter_add(&it, b->data, es, bs);
    sg__iter_run(&it, PICK(a->dtype, where_kernel), NULL);
    sg_tensor *ins[3] = {cond, a, b};
    sg_record(g, "sg_where", where_bwd, 3, ins, 1, &y);
    return y;
}

sg_tensor *sg_masked_fill(sg_graph *g, sg_tensor *x, sg_tensor *mask, double v)
{
    SG_NEED(g, x, mask);
    if (!sg__check_float(g, "sg_masked_fill", x))
        return NULL;
    sg_tensor *fill = sg_full(g, x->dtype, 0, NULL, v);
    sg_tensor *y = sg_where(g, mask, fill, x);
    if (y && !sg_tensor_same_shape(y, x))
        return sg_graph_fail(g, SG_ESHAPE, "sg_masked_fill: mask %s does not broadcast to %s",
                             SG_SHAPE(mask), SG_SHAPE(x));
    return y;
}
