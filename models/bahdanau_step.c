/*
 * bahdanau_step.c - the Bahdanau decoder's GRU step as one fused node.
 *
 * The decoder input is [e_t ; c_t] and c_t depends on s_{t-1}, so the recurrence cannot
 * run over all steps at once; but the embedding half of the input projection does not
 * depend on it: the model computes gx [B, T, 3H] = e W_ih[:, :E]^T + b_ih for every step
 * with one GEMM, and this op adds the context and hidden products of one step:
 *     a = gx_t + c W_c^T                       (W_c = W_ih[:, E:], a strided view)
 *     gh = s W_hh^T + b_hh
 *     r = sig(a_r + gh_r), z = sig(a_z + gh_z), n = tanh(a_n + r gh_n)
 *     s' = (1 - z) n + z s
 * (PyTorch's GRU). One node, two GEMMs forward, four backward, hand-written gate
 * derivatives; no [e_t ; c_t] join and its split in backward, and a 2H-deep input
 * product per step instead of an (E + 2H)-deep one.
 *
 * Memory: as in luong_step.c, a step keeps r|z|n over its rows of gx (the model's own,
 * read by nothing else) and its backward writes the gates' gradient there, so gx's data
 * becomes its gradient; the step keeps gh_n [B, H] besides (n's derivative in r needs
 * it).
 */
#include "models_internal.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

#define STEP_KERNELS(T, SUF, SIGM, TANH, HOT)                                                \
    /* a (row stride lda): a_r|a_z|a_n in, r|z|n out; gh [B, 3H] the hidden product, bh  \
     * its bias; ghn := gh_n + bh_n; s2 := the new state */                                  \
    HOT static void gates_fwd_##SUF(int64_t B, int64_t H, T *restrict a, int64_t lda,       \
                                    const T *restrict gh, const T *restrict bh,              \
                                    const T *restrict s, T *restrict ghn, T *restrict s2)    \
    {                                                                                        \
        for (int64_t b = 0; b < B; b++) {                                                    \
            T *ab = a + b * lda;                                                             \
            const T *gb = gh + b * 3 * H;                                                    \
            for (int64_t k = 0; k < H; k++) {                                                \
                int64_t j = b * H + k;                                                       \
                T r = SIGM(ab[k] + gb[k] + bh[k]);                                           \
                T z = SIGM(ab[H + k] + gb[H + k] + bh[H + k]);                               \
                T hn = gb[2 * H + k] + bh[2 * H + k];                                        \
                T n = TANH(ab[2 * H + k] + r * hn);                                          \
                ab[k] = r, ab[H + k] = z, ab[2 * H + k] = n;                                 \
                ghn[j] = hn;                                                                 \
                s2[j] = n + z * (s[j] - n); /* (1 - z) n + z s */                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* From ds' (zeros when none arrived): the input gates' gradient over a, the hidden  \
     * product's into dgh [B, 3H], and ds += ds' z. */                                      \
    HOT static void gates_bwd_##SUF(int64_t B, int64_t H, T *restrict a, int64_t lda,       \
                                    const T *restrict ghn, const T *restrict s,              \
                                    const T *restrict ds2, T *restrict dgh, T *restrict ds)  \
    {                                                                                        \
        for (int64_t b = 0; b < B; b++) {                                                    \
            T *ab = a + b * lda, *gb = dgh + b * 3 * H;                                      \
            for (int64_t k = 0; k < H; k++) {                                                \
                int64_t j = b * H + k;                                                       \
                T r = ab[k], z = ab[H + k], n = ab[2 * H + k], d = ds2[j];                   \
                T dan = d * (1 - z) * (1 - n * n);                                           \
                T dar = dan * ghn[j] * r * (1 - r);                                          \
                T daz = d * (s[j] - n) * z * (1 - z);                                        \
                ab[k] = dar, ab[H + k] = daz, ab[2 * H + k] = dan;                           \
                gb[k] = dar, gb[H + k] = daz, gb[2 * H + k] = dan * r;                       \
                ds[j] += d * z;                                                              \
            }                                                                                \
        }                                                                                    \
    }

static inline double sigm_f64(double v) { return 1.0 / (1.0 + exp(-v)); }

/* f32: the vectorisable sigmoid and tanh of fastmath.h, as the fused GRU cells use */
STEP_KERNELS(float, f32, sg__sigmoidf, sg__tanhf, SG_HOT)
STEP_KERNELS(double, f64, sigm_f64, tanh, )

#if SG_HAVE_TANH8
/* gates_fwd_f32 on 8 units at a time, H a multiple of 8, for AVX2 CPUs without AVX-512
 * (as rnn_run.c's GRU row): the same operations in the same order, so the same results */
__attribute__((target("avx2,fma"))) static void
gates_fwd_avx2(int64_t B, int64_t H, float *restrict a, int64_t lda, const float *restrict gh,
               const float *restrict bh, const float *restrict s, float *restrict ghn,
               float *restrict s2)
{
#define LD(p) _mm256_loadu_ps(p)
    for (int64_t b = 0; b < B; b++) {
        float *ab = a + b * lda;
        const float *gb = gh + b * 3 * H;
        for (int64_t k = 0; k < H; k += 8) {
            int64_t j = b * H + k;
            __m256 r =
                sg__sigmoid8(_mm256_add_ps(_mm256_add_ps(LD(ab + k), LD(gb + k)), LD(bh + k)));
            __m256 z = sg__sigmoid8(
                _mm256_add_ps(_mm256_add_ps(LD(ab + H + k), LD(gb + H + k)), LD(bh + H + k)));
            __m256 hn = _mm256_add_ps(LD(gb + 2 * H + k), LD(bh + 2 * H + k));
            __m256 n = sg__tanh8(_mm256_fmadd_ps(r, hn, LD(ab + 2 * H + k)));
            _mm256_storeu_ps(ab + k, r);
            _mm256_storeu_ps(ab + H + k, z);
            _mm256_storeu_ps(ab + 2 * H + k, n);
            _mm256_storeu_ps(ghn + j, hn);
            _mm256_storeu_ps(s2 + j, _mm256_fmadd_ps(z, _mm256_sub_ps(LD(s + j), n), n));
        }
    }
#undef LD
}
#endif

static void gates_fwd_pick(int64_t B, int64_t H, float *a, int64_t lda, const float *gh,
                           const float *bh, const float *s, float *ghn, float *s2)
{
#if SG_HAVE_TANH8
    if (H % 8 == 0 && sg__avx2_rows_on()) {
        gates_fwd_avx2(B, H, a, lda, gh, bh, s, ghn, s2);
        return;
    }
#endif
    gates_fwd_f32(B, H, a, lda, gh, bh, s, ghn, s2);
}

/* in: gx [B, T, 3H] contiguous, then ctx [B, C] (when n->i[1]), s [B, H] contiguous,
 * then W_c [3H, C] (when n->i[1]), W_hh [3H, H] with any strides, b_hh [3H] (when
 * n->i[2]); out: s' and (kept) gh_n, both [B, H] */
static void step_bwd(sg_graph *g, sg_node *n)
{
    bool has_ctx = n->i[1], has_bias = n->i[2];
    int k = 0;
    sg_tensor *gx = n->in[k++], *ctx = has_ctx ? n->in[k++] : NULL, *s = n->in[k++];
    sg_tensor *Wc = has_ctx ? n->in[k++] : NULL, *Whh = n->in[k++];
    sg_tensor *bias = has_bias ? n->in[k] : NULL, *s2 = n->out[0];
    int64_t t = n->i[0]; /* the step: its rows of gx hold r|z|n */
    sg_dtype dt = gx->dtype;
    int64_t B = s->shape[0], H = s->shape[1], G = 3 * H;
    int64_t lda = gx->shape[1] * G;
    if (!s2->grad)
        return;
    const char *op = "bahdanau decoder step";
    size_t es = sg_dtype_size(dt), BH = es * (size_t)(B * H);
    void *da = (char *)gx->data + (size_t)(t * G) * es; /* activations, then gradient */
    const void *ghn = n->saved;
    void *ds = sg_grad_of(g, s);
    void *dgh = sg__scratch_get(g, 3 * BH, op);
    void *spare = ds ? NULL : sg__scratch_get(g, BH, op); /* takes ds' z when s needs none */
    if (!dgh || (!ds && !spare))
        goto out;
    if (spare)
        memset(spare, 0, BH);
    bool own = gx->requires_grad && sg__claim_gate_rows_grad(gx, t);
    if (dt == SG_F32)
        gates_bwd_f32(B, H, da, lda, ghn, s->data, s2->grad, dgh, ds ? ds : spare);
    else
        gates_bwd_f64(B, H, da, lda, ghn, s->data, s2->grad, dgh, ds ? ds : spare);
    void *d;
    if ((d = sg_grad_of(g, bias)))
        sg__add_colsum(dt, d, dgh, B, G, G);
    sg__step_gx_bwd(g, gx, t, own, da, lda);
    if (ctx)
        sg__step_product_bwd(g, da, lda, G, ctx, Wc);
    sg__step_product_bwd(g, dgh, G, G, s, Whh); /* ds += dgh W_hh: s's gradient is ds */
out:
    sg__scratch_put(g, dgh);
    sg__scratch_put(g, spare);
}

sg_tensor *sg__bahdanau_gru_step(sg_graph *g, sg_tensor *gx, int64_t t, sg_tensor *b,
                                 sg_tensor *ctx, sg_tensor *s, sg_tensor *Wc, sg_tensor *Whh)
{
    const char *op = "bahdanau decoder step";
    SG_NEED(g, gx, s, Whh);
    if (!ctx != !Wc) /* an earlier op failed (its error stands), or a caller's mistake */
        return sg_graph_status(g) != SG_OK
                   ? NULL
                   : sg_graph_fail(g, SG_EINVAL, "%s %lld: a context needs W_c and W_c a context",
                                   op, (long long)t);
    int64_t B = s->shape[0], H = s->shape[1], C = ctx ? ctx->shape[1] : 0, G = 3 * H;
    if (gx->ndim != 3 || gx->shape[0] != B || gx->shape[2] != G || t < 0 ||
        t >= gx->shape[1] || !sg_tensor_is_contiguous(gx) || s->ndim != 2 ||
        (ctx && (ctx->ndim != 2 || ctx->shape[0] != B || Wc->ndim != 2 || Wc->shape[0] != G ||
                 Wc->shape[1] != C)) ||
        Whh->ndim != 2 || Whh->shape[0] != G || Whh->shape[1] != H ||
        (b && (b->ndim != 1 || b->shape[0] != G)))
        return sg_graph_fail(g, SG_ESHAPE, "%s %lld: gx %s (contiguous), context %s, state %s, "
                                           "W_c %s, W_hh %s do not fit together",
                             op, (long long)t, SG_SHAPE(gx), ctx ? SG_SHAPE(ctx) : "none",
                             SG_SHAPE(s), Wc ? SG_SHAPE(Wc) : "none", SG_SHAPE(Whh));
    sg_dtype dt = gx->dtype;
    if ((ctx && !sg__check_same_float(g, op, gx, ctx)) || !sg__check_same_float(g, op, gx, s))
        return NULL;
    if (b && !sg_tensor_is_contiguous(b))
        b = sg_contiguous(g, b);
    if (ctx && !(ctx = sg_contiguous(g, ctx)))
        return NULL;
    s = sg_contiguous(g, s);
    SG_NEED(s);
    size_t es = sg_dtype_size(dt);
    sg_tensor *s2 = sg_empty(g, dt, 2, (int64_t[]){B, H});
    void *ghn = sg_arena_alloc(sg_graph_arena(g), (size_t)(B * H) * es + 1);
    void *gh = sg__scratch_get(g, (size_t)(B * G) * es + 1, op);
    void *zb = b ? NULL : sg__scratch_get(g, (size_t)G * es, op); /* no bias: zeros */
    if (!s2 || !ghn || !gh || (!b && !zb)) {
        sg__scratch_put(g, gh);
        sg__scratch_put(g, zb);
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    }
    if (zb)
        memset(zb, 0, (size_t)G * es);
    int64_t lda = gx->shape[1] * G; /* this step's rows of gx */
    void *act = (char *)gx->data + (size_t)(t * G) * es;
    /* W_c^T and W_hh^T copied (packed, or row-major for LIBXSMM) once per graph: all steps
     * of a training step share them; else the weights are read transposed */
    if (ctx) {
        sg__operand wct = sg__weight_t_operand(g, Wc, 1, true);
        sg__gemm_op(dt, B, G, C, ctx->data, C, wct, 0, 0, 1.0, act, lda);
    }
    sg__operand whht = sg__weight_t_operand(g, Whh, 1, true);
    sg__gemm_op(dt, B, G, H, s->data, H, whht, 0, 0, 0.0, gh, G);
    const void *bh = b ? b->data : zb;
    if (dt == SG_F32)
        gates_fwd_pick(B, H, act, lda, gh, bh, s->data, ghn, s2->data);
    else
        gates_fwd_f64(B, H, act, lda, gh, bh, s->data, ghn, s2->data);
    sg__scratch_put(g, gh);
    sg__scratch_put(g, zb);
    sg_tensor *ins[6]; /* the inputs given, in step_bwd's order */
    int n_in = 0;
    ins[n_in++] = gx;
    if (ctx)
        ins[n_in++] = ctx;
    ins[n_in++] = s;
    if (ctx)
        ins[n_in++] = Wc;
    ins[n_in++] = Whh;
    if (b)
        ins[n_in++] = b;
    sg_node *n = sg_record(g, op, step_bwd, n_in, ins, 1, &s2);
    if (n) {
        n->i[0] = t;
        n->i[1] = ctx != NULL;
        n->i[2] = b != NULL;
        n->saved = ghn;
    }
    return s2;
}
