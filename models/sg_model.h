/*
 * sg_model.h - the model zoo behind one interface: seq2seq (Sutskever/Cho), bahdanau,
 * luong (global/local attention) and transformer, as MODELS.md 4-7 define them.
 *
 *     sg_model_config cfg;
 *     sg_model_config_defaults(&cfg, SG_ARCH_BAHDANAU);
 *     cfg.src_vocab_size = 50; cfg.tgt_vocab_size = 15;
 *     sg_model *m = sg_model_new(&cfg, SG_F32, 1234);     // MODELS.md 3.5 init
 *     sg_graph *g = sg_graph_new();
 *     sg_tensor *loss = sg_model_loss(m, g, &batch, 0.0, NULL);
 *     sg_backward(g, loss);                                 // grads in sg_model_params(m)
 *
 * Ownership: the model owns its parameter store and its dropout rng; tensors returned
 * by forward/loss belong to the graph. Errors: NULL/negative codes with
 * sg_last_error() naming the problem (bad config, batch shapes, ids beyond the
 * vocabulary).
 */
#ifndef SG_MODEL_H
#define SG_MODEL_H

#include "sg_data.h"
#include "sg_decode.h"
#include "sg_model_config.h"
#include "sg_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_model sg_model;

/* Builds a model with parameters of dtype dt initialised as MODELS.md 3.5 from seed.
 * The config is validated (SG_EINVAL names the bad hyperparameter). NULL on error. */
SG_API sg_model *sg_model_new(const sg_model_config *cfg, sg_dtype dt, uint64_t seed);
/* Frees the model and its parameters. Accepts NULL. */
SG_API void sg_model_free(sg_model *m);

SG_API const sg_model_config *sg_model_get_config(const sg_model *m);
/* The parameter store (owned by the model), in state_dict order. */
SG_API sg_params *sg_model_params(sg_model *m);
/* Training mode turns dropout on (default off: evaluation). */
SG_API void sg_model_set_training(sg_model *m, bool training);
SG_API bool sg_model_training(const sg_model *m);
/* The rng that draws dropout masks (part of a resumable checkpoint). */
SG_API sg_rng *sg_model_rng(sg_model *m);

/* Teacher-forced logits [B, T, Vt] for a batch (src, src_len, tgt_in used). When
 * attn is not NULL it receives the attention weights [B, T, S] (RNN attention models:
 * the alignment of each step; transformer: last decoder layer's cross-attention
 * averaged over heads; seq2seq: NULL). */
SG_API sg_tensor *sg_model_forward(sg_model *m, sg_graph *g, const sg_batch *b, sg_tensor **attn);

/* Mean token cross entropy of the batch (MODELS.md 8.1, pads ignored, label smoothing
 * eps); *n_tokens (optional) receives the number of counted target tokens. */
SG_API sg_tensor *sg_model_loss(sg_model *m, sg_graph *g, const sg_batch *b, double label_smoothing,
                                int64_t *n_tokens);

/* One training step's forward and backward: sg_model_loss, then sg_backward on it, in less memory
 * (sg_linear_cross_entropy_backward: the generator's weight gradient is added during the loss's
 * forward instead of keeping the logits' gradient or a copy of dW for it; enfr-bahdanau's training
 * peak 355 -> 318 MB, 6% slower). The parameters' gradients receive what sg_backward would add (up
 * to f32 rounding). Returns the loss (owned by g; reading only: an sg_backward on it fails with
 * SG_ESTATE), NULL on error with the graph's status set (a failed backward leaves the gradients
 * part-accumulated, as sg_backward does). At 2+ threads a model of at most 2M parameters runs a
 * batch of 32 or more sentences as two halves side by side, on a second copy of the model that it
 * keeps (freed with it); the dropout masks then differ from 1 thread's and the sums round
 * differently, but a thread count gives the same results in every run. */
SG_API sg_tensor *sg_model_loss_backward(sg_model *m, sg_graph *g, const sg_batch *b,
                                         double label_smoothing, int64_t *n_tokens);

/* Before training m: for a model of at most 2M parameters (the size that trains in halves
 * above), sg_malloc_keep_freed(4 MiB), so that its steps keep the gradient blocks they free
 * and take again instead of faulting fresh pages in every step (dates-bahdanau at 2
 * threads: 270-650 page faults a step before); a larger model is left alone (the setting
 * would cost it peak memory). Process-wide, as sg_malloc_keep_freed. SG_OK, or that
 * function's error (SG_ESTATE where the malloc is not glibc's: nothing changed, only a
 * speed-up lost); SG_EINVAL for NULL. */
SG_API int sg_model_tune_malloc(const sg_model *m);

/* Sum of target-token log-probabilities per sentence under teacher forcing (</s>
 * included, pads excluded) into out[B], for rescoring (evaluation mode, no dropout). */
SG_API int sg_model_score(sg_model *m, const sg_batch *b, double *out);

/* Decodes the source batch src [B, S] (SG_I64, right-padded, rows end with </s>) with
 * lengths src_len [B]: greedy when opts is NULL or opts->beam == 0, else beam search
 * (sg_decode.h). Runs in evaluation mode without recording gradients; the encoder runs
 * once per batch. At 2+ threads a model of at most 2M parameters decodes a batch of 32 or
 * more sentences as two halves side by side (each sentence as in the whole batch). On
 * success fills *out (free with sg_decode_result_free). */
SG_API int sg_model_decode(sg_model *m, const sg_tensor *src, const sg_tensor *src_len,
                           const sg_decode_opts *opts, sg_decode_result *out);

/* Step-wise decoding state, for searches of your own: encodes the batch (evaluation
 * mode, no gradients) and holds the decoder's per-row state, one row per sentence.
 * Drive it with sg_model_decoder_ops(d)->step / ->select_rows and
 * sg_model_decoder_state(d) (the contract is sg_decoder_ops in sg_decode.h), or hand
 * both to sg_decode_greedy / sg_decode_beam. The model must outlive it and stays in
 * evaluation mode until sg_model_decoder_free. NULL on error (batch checks as
 * sg_model_forward). */
typedef struct sg_model_decoder sg_model_decoder;
SG_API sg_model_decoder *sg_model_decoder_new(sg_model *m, const sg_tensor *src,
                                              const sg_tensor *src_len);
SG_API const sg_decoder_ops *sg_model_decoder_ops(const sg_model_decoder *d);
SG_API void *sg_model_decoder_state(sg_model_decoder *d);
/* Frees the state and restores the model's training flag. Accepts NULL. */
SG_API void sg_model_decoder_free(sg_model_decoder *d);

/* The optimiser of a named configuration (MODELS.md 10.1): Adam with its learning rate,
 * betas, eps, weight decay, clipping norm and schedule (label smoothing carried along for
 * the checkpoint). SG_EINVAL for NULL arguments or a schedule it does not know. */
SG_API int sg_named_config_optim(const sg_named_config *nc, sg_optim_config *out);

/* ---- checkpoints (MODELS.md 11) --------------------------------------------------- */

/* Hyperparameters <-> /model attributes (arch and every MODELS.md 3.1 entry). from_attrs
 * starts from the arch's defaults, ignores unknown attributes and validates; SG_EFORMAT
 * names a missing arch or a hyperparameter of the wrong type, SG_EINVAL a bad value. */
SG_API int sg_model_config_to_attrs(const sg_model_config *c, sg_attrs *a);
SG_API int sg_model_config_from_attrs(const sg_attrs *a, sg_model_config *c);

/* Loads a model for inference from a checkpoint: reads the metadata (into *meta when
 * not NULL: vocabularies, optimiser and training attributes; free it with
 * sg_checkpoint_clear), builds the model, checks that the vocabularies (when present)
 * fit the embeddings, and loads every parameter. NULL on error with a message naming
 * the file and the dataset (sg_checkpoint.h lists the checks). */
SG_API sg_model *sg_model_load(const char *path, sg_dtype dt, sg_checkpoint *meta);

/* Saves the model to path atomically: the /model attributes from its config, every
 * parameter, plus what the caller put in ck (vocabularies, /train attributes and the
 * training state; ck->model and the optimiser fields are filled here and may be left
 * zero). With opt (may be NULL) the optimiser state goes to /optim: hyperparameters,
 * step count and the Adam moments (MODELS.md 11.5). SG_EIO leaves an existing file at
 * path intact. */
SG_API int sg_model_save(const char *path, sg_model *m, sg_checkpoint *ck, const sg_optim *opt);

/* Restores an optimiser built over sg_model_params(m) from path's /optim: step count,
 * moments and hyperparameters (lr, betas, eps, weight decay, clipping, schedule,
 * warmup, label smoothing). SG_EFORMAT if the file has no /optim; on error opt is
 * unchanged. */
SG_API int sg_model_load_optim(const char *path, sg_model *m, sg_optim *opt);

#ifdef __cplusplus
}
#endif
#endif
