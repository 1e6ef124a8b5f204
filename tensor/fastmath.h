/* fastmath.h - branch-free float exp/tanh/sigmoid that vectorise (libm's expf/tanhf
 * are calls the compiler cannot vectorise and dominated profiles), and a macro that
 * gives hot loops an AVX2+FMA clone picked at load time. Internal; not installed.
 * Accuracy: exp about 2 ulp; tanh about 4e-7 relative; sigmoid about 1e-7 absolute. */
#ifndef SG_FASTMATH_H
#define SG_FASTMATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* e^x for x in float range (clamped to [-87, 88]). The constants are shared with
 * sg__exp_nonposf and the 8-lane sg__exp8 below. */
#define SG_EXP_LO (-87.0f)
#define SG_EXP_HI 88.0f
#define SG_EXP_SHIFTER 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define SG_EXP_LOG2E 1.44269504f
#define SG_EXP_LN2_HI 0.693145752f /* ln 2 split into hi + lo */
#define SG_EXP_LN2_LO 1.42860677e-6f
#define SG_EXP_C6 1.38888892e-3f /* Taylor coefficients 1/n! */
#define SG_EXP_C5 8.33333377e-3f
#define SG_EXP_C4 4.16666679e-2f
#define SG_EXP_C3 1.66666672e-1f
#define SG_EXP_BIAS (127u - 0x4B400000u) /* t's bits + this = (k + 127), for 2^k */
static inline float sg__expf(float x)
{
    x = x < SG_EXP_LO ? SG_EXP_LO : x;
    x = x > SG_EXP_HI ? SG_EXP_HI : x;
    float t = x * SG_EXP_LOG2E + SG_EXP_SHIFTER;
    float k = t - SG_EXP_SHIFTER;
    float r = x - k * SG_EXP_LN2_HI - k * SG_EXP_LN2_LO;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (SG_EXP_C3 +
              r * (SG_EXP_C4 + r * (SG_EXP_C5 + r * SG_EXP_C6)))));
    uint32_t ti, bits;
    memcpy(&ti, &t, sizeof ti);
    bits = (ti + SG_EXP_BIAS) << 23; /* 2^k from the integer bits of t */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* exp(x) for x <= 0 in f32, branch-free so the row loops vectorise (libm's expf is an
 * opaque call). x = n ln2 + r with |r| <= ln2/2; exp(r) by its degree-6 Taylor
 * polynomial (truncation < 2e-7 relative, about 1 ulp); 2^n built in the exponent bits.
 * Results below FLT_MIN flush to 0; NaN gives NaN. Checked against expf in
 * test_loss. */
static inline float sg__exp_nonposf(float x)
{
    /* also keeps the bit tricks below in range */
    float xc = x < SG_EXP_LO ? SG_EXP_LO : x;
    float k = xc * SG_EXP_LOG2E + SG_EXP_SHIFTER;
    uint32_t kb;
    memcpy(&kb, &k, sizeof kb);
    float n = k - SG_EXP_SHIFTER;
    float r = (xc - n * SG_EXP_LN2_HI) - n * SG_EXP_LN2_LO;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (SG_EXP_C3 + r * (SG_EXP_C4 +
                                      r * (SG_EXP_C5 + r * SG_EXP_C6)))));
    uint32_t sb = (kb + SG_EXP_BIAS) << 23; /* (n + 127) << 23 */
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float e = p * scale;
    return x >= SG_EXP_LO ? e : x < SG_EXP_LO ? 0.0f : x; /* the last case is NaN */
}

/* tanh in float without libm calls, so loops over it vectorise: on |x| <= 9 (tanh(9)
 * rounds to 1 in float) tanh(x) = x P(u) / Q(u), u = x^2 / 81, a [5/3] rational in u
 * fitted for the smallest relative error by tools/fit_tanh.py (6e-8 in exact arithmetic,
 * 3.3e-7 evaluated in float; test_ops checks 5e-7 over [-20, 20]), clamped to [-1, 1].
 * One division and eight multiply-adds: half the time of the exp-based form it replaced
 * (the additive attention kernel 114 -> 53 us on 64 x 25 x 128). NaN propagates. */
#define SG_TANH_P5 0.0636504354f
#define SG_TANH_P4 (-0.550153436f)
#define SG_TANH_P3 4.92510719f
#define SG_TANH_P2 19.1631849f
#define SG_TANH_P1 10.464585f
#define SG_TANH_P0 0.999999942f
#define SG_TANH_Q3 121.222336f
#define SG_TANH_Q2 155.910476f
#define SG_TANH_Q1 37.4645451f
static inline float sg__tanhf(float x)
{
    float xc = x > 9.0f ? 9.0f : x;
    xc = xc < -9.0f ? -9.0f : xc;
    float u = xc * xc * (1.0f / 81.0f);
    float p = ((((SG_TANH_P5 * u + SG_TANH_P4) * u + SG_TANH_P3) * u + SG_TANH_P2) * u +
               SG_TANH_P1) * u + SG_TANH_P0;
    float q = ((SG_TANH_Q3 * u + SG_TANH_Q2) * u + SG_TANH_Q1) * u + 1.0f;
    float y = xc * (p / q);
    y = y > 1.0f ? 1.0f : y;
    y = y < -1.0f ? -1.0f : y;
    return x == x ? y : x;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define SG_HAVE_TANH8 1
/* sg__tanhf on 8 lanes for code written with AVX2 intrinsics: the same operations in the
 * same order (so the same results; the build contracts the scalar form's a * u + b into
 * FMAs), its clamps as min/max, which GCC does not make of the scalar form's selects in
 * vector code (it makes compare + blend pairs). min/max return their second operand when
 * one is NaN, so NaN passes through every clamp, as the scalar form's last select makes
 * it. */
__attribute__((target("avx2,fma"))) static inline __m256 sg__tanh8(__m256 x)
{
    __m256 xc = _mm256_max_ps(_mm256_set1_ps(-9.0f), _mm256_min_ps(_mm256_set1_ps(9.0f), x));
    __m256 u = _mm256_mul_ps(_mm256_mul_ps(xc, xc), _mm256_set1_ps(1.0f / 81.0f));
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(SG_TANH_P5), u, _mm256_set1_ps(SG_TANH_P4));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(SG_TANH_P3));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(SG_TANH_P2));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(SG_TANH_P1));
    p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(SG_TANH_P0));
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(SG_TANH_Q3), u, _mm256_set1_ps(SG_TANH_Q2));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(SG_TANH_Q1));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(1.0f));
    __m256 y = _mm256_mul_ps(xc, _mm256_div_ps(p, q));
    return _mm256_max_ps(_mm256_set1_ps(-1.0f), _mm256_min_ps(_mm256_set1_ps(1.0f), y));
}

/* sg__expf on 8 lanes: the same operations in the same order, its clamps as min/max */
__attribute__((target("avx2,fma"))) static inline __m256 sg__exp8(__m256 x)
{
    const __m256 shifter = _mm256_set1_ps(SG_EXP_SHIFTER);
    x = _mm256_min_ps(_mm256_set1_ps(SG_EXP_HI), _mm256_max_ps(_mm256_set1_ps(SG_EXP_LO), x));
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(SG_EXP_LOG2E), shifter);
    __m256 k = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(SG_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(SG_EXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(SG_EXP_C6), _mm256_set1_ps(SG_EXP_C5));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(SG_EXP_C4));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(SG_EXP_C3));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32((int)SG_EXP_BIAS)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* sg__sigmoidf on 8 lanes */
__attribute__((target("avx2,fma"))) static inline __m256 sg__sigmoid8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 neg = _mm256_xor_ps(x, _mm256_set1_ps(-0.0f)); /* -x: a sign flip, as in C */
    return _mm256_div_ps(one, _mm256_add_ps(one, sg__exp8(neg)));
}

/* Whether hand-written AVX2 row kernels (sg__tanh8 and kin) should run: AVX2 + FMA
 * without AVX-512, where the compiler's 16-lane clones of the generic rows are faster. */
static inline bool sg__avx2_rows_on(void)
{
    static int on = -1;
    if (on < 0) {
        __builtin_cpu_init();
        on = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             !__builtin_cpu_supports("avx512f");
    }
    return on;
}
#else
#define SG_HAVE_TANH8 0
#endif

static inline float sg__sigmoidf(float x) { return 1.0f / (1.0f + sg__expf(-x)); }

/* Hot loops get x86-64-v4 (AVX-512: 16 floats a vector) and x86-64-v3 (AVX2, FMA) clones,
 * chosen at load time by the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                      \
    !defined(__SANITIZE_ADDRESS__)
#define SG_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SG_HOT
#endif

#endif
