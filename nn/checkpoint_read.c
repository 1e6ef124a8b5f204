/* checkpoint_read.c - loading and validating checkpoints (MODELS.md 11).
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

#define MAX_LINKS 100000 /* links visited under /model */
#define MAX_ATTRS 4096   /* attributes read per object */

typedef struct rctx {
    const char *fn;   /* public function, for messages */
    const char *path; /* file, for messages */
    hid_t f;
} rctx;

static int h5err(const rctx *r, int code, const char *what, const char *obj)
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
        rc = h5err(r, SG_EFORMAT, "cannot read", obj);
    } else if (var > 0) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(at, mt, &s) < 0) {
            rc = h5err(r, SG_EFORMAT, "cannot read", obj);
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
            rc = h5err(r, SG_EFORMAT, "cannot read", obj);
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
        rc = h5err(c->r, SG_EFORMAT, "cannot open", obj);
    } else if (H5Sget_simple_extent_npoints(sp) == 1) { /* other shapes are ignored */
        H5T_class_t cls = H5Tget_class(ft);
        if (cls == H5T_INTEGER) {
            int64_t v;
            rc = H5Aread(at, H5T_NATIVE_INT64, &v) < 0 ? h5err(c->r, SG_EFORMAT, "cannot read", obj)
                                                       : sg_attrs_set_int(c->out, name, v);
        } else if (cls == H5T_FLOAT) {
            double v;
            rc = H5Aread(at, H5T_NATIVE_DOUBLE, &v) < 0 ? h5err(c->r, SG_EFORMAT, "cannot read", obj)
                                                        : sg_attrs_set_real(c->out, name, v);
        } else if (cls == H5T_STRING) {
            char *s = NULL;
            rc = read_str_attr(c->r, obj, at, ft, sp, &s);
            if (rc == SG_OK)
                rc = sg_attrs_set_str(c->out, name, s);
            free(s);
        }
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (at >= 0)
        H5Aclose(at);
    c->rc = rc;
    return rc == SG_OK ? 0 : -1;
}

/* Every scalar integer, real or string attribute of obj into out (where = file:objname). */
static int read_attrs(const rctx *r, hid_t obj, const char *objname, sg_attrs *out)
{
    actx c = {r, objname, out, SG_OK, 0};
    snprintf(out->where, sizeof out->where, "%s: '%s':%s", r->fn, r->path, objname);
    hsize_t idx = 0;
    herr_t st = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, attr_cb, &c);
    if (c.rc != SG_OK)
        return c.rc;
    return st < 0 ? h5err(r, SG_EFORMAT, "cannot list the attributes of", objname) : SG_OK;
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
        return h5err(r, SG_EFORMAT, "cannot look up", full);
    if (ex == 0)
        return 0;
    H5L_info_t li;
    if (H5Lget_info(loc, name, &li, H5P_DEFAULT) < 0)
        return h5err(r, SG_EFORMAT, "cannot look up", full);
    if (li.type != H5L_TYPE_HARD)
        return sg__error(SG_EFORMAT, "%s: '%s': %s is a soft or external link", r->fn, r->path,
                         full);
    H5O_info_t oi;
    if (H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return h5err(r, SG_EFORMAT, "cannot look up", full);
    if (oi.type == H5O_TYPE_GROUP)
        return 1;
    if (oi.type == H5O_TYPE_DATASET)
        return 2;
    return sg__error(SG_EFORMAT, "%s: '%s': %s is neither a group nor a dataset", r->fn, r->path,
                     full);
}

/* Opens path read-only after checking it is a non-empty regular HDF5 file, then checks
 * the root attributes format and version. */
static int open_checked(rctx *r)
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
        return h5err(r, SG_EIO, "cannot set up", "file access properties");
    }
    r->f = H5Fopen(r->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (r->f < 0)
        return h5err(r, SG_EFORMAT, "corrupt or truncated HDF5 file,", "cannot open it");
    sg_attrs root = {0};
    int rc = read_attrs(r, r->f, "/", &root);
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

static void close_file(rctx *r)
{
    if (r->f >= 0)
        H5Fclose(r->f);
    r->f = -1;
}

/* Opens group name (e.g. "/model") of the file; SG_EFORMAT if absent (when required). */
static int open_group(const rctx *r, const char *name, bool required, hid_t *g)
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
    return *g < 0 ? h5err(r, SG_EFORMAT, "cannot open", name) : SG_OK;
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
        rc = h5err(r, SG_EFORMAT, "cannot open dataset", full);
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
        rc = h5err(r, SG_EFORMAT, "cannot read dataset", full);
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
        rc = read_attrs(r, d, full, &v->attrs);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "level", SG_ATTR_STR);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "min_freq", SG_ATTR_INT);
    if (rc == SG_OK)
        rc = expect_type(&v->attrs, "max_size", SG_ATTR_INT);
    free(raw);
    if (mt >= 0)
        H5Tclose(mt);
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (d >= 0)
        H5Dclose(d);
    return rc;
}

static int read_rng(const rctx *r, hid_t g, sg_rng *rng)
{
    const char *full = "/train/rng_state";
    hid_t d = H5Dopen2(g, "rng_state", H5P_DEFAULT);
    hid_t ft = d < 0 ? -1 : H5Dget_type(d);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t n = 0;
    int rc = SG_OK;
    if (d < 0 || ft < 0 || sp < 0)
        rc = h5err(r, SG_EFORMAT, "cannot open dataset", full);
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
            rc = h5err(r, SG_EFORMAT, "cannot read dataset", full);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (d >= 0)
        H5Dclose(d);
    return rc;
}

static int read_meta(rctx *r, sg_checkpoint *ck)
{
    char obj[32];
    hid_t g;
    int rc = open_group(r, "/model", true, &g);
    if (rc != SG_OK)
        return rc;
    rc = read_attrs(r, g, "/model", &ck->model);
    H5Gclose(g);
    static const char *const ints[] = {"src_vocab_size", "tgt_vocab_size"};
    if (rc == SG_OK)
        rc = expect_type(&ck->model, "arch", SG_ATTR_STR);
    for (int i = 0; rc == SG_OK && i < 2; i++)
        rc = expect_type(&ck->model, ints[i], SG_ATTR_INT);

    if (rc == SG_OK)
        rc = open_group(r, "/vocab", false, &g);
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
        rc = open_group(r, "/optim", false, &g);
    if (rc == SG_OK && g >= 0) {
        ck->has_optim = true;
        rc = read_attrs(r, g, "/optim", &ck->optim);
        H5Gclose(g);
        if (rc == SG_OK && sg_attrs_find(&ck->optim, "step"))
            rc = sg_attrs_get_int(&ck->optim, "step", &ck->optim_step);
    }

    if (rc == SG_OK)
        rc = open_group(r, "/train", false, &g);
    if (rc == SG_OK && g >= 0) {
        ck->has_train = true;
        rc = read_attrs(r, g, "/train", &ck->train);
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
        rc = open_checked(&r);
        if (rc == SG_OK)
            rc = read_meta(&r, &tmp);
        close_file(&r);
    } H5E_END_TRY;
    if (rc != SG_OK) {
        sg_checkpoint_clear(&tmp);
        return rc;
    }
    sg_checkpoint_clear(ck);
    *ck = tmp;
    return SG_OK;
}

/* ---------------------------------------------------------------- tensors */

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
        rc = h5err(r, SG_EFORMAT, "cannot open dataset", full);
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
        rc = h5err(r, SG_EFORMAT, "cannot read dataset (corrupt or truncated file?)", full);
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
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (d >= 0)
        H5Dclose(d);
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
        c->rc = h5err(r, SG_EFORMAT, "cannot look up", full);
        return -1;
    }
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
    return c->rc != SG_OK ? c->rc : st < 0 ? h5err(r, SG_EFORMAT, "cannot list", gname) : SG_OK;
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
    int rc = open_group(r, "/model", true, &g);
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
        rc = open_checked(&r);
        if (rc == SG_OK)
            rc = load_params(&r, p, flags, tmp);
        close_file(&r);
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
    int rc = open_group(r, "/optim", true, &g);
    if (rc != SG_OK)
        return rc;
    sg_attrs a = {0};
    rc = read_attrs(r, g, "/optim", &a);
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
            rc = open_checked(&r);
            if (rc == SG_OK)
                rc = load_optim(&r, p, tm, tv, &st);
            close_file(&r);
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
