/*
 * attn_ops.c - the fused per-step nodes of RNN attention:
 *   additive scores  e[b,j] = v . tanh(q[b] + K[b,j])          (Bahdanau, Luong concat)
 *   dot scores       e[b,j] = K[b,j] . q[b]                    (Luong dot, general)
 *   context          alpha = masked softmax(e) (x Gaussian), c = sum_j alpha_j V[b,j]
 * plus the source-validity helpers shared by the modules. Scores are computed only at
 * valid positions, so padding costs nothing per step. A memory's values are one more
 * node (sg__attn_values) to which the context steps leave their share of dV: it adds
 * them all at once, a row of dV at a time, where each step read and wrote the whole dV
 * (dates-bahdanau training 6-9% faster at 1 thread).
 */
#include "attn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <string.h>

/* ---- validity --------------------------------------------------------------------- */

uint8_t *sg__key_validity(sg_graph *g, const char *op, int64_t B, int64_t Lk, sg_tensor *lengths,
                          sg_tensor *mask, bool *ok)
{
    *ok = false;
    if (lengths && mask) {
        sg_graph_fail(g, SG_EINVAL, "%s: give lengths or a mask, not both", op);
        return NULL;
    }
    if (!lengths && !mask) {
        *ok = true;
        return NULL;
    }
    uint8_t *v = sg_arena_alloc(sg_graph_arena(g), (size_t)(B * Lk > 0 ? B * Lk : 1));
    if (!v) {
        sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        return NULL;
    }
    if (lengths) {
        if (lengths->dtype != SG_I64) {
            sg_graph_fail(g, SG_EDTYPE, "%s: lengths must be i64, got %s", op,
                          sg_dtype_name(lengths->dtype));
            return NULL;
        }
        if (lengths->ndim != 1 || lengths->shape[0] != B) {
            sg_graph_fail(g, SG_ESHAPE, "%s: lengths %s do not match batch %lld", op,
                          SG_SHAPE(lengths), (long long)B);
            return NULL;
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t n = ((const int64_t *)lengths->data)[b * lengths->stride[0]];
            if (n < 0 || n > Lk) {
                sg_graph_fail(g, SG_ERANGE, "%s: length %lld of row %lld is outside [0, %lld]", op,
                              (long long)n, (long long)b, (long long)Lk);
                return NULL;
            }
            for (int64_t j = 0; j < Lk; j++)
                v[b * Lk + j] = j < n;
        }
    } else {
        if (mask->dtype != SG_BOOL) {
            sg_graph_fail(g, SG_EDTYPE, "%s: mask must be bool, got %s", op,
                          sg_dtype_name(mask->dtype));
            return NULL;
        }
        if (mask->ndim != 2 || mask->shape[0] != B || mask->shape[1] != Lk) {
            sg_graph_fail(g, SG_ESHAPE, "%s: mask %s does not match [%lld,%lld]", op,
                          SG_SHAPE(mask), (long long)B, (long long)Lk);
            return NULL;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Lk; j++) {
                const uint8_t *p = (const uint8_t *)mask->data + b * mask->stride[0] +
                                   j * mask->stride[1];
                v[b * Lk + j] = *p != 0;
            }
    }
    *ok = true;
    return v;
}

int sg__attn_memory_init(sg_graph *g, const char *op, sg_tensor *values, sg_tensor *lengths,
                         sg_tensor *mask, sg_attn_memory *mem)
{
    if (!g)
        return sg__error(SG_EINVAL, "%s: graph is NULL", op);
    if (!values || !mem) {
        if (sg_graph_status(g) != SG_OK)
            return sg_graph_status(g);
        sg_graph_fail(g, SG_EINVAL, "%s: %s is NULL", op, values ? "mem" : "values");
        return SG_EINVAL;
    }
    if (!sg__check_float(g, op, values))
        return SG_EDTYPE;
    if (values->ndim != 3) {
        sg_graph_fail(g, SG_ESHAPE, "%s: values must be [B, S, H], got %s", op, SG_SHAPE(values));
        return SG_ESHAPE;
    }
    int64_t B = values->shape[0], S = values->shape[1];
    bool ok;
    uint8_t *valid = sg__key_validity(g, op, B, S, lengths, mask, &ok);
    if (!ok)
        return sg_graph_status(g);
    int64_t *len = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)(B ? B : 1));
    if (!len || (!valid && !(valid = sg_arena_alloc(sg_graph_arena(g),
                                                    (size_t)(B * S > 0 ? B * S : 1))))) {
        sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        return SG_ENOMEM;
    }
    if (!lengths && !mask)
        memset(valid, 1, (size_t)(B * S));
    for (int64_t b = 0; b < B; b++) {
        len[b] = 0;
        for (int64_t j = 0; j < S; j++)
            len[b] += valid[b * S + j];
    }
    memset(mem, 0, sizeof *mem);
    /* a node that adds the context steps' dV at once (when the graph records) */
    mem->values = sg__attn_values(g, values, valid);
    if (!mem->values)
        return sg_graph_status(g);
    mem->tanh_kept = sg_arena_calloc(sg_graph_arena(g), sizeof *mem->tanh_kept);
    if (!mem->tanh_kept) {
        sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        return SG_ENOMEM;
    }
    mem->valid = valid;
    mem->len = len;
    mem->B = B;
    mem->S = S;
    return SG_OK;
}

bool sg__attn_check_query(sg_graph *g, const char *op, const sg_attn_memory *mem,
                          const sg_tensor *q, int64_t width)
{
    if (!sg__check_same_float(g, op, q, mem->values))
        return false;
    if (q->ndim != 2 || q->shape[0] != mem->B || q->shape[1] != width) {
        sg_graph_fail(g, SG_ESHAPE, "%s: query %s must be [%lld,%lld] (memory batch %lld)", op,
                      SG_SHAPE(q), (long long)mem->B, (long long)width, (long long)mem->B);
        return false;
    }
    return true;
}

/* ---- kernels ----------------------------------------------------------------------- */


/* x . y in 32 lanes summed in a fixed order: it vectorises (two AVX-512 or four AVX2
 * accumulators, so the FMAs do not wait on each other's latency) and does not depend on
 * the vector width or the thread count. Inlined into the row kernels' clones (a
 * clone-dispatched call per key costs about as much as a 256-float dot). */
static inline __attribute__((always_inline)) float dot32_f32(int64_t n, const float *restrict x,
                                                             const float *restrict y)
{
    float acc[32] = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 32; l++)
            acc[l] += x[i + l] * y[i + l];
    float tail = 0;
    for (; i < n; i++)
        tail += x[i] * y[i];
    for (int w = 16; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0] + tail;
}

/* One batch row of the additive scores: t_j = tanh(q + K_j), e_j = v . t_j for its S
 * keys (0 where invalid). One clone for the whole row, so tanh and the dot inline (a
 * call per key to clone-dispatched helpers cost two indirect calls per 128 floats); the
 * dot sums in 16 lanes, which the AVX-512 clone runs as one vector (with 8 its tanh ran
 * at half width: dates' scores kernel 23% slower), in a fixed order. GCC only
 * if-converts (and so vectorises) the selects of sg__tanhf without trapping-math, which
 * the build turns off. */
static inline __attribute__((always_inline)) void
additive_keys_f32(int64_t S, int64_t A, const float *restrict q, const float *restrict K,
                  const float *restrict v, const uint8_t *valid, float *restrict t,
                  float *restrict e, const bool keep_t)
{
    for (int64_t j = 0; j < S; j++) {
        e[j] = 0;
        if (valid && !valid[j])
            continue;
        const float *kj = K + j * A;
        float *tj = keep_t ? t + j * A : NULL, acc[16] = {0}, tail = 0;
        int64_t a = 0;
        for (; a + 16 <= A; a += 16)
            for (int l = 0; l < 16; l++) {
                float x = sg__tanhf(q[a + l] + kj[a + l]);
                if (keep_t)
                    tj[a + l] = x;
                acc[l] += v[a + l] * x;
            }
        for (; a < A; a++) {
            float x = sg__tanhf(q[a] + kj[a]);
            if (keep_t)
                tj[a] = x;
            tail += v[a] * x;
        }
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++)
                acc[l] += acc[l + w];
        e[j] = acc[0] + tail;
    }
}

#if SG_HAVE_TANH8
/* additive_keys_f32 for A a multiple of 16 with AVX2 + FMA: the same sums in the same
 * order (16 lanes, then halves folded 8, 4, 2, 1). */
__attribute__((target("avx2,fma"))) static void
additive_row_avx2(int64_t S, int64_t A, const float *restrict q, const float *restrict K,
                  const float *restrict v, const uint8_t *valid, float *restrict t,
                  float *restrict e)
{
    for (int64_t j = 0; j < S; j++) {
        e[j] = 0;
        if (valid && !valid[j])
            continue;
        const float *kj = K + j * A;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (int64_t a = 0; a < A; a += 16) {
            __m256 x0 = sg__tanh8(_mm256_add_ps(_mm256_loadu_ps(q + a), _mm256_loadu_ps(kj + a)));
            __m256 x1 =
                sg__tanh8(_mm256_add_ps(_mm256_loadu_ps(q + a + 8), _mm256_loadu_ps(kj + a + 8)));
            if (t) {
                _mm256_storeu_ps(t + j * A + a, x0);
                _mm256_storeu_ps(t + j * A + a + 8, x1);
            }
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + a), x0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + a + 8), x1, acc1);
        }
        __m256 s8 = _mm256_add_ps(acc0, acc1);                          /* w = 8 */
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));               /* w = 2 */
        __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));          /* w = 1 */
        e[j] = _mm_cvtss_f32(s1) + 0.0f;
    }
}
#endif

/* t == NULL: no backward will read the tanh values (decoding), so they are not stored:
 * for a beam of 320 rows that is megabytes of writes a step. */
SG_HOT static void additive_row_f32(int64_t S, int64_t A, const float *restrict q,
                                    const float *restrict K, const float *restrict v,
                                    const uint8_t *valid, float *restrict t, float *restrict e)
{
#if SG_HAVE_TANH8
    if (A % 16 == 0 && sg__avx2_rows_on()) {
        additive_row_avx2(S, A, q, K, v, valid, t, e);
        return;
    }
#endif
    if (t)
        additive_keys_f32(S, A, q, K, v, valid, t, e, true);
    else
        additive_keys_f32(S, A, q, K, v, valid, NULL, e, false);
}

/* One batch row of the additive backward: du = de_j v (1 - t_j^2) into dq and dK_j. */
SG_HOT static void additive_bwd_row_f32(int64_t S, int64_t A, const float *restrict v,
                                        const float *restrict t, const uint8_t *valid,
                                        const float *restrict de, float *restrict dq,
                                        float *restrict dK)
{
    for (int64_t j = 0; j < S; j++) {
        if ((valid && !valid[j]) || de[j] == 0)
            continue;
        const float *tj = t + j * A;
        float g = de[j];
        if (dq && dK)
            for (int64_t a = 0; a < A; a++) {
                float du = g * v[a] * (1 - tj[a] * tj[a]);
                dq[a] += du;
                dK[j * A + a] += du;
            }
        else if (dq)
            for (int64_t a = 0; a < A; a++)
                dq[a] += g * v[a] * (1 - tj[a] * tj[a]);
        else
            for (int64_t a = 0; a < A; a++)
                dK[j * A + a] += g * v[a] * (1 - tj[a] * tj[a]);
    }
}

static double dot_f64(int64_t n, const double *x, const double *y)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += x[i] * y[i];
    return acc;
}

static void tanh_add_f64(int64_t n, const double *restrict a, const double *restrict b,
                         double *restrict out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = tanh(a[i] + b[i]);
}

static void additive_row_f64(int64_t S, int64_t A, const double *q, const double *K,
                             const double *v, const uint8_t *valid, double *t, double *e)
{
    for (int64_t j = 0; j < S; j++) {
        e[j] = 0;
        if (valid && !valid[j])
            continue;
        tanh_add_f64(A, q, K + j * A, t + j * A);
        e[j] = dot_f64(A, v, t + j * A);
    }
}

static void additive_bwd_row_f64(int64_t S, int64_t A, const double *v, const double *t,
                                 const uint8_t *valid, const double *de, double *dq, double *dK)
{
    for (int64_t j = 0; j < S; j++) {
        if ((valid && !valid[j]) || de[j] == 0)
            continue;
        const double *tj = t + j * A;
        for (int64_t a = 0; a < A; a++) {
            double du = de[j] * v[a] * (1 - tj[a] * tj[a]);
            if (dq)
                dq[a] += du;
            if (dK)
                dK[j * A + a] += du;
        }
    }
}

/* One batch row of the context: a = softmax(e) over the valid keys (all 0 if none), the
 * weights w = a (times the local-p Gaussian G when has_pos), c = sum_j w_j V_j. A clone
 * per row (f32), like the additive scores: the weighted sum of the value rows is the
 * step's longest loop in decoding. */
#define CONTEXT_ROW(T, SUF, EXP, ATTR)                                                       \
    ATTR static void context_row_##SUF(int64_t S, int64_t D, const T *restrict eb,           \
                                       const T *restrict Vb, const uint8_t *vb, T pos,       \
                                       bool has_pos, T inv2s2, T *restrict ab,               \
                                       T *restrict Gb, T *restrict wb, T *restrict cb)       \
    {                                                                                        \
        T mx = -INFINITY;                                                                    \
        for (int64_t j = 0; j < S; j++)                                                      \
            if ((!vb || vb[j]) && eb[j] > mx)                                                \
                mx = eb[j];                                                                  \
        for (int64_t k = 0; k < D; k++)                                                      \
            cb[k] = 0;                                                                       \
        if (mx == -INFINITY) {                                                               \
            for (int64_t j = 0; j < S; j++)                                                  \
                ab[j] = wb[j] = 0;                                                           \
            return;                                                                          \
        }                                                                                    \
        T sum = 0;                                                                           \
        for (int64_t j = 0; j < S; j++) {                                                    \
            ab[j] = (!vb || vb[j]) ? EXP(eb[j] - mx) : 0;                                    \
            sum += ab[j];                                                                    \
        }                                                                                    \
        T inv = 1 / sum;                                                                     \
        for (int64_t j = 0; j < S; j++) {                                                    \
            ab[j] *= inv;                                                                    \
            wb[j] = ab[j];                                                                   \
            if (has_pos) {                                                                   \
                T dist = (T)j - pos;                                                         \
                Gb[j] = EXP(-(dist * dist) * inv2s2);                                        \
                wb[j] = ab[j] * Gb[j];                                                       \
            }                                                                                \
            if (wb[j] == 0)                                                                  \
                continue;                                                                    \
            const T *vj = Vb + j * D, wj = wb[j];                                            \
            for (int64_t k = 0; k < D; k++)                                                  \
                cb[k] += wj * vj[k];                                                         \
        }                                                                                    \
    }
CONTEXT_ROW(float, f32, expf, SG_HOT)
CONTEXT_ROW(double, f64, exp, )
#undef CONTEXT_ROW

/* One batch row of the context backward (see context_bwd below for the formulas). */
#define CONTEXT_BWD_ROW(T, SUF, DOT, ATTR)                                                   \
    ATTR static void context_bwd_row_##SUF(                                                  \
        int64_t S, int64_t D, const T *restrict Vb, const uint8_t *vb, T pos, bool has_pos,  \
        T inv2s2, const T *restrict ab, const T *restrict Gb, const T *restrict wb,          \
        const T *restrict dcb, const T *restrict dwb, T *restrict scratch, T *restrict deb,  \
        T *restrict dVb, T *restrict dposb)                                                  \
    {                                                                                        \
        T s = 0;                                                                             \
        for (int64_t j = 0; j < S; j++) {                                                    \
            scratch[j] = 0;                                                                  \
            if ((vb && !vb[j]) || ab[j] == 0)                                                \
                continue;                                                                    \
            T dwj = dwb ? dwb[j] : 0;                                                        \
            if (dcb) {                                                                       \
                dwj += DOT(D, dcb, Vb + j * D);                                              \
                if (dVb) {                                                                   \
                    T *dvj = dVb + j * D, wj = wb[j];                                        \
                    for (int64_t k = 0; k < D; k++)                                          \
                        dvj[k] += wj * dcb[k];                                               \
                }                                                                            \
            }                                                                                \
            T daj = dwj;                                                                     \
            if (has_pos) {                                                                   \
                T gj = Gb[j];                                                                \
                daj = dwj * gj;                                                              \
                if (dposb)                                                                   \
                    *dposb += dwj * ab[j] * gj * ((T)j - pos) * 2 * inv2s2;                  \
            }                                                                                \
            scratch[j] = daj;                                                                \
            s += ab[j] * daj;                                                                \
        }                                                                                    \
        if (deb)                                                                             \
            for (int64_t j = 0; j < S; j++)                                                  \
                if (ab[j] != 0)                                                              \
                    deb[j] += ab[j] * (scratch[j] - s);                                      \
    }
CONTEXT_BWD_ROW(float, f32, dot32_f32, SG_HOT)
CONTEXT_BWD_ROW(double, f64, dot_f64, )
#undef CONTEXT_BWD_ROW

/* One batch row of the dot scores e_j = K_j . q and of their backward dq += de_j K_j,
 * dK_j += de_j q: a clone per row (f32), the dot inlined. */
#define DOT_ROWS(T, SUF, DOT, ATTR)                                                          \
    ATTR static void dot_fwd_row_##SUF(int64_t S, int64_t A, const T *restrict qb,            \
                                       const T *restrict Kb, const uint8_t *vb,              \
                                       T *restrict eb)                                       \
    {                                                                                        \
        for (int64_t j = 0; j < S; j++)                                                      \
            eb[j] = !vb || vb[j] ? DOT(A, Kb + j * A, qb) : 0;                               \
    }                                                                                        \
    ATTR static void dot_bwd_row_##SUF(int64_t S, int64_t A, const T *restrict qb,            \
                                       const T *restrict Kb, const uint8_t *vb,              \
                                       const T *restrict deb, T *restrict dqb,               \
                                       T *restrict dKb)                                      \
    {                                                                                        \
        for (int64_t j = 0; j < S; j++) {                                                    \
            if ((vb && !vb[j]) || deb[j] == 0)                                               \
                continue;                                                                    \
            const T g = deb[j], *kj = Kb + j * A;                                            \
            if (dqb)                                                                         \
                for (int64_t a = 0; a < A; a++)                                              \
                    dqb[a] += g * kj[a];                                                     \
            if (dKb)                                                                         \
                for (int64_t a = 0; a < A; a++)                                              \
                    dKb[j * A + a] += g * qb[a];                                             \
        }                                                                                    \
    }
DOT_ROWS(float, f32, dot32_f32, SG_HOT)
DOT_ROWS(double, f64, dot_f64, )
#undef DOT_ROWS

/* out[a] += sum over rows j (in order) of w_j x[j, a], skipping masked rows and w_j = 0:
 * the additive energy vector's gradient, sum_j de_j t_j over every key of the batch. */
#define WEIGHTED_ROW_SUM(T, SUF, ATTR)                                                       \
    ATTR static void weighted_row_sum_##SUF(int64_t n, int64_t A, const T *restrict x,       \
                                            const uint8_t *valid, const T *restrict w,       \
                                            T *restrict out)                                 \
    {                                                                                        \
        for (int64_t j = 0; j < n; j++) {                                                    \
            if ((valid && !valid[j]) || w[j] == 0)                                           \
                continue;                                                                    \
            const T *xj = x + j * A, wj = w[j];                                              \
            for (int64_t a = 0; a < A; a++)                                                  \
                out[a] += wj * xj[a];                                                        \
        }                                                                                    \
    }
WEIGHTED_ROW_SUM(float, f32, SG_HOT)
WEIGHTED_ROW_SUM(double, f64, )
#undef WEIGHTED_ROW_SUM

/* Rows b are independent in every kernel below, so they split across threads with SG_FOR
 * (results do not depend on the thread count). Small problems stay serial. */
#define ROW_THREADS(work) ((work) > 32768 ? sg__threads() : 1)

#define ATTN_KERNELS(T, SUF, EXP)                                                      \
    /* rows (may be NULL): the key row of each query row (a beam's hypotheses share their \
     * sentence's keys, which then stay in cache while its rows run) */                     \
    static void additive_fwd_##SUF(int64_t B, int64_t S, int64_t A, const T *q, const T *K,   \
                                   const T *v, const uint8_t *valid, const int64_t *rows,    \
                                   T *t, T *e)                                               \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * A);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            int64_t r = rows ? rows[b] : b;                                                  \
            additive_row_##SUF(S, A, q + b * A, K + r * S * A, v, valid ? valid + r * S : NULL, \
                               t ? t + b * S * A : NULL, e + b * S);                         \
        });                                                                                  \
    }                                                                                        \
    /* e = v . t, t = tanh(q + K):  dv += de t;  du = de v (1 - t^2);  dq += du;  dK += du */ \
    static void additive_bwd_##SUF(int64_t B, int64_t S, int64_t A, const T *v, const T *t,   \
                                   const uint8_t *valid, const T *de, T *dq, T *dK, T *dv)    \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * A);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            if (dq || dK)                                                                    \
                additive_bwd_row_##SUF(S, A, v, t + b * S * A, valid ? valid + b * S : NULL,   \
                                       de + b * S, dq ? dq + b * A : NULL,                   \
                                       dK ? dK + b * S * A : NULL);                          \
        });                                                                                  \
        if (dv) /* shared by all rows: serial, in a fixed order */                           \
            weighted_row_sum_##SUF(B * S, A, t, valid, de, dv);                              \
    }                                                                                        \
    static void dot_fwd_##SUF(int64_t B, int64_t S, int64_t A, const T *q, const T *K,        \
                              const uint8_t *valid, const int64_t *rows, T *e)               \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * A);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            int64_t r = rows ? rows[b] : b; /* the key row, as in additive_fwd */            \
            dot_fwd_row_##SUF(S, A, q + b * A, K + r * S * A, valid ? valid + r * S : NULL,   \
                              e + b * S);                                                    \
        });                                                                                  \
    }                                                                                        \
    /* e = K q:  dq += de K;  dK += de q */                                                  \
    static void dot_bwd_##SUF(int64_t B, int64_t S, int64_t A, const T *q, const T *K,        \
                              const uint8_t *valid, const T *de, T *dq, T *dK)               \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * A);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            dot_bwd_row_##SUF(S, A, q + b * A, K + b * S * A, valid ? valid + b * S : NULL,   \
                              de + b * S, dq ? dq + b * A : NULL, dK ? dK + b * S * A : NULL); \
        });                                                                                  \
    }                                                                                        \
    /* a = softmax over valid j; w = a G (G = Gaussian around pos, or 1); c = sum_j w_j V_j */ \
    static void context_fwd_##SUF(int64_t B, int64_t S, int64_t D, const T *e, const T *V,    \
                                  const uint8_t *valid, const int64_t *rows, const T *pos,   \
                                  T inv2s2, T *a, T *G, T *w, T *c)                          \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * D);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            int64_t r = rows ? rows[b] : b; /* the value row, as in additive_fwd */          \
            context_row_##SUF(S, D, e + b * S, V + r * S * D, valid ? valid + r * S : NULL,  \
                              pos ? pos[b] : 0, pos != NULL, inv2s2, a + b * S,              \
                              pos ? G + b * S : NULL, w + b * S, c + b * D);                 \
        });                                                                                  \
    }                                                                                        \
    /* dw_j = dalpha_j + dc . V_j;  dV_j += w_j dc (dV NULL: left to a values node);       \
     * dpos += sum_j dw_j a_j G_j (j - pos) / sigma^2;  de_j += a_j (da_j - sum a da) */     \
    static void context_bwd_##SUF(int64_t B, int64_t S, int64_t D, const T *V,               \
                                  const uint8_t *valid, const T *pos, T inv2s2, const T *a,  \
                                  const T *G, const T *w, const T *dc, const T *dw_out,      \
                                  T *scratch_all, T *de, T *dV, T *dpos)                     \
    {                                                                                        \
        int nt = ROW_THREADS(B * S * D);                                                     \
        SG_FOR(nt, b, B, {                                                                   \
            context_bwd_row_##SUF(S, D, V + b * S * D, valid ? valid + b * S : NULL,          \
                                  pos ? pos[b] : 0, pos != NULL, inv2s2, a + b * S,          \
                                  pos ? G + b * S : NULL, w + b * S, dc ? dc + b * D : NULL, \
                                  dw_out ? dw_out + b * S : NULL, scratch_all + b * S,       \
                                  de ? de + b * S : NULL, dV ? dV + b * S * D : NULL,        \
                                  dpos ? dpos + b : NULL);                                   \
        });                                                                                  \
    }

/* dV[b, j] += sum over the steps k (in order) of w_k[b, j] dc_k[b]: the value gradient
 * of n context steps at once (sg__attn_values), one row of dV at a time. */
#define VALUES_BWD(T, SUF, ATTR)                                                             \
    ATTR static void values_bwd_row_##SUF(int64_t n, int64_t S, int64_t D, int64_t b,        \
                                          const uint8_t *vb, const void *const *w,           \
                                          const void *const *dc, T *restrict dVb)            \
    {                                                                                        \
        for (int64_t j = 0; j < S; j++) {                                                    \
            if (vb && !vb[j])                                                                \
                continue;                                                                    \
            T *dvj = dVb + j * D;                                                            \
            for (int64_t k = 0; k < n; k++) {                                                \
                T wj = ((const T *)w[k])[b * S + j];                                         \
                if (wj == 0)                                                                 \
                    continue;                                                                \
                const T *dck = (const T *)dc[k] + b * D;                                     \
                for (int64_t i = 0; i < D; i++)                                              \
                    dvj[i] += wj * dck[i];                                                   \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    static void values_bwd_##SUF(int64_t n, int64_t B, int64_t S, int64_t D,                 \
                                 const uint8_t *valid, const void *const *w,                 \
                                 const void *const *dc, T *dV)                               \
    {                                                                                        \
        int nt = ROW_THREADS(n * B * S * D);                                                 \
        SG_FOR(nt, b, B, {                                                                   \
            values_bwd_row_##SUF(n, S, D, b, valid ? valid + b * S : NULL, w, dc,             \
                                 dV + b * S * D);                                            \
        });                                                                                  \
    }

ATTN_KERNELS(float, f32, expf)
ATTN_KERNELS(double, f64, exp)
VALUES_BWD(float, f32, SG_HOT)
VALUES_BWD(double, f64, )
#undef VALUES_BWD

/* ---- additive scores ---------------------------------------------------------------- */

/* Tanh values of the additive scores up to this many bytes a call, and this many in all
 * for one attention memory (one forward), are kept for the backward; the others are made
 * again there, from the same inputs by the same kernel (the same values): enfr-bahdanau's
 * decoder kept [64 x S x 256] floats a step, ~30 MB of a 141 MB forward at 24 steps, and
 * its short-source batches (S <= 16, 1 MB a step) still 17 MB of a 45 MB step, its
 * largest (with the budget: peak RSS 315 -> 309.5 MB, same speed); dates-bahdanau's
 * calls (at most 1 MiB, 11 a forward) keep theirs and do not pay the second tanh, but for
 * one call of its longest batches. 10 MiB, not 12: enfr-bahdanau's batch of 15 source
 * words kept 12 calls' worth, which made its arena the largest of all batches (39.7 MiB
 * against 37.8); peak RSS 281.1 -> 279.4 MB. */
#define ADDITIVE_KEEP_BYTES ((size_t)1 << 20)
#define ADDITIVE_KEEP_TOTAL ((size_t)10 << 20)

static void additive_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *q = n->in[0], *K = n->in[1], *v = n->in[2], *e = n->out[0];
    int64_t B = K->shape[0], S = K->shape[1], A = K->shape[2];
    void *dq = sg_grad_of(g, q), *dK = sg_grad_of(g, K), *dv = sg_grad_of(g, v);
    const uint8_t *valid = (const uint8_t *)(intptr_t)n->i[0];
    size_t es = sg_dtype_size(e->dtype);
    void *t = n->saved, *again = NULL, *e_again = NULL;
    if (!t) {
        again = sg__scratch_get(g, es * (size_t)(B * S * A), "sg_attn_additive_scores backward");
        e_again = sg__scratch_get(g, es * (size_t)(B * S), "sg_attn_additive_scores backward");
        if (!again || !e_again)
            goto done;
        t = again;
        if (e->dtype == SG_F32)
            additive_fwd_f32(B, S, A, q->data, K->data, v->data, valid, NULL, t, e_again);
        else
            additive_fwd_f64(B, S, A, q->data, K->data, v->data, valid, NULL, t, e_again);
    }
    if (e->dtype == SG_F32)
        additive_bwd_f32(B, S, A, v->data, t, valid, e->grad, dq, dK, dv);
    else
        additive_bwd_f64(B, S, A, v->data, t, valid, e->grad, dq, dK, dv);
done:
    sg__scratch_put(g, e_again);
    sg__scratch_put(g, again);
}

/* Makes x contiguous (copying through the graph when needed). */
static sg_tensor *contig(sg_graph *g, sg_tensor *x)
{
    return sg_tensor_is_contiguous(x) ? x : sg_contiguous(g, x);
}

/* A decoding row map (sg_attn_memory.rows): B query rows reading rows of a memory of Bm;
 * only for an op that records nothing (SG_EINVAL), every row in [0, Bm) (SG_ERANGE). */
static bool check_row_map(sg_graph *g, const char *op, const int64_t *rows, int64_t B,
                          int64_t Bm, int n_in, sg_tensor *const *ins)
{
    if (sg__will_record(g, n_in, ins)) {
        sg_graph_fail(g, SG_EINVAL, "%s: a row map is for decoding without gradients", op);
        return false;
    }
    for (int64_t b = 0; b < B; b++)
        if (rows[b] < 0 || rows[b] >= Bm) {
            sg_graph_fail(g, SG_ERANGE, "%s: row %lld reads memory row %lld of %lld", op,
                          (long long)b, (long long)rows[b], (long long)Bm);
            return false;
        }
    return true;
}

/* q [B, A] against keys [B, S, A], or keys [Bm, S, A] when mapped (read through a row map,
 * checked by check_row_map). */
static bool check_qk(sg_graph *g, const char *op, const sg_tensor *q, const sg_tensor *K,
                     bool mapped)
{
    if (!sg__check_same_float(g, op, q, K))
        return false;
    if (K->ndim != 3 || q->ndim != 2 || (!mapped && q->shape[0] != K->shape[0]) ||
        q->shape[1] != K->shape[2]) {
        sg_graph_fail(g, SG_ESHAPE, "%s: query %s does not match keys %s (want [B, A] and "
                                    "[B, S, A])",
                      op, SG_SHAPE(q), SG_SHAPE(K));
        return false;
    }
    return true;
}

sg_tensor *sg__attn_additive_scores_rows(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                         sg_tensor *v, const uint8_t *valid, const int64_t *rows,
                                         size_t *kept)
{
    const char *op = "sg_attn_additive_scores";
    SG_NEED(g, q, keys, v);
    if (!check_qk(g, op, q, keys, rows != NULL) || !sg__check_same_float(g, op, q, v) ||
        (rows && !check_row_map(g, op, rows, q->shape[0], keys->shape[0], 3,
                                (sg_tensor *[]){q, keys, v})))
        return NULL;
    int64_t B = q->shape[0], S = keys->shape[1], A = keys->shape[2];
    if (sg_tensor_numel(v) != A || v->ndim > 2 || (v->ndim == 2 && v->shape[0] != 1))
        return sg_graph_fail(g, SG_ESHAPE, "%s: energy weight %s must be [1, %lld]", op,
                             SG_SHAPE(v), (long long)A);
    q = contig(g, q);
    keys = contig(g, keys);
    v = contig(g, v);
    SG_NEED(q, keys, v);
    size_t es = sg_dtype_size(q->dtype);
    sg_tensor *e = sg_empty(g, q->dtype, 2, (int64_t[]){B, S});
    sg_tensor *ins[3] = {q, keys, v};
    /* the tanh values: kept for the backward when small (ADDITIVE_KEEP_BYTES, and the
     * memory's budget *kept), else made again there; the f64 kernel always writes them
     * (into scratch when not kept) */
    size_t t_bytes = es * (size_t)(B * S * A > 0 ? B * S * A : 1);
    bool keep_t = sg__will_record(g, 3, ins) && t_bytes <= ADDITIVE_KEEP_BYTES &&
                  (!kept || *kept + t_bytes <= ADDITIVE_KEEP_TOTAL);
    if (keep_t && kept)
        *kept += t_bytes;
    bool scratch_t = !keep_t && q->dtype != SG_F32;
    void *t = keep_t      ? sg_arena_alloc(sg_graph_arena(g), t_bytes)
              : scratch_t ? sg__scratch_get(g, t_bytes, op)
                          : NULL;
    if (!e || ((keep_t || scratch_t) && !t)) {
        if (scratch_t)
            sg__scratch_put(g, t);
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    }
    if (q->dtype == SG_F32)
        additive_fwd_f32(B, S, A, q->data, keys->data, v->data, valid, rows, t, e->data);
    else
        additive_fwd_f64(B, S, A, q->data, keys->data, v->data, valid, rows, t, e->data);
    if (scratch_t)
        sg__scratch_put(g, t);
    sg_node *n = sg_record(g, op, additive_bwd, 3, ins, 1, &e);
    if (n) {
        n->saved = keep_t ? t : NULL;
        n->i[0] = (int64_t)(intptr_t)valid;
    }
    return e;
}

sg_tensor *sg_attn_additive_scores(sg_graph *g, sg_tensor *q, sg_tensor *keys, sg_tensor *v,
                                   const uint8_t *valid)
{
    return sg__attn_additive_scores_rows(g, q, keys, v, valid, NULL, NULL);
}

/* ---- dot scores --------------------------------------------------------------------- */

static void dot_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *q = n->in[0], *K = n->in[1], *e = n->out[0];
    int64_t B = K->shape[0], S = K->shape[1], A = K->shape[2];
    void *dq = sg_grad_of(g, q), *dK = sg_grad_of(g, K);
    const uint8_t *valid = (const uint8_t *)(intptr_t)n->i[0];
    if (e->dtype == SG_F32)
        dot_bwd_f32(B, S, A, q->data, K->data, valid, e->grad, dq, dK);
    else
        dot_bwd_f64(B, S, A, q->data, K->data, valid, e->grad, dq, dK);
}

sg_tensor *sg__attn_dot_scores_rows(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                    const uint8_t *valid, const int64_t *rows)
{
    const char *op = "sg_attn_dot_scores";
    SG_NEED(g, q, keys);
    if (!check_qk(g, op, q, keys, rows != NULL) ||
        (rows && !check_row_map(g, op, rows, q->shape[0], keys->shape[0], 2,
                                (sg_tensor *[]){q, keys})))
        return NULL;
    int64_t B = q->shape[0], S = keys->shape[1], A = keys->shape[2];
    q = contig(g, q);
    keys = contig(g, keys);
    SG_NEED(q, keys);
    sg_tensor *e = sg_empty(g, q->dtype, 2, (int64_t[]){B, S});
    if (!e)
        return NULL;
    if (q->dtype == SG_F32)
        dot_fwd_f32(B, S, A, q->data, keys->data, valid, rows, e->data);
    else
        dot_fwd_f64(B, S, A, q->data, keys->data, valid, rows, e->data);
    sg_tensor *ins[2] = {q, keys};
    sg_node *n = sg_record(g, op, dot_bwd, 2, ins, 1, &e);
    if (n)
        n->i[0] = (int64_t)(intptr_t)valid;
    return e;
}

sg_tensor *sg_attn_dot_scores(sg_graph *g, sg_tensor *q, sg_tensor *keys, const uint8_t *valid)
{
    return sg__attn_dot_scores_rows(g, q, keys, valid, NULL);
}

/* ---- masked softmax + Gaussian + context ----------------------------------------------- */

typedef struct {
    void *a, *G;          /* softmax [B, S]; Gaussian factors [B, S] or NULL */
    const uint8_t *valid; /* [B, S] or NULL */
    struct deferred_step *defer; /* when the values are a values node's output */
} context_saved;

/* ---- values whose gradient the context steps leave to one node ------------------------ */

/* A context step over a values node (sg__attn_values), made in forward: its weights, its
 * slot k in the stash of the steps' dc, and whether its backward put dc there. */
typedef struct deferred_step {
    const void *w;
    int64_t k;
    bool done;
    struct deferred_step *next;
} deferred_step;

typedef struct {
    deferred_step *head; /* the step made last first */
    int64_t n;
    const uint8_t *valid;
} values_saved;

/* out[0] is the values (a view), out[1] the stash: a header [n, B, D] whose "gradient"
 * holds the steps' dc, slot k for step k (a pool buffer, freed with the node's other
 * output gradients, also when a backward stops early). */
static void values_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *V = n->in[0], *Vd = n->out[0], *stash = n->out[1];
    values_saved *sv = n->saved;
    int64_t B = V->shape[0], S = V->shape[1], D = V->shape[2], k = 0;
    bool fresh = false;
    void *dV = sg__grad_for_write(g, V, &fresh);
    if (!dV)
        return;
    size_t es = sg_dtype_size(V->dtype), bytes = es * (size_t)(B * S * D);
    if (Vd->grad && fresh) /* other consumers of the values (the steps wrote none) */
        memcpy(dV, Vd->grad, bytes);
    else if (Vd->grad)
        sg__accumulate(V->dtype, dV, V->stride, V->ndim, V->shape, Vd->grad, V->stride);
    else if (fresh)
        memset(dV, 0, bytes);
    /* the steps in the order their backward ran (the last made first): each element sums
     * them as the steps would have one after another */
    const void **w = sv->n ? sg__scratch_get(g, 2 * sizeof *w * (size_t)sv->n, n->name) : NULL;
    if (!w)
        return; /* no steps, or ENOMEM (recorded) */
    const void **dc = w + sv->n;
    for (deferred_step *d = sv->head; d; d = d->next) {
        if (!d->done || !stash->grad)
            continue;
        d->done = false; /* consumed: a second backward of this graph finds none */
        w[k] = d->w;
        dc[k++] = (const char *)stash->grad + (size_t)(d->k * B * D) * es;
    }
    if (V->dtype == SG_F32)
        values_bwd_f32(k, B, S, D, sv->valid, w, dc, dV);
    else
        values_bwd_f64(k, B, S, D, sv->valid, w, dc, dV);
    sg__scratch_put(g, w);
}

sg_tensor *sg__attn_values(sg_graph *g, sg_tensor *values, const uint8_t *valid)
{
    SG_NEED(g, values);
    if (!sg__will_record(g, 1, &values) || values->ndim != 3)
        return values;
    values = contig(g, values);
    SG_NEED(values);
    sg_tensor *out = sg__view_header(g, values), *stash = sg__view_header(g, values);
    values_saved *sv = sg_arena_alloc(sg_graph_arena(g), sizeof *sv);
    if (!out || !stash || !sv)
        return sg_graph_fail(g, SG_ENOMEM, "sg_attn_values: out of memory");
    *sv = (values_saved){.valid = valid};
    /* [n, B, D], n growing with the steps; its data is never read */
    stash->shape[0] = 0;
    stash->shape[1] = values->shape[0];
    stash->shape[2] = values->shape[2];
    sg_node *n = sg_record(g, "sg_attn_values", values_bwd, 1, &values, 2,
                           (sg_tensor *[]){out, stash});
    if (n)
        n->saved = sv;
    return out;
}

/* A context step over V: when V is a values node's output, a new step of it (forward);
 * NULL otherwise or on ENOMEM (recorded). */
static deferred_step *defer_step(sg_graph *g, const sg_tensor *V, const sg_tensor *w)
{
    if (!V->node || V->node->backward != values_bwd)
        return NULL;
    values_saved *vs = V->node->saved;
    deferred_step *d = sg_arena_alloc(sg_graph_arena(g), sizeof *d);
    if (!d) {
        sg_graph_fail(g, SG_ENOMEM, "sg_attn_context: out of memory");
        return NULL;
    }
    *d = (deferred_step){.w = w->data, .k = vs->n++, .next = vs->head};
    vs->head = d;
    V->node->out[1]->shape[0] = vs->n;
    return d;
}

/* Puts the step's dc into its slot of the values node's stash (backward); false on
 * ENOMEM (recorded). */
static bool defer_dV(sg_graph *g, const sg_tensor *V, deferred_step *d, const sg_tensor *c)
{
    if (!c->grad)
        return true; /* no dc: this step adds nothing to dV */
    bool fresh;
    char *stash = sg__grad_for_write(g, V->node->out[1], &fresh);
    if (!stash)
        return false;
    size_t bytes = sg_dtype_size(c->dtype) * (size_t)sg_tensor_numel(c);
    memcpy(stash + (size_t)d->k * bytes, c->grad, bytes);
    d->done = true;
    return true;
}

static void context_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *e = n->in[0], *V = n->in[1], *pos = n->n_in > 2 ? n->in[2] : NULL;
    sg_tensor *c = n->out[0], *w = n->out[1];
    const context_saved *sv = n->saved;
    int64_t B = V->shape[0], S = V->shape[1], D = V->shape[2];
    if (!c->grad && !w->grad)
        return;
    if (sv->defer && !defer_dV(g, V, sv->defer, c))
        return;
    void *de = sg_grad_of(g, e), *dpos = pos ? sg_grad_of(g, pos) : NULL;
    void *dV = sv->defer ? NULL : sg_grad_of(g, V);
    void *scratch =
        sg__scratch_get(g, sg_dtype_size(e->dtype) * (size_t)(B * S), "sg_attn_context");
    if (!scratch)
        return;
    if (e->dtype == SG_F32)
        context_bwd_f32(B, S, D, V->data, sv->valid, pos ? pos->data : NULL, (float)n->f[0],
                        sv->a, sv->G, w->data, c->grad, w->grad, scratch, de, dV, dpos);
    else
        context_bwd_f64(B, S, D, V->data, sv->valid, pos ? pos->data : NULL, n->f[0], sv->a,
                        sv->G, w->data, c->grad, w->grad, scratch, de, dV, dpos);
    sg__scratch_put(g, scratch);
}

sg_tensor *sg__attn_context_rows(sg_graph *g, sg_tensor *scores, sg_tensor *values,
                                 const uint8_t *valid, const int64_t *rows, sg_tensor *pos,
                                 double sigma, sg_tensor **weights)
{
    const char *op = "sg_attn_context";
    SG_NEED(g, scores, values);
    if (!sg__check_same_float(g, op, scores, values) ||
        (pos && !sg__check_same_float(g, op, scores, pos)))
        return NULL;
    if (values->ndim != 3 || scores->ndim != 2 ||
        (!rows && scores->shape[0] != values->shape[0]) || scores->shape[1] != values->shape[1])
        return sg_graph_fail(g, SG_ESHAPE, "%s: scores %s do not match values %s (want [B, S] "
                                           "and [B, S, D])",
                             op, SG_SHAPE(scores), SG_SHAPE(values));
    int64_t B = scores->shape[0], S = values->shape[1], D = values->shape[2];
    if (rows && pos)
        return sg_graph_fail(g, SG_EINVAL, "%s: a row map takes no positions", op);
    if (rows && !check_row_map(g, op, rows, B, values->shape[0], 2,
                               (sg_tensor *[]){scores, values}))
        return NULL;
    if (pos && sg_tensor_numel(pos) != B)
        return sg_graph_fail(g, SG_ESHAPE, "%s: positions %s must have %lld elements", op,
                             SG_SHAPE(pos), (long long)B);
    if (pos && !(sigma > 0))
        return sg_graph_fail(g, SG_EINVAL, "%s: sigma %g must be > 0", op, sigma);
    sg_tensor *pos_in = pos;
    scores = contig(g, scores);
    values = contig(g, values);
    if (pos)
        pos = contig(g, pos);
    SG_NEED(scores, values);
    if (pos_in && !pos)
        return NULL;
    size_t es = sg_dtype_size(scores->dtype), bs = es * (size_t)(B * S > 0 ? B * S : 1);
    sg_tensor *c = sg_empty(g, scores->dtype, 2, (int64_t[]){B, D});
    sg_tensor *w = sg_empty(g, scores->dtype, 2, (int64_t[]){B, S});
    context_saved *sv = sg_arena_alloc(sg_graph_arena(g), sizeof *sv);
    if (!c || !w || !sv)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    sv->valid = valid;
    sv->defer = NULL;
    sv->a = pos ? sg_arena_alloc(sg_graph_arena(g), bs) : w->data;
    sv->G = pos ? sg_arena_alloc(sg_graph_arena(g), bs) : NULL;
    if (!sv->a || (pos && !sv->G))
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    double inv2s2 = pos ? 1.0 / (2.0 * sigma * sigma) : 0;
    if (scores->dtype == SG_F32)
        context_fwd_f32(B, S, D, scores->data, values->data, valid, rows,
                        pos ? pos->data : NULL, (float)inv2s2, sv->a, sv->G, w->data, c->data);
    else
        context_fwd_f64(B, S, D, scores->data, values->data, valid, rows,
                        pos ? pos->data : NULL, inv2s2, sv->a, sv->G, w->data, c->data);
    sg_tensor *ins[3] = {scores, values, pos};
    sg_tensor *outs[2] = {c, w};
    sg_node *n = sg_record(g, op, context_bwd, pos ? 3 : 2, ins, 2, outs);
    if (n && !(sv->defer = defer_step(g, values, w)) && sg_graph_status(g) != SG_OK)
        return NULL;
    if (n) {
        n->saved = sv;
        n->f[0] = inv2s2;
    }
    if (weights)
        *weights = w;
    return c;
}

sg_tensor *sg_attn_context(sg_graph *g, sg_tensor *scores, sg_tensor *values, const uint8_t *valid,
                           sg_tensor *pos, double sigma, sg_tensor **weights)
{
    return sg__attn_context_rows(g, scores, values, valid, NULL, pos, sigma, weights);
}
