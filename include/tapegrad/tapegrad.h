/* The whole public API of tapegrad. */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <tapegrad/autograd.h>
#include <tapegrad/checkpoint.h>
#include <tapegrad/common.h>
#include <tapegrad/data.h>
#include <tapegrad/gemm.h>
#include <tapegrad/gradcheck.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>
#include <tapegrad/optim.h>
#include <tapegrad/tensor.h>

#endif
