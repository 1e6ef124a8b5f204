/* data_internal.h - helpers shared by the .c files of data/; not installed. */
#ifndef SG_DATA_INTERNAL_H
#define SG_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sg_data.h"
#include "tensor_internal.h"

/* A string -> entry-index hash map (open addressing, linear probing, FNV-1a).
 * Entry i has key sg_tokens_at(&keys, i) and value vals[i]. Zero-initialise. */
typedef struct sg__strmap {
    sg_tokens keys;
    int64_t *vals;     /* [keys.n], capacity vals_cap */
    int64_t vals_cap;
    int64_t *slots;    /* [n_slots], -1 = empty, else entry index */
    uint64_t *hashes;  /* [keys.n] cached hashes for rehashing */
    int64_t hashes_cap;
    int64_t n_slots;   /* power of two */
} sg__strmap;

/* Entry index of the key s[0..len), or -1. */
SG_INTERNAL int64_t sg__strmap_find(const sg__strmap *m, const char *s, int64_t len);
/* Entry index of s[0..len), inserting it with value v0 when absent (*added = 1).
 * Negative SG_ENOMEM on failure. */
SG_INTERNAL int64_t sg__strmap_insert(sg__strmap *m, const char *s, int64_t len, int64_t v0,
                                      int *added);
SG_INTERNAL void sg__strmap_free(sg__strmap *m);

/* Grows *p (elements of size es) to hold at least need; false on overflow/ENOMEM. */
SG_INTERNAL int sg__grow(void **p, int64_t *cap, int64_t need, size_t es);

/* Vocabulary building in two halves, so a corpus can be counted one sentence at a
 * time (sg_vocab_build keeps a token list per sentence otherwise): adds the tokens
 * of t to counts (value = count); SG_ENOMEM. */
SG_INTERNAL int sg__vocab_count(sg__strmap *counts, const sg_tokens *t);
/* The vocabulary of sg_vocab_build from the counts (arguments already checked);
 * NULL with SG_ENOMEM. The caller frees counts. */
SG_INTERNAL sg_vocab *sg__vocab_from_counts(const sg__strmap *counts, int64_t min_freq,
                                            int64_t max_size);

#endif
