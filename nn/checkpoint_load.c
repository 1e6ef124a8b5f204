/* checkpoint_load.c - loading parameters and optimiser moments (MODELS.md 11.2, 11.5):
 * everything is read into temporaries and checked (presence, float32 type, shape,
 * finiteness, unexpected datasets) before the caller's tensors are touched. */
#include "checkpoint_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINKS 100000 /* datasets visited under /model or /optim */

/* Dataset rel (below loc; full is its absolute name) into a new f32 tensor of like's
 * shape, checking type, shape and finiteness. */
static int read_f32(const rctx *r, hid_t loc, const char *rel, const char *full,
                    const sg_param *like, sg_tensor **out)
{
    const sg_tensor *w = like->value;
    hid_t d = H5Dopen2(loc, rel, H5P_DEFAULT);
    hid_t ft = d < 0 ? -1 : H5Dget_type(d);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    sg_tensor *t = NULL;
    int rc = SG_OK;
    if (d < 0 || ft < 0 || sp < 0) {
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot open dataset", full);
        goto done;
    }
    if (H5Tequal(ft, H5T_IEEE_F32LE) <= 0) {
        H5T_class_t c = H5Tget_class(ft);
        rc = sg__error(SG_EDTYPE, "%s: '%s': dataset %s is %s of %zu bytes, expected float32 "
                                  "little-endian (H5T_IEEE_F32LE)",
                       r->fn, r->path, full,
                       c == H5T_FLOAT ? "a float" : c == H5T_INTEGER ? "an integer"
                       : c == H5T_STRING ? "a string" : "another type",
                       H5Tget_size(ft));
        goto done;
    }
    H5S_class_t sc = H5Sget_simple_extent_type(sp);
    int nd = sc == H5S_SCALAR ? 0 : sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[H5S_MAX_RANK];
    bool same = nd == w->ndim && (nd == 0 || H5Sget_simple_extent_dims(sp, dims, NULL) == nd);
    for (int i = 0; same && i < nd; i++)
        same = dims[i] == (hsize_t)w->shape[i];
    if (!same) {
        char fs[128] = "(not a simple dataspace)", ps[96];
        if (nd >= 0 && nd <= H5S_MAX_RANK && (nd == 0 || H5Sget_simple_extent_dims(sp, dims, NULL) == nd)) {
            size_t k = (size_t)snprintf(fs, sizeof fs, "[");
            for (int i = 0; i < nd && k < sizeof fs; i++)
                k += (size_t)snprintf(fs + k, sizeof fs - k, i ? ",%llu" : "%llu",
                                      (unsigned long long)dims[i]);
            if (k < sizeof fs)
                snprintf(fs + k, sizeof fs - k, "]");
        }
        rc = sg__error(SG_ESHAPE, "%s: '%s': dataset %s has shape %s, parameter '%s' is %s",
                       r->fn, r->path, full, fs, like->name, sg__shape_str(w, ps, sizeof ps));
        goto done;
    }
    t = sg_tensor_new(SG_F32, w->ndim, w->shape);
    if (!t) {
        rc = SG_ENOMEM;
        goto done;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read dataset (corrupt or truncated file?)", full);
        goto done;
    }
    const float *x = t->data;
    for (int64_t i = 0, n = sg_tensor_numel(t); i < n; i++)
        if (!isfinite(x[i])) {
            rc = sg__error(SG_ENUMERIC, "%s: '%s': dataset %s element %lld is %s", r->fn, r->path,
                           full, (long long)i, isnan(x[i]) ? "NaN" : "Inf");
            goto done;
        }
done:
    if (rc != SG_OK) {
        sg_tensor_free(t);
        t = NULL;
    }
    *out = t;
    SG_H5_CLOSE(sp, ft, d);
    return rc;
}

/* Every dataset reachable below /model through hard links, by path relative to it. */
typedef struct vlink {
    char *rel;
    haddr_t addr;
    bool used;
} vlink;

typedef struct vctx {
    const rctx *r;
    const char *gname; /* "/model" or "/optim" */
    vlink *items;
    int n, cap, rc;
} vctx;

static herr_t visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *user)
{
    vctx *c = user;
    const rctx *r = c->r;
    if (info->type != H5L_TYPE_HARD) {
        c->rc = sg__error(SG_EFORMAT, "%s: '%s': %s/%.200s is a soft or external link", r->fn,
                          r->path, c->gname, name);
        return -1;
    }
    H5O_info_t oi;
    if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
        char full[SG__CKPT_PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", c->gname, name);
        c->rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot look up", full);
        return -1;
    }
    char full[SG__CKPT_PATH_MAX + 16];
    snprintf(full, sizeof full, "%s/%.200s", c->gname, name);
    if ((c->rc = sg__ckpt_check_ohdr(r, g, name, full)) != SG_OK)
        return -1;
    if (oi.type != H5O_TYPE_DATASET)
        return 0;
    if (c->n >= MAX_LINKS) {
        c->rc = sg__error(SG_EFORMAT, "%s: '%s': %s holds more than %d datasets", r->fn,
                          r->path, c->gname, MAX_LINKS);
        return -1;
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        vlink *it = realloc(c->items, sizeof *it * (size_t)cap);
        if (!it) {
            c->rc = sg__error(SG_ENOMEM, "%s: out of memory", r->fn);
            return -1;
        }
        c->items = it;
        c->cap = cap;
    }
    char *rel = strdup(name);
    if (!rel) {
        c->rc = sg__error(SG_ENOMEM, "%s: out of memory", r->fn);
        return -1;
    }
    c->items[c->n++] = (vlink){rel, oi.addr, false};
    return 0;
}

/* Visits group g (named gname) recursively into c; rejects soft and external links. */
static int visit_datasets(const rctx *r, hid_t g, const char *gname, vctx *c)
{
    *c = (vctx){.r = r, .gname = gname, .rc = SG_OK};
    herr_t st = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_NATIVE, visit_cb, c);
    return c->rc != SG_OK ? c->rc : st < 0 ? sg__ckpt_h5err(r, SG_EFORMAT, "cannot list", gname) : SG_OK;
}

static void vctx_free(vctx *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->items[i].rel);
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

static vlink *vfind(vctx *c, const char *rel)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->items[i].rel, rel) == 0)
            return &c->items[i];
    return NULL;
}

static int load_params(rctx *r, sg_params *p, unsigned flags, sg_tensor **tmp)
{
    hid_t g;
    int rc = sg__ckpt_open_group(r, "/model", true, &g);
    if (rc != SG_OK)
        return rc;
    vctx c;
    rc = visit_datasets(r, g, "/model", &c);
    int np = sg_params_count(p);
    for (int i = 0; rc == SG_OK && i < np; i++) {
        const sg_param *e = sg_params_at(p, i);
        char full[SG__CKPT_PATH_MAX];
        rc = sg__ckpt_param_path(r->fn, "/model/", e->name, full, sizeof full);
        if (rc != SG_OK)
            break;
        const char *rel = full + strlen("/model/");
        vlink *l = vfind(&c, rel);
        if (l)
            l->used = true;
        if (e->alias_of < 0) {
            if (!l)
                rc = sg__error(SG_EFORMAT, "%s: '%s': missing parameter '%s' (dataset %s)", r->fn,
                               r->path, e->name, full);
            else
                rc = read_f32(r, g, rel, full, e, &tmp[i]);
            continue;
        }
        /* A tied name (MODELS.md 11.3): a hard link to the target, absent, or a copy
         * equal to it. */
        char tfull[SG__CKPT_PATH_MAX];
        const sg_param *te = sg_params_at(p, e->alias_of);
        sg__ckpt_param_path(r->fn, "/model/", te->name, tfull, sizeof tfull);
        vlink *tl = vfind(&c, tfull + strlen("/model/"));
        if (!l || (tl && tl->addr == l->addr))
            continue;
        sg_tensor *copy = NULL;
        rc = read_f32(r, g, rel, full, e, &copy);
        if (rc == SG_OK && memcmp(copy->data, tmp[e->alias_of]->data,
                                  sizeof(float) * (size_t)sg_tensor_numel(copy)) != 0)
            rc = sg__error(SG_EFORMAT, "%s: '%s': tied parameter '%s' (dataset %s) differs from "
                                       "'%s'",
                           r->fn, r->path, e->name, full, te->name);
        sg_tensor_free(copy);
    }
    for (int i = 0; rc == SG_OK && !(flags & SG_CKPT_ALLOW_EXTRA) && i < c.n; i++)
        if (!c.items[i].used) {
            char name[SG__CKPT_PATH_MAX];
            snprintf(name, sizeof name, "%s", c.items[i].rel);
            for (char *q = name; *q; q++)
                *q = *q == '/' ? '.' : *q;
            rc = sg__error(SG_EFORMAT, "%s: '%s': unexpected parameter '%s' (dataset /model/%s) "
                                       "that the model does not have",
                           r->fn, r->path, name, c.items[i].rel);
        }
    vctx_free(&c);
    H5Gclose(g);
    return rc;
}

int sg_checkpoint_load_params_ex(const char *path, sg_params *p, unsigned flags)
{
    const char *fn = "sg_checkpoint_load_params";
    if (!p)
        return sg__error(SG_EINVAL, "%s: params is NULL", fn);
    int np = sg_params_count(p);
    sg_tensor **tmp = calloc(np ? (size_t)np : 1, sizeof *tmp);
    if (!tmp)
        return sg__error(SG_ENOMEM, "%s: out of memory", fn);
    rctx r = {fn, path, -1};
    int rc;
    H5E_BEGIN_TRY {
        rc = sg__ckpt_open(&r);
        if (rc == SG_OK)
            rc = load_params(&r, p, flags, tmp);
        sg__ckpt_close(&r);
    } H5E_END_TRY;
    /* Everything was read and checked: only now touch the store. */
    for (int i = 0; rc == SG_OK && i < np; i++)
        if (tmp[i])
            rc = sg_tensor_copy_(sg_params_at(p, i)->value, tmp[i]);
    for (int i = 0; i < np; i++)
        sg_tensor_free(tmp[i]);
    free(tmp);
    return rc;
}

int sg_checkpoint_load_params(const char *path, sg_params *p)
{
    return sg_checkpoint_load_params_ex(path, p, 0);
}

static int load_optim(rctx *r, const sg_params *p, sg_tensor **tm, sg_tensor **tv, int64_t *step)
{
    hid_t g;
    int rc = sg__ckpt_open_group(r, "/optim", true, &g);
    if (rc != SG_OK)
        return rc;
    sg_attrs a = {0};
    rc = sg__ckpt_read_attrs(r, g, "/optim", &a);
    if (rc == SG_OK)
        rc = sg_attrs_get_int(&a, "step", step);
    sg_attrs_clear(&a);
    vctx c = {0};
    if (rc == SG_OK)
        rc = visit_datasets(r, g, "/optim", &c);
    for (int i = 0, k = 0; rc == SG_OK && i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        for (int j = 0; rc == SG_OK && j < 2; j++) {
            char full[SG__CKPT_PATH_MAX];
            rc = sg__ckpt_param_path(r->fn, j ? "/optim/exp_avg_sq/" : "/optim/exp_avg/", e->name,
                                     full, sizeof full);
            if (rc != SG_OK)
                break;
            const char *rel = full + strlen("/optim/");
            if (!vfind(&c, rel))
                rc = sg__error(SG_EFORMAT, "%s: '%s': missing optimiser state of '%s' (dataset %s)",
                               r->fn, r->path, e->name, full);
            else
                rc = read_f32(r, g, rel, full, e, j ? &tv[k] : &tm[k]);
        }
        k++;
    }
    vctx_free(&c);
    H5Gclose(g);
    return rc;
}

int sg_checkpoint_load_optim(const char *path, const sg_params *p, sg_tensor *const *exp_avg,
                             sg_tensor *const *exp_avg_sq, int n_moments, int64_t *step)
{
    const char *fn = "sg_checkpoint_load_optim";
    if (!p || !exp_avg || !exp_avg_sq)
        return sg__error(SG_EINVAL, "%s: params and moment arrays are required", fn);
    int nd = sg__ckpt_distinct(p);
    if (n_moments != nd)
        return sg__error(SG_EINVAL, "%s: %d moments given for %d distinct parameters", fn,
                         n_moments, nd);
    for (int i = 0, k = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        for (int j = 0; j < 2; j++) {
            const sg_tensor *t = j ? exp_avg_sq[k] : exp_avg[k];
            if (!t || !sg_dtype_is_float(t->dtype) || sg_tensor_numel(t) != sg_tensor_numel(e->value) ||
                t->ndim != e->value->ndim)
                return sg__error(SG_EINVAL, "%s: %s[%d] does not match parameter '%s'", fn,
                                 j ? "exp_avg_sq" : "exp_avg", k, e->name);
            for (int d = 0; d < t->ndim; d++)
                if (t->shape[d] != e->value->shape[d])
                    return sg__error(SG_ESHAPE, "%s: %s[%d] does not match the shape of '%s'", fn,
                                     j ? "exp_avg_sq" : "exp_avg", k, e->name);
        }
        k++;
    }
    sg_tensor **tm = calloc(nd ? (size_t)nd : 1, sizeof *tm);
    sg_tensor **tv = calloc(nd ? (size_t)nd : 1, sizeof *tv);
    int rc = SG_OK;
    int64_t st = 0;
    if (!tm || !tv)
        rc = sg__error(SG_ENOMEM, "%s: out of memory", fn);
    rctx r = {fn, path, -1};
    if (rc == SG_OK) {
        H5E_BEGIN_TRY {
            rc = sg__ckpt_open(&r);
            if (rc == SG_OK)
                rc = load_optim(&r, p, tm, tv, &st);
            sg__ckpt_close(&r);
        } H5E_END_TRY;
    }
    for (int k = 0; rc == SG_OK && k < nd; k++) {
        rc = sg_tensor_copy_(exp_avg[k], tm[k]);
        if (rc == SG_OK)
            rc = sg_tensor_copy_(exp_avg_sq[k], tv[k]);
    }
    if (rc == SG_OK && step)
        *step = st;
    for (int k = 0; k < nd && tm && tv; k++) {
        sg_tensor_free(tm[k]);
        sg_tensor_free(tv[k]);
    }
    free(tm);
    free(tv);
    return rc;
}
