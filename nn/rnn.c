/* rnn.c - GRU/LSTM modules (parameters, multi-layer bidirectional runs) and the
 * single-step cells; the fused run itself is in rnn_run.c. */
#include "rnn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int rnn_init(sg_rnn *m, sg_rnn_cell cell, sg_params *p, const char *prefix,
                    const sg_rnn_config *cfg, sg_rng *rng)
{
    const char *fn = cell == SG_RNN_LSTM ? "sg_lstm_init" : "sg_gru_init";
    if (!m || !p || !cfg)
        return sg__error(SG_EINVAL, "%s: module, store or config is NULL", fn);
    sg_rnn_config c = *cfg;
    if (c.num_layers == 0)
        c.num_layers = 1;
    if (c.input_size < 1 || c.hidden_size < 1 || c.num_layers < 1 ||
        c.num_layers > SG_RNN_MAX_LAYERS)
        return sg__error(SG_EINVAL, "%s: '%s' needs input_size, hidden_size >= 1 and 1..%d "
                                    "layers (got %lld, %lld, %d)",
                         fn, prefix ? prefix : "", SG_RNN_MAX_LAYERS, (long long)c.input_size,
                         (long long)c.hidden_size, c.num_layers);
    if (!(c.dropout >= 0 && c.dropout < 1))
        return sg__error(SG_EINVAL, "%s: '%s' dropout %g is outside [0, 1)", fn,
                         prefix ? prefix : "", c.dropout);
    if (cell == SG_RNN_LSTM && c.reset_before_matmul)
        return sg__error(SG_EINVAL, "%s: reset_before_matmul is a GRU option", fn);
    memset(m, 0, sizeof *m);
    m->cell = cell;
    m->cfg = c;
    m->dirs = c.bidirectional ? 2 : 1;
    int64_t H = c.hidden_size, GH = (cell == SG_RNN_LSTM ? 4 : 3) * H;
    double bound = 1.0 / sqrt((double)H);
    for (int l = 0; l < c.num_layers; l++) {
        int64_t I = l == 0 ? c.input_size : m->dirs * H;
        for (int d = 0; d < m->dirs; d++) {
            const char *sfx = d ? "_reverse" : "";
            static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
            sg_tensor **slot[4] = {&m->w[l][d].weight_ih, &m->w[l][d].weight_hh,
                                   &m->w[l][d].bias_ih, &m->w[l][d].bias_hh};
            int64_t shapes[4][2] = {{GH, I}, {GH, H}, {GH, 0}, {GH, 0}};
            for (int k = 0; k < 4; k++) {
                char name[64], full[SG_PARAM_NAME_MAX];
                snprintf(name, sizeof name, "%s_l%d%s", names[k], l, sfx);
                int rc = sg_param_name(full, prefix, name);
                if (rc != SG_OK)
                    return rc;
                *slot[k] = sg_params_add(p, full, k < 2 ? 2 : 1, shapes[k]);
                if (!*slot[k])
                    return SG_EINVAL;
                if (rng)
                    sg_tensor_uniform_(*slot[k], rng, -bound, bound);
            }
        }
    }
    return SG_OK;
}

int sg_gru_init(sg_gru *m, sg_params *p, const char *prefix, const sg_rnn_config *cfg,
                sg_rng *rng)
{
    return rnn_init(m, SG_RNN_GRU, p, prefix, cfg, rng);
}

int sg_lstm_init(sg_lstm *m, sg_params *p, const char *prefix, const sg_rnn_config *cfg,
                 sg_rng *rng)
{
    return rnn_init(m, SG_RNN_LSTM, p, prefix, cfg, rng);
}

/* ---- joining the runs: out [outer, n, inner] from n inputs [outer, inner] ---------
 * (bidirectional outputs along the last dim, final states stacked on a new dim 0).
 * Kept here so the RNN depends only on core ops. */
static void join_bwd(sg_graph *g, sg_node *n)
{
    sg_tensor *y = n->out[0];
    if (!y->grad)
        return;
    int64_t outer = n->i[0], inner = n->i[1], k = n->n_in;
    size_t es = sg_dtype_size(y->dtype);
    for (int j = 0; j < k; j++) {
        bool fresh; /* a new gradient buffer: copied into, not zeroed and added to */
        void *dx = sg__grad_for_write(g, n->in[j], &fresh);
        if (!dx)
            continue;
        const char *src = (const char *)y->grad + (size_t)(j * inner) * es; /* [outer, inner] */
        if (!fresh) {
            sg__accumulate(y->dtype, dx, (int64_t[]){inner, 1}, 2, (int64_t[]){outer, inner},
                           src, (int64_t[]){k * inner, 1});
            continue;
        }
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)dx + (size_t)(o * inner) * es, src + (size_t)(o * k * inner) * es,
                   (size_t)inner * es);
    }
}

/* xs: k contiguous tensors of equal shape and dtype, each viewed as [outer, inner]. */
static sg_tensor *join(sg_graph *g, int k, sg_tensor *const *xs, int64_t outer, int64_t inner,
                       int ndim, const int64_t *shape)
{
    sg_tensor *y = sg_empty(g, xs[0]->dtype, ndim, shape);
    if (!y)
        return NULL;
    size_t es = sg_dtype_size(y->dtype), row = (size_t)inner * es;
    for (int64_t o = 0; o < outer; o++)
        for (int j = 0; j < k; j++)
            memcpy((char *)y->data + (size_t)(o * k + j) * row,
                   (const char *)xs[j]->data + (size_t)o * row, row);
    sg_node *n = sg_record(g, "sg_rnn_join", join_bwd, k, xs, 1, &y);
    if (n) {
        n->i[0] = outer;
        n->i[1] = inner;
    }
    return y;
}

/* Checks an initial state: [L*dirs, B, H] of x's dtype. */
static bool check_state(sg_graph *g, const char *fn, const char *what, const sg_tensor *s,
                        int64_t LD, int64_t B, int64_t H, sg_dtype dt)
{
    if (s->ndim != 3 || s->shape[0] != LD || s->shape[1] != B || s->shape[2] != H) {
        sg_graph_fail(g, SG_ESHAPE, "%s: %s %s must be [%lld, %lld, %lld] (layers*dirs, batch, "
                                    "hidden)",
                      fn, what, SG_SHAPE(s), (long long)LD, (long long)B, (long long)H);
        return false;
    }
    if (s->dtype != dt) {
        sg_graph_fail(g, SG_EDTYPE, "%s: %s is %s, the input is %s", fn, what,
                      sg_dtype_name(s->dtype), sg_dtype_name(dt));
        return false;
    }
    return true;
}

/* Copies and validates lengths into an arena array; NULL on error (recorded). */
static const int64_t *read_lengths(sg_graph *g, const char *fn, const sg_tensor *lt, int64_t B,
                                   int64_t T)
{
    if (lt->dtype != SG_I64)
        return sg_graph_fail(g, SG_EDTYPE, "%s: lengths must be i64, got %s", fn,
                             sg_dtype_name(lt->dtype));
    if (lt->ndim != 1 || lt->shape[0] != B)
        return sg_graph_fail(g, SG_ESHAPE, "%s: lengths %s must be [%lld], one per batch row",
                             fn, SG_SHAPE(lt), (long long)B);
    int64_t *len = sg_arena_alloc(sg_graph_arena(g), sizeof(int64_t) * (size_t)B);
    if (!len)
        return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", fn);
    for (int64_t b = 0; b < B; b++) {
        len[b] = ((const int64_t *)lt->data)[b * lt->stride[0]];
        if (len[b] < 1 || len[b] > T)
            return sg_graph_fail(g, SG_ERANGE, "%s: lengths[%lld] = %lld is outside [1, %lld] "
                                               "(T = %lld)",
                                 fn, (long long)b, (long long)len[b], (long long)T, (long long)T);
    }
    return len;
}

/* The layers over a checked input: x [B, T, I], or (x NULL) the words of ids [B, T] with
 * px[d] the first layer's input projection W_ih e + b_ih of each word per direction,
 * [V, G*H]. */
static sg_tensor *run_layers(sg_graph *g, const sg_rnn *m, sg_tensor *x, sg_tensor *const *px,
                             const sg__rnn_words *words, int64_t B, int64_t T,
                             const sg_rnn_opts *opts, sg_tensor **h_n, sg_tensor **c_n,
                             const char *fn)
{
    sg_rnn_opts o = opts ? *opts : (sg_rnn_opts){0};
    const sg_rnn_config *c = &m->cfg;
    int L = c->num_layers, D = m->dirs;
    int64_t H = c->hidden_size;
    sg_dtype dt = m->w[0][0].weight_ih->dtype;
    if (m->cell != SG_RNN_LSTM && o.c0)
        return sg_graph_fail(g, SG_EINVAL, "%s: c0 given to a GRU", fn);
    if (o.h0 && !check_state(g, fn, "h0", o.h0, (int64_t)L * D, B, H, dt))
        return NULL;
    if (o.c0 && !check_state(g, fn, "c0", o.c0, (int64_t)L * D, B, H, dt))
        return NULL;
    bool drop = o.training && c->dropout > 0 && L > 1;
    if (drop && !o.rng)
        return sg_graph_fail(g, SG_EINVAL, "%s: training with dropout %g needs an rng", fn,
                             c->dropout);
    const int64_t *len = o.lengths ? read_lengths(g, fn, o.lengths, B, T) : NULL;
    if (o.lengths && !len)
        return NULL;
    sg_tensor *h0 = o.h0 ? sg_contiguous(g, o.h0) : NULL;
    sg_tensor *c0 = o.c0 ? sg_contiguous(g, o.c0) : NULL;
    sg_tensor *in = x ? sg_contiguous(g, x) : NULL;
    if ((x && !in) || (o.h0 && !h0) || (o.c0 && !c0))
        return NULL;
    sg_tensor *hn[2 * SG_RNN_MAX_LAYERS], *cn[2 * SG_RNN_MAX_LAYERS], *out = NULL;
    for (int l = 0; l < L; l++) {
        sg_tensor *yd[2];
        for (int d = 0; d < D; d++) {
            int k = l * D + d;
            sg_tensor *h0k = h0 ? sg_select(g, h0, 0, k) : NULL;
            sg_tensor *c0k = c0 ? sg_select(g, c0, 0, k) : NULL;
            if ((h0 && !h0k) || (c0 && !c0k))
                return NULL;
            bool per_word = l == 0 && !x;
            if (sg__rnn_run(g, m->cell, c->reset_before_matmul, d == 1, per_word ? px[d] : in,
                            per_word ? words : NULL, len, &m->w[l][d], h0k, c0k, &yd[d], &hn[k],
                            &cn[k]) != SG_OK)
                return NULL;
        }
        out = D == 2 ? join(g, 2, yd, B * T, H, 3, (int64_t[]){B, T, 2 * H}) : yd[0];
        SG_NEED(out);
        if (l + 1 < L) {
            /* over the layer's output, which only the next layer reads: a Cho GRU run's
             * backward reads its packed states, not y (but for T = 1, h_n is y's data);
             * a GRU or LSTM run's reads y, a join's nothing */
            bool over = D == 2 || (T > 1 && m->cell != SG_RNN_LSTM && c->reset_before_matmul);
            in = over ? sg__dropout_over_own(g, out, c->dropout, drop, o.rng)
                      : sg_dropout(g, out, c->dropout, drop, o.rng);
            SG_NEED(in);
        }
    }
    int64_t sshape[3] = {(int64_t)L * D, B, H};
    if (h_n && !(*h_n = join(g, L * D, hn, 1, B * H, 3, sshape)))
        return NULL;
    if (c_n && m->cell != SG_RNN_LSTM)
        *c_n = NULL;
    else if (c_n && !(*c_n = join(g, L * D, cn, 1, B * H, 3, sshape)))
        return NULL;
    return out;
}

/* The module's name in messages; NULL (with the graph failed) when it cannot run. */
static const char *check_module(sg_graph *g, const sg_rnn *m, const char *what)
{
    if (!m) {
        sg_graph_fail(g, SG_EINVAL, "%s: module is NULL", what);
        return NULL;
    }
    const char *fn = m->cell == SG_RNN_LSTM ? "sg_lstm_forward" : "sg_gru_forward";
    if (!m->w[0][0].weight_ih) {
        sg_graph_fail(g, SG_EINVAL, "%s: module is not initialised", fn);
        return NULL;
    }
    return fn;
}

sg_tensor *sg_rnn_forward(sg_graph *g, const sg_rnn *m, sg_tensor *x, const sg_rnn_opts *opts,
                          sg_tensor **h_n, sg_tensor **c_n)
{
    if (!g)
        return NULL;
    const char *fn = check_module(g, m, "sg_rnn_forward");
    if (!fn)
        return NULL;
    SG_NEED(x);
    const sg_rnn_config *c = &m->cfg;
    sg_dtype dt = m->w[0][0].weight_ih->dtype;
    if (x->ndim != 3 || x->shape[2] != c->input_size)
        return sg_graph_fail(g, SG_ESHAPE, "%s: input %s must be [batch, time, %lld]", fn,
                             SG_SHAPE(x), (long long)c->input_size);
    if (x->dtype != dt)
        return sg_graph_fail(g, SG_EDTYPE, "%s: input is %s, the parameters are %s", fn,
                             sg_dtype_name(x->dtype), sg_dtype_name(dt));
    int64_t B = x->shape[0], T = x->shape[1];
    if (B < 1 || T < 1)
        return sg_graph_fail(g, SG_ESHAPE, "%s: input %s has an empty batch or time dim", fn,
                             SG_SHAPE(x));
    return run_layers(g, m, x, NULL, NULL, B, T, opts, h_n, c_n, fn);
}

sg_tensor *sg_rnn_forward_ids(sg_graph *g, const sg_rnn *m, sg_tensor *table, sg_tensor *ids,
                              int64_t padding_idx, const sg_rnn_opts *opts, sg_tensor **h_n,
                              sg_tensor **c_n)
{
    if (!g)
        return NULL;
    const char *fn = check_module(g, m, "sg_rnn_forward_ids");
    if (!fn)
        return NULL;
    SG_NEED(table, ids);
    if (ids->ndim != 2 || ids->shape[0] < 1 || ids->shape[1] < 1)
        return sg_graph_fail(g, SG_ESHAPE, "%s: ids %s must be [batch, time]", fn,
                             SG_SHAPE(ids));
    int64_t B = ids->shape[0], T = ids->shape[1];
    /* one projection per word when there are fewer words than positions: W_ih's rows
     * for every word, looked up at each position (backward: the positions' gradients
     * summed per word, then the weight gradients of V rows instead of B*T) */
    bool per_word = table->ndim == 2 && table->shape[0] < B * T;
    if (!per_word)
        return sg_rnn_forward(g, m, sg_embedding_lookup(g, table, ids, padding_idx), opts, h_n,
                              c_n);
    if (table->shape[1] != m->cfg.input_size)
        return sg_graph_fail(g, SG_ESHAPE, "%s: table %s must be [vocabulary, %lld]", fn,
                             SG_SHAPE(table), (long long)m->cfg.input_size);
    if (table->dtype != m->w[0][0].weight_ih->dtype)
        return sg_graph_fail(g, SG_EDTYPE, "%s: table is %s, the parameters are %s", fn,
                             sg_dtype_name(table->dtype),
                             sg_dtype_name(m->w[0][0].weight_ih->dtype));
    if (ids->dtype != SG_I64)
        return sg_graph_fail(g, SG_EDTYPE, "%s: ids must be i64, got %s", fn,
                             sg_dtype_name(ids->dtype));
    /* one copy in g for every direction's backward (the caller's ids may not live that
     * long) */
    if (!(ids = sg_copy(g, ids)))
        return NULL;
    int64_t V = table->shape[0];
    const int64_t *id = ids->data;
    for (int64_t k = 0; k < B * T; k++)
        if (id[k] < 0 || id[k] >= V)
            return sg_graph_fail(g, SG_ERANGE, "%s: id %lld at position %lld of ids %s is "
                                               "outside the vocabulary [0, %lld)",
                                 fn, (long long)id[k], (long long)k, SG_SHAPE(ids), (long long)V);
    sg_tensor *px[2] = {NULL, NULL}; /* [V, G*H]: each word's input projection */
    for (int d = 0; d < m->dirs; d++) {
        const sg_rnn_weights *w = &m->w[0][d];
        px[d] = sg_linear(g, table, w->weight_ih, w->bias_ih);
        SG_NEED(px[d]);
    }
    sg__rnn_words words = {.ids = id, .B = B, .T = T, .padding_idx = padding_idx};
    return run_layers(g, m, NULL, px, &words, B, T, opts, h_n, c_n, fn);
}

sg_tensor *sg_gru_forward(sg_graph *g, const sg_gru *m, sg_tensor *x, const sg_rnn_opts *opts,
                          sg_tensor **h_n)
{
    if (g && m && m->cell != SG_RNN_GRU)
        return sg_graph_fail(g, SG_EINVAL, "sg_gru_forward: module is an LSTM");
    return sg_rnn_forward(g, m, x, opts, h_n, NULL);
}

sg_tensor *sg_lstm_forward(sg_graph *g, const sg_lstm *m, sg_tensor *x, const sg_rnn_opts *opts,
                           sg_tensor **h_n, sg_tensor **c_n)
{
    if (g && m && m->cell != SG_RNN_LSTM)
        return sg_graph_fail(g, SG_EINVAL, "sg_lstm_forward: module is a GRU");
    return sg_rnn_forward(g, m, x, opts, h_n, c_n);
}

/* ---- single steps -------------------------------------------------------------- */

/* Validates a cell call and makes every operand contiguous; x becomes [B, 1, I]. */
static bool cell_prepare(sg_graph *g, sg_rnn_cell cell, sg_tensor **x, sg_tensor **h,
                         sg_tensor **c, const sg_rnn_weights *w, sg_rnn_weights *wc)
{
    const char *fn = cell == SG_RNN_LSTM ? "sg_lstm_cell_forward" : "sg_gru_cell_forward";
    int64_t G = cell == SG_RNN_LSTM ? 4 : 3;
    if (!w || !w->weight_ih || !w->weight_hh) {
        sg_graph_fail(g, SG_EINVAL, "%s: weights are NULL", fn);
        return false;
    }
    sg_tensor *wih = w->weight_ih, *whh = w->weight_hh;
    if (whh->ndim != 2 || whh->shape[0] != G * whh->shape[1] || whh->shape[1] < 1) {
        sg_graph_fail(g, SG_ESHAPE, "%s: weight_hh %s must be [%lld*H, H]", fn, SG_SHAPE(whh),
                      (long long)G);
        return false;
    }
    int64_t H = whh->shape[1];
    if (wih->ndim != 2 || wih->shape[0] != G * H || wih->shape[1] < 1) {
        sg_graph_fail(g, SG_ESHAPE, "%s: weight_ih %s must be [%lld, I] (weight_hh %s)", fn,
                      SG_SHAPE(wih), (long long)(G * H), SG_SHAPE(whh));
        return false;
    }
    int64_t I = wih->shape[1];
    sg_tensor *bs[2] = {w->bias_ih, w->bias_hh};
    for (int k = 0; k < 2; k++)
        if (bs[k] && (bs[k]->ndim != 1 || bs[k]->shape[0] != G * H)) {
            sg_graph_fail(g, SG_ESHAPE, "%s: %s %s must be [%lld]", fn,
                          k ? "bias_hh" : "bias_ih", SG_SHAPE(bs[k]), (long long)(G * H));
            return false;
        }
    if ((*x)->ndim != 2 || (*x)->shape[1] != I || (*x)->shape[0] < 1) {
        sg_graph_fail(g, SG_ESHAPE, "%s: x %s must be [batch, %lld] (weight_ih %s)", fn,
                      SG_SHAPE(*x), (long long)I, SG_SHAPE(wih));
        return false;
    }
    int64_t B = (*x)->shape[0];
    sg_tensor *st[2] = {*h, c ? *c : NULL};
    for (int k = 0; k < 2; k++)
        if (st[k] && (st[k]->ndim != 2 || st[k]->shape[0] != B || st[k]->shape[1] != H)) {
            sg_graph_fail(g, SG_ESHAPE, "%s: %s %s must be [%lld, %lld] (x %s, weight_hh %s)", fn,
                          k ? "c" : "h", SG_SHAPE(st[k]), (long long)B, (long long)H,
                          SG_SHAPE(*x), SG_SHAPE(whh));
            return false;
        }
    sg_tensor *all[7] = {*x, *h, c ? *c : NULL, wih, whh, bs[0], bs[1]};
    for (int k = 0; k < 7; k++)
        if (all[k] && !sg__check_same_float(g, fn, *x, all[k]))
            return false;
    /* the fused run reads plain row-major buffers */
    for (int k = 0; k < 7; k++)
        if (all[k] && !sg_tensor_is_contiguous(all[k]) && !(all[k] = sg_contiguous(g, all[k])))
            return false;
    *x = sg_view(g, all[0], 3, (int64_t[]){B, 1, I});
    *h = all[1];
    if (c)
        *c = all[2];
    *wc = (sg_rnn_weights){all[3], all[4], all[5], all[6]};
    return *x != NULL;
}

sg_tensor *sg_gru_cell_forward(sg_graph *g, sg_tensor *x, sg_tensor *h, const sg_rnn_weights *w,
                               bool reset_before_matmul)
{
    SG_NEED(g, x, h);
    sg_rnn_weights wc;
    if (!cell_prepare(g, SG_RNN_GRU, &x, &h, NULL, w, &wc))
        return NULL;
    sg_tensor *y, *hn;
    if (sg__rnn_run(g, SG_RNN_GRU, reset_before_matmul, false, x, NULL, NULL, &wc, h, NULL, &y,
                    &hn, NULL) != SG_OK)
        return NULL;
    return hn;
}

sg_tensor *sg_lstm_cell_forward(sg_graph *g, sg_tensor *x, sg_tensor *h, sg_tensor *c,
                                const sg_rnn_weights *w, sg_tensor **c_out)
{
    SG_NEED(g, x, h, c);
    if (!c_out)
        return sg_graph_fail(g, SG_EINVAL, "sg_lstm_cell_forward: c_out is NULL");
    sg_rnn_weights wc;
    if (!cell_prepare(g, SG_RNN_LSTM, &x, &h, &c, w, &wc))
        return NULL;
    sg_tensor *y, *hn, *cn;
    if (sg__rnn_run(g, SG_RNN_LSTM, false, false, x, NULL, NULL, &wc, h, c, &y, &hn, &cn) !=
        SG_OK)
        return NULL;
    *c_out = cn;
    return hn;
}
