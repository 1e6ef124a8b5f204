/*
 * sg_data.h - text data for seq2seq tasks (MODELS.md sections 2, 9 and 10.2).
 *
 * Pipeline: TSV file (or a built-in generator) -> raw text pairs -> tokens
 * (word or char level) -> vocabularies built from the training split -> a dataset
 * of numericalised pairs -> length-sorted batches -> padded SG_I64 tensors.
 * Evaluation: detokenise decoded ids, corpus BLEU-4 and exact match.
 *
 *     sg_corpus c;
 *     if (sg_corpus_load_dir(&c, "data/dates", SG_LEVEL_CHAR, 1, 8000) != SG_OK)
 *         fprintf(stderr, "%s\n", sg_last_error());   // e.g. "train.tsv:12: no TAB ..."
 *     sg_batches bs;
 *     sg_batches_length_sorted(&bs, &c.data[SG_SPLIT_TRAIN], 64, false);
 *     sg_rng rng; sg_rng_seed(&rng, 1);
 *     sg_batches_shuffle(&bs, &rng);                  // new batch order every epoch
 *     for (int64_t k = 0; k < bs.n_batches; k++) {
 *         sg_batch b;
 *         sg_batch_make_at(&b, &c.data[SG_SPLIT_TRAIN], &bs, k);
 *         ... b.src [B,S], b.src_len [B], b.tgt_in [B,T], b.tgt_out [B,T] ...
 *         sg_batch_free(&b);
 *     }
 *     sg_batches_free(&bs);
 *     sg_corpus_free(&c);
 *
 * Conventions: all text is UTF-8, NUL-terminated. Structs declared here are
 * caller-allocated value types; zero-initialise them (or let the *_build/_read
 * functions fill them) and release them with the matching *_free, which accepts
 * zeroed or already-freed structs. On failure a function leaves its output
 * zeroed (nothing to free) and records a message (sg_last_error()).
 */
#ifndef SG_DATA_H
#define SG_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_error.h"
#include "sg_rng.h"
#include "sg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Special token ids (MODELS.md 2.3); the strings are "<pad>", "<unk>", "<s>", "</s>". */
enum { SG_PAD = 0, SG_UNK = 1, SG_BOS = 2, SG_EOS = 3, SG_N_SPECIALS = 4 };

typedef enum sg_text_level {
    SG_LEVEL_WORD = 0, /* MODELS.md 2.1: words by Unicode category, punctuation split */
    SG_LEVEL_CHAR,     /* MODELS.md 2.2: one token per code point, spaces included */
    SG_LEVEL_COUNT
} sg_text_level;

typedef enum sg_data_split { SG_SPLIT_TRAIN = 0, SG_SPLIT_VALID, SG_SPLIT_TEST, SG_SPLIT_COUNT } sg_data_split;

/* "word" / "char"; "?" for an invalid level. */
SG_API const char *sg_text_level_name(sg_text_level level);
/* "train" / "valid" / "test"; "?" otherwise. */
SG_API const char *sg_split_name(sg_data_split s);

/* ---------------------------------------------------------------- tokens */

/* A growable list of token strings packed in one buffer:
 * token i is the NUL-terminated string buf + off[i] (see sg_tokens_at). */
typedef struct sg_tokens {
    int64_t n;       /* number of tokens */
    int64_t *off;    /* [n] byte offsets into buf */
    char *buf;
    int64_t cap, buf_len, buf_cap;
} sg_tokens;

static inline const char *sg_tokens_at(const sg_tokens *t, int64_t i)
{
    return t->buf + t->off[i];
}
/* Appends the len bytes at s as one token. SG_ENOMEM. */
SG_API int sg_tokens_push(sg_tokens *t, const char *s, int64_t len);
/* Forgets the tokens, keeps the memory. */
SG_API void sg_tokens_clear(sg_tokens *t);
/* Releases the memory and zeroes *t (the struct itself is the caller's). NULL ok. */
SG_API void sg_tokens_free(sg_tokens *t);

/* Appends the word tokens of text (MODELS.md 2.1) to out: maximal runs of word
 * code points (L*, M*, N*, Pc) are tokens, every other non-space code point
 * (P* but Pc, S*, Co, Cn) is a one-code-point token, spaces (Z*, U+0009..000D,
 * U+001C..001F, U+0085) separate, Cc/Cf code points are deleted without splitting
 * ("a\u200Bb" -> "ab"). No normalisation, case kept.
 * SG_EFORMAT for invalid UTF-8 (out unchanged), SG_EINVAL for NULL, SG_ENOMEM. */
SG_API int sg_tokenize_words(const char *text, sg_tokens *out);
/* Appends one token per code point (spaces included, nothing deleted). SG_EFORMAT
 * for invalid UTF-8, SG_EINVAL, SG_ENOMEM. */
SG_API int sg_tokenize_chars(const char *text, sg_tokens *out);
/* Dispatches on level. */
SG_API int sg_tokenize(sg_text_level level, const char *text, sg_tokens *out);
/* Byte offset of the first invalid UTF-8 sequence in text, or -1 if text is valid. */
SG_API int64_t sg_utf8_invalid_at(const char *text);

/* ---------------------------------------------------------------- vocabulary */

/* id <-> token string; ids 0..3 are the specials. Lookups use a hash table.
 * Opaque; create with sg_vocab_build or sg_vocab_from_strings, free with
 * sg_vocab_free. */
typedef struct sg_vocab sg_vocab;

/* MODELS.md 2.4: counts the tokens of lists[0..n_lists-1], keeps those with count
 * >= min_freq, orders them by count descending then strcmp ascending, and returns
 * the 4 specials followed by the first max_size - 4 of them. Special strings found
 * in the lists are counted like any token but not repeated (they keep ids 0..3).
 * SG_EINVAL for NULL lists with n_lists > 0, min_freq < 1 or max_size < 4;
 * SG_ENOMEM. Caller frees. */
SG_API sg_vocab *sg_vocab_build(const sg_tokens *lists, int64_t n_lists, int64_t min_freq,
                                int64_t max_size);
/* A vocabulary from its id-ordered strings (checkpoint /vocab). strings[0..3] must be
 * the specials in order and no string may repeat: SG_EFORMAT naming the index
 * otherwise; SG_EINVAL for NULL or n < 4; SG_ENOMEM. Strings are copied. */
SG_API sg_vocab *sg_vocab_from_strings(const char *const *strings, int64_t n);
SG_API sg_vocab *sg_vocab_clone(const sg_vocab *v);
SG_API void sg_vocab_free(sg_vocab *v);
SG_API int64_t sg_vocab_size(const sg_vocab *v);
/* The id-ordered strings (owned by v, valid until sg_vocab_free): for saving. */
SG_API const char *const *sg_vocab_strings(const sg_vocab *v);
/* Token string of id; NULL with SG_ERANGE if id is outside [0, size). */
SG_API const char *sg_vocab_token(const sg_vocab *v, int64_t id);
/* Id of a token string; SG_UNK when absent. */
SG_API int64_t sg_vocab_id(const sg_vocab *v, const char *token);
/* ids[i] = id of token i of toks (toks->n entries). SG_EINVAL for NULL. */
SG_API int sg_vocab_encode(const sg_vocab *v, const sg_tokens *toks, int64_t *ids);
/* Appends the strings of decoded ids to out, stopping at the first </s> (excluded)
 * and skipping <pad> and <s>; <unk> stays as the literal "<unk>" (MODELS.md 9).
 * SG_ERANGE naming the position for an id outside the vocabulary, SG_EINVAL, SG_ENOMEM. */
SG_API int sg_vocab_decode(const sg_vocab *v, const int64_t *ids, int64_t n, sg_tokens *out);
/* Detokenisation of decoded ids (same rules as sg_vocab_decode): word level joins
 * the token strings with single spaces, char level concatenates them. Returns a
 * malloc'ed string in *out (caller frees). SG_ERANGE, SG_EINVAL, SG_ENOMEM. */
SG_API int sg_detokenize(const sg_vocab *v, sg_text_level level, const int64_t *ids,
                         int64_t n, char **out);

/* ---------------------------------------------------------------- raw pairs */

/* source/target sentence pairs; strings are owned (malloc'ed) by the list. */
typedef struct sg_text_pairs {
    int64_t n, cap;
    char **src;
    char **tgt;
} sg_text_pairs;

/* Appends copies of src and tgt. SG_EINVAL for NULL, SG_ENOMEM. */
SG_API int sg_text_pairs_push(sg_text_pairs *p, const char *src, const char *tgt);
SG_API void sg_text_pairs_free(sg_text_pairs *p);

/* Reads a source<TAB>target file into *out (which is overwritten, not freed: pass a
 * zeroed or freed struct). One pair per line, UTF-8, no header. Line ends: "\n",
 * with a trailing "\r" also stripped (CRLF files read like LF files); a lone "\r"
 * inside a line is kept as a character (Python's universal newlines would split
 * there; no corpus has one). Blank lines are skipped (as the reference reader does)
 * but counted in line numbers; the last line needs no newline. Unlike the reference
 * reader, an empty side is an error. Sides are not normalised (MODELS.md 2).
 * Errors, each naming "path:line": SG_EIO file cannot be opened or read;
 * SG_EFORMAT empty file (no pairs), invalid UTF-8 (with the byte column), no TAB,
 * more than one TAB, empty source or empty target, a NUL byte; SG_ENOMEM. */
SG_API int sg_tsv_read(const char *path, sg_text_pairs *out);

/* ---------------------------------------------------------------- dataset */

/* Numericalised pairs (MODELS.md 2.5): example i has source ids
 * src_ids[src_off[i] .. src_off[i+1]) (tokens then </s>, so n_b = m + 1) and target
 * ids tgt_ids[tgt_off[i] .. tgt_off[i+1]) (tokens only; <s>/</s> are added by
 * sg_batch_make, which widens them to the SG_I64 tensors the models read). Ids are 32
 * bits: a corpus is held for a whole training run (en-fr: ~1M ids, 4 MB less). */
typedef struct sg_dataset {
    int64_t n;
    int64_t *src_off; /* [n+1] */
    int32_t *src_ids;
    int64_t *tgt_off; /* [n+1] */
    int32_t *tgt_ids;
} sg_dataset;

static inline int64_t sg_dataset_src_len(const sg_dataset *d, int64_t i)
{
    return d->src_off[i + 1] - d->src_off[i];
}
static inline int64_t sg_dataset_tgt_len(const sg_dataset *d, int64_t i)
{
    return d->tgt_off[i + 1] - d->tgt_off[i];
}

/* Tokenises (level) and numericalises every pair. SG_EINVAL for NULL arguments or
 * a bad level; SG_EFORMAT for invalid UTF-8 (naming the pair index); SG_ENOMEM. */
SG_API int sg_dataset_build(sg_dataset *out, const sg_text_pairs *pairs, sg_text_level level,
                            const sg_vocab *src_vocab, const sg_vocab *tgt_vocab);
SG_API void sg_dataset_free(sg_dataset *d);

/* ---------------------------------------------------------------- corpus */

/* The three splits of one task with vocabularies built from the training split. */
typedef struct sg_corpus {
    sg_text_level level;
    sg_text_pairs raw[SG_SPLIT_COUNT];
    sg_vocab *src_vocab, *tgt_vocab;
    sg_dataset data[SG_SPLIT_COUNT];
    int64_t min_freq, max_size;
} sg_corpus;

/* Reads dir/train.tsv, dir/valid.tsv and dir/test.tsv and builds the vocabularies
 * (min_freq, max_size: MODELS.md 2.4; defaults word 2/8000, char 1/8000) and the
 * datasets. Errors of sg_tsv_read and sg_vocab_build; *c zeroed on failure. */
SG_API int sg_corpus_load_dir(sg_corpus *c, const char *dir, sg_text_level level,
                              int64_t min_freq, int64_t max_size);
/* Builds a corpus from three raw splits, which it takes over (their structs are
 * zeroed, also on failure, when they are freed). src_vocab/tgt_vocab: NULL to build
 * from the training split, else copied (e.g. vocabularies read from a checkpoint). */
SG_API int sg_corpus_from_pairs(sg_corpus *c, sg_text_pairs splits[SG_SPLIT_COUNT],
                                sg_text_level level, int64_t min_freq, int64_t max_size,
                                const sg_vocab *src_vocab, const sg_vocab *tgt_vocab);
SG_API void sg_corpus_free(sg_corpus *c);
/* Frees the text of split s (c->raw[s] becomes empty; its ids in c->data[s] stay): for a
 * program that reads only a split's ids, as training does with the training split (~6 MB
 * on en-fr). No-op for NULL or a split outside [0, SG_SPLIT_COUNT). */
SG_API void sg_corpus_drop_text(sg_corpus *c, sg_data_split s);

/* ---------------------------------------------------------------- batches */

/* A list of batches of example indices. Batch k (k-th in the current order) holds
 * idx[start[order[k]] .. start[order[k]+1]). */
typedef struct sg_batches {
    int64_t n_batches;
    int64_t *start; /* [n_batches+1] */
    int64_t *idx;   /* example indices, length-sorted */
    int64_t *order; /* [n_batches] batch order, identity until shuffled */
} sg_batches;

/* MODELS.md 10.2: indices sorted by (src length with </s>, tgt length, index),
 * cut into consecutive chunks of batch_size; drop_last drops a short last chunk.
 * SG_EINVAL for NULL or batch_size < 1, SG_ENOMEM. Zero batches is not an error. */
SG_API int sg_batches_length_sorted(sg_batches *out, const sg_dataset *d, int64_t batch_size,
                                    bool drop_last);
/* bench(n) of MODELS.md 10.2: with nb full length-sorted batches, batch
 * floor(j*nb/n) for j = 0..n-1 (in that order). SG_EINVAL for n < 1 or when there
 * are no full batches, SG_ENOMEM. */
SG_API int sg_batches_bench(sg_batches *out, const sg_dataset *d, int64_t batch_size, int64_t n);
/* Shuffles the batch order in place (Fisher-Yates with sg_rng_below). The batches
 * themselves stay the same. SG_EINVAL for NULL. */
SG_API int sg_batches_shuffle(sg_batches *b, sg_rng *rng);
/* The example indices of the k-th batch in the current order (count in *count);
 * NULL with SG_ERANGE for k out of range. */
SG_API const int64_t *sg_batches_get(const sg_batches *b, int64_t k, int64_t *count);
SG_API void sg_batches_free(sg_batches *b);

/* One padded batch (MODELS.md 2.5). All tensors are contiguous SG_I64 (src_mask
 * SG_BOOL) heap tensors owned by the batch (freed by sg_batch_free), so they can be
 * reused across graph resets.
 *   src      [B, S]  source ids with </s>, right-padded with 0, S = max n_b
 *   src_len  [B]     n_b (tokens + 1)
 *   src_mask [B, S]  1 where src is a real token (s < n_b), 0 on padding
 *   tgt_in   [B, T]  <s> y_0 .. y_{k-1}, padded with 0, T = max (k+1)
 *   tgt_out  [B, T]  y_0 .. y_{k-1} </s>, padded with 0 */
typedef struct sg_batch {
    int64_t B, S, T;
    sg_tensor *src, *src_len, *src_mask, *tgt_in, *tgt_out;
    int64_t n_tgt_tokens; /* non-pad tgt_out entries (</s> included) */
} sg_batch;

/* Builds the batch of examples idx[0..B-1] of d. SG_EINVAL for NULL, B < 1,
 * SG_ERANGE for an index outside the dataset, SG_ENOMEM. */
SG_API int sg_batch_make(sg_batch *out, const sg_dataset *d, const int64_t *idx, int64_t B);
/* sg_batch_make on the k-th batch of bs in its current order. */
SG_API int sg_batch_make_at(sg_batch *out, const sg_dataset *d, const sg_batches *bs, int64_t k);
SG_API void sg_batch_free(sg_batch *b);

/* ---------------------------------------------------------------- BLEU */

/* Sufficient statistics of corpus BLEU-4 (MODELS.md 9), summed over sentences. */
typedef struct sg_bleu_stats {
    int64_t match[4]; /* clipped n-gram matches m_n, n = 1..4 */
    int64_t total[4]; /* hypothesis n-grams t_n */
    int64_t hyp_len, ref_len;
} sg_bleu_stats;

/* Adds one sentence given as token lists. SG_EINVAL for NULL. */
SG_API int sg_bleu_add(sg_bleu_stats *s, const sg_tokens *hyp, const sg_tokens *ref);
/* Adds one sentence given as texts: both are word-tokenised (char-level hypotheses
 * are first concatenated; see sg_detokenize). SG_EFORMAT for invalid UTF-8. */
SG_API int sg_bleu_add_text(sg_bleu_stats *s, const char *hyp, const char *ref);
/* Adds one decoded id sequence (rules of sg_vocab_decode) against a raw reference.
 * Word level: hypothesis = the vocabulary strings; char level: the strings are
 * concatenated then word-tokenised. The reference is word-tokenised. */
SG_API int sg_bleu_add_ids(sg_bleu_stats *s, const sg_vocab *v, sg_text_level level,
                           const int64_t *ids, int64_t n, const char *ref);
/* 100 * BLEU = 100 * BP * exp(mean log(m_n/t_n)); 0 when c = 0 or any m_n = 0. */
SG_API double sg_bleu_score(const sg_bleu_stats *s);
/* Percentage of i with strcmp(hyps[i], refs[i]) == 0; 0 for n = 0. */
SG_API double sg_exact_match(const char *const *hyps, const char *const *refs, int64_t n);

/* ---------------------------------------------------------------- built-in tasks */

/* Human-readable dates -> ISO dates ("saturday 9 may 2018" -> "2018-05-09"), dates
 * uniform in 1950-01-01 .. 2049-12-31, each pair in one of 14 formats drawn at
 * random (see dates.c; the only 2-digit-year format is dd/mm/yy, unambiguous in that
 * range). Fully determined by seed; sources are unique across all three splits, so
 * the splits never overlap. Fills splits[0..2] with n_train/n_valid/n_test pairs
 * (overwritten, not freed). SG_EINVAL for negative counts or more than 200,000 pairs
 * in total, SG_ENOMEM. Use char level, min_freq 1. */
SG_API int sg_task_dates(sg_text_pairs splits[SG_SPLIT_COUNT], uint64_t seed, int64_t n_train,
                         int64_t n_valid, int64_t n_test);

typedef enum sg_seq_task {
    SG_SEQ_COPY = 0, /* target = source */
    SG_SEQ_REVERSE,  /* target = source reversed */
    SG_SEQ_SORT,     /* target = source symbols sorted ascending */
    SG_SEQ_TASK_COUNT
} sg_seq_task;

/* Random symbol sequences -> copy/reverse/sort. A source is L space-separated
 * symbols (L uniform in [min_len, max_len]) drawn uniformly from the first
 * n_symbols of "abc...zABC...Z0..9" (n_symbols in [2, 62]), e.g. reverse:
 * "c a f" -> "f a c". Use word level, min_freq 1. Deterministic in seed; sources are
 * unique across splits. SG_EINVAL for bad arguments or when the requested number of
 * distinct sources is more than half of those that exist; SG_ENOMEM. */
SG_API int sg_task_sequences(sg_text_pairs splits[SG_SPLIT_COUNT], sg_seq_task task,
                             uint64_t seed, int64_t n_train, int64_t n_valid, int64_t n_test,
                             int64_t min_len, int64_t max_len, int n_symbols);

#ifdef __cplusplus
}
#endif
#endif
