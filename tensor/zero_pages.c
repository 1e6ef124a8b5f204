/* zero_pages.c - zeroing a large buffer by giving its whole pages back to the system.
 *
 * Why: an embedding table's gradient is zero but for the rows of the batch's words
 * (enfr: a few hundred of 8,000), yet zeroing it with memset after each update keeps all
 * of it resident: 2 x 7.8 MiB of enfr-bahdanau's training peak. Pages given back read as
 * zeros and take no memory until the next backward writes its rows into them (a page
 * fault each). */
#include "tensor_internal.h"

#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

/* below this, memset: a system call and the page faults after it cost more */
#define RELEASE_MIN ((size_t)1 << 20)

void sg__zero_pages(void *buf, size_t bytes)
{
#ifdef __linux__
    long ps = sysconf(_SC_PAGESIZE);
    if (bytes >= RELEASE_MIN && ps > 0) {
        uintptr_t b = (uintptr_t)buf, e = b + bytes, page = (uintptr_t)ps;
        uintptr_t lo = (b + page - 1) & ~(page - 1), hi = e & ~(page - 1);
        /* MADV_DONTNEED on private anonymous memory (malloc's heap and mappings): the
         * pages read as zeros afterwards */
        if (lo < hi && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) {
            memset(buf, 0, lo - b);
            memset((void *)hi, 0, e - hi);
            return;
        }
    }
#endif
    memset(buf, 0, bytes);
}
