/* nn_internal.h - shared by nn sources; not installed. */
#ifndef SG_NN_INTERNAL_H
#define SG_NN_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "sg_nn.h"

#endif
