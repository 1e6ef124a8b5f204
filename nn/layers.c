/* layers.c - Linear, Embedding, Dropout. */
#include "nn_internal.h"
#include "fastmath.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int sg_param_name(char *out, const char *prefix, const char *name)
{
    int n = prefix && *prefix ? snprintf(out, SG_PARAM_NAME_MAX, "%s.%s", prefix, name)
                              : snprintf(out, SG_PARAM_NAME_MAX, "%s", name);
    if (n < 0 || n >= SG_PARAM_NAME_MAX)
        return sg__error(SG_EINVAL, "parameter name '%s.%s' is too long", prefix, name);
    return SG_OK;
}

/* Adds prefix.name with the given shape; NULL on error. */
static sg_tensor *add_param(sg_params *p, const char *prefix, const char *name, int ndim,
                            const int64_t *shape)
{
    char full[SG_PARAM_NAME_MAX];
    if (sg_param_name(full, prefix, name) != SG_OK)
        return NULL;
    return sg_params_add(p, full, ndim, shape);
}

int sg_linear_layer_init(sg_linear_layer *m, sg_params *p, const char *prefix, int64_t in, int64_t out,
                   bool bias, sg_rng *rng)
{
    if (!m || !p)
        return sg__error(SG_EINVAL, "sg_linear_layer_init: module or store is NULL");
    if (in < 1 || out < 1)
        return sg__error(SG_EINVAL, "sg_linear_layer_init: '%s' needs in, out >= 1 (got %lld, %lld)",
                         prefix, (long long)in, (long long)out);
    memset(m, 0, sizeof *m);
    m->in = in;
    m->out = out;
    m->weight = add_param(p, prefix, "weight", 2, (int64_t[]){out, in});
    if (!m->weight)
        return SG_EINVAL;
    if (bias && !(m->bias = add_param(p, prefix, "bias", 1, (int64_t[]){out})))
        return SG_EINVAL;
    if (rng) { /* kaiming_uniform(a=sqrt(5)) on the weight = U(+-1/sqrt(in)); same bound for b */
        double b = 1.0 / sqrt((double)in);
        sg_tensor_uniform_(m->weight, rng, -b, b);
        if (m->bias)
            sg_tensor_uniform_(m->bias, rng, -b, b);
    }
    return SG_OK;
}

sg_tensor *sg_linear_layer_forward(sg_graph *g, const sg_linear_layer *m, sg_tensor *x)
{
    SG_NEED(g, m, x);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != m->in)
        return sg_graph_fail(g, SG_ESHAPE, "sg_linear_layer_forward: input %s has %lld features, the "
                                           "layer expects %lld",
                             SG_SHAPE(x), x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL,
                             (long long)m->in);
    return sg_linear(g, x, m->weight, m->bias);
}

int sg_embedding_init(sg_embedding *m, sg_params *p, const char *prefix, int64_t vocab,
                      int64_t dim, int64_t padding_idx, sg_rng *rng)
{
    if (!m || !p)
        return sg__error(SG_EINVAL, "sg_embedding_init: module or store is NULL");
    if (vocab < 1 || dim < 1 || padding_idx < -1 || padding_idx >= vocab)
        return sg__error(SG_EINVAL, "sg_embedding_init: '%s' has invalid vocab %lld, dim %lld or "
                                    "padding_idx %lld",
                         prefix, (long long)vocab, (long long)dim, (long long)padding_idx);
    memset(m, 0, sizeof *m);
    m->vocab = vocab;
    m->dim = dim;
    m->padding_idx = padding_idx;
    m->weight = add_param(p, prefix, "weight", 2, (int64_t[]){vocab, dim});
    if (!m->weight)
        return SG_EINVAL;
    sg__params_mark_sparse_grad(p, m->weight); /* a batch's words are its only rows */
    if (rng) {
        sg_tensor_normal_(m->weight, rng, 0, 1);
        if (padding_idx >= 0)
            for (int64_t j = 0; j < dim; j++)
                sg_tensor_set(m->weight, padding_idx * dim + j, 0.0);
    }
    return SG_OK;
}

static void lookup_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *table = n->in[0], *ids = n->in[1], *y = n->out[0];
    void *dw = sg_grad_of(g, table);
    if (!dw)
        return;
    int64_t E = table->shape[1], N = sg_tensor_numel(ids), pad = n->i[0];
    const int64_t *id = ids->data;
    if (table->dtype == SG_F32) {
        const float *dy = y->grad;
        float *d = dw;
        for (int64_t k = 0; k < N; k++)
            if (id[k] != pad)
                for (int64_t j = 0; j < E; j++)
                    d[id[k] * E + j] += dy[k * E + j];
    } else {
        const double *dy = y->grad;
        double *d = dw;
        for (int64_t k = 0; k < N; k++)
            if (id[k] != pad)
                for (int64_t j = 0; j < E; j++)
                    d[id[k] * E + j] += dy[k * E + j];
    }
}

sg_tensor *sg_embedding_lookup(sg_graph *g, sg_tensor *table, sg_tensor *ids, int64_t padding_idx)
{
    SG_NEED(g, table, ids);
    if (ids->dtype != SG_I64)
        return sg_graph_fail(g, SG_EDTYPE, "sg_embedding_lookup: ids must be i64, got %s",
                             sg_dtype_name(ids->dtype));
    if (table->ndim != 2 || !sg__check_float(g, "sg_embedding_lookup", table))
        return sg_graph_fail(g, SG_ESHAPE, "sg_embedding_lookup: table must be 2-D float, got %s",
                             SG_SHAPE(table));
    if (ids->ndim >= SG_MAX_DIMS)
        return sg_graph_fail(g, SG_ESHAPE, "sg_embedding_lookup: ids %s have too many dims",
                             SG_SHAPE(ids));
    if (!sg_tensor_is_contiguous(ids) && !(ids = sg_contiguous(g, ids)))
        return NULL;
    if (!sg_tensor_is_contiguous(table) && !(table = sg_contiguous(g, table)))
        return NULL;
    int64_t V = table->shape[0], E = table->shape[1], N = sg_tensor_numel(ids);
    const int64_t *id = ids->data;
    for (int64_t k = 0; k < N; k++)
        if (id[k] < 0 || id[k] >= V)
            return sg_graph_fail(g, SG_ERANGE, "sg_embedding_lookup: id %lld at position %lld of "
                                               "ids %s is outside the vocabulary [0, %lld)",
                                 (long long)id[k], (long long)k, SG_SHAPE(ids), (long long)V);
    int64_t shape[SG_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = E;
    sg_tensor *y = sg_empty(g, table->dtype, ids->ndim + 1, shape);
    if (!y)
        return NULL;
    size_t row = (size_t)E * sg_dtype_size(table->dtype);
    for (int64_t k = 0; k < N; k++)
        memcpy((char *)y->data + (size_t)k * row, (char *)table->data + (size_t)id[k] * row, row);
    sg_tensor *ins[2] = {table, ids};
    sg_node *n = sg_record(g, "sg_embedding_lookup", lookup_bwd, 2, ins, 1, &y);
    if (n)
        n->i[0] = padding_idx;
    return y;
}

sg_tensor *sg_embedding_forward(sg_graph *g, const sg_embedding *m, sg_tensor *ids)
{
    SG_NEED(g, m, ids);
    return sg_embedding_lookup(g, m->weight, ids, m->padding_idx);
}

/* Dropout's two loops, branch-free (a select on the mask byte) so that they vectorise;
 * backward writes a fresh gradient instead of adding to zeros. */
#define DROPOUT_KERNELS(T, SUF)                                                             \
    SG_HOT static void dropout_fwd_##SUF(int64_t n, const T *restrict a,                     \
                                         const uint8_t *restrict keep, T s, T *restrict b)   \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++)                                                     \
            b[i] = keep[i] ? a[i] * s : (T)0;                                               \
    }                                                                                       \
    SG_HOT static void dropout_fwd_inplace_##SUF(int64_t n, T *restrict b,                   \
                                                 const uint8_t *restrict keep, T s)          \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++)                                                     \
            b[i] = keep[i] ? b[i] * s : (T)0;                                               \
    }                                                                                       \
    SG_HOT static void dropout_bwd_##SUF(int64_t n, T *restrict d, const T *restrict dy,     \
                                         const uint8_t *restrict keep, T s, bool fresh)      \
    {                                                                                       \
        if (fresh)                                                                          \
            for (int64_t i = 0; i < n; i++)                                                 \
                d[i] = keep[i] ? dy[i] * s : (T)0;                                          \
        else                                                                                \
            for (int64_t i = 0; i < n; i++)                                                 \
                d[i] += keep[i] ? dy[i] * s : (T)0;                                         \
    }
DROPOUT_KERNELS(float, f32)
DROPOUT_KERNELS(double, f64)
#undef DROPOUT_KERNELS

/* Dropout masks are not kept: a node saves the rng state its mask was drawn from (32
 * bytes instead of a byte an element: enfr-transformer's 15 residual masks were 5.3 MB of
 * its step) and its backward draws the same mask again into scratch. */

/* The mask of N elements drawn from *rng (advanced) into pool scratch, and in *state
 * (arena) the state it started from; NULL with SG_ENOMEM recorded on g. */
static uint8_t *mask_draw(sg_graph *g, sg_rng *rng, int64_t N, double p, sg_rng **state,
                          const char *op)
{
    *state = sg_arena_alloc(sg_graph_arena(g), sizeof **state);
    uint8_t *keep = *state ? sg__scratch_get(g, (size_t)(N ? N : 1), op) : NULL;
    if (!keep) {
        if (!*state)
            sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
        return NULL;
    }
    **state = *rng;
    sg_rng_keep_mask(rng, keep, N, p);
    return keep;
}

/* The mask a node drew (state: its saved rng state), again, into pool scratch. */
static uint8_t *mask_again(sg_graph *g, const sg_rng *state, int64_t N, double p, const char *op)
{
    uint8_t *keep = sg__scratch_get(g, (size_t)(N ? N : 1), op);
    if (keep) {
        sg_rng r = *state;
        sg_rng_keep_mask(&r, keep, N, p);
    }
    return keep;
}

/* Tanh then dropout as one node keeps only its output y = tanh(x) * keep * s (and the
 * mask's rng state): where the mask dropped, the gradient is 0 whatever tanh(x) was;
 * where it kept, tanh(x) = y / s. So the graph holds one tensor where sg_tanh then
 * sg_dropout hold two (the Luong combine layer: 1.6 MB of enfr-luong's step). The
 * gradient uses y (1 - p) for tanh(x), which may round one ulp away from the value
 * torch's tanh backward reads. */
#define TANH_DROPOUT_KERNELS(T, SUF, TANH)                                                  \
    SG_HOT static void tanh_dropout_fwd_##SUF(int64_t n, const T *a,                          \
                                              const uint8_t *restrict keep, T s, T *y)        \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++) { /* a == y when written over x */                   \
            T t = TANH(a[i]);                                                               \
            y[i] = keep[i] ? t * s : (T)0;                                                  \
        }                                                                                   \
    }                                                                                       \
    SG_HOT static void tanh_dropout_bwd_##SUF(int64_t n, T *restrict d, const T *restrict dy,  \
                                              const T *restrict y,                          \
                                              const uint8_t *restrict keep, T s, T q,       \
                                              bool fresh)                                   \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                   \
            T t = y[i] * q;                                                                 \
            T v = keep[i] ? dy[i] * s * ((T)1 - t * t) : (T)0;                              \
            d[i] = fresh ? v : d[i] + v;                                                    \
        }                                                                                   \
    }
TANH_DROPOUT_KERNELS(float, f32, sg__tanhf)
TANH_DROPOUT_KERNELS(double, f64, tanh)
#undef TANH_DROPOUT_KERNELS

/* i[0]: tanh first (sg_tanh_dropout) */
static void dropout_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *y = n->out[0];
    bool fresh;
    void *dx = sg__grad_for_write(g, x, &fresh);
    if (!dx)
        return;
    int64_t N = sg_tensor_numel(x);
    uint8_t *keep = mask_again(g, n->saved, N, n->f[1], n->name);
    if (!keep)
        return;
    double s = n->f[0], q = 1 - n->f[1];
    bool f32 = x->dtype == SG_F32;
    if (n->i[0] && f32)
        tanh_dropout_bwd_f32(N, dx, y->grad, y->data, keep, (float)s, (float)q, fresh);
    else if (n->i[0])
        tanh_dropout_bwd_f64(N, dx, y->grad, y->data, keep, s, q, fresh);
    else if (f32)
        dropout_bwd_f32(N, dx, y->grad, keep, (float)s, fresh);
    else
        dropout_bwd_f64(N, dx, y->grad, keep, s, fresh);
    sg__scratch_put(g, keep);
}

/* t is the only output of the node just recorded on g (so nothing has read t yet), an op
 * named in ops[0..n) */
static bool made_last_by(sg_graph *g, const sg_tensor *t, const char *const *ops, size_t n)
{
    const sg_node *made = t->node;
    if (!made || made != sg__graph_last_node(g) || made->n_out != 1)
        return false;
    for (size_t k = 0; k < n; k++)
        if (strcmp(made->name, ops[k]) == 0)
            return true;
    return false;
}

bool sg__fresh_linear_output(sg_graph *g, const sg_tensor *t)
{
    static const char *const ops[] = {"sg_linear", "sg_feedforward", "sg_mha_attention_out"};
    return made_last_by(g, t, ops, sizeof ops / sizeof *ops);
}

sg_tensor *sg__header_over(sg_graph *g, void *data, sg_dtype dt, int ndim,
                           const int64_t *shape)
{
    sg_tensor *y = sg_arena_alloc(sg_graph_arena(g), sizeof *y);
    if (!y)
        return sg_graph_fail(g, SG_ENOMEM, "out of memory for a tensor header");
    memset(y, 0, sizeof *y);
    sg__init_contiguous(y, dt, ndim, shape);
    y->data = data;
    return y;
}

sg_tensor *sg__output_over(sg_graph *g, sg_tensor *h, bool over)
{
    return over ? sg__view_header(g, h) : sg_empty(g, h->dtype, h->ndim, h->shape);
}

bool sg__dropout_args(sg_graph *g, const char *op, double p, bool training, const sg_rng *rng,
                      bool *drop, double *scale)
{
    if (!(p >= 0 && p < 1)) {
        sg_graph_fail(g, SG_EINVAL, "%s: probability %g is outside [0, 1)", op, p);
        return false;
    }
    *drop = training && p > 0;
    if (*drop && !rng) {
        sg_graph_fail(g, SG_EINVAL, "%s: training needs an rng", op);
        return false;
    }
    *scale = *drop ? 1.0 / (1.0 - p) : 1.0;
    return true;
}

/* t is the output of the node just recorded on g, made by an op whose backward reads
 * none of its outputs (a lookup, a product, a sum, a join, a dropout: its backward draws
 * the mask again): nothing has read t yet. */
bool sg__fresh_unread_output(sg_graph *g, const sg_tensor *t)
{
    static const char *const ops[] = {"sg_embedding_lookup", "sg_linear", "sg_add",
                                      "sg_stack", "sg_concat", SG_JOIN_STEPS_OP, "sg_dropout"};
    return made_last_by(g, t, ops, sizeof ops / sizeof *ops);
}

bool sg__fresh_unread_sum(sg_graph *g, const sg_tensor *t)
{
    static const char *const ops[] = {"sg_dropout_add", "sg_add"};
    return sg_tensor_is_contiguous(t) && made_last_by(g, t, ops, sizeof ops / sizeof *ops);
}

/* over: 0 never writes over x, 1 when x is a fresh unread output, 2 always (x is the
 * caller's own, contiguous, and read by nothing else, its producer's backward included).
 * with_tanh: y = dropout(tanh(x)) (sg__tanh_dropout_over). */
static sg_tensor *dropout(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng,
                          int may_overwrite, bool with_tanh)
{
    SG_NEED(g, x);
    const char *op = with_tanh ? "sg_tanh_dropout" : "sg_dropout";
    bool drop;
    double s;
    if (!sg__dropout_args(g, op, p, training, rng, &drop, &s))
        return NULL;
    if (!drop)
        return with_tanh ? sg__tanh_over(g, x) : x;
    if (!sg__check_float(g, op, x))
        return NULL;
    bool over = sg_tensor_is_contiguous(x) &&
                (may_overwrite == 2 || (may_overwrite == 1 && sg__fresh_unread_output(g, x)));
    x = sg_contiguous(g, x);
    SG_NEED(x);
    int64_t N = sg_tensor_numel(x);
    sg_tensor *y = sg__output_over(g, x, over);
    if (!y)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    sg_rng *state;
    uint8_t *keep = mask_draw(g, rng, N, p, &state, op);
    if (!keep)
        return NULL;
    bool f32 = x->dtype == SG_F32;
    if (with_tanh && f32)
        tanh_dropout_fwd_f32(N, x->data, keep, (float)s, y->data);
    else if (with_tanh)
        tanh_dropout_fwd_f64(N, x->data, keep, s, y->data);
    else if (over && f32)
        dropout_fwd_inplace_f32(N, y->data, keep, (float)s);
    else if (over)
        dropout_fwd_inplace_f64(N, y->data, keep, s);
    else if (f32)
        dropout_fwd_f32(N, x->data, keep, (float)s, y->data);
    else
        dropout_fwd_f64(N, x->data, keep, s, y->data);
    sg__scratch_put(g, keep);
    sg_node *n = sg_record(g, op, dropout_bwd, 1, &x, 1, &y);
    if (n) {
        n->saved = state;
        n->f[0] = s;
        n->f[1] = p;
        n->i[0] = with_tanh;
    }
    return y;
}

sg_tensor *sg_dropout(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng)
{
    return dropout(g, x, p, training, rng, 0, false);
}

sg_tensor *sg__dropout_over(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng)
{
    return dropout(g, x, p, training, rng, 1, false);
}

sg_tensor *sg__dropout_over_own(sg_graph *g, sg_tensor *x, double p, bool training, sg_rng *rng)
{
    return dropout(g, x, p, training, rng, 2, false);
}

sg_tensor *sg__tanh_dropout_over(sg_graph *g, sg_tensor *x, double p, bool training,
                                 sg_rng *rng)
{
    return dropout(g, x, p, training, rng, 1, true);
}

/* ---- written over fresh outputs (model-internal) ------------------------------------ */

sg_tensor *sg__tanh_over(sg_graph *g, sg_tensor *x)
{
    SG_NEED(g, x);
    return sg_tensor_is_contiguous(x) && sg__fresh_linear_output(g, x) ? sg__tanh_in_place(g, x)
                                                                       : sg_tanh(g, x);
}

sg_tensor *sg__scale_add_over(sg_graph *g, sg_tensor *x, double scale, sg_tensor *t)
{
    SG_NEED(g, x, t);
    if (!sg_tensor_is_contiguous(x) || !sg__fresh_unread_output(g, x))
        return sg_add(g, sg_mul_scalar(g, x, scale), t);
    /* two nodes, each over x's data: the values round as the ops' do */
    return sg__add_in_place(g, sg__mul_scalar_in_place(g, x, scale), t);
}

/* s = x + dropout(z): ds flows to x whole, to z through the mask (scaled; keep NULL: no
 * dropout). CPU clones; the forward may write over z (o == b), which ivdep lets the
 * compiler vectorise (each element is read before it is written). */
#define DROPOUT_ADD_KERNELS(T, SUF, ATTR)                                                    \
    ATTR static void dropout_add_fwd_##SUF(int64_t n, const T *a, const T *b, T *o,           \
                                           const uint8_t *keep, T s)                         \
    {                                                                                        \
        if (keep)                                                                            \
            _Pragma("GCC ivdep") for (int64_t i = 0; i < n; i++) o[i] =                      \
                a[i] + (keep[i] ? b[i] * s : (T)0);                                          \
        else                                                                                 \
            _Pragma("GCC ivdep") for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i];         \
    }                                                                                        \
    ATTR static void dropout_add_bwd_##SUF(int64_t n, const T *restrict ds, T *restrict dx,   \
                                           T *restrict dz, const uint8_t *keep, T s)         \
    {                                                                                        \
        if (dx)                                                                              \
            for (int64_t i = 0; i < n; i++)                                                  \
                dx[i] += ds[i];                                                              \
        if (dz && keep)                                                                      \
            for (int64_t i = 0; i < n; i++)                                                  \
                dz[i] += keep[i] ? ds[i] * s : (T)0;                                         \
        else if (dz)                                                                         \
            for (int64_t i = 0; i < n; i++)                                                  \
                dz[i] += ds[i];                                                              \
    }
DROPOUT_ADD_KERNELS(float, f32, SG_HOT)
DROPOUT_ADD_KERNELS(double, f64, )
#undef DROPOUT_ADD_KERNELS

static void dropout_add_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *x = n->in[0], *z = n->in[1], *s = n->out[0];
    int64_t N = sg_tensor_numel(s), nr = (N + SG_RANGE - 1) / SG_RANGE;
    char *dx = sg_grad_of(g, x), *dz = sg_grad_of(g, z);
    uint8_t *keep = NULL;
    if (n->saved && dz && !(keep = mask_again(g, n->saved, N, n->f[1], "sg_dropout_add backward")))
        return;
    size_t es = sg_dtype_size(s->dtype);
    int nt = nr > 1 ? sg__threads() : 1;
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        void *a = dx ? dx + (size_t)i0 * es : NULL, *b = dz ? dz + (size_t)i0 * es : NULL;
        const uint8_t *k = keep ? keep + i0 : NULL;
        /* x and z the same tensor: one gradient, taken in two calls (restrict) */
        void *b1 = a == b ? NULL : b, *b2 = a == b ? b : NULL;
        if (s->dtype == SG_F32) {
            dropout_add_bwd_f32(m, (const float *)s->grad + i0, a, b1, k, (float)n->f[0]);
            if (b2)
                dropout_add_bwd_f32(m, (const float *)s->grad + i0, NULL, b2, k, (float)n->f[0]);
        } else {
            dropout_add_bwd_f64(m, (const double *)s->grad + i0, a, b1, k, n->f[0]);
            if (b2)
                dropout_add_bwd_f64(m, (const double *)s->grad + i0, NULL, b2, k, n->f[0]);
        }
    });
    sg__scratch_put(g, keep);
}

sg_tensor *sg_dropout_add(sg_graph *g, sg_tensor *x, sg_tensor *z, double p, bool training,
                          sg_rng *rng, bool reuse_z)
{
    const char *op = "sg_dropout_add";
    SG_NEED(g, x, z);
    bool drop;
    double sc;
    if (!sg__dropout_args(g, op, p, training, rng, &drop, &sc) ||
        !sg__check_same_float(g, op, x, z))
        return NULL;
    if (!sg_tensor_same_shape(x, z))
        return sg_graph_fail(g, SG_ESHAPE, "%s: x %s and z %s differ", op, SG_SHAPE(x),
                             SG_SHAPE(z));
    if ((!sg_tensor_is_contiguous(x) && !(x = sg_contiguous(g, x))) ||
        (!sg_tensor_is_contiguous(z) && !(z = sg_contiguous(g, z))))
        return NULL;
    int64_t N = sg_tensor_numel(z);
    sg_tensor *s = sg__output_over(g, z, reuse_z && sg__fresh_linear_output(g, z));
    if (!s)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", op);
    sg_rng *state = NULL;
    uint8_t *keep = drop ? mask_draw(g, rng, N, p, &state, op) : NULL;
    if (drop && !keep)
        return NULL;
    int64_t nr = (N + SG_RANGE - 1) / SG_RANGE;
    int nt = nr > 1 ? sg__threads() : 1;
    SG_FOR(nt, r, nr, {
        int64_t i0 = r * SG_RANGE, m = N - i0 < SG_RANGE ? N - i0 : SG_RANGE;
        const uint8_t *k = keep ? keep + i0 : NULL;
        if (z->dtype == SG_F32)
            dropout_add_fwd_f32(m, (const float *)x->data + i0, (const float *)z->data + i0,
                                (float *)s->data + i0, k, (float)sc);
        else
            dropout_add_fwd_f64(m, (const double *)x->data + i0, (const double *)z->data + i0,
                                (double *)s->data + i0, k, sc);
    });
    sg__scratch_put(g, keep);
    sg_tensor *ins[2] = {x, z};
    sg_node *n = sg_record(g, "sg_dropout_add", dropout_add_bwd, 2, ins, 1, &s);
    if (n) {
        n->saved = state;
        n->f[0] = sc;
        n->f[1] = p;
    }
    return s;
}
