/*
 * ckpt_average - average the parameters of N checkpoints into a new one (checkpoint
 * averaging, as NMT toolkits offer: e.g. the last few checkpoints of a run).
 *
 *   ckpt_average --output avg.h5 a.h5 b.h5 [c.h5 ...]
 *
 * Every input must have the same architecture: equal hyperparameters (dropout aside, it
 * has no weights) and therefore equal parameter names and shapes; otherwise the error
 * names the file and the hyperparameter or parameter that differs. The average is taken
 * in double precision and rounded to float32 once, so averaging copies of one
 * checkpoint gives it back bit for bit. The output keeps the first input's
 * vocabularies (a warning says when another input's differ) and /train attributes,
 * records the inputs in /train (averaged_from, averaged_n) and has no optimiser state
 * or training state: it is for inference or fine-tuning from scratch.
 * Exit status: 0, 1 for bad or mismatching inputs, 2 for bad options.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

#define MAX_ITEMS 64

static _Noreturn __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void item_str(const sg_config_item *it, char *buf, size_t n)
{
    if (it->kind == 'i')
        snprintf(buf, n, "%lld", (long long)it->i);
    else if (it->kind == 'f')
        snprintf(buf, n, "%g", it->f);
    else
        snprintf(buf, n, "%s", it->s);
}

/* Exits naming the first hyperparameter (dropout aside) in which c differs from c0. */
static void same_config(const sg_model_config *c0, const char *p0, const sg_model_config *c,
                        const char *p)
{
    if (c0->arch != c->arch)
        fail("%s is a %s model but %s is a %s model: cannot average them", p,
             sg_arch_name(c->arch), p0, sg_arch_name(c0->arch));
    sg_config_item a[MAX_ITEMS], b[MAX_ITEMS];
    int na = sg_model_config_items(c0, a, MAX_ITEMS), nb = sg_model_config_items(c, b, MAX_ITEMS);
    CHECK(na == nb && na <= MAX_ITEMS);
    for (int i = 0; i < na; i++) {
        char va[128], vb[128];
        item_str(&a[i], va, sizeof va);
        item_str(&b[i], vb, sizeof vb);
        if (!strcmp(a[i].key, "dropout") || !strcmp(va, vb))
            continue;
        fail("%s: hyperparameter %s = %s, but %s has %s: cannot average different "
             "architectures", p, a[i].key, vb, p0, va);
    }
}

/* Exits naming the first parameter whose name or shape differs. */
static void same_params(const sg_params *p0, const char *f0, const sg_params *p, const char *f)
{
    char s0[64], s1[64];
    if (sg_params_count(p0) != sg_params_count(p))
        fail("%s has %d parameters, %s has %d", f, sg_params_count(p), f0, sg_params_count(p0));
    for (int i = 0; i < sg_params_count(p0); i++) {
        const sg_param *a = sg_params_at(p0, i), *b = sg_params_at(p, i);
        if (strcmp(a->name, b->name))
            fail("%s: parameter %s where %s has %s", f, b->name, f0, a->name);
        if (!sg_tensor_same_shape(a->value, b->value))
            fail("%s: parameter %s is %s, in %s it is %s", f, a->name,
                 sg_tensor_shape_str(b->value, s1, sizeof s1), f0,
                 sg_tensor_shape_str(a->value, s0, sizeof s0));
    }
}

static bool same_vocab(const sg_ckpt_vocab *a, const sg_ckpt_vocab *b)
{
    if (a->n != b->n)
        return false;
    for (int64_t i = 0; i < a->n; i++)
        if (strcmp(a->tokens[i], b->tokens[i]))
            return false;
    return true;
}

static int copy_attrs(sg_attrs *dst, const sg_attrs *src)
{
    int rc = SG_OK;
    for (int i = 0; i < src->n && rc == SG_OK; i++) {
        const sg_attr *a = &src->items[i];
        rc = a->type == SG_ATTR_INT    ? sg_attrs_set_int(dst, a->name, a->i)
             : a->type == SG_ATTR_REAL ? sg_attrs_set_real(dst, a->name, a->r)
                                       : sg_attrs_set_str(dst, a->name, a->s);
    }
    return rc;
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    const char *output = NULL;
    sgx_option o[] = {
        SGX_STRING("output", &output, "the averaged checkpoint to write"),
        SGX_END,
    };
    int n = sgx_options_parse_or_exit(o, argc, argv,
                                      "ckpt_average --output avg.h5 a.h5 b.h5 [...]",
                                      "Averages the parameters of checkpoints of one "
                                      "architecture.");
    if (!output || n < 1) {
        fprintf(stderr, "ckpt_average: give --output and at least one input checkpoint\n"
                        "try 'ckpt_average --help'\n");
        return 2;
    }
    char **in = argv + 1;

    /* the first input holds the running sum (double precision) */
    sg_checkpoint meta0;
    sg_checkpoint_init(&meta0);
    sg_model *m0 = sg_model_load(in[0], SG_F64, &meta0);
    CHECK(m0);
    sg_params *sum = sg_model_params(m0);
    const sg_model_config *c0 = sg_model_get_config(m0);
    for (int k = 1; k < n; k++) {
        sg_checkpoint meta;
        sg_checkpoint_init(&meta);
        CHECK(sg_checkpoint_read_meta(in[k], &meta) == SG_OK);
        sg_model_config c;
        CHECK(sg_model_config_from_attrs(&meta.model, &c) == SG_OK);
        same_config(c0, in[0], &c, in[k]);
        static const char *const side[2] = {"source", "target"};
        for (int v = 0; v < 2; v++)
            if (!same_vocab(&meta0.vocab[v], &meta.vocab[v]))
                fprintf(stderr, "warning: the %s vocabulary of %s differs from %s's (kept %s's)\n",
                        side[v], in[k], in[0], in[0]);
        sg_checkpoint_clear(&meta);

        sg_model *m = sg_model_load(in[k], SG_F64, NULL);
        CHECK(m);
        const sg_params *p = sg_model_params(m);
        same_params(sum, in[0], p, in[k]);
        for (int i = 0; i < sg_params_count(p); i++) {
            if (sg_params_at(p, i)->alias_of >= 0)
                continue; /* a tied parameter is one tensor */
            sg_tensor *acc = sg_params_at(sum, i)->value, *x = sg_params_at(p, i)->value;
            double *da = acc->data;
            const double *dx = x->data;
            for (int64_t j = 0; j < sg_tensor_numel(acc); j++)
                da[j] += dx[j];
        }
        sg_model_free(m);
    }
    for (int i = 0; i < sg_params_count(sum); i++) {
        if (sg_params_at(sum, i)->alias_of >= 0)
            continue;
        sg_tensor *acc = sg_params_at(sum, i)->value;
        double *da = acc->data;
        for (int64_t j = 0; j < sg_tensor_numel(acc); j++)
            da[j] /= n;
    }

    /* first input's vocabularies and /train attributes, no optimiser or training state */
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    for (int v = 0; v < 2; v++) {
        CHECK(sg_ckpt_vocab_set(&ck.vocab[v], meta0.vocab[v].n,
                                (const char *const *)meta0.vocab[v].tokens) == SG_OK);
        CHECK(copy_attrs(&ck.vocab[v].attrs, &meta0.vocab[v].attrs) == SG_OK);
    }
    CHECK(copy_attrs(&ck.train, &meta0.train) == SG_OK);
    static const char *const state[] = {"epoch", "step", "best_valid"};
    sg_attrs kept = {0};   /* drop the training-state attributes: they describe one run */
    for (int i = 0; i < ck.train.n; i++) {
        const sg_attr *a = &ck.train.items[i];
        bool drop = false;
        for (int s = 0; s < 3; s++)
            drop |= !strcmp(a->name, state[s]);
        if (!drop) {
            sg_attrs one = {.n = 1, .cap = 1, .items = (sg_attr *)a};
            CHECK(copy_attrs(&kept, &one) == SG_OK);
        }
    }
    sg_attrs_clear(&ck.train);
    ck.train = kept;
    size_t len = 1;
    for (int k = 0; k < n; k++)
        len += strlen(in[k]) + 1;
    char *from = calloc(len, 1);
    CHECK(from);
    for (int k = 0; k < n; k++) {
        strcat(from, in[k]);
        if (k + 1 < n)
            strcat(from, ",");
    }
    CHECK(sg_attrs_set_str(&ck.train, "averaged_from", from) == SG_OK);
    CHECK(sg_attrs_set_int(&ck.train, "averaged_n", n) == SG_OK);
    ck.has_train = true;
    CHECK(sg_model_save(output, m0, &ck, NULL) == SG_OK);
    printf("averaged %d checkpoint%s (%lld parameters) into %s\n", n, n > 1 ? "s" : "",
           (long long)sg_params_numel(sum), output);
    free(from);
    sg_checkpoint_clear(&ck);
    sg_checkpoint_clear(&meta0);
    sg_model_free(m0);
    return 0;
}
