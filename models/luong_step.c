/*
 * luong_step.c - layer 0 of the input-feeding Luong decoder as one fused LSTM step.
 *
 * With input feeding the decoder input is [e_t ; htilde_{t-1}], so the recurrence
 * cannot run over all steps at once. The embedding half of the input projection does
 * not depend on the recurrence: the model computes it for every step with one GEMM
 * (gx [B, T, 4H] = e W_ih[:, :E]^T + b_ih) and this op adds b_hh and the feed and
 * hidden products of one step (b_hh here rather than in gx: no second [B, T, 4H]):
 *     a = gx_t + b_hh + feed W_f^T + h W_hh^T      (W_f = W_ih[:, E:], a strided view)
 *     i, f, g, o = sig(a_i), sig(a_f), tanh(a_g), sig(a_o)
 *     c' = f c + i g,  h' = o tanh(c')
 * One node, two GEMMs forward, four backward, hand-written gate derivatives.
 *
 * Memory: gx is the model's own, read by nothing but these steps, and sg_linear's
 * backward does not read its output. So a step keeps its gate activations over its rows
 * of gx, and its backward writes the gates' gradient over them again: those rows are
 * gx's gradient, and gx's data becomes its gradient buffer (no [B, T, 4H] gradient and
 * no per-step copy of it; enfr-luong: 8 MB of the training peak).
 */
#include "luong_internal.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

#define STEP_KERNELS(T, SUF, EXP, TANH, HOT)                                                 \
    HOT static void gates_fwd_##SUF(int64_t B, int64_t H, T *restrict a, int64_t lda,       \
                                    const T *restrict c, T *restrict c2, T *restrict h2)     \
    {                                                                                        \
        for (int64_t b = 0; b < B; b++) {                                                    \
            T *ab = a + b * lda;                                                             \
            for (int64_t k = 0; k < H; k++) {                                                \
                T i = (T)1 / ((T)1 + EXP(-ab[k]));                                           \
                T f = (T)1 / ((T)1 + EXP(-ab[H + k]));                                       \
                T g = TANH(ab[2 * H + k]);                                                   \
                T o = (T)1 / ((T)1 + EXP(-ab[3 * H + k]));                                   \
                ab[k] = i, ab[H + k] = f, ab[2 * H + k] = g, ab[3 * H + k] = o;              \
                T cn = f * c[b * H + k] + i * g;                                             \
                T t = TANH(cn);                                                              \
                c2[b * H + k] = cn, h2[b * H + k] = o * t;                                   \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* The gates' gradient [B, 4H] (row stride lda) over their activations a, from dh',  \
     * dc'; dc += dc' f. All given (zeros for a missing gradient): a NULL test in the     \
     * loop keeps it from vectorising. */                                                  \
    HOT static void gates_bwd_##SUF(int64_t B, int64_t H, T *restrict a, int64_t lda,       \
                                    const T *restrict c2, const T *restrict c,               \
                                    const T *restrict dh2, const T *restrict dc2,            \
                                    T *restrict dc)                                          \
    {                                                                                        \
        for (int64_t b = 0; b < B; b++) {                                                    \
            T *ab = a + b * lda;                                                             \
            for (int64_t k = 0; k < H; k++) {                                                \
                int64_t j = b * H + k;                                                       \
                T i = ab[k], f = ab[H + k], g = ab[2 * H + k], o = ab[3 * H + k];            \
                T t = TANH(c2[j]); /* tanh(c') again: bitwise the forward's, not kept */     \
                T dh = dh2[j];                                                               \
                T dct = dc2[j] + dh * o * ((T)1 - t * t);                                    \
                ab[k] = dct * g * i * ((T)1 - i);                                            \
                ab[H + k] = dct * c[j] * f * ((T)1 - f);                                     \
                ab[2 * H + k] = dct * i * ((T)1 - g * g);                                    \
                ab[3 * H + k] = dh * t * o * ((T)1 - o);                                     \
                dc[j] += dct * f;                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* z = x + y over n elements */                                                         \
    HOT static void add_vec_##SUF(int64_t n, const T *x, const T *y, T *z)                  \
    {                                                                                        \
        for (int64_t k = 0; k < n; k++)                                                      \
            z[k] = x[k] + y[k];                                                              \
    }

/* f32: the vectorisable exp and tanh of fastmath.h, as the fused LSTM cells use */
STEP_KERNELS(float, f32, sg__expf, sg__tanhf, SG_HOT)
STEP_KERNELS(double, f64, exp, tanh, )

/* in: gx [B, T, 4H] contiguous, feed [B, F], h, c [B, H] contiguous, W_f [4H, F] and
 * W_hh [4H, H] with any strides, the bias [4H] or NULL (contiguous). */
static void step_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *gx = n->in[0], *feed = n->in[1], *h = n->in[2], *c = n->in[3];
    sg_tensor *Wf = n->in[4], *Whh = n->in[5], *bias = n->n_in > 6 ? n->in[6] : NULL;
    sg_tensor *h2 = n->out[0], *c2 = n->out[1];
    int64_t t = n->i[0]; /* the step: its rows of gx hold the activated gates i|f|g|o */
    sg_dtype dt = gx->dtype;
    int64_t B = h->shape[0], H = h->shape[1], G = 4 * H;
    int64_t lda = gx->shape[1] * G;
    if (!h2->grad && !c2->grad)
        return;
    const char *op = "luong decoder step";
    size_t es = sg_dtype_size(dt), BH = es * (size_t)(B * H);
    void *da = (char *)gx->data + (size_t)(t * G) * es; /* activations, then gradient */
    void *dc = sg_grad_of(g, c);
    /* zeros stand for a gradient that did not arrive; spare takes dc' f when c needs none */
    void *zeros = !h2->grad || !c2->grad ? sg__scratch_get(g, BH, op) : NULL;
    void *spare = dc ? NULL : sg__scratch_get(g, BH, op);
    if ((!zeros && (!h2->grad || !c2->grad)) || (!dc && !spare))
        goto out;
    if (zeros)
        memset(zeros, 0, BH);
    if (spare)
        memset(spare, 0, BH);
    bool own = gx->requires_grad && sg__claim_gate_rows_grad(gx, t);
    const void *dh2 = h2->grad ? h2->grad : zeros, *dc2 = c2->grad ? c2->grad : zeros;
    if (dt == SG_F32)
        gates_bwd_f32(B, H, da, lda, c2->data, c->data, dh2, dc2, dc ? dc : spare);
    else
        gates_bwd_f64(B, H, da, lda, c2->data, c->data, dh2, dc2, dc ? dc : spare);
    void *d;
    if ((d = sg_grad_of(g, bias)))
        sg__add_colsum(dt, d, da, B, G, lda);
    sg__step_gx_bwd(g, gx, t, own, da, lda);
    sg__step_product_bwd(g, da, lda, G, feed, Wf);
    sg__step_product_bwd(g, da, lda, G, h, Whh);
out:
    sg__scratch_put(g, zeros);
    sg__scratch_put(g, spare);
}

sg_tensor *sg__luong_lstm_step(sg_graph *g, sg_tensor *gx, int64_t t, sg_tensor *b,
                               sg_tensor *feed, sg_tensor *h, sg_tensor *c, sg_tensor *Wf,
                               sg_tensor *Whh, sg_tensor **c_out)
{
    const char *op = "luong decoder step";
    SG_NEED(g, gx, feed, h, c, Wf, Whh, c_out);
    int64_t B = h->shape[0], H = h->shape[1], F = feed->shape[1], G = 4 * H;
    if (gx->ndim != 3 || gx->shape[0] != B || gx->shape[2] != G || t < 0 ||
        t >= gx->shape[1] || !sg_tensor_is_contiguous(gx) || feed->shape[0] != B ||
        !sg_tensor_same_shape(h, c) || Wf->shape[0] != G || Wf->shape[1] != F ||
        Whh->shape[0] != G || Whh->shape[1] != H || (b && (b->ndim != 1 || b->shape[0] != G)))
        return sg_graph_fail(g, SG_ESHAPE, "%s %lld: gx %s (contiguous), feed %s, h %s, c %s, "
                                           "W_f %s, W_hh %s do not fit together",
                             op, (long long)t, SG_SHAPE(gx), SG_SHAPE(feed), SG_SHAPE(h),
                             SG_SHAPE(c), SG_SHAPE(Wf), SG_SHAPE(Whh));
    if (b && !sg_tensor_is_contiguous(b))
        b = sg_contiguous(g, b);
    feed = sg_contiguous(g, feed);
    h = sg_contiguous(g, h);
    c = sg_contiguous(g, c);
    SG_NEED(feed, h, c);
    sg_dtype dt = gx->dtype;
    size_t es = sg_dtype_size(dt);
    sg_tensor *h2 = sg_empty(g, dt, 2, (int64_t[]){B, H});
    sg_tensor *c2 = sg_empty(g, dt, 2, (int64_t[]){B, H});
    if (!h2 || !c2)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    int64_t lda = gx->shape[1] * G; /* this step's rows of gx */
    void *act = (char *)gx->data + (size_t)(t * G) * es;
    for (int64_t r = 0; r < B && b; r++) { /* a = gx_t + b */
        void *ar = (char *)act + (size_t)(r * lda) * es;
        if (dt == SG_F32)
            add_vec_f32(G, ar, b->data, ar);
        else
            add_vec_f64(G, ar, b->data, ar);
    }
    /* W_f^T and W_hh^T copied (packed, or row-major for LIBXSMM) once per graph: all steps
     * of a training step share them; else the weights are read transposed */
    sg__operand wft = sg__weight_t_operand(g, Wf, 1, true);
    sg__operand whht = sg__weight_t_operand(g, Whh, 1, true);
    sg__gemm_op(dt, B, G, F, feed->data, F, wft, 0, 0, 1.0, act, lda);
    sg__gemm_op(dt, B, G, H, h->data, H, whht, 0, 0, 1.0, act, lda);
    if (dt == SG_F32)
        gates_fwd_f32(B, H, act, lda, c->data, c2->data, h2->data);
    else
        gates_fwd_f64(B, H, act, lda, c->data, c2->data, h2->data);
    sg_tensor *ins[7] = {gx, feed, h, c, Wf, Whh, b}, *outs[2] = {h2, c2};
    sg_node *n = sg_record(g, op, step_bwd, b ? 7 : 6, ins, 2, outs);
    if (n)
        n->i[0] = t;
    *c_out = c2;
    return h2;
}
