/* test_decode.c - greedy and beam search (MODELS.md 8.3) against a deterministic mock model.
 *
 * The mock's logits depend on the whole history of its row through a hash chain
 * (state h <- mix(h, prev, t), logits = table(h)), so wrong row reordering shows up as
 * different results. References in this file: a direct greedy loop, a brute-force
 * search over all sequences, and a plain beam search that sorts every candidate.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sg_decode.h"

/* tests/fixture.h's first comment contains a slash-star (-Wcomment); not ours to edit */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "fixture.h"
#pragma GCC diagnostic pop

/* ---- mock model ---------------------------------------------------------------- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t mix(uint64_t h, int64_t prev, int64_t t)
{
    return splitmix(h ^ splitmix((uint64_t)prev * 1000003u + (uint64_t)t));
}

static uint64_t init_state(int64_t seed, int64_t b)
{
    return splitmix((uint64_t)seed * 7919u + (uint64_t)b);
}

typedef struct mock {
    int64_t V;
    sg_dtype dt;
    double eos_bias;        /* added to the </s> logit */
    int64_t fail_step;      /* step index that returns SG_EIO (-1: never) */
    int64_t fail_select;    /* select after this step returns SG_ESTATE (-1: never) */
    bool transposed;        /* return logits as a transposed (strided) view */
    int bad;                /* 1: NaN logits, 2: wrong shape, 3: i64 logits, 4: NULL logits,
                               5: all -inf, 6: -inf but </s> */
    int64_t cap, R, t;      /* row capacity, current rows, next step */
    uint64_t *h, *tmp;
    int64_t *sent, *tmp_sent;
    int64_t rows[256];      /* rows per step */
    int64_t n_select;
    bool consistent;        /* every callback saw what it expected */
} mock;

static double mock_logit(const mock *m, uint64_t h, int64_t w)
{
    double u = (double)(splitmix(h + (uint64_t)w * 0x632BE59BD9B4E019ull) >> 11) * 0x1.0p-53;
    return 6.0 * u - 3.0 + (w == SG_TOK_EOS ? m->eos_bias : 0.0);
}

static void mock_init(mock *m, int64_t V, int64_t batch, int64_t cap, int64_t seed)
{
    memset(m, 0, sizeof *m);
    m->V = V;
    m->dt = SG_F64;
    m->fail_step = m->fail_select = -1;
    m->cap = cap;
    m->R = batch;
    m->h = calloc((size_t)cap, sizeof *m->h);
    m->tmp = calloc((size_t)cap, sizeof *m->tmp);
    m->sent = calloc((size_t)cap, sizeof *m->sent);
    m->tmp_sent = calloc((size_t)cap, sizeof *m->tmp_sent);
    cr_assert(m->h && m->tmp && m->sent && m->tmp_sent);
    for (int64_t b = 0; b < batch; b++) {
        m->h[b] = init_state(seed, b);
        m->sent[b] = b;
    }
    m->consistent = true;
}

static void mock_free(mock *m)
{
    free(m->h);
    free(m->tmp);
    free(m->sent);
    free(m->tmp_sent);
}

static int mock_step(void *u, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    mock *m = u;
    if (t == m->fail_step)
        return SG_EIO;
    if (prev->dtype != SG_I64 || prev->ndim != 1 || prev->shape[0] != m->R || t != m->t ||
        sg_graph_grad_enabled(g))
        m->consistent = false;
    int64_t R = m->R, V = m->V;
    if (t < 256)
        m->rows[t] = R;
    m->t++;
    if (m->bad == 4) {
        *logits = NULL;
        return SG_OK;
    }
    sg_dtype dt = m->bad == 3 ? SG_I64 : m->dt;
    int64_t Vx = m->bad == 2 && t == 1 ? V - 1 : V;
    sg_tensor *x = m->transposed ? sg_empty(g, dt, 2, (int64_t[]){Vx, R})
                                 : sg_empty(g, dt, 2, (int64_t[]){R, Vx});
    if (!x)
        return sg_graph_status(g);
    const int64_t *p = prev->data;
    for (int64_t r = 0; r < R; r++) {
        m->h[r] = mix(m->h[r], p[r], t);
        for (int64_t w = 0; w < Vx; w++) {
            double v = mock_logit(m, m->h[r], w);
            if (m->bad == 1 && t == 2 && r == R - 1 && w == 1)
                v = NAN;
            if (m->bad == 5 || (m->bad == 6 && w != SG_TOK_EOS))
                v = -INFINITY;   /* probability-0 tokens (5: every token) */
            int64_t at = m->transposed ? w * R + r : r * Vx + w;
            if (dt == SG_F32)
                ((float *)x->data)[at] = (float)v;
            else if (dt == SG_F64)
                ((double *)x->data)[at] = v;
        }
    }
    *logits = m->transposed ? sg_transpose(g, x, 0, 1) : x;
    return *logits ? SG_OK : sg_graph_status(g);
}

static int mock_select(void *u, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    mock *m = u;
    (void)g;
    if (m->t - 1 == m->fail_select)
        return SG_ESTATE;
    int64_t n = parent->shape[0];
    const int64_t *p = parent->data, *s = sentence->data;
    if (n < 1 || n > m->cap || sentence->shape[0] != n)
        m->consistent = false;
    for (int64_t i = 0; i < n && m->consistent; i++) {
        if (p[i] < 0 || p[i] >= m->R || m->sent[p[i]] != s[i]) {
            m->consistent = false;
            break;
        }
        m->tmp[i] = m->h[p[i]];
        m->tmp_sent[i] = s[i];
    }
    memcpy(m->h, m->tmp, (size_t)n * sizeof *m->h);
    memcpy(m->sent, m->tmp_sent, (size_t)n * sizeof *m->sent);
    m->R = n;
    m->n_select++;
    return SG_OK;
}

static const sg_decoder_ops mock_ops = {mock_step, mock_select};

/* ---- reference helpers ------------------------------------------------------------- */

/* logp of the mock in state h (after feeding the previous token), with the 8.3 mask. */
static void ref_logp(const mock *m, uint64_t h, double *lp)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t w = 0; w < m->V; w++) {
        lp[w] = m->dt == SG_F32 ? (double)(float)mock_logit(m, h, w) : mock_logit(m, h, w);
        mx = fmax(mx, lp[w]);
    }
    for (int64_t w = 0; w < m->V; w++)
        sum += exp(lp[w] - mx);
    for (int64_t w = 0; w < m->V; w++)
        lp[w] -= mx + log(sum);
    lp[SG_TOK_PAD] = lp[SG_TOK_BOS] = -INFINITY;
}

typedef struct ref_hyp {
    int64_t tok[64];
    int64_t len, n;
    bool eos;
    double raw, score;
} ref_hyp;

/* Direct greedy loop for one sentence. */
static ref_hyp ref_greedy(const mock *m, int64_t seed, int64_t b, int64_t n_b)
{
    ref_hyp r = {0};
    int64_t L = sg_decode_max_len(n_b), prev = SG_TOK_BOS;
    uint64_t h = init_state(seed, b);
    double lp[64];
    for (int64_t t = 0; t < L; t++) {
        h = mix(h, prev, t);
        ref_logp(m, h, lp);
        int64_t y = 1;
        for (int64_t w = 3; w < m->V; w++)
            if (lp[w] > lp[y])
                y = w;
        r.raw += lp[y];
        r.n = t + 1;
        if (y == SG_TOK_EOS) {
            r.eos = true;
            break;
        }
        r.tok[r.len++] = y;
        prev = y;
    }
    r.score = r.raw;
    return r;
}

/* Brute force over every sequence: keeps the top n_top by normalised score. */
typedef struct brute {
    const mock *m;
    int64_t L;
    sg_lp_kind kind;
    double alpha;
    ref_hyp top[8];
    int64_t n_top, want;
    int64_t path[64];
} brute;

static void brute_offer(brute *bf, int64_t len, int64_t n, bool eos, double raw)
{
    double score = raw / sg_length_penalty(bf->kind, bf->alpha, n);
    int64_t pos = bf->n_top;
    while (pos > 0 && bf->top[pos - 1].score < score)
        pos--;
    if (pos >= bf->want)
        return;
    int64_t last = bf->n_top < bf->want ? bf->n_top : bf->want - 1;
    for (int64_t i = last; i > pos; i--)
        bf->top[i] = bf->top[i - 1];
    ref_hyp *r = &bf->top[pos];
    memcpy(r->tok, bf->path, (size_t)len * sizeof(int64_t));
    r->len = len;
    r->n = n;
    r->eos = eos;
    r->raw = raw;
    r->score = score;
    if (bf->n_top < bf->want)
        bf->n_top++;
}

static void brute_dfs(brute *bf, uint64_t h, int64_t prev, int64_t t, double raw)
{
    double lp[16];
    h = mix(h, prev, t);
    ref_logp(bf->m, h, lp);
    for (int64_t y = 1; y < bf->m->V; y++) {
        if (y == SG_TOK_BOS)
            continue;
        double s = raw + lp[y];
        if (y == SG_TOK_EOS) {
            brute_offer(bf, t, t + 1, true, s);
        } else {
            bf->path[t] = y;
            if (t + 1 == bf->L)
                brute_offer(bf, t + 1, t + 1, false, s);
            else
                brute_dfs(bf, h, y, t + 1, s);
        }
    }
}

/* Plain beam search for one sentence: explicit token lists, full qsort of candidates. */
typedef struct rcand {
    double s;
    int64_t i;
} rcand;

static int rcand_cmp(const void *a, const void *b)
{
    const rcand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static ref_hyp ref_beam(const mock *m, int64_t seed, int64_t b, int64_t n_b, int64_t k,
                        sg_lp_kind kind, double alpha)
{
    enum { KMAX = 8 };
    cr_assert(k <= KMAX);
    int64_t L = sg_decode_max_len(n_b), V = m->V;
    ref_hyp live[KMAX], next[KMAX], fins[4 * KMAX];
    uint64_t hs[KMAX], nhs[KMAX];
    int64_t n_live = 1, n_fin = 0;
    memset(live, 0, sizeof live);
    hs[0] = init_state(seed, b);
    rcand *c = malloc((size_t)(KMAX * V) * sizeof *c);
    double lp[16];
    for (int64_t t = 0; t < L && n_live > 0; t++) {
        int64_t nc = 0;
        for (int64_t j = 0; j < n_live; j++) {
            int64_t prev = t == 0 ? SG_TOK_BOS : live[j].tok[t - 1];
            nhs[j] = mix(hs[j], prev, t);
            ref_logp(m, nhs[j], lp);
            for (int64_t w = 0; w < V; w++)
                if (isfinite(lp[w]))
                    c[nc++] = (rcand){live[j].raw + lp[w], j * V + w};
        }
        qsort(c, (size_t)nc, sizeof *c, rcand_cmp);
        int64_t n_next = 0, non_eos = 0;
        double lpn = sg_length_penalty(kind, alpha, t + 1);
        for (int64_t j = 0; j < nc && j < 2 * k; j++) {
            int64_t hh = c[j].i / V, w = c[j].i % V;
            if (w == SG_TOK_EOS) {
                if (non_eos < k) {
                    fins[n_fin] = live[hh];
                    fins[n_fin].n = t + 1;
                    fins[n_fin].eos = true;
                    fins[n_fin].raw = c[j].s;
                    fins[n_fin++].score = c[j].s / lpn;
                }
            } else if (non_eos < k) {
                next[n_next] = live[hh];
                next[n_next].tok[t] = w;
                next[n_next].len = t + 1;
                next[n_next].raw = c[j].s;
                hs[n_next] = nhs[hh];   /* state rows for the next step, in order */
                n_next++;
                non_eos++;
            }
        }
        /* hs was overwritten in place: nhs is read by parent index, hs by new index */
        memcpy(live, next, sizeof(ref_hyp) * (size_t)n_next);
        n_live = n_next;
        if (t + 1 == L) {
            for (int64_t j = 0; j < n_live; j++) {
                fins[n_fin] = live[j];
                fins[n_fin].n = t + 1;
                fins[n_fin].eos = false;
                fins[n_fin++].score = live[j].raw / lpn;
            }
            break;
        }
        if (n_fin >= k)
            break;
    }
    free(c);
    ref_hyp best = fins[0];
    for (int64_t j = 1; j < n_fin; j++)
        if (fins[j].score > best.score)
            best = fins[j];
    return best;
}

/* tol: relative score tolerance (f32 logits: the library's log-softmax runs in f32). */
static void assert_same_tol(const sg_hypothesis *h, const ref_hyp *r, const char *what, int64_t b,
                            double tol)
{
    cr_assert_eq(h->len, r->len, "%s sentence %lld: length %lld, expected %lld", what,
                 (long long)b, (long long)h->len, (long long)r->len);
    for (int64_t i = 0; i < r->len; i++)
        cr_assert_eq(h->tokens[i], r->tok[i], "%s sentence %lld: token %lld is %lld, expected %lld",
                     what, (long long)b, (long long)i, (long long)h->tokens[i],
                     (long long)r->tok[i]);
    cr_assert_eq(h->eos, r->eos, "%s sentence %lld: eos flag", what, (long long)b);
    cr_assert_eq(h->n, r->n, "%s sentence %lld: n", what, (long long)b);
    cr_assert(fabs(h->score - r->score) <= tol * (1 + fabs(r->score)),
              "%s sentence %lld: score %.17g, expected %.17g", what, (long long)b, h->score,
              r->score);
    cr_assert(fabs(h->logp - r->raw) <= tol * (1 + fabs(r->raw)), "%s: logp", what);
}

static void assert_same(const sg_hypothesis *h, const ref_hyp *r, const char *what, int64_t b)
{
    assert_same_tol(h, r, what, b, 1e-9);
}

static void assert_same_hyp(const sg_hypothesis *a, const sg_hypothesis *b, const char *what)
{
    cr_assert_eq(a->len, b->len, "%s: lengths %lld vs %lld", what, (long long)a->len,
                 (long long)b->len);
    cr_assert_eq(memcmp(a->tokens, b->tokens, (size_t)a->len * sizeof(int64_t)), 0,
                 "%s: tokens differ", what);
    cr_assert_eq(a->eos, b->eos, "%s: eos", what);
    cr_assert_eq(a->n, b->n, "%s: n", what);
}

static sg_decode_opts beam_opts(int64_t k, sg_lp_kind kind, double alpha, int64_t n_best)
{
    sg_decode_opts o = sg_decode_opts_default();
    o.beam = k;
    o.penalty = kind;
    o.alpha = alpha;
    o.n_best = n_best;
    return o;
}

static const int64_t lens6[6] = {1, 3, 2, 5, 1, 4};

/* ---- tests ------------------------------------------------------------------------- */

Test(decode, helpers_follow_spec)
{
    cr_assert_eq(sg_decode_max_len(1), 10);
    cr_assert_eq(sg_decode_max_len(6), 20);
    cr_assert_eq(sg_decode_max_len(0), -1);
    cr_assert_float_eq(sg_length_penalty(SG_LP_AVG, 0.7, 8), pow(8, 0.7), 1e-15);
    cr_assert_float_eq(sg_length_penalty(SG_LP_GNMT, 0.7, 8), pow(13.0 / 6.0, 0.7), 1e-15);
    cr_assert_float_eq(sg_length_penalty(SG_LP_GNMT, 0.0, 8), 1.0, 0);
    sg_decode_opts o = sg_decode_opts_default();
    cr_assert(o.beam == 5 && o.alpha == 0.7 && o.penalty == SG_LP_AVG && o.n_best == 1);
}

Test(decode, greedy_matches_direct_argmax_loop)
{
    for (int f32 = 0; f32 < 2; f32++) {
        mock m;
        mock_init(&m, 7, 6, 6, 11);
        m.dt = f32 ? SG_F32 : SG_F64;
        m.transposed = f32;
        sg_decode_result r;
        int rc = sg_decode_greedy(&mock_ops, &m, 6, lens6, NULL, &r);
        cr_assert_eq(rc, SG_OK, "%s", sg_last_error());
        cr_assert(m.consistent);
        for (int64_t b = 0; b < 6; b++) {
            cr_assert_eq(sg_decode_count(&r, b), 1);
            ref_hyp e = ref_greedy(&m, 11, b, lens6[b]);
            assert_same_tol(sg_decode_best(&r, b), &e, "greedy", b, f32 ? 1e-5 : 1e-9);
        }
        sg_decode_result_free(&r);
        cr_assert_null(r.hyps);
        mock_free(&m);
    }
}

Test(decode, beam_of_one_equals_greedy)
{
    for (int64_t seed = 1; seed <= 8; seed++) {
        mock mg, mb;
        mock_init(&mg, 8, 6, 6, seed);
        mock_init(&mb, 8, 6, 6, seed);
        mg.dt = mb.dt = seed % 2 ? SG_F32 : SG_F64;
        sg_decode_result rg, rb;
        sg_decode_opts o = beam_opts(1, SG_LP_AVG, 0.7, 3);
        cr_assert_eq(sg_decode_greedy(&mock_ops, &mg, 6, lens6, NULL, &rg), SG_OK);
        cr_assert_eq(sg_decode_beam(&mock_ops, &mb, 6, lens6, &o, &rb), SG_OK, "%s",
                     sg_last_error());
        cr_assert(mb.consistent);
        for (int64_t b = 0; b < 6; b++) {
            assert_same_hyp(sg_decode_best(&rb, b), sg_decode_best(&rg, b), "beam 1 vs greedy");
            cr_assert_float_eq(sg_decode_best(&rb, b)->logp, sg_decode_best(&rg, b)->logp, 1e-9);
        }
        sg_decode_result_free(&rg);
        sg_decode_result_free(&rb);
        mock_free(&mg);
        mock_free(&mb);
    }
}

/* V = 6 (3 tokens that continue a hypothesis), max_len 10: 3^9 < k = 20000 live
 * hypotheses at most, so the beam never prunes and must find the global optimum. */
static void wide_beam_vs_brute_force(sg_lp_kind kind, double alpha, double eos_bias)
{
    enum { B = 2, K = 20000, NB = 5 };
    const int64_t n_b[B] = {1, 1};
    mock m;
    mock_init(&m, 6, B, B * K, 5);
    m.eos_bias = eos_bias;
    sg_decode_opts o = beam_opts(K, kind, alpha, NB);
    sg_decode_result r;
    int rc = sg_decode_beam(&mock_ops, &m, B, n_b, &o, &r);
    cr_assert_eq(rc, SG_OK, "%s", sg_last_error());
    cr_assert(m.consistent);
    for (int64_t b = 0; b < B; b++) {
        brute bf = {.m = &m, .L = 10, .kind = kind, .alpha = alpha, .want = NB};
        brute_dfs(&bf, init_state(5, b), SG_TOK_BOS, 0, 0.0);
        cr_assert_eq(sg_decode_count(&r, b), NB);
        for (int64_t j = 0; j < NB; j++)
            assert_same(&r.hyps[r.offset[b] + j], &bf.top[j], "n-best vs brute force", b);
    }
    sg_decode_result_free(&r);
    mock_free(&m);
}

Test(decode, wide_beam_finds_brute_force_optimum_avg)
{
    wide_beam_vs_brute_force(SG_LP_AVG, 0.7, 0.0);
}

Test(decode, wide_beam_finds_brute_force_optimum_gnmt)
{
    wide_beam_vs_brute_force(SG_LP_GNMT, 1.0, -0.5);
}

Test(decode, wide_beam_finds_brute_force_optimum_alpha_zero)
{
    /* raw sums favour short outputs: push </s> down so long ones compete */
    wide_beam_vs_brute_force(SG_LP_AVG, 0.0, -2.0);
}

Test(decode, beam_walk_matches_plain_reference)
{
    const struct { int64_t k; sg_lp_kind kind; double alpha, eos_bias; } cases[] = {
        {2, SG_LP_AVG, 0.7, 0.0},  {3, SG_LP_AVG, 0.7, 1.0}, {4, SG_LP_GNMT, 0.7, 0.5},
        {5, SG_LP_AVG, 0.0, -1.0}, {3, SG_LP_GNMT, 1.5, 2.0}, {8, SG_LP_AVG, 1.0, 0.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int64_t seed = 1; seed <= 4; seed++) {
            mock m;
            mock_init(&m, 9, 6, 6 * cases[c].k, seed);
            m.eos_bias = cases[c].eos_bias;
            m.dt = seed == 2 ? SG_F32 : SG_F64;
            m.transposed = seed == 3;
            sg_decode_opts o = beam_opts(cases[c].k, cases[c].kind, cases[c].alpha, 1);
            sg_decode_result r;
            cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r), SG_OK, "%s",
                         sg_last_error());
            cr_assert(m.consistent);
            for (int64_t b = 0; b < 6; b++) {
                ref_hyp e = ref_beam(&m, seed, b, lens6[b], cases[c].k, cases[c].kind,
                                     cases[c].alpha);
                assert_same_tol(sg_decode_best(&r, b), &e, "beam vs plain reference", b,
                                seed == 2 ? 1e-5 : 1e-9);
            }
            sg_decode_result_free(&r);
            mock_free(&m);
        }
    }
}

Test(decode, nbest_first_equals_one_best_and_is_sorted)
{
    mock m1, m5;
    mock_init(&m1, 9, 6, 24, 3);
    mock_init(&m5, 9, 6, 24, 3);
    sg_decode_opts o1 = beam_opts(4, SG_LP_AVG, 0.7, 1), o5 = beam_opts(4, SG_LP_AVG, 0.7, 5);
    sg_decode_result r1, r5;
    cr_assert_eq(sg_decode_beam(&mock_ops, &m1, 6, lens6, &o1, &r1), SG_OK);
    cr_assert_eq(sg_decode_beam(&mock_ops, &m5, 6, lens6, &o5, &r5), SG_OK);
    for (int64_t b = 0; b < 6; b++) {
        cr_assert_eq(sg_decode_count(&r1, b), 1);
        int64_t n = sg_decode_count(&r5, b);
        cr_assert(n >= 4 && n <= 5, "sentence %lld has %lld hypotheses (k = 4 finished at least)",
                  (long long)b, (long long)n);
        assert_same_hyp(sg_decode_best(&r5, b), sg_decode_best(&r1, b), "n-best[0] vs 1-best");
        for (int64_t j = 1; j < n; j++)
            cr_assert_geq(r5.hyps[r5.offset[b] + j - 1].score, r5.hyps[r5.offset[b] + j].score);
    }
    sg_decode_result_free(&r1);
    sg_decode_result_free(&r5);
    mock_free(&m1);
    mock_free(&m5);
}

Test(decode, cut_at_max_len_without_eos)
{
    mock mg, mb;
    mock_init(&mg, 7, 6, 6, 2);
    mock_init(&mb, 7, 6, 18, 2);
    mg.eos_bias = mb.eos_bias = -1e3;
    sg_decode_result rg, rb;
    sg_decode_opts o = beam_opts(3, SG_LP_AVG, 0.7, 3);
    cr_assert_eq(sg_decode_greedy(&mock_ops, &mg, 6, lens6, NULL, &rg), SG_OK);
    cr_assert_eq(sg_decode_beam(&mock_ops, &mb, 6, lens6, &o, &rb), SG_OK);
    for (int64_t b = 0; b < 6; b++) {
        int64_t L = sg_decode_max_len(lens6[b]);
        const sg_hypothesis *g = sg_decode_best(&rg, b);
        cr_assert(g->len == L && g->n == L && !g->eos);
        cr_assert_eq(sg_decode_count(&rb, b), 3, "k live hypotheses finish at max_len");
        for (int64_t j = 0; j < 3; j++) {
            const sg_hypothesis *h = &rb.hyps[rb.offset[b] + j];
            cr_assert(h->len == L && h->n == L && !h->eos);
            cr_assert_float_eq(h->score, h->logp / pow((double)L, 0.7), 1e-12);
        }
    }
    cr_assert_eq(mg.t, sg_decode_max_len(5), "the longest sentence sets the step count");
    sg_decode_result_free(&rg);
    sg_decode_result_free(&rb);
    mock_free(&mg);
    mock_free(&mb);
}

/* opts->max_len replaces MODELS.md's limit for every sentence, shorter or longer. */
Test(decode, max_len_option_overrides_the_rule)
{
    const int64_t limits[] = {1, 4, 25};
    for (int c = 0; c < 3; c++) {
        int64_t L = limits[c];
        mock mg, mb, mref;
        mock_init(&mg, 7, 6, 6, 2);
        mock_init(&mref, 7, 6, 6, 2);
        mock_init(&mb, 7, 6, 18, 2);
        mg.eos_bias = mb.eos_bias = mref.eos_bias = -1e3;
        sg_decode_opts og = sg_decode_opts_default(), ob = beam_opts(3, SG_LP_AVG, 0.7, 3);
        og.max_len = ob.max_len = L;
        sg_decode_result rg, rb, rref;
        cr_assert_eq(sg_decode_greedy(&mock_ops, &mg, 6, lens6, &og, &rg), SG_OK);
        cr_assert_eq(sg_decode_greedy(&mock_ops, &mref, 6, lens6, NULL, &rref), SG_OK);
        cr_assert_eq(sg_decode_beam(&mock_ops, &mb, 6, lens6, &ob, &rb), SG_OK);
        for (int64_t b = 0; b < 6; b++) {
            const sg_hypothesis *g = sg_decode_best(&rg, b), *ref = sg_decode_best(&rref, b);
            cr_assert(g->len == L && g->n == L && !g->eos, "greedy cut at max_len %lld",
                      (long long)L);
            /* the same tokens as without the option, as far as both go */
            int64_t common = L < ref->len ? L : ref->len;
            cr_assert_arr_eq(g->tokens, ref->tokens, (size_t)common * sizeof(int64_t));
            cr_assert_eq(sg_decode_count(&rb, b), 3);
            for (int64_t j = 0; j < 3; j++) {
                const sg_hypothesis *h = &rb.hyps[rb.offset[b] + j];
                cr_assert(h->len == L && h->n == L && !h->eos);
            }
        }
        cr_assert_eq(mg.t, L, "every sentence stops after max_len steps");
        sg_decode_result_free(&rg);
        sg_decode_result_free(&rb);
        sg_decode_result_free(&rref);
        mock_free(&mg);
        mock_free(&mb);
        mock_free(&mref);
    }
}

Test(decode, rejects_negative_max_len)
{
    mock m;
    mock_init(&m, 7, 6, 18, 2);
    sg_decode_opts o = sg_decode_opts_default();
    o.max_len = -1;
    sg_decode_result r = {0};
    cr_assert_eq(sg_decode_greedy(&mock_ops, &m, 6, lens6, &o, &r), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "max_len"), "%s", sg_last_error());
    cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "max_len"), "%s", sg_last_error());
    cr_assert_null(r.hyps);
    cr_assert_eq(m.t, 0, "no step ran");
    mock_free(&m);
}

Test(decode, eos_first_gives_empty_hypothesis)
{
    mock mg, mb;
    mock_init(&mg, 7, 6, 6, 4);
    mock_init(&mb, 7, 6, 30, 4);
    mg.eos_bias = mb.eos_bias = 50;
    sg_decode_result rg, rb;
    sg_decode_opts o = beam_opts(5, SG_LP_AVG, 0.7, 1);
    cr_assert_eq(sg_decode_greedy(&mock_ops, &mg, 6, lens6, NULL, &rg), SG_OK);
    cr_assert_eq(sg_decode_beam(&mock_ops, &mb, 6, lens6, &o, &rb), SG_OK);
    for (int64_t b = 0; b < 6; b++) {
        const sg_hypothesis *g = sg_decode_best(&rg, b), *h = sg_decode_best(&rb, b);
        cr_assert(g->len == 0 && g->n == 1 && g->eos && g->logp <= 0 && g->logp > -1e-6);
        cr_assert(h->len == 0 && h->n == 1 && h->eos);
    }
    cr_assert_eq(mg.t, 1, "greedy stops after one step when every row ends");
    sg_decode_result_free(&rg);
    sg_decode_result_free(&rb);
    mock_free(&mg);
    mock_free(&mb);
}

/* Each sentence decoded in a batch equals the same sentence decoded alone, though
 * rows finish at different steps and are dropped from the batch. */
Test(decode, batch_with_rows_finishing_at_different_steps_equals_single)
{
    for (int64_t k = 1; k <= 4; k += 3) {
        mock m;
        mock_init(&m, 8, 6, 6 * k, 9);
        m.eos_bias = 0.5;
        sg_decode_opts o = beam_opts(k, SG_LP_AVG, 0.7, 2);
        sg_decode_result rb, rg;
        cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &rb), SG_OK);
        cr_assert(m.consistent && m.n_select > 0);
        int64_t steps = m.t;
        mock mg;
        mock_init(&mg, 8, 6, 6, 9);
        mg.eos_bias = 0.5;
        cr_assert_eq(sg_decode_greedy(&mock_ops, &mg, 6, lens6, NULL, &rg), SG_OK);
        /* greedy rows shrink as sentences end (lengths differ) */
        bool shrank = false;
        for (int64_t t = 1; t < mg.t; t++) {
            cr_assert_leq(mg.rows[t], mg.rows[t - 1]);
            shrank |= mg.rows[t] < mg.rows[t - 1];
        }
        cr_assert(shrank, "no sentence finished early: choose another seed");
        for (int64_t b = 0; b < 6; b++) {
            mock s;
            mock_init(&s, 8, 1, k, 9);
            s.eos_bias = 0.5;
            s.h[0] = init_state(9, b);   /* sentence b's state as row 0 */
            sg_decode_result r1;
            cr_assert_eq(sg_decode_beam(&mock_ops, &s, 1, &lens6[b], &o, &r1), SG_OK);
            cr_assert_eq(sg_decode_count(&r1, 0), sg_decode_count(&rb, b));
            for (int64_t j = 0; j < sg_decode_count(&r1, 0); j++) {
                assert_same_hyp(&r1.hyps[j], &rb.hyps[rb.offset[b] + j], "batch vs single");
                cr_assert_float_eq(r1.hyps[j].score, rb.hyps[rb.offset[b] + j].score, 1e-12);
            }
            cr_assert_leq(s.t, steps);
            sg_decode_result_free(&r1);
            mock_free(&s);
        }
        sg_decode_result_free(&rb);
        sg_decode_result_free(&rg);
        mock_free(&m);
        mock_free(&mg);
    }
}

Test(decode, caller_work_graphs_are_reused)
{
    sg_graph *g0 = sg_graph_new(), *g1 = sg_graph_new();
    cr_assert(g0 && g1);
    sg_decode_opts o = beam_opts(3, SG_LP_AVG, 0.7, 1);
    o.work[0] = g0;
    o.work[1] = g1;
    for (int rep = 0; rep < 3; rep++) {
        mock m, ref;
        mock_init(&m, 8, 6, 18, 21);
        mock_init(&ref, 8, 6, 18, 21);
        sg_decode_result r, e;
        cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r), SG_OK);
        sg_decode_opts plain = beam_opts(3, SG_LP_AVG, 0.7, 1);
        cr_assert_eq(sg_decode_beam(&mock_ops, &ref, 6, lens6, &plain, &e), SG_OK);
        for (int64_t b = 0; b < 6; b++)
            assert_same_hyp(sg_decode_best(&r, b), sg_decode_best(&e, b), "work graphs");
        cr_assert(sg_graph_grad_enabled(g0) && sg_graph_grad_enabled(g1),
                  "grad mode restored");
        sg_decode_result_free(&r);
        sg_decode_result_free(&e);
        mock_free(&m);
        mock_free(&ref);
    }
    sg_graph_free(g0);
    sg_graph_free(g1);
}

Test(decode, zero_probability_tokens_are_never_chosen)
{
    mock m;
    mock_init(&m, 7, 6, 18, 1);
    m.bad = 6;   /* only </s> has mass */
    sg_decode_result r;
    sg_decode_opts o = beam_opts(3, SG_LP_AVG, 0.7, 3);
    cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r), SG_OK, "%s", sg_last_error());
    for (int64_t b = 0; b < 6; b++) {
        cr_assert_eq(sg_decode_count(&r, b), 1);
        const sg_hypothesis *h = sg_decode_best(&r, b);
        cr_assert(h->len == 0 && h->eos && h->n == 1 && h->logp == 0.0);
    }
    cr_assert_eq(m.t, 1);
    sg_decode_result_free(&r);
    mock_free(&m);

    mock_init(&m, 7, 6, 6, 1);
    m.bad = 6;
    cr_assert_eq(sg_decode_greedy(&mock_ops, &m, 6, lens6, NULL, &r), SG_OK);
    for (int64_t b = 0; b < 6; b++)
        cr_assert(sg_decode_best(&r, b)->len == 0 && sg_decode_best(&r, b)->eos);
    sg_decode_result_free(&r);
    mock_free(&m);

    mock_init(&m, 7, 6, 18, 1);
    m.bad = 5;   /* nothing has mass: one empty hypothesis with score -inf */
    cr_assert_eq(sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r), SG_OK, "%s", sg_last_error());
    for (int64_t b = 0; b < 6; b++) {
        cr_assert_eq(sg_decode_count(&r, b), 1);
        const sg_hypothesis *h = sg_decode_best(&r, b);
        cr_assert(h->len == 0 && !h->eos && h->score == -INFINITY);
    }
    sg_decode_result_free(&r);
    mock_free(&m);
}

/* ---- errors ------------------------------------------------------------------------ */

static void expect_error(int rc, int code, const char *needle, const sg_decode_result *r)
{
    cr_assert_eq(rc, code, "got %s, expected %s (%s)", sg_strerror(rc), sg_strerror(code),
                 sg_last_error());
    if (needle)
        cr_assert(strstr(sg_last_error(), needle), "message '%s' lacks '%s'", sg_last_error(),
                  needle);
    cr_assert(r->hyps == NULL && r->offset == NULL, "out written on error");
}

Test(decode, rejects_bad_arguments)
{
    mock m;
    mock_init(&m, 7, 2, 10, 1);
    const int64_t n_b[2] = {2, 3}, bad_len[2] = {2, 0};
    sg_decode_result r = {0};
    sg_decode_opts o = beam_opts(0, SG_LP_AVG, 0.7, 1);
    expect_error(sg_decode_beam(&mock_ops, &m, 2, n_b, &o, &r), SG_EINVAL, "beam width", &r);
    o = beam_opts(2, SG_LP_AVG, -1.0, 1);
    expect_error(sg_decode_beam(&mock_ops, &m, 2, n_b, &o, &r), SG_EINVAL, "alpha", &r);
    o = beam_opts(2, SG_LP_AVG, 0.7, 0);
    expect_error(sg_decode_beam(&mock_ops, &m, 2, n_b, &o, &r), SG_EINVAL, "n_best", &r);
    o = beam_opts(2, (sg_lp_kind)7, 0.7, 1);
    expect_error(sg_decode_beam(&mock_ops, &m, 2, n_b, &o, &r), SG_EINVAL, "penalty", &r);
    expect_error(sg_decode_beam(NULL, &m, 2, n_b, NULL, &r), SG_EINVAL, "ops", &r);
    sg_decoder_ops half = {mock_step, NULL};
    expect_error(sg_decode_greedy(&half, &m, 2, n_b, NULL, &r), SG_EINVAL, "select_rows", &r);
    expect_error(sg_decode_greedy(&mock_ops, &m, 0, n_b, NULL, &r), SG_EINVAL, "batch", &r);
    expect_error(sg_decode_greedy(&mock_ops, &m, 2, NULL, NULL, &r), SG_EINVAL, "src_len", &r);
    expect_error(sg_decode_beam(&mock_ops, &m, 2, bad_len, NULL, &r), SG_EINVAL, "src_len[1]",
                 &r);
    cr_assert_eq(sg_decode_greedy(&mock_ops, &m, 2, n_b, NULL, NULL), SG_EINVAL);
    o = beam_opts(2, SG_LP_AVG, 0.7, 1);
    o.work[0] = (sg_graph *)&m;   /* never used: rejected before */
    expect_error(sg_decode_beam(&mock_ops, &m, 2, n_b, &o, &r), SG_EINVAL, "work", &r);
    cr_assert_eq(m.t, 0, "the model was never called");
    mock_free(&m);
}

Test(decode, model_step_failure_propagates)
{
    for (int beam = 0; beam < 2; beam++) {
        mock m;
        mock_init(&m, 7, 6, 18, 1);
        m.fail_step = 3;
        sg_decode_result r = {0};
        sg_decode_opts o = beam_opts(3, SG_LP_AVG, 0.7, 2);
        int rc = beam ? sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r)
                      : sg_decode_greedy(&mock_ops, &m, 6, lens6, NULL, &r);
        expect_error(rc, SG_EIO, NULL, &r);
        cr_assert_eq(m.t, 3);
        mock_free(&m);

        mock_init(&m, 7, 6, 18, 1);
        m.eos_bias = 1.0;           /* rows finish, so greedy selects too */
        m.fail_select = 1;
        rc = beam ? sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r)
                  : sg_decode_greedy(&mock_ops, &m, 6, lens6, NULL, &r);
        if (m.t == 2)   /* a select happened after step 1 */
            expect_error(rc, SG_ESTATE, NULL, &r);
        else
            sg_decode_result_free(&r);
        mock_free(&m);
    }
}

Test(decode, bad_logits_are_reported)
{
    const struct { int bad, code; const char *needle; } cases[] = {
        {1, SG_ENUMERIC, "NaN"}, {2, SG_ESHAPE, "logits"}, {3, SG_EDTYPE, "i64"},
        {4, SG_EINVAL, "no logits"},
    };
    for (size_t c = 0; c < 4; c++) {
        for (int beam = 0; beam < 2; beam++) {
            mock m;
            mock_init(&m, 7, 6, 12, 1);
            m.bad = cases[c].bad;
            m.eos_bias = -5;
            sg_decode_result r = {0};
            sg_decode_opts o = beam_opts(2, SG_LP_AVG, 0.7, 1);
            int rc = beam ? sg_decode_beam(&mock_ops, &m, 6, lens6, &o, &r)
                          : sg_decode_greedy(&mock_ops, &m, 6, lens6, NULL, &r);
            expect_error(rc, cases[c].code, cases[c].needle, &r);
            mock_free(&m);
        }
    }
}

/* ---- PyTorch parity: the reference's greedy_decode / beam_search on a tiny RNN ----- */

/* h = tanh(emb[y] + U h + t c), logits = O h + bo; all f64 (tools/gen_fixtures_decode.py). */
typedef struct rnn_mock {
    sg_tensor *emb, *U, *c, *O, *bo;   /* [V,H], [H,H], [H], [V,H], [V] */
    int64_t V, H, R;
    double *h, *tmp;                   /* [cap, H] */
} rnn_mock;

static int rnn_step(void *u, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    rnn_mock *m = u;
    int64_t R = prev->shape[0], V = m->V, H = m->H;
    const double *E = m->emb->data, *U = m->U->data, *c = m->c->data, *O = m->O->data,
                 *bo = m->bo->data;
    const int64_t *y = prev->data;
    sg_tensor *x = sg_empty(g, SG_F64, 2, (int64_t[]){R, V});
    if (!x)
        return sg_graph_status(g);
    double *out = x->data, hn[16];
    for (int64_t r = 0; r < R; r++) {
        double *h = m->h + r * H;
        for (int64_t i = 0; i < H; i++) {
            double a = E[y[r] * H + i] + (double)t * c[i];
            for (int64_t j = 0; j < H; j++)
                a += U[i * H + j] * h[j];
            hn[i] = tanh(a);
        }
        memcpy(h, hn, (size_t)H * sizeof(double));
        for (int64_t v = 0; v < V; v++) {
            double a = bo[v];
            for (int64_t j = 0; j < H; j++)
                a += O[v * H + j] * h[j];
            out[r * V + v] = a;
        }
    }
    *logits = x;
    return SG_OK;
}

static int rnn_select(void *u, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    rnn_mock *m = u;
    (void)g;
    (void)sentence;
    const int64_t *p = parent->data;
    for (int64_t i = 0; i < parent->shape[0]; i++)
        memcpy(m->tmp + i * m->H, m->h + p[i] * m->H, (size_t)m->H * sizeof(double));
    double *sw = m->h;
    m->h = m->tmp;
    m->tmp = sw;
    return SG_OK;
}

Test(decode, matches_torch_reference_greedy_and_beam)
{
    static const char *cases[] = {"greedy", "beam1", "beam2", "beam3", "beam5",
                                  "beam3_gnmt", "beam4_alpha0", "beam4_alpha15"};
    hid_t f = fx_open("decode.h5");
    rnn_mock m = {.emb = fx_read(f, "model/emb", SG_F64), .U = fx_read(f, "model/U", SG_F64),
                  .c = fx_read(f, "model/c", SG_F64), .O = fx_read(f, "model/O", SG_F64),
                  .bo = fx_read(f, "model/bo", SG_F64)};
    sg_tensor *h0 = fx_read(f, "model/h0", SG_F64), *len = fx_read(f, "src_len", SG_I64);
    m.V = m.emb->shape[0];
    m.H = m.emb->shape[1];
    cr_assert_leq(m.H, 16);
    const int64_t B = len->shape[0];
    const sg_decoder_ops ops = {rnn_step, rnn_select};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[64];
        snprintf(path, sizeof path, "%s/beam", cases[c]);
        int64_t k = (int64_t)fx_scalar(f, path);
        snprintf(path, sizeof path, "%s/alpha", cases[c]);
        double alpha = fx_scalar(f, path);
        snprintf(path, sizeof path, "%s/gnmt", cases[c]);
        sg_lp_kind kind = fx_scalar(f, path) != 0 ? SG_LP_GNMT : SG_LP_AVG;
        snprintf(path, sizeof path, "%s/tokens", cases[c]);
        sg_tensor *toks = fx_read(f, path, SG_I64);
        snprintf(path, sizeof path, "%s/lengths", cases[c]);
        sg_tensor *lens = fx_read(f, path, SG_I64);

        int64_t cap = B * (k > 0 ? k : 1);
        m.h = calloc((size_t)(cap * m.H), sizeof(double));
        m.tmp = calloc((size_t)(cap * m.H), sizeof(double));
        memcpy(m.h, h0->data, (size_t)(B * m.H) * sizeof(double));
        sg_decode_result r;
        sg_decode_opts o = beam_opts(k, kind, alpha, 1);
        int rc = k == 0 ? sg_decode_greedy(&ops, &m, B, len->data, NULL, &r)
                        : sg_decode_beam(&ops, &m, B, len->data, &o, &r);
        cr_assert_eq(rc, SG_OK, "%s: %s", cases[c], sg_last_error());
        const int64_t *e = toks->data, *el = lens->data, L = toks->shape[1];
        for (int64_t b = 0; b < B; b++) {
            const sg_hypothesis *h = sg_decode_best(&r, b);
            cr_assert_eq(h->len, el[b], "%s sentence %lld: length %lld, torch %lld", cases[c],
                         (long long)b, (long long)h->len, (long long)el[b]);
            for (int64_t i = 0; i < el[b]; i++)
                cr_assert_eq(h->tokens[i], e[b * L + i], "%s sentence %lld token %lld", cases[c],
                             (long long)b, (long long)i);
        }
        sg_decode_result_free(&r);
        free(m.h);
        free(m.tmp);
        sg_tensor_free(toks);
        sg_tensor_free(lens);
    }
    sg_tensor_free(m.emb);
    sg_tensor_free(m.U);
    sg_tensor_free(m.c);
    sg_tensor_free(m.O);
    sg_tensor_free(m.bo);
    sg_tensor_free(h0);
    sg_tensor_free(len);
    H5Fclose(f);
}
