/* params.c - the named parameter store. */
#include "nn_internal.h"

#include <stdlib.h>
#include <string.h>

struct sg_params {
    sg_dtype dtype;
    int n, cap;
    sg_param *items;
};

sg_params *sg_params_new(sg_dtype dt)
{
    if (!sg_dtype_is_float(dt)) {
        sg__error(SG_EINVAL, "sg_params_new: dtype %s is not a float type", sg_dtype_name(dt));
        return NULL;
    }
    sg_params *p = calloc(1, sizeof *p);
    if (!p)
        sg__error(SG_ENOMEM, "sg_params_new: out of memory");
    else
        p->dtype = dt;
    return p;
}

void sg_params_free(sg_params *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        if (p->items[i].alias_of < 0)
            sg_tensor_free(p->items[i].value);
    free(p->items);
    free(p);
}

sg_dtype sg_params_dtype(const sg_params *p) { return p->dtype; }

static int find(const sg_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0)
            return i;
    return -1;
}

static sg_param *push(sg_params *p, const char *name)
{
    if (!name || !*name || strlen(name) >= SG_PARAM_NAME_MAX) {
        sg__error(SG_EINVAL, "sg_params_add: invalid parameter name '%s'", name ? name : "(null)");
        return NULL;
    }
    if (find(p, name) >= 0) {
        sg__error(SG_EINVAL, "sg_params_add: duplicate parameter name '%s'", name);
        return NULL;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        sg_param *it = realloc(p->items, sizeof *it * (size_t)cap);
        if (!it) {
            sg__error(SG_ENOMEM, "sg_params_add: out of memory");
            return NULL;
        }
        p->items = it;
        p->cap = cap;
    }
    sg_param *e = &p->items[p->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->alias_of = -1;
    return e;
}

sg_tensor *sg_params_add(sg_params *p, const char *name, int ndim, const int64_t *shape)
{
    if (!p) {
        sg__error(SG_EINVAL, "sg_params_add: store is NULL");
        return NULL;
    }
    sg_param *e = push(p, name);
    if (!e)
        return NULL;
    sg_tensor *t = sg_tensor_new(p->dtype, ndim, shape);
    if (!t)
        return NULL;
    if (sg_tensor_set_requires_grad(t, true) != SG_OK) {
        sg_tensor_free(t);
        return NULL;
    }
    e->value = t;
    p->n++;
    return t;
}

int sg_params_alias(sg_params *p, const char *name, const char *target)
{
    int k = find(p, target);
    if (k < 0)
        return sg__error(SG_EINVAL, "sg_params_alias: no parameter '%s' to tie '%s' to", target,
                         name);
    sg_param *e = push(p, name);
    if (!e)
        return SG_EINVAL;
    while (p->items[k].alias_of >= 0)
        k = p->items[k].alias_of;
    e->value = p->items[k].value;
    e->alias_of = k;
    p->items[k].sparse_grad = false; /* the other use (a generator) fills every row */
    p->n++;
    return SG_OK;
}

void sg__params_mark_sparse_grad(sg_params *p, const sg_tensor *t)
{
    for (int i = 0; i < p->n; i++)
        if (p->items[i].value == t && p->items[i].alias_of < 0)
            p->items[i].sparse_grad = true;
}

void sg__param_zero_grad(const sg_param *e)
{
    sg_tensor *t = e->value;
    if (e->sparse_grad && t->grad)
        sg__zero_pages(t->grad, (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype));
    else
        sg_tensor_zero_grad(t);
}

int sg_params_count(const sg_params *p) { return p->n; }

const sg_param *sg_params_at(const sg_params *p, int i)
{
    return i >= 0 && i < p->n ? &p->items[i] : NULL;
}

sg_tensor *sg_params_find(const sg_params *p, const char *name)
{
    int k = find(p, name);
    return k < 0 ? NULL : p->items[k].value;
}

int64_t sg_params_numel(const sg_params *p)
{
    int64_t n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->items[i].alias_of < 0)
            n += sg_tensor_numel(p->items[i].value);
    return n;
}

void sg_params_zero_grad(sg_params *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->items[i].alias_of < 0)
            sg__param_zero_grad(&p->items[i]);
}

void sg_params_uniform_(sg_params *p, sg_rng *r, double lo, double hi)
{
    for (int i = 0; i < p->n; i++)
        if (p->items[i].alias_of < 0)
            sg_tensor_uniform_(p->items[i].value, r, lo, hi);
}

int sg_params_copy_values(sg_params *dst, const sg_params *src)
{
    if (dst->n != src->n)
        return sg__error(SG_EINVAL, "sg_params_copy_values: %d parameters vs %d", dst->n, src->n);
    for (int i = 0; i < dst->n; i++) {
        if (strcmp(dst->items[i].name, src->items[i].name) != 0)
            return sg__error(SG_EINVAL, "sg_params_copy_values: entry %d is '%s' vs '%s'", i,
                             dst->items[i].name, src->items[i].name);
        if (dst->items[i].alias_of >= 0)
            continue;
        int rc = sg_tensor_copy_(dst->items[i].value, src->items[i].value);
        if (rc != SG_OK)
            return rc;
    }
    return SG_OK;
}
