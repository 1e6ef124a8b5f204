/* rng.c - xoshiro256** (Blackman & Vigna) seeded by splitmix64. */
#include "tensor_internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sg_rng_seed(sg_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_of(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sg_rng_next(sg_rng *r) { return next_of(r->s); }

void sg_rng_keep_mask(sg_rng *r, uint8_t *keep, int64_t n, double p_drop)
{
    /* two draws per 64-bit number: keep when a 32-bit half is >= p_drop 2^32 */
    uint64_t t = p_drop <= 0 ? 0 : p_drop >= 1 ? UINT64_C(1) << 32 : (uint64_t)(p_drop * 0x1p32);
    uint64_t s[4] = {r->s[0], r->s[1], r->s[2], r->s[3]};
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t x = next_of(s);
        keep[i] = (x & 0xffffffffu) >= t;
        keep[i + 1] = (x >> 32) >= t;
    }
    if (i < n)
        keep[i] = (next_of(s) & 0xffffffffu) >= t;
    for (int k = 0; k < 4; k++)
        r->s[k] = s[k];
}

double sg_rng_uniform(sg_rng *r) { return (double)(sg_rng_next(r) >> 11) * 0x1.0p-53; }

double sg_rng_normal(sg_rng *r)
{
    double u1 = sg_rng_uniform(r), u2 = sg_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t sg_rng_below(sg_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = sg_rng_next(r);
    while (x >= limit);
    return x % n;
}

int sg_tensor_uniform_(sg_tensor *t, sg_rng *r, double lo, double hi)
{
    if (!t || !r)
        return sg__error(SG_EINVAL, "sg_tensor_uniform_: tensor or rng is NULL");
    if (!sg_dtype_is_float(t->dtype))
        return sg__error(SG_EDTYPE, "sg_tensor_uniform_: dtype %s is not float",
                         sg_dtype_name(t->dtype));
    int64_t n = sg_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        sg_tensor_set(t, i, lo + (hi - lo) * sg_rng_uniform(r));
    return SG_OK;
}

int sg_tensor_normal_(sg_tensor *t, sg_rng *r, double mean, double std)
{
    if (!t || !r)
        return sg__error(SG_EINVAL, "sg_tensor_normal_: tensor or rng is NULL");
    if (!sg_dtype_is_float(t->dtype))
        return sg__error(SG_EDTYPE, "sg_tensor_normal_: dtype %s is not float",
                         sg_dtype_name(t->dtype));
    int64_t n = sg_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        sg_tensor_set(t, i, mean + std * sg_rng_normal(r));
    return SG_OK;
}
