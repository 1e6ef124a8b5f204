/* arena.c - chunked bump allocator; chunks merge on reset so steady state is one chunk. */
#include "tensor_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define ARENA_ALIGN 64

typedef struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    size_t map_bytes; /* the mapping's length */
    _Alignas(ARENA_ALIGN) unsigned char data[];
} chunk;

struct sg_arena {
    chunk *head;       /* chunk currently bumped */
    chunk *full;       /* chunks filled since the last reset */
    size_t chunk_bytes;
    size_t used_total; /* bytes handed out since reset, for stats and merging */
};

/* Chunks of freed arenas, kept for the next arenas. A program that makes its graphs per
 * call (sg_model_decode makes an encoder graph, step graphs and a weights graph for each
 * batch) otherwise gets fresh pages from the system every time and faults on each of
 * them: dates greedy decoding took 42k page faults and ran 10% slower. Bounded in count
 * and bytes; only whole freed arenas land here, not the chunks a reset merges (a training
 * loop's peak memory stays what it was), and no chunk over 64 MiB (a freed training
 * graph's memory goes back to the system). sg_arena_release_cache empties it. 32 slots:
 * a 2-thread decode of two half batches frees more than 8 chunks per batch (with 8, 32k
 * page faults per dates run instead of 20k). */
#define CACHE_SLOTS 32
#define CACHE_MAX_CHUNK ((size_t)64 << 20)
#define CACHE_MAX_BYTES ((size_t)256 << 20)
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *cache[CACHE_SLOTS];
static size_t cache_bytes;

/* Chunks are mappings of their own, not malloc blocks: a freed one goes back to the
 * system whatever its size. From malloc, a chunk under glibc's mmap threshold (which
 * rises to 32 MiB as big blocks are freed) came from the heap, and a freed one in the
 * middle of the heap stayed resident: enfr-luong's first pass over batches of rising
 * length (each step a larger arena) peaked 11 MB above its steady state. */
static chunk *chunk_map(size_t size)
{
    size_t n = (sizeof(chunk) + size + 4095) & ~(size_t)4095;
    void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    chunk *c = m;
    c->map_bytes = n;
    return c;
}

static void chunk_unmap(chunk *c)
{
    if (c)
        munmap(c, c->map_bytes);
}

/* the smallest cached chunk of at least size bytes (and not over 4x larger), or NULL */
static chunk *cache_take(size_t size)
{
    pthread_mutex_lock(&cache_lock);
    int best = -1;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i] && cache[i]->size >= size && cache[i]->size / 4 <= size &&
            (best < 0 || cache[i]->size < cache[best]->size))
            best = i;
    chunk *c = NULL;
    if (best >= 0) {
        c = cache[best];
        cache[best] = NULL;
        cache_bytes -= c->size;
    }
    pthread_mutex_unlock(&cache_lock);
    return c;
}

/* keeps c for a later arena if there is room, else frees it */
static void cache_put(chunk *c)
{
    if (c->size > CACHE_MAX_CHUNK) {
        chunk_unmap(c);
        return;
    }
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS && c; i++)
        if (!cache[i] && cache_bytes + c->size <= CACHE_MAX_BYTES) {
            cache[i] = c;
            cache_bytes += c->size;
            c = NULL;
        }
    pthread_mutex_unlock(&cache_lock);
    chunk_unmap(c);
}

void sg_arena_release_cache(void)
{
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        chunk_unmap(cache[i]);
        cache[i] = NULL;
    }
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
}

static chunk *chunk_new(size_t size)
{
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    chunk *c = cache_take(size);
    if (c) {
        c->next = NULL;
        c->used = 0;
        return c;
    }
    c = chunk_map(size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

sg_arena *sg_arena_new(size_t chunk_bytes)
{
    sg_arena *a = calloc(1, sizeof *a);
    if (!a) {
        sg__error(SG_ENOMEM, "sg_arena_new: out of memory");
        return NULL;
    }
    a->chunk_bytes = chunk_bytes ? chunk_bytes : (size_t)1 << 20;
    a->head = chunk_new(a->chunk_bytes);
    if (!a->head) {
        free(a);
        sg__error(SG_ENOMEM, "sg_arena_new: cannot reserve %zu bytes", chunk_bytes);
        return NULL;
    }
    return a;
}

static void chunk_list_free(chunk *c)
{
    while (c) {
        chunk *n = c->next;
        chunk_unmap(c);
        c = n;
    }
}

/* cache_put of every chunk of a list */
static void chunk_list_cache(chunk *c)
{
    while (c) {
        chunk *n = c->next;
        cache_put(c);
        c = n;
    }
}

void sg_arena_free(sg_arena *a)
{
    if (!a)
        return;
    chunk_list_cache(a->head);
    chunk_list_cache(a->full); /* an arena that grew: its next use grows alike */
    free(a);
}

void *sg_arena_alloc(sg_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    if (a->head->used + need > a->head->size) {
        size_t size = a->chunk_bytes > need ? a->chunk_bytes : need;
        /* grow geometrically so a big step needs few chunks */
        if (size < a->used_total)
            size = a->used_total;
        chunk *c = chunk_new(size);
        if (!c) {
            sg__error(SG_ENOMEM, "sg_arena_alloc: out of memory asking for %zu bytes", bytes);
            return NULL;
        }
        a->head->next = a->full;
        a->full = a->head;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += need;
    a->used_total += need;
    return p;
}

void *sg_arena_calloc(sg_arena *a, size_t bytes)
{
    void *p = sg_arena_alloc(a, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void sg_arena_reset(sg_arena *a)
{
    if (a->full) {
        /* This step needed several chunks: replace them by one that fits it all. */
        size_t total = a->used_total + a->used_total / 4;
        chunk *c = chunk_new(total);
        if (c) {
            chunk_list_free(a->full);
            chunk_list_free(a->head);
            a->full = NULL;
            a->head = c;
            a->chunk_bytes = total;
        } else { /* no memory to merge: keep the current chunk, drop the rest */
            chunk_list_free(a->full);
            a->full = NULL;
        }
    }
    a->head->used = 0;
    a->used_total = 0;
}

size_t sg_arena_used(const sg_arena *a) { return a->used_total; }

size_t sg_arena_reserved(const sg_arena *a)
{
    size_t n = 0;
    for (const chunk *c = a->head; c; c = c->next)
        n += c->size;
    for (const chunk *c = a->full; c; c = c->next)
        n += c->size;
    return n;
}

int sg_malloc_keep_freed(size_t max_block)
{
    if (max_block == 0 || max_block > ((size_t)32 << 20))
        return sg__error(SG_EINVAL, "sg_malloc_keep_freed: max_block %zu is outside [1, 32 MiB]",
                         max_block);
#ifdef __GLIBC__
    /* setting either turns glibc's own adaptation of both off: set both */
    if (!mallopt(M_MMAP_THRESHOLD, (int)max_block) ||
        !mallopt(M_TRIM_THRESHOLD, (int)(4 * max_block)))
        return sg__error(SG_ESTATE, "sg_malloc_keep_freed: the malloc in use refused the "
                                    "settings (not glibc's own: a sanitizer's, or preloaded)");
    return SG_OK;
#else
    return sg__error(SG_ESTATE, "sg_malloc_keep_freed: needs glibc's malloc");
#endif
}
