/* attn_internal.h - shared by the attention sources; not installed. */
#ifndef SG_ATTN_INTERNAL_H
#define SG_ATTN_INTERNAL_H

#include "nn_internal.h"

/* Fills mem->valid/len/B/S from lengths (SG_I64 [B]) or mask (SG_BOOL [B, S]) for
 * values [B, S, *]; records the error on g (message names op) and returns its code. */
SG_INTERNAL int sg__attn_memory_init(sg_graph *g, const char *op, sg_tensor *values,
                                     sg_tensor *lengths, sg_tensor *mask, sg_attn_memory *mem);

/* Checks a step query: 2-D [mem->B, width], same dtype as the memory. */
SG_INTERNAL bool sg__attn_check_query(sg_graph *g, const char *op, const sg_attn_memory *mem,
                                      const sg_tensor *q, int64_t width);

/* Key validity [B, Lk] (arena) from key_lengths / key_mask, or NULL (all valid, also
 * returned through *ok = true). Records errors on g. */
SG_INTERNAL uint8_t *sg__key_validity(sg_graph *g, const char *op, int64_t B, int64_t Lk,
                                      sg_tensor *lengths, sg_tensor *mask, bool *ok);

#endif
