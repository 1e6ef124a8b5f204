/*
 * sg_params.h - the parameter store of a model.
 *
 * Every parameter has its PyTorch state_dict name ("encoder.weight_ih_l0"), a value
 * and a gradient (a heap tensor with requires_grad, owned by the store). Modules keep
 * non-owning pointers to the tensors. Optimisers, clipping, zero_grad and checkpoints
 * are loops over the store. A tied parameter (transformer generator.weight =
 * tgt_embed.weight) is one tensor under two names: the second entry is an alias.
 *
 *     sg_params *p = sg_params_new(SG_F32);
 *     sg_linear_layer lin;
 *     sg_linear_layer_init(&lin, p, "generator", 256, 8000, true);
 *     ...
 *     sg_params_free(p);   // frees every parameter; modules' pointers dangle after
 */
#ifndef SG_PARAMS_H
#define SG_PARAMS_H

#include "sg_autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_PARAM_NAME_MAX 160

typedef struct sg_param {
    char name[SG_PARAM_NAME_MAX]; /* state_dict key */
    sg_tensor *value;             /* owned by the store (aliases share their target's) */
    int alias_of;                 /* -1, or the index of the entry this one aliases */
    /* the gradient is zero but for a few rows (an embedding table's, set by
     * sg_embedding_init; cleared when another name is tied to it): zeroing it
     * (sg_params_zero_grad, sg_optim_step_zero_grad) gives its memory back to the system
     * where it is large */
    bool sparse_grad;
} sg_param;

typedef struct sg_params sg_params;

/* An empty store whose parameters have float dtype dt (SG_F32 for models, SG_F64
 * for gradient checks). NULL on SG_EINVAL (non-float dtype) or SG_ENOMEM. */
SG_API sg_params *sg_params_new(sg_dtype dt);
/* Frees the store and every parameter tensor. Accepts NULL. */
SG_API void sg_params_free(sg_params *p);
SG_API sg_dtype sg_params_dtype(const sg_params *p);

/* Adds a zero-filled parameter requiring grad under name (copied). Returns the
 * tensor (owned by the store) or NULL: SG_EINVAL for a duplicate or too long name or
 * a bad shape, SG_ENOMEM. */
SG_API sg_tensor *sg_params_add(sg_params *p, const char *name, int ndim, const int64_t *shape);
/* Makes name a second name of the existing parameter `target` (tying). */
SG_API int sg_params_alias(sg_params *p, const char *name, const char *target);

/* Number of entries (aliases included) and entry i (0 <= i < count), in order of
 * addition, which is the state_dict order when modules are built in that order. */
SG_API int sg_params_count(const sg_params *p);
SG_API const sg_param *sg_params_at(const sg_params *p, int i);
/* The tensor named name, or NULL (no error recorded). */
SG_API sg_tensor *sg_params_find(const sg_params *p, const char *name);
/* Total elements of distinct parameters (aliases counted once). */
SG_API int64_t sg_params_numel(const sg_params *p);
/* Zeroes every gradient (a large sparse_grad one by giving its pages back: see sg_param). */
SG_API void sg_params_zero_grad(sg_params *p);
/* Fills every parameter with U(lo, hi) from r, in order (aliases skipped). */
SG_API void sg_params_uniform_(sg_params *p, sg_rng *r, double lo, double hi);
/* Copies all values from src into dst (same names and shapes; dtypes may differ);
 * SG_EINVAL naming the first mismatch. */
SG_API int sg_params_copy_values(sg_params *dst, const sg_params *src);

#ifdef __cplusplus
}
#endif
#endif
