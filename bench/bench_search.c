/* bench_search.c - the decoder's own cost per step (the mock model only fills logits).
 *
 * usage: bench_search [B k V]   defaults: 64 5 8000 (enfr-sized vocabulary).
 * Reports milliseconds per decode and per step, and the time the mock spends making
 * logits, so the search overhead (log-softmax, partial top-2k, bookkeeping) is the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sg_decode.h"

typedef struct bmock {
    int64_t V, R, steps;
    double fill_s;
    sg_rng rng;
} bmock;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bstep(void *u, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits)
{
    bmock *m = u;
    (void)t;
    double t0 = now();
    *logits = sg_randn(g, SG_F32, 2, (int64_t[]){prev->shape[0], m->V}, &m->rng);
    float *x = (*logits)->data;
    for (int64_t r = 0; r < prev->shape[0]; r++)   /* </s> likely after ~20 steps */
        x[r * m->V + SG_TOK_EOS] += (float)(0.15 * (double)t);
    m->fill_s += now() - t0;
    m->steps++;
    return *logits ? SG_OK : sg_graph_status(g);
}

static int bselect(void *u, sg_graph *g, sg_tensor *parent, sg_tensor *sentence)
{
    (void)g;
    (void)sentence;
    ((bmock *)u)->R = parent->shape[0];
    return SG_OK;
}

int main(int argc, char **argv)
{
    int64_t B = argc > 1 ? atoll(argv[1]) : 64, k = argc > 2 ? atoll(argv[2]) : 5,
            V = argc > 3 ? atoll(argv[3]) : 8000;
    int64_t *len = malloc((size_t)B * sizeof *len);
    for (int64_t b = 0; b < B; b++)
        len[b] = 10 + b % 20;
    sg_decoder_ops ops = {bstep, bselect};
    sg_decode_opts o = sg_decode_opts_default();
    o.beam = k;
    for (int greedy = 1; greedy >= 0; greedy--) {
        bmock m = {.V = V, .R = B};
        sg_rng_seed(&m.rng, 1);
        sg_decode_result r;
        double t0 = now();
        int rc = greedy ? sg_decode_greedy(&ops, &m, B, len, &o, &r)
                        : sg_decode_beam(&ops, &m, B, len, &o, &r);
        double dt = now() - t0;
        if (rc != SG_OK) {
            fprintf(stderr, "%s\n", sg_last_error());
            return 1;
        }
        printf("%-6s B=%lld k=%lld V=%lld: %.1f ms, %lld steps, %.3f ms/step of which mock "
               "%.3f ms/step\n", greedy ? "greedy" : "beam", (long long)B,
               (long long)(greedy ? 1 : k), (long long)V, 1e3 * dt, (long long)m.steps,
               1e3 * dt / (double)m.steps, 1e3 * m.fill_s / (double)m.steps);
        sg_decode_result_free(&r);
    }
    free(len);
    return 0;
}
