/* zero_pages.c - zeroing a large buffer by giving its whole pages back to the system.
 *
 * Why: an embedding table's gradient is zero but for the rows of the batch's words
 * (enfr: a few hundred of 8,000), yet zeroing it with memset after each update keeps all
 * of it resident: 2 x 7.8 MiB of enfr-bahdanau's training peak. Pages given back read as
 * zeros and take no memory until the next backward writes its rows into them (a page
 * fault each). Reading them would fault too (the zero page mapped in, one 4 KiB page at
 * a time: 3,400 faults a step on enfr-bahdanau, 2.5% of it), so the readers ask
 * sg__nonzero_spans which pages were written. */
#include "tensor_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <fcntl.h>
#include <stdlib.h>
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

#ifdef __linux__
/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PM_PRESENT ((uint64_t)1 << 63)
#define PM_SWAPPED ((uint64_t)1 << 62)
#define PM_BATCH 512 /* entries read at a time: 4 KiB of the map */

/* Reads the pagemap entries of the k pages from page number first; false on failure */
static bool read_map(int fd, uintptr_t first, int64_t k, uint64_t *ent)
{
    size_t want = sizeof(uint64_t) * (size_t)k;
    return pread(fd, ent, want, (off_t)(first * sizeof(uint64_t))) == (ssize_t)want;
}

/* Whether this system's pagemap tells written pages from untouched ones: checked once on
 * two fresh pages, the first written. (A kernel or sandbox that reports every page
 * absent would otherwise make written gradients read as zeros.) */
static bool pagemap_works(void)
{
    static int works = -1; /* a race only computes the same answer twice */
    int w = __atomic_load_n(&works, __ATOMIC_RELAXED);
    if (w >= 0)
        return w;
    long ps = sysconf(_SC_PAGESIZE);
    w = 0;
    char *p = ps > 0 ? mmap(NULL, 2 * (size_t)ps, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                     : MAP_FAILED;
    if (p != MAP_FAILED) {
        *(volatile char *)p = 1;
        uint64_t ent[2];
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            w = read_map(fd, (uintptr_t)p / (uintptr_t)ps, 2, ent) && (ent[0] & PM_PRESENT) &&
                !(ent[1] & (PM_PRESENT | PM_SWAPPED));
            close(fd);
        }
        munmap(p, 2 * (size_t)ps);
    }
    __atomic_store_n(&works, w, __ATOMIC_RELAXED);
    return w;
}
#endif

int64_t sg__nonzero_spans(const void *buf, int64_t n, size_t es, sg__span **spans)
{
    *spans = NULL;
#ifdef __linux__
    long ps = sysconf(_SC_PAGESIZE);
    /* below RELEASE_MIN sg__zero_pages wrote zeros: every page is there to be read */
    if (n <= 0 || (size_t)n * es < RELEASE_MIN || ps <= 0 || es == 0 || (size_t)ps % es != 0 ||
        !pagemap_works())
        return n <= 0 ? 0 : -1;
    uintptr_t b = (uintptr_t)buf, e = b + (size_t)n * es, page = (uintptr_t)ps;
    uintptr_t first = b / page, last = (e - 1) / page; /* pages the buffer touches */
    int64_t np = (int64_t)(last - first + 1);
    sg__span *out = malloc(sizeof *out * (size_t)((np + 1) / 2 + 1));
    int fd = out ? open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        free(out);
        return -1;
    }
    uint64_t ent[PM_BATCH];
    int64_t count = 0;
    for (int64_t p0 = 0; p0 < np; p0 += PM_BATCH) {
        int64_t k = np - p0 < PM_BATCH ? np - p0 : PM_BATCH;
        if (!read_map(fd, first + (uintptr_t)p0, k, ent)) {
            close(fd);
            free(out);
            return -1;
        }
        for (int64_t j = 0; j < k; j++) {
            if (!(ent[j] & (PM_PRESENT | PM_SWAPPED)))
                continue;
            /* the page's elements, clipped to the buffer */
            uintptr_t lo = (first + (uintptr_t)(p0 + j)) * page, hi = lo + page;
            int64_t s = lo <= b ? 0 : (int64_t)((lo - b) / es);
            int64_t t = hi >= e ? n : (int64_t)((hi - b) / es);
            if (count > 0 && out[count - 1].end == s)
                out[count - 1].end = t; /* the next page of a run */
            else
                out[count++] = (sg__span){s, t};
        }
    }
    close(fd);
    if (count == 0) {
        free(out);
        return 0;
    }
    *spans = out;
    return count;
#else
    (void)buf, (void)es;
    return n <= 0 ? 0 : -1;
#endif
}
