/* strmap.c - the string hash map behind vocabularies, counting and uniqueness. */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

int sg__grow(void **p, int64_t *cap, int64_t need, size_t es)
{
    if (need <= *cap)
        return 1;
    int64_t c = *cap > 0 ? *cap : 16;
    while (c < need) {
        if (c > INT64_MAX / 2)
            return 0;
        c *= 2;
    }
    if ((uint64_t)c > SIZE_MAX / es)
        return 0;
    void *q = realloc(*p, (size_t)c * es);
    if (!q)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

static uint64_t fnv1a(const char *s, int64_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int key_eq(const sg__strmap *m, int64_t e, const char *s, int64_t len)
{
    const char *k = sg_tokens_at(&m->keys, e);
    return strncmp(k, s, (size_t)len) == 0 && k[len] == '\0';
}

static int64_t probe(const sg__strmap *m, uint64_t h, const char *s, int64_t len)
{
    int64_t mask = m->n_slots - 1;
    for (int64_t i = (int64_t)(h & (uint64_t)mask);; i = (i + 1) & mask) {
        int64_t e = m->slots[i];
        if (e < 0 || (m->hashes[e] == h && key_eq(m, e, s, len)))
            return i;
    }
}

int64_t sg__strmap_find(const sg__strmap *m, const char *s, int64_t len)
{
    if (m->n_slots == 0)
        return -1;
    return m->slots[probe(m, fnv1a(s, len), s, len)];
}

/* Doubles the slot table (load factor <= 1/2). */
static int rehash(sg__strmap *m)
{
    int64_t ns = m->n_slots ? m->n_slots * 2 : 64;
    int64_t *slots = malloc((size_t)ns * sizeof *slots);
    if (!slots)
        return 0;
    for (int64_t i = 0; i < ns; i++)
        slots[i] = -1;
    for (int64_t e = 0; e < m->keys.n; e++) {
        int64_t i = (int64_t)(m->hashes[e] & (uint64_t)(ns - 1));
        while (slots[i] >= 0)
            i = (i + 1) & (ns - 1);
        slots[i] = e;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = ns;
    return 1;
}

int64_t sg__strmap_insert(sg__strmap *m, const char *s, int64_t len, int64_t v0, int *added)
{
    *added = 0;
    if (2 * (m->keys.n + 1) > m->n_slots && !rehash(m))
        return SG_ENOMEM;
    uint64_t h = fnv1a(s, len);
    int64_t i = probe(m, h, s, len);
    if (m->slots[i] >= 0)
        return m->slots[i];
    int64_t e = m->keys.n;
    if (!sg__grow((void **)&m->vals, &m->vals_cap, e + 1, sizeof *m->vals) ||
        !sg__grow((void **)&m->hashes, &m->hashes_cap, e + 1, sizeof *m->hashes))
        return SG_ENOMEM;
    if (sg_tokens_push(&m->keys, s, len) != SG_OK)
        return SG_ENOMEM;
    m->vals[e] = v0;
    m->hashes[e] = h;
    m->slots[i] = e;
    *added = 1;
    return e;
}

void sg__strmap_free(sg__strmap *m)
{
    if (!m)
        return;
    sg_tokens_free(&m->keys);
    free(m->vals);
    free(m->slots);
    free(m->hashes);
    memset(m, 0, sizeof *m);
}
