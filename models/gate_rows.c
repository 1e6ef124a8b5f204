/*
 * gate_rows.c - the gradient of a precomputed input projection gx [B, T, G] whose rows
 * fused decoder steps (luong_step.c, bahdanau_step.c) keep their gate activations over
 * and then overwrite with the gates' gradient, and the backward of such a step's input
 * side.
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

void sg__step_gx_bwd(sg_graph *g, sg_tensor *gx, int64_t t, bool own, const void *da,
                     int64_t lda)
{
    char *dgx = !own ? sg_grad_of(g, gx) : NULL;
    if (!dgx)
        return;
    int64_t B = gx->shape[0], G = gx->shape[2];
    dgx += (size_t)(t * G) * sg_dtype_size(gx->dtype); /* gx has a gradient of its own */
    sg__accumulate(gx->dtype, dgx, (int64_t[]){lda, 1}, 2, (int64_t[]){B, G}, da,
                   (int64_t[]){lda, 1});
}

void sg__step_product_bwd(sg_graph *g, const void *da, int64_t lda, int64_t G, sg_tensor *x,
                          const sg_tensor *Wx)
{
    sg_dtype dt = x->dtype;
    int64_t B = x->shape[0], F = x->shape[1];
    void *d;
    if ((d = sg_grad_of(g, x))) /* dx += da W_x, W_x packed once per backward */
        sg__gemm_op(dt, B, F, G, da, lda, sg__weight_operand(g, Wx, true), 0, 0, 1.0, d, F);
    if ((d = sg_grad_of(g, (sg_tensor *)Wx))) /* dW_x += da^T x */
        sg__gemm(dt, G, F, B, 1.0, da, 1, lda, x->data, F, 1, 1.0, d, F, 1);
}
