/* checkpoint_ohdr.c - checks version-1 object headers before HDF5 decodes their messages.
 *
 * Why: files in HDF5's earliest format (what h5py and the PyTorch reference write) keep
 * object headers without checksums, and HDF5 1.10.8 trusts the sizes inside their
 * messages: a corrupt attribute message made it copy past its buffer (heap overflow in
 * H5O_attr_decode) or dereference NULL (H5Aiterate2), both found by the fuzzer. Version-2
 * headers (the 1.8 format seqgrad writes) carry checksums that HDF5 verifies, so only
 * version 1 is parsed here. Every message must fit its chunk; attribute, dataspace and
 * datatype messages must be internally consistent, with attribute data exactly as large
 * as its dataspace and datatype say.
 *
 *   prefix       : u8 version 1, u8 0, u16 messages, u32 refcount, u32 chunk size, 4 pad
 *   message      : u16 type, u16 size, u8 flags, 3 reserved, body[size]
 *   continuation : type 0x10, u64 address, u64 length (a further chunk of messages)
 *   attribute    : type 0x0C; v1: u8 1, 0, u16 name, u16 datatype, u16 dataspace sizes,
 *                  each part padded to 8; v2 unpadded; v3 adds a u8 encoding; then data
 *   dataspace    : v1: u8 1, rank, flags, 5 reserved, dims, [max dims];
 *                  v2: u8 2, rank, flags, type; dims, [max dims] (8-byte lengths)
 *   datatype     : u8 class | version << 4, 3 class bits, u32 size, properties
 */
#include "checkpoint_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CHUNKS 64
#define MAX_CHUNK ((uint64_t)1 << 24)
#define MAX_RANK 32
#define MAX_TYPE_DEPTH 8

enum { MSG_DATASPACE = 0x01, MSG_DATATYPE = 0x03, MSG_ATTRIBUTE = 0x0C, MSG_CONT = 0x10 };
enum { MSG_SHARED = 0x02 };

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* A dataspace message of n bytes; *points its element count. */
static bool check_space(const unsigned char *b, uint64_t n, uint64_t *points)
{
    if (n < 4)
        return false;
    unsigned ver = b[0], rank = b[1], flags = b[2];
    uint64_t hdr;
    if (ver == 1)
        hdr = 8;
    else if (ver == 2 && b[3] <= 2)
        hdr = 4;
    else
        return false;
    if (rank > MAX_RANK)
        return false;
    uint64_t need = hdr + (uint64_t)rank * 8 * (1 + (flags & 1)) +
                    (ver == 1 && (flags & 2) ? (uint64_t)rank * 8 : 0);
    if (need > n)
        return false;
    uint64_t count = 1;
    for (unsigned i = 0; i < rank; i++) {
        uint64_t d = le(b + hdr + 8 * i, 8);
        if (d && count > UINT64_MAX / d)
            return false;
        count *= d;
    }
    *points = ver == 2 && b[3] == 2 ? 0 : count; /* a null dataspace has no element */
    return true;
}

/* A datatype of at most n bytes at b; *used its encoded length, *esize its element size. */
static bool check_type(const unsigned char *b, uint64_t n, int depth, uint64_t *used,
                       uint64_t *esize)
{
    if (n < 8 || depth > MAX_TYPE_DEPTH)
        return false;
    unsigned cls = b[0] & 0x0F, ver = b[0] >> 4;
    uint64_t size = le(b + 4, 4), props, members = le(b + 1, 2);
    if (ver < 1 || ver > 4)
        return false;
    switch (cls) {
    case 0: /* integer, bitfield: offset, precision */
    case 4:
        props = 4;
        break;
    case 1: /* float: offset, precision, exponent and mantissa layout, bias */
        props = 12;
        break;
    case 3: /* string, reference: none */
    case 7:
        props = 0;
        break;
    case 9: { /* variable length: a base type */
        uint64_t bu, be;
        if (!check_type(b + 8, n - 8, depth + 1, &bu, &be))
            return false;
        props = bu;
        break;
    }
    case 8: { /* enum: a base type, names, values */
        uint64_t bu, be, p = 8;
        if (!check_type(b + 8, n - 8, depth + 1, &bu, &be) || be != size)
            return false;
        p += bu;
        for (uint64_t m = 0; m < members; m++) {
            const unsigned char *z = memchr(b + p, 0, (size_t)(n - p));
            if (!z)
                return false;
            uint64_t len = (uint64_t)(z - (b + p)) + 1;
            p += ver >= 3 ? len : pad8(len);
            if (p > n)
                return false;
        }
        if (members > (n - p) / (size ? size : 1))
            return false;
        props = p - 8 + members * size;
        break;
    }
    default: /* time, opaque, compound, array: never in a checkpoint */
        return false;
    }
    if (props > n - 8 || size == 0)
        return false;
    *used = 8 + props;
    *esize = size;
    return true;
}

/* An attribute message of n bytes. When its elements are variable-length, *vlen points
 * to them and *nvlen counts them (their heap references are checked by the caller). */
static bool check_attribute(const unsigned char *b, uint64_t n, const unsigned char **vlen,
                            uint64_t *nvlen)
{
    *nvlen = 0;
    if (n < 8)
        return false;
    unsigned ver = b[0];
    if (ver < 1 || ver > 3)
        return false;
    uint64_t name = le(b + 2, 2), tsize = le(b + 4, 2), ssize = le(b + 6, 2);
    uint64_t p = ver == 3 ? 9 : 8;
    bool padded = ver == 1;
    if (name == 0 || p + name > n || b[p + name - 1] != 0)
        return false;
    p += padded ? pad8(name) : name;
    const unsigned char *type = b + p;
    uint64_t tused, esize, points;
    if (p + tsize > n)
        return false;
    bool shared_type = ver >= 2 && (b[1] & 1);
    if (!shared_type && (!check_type(b + p, tsize, 0, &tused, &esize) || tused > tsize))
        return false;
    p += padded ? pad8(tsize) : tsize;
    if (p + ssize > n || (ver >= 2 && (b[1] & 2)) || !check_space(b + p, ssize, &points))
        return false;
    p += padded ? pad8(ssize) : ssize;
    if (p > n)
        return false;
    if (shared_type)
        return true;
    if (points > (n - p) / esize)
        return false;
    if ((type[0] & 0x0F) == 9) { /* variable length */
        if (esize != 16)
            return false;
        *vlen = b + p;
        *nvlen = points;
    }
    return true;
}

typedef struct span {
    uint64_t addr, len;
} span;

/* Walks the messages of one chunk, queueing continuations. */
typedef struct hdr_ctx {
    const rctx *r;
    const char *full;
    FILE *fp;
    uint64_t base, fsize; /* user block, file bytes */
    int rc;               /* set when a heap reference is bad (message already made) */
} hdr_ctx;

static const char *check_chunk(hdr_ctx *h, const unsigned char *c, uint64_t len, span *q,
                               int *nq)
{
    uint64_t fsize = h->fsize - h->base;
    uint64_t p = 0;
    while (p + 8 <= len) {
        unsigned type = (unsigned)le(c + p, 2), flags = c[p + 4];
        uint64_t size = le(c + p + 2, 2);
        const unsigned char *body = c + p + 8;
        if (size > len - p - 8)
            return "a message runs past its chunk";
        if (type == MSG_CONT) {
            if (size < 16)
                return "a continuation message is too short";
            uint64_t a = le(body, 8), l = le(body + 8, 8);
            if (*nq >= MAX_CHUNKS)
                return "too many header chunks";
            if (a >= fsize || l > fsize - a || l < 8 || l > MAX_CHUNK)
                return "a continuation points outside the file";
            q[(*nq)++] = (span){a, l};
        } else if (!(flags & MSG_SHARED)) {
            uint64_t points, used, esize;
            const unsigned char *vlen = NULL;
            uint64_t nvlen = 0;
            if (type == MSG_ATTRIBUTE && !check_attribute(body, size, &vlen, &nvlen))
                return "malformed attribute message";
            if (nvlen) {
                char what[SG__CKPT_PATH_MAX + 32];
                snprintf(what, sizeof what, "an attribute of %.*s", SG__CKPT_PATH_MAX, h->full);
                h->rc = sg__ckpt_check_vlen_elems(h->r->fn, h->r->path, h->fp, h->base, h->fsize,
                                                  vlen, nvlen, what);
                if (h->rc != SG_OK)
                    return "bad heap reference";
            }
            if (type == MSG_DATASPACE && !check_space(body, size, &points))
                return "malformed dataspace message";
            if (type == MSG_DATATYPE && (!check_type(body, size, 0, &used, &esize) || used > size))
                return "malformed datatype message";
        }
        p += 8 + size;
    }
    return NULL;
}

static const char *check_header(hdr_ctx *h, uint64_t addr)
{
    FILE *fp = h->fp;
    uint64_t base = h->base, fsize = h->fsize;
    unsigned char pre[16];
    if (addr > fsize - base || fsize - base - addr < 16 || fseeko(fp, (off_t)(base + addr), SEEK_SET) ||
        fread(pre, 1, 16, fp) != 16)
        return "the object header is outside the file";
    if (pre[0] != 1)
        return "unknown object header version";
    span q[MAX_CHUNKS];
    int nq = 1;
    q[0] = (span){addr + 16, le(pre + 8, 4)};
    if (q[0].len > MAX_CHUNK || q[0].len > fsize - base - q[0].addr)
        return "the object header runs past the end of the file";
    const char *bad = NULL;
    for (int i = 0; i < nq && !bad; i++) {
        unsigned char *c = malloc(q[i].len ? (size_t)q[i].len : 1);
        if (!c)
            return "out of memory";
        if (fseeko(fp, (off_t)(base + q[i].addr), SEEK_SET) ||
            fread(c, 1, (size_t)q[i].len, fp) != q[i].len)
            bad = "an object header chunk is outside the file";
        else
            bad = check_chunk(h, c, q[i].len, q, &nq);
        free(c);
    }
    return bad;
}

int sg__ckpt_check_ohdr(const rctx *r, hid_t loc, const char *name, const char *full)
{
    H5O_info_t oi;
    if (H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC | H5O_INFO_HDR, H5P_DEFAULT) < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot look up", full);
    if (oi.hdr.version != 1) /* later versions are checksummed */
        return SG_OK;
    hsize_t base = 0;
    hid_t fcpl = H5Fget_create_plist(r->f);
    if (fcpl < 0 || H5Pget_userblock(fcpl, &base) < 0) {
        if (fcpl >= 0)
            H5Pclose(fcpl);
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot read the superblock of", r->path);
    }
    H5Pclose(fcpl);
    struct stat st;
    FILE *fp = fopen(r->path, "rb");
    if (!fp || fstat(fileno(fp), &st) != 0) {
        if (fp)
            fclose(fp);
        return sg__error(SG_EIO, "%s: cannot read '%s'", r->fn, r->path);
    }
    hdr_ctx h = {r, full, fp, base, (uint64_t)st.st_size, SG_OK};
    const char *bad = base > h.fsize ? "the user block is larger than the file"
                                     : check_header(&h, oi.addr);
    fclose(fp);
    if (h.rc != SG_OK)
        return h.rc;
    if (bad)
        return sg__error(SG_EFORMAT, "%s: '%s': corrupt object header of %s: %s", r->fn,
                         r->path, full, bad);
    return SG_OK;
}
