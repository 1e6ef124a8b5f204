/* vocab.c - vocabularies (MODELS.md 2.3, 2.4): build, lookup, decode. */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

static const char *const specials[SG_N_SPECIALS] = {"<pad>", "<unk>", "<s>", "</s>"};

struct sg_vocab {
    sg__strmap map;        /* entry index == id */
    const char **strings;  /* [size] pointers into map.keys (refreshed after growth) */
};

void sg_vocab_free(sg_vocab *v)
{
    if (!v)
        return;
    sg__strmap_free(&v->map);
    free(v->strings);
    free(v);
}

/* A vocabulary holding the given strings in order; NULL if one repeats (*dup = index). */
static sg_vocab *vocab_from(const char *fn, const char *const *s, int64_t n, int64_t *dup)
{
    *dup = -1;
    sg_vocab *v = calloc(1, sizeof *v);
    if (!v)
        goto oom;
    for (int64_t i = 0; i < n; i++) {
        int added;
        int64_t e = sg__strmap_insert(&v->map, s[i], (int64_t)strlen(s[i]), 0, &added);
        if (e < 0)
            goto oom;
        if (!added) {
            *dup = i;
            sg_vocab_free(v);
            return NULL;
        }
    }
    v->strings = malloc((size_t)(n > 0 ? n : 1) * sizeof *v->strings);
    if (!v->strings)
        goto oom;
    for (int64_t i = 0; i < n; i++)
        v->strings[i] = sg_tokens_at(&v->map.keys, i);
    return v;
oom:
    sg_vocab_free(v);
    sg__error(SG_ENOMEM, "%s: out of memory for %lld entries", fn, (long long)n);
    return NULL;
}

sg_vocab *sg_vocab_from_strings(const char *const *strings, int64_t n)
{
    if (!strings || n < SG_N_SPECIALS) {
        sg__error(SG_EINVAL, "sg_vocab_from_strings: %s (n = %lld, need >= 4)",
                  strings ? "too few strings" : "NULL strings", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!strings[i]) {
            sg__error(SG_EINVAL, "sg_vocab_from_strings: strings[%lld] is NULL", (long long)i);
            return NULL;
        }
        if (i < SG_N_SPECIALS && strcmp(strings[i], specials[i]) != 0) {
            sg__error(SG_EFORMAT, "sg_vocab_from_strings: entry %lld is \"%.40s\", expected \"%s\"",
                      (long long)i, strings[i], specials[i]);
            return NULL;
        }
    }
    int64_t dup;
    sg_vocab *v = vocab_from("sg_vocab_from_strings", strings, n, &dup);
    if (!v && dup >= 0)
        sg__error(SG_EFORMAT, "sg_vocab_from_strings: entry %lld \"%.40s\" repeats an earlier entry",
                  (long long)dup, strings[dup]);
    return v;
}

sg_vocab *sg_vocab_clone(const sg_vocab *v)
{
    if (!v) {
        sg__error(SG_EINVAL, "sg_vocab_clone: NULL vocabulary");
        return NULL;
    }
    return sg_vocab_from_strings(sg_vocab_strings(v), sg_vocab_size(v));
}

/* Sort order of MODELS.md 2.4: count descending, then strcmp ascending. */
typedef struct {
    const char *tok;
    int64_t count;
} counted;

static int cmp_counted(const void *pa, const void *pb)
{
    const counted *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return strcmp(a->tok, b->tok);
}

int sg__vocab_count(sg__strmap *counts, const sg_tokens *t)
{
    for (int64_t i = 0; i < t->n; i++) {
        const char *s = sg_tokens_at(t, i);
        int added;
        int64_t e = sg__strmap_insert(counts, s, (int64_t)strlen(s), 0, &added);
        if (e < 0)
            return sg__error(SG_ENOMEM, "sg_vocab_build: out of memory");
        counts->vals[e]++;
    }
    return SG_OK;
}

sg_vocab *sg__vocab_from_counts(const sg__strmap *counts, int64_t min_freq, int64_t max_size)
{
    int64_t nk = counts->keys.n, m = 0;
    counted *items = malloc((size_t)(nk > 0 ? nk : 1) * sizeof *items);
    const char **strs = malloc((size_t)(nk + SG_N_SPECIALS) * sizeof *strs);
    sg_vocab *v = NULL;
    if (!items || !strs) {
        sg__error(SG_ENOMEM, "sg_vocab_build: out of memory");
        goto done;
    }
    for (int64_t e = 0; e < nk; e++) {
        const char *s = sg_tokens_at(&counts->keys, e);
        int special = 0;
        for (int k = 0; k < SG_N_SPECIALS; k++)
            special |= strcmp(s, specials[k]) == 0;
        if (counts->vals[e] >= min_freq && !special)
            items[m++] = (counted){s, counts->vals[e]};
    }
    qsort(items, (size_t)m, sizeof *items, cmp_counted);
    int64_t n = SG_N_SPECIALS;
    for (int k = 0; k < SG_N_SPECIALS; k++)
        strs[k] = specials[k];
    for (int64_t i = 0; i < m && n < max_size; i++)
        strs[n++] = items[i].tok;
    int64_t dup;
    v = vocab_from("sg_vocab_build", strs, n, &dup);
done:
    free(items);
    free(strs);
    return v;
}

sg_vocab *sg_vocab_build(const sg_tokens *lists, int64_t n_lists, int64_t min_freq,
                         int64_t max_size)
{
    if ((!lists && n_lists > 0) || n_lists < 0 || min_freq < 1 || max_size < SG_N_SPECIALS) {
        sg__error(SG_EINVAL,
                  "sg_vocab_build: bad arguments (lists %s, n_lists %lld, min_freq %lld >= 1, "
                  "max_size %lld >= 4)",
                  lists ? "given" : "NULL", (long long)n_lists, (long long)min_freq,
                  (long long)max_size);
        return NULL;
    }
    sg__strmap counts = {0};
    sg_vocab *v = NULL;
    int rc = SG_OK;
    for (int64_t l = 0; l < n_lists && rc == SG_OK; l++)
        rc = sg__vocab_count(&counts, &lists[l]);
    if (rc == SG_OK)
        v = sg__vocab_from_counts(&counts, min_freq, max_size);
    sg__strmap_free(&counts);
    return v;
}

int64_t sg_vocab_size(const sg_vocab *v)
{
    return v ? v->map.keys.n : 0;
}

const char *const *sg_vocab_strings(const sg_vocab *v)
{
    return v ? v->strings : NULL;
}

const char *sg_vocab_token(const sg_vocab *v, int64_t id)
{
    if (!v || id < 0 || id >= v->map.keys.n) {
        sg__error(SG_ERANGE, "sg_vocab_token: id %lld outside [0, %lld)", (long long)id,
                  (long long)sg_vocab_size(v));
        return NULL;
    }
    return v->strings[id];
}

int64_t sg_vocab_id(const sg_vocab *v, const char *token)
{
    if (!v || !token)
        return SG_UNK;
    int64_t e = sg__strmap_find(&v->map, token, (int64_t)strlen(token));
    return e < 0 ? SG_UNK : e;
}

int sg_vocab_encode(const sg_vocab *v, const sg_tokens *toks, int64_t *ids)
{
    if (!v || !toks || (!ids && toks->n > 0))
        return sg__error(SG_EINVAL, "sg_vocab_encode: NULL vocabulary, tokens or ids");
    for (int64_t i = 0; i < toks->n; i++)
        ids[i] = sg_vocab_id(v, sg_tokens_at(toks, i));
    return SG_OK;
}

int sg_vocab_decode(const sg_vocab *v, const int64_t *ids, int64_t n, sg_tokens *out)
{
    if (!v || !out || (!ids && n > 0) || n < 0)
        return sg__error(SG_EINVAL, "sg_vocab_decode: NULL vocabulary/ids/output or n < 0");
    int64_t n0 = out->n, len0 = out->buf_len;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= sg_vocab_size(v)) {
            out->n = n0;
            out->buf_len = len0;
            return sg__error(SG_ERANGE, "sg_vocab_decode: ids[%lld] = %lld outside [0, %lld)",
                             (long long)i, (long long)ids[i], (long long)sg_vocab_size(v));
        }
        if (ids[i] == SG_EOS)
            break;
        if (ids[i] == SG_PAD || ids[i] == SG_BOS)
            continue;
        const char *s = v->strings[ids[i]];
        int rc = sg_tokens_push(out, s, (int64_t)strlen(s));
        if (rc != SG_OK) {
            out->n = n0;
            out->buf_len = len0;
            return rc;
        }
    }
    return SG_OK;
}

int sg_detokenize(const sg_vocab *v, sg_text_level level, const int64_t *ids, int64_t n,
                  char **out)
{
    if (!out || (level != SG_LEVEL_WORD && level != SG_LEVEL_CHAR))
        return sg__error(SG_EINVAL, "sg_detokenize: NULL output or bad level %d", (int)level);
    *out = NULL;
    sg_tokens t = {0};
    int rc = sg_vocab_decode(v, ids, n, &t);
    if (rc != SG_OK) {
        sg_tokens_free(&t);
        return rc;
    }
    char *s = malloc((size_t)t.buf_len + 1);
    if (!s) {
        sg_tokens_free(&t);
        return sg__error(SG_ENOMEM, "sg_detokenize: out of memory");
    }
    size_t len = 0;
    for (int64_t i = 0; i < t.n; i++) {
        const char *tok = sg_tokens_at(&t, i);
        size_t k = strlen(tok);
        if (level == SG_LEVEL_WORD && i > 0)
            s[len++] = ' ';
        memcpy(s + len, tok, k);
        len += k;
    }
    s[len] = '\0';
    sg_tokens_free(&t);
    *out = s;
    return SG_OK;
}
