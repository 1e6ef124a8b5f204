/* grad_pool.c - gradient buffers of intermediate tensors, released during backward.
 *
 * Why: the gradient of an op's output is dead once that op's backward has run. Taking it
 * from the graph's arena kept every one of them until the step ended, so a training
 * step's peak held all activations plus all their gradients (enfr-transformer: 333 MB of
 * forward data, then 344 MB more in backward). Here each is a block of its own, freed as
 * backward passes it; ops' scratch buffers come from here too.
 *
 * The blocks are plain malloc blocks, freed at once. An earlier version kept freed
 * blocks on free lists by size class for reuse (so that a training step would not call
 * malloc), but a block cached for one size sat idle while requests of other sizes took
 * new memory (enfr-luong: an 8 MB logits chunk of the loss's forward beside 1.3 MB
 * gradients in backward), whereas glibc's allocator serves a request from freed space of
 * any size (it coalesces neighbours) and returns big blocks to the system. Training peak
 * RSS at 1 thread, the same speed: enfr-luong 249.7 -> 245.7 MB, enfr-transformer 291.9
 * -> 283.2, enfr-bahdanau 386.4 -> 371.7, dates-bahdanau 73.5 -> 71.5.
 */
#include "autograd_internal.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

void *sg__grad_pool_get(sg_grad_pool *p, size_t bytes)
{
    void *buf = sg__grad_pool_get_raw(p, bytes);
    if (buf)
        memset(buf, 0, bytes);
    return buf;
}

void *sg__grad_pool_get_raw(sg_grad_pool *p, size_t bytes)
{
    void *m = NULL;
    if (posix_memalign(&m, ALIGN, bytes ? bytes : 1) != 0)
        return NULL;
    p->live++;
    return m;
}

void sg__grad_pool_put(sg_grad_pool *p, void *buf)
{
    p->live--;
    free(buf);
}
