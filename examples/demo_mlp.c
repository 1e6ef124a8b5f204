/* demo_mlp.c - the smallest real training loop: a 2-layer MLP learns y = sin(x0) * x1
 * on generated data with plain SGD, through seqgrad's autograd. Prints the loss. */
#include <math.h>
#include <stdio.h>

#include "sg_nn.h"

#define CHECK(x)                                                                            \
    do {                                                                                    \
        if (!(x)) {                                                                         \
            fprintf(stderr, "error: %s\n", sg_last_error());                                \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

int main(void)
{
    enum { N = 256, H = 32, STEPS = 600 };
    sg_rng rng;
    sg_rng_seed(&rng, 1);
    sg_params *p = sg_params_new(SG_F32);
    sg_linear_layer l1, l2;
    CHECK(p && sg_linear_layer_init(&l1, p, "l1", 2, H, true, &rng) == SG_OK);
    CHECK(sg_linear_layer_init(&l2, p, "l2", H, 1, true, &rng) == SG_OK);
    float xs[N][2], ys[N];
    for (int i = 0; i < N; i++) {
        xs[i][0] = (float)(6 * sg_rng_uniform(&rng) - 3);
        xs[i][1] = (float)(2 * sg_rng_uniform(&rng) - 1);
        ys[i] = sinf(xs[i][0]) * xs[i][1];
    }
    sg_graph *g = sg_graph_new();
    CHECK(g);
    for (int step = 0; step <= STEPS; step++) {
        sg_tensor *x = sg_from_buffer(g, SG_F32, 2, (int64_t[]){N, 2}, xs);
        sg_tensor *y = sg_from_buffer(g, SG_F32, 2, (int64_t[]){N, 1}, ys);
        sg_tensor *h = sg_tanh(g, sg_linear_layer_forward(g, &l1, x));
        sg_tensor *d = sg_sub(g, sg_linear_layer_forward(g, &l2, h), y);
        sg_tensor *loss = sg_mean_all(g, sg_mul(g, d, d));
        CHECK(loss);
        sg_params_zero_grad(p);
        CHECK(sg_backward(g, loss) == SG_OK);
        if (step % 100 == 0)
            printf("step %4d  mse %.5f\n", step, sg_tensor_get(loss, 0));
        for (int i = 0; i < sg_params_count(p); i++) { /* SGD, lr 0.2 */
            sg_tensor *w = sg_params_at(p, i)->value;
            float *v = w->data, *gr = w->grad;
            for (int64_t k = 0; k < sg_tensor_numel(w); k++)
                v[k] -= 0.2f * gr[k];
        }
        sg_graph_reset(g);
    }
    sg_graph_free(g);
    sg_params_free(p);
    return 0;
}
