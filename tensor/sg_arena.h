/*
 * sg_arena.h - a chunked bump allocator for everything one training step makes.
 *
 * Activations, saved-for-backward data, tape nodes and activation gradients are
 * carved from an arena; sg_arena_reset() releases all of them at once. After a
 * reset that found more than one chunk in use, the chunks are merged into one of
 * the total size, so a steady training loop runs with a single chunk, never calls
 * malloc, and resets in O(1).
 */
#ifndef SG_ARENA_H
#define SG_ARENA_H

#include <stddef.h>

#include "sg_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_arena sg_arena;

/* A new empty arena whose first chunk holds at least chunk_bytes (0: 1 MiB).
 * Returns NULL (SG_ENOMEM) on allocation failure. Free with sg_arena_free. */
SG_API sg_arena *sg_arena_new(size_t chunk_bytes);

/* Frees the arena and every block it handed out. Accepts NULL. Its memory may be kept
 * for the next arenas made (chunks up to 64 MiB; at most 32 chunks, 256 MiB in all,
 * process-wide), so that graphs made per call do not fault in fresh pages each time. */
SG_API void sg_arena_free(sg_arena *a);

/* bytes of uninitialised memory aligned to 64 bytes, owned by the arena and valid
 * until the next sg_arena_reset/sg_arena_free. NULL (SG_ENOMEM) on failure. */
SG_API void *sg_arena_alloc(sg_arena *a, size_t bytes);

/* Like sg_arena_alloc, zero-filled. */
SG_API void *sg_arena_calloc(sg_arena *a, size_t bytes);

/* Releases every block at once; the memory is kept for reuse. */
SG_API void sg_arena_reset(sg_arena *a);

/* Returns the memory kept by freed arenas to the system (thread-safe). */
SG_API void sg_arena_release_cache(void);

/* Process-wide, for a program (a library should leave it to its program): asks glibc's
 * malloc to serve blocks of up to max_block bytes from its heap and to keep up to
 * 4 x max_block of freed heap memory instead of returning it to the system. Why: the
 * gradients of a small model's training step are malloc blocks of 16 KB to 1 MB,
 * freed during backward (sg_backward); glibc then trims its heap at the end of every
 * step and faults fresh pages in at the next (dates-bahdanau at 2 threads: 270-650
 * minor page faults a training step; with max_block 4 MiB none, sys time 0.28 -> 0.10
 * s). It costs a larger model peak memory (enfr-bahdanau +7 MB at 4 MiB), which is why the
 * project's training programs call it only for models of at most 2M parameters
 * (sg_model_tune_malloc).
 * SG_OK; SG_EINVAL for max_block 0 or over 32 MiB (glibc's limit); SG_ESTATE where the
 * malloc in use is not glibc's (another C library, a sanitizer's or a preloaded one):
 * nothing is changed. */
SG_API int sg_malloc_keep_freed(size_t max_block);

/* Bytes handed out since the last reset, and bytes reserved from the system. */
SG_API size_t sg_arena_used(const sg_arena *a);
SG_API size_t sg_arena_reserved(const sg_arena *a);

#ifdef __cplusplus
}
#endif
#endif
