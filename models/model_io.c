/* model_io.c - a model's hyperparameters as checkpoint attributes, and loading a model
 * from a checkpoint (the file format itself lives in nn/checkpoint*.c). */
#include "models_internal.h"

#include <inttypes.h>
#include <stdlib.h>
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
        m = sg__model_new_uninit(&cfg, dt, 0); /* the checkpoint sets every parameter */
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

/* The optimiser's moments of the distinct parameters, in store order. */
static int moments(sg_model *m, const sg_optim *opt, sg_tensor ***avg, sg_tensor ***sq, int *n)
{
    sg_params *p = m->params;
    int k = 0, count = sg_params_count(p);
    *avg = calloc((size_t)count + 1, sizeof **avg);
    *sq = calloc((size_t)count + 1, sizeof **sq);
    if (!*avg || !*sq)
        return sg__error(SG_ENOMEM, "checkpoint: out of memory");
    for (int i = 0; i < count; i++) {
        if (sg_params_at(p, i)->alias_of >= 0)
            continue;
        (*avg)[k] = sg_optim_exp_avg(opt, i);
        (*sq)[k] = sg_optim_exp_avg_sq(opt, i);
        if (!(*avg)[k] || !(*sq)[k])
            return sg__error(SG_EINVAL, "checkpoint: the optimiser keeps no Adam moments for '%s'",
                             sg_params_at(p, i)->name);
        k++;
    }
    *n = k;
    return SG_OK;
}

int sg_model_save(const char *path, sg_model *m, sg_checkpoint *ck, const sg_optim *opt)
{
    if (!path || !m || !ck)
        return sg__error(SG_EINVAL, "sg_model_save: NULL argument");
    sg_attrs_clear(&ck->model);
    int rc = sg_model_config_to_attrs(&m->cfg, &ck->model);
    sg_tensor **avg = NULL, **sq = NULL;
    int n = 0;
    if (rc == SG_OK && opt) {
        const sg_optim_config *c = sg_optim_get_config(opt);
        sg_attrs *a = &ck->optim;
        ck->has_optim = true;
        ck->optim_step = sg_optim_step_count(opt);
        if ((rc = sg_attrs_set_str(a, "name", sg_optim_kind_name(c->kind))) ||
            (rc = sg_attrs_set_int(a, "step", ck->optim_step)) ||
            (rc = sg_attrs_set_real(a, "lr", c->lr)) ||
            (rc = sg_attrs_set_real(a, "beta1", c->beta1)) ||
            (rc = sg_attrs_set_real(a, "beta2", c->beta2)) ||
            (rc = sg_attrs_set_real(a, "eps", c->eps)) ||
            (rc = sg_attrs_set_real(a, "weight_decay", c->weight_decay)) ||
            (rc = sg_attrs_set_real(a, "clip_norm", c->clip_norm)) ||
            (rc = sg_attrs_set_str(a, "schedule", sg_lr_schedule_name(c->schedule.kind))) ||
            (rc = sg_attrs_set_int(a, "warmup_steps", c->schedule.warmup_steps)) ||
            (rc = sg_attrs_set_real(a, "label_smoothing", c->label_smoothing))) {
            /* rc holds the error */
        }
        if (rc == SG_OK && c->kind != SG_OPTIM_SGD)
            rc = moments(m, opt, &avg, &sq, &n);
    }
    if (rc == SG_OK)
        rc = sg_checkpoint_save(path, ck, m->params, avg, sq, n);
    free(avg);
    free(sq);
    return rc;
}

int sg_model_load_optim(const char *path, sg_model *m, sg_optim *opt)
{
    if (!path || !m || !opt)
        return sg__error(SG_EINVAL, "sg_model_load_optim: NULL argument");
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    int rc = sg_checkpoint_read_meta(path, &ck);
    if (rc == SG_OK && !ck.has_optim)
        rc = sg__error(SG_EFORMAT, "%s: no /optim group: the checkpoint cannot resume training",
                       path);
    sg_optim_config c = *sg_optim_get_config(opt);
    const char *name = NULL, *sched = NULL;
    if (rc == SG_OK) {
        if ((rc = sg_attrs_get_str(&ck.optim, "name", &name)) ||
            (rc = sg_optim_kind_parse(name, &c.kind)) ||
            (rc = sg_attrs_get_real(&ck.optim, "lr", &c.lr)) ||
            (rc = sg_attrs_get_real(&ck.optim, "beta1", &c.beta1)) ||
            (rc = sg_attrs_get_real(&ck.optim, "beta2", &c.beta2)) ||
            (rc = sg_attrs_get_real(&ck.optim, "eps", &c.eps)) ||
            (rc = sg_attrs_get_real(&ck.optim, "weight_decay", &c.weight_decay)) ||
            (rc = sg_attrs_get_real(&ck.optim, "clip_norm", &c.clip_norm)) ||
            (rc = sg_attrs_get_str(&ck.optim, "schedule", &sched)) ||
            (rc = sg_lr_schedule_parse(sched, &c.schedule.kind)) ||
            (rc = sg_attrs_get_int(&ck.optim, "warmup_steps", &c.schedule.warmup_steps)) ||
            (rc = sg_attrs_get_real(&ck.optim, "label_smoothing", &c.label_smoothing)))
            sg__error(rc, "%s: /optim: %s", path, sg_last_error());
    }
    sg_tensor **avg = NULL, **sq = NULL;
    int n = 0;
    int64_t step = 0;
    sg_tensor **tmp_a = NULL, **tmp_s = NULL;
    if (rc == SG_OK)
        rc = moments(m, opt, &avg, &sq, &n);
    if (rc == SG_OK) { /* load into temporaries so a failure changes nothing */
        tmp_a = calloc((size_t)n + 1, sizeof *tmp_a);
        tmp_s = calloc((size_t)n + 1, sizeof *tmp_s);
        if (!tmp_a || !tmp_s)
            rc = sg__error(SG_ENOMEM, "sg_model_load_optim: out of memory");
        for (int k = 0; rc == SG_OK && k < n; k++) {
            tmp_a[k] = sg_tensor_new(avg[k]->dtype, avg[k]->ndim, avg[k]->shape);
            tmp_s[k] = sg_tensor_new(sq[k]->dtype, sq[k]->ndim, sq[k]->shape);
            if (!tmp_a[k] || !tmp_s[k])
                rc = SG_ENOMEM;
        }
    }
    if (rc == SG_OK)
        rc = sg_checkpoint_load_optim(path, m->params, tmp_a, tmp_s, n, &step);
    if (rc == SG_OK)
        rc = sg_optim_set_config(opt, &c);
    if (rc == SG_OK) {
        for (int k = 0; k < n; k++) {
            sg_tensor_copy_(avg[k], tmp_a[k]);
            sg_tensor_copy_(sq[k], tmp_s[k]);
        }
        rc = sg_optim_set_step_count(opt, step);
    }
    for (int k = 0; tmp_a && k < n; k++) {
        sg_tensor_free(tmp_a[k]);
        sg_tensor_free(tmp_s[k]);
    }
    free(tmp_a);
    free(tmp_s);
    free(avg);
    free(sq);
    sg_checkpoint_clear(&ck);
    return rc;
}
