/* sg_loss.h - (being written) */
#ifndef SG_LOSS_H
#define SG_LOSS_H

#include "sg_layers.h"

#endif
