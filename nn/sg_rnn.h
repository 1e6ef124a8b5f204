/* sg_rnn.h - (being written) */
#ifndef SG_RNN_H
#define SG_RNN_H

#include "sg_layers.h"

#endif
