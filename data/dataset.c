/* dataset.c - numericalised datasets (MODELS.md 2.5) and corpora of three splits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

void sg_dataset_free(sg_dataset *d)
{
    if (!d)
        return;
    free(d->src_off);
    free(d->src_ids);
    free(d->tgt_off);
    free(d->tgt_ids);
    memset(d, 0, sizeof *d);
}

/* Appends the ids of text (plus </s> when eos) to ids[*n..], offsets in off. */
static int encode_side(const sg_vocab *v, sg_text_level level, const char *text, int eos,
                       sg_tokens *tmp, int32_t **ids, int64_t *n, int64_t *cap)
{
    sg_tokens_clear(tmp);
    int rc = sg_tokenize(level, text, tmp);
    if (rc != SG_OK)
        return rc;
    if (!sg__grow((void **)ids, cap, *n + tmp->n + 1, sizeof **ids))
        return sg__error(SG_ENOMEM, "sg_dataset_build: out of memory");
    for (int64_t k = 0; k < tmp->n; k++) /* below the vocabulary's size: fits (checked) */
        (*ids)[(*n)++] = (int32_t)sg_vocab_id(v, sg_tokens_at(tmp, k));
    if (eos)
        (*ids)[(*n)++] = SG_EOS;
    return SG_OK;
}

int sg_dataset_build(sg_dataset *out, const sg_text_pairs *pairs, sg_text_level level,
                     const sg_vocab *src_vocab, const sg_vocab *tgt_vocab)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_dataset_build: NULL output");
    memset(out, 0, sizeof *out);
    if (!pairs || !src_vocab || !tgt_vocab || (level != SG_LEVEL_WORD && level != SG_LEVEL_CHAR))
        return sg__error(SG_EINVAL, "sg_dataset_build: NULL pairs/vocabulary or bad level %d",
                         (int)level);
    if (sg_vocab_size(src_vocab) > INT32_MAX || sg_vocab_size(tgt_vocab) > INT32_MAX)
        return sg__error(SG_EINVAL, "sg_dataset_build: a vocabulary of more than 2^31 - 1 "
                                    "tokens does not fit the 32-bit ids");
    sg_dataset d = {0};
    sg_tokens tmp = {0};
    int64_t ns = 0, nt = 0, cs = 0, ct = 0;
    int rc = SG_OK;
    d.n = pairs->n;
    d.src_off = malloc((size_t)(d.n + 1) * sizeof *d.src_off);
    d.tgt_off = malloc((size_t)(d.n + 1) * sizeof *d.tgt_off);
    if (!d.src_off || !d.tgt_off) {
        rc = sg__error(SG_ENOMEM, "sg_dataset_build: out of memory for %lld pairs", (long long)d.n);
        goto done;
    }
    d.src_off[0] = d.tgt_off[0] = 0;
    for (int64_t i = 0; i < d.n && rc == SG_OK; i++) {
        rc = encode_side(src_vocab, level, pairs->src[i], 1, &tmp, &d.src_ids, &ns, &cs);
        if (rc == SG_OK)
            rc = encode_side(tgt_vocab, level, pairs->tgt[i], 0, &tmp, &d.tgt_ids, &nt, &ct);
        if (rc != SG_OK) {
            char msg[200];
            snprintf(msg, sizeof msg, "%s", sg_last_error());
            rc = sg__error(rc, "sg_dataset_build: pair %lld: %s", (long long)i, msg);
        }
        d.src_off[i + 1] = ns;
        d.tgt_off[i + 1] = nt;
    }
done:
    sg_tokens_free(&tmp);
    if (rc != SG_OK) {
        sg_dataset_free(&d);
        return rc;
    }
    *out = d;
    return SG_OK;
}

void sg_corpus_free(sg_corpus *c)
{
    if (!c)
        return;
    for (int s = 0; s < SG_SPLIT_COUNT; s++) {
        sg_text_pairs_free(&c->raw[s]);
        sg_dataset_free(&c->data[s]);
    }
    sg_vocab_free(c->src_vocab);
    sg_vocab_free(c->tgt_vocab);
    memset(c, 0, sizeof *c);
}

void sg_corpus_drop_text(sg_corpus *c, sg_data_split s)
{
    if (c && (int)s >= 0 && s < SG_SPLIT_COUNT)
        sg_text_pairs_free(&c->raw[s]);
}

/* Builds the vocabulary of one side of the training split into *out, counting one
 * sentence at a time (a token list per sentence would cost ~20 MB on a 40k-pair corpus). */
static int build_side(const sg_text_pairs *train, int tgt, sg_text_level level,
                      int64_t min_freq, int64_t max_size, sg_vocab **out)
{
    if (min_freq < 1 || max_size < SG_N_SPECIALS)
        return sg__error(SG_EINVAL, "sg_corpus: min_freq %lld must be >= 1 and max_size %lld "
                                    ">= 4", (long long)min_freq, (long long)max_size);
    sg__strmap counts = {0};
    sg_tokens tmp = {0};
    int rc = SG_OK;
    for (int64_t i = 0; i < train->n && rc == SG_OK; i++) {
        sg_tokens_clear(&tmp);
        rc = sg_tokenize(level, tgt ? train->tgt[i] : train->src[i], &tmp);
        if (rc == SG_OK)
            rc = sg__vocab_count(&counts, &tmp);
    }
    if (rc == SG_OK) {
        *out = sg__vocab_from_counts(&counts, min_freq, max_size);
        if (!*out)
            rc = SG_ENOMEM;
    }
    sg_tokens_free(&tmp);
    sg__strmap_free(&counts);
    return rc;
}

/* A copy of a given vocabulary into *out. */
static int copy_vocab(const sg_vocab *v, sg_vocab **out)
{
    *out = sg_vocab_clone(v);
    return *out ? SG_OK : SG_ENOMEM;
}

int sg_corpus_from_pairs(sg_corpus *c, sg_text_pairs splits[SG_SPLIT_COUNT],
                         sg_text_level level, int64_t min_freq, int64_t max_size,
                         const sg_vocab *src_vocab, const sg_vocab *tgt_vocab)
{
    if (!c || !splits) {
        if (splits)
            for (int s = 0; s < SG_SPLIT_COUNT; s++)
                sg_text_pairs_free(&splits[s]);
        return sg__error(SG_EINVAL, "sg_corpus_from_pairs: NULL corpus or splits");
    }
    memset(c, 0, sizeof *c);
    c->level = level;
    c->min_freq = min_freq;
    c->max_size = max_size;
    for (int s = 0; s < SG_SPLIT_COUNT; s++) {
        c->raw[s] = splits[s];
        memset(&splits[s], 0, sizeof splits[s]);
    }
    int rc = SG_OK;
    if (level != SG_LEVEL_WORD && level != SG_LEVEL_CHAR) {
        rc = sg__error(SG_EINVAL, "sg_corpus_from_pairs: bad level %d", (int)level);
        goto fail;
    }
    const sg_text_pairs *train = &c->raw[SG_SPLIT_TRAIN];
    rc = src_vocab ? copy_vocab(src_vocab, &c->src_vocab)
                   : build_side(train, 0, level, min_freq, max_size, &c->src_vocab);
    if (rc == SG_OK)
        rc = tgt_vocab ? copy_vocab(tgt_vocab, &c->tgt_vocab)
                       : build_side(train, 1, level, min_freq, max_size, &c->tgt_vocab);
    for (int s = 0; s < SG_SPLIT_COUNT && rc == SG_OK; s++)
        rc = sg_dataset_build(&c->data[s], &c->raw[s], level, c->src_vocab, c->tgt_vocab);
    if (rc == SG_OK)
        return SG_OK;
fail:
    sg_corpus_free(c);
    return rc;
}

int sg_corpus_load_dir(sg_corpus *c, const char *dir, sg_text_level level, int64_t min_freq,
                       int64_t max_size)
{
    if (!c || !dir)
        return sg__error(SG_EINVAL, "sg_corpus_load_dir: NULL corpus or directory");
    memset(c, 0, sizeof *c);
    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    for (int s = 0; s < SG_SPLIT_COUNT; s++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s.tsv", dir, sg_split_name((sg_data_split)s)) >=
            (int)sizeof path) {
            for (int k = 0; k < s; k++)
                sg_text_pairs_free(&sp[k]);
            return sg__error(SG_EINVAL, "sg_corpus_load_dir: directory name too long");
        }
        int rc = sg_tsv_read(path, &sp[s]);
        if (rc != SG_OK) {
            for (int k = 0; k < s; k++)
                sg_text_pairs_free(&sp[k]);
            return rc;
        }
    }
    return sg_corpus_from_pairs(c, sp, level, min_freq, max_size, NULL, NULL);
}
