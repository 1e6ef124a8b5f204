/*
 * sg_rng.h - a seeded pseudo-random generator with explicit state.
 *
 * xoshiro256** seeded through splitmix64. All randomness in seqgrad (initialisation,
 * dropout masks, shuffling, data generation) comes from an sg_rng the caller owns,
 * drawn serially, so results are reproducible across runs and thread counts. The
 * state is 4 uint64 words and can be saved in checkpoints.
 */
#ifndef SG_RNG_H
#define SG_RNG_H

#include <stdint.h>

#include "sg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_rng {
    uint64_t s[4];
} sg_rng;

SG_API void sg_rng_seed(sg_rng *r, uint64_t seed);
SG_API uint64_t sg_rng_next(sg_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
SG_API double sg_rng_uniform(sg_rng *r);
/* Standard normal (Box-Muller, one value per call). */
SG_API double sg_rng_normal(sg_rng *r);
/* keep[i] = 1 with probability 1 - p_drop (p_drop in steps of 2^-32), else 0, for the n
 * entries of keep: a dropout mask, two entries per 64-bit draw. */
SG_API void sg_rng_keep_mask(sg_rng *r, uint8_t *keep, int64_t n, double p_drop);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
SG_API uint64_t sg_rng_below(sg_rng *r, uint64_t n);

/* Fills a float tensor (views honoured) with U(lo, hi) / N(mean, std). SG_EDTYPE
 * for non-float tensors. */
SG_API int sg_tensor_uniform_(sg_tensor *t, sg_rng *r, double lo, double hi);
SG_API int sg_tensor_normal_(sg_tensor *t, sg_rng *r, double mean, double std);

#ifdef __cplusplus
}
#endif
#endif
