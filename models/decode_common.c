/* decode_common.c - what greedy and beam search share: checks, step graphs, log-probs. */
#include "decode_internal.h"
#include "../autograd/autograd_internal.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sg_decode_opts sg_decode_opts_default(void)
{
    return (sg_decode_opts){.beam = 5, .alpha = 0.7, .penalty = SG_LP_AVG, .n_best = 1};
}

int64_t sg_decode_max_len(int64_t n_b)
{
    return n_b < 1 ? -1 : 2 * (n_b - 1) + 10;
}

double sg_length_penalty(sg_lp_kind kind, double alpha, int64_t n)
{
    if (alpha == 0.0)
        return 1.0;
    return kind == SG_LP_GNMT ? pow((5.0 + (double)n) / 6.0, alpha) : pow((double)n, alpha);
}

void sg_decode_result_free(sg_decode_result *r)
{
    if (!r)
        return;
    free(r->offset);
    free(r->hyps);
    free(r->tokens_);
    memset(r, 0, sizeof *r);
}

int sg__decode_check(const char *fn, const sg_decoder_ops *ops, int64_t batch,
                     const int64_t *src_len, const sg_decode_opts *opts,
                     const sg_decode_result *out)
{
    if (!ops || !ops->step || !ops->select_rows)
        return sg__error(SG_EINVAL, "%s: ops is NULL or lacks step/select_rows", fn);
    if (!out)
        return sg__error(SG_EINVAL, "%s: out is NULL", fn);
    if (batch < 1)
        return sg__error(SG_EINVAL, "%s: batch must be >= 1 (got %lld)", fn, (long long)batch);
    if (!src_len)
        return sg__error(SG_EINVAL, "%s: src_len is NULL", fn);
    for (int64_t b = 0; b < batch; b++)
        if (src_len[b] < 1)
            return sg__error(SG_EINVAL, "%s: src_len[%lld] = %lld, must be >= 1 (</s> included)",
                             fn, (long long)b, (long long)src_len[b]);
    if (opts && (!opts->work[0]) != (!opts->work[1]))
        return sg__error(SG_EINVAL, "%s: opts->work needs both graphs or none", fn);
    if (opts && opts->weights && (opts->weights == opts->work[0] || opts->weights == opts->work[1]))
        return sg__error(SG_EINVAL, "%s: opts->weights must not be one of opts->work", fn);
    if (opts && opts->max_len < 0)
        return sg__error(SG_EINVAL, "%s: opts->max_len must be >= 0 (0: MODELS.md rule; got %lld)",
                         fn, (long long)opts->max_len);
    return SG_OK;
}

int sg__decode_work_init(sg__decode_work *w, const sg_decode_opts *opts)
{
    memset(w, 0, sizeof *w);
    if (opts && opts->work[0]) {
        w->g[0] = opts->work[0];
        w->g[1] = opts->work[1];
    } else {
        w->owned = true;
        w->g[0] = sg_graph_new();
        w->g[1] = sg_graph_new();
        if (!w->g[0] || !w->g[1]) {
            sg__decode_work_free(w);
            return sg__error(SG_ENOMEM, "sg_decode: cannot allocate the step graphs");
        }
    }
    if (opts && opts->weights) {
        w->weights = opts->weights;
    } else if ((w->weights = sg_graph_new())) {
        w->weights_owned = true;
    } else {
        sg__decode_work_free(w);
        return sg__error(SG_ENOMEM, "sg_decode: cannot allocate the weights graph");
    }
    for (int i = 0; i < 2; i++) {
        sg_graph_reset(w->g[i]);
        w->grad_was[i] = sg_graph_set_grad_enabled(w->g[i], false);
        sg__graph_set_weight_home(w->g[i], w->weights);
    }
    return SG_OK;
}

void sg__decode_work_free(sg__decode_work *w)
{
    for (int i = 0; i < 2; i++) {
        if (!w->g[i])
            continue;
        sg__graph_set_weight_home(w->g[i], NULL);
        if (w->owned) {
            sg_graph_free(w->g[i]);
        } else {
            sg_graph_reset(w->g[i]);
            sg_graph_set_grad_enabled(w->g[i], w->grad_was[i]);
        }
        w->g[i] = NULL;
    }
    if (w->weights_owned)
        sg_graph_free(w->weights);
    w->weights = NULL;
}

static bool row_lse_ok(const sg_tensor *logits, int64_t r, double *lse);

/* lse of every row of logits [R, V] into an array of g's arena; rows are independent,
 * so they split across threads (the result does not depend on the split). Errors are
 * reported for the first bad row, from the calling thread. */
static int rows_lse(const char *fn, sg_graph *g, const sg_tensor *logits, int64_t t,
                    const double **out)
{
    int64_t R = logits->shape[0], V = logits->shape[1];
    double *lse = sg_arena_alloc(sg_graph_arena(g), sizeof(double) * (size_t)(R ? R : 1));
    if (!lse)
        return sg__error(SG_ENOMEM, "%s: out of memory at step %lld", fn, (long long)t);
    int nt = R > 1 && R * V >= (1 << 16) ? sg__threads() : 1;
    /* a bad row's lse is marked NaN (a good row's is finite or +inf), then named in order */
    SG_FOR(nt, r, R, {
        if (!row_lse_ok(logits, r, &lse[r]))
            lse[r] = NAN;
    });
    for (int64_t r = 0; r < R; r++) {
        int rc = lse[r] == lse[r] ? SG_OK : sg__decode_row_lse(fn, logits, r, t, &lse[r]);
        if (rc != SG_OK) /* its message made here, on the calling thread */
            return rc;
    }
    *out = lse;
    return SG_OK;
}

int sg__decode_step(const char *fn, const sg_decoder_ops *ops, void *model, sg__decode_work *w,
                    const int64_t *prev_tok, int64_t R, int64_t t, sg_tensor **logits, int64_t *V,
                    const double **lse_out)
{
    sg_graph *g = w->g[t & 1];
    sg_graph_reset(g);   /* frees step t-2's tensors; step t-1's stay for the model */
    sg_tensor *prev = sg_empty(g, SG_I64, 1, &R);
    if (!prev)
        return sg_graph_status(g) ? sg_graph_status(g) : SG_ENOMEM;
    memcpy(prev->data, prev_tok, (size_t)R * sizeof(int64_t));
    sg_tensor *x = NULL;
    int rc = ops->step(model, g, prev, t, &x);
    if (rc != SG_OK)
        return rc;
    if (!x)
        return sg__error(SG_EINVAL, "%s: step %lld returned SG_OK but no logits", fn, (long long)t);
    if (!sg_dtype_is_float(x->dtype))
        return sg__error(SG_EDTYPE, "%s: step %lld returned %s logits, expected f32 or f64", fn,
                         (long long)t, sg_dtype_name(x->dtype));
    if (x->ndim != 2 || x->shape[0] != R || x->shape[1] < 4 || (t > 0 && x->shape[1] != *V))
        return sg__error(SG_ESHAPE, "%s: step %lld returned logits %s, expected [%lld, V] with "
                         "V >= 4%s", fn, (long long)t, SG_SHAPE(x), (long long)R,
                         t > 0 ? " and V as at step 0" : "");
    *V = x->shape[1];
    *logits = x;
    return rows_lse(fn, g, x, t, lse_out);
}

/* Row of V values of type T with element stride s -> *lse (double). f32 rows use expf:
 * the reference's log_softmax is f32 too, and exp dominates the decoder's own cost. */
#define LSE_ROW(T, EXP, ON_BAD)                                                    \
    do {                                                                           \
        const T *x = (const T *)row;                                               \
        T m = -INFINITY;                                                           \
        bool nan = false;                                                          \
        for (int64_t v = 0; v < V; v++) {                                          \
            nan |= isnan(x[v * s]);                                                \
            m = x[v * s] > m ? x[v * s] : m;                                       \
        }                                                                          \
        if (nan || m == (T)INFINITY)                                               \
            ON_BAD;                                                                \
        if (m == -(T)INFINITY) { /* every logit -inf: probability 0 everywhere */  \
            *lse = INFINITY;                                                       \
            break;                                                                 \
        }                                                                          \
        double sum = 0.0;                                                          \
        for (int64_t v = 0; v < V; v++)                                            \
            sum += (double)EXP(x[v * s] - m);                                      \
        *lse = (double)m + log(sum);                                               \
    } while (0)

/* A contiguous f32 row in 8 independent lanes (a fixed order, so the result does not
 * depend on the vector width): max, then sum of exp(x - max) in double. false on NaN or
 * +inf; *lse = +inf when every logit is -inf. */
SG_HOT static bool lse_f32_contiguous(const float *x, int64_t V, double *lse)
{
    float mx[8], chk[8] = {0}; /* chk stays 0 unless some x is NaN or inf (x * 0) */
    for (int l = 0; l < 8; l++)
        mx[l] = -INFINITY;
    int64_t v = 0;
    for (; v + 8 <= V; v += 8)
        for (int l = 0; l < 8; l++) {
            float xv = x[v + l];
            chk[l] += xv * 0.0f;
            mx[l] = xv > mx[l] ? xv : mx[l];
        }
    for (; v < V; v++) {
        chk[0] += x[v] * 0.0f;
        mx[0] = x[v] > mx[0] ? x[v] : mx[0];
    }
    float m = -INFINITY;
    bool inf_or_nan = false;
    for (int l = 0; l < 8; l++) {
        inf_or_nan |= chk[l] != 0.0f;
        m = mx[l] > m ? mx[l] : m;
    }
    if (inf_or_nan) { /* -inf logits are allowed (probability 0), NaN and +inf are not */
        for (v = 0; v < V; v++)
            if (x[v] != x[v] || x[v] == INFINITY)
                return false;
    }
    if (m == -INFINITY) { /* every logit -inf: probability 0 everywhere */
        *lse = INFINITY;
        return true;
    }
    double acc[8] = {0};
    for (v = 0; v + 8 <= V; v += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (double)sg__exp_nonposf(x[v + l] - m);
    for (; v < V; v++)
        acc[0] += (double)sg__exp_nonposf(x[v] - m);
    double sum = 0;
    for (int l = 0; l < 8; l++)
        sum += acc[l];
    *lse = (double)m + log(sum);
    return true;
}

static int bad_row(const char *fn, int64_t r, int64_t t)
{
    return sg__error(SG_ENUMERIC, "%s: step %lld row %lld has NaN or +inf logits", fn,
                     (long long)t, (long long)r);
}

/* sg__decode_row_lse without a message (safe on any thread): false on NaN/+inf. */
static bool row_lse_ok(const sg_tensor *logits, int64_t r, double *lse)
{
    if (logits->dtype == SG_F32 && logits->stride[1] == 1)
        return lse_f32_contiguous(sg__decode_row(logits, r), logits->shape[1], lse);
    int64_t V = logits->shape[1], s = logits->stride[1];
    const void *row = sg__decode_row(logits, r);
    if (logits->dtype == SG_F32)
        LSE_ROW(float, expf, return false);
    else
        LSE_ROW(double, exp, return false);
    return true;
}

int sg__decode_row_lse(const char *fn, const sg_tensor *logits, int64_t r, int64_t t,
                       double *lse)
{
    int64_t V = logits->shape[1], s = logits->stride[1];
    const void *row = sg__decode_row(logits, r);
    if (logits->dtype == SG_F32 && s == 1) {
        if (!lse_f32_contiguous(row, V, lse))
            return bad_row(fn, r, t);
    } else if (logits->dtype == SG_F32) {
        LSE_ROW(float, expf, return bad_row(fn, r, t));
    } else {
        LSE_ROW(double, exp, return bad_row(fn, r, t));
    }
    return SG_OK;
}

int sg__decode_select(const sg_decoder_ops *ops, void *model, sg__decode_work *w, int64_t t,
                      const int64_t *parent, const int64_t *sentence, int64_t R)
{
    sg_graph *g = w->g[t & 1];
    sg_tensor *p = sg_empty(g, SG_I64, 1, &R), *s = sg_empty(g, SG_I64, 1, &R);
    if (!p || !s)
        return sg_graph_status(g) ? sg_graph_status(g) : SG_ENOMEM;
    memcpy(p->data, parent, (size_t)R * sizeof(int64_t));
    memcpy(s->data, sentence, (size_t)R * sizeof(int64_t));
    return ops->select_rows(model, g, p, s);
}

int sg__decode_result_alloc(sg_decode_result *out, int64_t batch, int64_t n_hyps,
                            int64_t n_tokens)
{
    memset(out, 0, sizeof *out);
    out->batch = batch;
    out->offset = malloc((size_t)(batch + 1) * sizeof *out->offset);
    out->hyps = calloc((size_t)n_hyps, sizeof *out->hyps);
    out->tokens_ = malloc((size_t)(n_tokens > 0 ? n_tokens : 1) * sizeof *out->tokens_);
    if (!out->offset || !out->hyps || !out->tokens_) {
        sg_decode_result_free(out);
        return sg__error(SG_ENOMEM, "sg_decode: cannot allocate the result (%lld hypotheses, "
                         "%lld tokens)", (long long)n_hyps, (long long)n_tokens);
    }
    return SG_OK;
}
