/*
 * sg_decode.h - model-agnostic batched decoding: greedy and beam search (MODELS.md 8.3).
 *
 * Decoding talks to a model only through two callbacks (sg_decoder_ops). The model
 * keeps its own per-row decoder state (RNN hidden state, attention input feed,
 * transformer K/V cache, encoder memory per row); the decoder owns the search: it
 * feeds the previous token of every live row, turns the returned logits into
 * log-probabilities, picks tokens and tells the model which rows survive and in
 * what order.
 *
 * Rows. Before decoding, the caller encodes the batch and prepares the model's
 * state with one row per sentence, in batch order (row b = sentence b). During
 * decoding the number and order of rows change:
 *   - greedy: one row per unfinished sentence;
 *   - beam:   up to k rows per unfinished sentence (one at step 0), grouped by
 *             sentence in batch order, within a sentence best raw score first.
 * Finished sentences are dropped from the batch (results are unchanged by this,
 * MODELS.md 8.4). After each step the decoder calls select_rows(parent, sentence):
 * new row i continues old row parent[i] and belongs to sentence sentence[i]. It is
 * not called when the mapping is the identity, nor when no row is left.
 *
 * Steps. step t (0-based) receives prev [R] (SG_I64: <s> = 2 at t = 0, else the
 * token chosen for that row at step t-1) and returns logits [R, V] (SG_F32 or SG_F64,
 * any strides) for the token at position t. The decoder applies log_softmax over
 * the full vocabulary itself, then forbids <pad> (0) and <s> (2); returning
 * log-probabilities instead of logits is fine (log_softmax is idempotent).
 *
 * Memory. The decoder runs the steps in two graphs that alternate (grad mode off):
 * the graph given to step t (and to the select_rows that follows it) is reset just
 * before step t + 2. So tensors the model makes at step t, including its new state
 * and index_select'ed rows, may be used by step t + 1 and then vanish; data that
 * must live longer (encoder output) belongs in another graph or on the heap. The
 * graphs can be passed in opts->work to reuse their arenas across batches; the
 * decoder's own bookkeeping is one allocation per call, none per step.
 *
 * Worked example (a GRU decoder whose state is h [R, H] in the step graph):
 *
 *     typedef struct { my_model *m; sg_tensor *h; } my_dec;
 *     static int my_step(void *u, sg_graph *g, sg_tensor *prev, int64_t t,
 *                        sg_tensor **logits) {
 *         my_dec *d = u;
 *         sg_tensor *e = sg_embedding_forward(g, &d->m->emb, prev);      // [R, E]
 *         d->h = my_gru_cell(g, d->m, e, d->h);                         // [R, H]
 *         *logits = sg_linear_layer_forward(g, &d->m->out, d->h);        // [R, V]
 *         return *logits ? SG_OK : sg_graph_status(g);
 *     }
 *     static int my_select(void *u, sg_graph *g, sg_tensor *parent, sg_tensor *sentence) {
 *         my_dec *d = u;
 *         d->h = sg_index_select(g, d->h, 0, parent);                  // [R', H]
 *         return d->h ? SG_OK : sg_graph_status(g);
 *     }
 *     ...
 *     my_dec d = {m, my_encode(enc_graph, m, src, src_len)};           // h [B, H]
 *     sg_decoder_ops ops = {my_step, my_select};
 *     sg_decode_opts o = sg_decode_opts_default();                   // k 5, avg, 0.7
 *     o.n_best = 3;
 *     sg_decode_result r;
 *     if (sg_decode_beam(&ops, &d, B, src_len, &o, &r) != SG_OK)
 *         fprintf(stderr, "%s\n", sg_last_error());
 *     for (int64_t b = 0; b < B; b++) {
 *         const sg_hypothesis *best = sg_decode_best(&r, b);  // best->tokens[0..len)
 *         for (int64_t j = 0; j < sg_decode_count(&r, b); j++) ... r.hyps[r.offset[b] + j] ...
 *     }
 *     sg_decode_result_free(&r);
 */
#ifndef SG_DECODE_H
#define SG_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Special token ids (MODELS.md 2.3). */
enum { SG_TOK_PAD = 0, SG_TOK_UNK = 1, SG_TOK_BOS = 2, SG_TOK_EOS = 3 };

typedef struct sg_decoder_ops {
    /* Logits [R, V] (V >= 4, float) of the next token of the R = prev->shape[0] live
     * rows, given their previous tokens prev (SG_I64 [R], in g) and the step t.
     * Advances the model's per-row state. *logits may live in g (or anywhere that
     * stays valid until the step returns to the decoder). Returns SG_OK or a
     * negative code (with its message), which the decoder returns unchanged. */
    int (*step)(void *model, sg_graph *g, sg_tensor *prev, int64_t t, sg_tensor **logits);
    /* Reorders/selects the per-row state: new row i := old row parent[i]; sentence[i]
     * is its batch index. Both SG_I64 [R'] in g (R' >= 1), usable with sg_index_select.
     * Returns SG_OK or a negative code, returned unchanged by the decoder. */
    int (*select_rows)(void *model, sg_graph *g, sg_tensor *parent, sg_tensor *sentence);
} sg_decoder_ops;

typedef enum sg_lp_kind {
    SG_LP_AVG = 0,    /* lp(n) = n^alpha */
    SG_LP_GNMT,       /* lp(n) = ((5 + n) / 6)^alpha */
    SG_LP_COUNT
} sg_lp_kind;

typedef struct sg_decode_opts {
    int64_t beam;         /* width k >= 1 (beam only) */
    double alpha;         /* length-penalty exponent >= 0; 0: raw sum of log-probs */
    sg_lp_kind penalty;
    int64_t n_best;       /* hypotheses kept per sentence, best first (>= 1; beam only) */
    int64_t max_len;      /* output tokens allowed per sentence (</s> included), the same
                           * for every sentence; 0: MODELS.md 8.3's 2 (n_b - 1) + 10 */
    sg_graph *work[2];    /* optional step graphs (both or none); NULL: made per call */
    /* Optional: a graph, kept by the caller between calls, that holds transposed copies
     * of the model's weights for its small products (made on first use, then reused:
     * repeated decoding skips re-making them). Copies are matched by the weight's
     * address and shape, not its values: sg_graph_reset(weights) after the weights
     * change (an optimiser step, a load, a write of your own) or before decoding with
     * another model. NULL: copies are made per call. Not one of work[]. */
    sg_graph *weights;
} sg_decode_opts;

/* beam 5, alpha 0.7, SG_LP_AVG, n_best 1, max_len 0 (MODELS.md rule), no work graphs. */
SG_API sg_decode_opts sg_decode_opts_default(void);

/* One output hypothesis. tokens points into the result's storage. */
typedef struct sg_hypothesis {
    const int64_t *tokens; /* [len], </s> excluded */
    int64_t len;
    int64_t n;             /* tokens counted by lp: len + 1 if eos, else len (= max_len) */
    bool eos;              /* ended with </s> (false: cut at max_len) */
    double logp;           /* sum of the log-probs of the n generated tokens */
    double score;          /* beam: logp / lp(n); greedy: logp */
} sg_hypothesis;

/* Per sentence b: hyps[offset[b] .. offset[b+1]) sorted by score, best first (ties:
 * the one finished first), at least one. A sentence whose every continuation had
 * probability 0 gets one empty hypothesis with score -inf. */
typedef struct sg_decode_result {
    int64_t batch;
    int64_t *offset;       /* [batch + 1] */
    sg_hypothesis *hyps;   /* [offset[batch]] */
    int64_t *tokens_;      /* storage of every hypothesis' tokens */
} sg_decode_result;

static inline const sg_hypothesis *sg_decode_best(const sg_decode_result *r, int64_t b)
{
    return &r->hyps[r->offset[b]];
}
static inline int64_t sg_decode_count(const sg_decode_result *r, int64_t b)
{
    return r->offset[b + 1] - r->offset[b];
}

/* Frees what a successful decode put in r and zeroes it. Accepts NULL and a zeroed r. */
SG_API void sg_decode_result_free(sg_decode_result *r);

/* max_len = 2 (n_b - 1) + 10: output tokens allowed (</s> included) for a source of
 * n_b non-pad positions (</s> included). -1 if n_b < 1. The decoders use it unless
 * opts->max_len > 0 overrides it. */
SG_API int64_t sg_decode_max_len(int64_t n_b);

/* lp(n) of kind with exponent alpha (1 when alpha = 0). */
SG_API double sg_length_penalty(sg_lp_kind kind, double alpha, int64_t n);

/* Greedy decoding of a batch of `batch` sentences with source lengths src_len [batch]
 * (n_b, </s> included). y_t = argmax over ids other than <pad>, <s> (lowest id on
 * ties); a sentence stops at </s> or after max_len tokens (opts->max_len, or the
 * MODELS.md rule when it is 0). One hypothesis per sentence; score = logp. opts may
 * be NULL (only opts->work and opts->max_len are used). On success
 * fills *out (free with sg_decode_result_free); on error *out is untouched.
 * Errors: SG_EINVAL (NULL ops/callback/src_len/out, batch < 1, src_len[b] < 1, only
 * one of opts->work set, opts->max_len < 0, step returned SG_OK without logits),
 * SG_ESHAPE (logits not
 * [R, V] with V >= 4, or V changed), SG_EDTYPE (logits not float), SG_ENUMERIC (NaN
 * or +inf logits), SG_ENOMEM, or whatever step/select_rows returned. */
SG_API int sg_decode_greedy(const sg_decoder_ops *ops, void *model, int64_t batch,
                            const int64_t *src_len, const sg_decode_opts *opts,
                            sg_decode_result *out);

/* Beam search exactly as MODELS.md 8.3 with width opts->beam, length penalty
 * (opts->penalty, opts->alpha), keeping up to opts->n_best finished hypotheses per
 * sentence, with the length limit of sg_decode_greedy (opts->max_len). opts NULL:
 * sg_decode_opts_default(). Per step and sentence the 2k best candidates are found by partial selection (a bounded heap), never by sorting
 * k*V scores. Candidates with raw score -inf are never taken. Beam 1 returns the
 * greedy tokens. Errors: as sg_decode_greedy, plus SG_EINVAL for beam < 1,
 * n_best < 1, alpha < 0 or not finite, or a bad penalty kind. */
SG_API int sg_decode_beam(const sg_decoder_ops *ops, void *model, int64_t batch,
                          const int64_t *src_len, const sg_decode_opts *opts,
                          sg_decode_result *out);

#ifdef __cplusplus
}
#endif
#endif
