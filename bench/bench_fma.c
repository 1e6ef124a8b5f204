/*
 * bench_fma.c - how much multiply-add throughput this machine gives N threads at once,
 * right now: each thread runs independent FMA chains on registers only (no memory), and
 * the program prints every thread's GFLOP/s and their sum.
 *
 *     build/bench/bench_fma [--threads N] [--ms MS]     (default 2 threads, 100 ms)
 *
 * Why: on the 2-vCPU virtual machine of 2026-12 the two threads together made anywhere
 * from 103 to 201 GFLOP/s over two and a half minutes (30 readings), around 100 per thread
 * when the host ran them on separate cores, about 51 each when it did not. A benchmark of
 * code whose time is mostly multiply-adds (seqgrad's decoding of a small model) then runs
 * at about half its 2-thread speed, while code with more other work loses less; compare.sh
 * reads this before every run so that a ratio can be read with the capacity each side had.
 *
 * The loop uses the widest FMA the CPU has: AVX-512 (16 floats), else AVX2 + FMA (8),
 * else plain C (whatever the compiler makes of it). The last line of stdout is one JSON
 * object: threads, isa, gflops_per_thread [...], gflops_total.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define X86 1
#else
#define X86 0
#endif

#define MAX_THREADS 256
#define CHAINS 10 /* independent accumulators: more than FMA latency x FMA units */

typedef struct {
    long iters;        /* loop trips */
    int lanes;         /* floats per FMA */
    double seconds;    /* out */
    pthread_barrier_t *start;
} job;

/* CHAINS FMAs a trip on registers; the empty asm keeps every accumulator live without
 * a store, so the compiler can neither fold nor drop the chains */
#define FMA_LOOP(T, FMA, ZERO, a, b)                                                         \
    do {                                                                                     \
        T c0 = ZERO, c1 = ZERO, c2 = ZERO, c3 = ZERO, c4 = ZERO;                            \
        T c5 = ZERO, c6 = ZERO, c7 = ZERO, c8 = ZERO, c9 = ZERO;                            \
        for (long i = 0; i < iters; i++) {                                                   \
            c0 = FMA(a, b, c0), c1 = FMA(a, b, c1), c2 = FMA(a, b, c2);                     \
            c3 = FMA(a, b, c3), c4 = FMA(a, b, c4), c5 = FMA(a, b, c5);                     \
            c6 = FMA(a, b, c6), c7 = FMA(a, b, c7), c8 = FMA(a, b, c8);                     \
            c9 = FMA(a, b, c9);                                                              \
            __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4),         \
                             "+x"(c5), "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9));             \
        }                                                                                    \
    } while (0)

#if X86
__attribute__((target("avx512f"))) static void loop_avx512(long iters)
{
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    FMA_LOOP(__m512, _mm512_fmadd_ps, _mm512_setzero_ps(), a, b);
}

__attribute__((target("avx2,fma"))) static void loop_avx2(long iters)
{
    __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
    FMA_LOOP(__m256, _mm256_fmadd_ps, _mm256_setzero_ps(), a, b);
}
#endif

static void loop_plain(long iters)
{
    volatile float va = 1.0001f, vb = 0.9999f;
    float a = va, b = vb;
#define FMAF(x, y, z) ((x) * (y) + (z))
#if X86
    FMA_LOOP(float, FMAF, 0.0f, a, b);
#else
    float c[CHAINS] = {0};
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < CHAINS; k++)
            c[k] = FMAF(a, b, c[k]);
    volatile float sink = c[0];
    (void)sink;
#endif
#undef FMAF
}

static int pick_lanes(const char **isa)
{
#if X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *isa = "avx512";
        return 16;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *isa = "avx2";
        return 8;
    }
#endif
    *isa = "plain";
    return 1;
}

static void run_loop(int lanes, long iters)
{
#if X86
    if (lanes == 16) {
        loop_avx512(iters);
        return;
    }
    if (lanes == 8) {
        loop_avx2(iters);
        return;
    }
#endif
    loop_plain(iters);
}

static void *worker(void *p)
{
    job *j = p;
    pthread_barrier_wait(j->start);
    double t0 = bench_now();
    run_loop(j->lanes, j->iters);
    j->seconds = bench_now() - t0;
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_fma [--threads N (1..%d)] [--ms MS]\n", MAX_THREADS);
    exit(2);
}

int main(int argc, char **argv)
{
    bench_prog = "bench_fma";
    int nt = 2;
    double ms = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            ms = atof(argv[++i]);
        else
            usage();
    }
    if (nt < 1 || nt > MAX_THREADS || !(ms > 0 && ms <= 60000))
        usage();
    const char *isa;
    int lanes = pick_lanes(&isa);
    /* size the loop by a short run of one thread: ms at that speed */
    long iters = 100000;
    double t0 = bench_now();
    run_loop(lanes, iters);
    double dt = bench_now() - t0;
    iters = (long)((double)iters * (ms * 1e-3) / (dt > 1e-6 ? dt : 1e-6));
    if (iters < 1000)
        iters = 1000;

    pthread_barrier_t start;
    BCHECK(pthread_barrier_init(&start, NULL, (unsigned)nt) == 0);
    job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < nt; t++) {
        jobs[t] = (job){.iters = iters, .lanes = lanes, .start = &start};
        if (t > 0)
            BCHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0);
    }
    worker(&jobs[0]);
    for (int t = 1; t < nt; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&start);

    double per[MAX_THREADS], total = 0;
    double flops = (double)iters * CHAINS * lanes * 2;
    printf("fma_gflops threads=%d isa=%s per_thread=", nt, isa);
    for (int t = 0; t < nt; t++) {
        per[t] = flops / jobs[t].seconds / 1e9;
        total += per[t];
        printf(t ? ",%.1f" : "%.1f", per[t]);
    }
    printf(" total=%.1f\n", total);
    bench_json j = {stdout, 0};
    fputc('{', stdout);
    bench_json_str(&j, "mode", "fma");
    bench_json_int(&j, "threads", nt);
    bench_json_str(&j, "isa", isa);
    bench_json_nums(&j, "gflops_per_thread", per, nt, 1);
    bench_json_num(&j, "gflops_total", total, 1);
    fputs("}\n", stdout);
    return 0;
}
