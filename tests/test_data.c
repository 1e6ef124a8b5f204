/* test_data.c - tokenisers, vocabularies, batches, BLEU, generators and the TSV reader
 * (MODELS.md 2, 9, 10.2). Expected values come from the reference seqdata.py through
 * tests/fixtures/data_{tokens,vocab,batches,bleu}.h (tools/gen_fixtures_data.py) or are
 * worked by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixtures/data_batches.h"
#include "fixtures/data_bleu.h"
#include "fixtures/data_tokens.h"
#include "fixtures/data_vocab.h"
#include "sg_data.h"

/* ------------------------------------------------------------ helpers */

static void assert_tokens(const sg_tokens *t, const char *const *want, int64_t n, const char *what)
{
    cr_assert_eq(t->n, n, "%s: %lld tokens, expected %lld", what, (long long)t->n, (long long)n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_str_eq(sg_tokens_at(t, i), want[i], "%s: token %lld", what, (long long)i);
}

static void check_words(const char *text, const char *const *want, int64_t n)
{
    sg_tokens t = {0};
    cr_assert_eq(sg_tokenize_words(text, &t), SG_OK, "%s", sg_last_error());
    assert_tokens(&t, want, n, text);
    sg_tokens_free(&t);
}

static void assert_vocab(const sg_vocab *v, const char *const *want, int64_t n, const char *what)
{
    cr_assert_eq(sg_vocab_size(v), n, "%s: size %lld, expected %lld", what,
                 (long long)sg_vocab_size(v), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        cr_assert_str_eq(sg_vocab_token(v, i), want[i], "%s: id %lld", what, (long long)i);
        cr_assert_eq(sg_vocab_id(v, want[i]), i, "%s: lookup of id %lld", what, (long long)i);
    }
}

static const char *fixture_dir(void)
{
    const char *d = getenv("SG_FIXTURES");
    return d ? d : "tests/fixtures";
}

/* A fresh temporary directory holding one file "f.tsv" with the given bytes. */
static void write_tmp(char *path, size_t n, const char *bytes, size_t len)
{
    char dir[] = "/tmp/sg_data_XXXXXX";
    cr_assert(mkdtemp(dir));
    snprintf(path, n, "%s/f.tsv", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

static void remove_tmp(const char *path)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    unlink(path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

/* sg_tsv_read on bytes must fail with code and a message naming path:line and what. */
static void expect_tsv_error(const char *bytes, size_t len, int code, int line, const char *what)
{
    char path[256], want[300];
    write_tmp(path, sizeof path, bytes, len);
    sg_text_pairs p = {0};
    int rc = sg_tsv_read(path, &p);
    cr_assert_eq(rc, code, "expected %s, got %s (%s)", sg_strerror(code), sg_strerror(rc),
                 sg_last_error());
    cr_assert_eq(p.n, 0);
    snprintf(want, sizeof want, "%s:%d:", path, line);
    cr_assert(strstr(sg_last_error(), want), "message \"%s\" does not name %s", sg_last_error(),
              want);
    cr_assert(strstr(sg_last_error(), what), "message \"%s\" does not say \"%s\"",
              sg_last_error(), what);
    remove_tmp(path);
}

/* ------------------------------------------------------------ tokenisers */

Test(tokenize, models_md_examples)
{
    check_words("Can't open «%s»: file…",
                (const char *[]){"Can", "'", "t", "open", "«", "%", "s", "»", ":", "file", "…"},
                11);
    check_words("l'option --help-all",
                (const char *[]){"l", "'", "option", "-", "-", "help", "-", "all"}, 8);
    check_words("E_FILE_2 ×2", (const char *[]){"E_FILE_2", "×", "2"}, 3);
    sg_tokens t = {0};
    cr_assert_eq(sg_tokenize(SG_LEVEL_CHAR, "9 may", &t), SG_OK);
    assert_tokens(&t, (const char *[]){"9", " ", "m", "a", "y"}, 5, "char 9 may");
    sg_tokens_free(&t);
}

Test(tokenize, tricky_unicode_by_hand)
{
    /* U+200B (Cf) and U+00AD (Cf) are deleted without splitting the word. */
    check_words("zero\u200bwidth soft\u00adhyphen", (const char *[]){"zerowidth", "softhyphen"}, 2);
    /* A combining acute (Mn) stays in its word; NBSP (Zs) separates. */
    check_words("cafe\u0301\u00a0x", (const char *[]){"cafe\u0301", "x"}, 2);
    /* Emoji (So) and the skin-tone modifier (Sk) are one token each; ZWJ is deleted. */
    check_words("ok👍🏽!", (const char *[]){"ok", "👍", "🏽", "!"}, 4);
    check_words("👨\u200d👩", (const char *[]){"👨", "👩"}, 2);
    /* Only spaces / only deleted characters give no token. */
    check_words(" \u2028\u3000 \u200b\x01", NULL, 0);
    /* Char level keeps everything, including U+200B. */
    sg_tokens t = {0};
    cr_assert_eq(sg_tokenize_chars("a\u200b é", &t), SG_OK);
    assert_tokens(&t, (const char *[]){"a", "\u200b", " ", "é"}, 4, "chars");
    sg_tokens_free(&t);
}

Test(tokenize, matches_reference_on_tricky_lines)
{
    int64_t w = 0, c = 0;
    for (int i = 0; i < FX_TRICKY_TEXT_N; i++) {
        sg_tokens t = {0};
        cr_assert_eq(sg_tokenize_words(fx_tricky_text[i], &t), SG_OK, "%s", sg_last_error());
        assert_tokens(&t, fx_word_toks + w, fx_word_counts[i], fx_tricky_text[i]);
        w += fx_word_counts[i];
        sg_tokens_clear(&t);
        cr_assert_eq(sg_tokenize_chars(fx_tricky_text[i], &t), SG_OK);
        assert_tokens(&t, fx_char_toks + c, fx_char_counts[i], fx_tricky_text[i]);
        c += fx_char_counts[i];
        sg_tokens_free(&t);
    }
    cr_assert_eq(w, FX_WORD_TOKS_N);
    cr_assert_eq(c, FX_CHAR_TOKS_N);
}

Test(tokenize, rejects_invalid_utf8_and_keeps_list)
{
    const char *bad[] = {"ab\xff", "\xc3", "x\xc0\x80", "\xed\xa0\x80", "\x80z", "\xf4\x90\x80\x80"};
    sg_tokens t = {0};
    cr_assert_eq(sg_tokenize_words("keep me", &t), SG_OK);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(sg_tokenize_words(bad[i], &t), SG_EFORMAT, "case %zu accepted", i);
        cr_assert(strstr(sg_last_error(), "invalid UTF-8"), "%s", sg_last_error());
        cr_assert_eq(sg_tokenize_chars(bad[i], &t), SG_EFORMAT, "case %zu accepted", i);
        cr_assert_geq(sg_utf8_invalid_at(bad[i]), 0);
    }
    assert_tokens(&t, (const char *[]){"keep", "me"}, 2, "list after errors");
    cr_assert_eq(sg_utf8_invalid_at("ok é 😀"), -1);
    cr_assert_eq(sg_tokenize(SG_LEVEL_COUNT, "x", &t), SG_EINVAL);
    cr_assert_eq(sg_tokenize_words(NULL, &t), SG_EINVAL);
    sg_tokens_free(&t);
}

/* ------------------------------------------------------------ vocabulary */

Test(vocab, orders_by_count_then_bytes_with_caps)
{
    /* counts: b 3, é 2, z 2, a 2, c 1 */
    sg_tokens l[2] = {{0}};
    const char *s0[] = {"b", "é", "a", "c", "b"}, *s1[] = {"z", "b", "a", "é", "z"};
    for (int i = 0; i < 5; i++) {
        sg_tokens_push(&l[0], s0[i], (int64_t)strlen(s0[i]));
        sg_tokens_push(&l[1], s1[i], (int64_t)strlen(s1[i]));
    }
    sg_vocab *v = sg_vocab_build(l, 2, 2, 8000);
    assert_vocab(v, (const char *[]){"<pad>", "<unk>", "<s>", "</s>", "b", "a", "z", "é"}, 8,
                 "min_freq 2");
    cr_assert_eq(sg_vocab_id(v, "c"), SG_UNK);
    cr_assert_eq(sg_vocab_id(v, "nope"), SG_UNK);
    sg_vocab_free(v);
    v = sg_vocab_build(l, 2, 1, 6); /* max_size counts the specials */
    assert_vocab(v, (const char *[]){"<pad>", "<unk>", "<s>", "</s>", "b", "a"}, 6, "cap 6");
    sg_vocab_free(v);
    v = sg_vocab_build(l, 2, 4, 4);
    assert_vocab(v, (const char *[]){"<pad>", "<unk>", "<s>", "</s>"}, 4, "specials only");
    sg_vocab_free(v);
    cr_assert_null(sg_vocab_build(l, 2, 0, 10));
    cr_assert(strstr(sg_last_error(), "min_freq"), "%s", sg_last_error());
    cr_assert_null(sg_vocab_build(l, 2, 1, 3));
    sg_tokens_free(&l[0]);
    sg_tokens_free(&l[1]);
}

Test(vocab, strings_roundtrip_and_validation)
{
    const char *good[] = {"<pad>", "<unk>", "<s>", "</s>", "le", "chat"};
    sg_vocab *v = sg_vocab_from_strings(good, 6);
    cr_assert(v, "%s", sg_last_error());
    sg_vocab *w = sg_vocab_from_strings(sg_vocab_strings(v), sg_vocab_size(v));
    assert_vocab(w, good, 6, "roundtrip");
    cr_assert_null(sg_vocab_token(v, 6));
    cr_assert_eq(sg_vocab_token(v, -1), NULL);
    cr_assert(strstr(sg_last_error(), "id -1"), "%s", sg_last_error());
    sg_vocab_free(v);
    sg_vocab_free(w);

    const char *bad_special[] = {"<pad>", "<s>", "<unk>", "</s>"};
    cr_assert_null(sg_vocab_from_strings(bad_special, 4));
    cr_assert(strstr(sg_last_error(), "entry 1"), "%s", sg_last_error());
    const char *dup[] = {"<pad>", "<unk>", "<s>", "</s>", "a", "b", "a"};
    cr_assert_null(sg_vocab_from_strings(dup, 7));
    cr_assert(strstr(sg_last_error(), "entry 6"), "%s", sg_last_error());
    cr_assert_null(sg_vocab_from_strings(good, 3));
}

Test(vocab, encode_decode_detokenize)
{
    const char *s[] = {"<pad>", "<unk>", "<s>", "</s>", "le", "chat", "!", "é"};
    sg_vocab *v = sg_vocab_from_strings(s, 8);
    sg_tokens t = {0};
    sg_tokenize_words("le chien !", &t);
    int64_t ids[3];
    cr_assert_eq(sg_vocab_encode(v, &t, ids), SG_OK);
    cr_assert(ids[0] == 4 && ids[1] == SG_UNK && ids[2] == 6);
    sg_tokens_free(&t);

    int64_t dec[] = {SG_BOS, 4, SG_UNK, 5, 6, SG_EOS, 4, SG_PAD};
    char *out;
    cr_assert_eq(sg_detokenize(v, SG_LEVEL_WORD, dec, 8, &out), SG_OK);
    cr_assert_str_eq(out, "le <unk> chat !");
    free(out);
    int64_t chars[] = {7, 6, 4, SG_PAD};
    cr_assert_eq(sg_detokenize(v, SG_LEVEL_CHAR, chars, 4, &out), SG_OK);
    cr_assert_str_eq(out, "é!le");
    free(out);
    cr_assert_eq(sg_detokenize(v, SG_LEVEL_WORD, (int64_t[]){SG_EOS}, 1, &out), SG_OK);
    cr_assert_str_eq(out, "");
    free(out);
    cr_assert_eq(sg_detokenize(v, SG_LEVEL_WORD, (int64_t[]){4, 8}, 2, &out), SG_ERANGE);
    cr_assert_null(out);
    cr_assert(strstr(sg_last_error(), "ids[1] = 8"), "%s", sg_last_error());
    sg_vocab_free(v);
}

/* ------------------------------------------------------------ corpus and numericalisation */

Test(corpus, numericalises_by_hand)
{
    const char *s[] = {"<pad>", "<unk>", "<s>", "</s>", "a", "b"};
    sg_vocab *v = sg_vocab_from_strings(s, 6);
    sg_text_pairs p = {0};
    sg_text_pairs_push(&p, "a b x", "b");
    sg_text_pairs_push(&p, "b", "a a b");
    sg_dataset d;
    cr_assert_eq(sg_dataset_build(&d, &p, SG_LEVEL_WORD, v, v), SG_OK);
    int32_t src[] = {4, 5, 1, 3, 5, 3}, tgt[] = {5, 4, 4, 5};
    cr_assert_eq(d.n, 2);
    cr_assert_eq(sg_dataset_src_len(&d, 0), 4);
    cr_assert_eq(sg_dataset_tgt_len(&d, 1), 3);
    cr_assert_arr_eq(d.src_ids, src, sizeof src);
    cr_assert_arr_eq(d.tgt_ids, tgt, sizeof tgt);

    sg_batch b;
    cr_assert_eq(sg_batch_make(&b, &d, (int64_t[]){0, 1}, 2), SG_OK);
    cr_assert(b.B == 2 && b.S == 4 && b.T == 4);
    int64_t bs[] = {4, 5, 1, 3, 5, 3, 0, 0}, bl[] = {4, 2};
    int64_t ti[] = {2, 5, 0, 0, 2, 4, 4, 5}, to[] = {5, 3, 0, 0, 4, 4, 5, 3};
    uint8_t m[] = {1, 1, 1, 1, 1, 1, 0, 0};
    cr_assert_arr_eq(b.src->data, bs, sizeof bs);
    cr_assert_arr_eq(b.src_len->data, bl, sizeof bl);
    cr_assert_arr_eq(b.tgt_in->data, ti, sizeof ti);
    cr_assert_arr_eq(b.tgt_out->data, to, sizeof to);
    cr_assert_arr_eq(b.src_mask->data, m, sizeof m);
    cr_assert_eq(b.src->dtype, SG_I64);
    cr_assert_eq(b.n_tgt_tokens, 6);
    sg_batch_free(&b);
    cr_assert_eq(sg_batch_make(&b, &d, (int64_t[]){0, 2}, 2), SG_ERANGE);
    cr_assert(strstr(sg_last_error(), "idx[1] = 2"), "%s", sg_last_error());
    sg_dataset_free(&d);
    sg_text_pairs_free(&p);
    sg_vocab_free(v);
}

static void load_fixture_corpus(sg_corpus *c, sg_text_level level, int64_t mf, int64_t ms)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/data_corpus", fixture_dir());
    cr_assert_eq(sg_corpus_load_dir(c, dir, level, mf, ms), SG_OK, "%s", sg_last_error());
}

Test(corpus, vocabularies_match_reference)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    assert_vocab(c.src_vocab, fx_vocab_word_src, FX_VOCAB_WORD_SRC_N, "word src");
    assert_vocab(c.tgt_vocab, fx_vocab_word_tgt, FX_VOCAB_WORD_TGT_N, "word tgt");
    sg_corpus_free(&c);
    load_fixture_corpus(&c, SG_LEVEL_WORD, 1, 60);
    assert_vocab(c.src_vocab, fx_vocab_cap_src, FX_VOCAB_CAP_SRC_N, "capped src");
    assert_vocab(c.tgt_vocab, fx_vocab_cap_tgt, FX_VOCAB_CAP_TGT_N, "capped tgt");
    sg_corpus_free(&c);
    load_fixture_corpus(&c, SG_LEVEL_CHAR, 1, 8000);
    assert_vocab(c.src_vocab, fx_vocab_char_src, FX_VOCAB_CHAR_SRC_N, "char src");
    assert_vocab(c.tgt_vocab, fx_vocab_char_tgt, FX_VOCAB_CHAR_TGT_N, "char tgt");
    sg_corpus_free(&c);
}

static void assert_dataset(const sg_dataset *d, const int64_t *so, const int64_t *si,
                           const int64_t *to, const int64_t *ti, const char *what)
{
    for (int64_t i = 0; i <= d->n; i++) {
        cr_assert_eq(d->src_off[i], so[i], "%s: src offset %lld", what, (long long)i);
        cr_assert_eq(d->tgt_off[i], to[i], "%s: tgt offset %lld", what, (long long)i);
    }
    for (int64_t k = 0; k < d->src_off[d->n]; k++)
        cr_assert_eq(d->src_ids[k], si[k], "%s: src id %lld", what, (long long)k);
    for (int64_t k = 0; k < d->tgt_off[d->n]; k++)
        cr_assert_eq(d->tgt_ids[k], ti[k], "%s: tgt id %lld", what, (long long)k);
}

Test(corpus, ids_match_reference)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    assert_dataset(&c.data[SG_SPLIT_TRAIN], fx_train_src_off, fx_train_src_ids, fx_train_tgt_off,
                   fx_train_tgt_ids, "train");
    assert_dataset(&c.data[SG_SPLIT_VALID], fx_valid_src_off, fx_valid_src_ids, fx_valid_tgt_off,
                   fx_valid_tgt_ids, "valid");
    assert_dataset(&c.data[SG_SPLIT_TEST], fx_test_src_off, fx_test_src_ids, fx_test_tgt_off,
                   fx_test_tgt_ids, "test");
    sg_corpus_free(&c);
}

/* Dropping a split's text frees it and leaves its ids (and the other splits) as they
 * were; a NULL corpus or a split out of range is a no-op. */
Test(corpus, drop_text_keeps_the_ids)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    int64_t n_valid = c.raw[SG_SPLIT_VALID].n;
    sg_corpus_drop_text(&c, SG_SPLIT_TRAIN);
    sg_corpus_drop_text(&c, SG_SPLIT_COUNT);
    sg_corpus_drop_text(&c, (sg_data_split)-1);
    sg_corpus_drop_text(NULL, SG_SPLIT_TRAIN);
    cr_assert_eq(c.raw[SG_SPLIT_TRAIN].n, 0);
    cr_assert_null(c.raw[SG_SPLIT_TRAIN].src);
    cr_assert_eq(c.raw[SG_SPLIT_VALID].n, n_valid);
    assert_dataset(&c.data[SG_SPLIT_TRAIN], fx_train_src_off, fx_train_src_ids, fx_train_tgt_off,
                   fx_train_tgt_ids, "train");
    sg_corpus_drop_text(&c, SG_SPLIT_TRAIN); /* twice: still fine */
    sg_corpus_free(&c);
}

Test(corpus, given_vocabularies_are_used)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 1, 60);
    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    for (int s = 0; s < SG_SPLIT_COUNT; s++)
        sg_text_pairs_push(&sp[s], "tie a", "tie z");
    sg_corpus d;
    cr_assert_eq(sg_corpus_from_pairs(&d, sp, SG_LEVEL_WORD, 2, 8000, c.src_vocab, c.tgt_vocab),
                 SG_OK, "%s", sg_last_error());
    cr_assert_eq(sp[0].n, 0, "splits are taken over");
    assert_vocab(d.src_vocab, fx_vocab_cap_src, FX_VOCAB_CAP_SRC_N, "copied src");
    cr_assert_eq(d.data[SG_SPLIT_TEST].n, 1);
    sg_corpus_free(&d);
    sg_corpus_free(&c);
}

/* ------------------------------------------------------------ batches */

Test(batches, length_sorted_and_bench_match_reference)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    const sg_dataset *d = &c.data[SG_SPLIT_TRAIN];
    sg_batches bs;
    cr_assert_eq(sg_batches_length_sorted(&bs, d, 16, false), SG_OK);
    cr_assert_eq(bs.n_batches, FX_SORTED16_NB);
    int64_t pos = 0;
    for (int64_t k = 0; k < bs.n_batches; k++) {
        int64_t n;
        const int64_t *idx = sg_batches_get(&bs, k, &n);
        cr_assert(k + 1 == bs.n_batches || n == 16);
        for (int64_t i = 0; i < n; i++, pos++)
            cr_assert_eq(idx[i], fx_sorted16[pos], "batch %lld item %lld", (long long)k,
                         (long long)i);
    }
    cr_assert_eq(pos, d->n);
    sg_batches_free(&bs);

    cr_assert_eq(sg_batches_length_sorted(&bs, d, 16, true), SG_OK);
    cr_assert_eq(bs.n_batches, d->n / 16);
    sg_batches_free(&bs);

    cr_assert_eq(sg_batches_bench(&bs, d, 16, 5), SG_OK);
    cr_assert_eq(bs.n_batches, 5);
    for (int64_t j = 0; j < 5; j++) {
        int64_t n;
        const int64_t *idx = sg_batches_get(&bs, j, &n);
        cr_assert_eq(n, 16);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(idx[i], fx_bench16_5[j * 16 + i], "bench batch %lld", (long long)j);
    }
    sg_batches_free(&bs);
    cr_assert_eq(sg_batches_bench(&bs, d, 4096, 3), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "no full batch"), "%s", sg_last_error());
    cr_assert_eq(sg_batches_length_sorted(&bs, d, 0, false), SG_EINVAL);

    sg_batch b;
    cr_assert_eq(sg_batch_make(&b, d, (int64_t[]){0, 5, 7}, 3), SG_OK);
    cr_assert(b.S == FX_BATCH_S && b.T == FX_BATCH_T);
    for (int64_t i = 0; i < 3 * b.S; i++)
        cr_assert_eq(((int64_t *)b.src->data)[i], fx_batch_src[i]);
    for (int64_t i = 0; i < 3 * b.T; i++) {
        cr_assert_eq(((int64_t *)b.tgt_in->data)[i], fx_batch_tgt_in[i]);
        cr_assert_eq(((int64_t *)b.tgt_out->data)[i], fx_batch_tgt_out[i]);
    }
    cr_assert_arr_eq(b.src_len->data, fx_batch_src_len, 3 * sizeof(int64_t));
    sg_batch_free(&b);
    sg_corpus_free(&c);
}

Test(batches, shuffle_permutes_batch_order_deterministically)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    sg_batches a, b;
    sg_batches_length_sorted(&a, &c.data[SG_SPLIT_TRAIN], 8, false);
    sg_batches_length_sorted(&b, &c.data[SG_SPLIT_TRAIN], 8, false);
    sg_rng r1, r2;
    sg_rng_seed(&r1, 42);
    sg_rng_seed(&r2, 42);
    sg_batches_shuffle(&a, &r1);
    sg_batches_shuffle(&b, &r2);
    cr_assert_arr_eq(a.order, b.order, (size_t)a.n_batches * sizeof(int64_t));
    int moved = 0;
    char *seen = calloc((size_t)a.n_batches, 1);
    for (int64_t k = 0; k < a.n_batches; k++) {
        cr_assert(!seen[a.order[k]]);
        seen[a.order[k]] = 1;
        moved += a.order[k] != k;
    }
    cr_assert_gt(moved, 0);
    sg_batches_shuffle(&a, &r1); /* the next epoch differs */
    cr_assert(memcmp(a.order, b.order, (size_t)a.n_batches * sizeof(int64_t)) != 0);
    /* The k-th batch in the shuffled order is the order[k]-th length-sorted chunk. */
    int64_t n;
    const int64_t *idx = sg_batches_get(&a, 3, &n);
    cr_assert_eq(idx, a.idx + a.start[a.order[3]]);
    cr_assert_null(sg_batches_get(&a, a.n_batches, &n));
    sg_batch bt;
    cr_assert_eq(sg_batch_make_at(&bt, &c.data[SG_SPLIT_TRAIN], &a, -1), SG_ERANGE);
    free(seen);
    sg_batches_free(&a);
    sg_batches_free(&b);
    sg_corpus_free(&c);
}

/* ------------------------------------------------------------ BLEU */

Test(bleu, matches_reference_on_perturbed_hypotheses)
{
    sg_corpus c;
    load_fixture_corpus(&c, SG_LEVEL_WORD, 2, 8000);
    sg_bleu_stats st = {0};
    for (int64_t i = 0; i < c.raw[SG_SPLIT_TEST].n; i++) {
        int64_t a = fx_bleu_hyp_off[i], b = fx_bleu_hyp_off[i + 1];
        cr_assert_eq(sg_bleu_add_ids(&st, c.tgt_vocab, SG_LEVEL_WORD, fx_bleu_hyp_ids + a, b - a,
                                     c.raw[SG_SPLIT_TEST].tgt[i]),
                     SG_OK, "%s", sg_last_error());
    }
    for (int n = 0; n < 4; n++) {
        cr_assert_eq(st.match[n], fx_bleu_match[n], "m_%d", n + 1);
        cr_assert_eq(st.total[n], fx_bleu_total[n], "t_%d", n + 1);
    }
    cr_assert_eq(st.hyp_len, FX_BLEU_HYP_LEN);
    cr_assert_eq(st.ref_len, FX_BLEU_REF_LEN);
    double got = sg_bleu_score(&st);
    cr_assert(fabs(got - FX_BLEU) <= 1e-12 * FX_BLEU, "BLEU %.15g, reference %.15g", got, FX_BLEU);
    sg_corpus_free(&c);
}

Test(bleu, char_level_and_exact_match)
{
    sg_bleu_stats st = {0};
    for (int i = 0; i < FX_CHR_HYP_N; i++)
        cr_assert_eq(sg_bleu_add_text(&st, fx_chr_hyp[i], fx_chr_ref[i]), SG_OK);
    double got = sg_bleu_score(&st);
    cr_assert(fabs(got - FX_CHR_BLEU) <= 1e-12 * FX_CHR_BLEU, "%.15g vs %.15g", got, FX_CHR_BLEU);
    cr_assert(fabs(sg_exact_match(fx_chr_hyp, fx_chr_ref, FX_CHR_HYP_N) - 40.0) < 1e-12);
    cr_assert_eq(sg_exact_match(fx_chr_hyp, fx_chr_ref, 0), 0.0);

    /* Char-level ids are concatenated then word-tokenised. */
    const char *s[] = {"<pad>", "<unk>", "<s>", "</s>", "2", "0", "-", "1"};
    sg_vocab *v = sg_vocab_from_strings(s, 8);
    int64_t ids[] = {4, 5, 6, 7, SG_EOS, 4};
    sg_bleu_stats s2 = {0};
    cr_assert_eq(sg_bleu_add_ids(&s2, v, SG_LEVEL_CHAR, ids, 6, "20-1"), SG_OK);
    cr_assert(s2.hyp_len == 3 && s2.ref_len == 3 && s2.match[2] == 1);
    sg_vocab_free(v);
}

Test(bleu, hand_computed_values)
{
    sg_bleu_stats st = {0};
    cr_assert_eq(sg_bleu_add_text(&st, "the cat sat on the mat", "the cat sat on the mat"), SG_OK);
    cr_assert(fabs(sg_bleu_score(&st) - 100.0) < 1e-12);
    /* Short hypothesis, all n-grams match: BP = exp(1 - 6/4). */
    sg_bleu_stats b = {0};
    sg_bleu_add_text(&b, "a b c d", "a b c d e f");
    cr_assert(fabs(sg_bleu_score(&b) - 100.0 * exp(-0.5)) < 1e-12, "%.15g", sg_bleu_score(&b));
    /* Clipping: "the the the" vs "the cat": m_1 = 1 of 3; no 4-gram -> BLEU 0. */
    sg_bleu_stats c = {0};
    sg_bleu_add_text(&c, "the the the", "the cat");
    cr_assert(c.match[0] == 1 && c.total[0] == 3 && c.total[3] == 0);
    cr_assert_eq(sg_bleu_score(&c), 0.0);
    /* Long hypothesis, BP = 1: p_n = 5/6, 4/5, 3/4, 2/3. */
    sg_bleu_stats d = {0};
    sg_bleu_add_text(&d, "a b c d e x", "a b c d e");
    double want = 100.0 * exp((log(5.0 / 6) + log(4.0 / 5) + log(3.0 / 4) + log(2.0 / 3)) / 4);
    cr_assert(fabs(sg_bleu_score(&d) - want) < 1e-12, "%.15g vs %.15g", sg_bleu_score(&d), want);
    sg_bleu_stats e = {0};
    sg_bleu_add_text(&e, "", "a b");
    cr_assert_eq(sg_bleu_score(&e), 0.0);
    cr_assert_eq(sg_bleu_add(NULL, NULL, NULL), SG_EINVAL);
}

/* ------------------------------------------------------------ generators */

static int weekday_of(int y, int m, int d) /* monday = 0, Sakamoto's method */
{
    static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    if (m < 3)
        y--;
    int w = (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7; /* sunday = 0 */
    return (w + 6) % 7;
}

Test(tasks, dates_are_deterministic_disjoint_and_varied)
{
    sg_text_pairs a[3], b[3], c[3];
    cr_assert_eq(sg_task_dates(a, 7, 2000, 200, 200), SG_OK);
    cr_assert_eq(sg_task_dates(b, 7, 2000, 200, 200), SG_OK);
    cr_assert_eq(sg_task_dates(c, 8, 2000, 200, 200), SG_OK);
    cr_assert(a[0].n == 2000 && a[1].n == 200 && a[2].n == 200);
    int differ = 0;
    for (int64_t i = 0; i < a[0].n; i++) {
        cr_assert_str_eq(a[0].src[i], b[0].src[i]);
        cr_assert_str_eq(a[0].tgt[i], b[0].tgt[i]);
        differ += strcmp(a[0].src[i], c[0].src[i]) != 0;
    }
    cr_assert_gt(differ, 1900);
    static const char *days[] = {"monday", "tuesday", "wednesday", "thursday",
                                 "friday", "saturday", "sunday"};
    int n_the = 0, n_yy = 0, n_comma = 0, n_dot = 0, n_iso = 0, n_day = 0;
    sg_bleu_stats dummy = {0};
    for (int s = 0; s < 3; s++)
        for (int64_t i = 0; i < a[s].n; i++) {
            const char *src = a[s].src[i], *tgt = a[s].tgt[i];
            int y, m, d;
            cr_assert_eq(sscanf(tgt, "%4d-%2d-%2d", &y, &m, &d), 3, "%s", tgt);
            cr_assert(strlen(tgt) == 10 && y >= 1950 && y <= 2049 && m >= 1 && m <= 12 && d >= 1 &&
                      d <= 31);
            n_the += strncmp(src, "the ", 4) == 0;
            n_yy += strlen(src) == 8 && src[2] == '/';
            n_comma += strchr(src, ',') != NULL;
            n_dot += strchr(src, '.') != NULL;
            n_iso += strlen(src) == 10 && src[4] == '/';
            if (strlen(src) == 8 && src[2] == '/') { /* dd/mm/yy */
                int dd, mm, yy;
                sscanf(src, "%2d/%2d/%2d", &dd, &mm, &yy);
                cr_assert(dd == d && mm == m && yy == y % 100, "%s -> %s", src, tgt);
            }
            for (int k = 0; k < 7; k++)
                if (strncmp(src, days[k], strlen(days[k])) == 0) { /* full weekday first */
                    cr_assert_eq(k, weekday_of(y, m, d), "%s -> %s", src, tgt);
                    n_day++;
                }
            /* Every pair also goes through the tokenisers. */
            sg_bleu_add_text(&dummy, src, tgt);
            for (int t = 0; t < s; t++) /* splits never share a source (spot check) */
                if (i < 50)
                    for (int64_t j = 0; j < a[t].n; j++)
                        cr_assert_str_neq(src, a[t].src[j]);
        }
    cr_assert(n_the && n_yy && n_comma && n_dot && n_iso && n_day);
    for (int s = 0; s < 3; s++) {
        sg_text_pairs_free(&a[s]);
        sg_text_pairs_free(&b[s]);
        sg_text_pairs_free(&c[s]);
    }
    cr_assert_eq(sg_task_dates(a, 1, -1, 0, 0), SG_EINVAL);
}

Test(tasks, sequences_reverse_copy_sort)
{
    sg_text_pairs sp[3];
    cr_assert_eq(sg_task_sequences(sp, SG_SEQ_REVERSE, 3, 300, 30, 30, 4, 9, 10), SG_OK,
                 "%s", sg_last_error());
    for (int s = 0; s < 3; s++)
        for (int64_t i = 0; i < sp[s].n; i++) {
            const char *x = sp[s].src[i], *y = sp[s].tgt[i];
            size_t n = strlen(x);
            cr_assert(n >= 7 && n <= 17 && n % 2 == 1, "%s", x);
            for (size_t k = 0; k < n; k++)
                cr_assert_eq(x[k], y[n - 1 - k], "%s -> %s", x, y);
            for (size_t k = 0; k < n; k += 2)
                cr_assert(x[k] >= 'a' && x[k] < 'a' + 10);
        }
    for (int s = 0; s < 3; s++)
        sg_text_pairs_free(&sp[s]);
    cr_assert_eq(sg_task_sequences(sp, SG_SEQ_SORT, 3, 50, 5, 5, 3, 5, 62), SG_OK);
    for (int64_t i = 0; i < sp[0].n; i++)
        for (size_t k = 2; k < strlen(sp[0].tgt[i]); k += 2)
            cr_assert_leq(sp[0].tgt[i][k - 2], sp[0].tgt[i][k]);
    for (int s = 0; s < 3; s++)
        sg_text_pairs_free(&sp[s]);
    cr_assert_eq(sg_task_sequences(sp, SG_SEQ_COPY, 3, 5, 1, 1, 2, 2, 4), SG_OK);
    cr_assert_str_eq(sp[0].src[0], sp[0].tgt[0]);
    for (int s = 0; s < 3; s++)
        sg_text_pairs_free(&sp[s]);
    /* 2 symbols, length 2: 4 sources exist, at most 2 may be requested. */
    cr_assert_eq(sg_task_sequences(sp, SG_SEQ_COPY, 3, 3, 0, 0, 2, 2, 2), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "distinct"), "%s", sg_last_error());
    cr_assert_eq(sg_task_sequences(sp, SG_SEQ_COPY, 3, 3, 0, 0, 2, 2, 63), SG_EINVAL);
}

Test(tasks, generated_corpus_builds)
{
    sg_text_pairs sp[3];
    cr_assert_eq(sg_task_dates(sp, 1, 500, 50, 50), SG_OK);
    sg_corpus c;
    cr_assert_eq(sg_corpus_from_pairs(&c, sp, SG_LEVEL_CHAR, 1, 8000, NULL, NULL), SG_OK);
    /* Targets use only digits and '-': 4 specials + 11 characters. */
    cr_assert_eq(sg_vocab_size(c.tgt_vocab), 15);
    cr_assert_eq(c.data[SG_SPLIT_TEST].n, 50);
    sg_corpus_free(&c);
}

/* ------------------------------------------------------------ TSV reader */

Test(tsv, reads_lf_crlf_blank_lines_and_no_final_newline)
{
    const char text[] = "a b\tc\r\n\nd\te é\n\r\nf\tg";
    char path[256];
    write_tmp(path, sizeof path, text, sizeof text - 1);
    sg_text_pairs p;
    cr_assert_eq(sg_tsv_read(path, &p), SG_OK, "%s", sg_last_error());
    cr_assert_eq(p.n, 3);
    cr_assert_str_eq(p.src[0], "a b");
    cr_assert_str_eq(p.tgt[0], "c");
    cr_assert_str_eq(p.tgt[1], "e é");
    cr_assert_str_eq(p.src[2], "f");
    cr_assert_str_eq(p.tgt[2], "g");
    sg_text_pairs_free(&p);
    remove_tmp(path);
}

Test(tsv, errors_name_file_and_line)
{
    expect_tsv_error("a\tb\nno tab here\n", 16, SG_EFORMAT, 2, "no TAB");
    expect_tsv_error("a\tb\n\nc\td\xff\n", 11, SG_EFORMAT, 3, "invalid UTF-8");
    expect_tsv_error("a\tb\n\tb\n", 7, SG_EFORMAT, 2, "empty source");
    expect_tsv_error("a\tb\nc\td\ne\t\r\n", 13, SG_EFORMAT, 3, "empty target");
    expect_tsv_error("a\tb\tc\n", 6, SG_EFORMAT, 1, "more than one TAB");
    expect_tsv_error("a\tb\0c\n", 6, SG_EFORMAT, 1, "NUL byte");
    expect_tsv_error("", 0, SG_EFORMAT, 1, "empty file");
    expect_tsv_error("\n\n", 2, SG_EFORMAT, 2, "empty file");

    sg_text_pairs p;
    cr_assert_eq(sg_tsv_read("/nonexistent/dir/x.tsv", &p), SG_EIO);
    cr_assert(strstr(sg_last_error(), "/nonexistent/dir/x.tsv"), "%s", sg_last_error());
    cr_assert(strstr(sg_last_error(), "cannot open"), "%s", sg_last_error());
    cr_assert_eq(p.n, 0);
    sg_corpus c;
    cr_assert_eq(sg_corpus_load_dir(&c, "/nonexistent/dir", SG_LEVEL_WORD, 2, 8000), SG_EIO);
    cr_assert(strstr(sg_last_error(), "/nonexistent/dir/train.tsv"), "%s", sg_last_error());
}

Test(lifecycle, free_functions_accept_zeroed_and_null)
{
    sg_tokens t = {0};
    sg_text_pairs p = {0};
    sg_dataset d = {0};
    sg_batches b = {0};
    sg_batch bt = {0};
    sg_corpus c = {0};
    sg_tokens_free(&t);
    sg_tokens_free(NULL);
    sg_text_pairs_free(&p);
    sg_dataset_free(&d);
    sg_batches_free(&b);
    sg_batch_free(&bt);
    sg_corpus_free(&c);
    sg_corpus_free(NULL);
    sg_vocab_free(NULL);
    cr_assert_eq(sg_tokens_push(&t, NULL, 3), SG_EINVAL);
    cr_assert_eq(sg_tokens_push(&t, "", 0), SG_OK);
    cr_assert_str_eq(sg_tokens_at(&t, 0), "");
    sg_tokens_free(&t);
    cr_assert_eq(sg_text_pairs_push(&p, "a", NULL), SG_EINVAL);
    cr_assert_eq(sg_dataset_build(&d, &p, SG_LEVEL_WORD, NULL, NULL), SG_EINVAL);
    cr_assert_str_eq(sg_text_level_name(SG_LEVEL_CHAR), "char");
    cr_assert_str_eq(sg_split_name(SG_SPLIT_VALID), "valid");
}

Test(corpus, invalid_utf8_in_pairs_names_the_pair)
{
    const char *s[] = {"<pad>", "<unk>", "<s>", "</s>"};
    sg_vocab *v = sg_vocab_from_strings(s, 4);
    sg_text_pairs p = {0};
    sg_text_pairs_push(&p, "ok", "ok");
    sg_text_pairs_push(&p, "bad \xfe", "ok");
    sg_dataset d;
    cr_assert_eq(sg_dataset_build(&d, &p, SG_LEVEL_CHAR, v, v), SG_EFORMAT);
    cr_assert(strstr(sg_last_error(), "pair 1"), "%s", sg_last_error());
    cr_assert_eq(d.n, 0);
    sg_text_pairs_free(&p);
    sg_vocab_free(v);
}
