/* decode_beam.c - batched beam search (MODELS.md 8.3).
 *
 * Rows are the live hypotheses of the unfinished sentences, grouped by sentence in
 * batch order and, within a sentence, in walk order (best raw score first), so the
 * candidate index h*V + w of the spec is (row - first row of the sentence)*V + w.
 * Tokens are not copied per step: every kept token is a node (token, parent node)
 * in a table of back-pointers; hypotheses are rebuilt from it at the end.
 */
#include "decode_internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    double s;     /* raw score */
    int64_t i;    /* h*V + w */
} cand;

/* a ranks below b: lower score, or equal score and higher index. */
static inline bool worse(cand a, cand b)
{
    return a.s < b.s || (a.s == b.s && a.i > b.i);
}

/* Min-heap on `worse`: the root is the worst of the kept candidates. */
static void sift_down(cand *hp, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, m = i;
        if (l < n && worse(hp[l], hp[m]))
            m = l;
        if (l + 1 < n && worse(hp[l + 1], hp[m]))
            m = l + 1;
        if (m == i)
            return;
        cand tmp = hp[i];
        hp[i] = hp[m];
        hp[m] = tmp;
        i = m;
    }
}

static void sift_up(cand *hp, int64_t i)
{
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!worse(hp[i], hp[p]))
            return;
        cand tmp = hp[i];
        hp[i] = hp[p];
        hp[p] = tmp;
        i = p;
    }
}

/* Offers every candidate (h = r - r0, w) of row r with a finite raw score
 * score[r] + x[w] - lse to the heap of the 2k best (<pad>, <s> excluded). */
#define SCAN_ROW(T)                                                                \
    do {                                                                           \
        const T *x = (const T *)row;                                               \
        const int64_t sx = logits->stride[1], i0 = (r - r0) * V;                   \
        const double base = ws.score[r];                                           \
        /* logits below cut cannot enter the full heap (a margin far above rounding) */ \
        double cut = nh < 2 * k ? -INFINITY : ws.heap[0].s - base + lse - 1e-6;    \
        for (int64_t v = 0; v < V; v++) {                                          \
            if ((double)x[v * sx] < cut)                                           \
                continue;                                                          \
            cand c = {base + ((double)x[v * sx] - lse), i0 + v};                   \
            if (!(c.s > -INFINITY) || v == SG_TOK_PAD || v == SG_TOK_BOS)          \
                continue;   /* probability 0 */                                    \
            if (nh < 2 * k) {                                                      \
                ws.heap[nh] = c;                                                   \
                sift_up(ws.heap, nh++);                                            \
            } else if (c.s > ws.heap[0].s) { /* equal: the later index loses */    \
                ws.heap[0] = c;                                                    \
                sift_down(ws.heap, nh, 0);                                         \
            } else {                                                               \
                continue;                                                          \
            }                                                                      \
            if (nh == 2 * k)                                                       \
                cut = ws.heap[0].s - base + lse - 1e-6;                            \
        }                                                                          \
    } while (0)

/* A finished hypothesis: last token node (the one before </s> if eos), length n. */
typedef struct fin {
    int64_t node, n;
    bool eos;
    double raw, score;
} fin;

/* Per-call bookkeeping (one allocation). */
typedef struct beam_ws {
    int64_t *sent, *node, *tok;        /* [Rmax] current rows: sentence, last node, token */
    double *score;                     /* [Rmax] raw score */
    int64_t *n_sent, *n_node, *n_tok, *n_parent;
    double *n_score;
    int64_t *node_tok, *node_par;      /* [T * Rmax] back-pointers; -1 = <s> */
    fin *fins;                         /* [batch * 3k] */
    int64_t *n_fin;                    /* [batch] */
    cand *heap;                        /* [2k] */
    int64_t *max_len;                  /* [batch] */
} beam_ws;

static void *ws_alloc(beam_ws *ws, int64_t batch, int64_t k, int64_t T)
{
    int64_t Rmax = batch * k;
    size_t bytes = (size_t)Rmax * (9 * sizeof(int64_t) + 2 * sizeof(double)) +
                   (size_t)(T * Rmax) * 2 * sizeof(int64_t) +
                   (size_t)(batch * 3 * k) * sizeof(fin) + (size_t)(2 * k) * sizeof(cand) +
                   (size_t)batch * 2 * sizeof(int64_t);
    char *p = malloc(bytes), *blk = p;
    if (!p)
        return NULL;
    /* carve in decreasing alignment order: doubles/int64 (8), fin (8), cand (8) */
#define CARVE(dst, n) (dst = (void *)p, p += (size_t)(n) * sizeof *(dst))
    CARVE(ws->sent, Rmax);
    CARVE(ws->node, Rmax);
    CARVE(ws->tok, Rmax);
    CARVE(ws->score, Rmax);
    CARVE(ws->n_sent, Rmax);
    CARVE(ws->n_node, Rmax);
    CARVE(ws->n_tok, Rmax);
    CARVE(ws->n_parent, Rmax);
    CARVE(ws->n_score, Rmax);
    CARVE(ws->node_tok, T * Rmax);
    CARVE(ws->node_par, T * Rmax);
    CARVE(ws->fins, batch * 3 * k);
    CARVE(ws->n_fin, batch);
    CARVE(ws->heap, 2 * k);
    CARVE(ws->max_len, batch);
#undef CARVE
    assert((size_t)(p - blk) <= bytes);
    return blk;
}

static int check_opts(const char *fn, const sg_decode_opts *o)
{
    if (o->beam < 1)
        return sg__error(SG_EINVAL, "%s: beam width must be >= 1 (got %lld)", fn,
                         (long long)o->beam);
    if (o->n_best < 1)
        return sg__error(SG_EINVAL, "%s: n_best must be >= 1 (got %lld)", fn,
                         (long long)o->n_best);
    if (!(o->alpha >= 0.0) || !isfinite(o->alpha))
        return sg__error(SG_EINVAL, "%s: alpha must be finite and >= 0 (got %g)", fn, o->alpha);
    if ((unsigned)o->penalty >= SG_LP_COUNT)
        return sg__error(SG_EINVAL, "%s: unknown length penalty kind %d", fn, (int)o->penalty);
    return SG_OK;
}

/* Stable insertion sort of a sentence's finished list by normalised score, best first
 * (equal scores keep finishing order). Lists hold at most 3k entries. */
static void sort_fins(fin *f, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        fin x = f[i];
        int64_t j = i;
        while (j > 0 && f[j - 1].score < x.score) {
            f[j] = f[j - 1];
            j--;
        }
        f[j] = x;
    }
}

static int build_result(const beam_ws *ws, int64_t batch, int64_t k, int64_t n_best,
                        sg_decode_result *out)
{
    int64_t n_hyps = 0, n_tok = 0;
    for (int64_t b = 0; b < batch; b++) {
        fin *f = ws->fins + b * 3 * k;
        sort_fins(f, ws->n_fin[b]);
        int64_t m = ws->n_fin[b] < n_best ? ws->n_fin[b] : n_best;
        n_hyps += m > 0 ? m : 1;
        for (int64_t j = 0; j < m; j++)
            n_tok += f[j].n - f[j].eos;
    }
    sg_decode_result res;
    int rc = sg__decode_result_alloc(&res, batch, n_hyps, n_tok);
    if (rc != SG_OK)
        return rc;
    int64_t h = 0, *dst = res.tokens_;
    for (int64_t b = 0; b < batch; b++) {
        const fin *f = ws->fins + b * 3 * k;
        int64_t m = ws->n_fin[b] < n_best ? ws->n_fin[b] : n_best;
        res.offset[b] = h;
        if (m == 0)   /* nothing had a finite score */
            res.hyps[h++] = (sg_hypothesis){.tokens = dst, .logp = -INFINITY, .score = -INFINITY};
        for (int64_t j = 0; j < m; j++) {
            int64_t len = f[j].n - f[j].eos;
            int64_t nd = f[j].node;
            for (int64_t p = len - 1; p >= 0; p--, nd = ws->node_par[nd])
                dst[p] = ws->node_tok[nd];
            assert(nd == -1);
            res.hyps[h++] = (sg_hypothesis){.tokens = dst, .len = len, .n = f[j].n,
                                            .eos = f[j].eos, .logp = f[j].raw,
                                            .score = f[j].score};
            dst += len;
        }
    }
    res.offset[batch] = h;
    *out = res;
    return SG_OK;
}

int sg_decode_beam(const sg_decoder_ops *ops, void *model, int64_t batch, const int64_t *src_len,
                   const sg_decode_opts *opts, sg_decode_result *out)
{
    static const char fn[] = "sg_decode_beam";
    int rc = sg__decode_check(fn, ops, batch, src_len, opts, out);
    if (rc != SG_OK)
        return rc;
    sg_decode_opts o = opts ? *opts : sg_decode_opts_default();
    rc = check_opts(fn, &o);
    if (rc != SG_OK)
        return rc;
    const int64_t k = o.beam;

    int64_t T = 0;
    for (int64_t b = 0; b < batch; b++) {
        int64_t L = sg__decode_limit(opts, src_len[b]);
        T = L > T ? L : T;
    }
    beam_ws ws;
    void *blk = ws_alloc(&ws, batch, k, T);
    if (!blk)
        return sg__error(SG_ENOMEM, "%s: cannot allocate bookkeeping for %lld sentences x "
                         "beam %lld x %lld steps", fn, (long long)batch, (long long)k,
                         (long long)T);
    for (int64_t b = 0; b < batch; b++) {
        ws.max_len[b] = sg__decode_limit(opts, src_len[b]);
        ws.n_fin[b] = 0;
        ws.sent[b] = b;          /* start: one live hypothesis <s> per sentence */
        ws.node[b] = -1;
        ws.tok[b] = SG_TOK_BOS;
        ws.score[b] = 0.0;
    }
    sg__decode_work w;
    rc = sg__decode_work_init(&w, opts);
    if (rc != SG_OK) {
        free(blk);
        return rc;
    }

    int64_t R = batch, V = 0, n_nodes = 0;
    for (int64_t t = 0; R > 0; t++) {
        const int64_t n = t + 1;   /* tokens per hypothesis after this step */
        const double lp_n = sg_length_penalty(o.penalty, o.alpha, n);
        sg_tensor *logits;
        const double *lse_all = NULL;
        rc = sg__decode_step(fn, ops, model, &w, ws.tok, R, t, &logits, &V, &lse_all);
        if (rc != SG_OK)
            goto done;
        int64_t R2 = 0;
        for (int64_t r0 = 0; r0 < R;) {
            const int64_t b = ws.sent[r0];
            int64_t r1 = r0 + 1;
            while (r1 < R && ws.sent[r1] == b)
                r1++;

            /* the 2k best candidates (h, w) of sentence b by raw score, partial selection */
            int64_t nh = 0;
            for (int64_t r = r0; r < r1; r++) {
                const double lse = lse_all[r];
                const void *row = sg__decode_row(logits, r);
                if (logits->dtype == SG_F32)
                    SCAN_ROW(float);
                else
                    SCAN_ROW(double);
            }
            /* heap -> descending order in place: repeatedly move the worst to the end */
            for (int64_t m = nh - 1; m > 0; m--) {
                cand tmp = ws.heap[0];
                ws.heap[0] = ws.heap[m];
                ws.heap[m] = tmp;
                sift_down(ws.heap, m, 0);
            }
            /* the walk */
            fin *f = ws.fins + b * 3 * k;
            const int64_t R2_b = R2;
            int64_t live = 0;
            for (int64_t j = 0; j < nh && live < k; j++) {
                const cand c = ws.heap[j];
                const int64_t r = r0 + c.i / V, y = c.i % V;
                if (y == SG_TOK_EOS) {
                    assert(ws.n_fin[b] < 3 * k);
                    f[ws.n_fin[b]++] = (fin){.node = ws.node[r], .n = n, .eos = true,
                                             .raw = c.s, .score = c.s / lp_n};
                    continue;
                }
                ws.node_tok[n_nodes] = y;
                ws.node_par[n_nodes] = ws.node[r];
                ws.n_parent[R2] = r;
                ws.n_sent[R2] = b;
                ws.n_node[R2] = n_nodes++;
                ws.n_tok[R2] = y;
                ws.n_score[R2] = c.s;
                R2++;
                live++;
            }
            /* finishing rules: length limit, k finished, or nothing left alive */
            if (n >= ws.max_len[b]) {
                for (int64_t r = R2_b; r < R2; r++) {
                    assert(ws.n_fin[b] < 3 * k);
                    f[ws.n_fin[b]++] = (fin){.node = ws.n_node[r], .n = n, .eos = false,
                                             .raw = ws.n_score[r],
                                             .score = ws.n_score[r] / lp_n};
                }
                R2 = R2_b;
            } else if (ws.n_fin[b] >= k) {
                R2 = R2_b;
            }
            r0 = r1;
        }
        if (R2 == 0)
            break;
        bool identity = R2 == R;
        for (int64_t r = 0; identity && r < R2; r++)
            identity = ws.n_parent[r] == r;
        if (!identity) {
            rc = sg__decode_select(ops, model, &w, t, ws.n_parent, ws.n_sent, R2);
            if (rc != SG_OK)
                goto done;
        }
        memcpy(ws.sent, ws.n_sent, (size_t)R2 * sizeof(int64_t));
        memcpy(ws.node, ws.n_node, (size_t)R2 * sizeof(int64_t));
        memcpy(ws.tok, ws.n_tok, (size_t)R2 * sizeof(int64_t));
        memcpy(ws.score, ws.n_score, (size_t)R2 * sizeof(double));
        R = R2;
    }
    rc = build_result(&ws, batch, k, o.n_best, out);
done:
    sg__decode_work_free(&w);
    free(blk);
    return rc;
}
