/*
 * sg_checkpoint.h - HDF5 checkpoints in the layout of MODELS.md section 11.
 *
 * A file holds:
 *   /            attributes format = "seqgrad-checkpoint", version = 1 (int64)
 *   /model       hyperparameter attributes; one float32 LE dataset per state_dict key with
 *                '.' -> '/' (a tied parameter is a hard link to its first name)
 *   /vocab/src, /vocab/tgt   1-D variable-length UTF-8 string datasets, attributes
 *                level, min_freq, max_size
 *   /optim       (optional) attributes name, step, lr, ...; datasets exp_avg/<path> and
 *                exp_avg_sq/<path> for every distinct parameter
 *   /train       (optional) free-form attributes; seqgrad adds the int64 attributes
 *                epoch and step, the float64 attribute best_valid and the dataset
 *                /train/rng_state (uint64 LE [4], the sg_rng words s[0..3])
 *
 * In memory a checkpoint is an sg_checkpoint (attributes, vocabularies, training state)
 * next to the caller's sg_params store and optimiser moments. Loading is in three steps
 * so that a model can be built with the right sizes before its weights are read:
 *
 *     sg_checkpoint ck;
 *     if (sg_checkpoint_read_meta("m.h5", &ck) != SG_OK) ... sg_last_error()
 *     int64_t H; sg_attrs_get_int(&ck.model, "hidden_dim", &H);   // build the model
 *     sg_checkpoint_check_vocab_size(p, "src_embed.weight", ck.vocab[SG_VOCAB_SRC].n);
 *     sg_checkpoint_load_params("m.h5", p);                      // all or nothing
 *     sg_checkpoint_load_optim("m.h5", p, m, v, n, &step);        // to resume training
 *     sg_checkpoint_clear(&ck);
 *
 * Saving writes a temporary file next to the target, flushes and fsyncs it and renames
 * it over the target, so a crash or a full disk leaves the previous checkpoint intact.
 *
 * Error codes of every function below: SG_EIO (file missing, a directory, unreadable,
 * cannot be written), SG_EFORMAT (empty, not HDF5, truncated, corrupt, wrong format name
 * or version, missing or unexpected dataset), SG_ESHAPE (dataset shape, vocabulary
 * size), SG_EDTYPE (dataset or attribute of the wrong type), SG_ENUMERIC (NaN or Inf in
 * a weight or moment), SG_EINVAL (bad argument), SG_ENOMEM. Messages name the file and
 * the dataset or attribute. Outputs are written only on success. HDF5 never prints.
 * HDF5 is built without thread safety: do not call these from two threads at once.
 */
#ifndef SG_CHECKPOINT_H
#define SG_CHECKPOINT_H

#include "sg_params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_CKPT_FORMAT "seqgrad-checkpoint"
#define SG_CKPT_VERSION 1
#define SG_ATTR_NAME_MAX 64        /* longer attribute names are ignored on load */
#define SG_ATTR_STR_MAX 65536      /* longest string attribute accepted on load */
#define SG_CKPT_TOKEN_MAX 1024     /* longest vocabulary entry accepted (bytes) */
#define SG_CKPT_VOCAB_MAX 16777216 /* most vocabulary entries accepted */

/* ---------------------------------------------------------------- attributes */

typedef enum sg_attr_type { SG_ATTR_INT = 0, SG_ATTR_REAL, SG_ATTR_STR, SG_ATTR_TYPE_COUNT } sg_attr_type;

typedef struct sg_attr {
    char name[SG_ATTR_NAME_MAX];
    sg_attr_type type;
    int64_t i; /* SG_ATTR_INT (int64 in the file; booleans are 0/1) */
    double r;  /* SG_ATTR_REAL (float64 in the file) */
    char *s;   /* SG_ATTR_STR (variable-length UTF-8 in the file), owned */
} sg_attr;

/* An ordered list of scalar attributes. Zero-initialise ({0}) before use; free with
 * sg_attrs_clear. `where` ("file.h5:/model") is put in get errors, set by the loader. */
typedef struct sg_attrs {
    int n, cap;
    sg_attr *items;
    char where[256];
} sg_attrs;

/* Sets (adds or replaces) an attribute; the string is copied. SG_EINVAL for an empty
 * or too long name (>= SG_ATTR_NAME_MAX) or NULL string, SG_ENOMEM. */
SG_API int sg_attrs_set_int(sg_attrs *a, const char *name, int64_t v);
SG_API int sg_attrs_set_real(sg_attrs *a, const char *name, double v);
SG_API int sg_attrs_set_str(sg_attrs *a, const char *name, const char *v);
/* The attribute named name, or NULL (no error recorded). */
SG_API const sg_attr *sg_attrs_find(const sg_attrs *a, const char *name);
/* Typed getters: SG_EFORMAT if missing, SG_EDTYPE if of another type (get_real also
 * accepts an integer). *out is untouched on error; get_str's string is owned by a. */
SG_API int sg_attrs_get_int(const sg_attrs *a, const char *name, int64_t *out);
SG_API int sg_attrs_get_real(const sg_attrs *a, const char *name, double *out);
SG_API int sg_attrs_get_str(const sg_attrs *a, const char *name, const char **out);
/* Frees every attribute and zeroes a. Accepts NULL. */
SG_API void sg_attrs_clear(sg_attrs *a);

/* ---------------------------------------------------------------- checkpoint */

enum { SG_VOCAB_SRC = 0, SG_VOCAB_TGT = 1 };

typedef struct sg_ckpt_vocab {
    int64_t n;      /* number of tokens; 0 = absent */
    char **tokens;  /* tokens[i] = UTF-8 string of id i; owned (set with sg_ckpt_vocab_set) */
    sg_attrs attrs; /* level ("word"|"char"), min_freq, max_size */
} sg_ckpt_vocab;

typedef struct sg_checkpoint {
    sg_attrs model;           /* /model attributes: arch and every hyperparameter */
    sg_ckpt_vocab vocab[2];   /* /vocab/src, /vocab/tgt */
    bool has_optim;           /* /optim is present (load) / written (save) */
    sg_attrs optim;           /* /optim attributes: name, lr, beta1, ... */
    int64_t optim_step;       /* /optim attribute step: completed Adam updates */
    bool has_train;           /* /train is present / written */
    sg_attrs train;           /* /train free-form attributes */
    bool has_train_state;     /* the four fields below are present / written */
    int64_t epoch, step;      /* /train attributes epoch, step */
    double best_valid;        /* /train attribute best_valid */
    sg_rng rng;               /* /train/rng_state, uint64 [4] */
} sg_checkpoint;

/* Zero-initialises ck (same as = {0}). */
SG_API void sg_checkpoint_init(sg_checkpoint *ck);
/* Frees everything ck owns and zero-initialises it. Accepts NULL. */
SG_API void sg_checkpoint_clear(sg_checkpoint *ck);
/* Replaces a vocabulary with copies of n tokens. SG_EINVAL (NULL token, n < 0),
 * SG_ENOMEM. */
SG_API int sg_ckpt_vocab_set(sg_ckpt_vocab *v, int64_t n, const char *const *tokens);

/* Writes ck, the values of p (as float32) and, if n_moments > 0, the Adam moments to
 * path atomically (temporary file in the same folder, fsync, rename). exp_avg[i] and
 * exp_avg_sq[i] belong to the i-th distinct parameter of p (entries with alias_of < 0,
 * in order), n_moments must then equal their number; moments imply /optim. Aliases
 * become hard links. SG_EINVAL (bad argument, parameter name that is not a dotted path,
 * n_moments mismatch), SG_ESHAPE (moment shape), SG_EIO (cannot create, write, flush
 * or rename: the previous file at path is untouched and no temporary file is left),
 * SG_ENOMEM. */
SG_API int sg_checkpoint_save(const char *path, const sg_checkpoint *ck, const sg_params *p,
                              sg_tensor *const *exp_avg, sg_tensor *const *exp_avg_sq,
                              int n_moments);

/* Step (a): checks the file (format, version) and reads every attribute, the
 * vocabularies and the training state into ck (which must be zero-initialised or
 * cleared; on error it stays empty). Checks that the vocabulary sizes equal the
 * src_vocab_size / tgt_vocab_size attributes when both exist (SG_ESHAPE) and that
 * known attributes have their types (arch, level: string; *_vocab_size, min_freq,
 * max_size, step, epoch: int; best_valid: real; SG_EDTYPE). Vocabularies are optional
 * (n = 0 when absent); when present they must start with the four specials. */
SG_API int sg_checkpoint_read_meta(const char *path, sg_checkpoint *ck);

/* Step (b): reads /model/<path> for every parameter of p into temporaries, checking
 * presence (SG_EFORMAT), float32 type (SG_EDTYPE), shape (SG_ESHAPE) and finiteness
 * (SG_ENUMERIC), and that /model holds no other dataset (SG_EFORMAT "unexpected
 * parameter"); then copies them into p. An alias may be a hard link to its target, be
 * absent, or be an equal copy. On error p is unchanged. */
SG_API int sg_checkpoint_load_params(const char *path, sg_params *p);

#define SG_CKPT_ALLOW_EXTRA 1u /* load_params_ex: ignore datasets p does not name */
SG_API int sg_checkpoint_load_params_ex(const char *path, sg_params *p, unsigned flags);

/* Step (c): reads /optim/exp_avg/<path> and /optim/exp_avg_sq/<path> of every distinct
 * parameter of p (n_moments of them, see sg_checkpoint_save) into the caller's tensors
 * (float, shape of the parameter) and the step attribute into *step (may be NULL). Same
 * checks as load_params; SG_EFORMAT if /optim is missing. On error nothing changes. */
SG_API int sg_checkpoint_load_optim(const char *path, const sg_params *p,
                                    sg_tensor *const *exp_avg, sg_tensor *const *exp_avg_sq,
                                    int n_moments, int64_t *step);

/* Checks that a vocabulary of vocab_size tokens fits parameter `param` of p (dim 0 of
 * an embedding or generator weight). SG_ESHAPE naming both sizes, SG_EINVAL if p has
 * no such parameter. */
SG_API int sg_checkpoint_check_vocab_size(const sg_params *p, const char *param,
                                          int64_t vocab_size);

#ifdef __cplusplus
}
#endif
#endif
