/* attn_internal.h - shared by the attention sources; not installed. */
#ifndef SG_ATTN_INTERNAL_H
#define SG_ATTN_INTERNAL_H

#include "nn_internal.h"

/* Fills mem->valid/len/B/S from lengths (SG_I64 [B]) or mask (SG_BOOL [B, S]) for
 * values [B, S, *]; records the error on g (message names op) and returns its code. */
SG_INTERNAL int sg__attn_memory_init(sg_graph *g, const char *op, sg_tensor *values,
                                     sg_tensor *lengths, sg_tensor *mask, sg_attn_memory *mem);

/* The values [B, S, D] of an attention memory as one more node (a view of the same data,
 * made contiguous) when a graph records: sg_attn_context steps over it leave their share
 * of dV (weights and a copy of dc) to this node, whose backward adds all of them at once,
 * a row of dV at a time (each step adding into the whole [B, S, D] dV read and wrote it
 * once a step). valid [B, S] or NULL: rows the steps skip. values as they are when
 * nothing records; NULL (recorded) on ENOMEM. */
SG_INTERNAL sg_tensor *sg__attn_values(sg_graph *g, sg_tensor *values, const uint8_t *valid);

/* Checks a step query: 2-D [mem->B, width], same dtype as the memory. */
SG_INTERNAL bool sg__attn_check_query(sg_graph *g, const char *op, const sg_attn_memory *mem,
                                      const sg_tensor *q, int64_t width);

/* Key validity [B, Lk] (arena) from key_lengths / key_mask, or NULL (all valid, also
 * returned through *ok = true). Records errors on g. */
SG_INTERNAL uint8_t *sg__key_validity(sg_graph *g, const char *op, int64_t B, int64_t Lk,
                                      sg_tensor *lengths, sg_tensor *mask, bool *ok);

/* sg_attn_additive_scores / sg_attn_dot_scores / sg_attn_context where query row b reads
 * memory row rows[b]
 * (keys / values [Bm, S, *], valid [Bm, S]); only without gradients (decoding): SG_EINVAL
 * if the op would be recorded, SG_ERANGE for a row outside [0, Bm). rows NULL: the public
 * ops. The additive scores' kept: the memory's tanh_kept (the budget of kept tanh values,
 * added to), or NULL for the per-call rule alone. */
SG_INTERNAL sg_tensor *sg__attn_additive_scores_rows(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                                     sg_tensor *v, const uint8_t *valid,
                                                     const int64_t *rows, size_t *kept);
SG_INTERNAL sg_tensor *sg__attn_dot_scores_rows(sg_graph *g, sg_tensor *q, sg_tensor *keys,
                                                const uint8_t *valid, const int64_t *rows);
SG_INTERNAL sg_tensor *sg__attn_context_rows(sg_graph *g, sg_tensor *scores, sg_tensor *values,
                                             const uint8_t *valid, const int64_t *rows,
                                             sg_tensor *pos, double sigma, sg_tensor **weights);

#endif
