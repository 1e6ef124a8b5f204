/* gemm_packed.c - C (+)= A B for the per-time-step products of recurrent loops, with B
 * (a weight) packed once into column panels, on CPUs with AVX2 and FMA.
 *
 * BLIS packs both operands on every call. A recurrent step multiplies the same weight
 * at every step by a few dozen rows (64 x 256 x 768 on en-fr, 64 x 128 x 384 on dates),
 * where that packing and BLIS's set-up cost a quarter of the time: on AMD EPYC Zen 3,
 * one thread, BLIS made 68-80 GFLOP/s on these shapes and the kernel below 97-100.
 * A tile is 6 rows x 16 columns held in 12 AVX registers over the whole k; the panel
 * (k x 16 floats) stays in L1 while the row blocks of A pass over it. */
#include "tensor_internal.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_KERNEL 1
#else
#define HAVE_KERNEL 0
#endif

/* panels are this many columns wide: two AVX vectors of f32 */
#define PANEL 16

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

/* C[R rows, 16 or fewer cols (mask)] (+)= A[R, k] panel[k, 16]; lda, ldc in floats. */
#define TILE(R)                                                                            \
    KERNEL_TARGET static void tile##R(int64_t k, const float *A, int64_t lda,              \
                                      const float *p, float *C, int64_t ldc, bool acc,     \
                                      int64_t w)                                           \
    {                                                                                      \
        __m256 c0[R], c1[R];                                                               \
        __m256i m0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                            \
        __m256i m1 = _mm256_add_epi32(m0, _mm256_set1_epi32(8));                           \
        __m256i wv = _mm256_set1_epi32((int)w);                                            \
        m0 = _mm256_cmpgt_epi32(wv, m0);                                                   \
        m1 = _mm256_cmpgt_epi32(wv, m1);                                                   \
        for (int r = 0; r < R; r++) {                                                      \
            c0[r] = acc ? _mm256_maskload_ps(C + r * ldc, m0) : _mm256_setzero_ps();       \
            c1[r] = acc ? _mm256_maskload_ps(C + r * ldc + 8, m1) : _mm256_setzero_ps();   \
        }                                                                                  \
        for (int64_t kk = 0; kk < k; kk++) {                                               \
            __m256 b0 = _mm256_loadu_ps(p + kk * PANEL), b1 = _mm256_loadu_ps(p + kk * PANEL + 8); \
            for (int r = 0; r < R; r++) {                                                  \
                __m256 a = _mm256_broadcast_ss(A + r * lda + kk);                          \
                c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);                                     \
                c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);                                     \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < R; r++) {                                                      \
            _mm256_maskstore_ps(C + r * ldc, m0, c0[r]);                                   \
            _mm256_maskstore_ps(C + r * ldc + 8, m1, c1[r]);                               \
        }                                                                                  \
    }
TILE(6)
TILE(5)
TILE(4)
TILE(3)
TILE(2)
TILE(1)

typedef void (*tile_fn)(int64_t, const float *, int64_t, const float *, float *, int64_t,
                        bool, int64_t);
static const tile_fn tiles[7] = {NULL, tile1, tile2, tile3, tile4, tile5, tile6};

/* Columns [j, j + w) of C: every 6-row block of A over one panel. */
static void panel_rows(int64_t m, int64_t k, const float *A, int64_t lda, const float *p,
                       float *C, int64_t ldc, bool acc, int64_t w)
{
    int64_t i = 0;
    for (; i + 6 <= m; i += 6)
        tile6(k, A + i * lda, lda, p, C + i * ldc, ldc, acc, w);
    if (i < m)
        tiles[m - i](k, A + i * lda, lda, p, C + i * ldc, ldc, acc, w);
}
#endif

bool sg__packed_gemm_on(sg_dtype dt)
{
#if HAVE_KERNEL
    static int on = -1;
    if (on < 0) {
        __builtin_cpu_init();
        on = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             !sg__small_gemm_row_major();
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
    int nt = sg__threads();
    nt = nt > 1 && (double)m * (double)n * (double)k >= SG_SMALL_GEMM_THREADS && np > 1 ? nt : 1;
    const float *p0 = B->p + j0 * B->k + k0 * PANEL;
    SG_OMP_FOR(nt)
    for (int64_t q = 0; q < np; q++) {
        int64_t j = q * PANEL, w = n - j < PANEL ? n - j : PANEL;
        panel_rows(m, k, A, lda, p0 + j * B->k, C + j, ldc, acc, w);
    }
#else
    (void)m, (void)n, (void)k, (void)A, (void)lda, (void)B, (void)k0, (void)j0, (void)acc;
    (void)C, (void)ldc;
#endif
}
