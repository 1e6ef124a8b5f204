/* sg_attention.h - (being written) */
#ifndef SG_ATTENTION_H
#define SG_ATTENTION_H

#include "sg_layers.h"

#endif
