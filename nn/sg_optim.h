/* sg_optim.h - (being written) */
#ifndef SG_OPTIM_H
#define SG_OPTIM_H

#include "sg_layers.h"

#endif
