/*
 * bench_gemm.c - GEMM through seqgrad (sg_matmul, sg_linear with its [out, in] weight
 * used transposed) against calling BLIS's bli_sgemm directly, in GFLOP/s at 1 and 2
 * threads (median of reps), plus elementwise add / tanh bandwidth in GB/s against plain
 * C loops. Each seqgrad run is paired with a baseline run; ovh% is the median of the
 * per-pair time ratios.
 *
 *     build/bench/bench_gemm [reps]        (default 5)
 *     build/bench/bench_gemm --generator [reps]   only the generator's products
 *
 * seqgrad's overhead over raw BLIS should stay under 5% at the large sizes.
 *
 * It also times raw bli_sgemm on the generator of enfr-bahdanau (640 rows, 1024 inputs,
 * 8000 words) in the three orientations a training step runs it: forward y = x W^T (NT),
 * dx = dy W (NN, k = 8000) and dW = dy^T x (TN, k = 640). That is the hardware reference
 * of the performance issue ("the GFLOP/s raw BLIS reaches at 640x1024x8000").
 */
#include <blis.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg_autograd.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*run_fn)(void *ctx);

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Runs base and f alternately reps times (after a warm-up of each), so that load
 * changes on a shared machine hit both alike: median seconds of each, and the median
 * of the per-pair ratios t_f / t_base as the overhead estimate. */
typedef struct {
    double base, f, ratio;
} pair_times;

static pair_times time_pair(run_fn base, run_fn f, void *ctx, int reps)
{
    double tb[64], tf[64], q[64];
    if (reps > 64)
        reps = 64;
    base(ctx);
    f(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        base(ctx);
        double t1 = now();
        f(ctx);
        double t2 = now();
        tb[r] = t1 - t0;
        tf[r] = t2 - t1;
        q[r] = tf[r] / tb[r];
    }
    return (pair_times){median(tb, reps), median(tf, reps), median(q, reps)};
}

typedef struct {
    int64_t m, k, n;
    sg_tensor *a, *b, *w; /* a [m,k], b [k,n], w [n,k] (heap) */
    float *c;             /* raw output [m,n] */
    sg_graph *g;
} gemm_ctx;

static void raw_nn(void *p)
{
    gemm_ctx *c = p;
    float one = 1, zero = 0;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->n, c->k, &one, c->a->data, c->k, 1,
              c->b->data, c->n, 1, &zero, c->c, c->n, 1);
}

static void raw_nt(void *p) /* c = a w^T, w^T given as strides */
{
    gemm_ctx *c = p;
    float one = 1, zero = 0;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->n, c->k, &one, c->a->data, c->k, 1,
              c->w->data, 1, c->k, &zero, c->c, c->n, 1);
}

/* the generator's three products, raw BLIS; a [m,k] x, b [m,n] dy, w [n,k] W */
typedef struct {
    int64_t m, k, n;
    float *x, *dy, *w, *y, *dx, *dw;
} gen_ctx;

static void gen_fwd(void *p)
{
    gen_ctx *c = p;
    float one = 1, zero = 0;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->n, c->k, &one, c->x, c->k, 1, c->w,
              1, c->k, &zero, c->y, c->n, 1);
}

static void gen_dx(void *p)
{
    gen_ctx *c = p;
    float one = 1, zero = 0;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->k, c->n, &one, c->dy, c->n, 1, c->w,
              c->k, 1, &zero, c->dx, c->k, 1);
}

static void gen_dw(void *p)
{
    gen_ctx *c = p;
    float one = 1;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->n, c->k, c->m, &one, c->dy, 1, c->n, c->x,
              c->k, 1, &one, c->dw, c->k, 1);
}

static float *randn_buf(sg_rng *r, int64_t n)
{
    float *b = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        b[i] = (float)sg_rng_normal(r);
    return b;
}

/* Raw BLIS GFLOP/s on the generator's products at 1 and 2 threads. */
static void bench_generator(sg_rng *r, int reps, bool machine_lines)
{
    gen_ctx c = {.m = 640, .k = 1024, .n = 8000};
    c.x = randn_buf(r, c.m * c.k);
    c.dy = randn_buf(r, c.m * c.n);
    c.w = randn_buf(r, c.n * c.k);
    c.y = randn_buf(r, c.m * c.n);
    c.dx = randn_buf(r, c.m * c.k);
    c.dw = randn_buf(r, c.n * c.k);
    double flop = 2.0 * (double)c.m * (double)c.k * (double)c.n;
    printf("\n%-24s %3s %10s %10s %10s %10s   (raw bli_sgemm, GFLOP/s)\n", "generator 640x1024x8000",
           "thr", "y=xW^T", "dx=dyW", "dW=dy^Tx", "all three");
    for (int t = 1; t <= 2; t++) {
        sg_set_num_threads(t);
        pair_times a = time_pair(gen_fwd, gen_dx, &c, reps);
        pair_times b = time_pair(gen_dw, gen_fwd, &c, reps);
        double all = 3 * flop / (a.base + a.f + b.base) * 1e-9;
        printf("%-24s %3d %10.1f %10.1f %10.1f %10.1f\n", "", t, flop / a.base * 1e-9,
               flop / a.f * 1e-9, flop / b.base * 1e-9, all);
        if (machine_lines)
            printf("generator_gflops threads=%d all=%.1f\n", t, all);
    }
    free(c.x);
    free(c.dy);
    free(c.w);
    free(c.y);
    free(c.dx);
    free(c.dw);
}

static void sg_mm(void *p)
{
    gemm_ctx *c = p;
    sg_graph_reset(c->g);
    if (!sg_matmul(c->g, c->a, c->b)) {
        fprintf(stderr, "sg_matmul: %s\n", sg_last_error());
        exit(1);
    }
}

static void sg_lin(void *p)
{
    gemm_ctx *c = p;
    sg_graph_reset(c->g);
    if (!sg_linear(c->g, c->a, c->w, NULL)) {
        fprintf(stderr, "sg_linear: %s\n", sg_last_error());
        exit(1);
    }
}

typedef struct {
    sg_tensor *x, *y;
    float *out;
    sg_graph *g;
    int64_t n;
} ew_ctx;

static void sg_add_run(void *p)
{
    ew_ctx *c = p;
    sg_graph_reset(c->g);
    sg_add(c->g, c->x, c->y);
}

static void sg_tanh_run(void *p)
{
    ew_ctx *c = p;
    sg_graph_reset(c->g);
    sg_tanh(c->g, c->x);
}

static void raw_add_run(void *p)
{
    ew_ctx *c = p;
    const float *x = c->x->data, *y = c->y->data;
    for (int64_t i = 0; i < c->n; i++)
        c->out[i] = x[i] + y[i];
}

static void raw_tanh_run(void *p)
{
    ew_ctx *c = p;
    const float *x = c->x->data;
    for (int64_t i = 0; i < c->n; i++)
        c->out[i] = tanhf(x[i]);
}

static sg_tensor *heap_randn(sg_rng *r, int64_t d0, int64_t d1)
{
    sg_tensor *t = sg_tensor_new(SG_F32, 2, (int64_t[]){d0, d1});
    if (!t || sg_tensor_normal_(t, r, 0, 1) != SG_OK) {
        fprintf(stderr, "%s\n", sg_last_error());
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    /* libgomp reads OMP_WAIT_POLICY / GOMP_SPINCOUNT when it loads: re-run with them
     * set so idle BLIS threads sleep after a short spin (see sg_set_num_threads). */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        setenv("GOMP_SPINCOUNT", "10000", 0);
        execv("/proc/self/exe", argv);
    }
    /* --generator: only the generator's products, then a last line per thread count
     * "generator_gflops threads=N all=G" for scripts (bench/compare.sh) */
    bool gen_only = argc > 1 && strcmp(argv[1], "--generator") == 0;
    if (gen_only) {
        argv++;
        argc--;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1)
        reps = 1;
    sg_get_num_threads(); /* lets seqgrad pick the BLIS kernels before BLIS starts */
    const char *spin = getenv("GOMP_SPINCOUNT");
    printf("BLIS arch %s, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s, median of %d reps\n",
           bli_arch_string(bli_arch_query_id()), getenv("OMP_WAIT_POLICY"), spin ? spin : "-",
           reps);

    static const int64_t sizes[][3] = {{64, 256, 768}, {256, 256, 256}, {1024, 1024, 1024}};
    sg_rng r;
    sg_rng_seed(&r, 1);
    if (gen_only) {
        bench_generator(&r, reps, true);
        return 0;
    }
    printf("\n%-16s %3s %10s %10s %8s %10s %10s %8s\n", "GEMM MxKxN", "thr", "raw NN", "matmul",
           "ovh%", "raw NT", "linear", "ovh%");
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        gemm_ctx c = {.m = sizes[s][0], .k = sizes[s][1], .n = sizes[s][2]};
        c.a = heap_randn(&r, c.m, c.k);
        c.b = heap_randn(&r, c.k, c.n);
        c.w = heap_randn(&r, c.n, c.k);
        c.c = malloc(sizeof(float) * (size_t)(c.m * c.n));
        c.g = sg_graph_new();
        double flop = 2.0 * (double)c.m * (double)c.k * (double)c.n;
        for (int t = 1; t <= 2; t++) {
            sg_set_num_threads(t);
            pair_times mm = time_pair(raw_nn, sg_mm, &c, reps);
            pair_times li = time_pair(raw_nt, sg_lin, &c, reps);
            char name[32];
            snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)c.m, (long long)c.k,
                     (long long)c.n);
            printf("%-16s %3d %10.1f %10.1f %+8.1f %10.1f %10.1f %+8.1f\n", name, t,
                   flop / mm.base * 1e-9, flop / mm.f * 1e-9, 100 * (mm.ratio - 1),
                   flop / li.base * 1e-9, flop / li.f * 1e-9, 100 * (li.ratio - 1));
        }
        sg_graph_free(c.g);
        free(c.c);
        sg_tensor_free(c.a);
        sg_tensor_free(c.b);
        sg_tensor_free(c.w);
    }

    bench_generator(&r, reps, false);

    sg_set_num_threads(1);
    ew_ctx e = {.n = INT64_C(1) << 22};
    e.x = heap_randn(&r, 1, e.n);
    e.y = heap_randn(&r, 1, e.n);
    e.out = malloc(sizeof(float) * (size_t)e.n);
    e.g = sg_graph_new();
    double mb = 4.0 * (double)e.n;
    printf("\n%-16s %10s %10s %8s   (GB/s, f32, %lld elements, 1 thread)\n", "elementwise",
           "plain C", "seqgrad", "ovh%", (long long)e.n);
    pair_times a = time_pair(raw_add_run, sg_add_run, &e, reps);
    printf("%-16s %10.2f %10.2f %+8.1f\n", "add", 3 * mb / a.base * 1e-9, 3 * mb / a.f * 1e-9,
           100 * (a.ratio - 1));
    pair_times th = time_pair(raw_tanh_run, sg_tanh_run, &e, reps);
    printf("%-16s %10.2f %10.2f %+8.1f\n", "tanh", 2 * mb / th.base * 1e-9,
           2 * mb / th.f * 1e-9, 100 * (th.ratio - 1));
    sg_graph_free(e.g);
    free(e.out);
    sg_tensor_free(e.x);
    sg_tensor_free(e.y);
    return 0;
}
