/*
 * linear_loss.c - a generator (x W^T + b) and the cross entropy of loss.c as one node
 * that holds the [R x V] logits only where that is cheaper than the alternative.
 *
 * Why: the logits are the largest activation of a translation model (enfr, 1536 target
 * tokens x 8000 words = 49 MB of a step's ~140), and all their backward needs is the
 * gradient, s (softmax - target distribution), whose whole use is two products: dX = dZ W
 * and dW = dZ^T X. So each chunk of rows is pushed through the three products and the row
 * passes while it is hot, and only dX (R x K) and dW (V x K) are kept for sg_backward,
 * which scales them by the upstream gradient (1 for a loss) and adds them in.
 *
 * Chunks of CHUNK_LOGITS logits (8 MB of f32; 262 rows at V = 8000): every chunk adds
 * its share to dW, a read and write of all of W's size, which BLIS amortises over the
 * chunk's k = 262 rows (enfr-luong trained as fast as with whole logits; with 131-row
 * chunks 4% slower). Where dW would cost more memory than the chunks save (K wide
 * against the rows: enfr-bahdanau's generator has K = 1024), the rows are one chunk
 * whose gradient is kept instead, and backward makes the two products from it: chunking
 * that generator made training 8-11% slower and saved little. The line is drawn where
 * chunking keeps at most 2/3 of the logits' memory (enfr-luong: 816 rows and more).
 *
 * sg_linear_cross_entropy_backward knows that the backward follows at once, with an
 * upstream gradient of 1: its chunks add dW and db straight into w's and bias's
 * gradients, so neither a kept dW nor a kept logits' gradient is needed, whatever K.
 *
 * The product is made without the bias; the row passes add it to each logit they read
 * and sum the gradient rows into db while they are in cache (no [R x V] fill with copies
 * of b before the product, no column-sum pass over the gradient after it).
 */
#include "nn_internal.h"

#include <string.h>

#define CHUNK_LOGITS (1 << 21)
/* Chunks of sg_linear_cross_entropy_backward, which adds every chunk's dW into W's
 * gradient: each such product reads and writes all of it, so fewer, larger chunks pay
 * off where K is wide. enfr-bahdanau (K = 1024) at 3M logits (384 rows, 12 MB): 5.7%
 * slower than with the whole logits' gradient kept, and 37 MB less at the peak; at 2M
 * 10% slower and 5 MB less again. */
#define CHUNK_LOGITS_ADDING 3072000

/* What the forward computed for an upstream gradient of 1 (arena buffers), or NULL. */
typedef struct lce_grads {
    void *dx; /* [R, K], rows of x in order */
    void *dw; /* [V, K] */
    void *db; /* [V] */
    void *dz; /* [R, V] the logits' gradient when the rows were one kept chunk: dx and dw
               * are then made from it in backward */
    bool added; /* sg_linear_cross_entropy_backward: dW and db went straight into w's and
                 * bias's gradients in the forward; backward must run once, with dL = 1 */
    bool ran;
} lce_grads;

/* C = A B + beta C on (pointer, row stride, col stride) operands */
typedef struct {
    const void *p;
    int64_t rs, cs;
} opnd;

static void gemm(sg_dtype dt, int64_t m, int64_t n, int64_t k, opnd A, opnd B, double beta,
                 void *C, int64_t rsc)
{
    sg__gemm(dt, m, n, k, 1.0, A.p, A.rs, A.cs, B.p, B.rs, B.cs, beta, C, rsc, 1);
}

/* dst (+)= a src over n elements */
static void add_scaled(sg_dtype dt, void *dst, const void *src, int64_t n, double a, bool assign)
{
    int64_t nr = (n + SG_RANGE - 1) / SG_RANGE;
    int nt = nr > 1 ? sg__threads() : 1;
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, i1 = n - i0 < SG_RANGE ? n : i0 + SG_RANGE;
        if (dt == SG_F32) {
            float *d = dst, fa = (float)a;
            const float *s = src;
            for (int64_t i = i0; i < i1; i++)
                d[i] = (assign ? 0.0f : d[i]) + fa * s[i];
        } else {
            double *d = dst;
            const double *s = src;
            for (int64_t i = i0; i < i1; i++)
                d[i] = (assign ? 0.0 : d[i]) + a * s[i];
        }
    });
}

static void lce_bwd(sg_graph *g, sg_node *n)
{
    lce_grads *sv = n->saved;
    sg_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL, *out = n->out[0];
    if (!out->grad)
        return;
    sg_dtype dt = out->dtype;
    double dL = dt == SG_F32 ? (double)*(const float *)out->grad : *(const double *)out->grad;
    int64_t R = sg_tensor_numel(x) / (w->shape[1] ? w->shape[1] : 1), V = w->shape[0];
    int64_t K = w->shape[1];
    if (sv->added && (dL != 1 || sv->ran)) { /* e.g. sg_backward again on the returned loss */
        sg_graph_fail(g, SG_ESTATE, "sg_linear_cross_entropy_backward: its backward ran %s",
                      sv->ran ? "twice" : "with an upstream gradient other than 1");
        return;
    }
    sv->ran = true;
    if (sv->dz && K > 0) { /* dX (+)= dL dZ W, dW += dL dZ^T X */
        bool fresh;
        void *d = sg__grad_for_write(g, x, &fresh);
        if (d)
            sg__gemm(dt, R, K, V, dL, sv->dz, V, 1, w->data, w->stride[0], w->stride[1],
                     fresh ? 0.0 : 1.0, d, K, 1);
        if ((d = sg_grad_of(g, w)))
            sg__gemm(dt, V, K, R, dL, sv->dz, 1, V, x->data, K, 1, 1.0, d, K, 1);
    }
    if (sv->dx == x->data && !x->grad) { /* written over x: it becomes x's gradient */
        if (dL != 1)
            add_scaled(dt, x->data, x->data, sg_tensor_numel(x), dL, true);
        x->grad = x->data; /* graph.c does not free a gradient that is the tensor's data */
    } else if (sv->dx) {
        bool fresh;
        void *d = sg__grad_for_write(g, x, &fresh);
        if (d)
            add_scaled(dt, d, sv->dx, sg_tensor_numel(x), dL, fresh);
    }
    if (sv->added)
        return;
    void *dw = sv->dw ? sg_grad_of(g, w) : NULL;
    if (dw)
        add_scaled(dt, dw, sv->dw, sg_tensor_numel(w), dL, false);
    void *db = sv->db ? sg_grad_of(g, b) : NULL;
    if (db)
        add_scaled(dt, db, sv->db, sg_tensor_numel(b), dL, false);
}

/* The shape checks of sg_linear (the targets' are sg__ce_prepare's); false with the error
 * recorded on g. */
static bool check_args(sg_graph *g, const char *op, const sg_tensor *x, const sg_tensor *w,
                       const sg_tensor *bias)
{
    if (!sg__check_same_float(g, op, x, w) || (bias && !sg__check_same_float(g, op, x, bias)))
        return false;
    if (w->ndim != 2 || w->shape[0] < 1) {
        sg_graph_fail(g, SG_ESHAPE, "%s: weight must be 2-D [V, K] with V >= 1, got %s", op,
                      SG_SHAPE(w));
        return false;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1]) {
        sg_graph_fail(g, SG_ESHAPE, "%s: input %s does not have the %lld features of weight %s",
                      op, SG_SHAPE(x), (long long)w->shape[1], SG_SHAPE(w));
        return false;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0])) {
        sg_graph_fail(g, SG_ESHAPE, "%s: bias %s does not match weight %s", op, SG_SHAPE(bias),
                      SG_SHAPE(w));
        return false;
    }
    return true;
}

/* The forward of both public calls. add_now: w's and bias's gradients get dW and db here
 * (the caller runs the backward next). */
static sg_tensor *lce_forward(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *bias,
                              sg_tensor *targets, const sg_cross_entropy_opts *opts,
                              sg_cross_entropy_stats *stats, bool add_now, const char *op)
{
    SG_NEED(g, x, w, targets);
    if (!check_args(g, op, x, w, bias))
        return NULL;
    /* before anything else is recorded: is x fresh and unread? */
    bool x_over = opts && opts->overwrite_input && sg_tensor_is_contiguous(x) &&
                  sg__fresh_unread_output(g, x);
    int64_t V = w->shape[0], K = w->shape[1], R = sg_tensor_numel(targets), N;
    sg_cross_entropy_opts o;
    if (!sg__ce_prepare(g, op, opts, &targets, x, "input", V, &o, &N))
        return NULL;
    if (!sg_tensor_is_contiguous(x) && !(x = sg_contiguous(g, x)))
        return NULL;
    if (!sg__blis_ok(w) && !(w = sg_contiguous(g, w)))
        return NULL;
    if (bias && !sg_tensor_is_contiguous(bias) && !(bias = sg_contiguous(g, bias)))
        return NULL;
    sg_tensor *ins[3] = {x, w, bias};
    int n_in = bias ? 3 : 2;
    bool rec = sg__will_record(g, n_in, ins);
    int64_t chunk = (add_now ? CHUNK_LOGITS_ADDING : CHUNK_LOGITS) / V;
    chunk = chunk < 1 ? 1 : chunk;
    /* chunks when they hold at most 2/3 of the logits' memory, counting the chunk, dW and
     * dX; else the rows are one chunk whose gradient backward uses (K wide against V: the
     * kept dW is as large as the logits, and chunking cost 8-11% of enfr-bahdanau's speed) */
    double kept = (double)chunk * (double)V + (double)V * (double)K + (double)R * (double)K;
    bool keep_dz = rec && !add_now && w->requires_grad && 3 * kept > 2 * (double)R * (double)V;
    if (chunk > R || keep_dz)
        chunk = R ? R : 1;
    sg_dtype dt = x->dtype;
    size_t es = sg_dtype_size(dt);
    sg_arena *a = sg_graph_arena(g);
    int status0 = sg_graph_status(g);
    double *lse = sg_arena_alloc(a, 2 * sizeof(double) * (size_t)(R ? R : 1)), *lrow = lse + R;
    lce_grads *sv = rec ? sg_arena_alloc(a, sizeof *sv) : NULL;
    sg_tensor *loss = sg_empty(g, dt, 0, NULL);
    if (!lse || (rec && !sv) || !loss)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory (%lld rows)", op, (long long)R);
    if (sv) {
        *sv = (lce_grads){.added = add_now};
        bool dx = x->requires_grad && !keep_dz, dw = w->requires_grad && !keep_dz;
        bool db = bias && bias->requires_grad;
        if (dx && x_over)
            sv->dx = x->data; /* each chunk's rows once its products are made */
        if (add_now) { /* gradients that exist already, or are allocated now */
            int status = sg_graph_status(g);
            if ((dw && !(sv->dw = sg_grad_of(g, w))) || (db && !(sv->db = sg_grad_of(g, bias))))
                return status == sg_graph_status(g)
                           ? sg_graph_fail(g, SG_ENOMEM, "%s: no gradient for the weights", op)
                           : NULL;
            dw = db = false;
        }
        if ((dx && !sv->dx && !(sv->dx = sg_arena_alloc(a, (size_t)(R * K + 1) * es))) ||
            (dw && !(sv->dw = sg_arena_alloc(a, (size_t)(V * K + 1) * es))) ||
            (keep_dz && !(sv->dz = sg_arena_alloc(a, (size_t)(R * V + 1) * es))) ||
            (db && !(sv->db = sg_arena_calloc(a, (size_t)V * es))))
            return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory for the gradients", op);
    }
    /* the forward ends here: the weight copies its small products made are done with
     * (and would sit under the chunk) */
    sg__graph_drop_weight_copies(g);
    /* the chunk is scratch of this call, from the pool, where backward reuses it; or the
     * kept gradient */
    void *z = keep_dz ? sv->dz : sg__scratch_get(g, (size_t)(chunk * V) * es, op);
    if (!z)
        return NULL;
    const int64_t *y = targets->data;
    double eps = o.label_smoothing, scale = sg__ce_scale(&o, N);
    opnd W = {w->data, w->stride[0], w->stride[1]};
    /* a small generator (dates: 15 words) reads W^T made once per graph, as sg_linear
     * does (BLIS made 32 GFLOP/s of dates' 704 x 15 x 448 logits with W read transposed) */
    sg__operand wt = sg__linear_weight_operand(g, w, chunk < R ? chunk : R);
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        int64_t c = R - r0 < chunk ? R - r0 : chunk;
        const char *xc = (const char *)x->data + (size_t)(r0 * K) * es;
        bool add_b = bias && !sv; /* with a gradient, the row passes add the bias */
        sg__affine_op(dt, c, V, K, xc, K, wt, add_b ? bias->data : NULL, z, V);
        if (!sv) {
            sg__ce_rows_forward(dt, z, y + r0, c, V, o.ignore_index, eps, lse + r0, lrow + r0);
            continue;
        }
        /* z := dloss/dlogits of these rows (db += their column sums), then the products
         * that consume it (or backward's, from the kept z) */
        sg__ce_rows_forward_grad(dt, z, bias ? bias->data : NULL, sv->db, y + r0, c, V,
                                 o.ignore_index, eps, scale, lse + r0, lrow + r0);
        if (sv->dw && K > 0) /* before dX, which may be written over these rows of x */
            gemm(dt, V, K, c, (opnd){z, 1, V}, (opnd){xc, K, 1}, r0 || add_now ? 1.0 : 0.0,
                 sv->dw, K);
        if (sv->dx && K > 0)
            gemm(dt, c, K, V, (opnd){z, V, 1}, W, 0.0, (char *)sv->dx + (size_t)(r0 * K) * es, K);
    }
    if (!keep_dz)
        sg__scratch_put(g, z);
    if (sv && sv->dw && !add_now && (R == 0 || K == 0))
        memset(sv->dw, 0, (size_t)(V * K) * es);
    double total = sg__ce_total(y, R, o.ignore_index, lrow), value = total * scale;
    if (dt == SG_F32)
        *(float *)loss->data = (float)value;
    else
        *(double *)loss->data = value;
    sg_node *n = sg_record(g, op, lce_bwd, n_in, ins, 1, &loss);
    if (n)
        n->saved = sv;
    else if (sg_graph_status(g) != status0) /* recording failed (ENOMEM) */
        return NULL;
    if (stats) {
        stats->n_tokens = N;
        stats->loss_sum = total;
    }
    return loss;
}

sg_tensor *sg_linear_cross_entropy_ex(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *bias,
                                      sg_tensor *targets, const sg_cross_entropy_opts *opts,
                                      sg_cross_entropy_stats *stats)
{
    return lce_forward(g, x, w, bias, targets, opts, stats, false, "sg_linear_cross_entropy");
}

sg_tensor *sg_linear_cross_entropy_backward(sg_graph *g, sg_tensor *x, sg_tensor *w,
                                            sg_tensor *bias, sg_tensor *targets,
                                            const sg_cross_entropy_opts *opts,
                                            sg_cross_entropy_stats *stats)
{
    static const char *op = "sg_linear_cross_entropy_backward";
    sg_tensor *loss = lce_forward(g, x, w, bias, targets, opts, stats, true, op);
    if (!loss)
        return NULL;
    if (!loss->requires_grad) /* nothing records: the loss alone, as sg_backward would fail */
        return sg_graph_fail(g, SG_EINVAL, "%s: no input requires grad (or grad mode is off)",
                             op);
    return sg_backward(g, loss) == SG_OK ? loss : NULL;
}
