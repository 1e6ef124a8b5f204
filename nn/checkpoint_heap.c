/* checkpoint_heap.c - validates the variable-length string references of a dataset
 * before HDF5 follows them.
 *
 * Why: HDF5 1.10's H5HG_read trusts the (collection address, object index) pair stored
 * in the raw data of a variable-length dataset and indexes its heap arrays with it
 * unchecked; neither the raw data nor global heap collections carry checksums in any
 * file format version. A corrupt vocabulary dataset therefore crashed the library
 * (found by the corruption test and the fuzzer). We read the references ourselves and
 * parse every collection they name (MODELS.md files use 8-byte addresses and lengths).
 * String attributes also live in collections but their references cannot be read through
 * the API, so before opening a file every collection in it is found by its signature and
 * checked (sg__ckpt_check_heaps); with 1.8-format files (ours) the attribute references
 * themselves sit in checksummed object headers.
 *
 *   element    : u32 length, u64 collection address, u32 object index   (16 bytes)
 *   collection : "GCOL", u8 version 1, 3 reserved, u64 size; then objects
 *   object     : u16 index, u16 refcount, 4 reserved, u64 size, data padded to 8;
 *                index 0 is the free space (size counts its header) ending the list
 */
#include "checkpoint_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_COLLECTION ((uint64_t)1 << 30)

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool read_at(FILE *fp, uint64_t off, void *buf, size_t n)
{
    return fseeko(fp, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, fp) == n;
}

typedef struct heap {
    uint64_t addr;
    uint64_t *size; /* size[idx] + 1 of each present object, 0 if absent; 65536 entries */
} heap;

/* Parses the collection at addr into h (h->size may be NULL: structure only); false if
 * malformed. Walks objects exactly as HDF5's H5HG deserialiser does, rejecting what
 * would make it loop (a free-space object of size < 16: no progress), run past the
 * collection, or hold two objects under one index. */
static bool parse_collection(FILE *fp, uint64_t base, uint64_t fsize, uint64_t addr, heap *h,
                             bool want_sizes)
{
    unsigned char hd[16];
    if (addr > fsize || base + addr + 16 > fsize || !read_at(fp, base + addr, hd, 16) ||
        memcmp(hd, "GCOL", 4) != 0 || hd[4] != 1)
        return false;
    uint64_t size = le(hd + 8, 8);
    if (size < 4096 || size > MAX_COLLECTION || size > fsize - base - addr)
        return false;
    unsigned char *c = malloc((size_t)size);
    unsigned char *seen = calloc(65536, 1);
    h->size = want_sizes ? calloc(65536, sizeof *h->size) : NULL;
    bool ok = c && seen && (h->size || !want_sizes) && read_at(fp, base + addr, c, (size_t)size);
    uint64_t p = 16;
    while (ok && p + 16 <= size) {
        unsigned idx = (unsigned)le(c + p, 2);
        uint64_t osz = le(c + p + 8, 8), need;
        if (osz > size) {
            ok = false;
            break;
        }
        need = idx == 0 ? osz : 16 + ((osz + 7) & ~(uint64_t)7);
        if (need < 16 || need > size - p || (idx && seen[idx])) {
            ok = false;
            break;
        }
        if (idx) {
            seen[idx] = 1;
            if (h->size)
                h->size[idx] = osz + 1;
        }
        p += need;
    }
    free(c);
    free(seen);
    h->addr = addr;
    return ok;
}

int sg__ckpt_check_heaps(const char *fn, const char *path)
{
    /* HDF5 checks the signature and version only, not the 3 reserved bytes */
    static const unsigned char sig[5] = {'G', 'C', 'O', 'L', 1};
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || fstat(fileno(fp), &st) != 0) {
        if (fp)
            fclose(fp);
        return sg__error(SG_EIO, "%s: cannot read '%s'", fn, path);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK + 16);
    int rc = buf ? SG_OK : sg__error(SG_ENOMEM, "%s: out of memory", fn);
    /* chunks overlap by 15 bytes so that a header across a boundary is seen once */
    for (uint64_t off = 0; rc == SG_OK && off < fsize; off += CHUNK) {
        size_t n = (size_t)(fsize - off < CHUNK + 15 ? fsize - off : CHUNK + 15);
        if (!read_at(fp, off, buf, n)) {
            rc = sg__error(SG_EIO, "%s: cannot read '%s'", fn, path);
            break;
        }
        for (size_t i = 0; rc == SG_OK && i + 5 <= n && i < CHUNK; i++) {
            unsigned char *q = memchr(buf + i, 'G', (n < CHUNK ? n : CHUNK) - i);
            if (!q)
                break;
            i = (size_t)(q - buf);
            if (i + 16 > n || memcmp(q, sig, sizeof sig) != 0)
                continue;
            /* A declared size beyond the end of the file cannot be loaded by HDF5 either;
             * skipping those also keeps a random "GCOL\1" in float data from being taken
             * for a collection (the 8 size bytes would have to fit too). */
            if (le(q + 8, 8) > fsize - (off + i))
                continue;
            heap h = {0};
            if (!parse_collection(fp, 0, fsize, off + i, &h, false))
                rc = sg__error(SG_EFORMAT, "%s: '%s': corrupt global heap collection at byte %llu",
                               fn, path, (unsigned long long)(off + i));
        }
    }
    free(buf);
    fclose(fp);
    return rc;
}

int sg__ckpt_check_vlen_elems(const char *fn, const char *path, FILE *fp, uint64_t ub,
                              uint64_t fsize, const unsigned char *raw, uint64_t n,
                              const char *what)
{
    int rc = SG_OK;
    heap heaps[8] = {{0}};
    int nh = 0;
    for (uint64_t i = 0; rc == SG_OK && i < n; i++) {
        const unsigned char *e = raw + 16 * i;
        uint64_t len = le(e, 4), addr = le(e + 4, 8), idx = le(e + 12, 4);
        if (len == 0 && addr == 0)
            continue; /* an empty string needs no heap object */
        heap *h = NULL;
        for (int k = 0; k < nh && !h; k++)
            if (heaps[k].addr == addr)
                h = &heaps[k];
        if (!h) {
            if (nh == 8) { /* keep at most 8 parsed collections: drop the oldest */
                free(heaps[0].size);
                memmove(heaps, heaps + 1, sizeof heaps[0] * 7);
                nh = 7;
            }
            h = &heaps[nh];
            *h = (heap){0};
            if (!parse_collection(fp, ub, fsize, addr, h, true)) {
                free(h->size);
                rc = sg__error(SG_EFORMAT, "%s: '%s': %s entry %llu points to a corrupt "
                                           "global heap",
                               fn, path, what, (unsigned long long)i);
                break;
            }
            nh++;
        }
        if (idx == 0 || idx > 65535 || h->size[idx] != len + 1)
            rc = sg__error(SG_EFORMAT, "%s: '%s': %s entry %llu has a bad heap reference",
                           fn, path, what, (unsigned long long)i);
    }
    for (int k = 0; k < nh; k++)
        free(heaps[k].size);
    return rc;
}

int sg__ckpt_check_vlen(const char *fn, const char *path, hid_t f, hid_t d, const char *full,
                        uint64_t n)
{
    hid_t fcpl = H5Fget_create_plist(f);
    hid_t dcpl = H5Dget_create_plist(d);
    size_t so = 0, sl = 0;
    hsize_t ub = 0;
    bool sizes = fcpl >= 0 && H5Pget_sizes(fcpl, &so, &sl) >= 0 && H5Pget_userblock(fcpl, &ub) >= 0;
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    haddr_t off = H5Dget_offset(d);
    SG_H5_CLOSE(fcpl, dcpl);
    if (!sizes || so != 8 || sl != 8)
        return sg__error(SG_EFORMAT, "%s: '%s': unsupported address or length size in the file", fn,
                         path);
    if (n == 0)
        return SG_OK;
    if (layout != H5D_CONTIGUOUS || off == HADDR_UNDEF)
        return sg__error(SG_EFORMAT, "%s: '%s': dataset %s must be contiguous and allocated", fn,
                         path, full);
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || fstat(fileno(fp), &st) != 0) {
        if (fp)
            fclose(fp);
        return sg__error(SG_EIO, "%s: cannot reopen '%s'", fn, path);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    unsigned char *raw = n <= fsize / 16 ? malloc((size_t)n * 16) : NULL;
    int rc = SG_OK;
    if (!raw || off > fsize || ub > fsize || !read_at(fp, ub + off, raw, (size_t)n * 16))
        rc = sg__error(SG_EFORMAT, "%s: '%s': dataset %s: raw data lies outside the file", fn, path,
                       full);
    if (rc == SG_OK) {
        char what[SG__CKPT_PATH_MAX + 16];
        snprintf(what, sizeof what, "dataset %s", full);
        rc = sg__ckpt_check_vlen_elems(fn, path, fp, ub, fsize, raw, n, what);
    }
    free(raw);
    fclose(fp);
    return rc;
}
