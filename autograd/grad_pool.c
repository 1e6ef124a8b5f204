/* grad_pool.c - gradient buffers of intermediate tensors, released during backward.
 *
 * Why: the gradient of an op's output is dead once that op's backward has run. Taking it
 * from the graph's arena kept every one of them until the step ended, so a training
 * step's peak held all activations plus all their gradients (enfr-transformer: 333 MB of
 * forward data, then 344 MB more in backward). Here they return to per-size free lists
 * as backward proceeds and are reused by the next ones, and across steps, so a steady
 * training loop still does not call malloc.
 *
 * Size classes: four per power of two (at most 19% rounding) from 64 bytes up. Each
 * block has a 64-byte header holding its class; a free block also stores the next free
 * block of its class. A request whose class has no free block takes a cached block up
 * to 4x as large before asking the system (batches of a shorter length reuse the blocks
 * of longer ones); a big request that must ask the system first frees the cached blocks
 * of the classes it could have taken from below (a batch of a greater length makes them
 * stale). Classes that a whole step did not use are returned to the system at reset, so
 * changing batch shapes cannot pile up memory.
 */
#include "autograd_internal.h"

#include <stdlib.h>
#include <string.h>

#define MIN_SHIFT 6 /* 64 bytes */
#define HEADER 64   /* keeps the 64-byte alignment of the buffer */
#define REUSE_UP 8  /* classes above the asked one (4x the size) that a request may take */
#define BIG (1 << 20)

typedef struct block {
    struct block *next; /* while free */
    int cls;
} block;

static block *block_of(void *buf) { return (block *)((char *)buf - HEADER); }
static void *buf_of(block *b) { return (char *)b + HEADER; }

static int class_of(size_t bytes)
{
    if (bytes <= ((size_t)1 << MIN_SHIFT))
        return 0;
    int e = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^e < bytes <= 2^(e+1) */
    size_t quarter = (size_t)1 << (e - 2);
    size_t k = (bytes - 1 - ((size_t)1 << e)) / quarter; /* 0..3 */
    return (e - MIN_SHIFT) * 4 + 1 + (int)k;
}

static size_t class_bytes(int c)
{
    if (c == 0)
        return (size_t)1 << MIN_SHIFT;
    int e = (c - 1) / 4 + MIN_SHIFT, k = (c - 1) % 4;
    return ((size_t)1 << e) + (size_t)(k + 1) * ((size_t)1 << (e - 2));
}

static void free_class(sg_grad_pool *p, int c)
{
    for (block *b = p->free[c], *next; b; b = next) {
        next = b->next;
        free(b);
    }
    p->free[c] = NULL;
}

void *sg__grad_pool_get(sg_grad_pool *p, size_t bytes)
{
    void *buf = sg__grad_pool_get_raw(p, bytes);
    if (buf)
        memset(buf, 0, bytes);
    return buf;
}

void *sg__grad_pool_get_raw(sg_grad_pool *p, size_t bytes)
{
    int c = class_of(bytes);
    if (c >= SG__POOL_CLASSES)
        return NULL;
    block *b = NULL;
    for (int k = c; k <= c + REUSE_UP && k < SG__POOL_CLASSES && !b; k++)
        if (p->free[k]) {
            b = p->free[k];
            p->free[k] = b->next;
        }
    if (!b) {
        if (bytes >= BIG)
            for (int k = c > REUSE_UP ? c - REUSE_UP : 0; k < c; k++)
                free_class(p, k);
        void *m = NULL;
        if (posix_memalign(&m, HEADER, HEADER + class_bytes(c)) != 0)
            return NULL;
        b = m;
        b->cls = c;
    }
    p->used[b->cls] = true;
    return buf_of(b);
}

void sg__grad_pool_put(sg_grad_pool *p, void *buf)
{
    block *b = block_of(buf);
    b->next = p->free[b->cls];
    p->free[b->cls] = b;
}

void sg__grad_pool_trim(sg_grad_pool *p)
{
    for (int c = 0; c < SG__POOL_CLASSES; c++) {
        if (!p->used[c])
            free_class(p, c);
        p->used[c] = false;
    }
}

void sg__grad_pool_clear(sg_grad_pool *p)
{
    for (int c = 0; c < SG__POOL_CLASSES; c++)
        free_class(p, c);
}
