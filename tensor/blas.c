/* blas.c - the only file that talks to BLIS: strided GEMM, thread count, kernel choice. */
#include "tensor_internal.h"

#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef SG_HAVE_XSMM
#include <libxsmm.h>
#endif

static int num_threads = 0; /* 0: not initialised yet */
/* the active kernels have no unpacked path for skinny products (skx) */
static bool skinny_by_rows = false;
/* LIBXSMM for small products: by default only where the CPU has AVX-512 (SG_XSMM=0 or 1
 * in the environment decides instead). Its JIT kernels beat BLIS's on the per-step
 * products of an RNN there (Intel, 1.5-2.3x), but on an AVX2-only CPU (AMD EPYC Zen 3)
 * BLIS's haswell/zen kernels were faster (dates 7%, enfr-bahdanau 5% per training step),
 * and LIBXSMM's code registry, allocated and written at its initialisation, adds 16 MB
 * to the resident memory of every process. */
static bool use_xsmm = false;
/* LIBXSMM's JIT kernels leave the upper halves of the vector registers dirty (no
 * vzeroupper); SSE code run after them, such as libm or any loop not compiled for AVX,
 * then pays a state-transition penalty on every instruction (the Luong step's gates ran
 * 3x slower). We clear them after each kernel when the CPU has AVX. */
static bool has_avx = false;

/* floats of B (128 KB, in L2) up to which a product may go to sg__gemm_direct */
#define DIRECT_MAX_B 32768.0
/* sg__gemm_small takes products up to this many multiply-adds */
#define SMALL_MAX_MNK (64.0 * 64.0 * 64.0)
/* products whose output has a side of at most this many may use BLIS's sup kernels */
#define SUP_MAX_SIDE 48
/* 2 m n k of every product so far, all threads (mha.c calls sg__gemm in parallel loops). */
static uint64_t gemm_flops = 0;

/* Debian's BLIS 0.9 picks its AVX2 kernels (haswell) on Intel AVX-512 CPUs, where its
 * skx kernels are up to ~1.5x faster for large products: choose them there, unless the
 * user picked an arch. On AMD it picks zen3 kernels, which measured better than skx on
 * this project's AMD EPYC (Zen 4): equal on large products, and their unpacked path for
 * skinny ones (a decoder's [rows, 1024] x [1024, 8000] generator) is up to 8x faster, so
 * AMD keeps BLIS's choice. Must run before BLIS initialises; BLIS 0.9 parses
 * BLIS_ARCH_TYPE as a number (the arch_t id). */
static void pick_arch(void);

static void choose_kernels(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    pick_arch();
    bli_init(); /* after the arch is chosen: BLIS reads BLIS_ARCH_TYPE here */
#ifdef SG_HAVE_XSMM
    const char *x = getenv("SG_XSMM");
    __builtin_cpu_init();
    use_xsmm = x && x[0] ? x[0] != '0' : __builtin_cpu_supports("avx512f");
    has_avx = __builtin_cpu_supports("avx");
    if (use_xsmm)
        libxsmm_init();
#endif
    skinny_by_rows = bli_arch_query_id() == BLIS_ARCH_SKX;
}

static void pick_arch(void)
{
    if (getenv("BLIS_ARCH_TYPE"))
        return;
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_SKX);
        setenv("BLIS_ARCH_TYPE", id, 0);
    }
}

/* C[r, :] += alpha A[r, :] B row by row through gemv, which does not pack B: for a
 * product with very few rows, packing the whole of B costs more than the product (the
 * skx configuration has no unpacked path for skinny products). */
static void gemm_by_rows(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha,
                         const void *A, int64_t rsa, int64_t csa, const void *B, int64_t rsb,
                         int64_t csb, double beta, void *C, int64_t rsc, int64_t csc,
                         rntm_t *rntm)
{
    size_t es = sg_dtype_size(dt);
    for (int64_t r = 0; r < m; r++) {
        const char *a = (const char *)A + (size_t)(r * rsa) * es;
        char *c = (char *)C + (size_t)(r * rsc) * es;
        /* c^T (n) = B^T (n x k, strides csb, rsb) a^T (k) */
        if (dt == SG_F32) {
            float al = (float)alpha, be = (float)beta;
            bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, n, k, &al, (float *)B, csb, rsb,
                         (float *)a, csa, &be, (float *)c, csc, NULL, rntm);
        } else {
            bli_dgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, n, k, &alpha, (double *)B, csb,
                         rsb, (double *)a, csa, &beta, (double *)c, csc, NULL, rntm);
        }
    }
}

/* C = alpha A B + beta C through BLIS. */
static void gemm_blis(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
                      int64_t rsa, int64_t csa, const void *B, int64_t rsb, int64_t csb,
                      double beta, void *C, int64_t rsc, int64_t csc)
{
    /* Waking BLIS's threads costs more than a small product gains from them (and
     * under load a parallel region can stall for a whole time slice): products below
     * SG_SMALL_GEMM_THREADS multiply-adds run on the calling thread. The result is the same. */
    rntm_t rntm;
    bli_rntm_init(&rntm);
    int nthr = sg__threads();
    bli_rntm_set_num_threads(
        nthr > 1 && (double)m * (double)n * (double)k >= SG_SMALL_GEMM_THREADS ? nthr : 1, &rntm);
    /* BLIS 0.9 sends a product to its small/unpacked ("sup") kernels whenever one
     * dimension is under a threshold (512 rows for f32 on zen3). They win only on
     * skinny outputs: on the generator of a 384-row chunk (384 x 8000 x 1024) they made
     * 27-35 GFLOP/s where packing makes 86 (AMD EPYC Zen 3, one thread), and 0.5-0.9x
     * of the packed speed on most other products with both sides of 64 or more. */
    if (m > SUP_MAX_SIDE && n > SUP_MAX_SIDE)
        bli_rntm_disable_l3_sup(&rntm);
    if (m <= 4 && n >= 256 && k >= 256 && skinny_by_rows) {
        gemm_by_rows(dt, m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc, &rntm);
        return;
    }
    if (dt == SG_F32) {
        float a = (float)alpha, b = (float)beta;
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &a, (float *)A, rsa, csa,
                     (float *)B, rsb, csb, &b, (float *)C, rsc, csc, NULL, &rntm);
    } else {
        double a = alpha, b = beta;
        bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &a, (double *)A, rsa, csa,
                     (double *)B, rsb, csb, &b, (double *)C, rsc, csc, NULL, &rntm);
    }
}

#ifdef SG_HAVE_XSMM
/* Products up to this many multiply-adds go to LIBXSMM's JIT kernels when their layout
 * allows. BLIS packs both operands on every call; for the per-time-step products of an
 * RNN (64 x 384 x 128 on dates, 64 x 768 x 256 on en-fr) that packing and its set-up
 * cost more than the multiply: LIBXSMM's unpacked kernels measured 1.5-2.3x faster than
 * BLIS's there on one core, which also beats BLIS on two cores for these sizes. */
#define XSMM_MAX_MNK SG_SMALL_GEMM_MNK

typedef union {
    libxsmm_smmfunction s;
    libxsmm_dmmfunction d;
} xsmm_fn;

/* The kernel of column-major C (M x N, ldc) = A' (M x K, lda) B' (K x N, ldb, or its
 * transpose) + beta C; false if LIBXSMM has none. */
static bool xsmm_kernel(sg_dtype dt, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                        int64_t ldc, double beta, bool b_trans, xsmm_fn *f)
{
    libxsmm_blasint m = (libxsmm_blasint)M, n = (libxsmm_blasint)N, k = (libxsmm_blasint)K,
                    la = (libxsmm_blasint)lda, lb = (libxsmm_blasint)ldb,
                    lc = (libxsmm_blasint)ldc;
    int flags = b_trans ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE,
        prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    if (dt == SG_F32) {
        float al = 1.0f, be = (float)beta;
        f->s = libxsmm_smmdispatch(m, n, k, &la, &lb, &lc, &al, &be, &flags, &prefetch);
        return f->s != NULL;
    }
    double al = 1.0, be = beta;
    f->d = libxsmm_dmmdispatch(m, n, k, &la, &lb, &lc, &al, &be, &flags, &prefetch);
    return f->d != NULL;
}

static void xsmm_run(sg_dtype dt, xsmm_fn f, const void *a, const void *b, void *c)
{
    if (dt == SG_F32)
        f.s((const float *)a, (const float *)b, (float *)c);
    else
        f.d((const double *)a, (const double *)b, (double *)c);
    if (has_avx)
        __asm__ volatile("vzeroupper" ::: "memory");
}

/* C = A B + beta C through LIBXSMM if it has a kernel: B and C row-major (unit column
 * strides), A row-major or transposed (a weight gradient's dY^T), alpha 1, beta 0 or 1.
 * LIBXSMM is column-major, so it computes C^T = B^T A^T, which reads the very same
 * memory; its JIT has no kernel for a transposed first operand (our B), so x W^T goes
 * to BLIS. Returns false (nothing done) when the product must go to BLIS. */
static bool gemm_xsmm(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
                      int64_t rsa, int64_t csa, const void *B, int64_t rsb, int64_t csb,
                      double beta, void *C, int64_t rsc, int64_t csc)
{
    if (alpha != 1.0 || (beta != 0.0 && beta != 1.0) || k == 0 ||
        (double)m * (double)n * (double)k > XSMM_MAX_MNK)
        return false;
    /* strides of size-1 dims are never used: give them the value LIBXSMM checks for */
    if (m == 1)
        rsa = csa == 1 ? k : 1, rsc = n;
    if (n == 1)
        csb = csc = 1;
    if (k == 1)
        rsb = n, csa = rsa == 1 ? m : 1;
    bool a_trans = csa != 1;
    /* A weight gradient dY^T X summed over more than 1024 rows: LIBXSMM's kernels for a
     * transposed first operand fall to ~70 GFLOP/s there (dates' encoder, 384 x 64 x 1600;
     * xsmm_by_k_pieces splits such products). */
    if (csb != 1 || csc != 1 || (a_trans && (rsa != 1 || k > 1024)))
        return false;
    int64_t lda_ = a_trans ? csa : rsa;
    if ((a_trans ? lda_ < m : lda_ < k) || rsb < n || rsc < n || lda_ > INT32_MAX ||
        rsb > INT32_MAX || rsc > INT32_MAX)
        return false;
    /* At more than one thread a product BLIS would have split is split into row blocks of
     * C, or into column blocks when C is wider than tall: each thread then reads only its
     * columns of B (a weight [k, n] of a decoder step with 64 rows is most of the
     * traffic). Blocks are multiples of 16 columns (one AVX-512 vector). */
    int nthr = sg__threads();
    bool big = (double)m * (double)n * (double)k >= SG_SMALL_GEMM_THREADS;
    int nt = nthr > 1 && big && (m >= 16 || n >= 32) ? nthr : 1;
    bool by_cols = nt > 1 && n > m;
    int64_t len = by_cols ? n : m, part = (len + nt - 1) / nt;
    if (by_cols)
        part = (part + 15) / 16 * 16;
    nt = (int)((len + part - 1) / part);
    int64_t last = len - part * (nt - 1);
    /* the kernel of a part (rows x cols of C), and the last part's own when it is smaller */
    xsmm_fn f, fl;
    if (!xsmm_kernel(dt, by_cols ? part : n, by_cols ? m : part, k, rsb, lda_, rsc, beta, a_trans,
                     &f))
        return false;
    fl = f;
    if (last != part && !xsmm_kernel(dt, by_cols ? last : n, by_cols ? m : last, k, rsb, lda_,
                                     rsc, beta, a_trans, &fl))
        return false;
    size_t es = sg_dtype_size(dt);
    int64_t a_row = a_trans ? 1 : rsa; /* elements between rows of A */
    SG_FOR(nt, t, nt, {
        xsmm_fn ft = t == nt - 1 ? fl : f;
        if (by_cols) /* columns [t part, ...) of B and C; all of A */
            xsmm_run(dt, ft, (const char *)B + (size_t)(t * part) * es, A,
                     (char *)C + (size_t)(t * part) * es);
        else /* rows [t part, ...) of A and C; all of B */
            xsmm_run(dt, ft, B, (const char *)A + (size_t)(t * part * a_row) * es,
                     (char *)C + (size_t)(t * part * rsc) * es);
    });
    return true;
}

/* A weight gradient dY^T X summed over more than 1024 rows, on one thread, as products
 * over pieces of at most 1024 rows each added in (LIBXSMM: 160-180 GFLOP/s on dates'
 * encoder pieces; whole, BLIS makes 90-130; at two threads BLIS's split of the whole
 * product did better: enfr-transformer 3-4% slower with pieces). False, doing nothing,
 * where it does not apply. */
static bool xsmm_by_k_pieces(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha,
                             const void *A, int64_t rsa, int64_t csa, const void *B, int64_t rsb,
                             int64_t csb, double beta, void *C, int64_t rsc, int64_t csc)
{
    if (!(csa != 1 && rsa == 1 && k > 1024 && alpha == 1.0 && (beta == 0.0 || beta == 1.0)) ||
        sg__threads() > 1)
        return false;
    int64_t pieces = (k + 1023) / 1024, piece = (k + pieces - 1) / pieces;
    if ((double)m * (double)n * (double)piece > XSMM_MAX_MNK)
        return false;
    size_t es = sg_dtype_size(dt);
    for (int64_t k0 = 0; k0 < k; k0 += piece) {
        int64_t kk = k - k0 < piece ? k - k0 : piece;
        const char *a = (const char *)A + (size_t)(k0 * csa) * es;
        const char *b = (const char *)B + (size_t)(k0 * rsb) * es;
        double be = k0 ? 1.0 : beta;
        if (gemm_xsmm(dt, m, n, kk, 1.0, a, rsa, csa, b, rsb, csb, be, C, rsc, csc))
            continue;
        if (k0 == 0)
            return false; /* nothing done yet */
        gemm_blis(dt, m, n, kk, 1.0, a, rsa, csa, b, rsb, csb, be, C, rsc, csc);
    }
    return true;
}
#endif

static void init_once(void)
{
    if (num_threads)
        return;
    choose_kernels();
    int n = 1;
    const char *env = getenv("SG_NUM_THREADS");
    if (env && atoi(env) > 0)
        n = atoi(env);
    sg_set_num_threads(n);
}

int sg_set_num_threads(int n)
{
    if (n < 1)
        return sg__error(SG_EINVAL, "sg_set_num_threads: thread count %d must be >= 1", n);
    if (!num_threads)
        choose_kernels();
    num_threads = n;
    bli_thread_set_num_threads(n);
    return SG_OK;
}

int sg_get_num_threads(void)
{
    init_once();
    return num_threads;
}

/* A calling thread's own limit (sg__set_thread_cap): 0 = none. */
static _Thread_local int thread_cap = 0;

void sg__set_thread_cap(int n) { thread_cap = n > 0 ? n : 0; }

int sg__threads(void)
{
    init_once();
    return thread_cap && thread_cap < num_threads ? thread_cap : num_threads;
}

bool sg__small_gemm_row_major(void)
{
    init_once();
    return use_xsmm;
}

void sg__count_gemm_flops(int64_t m, int64_t n, int64_t k)
{
    __atomic_fetch_add(&gemm_flops, 2u * (uint64_t)m * (uint64_t)n * (uint64_t)k, __ATOMIC_RELAXED);
}

uint64_t sg_gemm_flops(void)
{
    return __atomic_load_n(&gemm_flops, __ATOMIC_RELAXED);
}

void sg__gemm(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
              int64_t rsa, int64_t csa, const void *B, int64_t rsb, int64_t csb, double beta,
              void *C, int64_t rsc, int64_t csc)
{
    init_once();
    if (m == 0 || n == 0)
        return;
    sg__count_gemm_flops(m, n, k);
    /* BLIS rejects zero strides for size-1 dims; any positive value works there. */
    if (m == 1) {
        rsa = rsa ? rsa : 1;
        rsc = rsc ? rsc : 1;
    }
    if (n == 1) {
        csb = csb ? csb : 1;
        csc = csc ? csc : 1;
    }
    if (k == 1) {
        csa = csa ? csa : 1;
        rsb = rsb ? rsb : 1;
    }
#ifdef SG_HAVE_XSMM
    if (use_xsmm && (xsmm_by_k_pieces(dt, m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc,
                                      csc) ||
                     gemm_xsmm(dt, m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc)))
        return;
#endif
    /* A weight gradient of one time step, dY^T X over a batch of rows (k <= 128): BLIS
     * packs both operands at every call, and made 48-80 GFLOP/s of such products (dates'
     * 128-384 x 128-256 x 64; AMD EPYC Zen 3, one thread), the direct kernel 81-91 */
    if (dt == SG_F32 && alpha == 1.0 && (beta == 0.0 || beta == 1.0) && rsa == 1 && csa != 1 &&
        csb == 1 && csc == 1 && (double)k * (double)n <= DIRECT_MAX_B &&
        sg__gemm_direct(m, n, k, A, rsa, csa, B, rsb, beta != 0.0, C, rsc))
        return;
    /* Products of a few thousand multiply-adds (one attention head's, 64 sentences x 4
     * heads x 6 products x 9 attentions a step of enfr-transformer: 16k calls) cost BLIS
     * more to set up than to make */
    if (dt == SG_F32 && (beta == 0.0 || beta == 1.0) && csc == 1 &&
        (double)m * (double)n * (double)k <= SMALL_MAX_MNK &&
        sg__gemm_small(m, n, k, (float)alpha, A, rsa, csa, B, rsb, csb, beta != 0.0, C, rsc))
        return;
    gemm_blis(dt, m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
}
