/* graph.c - the tape: graphs, node recording, gradient buffers, backward, creation. */
#include "autograd_internal.h"
#include "fastmath.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

sg_graph *sg_graph_new(void)
{
    sg_graph *g = calloc(1, sizeof *g);
    if (!g) {
        sg__error(SG_ENOMEM, "sg_graph_new: out of memory");
        return NULL;
    }
    g->arena = sg_arena_new(0);
    if (!g->arena) {
        free(g);
        return NULL;
    }
    g->grad_enabled = true;
    /* 40 MiB keeps every enfr-transformer batch's feed-forward hidden layers: making them
     * again was 6% of its products (33.65 -> 31.65 GFLOP a step when kept), and keeping
     * them costs 33 MB of peak RSS (245.6 -> 278.3 MB, 0.29 of PyTorch's): +9% tokens/s
     * at 1 thread, +7% at 2 (medians of 4 alternating pairs). A longer batch keeps its
     * first layers'. */
    g->keep_budget = SG_GRAPH_KEEP_DEFAULT;
    return g;
}

/* Gradient bytes of t. */
static size_t grad_bytes(const sg_tensor *t)
{
    return (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype);
}

/* Returns the pooled gradients of n's outputs. */
static void release_out_grads(sg_graph *g, sg_node *n)
{
    for (int k = 0; k < n->n_out; k++) {
        sg_tensor *t = n->out[k];
        if (t->grad && t->node == n && t->grad != t->data) { /* not one written over data */
            sg__grad_pool_put(&g->pool, t->grad);
            t->grad = NULL;
        }
    }
}

/* Gradients that backward did not reach (it failed, or never ran) go back to the pool. */
static void release_all_grads(sg_graph *g)
{
    for (sg_node *n = g->tape; n; n = n->prev)
        release_out_grads(g, n);
}

void sg_graph_free(sg_graph *g)
{
    if (!g)
        return;
    release_all_grads(g);
    assert(g->pool.live == 0); /* ops put their scratch back */
    sg__graph_drop_weight_copies(g);
    sg_arena_free(g->arena);
    free(g);
}

void sg_graph_reset(sg_graph *g)
{
    release_all_grads(g);
    assert(g->pool.live == 0);
    sg_arena_reset(g->arena);
    sg__graph_drop_weight_copies(g);
    g->tape = NULL;
    g->n_nodes = 0;
    g->kept_bytes = 0;
    g->status = SG_OK;
}

int sg_graph_status(const sg_graph *g) { return g->status; }

bool sg_graph_set_grad_enabled(sg_graph *g, bool enabled)
{
    bool prev = g->grad_enabled;
    g->grad_enabled = enabled;
    return prev;
}

bool sg_graph_grad_enabled(const sg_graph *g) { return g->grad_enabled; }

sg_arena *sg_graph_arena(sg_graph *g) { return g->arena; }

int64_t sg_graph_node_count(const sg_graph *g) { return g->n_nodes; }

size_t sg_graph_set_keep_budget(sg_graph *g, size_t bytes)
{
    if (!g)
        return 0;
    size_t prev = g->keep_budget;
    g->keep_budget = bytes;
    return prev;
}

bool sg__graph_keep(sg_graph *g, size_t bytes)
{
    if (bytes > g->keep_budget || g->kept_bytes > g->keep_budget - bytes)
        return false;
    g->kept_bytes += bytes;
    return true;
}

const sg_node *sg__graph_last_node(const sg_graph *g) { return g->tape; }

void *sg_graph_fail(sg_graph *g, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sg__error(code, "%s", msg);
    if (g && g->status == SG_OK)
        g->status = code;
    return NULL;
}

int sg__dim(int dim, int ndim)
{
    if (dim < 0)
        dim += ndim;
    return (dim < 0 || dim >= ndim) ? -1 : dim;
}

void sg__contig_strides(int ndim, const int64_t *shape, int64_t *out)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        out[d] = s;
        s *= shape[d];
    }
}

sg_tensor *sg_empty(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape)
{
    if (!g)
        return NULL;
    sg_tensor *t = sg_arena_alloc(g->arena, sizeof *t);
    if (!t)
        return sg_graph_fail(g, SG_ENOMEM, "sg_empty: out of memory");
    memset(t, 0, sizeof *t);
    int64_t n = sg__init_contiguous(t, dt, ndim, shape);
    if (n < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_empty: invalid dtype %d, ndim %d or shape %s (or "
                                           "too large)",
                             (int)dt, ndim,
                             ndim >= 0 && ndim <= SG_MAX_DIMS && shape ? SG_DIMS(ndim, shape) : "");
    t->data = sg_arena_alloc(g->arena, (size_t)n * sg_dtype_size(dt));
    if (!t->data)
        return sg_graph_fail(g, SG_ENOMEM, "sg_empty: cannot allocate %lld elements",
                             (long long)n);
    return t;
}

sg_tensor *sg__view_header(sg_graph *g, const sg_tensor *x)
{
    sg_tensor *t = sg_arena_alloc(g->arena, sizeof *t);
    if (!t)
        return sg_graph_fail(g, SG_ENOMEM, "view: out of memory");
    *t = *x;
    t->grad = NULL;
    t->node = NULL;
    t->requires_grad = false;
    t->owns_data = false;
    return t;
}

bool sg__check_float(sg_graph *g, const char *op, const sg_tensor *a)
{
    if (sg_dtype_is_float(a->dtype))
        return true;
    sg_graph_fail(g, SG_EDTYPE, "%s: expects a float tensor, got %s %s", op,
                  sg_dtype_name(a->dtype), SG_SHAPE(a));
    return false;
}

bool sg__check_same_float(sg_graph *g, const char *op, const sg_tensor *a, const sg_tensor *b)
{
    if (!sg__check_float(g, op, a) || !sg__check_float(g, op, b))
        return false;
    if (a->dtype == b->dtype)
        return true;
    sg_graph_fail(g, SG_EDTYPE, "%s: dtypes differ: %s %s vs %s %s", op, sg_dtype_name(a->dtype),
                  SG_SHAPE(a), sg_dtype_name(b->dtype), SG_SHAPE(b));
    return false;
}

bool sg__will_record(const sg_graph *g, int n_in, sg_tensor *const *ins)
{
    if (!g->grad_enabled)
        return false;
    for (int k = 0; k < n_in; k++)
        if (ins[k] && ins[k]->requires_grad)
            return true;
    return false;
}

sg_node *sg_record(sg_graph *g, const char *name, sg_backward_fn backward, int n_in,
                   sg_tensor *const *ins, int n_out, sg_tensor *const *outs)
{
    if (!sg__will_record(g, n_in, ins))
        return NULL;
    sg_node *n = sg_arena_alloc(g->arena, sizeof *n);
    sg_tensor **in = sg_arena_alloc(g->arena, sizeof *in * (size_t)(n_in ? n_in : 1));
    if (!n || !in) {
        sg_graph_fail(g, SG_ENOMEM, "%s: out of memory recording the node", name);
        return NULL;
    }
    memset(n, 0, sizeof *n);
    memcpy(in, ins, sizeof *in * (size_t)n_in);
    n->name = name;
    n->backward = backward;
    n->n_in = n_in;
    n->in = in;
    n->n_out = n_out;
    for (int k = 0; k < n_out; k++) {
        n->out[k] = outs[k];
        outs[k]->node = n;
        outs[k]->requires_grad = true;
    }
    n->prev = g->tape;
    g->tape = n;
    g->n_nodes++;
    return n;
}

void *sg_grad_of(sg_graph *g, sg_tensor *t)
{
    if (!t || !t->requires_grad)
        return NULL;
    if (!t->grad) {
        size_t bytes = grad_bytes(t);
        /* an op's output: pooled, released once its node's backward has run */
        t->grad = t->node ? sg__grad_pool_get(&g->pool, bytes) : sg_arena_calloc(g->arena, bytes);
        if (!t->grad)
            sg_graph_fail(g, SG_ENOMEM, "backward: cannot allocate a gradient of %zu bytes",
                          bytes);
    }
    return t->grad;
}

void *sg__scratch_get(sg_graph *g, size_t bytes, const char *who)
{
    void *p = sg__grad_pool_get_raw(&g->pool, bytes ? bytes : 1);
    if (!p)
        sg_graph_fail(g, SG_ENOMEM, "%s: cannot allocate %zu bytes of scratch", who, bytes);
    return p;
}

void sg__scratch_put(sg_graph *g, void *p)
{
    if (p)
        sg__grad_pool_put(&g->pool, p);
}

void *sg__grad_for_write(sg_graph *g, sg_tensor *t, bool *fresh)
{
    *fresh = false;
    if (!t || !t->requires_grad || t->grad || !t->node)
        return sg_grad_of(g, t);
    size_t bytes = grad_bytes(t);
    t->grad = sg__grad_pool_get_raw(&g->pool, bytes);
    if (!t->grad)
        sg_graph_fail(g, SG_ENOMEM, "backward: cannot allocate a gradient of %zu bytes", bytes);
    else
        *fresh = true;
    return t->grad;
}

sg_tensor *sg_grad_tensor(sg_graph *g, sg_tensor *t)
{
    void *gr = sg_grad_of(g, t);
    if (!gr)
        return NULL;
    sg_tensor *h = sg_arena_alloc(g->arena, sizeof *h);
    if (!h)
        return sg_graph_fail(g, SG_ENOMEM, "backward: out of memory");
    memset(h, 0, sizeof *h);
    sg__init_contiguous(h, t->dtype, t->ndim, t->shape);
    h->data = gr;
    return h;
}

/* dst [c x r] = src [r x c]^T (src with strides rs, cs). Full 16 x 16 tiles go through
 * a local tile, so that the compiler reads and writes whole vectors (4x faster than an
 * element loop on 1024 x 256); the edges are element loops. */
#define SG_TRANSPOSE_FN(T, SUF)                                                             \
    SG_HOT static void transpose_##SUF(const T *restrict src, int64_t r, int64_t c,         \
                                       int64_t rs, int64_t cs, T *restrict dst)            \
    {                                                                                       \
        int64_t i0 = 0;                                                                     \
        for (; cs == 1 && i0 + 16 <= r; i0 += 16) {                                         \
            int64_t j0 = 0;                                                                 \
            for (; j0 + 16 <= c; j0 += 16) {                                                \
                T tile[16][16];                                                             \
                for (int i = 0; i < 16; i++)                                                \
                    for (int j = 0; j < 16; j++)                                            \
                        tile[j][i] = src[(i0 + i) * rs + j0 + j];                           \
                for (int j = 0; j < 16; j++)                                                \
                    for (int i = 0; i < 16; i++)                                            \
                        dst[(j0 + j) * r + i0 + i] = tile[j][i];                            \
            }                                                                               \
            for (; j0 < c; j0++)                                                            \
                for (int i = 0; i < 16; i++)                                                \
                    dst[j0 * r + i0 + i] = src[(i0 + i) * rs + j0];                         \
        }                                                                                   \
        for (; i0 < r; i0++)                                                                \
            for (int64_t j = 0; j < c; j++)                                                 \
                dst[j * r + i0] = src[i0 * rs + j * cs];                                    \
    }
SG_TRANSPOSE_FN(float, f32)
SG_TRANSPOSE_FN(double, f64)
#undef SG_TRANSPOSE_FN

#if defined(__x86_64__) && defined(__GNUC__)
/* dst [16 x 16] (row stride ds) = src [16 x 16]^T (row stride rs) in registers: pairs of
 * rows interleaved by 32 then 64 bits, then 128-bit lanes exchanged twice. 3x faster than
 * the local tile above, which the compiler writes element by element. */
__attribute__((target("avx512f"))) static void transpose16_avx512(const float *src, int64_t rs,
                                                                  float *dst, int64_t ds)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * rs);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#define SG_PD(x) _mm512_castps_pd(x)
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(SG_PD(t[i]), SG_PD(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(SG_PD(t[i]), SG_PD(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(SG_PD(t[i + 1]), SG_PD(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(SG_PD(t[i + 1]), SG_PD(t[i + 3])));
    }
#undef SG_PD
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ds, r[i]);
}

/* transpose_f32 with the full tiles in registers; false (nothing done) without
 * AVX-512 or with a strided row. */
static bool transpose_f32_avx512(const float *src, int64_t r, int64_t c, int64_t rs, int64_t cs,
                                 float *dst)
{
    if (!__builtin_cpu_supports("avx512f") || cs != 1 || r < 16 || c < 16)
        return false;
    int64_t r16 = r & ~(int64_t)15, c16 = c & ~(int64_t)15;
    /* a block column of src at a time: each destination row is then written from start
     * to end (1.4x faster on 1024 x 256 than going along src's rows) */
    for (int64_t j0 = 0; j0 < c16; j0 += 16)
        for (int64_t i0 = 0; i0 < r16; i0 += 16)
            transpose16_avx512(src + i0 * rs + j0, rs, dst + j0 * r + i0, r);
    /* the edges: columns past c16 of every row, then rows past r16 */
    for (int64_t i = 0; i < r16; i++)
        for (int64_t j = c16; j < c; j++)
            dst[j * r + i] = src[i * rs + j];
    for (int64_t i = r16; i < r; i++)
        for (int64_t j = 0; j < c; j++)
            dst[j * r + i] = src[i * rs + j];
    return true;
}
#else
static bool transpose_f32_avx512(const float *src, int64_t r, int64_t c, int64_t rs, int64_t cs,
                                 float *dst)
{
    (void)src, (void)r, (void)c, (void)rs, (void)cs, (void)dst;
    return false;
}
#endif

void sg__graph_set_weight_home(sg_graph *g, sg_graph *home) { g->wt_home = home; }

/* A weight home may serve graphs on several threads (the halves of a split decode, a
 * caller's sg_decode_opts.weights): its lookups and insertions take this lock. */
static pthread_mutex_t wt_home_lock = PTHREAD_MUTEX_INITIALIZER;

static const sg_wt_entry *copy_in(sg_graph *g, const sg_tensor *w, int kind);

/* The copy of w of the given kind from g's weight home, or from g itself when it will be
 * reused (uses > 1 or grad mode on); NULL otherwise. */
static const sg_wt_entry *weight_copy(sg_graph *g, const sg_tensor *w, int64_t uses, int kind)
{
    if (!g || !w || w->ndim != 2 || !sg_dtype_is_float(w->dtype))
        return NULL;
    if (g->wt_home) {
        pthread_mutex_lock(&wt_home_lock);
        const sg_wt_entry *e = copy_in(g->wt_home, w, kind);
        pthread_mutex_unlock(&wt_home_lock);
        return e;
    }
    if (uses < 2 && !g->grad_enabled) /* e.g. a decoding step: no reuse */
        return NULL;
    return copy_in(g, w, kind);
}

const void *sg__weight_t(sg_graph *g, const sg_tensor *w, int64_t uses)
{
    const sg_wt_entry *e = weight_copy(g, w, uses, SG_WT_COPY_T);
    return e ? e->t : NULL;
}

/* w's copy of that kind in g, made there on a miss; NULL when g holds SG_WT_CACHE
 * already or on ENOMEM (the caller then reads W with strides). An entry's address stays
 * valid until the copies are dropped. */
static const sg_wt_entry *copy_in(sg_graph *g, const sg_tensor *w, int kind)
{
    int64_t r = w->shape[0], c = w->shape[1], rs = w->stride[0], cs = w->stride[1];
    for (int i = 0; i < g->n_wt; i++) {
        const sg_wt_entry *e = &g->wt[i];
        if (e->data == w->data && e->rows == r && e->cols == c && e->rs == rs && e->cs == cs &&
            e->kind == kind)
            return e;
    }
    if (g->n_wt == SG_WT_CACHE)
        return NULL;
    size_t es = sg_dtype_size(w->dtype);
    size_t bytes = kind == SG_WT_COPY_T ? es * (size_t)(r * c)
                   : kind == SG_WT_PACK_T ? sizeof(float) * sg__packed_floats(c, r)
                                          : sizeof(float) * sg__packed_floats(r, c);
    void *t = NULL;
    if (posix_memalign(&t, 64, bytes + 1) != 0)
        return NULL;
    sg_wt_entry *e = &g->wt[g->n_wt++];
    *e = (sg_wt_entry){w->data, r, c, rs, cs, kind, t, {0}};
    if (kind == SG_WT_PACK_T) /* B = W^T [c, r] */
        sg__pack(&e->pk, t, w->data, c, r, cs, rs);
    else if (kind == SG_WT_PACK) /* B = W [r, c] */
        sg__pack(&e->pk, t, w->data, r, c, rs, cs);
    else if (w->dtype == SG_F64)
        transpose_f64(w->data, r, c, rs, cs, (double *)t);
    else if (!transpose_f32_avx512(w->data, r, c, rs, cs, (float *)t))
        transpose_f32(w->data, r, c, rs, cs, (float *)t);
    return e;
}

void sg__graph_drop_weight_copies(sg_graph *g)
{
    for (int i = 0; i < g->n_wt; i++)
        free(g->wt[i].t);
    g->n_wt = 0;
}

sg__operand sg__weight_t_operand(sg_graph *g, const sg_tensor *w, int64_t uses, bool copy)
{
    sg__operand in_place = {w->data, w->stride[1], w->stride[0], NULL};
    if (!copy)
        return in_place;
    if (sg__packed_gemm_on(w->dtype)) {
        const sg_wt_entry *e = weight_copy(g, w, uses, SG_WT_PACK_T);
        if (e)
            in_place.pk = &e->pk;
        return in_place;
    }
    if (!sg__small_gemm_row_major())
        return in_place;
    const void *t = sg__weight_t(g, w, uses);
    return t ? (sg__operand){t, w->shape[0], 1, NULL} : in_place;
}

sg__operand sg__weight_operand(sg_graph *g, const sg_tensor *w, bool reuse)
{
    sg__operand in_place = {w->data, w->stride[0], w->stride[1], NULL};
    if (!reuse || !sg__packed_gemm_on(w->dtype))
        return in_place;
    const sg_wt_entry *e = weight_copy(g, w, 2, SG_WT_PACK);
    if (e)
        in_place.pk = &e->pk;
    return in_place;
}

void sg__gemm_op(sg_dtype dt, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                 sg__operand B, int64_t k0, int64_t j0, double beta, void *C, int64_t ldc)
{
    if (B.pk && dt == SG_F32 && (beta == 0.0 || beta == 1.0) && j0 % 16 == 0)
        sg__gemm_packed(m, n, k, A, lda, B.pk, k0, j0, beta != 0.0, C, ldc);
    else
        sg__gemm(dt, m, n, k, 1.0, A, lda, 1,
                 (const char *)B.p + (size_t)(k0 * B.rs + j0 * B.cs) * sg_dtype_size(dt), B.rs,
                 B.cs, beta, C, ldc, 1);
}

static int run_backward(sg_graph *g)
{
    sg__graph_drop_weight_copies(g); /* an optimiser may change the weights after this */
    for (sg_node *n = g->tape; n; n = n->prev) {
        bool has_grad = false;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k]->grad)
                has_grad = true;
        if (has_grad)
            n->backward(g, n);
        release_out_grads(g, n);
        if (g->status != SG_OK)
            break;
    }
    sg__graph_drop_weight_copies(g); /* packed in backward (sg__weight_operand) */
    return g->status;
}

int sg_backward(sg_graph *g, sg_tensor *loss)
{
    if (!g || !loss)
        return sg__error(SG_EINVAL, "sg_backward: graph or loss is NULL (%s)", sg_last_error());
    if (g->status != SG_OK)
        return sg__error(g->status, "sg_backward: the graph has a failed op: %s", sg_last_error());
    if (sg_tensor_numel(loss) != 1)
        return sg__error(SG_EINVAL, "sg_backward: loss must have one element, got %s "
                                    "(use sg_backward_ex with an output gradient)",
                         SG_SHAPE(loss));
    if (!loss->requires_grad)
        return sg__error(SG_EINVAL, "sg_backward: loss does not require grad (no input does)");
    void *gr = sg_grad_of(g, loss);
    if (!gr)
        return g->status;
    if (loss->dtype == SG_F32)
        *(float *)gr += 1.0f;
    else
        *(double *)gr += 1.0;
    return run_backward(g);
}

int sg_backward_ex(sg_graph *g, sg_tensor *out, const sg_tensor *grad_out)
{
    if (!g || !out || !grad_out)
        return sg__error(SG_EINVAL, "sg_backward_ex: graph, output or gradient is NULL");
    if (g->status != SG_OK)
        return sg__error(g->status, "sg_backward_ex: the graph has a failed op: %s",
                         sg_last_error());
    if (!sg_tensor_same_shape(out, grad_out) || out->dtype != grad_out->dtype)
        return sg__error(SG_ESHAPE, "sg_backward_ex: gradient %s %s does not match output %s %s",
                         sg_dtype_name(grad_out->dtype), SG_SHAPE(grad_out),
                         sg_dtype_name(out->dtype), SG_SHAPE(out));
    if (!out->requires_grad)
        return sg__error(SG_EINVAL, "sg_backward_ex: output does not require grad");
    sg_tensor *gt = sg_grad_tensor(g, out);
    if (!gt)
        return g->status;
    int64_t st[SG_MAX_DIMS];
    sg__contig_strides(out->ndim, out->shape, st);
    sg__accumulate(out->dtype, gt->data, st, out->ndim, out->shape, grad_out->data,
                   grad_out->stride);
    return run_backward(g);
}

/* ---- accumulation: dst[strided] += src[strided], reducing where dst strides are 0 */

typedef struct {
    sg_dtype dt;
} acc_ctx;

static void acc_kernel(int64_t n, char **p, const int64_t *s, void *user)
{
    const acc_ctx *c = user;
    if (c->dt == SG_F32) {
        float *d = (float *)p[0];
        const float *x = (const float *)p[1];
        if (s[0] == 1 && s[1] == 1) {
            for (int64_t i = 0; i < n; i++)
                d[i] += x[i];
        } else if (s[0] == 0) {
            float acc = 0;
            for (int64_t i = 0; i < n; i++)
                acc += x[i * s[1]];
            d[0] += acc;
        } else {
            for (int64_t i = 0; i < n; i++)
                d[i * s[0]] += x[i * s[1]];
        }
    } else {
        double *d = (double *)p[0];
        const double *x = (const double *)p[1];
        if (s[0] == 0) {
            double acc = 0;
            for (int64_t i = 0; i < n; i++)
                acc += x[i * s[1]];
            d[0] += acc;
        } else {
            for (int64_t i = 0; i < n; i++)
                d[i * s[0]] += x[i * s[1]];
        }
    }
}

/* Column blocks of COLSUM_BLOCK stay in L1 while all rows are added into them. */
#define COLSUM_BLOCK 1024
#define COLSUM_KERNEL(T, SUF)                                                               \
    SG_HOT static void colsum_##SUF(T *restrict d, const T *restrict s, int64_t rows,        \
                                    int64_t n, int64_t ld)                                  \
    {                                                                                       \
        for (int64_t r = 0; r < rows; r++) {                                                \
            const T *sr = s + r * ld;                                                       \
            for (int64_t j = 0; j < n; j++)                                                 \
                d[j] += sr[j];                                                              \
        }                                                                                   \
    }
COLSUM_KERNEL(float, f32)
COLSUM_KERNEL(double, f64)

void sg__add_colsum(sg_dtype dt, void *dst, const void *src, int64_t rows, int64_t cols,
                    int64_t ld)
{
    int64_t nb = (cols + COLSUM_BLOCK - 1) / COLSUM_BLOCK;
    int nt = nb > 1 && rows * cols >= (1 << 16) ? sg__threads() : 1;
    size_t es = sg_dtype_size(dt);
    SG_FOR(nt, b, nb, {
        int64_t j = b * COLSUM_BLOCK, n = cols - j < COLSUM_BLOCK ? cols - j : COLSUM_BLOCK;
        void *d = (char *)dst + (size_t)j * es;
        const void *s = (const char *)src + (size_t)j * es;
        if (dt == SG_F32)
            colsum_f32(d, s, rows, n, ld);
        else
            colsum_f64(d, s, rows, n, ld);
    });
}

void sg__accumulate(sg_dtype dt, void *dst, const int64_t *dst_strides, int ndim,
                    const int64_t *shape, const void *src, const int64_t *src_strides)
{
    sg__iter it;
    size_t es = sg_dtype_size(dt);
    sg__iter_init(&it, ndim, shape);
    sg__iter_add(&it, dst, es, dst_strides);
    sg__iter_add(&it, (void *)src, es, src_strides);
    acc_ctx c = {dt};
    sg__iter_run(&it, acc_kernel, &c);
}

/* ---- creation ---------------------------------------------------------------- */

sg_tensor *sg_full(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, double v)
{
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (t)
        sg_tensor_fill_(t, v);
    return t;
}

sg_tensor *sg_zeros(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape)
{
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (t)
        memset(t->data, 0, (size_t)sg_tensor_numel(t) * sg_dtype_size(dt));
    return t;
}

sg_tensor *sg_ones(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape)
{
    return sg_full(g, dt, ndim, shape, 1.0);
}

sg_tensor *sg_arange(sg_graph *g, sg_dtype dt, int64_t n, double start, double step)
{
    if (n < 0)
        return sg_graph_fail(g, SG_EINVAL, "sg_arange: negative length %lld", (long long)n);
    sg_tensor *t = sg_empty(g, dt, 1, &n);
    if (t)
        for (int64_t i = 0; i < n; i++)
            sg_tensor_set(t, i, start + step * (double)i);
    return t;
}

sg_tensor *sg_from_buffer(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape,
                          const void *buf)
{
    if (!buf)
        return sg_graph_fail(g, SG_EINVAL, "sg_from_buffer: buffer is NULL");
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (t)
        memcpy(t->data, buf, (size_t)sg_tensor_numel(t) * sg_dtype_size(dt));
    return t;
}

sg_tensor *sg_rand(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, sg_rng *r)
{
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (t && sg_tensor_uniform_(t, r, 0, 1) != SG_OK)
        return sg_graph_fail(g, SG_EDTYPE, "sg_rand: %s", sg_last_error());
    return t;
}

sg_tensor *sg_randn(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, sg_rng *r)
{
    sg_tensor *t = sg_empty(g, dt, ndim, shape);
    if (t && sg_tensor_normal_(t, r, 0, 1) != SG_OK)
        return sg_graph_fail(g, SG_EDTYPE, "sg_randn: %s", sg_last_error());
    return t;
}

sg_tensor *sg_detach(sg_graph *g, sg_tensor *x)
{
    SG_NEED(g, x);
    return sg__view_header(g, x);
}

static void copy_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    void *dx = sg_grad_of(g, x);
    if (!dx)
        return;
    int64_t st[SG_MAX_DIMS];
    sg__contig_strides(x->ndim, x->shape, st);
    sg__accumulate(x->dtype, dx, st, x->ndim, x->shape, y->grad, st);
}

sg_tensor *sg_copy(sg_graph *g, sg_tensor *x)
{
    SG_NEED(g, x);
    sg_tensor *y = sg__empty_for(g, "sg_copy", x->dtype, x->ndim, x->shape);
    if (!y)
        return NULL;
    sg_tensor_copy_(y, x);
    sg_record(g, "copy", copy_bwd, 1, &x, 1, &y);
    return y;
}
