/*
 * bench_rnn.c - GRU / LSTM training-step micro-benchmark, the same graph as the
 * PyTorch reference bench_rnn_micro.py: one layer, T=30, B=64, input 256, hidden 256,
 * a per-step Linear(256, 1) and an MSE loss; forward + backward w.r.t. the parameters
 * (the input needs no gradient), no optimiser step.
 *
 *     bench_rnn [--cell gru|lstm] [--threads N] [--reps R]
 * Prints min / median after 3 warm-up steps; the last line is `ms_per_step=<median>`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sg_nn.h"

#define CHECK(x)                                                                            \
    do {                                                                                    \
        if (!(x)) {                                                                         \
            fprintf(stderr, "bench_rnn: %s failed: %s\n", #x, sg_last_error());             \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static double clock_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *cell = "gru";
    int threads = 1, reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cell") && i + 1 < argc)
            cell = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_rnn [--cell gru|lstm] [--threads N] [--reps R]\n");
            return 2;
        }
    }
    bool lstm = !strcmp(cell, "lstm");
    if ((!lstm && strcmp(cell, "gru")) || threads < 1 || reps < 1) {
        fprintf(stderr, "bench_rnn: bad --cell, --threads or --reps\n");
        return 2;
    }
    CHECK(sg_set_num_threads(threads) == SG_OK);
    const int64_t T = 30, B = 64, I = 256, H = 256;
    sg_rng rng;
    sg_rng_seed(&rng, 0);
    sg_params *p = sg_params_new(SG_F32);
    CHECK(p);
    sg_rnn rnn;
    sg_linear_layer head;
    sg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = 1};
    CHECK((lstm ? sg_lstm_init(&rnn, p, "rnn", &cfg, &rng)
                : sg_gru_init(&rnn, p, "rnn", &cfg, &rng)) == SG_OK);
    CHECK(sg_linear_layer_init(&head, p, "head", H, 1, true, &rng) == SG_OK);
    /* inputs and targets U(-0.5, 0.5), made once like the reference */
    sg_tensor *x = sg_tensor_new(SG_F32, 3, (int64_t[]){B, T, I});
    sg_tensor *y = sg_tensor_new(SG_F32, 3, (int64_t[]){B, T, 1});
    CHECK(x && y);
    sg_tensor_uniform_(x, &rng, -0.5, 0.5);
    sg_tensor_uniform_(y, &rng, -0.5, 0.5);
    sg_graph *g = sg_graph_new();
    CHECK(g);
    /* wall time, and CPU time of the process (all threads): on a busy machine the CPU
     * time of a 1-thread run still shows the work done */
    double *ms = malloc(sizeof(double) * (size_t)reps), *cpu = malloc(sizeof(double) * (size_t)reps);
    CHECK(ms && cpu);
    for (int it = -3; it < reps; it++) {
        double t0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        sg_params_zero_grad(p);
        sg_tensor *out = sg_rnn_forward(g, &rnn, x, NULL, NULL, NULL);
        sg_tensor *d = sg_sub(g, sg_linear_layer_forward(g, &head, out), y);
        sg_tensor *loss = sg_mean_all(g, sg_mul(g, d, d));
        CHECK(loss);
        CHECK(sg_backward(g, loss) == SG_OK);
        sg_graph_reset(g);
        if (it >= 0) {
            ms[it] = clock_ms(CLOCK_MONOTONIC) - t0;
            cpu[it] = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
        }
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    qsort(cpu, (size_t)reps, sizeof *cpu, cmp_double);
    double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    double cmed = reps % 2 ? cpu[reps / 2] : 0.5 * (cpu[reps / 2 - 1] + cpu[reps / 2]);
    printf("seqgrad %s T=30 B=64 in=256 hid=256 threads=%d: fwd+bwd min %.2f ms median %.2f ms "
           "(%d reps); cpu median %.2f ms\n",
           cell, threads, ms[0], med, reps, cmed);
    printf("ms_per_step=%.3f\n", med);
    free(ms);
    free(cpu);
    sg_graph_free(g);
    sg_tensor_free(x);
    sg_tensor_free(y);
    sg_params_free(p);
    return 0;
}
