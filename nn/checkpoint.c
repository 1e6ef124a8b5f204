/* checkpoint.c - in-memory checkpoint pieces (attribute lists, vocabularies) and the
 * HDF5 helpers shared by checkpoint_write.c and checkpoint_read.c. */
#include "checkpoint_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- attributes */

/* The slot for name (an existing one is emptied) in *out; SG_EINVAL or SG_ENOMEM. */
static int attr_slot(sg_attrs *a, const char *name, sg_attr **out)
{
    if (!a || !name || !*name || strlen(name) >= SG_ATTR_NAME_MAX)
        return sg__error(SG_EINVAL, "sg_attrs_set: invalid attribute name '%s'",
                         name ? name : "(null)");
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->items[i].name, name) == 0) {
            if (a->items[i].type == SG_ATTR_STR)
                free(a->items[i].s);
            a->items[i].s = NULL;
            *out = &a->items[i];
            return SG_OK;
        }
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        sg_attr *it = realloc(a->items, sizeof *it * (size_t)cap);
        if (!it)
            return sg__error(SG_ENOMEM, "sg_attrs_set: out of memory");
        a->items = it;
        a->cap = cap;
    }
    sg_attr *e = &a->items[a->n++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    *out = e;
    return SG_OK;
}

int sg_attrs_set_int(sg_attrs *a, const char *name, int64_t v)
{
    sg_attr *e;
    int rc = attr_slot(a, name, &e);
    if (rc != SG_OK)
        return rc;
    e->type = SG_ATTR_INT;
    e->i = v;
    return SG_OK;
}

int sg_attrs_set_real(sg_attrs *a, const char *name, double v)
{
    sg_attr *e;
    int rc = attr_slot(a, name, &e);
    if (rc != SG_OK)
        return rc;
    e->type = SG_ATTR_REAL;
    e->r = v;
    return SG_OK;
}

int sg_attrs_set_str(sg_attrs *a, const char *name, const char *v)
{
    if (!v)
        return sg__error(SG_EINVAL, "sg_attrs_set_str: value of '%s' is NULL",
                         name ? name : "(null)");
    char *copy = strdup(v);
    if (!copy)
        return sg__error(SG_ENOMEM, "sg_attrs_set_str: out of memory");
    sg_attr *e;
    int rc = attr_slot(a, name, &e);
    if (rc != SG_OK) {
        free(copy);
        return rc;
    }
    e->type = SG_ATTR_STR;
    e->s = copy;
    return SG_OK;
}

const sg_attr *sg_attrs_find(const sg_attrs *a, const char *name)
{
    if (!a || !name)
        return NULL;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->items[i].name, name) == 0)
            return &a->items[i];
    return NULL;
}

static const char *type_name(sg_attr_type t)
{
    return t == SG_ATTR_INT ? "an integer" : t == SG_ATTR_REAL ? "a real" : "a string";
}

static int get_typed(const sg_attrs *a, const char *name, sg_attr_type want, const sg_attr **out)
{
    const sg_attr *e = sg_attrs_find(a, name);
    const char *where = a && a->where[0] ? a->where : "attributes";
    if (!e)
        return sg__error(SG_EFORMAT, "%s: attribute '%s' is missing", where, name ? name : "(null)");
    if (e->type != want && !(want == SG_ATTR_REAL && e->type == SG_ATTR_INT))
        return sg__error(SG_EDTYPE, "%s: attribute '%s' is %s, expected %s", where, name,
                         type_name(e->type), type_name(want));
    *out = e;
    return SG_OK;
}

int sg_attrs_get_int(const sg_attrs *a, const char *name, int64_t *out)
{
    const sg_attr *e = NULL;
    int rc = get_typed(a, name, SG_ATTR_INT, &e);
    if (rc == SG_OK)
        *out = e->i;
    return rc;
}

int sg_attrs_get_real(const sg_attrs *a, const char *name, double *out)
{
    const sg_attr *e = NULL;
    int rc = get_typed(a, name, SG_ATTR_REAL, &e);
    if (rc == SG_OK)
        *out = e->type == SG_ATTR_INT ? (double)e->i : e->r;
    return rc;
}

int sg_attrs_get_str(const sg_attrs *a, const char *name, const char **out)
{
    const sg_attr *e = NULL;
    int rc = get_typed(a, name, SG_ATTR_STR, &e);
    if (rc == SG_OK)
        *out = e->s;
    return rc;
}

void sg_attrs_clear(sg_attrs *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n; i++)
        if (a->items[i].type == SG_ATTR_STR)
            free(a->items[i].s);
    free(a->items);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- checkpoint */

void sg_checkpoint_init(sg_checkpoint *ck) { memset(ck, 0, sizeof *ck); }

static void vocab_free_tokens(sg_ckpt_vocab *v)
{
    for (int64_t i = 0; i < v->n; i++)
        free(v->tokens[i]);
    free(v->tokens);
    v->tokens = NULL;
    v->n = 0;
}

void sg_checkpoint_clear(sg_checkpoint *ck)
{
    if (!ck)
        return;
    sg_attrs_clear(&ck->model);
    sg_attrs_clear(&ck->optim);
    sg_attrs_clear(&ck->train);
    for (int s = 0; s < 2; s++) {
        vocab_free_tokens(&ck->vocab[s]);
        sg_attrs_clear(&ck->vocab[s].attrs);
    }
    memset(ck, 0, sizeof *ck);
}

int sg_ckpt_vocab_set(sg_ckpt_vocab *v, int64_t n, const char *const *tokens)
{
    if (!v || n < 0 || n > SG_CKPT_VOCAB_MAX || (n > 0 && !tokens))
        return sg__error(SG_EINVAL, "sg_ckpt_vocab_set: invalid vocabulary (n = %lld)",
                         (long long)n);
    char **t = calloc(n ? (size_t)n : 1, sizeof *t);
    if (!t)
        return sg__error(SG_ENOMEM, "sg_ckpt_vocab_set: out of memory (%lld tokens)",
                         (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (!tokens[i] || !(t[i] = strdup(tokens[i]))) {
            for (int64_t k = 0; k < i; k++)
                free(t[k]);
            free(t);
            return tokens[i] ? sg__error(SG_ENOMEM, "sg_ckpt_vocab_set: out of memory")
                             : sg__error(SG_EINVAL, "sg_ckpt_vocab_set: token %lld is NULL",
                                         (long long)i);
        }
    }
    vocab_free_tokens(v);
    v->tokens = t;
    v->n = n;
    return SG_OK;
}

int sg_checkpoint_check_vocab_size(const sg_params *p, const char *param, int64_t vocab_size)
{
    const sg_tensor *w = p && param ? sg_params_find(p, param) : NULL;
    if (!w)
        return sg__error(SG_EINVAL, "sg_checkpoint_check_vocab_size: no parameter '%s'",
                         param ? param : "(null)");
    if (w->ndim < 1 || w->shape[0] != vocab_size) {
        char buf[96];
        return sg__error(SG_ESHAPE,
                         "sg_checkpoint_check_vocab_size: vocabulary has %lld tokens but "
                         "parameter '%s' is %s (dim 0 must equal the vocabulary size)",
                         (long long)vocab_size, param, sg__shape_str(w, buf, sizeof buf));
    }
    return SG_OK;
}

/* ---------------------------------------------------------------- HDF5 helpers */

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *user)
{
    /* Walking upward, n == 0 is the innermost (most specific) error. */
    if (n == 0 && e->desc) {
        char **b = user;
        snprintf(b[0], (size_t)(uintptr_t)b[1], "%s", e->desc);
    }
    return 0;
}

const char *sg__ckpt_h5_reason(char *buf, size_t n)
{
    buf[0] = '\0';
    void *user[2] = {buf, (void *)(uintptr_t)n};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, user);
    return buf;
}

void sg__ckpt_close_ids(int n, const hid_t *ids)
{
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0)
            H5Idec_ref(ids[i]);
}

hid_t sg__ckpt_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int sg__ckpt_param_path(const char *fn, const char *prefix, const char *name, char *out,
                        size_t n)
{
    size_t lp = strlen(prefix), ln = strlen(name);
    bool ok = ln > 0 && lp + ln + 1 <= n && name[0] != '.' && name[ln - 1] != '.' &&
              !strstr(name, "..") && !strchr(name, '/');
    if (!ok)
        return sg__error(SG_EINVAL, "%s: parameter name '%s' is not a dotted path", fn, name);
    memcpy(out, prefix, lp);
    for (size_t i = 0; i <= ln; i++)
        out[lp + i] = name[i] == '.' ? '/' : name[i];
    return SG_OK;
}

int sg__ckpt_distinct(const sg_params *p)
{
    int k = 0;
    for (int i = 0; i < sg_params_count(p); i++)
        k += sg_params_at(p, i)->alias_of < 0;
    return k;
}
