/* model_io.c - a model's hyperparameters as checkpoint attributes, and loading a model
 * from a checkpoint (the file format itself lives in nn/checkpoint*.c). */
#include "models_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int sg_model_config_to_attrs(const sg_model_config *c, sg_attrs *a)
{
    sg_config_item items[32];
    int n = sg_model_config_items(c, items, 32);
    for (int k = 0; k < n; k++) {
        int rc = items[k].kind == 'i'   ? sg_attrs_set_int(a, items[k].key, items[k].i)
                 : items[k].kind == 'f' ? sg_attrs_set_real(a, items[k].key, items[k].f)
                                        : sg_attrs_set_str(a, items[k].key, items[k].s);
        if (rc != SG_OK)
            return rc;
    }
    return SG_OK;
}

int sg_model_config_from_attrs(const sg_attrs *a, sg_model_config *c)
{
    const char *arch;
    int rc = sg_attrs_get_str(a, "arch", &arch);
    if (rc != SG_OK)
        return rc;
    int ar = sg_arch_parse(arch);
    if (ar < 0)
        return SG_EFORMAT;
    sg_model_config_defaults(c, (sg_arch)ar);
    sg_config_item items[32];
    int n = sg_model_config_items(c, items, 32);
    for (int k = 1; k < n; k++) { /* item 0 is arch */
        const sg_attr *at = sg_attrs_find(a, items[k].key);
        if (!at)
            continue; /* defaults stand */
        char buf[64];
        bool ok = (items[k].kind == 'i' && at->type == SG_ATTR_INT) ||
                  (items[k].kind == 'f' && (at->type == SG_ATTR_REAL || at->type == SG_ATTR_INT)) ||
                  (items[k].kind == 's' && at->type == SG_ATTR_STR);
        if (!ok)
            return sg__error(SG_EFORMAT, "model attribute '%s' has the wrong type", items[k].key);
        if (at->type == SG_ATTR_INT)
            snprintf(buf, sizeof buf, "%" PRId64, at->i);
        else if (at->type == SG_ATTR_REAL)
            snprintf(buf, sizeof buf, "%.17g", at->r);
        rc = sg_model_config_set(c, items[k].key, at->type == SG_ATTR_STR ? at->s : buf);
        if (rc != SG_OK)
            return rc;
    }
    return sg_model_config_validate(c);
}

sg_model *sg_model_load(const char *path, sg_dtype dt, sg_checkpoint *meta)
{
    sg_checkpoint local;
    sg_checkpoint *ck = meta ? meta : &local;
    sg_checkpoint_init(ck);
    sg_model *m = NULL;
    int rc = sg_checkpoint_read_meta(path, ck);
    sg_model_config cfg;
    if (rc == SG_OK && (rc = sg_model_config_from_attrs(&ck->model, &cfg)) != SG_OK)
        sg__error(rc, "%s: /model: %s", path, sg_last_error());
    if (rc == SG_OK)
        m = sg_model_new(&cfg, dt, 0);
    if (m) {
        const char *emb[2] = {"src_embed.weight", "tgt_embed.weight"};
        for (int k = 0; k < 2 && rc == SG_OK; k++)
            if (ck->vocab[k].n > 0)
                rc = sg_checkpoint_check_vocab_size(m->params, emb[k], ck->vocab[k].n);
        if (rc == SG_OK)
            rc = sg_checkpoint_load_params(path, m->params);
        if (rc != SG_OK) {
            sg_model_free(m);
            m = NULL;
        }
    }
    if (!m && meta)
        sg_checkpoint_clear(meta);
    if (!meta)
        sg_checkpoint_clear(&local);
    return m;
}
