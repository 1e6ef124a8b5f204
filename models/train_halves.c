/*
 * train_halves.c - a small model's training step on two halves of the batch side by side.
 *
 * At 2 threads a small model's step (dates-bahdanau: 0.4M parameters, 64 x 128 products
 * per time step) is made of operations too small to split well: every one of them ends
 * with the threads waiting for each other (libgomp's barrier was 13% of a 2-thread
 * profile). Whole sentences split well: thread 0 runs the model on one half of the
 * batch, thread 1 a replica of it (same configuration, the weights copied in before each
 * step, gradients of its own) on the other, each with its operations capped at 1 thread.
 * The halves are the batch's even and odd rows (copied: a few ids), so both get the same
 * mix of lengths. Each half's loss is its share of the whole batch's mean (cross
 * entropy's mean_over = the batch's token count), so the halves' losses and gradients
 * add up to the whole batch's, up to f32 rounding; the replica's gradients are then
 * added into the model's. The split depends on the batch alone, so the results at 2
 * threads are the same in every run.
 */
#include "models_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sg__replica {
    sg_model *m; /* the model's configuration and dtype; weights copied in every step */
    sg_graph *g; /* the second half's graph, reset every step */
};

void sg__replica_free(sg__replica *r)
{
    if (!r)
        return;
    sg_model_free(r->m);
    sg_graph_free(r->g);
    free(r);
}

bool sg__train_halves_wanted(const sg_model *m, const sg_batch *b)
{
    if (sg__threads() < 2 || sg_params_numel(m->params) > SG_SMALL_MODEL_PARAMS || !b || !b->src ||
        !b->src_len || !b->tgt_in || !b->tgt_out || b->src->ndim != 2 ||
        b->src->shape[0] < 2 * SG_SPLIT_MIN)
        return false;
    /* the halves copy rows of contiguous tensors; anything else runs whole (and a batch
     * the checks reject, for their message) */
    const sg_tensor *t[5] = {b->src, b->src_len, b->src_mask, b->tgt_in, b->tgt_out};
    for (int k = 0; k < 5; k++)
        if (t[k] && (t[k]->ndim < 1 || t[k]->shape[0] != b->src->shape[0] ||
                     !sg_tensor_is_contiguous(t[k])))
            return false;
    return true;
}

/* The replica (made on first use) with the model's weights and training flag, in *out;
 * SG_OK or an error code with message. */
static int replica_of(sg_model *m, sg__replica **out)
{
    sg__replica *r = m->replica;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->m = sg__model_new_uninit(&m->cfg, sg_params_dtype(m->params), 0)) ||
            !(r->g = sg_graph_new())) {
            sg__replica_free(r);
            return sg__error(SG_ENOMEM, "sg_model_loss_backward: out of memory for the second "
                                        "half's model");
        }
        m->replica = r;
    }
    int rc = sg_params_copy_values(r->m->params, m->params);
    if (rc != SG_OK)
        return rc;
    r->m->training = m->training;
    /* its dropout masks: a stream drawn from the model's, the same in every run */
    sg_rng_seed(&r->m->rng, sg_rng_next(&m->rng));
    *out = r;
    return SG_OK;
}

/* Adds the replica's gradients into the model's and zeroes them. */
static void merge_grads(sg_model *m, sg__replica *r)
{
    sg_params *p = m->params, *q = r->m->params;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *a = sg_params_at(p, i), *b = sg_params_at(q, i);
        if (a->alias_of >= 0 || !a->value->grad || !b->value->grad)
            continue;
        int64_t n = sg_tensor_numel(a->value);
        if (a->value->dtype == SG_F32) {
            float *x = a->value->grad, *y = b->value->grad;
            for (int64_t k = 0; k < n; k++)
                x[k] += y[k];
        } else {
            double *x = a->value->grad, *y = b->value->grad;
            for (int64_t k = 0; k < n; k++)
                x[k] += y[k];
        }
        sg_tensor_zero_grad(b->value);
    }
}

/* Rows h, h + 2, h + 4, ... of the contiguous batch tensor t, copied into g. A batch's
 * rows are sorted by length: first and second halves would leave the thread with the
 * longer ones finishing last. */
static sg_tensor *every_other_row(sg_graph *g, const sg_tensor *t, int h)
{
    int64_t B = t->shape[0], n = (B - h + 1) / 2, shape[SG_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = n;
    sg_tensor *c = sg_empty(g, t->dtype, t->ndim, shape);
    if (!c)
        return NULL;
    size_t row = (size_t)(t->stride[0]) * sg_dtype_size(t->dtype);
    for (int64_t r = 0; r < n; r++)
        memcpy((char *)c->data + (size_t)r * row, (const char *)t->data + (size_t)(2 * r + h) * row,
               row);
    return c;
}

static int64_t count_tokens(const sg_tensor *y)
{
    const int64_t *id = y->data;
    int64_t n = 0;
    for (int64_t k = 0; k < sg_tensor_numel(y); k++)
        n += id[k] != SG_TOK_PAD;
    return n;
}

sg_tensor *sg__loss_backward_halves(sg_model *m, sg_graph *g, const sg_batch *b,
                                    double label_smoothing, int64_t *n_tokens)
{
    static const char who[] = "sg_model_loss_backward";
    sg__replica *rep = NULL;
    int rc = replica_of(m, &rep);
    if (rc != SG_OK)
        return sg_graph_fail(g, rc, "%s", sg_last_error());
    sg_graph_reset(rep->g);
    sg_graph *gs[2] = {g, rep->g};
    sg_batch half[2];
    for (int h = 0; h < 2; h++) {
        const sg_tensor *full[5] = {b->src, b->src_len, b->src_mask, b->tgt_in, b->tgt_out};
        sg_tensor *v[5] = {NULL};
        for (int k = 0; k < 5; k++)
            if (full[k] && !(v[k] = every_other_row(gs[h], full[k], h)))
                return sg_graph_fail(g, SG_ENOMEM, "%s: out of memory", who);
        half[h] = (sg_batch){.B = v[0]->shape[0], .S = b->S, .T = b->T, .src = v[0],
                             .src_len = v[1], .src_mask = v[2], .tgt_in = v[3], .tgt_out = v[4]};
        half[h].n_tgt_tokens = count_tokens(v[4]);
    }
    int64_t N = half[0].n_tgt_tokens + half[1].n_tgt_tokens;
    sg_model *ms[2] = {m, rep->m};
    sg_tensor *loss[2] = {NULL, NULL};
    char msg[512] = "";
#ifdef _OPENMP
#pragma omp parallel for num_threads(2) schedule(static)
#endif
    for (int h = 0; h < 2; h++) {
        sg__set_thread_cap(1);
        loss[h] = sg__loss_of(ms[h], gs[h], &half[h], label_smoothing, N, NULL, true, who);
        if (!loss[h] && h == 1)
            snprintf(msg, sizeof msg, "%s", sg_last_error());
        sg__set_thread_cap(0);
    }
    if (!loss[0] || !loss[1]) {
        sg_params_zero_grad(rep->m->params);
        if (!loss[0]) /* this thread ran the first half: g and the message are set */
            return NULL;
        return sg_graph_fail(g, sg_graph_status(rep->g), "%s", msg);
    }
    merge_grads(m, rep);
    /* the whole batch's mean: the halves' shares added (0-d, of the model's float type) */
    if (loss[0]->dtype == SG_F32)
        *(float *)loss[0]->data += *(const float *)loss[1]->data;
    else
        *(double *)loss[0]->data += *(const double *)loss[1]->data;
    if (n_tokens)
        *n_tokens = N;
    return loss[0];
}
