/* model_config.c - hyperparameters (MODELS.md 3.1) and named configs (MODELS.md 10.1). */
#include "../tensor/tensor_internal.h"
#include "sg_model_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arch_names[SG_ARCH_COUNT] = {"seq2seq", "bahdanau", "luong", "transformer"};

const char *sg_arch_name(sg_arch a) { return (unsigned)a < SG_ARCH_COUNT ? arch_names[a] : NULL; }

int sg_arch_parse(const char *s)
{
    for (int a = 0; a < SG_ARCH_COUNT; a++)
        if (s && strcmp(s, arch_names[a]) == 0)
            return a;
    sg__error(SG_EINVAL, "unknown model '%s' (expected seq2seq, bahdanau, luong or transformer)",
              s ? s : "(null)");
    return -1;
}

void sg_model_config_defaults(sg_model_config *c, sg_arch arch)
{
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->emb_dim = 256;
    c->hidden_dim = 256;
    c->attn_dim = 256;
    c->num_layers = arch == SG_ARCH_BAHDANAU ? 1 : 2;
    strcpy(c->cell, "lstm");
    c->reverse_source = 1;
    c->feed_context = 0;
    strcpy(c->attn_type, "global");
    strcpy(c->score, "general");
    c->local_window = 10;
    c->input_feed = 1;
    c->d_model = 256;
    c->nhead = 4;
    c->num_encoder_layers = 3;
    c->num_decoder_layers = 3;
    c->dim_feedforward = 1024;
    c->norm_first = 0;
    c->tie_embeddings = 0;
    c->dropout = arch == SG_ARCH_TRANSFORMER ? 0.1 : 0.0;
}

typedef struct {
    const char *key;
    char kind;
    size_t off;
} field;

#define F(k, kind) {#k, kind, offsetof(sg_model_config, k)}
static const field fields[] = {
    F(src_vocab_size, 'i'), F(tgt_vocab_size, 'i'), F(emb_dim, 'i'), F(hidden_dim, 'i'),
    F(num_layers, 'i'), F(attn_dim, 'i'), F(cell, 's'), F(reverse_source, 'i'),
    F(feed_context, 'i'), F(attn_type, 's'), F(score, 's'), F(local_window, 'i'),
    F(input_feed, 'i'), F(d_model, 'i'), F(nhead, 'i'), F(num_encoder_layers, 'i'),
    F(num_decoder_layers, 'i'), F(dim_feedforward, 'i'), F(norm_first, 'i'),
    F(tie_embeddings, 'i'), F(dropout, 'f'),
};
#undef F

int sg_model_config_set(sg_model_config *c, const char *key, const char *value)
{
    if (!c || !key || !value)
        return sg__error(SG_EINVAL, "sg_model_config_set: NULL argument");
    if (strcmp(key, "arch") == 0) {
        int a = sg_arch_parse(value);
        if (a < 0)
            return SG_EINVAL;
        c->arch = (sg_arch)a;
        return SG_OK;
    }
    for (size_t k = 0; k < sizeof fields / sizeof *fields; k++) {
        if (strcmp(fields[k].key, key) != 0)
            continue;
        char *end = NULL;
        void *p = (char *)c + fields[k].off;
        errno = 0;
        if (fields[k].kind == 'i') {
            long long v = strtoll(value, &end, 10);
            if (errno || !*value || *end)
                return sg__error(SG_EINVAL, "hyperparameter %s: '%s' is not an integer", key,
                                 value);
            *(int64_t *)p = v;
        } else if (fields[k].kind == 'f') {
            double v = strtod(value, &end);
            if (errno || !*value || *end || !isfinite(v))
                return sg__error(SG_EINVAL, "hyperparameter %s: '%s' is not a number", key, value);
            *(double *)p = v;
        } else {
            if (strlen(value) >= SG_CONFIG_STR)
                return sg__error(SG_EINVAL, "hyperparameter %s: '%s' is too long", key, value);
            strcpy(p, value);
        }
        return SG_OK;
    }
    return sg__error(SG_EINVAL, "unknown hyperparameter '%s'", key);
}

static int need(bool ok, const char *what, const sg_model_config *c)
{
    if (ok)
        return SG_OK;
    return sg__error(SG_EINVAL, "%s model: %s", sg_arch_name(c->arch) ? sg_arch_name(c->arch) : "?",
                     what);
}

#define NEED(cond, what)                                                                    \
    do {                                                                                    \
        int rc_ = need((cond), (what), c);                                                  \
        if (rc_)                                                                            \
            return rc_;                                                                     \
    } while (0)

int sg_model_config_validate(const sg_model_config *c)
{
    if (!c)
        return sg__error(SG_EINVAL, "sg_model_config_validate: config is NULL");
    NEED((unsigned)c->arch < SG_ARCH_COUNT, "unknown arch");
    NEED(c->src_vocab_size >= 5 && c->tgt_vocab_size >= 5,
         "vocabulary sizes must be at least 5 (4 specials + 1 token)");
    NEED(c->dropout >= 0 && c->dropout < 1, "dropout must be in [0, 1)");
    NEED(c->src_vocab_size <= 10000000 && c->tgt_vocab_size <= 10000000,
         "vocabulary size above 10M");
    if (c->arch == SG_ARCH_TRANSFORMER) {
        NEED(c->d_model >= 2 && c->d_model % 2 == 0 && c->d_model <= 65536,
             "d_model must be even and in [2, 65536]");
        NEED(c->nhead >= 1 && c->d_model % c->nhead == 0, "d_model must be divisible by nhead");
        NEED(c->num_encoder_layers >= 1 && c->num_decoder_layers >= 1 &&
                 c->num_encoder_layers <= 64 && c->num_decoder_layers <= 64,
             "layer counts must be in [1, 64]");
        NEED(c->dim_feedforward >= 1 && c->dim_feedforward <= 1 << 20,
             "dim_feedforward out of range");
        NEED((c->norm_first | 1) == 1 && (c->tie_embeddings | 1) == 1,
             "norm_first and tie_embeddings are 0 or 1");
        return SG_OK;
    }
    NEED(c->emb_dim >= 1 && c->emb_dim <= 65536, "emb_dim must be in [1, 65536]");
    NEED(c->hidden_dim >= 1 && c->hidden_dim <= 65536, "hidden_dim must be in [1, 65536]");
    if (c->arch == SG_ARCH_BAHDANAU)
        NEED(c->attn_dim >= 1 && c->attn_dim <= 65536, "attn_dim must be in [1, 65536]");
    if (c->arch == SG_ARCH_SEQ2SEQ || c->arch == SG_ARCH_LUONG)
        NEED(c->num_layers >= 1 && c->num_layers <= 64, "num_layers must be in [1, 64]");
    if (c->arch == SG_ARCH_SEQ2SEQ) {
        NEED(!strcmp(c->cell, "lstm") || !strcmp(c->cell, "gru"), "cell must be lstm or gru");
        NEED((c->reverse_source | 1) == 1 && (c->feed_context | 1) == 1,
             "reverse_source and feed_context are 0 or 1");
    }
    if (c->arch == SG_ARCH_LUONG) {
        NEED(!strcmp(c->attn_type, "global") || !strcmp(c->attn_type, "local-m") ||
                 !strcmp(c->attn_type, "local-p"),
             "attn_type must be global, local-m or local-p");
        NEED(!strcmp(c->score, "dot") || !strcmp(c->score, "general") ||
                 !strcmp(c->score, "concat"),
             "score must be dot, general or concat");
        NEED(c->local_window >= 1, "local_window must be >= 1");
        NEED(c->attn_dim >= 1 && c->attn_dim <= 65536, "attn_dim must be in [1, 65536]");
        NEED((c->input_feed | 1) == 1, "input_feed is 0 or 1");
    }
    return SG_OK;
}

/* MODELS.md 3.1: which hyperparameters each arch has, in its order. */
static const char *arch_keys[SG_ARCH_COUNT][12] = {
    {"emb_dim", "hidden_dim", "num_layers", "cell", "reverse_source", "feed_context", "dropout"},
    {"emb_dim", "hidden_dim", "attn_dim", "dropout"},
    {"emb_dim", "hidden_dim", "num_layers", "attn_type", "score", "attn_dim", "local_window",
     "input_feed", "dropout"},
    {"d_model", "nhead", "num_encoder_layers", "num_decoder_layers", "dim_feedforward",
     "dropout", "norm_first", "tie_embeddings"},
};

static int put_item(const sg_model_config *c, const char *key, sg_config_item *it)
{
    for (size_t k = 0; k < sizeof fields / sizeof *fields; k++) {
        if (strcmp(fields[k].key, key) != 0)
            continue;
        const char *p = (const char *)c + fields[k].off;
        memset(it, 0, sizeof *it);
        it->key = fields[k].key;
        it->kind = fields[k].kind;
        if (it->kind == 'i')
            it->i = *(const int64_t *)p;
        else if (it->kind == 'f')
            it->f = *(const double *)p;
        else
            it->s = p;
        return 1;
    }
    return 0;
}

int sg_model_config_items(const sg_model_config *c, sg_config_item *items, int max)
{
    int n = 0;
    if ((unsigned)c->arch >= SG_ARCH_COUNT)
        return 0;
    if (n < max)
        items[n] = (sg_config_item){.key = "arch", .kind = 's', .s = arch_names[c->arch]};
    n++;
    const char *common[] = {"src_vocab_size", "tgt_vocab_size"};
    for (int k = 0; k < 2; k++, n++)
        if (n < max)
            put_item(c, common[k], &items[n]);
    for (int k = 0; k < 12 && arch_keys[c->arch][k]; k++, n++)
        if (n < max)
            put_item(c, arch_keys[c->arch][k], &items[n]);
    return n;
}

/* ---- MODELS.md 10.1 ------------------------------------------------------------- */

static sg_named_config named[4];
static bool named_ready;

static void named_init(void)
{
    if (named_ready)
        return;
    sg_named_config rnn = {.min_freq = 2, .max_size = 8000, .batch_size = 64, .lr = 1e-3,
                           .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip_norm = 1.0,
                           .schedule = "constant", .data = "gettext-en-fr", .level = "word"};
    named[0] = rnn;
    named[0].name = "dates-bahdanau";
    named[0].data = "dates";
    named[0].level = "char";
    named[0].min_freq = 1;
    sg_model_config_defaults(&named[0].model, SG_ARCH_BAHDANAU);
    named[0].model.emb_dim = 64;
    named[0].model.hidden_dim = 128;
    named[0].model.attn_dim = 128;

    named[1] = rnn;
    named[1].name = "enfr-bahdanau";
    sg_model_config_defaults(&named[1].model, SG_ARCH_BAHDANAU);
    named[1].model.dropout = 0.1;

    named[2] = rnn;
    named[2].name = "enfr-luong";
    sg_model_config_defaults(&named[2].model, SG_ARCH_LUONG);
    named[2].model.dropout = 0.1;

    named[3] = rnn;
    named[3].name = "enfr-transformer";
    named[3].beta2 = 0.98;
    named[3].eps = 1e-9;
    named[3].schedule = "inverse_sqrt";
    named[3].warmup_steps = 1000;
    named[3].label_smoothing = 0.1;
    sg_model_config_defaults(&named[3].model, SG_ARCH_TRANSFORMER);
    named_ready = true;
}

int sg_named_config_count(void) { return 4; }

const sg_named_config *sg_named_config_at(int i)
{
    named_init();
    return i >= 0 && i < 4 ? &named[i] : NULL;
}

const sg_named_config *sg_named_config_find(const char *name)
{
    named_init();
    for (int i = 0; i < 4; i++)
        if (name && strcmp(named[i].name, name) == 0)
            return &named[i];
    sg__error(SG_EINVAL, "unknown configuration '%s' (known: dates-bahdanau, enfr-bahdanau, "
                         "enfr-luong, enfr-transformer)",
              name ? name : "(null)");
    return NULL;
}
