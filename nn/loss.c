/*
 * loss.c - fused cross entropy with ignore_index and label smoothing (MODELS.md 8.1,
 * PyTorch F.cross_entropy).
 *
 * Forward per row r of logits x [R, V] (R = tokens) with target y_r:
 *   lse_r = max_v x_rv + log sum_v exp(x_rv - max)
 *   l_r   = (1-eps)(lse_r - x_ry) + (eps/V) (V lse_r - sum_v x_rv)
 * Backward (dL = upstream gradient, s = dL/N for the mean, dL for the sum):
 *   dx_rv += s (softmax_rv - (1-eps)[v == y_r] - eps/V)   for counted rows only.
 * Only lse (R doubles) is saved; softmax is recomputed from x in the backward. The
 * generator's fused loss (linear_loss.c) uses sg__ce_rows_forward_grad instead: the
 * gradient written over logits only it sees, in the forward, one exp a logit.
 */
#include "nn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

/* Threads for R rows of V classes: 1 below ~64K elements (thread start-up dominates). */
static int row_threads(int64_t R, int64_t V)
{
    return R > 1 && R * V >= (1 << 16) ? sg__threads() : 1;
}

/* Row reductions in LANES independent lanes (the compiler maps them onto vector
 * registers); sums run in T within blocks of 256 and in double across blocks, so f32
 * rounding stays ~1e-7 relative even for an 8000-word vocabulary. */
#define LANES 8
/* The maximum is exact in any order: 32 lanes keep four vector chains busy (8 lanes
 * waited on one chain's latency). */
#define MAX_LANES 32
#define ROW_HELPERS(T, SUF, EXP)                                                            \
    SG_HOT static T row_max_##SUF(const T *x, int64_t V)                                    \
    {                                                                                       \
        T m[MAX_LANES];                                                                     \
        for (int u = 0; u < MAX_LANES; u++)                                                 \
            m[u] = x[0];                                                                    \
        int64_t v = 0;                                                                      \
        for (; v + MAX_LANES <= V; v += MAX_LANES)                                          \
            for (int u = 0; u < MAX_LANES; u++)                                             \
                m[u] = x[v + u] > m[u] ? x[v + u] : m[u];                                   \
        for (; v < V; v++)                                                                  \
            m[0] = x[v] > m[0] ? x[v] : m[0];                                               \
        T mx = m[0];                                                                        \
        for (int u = 1; u < MAX_LANES; u++)                                                 \
            mx = m[u] > mx ? m[u] : mx;                                                     \
        return mx;                                                                          \
    }                                                                                       \
    /* sum_v exp(x_v - mx) (arguments <= 0) */                                              \
    SG_HOT static double row_sumexp_##SUF(const T *x, int64_t V, T mx)                      \
    {                                                                                       \
        double s = 0;                                                                       \
        for (int64_t b = 0; b < V; b += 256) {                                              \
            int64_t e = V - b < 256 ? V : b + 256, v = b;                                   \
            T acc[LANES] = {0};                                                             \
            for (; v + LANES <= e; v += LANES)                                              \
                for (int u = 0; u < LANES; u++)                                             \
                    acc[u] += EXP(x[v + u] - mx);                                           \
            for (; v < e; v++)                                                              \
                acc[0] += EXP(x[v] - mx);                                                   \
            for (int u = 0; u < LANES; u++)                                                 \
                s += (double)acc[u];                                                        \
        }                                                                                   \
        return s;                                                                           \
    }                                                                                       \
    SG_HOT static double row_sum_##SUF(const T *x, int64_t V)                               \
    {                                                                                       \
        double s = 0;                                                                       \
        for (int64_t b = 0; b < V; b += 256) {                                              \
            int64_t e = V - b < 256 ? V : b + 256, v = b;                                   \
            T acc[LANES] = {0};                                                             \
            for (; v + LANES <= e; v += LANES)                                              \
                for (int u = 0; u < LANES; u++)                                             \
                    acc[u] += x[v + u];                                                     \
            for (; v < e; v++)                                                              \
                acc[0] += x[v];                                                             \
            for (int u = 0; u < LANES; u++)                                                 \
                s += (double)acc[u];                                                        \
        }                                                                                   \
        return s;                                                                           \
    }

/* l_r of a row with log-sum-exp l, target logit xy and logit sum sx (used if eps > 0) */
static inline double row_loss(double l, double xy, double sx, double eps, int64_t V)
{
    return (1 - eps) * (l - xy) + (eps > 0 ? eps / (double)V * ((double)V * l - sx) : 0);
}

/* The gradient of an ignored row is 0: writes it over the row and says so. */
static inline bool zero_if_ignored(void *row, size_t bytes, int64_t y, int64_t ignore)
{
    if (y != ignore)
        return false;
    memset(row, 0, bytes);
    return true;
}

/* Forward over contiguous x [R, V]: lse and the row loss l_r of counted rows. */
#define CE_KERNELS(T, SUF, EXP, LOG)                                                        \
    /* d[v] = ts exp(x[v] - l) - off (+ d[v] when acc): one row of the gradient */          \
    SG_HOT static void row_grad_##SUF(T *d, const T *x, int64_t V, T l, T ts, T off, bool acc) \
    {                                                                                       \
        if (acc)                                                                            \
            for (int64_t v = 0; v < V; v++)                                                 \
                d[v] += ts * EXP(x[v] - l) - off;                                           \
        else                                                                                \
            for (int64_t v = 0; v < V; v++)                                                 \
                d[v] = ts * EXP(x[v] - l) - off;                                            \
    }                                                                                       \
    static void ce_fwd_##SUF(const T *x, const int64_t *y, int64_t R, int64_t V,            \
                             int64_t ignore, double eps, int nt, double *lse, double *lrow) \
    {                                                                                       \
        SG_FOR(nt, r, R, {                                                                  \
            if (y[r] == ignore)                                                             \
                continue;                                                                   \
            const T *xr = x + r * V;                                                        \
            T mx = row_max_##SUF(xr, V);                                                    \
            double se = row_sumexp_##SUF(xr, V, mx);                                        \
            double sx = eps > 0 ? row_sum_##SUF(xr, V) : 0;                                 \
            double l = (double)mx + log(se);                                                \
            lse[r] = l;                                                                     \
            lrow[r] = row_loss(l, (double)xr[y[r]], sx, eps, V);                            \
        });                                                                                 \
    }                                                                                       \
    /* x [R, V] := s (softmax - target distribution) on counted rows, 0 on the others:   \
     * the gradient written over the logits it is computed from. */                         \
    static void ce_bwd_inplace_##SUF(T *x, const int64_t *y, const double *lse, int64_t R,   \
                                     int64_t V, int64_t ignore, double eps, double s, int nt) \
    {                                                                                       \
        const T ts = (T)s, off = (T)(s * eps / (double)V), hit = (T)(s * (1 - eps));        \
        SG_FOR(nt, r, R, {                                                                  \
            T *xr = x + r * V;                                                              \
            if (zero_if_ignored(xr, sizeof(T) * (size_t)V, y[r], ignore))                   \
                continue;                                                                   \
            row_grad_##SUF(xr, xr, V, (T)lse[r], ts, off, false);                           \
            xr[y[r]] -= hit;                                                                \
        });                                                                                 \
    }                                                                                       \
    /* dx [R, V] += s (softmax - target distribution) on counted rows. */                   \
    static void ce_bwd_##SUF(const T *x, const int64_t *y, const double *lse, int64_t R,    \
                             int64_t V, int64_t ignore, double eps, double s, int nt, T *dx) \
    {                                                                                       \
        const T ts = (T)s, off = (T)(s * eps / (double)V), hit = (T)(s * (1 - eps));        \
        SG_FOR(nt, r, R, {                                                                  \
            if (y[r] == ignore)                                                             \
                continue;                                                                   \
            const T *xr = x + r * V;                                                        \
            T *dr = dx + r * V;                                                             \
            row_grad_##SUF(dr, xr, V, (T)lse[r], ts, off, true);                            \
            dr[y[r]] -= hit;                                                                \
        });                                                                                 \
    }

/* Forward and gradient at once, over rows whose logits are not needed afterwards (the
 * generator's, linear_loss.c): exp(x - max) is written over the row while it is summed and
 * then scaled into the gradient, one exp per logit instead of two. A bias b (may be NULL)
 * is added to the logits on the fly (the generator's product is made without it, so the
 * [rows x V] logits are not first filled with copies of b), and db (may be NULL) gets the
 * column sums of the gradient rows while each row is still in cache. */
#define CE_FWD_GRAD_KERNELS(T, SUF, EXP)                                                    \
    SG_HOT static T row_max_bias_##SUF(const T *x, const T *bias, int64_t V)                \
    {                                                                                       \
        T m[MAX_LANES];                                                                     \
        for (int u = 0; u < MAX_LANES; u++)                                                 \
            m[u] = x[0] + bias[0];                                                          \
        int64_t v = 0;                                                                      \
        for (; v + MAX_LANES <= V; v += MAX_LANES)                                          \
            for (int u = 0; u < MAX_LANES; u++) {                                           \
                T z = x[v + u] + bias[v + u];                                               \
                m[u] = z > m[u] ? z : m[u];                                                 \
            }                                                                               \
        for (; v < V; v++) {                                                                \
            T z = x[v] + bias[v];                                                           \
            m[0] = z > m[0] ? z : m[0];                                                     \
        }                                                                                   \
        T mx = m[0];                                                                        \
        for (int u = 1; u < MAX_LANES; u++)                                                 \
            mx = m[u] > mx ? m[u] : mx;                                                     \
        return mx;                                                                          \
    }                                                                                       \
    /* x[v] := exp(x[v] (+ bias[v]) - mx); returns their sum (f32 summed in blocks of 256,  \
     * as above) */                                                                         \
    SG_HOT static double row_exp_inplace_##SUF(T *x, const T *bias, int64_t V, T mx)        \
    {                                                                                       \
        double s = 0;                                                                       \
        for (int64_t b = 0; b < V; b += 256) {                                              \
            int64_t e = V - b < 256 ? V : b + 256, v = b;                                   \
            T acc[LANES] = {0};                                                             \
            if (bias)                                                                       \
                for (; v + LANES <= e; v += LANES)                                          \
                    for (int u = 0; u < LANES; u++) {                                       \
                        T ev = EXP(x[v + u] + bias[v + u] - mx);                            \
                        x[v + u] = ev;                                                      \
                        acc[u] += ev;                                                       \
                    }                                                                       \
            else                                                                            \
                for (; v + LANES <= e; v += LANES)                                          \
                    for (int u = 0; u < LANES; u++) {                                       \
                        T ev = EXP(x[v + u] - mx);                                          \
                        x[v + u] = ev;                                                      \
                        acc[u] += ev;                                                       \
                    }                                                                       \
            for (; v < e; v++) {                                                            \
                T ev = EXP(x[v] + (bias ? bias[v] : (T)0) - mx);                            \
                x[v] = ev;                                                                  \
                acc[0] += ev;                                                               \
            }                                                                               \
            for (int u = 0; u < LANES; u++)                                                 \
                s += (double)acc[u];                                                        \
        }                                                                                   \
        return s;                                                                           \
    }                                                                                       \
    SG_HOT static void row_affine_##SUF(T *x, int64_t V, T a, T off)                        \
    {                                                                                       \
        for (int64_t v = 0; v < V; v++)                                                     \
            x[v] = x[v] * a - off;                                                          \
    }                                                                                       \
    SG_HOT static void row_add_##SUF(T *restrict d, const T *restrict x, int64_t V)         \
    {                                                                                       \
        for (int64_t v = 0; v < V; v++)                                                     \
            d[v] += x[v];                                                                   \
    }                                                                                       \
    static void ce_fwd_grad_##SUF(T *x, const T *bias, T *db, const int64_t *y, int64_t R,  \
                                  int64_t V, int64_t ignore, double eps, double s, int nt,  \
                                  double *lse, double *lrow)                                \
    {                                                                                       \
        const T off = (T)(s * eps / (double)V), hit = (T)(s * (1 - eps));                   \
        /* label smoothing's sum of a row's logits: the bias's share is the same in all */ \
        const double sb = eps > 0 && bias ? row_sum_##SUF(bias, V) : 0;                     \
        SG_FOR(nt, r, R, {                                                                  \
            T *xr = x + r * V;                                                              \
            if (zero_if_ignored(xr, sizeof(T) * (size_t)V, y[r], ignore))                   \
                continue;                                                                   \
            T mx = bias ? row_max_bias_##SUF(xr, bias, V) : row_max_##SUF(xr, V);           \
            double sx = 0, xy = (double)(xr[y[r]] + (bias ? bias[y[r]] : (T)0));           \
            if (eps > 0)                                                                    \
                sx = row_sum_##SUF(xr, V) + sb;                                             \
            double se = row_exp_inplace_##SUF(xr, bias, V, mx);                             \
            double l = (double)mx + log(se);                                                \
            lse[r] = l;                                                                     \
            lrow[r] = row_loss(l, xy, sx, eps, V);                                          \
            row_affine_##SUF(xr, V, (T)(s / se), off);                                      \
            xr[y[r]] -= hit;                                                                \
            if (db) /* one thread: rows in order, as sg__add_colsum adds them */            \
                row_add_##SUF(db, xr, V);                                                   \
        });                                                                                 \
    }

ROW_HELPERS(float, f32, sg__exp_nonposf)
ROW_HELPERS(double, f64, exp)
CE_KERNELS(float, f32, sg__exp_nonposf, logf)
CE_KERNELS(double, f64, exp, log)
CE_FWD_GRAD_KERNELS(float, f32, sg__exp_nonposf)
CE_FWD_GRAD_KERNELS(double, f64, exp)

/* Backward writing the gradient over the logits x (sg_cross_entropy_opts
 * .overwrite_logits): later consumers of x have already run their backward and
 * accumulated into x->grad, which is added in and released; x's producer, sg_linear,
 * does not read its output. */
static void ce_bwd_overwrite(sg_graph *g, sg_node *n, double s, int nt)
{
    sg_tensor *x = n->in[0], *y = n->in[1];
    int64_t V = n->i[1], R = n->i[2], ignore = n->i[0];
    if (x->dtype == SG_F32)
        ce_bwd_inplace_f32(x->data, y->data, n->saved, R, V, ignore, n->f[0], s, nt);
    else
        ce_bwd_inplace_f64(x->data, y->data, n->saved, R, V, ignore, n->f[0], s, nt);
    if (x->grad) {
        int64_t st[SG_MAX_DIMS];
        sg__contig_strides(x->ndim, x->shape, st);
        sg__accumulate(x->dtype, x->data, st, x->ndim, x->shape, x->grad, st);
        sg__grad_pool_put(&g->pool, x->grad);
    }
    x->grad = x->data; /* graph.c does not pool a gradient that is the tensor's data */
}

static void ce_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->in[1], *out = n->out[0];
    if (!x->requires_grad || !out->grad)
        return;
    int64_t V = n->i[1], R = n->i[2], ignore = n->i[0];
    double eps = n->f[0];
    double dL = x->dtype == SG_F32 ? (double)*(const float *)out->grad
                                   : *(const double *)out->grad;
    double s = dL * n->f[1];
    int nt = row_threads(R, V);
    if (n->i[3]) {
        ce_bwd_overwrite(g, n, s, nt);
        return;
    }
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    if (x->dtype == SG_F32)
        ce_bwd_f32(x->data, y->data, n->saved, R, V, ignore, eps, s, nt, dx);
    else
        ce_bwd_f64(x->data, y->data, n->saved, R, V, ignore, eps, s, nt, dx);
}

void sg__ce_rows_forward(sg_dtype dt, const void *x, const int64_t *y, int64_t R, int64_t V,
                         int64_t ignore, double eps, double *lse, double *lrow)
{
    int nt = row_threads(R, V);
    if (dt == SG_F32)
        ce_fwd_f32(x, y, R, V, ignore, eps, nt, lse, lrow);
    else
        ce_fwd_f64(x, y, R, V, ignore, eps, nt, lse, lrow);
}

void sg__ce_rows_forward_grad(sg_dtype dt, void *x, const void *bias, void *db,
                              const int64_t *y, int64_t R, int64_t V, int64_t ignore, double eps,
                              double s, double *lse, double *lrow)
{
    int nt = row_threads(R, V);
    void *db_rows = nt == 1 ? db : NULL; /* threads split the rows: column sums after */
    if (dt == SG_F32)
        ce_fwd_grad_f32(x, bias, db_rows, y, R, V, ignore, eps, s, nt, lse, lrow);
    else
        ce_fwd_grad_f64(x, bias, db_rows, y, R, V, ignore, eps, s, nt, lse, lrow);
    if (db && !db_rows)
        sg__add_colsum(dt, db, x, R, V, V);
}

bool sg__ce_prepare(sg_graph *g, const char *op, const sg_cross_entropy_opts *opts,
                    sg_tensor **targets, const sg_tensor *rows, const char *what, int64_t V,
                    sg_cross_entropy_opts *o, int64_t *N)
{
    *o = opts ? *opts : (sg_cross_entropy_opts){0};
    sg_tensor *t = *targets;
    bool same = t->ndim == rows->ndim - 1;
    for (int d = 0; same && d < t->ndim; d++)
        same = t->shape[d] == rows->shape[d];
    if (!same) {
        sg_graph_fail(g, SG_ESHAPE, "%s: targets %s do not match %s %s (expected the shape "
                                    "of the %s without its last dim)",
                      op, SG_SHAPE(t), what, SG_SHAPE(rows), what);
        return false;
    }
    if (t->dtype != SG_I64) {
        sg_graph_fail(g, SG_EDTYPE, "%s: targets must be i64, got %s", op, sg_dtype_name(t->dtype));
        return false;
    }
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1)) {
        sg_graph_fail(g, SG_EINVAL, "%s: label_smoothing %g is outside [0, 1]", op,
                      o->label_smoothing);
        return false;
    }
    if ((unsigned)o->reduction >= SG_REDUCTION_COUNT) {
        sg_graph_fail(g, SG_EINVAL, "%s: unknown reduction %d", op, (int)o->reduction);
        return false;
    }
    if (o->mean_over < 0) {
        sg_graph_fail(g, SG_EINVAL, "%s: mean_over %lld is negative", op, (long long)o->mean_over);
        return false;
    }
    if (!sg_tensor_is_contiguous(t) && !(t = *targets = sg_contiguous(g, t)))
        return false;
    const int64_t *y = t->data;
    int64_t R = sg_tensor_numel(t), n = 0;
    for (int64_t r = 0; r < R; r++) {
        if (y[r] == o->ignore_index)
            continue;
        if (y[r] < 0 || y[r] >= V) {
            sg_graph_fail(g, SG_ERANGE, "%s: target id %lld at position %lld of targets %s is "
                                        "outside the vocabulary [0, %lld)",
                          op, (long long)y[r], (long long)r, SG_SHAPE(t), (long long)V);
            return false;
        }
        n++;
    }
    *N = n;
    return true;
}

double sg__ce_total(const int64_t *y, int64_t R, int64_t ignore, const double *lrow)
{
    double total = 0; /* summed in row order: the same for any thread count */
    for (int64_t r = 0; r < R; r++)
        if (y[r] != ignore)
            total += lrow[r];
    return total;
}

double sg__ce_scale(const sg_cross_entropy_opts *o, int64_t N)
{
    /* all rows ignored: mean is 0 (not PyTorch's 0/0 = NaN) and no gradient flows */
    int64_t n = o->mean_over > 0 ? o->mean_over : N;
    return o->reduction == SG_REDUCTION_SUM ? 1.0 : n > 0 ? 1.0 / (double)n : 0.0;
}

sg_tensor *sg_cross_entropy_ex(sg_graph *g, sg_tensor *logits, sg_tensor *targets,
                               const sg_cross_entropy_opts *opts, sg_cross_entropy_stats *stats)
{
    static const char *op = "sg_cross_entropy";
    SG_NEED(g, logits, targets);
    if (!sg_dtype_is_float(logits->dtype))
        return sg_graph_fail(g, SG_EDTYPE, "%s: logits must be f32 or f64, got %s", op,
                             sg_dtype_name(logits->dtype));
    if (logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1)
        return sg_graph_fail(g, SG_ESHAPE, "%s: logits %s need a non-empty class (last) dim",
                             op, SG_SHAPE(logits));
    int64_t V = logits->shape[logits->ndim - 1], R = sg_tensor_numel(targets), N;
    sg_cross_entropy_opts o;
    if (!sg__ce_prepare(g, op, opts, &targets, logits, "logits", V, &o, &N))
        return NULL;
    if (!sg_tensor_is_contiguous(logits) && !(logits = sg_contiguous(g, logits)))
        return NULL;
    const int64_t *y = targets->data;
    int status0 = sg_graph_status(g);
    /* lse [R] is saved for the backward; lrow [R] is scratch (arena, freed with the step) */
    double *lse = sg_arena_alloc(sg_graph_arena(g), 2 * sizeof(double) * (size_t)(R ? R : 1));
    sg_tensor *loss = sg_empty(g, logits->dtype, 0, NULL);
    if (!lse || !loss)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory (%lld rows)", op, (long long)R);
    double eps = o.label_smoothing, *lrow = lse + R;
    sg__ce_rows_forward(logits->dtype, logits->data, y, R, V, o.ignore_index, eps, lse, lrow);
    double total = sg__ce_total(y, R, o.ignore_index, lrow), scale = sg__ce_scale(&o, N);
    double value = total * scale;
    if (logits->dtype == SG_F32)
        *(float *)loss->data = (float)value;
    else
        *(double *)loss->data = value;
    /* logits straight from sg_linear that nothing has consumed yet (see the option) */
    bool overwrite = o.overwrite_logits && sg__fresh_linear_output(g, logits);
    sg_tensor *ins[2] = {logits, targets};
    sg_node *n = sg_record(g, op, ce_bwd, 2, ins, 1, &loss);
    if (n) {
        n->saved = lse;
        n->f[0] = eps;
        n->f[1] = scale;
        n->i[0] = o.ignore_index;
        n->i[1] = V;
        n->i[2] = R;
        n->i[3] = overwrite;
    } else if (sg_graph_status(g) != status0) { /* recording failed (ENOMEM) */
        return NULL;
    }
    if (stats) {
        stats->n_tokens = N;
        stats->loss_sum = total;
    }
    return loss;
}

sg_tensor *sg_cross_entropy(sg_graph *g, sg_tensor *logits, sg_tensor *targets)
{
    return sg_cross_entropy_ex(g, logits, targets, NULL, NULL);
}
