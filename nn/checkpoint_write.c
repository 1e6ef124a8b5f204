/* checkpoint_write.c - sg_checkpoint_save: MODELS.md 11 layout, written atomically
 * (built in memory, written to a temporary file in the target's folder, fsync, rename). */
#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wctx {
    const char *path; /* the target, for messages */
    hid_t f, str_t, lcpl;
} wctx;

static int h5fail(const wctx *w, const char *what, const char *obj)
{
    char why[256];
    sg__ckpt_h5_reason(why, sizeof why);
    return sg__error(SG_EIO, "sg_checkpoint_save: cannot %s %s in '%s'%s%s", what, obj, w->path,
                     why[0] ? ": " : "", why);
}

static int write_attr(const wctx *w, hid_t obj, const char *objname, const sg_attr *a)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ft = a->type == SG_ATTR_INT ? H5T_STD_I64LE
             : a->type == SG_ATTR_REAL ? H5T_IEEE_F64LE : w->str_t;
    hid_t mt = a->type == SG_ATTR_INT ? H5T_NATIVE_INT64
             : a->type == SG_ATTR_REAL ? H5T_NATIVE_DOUBLE : w->str_t;
    const void *buf = a->type == SG_ATTR_INT ? (const void *)&a->i
                    : a->type == SG_ATTR_REAL ? (const void *)&a->r : (const void *)&a->s;
    hid_t at = sp < 0 ? -1 : H5Acreate2(obj, a->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = at < 0 ? -1 : H5Awrite(at, mt, buf);
    SG_H5_CLOSE(at, sp);
    if (st < 0) {
        char what[SG__CKPT_PATH_MAX + SG_ATTR_NAME_MAX + 16];
        snprintf(what, sizeof what, "attribute '%s' of %s", a->name, objname);
        return h5fail(w, "write", what);
    }
    return SG_OK;
}

/* Writes the attributes of a, except those named in skip (NULL-terminated). */
static int write_attrs(const wctx *w, hid_t obj, const char *objname, const sg_attrs *a,
                       const char *const *skip)
{
    for (int i = 0; i < a->n; i++) {
        bool skipped = false;
        for (int k = 0; skip && skip[k]; k++)
            skipped |= strcmp(skip[k], a->items[i].name) == 0;
        if (a->items[i].type == SG_ATTR_STR && !a->items[i].s)
            return sg__error(SG_EINVAL, "sg_checkpoint_save: string attribute '%s' of %s is NULL",
                             a->items[i].name, objname);
        int rc = skipped ? SG_OK : write_attr(w, obj, objname, &a->items[i]);
        if (rc != SG_OK)
            return rc;
    }
    return SG_OK;
}

static int write_scalar(const wctx *w, hid_t obj, const char *objname, const char *name,
                        sg_attr_type type, int64_t i, double r, const char *s)
{
    sg_attr a = {.type = type, .i = i, .r = r, .s = (char *)s};
    snprintf(a.name, sizeof a.name, "%s", name);
    return write_attr(w, obj, objname, &a);
}

/* A float tensor (any float dtype, views ok) as a float32 LE contiguous dataset. */
static int write_f32(const wctx *w, const char *dpath, const sg_tensor *t)
{
    sg_tensor *c = sg_tensor_new(SG_F32, t->ndim, t->shape);
    if (!c)
        return SG_ENOMEM;
    int rc = sg_tensor_copy_(c, t);
    if (rc != SG_OK) {
        sg_tensor_free(c);
        return rc;
    }
    hsize_t dims[SG_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        dims[d] = (hsize_t)t->shape[d];
    hid_t sp = t->ndim ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ds = sp < 0 ? -1
                      : H5Dcreate2(w->f, dpath, H5T_IEEE_F32LE, sp, w->lcpl, H5P_DEFAULT,
                                   H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                       c->data);
    SG_H5_CLOSE(ds, sp);
    sg_tensor_free(c);
    return st < 0 ? h5fail(w, "write dataset", dpath) : SG_OK;
}

static int write_model(const wctx *w, const sg_checkpoint *ck, const sg_params *p)
{
    hid_t g = H5Gcreate2(w->f, "/model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return h5fail(w, "create group", "/model");
    int rc = write_attrs(w, g, "/model", &ck->model, NULL);
    H5Gclose(g);
    for (int i = 0; rc == SG_OK && i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        char dpath[SG__CKPT_PATH_MAX];
        rc = sg__ckpt_param_path("sg_checkpoint_save", "/model/", e->name, dpath, sizeof dpath);
        if (rc != SG_OK)
            break;
        if (e->alias_of < 0) {
            rc = write_f32(w, dpath, e->value);
        } else {
            /* MODELS.md 11.3: a tied parameter is a hard link to its first name. */
            char target[SG__CKPT_PATH_MAX];
            rc = sg__ckpt_param_path("sg_checkpoint_save", "/model/",
                                     sg_params_at(p, e->alias_of)->name, target, sizeof target);
            if (rc == SG_OK && H5Lcreate_hard(w->f, target, w->f, dpath, w->lcpl, H5P_DEFAULT) < 0)
                rc = h5fail(w, "create hard link", dpath);
        }
    }
    return rc;
}

static int write_vocab(const wctx *w, const char *dpath, const sg_ckpt_vocab *v)
{
    for (int64_t i = 0; i < v->n; i++)
        if (!v->tokens || !v->tokens[i])
            return sg__error(SG_EINVAL, "sg_checkpoint_save: %s token %lld is NULL", dpath,
                             (long long)i);
    hsize_t n = (hsize_t)v->n;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(w->f, dpath, w->str_t, sp, w->lcpl, H5P_DEFAULT,
                                        H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : H5Dwrite(ds, w->str_t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->tokens);
    int rc = st < 0 ? h5fail(w, "write dataset", dpath) : write_attrs(w, ds, dpath, &v->attrs, NULL);
    SG_H5_CLOSE(ds, sp);
    return rc;
}

static int write_optim(const wctx *w, const sg_checkpoint *ck, const sg_params *p,
                       sg_tensor *const *m, sg_tensor *const *v, int n_moments)
{
    hid_t g = H5Gcreate2(w->f, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return h5fail(w, "create group", "/optim");
    static const char *const skip[] = {"step", NULL};
    int rc = write_attrs(w, g, "/optim", &ck->optim, skip);
    if (rc == SG_OK && !sg_attrs_find(&ck->optim, "name"))
        rc = write_scalar(w, g, "/optim", "name", SG_ATTR_STR, 0, 0, "adam");
    if (rc == SG_OK)
        rc = write_scalar(w, g, "/optim", "step", SG_ATTR_INT, ck->optim_step, 0, NULL);
    H5Gclose(g);
    for (int i = 0, k = 0; rc == SG_OK && n_moments > 0 && i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        char dpath[SG__CKPT_PATH_MAX];
        rc = sg__ckpt_param_path("sg_checkpoint_save", "/optim/exp_avg/", e->name, dpath,
                                 sizeof dpath);
        if (rc == SG_OK)
            rc = write_f32(w, dpath, m[k]);
        if (rc == SG_OK)
            rc = sg__ckpt_param_path("sg_checkpoint_save", "/optim/exp_avg_sq/", e->name, dpath,
                                     sizeof dpath);
        if (rc == SG_OK)
            rc = write_f32(w, dpath, v[k]);
        k++;
    }
    return rc;
}

static int write_train(const wctx *w, const sg_checkpoint *ck)
{
    hid_t g = H5Gcreate2(w->f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return h5fail(w, "create group", "/train");
    static const char *const skip[] = {"epoch", "step", "best_valid", NULL};
    int rc = write_attrs(w, g, "/train", &ck->train, ck->has_train_state ? skip : NULL);
    if (rc == SG_OK && ck->has_train_state) {
        rc = write_scalar(w, g, "/train", "epoch", SG_ATTR_INT, ck->epoch, 0, NULL);
        if (rc == SG_OK)
            rc = write_scalar(w, g, "/train", "step", SG_ATTR_INT, ck->step, 0, NULL);
        if (rc == SG_OK)
            rc = write_scalar(w, g, "/train", "best_valid", SG_ATTR_REAL, 0, ck->best_valid, NULL);
        hsize_t four = 4;
        hid_t sp = rc == SG_OK ? H5Screate_simple(1, &four, NULL) : -1;
        hid_t ds = sp < 0 ? -1 : H5Dcreate2(g, "rng_state", H5T_STD_U64LE, sp, H5P_DEFAULT,
                                            H5P_DEFAULT, H5P_DEFAULT);
        if (rc == SG_OK &&
            (ds < 0 || H5Dwrite(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                ck->rng.s) < 0))
            rc = h5fail(w, "write dataset", "/train/rng_state");
        SG_H5_CLOSE(ds, sp);
    }
    H5Gclose(g);
    return rc;
}

/* Bob Jenkins' lookup3 hashlittle, byte-wise: HDF5's metadata checksum. */
#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const unsigned char *k, size_t n)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)n;
    uint32_t w[3];
    while (n > 12) {
        for (int j = 0; j < 3; j++)
            w[j] = (uint32_t)k[4 * j] | (uint32_t)k[4 * j + 1] << 8 | (uint32_t)k[4 * j + 2] << 16 |
                   (uint32_t)k[4 * j + 3] << 24;
        a += w[0], b += w[1], c += w[2];
        a -= c, a ^= ROT(c, 4), c += b;
        b -= a, b ^= ROT(a, 6), a += c;
        c -= b, c ^= ROT(b, 8), b += a;
        a -= c, a ^= ROT(c, 16), c += b;
        b -= a, b ^= ROT(a, 19), a += c;
        c -= b, c ^= ROT(b, 4), b += a;
        n -= 12, k += 12;
    }
    if (n == 0)
        return c;
    unsigned char last[12] = {0};
    memcpy(last, k, n);
    for (int j = 0; j < 3; j++)
        w[j] = (uint32_t)last[4 * j] | (uint32_t)last[4 * j + 1] << 8 |
               (uint32_t)last[4 * j + 2] << 16 | (uint32_t)last[4 * j + 3] << 24;
    a += w[0], b += w[1], c += w[2];
    c ^= b, c -= ROT(b, 14);
    a ^= c, a -= ROT(c, 11);
    b ^= a, b -= ROT(a, 25);
    c ^= b, c -= ROT(b, 16);
    a ^= c, a -= ROT(c, 4);
    b ^= a, b -= ROT(a, 14);
    c ^= b, c -= ROT(b, 24);
    return c;
}
#undef ROT

/* HDF5 1.10's H5Fget_file_image clears the superblock's "open for writing" flag in the
 * image but keeps the checksum computed with it set, so every reader would reject the
 * file. Recompute it: superblock v2/v3 = signature(8) version sizeof_addr sizeof_size
 * flags, 4 addresses, checksum (lookup3 of everything before it). */
static void fix_superblock_checksum(unsigned char *img, size_t n)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n < 12 || memcmp(img, sig, 8) != 0 || img[8] < 2)
        return;
    size_t len = 12 + 4 * (size_t)img[9];
    if (len + 4 > n)
        return;
    uint32_t c = lookup3(img, len);
    for (int i = 0; i < 4; i++)
        img[len + (size_t)i] = (unsigned char)(c >> (8 * i));
}

/* Builds the whole file in memory (HDF5 core driver, no backing store) and returns its
 * image in *img (malloc'd, *n bytes). HDF5 never touches the disk here: a failing disk
 * is met by our own write(2) loop below, because HDF5 1.10 cannot close a file whose
 * final flush failed (the id stays open and crashes at library exit). */
static int build_image(wctx *w, const char *name, const sg_checkpoint *ck, const sg_params *p,
                       sg_tensor *const *m, sg_tensor *const *v, int n_moments, void **img,
                       size_t *n)
{
    *img = NULL;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* 1.8 file format: superblock v2 and object headers carry checksums, so corrupt
     * metadata is detected on load; h5py and h5dump read it. */
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return h5fail(w, "set up", "file access properties");
    }
    w->f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w->f < 0)
        return h5fail(w, "create", "the in-memory file");
    int rc = write_scalar(w, w->f, "/", "format", SG_ATTR_STR, 0, 0, SG_CKPT_FORMAT);
    if (rc == SG_OK)
        rc = write_scalar(w, w->f, "/", "version", SG_ATTR_INT, SG_CKPT_VERSION, 0, NULL);
    if (rc == SG_OK)
        rc = write_model(w, ck, p);
    static const char *const vnames[2] = {"/vocab/src", "/vocab/tgt"};
    for (int s = 0; s < 2; s++)
        if (rc == SG_OK && ck->vocab[s].n > 0)
            rc = write_vocab(w, vnames[s], &ck->vocab[s]);
    if (rc == SG_OK && (ck->has_optim || n_moments > 0))
        rc = write_optim(w, ck, p, m, v, n_moments);
    if (rc == SG_OK && (ck->has_train || ck->has_train_state))
        rc = write_train(w, ck);
    if (rc == SG_OK && H5Fflush(w->f, H5F_SCOPE_GLOBAL) < 0)
        rc = h5fail(w, "flush", "the in-memory file");
    ssize_t size = rc == SG_OK ? H5Fget_file_image(w->f, NULL, 0) : -1;
    if (rc == SG_OK && size <= 0)
        rc = h5fail(w, "get", "the file image");
    if (rc == SG_OK && !(*img = malloc((size_t)size)))
        rc = sg__error(SG_ENOMEM, "sg_checkpoint_save: out of memory (%zd bytes for '%s')", size,
                       w->path);
    if (rc == SG_OK && H5Fget_file_image(w->f, *img, (size_t)size) != size)
        rc = h5fail(w, "get", "the file image");
    if (rc == SG_OK)
        fix_superblock_checksum(*img, (size_t)size);
    if (H5Fclose(w->f) < 0 && rc == SG_OK)
        rc = h5fail(w, "close", "the in-memory file");
    w->f = -1;
    if (rc != SG_OK) {
        free(*img);
        *img = NULL;
    }
    *n = rc == SG_OK ? (size_t)size : 0;
    return rc;
}

/* Writes n bytes to the open temporary file and fsyncs it; closes fd. */
static int write_all(const char *path, const char *tmp, int fd, const void *buf, size_t n)
{
    const char *b = buf;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : ENOSPC;
            close(fd);
            return sg__error(SG_EIO, "sg_checkpoint_save: cannot write '%s' (for '%s'): %s", tmp,
                             path, strerror(e));
        }
        b += k;
        n -= (size_t)k;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return sg__error(SG_EIO, "sg_checkpoint_save: cannot fsync '%s': %s", tmp, strerror(e));
    }
    if (close(fd) != 0)
        return sg__error(SG_EIO, "sg_checkpoint_save: cannot close '%s': %s", tmp,
                         strerror(errno));
    return SG_OK;
}

static int check_args(const char *path, const sg_checkpoint *ck, const sg_params *p,
                      sg_tensor *const *m, sg_tensor *const *v, int n_moments)
{
    if (!path || !*path || !ck || !p)
        return sg__error(SG_EINVAL, "sg_checkpoint_save: path, checkpoint and params are required");
    if (n_moments == 0)
        return SG_OK;
    int nd = sg__ckpt_distinct(p);
    if (n_moments != nd || !m || !v)
        return sg__error(SG_EINVAL,
                         "sg_checkpoint_save: %d moments given for %d distinct parameters", n_moments,
                         nd);
    for (int i = 0, k = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        for (int j = 0; j < 2; j++) {
            const sg_tensor *t = j ? v[k] : m[k];
            if (!t || !sg_dtype_is_float(t->dtype))
                return sg__error(SG_EINVAL, "sg_checkpoint_save: %s[%d] of '%s' is %s",
                                 j ? "exp_avg_sq" : "exp_avg", k, e->name,
                                 t ? "not a float tensor" : "NULL");
            bool same = t->ndim == e->value->ndim;
            for (int d = 0; same && d < t->ndim; d++)
                same = t->shape[d] == e->value->shape[d];
            if (!same) {
                char a[96], b[96];
                return sg__error(SG_ESHAPE, "sg_checkpoint_save: %s[%d] is %s, parameter '%s' is %s",
                                 j ? "exp_avg_sq" : "exp_avg", k, sg__shape_str(t, a, sizeof a),
                                 e->name, sg__shape_str(e->value, b, sizeof b));
            }
        }
        k++;
    }
    return SG_OK;
}

/* fsync a directory (makes a rename durable); best effort. */
static void fsync_dir(const char *d)
{
    int fd = open(d, O_DIRECTORY | O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int sg_checkpoint_save(const char *path, const sg_checkpoint *ck, const sg_params *p,
                       sg_tensor *const *exp_avg, sg_tensor *const *exp_avg_sq, int n_moments)
{
    int rc = check_args(path, ck, p, exp_avg, exp_avg_sq, n_moments);
    if (rc != SG_OK)
        return rc;
    /* The temporary file lives in the target's folder so that rename is atomic. */
    size_t len = strlen(path);
    char *tmp = malloc(len + 32), *dir = malloc(len + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return sg__error(SG_ENOMEM, "sg_checkpoint_save: out of memory");
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (slash) {
        memcpy(dir, path, dlen ? dlen : 1);
        dir[dlen ? dlen : 1] = '\0';
    } else {
        strcpy(dir, ".");
    }
    snprintf(tmp, len + 32, "%.*s%s.%s.tmp-XXXXXX", (int)dlen, path, slash ? "/" : "", base);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = sg__error(SG_EIO, "sg_checkpoint_save: cannot create a temporary file in '%s' for '%s': %s",
                       dir, path, strerror(errno));
        goto done;
    }
    fchmod(fd, 0644);
    wctx w = {.path = path, .f = -1, .str_t = -1, .lcpl = -1};
    void *img = NULL;
    size_t n = 0;
    H5E_BEGIN_TRY {
        w.str_t = sg__ckpt_str_type();
        w.lcpl = H5Pcreate(H5P_LINK_CREATE);
        if (w.str_t < 0 || w.lcpl < 0 || H5Pset_create_intermediate_group(w.lcpl, 1) < 0 ||
            H5Pset_char_encoding(w.lcpl, H5T_CSET_UTF8) < 0)
            rc = h5fail(&w, "set up", "string type and link properties");
        else
            rc = build_image(&w, tmp, ck, p, exp_avg, exp_avg_sq, n_moments, &img, &n);
        SG_H5_CLOSE(w.str_t, w.lcpl);
    } H5E_END_TRY;
    if (rc == SG_OK)
        rc = write_all(path, tmp, fd, img, n);
    else
        close(fd);
    free(img);
    if (rc == SG_OK && rename(tmp, path) != 0)
        rc = sg__error(SG_EIO, "sg_checkpoint_save: cannot rename '%s' to '%s': %s", tmp, path,
                       strerror(errno));
    if (rc == SG_OK)
        fsync_dir(dir);
    else
        unlink(tmp);
done:
    free(tmp);
    free(dir);
    return rc;
}
