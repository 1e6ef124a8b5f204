/*
 * sg_models.h - the whole seqgrad API in one include: tensors, autograd, nn modules,
 * checkpoints, data (tokenisers, vocabularies, batches, BLEU), decoding and the model
 * zoo (seq2seq, bahdanau, luong, transformer).
 */
#ifndef SG_MODELS_H
#define SG_MODELS_H

#include "sg_data.h"
#include "sg_decode.h"
#include "sg_model.h"
#include "sg_model_config.h"
#include "sg_nn.h"

#endif
