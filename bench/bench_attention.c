/*
 * bench_attention.c - per-step cost of the attention blocks (forward + backward):
 * Bahdanau step, Luong general global / local-p steps, multi-head self-attention.
 * Usage: bench_attention [iters]. Prints milliseconds per call; a sanity tool, the
 * real measurements happen on a quiet machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sg_nn.h"

#define CHECK(x)                                                                             \
    do {                                                                                     \
        if (!(x)) {                                                                          \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, sg_last_error());             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    if (iters < 1) {
        fprintf(stderr, "usage: bench_attention [iters >= 1]\n");
        return 2;
    }
    int64_t B = 64, S = 30, H = 256, A = 256;
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_params *p = sg_params_new(SG_F32);
    sg_additive_attention bah;
    sg_luong_attention lg, lp, lc;
    sg_mha mha;
    CHECK(sg_additive_attention_init(&bah, p, "bah", H, 2 * H, A, &r) == SG_OK);
    CHECK(sg_luong_attention_init(&lg, p, "lg", SG_LUONG_GENERAL, SG_LUONG_GLOBAL, H, A, 10, &r) ==
          SG_OK);
    CHECK(sg_luong_attention_init(&lp, p, "lp", SG_LUONG_GENERAL, SG_LUONG_LOCAL_P, H, A, 10, &r) ==
          SG_OK);
    CHECK(sg_luong_attention_init(&lc, p, "lc", SG_LUONG_CONCAT, SG_LUONG_LOCAL_M, H, A, 10, &r) ==
          SG_OK);
    CHECK(sg_mha_init(&mha, p, "mha", 256, 4, 0.0, &r) == SG_OK);
    sg_graph *g = sg_graph_new();
    int64_t lens[64];
    for (int b = 0; b < 64; b++)
        lens[b] = S - b % 10;
    sg_tensor *len = sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){B}, lens);
    const char *names[] = {"bahdanau", "luong general global", "luong general local-p",
                           "luong concat local-m", "mha self-attention [64,30,256]"};
    const sg_luong_attention *lm[] = {NULL, &lg, &lp, &lc};
    sg_tensor *h1 = sg_tensor_new(SG_F32, 3, (int64_t[]){B, S, 2 * H});
    sg_tensor *h2 = sg_tensor_new(SG_F32, 3, (int64_t[]){B, S, H});
    sg_tensor *s0 = sg_tensor_new(SG_F32, 2, (int64_t[]){B, H});
    sg_tensor *x0 = sg_tensor_new(SG_F32, 3, (int64_t[]){B, S, 256});
    sg_tensor_normal_(h1, &r, 0, 1);
    sg_tensor_normal_(h2, &r, 0, 1);
    sg_tensor_normal_(s0, &r, 0, 1);
    sg_tensor_normal_(x0, &r, 0, 1);
    const int T = 10; /* decoder steps per graph */
    for (int which = 0; which < 5; which++) {
        double tpre = 0, tstep = 0, tbwd = 0;
        for (int it = -1; it < iters; it++) {
            sg_graph_reset(g);
            sg_params_zero_grad(p);
            double t0 = now();
            sg_tensor *loss = NULL;
            double t1 = t0;
            if (which < 4) {
                sg_attn_memory mem;
                if (which == 0)
                    CHECK(sg_additive_attention_precompute(g, &bah, h1, len, NULL, &mem) == SG_OK);
                else
                    CHECK(sg_luong_attention_precompute(g, lm[which], h2, len, NULL, &mem) ==
                          SG_OK);
                t1 = now();
                for (int t = 0; t < T; t++) {
                    sg_tensor *c = which == 0
                                       ? sg_additive_attention_step(g, &bah, &mem, s0, NULL)
                                       : sg_luong_attention_step(g, lm[which], &mem, s0, t, NULL);
                    sg_tensor *l = sg_sum_all(g, c);
                    loss = loss ? sg_add(g, loss, l) : l;
                }
            } else {
                sg_mha_opts o = {.key_lengths = len, .causal = true};
                loss = sg_sum_all(g, sg_mha_forward(g, &mha, x0, x0, &o));
            }
            CHECK(loss);
            double t2 = now();
            CHECK(sg_backward(g, loss) == SG_OK);
            double t3 = now();
            if (it >= 0) {
                tpre += t1 - t0;
                tstep += t2 - t1;
                tbwd += t3 - t2;
            }
        }
        int per = which < 4 ? T : 1;
        printf("%-32s precompute %7.3f ms  forward/step %7.3f ms  backward/step %7.3f ms\n",
               names[which], 1e3 * tpre / iters, 1e3 * tstep / iters / per,
               1e3 * tbwd / iters / per);
    }
    sg_tensor_free(h1);
    sg_tensor_free(h2);
    sg_tensor_free(s0);
    sg_tensor_free(x0);
    sg_tensor_free(len);
    sg_graph_free(g);
    sg_params_free(p);
    return 0;
}
