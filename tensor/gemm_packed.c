/* gemm_packed.c - C (+)= A B for the per-time-step products of recurrent loops, with B
 * (a weight) packed once into column panels, on CPUs with AVX2 and FMA; and the weight
 * gradients of those steps.
 *
 * BLIS packs both operands on every call. A recurrent step multiplies the same weight
 * at every step by a few dozen rows (64 x 256 x 768 on en-fr, 64 x 128 x 384 on dates),
 * where that packing and BLIS's set-up cost a quarter of the time: on AMD EPYC Zen 3,
 * one thread, BLIS made 68-80 GFLOP/s on these shapes and the kernel below 97-100.
 * A tile is 6 rows x 16 columns held in 12 AVX registers over the whole k; the panel
 * (k x 16 floats: 16 KB at k = 256) stays in L1 or L2 while the row blocks of A pass over
 * it (blocking k by 256 measured no faster at k = 768 and 1024). C is added after the
 * sum when accumulating.
 *
 * The same tile makes sg__gemm_direct's products, whose B changes at every call (a weight
 * gradient dY^T X of one time step): it reads B in place, A's rows copied six at a time;
 * and sg__gemm_small's, products of a few thousand multiply-adds (one attention head's)
 * with operands of any strides, both copied on the stack. */
#include "tensor_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_KERNEL 1
#else
#define HAVE_KERNEL 0
#endif

/* panels are this many columns wide: two AVX vectors of f32 */
#define PANEL 16
/* packed weights from this size on do not stay in L2 (512 KB a core on Zen 3) */
#define PREFETCH_MIN_BYTES ((size_t)512 << 10)

size_t sg__packed_floats(int64_t k, int64_t n)
{
    return (size_t)(k * ((n + PANEL - 1) / PANEL) * PANEL);
}

void sg__pack(sg__packed *dst, float *buf, const float *B, int64_t k, int64_t n, int64_t rsb,
              int64_t csb)
{
    for (int64_t j = 0; j < n; j += PANEL) {
        float *p = buf + j * k;
        int64_t w = n - j < PANEL ? n - j : PANEL;
        for (int64_t kk = 0; kk < k; kk++) {
            const float *b = B + kk * rsb + j * csb;
            for (int64_t c = 0; c < w; c++)
                p[kk * PANEL + c] = b[c * csb];
            for (int64_t c = w; c < PANEL; c++) /* the last panel's padding */
                p[kk * PANEL + c] = 0.0f;
        }
    }
    *dst = (sg__packed){buf, k, n};
}

#if HAVE_KERNEL
#define KERNEL_TARGET __attribute__((target("avx2,fma")))

/* One row of a tile's result: c (+)= the row of C, w <= 16 columns. */
KERNEL_TARGET static inline void store_row(float *C, __m256 lo, __m256 hi, bool acc, int64_t w)
{
    if (w == PANEL) {
        if (acc) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(C));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(C + 8));
        }
        _mm256_storeu_ps(C, lo);
        _mm256_storeu_ps(C + 8, hi);
        return;
    }
    float t[PANEL];
    _mm256_storeu_ps(t, lo);
    _mm256_storeu_ps(t + 8, hi);
    for (int64_t c = 0; c < w; c++)
        C[c] = acc ? C[c] + t[c] : t[c];
}

/* C[R, w <= 16] (+)= A[R, k] panel[k, 16]; A's rows lda apart and its columns csa apart
 * (1, or a transposed A's row stride), the panel's rows ldp apart (16 packed, or B's row
 * stride read in place), ldc in floats; R in 1..6 is a constant at every call, so each
 * row count compiles to its own loop with only its FMAs. The accumulators are named
 * variables so that they stay in registers (as arrays, GCC kept them on the stack: 1.6x
 * slower). pf: NULL, or the next packed panel, whose row kk is prefetched at step kk. */
KERNEL_TARGET static inline __attribute__((always_inline)) void
tile(const int R, int64_t k, const float *A, int64_t lda, int64_t csa, const float *p,
     int64_t ldp, float *C, int64_t ldc, bool acc, int64_t w, const float *pf)
{
    /* rows past R are never read; their pointers stay in bounds all the same */
    const float *a0 = A, *a1 = A + (R > 1 ? lda : 0), *a2 = A + (R > 2 ? 2 * lda : 0);
    const float *a3 = A + (R > 3 ? 3 * lda : 0), *a4 = A + (R > 4 ? 4 * lda : 0);
    const float *a5 = A + (R > 5 ? 5 * lda : 0);
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z;
    __m256 c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
/* row r of A times the panel's row kk into that row's two accumulators */
#define FMA_ROW(r, ar, lo, hi)                                                              \
    if (R > (r)) {                                                                          \
        a = _mm256_broadcast_ss((ar) + o);                                                  \
        lo = _mm256_fmadd_ps(a, b0, lo);                                                    \
        hi = _mm256_fmadd_ps(a, b1, hi);                                                    \
    }
    for (int64_t kk = 0, o = 0; kk < k; kk++, o += csa, p += ldp) {
        __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8), a;
        if (pf)
            _mm_prefetch((const char *)(pf + kk * PANEL), _MM_HINT_T0);
        FMA_ROW(0, a0, c00, c01)
        FMA_ROW(1, a1, c10, c11)
        FMA_ROW(2, a2, c20, c21)
        FMA_ROW(3, a3, c30, c31)
        FMA_ROW(4, a4, c40, c41)
        FMA_ROW(5, a5, c50, c51)
    }
#undef FMA_ROW
    __m256 lo[6] = {c00, c10, c20, c30, c40, c50}, hi[6] = {c01, c11, c21, c31, c41, c51};
    for (int r = 0; r < R; r++)
        store_row(C + r * ldc, lo[r], hi[r], acc, w);
}

/* tile() with R rows, R in 1..6 at run time */
KERNEL_TARGET static void tile_rows(int64_t R, int64_t k, const float *A, int64_t lda,
                                    int64_t csa, const float *p, int64_t ldp, float *C,
                                    int64_t ldc, bool acc, int64_t w, const float *pf)
{
    switch (R) {
    case 1: tile(1, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    case 2: tile(2, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    case 3: tile(3, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    case 4: tile(4, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    case 5: tile(5, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    default: tile(6, k, A, lda, csa, p, ldp, C, ldc, acc, w, pf); break;
    }
}

/* The row blocks of an m-row product: `full` blocks of 6 rows, then one of `tail` (3 to
 * 6), or two of 4 and tail - 4 when tail is 7 or 8, so that no block of 1 or 2 rows (2
 * FMA chains per row against Zen 3's 8 in flight: latency-bound) follows the 6s. */
typedef struct {
    int64_t full, tail, blocks;
} row_blocks;

static row_blocks split_rows(int64_t m)
{
    int64_t tail = m % 6 == 0 ? 6 : m % 6;
    if (tail < 3 && m > 6)
        tail += 6;
    int64_t full = (m - tail) / 6;
    return (row_blocks){full, tail, full + (tail > 6 ? 2 : 1)};
}

/* Block q's row count, its first row in *i */
static int64_t block_rows(row_blocks s, int64_t q, int64_t *i)
{
    *i = q < s.full ? 6 * q : 6 * s.full + (q > s.full ? 4 : 0);
    return q < s.full ? 6 : s.tail > 6 ? (q == s.full ? 4 : s.tail - 4) : s.tail;
}

/* Columns [j, j + w) of C, the rows of A in blocks (split_rows) */
KERNEL_TARGET static void panel_rows(int64_t m, int64_t k, const float *A, int64_t lda,
                                    int64_t csa, const float *p, int64_t ldp, float *C,
                                    int64_t ldc, bool acc, int64_t w, const float *next)
{
    row_blocks s = split_rows(m);
    for (int64_t q = 0, i; q < s.blocks; q++) {
        int64_t R = block_rows(s, q, &i);
        tile_rows(R, k, A + i * lda, lda, csa, p, ldp, C + i * ldc, ldc, acc, w,
                  q == 0 ? next : NULL);
    }
}

/* The threads for an m x n x k product made in `parts` independent parts */
static int parts_threads(int64_t m, int64_t n, int64_t k, int64_t parts)
{
    int nt = sg__threads();
    return nt > 1 && (double)m * (double)n * (double)k >= SG_SMALL_GEMM_THREADS && parts > 1
               ? nt
               : 1;
}
#endif

bool sg__packed_gemm_on(sg_dtype dt)
{
#if HAVE_KERNEL
    static int on = -1;
    if (on < 0) {
        __builtin_cpu_init();
        const char *e = getenv("SG_PACKED"); /* SG_PACKED=0: BLIS only, for comparisons */
        on = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             !sg__small_gemm_row_major() && !(e && e[0] == '0');
    }
    return dt == SG_F32 && on;
#else
    (void)dt;
    return false;
#endif
}

void sg__gemm_packed(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                     const sg__packed *B, int64_t k0, int64_t j0, bool acc, float *C, int64_t ldc)
{
#if HAVE_KERNEL
    if (m == 0 || n == 0)
        return;
    sg__count_gemm_flops(m, n, k);
    if (k == 0) {
        if (!acc)
            for (int64_t i = 0; i < m; i++)
                memset(C + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    int64_t np = (n + PANEL - 1) / PANEL;
    /* panels split between the threads: each reads only its columns of B */
    int nt = parts_threads(m, n, k, np);
    /* a B larger than L2 comes from L3 or memory at every call: the first row block of
     * each panel asks for the next panel's lines while it works */
    bool far = sizeof(float) * sg__packed_floats(B->k, B->n) >= PREFETCH_MIN_BYTES;
    const float *p0 = B->p + j0 * B->k + k0 * PANEL;
    SG_FOR(nt, q, np, {
        int64_t j = q * PANEL, w = n - j < PANEL ? n - j : PANEL;
        panel_rows(m, k, A, lda, 1, p0 + j * B->k, PANEL, C + j, ldc, acc, w,
                   far && j + PANEL < n ? p0 + (j + PANEL) * B->k : NULL);
    });
#else
    (void)m, (void)n, (void)k, (void)A, (void)lda, (void)B, (void)k0, (void)j0, (void)acc;
    (void)C, (void)ldc;
#endif
}

#if HAVE_KERNEL
/* Rows [i, i + R) of C, all ceil(n / 16) panels of B (read in place: rows ldb apart,
 * panels panel_step = 16 floats apart; packed: rows 16 apart, panels 16 k; the last
 * panel's columns past n are not stored): alpha times A's rows copied into 6 x k on the
 * stack, each k-th element's 6 rows side by side, so that the tile reads A as one
 * sequential stream (a transposed A read in place touched a new line of it at every k:
 * 58-63 GFLOP/s on 768-1024 rows, now 80-90) */
KERNEL_TARGET static void direct_rows(int64_t R, int64_t n, int64_t k, float alpha,
                                      const float *A, int64_t rsa, int64_t csa, const float *B,
                                      int64_t ldb, int64_t panel_step, bool acc, float *C,
                                      int64_t ldc)
{
    float a[6 * SG_DIRECT_GEMM_MAX_K];
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t r = 0; r < 6; r++)
            a[kk * 6 + r] = r < R ? alpha * A[r * rsa + kk * csa] : 0.0f;
    for (int64_t j = 0; j < n; j += PANEL)
        tile_rows(R, k, a, 1, 6, B + j / PANEL * panel_step, ldb, C + j, ldc, acc,
                  n - j < PANEL ? n - j : PANEL, NULL);
}
#endif

bool sg__gemm_small(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t rsa,
                    int64_t csa, const float *B, int64_t rsb, int64_t csb, bool acc, float *C,
                    int64_t ldc)
{
#if HAVE_KERNEL
    int64_t np = (n + PANEL - 1) / PANEL;
    if (!sg__packed_gemm_on(SG_F32) || m < 1 || n < 1 || k < 1 || k > SG_DIRECT_GEMM_MAX_K ||
        k * np * PANEL > SG_SMALL_GEMM_MAX_B)
        return false;
    float pb[SG_SMALL_GEMM_MAX_B];
    sg__packed pk;
    sg__pack(&pk, pb, B, k, n, rsb, csb);
    row_blocks s = split_rows(m);
    for (int64_t q = 0, i; q < s.blocks; q++) {
        int64_t R = block_rows(s, q, &i);
        direct_rows(R, n, k, alpha, A + i * rsa, rsa, csa, pb, PANEL, k * PANEL, acc,
                    C + i * ldc, ldc);
    }
    return true;
#else
    (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)rsa, (void)csa, (void)B, (void)rsb;
    (void)csb, (void)acc, (void)C, (void)ldc;
    return false;
#endif
}

bool sg__gemm_direct(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t ldb, bool acc, float *C, int64_t ldc)
{
#if HAVE_KERNEL
    if (!sg__packed_gemm_on(SG_F32) || n % PANEL != 0 || k < 1 || k > SG_DIRECT_GEMM_MAX_K ||
        m < 1)
        return false;
    /* no sg__count_gemm_flops: sg__gemm, its caller, has counted the product */
    /* threads take blocks of rows (split_rows), each reading all of B */
    row_blocks s = split_rows(m);
    /* every block reads all of B, panel by panel: packed, each panel is one sequential
     * stream instead of k rows ldb apart (at 512 rows and more the copy paid: 768 x 512 x
     * 64 made 90 GFLOP/s against 80 in place, 1024 x 256 x 64 86 against 81; at 384 rows
     * and fewer it did not). No memory: read in place. */
    float *pb = NULL;
    int64_t panel_step = PANEL; /* floats from one panel of B to the next */
    if (m >= 512 && posix_memalign((void **)&pb, 64, sizeof(float) * (size_t)(k * n)) == 0) {
        sg__packed pk;
        sg__pack(&pk, pb, B, k, n, ldb, 1);
        B = pb, ldb = PANEL, panel_step = k * PANEL;
    }
    int nt = parts_threads(m, n, k, s.blocks);
    SG_FOR(nt, q, s.blocks, {
        int64_t i, R = block_rows(s, q, &i);
        direct_rows(R, n, k, 1.0f, A + i * rsa, rsa, csa, B, ldb, panel_step, acc, C + i * ldc,
                    ldc);
    });
    free(pb);
    return true;
#else
    (void)m, (void)n, (void)k, (void)A, (void)rsa, (void)csa, (void)B, (void)ldb, (void)acc;
    (void)C, (void)ldc;
    return false;
#endif
}
