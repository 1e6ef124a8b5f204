/*
 * s2s.h - what the seq2seq programs share: evaluation (loss, decoding, BLEU, exact
 * match), translating raw lines, and attention pictures. Uses only libseqgrad's public
 * API. Errors: negative SG_E* codes, message in sgx_last_error().
 */
#ifndef SGX_S2S_H
#define SGX_S2S_H

#include "common.h"
#include "sg_model.h"

/* Results of evaluating a model on one split. */
typedef struct sgx_eval {
    double loss;        /* mean token cross entropy (label smoothing 0, pads ignored) */
    int64_t tokens;     /* target tokens counted (</s> included) */
    double bleu;        /* 100 * corpus BLEU-4 of the decodes (MODELS.md 9) */
    double exact;       /* % of decoded strings equal to the reference target */
    int64_t sentences;
    char **hyps;        /* [sentences] detokenised decodes in split order (if asked) */
} sgx_eval;

/* Evaluates m on split d (with its raw pairs for references) in evaluation mode:
 * loss over batches of batch_size, and decodes (greedy when dec is NULL or dec->beam
 * is 0) unless decode is false. keep_hyps keeps the decoded strings (free with
 * sgx_eval_free). */
int sgx_evaluate(sg_model *m, const sg_dataset *d, const sg_text_pairs *raw,
                 const sg_vocab *tgt_vocab, sg_text_level level, int64_t batch_size,
                 bool decode, const sg_decode_opts *dec, bool keep_hyps, sgx_eval *out);
void sgx_eval_free(sgx_eval *e);

/* Translates n raw source lines: tokenises, numericalises (unknown tokens -> <unk>),
 * decodes in batches of batch_size and detokenises. out[i] gets n_best strings
 * (malloc'ed, caller frees with sgx_strings_free) and scores[i*n_best + j] the
 * normalised scores when scores is not NULL. Empty lines are allowed (source </s>). */
int sgx_translate(sg_model *m, const sg_vocab *src_vocab, const sg_vocab *tgt_vocab,
                  sg_text_level level, const char *const *lines, int64_t n, int64_t batch_size,
                  const sg_decode_opts *dec, int64_t n_best, char ***out, double *scores);
void sgx_strings_free(char **s, int64_t n);

/* Writes an SVG heatmap of the attention of m for each (source line, target line)
 * pair: the target is fed with teacher forcing (as decoded or as given), rows are the
 * target tokens plus </s>, columns the source tokens plus </s>. SG_EINVAL for a model
 * without attention (seq2seq). */
int sgx_attention_svg(const char *path, sg_model *m, const sg_vocab *src_vocab,
                      const sg_vocab *tgt_vocab, sg_text_level level, const char *const *src,
                      const char *const *tgt, int n);

/* A batch for (source, target) strings: numericalised with <unk> for unknown tokens.
 * tgt may be NULL (source only). Free with sg_batch_free. */
int sgx_make_batch(sg_batch *b, const sg_vocab *src_vocab, const sg_vocab *tgt_vocab,
                   sg_text_level level, const char *const *src, const char *const *tgt,
                   int64_t n);

#endif
