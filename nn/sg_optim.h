/*
 * sg_optim.h - optimisers (SGD, Adam, AdamW), global-norm gradient clipping and
 * learning-rate schedules over an sg_params store (MODELS.md 8.2, PyTorch 1.13
 * torch.optim semantics).
 *
 *     sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);  // lr 1e-3, (0.9, 0.999)
 *     c.clip_norm = 1.0;
 *     c.schedule = (sg_lr_schedule){.kind = SG_LR_INVERSE_SQRT, .warmup_steps = 1000};
 *     sg_optim *opt = sg_optim_new(params, &c);
 *     for (...) {
 *         sg_params_zero_grad(params);
 *         ... forward, sg_backward ...
 *         double gnorm;
 *         if (sg_optim_step(opt, &gnorm) != SG_OK) ... sg_last_error()
 *     }
 * (or, with the gradients zero to begin with, sg_optim_step_zero_grad at the end of each
 * iteration instead of the zero_grad at its start: one pass less over the gradients)
 *     sg_optim_free(opt);
 *
 * One update k = sg_optim_step_count() + 1 does:
 *   1. if clip_norm > 0: N = sqrt(sum of g^2 over distinct parameters); if
 *      clip_norm / (N + 1e-6) < 1, every g *= that coefficient (torch clip_grad_norm_).
 *   2. lr_k = schedule(lr, k) (sg_lr_schedule_at).
 *   3. the optimiser update of every distinct parameter (alias entries of the store
 *      share their target's tensor and are skipped):
 *      SGD:   d = g + wd θ; buf = (k == 1) ? d : μ buf + (1-dampening) d;
 *             d = nesterov ? d + μ buf : buf (when μ > 0); θ -= lr_k d
 *      Adam:  g += wd θ; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
 *             θ -= (lr_k / (1-β1^k)) m / (sqrt(v) / sqrt(1-β2^k) + eps)
 *      AdamW: θ *= 1 - lr_k wd, then Adam with wd = 0.
 * Gradients are used as they are (the caller zeroes them); clipping scales them in place.
 *
 * State (everything a checkpoint needs, MODELS.md 11.5): the config (hyperparameters,
 * schedule, label_smoothing carried along), the number of completed updates, and per
 * store entry i the moment tensors sg_optim_exp_avg(o, i) / sg_optim_exp_avg_sq(o, i)
 * (parameter shape and dtype, owned by the optimiser; NULL for alias entries).
 * Restoring = sg_optim_set_step_count + copying saved values into those tensors; the
 * next update then matches the uninterrupted run bit for bit.
 */
#ifndef SG_OPTIM_H
#define SG_OPTIM_H

#include "sg_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- learning-rate schedules ----------------------------------------------------- */

typedef enum sg_lr_schedule_kind {
    SG_LR_CONSTANT = 0,  /* lr_k = lr                                                */
    SG_LR_STEP,          /* lr_k = lr gamma^floor((k-1)/step_size)    (torch StepLR)  */
    SG_LR_EXPONENTIAL,   /* lr_k = lr gamma^(k-1)                     (torch ExponentialLR) */
    SG_LR_INVERSE_SQRT,  /* lr_k = lr min(k/w, sqrt(w/k)), w = warmup_steps (Noam) */
    SG_LR_SCHEDULE_COUNT
} sg_lr_schedule_kind;

/* Zero-initialised = constant. */
typedef struct sg_lr_schedule {
    sg_lr_schedule_kind kind;
    int64_t warmup_steps;  /* inverse_sqrt: w >= 1 */
    int64_t step_size;     /* step: >= 1 */
    double gamma;          /* step, exponential: > 0 */
} sg_lr_schedule;

/* SG_OK, or SG_EINVAL naming the bad field (unknown kind, w < 1, step_size < 1,
 * gamma <= 0 or NaN for the schedules that use them). */
SG_API int sg_lr_schedule_check(const sg_lr_schedule *s);
/* The learning rate of update k (1-based) for base rate lr. s must pass
 * sg_lr_schedule_check (else NaN); k < 1 is treated as 1. */
SG_API double sg_lr_schedule_at(const sg_lr_schedule *s, double lr, int64_t k);
/* "constant", "step", "exponential", "inverse_sqrt" (checkpoint attribute 11.5);
 * "?" for an unknown kind. */
SG_API const char *sg_lr_schedule_name(sg_lr_schedule_kind kind);
/* The kind named name; SG_EINVAL for an unknown name. */
SG_API int sg_lr_schedule_parse(const char *name, sg_lr_schedule_kind *kind);

/* ---- gradient clipping ------------------------------------------------------------ */

/* sqrt(sum of squared gradients) over the distinct parameters of p (accumulated in
 * double); NaN/Inf if a gradient holds one. */
SG_API double sg_grad_norm(const sg_params *p);

/* torch.nn.utils.clip_grad_norm_: N = sg_grad_norm(p), coef = max_norm / (N + 1e-6); if
 * coef < 1 every gradient is multiplied by coef. *total_norm (may be NULL) receives N
 * (before clipping). SG_EINVAL if p is NULL or max_norm is not > 0. SG_ENUMERIC if N
 * is NaN or Inf: the gradients are left unchanged (PyTorch would turn them all into
 * NaN) and *total_norm still receives N. */
SG_API int sg_clip_grad_norm(sg_params *p, double max_norm, double *total_norm);

/* ---- optimisers ---------------------------------------------------------------------- */

typedef enum sg_optim_kind {
    SG_OPTIM_SGD = 0,
    SG_OPTIM_ADAM,
    SG_OPTIM_ADAMW,
    SG_OPTIM_KIND_COUNT
} sg_optim_kind;

typedef struct sg_optim_config {
    sg_optim_kind kind;
    double lr;                  /* base rate, >= 0 */
    double beta1, beta2;        /* Adam/AdamW: in [0, 1) */
    double eps;                 /* Adam/AdamW: >= 0 */
    double weight_decay;        /* >= 0; coupled (SGD, Adam) or decoupled (AdamW) */
    double momentum;            /* SGD: >= 0 */
    double dampening;           /* SGD: in [0, 1]; 0 with nesterov */
    bool nesterov;              /* SGD: needs momentum > 0 and dampening 0 */
    double clip_norm;           /* > 0: clip the global gradient norm in sg_optim_step */
    sg_lr_schedule schedule;
    double label_smoothing;     /* unused here; carried so a checkpoint has it (11.5) */
} sg_optim_config;

typedef struct sg_optim sg_optim;

/* PyTorch's defaults for kind: Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0;
 * AdamW the same with wd 1e-2; SGD lr 1e-2 (PyTorch has no default), momentum 0.
 * No clipping, constant schedule. An unknown kind gives a config that fails checks. */
SG_API sg_optim_config sg_optim_config_default(sg_optim_kind kind);

/* SG_OK, or SG_EINVAL with a message naming the bad hyperparameter and its value. */
SG_API int sg_optim_config_check(const sg_optim_config *c);

/* An optimiser over every entry of p (which must not gain entries afterwards) with
 * zeroed moment buffers and step count 0. p is not owned and must outlive it.
 * NULL on SG_EINVAL (NULL p or c, bad config) or SG_ENOMEM. */
SG_API sg_optim *sg_optim_new(sg_params *p, const sg_optim_config *c);
/* Frees the optimiser and its moment buffers. Accepts NULL. */
SG_API void sg_optim_free(sg_optim *o);

/* One update (see the top of this header) with the scheduled lr of update
 * k = step_count + 1; increments the step count. *total_norm (may be NULL) receives
 * the gradient norm before clipping when clip_norm > 0, else 0.
 * SG_EINVAL (o NULL), SG_ESTATE (the store gained entries since sg_optim_new),
 * SG_ENUMERIC (clipping found a NaN/Inf norm: nothing is changed, neither gradients,
 * parameters, moments nor the step count; zero the gradients and go on).
 * Without clipping, NaN gradients are not checked and propagate into the parameters. */
SG_API int sg_optim_step(sg_optim *o, double *total_norm);
/* sg_optim_step, then every gradient of the store is zero, as after
 * sg_params_zero_grad, whatever the result (on SG_ESTATE or SG_ENUMERIC the update is
 * skipped as in sg_optim_step and the gradients are zeroed all the same). Adam and AdamW
 * zero each stretch of a gradient as they read it, so a training loop makes one pass
 * over the gradients' memory instead of two (update, then zero_grad); a sparse_grad one
 * (an embedding table's, sg_params.h) is read, then its pages are given back. SG_EINVAL
 * (o NULL; nothing zeroed), else as sg_optim_step. */
SG_API int sg_optim_step_zero_grad(sg_optim *o, double *total_norm);

/* The learning rate the next sg_optim_step will use. */
SG_API double sg_optim_current_lr(const sg_optim *o);

/* The configuration in use (owned by o, valid until the next set_config / free). */
SG_API const sg_optim_config *sg_optim_get_config(const sg_optim *o);
/* Replaces the hyperparameters (e.g. restored from a checkpoint). SG_EINVAL for a bad
 * config or a different kind (the moment buffers would not fit); o is unchanged then. */
SG_API int sg_optim_set_config(sg_optim *o, const sg_optim_config *c);

/* Number of completed updates (k of the last update). */
SG_API int64_t sg_optim_step_count(const sg_optim *o);
/* Sets it (checkpoint restore). SG_EINVAL if k < 0. */
SG_API int sg_optim_set_step_count(sg_optim *o, int64_t k);

/* The store the optimiser updates. */
SG_API sg_params *sg_optim_params(const sg_optim *o);

/* Per-entry state, aligned with sg_params_at(p, i): Adam/AdamW first moment
 * (exp_avg) or the SGD momentum buffer; second moment (exp_avg_sq, Adam/AdamW only).
 * Contiguous tensors of the parameter's shape and dtype, owned by o: read them to save
 * a checkpoint, write them (sg_tensor_copy_) to restore one. NULL for alias entries,
 * an index out of range, or state the kind does not have (SGD without momentum). */
SG_API sg_tensor *sg_optim_exp_avg(const sg_optim *o, int i);
SG_API sg_tensor *sg_optim_exp_avg_sq(const sg_optim *o, int i);

/* "sgd", "adam", "adamw" ("?" if unknown), and the reverse (SG_EINVAL if unknown). */
SG_API const char *sg_optim_kind_name(sg_optim_kind kind);
SG_API int sg_optim_kind_parse(const char *name, sg_optim_kind *kind);

#ifdef __cplusplus
}
#endif
#endif
