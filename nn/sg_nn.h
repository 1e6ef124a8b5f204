/*
 * sg_nn.h - neural-network modules on top of autograd: everything in nn/.
 *
 * Modules are plain structs holding non-owning pointers to parameters that live in
 * an sg_params store under their PyTorch state_dict names. A module's init function
 * registers its parameters (prefix + "." + name) and gives them PyTorch's default
 * initialisation from an explicit sg_rng; its forward builds ops in a graph.
 *
 *     sg_params *p = sg_params_new(SG_F32);
 *     sg_rng rng; sg_rng_seed(&rng, 42);
 *     sg_linear_layer fc;
 *     if (sg_linear_layer_init(&fc, p, "fc", 8, 4, true, &rng) != SG_OK) ... sg_last_error()
 *     sg_tensor *y = sg_linear_layer_forward(g, &fc, x);      // x [..., 8] -> [..., 4]
 */
#ifndef SG_NN_H
#define SG_NN_H

#include "sg_autograd.h"
#include "sg_params.h"
#include "sg_layers.h"
#include "sg_rnn.h"
#include "sg_attention.h"
#include "sg_loss.h"
#include "sg_optim.h"
#include "sg_checkpoint.h"

#endif
