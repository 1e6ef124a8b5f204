/* nn_internal.h - shared by nn sources; not installed. */
#ifndef SG_NN_INTERNAL_H
#define SG_NN_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "sg_nn.h"

/* clip.c. The clipping coefficient min(1, max_norm / (N + 1e-6)) of the gradient norm N
 * of the store (*total_norm = N, may be NULL); SG_ENUMERIC (message names who) if N is
 * NaN or Inf. */
int sg__clip_coef(const sg_params *p, double max_norm, double *total_norm, double *coef,
                  const char *who);
/* g[0..n) *= coef, f32 by an f32 coefficient as torch does */
void sg__scale_grad(sg_dtype dt, void *g, int64_t n, double coef);

#endif
