/*
 * ckpt_info - print what a checkpoint holds: architecture and hyperparameters, parameter
 * count, vocabularies, training state (epoch, step, best validation score) and optimiser.
 *
 *   ckpt_info [--params] model.h5 [more.h5 ...]
 *
 * The model is rebuilt from the /model attributes and its weights are loaded, so a
 * checkpoint that prints without an error also loads in translate. --params lists every
 * parameter with its shape. Exit status: 0, 1 if a file cannot be read or loaded, 2 for
 * bad options.
 */
#include <stdlib.h>
#include <string.h>

#include "tools.h"

/* 398671 -> "398,671" */
static const char *thousands(int64_t v, char *buf, size_t n)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)v), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
        if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static void print_attr(const char *indent, const sg_attr *a)
{
    switch (a->type) {
    case SG_ATTR_INT: printf("%s%-22s %lld\n", indent, a->name, (long long)a->i); break;
    case SG_ATTR_REAL: printf("%s%-22s %g\n", indent, a->name, a->r); break;
    case SG_ATTR_STR: printf("%s%-22s %s\n", indent, a->name, a->s); break;
    default: break;
    }
}

static void print_vocab(const char *side, const sg_ckpt_vocab *v)
{
    if (v->n == 0) {
        printf("  %s: (none)\n", side);
        return;
    }
    printf("  %s: %lld tokens", side, (long long)v->n);
    for (int i = 0; i < v->attrs.n; i++) {
        const sg_attr *a = &v->attrs.items[i];
        if (a->type == SG_ATTR_STR)
            printf(", %s %s", a->name, a->s);
        else if (a->type == SG_ATTR_INT)
            printf(", %s %lld", a->name, (long long)a->i);
    }
    /* a few of the most frequent tokens (ids 4..) show what the model reads */
    printf(" [");
    for (int64_t i = 4; i < v->n && i < 14; i++)
        printf("%s'%s'", i > 4 ? " " : "", v->tokens[i]);
    printf("%s]\n", v->n > 14 ? " ..." : "");
}

/* Prints one file; returns 0 or 1. */
static int info(const char *path, bool list_params)
{
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    if (sg_checkpoint_read_meta(path, &ck) != SG_OK) {
        fprintf(stderr, "error: %s\n", sg_last_error());
        return 1;
    }
    char buf[64];
    const sg_attr *arch = sg_attrs_find(&ck.model, "arch");
    printf("%s\n", path);
    printf("model: %s\n", arch && arch->type == SG_ATTR_STR ? arch->s : "(no arch attribute)");
    for (int i = 0; i < ck.model.n; i++)
        if (strcmp(ck.model.items[i].name, "arch"))
            print_attr("  ", &ck.model.items[i]);

    /* rebuild the model to count and check its parameters */
    int status = 0;
    sg_model_config cfg;
    sg_model *m = NULL;
    if (sg_model_config_from_attrs(&ck.model, &cfg) != SG_OK ||
        !(m = sg_model_new(&cfg, SG_F32, 1))) {
        printf("parameters: ? (cannot build the model: %s)\n", sg_last_error());
        status = 1;
    } else {
        sg_params *p = sg_model_params(m);
        int n_distinct = 0;
        for (int i = 0; i < sg_params_count(p); i++)
            n_distinct += sg_params_at(p, i)->alias_of < 0;
        printf("parameters: %s in %d tensors", thousands(sg_params_numel(p), buf, sizeof buf),
               n_distinct);
        if (sg_checkpoint_load_params(path, p) == SG_OK) {
            printf(" (weights load)\n");
        } else {
            printf("\n");
            fprintf(stderr, "error: %s\n", sg_last_error());
            status = 1;
        }
        for (int i = 0; list_params && i < sg_params_count(p); i++) {
            const sg_param *e = sg_params_at(p, i);
            char shape[64];
            printf("  %-56s %s%s%s\n", e->name, sg_tensor_shape_str(e->value, shape, sizeof shape),
                   e->alias_of >= 0 ? " = " : "",
                   e->alias_of >= 0 ? sg_params_at(p, e->alias_of)->name : "");
        }
    }
    printf("vocabularies:\n");
    print_vocab("src", &ck.vocab[SG_VOCAB_SRC]);
    print_vocab("tgt", &ck.vocab[SG_VOCAB_TGT]);
    if (ck.has_train_state)
        printf("training: epoch %lld, step %lld, best validation score %.2f\n",
               (long long)ck.epoch, (long long)ck.step, ck.best_valid);
    else
        printf("training: (no state)\n");
    for (int i = 0; ck.has_train && i < ck.train.n; i++) {
        const char *k = ck.train.items[i].name;   /* the state was printed above */
        if (!ck.has_train_state ||
            (strcmp(k, "epoch") && strcmp(k, "step") && strcmp(k, "best_valid")))
            print_attr("  ", &ck.train.items[i]);
    }
    if (ck.has_optim) {
        const sg_attr *name = sg_attrs_find(&ck.optim, "name");
        printf("optimiser: %s, step %lld (moments stored)\n",
               name && name->type == SG_ATTR_STR ? name->s : "?", (long long)ck.optim_step);
        for (int i = 0; i < ck.optim.n; i++)
            if (strcmp(ck.optim.items[i].name, "name") && strcmp(ck.optim.items[i].name, "step"))
                print_attr("  ", &ck.optim.items[i]);
    } else {
        printf("optimiser: (none)\n");
    }
    sg_model_free(m);
    sg_checkpoint_clear(&ck);
    return status;
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    bool params = false;
    sgx_option o[] = {
        SGX_BOOL("params", &params, "list every parameter and its shape"),
        SGX_END,
    };
    int npos = sgx_options_parse_or_exit(o, argc, argv, "ckpt_info [--params] model.h5 [...]",
                                         "Prints a checkpoint's summary.");
    if (npos < 1) {
        fprintf(stderr, "ckpt_info: give at least one checkpoint\ntry 'ckpt_info --help'\n");
        return 2;
    }
    int status = 0;
    for (int i = 1; i <= npos; i++) {
        if (i > 1)
            printf("\n");
        status |= info(argv[i], params);
    }
    return status;
}
