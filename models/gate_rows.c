/*
 * gate_rows.c - the gradient of a precomputed input projection gx [B, T, G] whose rows
 * fused decoder steps (luong_step.c, bahdanau_step.c) keep their gate activations over
 * and then overwrite with the gates' gradient.
 */
#include "models_internal.h"

#include <string.h>

bool sg__claim_gate_rows_grad(sg_tensor *gx, int64_t t)
{
    if (gx->grad == gx->data)
        return true;
    if (gx->grad)
        return false;
    int64_t B = gx->shape[0], T = gx->shape[1], G = gx->shape[2];
    size_t es = sg_dtype_size(gx->dtype);
    for (int64_t b = 0; b < B && t + 1 < T; b++)
        memset((char *)gx->data + (size_t)((b * T + t + 1) * G) * es, 0,
               (size_t)((T - t - 1) * G) * es);
    gx->grad = gx->data; /* graph.c does not pool a gradient that is the tensor's data */
    return true;
}
