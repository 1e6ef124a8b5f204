/* bleu.c - corpus BLEU-4 and exact match (MODELS.md 9). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* Tokens as small integers (equal strings <-> equal ids) so n-gram comparisons are
 * integer compares. Sentences are short, so the O(len^2) counting below is cheap. */
static int intern(sg__strmap *m, const sg_tokens *t, int64_t *out)
{
    for (int64_t i = 0; i < t->n; i++) {
        const char *s = sg_tokens_at(t, i);
        int added;
        out[i] = sg__strmap_insert(m, s, (int64_t)strlen(s), 0, &added);
        if (out[i] < 0)
            return SG_ENOMEM;
    }
    return SG_OK;
}

static int64_t count_ngram(const int64_t *x, int64_t nx, const int64_t *g, int64_t n)
{
    int64_t c = 0;
    for (int64_t i = 0; i + n <= nx; i++)
        c += memcmp(x + i, g, (size_t)n * sizeof *g) == 0;
    return c;
}

int sg_bleu_add(sg_bleu_stats *s, const sg_tokens *hyp, const sg_tokens *ref)
{
    if (!s || !hyp || !ref)
        return sg__error(SG_EINVAL, "sg_bleu_add: NULL stats, hypothesis or reference");
    int64_t nh = hyp->n, nr = ref->n;
    sg__strmap m = {0};
    int64_t *h = malloc((size_t)(nh + nr + 1) * sizeof *h), *r = h + nh;
    if (!h || intern(&m, hyp, h) != SG_OK || intern(&m, ref, r) != SG_OK) {
        free(h);
        sg__strmap_free(&m);
        return sg__error(SG_ENOMEM, "sg_bleu_add: out of memory");
    }
    for (int64_t n = 1; n <= 4; n++) {
        for (int64_t i = 0; i + n <= nh; i++) {
            /* Count each distinct n-gram once, at its first occurrence. */
            if (count_ngram(h, i + n - 1, h + i, n) > 0)
                continue;
            int64_t ch = count_ngram(h, nh, h + i, n), cr = count_ngram(r, nr, h + i, n);
            s->match[n - 1] += ch < cr ? ch : cr;
        }
        s->total[n - 1] += nh - n + 1 > 0 ? nh - n + 1 : 0;
    }
    s->hyp_len += nh;
    s->ref_len += nr;
    free(h);
    sg__strmap_free(&m);
    return SG_OK;
}

/* Adds hypothesis tokens th (made with status rc) against the tokenised ref; frees th. */
static int add_against_text(sg_bleu_stats *s, int rc, sg_tokens *th, const char *ref)
{
    sg_tokens tr = {0};
    if (rc == SG_OK)
        rc = sg_tokenize_words(ref, &tr);
    if (rc == SG_OK)
        rc = sg_bleu_add(s, th, &tr);
    sg_tokens_free(th);
    sg_tokens_free(&tr);
    return rc;
}

int sg_bleu_add_text(sg_bleu_stats *s, const char *hyp, const char *ref)
{
    sg_tokens th = {0};
    int rc = sg_tokenize_words(hyp, &th);
    return add_against_text(s, rc, &th, ref);
}

int sg_bleu_add_ids(sg_bleu_stats *s, const sg_vocab *v, sg_text_level level,
                    const int64_t *ids, int64_t n, const char *ref)
{
    if (level == SG_LEVEL_CHAR) {
        char *text;
        int rc = sg_detokenize(v, level, ids, n, &text);
        if (rc != SG_OK)
            return rc;
        rc = sg_bleu_add_text(s, text, ref);
        free(text);
        return rc;
    }
    if (level != SG_LEVEL_WORD)
        return sg__error(SG_EINVAL, "sg_bleu_add_ids: bad level %d", (int)level);
    sg_tokens th = {0};
    int rc = sg_vocab_decode(v, ids, n, &th);
    return add_against_text(s, rc, &th, ref);
}

double sg_bleu_score(const sg_bleu_stats *s)
{
    if (!s || s->hyp_len == 0)
        return 0.0;
    double log_p = 0.0;
    for (int n = 0; n < 4; n++) {
        if (s->match[n] == 0)
            return 0.0;
        log_p += log((double)s->match[n] / (double)s->total[n]);
    }
    double c = (double)s->hyp_len, r = (double)s->ref_len;
    double bp = c > r ? 1.0 : exp(1.0 - r / c);
    return 100.0 * bp * exp(log_p / 4.0);
}

double sg_exact_match(const char *const *hyps, const char *const *refs, int64_t n)
{
    if (!hyps || !refs || n <= 0)
        return 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += hyps[i] && refs[i] && strcmp(hyps[i], refs[i]) == 0;
    return 100.0 * (double)k / (double)n;
}
