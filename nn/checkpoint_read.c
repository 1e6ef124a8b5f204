/* checkpoint_read.c - opening and validating checkpoint files, attributes, vocabularies and
 * training state (sg_checkpoint_read_meta); tensors are in checkpoint_load.c (MODELS.md 11).
 *
 * Nothing read from the file is trusted: every dataset is checked against the shape the
 * caller expects before any buffer is sized, strings are bounded and must be UTF-8, and
 * only hard links are followed (a soft or external link could point outside the file).
 * Values go to temporaries first and reach the caller's tensors only when all passed. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ATTRS 4096   /* attributes read per object */


int sg__ckpt_h5err(const rctx *r, int code, const char *what, const char *obj)
{
    char why[256];
    sg__ckpt_h5_reason(why, sizeof why);
    return sg__error(code, "%s: '%s': %s %s%s%s", r->fn, r->path, what, obj, why[0] ? ": " : "",
                     why);
}

/* Structural UTF-8 check (lead byte ranges and continuation bytes). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : (c & 0xF0) == 0xE0 ? 2
                 : c >= 0xF0 && c <= 0xF4 ? 3 : 4;
        if (k == 4 || n - i < k + 1)
            return false;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

/* Checks and copies one string from the file (NULL = empty vlen). */
static int take_string(const rctx *r, const char *obj, const char *s, size_t max, char **out)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n > max)
        return sg__error(SG_EFORMAT, "%s: '%s': %s is longer than %zu bytes", r->fn, r->path, obj,
                         max);
    if (!utf8_valid((const unsigned char *)(s ? s : ""), n))
        return sg__error(SG_EFORMAT, "%s: '%s': %s is not valid UTF-8", r->fn, r->path, obj);
    char *c = malloc(n + 1);
    if (!c)
        return sg__error(SG_ENOMEM, "%s: out of memory", r->fn);
    memcpy(c, s ? s : "", n);
    c[n] = '\0';
    *out = c;
    return SG_OK;
}

/* ---------------------------------------------------------------- attributes */

typedef struct actx {
    const rctx *r;
    const char *objname;
    sg_attrs *out;
    int rc, count;
} actx;

/* A string attribute (variable or fixed length, one element) as a new C string. */
static int read_str_attr(const rctx *r, const char *obj, hid_t at, hid_t ft, hid_t sp, char **out)
{
    htri_t var = H5Tis_variable_str(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    int rc = SG_OK;
    if (var < 0 || mt < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read", obj);
    } else if (var > 0) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(at, mt, &s) < 0) {
            rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read", obj);
        } else {
            rc = take_string(r, obj, s, SG_ATTR_STR_MAX, out);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &s);
        }
    } else {
        size_t n = H5Tget_size(ft);
        char *buf = n && n <= SG_ATTR_STR_MAX ? calloc(1, n + 1) : NULL;
        if (!buf)
            rc = sg__error(n && n <= SG_ATTR_STR_MAX ? SG_ENOMEM : SG_EFORMAT,
                           "%s: '%s': %s has a bad string size %zu", r->fn, r->path, obj, n);
        else if (H5Tset_size(mt, n) < 0 || H5Aread(at, mt, buf) < 0)
            rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read", obj);
        else
            rc = take_string(r, obj, buf, SG_ATTR_STR_MAX, out);
        free(buf);
    }
    if (mt >= 0)
        H5Tclose(mt);
    return rc;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *user)
{
    (void)info;
    actx *c = user;
    if (++c->count > MAX_ATTRS) {
        c->rc = sg__error(SG_EFORMAT, "%s: '%s': %s has more than %d attributes", c->r->fn,
                          c->r->path, c->objname, MAX_ATTRS);
        return -1;
    }
    if (strlen(name) >= SG_ATTR_NAME_MAX)
        return 0; /* unknown to us by construction: ignored (MODELS.md 11.1) */
    char obj[SG__CKPT_PATH_MAX + SG_ATTR_NAME_MAX + 16];
    snprintf(obj, sizeof obj, "attribute '%s' of %s", name, c->objname);
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = at < 0 ? -1 : H5Aget_type(at);
    hid_t sp = at < 0 ? -1 : H5Aget_space(at);
    int rc = SG_OK;
    if (at < 0 || ft < 0 || sp < 0) {
        rc = sg__ckpt_h5err(c->r, SG_EFORMAT, "cannot open", obj);
    } else if (H5Sget_simple_extent_npoints(sp) == 1) { /* other shapes are ignored */
        H5T_class_t cls = H5Tget_class(ft);
        if (cls == H5T_INTEGER) {
            int64_t v;
            rc = H5Aread(at, H5T_NATIVE_INT64, &v) < 0 ? sg__ckpt_h5err(c->r, SG_EFORMAT, "cannot read", obj)
                                                       : sg_attrs_set_int(c->out, name, v);
        } else if (cls == H5T_FLOAT) {
            double v;
            rc = H5Aread(at, H5T_NATIVE_DOUBLE, &v) < 0 ? sg__ckpt_h5err(c->r, SG_EFORMAT, "cannot read", obj)
                                                        : sg_attrs_set_real(c->out, name, v);
        } else if (cls == H5T_STRING) {
            char *s = NULL;
            rc = read_str_attr(c->r, obj, at, ft, sp, &s);
            if (rc == SG_OK)
                rc = sg_attrs_set_str(c->out, name, s);
            free(s);
        }
    }
    SG_H5_CLOSE(sp, ft, at);
    c->rc = rc;
    return rc == SG_OK ? 0 : -1;
}

/* Every scalar integer, real or string attribute of obj into out (where = file:objname). */
int sg__ckpt_read_attrs(const rctx *r, hid_t obj, const char *objname, sg_attrs *out)
{
    actx c = {r, objname, out, SG_OK, 0};
    snprintf(out->where, sizeof out->where, "%s: '%s':%s", r->fn, r->path, objname);
    /* HDF5 1.10.8's H5Aiterate2 crashes (H5A__close on an unfilled table) when an attribute
     * message fails to decode part-way through building its table. Looking up a name that
     * cannot exist decodes every attribute message first and fails cleanly instead, and the
     * decoded messages are cached for the iteration that follows. */
    if (H5Aexists(obj, "\x01") < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot list the attributes of", objname);
    hsize_t idx = 0;
    herr_t st = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, attr_cb, &c);
    if (c.rc != SG_OK)
        return c.rc;
    return st < 0 ? sg__ckpt_h5err(r, SG_EFORMAT, "cannot list the attributes of", objname) : SG_OK;
}

/* Optional attribute of a given type: SG_EDTYPE naming it when present with another. */
static int expect_type(const sg_attrs *a, const char *name, sg_attr_type t)
{
    const sg_attr *e = sg_attrs_find(a, name);
    if (!e || e->type == t || (t == SG_ATTR_REAL && e->type == SG_ATTR_INT))
        return SG_OK;
    static const char *const tn[] = {"an integer", "a real", "a string"};
    return sg__error(SG_EDTYPE, "%s: attribute '%s' is %s, expected %s", a->where, name,
                     tn[e->type], tn[t]);
}

/* ---------------------------------------------------------------- opening */

/* What name is in loc: 0 absent, 1 group, 2 dataset; SG_EFORMAT for a non-hard link
 * or another kind of object. */
static int child_kind(const rctx *r, hid_t loc, const char *name, const char *full)
{
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot look up", full);
    if (ex == 0)
        return 0;
    H5L_info_t li;
    if (H5Lget_info(loc, name, &li, H5P_DEFAULT) < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot look up", full);
    if (li.type != H5L_TYPE_HARD)
        return sg__error(SG_EFORMAT, "%s: '%s': %s is a soft or external link", r->fn, r->path,
                         full);
    H5O_info_t oi;
    if (H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "cannot look up", full);
    int rc = sg__ckpt_check_ohdr(r, loc, name, full);
    if (rc != SG_OK)
        return rc;
    if (oi.type == H5O_TYPE_GROUP)
        return 1;
    if (oi.type == H5O_TYPE_DATASET)
        return 2;
    return sg__error(SG_EFORMAT, "%s: '%s': %s is neither a group nor a dataset", r->fn, r->path,
                     full);
}

/* Opens path read-only after checking it is a non-empty regular HDF5 file, then checks
 * the root attributes format and version. */
int sg__ckpt_open(rctx *r)
{
    struct stat st;
    r->f = -1;
    if (!r->path)
        return sg__error(SG_EINVAL, "%s: path is NULL", r->fn);
    if (stat(r->path, &st) != 0)
        return sg__error(SG_EIO, "%s: cannot open '%s': %s", r->fn, r->path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return sg__error(SG_EIO, "%s: cannot open '%s': it is a directory", r->fn, r->path);
    if (!S_ISREG(st.st_mode))
        return sg__error(SG_EIO, "%s: cannot open '%s': not a regular file", r->fn, r->path);
    FILE *fp = fopen(r->path, "rb");
    if (!fp)
        return sg__error(SG_EIO, "%s: cannot open '%s': %s", r->fn, r->path, strerror(errno));
    fclose(fp);
    if (st.st_size == 0)
        return sg__error(SG_EFORMAT, "%s: '%s' is empty, not a checkpoint", r->fn, r->path);
    if (H5Fis_hdf5(r->path) <= 0)
        return sg__error(SG_EFORMAT, "%s: '%s' is not an HDF5 file", r->fn, r->path);
    int hrc = sg__ckpt_check_heaps(r->fn, r->path); /* HDF5 would trust them blindly */
    if (hrc != SG_OK)
        return hrc;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return sg__ckpt_h5err(r, SG_EIO, "cannot set up", "file access properties");
    }
    r->f = H5Fopen(r->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (r->f < 0)
        return sg__ckpt_h5err(r, SG_EFORMAT, "corrupt or truncated HDF5 file,", "cannot open it");
    sg_attrs root = {0};
    int rc = sg__ckpt_check_ohdr(r, r->f, "/", "/");
    if (rc == SG_OK)
        rc = sg__ckpt_read_attrs(r, r->f, "/", &root);
    const char *fmt = NULL;
    int64_t ver = 0;
    if (rc == SG_OK)
        rc = sg_attrs_get_str(&root, "format", &fmt);
    if (rc == SG_OK && strcmp(fmt, SG_CKPT_FORMAT) != 0)
        rc = sg__error(SG_EFORMAT, "%s: '%s': format is '%.64s', not '%s'", r->fn, r->path, fmt,
                       SG_CKPT_FORMAT);
    if (rc == SG_OK)
        rc = sg_attrs_get_int(&root, "version", &ver);
    if (rc == SG_OK && ver != SG_CKPT_VERSION)
        rc = sg__error(SG_EFORMAT, "%s: '%s': unsupported checkpoint version %lld (this reader "
                                   "knows version %d)",
                       r->fn, r->path, (long long)ver, SG_CKPT_VERSION);
    sg_attrs_clear(&root);
    if (rc != SG_OK) {
        H5Fclose(r->f);
        r->f = -1;
    }
    return rc;
}

void sg__ckpt_close(rctx *r)
{
    if (r->f >= 0)
        H5Fclose(r->f);
    r->f = -1;
}

/* Opens group name (e.g. "/model") of the file; SG_EFORMAT if absent (when required). */
int sg__ckpt_open_group(const rctx *r, const char *name, bool required, hid_t *g)
{
    *g = -1;
    int k = child_kind(r, r->f, name + 1, name);
    if (k < 0)
        return k;
    if (k != 1) {
        if (!required && k == 0)
            return SG_OK;
        return sg__error(SG_EFORMAT, "%s: '%s': %s is %s", r->fn, r->path, name,
                         k == 0 ? "missing" : "not a group");
    }
    *g = H5Gopen2(r->f, name, H5P_DEFAULT);
    return *g < 0 ? sg__ckpt_h5err(r, SG_EFORMAT, "cannot open", name) : SG_OK;
}

/* ---------------------------------------------------------------- meta */

static int read_vocab(const rctx *r, hid_t g, const char *name, sg_ckpt_vocab *v)
{
    char full[32];
    snprintf(full, sizeof full, "/vocab/%s", name);
    int k = child_kind(r, g, name, full);
    if (k <= 0)
        return k;
    if (k != 2)
        return sg__error(SG_EFORMAT, "%s: '%s': %s is not a dataset", r->fn, r->path, full);
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t ft = d < 0 ? -1 : H5Dget_type(d);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hid_t mt = sg__ckpt_str_type();
    char **raw = NULL;
    hsize_t n = 0;
    int rc = SG_OK;
    if (d < 0 || ft < 0 || sp < 0 || mt < 0)
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot open dataset", full);
    else if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) <= 0)
        rc = sg__error(SG_EDTYPE, "%s: '%s': dataset %s must hold variable-length strings",
                       r->fn, r->path, full);
    else if (H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &n, NULL) < 0)
        rc = sg__error(SG_ESHAPE, "%s: '%s': dataset %s must be 1-D", r->fn, r->path, full);
    else if (n < 4 || n > SG_CKPT_VOCAB_MAX)
        rc = sg__error(SG_ESHAPE, "%s: '%s': dataset %s has %llu entries (must be 4 to %d)",
                       r->fn, r->path, full, (unsigned long long)n, SG_CKPT_VOCAB_MAX);
    else if (!(raw = calloc((size_t)n, sizeof *raw)) || !(v->tokens = calloc((size_t)n, sizeof(char *))))
        rc = sg__error(SG_ENOMEM, "%s: out of memory for %s", r->fn, full);
    else if ((rc = sg__ckpt_check_vlen(r->fn, r->path, r->f, d, full, n)) != SG_OK)
        ; /* HDF5 would follow corrupt heap references blindly */
    else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0)
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read dataset", full);
    else {
        static const char *const specials[4] = {"<pad>", "<unk>", "<s>", "</s>"};
        for (hsize_t i = 0; rc == SG_OK && i < n; i++) {
            char obj[64];
            snprintf(obj, sizeof obj, "%s entry %llu", full, (unsigned long long)i);
            rc = take_string(r, obj, raw[i], SG_CKPT_TOKEN_MAX, &v->tokens[i]);
            if (rc == SG_OK)
                v->n = (int64_t)i + 1;
            if (rc == SG_OK && i < 4 && strcmp(v->tokens[i], specials[i]) != 0)
                rc = sg__error(SG_EFORMAT, "%s: '%s': %s is '%.32s', expected '%s'", r->fn,
                               r->path, obj, v->tokens[i], specials[i]);
        }
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
    }
    if (rc == SG_OK)
        rc = sg__ckpt_read_attrs(r, d, full, &v->attrs);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "level", SG_ATTR_STR);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "min_freq", SG_ATTR_INT);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "max_size", SG_ATTR_INT);
    free(raw);
    SG_H5_CLOSE(mt, sp, ft, d);
    return rc;
}

static int read_rng(const rctx *r, hid_t g, sg_rng *rng)
{
    const char *full = "/train/rng_state";
    int rc = child_kind(r, g, "rng_state", full);
    if (rc != 2)
        return rc < 0 ? rc : sg__error(SG_EFORMAT, "%s: '%s': %s is %s", r->fn, r->path, full,
                                       rc == 0 ? "missing" : "not a dataset");
    hid_t d = H5Dopen2(g, "rng_state", H5P_DEFAULT);
    hid_t ft = d < 0 ? -1 : H5Dget_type(d);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t n = 0;
    rc = SG_OK;
    if (d < 0 || ft < 0 || sp < 0)
        rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot open dataset", full);
    else if (H5Tget_class(ft) != H5T_INTEGER || H5Tget_size(ft) != 8)
        rc = sg__error(SG_EDTYPE, "%s: '%s': dataset %s must hold 64-bit integers", r->fn,
                       r->path, full);
    else if (H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &n, NULL) < 0 ||
             n != 4)
        rc = sg__error(SG_ESHAPE, "%s: '%s': dataset %s must have shape [4]", r->fn, r->path, full);
    else {
        /* Read the raw 64-bit words (u64 or i64 in the file) without value conversion. */
        hid_t mt = H5Tget_sign(ft) == H5T_SGN_NONE ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64;
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rng->s) < 0)
            rc = sg__ckpt_h5err(r, SG_EFORMAT, "cannot read dataset", full);
    }
    SG_H5_CLOSE(sp, ft, d);
    return rc;
}

static int read_meta(rctx *r, sg_checkpoint *ck)
{
    char obj[32];
    hid_t g;
    int rc = sg__ckpt_open_group(r, "/model", true, &g);
    if (rc != SG_OK)
        return rc;
    rc = sg__ckpt_read_attrs(r, g, "/model", &ck->model);
    H5Gclose(g);
    static const char *const ints[] = {"src_vocab_size", "tgt_vocab_size"};
    if (rc == SG_OK)
        rc = expect_type(&ck->model, "arch", SG_ATTR_STR);
    for (int i = 0; rc == SG_OK && i < 2; i++)
        rc = expect_type(&ck->model, ints[i], SG_ATTR_INT);

    if (rc == SG_OK)
        rc = sg__ckpt_open_group(r, "/vocab", false, &g);
    if (rc == SG_OK && g >= 0) {
        rc = read_vocab(r, g, "src", &ck->vocab[SG_VOCAB_SRC]);
        if (rc == SG_OK)
            rc = read_vocab(r, g, "tgt", &ck->vocab[SG_VOCAB_TGT]);
        H5Gclose(g);
    }
    for (int s = 0; rc == SG_OK && s < 2; s++) {
        const sg_attr *a = sg_attrs_find(&ck->model, ints[s]);
        if (a && ck->vocab[s].n > 0 && a->i != ck->vocab[s].n)
            rc = sg__error(SG_ESHAPE, "%s: '%s': /vocab/%s has %lld tokens but /model attribute "
                                      "%s is %lld",
                           r->fn, r->path, s ? "tgt" : "src", (long long)ck->vocab[s].n, ints[s],
                           (long long)a->i);
    }

    if (rc == SG_OK)
        rc = sg__ckpt_open_group(r, "/optim", false, &g);
    if (rc == SG_OK && g >= 0) {
        ck->has_optim = true;
        rc = sg__ckpt_read_attrs(r, g, "/optim", &ck->optim);
        H5Gclose(g);
        if (rc == SG_OK && sg_attrs_find(&ck->optim, "step"))
            rc = sg_attrs_get_int(&ck->optim, "step", &ck->optim_step);
    }

    if (rc == SG_OK)
        rc = sg__ckpt_open_group(r, "/train", false, &g);
    if (rc == SG_OK && g >= 0) {
        ck->has_train = true;
        rc = sg__ckpt_read_attrs(r, g, "/train", &ck->train);
        snprintf(obj, sizeof obj, "/train/rng_state");
        int k = rc == SG_OK ? child_kind(r, g, "rng_state", obj) : 0;
        if (k < 0)
            rc = k;
        if (rc == SG_OK && k == 2) {
            ck->has_train_state = true;
            rc = read_rng(r, g, &ck->rng);
        }
        H5Gclose(g);
        if (rc == SG_OK && sg_attrs_find(&ck->train, "epoch"))
            rc = sg_attrs_get_int(&ck->train, "epoch", &ck->epoch);
        if (rc == SG_OK && sg_attrs_find(&ck->train, "step"))
            rc = sg_attrs_get_int(&ck->train, "step", &ck->step);
        if (rc == SG_OK && sg_attrs_find(&ck->train, "best_valid"))
            rc = sg_attrs_get_real(&ck->train, "best_valid", &ck->best_valid);
    }
    return rc;
}

int sg_checkpoint_read_meta(const char *path, sg_checkpoint *ck)
{
    if (!ck)
        return sg__error(SG_EINVAL, "sg_checkpoint_read_meta: checkpoint is NULL");
    rctx r = {"sg_checkpoint_read_meta", path, -1};
    sg_checkpoint tmp;
    sg_checkpoint_init(&tmp);
    int rc;
    H5E_BEGIN_TRY {
        rc = sg__ckpt_open(&r);
        if (rc == SG_OK)
            rc = read_meta(&r, &tmp);
        sg__ckpt_close(&r);
    } H5E_END_TRY;
    if (rc != SG_OK) {
        sg_checkpoint_clear(&tmp);
        return rc;
    }
    sg_checkpoint_clear(ck);
    *ck = tmp;
    return SG_OK;
}
