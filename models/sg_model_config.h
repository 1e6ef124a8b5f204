/*
 * sg_model_config.h - hyperparameters of the model zoo (MODELS.md 3.1) and the named
 * training configurations (MODELS.md 10.1).
 *
 * A config is a plain struct with every hyperparameter of every architecture; only
 * those of cfg.arch matter. Configs convert to and from "key = value" pairs, which
 * is how they are stored as checkpoint attributes and set from the command line:
 *
 *     sg_model_config c;
 *     sg_model_config_defaults(&c, SG_ARCH_BAHDANAU);
 *     sg_model_config_set(&c, "hidden_dim", "128");       // SG_EINVAL on a bad key/value
 *     sg_model_config_validate(&c);                       // sizes, choices, ranges
 */
#ifndef SG_MODEL_CONFIG_H
#define SG_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sg_arch {
    SG_ARCH_SEQ2SEQ = 0,
    SG_ARCH_BAHDANAU,
    SG_ARCH_LUONG,
    SG_ARCH_TRANSFORMER,
    SG_ARCH_COUNT
} sg_arch;

/* "seq2seq", "bahdanau", "luong", "transformer"; NULL for an invalid value. */
SG_API const char *sg_arch_name(sg_arch a);
/* The arch named s, or -1 (SG_EINVAL recorded). */
SG_API int sg_arch_parse(const char *s);

#define SG_CONFIG_STR 16

typedef struct sg_model_config {
    sg_arch arch;
    int64_t src_vocab_size, tgt_vocab_size;
    /* seq2seq, bahdanau, luong */
    int64_t emb_dim, hidden_dim, num_layers, attn_dim;
    char cell[SG_CONFIG_STR];       /* seq2seq: "lstm" | "gru" */
    int64_t reverse_source, feed_context;   /* seq2seq, 0/1 */
    char attn_type[SG_CONFIG_STR];  /* luong: "global" | "local-m" | "local-p" */
    char score[SG_CONFIG_STR];      /* luong: "dot" | "general" | "concat" */
    int64_t local_window, input_feed;       /* luong */
    /* transformer */
    int64_t d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward;
    int64_t norm_first, tie_embeddings;     /* 0/1 */
    double dropout;
} sg_model_config;

/* Every field at MODELS.md 3.1's defaults for arch (vocab sizes 0). */
SG_API void sg_model_config_defaults(sg_model_config *c, sg_arch arch);
/* Sets one hyperparameter from text ("arch" included, which resets nothing else).
 * SG_EINVAL names an unknown key or a value that does not parse. */
SG_API int sg_model_config_set(sg_model_config *c, const char *key, const char *value);
/* SG_EINVAL naming the first hyperparameter out of range for c->arch (sizes >= 1,
 * choices, dropout in [0,1), d_model divisible by nhead and even, ...). */
SG_API int sg_model_config_validate(const sg_model_config *c);

/* The hyperparameters that MODELS.md 3.1 lists for c->arch (plus arch and the two
 * vocab sizes), for checkpoint attributes. kind: 'i' int64, 'f' double, 's' string. */
typedef struct sg_config_item {
    const char *key;
    char kind;
    int64_t i;
    double f;
    const char *s;
} sg_config_item;
/* Fills up to max items; returns how many there are for c->arch. */
SG_API int sg_model_config_items(const sg_model_config *c, sg_config_item *items, int max);

/* Optimiser and data settings of a named configuration (MODELS.md 10.1). */
typedef struct sg_named_config {
    const char *name;          /* "dates-bahdanau", ... */
    const char *data;          /* "dates" | "gettext-en-fr" */
    const char *level;         /* "char" | "word" */
    int64_t min_freq, max_size, batch_size;
    sg_model_config model;     /* vocab sizes 0: set from the data */
    double lr, beta1, beta2, eps, weight_decay, clip_norm, label_smoothing;
    const char *schedule;      /* "constant" | "inverse_sqrt" */
    int64_t warmup_steps;
} sg_named_config;

/* The named configuration, or NULL (SG_EINVAL naming the known names). */
SG_API const sg_named_config *sg_named_config_find(const char *name);
/* Number of named configurations and the i-th. */
SG_API int sg_named_config_count(void);
SG_API const sg_named_config *sg_named_config_at(int i);

#ifdef __cplusplus
}
#endif
#endif
