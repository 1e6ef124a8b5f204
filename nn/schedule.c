/* schedule.c - learning-rate schedules as pure functions of the update number k
 * (1-based), matching torch.optim.lr_scheduler stepped once after each update. */
#include "nn_internal.h"

#include <math.h>
#include <string.h>

static const char *const schedule_names[] = {
    [SG_LR_CONSTANT] = "constant",
    [SG_LR_STEP] = "step",
    [SG_LR_EXPONENTIAL] = "exponential",
    [SG_LR_INVERSE_SQRT] = "inverse_sqrt",
};
_Static_assert(sizeof schedule_names / sizeof *schedule_names == SG_LR_SCHEDULE_COUNT,
               "one name per schedule");

const char *sg_lr_schedule_name(sg_lr_schedule_kind kind)
{
    return (unsigned)kind < SG_LR_SCHEDULE_COUNT ? schedule_names[kind] : "?";
}

int sg_lr_schedule_parse(const char *name, sg_lr_schedule_kind *kind)
{
    for (int k = 0; name && k < SG_LR_SCHEDULE_COUNT; k++)
        if (strcmp(name, schedule_names[k]) == 0) {
            if (kind)
                *kind = (sg_lr_schedule_kind)k;
            return SG_OK;
        }
    return sg__error(SG_EINVAL, "sg_lr_schedule_parse: unknown schedule '%s'",
                     name ? name : "(null)");
}

int sg_lr_schedule_check(const sg_lr_schedule *s)
{
    if (!s)
        return sg__error(SG_EINVAL, "sg_lr_schedule_check: schedule is NULL");
    switch (s->kind) {
    case SG_LR_CONSTANT:
        return SG_OK;
    case SG_LR_STEP:
        if (s->step_size < 1)
            return sg__error(SG_EINVAL, "sg_lr_schedule_check: step schedule needs step_size "
                                        ">= 1, got %lld", (long long)s->step_size);
        /* fall through */
    case SG_LR_EXPONENTIAL:
        if (!(s->gamma > 0) || isinf(s->gamma))
            return sg__error(SG_EINVAL, "sg_lr_schedule_check: %s schedule needs gamma > 0, "
                                        "got %g", schedule_names[s->kind], s->gamma);
        return SG_OK;
    case SG_LR_INVERSE_SQRT:
        if (s->warmup_steps < 1)
            return sg__error(SG_EINVAL, "sg_lr_schedule_check: inverse_sqrt needs "
                                        "warmup_steps >= 1, got %lld", (long long)s->warmup_steps);
        return SG_OK;
    default:
        return sg__error(SG_EINVAL, "sg_lr_schedule_check: unknown schedule kind %d",
                         (int)s->kind);
    }
}

double sg_lr_schedule_at(const sg_lr_schedule *s, double lr, int64_t k)
{
    if (!s)
        return lr;
    if (k < 1)
        k = 1;
    switch (s->kind) {
    case SG_LR_CONSTANT:
        return lr;
    case SG_LR_STEP:
        return s->step_size >= 1 ? lr * pow(s->gamma, (double)((k - 1) / s->step_size)) : NAN;
    case SG_LR_EXPONENTIAL:
        return lr * pow(s->gamma, (double)(k - 1));
    case SG_LR_INVERSE_SQRT: {
        if (s->warmup_steps < 1)
            return NAN;
        double w = (double)s->warmup_steps, kk = (double)k;
        return lr * fmin(kk / w, sqrt(w / kk)); /* same expression as the reference peer */
    }
    default:
        return NAN;
    }
}
