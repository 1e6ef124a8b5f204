/* posenc.c - the sinusoidal position table of MODELS.md 7.2 (not a parameter). */
#include "attn_internal.h"

#include <math.h>

sg_tensor *sg_sinusoid_table(sg_dtype dt, int64_t n_pos, int64_t d)
{
    if (!sg_dtype_is_float(dt) || n_pos < 1 || d < 1) {
        sg__error(SG_EINVAL, "sg_sinusoid_table: needs a float dtype, n_pos >= 1 and d >= 1 "
                             "(got %s, %lld, %lld)",
                  sg_dtype_name(dt), (long long)n_pos, (long long)d);
        return NULL;
    }
    sg_tensor *t = sg_tensor_new(dt, 2, (int64_t[]){n_pos, d});
    if (!t)
        return NULL;
    /* PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...), in double */
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t c = 0; c < d; c++) {
            double ang = (double)p / pow(10000.0, (double)(c - c % 2) / (double)d);
            double v = c % 2 ? cos(ang) : sin(ang);
            if (dt == SG_F32)
                ((float *)t->data)[p * d + c] = (float)v;
            else
                ((double *)t->data)[p * d + c] = v;
        }
    return t;
}
