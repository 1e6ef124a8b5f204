/*
 * mha.c - multi-head attention as torch.nn.MultiheadAttention(batch_first=True)
 * (MODELS.md 7.3) and its inference key/value cache.
 *
 * The core (sg_scaled_dot_attention) is one node: for every batch row b and head h the
 * [Lq, dk] / [Lk, dk] head blocks are strided sub-matrices of Q, K, V, so the products
 * go to BLIS without copies:
 *   S = (Q_bh K_bh^T) / sqrt(dk);  P = masked softmax_rows(S);  Pd = dropout(P)
 *   O_bh = Pd V_bh                 (written into the head's columns of O [B, Lq, d])
 * P and the rng state of the dropout masks (drawn again, a head at a time) are saved for
 * the hand-written backward.
 */
#include "attn_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    void *P;          /* [B, h, Lq, Lk] softmax probabilities */
    sg_rng *state;    /* dropout: the rng state the masks were drawn from, a head at a
                       * time in (b, h) order (drawn again where needed, not kept), or
                       * NULL; the dropped-out probabilities are made from P and a mask */
    const uint8_t *valid; /* key validity [B, Lk] or NULL */
    int64_t B, Lq, Lk, d, heads;
    double scale, drop_scale, p;
} sdpa_saved;

/* Row i may see key j: key valid and (not causal or j <= i + Lk - Lq). */
/* D = the dropped-out probabilities of one head: P where kept, times 1 / (1 - p) */
static void dropped(sg_dtype dt, int64_t n, const void *P, const uint8_t *km, double s, void *D)
{
    for (int64_t x = 0; x < n; x++) {
        if (dt == SG_F32)
            ((float *)D)[x] = km[x] ? ((const float *)P)[x] * (float)s : 0;
        else
            ((double *)D)[x] = km[x] ? ((const double *)P)[x] * s : 0;
    }
}

#define SEES(sv, b, i, j, causal)                                                            \
    ((!(sv)->valid || (sv)->valid[(b) * (sv)->Lk + (j)]) &&                                   \
     (!(causal) || (j) <= (i) + (sv)->Lk - (sv)->Lq))

#define SDPA_KERNELS(T, SUF, EXP)                                                            \
    /* in place over S [Lq, Lk]: masked softmax rows; fully masked rows -> 0 */              \
    static void softmax_rows_##SUF(const sdpa_saved *sv, int64_t b, bool causal, T *S)       \
    {                                                                                        \
        for (int64_t i = 0; i < sv->Lq; i++) {                                               \
            T *r = S + i * sv->Lk, mx = -INFINITY, sum = 0;                                  \
            for (int64_t j = 0; j < sv->Lk; j++)                                             \
                if (SEES(sv, b, i, j, causal) && r[j] > mx)                                  \
                    mx = r[j];                                                               \
            if (mx == -INFINITY) {                                                           \
                memset(r, 0, sizeof(T) * (size_t)sv->Lk);                                    \
                continue;                                                                    \
            }                                                                                \
            for (int64_t j = 0; j < sv->Lk; j++) {                                           \
                r[j] = SEES(sv, b, i, j, causal) ? EXP(r[j] - mx) : 0;                       \
                sum += r[j];                                                                 \
            }                                                                                \
            T inv = 1 / sum;                                                                 \
            for (int64_t j = 0; j < sv->Lk; j++)                                             \
                r[j] *= inv;                                                                 \
        }                                                                                    \
    }                                                                                        \
    /* dS = P (dP - rowsum(P dP)), in place over dP */                                       \
    static void softmax_rows_bwd_##SUF(int64_t Lq, int64_t Lk, const T *P, T *dP)           \
    {                                                                                        \
        for (int64_t i = 0; i < Lq; i++) {                                                   \
            const T *p = P + i * Lk;                                                         \
            T *d = dP + i * Lk, s = 0;                                                       \
            for (int64_t j = 0; j < Lk; j++)                                                 \
                s += p[j] * d[j];                                                            \
            for (int64_t j = 0; j < Lk; j++)                                                 \
                d[j] = p[j] * (d[j] - s);                                                    \
        }                                                                                    \
    }

SDPA_KERNELS(float, f32, expf)
SDPA_KERNELS(double, f64, exp)

/* The attention's backward from dO [B, Lq, d] (row stride d) into dq, dkk, dv (each may
 * be NULL; [B, L, d] gradients, added to). */
static void sdpa_bwd_core(sg_graph *g, const sdpa_saved *sv, const sg_tensor *q,
                          const sg_tensor *k, const sg_tensor *v, const void *dOp, void *dq,
                          void *dkk, void *dv)
{
    sg_dtype dt = q->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t B = sv->B, Lq = sv->Lq, Lk = sv->Lk, d = sv->d, H = sv->heads, dk = d / H;
    if (Lq == 0 || Lk == 0 || dk == 0 || (!dq && !dkk && !dv))
        return;
    const char *op = "sg_scaled_dot_attention";
    void *dP = sg__scratch_get(g, es * (size_t)(Lq * Lk), op);
    void *D = sv->state ? sg__scratch_get(g, es * (size_t)(Lq * Lk), op) : NULL;
    uint8_t *km = sv->state ? sg__scratch_get(g, (size_t)(Lq * Lk), op) : NULL;
    if (!dP || (sv->state && (!D || !km))) {
        sg__scratch_put(g, dP);
        sg__scratch_put(g, D);
        sg__scratch_put(g, km);
        return;
    }
    sg_rng rng = sv->state ? *sv->state : (sg_rng){{0}};
    const char *dO = dOp;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t bh = (b * H + h) * Lq * Lk, col = h * dk;
            const char *P = (const char *)sv->P + bh * (int64_t)es;
            const char *Pd = P;
            const char *Qb = (const char *)q->data + (b * q->stride[0] + col) * (int64_t)es;
            const char *Kb = (const char *)k->data + (b * k->stride[0] + col) * (int64_t)es;
            const char *Vb = (const char *)v->data + (b * v->stride[0] + col) * (int64_t)es;
            const char *dOb = dO + (b * Lq * d + col) * (int64_t)es;
            /* dPd = dO_bh V_bh^T  [Lq, Lk] */
            sg__gemm(dt, Lq, Lk, dk, 1.0, dOb, d, 1, Vb, 1, v->stride[1], 0.0, dP, Lk, 1);
            if (sv->state) /* this head's mask, drawn again */
                sg_rng_keep_mask(&rng, km, Lq * Lk, sv->p);
            if (dv && sv->state) {
                dropped(dt, Lq * Lk, P, km, sv->drop_scale, D);
                Pd = D;
            }
            if (dv) /* dV_bh += Pd^T dO_bh */
                sg__gemm(dt, Lk, dk, Lq, 1.0, Pd, 1, Lk, dOb, d, 1, 1.0,
                         (char *)dv + (b * Lk * d + col) * (int64_t)es, d, 1);
            if (sv->state) { /* dP = dPd keep / (1 - p) */
                for (int64_t x = 0; x < Lq * Lk; x++) {
                    if (dt == SG_F32)
                        ((float *)dP)[x] = km[x] ? ((float *)dP)[x] * (float)sv->drop_scale : 0;
                    else
                        ((double *)dP)[x] = km[x] ? ((double *)dP)[x] * sv->drop_scale : 0;
                }
            }
            if (dt == SG_F32)
                softmax_rows_bwd_f32(Lq, Lk, (const float *)P, dP);
            else
                softmax_rows_bwd_f64(Lq, Lk, (const double *)P, dP);
            if (dq) /* dQ_bh += scale dS K_bh */
                sg__gemm(dt, Lq, dk, Lk, sv->scale, dP, Lk, 1, Kb, k->stride[1], 1, 1.0,
                         (char *)dq + (b * Lq * d + col) * (int64_t)es, d, 1);
            if (dkk) /* dK_bh += scale dS^T Q_bh */
                sg__gemm(dt, Lk, dk, Lq, sv->scale, dP, 1, Lk, Qb, q->stride[1], 1, 1.0,
                         (char *)dkk + (b * Lk * d + col) * (int64_t)es, d, 1);
        }
    sg__scratch_put(g, dP);
    sg__scratch_put(g, D);
    sg__scratch_put(g, km);
}

static void sdpa_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *o = n->out[0];
    sdpa_bwd_core(g, n->saved, q, k, v, o->grad, sg_grad_of(g, q), sg_grad_of(g, k),
                  sg_grad_of(g, v));
}

/* Last dim contiguous (BLIS gets the row strides); else a contiguous copy. */
static sg_tensor *rows_ok(sg_graph *g, sg_tensor *x)
{
    return (x->stride[2] == 1 || x->shape[2] <= 1) && (x->stride[1] != 0 || x->shape[1] <= 1) &&
                   (x->stride[1] >= x->shape[2] || x->shape[1] <= 1)
               ? x
               : sg_contiguous(g, x);
}

/* Checks one attention's operands and options, makes q, k, v rows BLIS can read, and
 * sets up *svp (arena) with P [B, h, Lq, Lk] (*Pp) and the mask (when *drop). false with
 * the error recorded on g. */
static bool sdpa_setup(sg_graph *g, const char *op, sg_tensor **qp, sg_tensor **kp,
                       sg_tensor **vp, int64_t heads, double dropout, const sg_mha_opts *opts,
                       sdpa_saved **svp, sg_tensor **Pp, bool *drop)
{
    sg_tensor *q = *qp, *k = *kp, *v = *vp;
    if (!sg__check_same_float(g, op, q, k) || !sg__check_same_float(g, op, q, v))
        return false;
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || k->shape[0] != q->shape[0] ||
        v->shape[0] != q->shape[0] || k->shape[1] != v->shape[1] || k->shape[2] != q->shape[2] ||
        v->shape[2] != q->shape[2]) {
        sg_graph_fail(g, SG_ESHAPE, "%s: q %s, k %s, v %s must be [B, Lq, d], [B, Lk, d], "
                                    "[B, Lk, d]",
                      op, SG_SHAPE(q), SG_SHAPE(k), SG_SHAPE(v));
        return false;
    }
    int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1], d = q->shape[2];
    if (heads < 1 || d % heads != 0) {
        sg_graph_fail(g, SG_EINVAL, "%s: width %lld is not divisible by %lld heads", op,
                      (long long)d, (long long)heads);
        return false;
    }
    if (!(dropout >= 0 && dropout < 1)) {
        sg_graph_fail(g, SG_EINVAL, "%s: dropout %g is outside [0, 1)", op, dropout);
        return false;
    }
    *drop = opts->training && dropout > 0;
    if (*drop && !opts->rng) {
        sg_graph_fail(g, SG_EINVAL, "%s: training with dropout needs an rng", op);
        return false;
    }
    bool ok;
    const uint8_t *valid = sg__key_validity(g, op, B, Lk, opts->key_lengths, opts->key_mask, &ok);
    if (!ok)
        return false;
    *qp = q = rows_ok(g, q);
    *kp = k = rows_ok(g, k);
    *vp = v = rows_ok(g, v);
    if (!q || !k || !v)
        return false;
    int64_t dk = d / heads;
    sg_arena *ar = sg_graph_arena(g);
    sdpa_saved *sv = sg_arena_alloc(ar, sizeof *sv);
    sg_tensor *P = sg_empty(g, q->dtype, 4, (int64_t[]){B, heads, Lq, Lk});
    if (!sv || !P) {
        sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        return false;
    }
    *sv = (sdpa_saved){.P = P->data, .valid = valid, .B = B, .Lq = Lq, .Lk = Lk, .d = d,
                       .heads = heads, .scale = 1.0 / sqrt((double)dk)};
    if (*drop) {
        if (!(sv->state = sg_arena_alloc(ar, sizeof *sv->state))) {
            sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
            return false;
        }
        *sv->state = *opts->rng; /* before the forward draws */
        sv->drop_scale = 1.0 / (1.0 - dropout);
        sv->p = dropout;
    }
    *svp = sv;
    *Pp = P;
    return true;
}

/* O [B, Lq, d] (row stride d) = the attention of q, k, v; forward (fwd: the softmax of the
 * scores into P, the masks drawn from rng when sv->state) or, when !fwd, made again from
 * the saved P and the masks drawn again (a backward that did not keep O). false with
 * SG_ENOMEM recorded. */
static bool sdpa_context(sg_graph *g, const char *op, const sdpa_saved *sv, const sg_tensor *q,
                         const sg_tensor *k, const sg_tensor *v, bool fwd, bool causal,
                         sg_rng *rng, void *O)
{
    sg_dtype dt = v->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t B = sv->B, Lq = sv->Lq, Lk = sv->Lk, d = sv->d, heads = sv->heads, dk = d / heads;
    void *D = NULL;     /* one head's dropped-out probabilities */
    uint8_t *km = NULL; /* and its mask */
    if (sv->state && (!(D = sg__scratch_get(g, es * (size_t)(Lq * Lk), op)) ||
                      !(km = sg__scratch_get(g, (size_t)(Lq * Lk), op)))) {
        sg__scratch_put(g, D);
        return false;
    }
    /* forward: the caller's rng (its state is sv->state); again: a copy of sv->state */
    sg_rng again = sv->state ? *sv->state : (sg_rng){{0}};
    sg_rng *r = fwd ? rng : &again;
    memset(O, 0, es * (size_t)(B * Lq * d));
    for (int64_t b = 0; b < B && Lq > 0 && Lk > 0; b++)
        for (int64_t h = 0; h < heads; h++) {
            int64_t bh = (b * heads + h) * Lq * Lk, col = h * dk;
            char *S = (char *)sv->P + bh * (int64_t)es;
            const char *Vb = (const char *)v->data + (b * v->stride[0] + col) * (int64_t)es;
            if (fwd) {
                const char *Qb = (const char *)q->data + (b * q->stride[0] + col) * (int64_t)es;
                const char *Kb = (const char *)k->data + (b * k->stride[0] + col) * (int64_t)es;
                /* S = scale Q_bh K_bh^T  [Lq, Lk] */
                if (dk > 0)
                    sg__gemm(dt, Lq, Lk, dk, sv->scale, Qb, q->stride[1], 1, Kb, 1, k->stride[1],
                             0.0, S, Lk, 1);
                else
                    memset(S, 0, es * (size_t)(Lq * Lk));
                if (dt == SG_F32)
                    softmax_rows_f32(sv, b, causal, (float *)S);
                else
                    softmax_rows_f64(sv, b, causal, (double *)S);
            }
            const char *Pd = S;
            if (sv->state) {
                sg_rng_keep_mask(r, km, Lq * Lk, sv->p);
                dropped(dt, Lq * Lk, S, km, sv->drop_scale, D);
                Pd = D;
            }
            if (dk > 0) /* O_bh = Pd V_bh */
                sg__gemm(dt, Lq, dk, Lk, 1.0, Pd, Lk, 1, Vb, v->stride[1], 1, 0.0,
                         (char *)O + (b * Lq * d + col) * (int64_t)es, d, 1);
        }
    sg__scratch_put(g, km);
    sg__scratch_put(g, D);
    return true;
}

sg_tensor *sg_scaled_dot_attention(sg_graph *g, sg_tensor *q, sg_tensor *k, sg_tensor *v,
                                   int64_t heads, double dropout, const sg_mha_opts *opts)
{
    const char *op = "sg_scaled_dot_attention";
    SG_NEED(g, q, k, v);
    static const sg_mha_opts none;
    if (!opts)
        opts = &none;
    sdpa_saved *sv;
    sg_tensor *P;
    bool drop;
    if (!sdpa_setup(g, op, &q, &k, &v, heads, dropout, opts, &sv, &P, &drop))
        return NULL;
    sg_tensor *o = sg_empty(g, q->dtype, 3, (int64_t[]){sv->B, sv->Lq, sv->d});
    if (!o)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    if (!sdpa_context(g, op, sv, q, k, v, true, opts->causal, opts->rng, o->data))
        return NULL;
    sg_tensor *ins[3] = {q, k, v};
    sg_node *n = sg_record(g, op, sdpa_bwd, 3, ins, 1, &o);
    if (n)
        n->saved = sv;
    if (opts->weights)
        *opts->weights = P;
    return o;
}

/* ---- attention, its input projections and its output projection as one node ---------
 *
 * Why: the context O [B, Lq, d] is the output projection's input, kept for its weight
 * gradient: ~13 MB of enfr-transformer's step (9 attentions). The node keeps P (the
 * attention's backward reads it anyway), not O: backward makes O again from P, the mask
 * and V (the same products: ~1% of the layer's work). */

/* The output projection's backward of an attention node (y = O W^T + b): dW += dY^T O
 * (O made again from P, the masks and v), db += colsum dY, and dO = dY W when dO is given
 * (scratch [B Lq, d]). false with the error recorded on g. */
static bool out_proj_bwd(sg_graph *g, const char *op, const sdpa_saved *sv, const sg_tensor *q,
                         const sg_tensor *k, const sg_tensor *v, sg_tensor *y, sg_tensor *W,
                         sg_tensor *bias, void *dO)
{
    sg_dtype dt = y->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t R = sv->B * sv->Lq, d = sv->d;
    void *dW = sg_grad_of(g, W), *db = sg_grad_of(g, bias);
    if (dW) {
        void *O = sg__scratch_get(g, es * (size_t)(R * d > 0 ? R * d : 1), op);
        if (!O || !sdpa_context(g, op, sv, q, k, v, false, false, NULL, O)) {
            sg__scratch_put(g, O);
            return false;
        }
        sg__gemm(dt, d, d, R, 1.0, y->grad, 1, d, O, d, 1, 1.0, dW, d, 1);
        sg__scratch_put(g, O);
    }
    if (db)
        sg__add_colsum(dt, db, y->grad, R, d, d);
    if (dO)
        sg__gemm(dt, R, d, d, 1.0, y->grad, d, 1, W->data, W->stride[0], W->stride[1], 0.0, dO, d,
                 1);
    return true;
}

/* ---- attention whose inputs are projected inside the node ---------------------------
 *
 * Why: the projected Q, K, V ([B, L, 3d] for self-attention, [B, S, 2d] of the encoder
 * memory for a decoder's cross-attention) were kept for backward: 37 MB of
 * enfr-transformer's step (9 attentions). This node keeps what it projects from (the layer
 * input or the memory, kept anyway) and makes the projections again in backward with the
 * same product (one more [rows, d] x [d, n d] a layer: ~10% more products for the
 * transformer). A cross-attention's Q is its own sg_linear (it is [B, Lq, d] only). */

/* The projections [R, n d] = src W_p^T + b_p into buf for the n parts p = p0 .. p0+n-1 of
 * in_proj (0 Q, 1 K, 2 V: rows [p d, (p + 1) d) of W [3d, d] and b); hdr[i]: a [B, L, d]
 * header over part p0 + i */
static void project_parts(const sg_tensor *W, const sg_tensor *b, const sg_tensor *src,
                          int p0, int n, void *buf, sg_tensor *hdr)
{
    sg_dtype dt = src->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t B = src->shape[0], L = src->shape[1], d = W->shape[1], R = B * L, w = n * d;
    sg__affine(dt, R, w, d, src->data, d,
               (const char *)W->data + (size_t)(p0 * d * W->stride[0]) * es, W->stride[0],
               W->stride[1], (const char *)b->data + (size_t)(p0 * d) * es, buf, w);
    for (int i = 0; i < n; i++)
        hdr[i] = (sg_tensor){.dtype = dt, .ndim = 3, .shape = {B, L, d},
                             .stride = {L * w, w, 1}, .data = (char *)buf + (size_t)(i * d) * es};
}

/* inputs: self-attention {x, W_in, b_in, W_o, b_o}; cross {q, mem, W_in, b_in, W_o, b_o} */
static void proj_out_bwd(sg_graph *g, sg_node *n)
{
    const char *op = "sg_mha_forward backward";
    bool self = n->n_in == 5;
    sg_tensor *q = self ? NULL : n->in[0], *src = n->in[self ? 0 : 1];
    sg_tensor *Win = n->in[self ? 1 : 2], *bin = n->in[self ? 2 : 3];
    sg_tensor *W = n->in[self ? 3 : 4], *bias = n->in[self ? 4 : 5], *y = n->out[0];
    const sdpa_saved *sv = n->saved;
    sg_dtype dt = y->dtype;
    size_t es = sg_dtype_size(dt);
    int p0 = self ? 0 : 1, np = self ? 3 : 2;
    int64_t R = sv->B * sv->Lq, Rs = src->shape[0] * src->shape[1], d = sv->d;
    void *dq = q ? sg_grad_of(g, q) : NULL;
    void *dWin = sg_grad_of(g, Win), *dbin = sg_grad_of(g, bin), *dsrc = sg_grad_of(g, src);
    bool need_dp = dWin || dbin || dsrc, need_dO = dq || need_dp;
    sg_tensor hdr[3];
    size_t n_proj = (size_t)(Rs * np * d > 0 ? Rs * np * d : 1);
    void *proj = sg__scratch_get(g, es * n_proj, op);
    void *dO = need_dO ? sg__scratch_get(g, es * (size_t)(R * d > 0 ? R * d : 1), op) : NULL;
    void *dp = NULL;
    if (!proj || (need_dO && !dO))
        goto done;
    project_parts(Win, bin, src, p0, np, proj, hdr);
    const sg_tensor *qt = self ? &hdr[0] : q, *kt = &hdr[self ? 1 : 0], *vt = &hdr[self ? 2 : 1];
    if (!out_proj_bwd(g, op, sv, qt, kt, vt, y, W, bias, dO) || !need_dO)
        goto done;
    if (need_dp && !(dp = sg__scratch_get(g, es * n_proj, op))) /* after O's scratch is back */
        goto done;
    /* the parts' gradients [np][Rs, d], zeroed: the attention's backward adds to them */
    char *dpart[3] = {NULL, NULL, NULL};
    if (dp) {
        memset(dp, 0, es * (size_t)(Rs * np * d));
        for (int i = 0; i < np; i++)
            dpart[i] = (char *)dp + (size_t)(i * Rs * d) * es;
    }
    sdpa_bwd_core(g, sv, qt, kt, vt, dO, self ? dpart[0] : dq, dpart[self ? 1 : 0],
                  dpart[self ? 2 : 1]);
    for (int i = 0; i < np && dp; i++) { /* part p = p0 + i: rows [p d, (p + 1) d) */
        size_t row0 = (size_t)((p0 + i) * d);
        if (dWin) /* dW_p += dP^T src */
            sg__gemm(dt, d, d, Rs, 1.0, dpart[i], 1, d, src->data, d, 1, 1.0,
                     (char *)dWin + row0 * (size_t)d * es, d, 1);
        if (dbin)
            sg__add_colsum(dt, (char *)dbin + row0 * es, dpart[i], Rs, d, d);
        if (dsrc) /* dsrc += dP W_p */
            sg__gemm(dt, Rs, d, d, 1.0, dpart[i], d, 1,
                     (const char *)Win->data + row0 * (size_t)Win->stride[0] * es,
                     Win->stride[0], Win->stride[1], 1.0, dsrc, d, 1);
    }
done:
    sg__scratch_put(g, dp);
    sg__scratch_put(g, dO);
    sg__scratch_put(g, proj);
}

/* out_proj(attention(...)) as one node that keeps src (contiguous [B, L, d]) and not the
 * projections: self-attention when q is NULL (Q, K, V from src), else a cross-attention of
 * q over K, V projected from src; NULL with the error recorded on g. */
static sg_tensor *proj_attention_out(sg_graph *g, const sg_mha *m, sg_tensor *q, sg_tensor *src,
                                     const sg_mha_opts *opts)
{
    const char *op = "sg_mha_forward";
    bool self = !q;
    sg_dtype dt = src->dtype;
    size_t es = sg_dtype_size(dt);
    int p0 = self ? 0 : 1, np = self ? 3 : 2;
    int64_t d = m->d, Rs = src->shape[0] * src->shape[1];
    void *proj = sg__scratch_get(g, es * (size_t)(Rs * np * d > 0 ? Rs * np * d : 1), op);
    if (!proj)
        return NULL;
    sg_tensor hdr[3];
    project_parts(m->in_proj_weight, m->in_proj_bias, src, p0, np, proj, hdr);
    sg_tensor *qt = self ? &hdr[0] : q, *kt = &hdr[self ? 1 : 0], *vt = &hdr[self ? 2 : 1];
    sg_tensor *q0 = qt, *k0 = kt, *v0 = vt;
    sdpa_saved *sv;
    sg_tensor *P;
    bool drop;
    if (!sdpa_setup(g, op, &qt, &kt, &vt, m->heads, m->dropout, opts, &sv, &P, &drop) ||
        qt != q0 || kt != k0 || vt != v0) { /* the headers are read as they are */
        sg__scratch_put(g, proj);
        return sg_graph_status(g) ? NULL : sg_graph_fail(g, SG_EINVAL, "%s: bad operands", op);
    }
    sg_tensor *W = m->out_proj.weight, *bias = m->out_proj.bias;
    int64_t R = sv->B * sv->Lq;
    sg_tensor *y = sg_empty(g, dt, 3, (int64_t[]){sv->B, sv->Lq, d});
    void *O = sg__scratch_get(g, es * (size_t)(R * d > 0 ? R * d : 1), op);
    if (!y || !O || !sdpa_context(g, op, sv, qt, kt, vt, true, opts->causal, opts->rng, O)) {
        sg__scratch_put(g, O);
        sg__scratch_put(g, proj);
        return sg_graph_status(g) ? NULL : sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    }
    sg__affine(dt, R, d, d, O, d, W->data, W->stride[0], W->stride[1], bias->data, y->data, d);
    sg__scratch_put(g, O);
    sg__scratch_put(g, proj);
    sg_tensor *ins[6] = {q, src, m->in_proj_weight, m->in_proj_bias, W, bias};
    sg_node *n = self ? sg_record(g, "sg_mha_attention_out", proj_out_bwd, 5, ins + 1, 1, &y)
                      : sg_record(g, "sg_mha_attention_out", proj_out_bwd, 6, ins, 1, &y);
    if (n)
        n->saved = sv;
    if (opts->weights)
        *opts->weights = P;
    return y;
}

/* ---- module -------------------------------------------------------------------------- */

int sg_mha_init(sg_mha *m, sg_params *p, const char *prefix, int64_t d, int64_t heads,
                double dropout, sg_rng *rng)
{
    const char *op = "sg_mha_init";
    if (!m || !p)
        return sg__error(SG_EINVAL, "%s: module or store is NULL", op);
    if (d < 1 || heads < 1 || d % heads != 0)
        return sg__error(SG_EINVAL, "%s: '%s' embed dim %lld is not divisible by %lld heads "
                                    "(both must be >= 1)",
                         op, prefix ? prefix : "", (long long)d, (long long)heads);
    if (!(dropout >= 0 && dropout < 1))
        return sg__error(SG_EINVAL, "%s: dropout %g is outside [0, 1)", op, dropout);
    memset(m, 0, sizeof *m);
    char name[SG_PARAM_NAME_MAX];
    int rc;
    if ((rc = sg_param_name(name, prefix, "in_proj_weight")) != SG_OK)
        return rc;
    if (!(m->in_proj_weight = sg_params_add(p, name, 2, (int64_t[]){3 * d, d})))
        return SG_EINVAL;
    if ((rc = sg_param_name(name, prefix, "in_proj_bias")) != SG_OK)
        return rc;
    if (!(m->in_proj_bias = sg_params_add(p, name, 1, (int64_t[]){3 * d})))
        return SG_EINVAL;
    if ((rc = sg_param_name(name, prefix, "out_proj")) != SG_OK ||
        (rc = sg_linear_layer_init(&m->out_proj, p, name, d, d, true, rng)) != SG_OK)
        return rc;
    if (rng) { /* PyTorch: xavier_uniform_(in_proj_weight), zero biases */
        double b = sqrt(6.0 / (double)(3 * d + d));
        sg_tensor_uniform_(m->in_proj_weight, rng, -b, b);
        sg_tensor_fill_(m->out_proj.bias, 0.0);
    }
    m->d = d;
    m->heads = heads;
    m->dropout = dropout;
    return SG_OK;
}

static bool check_input(sg_graph *g, const char *op, const sg_mha *m, const sg_tensor *x,
                        const char *what)
{
    if (!sg__check_same_float(g, op, x, m->in_proj_weight))
        return false;
    if (x->ndim != 3 || x->shape[2] != m->d) {
        sg_graph_fail(g, SG_ESHAPE, "%s: %s %s must be [B, L, %lld]", op, what, SG_SHAPE(x),
                      (long long)m->d);
        return false;
    }
    return true;
}

/* x [B, L, d] projected by rows [r0, r0 + n d) of in_proj: [B, L, n d] */
static sg_tensor *project(sg_graph *g, const sg_mha *m, sg_tensor *x, int64_t r0, int64_t n)
{
    int64_t d = m->d;
    if (r0 == 0 && n == 3)
        return sg_linear(g, x, m->in_proj_weight, m->in_proj_bias);
    return sg_linear(g, x, sg_narrow(g, m->in_proj_weight, 0, r0 * d, n * d),
                     sg_narrow(g, m->in_proj_bias, 0, r0 * d, n * d));
}

sg_tensor *sg_mha_forward(sg_graph *g, const sg_mha *m, sg_tensor *query, sg_tensor *key_value,
                          const sg_mha_opts *opts)
{
    const char *op = "sg_mha_forward";
    SG_NEED(g, query, key_value);
    if (!m || !m->in_proj_weight)
        return sg_graph_fail(g, SG_EINVAL, "%s: module is not initialised", op);
    if (!check_input(g, op, m, query, "query") || !check_input(g, op, m, key_value, "key_value"))
        return NULL;
    if (query->shape[0] != key_value->shape[0])
        return sg_graph_fail(g, SG_ESHAPE, "%s: query %s and key_value %s differ in batch", op,
                             SG_SHAPE(query), SG_SHAPE(key_value));
    int64_t d = m->d;
    sg_tensor *q, *k, *v;
    static const sg_mha_opts none;
    const sg_mha_opts *o = opts ? opts : &none;
    /* training: the projections are made inside the attention node (and again in
     * backward), from an input the graph keeps anyway */
    sg_tensor *pin[5] = {query, m->in_proj_weight, m->in_proj_bias, m->out_proj.weight,
                         m->out_proj.bias};
    if (query == key_value && pin[2] && pin[4] && sg__will_record(g, 5, pin)) {
        query = sg_tensor_is_contiguous(query) ? query : sg_contiguous(g, query);
        return query ? proj_attention_out(g, m, NULL, query, o) : NULL;
    }
    if (query == key_value) { /* self-attention: one GEMM for Q, K, V */
        sg_tensor *qkv = project(g, m, query, 0, 3);
        q = sg_narrow(g, qkv, 2, 0, d);
        k = sg_narrow(g, qkv, 2, d, d);
        v = sg_narrow(g, qkv, 2, 2 * d, d);
    } else {
        q = project(g, m, query, 0, 1);
        sg_tensor *cin[6] = {q, key_value, m->in_proj_weight, m->in_proj_bias,
                             m->out_proj.weight, m->out_proj.bias};
        if (q && cin[3] && cin[5] && sg__will_record(g, 6, cin)) {
            sg_tensor *kv = sg_tensor_is_contiguous(key_value) ? key_value
                                                               : sg_contiguous(g, key_value);
            return kv ? proj_attention_out(g, m, q, kv, o) : NULL;
        }
        sg_tensor *kv = project(g, m, key_value, 1, 2);
        k = sg_narrow(g, kv, 2, 0, d);
        v = sg_narrow(g, kv, 2, d, d);
    }
    sg_tensor *ctx = sg_scaled_dot_attention(g, q, k, v, m->heads, m->dropout, opts);
    return sg_linear(g, ctx, m->out_proj.weight, m->out_proj.bias);
}

/* ---- key/value cache --------------------------------------------------------------------- */

int sg_mha_cache_init(sg_mha_cache *c, sg_dtype dt, int64_t B, int64_t cap, int64_t d)
{
    if (!c)
        return sg__error(SG_EINVAL, "sg_mha_cache_init: cache is NULL");
    memset(c, 0, sizeof *c);
    if (!sg_dtype_is_float(dt) || B < 1 || cap < 1 || d < 1)
        return sg__error(SG_EINVAL, "sg_mha_cache_init: bad dtype %s or sizes B %lld, cap %lld, "
                                    "d %lld",
                         sg_dtype_name(dt), (long long)B, (long long)cap, (long long)d);
    int64_t shape[3] = {B, cap, d};
    c->k = sg_tensor_new(dt, 3, shape);
    c->v = sg_tensor_new(dt, 3, shape);
    if (!c->k || !c->v) {
        sg_mha_cache_free(c);
        return SG_ENOMEM;
    }
    c->B = B;
    c->cap = cap;
    c->d = d;
    return SG_OK;
}

void sg_mha_cache_free(sg_mha_cache *c)
{
    if (!c)
        return;
    sg_tensor_free(c->k);
    sg_tensor_free(c->v);
    memset(c, 0, sizeof *c);
}

int sg_mha_cache_append(sg_graph *g, const sg_mha *m, sg_mha_cache *c, sg_tensor *x)
{
    const char *op = "sg_mha_cache_append";
    if (!g)
        return sg__error(SG_EINVAL, "%s: graph is NULL", op);
    if (!m || !c || !c->k || !x) {
        if (!x && sg_graph_status(g) != SG_OK)
            return sg_graph_status(g);
        sg_graph_fail(g, SG_EINVAL, "%s: module, cache or input is NULL", op);
        return SG_EINVAL;
    }
    if (!check_input(g, op, m, x, "input"))
        return sg_graph_status(g);
    if (c->d != m->d || c->k->dtype != x->dtype || x->shape[0] != c->B) {
        sg_graph_fail(g, SG_ESHAPE, "%s: input %s does not fit the cache [%lld, %lld, %lld] %s",
                      op, SG_SHAPE(x), (long long)c->B, (long long)c->cap, (long long)c->d,
                      sg_dtype_name(c->k->dtype));
        return SG_ESHAPE;
    }
    int64_t n = x->shape[1], d = m->d;
    if (c->len + n > c->cap) {
        sg_graph_fail(g, SG_ERANGE, "%s: %lld + %lld positions exceed the capacity %lld", op,
                      (long long)c->len, (long long)n, (long long)c->cap);
        return SG_ERANGE;
    }
    bool was = sg_graph_set_grad_enabled(g, false); /* inference only */
    sg_tensor *kv = project(g, m, x, 1, 2);         /* [B, n, 2d] */
    sg_graph_set_grad_enabled(g, was);
    if (!kv)
        return sg_graph_status(g);
    size_t es = sg_dtype_size(x->dtype), row = es * (size_t)d;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t i = 0; i < n; i++) {
            const char *src = (const char *)kv->data + ((b * n + i) * 2 * d) * (int64_t)es;
            int64_t dst = ((b * c->cap) + c->len + i) * d * (int64_t)es;
            memcpy((char *)c->k->data + dst, src, row);
            memcpy((char *)c->v->data + dst, src + row, row);
        }
    c->len += n;
    return SG_OK;
}

int sg_mha_cache_fill(sg_graph *g, const sg_mha *m, sg_mha_cache *c, sg_tensor *x)
{
    if (c)
        c->len = 0;
    return sg_mha_cache_append(g, m, c, x);
}

sg_tensor *sg_mha_forward_cached(sg_graph *g, const sg_mha *m, const sg_mha_cache *c,
                                 sg_tensor *query, const sg_mha_opts *opts)
{
    const char *op = "sg_mha_forward_cached";
    SG_NEED(g, query);
    if (!m || !c || !c->k)
        return sg_graph_fail(g, SG_EINVAL, "%s: module or cache is NULL", op);
    if (!check_input(g, op, m, query, "query"))
        return NULL;
    if (c->len < 1 || query->shape[0] != c->B || c->d != m->d)
        return sg_graph_fail(g, SG_ESHAPE, "%s: query %s does not fit the cache (B %lld, %lld "
                                           "positions, d %lld)",
                             op, SG_SHAPE(query), (long long)c->B, (long long)c->len,
                             (long long)c->d);
    sg_tensor *k = sg_narrow(g, c->k, 1, 0, c->len), *v = sg_narrow(g, c->v, 1, 0, c->len);
    sg_tensor *q = project(g, m, query, 0, 1);
    sg_tensor *o = sg_scaled_dot_attention(g, q, k, v, m->heads, m->dropout, opts);
    return sg_linear(g, o, m->out_proj.weight, m->out_proj.bias);
}
