/*
 * rnn_run.c - one GRU/LSTM layer in one direction over a padded batch as a single
 * autograd node: the input projections of all steps in one GEMM, the recurrence as
 * one GEMM per step on the rows still running (rows are visited longest first, so
 * they form a prefix), fused gate loops, and a BPTT backward (rnn_kernels.inc).
 */
/* Lets GCC if-convert the clamps in the gate loops so they vectorise; no code here
 * relies on floating-point exception flags. */
#pragma GCC optimize("no-trapping-math")

#include "rnn_internal.h"
#include "../tensor/fastmath.h"

#include <math.h>
#include <string.h>

/* What the backward needs; arena-owned. */
typedef struct rnn_saved {
    sg_rnn_cell cell;
    bool cho, reverse;
    /* x is the input projection W_ih e + b_ih of each word [V, G*H], ids [B*T] (graph
     * memory) the words at the positions, pad_id a padding index (no gradient), or ids
     * NULL */
    const int64_t *ids;
    int64_t pad_id;
    bool h0_zero;   /* no initial state given: h before step 0 is 0 */
    /* words and no backward (decoding): the gates are one step's rows, [B, S], which the
     * fused rows write (they read the word rows in place; a whole [B*T, S] block, written
     * and read back once, cost dates' greedy decoding more than its gate loops' reads) */
    bool step_gates;
    int64_t B, T, I, H, G, S, N;
    int64_t *perm;  /* [B] batch rows by decreasing length (stable) */
    int64_t *plen;  /* [B] plen[k] = length of row perm[k] */
    int64_t *off;   /* [T+1] first packed row of step s */
    int64_t *cnt;   /* [T+1] rows running at step s (cnt[T] = 0) */
    void *gates;    /* [B*T, S] */
    /* The state before each step, packed (cp: LSTM): hp0/cp0 [B, H] before step 0 (the
     * caller's h0/c0 themselves when rows keep their order, else a copy or zeros), hp/cp
     * [N - B, H] before steps 1.. (contiguous after hp0/cp0 when those are not h0/c0).
     * Only the Cho GRU keeps hp: the others' backward reads h_prev from y
     * (rnn_kernels.inc). */
    void *hp0, *cp0, *hp, *cp;
    bool h0_alias;  /* hp0 is h0's data: hp does not follow it */
    void *rh;       /* [N, H] Cho GRU: r * h_prev */
} rnn_saved;

/* The gate loops use the vectorisable float exp/tanh/sigmoid of fastmath.h (libm
 * calls would keep them from vectorising). */
static inline float sigm_f32(float v) { return sg__sigmoidf(v); }
static inline float tanh_f32(float v) { return sg__tanhf(v); }
static inline double sigm_f64(double v) { return 1.0 / (1.0 + exp(-v)); }

/* the fused loops get an AVX2+FMA clone chosen at load time */
#define KERNEL SG_HOT

/* The row loops of a step run on the library's threads when a step is big enough
 * to pay for waking them (rows * H elements). */
#define PAR_MIN 8192

/* the f32 GRU row: gru_fwd_row_f32 or its AVX2 form (after the kernels) */
static void gru_fwd_row_pick(int64_t H, float *g, const float *gi, const float *restrict bi,
                             const float *restrict gh, const float *restrict bh,
                             const float *restrict hp, float *restrict hn, float *restrict y);

#define R float
#define FN(x) x##_f32
#define GRU_FWD_ROW gru_fwd_row_pick
#define RDT SG_F32
#define SIGM(v) sigm_f32(v)
#define TANH(v) tanh_f32(v)
#include "rnn_kernels.inc"
#undef R
#undef FN
#undef RDT
#undef SIGM
#undef TANH
#undef GRU_FWD_ROW

#if SG_HAVE_TANH8
/* gru_fwd_row_f32 on 8 units at a time, H a multiple of 8: the same operations in the
 * same order (fastmath.h's 8-lane sigmoid and tanh), so the same results */
__attribute__((target("avx2,fma"))) static void
gru_fwd_row_avx2(int64_t H, float *g, const float *gi, const float *restrict bi,
                 const float *restrict gh, const float *restrict bh, const float *restrict hp,
                 float *restrict hn, float *restrict y)
{
#define LD(p) _mm256_loadu_ps(p)
    for (int64_t j = 0; j < H; j += 8) {
        __m256 r = sg__sigmoid8(_mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(LD(gi + j), LD(bi + j)), LD(gh + j)), LD(bh + j)));
        __m256 z = sg__sigmoid8(_mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(LD(gi + H + j), LD(bi + H + j)), LD(gh + H + j)),
            LD(bh + H + j)));
        __m256 ghn = _mm256_add_ps(LD(gh + 2 * H + j), LD(bh + 2 * H + j));
        __m256 n = sg__tanh8(
            _mm256_fmadd_ps(r, ghn, _mm256_add_ps(LD(gi + 2 * H + j), LD(bi + 2 * H + j))));
        __m256 h = _mm256_fmadd_ps(z, _mm256_sub_ps(LD(hp + j), n), n);
        _mm256_storeu_ps(g + j, r);
        _mm256_storeu_ps(g + H + j, z);
        _mm256_storeu_ps(g + 2 * H + j, n);
        _mm256_storeu_ps(g + 3 * H + j, ghn);
        _mm256_storeu_ps(hn + j, h);
        _mm256_storeu_ps(y + j, h);
    }
#undef LD
}
#endif

static void gru_fwd_row_pick(int64_t H, float *g, const float *gi, const float *restrict bi,
                             const float *restrict gh, const float *restrict bh,
                             const float *restrict hp, float *restrict hn, float *restrict y)
{
#if SG_HAVE_TANH8
    if (H % 8 == 0 && sg__avx2_rows_on()) {
        gru_fwd_row_avx2(H, g, gi, bi, gh, bh, hp, hn, y);
        return;
    }
#endif
    gru_fwd_row_f32(H, g, gi, bi, gh, bh, hp, hn, y);
}

#define R double
#define GRU_FWD_ROW gru_fwd_row_f64
#define FN(x) x##_f64
#define RDT SG_F64
#define SIGM(v) sigm_f64(v)
#define TANH(v) tanh(v)
#include "rnn_kernels.inc"
#undef R
#undef FN
#undef RDT
#undef SIGM
#undef TANH
#undef GRU_FWD_ROW

enum { IN_X, IN_WIH, IN_WHH, IN_BIH, IN_BHH, IN_H0, IN_C0, IN_COUNT };

static void *data_or_null(const sg_tensor *t) { return t ? t->data : NULL; }

static void rnn_bwd(sg_graph *g, sg_node *n)
{
    rnn_saved *sv = n->saved;
    sg_tensor **in = n->in;
    sg_tensor *y = n->out[0], *hN = n->out[1], *cN = n->n_out > 2 ? n->out[2] : NULL;
    const void *dy = y->grad, *dhN = hN->grad, *dcN = cN ? cN->grad : NULL;
    if (!dy && !dhN && !dcN)
        return;
    void *dx = sg_grad_of(g, in[IN_X]), *dwih = sg_grad_of(g, in[IN_WIH]);
    void *dwhh = sg_grad_of(g, in[IN_WHH]), *dbih = sg_grad_of(g, in[IN_BIH]);
    void *dbhh = sg_grad_of(g, in[IN_BHH]), *dh0 = sg_grad_of(g, in[IN_H0]);
    void *dc0 = sg_grad_of(g, in[IN_C0]);
    size_t es = sg_dtype_size(y->dtype), BH = (size_t)(sv->B * sv->H) * es;
    const char *who = sv->cell == SG_RNN_LSTM ? "sg_lstm" : "sg_gru";
    void *dH = sg__scratch_get(g, BH, who), *dC = sg__scratch_get(g, BH, who);
    void *drh = sg__scratch_get(g, BH, who);
    /* dgh: the hidden projection's gradient of one step's rows (the gates keep it for
     * dW_hh: the LSTM's is d(gi), the GRU's d(gi) with d(gh_n) beside it); the Cho GRU's
     * of every step, packed */
    int64_t dgh_rows = sv->cho ? sv->N : sv->B;
    void *dgh = sg__scratch_get(g, (size_t)(dgh_rows * sv->G * sv->H) * es, who);
    if (!dH || !dC || !drh || !dgh)
        goto out;
    const void *x = in[IN_X]->data, *wih = in[IN_WIH] ? in[IN_WIH]->data : NULL;
    /* dh W_hh at every step: W_hh packed once per backward where the packed kernel runs */
    sg__operand whh = sg__weight_operand(g, in[IN_WHH], true);
    if (y->dtype == SG_F32)
        rnn_bwd_f32(sv, x, wih, whh, y->data, data_or_null(cN), dy, dhN, dcN, dx, dwih, dwhh,
                    dbih, dbhh, dh0, dc0, dH, dC, dgh, drh);
    else
        rnn_bwd_f64(sv, x, wih, whh, y->data, data_or_null(cN), dy, dhN, dcN, dx, dwih, dwhh,
                    dbih, dbhh, dh0, dc0, dH, dC, dgh, drh);
out:
    sg__scratch_put(g, dH);
    sg__scratch_put(g, dC);
    sg__scratch_put(g, drh);
    sg__scratch_put(g, dgh);
}

/* Packed state rows (see rnn_saved): *p0 = the B rows before step 0, first when given
 * (the caller's h0 / c0), else the start of one block; *p = the N - B rows after. */
static bool state_rows(sg_arena *a, void *first, size_t NH, size_t BH, void **p0, void **p)
{
    char *block = sg_arena_alloc(a, first ? NH - BH + 1 : NH);
    if (!block)
        return false;
    *p0 = first ? first : block;
    *p = first ? block : block + BH;
    return true;
}

int sg__rnn_run(sg_graph *g, sg_rnn_cell cell, bool cho, bool reverse, sg_tensor *x,
                const sg__rnn_words *words, const int64_t *len, const sg_rnn_weights *w,
                sg_tensor *h0, sg_tensor *c0, sg_tensor **y, sg_tensor **h_n, sg_tensor **c_n)
{
    sg_arena *a = sg_graph_arena(g);
    sg_dtype dt = x->dtype;
    size_t es = sg_dtype_size(dt);
    int64_t B = words ? words->B : x->shape[0], T = words ? words->T : x->shape[1];
    int64_t I = x->shape[x->ndim - 1], H = w->weight_hh->shape[1];
    bool lstm = cell == SG_RNN_LSTM;
    const char *who = lstm ? "sg_lstm" : "sg_gru";
    void *gh = NULL, *hn_rows = NULL, *hbuf = NULL;
    bool hn_is_y = T == 1; /* see below */
    sg_tensor *bih = words ? NULL : w->bias_ih; /* in x with words */
    sg_tensor *ins[IN_COUNT] = {x, words ? NULL : w->weight_ih, w->weight_hh, bih, w->bias_hh,
                                h0, c0};
    rnn_saved *sv = sg_arena_alloc(a, sizeof *sv);
    if (!sv)
        goto oom;
    *sv = (rnn_saved){.cell = cell, .cho = cho && !lstm, .reverse = reverse,
                      .ids = words ? words->ids : NULL,
                      .pad_id = words ? words->padding_idx : -1, .h0_zero = !h0,
                      .step_gates = words && !sg__will_record(g, IN_COUNT, ins),
                      .B = B, .T = T, .I = I, .H = H, .G = lstm ? 4 : 3, .S = 4 * H};
    sv->perm = sg_arena_alloc(a, sizeof(int64_t) * (size_t)B);
    sv->plen = sg_arena_alloc(a, sizeof(int64_t) * (size_t)B);
    sv->off = sg_arena_alloc(a, sizeof(int64_t) * (size_t)(T + 1));
    sv->cnt = sg_arena_calloc(a, sizeof(int64_t) * (size_t)(T + 1));
    if (!sv->perm || !sv->plen || !sv->off || !sv->cnt)
        goto oom;
    /* counting sort by decreasing length, stable: running rows form a prefix */
    for (int64_t b = 0; b < B; b++)
        sv->cnt[len ? len[b] - 1 : T - 1]++; /* cnt[l-1] = rows of length l (for now) */
    {
        int64_t pos = 0;
        for (int64_t l = T; l >= 1; l--) {
            int64_t c = sv->cnt[l - 1];
            sv->cnt[l - 1] = pos; /* first slot of length l */
            pos += c;
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t l = len ? len[b] : T;
            int64_t k = sv->cnt[l - 1]++;
            sv->perm[k] = b;
            sv->plen[k] = l;
        }
        /* cnt[s] = rows with length > s; off = prefix sums */
        int64_t k = B;
        for (int64_t s = 0; s <= T; s++) {
            while (k > 0 && sv->plen[k - 1] <= s)
                k--;
            sv->cnt[s] = k;
        }
        sv->off[0] = 0;
        for (int64_t s = 0; s < T; s++)
            sv->off[s + 1] = sv->off[s] + sv->cnt[s];
        sv->N = sv->off[T];
    }
    size_t NH = (size_t)(sv->N * H) * es, BH = (size_t)(B * H) * es;
    /* rows in their own order (e.g. one decoder step): the state before step 0 is the
     * caller's h0 / c0 as they are, not a copy (graph inputs are not written) */
    bool in_order = true;
    for (int64_t k = 0; k < B && in_order; k++)
        in_order = sv->perm[k] == k;
    bool c0_alias = lstm && c0 && in_order;
    sv->h0_alias = h0 && in_order;
    sv->gates = sg_arena_alloc(a, (size_t)((sv->step_gates ? B : B * T) * sv->S) * es);
    /* h before steps 1.. only feeds the next step's product: two [B, H] scratch blocks
     * in turn (backward reads h_prev from y); the Cho GRU keeps them packed, for its
     * r * h_prev products */
    bool states = !sv->cho ? (sv->hp0 = sv->h0_alias ? h0->data : sg_arena_alloc(a, BH)) &&
                                 (hbuf = sg__scratch_get(g, 2 * BH, who))
                           : state_rows(a, sv->h0_alias ? h0->data : NULL, NH, BH, &sv->hp0,
                                        &sv->hp);
    states = states &&
             (!lstm || state_rows(a, c0_alias ? c0->data : NULL, NH, BH, &sv->cp0, &sv->cp));
    sv->rh = sv->cho ? sg_arena_alloc(a, NH) : NULL;
    /* the recurrent product of a step: scratch of this call */
    gh = sg__scratch_get(g, (size_t)(B * sv->G * H) * es, who);
    void *zeros = sg_arena_calloc(a, (size_t)(sv->G * H) * es);
    /* W^T of the weights (heap tensors, not copies made in g) made once per graph: the
     * decoder's cell steps of a training step or of a decode share them. W_ih only for
     * a single small step (a decoder cell): BLIS reads a large one transposed as well as
     * a copy, and on the input projection of a whole sequence (1,600 x 384 x 64, dates'
     * encoder) it made 55-72 GFLOP/s where the packed kernel made 46-60 (AMD Zen 3). */
    bool ih_small = T == 1 && (double)B * (double)(sv->G * H) * (double)I <= SG_SMALL_GEMM_MNK;
    sg__operand wih_t = sg__weight_t_operand(
        g, w->weight_ih, 1, !words && ih_small && w->weight_ih->owns_data);
    sg__operand whh_t = sg__weight_t_operand(g, w->weight_hh, T, w->weight_hh->owns_data);
    sg_tensor *ty = sg_empty(g, dt, 3, (int64_t[]){B, T, H});
    /* one step (a decoder cell): h_n is y's data under a [B, H] header, not a copy; the
     * kernel's h_n rows go to pool scratch */
    sg_tensor *thn = !hn_is_y ? sg_empty(g, dt, 2, (int64_t[]){B, H})
                     : ty     ? sg__header_over(g, ty->data, dt, 2, (int64_t[]){B, H})
                              : NULL;
    hn_rows = hn_is_y ? sg__scratch_get(g, BH, who) : thn ? thn->data : NULL;
    sg_tensor *tcn = lstm ? sg_empty(g, dt, 2, (int64_t[]){B, H}) : NULL;
    if (!sv->gates || !states || (sv->cho && !sv->rh) || !gh || !zeros ||
        !ty || !thn || !hn_rows || (lstm && !tcn))
        goto oom;
    if (dt == SG_F32)
        rnn_fwd_f32(sv, x->data, wih_t, whh_t, data_or_null(bih),
                    data_or_null(w->bias_hh), data_or_null(h0), data_or_null(c0), ty->data,
                    hn_rows, tcn ? tcn->data : NULL, gh, hbuf, zeros);
    else
        rnn_fwd_f64(sv, x->data, wih_t, whh_t, data_or_null(bih),
                    data_or_null(w->bias_hh), data_or_null(h0), data_or_null(c0), ty->data,
                    hn_rows, tcn ? tcn->data : NULL, gh, hbuf, zeros);
    sg__scratch_put(g, gh);
    sg__scratch_put(g, hbuf);
    gh = hbuf = NULL;
    if (hn_is_y)
        sg__scratch_put(g, hn_rows);
    hn_rows = NULL;
    sg_tensor *outs[3] = {ty, thn, tcn};
    sg_node *n = sg_record(g, lstm ? "sg_lstm" : "sg_gru", rnn_bwd, IN_COUNT, ins, lstm ? 3 : 2,
                           outs);
    if (n)
        n->saved = sv;
    else if (sg_graph_status(g) != SG_OK)
        return sg_graph_status(g);
    *y = ty;
    *h_n = thn;
    if (c_n)
        *c_n = tcn;
    return SG_OK;
oom:
    sg__scratch_put(g, gh);
    sg__scratch_put(g, hbuf);
    if (hn_is_y)
        sg__scratch_put(g, hn_rows);
    sg_graph_fail(g, SG_ENOMEM, "sg_rnn: out of memory for a [%lld, %lld, %lld] run",
                  (long long)B, (long long)T, (long long)H);
    return SG_ENOMEM;
}
