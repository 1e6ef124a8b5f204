/*
 * op_matmul.c - matrix products through BLIS. Operand views (transposes, slices)
 * reach BLIS as row/column strides; only expanded operands (stride 0 in a matrix
 * dim, which BLIS rejects) are made contiguous first.
 */
#include "autograd_internal.h"

#include <string.h>

/* A 2-D matrix view: data, rows, cols, row stride, col stride (elements). */
typedef struct {
    char *p;
    int64_t r, c, rs, cs;
} mat;

static mat mat_of(const sg_tensor *t, int64_t batch, size_t es)
{
    int nd = t->ndim;
    mat m = {(char *)t->data, t->shape[nd - 2], t->shape[nd - 1], t->stride[nd - 2],
             t->stride[nd - 1]};
    if (nd == 3)
        m.p += batch * t->stride[0] * (int64_t)es;
    return m;
}

static mat mat_t(mat m) { return (mat){m.p, m.c, m.r, m.cs, m.rs}; }

/* C (+)= A B */
static void gemm(sg_dtype dt, mat A, mat B, mat C, double beta)
{
    sg__gemm(dt, C.r, C.c, A.c, 1.0, A.p, A.rs, A.cs, B.p, B.rs, B.cs, beta, C.p, C.rs, C.cs);
}

bool sg__blis_ok(const sg_tensor *t)
{
    int nd = t->ndim;
    return (t->stride[nd - 2] != 0 || t->shape[nd - 2] == 1) &&
           (t->stride[nd - 1] != 0 || t->shape[nd - 1] == 1);
}

static mat grad_mat(sg_tensor *t, void *grad, int64_t batch, size_t es)
{
    int nd = t->ndim;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    mat m = {(char *)grad, r, c, c, 1};
    if (nd == 3)
        m.p += batch * r * c * (int64_t)es;
    return m;
}

static void matmul_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
    size_t es = sg_dtype_size(y->dtype);
    int64_t nb = y->ndim == 3 ? y->shape[0] : 1;
    void *da = sg_grad_of(g, a), *db = sg_grad_of(g, b);
    for (int64_t k = 0; k < nb; k++) {
        mat dy = grad_mat(y, y->grad, k, es);
        int64_t ka = a->ndim == 3 && a->shape[0] > 1 ? k : 0;
        int64_t kb = b->ndim == 3 && b->shape[0] > 1 ? k : 0;
        if (da) /* dA += dY B^T */
            gemm(y->dtype, dy, mat_t(mat_of(b, kb, es)), grad_mat(a, da, ka, es), 1.0);
        if (db) /* dB += A^T dY */
            gemm(y->dtype, mat_t(mat_of(a, ka, es)), dy, grad_mat(b, db, kb, es), 1.0);
    }
}

sg_tensor *sg_matmul(sg_graph *g, sg_tensor *a, sg_tensor *b)
{
    SG_NEED(g, a, b);
    if (!sg__check_same_float(g, "sg_matmul", a, b))
        return NULL;
    if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3)
        return sg_graph_fail(g, SG_ESHAPE, "sg_matmul: operands must be 2-D or 3-D, got %s @ %s",
                             SG_SHAPE(a), SG_SHAPE(b));
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != K2)
        return sg_graph_fail(g, SG_ESHAPE, "sg_matmul: inner dims differ: %s @ %s (%lld vs %lld)",
                             SG_SHAPE(a), SG_SHAPE(b), (long long)K, (long long)K2);
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    if (ba != bb && ba != 1 && bb != 1)
        return sg_graph_fail(g, SG_ESHAPE, "sg_matmul: batch dims %lld and %lld do not broadcast "
                                           "(%s @ %s)",
                             (long long)ba, (long long)bb, SG_SHAPE(a), SG_SHAPE(b));
    if (!sg__blis_ok(a))
        a = sg_contiguous(g, a);
    if (!sg__blis_ok(b))
        b = sg_contiguous(g, b);
    SG_NEED(a, b);
    int64_t nb = ba > bb ? ba : bb;
    bool batched = a->ndim == 3 || b->ndim == 3;
    int64_t shape[3] = {nb, M, N};
    sg_tensor *y = batched ? sg_empty(g, a->dtype, 3, shape) : sg_empty(g, a->dtype, 2, shape + 1);
    if (!y)
        return NULL;
    size_t es = sg_dtype_size(a->dtype);
    for (int64_t k = 0; k < nb; k++) {
        mat A = mat_of(a, a->ndim == 3 && ba > 1 ? k : 0, es);
        mat B = mat_of(b, b->ndim == 3 && bb > 1 ? k : 0, es);
        mat C = grad_mat(y, y->data, k, es);
        if (K == 0)
            memset(C.p, 0, (size_t)(M * N) * es);
        else
            gemm(a->dtype, A, B, C, 0.0);
    }
    sg_tensor *ins[2] = {a, b};
    sg_record(g, "sg_matmul", matmul_bwd, 2, ins, 1, &y);
    return y;
}

/* ---- linear: y = x W^T + b as one node ------------------------------------------ */

static int64_t row_stride(const sg_tensor *x)
{
    int nd = x->ndim;
    return nd >= 2 && x->shape[nd - 2] > 1 ? x->stride[nd - 2] : x->shape[nd - 1];
}

static bool rows_uniform(const sg_tensor *x)
{
    int nd = x->ndim;
    if (x->stride[nd - 1] != 1 && x->shape[nd - 1] > 1)
        return false;
    if (nd >= 2 && x->shape[nd - 2] > 1 && x->stride[nd - 2] < x->shape[nd - 1])
        return false; /* overlapping or expanded rows */
    for (int d = 0; d < nd - 2; d++)
        if (x->shape[d] > 1 && x->stride[d] != x->stride[d + 1] * x->shape[d + 1])
            return false;
    /* a size-1 dim just above the rows breaks the chain: be conservative */
    for (int d = 0; d < nd - 2; d++)
        if (x->shape[d + 1] == 1 && x->shape[d] > 1)
            return sg_tensor_is_contiguous(x);
    return true;
}

/* The part of a linear's backward that belongs to one input x [rows, K] (row stride ldx)
 * and its weight columns W_x = w[:, c0 : c0 + K]: dx (+)= dY W_x, dW[:, c0 : c0 + K] +=
 * dY^T x (dw: w's gradient [out, in] or NULL). */
static void linear_input_bwd(sg_graph *g, mat dy, sg_tensor *x, int64_t ldx,
                             const sg_tensor *w, int64_t c0, int64_t K, char *dw)
{
    sg_dtype dt = w->dtype;
    size_t es = sg_dtype_size(dt);
    mat W = {(char *)w->data + (size_t)(c0 * w->stride[1]) * es, dy.c, K, w->stride[0],
             w->stride[1]};
    bool fresh = false;
    void *dx = dy.c > 0 ? sg__grad_for_write(g, x, &fresh) : sg_grad_of(g, x);
    /* dX += dY W (dX = dY W into a fresh buffer: no zeroing, no read); W packed once per
     * backward when the forward's product was small and repeats (a decoder's steps) */
    if (dx && dy.cs == 1 && sg__linear_weight_reused(w, dy.r))
        sg__gemm_op(dt, dy.r, K, dy.c, dy.p, dy.rs, sg__weight_operand(g, w, true), 0, c0,
                    fresh ? 0.0 : 1.0, dx, K);
    else if (dx)
        gemm(dt, dy, W, (mat){dx, dy.r, K, K, 1}, fresh ? 0.0 : 1.0);
    if (dw)
        gemm(dt, mat_t(dy), (mat){(char *)x->data, dy.r, K, ldx, 1},
             (mat){dw + (size_t)c0 * es, dy.c, K, w->shape[1], 1}, 1.0);
}

static void linear_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *w = n->in[1], *bias = n->n_in > 2 ? n->in[2] : NULL, *y = n->out[0];
    int64_t in = w->shape[1], out = w->shape[0], rows = sg_tensor_numel(y) / (out ? out : 1);
    mat dy = {(char *)y->grad, rows, out, out, 1};
    linear_input_bwd(g, dy, x, row_stride(x), w, 0, in, sg_grad_of(g, w));
    void *db = bias ? sg_grad_of(g, bias) : NULL;
    if (db)
        sg__add_colsum(y->dtype, db, y->grad, rows, out, out);
}

void sg__affine_op(sg_dtype dt, int64_t R, int64_t N, int64_t K, const void *X, int64_t ldx,
                   sg__operand Wt, const void *b, void *Y, int64_t ldy)
{
    size_t es = sg_dtype_size(dt);
    for (int64_t r = 0; r < R && (b || K == 0); r++) {
        char *y = (char *)Y + (size_t)(r * ldy) * es;
        if (b)
            memcpy(y, b, (size_t)N * es);
        else
            memset(y, 0, (size_t)N * es);
    }
    if (K > 0)
        sg__gemm_op(dt, R, N, K, X, ldx, Wt, 0, 0, b ? 1.0 : 0.0, Y, ldy);
}

void sg__affine(sg_dtype dt, int64_t R, int64_t N, int64_t K, const void *X, int64_t ldx,
                const void *W, int64_t ws0, int64_t ws1, const void *b, void *Y, int64_t ldy)
{
    sg__affine_op(dt, R, N, K, X, ldx, (sg__operand){W, ws1, ws0, NULL}, b, Y, ldy);
}

/* Products of at most this many rows by a weight that comes back step after step (a
 * decoding step's generator) go to seqgrad's packed kernel over a copy packed once, even
 * when large: BLIS packs all of W for every product, which at 64 rows costs about as much
 * as the product (enfr-bahdanau greedy decoding, 64 x 1024 x 8000: 25-40% faster at one
 * thread). At 320 rows (a beam of 5) BLIS's packing pays for itself. */
#define FEW_ROWS 128

bool sg__linear_weight_reused(const sg_tensor *w, int64_t rows)
{
    bool small = (double)rows * (double)w->shape[0] * (double)w->shape[1] <= SG_SMALL_GEMM_MNK;
    bool few_rows = rows <= FEW_ROWS && sg__packed_gemm_on(w->dtype);
    return w->owns_data && rows >= 8 && (small || few_rows);
}

sg__operand sg__linear_weight_operand(sg_graph *g, const sg_tensor *w, int64_t rows)
{
    return sg__weight_t_operand(g, w, 1, sg__linear_weight_reused(w, rows));
}

sg_tensor *sg_linear(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *bias)
{
    SG_NEED(g, x, w);
    if (!sg__check_same_float(g, "sg_linear", x, w) ||
        (bias && !sg__check_same_float(g, "sg_linear", x, bias)))
        return NULL;
    if (w->ndim != 2 || x->ndim < 1)
        return sg_graph_fail(g, SG_ESHAPE, "sg_linear: weight must be 2-D [out, in], got %s",
                             SG_SHAPE(w));
    int64_t out = w->shape[0], in = w->shape[1];
    if (x->shape[x->ndim - 1] != in)
        return sg_graph_fail(g, SG_ESHAPE, "sg_linear: input has %lld features, weight %s expects "
                                           "%lld (input %s)",
                             (long long)x->shape[x->ndim - 1], SG_SHAPE(w), (long long)in,
                             SG_SHAPE(x));
    if (bias && (bias->ndim != 1 || bias->shape[0] != out))
        return sg_graph_fail(g, SG_ESHAPE, "sg_linear: bias %s does not match %lld outputs",
                             SG_SHAPE(bias), (long long)out);
    /* one GEMM needs the rows of x evenly strided with unit column stride */
    if (!rows_uniform(x))
        x = sg_contiguous(g, x);
    SG_NEED(x);
    int64_t rows = sg_tensor_numel(x) / (in ? in : 1);
    int64_t shape[SG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    sg_tensor *y = sg_empty(g, x->dtype, x->ndim, shape);
    if (!y)
        return NULL;
    sg__operand wt = sg__linear_weight_operand(g, w, rows);
    sg__affine_op(x->dtype, rows, out, in, x->data, row_stride(x), wt, bias ? bias->data : NULL,
                  y->data, out);
    sg_tensor *ins[3] = {x, w, bias};
    sg_record(g, "sg_linear", linear_bwd, bias ? 3 : 2, ins, 1, &y);
    return y;
}

/* ---- linear of a join: y = [a ; b] W^T + bias without making [a ; b] ---------------- */

static void linear_cat2_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *a = n->in[0], *b = n->in[1], *w = n->in[2], *y = n->out[0];
    sg_tensor *bias = n->n_in > 3 ? n->in[3] : NULL;
    int64_t Ka = a->shape[a->ndim - 1], Kb = b->shape[b->ndim - 1];
    int64_t out = w->shape[0], rows = sg_tensor_numel(y) / (out ? out : 1);
    mat dy = {(char *)y->grad, rows, out, out, 1};
    char *dw = sg_grad_of(g, w);
    linear_input_bwd(g, dy, a, Ka, w, 0, Ka, dw);
    linear_input_bwd(g, dy, b, Kb, w, Ka, Kb, dw);
    void *db = bias ? sg_grad_of(g, bias) : NULL;
    if (db)
        sg__add_colsum(y->dtype, db, y->grad, rows, out, out);
}

sg_tensor *sg__linear_cat2(sg_graph *g, sg_tensor *a, sg_tensor *b, sg_tensor *w,
                           sg_tensor *bias)
{
    const char *op = "sg_linear (of a join)";
    SG_NEED(g, a, b, w);
    if (!sg__check_same_float(g, op, a, w) || !sg__check_same_float(g, op, b, w) ||
        (bias && !sg__check_same_float(g, op, bias, w)))
        return NULL;
    int nd = a->ndim;
    bool fit = nd >= 1 && b->ndim == nd && w->ndim == 2 &&
               (!bias || (bias->ndim == 1 && bias->shape[0] == w->shape[0]));
    for (int d = 0; fit && d < nd - 1; d++)
        fit = a->shape[d] == b->shape[d];
    if (!fit || a->shape[nd - 1] + b->shape[nd - 1] != w->shape[1])
        return sg_graph_fail(g, SG_ESHAPE, "%s: inputs %s and %s joined on their last dim do not "
                                           "fit weight %s%s%s",
                             op, SG_SHAPE(a), SG_SHAPE(b), SG_SHAPE(w), bias ? ", bias " : "",
                             bias ? SG_SHAPE(bias) : "");
    a = sg_contiguous(g, a);
    b = sg_contiguous(g, b);
    SG_NEED(a, b);
    int64_t Ka = a->shape[nd - 1], Kb = b->shape[nd - 1], out = w->shape[0];
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++)
        rows *= a->shape[d];
    int64_t shape[SG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[nd - 1] = out;
    sg_tensor *y = sg_empty(g, a->dtype, nd, shape);
    if (!y)
        return NULL;
    sg__operand wt = sg__linear_weight_operand(g, w, rows);
    /* y = a W_a^T + bias, then y += b W_b^T (W_b^T: rows Ka.. of W^T) */
    sg__affine_op(a->dtype, rows, out, Ka, a->data, Ka, wt, bias ? bias->data : NULL, y->data,
                  out);
    if (Kb > 0)
        sg__gemm_op(a->dtype, rows, out, Kb, b->data, Kb, wt, Ka, 0, 1.0, y->data, out);
    sg_tensor *ins[4] = {a, b, w, bias};
    sg_record(g, "sg_linear", linear_cat2_bwd, bias ? 4 : 3, ins, 1, &y);
    return y;
}
